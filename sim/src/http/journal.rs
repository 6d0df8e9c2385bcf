//! `syncsim serve --data DIR`: the served reference server's pushes, kept in SQLite so the
//! server comes back after a restart with the same records, ids, stored results and
//! cursors.
//!
//! The reference server is deterministic: the same requests, with the same clock
//! readings, in the same order, build the same state. So this module keeps the requests,
//! not the state: every push is one row (its tenant, operation, variables and the
//! server's clock when it arrived), written before its answer leaves, and opening
//! replays them in order. Pulls change nothing and are not kept. A restart replays under
//! the flags of the new start (planted defects included); tokens are the new start's.

use crate::server::ReferenceServer;
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use sync_engine::wire::SyncRequest;

/// The file inside `--data DIR`.
pub const JOURNAL_FILE: &str = "syncsim-serve.sqlite3";

/// The token replayed requests are sent with: registered for the replay only, and
/// revoked before the server answers anyone. Not a bearer token a client can send (HTTP
/// header values cannot hold a newline).
const REPLAY_TOKEN: &str = "journal\nreplay";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the journal {path} cannot be used: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the journal {path} holds a request that is not JSON (row {seq}): {source}")]
    Corrupt {
        path: PathBuf,
        seq: i64,
        source: serde_json::Error,
    },
}

/// The open journal.
pub struct Journal {
    path: PathBuf,
    conn: Connection,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(JOURNAL_FILE);
        let sqlite = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS pushes (
                 seq INTEGER PRIMARY KEY,
                 tenant_id TEXT NOT NULL,
                 operation_name TEXT NOT NULL,
                 variables TEXT NOT NULL,
                 clock_ms INTEGER NOT NULL
             );",
        )
        .map_err(sqlite)?;
        Ok(Journal { path, conn })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replays every kept push into `server`, in order; returns how many.
    pub fn replay_into(&self, server: &mut ReferenceServer) -> Result<usize, JournalError> {
        let sqlite = |source| JournalError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut statement = self
            .conn
            .prepare(
                "SELECT seq, tenant_id, operation_name, variables, clock_ms
                 FROM pushes ORDER BY seq",
            )
            .map_err(sqlite)?;
        let mut rows = statement.query([]).map_err(sqlite)?;
        let mut replayed = 0;
        while let Some(row) = rows.next().map_err(sqlite)? {
            let seq: i64 = row.get(0).map_err(sqlite)?;
            let tenant_id: String = row.get(1).map_err(sqlite)?;
            let operation_name: String = row.get(2).map_err(sqlite)?;
            let variables: String = row.get(3).map_err(sqlite)?;
            let clock_ms: i64 = row.get(4).map_err(sqlite)?;
            let variables =
                serde_json::from_str(&variables).map_err(|source| JournalError::Corrupt {
                    path: self.path.clone(),
                    seq,
                    source,
                })?;
            server.add_tenant_token(&tenant_id, REPLAY_TOKEN);
            server.set_clock_ms(u64::try_from(clock_ms).unwrap_or(0));
            let request = SyncRequest {
                request_id: 0,
                operation_name,
                tenant_id: request_tenant(&variables),
                token: REPLAY_TOKEN.to_owned(),
                variables: variables.into(),
            };
            // The answer went out when the push first arrived; replaying rebuilds state.
            let _answer = server.handle(&request);
            replayed += 1;
        }
        server.revoke_tenant_token(REPLAY_TOKEN);
        Ok(replayed)
    }

    /// Keeps one push that the server just handled for the token's tenant `tenant_id`.
    pub fn append(
        &mut self,
        tenant_id: &str,
        request: &SyncRequest,
        clock_ms: u64,
    ) -> Result<(), JournalError> {
        self.conn
            .execute(
                "INSERT INTO pushes (tenant_id, operation_name, variables, clock_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    tenant_id,
                    request.operation_name,
                    request.variables.to_json().to_string(),
                    i64::try_from(clock_ms).unwrap_or(i64::MAX)
                ],
            )
            .map(|_| ())
            .map_err(|source| JournalError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }
}

/// The tenant a request's variables name ("" when they name none: the server refuses it).
pub fn request_tenant(variables: &serde_json::Value) -> String {
    variables
        .get("tenantId")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
