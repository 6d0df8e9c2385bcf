//! Issue 3, end to end: the real engine syncing with the real reference server.
//!
//! Each test opens with a comment saying what it proves. Nothing is mocked: devices are
//! engines on temporary SQLite files, the server is `sync_sim::server::ReferenceServer`,
//! and faults are the server's own fault hooks (see `support/mod.rs`).

mod support;

use serde_json::json;
use std::collections::BTreeSet;
use support::*;
use sync_engine::wire::ErrorCode;
use sync_engine::{
    CrashPoint, EntityConfig, EntityRegistry, OpStatus, SyncError, SyncEvent, SyncTrigger,
};
use sync_sim::server::{ServerDefects, ServerFault};

fn client_ids_on_server(world: &World) -> Vec<String> {
    world
        .server_records(ACME, SPACE_ENTITY)
        .into_iter()
        .map(|record| record.client_id)
        .collect()
}

fn assert_one_row_per_client_id(world: &World, expected: &[String]) {
    let on_server = client_ids_on_server(world);
    let unique: BTreeSet<&String> = on_server.iter().collect();
    assert_eq!(unique.len(), on_server.len(), "a clientId has two rows");
    let expected: BTreeSet<&String> = expected.iter().collect();
    assert_eq!(unique, expected);
}

#[test]
fn offline_creates_reach_the_server_once_and_a_second_device() {
    // Proves: ten records created offline emit no request; going online pushes them, the
    // server holds exactly ten rows (none twice by clientId), and a second device pulls
    // all ten with the same data.
    let mut world = World::new();
    let mut a = world.device(ACME);
    a.handle_network_change(false).unwrap();
    let ids: Vec<String> = (0..10).map(|n| a.create_named(&format!("r{n}"))).collect();
    a.sync_now().unwrap();
    a.handle_app_open().unwrap();
    a.clock.advance_ms(10 * 60 * 1000);
    a.handle_timeout().unwrap();
    assert_eq!(a.poll_request(), None, "offline, nothing may be sent");
    assert!(world.server_records(ACME, SPACE_ENTITY).is_empty());

    a.handle_network_change(true).unwrap();
    let events = world.drive(&mut a);
    assert!(events.contains(&SyncEvent::SyncStarted {
        trigger: SyncTrigger::NetworkRegained
    }));
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert_one_row_per_client_id(&world, &ids);
    assert!(a.queued_ops().unwrap().is_empty());

    let mut b = world.device(ACME);
    world.sync(&mut b);
    assert_eq!(b.live_view(SPACE_ENTITY).len(), 10);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    world.server.check_invariants();
}

#[test]
fn a_lost_response_after_the_server_applied_is_retried_without_duplicates() {
    // Proves: when the server applies a push and the response is lost, the retry is
    // recognised by opId: one row per clientId, and each op changed the server once. The
    // same holds for an update whose response is lost.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let ids: Vec<String> = (0..5).map(|n| a.create_named(&format!("r{n}"))).collect();
    let op_ids: Vec<String> = a
        .queued_ops()
        .unwrap()
        .into_iter()
        .map(|op| op.op_id)
        .collect();
    assert_eq!(op_ids.len(), 5);

    a.sync_now().unwrap();
    let mut transport =
        ScriptedTransport::new(&mut world.server, [ServerFault::ApplyThenLoseResponse]);
    let events = a.drive_blocking(&mut transport).unwrap();
    let failed = events.iter().any(|event| {
        matches!(
            event,
            SyncEvent::SyncFailed {
                retry_at_ms: Some(_),
                ..
            }
        )
    });
    assert!(failed, "a lost response is a transient failure: {events:?}");
    assert_eq!(world.server_records(ACME, SPACE_ENTITY).len(), 5);
    assert_eq!(
        a.status().unwrap().pending_ops,
        5,
        "unacknowledged ops stay queued"
    );

    let events = world.sync(&mut a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert_one_row_per_client_id(&world, &ids);
    for op_id in &op_ids {
        assert_eq!(world.server.effect_count(ACME, op_id), 1, "op {op_id}");
    }
    assert!(a.queued_ops().unwrap().is_empty());
    for id in &ids {
        let server = world.server_record(ACME, id);
        assert_eq!(a.record(id).server_id, Some(server.id));
    }

    // An update whose response is lost.
    a.update(&ids[0], json!({ "name": "renamed" })).unwrap();
    let update_op = a.queued_ops().unwrap()[0].op_id.clone();
    a.sync_now().unwrap();
    let mut transport =
        ScriptedTransport::new(&mut world.server, [ServerFault::ApplyThenLoseResponse]);
    a.drive_blocking(&mut transport).unwrap();
    world.sync(&mut a);
    assert_eq!(world.server.effect_count(ACME, &update_op), 1);
    let server = world.server_record(ACME, &ids[0]);
    assert_eq!(server.version, 2);
    assert_eq!(server.data["name"], json!("renamed"));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a]);
    world.server.check_invariants();
}

#[test]
fn an_app_killed_with_a_push_in_flight_resumes_without_duplicates_or_loss() {
    // Proves: killing the app after a push request was emitted but before its response
    // (whether or not the request reached the server, and also at the crash point just
    // before the response is stored) loses nothing and duplicates nothing after reopen.
    let mut world = World::new();
    let mut a = world.device(ACME);

    // 1. The request never reaches the server.
    let first: Vec<String> = (0..3).map(|n| a.create_named(&format!("a{n}"))).collect();
    a.sync_now().unwrap();
    let request = a.poll_request().expect("a push request");
    assert!(request.operation_name.starts_with("syncPush"));
    a.reopen();
    assert_eq!(a.status().unwrap().pending_ops, 3);
    a.check_invariants().unwrap();
    world.sync(&mut a);
    assert_one_row_per_client_id(&world, &first);

    // 2. The request reaches the server; the app dies before the response arrives.
    let second: Vec<String> = (0..3).map(|n| a.create_named(&format!("b{n}"))).collect();
    let second_ops: Vec<String> = a
        .queued_ops()
        .unwrap()
        .into_iter()
        .map(|op| op.op_id)
        .collect();
    a.sync_now().unwrap();
    let request = a.poll_request().expect("a push request");
    let _lost = world.server.handle(&request);
    a.reopen();
    a.check_invariants().unwrap();
    world.sync(&mut a);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_one_row_per_client_id(&world, &all);

    // 3. The response arrives and the app dies at the crash point before storing it.
    let third: Vec<String> = (0..3).map(|n| a.create_named(&format!("c{n}"))).collect();
    let third_ops: Vec<String> = a
        .queued_ops()
        .unwrap()
        .into_iter()
        .map(|op| op.op_id)
        .collect();
    a.set_crash_hook(Box::new(CrashAt(CrashPoint::BeforeStoringResponse)));
    a.sync_now().unwrap();
    let request = a.poll_request().expect("a push request");
    let response = world.server.handle(&request);
    let outcome = a.handle_response(request.request_id, Ok(response));
    assert!(matches!(
        outcome,
        Err(SyncError::Killed(CrashPoint::BeforeStoringResponse))
    ));
    a.reopen();
    a.check_invariants().unwrap();
    assert_eq!(
        a.status().unwrap().pending_ops,
        3,
        "nothing of the answer was stored"
    );
    world.sync(&mut a);
    let all: Vec<String> = all.iter().chain(&third).cloned().collect();
    assert_one_row_per_client_id(&world, &all);
    for op_id in second_ops.iter().chain(&third_ops) {
        assert_eq!(world.server.effect_count(ACME, op_id), 1, "op {op_id}");
    }
    assert!(a.queued_ops().unwrap().is_empty());

    // 4. The app dies right after marking the ops `sending`, before handing the request out.
    let fourth = a.create_named("d0");
    a.set_crash_hook(Box::new(CrashAt(CrashPoint::AfterMarkSending)));
    let outcome = a.sync_now();
    assert!(matches!(
        outcome,
        Err(SyncError::Killed(CrashPoint::AfterMarkSending))
    ));
    a.reopen();
    a.check_invariants().unwrap();
    assert_eq!(a.queued_ops().unwrap()[0].status, OpStatus::Pending);
    world.sync(&mut a);
    let all: Vec<String> = all.iter().chain([&fourth]).cloned().collect();
    assert_one_row_per_client_id(&world, &all);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a]);
    world.server.check_invariants();
}

#[test]
fn an_app_killed_between_pull_pages_resumes_from_the_saved_cursor() {
    // Proves: a pulled page and its cursor commit together: killed between two pages, the
    // device keeps the first page, resumes from the saved cursor (not from the start),
    // and ends complete.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let items: Vec<serde_json::Value> = (0..1500).map(|n| json!({ "n": n })).collect();
    a.create_many(SPACE_ENTITY, SPACE, items).unwrap();
    world.sync(&mut a);

    let mut b = world.device(ACME);
    b.set_crash_hook(Box::new(CrashAt(CrashPoint::BetweenPullPages)));
    b.sync_now().unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    let outcome = b.drive_blocking(&mut transport);
    assert!(matches!(
        outcome,
        Err(SyncError::Killed(CrashPoint::BetweenPullPages))
    ));
    b.reopen();
    b.check_invariants().unwrap();
    assert_eq!(
        b.live_view(SPACE_ENTITY).len(),
        1000,
        "the first page was kept"
    );
    let cursor = b
        .cursor(SPACE_ENTITY)
        .unwrap()
        .expect("the first page's cursor");

    b.sync_now().unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    b.drive_blocking(&mut transport).unwrap();
    let first_pull = transport
        .sent
        .iter()
        .find(|request| request.operation_name == "syncPullSpace")
        .expect("a pull");
    assert_eq!(first_pull.variables["lastSyncAt"], json!(cursor));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn pagination_delivers_2500_records_across_a_page_boundary_inside_one_commit_stamp() {
    // Proves: 2,500 records pulled with the default limit of 1000 arrive complete on a
    // second device, although a page boundary falls between two rows that share one
    // commit stamp (one push request of 100 rows shares a stamp).
    let mut world = World::new();
    let mut a = world.device(ACME);
    // 50 rows first, so that the 100-row push batches that follow straddle row 1000.
    let items = |from: usize, to: usize| -> Vec<serde_json::Value> {
        (from..to)
            .map(|n| json!({ "name": format!("r{n}"), "n": n }))
            .collect()
    };
    a.create_many(SPACE_ENTITY, SPACE, items(0, 50)).unwrap();
    world.sync(&mut a);
    a.create_many(SPACE_ENTITY, SPACE, items(50, 2500)).unwrap();
    a.sync_now().unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    a.drive_blocking(&mut transport).unwrap();
    let pushes = transport
        .sent
        .iter()
        .filter(|request| request.operation_name == "syncPushSpace")
        .count();
    assert_eq!(pushes, 25, "2,450 ops in batches of at most 100");

    let mut rows = world.server_records(ACME, SPACE_ENTITY);
    assert_eq!(rows.len(), 2500);
    rows.sort_by(|x, y| (x.commit_stamp, &x.id).cmp(&(y.commit_stamp, &y.id)));
    assert_eq!(
        rows[999].commit_stamp, rows[1000].commit_stamp,
        "the first page boundary must fall inside one commit stamp"
    );
    assert_eq!(rows[1999].commit_stamp, rows[2000].commit_stamp);

    let mut b = world.device(ACME);
    b.sync_now().unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    let events = b.drive_blocking(&mut transport).unwrap();
    assert!(events.contains(&SyncEvent::SyncCompleted));
    let space_pulls: Vec<serde_json::Value> = transport
        .sent
        .iter()
        .filter(|request| request.operation_name == "syncPullSpace")
        .map(|request| request.variables.clone())
        .collect();
    assert_eq!(space_pulls.len(), 3, "pages of 1000, 1000 and 500");
    assert!(space_pulls
        .iter()
        .all(|variables| variables["limit"] == json!(1000)));
    assert_eq!(b.live_view(SPACE_ENTITY).len(), 2500);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    assert!(!events
        .iter()
        .any(|event| matches!(event, SyncEvent::RepairStarted { .. })));
}

#[test]
fn small_pages_cut_inside_stamp_groups_and_lose_nothing() {
    // Proves: with a pull limit of 33 (a per-entity setting), every page boundary of a
    // 250-row pull lands inside a 100-row commit-stamp group, and nothing is skipped.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let items: Vec<serde_json::Value> = (0..250).map(|n| json!({ "n": n })).collect();
    a.create_many(SPACE_ENTITY, SPACE, items).unwrap();
    world.sync(&mut a);
    let mut registry = EntityRegistry::new();
    let mut space = EntityConfig::new(SPACE_ENTITY).unwrap();
    space.pull_page_limit = 33;
    registry.register(space).unwrap();
    let mut b = world.device_with_registry(ACME, registry);
    b.sync_now().unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    b.drive_blocking(&mut transport).unwrap();
    assert_eq!(transport.sent.len(), 8, "ceil(250 / 33) pages");
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn an_edit_made_while_its_push_is_in_flight_is_pushed_next() {
    // Proves: a write made between a push request and its response is neither lost nor
    // overwritten by the response; it is pushed next, in the same sync. Both for an
    // update in flight and for the record's first insert in flight.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let mut b = world.device(ACME);

    let synced = a.create_named("v1");
    world.sync(&mut a);
    a.clock.advance_ms(10);
    a.update(&synced, json!({ "name": "v2" })).unwrap();
    let fresh = a.create_named("new");
    a.sync_now().unwrap();
    let request = a.poll_request().expect("push");
    a.clock.advance_ms(10);
    a.update(&synced, json!({ "name": "v3" })).unwrap();
    a.update(&fresh, json!({ "name": "new-edited" })).unwrap();
    let response = world.server.handle(&request);
    a.handle_response(request.request_id, Ok(response)).unwrap();
    assert_eq!(
        a.record(&synced).data["name"],
        json!("v3"),
        "the response kept the edit"
    );
    world.drive(&mut a);

    assert!(a.queued_ops().unwrap().is_empty());
    assert_eq!(world.server_record(ACME, &synced).data["name"], json!("v3"));
    assert_eq!(
        world.server_record(ACME, &fresh).data["name"],
        json!("new-edited")
    );
    world.sync(&mut b);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

/// Two devices with one synced record; returns its client id.
fn two_devices_with_one_record(world: &mut World) -> (Device, Device, String) {
    let mut a = world.device(ACME);
    let mut b = world.device(ACME);
    let id = a.create_named("original");
    world.sync(&mut a);
    world.sync(&mut b);
    assert_eq!(b.record(&id).data["name"], json!("original"));
    (a, b, id)
}

#[test]
fn a_pulled_older_change_does_not_overwrite_a_newer_pending_local_edit() {
    // Proves: a pull that meets a record with a pending local op keeps the local edit when
    // its stamp is newer; after the next sync the server and the other device have it.
    let mut world = World::new();
    let (mut a, mut b, id) = two_devices_with_one_record(&mut world);
    b.clock.advance_ms(1_000);
    b.update(&id, json!({ "name": "from B" })).unwrap();
    world.sync(&mut b);

    // A starts a sync with nothing to push; while its pull is in flight, the user edits.
    a.clock.advance_ms(2_000);
    a.sync_now().unwrap();
    let pull = a.poll_request().expect("pull");
    assert_eq!(pull.operation_name, "syncPullSpace");
    a.update(&id, json!({ "name": "from A" })).unwrap();
    let response = world.server.handle(&pull);
    a.handle_response(pull.request_id, Ok(response)).unwrap();
    let events = world.drive(&mut a);
    assert_eq!(
        a.record(&id).data["name"],
        json!("from A"),
        "pull overwrote the edit"
    );
    assert_eq!(a.status().unwrap().pending_ops, 1);
    assert_eq!(
        count(&events, |e| matches!(e, SyncEvent::OpSuperseded { .. })),
        0
    );

    world.sync(&mut a);
    assert_eq!(world.server_record(ACME, &id).data["name"], json!("from A"));
    world.sync(&mut b);
    assert_eq!(b.record(&id).data["name"], json!("from A"));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn a_pulled_newer_change_supersedes_an_older_pending_local_edit() {
    // Proves: a pull that meets a pending local edit with an older stamp gives the record
    // the server's version, drops the op and reports `OpSuperseded`.
    let mut world = World::new();
    let (mut a, mut b, id) = two_devices_with_one_record(&mut world);
    b.clock.advance_ms(2_000);
    b.update(&id, json!({ "name": "from B" })).unwrap();
    world.sync(&mut b);

    a.clock.advance_ms(1_000);
    a.sync_now().unwrap();
    let pull = a.poll_request().expect("pull");
    a.update(&id, json!({ "name": "from A" })).unwrap();
    let op_id = a.queued_ops().unwrap()[0].op_id.clone();
    let response = world.server.handle(&pull);
    a.handle_response(pull.request_id, Ok(response)).unwrap();
    let events = world.drive(&mut a);
    assert!(events.contains(&SyncEvent::OpSuperseded {
        op_id,
        client_id: id.clone()
    }));
    assert_eq!(a.record(&id).data["name"], json!("from B"));
    assert!(a.queued_ops().unwrap().is_empty());
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn pushed_concurrent_edits_are_decided_by_the_newer_stamp() {
    // Proves: the same rule on the push path (the server decides): a newer pending local
    // edit overwrites the server's; an older one is superseded and the device takes the
    // server's version.
    let mut world = World::new();
    let (mut a, mut b, id) = two_devices_with_one_record(&mut world);
    b.clock.advance_ms(1_000);
    b.update(&id, json!({ "name": "B1" })).unwrap();
    a.clock.advance_ms(2_000);
    a.update(&id, json!({ "name": "A2" })).unwrap();
    world.sync(&mut b);
    world.sync(&mut a);
    assert_eq!(world.server_record(ACME, &id).data["name"], json!("A2"));
    world.sync(&mut b);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);

    b.clock.advance_ms(5_000);
    a.clock.advance_ms(1_000);
    b.update(&id, json!({ "name": "B-newer" })).unwrap();
    a.update(&id, json!({ "name": "A-older" })).unwrap();
    let op_id = a.queued_ops().unwrap()[0].op_id.clone();
    world.sync(&mut b);
    let events = world.sync(&mut a);
    assert!(events.contains(&SyncEvent::OpSuperseded {
        op_id,
        client_id: id.clone()
    }));
    assert_eq!(a.record(&id).data["name"], json!("B-newer"));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn a_request_for_another_tenant_is_rejected_and_changes_nothing() {
    // Proves: a request naming another tenant (in the envelope, in variables, or by using
    // another tenant's token) is rejected as UNAUTHORIZED, carries no data, and leaves the
    // server exactly as it was; the device reports a non-retried failure.
    let mut world = World::new();
    let mut acme = world.device(ACME);
    acme.create_named("acme secret");
    world.sync(&mut acme);
    let mut globex = world.device(GLOBEX);
    globex.create_named("globex draft");
    globex.sync_now().unwrap();
    let push = globex.poll_request().expect("push");
    let before = world.server.clone();

    let mut tampered = Vec::new();
    let mut envelope = push.clone();
    envelope.tenant_id = ACME.to_owned();
    tampered.push(envelope);
    let mut variables = push.clone();
    variables.variables["tenantId"] = json!(ACME);
    tampered.push(variables);
    let mut both = push.clone();
    both.tenant_id = ACME.to_owned();
    both.variables["tenantId"] = json!(ACME);
    tampered.push(both);
    let mut pull = push.clone();
    pull.operation_name = "syncPullSpace".to_owned();
    pull.tenant_id = ACME.to_owned();
    pull.variables = json!({ "lastSyncAt": null, "tenantId": ACME, "limit": 1000 });
    tampered.push(pull.clone());
    let mut pull_variables_only = pull.clone();
    pull_variables_only.tenant_id = GLOBEX.to_owned();
    tampered.push(pull_variables_only);
    for request in &tampered {
        let response = world.server.handle(request);
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            json!("UNAUTHORIZED"),
            "{response}"
        );
        assert!(response.get("data").is_none(), "{response}");
        assert!(!response.to_string().contains("acme secret"));
        assert!(
            world.server == before,
            "a rejected request changed the server"
        );
    }

    // A device of acme holding globex's token.
    let mut impostor = world.device(ACME);
    impostor.set_auth_token(GLOBEX_TOKEN).unwrap();
    let events = world.sync(&mut impostor);
    let refused = events.iter().any(|event| {
        matches!(event, SyncEvent::SyncFailed { reason, retry_at_ms: None } if reason.contains("unauthorized"))
    });
    assert!(refused, "{events:?}");
    assert!(impostor.all_records().unwrap().is_empty());
    assert!(world.server == before);
    // No retry timer: only the 5-minute interval, armed when the app opened.
    assert_eq!(
        impostor.poll_timeout(),
        Some(sync_engine::testing::EPOCH_MS + sync_engine::sync::SYNC_INTERVAL_MS)
    );

    // The untampered request still works.
    let response = world.server.handle(&push);
    globex
        .handle_response(push.request_id, Ok(response))
        .unwrap();
    world.drive(&mut globex);
    assert_eq!(world.server_records(GLOBEX, SPACE_ENTITY).len(), 1);
    assert_eq!(world.server_records(ACME, SPACE_ENTITY).len(), 1);
    assert_eq!(
        globex.live_view(SPACE_ENTITY).len(),
        1,
        "no acme row reached globex"
    );
    world.server.check_invariants();
}

#[test]
fn updates_and_soft_deletes_propagate_and_echoes_change_nothing() {
    // Proves: an update and a soft delete made on one device reach another; syncing again
    // (our own writes echoing back) leaves every record identical and raises no conflict.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let mut b = world.device(ACME);
    let ids: Vec<String> = (0..3).map(|n| a.create_named(&format!("r{n}"))).collect();
    world.sync(&mut a);
    world.sync(&mut b);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);

    a.clock.advance_ms(100);
    a.update(&ids[0], json!({ "name": "r0 renamed", "color": "red" }))
        .unwrap();
    a.delete(&ids[1]).unwrap();
    world.sync(&mut a);
    let server_deleted = world.server_record(ACME, &ids[1]);
    assert!(server_deleted.is_deleted);

    let a_before = a.all_records().unwrap();
    let server_before = world.server.clone();
    let events = world.sync(&mut a);
    assert_eq!(
        a.all_records().unwrap(),
        a_before,
        "an echo changed a record"
    );
    assert!(world.server == server_before, "a pull changed the server");
    assert_eq!(
        count(&events, |e| matches!(e, SyncEvent::ConflictStored { .. })),
        0
    );
    assert!(events.contains(&SyncEvent::SyncCompleted));

    world.sync(&mut b);
    let renamed = b.record(&ids[0]);
    assert_eq!(renamed.data["name"], json!("r0 renamed"));
    assert_eq!(renamed.data["color"], json!("red"));
    assert!(b.record(&ids[1]).is_deleted);
    assert!(b
        .list(SPACE_ENTITY, Some(SPACE), Default::default())
        .unwrap()
        .iter()
        .all(|record| record.client_id != ids[1]));
    assert!(matches!(
        b.update(&ids[1], json!({ "name": "zombie" })),
        Err(sync_engine::WriteError::RecordDeleted(_))
    ));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);

    let b_before = b.all_records().unwrap();
    let events = world.sync(&mut b);
    assert_eq!(b.all_records().unwrap(), b_before);
    assert_eq!(
        count(&events, |e| matches!(e, SyncEvent::ConflictStored { .. })),
        0
    );
}

#[test]
fn status_reports_offline_pending_failed_conflicts_and_last_sync() {
    // Proves: `status()` tells the app whether it is online, whether a sync runs, how many
    // ops are pending or failed, and when the last successful sync finished.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let status = a.status().unwrap();
    assert!(status.online);
    assert_eq!(status.last_successful_sync_ms, None);

    a.handle_network_change(false).unwrap();
    a.create_named("one");
    a.create_named("two");
    let status = a.status().unwrap();
    assert!(!status.online);
    assert!(!status.syncing);
    assert_eq!(status.pending_ops, 2);
    assert_eq!(status.failed_ops, 0);
    assert_eq!(status.open_conflicts, 0);

    a.clock.advance_ms(1_234);
    a.handle_network_change(true).unwrap();
    assert!(
        a.status().unwrap().syncing,
        "a sync runs while its request is out"
    );
    world.drive(&mut a);
    let status = a.status().unwrap();
    assert!(status.online);
    assert!(!status.syncing);
    assert_eq!(status.pending_ops, 0);
    assert_eq!(
        status.last_successful_sync_ms,
        Some(sync_engine::testing::EPOCH_MS + 1_234)
    );

    // A failed sync does not move "last successful sync".
    a.clock.advance_ms(1_000);
    a.create_named("three");
    a.sync_now().unwrap();
    let mut transport =
        ScriptedTransport::new(&mut world.server, [ServerFault::FailBeforeApplying]);
    a.drive_blocking(&mut transport).unwrap();
    let status = a.status().unwrap();
    assert_eq!(status.pending_ops, 1);
    assert_eq!(
        status.last_successful_sync_ms,
        Some(sync_engine::testing::EPOCH_MS + 1_234)
    );
}

/// A transport that corrupts every push request carrying `client_id` (its data is no
/// longer an object), so that the real server refuses the batch as VALIDATION.
struct CorruptPushOf<'a> {
    server: &'a mut sync_sim::server::ReferenceServer,
    client_id: String,
}

impl sync_engine::Transport for CorruptPushOf<'_> {
    fn send(
        &mut self,
        request: &sync_engine::wire::SyncRequest,
    ) -> Result<serde_json::Value, sync_engine::TransportError> {
        let mut request = request.clone();
        if let Some(items) = request.variables["payload"].as_array_mut() {
            for item in items {
                if item["clientId"] == json!(self.client_id) {
                    item["data"] = json!(42);
                }
            }
        }
        Ok(self.server.handle(&request))
    }
}

#[test]
fn transient_errors_retry_on_a_timer_and_permanent_errors_fail_one_record() {
    // Proves: a transient server error gives `SyncFailed` with a retry time, the retry
    // timer is what `poll_timeout` reports, and firing it retries successfully. A
    // permanent error (VALIDATION, then NOT_FOUND for an update of a record the server
    // never got) marks only that record's ops `failed`; other records keep syncing.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let id = a.create_named("retry me");
    a.sync_now().unwrap();
    let mut transport =
        ScriptedTransport::new(&mut world.server, [ServerFault::FailBeforeApplying]);
    let events = a.drive_blocking(&mut transport).unwrap();
    let retry_at_ms = events
        .iter()
        .find_map(|event| match event {
            SyncEvent::SyncFailed { retry_at_ms, .. } => *retry_at_ms,
            _ => None,
        })
        .expect("a transient failure schedules a retry");
    assert!(world.server_records(ACME, SPACE_ENTITY).is_empty());
    assert_eq!(a.poll_timeout(), Some(retry_at_ms));
    a.clock.set_ms(retry_at_ms - 1);
    a.handle_timeout().unwrap();
    assert_eq!(a.poll_request(), None, "the timer fired early");
    a.clock.set_ms(retry_at_ms);
    a.handle_timeout().unwrap();
    let events = world.drive(&mut a);
    assert_eq!(
        events.first(),
        Some(&SyncEvent::SyncStarted {
            trigger: SyncTrigger::Retry
        })
    );
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("retry me")
    );

    // A permanent error: the insert of `doomed` is refused as malformed.
    let doomed = a.create_named("doomed");
    a.sync_now().unwrap();
    let mut transport = CorruptPushOf {
        server: &mut world.server,
        client_id: doomed.clone(),
    };
    let events = a.drive_blocking(&mut transport).unwrap();
    assert!(events.iter().any(|event| matches!(
        event,
        SyncEvent::OpFailed { client_id, code: Some(ErrorCode::Validation), .. } if *client_id == doomed
    )));
    // Its update names a record the server does not have: NOT_FOUND.
    a.update(&doomed, json!({ "name": "still doomed" }))
        .unwrap();
    let healthy = a.create_named("healthy");
    a.update(&id, json!({ "name": "retried and renamed" }))
        .unwrap();
    let events = world.sync(&mut a);
    assert!(events.iter().any(|event| matches!(
        event,
        SyncEvent::OpFailed { client_id, code: Some(ErrorCode::NotFound), .. } if *client_id == doomed
    )), "{events:?}");
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert_eq!(
        world.server_record(ACME, &healthy).data["name"],
        json!("healthy")
    );
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("retried and renamed")
    );
    let failed: Vec<_> = a
        .queued_ops()
        .unwrap()
        .into_iter()
        .filter(|op| op.status == OpStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed
        .iter()
        .all(|op| op.entity_id == doomed && op.last_error.is_some()));
    assert_eq!(a.status().unwrap().failed_ops, 2);
    assert_eq!(a.status().unwrap().pending_ops, 0);
    // Failed ops are not retried by later syncs, and do not stop them.
    let server_before = world.server.clone();
    let events = world.sync(&mut a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert!(world.server == server_before);
}

#[test]
fn triggers_during_a_sync_never_start_a_second_one_in_parallel() {
    // Proves: app-open, network-regained and sync-now arriving while a sync runs do not
    // put a second request in flight; they fold into exactly one follow-up sync.
    let mut world = World::new();
    let mut a = world.device(ACME);
    for n in 0..250 {
        a.create_named(&format!("r{n}"));
    }
    a.sync_now().unwrap();
    let mut answered = 0;
    while let Some(request) = a.poll_request() {
        assert_eq!(a.poll_request(), None, "two requests in flight");
        if answered < 3 {
            a.handle_app_open().unwrap();
            a.handle_network_change(false).unwrap();
            a.handle_network_change(true).unwrap();
            a.sync_now().unwrap();
            assert_eq!(a.poll_request(), None, "a trigger put a request in flight");
        }
        let response = world.server.handle(&request);
        a.handle_response(request.request_id, Ok(response)).unwrap();
        answered += 1;
    }
    let events = a.drain_events();
    let starts = count(&events, |e| matches!(e, SyncEvent::SyncStarted { .. }));
    let completions = count(&events, |e| *e == SyncEvent::SyncCompleted);
    assert_eq!(starts, 2, "one sync, then one follow-up: {events:?}");
    assert_eq!(completions, 2);
    assert_eq!(world.server_records(ACME, SPACE_ENTITY).len(), 250);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a]);
    let (_, answered) = world.drive_one_at_a_time(&mut a);
    assert_eq!(answered, 0, "nothing left to do");
}

#[test]
fn a_device_that_missed_rows_notices_by_version_hash_and_repairs() {
    // Proves: when a device's copy diverges from the server (a server bug let the cursor
    // pass rows it never sent), the versionHash check notices, the engine reports
    // `RepairStarted`, and the repair pull ends with the device equal to the server.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let items: Vec<serde_json::Value> = (0..25).map(|n| json!({ "n": n })).collect();
    a.create_many(SPACE_ENTITY, SPACE, items).unwrap();
    world.sync(&mut a);

    let mut registry = EntityRegistry::new();
    let mut space = EntityConfig::new(SPACE_ENTITY).unwrap();
    space.pull_page_limit = 10;
    registry.register(space).unwrap();
    let mut b = world.device_with_registry(ACME, registry);
    world.server.set_defects(ServerDefects {
        drop_last_row_of_page: true,
        ..ServerDefects::default()
    });
    let events = world.sync(&mut b);
    assert!(events.contains(&SyncEvent::RepairStarted {
        entity: SPACE_ENTITY.to_owned()
    }));
    let missing = 25 - b.live_view(SPACE_ENTITY).len();
    assert!(
        missing > 0,
        "the planted defect must make the device miss rows"
    );
    assert!(
        events.contains(&SyncEvent::SyncCompleted),
        "one repair per sync, no loop"
    );

    // The server is fixed; the next sync notices the divergence again and repairs it.
    world.server.set_defects(ServerDefects::default());
    let events = world.sync(&mut b);
    assert!(events.contains(&SyncEvent::RepairStarted {
        entity: SPACE_ENTITY.to_owned()
    }));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    let events = world.sync(&mut b);
    assert!(!events
        .iter()
        .any(|e| matches!(e, SyncEvent::RepairStarted { .. })));
}
