//! Code-path probes: "sometimes" assertions, as FoundationDB's code probes. Each names a
//! rare path (a conflict stored, a `STALE` answer, a page ending inside a commit…) and
//! counts how often a run reached it, so a campaign can fail when a path its profile is
//! meant to reach never ran: a harness that never goes there proves nothing about it.
//!
//! The kernel observes every probe from the outside — the events an engine reports, the
//! answers the network delivers, the server's state when it answers — so the engine stays
//! free of test hooks; drivers count the user actions only they see ([`Sim::probe`]).
//! This module only counts: it never changes what a run does, and it draws no random
//! number, so a run's trace is the same with or without it.

use super::Sim;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use sync_engine::registry::OperationKind;
use sync_engine::wire::SyncRequest;
use sync_engine::{SyncEvent, SyncTrigger};

/// One rare code path the simulator counts.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    strum::EnumCount,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Probe {
    /// An engine stored a conflict for its user (`ConflictStored`).
    ConflictStored,
    /// The field-level auto-merge settled a concurrent write (`ConflictAutoMerged`).
    ConflictAutoMerged,
    /// The simulated user answered a stored conflict.
    ConflictResolved,
    /// A queued op lost to a newer server write or a delete (`OpSuperseded`).
    OpSuperseded,
    /// A push answer delivered to the engine settled an op with `RECORD_DELETED`.
    RecordDeletedSettledOp,
    /// A push answer delivered to the engine settled an op with `STALE`.
    StaleAnswered,
    /// An op was rejected for good (`OpFailed`).
    OpFailedPermanently,
    /// An answer reached the process that sent the request after that request was
    /// already answered (a late answer after a timeout, a duplicate): it must be ignored.
    LateAnswerIgnored,
    /// A pull page that is not the last ended inside a commit (rows of one push request
    /// on both sides of its cursor).
    PageSplitsCommit,
    /// A pull arrived whose cursor sits inside a commit.
    CursorInsideCommit,
    /// A checksum mismatch started a repair pull (`RepairStarted`).
    RepairStarted,
    /// A pull too old for the server's retention started a pull from the start
    /// (`ResyncStarted`).
    ResyncStarted,
    /// A confirmed force (either direction) ran to its outcome.
    ForceExecuted,
    /// A force from the server replaced an entity (`ForceCompleted`).
    ForceFromServerCompleted,
    /// A force from the server ended without replacing anything (`ForceFailed`).
    ForceFailed,
    /// The user wiped a space.
    SpaceWiped,
    /// A sync started because the app opened.
    SyncByAppOpen,
    /// A sync started on the interval timer.
    SyncByInterval,
    /// A sync started because the network came back.
    SyncByNetworkRegained,
    /// A sync started on the after-write debounce.
    SyncByAfterWrite,
    /// A sync started on the retry timer after a transient failure.
    SyncByRetry,
    /// A sync started because the user asked for one (or one was queued behind another).
    SyncByManual,
}

impl Probe {
    /// Every probe in declaration order.
    pub const ALL: [Probe; <Probe as strum::EnumCount>::COUNT] =
        *<Probe as strum::VariantArray>::VARIANTS
            .first_chunk()
            .unwrap();

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The probe an engine event reaches, if any.
    fn of_event(event: &SyncEvent) -> Option<Probe> {
        Some(match event {
            SyncEvent::SyncStarted { trigger } => match trigger {
                SyncTrigger::AppOpen => Probe::SyncByAppOpen,
                SyncTrigger::Interval => Probe::SyncByInterval,
                SyncTrigger::NetworkRegained => Probe::SyncByNetworkRegained,
                SyncTrigger::AfterWrite => Probe::SyncByAfterWrite,
                SyncTrigger::Retry => Probe::SyncByRetry,
                SyncTrigger::Manual => Probe::SyncByManual,
                // The engine's enums are `#[non_exhaustive]`: a trigger or an event this
                // build does not know reaches no probe.
                _ => return None,
            },
            SyncEvent::ConflictStored { .. } => Probe::ConflictStored,
            SyncEvent::ConflictAutoMerged { .. } => Probe::ConflictAutoMerged,
            SyncEvent::OpFailed { .. } => Probe::OpFailedPermanently,
            SyncEvent::OpSuperseded { .. } => Probe::OpSuperseded,
            SyncEvent::RepairStarted { .. } => Probe::RepairStarted,
            SyncEvent::ResyncStarted { .. } => Probe::ResyncStarted,
            SyncEvent::ForceCompleted { .. } => Probe::ForceFromServerCompleted,
            SyncEvent::ForceFailed { .. } => Probe::ForceFailed,
            // `SyncCompleted`, `SyncFailed`, and events this build does not know.
            _ => return None,
        })
    }
}

impl Sim {
    /// Counts one hit of `probe` (drivers count the user actions only they see).
    pub fn probe(&mut self, probe: Probe) {
        *self.probes.entry(probe).or_insert(0) += 1;
    }

    /// How often each probe was reached so far; probes never reached are absent.
    pub fn probes(&self) -> &BTreeMap<Probe, u64> {
        &self.probes
    }

    pub(super) fn probe_event(&mut self, event: &SyncEvent) {
        if let Some(probe) = Probe::of_event(event) {
            self.probe(probe);
        }
    }

    /// An answer is about to reach the process that sent `request_id`: a late or
    /// duplicate answer if that request was answered already; otherwise the codes that
    /// settle its push ops.
    pub(super) fn probe_delivery(
        &mut self,
        index: usize,
        request_id: u64,
        operation_name: &str,
        response: &Result<Value, sync_engine::TransportError>,
    ) {
        if !self.devices[index].in_flight.contains(&request_id) {
            self.probe(Probe::LateAnswerIgnored);
            return;
        }
        let Ok(response) = response else {
            return;
        };
        let results = response
            .get("data")
            .and_then(|data| data.get(operation_name))
            .and_then(|payload| payload.get("results"))
            .and_then(Value::as_array);
        for result in results.into_iter().flatten() {
            match result.get("errorCode").and_then(Value::as_str) {
                Some("STALE") => self.probe(Probe::StaleAnswered),
                Some("RECORD_DELETED") => self.probe(Probe::RecordDeletedSettledOp),
                _ => {}
            }
        }
    }

    /// A pull reaches the server (`answer: None`, before it is handled) or was answered:
    /// whether its cursor, or the page's, sits inside a commit of the server's state now.
    pub(super) fn probe_pull(&mut self, request: &SyncRequest, answer: Option<&Value>) {
        let Some((OperationKind::Pull, config)) =
            self.registry.resolve_operation(&request.operation_name)
        else {
            return;
        };
        let entity = config.name().to_owned();
        let variables = request.variables.to_json();
        let (cursor, probe) = match answer {
            None => (
                variables.get("lastSyncAt").and_then(Value::as_str),
                Probe::CursorInsideCommit,
            ),
            Some(answer) => {
                let page = answer
                    .get("data")
                    .and_then(|data| data.get(&request.operation_name));
                let has_more = page
                    .and_then(|page| page.get("hasMore"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let cursor = page
                    .and_then(|page| page.get("lastSyncAt"))
                    .and_then(Value::as_str)
                    .filter(|_| has_more);
                (cursor, Probe::PageSplitsCommit)
            }
        };
        let inside = cursor.is_some_and(|cursor| {
            self.server
                .cursor_inside_commit(&request.tenant_id, &entity, cursor)
        });
        if inside {
            self.probe(probe);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Probe names appear in campaign summaries, JSON and profile declarations.
    use super::*;

    #[test]
    fn probe_names_are_the_serialized_names() {
        for probe in Probe::ALL {
            let json = serde_json::to_string(&probe).expect("a probe serializes");
            assert_eq!(json, format!("\"{}\"", probe.name()));
        }
        assert_eq!(Probe::PageSplitsCommit.name(), "page_splits_commit");
    }
}
