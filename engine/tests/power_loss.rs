//! Regression (issue 14): a power loss must never take back what left the device.
//!
//! The engine runs WAL with `synchronous = NORMAL`: a commit is not synced, and a power
//! loss may take every transaction since the last checkpoint. A push used to leave with
//! its writes only in the WAL. After a power loss the device then no longer held writes
//! the server had applied, and its clock resumed below stamps it had already sent: with
//! its wall clock behind, it handed the same stamps out again. The engine now makes every
//! stamp, id and `opId` it issued durable (a checkpoint) before a push carrying them
//! leaves, and a push whose barrier cannot complete does not leave.

use serde_json::{json, Value};
use sync_engine::testing::{open_engine_in, EPOCH_MS};
use sync_engine::wire::SyncRequest;
use sync_engine::{
    DbLocation, Engine, ManualClock, StorageErrorKind, SyncEvent, SyncFailure, TenantId,
};

const TENANT: &str = "acme";

fn db_path(dir: &std::path::Path) -> std::path::PathBuf {
    DbLocation::new(dir).db_path(&TenantId::parse(TENANT).unwrap())
}

/// The items of a push request.
fn push_items(request: &SyncRequest) -> Vec<Value> {
    assert!(
        request.operation_name.starts_with("syncPush"),
        "a push, not {}",
        request.operation_name
    );
    request.variables.to_json()["payload"]
        .as_array()
        .expect("a push carries its payload")
        .clone()
}

fn create_spaces(engine: &mut Engine, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            engine
                .create("Space", "s1", json!({"name": format!("space {n}")}))
                .expect("create")
        })
        .collect()
}

// Proves that once a push request is out, the database file alone — what a power loss
// that keeps none of the unsynced WAL leaves — holds every write the request carries,
// with its queued op, and a clock that resumes above every stamp the request carries,
// even when the device's wall clock has gone back.
#[test]
fn what_a_push_carries_is_durable_before_it_leaves() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(EPOCH_MS);
    let mut engine = open_engine_in(dir.path(), TENANT, clock.clone(), 3);
    engine.set_auth_token("token-acme").unwrap();
    let created = create_spaces(&mut engine, 3);
    engine.sync_now().unwrap();
    let request = engine.poll_request().expect("the sync pushes");
    let items = push_items(&request);
    assert_eq!(items.len(), 3);

    // The power goes: only the synced bytes survive. The WAL past the last checkpoint is
    // not synced, so the database file alone is a state a power loss may leave.
    let after_loss = tempfile::tempdir().expect("temporary directory");
    std::fs::copy(db_path(dir.path()), db_path(after_loss.path())).expect("copy the database");
    drop(engine);

    // The device comes back with its wall clock a minute behind.
    let mut reopened = open_engine_in(
        after_loss.path(),
        TENANT,
        ManualClock::new(EPOCH_MS - 60_000),
        4,
    );
    let queued: Vec<String> = reopened
        .queued_ops()
        .unwrap()
        .into_iter()
        .map(|op| op.op_id)
        .collect();
    for (item, client_id) in items.iter().zip(&created) {
        assert_eq!(item["clientId"], json!(client_id));
        assert!(
            reopened.get(client_id).unwrap().is_some(),
            "{client_id} left the device in a push and vanished in the power loss"
        );
        let op_id = item["opId"].as_str().unwrap();
        assert!(
            queued.iter().any(|queued| queued == op_id),
            "the op {op_id} the push carried is still queued"
        );
    }
    let sent_max = items
        .iter()
        .map(|item| item["updatedAt"].as_u64().expect("a stamp"))
        .max()
        .unwrap();
    let next = create_spaces(&mut reopened, 1).pop().unwrap();
    let stamp = reopened.get(&next).unwrap().unwrap().updated_at.0;
    assert!(
        stamp > sent_max,
        "a stamp issued after the power loss ({stamp}) must be above every stamp that left ({sent_max})"
    );
}

// Proves that a push whose barrier cannot complete — another connection reads a snapshot
// older than the writes, so the checkpoint cannot copy them — does not leave: the sync
// fails busy, nothing is sent, and the retry sends once the reader is gone.
#[test]
fn a_push_whose_writes_cannot_be_made_durable_waits() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(EPOCH_MS);
    let mut engine = open_engine_in(dir.path(), TENANT, clock.clone(), 3);
    engine.set_auth_token("token-acme").unwrap();

    let reader = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    reader
        .query_row("SELECT count(*) FROM records", [], |_| Ok(()))
        .unwrap();
    create_spaces(&mut engine, 2);

    let error = engine.sync_now().expect_err("the barrier cannot complete");
    assert!(
        error.to_string().contains("durability barrier"),
        "a typed storage error says why: {error}"
    );
    assert_eq!(
        engine.poll_request(),
        None,
        "nothing leaves before it is durable"
    );
    let events: Vec<SyncEvent> = std::iter::from_fn(|| engine.poll_event()).collect();
    let retry_at_ms = events
        .iter()
        .find_map(|event| match event {
            SyncEvent::SyncFailed {
                reason: SyncFailure::Storage { kind, .. },
                retry_at_ms,
            } => {
                assert_eq!(*kind, StorageErrorKind::Busy);
                *retry_at_ms
            }
            _ => None,
        })
        .expect("the sync failed busy and is retried");
    assert!(engine
        .queued_ops()
        .unwrap()
        .iter()
        .all(|op| op.status == sync_engine::OpStatus::Pending));

    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    clock.set_ms(retry_at_ms);
    engine.handle_timeout().unwrap();
    let request = engine.poll_request().expect("the retry pushes");
    assert_eq!(push_items(&request).len(), 2);
}
