//! A device's app lifecycle in the kernel: opening (and reopening after a kill) the real
//! engine with the oracle's reopen checks, every engine call and the draining of its
//! outputs after it, kills now or at a crash point, log in / out, tenant switches.
//! Nothing here decides when a kill happens; the fault model and the drivers do.

use super::device::{SimCrashHook, KILL_SWITCH_POISONED};
use super::event_log::EventKind;
use super::{token_of, violation, CallError, Called, Event, Failure, Sim, RESTART_DELAY_MS_MAX};
use crate::oracle::Origin;
use crate::profile::FaultClass;
use crate::rng::SimRng;
use std::sync::Arc;
use sync_engine::registry::OperationKind;
use sync_engine::wire::SyncRequest;
use sync_engine::{
    CrashPoint, Engine, EngineOptions, ForceDirection, ForceOutcome, ForcePlan, SyncEvent,
    TenantId, WriteError,
};

impl Sim {
    // ---- engines ----------------------------------------------------------------------------

    /// Opens the device's engine if it is logged in and not running (the user opens the
    /// app): reopen checks, auth token, then the app-open trigger. `Ok(false)` if there
    /// was nothing to open.
    pub fn restart(&mut self, index: usize) -> Result<bool, Failure> {
        let device = &self.devices[index];
        let Some(tenant) = device.tenant.clone() else {
            return Ok(false);
        };
        if device.is_running() {
            return Ok(false);
        }
        self.check_file_mapping(index, &tenant)?;
        // A new process: a force-from-server the last one ran will never report its end.
        self.oracle.model.app_stopped(index);
        let now_ms = self.now_ms;
        let device = &mut self.devices[index];
        device.forget_process();
        device.tick_clock(now_ms);
        let (options, entropy) = self.process_options(index, &tenant);
        let mut engine = self.open_engine(index, &tenant, options, entropy)?;
        let device = &self.devices[index];
        self.oracle.check_reopened(device, &tenant, &engine)?;
        self.check_opened_empty_if_dropped(index, &tenant, &engine)?;
        let device = &mut self.devices[index];
        engine.set_crash_hook(Box::new(SimCrashHook {
            device: index,
            switch: Arc::clone(&self.kill_switch),
        }));
        let app_online = device.app_online;
        device.engine = Some(engine);
        let line = format!(
            "{} open tenant {tenant} generation {}",
            self.devices[index].name, self.devices[index].generation
        );
        self.trace_device(index, EventKind::Open, line);
        let token = token_of(&tenant);
        self.call(index, |engine| Ok(engine.set_auth_token(&token)?))?;
        if !app_online {
            self.call(index, |engine| Ok(engine.handle_network_change(false)?))?;
        }
        self.call(index, |engine| Ok(engine.handle_app_open()?))?;
        Ok(true)
    }

    /// The options and entropy of a new process of the device's app on `tenant`: the
    /// process in the device's fields, its generation already its own.
    pub(super) fn process_options(&self, index: usize, tenant: &str) -> (EngineOptions, SimRng) {
        let device = &self.devices[index];
        let entropy = SimRng::new(
            self.seed,
            1_000_000 + index as u64 * 100_000 + device.generation,
        );
        let mut options = EngineOptions::new(
            device.location.clone(),
            TenantId::parse(tenant).expect("simulated tenant ids are valid"),
            self.registry.clone(),
        );
        options.sync_after_write = self.knobs.sync_after_write;
        options.planted_defects = super::tenancy::engine_defects(&self.planted);
        // The lock of a busy fault, and the other process's, are held in this same
        // thread: waiting for one would only sleep on the wall clock until the wait ran out.
        options.busy_timeout_ms = 0;
        (options, entropy)
    }

    /// Calls the device's engine (if its app runs), then drains its outputs — always. A
    /// kill inside the call takes the device down (a restart follows on its own); a
    /// rejected input is traced and changes nothing. A call may return what took effect
    /// and still have been killed in work it started (a force push whose sync died): the
    /// caller gets the value, and the device goes down without handing out anything. After
    /// a call that returned, the oracle checks the records it touched (read-your-writes,
    /// monotonic reads), so every driver gets those checks.
    pub fn call<T>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Engine) -> Result<T, CallError>,
    ) -> Result<Called<T>, Failure> {
        let now_ms = self.now_ms;
        // A full disk is the app's connection's page limit: only lifted through it.
        if self.devices[index].storage_fault_active() && !self.devices[index].background_active {
            self.lift_storage_faults(index, false)?;
        }
        let device = &mut self.devices[index];
        device.tick_clock(now_ms);
        let Some(engine) = device.engine.as_mut() else {
            return Ok(Called::NotRunning);
        };
        let mut kill_switch = self.kill_switch.lock().expect(KILL_SWITCH_POISONED);
        kill_switch.calls += 1;
        kill_switch.elapsed_ms = now_ms - super::EPOCH_MS;
        drop(kill_switch);
        match f(engine) {
            Ok(value) => {
                if let Some(point) = engine.killed_at() {
                    let at = self.count_kill(point);
                    let line = format!(
                        "{} killed at {at} after the call took effect",
                        self.devices[index].name
                    );
                    self.trace_device(index, EventKind::Kill, line);
                    self.killed_mid_call(index);
                    self.crash(index, None);
                    return Ok(Called::Done(value));
                }
                self.drain(index)?;
                self.note_state(index);
                self.check_touched(index)?;
                Ok(Called::Done(value))
            }
            Err(CallError::Killed(point)) => {
                let at = self.count_kill(point);
                let line = format!("{} killed at {at}", self.devices[index].name);
                self.trace_device(index, EventKind::Kill, line);
                self.killed_mid_call(index);
                self.crash(index, None);
                Ok(Called::Killed(point))
            }
            Err(CallError::Rejected(message)) => {
                self.trace(format!("{} rejected: {message}", self.devices[index].name));
                self.drain(index)?;
                self.note_state(index);
                self.check_touched(index)?;
                Ok(Called::Rejected(message))
            }
            Err(CallError::Storage(message)) if self.devices[index].storage_fault_active() => {
                // What the fault model expects: the engine failed typed and wrote nothing
                // half, its database stays consistent, and it stays usable.
                let name = &self.devices[index].name;
                self.trace(format!("{name} storage failure: {message}"));
                if let Some(engine) = self.devices[index].engine.as_ref() {
                    engine.check_invariants().map_err(|problems| {
                        violation(format!(
                            "{}: after a storage failure: {problems}",
                            self.devices[index].name
                        ))
                    })?;
                }
                self.drain(index)?;
                self.note_state(index);
                self.check_touched(index)?;
                Ok(Called::Rejected(message))
            }
            Err(CallError::Storage(message) | CallError::Fatal(message)) => {
                Err(violation(format!(
                    "{}: engine storage error: {message}",
                    self.devices[index].name
                )))
            }
        }
    }

    /// Counts a kill inside an engine call in its fault class; returns where it struck,
    /// for the trace (a boundary with its transaction and number).
    fn count_kill(&mut self, point: CrashPoint) -> String {
        if !point.is_commit_boundary() {
            self.faults.count(FaultClass::KillAtCrashPoint);
            return point.name().to_owned();
        }
        self.faults.count(FaultClass::KillAtCommit);
        match self.kill_switch().last_boundary_kill {
            Some(boundary) => format!(
                "{} of {} (boundary {})",
                point.name(),
                boundary.site.name(),
                boundary.number
            ),
            None => point.name().to_owned(),
        }
    }

    /// The user confirms a force plan and the engine runs it; the oracle learns what it
    /// may discard. A force push overrides the other devices' writes of its entity
    /// (recorded before the call: a kill inside may or may not have committed it). A force
    /// from the server discards the device's own writes of its entity if it completes,
    /// which the engine reports by an event, then or later (an offline force fails within
    /// the call); and it starts the device's cursors over. A refusal comes back typed, as
    /// `Done(Err(..))`.
    pub fn execute_force(
        &mut self,
        index: usize,
        plan: ForcePlan,
    ) -> Result<Called<Result<ForceOutcome, WriteError>>, Failure> {
        let Some(tenant) = self.devices[index].tenant.clone() else {
            return Ok(Called::NotRunning);
        };
        let entity = plan.entity().to_owned();
        let from_server = plan.direction() == ForceDirection::FromServer;
        let recorded = if from_server {
            self.oracle
                .model
                .force_from_server_requested(index, &tenant, &entity)
        } else {
            self.oracle
                .model
                .discard_other_devices_entity(index, &tenant, &entity);
            false
        };
        let called = self.call(index, |engine| match engine.execute_force(plan.confirm()) {
            Err(error @ (WriteError::Killed(_) | WriteError::Storage(_))) => {
                Err(CallError::from(error))
            }
            outcome => Ok(outcome),
        })?;
        if matches!(called, Called::Done(Ok(_))) {
            self.probe(super::probes::Probe::ForceExecuted);
        }
        if recorded && !matches!(called, Called::Done(Ok(_))) {
            self.oracle
                .model
                .force_from_server_not_started(index, &tenant);
        }
        if from_server {
            self.oracle.reset_cursors(index, &tenant);
        }
        Ok(called)
    }

    /// After every input, drain the outputs: requests, events, the next timer.
    pub(super) fn drain(&mut self, index: usize) -> Result<(), Failure> {
        let now_ms = self.now_ms;
        let device = &mut self.devices[index];
        let device_now_ms = device.device_ms(now_ms);
        let Some(engine) = device.engine.as_mut() else {
            return Ok(());
        };
        // Requests cross the simulated wire as JSON, as they would a real one: a fault may
        // rewrite them, and the server parses what the engine rendered.
        let requests: Vec<SyncRequest> = std::iter::from_fn(|| engine.poll_request())
            .map(SyncRequest::with_json_variables)
            .collect();
        let events: Vec<SyncEvent> = std::iter::from_fn(|| engine.poll_event()).collect();
        let timer_at = engine
            .poll_timeout()
            .map(|deadline| now_ms + deadline.saturating_sub(device_now_ms));
        let generation = device.generation;
        if let Some(at_ms) = timer_at.filter(|at_ms| device.timer_at != Some(*at_ms)) {
            device.timer_at = Some(at_ms);
            self.schedule(
                at_ms,
                Event::EngineTimer {
                    device: index,
                    generation,
                },
            );
        }
        for event in events {
            self.engine_event(index, event)?;
        }
        for request in requests {
            self.check_paging_budget(index, &request)?;
            self.note_pull_from_start(index, &request);
            self.check_push_durable(index, &request)?;
            self.send(index, request);
        }
        Ok(())
    }

    /// Tells the oracle of a pull from no cursor after the server purged tombstones of
    /// its entity (a repair may follow it, see `Oracle::pull_from_start`).
    fn note_pull_from_start(&mut self, index: usize, request: &SyncRequest) {
        let Some((OperationKind::Pull, config)) =
            self.registry.resolve_operation(&request.operation_name)
        else {
            return;
        };
        let entity = config.name();
        let from_start = request.variables.to_json()["lastSyncAt"]
            .as_str()
            .is_none_or(str::is_empty);
        if !from_start || !self.server.purged_tombstones(&request.tenant_id, entity) {
            return;
        }
        let Some(engine) = self.devices[index].engine.as_ref() else {
            return;
        };
        self.oracle
            .pull_from_start(index, &request.tenant_id, entity, || {
                engine.all_records().is_ok_and(|records| {
                    records
                        .iter()
                        .any(|record| record.entity == entity && record.server_id.is_some())
                })
            });
    }

    /// A liveness check of every pull a device sends: within one sync (or force, or
    /// repair) a pass over an entity's pages asks at most once per row the server holds,
    /// plus once for the last page, since every page but the last carries a row. Two
    /// passes fit (one cut short by a force, then the force's own), so a device past
    /// `2 × (rows + 2)` pulls of one entity is asking for pages that do not advance, and
    /// would go on for as long as the server answered so.
    fn check_paging_budget(&mut self, index: usize, request: &SyncRequest) -> Result<(), Failure> {
        let Some((OperationKind::Pull, config)) =
            self.registry.resolve_operation(&request.operation_name)
        else {
            return Ok(());
        };
        let entity = config.name();
        let device = &mut self.devices[index];
        let sent = device.pulls_this_sync.entry(entity.to_owned()).or_insert(0);
        *sent += 1;
        let sent = *sent;
        // Counting is cheap; the bound is worked out only once a pass is longer than most.
        if sent <= 4 {
            return Ok(());
        }
        let rows = self.server.pull_rows(&request.tenant_id, entity) as u64;
        let budget = 2 * (rows + 2);
        if sent > budget {
            return Err(violation(format!(
                "paging without progress: {} sent {sent} pulls of {entity} in one sync while the \
                 server holds {rows} of its rows (at most {budget} pages): it keeps asking for \
                 pages that do not advance",
                device.name
            )));
        }
        Ok(())
    }

    pub(super) fn engine_event(&mut self, index: usize, event: SyncEvent) -> Result<(), Failure> {
        let device = &mut self.devices[index];
        let tenant = device.tenant.clone().unwrap_or_default();
        match &event {
            SyncEvent::SyncStarted { .. } => {
                device.sync_started_seq += 1;
                device.counters.syncs_started += 1;
                device.pulls_this_sync.clear();
            }
            SyncEvent::SyncCompleted => {
                device.sync_completed_seq = device.sync_started_seq;
                self.syncs_completed += 1;
                device.pulls_this_sync.clear();
            }
            SyncEvent::SyncFailed { .. }
            | SyncEvent::ForceCompleted { .. }
            | SyncEvent::ForceFailed { .. } => device.pulls_this_sync.clear(),
            SyncEvent::RepairStarted { entity } | SyncEvent::ResyncStarted { entity } => {
                device.pulls_this_sync.remove(entity);
            }
            SyncEvent::ConflictStored { .. } => self.conflicts_stored += 1,
            _ => {}
        }
        self.probe_event(&event);
        let line = format!("{} event {event:?}", self.devices[index].name);
        self.trace_device(index, EventKind::Engine, line);
        self.oracle
            .engine_event(&self.devices[index], &tenant, &event)?;
        self.oracle
            .check_reported_failure(&self.devices[index], &tenant, &event, &self.server)?;
        if self.collect_events {
            self.collected.entry(index).or_default().push(event);
        }
        Ok(())
    }

    /// A kill inside a call swallowed the events the call would have handed out.
    fn killed_mid_call(&mut self, index: usize) {
        if let Some(tenant) = self.devices[index].tenant.as_deref() {
            self.oracle.killed_mid_call(index, tenant);
        }
    }

    /// The oracle's continuous checks of the records the call just made touched
    /// (read-your-writes, monotonic reads) and of its change notifications: once here, so
    /// every driver gets them.
    fn check_touched(&mut self, index: usize) -> Result<(), Failure> {
        let origin = if self.delivering {
            Origin::Received
        } else {
            Origin::Local
        };
        let device = &self.devices[index];
        if let (Some(tenant), Some(engine)) = (device.tenant.as_deref(), device.engine.as_ref()) {
            self.oracle.check_touched(device, tenant, engine, origin)?;
            self.oracle
                .check_notifications(device, tenant, engine, false)?;
        }
        Ok(())
    }

    /// Records `client_id`, just created on device `index`, in the model as a record of
    /// the device's tenant, and acknowledges its current copy ([`Sim::acknowledge`]).
    pub fn acknowledge_create(&mut self, index: usize, client_id: &str) -> Result<(), Failure> {
        if let Some(tenant) = self.devices[index].tenant.as_deref() {
            self.oracle.model.record_create(tenant, client_id);
        }
        self.acknowledge(index, client_id)
    }

    /// Records the device's current copy of `client_id` as a write the app was told
    /// succeeded.
    pub fn acknowledge(&mut self, index: usize, client_id: &str) -> Result<(), Failure> {
        let device = &self.devices[index];
        let (Some(tenant), Some(engine)) = (device.tenant.as_deref(), device.engine.as_ref())
        else {
            return Ok(());
        };
        let record = engine
            .get(client_id)
            .map_err(|error| violation(error.to_string()))?
            .ok_or_else(|| {
                violation(format!(
                    "{}: acknowledged record {client_id} is not readable",
                    device.name
                ))
            })?;
        crate::oracle::check_stamp_not_dragged_ahead(device, self.now_ms, &record)?;
        let tenant = tenant.to_owned();
        self.watch_write(index, &tenant, &record)?;
        // A stamp far ahead is stored clamped, at the earliest to this bound: the write
        // is judged by the stamp it can have on the server, and known to the causality
        // by the version the device shows.
        let stored_stamp = crate::server::rules::admitted_stamp(record.updated_at, self.now_ms);
        self.oracle
            .acknowledge(index, &tenant, &record, stored_stamp)?;
        if !record.is_deleted && crate::server::rules::check_record(&record.data).is_err() {
            // The server's rules refuse this write: it is never expected to survive.
            self.oracle.model.discard_record(
                index,
                &tenant,
                client_id,
                "refused by the server's rules",
            );
        }
        Ok(())
    }

    // ---- lifecycle verbs ------------------------------------------------------------------

    /// Kills the app now (`at: None`), leaving its files as a killed process leaves them,
    /// or arms a kill the next time the engine reaches crash point `at`. A restart follows
    /// after a short random delay unless a driver restarts it first.
    pub fn crash(&mut self, index: usize, at: Option<CrashPoint>) {
        if let Some(point) = at {
            self.kill_switch().one_shot.insert(index, point);
            return;
        }
        if !self.devices[index].is_running() {
            return;
        }
        if self.devices[index].background_active {
            // The background process alone dies; nothing restarts it.
            self.devices[index].kill_process();
            let line = format!("{} background process killed", self.devices[index].name);
            self.trace_device(index, EventKind::Kill, line);
            return;
        }
        self.devices[index].kill();
        self.maybe_lose_power(index);
        self.oracle.process_ended(index);
        let line = format!("{} killed", self.devices[index].name);
        self.trace_device(index, EventKind::Kill, line);
        self.note_state(index);
        if !self.devices[index].restart_scheduled {
            self.devices[index].restart_scheduled = true;
            let at_ms = self.now_ms + self.restarts.range(100, RESTART_DELAY_MS_MAX);
            self.schedule(at_ms, Event::Restart { device: index });
        }
    }

    /// Kills the app now, like [`Sim::crash`], and keeps it down until a driver calls
    /// [`Sim::restart`]: the user closed it and has not opened it again (a scenario's
    /// `kill` ... `restart`). No restart is scheduled; one already scheduled is called off.
    pub fn kill(&mut self, index: usize) {
        self.crash(index, None);
        self.unschedule(|event| matches!(event, Event::Restart { device } if *device == index));
        self.devices[index].restart_scheduled = false;
        assert!(!self.devices[index].is_running());
    }

    /// Starts the device's counters over (a scenario's `reset-counters`): no requests and
    /// no syncs counted, and at most as many requests in flight as are in flight now.
    pub fn reset_counters(&mut self, index: usize) {
        let device = &mut self.devices[index];
        device.counters = super::device::Counters {
            max_in_flight: device.in_flight.len(),
            ..super::device::Counters::default()
        };
    }

    /// Logs the device in to `tenant` and opens its database.
    pub fn login(&mut self, index: usize, tenant: &str) -> Result<(), Failure> {
        assert!(self.devices[index].tenant.is_none(), "log out first");
        self.trace(format!("{} logs in to {tenant}", self.devices[index].name));
        self.devices[index].tenant = Some(tenant.to_owned());
        self.restart(index).map(drop)
    }

    /// Logs out: the tenant's database is dropped (every file of it), with whatever was
    /// not synced. Fails if a file of the tenant stays behind.
    pub fn logout(&mut self, index: usize) -> Result<(), Failure> {
        let Some(tenant) = self.devices[index].tenant.clone() else {
            return Ok(());
        };
        let name = self.devices[index].name.clone();
        self.trace_device(
            index,
            EventKind::Logout,
            format!("{name} logs out of {tenant}"),
        );
        self.stop_background(index);
        let engine = self.devices[index].engine.take();
        self.devices[index].forget_process();
        self.oracle.model.discard_device_tenant(index, &tenant);
        self.devices[index].power.forget_tenant(&tenant);
        self.oracle.reset_cursors(index, &tenant);
        self.oracle.logged_out(index, &tenant);
        let dropped = match engine {
            Some(engine) => engine.drop_database(),
            None => sync_engine::drop_tenant_database(
                &self.devices[index].location,
                &TenantId::parse(&tenant).expect("simulated tenant ids are valid"),
            ),
        };
        dropped
            .map_err(|error| violation(format!("{name}: dropping the database failed: {error}")))?;
        if let Some(path) = self.devices[index]
            .db_files()
            .into_iter()
            .find(|path| path.exists())
        {
            return Err(violation(format!(
                "{name}: logout left {} of {tenant} behind",
                path.display()
            )));
        }
        self.devices[index].tenant = None;
        self.devices[index].dropped_tenants.insert(tenant);
        self.note_state(index);
        Ok(())
    }

    /// Closes the app on one tenant and opens it on another (the old database stays).
    pub fn switch_tenant(&mut self, index: usize, tenant: &str) -> Result<(), Failure> {
        let name = &self.devices[index].name;
        let current = self.devices[index].tenant.clone().unwrap_or_default();
        self.trace(format!("{name} switches tenant {current} -> {tenant}"));
        self.stop_background(index);
        // The app's other process lets go of the old database before the app closes it,
        // so that the app's close stays the last one, as without the fault.
        self.devices[index].lock_holder = None;
        self.devices[index].engine = None;
        self.devices[index].tenant = Some(tenant.to_owned());
        self.restart(index).map(drop)
    }
}
