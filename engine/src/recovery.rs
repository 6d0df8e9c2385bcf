//! The way out of a corrupt database: [`recover_corrupt_database`].
//!
//! [`Engine::open`](crate::Engine::open) refuses a file SQLite finds damaged (not a
//! database, or a page or b-tree it cannot read) with [`OpenError::Corrupt`] and changes
//! nothing on disk. The app then calls [`recover_corrupt_database`], which promises:
//!
//! - **Kept for support:** the damaged database and its companions (`-wal`, `-shm`,
//!   `-journal`) are moved aside, unchanged, to
//!   [`DbLocation::corrupt_aside_path`] (`{database}.corrupt`); a later recovery replaces
//!   them, and dropping the tenant (a logout) removes them.
//! - **Kept in the new database:** every op of the queue that was not yet acknowledged by
//!   the server (pending, sending, failed) whose row, and whose record's row, SQLite can
//!   still read, in queue order, with its record, the record's id mapping, and its
//!   status (`sending` becomes `pending` at the next open, as after any crash; the server
//!   recognises a replay by `opId`); the clock's high-water mark, from the database or,
//!   when a damaged header took that, from the mark every push's durability barrier
//!   leaves beside it (`clock_mark.rs`), which bounds every stamp that ever left the
//!   device (only a device that never pushed has neither: [`RecoveryReport::clock_kept`]
//!   says so, and the newest stamp kept bounds the clock); the auth tokens that can be
//!   read. The next sync pushes the kept ops.
//! - **Re-pulled:** everything the server has: every synced record, deletion and id
//!   mapping. The cursors start empty, so the next sync pulls every entity from the
//!   beginning, and a kept record meets its server version under the conflict policy.
//! - **Lost:** ops whose row or whose record's row cannot be read (counted in
//!   [`RecoveryReport::lost_ops`]), the ops of a record the server never had whose
//!   `insert` is among them (an update of it could never be applied), open conflicts
//!   (the record's waiting op is pushed again and meets the server's version anew), the
//!   time of the last successful sync, and anything of a force from the server that was
//!   staged.
//!
//! The new database is written in one transaction; a failure before it commits (a full
//! disk) leaves at most an empty database at the tenant's path, which the next open
//! takes as a new one, and the damaged files aside, where nothing reads them again. The
//! damaged file is only ever read, through a read-only connection.

use crate::error::OpenError;
use crate::store::{salvage, schema};
use crate::tenant::{DbLocation, TenantId};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What a recovery kept and lost (see the module header for the promise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Where the damaged database now lies.
    pub aside_path: PathBuf,
    /// The `opId`s of the unsent (and failed) ops kept, in queue order.
    pub salvaged_op_ids: Vec<String>,
    /// Records kept (those of the kept ops).
    pub salvaged_records: u64,
    /// Ops that could not be kept: queue positions that could not be read (some may have
    /// held no op), ops whose record could not be read, the ops of a record whose
    /// `insert` was lost.
    pub lost_ops: u64,
    /// Whether the clock's high-water mark was read, from the database or from the mark
    /// beside it (otherwise it resumes from the newest stamp kept; no stamp of the device
    /// ever left it then).
    pub clock_kept: bool,
}

impl RecoveryReport {
    pub fn salvaged_ops(&self) -> u64 {
        self.salvaged_op_ids.len() as u64
    }
}

/// Moves a corrupt tenant database aside and builds a new one from what can still be
/// read of it (see the module header). Refuses, changing nothing, a tenant with no
/// database ([`OpenError::NothingToRecover`]) and a database SQLite finds sound
/// ([`OpenError::NotCorrupt`]). The engine of the tenant must not be open.
pub fn recover_corrupt_database(
    location: &DbLocation,
    tenant: &TenantId,
) -> Result<RecoveryReport, OpenError> {
    if location.dir().exists() {
        // A database still under its legacy name is recovered under its current one.
        crate::legacy_names::migrate(location, tenant)?;
    }
    let [wal, shm, journal, main] = location.db_files(tenant);
    if !main.exists() {
        return Err(OpenError::NothingToRecover(main));
    }
    if !is_corrupt(&main)? {
        return Err(OpenError::NotCorrupt(main));
    }
    let aside = location.corrupt_aside_files(tenant);
    let aside_path = aside[3].clone();
    // Companions first, the database last: until the database moves, an interrupted
    // recovery leaves a corrupt database at the path, and the next open refuses it again.
    for (from, to) in [wal, shm, journal, main.clone()].iter().zip(&aside) {
        if from.exists() {
            std::fs::rename(from, to)?;
        } else {
            match std::fs::remove_file(to) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error.into())
                }
                _ => {}
            }
        }
    }
    let read = read_only(&aside_path)
        .map(|damaged| salvage::read(&damaged))
        .unwrap_or_default();
    let ops = keepable_ops(&read, location.planted().recovery_drops_pending_ops);
    // The mark beside the database outlives its header: it bounds every stamp that left.
    let mark =
        crate::clock_mark::read(&location.clock_mark_path(tenant)).map(|stamp| stamp.0 as i64);
    let clock_kept = read.hlc_high_water.is_some() || mark.is_some();
    let newest_kept = ops
        .iter()
        .map(|op| op.hlc)
        .chain(read.records.values().map(|record| record.updated_at))
        .max()
        .unwrap_or(0);
    let hlc_high_water = read
        .hlc_high_water
        .unwrap_or(0)
        .max(mark.unwrap_or(0))
        .max(newest_kept);
    let mut conn = schema::open(&main, 5_000)?;
    let tx = conn.transaction()?;
    let salvaged_op_ids = salvage::write(&tx, &read, &ops, hlc_high_water)?;
    // Recovery runs with no engine open: no crash hook, no boundary to kill at.
    #[allow(clippy::disallowed_methods)]
    tx.commit()?;
    drop(conn);
    let kept: BTreeSet<&str> = salvaged_op_ids.iter().map(String::as_str).collect();
    let salvaged_records = read
        .ops
        .iter()
        .filter(|op| kept.contains(op.op_id.as_str()))
        .map(|op| op.entity_id.as_str())
        .collect::<BTreeSet<_>>()
        .len() as u64;
    let lost_ops = read.unreadable_ops + (read.ops.len() - salvaged_op_ids.len()) as u64;
    assert!(salvaged_op_ids.len() <= read.ops.len());
    Ok(RecoveryReport {
        aside_path,
        salvaged_op_ids,
        salvaged_records,
        lost_ops,
        clock_kept,
    })
}

/// Whether SQLite finds the database at `main` damaged, asked without writing to it.
fn is_corrupt(main: &std::path::Path) -> Result<bool, OpenError> {
    let conn = match read_only(main) {
        Ok(conn) => conn,
        Err(error) if is_corruption(&error) => return Ok(true),
        Err(error) => return Err(error.into()),
    };
    Ok(schema::corruption(&conn)?.is_some())
}

fn is_corruption(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

fn read_only(path: &std::path::Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

/// The ops the new database may hold, in queue order: those whose record was read, but
/// none of a record the server never had (base version 0) whose first op read is not its
/// `insert`.
fn keepable_ops(read: &salvage::Salvage, drop_pending: bool) -> Vec<&salvage::SalvagedOp> {
    if drop_pending {
        // The planted defect: "the server has everything; start clean".
        return Vec::new();
    }
    let mut first_seen = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for op in &read.ops {
        let Some(record) = read.records.get(&op.entity_id) else {
            continue;
        };
        if first_seen.insert(op.entity_id.as_str())
            && record.base_version == 0
            && op.operation != "insert"
        {
            refused.insert(op.entity_id.as_str());
        }
    }
    read.ops
        .iter()
        .filter(|op| read.records.contains_key(&op.entity_id))
        .filter(|op| !refused.contains(op.entity_id.as_str()))
        .collect()
}
