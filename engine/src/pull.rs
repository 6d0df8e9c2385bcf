//! Pull pages: reading one, checking what it may touch, and merging it.
//!
//! A page answers a pull of one entity, so it may only touch that entity's records. Before
//! anything of a page is written, [`overreach`] checks every row and tombstone it names
//! against the records the device holds; a page that reaches past its entity (or, in an
//! incremental pull, would move a record to another space) is refused whole by the caller,
//! like any other impossible answer. Refusing before writing is what keeps "a page, its
//! merge and its cursor" one transaction that happens entirely or not at all: nothing of
//! a refused page is ever written, so there is nothing to roll back.
//!
//! The merge itself follows the conflict policy (DESIGN.md §5). This module never opens or
//! commits a transaction: the sync machine decides what commits together.

use crate::conflict::{self, PulledVerdict};
use crate::record::{OpStatus, Record};
use crate::store;
use crate::sync::{plausible_stamp, plausible_version};
use crate::wire::{PulledItem, SyncPullResponse};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// How a page will be applied, which decides what it may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageKind {
    /// Merged record by record into what the device holds.
    Incremental,
    /// Part of a confirmed force-from-server, which replaces every record of the entity.
    Replacement,
}

/// Watches one run of pull pages (from a first page to the one that says no more follow)
/// for a cursor that comes round again: a server whose pages with more to come hand back
/// the request's own cursor, or cycle through a few, would be asked for the same pages
/// forever. Constant memory whatever the run's length (Brent's cycle detection): besides
/// the request's own cursor, one earlier cursor is kept and replaced at every power of two
/// of pages, so a cycle of any length is seen within three times the pages up to its end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PagingWatch {
    /// The cursor a page must not hand back: the run's first, then the latest one kept.
    kept: String,
    /// Pages since `kept` was kept, and after how many the next one is kept.
    pages: u64,
    pages_to_keep: u64,
}

impl PagingWatch {
    /// A run of pages starts from `cursor` (`""` for the start).
    pub(crate) fn start(&mut self, cursor: &str) {
        self.kept.clear();
        self.kept.push_str(cursor);
        self.pages = 0;
        self.pages_to_keep = 1;
    }

    /// Whether a page asked for from `sent` that hands back `next` (with more to come)
    /// moves the run on; remembers it when it does.
    pub(crate) fn advances(&mut self, sent: &str, next: &str) -> bool {
        if next == sent || next == self.kept {
            return false;
        }
        self.pages += 1;
        if self.pages == self.pages_to_keep {
            self.kept.clear();
            self.kept.push_str(next);
            self.pages = 0;
            self.pages_to_keep = self.pages_to_keep.saturating_mul(2);
        }
        assert!(self.pages < self.pages_to_keep);
        true
    }
}

/// Reads a pull page; `None` when it is malformed or carries impossible numbers.
pub(crate) fn parse_pull_page(payload: Value) -> Option<(SyncPullResponse, Vec<PulledItem>)> {
    let (page, items) = crate::wire::read_pull_page(payload)?;
    well_formed_page(page, items)
}

/// The page and its items, unless an item or a deleted id is one no server could send.
pub(crate) fn well_formed_page(
    page: SyncPullResponse,
    items: Vec<PulledItem>,
) -> Option<(SyncPullResponse, Vec<PulledItem>)> {
    let well_formed = items.iter().all(|item| {
        !item.id.is_empty()
            && !item.client_id.is_empty()
            && plausible_version(item.version)
            && plausible_stamp(item.updated_at)
            && crate::engine::validate_space_id(&item.space_id).is_ok()
    }) && page.deleted_ids.iter().all(|id| !id.is_empty());
    well_formed.then_some((page, items))
}

/// Why a page of `entity` must be refused, or `None` when it stays within what a pull of
/// `entity` may touch:
///
/// - every record a row names, by its client id or by its server id, is a record of
///   `entity` (else the row would rewrite, re-map or shadow a record of another entity);
/// - every server id in `deletedIds` the device knows is a record of `entity`;
/// - no two rows of the page give one server id to two different records (a replacement
///   could not store both, and a merge would keep an arbitrary one);
/// - in an incremental pull, a row naming a record the device holds keeps it in its space:
///   this engine never moves a record between spaces, so a server that says one moved is
///   wrong or was written to by another kind of client, and applying it would silently
///   take the record out of the space the user put it in. A confirmed force-from-server
///   replaces every record of the entity with the server's copy, so there a row may put a
///   record of its own entity in another space: the user chose the server's copy of all
///   of them, and this is how a device adopts such a move.
///
/// Reads only; the page is judged against the database as it was before the page.
///
/// A page it does not refuse comes back with, for each row, whether the row is new to the
/// device: neither its client id nor its server id names anything the device holds, and
/// no earlier row of the page has its client id. The merge of a new row need not look
/// either up again.
pub(crate) fn overreach(
    conn: &rusqlite::Connection,
    entity: &str,
    kind: PageKind,
    items: &[PulledItem],
    deleted_ids: &[String],
) -> rusqlite::Result<Result<Vec<bool>, String>> {
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    let mut client_ids: BTreeSet<&str> = BTreeSet::new();
    let mut new_rows = Vec::with_capacity(items.len());
    let newest = store::NewestIds::read(conn)?;
    // A page whose server ids and client ids both rise strictly from row to row names no
    // id twice, so neither needs remembering (a page in the order the server assigned ids
    // to records created in order): one comparison per row instead of two map inserts.
    let no_id_twice = items
        .windows(2)
        .all(|pair| pair[0].id < pair[1].id && pair[0].client_id < pair[1].client_id);
    for item in items {
        if !no_id_twice {
            if let Some(first) = claimed.insert(&item.id, &item.client_id) {
                if first != item.client_id {
                    return Ok(Err(format!(
                        "server id {} is given to two records ({first} and {})",
                        item.id, item.client_id
                    )));
                }
            }
        }
        // A row past the newest ids the device holds names nothing it holds: what the
        // lookups would find is nothing (the usual case of a first sync).
        let (by_client_id, by_server_id) = if newest.names_nothing_held(&item.client_id, &item.id) {
            (None, None)
        } else {
            store::placements(conn, &item.client_id, &item.id)?
        };
        let first_of_client_id = no_id_twice || client_ids.insert(&item.client_id);
        new_rows.push(first_of_client_id && by_client_id.is_none() && by_server_id.is_none());
        for named in [by_client_id, by_server_id].into_iter().flatten() {
            if named.entity != entity {
                return Ok(Err(format!(
                    "a {entity} row ({} / {}) names {} record {}",
                    item.client_id, item.id, named.entity, named.client_id
                )));
            }
            if kind == PageKind::Incremental && named.space_id != item.space_id {
                return Ok(Err(format!(
                    "a {entity} row ({} / {}) moves record {} from space {} to {}",
                    item.client_id, item.id, named.client_id, named.space_id, item.space_id
                )));
            }
        }
    }
    for server_id in deleted_ids {
        if let Some(named) = store::mapped_placement(conn, server_id)? {
            if named.entity != entity {
                return Ok(Err(format!(
                    "a {entity} tombstone {server_id} names {} record {}",
                    named.entity, named.client_id
                )));
            }
        }
    }
    assert_eq!(new_rows.len(), items.len());
    Ok(Ok(new_rows))
}

/// Merges one pulled live record under the conflict policy (DESIGN.md §5). A record the
/// device did not hold is a change for certain: it is written without a change note and
/// added to `created`, for the page's commit to announce. `new_row`: [`overreach`] found
/// the row new to the device, so neither of its ids is looked up again and `new_rows`
/// (the page's writer of such rows) writes it.
pub(crate) fn merge_pulled_item(
    tx: &rusqlite::Connection,
    entity: &str,
    item: &PulledItem,
    new_row: bool,
    new_rows: &mut store::NewRowWriter<'_>,
    planted: crate::engine::PlantedDefects,
    created: &mut Vec<String>,
) -> rusqlite::Result<PulledVerdict> {
    if new_row {
        // Nothing local to judge against (`conflict::judge_pulled` stores the server's
        // copy of a record the device does not hold). Rows of the page merged before this
        // one are other records (`new_row` says no earlier row has this client id, and a
        // server id given to two records is refused), and a page's transaction removes no
        // record row before its rows are merged: the record and its mapping are inserted
        // as the server holds them.
        new_rows.insert(entity, item)?;
        created.push(item.client_id.clone());
        return Ok(PulledVerdict::Stored);
    }
    let server_record = Record {
        client_id: item.client_id.clone(),
        server_id: Some(item.id.clone()),
        entity: entity.to_owned(),
        space_id: item.space_id.clone(),
        version: item.version,
        base_version: item.version,
        updated_at: item.updated_at,
        is_deleted: false,
        data: item.data.clone(),
    };
    let local = store::get_record(tx, &item.client_id)?;
    // `overreach` refused the page otherwise.
    if let Some(local) = &local {
        assert_eq!(local.entity, entity, "a page checked for its entity");
    }
    let mapped_here = local
        .as_ref()
        .is_some_and(|local| local.server_id.as_ref() == Some(&item.id));
    if !mapped_here {
        if let Some(owner) = store::client_id_for_server_id(tx, &item.id)? {
            if owner != item.client_id {
                // Two client ids for one server id: a broken server. Keep the first mapping.
                return Ok(PulledVerdict::KeptLocal);
            }
        }
    }
    // Every queued op has its record (`Engine::check_invariants`): no record, no ops.
    let pending = match &local {
        Some(_) => store::unfinished_ops_for_record(tx, &item.client_id)?,
        None => Vec::new(),
    };
    let echo = |local: &Record| {
        if planted.same_version_keeps_local_data {
            let mut same = local.clone();
            same.data.clone_from(&server_record.data);
            same == server_record
        } else {
            *local == server_record
        }
    };
    if pending.is_empty() && local.as_ref().is_some_and(echo) {
        // The device already holds exactly this version (typically the echo of its own
        // push): storing it again would change nothing.
        return Ok(PulledVerdict::Stored);
    }
    let verdict = conflict::judge_pulled(local.as_ref(), &pending, &server_record);
    match &verdict {
        // A page's transaction removes no record row before its rows are merged (only a
        // repair's last step does, after them), so a record absent now was absent when
        // the transaction began.
        PulledVerdict::Stored if local.is_none() => {
            store::insert_pulled_record(tx, &server_record)?;
            created.push(item.client_id.clone());
        }
        PulledVerdict::Stored => {
            store::put_record_with_base(tx, &server_record, &server_record.data, item.updated_at)?;
        }
        PulledVerdict::Superseded(_) => {
            store::drop_pending_ops_for_record(tx, &item.client_id)?;
            store::delete_conflict_for_record(tx, &item.client_id)?;
            store::put_record_with_base(tx, &server_record, &server_record.data, item.updated_at)?;
        }
        PulledVerdict::KeptLocal
            if planted.pull_overwrites_pending_edit
                && local.as_ref().is_some_and(|local| {
                    !local.is_deleted && local.updated_at > item.updated_at
                }) =>
        {
            store::put_record_with_base(tx, &server_record, &server_record.data, item.updated_at)?;
        }
        PulledVerdict::KeptLocal | PulledVerdict::Conflict(_) => {
            store::set_id_mapping(tx, &item.client_id, &item.id, entity)?;
            // An open conflict always shows the newest server version: "use server" must
            // adopt what the server holds now, not what it held when the conflict began.
            if let Some(mut open) = store::conflict_for_record(tx, &item.client_id)? {
                if item.version > open.server_version {
                    open.server_version = item.version;
                    open.server_updated_at = item.updated_at;
                    open.server_data = item.data.clone();
                    store::put_conflict(tx, &open)?;
                }
            }
        }
    }
    Ok(verdict)
}

/// A pulled tombstone: deletes win, so the record is deleted locally and its pending ops
/// dropped. Returns the dropped op ids.
pub(crate) fn merge_pulled_delete(
    tx: &rusqlite::Connection,
    server_id: &str,
) -> rusqlite::Result<Vec<String>> {
    let Some(client_id) = store::client_id_for_server_id(tx, server_id)? else {
        return Ok(Vec::new());
    };
    let Some(mut record) = store::get_record(tx, &client_id)? else {
        return Ok(Vec::new());
    };
    let dropped: Vec<String> = store::unfinished_ops_for_record(tx, &client_id)?
        .into_iter()
        .filter(|op| op.status == OpStatus::Pending)
        .map(|op| op.op_id)
        .collect();
    store::drop_pending_ops_for_record(tx, &client_id)?;
    store::delete_conflict_for_record(tx, &client_id)?;
    if !record.is_deleted {
        record.is_deleted = true;
        store::put_record(tx, &record)?;
    }
    Ok(dropped)
}

/// After a whole pass (a resync or a repair): a mapped record the pass did not list was
/// deleted on the server, which has purged the tombstone (a record reaches the server
/// before it gets its server id, and a whole pass lists every record the server has).
/// Deletes win, as for a tombstone pulled in time: its pending ops are dropped and its
/// conflict closed (a conflict's server side is stale: "use server" must not bring the
/// record back). A record whose failed op is kept as a report becomes a tombstone, the
/// others go. Returns the dropped ops as `(op id, client id)`.
pub(crate) fn forget_records_missing_on_server(
    tx: &rusqlite::Connection,
    entity: &str,
    seen: &BTreeSet<String>,
) -> rusqlite::Result<Vec<(String, String)>> {
    let mut dropped = Vec::new();
    for record in store::list_records(tx, entity, None, false)? {
        let Some(server_id) = &record.server_id else {
            continue;
        };
        if seen.contains(server_id) {
            continue;
        }
        for op_id in merge_pulled_delete(tx, server_id)? {
            dropped.push((op_id, record.client_id.clone()));
        }
        if !store::has_any_op(tx, &record.client_id)? {
            store::delete_record(tx, &record.client_id)?;
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::PagingWatch;

    /// Runs pages from `""` whose cursors are `next(page)`; the page at which the watch
    /// sees no progress, if any within `pages_max`.
    fn stall_at(next: impl Fn(u64) -> String, pages_max: u64) -> Option<u64> {
        let mut watch = PagingWatch::default();
        watch.start("");
        let mut sent = String::new();
        for page in 0..pages_max {
            let cursor = next(page);
            if !watch.advances(&sent, &cursor) {
                return Some(page);
            }
            sent = cursor;
        }
        None
    }

    // Proves a run of pages that keeps advancing is never taken for a stall, and that a
    // repeated cursor or a cycle of any length is seen within three times the pages up to
    // its end.
    #[test]
    fn a_cursor_that_comes_round_again_is_seen_and_progress_is_not() {
        assert_eq!(stall_at(|page| format!("c{page}"), 10_000), None);
        assert_eq!(stall_at(|_| String::new(), 10), Some(0));
        assert_eq!(stall_at(|page| format!("c{}", page.min(3)), 10), Some(4));
        for cycle in 2..40 {
            let tail = 7;
            let next = |page: u64| {
                format!(
                    "c{}",
                    if page < tail {
                        page
                    } else {
                        tail + (page - tail) % cycle
                    }
                )
            };
            let stalled = stall_at(next, 10_000).expect("a cycle is seen");
            assert!(
                stalled <= 3 * (tail + cycle),
                "cycle {cycle} seen at page {stalled}"
            );
        }
    }
}
