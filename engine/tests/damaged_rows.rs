//! Regression (issue 19, "corrupted rows panic"): a row whose JSON did not parse, whose
//! status or operation was unknown, or whose parent row was missing ended in a panic
//! (`expect`) in the read paths, taking the app down with it. A damaged database is an
//! operating error: each read of a damaged row returns a typed error naming the row
//! (table and key), never a panic, and every other row stays readable.

mod damageable;

use damageable::{Damageable, SYNCED_SERVER_ID, TENANT};
use serde_json::json;
use sync_engine::testing::{example_registry, EPOCH_MS};
use sync_engine::wire::{ConflictPayload, ErrorCode, SyncPushResponse, SyncResultItem};
use sync_engine::{
    DamagedRow, DbLocation, Engine, EngineOptions, Env, ListOptions, ManualClock, OpenError,
    ReadError, Resolution, SeededEntropy, SyncError, TenantId, WriteError,
};

/// The damaged row an operation's error names, if it is that kind of error.
trait Damage: std::fmt::Display {
    fn damaged_row(&self) -> Option<&DamagedRow>;
}

macro_rules! damage {
    ($($error:ident),*) => {$(
        impl Damage for $error {
            fn damaged_row(&self) -> Option<&DamagedRow> {
                match self {
                    $error::Damaged(row) => Some(row),
                    _ => None,
                }
            }
        }
    )*};
}
damage!(ReadError, WriteError, SyncError, OpenError);

/// Asserts that `result` failed with the operation's `Damaged` error naming `row`
/// (`"{table} row {key}"`), and that its text names it too.
#[track_caller]
fn assert_names<T: std::fmt::Debug, E: Damage>(result: Result<T, E>, row: &str) {
    match result {
        Ok(value) => panic!("expected an error naming {row:?}, got {value:?}"),
        Err(error) => {
            let text = error.to_string();
            let damaged = error
                .damaged_row()
                .unwrap_or_else(|| panic!("expected a damaged row, got: {text}"));
            assert_eq!(format!("{} row {}", damaged.table(), damaged.key()), row);
            assert!(text.contains(row), "the error must name {row:?}: {text}");
        }
    }
}

/// Damages the `pending` record with `sql` and checks every read and write path that
/// reads it: each names the row; the other records, the queue and the conflicts stay
/// readable.
fn check_damaged_record(sql: impl Fn(&str) -> String) {
    let fixture = Damageable::new();
    fixture.edit(false, &sql(&fixture.pending)).unwrap();
    let mut engine = fixture.open();
    let row = format!("records row {}", fixture.pending);

    assert_names(engine.get(&fixture.pending), &row);
    let every = ListOptions {
        include_deleted: true,
    };
    assert_names(engine.list("Space", None, every), &row);
    assert_names(engine.all_records(), &row);
    assert_names(engine.update(&fixture.pending, json!({"name": "x"})), &row);
    assert_names(engine.delete(&fixture.pending), &row);

    let synced = engine
        .get(&fixture.synced)
        .unwrap()
        .expect("another record");
    assert_eq!(synced.data["name"], "synced");
    assert_eq!(
        engine.get(SYNCED_SERVER_ID).unwrap().unwrap().client_id,
        fixture.synced
    );
    assert_eq!(
        engine
            .list("Group", None, ListOptions::default())
            .unwrap()
            .len(),
        1
    );
    assert_eq!(engine.queued_ops().unwrap().len(), 3);
    assert_eq!(engine.list_conflicts().unwrap().len(), 1);
    assert_eq!(engine.status().unwrap().pending_ops, 3);
    engine
        .update(&fixture.other, json!({"name": "still writable"}))
        .expect("other records stay writable");
}

#[test]
fn a_record_whose_data_does_not_parse() {
    check_damaged_record(|id| {
        format!("UPDATE records SET data = '{{\"name\":' WHERE client_id = '{id}'")
    });
}

#[test]
fn a_record_whose_data_is_not_an_object() {
    check_damaged_record(|id| {
        format!("UPDATE records SET data = '\"text\"' WHERE client_id = '{id}'")
    });
}

#[test]
fn a_record_whose_version_is_text() {
    check_damaged_record(|id| {
        format!("UPDATE records SET version = 'two' WHERE client_id = '{id}'")
    });
}

#[test]
fn a_record_whose_deleted_flag_is_not_a_boolean() {
    check_damaged_record(|id| {
        format!("UPDATE records SET is_deleted = 7 WHERE client_id = '{id}'")
    });
}

/// Damages the `pending` record's queued op with `sql` and checks the queue's read paths.
fn check_damaged_op(sql: impl Fn(i64) -> String) -> Damageable {
    let fixture = Damageable::new();
    fixture.edit(false, &sql(fixture.pending_seq)).unwrap();
    let engine = fixture.open();
    let row = format!("operation_queue row {}", fixture.pending_seq);
    assert_names(engine.queued_ops(), &row);
    assert_eq!(engine.get(&fixture.pending).unwrap().unwrap().version, 1);
    assert_eq!(engine.all_records().unwrap().len(), 4);
    assert_eq!(engine.list_conflicts().unwrap().len(), 1);
    engine
        .status()
        .expect("the status counts rows without reading them");
    fixture
}

#[test]
fn a_queued_op_with_an_unknown_status() {
    check_damaged_op(|seq| format!("UPDATE operation_queue SET status = 'bogus' WHERE id = {seq}"));
}

#[test]
fn a_queued_op_with_an_unknown_operation() {
    let fixture = check_damaged_op(|seq| {
        format!("UPDATE operation_queue SET operation = 'upsert' WHERE id = {seq}")
    });
    let mut engine = fixture.open();
    assert_names(
        engine.sync_now(),
        &format!("operation_queue row {}", fixture.pending_seq),
    );
}

#[test]
fn a_queued_op_whose_payload_does_not_parse() {
    let fixture = check_damaged_op(|seq| {
        format!("UPDATE operation_queue SET payload = '{{' WHERE id = {seq}")
    });
    let mut engine = fixture.open();
    assert_names(
        engine.sync_now(),
        &format!("operation_queue row {}", fixture.pending_seq),
    );
}

#[test]
fn a_conflict_whose_data_does_not_parse() {
    let fixture = Damageable::new();
    fixture
        .edit(
            false,
            &format!(
                "UPDATE conflicts SET local_data = 'x' WHERE id = {}",
                fixture.conflict_id
            ),
        )
        .unwrap();
    let mut engine = fixture.open();
    let row = format!("conflicts row {}", fixture.conflict_id);
    assert_names(engine.list_conflicts(), &row);
    assert_names(engine.conflict(fixture.conflict_id), &row);
    assert_names(
        engine.resolve_conflict(fixture.conflict_id, Resolution::KeepLocal),
        &row,
    );
    assert_eq!(
        engine.get(&fixture.conflicted).unwrap().unwrap().data["name"],
        "local"
    );
    assert_eq!(engine.queued_ops().unwrap().len(), 3);
    assert_eq!(engine.status().unwrap().open_conflicts, 1);
}

#[test]
fn a_conflict_whose_record_is_missing() {
    for resolution in [Resolution::KeepLocal, Resolution::UseServer] {
        let fixture = Damageable::new();
        fixture
            .edit(
                false,
                &format!(
                    "DELETE FROM records WHERE client_id = '{}'",
                    fixture.conflicted
                ),
            )
            .unwrap();
        let mut engine = fixture.open();
        assert_names(
            engine.resolve_conflict(fixture.conflict_id, resolution),
            &format!("conflicts row {}", fixture.conflict_id),
        );
        assert_eq!(engine.all_records().unwrap().len(), 3);
    }
}

#[test]
fn a_server_id_goes_with_its_record() {
    // The server id is a column of the record's row (schema 6): no mapping can outlive
    // its record, so a record deleted behind the engine's back takes its server id along.
    let fixture = Damageable::new();
    fixture
        .edit(
            false,
            &format!("DELETE FROM records WHERE client_id = '{}'", fixture.synced),
        )
        .unwrap();
    let mut engine = fixture.open();
    assert!(engine.get(SYNCED_SERVER_ID).unwrap().is_none());
    assert!(engine
        .update(SYNCED_SERVER_ID, json!({"name": "x"}))
        .is_err());
    assert_eq!(engine.get(&fixture.pending).unwrap().unwrap().version, 1);
}

#[test]
fn a_push_answer_for_an_op_whose_record_vanished() {
    let fixture = Damageable::new();
    let mut engine = fixture.open();
    engine.set_auth_token("token-acme").unwrap();
    engine.sync_now().unwrap();
    let request = engine
        .poll_request()
        .expect("the push of the pending Space");
    assert_eq!(request.operation_name, "syncPushSpace");
    let op = engine
        .queued_ops()
        .unwrap()
        .into_iter()
        .find(|op| op.seq == fixture.pending_seq)
        .unwrap();
    fixture
        .edit(
            false,
            &format!(
                "DELETE FROM records WHERE client_id = '{}'",
                fixture.pending
            ),
        )
        .unwrap();
    let answer = SyncPushResponse {
        results: vec![SyncResultItem {
            op_id: op.op_id.clone(),
            client_id: Some(fixture.pending.clone()),
            id: Some("srv-pending".to_owned()),
            success: false,
            error_code: Some(ErrorCode::Conflict),
            error_message: Some("equal stamps".to_owned()),
            version: None,
            updated_at: None,
            conflict: Some(ConflictPayload {
                server_data: json!({"name": "server"}),
                server_version: 2,
                server_updated_at: op.updated_at,
                server_is_deleted: false,
            }),
        }],
        cursor_before: None,
        cursor_after: None,
    };
    let response = json!({"data": {"syncPushSpace": answer}});
    assert_names(
        engine.handle_response(request.request_id, Ok(response)),
        &format!("operation_queue row {}", fixture.pending_seq),
    );
    assert_eq!(engine.get(&fixture.synced).unwrap().unwrap().version, 1);
}

#[test]
fn opening_a_database_whose_clock_high_water_mark_is_damaged() {
    let fixture = Damageable::new();
    fixture
        .edit(false, "UPDATE meta SET value = 'late' WHERE key = 'hlc'")
        .unwrap();
    let options = EngineOptions::new(
        DbLocation::new(fixture.dir.path()),
        TenantId::parse(TENANT).unwrap(),
        example_registry(),
    );
    let env = Env::new(ManualClock::new(EPOCH_MS), SeededEntropy::new(1));
    assert_names(Engine::open(options, env), "meta row hlc");
}

#[test]
fn wiping_the_space_removes_its_damaged_rows_without_reading_them() {
    // Proves the recovery path ARCHITECTURE.md names: a wipe deletes by SQL, so damaged
    // rows do not stop it, and afterwards the database is consistent again.
    let fixture = Damageable::new();
    fixture
        .edit(
            false,
            &format!(
                "UPDATE records SET data = 'x' WHERE client_id = '{}';
                 UPDATE operation_queue SET status = 'bogus' WHERE id = {};
                 UPDATE conflicts SET server_data = '[' WHERE id = {}",
                fixture.pending, fixture.pending_seq, fixture.conflict_id
            ),
        )
        .unwrap();
    let mut engine = fixture.open();
    assert!(engine.check_invariants().is_err());
    engine.wipe_space("s1").expect("a wipe reads no row");
    engine.check_invariants().expect("nothing damaged is left");
    let left = engine.all_records().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].client_id, fixture.other);
}

#[test]
fn a_sync_that_would_push_an_op_whose_record_is_missing() {
    // Proves the push names the orphan op before sending it, instead of mapping the
    // server's answer to a record that does not exist.
    let fixture = Damageable::new();
    fixture
        .edit(
            false,
            &format!(
                "DELETE FROM records WHERE client_id = '{}'",
                fixture.pending
            ),
        )
        .unwrap();
    let mut engine = fixture.open();
    engine.set_auth_token("token-acme").unwrap();
    assert_names(
        engine.sync_now(),
        &format!("operation_queue row {}", fixture.pending_seq),
    );
    assert!(engine.poll_request().is_none(), "nothing was sent");
}
