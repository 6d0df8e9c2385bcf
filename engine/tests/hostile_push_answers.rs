//! Regression: a push answer whose result gave the op's record the server id `""` was
//! accepted as plausible, and the empty string was stored as the record's server id —
//! an id no server issues, which every later write of the record then sent back. A push
//! answer is refused whole (the sync fails and is retried; the op goes back to `pending`)
//! when a result names an empty server id, like the other impossible answers.

use serde_json::{json, Value};
use sync_engine::wire::data_response;
use sync_engine::{testing, OpStatus, SyncEvent};

// Proves a push result with an empty server id is refused: no mapping is stored, the op
// waits to be sent again, and the app hears that the sync failed.
#[test]
fn a_push_result_with_an_empty_server_id_is_refused() {
    let (_dir, mut engine) = testing::open_temp_engine("acme");
    engine.set_auth_token("token-acme").expect("store token");
    let client_id = engine
        .create("Space", "s1", json!({ "name": "a" }))
        .expect("create");
    engine.sync_now().expect("sync now");
    let request = engine.poll_request().expect("a push");
    assert!(request.operation_name.starts_with("syncPush"));
    let variables = request.variables.to_json();
    let item = &variables["payload"][0];
    let result = json!({
        "opId": item["opId"], "clientId": client_id, "id": "",
        "success": true, "errorCode": null, "errorMessage": null,
        "version": 1, "updatedAt": item["updatedAt"], "conflict": null
    });
    let answer: Value = data_response(&request.operation_name, json!({ "results": [result] }));
    engine
        .handle_response(request.request_id, Ok(answer))
        .expect("a hostile answer is data, not an error");

    let record = engine.get(&client_id).expect("read").expect("the record");
    assert_eq!(
        record.server_id, None,
        "the empty id was stored as a mapping"
    );
    let ops = engine.queued_ops().expect("read the queue");
    assert_eq!(ops.len(), 1);
    assert_eq!(
        ops[0].status,
        OpStatus::Pending,
        "the op must be sent again"
    );
    let events: Vec<SyncEvent> = std::iter::from_fn(|| engine.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|event| matches!(event, SyncEvent::SyncFailed { .. })),
        "the app must hear the sync failed: {events:?}"
    );
}

// Proves a push answer that gives one server id to two records (a broken server) keeps
// the first mapping: the second record stays unmapped, both writes are acknowledged, and
// the answer's transaction commits (a second mapping would break the unique index of the records' server ids).
#[test]
fn a_server_id_given_to_two_records_maps_only_the_first() {
    let (_dir, mut engine) = testing::open_temp_engine("acme");
    engine.set_auth_token("token-acme").expect("store token");
    let first = engine
        .create("Space", "s1", json!({ "name": "a" }))
        .expect("create");
    let second = engine
        .create("Space", "s1", json!({ "name": "b" }))
        .expect("create");
    engine.sync_now().expect("sync now");
    let request = engine.poll_request().expect("a push");
    let results: Vec<Value> = request.variables.to_json()["payload"]
        .as_array()
        .expect("a payload")
        .iter()
        .map(|item| {
            json!({
                "opId": item["opId"], "clientId": item["clientId"], "id": "srv-same",
                "success": true, "errorCode": null, "errorMessage": null,
                "version": 1, "updatedAt": item["updatedAt"], "conflict": null
            })
        })
        .collect();
    assert_eq!(results.len(), 2, "both creates travel in one request");
    let answer: Value = data_response(&request.operation_name, json!({ "results": results }));
    engine
        .handle_response(request.request_id, Ok(answer))
        .expect("a broken answer is data, not an error");

    let mapped = |client_id: &str| engine.get(client_id).expect("read").expect("the record");
    assert_eq!(mapped(&first).server_id.as_deref(), Some("srv-same"));
    assert_eq!(
        mapped(&second).server_id,
        None,
        "the taken id was mapped twice"
    );
    assert!(
        engine.queued_ops().expect("read the queue").is_empty(),
        "both writes were acknowledged"
    );
}

/// A device whose `Space` cursor is `"5.srv-a"` (one sync answered by hand, nothing
/// queued), then one queued `Space` create and a sync started: the push request is in
/// hand, unanswered.
struct PushInHand {
    _dir: tempfile::TempDir,
    engine: sync_engine::Engine,
    client_id: String,
    request: sync_engine::wire::SyncRequest,
}

const DEVICE_CURSOR: &str = "5.srv-a";

impl PushInHand {
    fn new() -> PushInHand {
        let (dir, mut engine) = testing::open_temp_engine("acme");
        engine.set_auth_token("token-acme").expect("store token");
        engine.sync_now().expect("sync now");
        while let Some(request) = engine.poll_request() {
            assert!(request.operation_name.starts_with("syncPull"));
            let page = json!({
                "items": [], "deletedIds": [], "lastSyncAt": DEVICE_CURSOR,
                "versionHash": sync_engine::wire::version_hash([]), "hasMore": false
            });
            let answer = data_response(&request.operation_name, page);
            engine
                .handle_response(request.request_id, Ok(answer))
                .expect("an empty page");
        }
        assert_eq!(
            engine.cursor("Space").unwrap().as_deref(),
            Some(DEVICE_CURSOR)
        );
        let _ = std::iter::from_fn(|| engine.poll_event()).count();
        let client_id = engine
            .create("Space", "s1", json!({ "name": "a" }))
            .expect("create");
        engine.sync_now().expect("sync now");
        let request = engine.poll_request().expect("a push");
        assert_eq!(request.operation_name, "syncPushSpace");
        PushInHand {
            _dir: dir,
            engine,
            client_id,
            request,
        }
    }

    /// Answers the push with a success and the given cursors (`None`: the field is left
    /// out); returns the events the answer produced.
    fn answer(&mut self, before: Option<&str>, after: Option<&str>) -> Vec<SyncEvent> {
        let variables = self.request.variables.to_json();
        let item = &variables["payload"][0];
        let result = json!({
            "opId": item["opId"], "clientId": self.client_id, "id": "srv-b",
            "success": true, "errorCode": null, "errorMessage": null,
            "version": 1, "updatedAt": item["updatedAt"], "conflict": null
        });
        let mut response = json!({ "results": [result] });
        if let Some(before) = before {
            response["cursorBefore"] = json!(before);
        }
        if let Some(after) = after {
            response["cursorAfter"] = json!(after);
        }
        let answer = data_response(&self.request.operation_name, response);
        self.engine
            .handle_response(self.request.request_id, Ok(answer))
            .expect("an answer is data, not an error");
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }

    /// The answer was refused whole: nothing stored, the op waits, the sync failed.
    fn assert_refused(&mut self, events: &[SyncEvent]) {
        let record = self.engine.get(&self.client_id).unwrap().unwrap();
        assert_eq!(record.server_id, None, "a refused answer stored a mapping");
        let ops = self.engine.queued_ops().unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!(
            ops[0].status,
            OpStatus::Pending,
            "the op must be sent again"
        );
        assert_eq!(
            self.engine.cursor("Space").unwrap().as_deref(),
            Some(DEVICE_CURSOR),
            "a refused answer moved the cursor"
        );
        assert!(
            events
                .iter()
                .any(|event| matches!(event, SyncEvent::SyncFailed { .. })),
            "the app must hear the sync failed: {events:?}"
        );
    }

    /// The `lastSyncAt` of the next request, which must be the `Space` pull.
    fn next_space_pull_cursor(&mut self) -> Option<String> {
        let request = self
            .engine
            .poll_request()
            .expect("the pulls follow the push");
        assert_eq!(request.operation_name, "syncPullSpace");
        request.variables.to_json()["lastSyncAt"]
            .as_str()
            .map(str::to_owned)
    }
}

// Proves a push answer carrying only one of its two cursors is refused whole.
#[test]
fn a_push_answer_with_one_cursor_is_refused() {
    for (before, after) in [(Some(DEVICE_CURSOR), None), (None, Some("6.srv-b"))] {
        let mut device = PushInHand::new();
        let events = device.answer(before, after);
        device.assert_refused(&events);
    }
}

// Proves a push answer whose "after" cursor cannot follow its "before" cursor is refused
// whole: "after" is the start while "before" is not, or "after" is where the device
// already stood while "before" is not.
#[test]
fn a_push_answer_whose_after_cursor_precedes_before_is_refused() {
    for (before, after) in [(DEVICE_CURSOR, ""), ("6.srv-c", DEVICE_CURSOR)] {
        let mut device = PushInHand::new();
        let events = device.answer(Some(before), Some(after));
        device.assert_refused(&events);
    }
}

// Proves the skip itself: a device standing at "before" stores "after" with the results
// (and its next pull starts there); a device that does not stand at "before" (another
// commit came between) keeps its cursor and pulls from it; an answer without cursors
// changes nothing about the pull.
#[test]
fn only_a_device_standing_at_before_skips_its_own_writes() {
    let cases = [
        (Some(DEVICE_CURSOR), Some("6.srv-b"), "6.srv-b"),
        (Some("5.srv-z"), Some("6.srv-b"), DEVICE_CURSOR),
        (None, None, DEVICE_CURSOR),
    ];
    for (before, after, pulled_from) in cases {
        let mut device = PushInHand::new();
        let events = device.answer(before, after);
        assert!(
            !events
                .iter()
                .any(|event| matches!(event, SyncEvent::SyncFailed { .. })),
            "{events:?}"
        );
        let record = device.engine.get(&device.client_id).unwrap().unwrap();
        assert_eq!(record.server_id.as_deref(), Some("srv-b"));
        assert!(device.engine.queued_ops().unwrap().is_empty());
        assert_eq!(
            device.engine.cursor("Space").unwrap().as_deref(),
            Some(pulled_from)
        );
        assert_eq!(
            device.next_space_pull_cursor().as_deref(),
            Some(pulled_from)
        );
    }
}
