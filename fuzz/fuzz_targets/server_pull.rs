//! Paging with arbitrary cursors and limits over arbitrary pushes.
//! The body and its properties: `sync_sim::fuzzing::server_pull`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sync_sim::fuzzing::server_pull(data));
