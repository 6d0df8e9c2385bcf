//! Open conflicts: the `conflicts` table, one row per record whose queued write waits for
//! the user (DESIGN.md §5), read with the record's server id. Like the rest of the store,
//! these functions never open or commit a transaction.

use super::object_to_text;
use super::row::StoredRow;
use crate::record::Conflict;
use rusqlite::{params, Connection, OptionalExtension, Row};

pub(super) const CONFLICT_COLUMNS: &str = "c.id, c.entity, c.client_id, m.server_id, c.space_id, c.local_version, \
     c.local_updated_at, c.local_data, c.server_version, c.server_updated_at, c.server_data, c.server_is_deleted";

pub(super) fn conflict_from_row(row: &Row<'_>) -> rusqlite::Result<Conflict> {
    let row = StoredRow::new(row, "conflicts", 0);
    Ok(Conflict {
        id: row.get(0)?,
        entity: row.entity(1)?,
        client_id: row.get(2)?,
        server_id: row.get(3)?,
        space_id: row.space_id(4)?,
        local_version: row.get(5)?,
        local_updated_at: row.stamp(6)?,
        local_data: row.object(7)?,
        server_version: row.get(8)?,
        server_updated_at: row.stamp(9)?,
        server_data: row.object(10)?,
        server_is_deleted: row.flag(11)?,
    })
}

/// Stores (or refreshes) the open conflict of a record; returns its id.
pub fn put_conflict(conn: &Connection, conflict: &Conflict) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO conflicts (client_id, entity, space_id, local_version, local_updated_at, local_data, \
         server_version, server_updated_at, server_data, server_is_deleted) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (client_id) DO UPDATE SET local_version = excluded.local_version, \
         local_updated_at = excluded.local_updated_at, local_data = excluded.local_data, \
         server_version = excluded.server_version, server_updated_at = excluded.server_updated_at, \
         server_data = excluded.server_data, server_is_deleted = excluded.server_is_deleted",
    )?
    .execute(params![
        conflict.client_id,
        conflict.entity,
        conflict.space_id,
        conflict.local_version,
        conflict.local_updated_at.0 as i64,
        object_to_text(&conflict.local_data),
        conflict.server_version,
        conflict.server_updated_at.0 as i64,
        object_to_text(&conflict.server_data),
        conflict.server_is_deleted,
    ])?;
    conn.prepare_cached("SELECT id FROM conflicts WHERE client_id = ?1")?
        .query_row([&conflict.client_id], |row| row.get(0))
}

pub fn list_conflicts(conn: &Connection) -> rusqlite::Result<Vec<Conflict>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {CONFLICT_COLUMNS} FROM conflicts c LEFT JOIN id_map m ON m.client_id = c.client_id ORDER BY c.id"
    ))?;
    let rows = statement.query_map([], conflict_from_row)?;
    rows.collect()
}

pub fn get_conflict(conn: &Connection, id: i64) -> rusqlite::Result<Option<Conflict>> {
    conn.prepare_cached(&format!(
        "SELECT {CONFLICT_COLUMNS} FROM conflicts c LEFT JOIN id_map m ON m.client_id = c.client_id WHERE c.id = ?1"
    ))?
    .query_row([id], conflict_from_row)
    .optional()
}

/// The open conflict of one record, if any.
pub fn conflict_for_record(
    conn: &Connection,
    client_id: &str,
) -> rusqlite::Result<Option<Conflict>> {
    conn.prepare_cached(&format!(
        "SELECT {CONFLICT_COLUMNS} FROM conflicts c LEFT JOIN id_map m ON m.client_id = c.client_id WHERE c.client_id = ?1"
    ))?
    .query_row([client_id], conflict_from_row)
    .optional()
}

pub fn delete_conflict_for_record(conn: &Connection, client_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM conflicts WHERE client_id = ?1")?
        .execute([client_id])?;
    Ok(())
}

pub fn count_conflicts(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM conflicts", [], |row| {
        row.get::<_, i64>(0)
    })
    .map(|count| count as u64)
}
