//! The pull path's own SQL: what a page's checks read before it is written, and the write
//! of a row new to the device.
//!
//! These run once per pulled row, so each is shaped for the first sync of a device, where
//! a page is a thousand rows the device never held: a page whose ids all lie past the
//! newest ones the device holds needs no lookup per row ([`NewestIds`]), and a new row is
//! two plain inserts ([`insert_new_pulled_row`]).
//! Like the rest of the store, nothing here opens or commits a transaction.

use super::object_to_text;
use crate::wire::PulledItem;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection};

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
        // Each `max` is one descent of a B-tree: the records' primary key, the id map's
        // unique server id index.
        conn.prepare_cached(
            "SELECT (SELECT max(client_id) FROM records), (SELECT max(server_id) FROM id_map)",
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

/// Writes a pulled row the device holds nothing of (neither id names a record it holds,
/// checked by the caller before the page's first write) as the server holds it: the
/// record, its data its own merge base, and its id mapping. Two plain inserts, where a
/// record write in general is an upsert: a row that is there after all fails the
/// statement (and so the page's transaction) on the table's constraints instead of
/// overwriting it. Takes no change note (`store/changes.rs`): a record that appears is a
/// change the caller announces itself.
pub fn insert_new_pulled_row(
    conn: &Connection,
    entity: &str,
    item: &PulledItem,
) -> rusqlite::Result<()> {
    // `base_data` and `base_updated_at` stay NULL: the merge base is the record's data.
    conn.prepare_cached(
        "INSERT INTO records (client_id, entity, space_id, version, base_version, updated_at, \
         is_deleted, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5, 0, ?6)",
    )?
    .execute(params![
        item.client_id,
        entity,
        item.space_id,
        item.version,
        item.updated_at.0 as i64,
        object_to_text(&item.data),
    ])?;
    conn.prepare_cached("INSERT INTO id_map (client_id, server_id, entity) VALUES (?1, ?2, ?3)")?
        .execute(params![item.client_id, item.id, entity])?;
    Ok(())
}
