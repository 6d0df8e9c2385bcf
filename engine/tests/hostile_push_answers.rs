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
    let item = &request.variables["payload"][0];
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
