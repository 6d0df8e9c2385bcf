//! Moving a tenant's database from the name versions before the case-safe mapping gave it
//! (`{prefix}{tenantId}`, see `tenant.rs`) to its current name, before the engine opens or
//! drops it. Owns only that rename; it never creates, reads (beyond a file's first bytes)
//! or deletes a database.
//!
//! Only an exact name is moved: the directory listing must hold the legacy name byte for
//! byte (a case-insensitive file system would also answer for another tenant's file), and
//! the file must start with SQLite's database header (the legacy database of tenant
//! `x-wal` may be tenant `x`'s WAL). Companions move first and the database last, so an
//! interrupted move is finished by the next open: a database never reaches its new name
//! without the WAL that holds its latest commits.

use crate::tenant::{DbLocation, TenantId};
use std::io::Read;
use std::path::Path;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Moves `tenant`'s legacy files to their current names, if there are any to move.
pub(crate) fn migrate(location: &DbLocation, tenant: &TenantId) -> std::io::Result<()> {
    let legacy = location.legacy_db_files(tenant);
    let current = location.db_files(tenant);
    let (legacy_main, current_main) = (&legacy[3], &current[3]);
    if legacy_main == current_main
        || current_main.exists()
        || !listed_exactly(location.dir(), legacy_main)?
        || !is_database(legacy_main)?
    {
        return Ok(());
    }
    for (from, to) in legacy.iter().zip(&current) {
        if from == legacy_main || listed_exactly(location.dir(), from)? {
            std::fs::rename(from, to)?;
        }
    }
    Ok(())
}

/// Whether `dir` lists a file named exactly like `path` (not merely equal under case
/// folding).
fn listed_exactly(dir: &Path, path: &Path) -> std::io::Result<bool> {
    let Some(name) = path.file_name() else {
        return Ok(false);
    };
    if !path.exists() {
        return Ok(false);
    }
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name() == name {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_database(path: &Path) -> std::io::Result<bool> {
    let mut header = [0u8; 16];
    let mut file = std::fs::File::open(path)?;
    match file.read_exact(&mut header) {
        Ok(()) => Ok(&header == SQLITE_HEADER),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    //! A database kept under its legacy name opens with its rows under the new name, WAL
    //! included; a legacy name that is another tenant's WAL is left alone.
    use super::*;
    use crate::testing::{open_engine_in, EPOCH_MS};
    use crate::ManualClock;
    use serde_json::json;

    #[test]
    fn a_legacy_database_and_its_wal_move_to_the_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let location = DbLocation::new(dir.path());
        let tenant = TenantId::parse("Acme").unwrap();
        let legacy = location.legacy_db_path(&tenant);
        let wal = location.legacy_db_files(&tenant)[0].clone();
        // A database under the legacy name whose last commit is only in its WAL: copies
        // taken while the connection is open, put back after it closed.
        let writer = rusqlite::Connection::open(&legacy).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (7);")
            .unwrap();
        std::fs::copy(&legacy, dir.path().join("main-copy")).unwrap();
        std::fs::copy(&wal, dir.path().join("wal-copy")).unwrap();
        drop(writer);
        std::fs::rename(dir.path().join("main-copy"), &legacy).unwrap();
        std::fs::rename(dir.path().join("wal-copy"), &wal).unwrap();

        migrate(&location, &tenant).unwrap();
        assert!(!legacy.exists());
        assert!(location.db_files(&tenant)[0].exists(), "the WAL moved too");
        let moved = rusqlite::Connection::open(location.db_path(&tenant)).unwrap();
        let x: i64 = moved
            .query_row("SELECT x FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(x, 7, "the commit held by the WAL moved with the database");
    }

    #[test]
    fn a_legacy_name_holding_another_tenants_wal_is_not_moved() {
        let dir = tempfile::tempdir().unwrap();
        let location = DbLocation::new(dir.path());
        let mut engine = open_engine_in(dir.path(), "x", ManualClock::new(EPOCH_MS), 7);
        engine.create("Space", "s1", json!({"n": 1})).unwrap();
        let suffixed = TenantId::parse("x-wal").unwrap();
        let x_wal = location.legacy_db_path(&suffixed);
        assert!(
            x_wal.exists(),
            "tenant x's WAL has the legacy name of x-wal"
        );
        migrate(&location, &suffixed).unwrap();
        assert!(x_wal.exists(), "x's WAL stays where it is");
        assert!(!location.db_path(&suffixed).exists());
        assert_eq!(engine.all_records().unwrap().len(), 1);
    }
}
