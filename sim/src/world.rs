//! The world and its scheduler: devices running the real engine, the reference server,
//! the network between them, and the invariants checked over all of it.
//!
//! One thread, one event queue ordered by (virtual time, sequence number); the scheduler
//! jumps to the next event and never sleeps. Engine timers, message deliveries, user
//! actions, kills and restarts, network changes and clock jumps are all events. A run
//! has two phases: safety (faults on, invariants checked as it goes) and liveness
//! (network healed, kills stopped, conflicts resolved by the simulated user) in which
//! every tenant must converge within a bounded number of sync rounds.
//!
//! The world never reaches into the engine's internals: it uses the public API, an
//! injected clock, seeded entropy, and the crash-point hook.

use crate::device::{Device, KillSwitch, SimCrashHook};
use crate::model::{AckedWrite, Model, ServerView};
use crate::network::{plan_request, RequestFate, ServerFate};
use crate::profile::{FaultClass, Knobs, Profile};
use crate::rng::{SimRng, Stream};
use crate::server::{ReferenceServer, ServerDefects, ServerFault, ServerReply};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use sync_engine::wire::{ErrorCode, SyncRequest};
use sync_engine::{
    CrashPoint, DbLocation, Engine, EngineOptions, EntityConfig, EntityRegistry, Env, ManualClock,
    OpStatus, Resolution, Side, SyncError, SyncEvent, TenantId, TransportError, WriteError,
};

/// Virtual time starts here (2023-11-14T22:13:20Z), so device clocks look real.
pub const EPOCH_MS: u64 = 1_700_000_000_000;
pub const ENTITIES: [&str; 3] = ["Space", "Group", "Identity"];
const RECENT_EVENTS_MAX: usize = 40;
/// The server's whole-state check runs at least every this many events...
const SERVER_CHECK_EVERY: u64 = 64;
/// ...but no more often than once per this many rows it reads, per event: a check reads
/// every record and effect, so on a server of 100k rows a fixed interval would make the
/// checks quadratic in the run's length (they were 59 % of a `big` seed). With this, the
/// checks cost at most about as much as the events between them.
const SERVER_CHECK_ROWS_PER_EVENT: u64 = 64;

/// How a seed failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A safety invariant broke (exit code 1).
    Invariant,
    /// The world did not converge after healing (exit code 2).
    Liveness,
    /// The engine or the server panicked (exit code 3).
    Panic,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

fn violation(message: String) -> Failure {
    Failure {
        kind: FailureKind::Invariant,
        message,
    }
}

/// Options of one run beyond its seed and knobs.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep every trace line (for `syncsim replay --trace`).
    pub keep_trace: bool,
    /// Planted server defects (harness self-tests only).
    pub defects: ServerDefects,
}

/// Everything a run reports.
#[derive(Clone, Debug, Serialize)]
pub struct SeedReport {
    pub seed: u64,
    pub knobs: Knobs,
    pub failure: Option<Failure>,
    pub trace_hash: String,
    pub events: u64,
    pub virtual_ms: u64,
    pub faults_fired: BTreeMap<FaultClass, u64>,
    pub crash_points_fired: BTreeMap<String, u64>,
    pub invariant_checks: u64,
    pub acknowledged_writes: u64,
    pub conflicts_stored: u64,
    pub syncs_completed: u64,
    pub recent_events: Vec<String>,
    #[serde(skip)]
    pub trace: Vec<String>,
}

/// Runs one seed of a profile.
pub fn run_seed(seed: u64, profile: Profile, options: &RunOptions) -> SeedReport {
    run_seed_with_knobs(seed, Knobs::derive(seed, profile), options)
}

/// Runs one seed with explicit knobs (fuzzers and tests build their own).
pub fn run_seed_with_knobs(seed: u64, knobs: Knobs, options: &RunOptions) -> SeedReport {
    let mut world = World::new(seed, knobs, options);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        Err(payload) => Some(Failure {
            kind: FailureKind::Panic,
            message: panic_text(&payload),
        }),
    };
    world.report(failure)
}

#[derive(Clone, Debug)]
enum Event {
    UserAction {
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
    fn is_network(&self) -> bool {
        matches!(
            self,
            Event::ServerArrival { .. } | Event::Delivery { .. } | Event::Restart { .. }
        )
    }
}

/// An engine call's failure, as the world sees it.
enum CallError {
    Killed(CrashPoint),
    /// Bad input from the simulated user: a clear error that changed nothing.
    Rejected(String),
    /// SQLite failed: never expected in simulation.
    Fatal(String),
}

impl From<WriteError> for CallError {
    fn from(error: WriteError) -> CallError {
        match error {
            WriteError::Killed(point) => CallError::Killed(point),
            WriteError::Storage(error) => CallError::Fatal(error.to_string()),
            other => CallError::Rejected(other.to_string()),
        }
    }
}

impl From<SyncError> for CallError {
    fn from(error: SyncError) -> CallError {
        match error {
            SyncError::Killed(point) => CallError::Killed(point),
            other => CallError::Fatal(other.to_string()),
        }
    }
}

impl From<sync_engine::ReadError> for CallError {
    fn from(error: sync_engine::ReadError) -> CallError {
        CallError::Fatal(error.to_string())
    }
}

/// FNV-1a over every trace line: two runs of one seed must agree byte for byte.
#[derive(Debug)]
struct Trace {
    hash: u64,
    recent: VecDeque<String>,
    keep_all: bool,
    all: Vec<String>,
}

impl Trace {
    fn record(&mut self, line: String) {
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        if self.recent.len() == RECENT_EVENTS_MAX {
            self.recent.pop_front();
        }
        if self.keep_all {
            self.all.push(line.clone());
        }
        self.recent.push_back(line);
    }
}

#[derive(Debug, Default)]
struct Stats {
    events: u64,
    invariant_checks: u64,
    acknowledged_writes: u64,
    conflicts_stored: u64,
    syncs_completed: u64,
    server_requests: u64,
}

pub struct World {
    seed: u64,
    knobs: Knobs,
    now_ms: u64,
    next_seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    devices: Vec<Device>,
    server: ReferenceServer,
    registry: EntityRegistry,
    tenants: Vec<String>,
    kill_switch: Rc<RefCell<KillSwitch>>,
    workload: SimRng,
    network: SimRng,
    scheduler: SimRng,
    model: Model,
    faults_on: bool,
    faults_fired: BTreeMap<FaultClass, u64>,
    /// Last cursor seen per (device, tenant, entity), as (commit stamp, row id).
    cursors: BTreeMap<(usize, String, String), (u64, String)>,
    stats: Stats,
    /// Events handled since the server's whole-state check last ran.
    events_since_server_check: u64,
    trace: Trace,
    /// Holds every device's database files; removed when the world drops.
    root: tempfile::TempDir,
}

/// The message of a caught panic (`catch_unwind`'s payload).
pub(crate) fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
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
pub(crate) fn token_of(tenant: &str) -> String {
    format!("token-{tenant}")
}

/// A new directory for devices' databases, named `{prefix}…`.
pub(crate) fn temp_root(prefix: &str) -> tempfile::TempDir {
    // tmpfs when there is one: the files behave the same, and a run is I/O-bound otherwise.
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix(prefix).tempdir_in(shm);
    builder.unwrap_or_else(|_| tempfile::tempdir().expect("a temporary directory"))
}

impl World {
    pub fn new(seed: u64, knobs: Knobs, options: &RunOptions) -> World {
        let mut registry = EntityRegistry::new();
        for name in ENTITIES {
            let mut config = EntityConfig::new(name).expect("valid entity name");
            config.push_batch_max = knobs.push_batch_max;
            config.pull_page_limit = knobs.pull_page_limit;
            config.auto_merge_fields = knobs.auto_merge_fields;
            registry.register(config).expect("distinct names");
        }
        let mut server = ReferenceServer::new(registry.clone());
        server.set_defects(options.defects);
        let tenants: Vec<String> = (0..knobs.tenants)
            .map(|index| format!("t{index}"))
            .collect();
        for tenant in &tenants {
            server.add_tenant_token(tenant, &token_of(tenant));
        }
        let root = temp_root("syncsim-");
        let mut devices = Vec::with_capacity(knobs.devices);
        for index in 0..knobs.devices {
            let mut clock_rng = SimRng::new(seed, Stream::DeviceClockBase as u64 + index as u64);
            let offset_max = knobs.clock_offset_ms_max;
            let drift_max = knobs.clock_drift_ppm_max;
            let dir = root.path().join(format!("d{index}"));
            devices.push(Device {
                index,
                dir,
                clock: ManualClock::new(EPOCH_MS),
                clock_offset_ms: clock_rng.range(0, 2 * offset_max) as i64 - offset_max as i64,
                drift_ppm: clock_rng.range(0, 2 * drift_max) as i64 - drift_max as i64,
                tenant: Some(tenants[index % tenants.len()].clone()),
                engine: None,
                generation: 0,
                network_up: true,
                app_online: true,
                restart_scheduled: false,
                timer_at: None,
            });
        }
        let kill_switch = KillSwitch {
            rng: SimRng::for_stream(seed, Stream::Kills),
            rate: knobs.fault(FaultClass::KillAtCrashPoint),
            armed: true,
            fired: BTreeMap::new(),
        };
        World {
            seed,
            now_ms: EPOCH_MS,
            next_seq: 0,
            queue: BTreeMap::new(),
            devices,
            server,
            registry,
            tenants,
            kill_switch: Rc::new(RefCell::new(kill_switch)),
            workload: SimRng::for_stream(seed, Stream::Workload),
            network: SimRng::for_stream(seed, Stream::Network),
            scheduler: SimRng::for_stream(seed, Stream::Scheduler),
            model: Model::default(),
            faults_on: true,
            faults_fired: BTreeMap::new(),
            cursors: BTreeMap::new(),
            stats: Stats::default(),
            events_since_server_check: 0,
            trace: Trace {
                hash: 0xcbf2_9ce4_8422_2325,
                recent: VecDeque::new(),
                keep_all: options.keep_trace,
                all: Vec::new(),
            },
            root,
            knobs,
        }
    }

    fn report(self, failure: Option<Failure>) -> SeedReport {
        let crash_points_fired = self
            .kill_switch
            .borrow()
            .fired
            .iter()
            .map(|(point, count)| (point.name().to_owned(), *count))
            .collect();
        let _ = self.root.path();
        SeedReport {
            seed: self.seed,
            knobs: self.knobs,
            failure,
            trace_hash: format!("{:016x}", self.trace.hash),
            events: self.stats.events,
            virtual_ms: self.now_ms - EPOCH_MS,
            faults_fired: self.faults_fired,
            crash_points_fired,
            invariant_checks: self.stats.invariant_checks,
            acknowledged_writes: self.stats.acknowledged_writes,
            conflicts_stored: self.stats.conflicts_stored,
            syncs_completed: self.stats.syncs_completed,
            recent_events: self.trace.recent.into_iter().collect(),
            trace: self.trace.all,
        }
    }

    // ---- scheduling ---------------------------------------------------------------------

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.queue
            .insert((at_ms.max(self.now_ms), self.next_seq), event);
        self.next_seq += 1;
    }

    fn trace(&mut self, line: String) {
        let stamped = format!("{:>9} {line}", self.now_ms - EPOCH_MS);
        self.trace.record(stamped);
    }

    fn fired(&mut self, class: FaultClass) {
        *self.faults_fired.entry(class).or_insert(0) += 1;
    }

    fn chance(&mut self, class: FaultClass) -> bool {
        let rate = self.knobs.fault(class);
        let hit = self.faults_on && self.workload.chance(rate);
        if hit {
            self.fired(class);
        }
        hit
    }

    /// Runs both phases and the final checks.
    pub fn run(&mut self) -> Result<(), Failure> {
        for device in 0..self.devices.len() {
            self.open_engine(device)?;
            let first_action = self.now_ms + self.scheduler.range(0, self.knobs.action_gap_ms_max);
            self.schedule(first_action, Event::UserAction { device });
        }
        let safety_end_ms = EPOCH_MS + self.knobs.safety_duration_ms;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > safety_end_ms {
                break;
            }
            let ((at_ms, _), event) = entry.remove_entry();
            self.now_ms = at_ms;
            self.handle_event(event, true)?;
        }
        self.now_ms = self.now_ms.max(safety_end_ms);
        self.run_liveness()?;
        self.final_checks()
    }

    fn handle_event(&mut self, event: Event, safety: bool) -> Result<(), Failure> {
        self.stats.events += 1;
        match event {
            Event::UserAction { device } => {
                if safety {
                    self.user_action(device)?;
                    let next = self.now_ms + self.scheduler.range(1, self.knobs.action_gap_ms_max);
                    self.schedule(next, Event::UserAction { device });
                }
            }
            Event::EngineTimer { device, generation } => {
                let due = self.devices[device].generation == generation
                    && self.devices[device].timer_at == Some(self.now_ms);
                if due {
                    self.devices[device].timer_at = None;
                    self.trace(format!("d{device} timer"));
                    self.call(device, |engine| Ok(engine.handle_timeout()?))?;
                }
            }
            Event::ServerArrival {
                device,
                generation,
                request,
                fate,
                duplicate,
            } => self.server_arrival(device, generation, &request, fate, duplicate)?,
            Event::Delivery {
                device,
                generation,
                request_id,
                operation_name,
                response,
            } => {
                self.delivery(device, generation, request_id, &operation_name, response)?;
            }
            Event::Kill { device } => {
                if self.faults_on && self.devices[device].is_running() {
                    self.fired(FaultClass::KillBetweenCalls);
                    self.kill(device, None);
                }
            }
            Event::Restart { device } => {
                self.devices[device].restart_scheduled = false;
                if self.devices[device].tenant.is_some() && !self.devices[device].is_running() {
                    self.trace(format!("d{device} restart"));
                    self.open_engine(device)?;
                }
            }
            Event::PartitionHeal { device } => {
                self.devices[device].network_up = true;
                self.trace(format!("d{device} partition healed"));
            }
            Event::BackOnline { device } => self.set_app_online(device, true)?,
        }
        self.events_since_server_check += 1;
        let interval =
            SERVER_CHECK_EVERY.max(self.server.check_size() as u64 / SERVER_CHECK_ROWS_PER_EVENT);
        if self.events_since_server_check >= interval {
            self.events_since_server_check = 0;
            self.server.check_invariants();
            self.stats.invariant_checks += 1;
        }
        Ok(())
    }

    // ---- engine plumbing ----------------------------------------------------------------

    fn open_engine(&mut self, index: usize) -> Result<(), Failure> {
        let now_ms = self.now_ms;
        let device = &mut self.devices[index];
        let tenant = device
            .tenant
            .clone()
            .expect("only a logged-in device opens an engine");
        assert!(device.engine.is_none());
        device.generation += 1;
        device.timer_at = None;
        device.tick_clock(now_ms);
        let entropy = SimRng::new(
            self.seed,
            1_000_000 + index as u64 * 100_000 + device.generation,
        );
        let mut options = EngineOptions::new(
            DbLocation::new(&device.dir),
            TenantId::parse(&tenant).expect("simulated tenant ids are valid"),
            self.registry.clone(),
        );
        options.sync_after_write = self.knobs.sync_after_write;
        let mut engine =
            Engine::open(options, Env::new(device.clock.clone(), entropy)).map_err(|error| {
                violation(format!("d{index}: reopening the database failed: {error}"))
            })?;
        engine
            .check_invariants()
            .map_err(|message| violation(format!("d{index} after reopen: {message}")))?;
        self.stats.invariant_checks += 1;
        // Writes committed just before a kill were never acknowledged, so the model has
        // not seen their ids yet: register what the database holds, refusing any id
        // another tenant owns.
        for record in engine
            .all_records()
            .map_err(|error| violation(error.to_string()))?
        {
            if let Some(owner) = self.model.tenant_of(&record.client_id) {
                if owner != tenant {
                    return Err(violation(format!(
                        "tenant isolation: d{index}'s {tenant} database holds {} created in {owner}",
                        record.client_id
                    )));
                }
            }
            self.model.record_create(&tenant, &record.client_id);
        }
        engine.set_crash_hook(Box::new(SimCrashHook(Rc::clone(&self.kill_switch))));
        let app_online = device.app_online;
        device.engine = Some(engine);
        self.trace(format!(
            "d{index} open tenant {tenant} generation {}",
            self.devices[index].generation
        ));
        let token = token_of(&tenant);
        self.call(index, |engine| Ok(engine.set_auth_token(&token)?))?;
        if !app_online {
            self.call(index, |engine| Ok(engine.handle_network_change(false)?))?;
        }
        self.call(index, |engine| Ok(engine.handle_app_open()?))?;
        Ok(())
    }

    /// Calls the device's engine (if it runs), then drains its outputs. A kill inside the
    /// call kills the device; a rejected input is traced and changes nothing.
    fn call<T>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Engine) -> Result<T, CallError>,
    ) -> Result<Option<T>, Failure> {
        let now_ms = self.now_ms;
        let device = &mut self.devices[index];
        device.tick_clock(now_ms);
        let Some(engine) = device.engine.as_mut() else {
            return Ok(None);
        };
        match f(engine) {
            Ok(value) => {
                self.drain(index)?;
                Ok(Some(value))
            }
            Err(CallError::Killed(point)) => {
                self.fired(FaultClass::KillAtCrashPoint);
                self.trace(format!("d{index} killed at {}", point.name()));
                self.kill(index, Some(point));
                Ok(None)
            }
            Err(CallError::Rejected(message)) => {
                self.trace(format!("d{index} rejected: {message}"));
                self.drain(index)?;
                Ok(None)
            }
            Err(CallError::Fatal(message)) => Err(violation(format!(
                "d{index}: engine storage error: {message}"
            ))),
        }
    }

    /// After every input, drain the outputs: requests, events, the next timer.
    fn drain(&mut self, index: usize) -> Result<(), Failure> {
        let now_ms = self.now_ms;
        let device = &mut self.devices[index];
        let device_now_ms = device.device_ms(now_ms);
        let Some(engine) = device.engine.as_mut() else {
            return Ok(());
        };
        let requests: Vec<SyncRequest> = std::iter::from_fn(|| engine.poll_request()).collect();
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
        for request in requests {
            self.send(index, request);
        }
        for event in events {
            self.engine_event(index, event)?;
        }
        Ok(())
    }

    fn engine_event(&mut self, index: usize, event: SyncEvent) -> Result<(), Failure> {
        let tenant = self.devices[index].tenant.clone().unwrap_or_default();
        self.trace(format!("d{index} event {event:?}"));
        match event {
            SyncEvent::ConflictStored { .. } => self.stats.conflicts_stored += 1,
            SyncEvent::SyncCompleted => self.stats.syncs_completed += 1,
            SyncEvent::OpFailed { client_id, .. } => {
                self.model
                    .discard_record(index, &tenant, &client_id, "reported permanent failure");
            }
            SyncEvent::RepairStarted { entity } => {
                return Err(violation(format!(
                    "silent divergence: d{index}'s copy of {entity} in tenant {tenant} disagreed with the server's \
                     versionHash after a complete pull with nothing pending"
                )));
            }
            SyncEvent::ForceCompleted { entity } => {
                self.cursors.remove(&(index, tenant, entity));
            }
            _ => {}
        }
        Ok(())
    }

    fn kill(&mut self, index: usize, point: Option<CrashPoint>) {
        let device = &mut self.devices[index];
        device.engine = None;
        device.generation += 1;
        device.timer_at = None;
        if point.is_none() {
            self.trace(format!("d{index} killed between calls"));
        }
        if !self.devices[index].restart_scheduled {
            self.devices[index].restart_scheduled = true;
            let at = self.now_ms + self.scheduler.range(100, 10_000);
            self.schedule(at, Event::Restart { device: index });
        }
    }

    fn set_app_online(&mut self, index: usize, online: bool) -> Result<(), Failure> {
        self.devices[index].app_online = online;
        self.trace(format!("d{index} app online={online}"));
        self.call(index, |engine| Ok(engine.handle_network_change(online)?))?;
        Ok(())
    }

    // ---- network and server -------------------------------------------------------------

    fn send(&mut self, index: usize, request: SyncRequest) {
        let generation = self.devices[index].generation;
        self.trace(format!(
            "d{index} -> {} #{}",
            request.operation_name, request.request_id
        ));
        let timeout_at = self.now_ms + self.knobs.request_timeout_ms;
        let delivery = |response| Event::Delivery {
            device: index,
            generation,
            request_id: request.request_id,
            operation_name: request.operation_name.clone(),
            response,
        };
        if !self.devices[index].network_up {
            self.fired(FaultClass::Partition);
            let event = delivery(Err(TransportError::unreachable("network partition")));
            self.schedule(self.now_ms + 50, event);
            return;
        }
        let mut fired = Vec::new();
        let fate = plan_request(
            &mut self.network,
            &self.knobs,
            self.faults_on,
            &mut |class| fired.push(class),
        );
        for class in fired {
            self.fired(class);
        }
        match fate {
            RequestFate::Lost => {
                let event = delivery(Err(TransportError::timeout("request lost")));
                self.schedule(timeout_at, event);
            }
            RequestFate::Delivered {
                latency_ms,
                server,
                duplicate_after_ms,
            } => {
                let arrive_at = self.now_ms + latency_ms;
                if let Some(after_ms) = duplicate_after_ms {
                    let duplicate = Event::ServerArrival {
                        device: index,
                        generation,
                        request: Box::new(request.clone()),
                        fate: ServerFate::Normal {
                            return_latency_ms: 5,
                        },
                        duplicate: true,
                    };
                    self.schedule(arrive_at + after_ms, duplicate);
                }
                let event = Event::ServerArrival {
                    device: index,
                    generation,
                    request: Box::new(request),
                    fate: server,
                    duplicate: false,
                };
                self.schedule(arrive_at, event);
            }
        }
    }

    fn server_arrival(
        &mut self,
        index: usize,
        // The process that sent the request: its answer is addressed to it, not to a
        // process restarted since.
        generation: u64,
        request: &SyncRequest,
        fate: ServerFate,
        duplicate: bool,
    ) -> Result<(), Failure> {
        self.stats.server_requests += 1;
        let deliver = |world: &mut World, at_ms: u64, response: Result<Value, TransportError>| {
            let event = Event::Delivery {
                device: index,
                generation,
                request_id: request.request_id,
                operation_name: request.operation_name.clone(),
                response,
            };
            world.schedule(at_ms, event);
        };
        let timeout_at = self.now_ms + self.knobs.request_timeout_ms;
        self.trace(format!(
            "server <- d{index} {} #{} {fate:?} duplicate={duplicate}",
            request.operation_name, request.request_id
        ));
        match fate {
            ServerFate::Normal { return_latency_ms } => {
                let response = self.server.handle(request);
                deliver(self, self.now_ms + return_latency_ms, Ok(response));
            }
            ServerFate::Busy { return_latency_ms } => {
                let ServerReply::Response(response) = self
                    .server
                    .handle_with_fault(request, ServerFault::FailBeforeApplying)
                else {
                    unreachable!("failing before applying still answers");
                };
                deliver(self, self.now_ms + return_latency_ms, Ok(response));
            }
            ServerFate::ResponseLost => {
                let reply = self
                    .server
                    .handle_with_fault(request, ServerFault::ApplyThenLoseResponse);
                assert!(matches!(reply, ServerReply::Lost));
                deliver(
                    self,
                    timeout_at,
                    Err(TransportError::timeout("response lost")),
                );
            }
            ServerFate::TimeoutThenLate { late_by_ms } => {
                let response = self.server.handle(request);
                deliver(
                    self,
                    timeout_at,
                    Err(TransportError::timeout("server too slow")),
                );
                deliver(self, timeout_at + late_by_ms, Ok(response));
            }
        }
        Ok(())
    }

    fn delivery(
        &mut self,
        index: usize,
        generation: u64,
        request_id: u64,
        operation_name: &str,
        response: Result<Value, TransportError>,
    ) -> Result<(), Failure> {
        if self.devices[index].generation != generation || !self.devices[index].is_running() {
            self.trace(format!(
                "d{index} <- #{request_id} dropped: the process that sent it is gone"
            ));
            return Ok(());
        }
        let summary = match &response {
            Ok(_) => "response".to_owned(),
            Err(error) => format!("transport error {:?}", error.kind),
        };
        self.trace(format!(
            "d{index} <- {operation_name} #{request_id} {summary}"
        ));
        self.call(index, |engine| {
            Ok(engine.handle_response(request_id, response)?)
        })?;
        if operation_name.starts_with("syncPull") {
            self.check_cursors(index)?;
        }
        Ok(())
    }

    /// Cursors never move backwards (a repair, force, wipe or logout resets them).
    fn check_cursors(&mut self, index: usize) -> Result<(), Failure> {
        let Some(tenant) = self.devices[index].tenant.clone() else {
            return Ok(());
        };
        let Some(engine) = self.devices[index].engine.as_ref() else {
            return Ok(());
        };
        let mut seen = Vec::new();
        for entity in ENTITIES {
            let cursor = engine
                .cursor(entity)
                .map_err(|error| violation(error.to_string()))?;
            seen.push((entity, cursor));
        }
        self.stats.invariant_checks += 1;
        for (entity, cursor) in seen {
            let Some(cursor) = cursor else { continue };
            let parsed = parse_cursor(&cursor);
            let key = (index, tenant.clone(), entity.to_owned());
            if let Some(previous) = self.cursors.get(&key) {
                if parsed < *previous {
                    return Err(violation(format!(
                        "cursor moved backwards on d{index} tenant {tenant} {entity}: {previous:?} -> {parsed:?}"
                    )));
                }
            }
            self.cursors.insert(key, parsed);
        }
        Ok(())
    }

    fn reset_cursors(&mut self, index: usize, tenant: &str) {
        self.cursors
            .retain(|(device, cursor_tenant, _), _| !(*device == index && cursor_tenant == tenant));
    }

    /// A request carrying one tenant's token but asking for another tenant's data must be
    /// refused and must change nothing.
    fn probe_cross_tenant(&mut self, index: usize) -> Result<(), Failure> {
        let Some(own) = self.devices[index].tenant.clone() else {
            return Ok(());
        };
        let Some(other) = self.tenants.iter().find(|tenant| **tenant != own).cloned() else {
            return Ok(());
        };
        let effects_before = self.server.effects().len();
        let stamps_before: Vec<u64> = self
            .tenants
            .iter()
            .map(|tenant| self.server.commit_stamp(tenant))
            .collect();
        let pull = SyncRequest {
            request_id: 0,
            operation_name: "syncPullSpace".to_owned(),
            tenant_id: own.clone(),
            token: token_of(&own),
            variables: json!({ "lastSyncAt": null, "tenantId": other, "limit": 1000 }),
        };
        let push = SyncRequest {
            request_id: 0,
            operation_name: "syncPushGroup".to_owned(),
            tenant_id: own.clone(),
            token: token_of(&own),
            variables: json!({ "tenantId": other, "payload": [{
                "clientId": format!("probe-{}", self.stats.events), "id": null, "operation": "insert",
                "data": {"probe": true}, "opId": format!("probe-op-{}", self.stats.events),
                "baseVersion": 0, "force": false, "spaceId": "space-0", "updatedAt": 1
            }] }),
        };
        self.trace(format!("d{index} cross-tenant probe {own} -> {other}"));
        for request in [pull, push] {
            let response = self.server.handle(&request);
            let code = response.pointer("/errors/0/extensions/code").cloned();
            if code != Some(json!(ErrorCode::Unauthorized)) {
                return Err(violation(format!(
                    "tenant isolation: a {} with {own}'s token for tenant {other} was not refused: {}",
                    request.operation_name,
                    truncate(&response.to_string())
                )));
            }
        }
        let stamps_after: Vec<u64> = self
            .tenants
            .iter()
            .map(|tenant| self.server.commit_stamp(tenant))
            .collect();
        if self.server.effects().len() != effects_before || stamps_after != stamps_before {
            return Err(violation(
                "tenant isolation: an unauthorized request changed server state".to_owned(),
            ));
        }
        self.stats.invariant_checks += 1;
        Ok(())
    }

    // ---- the simulated user -------------------------------------------------------------

    fn user_action(&mut self, index: usize) -> Result<(), Failure> {
        if self.chance(FaultClass::KillBetweenCalls) {
            let at = self.now_ms + self.scheduler.range(0, 3_000);
            self.schedule(at, Event::Kill { device: index });
        }
        if self.devices[index].network_up && self.chance(FaultClass::Partition) {
            self.devices[index].network_up = false;
            self.trace(format!("d{index} partitioned"));
            let at = self.now_ms + self.scheduler.range(5_000, 120_000);
            self.schedule(at, Event::PartitionHeal { device: index });
        }
        if self.devices[index].app_online
            && self.devices[index].is_running()
            && self.chance(FaultClass::OfflinePeriod)
        {
            self.set_app_online(index, false)?;
            let at = self.now_ms + self.scheduler.range(5_000, 300_000);
            self.schedule(at, Event::BackOnline { device: index });
        }
        if self.chance(FaultClass::ClockJump) {
            let jump_max = self.knobs.clock_jump_ms_max;
            let delta = self.workload.range(0, 2 * jump_max) as i64 - jump_max as i64;
            self.devices[index].clock_offset_ms += delta;
            self.trace(format!("d{index} clock jumps {delta} ms"));
        }
        if self.tenants.len() > 1 && self.chance(FaultClass::CrossTenantProbe) {
            self.probe_cross_tenant(index)?;
        }
        if self.devices[index].tenant.is_none() {
            let tenant = self.tenants[self.workload.index(self.tenants.len())].clone();
            self.trace(format!("d{index} logs in to {tenant}"));
            self.devices[index].tenant = Some(tenant);
            return self.open_engine(index);
        }
        if !self.devices[index].is_running() {
            return Ok(());
        }
        let weights = self.knobs.workload_weights;
        match self.workload.weighted(&weights) {
            0 => self.act_create(index, 1),
            1 => self.act_update(index),
            2 => self.act_delete(index),
            3 => {
                let count = self.workload.range(1, self.knobs.bulk_create_max as u64) as usize;
                self.act_create(index, count)
            }
            4 => {
                self.trace(format!("d{index} sync now"));
                self.call(index, |engine| Ok(engine.sync_now()?))
                    .map(|_| ())
            }
            5 => self.act_resolve_one(index),
            6 => self.act_force(index),
            7 => self.act_wipe(index),
            8 => self.act_logout(index),
            _ => self.act_switch_tenant(index),
        }
    }

    fn tenant_of(&self, index: usize) -> String {
        self.devices[index]
            .tenant
            .clone()
            .expect("acting devices are logged in")
    }

    fn random_data(&mut self) -> Value {
        let colors = ["red", "green", "blue", "amber"];
        json!({
            "title": format!("item-{}", self.workload.range(0, 999)),
            "count": self.workload.range(0, 100),
            "color": colors[self.workload.index(colors.len())],
        })
    }

    /// Records the device's current copy of `client_id` as an acknowledged write.
    fn acknowledge(&mut self, index: usize, client_id: &str) -> Result<(), Failure> {
        let tenant = self.tenant_of(index);
        let Some(engine) = self.devices[index].engine.as_ref() else {
            return Ok(());
        };
        let record = engine
            .get(client_id)
            .map_err(|error| violation(error.to_string()))?
            .ok_or_else(|| {
                violation(format!(
                    "d{index}: acknowledged record {client_id} is not readable"
                ))
            })?;
        self.model.acknowledge(
            &tenant,
            client_id,
            AckedWrite {
                device: index,
                entity: record.entity.clone(),
                space_id: record.space_id.clone(),
                stamp: record.updated_at,
                data: record.data.clone(),
                deleted: record.is_deleted,
                discarded: None,
            },
        );
        self.stats.acknowledged_writes += 1;
        Ok(())
    }

    fn act_create(&mut self, index: usize, count: usize) -> Result<(), Failure> {
        let tenant = self.tenant_of(index);
        let entity = ENTITIES[self.workload.index(ENTITIES.len())];
        let space = format!(
            "space-{}",
            self.workload.index(self.knobs.spaces_per_tenant)
        );
        let items: Vec<Value> = (0..count).map(|_| self.random_data()).collect();
        self.trace(format!("d{index} create {count} {entity} in {space}"));
        let created = self
            .call(index, |engine| {
                Ok(engine.create_many(entity, &space, items)?)
            })?
            .unwrap_or_default();
        if let (Some(first), Some(last)) = (created.first(), created.last()) {
            self.trace(format!("d{index} created {first}..{last}"));
        }
        for client_id in created {
            self.model.record_create(&tenant, &client_id);
            self.acknowledge(index, &client_id)?;
        }
        Ok(())
    }

    fn pick_target(&mut self, index: usize) -> Option<String> {
        let tenant = self.tenant_of(index);
        let ids = self.model.created_list(&tenant);
        if ids.is_empty() {
            return None;
        }
        // Favour recent records: they are the ones devices edit concurrently.
        let window = ids.len().min(32);
        let pick = ids.len() - 1 - self.workload.index(window);
        Some(ids[pick].clone())
    }

    fn act_update(&mut self, index: usize) -> Result<(), Failure> {
        let Some(client_id) = self.pick_target(index) else {
            return Ok(());
        };
        let fields = ["title", "count", "color", "note"];
        let field = fields[self.workload.index(fields.len())];
        let value = json!(format!("v{}", self.workload.range(0, 99)));
        let mut patch = Map::new();
        patch.insert(field.to_owned(), value);
        self.trace(format!("d{index} update {client_id} {field}"));
        let updated = self.call(index, |engine| {
            Ok(engine.update(&client_id, Value::Object(patch))?)
        })?;
        if updated.is_some() {
            self.acknowledge(index, &client_id)?;
        }
        if self.workload.chance(self.knobs.concurrent_edit) {
            let tenant = self.devices[index].tenant.clone();
            let others: Vec<usize> = (0..self.devices.len())
                .filter(|other| {
                    *other != index
                        && self.devices[*other].tenant == tenant
                        && self.devices[*other].is_running()
                })
                .collect();
            if !others.is_empty() {
                let other = others[self.workload.index(others.len())];
                let mut patch = Map::new();
                patch.insert(
                    field.to_owned(),
                    json!(format!("w{}", self.workload.range(0, 99))),
                );
                self.trace(format!("d{other} concurrently updates {client_id} {field}"));
                let updated = self.call(other, |engine| {
                    Ok(engine.update(&client_id, Value::Object(patch))?)
                })?;
                if updated.is_some() {
                    self.acknowledge(other, &client_id)?;
                }
            }
        }
        Ok(())
    }

    fn act_delete(&mut self, index: usize) -> Result<(), Failure> {
        let Some(client_id) = self.pick_target(index) else {
            return Ok(());
        };
        self.trace(format!("d{index} delete {client_id}"));
        if self
            .call(index, |engine| Ok(engine.delete(&client_id)?))?
            .is_some()
        {
            self.acknowledge(index, &client_id)?;
        }
        Ok(())
    }

    fn act_resolve_one(&mut self, index: usize) -> Result<(), Failure> {
        let Some(conflicts) = self.call(index, |engine| Ok(engine.list_conflicts()?))? else {
            return Ok(());
        };
        let Some(conflict) = conflicts.first().cloned() else {
            return Ok(());
        };
        self.resolve(index, &conflict)
    }

    /// The simulated user answers one conflict with one of the three choices.
    fn resolve(&mut self, index: usize, conflict: &sync_engine::Conflict) -> Result<(), Failure> {
        let tenant = self.tenant_of(index);
        let resolution = match self.workload.range(0, 2) {
            0 => Resolution::KeepLocal,
            1 => Resolution::UseServer,
            _ => Resolution::MergeFields(
                conflict
                    .changed_fields()
                    .into_iter()
                    .map(|diff| {
                        (
                            diff.field,
                            if self.workload.coin() {
                                Side::Local
                            } else {
                                Side::Server
                            },
                        )
                    })
                    .collect(),
            ),
        };
        self.trace(format!(
            "d{index} resolves conflict on {} with {resolution:?}",
            conflict.client_id
        ));
        self.model.discard_record(
            index,
            &tenant,
            &conflict.client_id,
            "user resolved a conflict",
        );
        let id = conflict.id;
        let resolved = self.call(index, |engine| {
            Ok(engine.resolve_conflict(id, resolution.clone())?)
        })?;
        if resolved.is_some() && resolution != Resolution::UseServer {
            self.acknowledge(index, &conflict.client_id)?;
        }
        Ok(())
    }

    fn act_force(&mut self, index: usize) -> Result<(), Failure> {
        let tenant = self.tenant_of(index);
        let entity = ENTITIES[self.workload.index(ENTITIES.len())];
        let from_server = self.workload.coin();
        self.trace(format!(
            "d{index} force {} {entity}",
            if from_server {
                "from server"
            } else {
                "push local"
            }
        ));
        let plan = self.call(index, |engine| {
            Ok(if from_server {
                engine.plan_force_from_server(entity)?
            } else {
                engine.plan_force_push_local(entity)?
            })
        })?;
        let Some(plan) = plan else { return Ok(()) };
        // Discards are recorded before executing: a kill mid-way may or may not discard.
        if from_server {
            self.model.discard_device_entity(index, &tenant, entity);
        } else {
            self.model
                .discard_other_devices_entity(index, &tenant, entity);
        }
        self.call(index, |engine| Ok(engine.execute_force(plan.confirm())?))?;
        if from_server {
            self.reset_cursors(index, &tenant);
        }
        Ok(())
    }

    fn act_wipe(&mut self, index: usize) -> Result<(), Failure> {
        let tenant = self.tenant_of(index);
        let space = format!(
            "space-{}",
            self.workload.index(self.knobs.spaces_per_tenant)
        );
        self.trace(format!("d{index} wipes {space}"));
        self.model.discard_device_space(index, &tenant, &space);
        self.call(index, |engine| Ok(engine.wipe_space(&space)?))?;
        self.reset_cursors(index, &tenant);
        Ok(())
    }

    fn act_logout(&mut self, index: usize) -> Result<(), Failure> {
        let tenant = self.tenant_of(index);
        self.trace(format!("d{index} logs out of {tenant}"));
        let engine = self.devices[index].engine.take().expect("running");
        self.devices[index].generation += 1;
        self.devices[index].timer_at = None;
        self.devices[index].tenant = None;
        self.model.discard_device_tenant(index, &tenant);
        self.reset_cursors(index, &tenant);
        engine.drop_database().map_err(|error| {
            violation(format!("d{index}: dropping the database failed: {error}"))
        })?;
        let leftovers = std::fs::read_dir(&self.devices[index].dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_name().to_string_lossy().ends_with(&tenant))
                    .count()
            })
            .unwrap_or(0);
        if leftovers > 0 {
            return Err(violation(format!(
                "d{index}: logout left files of {tenant} behind"
            )));
        }
        Ok(())
    }

    fn act_switch_tenant(&mut self, index: usize) -> Result<(), Failure> {
        let current = self.tenant_of(index);
        let others: Vec<String> = self
            .tenants
            .iter()
            .filter(|tenant| **tenant != current)
            .cloned()
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let next = others[self.workload.index(others.len())].clone();
        self.trace(format!("d{index} switches tenant {current} -> {next}"));
        self.devices[index].engine = None;
        self.devices[index].tenant = Some(next);
        self.open_engine(index)
    }

    // ---- liveness -----------------------------------------------------------------------

    fn run_liveness(&mut self) -> Result<(), Failure> {
        self.trace("liveness: heal the network, stop kills and faults".to_owned());
        self.faults_on = false;
        self.kill_switch.borrow_mut().armed = false;
        for index in 0..self.devices.len() {
            self.devices[index].network_up = true;
            if self.devices[index].tenant.is_some() && !self.devices[index].is_running() {
                self.open_engine(index)?;
            }
            if !self.devices[index].app_online {
                self.set_app_online(index, true)?;
            }
        }
        let mut last_difference = String::new();
        for round in 0..self.knobs.liveness_rounds_max {
            self.trace(format!("liveness round {round}"));
            for index in 0..self.devices.len() {
                let conflicts = self
                    .call(index, |engine| Ok(engine.list_conflicts()?))?
                    .unwrap_or_default();
                for conflict in conflicts {
                    self.resolve(index, &conflict)?;
                }
                self.call(index, |engine| Ok(engine.sync_now()?))?;
            }
            self.run_until_network_quiet()?;
            match self.difference()? {
                None => return Ok(()),
                Some(difference) => last_difference = difference,
            }
        }
        Err(Failure {
            kind: FailureKind::Liveness,
            message: format!(
                "no convergence after {} sync rounds: {last_difference}",
                self.knobs.liveness_rounds_max
            ),
        })
    }

    fn run_until_network_quiet(&mut self) -> Result<(), Failure> {
        while self.queue.values().any(Event::is_network) {
            let ((at_ms, _), event) = self.queue.pop_first().expect("non-empty");
            self.now_ms = at_ms;
            self.handle_event(event, false)?;
        }
        Ok(())
    }

    /// Describes the first way the world is not converged, or `None` if it is.
    fn difference(&mut self) -> Result<Option<String>, Failure> {
        for index in 0..self.devices.len() {
            let Some(tenant) = self.devices[index].tenant.clone() else {
                continue;
            };
            let Some(engine) = self.devices[index].engine.as_ref() else {
                return Ok(Some(format!("d{index} is not running")));
            };
            let status = engine
                .status()
                .map_err(|error| violation(error.to_string()))?;
            if status.syncing || status.pending_ops > 0 || status.open_conflicts > 0 {
                return Ok(Some(format!("d{index} not settled: {status:?}")));
            }
            let local = device_canonical(engine)?;
            let server = server_canonical(&self.server, &tenant, &local.excluded);
            if local.rows != server {
                return Ok(Some(format!(
                    "d{index} differs from the server in tenant {tenant}: {}",
                    first_difference(&local.rows, &server)
                )));
            }
        }
        Ok(None)
    }

    // ---- final checks -------------------------------------------------------------------

    fn final_checks(&mut self) -> Result<(), Failure> {
        self.server.check_invariants();
        let mut effects: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for effect in self.server.effects() {
            *effects
                .entry((&effect.tenant_id, &effect.op_id))
                .or_insert(0) += 1;
        }
        if let Some(((tenant, op_id), count)) = effects.iter().find(|(_, count)| **count > 1) {
            return Err(violation(format!("op {op_id} of tenant {tenant} changed the server {count} times (exactly once expected)")));
        }
        let mut server_rows: BTreeMap<(String, String), ServerRow> = BTreeMap::new();
        for tenant in self.tenants.clone() {
            for record in self.server.records(&tenant) {
                let key = (tenant.clone(), record.client_id.clone());
                if server_rows
                    .insert(
                        key,
                        (record.updated_at, record.is_deleted, record.data.clone()),
                    )
                    .is_some()
                {
                    return Err(violation(format!(
                        "duplicate record: client id {} twice in tenant {tenant}",
                        record.client_id
                    )));
                }
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
        let mut device_tenants = BTreeMap::new();
        for device in &self.devices {
            let (Some(tenant), Some(engine)) = (&device.tenant, &device.engine) else {
                continue;
            };
            device_tenants.insert(device.index, tenant.clone());
            engine
                .check_invariants()
                .map_err(|message| violation(format!("d{}: {message}", device.index)))?;
            for record in engine
                .all_records()
                .map_err(|error| violation(error.to_string()))?
            {
                if !self.model.created_in(tenant, &record.client_id) {
                    return Err(violation(format!(
                        "tenant isolation: d{} holds {} in tenant {tenant}'s database",
                        device.index, record.client_id
                    )));
                }
            }
        }
        let checked = self
            .model
            .check_no_lost_writes(&device_tenants, |tenant, client_id| {
                server_rows
                    .get(&(tenant.to_owned(), client_id.to_owned()))
                    .map(|(updated_at, is_deleted, data)| ServerView {
                        updated_at: *updated_at,
                        is_deleted: *is_deleted,
                        data,
                    })
            });
        self.stats.invariant_checks += 1;
        checked.map(|_| ()).map_err(violation)
    }
}

/// A server row's (stamp, deleted, data), keyed by (tenant, client id) in the final checks.
type ServerRow = (sync_engine::HlcStamp, bool, Map<String, Value>);

/// A canonical row: (entity, server id, client id, space, version, stamp, data as JSON).
pub(crate) type CanonicalRow = (String, Option<String>, String, String, i64, u64, String);

pub(crate) struct DeviceCanonical {
    pub(crate) rows: Vec<CanonicalRow>,
    /// Client ids left out: their op failed for good (reported), so they may differ.
    pub(crate) excluded: BTreeSet<String>,
}

pub(crate) fn device_canonical(engine: &Engine) -> Result<DeviceCanonical, Failure> {
    let storage = |error: sync_engine::ReadError| violation(error.to_string());
    let excluded: BTreeSet<String> = engine
        .queued_ops()
        .map_err(storage)?
        .into_iter()
        .filter(|op| op.status == OpStatus::Failed)
        .map(|op| op.entity_id)
        .collect();
    let mut rows: Vec<CanonicalRow> = engine
        .all_records()
        .map_err(storage)?
        .into_iter()
        .filter(|record| !record.is_deleted && !excluded.contains(&record.client_id))
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
    Ok(DeviceCanonical { rows, excluded })
}

pub(crate) fn server_canonical(
    server: &ReferenceServer,
    tenant: &str,
    excluded: &BTreeSet<String>,
) -> Vec<CanonicalRow> {
    let mut rows: Vec<CanonicalRow> = server
        .records(tenant)
        .into_iter()
        .filter(|record| !record.is_deleted && !excluded.contains(&record.client_id))
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

pub(crate) fn first_difference(local: &[CanonicalRow], server: &[CanonicalRow]) -> String {
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

fn parse_cursor(cursor: &str) -> (u64, String) {
    match cursor.split_once('.') {
        Some((stamp, id)) => (stamp.parse().unwrap_or(0), id.to_owned()),
        None => (0, String::new()),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}
