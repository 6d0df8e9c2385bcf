//! The fault model's dice and its ledger: one random stream per fault class, the rate of
//! each class for this run, and the count of every fault that actually fired.
//!
//! Each class draws only from its own stream (whether it fires, and its parameters: how
//! long a partition lasts, how late an answer comes), so switching one class off — or
//! setting its rate to zero, which draws nothing — leaves every other class and the
//! workload exactly as they were. This module decides; it never acts on the world.

use crate::profile::{FaultClass, Knobs};
use crate::rng::{Ratio, SimRng};
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Faults {
    /// False once the liveness phase starts (or in a clean scripted run).
    on: bool,
    rates: BTreeMap<FaultClass, Ratio>,
    streams: BTreeMap<FaultClass, SimRng>,
    fired: BTreeMap<FaultClass, u64>,
}

impl Faults {
    pub fn new(seed: u64, knobs: &Knobs) -> Faults {
        Faults {
            on: true,
            rates: knobs.faults.clone(),
            streams: FaultClass::ALL
                .into_iter()
                .map(|class| (class, SimRng::for_fault(seed, class)))
                .collect(),
            fired: BTreeMap::new(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    pub fn set_on(&mut self, on: bool) {
        self.on = on;
    }

    pub fn rate(&self, class: FaultClass) -> Ratio {
        self.rates.get(&class).copied().unwrap_or(Ratio::ZERO)
    }

    /// Whether `class` fires now; counted in the ledger when it does.
    pub fn hit(&mut self, class: FaultClass) -> bool {
        let rate = self.rate(class);
        if !self.on || rate.is_zero() {
            return false;
        }
        let hit = self.stream(class).chance(rate);
        if hit {
            self.count(class);
        }
        hit
    }

    /// The class's own stream, for the parameters of a fault that fired.
    pub fn stream(&mut self, class: FaultClass) -> &mut SimRng {
        self.streams
            .get_mut(&class)
            .expect("every class has a stream")
    }

    /// Counts a fault the world decided elsewhere (a crash point the hook fired).
    pub fn count(&mut self, class: FaultClass) {
        *self.fired.entry(class).or_insert(0) += 1;
    }

    pub fn ledger(&self) -> &BTreeMap<FaultClass, u64> {
        &self.fired
    }
}
