//! `syncsim sweep`: one fixed workload, killed once at each of its transaction boundaries.
//!
//! The workload is a seed's world (its devices, tenants, clocks and user actions) with
//! every random fault off, so that the sweep's kill is its only fault, and with small
//! push runs and pull pages, so that it pushes in several runs and pulls over pages. A
//! first run kills nothing and lists every boundary the engines cross (both sides of
//! every commit). Then, for each boundary, the same world runs again and the app that
//! crosses it dies there; it reopens after its usual delay, the world runs on through
//! its liveness phase to convergence, and the oracle checks every invariant. The world is
//! deterministic, so each run is the first run up to its kill (a kill that does not land
//! where the first run said is reported as a failure).
//!
//! The side after commit k and the side before commit k+1 of the same engine call leave
//! the same files and the same dead engine (a killed engine hands out nothing), so such
//! an after-commit boundary is not run twice: the sweep runs every distinct kill.
//!
//! This module drives worlds and reports; what a kill does is the kernel's, what is
//! correct the oracle's.

use crate::campaign::{defect_names, wall_seconds_since};
use crate::kernel::device::Boundary;
use crate::kernel::{Failure, FailureKind, SimBuilder};
use crate::profile::{Knobs, Profile};
use crate::server::ServerDefects;
use crate::world::run_world;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use sync_engine::CrashPoint;

/// Push runs of at most this many ops, so a sync pushes in several round trips.
const SWEEP_PUSH_BATCH_MAX: usize = 7;
/// Pull pages of at most this many rows, so a pull crosses page boundaries.
const SWEEP_PULL_PAGE_LIMIT: usize = 3;

#[derive(Clone, Debug)]
pub struct SweepConfig {
    pub seed: u64,
    pub profile: Profile,
    pub defects: ServerDefects,
    pub threads: usize,
    /// A shorter (or longer) safety phase than the profile's, in virtual ms.
    pub safety_ms: Option<u64>,
}

/// A kill that ended in a violation.
#[derive(Clone, Debug, Serialize)]
pub struct SweepFailure {
    pub boundary: u64,
    pub device: usize,
    pub point: &'static str,
    pub site: &'static str,
    pub kind: FailureKind,
    pub message: String,
    pub recent_events: Vec<String>,
    pub replay: String,
}

/// What a sweep covered.
#[derive(Clone, Debug, Serialize)]
pub struct SweepSummary {
    pub seed: u64,
    pub profile: Profile,
    /// Boundaries the workload crosses (two per commit).
    pub boundaries: u64,
    /// Kills run: every boundary but the after-commit sides equal to the next commit's
    /// before side.
    pub kills_run: u64,
    /// Boundaries per transaction site.
    pub per_site: BTreeMap<&'static str, u64>,
    /// The workload's size, from the run without kills.
    pub acknowledged_writes: u64,
    pub conflicts_stored: u64,
    pub syncs_completed: u64,
    pub wall_seconds: f64,
    /// The first kill (by boundary number) that broke an invariant.
    pub failure: Option<SweepFailure>,
}

/// The sweep's workload: the seed's knobs, every random fault off, small batches.
pub fn sweep_knobs(config: &SweepConfig) -> Knobs {
    let mut knobs = Knobs::derive(config.seed, config.profile);
    knobs.faults.clear();
    if let Some(safety_ms) = config.safety_ms {
        knobs.safety_duration_ms = safety_ms;
    }
    knobs.push_batch_max = knobs.push_batch_max.min(SWEEP_PUSH_BATCH_MAX);
    knobs.pull_page_limit = knobs.pull_page_limit.min(SWEEP_PULL_PAGE_LIMIT);
    knobs
}

/// The command that replays one kill of a sweep with its trace.
pub fn replay_command(config: &SweepConfig, boundary: u64) -> String {
    let mut command = format!(
        "cargo run --release -p sync-sim -- sweep --seed {} --profile {} --boundary {boundary}",
        config.seed,
        config.profile.name()
    );
    if let Some(safety_ms) = config.safety_ms {
        command.push_str(&format!(" --safety-ms {safety_ms}"));
    }
    for name in defect_names(&config.defects) {
        command.push_str(" --defect ");
        command.push_str(name);
    }
    command
}

/// One run of the workload: with no kill (`None`), listing the boundaries, or killed at
/// boundary `kill`.
pub struct SweepRun {
    pub failure: Option<Failure>,
    pub boundaries: Vec<Boundary>,
    /// The boundary the kill struck (`None` with no kill, or if it never landed).
    pub killed: Option<Boundary>,
    pub acknowledged_writes: u64,
    pub conflicts_stored: u64,
    pub syncs_completed: u64,
    pub recent_events: Vec<String>,
    pub trace: Vec<String>,
}

pub fn run_once(config: &SweepConfig, kill: Option<u64>, keep_trace: bool) -> SweepRun {
    let mut sim = SimBuilder::new(config.seed)
        .knobs(sweep_knobs(config))
        .defects(config.defects)
        .keep_trace(keep_trace)
        .build();
    match kill {
        Some(number) => sim.kill_at_boundary(number),
        None => sim.log_boundaries(),
    }
    let (report, sim) = run_world(sim, false);
    let killed = sim.last_boundary_kill();
    let mut failure = report.failure;
    if let Some(number) = kill {
        if failure.is_none() && killed.map(|boundary| boundary.number) != Some(number) {
            failure = Some(crate::kernel::violation(format!(
                "the kill at boundary {number} did not land: the workload is not deterministic"
            )));
        }
    }
    SweepRun {
        failure,
        boundaries: sim.boundaries(),
        killed,
        acknowledged_writes: report.acknowledged_writes,
        conflicts_stored: report.conflicts_stored,
        syncs_completed: report.syncs_completed,
        recent_events: report.recent_events,
        trace: report.trace,
    }
}

/// The boundaries worth a kill: all but an after-commit side directly followed by the
/// before-commit side of the next commit in the same engine call (the same kill).
pub fn distinct_kills(boundaries: &[Boundary]) -> Vec<Boundary> {
    boundaries
        .iter()
        .enumerate()
        .filter(|(index, boundary)| {
            let next = boundaries.get(index + 1);
            !(boundary.point == CrashPoint::AfterCommit
                && next.is_some_and(|next| {
                    next.point == CrashPoint::BeforeCommit
                        && next.call == boundary.call
                        && next.device == boundary.device
                }))
        })
        .map(|(_, boundary)| *boundary)
        .collect()
}

/// Runs the sweep on `config.threads` threads; `on_progress` hears each finished kill
/// (done, total). Stops at the first failing boundary: kills after it are skipped, kills
/// before it still run, so the reported failure is the smallest failing boundary.
pub fn run_sweep(config: &SweepConfig, on_progress: &(dyn Fn(u64, u64) + Sync)) -> SweepSummary {
    let origin = wall_origin();
    let baseline = run_once(config, None, false);
    let mut per_site: BTreeMap<&'static str, u64> = BTreeMap::new();
    for boundary in &baseline.boundaries {
        *per_site.entry(boundary.site.name()).or_insert(0) += 1;
    }
    let kills = distinct_kills(&baseline.boundaries);
    let mut summary = SweepSummary {
        seed: config.seed,
        profile: config.profile,
        boundaries: baseline.boundaries.len() as u64,
        kills_run: 0,
        per_site,
        acknowledged_writes: baseline.acknowledged_writes,
        conflicts_stored: baseline.conflicts_stored,
        syncs_completed: baseline.syncs_completed,
        wall_seconds: 0.0,
        failure: None,
    };
    if let Some(failure) = baseline.failure {
        // The workload fails with no kill at all: nothing to sweep.
        summary.failure = Some(SweepFailure {
            boundary: 0,
            device: 0,
            point: "none",
            site: "none",
            kind: failure.kind,
            message: failure.message,
            recent_events: baseline.recent_events,
            replay: replay_command(config, 0),
        });
        summary.wall_seconds = wall_seconds_since(&origin);
        return summary;
    }
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let first_failure = AtomicU64::new(u64::MAX);
    let failures: Mutex<Vec<(Boundary, SweepRun)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..config.threads.max(1) {
            scope.spawn(|| loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                let Some(&boundary) = kills.get(position) else {
                    break;
                };
                if boundary.number > first_failure.load(Ordering::Relaxed) {
                    break;
                }
                let run = run_once(config, Some(boundary.number), false);
                if run.failure.is_some() {
                    first_failure.fetch_min(boundary.number, Ordering::Relaxed);
                    failures
                        .lock()
                        .expect("no panics hold the lock")
                        .push((boundary, run));
                }
                on_progress(done.fetch_add(1, Ordering::Relaxed) + 1, kills.len() as u64);
            });
        }
    });
    summary.kills_run = done.into_inner();
    let mut failures = failures.into_inner().expect("no panics hold the lock");
    failures.sort_by_key(|(boundary, _)| boundary.number);
    if let Some((boundary, run)) = failures.into_iter().next() {
        let failure = run.failure.expect("only failed runs are kept");
        summary.failure = Some(SweepFailure {
            boundary: boundary.number,
            device: boundary.device,
            point: boundary.point.name(),
            site: boundary.site.name(),
            kind: failure.kind,
            message: failure.message,
            recent_events: run.recent_events,
            replay: replay_command(config, boundary.number),
        });
    }
    summary.wall_seconds = wall_seconds_since(&origin);
    summary
}

#[allow(clippy::disallowed_methods)]
fn wall_origin() -> std::time::Instant {
    std::time::Instant::now()
}

#[cfg(test)]
mod tests {
    //! Which kills the sweep may skip: only an after-commit side that the next commit of
    //! the same call makes the same kill.
    use super::*;
    use sync_engine::CommitSite;

    fn boundary(number: u64, device: usize, call: u64, point: CrashPoint) -> Boundary {
        Boundary {
            number,
            device,
            call,
            point,
            site: CommitSite::PullPage,
        }
    }

    #[test]
    fn an_after_commit_side_is_skipped_only_before_a_commit_of_the_same_call() {
        use CrashPoint::{AfterCommit, BeforeCommit};
        let crossed = [
            boundary(1, 0, 1, BeforeCommit),
            boundary(2, 0, 1, AfterCommit), // the same kill as 3
            boundary(3, 0, 1, BeforeCommit),
            boundary(4, 0, 1, AfterCommit), // the call's last commit
            boundary(5, 0, 2, BeforeCommit),
            boundary(6, 0, 2, AfterCommit), // another device's commit follows
            boundary(7, 1, 2, BeforeCommit),
            boundary(8, 1, 2, AfterCommit), // the run's last boundary
        ];
        let kept: Vec<u64> = distinct_kills(&crossed)
            .into_iter()
            .map(|boundary| boundary.number)
            .collect();
        assert_eq!(kept, [1, 3, 4, 5, 6, 7, 8]);
    }
}
