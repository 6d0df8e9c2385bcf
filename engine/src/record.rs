//! The engine's public data types: records, queued operations, conflicts, status.
//!
//! Plain data; no storage access and no behaviour beyond small helpers.

use crate::hlc::HlcStamp;
use crate::wire::{ErrorCode, Operation};
use serde_json::{Map, Value};

/// A record as the app sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The UUID v7 the creating device gave it; the same on every device.
    pub client_id: String,
    /// The id the server assigned, once a push result or pull told us.
    pub server_id: Option<String>,
    pub entity: String,
    pub space_id: String,
    /// Local version: bumped by every local write, replaced by the server's on sync.
    pub version: i64,
    /// The last server version this copy is based on (0 before the server has it).
    pub base_version: i64,
    pub updated_at: HlcStamp,
    pub is_deleted: bool,
    pub data: Map<String, Value>,
}

/// Status of a queued operation.
///
/// The lowercase names are what `operation_queue.status` holds (and what the store's SQL
/// compares with), so strum derives both directions from this one definition.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[strum(serialize_all = "lowercase")]
pub enum OpStatus {
    Pending,
    Sending,
    Success,
    Failed,
}

impl OpStatus {
    /// The status as stored in SQL.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The status a stored SQL value names, or `None` for any other text.
    pub fn parse(raw: &str) -> Option<OpStatus> {
        raw.parse().ok()
    }
}

/// One row of `operation_queue`.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedOp {
    /// Queue position: ops are pushed in this order.
    pub seq: i64,
    /// Idempotency key (UUID v7): a retried op is recognised by the server.
    pub op_id: String,
    pub entity: String,
    pub operation: Operation,
    /// Client id of the record.
    pub entity_id: String,
    pub space_id: String,
    /// The record's full data after the write.
    pub payload: Map<String, Value>,
    pub base_version: i64,
    pub updated_at: HlcStamp,
    pub force: bool,
    pub status: OpStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
}

/// A write the server rejected for good, as [`crate::Engine::failed_ops`] reports it. It
/// stays in the queue until the app retries or discards it.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedOp {
    /// Queue position.
    pub seq: i64,
    /// The op id the server rejected.
    pub op_id: String,
    pub entity: String,
    /// Client id of the record.
    pub client_id: String,
    pub space_id: String,
    pub operation: Operation,
    /// The record's full data as the rejected write carried it.
    pub payload: Map<String, Value>,
    /// What the server said.
    pub rejection: Rejection,
    /// When the op failed (device clock, ms).
    pub failed_at_ms: i64,
}

/// Why the server rejected an op: its error code (none when the server gave none, or for
/// an op that failed before the engine stored codes) and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: Option<ErrorCode>,
    pub message: String,
}

/// Which failed ops [`crate::Engine::retry_failed`] and [`crate::Engine::discard_failed`]
/// act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhichFailed<'a> {
    /// The failed op with this op id.
    Op(&'a str),
    /// Every failed op.
    All,
}

/// A stored conflict: both sides of a concurrent write with equal stamps.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub id: i64,
    pub entity: String,
    pub client_id: String,
    pub server_id: Option<String>,
    pub space_id: String,
    pub local_version: i64,
    pub local_updated_at: HlcStamp,
    pub local_data: Map<String, Value>,
    pub server_version: i64,
    pub server_updated_at: HlcStamp,
    pub server_data: Map<String, Value>,
    pub server_is_deleted: bool,
}

/// One field that differs between the two sides of a conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDiff {
    pub field: String,
    /// `None` when the field is absent on that side.
    pub local: Option<Value>,
    pub server: Option<Value>,
}

impl Conflict {
    /// Only the fields that differ, sorted by name.
    pub fn changed_fields(&self) -> Vec<FieldDiff> {
        changed_fields(&self.local_data, &self.server_data)
    }
}

/// Fields whose values differ between two objects, sorted by name.
pub fn changed_fields(local: &Map<String, Value>, server: &Map<String, Value>) -> Vec<FieldDiff> {
    let mut names: Vec<&String> = local.keys().chain(server.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| local.get(*name) != server.get(*name))
        .map(|name| FieldDiff {
            field: name.clone(),
            local: local.get(name).cloned(),
            server: server.get(name).cloned(),
        })
        .collect()
}

/// What the app shows in its sync indicator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStatus {
    pub online: bool,
    pub syncing: bool,
    pub pending_ops: u64,
    pub failed_ops: u64,
    pub open_conflicts: u64,
    /// Wall-clock ms (device clock) when the last sync finished without error.
    pub last_successful_sync_ms: Option<u64>,
}

/// Options for listing records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub include_deleted: bool,
}

#[cfg(test)]
mod tests {
    //! The stored status text is part of every existing database and of the store's SQL
    //! literals: deriving it must not change it.
    use super::OpStatus;

    #[test]
    fn op_status_text_is_the_stored_text() {
        for (status, text) in [
            (OpStatus::Pending, "pending"),
            (OpStatus::Sending, "sending"),
            (OpStatus::Success, "success"),
            (OpStatus::Failed, "failed"),
        ] {
            assert_eq!(status.as_str(), text);
            assert_eq!(OpStatus::parse(text), Some(status));
        }
        assert_eq!(OpStatus::parse("Pending"), None);
        assert_eq!(OpStatus::parse(""), None);
    }
}
