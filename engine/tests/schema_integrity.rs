//! Regression (issue 19, "the schema keeps integrity only by code"): the schema declared
//! no foreign key and no CHECK, so a database edited behind the engine's back (another
//! program, a storage fault, a bug) could hold queue rows, id mappings and conflicts of
//! missing records, records whose entity disagreed with their queued ops, and unknown
//! statuses or operations; and `check_invariants` missed most of them (or panicked on
//! them). Now the schema refuses what it can express, and `check_invariants` names every
//! row that breaks the data model, even when the damage bypassed the constraints.

mod damageable;

use damageable::Damageable;

/// What one kind of damage does.
enum Schema {
    /// A connection that enforces the schema cannot write it.
    Refuses,
    /// The schema does not express it (it depends on the app's registry, on parsing a
    /// value, or is left to the code for speed, see `store/schema.rs`): only
    /// `check_invariants` sees it.
    Accepts,
}

/// Each test below names one kind of damage and proves, through this function, what the
/// schema and `check_invariants` do with it.
///
/// Writes `sql` as storage damage (nothing enforced), then asserts that
/// `check_invariants` reports it naming every one of `rows`; and that on an undamaged
/// copy a connection enforcing the schema refuses or accepts it as `schema` says.
fn check(
    sql: impl Fn(&Damageable) -> String,
    schema: Schema,
    rows: impl Fn(&Damageable) -> Vec<String>,
) {
    let damaged = Damageable::new();
    damaged
        .edit(false, &sql(&damaged))
        .expect("storage damage writes anything");
    let report = damaged
        .open()
        .check_invariants()
        .expect_err("check_invariants must see the damage");
    for row in rows(&damaged) {
        assert!(
            report.contains(&row),
            "the report must name {row:?}:\n{report}"
        );
    }

    let intact = Damageable::new();
    let edited = intact.edit(true, &sql(&intact));
    match schema {
        Schema::Refuses => assert!(edited.is_err(), "the schema must refuse it"),
        Schema::Accepts => edited.expect("the schema cannot express this rule"),
    }
}

#[test]
fn a_queue_row_whose_record_is_missing() {
    check(
        |f| format!("DELETE FROM records WHERE client_id = '{}'", f.pending),
        Schema::Refuses,
        |f| {
            vec![
                format!("operation_queue row {}", f.pending_seq),
                f.pending.clone(),
            ]
        },
    );
}

#[test]
fn a_record_whose_entity_disagrees_with_its_queued_op() {
    check(
        |f| {
            format!(
                "UPDATE records SET entity = 'Group' WHERE client_id = '{}'",
                f.pending
            )
        },
        Schema::Accepts,
        |f| {
            vec![
                format!("operation_queue row {}", f.pending_seq),
                f.pending.clone(),
            ]
        },
    );
}

#[test]
fn a_conflict_whose_record_is_missing() {
    check(
        |f| {
            format!(
                "DELETE FROM operation_queue WHERE entity_id = '{0}';
                 DELETE FROM records WHERE client_id = '{0}'",
                f.conflicted
            )
        },
        Schema::Refuses,
        |f| {
            vec![
                format!("conflicts row {}", f.conflict_id),
                "missing".to_owned(),
            ]
        },
    );
}

#[test]
fn a_conflict_whose_entity_disagrees_with_its_record() {
    check(
        |f| {
            format!(
                "UPDATE conflicts SET entity = 'Space' WHERE id = {}",
                f.conflict_id
            )
        },
        Schema::Accepts,
        |f| vec![format!("conflicts row {}", f.conflict_id)],
    );
}

#[test]
fn queue_rows_and_records_of_an_unregistered_entity() {
    check(
        |f| {
            format!(
                "UPDATE operation_queue SET entity = 'Ghost' WHERE id = {};
                 UPDATE records SET entity = 'Ghost' WHERE client_id = '{}'",
                f.other_seq, f.other
            )
        },
        Schema::Accepts,
        |f| {
            vec![
                format!("operation_queue row {}", f.other_seq),
                format!("records row {}", f.other),
                "Ghost".to_owned(),
            ]
        },
    );
}

#[test]
fn a_cursor_of_an_unregistered_entity() {
    check(
        |_| {
            "INSERT INTO sync_state (entity, last_sync_at, updated_at) VALUES ('Ghost', 'c', 0)"
                .to_owned()
        },
        Schema::Accepts,
        |_| vec!["sync_state row Ghost".to_owned()],
    );
}

#[test]
fn a_queue_row_with_an_unknown_status() {
    check(
        |f| {
            format!(
                "UPDATE operation_queue SET status = 'bogus' WHERE id = {}",
                f.pending_seq
            )
        },
        Schema::Refuses,
        |f| {
            vec![
                format!("operation_queue row {}", f.pending_seq),
                "bogus".to_owned(),
            ]
        },
    );
}

#[test]
fn a_queue_row_with_an_unknown_operation() {
    check(
        |f| {
            format!(
                "UPDATE operation_queue SET operation = 'upsert' WHERE id = {}",
                f.pending_seq
            )
        },
        Schema::Refuses,
        |f| {
            vec![
                format!("operation_queue row {}", f.pending_seq),
                "upsert".to_owned(),
            ]
        },
    );
}

#[test]
fn a_queue_row_whose_payload_does_not_parse() {
    check(
        |f| {
            format!(
                "UPDATE operation_queue SET payload = '{{\"name\": ' WHERE id = {}",
                f.pending_seq
            )
        },
        Schema::Accepts,
        |f| {
            vec![
                format!("operation_queue row {}", f.pending_seq),
                "payload".to_owned(),
            ]
        },
    );
}

#[test]
fn a_record_whose_data_does_not_parse() {
    check(
        |f| {
            format!(
                "UPDATE records SET data = 'not json' WHERE client_id = '{}'",
                f.pending
            )
        },
        Schema::Accepts,
        |f| vec![format!("records row {}", f.pending), "data".to_owned()],
    );
}

#[test]
fn a_record_whose_data_is_not_an_object() {
    check(
        |f| {
            format!(
                "UPDATE records SET data = '[1, 2]' WHERE client_id = '{}'",
                f.pending
            )
        },
        Schema::Accepts,
        |f| vec![format!("records row {}", f.pending), "data".to_owned()],
    );
}

#[test]
fn a_record_whose_merge_base_does_not_parse() {
    check(
        |f| {
            format!(
                "UPDATE records SET base_data = '{{' WHERE client_id = '{}'",
                f.synced
            )
        },
        Schema::Accepts,
        |f| vec![format!("records row {}", f.synced), "base_data".to_owned()],
    );
}

#[test]
fn a_record_whose_version_is_text() {
    check(
        |f| {
            format!(
                "UPDATE records SET version = 'two' WHERE client_id = '{}'",
                f.synced
            )
        },
        Schema::Accepts,
        |f| vec![format!("records row {}", f.synced), "version".to_owned()],
    );
}

#[test]
fn a_record_whose_deleted_flag_is_not_a_boolean() {
    check(
        |f| {
            format!(
                "UPDATE records SET is_deleted = 2 WHERE client_id = '{}'",
                f.synced
            )
        },
        Schema::Refuses,
        |f| vec![format!("records row {}", f.synced), "is_deleted".to_owned()],
    );
}

#[test]
fn a_record_whose_space_id_is_not_a_space_id() {
    check(
        |f| {
            format!(
                "UPDATE records SET space_id = '../s1' WHERE client_id = '{}'",
                f.synced
            )
        },
        Schema::Accepts,
        |f| vec![format!("records row {}", f.synced), "space_id".to_owned()],
    );
}

#[test]
fn a_record_whose_space_id_is_empty() {
    check(
        |f| {
            format!(
                "UPDATE records SET space_id = '' WHERE client_id = '{}'",
                f.synced
            )
        },
        Schema::Refuses,
        |f| vec![format!("records row {}", f.synced), "space_id".to_owned()],
    );
}

#[test]
fn a_record_whose_entity_is_not_an_entity_name() {
    check(
        |f| {
            format!(
                "UPDATE records SET entity = 'no such-name' WHERE client_id = '{}'",
                f.synced
            )
        },
        Schema::Accepts,
        |f| vec![format!("records row {}", f.synced), "entity".to_owned()],
    );
}

#[test]
fn a_conflict_whose_data_does_not_parse() {
    check(
        |f| {
            format!(
                "UPDATE conflicts SET server_data = 'x' WHERE id = {}",
                f.conflict_id
            )
        },
        Schema::Accepts,
        |f| {
            vec![
                format!("conflicts row {}", f.conflict_id),
                "server_data".to_owned(),
            ]
        },
    );
}

#[test]
fn every_damaged_row_is_reported_not_only_the_first() {
    check(
        |f| {
            format!(
                "UPDATE records SET data = 'x' WHERE client_id IN ('{}', '{}');
                 DELETE FROM records WHERE client_id = '{}'",
                f.synced, f.other, f.pending
            )
        },
        Schema::Refuses,
        |f| {
            vec![
                format!("records row {}", f.synced),
                format!("records row {}", f.other),
                format!("operation_queue row {}", f.pending_seq),
            ]
        },
    );
}

#[test]
fn wiping_a_space_takes_the_ops_of_a_record_moved_into_it() {
    // Regression: a wipe deleted the queued ops *of the space* and the records *in the
    // space*. A record a server had moved into the space (older engines accepted such
    // moves) kept its op, queued under its old space, which outlived its record: with the
    // foreign keys the wipe's transaction failed; without them it left an orphan op.
    let fixture = Damageable::new();
    fixture
        .edit(
            true,
            &format!(
                "UPDATE records SET space_id = 's1' WHERE client_id = '{}'",
                fixture.other
            ),
        )
        .expect("a moved record is consistent");
    let mut engine = fixture.open();
    engine.check_invariants().unwrap();
    engine.wipe_space("s1").expect("the wipe commits");
    engine
        .check_invariants()
        .expect("no op outlives its record");
    assert!(engine.all_records().unwrap().is_empty());
    assert!(engine.queued_ops().unwrap().is_empty());
}
