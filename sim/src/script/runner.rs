//! One run of a script: the setup it declares, the kernel [`Sim`] it builds at its first
//! `devices` line, and the user actions of its steps (writes, conflict answers, logins,
//! connectivity, the world verbs). Driving syncs, forces and wipes to their end, and the
//! faults around each step, live in `drive.rs`; expectations in `expect.rs`.
//!
//! Every action goes through a kernel verb; this module never touches an engine's
//! outputs, the network or the fault dice.

use super::parse::{Choice, Command};
use super::{knobs_for, RunMode, RunSummary};
use crate::kernel::{registry_for, CallError, Called, Failure, Sim, SimBuilder, ENTITIES};
use crate::profile::FaultClass;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use sync_engine::{CrashPoint, Engine, Resolution, TenantId};

/// How often a scripted user write is tried when kills keep rolling it back.
const USER_WRITE_ATTEMPTS: usize = 8;
/// Names a device may not take: they start other commands.
const KEYWORDS: [&str; 6] = ["server", "sync", "wait", "expect", "config", "faults"];

/// What the lines before `devices` declare.
#[derive(Clone, Debug)]
pub(super) struct Setup {
    pub tenants: Vec<String>,
    pub entities: Vec<String>,
    pub push_batch: usize,
    pub pull_page: usize,
    pub sync_after_write: bool,
    pub auto_merge: bool,
    /// Fault classes this scenario's purpose cannot survive (`faults off`).
    pub faults_off: BTreeSet<FaultClass>,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            tenants: Vec::new(),
            entities: ENTITIES.iter().map(|name| (*name).to_owned()).collect(),
            push_batch: sync_engine::registry::PUSH_BATCH_MAX_DEFAULT,
            pull_page: sync_engine::registry::PULL_PAGE_LIMIT_DEFAULT,
            sync_after_write: false,
            auto_merge: false,
            faults_off: BTreeSet::new(),
        }
    }
}

impl Setup {
    fn is_setup(command: &Command) -> bool {
        matches!(
            command,
            Command::Tenants(_)
                | Command::Entities(_)
                | Command::PushBatch(_)
                | Command::PullPage(_)
                | Command::SyncAfterWrite(_)
                | Command::AutoMerge(_)
                | Command::FaultsOff(_)
        )
    }

    /// Takes in one setup line; anything else is left alone.
    pub fn apply(&mut self, command: &Command) -> Result<(), String> {
        match command {
            Command::Tenants(tenants) => {
                for tenant in tenants {
                    TenantId::parse(tenant).map_err(|error| error.to_string())?;
                }
                self.tenants.clone_from(tenants);
            }
            Command::Entities(entities) => self.entities.clone_from(entities),
            Command::PushBatch(n) => self.push_batch = *n,
            Command::PullPage(n) => self.pull_page = *n,
            Command::SyncAfterWrite(on) => self.sync_after_write = *on,
            Command::AutoMerge(on) => self.auto_merge = *on,
            Command::FaultsOff(classes) => self.faults_off.extend(classes.iter().copied()),
            _ => {}
        }
        Ok(())
    }
}

/// A script's run: its setup until `devices`, then the scene.
pub(super) struct Runner {
    mode: RunMode,
    setup: Setup,
    trace: bool,
    scene: Option<Scene>,
}

impl Runner {
    pub fn new(mode: RunMode) -> Runner {
        Runner {
            mode,
            setup: Setup::default(),
            trace: std::env::var_os("SCENARIO_TRACE").is_some(),
            scene: None,
        }
    }

    pub fn step(&mut self, step: &super::Step) -> Result<(), String> {
        match &step.command {
            Command::Devices(devices) => self.declare_devices(devices),
            command if Setup::is_setup(command) => {
                if self.scene.is_some() {
                    return Err("setup commands must come before `devices`".to_owned());
                }
                self.setup.apply(command)
            }
            command => match self.scene.as_mut() {
                None => Err("declare `tenants` and `devices` first".to_owned()),
                Some(scene) => scene.step(command),
            },
        }
    }

    /// Settles the world and runs the oracle's final checks (nothing to do without devices).
    pub fn finish(&mut self) -> Result<(), String> {
        match self.scene.as_mut() {
            None => Ok(()),
            Some(scene) => scene.finish(),
        }
    }

    pub fn summary(&self) -> RunSummary {
        let Some(scene) = &self.scene else {
            return RunSummary::default();
        };
        let ledger = scene.sim.faults().ledger().clone();
        let fired = |class| ledger.get(&class).copied().unwrap_or(0);
        RunSummary {
            steps: 0,
            skipped_expectations: scene.skipped_expectations,
            faults_fired: ledger.values().sum(),
            kills: fired(FaultClass::KillBetweenCalls)
                + fired(FaultClass::KillAtCrashPoint)
                + scene.explicit_kills,
            faults_by_class: ledger,
            crash_points_fired: scene.sim.crash_points_fired(),
            trace_hash: scene.sim.trace_hash(),
        }
    }

    /// Prints the kernel's trace lines since the last call (`SCENARIO_TRACE=1`).
    pub fn print_trace(&mut self) {
        if let Some(scene) = self.scene.as_mut() {
            for line in scene.sim.take_trace() {
                eprintln!("  {line}");
            }
        }
    }

    fn declare_devices(&mut self, devices: &[(String, String)]) -> Result<(), String> {
        if self.setup.tenants.is_empty() {
            return Err("declare `tenants` before `devices`".to_owned());
        }
        let mut names: BTreeSet<&str> = BTreeSet::new();
        if let Some(scene) = &self.scene {
            names.extend(
                scene
                    .sim
                    .devices()
                    .iter()
                    .map(|device| device.name.as_str()),
            );
        }
        for (name, tenant) in devices {
            if !names.insert(name) {
                return Err(format!("device {name:?} declared twice"));
            }
            if !self.setup.tenants.contains(tenant) {
                return Err(format!("unknown tenant {tenant:?}"));
            }
            if KEYWORDS.contains(&name.as_str()) {
                return Err(format!("{name:?} is a keyword, not a device name"));
            }
        }
        let scene = match self.scene.as_mut() {
            Some(scene) => scene,
            None => {
                let scene = Scene::new(self.mode, &self.setup, devices, self.trace);
                self.scene.insert(scene)
            }
        };
        for (name, tenant) in devices {
            let index = match scene.sim.device_named(name) {
                Some(index) => index,
                None => scene.sim.add_device(name, Some(tenant)),
            };
            scene.reopen(index)?;
        }
        Ok(())
    }
}

/// The world of a run once its devices exist: the kernel and what the script said.
pub(super) struct Scene {
    pub sim: Sim,
    /// A fault run: faults strike around the steps and a few expectations are skipped.
    pub faults: bool,
    /// alias → (tenant, client id)
    pub aliases: BTreeMap<String, (String, String)>,
    /// Devices the script killed: down until its `restart`, never reopened by the driver.
    pub down_by_script: BTreeSet<usize>,
    /// Devices the script took offline: `sync` does not bring them back.
    pub offline_by_script: BTreeSet<usize>,
    /// Devices the script cut off with no end: `sync` does not heal them.
    pub partitioned_by_script: BTreeSet<usize>,
    pub explicit_kills: u64,
    pub skipped_expectations: usize,
    /// The kernel's event count when the current step began (the step's event budget).
    pub events_at_step_start: u64,
}

/// A kernel failure as a step's message.
pub(super) fn failed(failure: Failure) -> String {
    failure.message
}

impl Scene {
    fn new(mode: RunMode, setup: &Setup, devices: &[(String, String)], trace: bool) -> Scene {
        let knobs = knobs_for(mode, setup);
        let entities: Vec<&str> = setup.entities.iter().map(String::as_str).collect();
        let registry = registry_for(&entities, &knobs);
        let seed = match mode {
            RunMode::Clean => 0,
            RunMode::Faults { seed } => seed,
        };
        let mut builder = SimBuilder::new(seed)
            .knobs(knobs)
            .tenants(setup.tenants.clone())
            .registry(registry)
            .dir_prefix("scenario-")
            .keep_trace(trace)
            .collect_events(true);
        for (name, tenant) in devices {
            builder = builder.device(name, Some(tenant));
        }
        Scene {
            sim: builder.build(),
            faults: mode != RunMode::Clean,
            aliases: BTreeMap::new(),
            down_by_script: BTreeSet::new(),
            offline_by_script: BTreeSet::new(),
            partitioned_by_script: BTreeSet::new(),
            explicit_kills: 0,
            skipped_expectations: 0,
            events_at_step_start: 0,
        }
    }

    // ---- names ----------------------------------------------------------------------------

    pub fn index(&self, name: &str) -> Result<usize, String> {
        self.sim
            .device_named(name)
            .ok_or_else(|| format!("unknown device {name:?}"))
    }

    pub fn name(&self, index: usize) -> String {
        self.sim.device(index).name.clone()
    }

    pub fn alias(&self, alias: &str) -> Result<(String, String), String> {
        self.aliases
            .get(alias)
            .cloned()
            .ok_or_else(|| format!("unknown record alias {alias:?}"))
    }

    pub fn tenant(&self, index: usize) -> Result<String, String> {
        self.sim
            .tenant_of(index)
            .map(str::to_owned)
            .ok_or_else(|| format!("device {} is logged out", self.name(index)))
    }

    pub fn engine(&self, index: usize) -> Result<&Engine, String> {
        self.sim
            .engine(index)
            .ok_or_else(|| format!("device {} is not running", self.name(index)))
    }

    // ---- the steps --------------------------------------------------------------------------

    fn step(&mut self, command: &Command) -> Result<(), String> {
        self.events_at_step_start = self.sim.events_handled();
        self.before_step(command)?;
        let result = self.act(command);
        let after = self.after_step();
        result.and(after)
    }

    fn act(&mut self, command: &Command) -> Result<(), String> {
        match command {
            Command::Create {
                device,
                count,
                entity,
                space,
                alias,
                data,
            } => self.create(device, *count, entity, space, alias.as_deref(), data),
            Command::Update {
                device,
                alias,
                patch,
            } => {
                let index = self.index(device)?;
                let (_, client_id) = self.alias(alias)?;
                let patch = Value::Object(patch.clone());
                let written =
                    self.write(
                        index,
                        |engine| Ok(engine.update(&client_id, patch.clone())?),
                    )?;
                if written.is_ok() {
                    self.sim.acknowledge(index, &client_id).map_err(failed)?;
                }
                Ok(())
            }
            Command::Delete { device, alias } => {
                let index = self.index(device)?;
                let (_, client_id) = self.alias(alias)?;
                let written = self.write(index, |engine| Ok(engine.delete(&client_id)?))?;
                if written.is_ok() {
                    self.sim.acknowledge(index, &client_id).map_err(failed)?;
                }
                Ok(())
            }
            Command::Online(device, online) => {
                let index = self.index(device)?;
                if *online {
                    self.offline_by_script.remove(&index);
                    self.sim.online(index).map_err(failed)
                } else {
                    self.offline_by_script.insert(index);
                    self.sim.offline(index, None).map_err(failed)
                }
            }
            Command::AppOpen(device) => {
                let index = self.index(device)?;
                self.engine(index)?;
                self.call(index, |engine| Ok(engine.handle_app_open()?))
                    .map(drop)
            }
            Command::Kill(device) => {
                let index = self.index(device)?;
                self.engine(index)?;
                self.sim.kill(index);
                self.down_by_script.insert(index);
                self.explicit_kills += 1;
                Ok(())
            }
            Command::Restart(device) => {
                let index = self.index(device)?;
                self.tenant(index)?;
                if self.sim.device(index).is_running() {
                    return Err(format!("device {device} is running; kill it first"));
                }
                self.down_by_script.remove(&index);
                self.reopen(index)
            }
            Command::CrashAt(device, point) => {
                let index = self.index(device)?;
                self.sim.crash(index, Some(*point));
                Ok(())
            }
            Command::Clock(device, delta_ms) => {
                let index = self.index(device)?;
                self.sim.clock_jump(index, *delta_ms);
                Ok(())
            }
            Command::Partition(device, heal_after_ms) => {
                let index = self.index(device)?;
                self.sim.partition(index, *heal_after_ms);
                if heal_after_ms.is_none() {
                    self.partitioned_by_script.insert(index);
                } else {
                    self.partitioned_by_script.remove(&index);
                }
                Ok(())
            }
            Command::Heal(device) => {
                let index = self.index(device)?;
                self.partitioned_by_script.remove(&index);
                self.sim.heal(index);
                Ok(())
            }
            Command::Resolve {
                device,
                alias,
                choice,
            } => self.resolve(device, alias, choice),
            Command::Force {
                device,
                entity,
                from_server,
            } => {
                let index = self.index(device)?;
                self.force(index, entity, *from_server)
            }
            Command::Wipe(device, space) => {
                let index = self.index(device)?;
                self.wipe(index, space)
            }
            Command::Logout(device) => {
                let index = self.index(device)?;
                self.tenant(index)?;
                self.sim.logout(index).map_err(failed)?;
                self.down_by_script.remove(&index);
                Ok(())
            }
            Command::Login(device, tenant) => {
                let index = self.index(device)?;
                if self.sim.tenant_of(index).is_some() {
                    return Err(format!("device {device} is logged in; log out first"));
                }
                if !self.sim.tenants().contains(tenant) {
                    return Err(format!("unknown tenant {tenant:?}"));
                }
                self.sim.login(index, tenant).map_err(failed)?;
                self.reopen(index)
            }
            Command::SyncStart(device) => {
                let index = self.index(device)?;
                self.engine(index)?;
                self.call(index, |engine| Ok(engine.sync_now()?)).map(drop)
            }
            Command::Background(device, start) => {
                let index = self.index(device)?;
                self.engine(index)?;
                if !*start {
                    self.sim.stop_background(index);
                    return Ok(());
                }
                if self.sim.device(index).background.is_none() {
                    self.sim.start_background(index).map_err(failed)?;
                }
                self.sim
                    .as_background(index, |sim| {
                        sim.call(index, |engine| Ok(engine.sync_now()?)).map(drop)
                    })
                    .map(drop)
                    .map_err(failed)
            }
            Command::Sync(devices) => {
                for device in devices {
                    let index = self.index(device)?;
                    self.sync_until_done(index)?;
                }
                Ok(())
            }
            Command::Wait(ms) => {
                let until_ms = self.sim.now_ms() + ms;
                self.run_until(until_ms)
            }
            Command::ResetCounters => {
                for index in 0..self.sim.devices().len() {
                    self.sim.reset_counters(index);
                }
                Ok(())
            }
            Command::Reject(alias) => {
                let (_, client_id) = self.alias(alias)?;
                self.sim.server_mut().refuse_client_id(&client_id);
                Ok(())
            }
            Command::Expect(expectation) => {
                if self.faults && expectation.exact_only() {
                    self.skipped_expectations += 1;
                    return Ok(());
                }
                self.check(expectation)
            }
            Command::Tenants(_)
            | Command::Entities(_)
            | Command::PushBatch(_)
            | Command::PullPage(_)
            | Command::SyncAfterWrite(_)
            | Command::AutoMerge(_)
            | Command::FaultsOff(_)
            | Command::Devices(_) => unreachable!("setup lines are the runner's"),
        }
    }

    // ---- engine calls -----------------------------------------------------------------------

    /// Calls the device's engine through the kernel (which drains its outputs); a kill
    /// inside the call reopens the app at once, as its user would.
    pub fn call<T>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Engine) -> Result<T, CallError>,
    ) -> Result<Called<T>, String> {
        let called = self.sim.call(index, f).map_err(failed)?;
        if let Called::Killed(_) = called {
            self.reopen(index)?;
        }
        Ok(called)
    }

    /// A local write: `Ok(value)`, or `Err(point)` when the app died at that crash point
    /// inside it (and was reopened). An input the engine refuses fails the step.
    /// A user write. A kill before the write's commit rolled it back whole: for the user
    /// the action never happened, so, once the app is back, they do it again — the
    /// script's later steps are about that write. A kill at any other point is returned.
    fn write<T>(
        &mut self,
        index: usize,
        mut f: impl FnMut(&mut Engine) -> Result<T, CallError>,
    ) -> Result<Result<T, CrashPoint>, String> {
        for _attempt in 0..USER_WRITE_ATTEMPTS {
            self.engine(index)?;
            match self.call(index, &mut f)? {
                Called::Done(value) => return Ok(Ok(value)),
                Called::Killed(CrashPoint::BeforeCommit) => continue,
                Called::Killed(point) => return Ok(Err(point)),
                Called::Rejected(message) => {
                    return Err(format!(
                        "{}: the engine refused: {message}",
                        self.name(index)
                    ))
                }
                Called::NotRunning => {
                    return Err(format!("device {} is not running", self.name(index)))
                }
            }
        }
        Err(format!(
            "{}: the write was killed before its commit {USER_WRITE_ATTEMPTS} times in a row",
            self.name(index)
        ))
    }

    fn client_ids(&self, index: usize) -> Result<BTreeSet<String>, String> {
        let records = self
            .engine(index)?
            .all_records()
            .map_err(|error| error.to_string())?;
        Ok(records.into_iter().map(|record| record.client_id).collect())
    }

    // ---- user actions -----------------------------------------------------------------------

    fn create(
        &mut self,
        device: &str,
        count: usize,
        entity: &str,
        space: &str,
        alias: Option<&str>,
        data: &Map<String, Value>,
    ) -> Result<(), String> {
        let index = self.index(device)?;
        let tenant = self.tenant(index)?;
        let items: Vec<Value> = (0..count)
            .map(|n| {
                let mut item = data.clone();
                if count > 1 && !item.contains_key("n") {
                    item.insert("n".to_owned(), json!(n + 1));
                }
                Value::Object(item)
            })
            .collect();
        let before = self.client_ids(index)?;
        let written = self.write(index, |engine| {
            Ok(engine.create_many(entity, space, items.clone())?)
        })?;
        let (created, acknowledged) = match written {
            Ok(created) => (created, true),
            Err(point) => {
                // The app died after the commit and before hearing back: the records are
                // there after the reopen. Ids are UUID v7, so ascending is creation order.
                let created: Vec<String> = self
                    .client_ids(index)?
                    .difference(&before)
                    .cloned()
                    .collect();
                if created.len() != count {
                    return Err(format!(
                        "{device} died at {} creating {count} records; {} are there after the reopen",
                        point.name(),
                        created.len()
                    ));
                }
                (created, false)
            }
        };
        for (n, client_id) in created.iter().enumerate() {
            self.sim
                .oracle_mut()
                .model
                .record_create(&tenant, client_id);
            if acknowledged {
                self.sim.acknowledge(index, client_id).map_err(failed)?;
            }
            if let Some(alias) = alias {
                let name = if count == 1 {
                    alias.to_owned()
                } else {
                    format!("{alias}{}", n + 1)
                };
                self.aliases
                    .insert(name, (tenant.clone(), client_id.clone()));
            }
        }
        Ok(())
    }

    fn resolve(&mut self, device: &str, alias: &str, choice: &Choice) -> Result<(), String> {
        let index = self.index(device)?;
        let tenant = self.tenant(index)?;
        let (_, client_id) = self.alias(alias)?;
        let conflicts = self
            .engine(index)?
            .list_conflicts()
            .map_err(|error| error.to_string())?;
        let conflict = conflicts
            .iter()
            .find(|conflict| conflict.client_id == client_id)
            .ok_or_else(|| format!("{device} has no open conflict on {alias}"))?;
        let resolution = match choice {
            Choice::KeepLocal => Resolution::KeepLocal,
            Choice::UseServer => Resolution::UseServer,
            Choice::Merge(sides) => Resolution::MergeFields(sides.clone()),
        };
        self.resolve_conflict(index, &tenant, conflict.id, &client_id, resolution)
    }

    /// Answers one open conflict; the choice discards what the device had acknowledged.
    pub fn resolve_conflict(
        &mut self,
        index: usize,
        tenant: &str,
        conflict_id: i64,
        client_id: &str,
        resolution: Resolution,
    ) -> Result<(), String> {
        self.sim.oracle_mut().model.discard_record(
            index,
            tenant,
            client_id,
            "user resolved a conflict",
        );
        let keeps_local = resolution != Resolution::UseServer;
        let written = self.write(index, |engine| {
            Ok(engine.resolve_conflict(conflict_id, resolution.clone())?)
        })?;
        if written.is_ok() && keeps_local {
            self.sim.acknowledge(index, client_id).map_err(failed)?;
        }
        Ok(())
    }
}
