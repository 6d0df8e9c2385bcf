//! The reference server under arbitrary and hostile push requests.
//! The body and its properties: `sync_sim::fuzzing::server_push`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_sim::fuzzing::server_push(data));
