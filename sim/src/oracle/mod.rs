//! The oracle: the reference model of acknowledged writes and every invariant the
//! simulator checks, as the run goes and at its end. Every driver — the random world, the
//! scenarios, the fuzz targets, the integration tests — asks this one module; a
//! scenario's `expect converged` is [`Oracle::difference`], not a second checker.
//!
//! Checked as the run goes: a reopened database passes `check_invariants` and holds no
//! other tenant's rows; cursors never move backwards; a `versionHash` repair never
//! happens (it would mean the local copy silently diverged); a request with one tenant's
//! token naming another tenant is refused and changes nothing; every acknowledged write
//! carries a stamp newer than what it happened after, every stored conflict is between
//! concurrent writes, and after every call the records it touched pass read-your-writes
//! and monotonic reads (`causality.rs`, by the harness's own happens-before relation).
//! Checked at the end: one server effect per `opId`, no duplicate records, tenant
//! isolation on the server and on every device, no acknowledged write lost (never to a
//! version it happened after), and every device equal to the server.
//!
//! The oracle reads engines and the server; it never drives them.

mod causality;
mod model;
mod notifications;
mod rejections;

pub use causality::{Causality, Order, Origin};
pub use model::{AckedWrite, Model, ServerView};
pub use notifications::Notifications;
pub use rejections::check_stamp_not_dragged_ahead;

use crate::kernel::device::Device;
use crate::kernel::{token_of, violation, Failure};
use crate::server::ReferenceServer;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use sync_engine::wire::{ErrorCode, SyncRequest};
use sync_engine::{Engine, HlcStamp, OpStatus, Record, SyncEvent};

#[derive(Debug, Default)]
pub struct Oracle {
    pub model: Model,
    /// Last cursor seen per (device, tenant, entity), as (commit stamp, row id).
    cursors: BTreeMap<(usize, String, String), (u64, String)>,
    pub invariant_checks: u64,
    pub acknowledged_writes: u64,
    /// True when a driver answers the devices' requests itself and may lie, as a hostile
    /// server would (the fuzz targets). The checks that hold only for the reference
    /// server's honest answers — cursors never move backwards, no `versionHash` repair —
    /// are then skipped; every other check stays.
    pub hostile_server: bool,
    /// Ops a device sent alone in a push request that the server refused whole with
    /// `VALIDATION`: the server refused that op, although it stored no result for it.
    pub refused_alone: BTreeSet<String>,
    /// The harness's own happens-before relation and what each device has shown.
    pub causality: Causality,
    /// Per device, the records (client or server ids) the last call or delivery touched,
    /// checked for read-your-writes and monotonic reads once it returns.
    touched: BTreeMap<usize, BTreeSet<String>>,
    /// What each device showed at the last check, and what its engine announced since.
    notifications: Notifications,
    /// (device, tenant, entity) pulled again from the start in the device's current
    /// sync (a resync): its cursor goes back to the pass's end, legitimately.
    resyncing: BTreeSet<(usize, String, String)>,
    /// (device, tenant, entity) that pulled from no cursor while it held records with
    /// server ids, after the server purged tombstones of the entity: the pass cannot bring
    /// those deletes, so one repair may follow, in that sync or (while ops of the entity
    /// were pending, which holds the checksum back) a later one. The repair consumes it.
    repair_excused: BTreeSet<(usize, String, String)>,
}

impl Oracle {
    /// The app was told this write succeeded: the record as the device now holds it must
    /// survive unless something the model knows of discards it. `stored_stamp` is the
    /// stamp the server can store for it (a stamp far ahead is clamped).
    pub fn acknowledge(
        &mut self,
        device: usize,
        tenant: &str,
        record: &Record,
        stored_stamp: HlcStamp,
    ) -> Result<(), Failure> {
        let version = self
            .causality
            .written(device, tenant, record)
            .map_err(violation)?;
        self.invariant_checks += 1;
        self.model.acknowledge(
            tenant,
            &record.client_id,
            AckedWrite {
                device,
                entity: record.entity.clone(),
                space_id: record.space_id.clone(),
                stamp: stored_stamp,
                data: record.data.clone(),
                deleted: record.is_deleted,
                discarded: None,
                version: Some(version),
            },
        );
        self.acknowledged_writes += 1;
        Ok(())
    }

    /// A database just reopened: its own invariants hold, and it holds no row another
    /// tenant created. Writes committed just before a kill were never acknowledged, so
    /// the model learns their ids here.
    pub fn check_reopened(
        &mut self,
        device: &Device,
        tenant: &str,
        engine: &Engine,
    ) -> Result<(), Failure> {
        let name = &device.name;
        engine
            .check_invariants()
            .map_err(|message| violation(format!("{name} after reopen: {message}")))?;
        self.invariant_checks += 1;
        self.take_in_as_found(device, tenant, engine)
    }

    /// What a process that died left in the database, read through `engine`: every record
    /// is the tenant's, the ids of writes it committed unacknowledged join the model, and
    /// each record is entered as found (its past unknown), the baseline of the device's
    /// next notification check.
    fn take_in_as_found(
        &mut self,
        device: &Device,
        tenant: &str,
        engine: &Engine,
    ) -> Result<(), Failure> {
        let name = &device.name;
        self.touched.remove(&device.index);
        let records = engine.all_records().map_err(storage)?;
        for record in &records {
            if let Some(owner) = self.model.tenant_of(&record.client_id) {
                if owner != tenant {
                    return Err(violation(format!(
                        "tenant isolation: {name}'s {tenant} database holds {} created in {owner}",
                        record.client_id
                    )));
                }
            }
            self.model.record_create(tenant, &record.client_id);
        }
        self.release_discarded();
        self.notifications.opened(device.index, tenant, &records);
        self.causality.hostile_server = self.hostile_server;
        for record in &records {
            let client_id = record.client_id.as_str();
            self.causality
                .check_shown(
                    device.index,
                    tenant,
                    client_id,
                    Some(record),
                    Origin::Reopened,
                    || has_queued_op(engine, client_id),
                )
                .map_err(|message| violation(format!("{name} after reopen: {message}")))?;
        }
        self.invariant_checks += 1;
        Ok(())
    }

    /// Records the ids an answer delivered to `device` names (pulled rows, tombstones,
    /// push results): they are checked once the delivery's call returns.
    pub fn touched_by_answer(&mut self, device: usize, response: &Value) {
        let Some(Value::Object(data)) = response.get("data") else {
            return;
        };
        let touched = self.touched.entry(device).or_default();
        for payload in data.values() {
            for list in ["items", "results"] {
                let rows = payload.get(list).and_then(Value::as_array);
                for row in rows.into_iter().flatten() {
                    if let Some(client_id) = row.get("clientId").and_then(Value::as_str) {
                        touched.insert(client_id.to_owned());
                    }
                }
            }
            let deleted = payload.get("deletedIds").and_then(Value::as_array);
            for id in deleted.into_iter().flatten().filter_map(Value::as_str) {
                touched.insert(id.to_owned());
            }
        }
    }

    /// Discards the model recorded since the last check excuse the change they bring.
    fn release_discarded(&mut self) {
        for (device, tenant, client_id) in self.model.take_released() {
            self.causality.excuse(device, &tenant, &client_id);
        }
    }

    /// After a call into `device`'s engine returned: every record it touched (named by the
    /// answer it handled or by the events it emitted) still shows the device's own
    /// acknowledged writes and never an older version than before. `origin` says whether
    /// a version first seen now was made by the device's user or came from the server.
    pub fn check_touched(
        &mut self,
        device: &Device,
        tenant: &str,
        engine: &Engine,
        origin: Origin,
    ) -> Result<(), Failure> {
        self.release_discarded();
        let Some(touched) = self.touched.remove(&device.index) else {
            return Ok(());
        };
        self.causality.hostile_server = self.hostile_server;
        for id in touched {
            let record = engine.get(&id).map_err(storage)?;
            let client_id = record
                .as_ref()
                .map_or(id, |record| record.client_id.clone());
            self.causality
                .check_shown(
                    device.index,
                    tenant,
                    &client_id,
                    record.as_ref(),
                    origin,
                    || has_queued_op(engine, &client_id),
                )
                .map_err(|message| violation(format!("{}: {message}", device.name)))?;
            self.invariant_checks += 1;
        }
        Ok(())
    }

    /// After a call into `device`'s engine returned and its events were drained: every
    /// record whose shown state changed was announced, and nothing else
    /// (`notifications.rs`).
    pub fn check_notifications(
        &mut self,
        device: &Device,
        tenant: &str,
        engine: &Engine,
        now: bool,
    ) -> Result<(), Failure> {
        let compared = self
            .notifications
            .check(device.index, tenant, engine, now)
            .map_err(|message| violation(format!("{}: {message}", device.name)))?;
        self.invariant_checks += compared.min(1);
        Ok(())
    }

    /// The device's process ended (a kill): what its last call touched was never checked
    /// and the reopen checks every record anyway.
    pub fn process_ended(&mut self, device: usize) {
        self.touched.remove(&device);
        self.resyncing.retain(|(index, _, _)| *index != device);
        self.notifications.forget(device);
    }

    /// The device's background process died inside a call while the app runs on: what
    /// that call committed was never announced nor checked, so the device's records are
    /// taken in as a reopen finds them (read through the app's `engine`).
    pub fn background_died(
        &mut self,
        device: &Device,
        tenant: &str,
        engine: &Engine,
    ) -> Result<(), Failure> {
        self.take_in_as_found(device, tenant, engine)
    }

    /// The device's app was killed inside a call, before handing out that call's events:
    /// replacements it may have announced are not judged at the reopen.
    pub fn killed_mid_call(&mut self, device: usize, tenant: &str) {
        self.causality.excuse_all(device, tenant);
        self.notifications.forget(device);
    }

    /// The device logged out of `tenant`: what it knew of the tenant's records is gone
    /// with the database.
    pub fn logged_out(&mut self, device: usize, tenant: &str) {
        self.repair_excused
            .retain(|(index, excused_tenant, _)| !(*index == device && excused_tenant == tenant));
        self.touched.remove(&device);
        self.notifications.forget(device);
        self.causality.forget(device, tenant);
    }

    /// What an engine event tells the oracle.
    pub fn engine_event(
        &mut self,
        device: &Device,
        tenant: &str,
        event: &SyncEvent,
    ) -> Result<(), Failure> {
        match event {
            SyncEvent::OpFailed { client_id, .. } => {
                self.model.discard_record(
                    device.index,
                    tenant,
                    client_id,
                    "reported permanent failure",
                );
                self.announced(device.index, tenant, client_id);
            }
            SyncEvent::OpSuperseded { client_id, .. }
            | SyncEvent::ConflictAutoMerged { client_id } => {
                self.announced(device.index, tenant, client_id);
            }
            SyncEvent::ConflictStored {
                conflict_id,
                client_id,
            } => {
                self.touched
                    .entry(device.index)
                    .or_default()
                    .insert(client_id.clone());
                let conflict = device
                    .engine
                    .as_ref()
                    .map(|engine| engine.conflict(*conflict_id))
                    .transpose()
                    .map_err(storage)?
                    .flatten();
                if let Some(conflict) = conflict {
                    self.causality
                        .check_conflict(device.index, tenant, &conflict)
                        .map_err(|message| violation(format!("{}: {message}", device.name)))?;
                    self.invariant_checks += 1;
                }
            }
            SyncEvent::RepairStarted { entity }
                if self.repair_excused.remove(&(
                    device.index,
                    tenant.to_owned(),
                    entity.clone(),
                )) =>
            {
                self.cursors
                    .remove(&(device.index, tenant.to_owned(), entity.clone()));
            }
            SyncEvent::RepairStarted { entity } if !self.hostile_server => {
                return Err(violation(format!(
                    "silent divergence: {}'s copy of {entity} in tenant {tenant} disagreed with the server's \
                     versionHash after a complete pull with nothing pending",
                    device.name
                )));
            }
            SyncEvent::ResyncStarted { entity } => {
                // A pull from the start: until the sync ends, the cursor may go back.
                let key = (device.index, tenant.to_owned(), entity.clone());
                self.cursors.remove(&key);
                self.resyncing.insert(key);
            }
            SyncEvent::SyncCompleted | SyncEvent::SyncFailed { .. } => {
                self.resyncing
                    .retain(|(index, _, _)| *index != device.index);
            }
            SyncEvent::ForceCompleted { entity } => {
                self.causality.excuse_entity(device.index, tenant, entity);
                self.cursors
                    .remove(&(device.index, tenant.to_owned(), entity.clone()));
                self.model
                    .force_from_server_ended(device.index, tenant, entity, true);
            }
            SyncEvent::ForceFailed { entity, .. } => {
                self.model
                    .force_from_server_ended(device.index, tenant, entity, false);
            }
            SyncEvent::RecordsChanged { entity, ids } => {
                self.notifications
                    .announce(device.index, entity, ids)
                    .map_err(|message| violation(format!("{}: {message}", device.name)))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The engine announced that the device's copy of `client_id` was replaced (its op
    /// superseded or failed, or an auto-merge): not a silent revert.
    fn announced(&mut self, device: usize, tenant: &str, client_id: &str) {
        self.causality.excuse(device, tenant, client_id);
        self.touched
            .entry(device)
            .or_default()
            .insert(client_id.to_owned());
    }

    /// Cursors never move backwards (a repair, force, wipe or logout resets them).
    pub fn check_cursors(
        &mut self,
        device: &Device,
        tenant: &str,
        engine: &Engine,
        entities: &[String],
    ) -> Result<(), Failure> {
        if self.hostile_server {
            // A lying server may hand out any cursor; only its honest answers must not
            // move a cursor backwards.
            return Ok(());
        }
        self.invariant_checks += 1;
        for entity in entities {
            let Some(cursor) = engine.cursor(entity).map_err(storage)? else {
                continue;
            };
            let parsed = parse_cursor(&cursor);
            let key = (device.index, tenant.to_owned(), entity.clone());
            if self.resyncing.contains(&key) {
                continue;
            }
            if let Some(previous) = self.cursors.get(&key) {
                if parsed < *previous {
                    return Err(violation(format!(
                        "cursor moved backwards on {} tenant {tenant} {entity}: {previous:?} -> {parsed:?}",
                        device.name
                    )));
                }
            }
            self.cursors.insert(key, parsed);
        }
        Ok(())
    }

    /// The device pulls `entity` from no cursor: outside a resync it announced, while it
    /// holds records with server ids, after the server purged tombstones of the entity,
    /// a repair may follow (see `repair_excused`).
    pub fn pull_from_start(
        &mut self,
        device: usize,
        tenant: &str,
        entity: &str,
        holds_synced_records: impl FnOnce() -> bool,
    ) {
        let key = (device, tenant.to_owned(), entity.to_owned());
        if !self.resyncing.contains(&key) && holds_synced_records() {
            self.repair_excused.insert(key);
        }
    }

    /// A force from the server, a wipe or a logout starts the device's cursors over.
    pub fn reset_cursors(&mut self, device: usize, tenant: &str) {
        self.cursors
            .retain(|(index, cursor_tenant, _), _| !(*index == device && cursor_tenant == tenant));
    }

    /// A pull and a push carrying `own`'s token but naming tenant `other` must be refused
    /// and must change nothing on the server.
    pub fn probe_cross_tenant(
        &mut self,
        server: &mut ReferenceServer,
        own: &str,
        other: &str,
        entity: &str,
        probe_number: u64,
    ) -> Result<(), Failure> {
        let tenants = server.tenants();
        let effects_before = server.effects().len();
        let stamps_before: Vec<u64> = tenants.iter().map(|t| server.commit_stamp(t)).collect();
        let pull = SyncRequest {
            request_id: 0,
            operation_name: format!("syncPull{entity}"),
            tenant_id: own.to_owned(),
            token: token_of(own),
            variables: json!({ "lastSyncAt": null, "tenantId": other, "limit": 1000 }).into(),
        };
        let push = SyncRequest {
            request_id: 0,
            operation_name: format!("syncPush{entity}"),
            tenant_id: own.to_owned(),
            token: token_of(own),
            variables: json!({ "tenantId": other, "payload": [{
                "clientId": format!("0190c0de-0000-7000-8000-{probe_number:012}"), "id": null,
                "operation": "insert", "data": {"probe": true},
                "opId": format!("0190c0de-0000-7000-9000-{probe_number:012}"), "baseVersion": 0,
                "force": false, "spaceId": "space-0", "updatedAt": 1
            }] })
            .into(),
        };
        for request in [pull, push] {
            let response = server.handle(&request);
            let code = response.pointer("/errors/0/extensions/code").cloned();
            if code != Some(json!(ErrorCode::Unauthorized)) {
                return Err(violation(format!(
                    "tenant isolation: a {} with {own}'s token for tenant {other} was not refused: {}",
                    request.operation_name,
                    response.to_string().chars().take(200).collect::<String>()
                )));
            }
        }
        let stamps_after: Vec<u64> = tenants.iter().map(|t| server.commit_stamp(t)).collect();
        if server.effects().len() != effects_before || stamps_after != stamps_before {
            return Err(violation(
                "tenant isolation: an unauthorized request changed server state".to_owned(),
            ));
        }
        self.invariant_checks += 1;
        Ok(())
    }

    /// The first way a logged-in device is not settled or differs from the server, or
    /// `None` when every one of them has converged.
    pub fn difference(
        &self,
        devices: &[Device],
        server: &ReferenceServer,
    ) -> Result<Option<String>, Failure> {
        for device in devices {
            let Some(tenant) = device.tenant.as_deref() else {
                continue;
            };
            let Some(engine) = device.engine.as_ref() else {
                return Ok(Some(format!("{} is not running", device.name)));
            };
            let status = engine
                .status()
                .map_err(|error| violation(error.to_string()))?;
            if status.syncing || status.pending_ops > 0 || status.open_conflicts > 0 {
                return Ok(Some(format!("{} is not settled: {status:?}", device.name)));
            }
            let local = device_canonical(engine)?;
            let remote = server_canonical(server, tenant);
            if local.rows != remote {
                return Ok(Some(format!(
                    "{} differs from the server in tenant {tenant}: {}",
                    device.name,
                    first_difference(&local.rows, &remote)
                )));
            }
        }
        Ok(None)
    }

    /// Exactly one server effect per `opId`, one server row per client id.
    pub fn check_no_duplicates(&mut self, server: &ReferenceServer) -> Result<(), Failure> {
        self.invariant_checks += 1;
        let mut effects: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for effect in server.effects() {
            *effects
                .entry((&effect.tenant_id, &effect.op_id))
                .or_insert(0) += 1;
        }
        if let Some(((tenant, op_id), count)) = effects.iter().find(|(_, count)| **count > 1) {
            return Err(violation(format!(
                "op {op_id} of tenant {tenant} changed the server {count} times (exactly once expected)"
            )));
        }
        for tenant in server.tenants() {
            let mut seen = BTreeSet::new();
            for record in server.records(&tenant) {
                if !seen.insert(record.client_id.as_str()) {
                    return Err(violation(format!(
                        "duplicate record: client id {} twice in tenant {tenant}",
                        record.client_id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The end of a run, after it converged: every [`Oracle::safety_checks`], and no
    /// acknowledged write lost.
    pub fn final_checks(
        &mut self,
        devices: &[Device],
        server: &ReferenceServer,
    ) -> Result<(), Failure> {
        self.safety_checks(devices, server)?;
        let mut server_rows: BTreeMap<(String, String), ServerRow> = BTreeMap::new();
        for tenant in server.tenants() {
            for record in server.records(&tenant) {
                server_rows.insert(
                    (tenant.clone(), record.client_id.clone()),
                    (record.updated_at, record.is_deleted, record.data.clone()),
                );
            }
        }
        let device_tenants: BTreeMap<usize, String> = devices
            .iter()
            .filter(|device| device.engine.is_some())
            .filter_map(|device| Some((device.index, device.tenant.clone()?)))
            .collect();
        let causality = &self.causality;
        let checked = self.model.check_no_lost_writes(
            &device_tenants,
            |tenant, client_id| {
                server_rows
                    .get(&(tenant.to_owned(), client_id.to_owned()))
                    .map(|(updated_at, is_deleted, data)| ServerView {
                        updated_at: *updated_at,
                        is_deleted: *is_deleted,
                        data,
                    })
            },
            |tenant, client_id, write, row| match write.version {
                Some(version) => causality.order(
                    tenant,
                    client_id,
                    version,
                    row.updated_at,
                    row.is_deleted,
                    row.data,
                ),
                None => Order::Unrelated,
            },
        );
        self.invariant_checks += 1;
        checked.map(|_| ()).map_err(violation)
    }

    /// What must hold at any moment, converged or not: the server's own invariants, no
    /// duplicates, tenant isolation on the server and every device, and every device
    /// database's own invariants. The end of a `safety_only` run.
    pub fn safety_checks(
        &mut self,
        devices: &[Device],
        server: &ReferenceServer,
    ) -> Result<(), Failure> {
        server.check_invariants();
        self.check_no_duplicates(server)?;
        for device in devices {
            if let (Some(tenant), Some(engine)) = (&device.tenant, &device.engine) {
                self.check_notifications(device, tenant, engine, true)?;
            }
        }
        for tenant in server.tenants() {
            for record in server.records(&tenant) {
                if !self.model.created_in(&tenant, &record.client_id) {
                    let owner = self
                        .model
                        .tenant_of(&record.client_id)
                        .unwrap_or("nobody")
                        .to_owned();
                    return Err(violation(format!(
                        "tenant isolation: the server holds {} (created in {owner}) in tenant {tenant}",
                        record.client_id
                    )));
                }
            }
        }
        for device in devices {
            let (Some(tenant), Some(engine)) = (&device.tenant, &device.engine) else {
                continue;
            };
            engine
                .check_invariants()
                .map_err(|message| violation(format!("{}: {message}", device.name)))?;
            for record in engine.all_records().map_err(storage)? {
                if !self.model.created_in(tenant, &record.client_id) {
                    return Err(violation(format!(
                        "tenant isolation: {} holds {} in tenant {tenant}'s database",
                        device.name, record.client_id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Whether the device still has an op of the record waiting to reach the server
/// (pending or sending). An op failed for good stays in the queue only as the app's
/// report of the rejection, which `OpFailed` announced: it owes nothing.
fn has_queued_op(engine: &Engine, client_id: &str) -> Result<bool, String> {
    let ops = engine.queued_ops().map_err(|error| error.to_string())?;
    Ok(ops.iter().any(|op| {
        op.entity_id == client_id && matches!(op.status, OpStatus::Pending | OpStatus::Sending)
    }))
}

fn storage(error: sync_engine::ReadError) -> Failure {
    violation(error.to_string())
}

/// A server row's (stamp, deleted, data), keyed by (tenant, client id) in the final checks.
type ServerRow = (sync_engine::HlcStamp, bool, Map<String, Value>);

/// A canonical row: (entity, server id, client id, space, version, stamp, data as JSON).
pub type CanonicalRow = (String, Option<String>, String, String, i64, u64, String);

pub struct DeviceCanonical {
    pub rows: Vec<CanonicalRow>,
}

/// A device's live rows in canonical order, every one of them: a record whose op failed
/// for good went back to the server's copy (or is gone), so it is compared like the rest.
pub fn device_canonical(engine: &Engine) -> Result<DeviceCanonical, Failure> {
    let mut rows: Vec<CanonicalRow> = engine
        .all_records()
        .map_err(storage)?
        .into_iter()
        .filter(|record| !record.is_deleted)
        .map(|record| {
            let data = Value::Object(record.data).to_string();
            (
                record.entity,
                record.server_id,
                record.client_id,
                record.space_id,
                record.version,
                record.updated_at.0,
                data,
            )
        })
        .collect();
    rows.sort();
    Ok(DeviceCanonical { rows })
}

/// The server's live rows of `tenant` in the same canonical form.
pub fn server_canonical(server: &ReferenceServer, tenant: &str) -> Vec<CanonicalRow> {
    let mut rows: Vec<CanonicalRow> = server
        .records(tenant)
        .into_iter()
        .filter(|record| !record.is_deleted)
        .map(|record| {
            let data = Value::Object(record.data.clone()).to_string();
            (
                record.entity.clone(),
                Some(record.id.clone()),
                record.client_id.clone(),
                record.space_id.clone(),
                record.version,
                record.updated_at.0,
                data,
            )
        })
        .collect();
    rows.sort();
    rows
}

pub fn first_difference(local: &[CanonicalRow], server: &[CanonicalRow]) -> String {
    let local_only = local.iter().find(|row| !server.contains(row));
    let server_only = server.iter().find(|row| !local.contains(row));
    format!(
        "{} local rows vs {} server rows; first local-only {:?}; first server-only {:?}",
        local.len(),
        server.len(),
        local_only,
        server_only
    )
}

/// The reference server's cursor as a pull position `(commit stamp, row id)`, without
/// the purge epoch it may carry (`@epoch`), which only grows along with the position.
fn parse_cursor(cursor: &str) -> (u64, String) {
    let position = cursor
        .split_once('@')
        .map_or(cursor, |(position, _)| position);
    match position.split_once('.') {
        Some((stamp, id)) => (stamp.parse().unwrap_or(0), id.to_owned()),
        None => (0, String::new()),
    }
}
