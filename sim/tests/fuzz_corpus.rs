//! The fuzz targets on stable: every target body of `sync_sim::fuzzing` runs over its
//! checked-in corpus (`fuzz/corpus/TARGET/`, which also holds the regression inputs of
//! crashes found by campaigns) and over a few thousand inputs from a fixed-seed byte
//! generator, some fresh and some mutated from the corpus. A failure names the input, and
//! `cargo +nightly fuzz run TARGET FILE` replays it under libFuzzer (see fuzz/README.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use sync_sim::fuzzing;

/// SplitMix64: the same stream on every machine, so generated inputs are reproducible.
struct Bytes {
    state: u64,
}

impl Bytes {
    fn new(seed: u64) -> Bytes {
        Bytes { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    fn fill(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// A corpus input with a few bytes flipped, inserted or removed.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = if out.is_empty() {
                0
            } else {
                self.below(out.len())
            };
            match self.below(3) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 => out.insert(at, self.next_u64() as u8),
                _ if !out.is_empty() => {
                    out.remove(at);
                }
                _ => out.push(self.next_u64() as u8),
            }
        }
        out
    }
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("corpus {}: {error}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("read corpus file");
            (path, data)
        })
        .collect()
}

/// Runs `body` on one input; a panic is reported with the input's name and bytes.
fn run_one(target: &str, name: &str, data: &[u8], body: fn(&[u8])) {
    if catch_unwind(AssertUnwindSafe(|| body(data))).is_err() {
        panic!(
            "fuzz target {target} failed on {name} ({} bytes): {}",
            data.len(),
            if data.is_ascii() {
                String::from_utf8_lossy(data).into_owned()
            } else {
                format!("{data:?}")
            }
        );
    }
}

/// The corpus, then `generated` fresh inputs of up to `len_max` bytes, then one mutant of
/// each corpus file per `mutants` round.
fn check(target: &str, body: fn(&[u8]), generated: usize, len_max: usize, mutants: usize) {
    let corpus = corpus(target);
    for (path, data) in &corpus {
        run_one(target, &path.display().to_string(), data, body);
    }
    let mut bytes = Bytes::new(0x5EED ^ target.len() as u64);
    for index in 0..generated {
        let len = bytes.below(len_max + 1);
        let data = bytes.fill(len);
        run_one(target, &format!("generated input {index}"), &data, body);
    }
    for round in 0..mutants {
        for (path, data) in &corpus {
            let mutant = bytes.mutate(data);
            let name = format!("mutant {round} of {}", path.display());
            run_one(target, &name, &mutant, body);
        }
    }
}

#[test]
fn server_push_survives_its_corpus_and_generated_inputs() {
    check("server_push", fuzzing::server_push, 3000, 600, 60);
}

#[test]
fn server_pull_survives_its_corpus_and_generated_inputs() {
    check("server_pull", fuzzing::server_pull, 2000, 600, 60);
}

#[test]
fn engine_merge_survives_its_corpus_and_generated_inputs() {
    check("engine_merge", fuzzing::engine_merge, 1000, 800, 30);
}

#[test]
fn conflict_policy_survives_its_corpus_and_generated_inputs() {
    check("conflict_policy", fuzzing::conflict_policy, 4000, 64, 100);
}

#[test]
fn sim_world_survives_its_corpus_and_generated_inputs() {
    check("sim_world", fuzzing::sim_world, 40, 96, 3);
}

/// A `.json` corpus file is read as JSON only if it fits the target's input type; one that
/// does not would silently become arbitrary bytes, so a typo must fail here instead.
#[test]
fn json_corpus_files_fit_their_targets() {
    fn fits<T: serde::de::DeserializeOwned>(target: &str) {
        for (path, data) in corpus(target) {
            if path
                .extension()
                .is_some_and(|extension| extension == "json")
            {
                if let Err(error) = serde_json::from_slice::<T>(&data) {
                    panic!("{} does not fit {target}: {error}", path.display());
                }
            }
        }
    }
    fits::<serde_json::Value>("server_push");
    fits::<fuzzing::ServerPullInput>("server_pull");
    fits::<fuzzing::EngineMergeInput>("engine_merge");
    fits::<fuzzing::ConflictPolicyInput>("conflict_policy");
    fits::<fuzzing::WorldInput>("sim_world");
}

/// Runs one corpus file of `target` (the named regression tests below).
fn replay(target: &str, file: &str, body: fn(&[u8])) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
        .join(file);
    let data = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    run_one(target, file, &data, body);
}

/// A push result whose `updatedAt` is `u64::MAX` was observed by the HLC, and the next
/// local write panicked with "HLC exhausted": a hostile server could crash the app.
#[test]
fn regression_hlc_exhausted_by_server_stamp() {
    replay(
        "engine_merge",
        "regression_hlc_exhausted_by_server_stamp.json",
        fuzzing::engine_merge,
    );
}

/// An update the server answered `NOT_FOUND` failed for good, and the repair pull that
/// followed (the server no longer listed the record) deleted the record while its failed
/// op still named it: a foreign-key error ended the sync as a storage error.
#[test]
fn regression_repair_forgets_record_with_failed_op() {
    replay(
        "engine_merge",
        "regression_repair_forgets_record_with_failed_op.json",
        fuzzing::engine_merge,
    );
}

/// The server refused the create of a record for good while an update of it waited in the
/// queue: the engine rightly drops the update (the record never reached the server), and
/// the harness, not knowing that rule, called the update lost.
#[test]
fn regression_refused_create_drops_later_writes() {
    replay(
        "engine_merge",
        "regression_refused_create_drops_later_writes.json",
        fuzzing::engine_merge,
    );
}

/// The same rule, reached another way (found by a 30-second CI fuzz campaign): the push
/// of the record's create alone was refused whole with `VALIDATION`, which the engine
/// takes as that op refused for good, and the harness, reading only per-op results,
/// called the waiting update lost.
#[test]
fn regression_create_refused_whole_drops_later_writes() {
    replay(
        "engine_merge",
        "regression_create_refused_whole_drops_later_writes.json",
        fuzzing::engine_merge,
    );
}

/// A successful push result with `version: 0` became the record's version, breaking the
/// engine's invariant that versions start at 1.
#[test]
fn regression_push_result_version_zero() {
    replay(
        "engine_merge",
        "regression_push_result_version_zero.json",
        fuzzing::engine_merge,
    );
}

/// A pulled row with `version: i64::MAX` was stored, and the next local update overflowed
/// `version + 1` (a panic in debug builds, a negative version in release).
#[test]
fn regression_pulled_version_max_overflows_update() {
    replay(
        "engine_merge",
        "regression_pulled_version_max_overflows_update.json",
        fuzzing::engine_merge,
    );
}

/// A `CONFLICT` result whose `serverVersion` is `i64::MAX` was stored, and resolving it
/// overflowed `server_version + 1`.
#[test]
fn regression_conflict_version_max_overflows_resolution() {
    replay(
        "engine_merge",
        "regression_conflict_version_max_overflows_resolution.json",
        fuzzing::engine_merge,
    );
}
