//! The random world: the swarm workload (a simulated user on every device) and the two
//! phases of a seed, on top of the simulation kernel.
//!
//! Safety: each device's user acts every few seconds of virtual time (create, update,
//! delete, bulk create, sync now, resolve, force, wipe, log out / in, switch tenant) while
//! the kernel injects faults around the actions and on the wire; `inflight.rs` adds
//! actions while a request is on the wire, `tenants.rs` colliding tenant ids and logouts
//! and tenant drops right after a kill. Liveness
//! (`liveness.rs`): every fault stops, the network heals, and every tenant must converge
//! by the engines' own triggers and timers — nobody presses "sync now" — while the user
//! answers conflicts; then a short second workload runs on the healed world and it must
//! converge again. The oracle checks the end. With `safety_only` the faults never stop
//! and only the safety invariants are checked.
//!
//! Each action draws its kind and one sub-seed from the workload stream — two draws,
//! whatever the world's state — and makes every other choice from that sub-seed, so the
//! sequence of actions does not depend on which faults are on. This module chooses what
//! the user does; it never schedules deliveries or decides faults itself.

mod inflight;
mod liveness;
mod recording;
mod rejections;
mod tenants;

pub use liveness::LivenessBound;
pub use recording::{ActionId, ActionRecord, ActionStream, KeptSet, Recording};
pub use tenants::tenant_ids;

use crate::kernel::event_log::LoggedEvent;
use crate::kernel::probes::Probe;
use crate::kernel::{Called, FaultSelection, Sim, SimBuilder, ENTITIES};
use crate::profile::{FaultClass, Knobs, Profile};
use crate::rng::{SimRng, Stream};
use crate::server::ServerDefects;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use sync_engine::{Resolution, Side};

pub use crate::kernel::{Failure, FailureKind, EPOCH_MS};

/// Options of one run beyond its seed and knobs.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep every trace line (for `syncsim replay --trace`).
    pub keep_trace: bool,
    /// Planted server defects (harness self-tests only).
    pub defects: ServerDefects,
    /// Faults never stop and only safety invariants are checked: no liveness phase, no
    /// second workload, no convergence checks (long campaigns hunting corruption).
    pub safety_only: bool,
    /// List every user action and every fault that fires, for a case file
    /// ([`SeedReport::recording`]).
    pub record: bool,
    /// A case's run: only the kept actions act and only the kept faults fire.
    pub kept: Option<KeptSet>,
    /// Devices that start logged out: a case that leaves them out keeps none of their
    /// actions, so they never open.
    pub absent_devices: BTreeSet<usize>,
    /// Fault classes switched off in every seed (`syncsim run --without`).
    pub classes_off: BTreeSet<FaultClass>,
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
    /// How often each code-path probe was reached.
    pub probes: BTreeMap<Probe, u64>,
    /// The virtual time the world had to converge on its own, per convergence.
    pub liveness_bound: LivenessBound,
    pub recent_events: Vec<String>,
    /// What the run was doing when it ended: a failure's operation (`signature.rs`).
    pub operation: String,
    #[serde(skip)]
    pub trace: Vec<String>,
    /// The structured events a timeline is drawn from (kept with the whole trace only).
    #[serde(skip)]
    pub event_log: Vec<LoggedEvent>,
    /// The run's actions and faults, when [`RunOptions::record`] asked for them.
    #[serde(skip)]
    pub recording: Option<Recording>,
}

/// Runs one seed of a profile.
pub fn run_seed(seed: u64, profile: Profile, options: &RunOptions) -> SeedReport {
    let knobs = Knobs::derive(seed, profile).without(&options.classes_off);
    run_seed_with_knobs(seed, knobs, options)
}

/// Runs one seed with explicit knobs (fuzzers and tests build their own).
pub fn run_seed_with_knobs(seed: u64, knobs: Knobs, options: &RunOptions) -> SeedReport {
    let fault_selection = match &options.kept {
        None => FaultSelection::Dice,
        Some(kept) => FaultSelection::Listed(kept.faults.clone()),
    };
    let sim = SimBuilder::new(seed)
        .tenants(tenant_ids(seed, &knobs))
        .knobs(knobs)
        .defects(options.defects)
        .keep_trace(options.keep_trace)
        .fault_selection(fault_selection)
        .record_faults(options.record)
        .logged_out_devices(options.absent_devices.clone())
        .build();
    let kept_actions = options.kept.as_ref().map(|kept| kept.actions.clone());
    let world = World::new(sim).steered(kept_actions, options.record);
    run_steered_world(world, options.safety_only).0
}

/// Runs the world of a kernel a driver built and prepared (`syncsim sweep` arms its kill
/// first); returns the report and the kernel, to read what happened. `safety_only`: the
/// faults never stop and only the safety invariants are checked.
pub fn run_world(sim: Sim, safety_only: bool) -> (SeedReport, Sim) {
    run_steered_world(World::new(sim), safety_only)
}

fn run_steered_world(mut world: World, safety_only: bool) -> (SeedReport, Sim) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run(safety_only)));
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(failure)) => Some(failure),
        Err(payload) => Some(Failure {
            kind: FailureKind::Panic,
            message: crate::kernel::panic_text(&payload),
        }),
    };
    let report = world.report(failure);
    (report, world.sim)
}

/// What the simulated user does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Create,
    Update,
    Delete,
    BulkCreate,
    SyncNow,
    ResolveOne,
    Force,
    Wipe,
    Logout,
    SwitchTenant,
}

impl Action {
    /// In the order of `Knobs::workload_weights`.
    const ALL: [Action; 10] = [
        Action::Create,
        Action::Update,
        Action::Delete,
        Action::BulkCreate,
        Action::SyncNow,
        Action::ResolveOne,
        Action::Force,
        Action::Wipe,
        Action::Logout,
        Action::SwitchTenant,
    ];
}

pub struct World {
    sim: Sim,
    /// Draws each action's kind and sub-seed.
    workload: SimRng,
    /// Draws the gap to each device's next action.
    scheduler: SimRng,
    /// Draws the liveness phase's answers to conflicts.
    resolutions: SimRng,
    /// User actions while a request is on the wire (`inflight.rs`).
    inflight: inflight::InFlightWatch,
    /// Numbers the actions, admits them by a case's kept set, lists them (`recording.rs`).
    actions: recording::ActionBook,
}

impl World {
    pub fn new(sim: Sim) -> World {
        let seed = sim.seed();
        World {
            inflight: inflight::InFlightWatch::new(seed, sim.devices().len()),
            sim,
            workload: SimRng::for_stream(seed, Stream::Workload),
            scheduler: SimRng::for_stream(seed, Stream::Scheduler),
            resolutions: SimRng::for_stream(seed, Stream::Resolutions),
            actions: recording::ActionBook::default(),
        }
    }

    /// Keeps only the `kept` actions (all when `None`) and lists them when `record`; the
    /// faults are the kernel's to keep and list (`SimBuilder::fault_selection`).
    pub fn steered(mut self, kept: Option<BTreeSet<ActionId>>, record: bool) -> World {
        self.actions = recording::ActionBook::new(kept, record);
        self
    }

    fn report(&mut self, failure: Option<Failure>) -> SeedReport {
        let sim = &mut self.sim;
        SeedReport {
            seed: sim.seed(),
            knobs: sim.knobs().clone(),
            failure,
            trace_hash: sim.trace_hash(),
            events: sim.events_handled(),
            virtual_ms: sim.elapsed_ms(),
            faults_fired: sim.faults().ledger().clone(),
            crash_points_fired: sim.crash_points_fired(),
            invariant_checks: sim.oracle().invariant_checks,
            acknowledged_writes: sim.oracle().acknowledged_writes,
            conflicts_stored: sim.conflicts_stored(),
            syncs_completed: sim.syncs_completed(),
            probes: sim.probes().clone(),
            liveness_bound: LivenessBound::for_knobs(sim.knobs()),
            recent_events: sim.recent_trace(),
            operation: sim.operation().to_owned(),
            trace: sim.take_trace(),
            event_log: sim.take_event_log(),
            recording: self.actions.take_recorded().map(|actions| Recording {
                actions,
                faults: sim.recorded_faults(),
            }),
        }
    }

    /// Runs the phases and the final checks; `safety_only`: the safety phase alone, with
    /// the checks that need no convergence.
    pub fn run(&mut self, safety_only: bool) -> Result<(), Failure> {
        let gap_max = self.sim.knobs().action_gap_ms_max;
        for device in 0..self.sim.devices().len() {
            self.sim.restart(device)?;
            let first = self.sim.now_ms() + self.scheduler.range(0, gap_max);
            self.sim.schedule_driver(first, device);
        }
        let safety_end_ms = EPOCH_MS + self.sim.knobs().safety_duration_ms;
        while self
            .sim
            .next_event_at()
            .is_some_and(|at| at <= safety_end_ms)
        {
            if let Some(crate::kernel::Wake::Driver(device)) = self.sim.step()? {
                self.user_action(device, true)?;
                let next = self.sim.now_ms() + self.scheduler.range(1, gap_max);
                self.sim.schedule_driver(next, device);
            }
            self.act_while_in_flight()?;
        }
        self.sim.advance_to(safety_end_ms.max(self.sim.now_ms()));
        if safety_only {
            self.sim.trace("safety only: no liveness phase".to_owned());
            self.sim.set_operation("final checks");
            return self.sim.safety_checks();
        }
        self.run_liveness()?;
        self.sim.set_operation("final checks");
        self.sim.final_checks()?;
        self.run_second_workload()?;
        self.sim.set_operation("final checks");
        self.sim.final_checks()
    }

    // ---- the simulated user -------------------------------------------------------------

    /// One action of the device's user; without `sync_now_allowed` (the second
    /// workload) a drawn "sync now" is the user looking at the app and doing nothing.
    fn user_action(&mut self, index: usize, sync_now_allowed: bool) -> Result<(), Failure> {
        let weights = self.sim.knobs().workload_weights;
        let action = Action::ALL[self.workload.weighted(&weights)];
        let sub_seed = self.workload.next_u64();
        let mut user = SimRng::new(sub_seed, 0);
        let name = self.sim.device(index).name.clone();
        self.sim.set_operation(&format!("user {action:?}"));
        let (id, kept) = self.actions.next(ActionStream::Workload);
        if !kept {
            // The faults around the action keep their opportunities, so that the case's
            // later faults keep their numbers.
            self.sim
                .trace(format!("{name} action {action:?} left out by the case"));
            return self.sim.inject_action_faults(index);
        }
        let at_ms = self.sim.elapsed_ms();
        self.actions.record(id, at_ms, &name, action, sub_seed);
        self.sim.trace(format!("{name} action {action:?}"));
        self.sim.inject_action_faults(index)?;
        self.background_task(index)?;
        if self.sim.tenant_of(index).is_none() {
            let tenants = self.sim.tenants();
            let tenant = tenants[user.index(tenants.len())].clone();
            return self.sim.login(index, &tenant);
        }
        if !self.sim.device(index).is_running() {
            return Ok(());
        }
        let after_kill = matches!(action, Action::Logout | Action::SwitchTenant)
            && user.chance(self.sim.knobs().lifecycle_after_kill);
        let mut act = Act {
            sim: &mut self.sim,
            user: &mut user,
            index,
        };
        match action {
            Action::Create => act.create(1),
            Action::BulkCreate => {
                let count = act.user.range(1, act.sim.knobs().bulk_create_max as u64) as usize;
                act.create(count)
            }
            Action::Update => act.update(),
            Action::Delete => act.delete(),
            Action::SyncNow if !sync_now_allowed => {
                act.sim.trace(format!("{name} looks at the app"));
                Ok(())
            }
            Action::SyncNow => {
                act.sim.trace(format!("{name} sync now"));
                act.sim
                    .call(index, |engine| Ok(engine.sync_now()?))
                    .map(drop)
            }
            Action::ResolveOne => act.resolve_one(),
            Action::Force => act.force(),
            Action::Wipe => act.wipe(),
            Action::Logout if after_kill => act.logout_after_kill(),
            Action::Logout => act.sim.logout(index),
            Action::SwitchTenant if after_kill => act.switch_after_kill_and_drop(),
            Action::SwitchTenant => act.switch_tenant(),
        }
    }

    /// The app's background process (the second-process class): once its sync has
    /// ended it closes; else it may start now, save a record half the time (the same
    /// user edits as the app's), and sync.
    fn background_task(&mut self, index: usize) -> Result<(), Failure> {
        if self.sim.background_idle(index) {
            self.sim.stop_background(index);
            return Ok(());
        }
        let Some(draw) = self.sim.maybe_start_background(index)? else {
            return Ok(());
        };
        let mut task = SimRng::new(draw, 0);
        if task.coin() {
            self.sim.as_background(index, |sim| {
                Act {
                    sim,
                    user: &mut task,
                    index,
                }
                .update()
            })?;
        }
        self.sim.as_background(index, |sim| {
            sim.call(index, |engine| Ok(engine.sync_now()?)).map(drop)
        })?;
        Ok(())
    }

    fn resolve(
        &mut self,
        index: usize,
        conflict: &sync_engine::Conflict,
        choice: u64,
    ) -> Result<(), Failure> {
        let mut user = SimRng::new(choice, 0);
        Act {
            sim: &mut self.sim,
            user: &mut user,
            index,
        }
        .resolve(conflict)
    }
}

/// One action of one device's user, with the action's own random choices.
struct Act<'a> {
    sim: &'a mut Sim,
    user: &'a mut SimRng,
    index: usize,
}

impl Act<'_> {
    fn name(&self) -> String {
        self.sim.device(self.index).name.clone()
    }

    fn tenant(&self) -> String {
        self.sim
            .tenant_of(self.index)
            .expect("acting devices are logged in")
            .to_owned()
    }

    fn random_data(&mut self) -> Value {
        let colors = ["red", "green", "blue", "amber"];
        json!({
            "title": format!("item-{}", self.user.range(0, 999)),
            "count": self.user.range(0, 100),
            "color": colors[self.user.index(colors.len())],
        })
    }

    fn space(&mut self) -> String {
        let spaces = self.sim.knobs().spaces_per_tenant;
        format!("space-{}", self.user.index(spaces))
    }

    fn create(&mut self, count: usize) -> Result<(), Failure> {
        let (index, name) = (self.index, self.name());
        let entity = ENTITIES[self.user.index(ENTITIES.len())];
        let space = self.space();
        let mut items: Vec<Value> = (0..count).map(|_| self.random_data()).collect();
        rejections::shape_created(self.user, self.sim.knobs(), &mut items);
        self.sim
            .trace(format!("{name} create {count} {entity} in {space}"));
        let created = self
            .sim
            .call(index, |engine| {
                Ok(engine.create_many(entity, &space, items)?)
            })?
            .ok()
            .unwrap_or_default();
        if let (Some(first), Some(last)) = (created.first(), created.last()) {
            self.sim.trace(format!("{name} created {first}..{last}"));
        }
        for client_id in created {
            self.sim.acknowledge_create(index, &client_id)?;
        }
        Ok(())
    }

    fn pick_target(&mut self) -> Option<String> {
        let tenant = self.tenant();
        // Drawn whether or not there is a record, so the draws do not depend on state.
        let draw = self.user.next_u64();
        let ids = self.sim.oracle().model.created_list(&tenant);
        if ids.is_empty() {
            return None;
        }
        // Favour recent records: they are the ones devices edit concurrently.
        let window = ids.len().min(32);
        let pick = ids.len() - 1 - (draw % window as u64) as usize;
        Some(ids[pick].clone())
    }

    fn update(&mut self) -> Result<(), Failure> {
        let index = self.index;
        let fields = ["title", "count", "color", "note"];
        let field = fields[self.user.index(fields.len())];
        let value = json!(format!("v{}", self.user.range(0, 99)));
        let mut patch = Map::new();
        patch.insert(field.to_owned(), value);
        rejections::shape_patch(self.user, self.sim.knobs(), &mut patch);
        let concurrent = self.user.chance(self.sim.knobs().concurrent_edit);
        let other_value = json!(format!("w{}", self.user.range(0, 99)));
        let other_draw = self.user.next_u64();
        // Half the concurrent edits touch another field: the field-level auto-merge's case.
        let other_field = if self.user.coin() {
            field
        } else {
            fields[self.user.index(fields.len())]
        };
        let Some(client_id) = self.pick_target() else {
            return Ok(());
        };
        self.sim
            .trace(format!("{} update {client_id} {field}", self.name()));
        self.write_patch(index, &client_id, patch)?;
        if !concurrent {
            return Ok(());
        }
        let tenant = self.sim.tenant_of(index).map(str::to_owned);
        let others: Vec<usize> = (0..self.sim.devices().len())
            .filter(|other| {
                *other != index
                    && self.sim.tenant_of(*other).map(str::to_owned) == tenant
                    && self.sim.device(*other).is_running()
            })
            .collect();
        if let Some(&other) = others.get((other_draw % others.len().max(1) as u64) as usize) {
            let other_name = self.sim.device(other).name.clone();
            self.sim.trace(format!(
                "{other_name} concurrently updates {client_id} {other_field}"
            ));
            let mut other_patch = Map::new();
            other_patch.insert(other_field.to_owned(), other_value);
            self.write_patch(other, &client_id, other_patch)?;
        }
        Ok(())
    }

    fn write_patch(
        &mut self,
        index: usize,
        client_id: &str,
        patch: Map<String, Value>,
    ) -> Result<(), Failure> {
        let updated = self.sim.call(index, |engine| {
            Ok(engine.update(client_id, Value::Object(patch))?)
        })?;
        if matches!(updated, Called::Done(_)) {
            self.sim.acknowledge(index, client_id)?;
        }
        Ok(())
    }

    fn delete(&mut self) -> Result<(), Failure> {
        let index = self.index;
        let Some(client_id) = self.pick_target() else {
            return Ok(());
        };
        self.sim
            .trace(format!("{} delete {client_id}", self.name()));
        let deleted = self
            .sim
            .call(index, |engine| Ok(engine.delete(&client_id)?))?;
        if matches!(deleted, Called::Done(_)) {
            self.sim.acknowledge(index, &client_id)?;
        }
        Ok(())
    }

    fn resolve_one(&mut self) -> Result<(), Failure> {
        let conflicts = self
            .sim
            .call(self.index, |engine| Ok(engine.list_conflicts()?))?
            .ok()
            .unwrap_or_default();
        match conflicts.first() {
            Some(conflict) => self.resolve(conflict),
            None => Ok(()),
        }
    }

    /// The simulated user answers one conflict with one of the three choices.
    fn resolve(&mut self, conflict: &sync_engine::Conflict) -> Result<(), Failure> {
        let (index, tenant) = (self.index, self.tenant());
        let resolution = match self.user.range(0, 2) {
            0 => Resolution::KeepLocal,
            1 => Resolution::UseServer,
            _ => Resolution::MergeFields(
                conflict
                    .changed_fields()
                    .into_iter()
                    .map(|diff| {
                        let side = if self.user.coin() {
                            Side::Local
                        } else {
                            Side::Server
                        };
                        (diff.field, side)
                    })
                    .collect(),
            ),
        };
        self.sim.trace(format!(
            "{} resolves conflict on {} with {resolution:?}",
            self.name(),
            conflict.client_id
        ));
        self.sim.oracle_mut().model.discard_record(
            index,
            &tenant,
            &conflict.client_id,
            "user resolved a conflict",
        );
        let id = conflict.id;
        let keeps_local = resolution != Resolution::UseServer;
        let resolved = self
            .sim
            .call(index, |engine| Ok(engine.resolve_conflict(id, resolution)?))?;
        if matches!(resolved, Called::Done(_)) {
            self.sim.probe(Probe::ConflictResolved);
        }
        if matches!(resolved, Called::Done(_)) && keeps_local {
            self.sim.acknowledge(index, &conflict.client_id)?;
        }
        Ok(())
    }

    fn force(&mut self) -> Result<(), Failure> {
        let index = self.index;
        let entity = ENTITIES[self.user.index(ENTITIES.len())];
        let from_server = self.user.coin();
        let direction = if from_server {
            "from server"
        } else {
            "push local"
        };
        self.sim
            .trace(format!("{} force {direction} {entity}", self.name()));
        let plan = self.sim.call(index, |engine| {
            Ok(if from_server {
                engine.plan_force_from_server(entity)?
            } else {
                engine.plan_force_push_local(entity)?
            })
        })?;
        let Called::Done(plan) = plan else {
            return Ok(());
        };
        self.sim.execute_force(index, plan)?;
        Ok(())
    }

    fn wipe(&mut self) -> Result<(), Failure> {
        let (index, tenant) = (self.index, self.tenant());
        let space = self.space();
        self.sim.trace(format!("{} wipes {space}", self.name()));
        let oracle = self.sim.oracle_mut();
        oracle.model.discard_device_space(index, &tenant, &space);
        let wiped = self
            .sim
            .call(index, |engine| Ok(engine.wipe_space(&space)?))?;
        if matches!(wiped, Called::Done(_)) {
            self.sim.probe(Probe::SpaceWiped);
            self.sim
                .oracle_mut()
                .causality
                .forget_space(index, &tenant, &space);
        }
        self.sim.oracle_mut().reset_cursors(index, &tenant);
        Ok(())
    }

    fn switch_tenant(&mut self) -> Result<(), Failure> {
        let Some(next) = self.other_tenant() else {
            return Ok(());
        };
        self.sim.switch_tenant(self.index, &next)
    }

    /// A tenant of the world other than the current one, drawn by the user (`None` in a
    /// world of one tenant; the draw is taken either way).
    fn other_tenant(&mut self) -> Option<String> {
        let current = self.tenant();
        let others: Vec<String> = self
            .sim
            .tenants()
            .iter()
            .filter(|tenant| **tenant != current)
            .cloned()
            .collect();
        let draw = self.user.next_u64();
        if others.is_empty() {
            return None;
        }
        Some(others[(draw % others.len() as u64) as usize].clone())
    }
}
