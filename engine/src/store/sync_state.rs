//! Sync state per entity: the pull cursor and the last `versionHash`, and the durable
//! mark of a resync pass under way (kept in `meta`).

use rusqlite::{params, Connection, OptionalExtension};

use super::meta::{meta_get, meta_set};

pub fn cursor(conn: &Connection, entity: &str) -> rusqlite::Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT last_sync_at FROM sync_state WHERE entity = ?1")?
        .query_row([entity], |row| row.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

pub fn set_sync_state(
    conn: &Connection,
    entity: &str,
    cursor: Option<&str>,
    version_hash: Option<&str>,
    now_ms: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sync_state (entity, last_sync_at, server_version_hash, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (entity) DO UPDATE SET last_sync_at = excluded.last_sync_at, \
         server_version_hash = excluded.server_version_hash, updated_at = excluded.updated_at",
    )?
    .execute(params![entity, cursor, version_hash, now_ms as i64])?;
    Ok(())
}

/// Whether a resync pass of `entity` stored pages and not yet its last one (it keeps
/// the entity without a cursor meanwhile, so a pass cut short runs again whole).
pub fn resync_under_way(conn: &Connection, entity: &str) -> rusqlite::Result<bool> {
    Ok(meta_get(conn, &format!("resync:{entity}"))?.is_some_and(|value| value != 0))
}

pub fn set_resync_under_way(
    conn: &Connection,
    entity: &str,
    under_way: bool,
) -> rusqlite::Result<()> {
    meta_set(conn, &format!("resync:{entity}"), i64::from(under_way))
}

/// Moves an entity's cursor without a pull page (a push answer said where the device's
/// own writes landed); the server checksum stored with it stays as it was.
pub fn set_cursor(
    conn: &Connection,
    entity: &str,
    cursor: &str,
    now_ms: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sync_state (entity, last_sync_at, server_version_hash, updated_at) VALUES (?1, ?2, NULL, ?3) \
         ON CONFLICT (entity) DO UPDATE SET last_sync_at = excluded.last_sync_at, updated_at = excluded.updated_at",
    )?
    .execute(params![entity, cursor, now_ms as i64])?;
    Ok(())
}

/// Forgets every cursor, so the next pull of each entity starts from the beginning.
pub fn reset_all_sync_state(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM sync_state", [])?;
    Ok(())
}
