//! Why a sync (or a force from the server) stopped early: [`SyncFailure`], the reason a
//! `SyncFailed` or `ForceFailed` event carries, as a type an app matches on instead of
//! text it parses. This module names reasons only; deciding to fail and to retry stays in
//! `sync.rs`.

use crate::error::StorageErrorKind;
use crate::sync::TransportErrorKind;
use crate::wire::ErrorCode;

/// Why a sync stopped early. A failed sync is retried by the engine's backoff timer
/// (`retry_at_ms` of the event) unless the reason is [`SyncFailure::AuthRequired`], which
/// waits for the app to set a new token; a failed force is not retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncFailure {
    /// The server refused the auth token (`UNAUTHORIZED`).
    #[error("unauthorized: {message}")]
    AuthRequired { message: String },
    /// The server answered with an error for the whole request, or for one op a retry may
    /// cure (`code`, when it named one).
    #[error("server error: {message}")]
    ServerError {
        code: Option<ErrorCode>,
        message: String,
    },
    /// An answer no correct server gives — malformed, not matching its request, carrying
    /// impossible versions, stamps, ids or cursors, or a page reaching outside its entity.
    /// It was refused whole and changed nothing.
    #[error("{reason}")]
    InvalidAnswer { reason: String },
    /// The request got no answer; it may or may not have reached the server.
    #[error("transport: {message}")]
    Transport {
        kind: TransportErrorKind,
        message: String,
    },
    /// A force from the server was confirmed while the device was offline: nothing was
    /// sent.
    #[error("offline: nothing was sent")]
    Offline,
    /// The app abandoned it (a wipe, a logout, another force).
    #[error("cancelled")]
    Cancelled,
    /// The server's pull pages stopped advancing: a page said more rows follow but handed
    /// back the cursor its request sent (or one already passed in the same run of pages),
    /// so asking again would ask for the same page forever. The page was refused whole;
    /// the pages committed before it stay, and the retry timer pulls from `cursor` again.
    #[error("the pages of {entity} stopped advancing at cursor {cursor:?}")]
    PagingStalled { entity: String, cursor: String },
    /// The device's database failed a write the sync needed (full, or locked by another
    /// connection). The call that met it returned the same failure as
    /// [`SyncError::Storage`](crate::SyncError::Storage); nothing of the failed
    /// transaction was written, and the retry timer tries again.
    #[error("storage: {message}")]
    Storage {
        kind: StorageErrorKind,
        message: String,
    },
}

impl SyncFailure {
    /// The failure a storage error ends a sync with.
    pub(crate) fn storage(error: &crate::error::StorageError) -> SyncFailure {
        SyncFailure::Storage {
            kind: error.kind(),
            message: error.to_string(),
        }
    }

    /// Whether a sync that failed for this reason is retried by the backoff timer.
    pub(crate) fn is_transient(&self) -> bool {
        !matches!(self, SyncFailure::AuthRequired { .. })
    }

    pub(crate) fn invalid_answer(reason: impl Into<String>) -> SyncFailure {
        SyncFailure::InvalidAnswer {
            reason: reason.into(),
        }
    }
}
