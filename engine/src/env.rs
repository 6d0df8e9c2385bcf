//! The injected environment: the only way time and randomness enter the engine.
//!
//! The engine never reads the system clock or OS randomness (see `clippy.toml`). An app
//! passes [`Env::system`](crate::system_env) in; the simulator passes a virtual clock
//! that may drift and jump backwards, and a seeded entropy stream, so that one seed
//! replays one run byte for byte.

use std::sync::atomic::Ordering;

/// Wall-clock milliseconds since the Unix epoch, as the device believes them.
///
/// Nothing is promised about the values: they may stand still, jump forwards, or run
/// backwards. The engine turns them into monotonic stamps with its hybrid logical clock.
///
/// `Send`, like everything an [`Engine`](crate::Engine) holds: an app may move its engine
/// to a sync thread or a task.
pub trait Clock: Send {
    fn now_ms(&self) -> u64;
}

/// A source of random 64-bit words (seeded in simulation, OS-backed in apps).
pub trait Entropy: Send {
    fn next_u64(&mut self) -> u64;
}

/// Clock and entropy, passed to [`Engine::open`](crate::Engine::open).
pub struct Env {
    pub clock: Box<dyn Clock>,
    pub entropy: Box<dyn Entropy>,
}

impl Env {
    pub fn new(clock: impl Clock + 'static, entropy: impl Entropy + 'static) -> Env {
        Env {
            clock: Box::new(clock),
            entropy: Box::new(entropy),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.entropy.next_u64()
    }
}

/// A clock that returns whatever was last stored in it; shared by clones (also across
/// threads).
///
/// Tests and the simulator move it by hand, forwards or backwards.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock {
            now_ms: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(now_ms)),
        }
    }

    pub fn set_ms(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn advance_ms(&self, delta_ms: u64) {
        self.now_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

/// SplitMix64: a small, fast, seedable generator for tests and apps that pass a seed.
///
/// It is not cryptographic; ids need uniqueness, not secrecy.
#[derive(Clone, Debug)]
pub struct SeededEntropy {
    state: u64,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy { state: seed }
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
