//! The sync lock of a tenant database: one process of an app syncs it at a time.
//!
//! An app may open one tenant database from two processes (its UI and a background sync
//! task). Both write and both sync, but a sync owns what it marks `sending`: the ops of
//! its push in flight, and a force's staged pages. A second sync running at the same time
//! would take those for leftovers of a crash and push the ops again, or drop the pages.
//! So a sync (a force from the server and a wipe too) runs holding this lock, from its
//! start until it is idle again, and a process that finds it held defers its own sync
//! ([`SyncEvent::SyncDeferred`](crate::SyncEvent::SyncDeferred)): whatever it wrote is in
//! the database, where the running sync's next push run reads it.
//!
//! The lock is the operating system's advisory lock on a file beside the database
//! ([`DbLocation::sync_lock_path`](crate::DbLocation::sync_lock_path)), not a row in it:
//! the operating system lets go of it when its process dies, so a killed process never
//! holds up the next one, and no lease, expiry or clock is involved. Whoever takes the
//! lock knows that every op still `sending` and every staged page was left by a process
//! that is gone. A lock is taken with a non-blocking try and never waited for: the engine
//! has no thread to wait on.
//!
//! Each holder writes its process token into the file, so an engine can tell whether
//! another process has synced since it last did ([`last_holder`]): only then may an op
//! be `sending` while this engine runs no sync (the consistency checks use it).
//!
//! A second lock, the open lock, serializes setting a database up (`OpenLock`).
//!
//! This module owns taking and releasing the locks; it never reads or writes the
//! database.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The held lock; dropping it lets go.
#[derive(Debug)]
pub(crate) struct SyncLock {
    /// The open lock file: the operating system ties the lock to it.
    _file: File,
}

/// Whether another process holds the lock, or this one now does.
#[derive(Debug)]
pub(crate) enum Acquired {
    Held(SyncLock),
    /// Another process (or another engine of this one) holds it.
    Busy,
}

impl SyncLock {
    /// Takes the lock at `path` without waiting, creating the file if needed, and
    /// records `holder` (the taking process's token) in it.
    pub(crate) fn try_acquire(path: &Path, holder: u64) -> std::io::Result<Acquired> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Acquired::Busy),
            Err(TryLockError::Error(error)) => return Err(error),
        }
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(format!("{holder:016x}").as_bytes())?;
        Ok(Acquired::Held(SyncLock { _file: file }))
    }
}

/// Holds the open lock of a database (a file beside it, locked with the operating
/// system's blocking lock) while a process sets the database up: switching a new file to
/// WAL takes SQLite's exclusive lock, and two processes doing it at once deadlock, which
/// SQLite answers with `SQLITE_BUSY` at once, whatever the busy timeout. Setting up is
/// short, so waiting for the other process is cheap; the lock goes when this is dropped,
/// or with the process.
#[derive(Debug)]
pub(crate) struct OpenLock {
    _file: File,
}

impl OpenLock {
    /// Waits for the open lock at `path`, creating the file if needed.
    pub(crate) fn acquire(path: &Path) -> std::io::Result<OpenLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.lock()?;
        Ok(OpenLock { _file: file })
    }
}

/// The token of the process that took the lock at `path` last (holding it or not), if
/// any did.
pub(crate) fn last_holder(path: &Path) -> std::io::Result<Option<u64>> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut file) => file.read_to_string(&mut text)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok(u64::from_str_radix(text.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db-sync-lock");
        assert_eq!(last_holder(&path).unwrap(), None);
        let first = SyncLock::try_acquire(&path, 1).unwrap();
        assert!(matches!(first, Acquired::Held(_)));
        assert!(matches!(
            SyncLock::try_acquire(&path, 2).unwrap(),
            Acquired::Busy
        ));
        assert_eq!(last_holder(&path).unwrap(), Some(1));
        drop(first);
        assert_eq!(
            last_holder(&path).unwrap(),
            Some(1),
            "kept after letting go"
        );
        assert!(matches!(
            SyncLock::try_acquire(&path, 2).unwrap(),
            Acquired::Held(_)
        ));
        assert_eq!(last_holder(&path).unwrap(), Some(2));
    }
}
