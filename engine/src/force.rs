//! Force sync both ways and wiping a space: the operations that discard data.
//!
//! None of them may run silently. Force sync first returns a [`ForcePlan`] (the spec's
//! exact warning text and how many local changes will be lost); only a plan turned into
//! a [`ConfirmedForce`] by [`ForcePlan::confirm`] can be executed, and a plan whose
//! counts changed meanwhile is refused as stale. Each discarding step is one transaction,
//! so a kill leaves either the old or the new state.

use crate::crash::CrashPoint;
use crate::engine::{validate_space_id, Engine};
use crate::error::{SyncError, WriteError};
use crate::ids::uuid_v7;
use crate::record::OpStatus;
use crate::store;
use crate::wire::PulledItem;

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
        let local_changes = store::count_ops(&self.conn, OpStatus::Pending, Some(entity))?
            + store::count_ops(&self.conn, OpStatus::Sending, Some(entity))?
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

    /// Runs a confirmed force. A running sync is abandoned first (its late answers are
    /// ignored). Force-from-server then pulls the entity from the start and replaces it
    /// locally in one transaction when the last page arrives; force-push marks every
    /// local change of the entity `force` and starts a sync (push, then pull).
    pub fn execute_force(&mut self, confirmed: ConfirmedForce) -> Result<(), WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
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
        self.cancel_sync()?;
        match plan.direction {
            ForceDirection::FromServer => {
                self.start_force_pull(&plan.entity);
                Ok(())
            }
            ForceDirection::PushLocal => {
                let now_ms = self.env.now_ms();
                let tx = self.conn.transaction()?;
                // A forced op that was sent before gets a new opId: under its old one the
                // server would replay the answer it already gave (the conflict or refusal
                // that made the user force) instead of forcing the write. An op never sent
                // has no answer to replay and keeps its id.
                let mut unsettled = store::ops_with_status(&tx, OpStatus::Pending)?;
                unsettled.extend(store::ops_with_status(&tx, OpStatus::Failed)?);
                for op in unsettled.iter().filter(|op| op.entity == plan.entity) {
                    let op_id = if op.attempts > 0 {
                        uuid_v7(self.hlc.tick(now_ms), self.env.next_u64()).to_string()
                    } else {
                        op.op_id.clone()
                    };
                    store::mark_op_forced(&tx, op.seq, &op_id, now_ms)?;
                }
                store::set_hlc_high_water(&tx, self.hlc.last())?;
                store::delete_entity_conflicts(&tx, &plan.entity)?;
                self.crash
                    .reached(CrashPoint::MidForce)
                    .map_err(WriteError::Killed)?;
                tx.commit()?;
                Ok(self.sync_now()?)
            }
        }
    }

    /// Replaces the entity's local state with the server's pages, atomically.
    pub(crate) fn commit_force_pull(
        &mut self,
        entity: &str,
        items: &[PulledItem],
        cursor: &str,
        version_hash: Option<&str>,
    ) -> Result<(), SyncError> {
        let now_ms = self.env.now_ms();
        let tx = self.conn.transaction()?;
        store::clear_entity(&tx, entity)?;
        for item in items {
            self.hlc.observe(item.updated_at);
            let record = crate::record::Record {
                client_id: item.client_id.clone(),
                server_id: Some(item.id.clone()),
                entity: entity.to_owned(),
                space_id: item.space_id.clone(),
                version: item.version,
                base_version: item.version,
                updated_at: item.updated_at,
                is_deleted: false,
                data: item.data.clone(),
            };
            store::put_record_with_base(&tx, &record, &record.data)?;
        }
        store::set_sync_state(&tx, entity, Some(cursor), version_hash, now_ms)?;
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        self.crash
            .reached(CrashPoint::MidForce)
            .map_err(SyncError::Killed)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes one space's records, queued ops, conflicts and id mappings, and forgets
    /// the pull cursors so the next sync re-fetches what the server still has. Auth
    /// tokens and other spaces stay. A running sync is abandoned first.
    pub fn wipe_space(&mut self, space_id: &str) -> Result<usize, WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        validate_space_id(space_id)?;
        self.cancel_sync()?;
        let tx = self.conn.transaction()?;
        let removed = store::wipe_space_rows(&tx, space_id)?;
        store::reset_all_sync_state(&tx)?;
        self.crash
            .reached(CrashPoint::MidWipe)
            .map_err(WriteError::Killed)?;
        tx.commit()?;
        Ok(removed)
    }
}
