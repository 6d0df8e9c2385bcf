//! Injected faults behave as named, each planted defect breaks exactly its contract, the
//! server is deterministic, and its own invariant checks catch what they must.

use super::*;

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
fn a_partial_batch_applies_its_prefix_and_the_retry_applies_the_rest_once() {
    // Proves ApplyPrefixThenFail commits exactly the first items, answers SERVER_BUSY (or
    // nothing), and the retry of the whole batch replays the applied ops by opId and
    // applies the others: one effect per op.
    for connection_dropped in [false, true] {
        let mut server = server();
        let request = push_request(vec![
            insert("op-1", "c-1", 100, json!({})),
            insert("op-2", "c-2", 101, json!({})),
            insert("op-3", "c-3", 102, json!({})),
        ]);
        let fault = ServerFault::ApplyPrefixThenFail {
            applied: 2,
            connection_dropped,
        };
        let reply = server.handle_with_fault(&request, fault);
        if connection_dropped {
            assert_eq!(reply, ServerReply::Lost);
        } else {
            let ServerReply::Response(busy) = reply else {
                panic!("a partial batch answers with an error envelope")
            };
            assert_eq!(error_code(&busy), ErrorCode::ServerBusy);
        }
        assert_eq!(server.records(TENANT).len(), 2);
        assert!(server.stored_result(TENANT, "op-2").is_some());
        assert!(server.stored_result(TENANT, "op-3").is_none());
        let retry = push_with(&mut server, &request);
        assert!(retry.iter().all(|result| result.success));
        assert_eq!(server.records(TENANT).len(), 3);
        for op_id in ["op-1", "op-2", "op-3"] {
            assert_eq!(server.effect_count(TENANT, op_id), 1);
        }
        server.check_invariants();
    }
}

#[test]
fn a_rewritten_push_stores_the_servers_data_and_leaves_both_cursors_null() {
    // Proves RewriteStored stores each inserted and updated row rewritten (title trimmed,
    // serverNote set) at the version it assigns, answers with ids, versions and stamps
    // but null cursors, hands the rewritten rows to a pull, and takes a retry of the same
    // write (same stamp and data, new opId) for the write it already stored.
    let mut server = server();
    let push_rewritten = |server: &mut ReferenceServer, items: Vec<Value>| {
        let request = push_request(items);
        let ServerReply::Response(response) =
            server.handle_with_fault(&request, ServerFault::RewriteStored)
        else {
            panic!("a rewritten push is answered")
        };
        let payload = payload_of(&request.operation_name, &response);
        let answer: SyncPushResponse = serde_json::from_value(payload).expect("SyncPushResponse");
        answer
    };
    let answer = push_rewritten(
        &mut server,
        vec![insert("op-1", "c-1", 100, json!({"title": "  Groceries "}))],
    );
    assert_eq!(answer.cursor_before, None);
    assert_eq!(answer.cursor_after, None);
    let [inserted] = answer.results.as_slice() else {
        panic!("one result")
    };
    assert!(inserted.success);
    assert_eq!(inserted.version, Some(1));
    let id = inserted.id.clone().expect("id");
    let expected = json!({"title": "Groceries", "serverNote": "stored by the reference server"});
    assert_eq!(Value::Object(record(&server, &id).data.clone()), expected);
    assert_eq!(
        rewritten(&record(&server, &id).data),
        record(&server, &id).data,
        "a rewrite is idempotent"
    );

    let answer = push_rewritten(
        &mut server,
        vec![update("op-2", &id, Some(1), 200, json!({"title": "Food"}))],
    );
    assert_eq!((answer.cursor_before, answer.cursor_after), (None, None));
    assert_eq!(answer.results[0].version, Some(2));
    assert_eq!(record(&server, &id).version, 2);
    assert_eq!(
        record(&server, &id).data[SERVER_NOTE_FIELD],
        json!("stored by the reference server")
    );

    let page = pull(&mut server, None, None);
    let item: PulledItem = serde_json::from_value(page.items[0].clone()).expect("PulledItem");
    assert_eq!(item.version, 2);
    assert_eq!(
        item.data[SERVER_NOTE_FIELD],
        json!("stored by the reference server")
    );

    // The same write retried under a new opId is an echo, not a conflict.
    let again = push_one(
        &mut server,
        update("op-2-again", &id, Some(1), 200, json!({"title": "Food"})),
    );
    assert!(again.success, "{again:?}");
    assert_eq!(again.version, Some(2));

    // A push that changes nothing stored keeps its cursors; so does a plain push.
    let echo = push_rewritten(
        &mut server,
        vec![update("op-2", &id, Some(1), 200, json!({"title": "Food"}))],
    );
    assert!(echo.cursor_before.is_some() && echo.cursor_after.is_some());
    let request = push_request(vec![insert("op-3", "c-3", 300, json!({"title": " x "}))]);
    let plain: SyncPushResponse =
        serde_json::from_value(payload_of("syncPushSpace", &server.handle(&request)))
            .expect("SyncPushResponse");
    assert!(plain.cursor_before.is_some() && plain.cursor_after.is_some());
    let id_3 = plain.results[0].id.clone().expect("id");
    assert_eq!(record(&server, &id_3).data["title"], json!(" x "));
    server.check_invariants();
}

#[test]
fn a_partial_batch_the_server_would_refuse_whole_changes_nothing() {
    // Proves the fault never applies part of a batch the server refuses whole.
    let mut server = server();
    let request = push_request(vec![
        insert("op-1", "c-1", 100, json!({})),
        json!({ "opId": "op-2", "operation": "INSERT" }),
    ]);
    let before = server.clone();
    let fault = ServerFault::ApplyPrefixThenFail {
        applied: 1,
        connection_dropped: false,
    };
    let ServerReply::Response(refused) = server.handle_with_fault(&request, fault) else {
        panic!("a refused batch is answered")
    };
    assert_eq!(error_code(&refused), ErrorCode::Validation);
    assert_eq!(server, before);
}

#[test]
fn defect_partial_batch_keeps_rolled_back_results_answers_the_retry_with_ghosts() {
    // Proves the planted defect: the failed batch's records are gone, its results stay,
    // so the retry is answered "applied" for ops the server does not hold.
    let mut server = server();
    server.set_defects(ServerDefects::planting([
        Defect::PartialBatchKeepsRolledBackResults,
    ]));
    let request = push_request(vec![
        insert("op-1", "c-1", 100, json!({})),
        insert("op-2", "c-2", 101, json!({})),
    ]);
    let fault = ServerFault::ApplyPrefixThenFail {
        applied: 1,
        connection_dropped: false,
    };
    server.handle_with_fault(&request, fault);
    assert!(server.records(TENANT).is_empty());
    let retry = push_with(&mut server, &request);
    assert!(retry[0].success);
    assert_eq!(server.records(TENANT).len(), 1, "only op-2 was applied");
    assert_eq!(server.effect_count(TENANT, "op-1"), 0);
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
        .get_mut(&effect.tenant_id)
        .and_then(|counts| counts.get_mut(&effect.op_id))
        .expect("counted") += 1;
    server.check_invariants();
}
