//! What the sync machine says and hears, as types: why a sync started ([`SyncTrigger`]),
//! what it reports to the app ([`SyncEvent`]), and how a request failed on the way
//! ([`TransportError`]), with the blocking [`Transport`] an app may drive it over.
//!
//! Vocabulary only: nothing here runs a sync (`sync.rs` does).

use crate::failure::SyncFailure;
use crate::wire::{ErrorCode, SyncAnswer, SyncRequest};
use serde_json::Value;

/// Why a sync started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SyncTrigger {
    AppOpen,
    Interval,
    NetworkRegained,
    Manual,
    AfterWrite,
    Retry,
}

/// What the engine reports to the app: the sync's progress and outcomes, and the records
/// each committed transaction changed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A committed transaction changed what `get` and `list` show of these records of
    /// `entity`: one was created, removed (a wipe, a force replacement, a repair), or
    /// changed in any field of its [`Record`](crate::Record) (data, deletion, version,
    /// base version, stamp, server id, space). One event per entity per transaction,
    /// `ids` the client ids, sorted and without repeats, queued only once the transaction
    /// committed. Every kind of commit announces: local writes (create, `create_many`,
    /// update, delete), push results, pulled pages, conflict resolutions and
    /// auto-merges, forces both ways, wipes and repairs. A record written but shown
    /// exactly as before (the echo of a version it holds) is not announced, nor is a
    /// change of only the queue, the conflicts or the cursors.
    RecordsChanged {
        entity: String,
        ids: Vec<String>,
    },
    SyncStarted {
        trigger: SyncTrigger,
    },
    /// A sync finished with every step answered.
    SyncCompleted,
    /// Another process of the app (a background sync beside the UI) is syncing this
    /// database, so this one did not start a sync: it tries again at `retry_at_ms`
    /// (device clock). What this process wrote is in the database, and the running sync
    /// pushes whatever it finds queued.
    SyncDeferred {
        retry_at_ms: u64,
    },
    /// A sync stopped early; `retry_at_ms` is set for transient failures.
    SyncFailed {
        reason: SyncFailure,
        retry_at_ms: Option<u64>,
    },
    ConflictStored {
        conflict_id: i64,
        client_id: String,
    },
    /// A concurrent write resolved by the field-level auto-merge.
    ConflictAutoMerged {
        client_id: String,
    },
    /// The op was rejected for good; it stays `failed` in the queue.
    OpFailed {
        op_id: String,
        client_id: String,
        code: Option<ErrorCode>,
        message: String,
    },
    /// The op lost to a newer server write (or a delete) under the conflict policy.
    OpSuperseded {
        op_id: String,
        client_id: String,
    },
    /// The local checksum disagreed with the server's; a full pull follows.
    RepairStarted {
        entity: String,
    },
    /// The server no longer keeps what happened after the device's cursor (it answered
    /// `RESYNC_REQUIRED`): the entity is pulled again from the start, pending ops kept.
    ResyncStarted {
        entity: String,
    },
    /// A confirmed force-from-server replaced the entity's local records.
    ForceCompleted {
        entity: String,
    },
    /// A confirmed force-from-server ended without replacing anything: the entity's
    /// local records, queued ops and conflicts are as they were before it.
    ForceFailed {
        entity: String,
        reason: SyncFailure,
    },
}

/// A transport failure: the request may or may not have reached the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportError {
    pub kind: TransportErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    Unreachable,
    Timeout,
}

impl TransportError {
    pub fn unreachable(message: &str) -> TransportError {
        TransportError {
            kind: TransportErrorKind::Unreachable,
            message: message.to_owned(),
        }
    }

    pub fn timeout(message: &str) -> TransportError {
        TransportError {
            kind: TransportErrorKind::Timeout,
            message: message.to_owned(),
        }
    }
}

/// A blocking request/response channel, for apps and tests that do not need the
/// sans-IO interface.
pub trait Transport {
    /// Sends `request` and returns the response envelope.
    fn send(&mut self, request: &SyncRequest) -> Result<Value, TransportError>;

    /// Sends `request`, which it may take apart, and returns its answer. A transport to a
    /// server in the same process may hand the typed variables over as they are and answer
    /// typed ([`SyncAnswer::Push`], [`SyncAnswer::Pull`]), skipping JSON both ways; any
    /// other answers as [`Transport::send`] does.
    fn send_for_answer(&mut self, request: SyncRequest) -> Result<SyncAnswer, TransportError> {
        self.send(&request).map(SyncAnswer::Json)
    }
}
