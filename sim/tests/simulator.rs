//! The simulator's own guarantees: one seed replays one trace byte for byte, a short
//! campaign of the real engine passes with its faults firing, and the harness can fail —
//! each planted server defect is caught within 200 seeds of the `default` profile, by a
//! failing seed or, for a defect that only blinds the harness, by probe accounting.

use sync_sim::campaign::{
    parse_defect, run_campaign, summarize, CampaignConfig, DEFECT_NAMES, PROBE_ACCOUNTING_SEEDS_MIN,
};
use sync_sim::kernel::probes::Probe;
use sync_sim::profile::Profile;
use sync_sim::server::ServerDefects;
use sync_sim::world::{run_seed, RunOptions};

#[test]
fn the_same_seed_gives_the_same_trace_hash() {
    for seed in 0..4 {
        let first = run_seed(seed, Profile::Lite, &RunOptions::default());
        let second = run_seed(seed, Profile::Lite, &RunOptions::default());
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed} is not deterministic"
        );
        assert_eq!(first.events, second.events);
        assert!(first.events > 0);
    }
    let a = run_seed(1, Profile::Lite, &RunOptions::default());
    let b = run_seed(2, Profile::Lite, &RunOptions::default());
    assert_ne!(
        a.trace_hash, b.trace_hash,
        "different seeds must explore different runs"
    );
}

// Proves the whole trace carries a state line per device (and the event log its events)
// without changing the hash: a seed hashes the same whether or not its trace is kept.
#[test]
fn state_lines_are_kept_with_the_trace_and_leave_the_hash_alone() {
    let plain = run_seed(3, Profile::Lite, &RunOptions::default());
    let kept = run_seed(
        3,
        Profile::Lite,
        &RunOptions {
            keep_trace: true,
            ..RunOptions::default()
        },
    );
    assert_eq!(plain.trace_hash, kept.trace_hash);
    assert_eq!(plain.recent_events, kept.recent_events);
    assert!(plain.trace.is_empty());
    assert!(plain.event_log.is_empty());
    for device in 0..kept.knobs.devices {
        let prefix = format!(" state d{device} gen=");
        let line = kept
            .trace
            .iter()
            .find(|line| line.contains(&prefix))
            .unwrap_or_else(|| panic!("no state line of d{device}"));
        assert!(
            line.contains(" q=") && line.contains(" cur=Space:"),
            "{line}"
        );
    }
    assert!(kept
        .event_log
        .iter()
        .any(|event| event.lane == "server" && event.request_id.is_some()));
}

// Proves probe accounting fails a campaign of at least 200 seeds in which an expected
// probe never fired, and only then: not for fewer seeds, not for a probe nobody expects.
#[test]
fn a_campaign_fails_when_an_expected_probe_never_fired() {
    let report = run_seed(0, Profile::Lite, &RunOptions::default());
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert!(report.probes.get(&Probe::SyncByAppOpen) > Some(&0));
    let expected = Profile::Default.expected_probes(false);
    let campaign = |seeds: u64, reached: &dyn Fn(Probe) -> bool| {
        let reports: Vec<_> = (0..seeds)
            .map(|seed| {
                let mut report = report.clone();
                report.seed = seed;
                report.probes = Probe::ALL
                    .into_iter()
                    .filter(|probe| reached(*probe))
                    .map(|probe| (probe, 1))
                    .collect();
                report
            })
            .collect();
        summarize(
            Profile::Default,
            &ServerDefects::default(),
            false,
            &Default::default(),
            &reports,
            1.0,
        )
    };
    let all = campaign(PROBE_ACCOUNTING_SEEDS_MIN, &|_| true);
    assert!(
        all.probes_never_reached.is_empty(),
        "{:?}",
        all.probes_never_reached
    );
    assert_eq!(all.probes[&Probe::ConflictStored].seeds_reached, 200);
    let blind = campaign(PROBE_ACCOUNTING_SEEDS_MIN, &|probe| {
        probe != Probe::PageSplitsCommit && probe != Probe::OpFailedPermanently
    });
    assert!(expected.contains(&Probe::PageSplitsCommit));
    assert!(!expected.contains(&Probe::OpFailedPermanently));
    assert_eq!(blind.probes_never_reached, vec![Probe::PageSplitsCommit]);
    assert!(!blind.passed());
    let short = campaign(PROBE_ACCOUNTING_SEEDS_MIN - 1, &|_| false);
    assert!(short.probes_never_reached.is_empty());
}

#[test]
fn a_short_campaign_of_the_real_engine_passes_and_its_faults_fire() {
    let reports: Vec<_> = (0..12)
        .map(|seed| run_seed(seed, Profile::Lite, &RunOptions::default()))
        .collect();
    for report in &reports {
        assert!(
            report.failure.is_none(),
            "seed {} failed: {:?}",
            report.seed,
            report.failure
        );
    }
    let summary = summarize(
        Profile::Lite,
        &ServerDefects::default(),
        false,
        &Default::default(),
        &reports,
        1.0,
    );
    assert!(summary.acknowledged_writes > 0);
    assert!(
        summary.never_fired.is_empty(),
        "configured but never fired: {:?}",
        summary.never_fired
    );
    let fired: u64 = summary.faults.values().map(|tally| tally.fired).sum();
    assert!(fired > 0);
}

/// Planted defects that break no invariant and only keep the harness away from a code
/// path: a campaign catches them by its probe accounting, not by a failing seed.
const BLINDING_DEFECTS: [(&str, Probe); 1] =
    [("pages_end_at_commit_boundaries", Probe::PageSplitsCommit)];

/// Planted server defects that only malformed requests reveal: the simulated devices are
/// the real engine, which never sends one, so `syncsim conformance` catches these instead
/// (`sim/tests/conformance.rs` proves it).
const CONFORMANCE_ONLY_DEFECTS: [&str; 1] = ["apply_items_before_validating"];

#[test]
fn every_planted_defect_is_caught_within_200_default_seeds() {
    for name in DEFECT_NAMES {
        if CONFORMANCE_ONLY_DEFECTS.contains(name) {
            continue;
        }
        let defects = parse_defect(name).expect("known defect");
        if let Some((_, probe)) = BLINDING_DEFECTS.iter().find(|(blind, _)| blind == name) {
            let summary = run_campaign(
                &CampaignConfig {
                    seeds: 0..200,
                    profile: Profile::Default,
                    shard: (0, 1),
                    threads: std::thread::available_parallelism().map_or(2, usize::from),
                    progress: false,
                    defects,
                    safety_only: false,
                    classes_off: Default::default(),
                },
                &|_| {},
            );
            assert!(
                summary.failures.is_empty(),
                "{name}: {:?}",
                summary.failures
            );
            assert!(
                summary.probes_never_reached.contains(probe),
                "defect {name} left probe {} reachable",
                probe.name()
            );
            assert!(!summary.passed());
            eprintln!(
                "defect {name}: caught by probe accounting ({})",
                probe.name()
            );
            continue;
        }
        let caught = (0..200).find_map(|seed| {
            let report = run_seed(
                seed,
                Profile::Default,
                &RunOptions {
                    defects,
                    ..RunOptions::default()
                },
            );
            report.failure.map(|failure| (seed, failure))
        });
        let (seed, failure) = caught.unwrap_or_else(|| panic!("defect {name} survived 200 seeds"));
        eprintln!(
            "defect {name}: caught at seed {seed}: {:?} {}",
            failure.kind, failure.message
        );
    }
}

/// Regression: a newer server version pulled while a record's conflict was open left the
/// conflict's server side stale, so "use server" adopted an old version and the device
/// silently diverged (found by CI on `lite` seed 123). An open conflict now follows the
/// server's newest version.
#[test]
fn lite_seed_123_use_server_after_a_newer_pull_converges() {
    let report = run_seed(123, Profile::Lite, &RunOptions::default());
    assert!(report.failure.is_none(), "{:?}", report.failure);
}
