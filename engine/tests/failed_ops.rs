//! Failed ops under the app's control. A rejected op used to stay `failed` in the queue
//! for ever: `status().failed_ops` never went back to 0 and the app could neither read
//! why nor act. These tests prove the app reads each rejection's code and message, and
//! that a retry pushes the write again while a discard returns the record to the server's
//! state, each in one transaction that a kill leaves whole or not at all.
//!
//! The server is played by hand: every push item is answered by the test's closure, and
//! every pull gets one empty last page.

use serde_json::{json, Value};
use sync_engine::testing::{self, EPOCH_MS};
use sync_engine::wire::{data_response, ErrorCode, Operation};
use sync_engine::{
    CommitSite, CrashHook, CrashPoint, Engine, ManualClock, OpStatus, QueuedOp, Record, Rejection,
    SyncEvent, WhichFailed, WriteError,
};

/// One device of tenant `acme` with its token stored.
struct Device {
    dir: tempfile::TempDir,
    engine: Engine,
}

impl Device {
    fn new() -> Device {
        let (dir, mut engine) = testing::open_temp_engine("acme");
        engine.set_auth_token("token-acme").expect("store token");
        Device { dir, engine }
    }

    /// Runs one sync to its end: each push item is answered by `answer`, each pull with
    /// an empty last page. Returns the pushed items and the events.
    fn sync(&mut self, mut answer: impl FnMut(&Value) -> Value) -> (Vec<Value>, Vec<SyncEvent>) {
        self.engine.sync_now().expect("sync now");
        let mut pushed = Vec::new();
        while let Some(request) = self.engine.poll_request() {
            let payload = if request.operation_name.starts_with("syncPush") {
                let variables = request.variables.to_json();
                let items = variables["payload"].as_array().expect("items");
                pushed.extend(items.iter().cloned());
                json!({ "results": items.iter().map(&mut answer).collect::<Vec<_>>() })
            } else {
                json!({
                    "items": [], "deletedIds": [], "lastSyncAt": "c1",
                    "versionHash": null, "hasMore": false
                })
            };
            let response = data_response(&request.operation_name, payload);
            self.engine
                .handle_response(request.request_id, Ok(response))
                .expect("an answer is data");
        }
        let events = std::iter::from_fn(|| self.engine.poll_event()).collect();
        (pushed, events)
    }

    /// Creates a `Space` named `name` and syncs it: the server stores it as version 1.
    fn synced_space(&mut self, name: &str) -> String {
        let client_id = self
            .engine
            .create("Space", "s1", json!({ "name": name }))
            .expect("create");
        self.sync(|item| accepted(item, 1));
        assert!(self.engine.queued_ops().unwrap().is_empty());
        client_id
    }

    fn record(&self, client_id: &str) -> Record {
        self.engine.get(client_id).unwrap().expect("the record")
    }

    /// Everything durable a failed-op call may change.
    fn state(&self) -> (Vec<Record>, Vec<QueuedOp>) {
        (
            self.engine.all_records().unwrap(),
            self.engine.queued_ops().unwrap(),
        )
    }

    fn failed_count(&self) -> u64 {
        self.engine.status().unwrap().failed_ops
    }

    fn assert_consistent(&self) {
        self.engine.check_invariants().expect("invariants hold");
    }
}

/// The server took the item as `version`.
fn accepted(item: &Value, version: i64) -> Value {
    let server_id = item["id"].as_str().map_or_else(
        || format!("srv-{}", item["clientId"].as_str().unwrap()),
        str::to_owned,
    );
    json!({
        "opId": item["opId"], "clientId": item["clientId"], "id": server_id,
        "success": true, "errorCode": null, "errorMessage": null,
        "version": version, "updatedAt": item["updatedAt"], "conflict": null
    })
}

/// The server refused the item for good, with `code` (none: `null`) and, when given, its
/// own row (data, version).
fn rejected(item: &Value, code: Option<ErrorCode>, server_row: Option<(Value, i64)>) -> Value {
    let conflict = server_row.map(|(data, version)| {
        json!({
            "serverData": data, "serverVersion": version,
            "serverUpdatedAt": item["updatedAt"], "serverIsDeleted": false
        })
    });
    json!({
        "opId": item["opId"], "clientId": item["clientId"], "id": item["id"],
        "success": false, "errorCode": code, "errorMessage": "title too long",
        "version": null, "updatedAt": null, "conflict": conflict
    })
}

fn name_of(record: &Record) -> &str {
    record.data["name"].as_str().expect("a name")
}

// Proves the app reads each failed op with the server's code (or none) and message, the
// op's record and operation, and when it failed.
#[test]
fn a_rejection_is_readable_with_its_code_and_message() {
    let mut device = Device::new();
    let first = device
        .engine
        .create("Space", "s1", json!({ "name": "a" }))
        .unwrap();
    let second = device
        .engine
        .create("Space", "s1", json!({ "name": "b" }))
        .unwrap();
    let (pushed, events) = device.sync(|item| {
        let code = (item["clientId"] == first.as_str()).then_some(ErrorCode::Validation);
        rejected(item, code, None)
    });
    assert_eq!(pushed.len(), 2);
    assert_eq!(
        events
            .iter()
            .filter(|event| matches!(event, SyncEvent::OpFailed { .. }))
            .count(),
        2
    );

    let failed = device.engine.failed_ops().unwrap();
    assert_eq!(device.failed_count(), 2);
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].op_id, pushed[0]["opId"].as_str().unwrap());
    assert_eq!(failed[0].client_id, first);
    assert_eq!(failed[0].entity, "Space");
    assert_eq!(failed[0].space_id, "s1");
    assert_eq!(failed[0].operation, Operation::Insert);
    assert_eq!(failed[0].payload["name"], "a");
    assert_eq!(
        failed[0].rejection,
        Rejection {
            code: Some(ErrorCode::Validation),
            message: "title too long".to_owned()
        }
    );
    assert_eq!(failed[0].failed_at_ms, EPOCH_MS as i64);
    assert_eq!(failed[1].client_id, second);
    assert_eq!(failed[1].rejection.code, None, "the server gave no code");
    device.assert_consistent();
}

// Proves a retry puts the op back under a new op id (the server replays an op id's stored
// answer) on the server's newest version the rejection carried (not the stale base it was
// written on), that the record shows the retried write again, and that the next sync
// pushes it and empties the queue.
#[test]
fn a_retry_pushes_the_write_again_on_the_newest_base() {
    let mut device = Device::new();
    let client_id = device.synced_space("a");
    device
        .engine
        .update(&client_id, json!({ "name": "b" }))
        .unwrap();
    // Another device wrote version 2 meanwhile; the server refuses this write and sends
    // its row, which the record takes.
    let (pushed, _) = device.sync(|item| {
        rejected(
            item,
            Some(ErrorCode::Validation),
            Some((json!({ "name": "theirs" }), 2)),
        )
    });
    let old_op_id = pushed[0]["opId"].as_str().unwrap().to_owned();
    assert_eq!(pushed[0]["baseVersion"], 1);
    assert_eq!(name_of(&device.record(&client_id)), "theirs");
    assert_eq!(device.failed_count(), 1);

    let retried = device.engine.retry_failed(WhichFailed::All).unwrap();
    assert_eq!(retried.len(), 1);
    assert_ne!(
        retried[0], old_op_id,
        "the server would replay the rejection"
    );
    assert_eq!(device.failed_count(), 0);
    assert_eq!(device.engine.status().unwrap().pending_ops, 1);
    assert!(device.engine.failed_ops().unwrap().is_empty());
    let record = device.record(&client_id);
    assert_eq!(name_of(&record), "b", "the device shows what it pushes");
    assert_eq!(record.base_version, 2);
    device.assert_consistent();

    let (pushed, events) = device.sync(|item| accepted(item, 3));
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0]["opId"], retried[0].as_str());
    assert_eq!(pushed[0]["baseVersion"], 2);
    assert_eq!(pushed[0]["data"]["name"], "b");
    assert!(events
        .iter()
        .any(|event| matches!(event, SyncEvent::SyncCompleted)));
    assert!(device.engine.queued_ops().unwrap().is_empty());
    let record = device.record(&client_id);
    assert_eq!((record.version, record.base_version), (3, 3));
    assert_eq!(name_of(&record), "b");
    device.assert_consistent();
}

// Proves a retried insert brings its record back (a rejected insert leaves a local
// tombstone) and is pushed again, while a retried update of a record the server deleted
// is refused: tombstones are final.
#[test]
fn a_retried_insert_brings_its_record_back() {
    let mut device = Device::new();
    let client_id = device
        .engine
        .create("Space", "s1", json!({ "name": "a" }))
        .unwrap();
    device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
    assert!(device.record(&client_id).is_deleted);

    device.engine.retry_failed(WhichFailed::All).unwrap();
    let record = device.record(&client_id);
    assert!(!record.is_deleted);
    assert_eq!((name_of(&record), record.base_version), ("a", 0));
    device.assert_consistent();
    let (pushed, _) = device.sync(|item| accepted(item, 1));
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0]["operation"], "insert");
    assert_eq!(device.record(&client_id).base_version, 1);
    assert!(device.engine.queued_ops().unwrap().is_empty());

    device
        .engine
        .update(&client_id, json!({ "name": "b" }))
        .unwrap();
    device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
    // The server deletes the record; the pull brings the tombstone.
    device.engine.sync_now().unwrap();
    while let Some(request) = device.engine.poll_request() {
        let page = json!({
            "items": [], "deletedIds": [format!("srv-{client_id}")], "lastSyncAt": "c2",
            "versionHash": null, "hasMore": false
        });
        let response = data_response(&request.operation_name, page);
        device
            .engine
            .handle_response(request.request_id, Ok(response))
            .unwrap();
    }
    assert!(device.record(&client_id).is_deleted);
    let before = device.state();
    let error = device.engine.retry_failed(WhichFailed::All).unwrap_err();
    assert!(matches!(&error, WriteError::RecordDeleted(id) if *id == client_id));
    assert_eq!(device.state(), before);
}

// Proves a retried op with a newer write of its record queued behind it leaves the record
// as it is and keeps its older stamp, so the newer write still wins after it.
#[test]
fn a_retry_behind_a_newer_write_keeps_the_newer_write_newer() {
    let mut device = Device::new();
    let client_id = device.synced_space("a");
    device
        .engine
        .update(&client_id, json!({ "name": "b" }))
        .unwrap();
    device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
    device
        .engine
        .update(&client_id, json!({ "name": "c" }))
        .unwrap();
    let newer = device.engine.queued_ops().unwrap().pop().unwrap();
    assert_eq!(newer.status, OpStatus::Pending);
    let failed = device.engine.failed_ops().unwrap().remove(0);

    let retried = device
        .engine
        .retry_failed(WhichFailed::Op(&failed.op_id))
        .unwrap();
    assert_eq!(name_of(&device.record(&client_id)), "c");
    let ops = device.engine.queued_ops().unwrap();
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].op_id, retried[0]);
    assert_eq!(ops[0].payload["name"], "b");
    assert!(ops[0].updated_at < ops[1].updated_at);
    assert_eq!(ops[1], newer, "the newer write is untouched");
    device.assert_consistent();
}

// Proves retrying every failed op of one record re-queues them in their order and leaves
// the newest of them newest: the record shows it, and it carries the newest stamp.
#[test]
fn retrying_all_of_a_record_keeps_its_newest_write_last() {
    let mut device = Device::new();
    let client_id = device.synced_space("a");
    for name in ["b", "c"] {
        device
            .engine
            .update(&client_id, json!({ "name": name }))
            .unwrap();
        device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
    }
    assert_eq!(device.failed_count(), 2);

    let retried = device.engine.retry_failed(WhichFailed::All).unwrap();
    assert_eq!(retried.len(), 2);
    let ops = device.engine.queued_ops().unwrap();
    let names: Vec<&Value> = ops.iter().map(|op| &op.payload["name"]).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(
        ops.iter().map(|op| op.op_id.clone()).collect::<Vec<_>>(),
        retried
    );
    let record = device.record(&client_id);
    assert_eq!(name_of(&record), "c");
    assert!(ops[0].updated_at < ops[1].updated_at);
    assert_eq!(ops[1].updated_at, record.updated_at);
    device.assert_consistent();

    let mut version = 1;
    let (pushed, _) = device.sync(|item| {
        version += 1;
        accepted(item, version)
    });
    assert_eq!(pushed.len(), 2);
    assert!(device.engine.queued_ops().unwrap().is_empty());
    let record = device.record(&client_id);
    assert_eq!((name_of(&record), record.version), ("c", 3));
}

// Proves a discard returns an updated record to the server's row exactly (version, stamp
// and data), and drops the pending write queued behind the failed one (it carries the
// discarded change too).
#[test]
fn a_discard_returns_an_updated_record_to_the_server_state() {
    let mut device = Device::new();
    let client_id = device.synced_space("a");
    let synced = device.record(&client_id);
    device
        .engine
        .update(&client_id, json!({ "name": "b" }))
        .unwrap();
    device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
    assert_eq!(name_of(&device.record(&client_id)), "b");
    device
        .engine
        .update(&client_id, json!({ "more": 1 }))
        .unwrap();
    let ops: Vec<String> = device
        .engine
        .queued_ops()
        .unwrap()
        .into_iter()
        .map(|op| op.op_id)
        .collect();
    assert_eq!(ops.len(), 2);

    let failed = device.engine.failed_ops().unwrap().remove(0);
    let dropped = device
        .engine
        .discard_failed(WhichFailed::Op(&failed.op_id))
        .unwrap();
    assert_eq!(dropped, ops);
    let record = device.record(&client_id);
    assert_eq!(record.data, *json!({ "name": "a" }).as_object().unwrap());
    assert_eq!((record.version, record.base_version), (1, 1));
    assert!(!record.is_deleted);
    assert_eq!(record, synced, "the server's row, its stamp included");
    assert!(device.engine.queued_ops().unwrap().is_empty());
    assert_eq!(device.failed_count(), 0);
    device.assert_consistent();
    let (pushed, _) = device.sync(|item| accepted(item, 9));
    assert!(pushed.is_empty(), "nothing is left to push");
}

// Proves a discarded insert the server never acknowledged removes its record, together
// with the update that travelled with it and was refused too.
#[test]
fn a_discard_removes_a_rejected_insert_and_the_writes_behind_it() {
    let mut device = Device::new();
    let client_id = device
        .engine
        .create("Space", "s1", json!({ "name": "a" }))
        .unwrap();
    device
        .engine
        .update(&client_id, json!({ "name": "b" }))
        .unwrap();
    let (pushed, _) = device.sync(|item| match item["operation"].as_str() {
        Some("insert") => rejected(item, Some(ErrorCode::Validation), None),
        _ => rejected(item, Some(ErrorCode::NotFound), None),
    });
    assert_eq!(pushed.len(), 2, "both writes travel in one request");
    assert!(device.record(&client_id).is_deleted, "gone for the app");
    assert_eq!(device.failed_count(), 2);

    let insert = pushed[0]["opId"].as_str().unwrap();
    let dropped = device
        .engine
        .discard_failed(WhichFailed::Op(insert))
        .unwrap();
    assert_eq!(dropped.len(), 2);
    assert_eq!(device.engine.get(&client_id).unwrap(), None);
    assert!(device.engine.queued_ops().unwrap().is_empty());
    assert_eq!(device.failed_count(), 0);
    device.assert_consistent();
}

// Proves an op id the queue does not hold, and an op that is not failed, are refused with
// a typed error by both calls, and that nothing changes.
#[test]
fn unknown_or_unfailed_ops_are_refused_and_change_nothing() {
    let mut device = Device::new();
    let client_id = device
        .engine
        .create("Space", "s1", json!({ "name": "a" }))
        .unwrap();
    device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
    let other = device
        .engine
        .create("Space", "s1", json!({ "name": "b" }))
        .unwrap();
    let pending = device.engine.queued_ops().unwrap().pop().unwrap();
    assert_eq!(pending.entity_id, other);
    let before = device.state();

    for retry in [true, false] {
        let act = |device: &mut Device, which| {
            if retry {
                device.engine.retry_failed(which)
            } else {
                device.engine.discard_failed(which)
            }
        };
        let error = act(&mut device, WhichFailed::Op("no-such-op")).unwrap_err();
        assert!(matches!(&error, WriteError::UnknownOp(id) if id == "no-such-op"));
        let error = act(&mut device, WhichFailed::Op(&pending.op_id)).unwrap_err();
        assert!(matches!(
            &error,
            WriteError::OpNotFailed { op_id, status: OpStatus::Pending } if *op_id == pending.op_id
        ));
        assert_eq!(device.state(), before);
    }
    assert!(device.record(&client_id).is_deleted);
    assert_eq!(device.failed_count(), 1);
}

// Proves a discard is refused while a write of the record is in flight (its answer is
// about to change the record), changing nothing, and goes through once it is answered.
#[test]
fn a_discard_waits_for_a_write_in_flight() {
    let mut device = Device::new();
    let client_id = device.synced_space("a");
    device
        .engine
        .update(&client_id, json!({ "name": "b" }))
        .unwrap();
    device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
    device
        .engine
        .update(&client_id, json!({ "name": "c" }))
        .unwrap();
    device.engine.sync_now().unwrap();
    let request = device
        .engine
        .poll_request()
        .expect("the push of the new write");
    let before = device.state();
    let error = device.engine.discard_failed(WhichFailed::All).unwrap_err();
    assert!(matches!(error, WriteError::SyncInProgress(_)), "{error:?}");
    assert_eq!(device.state(), before);

    let variables = request.variables.to_json();
    let item = &variables["payload"][0];
    let answer = data_response(
        &request.operation_name,
        json!({ "results": [accepted(item, 2)] }),
    );
    device
        .engine
        .handle_response(request.request_id, Ok(answer))
        .unwrap();
    let dropped = device.engine.discard_failed(WhichFailed::All).unwrap();
    assert_eq!(dropped.len(), 1);
    let record = device.record(&client_id);
    assert_eq!((name_of(&record), record.version), ("c", 2));
    device.assert_consistent();
}

/// Kills the app at `point` of the commit of `site`, and nowhere else.
struct KillAt(CrashPoint, CommitSite);

impl CrashHook for KillAt {
    fn should_crash(&mut self, _point: CrashPoint) -> bool {
        false
    }

    fn should_crash_at_commit(&mut self, point: CrashPoint, site: CommitSite) -> bool {
        point == self.0 && site == self.1
    }
}

// Proves a kill at a retry's or a discard's commit leaves, after a reopen, either the old
// state whole (killed before the commit) or the new state whole (killed right after it).
#[test]
fn a_kill_mid_retry_or_discard_leaves_one_state_whole() {
    for (site, point) in [
        (CommitSite::DiscardFailed, CrashPoint::BeforeCommit),
        (CommitSite::DiscardFailed, CrashPoint::AfterCommit),
        (CommitSite::RetryFailed, CrashPoint::BeforeCommit),
        (CommitSite::RetryFailed, CrashPoint::AfterCommit),
    ] {
        let mut device = Device::new();
        let client_id = device.synced_space("a");
        device
            .engine
            .update(&client_id, json!({ "name": "b" }))
            .unwrap();
        device.sync(|item| rejected(item, Some(ErrorCode::Validation), None));
        device
            .engine
            .update(&client_id, json!({ "more": 1 }))
            .unwrap();
        let before = device.state();

        device.engine.set_crash_hook(Box::new(KillAt(point, site)));
        let outcome = match site {
            CommitSite::DiscardFailed => device.engine.discard_failed(WhichFailed::All),
            _ => device.engine.retry_failed(WhichFailed::All),
        };
        assert!(matches!(outcome, Err(WriteError::Killed(at)) if at == point));
        assert!(
            device.engine.discard_failed(WhichFailed::All).is_err(),
            "dead"
        );
        let Device { dir, engine } = device;
        drop(engine);
        let engine = testing::open_engine_in(dir.path(), "acme", ManualClock::new(EPOCH_MS), 8);
        let device = Device { dir, engine };
        device.assert_consistent();
        let after = device.state();
        if point == CrashPoint::BeforeCommit {
            assert_eq!(
                after, before,
                "{site:?}: a kill before the commit changed something"
            );
            continue;
        }
        assert_eq!(device.failed_count(), 0, "{site:?}: the commit was lost");
        let record = device.record(&client_id);
        if site == CommitSite::DiscardFailed {
            assert!(after.1.is_empty());
            assert_eq!((name_of(&record), record.version), ("a", 1));
        } else {
            assert_eq!(after.1.len(), 2);
            assert_eq!(after.0, before.0, "the record stands past the retried op");
        }
    }
}
