//! Regression (issue 19): a pull page only ever checked its own shape, never what its
//! rows named. An item of a `syncPullSpace` page whose `clientId` was a `Group` record
//! turned that record into a `Space` with the page's data; `deletedIds` of a `Space` page
//! deleted `Group` records; a force-from-server page did the same, or failed with a
//! SQLite error when an item reused another entity's server id; and an item could move a
//! record to another space. No event said so and `check_invariants` still passed.
//!
//! Each page here comes through `Engine::handle_response`, as a hostile server would send
//! it, and must be refused like every other impossible answer (a `SyncFailed`, or a
//! `ForceFailed` for a force's page), with nothing of the page applied: no record, no
//! tombstone, no cursor. The last test shows what a page may still do, so that the
//! refusal is not wider than its rule.

use serde_json::{json, Value};
use sync_engine::testing::open_temp_engine;
use sync_engine::wire::{data_response, SyncPushVariables};
use sync_engine::{Engine, HlcStamp, Record, SyncEvent};
use tempfile::TempDir;

/// A device with two synced records in space `s1`: a `Group` (server id `srv-group`) and a
/// `Space` (`srv-space`); every entity's cursor is `c1`, and no sync runs.
struct Device {
    _dir: TempDir,
    engine: Engine,
    group: String,
    space: String,
}

impl Device {
    fn new() -> Device {
        let (dir, mut engine) = open_temp_engine("acme");
        engine.set_auth_token("token-acme").unwrap();
        let group = engine.create("Group", "s1", json!({"name": "g"})).unwrap();
        let space = engine.create("Space", "s1", json!({"name": "s"})).unwrap();
        engine.sync_now().unwrap();
        for (operation, server_id) in [
            ("syncPushGroup", "srv-group"),
            ("syncPushSpace", "srv-space"),
        ] {
            let request = engine.poll_request().expect("a push request");
            assert_eq!(request.operation_name, operation);
            let variables: SyncPushVariables =
                serde_json::from_value(request.variables.into_json()).unwrap();
            let results: Vec<Value> = variables
                .payload
                .iter()
                .map(|item| {
                    json!({"opId": item.op_id, "clientId": item.client_id, "id": server_id,
                           "success": true, "version": 1, "updatedAt": item.updated_at})
                })
                .collect();
            let response = data_response(operation, json!({ "results": results }));
            engine
                .handle_response(request.request_id, Ok(response))
                .unwrap();
        }
        let mut device = Device {
            _dir: dir,
            engine,
            group,
            space,
        };
        for entity in ["Space", "Group", "Identity"] {
            device.answer_page(entity, json!([]), json!([]));
        }
        assert_eq!(device.events().last(), Some(&SyncEvent::SyncCompleted));
        assert!(device.engine.queued_ops().unwrap().is_empty());
        device
    }

    /// Answers the next request, which must be a pull of `entity`, with one last page.
    fn answer_page(&mut self, entity: &str, items: Value, deleted_ids: Value) {
        let request = self.engine.poll_request().expect("a pull request");
        let operation = format!("syncPull{entity}");
        assert_eq!(request.operation_name, operation);
        let page = json!({"items": items, "deletedIds": deleted_ids, "lastSyncAt": "c1",
                          "hasMore": false});
        self.engine
            .handle_response(request.request_id, Ok(data_response(&operation, page)))
            .expect("a hostile page is data, never an operating error");
    }

    fn events(&mut self) -> Vec<SyncEvent> {
        std::iter::from_fn(|| self.engine.poll_event()).collect()
    }

    fn record(&self, client_id: &str) -> Record {
        self.engine.get(client_id).unwrap().expect("record exists")
    }

    /// A stamp newer than every record's, so a pulled row would win by the policy.
    fn newer_stamp(&self) -> HlcStamp {
        let newest = self
            .engine
            .all_records()
            .unwrap()
            .iter()
            .map(|r| r.updated_at.0)
            .max();
        HlcStamp(newest.unwrap() + (1 << 20))
    }

    /// Starts a sync, which (nothing queued) asks for the first entity's page: `Space`.
    fn start_sync(&mut self) {
        self.engine.sync_now().unwrap();
        self.events();
    }

    /// The one place the tests judge an answer: `answer` (a call that delivers one hostile
    /// page) is refused with a `SyncFailed` (a `ForceFailed` for a force's page), and
    /// every record and cursor is as it was. What the page changed is reported before a
    /// panic of `answer` (an operating error) is passed on, so a failure shows the harm.
    fn check_refused(&mut self, answer: impl FnOnce(&mut Device)) {
        let records = self.engine.all_records().unwrap();
        let cursors: Vec<_> = ["Space", "Group", "Identity"]
            .map(|entity| self.engine.cursor(entity).unwrap())
            .to_vec();
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(self)));
        let events = self.events();
        let records_after = self.engine.all_records().unwrap();
        let changed: Vec<String> = records_after
            .iter()
            .filter(|record| !records.contains(record))
            .map(|record| {
                let state = if record.is_deleted { "deleted" } else { "live" };
                let (id, entity, space) = (&record.client_id, &record.entity, &record.space_id);
                format!("{id} is now a {state} {entity} in {space}")
            })
            .collect();
        assert!(changed.is_empty(), "the page was applied: {changed:?}");
        if let Err(panic) = answered {
            std::panic::resume_unwind(panic);
        }
        assert_eq!(records_after, records, "the page was applied");
        let cursors_after: Vec<_> = ["Space", "Group", "Identity"]
            .map(|entity| self.engine.cursor(entity).unwrap())
            .to_vec();
        assert_eq!(cursors_after, cursors, "a refused page moved a cursor");
        assert!(
            events.iter().any(|event| matches!(
                event,
                SyncEvent::SyncFailed { .. } | SyncEvent::ForceFailed { .. }
            )),
            "the page was not refused; events: {events:?}"
        );
        assert!(
            !events
                .iter()
                .any(|event| matches!(event, SyncEvent::ForceCompleted { .. })),
            "{events:?}"
        );
        assert_eq!(self.engine.poll_request(), None, "the refused sync goes on");
        self.engine.check_invariants().unwrap();
    }
}

/// A valid new `Space` row, placed before the hostile row on each page: the refusal must
/// take the whole page, not stop at the bad row.
fn innocent_space_item(stamp: HlcStamp) -> Value {
    json!({"id": "srv-new", "clientId": "client-new", "spaceId": "s1", "version": 1,
           "updatedAt": stamp, "data": {"name": "new"}})
}

#[test]
fn a_pulled_item_naming_another_entitys_record_by_client_id_is_refused() {
    // Proves a `Space` page cannot rewrite a `Group` record through its client id (on the
    // old code the record became a `Space` named "hijacked").
    let mut device = Device::new();
    let stamp = device.newer_stamp();
    let group = device.group.clone();
    device.start_sync();
    device.check_refused(|device| {
        let hostile = json!({"id": "srv-other", "clientId": group, "spaceId": "s1",
                             "version": 2, "updatedAt": stamp, "data": {"name": "hijacked"}});
        device.answer_page(
            "Space",
            json!([innocent_space_item(stamp), hostile]),
            json!([]),
        );
    });
    assert_eq!(device.record(&device.group).entity, "Group");
    assert_eq!(device.record(&device.group).data["name"], "g");
}

#[test]
fn a_pulled_item_naming_another_entitys_record_by_server_id_is_refused() {
    // Proves a `Space` row carrying a `Group` record's server id is refused, not silently
    // skipped while the rest of its page and its cursor are taken.
    let mut device = Device::new();
    let stamp = device.newer_stamp();
    device.start_sync();
    device.check_refused(|device| {
        let hostile = json!({"id": "srv-group", "clientId": "client-other", "spaceId": "s1",
                             "version": 2, "updatedAt": stamp, "data": {"name": "hijacked"}});
        device.answer_page(
            "Space",
            json!([innocent_space_item(stamp), hostile]),
            json!([]),
        );
    });
    assert!(device.engine.get("client-other").unwrap().is_none());
}

#[test]
fn deleted_ids_naming_another_entitys_record_are_refused() {
    // Proves a `Space` page's `deletedIds` cannot delete a `Group` record (on the old code
    // the group was tombstoned).
    let mut device = Device::new();
    let stamp = device.newer_stamp();
    device.start_sync();
    device.check_refused(|device| {
        device.answer_page(
            "Space",
            json!([innocent_space_item(stamp)]),
            json!(["srv-group"]),
        );
    });
    assert!(!device.record(&device.group).is_deleted);
}

#[test]
fn a_force_from_server_page_naming_another_entitys_record_is_refused() {
    // Proves the replacement of a force-from-server touches only its own entity: a row
    // naming a `Group` record by client id (on the old code the group became a `Space`),
    // by server id (on the old code a SQLite UNIQUE error: an operating error for a
    // server's answer), or two rows giving one server id to two records (the same UNIQUE
    // error) are refused, and the `Space` records stay as they were.
    for case in ["by client id", "by server id", "one server id twice"] {
        let mut device = Device::new();
        let stamp = device.newer_stamp();
        let (id, client_id) = match case {
            "by client id" => ("srv-other", device.group.clone()),
            "by server id" => ("srv-group", "client-other".to_owned()),
            _ => ("srv-new", "client-other".to_owned()),
        };
        let plan = device.engine.plan_force_from_server("Space").unwrap();
        device.engine.execute_force(plan.confirm()).unwrap();
        device.check_refused(|device| {
            let hostile = json!({"id": id, "clientId": client_id, "spaceId": "s1",
                                 "version": 2, "updatedAt": stamp, "data": {"name": "hijacked"}});
            device.answer_page(
                "Space",
                json!([innocent_space_item(stamp), hostile]),
                json!([]),
            );
        });
        assert_eq!(device.record(&device.group).entity, "Group", "{case}");
        assert_eq!(device.record(&device.space).data["name"], "s", "{case}");
    }
}

#[test]
fn a_pulled_item_moving_a_record_to_another_space_is_refused() {
    // Proves an incremental pull cannot move a record the device holds to another space,
    // named by its client id or by its server id (on the old code the `Space` record moved
    // from `s1` to `s2`).
    for by_server_id in [false, true] {
        let mut device = Device::new();
        let stamp = device.newer_stamp();
        let space = device.space.clone();
        let client_id = if by_server_id {
            "client-other".to_owned()
        } else {
            space.clone()
        };
        device.start_sync();
        device.check_refused(|device| {
            let moved = json!({"id": "srv-space", "clientId": client_id, "spaceId": "s2",
                               "version": 2, "updatedAt": stamp, "data": {"name": "moved"}});
            device.answer_page(
                "Space",
                json!([innocent_space_item(stamp), moved]),
                json!([]),
            );
        });
        assert_eq!(device.record(&space).space_id, "s1");
        assert_eq!(device.record(&space).data["name"], "s");
    }
}

#[test]
fn a_page_may_still_bring_new_records_to_any_space_and_a_force_may_move_its_own() {
    // Proves the refusal is no wider than its rule: an incremental page may create a new
    // record in any space and update a record in place; a confirmed force-from-server
    // replaces its entity whole, so its rows may put the entity's records in another
    // space (the user chose the server's copy of every record of that entity).
    let mut device = Device::new();
    let stamp = device.newer_stamp();
    let space = device.space.clone();
    device.start_sync();
    let in_place = json!({"id": "srv-space", "clientId": space, "spaceId": "s1",
                          "version": 2, "updatedAt": stamp, "data": {"name": "renamed"}});
    let elsewhere = json!({"id": "srv-new", "clientId": "client-new", "spaceId": "s2",
                           "version": 1, "updatedAt": stamp, "data": {"name": "new"}});
    device.answer_page("Space", json!([in_place, elsewhere]), json!([]));
    device.answer_page("Group", json!([]), json!([]));
    device.answer_page("Identity", json!([]), json!([]));
    assert_eq!(device.events().last(), Some(&SyncEvent::SyncCompleted));
    assert_eq!(device.record(&space).data["name"], "renamed");
    assert_eq!(device.record("client-new").space_id, "s2");

    let plan = device.engine.plan_force_from_server("Space").unwrap();
    device.engine.execute_force(plan.confirm()).unwrap();
    let moved = json!({"id": "srv-space", "clientId": space, "spaceId": "s2",
                       "version": 3, "updatedAt": stamp, "data": {"name": "moved"}});
    device.answer_page("Space", json!([moved]), json!([]));
    let events = device.events();
    assert!(
        events.contains(&SyncEvent::ForceCompleted {
            entity: "Space".to_owned()
        }),
        "{events:?}"
    );
    assert_eq!(device.record(&space).space_id, "s2");
    assert!(device.engine.get("client-new").unwrap().is_none());
    assert_eq!(device.record(&device.group).entity, "Group");
    device.engine.check_invariants().unwrap();
}
