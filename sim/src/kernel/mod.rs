//! The simulation kernel: the one scheduler, delivery path, device lifecycle and fault
//! model that every driver runs on — the random world (`world.rs`), the scenarios
//! (`script/`), the fuzz targets (`fuzzing/`) and the integration tests.
//!
//! A [`Sim`] holds a virtual clock, an event queue ordered by (virtual time, sequence
//! number), the trace and its hash, the fault ledger, the devices (each a real engine),
//! the reference server, the network between them, and the [`Oracle`]. It is built by
//! [`SimBuilder`], advanced by [`Sim::step`] and the `run_*` methods, and driven through
//! verbs that read like English: [`Sim::call`] (which drains the engine's outputs
//! afterwards, always), [`Sim::crash`], [`Sim::restart`], [`Sim::partition`] /
//! [`Sim::heal`], [`Sim::offline`] / [`Sim::online`], [`Sim::clock_jump`], [`Sim::hold`] /
//! [`Sim::release`], [`Sim::login`] / [`Sim::logout`].
//!
//! This file holds the `Sim` itself, its scheduler and what it reports; `builder.rs`
//! assembles it, `lifecycle.rs` runs apps (open, call and drain, kill, log in / out),
//! `wire.rs` is the one delivery path, `inject.rs` the fault verbs, `faults.rs` the dice
//! and the ledger, `network.rs` the per-request fates, `device.rs` a device.
//!
//! One thread; the scheduler jumps to the next event and never sleeps. The kernel never
//! reaches into an engine's internals: it uses the public API, an injected clock, seeded
//! entropy and the crash-point hook. It decides nothing a driver owns: which user action
//! comes next, or when the run is over.

mod background;
mod builder;
mod corruption;
pub mod device;
pub mod event_log;
mod faults;
mod inject;
mod lifecycle;
pub mod network;
mod power;
pub mod probes;
mod tenancy;
mod trace;
mod wire;

use crate::oracle::Oracle;
use crate::profile::{FaultClass, Knobs};
use crate::rng::SimRng;
use crate::server::ReferenceServer;
use device::{Device, KillSwitch};
use network::ServerFate;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use sync_engine::wire::SyncRequest;
use sync_engine::{
    CrashPoint, Engine, EntityRegistry, SyncError, SyncEvent, TransportError, WriteError,
};

pub use builder::{registry_for, SimBuilder};
pub use faults::{FaultId, FaultSelection, Faults, FiredFault};
pub use trace::Trace;

/// Virtual time starts here (2023-11-14T22:13:20Z), so device clocks look real.
pub const EPOCH_MS: u64 = 1_700_000_000_000;
/// The entity types of a run unless its builder names others.
pub const ENTITIES: [&str; 3] = ["Space", "Group", "Identity"];
/// The server's whole-state check runs at least every this many events...
const SERVER_CHECK_EVERY: u64 = 64;
/// ...but no more often than once per this many rows it reads, per event: a check reads
/// every record and effect, so on a server of 100k rows a fixed interval would make the
/// checks quadratic in the run's length (they were 59 % of a `big` seed). With this, the
/// checks cost at most about as much as the events between them.
const SERVER_CHECK_ROWS_PER_EVENT: u64 = 64;
/// How long a killed app stays dead before the user opens it again, at most.
const RESTART_DELAY_MS_MAX: u64 = 10_000;

/// How a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A safety invariant broke (exit code 1).
    Invariant,
    /// The world did not converge after healing (exit code 2).
    Liveness,
    /// The engine or the server panicked (exit code 3).
    Panic,
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

pub fn violation(message: String) -> Failure {
    Failure {
        kind: FailureKind::Invariant,
        message,
    }
}

/// The message of a caught panic (`catch_unwind`'s payload).
pub fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| {
            payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
        })
        .unwrap_or_else(|| "a non-string payload".to_owned())
}

/// The token the reference server knows as `tenant`'s.
pub fn token_of(tenant: &str) -> String {
    format!("token-{tenant}")
}

/// A new directory for devices' databases, named `{prefix}…`.
pub fn temp_root(prefix: &str) -> tempfile::TempDir {
    // tmpfs when there is one: the files behave the same, and a run is I/O-bound otherwise.
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix(prefix).tempdir_in(shm);
    builder.unwrap_or_else(|_| tempfile::tempdir().expect("a temporary directory"))
}

/// An engine call's failure, as the kernel sees it.
pub enum CallError {
    Killed(CrashPoint),
    /// Bad input from the simulated user: a clear error that changed nothing.
    Rejected(String),
    /// SQLite failed: expected only while a storage fault strikes the device.
    Storage(String),
    /// The database is damaged: never expected in simulation.
    Fatal(String),
}

impl From<WriteError> for CallError {
    fn from(error: WriteError) -> CallError {
        match error {
            WriteError::Killed(point) => CallError::Killed(point),
            WriteError::Storage(error) => CallError::Storage(error.to_string()),
            // A damaged database is never expected in simulation either.
            WriteError::Damaged(row) => CallError::Fatal(row.to_string()),
            other => CallError::Rejected(other.to_string()),
        }
    }
}

impl From<SyncError> for CallError {
    fn from(error: SyncError) -> CallError {
        match error {
            SyncError::Killed(point) => CallError::Killed(point),
            SyncError::Storage(error) => CallError::Storage(error.to_string()),
            other => CallError::Fatal(other.to_string()),
        }
    }
}

impl From<sync_engine::ReadError> for CallError {
    fn from(error: sync_engine::ReadError) -> CallError {
        CallError::Fatal(error.to_string())
    }
}

/// What one call into a device's engine came to.
#[derive(Debug, PartialEq)]
pub enum Called<T> {
    Done(T),
    /// The app died at this crash point inside the call; the device is down.
    Killed(CrashPoint),
    /// The engine refused the input with a clear error and changed nothing.
    Rejected(String),
    /// The app is not running (dead or logged out): nothing was called.
    NotRunning,
}

impl<T> Called<T> {
    pub fn ok(self) -> Option<T> {
        match self {
            Called::Done(value) => Some(value),
            _ => None,
        }
    }
}

/// What [`Sim::step`] handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A kernel event (timer, delivery, kill, restart, heal…), handled.
    Handled,
    /// A driver's own event for this device is due: the driver acts now.
    Driver(usize),
}

#[derive(Clone, Debug)]
enum Event {
    Driver {
        device: usize,
    },
    EngineTimer {
        device: usize,
        generation: u64,
    },
    ServerArrival {
        device: usize,
        generation: u64,
        request: Box<SyncRequest>,
        fate: ServerFate,
        duplicate: bool,
    },
    Delivery {
        device: usize,
        generation: u64,
        request_id: u64,
        operation_name: String,
        response: Result<Value, TransportError>,
    },
    Kill {
        device: usize,
    },
    Restart {
        device: usize,
    },
    PartitionHeal {
        device: usize,
    },
    BackOnline {
        device: usize,
    },
}

impl Event {
    /// What the kernel is doing while it handles the event, for failure signatures: the
    /// wire operation without its entity (`syncPull`, not `syncPullSpace`).
    fn operation(&self) -> &'static str {
        let wire = |name: &str| {
            if name.starts_with("syncPush") {
                "syncPush"
            } else if name.starts_with("syncPull") {
                "syncPull"
            } else {
                "a request"
            }
        };
        match self {
            Event::Driver { .. } => "user action",
            Event::EngineTimer { .. } => "engine timer",
            Event::ServerArrival { request, .. } => match wire(&request.operation_name) {
                "syncPush" => "server handles syncPush",
                "syncPull" => "server handles syncPull",
                _ => "server handles a request",
            },
            Event::Delivery { operation_name, .. } => match wire(operation_name) {
                "syncPush" => "answer to syncPush",
                "syncPull" => "answer to syncPull",
                _ => "answer to a request",
            },
            Event::Kill { .. } => "kill",
            Event::Restart { .. } => "app open after a kill",
            Event::PartitionHeal { .. } => "partition heal",
            Event::BackOnline { .. } => "back online",
        }
    }

    /// Events that must run out before the world counts as quiet: what is on the wire,
    /// and the restarts that follow kills.
    fn is_network(&self) -> bool {
        matches!(
            self,
            Event::ServerArrival { .. } | Event::Delivery { .. } | Event::Restart { .. }
        )
    }
}

pub struct Sim {
    seed: u64,
    /// Planted defects; the engine's are handed to every engine the kernel opens.
    planted: crate::server::ServerDefects,
    knobs: Knobs,
    now_ms: u64,
    next_seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    devices: Vec<Device>,
    server: ReferenceServer,
    registry: EntityRegistry,
    entities: Vec<String>,
    tenants: Vec<String>,
    kill_switch: Arc<Mutex<KillSwitch>>,
    faults: Faults,
    /// The server's pull pages do not advance until then (the endless-paging fault).
    paging_window: Option<network::PagingWindow>,
    latency: SimRng,
    restarts: SimRng,
    oracle: Oracle,
    events: u64,
    server_requests: u64,
    /// Answers delivered to a later process than the one that sent their request.
    stale_answers_delivered: u64,
    syncs_completed: u64,
    conflicts_stored: u64,
    /// How often each code-path probe was reached (`probes.rs`).
    probes: BTreeMap<probes::Probe, u64>,
    /// Events handled since the server's whole-state check last ran.
    events_since_server_check: u64,
    /// True while a delivered answer is handed to an engine: versions first seen then came
    /// from the server, not from the device's user.
    delivering: bool,
    collect_events: bool,
    collected: BTreeMap<usize, Vec<SyncEvent>>,
    collect_requests: bool,
    /// Requests sent per device since the driver last took them (`collect_requests`).
    sent: BTreeMap<usize, Vec<SyncRequest>>,
    trace: Trace,
    /// What the kernel or its driver is doing now (the event handled, the user's action,
    /// the final checks): a failure's operation in its signature.
    operation: String,
    /// The structured events, kept only with the whole trace (`event_log.rs`).
    event_log: Option<Vec<event_log::LoggedEvent>>,
    /// Each device's last state line in the trace (kept only with the whole trace).
    state_lines: BTreeMap<usize, String>,
    /// Holds every device's database files; removed when the run drops.
    root: tempfile::TempDir,
}

impl Sim {
    // ---- reading the world ----------------------------------------------------------------

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Virtual time since the run began.
    pub fn elapsed_ms(&self) -> u64 {
        self.now_ms - EPOCH_MS
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn device(&self, device: usize) -> &Device {
        &self.devices[device]
    }

    /// A device's index by name.
    pub fn device_named(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|device| device.name == name)
    }

    /// The device's engine, if its app runs.
    pub fn engine(&self, device: usize) -> Option<&Engine> {
        self.devices[device].engine.as_ref()
    }

    pub fn server(&self) -> &ReferenceServer {
        &self.server
    }

    /// The server, for drivers that answer requests or plant behaviour themselves.
    pub fn server_mut(&mut self) -> &mut ReferenceServer {
        &mut self.server
    }

    pub fn tenants(&self) -> &[String] {
        &self.tenants
    }

    pub fn entities(&self) -> &[String] {
        &self.entities
    }

    pub fn registry(&self) -> &EntityRegistry {
        &self.registry
    }

    pub fn oracle(&self) -> &Oracle {
        &self.oracle
    }

    pub fn oracle_mut(&mut self) -> &mut Oracle {
        &mut self.oracle
    }

    /// The kill switch every device's crash hook shares.
    fn kill_switch(&self) -> MutexGuard<'_, KillSwitch> {
        self.kill_switch.lock().expect(device::KILL_SWITCH_POISONED)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Every fault that fired, in order of virtual time (empty unless the builder asked
    /// to record them).
    pub fn recorded_faults(&self) -> Vec<FiredFault> {
        let mut fired = self.faults.recorded().to_vec();
        fired.extend_from_slice(self.kill_switch().chooser.fired());
        // Stable: the kills of one engine call stay after the faults drawn before it.
        fired.sort_by_key(|fault| fault.at_ms);
        fired
    }

    /// Crash points that fired, by name.
    pub fn crash_points_fired(&self) -> BTreeMap<String, u64> {
        self.kill_switch()
            .fired
            .iter()
            .map(|(point, count)| (point.name().to_owned(), *count))
            .collect()
    }

    pub fn events_handled(&self) -> u64 {
        self.events
    }

    pub fn syncs_completed(&self) -> u64 {
        self.syncs_completed
    }

    pub fn conflicts_stored(&self) -> u64 {
        self.conflicts_stored
    }

    pub fn server_requests(&self) -> u64 {
        self.server_requests
    }

    /// Answers the network delivered to a later process than the one that sent their
    /// request (after a kill, a logout or a tenant switch).
    pub fn stale_answers_delivered(&self) -> u64 {
        self.stale_answers_delivered
    }

    /// What the run is doing now: the operation a failure arising now happened in.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// Names what the driver does next (a user action, the final checks), until the next
    /// event or the next call of this.
    pub fn set_operation(&mut self, operation: &str) {
        self.operation.clear();
        self.operation.push_str(operation);
    }

    pub fn trace_hash(&self) -> String {
        self.trace.hash_hex()
    }

    pub fn recent_trace(&self) -> Vec<String> {
        self.trace.recent()
    }

    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.take_all()
    }

    /// Engine events collected since the last take (with `collect_events` on).
    pub fn take_events(&mut self, device: usize) -> Vec<SyncEvent> {
        self.collected.remove(&device).unwrap_or_default()
    }

    /// Requests the device sent since the last take, held ones included, in the order the
    /// engine emitted them (with `collect_requests` on).
    pub fn take_requests(&mut self, device: usize) -> Vec<SyncRequest> {
        self.sent.remove(&device).unwrap_or_default()
    }

    pub fn tenant_of(&self, device: usize) -> Option<&str> {
        self.devices[device].tenant.as_deref()
    }

    /// Records a trace line, stamped with virtual time (and, when the trace is kept, logs
    /// it as a note on the lane of the device it starts with).
    pub fn trace(&mut self, line: String) {
        self.log_note(&line);
        self.trace_line(line);
    }

    fn trace_line(&mut self, line: String) {
        let stamped = format!("{:>9} {line}", self.now_ms - EPOCH_MS);
        self.trace.record(stamped);
    }

    /// Adds a device after the build (tests that make devices as they go); it is not
    /// opened until [`Sim::restart`] or [`Sim::login`].
    pub fn add_device(&mut self, name: &str, tenant: Option<&str>) -> usize {
        let index = self.devices.len();
        let dir = self.root.path().join(format!("d{index}"));
        let tenant = tenant.map(str::to_owned);
        let mut device = Device::new(index, name.to_owned(), dir, tenant);
        device.location = device
            .location
            .clone()
            .with_planted_defects(tenancy::engine_defects(&self.planted));
        self.devices.push(device);
        index
    }

    // ---- the scheduler ------------------------------------------------------------------

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.queue
            .insert((at_ms.max(self.now_ms), self.next_seq), event);
        self.next_seq += 1;
    }

    /// Calls off every queued event `doomed` picks (a verb that overrides an earlier one).
    fn unschedule(&mut self, doomed: impl Fn(&Event) -> bool) {
        self.queue.retain(|_, event| !doomed(event));
    }

    /// Wakes the driver for `device` at `at_ms` ([`Wake::Driver`]).
    pub fn schedule_driver(&mut self, at_ms: u64, device: usize) {
        self.schedule(at_ms, Event::Driver { device });
    }

    pub fn next_event_at(&self) -> Option<u64> {
        self.queue.keys().next().map(|(at_ms, _)| *at_ms)
    }

    /// Something is on the wire, or a killed app is about to restart.
    pub fn network_busy(&self) -> bool {
        self.queue.values().any(Event::is_network)
    }

    /// Moves virtual time forward without handling events (nothing may be due before).
    pub fn advance_to(&mut self, at_ms: u64) {
        assert!(self.next_event_at().is_none_or(|next| next >= at_ms));
        self.now_ms = self.now_ms.max(at_ms);
    }

    /// Handles the next event; `None` when the queue is empty.
    pub fn step(&mut self) -> Result<Option<Wake>, Failure> {
        let Some(((at_ms, _), event)) = self.queue.pop_first() else {
            return Ok(None);
        };
        self.now_ms = self.now_ms.max(at_ms);
        self.events += 1;
        let wake = self.handle_event(event)?;
        self.events_since_server_check += 1;
        let interval =
            SERVER_CHECK_EVERY.max(self.server.check_size() as u64 / SERVER_CHECK_ROWS_PER_EVENT);
        if self.events_since_server_check >= interval {
            self.events_since_server_check = 0;
            self.server.check_invariants();
            self.oracle.invariant_checks += 1;
        }
        Ok(Some(wake))
    }

    /// Steps while `more` holds and events are left. Driver events that come due are
    /// dropped: a driver that wants them steps itself.
    pub fn run_while(&mut self, more: impl Fn(&Sim) -> bool) -> Result<(), Failure> {
        while more(self) {
            if self.step()?.is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Runs until nothing is on the wire and no killed app waits to restart.
    pub fn run_until_quiet(&mut self) -> Result<(), Failure> {
        self.run_while(Sim::network_busy)
    }

    /// Runs every event due by `at_ms`, then sets the clock to `at_ms`.
    pub fn run_until(&mut self, at_ms: u64) -> Result<(), Failure> {
        self.run_while(|sim| sim.next_event_at().is_some_and(|next| next <= at_ms))?;
        self.now_ms = self.now_ms.max(at_ms);
        Ok(())
    }

    fn handle_event(&mut self, event: Event) -> Result<Wake, Failure> {
        self.set_operation(event.operation());
        match event {
            Event::Driver { device } => return Ok(Wake::Driver(device)),
            Event::EngineTimer { device, generation } => {
                self.as_process(device, generation, |sim| {
                    let due = sim.devices[device].generation == generation
                        && sim.devices[device].timer_at == Some(sim.now_ms);
                    if due {
                        sim.devices[device].timer_at = None;
                        let line = format!("{} timer", sim.devices[device].name);
                        sim.trace_device(device, event_log::EventKind::Timer, line);
                        sim.call(device, |engine| Ok(engine.handle_timeout()?))?;
                    }
                    Ok(())
                })?;
            }
            Event::ServerArrival {
                device,
                generation,
                request,
                fate,
                duplicate,
            } => self.server_arrival(device, generation, &request, fate, duplicate),
            Event::Delivery {
                device,
                generation,
                request_id,
                operation_name,
                response,
            } => self.as_process(device, generation, |sim| {
                sim.delivery(device, generation, request_id, &operation_name, response)
            })?,
            Event::Kill { device } => {
                if self.faults.is_on() && self.devices[device].is_running() {
                    self.faults.count(FaultClass::KillBetweenCalls);
                    self.crash(device, None);
                }
            }
            Event::Restart { device } => {
                self.devices[device].restart_scheduled = false;
                self.restart(device)?;
            }
            Event::PartitionHeal { device } => self.heal(device),
            Event::BackOnline { device } => self.online(device)?,
        }
        Ok(Wake::Handled)
    }

    // ---- the oracle's questions -----------------------------------------------------------

    /// The first way the world is not converged, or `None`.
    pub fn difference(&self) -> Result<Option<String>, Failure> {
        self.oracle.difference(&self.devices, &self.server)
    }

    pub fn check_no_duplicates(&mut self) -> Result<(), Failure> {
        self.oracle.check_no_duplicates(&self.server)
    }

    /// The oracle's checks that hold converged or not (the end of a `safety_only` run).
    pub fn safety_checks(&mut self) -> Result<(), Failure> {
        self.oracle.safety_checks(&self.devices, &self.server)
    }

    /// Every end-of-run check of the oracle.
    pub fn final_checks(&mut self) -> Result<(), Failure> {
        self.oracle.final_checks(&self.devices, &self.server)
    }
}
