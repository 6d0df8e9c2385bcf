//! Which records a transaction changed, as the app sees them: the source of the
//! `RecordsChanged` events.
//!
//! Temporary triggers on `records` and `id_map` (per connection, never in the database
//! file) note, before the first write of a transaction to a record or its id mapping,
//! what `get` showed of it then: whether it existed, and every field of a `Record`
//! (`server_id`, `space_id`, `version`, `base_version`, `updated_at`, `is_deleted`,
//! `data`). Just before the transaction commits, [`take`] compares each noted record with
//! what it shows now and clears the notes, in the same transaction, so a rollback drops
//! the notes with the writes. A record written but shown as it was (an echo of a version
//! it holds, a force replacement that restores the same row, a row deleted and inserted
//! again unchanged) is not a change. The merge base (`base_data`) and the queue, the
//! conflicts and the cursors are not part of what `get` shows, so writing only them is
//! not a change either.
//!
//! This module must never write a table of the database file: its notes live in the
//! connection's `temp` schema.

use rusqlite::Connection;
use std::collections::BTreeMap;

/// The columns a note keeps: what `get` shows of a record (its entity never changes).
const SHOWN_COLUMNS: &str =
    "existed, server_id, space_id, version, base_version, updated_at, is_deleted, data";

/// Installs the notes table and the triggers on a freshly opened connection.
pub fn install(conn: &Connection) -> rusqlite::Result<()> {
    let note = |client_id: &str, entity: &str| {
        format!(
            "INSERT INTO temp.record_changes (client_id, entity, {SHOWN_COLUMNS}) \
             SELECT {client_id}, {entity}, r.client_id IS NOT NULL, m.server_id, r.space_id, \
             r.version, r.base_version, r.updated_at, r.is_deleted, r.data \
             FROM (SELECT 1) LEFT JOIN main.records r ON r.client_id = {client_id} \
             LEFT JOIN main.id_map m ON m.client_id = {client_id} \
             WHERE NOT EXISTS (SELECT 1 FROM temp.record_changes c WHERE c.client_id = {client_id});"
        )
    };
    let mut sql = String::from(
        "PRAGMA temp_store = MEMORY;
         CREATE TEMP TABLE IF NOT EXISTS record_changes (
             client_id TEXT PRIMARY KEY NOT NULL, entity TEXT NOT NULL, existed INTEGER NOT NULL,
             server_id TEXT, space_id TEXT, version INTEGER, base_version INTEGER,
             updated_at INTEGER, is_deleted INTEGER, data TEXT
         ) WITHOUT ROWID;",
    );
    for table in ["records", "id_map"] {
        for (event, row) in [("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")] {
            let name = format!("{table}_{}_noted", event.to_lowercase());
            let body = note(&format!("{row}.client_id"), &format!("{row}.entity"));
            sql.push_str(&format!(
                "CREATE TEMP TRIGGER IF NOT EXISTS {name} BEFORE {event} ON main.{table} \
                 BEGIN {body} END;"
            ));
        }
    }
    conn.execute_batch(&sql)
}

/// The records the open transaction changed, by entity (client ids sorted), and clears
/// the notes. Call it inside the transaction, right before it commits.
pub fn take(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Vec<String>>> {
    let mut statement = conn.prepare_cached(
        "SELECT c.entity, c.client_id FROM temp.record_changes c \
         LEFT JOIN main.records r ON r.client_id = c.client_id \
         LEFT JOIN main.id_map m ON m.client_id = c.client_id \
         WHERE c.existed IS NOT (r.client_id IS NOT NULL) OR c.server_id IS NOT m.server_id \
         OR c.space_id IS NOT r.space_id OR c.version IS NOT r.version \
         OR c.base_version IS NOT r.base_version OR c.updated_at IS NOT r.updated_at \
         OR c.is_deleted IS NOT r.is_deleted OR c.data IS NOT r.data \
         ORDER BY c.entity, c.client_id",
    )?;
    let mut changed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        changed.entry(row.get(0)?).or_default().push(row.get(1)?);
    }
    conn.prepare_cached("DELETE FROM temp.record_changes")?
        .execute([])?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    //! The notes of a transaction that rolls back go with it: the next transaction
    //! announces only its own changes, and a row written back as it was is no change.
    use super::*;

    fn insert(conn: &Connection, client_id: &str, name: &str) {
        conn.execute(
            "INSERT INTO records (client_id, entity, space_id, version, base_version, \
             updated_at, is_deleted, data) VALUES (?1, 'Space', 's1', 1, 0, 1, 0, ?2) \
             ON CONFLICT (client_id) DO UPDATE SET data = excluded.data",
            [client_id, &format!("{{\"name\":\"{name}\"}}")],
        )
        .unwrap();
    }

    #[test]
    fn a_rolled_back_transaction_leaves_no_note() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::schema::open(&dir.path().join("db")).unwrap();
        install(&conn).unwrap();
        let tx = conn.transaction().unwrap();
        insert(&tx, "a", "x");
        drop(tx);
        let tx = conn.transaction().unwrap();
        insert(&tx, "b", "x");
        let changed = take(&tx).unwrap();
        assert_eq!(
            changed,
            BTreeMap::from([("Space".to_owned(), vec!["b".to_owned()])])
        );
        #[allow(clippy::disallowed_methods)]
        tx.commit().unwrap();
        let tx = conn.transaction().unwrap();
        insert(&tx, "b", "y");
        insert(&tx, "b", "x");
        assert!(
            take(&tx).unwrap().is_empty(),
            "b shows what it showed before"
        );
        insert(&tx, "b", "z");
        assert_eq!(take(&tx).unwrap().len(), 1);
    }
}
