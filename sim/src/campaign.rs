//! Campaigns: many seeds, sharded across machines and threads, summarised for CI.
//!
//! Seeds are independent worlds, so they run on a small thread pool; results are sorted
//! by seed, so a campaign's report does not depend on scheduling. `--shard I/N` keeps the
//! seeds with `seed % N == I`: N machines together run exactly the seeds of one run. The
//! only wall-clock readings in the simulator are here, to report throughput, and in the
//! progress bar (indicatif), which only ever writes to stderr.

use crate::kernel::probes::Probe;
use crate::profile::{FaultClass, Profile};
use crate::server::{Defect, ServerDefects};
use crate::signature::Signature;
use crate::world::{run_seed, FailureKind, RunOptions, SeedReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Clone, Debug)]
pub struct CampaignConfig {
    pub seeds: std::ops::Range<u64>,
    pub profile: Profile,
    /// (index, count): run only seeds with `seed % count == index`.
    pub shard: (u64, u64),
    pub threads: usize,
    /// Draw a progress bar with an ETA on stderr. indicatif draws it only when stderr is a
    /// terminal, so logs and CI output never hold bar frames.
    pub progress: bool,
    /// Planted server defects (harness self-tests); off in real campaigns.
    pub defects: ServerDefects,
    /// Faults never stop; only safety invariants are checked (`--safety-only`).
    pub safety_only: bool,
    /// Fault classes switched off in every seed (`--without`). Probes are not accounted
    /// then: a path a class opens may stay closed.
    pub classes_off: BTreeSet<FaultClass>,
}

/// A campaign of at least this many seeds fails when a probe its profile is meant to
/// reach never fired: fewer seeds may miss a rare path by chance.
pub const PROBE_ACCOUNTING_SEEDS_MIN: u64 = 200;

#[derive(Clone, Debug, Serialize)]
pub struct FailureSummary {
    pub seed: u64,
    pub kind: FailureKind,
    pub message: String,
    pub signature: Signature,
    pub replay: String,
}

/// The failures that share one signature: one line of the summary per bug.
#[derive(Clone, Debug, Serialize)]
pub struct FailureGroup {
    #[serde(flatten)]
    pub signature: Signature,
    pub count: u64,
    pub smallest_seed: u64,
    /// The replay command of the smallest seed.
    pub replay: String,
    pub seeds: Vec<u64>,
}

/// Groups failures by signature: the largest group first, ties by smallest seed.
pub fn group_failures(failures: &[FailureSummary]) -> Vec<FailureGroup> {
    let mut groups: BTreeMap<&Signature, Vec<&FailureSummary>> = BTreeMap::new();
    for failure in failures {
        groups.entry(&failure.signature).or_default().push(failure);
    }
    let mut groups: Vec<FailureGroup> = groups
        .into_iter()
        .map(|(signature, members)| {
            let smallest = members
                .iter()
                .min_by_key(|failure| failure.seed)
                .expect("a group has a member");
            let mut seeds: Vec<u64> = members.iter().map(|failure| failure.seed).collect();
            seeds.sort_unstable();
            FailureGroup {
                signature: signature.clone(),
                count: members.len() as u64,
                smallest_seed: smallest.seed,
                replay: smallest.replay.clone(),
                seeds,
            }
        })
        .collect();
    groups.sort_by_key(|group| (std::cmp::Reverse(group.count), group.smallest_seed));
    groups
}

/// The campaign summary (`--json`).
#[derive(Clone, Debug, Serialize)]
pub struct CampaignSummary {
    pub profile: Profile,
    pub seeds_run: u64,
    pub failures: Vec<FailureSummary>,
    /// The failures grouped by signature (kind, invariant, operation).
    pub groups: Vec<FailureGroup>,
    pub seeds_per_second: f64,
    pub virtual_wall_ratio: f64,
    pub wall_seconds: f64,
    pub events: u64,
    pub invariant_checks: u64,
    pub acknowledged_writes: u64,
    pub conflicts_stored: u64,
    /// Per fault class: seeds that enabled it, and how often it fired.
    pub faults: BTreeMap<FaultClass, FaultTally>,
    pub crash_points_fired: BTreeMap<String, u64>,
    /// Fault classes enabled in some seed that never fired: a campaign failure.
    pub never_fired: Vec<FaultClass>,
    pub safety_only: bool,
    /// Every code-path probe: whether the profile is meant to reach it, in how many seeds
    /// it fired, and how often.
    pub probes: BTreeMap<Probe, ProbeTally>,
    /// Probes the profile is meant to reach that never fired in a campaign of at least
    /// [`PROBE_ACCOUNTING_SEEDS_MIN`] seeds: a campaign failure.
    pub probes_never_reached: Vec<Probe>,
    /// The longest virtual time any seed had to converge on its own (ms).
    pub liveness_bound_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProbeTally {
    pub expected: bool,
    pub seeds_reached: u64,
    pub hits: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FaultTally {
    pub seeds_enabled: u64,
    pub fired: u64,
}

impl CampaignSummary {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
            && self.never_fired.is_empty()
            && self.probes_never_reached.is_empty()
    }
}

pub fn replay_command(
    seed: u64,
    profile: Profile,
    defects: &ServerDefects,
    safety_only: bool,
    classes_off: &BTreeSet<FaultClass>,
) -> String {
    let mut command = format!(
        "cargo run --release -p sync-sim -- replay {seed} --profile {}",
        profile.name()
    );
    if safety_only {
        command.push_str(" --safety-only");
    }
    for name in defect_names(defects) {
        command.push_str(" --defect ");
        command.push_str(name);
    }
    for class in classes_off {
        command.push_str(" --without ");
        command.push_str(class.name());
    }
    command
}

/// Seconds since an arbitrary origin, from the real clock (throughput reporting only).
#[allow(clippy::disallowed_methods)]
pub fn wall_seconds_since(origin: &std::time::Instant) -> f64 {
    origin.elapsed().as_secs_f64()
}

#[allow(clippy::disallowed_methods)]
fn wall_origin() -> std::time::Instant {
    std::time::Instant::now()
}

/// Runs the campaign; `on_failure` sees every failed seed's report as it finishes (in any
/// order), with the progress bar cleared, so what it prints to stderr does not tear the
/// bar.
pub fn run_campaign(
    config: &CampaignConfig,
    on_failure: &(dyn Fn(&SeedReport) + Sync),
) -> CampaignSummary {
    let seeds: Vec<u64> = config
        .seeds
        .clone()
        .filter(|seed| seed % config.shard.1 == config.shard.0)
        .collect();
    let origin = wall_origin();
    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::with_capacity(seeds.len()));
    let bar = progress_bar(config.progress, seeds.len() as u64);
    std::thread::scope(|scope| {
        for _ in 0..config.threads.max(1) {
            scope.spawn(|| loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(position) else {
                    break;
                };
                let options = RunOptions {
                    defects: config.defects,
                    safety_only: config.safety_only,
                    classes_off: config.classes_off.clone(),
                    ..RunOptions::default()
                };
                let report = run_seed(seed, config.profile, &options);
                if report.failure.is_some() {
                    // Suspended rather than `println`: a hidden bar drops `println` lines.
                    bar.suspend(|| on_failure(&report));
                }
                bar.inc(1);
                reports
                    .lock()
                    .expect("no panics hold the lock")
                    .push(report);
            });
        }
    });
    // Cleared rather than left standing: the summary that follows on stdout shares the
    // terminal line the bar ends on, and carries the same figures.
    bar.finish_and_clear();
    let wall_seconds = wall_seconds_since(&origin).max(1e-9);
    let mut reports = reports.into_inner().expect("no panics hold the lock");
    reports.sort_by_key(|report| report.seed);
    summarize(
        config.profile,
        &config.defects,
        config.safety_only,
        &config.classes_off,
        &reports,
        wall_seconds,
    )
}

/// A bar of `seeds` steps on stderr, or a hidden one when `progress` is off.
fn progress_bar(progress: bool, seeds: u64) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    // `stderr()` hides itself when stderr is not a terminal (a pipe, a file, CI).
    let bar = ProgressBar::with_draw_target(Some(seeds), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} seeds, {per_sec:1}, ETA {eta}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    if !bar.is_hidden() {
        // Big seeds take seconds each: a steady tick keeps the elapsed time and the ETA
        // moving between finished seeds.
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
    }
    bar
}

/// Folds seed reports into a campaign summary; `defects` (planted for the campaign) and
/// `classes_off` (switched off in it) go into every failure's replay command.
pub fn summarize(
    profile: Profile,
    defects: &ServerDefects,
    safety_only: bool,
    classes_off: &BTreeSet<FaultClass>,
    reports: &[SeedReport],
    wall_seconds: f64,
) -> CampaignSummary {
    let mut faults: BTreeMap<FaultClass, FaultTally> = BTreeMap::new();
    let mut crash_points_fired = BTreeMap::new();
    let mut virtual_ms = 0u64;
    for report in reports {
        virtual_ms += report.virtual_ms;
        for class in report.knobs.faults.keys() {
            faults.entry(*class).or_default().seeds_enabled += 1;
        }
        for (class, count) in &report.faults_fired {
            faults.entry(*class).or_default().fired += count;
        }
        for (point, count) in &report.crash_points_fired {
            *crash_points_fired.entry(point.clone()).or_insert(0) += count;
        }
    }
    let expected = profile.expected_probes(safety_only);
    let mut probes: BTreeMap<Probe, ProbeTally> = Probe::ALL
        .into_iter()
        .map(|probe| {
            let tally = ProbeTally {
                expected: expected.contains(&probe),
                ..ProbeTally::default()
            };
            (probe, tally)
        })
        .collect();
    for report in reports {
        for (probe, hits) in &report.probes {
            let tally = probes.entry(*probe).or_default();
            tally.seeds_reached += u64::from(*hits > 0);
            tally.hits += hits;
        }
    }
    let accounted = classes_off.is_empty();
    let probes_never_reached = if accounted && reports.len() as u64 >= PROBE_ACCOUNTING_SEEDS_MIN {
        probes
            .iter()
            .filter(|(_, tally)| tally.expected && tally.hits == 0)
            .map(|(probe, _)| *probe)
            .collect()
    } else {
        Vec::new()
    };
    let never_fired = faults
        .iter()
        .filter(|(_, tally)| tally.seeds_enabled > 0 && tally.fired == 0)
        .map(|(class, _)| *class)
        .collect();
    let failures: Vec<FailureSummary> = reports
        .iter()
        .filter_map(|report| {
            report.failure.as_ref().map(|failure| FailureSummary {
                seed: report.seed,
                kind: failure.kind,
                message: failure.message.clone(),
                signature: Signature::of(failure, &report.operation),
                replay: replay_command(report.seed, profile, defects, safety_only, classes_off),
            })
        })
        .collect();
    CampaignSummary {
        profile,
        seeds_run: reports.len() as u64,
        groups: group_failures(&failures),
        failures,
        seeds_per_second: reports.len() as f64 / wall_seconds,
        virtual_wall_ratio: virtual_ms as f64 / 1000.0 / wall_seconds,
        wall_seconds,
        events: reports.iter().map(|report| report.events).sum(),
        invariant_checks: reports.iter().map(|report| report.invariant_checks).sum(),
        acknowledged_writes: reports
            .iter()
            .map(|report| report.acknowledged_writes)
            .sum(),
        conflicts_stored: reports.iter().map(|report| report.conflicts_stored).sum(),
        faults,
        crash_points_fired,
        never_fired,
        safety_only,
        probes,
        probes_never_reached,
        liveness_bound_ms: reports
            .iter()
            .map(|report| report.liveness_bound.total_ms())
            .max()
            .unwrap_or(0),
    }
}

/// Parses a planted-defect name (`syncsim --defect NAME`).
pub fn parse_defect(name: &str) -> Option<ServerDefects> {
    Defect::parse(name).map(|defect| ServerDefects::planting([defect]))
}

/// The names of the defects planted in `defects`, in [`DEFECT_NAMES`] order.
pub fn defect_names(defects: &ServerDefects) -> Vec<&'static str> {
    defects.planted().into_iter().map(Defect::name).collect()
}

/// Every planted defect, by name.
pub const DEFECT_NAMES: &[&str] = Defect::NAMES;

#[cfg(test)]
mod tests {
    //! Defect names and the replay command agree, so a failing self-test campaign prints a
    //! command that replays the same planted server.
    use super::*;

    #[test]
    fn every_defect_name_round_trips_and_reaches_the_replay_command() {
        assert_eq!(
            DEFECT_NAMES,
            [
                "skip_op_id_dedupe",
                "wall_clock_cursor",
                "skip_tenant_check",
                "ignore_base_version",
                "drop_last_row_of_page",
                "discard_wal_on_open",
                "push_answer_overwrites_newer_edit",
                "lossy_tenant_file_name",
                "drop_leaves_wal",
                "retry_replaces_interval",
                "pages_end_at_commit_boundaries",
                "split_local_write",
                "accept_stale_answers",
                "fail_whole_batch",
                "accept_far_future_stamps",
                "hlc_reuses_observed_stamp",
                "conflict_on_same_batch_edit",
                "pull_overwrites_pending_edit",
                "advance_cursor_past_foreign_commits",
                "skip_pull_notifications",
                "storage_error_leaves_sync_stuck",
                "partial_batch_keeps_rolled_back_results",
                "forget_timed_out_requests",
                "insert_ignores_known_client_id",
                "omit_deleted_ids",
                "version_hash_counts_tombstones",
                "apply_items_before_validating",
                "trust_repeated_cursor",
                "same_version_keeps_local_data",
                "push_before_durable",
                "resync_keeps_missing_rows",
                "recovery_drops_pending_ops",
                "sync_without_lock",
                "clock_per_process",
            ]
        );
        for &name in DEFECT_NAMES {
            let defects = parse_defect(name).expect("a listed defect parses");
            assert_eq!(defect_names(&defects), vec![name]);
            let command = replay_command(7, Profile::Lite, &defects, false, &BTreeSet::new());
            assert!(
                command.ends_with(&format!("replay 7 --profile lite --defect {name}")),
                "{command}"
            );
        }
        let all = ServerDefects::planting(Defect::ALL.iter().copied());
        assert_eq!(defect_names(&all), DEFECT_NAMES.to_vec());
        assert!(!replay_command(
            7,
            Profile::Lite,
            &Default::default(),
            false,
            &BTreeSet::new()
        )
        .contains("--defect"));
        assert!(replay_command(
            7,
            Profile::Lite,
            &Default::default(),
            true,
            &BTreeSet::new()
        )
        .ends_with("replay 7 --profile lite --safety-only"));
        assert!(parse_defect("no_such_defect").is_none());
    }

    // Proves failures of one bug with different record ids, devices, tenants and numbers
    // make one group (counted, with its smallest seed's replay), apart from another bug.
    #[test]
    fn failures_group_by_signature() {
        let failure = |seed: u64, message: &str, operation: &str| {
            let failure = crate::kernel::violation(message.to_owned());
            FailureSummary {
                seed,
                kind: failure.kind,
                signature: Signature::of(&failure, operation),
                message: failure.message,
                replay: replay_command(
                    seed,
                    Profile::Lite,
                    &Default::default(),
                    false,
                    &BTreeSet::new(),
                ),
            }
        };
        let failures = [
            failure(
                9,
                "d1: read-your-writes: device 1 shows 018bd053-d878-7000-819f-741a05fe9b4f",
                "answer to syncPull",
            ),
            failure(
                4,
                "op 0192-aa of tenant t0 changed the server 2 times (exactly once expected)",
                "final checks",
            ),
            failure(
                5,
                "d0: read-your-writes: device 0 shows 018bcfda-8672-7000-82b6-88fe23e9f610",
                "answer to syncPull",
            ),
            failure(
                7,
                "d3: read-your-writes: device 3 shows 01b48afe-c38d-7000-810c-0b0adcc77360",
                "answer to syncPull",
            ),
        ];
        let groups = group_failures(&failures);
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[0].count, 3);
        assert_eq!(groups[0].seeds, vec![5, 7, 9]);
        assert_eq!(groups[0].smallest_seed, 5);
        assert_eq!(groups[0].signature.invariant, "read-your-writes");
        assert!(groups[0].replay.contains("replay 5 --profile lite"));
        assert_eq!(groups[1].count, 1);
        assert_eq!(groups[1].smallest_seed, 4);
        assert!(group_failures(&[]).is_empty());
        let json = serde_json::to_value(&groups[0]).expect("a group serializes");
        assert_eq!(json["invariant"], "read-your-writes");
        assert_eq!(json["operation"], "answer to syncPull");
        assert_eq!(json["count"], 3);
    }

    // Proves each defect name switches exactly its own field, and none is left without one.
    #[test]
    fn every_defect_switch_is_its_own_field() {
        // An exhaustive literal: a new field without a `Defect` stops this test compiling.
        let every = ServerDefects {
            skip_op_id_dedupe: true,
            wall_clock_cursor: true,
            skip_tenant_check: true,
            ignore_base_version: true,
            drop_last_row_of_page: true,
            discard_wal_on_open: true,
            push_answer_overwrites_newer_edit: true,
            lossy_tenant_file_name: true,
            drop_leaves_wal: true,
            retry_replaces_interval: true,
            pages_end_at_commit_boundaries: true,
            split_local_write: true,
            accept_stale_answers: true,
            fail_whole_batch: true,
            accept_far_future_stamps: true,
            hlc_reuses_observed_stamp: true,
            conflict_on_same_batch_edit: true,
            pull_overwrites_pending_edit: true,
            advance_cursor_past_foreign_commits: true,
            skip_pull_notifications: true,
            storage_error_leaves_sync_stuck: true,
            partial_batch_keeps_rolled_back_results: true,
            forget_timed_out_requests: true,
            insert_ignores_known_client_id: true,
            omit_deleted_ids: true,
            version_hash_counts_tombstones: true,
            apply_items_before_validating: true,
            trust_repeated_cursor: true,
            same_version_keeps_local_data: true,
            push_before_durable: true,
            resync_keeps_missing_rows: true,
            recovery_drops_pending_ops: true,
            sync_without_lock: true,
            clock_per_process: true,
        };
        assert_eq!(ServerDefects::planting(Defect::ALL.iter().copied()), every);
        assert_eq!(every.planted(), Defect::ALL.to_vec());
        assert!(ServerDefects::default().planted().is_empty());
        for &defect in Defect::ALL {
            let planted = ServerDefects::planting([defect]);
            assert_eq!(planted.planted(), vec![defect]);
            assert_ne!(planted, ServerDefects::default());
        }
    }
}
