//! Change notifications: after every committed transaction the engine announces, with one
//! `RecordsChanged` event per entity, exactly the records whose shown state changed —
//! local writes, push results, pulled pages (not the echo of a version the device holds),
//! wipes, forces — and a transaction that does not commit announces nothing.

use serde_json::{json, Value};
use sync_engine::wire::{data_response, SyncRequest};
use sync_engine::{testing, CrashHook, CrashPoint, Engine, HlcStamp, SyncEvent};

const ENTITY: &str = "Space";

/// Every `RecordsChanged` the engine has queued, as (entity, ids), in order.
fn announced(engine: &mut Engine) -> Vec<(String, Vec<String>)> {
    std::iter::from_fn(|| engine.poll_event())
        .filter_map(|event| match event {
            SyncEvent::RecordsChanged { entity, ids } => Some((entity, ids)),
            _ => None,
        })
        .collect()
}

/// The one check every test makes: the events queued since the last one announce exactly
/// `expected` (each entity with its sorted ids, one event per transaction).
fn check(engine: &mut Engine, expected: &[(&str, &[&str])]) {
    let expected: Vec<(String, Vec<String>)> = expected
        .iter()
        .map(|(entity, ids)| {
            let ids = ids.iter().map(|id| (*id).to_owned()).collect();
            ((*entity).to_owned(), ids)
        })
        .collect();
    assert_eq!(announced(engine), expected);
}

fn open() -> (tempfile::TempDir, Engine) {
    let (dir, mut engine) = testing::open_temp_engine("acme");
    engine.set_auth_token("token-acme").expect("store token");
    (dir, engine)
}

/// A pulled row of `ENTITY` in space `s1`.
fn row(server_id: &str, client_id: &str, version: i64, stamp: HlcStamp, name: &str) -> Value {
    json!({
        "id": server_id, "clientId": client_id, "spaceId": "s1", "version": version,
        "updatedAt": stamp, "data": { "name": name },
    })
}

/// Record client ids the server's rows carry.
const IDS: [&str; 4] = [
    "0190c0de-0000-7000-8000-000000000001",
    "0190c0de-0000-7000-8000-000000000002",
    "0190c0de-0000-7000-8000-000000000003",
    "0190c0de-0000-7000-8000-000000000004",
];

/// Runs a sync whose pull of `ENTITY` (after empty pulls of the others) is one last page.
fn sync_pulling(engine: &mut Engine, items: Vec<Value>, deleted_ids: &[&str]) {
    engine.sync_now().unwrap();
    while let Some(request) = engine.poll_request() {
        assert!(
            request.operation_name.starts_with("syncPull"),
            "{request:?}"
        );
        let page = if request.operation_name == format!("syncPull{ENTITY}") {
            json!({ "items": items, "deletedIds": deleted_ids, "lastSyncAt": "c1",
                    "versionHash": null, "hasMore": false })
        } else {
            json!({ "items": [], "deletedIds": [], "lastSyncAt": "c0",
                    "versionHash": null, "hasMore": false })
        };
        let answer = data_response(&request.operation_name, page);
        engine
            .handle_response(request.request_id, Ok(answer))
            .expect("answer");
    }
}

/// Acknowledges every op of a push request, giving record `i` the server id `srv-i`.
fn acknowledge_push(engine: &mut Engine, request: &SyncRequest) {
    let results: Vec<Value> = request.variables.to_json()["payload"]
        .as_array()
        .expect("a payload")
        .iter()
        .enumerate()
        .map(|(i, item)| {
            json!({
                "opId": item["opId"], "clientId": item["clientId"], "id": format!("srv-{i}"),
                "success": true, "errorCode": null, "errorMessage": null,
                "version": 1, "updatedAt": item["updatedAt"], "conflict": null
            })
        })
        .collect();
    let answer = data_response(&request.operation_name, json!({ "results": results }));
    engine
        .handle_response(request.request_id, Ok(answer))
        .expect("answer");
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

// Proves each local write announces exactly its records, once, through `poll_event`.
#[test]
fn local_writes_announce_their_records() {
    let (_dir, mut engine) = open();
    check(&mut engine, &[]);
    let one = engine.create(ENTITY, "s1", json!({"name": "a"})).unwrap();
    check(&mut engine, &[(ENTITY, &[&one])]);
    let many = sorted(
        engine
            .create_many("Group", "s1", vec![json!({"n": 1}), json!({"n": 2})])
            .unwrap(),
    );
    check(&mut engine, &[("Group", &[&many[0], &many[1]])]);
    engine.update(&one, json!({"name": "b"})).unwrap();
    check(&mut engine, &[(ENTITY, &[&one])]);
    engine.delete(&many[1]).unwrap();
    check(&mut engine, &[("Group", &[&many[1]])]);
    // Refused input changes nothing and announces nothing.
    assert!(engine.update(&many[1], json!({"n": 3})).is_err());
    assert!(engine.create(ENTITY, "s1", json!([1])).is_err());
    check(&mut engine, &[]);
}

// Proves a push answer announces the records whose server id and base version it set, and
// a refused push answer (a result with an empty server id) announces nothing.
#[test]
fn push_results_announce_and_a_refused_answer_does_not() {
    let (_dir, mut engine) = open();
    let id = engine.create(ENTITY, "s1", json!({"name": "a"})).unwrap();
    check(&mut engine, &[(ENTITY, &[&id])]);

    engine.sync_now().unwrap();
    let request = engine.poll_request().expect("a push");
    let variables = request.variables.to_json();
    let item = &variables["payload"][0];
    let refused = json!({
        "opId": item["opId"], "clientId": id, "id": "", "success": true, "errorCode": null,
        "errorMessage": null, "version": 1, "updatedAt": item["updatedAt"], "conflict": null
    });
    let answer = data_response(&request.operation_name, json!({ "results": [refused] }));
    engine
        .handle_response(request.request_id, Ok(answer))
        .unwrap();
    check(&mut engine, &[]);

    engine.sync_now().unwrap();
    let request = engine.poll_request().expect("the push again");
    acknowledge_push(&mut engine, &request);
    check(&mut engine, &[(ENTITY, &[&id])]);
    let record = engine.get(&id).unwrap().unwrap();
    assert_eq!(record.server_id.as_deref(), Some("srv-0"));
}

// Proves a pulled page announces new, changed and deleted records, but not the echo of a
// version the device already holds; and a page refused whole announces nothing.
#[test]
fn pulled_pages_announce_what_they_changed_and_not_echoes() {
    let (_dir, mut engine) = open();
    let stamp = HlcStamp::new(testing::EPOCH_MS - 5_000, 0);
    let [held, changed, removed, fresh] = IDS;
    sync_pulling(
        &mut engine,
        vec![
            row("srv-1", held, 1, stamp, "held"),
            row("srv-2", changed, 1, stamp, "old"),
            row("srv-3", removed, 1, stamp, "gone soon"),
        ],
        &[],
    );
    check(&mut engine, &[(ENTITY, &[held, changed, removed])]);

    // A page giving one server id to two records is refused whole.
    let later = HlcStamp::new(testing::EPOCH_MS - 1_000, 0);
    sync_pulling(
        &mut engine,
        vec![
            row("srv-2", changed, 2, later, "new"),
            row("srv-2", fresh, 1, later, "twin"),
        ],
        &[],
    );
    check(&mut engine, &[]);
    assert_eq!(engine.get(changed).unwrap().unwrap().version, 1);

    sync_pulling(
        &mut engine,
        vec![
            row("srv-1", held, 1, stamp, "held"),
            row("srv-2", changed, 2, later, "new"),
            row("srv-4", fresh, 1, later, "fresh"),
        ],
        &["srv-3"],
    );
    check(&mut engine, &[(ENTITY, &[changed, removed, fresh])]);
    assert!(engine.get(removed).unwrap().unwrap().is_deleted);
}

// Proves a wipe announces the records it removed, per entity, and a force from the server
// announces what its replacement changed: not a record it restores exactly as it was.
#[test]
fn wipes_and_forces_announce_what_they_removed_or_replaced() {
    let (_dir, mut engine) = open();
    let stamp = HlcStamp::new(testing::EPOCH_MS - 5_000, 0);
    let kept = "0190c0de-0000-7000-8000-000000000001";
    let edited = "0190c0de-0000-7000-8000-000000000002";
    sync_pulling(
        &mut engine,
        vec![
            row("srv-1", kept, 1, stamp, "kept"),
            row("srv-2", edited, 1, stamp, "edited"),
        ],
        &[],
    );
    check(&mut engine, &[(ENTITY, &[kept, edited])]);
    engine.update(edited, json!({"name": "local"})).unwrap();
    let draft = engine
        .create(ENTITY, "s1", json!({"name": "draft"}))
        .unwrap();
    let group = engine.create("Group", "s2", json!({"n": 1})).unwrap();
    announced(&mut engine);

    let plan = engine.plan_force_from_server(ENTITY).unwrap();
    engine.execute_force(plan.confirm()).unwrap();
    check(&mut engine, &[]);
    let request = engine.poll_request().expect("the force pull");
    let page = json!({
        "items": [row("srv-1", kept, 1, stamp, "kept"), row("srv-2", edited, 1, stamp, "edited")],
        "deletedIds": [], "lastSyncAt": "c9", "versionHash": null, "hasMore": false,
    });
    let answer = data_response(&request.operation_name, page);
    engine
        .handle_response(request.request_id, Ok(answer))
        .unwrap();
    let mut expected = [edited.to_owned(), draft.clone()];
    expected.sort();
    check(&mut engine, &[(ENTITY, &[&expected[0], &expected[1]])]);

    engine.wipe_space("s1").unwrap();
    check(&mut engine, &[(ENTITY, &[kept, edited])]);
    engine.wipe_space("s2").unwrap();
    check(&mut engine, &[("Group", &[&group])]);
    engine.wipe_space("s2").unwrap();
    check(&mut engine, &[]);
}

/// Kills the app at the first commit boundary of the given side.
struct KillAt(CrashPoint);

impl CrashHook for KillAt {
    fn should_crash(&mut self, point: CrashPoint) -> bool {
        point == self.0
    }
}

// Proves a transaction killed before its commit announces nothing (before the kill, and
// in the reopened engine), while one killed right after its commit is durable.
#[test]
fn a_transaction_killed_before_its_commit_announces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = sync_engine::ManualClock::new(testing::EPOCH_MS);
    let mut engine = testing::open_engine_in(dir.path(), "acme", clock.clone(), 1);
    engine.set_crash_hook(Box::new(KillAt(CrashPoint::BeforeCommit)));
    assert!(engine.create(ENTITY, "s1", json!({"name": "a"})).is_err());
    assert_eq!(engine.poll_event(), None);
    drop(engine);
    let mut engine = testing::open_engine_in(dir.path(), "acme", clock, 2);
    assert!(engine.all_records().unwrap().is_empty());
    check(&mut engine, &[]);
    let id = engine.create(ENTITY, "s1", json!({"name": "b"})).unwrap();
    check(&mut engine, &[(ENTITY, &[&id])]);
}

/// Answers every push by refusing each write for good, and every pull with an empty page.
fn refuse_every_write(request: &SyncRequest) -> Value {
    let answer = match request.variables.to_json()["payload"].as_array() {
        Some(items) => json!({ "results": items.iter().map(|item| json!({
            "opId": item["opId"], "clientId": item["clientId"], "id": null,
            "success": false, "errorCode": "VALIDATION", "errorMessage": "no",
            "version": null, "updatedAt": null, "conflict": null
        })).collect::<Vec<_>>() }),
        None => json!({ "items": [], "deletedIds": [], "lastSyncAt": "0",
                        "versionHash": null, "hasMore": false }),
    };
    data_response(&request.operation_name, answer)
}

/// Runs a sync against a server that refuses every write.
fn sync_refused(engine: &mut Engine) {
    engine.sync_now().unwrap();
    while let Some(request) = engine.poll_request() {
        let answer = refuse_every_write(&request);
        engine
            .handle_response(request.request_id, Ok(answer))
            .unwrap();
    }
}

#[test]
fn retrying_and_discarding_a_failed_write_announce_its_record() {
    let (_dir, mut engine) = open();
    let id = engine
        .create(ENTITY, "s1", json!({"name": "refused"}))
        .unwrap();
    check(&mut engine, &[(ENTITY, &[id.as_str()])]);
    sync_refused(&mut engine);
    // The rejected insert becomes a local tombstone: a change.
    check(&mut engine, &[(ENTITY, &[id.as_str()])]);
    engine.retry_failed(sync_engine::WhichFailed::All).unwrap();
    check(&mut engine, &[(ENTITY, &[id.as_str()])]);
    sync_refused(&mut engine);
    check(&mut engine, &[(ENTITY, &[id.as_str()])]);
    engine
        .discard_failed(sync_engine::WhichFailed::All)
        .unwrap();
    check(&mut engine, &[(ENTITY, &[id.as_str()])]);
    assert_eq!(engine.get(&id).unwrap(), None);
}
