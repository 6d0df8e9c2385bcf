//! Local-first CRUD and the durable queue (issue: engine foundation): writes and their
//! queued ops commit together, survive a reopen, reset `sending` ops, stay inside their
//! tenant's file, and bad input changes nothing.

use serde_json::json;
use sync_engine::testing::{example_registry, open_engine_in, EPOCH_MS};
use sync_engine::wire::Operation;
use sync_engine::{
    CommitSite, CrashHook, CrashPoint, DbLocation, Engine, EngineOptions, Env, ListOptions,
    ManualClock, OpStatus, SeededEntropy, TenantId, WriteError,
};

fn open(dir: &std::path::Path, tenant: &str) -> Engine {
    open_engine_in(dir, tenant, ManualClock::new(EPOCH_MS), 1)
}

struct CrashAt(CrashPoint);
impl CrashHook for CrashAt {
    fn should_crash(&mut self, point: CrashPoint) -> bool {
        point == self.0
    }
}

#[test]
fn create_writes_record_and_insert_op_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), "acme");
    let id = engine
        .create("Space", "s1", json!({"name": "My Space"}))
        .unwrap();
    let record = engine.get(&id).unwrap().expect("record exists");
    assert_eq!(record.version, 1);
    assert_eq!(record.data["name"], "My Space");
    assert!(!record.is_deleted);
    let ops = engine.queued_ops().unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].operation, Operation::Insert);
    assert_eq!(ops[0].entity_id, id);
    assert_eq!(ops[0].status, OpStatus::Pending);
    assert_eq!(
        uuid::Uuid::parse_str(&ops[0].op_id)
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
}

#[test]
fn update_and_delete_queue_ops_with_base_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), "acme");
    let id = engine
        .create("Space", "s1", json!({"name": "a", "color": "red"}))
        .unwrap();
    let updated = engine.update(&id, json!({"name": "b"})).unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(
        updated.data,
        json!({"name": "b", "color": "red"})
            .as_object()
            .unwrap()
            .clone()
    );
    engine.delete(&id).unwrap();
    assert!(engine.get(&id).unwrap().unwrap().is_deleted);
    assert!(engine
        .list("Space", Some("s1"), ListOptions::default())
        .unwrap()
        .is_empty());
    assert_eq!(
        engine
            .list(
                "Space",
                Some("s1"),
                ListOptions {
                    include_deleted: true
                }
            )
            .unwrap()
            .len(),
        1
    );
    let ops = engine.queued_ops().unwrap();
    let kinds: Vec<Operation> = ops.iter().map(|op| op.operation).collect();
    assert_eq!(
        kinds,
        [Operation::Insert, Operation::Update, Operation::Delete]
    );
    assert!(
        ops.iter().all(|op| op.base_version == 0),
        "never synced: every op is based on version 0"
    );
    assert!(ops
        .windows(2)
        .all(|pair| pair[0].updated_at < pair[1].updated_at));
    assert!(matches!(
        engine.update(&id, json!({"x": 1})),
        Err(WriteError::RecordDeleted(_))
    ));
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), "acme");
    let id = engine.create("Space", "s1", json!({"name": "a"})).unwrap();
    assert!(matches!(
        engine.create("Nope", "s1", json!({})),
        Err(WriteError::UnknownEntity(_))
    ));
    assert!(matches!(
        engine.create("Space", "s1", json!([1, 2])),
        Err(WriteError::DataNotObject)
    ));
    assert!(matches!(
        engine.create("Space", "../x", json!({})),
        Err(WriteError::InvalidSpaceId(_))
    ));
    assert!(matches!(
        engine.update("missing", json!({"a": 1})),
        Err(WriteError::UnknownRecord(_))
    ));
    assert!(matches!(
        engine.update(&id, json!("text")),
        Err(WriteError::DataNotObject)
    ));
    let batch = vec![json!({"ok": 1}), json!(7)];
    assert!(matches!(
        engine.create_many("Space", "s1", batch),
        Err(WriteError::DataNotObject)
    ));
    assert_eq!(engine.all_records().unwrap().len(), 1);
    assert_eq!(engine.queued_ops().unwrap().len(), 1);
    assert_eq!(engine.get(&id).unwrap().unwrap().version, 1);
}

#[test]
fn kill_after_local_commit_keeps_both_record_and_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), "acme");
    engine.set_crash_hook(Box::new(CrashAt(CrashPoint::AfterLocalCommit)));
    let error = engine
        .create("Space", "s1", json!({"name": "a"}))
        .unwrap_err();
    assert!(matches!(
        error,
        WriteError::Killed(CrashPoint::AfterLocalCommit)
    ));
    assert!(
        matches!(
            engine.create("Space", "s1", json!({})),
            Err(WriteError::Killed(_))
        ),
        "a killed engine refuses calls"
    );
    drop(engine);
    let engine = open(dir.path(), "acme");
    assert_eq!(engine.all_records().unwrap().len(), 1);
    assert_eq!(engine.queued_ops().unwrap().len(), 1);
    engine.check_invariants().unwrap();
}

#[test]
fn reopen_keeps_writes_and_resets_sending_ops() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), "acme");
    engine.set_auth_token("token-acme").unwrap();
    let ids = engine
        .create_many("Group", "s1", (0..5).map(|i| json!({"n": i})).collect())
        .unwrap();
    engine.sync_now().unwrap();
    let request = engine.poll_request().expect("a push request");
    assert_eq!(request.operation_name, "syncPushGroup");
    assert!(engine
        .queued_ops()
        .unwrap()
        .iter()
        .all(|op| op.status == OpStatus::Sending));
    drop(engine); // killed before the answer
    let engine = open(dir.path(), "acme");
    let ops = engine.queued_ops().unwrap();
    assert_eq!(ops.len(), 5);
    assert!(ops
        .iter()
        .all(|op| op.status == OpStatus::Pending && op.attempts == 1));
    assert_eq!(
        engine
            .list("Group", None, ListOptions::default())
            .unwrap()
            .len(),
        ids.len()
    );
    assert_eq!(engine.auth_token().unwrap().as_deref(), Some("token-acme"));
    engine.check_invariants().unwrap();
}

#[test]
fn tenants_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = open_engine_in(dir.path(), "tenant-a", ManualClock::new(EPOCH_MS), 10);
    let mut b = open_engine_in(dir.path(), "tenant-b", ManualClock::new(EPOCH_MS), 20);
    let a_id = a.create("Space", "s1", json!({"owner": "a"})).unwrap();
    let b_id = b.create("Space", "s1", json!({"owner": "b"})).unwrap();
    assert_ne!(a_id, b_id);
    assert!(a.get(&b_id).unwrap().is_none());
    assert!(b.get(&a_id).unwrap().is_none());
    assert_eq!(a.all_records().unwrap().len(), 1);
    assert_eq!(b.all_records().unwrap()[0].data["owner"], "b");
    assert!(dir.path().join("trackhub_db_tenant-a").exists());
    assert!(dir.path().join("trackhub_db_tenant-b").exists());
    let location = DbLocation::new(dir.path());
    let bad = TenantId::parse("../escape");
    assert!(bad.is_err());
    drop(a);
    drop(b);
    let b = open(dir.path(), "tenant-b");
    b.drop_database().unwrap();
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("tenant-b"))
        .collect();
    assert!(leftovers.is_empty(), "files left behind: {leftovers:?}");
    let a = open(dir.path(), "tenant-a");
    assert_eq!(a.get(&a_id).unwrap().unwrap().data["owner"], "a");
    drop(location);
}

#[test]
fn ids_stay_ordered_when_the_clock_jumps_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(EPOCH_MS);
    let mut engine = open_engine_in(dir.path(), "acme", clock.clone(), 3);
    let first = engine.create("Space", "s1", json!({})).unwrap();
    clock.set_ms(EPOCH_MS - 3_600_000);
    let second = engine.create("Space", "s1", json!({})).unwrap();
    assert!(second > first);
    drop(engine);
    // Across a restart too: the HLC resumes from its persisted high-water mark.
    let mut engine = open_engine_in(dir.path(), "acme", clock.clone(), 4);
    let third = engine.create("Space", "s1", json!({})).unwrap();
    assert!(third > second);
    let stamps: Vec<_> = engine
        .all_records()
        .unwrap()
        .iter()
        .map(|record| record.updated_at)
        .collect();
    assert!(stamps.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn create_many_writes_ten_thousand_rows_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), "acme");
    let items = (0..10_000)
        .map(|i| json!({"title": format!("item {i}"), "n": i}))
        .collect();
    let ids = engine.create_many("Identity", "s1", items).unwrap();
    assert_eq!(ids.len(), 10_000);
    assert_eq!(
        engine
            .list("Identity", None, ListOptions::default())
            .unwrap()
            .len(),
        10_000
    );
    assert_eq!(engine.status().unwrap().pending_ops, 10_000);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids are created in time order");
}

#[test]
fn open_rejects_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let options = EngineOptions::new(
        DbLocation::new(dir.path()),
        TenantId::parse("t").unwrap(),
        sync_engine::EntityRegistry::new(),
    );
    let result = Engine::open(
        options,
        Env::new(ManualClock::new(0), SeededEntropy::new(0)),
    );
    assert!(result.is_err());
    assert!(DbLocation::new(dir.path()).with_prefix("a/b").is_err());
    let _ = example_registry();
}

/// Kills at every boundary of one side of one kind of transaction.
struct KillAtBoundary(CrashPoint, CommitSite);
impl CrashHook for KillAtBoundary {
    fn should_crash(&mut self, _point: CrashPoint) -> bool {
        false
    }

    fn should_crash_at_commit(&mut self, point: CrashPoint, site: CommitSite) -> bool {
        (point, site) == (self.0, self.1)
    }
}

// Proves both sides of a commit are kill points: before it the write rolls back whole,
// after it the write is durable whole, and a dead engine commits nothing more.
#[test]
fn a_kill_before_a_commit_rolls_it_back_and_a_kill_after_it_keeps_it() {
    for (point, durable) in [
        (CrashPoint::BeforeCommit, false),
        (CrashPoint::AfterCommit, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = open(dir.path(), "acme");
        let id = engine
            .create("Space", "s1", json!({"name": "kept"}))
            .unwrap();
        engine.set_crash_hook(Box::new(KillAtBoundary(point, CommitSite::LocalWrite)));
        let error = engine.update(&id, json!({"name": "edited"})).unwrap_err();
        assert!(
            matches!(error, WriteError::Killed(killed) if killed == point),
            "{error:?}"
        );
        assert_eq!(engine.killed_at(), Some(point));
        assert!(matches!(
            engine.set_auth_token("token-acme"),
            Err(WriteError::Killed(_))
        ));
        drop(engine);
        let engine = open(dir.path(), "acme");
        let name = &engine.get(&id).unwrap().unwrap().data["name"];
        assert_eq!(name, if durable { "edited" } else { "kept" }, "{point:?}");
        let ops = engine.queued_ops().unwrap().len();
        assert_eq!(ops, if durable { 2 } else { 1 }, "{point:?}");
        assert_eq!(engine.auth_token().unwrap(), None);
        engine.check_invariants().unwrap();
    }
}

// Proves a one-statement write is a boundary too: killed before its commit, the token
// was never stored.
#[test]
fn a_one_statement_write_is_a_transaction_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), "acme");
    engine.set_crash_hook(Box::new(KillAtBoundary(
        CrashPoint::BeforeCommit,
        CommitSite::AuthToken,
    )));
    assert!(matches!(
        engine.set_auth_token("token-acme"),
        Err(WriteError::Killed(CrashPoint::BeforeCommit))
    ));
    drop(engine);
    assert_eq!(open(dir.path(), "acme").auth_token().unwrap(), None);
}
