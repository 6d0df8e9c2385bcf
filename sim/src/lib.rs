//! The simulator crate: a deterministic simulation harness for `sync-engine`.
//!
//! It runs copies of the real engine against an in-process reference server under seeded
//! faults and checks invariants. The reference server lives in [`server`]; it is the
//! oracle the engine is tested against, so it is deliberately simple, fully deterministic
//! (no clock, no randomness), and checks its own invariants.

pub mod campaign;
pub mod case;
pub mod determinism;
pub mod fuzzing;
#[cfg(feature = "http")]
pub mod http;
pub mod kernel;
pub mod oracle;
pub mod profile;
pub mod rng;
pub mod script;
pub mod server;
pub mod shrink;
pub mod signature;
pub mod sweep;
pub mod timeline;
pub mod world;
