//! Which records a transaction changed, as the app sees them: the source of the
//! `RecordsChanged` events.
//!
//! Before the store writes a record's row or its id mapping (outside local writes), it
//! calls [`note`] (or a set-based form for a space, an entity, a staged force): the first
//! note of a transaction for a record keeps what `get` showed of it then, whether it
//! existed and every field of a `Record` (`server_id`, `space_id`, `version`,
//! `base_version`, `updated_at`, `is_deleted`, `data`), in a table of the connection's
//! `temp` schema. Just before the transaction commits, [`take`] compares each noted record
//! with what it shows now and clears the notes, in the same transaction, so a rollback
//! drops the notes with the writes. A record written but shown as it was (an echo of a
//! version it holds, a force replacement that restores the same row, a row deleted and
//! inserted again unchanged) is not a change. The merge base (`base_data`) and the queue,
//! the conflicts and the cursors are not part of what `get` shows, so writing only them is
//! not a change either.
//!
//! A local write (create, `create_many`, update, delete, a resolution written as a local
//! edit) knows the records it changes and that each of them changes (a new stamp at
//! least): it writes through `store::put_local_record` (a create through
//! `store::insert_created_record`), which take no note, and announces its records
//! itself, so a bulk insert pays nothing for notifications. Two sync writes know it as
//! well and do the same: a pulled record the device did not hold (`store::NewRowWriter`
//! or `store::insert_pulled_record`; it appears) and a push result that gives a record
//! its first server id (`store::set_pushed_version` or
//! `store::add_id_mapping_unless_taken`; it shows a server id it did not show), which
//! are every row of a first sync.
//!
//! Notes are explicit statements, not triggers: a trigger on `records` makes SQLite keep
//! a statement journal for every write to it, measured at a third more CPU for a 10k sync.
//!
//! This module must never write a table of the database file: its notes live in the
//! connection's `temp` schema.

use rusqlite::Connection;
use std::collections::BTreeMap;

/// The columns of a note: what `get` shows of a record, keyed by its client id.
macro_rules! note_columns {
    () => {
        "client_id, entity, existed, server_id, space_id, version, base_version, updated_at, \
         is_deleted, data"
    };
}

/// The select list after the client id and entity, for the record `r` and its mapping `m`.
macro_rules! shown_of_r {
    () => {
        "r.client_id IS NOT NULL, r.server_id, r.space_id, r.version, r.base_version, \
         r.updated_at, r.is_deleted, r.data"
    };
}

/// Creates the notes table on a freshly opened connection.
pub fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA temp_store = MEMORY;
         CREATE TEMP TABLE IF NOT EXISTS record_changes (
             client_id TEXT PRIMARY KEY NOT NULL, entity TEXT NOT NULL, existed INTEGER NOT NULL,
             server_id TEXT, space_id TEXT, version INTEGER, base_version INTEGER,
             updated_at INTEGER, is_deleted INTEGER, data TEXT
         ) WITHOUT ROWID;",
    )
}

/// Notes what `client_id` shows before the transaction's first write to it. `entity`
/// names the record's entity when the write may create it; a record that neither exists
/// nor is named is not noted (a write cannot create it).
pub fn note(conn: &Connection, client_id: &str, entity: Option<&str>) -> rusqlite::Result<()> {
    // A literal, not a `format!`: this runs before every write, and the statement cache
    // is keyed by the text.
    conn.prepare_cached(concat!(
        "INSERT INTO temp.record_changes (",
        note_columns!(),
        ") SELECT ?1, COALESCE(r.entity, ?2), ",
        shown_of_r!(),
        " FROM (SELECT 1) LEFT JOIN main.records r ON r.client_id = ?1 \
         WHERE NOT EXISTS (SELECT 1 FROM temp.record_changes c WHERE c.client_id = ?1) \
         AND COALESCE(r.entity, ?2) IS NOT NULL"
    ))?
    .execute(rusqlite::params![client_id, entity])?;
    Ok(())
}

/// The statement that notes every record of `records r` a condition on `r` (with `?1`)
/// selects, as a literal for the statement cache.
macro_rules! note_records_where {
    ($filter:literal) => {
        concat!(
            "INSERT INTO temp.record_changes (",
            note_columns!(),
            ") SELECT r.client_id, r.entity, ",
            shown_of_r!(),
            " FROM main.records r WHERE ",
            $filter,
            " AND NOT EXISTS (SELECT 1 FROM temp.record_changes c \
             WHERE c.client_id = r.client_id)"
        )
    };
}

/// Notes every record of a space (before the space is wiped).
pub fn note_space(conn: &Connection, space_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(note_records_where!("r.space_id = ?1"))?
        .execute([space_id])?;
    Ok(())
}

/// Notes every record of an entity (before the entity is cleared).
pub fn note_entity(conn: &Connection, entity: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(note_records_where!("r.entity = ?1"))?
        .execute([entity])?;
    Ok(())
}

/// Notes every record a force from the server staged for `entity` (before they are
/// swapped in).
pub fn note_staged(conn: &Connection, entity: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(concat!(
        "INSERT INTO temp.record_changes (",
        note_columns!(),
        ") SELECT s.client_id, s.entity, ",
        shown_of_r!(),
        " FROM main.force_staging s LEFT JOIN main.records r ON r.client_id = s.client_id \
         WHERE s.entity = ?1 \
         AND NOT EXISTS (SELECT 1 FROM temp.record_changes c WHERE c.client_id = s.client_id)"
    ))?
    .execute([entity])?;
    Ok(())
}

/// The records the open transaction changed, by entity (client ids sorted), and clears
/// the notes. Call it inside the transaction, right before it commits.
pub fn take(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Vec<String>>> {
    let mut statement = conn.prepare_cached(
        "SELECT c.entity, c.client_id FROM temp.record_changes c \
         LEFT JOIN main.records r ON r.client_id = c.client_id \
         WHERE c.existed IS NOT (r.client_id IS NOT NULL) \
         OR ((c.existed OR r.client_id IS NOT NULL) AND (c.server_id IS NOT r.server_id \
             OR c.space_id IS NOT r.space_id OR c.version IS NOT r.version \
             OR c.base_version IS NOT r.base_version OR c.updated_at IS NOT r.updated_at \
             OR c.is_deleted IS NOT r.is_deleted OR c.data IS NOT r.data)) \
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
        note(conn, client_id, Some("Space")).unwrap();
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
        let mut conn = crate::store::schema::open(&dir.path().join("db"), 0).unwrap();
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
        note(&tx, "nobody", None).unwrap();
        assert!(take(&tx).unwrap().is_empty(), "an absent, unnamed record");
    }
}
