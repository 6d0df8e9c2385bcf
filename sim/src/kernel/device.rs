//! A simulated device: the real engine, its own clock, its databases, its lifecycle.
//!
//! Fault model: the device clock is virtual time plus an offset, a drift (ppm) and
//! jumps (backwards too). An app kill ([`Device::kill`]) leaves the SQLite files exactly
//! as a killed process leaves them: the engine's connection is closed while a second one
//! keeps the database open, and that one closes without checkpointing, so the database,
//! its `-wal` and `-shm` are untouched and the next open runs SQLite's real WAL
//! recovery. The device knows nothing of the network or the scheduler.

use super::faults::FaultChooser;
use super::EPOCH_MS;
use crate::profile::FaultClass;
use crate::rng::{Ratio, SimRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use sync_engine::{CommitSite, CrashHook, CrashPoint, DbLocation, Engine, ManualClock, TenantId};

/// Decides kills at the engine's crash points — the named ones and every transaction
/// boundary (both sides of every commit) — for all devices of a run.
#[derive(Debug)]
pub struct KillSwitch {
    /// The `kill_at_crash_point` class's own stream (named points).
    pub rng: SimRng,
    pub rate: Ratio,
    /// The `kill_at_commit` class's own stream (transaction boundaries).
    pub commit_rng: SimRng,
    pub commit_rate: Ratio,
    /// Off in the liveness phase and whenever a driver disarms it.
    pub armed: bool,
    /// Kills a driver asked for: the next time this device reaches this point.
    pub one_shot: BTreeMap<usize, CrashPoint>,
    pub fired: BTreeMap<CrashPoint, u64>,
    /// Transaction boundaries crossed so far by every device together, numbered from 1.
    pub boundaries: u64,
    /// A kill at this boundary, armed or not (`syncsim sweep`).
    pub kill_at_boundary: Option<u64>,
    /// Every boundary crossed, when a driver asked for the list ([`Sim::log_boundaries`]).
    ///
    /// [`Sim::log_boundaries`]: super::Sim::log_boundaries
    pub boundary_log: Option<Vec<Boundary>>,
    /// Engine calls made so far by the kernel, so boundaries can tell which call they
    /// were in.
    pub calls: u64,
    /// The boundary the last boundary kill struck, for the trace.
    pub last_boundary_kill: Option<Boundary>,
    /// Which opportunities of the two kill classes fire, and which did (case files).
    pub chooser: FaultChooser,
    /// Virtual time since the run began, as of the engine call in progress.
    pub elapsed_ms: u64,
}

/// One transaction boundary an engine crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Boundary {
    /// Its number in the run (all devices together), from 1.
    pub number: u64,
    pub device: usize,
    /// The kernel's engine call it happened in.
    pub call: u64,
    /// [`CrashPoint::BeforeCommit`] or [`CrashPoint::AfterCommit`].
    pub point: CrashPoint,
    pub site: CommitSite,
}

impl KillSwitch {
    pub fn new(seed: u64, rate: Ratio, commit_rate: Ratio, chooser: FaultChooser) -> KillSwitch {
        KillSwitch {
            rng: SimRng::for_fault(seed, FaultClass::KillAtCrashPoint),
            rate,
            commit_rng: SimRng::for_fault(seed, FaultClass::KillAtCommit),
            commit_rate,
            armed: true,
            one_shot: BTreeMap::new(),
            fired: BTreeMap::new(),
            boundaries: 0,
            kill_at_boundary: None,
            boundary_log: None,
            calls: 0,
            last_boundary_kill: None,
            chooser,
            elapsed_ms: 0,
        }
    }

    fn should_crash(&mut self, device: usize, point: CrashPoint) -> bool {
        let crash = if self.one_shot.get(&device) == Some(&point) {
            self.one_shot.remove(&device);
            true
        } else {
            self.armed
                && throw_kill(
                    &mut self.chooser,
                    FaultClass::KillAtCrashPoint,
                    self.rate,
                    &mut self.rng,
                    self.elapsed_ms,
                )
        };
        if crash {
            *self.fired.entry(point).or_insert(0) += 1;
        }
        crash
    }

    fn should_crash_at_commit(
        &mut self,
        device: usize,
        point: CrashPoint,
        site: CommitSite,
    ) -> bool {
        self.boundaries += 1;
        let boundary = Boundary {
            number: self.boundaries,
            device,
            call: self.calls,
            point,
            site,
        };
        if let Some(log) = self.boundary_log.as_mut() {
            log.push(boundary);
        }
        let crash = if self.kill_at_boundary == Some(self.boundaries) {
            true
        } else if self.one_shot.get(&device) == Some(&point) {
            self.one_shot.remove(&device);
            true
        } else {
            self.armed
                && throw_kill(
                    &mut self.chooser,
                    FaultClass::KillAtCommit,
                    self.commit_rate,
                    &mut self.commit_rng,
                    self.elapsed_ms,
                )
        };
        if crash {
            *self.fired.entry(point).or_insert(0) += 1;
            self.last_boundary_kill = Some(boundary);
        }
        crash
    }
}

/// Whether a kill of `class` strikes at this opportunity (none while its rate is zero).
fn throw_kill(
    chooser: &mut FaultChooser,
    class: FaultClass,
    rate: Ratio,
    stream: &mut SimRng,
    at_ms: u64,
) -> bool {
    !rate.is_zero() && chooser.throw(class, rate, stream, at_ms, |_| ()).is_some()
}

/// Only a panic while the switch was held poisons it, and such a panic already ends the run.
pub const KILL_SWITCH_POISONED: &str = "the kill switch is never poisoned: a panic ends the run";

/// The hook installed in every simulated engine. The switch sits behind `Arc<Mutex<_>>`
/// because an engine is `Send` (an app may move it to a sync thread); the simulation is
/// single-threaded, so the lock is never contended.
pub struct SimCrashHook {
    pub device: usize,
    pub switch: Arc<Mutex<KillSwitch>>,
}

impl CrashHook for SimCrashHook {
    fn should_crash(&mut self, point: CrashPoint) -> bool {
        self.switch
            .lock()
            .expect(KILL_SWITCH_POISONED)
            .should_crash(self.device, point)
    }

    fn should_crash_at_commit(&mut self, point: CrashPoint, site: CommitSite) -> bool {
        self.switch
            .lock()
            .expect(KILL_SWITCH_POISONED)
            .should_crash_at_commit(self.device, point, site)
    }
}

/// What a device did since its driver last reset the counters (scenario expectations).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Requests sent, per operation name.
    pub requests: BTreeMap<String, u64>,
    pub syncs_started: u64,
    pub max_in_flight: usize,
}

pub struct Device {
    pub index: usize,
    /// How traces and failures name the device (`d0`, or a scenario's `phone`).
    pub name: String,
    pub dir: PathBuf,
    /// Where and under which names the device keeps its tenant databases (`dir`, with the
    /// engine's planted file-handling defects).
    pub location: DbLocation,
    /// Every tenant whose database the device has opened.
    pub tenants_opened: BTreeSet<String>,
    /// Tenants whose database was dropped here and not opened since: the next open of
    /// one must find it empty.
    pub dropped_tenants: BTreeSet<String>,
    pub clock: ManualClock,
    pub clock_offset_ms: i64,
    pub drift_ppm: i64,
    /// The furthest the device's clock read before its latest jump backwards (its own
    /// stamps may be that far ahead, whatever it reads now).
    pub clock_high_ms: u64,
    /// The tenant logged in on this device (its database is the open one).
    pub tenant: Option<String>,
    /// `None` while the app is dead or logged out.
    pub engine: Option<Engine>,
    /// Bumped at every kill and reopen: engine timers of an older process never fire, and
    /// the trace marks answers to its requests that reach a later one.
    pub generation: u64,
    /// False during a network partition (the app believes it is online).
    pub network_up: bool,
    /// What the app was last told about connectivity.
    pub app_online: bool,
    pub restart_scheduled: bool,
    /// The virtual time of the engine timer event currently scheduled.
    pub timer_at: Option<u64>,
    /// Requests are kept here instead of going out while a driver holds them.
    pub holding: bool,
    pub held: Vec<sync_engine::wire::SyncRequest>,
    /// Request ids sent by the current process and not answered yet.
    pub in_flight: BTreeSet<u64>,
    /// The op id of each push in flight that carries exactly one op: a request refused
    /// whole then refuses that op alone (see [`crate::oracle::Oracle::refused_alone`]).
    pub single_op_pushes: BTreeMap<u64, String>,
    /// Syncs numbered as they start; the number of the last one that completed.
    pub sync_started_seq: u64,
    pub sync_completed_seq: u64,
    /// Pull requests sent per entity since the current process's sync (or force, or
    /// repair of that entity) began: the paging budget's count ([`super::Sim::drain`]).
    pub pulls_this_sync: BTreeMap<String, u64>,
    pub counters: Counters,
    /// Fates a driver chose for the next requests ([`super::Sim::plan_fates`]).
    pub planned_fates: VecDeque<super::network::RequestFate>,
    /// Until when (virtual time) the device's disk is full ([`super::Sim::fill_disk`]).
    pub disk_full_until_ms: Option<u64>,
    /// Another process of the app holding the database's write lock, and until when
    /// ([`super::Sim::lock_database`]).
    pub lock_holder: Option<(rusqlite::Connection, u64)>,
    /// What of the device's writes is known durable, across its processes.
    pub power: super::power::PowerWatch,
    /// The app's second process on the same tenant database (a background sync task)
    /// while it runs, parked: the kernel swaps it in to call it, to deliver its answers
    /// and to fire its timers ([`Device::swap_processes`]).
    pub background: Option<Process>,
    /// Whether the process fields above (`engine`, `generation`, ...) are the background
    /// process's right now, swapped in.
    pub background_active: bool,
    /// Process generations handed out on this device (app and background alike), so
    /// that every process's generation is its own.
    pub generations_issued: u64,
}

/// What the kernel keeps of one process of the app: the fields of [`Device`] that a
/// second process has its own of.
#[derive(Default)]
pub struct Process {
    pub engine: Option<Engine>,
    pub generation: u64,
    pub timer_at: Option<u64>,
    pub in_flight: BTreeSet<u64>,
    pub single_op_pushes: BTreeMap<u64, String>,
    pub held: Vec<sync_engine::wire::SyncRequest>,
    pub pulls_this_sync: BTreeMap<String, u64>,
}

impl Device {
    pub fn new(index: usize, name: String, dir: PathBuf, tenant: Option<String>) -> Device {
        Device {
            index,
            name,
            location: DbLocation::new(&dir),
            tenants_opened: BTreeSet::new(),
            dropped_tenants: BTreeSet::new(),
            dir,
            clock: ManualClock::new(EPOCH_MS),
            clock_offset_ms: 0,
            drift_ppm: 0,
            clock_high_ms: 0,
            tenant,
            engine: None,
            generation: 0,
            network_up: true,
            app_online: true,
            restart_scheduled: false,
            timer_at: None,
            holding: false,
            held: Vec::new(),
            in_flight: BTreeSet::new(),
            single_op_pushes: BTreeMap::new(),
            sync_started_seq: 0,
            sync_completed_seq: 0,
            pulls_this_sync: BTreeMap::new(),
            counters: Counters::default(),
            planned_fates: VecDeque::new(),
            disk_full_until_ms: None,
            lock_holder: None,
            power: super::power::PowerWatch::default(),
            background: None,
            background_active: false,
            generations_issued: 0,
        }
    }

    /// Swaps the parked background process with the process in the device's fields: the
    /// kernel's verbs then act on the other process. Swapped back by the same call.
    pub fn swap_processes(&mut self) {
        let parked = self
            .background
            .as_mut()
            .expect("a background process to swap with");
        std::mem::swap(&mut self.engine, &mut parked.engine);
        std::mem::swap(&mut self.generation, &mut parked.generation);
        std::mem::swap(&mut self.timer_at, &mut parked.timer_at);
        std::mem::swap(&mut self.in_flight, &mut parked.in_flight);
        std::mem::swap(&mut self.single_op_pushes, &mut parked.single_op_pushes);
        std::mem::swap(&mut self.held, &mut parked.held);
        std::mem::swap(&mut self.pulls_this_sync, &mut parked.pulls_this_sync);
        self.background_active = !self.background_active;
    }

    /// A new process generation of the device's own (the app's or the background's).
    pub fn next_generation(&mut self) -> u64 {
        self.generations_issued += 1;
        self.generations_issued
    }

    /// The device's wall clock at virtual time `now_ms`.
    pub fn device_ms(&self, now_ms: u64) -> u64 {
        let drift_ms = (now_ms as i128 - EPOCH_MS as i128) * self.drift_ppm as i128 / 1_000_000;
        let device_ms = now_ms as i128 + self.clock_offset_ms as i128 + drift_ms;
        device_ms.clamp(0, u64::MAX as i128 / 2) as u64
    }

    /// Sets the injected clock before an engine call.
    pub fn tick_clock(&self, now_ms: u64) {
        self.clock.set_ms(self.device_ms(now_ms));
    }

    pub fn is_running(&self) -> bool {
        self.engine.is_some()
    }

    /// Every file of the logged-in tenant's database (missing ones included), and of a
    /// damaged one kept aside.
    pub fn db_files(&self) -> Vec<PathBuf> {
        let Some(tenant) = self.tenant.as_deref() else {
            return Vec::new();
        };
        let tenant = TenantId::parse(tenant).expect("simulated tenant ids are valid");
        let mut files = self.location.db_files(&tenant).to_vec();
        // A damaged database a recovery kept aside is the tenant's too.
        files.extend(self.location.corrupt_aside_files(&tenant));
        files
    }

    /// The app process dies: memory is lost and the files stay exactly as the dying
    /// process left them (WAL and shared-memory index included). Answers to requests the
    /// process sent still arrive, at whatever process runs then.
    pub fn kill(&mut self) {
        // The other process lets go first: closed while the app's connection is open, it
        // is not the last connection, so it leaves the WAL as it is.
        self.lock_holder = None;
        if self.kill_process() {
            self.forget_process();
        }
    }

    /// The process in the device's fields dies (the app's, or the background process
    /// swapped in): its engine's connection closes as a killed process's does, and what
    /// the kernel tracked of it is gone. False if it was not running.
    pub fn kill_process(&mut self) -> bool {
        let Some(engine) = self.engine.take() else {
            return false;
        };
        // Dropping the engine's connection cleanly would checkpoint the WAL into the
        // database and delete it, which a kill never does. SQLite checkpoints on close
        // only in the last connection to a database, so a second connection is opened
        // first and closed last with checkpoint-on-close switched off: the WAL, the
        // database file and the shared-memory index keep exactly what the killed process
        // left, without copying a byte.
        let main = self.db_path();
        let keeper = rusqlite::Connection::open(&main)
            .unwrap_or_else(|error| panic!("opening {} beside the app: {error}", main.display()));
        keeper
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .expect("switch checkpoint-on-close off");
        // A read makes the keeper join the WAL (it maps the shared-memory index).
        keeper
            .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .expect("read beside the app");
        drop(engine);
        drop(keeper);
        self.timer_at = None;
        self.in_flight.clear();
        self.single_op_pushes.clear();
        self.held.clear();
        self.pulls_this_sync.clear();
        true
    }

    /// The main database file of the logged-in tenant.
    fn db_path(&self) -> PathBuf {
        let tenant = self.tenant.as_deref().expect("a running app is logged in");
        let tenant = TenantId::parse(tenant).expect("simulated tenant ids are valid");
        self.location.db_path(&tenant)
    }

    /// Whether a storage fault strikes the device's database now: the engine's storage
    /// errors are then what the fault model expects, not a violation.
    pub fn storage_fault_active(&self) -> bool {
        self.disk_full_until_ms.is_some() || self.lock_holder.is_some()
    }

    /// What a process ending (killed or logged out) takes with it: its storage faults too
    /// (the page limit of a full disk is its connection's, and the app's other process
    /// lets go of the lock before the app opens again).
    pub fn forget_process(&mut self) {
        self.disk_full_until_ms = None;
        self.lock_holder = None;
        self.generation = self.next_generation();
        self.pulls_this_sync.clear();
        self.timer_at = None;
        self.in_flight.clear();
        self.single_op_pushes.clear();
        self.held.clear();
    }
}
