//! The server's rules on what a push may carry, beyond the wire's shape: what a record's
//! data may hold, how much data one request may carry, and how far ahead of the server's
//! own clock a writer's stamp may be. `engine/schema.graphql` states the same rules.
//!
//! This module only judges; it never changes state. The rules are pure functions of their
//! inputs, so the oracle can ask them too: a write they refuse is one the server never
//! keeps, and an op reported failed must be one they refused.

use serde_json::{Map, Value};
use sync_engine::hlc::HlcStamp;

/// Most bytes of one record's `data` (as compact JSON): an item over it is rejected on its
/// own (`VALIDATION` in its result), and the rest of its batch is decided as usual.
pub const RECORD_DATA_BYTES_MAX: usize = 2_048;
/// Most bytes of `data`, all items together, in one push request of two items or more;
/// such a request is refused whole (a `VALIDATION` error envelope) and the client sends
/// fewer items at a time. A request of one item is never refused for its size: an item
/// over [`RECORD_DATA_BYTES_MAX`] is rejected on its own.
pub const PUSH_DATA_BYTES_MAX: usize = 16 * 1_024;
/// Most characters of a record's `title`.
pub const TITLE_CHARS_MAX: usize = 200;
/// How far ahead of the server's clock a writer's stamp may be. A stamp further ahead is
/// stored clamped to the server's clock plus this much (counter 0): a device whose clock
/// runs years ahead keeps syncing, but cannot win concurrent writes for years, and the
/// stamps other devices pull (and their clocks follow) stay within a day of real time.
pub const STAMP_AHEAD_MS_MAX: u64 = 24 * 3_600_000;

/// Why the server's rules refuse a record's data, or `Ok` when they accept it: `title`,
/// when present, must be a non-empty string of at most [`TITLE_CHARS_MAX`] characters, and
/// the data at most [`RECORD_DATA_BYTES_MAX`] bytes.
pub fn check_record(data: &Map<String, Value>) -> Result<(), String> {
    if let Some(title) = data.get("title") {
        let chars = title.as_str().map(|title| title.chars().count());
        if !chars.is_some_and(|chars| (1..=TITLE_CHARS_MAX).contains(&chars)) {
            return Err(format!(
                "title must be a string of 1-{TITLE_CHARS_MAX} characters"
            ));
        }
    }
    let bytes = data_bytes(data);
    if bytes > RECORD_DATA_BYTES_MAX {
        return Err(format!(
            "data is {bytes} bytes, over the {RECORD_DATA_BYTES_MAX}-byte limit of a record"
        ));
    }
    Ok(())
}

/// Why a push request carries too much data to be taken at all, or `Ok`.
pub fn check_request_size<'a>(
    items: impl ExactSizeIterator<Item = &'a Map<String, Value>>,
) -> Result<(), String> {
    if items.len() < 2 {
        return Ok(());
    }
    let bytes: usize = items.map(data_bytes).sum();
    if bytes > PUSH_DATA_BYTES_MAX {
        return Err(format!(
            "the payload carries {bytes} bytes of data, over the {PUSH_DATA_BYTES_MAX}-byte \
             limit of one request: send fewer items at a time"
        ));
    }
    Ok(())
}

/// The stamp the server stores for a writer's `stamp` when its own clock reads `now_ms`.
pub fn admitted_stamp(stamp: HlcStamp, now_ms: u64) -> HlcStamp {
    let limit = HlcStamp::new(now_ms.saturating_add(STAMP_AHEAD_MS_MAX), 0);
    let admitted = stamp.min(limit);
    assert!(admitted <= stamp);
    admitted
}

/// The length of `data` as compact JSON, counted as it is written rather than kept: every
/// push item is measured, and the text itself is never needed.
fn data_bytes(data: &Map<String, Value>) -> usize {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, data).expect("JSON values serialize");
    counter.0
}

/// A writer that only counts the bytes written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Each rule on both sides of its limit.
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    #[test]
    fn a_record_needs_a_sane_title_and_a_bounded_size() {
        assert!(check_record(&object(json!({"title": "a"}))).is_ok());
        assert!(check_record(&object(json!({"count": 3}))).is_ok());
        assert!(check_record(&object(json!({"title": ""}))).is_err());
        assert!(check_record(&object(json!({"title": 7}))).is_err());
        let long_title = "t".repeat(TITLE_CHARS_MAX + 1);
        assert!(check_record(&object(json!({ "title": long_title }))).is_err());
        // {"note":"…"} is 11 bytes around the note.
        let fits = "n".repeat(RECORD_DATA_BYTES_MAX - 11);
        assert!(check_record(&object(json!({ "note": fits }))).is_ok());
        let over = "n".repeat(RECORD_DATA_BYTES_MAX - 10);
        assert!(check_record(&object(json!({ "note": over }))).is_err());
    }

    #[test]
    fn only_a_request_of_several_items_is_refused_for_its_size() {
        let big = object(json!({ "note": "n".repeat(RECORD_DATA_BYTES_MAX * 10) }));
        assert!(check_request_size([&big].into_iter()).is_ok());
        let small = object(json!({ "note": "n".repeat(1_000) }));
        let many = vec![&small; PUSH_DATA_BYTES_MAX / 1_000];
        assert!(check_request_size(many.into_iter()).is_ok());
        let too_many = vec![&small; PUSH_DATA_BYTES_MAX / 1_000 + 1];
        assert!(check_request_size(too_many.into_iter()).is_err());
    }

    #[test]
    fn a_stamp_far_ahead_is_clamped_and_others_kept() {
        let now_ms = 1_700_000_000_000;
        let near = HlcStamp::new(now_ms + STAMP_AHEAD_MS_MAX, 9);
        assert_eq!(admitted_stamp(near, now_ms + 1), near);
        let years = HlcStamp::new(now_ms + 5 * 365 * 86_400_000, 3);
        let clamped = admitted_stamp(years, now_ms);
        assert_eq!(clamped, HlcStamp::new(now_ms + STAMP_AHEAD_MS_MAX, 0));
        let behind = HlcStamp::new(now_ms - 5 * 365 * 86_400_000, 3);
        assert_eq!(admitted_stamp(behind, now_ms), behind);
    }
}
