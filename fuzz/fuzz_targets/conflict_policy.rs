//! `decide` and `judge_pulled` against each other and the reference server.
//! The body and its properties: `sync_sim::fuzzing::conflict_policy`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_sim::fuzzing::conflict_policy(data));
