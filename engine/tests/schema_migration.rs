//! Schema version 3 (issue 19) declares the data model's foreign keys and CHECK
//! constraints. SQLite cannot add constraints to a table, so the migration rebuilds the
//! tables; these tests guard against a rebuild that loses or reorders rows, reuses a
//! queue position or conflict id, leaves the old schema in place, or refuses to open a
//! database that an older engine damaged.

use serde_json::json;
use sync_engine::testing::{open_engine_in, EPOCH_MS};
use sync_engine::wire::Operation;
use sync_engine::{DbLocation, Engine, ListOptions, ManualClock, OpStatus, TenantId};

/// The schema as schema version 1 created it, copied here so that a change to the
/// engine's own copy cannot make this test pass.
const SCHEMA_V1: &str = r#"
CREATE TABLE records (
    client_id    TEXT PRIMARY KEY NOT NULL,
    entity       TEXT NOT NULL,
    space_id     TEXT NOT NULL,
    version      INTEGER NOT NULL,
    base_version INTEGER NOT NULL,
    base_data    TEXT,
    updated_at   INTEGER NOT NULL,
    is_deleted   INTEGER NOT NULL,
    data         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX records_by_entity_space ON records (entity, space_id, client_id);
CREATE INDEX records_by_space ON records (space_id);

CREATE TABLE id_map (
    client_id TEXT PRIMARY KEY NOT NULL,
    server_id TEXT NOT NULL UNIQUE,
    entity    TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE operation_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id        TEXT NOT NULL UNIQUE,
    entity       TEXT NOT NULL,
    operation    TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    space_id     TEXT NOT NULL,
    payload      TEXT NOT NULL,
    base_version INTEGER NOT NULL,
    hlc          INTEGER NOT NULL,
    force        INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX queue_by_status ON operation_queue (status, id);
CREATE INDEX queue_by_record ON operation_queue (entity_id, id);
CREATE INDEX queue_by_space ON operation_queue (space_id);

CREATE TABLE sync_state (
    entity              TEXT PRIMARY KEY NOT NULL,
    last_sync_at        TEXT,
    server_version_hash TEXT,
    updated_at          INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE conflicts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id         TEXT NOT NULL UNIQUE,
    entity            TEXT NOT NULL,
    space_id          TEXT NOT NULL,
    local_version     INTEGER NOT NULL,
    local_updated_at  INTEGER NOT NULL,
    local_data        TEXT NOT NULL,
    server_version    INTEGER NOT NULL,
    server_updated_at INTEGER NOT NULL,
    server_data       TEXT NOT NULL,
    server_is_deleted INTEGER NOT NULL
);

CREATE TABLE auth_tokens (
    name  TEXT PRIMARY KEY NOT NULL,
    token TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Rows as an engine of schema version 1 writes them: a record with local edits on top of
/// a synced version (explicit merge base, a pending update behind an open conflict), a
/// synced record (implicit merge base), a never-synced record with a failed insert, a
/// tombstone; queue positions and conflict ids that were used and freed before.
const ROWS_V1: &str = r#"
INSERT INTO records VALUES
    ('c-edited', 'Space', 's1', 3, 2, '{"name":"base"}', 7000, 0, '{"name":"edited"}'),
    ('c-synced', 'Space', 's1', 4, 4, NULL, 6000, 0, '{"name":"synced"}'),
    ('c-failed', 'Group', 's2', 1, 0, NULL, 6500, 0, '{"name":"refused"}'),
    ('c-gone', 'Identity', 's1', 2, 2, NULL, 5000, 1, '{"name":"gone"}');
INSERT INTO id_map VALUES
    ('c-edited', 's-edited', 'Space'),
    ('c-synced', 's-synced', 'Space'),
    ('c-gone', 's-gone', 'Identity');
INSERT INTO operation_queue (id, op_id, entity, operation, entity_id, space_id, payload,
    base_version, hlc, force, status, attempts, last_error, created_at, updated_at) VALUES
    (12, 'op-failed', 'Group', 'insert', 'c-failed', 's2', '{"name":"refused"}', 0, 6500, 0,
        'failed', 1, 'VALIDATION', 100, 110),
    (17, 'op-edited', 'Space', 'update', 'c-edited', 's1', '{"name":"edited"}', 2, 7000, 0,
        'pending', 1, 'conflict: waiting for the user', 200, 210),
    (20, 'op-sent', 'Space', 'update', 'c-synced', 's1', '{"name":"synced"}', 4, 6000, 0,
        'sending', 1, NULL, 220, 230);
UPDATE sqlite_sequence SET seq = 40 WHERE name = 'operation_queue';
INSERT INTO conflicts (id, client_id, entity, space_id, local_version, local_updated_at,
    local_data, server_version, server_updated_at, server_data, server_is_deleted) VALUES
    (3, 'c-edited', 'Space', 's1', 3, 7000, '{"name":"edited"}', 3, 7000,
        '{"name":"theirs"}', 0);
UPDATE sqlite_sequence SET seq = 9 WHERE name = 'conflicts';
INSERT INTO sync_state VALUES ('Space', 'cursor-41', 'hash-1', 300);
INSERT INTO auth_tokens VALUES ('default', 'token-acme');
INSERT INTO meta VALUES ('hlc', 8000), ('last_successful_sync_ms', 1234);
"#;

fn db_path(dir: &std::path::Path) -> std::path::PathBuf {
    DbLocation::new(dir).db_path(&TenantId::parse("acme").unwrap())
}

/// Writes a schema version 1 database holding `rows` where the engine will look for
/// tenant `acme`.
fn write_v1_database(dir: &std::path::Path, rows: &str) {
    let conn = rusqlite::Connection::open(db_path(dir)).unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    conn.execute_batch(rows).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
}

fn open(dir: &std::path::Path) -> Engine {
    open_engine_in(dir, "acme", ManualClock::new(EPOCH_MS), 3)
}

/// Every table's and index's definition, as SQLite stores it.
fn schema_of(dir: &std::path::Path) -> Vec<(String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(db_path(dir)).unwrap();
    let mut statement = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

fn sequence_of(dir: &std::path::Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db_path(dir)).unwrap();
    conn.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = ?1",
        [table],
        |row| row.get(0),
    )
    .unwrap()
}

#[test]
fn a_version_1_database_migrates_with_every_row_intact() {
    // Proves: every row survives the rebuild unchanged and in order, freed queue
    // positions and conflict ids are not reused, and the result is exactly the schema a
    // new database gets, constraints included.
    let dir = tempfile::tempdir().unwrap();
    write_v1_database(dir.path(), ROWS_V1);
    let mut engine = open(dir.path());
    engine
        .check_invariants()
        .expect("a consistent database stays consistent");

    let edited = engine
        .get("s-edited")
        .unwrap()
        .expect("found by its server id");
    assert_eq!(edited.client_id, "c-edited");
    assert_eq!((edited.version, edited.base_version), (3, 2));
    assert_eq!(edited.data, *json!({"name": "edited"}).as_object().unwrap());
    let synced = engine.get("c-synced").unwrap().unwrap();
    assert_eq!(synced.server_id.as_deref(), Some("s-synced"));
    assert_eq!(synced.updated_at.0, 6000);
    let gone = engine.get("c-gone").unwrap().unwrap();
    assert!(gone.is_deleted);
    let every = ListOptions {
        include_deleted: true,
    };
    assert_eq!(engine.list("Space", Some("s1"), every).unwrap().len(), 2);
    assert_eq!(
        engine
            .list("Identity", None, ListOptions::default())
            .unwrap()
            .len(),
        0
    );

    let ops = engine.queued_ops().unwrap();
    let summary: Vec<(i64, &str, Operation, OpStatus, i64)> = ops
        .iter()
        .map(|op| {
            (
                op.seq,
                op.op_id.as_str(),
                op.operation,
                op.status,
                op.attempts,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (12, "op-failed", Operation::Insert, OpStatus::Failed, 1),
            (17, "op-edited", Operation::Update, OpStatus::Pending, 1),
            // Left `sending` by a process that stopped while sending: schema 5 keeps the
            // run on the wire out of the queue's rows, and the attempt stays counted.
            (20, "op-sent", Operation::Update, OpStatus::Pending, 1),
        ]
    );
    assert_eq!(ops[0].last_error.as_deref(), Some("VALIDATION"));
    // Schema 4 stores a failed op's code beside its message; an op that failed before
    // has none, and its message is what was stored.
    let failed = engine.failed_ops().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].op_id, "op-failed");
    assert_eq!(failed[0].rejection.code, None);
    assert_eq!(failed[0].rejection.message, "VALIDATION");
    assert_eq!(failed[0].failed_at_ms, 110);
    let conflicts = engine.list_conflicts().unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].id, 3);
    assert_eq!(conflicts[0].server_data["name"], "theirs");
    assert_eq!(
        engine.cursor("Space").unwrap().as_deref(),
        Some("cursor-41")
    );
    assert_eq!(engine.auth_token().unwrap().as_deref(), Some("token-acme"));
    assert_eq!(engine.status().unwrap().last_successful_sync_ms, Some(1234));

    let new_id = engine
        .create("Space", "s1", json!({"name": "new"}))
        .unwrap();
    let new_op = engine.queued_ops().unwrap().pop().unwrap();
    assert_eq!(new_op.entity_id, new_id);
    assert_eq!(
        new_op.seq, 41,
        "queue positions 18..=40 were used before the migration"
    );
    assert!(
        engine.get(&new_id).unwrap().unwrap().updated_at.0 > 8000,
        "the clock resumes past its high-water mark"
    );
    drop(engine);
    assert_eq!(sequence_of(dir.path(), "conflicts"), 9);

    let fresh = tempfile::tempdir().unwrap();
    drop(open(fresh.path()));
    assert_eq!(schema_of(dir.path()), schema_of(fresh.path()));
    let conn = rusqlite::Connection::open(db_path(dir.path())).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 6);
    conn.pragma_update(None, "foreign_keys", true).unwrap();
    assert!(
        conn.execute("DELETE FROM records WHERE client_id = 'c-failed'", [])
            .is_err(),
        "the migrated schema refuses a queue row without its record"
    );
}

#[test]
fn a_damaged_version_1_database_still_opens_and_its_damage_is_reported() {
    // Proves: the migration carries rows that break the new constraints over as they
    // are (refusing to open would lock the user out of every intact row), and
    // `check_invariants` then names each of them.
    let dir = tempfile::tempdir().unwrap();
    let damage = "
        INSERT INTO operation_queue (id, op_id, entity, operation, entity_id, space_id,
            payload, base_version, hlc, force, status, attempts, created_at, updated_at)
            VALUES (30, 'op-orphan', 'Space', 'insert', 'c-nowhere', 's1', '{}', 0, 100, 0,
            'pending', 0, 1, 1);
        UPDATE operation_queue SET status = 'bogus' WHERE id = 12;
        UPDATE records SET is_deleted = 5 WHERE client_id = 'c-synced';";
    write_v1_database(dir.path(), &format!("{ROWS_V1}{damage}"));
    let engine = open(dir.path());
    let report = engine
        .check_invariants()
        .expect_err("the damage is reported");
    for row in [
        "operation_queue row 30",
        "operation_queue row 12",
        "records row c-synced",
    ] {
        assert!(
            report.contains(row),
            "the report must name {row}:\n{report}"
        );
    }
    assert_eq!(engine.get("c-edited").unwrap().unwrap().version, 3);
}
