//! The staging table of a running force-from-server.
//!
//! A force-from-server replaces every record of one entity with the server's pages, and a
//! reader must never see half of that. The engine is sans-IO, so it cannot keep one SQLite
//! transaction open across the round trips of a many-page pull (the connection serves
//! other calls in between, and a kill between two calls must be a plain rollback).
//! Instead each page is written here in its own transaction as it arrives, and the last
//! page's transaction swaps the staged rows in: memory stays one page, each page costs
//! its own rows, and the replacement is still one transaction. The staged rows are
//! scratch, never data: the table is emptied when a force starts, ends or fails, and when
//! the database is opened (so a kill mid-force leaves the old records and nothing else).

use super::object_to_text;
use crate::hlc::HlcStamp;
use crate::wire::PulledItem;
use rusqlite::{params, Connection, OptionalExtension};

/// Forgets every staged row.
pub fn clear(conn: &Connection) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM force_staging")?
        .execute([])
}

/// Stages one page of `entity`: its rows (a row staged by an earlier page under the same
/// client id is replaced — the server lists a record again when it changed between two
/// page requests) and its tombstones (a row staged earlier and deleted since is dropped).
pub fn stage_page(
    conn: &Connection,
    entity: &str,
    items: &[PulledItem],
    deleted_ids: &[String],
) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO force_staging (client_id, server_id, entity, space_id, version, updated_at, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (client_id) DO UPDATE SET server_id = excluded.server_id, \
         entity = excluded.entity, space_id = excluded.space_id, version = excluded.version, \
         updated_at = excluded.updated_at, data = excluded.data",
    )?;
    for item in items {
        upsert.execute(params![
            item.client_id,
            item.id,
            entity,
            item.space_id,
            item.version,
            item.updated_at.0 as i64,
            object_to_text(&item.data),
        ])?;
    }
    let mut unstage = conn.prepare_cached("DELETE FROM force_staging WHERE server_id = ?1")?;
    for server_id in deleted_ids {
        unstage.execute([server_id])?;
    }
    Ok(())
}

/// How many rows are staged for each entity, by entity name.
pub fn staged_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut statement = conn.prepare_cached(
        "SELECT entity, COUNT(*) FROM force_staging GROUP BY entity ORDER BY entity",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

/// Why the staged replacement of `entity` cannot be stored, or `None`. Each page was
/// checked against the database when it arrived; what only the whole pull shows is one
/// server id given to two records by two different pages. A staged row naming a record of
/// another entity (by client id or server id) is checked again here, so the swap can never
/// fail on a key or silently take over another entity's record.
pub fn refusal(conn: &Connection, entity: &str) -> rusqlite::Result<Option<String>> {
    let twice: Option<(String, String, String)> = conn
        .prepare_cached(
            "SELECT a.server_id, a.client_id, b.client_id FROM force_staging a \
             JOIN force_staging b ON b.server_id = a.server_id AND b.client_id > a.client_id \
             ORDER BY a.server_id LIMIT 1",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    if let Some((server_id, first, second)) = twice {
        return Ok(Some(format!(
            "server id {server_id} is given to two records ({first} and {second})"
        )));
    }
    let foreign: Option<(String, String, String)> = conn
        .prepare_cached(
            "SELECT s.client_id, r.client_id, r.entity FROM force_staging s \
             JOIN records r ON r.client_id = s.client_id WHERE r.entity <> ?1 \
             UNION ALL \
             SELECT s.client_id, m.client_id, m.entity FROM force_staging s \
             JOIN id_map m ON m.server_id = s.server_id WHERE m.entity <> ?1 \
             ORDER BY 1 LIMIT 1",
        )?
        .query_row([entity], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    Ok(foreign.map(|(staged, named, other)| {
        format!("a {entity} row ({staged}) names {other} record {named}")
    }))
}

/// The newest stamp among the staged rows (the HLC must observe it before they land).
pub fn newest_stamp(conn: &Connection) -> rusqlite::Result<Option<HlcStamp>> {
    let newest: Option<i64> = conn
        .prepare_cached("SELECT MAX(updated_at) FROM force_staging")?
        .query_row([], |row| row.get(0))?;
    Ok(newest.map(|stamp| HlcStamp(stamp as u64)))
}

/// Replaces `entity` with the staged rows: its records, id mappings, queued ops,
/// conflicts and sync state go, each staged row becomes a synced record (its data is its
/// merge base), and the staging is emptied. The caller's transaction makes it atomic.
pub fn swap_in(conn: &Connection, entity: &str) -> rusqlite::Result<usize> {
    super::clear_entity(conn, entity)?;
    super::changes::note_staged(conn, entity)?;
    let stored = conn
        .prepare_cached(
            "INSERT INTO records (client_id, entity, space_id, version, base_version, base_data, \
             updated_at, is_deleted, data, server_id) \
             SELECT client_id, entity, space_id, version, version, NULL, updated_at, 0, data, \
             server_id FROM force_staging WHERE entity = ?1 ORDER BY client_id",
        )?
        .execute([entity])?;
    clear(conn)?;
    Ok(stored)
}
