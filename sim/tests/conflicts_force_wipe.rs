//! Issue 4, end to end: conflicts and their resolutions, force sync both ways, wiping a
//! space, dropping a tenant — the real engine against the real reference server, driven
//! by the simulation kernel.
//!
//! Each test opens with a comment saying what it proves. Stamps are arranged with the
//! device clocks: every device's clock reads virtual time (no offset, no drift) until a
//! test moves it with `Sim::clock_jump`, so two devices with equal offsets that write in
//! the same virtual millisecond, ahead of every stamp they have seen, issue equal HLC
//! stamps.

mod support;

use serde_json::json;
use std::collections::BTreeMap;
use support::*;
use sync_engine::testing::EPOCH_MS;
use sync_engine::{
    CrashPoint, DbLocation, EntityConfig, EntityRegistry, FieldDiff, ForceDirection, OpStatus,
    Resolution, Side, SyncEvent, TenantId, WriteError,
};

/// The spec's warnings (§3.1, §3.2), copied here independently of the engine's constants.
const SPEC_FORCE_FROM_SERVER: &str = "⚠️ Force Sync from Server\n\nThis will overwrite all local changes with server data.\nAny unsynced local changes will be lost.\n\nAre you sure?";
const SPEC_FORCE_PUSH_LOCAL: &str = "⚠️ Force Push Local Changes\n\nThis will overwrite server data with your local changes.\nAny server changes will be lost.\n\nAre you sure?";

/// Two devices of acme with one synced record `{name, color, size}`.
fn two_devices_with_one_record(world: &mut World) -> (DeviceId, DeviceId, String) {
    let a = world.device(ACME);
    let b = world.device(ACME);
    let id = world.create(
        a,
        SPACE_ENTITY,
        SPACE,
        json!({ "name": "Original", "color": "blue", "size": 1 }),
    );
    world.sync(a);
    world.sync(b);
    world.assert_converged();
    (a, b, id)
}

/// Runs the world to `instant_ms`, ahead of everything both devices have seen. Their
/// clocks have equal offsets and no drift, so both read that millisecond and their next
/// writes carry equal HLC stamps.
fn same_instant(world: &mut World, a: DeviceId, b: DeviceId, instant_ms: u64) {
    let (clock_a, clock_b) = (world.sim.device(a), world.sim.device(b));
    assert_eq!(clock_a.clock_offset_ms, clock_b.clock_offset_ms);
    assert_eq!(clock_a.drift_ppm, clock_b.drift_ppm);
    world.sim.run_until(instant_ms).unwrap();
}

/// A (local) and B (server side) edit the same record at the same instant: B's write
/// reaches the server first, A's push meets it. Returns A's stored conflict.
fn equal_stamp_conflict(world: &mut World) -> (DeviceId, DeviceId, String, sync_engine::Conflict) {
    let (a, b, id) = two_devices_with_one_record(world);
    same_instant(world, a, b, EPOCH_MS + 60_000);
    world.update(a, &id, json!({ "name": "My Space", "color": "green" }));
    world.update(b, &id, json!({ "name": "Workspace", "color": "red" }));
    assert_eq!(
        world.record(a, &id).updated_at,
        world.record(b, &id).updated_at,
        "the arrangement must give equal stamps"
    );
    world.sync(b);
    let events = world.sync(a);
    let stored = count(
        &events,
        |event| matches!(event, SyncEvent::ConflictStored { client_id, .. } if *client_id == id),
    );
    assert_eq!(stored, 1, "one conflict, reported once: {events:?}");
    assert!(events.contains(&SyncEvent::SyncCompleted));
    let conflicts = world.engine(a).list_conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "exactly one stored conflict");
    let conflict = conflicts[0].clone();
    assert_eq!(conflict.client_id, id);
    assert_eq!(world.engine(a).status().unwrap().open_conflicts, 1);
    world.engine(a).check_invariants().unwrap();
    (a, b, id, conflict)
}

#[test]
fn equal_stamps_store_one_conflict_with_only_the_changed_fields() {
    // Proves: the same record edited on two devices with equal stamps becomes exactly one
    // stored conflict holding both versions and only the fields that differ; the local op
    // waits, and the server keeps the first writer's version meanwhile.
    let mut world = World::new();
    let (a, _b, id, conflict) = equal_stamp_conflict(&mut world);
    assert_eq!(
        conflict.changed_fields(),
        vec![
            FieldDiff {
                field: "color".to_owned(),
                local: Some(json!("green")),
                server: Some(json!("red")),
            },
            FieldDiff {
                field: "name".to_owned(),
                local: Some(json!("My Space")),
                server: Some(json!("Workspace")),
            },
        ]
    );
    assert_eq!(conflict.local_updated_at, conflict.server_updated_at);
    assert_eq!(conflict.server_version, 2);
    assert_eq!(conflict.server_data["size"], json!(1));
    let ops = world.engine(a).queued_ops().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].status, OpStatus::Pending);
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("Workspace")
    );

    // Syncing again neither sends the waiting op nor stores a second conflict.
    world.take_requests(a);
    world.sync(a);
    let sent = world.take_requests(a);
    assert!(!sent.is_empty(), "the sync pulled");
    assert!(sent
        .iter()
        .all(|request| !request.operation_name.starts_with("syncPush")));
    assert_eq!(world.engine(a).list_conflicts().unwrap().len(), 1);
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("Workspace")
    );

    // The dialog as the user sees it.
    let expected = "\
┌───────────────────────────────────┐
│ Conflict Resolution               │
├───────────────────────────────────┤
│ Record: Space \"My Space\"          │
│                                   │
│ Field: color                      │
│ ┌────────────┬─────────────┐      │
│ │ Local      │ Server      │      │
│ ├────────────┼─────────────┤      │
│ │ \"green\"    │ \"red\"       │      │
│ └────────────┴─────────────┘      │
│                                   │
│ Field: name                       │
│ ┌────────────┬─────────────┐      │
│ │ Local      │ Server      │      │
│ ├────────────┼─────────────┤      │
│ │ \"My Space\" │ \"Workspace\" │      │
│ └────────────┴─────────────┘      │
│                                   │
│ [Keep Local] [Use Server] [Merge] │
└───────────────────────────────────┘";
    assert_eq!(
        world.engine(a).list_conflicts().unwrap()[0].to_string(),
        expected
    );
}

/// Resolves A's conflict, syncs A then B, and checks that both devices and the server
/// hold `expected` data at one version, with no conflict or op left.
fn resolve_and_converge(resolution: Resolution, expected: serde_json::Value, version: i64) {
    let mut world = World::new();
    let (a, b, id, conflict) = equal_stamp_conflict(&mut world);
    world.resolve(a, &conflict, resolution).unwrap();
    assert!(world.engine(a).list_conflicts().unwrap().is_empty());
    world.sync(a);
    world.sync(b);
    let server = world.server_record(ACME, &id);
    assert_eq!(server.data, object(expected));
    assert_eq!(server.version, version);
    world.assert_converged();
    for device in [a, b] {
        let engine = world.engine(device);
        assert!(engine.queued_ops().unwrap().is_empty());
        assert!(engine.list_conflicts().unwrap().is_empty());
        engine.check_invariants().unwrap();
    }
    world.sim.server().check_invariants();
}

#[test]
fn keep_local_converges_on_the_local_version() {
    // Proves: "Keep Local" pushes the local data over the server's version; both devices
    // and the server end with it, at one version.
    resolve_and_converge(
        Resolution::KeepLocal,
        json!({ "name": "My Space", "color": "green", "size": 1 }),
        3,
    );
}

#[test]
fn use_server_converges_on_the_server_version() {
    // Proves: "Use Server" drops the local edit; everyone keeps the server's version 2.
    resolve_and_converge(
        Resolution::UseServer,
        json!({ "name": "Workspace", "color": "red", "size": 1 }),
        2,
    );
}

#[test]
fn merge_by_field_converges_on_the_merged_version() {
    // Proves: "Merge" with a per-field choice takes the chosen side of each changed field
    // (unnamed fields from the server) and converges everywhere.
    resolve_and_converge(
        Resolution::MergeFields(BTreeMap::from([("name".to_owned(), Side::Local)])),
        json!({ "name": "My Space", "color": "red", "size": 1 }),
        3,
    );
}

#[test]
fn merge_by_value_converges_on_the_given_values() {
    // Proves: "Merge" with typed-in values converges everywhere on those values.
    resolve_and_converge(
        Resolution::MergeValues(object(json!({ "color": "purple" }))),
        json!({ "name": "Workspace", "color": "purple", "size": 1 }),
        3,
    );
}

#[test]
fn a_merge_naming_an_unchanged_field_is_refused() {
    // Proves: a merge may only choose among the conflict's changed fields; a refused
    // resolution leaves the conflict open.
    let mut world = World::new();
    let (a, _b, _id, conflict) = equal_stamp_conflict(&mut world);
    let result = world.resolve(
        a,
        &conflict,
        Resolution::MergeFields(BTreeMap::from([("size".to_owned(), Side::Local)])),
    );
    assert!(matches!(result, Err(WriteError::MergeFieldNotInConflict(field)) if field == "size"));
    assert_eq!(world.engine(a).list_conflicts().unwrap(), vec![conflict]);
}

#[test]
fn an_open_conflict_holds_its_op_while_other_records_keep_syncing() {
    // Proves: while a record's conflict is open its op stays queued and unsent, and the
    // device's other records (new and edited) sync normally, in the same syncs.
    let mut world = World::new();
    let (a, b, id, conflict) = equal_stamp_conflict(&mut world);
    let waiting_op = world.engine(a).queued_ops().unwrap()[0].op_id.clone();
    world.wait(1_000);
    let other = world.create_named(a, "other");
    world.take_requests(a);
    let events = world.sync(a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    let pushed: Vec<String> = world
        .take_requests(a)
        .iter()
        .filter(|request| request.operation_name.starts_with("syncPush"))
        .flat_map(|request| {
            request.variables.to_json()["payload"]
                .as_array()
                .unwrap()
                .clone()
        })
        .map(|item| item["opId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pushed.len(), 1, "only the other record's insert");
    assert!(!pushed.contains(&waiting_op));
    assert_eq!(
        world.server_record(ACME, &other).data["name"],
        json!("other")
    );

    world.update(a, &other, json!({ "name": "other, edited" }));
    world.sync(a);
    world.sync(b);
    assert_eq!(world.record(b, &other).data["name"], json!("other, edited"));
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("Workspace")
    );
    assert_eq!(world.engine(a).list_conflicts().unwrap(), vec![conflict]);
    let ops = world.engine(a).queued_ops().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].op_id, waiting_op);
    world.engine(a).check_invariants().unwrap();
}

#[test]
fn an_edit_made_while_a_conflict_is_open_is_kept_by_keep_local() {
    // Proves: a local edit made after the conflict was stored is part of the local side:
    // the dialog shows it, and "Keep Local" pushes it instead of the older local data.
    let mut world = World::new();
    let (a, b, id, conflict) = equal_stamp_conflict(&mut world);
    world.wait(1_000);
    world.update(a, &id, json!({ "size": 2 }));
    let open = world.engine(a).list_conflicts().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        open[0].local_data["size"],
        json!(2),
        "the dialog shows the newer edit"
    );
    assert!(open[0]
        .changed_fields()
        .iter()
        .any(|diff| diff.field == "size"));
    world.resolve(a, &conflict, Resolution::KeepLocal).unwrap();
    world.sync(a);
    world.sync(b);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "My Space", "color": "green", "size": 2 }))
    );
    world.assert_converged();
}

#[test]
fn a_delete_made_while_a_conflict_is_open_wins_and_settles_it() {
    // Proves: deleting a record whose conflict is open settles the conflict the way every
    // update-versus-delete race is settled: the delete wins, reaches the server, and the
    // record ends deleted everywhere.
    let mut world = World::new();
    let (a, b, id, _conflict) = equal_stamp_conflict(&mut world);
    world.delete(a, &id);
    syncs_to_deleted_everywhere(&mut world, a, b, &id);
}

/// A syncs, then B: the record ends deleted on the server and both devices, A keeps no
/// conflict and no queued op, and everything converges.
fn syncs_to_deleted_everywhere(world: &mut World, a: DeviceId, b: DeviceId, id: &str) {
    world.sync(a);
    world.sync(b);
    assert!(world.server_record(ACME, id).is_deleted);
    assert!(world.record(a, id).is_deleted);
    assert!(world.record(b, id).is_deleted);
    assert!(world.engine(a).list_conflicts().unwrap().is_empty());
    assert!(world.engine(a).queued_ops().unwrap().is_empty());
    world.engine(a).check_invariants().unwrap();
    world.assert_converged();
}

fn auto_merge_registry() -> EntityRegistry {
    let mut registry = EntityRegistry::new();
    let mut space = EntityConfig::new(SPACE_ENTITY).unwrap();
    space.auto_merge_fields = true;
    registry.register(space).unwrap();
    registry
}

#[test]
fn auto_merge_combines_edits_of_different_fields_without_a_stored_conflict() {
    // Proves: with `auto_merge_fields` on, equal-stamp edits of different fields merge
    // silently (no conflict is stored or reported) and converge everywhere in one sync
    // of each device; edits of the same field still go to the user.
    let mut world = World::with_registry(auto_merge_registry());
    let (a, b, id) = two_devices_with_one_record(&mut world);
    same_instant(&mut world, a, b, EPOCH_MS + 60_000);
    world.update(a, &id, json!({ "name": "Renamed by A" }));
    world.update(b, &id, json!({ "color": "red" }));
    assert_eq!(
        world.record(a, &id).updated_at,
        world.record(b, &id).updated_at
    );
    world.sync(b);
    let events = world.sync(a);
    assert_eq!(
        count(&events, |e| matches!(e, SyncEvent::ConflictStored { .. })),
        0,
        "{events:?}"
    );
    assert!(events.contains(&SyncEvent::ConflictAutoMerged {
        client_id: id.clone()
    }));
    assert!(world.engine(a).list_conflicts().unwrap().is_empty());
    assert!(
        world.engine(a).queued_ops().unwrap().is_empty(),
        "the merge was pushed in the same sync"
    );
    world.sync(b);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "Renamed by A", "color": "red", "size": 1 }))
    );
    world.assert_converged();

    // The same field on both sides is still the user's call.
    same_instant(&mut world, a, b, EPOCH_MS + 120_000);
    world.update(a, &id, json!({ "name": "A again" }));
    world.update(b, &id, json!({ "name": "B again" }));
    assert_eq!(
        world.record(a, &id).updated_at,
        world.record(b, &id).updated_at
    );
    world.sync(b);
    world.sync(a);
    let conflicts = world.engine(a).list_conflicts().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts[0]
            .changed_fields()
            .into_iter()
            .map(|diff| diff.field)
            .collect::<Vec<_>>(),
        vec!["name".to_owned()]
    );
}

#[test]
fn a_delete_that_reaches_the_server_first_wins_over_a_newer_update() {
    // Proves: update versus delete, delete first: the later update (even with a newer
    // stamp) is refused, its device takes the tombstone and reports `OpSuperseded`, and
    // the record stays deleted everywhere.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    world.sim.clock_jump(a, 1_000);
    world.delete(a, &id);
    world.sim.clock_jump(b, 5_000);
    world.update(b, &id, json!({ "name": "edited after" }));
    let update_op = world.engine(b).queued_ops().unwrap()[0].op_id.clone();
    assert!(world.record(b, &id).updated_at > world.record(a, &id).updated_at);

    world.sync(a);
    let events = world.sync(b);
    assert!(events.contains(&SyncEvent::OpSuperseded {
        op_id: update_op,
        client_id: id.clone()
    }));
    assert!(world.server_record(ACME, &id).is_deleted);
    assert!(world.record(b, &id).is_deleted);
    assert!(world.engine(b).queued_ops().unwrap().is_empty());
    assert!(matches!(
        world.write(b, |engine| engine.update(&id, json!({ "name": "again" }))),
        Err(WriteError::RecordDeleted(_))
    ));
    world.assert_converged();
}

#[test]
fn a_delete_that_reaches_the_server_second_still_wins_over_a_newer_update() {
    // Proves: update versus delete, update first: the delete (with an older stamp and a
    // stale base version) still applies, and the updating device pulls the tombstone.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    world.sim.clock_jump(b, 5_000);
    world.update(b, &id, json!({ "name": "edited first" }));
    world.sim.clock_jump(a, 1_000);
    world.delete(a, &id);
    assert!(world.record(b, &id).updated_at > world.record(a, &id).updated_at);

    world.sync(b);
    assert_eq!(world.server_record(ACME, &id).version, 2);
    world.sync(a);
    let server = world.server_record(ACME, &id);
    assert!(server.is_deleted);
    assert_eq!(server.version, 3);
    world.sync(b);
    assert!(world.record(b, &id).is_deleted);
    assert!(world.record(a, &id).is_deleted);
    world.assert_converged();
    world.sim.server().check_invariants();
}

#[test]
fn not_even_a_force_push_resurrects_a_tombstone() {
    // Proves: tombstones are final: a device force-pushing an update of a record another
    // device deleted is refused and takes the tombstone.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    world.delete(a, &id);
    world.sync(a);
    world.sim.clock_jump(b, 5_000);
    world.update(b, &id, json!({ "name": "force me" }));
    let plan = world.engine(b).plan_force_push_local(SPACE_ENTITY).unwrap();
    assert_eq!(plan.local_changes(), 1);
    world.confirm_force(b, plan).unwrap();
    world.run(b);
    assert!(world.server_record(ACME, &id).is_deleted);
    assert!(world.record(b, &id).is_deleted);
    assert!(world.engine(b).queued_ops().unwrap().is_empty());
}

/// A and B share three records; B then changes the server (an update and a new record);
/// A has three local changes the server never saw. Returns A's record ids.
fn diverged_devices(world: &mut World) -> (DeviceId, DeviceId, Vec<String>) {
    let a = world.device(ACME);
    let b = world.device(ACME);
    let ids: Vec<String> = (0..3)
        .map(|n| world.create_named(a, &format!("r{n}")))
        .collect();
    world.sync(a);
    world.sync(b);
    world.sim.clock_jump(b, 1_000);
    world.update(b, &ids[0], json!({ "name": "r0 by B" }));
    world.create_named(b, "new on B");
    world.sync(b);
    world.sim.clock_jump(a, 2_000);
    world.update(a, &ids[1], json!({ "name": "r1 by A" }));
    world.delete(a, &ids[2]);
    world.create_named(a, "only on A");
    (a, b, ids)
}

#[test]
fn force_from_server_needs_a_confirmed_fresh_plan_and_replaces_local_state_exactly() {
    // Proves: force-from-server first returns a plan with the spec's exact warning and the
    // number of local changes it will discard; a plan made stale by a later write is
    // refused; a confirmed fresh plan makes the device equal to the server exactly, with
    // the entity's queue and conflicts empty, and normal sync carries on afterwards.
    let mut world = World::new();
    let (a, b, ids) = diverged_devices(&mut world);
    let plan = world
        .engine(a)
        .plan_force_from_server(SPACE_ENTITY)
        .unwrap();
    assert_eq!(plan.direction(), ForceDirection::FromServer);
    assert_eq!(plan.warning_text(), SPEC_FORCE_FROM_SERVER);
    assert_eq!(plan.confirm_label(), "Force Sync");
    assert_eq!(plan.local_changes(), 3);

    world.create_named(a, "written after planning");
    let before = snapshot(world.engine(a));
    world.take_requests(a);
    let refused = world.confirm_force(a, plan);
    assert!(
        matches!(refused, Err(WriteError::StalePlan(_))),
        "{refused:?}"
    );
    assert!(
        world.take_requests(a).is_empty(),
        "a refused plan sends nothing"
    );
    assert_eq!(snapshot(world.engine(a)), before);

    let plan = world
        .engine(a)
        .plan_force_from_server(SPACE_ENTITY)
        .unwrap();
    assert_eq!(plan.local_changes(), 4);
    world.confirm_force(a, plan).unwrap();
    let events = world.run(a);
    let sent = world.take_requests(a);
    assert!(!sent.is_empty(), "the force pulled");
    assert!(sent
        .iter()
        .all(|request| request.operation_name == "syncPullSpace"));
    assert!(events.contains(&SyncEvent::ForceCompleted {
        entity: SPACE_ENTITY.to_owned()
    }));
    world.assert_converged();
    assert_eq!(world.record(a, &ids[0]).data["name"], json!("r0 by B"));
    assert_eq!(world.record(a, &ids[1]).data["name"], json!("r1"));
    assert!(
        !world.record(a, &ids[2]).is_deleted,
        "the unsynced delete was discarded"
    );
    let engine = world.engine(a);
    assert!(engine.queued_ops().unwrap().is_empty());
    assert!(engine.list_conflicts().unwrap().is_empty());
    assert!(engine.cursor(SPACE_ENTITY).unwrap().is_some());
    engine.check_invariants().unwrap();

    let events = world.sync(a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    world.update(a, &ids[1], json!({ "name": "after force" }));
    world.sync(a);
    world.sync(b);
    world.assert_converged();
}

#[test]
fn force_from_server_settles_open_conflicts() {
    // Proves: force-from-server also discards the entity's open conflicts and their ops,
    // counted in the plan, leaving the device equal to the server.
    let mut world = World::new();
    let (a, _b, _id, _conflict) = equal_stamp_conflict(&mut world);
    let plan = world
        .engine(a)
        .plan_force_from_server(SPACE_ENTITY)
        .unwrap();
    assert_eq!(plan.open_conflicts(), 1);
    assert_eq!(plan.local_changes(), 1);
    world.confirm_force(a, plan).unwrap();
    world.run(a);
    assert!(world.engine(a).list_conflicts().unwrap().is_empty());
    assert!(world.engine(a).queued_ops().unwrap().is_empty());
    world.assert_converged();
}

#[test]
fn force_push_local_settles_open_conflicts_in_the_local_favour() {
    // Proves: force-push counts the entity's open conflicts in its plan, settles them by
    // pushing the local side over the server's, and everyone converges on it.
    let mut world = World::new();
    let (a, b, id, _conflict) = equal_stamp_conflict(&mut world);
    let plan = world.engine(a).plan_force_push_local(SPACE_ENTITY).unwrap();
    assert_eq!(plan.open_conflicts(), 1);
    world.confirm_force(a, plan).unwrap();
    let events = world.run(a);
    assert!(events.contains(&SyncEvent::SyncCompleted), "{events:?}");
    world.sync(b);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "My Space", "color": "green", "size": 1 }))
    );
    assert!(world.engine(a).list_conflicts().unwrap().is_empty());
    assert!(world.engine(a).queued_ops().unwrap().is_empty());
    world.assert_converged();
}

#[test]
fn force_push_local_overrides_a_newer_server_version_and_sync_carries_on() {
    // Proves: force-push gives the spec's warning, then the server and a second device
    // take the local values although the server's stamp was newer; normal sync works
    // afterwards in both directions.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    world.sim.clock_jump(b, 5_000);
    world.update(b, &id, json!({ "name": "newer on server" }));
    world.sync(b);
    world.sim.clock_jump(a, 1_000);
    world.update(a, &id, json!({ "name": "local wins" }));
    assert!(world.record(a, &id).updated_at < world.server_record(ACME, &id).updated_at);

    let plan = world.engine(a).plan_force_push_local(SPACE_ENTITY).unwrap();
    assert_eq!(plan.direction(), ForceDirection::PushLocal);
    assert_eq!(plan.warning_text(), SPEC_FORCE_PUSH_LOCAL);
    assert_eq!(plan.confirm_label(), "Force Push");
    assert_eq!(plan.local_changes(), 1);
    world.confirm_force(a, plan).unwrap();
    let events = world.run(a);
    assert!(events.contains(&SyncEvent::SyncCompleted), "{events:?}");
    let server = world.server_record(ACME, &id);
    assert_eq!(server.data["name"], json!("local wins"));
    assert_eq!(server.version, 3);
    world.sync(b);
    assert_eq!(world.record(b, &id).data["name"], json!("local wins"));
    world.assert_converged();

    // Normal sync continues: an edit on each side, in turn.
    world.sim.clock_jump(a, 10_000);
    world.update(a, &id, json!({ "color": "after force" }));
    world.sync(a);
    world.sync(b);
    world.sim.clock_jump(b, 10_000);
    world.update(b, &id, json!({ "size": 99 }));
    world.sync(b);
    world.sync(a);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "local wins", "color": "after force", "size": 99 }))
    );
    world.assert_converged();
    assert!(world
        .engine(a)
        .queued_ops()
        .unwrap()
        .iter()
        .all(|op| !op.force));
}

#[test]
fn wiping_a_space_removes_only_that_space_and_keeps_the_token() {
    // Proves: wiping space S removes S's records, queued ops and conflicts, keeps other
    // spaces (records and queued ops) and the auth token; the next sync re-fetches what
    // the server still has of S, while S's never-pushed changes are gone for good.
    let mut world = World::new();
    let a = world.device(ACME);
    let synced_s: Vec<String> = (0..2)
        .map(|n| world.create_named(a, &format!("s{n}")))
        .collect();
    let synced_t: Vec<String> = (0..2)
        .map(|n| {
            world.create(
                a,
                SPACE_ENTITY,
                OTHER_SPACE,
                json!({ "name": format!("t{n}") }),
            )
        })
        .collect();
    world.sync(a);
    let pending_s = world.create_named(a, "s pending");
    world.update(a, &synced_s[0], json!({ "name": "s0 edited, unsynced" }));
    let pending_t = world.create(a, SPACE_ENTITY, OTHER_SPACE, json!({ "name": "t pending" }));
    let t_before: Vec<_> = world
        .engine(a)
        .list(SPACE_ENTITY, Some(OTHER_SPACE), Default::default())
        .unwrap();
    let t_ops_before: Vec<_> = world
        .engine(a)
        .queued_ops()
        .unwrap()
        .into_iter()
        .filter(|op| op.space_id == OTHER_SPACE)
        .collect();
    assert_eq!(t_ops_before.len(), 1);

    world.wipe_space(a, SPACE).unwrap();
    let engine = world.engine(a);
    let everything = sync_engine::ListOptions {
        include_deleted: true,
    };
    assert!(engine
        .list(SPACE_ENTITY, Some(SPACE), everything)
        .unwrap()
        .is_empty());
    assert!(engine.get(&pending_s).unwrap().is_none());
    assert!(engine
        .queued_ops()
        .unwrap()
        .iter()
        .all(|op| op.space_id != SPACE));
    assert_eq!(
        engine
            .list(SPACE_ENTITY, Some(OTHER_SPACE), Default::default())
            .unwrap(),
        t_before
    );
    let t_ops_after: Vec<_> = engine.queued_ops().unwrap();
    assert_eq!(t_ops_after, t_ops_before);
    assert_eq!(engine.auth_token().unwrap().as_deref(), Some(ACME_TOKEN));
    engine.check_invariants().unwrap();

    let events = world.sync(a);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, SyncEvent::RepairStarted { .. })),
        "the wipe reset the cursors, so no checksum repair is needed: {events:?}"
    );
    let s_now: Vec<String> = world
        .engine(a)
        .list(SPACE_ENTITY, Some(SPACE), Default::default())
        .unwrap()
        .into_iter()
        .map(|record| record.client_id)
        .collect();
    let mut expected = synced_s.clone();
    expected.sort();
    assert_eq!(s_now, expected);
    assert_eq!(world.record(a, &synced_s[0]).data["name"], json!("s0"));
    assert!(world.engine(a).get(&pending_s).unwrap().is_none());
    assert_eq!(
        world.server_record(ACME, &pending_t).data["name"],
        json!("t pending")
    );
    assert_eq!(
        world.server_record(ACME, &synced_t[0]).data["name"],
        json!("t0")
    );
    world.assert_converged();
}

#[test]
fn a_kill_inside_force_from_server_leaves_the_old_state_entirely() {
    // Proves: an app kill inside the force-from-server replacement rolls it back whole:
    // after reopen the database is consistent and exactly as before; a second confirmed
    // force then succeeds.
    let mut world = World::new();
    let (a, _b, _ids) = diverged_devices(&mut world);
    let before = snapshot(world.engine(a));
    world.sim.crash(a, Some(CrashPoint::MidForce));
    let plan = world
        .engine(a)
        .plan_force_from_server(SPACE_ENTITY)
        .unwrap();
    world.confirm_force(a, plan).unwrap();
    // The replacement runs when the last page arrives; the kill comes there.
    assert_eq!(world.run_until_killed(a), CrashPoint::MidForce);
    // Reopened offline: online, opening the app would start a sync that marks ops
    // `sending` before the state could be compared.
    world.reopen_offline(a);
    world.engine(a).check_invariants().unwrap();
    assert_eq!(snapshot(world.engine(a)), before);

    // A force needs the network like any sync: confirmed offline, it fails at once and
    // discards nothing.
    let plan = world
        .engine(a)
        .plan_force_from_server(SPACE_ENTITY)
        .unwrap();
    world.confirm_force(a, plan).unwrap();
    let events = world.run(a);
    assert!(
        events.iter().any(|event| matches!(
            event,
            SyncEvent::ForceFailed { entity, .. } if entity == SPACE_ENTITY
        )),
        "{events:?}"
    );
    assert_eq!(snapshot(world.engine(a)), before);

    // Back online behind a partition, the sync that starts cannot carry the local
    // changes out; once the partition heals, the second force discards them.
    world.sim.partition(a, None);
    world.sim.online(a).unwrap();
    world.run(a);
    world.sim.heal(a);
    let plan = world
        .engine(a)
        .plan_force_from_server(SPACE_ENTITY)
        .unwrap();
    world.confirm_force(a, plan).unwrap();
    let events = world.run(a);
    assert!(events.contains(&SyncEvent::ForceCompleted {
        entity: SPACE_ENTITY.to_owned()
    }));
    world.run(a);
    world.assert_converged();
    assert!(world.engine(a).queued_ops().unwrap().is_empty());
}

#[test]
fn a_kill_inside_force_push_leaves_the_old_state_entirely() {
    // Proves: an app kill while force-push marks the local changes rolls the marking back:
    // after reopen nothing is marked `force`, the database is consistent, and nothing
    // reached the server.
    let mut world = World::new();
    let (a, _b, _ids) = diverged_devices(&mut world);
    let before = snapshot(world.engine(a));
    let server_before = world.sim.server().clone();
    world.sim.crash(a, Some(CrashPoint::MidForce));
    let plan = world.engine(a).plan_force_push_local(SPACE_ENTITY).unwrap();
    let outcome = world.confirm_force(a, plan);
    assert!(
        matches!(outcome, Err(WriteError::Killed(CrashPoint::MidForce))),
        "{outcome:?}"
    );
    world.reopen_offline(a);
    world.engine(a).check_invariants().unwrap();
    assert_eq!(snapshot(world.engine(a)), before);
    assert!(world
        .engine(a)
        .queued_ops()
        .unwrap()
        .iter()
        .all(|op| !op.force));
    world.run(a);
    assert!(*world.sim.server() == server_before);
}

#[test]
fn a_kill_inside_a_space_wipe_leaves_the_old_state_entirely() {
    // Proves: an app kill inside a space wipe rolls it back whole: after reopen the
    // database is consistent and every record, op, cursor and token is as before.
    let mut world = World::new();
    let (a, _b, _ids) = diverged_devices(&mut world);
    world.create(a, SPACE_ENTITY, OTHER_SPACE, json!({ "name": "elsewhere" }));
    let before = snapshot(world.engine(a));
    world.sim.crash(a, Some(CrashPoint::MidWipe));
    let outcome = world.wipe_space(a, SPACE);
    assert!(
        matches!(outcome, Err(WriteError::Killed(CrashPoint::MidWipe))),
        "{outcome:?}"
    );
    world.reopen_offline(a);
    world.engine(a).check_invariants().unwrap();
    assert_eq!(snapshot(world.engine(a)), before);

    world.wipe_space(a, SPACE).unwrap();
    assert!(world
        .engine(a)
        .all_records()
        .unwrap()
        .iter()
        .all(|record| record.space_id == OTHER_SPACE));
}

#[test]
fn dropping_the_tenant_during_a_sync_removes_its_files_and_the_next_login_starts_fresh() {
    // Proves: logout (drop tenant database) while a push is in flight removes every file
    // of the tenant's database; a late answer has nowhere to land; logging in again starts
    // empty, with no cursor, and the first sync pulls everything fresh.
    let mut world = World::new();
    let a = world.device(ACME);
    let synced: Vec<String> = (0..3)
        .map(|n| world.create_named(a, &format!("r{n}")))
        .collect();
    world.sync(a);
    let in_flight = world.create_named(a, "in flight");
    world.sim.hold(a);
    world.call(a, |engine| Ok(engine.sync_now()?));
    let request = world.take_one_held(a);
    assert!(world.engine(a).status().unwrap().syncing);

    let location = DbLocation::new(&world.sim.device(a).dir);
    let tenant = TenantId::parse(ACME).unwrap();
    assert!(location.db_path(&tenant).exists());
    world.sim.logout(a).unwrap();
    for path in location.db_files(&tenant) {
        assert!(!path.exists(), "{} survived the drop", path.display());
    }
    // The request was already on the wire; the server applies it. Its answer was
    // addressed to the process that logged out.
    world.sim.release(a);
    let _late = world.serve(&request);

    world.take_requests(a);
    world.sim.login(a, ACME).unwrap();
    let engine = world.engine(a);
    assert!(engine.all_records().unwrap().is_empty());
    assert!(engine.queued_ops().unwrap().is_empty());
    for config in engine.registry().entities() {
        assert_eq!(engine.cursor(config.name()).unwrap(), None);
    }
    assert_eq!(engine.status().unwrap().last_successful_sync_ms, None);
    world.sync(a);
    let first_pull = world
        .take_requests(a)
        .into_iter()
        .find(|request| request.operation_name == "syncPullSpace")
        .expect("a pull");
    assert_eq!(
        first_pull.variables.to_json()["lastSyncAt"],
        serde_json::Value::Null
    );
    assert_eq!(world.live_count(a, SPACE_ENTITY), 4);
    for id in synced.iter().chain([&in_flight]) {
        assert!(world.engine(a).get(id).unwrap().is_some());
    }
    world.assert_converged();
}

#[test]
fn a_delete_queued_behind_a_conflicting_edit_wins_and_no_conflict_is_left() {
    // Proves: when a device edits a record at the same instant as another device, then
    // deletes it, and the delete goes out in a later push batch than the edit, the edit's
    // conflict does not outlive the delete: deletes win, as a delete made while a
    // conflict is open does. Before, the conflict stayed open with the delete queued
    // behind it, and any resolution dropped the delete and pushed the record alive while
    // the device still showed it deleted.
    let mut world = World::new();
    let (a, b, id) = two_devices_with_one_record(&mut world);
    same_instant(&mut world, a, b, EPOCH_MS + 60_000);
    world.update(a, &id, json!({ "name": "My Space", "color": "green" }));
    world.update(b, &id, json!({ "name": "Workspace", "color": "red" }));
    // A full batch of other writes between the edit and the delete.
    let filler = vec![json!({ "name": "filler" }); sync_engine::registry::PUSH_BATCH_MAX_DEFAULT];
    world.create_many(a, SPACE_ENTITY, SPACE, filler);
    world.delete(a, &id);
    world.sync(b);
    world.sync(a);
    assert!(
        world.engine(a).list_conflicts().unwrap().is_empty(),
        "a conflict stayed open over a record the device had deleted"
    );
    syncs_to_deleted_everywhere(&mut world, a, b, &id);
}
