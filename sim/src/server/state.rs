//! One tenant's server-side tables: records, their indexes, stored push results, the
//! commit-stamp high-water mark, and the last checksum computed per entity.
//!
//! This module owns the only code that adds or replaces records, so the indexes (by
//! `clientId`, and each entity's `(commit_stamp, id)` pull order) and the remembered
//! checksums can never drift from the records. It decides nothing about conflicts and
//! never reads anything outside the tenant.

use super::{ServerDefects, ServerRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use sync_engine::wire::{self, SyncResultItem};

/// A record's place in its entity's pull order: (commit stamp, server id).
type ChangeKey = (u64, String);

#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct TenantState {
    records_by_id: BTreeMap<String, ServerRecord>,
    /// `clientId` → server id. With `skip_op_id_dedupe` or `insert_ignores_known_client_id`
    /// planted, a clientId may own several rows; the index keeps the first.
    id_by_client_id: BTreeMap<String, String>,
    /// Per entity, the pull order of its records.
    change_order: BTreeMap<String, BTreeSet<ChangeKey>>,
    results_by_op_id: BTreeMap<String, SyncResultItem>,
    /// The highest commit stamp handed out; every record's stamp is at most this.
    commit_stamp_high: u64,
    /// Tombstones purged past the retention window: out of the pull order (no page
    /// carries them any more), still answering pushes (a delete stays final).
    purged: BTreeSet<String>,
    /// Per entity, each purge that took tombstones out, in order: its epoch (1, 2, ...)
    /// and the pull position of the newest tombstone it took. A cursor issued before that
    /// purge and standing before that position may have missed a delete no page can tell
    /// any more.
    purges: BTreeMap<String, Vec<(u64, ChangeKey)>>,
    /// Per entity, the checksums a last pull page computed, until a record of the entity
    /// changes or leaves the pull order.
    version_hashes: VersionHashes,
}

/// Remembered `versionHash` values of one tenant: entity → (live records only, with
/// tombstones too). A memo, not state: two tenants with the same records are equal
/// whatever either remembers, so equality ignores it.
#[derive(Clone, Debug, Default)]
struct VersionHashes(BTreeMap<String, [Option<String>; 2]>);

impl PartialEq for VersionHashes {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl TenantState {
    pub(super) fn records(&self) -> impl Iterator<Item = &ServerRecord> {
        self.records_by_id.values()
    }

    pub(super) fn record_count(&self) -> usize {
        self.records_by_id.len()
    }

    pub(super) fn record(&self, id: &str) -> Option<&ServerRecord> {
        self.records_by_id.get(id)
    }

    pub(super) fn record_by_client_id(&self, client_id: &str) -> Option<&ServerRecord> {
        let id = self.id_by_client_id.get(client_id)?;
        let record = self.records_by_id.get(id);
        assert!(record.is_some(), "clientId index names missing record {id}");
        record
    }

    pub(super) fn commit_stamp(&self) -> u64 {
        self.commit_stamp_high
    }

    /// Takes the next stamp from the tenant's counter: strictly greater than every stamp
    /// handed out before, which is what makes the pull cursor safe (DESIGN §4 #1).
    pub(super) fn allocate_commit_stamp(&mut self) -> u64 {
        let stamp_before = self.commit_stamp_high;
        self.commit_stamp_high += 1;
        assert!(self.commit_stamp_high > stamp_before);
        self.commit_stamp_high
    }

    /// Accepts a stamp chosen elsewhere (the `wall_clock_cursor` defect's client clock),
    /// raising the high-water mark so that records never exceed it.
    pub(super) fn observe_commit_stamp(&mut self, stamp: u64) {
        self.commit_stamp_high = self.commit_stamp_high.max(stamp);
        assert!(stamp <= self.commit_stamp_high);
    }

    pub(super) fn stored_result(&self, op_id: &str) -> Option<&SyncResultItem> {
        self.results_by_op_id.get(op_id)
    }

    /// The entity's `versionHash` over its live records (or, `counts_tombstones`, over
    /// every record still in its pull order), in id order. Computed on the first ask and
    /// remembered until a record of the entity changes: every device that finishes a pull
    /// with nothing changed in between would otherwise hash every record again.
    pub(super) fn version_hash(&mut self, entity: &str, counts_tombstones: bool) -> String {
        let slot = usize::from(counts_tombstones);
        if let Some(hash) = self
            .version_hashes
            .0
            .get(entity)
            .and_then(|hashes| hashes[slot].as_ref())
        {
            return hash.clone();
        }
        let hash = self.compute_version_hash(entity, counts_tombstones);
        self.version_hashes.0.entry(entity.to_owned()).or_default()[slot] = Some(hash.clone());
        hash
    }

    fn compute_version_hash(&self, entity: &str, counts_tombstones: bool) -> String {
        wire::version_hash(
            self.entity_records(entity)
                .filter(|record| !record.is_deleted || counts_tombstones)
                .map(|record| (record.id.as_str(), record.version, &record.data)),
        )
    }

    /// Forgets the entity's remembered checksums: one of its records changed.
    fn forget_version_hashes(&mut self, entity: &str) {
        self.version_hashes.0.remove(entity);
    }

    pub(super) fn store_result(&mut self, result: SyncResultItem) {
        self.store_result_under(result.op_id.clone(), result);
    }

    /// [`Self::store_result`] with the result's `opId` already owned, so the key is not
    /// copied from it.
    pub(super) fn store_result_under(&mut self, op_id: String, result: SyncResultItem) {
        assert_eq!(op_id, result.op_id, "a result is stored under its own opId");
        self.results_by_op_id.insert(op_id, result);
    }

    /// Adds a new record under a fresh server id.
    pub(super) fn insert_record(&mut self, record: ServerRecord) {
        assert!(
            !self.records_by_id.contains_key(&record.id),
            "server id {} reused",
            record.id
        );
        assert!(record.commit_stamp <= self.commit_stamp_high);
        self.id_by_client_id
            .entry(record.client_id.clone())
            .or_insert_with(|| record.id.clone());
        if !self.change_order.contains_key(&record.entity) {
            self.change_order
                .insert(record.entity.clone(), BTreeSet::new());
        }
        let order = self
            .change_order
            .get_mut(&record.entity)
            .expect("the entity's pull order was just added");
        let inserted = order.insert(change_key(&record));
        assert!(inserted);
        self.forget_version_hashes(&record.entity);
        self.records_by_id.insert(record.id.clone(), record);
    }

    /// Purges the tombstones committed before the tenant's last `keep_commits` commits
    /// from the pull order; returns how many it purged.
    pub(super) fn purge_tombstones(&mut self, keep_commits: u64) -> usize {
        let horizon = self.commit_stamp_high.saturating_sub(keep_commits);
        let mut purged = 0;
        for (entity, order) in &mut self.change_order {
            let old_tombstones: Vec<ChangeKey> = order
                .iter()
                .take_while(|(stamp, _)| *stamp <= horizon)
                .filter(|(_, id)| self.records_by_id[id].is_deleted)
                .cloned()
                .collect();
            let Some(newest) = old_tombstones.last().cloned() else {
                continue;
            };
            for key in old_tombstones {
                order.remove(&key);
                self.purged.insert(key.1);
                purged += 1;
            }
            let purges = self.purges.entry(entity.clone()).or_default();
            purges.push((purges.len() as u64 + 1, newest));
            self.version_hashes.0.remove(entity);
        }
        purged
    }

    /// How many purges took tombstones of `entity` out: the epoch a cursor is issued in.
    pub(super) fn purge_epoch(&self, entity: &str) -> u64 {
        self.purges
            .get(entity)
            .map_or(0, |purges| purges.len() as u64)
    }

    /// Whether a purge after `epoch` took a tombstone of `entity` positioned after
    /// `position`: a cursor issued in `epoch` at `position` may have missed that delete.
    pub(super) fn purged_after(&self, entity: &str, epoch: u64, position: (u64, &str)) -> bool {
        self.purges.get(entity).is_some_and(|purges| {
            purges
                .iter()
                .any(|(purge, (stamp, id))| *purge > epoch && (*stamp, id.as_str()) > position)
        })
    }

    /// Replaces a record with its next version; identity fields never change.
    pub(super) fn replace_record(&mut self, record: ServerRecord) {
        let Some(previous) = self.records_by_id.get(&record.id) else {
            panic!("replacing missing record {}", record.id);
        };
        assert_eq!(previous.client_id, record.client_id);
        assert_eq!(previous.entity, record.entity);
        assert_eq!(previous.tenant_id, record.tenant_id);
        assert_eq!(
            record.version,
            previous.version + 1,
            "a write bumps the version by exactly one"
        );
        if previous.is_deleted {
            assert!(record.is_deleted, "a tombstone was resurrected");
        }
        assert!(record.commit_stamp <= self.commit_stamp_high);
        let order = self
            .change_order
            .get_mut(&record.entity)
            .expect("a stored record's entity has a pull order");
        // A purged tombstone written again (a delete replayed) re-enters the pull order.
        let removed = order.remove(&change_key(previous)) || self.purged.remove(&record.id);
        assert!(removed);
        let inserted = order.insert(change_key(&record));
        assert!(inserted);
        self.forget_version_hashes(&record.entity);
        self.records_by_id.insert(record.id.clone(), record);
    }

    /// The entity's records strictly after `after` (a `(commit_stamp, id)` position, or
    /// the start when `None`), in pull order.
    pub(super) fn records_after<'a>(
        &'a self,
        entity: &'a str,
        after: Option<(u64, &str)>,
    ) -> impl Iterator<Item = &'a ServerRecord> + 'a {
        let lower = match after {
            None => Bound::Unbounded,
            Some((stamp, id)) => Bound::Excluded((stamp, id.to_owned())),
        };
        self.change_order
            .get(entity)
            .map(|order| order.range((lower, Bound::Unbounded)))
            .into_iter()
            .flatten()
            .map(move |(_, id)| match self.records_by_id.get(id) {
                Some(record) => record,
                None => panic!("pull order names missing record {id}"),
            })
    }

    /// The entity's last position in pull order, `None` while it has no records: where
    /// a device that pulled everything of the entity stands.
    pub(super) fn last_change(&self, entity: &str) -> Option<(u64, &str)> {
        let (stamp, id) = self.change_order.get(entity)?.last()?;
        Some((*stamp, id.as_str()))
    }

    /// How many rows (live and tombstones) a pull of the entity pages over.
    pub(super) fn entity_len(&self, entity: &str) -> usize {
        self.change_order.get(entity).map_or(0, BTreeSet::len)
    }

    /// Every record of the entity, in no particular order.
    pub(super) fn entity_records<'a>(
        &'a self,
        entity: &'a str,
    ) -> impl Iterator<Item = &'a ServerRecord> + 'a {
        self.records_after(entity, None)
    }

    /// Checks this tenant's tables against each other.
    pub(super) fn check_invariants(&self, tenant_id: &str, defects_ever: ServerDefects) {
        assert_eq!(
            self.change_order.values().map(BTreeSet::len).sum::<usize>() + self.purged.len(),
            self.records_by_id.len()
        );
        let mut client_ids: BTreeSet<&str> = BTreeSet::new();
        for (id, record) in &self.records_by_id {
            assert_eq!(id, &record.id);
            assert_eq!(
                record.tenant_id, tenant_id,
                "record {id} filed under the wrong tenant"
            );
            assert!(
                record.version >= 1,
                "record {id} has version {}",
                record.version
            );
            assert!(
                record.commit_stamp <= self.commit_stamp_high,
                "record {id} is ahead of the commit counter"
            );
            if !defects_ever.wall_clock_cursor {
                assert!(record.commit_stamp >= 1, "record {id} was never committed");
            }
            if self.purged.contains(id) {
                assert!(record.is_deleted, "live record {id} purged");
            } else {
                assert!(
                    self.change_order
                        .get(&record.entity)
                        .is_some_and(|order| order.contains(&change_key(record))),
                    "record {id} missing from pull order"
                );
            }
            let first_client_id_use = client_ids.insert(&record.client_id);
            if !defects_ever.allows_duplicate_client_ids() {
                assert!(
                    first_client_id_use,
                    "clientId {} used twice in tenant {tenant_id}",
                    record.client_id
                );
                assert_eq!(self.id_by_client_id.get(&record.client_id), Some(id));
            }
            assert!(self.id_by_client_id.contains_key(&record.client_id));
        }
        for (client_id, id) in &self.id_by_client_id {
            let record = self.records_by_id.get(id);
            assert!(
                record.is_some_and(|record| &record.client_id == client_id),
                "stale clientId index"
            );
        }
        for (entity, hashes) in &self.version_hashes.0 {
            for (slot, hash) in hashes.iter().enumerate() {
                let Some(hash) = hash else { continue };
                let counts_tombstones = slot == 1;
                let fresh = self.compute_version_hash(entity, counts_tombstones);
                assert_eq!(hash, &fresh, "stale remembered checksum of {entity}");
            }
        }
        for (op_id, result) in &self.results_by_op_id {
            assert_eq!(op_id, &result.op_id);
            if result.success {
                assert!(result.error_code.is_none());
            } else {
                assert!(result.error_code.is_some());
            }
        }
    }
}

fn change_key(record: &ServerRecord) -> ChangeKey {
    (record.commit_stamp, record.id.clone())
}
