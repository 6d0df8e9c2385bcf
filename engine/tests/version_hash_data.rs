//! `versionHash` covers each record's data, not only its id and version: a server that
//! rewrote a record it stored (a normalized field, a server-set one) at the same version
//! used to leave the pushing device with its own copy for good, since the checksum over
//! `id:version` matched. Now the checksum differs, the device repairs, and it ends with
//! the server's data.

use serde_json::{json, Map, Value};
use sync_engine::testing::open_temp_engine;
use sync_engine::wire::{data_response, version_hash, SyncPushVariables};
use sync_engine::SyncEvent;

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().expect("an object")
}

// Proves a checksum over the server's rewritten data starts a repair that brings that
// data, and that a checksum over the device's own data starts none.
#[test]
fn data_rewritten_at_the_same_version_is_repaired() {
    for rewritten in [false, true] {
        let (_dir, mut engine) = open_temp_engine("acme");
        engine.set_auth_token("token-acme").unwrap();
        let client_id = engine
            .create("Space", "s1", json!({"name": " Trip "}))
            .unwrap();
        engine.sync_now().unwrap();
        let request = engine.poll_request().expect("a push");
        let variables: SyncPushVariables =
            serde_json::from_value(request.variables.into_json()).unwrap();
        let item = &variables.payload[0];
        let result = json!({"opId": item.op_id, "clientId": item.client_id, "id": "srv-1",
                            "success": true, "version": 1, "updatedAt": item.updated_at});
        let answer = data_response(&request.operation_name, json!({ "results": [result] }));
        engine
            .handle_response(request.request_id, Ok(answer))
            .unwrap();
        let stamp = item.updated_at;

        let pushed = object(json!({"name": " Trip "}));
        let stored = if rewritten {
            object(json!({"name": "Trip", "owner": "server"}))
        } else {
            pushed.clone()
        };
        let hash = version_hash([("srv-1", 1, &stored)]);
        let row = json!({"id": "srv-1", "clientId": client_id, "spaceId": "s1", "version": 1,
                         "updatedAt": stamp, "data": stored});
        let mut events = Vec::new();
        let mut space_pulls = 0;
        while let Some(request) = engine.poll_request() {
            let operation = request.operation_name.clone();
            let page = if operation == "syncPullSpace" {
                space_pulls += 1;
                // The first pull is an empty page, as from a server that (wrongly) let
                // the device skip its own row; a repair pull lists the row as stored.
                let items = if space_pulls > 1 {
                    json!([row])
                } else {
                    json!([])
                };
                json!({"items": items, "deletedIds": [], "lastSyncAt": "c1",
                       "versionHash": hash, "hasMore": false})
            } else {
                json!({"items": [], "deletedIds": [], "lastSyncAt": "", "hasMore": false,
                       "versionHash": version_hash([])})
            };
            engine
                .handle_response(request.request_id, Ok(data_response(&operation, page)))
                .unwrap();
            events.extend(std::iter::from_fn(|| engine.poll_event()));
        }
        let repaired = events
            .iter()
            .any(|event| matches!(event, SyncEvent::RepairStarted { .. }));
        assert_eq!(repaired, rewritten, "{events:?}");
        assert_eq!(events.last(), Some(&SyncEvent::SyncCompleted));
        let record = engine.get(&client_id).unwrap().expect("the record");
        assert_eq!(record.data, stored);
    }
}
