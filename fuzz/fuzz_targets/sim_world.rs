//! A whole simulated world (devices, reference server, faulty network) with fuzzer-chosen knobs.
//! The body and its properties: `sync_sim::fuzzing::sim_world`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_sim::fuzzing::sim_world(data));
