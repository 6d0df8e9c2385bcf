//! Force sync both ways and wiping a space: the operations that discard data.
//!
//! None of them may run silently. Force sync first returns a [`ForcePlan`] (the spec's
//! exact warning text and how many local changes will be lost); only a plan turned into
//! a [`ConfirmedForce`] by [`ForcePlan::confirm`] can be executed, and a plan whose
//! counts changed meanwhile is refused as stale. Each discarding step is one transaction,
//! so a kill leaves either the old or the new state.
//!
//! A force-from-server spans many round trips but replaces the entity in one transaction:
//! its pages are staged in SQLite as they arrive (`store::force_staging`) and swapped in
//! by the last page's transaction. This module never holds a transaction open across
//! calls and never keeps a page in memory after handling it.

use crate::crash::{CommitSite, CrashPoint};
use crate::engine::{validate_space_id, Engine};
use crate::error::{SyncError, WriteError};
use crate::failure::SyncFailure;
use crate::ids::uuid_v7;
use crate::record::OpStatus;
use crate::store::{self, force_staging};
use crate::sync::SyncEvent;
use crate::wire::{PulledItem, SyncPullResponse};

/// The spec's warning for "force sync from server".
pub const FORCE_FROM_SERVER_WARNING: &str = "⚠️ Force Sync from Server\n\n\
This will overwrite all local changes with server data.\n\
Any unsynced local changes will be lost.\n\n\
Are you sure?";

/// The spec's warning for "force push local changes".
pub const FORCE_PUSH_LOCAL_WARNING: &str = "⚠️ Force Push Local Changes\n\n\
This will overwrite server data with your local changes.\n\
Any server changes will be lost.\n\n\
Are you sure?";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceDirection {
    FromServer,
    PushLocal,
}

/// What a force sync will do, for the confirmation dialog. Cannot be executed directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForcePlan {
    direction: ForceDirection,
    entity: String,
    local_changes: u64,
    open_conflicts: u64,
}

impl ForcePlan {
    pub fn direction(&self) -> ForceDirection {
        self.direction
    }

    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// The spec's exact warning text for this direction.
    pub fn warning_text(&self) -> &'static str {
        match self.direction {
            ForceDirection::FromServer => FORCE_FROM_SERVER_WARNING,
            ForceDirection::PushLocal => FORCE_PUSH_LOCAL_WARNING,
        }
    }

    /// The confirming button's label.
    pub fn confirm_label(&self) -> &'static str {
        match self.direction {
            ForceDirection::FromServer => "Force Sync",
            ForceDirection::PushLocal => "Force Push",
        }
    }

    /// Local changes (pending or failed ops) that force-from-server discards, or that
    /// force-push sends over the server's versions.
    pub fn local_changes(&self) -> u64 {
        self.local_changes
    }

    /// Open conflicts this force settles without asking (in its direction's favour).
    pub fn open_conflicts(&self) -> u64 {
        self.open_conflicts
    }

    /// The user pressed the confirming button.
    pub fn confirm(self) -> ConfirmedForce {
        ConfirmedForce { plan: self }
    }
}

/// What [`Engine::execute_force`] made take effect before it returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForceOutcome {
    /// Force from server: accepted, nothing replaced yet. Exactly one
    /// [`SyncEvent::ForceCompleted`] or
    /// [`SyncEvent::ForceFailed`] for the entity reports
    /// how it ended (offline, the failure is already queued when this returns).
    FromServerAccepted,
    /// Force push: the entity's local changes are marked forced and its conflicts
    /// settled, committed. The sync this call starts (or a later one) pushes them.
    PushCommitted,
}

/// A plan the user confirmed; the only thing [`Engine::execute_force`] accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmedForce {
    plan: ForcePlan,
}

impl Engine {
    pub fn plan_force_from_server(&self, entity: &str) -> Result<ForcePlan, WriteError> {
        self.plan_force(ForceDirection::FromServer, entity)
    }

    pub fn plan_force_push_local(&self, entity: &str) -> Result<ForcePlan, WriteError> {
        self.plan_force(ForceDirection::PushLocal, entity)
    }

    fn plan_force(&self, direction: ForceDirection, entity: &str) -> Result<ForcePlan, WriteError> {
        self.entity_config(entity)?;
        let local_changes = store::count_unfinished_ops(&self.conn, Some(entity))?
            + store::count_ops(&self.conn, OpStatus::Failed, Some(entity))?;
        let open_conflicts = store::list_conflicts(&self.conn)?
            .iter()
            .filter(|conflict| conflict.entity == entity)
            .count() as u64;
        Ok(ForcePlan {
            direction,
            entity: entity.to_owned(),
            local_changes,
            open_conflicts,
        })
    }

    /// Runs a confirmed force and says what took effect before it returned.
    ///
    /// Only one force-from-server runs at a time: while one runs, another force is refused
    /// with [`WriteError::SyncInProgress`] (it would have to abandon the first, whose
    /// outcome the app waits for).
    ///
    /// **Force from server** ([`ForceOutcome::FromServerAccepted`]): a running sync is
    /// abandoned (its late answers are ignored) and runs again once the force ended, like
    /// a sync requested while the force runs. The entity is pulled from the start; each
    /// page is staged in SQLite as it arrives, and the last page's transaction swaps the
    /// staged rows in for the entity's records, ops and conflicts, atomically. Exactly one
    /// event reports the end: [`SyncEvent::ForceCompleted`], or [`SyncEvent::ForceFailed`]
    /// when anything ended the pull early — a transport failure, a server error, a refused
    /// or malformed page, a cancellation, or the app being offline when the force was
    /// confirmed (then nothing is sent, as for every other sync). A failed force discarded
    /// nothing and is not retried by itself: a retry would keep the entity locked for
    /// writes through the whole backoff and would act on a confirmation the user gave
    /// long before; the user may press the button again.
    ///
    /// **Force push** ([`ForceOutcome::PushCommitted`]): marks every local change of the
    /// entity `force` and settles its conflicts in one transaction, then starts a sync
    /// (push, then pull); offline, the marks wait for the network like any queued write.
    /// Once the marks committed the result is `PushCommitted`, even when the simulator's
    /// crash hook kills the app in the sync this call starts: that kill surfaces at the
    /// next call. A kill inside the force's own transaction is `Killed` and committed
    /// nothing.
    pub fn execute_force(&mut self, confirmed: ConfirmedForce) -> Result<ForceOutcome, WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        if self.sync.force_pull_entity().is_some() {
            return Err(WriteError::SyncInProgress(
                "a force while a force from the server runs",
            ));
        }
        let plan = confirmed.plan;
        let current = self.plan_force(plan.direction, &plan.entity)?;
        if current != plan {
            return Err(WriteError::StalePlan(format!(
                "{} local changes and {} conflicts now, {} and {} when planned",
                current.local_changes,
                current.open_conflicts,
                plan.local_changes,
                plan.open_conflicts
            )));
        }
        match plan.direction {
            ForceDirection::FromServer => {
                if !self.sync.online() {
                    self.sync.report(SyncEvent::ForceFailed {
                        entity: plan.entity,
                        reason: SyncFailure::Offline,
                    });
                    return Ok(ForceOutcome::FromServerAccepted);
                }
                // The force stages pages and replaces the entity: no other process's sync
                // may run beside it.
                if !self.take_sync_lock()? {
                    return Err(WriteError::SyncInProgress(
                        "a force from the server while another process of the app syncs",
                    ));
                }
                let abandons_a_sync = self.sync.is_running() || self.sync.rerun_requested();
                let started = self
                    .abandon_run()
                    .and_then(|()| self.start_force_pull(&plan.entity, abandons_a_sync));
                self.release_sync_lock_if_idle();
                started?;
                Ok(ForceOutcome::FromServerAccepted)
            }
            ForceDirection::PushLocal => {
                self.cancel_sync()?;
                match self.commit_force_push(&plan.entity) {
                    // Killed right after the marks committed: they took effect.
                    Ok(()) | Err(WriteError::Killed(CrashPoint::AfterCommit)) => {}
                    Err(error) => return Err(error),
                }
                match self.sync_now() {
                    // The kill happened after the force committed: the caller hears what
                    // took effect, and the dead engine refuses the next call.
                    Ok(()) | Err(SyncError::Killed(_)) => Ok(ForceOutcome::PushCommitted),
                    Err(error) => Err(error.into()),
                }
            }
        }
    }

    /// Force push's one transaction: every pending or failed op of `entity` becomes a
    /// forced op, and the entity's conflicts are settled in the local favour.
    fn commit_force_push(&mut self, entity: &str) -> Result<(), WriteError> {
        let now_ms = self.env.now_ms();
        let tx = self.conn.transaction()?;
        crate::engine::catch_up_clock(&mut self.hlc, &tx, &self.options)?;
        // A forced op that was sent before gets a new opId: under its old one the server
        // would replay the answer it already gave (the conflict or refusal that made the
        // user force) instead of forcing the write. An op never sent has no answer to
        // replay and keeps its id.
        let mut unsettled = store::ops_with_status(&tx, OpStatus::Pending)?;
        unsettled.extend(store::ops_with_status(&tx, OpStatus::Failed)?);
        for op in unsettled.iter().filter(|op| op.entity == entity) {
            let op_id = if op.attempts > 0 {
                uuid_v7(self.hlc.tick(now_ms), self.env.next_u64()).to_string()
            } else {
                op.op_id.clone()
            };
            store::mark_op_forced(&tx, op.seq, &op_id, now_ms)?;
        }
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        store::delete_entity_conflicts(&tx, entity)?;
        self.crash
            .reached(CrashPoint::MidForce)
            .map_err(WriteError::Killed)?;
        self.crash
            .commit(tx, CommitSite::ForcePush, &mut self.sync.events)?;
        Ok(())
    }

    /// One page of a running force-from-server of `entity`, already checked by the pull
    /// page rules. A page with more to come is staged in its own transaction and the next
    /// page is asked for; the last page is staged and the whole replacement swapped in by
    /// one transaction, which also stores the cursor and the server's checksum.
    pub(crate) fn handle_force_page(
        &mut self,
        entity: &str,
        page: SyncPullResponse,
        items: Vec<PulledItem>,
    ) -> Result<(), SyncError> {
        assert_eq!(self.sync.force_pull_entity(), Some(entity));
        let tx = self.conn.transaction()?;
        force_staging::stage_page(&tx, entity, &items, &page.deleted_ids)?;
        if page.has_more {
            self.crash
                .commit(tx, CommitSite::ForceStaged, &mut self.sync.events)?;
            self.crash_point(CrashPoint::BetweenPullPages)
                .map_err(SyncError::Killed)?;
            self.emit_next_page(entity, Some(page.last_sync_at));
            return Ok(());
        }
        if let Some(reason) = force_staging::refusal(&tx, entity)? {
            drop(tx);
            return self.fail_force(SyncFailure::invalid_answer(format!(
                "pull page refused: {reason}"
            )));
        }
        if let Some(newest) = force_staging::newest_stamp(&tx)? {
            self.hlc.observe(newest);
        }
        force_staging::swap_in(&tx, entity)?;
        let now_ms = self.env.now_ms();
        store::set_sync_state(
            &tx,
            entity,
            Some(&page.last_sync_at),
            page.version_hash.as_deref(),
            now_ms,
        )?;
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        self.crash
            .reached(CrashPoint::MidForce)
            .map_err(SyncError::Killed)?;
        self.crash
            .commit(tx, CommitSite::ForceSwap, &mut self.sync.events)?;
        self.end_force_pull(SyncEvent::ForceCompleted {
            entity: entity.to_owned(),
        })
    }

    /// Ends the running force-from-server without replacing anything: the staged pages
    /// are dropped and the app hears why.
    pub(crate) fn fail_force(&mut self, reason: SyncFailure) -> Result<(), SyncError> {
        let entity = self
            .sync
            .force_pull_entity()
            .expect("a force-from-server runs")
            .to_owned();
        self.crash.commit_in(
            &mut self.conn,
            CommitSite::StagingCleared,
            &mut self.sync.events,
            force_staging::clear,
        )?;
        self.end_force_pull(SyncEvent::ForceFailed { entity, reason })
    }

    /// Deletes one space's records, queued ops, conflicts and id mappings, and forgets
    /// the pull cursors so the next sync re-fetches what the server still has. Auth
    /// tokens and other spaces stay. A running sync is abandoned first.
    pub fn wipe_space(&mut self, space_id: &str) -> Result<usize, WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        validate_space_id(space_id)?;
        // Another process's sync would store cursors past what the wipe forgot.
        if !self.take_sync_lock()? {
            return Err(WriteError::SyncInProgress(
                "a wipe while another process of the app syncs",
            ));
        }
        let wiped = self.wipe_space_locked(space_id);
        self.sync.lock = None;
        wiped
    }

    fn wipe_space_locked(&mut self, space_id: &str) -> Result<usize, WriteError> {
        self.abandon_run()?;
        let tx = self.conn.transaction()?;
        let removed = store::wipe_space_rows(&tx, space_id)?;
        store::reset_all_sync_state(&tx)?;
        self.crash
            .reached(CrashPoint::MidWipe)
            .map_err(WriteError::Killed)?;
        self.crash
            .commit(tx, CommitSite::Wipe, &mut self.sync.events)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
