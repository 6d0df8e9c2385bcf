//! A small tenant database to damage: records in every state the data model relates
//! (a pending insert, a synced record with a server id, a record of another entity and
//! space, a record with an open conflict), and a connection of its own that edits the
//! engine's file behind the engine's back.

#![allow(dead_code)] // Each test crate uses a different part.

use serde_json::json;
use sync_engine::testing::{open_engine_in, EPOCH_MS};
use sync_engine::{DbLocation, Engine, ManualClock, OpStatus, TenantId};

pub const TENANT: &str = "acme";
pub const SYNCED_SERVER_ID: &str = "srv-synced";

pub struct Damageable {
    pub dir: tempfile::TempDir,
    /// `Space` in `s1`, never synced: one pending `insert`.
    pub pending: String,
    pub pending_seq: i64,
    /// `Space` in `s1`, synced: mapped to [`SYNCED_SERVER_ID`], no queued op.
    pub synced: String,
    /// `Group` in `s2`, never synced: one pending `insert`.
    pub other: String,
    pub other_seq: i64,
    /// `Identity` in `s1`: a pending `insert` waiting behind an open conflict.
    pub conflicted: String,
    pub conflicted_seq: i64,
    pub conflict_id: i64,
}

impl Damageable {
    /// Builds the database through the engine, then makes `synced` synced and opens the
    /// conflict with an enforcing connection (valid rows the engine could have written),
    /// and checks that the engine finds the result consistent.
    pub fn new() -> Damageable {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut engine = open(dir.path());
        let pending = engine
            .create("Space", "s1", json!({"name": "pending"}))
            .unwrap();
        let synced = engine
            .create("Space", "s1", json!({"name": "synced"}))
            .unwrap();
        let other = engine
            .create("Group", "s2", json!({"name": "other"}))
            .unwrap();
        let conflicted = engine
            .create("Identity", "s1", json!({"name": "local"}))
            .unwrap();
        let ops = engine.queued_ops().unwrap();
        let seq_of = |client_id: &str| {
            let op = ops.iter().find(|op| op.entity_id == client_id).unwrap();
            assert_eq!(op.status, OpStatus::Pending);
            op.seq
        };
        let (pending_seq, other_seq, conflicted_seq) =
            (seq_of(&pending), seq_of(&other), seq_of(&conflicted));
        drop(engine);
        let fixture = Damageable {
            dir,
            pending,
            pending_seq,
            synced,
            other,
            other_seq,
            conflicted,
            conflicted_seq,
            conflict_id: 0,
        };
        fixture
            .edit(
                true,
                &format!(
                    "DELETE FROM operation_queue WHERE entity_id = '{synced}';
                     UPDATE records SET base_version = 1 WHERE client_id = '{synced}';
                     UPDATE records SET server_id = '{SYNCED_SERVER_ID}'
                         WHERE client_id = '{synced}';
                     INSERT INTO conflicts (client_id, entity, space_id, local_version,
                         local_updated_at, local_data, server_version, server_updated_at,
                         server_data, server_is_deleted)
                         SELECT client_id, entity, space_id, version, updated_at, data, 2,
                             updated_at, '{{\"name\":\"server\"}}', 0
                         FROM records WHERE client_id = '{conflicted}';",
                    synced = fixture.synced,
                    conflicted = fixture.conflicted,
                ),
            )
            .expect("valid rows");
        let engine = fixture.open();
        let conflicts = engine.list_conflicts().unwrap();
        assert_eq!(conflicts.len(), 1);
        engine
            .check_invariants()
            .expect("the undamaged fixture is consistent");
        Damageable {
            conflict_id: conflicts[0].id,
            ..fixture
        }
    }

    pub fn open(&self) -> Engine {
        open(self.dir.path())
    }

    pub fn db_path(&self) -> std::path::PathBuf {
        DbLocation::new(self.dir.path()).db_path(&TenantId::parse(TENANT).unwrap())
    }

    /// Runs `sql` in one transaction on a connection of its own, as another program would.
    /// `enforce` chooses whether that connection enforces the schema's foreign keys and
    /// CHECK constraints; storage damage enforces nothing.
    #[allow(clippy::disallowed_methods)] // Another program: no crash hook.
    pub fn edit(&self, enforce: bool, sql: &str) -> rusqlite::Result<()> {
        let mut conn = rusqlite::Connection::open(self.db_path())?;
        conn.pragma_update(None, "foreign_keys", enforce)?;
        conn.pragma_update(None, "ignore_check_constraints", !enforce)?;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.commit()
    }
}

fn open(dir: &std::path::Path) -> Engine {
    open_engine_in(dir, TENANT, ManualClock::new(EPOCH_MS), 1)
}
