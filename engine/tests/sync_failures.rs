//! Why a sync failed, as a type: each way a push can end early gives the app a
//! `SyncFailed` whose reason it matches on (no text to parse), and only an auth failure
//! waits for the app instead of being retried.

use serde_json::{json, Value};
use sync_engine::wire::{data_response, error_response, ErrorCode};
use sync_engine::{testing, SyncEvent, SyncFailure, TransportError, TransportErrorKind};

/// A device with one queued create whose push is answered by `answer`; returns the
/// `SyncFailed` event's reason and retry time.
fn push_answered_with(
    answer: impl FnOnce(&str) -> Result<Value, TransportError>,
) -> (SyncFailure, Option<u64>) {
    let (_dir, mut engine) = testing::open_temp_engine("acme");
    engine.set_auth_token("token-acme").expect("store token");
    engine
        .create("Space", "s1", json!({ "name": "a" }))
        .expect("create");
    engine.sync_now().expect("sync now");
    let request = engine.poll_request().expect("a push");
    engine
        .handle_response(request.request_id, answer(&request.operation_name))
        .expect("a failed request is data, not an error");
    let events: Vec<SyncEvent> = std::iter::from_fn(|| engine.poll_event()).collect();
    events
        .into_iter()
        .find_map(|event| match event {
            SyncEvent::SyncFailed {
                reason,
                retry_at_ms,
            } => Some((reason, retry_at_ms)),
            _ => None,
        })
        .expect("the sync failed")
}

// Proves each failure is told apart by its type, with what the server or transport said,
// and that every one but the refused token is retried.
#[test]
fn a_failed_sync_says_why_as_a_type() {
    let (reason, retry) =
        push_answered_with(|_| Ok(error_response(ErrorCode::Unauthorized, "token expired")));
    assert_eq!(
        reason,
        SyncFailure::AuthRequired {
            message: "token expired".to_owned()
        }
    );
    assert_eq!(retry, None, "a refused token waits for the app");

    let (reason, retry) =
        push_answered_with(|_| Ok(error_response(ErrorCode::ServerBusy, "try later")));
    assert_eq!(
        reason,
        SyncFailure::ServerError {
            code: Some(ErrorCode::ServerBusy),
            message: "try later".to_owned()
        }
    );
    assert!(retry.is_some());

    let (reason, retry) = push_answered_with(|_| Err(TransportError::timeout("no answer")));
    assert_eq!(
        reason,
        SyncFailure::Transport {
            kind: TransportErrorKind::Timeout,
            message: "no answer".to_owned()
        }
    );
    assert!(retry.is_some());

    let (reason, retry) =
        push_answered_with(|name| Ok(data_response(name, json!({ "results": 7 }))));
    assert!(
        matches!(reason, SyncFailure::InvalidAnswer { .. }),
        "{reason:?}"
    );
    assert_eq!(reason.to_string(), "malformed push response");
    assert!(retry.is_some());
}
