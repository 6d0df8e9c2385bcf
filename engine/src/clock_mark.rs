//! The clock's high-water mark kept outside the database: a small file beside it
//! (`{database}.clock`), written and synced by the durability barrier before a push
//! leaves.
//!
//! Every stamp, id and `opId` that left the device is at or below the database's
//! high-water mark when its push's barrier ran, and a power loss cannot take that mark
//! back (the barrier made it durable). A damaged database can: a recovery that cannot
//! read the header's pages would resume the clock below stamps the server already holds.
//! This file is what bounds the clock then ([`recover_corrupt_database`] and every open
//! take the larger of the two). It is only ever raised, and a file that cannot be read
//! counts as absent.
//!
//! This module owns the file's format; it never touches the database.
//!
//! [`recover_corrupt_database`]: crate::recover_corrupt_database

use crate::hlc::HlcStamp;
use std::io::Write;
use std::path::Path;

/// Raises the mark at `path` to `stamp` (never lowers it) and syncs it to disk.
pub(crate) fn raise(path: &Path, stamp: HlcStamp) -> std::io::Result<()> {
    if read(path).is_some_and(|kept| kept >= stamp) {
        return Ok(());
    }
    let mut file = std::fs::File::create(path)?;
    // Sixteen hex digits and a newline: one write well inside a disk sector.
    file.write_all(format!("{:016x}\n", stamp.0).as_bytes())?;
    file.sync_all()
}

/// The mark at `path`, if a readable one is there.
pub(crate) fn read(path: &Path) -> Option<HlcStamp> {
    let text = std::fs::read_to_string(path).ok()?;
    u64::from_str_radix(text.trim(), 16).ok().map(HlcStamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_only_rises_and_a_garbled_one_counts_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.clock");
        assert_eq!(read(&path), None);
        raise(&path, HlcStamp(7)).unwrap();
        raise(&path, HlcStamp(5)).unwrap();
        assert_eq!(read(&path), Some(HlcStamp(7)));
        raise(&path, HlcStamp(9)).unwrap();
        assert_eq!(read(&path), Some(HlcStamp(9)));
        std::fs::write(&path, "not a stamp").unwrap();
        assert_eq!(read(&path), None);
    }
}
