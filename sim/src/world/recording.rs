//! The world's user actions as a case file sees them: each action numbered in its stream,
//! listed when the run records itself, and left out when a case's kept set does not name
//! it.
//!
//! A workload action is numbered by its draws: the `n`th action of a run is the one made
//! from the `n`th (kind, sub-seed) pair of the workload stream, whatever the world's state,
//! so leaving one out (its two draws still taken) leaves every later action as it was. An
//! action while a request is in flight is numbered by the draws of the in-flight stream.
//! This module only counts, lists and admits; it never acts or draws.

use crate::kernel::FaultId;
use crate::kernel::FiredFault;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Debug;

/// The stream an action's kind and sub-seed were drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStream {
    /// The user's own actions, every few seconds per device (`World::user_action`).
    Workload,
    /// An action while a request is on the wire (`inflight.rs`).
    InFlight,
}

/// The identity of an action in a case file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActionId {
    pub stream: ActionStream,
    /// Counted per stream from 0.
    pub number: u64,
}

/// One user action as a case file lists it. Replay goes by `stream` and `number`; the rest
/// says what the recorded run did there, for the reader and to spot a stale case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRecord {
    pub stream: ActionStream,
    pub number: u64,
    /// Virtual time since the run began.
    pub at_ms: u64,
    pub device: String,
    pub kind: String,
    pub sub_seed: u64,
}

impl ActionRecord {
    pub fn id(&self) -> ActionId {
        ActionId {
            stream: self.stream,
            number: self.number,
        }
    }
}

/// What a case keeps of a run: the actions that act and the faults that fire.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeptSet {
    pub actions: BTreeSet<ActionId>,
    pub faults: BTreeSet<FaultId>,
}

/// What a run recorded for a case file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Recording {
    pub actions: Vec<ActionRecord>,
    pub faults: Vec<FiredFault>,
}

/// Numbers the run's actions, admits them by the kept set, lists them when recording.
#[derive(Debug, Default)]
pub(super) struct ActionBook {
    kept: Option<BTreeSet<ActionId>>,
    recorded: Option<Vec<ActionRecord>>,
    next_workload: u64,
    next_in_flight: u64,
}

impl ActionBook {
    pub(super) fn new(kept: Option<BTreeSet<ActionId>>, record: bool) -> ActionBook {
        ActionBook {
            kept,
            recorded: record.then(Vec::new),
            next_workload: 0,
            next_in_flight: 0,
        }
    }

    /// Numbers the stream's next action; whether the case keeps it (always, in a seed's
    /// run).
    pub(super) fn next(&mut self, stream: ActionStream) -> (ActionId, bool) {
        let counter = match stream {
            ActionStream::Workload => &mut self.next_workload,
            ActionStream::InFlight => &mut self.next_in_flight,
        };
        let id = ActionId {
            stream,
            number: *counter,
        };
        *counter += 1;
        let kept = self.kept.as_ref().is_none_or(|kept| kept.contains(&id));
        (id, kept)
    }

    /// Lists an action that acts (only when recording: the kind is formatted here).
    pub(super) fn record(
        &mut self,
        id: ActionId,
        at_ms: u64,
        device: &str,
        kind: impl Debug,
        sub_seed: u64,
    ) {
        if let Some(recorded) = self.recorded.as_mut() {
            recorded.push(ActionRecord {
                stream: id.stream,
                number: id.number,
                at_ms,
                device: device.to_owned(),
                kind: format!("{kind:?}"),
                sub_seed,
            });
        }
    }

    pub(super) fn take_recorded(&mut self) -> Option<Vec<ActionRecord>> {
        self.recorded.take()
    }
}
