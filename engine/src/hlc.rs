//! Hybrid logical clock: record stamps that never go backwards and respect causality.
//!
//! A stamp packs wall-clock milliseconds (high 48 bits) and a logical counter (low 16
//! bits) into one `u64`, so stamps compare as integers and travel on the wire as one
//! number (`updatedAt`). The clock owns no time source: callers pass the injected
//! wall-clock reading in. It never reads the system clock.

use serde::{Deserialize, Serialize};

/// One HLC stamp. Ordered; equal stamps on two devices mean "concurrent, same instant".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct HlcStamp(pub u64);

const COUNTER_BITS: u32 = 16;
const COUNTER_MAX: u64 = (1 << COUNTER_BITS) - 1;
/// Wall-clock readings are clamped to 48 bits (good until the year 10889).
const WALL_MS_MAX: u64 = (1 << 48) - 1;

impl HlcStamp {
    pub const ZERO: HlcStamp = HlcStamp(0);

    pub fn new(wall_ms: u64, counter: u16) -> HlcStamp {
        HlcStamp((wall_ms.min(WALL_MS_MAX) << COUNTER_BITS) | u64::from(counter))
    }

    pub fn wall_ms(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    pub fn counter(self) -> u16 {
        (self.0 & COUNTER_MAX) as u16
    }

    /// The smallest stamp strictly greater than `self`.
    fn successor(self) -> HlcStamp {
        assert!(self.0 < u64::MAX, "HLC exhausted");
        HlcStamp(self.0 + 1)
    }
}

/// The device's hybrid logical clock: the last stamp it issued or observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hlc {
    last: HlcStamp,
    /// Planted defect `hlc_reuses_observed_stamp` (simulator self-tests only).
    #[doc(hidden)]
    pub planted_reuses_observed: bool,
    /// The last stamp came from `observe` and was not handed out since.
    observed_last: bool,
    /// A stamp was handed out since the last durability barrier (see
    /// [`Hlc::take_issued_since_barrier`]); true for a resumed clock, whose last process
    /// may have issued stamps that are not durable yet.
    issued_since_barrier: bool,
}

impl Hlc {
    /// Resumes a clock from a persisted high-water mark.
    pub fn resume(last: HlcStamp) -> Hlc {
        Hlc {
            last,
            issued_since_barrier: true,
            ..Hlc::default()
        }
    }

    pub fn last(&self) -> HlcStamp {
        self.last
    }

    /// A new stamp for a local event: greater than every stamp issued or observed, and
    /// at least the wall clock when the wall clock is ahead.
    pub fn tick(&mut self, wall_ms: u64) -> HlcStamp {
        self.issued_since_barrier = true;
        let wall_stamp = HlcStamp::new(wall_ms, 0);
        let observed_last = std::mem::take(&mut self.observed_last);
        if self.planted_reuses_observed && observed_last && wall_stamp <= self.last {
            return self.last;
        }
        let next = if wall_stamp > self.last {
            wall_stamp
        } else {
            self.last.successor()
        };
        assert!(next > self.last);
        self.last = next;
        next
    }

    /// Whether a stamp (and so an id or an `opId`, which are built from stamps) was handed
    /// out since the last call: the engine makes every such stamp durable before one can
    /// leave the device, so that a power loss never makes it issue one again. Clears the
    /// mark; the caller puts it back ([`Hlc::mark_issued`]) if its barrier fails.
    pub fn take_issued_since_barrier(&mut self) -> bool {
        std::mem::take(&mut self.issued_since_barrier)
    }

    /// Stamps handed out are not known to be durable (a durability barrier failed).
    pub fn mark_issued(&mut self) {
        self.issued_since_barrier = true;
    }

    /// Takes in the high-water mark persisted in the database, which another process of
    /// the app may have raised: read inside the transaction that hands out the next
    /// stamps (under its write lock), it keeps two processes from handing out one stamp.
    pub fn catch_up(&mut self, persisted: HlcStamp) {
        if persisted > self.last {
            self.last = persisted;
        }
    }

    /// Takes in a stamp seen from elsewhere (a pulled record, a push result), so that the
    /// next local stamp is causally after it.
    pub fn observe(&mut self, seen: HlcStamp) {
        if seen > self.last {
            self.last = seen;
            self.observed_last = true;
        }
        assert!(self.last >= seen);
    }
}

#[cfg(test)]
mod tests {
    //! Properties of the clock under arbitrary wall-clock readings, including jumps
    //! backwards: stamps strictly increase, follow every observed stamp, and keep up with
    //! the wall clock when it moves forwards.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Input {
        Tick(u64),
        Observe(u64),
    }

    fn input() -> impl Strategy<Value = Input> {
        prop_oneof![
            (0u64..1_000_000).prop_map(Input::Tick),
            (0u64..(1_000_000u64 << 16)).prop_map(Input::Observe),
        ]
    }

    proptest! {
        #[test]
        fn stamps_strictly_increase_and_follow_observed(inputs in prop::collection::vec(input(), 1..200)) {
            let mut hlc = Hlc::default();
            let mut last_issued = HlcStamp::ZERO;
            let mut max_observed = HlcStamp::ZERO;
            for input in inputs {
                match input {
                    Input::Tick(wall_ms) => {
                        let stamp = hlc.tick(wall_ms);
                        prop_assert!(stamp > last_issued);
                        prop_assert!(stamp > max_observed);
                        prop_assert!(stamp.wall_ms() >= wall_ms);
                        last_issued = stamp;
                    }
                    Input::Observe(raw) => {
                        hlc.observe(HlcStamp(raw));
                        max_observed = max_observed.max(HlcStamp(raw));
                        prop_assert!(hlc.last() >= max_observed);
                    }
                }
            }
        }

        #[test]
        fn wall_clock_ahead_is_adopted(last in 0u64..1_000_000, ahead in 1u64..1_000_000) {
            let mut hlc = Hlc::resume(HlcStamp::new(last, 7));
            let stamp = hlc.tick(last + ahead);
            prop_assert_eq!(stamp, HlcStamp::new(last + ahead, 0));
        }

        #[test]
        fn resumed_clock_never_goes_back(last in 0u64..(1u64 << 40), wall_ms in 0u64..1_000_000) {
            let mut hlc = Hlc::resume(HlcStamp(last));
            prop_assert!(hlc.tick(wall_ms) > HlcStamp(last));
        }
    }

    #[test]
    fn packing_round_trips() {
        let stamp = HlcStamp::new(1_700_000_000_123, 42);
        assert_eq!(stamp.wall_ms(), 1_700_000_000_123);
        assert_eq!(stamp.counter(), 42);
    }

    #[test]
    fn counter_overflow_carries_into_wall_ms() {
        let mut hlc = Hlc::resume(HlcStamp::new(10, u16::MAX));
        let stamp = hlc.tick(5);
        assert_eq!(stamp, HlcStamp::new(11, 0));
    }
}
