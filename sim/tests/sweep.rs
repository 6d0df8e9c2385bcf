//! `syncsim sweep` (kills at every transaction boundary): a small workload killed once at
//! each distinct boundary reopens, converges and keeps every invariant; both sides of
//! every commit are boundaries; a write whose record and queued op commit apart (the
//! planted `split_local_write`) is found at the commit between them, and the replay of
//! that one kill fails the same way.

use sync_engine::CrashPoint;
use sync_sim::profile::Profile;
use sync_sim::server::{Defect, ServerDefects};
use sync_sim::sweep::{distinct_kills, run_once, run_sweep, SweepConfig};

/// A lite world shortened to 20 s of user actions: a few writes, pushes and paged pulls.
fn small_workload(defects: ServerDefects) -> SweepConfig {
    SweepConfig {
        seed: 2,
        profile: Profile::Lite,
        defects,
        threads: 2,
        safety_ms: Some(20_000),
    }
}

#[test]
fn a_small_sweep_kills_at_every_distinct_boundary_and_passes() {
    let config = small_workload(ServerDefects::default());
    let baseline = run_once(&config, None, false);
    assert!(baseline.failure.is_none(), "{:?}", baseline.failure);
    let before = baseline
        .boundaries
        .iter()
        .filter(|boundary| boundary.point == CrashPoint::BeforeCommit)
        .count();
    assert_eq!(
        before * 2,
        baseline.boundaries.len(),
        "both sides of every commit"
    );
    assert!(baseline.acknowledged_writes > 0);

    let summary = run_sweep(&config, &|_, _| {});
    assert!(summary.failure.is_none(), "{:?}", summary.failure);
    assert_eq!(summary.boundaries, baseline.boundaries.len() as u64);
    assert_eq!(
        summary.kills_run,
        distinct_kills(&baseline.boundaries).len() as u64
    );
    assert!(
        summary.kills_run > before as u64,
        "some after-commit sides ran too"
    );
    for site in ["local_write", "mark_sending", "push_results", "pull_page"] {
        assert!(
            summary.per_site.contains_key(site),
            "{site}: {:?}",
            summary.per_site
        );
    }
}

#[test]
fn the_sweep_finds_a_write_that_commits_its_record_and_op_apart() {
    let config = small_workload(ServerDefects::planting([Defect::SplitLocalWrite]));
    let summary = run_sweep(&config, &|_, _| {});
    let failure = summary.failure.expect("the split write is found");
    assert_eq!(
        (failure.point, failure.site),
        ("before_commit", "local_write")
    );
    assert!(
        failure.replay.ends_with(&format!(
            "sweep --seed 2 --profile lite --boundary {} --safety-ms 20000 --defect split_local_write",
            failure.boundary
        )),
        "{}",
        failure.replay
    );

    let replay = run_once(&config, Some(failure.boundary), false);
    assert_eq!(
        replay.killed.map(|boundary| boundary.number),
        Some(failure.boundary)
    );
    assert_eq!(
        replay.failure.map(|failure| failure.message),
        Some(failure.message)
    );
}
