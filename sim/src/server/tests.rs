//! The reference server against its contract: idempotency, the conflict policy, paging,
//! authorization, validation, faults and planted defects.
//!
//! Every test talks to the server through JSON requests, as the engine does; the helpers
//! below are the only code that builds requests or reads envelopes.

use super::*;
use serde_json::json;
use sync_engine::wire::{Envelope, PulledItem, SyncPullResponse, SyncPushResponse, SyncResultItem};

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
        variables,
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

#[test]
fn pagination_survives_page_boundaries_inside_one_commit_stamp() {
    // Proves paging with limit 1000 over 2,500 rows written by pushes of 700, 1000 and
    // 800 rows (so both page boundaries fall among rows sharing one stamp) returns every
    // row exactly once, and an incremental pull afterwards sees only what changed.
    let mut server = server();
    let mut next = 0;
    for batch_len in [700, 1000, 800] {
        let items = (next..next + batch_len)
            .map(|n| {
                insert(
                    &format!("op-{n}"),
                    &format!("c-{n:05}"),
                    100,
                    json!({"n": n}),
                )
            })
            .collect();
        assert!(push(&mut server, items).iter().all(|result| result.success));
        next += batch_len;
    }
    assert_eq!(server.commit_stamp(TENANT), 3);

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let page = pull(&mut server, cursor.as_deref(), Some(1000));
        seen.extend(pulled_ids(&page));
        pages.push((page.items.len(), page.has_more));
        cursor = Some(page.last_sync_at.clone());
        if !page.has_more {
            break;
        }
    }
    assert_eq!(pages, vec![(1000, true), (1000, true), (500, false)]);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 2500);
    assert_eq!(unique.len(), 2500);
    let all_ids: BTreeSet<&String> = server
        .records(TENANT)
        .into_iter()
        .map(|record| &record.id)
        .collect();
    assert_eq!(unique, all_ids);

    // Nothing changed: the next pull is empty and keeps the cursor.
    let end = cursor.expect("cursor");
    let empty = pull(&mut server, Some(&end), Some(1000));
    assert!(empty.items.is_empty());
    assert!(!empty.has_more);
    assert_eq!(empty.last_sync_at, end);

    // One row changes: only it comes back, after the cursor.
    let changed_id = seen[10].clone();
    push_one(
        &mut server,
        update("op-change", &changed_id, Some(1), 200, json!({"n": -1})),
    );
    let incremental = pull(&mut server, Some(&end), None);
    assert_eq!(pulled_ids(&incremental), vec![changed_id]);
    assert!(
        incremental.last_sync_at.starts_with("4."),
        "{}",
        incremental.last_sync_at
    );
    server.check_invariants();
}

#[test]
fn deleted_rows_come_back_as_deleted_ids() {
    // Proves a deleted record leaves `items` and shows up in `deletedIds` once.
    let mut server = server();
    let kept = create(&mut server, "c-kept", 100);
    let gone = create(&mut server, "c-gone", 100);
    push_one(&mut server, delete("op-delete", &gone, Some(1), 200));
    let page = pull(&mut server, None, Some(2));
    assert!(
        !page.has_more,
        "a page that ends exactly at the last row has no more"
    );
    assert_eq!(pulled_ids(&page), vec![kept]);
    assert_eq!(page.deleted_ids, vec![gone]);
    let item: PulledItem = serde_json::from_value(page.items[0].clone()).expect("PulledItem");
    assert_eq!(item.client_id, "c-kept");
    assert_eq!(item.space_id, SPACE);
    assert_eq!(item.version, 1);
    assert_eq!(item.updated_at, HlcStamp(100));
}

#[test]
fn version_hash_follows_live_versions() {
    // Proves versionHash equals the wire checksum over live (id, version) pairs, changes
    // when a version does or a record is deleted, and comes with the last page only.
    let mut server = server();
    let a = create(&mut server, "c-a", 100);
    let b = create(&mut server, "c-b", 100);
    let first = pull(&mut server, None, None).version_hash.expect("hash");
    assert_eq!(
        first,
        wire::version_hash([(a.as_str(), 1), (b.as_str(), 1)])
    );
    push_one(
        &mut server,
        update("op-u", &a, Some(1), 200, json!({"v": 1})),
    );
    let second = pull(&mut server, None, None).version_hash.expect("hash");
    assert_ne!(second, first);
    assert_eq!(
        second,
        wire::version_hash([(a.as_str(), 2), (b.as_str(), 1)])
    );
    push_one(&mut server, delete("op-d", &b, Some(1), 300));
    // Two rows changed (a, then b's tombstone): a page of one is not the last one and
    // carries no checksum; the last page carries the checksum of the whole entity.
    let first_page = pull(&mut server, None, Some(1));
    assert!(first_page.has_more);
    assert_eq!(first_page.version_hash, None);
    let last_page = pull(&mut server, Some(&first_page.last_sync_at), Some(1));
    assert!(!last_page.has_more);
    let third = last_page.version_hash.expect("hash on the last page");
    assert_eq!(third, wire::version_hash([(a.as_str(), 2)]));
}

#[test]
fn wrong_tenant_and_unknown_token_are_rejected_without_changes() {
    // Proves the tenant comes from the token: every mismatch is UNAUTHORIZED and changes
    // nothing, for pushes and pulls alike.
    let mut server = server();
    create(&mut server, "c-1", 100);
    let before = server.clone();
    let items = json!([insert("op-x", "c-x", 100, json!({}))]);
    let cases = [
        (
            "unknown token",
            request(
                "syncPushSpace",
                TENANT,
                "nope",
                json!({"payload": items, "tenantId": TENANT}),
            ),
        ),
        (
            "request tenant is not the token's",
            request(
                "syncPushSpace",
                OTHER_TENANT,
                TOKEN,
                json!({"payload": items, "tenantId": OTHER_TENANT}),
            ),
        ),
        (
            "request tenant alone is not the token's",
            request(
                "syncPushSpace",
                OTHER_TENANT,
                TOKEN,
                json!({"payload": items, "tenantId": TENANT}),
            ),
        ),
        (
            "variables tenant is not the token's",
            request(
                "syncPushSpace",
                TENANT,
                TOKEN,
                json!({"payload": items, "tenantId": OTHER_TENANT}),
            ),
        ),
        (
            "another tenant's token",
            request(
                "syncPushSpace",
                TENANT,
                OTHER_TOKEN,
                json!({"payload": items, "tenantId": TENANT}),
            ),
        ),
        (
            "pull of another tenant",
            request(
                "syncPullSpace",
                OTHER_TENANT,
                TOKEN,
                json!({"tenantId": OTHER_TENANT}),
            ),
        ),
        (
            "pull with another tenant's token",
            request(
                "syncPullSpace",
                TENANT,
                OTHER_TOKEN,
                json!({"tenantId": TENANT}),
            ),
        ),
    ];
    for (name, request) in &cases {
        let response = server.handle(request);
        assert_eq!(error_code(&response), ErrorCode::Unauthorized, "{name}");
        assert_eq!(server, before, "{name}");
    }
}

#[test]
fn malformed_requests_get_error_envelopes_and_change_nothing() {
    // Proves every malformed request is a VALIDATION envelope naming the problem, never a
    // panic and never a partial write, even when only one item of a batch is bad.
    let mut server = server();
    create(&mut server, "c-1", 100);
    let before = server.clone();
    let good = insert("op-good", "c-good", 100, json!({}));
    let long_op_id = insert(&"o".repeat(129), "c-long", 100, json!({}));
    let push_vars = |payload: Value| json!({"payload": payload, "tenantId": TENANT});
    let bad_item = |edit: &dyn Fn(&mut Value)| {
        let mut item = insert("op-bad", "c-bad", 100, json!({}));
        edit(&mut item);
        push_vars(json!([good.clone(), item]))
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "variables not an object",
            "syncPushSpace",
            json!(7),
            "invalid push variables",
        ),
        (
            "payload missing",
            "syncPushSpace",
            json!({"tenantId": TENANT}),
            "missing field `payload`",
        ),
        (
            "payload wrong type",
            "syncPushSpace",
            push_vars(json!("x")),
            "invalid push variables",
        ),
        (
            "unknown variable",
            "syncPushSpace",
            json!({"payload": [], "tenantId": TENANT, "x": 1}),
            "unknown field `x`",
        ),
        (
            "empty payload",
            "syncPushSpace",
            push_vars(json!([])),
            "1-1000",
        ),
        (
            "payload too long",
            "syncPushSpace",
            push_vars(json!(vec![good.clone(); 1001])),
            "1-1000",
        ),
        (
            "stamp wrong type",
            "syncPushSpace",
            bad_item(&|item| item["updatedAt"] = json!("soon")),
            "payload[1]: invalid type",
        ),
        (
            "unknown operation",
            "syncPushSpace",
            bad_item(&|item| item["operation"] = json!("upsert")),
            "payload[1]: unknown variant `upsert`",
        ),
        (
            "missing opId",
            "syncPushSpace",
            bad_item(&|item| {
                if let Some(object) = item.as_object_mut() {
                    object.remove("opId");
                }
            }),
            "payload[1]: missing field `opId`",
        ),
        (
            "data not an object",
            "syncPushSpace",
            bad_item(&|item| item["data"] = json!([1])),
            "payload[1]: data",
        ),
        (
            "empty opId",
            "syncPushSpace",
            bad_item(&|item| item["opId"] = json!("")),
            "payload[1]: opId",
        ),
        (
            "long opId",
            "syncPushSpace",
            push_vars(json!([good.clone(), long_op_id])),
            "payload[1]: opId",
        ),
        (
            "bad spaceId",
            "syncPushSpace",
            bad_item(&|item| item["spaceId"] = json!("a b")),
            "payload[1]: spaceId",
        ),
        (
            "long spaceId",
            "syncPushSpace",
            bad_item(&|item| item["spaceId"] = json!("s".repeat(65))),
            "payload[1]: spaceId",
        ),
        (
            "insert without clientId",
            "syncPushSpace",
            bad_item(&|item| item["clientId"] = json!(null)),
            "payload[1]: an insert",
        ),
        (
            "update without a record",
            "syncPushSpace",
            bad_item(&|item| {
                item["operation"] = json!("update");
                item["clientId"] = json!(null);
            }),
            "payload[1]: an update",
        ),
        (
            "pull missing tenantId",
            "syncPullSpace",
            json!({"limit": 5}),
            "tenantId",
        ),
        (
            "pull limit wrong type",
            "syncPullSpace",
            json!({"tenantId": TENANT, "limit": "all"}),
            "invalid pull",
        ),
        (
            "bad cursor",
            "syncPullSpace",
            json!({"tenantId": TENANT, "lastSyncAt": "yesterday"}),
            "yesterday",
        ),
        (
            "cursor without id",
            "syncPullSpace",
            json!({"tenantId": TENANT, "lastSyncAt": "5."}),
            "lastSyncAt",
        ),
        (
            "limit 0",
            "syncPullSpace",
            json!({"tenantId": TENANT, "limit": 0}),
            "limit",
        ),
        (
            "limit too big",
            "syncPullSpace",
            json!({"tenantId": TENANT, "limit": 10_001}),
            "limit",
        ),
        (
            "unknown entity",
            "syncPushNothing",
            push_vars(json!([good.clone()])),
            "unknown operation",
        ),
        (
            "not an operation",
            "mutate",
            push_vars(json!([good.clone()])),
            "unknown operation",
        ),
    ];
    for (name, operation_name, variables, needle) in cases {
        let response = server.handle(&request(operation_name, TENANT, TOKEN, variables));
        assert_eq!(
            error_code(&response),
            ErrorCode::Validation,
            "{name}: {response}"
        );
        let message = response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.contains(needle),
            "{name}: {message:?} lacks {needle:?}"
        );
        assert_eq!(server, before, "{name}");
    }
}

#[test]
fn faults_behave_as_named() {
    // Proves FailBeforeApplying changes nothing, ApplyThenLoseResponse applies and loses
    // the answer (the retry gets it back), and SlowResponse applies and delays it.
    let mut server = server();
    let request = push_request(vec![insert("op-1", "c-1", 100, json!({}))]);
    let before = server.clone();
    let busy = server.handle_with_fault(&request, ServerFault::FailBeforeApplying);
    let ServerReply::Response(busy) = busy else {
        panic!("busy is a response")
    };
    assert_eq!(error_code(&busy), ErrorCode::ServerBusy);
    assert_eq!(server, before);

    assert_eq!(
        server.handle_with_fault(&request, ServerFault::ApplyThenLoseResponse),
        ServerReply::Lost
    );
    assert_eq!(server.records(TENANT).len(), 1);
    let retry = push_with(&mut server, &request);
    assert_eq!(
        retry[0].id.as_deref(),
        Some(server.records(TENANT)[0].id.as_str())
    );
    assert_eq!(server.effect_count(TENANT, "op-1"), 1);

    let slow_request = push_request(vec![insert("op-2", "c-2", 100, json!({}))]);
    let mut twin = server.clone();
    let expected = twin.handle(&slow_request);
    let slow = server.handle_with_fault(&slow_request, ServerFault::SlowResponse { delay_ms: 250 });
    assert_eq!(
        slow,
        ServerReply::Delayed {
            response: expected,
            delay_ms: 250
        }
    );
    assert_eq!(server, twin);
    assert_eq!(server.records(TENANT).len(), 2);

    let plain = server.handle_with_fault(&pull_request(None, None), ServerFault::None);
    assert!(matches!(plain, ServerReply::Response(ref response) if response.get("data").is_some()));
    server.check_invariants();
}

#[test]
fn defect_skip_op_id_dedupe_duplicates_retried_inserts() {
    // Proves the planted idempotency bug: a retried insert makes a second row and a
    // second effect for one opId, which the harness must then catch.
    let mut server = server();
    server.set_defects(ServerDefects {
        skip_op_id_dedupe: true,
        ..ServerDefects::default()
    });
    let item = insert("op-1", "c-1", 100, json!({}));
    let first = push_one(&mut server, item.clone());
    let second = push_one(&mut server, item);
    assert_ne!(first.id, second.id);
    assert_eq!(server.records(TENANT).len(), 2);
    assert_eq!(server.effect_count(TENANT, "op-1"), 2);
    // The server's own bookkeeping still holds; the duplicate is for the harness to find.
    server.check_invariants();
}

#[test]
fn defect_wall_clock_cursor_skips_rows_from_slow_clocks() {
    // Proves the planted cursor bug: commit stamps come from writers' clocks, so a row
    // written after a pull by a device with a slow clock sorts before the cursor and
    // is never pulled.
    let mut server = server();
    server.set_defects(ServerDefects {
        wall_clock_cursor: true,
        ..ServerDefects::default()
    });
    let fast = create(&mut server, "c-fast", HlcStamp::new(5_000, 0).0);
    assert_eq!(record(&server, &fast).commit_stamp, 5_000);
    let cursor = pull(&mut server, None, None).last_sync_at;
    let slow = create(&mut server, "c-slow", HlcStamp::new(1_000, 0).0);
    assert_eq!(record(&server, &slow).commit_stamp, 1_000);
    let after = pull(&mut server, Some(&cursor), None);
    assert!(pulled_ids(&after).is_empty(), "the slow row is skipped");
    assert_eq!(server.commit_stamp(TENANT), 5_000);
    server.check_invariants();

    // Without the defect the late row is after the cursor.
    let mut server = self::server();
    create(&mut server, "c-fast", HlcStamp::new(5_000, 0).0);
    let cursor = pull(&mut server, None, None).last_sync_at;
    let slow = create(&mut server, "c-slow", HlcStamp::new(1_000, 0).0);
    assert_eq!(
        pulled_ids(&pull(&mut server, Some(&cursor), None)),
        vec![slow]
    );
}

#[test]
fn defect_skip_tenant_check_lets_a_token_write_another_tenant() {
    // Proves the planted authorization bug: another tenant's token writes into this
    // tenant when variables.tenantId says so.
    let leaky = request(
        "syncPushSpace",
        OTHER_TENANT,
        OTHER_TOKEN,
        json!({ "payload": [insert("op-leak", "c-leak", 100, json!({}))], "tenantId": TENANT }),
    );
    let mut server = server();
    assert_eq!(error_code(&server.handle(&leaky)), ErrorCode::Unauthorized);
    server.set_defects(ServerDefects {
        skip_tenant_check: true,
        ..ServerDefects::default()
    });
    assert!(push_with(&mut server, &leaky)[0].success);
    assert_eq!(server.records(TENANT).len(), 1);
    assert!(server.records(OTHER_TENANT).is_empty());
    assert_eq!(
        error_code(&server.handle(&request("syncPushSpace", TENANT, "nope", json!({})))),
        ErrorCode::Unauthorized
    );
}

#[test]
fn defect_ignore_base_version_makes_blind_last_writer_wins() {
    // Proves the planted version bug: an older concurrent write overwrites a newer one.
    let mut server = server();
    server.set_defects(ServerDefects {
        ignore_base_version: true,
        ..ServerDefects::default()
    });
    let id = create(&mut server, "c-1", 100);
    push_one(
        &mut server,
        update("op-new", &id, Some(1), 300, json!({"v": "newer"})),
    );
    let stale = push_one(
        &mut server,
        update("op-old", &id, Some(1), 200, json!({"v": "older"})),
    );
    assert!(stale.success);
    assert_eq!(record(&server, &id).data["v"], json!("older"));
    // Tombstones stay final even with the defect: only the version check is skipped.
    push_one(&mut server, delete("op-d", &id, Some(3), 400));
    let after_delete = push_one(
        &mut server,
        update("op-after", &id, Some(4), 500, json!({})),
    );
    assert_eq!(after_delete.error_code, Some(ErrorCode::RecordDeleted));
}

#[test]
fn defect_drop_last_row_of_page_loses_rows_at_boundaries() {
    // Proves the planted paging bug: a non-final page omits its last row while the
    // cursor moves past it, so that row is never pulled; the final page is complete.
    let mut server = server();
    let ids: Vec<String> = (0..3)
        .map(|n| create(&mut server, &format!("c-{n}"), 100))
        .collect();
    server.set_defects(ServerDefects {
        drop_last_row_of_page: true,
        ..ServerDefects::default()
    });
    let first = pull(&mut server, None, Some(2));
    assert!(first.has_more);
    assert_eq!(pulled_ids(&first), vec![ids[0].clone()]);
    assert!(first.last_sync_at.ends_with(&ids[1]));
    let second = pull(&mut server, Some(&first.last_sync_at), Some(2));
    assert!(!second.has_more);
    assert_eq!(pulled_ids(&second), vec![ids[2].clone()]);
}

#[test]
fn same_requests_give_same_responses_and_state() {
    // Proves the server is deterministic: replaying one request sequence on a fresh
    // server gives byte-identical responses and equal state.
    let run = || {
        let mut server = server();
        let mut responses = Vec::new();
        for n in 0..20u64 {
            let id_hint = format!("c-{}", n % 7);
            let item = if n % 3 == 0 {
                insert(&format!("op-{n}"), &id_hint, 100 + n, json!({"n": n}))
            } else {
                update(
                    &format!("op-{n}"),
                    &id_hint,
                    Some(1),
                    100 + n,
                    json!({"n": n}),
                )
            };
            responses.push(server.handle(&push_request(vec![item])).to_string());
            responses.push(server.handle(&pull_request(None, Some(3))).to_string());
        }
        (server, responses)
    };
    let (first_server, first_responses) = run();
    let (second_server, second_responses) = run();
    assert_eq!(first_responses, second_responses);
    assert_eq!(first_server, second_server);
    first_server.check_invariants();
}

#[test]
#[should_panic(expected = "never issued")]
fn check_invariants_catches_an_id_the_server_never_issued() {
    // Proves check_invariants can fail: a record whose id is beyond the id counter (as
    // if ids were reused after a restart) is reported.
    let mut server = server();
    create(&mut server, "c-1", 100);
    server.server_id_last = 0;
    server.check_invariants();
}

#[test]
#[should_panic(expected = "changed state 2 times")]
fn check_invariants_catches_a_duplicate_effect() {
    // Proves check_invariants can fail: two effects for one opId are reported when the
    // dedupe defect was never on.
    let mut server = server();
    create(&mut server, "c-1", 100);
    let effect = server.effects[0].clone();
    server.effects.push(effect.clone());
    *server
        .effect_count_by_op
        .get_mut(&(effect.tenant_id, effect.op_id))
        .expect("counted") += 1;
    server.check_invariants();
}
