//! Helpers for tests and examples: an engine on a temporary directory with a manual
//! clock and seeded entropy. Never used by the engine itself.

use crate::env::{Env, ManualClock, SeededEntropy};
use crate::registry::EntityRegistry;
use crate::tenant::{DbLocation, TenantId};
use crate::{Engine, EngineOptions};

/// The example entity types of the specification.
pub fn example_registry() -> EntityRegistry {
    EntityRegistry::with_defaults(&["Space", "Group", "Identity"]).expect("valid names")
}

/// 2023-11-14T22:13:20Z, a fixed starting point for manual clocks.
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// Opens `tenant` in a fresh temporary directory (removed when the `TempDir` drops).
pub fn open_temp_engine(tenant: &str) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let engine = open_engine_in(dir.path(), tenant, ManualClock::new(EPOCH_MS), 7);
    (dir, engine)
}

/// Opens `tenant` in `dir` with the given clock and entropy seed.
pub fn open_engine_in(
    dir: &std::path::Path,
    tenant: &str,
    clock: ManualClock,
    seed: u64,
) -> Engine {
    let options = EngineOptions::new(
        DbLocation::new(dir),
        TenantId::parse(tenant).expect("valid tenant id"),
        example_registry(),
    );
    Engine::open(options, Env::new(clock, SeededEntropy::new(seed))).expect("open engine")
}
