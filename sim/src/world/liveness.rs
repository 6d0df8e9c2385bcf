//! Liveness without help: after the faults stop, the world must converge by what a real
//! app does on its own, and stay live for a second, fault-free workload.
//!
//! Nobody calls `sync_now`. Recovery comes from the engine's own triggers and timers: the
//! app opening after a restart, the network coming back, the interval timer, the retry
//! timer after a transient failure, the after-write debounce. The simulated user still
//! answers conflicts (a user action). The virtual-time bound is derived from the engine's
//! timers ([`LivenessBound`]); a world that converges only once every device is told to
//! sync — a queue that drains only when poked — is a liveness failure that says so.
//!
//! This module decides when the phases end and what the user does in them; it never
//! injects faults or schedules deliveries itself.

use super::{Failure, FailureKind, World};
use crate::profile::Knobs;
use serde::Serialize;
use sync_engine::SyncSettings;

/// How long the second workload runs, at most, in virtual time.
const SECOND_WORKLOAD_MS_MAX: u64 = 60_000;
/// Rounds of "every device syncs now" tried after a liveness failure, only to say whether
/// the world was stuck or merely never poked.
const DIAGNOSIS_ROUNDS: usize = 3;

/// The virtual time the world gets to converge on its own, from the engine's timers.
///
/// Within one window every running app starts a sync: the interval timer fires every
/// `interval_ms` of the engines' settings (the defaults: simulated engines run with them)
/// whatever else is armed (the retry backoff is capped at `backoff_cap_ms`, no longer
/// than the interval), and a request sent before the heal is
/// answered or times out within `request_timeout_ms`, twice over for a late answer. One
/// window lets a write travel one hop (pushed, or pulled); a conflict takes a few (pulled,
/// answered by the user, pushed, pulled by the others), so the world gets
/// `liveness_rounds_max` windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LivenessBound {
    pub window_ms: u64,
    pub windows: u64,
}

impl LivenessBound {
    pub fn for_knobs(knobs: &Knobs) -> LivenessBound {
        let settings = SyncSettings::default();
        let longest_timer_ms = settings.interval_ms.max(settings.backoff_cap_ms);
        LivenessBound {
            window_ms: longest_timer_ms
                + settings.after_write_delay_ms
                + 2 * knobs.request_timeout_ms,
            windows: knobs.liveness_rounds_max as u64,
        }
    }

    pub fn total_ms(&self) -> u64 {
        self.window_ms * self.windows
    }

    pub fn describe(&self) -> String {
        let settings = SyncSettings::default();
        format!(
            "{} windows of {} ms = {} ms (interval {} ms, retry cap {} ms, debounce {} ms, \
             2 request timeouts)",
            self.windows,
            self.window_ms,
            self.total_ms(),
            settings.interval_ms,
            settings.backoff_cap_ms,
            settings.after_write_delay_ms,
        )
    }
}

impl World {
    /// Stops every fault, opens every app the faults left closed, and waits for the world
    /// to converge on its own.
    pub(super) fn run_liveness(&mut self) -> Result<(), Failure> {
        let bound = LivenessBound::for_knobs(self.sim.knobs());
        self.sim.trace(format!(
            "liveness: heal the network, stop kills and faults; no sync now; bound {}",
            bound.describe()
        ));
        self.sim.stop_faults()?;
        for device in 0..self.sim.devices().len() {
            self.sim.restart(device)?;
        }
        self.converge_unaided("after the faults stopped")
    }

    /// A short workload on the healed world: the users act as in the safety phase but
    /// never press "sync now", and no fault strikes; then the world must converge on its
    /// own again.
    pub(super) fn run_second_workload(&mut self) -> Result<(), Failure> {
        let knobs = self.sim.knobs();
        let (gap_max, duration_ms) = (
            knobs.action_gap_ms_max,
            (knobs.safety_duration_ms / 4).min(SECOND_WORKLOAD_MS_MAX),
        );
        let end_ms = self.sim.now_ms() + duration_ms;
        self.sim.trace(format!(
            "second workload: {duration_ms} ms without faults or sync now"
        ));
        for device in 0..self.sim.devices().len() {
            let first = self.sim.now_ms() + self.scheduler.range(0, gap_max);
            self.sim.schedule_driver(first, device);
        }
        while self.sim.next_event_at().is_some_and(|at| at <= end_ms) {
            if let Some(crate::kernel::Wake::Driver(device)) = self.sim.step()? {
                self.user_action(device, false)?;
                let next = self.sim.now_ms() + self.scheduler.range(1, gap_max);
                self.sim.schedule_driver(next, device);
            }
        }
        self.sim.advance_to(end_ms.max(self.sim.now_ms()));
        self.converge_unaided("after the second workload")
    }

    /// Runs the world window by window, the user answering conflicts between windows,
    /// until it converges; a liveness failure once the bound is spent.
    fn converge_unaided(&mut self, when: &str) -> Result<(), Failure> {
        let bound = LivenessBound::for_knobs(self.sim.knobs());
        let mut last_difference = String::new();
        for window in 0..bound.windows {
            self.sim.trace(format!("liveness window {window} {when}"));
            let end_ms = self.sim.now_ms() + bound.window_ms;
            self.sim.run_until(end_ms)?;
            self.sim.run_until_quiet()?;
            if self.answer_conflicts()? {
                continue;
            }
            match self.sim.difference()? {
                None => return Ok(()),
                Some(difference) => last_difference = difference,
            }
        }
        let failure = self.diagnose(when, &bound, last_difference)?;
        self.sim.set_operation("convergence without help");
        Err(failure)
    }

    /// The simulated user answers every open conflict on every device; true if any was.
    fn answer_conflicts(&mut self) -> Result<bool, Failure> {
        let mut answered = false;
        for device in 0..self.sim.devices().len() {
            let conflicts = self
                .sim
                .call(device, |engine| Ok(engine.list_conflicts()?))?
                .ok()
                .unwrap_or_default();
            for conflict in conflicts {
                let choice = self.resolutions.next_u64();
                self.resolve(device, &conflict, choice)?;
                answered = true;
            }
        }
        Ok(answered)
    }

    /// The failure of a world that did not converge on its own. To say why, it then pokes
    /// every device with "sync now" a few rounds: if that converges, the engine recovers
    /// only when poked.
    fn diagnose(
        &mut self,
        when: &str,
        bound: &LivenessBound,
        last_difference: String,
    ) -> Result<Failure, Failure> {
        let mut poked_converged = false;
        for _ in 0..DIAGNOSIS_ROUNDS {
            self.answer_conflicts()?;
            for device in 0..self.sim.devices().len() {
                self.sim.call(device, |engine| Ok(engine.sync_now()?))?;
            }
            self.sim.run_until_quiet()?;
            if self.sim.difference()?.is_none() {
                poked_converged = true;
                break;
            }
        }
        let message = if poked_converged {
            format!(
                "no convergence on its own {when} within {}; it converged only once every \
                 device was told to sync now: a queue that drains only when poked \
                 ({last_difference})",
                bound.describe()
            )
        } else {
            format!(
                "no convergence {when} within {}, not even with sync now: {last_difference}",
                bound.describe()
            )
        };
        Ok(Failure {
            kind: FailureKind::Liveness,
            message,
        })
    }
}
