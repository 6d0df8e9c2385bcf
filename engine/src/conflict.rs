//! The conflict policy (DESIGN.md §5) and user resolution of stored conflicts.
//!
//! Policy: the newer HLC stamp wins automatically; equal stamps with different data
//! become a stored conflict the user resolves (keep local, use server, merge). Deletes
//! win over concurrent updates, and tombstones are final: nothing resurrects a deleted
//! record. A resolution is a new local write based on the server's version, so it syncs
//! like any other write. This module decides; `store` does the SQL.

use crate::crash::CommitSite;
use crate::engine::Engine;
use crate::error::WriteError;
use crate::hlc::HlcStamp;
use crate::record::{changed_fields, Conflict, OpStatus, QueuedOp, Record};
use crate::store::{self, NewOp};
use crate::wire::Operation;
use rusqlite::Connection;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What to do with a pulled live record.
#[derive(Clone, Debug, PartialEq)]
pub enum PulledVerdict {
    /// No local edits in the way: the local copy becomes the server's.
    Stored,
    /// The server's copy is newer than pending local edits: they lose (op ids dropped).
    Superseded(Vec<String>),
    /// The local pending edit is newer (or a local delete is pending): keep it; its push
    /// will win at the server.
    KeptLocal,
    /// Equal stamps, different data: the user must choose.
    Conflict(Conflict),
}

/// Decides how a pulled record meets the local one (pure function of its inputs).
pub fn judge_pulled(
    local: Option<&Record>,
    pending: &[QueuedOp],
    server: &Record,
) -> PulledVerdict {
    let Some(local) = local else {
        return PulledVerdict::Stored;
    };
    if pending.is_empty() {
        // Nothing local in flight: the server's copy is the truth, unless this page is
        // older than what a push result already told us.
        return if server.version >= local.base_version {
            PulledVerdict::Stored
        } else {
            PulledVerdict::KeptLocal
        };
    }
    assert!(
        pending.iter().all(|op| op.status == OpStatus::Pending),
        "pulls run only after every push of the sync was answered"
    );
    if local.is_deleted {
        // A pending local delete wins over any concurrent update.
        return PulledVerdict::KeptLocal;
    }
    match server.updated_at.cmp(&local.updated_at) {
        std::cmp::Ordering::Greater => {
            PulledVerdict::Superseded(pending.iter().map(|op| op.op_id.clone()).collect())
        }
        std::cmp::Ordering::Less => PulledVerdict::KeptLocal,
        std::cmp::Ordering::Equal if server.data == local.data => PulledVerdict::KeptLocal,
        std::cmp::Ordering::Equal => PulledVerdict::Conflict(conflict_from(
            local,
            server.version,
            server.updated_at,
            server.data.clone(),
            false,
        )),
    }
}

/// Which side wins a concurrent write, as the server and the client both decide it.
/// Deterministic and symmetric: swapping the sides swaps the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winner {
    Local,
    Server,
    /// Identical writes: nothing to decide.
    Same,
    /// Equal stamps, different data: ask the user.
    User,
}

pub fn decide(
    local_stamp: HlcStamp,
    local_data: &Map<String, Value>,
    server_stamp: HlcStamp,
    server_data: &Map<String, Value>,
) -> Winner {
    match local_stamp.cmp(&server_stamp) {
        std::cmp::Ordering::Greater => Winner::Local,
        std::cmp::Ordering::Less => Winner::Server,
        std::cmp::Ordering::Equal if local_data == server_data => Winner::Same,
        std::cmp::Ordering::Equal => Winner::User,
    }
}

pub(crate) fn conflict_from(
    local: &Record,
    server_version: i64,
    server_updated_at: HlcStamp,
    server_data: Map<String, Value>,
    server_is_deleted: bool,
) -> Conflict {
    Conflict {
        id: 0,
        entity: local.entity.clone(),
        client_id: local.client_id.clone(),
        server_id: local.server_id.clone(),
        space_id: local.space_id.clone(),
        local_version: local.version,
        local_updated_at: local.updated_at,
        local_data: local.data.clone(),
        server_version,
        server_updated_at,
        server_data,
        server_is_deleted,
    }
}

/// Field-level auto-merge: if the two sides changed disjoint fields relative to the
/// last server-confirmed data, returns the merged data.
pub(crate) fn auto_merge(
    conn: &Connection,
    conflict: &Conflict,
) -> rusqlite::Result<Option<Map<String, Value>>> {
    if conflict.server_is_deleted {
        return Ok(None);
    }
    let Some(base) = store::base_data(conn, &conflict.client_id)? else {
        return Ok(None);
    };
    let local_changes = changed_fields(&base, &conflict.local_data);
    let server_changes = changed_fields(&base, &conflict.server_data);
    let overlap = local_changes.iter().any(|local| {
        server_changes
            .iter()
            .any(|server| server.field == local.field)
    });
    if overlap {
        return Ok(None);
    }
    let mut merged = conflict.server_data.clone();
    for change in local_changes {
        match change.server {
            // `FieldDiff::server` holds the local side here (diff of base → local).
            Some(value) => merged.insert(change.field, value),
            None => merged.remove(&change.field),
        };
    }
    Ok(Some(merged))
}

/// Writes a resolution: the record takes `data` as a new write based on the server's
/// version; the record's older pending ops and the conflict go, a new `update` is queued.
pub(crate) fn write_resolution(
    tx: &Connection,
    conflict: &Conflict,
    data: Map<String, Value>,
    stamp: HlcStamp,
    op_id: &str,
    now_ms: u64,
) -> rusqlite::Result<()> {
    assert!(stamp > conflict.server_updated_at);
    assert!(stamp > conflict.local_updated_at);
    let mut record = store::parent_record(tx, "conflicts", &conflict.id, &conflict.client_id)?;
    store::drop_pending_ops_for_record(tx, &conflict.client_id)?;
    store::delete_conflict_for_record(tx, &conflict.client_id)?;
    record.version = conflict.server_version + 1;
    record.base_version = conflict.server_version;
    record.updated_at = stamp;
    record.data = data;
    store::put_record_with_base(
        tx,
        &record,
        &conflict.server_data,
        conflict.server_updated_at,
    )?;
    store::enqueue(
        tx,
        &NewOp {
            op_id,
            entity: &record.entity,
            operation: Operation::Update,
            entity_id: &record.client_id,
            space_id: &record.space_id,
            payload: &record.data,
            base_version: conflict.server_version,
            updated_at: stamp,
            force: false,
            now_ms,
        },
    )?;
    Ok(())
}

/// Which side a merged field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Local,
    Server,
}

/// The user's answer to a stored conflict.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// Keep the local data; it is pushed as a new write over the server's version.
    KeepLocal,
    /// Take the server's version; local pending edits of the record are dropped.
    UseServer,
    /// Per changed field, which side wins (unnamed changed fields take the server's).
    MergeFields(BTreeMap<String, Side>),
    /// Given values for changed fields, over the server's data.
    MergeValues(Map<String, Value>),
}

impl Engine {
    /// Open conflicts, oldest first.
    pub fn list_conflicts(&self) -> Result<Vec<Conflict>, crate::error::ReadError> {
        Ok(store::list_conflicts(&self.conn)?)
    }

    pub fn conflict(&self, conflict_id: i64) -> Result<Option<Conflict>, crate::error::ReadError> {
        Ok(store::get_conflict(&self.conn, conflict_id)?)
    }

    /// Resolves a stored conflict; the record's waiting ops are replaced atomically.
    pub fn resolve_conflict(
        &mut self,
        conflict_id: i64,
        resolution: Resolution,
    ) -> Result<(), WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        let conflict = store::get_conflict(&self.conn, conflict_id)?
            .ok_or(WriteError::UnknownConflict(conflict_id))?;
        self.ensure_not_force_pulling(&conflict.entity)?;
        let changed: Vec<String> = conflict
            .changed_fields()
            .into_iter()
            .map(|diff| diff.field)
            .collect();
        let data = match resolution {
            Resolution::UseServer => return self.take_server_side(&conflict),
            Resolution::KeepLocal => conflict.local_data.clone(),
            Resolution::MergeFields(choices) => {
                let mut merged = conflict.server_data.clone();
                for (field, side) in choices {
                    if !changed.contains(&field) {
                        return Err(WriteError::MergeFieldNotInConflict(field));
                    }
                    if side == Side::Local {
                        match conflict.local_data.get(&field) {
                            Some(value) => merged.insert(field, value.clone()),
                            None => merged.remove(&field),
                        };
                    }
                }
                merged
            }
            Resolution::MergeValues(values) => {
                let mut merged = conflict.server_data.clone();
                for (field, value) in values {
                    if !changed.contains(&field) {
                        return Err(WriteError::MergeFieldNotInConflict(field));
                    }
                    merged.insert(field, value);
                }
                merged
            }
        };
        let now_ms = self.env.now_ms();
        let tx = self.conn.transaction()?;
        crate::engine::catch_up_clock(&mut self.hlc, &tx, &self.options)?;
        self.hlc.observe(conflict.server_updated_at);
        let stamp = self.hlc.tick(now_ms);
        let op_id =
            crate::ids::uuid_v7(self.hlc.tick(now_ms), self.env.entropy.next_u64()).to_string();
        write_resolution(&tx, &conflict, data, stamp, &op_id, now_ms)?;
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        self.crash
            .commit(tx, CommitSite::Resolution, &mut self.sync.events)?;
        self.crash_point(crate::crash::CrashPoint::AfterLocalCommit)
            .map_err(WriteError::Killed)
    }

    fn take_server_side(&mut self, conflict: &Conflict) -> Result<(), WriteError> {
        let mut record =
            store::parent_record(&self.conn, "conflicts", &conflict.id, &conflict.client_id)?;
        record.version = conflict.server_version;
        record.base_version = conflict.server_version;
        record.updated_at = conflict.server_updated_at;
        record.is_deleted = conflict.server_is_deleted;
        record.data = conflict.server_data.clone();
        let tx = self.conn.transaction()?;
        store::drop_pending_ops_for_record(&tx, &conflict.client_id)?;
        store::delete_conflict_for_record(&tx, &conflict.client_id)?;
        store::put_record_with_base(
            &tx,
            &record,
            &conflict.server_data,
            conflict.server_updated_at,
        )?;
        self.crash
            .commit(tx, CommitSite::Resolution, &mut self.sync.events)?;
        self.crash_point(crate::crash::CrashPoint::AfterLocalCommit)
            .map_err(WriteError::Killed)
    }
}

#[cfg(test)]
mod tests {
    //! The policy is a pure, symmetric function of the two versions.
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn newer_stamp_wins_and_equal_stamps_ask_the_user() {
        let a = object(json!({"name": "a"}));
        let b = object(json!({"name": "b"}));
        assert_eq!(decide(HlcStamp(2), &a, HlcStamp(1), &b), Winner::Local);
        assert_eq!(decide(HlcStamp(1), &a, HlcStamp(2), &b), Winner::Server);
        assert_eq!(decide(HlcStamp(1), &a, HlcStamp(1), &b), Winner::User);
        assert_eq!(decide(HlcStamp(1), &a, HlcStamp(1), &a), Winner::Same);
    }
}
