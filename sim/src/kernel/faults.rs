//! The fault model's dice and its ledger: one random stream per fault class, the rate of
//! each class for this run, the count of every fault that actually fired, and — for case
//! files — which of a class's opportunities may fire and which did.
//!
//! Each class draws only from its own stream (whether it fires, and its parameters: how
//! long a partition lasts, how late an answer comes), so switching one class off — or
//! setting its rate to zero, which draws nothing — leaves every other class and the
//! workload exactly as they were.
//!
//! An *opportunity* is one throw of a class's dice (the class on, its rate above zero);
//! opportunities are numbered per class from 0. A seed's run fires what the dice say. A
//! case's run ([`FaultSelection::Listed`]) fires exactly the listed opportunities; it
//! still throws the dice at every opportunity, and draws a fault's parameters whenever the
//! dice say it fires, listed or not, so the stream stands where the seed's run left it and
//! opportunity `n` always gets the parameters it had when it was recorded. This module
//! decides; it never acts on the world.

use crate::profile::{FaultClass, Knobs};
use crate::rng::{Ratio, SimRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One opportunity of one class: the identity of a fault in a case file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FaultId {
    pub class: FaultClass,
    /// Counted per class from 0, over every opportunity of the run.
    pub opportunity: u64,
}

/// A fault that fired, as a case file lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiredFault {
    pub class: FaultClass,
    pub opportunity: u64,
    /// Virtual time since the run began, for the reader; replay goes by the opportunity.
    pub at_ms: u64,
}

impl FiredFault {
    pub fn id(&self) -> FaultId {
        FaultId {
            class: self.class,
            opportunity: self.opportunity,
        }
    }
}

/// Which opportunities fire.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum FaultSelection {
    /// Whatever the dice say: a seed's own run.
    #[default]
    Dice,
    /// Exactly these, whatever the dice say: a case's run.
    Listed(BTreeSet<FaultId>),
}

/// Decides each opportunity of the classes it is given and, when asked, lists what fired.
/// The kernel's [`Faults`] and the kill switch each own one.
#[derive(Debug, Default)]
pub struct FaultChooser {
    selection: FaultSelection,
    /// Opportunities so far, per class (indexed by `FaultClass as usize`): a counter
    /// rather than a map, so that a seed's run pays nothing for it.
    opportunities: [u64; FaultClass::ALL.len()],
    /// `Some` while recording for a case file.
    fired: Option<Vec<FiredFault>>,
}

impl FaultChooser {
    pub fn new(selection: FaultSelection, record: bool) -> FaultChooser {
        FaultChooser {
            selection,
            opportunities: [0; FaultClass::ALL.len()],
            fired: record.then(Vec::new),
        }
    }

    /// Throws `class`'s dice (`rate`, from `stream`) for its next opportunity; when the
    /// dice say it fires, or the selection lists it, draws its parameters with `parameters`
    /// (so the stream moves as in the seed's run) and returns them if it fires.
    pub fn throw<T>(
        &mut self,
        class: FaultClass,
        rate: Ratio,
        stream: &mut SimRng,
        at_ms: u64,
        parameters: impl FnOnce(&mut SimRng) -> T,
    ) -> Option<T> {
        assert!(!rate.is_zero(), "a class off has no opportunities");
        let opportunity = self.opportunities[class as usize];
        self.opportunities[class as usize] += 1;
        let dice_fire = stream.chance(rate);
        let fires = match &self.selection {
            FaultSelection::Dice => dice_fire,
            FaultSelection::Listed(listed) => listed.contains(&FaultId { class, opportunity }),
        };
        if !dice_fire && !fires {
            return None;
        }
        let drawn = parameters(stream);
        if !fires {
            return None;
        }
        if let Some(fired) = self.fired.as_mut() {
            fired.push(FiredFault {
                class,
                opportunity,
                at_ms,
            });
        }
        Some(drawn)
    }

    /// The faults that fired, in the order they fired (empty unless recording).
    pub fn fired(&self) -> &[FiredFault] {
        self.fired.as_deref().unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Faults {
    /// False once the liveness phase starts (or in a clean scripted run).
    on: bool,
    rates: BTreeMap<FaultClass, Ratio>,
    streams: BTreeMap<FaultClass, SimRng>,
    fired: BTreeMap<FaultClass, u64>,
    chooser: FaultChooser,
}

impl Faults {
    pub fn new(seed: u64, knobs: &Knobs, chooser: FaultChooser) -> Faults {
        Faults {
            on: true,
            rates: knobs.faults.clone(),
            streams: FaultClass::ALL
                .into_iter()
                .map(|class| (class, SimRng::for_fault(seed, class)))
                .collect(),
            fired: BTreeMap::new(),
            chooser,
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

    /// Whether `class` fires now (an opportunity, if the faults are on and the class is);
    /// counted in the ledger when it does.
    pub fn hit(&mut self, class: FaultClass, at_ms: u64) -> bool {
        self.fire(class, at_ms, |_| ()).is_some()
    }

    /// [`Faults::hit`] for a fault with parameters, drawn by `parameters` from the class's
    /// own stream: `Some(parameters)` when it fires.
    pub fn fire<T>(
        &mut self,
        class: FaultClass,
        at_ms: u64,
        parameters: impl FnOnce(&mut SimRng) -> T,
    ) -> Option<T> {
        let rate = self.rate(class);
        if !self.on || rate.is_zero() {
            return None;
        }
        let stream = self
            .streams
            .get_mut(&class)
            .expect("every class has a stream");
        let fired = self.chooser.throw(class, rate, stream, at_ms, parameters);
        if fired.is_some() {
            self.count(class);
        }
        fired
    }

    /// Counts a fault the world decided elsewhere (a crash point the hook fired).
    pub fn count(&mut self, class: FaultClass) {
        *self.fired.entry(class).or_insert(0) += 1;
    }

    pub fn ledger(&self) -> &BTreeMap<FaultClass, u64> {
        &self.fired
    }

    /// The faults these dice fired, in order (empty unless recording for a case file).
    pub fn recorded(&self) -> &[FiredFault] {
        self.chooser.fired()
    }
}
