//! Driving a scene through time: the faults around each step, reopening apps that
//! died, `sync` until a sync started in the step completes, a force or a wipe until it
//! is done, `wait`, and the settle at the end of every run.
//!
//! Fault runs strike before every action step through the kernel's one draw
//! ([`Sim::inject_action_faults`]) for each device the step names (every device for
//! `wait`), keep the crash points armed throughout, and reopen at once any app a fault
//! killed. A step that cannot finish through faults heals its device after a bounded
//! number of attempts: its partition ends, an injected offline period ends, and crash
//! points rest for the rest of the step. What the script itself did — its own `offline`,
//! its own open-ended `partition`, its own `kill` — is never undone by the driver.
//!
//! Time moves only here, and only through the kernel's `run_*` verbs.

use super::runner::{failed, Scene};
use crate::kernel::{Called, Sim};
use std::collections::BTreeSet;
use sync_engine::{Resolution, SyncEvent};

/// Sync attempts within one `sync` step before the device is healed for the step.
const SYNC_ATTEMPTS_BEFORE_HEAL: usize = 12;
/// Sync attempts within one `sync` step before it fails. Each attempt that fails
/// part-way keeps what it pushed and pulled, so a batch of many requests needs several
/// on a lossy network; after the heal only the network's own losses remain.
const SYNC_ATTEMPTS_MAX: usize = 400;
/// Presses of a force or wipe button before the device is healed for the step, and
/// before the step fails.
const PRESSES_BEFORE_HEAL: usize = 6;
const PRESSES_MAX: usize = 40;
/// Reopens in a row that may die at a crash point before the step fails.
const REOPENS_MAX: usize = 20;
/// Settle rounds at the end of a run before it counts as not converging.
const SETTLE_ROUNDS_MAX: usize = 8;
/// Events one step may handle before it counts as never going quiet.
const EVENTS_PER_STEP_MAX: u64 = 2_000_000;
/// The longest `sync` waits for the device's own timer (a retry's backoff, a debounce,
/// the interval) before pressing "sync now" itself.
const TIMER_WAIT_MS_MAX: u64 = 10 * 60 * 1000;
/// The longest `sync` waits for an injected partition or offline period to end by itself.
const CUT_OFF_WAIT_MS_MAX: u64 = 10 * 60 * 1000;

impl Scene {
    // ---- around each step -------------------------------------------------------------------

    /// In fault runs, before an action step: the kernel's faults for each device the step
    /// names (for `wait`, every device).
    pub fn before_step(&mut self, command: &super::parse::Command) -> Result<(), String> {
        if !self.faults {
            return Ok(());
        }
        let Some(actors) = command.actors() else {
            return Ok(());
        };
        let devices: Vec<usize> = if actors.is_empty() {
            (0..self.sim.devices().len()).collect()
        } else {
            let named: Result<BTreeSet<usize>, String> =
                actors.iter().map(|name| self.index(name)).collect();
            named?.into_iter().collect()
        };
        for index in devices {
            self.sim.inject_action_faults(index).map_err(failed)?;
        }
        Ok(())
    }

    /// After every step: apps a fault killed are open again, crash points are armed again
    /// in fault runs (a step may have rested them), collected engine events are dropped.
    pub fn after_step(&mut self) -> Result<(), String> {
        if self.faults {
            self.sim.arm_crash_points(true);
        }
        for index in 0..self.sim.devices().len() {
            self.sim.take_events(index);
        }
        self.reopen_killed()
    }

    /// Reopens every logged-in app that died, except those the script killed itself.
    pub fn reopen_killed(&mut self) -> Result<(), String> {
        for index in 0..self.sim.devices().len() {
            self.reopen_if_killed(index)?;
        }
        Ok(())
    }

    pub fn reopen_if_killed(&mut self, index: usize) -> Result<(), String> {
        let device = self.sim.device(index);
        if device.tenant.is_none() || device.is_running() || self.down_by_script.contains(&index) {
            return Ok(());
        }
        self.reopen(index)
    }

    /// Opens the app until it stays open: the app-open sync may die at a crash point too.
    pub fn reopen(&mut self, index: usize) -> Result<(), String> {
        for _ in 0..REOPENS_MAX {
            if self.sim.device(index).is_running() {
                return Ok(());
            }
            if !self.sim.restart(index).map_err(failed)? && self.sim.tenant_of(index).is_none() {
                return Err(format!("device {} is logged out", self.name(index)));
            }
        }
        if self.sim.device(index).is_running() {
            return Ok(());
        }
        Err(format!(
            "{} died at a crash point in each of {REOPENS_MAX} reopens",
            self.name(index)
        ))
    }

    /// The device cannot reach the server because the script said so.
    fn cut_off_by_script(&self, index: usize) -> bool {
        let device = self.sim.device(index);
        (!device.app_online && self.offline_by_script.contains(&index))
            || (!device.network_up && self.partitioned_by_script.contains(&index))
    }

    /// A step that cannot finish through faults: the device's partition and an injected
    /// offline period end, and crash points rest until the step is over.
    fn heal_for_step(&mut self, index: usize) -> Result<(), String> {
        self.sim.arm_crash_points(false);
        if !self.partitioned_by_script.contains(&index) {
            self.sim.heal(index);
        }
        if !self.sim.device(index).app_online && !self.offline_by_script.contains(&index) {
            self.sim.online(index).map_err(failed)?;
        }
        Ok(())
    }

    // ---- time ---------------------------------------------------------------------------------

    /// Steps while `more` holds, within the step's event budget.
    fn run_while(&mut self, more: impl Fn(&Sim) -> bool) -> Result<(), String> {
        let budget_end = self.events_at_step_start + EVENTS_PER_STEP_MAX;
        self.sim
            .run_while(|sim| more(sim) && sim.events_handled() < budget_end)
            .map_err(failed)?;
        if self.sim.events_handled() >= budget_end {
            return Err("the step never went quiet (event budget exhausted)".to_owned());
        }
        Ok(())
    }

    /// Runs until nothing is on the wire and no killed app waits to restart.
    pub fn run_quiet(&mut self) -> Result<(), String> {
        self.run_while(Sim::network_busy)
    }

    /// Runs every event due by `at_ms`, then sets the clock to `at_ms`.
    pub fn run_until(&mut self, at_ms: u64) -> Result<(), String> {
        self.run_while(|sim| sim.next_event_at().is_some_and(|next| next <= at_ms))?;
        self.sim.run_until(at_ms).map_err(failed)
    }

    // ---- sync -----------------------------------------------------------------------------------

    /// `sync D`: "sync now", then drive until a sync started in this step completes.
    pub fn sync_until_done(&mut self, index: usize) -> Result<(), String> {
        self.tenant(index)?;
        self.engine(index)?;
        let target = self.sim.device(index).sync_started_seq + 1;
        self.call(index, |engine| Ok(engine.sync_now()?))?;
        self.drive_sync(index, target)
    }

    /// Drives the device until its sync number `target` (or a later one) has completed
    /// and it is idle, waiting through backoff timers and pressing "sync now" again when
    /// nothing else would start one. A device the script cut off gets one try.
    fn drive_sync(&mut self, index: usize, target: u64) -> Result<(), String> {
        for attempt in 0..SYNC_ATTEMPTS_MAX {
            if attempt == SYNC_ATTEMPTS_BEFORE_HEAL {
                self.heal_for_step(index)?;
            }
            if self.cut_off_by_script(index) {
                // Nothing can complete: let what is in flight finish.
                return self.run_quiet();
            }
            self.run_quiet()?;
            self.reopen_if_killed(index)?;
            let device = self.sim.device(index);
            let syncing = self
                .engine(index)?
                .status()
                .map_err(|e| e.to_string())?
                .syncing;
            if device.sync_completed_seq >= target && !syncing {
                return Ok(());
            }
            let now_ms = self.sim.now_ms();
            match device.timer_at {
                // A retry with backoff (or a debounce) is due soon: wait for it.
                Some(at_ms) if !syncing && at_ms <= now_ms + TIMER_WAIT_MS_MAX => {
                    self.run_until(at_ms)?;
                    self.reopen_if_killed(index)?;
                    if self.sim.device(index).sync_started_seq < target {
                        self.call(index, |engine| Ok(engine.sync_now()?))?;
                    }
                }
                _ => {
                    if !device.app_online || !device.network_up {
                        // An injected offline period or partition: let it end by itself.
                        let until_ms = now_ms + CUT_OFF_WAIT_MS_MAX;
                        self.run_while(|sim| {
                            let device = sim.device(index);
                            (!device.app_online || !device.network_up)
                                && sim.next_event_at().is_some_and(|next| next <= until_ms)
                        })?;
                        self.reopen_if_killed(index)?;
                    }
                    self.call(index, |engine| Ok(engine.sync_now()?))?;
                }
            }
        }
        Err(format!(
            "{}: no sync completed after {SYNC_ATTEMPTS_MAX} attempts",
            self.name(index)
        ))
    }

    // ---- force and wipe ---------------------------------------------------------------------

    /// Plans, confirms and executes a force, pressing the button again when a kill rolled
    /// it back or (from server) its pull failed: from server, until its pull committed;
    /// push local, until the sync it starts completes. A device the script took offline
    /// or cut off gets one press: a force from server then fails (offline, at once) and
    /// discards nothing, which the script's `expect` lines can check.
    pub fn force(&mut self, index: usize, entity: &str, from_server: bool) -> Result<(), String> {
        self.tenant(index)?;
        self.engine(index)?;
        let one_press = self.cut_off_by_script(index);
        for press in 0..PRESSES_MAX {
            if press == PRESSES_BEFORE_HEAL {
                self.heal_for_step(index)?;
            }
            self.reopen_if_killed(index)?;
            let planned = self.call(index, |engine| {
                Ok(if from_server {
                    engine.plan_force_from_server(entity)?
                } else {
                    engine.plan_force_push_local(entity)?
                })
            })?;
            let plan = match planned {
                Called::Done(plan) => plan,
                Called::Killed(_) | Called::NotRunning => continue,
                Called::Rejected(message) => {
                    return Err(format!(
                        "{}: the engine refused: {message}",
                        self.name(index)
                    ))
                }
            };
            self.sim.take_events(index);
            let target = self.sim.device(index).sync_started_seq + 1;
            // The kernel records what the force may discard, and the oracle settles it by
            // the outcome the engine reports.
            let executed = self.sim.execute_force(index, plan).map_err(failed)?;
            match executed {
                // A force push committed (even when the app then died in the sync it
                // started), or a force from the server is pulling or already failed.
                Called::Done(Ok(_)) => {}
                // Rolled back: the user presses the button again.
                Called::Killed(_) => {
                    self.reopen(index)?;
                    continue;
                }
                Called::NotRunning => continue,
                Called::Done(Err(refused)) => {
                    return Err(format!(
                        "{}: the engine refused: {refused}",
                        self.name(index)
                    ))
                }
                Called::Rejected(message) => {
                    return Err(format!(
                        "{}: the engine refused: {message}",
                        self.name(index)
                    ))
                }
            }
            if !from_server {
                return self.drive_sync(index, target);
            }
            self.run_quiet()?;
            // The force ends with ForceCompleted or ForceFailed (a failed one discarded
            // nothing: press again), or with no outcome when the app died meanwhile.
            let completed = self.sim.take_events(index).iter().any(|event| {
                matches!(event, SyncEvent::ForceCompleted { entity: forced } if forced == entity)
            });
            if completed || one_press {
                return Ok(());
            }
        }
        Err(format!(
            "{}: the force did not complete after {PRESSES_MAX} presses",
            self.name(index)
        ))
    }

    /// Wipes a space, pressing again when a kill rolled the wipe back.
    pub fn wipe(&mut self, index: usize, space: &str) -> Result<(), String> {
        let tenant = self.tenant(index)?;
        self.engine(index)?;
        for _ in 0..PRESSES_MAX {
            self.reopen_if_killed(index)?;
            let model = &mut self.sim.oracle_mut().model;
            model.discard_device_space(index, &tenant, space);
            match self.call(index, |engine| Ok(engine.wipe_space(space)?))? {
                Called::Done(_) => {
                    self.sim.oracle_mut().reset_cursors(index, &tenant);
                    return Ok(());
                }
                // The wipe is one transaction: a kill in it rolled it back.
                Called::Killed(_) | Called::NotRunning => continue,
                Called::Rejected(message) => {
                    return Err(format!(
                        "{}: the engine refused: {message}",
                        self.name(index)
                    ))
                }
            }
        }
        Err(format!(
            "{}: the wipe did not complete after {PRESSES_MAX} presses",
            self.name(index)
        ))
    }

    // ---- the end of a run ---------------------------------------------------------------------

    /// Stops every fault, reopens every app, answers open conflicts "use server", syncs
    /// every device until the world converges, then runs the oracle's final checks.
    pub fn finish(&mut self) -> Result<(), String> {
        self.events_at_step_start = self.sim.events_handled();
        self.sim.stop_faults().map_err(failed)?;
        self.faults = false;
        self.down_by_script.clear();
        self.offline_by_script.clear();
        self.partitioned_by_script.clear();
        self.reopen_killed()?;
        let mut last_difference = String::new();
        for _ in 0..SETTLE_ROUNDS_MAX {
            for index in 0..self.sim.devices().len() {
                let Some(tenant) = self.sim.tenant_of(index).map(str::to_owned) else {
                    continue;
                };
                self.reopen_if_killed(index)?;
                let conflicts = self
                    .engine(index)?
                    .list_conflicts()
                    .map_err(|error| error.to_string())?;
                for conflict in conflicts {
                    self.resolve_conflict(
                        index,
                        &tenant,
                        conflict.id,
                        &conflict.client_id,
                        Resolution::UseServer,
                    )?;
                }
                self.sync_until_done(index)?;
            }
            self.reopen_killed()?;
            match self.sim.difference().map_err(failed)? {
                None => return self.sim.final_checks().map_err(failed),
                Some(difference) => last_difference = difference,
            }
        }
        Err(format!(
            "no convergence after {SETTLE_ROUNDS_MAX} settle rounds: {last_difference}"
        ))
    }
}
