//! Shrinking: from a failing run to the smallest case that still fails the same way.
//!
//! The shrinker starts from a recorded case and tries smaller ones, in passes, going on
//! from a candidate only when it fails with the same [`FailureSignature`] (same kind, same
//! invariant) and no more events than the case it goes on from (for a simpler world —
//! fewer devices, a fault class off — a quarter more than the smallest case so far); the
//! smallest case found is the result:
//!
//! 1. fault classes off, one at a time;
//! 2. fewer devices, tenants and spaces, one at a time (each changes the world's draws,
//!    so a candidate is a fresh run of the edited knobs, kept only if it still fails);
//! 3. a shorter safety phase;
//! 4. devices left out, one at a time, with their actions (the others' draws unchanged);
//! 5. delta debugging (`ddmin.rs`) of the case's user actions, then of its faults, for
//!    as long as a round still removes something;
//! 6. a tidy-up: devices left out again, fewer tenants and spaces, fault classes with no
//!    fault left switched off, and a shorter safety phase, now with the case's few actions
//!    and faults; if that made the case smaller, passes 5 and 6 once more.
//!
//! Passes 1–3 run the edited knobs as a seed's own run (the dice choose the faults) and
//! record it; passes 4–6 run the case's kept set with items left out or knobs edited.
//! Each accepted candidate's recording is the case the search goes on from, so items a
//! run never reached go too.
//! The work is bounded by a number of candidate runs. Everything is deterministic: one
//! start case shrinks to one result. This module decides what to try; running a case is
//! `case.rs`'s and judging a failure `signature.rs`'s.

pub mod ddmin;

pub use crate::signature::FailureSignature;

use crate::case::Case;
use crate::kernel::{FaultId, FiredFault};
use crate::profile::Knobs;
use crate::world::{ActionId, ActionRecord, KeptSet, RunOptions, SeedReport};
use ddmin::{ddmin, Verdict};
use serde::Serialize;
use std::collections::BTreeSet;

/// Candidate runs a shrink may make unless told otherwise (`syncsim shrink --runs-max`).
pub const CANDIDATE_RUNS_MAX_DEFAULT: usize = 500;
/// Rounds of delta debugging then tidying up, at most.
const TIDY_ROUNDS_MAX: usize = 2;
/// Rounds of delta debugging (actions, then faults) at most, each time.
const DDMIN_ROUNDS_MAX: usize = 3;
/// A candidate with a simpler world (knobs edited, a device left out) is accepted with up
/// to this many times the events of the smallest case so far (numerator, denominator):
/// one device fewer at the cost of a few events often opens the way to a much smaller
/// case. Other candidates may not add events to the case the search goes on from. The
/// result is the smallest case.
const EVENTS_SLACK: (u64, u64) = (5, 4);
/// The safety phase is not shortened below this.
const SAFETY_MS_MIN: u64 = 1_000;

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PassReport {
    pub pass: &'static str,
    pub events_before: u64,
    pub events_after: u64,
    pub actions_before: usize,
    pub actions_after: usize,
    pub faults_before: usize,
    pub faults_after: usize,
    /// Candidate runs the pass made.
    pub runs: usize,
}

/// The outcome of a shrink.
#[derive(Clone, Debug)]
pub struct Shrunk {
    pub signature: FailureSignature,
    /// The smallest failing case found.
    pub case: Case,
    pub passes: Vec<PassReport>,
    /// Candidate runs made in all.
    pub runs: usize,
    /// True if the shrink stopped because its candidate runs ran out.
    pub budget_spent: bool,
}

/// Shrinks `start`, a recorded case whose run failed, within `runs_max` candidate runs;
/// `progress` sees each pass as it ends. An error if `start` did not fail.
pub fn shrink(
    start: Case,
    runs_max: usize,
    progress: &mut dyn FnMut(&PassReport),
) -> Result<Shrunk, String> {
    let Some(failure) = &start.recorded.failure else {
        return Err(format!(
            "seed {} passes with these knobs: there is no failure to shrink",
            start.seed
        ));
    };
    let mut shrinker = Shrinker {
        target: FailureSignature::of(failure),
        smallest: start.clone(),
        best: start,
        runs: 0,
        runs_max,
        passes: Vec::new(),
    };
    shrinker.pass(
        "fault classes off",
        progress,
        Shrinker::switch_fault_classes_off,
    );
    shrinker.pass("fewer devices, tenants, spaces", progress, |shrinker| {
        shrinker.drop_world_parts(Mode::Dice)
    });
    shrinker.pass("shorter safety phase", progress, |shrinker| {
        shrinker.shorten_safety_phase(Mode::Dice)
    });
    shrinker.pass("devices left out", progress, Shrinker::leave_devices_out);
    for _ in 0..TIDY_ROUNDS_MAX {
        shrinker.ddmin_rounds(progress);
        // The tidy-up works on the result, which an earlier path may have found.
        shrinker.best = shrinker.smallest.clone();
        let before = size(&shrinker.smallest);
        shrinker.pass("tidy up", progress, Shrinker::tidy_up);
        if size(&shrinker.smallest) == before || shrinker.budget_spent() {
            break;
        }
    }
    let replayed = shrinker.smallest.replay(false);
    assert_eq!(
        replayed.trace_hash, shrinker.smallest.recorded.trace_hash,
        "a shrunk case replays the run it was recorded from"
    );
    Ok(Shrunk {
        signature: shrinker.target.clone(),
        budget_spent: shrinker.budget_spent(),
        runs: shrinker.runs,
        passes: shrinker.passes,
        case: shrinker.smallest,
    })
}

/// How big a case is, most important first: events, then actions and faults, then how
/// much world it needs.
fn size(case: &Case) -> [u64; 7] {
    let knobs = &case.knobs;
    [
        case.recorded.events,
        (case.actions.len() + case.faults.len()) as u64,
        knobs.faults.len() as u64,
        (knobs.devices - case.absent_devices.len()) as u64,
        knobs.tenants as u64,
        knobs.spaces_per_tenant as u64,
        knobs.safety_duration_ms,
    ]
}

/// The case's actions, in the order they acted.
fn action_ids(case: &Case) -> Vec<ActionId> {
    case.actions.iter().map(ActionRecord::id).collect()
}

/// The case's faults, in the order they fired.
fn fault_ids(case: &Case) -> Vec<FaultId> {
    case.faults.iter().map(FiredFault::id).collect()
}

struct Shrinker {
    target: FailureSignature,
    /// The case the search goes on from: the last one accepted.
    best: Case,
    /// The accepted case with the fewest events (then the fewest actions and faults): the
    /// result.
    smallest: Case,
    runs: usize,
    runs_max: usize,
    passes: Vec<PassReport>,
}

/// How a candidate chooses its actions and faults.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As a seed's own run: every action, the faults the dice choose.
    Dice,
    /// The current case's kept set.
    Kept,
}

/// What became of one candidate.
enum Attempt {
    /// It failed the same way, with few enough events: the search goes on from it.
    Accepted,
    Rejected,
    OutOfBudget,
}

impl Shrinker {
    fn budget_spent(&self) -> bool {
        self.runs >= self.runs_max
    }

    fn pass(
        &mut self,
        name: &'static str,
        progress: &mut dyn FnMut(&PassReport),
        body: impl FnOnce(&mut Shrinker),
    ) {
        let (events_before, actions_before, faults_before, runs_before) = (
            self.best.recorded.events,
            self.best.actions.len(),
            self.best.faults.len(),
            self.runs,
        );
        if !self.budget_spent() {
            body(self);
        }
        let report = PassReport {
            pass: name,
            events_before,
            events_after: self.best.recorded.events,
            actions_before,
            actions_after: self.best.actions.len(),
            faults_before,
            faults_after: self.best.faults.len(),
            runs: self.runs - runs_before,
        };
        progress(&report);
        self.passes.push(report);
    }

    /// Runs one candidate in `mode` with `knobs` and the current case's absent devices.
    fn attempt_knobs(&mut self, knobs: Knobs, mode: Mode) -> Attempt {
        let kept = (mode == Mode::Kept).then(|| self.best.kept());
        let absent_devices = self.best.absent_devices.clone();
        self.attempt(knobs, kept, absent_devices)
    }

    /// Runs one candidate: `knobs` as a seed's own run when `kept` is `None`, else with
    /// only `kept`, and `absent_devices` left out; the recording becomes the case the
    /// search goes on from if the run fails the same way with few enough events.
    fn attempt(
        &mut self,
        knobs: Knobs,
        kept: Option<KeptSet>,
        absent_devices: BTreeSet<usize>,
    ) -> Attempt {
        // Edited knobs or a device left out make a simpler world, worth a few events.
        let simpler_world = knobs != self.best.knobs || absent_devices != self.best.absent_devices;
        if self.budget_spent() {
            return Attempt::OutOfBudget;
        }
        self.runs += 1;
        let options = RunOptions {
            defects: crate::server::ServerDefects::planting(self.best.defects.iter().copied()),
            safety_only: self.best.safety_only,
            record: true,
            kept,
            absent_devices: absent_devices.clone(),
            ..RunOptions::default()
        };
        let report = crate::world::run_seed_with_knobs(self.best.seed, knobs.clone(), &options);
        let events_max = if simpler_world {
            self.smallest.recorded.events * EVENTS_SLACK.0 / EVENTS_SLACK.1
        } else {
            self.best.recorded.events
        };
        if !self.same_failure(&report) || report.events > events_max {
            return Attempt::Rejected;
        }
        self.best = Case::from_report(
            self.best.seed,
            knobs,
            &self.best.defects,
            self.best.safety_only,
            &report,
        );
        self.best.absent_devices = absent_devices;
        if size(&self.best) < size(&self.smallest) {
            self.smallest = self.best.clone();
        }
        Attempt::Accepted
    }

    /// Same kind, same invariant: see [`FailureSignature`].
    fn same_failure(&self, report: &SeedReport) -> bool {
        report
            .failure
            .as_ref()
            .is_some_and(|failure| FailureSignature::of(failure) == self.target)
    }

    fn switch_fault_classes_off(&mut self) {
        let classes: Vec<_> = self.best.knobs.faults.keys().copied().collect();
        for class in classes {
            let mut knobs = self.best.knobs.clone();
            knobs.faults.remove(&class);
            if let Attempt::OutOfBudget = self.attempt_knobs(knobs, Mode::Dice) {
                return;
            }
        }
    }

    /// Fewer devices, tenants, spaces in `Mode::Dice`; fewer tenants and spaces in
    /// `Mode::Kept` (a device fewer renumbers every action after its first wake).
    fn drop_world_parts(&mut self, mode: Mode) {
        let devices: fn(&mut Knobs) -> &mut usize = |knobs| &mut knobs.devices;
        let tenants: fn(&mut Knobs) -> &mut usize = |knobs| &mut knobs.tenants;
        let spaces: fn(&mut Knobs) -> &mut usize = |knobs| &mut knobs.spaces_per_tenant;
        let parts = match mode {
            Mode::Dice => vec![devices, tenants, spaces],
            Mode::Kept => vec![tenants, spaces],
        };
        for part in parts {
            loop {
                let mut knobs = self.best.knobs.clone();
                let count = part(&mut knobs);
                if *count <= 1 {
                    break;
                }
                *count -= 1;
                match self.attempt_knobs(knobs, mode) {
                    Attempt::Accepted => {}
                    Attempt::Rejected => break,
                    Attempt::OutOfBudget => return,
                }
            }
        }
    }

    /// A run that failed inside the safety phase first gets a phase that ends just after
    /// the failure (the same run, shorter knobs); then quarters and halves are tried.
    fn shorten_safety_phase(&mut self, mode: Mode) {
        let failed_at_ms = self.best.recorded.virtual_ms;
        let mut knobs = self.best.knobs.clone();
        let just_after_ms = failed_at_ms.div_ceil(1_000) * 1_000 + 1_000;
        if just_after_ms < knobs.safety_duration_ms {
            knobs.safety_duration_ms = just_after_ms;
            if let Attempt::OutOfBudget = self.attempt_knobs(knobs, mode) {
                return;
            }
        }
        'shorter: loop {
            let duration_ms = self.best.knobs.safety_duration_ms;
            for shorter_ms in [duration_ms / 4, duration_ms / 2] {
                if shorter_ms < SAFETY_MS_MIN {
                    continue;
                }
                let mut knobs = self.best.knobs.clone();
                knobs.safety_duration_ms = shorter_ms;
                match self.attempt_knobs(knobs, mode) {
                    Attempt::Accepted => continue 'shorter,
                    Attempt::Rejected => {}
                    Attempt::OutOfBudget => return,
                }
            }
            return;
        }
    }

    /// Leaves each device out in turn, last first, with every action it took: it never
    /// opens, and the other devices' actions keep their draws.
    fn leave_devices_out(&mut self) {
        for device in (0..self.best.knobs.devices).rev() {
            if self.best.absent_devices.len() + 1 >= self.best.knobs.devices {
                return;
            }
            if self.best.absent_devices.contains(&device) {
                continue;
            }
            let name = format!("d{device}");
            let mut kept = self.best.kept();
            kept.actions = self
                .best
                .actions
                .iter()
                .filter(|action| action.device != name)
                .map(|action| action.id())
                .collect();
            let mut absent_devices = self.best.absent_devices.clone();
            absent_devices.insert(device);
            let knobs = self.best.knobs.clone();
            if let Attempt::OutOfBudget = self.attempt(knobs, Some(kept), absent_devices) {
                return;
            }
        }
    }

    /// Delta debugging of the actions, then of the faults, for as long as a round still
    /// removes something.
    fn ddmin_rounds(&mut self, progress: &mut dyn FnMut(&PassReport)) {
        for _ in 0..DDMIN_ROUNDS_MAX {
            let before = self.passes.len();
            self.pass("ddmin actions", progress, Shrinker::ddmin_actions);
            self.pass("ddmin faults", progress, Shrinker::ddmin_faults);
            let reduced = self.passes[before..].iter().any(|pass| {
                pass.actions_after < pass.actions_before || pass.faults_after < pass.faults_before
            });
            if !reduced || self.budget_spent() {
                return;
            }
        }
    }

    /// With the case down to its few actions and faults: devices left out once more,
    /// fewer tenants and spaces, fault classes that no listed fault needs switched off
    /// (their dice were thrown for nothing), and a shorter safety phase.
    fn tidy_up(&mut self) {
        self.leave_devices_out();
        self.drop_world_parts(Mode::Kept);
        let unused: Vec<_> = self
            .best
            .knobs
            .faults
            .keys()
            .copied()
            .filter(|class| self.best.faults.iter().all(|fault| fault.class != *class))
            .collect();
        if !unused.is_empty() {
            let mut knobs = self.best.knobs.clone();
            knobs.faults.retain(|class, _| !unused.contains(class));
            if let Attempt::OutOfBudget = self.attempt_knobs(knobs, Mode::Kept) {
                return;
            }
        }
        self.shorten_safety_phase(Mode::Kept);
    }

    fn ddmin_actions(&mut self) {
        // In the order they acted: a chunk is a stretch of the run.
        let actions = action_ids(&self.best);
        ddmin(actions, |candidate| {
            let kept = KeptSet {
                actions: candidate.iter().copied().collect(),
                faults: self.best.kept().faults,
            };
            self.ddmin_step(kept, action_ids)
        });
    }

    fn ddmin_faults(&mut self) {
        let faults = fault_ids(&self.best);
        ddmin(faults, |candidate| {
            let kept = KeptSet {
                actions: self.best.kept().actions,
                faults: candidate.iter().copied().collect(),
            };
            self.ddmin_step(kept, fault_ids)
        });
    }

    /// Runs the current case's world with only `kept`; if it still fails, the `items` of
    /// the case the search now goes on from.
    fn ddmin_step<T>(&mut self, kept: KeptSet, items: fn(&Case) -> Vec<T>) -> Verdict<T> {
        let absent_devices = self.best.absent_devices.clone();
        match self.attempt(self.best.knobs.clone(), Some(kept), absent_devices) {
            Attempt::Accepted => Verdict::Fails(items(&self.best)),
            Attempt::Rejected => Verdict::Passes,
            Attempt::OutOfBudget => Verdict::OutOfBudget,
        }
    }
}
