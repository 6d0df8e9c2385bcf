//! Requests the server must refuse whole: another tenant, an unknown token, malformed
//! variables and payloads; each gets an error envelope and changes nothing.

use super::*;

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
