//! The writes of the swarm user that test the server's rules (`server/rules.rs`): a few
//! writes the rules refuse (an empty title, a record over the size limit), which the
//! engine must report and take back without failing the other ops of their batch, and
//! bulk creates of large records, whose batches are over one request's size limit and are
//! refused whole until the engine sends fewer at a time.
//!
//! Every choice comes from the action's own random stream; this module only shapes data.

use crate::profile::Knobs;
use crate::rng::SimRng;
use crate::server::rules::{PUSH_DATA_BYTES_MAX, RECORD_DATA_BYTES_MAX};
use serde_json::{json, Map, Value};

/// Shapes the records of one create action: with the `large_write` chance they all carry
/// a note of about a kilobyte (fine alone, too much by the dozen in one request), and each
/// breaks a rule with the `invalid_write` chance.
pub(super) fn shape_created(user: &mut SimRng, knobs: &Knobs, items: &mut [Value]) {
    let large = user.chance(knobs.large_write);
    let note_len = user.range(700, 1_800) as usize;
    // Within a record's limit; at least ten of them are over a request's.
    assert!(note_len < RECORD_DATA_BYTES_MAX - 200);
    assert!(note_len * 24 > PUSH_DATA_BYTES_MAX);
    for item in items.iter_mut() {
        let Value::Object(data) = item else {
            unreachable!("the world creates JSON objects");
        };
        if large {
            data.insert("note".to_owned(), json!("n".repeat(note_len)));
        }
        if user.chance(knobs.invalid_write) {
            break_a_rule(user, data);
        }
    }
}

/// Shapes one update's patch: with the `invalid_write` chance it breaks a rule.
pub(super) fn shape_patch(user: &mut SimRng, knobs: &Knobs, patch: &mut Map<String, Value>) {
    if user.chance(knobs.invalid_write) {
        break_a_rule(user, patch);
    }
}

/// An empty title, or a note that puts the record over the size limit on its own.
fn break_a_rule(user: &mut SimRng, data: &mut Map<String, Value>) {
    if user.coin() {
        data.insert("title".to_owned(), json!(""));
    } else {
        let len = RECORD_DATA_BYTES_MAX + user.range(1, 1_000) as usize;
        data.insert("note".to_owned(), json!("x".repeat(len)));
    }
}
