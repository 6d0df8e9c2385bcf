//! An engine with local writes fed hostile push results and pull pages.
//! The body and its properties: `sync_sim::fuzzing::engine_merge`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_sim::fuzzing::engine_merge(data));
