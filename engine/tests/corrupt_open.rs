//! Issue 14, "a corrupt database file at open": a tenant database SQLite finds damaged
//! (its header overwritten, a page in the middle overwritten) is refused by `open` with a
//! typed `OpenError::Corrupt`, and the file is left byte for byte as it was. The explicit
//! way out, `recover_corrupt_database`, keeps the damaged files aside, carries the
//! readable unsent ops and their records into a new database, reports what it lost, and
//! leaves the rest to the next sync: the kept ops are pushed, and the synced records come
//! back by pulling from empty cursors.

use rusqlite::Connection;
use serde_json::{json, Value};
use sync_engine::testing::{example_registry, EPOCH_MS};
use sync_engine::wire::data_response;
use sync_engine::{
    drop_tenant_database, recover_corrupt_database, DbLocation, Engine, EngineOptions, Env,
    ManualClock, OpStatus, OpenError, RecoveryReport, SeededEntropy, SyncEvent, TenantId,
};
use tempfile::TempDir;

const PAGE_SIZE: usize = 4096;

/// One device's database and the server rows its pushes stored.
struct Device {
    dir: TempDir,
    clock: ManualClock,
    server: Vec<Value>,
}

impl Device {
    fn new() -> Device {
        Device {
            dir: tempfile::tempdir().expect("temporary directory"),
            clock: ManualClock::new(EPOCH_MS),
            server: Vec::new(),
        }
    }

    fn location(&self) -> DbLocation {
        DbLocation::new(self.dir.path())
    }

    fn tenant() -> TenantId {
        TenantId::parse("acme").expect("a valid tenant id")
    }

    fn db_path(&self) -> std::path::PathBuf {
        self.location().db_path(&Device::tenant())
    }

    fn open(&self) -> Result<Engine, OpenError> {
        let options = EngineOptions::new(self.location(), Device::tenant(), example_registry());
        Engine::open(options, Env::new(self.clock.clone(), SeededEntropy::new(7)))
    }

    /// `count` `Space` records of about 600 bytes each: many pages of them.
    fn create(&self, engine: &mut Engine, count: usize, name: &str) -> Vec<String> {
        let note = "n".repeat(600);
        (0..count)
            .map(|index| {
                self.clock.advance_ms(1);
                engine
                    .create(
                        "Space",
                        "s1",
                        json!({"name": format!("{name} {index}"), "note": note}),
                    )
                    .expect("create")
            })
            .collect()
    }

    /// Runs one sync: pushes are accepted (the server keeps the rows), every pull is
    /// answered with the server's rows of its entity on one last page.
    fn sync(&mut self, engine: &mut Engine) -> Vec<String> {
        let mut pushed = Vec::new();
        engine.sync_now().expect("sync now");
        while let Some(request) = engine.poll_request() {
            let operation = request.operation_name.clone();
            let answer = if operation.starts_with("syncPush") {
                let mut results = Vec::new();
                for item in request.variables.to_json()["payload"]
                    .as_array()
                    .expect("a payload")
                {
                    let client_id = item["clientId"].as_str().expect("a client id");
                    pushed.push(item["opId"].as_str().expect("an op id").to_owned());
                    results.push(json!({"opId": item["opId"], "clientId": client_id,
                        "id": format!("srv-{client_id}"), "success": true, "version": 1,
                        "updatedAt": item["updatedAt"]}));
                    self.server.retain(|row| row["clientId"] != client_id);
                    self.server.push(json!({"id": format!("srv-{client_id}"),
                        "clientId": client_id, "spaceId": item["spaceId"], "version": 1,
                        "updatedAt": item["updatedAt"], "data": item["data"]}));
                }
                json!({ "results": results })
            } else {
                let entity = operation.trim_start_matches("syncPull");
                let items: Vec<Value> = if entity == "Space" {
                    self.server.clone()
                } else {
                    Vec::new()
                };
                json!({"items": items, "deletedIds": [], "lastSyncAt": "c1", "hasMore": false})
            };
            engine
                .handle_response(request.request_id, Ok(data_response(&operation, answer)))
                .expect("the answer is stored");
        }
        let events: Vec<SyncEvent> = std::iter::from_fn(|| engine.poll_event()).collect();
        assert!(events.contains(&SyncEvent::SyncCompleted), "{events:?}");
        pushed
    }

    /// A database holding `synced` records the server has and `pending` ones it has not,
    /// closed cleanly (no WAL left). Returns the op ids of the pending ones.
    fn build(&mut self, synced: usize, pending: usize) -> Vec<String> {
        let mut engine = self.open().expect("open");
        engine.set_auth_token("token-acme").expect("token");
        self.create(&mut engine, synced, "synced");
        self.sync(&mut engine);
        assert_eq!(engine.status().expect("status").pending_ops, 0);
        self.create(&mut engine, pending, "pending");
        let ops: Vec<String> = engine
            .queued_ops()
            .expect("queue")
            .into_iter()
            .map(|op| op.op_id)
            .collect();
        assert_eq!(ops.len(), pending);
        drop(engine);
        assert!(!self.location().db_files(&Device::tenant())[0].exists());
        ops
    }

    /// The pages of table or index `name`, from SQLite's own page map.
    fn pages_of(&self, name: &str, page_type: &str) -> Vec<usize> {
        let conn = Connection::open(self.db_path()).expect("a connection of its own");
        let mut statement = conn
            .prepare("SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype = ?2 ORDER BY pageno")
            .expect("dbstat");
        let pages = statement
            .query_map([name, page_type], |row| row.get::<_, i64>(0))
            .expect("pages")
            .map(|page| page.expect("a page number") as usize)
            .collect();
        pages
    }

    /// Overwrites `bytes` of the file at `offset`, as a storage fault would.
    fn damage(&self, offset: usize, bytes: &[u8]) {
        let mut file = std::fs::read(self.db_path()).expect("read the file");
        file[offset..offset + bytes.len()].copy_from_slice(bytes);
        std::fs::write(self.db_path(), file).expect("write the file");
    }

    /// Opening fails with `Corrupt`, and the database file is exactly as it was.
    fn check_refused(&self) {
        let before = std::fs::read(self.db_path()).expect("read the file");
        match self.open() {
            Err(OpenError::Corrupt { path, detail }) => {
                assert_eq!(path, self.db_path());
                assert!(!detail.is_empty());
            }
            other => panic!("expected a corrupt database, got {other:?}"),
        }
        let after = std::fs::read(self.db_path()).expect("read the file");
        assert!(before == after, "a refused open changed the file");
    }

    fn recover(&self) -> RecoveryReport {
        recover_corrupt_database(&self.location(), &Device::tenant()).expect("recovery")
    }
}

// Proves a database whose header is overwritten is refused untouched, and that its
// recovery keeps nothing readable but starts a database that pulls everything back.
#[test]
fn a_damaged_header_is_refused_then_everything_synced_is_pulled_back() {
    let mut device = Device::new();
    let pending = device.build(20, 2);
    device.damage(0, b"not a database!!");
    device.check_refused();

    let report = device.recover();
    assert!(report.salvaged_op_ids.is_empty());
    assert!(report.lost_ops >= 1);
    // The header took the database's high-water mark; the mark the last push's barrier
    // left beside the database kept it.
    assert!(report.clock_kept);
    assert!(report.aside_path.exists());
    assert_eq!(
        std::fs::read(&report.aside_path).expect("the damaged file is kept")[..16],
        *b"not a database!!"
    );
    let mut engine = device.open().expect("the recovered database opens");
    engine.check_invariants().expect("consistent");
    assert!(engine.all_records().expect("records").is_empty());
    assert_eq!(engine.cursor("Space").expect("cursor"), None);
    // The auth token could not be read: the app sets it again, as after a login.
    assert_eq!(engine.auth_token().expect("token"), None);
    engine.set_auth_token("token-acme").expect("token");
    let pushed = device.sync(&mut engine);
    assert!(pushed.iter().all(|op_id| !pending.contains(op_id)));
    assert_eq!(engine.all_records().expect("records").len(), 20);
    engine.check_invariants().expect("consistent");
}

// Regression: a damaged header took the clock's high-water mark, and the recovered
// database resumed its clock from the wall clock: with the clock set back, a new write
// carried a stamp below ones the server already held from this device. The durability
// barrier now also raises a mark beside the database, which the recovery and every open
// take in.
#[test]
fn a_damaged_header_keeps_the_clock_above_every_stamp_that_left() {
    let mut device = Device::new();
    device.build(20, 0);
    let sent_max = device
        .server
        .iter()
        .map(|row| row["updatedAt"].as_u64().expect("a stamp"))
        .max()
        .expect("rows were pushed");
    device.damage(0, b"not a database!!");
    device.check_refused();
    let report = device.recover();
    // The device's clock went back a minute while it was down.
    device.clock.set_ms(EPOCH_MS - 60_000);
    let mut engine = device.open().expect("the recovered database opens");
    let id = device.create(&mut engine, 1, "after the damage").remove(0);
    let stamp = engine.get(&id).expect("read").expect("kept").updated_at;
    assert!(
        stamp.0 > sent_max,
        "a stamp at or below one that left: {} <= {sent_max}",
        stamp.0
    );
    assert!(report.clock_kept);
}

// Proves a page of records overwritten in the middle of the file is refused untouched,
// and that the recovery keeps every unsent op with its record (the next sync pushes
// them), reports nothing lost, and pulls the synced records back from empty cursors.
#[test]
fn a_damaged_record_page_keeps_the_unsent_ops_and_pulls_the_rest() {
    let mut device = Device::new();
    let pending = device.build(60, 3);
    let leaves = device.pages_of("records", "leaf");
    assert!(leaves.len() >= 4, "{leaves:?}");
    // Records are keyed by UUID v7, in creation order: the first leaf holds synced ones.
    let page = leaves[0];
    device.damage((page - 1) * PAGE_SIZE, &[0xA5; PAGE_SIZE]);
    device.check_refused();

    let report = device.recover();
    assert_eq!(report.salvaged_op_ids, pending);
    assert_eq!(report.salvaged_records, 3);
    assert_eq!(report.lost_ops, 0);
    assert!(report.clock_kept);
    let mut engine = device.open().expect("the recovered database opens");
    engine.check_invariants().expect("consistent");
    let ops = engine.queued_ops().expect("queue");
    assert!(ops.iter().all(|op| op.status == OpStatus::Pending));
    assert_eq!(engine.all_records().expect("records").len(), 3);
    assert_eq!(engine.cursor("Space").expect("cursor"), None);
    assert_eq!(
        engine.auth_token().expect("token").as_deref(),
        Some("token-acme")
    );

    let pushed = device.sync(&mut engine);
    assert_eq!(pushed, pending, "the kept ops are pushed, in queue order");
    assert_eq!(engine.all_records().expect("records").len(), 63);
    assert_eq!(engine.status().expect("status").pending_ops, 0);
    assert_eq!(
        engine.cursor("Space").expect("cursor").as_deref(),
        Some("c1")
    );
    engine.check_invariants().expect("consistent");
}

// Proves an op of the push run on the wire when the app stopped keeps its attempt
// through a recovery (a later force must send it under a new opId: the server may have
// seen the old one), and an op queued after the run was sent does not gain one.
#[test]
fn a_recovery_counts_the_attempt_of_the_run_that_was_on_the_wire() {
    let mut device = Device::new();
    let in_run = device.build(60, 3);
    let mut engine = device.open().expect("open");
    engine.sync_now().expect("sync now");
    let request = engine.poll_request().expect("a push request");
    assert_eq!(request.operation_name, "syncPushSpace");
    let later = device.create(&mut engine, 1, "later");
    drop(engine); // the app stops with the run on the wire
    let leaves = device.pages_of("records", "leaf");
    device.damage((leaves[0] - 1) * PAGE_SIZE, &[0xA5; PAGE_SIZE]);
    device.check_refused();

    let report = device.recover();
    assert_eq!(report.lost_ops, 0);
    let engine = device.open().expect("the recovered database opens");
    let attempts: Vec<(String, OpStatus, i64)> = engine
        .queued_ops()
        .expect("queue")
        .into_iter()
        .map(|op| (op.op_id, op.status, op.attempts))
        .collect();
    let mut expected: Vec<(String, OpStatus, i64)> = in_run
        .into_iter()
        .map(|op_id| (op_id, OpStatus::Pending, 1))
        .collect();
    let later_op = engine.queued_ops().expect("queue").pop().expect("an op");
    assert_eq!(later_op.entity_id, later[0]);
    expected.push((later_op.op_id, OpStatus::Pending, 0));
    assert_eq!(attempts, expected);
    engine.check_invariants().expect("consistent");
}

// Proves the queue is read row by row: a page of it overwritten loses the ops on that
// page only (counted), and the ops before and after it are kept and pushed.
#[test]
fn a_damaged_queue_page_loses_only_the_ops_on_it() {
    let mut device = Device::new();
    let pending = device.build(5, 40);
    let leaves = device.pages_of("operation_queue", "leaf");
    assert!(leaves.len() >= 3, "{leaves:?}");
    let page = leaves[leaves.len() / 2];
    device.damage((page - 1) * PAGE_SIZE, &[0x5A; PAGE_SIZE]);
    device.check_refused();

    let report = device.recover();
    let kept = report.salvaged_op_ids.len();
    assert!(kept > 0 && kept < pending.len(), "kept {kept}");
    assert!(report.lost_ops as usize >= pending.len() - kept);
    assert!(report
        .salvaged_op_ids
        .iter()
        .all(|op_id| pending.contains(op_id)));
    let first_lost = pending
        .iter()
        .position(|op_id| !report.salvaged_op_ids.contains(op_id))
        .expect("one op is lost");
    assert_eq!(report.salvaged_op_ids[..first_lost], pending[..first_lost]);
    assert_eq!(report.salvaged_op_ids.last(), pending.last());
    let mut engine = device.open().expect("the recovered database opens");
    engine.check_invariants().expect("consistent");
    let pushed = device.sync(&mut engine);
    assert_eq!(pushed, report.salvaged_op_ids);
    assert_eq!(engine.all_records().expect("records").len(), 5 + kept);
}

// Proves the recovery refuses what it must not touch, with typed errors, and that the
// damaged files it keeps aside go with the tenant's drop (a logout).
#[test]
fn recovery_refuses_sound_and_missing_databases_and_the_drop_removes_what_it_kept() {
    let mut device = Device::new();
    let location = device.location();
    let tenant = Device::tenant();
    assert!(matches!(
        recover_corrupt_database(&location, &tenant),
        Err(OpenError::NothingToRecover(_))
    ));
    device.build(3, 1);
    let before = std::fs::read(device.db_path()).expect("read the file");
    assert!(matches!(
        recover_corrupt_database(&location, &tenant),
        Err(OpenError::NotCorrupt(_))
    ));
    assert!(before == std::fs::read(device.db_path()).expect("read the file"));
    assert!(!location.corrupt_aside_path(&tenant).exists());

    device.damage(0, &[0; 16]);
    let report = device.recover();
    assert_eq!(report.aside_path, location.corrupt_aside_path(&tenant));
    assert_ne!(report.aside_path, device.db_path());
    drop_tenant_database(&location, &tenant).expect("drop");
    for path in location
        .db_files(&tenant)
        .iter()
        .chain(&location.corrupt_aside_files(&tenant))
    {
        assert!(!path.exists(), "{} stayed", path.display());
    }
}
