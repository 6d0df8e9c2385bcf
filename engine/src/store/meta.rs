//! The `meta` table: the clock's high-water mark, the time of the last successful sync,
//! the durability barrier that makes both (and everything else committed) survive a
//! power loss, and the small keyed values other parts of the store keep there.

use crate::hlc::HlcStamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::row::StoredRow;

const META_HLC: &str = "hlc";
const META_LAST_SYNC_MS: &str = "last_successful_sync_ms";

pub(super) fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT key, value FROM meta WHERE key = ?1")?
        .query_row([key], |row| StoredRow::new(row, "meta", 0).get(1))
        .optional()
}

pub(super) fn meta_set(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// The persisted HLC high-water mark, so the clock never goes back across restarts.
pub fn hlc_high_water(conn: &Connection) -> rusqlite::Result<HlcStamp> {
    Ok(HlcStamp(
        meta_get(conn, META_HLC)?.map_or(0, |value| value as u64),
    ))
}

/// Raises the persisted high-water mark to `stamp`; never lowers it: another process of
/// the app may have persisted a newer one into the same database.
pub fn set_hlc_high_water(conn: &Connection, stamp: HlcStamp) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
    )?
    .execute(params![META_HLC, stamp.0 as i64])?;
    Ok(())
}

/// The durability barrier: a passive checkpoint of the WAL. In WAL mode with
/// `synchronous = NORMAL` a commit is not synced, so a power loss may take it; a
/// checkpoint syncs the WAL, copies it into the database file and syncs that, so every
/// transaction committed before it survives a power loss. Fails busy, having made nothing
/// durable that it does not say, when another connection still reads an older snapshot
/// and holds part of the WAL back.
///
/// Another process of the app reading a moment ago is the usual reason: then a `FULL`
/// checkpoint waits for its readers (up to the busy timeout) and tries again.
pub fn durability_barrier(conn: &Connection) -> rusqlite::Result<()> {
    let checkpoint = |mode: &str| -> rusqlite::Result<(i64, i64)> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get(1)?, row.get(2)?))
        })
    };
    let (mut log_frames, mut checkpointed) = checkpoint("PASSIVE")?;
    if log_frames != checkpointed {
        (log_frames, checkpointed) = checkpoint("FULL")?;
    }
    if log_frames != checkpointed {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some(format!(
                "durability barrier: {checkpointed} of {log_frames} WAL frames checkpointed, \
                 another connection reads an older snapshot"
            )),
        ));
    }
    Ok(())
}

pub fn last_successful_sync_ms(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    Ok(meta_get(conn, META_LAST_SYNC_MS)?.map(|value| value as u64))
}

pub fn set_last_successful_sync_ms(conn: &Connection, now_ms: u64) -> rusqlite::Result<()> {
    meta_set(conn, META_LAST_SYNC_MS, now_ms as i64)
}
