//! Causality as the harness sees it, never as the engine's stamps claim it.
//!
//! Every version of a record that a device shows (through the engine's public reads,
//! after the calls and deliveries that touched it) is entered once in the record's
//! history, identified by what the app can see of it: its stamp, tombstone flag and data.
//! A version a device writes itself happened after everything that device had shown of
//! the record until then (its *knowledge*); a version that arrived from the server, or
//! that a reopen found, is entered with no known past, which can only make the checks
//! below weaker, never wrong. Stamps identify versions here; their order is never used to
//! decide what happened before what. From this relation the oracle checks:
//!
//! - **causal stamps**: a write carries a stamp newer than every version its device had
//!   shown of the record (else the conflict policy, "the newer stamp wins", would let an
//!   overwritten version win over the write that overwrote it), except a version the
//!   server replaced by a row with a lower stamp (a stamp far ahead, clamped): the device
//!   could only know the row's stamp, which its write must beat;
//! - **no causal loss** (with the model, at the end): a write never loses to a version it
//!   happened after;
//! - **no spurious conflict**: a stored conflict's two sides are concurrent;
//! - **read-your-writes**, as the run goes: while its op is queued, a device shows its
//!   latest acknowledged write of a record, or a version that happened after it, unless
//!   the engine announced the replacement (superseded, failed, auto-merged) or the model
//!   discarded the write (force, wipe, logout, the user's conflict choice);
//! - **monotonic reads**, as the run goes: a device never shows a version that happened
//!   before the one it showed, and never shows a deleted record alive again.
//!
//! This module records and judges; it never touches an engine or the server.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use sync_engine::{Conflict, HlcStamp, Record};

/// Where a version a device shows came from, as far as the harness can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The device's own user action made it: it happened after the device's knowledge.
    Local,
    /// A delivered answer brought it: its past is not known here.
    Received,
    /// A reopen found it: a write the killed process committed but never acknowledged, or
    /// a page it committed just before dying. Its past is not known, and a version first
    /// seen here is not judged against what the device showed before.
    Reopened,
}

/// One version of a record.
#[derive(Debug)]
struct Version {
    stamp: HlcStamp,
    deleted: bool,
    data: Map<String, Value>,
    /// Versions of the same record this one happened after (indexes into the history).
    past: BTreeSet<usize>,
}

/// What one device holds of one record, as the harness saw it.
#[derive(Debug, Default)]
struct Held {
    entity: String,
    space_id: String,
    /// Every version the device has shown of the record, and their pasts.
    knowledge: BTreeSet<usize>,
    /// The version it showed at the last check.
    shown: Option<usize>,
    /// Its latest acknowledged write, while the device must still show it.
    own: Option<usize>,
    /// A replacement was announced or a discard recorded since the last check.
    excused: bool,
}

/// How a write relates to a record's final server version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The server holds the write itself.
    Same,
    /// The server's version happened after the write.
    After,
    /// The write happened after the server's version: the write was lost to its past.
    Before,
    /// Concurrent, or a version the harness never saw: the conflict policy decides.
    Unrelated,
}

/// Whether `record` is `written` as a server that rewrites what it stores keeps it: its
/// data rewritten ([`crate::server::rewritten`]), at its stamp (or one the server clamped).
fn rewrites(written: &Version, record: &Record) -> bool {
    !record.is_deleted
        && !written.deleted
        && record.updated_at <= written.stamp
        && written.data != record.data
        && record.data.contains_key(crate::server::SERVER_NOTE_FIELD)
        && crate::server::rewritten(&written.data) == record.data
}

#[derive(Debug, Default)]
pub struct Causality {
    /// tenant → client id → the record's versions, in the order first seen.
    histories: BTreeMap<String, BTreeMap<String, Vec<Version>>>,
    /// (device, tenant) → client id → what the device holds.
    held: BTreeMap<(usize, String), BTreeMap<String, Held>>,
    /// Versions entered, for the summary's sake.
    pub versions: u64,
    /// A driver answers with a hostile server, which may legitimately hand out older
    /// data: monotonic reads are not checked then (read-your-writes still is).
    pub hostile_server: bool,
}

impl Causality {
    fn find(
        &self,
        tenant: &str,
        client_id: &str,
        stamp: HlcStamp,
        deleted: bool,
        data: &Map<String, Value>,
    ) -> Option<usize> {
        let versions = self.histories.get(tenant)?.get(client_id)?;
        versions.iter().rposition(|version| {
            version.stamp == stamp && version.deleted == deleted && version.data == *data
        })
    }

    fn version(&self, tenant: &str, client_id: &str, index: usize) -> &Version {
        &self.histories[tenant][client_id][index]
    }

    /// `earlier` happened before `later` (both versions of one record).
    fn happened_before(&self, tenant: &str, client_id: &str, earlier: usize, later: usize) -> bool {
        self.version(tenant, client_id, later)
            .past
            .contains(&earlier)
    }

    /// The device shows `record`: enters the version if it is new, and adds it (and its
    /// past) to the device's knowledge of the record.
    fn observe(
        &mut self,
        device: usize,
        tenant: &str,
        record: &Record,
        origin: Origin,
    ) -> (usize, bool) {
        let client_id = record.client_id.as_str();
        let found = self.find(
            tenant,
            client_id,
            record.updated_at,
            record.is_deleted,
            &record.data,
        );
        let held = self
            .held
            .entry((device, tenant.to_owned()))
            .or_default()
            .entry(client_id.to_owned())
            .or_default();
        if held.entity.is_empty() {
            held.entity = record.entity.clone();
        }
        held.space_id.clone_from(&record.space_id);
        let versions = self
            .histories
            .entry(tenant.to_owned())
            .or_default()
            .entry(client_id.to_owned())
            .or_default();
        let index = match found {
            Some(index) => index,
            None => {
                let past = match origin {
                    Origin::Local => held.knowledge.clone(),
                    // The server stored a write rewritten (the server-rewrite fault): its
                    // stored row is that write as the server keeps it, a version after it.
                    Origin::Received | Origin::Reopened => versions
                        .iter()
                        .rposition(|version| rewrites(version, record))
                        .map(|written| {
                            let mut past = versions[written].past.clone();
                            past.insert(written);
                            past
                        })
                        .unwrap_or_default(),
                };
                versions.push(Version {
                    stamp: record.updated_at,
                    deleted: record.is_deleted,
                    data: record.data.clone(),
                    past,
                });
                self.versions += 1;
                versions.len() - 1
            }
        };
        if held.knowledge.insert(index) {
            held.knowledge.extend(versions[index].past.iter().copied());
        }
        (index, found.is_none())
    }

    /// The device's user just wrote `record` and was told it succeeded: it is the device's
    /// own write, and its stamp must be newer than every version it happened after.
    pub fn written(
        &mut self,
        device: usize,
        tenant: &str,
        record: &Record,
    ) -> Result<usize, String> {
        let (index, _) = self.observe(device, tenant, record, Origin::Local);
        let client_id = record.client_id.as_str();
        let version = self.version(tenant, client_id, index);
        // The server stores a stamp far ahead clamped (`server::rules`); stored rewritten
        // too, the stored row is a version after the write (`rewrites`) with a lower stamp.
        // A device that knows that row knows its stamp, not the ones it replaced: the write
        // must out-stamp the row, not the versions the clamp restamped lower.
        let restamped_lower = |earlier: usize, seen: &Version| {
            version.past.iter().any(|later| {
                let later = self.version(tenant, client_id, *later);
                later.past.contains(&earlier) && later.stamp < seen.stamp
            })
        };
        if let Some(seen) = version
            .past
            .iter()
            .map(|past| (*past, self.version(tenant, client_id, *past)))
            .filter(|(earlier, seen)| {
                seen.stamp >= version.stamp && !restamped_lower(*earlier, seen)
            })
            .map(|(_, seen)| seen)
            .next()
        {
            return Err(format!(
                "causality: device {device} wrote {client_id} in tenant {tenant} at stamp {:?} after it had \
                 shown the version stamped {:?} ({}); a write must carry a newer stamp than every version \
                 it overwrote, or the policy lets the overwritten one win",
                version.stamp,
                seen.stamp,
                Value::Object(seen.data.clone())
            ));
        }
        let held = self.held_mut(device, tenant, client_id);
        held.own = Some(index);
        held.shown = Some(index);
        held.excused = false;
        Ok(index)
    }

    fn held_mut(&mut self, device: usize, tenant: &str, client_id: &str) -> &mut Held {
        self.held
            .entry((device, tenant.to_owned()))
            .or_default()
            .entry(client_id.to_owned())
            .or_default()
    }

    /// The engine announced a replacement of the device's copy (superseded, failed,
    /// auto-merged), or the model recorded a discard: its next change is not judged, and
    /// the device no longer owes its own write (a later write owes again).
    pub fn excuse(&mut self, device: usize, tenant: &str, client_id: &str) {
        let held = self.held_mut(device, tenant, client_id);
        held.excused = true;
        held.own = None;
    }

    /// A completed force from the server replaced every record of `entity` on the device.
    pub fn excuse_entity(&mut self, device: usize, tenant: &str, entity: &str) {
        if let Some(records) = self.held.get_mut(&(device, tenant.to_owned())) {
            for held in records.values_mut().filter(|held| held.entity == entity) {
                held.excused = true;
            }
        }
    }

    /// The device's app was killed inside a call: the events it had not handed out yet
    /// (announcements of replacements among them) are lost, so what the reopen finds is
    /// not judged against what the device showed before.
    pub fn excuse_all(&mut self, device: usize, tenant: &str) {
        if let Some(records) = self.held.get_mut(&(device, tenant.to_owned())) {
            for held in records.values_mut() {
                held.excused = true;
            }
        }
    }

    /// The device wiped `space_id`: its copies of the space's records are gone, together
    /// with writes that never reached the model (committed just before a kill).
    pub fn forget_space(&mut self, device: usize, tenant: &str, space_id: &str) {
        if let Some(records) = self.held.get_mut(&(device, tenant.to_owned())) {
            records.retain(|_, held| held.space_id != space_id);
        }
    }

    /// The device logged out: its database, and with it what it knew, is gone.
    pub fn forget(&mut self, device: usize, tenant: &str) {
        self.held.remove(&(device, tenant.to_owned()));
    }

    /// Read-your-writes and monotonic reads for one record the device holds now
    /// (`None`: it holds no such record any more). `queued` tells whether the device still
    /// has an op of the record in its queue (asked only when needed, it reads the queue).
    pub fn check_shown(
        &mut self,
        device: usize,
        tenant: &str,
        client_id: &str,
        record: Option<&Record>,
        origin: Origin,
        queued: impl FnOnce() -> Result<bool, String>,
    ) -> Result<(), String> {
        let Some(record) = record else {
            // Gone (a wipe, a force, a repair): nothing of it to show; a record with
            // queued ops cannot go, so nothing acknowledged was waiting.
            if let Some(held) = self
                .held
                .get_mut(&(device, tenant.to_owned()))
                .and_then(|records| records.get_mut(client_id))
            {
                held.shown = None;
                held.own = None;
                held.excused = false;
            }
            return Ok(());
        };
        let (index, new) = self.observe(device, tenant, record, origin);
        let held = &self.held[&(device, tenant.to_owned())][client_id];
        let excused = held.excused || (new && origin == Origin::Reopened);
        let (previous, own) = (held.shown, held.own);
        let describe = |causality: &Causality, index: usize| {
            let version = causality.version(tenant, client_id, index);
            format!(
                "stamp {:?}{} {}",
                version.stamp,
                if version.deleted { " (deleted)" } else { "" },
                Value::Object(version.data.clone())
            )
        };
        if let (Some(previous), false, false) = (previous, excused, self.hostile_server) {
            let was = self.version(tenant, client_id, previous);
            let now = self.version(tenant, client_id, index);
            if previous != index && was.deleted && !now.deleted {
                return Err(format!(
                    "monotonic reads: device {device} showed {client_id} (tenant {tenant}) deleted, then alive \
                     again: {} after {}",
                    describe(self, index),
                    describe(self, previous)
                ));
            }
            if previous != index && self.happened_before(tenant, client_id, index, previous) {
                return Err(format!(
                    "monotonic reads: device {device} went back to an older version of {client_id} \
                     (tenant {tenant}): {} after {}",
                    describe(self, index),
                    describe(self, previous)
                ));
            }
        }
        let mut own_kept = own;
        if let Some(own) = own.filter(|own| *own != index) {
            let written = self.version(tenant, client_id, own);
            let now = self.version(tenant, client_id, index);
            // The server stores a stamp far ahead clamped (`server::rules`), and the
            // device takes the stored stamp: the same write, restamped lower.
            let restamped = written.deleted == now.deleted
                && written.data == now.data
                && now.stamp < written.stamp;
            let replaced = excused
                || restamped
                || (written.deleted && now.deleted)
                || self.happened_before(tenant, client_id, own, index);
            if replaced || !queued()? {
                // Superseded by what came after it, announced, discarded, or settled at
                // the server (nothing queued): the device no longer has to show it.
                own_kept = None;
            } else {
                return Err(format!(
                    "read-your-writes: device {device} shows {client_id} (tenant {tenant}) as {} while its \
                     acknowledged write {} is still queued, and nothing announced or discarded it",
                    describe(self, index),
                    describe(self, own)
                ));
            }
        }
        let held = self.held_mut(device, tenant, client_id);
        // An excuse covers the next change: showing the same version again keeps it.
        if previous != Some(index) {
            held.excused = false;
        }
        held.shown = Some(index);
        held.own = own_kept;
        Ok(())
    }

    /// How an acknowledged write (`written`, an index from [`Causality::written`]) relates
    /// to the server's final version of its record.
    pub fn order(
        &self,
        tenant: &str,
        client_id: &str,
        written: usize,
        server_stamp: HlcStamp,
        server_deleted: bool,
        server_data: &Map<String, Value>,
    ) -> Order {
        let Some(server) = self.find(tenant, client_id, server_stamp, server_deleted, server_data)
        else {
            return Order::Unrelated;
        };
        if server == written {
            Order::Same
        } else if self.happened_before(tenant, client_id, written, server) {
            Order::After
        } else if self.happened_before(tenant, client_id, server, written) {
            Order::Before
        } else {
            Order::Unrelated
        }
    }

    /// A conflict the engine stored must be between concurrent versions: not a version
    /// and one it happened after (an echo of the device's own write, an edit made after
    /// seeing the other side), nor one version twice.
    pub fn check_conflict(
        &self,
        device: usize,
        tenant: &str,
        conflict: &Conflict,
    ) -> Result<(), String> {
        let client_id = conflict.client_id.as_str();
        let local = self.find(
            tenant,
            client_id,
            conflict.local_updated_at,
            false,
            &conflict.local_data,
        );
        let server = self.find(
            tenant,
            client_id,
            conflict.server_updated_at,
            conflict.server_is_deleted,
            &conflict.server_data,
        );
        let (Some(local), Some(server)) = (local, server) else {
            return Ok(());
        };
        let related = if local == server {
            Some("the same version on both sides")
        } else if self.happened_before(tenant, client_id, server, local) {
            Some("the local side was written after its device had seen the server side")
        } else if self.happened_before(tenant, client_id, local, server) {
            Some("the server side was written after its device had seen the local side")
        } else {
            None
        };
        match related {
            None => Ok(()),
            Some(why) => Err(format!(
                "spurious conflict: device {device} stored a conflict on {client_id} (tenant {tenant}) between \
                 writes that are not concurrent ({why}): local stamp {:?} {}, server stamp {:?} {}",
                conflict.local_updated_at,
                Value::Object(conflict.local_data.clone()),
                conflict.server_updated_at,
                Value::Object(conflict.server_data.clone())
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The relation on small hand-made histories: what a device saw is in the past of
    //! what it writes next; received versions have no known past; each check fires on the
    //! case it exists for and stays quiet on its legitimate neighbours.
    use super::*;
    use serde_json::json;

    const T: &str = "acme";

    fn record(stamp: u64, title: &str, deleted: bool) -> Record {
        Record {
            client_id: "c1".to_owned(),
            server_id: None,
            entity: "Space".to_owned(),
            space_id: "s".to_owned(),
            version: 1,
            base_version: 0,
            updated_at: HlcStamp(stamp),
            is_deleted: deleted,
            data: json!({ "title": title }).as_object().unwrap().clone(),
        }
    }

    fn shown(
        causality: &mut Causality,
        device: usize,
        record: &Record,
        queued: bool,
    ) -> Result<(), String> {
        causality.check_shown(device, T, "c1", Some(record), Origin::Received, || {
            Ok(queued)
        })
    }

    #[test]
    fn a_write_must_out_stamp_what_its_device_had_seen() {
        // Proves: the stamp check fires only for a write that happened after a version
        // with a newer or equal stamp, not for one concurrent with it.
        let mut causality = Causality::default();
        shown(&mut causality, 0, &record(50, "a", false), false).unwrap();
        assert!(causality.written(0, T, &record(60, "b", false)).is_ok());
        let error = causality
            .written(0, T, &record(55, "c", false))
            .unwrap_err();
        assert!(error.starts_with("causality:"), "{error}");
        // Device 1 never saw stamp 50 or 60: its smaller stamp is concurrent, not wrong.
        assert!(causality.written(1, T, &record(40, "d", false)).is_ok());
    }

    #[test]
    fn a_write_need_not_out_stamp_what_the_server_clamped_away() {
        // Proves: a device that saw only the server's clamped, rewritten row of a write
        // stamped far ahead must out-stamp the row, not the far-ahead write behind it.
        let mut causality = Causality::default();
        causality.written(0, T, &record(100, "a", false)).unwrap();
        let mut stored = record(60, "a", false);
        stored.data = crate::server::rewritten(&stored.data);
        shown(&mut causality, 1, &stored, false).unwrap();
        assert!(causality.written(1, T, &record(70, "b", false)).is_ok());
        // The row's own stamp still counts.
        shown(&mut causality, 2, &stored, false).unwrap();
        let error = causality
            .written(2, T, &record(55, "c", false))
            .unwrap_err();
        assert!(error.starts_with("causality:"), "{error}");
    }

    #[test]
    fn final_order_follows_what_the_writer_had_seen() {
        // Proves: a write is Before the server's version only when its device had seen
        // that version; a concurrent one is left to the policy.
        let mut causality = Causality::default();
        shown(&mut causality, 0, &record(50, "a", false), false).unwrap();
        let write = causality.written(0, T, &record(60, "b", false)).unwrap();
        let a = record(50, "a", false);
        assert_eq!(
            causality.order(T, "c1", write, a.updated_at, false, &a.data),
            Order::Before
        );
        let b = record(60, "b", false);
        assert_eq!(
            causality.order(T, "c1", write, b.updated_at, false, &b.data),
            Order::Same
        );
        shown(&mut causality, 1, &record(60, "b", false), false).unwrap();
        let later = record(70, "c", false);
        causality.written(1, T, &later).unwrap();
        assert_eq!(
            causality.order(T, "c1", write, later.updated_at, false, &later.data),
            Order::After
        );
        let other = record(65, "x", false);
        assert_eq!(
            causality.order(T, "c1", write, other.updated_at, false, &other.data),
            Order::Unrelated
        );
    }

    #[test]
    fn reads_never_go_back_and_own_writes_stay_while_queued() {
        // Proves: going back to a version in the past of the shown one fails monotonic
        // reads; a deleted record alive again fails; a queued own write replaced without
        // announcement fails read-your-writes, and passes once announced or settled.
        let mut causality = Causality::default();
        shown(&mut causality, 0, &record(50, "a", false), false).unwrap();
        causality.written(0, T, &record(60, "b", false)).unwrap();
        let error = shown(&mut causality, 0, &record(50, "a", false), true).unwrap_err();
        assert!(error.starts_with("monotonic reads:"), "{error}");

        let mut causality = Causality::default();
        causality.written(0, T, &record(60, "b", false)).unwrap();
        let error = shown(&mut causality, 0, &record(40, "x", false), true).unwrap_err();
        assert!(error.starts_with("read-your-writes:"), "{error}");
        assert!(shown(&mut causality, 0, &record(60, "b", false), true).is_ok());
        causality.excuse(0, T, "c1");
        assert!(shown(&mut causality, 0, &record(40, "x", false), true).is_ok());

        let mut causality = Causality::default();
        causality.written(0, T, &record(60, "b", false)).unwrap();
        assert!(
            shown(&mut causality, 0, &record(70, "y", false), false).is_ok(),
            "settled, then replaced"
        );

        let mut causality = Causality::default();
        shown(&mut causality, 0, &record(60, "b", true), false).unwrap();
        let error = shown(&mut causality, 0, &record(70, "b", false), false).unwrap_err();
        assert!(error.contains("alive"), "{error}");
    }

    #[test]
    fn a_conflict_between_a_write_and_its_past_is_spurious() {
        // Proves: a conflict between a device's write and the version it overwrote is
        // reported; one between two devices' unrelated writes is not.
        let mut causality = Causality::default();
        let first = record(60, "b", false);
        causality.written(0, T, &first).unwrap();
        let second = record(70, "c", false);
        causality.written(0, T, &second).unwrap();
        let concurrent = record(70, "z", false);
        causality.written(1, T, &concurrent).unwrap();
        let conflict = |local: &Record, server: &Record| Conflict {
            id: 1,
            entity: "Space".to_owned(),
            client_id: "c1".to_owned(),
            server_id: None,
            space_id: "s".to_owned(),
            local_version: 2,
            local_updated_at: local.updated_at,
            local_data: local.data.clone(),
            server_version: 1,
            server_updated_at: server.updated_at,
            server_data: server.data.clone(),
            server_is_deleted: false,
        };
        let error = causality
            .check_conflict(0, T, &conflict(&second, &first))
            .unwrap_err();
        assert!(error.starts_with("spurious conflict:"), "{error}");
        assert!(causality
            .check_conflict(0, T, &conflict(&second, &concurrent))
            .is_ok());
    }
}
