//! Issue 4, end to end: conflicts and their resolutions, force sync both ways, wiping a
//! space, dropping a tenant — the real engine against the real reference server.
//!
//! Each test opens with a comment saying what it proves. Stamps are arranged with each
//! device's `ManualClock`: two devices whose clocks read the same millisecond, both
//! ahead of every stamp they have seen, issue equal HLC stamps.

mod support;

use serde_json::json;
use std::collections::BTreeMap;
use support::*;
use sync_engine::testing::EPOCH_MS;
use sync_engine::{
    CrashPoint, EntityConfig, EntityRegistry, FieldDiff, ForceDirection, OpStatus, Resolution,
    Side, SyncError, SyncEvent, WriteError,
};

/// The spec's warnings (§3.1, §3.2), copied here independently of the engine's constants.
const SPEC_FORCE_FROM_SERVER: &str = "⚠️ Force Sync from Server\n\nThis will overwrite all local changes with server data.\nAny unsynced local changes will be lost.\n\nAre you sure?";
const SPEC_FORCE_PUSH_LOCAL: &str = "⚠️ Force Push Local Changes\n\nThis will overwrite server data with your local changes.\nAny server changes will be lost.\n\nAre you sure?";

/// Two devices of acme with one synced record `{name, color, size}`.
fn two_devices_with_one_record(
    world: &mut World,
    registry: EntityRegistry,
) -> (Device, Device, String) {
    let mut a = world.device_with_registry(ACME, registry.clone());
    let mut b = world.device_with_registry(ACME, registry);
    let id = a
        .create(
            SPACE_ENTITY,
            SPACE,
            json!({ "name": "Original", "color": "blue", "size": 1 }),
        )
        .unwrap();
    world.sync(&mut a);
    world.sync(&mut b);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    (a, b, id)
}

/// Sets both devices' clocks to one millisecond ahead of everything they have seen, so
/// their next writes carry equal HLC stamps.
fn same_instant(a: &Device, b: &Device) {
    let instant_ms = EPOCH_MS + 60_000;
    a.clock.set_ms(instant_ms);
    b.clock.set_ms(instant_ms);
}

/// A (local) and B (server side) edit the same record at the same instant: B's write
/// reaches the server first, A's push meets it. Returns A's stored conflict.
fn equal_stamp_conflict(world: &mut World) -> (Device, Device, String, sync_engine::Conflict) {
    let (mut a, mut b, id) =
        two_devices_with_one_record(world, sync_engine::testing::example_registry());
    same_instant(&a, &b);
    a.update(&id, json!({ "name": "My Space", "color": "green" }))
        .unwrap();
    b.update(&id, json!({ "name": "Workspace", "color": "red" }))
        .unwrap();
    assert_eq!(
        a.record(&id).updated_at,
        b.record(&id).updated_at,
        "the arrangement must give equal stamps"
    );
    world.sync(&mut b);
    let events = world.sync(&mut a);
    let stored = count(
        &events,
        |event| matches!(event, SyncEvent::ConflictStored { client_id, .. } if *client_id == id),
    );
    assert_eq!(stored, 1, "one conflict, reported once: {events:?}");
    assert!(events.contains(&SyncEvent::SyncCompleted));
    let conflicts = a.list_conflicts().unwrap();
    assert_eq!(conflicts.len(), 1, "exactly one stored conflict");
    let conflict = conflicts[0].clone();
    assert_eq!(conflict.client_id, id);
    assert_eq!(a.status().unwrap().open_conflicts, 1);
    a.check_invariants().unwrap();
    (a, b, id, conflict)
}

#[test]
fn equal_stamps_store_one_conflict_with_only_the_changed_fields() {
    // Proves: the same record edited on two devices with equal stamps becomes exactly one
    // stored conflict holding both versions and only the fields that differ; the local op
    // waits, and the server keeps the first writer's version meanwhile.
    let mut world = World::new();
    let (mut a, _b, id, conflict) = equal_stamp_conflict(&mut world);
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
    let ops = a.queued_ops().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].status, OpStatus::Pending);
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("Workspace")
    );

    // Syncing again neither sends the waiting op nor stores a second conflict.
    a.sync_now().unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    a.drive_blocking(&mut transport).unwrap();
    assert!(transport
        .sent
        .iter()
        .all(|request| !request.operation_name.starts_with("syncPush")));
    assert_eq!(a.list_conflicts().unwrap().len(), 1);
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
    assert_eq!(a.list_conflicts().unwrap()[0].to_string(), expected);
}

/// Resolves A's conflict, syncs A then B, and checks that both devices and the server
/// hold `expected` data at one version, with no conflict or op left.
fn resolve_and_converge(resolution: Resolution, expected: serde_json::Value, version: i64) {
    let mut world = World::new();
    let (mut a, mut b, id, conflict) = equal_stamp_conflict(&mut world);
    a.resolve_conflict(conflict.id, resolution).unwrap();
    assert!(a.list_conflicts().unwrap().is_empty());
    world.sync(&mut a);
    world.sync(&mut b);
    let server = world.server_record(ACME, &id);
    assert_eq!(server.data, object(expected));
    assert_eq!(server.version, version);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    for device in [&a, &b] {
        assert!(device.queued_ops().unwrap().is_empty());
        assert!(device.list_conflicts().unwrap().is_empty());
        device.check_invariants().unwrap();
    }
    world.server.check_invariants();
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
    let (mut a, _b, _id, conflict) = equal_stamp_conflict(&mut world);
    let result = a.resolve_conflict(
        conflict.id,
        Resolution::MergeFields(BTreeMap::from([("size".to_owned(), Side::Local)])),
    );
    assert!(matches!(result, Err(WriteError::MergeFieldNotInConflict(field)) if field == "size"));
    assert_eq!(a.list_conflicts().unwrap(), vec![conflict]);
}

#[test]
fn an_open_conflict_holds_its_op_while_other_records_keep_syncing() {
    // Proves: while a record's conflict is open its op stays queued and unsent, and the
    // device's other records (new and edited) sync normally, in the same syncs.
    let mut world = World::new();
    let (mut a, mut b, id, conflict) = equal_stamp_conflict(&mut world);
    let waiting_op = a.queued_ops().unwrap()[0].op_id.clone();
    a.clock.advance_ms(1_000);
    let other = a.create_named("other");
    a.sync_now().unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    let events = a.drive_blocking(&mut transport).unwrap();
    assert!(events.contains(&SyncEvent::SyncCompleted));
    let pushed: Vec<String> = transport
        .sent
        .iter()
        .filter(|request| request.operation_name.starts_with("syncPush"))
        .flat_map(|request| request.variables["payload"].as_array().unwrap().clone())
        .map(|item| item["opId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pushed.len(), 1, "only the other record's insert");
    assert!(!pushed.contains(&waiting_op));
    assert_eq!(
        world.server_record(ACME, &other).data["name"],
        json!("other")
    );

    a.update(&other, json!({ "name": "other, edited" }))
        .unwrap();
    world.sync(&mut a);
    world.sync(&mut b);
    assert_eq!(b.record(&other).data["name"], json!("other, edited"));
    assert_eq!(
        world.server_record(ACME, &id).data["name"],
        json!("Workspace")
    );
    assert_eq!(a.list_conflicts().unwrap(), vec![conflict]);
    assert_eq!(a.queued_ops().unwrap().len(), 1);
    assert_eq!(a.queued_ops().unwrap()[0].op_id, waiting_op);
    a.check_invariants().unwrap();
}

#[test]
fn an_edit_made_while_a_conflict_is_open_is_kept_by_keep_local() {
    // Proves: a local edit made after the conflict was stored is part of the local side:
    // the dialog shows it, and "Keep Local" pushes it instead of the older local data.
    let mut world = World::new();
    let (mut a, mut b, id, conflict) = equal_stamp_conflict(&mut world);
    a.clock.advance_ms(1_000);
    a.update(&id, json!({ "size": 2 })).unwrap();
    let open = a.list_conflicts().unwrap();
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
    a.resolve_conflict(conflict.id, Resolution::KeepLocal)
        .unwrap();
    world.sync(&mut a);
    world.sync(&mut b);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "My Space", "color": "green", "size": 2 }))
    );
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn a_delete_made_while_a_conflict_is_open_wins_and_settles_it() {
    // Proves: deleting a record whose conflict is open settles the conflict the way every
    // update-versus-delete race is settled: the delete wins, reaches the server, and the
    // record ends deleted everywhere.
    let mut world = World::new();
    let (mut a, mut b, id, _conflict) = equal_stamp_conflict(&mut world);
    a.delete(&id).unwrap();
    world.sync(&mut a);
    world.sync(&mut b);
    assert!(world.server_record(ACME, &id).is_deleted);
    assert!(a.record(&id).is_deleted);
    assert!(b.record(&id).is_deleted);
    assert!(a.list_conflicts().unwrap().is_empty());
    assert!(a.queued_ops().unwrap().is_empty());
    a.check_invariants().unwrap();
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
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
    let mut world = World::new();
    let (mut a, mut b, id) = two_devices_with_one_record(&mut world, auto_merge_registry());
    same_instant(&a, &b);
    a.update(&id, json!({ "name": "Renamed by A" })).unwrap();
    b.update(&id, json!({ "color": "red" })).unwrap();
    assert_eq!(a.record(&id).updated_at, b.record(&id).updated_at);
    world.sync(&mut b);
    let events = world.sync(&mut a);
    assert_eq!(
        count(&events, |e| matches!(e, SyncEvent::ConflictStored { .. })),
        0,
        "{events:?}"
    );
    assert!(events.contains(&SyncEvent::ConflictAutoMerged {
        client_id: id.clone()
    }));
    assert!(a.list_conflicts().unwrap().is_empty());
    assert!(
        a.queued_ops().unwrap().is_empty(),
        "the merge was pushed in the same sync"
    );
    world.sync(&mut b);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "Renamed by A", "color": "red", "size": 1 }))
    );
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);

    // The same field on both sides is still the user's call.
    a.clock.set_ms(EPOCH_MS + 120_000);
    b.clock.set_ms(EPOCH_MS + 120_000);
    a.update(&id, json!({ "name": "A again" })).unwrap();
    b.update(&id, json!({ "name": "B again" })).unwrap();
    world.sync(&mut b);
    world.sync(&mut a);
    let conflicts = a.list_conflicts().unwrap();
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
    let (mut a, mut b, id) =
        two_devices_with_one_record(&mut world, sync_engine::testing::example_registry());
    a.clock.advance_ms(1_000);
    a.delete(&id).unwrap();
    b.clock.advance_ms(5_000);
    b.update(&id, json!({ "name": "edited after" })).unwrap();
    let update_op = b.queued_ops().unwrap()[0].op_id.clone();
    assert!(b.record(&id).updated_at > a.record(&id).updated_at);

    world.sync(&mut a);
    let events = world.sync(&mut b);
    assert!(events.contains(&SyncEvent::OpSuperseded {
        op_id: update_op,
        client_id: id.clone()
    }));
    assert!(world.server_record(ACME, &id).is_deleted);
    assert!(b.record(&id).is_deleted);
    assert!(b.queued_ops().unwrap().is_empty());
    assert!(matches!(
        b.update(&id, json!({ "name": "again" })),
        Err(WriteError::RecordDeleted(_))
    ));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn a_delete_that_reaches_the_server_second_still_wins_over_a_newer_update() {
    // Proves: update versus delete, update first: the delete (with an older stamp and a
    // stale base version) still applies, and the updating device pulls the tombstone.
    let mut world = World::new();
    let (mut a, mut b, id) =
        two_devices_with_one_record(&mut world, sync_engine::testing::example_registry());
    b.clock.advance_ms(5_000);
    b.update(&id, json!({ "name": "edited first" })).unwrap();
    a.clock.advance_ms(1_000);
    a.delete(&id).unwrap();
    assert!(b.record(&id).updated_at > a.record(&id).updated_at);

    world.sync(&mut b);
    assert_eq!(world.server_record(ACME, &id).version, 2);
    world.sync(&mut a);
    let server = world.server_record(ACME, &id);
    assert!(server.is_deleted);
    assert_eq!(server.version, 3);
    world.sync(&mut b);
    assert!(b.record(&id).is_deleted);
    assert!(a.record(&id).is_deleted);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    world.server.check_invariants();
}

#[test]
fn not_even_a_force_push_resurrects_a_tombstone() {
    // Proves: tombstones are final: a device force-pushing an update of a record another
    // device deleted is refused and takes the tombstone.
    let mut world = World::new();
    let (mut a, mut b, id) =
        two_devices_with_one_record(&mut world, sync_engine::testing::example_registry());
    a.delete(&id).unwrap();
    world.sync(&mut a);
    b.clock.advance_ms(5_000);
    b.update(&id, json!({ "name": "force me" })).unwrap();
    let plan = b.plan_force_push_local(SPACE_ENTITY).unwrap();
    assert_eq!(plan.local_changes(), 1);
    b.execute_force(plan.confirm()).unwrap();
    world.drive(&mut b);
    assert!(world.server_record(ACME, &id).is_deleted);
    assert!(b.record(&id).is_deleted);
    assert!(b.queued_ops().unwrap().is_empty());
}

/// A and B share three records; B then changes the server (an update and a new record);
/// A has three local changes the server never saw. Returns A's record ids.
fn diverged_devices(world: &mut World) -> (Device, Device, Vec<String>) {
    let mut a = world.device(ACME);
    let mut b = world.device(ACME);
    let ids: Vec<String> = (0..3).map(|n| a.create_named(&format!("r{n}"))).collect();
    world.sync(&mut a);
    world.sync(&mut b);
    b.clock.advance_ms(1_000);
    b.update(&ids[0], json!({ "name": "r0 by B" })).unwrap();
    b.create_named("new on B");
    world.sync(&mut b);
    a.clock.advance_ms(2_000);
    a.update(&ids[1], json!({ "name": "r1 by A" })).unwrap();
    a.delete(&ids[2]).unwrap();
    a.create_named("only on A");
    (a, b, ids)
}

#[test]
fn force_from_server_needs_a_confirmed_fresh_plan_and_replaces_local_state_exactly() {
    // Proves: force-from-server first returns a plan with the spec's exact warning and the
    // number of local changes it will discard; a plan made stale by a later write is
    // refused; a confirmed fresh plan makes the device equal to the server exactly, with
    // the entity's queue and conflicts empty, and normal sync carries on afterwards.
    let mut world = World::new();
    let (mut a, mut b, ids) = diverged_devices(&mut world);
    let plan = a.plan_force_from_server(SPACE_ENTITY).unwrap();
    assert_eq!(plan.direction(), ForceDirection::FromServer);
    assert_eq!(plan.warning_text(), SPEC_FORCE_FROM_SERVER);
    assert_eq!(plan.confirm_label(), "Force Sync");
    assert_eq!(plan.local_changes(), 3);

    a.create_named("written after planning");
    let before = snapshot(&a);
    let refused = a.execute_force(plan.confirm());
    assert!(
        matches!(refused, Err(WriteError::StalePlan(_))),
        "{refused:?}"
    );
    assert_eq!(a.poll_request(), None, "a refused plan sends nothing");
    assert_eq!(snapshot(&a), before);

    let plan = a.plan_force_from_server(SPACE_ENTITY).unwrap();
    assert_eq!(plan.local_changes(), 4);
    a.execute_force(plan.confirm()).unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    let events = a.drive_blocking(&mut transport).unwrap();
    assert!(transport
        .sent
        .iter()
        .all(|request| request.operation_name == "syncPullSpace"));
    assert!(events.contains(&SyncEvent::ForceCompleted {
        entity: SPACE_ENTITY.to_owned()
    }));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    assert_eq!(a.record(&ids[0]).data["name"], json!("r0 by B"));
    assert_eq!(a.record(&ids[1]).data["name"], json!("r1"));
    assert!(
        !a.record(&ids[2]).is_deleted,
        "the unsynced delete was discarded"
    );
    assert!(a.queued_ops().unwrap().is_empty());
    assert!(a.list_conflicts().unwrap().is_empty());
    assert!(a.cursor(SPACE_ENTITY).unwrap().is_some());
    a.check_invariants().unwrap();

    let events = world.sync(&mut a);
    assert!(events.contains(&SyncEvent::SyncCompleted));
    a.update(&ids[1], json!({ "name": "after force" })).unwrap();
    world.sync(&mut a);
    world.sync(&mut b);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn force_from_server_settles_open_conflicts() {
    // Proves: force-from-server also discards the entity's open conflicts and their ops,
    // counted in the plan, leaving the device equal to the server.
    let mut world = World::new();
    let (mut a, b, _id, _conflict) = equal_stamp_conflict(&mut world);
    let plan = a.plan_force_from_server(SPACE_ENTITY).unwrap();
    assert_eq!(plan.open_conflicts(), 1);
    assert_eq!(plan.local_changes(), 1);
    a.execute_force(plan.confirm()).unwrap();
    world.drive(&mut a);
    assert!(a.list_conflicts().unwrap().is_empty());
    assert!(a.queued_ops().unwrap().is_empty());
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn force_push_local_settles_open_conflicts_in_the_local_favour() {
    // Proves: force-push counts the entity's open conflicts in its plan, settles them by
    // pushing the local side over the server's, and everyone converges on it.
    let mut world = World::new();
    let (mut a, mut b, id, _conflict) = equal_stamp_conflict(&mut world);
    let plan = a.plan_force_push_local(SPACE_ENTITY).unwrap();
    assert_eq!(plan.open_conflicts(), 1);
    a.execute_force(plan.confirm()).unwrap();
    let events = world.drive(&mut a);
    assert!(events.contains(&SyncEvent::SyncCompleted), "{events:?}");
    world.sync(&mut b);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "My Space", "color": "green", "size": 1 }))
    );
    assert!(a.list_conflicts().unwrap().is_empty());
    assert!(a.queued_ops().unwrap().is_empty());
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
}

#[test]
fn force_push_local_overrides_a_newer_server_version_and_sync_carries_on() {
    // Proves: force-push gives the spec's warning, then the server and a second device
    // take the local values although the server's stamp was newer; normal sync works
    // afterwards in both directions.
    let mut world = World::new();
    let (mut a, mut b, id) =
        two_devices_with_one_record(&mut world, sync_engine::testing::example_registry());
    b.clock.advance_ms(5_000);
    b.update(&id, json!({ "name": "newer on server" })).unwrap();
    world.sync(&mut b);
    a.clock.advance_ms(1_000);
    a.update(&id, json!({ "name": "local wins" })).unwrap();
    assert!(a.record(&id).updated_at < world.server_record(ACME, &id).updated_at);

    let plan = a.plan_force_push_local(SPACE_ENTITY).unwrap();
    assert_eq!(plan.direction(), ForceDirection::PushLocal);
    assert_eq!(plan.warning_text(), SPEC_FORCE_PUSH_LOCAL);
    assert_eq!(plan.confirm_label(), "Force Push");
    assert_eq!(plan.local_changes(), 1);
    a.execute_force(plan.confirm()).unwrap();
    let events = world.drive(&mut a);
    assert!(events.contains(&SyncEvent::SyncCompleted), "{events:?}");
    let server = world.server_record(ACME, &id);
    assert_eq!(server.data["name"], json!("local wins"));
    assert_eq!(server.version, 3);
    world.sync(&mut b);
    assert_eq!(b.record(&id).data["name"], json!("local wins"));
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);

    // Normal sync continues: an edit on each side, in turn.
    a.clock.advance_ms(10_000);
    a.update(&id, json!({ "color": "after force" })).unwrap();
    world.sync(&mut a);
    world.sync(&mut b);
    b.clock.advance_ms(10_000);
    b.update(&id, json!({ "size": 99 })).unwrap();
    world.sync(&mut b);
    world.sync(&mut a);
    assert_eq!(
        world.server_record(ACME, &id).data,
        object(json!({ "name": "local wins", "color": "after force", "size": 99 }))
    );
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    assert!(a.queued_ops().unwrap().iter().all(|op| !op.force));
}

#[test]
fn wiping_a_space_removes_only_that_space_and_keeps_the_token() {
    // Proves: wiping space S removes S's records, queued ops and conflicts, keeps other
    // spaces (records and queued ops) and the auth token; the next sync re-fetches what
    // the server still has of S, while S's never-pushed changes are gone for good.
    let mut world = World::new();
    let mut a = world.device(ACME);
    let synced_s: Vec<String> = (0..2).map(|n| a.create_named(&format!("s{n}"))).collect();
    let synced_t: Vec<String> = (0..2)
        .map(|n| {
            a.create(
                SPACE_ENTITY,
                OTHER_SPACE,
                json!({ "name": format!("t{n}") }),
            )
            .unwrap()
        })
        .collect();
    world.sync(&mut a);
    let pending_s = a.create_named("s pending");
    a.update(&synced_s[0], json!({ "name": "s0 edited, unsynced" }))
        .unwrap();
    let pending_t = a
        .create(SPACE_ENTITY, OTHER_SPACE, json!({ "name": "t pending" }))
        .unwrap();
    let t_before: Vec<_> = a
        .list(SPACE_ENTITY, Some(OTHER_SPACE), Default::default())
        .unwrap();
    let t_ops_before: Vec<_> = a
        .queued_ops()
        .unwrap()
        .into_iter()
        .filter(|op| op.space_id == OTHER_SPACE)
        .collect();
    assert_eq!(t_ops_before.len(), 1);

    a.wipe_space(SPACE).unwrap();
    let everything = sync_engine::ListOptions {
        include_deleted: true,
    };
    assert!(a
        .list(SPACE_ENTITY, Some(SPACE), everything)
        .unwrap()
        .is_empty());
    assert!(a.get(&pending_s).unwrap().is_none());
    assert!(a
        .queued_ops()
        .unwrap()
        .iter()
        .all(|op| op.space_id != SPACE));
    assert_eq!(
        a.list(SPACE_ENTITY, Some(OTHER_SPACE), Default::default())
            .unwrap(),
        t_before
    );
    let t_ops_after: Vec<_> = a.queued_ops().unwrap();
    assert_eq!(t_ops_after, t_ops_before);
    assert_eq!(a.auth_token().unwrap().as_deref(), Some(ACME_TOKEN));
    a.check_invariants().unwrap();

    let events = world.sync(&mut a);
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, SyncEvent::RepairStarted { .. })),
        "the wipe reset the cursors, so no checksum repair is needed: {events:?}"
    );
    let s_now: Vec<String> = a
        .list(SPACE_ENTITY, Some(SPACE), Default::default())
        .unwrap()
        .into_iter()
        .map(|record| record.client_id)
        .collect();
    let mut expected = synced_s.clone();
    expected.sort();
    assert_eq!(s_now, expected);
    assert_eq!(a.record(&synced_s[0]).data["name"], json!("s0"));
    assert!(a.get(&pending_s).unwrap().is_none());
    assert_eq!(
        world.server_record(ACME, &pending_t).data["name"],
        json!("t pending")
    );
    assert_eq!(
        world.server_record(ACME, &synced_t[0]).data["name"],
        json!("t0")
    );
    world.assert_converged(ACME, SPACE_ENTITY, &[&a]);
}

#[test]
fn a_kill_inside_force_from_server_leaves_the_old_state_entirely() {
    // Proves: an app kill inside the force-from-server replacement rolls it back whole:
    // after reopen the database is consistent and exactly as before; a second confirmed
    // force then succeeds.
    let mut world = World::new();
    let (mut a, b, _ids) = diverged_devices(&mut world);
    let before = snapshot(&a);
    a.set_crash_hook(Box::new(CrashAt(CrashPoint::MidForce)));
    let plan = a.plan_force_from_server(SPACE_ENTITY).unwrap();
    a.execute_force(plan.confirm()).unwrap();
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    let outcome = a.drive_blocking(&mut transport);
    assert!(
        matches!(outcome, Err(SyncError::Killed(CrashPoint::MidForce))),
        "{outcome:?}"
    );
    assert_eq!(a.killed_at(), Some(CrashPoint::MidForce));
    a.reopen();
    a.check_invariants().unwrap();
    assert_eq!(snapshot(&a), before);

    let plan = a.plan_force_from_server(SPACE_ENTITY).unwrap();
    a.execute_force(plan.confirm()).unwrap();
    world.drive(&mut a);
    world.assert_converged(ACME, SPACE_ENTITY, &[&a, &b]);
    assert!(a.queued_ops().unwrap().is_empty());
}

#[test]
fn a_kill_inside_force_push_leaves_the_old_state_entirely() {
    // Proves: an app kill while force-push marks the local changes rolls the marking back:
    // after reopen nothing is marked `force`, the database is consistent, and nothing
    // reached the server.
    let mut world = World::new();
    let (mut a, _b, _ids) = diverged_devices(&mut world);
    let before = snapshot(&a);
    let server_before = world.server.clone();
    a.set_crash_hook(Box::new(CrashAt(CrashPoint::MidForce)));
    let plan = a.plan_force_push_local(SPACE_ENTITY).unwrap();
    let outcome = a.execute_force(plan.confirm());
    assert!(
        matches!(outcome, Err(WriteError::Killed(CrashPoint::MidForce))),
        "{outcome:?}"
    );
    a.reopen();
    a.check_invariants().unwrap();
    assert_eq!(snapshot(&a), before);
    assert!(a.queued_ops().unwrap().iter().all(|op| !op.force));
    assert!(world.server == server_before);
}

#[test]
fn a_kill_inside_a_space_wipe_leaves_the_old_state_entirely() {
    // Proves: an app kill inside a space wipe rolls it back whole: after reopen the
    // database is consistent and every record, op, cursor and token is as before.
    let mut world = World::new();
    let (mut a, _b, _ids) = diverged_devices(&mut world);
    a.create(SPACE_ENTITY, OTHER_SPACE, json!({ "name": "elsewhere" }))
        .unwrap();
    let before = snapshot(&a);
    a.set_crash_hook(Box::new(CrashAt(CrashPoint::MidWipe)));
    let outcome = a.wipe_space(SPACE);
    assert!(
        matches!(outcome, Err(WriteError::Killed(CrashPoint::MidWipe))),
        "{outcome:?}"
    );
    a.reopen();
    a.check_invariants().unwrap();
    assert_eq!(snapshot(&a), before);

    a.wipe_space(SPACE).unwrap();
    assert!(a
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
    let mut a = world.device(ACME);
    let synced: Vec<String> = (0..3).map(|n| a.create_named(&format!("r{n}"))).collect();
    world.sync(&mut a);
    let in_flight = a.create_named("in flight");
    a.sync_now().unwrap();
    let request = a.poll_request().expect("push");
    assert!(a.status().unwrap().syncing);

    let location = a.db_location();
    let tenant = a.tenant_id();
    assert!(location.db_path(&tenant).exists());
    a.drop_database();
    for path in location.db_files(&tenant) {
        assert!(!path.exists(), "{} survived the drop", path.display());
    }
    // The request was already on the wire; the server applies it.
    let _late = world.server.handle(&request);

    a.login(ACME_TOKEN);
    assert!(a.all_records().unwrap().is_empty());
    assert!(a.queued_ops().unwrap().is_empty());
    for config in a.registry().entities() {
        assert_eq!(a.cursor(config.name()).unwrap(), None);
    }
    assert_eq!(a.status().unwrap().last_successful_sync_ms, None);
    let mut transport = ScriptedTransport::new(&mut world.server, []);
    a.sync_now().unwrap();
    a.drive_blocking(&mut transport).unwrap();
    let first_pull = transport
        .sent
        .iter()
        .find(|request| request.operation_name == "syncPullSpace")
        .expect("a pull");
    assert_eq!(first_pull.variables["lastSyncAt"], serde_json::Value::Null);
    assert_eq!(a.live_view(SPACE_ENTITY).len(), 4);
    for id in synced.iter().chain([&in_flight]) {
        assert!(a.get(id).unwrap().is_some());
    }
    world.assert_converged(ACME, SPACE_ENTITY, &[&a]);
}
