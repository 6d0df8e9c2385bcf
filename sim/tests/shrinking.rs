//! Shrinking keeps the failure: a planted defect's failing seed shrinks to a case with
//! fewer events that still fails with the same signature when replayed, and the same seed
//! shrinks to the same case each time.

use sync_sim::case::Case;
use sync_sim::profile::{Knobs, Profile};
use sync_sim::server::Defect;
use sync_sim::shrink::{shrink, FailureSignature};

/// A small budget keeps the test short; it is enough to shrink this seed a long way.
const RUNS_MAX: usize = 40;

fn shrunk_case(seed: u64, defect: Defect) -> (Case, sync_sim::shrink::Shrunk) {
    let (start, _) = Case::record(
        seed,
        Knobs::derive(seed, Profile::Default),
        &[defect],
        false,
    );
    let mut passes = Vec::new();
    let shrunk = shrink(start.clone(), RUNS_MAX, &mut |pass| {
        passes.push(pass.clone())
    })
    .expect("the seed fails");
    assert_eq!(passes, shrunk.passes);
    (start, shrunk)
}

#[test]
fn a_planted_defects_seed_shrinks_to_a_smaller_case_that_fails_the_same_way() {
    let (start, shrunk) = shrunk_case(0, Defect::SkipOpIdDedupe);
    let failure = start.recorded.failure.as_ref().expect("seed 0 fails");
    assert_eq!(shrunk.signature, FailureSignature::of(failure));
    let case = Case::parse(&shrunk.case.to_json()).expect("the shrunk case parses");
    assert!(case.recorded.events < start.recorded.events);
    assert!(case.actions.len() + case.faults.len() < start.actions.len() + start.faults.len());
    assert!(shrunk.runs <= RUNS_MAX);
    let replayed = case.replay(false);
    let replayed_failure = replayed.failure.as_ref().expect("the shrunk case fails");
    assert_eq!(FailureSignature::of(replayed_failure), shrunk.signature);
    assert_eq!(replayed.trace_hash, case.recorded.trace_hash);
    assert_eq!(replayed.events, case.recorded.events);
    let (_, again) = shrunk_case(0, Defect::SkipOpIdDedupe);
    assert_eq!(again.case, shrunk.case, "shrinking is deterministic");
}

#[test]
fn a_passing_seed_has_nothing_to_shrink() {
    let (start, _) = Case::record(0, Knobs::derive(0, Profile::Lite), &[], false);
    assert!(start.recorded.failure.is_none());
    let error = shrink(start, RUNS_MAX, &mut |_| {}).expect_err("nothing to shrink");
    assert!(error.contains("no failure to shrink"), "{error}");
}
