//! The floors: the same rows the engine stores, written straight into SQLite with plain
//! rusqlite prepared statements, each step in one transaction.
//!
//! A floor is the cost of storing the bytes and nothing else, so every measure reads as
//! "the engine is N times its floor". The schema is copied from
//! `engine/src/store/schema.rs` (`records`, the `id_map` view and `operation_queue`, with
//! their constraints and indexes) and the connection gets the engine's PRAGMAs (WAL,
//! `synchronous = NORMAL`, foreign keys on). Row contents (ids, HLC stamps, the JSON text
//! of the data) are rendered in the untimed setup: a floor does no id generation, no JSON
//! work, no reads and no protocol. Each row is written once, in its first form, except that
//! the acknowledgement gives each record its server id (a column of the record's row, as
//! in the engine); the engine may rewrite a row several times, and that is part of what
//! the ratio shows.

use rusqlite::{params, Connection};
use std::collections::BTreeMap;
use std::path::Path;
use sync_engine::hlc::HlcStamp;
use sync_engine::ids::uuid_v7;
use sync_engine::testing::EPOCH_MS;
use sync_engine::{Entropy, SeededEntropy};

use crate::{item_data, ENTITY, SPACE_ID};

/// Copied from the engine's schema for a new database (`engine/src/store/schema.rs`): the
/// tables the benchmarked paths write, with the constraints and indexes SQLite must
/// maintain on every insert, and the `id_map` view over the records' server ids.
pub const SCHEMA: &str = r#"
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
"#;

/// Opens a new database at `path` with the engine's PRAGMAs and the copied schema.
pub fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open the floor database");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("WAL");
    conn.pragma_update(None, "synchronous", "NORMAL")
        .expect("synchronous");
    conn.pragma_update(None, "foreign_keys", "ON")
        .expect("foreign keys");
    conn.execute_batch(SCHEMA).expect("create the schema");
    conn
}

/// One created item, pre-rendered: the values of its `records` row (with the server id
/// it takes when acknowledged) and its queued insert.
#[derive(Clone, Debug)]
pub struct ItemRow {
    pub client_id: String,
    pub op_id: String,
    pub server_id: String,
    pub updated_at: i64,
    pub data_text: String,
}

/// `count` items rendered as the engine would store them: UUID v7 ids from HLC stamps,
/// the data as JSON text, server ids in the reference server's format.
pub fn item_rows(count: usize) -> Vec<ItemRow> {
    let mut entropy = SeededEntropy::new(1);
    let mut stamp = HlcStamp::new(EPOCH_MS, 0);
    let mut next_stamp = || {
        stamp = HlcStamp(stamp.0 + 1);
        stamp
    };
    (0..count)
        .map(|index| {
            let updated_at = next_stamp();
            let client_id = uuid_v7(updated_at, entropy.next_u64()).to_string();
            let op_id = uuid_v7(next_stamp(), entropy.next_u64()).to_string();
            ItemRow {
                client_id,
                op_id,
                server_id: format!("srv-{:010}", index + 1),
                updated_at: updated_at.0 as i64,
                data_text: item_data(index).to_string(),
            }
        })
        .collect()
}

/// One transaction: a `records` row and a pending `operation_queue` row per item (what
/// `create_many` stores).
#[allow(clippy::disallowed_methods)] // Raw SQLite: the floor has no crash hook.
pub fn write_local(conn: &mut Connection, rows: &[ItemRow]) {
    let tx = conn.transaction().expect("begin");
    {
        let mut insert_record = tx.prepare(INSERT_RECORD).expect("prepare");
        let mut insert_op = tx
            .prepare(
                "INSERT INTO operation_queue (op_id, entity, operation, entity_id, space_id, payload, \
                 base_version, hlc, force, status, attempts, created_at, updated_at) \
                 VALUES (?1, ?2, 'insert', ?3, ?4, ?5, 0, ?6, 0, 'pending', 0, ?7, ?7)",
            )
            .expect("prepare");
        for row in rows {
            insert_record
                .execute(params![
                    row.client_id,
                    ENTITY,
                    SPACE_ID,
                    1,
                    0,
                    row.updated_at,
                    row.data_text
                ])
                .expect("insert a record");
            insert_op
                .execute(params![
                    row.op_id,
                    ENTITY,
                    row.client_id,
                    SPACE_ID,
                    row.data_text,
                    row.updated_at,
                    EPOCH_MS as i64
                ])
                .expect("insert an op");
        }
    }
    tx.commit().expect("commit");
}

const INSERT_RECORD: &str =
    "INSERT INTO records (client_id, entity, space_id, version, base_version, updated_at, is_deleted, data) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)";

const INSERT_RECORD_WITH_SERVER_ID: &str =
    "INSERT INTO records (client_id, entity, space_id, version, base_version, updated_at, is_deleted, data, server_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)";

/// One transaction: the push's acknowledgement on the writing device — each item's record
/// takes its server id, and its queued op is deleted.
#[allow(clippy::disallowed_methods)] // Raw SQLite: the floor has no crash hook.
pub fn acknowledge_push(conn: &mut Connection, rows: &[ItemRow]) {
    let tx = conn.transaction().expect("begin");
    {
        let mut set_server_id = tx
            .prepare("UPDATE records SET server_id = ?2 WHERE client_id = ?1")
            .expect("prepare");
        let mut delete_op = tx
            .prepare("DELETE FROM operation_queue WHERE op_id = ?1")
            .expect("prepare");
        for row in rows {
            let mapped = set_server_id
                .execute(params![row.client_id, row.server_id])
                .expect("set a server id");
            assert_eq!(mapped, 1);
            let deleted = delete_op.execute([&row.op_id]).expect("delete an op");
            assert_eq!(deleted, 1);
        }
    }
    tx.commit().expect("commit");
}

/// One transaction: the pulled items on the receiving device — a `records` row (server
/// version 1, with its server id) per item.
#[allow(clippy::disallowed_methods)] // Raw SQLite: the floor has no crash hook.
pub fn write_pulled(conn: &mut Connection, rows: &[ItemRow]) {
    let tx = conn.transaction().expect("begin");
    {
        let mut insert_record = tx.prepare(INSERT_RECORD_WITH_SERVER_ID).expect("prepare");
        for row in rows {
            insert_record
                .execute(params![
                    row.client_id,
                    ENTITY,
                    SPACE_ID,
                    1,
                    1,
                    row.updated_at,
                    row.data_text,
                    row.server_id
                ])
                .expect("insert a record");
        }
    }
    tx.commit().expect("commit");
}

/// What the stand-in server keeps per record: an owned copy of the row's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRow {
    pub client_id: String,
    pub version: i64,
    pub updated_at: i64,
    pub data_text: String,
}

/// The stand-in for the server's storage: every item copied into a map by server id.
pub fn store_on_server(server: &mut BTreeMap<String, ServerRow>, rows: &[ItemRow]) {
    for row in rows {
        let previous = server.insert(
            row.server_id.clone(),
            ServerRow {
                client_id: row.client_id.clone(),
                version: 1,
                updated_at: row.updated_at,
                data_text: row.data_text.clone(),
            },
        );
        assert!(previous.is_none());
    }
}

/// The `local_write` floor's input: one empty database and the rows to write.
pub struct LocalFloor {
    pub conn: Connection,
    pub rows: Vec<ItemRow>,
    _dir: tempfile::TempDir,
}

impl LocalFloor {
    pub fn new(count: usize) -> LocalFloor {
        let dir = tempfile::tempdir().expect("temporary directory");
        LocalFloor {
            conn: open(&dir.path().join("floor.db")),
            rows: item_rows(count),
            _dir: dir,
        }
    }

    /// The timed part: [`write_local`].
    pub fn run(mut self) -> LocalFloor {
        write_local(&mut self.conn, &self.rows);
        self
    }
}

/// The floor of the two-device sync, in four steps:
///
/// 1. device A, one transaction: `records` + `operation_queue` rows ([`write_local`]);
/// 2. the server: every item copied into a `BTreeMap` by server id ([`store_on_server`]);
/// 3. device A, one transaction: server ids set on the records, queue rows out
///    ([`acknowledge_push`]);
/// 4. device B, one transaction: `records` rows with their server ids ([`write_pulled`]).
pub struct SyncFloor {
    pub a: Connection,
    pub b: Connection,
    pub server: BTreeMap<String, ServerRow>,
    pub rows: Vec<ItemRow>,
    _dir: tempfile::TempDir,
}

impl SyncFloor {
    pub fn new(count: usize) -> SyncFloor {
        let dir = tempfile::tempdir().expect("temporary directory");
        SyncFloor {
            a: open(&dir.path().join("device_a.db")),
            b: open(&dir.path().join("device_b.db")),
            server: BTreeMap::new(),
            rows: item_rows(count),
            _dir: dir,
        }
    }

    /// The timed part: the four steps above.
    pub fn run(mut self) -> SyncFloor {
        write_local(&mut self.a, &self.rows);
        store_on_server(&mut self.server, &self.rows);
        acknowledge_push(&mut self.a, &self.rows);
        write_pulled(&mut self.b, &self.rows);
        self
    }

    /// After [`SyncFloor::run`]: both devices and the map hold every item, A's queue is empty.
    pub fn check(&self) {
        let count = |conn: &Connection, table: &str| -> usize {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .expect("count") as usize
        };
        let expected = self.rows.len();
        for conn in [&self.a, &self.b] {
            assert_eq!(count(conn, "records"), expected);
            assert_eq!(count(conn, "id_map"), expected);
            assert_eq!(count(conn, "operation_queue"), 0);
        }
        assert_eq!(self.server.len(), expected);
    }
}

#[cfg(test)]
mod tests {
    //! The floors write what their documentation says, and their schema is still the
    //! engine's: if `store/schema.rs` changes a table, the floor's copy must follow.
    use super::*;

    #[test]
    fn sync_floor_leaves_both_devices_and_the_map_full() {
        SyncFloor::new(300).run().check();
    }

    #[test]
    fn local_floor_writes_a_record_and_an_op_per_item() {
        let floor = LocalFloor::new(300).run();
        let ops: i64 = floor
            .conn
            .query_row(
                "SELECT COUNT(*) FROM operation_queue WHERE status = 'pending'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(ops, 300);
    }

    #[test]
    fn floor_schema_matches_the_engine_schema() {
        // The engine's own database, opened through the public API, is the reference.
        let device = crate::Device::open(9);
        let engine_db = sync_engine::DbLocation::new(device.dir())
            .db_path(&sync_engine::TenantId::parse(crate::TENANT).unwrap());
        let engine_conn = Connection::open(engine_db).unwrap();
        let floor_dir = tempfile::tempdir().unwrap();
        let floor_conn = open(&floor_dir.path().join("floor.db"));
        let schema_of = |conn: &Connection, name: &str| -> String {
            conn.query_row(
                "SELECT sql FROM sqlite_master WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .unwrap_or_else(|error| panic!("{name}: {error}"))
        };
        for name in [
            "records",
            "records_by_entity_space",
            "records_by_space",
            "records_by_server_id",
            "id_map",
            "operation_queue",
            "queue_by_status",
            "queue_by_record",
            "queue_by_space",
        ] {
            assert_eq!(schema_of(&engine_conn, name), schema_of(&floor_conn, name));
        }
    }
}
