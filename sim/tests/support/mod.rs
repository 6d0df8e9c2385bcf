//! The shared harness of the end-to-end tests: real engines ("devices") against the real
//! reference server, driven by the simulation kernel (`sync_sim::kernel::Sim`) exactly as
//! the random world, the scenarios and the fuzz targets drive them — one scheduler, one
//! delivery path, one device lifecycle, one oracle. Nothing is mocked in between.
//!
//! Fault model: none unless a test asks. The world is built with the quiet knobs (no random
//! fault, every device clock reads virtual time with no offset or drift). A test plans the
//! fate of a device's next requests ([`busy_server`], [`lost_response`], [`slow_response`]
//! through `Sim::plan_fates`), holds a device's requests to act while they are in flight
//! (`Sim::hold` / `take_held`, answered with [`World::serve`] and [`World::deliver`]), kills
//! an app now or at a named crash point (`Sim::crash`, which leaves the files as a killed
//! process leaves them, WAL included), lets virtual time pass ([`World::wait`],
//! `Sim::run_until`) or moves one device's clock (`Sim::clock_jump`), which is how a test
//! chooses HLC stamps. Convergence is the oracle's verdict ([`World::assert_converged`]).
//!
//! This module only makes the tests read well. It never schedules a delivery, decides a
//! fault or judges convergence itself; the one answer it gives is the reference server's,
//! to a request a test took off a held queue, handed back through the kernel's `deliver`.
//! Every test file uses only part of it.
#![allow(dead_code)]

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use sync_engine::testing::example_registry;
use sync_engine::wire::SyncRequest;
use sync_engine::{
    CrashPoint, Engine, EntityRegistry, ForceOutcome, ForcePlan, ListOptions, Record, Resolution,
    SyncEvent, TransportError, WriteError,
};
use sync_sim::kernel::network::{RequestFate, ServerFate};
use sync_sim::kernel::{CallError, Called, Sim, SimBuilder};
use sync_sim::profile::Knobs;
use sync_sim::server::ServerRecord;

pub const ACME: &str = "acme";
pub const ACME_TOKEN: &str = "token-acme";
pub const GLOBEX: &str = "globex";
pub const GLOBEX_TOKEN: &str = "token-globex";
pub const SPACE_ENTITY: &str = "Space";
pub const SPACE: &str = "space-1";
pub const OTHER_SPACE: &str = "space-2";

/// A device of the world: its index in the kernel's `Sim`.
pub type DeviceId = usize;

/// The fate of a request the server fails before applying (`SERVER_BUSY`).
pub fn busy_server() -> RequestFate {
    RequestFate::Delivered {
        latency_ms: 1,
        server: ServerFate::Busy {
            return_latency_ms: 1,
        },
        duplicate_after_ms: None,
    }
}

/// The fate of a request the server applies and whose response is lost: the device sees a
/// timeout, exactly what an app sees when a response is lost after the server committed.
pub fn lost_response() -> RequestFate {
    RequestFate::Delivered {
        latency_ms: 1,
        server: ServerFate::ResponseLost,
        duplicate_after_ms: None,
    }
}

/// The fate of a request the server applies 1 ms after it is sent and answers
/// `return_latency_ms` later: a window in which the request is applied but unanswered.
pub fn slow_response(return_latency_ms: u64) -> RequestFate {
    RequestFate::Delivered {
        latency_ms: 1,
        server: ServerFate::Normal { return_latency_ms },
        duplicate_after_ms: None,
    }
}

/// The kernel's world of two tenants, `acme` and `globex`, with its devices.
pub struct World {
    pub sim: Sim,
}

impl World {
    /// The spec's example entity types.
    pub fn new() -> World {
        World::with_registry(example_registry())
    }

    /// Every device and the server use `registry` (a per-entity setting such as a page
    /// size or auto-merge).
    pub fn with_registry(registry: EntityRegistry) -> World {
        // Quiet knobs, and no device until a test adds one.
        let knobs = Knobs {
            devices: 0,
            ..Knobs::quiet()
        };
        let sim = SimBuilder::new(0)
            .knobs(knobs)
            .tenants(vec![ACME.to_owned(), GLOBEX.to_owned()])
            .registry(registry)
            .collect_events(true)
            .collect_requests(true)
            .dir_prefix("sync-e2e-")
            .build();
        World { sim }
    }

    // ---- devices ----------------------------------------------------------------------

    /// A new device of `tenant`, not opened yet: a test arms a kill or plants a server
    /// defect first, then calls [`World::open`].
    pub fn add_device(&mut self, tenant: &str) -> DeviceId {
        let name = format!("{tenant}-{}", self.sim.devices().len());
        self.sim.add_device(&name, Some(tenant))
    }

    /// The user opens the app: the kernel opens the engine, stores the tenant's token and
    /// sends app-open, which starts a sync (not yet answered when this returns).
    pub fn open(&mut self, device: DeviceId) {
        let opened = self
            .sim
            .restart(device)
            .expect("the oracle accepts the reopen");
        assert!(
            opened,
            "device {device} was already running or is logged out"
        );
    }

    /// A new device of `tenant`, opened, its app-open sync finished; what that sync
    /// produced (events, requests) is set-up, not part of any test, and is dropped.
    pub fn device(&mut self, tenant: &str) -> DeviceId {
        let device = self.add_device(tenant);
        self.open(device);
        self.run(device);
        self.sim.take_requests(device);
        device
    }

    /// The app is killed now; its files stay as a killed process leaves them.
    pub fn kill(&mut self, device: DeviceId) {
        assert!(
            self.sim.device(device).is_running(),
            "only a running app dies"
        );
        self.sim.crash(device, None);
        assert!(!self.sim.device(device).is_running());
    }

    /// The user opens the app again after a kill (before the kernel would on its own).
    /// The dead process left its WAL behind, so the open runs SQLite's recovery.
    pub fn reopen(&mut self, device: DeviceId) {
        self.assert_wal_left(device);
        self.open(device);
    }

    /// A killed app leaves its write-ahead log: a reopen that found none would test a
    /// clean shutdown instead of the recovery a real kill needs.
    fn assert_wal_left(&self, device: DeviceId) {
        assert!(
            !self.sim.device(device).is_running(),
            "the app must be dead"
        );
        let files = self.sim.device(device).db_files();
        let wal = files
            .iter()
            .find(|path| path.to_string_lossy().ends_with("-wal"))
            .expect("the database has a WAL file name");
        let wal_bytes = std::fs::metadata(wal).map_or(0, |metadata| metadata.len());
        assert!(wal_bytes > 0, "the kill left no WAL at {}", wal.display());
    }

    /// Opens the app again with the network off, so that the state the reopen recovered can
    /// be read before any sync changes it: opening the app online starts a sync at once,
    /// which marks ops `sending`. [`Sim::online`] brings it back.
    pub fn reopen_offline(&mut self, device: DeviceId) {
        self.sim
            .offline(device, None)
            .expect("a dead app takes no call");
        self.reopen(device);
        assert!(!self.engine(device).status().expect("status").online);
    }

    /// Runs until the device's app is killed at an armed crash point (and no further: the
    /// kernel's own restart stays pending); returns the point.
    pub fn run_until_killed(&mut self, device: DeviceId) -> CrashPoint {
        let fired_before = self.sim.crash_points_fired();
        self.sim
            .run_while(|sim| sim.device(device).is_running() && sim.network_busy())
            .expect("the oracle");
        assert!(
            !self.sim.device(device).is_running(),
            "device {device} went quiet without being killed"
        );
        let fired = self.sim.crash_points_fired();
        CrashPoint::ALL
            .into_iter()
            .find(|point| fired.get(point.name()) > fired_before.get(point.name()))
            .expect("a crash point fired")
    }

    // ---- running ----------------------------------------------------------------------

    /// Runs the world until nothing is on the wire; returns the device's events since they
    /// were last taken.
    pub fn run(&mut self, device: DeviceId) -> Vec<SyncEvent> {
        self.sim.run_until_quiet().expect("the oracle");
        self.sim.take_events(device)
    }

    /// `sync_now`, then runs the world until nothing is on the wire; returns the device's
    /// events since they were last taken.
    pub fn sync(&mut self, device: DeviceId) -> Vec<SyncEvent> {
        self.call(device, |engine| Ok(engine.sync_now()?));
        self.run(device)
    }

    /// Lets `ms` of virtual time pass (timers that come due fire).
    pub fn wait(&mut self, ms: u64) {
        let until_ms = self.sim.now_ms() + ms;
        self.sim.run_until(until_ms).expect("the oracle");
    }

    /// Requests the device sent since they were last taken.
    pub fn take_requests(&mut self, device: DeviceId) -> Vec<SyncRequest> {
        self.sim.take_requests(device)
    }

    /// The device's one held request (after `Sim::hold` and the call that emitted it).
    pub fn take_one_held(&mut self, device: DeviceId) -> SyncRequest {
        let mut held = self.sim.take_held(device);
        assert_eq!(held.len(), 1, "one request in flight: {held:?}");
        held.remove(0)
    }

    /// The reference server answers a request a test took from a held queue.
    pub fn serve(&mut self, request: &SyncRequest) -> Value {
        self.sim.server_mut().handle(request)
    }

    /// Hands the device the answer to its held `request`, as if it came off the wire.
    pub fn deliver(
        &mut self,
        device: DeviceId,
        request: &SyncRequest,
        response: Result<Value, TransportError>,
    ) -> Called<()> {
        self.sim
            .deliver(device, request.request_id, response)
            .expect("the oracle")
    }

    /// Answers every request the device holds (and those it makes in answer) with
    /// `answer`, then stops holding; returns the device's events. For a test whose network
    /// alters what it carries, which the kernel's network never does.
    pub fn answer_held(
        &mut self,
        device: DeviceId,
        mut answer: impl FnMut(&mut World, &SyncRequest) -> Value,
    ) -> Vec<SyncEvent> {
        loop {
            let held = self.sim.take_held(device);
            if held.is_empty() {
                break;
            }
            for request in held {
                let response = answer(self, &request);
                assert_eq!(
                    self.deliver(device, &request, Ok(response)),
                    Called::Done(())
                );
            }
        }
        self.sim.release(device);
        self.run(device)
    }

    // ---- engine calls -------------------------------------------------------------------

    /// The device's engine, for reads.
    pub fn engine(&self, device: DeviceId) -> &Engine {
        self.sim
            .engine(device)
            .unwrap_or_else(|| panic!("device {device} is not running"))
    }

    /// Calls the engine through the kernel (which drains its outputs); the call must
    /// succeed.
    pub fn call<T>(
        &mut self,
        device: DeviceId,
        f: impl FnOnce(&mut Engine) -> Result<T, CallError>,
    ) -> T {
        match self.try_call(device, f) {
            Called::Done(value) => value,
            Called::Killed(point) => panic!("device {device} was killed at {}", point.name()),
            Called::Rejected(message) => panic!("device {device} refused: {message}"),
            Called::NotRunning => panic!("device {device} is not running"),
        }
    }

    /// Calls the engine through the kernel and says what came of it.
    pub fn try_call<T>(
        &mut self,
        device: DeviceId,
        f: impl FnOnce(&mut Engine) -> Result<T, CallError>,
    ) -> Called<T> {
        self.sim.call(device, f).expect("the oracle")
    }

    /// A write whose typed refusal a test checks: the engine's error comes back as it is,
    /// while a kill inside the call still takes the device down through the kernel.
    pub fn write<T>(
        &mut self,
        device: DeviceId,
        f: impl FnOnce(&mut Engine) -> Result<T, WriteError>,
    ) -> Result<T, WriteError> {
        let called = self.try_call(device, |engine| match f(engine) {
            Err(WriteError::Killed(point)) => Err(CallError::Killed(point)),
            outcome => Ok(outcome),
        });
        match called {
            Called::Done(outcome) => outcome,
            Called::Killed(point) => Err(WriteError::Killed(point)),
            Called::Rejected(message) => unreachable!("refusals come back typed: {message}"),
            Called::NotRunning => panic!("device {device} is not running"),
        }
    }

    fn tenant(&self, device: DeviceId) -> String {
        self.sim
            .tenant_of(device)
            .expect("the device is logged in")
            .to_owned()
    }

    /// Tells the oracle the app was told this write succeeded.
    fn acknowledge(&mut self, device: DeviceId, client_id: &str) {
        self.sim
            .acknowledge(device, client_id)
            .expect("the acknowledged record is readable");
    }

    /// Creates a record and returns its client id.
    pub fn create(&mut self, device: DeviceId, entity: &str, space: &str, data: Value) -> String {
        self.create_many(device, entity, space, vec![data])
            .remove(0)
    }

    /// Creates records in one transaction and returns their client ids.
    pub fn create_many(
        &mut self,
        device: DeviceId,
        entity: &str,
        space: &str,
        items: Vec<Value>,
    ) -> Vec<String> {
        let ids = self.call(device, |engine| {
            Ok(engine.create_many(entity, space, items)?)
        });
        for id in &ids {
            self.sim
                .acknowledge_create(device, id)
                .expect("the acknowledged record is readable");
        }
        ids
    }

    /// Creates a record `{name}` in [`SPACE`] and returns its client id.
    pub fn create_named(&mut self, device: DeviceId, name: &str) -> String {
        self.create(
            device,
            SPACE_ENTITY,
            SPACE,
            serde_json::json!({ "name": name }),
        )
    }

    pub fn update(&mut self, device: DeviceId, id: &str, patch: Value) -> Record {
        let record = self.call(device, |engine| Ok(engine.update(id, patch)?));
        self.acknowledge(device, id);
        record
    }

    pub fn delete(&mut self, device: DeviceId, id: &str) {
        self.call(device, |engine| Ok(engine.delete(id)?));
        self.acknowledge(device, id);
    }

    /// The user answers a conflict; the oracle forgets the local write the answer may drop.
    pub fn resolve(
        &mut self,
        device: DeviceId,
        conflict: &sync_engine::Conflict,
        resolution: Resolution,
    ) -> Result<(), WriteError> {
        let tenant = self.tenant(device);
        self.sim.oracle_mut().model.discard_record(
            device,
            &tenant,
            &conflict.client_id,
            "user resolved a conflict",
        );
        let keeps_local = resolution != Resolution::UseServer;
        let id = conflict.id;
        let resolved = self.write(device, |engine| engine.resolve_conflict(id, resolution));
        if resolved.is_ok() && keeps_local {
            self.acknowledge(device, &conflict.client_id);
        }
        resolved
    }

    /// The user confirms a force plan and the engine runs it, through the kernel, which
    /// tells the oracle what the force may discard (settled by the outcome the engine
    /// reports) and that a force from the server starts the cursors over.
    pub fn confirm_force(
        &mut self,
        device: DeviceId,
        plan: ForcePlan,
    ) -> Result<ForceOutcome, WriteError> {
        let called = self
            .sim
            .execute_force(device, plan)
            .unwrap_or_else(|failure| panic!("invariant violated: {failure:?}"));
        match called {
            Called::Done(outcome) => outcome,
            Called::Killed(point) => Err(WriteError::Killed(point)),
            Called::Rejected(message) => unreachable!("refusals come back typed: {message}"),
            Called::NotRunning => panic!("device {device} is not running"),
        }
    }

    /// Wipes a space; the oracle forgets its local writes and starts the cursors over.
    pub fn wipe_space(&mut self, device: DeviceId, space: &str) -> Result<usize, WriteError> {
        let tenant = self.tenant(device);
        let oracle = self.sim.oracle_mut();
        oracle.model.discard_device_space(device, &tenant, space);
        let outcome = self.write(device, |engine| engine.wipe_space(space));
        self.sim.oracle_mut().reset_cursors(device, &tenant);
        outcome
    }

    // ---- reads --------------------------------------------------------------------------

    /// A record that must exist on the device.
    pub fn record(&self, device: DeviceId, id: &str) -> Record {
        self.engine(device)
            .get(id)
            .expect("read")
            .expect("record exists")
    }

    /// How many live records of `entity` the device holds.
    pub fn live_count(&self, device: DeviceId, entity: &str) -> usize {
        self.engine(device)
            .list(entity, None, ListOptions::default())
            .expect("list")
            .len()
    }

    /// A tenant's server records of one entity, in server-id order.
    pub fn server_records(&self, tenant: &str, entity: &str) -> Vec<ServerRecord> {
        self.sim
            .server()
            .records(tenant)
            .into_iter()
            .filter(|record| record.entity == entity)
            .cloned()
            .collect()
    }

    /// The one server record of `client_id`; fails the test if there is not exactly one.
    pub fn server_record(&self, tenant: &str, client_id: &str) -> ServerRecord {
        let matches: Vec<&ServerRecord> = self
            .sim
            .server()
            .records(tenant)
            .into_iter()
            .filter(|record| record.client_id == client_id)
            .collect();
        assert_eq!(matches.len(), 1, "server rows for clientId {client_id}");
        matches[0].clone()
    }

    /// The oracle's verdict: every logged-in device is settled and holds exactly the
    /// server's live rows of its tenant (entity, ids, space, version, stamp and data), and
    /// every end-of-run check holds (one server effect per op, no duplicate record, tenant
    /// isolation, every database's own invariants, no acknowledged write lost).
    pub fn assert_converged(&mut self) {
        let difference = self.sim.difference().expect("the oracle");
        assert_eq!(difference, None, "the world has not converged");
        self.sim.final_checks().expect("the oracle's final checks");
    }
}

/// Counts events matching `predicate`.
pub fn count(events: &[SyncEvent], predicate: impl Fn(&SyncEvent) -> bool) -> usize {
    events.iter().filter(|event| predicate(event)).count()
}

/// A JSON object from a `json!` literal.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Everything durable in a device, for "old or new state entirely" comparisons.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub records: Vec<Record>,
    pub ops: Vec<sync_engine::QueuedOp>,
    pub conflicts: Vec<sync_engine::Conflict>,
    pub cursors: BTreeMap<String, Option<String>>,
    pub token: Option<String>,
}

pub fn snapshot(engine: &Engine) -> Snapshot {
    Snapshot {
        records: engine.all_records().expect("records"),
        ops: engine.queued_ops().expect("ops"),
        conflicts: engine.list_conflicts().expect("conflicts"),
        cursors: engine
            .registry()
            .entities()
            .iter()
            .map(|config| {
                let name = config.name().to_owned();
                let cursor = engine.cursor(&name).expect("cursor");
                (name, cursor)
            })
            .collect(),
        token: engine.auth_token().expect("token"),
    }
}
