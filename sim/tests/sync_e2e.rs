//! Issue 3, end to end: the real engine syncing with the real reference server.
//!
//! Each test opens with a comment saying what it proves. Nothing is mocked: devices are
//! engines on temporary SQLite files, the server is `sync_sim::server::ReferenceServer`,
//! both driven by the simulation kernel, and faults are the kernel's own (planned request
//! fates, held requests, kills at named crash points; see `support/mod.rs`).

mod support;

use serde_json::json;
use std::collections::BTreeSet;
use support::*;
use sync_engine::wire::ErrorCode;
use sync_engine::{
    CrashPoint, EntityConfig, EntityRegistry, OpStatus, SyncEvent, SyncFailure, SyncTrigger,
    WriteError,
};
use sync_sim::kernel::Called;
use sync_sim::server::ServerDefects;

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

fn queued_op_ids(world: &World, device: DeviceId) -> Vec<String> {
    world
        .engine(device)
        .queued_ops()
        .unwrap()
        .into_iter()
        .map(|op| op.op_id)
        .collect()
}

#[test]
fn offline_creates_reach_the_server_once_and_a_second_device() {
    // Proves: ten records created offline emit no request; going online pushes them, the
    // server holds exactly ten rows (none twice by clientId), and a second device pulls
    // all ten with the same data.
    let mut world = World::new();
    let a = world.device(ACME);
    world.sim.offline(a, None).unwrap();
    let ids: Vec<String> = (0..10)
        .map(|n| world.create_named(a, &format!("r{n}")))
        .collect();
    world.call(a, |engine| Ok(engine.sync_now()?));
    world.call(a, |engine| Ok(engine.handle_app_open()?));
    // Ten minutes pass: the kernel fires the interval timer on its own meanwhile.
    world.wait(10 * 60 * 1000);
    world.call(a, |engine| Ok(engine.handle_timeout()?));
    assert!(
        world.take_requests(a).is_empty(),
        "offline, nothing may be sent"
    );
    assert!(world.server_records(ACME, SPACE_ENTITY).is_empty());

    world.sim.online(a).unwrap();
    let events = world.run(a);
    assert!(events.contains(&SyncEvent::SyncStarted {
        trigger: SyncTrigger::NetworkRegained
    }));
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert_one_row_per_client_id(&world, &ids);
    assert!(world.engine(a).queued_ops().unwrap().is_empty());

    let b = world.device(ACME);
    world.sync(b);
    assert_eq!(world.live_count(b, SPACE_ENTITY), 10);
    world.assert_converged();
    world.sim.server().check_invariants();
}

#[test]
fn a_lost_response_after_the_server_applied_is_retried_without_duplicates() {
    // Proves: when the server applies a push and the response is lost, the retry is
    // recognised by opId: one row per clientId, and each op changed the server once. The
    // same holds for an update whose response is lost.
    let mut world = World::new();
    let a = world.device(ACME);
    let ids: Vec<String> = (0..5)
        .map(|n| world.create_named(a, &format!("r{n}")))
        .collect();
    let op_ids = queued_op_ids(&world, a);
    assert_eq!(op_ids.len(), 5);

    world.sim.plan_fates(a, [lost_response()]);
    let events = world.sync(a);
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
        world.engine(a).status().unwrap().pending_ops,
        5,
        "unacknowledged ops stay queued"
    );

    let events = world.sync(a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert_one_row_per_client_id(&world, &ids);
    for op_id in &op_ids {
        assert_eq!(
            world.sim.server().effect_count(ACME, op_id),
            1,
            "op {op_id}"
        );
    }
    assert!(world.engine(a).queued_ops().unwrap().is_empty());
    for id in &ids {
        let server = world.server_record(ACME, id);
        assert_eq!(world.record(a, id).server_id, Some(server.id));
    }

    // An update whose response is lost.
    world.update(a, &ids[0], json!({ "name": "renamed" }));
    let update_op = queued_op_ids(&world, a)[0].clone();
    world.sim.plan_fates(a, [lost_response()]);
    world.sync(a);
    world.sync(a);
    assert_eq!(world.sim.server().effect_count(ACME, &update_op), 1);
    let server = world.server_record(ACME, &ids[0]);
    assert_eq!(server.version, 2);
    assert_eq!(server.data["name"], json!("renamed"));
    world.assert_converged();
    world.sim.server().check_invariants();
}

#[test]
fn an_app_killed_with_a_push_in_flight_resumes_without_duplicates_or_loss() {
    // Proves: killing the app after a push request was emitted but before its response
    // (whether or not the request reached the server, and also at the crash point just
    // before the response is stored) loses nothing and duplicates nothing after reopen.
    let mut world = World::new();
    let a = world.device(ACME);

    // 1. The request never reaches the server.
    let first: Vec<String> = (0..3)
        .map(|n| world.create_named(a, &format!("a{n}")))
        .collect();
    world.sim.hold(a);
    world.call(a, |engine| Ok(engine.sync_now()?));
    let request = world.take_one_held(a);
    assert!(request.operation_name.starts_with("syncPush"));
    // Only the held queue stops; the request itself dies with the app, unsent.
    world.sim.release(a);
    world.kill(a);
    world.reopen(a);
    assert_eq!(world.engine(a).status().unwrap().pending_ops, 3);
    world.engine(a).check_invariants().unwrap();
    world.sync(a);
    assert_one_row_per_client_id(&world, &first);

    // 2. The request reaches the server; the app dies before the response arrives.
    let second: Vec<String> = (0..3)
        .map(|n| world.create_named(a, &format!("b{n}")))
        .collect();
    let second_ops = queued_op_ids(&world, a);
    world.sim.plan_fates(a, [slow_response(1_000)]);
    world.call(a, |engine| Ok(engine.sync_now()?));
    world.wait(500);
    assert_eq!(
        world.server_records(ACME, SPACE_ENTITY).len(),
        6,
        "the server applied the push"
    );
    world.kill(a);
    world.reopen(a);
    world.engine(a).check_invariants().unwrap();
    world.sync(a);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_one_row_per_client_id(&world, &all);

    // 3. The response arrives and the app dies at the crash point before storing it.
    let third: Vec<String> = (0..3)
        .map(|n| world.create_named(a, &format!("c{n}")))
        .collect();
    let third_ops = queued_op_ids(&world, a);
    world.sim.crash(a, Some(CrashPoint::BeforeStoringResponse));
    world.call(a, |engine| Ok(engine.sync_now()?));
    assert_eq!(world.run_until_killed(a), CrashPoint::BeforeStoringResponse);
    world.reopen(a);
    world.engine(a).check_invariants().unwrap();
    assert_eq!(
        world.engine(a).status().unwrap().pending_ops,
        3,
        "nothing of the answer was stored"
    );
    world.sync(a);
    let all: Vec<String> = all.iter().chain(&third).cloned().collect();
    assert_one_row_per_client_id(&world, &all);
    for op_id in second_ops.iter().chain(&third_ops) {
        assert_eq!(
            world.sim.server().effect_count(ACME, op_id),
            1,
            "op {op_id}"
        );
    }
    assert!(world.engine(a).queued_ops().unwrap().is_empty());

    // 4. The app dies right after marking the ops `sending`, before handing the request out.
    let fourth = world.create_named(a, "d0");
    world.sim.crash(a, Some(CrashPoint::AfterMarkSending));
    let outcome = world.try_call(a, |engine| Ok(engine.sync_now()?));
    assert_eq!(outcome, Called::Killed(CrashPoint::AfterMarkSending));
    world.reopen_offline(a);
    world.engine(a).check_invariants().unwrap();
    assert_eq!(
        world.engine(a).queued_ops().unwrap()[0].status,
        OpStatus::Pending
    );
    world.sim.online(a).unwrap();
    world.sync(a);
    let all: Vec<String> = all.iter().chain([&fourth]).cloned().collect();
    assert_one_row_per_client_id(&world, &all);
    world.assert_converged();
    world.sim.server().check_invariants();
}

#[test]
fn an_app_killed_between_pull_pages_resumes_from_the_saved_cursor() {
    // Proves: a pulled page and its cursor commit together: killed between two pages, the
    // device keeps the first page, resumes from the saved cursor (not from the start),
    // and ends complete.
    let mut world = World::new();
    let a = world.device(ACME);
    let items: Vec<serde_json::Value> = (0..1500).map(|n| json!({ "n": n })).collect();
    world.create_many(a, SPACE_ENTITY, SPACE, items);
    world.sync(a);

    // B's first sync (the app-open one) is killed between its two pages.
    let b = world.add_device(ACME);
    world.sim.crash(b, Some(CrashPoint::BetweenPullPages));
    world.open(b);
    assert_eq!(world.run_until_killed(b), CrashPoint::BetweenPullPages);
    world.take_requests(b);
    // Reopening starts a sync whose first pull is out but unanswered: the state read now
    // is what the reopen recovered.
    world.reopen(b);
    world.engine(b).check_invariants().unwrap();
    assert_eq!(
        world.live_count(b, SPACE_ENTITY),
        1000,
        "the first page was kept"
    );
    let cursor = world
        .engine(b)
        .cursor(SPACE_ENTITY)
        .unwrap()
        .expect("the first page's cursor");

    world.sync(b);
    let requests = world.take_requests(b);
    let first_pull = requests
        .iter()
        .find(|request| request.operation_name == "syncPullSpace")
        .expect("a pull");
    assert_eq!(first_pull.variables.to_json()["lastSyncAt"], json!(cursor));
    world.assert_converged();
}

#[test]
fn pagination_delivers_2500_records_across_a_page_boundary_inside_one_commit_stamp() {
    // Proves: 2,500 records pulled with the default limit of 1000 arrive complete on a
    // second device, although a page boundary falls between two rows that share one
    // commit stamp (one push request of 100 rows shares a stamp).
    let mut world = World::new();
    let a = world.device(ACME);
    // 50 rows first, so that the 100-row push batches that follow straddle row 1000.
    let items = |from: usize, to: usize| -> Vec<serde_json::Value> {
        (from..to)
            .map(|n| json!({ "name": format!("r{n}"), "n": n }))
            .collect()
    };
    world.create_many(a, SPACE_ENTITY, SPACE, items(0, 50));
    world.sync(a);
    world.create_many(a, SPACE_ENTITY, SPACE, items(50, 2500));
    world.take_requests(a);
    world.sync(a);
    let pushes = world
        .take_requests(a)
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

    // The second device's first sync is the one that opening the app starts.
    let b = world.add_device(ACME);
    world.open(b);
    let events = world.run(b);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    let space_pulls: Vec<serde_json::Value> = world
        .take_requests(b)
        .into_iter()
        .filter(|request| request.operation_name == "syncPullSpace")
        .map(|request| request.variables.into_json())
        .collect();
    assert_eq!(space_pulls.len(), 3, "pages of 1000, 1000 and 500");
    assert!(space_pulls
        .iter()
        .all(|variables| variables["limit"] == json!(1000)));
    assert_eq!(world.live_count(b, SPACE_ENTITY), 2500);
    world.assert_converged();
    assert!(!events
        .iter()
        .any(|event| matches!(event, SyncEvent::RepairStarted { .. })));
}

/// A registry of the one entity type `Space`, pulled `pull_page_limit` rows at a time.
fn space_registry(pull_page_limit: usize) -> EntityRegistry {
    let mut registry = EntityRegistry::new();
    let mut space = EntityConfig::new(SPACE_ENTITY).unwrap();
    space.pull_page_limit = pull_page_limit;
    registry.register(space).unwrap();
    registry
}

#[test]
fn small_pages_cut_inside_stamp_groups_and_lose_nothing() {
    // Proves: with a pull limit of 33 (a per-entity setting), every page boundary of a
    // 250-row pull lands inside a 100-row commit-stamp group, and nothing is skipped.
    let mut world = World::with_registry(space_registry(33));
    let a = world.device(ACME);
    let items: Vec<serde_json::Value> = (0..250).map(|n| json!({ "n": n })).collect();
    world.create_many(a, SPACE_ENTITY, SPACE, items);
    world.sync(a);
    let b = world.add_device(ACME);
    world.open(b);
    world.run(b);
    assert_eq!(world.take_requests(b).len(), 8, "ceil(250 / 33) pages");
    world.assert_converged();
}

#[test]
fn an_edit_made_while_its_push_is_in_flight_is_pushed_next() {
    // Proves: a write made between a push request and its response is neither lost nor
    // overwritten by the response; it is pushed next, in the same sync. Both for an
    // update in flight and for the record's first insert in flight.
    let mut world = World::new();
    let a = world.device(ACME);
    let b = world.device(ACME);

    let synced = world.create_named(a, "v1");
    world.sync(a);
    world.wait(10);
    world.update(a, &synced, json!({ "name": "v2" }));
    let fresh = world.create_named(a, "new");
    world.sim.hold(a);
    world.call(a, |engine| Ok(engine.sync_now()?));
    let request = world.take_one_held(a);
    world.wait(10);
    world.update(a, &synced, json!({ "name": "v3" }));
    world.update(a, &fresh, json!({ "name": "new-edited" }));
    let response = world.serve(&request);
    assert_eq!(world.deliver(a, &request, Ok(response)), Called::Done(()));
    assert_eq!(
        world.record(a, &synced).data["name"],
        json!("v3"),
        "the response kept the edit"
    );
    world.sim.release(a);
    world.run(a);

    assert!(world.engine(a).queued_ops().unwrap().is_empty());
    assert_eq!(world.server_record(ACME, &synced).data["name"], json!("v3"));
    assert_eq!(
        world.server_record(ACME, &fresh).data["name"],
        json!("new-edited")
    );
    world.sync(b);
    world.assert_converged();
}

/// Two devices with one synced record; returns its client id.
fn two_devices_with_one_record(world: &mut World) -> (DeviceId, DeviceId, String) {
    let a = world.device(ACME);
    let b = world.device(ACME);
    let id = world.create_named(a, "original");
    world.sync(a);
    world.sync(b);
    assert_eq!(world.record(b, &id).data["name"], json!("original"));
    (a, b, id)
}

#[test]
fn a_pulled_older_change_does_not_overwrite_a_newer_pending_local_edit() {
    // Proves: a pull that meets a record with a pending local op keeps the local edit when
    // its stamp is newer; after the next sync the server and the other device have it.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    world.sim.clock_jump(b, 1_000);
    world.update(b, &id, json!({ "name": "from B" }));
    world.sync(b);

    // A starts a sync with nothing to push; while its pull is in flight, the user edits.
    world.sim.clock_jump(a, 2_000);
    world.sim.hold(a);
    world.call(a, |engine| Ok(engine.sync_now()?));
    let pull = world.take_one_held(a);
    assert_eq!(pull.operation_name, "syncPullSpace");
    world.update(a, &id, json!({ "name": "from A" }));
    let response = world.serve(&pull);
    assert_eq!(world.deliver(a, &pull, Ok(response)), Called::Done(()));
    world.sim.release(a);
    let events = world.run(a);
    assert_eq!(
        world.record(a, &id).data["name"],
        json!("from A"),
        "pull overwrote the edit"
    );
    assert_eq!(world.engine(a).status().unwrap().pending_ops, 1);
    assert_eq!(
        count(&events, |e| matches!(e, SyncEvent::OpSuperseded { .. })),
        0
    );

    world.sync(a);
    assert_eq!(world.server_record(ACME, &id).data["name"], json!("from A"));
    world.sync(b);
    assert_eq!(world.record(b, &id).data["name"], json!("from A"));
    world.assert_converged();
}

#[test]
fn a_pulled_newer_change_supersedes_an_older_pending_local_edit() {
    // Proves: a pull that meets a pending local edit with an older stamp gives the record
    // the server's version, drops the op and reports `OpSuperseded`.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    world.sim.clock_jump(b, 2_000);
    world.update(b, &id, json!({ "name": "from B" }));
    world.sync(b);

    world.sim.clock_jump(a, 1_000);
    world.sim.hold(a);
    world.call(a, |engine| Ok(engine.sync_now()?));
    let pull = world.take_one_held(a);
    world.update(a, &id, json!({ "name": "from A" }));
    let op_id = queued_op_ids(&world, a)[0].clone();
    let response = world.serve(&pull);
    assert_eq!(world.deliver(a, &pull, Ok(response)), Called::Done(()));
    world.sim.release(a);
    let events = world.run(a);
    assert!(events.contains(&SyncEvent::OpSuperseded {
        op_id,
        client_id: id.clone()
    }));
    assert_eq!(world.record(a, &id).data["name"], json!("from B"));
    assert!(world.engine(a).queued_ops().unwrap().is_empty());
    world.assert_converged();
}

#[test]
fn pushed_concurrent_edits_are_decided_by_the_newer_stamp() {
    // Proves: the same rule on the push path (the server decides): a newer pending local
    // edit overwrites the server's; an older one is superseded and the device takes the
    // server's version.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    world.sim.clock_jump(b, 1_000);
    world.update(b, &id, json!({ "name": "B1" }));
    world.sim.clock_jump(a, 2_000);
    world.update(a, &id, json!({ "name": "A2" }));
    world.sync(b);
    world.sync(a);
    assert_eq!(world.server_record(ACME, &id).data["name"], json!("A2"));
    world.sync(b);
    world.assert_converged();

    world.sim.clock_jump(b, 5_000);
    world.sim.clock_jump(a, 1_000);
    world.update(b, &id, json!({ "name": "B-newer" }));
    world.update(a, &id, json!({ "name": "A-older" }));
    let op_id = queued_op_ids(&world, a)[0].clone();
    world.sync(b);
    let events = world.sync(a);
    assert!(events.contains(&SyncEvent::OpSuperseded {
        op_id,
        client_id: id.clone()
    }));
    assert_eq!(world.record(a, &id).data["name"], json!("B-newer"));
    world.assert_converged();
}

#[test]
fn a_request_for_another_tenant_is_rejected_and_changes_nothing() {
    // Proves: a request naming another tenant (in the envelope, in variables, or by using
    // another tenant's token) is rejected as UNAUTHORIZED, carries no data, and leaves the
    // server exactly as it was; the device reports a non-retried failure.
    let mut world = World::new();
    let acme = world.device(ACME);
    world.create_named(acme, "acme secret");
    world.sync(acme);
    let globex = world.device(GLOBEX);
    world.create_named(globex, "globex draft");
    world.sim.hold(globex);
    world.call(globex, |engine| Ok(engine.sync_now()?));
    let push = world.take_one_held(globex);
    let before = world.sim.server().clone();

    let mut tampered = Vec::new();
    let mut envelope = push.clone();
    envelope.tenant_id = ACME.to_owned();
    tampered.push(envelope);
    let mut variables = push.clone();
    variables.variables.json_mut()["tenantId"] = json!(ACME);
    tampered.push(variables);
    let mut both = push.clone();
    both.tenant_id = ACME.to_owned();
    both.variables.json_mut()["tenantId"] = json!(ACME);
    tampered.push(both);
    let mut pull = push.clone();
    pull.operation_name = "syncPullSpace".to_owned();
    pull.tenant_id = ACME.to_owned();
    pull.variables = json!({ "lastSyncAt": null, "tenantId": ACME, "limit": 1000 }).into();
    tampered.push(pull.clone());
    let mut pull_variables_only = pull.clone();
    pull_variables_only.tenant_id = GLOBEX.to_owned();
    tampered.push(pull_variables_only);
    for request in &tampered {
        let response = world.serve(request);
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            json!("UNAUTHORIZED"),
            "{response}"
        );
        assert!(response.get("data").is_none(), "{response}");
        assert!(!response.to_string().contains("acme secret"));
        assert!(
            *world.sim.server() == before,
            "a rejected request changed the server"
        );
    }

    // A device of acme holding globex's token. It opens offline, so that its first sync
    // (when the network comes back) already carries the wrong token.
    let impostor = world.add_device(ACME);
    world.sim.offline(impostor, None).unwrap();
    let opened_at_ms = world.sim.now_ms();
    world.open(impostor);
    world.call(impostor, |engine| Ok(engine.set_auth_token(GLOBEX_TOKEN)?));
    world.sim.online(impostor).unwrap();
    let events = world.run(impostor);
    let refused = events.iter().any(|event| {
        matches!(event, SyncEvent::SyncFailed { reason, retry_at_ms: None } if matches!(reason, SyncFailure::AuthRequired { .. }))
    });
    assert!(refused, "{events:?}");
    assert!(world.engine(impostor).all_records().unwrap().is_empty());
    assert!(*world.sim.server() == before);
    // No retry timer: only the 5-minute interval, armed when the app opened.
    assert_eq!(
        world.call(impostor, |engine| Ok(engine.poll_timeout())),
        Some(opened_at_ms + sync_engine::SyncSettings::default().interval_ms)
    );

    // The untampered request still works.
    let response = world.serve(&push);
    assert_eq!(world.deliver(globex, &push, Ok(response)), Called::Done(()));
    world.sim.release(globex);
    world.run(globex);
    assert_eq!(world.server_records(GLOBEX, SPACE_ENTITY).len(), 1);
    assert_eq!(world.server_records(ACME, SPACE_ENTITY).len(), 1);
    assert_eq!(
        world.live_count(globex, SPACE_ENTITY),
        1,
        "no acme row reached globex"
    );
    world.sim.server().check_invariants();
}

#[test]
fn updates_and_soft_deletes_propagate_and_echoes_change_nothing() {
    // Proves: an update and a soft delete made on one device reach another; syncing again
    // (our own writes echoing back) leaves every record identical and raises no conflict.
    let mut world = World::new();
    let a = world.device(ACME);
    let b = world.device(ACME);
    let ids: Vec<String> = (0..3)
        .map(|n| world.create_named(a, &format!("r{n}")))
        .collect();
    world.sync(a);
    world.sync(b);
    world.assert_converged();

    world.wait(100);
    world.update(a, &ids[0], json!({ "name": "r0 renamed", "color": "red" }));
    world.delete(a, &ids[1]);
    world.sync(a);
    let server_deleted = world.server_record(ACME, &ids[1]);
    assert!(server_deleted.is_deleted);

    let a_before = world.engine(a).all_records().unwrap();
    let server_before = world.sim.server().clone();
    let events = world.sync(a);
    assert_eq!(
        world.engine(a).all_records().unwrap(),
        a_before,
        "an echo changed a record"
    );
    assert!(
        *world.sim.server() == server_before,
        "a pull changed the server"
    );
    assert_eq!(
        count(&events, |e| matches!(e, SyncEvent::ConflictStored { .. })),
        0
    );
    assert!(events.contains(&SyncEvent::SyncCompleted));

    world.sync(b);
    let renamed = world.record(b, &ids[0]);
    assert_eq!(renamed.data["name"], json!("r0 renamed"));
    assert_eq!(renamed.data["color"], json!("red"));
    assert!(world.record(b, &ids[1]).is_deleted);
    assert!(world
        .engine(b)
        .list(SPACE_ENTITY, Some(SPACE), Default::default())
        .unwrap()
        .iter()
        .all(|record| record.client_id != ids[1]));
    assert!(matches!(
        world.write(b, |engine| engine
            .update(&ids[1], json!({ "name": "zombie" }))),
        Err(WriteError::RecordDeleted(_))
    ));
    world.assert_converged();

    let b_before = world.engine(b).all_records().unwrap();
    let events = world.sync(b);
    assert_eq!(world.engine(b).all_records().unwrap(), b_before);
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
    let a = world.add_device(ACME);
    world.open(a);
    let status = world.engine(a).status().unwrap();
    assert!(status.online);
    assert_eq!(status.last_successful_sync_ms, None);
    world.run(a);

    world.sim.offline(a, None).unwrap();
    world.create_named(a, "one");
    world.create_named(a, "two");
    let status = world.engine(a).status().unwrap();
    assert!(!status.online);
    assert!(!status.syncing);
    assert_eq!(status.pending_ops, 2);
    assert_eq!(status.failed_ops, 0);
    assert_eq!(status.open_conflicts, 0);

    world.wait(1_234);
    let online_at_ms = world.sim.now_ms();
    world.sim.online(a).unwrap();
    assert!(
        world.engine(a).status().unwrap().syncing,
        "a sync runs while its request is out"
    );
    world.run(a);
    // The last event handled was the answer that completed the sync.
    let synced_at_ms = world.sim.now_ms();
    assert!(synced_at_ms > online_at_ms);
    let status = world.engine(a).status().unwrap();
    assert!(status.online);
    assert!(!status.syncing);
    assert_eq!(status.pending_ops, 0);
    assert_eq!(status.last_successful_sync_ms, Some(synced_at_ms));

    // A failed sync does not move "last successful sync".
    world.wait(1_000);
    world.create_named(a, "three");
    world.sim.plan_fates(a, [busy_server()]);
    world.sync(a);
    let status = world.engine(a).status().unwrap();
    assert_eq!(status.pending_ops, 1);
    assert_eq!(status.last_successful_sync_ms, Some(synced_at_ms));
}

#[test]
fn transient_errors_retry_on_a_timer_and_permanent_errors_fail_one_record() {
    // Proves: a transient server error gives `SyncFailed` with a retry time, the retry
    // timer is what `poll_timeout` reports, and firing it retries successfully. A
    // permanent error (VALIDATION, then NOT_FOUND for an update of a record the server
    // never got) marks only that record's ops `failed`; other records keep syncing.
    let mut world = World::new();
    let a = world.device(ACME);
    let id = world.create_named(a, "retry me");
    world.sim.plan_fates(a, [busy_server()]);
    let events = world.sync(a);
    let retry_at_ms = events
        .iter()
        .find_map(|event| match event {
            SyncEvent::SyncFailed { retry_at_ms, .. } => *retry_at_ms,
            _ => None,
        })
        .expect("a transient failure schedules a retry");
    assert!(world.server_records(ACME, SPACE_ENTITY).is_empty());
    assert_eq!(
        world.call(a, |engine| Ok(engine.poll_timeout())),
        Some(retry_at_ms)
    );
    world.take_requests(a);
    // The device clock reads virtual time (no offset, no drift), so the retry is due at
    // virtual time `retry_at_ms`.
    world.sim.run_until(retry_at_ms - 1).unwrap();
    world.call(a, |engine| Ok(engine.handle_timeout()?));
    assert!(world.take_requests(a).is_empty(), "the timer fired early");
    // The kernel fires the engine's timer when it comes due.
    world.sim.run_until(retry_at_ms).unwrap();
    let events = world.run(a);
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

    // A permanent error: the insert of `doomed` is refused as malformed. The test answers
    // the requests itself, through a network that corrupts every push item of `doomed`
    // (its data is no longer an object), so that the real server refuses it as VALIDATION.
    let doomed = world.create_named(a, "doomed");
    world.sim.hold(a);
    world.call(a, |engine| Ok(engine.sync_now()?));
    let events = world.answer_held(a, |world, request| {
        let mut request = request.clone();
        if let Some(items) = request.variables.json_mut()["payload"].as_array_mut() {
            for item in items {
                if item["clientId"] == json!(doomed) {
                    item["data"] = json!(42);
                }
            }
        }
        world.serve(&request)
    });
    assert!(events.iter().any(|event| matches!(
        event,
        SyncEvent::OpFailed { client_id, code: Some(ErrorCode::Validation), .. } if *client_id == doomed
    )));
    // The server never had it: the record is gone for the app (a local tombstone), and
    // the failed op stays as the report. A later update of it is refused locally.
    let gone = world
        .engine(a)
        .get(&doomed)
        .unwrap()
        .expect("kept as a tombstone");
    assert!(gone.is_deleted);
    let refused = world
        .sim
        .call(a, |engine| {
            Ok(engine.update(&doomed, json!({ "name": "still doomed" }))?)
        })
        .unwrap();
    assert!(matches!(refused, Called::Rejected(_)), "{refused:?}");
    let healthy = world.create_named(a, "healthy");
    world.update(a, &id, json!({ "name": "retried and renamed" }));
    let events = world.sync(a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert_eq!(
        world.server_record(ACME, &healthy).data["name"],
        json!("healthy")
    );
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("retried and renamed")
    );
    let failed: Vec<_> = world
        .engine(a)
        .queued_ops()
        .unwrap()
        .into_iter()
        .filter(|op| op.status == OpStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(failed
        .iter()
        .all(|op| op.entity_id == doomed && op.last_error.is_some()));
    assert_eq!(world.engine(a).status().unwrap().failed_ops, 1);
    assert_eq!(world.engine(a).status().unwrap().pending_ops, 0);
    // Failed ops are not retried by later syncs, and do not stop them.
    let server_before = world.sim.server().clone();
    let events = world.sync(a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    assert!(*world.sim.server() == server_before);
}

#[test]
fn triggers_during_a_sync_never_start_a_second_one_in_parallel() {
    // Proves: app-open, network-regained and sync-now arriving while a sync runs do not
    // put a second request in flight; they fold into exactly one follow-up sync.
    let mut world = World::new();
    let a = world.device(ACME);
    for n in 0..250 {
        world.create_named(a, &format!("r{n}"));
    }
    world.sim.take_events(a);
    // Every request is held and answered by hand, one at a time, so that the triggers
    // arrive while it is in flight.
    world.sim.hold(a);
    world.call(a, |engine| Ok(engine.sync_now()?));
    let mut answered = 0;
    loop {
        let mut held = world.sim.take_held(a);
        assert!(held.len() <= 1, "two requests in flight: {held:?}");
        let Some(request) = held.pop() else {
            break;
        };
        if answered < 3 {
            world.call(a, |engine| Ok(engine.handle_app_open()?));
            world.sim.offline(a, None).unwrap();
            world.sim.online(a).unwrap();
            world.call(a, |engine| Ok(engine.sync_now()?));
            assert!(
                world.sim.take_held(a).is_empty(),
                "a trigger put a request in flight"
            );
        }
        let response = world.serve(&request);
        assert_eq!(world.deliver(a, &request, Ok(response)), Called::Done(()));
        answered += 1;
    }
    world.sim.release(a);
    let events = world.sim.take_events(a);
    let starts = count(&events, |e| matches!(e, SyncEvent::SyncStarted { .. }));
    let completions = count(&events, |e| *e == SyncEvent::SyncCompleted);
    assert_eq!(starts, 2, "one sync, then one follow-up: {events:?}");
    assert_eq!(completions, 2);
    assert_eq!(world.server_records(ACME, SPACE_ENTITY).len(), 250);
    assert_eq!(
        world.sim.device(a).counters.max_in_flight,
        1,
        "the kernel never saw two of the device's requests in flight"
    );
    world.assert_converged();
    world.take_requests(a);
    world.run(a);
    assert!(world.take_requests(a).is_empty(), "nothing left to do");
}

#[test]
fn a_device_that_missed_rows_notices_by_version_hash_and_repairs() {
    // Proves: when a device's copy diverges from the server (a server bug let the cursor
    // pass rows it never sent), the versionHash check notices, the engine reports
    // `RepairStarted`, and the repair pull ends with the device equal to the server.
    let mut world = World::with_registry(space_registry(10));
    let a = world.device(ACME);
    let items: Vec<serde_json::Value> = (0..25).map(|n| json!({ "n": n })).collect();
    world.create_many(a, SPACE_ENTITY, SPACE, items);
    world.sync(a);

    // The planted defect makes the server lie, so the oracle's checks that hold only for
    // honest answers (no repair ever, cursors never move back) are off while it is in.
    let b = world.add_device(ACME);
    world.sim.oracle_mut().hostile_server = true;
    world.sim.server_mut().set_defects(ServerDefects {
        drop_last_row_of_page: true,
        ..ServerDefects::default()
    });
    world.open(b);
    let events = world.run(b);
    assert!(events.contains(&SyncEvent::RepairStarted {
        entity: SPACE_ENTITY.to_owned()
    }));
    let missing = 25 - world.live_count(b, SPACE_ENTITY);
    assert!(
        missing > 0,
        "the planted defect must make the device miss rows"
    );
    assert!(
        events.contains(&SyncEvent::SyncCompleted),
        "one repair per sync, no loop"
    );

    // The server is fixed; the next sync notices the divergence again and repairs it.
    world.sim.server_mut().set_defects(ServerDefects::default());
    let events = world.sync(b);
    assert!(events.contains(&SyncEvent::RepairStarted {
        entity: SPACE_ENTITY.to_owned()
    }));
    world.assert_converged();
    // Honest again: from here on a repair would be the oracle's violation too.
    world.sim.oracle_mut().hostile_server = false;
    let events = world.sync(b);
    assert!(!events
        .iter()
        .any(|e| matches!(e, SyncEvent::RepairStarted { .. })));
}
