//! The schema: its tables and constraints, the migrations that build them, and opening a
//! database.
//!
//! The schema is versioned with `PRAGMA user_version` and migrated forward on open; a
//! migration, once released, never changes (old databases replay it). The constraints
//! state the data model (see migration 3); the engine's code keeps them, and SQLite
//! enforces them on every commit, so a bug that would break one fails its transaction
//! instead of leaving a damaged database. Queries that find rows breaking them anyway
//! (storage damage, a database migrated with damage) live in `integrity.rs`.

use rusqlite::Connection;
use std::path::Path;

/// Newest schema this engine knows.
pub const SCHEMA_VERSION: i64 = 6;

const MIGRATIONS: [&str; 6] = [
    r#"
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
"#,
    // 2: the scratch rows of a running force-from-server (see `force_staging`).
    r#"
CREATE TABLE force_staging (
    client_id  TEXT PRIMARY KEY NOT NULL,
    server_id  TEXT NOT NULL,
    entity     TEXT NOT NULL,
    space_id   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    data       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX force_staging_by_server_id ON force_staging (server_id);
"#,
    // 3: the constraints the data model implies (issue 19). SQLite cannot add a constraint
    // to a table, so each table that gains one is rebuilt: renamed away, created again
    // under its name, its rows copied as they are, the old one dropped. `migrate` runs
    // this with foreign keys and CHECK constraints off, so a damaged row is carried over
    // for `check_invariants` to name instead of making the database impossible to open.
    r#"
DROP INDEX records_by_entity_space;
DROP INDEX records_by_space;
DROP INDEX queue_by_status;
DROP INDEX queue_by_record;
DROP INDEX queue_by_space;
ALTER TABLE records RENAME TO records_v2;
ALTER TABLE id_map RENAME TO id_map_v2;
ALTER TABLE operation_queue RENAME TO operation_queue_v2;
ALTER TABLE sync_state RENAME TO sync_state_v2;
ALTER TABLE conflicts RENAME TO conflicts_v2;

-- A record is the parent of its id mapping, its queued ops and its open conflict: a
-- foreign key on the client id, so none of them can outlive its record. Deletes are soft
-- (a tombstone keeps its row and its children); a record's row goes only in a wipe, a
-- force replacement, a repair pull or the database's drop, each one transaction that
-- removes the children with it, so the keys are checked when that transaction commits
-- (DEFERRABLE INITIALLY DEFERRED), not statement by statement.
--
-- What the schema leaves to the code, for speed (measured on a 10k-record bulk write):
-- that a child names its record's entity (a key on (client_id, entity) needs a second
-- unique index on records, and every record upsert then scans the three child tables:
-- +65 % on inserts, +130 % on rewrites), and the characters of entity names and space
-- ids (a GLOB per row: +14 %). The readers and `check_invariants` check both. A list of
-- three or more values is spelt with OR, not IN: SQLite builds an IN list's lookup table
-- on every run of the statement, which tripled the cost of queueing an op.
CREATE TABLE records (
    client_id    TEXT PRIMARY KEY NOT NULL,
    entity       TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    space_id     TEXT NOT NULL CHECK (length(space_id) BETWEEN 1 AND 64),
    version      INTEGER NOT NULL CHECK (version >= 1),
    base_version INTEGER NOT NULL CHECK (base_version >= 0),
    base_data    TEXT,
    updated_at   INTEGER NOT NULL,
    is_deleted   INTEGER NOT NULL CHECK (is_deleted IN (0, 1)),
    data         TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX records_by_entity_space ON records (entity, space_id, client_id);
CREATE INDEX records_by_space ON records (space_id);

CREATE TABLE id_map (
    client_id TEXT PRIMARY KEY NOT NULL,
    server_id TEXT NOT NULL UNIQUE,
    entity    TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    FOREIGN KEY (client_id) REFERENCES records (client_id) DEFERRABLE INITIALLY DEFERRED
) WITHOUT ROWID;

-- An op copies its record's entity and space when it is written.
CREATE TABLE operation_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id        TEXT NOT NULL UNIQUE,
    entity       TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    operation    TEXT NOT NULL
                     CHECK (operation = 'insert' OR operation = 'update' OR operation = 'delete'),
    entity_id    TEXT NOT NULL,
    space_id     TEXT NOT NULL CHECK (length(space_id) BETWEEN 1 AND 64),
    payload      TEXT NOT NULL,
    base_version INTEGER NOT NULL CHECK (base_version >= 0),
    hlc          INTEGER NOT NULL,
    force        INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),
    status       TEXT NOT NULL CHECK (status = 'pending' OR status = 'sending'
                     OR status = 'success' OR status = 'failed'),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    FOREIGN KEY (entity_id) REFERENCES records (client_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX queue_by_status ON operation_queue (status, id);
CREATE INDEX queue_by_record ON operation_queue (entity_id, id);
CREATE INDEX queue_by_space ON operation_queue (space_id);

-- Cursors have no parent row: entity types live in the app's registry, not here.
CREATE TABLE sync_state (
    entity              TEXT PRIMARY KEY NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    last_sync_at        TEXT,
    server_version_hash TEXT,
    updated_at          INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE conflicts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id         TEXT NOT NULL UNIQUE,
    entity            TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    space_id          TEXT NOT NULL CHECK (length(space_id) BETWEEN 1 AND 64),
    local_version     INTEGER NOT NULL,
    local_updated_at  INTEGER NOT NULL,
    local_data        TEXT NOT NULL,
    server_version    INTEGER NOT NULL,
    server_updated_at INTEGER NOT NULL,
    server_data       TEXT NOT NULL,
    server_is_deleted INTEGER NOT NULL CHECK (server_is_deleted IN (0, 1)),
    FOREIGN KEY (client_id) REFERENCES records (client_id) DEFERRABLE INITIALLY DEFERRED
);

-- Queue positions and conflict ids are never reused (the app may still hold a resolved
-- conflict's id): the new tables continue the old tables' AUTOINCREMENT counters.
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'operation_queue', seq FROM sqlite_sequence WHERE name = 'operation_queue_v2';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'conflicts', seq FROM sqlite_sequence WHERE name = 'conflicts_v2';

INSERT INTO records (client_id, entity, space_id, version, base_version, base_data,
        updated_at, is_deleted, data)
    SELECT client_id, entity, space_id, version, base_version, base_data, updated_at,
        is_deleted, data FROM records_v2;
INSERT INTO id_map (client_id, server_id, entity)
    SELECT client_id, server_id, entity FROM id_map_v2;
INSERT INTO operation_queue (id, op_id, entity, operation, entity_id, space_id, payload,
        base_version, hlc, force, status, attempts, last_error, created_at, updated_at)
    SELECT id, op_id, entity, operation, entity_id, space_id, payload, base_version, hlc,
        force, status, attempts, last_error, created_at, updated_at FROM operation_queue_v2;
INSERT INTO sync_state (entity, last_sync_at, server_version_hash, updated_at)
    SELECT entity, last_sync_at, server_version_hash, updated_at FROM sync_state_v2;
INSERT INTO conflicts (id, client_id, entity, space_id, local_version, local_updated_at,
        local_data, server_version, server_updated_at, server_data, server_is_deleted)
    SELECT id, client_id, entity, space_id, local_version, local_updated_at, local_data,
        server_version, server_updated_at, server_data, server_is_deleted FROM conflicts_v2;

DROP TABLE records_v2;
DROP TABLE id_map_v2;
DROP TABLE operation_queue_v2;
DROP TABLE sync_state_v2;
DROP TABLE conflicts_v2;
"#,
    // 4: failed ops under the app's control (`failed_ops.rs`). A failed op keeps the
    // server's error code beside its message, so the app reads why it failed as a type:
    // NULL for every other status, for a failure without a code, and for ops that failed
    // before this migration. A record keeps the server's stamp of its merge base beside
    // the base's data, so a discard returns it to the server's row exactly: NULL means
    // "the same as `updated_at`", as NULL `base_data` means "the same as `data`".
    r#"
ALTER TABLE operation_queue ADD COLUMN error_code TEXT;
ALTER TABLE records ADD COLUMN base_updated_at INTEGER;
"#,
    // 5: the push run on the wire is a list of queue positions (`push_in_flight`), not a
    // status: its ops stay `pending` in the queue and read as `sending`, so marking a run
    // writes a hundred small rows instead of moving a hundred ops in the status index,
    // and its ops count the attempt when the run ends. An op this migration finds
    // `sending` was left by a process that stopped while sending (an open resets them
    // when nobody syncs): it is `pending` again, its attempt already counted.
    r#"
CREATE TABLE push_in_flight (
    seq INTEGER PRIMARY KEY NOT NULL
);
UPDATE operation_queue SET status = 'pending' WHERE status = 'sending';
"#,
    // 6: a record's server id is a column of its row, unique where set, instead of a row
    // of its own in `id_map`: acknowledging a push rewrites the record anyway, and now
    // writes nothing else for the mapping (issue 16: the id map's two B-trees were a
    // quarter of the pages a push commit wrote). `id_map` stays as a view for readers.
    // A mapping whose record is gone (only a damaged database has one) is dropped; a
    // mapping's entity was its record's (the code kept them equal), so the record's stays.
    r#"
ALTER TABLE records ADD COLUMN server_id TEXT;
UPDATE records SET server_id = (SELECT m.server_id FROM id_map m WHERE m.client_id = records.client_id);
DROP TABLE id_map;
CREATE UNIQUE INDEX records_by_server_id ON records (server_id) WHERE server_id IS NOT NULL;
CREATE VIEW id_map AS SELECT client_id, server_id, entity FROM records WHERE server_id IS NOT NULL;
"#,
];

/// The schema a new database gets: the tables as the migrations leave them, created in one
/// step (replaying every migration on an empty file cost four times as much, and the
/// simulator creates thousands of databases). A test migrates a version 1 database and
/// checks that it ends with exactly this schema; a new migration changes this copy too.
const NEW_DATABASE: &str = r#"
-- `base_updated_at` and `server_id` (and the queue's `error_code`) sit where migrations
-- 4's and 6's ALTER TABLE put them, so that a migrated schema reads exactly as a new one.
CREATE TABLE records (
    client_id    TEXT PRIMARY KEY NOT NULL,
    entity       TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    space_id     TEXT NOT NULL CHECK (length(space_id) BETWEEN 1 AND 64),
    version      INTEGER NOT NULL CHECK (version >= 1),
    base_version INTEGER NOT NULL CHECK (base_version >= 0),
    base_data    TEXT,
    updated_at   INTEGER NOT NULL,
    is_deleted   INTEGER NOT NULL CHECK (is_deleted IN (0, 1)),
    data         TEXT NOT NULL
, base_updated_at INTEGER, server_id TEXT) WITHOUT ROWID;
CREATE INDEX records_by_entity_space ON records (entity, space_id, client_id);
CREATE INDEX records_by_space ON records (space_id);
CREATE UNIQUE INDEX records_by_server_id ON records (server_id) WHERE server_id IS NOT NULL;

-- A record's server id, as the readers that join "the mapping" see it.
CREATE VIEW id_map AS SELECT client_id, server_id, entity FROM records WHERE server_id IS NOT NULL;

-- An op copies its record's entity and space when it is written.
CREATE TABLE operation_queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    op_id        TEXT NOT NULL UNIQUE,
    entity       TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    operation    TEXT NOT NULL
                     CHECK (operation = 'insert' OR operation = 'update' OR operation = 'delete'),
    entity_id    TEXT NOT NULL,
    space_id     TEXT NOT NULL CHECK (length(space_id) BETWEEN 1 AND 64),
    payload      TEXT NOT NULL,
    base_version INTEGER NOT NULL CHECK (base_version >= 0),
    hlc          INTEGER NOT NULL,
    force        INTEGER NOT NULL DEFAULT 0 CHECK (force IN (0, 1)),
    status       TEXT NOT NULL CHECK (status = 'pending' OR status = 'sending'
                     OR status = 'success' OR status = 'failed'),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL, error_code TEXT,
    FOREIGN KEY (entity_id) REFERENCES records (client_id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX queue_by_status ON operation_queue (status, id);
CREATE INDEX queue_by_record ON operation_queue (entity_id, id);
CREATE INDEX queue_by_space ON operation_queue (space_id);

-- Cursors have no parent row: entity types live in the app's registry, not here.
CREATE TABLE sync_state (
    entity              TEXT PRIMARY KEY NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    last_sync_at        TEXT,
    server_version_hash TEXT,
    updated_at          INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE conflicts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id         TEXT NOT NULL UNIQUE,
    entity            TEXT NOT NULL CHECK (length(entity) BETWEEN 1 AND 64),
    space_id          TEXT NOT NULL CHECK (length(space_id) BETWEEN 1 AND 64),
    local_version     INTEGER NOT NULL,
    local_updated_at  INTEGER NOT NULL,
    local_data        TEXT NOT NULL,
    server_version    INTEGER NOT NULL,
    server_updated_at INTEGER NOT NULL,
    server_data       TEXT NOT NULL,
    server_is_deleted INTEGER NOT NULL CHECK (server_is_deleted IN (0, 1)),
    FOREIGN KEY (client_id) REFERENCES records (client_id) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE auth_tokens (
    name  TEXT PRIMARY KEY NOT NULL,
    token TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE force_staging (
    client_id  TEXT PRIMARY KEY NOT NULL,
    server_id  TEXT NOT NULL,
    entity     TEXT NOT NULL,
    space_id   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    data       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX force_staging_by_server_id ON force_staging (server_id);

CREATE TABLE push_in_flight (
    seq INTEGER PRIMARY KEY NOT NULL
);
"#;

/// How many prepared statements a connection keeps.
const STATEMENT_CACHE_CAPACITY: usize = 128;

/// Opens (creating if needed) and migrates the database at `path`; a write waits at most
/// `busy_timeout_ms` for a lock another connection holds.
pub fn open(path: &Path, busy_timeout_ms: u64) -> Result<Connection, crate::error::OpenError> {
    let mut conn = Connection::open(path)?;
    // Room for every statement the engine prepares (about 80 call sites of
    // `prepare_cached`): with rusqlite's default of 16, one sync's statements pushed each
    // other out and were parsed again and again.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    conn.busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))?;
    // Every transaction of the engine writes, and takes the write lock as it begins: a
    // deferred one that read first could not take it later while another process of the
    // app wrote in between (`SQLITE_BUSY` that no wait cures), and the clock's high-water
    // mark is read under it (`engine::catch_up_clock`).
    conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    // Before anything that could write: a damaged file is left exactly as it was found.
    if let Some(detail) = corruption(&conn)? {
        // Closing the last connection of a WAL database checkpoints into the damaged file.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        drop(conn);
        return Err(crate::error::OpenError::Corrupt {
            path: path.to_owned(),
            detail,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL in WAL mode: a committed transaction survives an app kill (not a power cut).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Keep query plans stable across parameter bindings: without it SQLite re-plans the
    // per-record lookups on every call (measured as ~44 % of a 10k sync).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    migrate(&mut conn)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// What SQLite finds damaged in the file's structure, if anything: its header (not a
/// database), a page or a b-tree (`PRAGMA quick_check`, which reads every page once but
/// skips the index-against-table comparison of `integrity_check`). CHECK constraints are
/// left out: a row that breaks one is a damaged row, which the readers name one by one
/// (`DamagedRow`) while every other row stays usable. `Ok(None)` for a sound (or new,
/// empty) file; other failures (a lock, an I/O error) are returned as they are.
pub fn corruption(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let corrupt = |error: &rusqlite::Error| {
        matches!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    };
    let checked = conn
        .pragma_update(None, "ignore_check_constraints", "ON")
        .and_then(|()| conn.query_row("PRAGMA quick_check(1)", [], |row| row.get::<_, String>(0)));
    let found = match checked {
        Ok(verdict) if verdict == "ok" => None,
        Ok(problem) => Some(problem),
        Err(error) if corrupt(&error) => Some(error.to_string()),
        Err(error) => return Err(error),
    };
    conn.pragma_update(None, "ignore_check_constraints", "OFF")?;
    Ok(found)
}

// Opening runs before any crash hook is installed: no boundary to kill at.
#[allow(clippy::disallowed_methods)]
fn migrate(conn: &mut Connection) -> Result<(), crate::error::OpenError> {
    // Rows are copied as they are, even rows that break a constraint a migration adds
    // (only a damaged database has them): refusing to open would lock the user out of
    // every intact row too, while `check_invariants` names the damaged ones and the reads
    // that meet them return `DamagedRow`. Both switches are per connection, and foreign
    // keys cannot be switched inside a transaction; `open` turns them on afterwards.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "ignore_check_constraints", "ON")?;
    // The version is read under the write lock (transactions begin `IMMEDIATE`), and every
    // step commits with it: another process of the app opening the same database at the
    // same moment waits, then finds the schema this one made.
    let tx = conn.transaction()?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(crate::error::OpenError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let mut done = found;
    if done == 0 {
        tx.execute_batch(NEW_DATABASE)?;
        done = SCHEMA_VERSION;
    }
    for migration in MIGRATIONS.iter().skip(usize::try_from(done).unwrap_or(0)) {
        tx.execute_batch(migration)?;
    }
    if found != SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()?;
    conn.pragma_update(None, "ignore_check_constraints", "OFF")?;
    Ok(())
}
