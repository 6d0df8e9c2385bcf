//! What makes two failures "the same failure" for the shrinker: the same kind and the
//! same invariant.
//!
//! A failure's message names the invariant first and then the particulars of this run:
//! devices, tenants, record ids, stamps, counts, paths, record data. The signature keeps
//! the kind and the invariant's words and drops the particulars, so a shrunk run whose
//! failure names `d1` instead of `d3`, another record or another tenant still counts as
//! the same failure, while a different invariant (or a panic instead of a violation) does
//! not. This module only compares messages; it never runs anything.

use crate::kernel::{Failure, FailureKind};
use serde::Serialize;

/// The invariant part of a message is cut at this many characters.
const INVARIANT_CHARS_MAX: usize = 160;

/// A failure with its particulars stripped: two failures are the same failure when their
/// signatures are equal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FailureSignature {
    pub kind: FailureKind,
    /// The message with every word holding a digit (ids, names like `d0` and `t1`,
    /// numbers, stamps, paths) replaced by `#`, anything in braces or brackets (record
    /// data, JSON answers) by `{}`, and a leading device prefix (`#: `) dropped; then,
    /// except for panics, cut at the first `: ` that follows, where the particulars start.
    /// A panic keeps its whole stripped message: "assertion failed" alone says too little.
    pub invariant: String,
}

impl FailureSignature {
    pub fn of(failure: &Failure) -> FailureSignature {
        let stripped = strip_particulars(&failure.message);
        let without_device = stripped.strip_prefix("#: ").unwrap_or(&stripped);
        let invariant = match failure.kind {
            FailureKind::Panic => without_device,
            FailureKind::Invariant | FailureKind::Liveness => without_device
                .split_once(": ")
                .map_or(without_device, |(invariant, _)| invariant),
        };
        FailureSignature {
            kind: failure.kind,
            invariant: invariant.chars().take(INVARIANT_CHARS_MAX).collect(),
        }
    }
}

impl std::fmt::Display for FailureSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.invariant)
    }
}

/// Replaces each word holding a digit by `#` and each bracketed part by `{}`; a word is a
/// run of anything but white space, `:`, `,`, `;`, `'`, `"`, `(` and `)`.
fn strip_particulars(message: &str) -> String {
    let mut stripped = String::with_capacity(message.len());
    let mut depth = 0usize;
    let mut word = String::new();
    let flush = |word: &mut String, stripped: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            stripped.push('#');
        } else {
            stripped.push_str(word);
        }
        word.clear();
    };
    for c in message.chars() {
        match c {
            '{' | '[' => {
                if depth == 0 {
                    flush(&mut word, &mut stripped);
                    stripped.push_str("{}");
                }
                depth += 1;
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_whitespace() || ":,;'\"()".contains(c) => {
                flush(&mut word, &mut stripped);
                stripped.push(c);
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut stripped);
    stripped
}

#[cfg(test)]
mod tests {
    //! Messages of one invariant from different runs share a signature; different
    //! invariants, or different kinds, do not.
    use super::*;

    fn signature(kind: FailureKind, message: &str) -> FailureSignature {
        FailureSignature::of(&Failure {
            kind,
            message: message.to_owned(),
        })
    }

    #[test]
    fn particulars_are_stripped_and_invariants_kept() {
        use FailureKind::{Invariant, Liveness, Panic};
        let same = [
            (
                "d0: monotonic reads: device 0 went back to an older version of 018bcfc7-8446-7000-83bd-1098751003bf (tenant t0): stamp HlcStamp(1) {\"color\":\"red\"}",
                "d3: monotonic reads: device 3 showed 018bd03b-5b90 (tenant ACME-ORG_11) deleted, then alive again",
            ),
            (
                "silent divergence: d0's copy of Identity in tenant t0 disagreed with the server's versionHash",
                "silent divergence: d1's copy of Space in tenant Acme-Org_11-shm disagreed",
            ),
            (
                "d0: logout left /dev/shm/syncsim-cgMK0t/d0/trackhub_db_t1-wal of t1 behind",
                "d2: logout left /dev/shm/syncsim-d3BDMA/d2/trackhub_db_acme-org_11-shm.21-wal of Acme-Org_11-shm behind",
            ),
        ];
        for (first, second) in same {
            assert_eq!(signature(Invariant, first), signature(Invariant, second));
        }
        assert_eq!(signature(Invariant, same[0].0).invariant, "monotonic reads");
        assert_eq!(
            signature(Invariant, same[2].0).invariant,
            "logout left # of # behind"
        );
        assert_ne!(
            signature(Invariant, same[0].0),
            signature(Invariant, same[1].0)
        );
        assert_ne!(
            signature(Invariant, same[1].0),
            signature(Liveness, same[1].0)
        );
        assert_ne!(
            signature(Panic, "assertion failed: queue.is_empty() at sync.rs:12"),
            signature(Panic, "assertion failed: cursor <= next at pull.rs:40")
        );
        assert_eq!(
            signature(Panic, "assertion failed: queue.is_empty() at sync.rs:12"),
            signature(Panic, "assertion failed: queue.is_empty() at sync.rs:14")
        );
    }
}
