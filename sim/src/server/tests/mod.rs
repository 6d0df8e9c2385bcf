//! The reference server against its contract: idempotency, the conflict policy, paging,
//! authorization, validation, faults and planted defects.
//!
//! Every test talks to the server through JSON requests, as the engine does; the helpers
//! below are the only code that builds requests or reads envelopes.

use super::*;
use serde_json::json;
use sync_engine::wire::{Envelope, PulledItem, SyncPullResponse, SyncPushResponse, SyncResultItem};

mod faults_and_defects;
mod pull;
mod requests;

const TENANT: &str = "tenant-a";
const TOKEN: &str = "token-a";
const OTHER_TENANT: &str = "tenant-b";
const OTHER_TOKEN: &str = "token-b";
const SPACE: &str = "space-1";

fn server() -> ReferenceServer {
    let registry = EntityRegistry::with_defaults(&["Space", "Group"]).expect("valid registry");
    let mut server = ReferenceServer::new(registry);
    server.add_tenant_token(TENANT, TOKEN);
    server.add_tenant_token(OTHER_TENANT, OTHER_TOKEN);
    server
}

fn request(operation_name: &str, tenant_id: &str, token: &str, variables: Value) -> SyncRequest {
    SyncRequest {
        request_id: 1,
        operation_name: operation_name.to_owned(),
        tenant_id: tenant_id.to_owned(),
        token: token.to_owned(),
        variables: variables.into(),
    }
}

fn push_request(items: Vec<Value>) -> SyncRequest {
    request(
        "syncPushSpace",
        TENANT,
        TOKEN,
        json!({ "payload": items, "tenantId": TENANT }),
    )
}

fn pull_request(cursor: Option<&str>, limit: Option<i64>) -> SyncRequest {
    request(
        "syncPullSpace",
        TENANT,
        TOKEN,
        json!({ "lastSyncAt": cursor, "tenantId": TENANT, "limit": limit }),
    )
}

fn insert(op_id: &str, client_id: &str, stamp: u64, data: Value) -> Value {
    json!({
        "opId": op_id, "clientId": client_id, "operation": "insert", "data": data,
        "spaceId": SPACE, "updatedAt": stamp,
    })
}

fn update(op_id: &str, id: &str, base_version: Option<i64>, stamp: u64, data: Value) -> Value {
    json!({
        "opId": op_id, "id": id, "operation": "update", "data": data, "baseVersion": base_version,
        "spaceId": SPACE, "updatedAt": stamp,
    })
}

fn delete(op_id: &str, id: &str, base_version: Option<i64>, stamp: u64) -> Value {
    json!({
        "opId": op_id, "id": id, "operation": "delete", "data": {}, "baseVersion": base_version,
        "spaceId": SPACE, "updatedAt": stamp,
    })
}

fn with_force(mut item: Value) -> Value {
    item["force"] = json!(true);
    item
}

/// The operation's payload from a success envelope; a test fails on an error envelope.
fn payload_of(operation_name: &str, response: &Value) -> Value {
    match wire::parse_envelope(operation_name, response) {
        Envelope::Data(payload) => payload,
        Envelope::Error { code, message } => panic!("expected data, got {code:?}: {message}"),
    }
}

fn push_with(server: &mut ReferenceServer, request: &SyncRequest) -> Vec<SyncResultItem> {
    let response = server.handle(request);
    let payload = payload_of(&request.operation_name, &response);
    let response: SyncPushResponse = serde_json::from_value(payload).expect("SyncPushResponse");
    response.results
}

fn push(server: &mut ReferenceServer, items: Vec<Value>) -> Vec<SyncResultItem> {
    push_with(server, &push_request(items))
}

fn push_one(server: &mut ReferenceServer, item: Value) -> SyncResultItem {
    let mut results = push(server, vec![item]);
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn pull(
    server: &mut ReferenceServer,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> SyncPullResponse {
    let response = server.handle(&pull_request(cursor, limit));
    serde_json::from_value(payload_of("syncPullSpace", &response)).expect("SyncPullResponse")
}

/// The error code of an error envelope; a test fails on a success envelope.
fn error_code(response: &Value) -> ErrorCode {
    match wire::parse_envelope("unused", response) {
        Envelope::Error {
            code: Some(code), ..
        } => code,
        other => panic!("expected an error envelope with a code, got {other:?}"),
    }
}

fn pulled_ids(page: &SyncPullResponse) -> Vec<String> {
    page.items
        .iter()
        .map(|item| {
            serde_json::from_value::<PulledItem>(item.clone())
                .expect("PulledItem")
                .id
        })
        .collect()
}

/// Creates one record and returns its server id.
fn create(server: &mut ReferenceServer, client_id: &str, stamp: u64) -> String {
    let result = push_one(
        server,
        insert(
            &format!("op-create-{client_id}"),
            client_id,
            stamp,
            json!({"n": 0}),
        ),
    );
    assert!(result.success, "{result:?}");
    result.id.expect("insert returns the server id")
}

fn record<'a>(server: &'a ReferenceServer, id: &str) -> &'a ServerRecord {
    server
        .records(TENANT)
        .into_iter()
        .find(|record| record.id == id)
        .expect("record exists")
}

#[test]
fn replay_by_op_id_returns_stored_result_without_a_second_effect() {
    // Proves a retried push (same opId) gets the first result back and changes nothing.
    let mut server = server();
    let first = push_one(
        &mut server,
        insert("op-1", "c-1", 100, json!({"name": "a"})),
    );
    assert!(first.success);
    let id = first.id.clone().expect("id");
    let updated = push_one(
        &mut server,
        update("op-2", &id, Some(1), 200, json!({"name": "b"})),
    );
    assert_eq!(updated.version, Some(2));
    let state_before_retry = server.clone();
    // The retry of op-2 carries different data: the stored result wins, nothing applies.
    let retried = push_one(
        &mut server,
        update("op-2", &id, Some(2), 300, json!({"name": "c"})),
    );
    assert_eq!(retried, updated);
    assert_eq!(server, state_before_retry);
    assert_eq!(server.effect_count(TENANT, "op-2"), 1);
    assert_eq!(server.effects().len(), 2);
    assert_eq!(record(&server, &id).data["name"], json!("b"));
    server.check_invariants();
}

#[test]
fn insert_with_known_client_id_returns_the_same_id() {
    // Proves an insert retried under a new opId returns the existing row, never a second.
    let mut server = server();
    let first = push_one(
        &mut server,
        insert("op-1", "c-1", 100, json!({"name": "a"})),
    );
    let again = push_one(
        &mut server,
        insert("op-1-retry", "c-1", 100, json!({"name": "a"})),
    );
    assert!(again.success);
    assert_eq!(again.id, first.id);
    assert_eq!(again.version, Some(1));
    assert_eq!(server.records(TENANT).len(), 1);
    assert_eq!(server.effect_count(TENANT, "op-1-retry"), 0);
    server.check_invariants();
}

#[test]
fn server_ids_are_unique_across_tenants_and_client_ids_per_tenant() {
    // Proves two tenants using one clientId get two rows with distinct server ids.
    let mut server = server();
    let a = create(&mut server, "shared-client-id", 100);
    let other = request(
        "syncPushSpace",
        OTHER_TENANT,
        OTHER_TOKEN,
        json!({ "payload": [insert("op-b", "shared-client-id", 100, json!({}))], "tenantId": OTHER_TENANT }),
    );
    let b = push_with(&mut server, &other).remove(0).id.expect("id");
    assert_ne!(a, b);
    assert_eq!(server.records(TENANT).len(), 1);
    assert_eq!(server.records(OTHER_TENANT).len(), 1);
    assert_eq!(
        server.tenants(),
        vec![TENANT.to_owned(), OTHER_TENANT.to_owned()]
    );
    server.check_invariants();
}

/// One row of the conflict-policy table: the record is at version 2, stamp 200, data
/// `{"v": "server"}`; the item is an update with the given base version, stamp and data.
struct PolicyCase {
    name: &'static str,
    base_version: Option<i64>,
    stamp: u64,
    data: Value,
    force: bool,
    expected_code: Option<ErrorCode>,
    expected_version: i64,
    expected_data: Value,
}

fn check_policy(case: &PolicyCase) {
    let mut server = server();
    let id = create(&mut server, "c-1", 100);
    let setup = push_one(
        &mut server,
        update("op-setup", &id, Some(1), 200, json!({"v": "server"})),
    );
    assert_eq!(setup.version, Some(2), "{}", case.name);
    let mut item = update(
        "op-case",
        &id,
        case.base_version,
        case.stamp,
        case.data.clone(),
    );
    if case.force {
        item = with_force(item);
    }
    let result = push_one(&mut server, item);
    assert_eq!(
        result.error_code, case.expected_code,
        "{}: {result:?}",
        case.name
    );
    assert_eq!(
        result.success,
        case.expected_code.is_none(),
        "{}",
        case.name
    );
    assert_eq!(result.version, Some(case.expected_version), "{}", case.name);
    let stored = record(&server, &id);
    assert_eq!(stored.version, case.expected_version, "{}", case.name);
    assert_eq!(
        Value::Object(stored.data.clone()),
        case.expected_data,
        "{}",
        case.name
    );
    let changed = case.expected_version == 3;
    assert_eq!(
        server.effect_count(TENANT, "op-case"),
        usize::from(changed),
        "{}",
        case.name
    );
    let carries_payload = matches!(
        case.expected_code,
        Some(ErrorCode::Stale | ErrorCode::Conflict)
    );
    assert_eq!(result.conflict.is_some(), carries_payload, "{}", case.name);
    if let Some(conflict) = result.conflict {
        assert_eq!(
            conflict.server_data,
            json!({"v": "server"}),
            "{}",
            case.name
        );
        assert_eq!(conflict.server_version, 2, "{}", case.name);
        assert_eq!(conflict.server_updated_at, HlcStamp(200), "{}", case.name);
        assert!(!conflict.server_is_deleted, "{}", case.name);
    }
    server.check_invariants();
}

#[test]
fn version_check_and_each_hlc_branch() {
    // Proves the write policy: a current baseVersion applies; a concurrent write goes to
    // the newer stamp, an equal stamp with equal data is an echo, with different data a
    // conflict; force overrides everything.
    let cases = [
        PolicyCase {
            name: "current base version applies even with an older stamp",
            base_version: Some(2),
            stamp: 150,
            data: json!({"v": "client"}),
            force: false,
            expected_code: None,
            expected_version: 3,
            expected_data: json!({"v": "client"}),
        },
        PolicyCase {
            name: "concurrent and newer applies",
            base_version: Some(1),
            stamp: 250,
            data: json!({"v": "client"}),
            force: false,
            expected_code: None,
            expected_version: 3,
            expected_data: json!({"v": "client"}),
        },
        PolicyCase {
            name: "concurrent and older is stale",
            base_version: Some(1),
            stamp: 150,
            data: json!({"v": "client"}),
            force: false,
            expected_code: Some(ErrorCode::Stale),
            expected_version: 2,
            expected_data: json!({"v": "server"}),
        },
        PolicyCase {
            name: "no base version and older is stale",
            base_version: None,
            stamp: 150,
            data: json!({"v": "client"}),
            force: false,
            expected_code: Some(ErrorCode::Stale),
            expected_version: 2,
            expected_data: json!({"v": "server"}),
        },
        PolicyCase {
            name: "equal stamp and equal data is an echo",
            base_version: Some(1),
            stamp: 200,
            data: json!({"v": "server"}),
            force: false,
            expected_code: None,
            expected_version: 2,
            expected_data: json!({"v": "server"}),
        },
        PolicyCase {
            name: "equal stamp and different data is a conflict",
            base_version: Some(1),
            stamp: 200,
            data: json!({"v": "client"}),
            force: false,
            expected_code: Some(ErrorCode::Conflict),
            expected_version: 2,
            expected_data: json!({"v": "server"}),
        },
        PolicyCase {
            name: "force overrides an older stamp",
            base_version: Some(1),
            stamp: 150,
            data: json!({"v": "forced"}),
            force: true,
            expected_code: None,
            expected_version: 3,
            expected_data: json!({"v": "forced"}),
        },
    ];
    for case in &cases {
        check_policy(case);
    }
}

#[test]
fn deletes_win_over_concurrent_updates() {
    // Proves a delete based on an old version and with an older stamp still applies.
    let mut server = server();
    let id = create(&mut server, "c-1", 100);
    push_one(
        &mut server,
        update("op-update", &id, Some(1), 300, json!({"v": "newer"})),
    );
    let deleted = push_one(&mut server, delete("op-delete", &id, Some(1), 200));
    assert!(deleted.success, "{deleted:?}");
    assert_eq!(deleted.version, Some(3));
    let stored = record(&server, &id);
    assert!(stored.is_deleted);
    assert_eq!(stored.last_op_id, "op-delete");
    assert_eq!(server.effect_count(TENANT, "op-delete"), 1);
    server.check_invariants();
}

#[test]
fn tombstones_are_final() {
    // Proves nothing resurrects a deleted record: not an update, not a forced update, not
    // an insert of the same clientId; a second delete is a no-op success.
    let mut server = server();
    let id = create(&mut server, "c-1", 100);
    push_one(&mut server, delete("op-delete", &id, Some(1), 200));
    let state_after_delete = server.clone();

    let newer_update = push_one(
        &mut server,
        update("op-u", &id, Some(2), 900, json!({"v": 1})),
    );
    assert_eq!(newer_update.error_code, Some(ErrorCode::RecordDeleted));
    let conflict = newer_update.conflict.expect("conflict payload");
    assert!(conflict.server_is_deleted);
    assert_eq!(conflict.server_version, 2);

    let forced = push_one(
        &mut server,
        with_force(update("op-f", &id, None, 900, json!({"v": 1}))),
    );
    assert_eq!(forced.error_code, Some(ErrorCode::RecordDeleted));

    let second_delete = push_one(&mut server, delete("op-d2", &id, Some(1), 50));
    assert!(second_delete.success);
    assert_eq!(second_delete.version, Some(2));

    let reinsert = push_one(&mut server, insert("op-i2", "c-1", 900, json!({"v": 2})));
    assert!(reinsert.success);
    assert_eq!(reinsert.id.as_deref(), Some(id.as_str()));

    assert_eq!(server.records(TENANT), state_after_delete.records(TENANT));
    assert_eq!(server.effects(), state_after_delete.effects());
    assert!(record(&server, &id).is_deleted);
    server.check_invariants();
}

#[test]
fn unknown_records_and_wrong_entities_are_item_failures() {
    // Proves an update of an unknown record is NOT_FOUND, an id of another entity type is
    // VALIDATION, and the other items of the batch still apply.
    let mut server = server();
    let group = request(
        "syncPushGroup",
        TENANT,
        TOKEN,
        json!({ "payload": [insert("op-g", "g-1", 100, json!({}))], "tenantId": TENANT }),
    );
    let group_id = push_with(&mut server, &group).remove(0).id.expect("id");
    let results = push(
        &mut server,
        vec![
            update("op-missing", "srv-9999999999", Some(1), 100, json!({})),
            update("op-wrong-entity", &group_id, Some(1), 200, json!({})),
            insert("op-ok", "c-1", 100, json!({})),
        ],
    );
    assert_eq!(results[0].error_code, Some(ErrorCode::NotFound));
    assert_eq!(results[1].error_code, Some(ErrorCode::Validation));
    assert!(results[2].success);
    assert_eq!(record(&server, &group_id).version, 1);
    assert_eq!(server.records(TENANT).len(), 2);
    // A Group insert reusing a Space record's clientId must not answer with that record.
    let clashing = request(
        "syncPushGroup",
        TENANT,
        TOKEN,
        json!({ "payload": [insert("op-clash", "c-1", 100, json!({}))], "tenantId": TENANT }),
    );
    let clash = push_with(&mut server, &clashing).remove(0);
    assert_eq!(clash.error_code, Some(ErrorCode::Validation));
    assert_eq!(clash.id, None);
    assert_eq!(server.records(TENANT).len(), 2);
    server.check_invariants();
}

#[test]
fn a_refused_client_id_fails_its_items_alone() {
    // Proves `refuse_client_id` is a per-item rule: the refused record's insert, and a
    // later update of a record refused after it was created, are answered VALIDATION and
    // change nothing, while the other items of the same batch apply; a retry of a refused
    // op replays the refusal, and an op applied before the rule keeps its stored success.
    let mut server = server();
    let earlier = push_one(
        &mut server,
        insert("op-e", "c-earlier", 100, json!({"v": 0})),
    );
    assert!(earlier.success);
    let earlier_id = earlier.id.clone().expect("id");
    server.refuse_client_id("c-bad");
    server.refuse_client_id("c-earlier");
    let state_before = server.clone();
    let results = push(
        &mut server,
        vec![
            insert("op-a", "c-a", 200, json!({"name": "a"})),
            insert("op-bad", "c-bad", 200, json!({"name": "bad"})),
            update("op-u", &earlier_id, Some(1), 200, json!({"v": 1})),
            insert("op-c", "c-c", 200, json!({"name": "c"})),
        ],
    );
    assert!(results[0].success);
    assert!(!results[1].success);
    assert_eq!(results[1].error_code, Some(ErrorCode::Validation));
    assert_eq!(
        results[1].error_message.as_deref(),
        Some("refused by the server's rules")
    );
    assert_eq!(results[1].id, None);
    assert_eq!(results[2].error_code, Some(ErrorCode::Validation));
    assert!(results[3].success);
    let client_ids: Vec<&str> = server
        .records(TENANT)
        .into_iter()
        .map(|record| record.client_id.as_str())
        .collect();
    assert_eq!(client_ids, ["c-earlier", "c-a", "c-c"]);
    assert_eq!(record(&server, &earlier_id).version, 1);
    assert_eq!(server.effects().len(), state_before.effects().len() + 2);
    assert_eq!(server.effect_count(TENANT, "op-bad"), 0);
    let retried = push_one(&mut server, insert("op-bad", "c-bad", 300, json!({})));
    assert_eq!(retried, results[1]);
    let replayed = push_one(
        &mut server,
        insert("op-e", "c-earlier", 100, json!({"v": 0})),
    );
    assert_eq!(replayed, earlier);
    server.check_invariants();
}

#[test]
fn updates_find_records_by_client_id() {
    // Proves an update naming only the clientId (or the clientId as `id`, as the spec
    // sends before it knows the server id) reaches the record.
    let mut server = server();
    let id = create(&mut server, "c-1", 100);
    let by_client_id = json!({
        "opId": "op-u1", "clientId": "c-1", "operation": "update", "data": {"v": 1},
        "baseVersion": 1, "spaceId": SPACE, "updatedAt": 200,
    });
    assert_eq!(
        push_one(&mut server, by_client_id).id.as_deref(),
        Some(id.as_str())
    );
    let client_id_as_id = update("op-u2", "c-1", Some(2), 300, json!({"v": 2}));
    assert_eq!(push_one(&mut server, client_id_as_id).version, Some(3));
    let mismatched = json!({
        "opId": "op-u3", "id": id, "clientId": "c-other", "operation": "update", "data": {},
        "baseVersion": 3, "spaceId": SPACE, "updatedAt": 400,
    });
    assert_eq!(
        push_one(&mut server, mismatched).error_code,
        Some(ErrorCode::Validation)
    );
    assert_eq!(record(&server, &id).version, 3);
}

#[test]
fn an_accepted_update_moves_the_record_to_the_items_space() {
    // Proves the item's spaceId is part of the write: an accepted update moves the record,
    // and an equal-stamp echo must match the space as well as the data.
    let mut server = server();
    let id = create(&mut server, "c-1", 100);
    let mut moved = update("op-move", &id, Some(1), 200, json!({"n": 0}));
    moved["spaceId"] = json!("space-2");
    assert!(push_one(&mut server, moved).success);
    assert_eq!(record(&server, &id).space_id, "space-2");
    let same_stamp_other_space = update("op-back", &id, Some(1), 200, json!({"n": 0}));
    assert_eq!(
        push_one(&mut server, same_stamp_other_space).error_code,
        Some(ErrorCode::Conflict)
    );
}

#[test]
fn one_commit_stamp_per_push_request_taken_lazily() {
    // Proves all rows changed by one request share one new stamp, and a request that
    // changes nothing leaves the counter alone.
    let mut server = server();
    let results = push(
        &mut server,
        (0..3)
            .map(|n| insert(&format!("op-{n}"), &format!("c-{n}"), 100, json!({})))
            .collect(),
    );
    assert_eq!(server.commit_stamp(TENANT), 1);
    let stamps: BTreeSet<u64> = server
        .records(TENANT)
        .iter()
        .map(|record| record.commit_stamp)
        .collect();
    assert_eq!(stamps, BTreeSet::from([1]));
    let echo = push(&mut server, vec![insert("op-echo", "c-0", 100, json!({}))]);
    assert!(echo[0].success);
    assert_eq!(server.commit_stamp(TENANT), 1);
    let id = results[1].id.clone().expect("id");
    push_one(
        &mut server,
        update("op-u", &id, Some(1), 200, json!({"v": 1})),
    );
    assert_eq!(server.commit_stamp(TENANT), 2);
    assert_eq!(record(&server, &id).commit_stamp, 2);
    assert_eq!(server.commit_stamp(OTHER_TENANT), 0);
    server.check_invariants();
}
