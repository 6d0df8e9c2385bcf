//! The one module allowed to read the real clock and OS randomness.
//!
//! Apps that are not simulated build their [`Env`] here. Nothing else in the workspace
//! may call `SystemTime::now` or seed from the OS (`clippy.toml` bans it); the simulator
//! never uses this module.

use crate::env::{Clock, Entropy, Env, SeededEntropy};

/// The device's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now_ms(&self) -> u64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Entropy seeded once from the OS (via the standard library's randomly keyed hasher).
pub fn os_seeded_entropy() -> impl Entropy {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(SystemClock.now_ms());
    SeededEntropy::new(hasher.finish())
}

impl Env {
    /// The real clock and OS-seeded entropy, for apps that are not simulated.
    pub fn system() -> Env {
        Env::new(SystemClock, os_seeded_entropy())
    }
}
