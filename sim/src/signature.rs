//! Failure signatures: what makes two failing seeds "the same bug", so a campaign reports
//! 300 failures of one bug as one group with its count and smallest seed.
//!
//! A signature is (kind, invariant, operation); a shrink keeps the first two
//! ([`FailureSignature`]). The invariant is the head of the
//! failure's message — the text before its first `": "` (after the name of the device the
//! message starts with) and before its first `" ("` — with every word that holds a digit,
//! names a tenant (the word after `tenant`) or names an entity of the world replaced by
//! `#`, and runs of `#` made one, so record ids, tenants, entities, stamps, counts and
//! device numbers do not split a group. The operation is
//! what the run was doing when it failed ([`crate::kernel::Sim::operation`]: the event
//! handled, the user's action, the final checks). This module only reads messages; it
//! never decides whether a run failed.

use crate::kernel::{Failure, FailureKind, ENTITIES};
use serde::Serialize;

/// The longest invariant text a signature keeps (characters): messages that carry no
/// `": "` would otherwise carry their whole detail into the signature.
const INVARIANT_CHARS_MAX: usize = 120;

/// What two failures of the same bug share.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Signature {
    pub kind: FailureKind,
    pub invariant: String,
    pub operation: String,
}

impl Signature {
    /// The signature of `failure`, which happened while the run did `operation`.
    pub fn of(failure: &Failure, operation: &str) -> Signature {
        Signature {
            kind: failure.kind,
            invariant: invariant_of(&failure.message),
            operation: without_numbers(operation),
        }
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{:?} | {} | in {}",
            self.kind, self.invariant, self.operation
        )
    }
}

/// What a shrink must keep while it cuts a run down: the failure's kind and invariant.
/// The operation is left out: a smaller run may break the same check in another step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FailureSignature {
    pub kind: FailureKind,
    pub invariant: String,
}

impl FailureSignature {
    pub fn of(failure: &Failure) -> FailureSignature {
        FailureSignature {
            kind: failure.kind,
            invariant: invariant_of(&failure.message),
        }
    }
}

impl std::fmt::Display for FailureSignature {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:?} | {}", self.kind, self.invariant)
    }
}

/// The invariant a failure message names: its head, without the device it starts with.
pub fn invariant_of(message: &str) -> String {
    let mut segments = message.split(": ");
    let first = segments.next().unwrap_or_default();
    // `d0: read-your-writes: …` and `d0 after reopen: …` name the device first.
    let after_reopen = first
        .strip_suffix(" after reopen")
        .is_some_and(|device| !device.contains(' '));
    let head = if after_reopen {
        format!("after reopen: {}", segments.next().unwrap_or_default())
    } else if !first.contains(' ') {
        segments.next().unwrap_or(first).to_owned()
    } else {
        first.to_owned()
    };
    let head = head.split(" (").next().unwrap_or_default();
    let mut invariant = without_numbers(head);
    if invariant.chars().count() > INVARIANT_CHARS_MAX {
        invariant = invariant.chars().take(INVARIANT_CHARS_MAX).collect();
        invariant.push('…');
    }
    invariant
}

/// `text` with every word that holds a digit, follows `tenant` or `tenants`, or is an
/// entity of the world replaced by `#`; runs of `#` and of spaces made one.
fn without_numbers(text: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    let mut after_tenant = false;
    for word in text.split_whitespace() {
        let variable = after_tenant
            || word.chars().any(|c| c.is_ascii_digit())
            || ENTITIES.contains(&word.trim_end_matches([',', '.', ';']));
        after_tenant = word == "tenant" || word == "tenants";
        let word = if variable { "#" } else { word };
        if !(word == "#" && words.last() == Some(&"#")) {
            words.push(word);
        }
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    //! Messages of one bug with different ids, tenants, devices and numbers share one
    //! signature; different invariants, kinds or operations do not.
    use super::*;
    use crate::kernel::violation;

    fn check(message: &str, expected_invariant: &str) {
        assert_eq!(invariant_of(message), expected_invariant, "{message}");
    }

    #[test]
    fn the_invariant_is_the_message_head_without_device_and_numbers() {
        check(
            "silent divergence: d0's copy of Identity in tenant t0 disagreed with the server's",
            "silent divergence",
        );
        check(
            "d1: read-your-writes: device 1 shows 018bd053-d878-7000-819f-741a05fe9b4f (tenant t0)",
            "read-your-writes",
        );
        check(
            "op 0192-aa of tenant acme-org_11 changed the server 2 times (exactly once expected)",
            "op # of tenant # changed the server # times",
        );
        // Tenants without digits and entities do not split a group either.
        check(
            "cursor moved backwards on d0 tenant ACME-ORG Space: Some((4, \"x\")) -> None",
            "cursor moved backwards on # tenant #",
        );
        check(
            "cursor moved backwards on d3 tenant t1 Group: Some((9, \"y\")) -> None",
            "cursor moved backwards on # tenant #",
        );
        check(
            "no convergence on its own after the heal within 12 windows of 320500 ms = 3846000 \
             ms (interval 300000 ms); it converged only once poked: d0 differs",
            "no convergence on its own after the heal within # windows of # ms = # ms",
        );
        check(
            "d2 after reopen: ops: op 17 is sending after open",
            "after reopen: ops",
        );
        check("no record", "no record");
        let long = "word ".repeat(100);
        assert_eq!(invariant_of(&long).chars().count(), INVARIANT_CHARS_MAX + 1);
    }

    #[test]
    fn failures_of_one_bug_share_a_signature() {
        let a = violation(
            "d0: monotonic reads: device 0 went back to an older version of \
             018bcfdc-aeb8-7000-8220-4bae1a08ccb8 (tenant acme-org_17)"
                .to_owned(),
        );
        let b = violation(
            "d3: monotonic reads: device 3 went back to an older version of \
             018bd0a1-43ac-7000-830b-1eab903c8e09 (tenant t1)"
                .to_owned(),
        );
        let one = Signature::of(&a, "answer to syncPull");
        assert_eq!(one, Signature::of(&b, "answer to syncPull"));
        assert_eq!(
            one.to_string(),
            "Invariant | monotonic reads | in answer to syncPull"
        );
        assert_ne!(one, Signature::of(&b, "user Update"));
        let liveness = Failure {
            kind: FailureKind::Liveness,
            ..b.clone()
        };
        assert_ne!(one, Signature::of(&liveness, "answer to syncPull"));
    }
}
