//! Failed ops under the app's control: reading why the server rejected each one, putting
//! them back in the queue (retry), and dropping them with the record returned to the
//! server's state (discard).
//!
//! A rejected op stays `failed` in the queue as the durable report of the rejection
//! (`push.rs`, `settle_rejection`); only these calls end that. Each call is one
//! transaction through the crash hook's commit, and bad input (an unknown op id, an op
//! that is not failed, a record whose write is in flight) is refused before anything is
//! written.
//!
//! The rules we chose:
//! - **A retry is a new attempt of the same write.** It gets a new op id, since the server
//!   answers an op id it has seen with the result it stored (the same rejection, without
//!   judging the write again). It carries its own payload (the write as the user made it)
//!   on the record's current `base_version`, the newest server version the device knows:
//!   since the rejection the record may have taken the server's row, and a write still
//!   naming the old base would be judged a concurrent write that its old stamp loses. When
//!   the op is the record's newest queued write, the record takes its payload again, with a
//!   fresh stamp, as a local write does (the device shows what it pushes; a confirmed push
//!   changes only the record's version, never its data). When newer writes of the record
//!   are queued behind it, the record already stands past it: the record stays, and the op
//!   keeps its stamp so that those newer writes still win over it on the server. Retrying
//!   several ops runs from the newest down, so each record's newest write gets the fresh
//!   stamp. A retry of an update of a record the server deleted is refused
//!   (`RecordDeleted`): tombstones are final.
//! - **A discard works on the record.** Every op carries the whole record, so the writes
//!   queued behind a discarded one carry its change too: the record returns to the server's
//!   state, and every op of it still queued (its failed ops and later pending writes) and
//!   its open conflict go with it. A record the server never acknowledged
//!   (`base_version = 0`, a rejected insert) is removed locally; any other record takes its
//!   last known server version, stamp and data (its merge base), alive unless the server
//!   deleted it. When the server has moved past that version, the next pull or the
//!   checksum's repair brings its row, as for any synced record. A record with a write in
//!   flight is refused (`SyncInProgress`): its answer is about to change it.

use crate::crash::CommitSite;
use crate::engine::Engine;
use crate::error::{ReadError, WriteError};
use crate::ids::uuid_v7;
use crate::record::{FailedOp, OpStatus, Record, WhichFailed};
use crate::store;
use crate::wire::Operation;
use rusqlite::Connection;
use std::collections::BTreeSet;

impl Engine {
    /// The ops the server rejected for good, in queue order, each with the server's code
    /// and message. `status().failed_ops` counts them.
    pub fn failed_ops(&self) -> Result<Vec<FailedOp>, ReadError> {
        Ok(store::failed_ops(&self.conn)?)
    }

    /// Puts failed ops back in the queue so the next sync pushes them again (see the
    /// module's rules: a new op id, the record's current base version), in one
    /// transaction, and schedules a sync as a local write does. Returns the retried ops'
    /// new op ids, in queue order. Nothing changes when any selected op cannot be retried.
    pub fn retry_failed(&mut self, which: WhichFailed<'_>) -> Result<Vec<String>, WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        let mut targets = selected(&self.conn, which)?;
        for op in &targets {
            self.ensure_not_force_pulling(&op.entity)?;
            let record = target_record(&self.conn, op)?;
            if record.is_deleted && record.base_version > 0 && op.operation != Operation::Delete {
                return Err(WriteError::RecordDeleted(op.client_id.clone()));
            }
        }
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        // Newest first: a record's newest write takes the fresh stamp, and the older ones
        // retried with it keep theirs.
        targets.reverse();
        let now_ms = self.env.now_ms();
        let mut retried = Vec::with_capacity(targets.len());
        let tx = self.conn.transaction()?;
        crate::engine::catch_up_clock(&mut self.hlc, &tx, &self.options)?;
        for op in &targets {
            let op_id = uuid_v7(self.hlc.tick(now_ms), self.env.next_u64()).to_string();
            let mut record = target_record(&tx, op)?;
            let stamp = if store::has_other_unfinished_op(&tx, &op.client_id, op.seq)? {
                store::op_by_op_id(&tx, &op.op_id)?
                    .expect("the op was read in this transaction")
                    .updated_at
            } else {
                record.data = op.payload.clone();
                record.is_deleted = op.operation == Operation::Delete;
                record.version += 1;
                record.updated_at = self.hlc.tick(now_ms);
                store::put_record(&tx, &record)?;
                record.updated_at
            };
            store::requeue_failed(&tx, op.seq, &op_id, record.base_version, stamp, now_ms)?;
            retried.push(op_id);
        }
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        self.crash
            .commit(tx, CommitSite::RetryFailed, &mut self.sync.events)?;
        retried.reverse();
        self.after_local_commit()?;
        Ok(retried)
    }

    /// Drops failed ops and returns each one's record to the server's state (see the
    /// module's rules: every queued op of the record goes; a record the server never
    /// acknowledged is removed), in one transaction. Returns the op ids dropped, failed
    /// and pending: record by record, in the order of each record's first failed op, and
    /// each record's in queue order. Nothing changes when any selected op cannot be
    /// discarded.
    pub fn discard_failed(&mut self, which: WhichFailed<'_>) -> Result<Vec<String>, WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        let targets = selected(&self.conn, which)?;
        // Each record once, in the order of its first failed op.
        let mut records: Vec<&str> = Vec::new();
        let mut seen = BTreeSet::new();
        for op in &targets {
            self.ensure_not_force_pulling(&op.entity)?;
            target_record(&self.conn, op)?;
            if store::has_sending_op(&self.conn, &op.client_id)? {
                return Err(WriteError::SyncInProgress(
                    "discarding a failed op of a record whose write is in flight",
                ));
            }
            if seen.insert(op.client_id.as_str()) {
                records.push(&op.client_id);
            }
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let mut dropped = Vec::new();
        let tx = self.conn.transaction()?;
        for client_id in records {
            let ops = store::ops_for_record(&tx, client_id)?;
            let record = store::get_record(&tx, client_id)?.expect("checked above");
            return_to_server_state(&tx, record, &ops)?;
            dropped.extend(ops.into_iter().map(|op| op.op_id));
        }
        self.crash
            .commit(tx, CommitSite::DiscardFailed, &mut self.sync.events)?;
        Ok(dropped)
    }
}

/// The failed ops `which` names, in queue order; an unknown op id or an op that is not
/// failed is refused.
fn selected(conn: &Connection, which: WhichFailed<'_>) -> Result<Vec<FailedOp>, WriteError> {
    let failed = store::failed_ops(conn)?;
    let WhichFailed::Op(op_id) = which else {
        return Ok(failed);
    };
    if let Some(op) = failed.into_iter().find(|op| op.op_id == op_id) {
        return Ok(vec![op]);
    }
    match store::op_by_op_id(conn, op_id)? {
        None => Err(WriteError::UnknownOp(op_id.to_owned())),
        Some(op) => {
            assert_ne!(op.status, OpStatus::Failed);
            Err(WriteError::OpNotFailed {
                op_id: op_id.to_owned(),
                status: op.status,
            })
        }
    }
}

/// The record a failed op names; the schema's foreign key keeps it there.
fn target_record(conn: &Connection, op: &FailedOp) -> Result<Record, WriteError> {
    let record = store::get_record(conn, &op.client_id)?
        .ok_or_else(|| WriteError::UnknownRecord(op.client_id.clone()))?;
    assert_eq!(record.entity, op.entity, "an op names its record's entity");
    Ok(record)
}

/// Drops every queued op and the open conflict of `record` (`ops` are its ops), and
/// returns it to what the server holds: removed when the server never acknowledged it,
/// else its merge base at its base version, deleted only when the server deleted it.
fn return_to_server_state(
    tx: &Connection,
    mut record: Record,
    ops: &[crate::record::QueuedOp],
) -> rusqlite::Result<()> {
    assert!(ops.iter().all(|op| op.status != OpStatus::Sending));
    store::delete_conflict_for_record(tx, &record.client_id)?;
    store::delete_ops_for_record(tx, &record.client_id)?;
    if record.base_version == 0 {
        store::delete_record(tx, &record.client_id)?;
        assert!(store::get_record(tx, &record.client_id)?.is_none());
        return Ok(());
    }
    let base = store::base_data(tx, &record.client_id)?
        .expect("a record with a base version has a merge base");
    let stamp = store::base_stamp(tx, &record.client_id)?
        .expect("a record with a base version has the server's stamp of it");
    // A tombstone with a delete of its own queued was deleted here; else the server
    // deleted it (a pulled tombstone), and tombstones are final.
    let deleted_here = ops.iter().any(|op| op.operation == Operation::Delete);
    record.is_deleted = record.is_deleted && !deleted_here;
    record.version = record.base_version;
    record.updated_at = stamp;
    record.data = base;
    store::put_record_with_base(tx, &record, &record.data, record.updated_at)?;
    assert!(!store::has_any_op(tx, &record.client_id)?);
    Ok(())
}
