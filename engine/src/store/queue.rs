//! The operation queue: queueing an op, reading the queue, and an op's path through it
//! (`pending`, the push run on the wire, `failed`, gone once acknowledged). An op of the
//! run on the wire is `pending` in its row and listed in `push_in_flight`; every reader
//! here takes it as `sending`. Like the rest of the store, it never opens a transaction.

use super::row::{self, StoredRow};
use crate::hlc::HlcStamp;
use crate::record::{FailedOp, OpStatus, QueuedOp, Rejection};
use crate::wire::{ErrorCode, Operation};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};

/// An op about to be queued (the queue assigns `seq`).
pub struct NewOp<'a> {
    pub op_id: &'a str,
    pub entity: &'a str,
    pub operation: Operation,
    pub entity_id: &'a str,
    pub space_id: &'a str,
    pub payload: &'a Map<String, Value>,
    pub base_version: i64,
    pub updated_at: HlcStamp,
    pub force: bool,
    pub now_ms: u64,
}

pub fn enqueue(conn: &Connection, op: &NewOp<'_>) -> rusqlite::Result<i64> {
    enqueue_rendered(conn, op, &super::object_to_text(op.payload))
}

/// [`enqueue`] with the payload already rendered as `object_to_text` renders it (a local
/// write stores the same data in the record's row first).
pub fn enqueue_rendered(
    conn: &Connection,
    op: &NewOp<'_>,
    payload_text: &str,
) -> rusqlite::Result<i64> {
    debug_assert_eq!(payload_text, super::object_to_text(op.payload));
    conn.prepare_cached(
        "INSERT INTO operation_queue (op_id, entity, operation, entity_id, space_id, payload, base_version, hlc, \
         force, status, attempts, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?10)",
    )?
    .execute(params![
        op.op_id,
        op.entity,
        op.operation.as_str(),
        op.entity_id,
        op.space_id,
        payload_text,
        op.base_version,
        op.updated_at.0 as i64,
        op.force,
        op.now_ms as i64,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The columns of an op read `FROM operation_queue q`, with `$status` for its status.
macro_rules! op_columns {
    ($status:literal) => {
        concat!(
            "q.id, q.op_id, q.entity, q.operation, q.entity_id, q.space_id, q.payload, \
             q.base_version, q.hlc, q.force, ",
            $status,
            ", q.attempts, q.last_error, q.created_at"
        )
    };
}

/// The columns of an op, read `FROM operation_queue q`. An op of the push run on the
/// wire is `pending` in its row and reads as `sending` (see [`mark_sending`]).
pub(super) const OP_COLUMNS: &str = op_columns!(
    "CASE WHEN EXISTS (SELECT 1 FROM push_in_flight f WHERE f.seq = q.id) THEN 'sending' \
     ELSE q.status END"
);

/// [`OP_COLUMNS`] when no run is in flight: every op's status is its row's, and reading
/// it skips a lookup in `push_in_flight` per op.
const OP_COLUMNS_NONE_IN_FLIGHT: &str = op_columns!("q.status");
/// How many columns [`OP_COLUMNS`] names (a query may select more after them).
pub(super) const OP_COLUMN_COUNT: usize = 14;

pub(super) fn op_from_row(row: &Row<'_>) -> rusqlite::Result<QueuedOp> {
    let row = StoredRow::new(row, "operation_queue", 0);
    Ok(QueuedOp {
        seq: row.get(0)?,
        op_id: row.get(1)?,
        entity: row.entity(2)?,
        operation: row.parsed(3, "operation", Operation::parse)?,
        entity_id: row.get(4)?,
        space_id: row.space_id(5)?,
        payload: row.object(6)?,
        base_version: row.at_least(7, 0)?,
        updated_at: row.stamp(8)?,
        force: row.flag(9)?,
        status: row.parsed(10, "status", OpStatus::parse)?,
        attempts: row.at_least(11, 0)?,
        last_error: row.get(12)?,
        created_at_ms: row.get(13)?,
    })
}

/// All ops in queue order (including finished ones still kept).
pub fn all_ops(conn: &Connection) -> rusqlite::Result<Vec<QueuedOp>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OP_COLUMNS} FROM operation_queue q ORDER BY q.id"
    ))?;
    let rows = statement.query_map([], op_from_row)?;
    rows.collect()
}

/// An op in flight, as its push answer needs it (the payload stays in the queue row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentOp {
    pub seq: i64,
    pub op_id: String,
    pub entity: String,
    pub entity_id: String,
    /// The server id the op's record had when the op was sent.
    pub server_id: Option<String>,
}

/// What identifies the set of `sending` ops without reading them: how many, the first
/// and last queue positions, and the positions' sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendingSummary {
    pub count: i64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub sum: i64,
}

/// The [`SendingSummary`] of the run in flight as marked (`push_in_flight`), read without
/// touching the queue: each op's row is checked `pending` where its result is applied, by
/// the statement that settles it ([`delete_op`], [`end_flight`], [`fail_op`] assert it).
pub fn sending_summary(conn: &Connection) -> rusqlite::Result<SendingSummary> {
    conn.prepare_cached(
        "SELECT COUNT(*), MIN(seq), MAX(seq), COALESCE(SUM(seq), 0) FROM push_in_flight",
    )?
    .query_row([], |row| {
        Ok(SendingSummary {
            count: row.get(0)?,
            first: row.get(1)?,
            last: row.get(2)?,
            sum: row.get(3)?,
        })
    })
}

/// Ops with `status`, in queue order.
pub fn ops_with_status(conn: &Connection, status: OpStatus) -> rusqlite::Result<Vec<QueuedOp>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OP_COLUMNS} FROM operation_queue q WHERE {} ORDER BY q.id",
        status_is(status)
    ))?;
    let rows = statement.query_map([], op_from_row)?;
    rows.collect()
}

/// The SQL condition "op `q` has `status`": an op in flight is `pending` in its row.
fn status_is(status: OpStatus) -> &'static str {
    match status {
        OpStatus::Pending => {
            "q.status = 'pending' \
             AND NOT EXISTS (SELECT 1 FROM push_in_flight f WHERE f.seq = q.id)"
        }
        OpStatus::Sending => {
            "q.status = 'pending' \
             AND EXISTS (SELECT 1 FROM push_in_flight f WHERE f.seq = q.id)"
        }
        OpStatus::Success => "q.status = 'success'",
        OpStatus::Failed => "q.status = 'failed'",
    }
}

/// The next push run: pending ops in queue order, skipping records with an open conflict,
/// cut at the first op of another entity type, at most `limit_for(entity)` long. Each op
/// comes with its record's server id, if the server assigned one. An op whose record is
/// missing is damage, found here before its push could map a server id to nothing.
/// Only with no run in flight ([`has_run_in_flight`]): its ops are `pending` in their rows.
pub fn next_push_run(
    conn: &Connection,
    entity_filter: Option<&str>,
    limit_for: impl Fn(&str) -> usize,
) -> rusqlite::Result<Vec<(QueuedOp, Option<String>)>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OP_COLUMNS_NONE_IN_FLIGHT}, r.server_id, r.entity IS q.entity \
         FROM operation_queue q LEFT JOIN records r ON r.client_id = q.entity_id \
         WHERE q.status = 'pending' \
         AND (?1 IS NULL OR q.entity = ?1) \
         AND NOT EXISTS (SELECT 1 FROM conflicts c WHERE c.client_id = q.entity_id) ORDER BY q.id"
    ))?;
    let mut rows = statement.query(params![entity_filter])?;
    let mut run: Vec<(QueuedOp, Option<String>)> = Vec::new();
    while let Some(row) = rows.next()? {
        // A full run stops before the next op is read.
        if run
            .first()
            .is_some_and(|(first, _)| run.len() >= limit_for(&first.entity))
        {
            break;
        }
        let op = op_from_row(row)?;
        if run
            .first()
            .is_some_and(|(first, _)| op.entity != first.entity)
        {
            break;
        }
        if !row.get::<_, bool>(OP_COLUMN_COUNT + 1)? {
            return Err(row::damaged(
                "operation_queue",
                op.seq.to_string(),
                format!("there is no {} record {}", op.entity, op.entity_id),
            ));
        }
        run.push((op, row.get(OP_COLUMN_COUNT)?));
    }
    Ok(run)
}

/// Sets op `seq`'s status (not `failed`: [`fail_op`] stores why) and last error text.
pub fn set_op_status(
    conn: &Connection,
    seq: i64,
    status: OpStatus,
    last_error: Option<&str>,
    now_ms: u64,
) -> rusqlite::Result<()> {
    assert_ne!(
        status,
        OpStatus::Failed,
        "a failure is stored with its reason"
    );
    let changed = conn
        .prepare_cached(
            "UPDATE operation_queue SET status = ?2, last_error = ?3, error_code = NULL, \
             updated_at = ?4 WHERE id = ?1",
        )?
        .execute(params![seq, status.as_str(), last_error, now_ms as i64])?;
    assert_eq!(changed, 1, "op {seq} vanished");
    Ok(())
}

/// Marks op `seq` failed for good, keeping what the server said: its code, when it gave
/// one, and its message. The row's `updated_at` becomes the time of the failure.
pub fn fail_op(
    conn: &Connection,
    seq: i64,
    code: Option<ErrorCode>,
    message: &str,
    now_ms: u64,
) -> rusqlite::Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE operation_queue SET status = 'failed', last_error = ?2, error_code = ?3, \
             updated_at = ?4 WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![
            seq,
            message,
            code.map(ErrorCode::as_str),
            now_ms as i64
        ])?;
    assert_eq!(changed, 1, "op {seq} was not pending when it failed");
    Ok(())
}

/// The queued op with this op id, whatever its status.
pub fn op_by_op_id(conn: &Connection, op_id: &str) -> rusqlite::Result<Option<QueuedOp>> {
    conn.prepare_cached(&format!(
        "SELECT {OP_COLUMNS} FROM operation_queue q WHERE q.op_id = ?1"
    ))?
    .query_row([op_id], op_from_row)
    .optional()
}

/// Every queued op of one record, whatever its status, in queue order.
pub fn ops_for_record(conn: &Connection, client_id: &str) -> rusqlite::Result<Vec<QueuedOp>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OP_COLUMNS} FROM operation_queue q WHERE q.entity_id = ?1 ORDER BY q.id"
    ))?;
    let rows = statement.query_map([client_id], op_from_row)?;
    rows.collect()
}

/// Drops every queued op of one record, whatever its status. Returns how many.
pub fn delete_ops_for_record(conn: &Connection, client_id: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM operation_queue WHERE entity_id = ?1")?
        .execute([client_id])
}

/// The `failed` ops with the server's reasons, in queue order.
pub fn failed_ops(conn: &Connection) -> rusqlite::Result<Vec<FailedOp>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OP_COLUMNS}, q.error_code, q.updated_at FROM operation_queue q \
         WHERE q.status = 'failed' ORDER BY q.id"
    ))?;
    let rows = statement.query_map([], |row| {
        let op = op_from_row(row)?;
        let stored = StoredRow::new(row, "operation_queue", 0);
        let code = match stored.get::<Option<String>>(OP_COLUMN_COUNT)? {
            None => None,
            Some(_) => Some(stored.parsed(OP_COLUMN_COUNT, "error code", ErrorCode::parse)?),
        };
        Ok(FailedOp {
            seq: op.seq,
            op_id: op.op_id,
            entity: op.entity,
            client_id: op.entity_id,
            space_id: op.space_id,
            operation: op.operation,
            payload: op.payload,
            rejection: Rejection {
                code,
                message: op.last_error.unwrap_or_default(),
            },
            failed_at_ms: stored.get(OP_COLUMN_COUNT + 1)?,
        })
    })?;
    rows.collect()
}

/// Puts failed op `seq` back in the queue, at its position, as a new attempt: under a new
/// op id (the server answers an op id it has seen with its stored result), on `base_version`
/// and with `stamp`. Its payload, attempts and last error text stay.
pub fn requeue_failed(
    conn: &Connection,
    seq: i64,
    op_id: &str,
    base_version: i64,
    stamp: HlcStamp,
    now_ms: u64,
) -> rusqlite::Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE operation_queue SET op_id = ?2, status = 'pending', base_version = ?3, \
             hlc = ?4, error_code = NULL, updated_at = ?5 WHERE id = ?1 AND status = 'failed'",
        )?
        .execute(params![
            seq,
            op_id,
            base_version,
            stamp.0 as i64,
            now_ms as i64
        ])?;
    assert_eq!(changed, 1, "op {seq} is not a failed op");
    Ok(())
}

/// Whether a push run is marked in flight (its ops may all be gone: call it where no op can
/// have left the queue since the run was marked).
pub fn has_run_in_flight(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM push_in_flight)")?
        .query_row([], |row| row.get(0))
}

/// Whether any op is `sending`.
pub fn has_sending_op_anywhere(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM push_in_flight f \
         CROSS JOIN operation_queue q ON q.id = f.seq WHERE q.status = 'pending')",
    )?
    .query_row([], |row| row.get(0))
}

/// True when an op of the record is in flight (`sending`).
pub fn has_sending_op(conn: &Connection, client_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM operation_queue q WHERE q.entity_id = ?1 AND {})",
        status_is(OpStatus::Sending)
    ))?
    .query_row([client_id], |row| row.get(0))
}

/// Marks a push run `sending`: its queue positions go into `push_in_flight`, one small
/// row each, and the ops stay `pending` in their rows (moving a hundred ops to another
/// status and back moved each twice in the status index, the largest part of marking a
/// run). The attempt is counted when the run ends ([`end_push_run`]). `seqs` are ops
/// [`next_push_run`] just read as `pending` in the same transaction (the caller asserts
/// it); a position already marked is a bug.
pub fn mark_sending(conn: &Connection, seqs: &[i64]) -> rusqlite::Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT OR IGNORE INTO push_in_flight (seq) VALUES (?1)")?;
    for seq in seqs {
        assert_eq!(insert.execute([seq])?, 1, "op {seq} was already in flight");
    }
    Ok(())
}

/// Ends the flight of op `seq` of the run in flight, whose answer did not acknowledge it:
/// it counts the attempt and is `pending` again (unless the caller settles it otherwise).
pub fn end_flight(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    let changed = conn
        .prepare_cached(
            "UPDATE operation_queue SET attempts = attempts + 1 \
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute([seq])?;
    assert_eq!(changed, 1, "op {seq} vanished or changed in flight");
    conn.prepare_cached("DELETE FROM push_in_flight WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

/// Ends the push run in flight, inside the transaction of its answer: each of its ops
/// still queued counts the attempt, and none is `sending` any more.
pub fn end_push_run(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE operation_queue SET attempts = attempts + 1 \
         WHERE id IN (SELECT seq FROM push_in_flight)",
    )?
    .execute([])?;
    conn.prepare_cached("DELETE FROM push_in_flight")?
        .execute([])?;
    Ok(())
}

/// After a crash or a transport failure: every `sending` op becomes `pending` again, with
/// the attempt counted (two statements: call it inside a transaction). Returns how many.
pub fn reset_sending(
    conn: &Connection,
    last_error: Option<&str>,
    now_ms: u64,
) -> rusqlite::Result<usize> {
    let reset = conn
        .prepare_cached(
            "UPDATE operation_queue SET attempts = attempts + 1, \
             last_error = COALESCE(?1, last_error), updated_at = ?2 \
             WHERE status = 'pending' AND id IN (SELECT seq FROM push_in_flight)",
        )?
        .execute(params![last_error, now_ms as i64])?;
    conn.prepare_cached("DELETE FROM push_in_flight")?
        .execute([])?;
    Ok(reset)
}

/// Removes op `seq`, answered and done with (acknowledged, or superseded by the server's
/// state). It is `pending` in its row until then: anything else is a bug.
pub fn delete_op(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    let deleted = conn
        .prepare_cached("DELETE FROM operation_queue WHERE id = ?1 AND status = 'pending'")?
        .execute([seq])?;
    assert_eq!(deleted, 1, "op {seq} vanished or changed before its answer");
    Ok(())
}

/// Unfinished (`pending` or `sending`) ops of one record, in queue order.
pub fn unfinished_ops_for_record(
    conn: &Connection,
    client_id: &str,
) -> rusqlite::Result<Vec<QueuedOp>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OP_COLUMNS} FROM operation_queue q WHERE q.entity_id = ?1 \
         AND q.status = 'pending' ORDER BY q.id"
    ))?;
    let rows = statement.query_map([client_id], op_from_row)?;
    rows.collect()
}

/// True when any op of the record is still queued, whatever its status (a `failed` op
/// stays as the app's report of the rejection).
pub fn has_any_op(conn: &Connection, client_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM operation_queue WHERE entity_id = ?1)")?
        .query_row([client_id], |row| row.get(0))
}

/// True when the record has an unfinished (`pending` or `sending`) op other than `seq`.
pub fn has_other_unfinished_op(
    conn: &Connection,
    client_id: &str,
    seq: i64,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM operation_queue WHERE entity_id = ?1 \
         AND status = 'pending' AND id <> ?2)",
    )?
    .query_row(params![client_id, seq], |row| row.get(0))
}

/// Drops the `pending` ops of one record (superseded by the conflict policy or a
/// resolution). `sending` ops are in flight and are never edited or dropped.
pub fn drop_pending_ops_for_record(conn: &Connection, client_id: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(&format!(
        "DELETE FROM operation_queue AS q WHERE q.entity_id = ?1 AND {}",
        status_is(OpStatus::Pending)
    ))?
    .execute([client_id])
}

/// How many ops are unfinished (`pending` or `sending`: both are `pending` in their rows),
/// of one entity or of all.
pub fn count_unfinished_ops(conn: &Connection, entity: Option<&str>) -> rusqlite::Result<u64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM operation_queue WHERE status = 'pending' \
         AND (?1 IS NULL OR entity = ?1)",
    )?
    .query_row(params![entity], |row| row.get::<_, i64>(0))
    .map(|count| count as u64)
}

pub fn count_ops(
    conn: &Connection,
    status: OpStatus,
    entity: Option<&str>,
) -> rusqlite::Result<u64> {
    conn.prepare_cached(&format!(
        "SELECT COUNT(*) FROM operation_queue q WHERE {} AND (?1 IS NULL OR q.entity = ?1)",
        status_is(status)
    ))?
    .query_row(params![entity], |row| row.get::<_, i64>(0))
    .map(|count| count as u64)
}
