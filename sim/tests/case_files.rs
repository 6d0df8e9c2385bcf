//! Case files replay their run: a case recorded from a seed replays with the seed's own
//! trace hash, also after a trip through JSON; a case that leaves actions or faults out
//! replays another run, and the same one each time; a case replays the same failure.

use sync_sim::case::Case;
use sync_sim::profile::{Knobs, Profile};
use sync_sim::world::{run_seed, ActionStream, KeptSet, RunOptions};

/// A `lite` seed whose knobs switch on several fault classes that fire.
const SEED: u64 = 2;

#[test]
fn a_recorded_case_replays_with_the_seeds_trace_hash() {
    let seed_run = run_seed(SEED, Profile::Lite, &RunOptions::default());
    let (case, recorded) = Case::record(SEED, Knobs::derive(SEED, Profile::Lite), &[], false);
    assert_eq!(
        recorded.trace_hash, seed_run.trace_hash,
        "recording changed the run"
    );
    assert!(case.actions.len() > 10, "{} actions", case.actions.len());
    assert!(case.faults.len() > 3, "{} faults", case.faults.len());
    let case = Case::parse(&case.to_json()).expect("a recorded case parses");
    let replay = case.replay(false);
    assert_eq!(replay.trace_hash, seed_run.trace_hash);
    assert_eq!(replay.events, seed_run.events);
    assert_eq!(case.recorded.trace_hash, seed_run.trace_hash);
    assert!(case.actions_replayed_otherwise(&replay).is_empty());
    let recording = replay.recording.expect("a replay records");
    assert_eq!(recording.actions, case.actions);
    assert_eq!(recording.faults, case.faults);
}

// Proves the kept set steers the run: without its faults, or without half its actions, a
// case runs another world, the same one twice, and its actions keep their kinds and
// sub-seeds (the numbering holds).
#[test]
fn leaving_actions_or_faults_out_replays_another_run_deterministically() {
    let (case, _) = Case::record(SEED, Knobs::derive(SEED, Profile::Lite), &[], false);
    let full = case.kept();
    let without_faults = KeptSet {
        faults: Default::default(),
        ..full.clone()
    };
    let first = case.run_kept(without_faults.clone(), false);
    let second = case.run_kept(without_faults, false);
    assert_ne!(first.trace_hash, case.recorded.trace_hash);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert!(first.recording.expect("recorded").faults.is_empty());
    let half = KeptSet {
        actions: full.actions.iter().copied().step_by(2).collect(),
        ..full
    };
    let halved = case.run_kept(half.clone(), false);
    assert_ne!(halved.trace_hash, case.recorded.trace_hash);
    let acted = halved.recording.expect("recorded").actions;
    assert!(!acted.is_empty());
    for action in &acted {
        assert!(
            half.actions.contains(&action.id()),
            "{action:?} was left out"
        );
        let original = case
            .actions
            .iter()
            .find(|listed| listed.id() == action.id())
            .expect("an action of the case");
        assert_eq!(action.kind, original.kind);
        assert_eq!(action.sub_seed, original.sub_seed);
    }
}

// Proves a `sim_world` fuzz input becomes the case of the very run the target makes of
// it: the case's seed is the input's, and the fuzz run (which records nothing) has the
// case's trace hash, so a crash replays through `syncsim replay --case`.
#[test]
fn a_sim_world_input_becomes_the_case_of_its_run() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/sim_world/kills_and_clock_jumps.json"
    );
    let bytes = std::fs::read(path).expect("a corpus file");
    let input: sync_sim::fuzzing::WorldInput =
        serde_json::from_slice(&bytes).expect("a sim_world input");
    let case = sync_sim::fuzzing::sim_world_case(&bytes).expect("a case");
    assert_eq!(case.seed, input.seed);
    let fuzz_run =
        sync_sim::world::run_seed_with_knobs(case.seed, case.knobs.clone(), &RunOptions::default());
    assert_eq!(fuzz_run.trace_hash, case.recorded.trace_hash);
    assert_eq!(case.replay(false).trace_hash, case.recorded.trace_hash);
    let from_raw_bytes = sync_sim::fuzzing::sim_world_case(&[7; 64]).expect("any bytes");
    assert_eq!(
        from_raw_bytes.replay(false).trace_hash,
        from_raw_bytes.recorded.trace_hash
    );
}

// Proves a device the case leaves out never opens, while the other devices' actions keep
// their kinds and sub-seeds.
#[test]
fn a_device_left_out_never_opens() {
    let (case, _) = Case::record(SEED, Knobs::derive(SEED, Profile::Lite), &[], false);
    let mut without_d1 = case.clone();
    without_d1.absent_devices.insert(1);
    without_d1.actions.retain(|action| action.device != "d1");
    let report = without_d1.run_kept(without_d1.kept(), true);
    assert!(
        !report.trace.iter().any(|line| line.contains("d1 open")),
        "d1 opened"
    );
    assert!(report.trace.iter().any(|line| line.contains("d0 open")));
    let acted = report.recording.expect("recorded").actions;
    assert!(!acted.is_empty());
    for action in &acted {
        assert_ne!(action.device, "d1");
        assert!(case.actions.contains(action) || action.stream == ActionStream::InFlight);
    }
}

// Proves a case whose listed actions no longer match the draws (recorded by another
// version, or knobs edited by hand) is told apart from a faithful one.
#[test]
fn a_case_that_no_longer_matches_its_draws_is_noticed() {
    let (case, _) = Case::record(SEED, Knobs::derive(SEED, Profile::Lite), &[], false);
    assert!(case
        .actions_replayed_otherwise(&case.replay(false))
        .is_empty());
    let mut stale = case.clone();
    stale.actions[3].sub_seed ^= 1;
    stale.actions[5].kind = "Wipe".to_owned();
    let otherwise = stale.actions_replayed_otherwise(&stale.replay(false));
    assert_eq!(
        otherwise,
        vec![stale.actions[3].clone(), stale.actions[5].clone()]
    );
}
