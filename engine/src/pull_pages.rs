//! Pull pages in a sync: each page merged with its cursor in one transaction, the
//! checksum compared inside the transaction of the page that completes a pass, and the
//! whole passes that follow from it — a repair (the checksum disagreed) or a resync (the
//! server answered `RESYNC_REQUIRED`: it purged tombstones a page after the device's
//! cursor would have carried). A whole pass stores no cursor before its last page and
//! keeps a durable "under way" mark, so a pass cut short runs again whole.
//!
//! This module owns what a pull answer does to the database and to the machine's phase;
//! the machine itself (inputs, outputs, timers) stays in `sync.rs`. It never sends: the
//! next request is queued through `emit_next_page` / `emit_pull`.

use crate::conflict::PulledVerdict;
use crate::crash::{CommitSite, CrashPoint};
use crate::engine::Engine;
use crate::error::SyncError;
use crate::failure::SyncFailure;
use crate::pull::{
    self, forget_records_missing_on_server, merge_pulled_delete, merge_pulled_item,
    parse_pull_page, well_formed_page, PageKind,
};
use crate::push::settle_conflict;
use crate::store;
use crate::sync::{Phase, RepairPass, SyncEvent};
use crate::wire::{into_envelope, Envelope, ErrorCode, PulledItem, SyncAnswer, SyncPullResponse};
use std::collections::BTreeSet;

impl Engine {
    pub(crate) fn handle_pull_response(
        &mut self,
        entity: &str,
        operation_name: &str,
        cursor: &str,
        answer: SyncAnswer,
    ) -> Result<(), SyncError> {
        let response = match answer {
            SyncAnswer::Json(response) => response,
            SyncAnswer::Pull { page, items } => {
                return match well_formed_page(page, items) {
                    Some((page, items)) => self.apply_pull_page(entity, cursor, page, items),
                    None => self.fail_sync(SyncFailure::invalid_answer("malformed pull response")),
                }
            }
            SyncAnswer::Push(_) => {
                return self.fail_sync(SyncFailure::invalid_answer("a push answer to a pull"))
            }
        };
        let payload = match into_envelope(operation_name, response) {
            Envelope::Data(payload) => payload,
            Envelope::Error {
                code: Some(ErrorCode::Unauthorized),
                message,
            } => return self.fail_sync(SyncFailure::AuthRequired { message }),
            Envelope::Error {
                code: Some(ErrorCode::ResyncRequired),
                message,
            } => return self.start_resync(entity, cursor, message),
            Envelope::Error { code, message } => {
                return self.fail_sync(SyncFailure::ServerError { code, message })
            }
        };
        let Some((page, items)) = parse_pull_page(payload) else {
            return self.fail_sync(SyncFailure::invalid_answer("malformed pull response"));
        };
        self.apply_pull_page(entity, cursor, page, items)
    }

    /// A pull page, read and well formed: checked against the run of pages and the
    /// device, then applied.
    fn apply_pull_page(
        &mut self,
        entity: &str,
        cursor: &str,
        page: SyncPullResponse,
        items: Vec<PulledItem>,
    ) -> Result<(), SyncError> {
        // A page with more to come must move the cursor somewhere this run of pages has
        // not been: asking again from a cursor already sent would get the same pages
        // again, forever. Refused before anything of the page is written.
        let stalled = page.has_more && !self.sync.paging.advances(cursor, &page.last_sync_at);
        if stalled && !self.options.planted_defects.trust_repeated_cursor {
            return self.fail_sync(SyncFailure::PagingStalled {
                entity: entity.to_owned(),
                cursor: page.last_sync_at,
            });
        }
        let kind = match self.sync.phase {
            Phase::ForcePull { .. } => PageKind::Replacement,
            _ => PageKind::Incremental,
        };
        // Which rows are new to the device is read before the page's transaction: no other
        // process of the app can add one in between, since this sync holds the sync lock
        // and a local write makes a client id of its own.
        let new_rows = match pull::overreach(&self.conn, entity, kind, &items, &page.deleted_ids)? {
            Ok(new_rows) => new_rows,
            Err(reason) => {
                return self.fail_sync(SyncFailure::invalid_answer(format!(
                    "pull page refused: {reason}"
                )))
            }
        };
        if self.sync.force_pull_entity().is_some() {
            return self.handle_force_page(entity, page, items);
        }
        let Phase::Pulling {
            entity_index,
            mut repair,
        } = self.sync.phase.clone()
        else {
            unreachable!("a pull answer arrives only while pulling");
        };
        let auto_merge = self
            .options
            .registry
            .get(entity)
            .is_some_and(|config| config.auto_merge_fields);
        let now_ms = self.env.now_ms();
        // Records the page creates, announced at its commit without change notes.
        let mut created = Vec::new();
        let tx = self.conn.transaction()?;
        // An auto-merge below hands out stamps.
        crate::engine::catch_up_clock(&mut self.hlc, &tx, &self.options)?;
        // Its statements are prepared once for the page's rows, and returned to the
        // connection's cache before the commit.
        let mut new_row_writer = store::NewRowWriter::new(&tx)?;
        for (item, new_row) in items.iter().zip(new_rows) {
            self.hlc.observe(item.updated_at);
            if let Some(repair) = repair.as_mut() {
                repair.seen_server_ids.insert(item.id.clone());
            }
            match merge_pulled_item(
                &tx,
                entity,
                item,
                new_row,
                &mut new_row_writer,
                self.options.planted_defects,
                &mut created,
            )? {
                PulledVerdict::Stored | PulledVerdict::KeptLocal => {}
                PulledVerdict::Superseded(op_ids) => {
                    for op_id in op_ids {
                        self.sync.events.push_back(SyncEvent::OpSuperseded {
                            op_id,
                            client_id: item.client_id.clone(),
                        });
                    }
                }
                PulledVerdict::Conflict(conflict) => settle_conflict(
                    &tx,
                    &conflict,
                    auto_merge,
                    &mut self.hlc,
                    &mut self.env,
                    &mut self.sync.events,
                )?,
            }
        }
        drop(new_row_writer);
        for server_id in &page.deleted_ids {
            if let Some(repair) = repair.as_mut() {
                repair.seen_server_ids.insert(server_id.clone());
            }
            for op_id in merge_pulled_delete(&tx, server_id)? {
                let client_id = store::client_id_for_server_id(&tx, server_id)?.unwrap_or_default();
                self.sync
                    .events
                    .push_back(SyncEvent::OpSuperseded { op_id, client_id });
            }
        }
        if !page.has_more {
            let planted = self.options.planted_defects.resync_keeps_missing_rows;
            if let Some(repair) = repair.as_ref().filter(|pass| !(pass.resync && planted)) {
                for (op_id, client_id) in
                    forget_records_missing_on_server(&tx, entity, &repair.seen_server_ids)?
                {
                    self.sync
                        .events
                        .push_back(SyncEvent::OpSuperseded { op_id, client_id });
                }
            }
        }
        // A whole pass (a resync or a repair) stores no cursor before its last page, and
        // marks itself under way, so that a pass cut short runs again whole: only a whole
        // pass can tell which records the server no longer has.
        // The checksum is compared inside the page's transaction: a mismatch starts a
        // repair pass, which this transaction already marks under way, cursor cleared.
        let start_repair = match (&page.version_hash, page.has_more) {
            (Some(server_hash), false) => {
                needs_repair(&tx, &self.sync.repaired, entity, server_hash)?
            }
            _ => false,
        };
        let whole_pass = repair.is_some() || start_repair;
        let pass_goes_on = (repair.is_some() && page.has_more) || start_repair;
        if whole_pass {
            store::set_resync_under_way(&tx, entity, pass_goes_on)?;
        }
        store::set_sync_state(
            &tx,
            entity,
            (!pass_goes_on).then_some(page.last_sync_at.as_str()),
            page.version_hash.as_deref(),
            now_ms,
        )?;
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        self.crash.commit_announcing(
            tx,
            CommitSite::PullPage,
            &mut self.sync.events,
            Some((entity, &created)),
        )?;

        if page.has_more {
            self.sync.phase = Phase::Pulling {
                entity_index,
                repair,
            };
            self.crash_point(CrashPoint::BetweenPullPages)
                .map_err(SyncError::Killed)?;
            self.emit_next_page(entity, Some(page.last_sync_at));
            return Ok(());
        }
        if start_repair {
            self.sync.repaired.insert(entity.to_owned());
            self.sync.phase = Phase::Pulling {
                entity_index,
                repair: Some(RepairPass::default()),
            };
            self.sync.events.push_back(SyncEvent::RepairStarted {
                entity: entity.to_owned(),
            });
            self.emit_pull(entity, None);
            return Ok(());
        }
        self.sync.phase = Phase::Pulling {
            entity_index: entity_index + 1,
            repair: None,
        };
        self.advance()
    }

    /// The server answered a pull of `entity` from `cursor` with `RESYNC_REQUIRED`: it
    /// purged tombstones the pages after that cursor would have carried. The entity is
    /// pulled again from the start in this sync, as a repair pass: records the server no
    /// longer has are forgotten unless an op of theirs is unfinished, and pending ops stay
    /// queued and are pushed as always. Nothing is written before the first page comes
    /// (a kill before it leaves the old cursor, which the server refuses again).
    /// A pass from the start cannot be too old, so a server that says so there (or in a
    /// force from the server, which pulls from the start) fails the sync instead.
    fn start_resync(
        &mut self,
        entity: &str,
        cursor: &str,
        message: String,
    ) -> Result<(), SyncError> {
        let failure = |message| SyncFailure::ServerError {
            code: Some(ErrorCode::ResyncRequired),
            message,
        };
        let Phase::Pulling {
            entity_index,
            repair: None,
        } = self.sync.phase
        else {
            return self.fail_sync(failure(message));
        };
        if cursor.is_empty() {
            return self.fail_sync(failure(message));
        }
        self.begin_resync_pass(entity_index, entity, true);
        Ok(())
    }

    /// Pulls `entity` from the start as a resync pass (`announce`: the server required
    /// it, and the app hears `ResyncStarted`; otherwise a pass cut short runs again). Its
    /// pages store no cursor until the last one, which stores the pass's end and clears
    /// the durable "resync under way" mark its first page set: a pass cut short leaves the
    /// entity without a cursor and with the mark, and the next sync runs it again whole.
    pub(crate) fn begin_resync_pass(&mut self, entity_index: usize, entity: &str, announce: bool) {
        self.sync.phase = Phase::Pulling {
            entity_index,
            repair: Some(RepairPass {
                resync: true,
                ..RepairPass::default()
            }),
        };
        if announce {
            self.sync.events.push_back(SyncEvent::ResyncStarted {
                entity: entity.to_owned(),
            });
        }
        self.emit_pull(entity, None);
    }
}

/// True when nothing of `entity` is pending, its local checksum differs from the
/// server's, and it was not repaired already in this sync (`repaired`).
fn needs_repair(
    conn: &rusqlite::Connection,
    repaired: &BTreeSet<String>,
    entity: &str,
    server_hash: &str,
) -> Result<bool, SyncError> {
    if repaired.contains(entity) {
        return Ok(false);
    }
    // A failed op's record went back to the server's copy, so it does not count.
    let unsettled = store::count_unfinished_ops(conn, Some(entity))?;
    if unsettled > 0 {
        return Ok(false);
    }
    Ok(local_version_hash(conn, entity)? != server_hash)
}

/// The checksum of the local copy, computed exactly as the server computes its own.
pub(crate) fn local_version_hash(
    conn: &rusqlite::Connection,
    entity: &str,
) -> rusqlite::Result<String> {
    store::version_hash(conn, entity)
}
