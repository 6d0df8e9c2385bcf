//! Regression (issue 14): a storage failure inside a sync handler (the database busy
//! with another connection's write, or full) came back from the call as a `Storage` error
//! but left the state machine mid-run: `Pushing` or `Pulling` with no request in flight
//! and the pushed ops still `sending`. Every later trigger (the retry timer, "sync now")
//! only asked for one more sync after the one that would never end, so the device never
//! synced again until the app restarted.
//!
//! Now the call still returns the typed error, the failed transaction writes nothing, the
//! machine goes back to idle with the ops `pending` (at once, or at the next sync's start
//! when the failure also blocks that write), the app hears `SyncFailed` with a storage
//! reason, and the retry timer runs the next sync. Local writes under the same faults fail
//! whole and leave the engine usable.

use rusqlite::Connection;
use serde_json::{json, Value};
use sync_engine::testing::{example_registry, EPOCH_MS};
use sync_engine::wire::data_response;
use sync_engine::{
    DbLocation, Engine, EngineOptions, Env, ManualClock, OpStatus, SeededEntropy, StorageErrorKind,
    SyncError, SyncEvent, SyncFailure, TenantId, WriteError,
};
use tempfile::TempDir;

const ENTITIES: [&str; 3] = ["Space", "Group", "Identity"];

/// One device: its engine (which waits for no lock), its clock, and a second connection
/// to its database, as an app's second process would hold.
struct Device {
    _dir: TempDir,
    clock: ManualClock,
    engine: Engine,
    other_process: Connection,
}

impl Device {
    fn new() -> Device {
        let dir = tempfile::tempdir().expect("temporary directory");
        let location = DbLocation::new(dir.path());
        let tenant = TenantId::parse("acme").expect("a valid tenant id");
        let path = location.db_path(&tenant);
        let mut options = EngineOptions::new(location, tenant, example_registry());
        options.busy_timeout_ms = 0;
        let clock = ManualClock::new(EPOCH_MS);
        let mut engine = Engine::open(options, Env::new(clock.clone(), SeededEntropy::new(7)))
            .expect("open the engine");
        engine
            .set_auth_token("token-acme")
            .expect("store the token");
        let other_process = Connection::open(path).expect("a second connection");
        Device {
            _dir: dir,
            clock,
            engine,
            other_process,
        }
    }

    /// The other process takes the write lock and keeps it until `release`.
    fn hold_write_lock(&self) {
        self.other_process
            .execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
    }

    fn release_write_lock(&self) {
        self.other_process
            .execute_batch("ROLLBACK")
            .expect("release the write lock");
    }

    fn events(&mut self) -> Vec<SyncEvent> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }

    /// Answers the next request, a push, with every op accepted.
    fn accept_push(&mut self) -> Result<(), SyncError> {
        let request = self.engine.poll_request().expect("a push request");
        assert!(
            request.operation_name.starts_with("syncPush"),
            "{request:?}"
        );
        let results: Vec<Value> = request.variables.to_json()["payload"]
            .as_array()
            .expect("a payload")
            .iter()
            .map(|item| {
                json!({"opId": item["opId"], "clientId": item["clientId"],
                       "id": format!("srv-{}", item["clientId"].as_str().unwrap()),
                       "success": true, "version": 1, "updatedAt": item["updatedAt"]})
            })
            .collect();
        let answer = data_response(&request.operation_name, json!({ "results": results }));
        self.engine.handle_response(request.request_id, Ok(answer))
    }

    /// Answers the next request, a pull of `entity`, with one last page holding `items`.
    fn answer_pull(&mut self, entity: &str, items: Value) -> Result<(), SyncError> {
        let request = self.engine.poll_request().expect("a pull request");
        let operation = format!("syncPull{entity}");
        assert_eq!(request.operation_name, operation);
        let page = json!({"items": items, "deletedIds": [], "lastSyncAt": "c1", "hasMore": false});
        self.engine
            .handle_response(request.request_id, Ok(data_response(&operation, page)))
    }

    /// Answers every pull of a sync with an empty page; the sync must complete.
    fn finish_with_empty_pulls(&mut self) {
        for entity in ENTITIES {
            self.answer_pull(entity, json!([])).expect("an empty page");
        }
        assert_eq!(self.events().last(), Some(&SyncEvent::SyncCompleted));
    }

    /// Moves the clock to the retry time the failure named and fires the timers.
    fn wait_for_retry(&mut self, retry_at_ms: u64) {
        self.clock.set_ms(retry_at_ms);
        self.engine.handle_timeout().expect("the retry timer fires");
    }

    fn op_statuses(&self) -> Vec<OpStatus> {
        let ops = self.engine.queued_ops().expect("read the queue");
        ops.iter().map(|op| op.status).collect()
    }
}

fn storage_kind(error: &SyncError) -> StorageErrorKind {
    match error {
        SyncError::Storage(error) => error.kind(),
        other => panic!("expected a storage error, got {other:?}"),
    }
}

/// The storage failure the app heard about, and when the engine retries.
fn storage_failure(events: &[SyncEvent]) -> (StorageErrorKind, u64) {
    let failure = events.iter().find_map(|event| match event {
        SyncEvent::SyncFailed {
            reason: SyncFailure::Storage { kind, .. },
            retry_at_ms,
        } => Some((*kind, retry_at_ms.expect("a storage failure is retried"))),
        _ => None,
    });
    failure.unwrap_or_else(|| panic!("no storage failure among {events:?}"))
}

/// `count` new `Space` rows of about 1.5 KiB each: enough to need new pages.
fn large_items(count: usize, stamp: &Value) -> Value {
    let note = "n".repeat(1500);
    (0..count)
        .map(|index| {
            json!({"id": format!("srv-new-{index}"), "clientId": format!("client-new-{index}"),
                   "spaceId": "s1", "version": 1, "updatedAt": stamp,
                   "data": {"name": format!("new {index}"), "note": note}})
        })
        .collect()
}

// Proves a push answer that meets a write lock held by another process fails with a
// typed busy error, stores none of its results, and leaves the device able to sync: once
// the lock is gone, the retry timer sends the op again and the sync completes.
#[test]
fn a_push_answer_meeting_a_busy_database_is_retried_by_the_timer() {
    let mut device = Device::new();
    let client_id = device
        .engine
        .create("Space", "s1", json!({"name": "a"}))
        .expect("create");
    device.engine.sync_now().expect("sync now");
    device.hold_write_lock();

    let error = device
        .accept_push()
        .expect_err("the answer cannot be stored");
    assert_eq!(storage_kind(&error), StorageErrorKind::Busy);
    let record = device
        .engine
        .get(&client_id)
        .expect("read")
        .expect("record");
    assert_eq!(
        record.server_id, None,
        "a result of the refused answer was stored"
    );
    assert_eq!(device.op_statuses().len(), 1, "the op must stay queued");
    assert!(device.engine.poll_request().is_none());
    let (kind, retry_at_ms) = storage_failure(&device.events());
    assert_eq!(kind, StorageErrorKind::Busy);
    assert!(!device.engine.status().expect("status").syncing);

    device.release_write_lock();
    device.wait_for_retry(retry_at_ms);
    assert_eq!(device.op_statuses(), [OpStatus::Sending]);
    device.accept_push().expect("the retried push is stored");
    device.finish_with_empty_pulls();
    let record = device
        .engine
        .get(&client_id)
        .expect("read")
        .expect("record");
    assert_eq!(
        record.server_id.as_deref(),
        Some(format!("srv-{client_id}").as_str())
    );
    assert!(device.op_statuses().is_empty());
}

// Proves a pull page that needs more room than the full disk gives fails with a typed
// "full" error and writes nothing of the page (no record, no cursor), and that the next
// sync after the disk has room pulls the same page again and completes.
#[test]
fn a_pull_page_on_a_full_disk_writes_nothing_and_the_next_sync_pulls_it_again() {
    let mut device = Device::new();
    let client_id = device
        .engine
        .create("Space", "s1", json!({"name": "a"}))
        .expect("create");
    let stamp = serde_json::to_value(
        device
            .engine
            .get(&client_id)
            .expect("read")
            .expect("record")
            .updated_at,
    )
    .expect("a stamp serializes");
    device.engine.sync_now().expect("sync now");
    device.accept_push().expect("the push answer is stored");
    device
        .engine
        .simulate_full_disk(true)
        .expect("fill the disk");

    let error = device
        .answer_pull("Space", large_items(40, &stamp))
        .expect_err("the page cannot be stored");
    assert_eq!(storage_kind(&error), StorageErrorKind::Full);
    let spaces = device
        .engine
        .list("Space", None, Default::default())
        .expect("list");
    assert_eq!(spaces.len(), 1, "a row of the refused page was stored");
    let (kind, _) = storage_failure(&device.events());
    assert_eq!(kind, StorageErrorKind::Full);

    device
        .engine
        .simulate_full_disk(false)
        .expect("free the disk");
    device.engine.sync_now().expect("sync now");
    let request = device.engine.poll_request().expect("a pull request");
    assert_eq!(request.operation_name, "syncPullSpace");
    assert_eq!(
        request.variables.to_json()["lastSyncAt"],
        Value::Null,
        "the cursor of the refused page was stored"
    );
    let page = json!({"items": large_items(40, &stamp), "deletedIds": [], "lastSyncAt": "c1",
                      "hasMore": false});
    device
        .engine
        .handle_response(request.request_id, Ok(data_response("syncPullSpace", page)))
        .expect("the page is stored");
    for entity in ["Group", "Identity"] {
        device
            .answer_pull(entity, json!([]))
            .expect("an empty page");
    }
    assert_eq!(device.events().last(), Some(&SyncEvent::SyncCompleted));
    let spaces = device
        .engine
        .list("Space", None, Default::default())
        .expect("list");
    assert_eq!(spaces.len(), 41);
}

// Proves a sync that cannot even mark its ops `sending` (the lock is taken) fails typed
// and is retried by the timer, instead of staying in `Pushing` forever.
#[test]
fn a_sync_that_cannot_mark_its_ops_sending_is_retried_by_the_timer() {
    let mut device = Device::new();
    device
        .engine
        .create("Space", "s1", json!({"name": "a"}))
        .expect("create");
    device.hold_write_lock();
    let error = device
        .engine
        .sync_now()
        .expect_err("the marks cannot commit");
    assert_eq!(storage_kind(&error), StorageErrorKind::Busy);
    assert_eq!(device.op_statuses(), [OpStatus::Pending]);
    let (_, retry_at_ms) = storage_failure(&device.events());

    device.release_write_lock();
    device.wait_for_retry(retry_at_ms);
    device.accept_push().expect("the push answer is stored");
    device.finish_with_empty_pulls();
    assert!(device.op_statuses().is_empty());
}

// Proves local writes on a busy or full database fail with the typed error and write
// nothing half (no record without its op, no op without its record), and that the same
// writes succeed once the fault is gone.
#[test]
fn local_writes_under_busy_and_full_fail_whole_and_the_engine_stays_usable() {
    let mut device = Device::new();
    let kept = device
        .engine
        .create("Space", "s1", json!({"name": "kept"}))
        .expect("create");

    device.hold_write_lock();
    match device.engine.create("Space", "s1", json!({"name": "b"})) {
        Err(WriteError::Storage(error)) => assert_eq!(error.kind(), StorageErrorKind::Busy),
        other => panic!("expected a busy error, got {other:?}"),
    }
    match device.engine.update(&kept, json!({"name": "changed"})) {
        Err(WriteError::Storage(error)) => assert_eq!(error.kind(), StorageErrorKind::Busy),
        other => panic!("expected a busy error, got {other:?}"),
    }
    device.release_write_lock();
    let record = device.engine.get(&kept).expect("read").expect("record");
    assert_eq!(Value::Object(record.data), json!({"name": "kept"}));
    assert_eq!(device.op_statuses().len(), 1);

    device
        .engine
        .simulate_full_disk(true)
        .expect("fill the disk");
    let note = "n".repeat(1500);
    let mut refused = None;
    for index in 0..40 {
        match device.engine.create(
            "Space",
            "s1",
            json!({"name": format!("big {index}"), "note": note}),
        ) {
            Ok(_) => {}
            Err(WriteError::Storage(error)) => {
                refused = Some(error.kind());
                break;
            }
            Err(other) => panic!("expected a full disk, got {other:?}"),
        }
    }
    assert_eq!(
        refused,
        Some(StorageErrorKind::Full),
        "the disk never filled"
    );
    let records = device
        .engine
        .list("Space", None, Default::default())
        .expect("list");
    assert_eq!(
        records.len(),
        device.op_statuses().len(),
        "a record without its op, or an op without its record"
    );
    device
        .engine
        .simulate_full_disk(false)
        .expect("free the disk");
    device
        .engine
        .create("Space", "s1", json!({"name": "after", "note": note}))
        .expect("a write after the disk has room");
    device
        .engine
        .update(&kept, json!({"name": "changed"}))
        .expect("an update after the lock is gone");
}
