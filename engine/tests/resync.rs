//! Regression (issue 14): a server that keeps tombstones only for a retention window.
//!
//! A device offline for longer than the window holds a cursor older than tombstones the
//! server has since purged: the pages after it can no longer tell the device what was
//! deleted. Such a server answers the pull with `RESYNC_REQUIRED`. The engine took that
//! for an ordinary server error: the sync failed, the retry asked from the same cursor
//! and got the same answer, for ever, and the device kept showing a record deleted on
//! the server. It must pull the entity again from the start instead, forget the synced
//! records the server no longer has, and keep its pending ops and their records.

use serde_json::{json, Value};
use sync_engine::testing::{open_engine_in, EPOCH_MS};
use sync_engine::wire::{data_response, SyncPullVariables, SyncRequest};
use sync_engine::{Engine, ManualClock, SyncEvent};

/// More requests than any sync here needs.
const REQUESTS_MAX: usize = 40;

fn page(items: Value, last_sync_at: &str, version_hash: Option<&str>) -> Value {
    json!({"items": items, "deletedIds": [], "lastSyncAt": last_sync_at, "hasMore": false,
           "versionHash": version_hash})
}

fn space_row(n: u64) -> Value {
    json!({"id": format!("srv-{n}"), "clientId": format!("space-{n}"), "spaceId": "s1",
           "version": 1, "updatedAt": (EPOCH_MS << 16) + n, "data": {"name": format!("s{n}")}})
}

fn cursor_of(request: &SyncRequest) -> String {
    let variables: SyncPullVariables =
        serde_json::from_value(request.variables.to_json().into_owned()).expect("pull variables");
    variables.last_sync_at.unwrap_or_default()
}

fn drive(engine: &mut Engine, server: &mut dyn FnMut(&SyncRequest) -> Value) -> Vec<SyncEvent> {
    let mut sent = 0;
    while let Some(request) = engine.poll_request() {
        sent += 1;
        assert!(sent <= REQUESTS_MAX, "the engine keeps asking");
        let answer = server(&request);
        let _ = engine.handle_response(request.request_id, Ok(answer));
    }
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// The answer to a push request, `result` for each of its items.
fn push_answer(request: &SyncRequest, result: impl Fn(&Value) -> Value) -> Value {
    let variables = request.variables.to_json();
    let items = variables["payload"].as_array().expect("a push payload");
    let results: Vec<Value> = items.iter().map(result).collect();
    data_response(&request.operation_name, json!({"results": results}))
}

fn resync_required() -> Value {
    json!({"errors": [{"message": "cursor older than the retention window",
                       "extensions": {"code": "RESYNC_REQUIRED"}}]})
}

/// A device online once: it holds spaces 1 and 2 and the cursor after them (`c2`).
fn online_once(dir: &std::path::Path) -> Engine {
    let mut engine = open_engine_in(dir, "acme", ManualClock::new(EPOCH_MS), 3);
    engine.set_auth_token("token-acme").unwrap();
    engine.sync_now().unwrap();
    drive(&mut engine, &mut |request| {
        let operation = request.operation_name.as_str();
        let answer = match operation {
            "syncPullSpace" => page(json!([space_row(1), space_row(2)]), "c2", None),
            _ => page(json!([]), "", None),
        };
        data_response(operation, answer)
    });
    engine
}

// Proves that `RESYNC_REQUIRED` on a pull makes the device pull the entity again from the
// start, in the same sync: the synced record the server purged is forgotten, the synced
// record it still has stays, and a record created offline keeps its queued op, which is
// pushed as before.
#[test]
fn a_pull_too_old_for_the_server_pulls_the_entity_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut engine = online_once(dir.path());
    assert!(engine.get("space-1").unwrap().is_some());

    // Offline for long: the user creates a space. Meanwhile another device deleted space 1
    // and the server purged its tombstone.
    let created = engine
        .create("Space", "s1", json!({"name": "made offline"}))
        .unwrap();
    let mut pulls_from = Vec::new();
    engine.sync_now().unwrap();
    let events = drive(&mut engine, &mut |request| {
        let operation = request.operation_name.as_str();
        if operation == "syncPushSpace" {
            return push_answer(request, |item| {
                json!({"opId": item["opId"], "success": true, "id": "srv-9",
                       "version": 1, "updatedAt": item["updatedAt"]})
            });
        }
        if operation != "syncPullSpace" {
            return data_response(operation, page(json!([]), "", None));
        }
        let cursor = cursor_of(request);
        pulls_from.push(cursor.clone());
        match cursor.as_str() {
            "c2" => resync_required(),
            "" | "c9" => {
                let mut own = space_row(9);
                own["clientId"] = json!(created);
                data_response(operation, page(json!([space_row(2), own]), "c9", None))
            }
            other => panic!("a pull from {other:?}"),
        }
    });
    assert!(
        events.contains(&SyncEvent::SyncCompleted),
        "the sync completes: {events:?}"
    );
    assert!(
        pulls_from.contains(&String::new()),
        "pulled again from the start: {pulls_from:?}"
    );
    assert!(
        engine.get("space-1").unwrap().is_none(),
        "the record the server no longer has is gone"
    );
    assert!(engine.get("space-2").unwrap().is_some());
    assert!(engine.get(&created).unwrap().is_some());
    assert!(
        engine.queued_ops().unwrap().is_empty(),
        "the offline create was pushed"
    );
}

/// The server refused the pushed edit as a concurrent write: its own row is `data` at
/// version 2.
fn conflicting(item: &Value, data: Value) -> Value {
    json!({
        "opId": item["opId"], "clientId": item["clientId"], "id": item["id"],
        "success": false, "errorCode": "CONFLICT", "errorMessage": "concurrent writes",
        "version": null, "updatedAt": null,
        "conflict": {"serverData": data, "serverVersion": 2,
                     "serverUpdatedAt": item["updatedAt"], "serverIsDeleted": false}
    })
}

// Regression (a `lite` simulator seed with power loss and bounded retention): a record in
// conflict, its edit waiting for the user, that the server then deleted and whose
// tombstone it purged. The whole pass after `RESYNC_REQUIRED` did not list the record, and
// the device kept it for the waiting edit; "use server" then adopted the conflict's stale
// server side, and the record lived again on this device alone, its checksum at odds with
// the server's. Deletes win, as for a tombstone pulled in time: the record is gone, its
// conflict closed and its waiting edit superseded.
#[test]
fn a_whole_pass_deletes_a_record_in_conflict_that_the_server_deleted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut engine = online_once(dir.path());

    // The user edits space 1 while another device edits it too: the push meets a conflict.
    engine.update("space-1", json!({"name": "local"})).unwrap();
    let edit = engine.queued_ops().unwrap()[0].op_id.clone();
    engine.sync_now().unwrap();
    drive(&mut engine, &mut |request| {
        let operation = request.operation_name.as_str();
        if operation == "syncPushSpace" {
            return push_answer(request, |item| conflicting(item, json!({"name": "other"})));
        }
        data_response(operation, page(json!([]), "c2", None))
    });
    assert_eq!(engine.list_conflicts().unwrap().len(), 1);

    // Before the user decides, the other device deletes space 1 and the server purges the
    // tombstone: the device's cursor is too old, and the pass from the start lists space 2
    // alone.
    engine.sync_now().unwrap();
    let events = drive(&mut engine, &mut |request| {
        let operation = request.operation_name.as_str();
        assert_ne!(operation, "syncPushSpace", "an edit waiting for the user");
        if operation != "syncPullSpace" {
            return data_response(operation, page(json!([]), "", None));
        }
        match cursor_of(request).as_str() {
            "c2" => resync_required(),
            "" => data_response(operation, page(json!([space_row(2)]), "c3", None)),
            other => panic!("a pull from {other:?}"),
        }
    });
    assert!(
        events.contains(&SyncEvent::SyncCompleted),
        "the sync completes: {events:?}"
    );
    assert!(
        events.contains(&SyncEvent::OpSuperseded {
            op_id: edit,
            client_id: "space-1".to_owned()
        }),
        "the waiting edit is superseded: {events:?}"
    );
    assert!(
        engine.get("space-1").unwrap().is_none(),
        "the record the server deleted is gone"
    );
    assert!(engine.list_conflicts().unwrap().is_empty());
    assert!(engine.queued_ops().unwrap().is_empty());
    assert!(engine.get("space-2").unwrap().is_some());
    engine.check_invariants().expect("invariants hold");
}
