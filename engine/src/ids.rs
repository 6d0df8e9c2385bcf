//! UUID v7 ids built from the hybrid logical clock and the injected entropy.
//!
//! RFC 9562 layout: 48 bits of Unix milliseconds, version 7, then 74 bits that we fill
//! with the HLC counter (16 bits, the "monotonic counter" method) and entropy. Because
//! every id is built from a fresh HLC stamp, ids are strictly time-ordered on one device
//! even when its wall clock jumps backwards. This module never reads a clock itself.

use crate::hlc::HlcStamp;
use uuid::Uuid;

/// Builds a UUID v7 whose ordering equals the ordering of `stamp`.
pub fn uuid_v7(stamp: HlcStamp, random: u64) -> Uuid {
    let wall_ms = stamp.wall_ms();
    let counter = u64::from(stamp.counter());
    let mut bytes = [0u8; 16];
    bytes[0..6].copy_from_slice(&wall_ms.to_be_bytes()[2..8]);
    // rand_a (12 bits) takes the counter's high 12 bits.
    let rand_a = (counter >> 4) as u16;
    bytes[6] = 0x70 | ((rand_a >> 8) as u8 & 0x0F);
    bytes[7] = rand_a as u8;
    // rand_b (62 bits): the counter's low 4 bits first, then 58 bits of entropy.
    let rand_b = ((counter & 0xF) << 58) | (random >> 6);
    let rand_b_bytes = rand_b.to_be_bytes();
    bytes[8] = 0x80 | (rand_b_bytes[0] & 0x3F);
    bytes[9..16].copy_from_slice(&rand_b_bytes[1..8]);
    let id = Uuid::from_bytes(bytes);
    debug_assert_eq!(id.get_version_num(), 7);
    id
}

#[cfg(test)]
mod tests {
    //! Ids are valid v7 UUIDs and sort like the stamps they came from, including when the
    //! wall clock runs backwards between two ids.
    use super::*;
    use crate::env::{Entropy, SeededEntropy};
    use crate::hlc::Hlc;
    use proptest::prelude::*;

    #[test]
    fn layout_is_v7_rfc_variant() {
        let id = uuid_v7(HlcStamp::new(1_700_000_000_000, 3), 0xDEAD_BEEF);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = id.get_timestamp().expect("v7 has a timestamp").to_unix();
        assert_eq!(
            seconds * 1000 + u64::from(nanos) / 1_000_000,
            1_700_000_000_000
        );
    }

    proptest! {
        #[test]
        fn ids_are_time_ordered_when_clock_jumps(walls in prop::collection::vec(0u64..10_000_000, 2..300), seed: u64) {
            let mut hlc = Hlc::default();
            let mut entropy = SeededEntropy::new(seed);
            let mut previous: Option<Uuid> = None;
            for wall_ms in walls {
                let id = uuid_v7(hlc.tick(wall_ms), entropy.next_u64());
                prop_assert_eq!(id.get_version_num(), 7);
                if let Some(previous) = previous {
                    prop_assert!(id > previous, "{} !> {}", id, previous);
                    prop_assert!(id.to_string() > previous.to_string());
                }
                previous = Some(id);
            }
        }
    }
}
