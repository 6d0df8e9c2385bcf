//! Push results: what a push answer does to the queue and the records — each op's
//! result applied under the conflict policy, id mappings stored, conflicts settled or
//! stored — and how the next push run is prepared. One transaction per answer; an answer
//! that cannot be true is refused whole before anything of it is written. The run itself
//! (when to push, what to do next) stays in `sync.rs`.

use crate::conflict;
use crate::crash::CommitSite;
use crate::engine::Engine;
use crate::error::SyncError;
use crate::failure::SyncFailure;
use crate::own_writes;
use crate::record::{Conflict, OpStatus};
use crate::store;
use crate::sync::{plausible_stamp, plausible_version, Phase, SyncEvent};
use crate::wire::{
    into_envelope, Envelope, ErrorCode, SyncAnswer, SyncPushItem, SyncPushResponse, SyncResultItem,
};
use serde_json::Value;
use std::collections::{BTreeSet, VecDeque};

impl Engine {
    pub(crate) fn handle_push_response(
        &mut self,
        ops: Vec<store::SentOp>,
        operation_name: &str,
        answer: SyncAnswer,
    ) -> Result<(), SyncError> {
        let payload = match answer {
            SyncAnswer::Json(response) => match into_envelope(operation_name, response) {
                Envelope::Data(payload) => payload,
                Envelope::Error { code, message } => {
                    return self.handle_push_error(ops, code, message)
                }
            },
            SyncAnswer::Push(parsed) => return self.apply_push_answer(ops, parsed),
            SyncAnswer::Pull { .. } => {
                return self.fail_sync(SyncFailure::invalid_answer("a pull answer to a push"))
            }
        };
        let Ok(parsed) = serde_json::from_value::<SyncPushResponse>(payload) else {
            return self.fail_sync(SyncFailure::invalid_answer("malformed push response"));
        };
        self.apply_push_answer(ops, parsed)
    }

    /// A push answer's payload, read: checked against the run in flight, then applied.
    fn apply_push_answer(
        &mut self,
        ops: Vec<store::SentOp>,
        parsed: SyncPushResponse,
    ) -> Result<(), SyncError> {
        self.assert_still_sending(&ops)?;
        let matches = parsed.results.len() == ops.len()
            && parsed
                .results
                .iter()
                .zip(&ops)
                .all(|(result, op)| result.op_id == op.op_id);
        if !matches {
            return self.fail_sync(SyncFailure::invalid_answer(
                "push response does not match the request",
            ));
        }
        if !parsed.results.iter().all(plausible_result) {
            return self.fail_sync(SyncFailure::invalid_answer(
                "push response carries impossible versions, stamps or ids",
            ));
        }
        let entity = ops
            .first()
            .expect("a push run is never empty")
            .entity
            .clone();
        let device_cursor = store::cursor(&self.conn, &entity)?.unwrap_or_default();
        let landing = match own_writes::read_landing(&parsed, &device_cursor) {
            Ok(landing) => landing,
            Err(reason) => return self.fail_sync(SyncFailure::invalid_answer(reason)),
        };
        // Whether every result that confirmed a write told all the server stored for it.
        let mut every_write_confirmed = true;
        let mut transient_error = None;
        let auto_merge = ops.first().is_some_and(|op| {
            self.options
                .registry
                .get(&op.entity)
                .is_some_and(|config| config.auto_merge_fields)
        });
        // Records this answer changed for certain (mapped to their first server id),
        // announced at the commit without change notes.
        let mut announced = Vec::new();
        let tx = self.conn.transaction()?;
        // An auto-merge below hands out stamps.
        crate::engine::catch_up_clock(&mut self.hlc, &tx, &self.options)?;
        // The server id each op's record had when the run was sent stands until an
        // earlier result of this answer changes the record: only the first op of a record
        // may use it (nothing else changes a mapping while the run is in flight: that
        // takes the sync lock this sync holds).
        let mut records_seen = BTreeSet::new();
        for (op, result) in ops.iter().zip(&parsed.results) {
            if let Some(stamp) = result.updated_at {
                self.hlc.observe(stamp);
            }
            if let Some(payload) = &result.conflict {
                self.hlc.observe(payload.server_updated_at);
            }
            let now_ms = self.env.now_ms();
            let planted = self.options.planted_defects;
            let record_server_id = if records_seen.insert(op.entity_id.as_str()) {
                Some(op.server_id.clone())
            } else {
                store::record_server_id(&tx, &op.entity_id)?
            };
            let applied = apply_push_result(
                &tx,
                op,
                record_server_id,
                result,
                now_ms,
                planted,
                &mut announced,
            )?;
            match applied {
                PushOutcome::Applied { confirmed } => every_write_confirmed &= confirmed,
                PushOutcome::Superseded => self.sync.events.push_back(SyncEvent::OpSuperseded {
                    op_id: op.op_id.clone(),
                    client_id: op.entity_id.clone(),
                }),
                PushOutcome::Conflict(conflict) => settle_conflict(
                    &tx,
                    &conflict,
                    auto_merge,
                    &mut self.hlc,
                    &mut self.env,
                    &mut self.sync.events,
                )?,
                PushOutcome::Failed { code, message } => {
                    self.sync.events.push_back(SyncEvent::OpFailed {
                        op_id: op.op_id.clone(),
                        client_id: op.entity_id.clone(),
                        code,
                        message,
                    })
                }
                PushOutcome::Retry { code, message } => {
                    transient_error = Some(SyncFailure::ServerError {
                        code: Some(code),
                        message,
                    })
                }
            }
        }
        // Every op of the run has its result: the run ends here (its ops still queued count
        // the attempt), and the next run is marked `sending` in this same transaction: one
        // commit per round trip instead of two.
        store::end_push_run(&tx)?;
        let next_push = if transient_error.is_none() && self.sync.phase == Phase::Pushing {
            prepare_push(
                &tx,
                &self.options.registry,
                self.sync.push_cap,
                self.env.now_ms(),
            )?
        } else {
            None
        };
        // The device's own writes need not come back in a pull when it stood where the
        // server stood just before this request: the cursor moves with the results.
        if let Some(cursor) = own_writes::cursor_to_store(
            landing.as_ref(),
            &device_cursor,
            every_write_confirmed,
            self.options
                .planted_defects
                .advance_cursor_past_foreign_commits,
        ) {
            store::set_cursor(&tx, &entity, &cursor, self.env.now_ms())?;
        }
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        self.crash.commit_announcing(
            tx,
            CommitSite::PushResults,
            &mut self.sync.events,
            Some((&entity, &announced)),
        )?;
        if let Some(failure) = transient_error {
            return self.fail_sync(failure);
        }
        match next_push {
            Some(prepared) => self.send_push(prepared),
            None => self.advance(),
        }
    }

    /// Panics unless exactly the ops of the run in flight are `sending`: an op in flight
    /// stays so until its answer (whoever resets it must hold the sync lock). Each op's
    /// row is checked still `pending` by the statement that applies its result.
    pub(crate) fn assert_still_sending(&self, ops: &[store::SentOp]) -> Result<(), SyncError> {
        let in_flight = store::sending_summary(&self.conn)?;
        let sent = store::SendingSummary {
            count: ops.len() as i64,
            first: ops.first().map(|op| op.seq),
            last: ops.last().map(|op| op.seq),
            sum: ops.iter().map(|op| op.seq).sum(),
        };
        assert_eq!(
            in_flight, sent,
            "ops in flight must stay `sending` until answered"
        );
        Ok(())
    }

    pub(crate) fn handle_push_error(
        &mut self,
        ops: Vec<store::SentOp>,
        code: Option<ErrorCode>,
        message: String,
    ) -> Result<(), SyncError> {
        let message = message.as_str();
        let isolate = !self.options.planted_defects.fail_whole_batch;
        match code {
            Some(ErrorCode::Validation) if isolate && ops.len() > 1 => {
                // Refused whole for what some op carries (or for carrying too much): the
                // batch goes back to the queue and is sent in halves, down to the op that
                // is refused alone, so the good ops of the batch still apply.
                self.sync.push_cap = Some(ops.len() / 2);
                let now_ms = self.env.now_ms();
                self.crash.commit_in(
                    &mut self.conn,
                    CommitSite::SendingReset,
                    &mut self.sync.events,
                    |conn| store::reset_sending(conn, Some(message), now_ms),
                )?;
                self.advance()
            }
            Some(ErrorCode::Validation) => {
                // The server refused this op (alone, unless the defect is planted) for
                // good: retrying cannot help. Pushes go back to full batches.
                self.sync.push_cap = None;
                let now_ms = self.env.now_ms();
                self.assert_still_sending(&ops)?;
                let tx = self.conn.transaction()?;
                for op in &ops {
                    store::fail_op(&tx, op.seq, code, message, now_ms)?;
                    settle_rejection(&tx, op, None)?;
                    self.sync.events.push_back(SyncEvent::OpFailed {
                        op_id: op.op_id.clone(),
                        client_id: op.entity_id.clone(),
                        code,
                        message: message.to_owned(),
                    });
                }
                store::end_push_run(&tx)?;
                self.crash
                    .commit(tx, CommitSite::PushRejected, &mut self.sync.events)?;
                self.advance()
            }
            // Unauthorized: the data is fine; the token is not. Wait for a new token.
            Some(ErrorCode::Unauthorized) => self.fail_sync(SyncFailure::AuthRequired {
                message: message.to_owned(),
            }),
            _ => self.fail_sync(SyncFailure::ServerError {
                code,
                message: message.to_owned(),
            }),
        }
    }
}

/// A push run marked `sending` in a transaction that has not committed yet.
pub(crate) struct PreparedPush {
    pub(crate) operation_name: String,
    /// The run's ops, each with its record's server id as sent.
    pub(crate) ops: Vec<store::SentOp>,
    pub(crate) payload: Vec<SyncPushItem>,
}

/// Marks the next push run `sending` inside `tx`; `None` when nothing is left to push.
/// Ops of a type the app no longer registers can never be sent: they are marked failed on
/// the way.
/// `cap`, when set, bounds the run below the entity's batch size (a refused batch is being
/// sent in halves).
pub(crate) fn prepare_push(
    tx: &rusqlite::Connection,
    registry: &crate::registry::EntityRegistry,
    cap: Option<usize>,
    now_ms: u64,
) -> rusqlite::Result<Option<PreparedPush>> {
    assert!(cap.is_none_or(|cap| cap >= 1));
    assert!(
        !store::has_run_in_flight(tx)?,
        "a push run is prepared only when none is in flight"
    );
    loop {
        let run = store::next_push_run(tx, None, |entity| {
            let batch_max = registry
                .get(entity)
                .map_or(1, |config| config.push_batch_max);
            batch_max.min(cap.unwrap_or(usize::MAX))
        })?;
        let Some((first, _)) = run.first() else {
            return Ok(None);
        };
        let Some(config) = registry.get(&first.entity) else {
            store::fail_op(tx, first.seq, None, "entity type not registered", now_ms)?;
            continue;
        };
        let operation_name = config.push_operation_name();
        let seqs: Vec<i64> = run.iter().map(|(op, _)| op.seq).collect();
        assert!(
            run.iter().all(|(op, _)| op.status == OpStatus::Pending),
            "ops {seqs:?} were not all pending"
        );
        store::mark_sending(tx, &seqs)?;
        let ops = run
            .iter()
            .map(|(op, server_id)| store::SentOp {
                seq: op.seq,
                op_id: op.op_id.clone(),
                entity: op.entity.clone(),
                entity_id: op.entity_id.clone(),
                server_id: server_id.clone(),
            })
            .collect();
        let payload = run
            .into_iter()
            .map(|(op, server_id)| SyncPushItem {
                client_id: Some(op.entity_id),
                id: server_id,
                operation: op.operation,
                data: Value::Object(op.payload),
                op_id: op.op_id,
                base_version: Some(op.base_version),
                force: op.force,
                space_id: op.space_id,
                updated_at: op.updated_at,
            })
            .collect();
        return Ok(Some(PreparedPush {
            operation_name,
            ops,
            payload,
        }));
    }
}

/// A result no server could give: an impossible version or stamp, or an empty server id
/// (stored as a mapping, it would be sent back with every later write of the record).
fn plausible_result(result: &SyncResultItem) -> bool {
    result.id.as_deref().is_none_or(|id| !id.is_empty())
        && result.version.is_none_or(plausible_version)
        && result.updated_at.is_none_or(plausible_stamp)
        && result.conflict.as_ref().is_none_or(|conflict| {
            plausible_version(conflict.server_version)
                && plausible_stamp(conflict.server_updated_at)
        })
}

enum PushOutcome {
    /// The server took the write. `confirmed`: the result carried the server id, version
    /// and stamp it stored, and the device stored them on its record, so the device holds
    /// the row exactly as the server does.
    Applied {
        confirmed: bool,
    },
    Superseded,
    Conflict(Conflict),
    Failed {
        code: Option<ErrorCode>,
        message: String,
    },
    Retry {
        code: ErrorCode,
        message: String,
    },
}

/// A concurrent write with equal stamps, found by a push result or a pulled row: merged
/// silently when the entity allows it and the two sides changed different fields (the
/// merge is queued as a new write), else stored for the user. A conflict already stored
/// with the same two sides is not stored or reported again (a pull meets the row that a
/// push of the same sync already reported).
pub(crate) fn settle_conflict(
    tx: &rusqlite::Connection,
    conflict: &Conflict,
    auto_merge: bool,
    hlc: &mut crate::hlc::Hlc,
    env: &mut crate::env::Env,
    events: &mut VecDeque<SyncEvent>,
) -> rusqlite::Result<()> {
    let now_ms = env.now_ms();
    if auto_merge {
        if let Some(merged) = conflict::auto_merge(tx, conflict)? {
            events.push_back(SyncEvent::ConflictAutoMerged {
                client_id: conflict.client_id.clone(),
            });
            hlc.observe(conflict.server_updated_at);
            let stamp = hlc.tick(now_ms);
            let op_id = crate::ids::uuid_v7(hlc.tick(now_ms), env.next_u64()).to_string();
            return conflict::write_resolution(tx, conflict, merged, stamp, &op_id, now_ms);
        }
    }
    if let Some(open) = store::conflict_for_record(tx, &conflict.client_id)? {
        let unchanged = Conflict {
            id: open.id,
            ..conflict.clone()
        } == open;
        if unchanged {
            return Ok(());
        }
    }
    let conflict_id = store::put_conflict(tx, conflict)?;
    events.push_back(SyncEvent::ConflictStored {
        conflict_id,
        client_id: conflict.client_id.clone(),
    });
    Ok(())
}

/// Stores one push result: the op's fate, the id mapping, and the record's new base.
/// A record that gains its first server id here is a change for certain: it is added to
/// `announced` (the answer's commit announces it) and takes no change note.
/// `record_server_id`: `None` when the record is gone; else its current server id, if any.
fn apply_push_result(
    tx: &rusqlite::Connection,
    op: &store::SentOp,
    record_server_id: Option<Option<String>>,
    result: &SyncResultItem,
    now_ms: u64,
    planted: crate::engine::PlantedDefects,
    announced: &mut Vec<String>,
) -> rusqlite::Result<PushOutcome> {
    // The first server id of a record that has none, when `set_pushed_version` below
    // writes it with the record's new version: one rewrite of the row instead of two.
    let mut first_server_id: Option<&str> = None;
    if let Some(server_id) = &result.id {
        match &record_server_id {
            Some(None) if result.success && result.version.is_some() => {
                first_server_id = Some(server_id);
            }
            Some(None) => {
                if store::add_id_mapping_unless_taken(tx, &op.entity_id, server_id)? {
                    announced.push(op.entity_id.clone());
                }
            }
            Some(Some(mapped)) if mapped == server_id => {}
            _ => store::set_id_mapping_unless_taken(tx, &op.entity_id, server_id, &op.entity)?,
        }
    }
    if result.success {
        let confirmed = result.id.is_some()
            && result.version.is_some()
            && result.updated_at.is_some()
            && record_server_id.is_some();
        if let (Some(version), Some(_)) = (result.version, record_server_id) {
            let overwrite = planted.push_answer_overwrites_newer_edit
                && store::planted_edited_since_sent(tx, &op.entity_id, op.seq)?;
            if overwrite {
                store::drop_pending_ops_for_record(tx, &op.entity_id)?;
            }
            // Before the op row goes: its payload becomes the record's merge base (later
            // local edits stay on top, unless the planted defect drops them).
            let mapped_now = store::set_pushed_version(
                tx,
                &op.entity_id,
                op.seq,
                version,
                result.updated_at,
                first_server_id,
            )?;
            if mapped_now {
                announced.push(op.entity_id.clone());
            }
            if overwrite {
                store::planted_overwrite_with_op(tx, &op.entity_id, op.seq)?;
            }
        }
        store::delete_op(tx, op.seq)?;
        return Ok(PushOutcome::Applied { confirmed });
    }
    // Whatever follows settles the op by the queue's rules for `pending` ops (a
    // resolution may drop it, a conflict keeps it waiting): its flight ends first.
    store::end_flight(tx, op.seq)?;
    let message = result
        .error_message
        .clone()
        .unwrap_or_else(|| "rejected".to_owned());
    match result.error_code {
        Some(ErrorCode::Stale | ErrorCode::RecordDeleted) if result.conflict.is_some() => {
            let payload = result.conflict.as_ref().expect("checked");
            store::delete_op(tx, op.seq)?;
            if payload.server_is_deleted
                || !store::has_other_unfinished_op(tx, &op.entity_id, op.seq)?
            {
                adopt_server_state(tx, &op.entity_id, payload)?;
            }
            Ok(PushOutcome::Superseded)
        }
        Some(ErrorCode::Conflict)
            if result.conflict.is_some()
                && store::get_record(tx, &op.entity_id)?
                    .is_some_and(|record| record.is_deleted)
                && store::has_other_unfinished_op(tx, &op.entity_id, op.seq)? =>
        {
            // The device deleted the record after this edit, and the delete is queued:
            // deletes win over concurrent updates, so there is nothing to ask the user
            // (as when the delete comes while the conflict is open). The edit is
            // superseded and the delete goes out next.
            store::delete_op(tx, op.seq)?;
            Ok(PushOutcome::Superseded)
        }
        Some(ErrorCode::Conflict) if result.conflict.is_some() => {
            let payload = result.conflict.as_ref().expect("checked");
            store::set_op_status(
                tx,
                op.seq,
                OpStatus::Pending,
                Some("conflict: waiting for the user"),
                now_ms,
            )?;
            let record = store::parent_record(tx, "operation_queue", &op.seq, &op.entity_id)?;
            let server_data = payload.server_data.as_object().cloned().unwrap_or_default();
            Ok(PushOutcome::Conflict(conflict::conflict_from(
                &record,
                payload.server_version,
                payload.server_updated_at,
                server_data,
                payload.server_is_deleted,
            )))
        }
        Some(code) if code.is_transient() => {
            store::set_op_status(tx, op.seq, OpStatus::Pending, Some(&message), now_ms)?;
            Ok(PushOutcome::Retry { code, message })
        }
        code => {
            store::fail_op(tx, op.seq, code, &message, now_ms)?;
            settle_rejection(tx, op, result.conflict.as_ref())?;
            Ok(PushOutcome::Failed { code, message })
        }
    }
}

/// A write the server rejected for good: the record goes back to what the server holds,
/// and the op stays `failed` in the queue as the durable report (with the `OpFailed`
/// event). Later local writes of the record stay queued on top of it (each carries the
/// whole record and is judged on its own). With none, the record takes the server's row
/// when the rejection carries it; a record the server never had becomes a local tombstone,
/// gone for the app, and its later writes are dropped (they could never apply). A
/// rejection of a record the server has, without its row (a server that refused the
/// request alone), leaves the record's data until a later write or pull replaces it.
fn settle_rejection(
    tx: &rusqlite::Connection,
    op: &store::SentOp,
    server_row: Option<&crate::wire::ConflictPayload>,
) -> rusqlite::Result<()> {
    let Some(mut record) = store::get_record(tx, &op.entity_id)? else {
        return Ok(());
    };
    if let Some(payload) = server_row {
        if !store::has_other_unfinished_op(tx, &op.entity_id, op.seq)? {
            adopt_server_state(tx, &op.entity_id, payload)?;
        }
        return Ok(());
    }
    if record.base_version > 0 {
        return Ok(());
    }
    store::drop_pending_ops_for_record(tx, &op.entity_id)?;
    store::delete_conflict_for_record(tx, &op.entity_id)?;
    if !record.is_deleted {
        record.is_deleted = true;
        store::put_record(tx, &record)?;
    }
    assert!(store::get_record(tx, &op.entity_id)?.is_some_and(|record| record.is_deleted));
    Ok(())
}

/// The record takes the server's version (the server won by the policy).
fn adopt_server_state(
    tx: &rusqlite::Connection,
    client_id: &str,
    payload: &crate::wire::ConflictPayload,
) -> rusqlite::Result<()> {
    let Some(mut record) = store::get_record(tx, client_id)? else {
        return Ok(());
    };
    let server_data = payload.server_data.as_object().cloned().unwrap_or_default();
    if payload.server_is_deleted {
        store::drop_pending_ops_for_record(tx, client_id)?;
        store::delete_conflict_for_record(tx, client_id)?;
    }
    record.version = payload.server_version;
    record.base_version = payload.server_version;
    record.updated_at = payload.server_updated_at;
    record.is_deleted = payload.server_is_deleted;
    record.data = server_data;
    store::put_record_with_base(tx, &record, &record.data, record.updated_at)
}
