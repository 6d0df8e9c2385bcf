//! Seeded randomness for the simulator: one ChaCha stream per subsystem.
//!
//! Every subsystem (workload, network latency, restarts, the scheduler, each device's clock,
//! each fault class) draws from its own stream of the same seed, so switching one fault
//! class off does not reshuffle the workload or the other faults. Nothing here reads OS
//! randomness.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Stream numbers; device clocks use `DeviceClockBase + device index`, fault classes
/// `FaultClassBase + class index` (see [`SimRng::for_fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Knobs = 1,
    /// The simulated user's choices (one sub-stream per action, see `world.rs`).
    Workload = 2,
    /// Request latencies: never whether a fault fires.
    Network = 3,
    /// When the next user action of a device comes.
    Scheduler = 5,
    /// How the simulated user answers conflicts in the liveness phase.
    Resolutions = 7,
    /// How long a killed app stays dead.
    Restarts = 8,
    /// The tenant ids of a world drawn to collide (`world/tenants.rs`).
    Tenants = 9,
    /// Which requests get a user action while on the wire, and which (`world/inflight.rs`).
    InFlight = 10,
    DeviceClockBase = 100,
    FaultClassBase = 200,
}

/// A probability as a ratio `numerator / denominator` (TigerBeetle style: no floats).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields)]
pub struct Ratio {
    pub numerator: u64,
    pub denominator: u64,
}

impl Ratio {
    pub const ZERO: Ratio = Ratio {
        numerator: 0,
        denominator: 1,
    };

    pub fn new(numerator: u64, denominator: u64) -> Ratio {
        assert!(denominator > 0);
        assert!(numerator <= denominator);
        Ratio {
            numerator,
            denominator,
        }
    }

    pub fn is_zero(self) -> bool {
        self.numerator == 0
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

/// One subsystem's deterministic random stream.
#[derive(Clone, Debug)]
pub struct SimRng {
    inner: ChaCha8Rng,
}

impl SimRng {
    pub fn new(seed: u64, stream: u64) -> SimRng {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(stream);
        SimRng { inner }
    }

    pub fn for_stream(seed: u64, stream: Stream) -> SimRng {
        SimRng::new(seed, stream as u64)
    }

    /// The stream of one fault class: whether it fires and how (durations, delays).
    pub fn for_fault(seed: u64, class: crate::profile::FaultClass) -> SimRng {
        SimRng::new(seed, Stream::FaultClassBase as u64 + class as u64)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high);
        let span = high - low;
        if span == u64::MAX {
            return self.next_u64();
        }
        low + self.next_u64() % (span + 1)
    }

    pub fn index(&mut self, len: usize) -> usize {
        assert!(len > 0);
        (self.next_u64() % len as u64) as usize
    }

    pub fn chance(&mut self, ratio: Ratio) -> bool {
        ratio.numerator > 0 && self.next_u64() % ratio.denominator < ratio.numerator
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }

    /// An index drawn with the given weights (at least one positive).
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        assert!(total > 0);
        let mut pick = self.next_u64() % total;
        for (index, &weight) in weights.iter().enumerate() {
            if pick < weight {
                return index;
            }
            pick -= weight;
        }
        unreachable!("pick < total")
    }
}

impl sync_engine::Entropy for SimRng {
    fn next_u64(&mut self) -> u64 {
        SimRng::next_u64(self)
    }
}

#[cfg(test)]
mod tests {
    //! Streams are reproducible and independent of each other.
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let mut a = SimRng::for_stream(7, Stream::Network);
        let mut b = SimRng::for_stream(7, Stream::Network);
        let mut c = SimRng::for_stream(7, Stream::Restarts);
        let a_values: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let b_values: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let c_values: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(a_values, b_values);
        assert_ne!(a_values, c_values);
    }

    #[test]
    fn chance_respects_zero_and_one() {
        let mut rng = SimRng::new(1, 1);
        assert!((0..100).all(|_| !rng.chance(Ratio::ZERO)));
        assert!((0..100).all(|_| rng.chance(Ratio::new(1, 1))));
    }
}
