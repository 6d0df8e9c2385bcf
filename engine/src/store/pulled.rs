//! The pull path's own SQL: what a page's checks read before it is written, the write of
//! a row new to the device, and the checksum a completed pass compares with the server's.
//!
//! These run once per pulled row (or over every record of an entity), so each is shaped
//! for the first sync of a device, where a page is a thousand rows the device never held:
//! a page whose ids all lie past the newest ones the device holds needs no lookup per row
//! ([`NewestIds`]), a new row is two plain inserts ([`NewRowWriter`]), and the
//! checksum sorts its rows in memory instead of in a temporary B-tree ([`version_hash`]).
//! Like the rest of the store, nothing here opens or commits a transaction.

use super::object_to_text;
use crate::wire::{PulledItem, VersionHasher};
use rusqlite::types::ValueRef;
use rusqlite::{params, CachedStatement, Connection};
use std::ops::Range;

/// The greatest client id among the device's records and the greatest server id in its id
/// map, read once per page: an id past the greatest one held names nothing the device
/// holds, so a row past both needs neither lookup (what `store::placements` would find
/// for it is nothing). Ids the engine makes are UUID v7, ordered by time, and a server
/// that hands out ordered ids puts each page of a first sync past the one before.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewestIds {
    /// `None`: no record, or a stored id that is not text (damage; every row is looked up).
    client_id: Option<Bound>,
    server_id: Option<Bound>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Bound {
    /// The table is empty: every id lies past it.
    Empty,
    /// The greatest id, in SQLite's binary collation (Rust's `str` order).
    Greatest(String),
}

impl Bound {
    fn read(value: ValueRef<'_>) -> Option<Bound> {
        match value {
            ValueRef::Null => Some(Bound::Empty),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .ok()
                .map(|text| Bound::Greatest(text.to_owned())),
            // A damaged row's id of another type: no shortcut.
            ValueRef::Integer(_) | ValueRef::Real(_) | ValueRef::Blob(_) => None,
        }
    }

    fn is_below(&self, id: &str) -> bool {
        match self {
            Bound::Empty => true,
            Bound::Greatest(greatest) => greatest.as_str() < id,
        }
    }
}

impl NewestIds {
    pub fn read(conn: &Connection) -> rusqlite::Result<NewestIds> {
        // Each `max` is one descent of a B-tree: the records' primary key, their unique
        // server id index.
        conn.prepare_cached(
            "SELECT (SELECT max(client_id) FROM records), (SELECT max(server_id) FROM records WHERE server_id IS NOT NULL)",
        )?
        .query_row([], |row| {
            Ok(NewestIds {
                client_id: Bound::read(row.get_ref(0)?),
                server_id: Bound::read(row.get_ref(1)?),
            })
        })
    }

    /// True when neither id can name anything the device holds: both lie past the
    /// greatest of their kind. False says nothing (the ids must be looked up).
    pub fn names_nothing_held(&self, client_id: &str, server_id: &str) -> bool {
        let past = |bound: &Option<Bound>, id| bound.as_ref().is_some_and(|b| b.is_below(id));
        past(&self.client_id, client_id) && past(&self.server_id, server_id)
    }
}

/// Writes pulled rows the device holds nothing of (neither id names a record it holds,
/// checked by the caller before the page's first write) as the server holds them: the
/// record with its server id, its data its own merge base. One plain insert per row,
/// where a record write in general is an upsert: a row that is there after all fails the
/// statement (and so the page's transaction) on the table's constraints instead of
/// overwriting it. Both statements are prepared once for a page and kept for its rows.
/// Takes no change note (`store/changes.rs`): a record that appears is a change the caller
/// announces itself.
pub struct NewRowWriter<'conn> {
    record: CachedStatement<'conn>,
}

impl<'conn> NewRowWriter<'conn> {
    pub fn new(conn: &'conn Connection) -> rusqlite::Result<NewRowWriter<'conn>> {
        // `base_data` and `base_updated_at` stay NULL: the merge base is the record's data.
        let record = conn.prepare_cached(
            "INSERT INTO records (client_id, entity, space_id, version, base_version, \
             updated_at, is_deleted, data, server_id) VALUES (?1, ?2, ?3, ?4, ?4, ?5, 0, ?6, ?7)",
        )?;
        Ok(NewRowWriter { record })
    }

    pub fn insert(&mut self, entity: &str, item: &PulledItem) -> rusqlite::Result<()> {
        let inserted = self.record.execute(params![
            item.client_id,
            entity,
            item.space_id,
            item.version,
            item.updated_at.0 as i64,
            object_to_text(&item.data),
            item.id,
        ])?;
        assert_eq!(inserted, 1);
        Ok(())
    }
}

/// The version checksum ([`crate::wire::version_hash`]) of every live record of `entity`
/// the server knows: server id, version and data, in server id order (Rust's `str` order,
/// which is SQLite's binary collation).
///
/// The rows are read in the order of SQLite's plan and sorted here, in memory: an
/// `ORDER BY m.server_id` had SQLite copy every row into a temporary B-tree and sort it
/// there, which cost more than reading them. The order of the hash is the sort's, so the
/// plan's order does not leak into the result.
pub fn version_hash(conn: &Connection, entity: &str) -> rusqlite::Result<String> {
    // The data column holds canonical compact JSON (`object_to_text`): it is hashed as
    // stored, without parsing. A damaged row whose data is not text hashes as empty data,
    // so the checksum differs and a repair pull rewrites it from the server.
    let mut statement = conn.prepare_cached(
        "SELECT r.server_id, r.version, r.data FROM records r \
         WHERE r.entity = ?1 AND r.is_deleted = 0 AND r.server_id IS NOT NULL",
    )?;
    let mut rows = statement.query([entity])?;
    // Every id and data text in one buffer; a row is its two ranges in it and its version.
    let mut text = String::new();
    let mut lines: Vec<(Range<usize>, i64, Range<usize>)> = Vec::new();
    while let Some(row) = rows.next()? {
        let server_id = row.get_ref(0)?.as_str()?;
        let version: i64 = row.get(1)?;
        let data_text = row.get_ref(2)?.as_str().unwrap_or_default();
        let id_start = text.len();
        text.push_str(server_id);
        let data_start = text.len();
        text.push_str(data_text);
        lines.push((id_start..data_start, version, data_start..text.len()));
    }
    let key = |line: &(Range<usize>, i64, Range<usize>)| {
        (&text[line.0.clone()], line.1, &text[line.2.clone()])
    };
    // Server ids are unique (the id map's constraint); version and data only order the
    // rows of a damaged map, so that the result never depends on the plan.
    lines.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    let mut hasher = VersionHasher::new();
    for line in &lines {
        let (server_id, version, data_text) = key(line);
        hasher.row_text(server_id, version, data_text);
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    //! The shortcuts of the pull path agree with what they stand for: an id past the
    //! newest ones held names nothing held (and a stored id that is not text turns the
    //! shortcut off), a row new to the device is stored as the general record write stores
    //! it, and the local checksum is the wire's checksum whatever order the rows were
    //! written in.
    use super::*;
    use crate::hlc::HlcStamp;
    use serde_json::{json, Map, Value};

    fn item(server_id: &str, client_id: &str, data: Value) -> PulledItem {
        PulledItem {
            id: server_id.to_owned(),
            client_id: client_id.to_owned(),
            space_id: "s1".to_owned(),
            version: 3,
            updated_at: HlcStamp(9),
            data: data.as_object().cloned().expect("an object"),
        }
    }

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::schema::open(&dir.path().join("db"), 0).unwrap();
        (dir, conn)
    }

    #[test]
    fn ids_past_the_newest_held_name_nothing_held() {
        let (_dir, conn) = open();
        let empty = NewestIds::read(&conn).unwrap();
        assert!(empty.names_nothing_held("", ""));
        assert!(empty.names_nothing_held("a", "srv-1"));
        NewRowWriter::new(&conn)
            .unwrap()
            .insert("Item", &item("srv-5", "c5", json!({})))
            .unwrap();
        let newest = NewestIds::read(&conn).unwrap();
        assert!(newest.names_nothing_held("c6", "srv-6"));
        assert!(!newest.names_nothing_held("c5", "srv-6"));
        assert!(!newest.names_nothing_held("c6", "srv-5"));
        assert!(!newest.names_nothing_held("c4", "srv-6"));
        assert!(!newest.names_nothing_held("c6", "srv-4"));
        // A damaged id that is not text sorts after every text in SQLite: no shortcut.
        conn.execute(
            "INSERT INTO records (client_id, entity, space_id, version, base_version, \
             updated_at, is_deleted, data) VALUES (x'ff', 'Item', 's1', 1, 1, 1, 0, '{}')",
            [],
        )
        .unwrap();
        let damaged = NewestIds::read(&conn).unwrap();
        assert!(!damaged.names_nothing_held("c6", "srv-6"));
        assert!(!damaged.names_nothing_held("\u{10ffff}", "srv-6"));
    }

    #[test]
    fn a_new_row_is_stored_as_a_record_write_stores_it() {
        let (_dir, conn) = open();
        let pulled = item("srv-1", "c1", json!({"t": "x", "n": 1}));
        NewRowWriter::new(&conn)
            .unwrap()
            .insert("Item", &pulled)
            .unwrap();
        let record = crate::record::Record {
            client_id: "c2".to_owned(),
            server_id: Some("srv-2".to_owned()),
            entity: "Item".to_owned(),
            space_id: pulled.space_id.clone(),
            version: pulled.version,
            base_version: pulled.version,
            updated_at: pulled.updated_at,
            is_deleted: false,
            data: pulled.data.clone(),
        };
        crate::store::insert_pulled_record(&conn, &record).unwrap();
        let row = |client_id: &str| {
            conn.query_row(
                "SELECT r.entity, r.space_id, r.version, r.base_version, r.base_data, \
                 r.updated_at, r.base_updated_at, r.is_deleted, r.data, m.entity \
                 FROM records r JOIN id_map m ON m.client_id = r.client_id \
                 WHERE r.client_id = ?1",
                [client_id],
                |row| {
                    (0..10)
                        .map(|column| row.get::<_, rusqlite::types::Value>(column))
                        .collect::<rusqlite::Result<Vec<_>>>()
                },
            )
            .unwrap()
        };
        assert_eq!(row("c1"), row("c2"));
        let stored = crate::store::get_record(&conn, "c1").unwrap().unwrap();
        assert_eq!(stored.server_id.as_deref(), Some("srv-1"));
        assert_eq!(stored.data, pulled.data);
        // A row that is there after all is refused, not overwritten.
        let mut writer = NewRowWriter::new(&conn).unwrap();
        assert!(writer
            .insert("Item", &item("srv-9", "c1", json!({})))
            .is_err());
        assert!(writer
            .insert("Item", &item("srv-1", "c9", json!({})))
            .is_err());
    }

    #[test]
    fn the_local_checksum_is_the_wire_checksum_in_any_write_order() {
        let (_dir, conn) = open();
        let rows = [
            ("srv-3", "c1", json!({"t": "c"})),
            ("srv-1", "c3", json!({"t": "a", "n": [1, null]})),
            ("srv-2", "c2", json!({})),
        ];
        let mut writer = NewRowWriter::new(&conn).unwrap();
        for (server_id, client_id, data) in &rows {
            writer
                .insert("Item", &item(server_id, client_id, data.clone()))
                .unwrap();
        }
        // Another entity's record and a tombstone are not part of it.
        writer
            .insert("Other", &item("srv-0", "c0", json!({})))
            .unwrap();
        writer
            .insert("Item", &item("srv-4", "c4", json!({})))
            .unwrap();
        drop(writer);
        conn.execute(
            "UPDATE records SET is_deleted = 1 WHERE client_id = 'c4'",
            [],
        )
        .unwrap();
        let maps: Vec<Map<String, Value>> = rows
            .iter()
            .map(|(_, _, data)| data.as_object().cloned().unwrap())
            .collect();
        let expected = crate::wire::version_hash(
            rows.iter()
                .zip(&maps)
                .map(|((server_id, _, _), data)| (*server_id, 3, data)),
        );
        assert_eq!(version_hash(&conn, "Item").unwrap(), expected);
        assert_eq!(
            version_hash(&conn, "Nothing").unwrap(),
            crate::wire::version_hash([])
        );
    }
}
