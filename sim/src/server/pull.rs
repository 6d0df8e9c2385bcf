//! Pull: pages through one entity's changed rows in commit order.
//!
//! This module owns the cursor format and paging. A cursor is `"{commit_stamp}.{id}"` and
//! means "after this row" in `(commit_stamp, id)` order; several rows share one stamp (one
//! push request), so the id breaks ties and a page boundary may fall anywhere. The cursor
//! is the server's own position, never a client clock (DESIGN §4 #1). Pulls never change
//! state.

use super::state::TenantState;
use super::{ReferenceServer, ServerRecord};
use serde_json::{Map, Value};
use sync_engine::wire::{self, PulledItem, SyncPullResponse, SyncPullVariables, SyncRequest};

const LIMIT_DEFAULT: i64 = 1000;
const LIMIT_MAX: i64 = 10_000;
/// Longest server id a cursor may name; server ids are far shorter.
const CURSOR_ID_LEN_MAX: usize = 128;

/// A position in `(commit_stamp, id)` order: the last row a client has seen.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Cursor {
    commit_stamp: u64,
    id: String,
    /// The tenant's purge epoch of the entity when the cursor was issued (written as an
    /// `@epoch` suffix once tombstones were purged): a cursor issued before a purge, and
    /// standing before a tombstone it took, is answered `RESYNC_REQUIRED`.
    epoch: u64,
}

impl Cursor {
    /// Reads `"{stamp}.{id}"` or `"{stamp}.{id}@{epoch}"`; `None` means the input is
    /// not a cursor.
    fn parse(raw: &str) -> Option<Cursor> {
        let digits =
            |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
        let (position, epoch) = match raw.rsplit_once('@') {
            Some((position, epoch)) if digits(epoch) => (position, epoch.parse().ok()?),
            _ => (raw, 0),
        };
        let (stamp, id) = position.split_once('.')?;
        let id_is_sane =
            !id.is_empty() && id.len() <= CURSOR_ID_LEN_MAX && !id.chars().any(char::is_control);
        if !digits(stamp) || !id_is_sane {
            return None;
        }
        Some(Cursor {
            commit_stamp: stamp.parse().ok()?,
            id: id.to_owned(),
            epoch,
        })
    }

    fn format(&self) -> String {
        match self.epoch {
            0 => format!("{}.{}", self.commit_stamp, self.id),
            epoch => format!("{}.{}@{epoch}", self.commit_stamp, self.id),
        }
    }
}

/// A validated pull: where to start and how many rows at most.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PageRequest {
    /// `None` means from the start.
    after: Option<Cursor>,
    limit: usize,
}

impl PageRequest {
    /// Whether the page starts before a tombstone the tenant purged: the pages after it
    /// can no longer carry every delete, so the device must pull from the start.
    pub(super) fn starts_before_purge(&self, tenant: &TenantState, entity: &str) -> bool {
        self.after.as_ref().is_some_and(|after| {
            tenant.purged_after(entity, after.epoch, (after.commit_stamp, after.id.as_str()))
        })
    }

    pub(super) fn parse(variables: &SyncPullVariables) -> Result<PageRequest, String> {
        let after = match variables.last_sync_at.as_deref() {
            None | Some("") => None,
            Some(raw) => match Cursor::parse(raw) {
                Some(cursor) => Some(cursor),
                None => {
                    return Err(format!(
                        "lastSyncAt {raw:?} is not a cursor this server issued"
                    ))
                }
            },
        };
        let limit = variables.limit.unwrap_or(LIMIT_DEFAULT);
        if !(1..=LIMIT_MAX).contains(&limit) {
            return Err(format!("limit must be 1-{LIMIT_MAX}, got {limit}"));
        }
        let limit = usize::try_from(limit).map_err(|_| format!("limit {limit} does not fit"))?;
        assert!(limit >= 1);
        Ok(PageRequest { after, limit })
    }
}

/// The cursor a device holds once it has pulled every row of `entity`: the last row's
/// position, or `""` (the start) while the entity has no rows. Push answers carry it
/// from just before and just after the push.
pub(super) fn caught_up_cursor(tenant: &TenantState, entity: &str) -> String {
    tenant
        .last_change(entity)
        .map_or_else(String::new, |(commit_stamp, id)| {
            Cursor {
                commit_stamp,
                id: id.to_owned(),
                epoch: tenant.purge_epoch(entity),
            }
            .format()
        })
}

impl ReferenceServer {
    /// Whether the pull cursor `raw` (as a client sends it, or as a page hands it out)
    /// sits inside a commit of `entity` in the tenant: the next row after it shares its
    /// commit stamp. Reads only; `false` for anything that is not a cursor. The
    /// simulator's code-path probes ask this; the server itself never needs it.
    pub fn cursor_inside_commit(&self, tenant_id: &str, entity: &str, raw: &str) -> bool {
        let (Some(cursor), Some(tenant)) = (Cursor::parse(raw), self.tenants.get(tenant_id)) else {
            return false;
        };
        tenant
            .records_after(entity, Some((cursor.commit_stamp, cursor.id.as_str())))
            .next()
            .is_some_and(|row| row.commit_stamp == cursor.commit_stamp)
    }

    /// Reads one page of the entity's rows after the cursor; returns the
    /// `SyncPullResponse` with `items` empty, and its items (see [`pull_page_json`]).
    /// Changes no record; it may only remember the checksum it computed (see
    /// [`TenantState::version_hash`]).
    pub(super) fn handle_pull(
        &mut self,
        tenant_id: &str,
        entity: &str,
        page: &PageRequest,
    ) -> (SyncPullResponse, Vec<PulledItem>) {
        let no_rows = TenantState::default();
        let tenant = self.tenants.get(tenant_id).unwrap_or(&no_rows);
        let after = page
            .after
            .as_ref()
            .map(|cursor| (cursor.commit_stamp, cursor.id.as_str()));
        // One row past the limit tells whether more remain without a second scan.
        let mut rows: Vec<&ServerRecord> = tenant
            .records_after(entity, after)
            .take(page.limit + 1)
            .collect();
        let mut has_more = rows.len() > page.limit;
        if self.defects.pages_end_at_commit_boundaries && has_more {
            // The planted bug: the page ends at a commit boundary, whatever the limit.
            let split = rows[page.limit].commit_stamp;
            let first_of_split = rows
                .iter()
                .position(|row| row.commit_stamp == split)
                .expect("the row past the limit is in the page");
            if first_of_split > 0 {
                rows.truncate(first_of_split);
            } else {
                rows = tenant
                    .records_after(entity, after)
                    .take_while(|row| row.commit_stamp == split)
                    .collect();
                has_more = tenant
                    .records_after(entity, after)
                    .nth(rows.len())
                    .is_some();
            }
        } else {
            rows.truncate(page.limit);
            assert!(rows.len() <= page.limit);
            if has_more {
                assert_eq!(rows.len(), page.limit);
            }
        }
        // An empty page keeps the incoming position, so a cursor never moves backwards;
        // every cursor handed out is of the current purge epoch (the request passed the
        // purge check, so nothing purged after its own epoch lies past it).
        let epoch = tenant.purge_epoch(entity);
        let last_sync_at = rows
            .last()
            .map(|last| Cursor {
                commit_stamp: last.commit_stamp,
                id: last.id.clone(),
                epoch,
            })
            .or_else(|| page.after.clone().map(|after| Cursor { epoch, ..after }));
        if let (Some(after), Some(last_sync_at)) = (&page.after, &last_sync_at) {
            assert!(last_sync_at >= after, "a cursor never moves backwards");
        }
        if self.defects.drop_last_row_of_page && has_more {
            // The planted bug: the row leaves the page but the cursor still covers it.
            rows.pop();
        }
        let mut items = Vec::with_capacity(rows.len());
        let mut deleted_ids = Vec::new();
        for record in rows {
            if record.is_deleted {
                if !self.defects.omit_deleted_ids {
                    deleted_ids.push(record.id.clone());
                }
            } else {
                items.push(pulled_item(record));
            }
        }
        // The checksum is compared once the client has every page, so only the last page
        // carries it: computing it per page would cost O(rows) per page.
        let counts_tombstones = self.defects.version_hash_counts_tombstones;
        let version_hash = (!has_more).then(|| match self.tenants.get_mut(tenant_id) {
            Some(tenant) => tenant.version_hash(entity, counts_tombstones),
            None => wire::version_hash(std::iter::empty()),
        });
        let response = SyncPullResponse {
            items: Vec::new(),
            deleted_ids,
            last_sync_at: last_sync_at
                .as_ref()
                .map_or_else(String::new, Cursor::format),
            version_hash,
            has_more,
        };
        (response, items)
    }
}

/// A live record as a page's `items` carry it.
pub(super) fn pulled_item(record: &ServerRecord) -> PulledItem {
    PulledItem {
        id: record.id.clone(),
        client_id: record.client_id.clone(),
        space_id: record.space_id.clone(),
        version: record.version,
        updated_at: record.updated_at,
        data: record.data.clone(),
    }
}

/// The `SyncPullResponse` JSON of a page from [`ReferenceServer::handle_pull`].
pub(super) fn pull_page_json(page: SyncPullResponse, items: Vec<PulledItem>) -> Value {
    assert!(page.items.is_empty(), "a page's items come apart from it");
    let mut json = serde_json::to_value(page).expect("wire types always serialize to JSON");
    // Moved in as JSON rather than serialized: serializing a `Value` copies it.
    json["items"] = Value::Array(items.into_iter().map(pulled_item_json).collect());
    json
}

/// The JSON `serde_json::to_value` renders for `item`, built directly so that its strings
/// and data move into the answer rather than being copied (a pull renders every row it
/// pages over). A test holds the two equal.
pub(super) fn pulled_item_json(item: PulledItem) -> Value {
    let mut json = Map::new();
    json.insert("id".to_owned(), Value::String(item.id));
    json.insert("clientId".to_owned(), Value::String(item.client_id));
    json.insert("spaceId".to_owned(), Value::String(item.space_id));
    json.insert("version".to_owned(), Value::from(item.version));
    json.insert("updatedAt".to_owned(), Value::from(item.updated_at.0));
    json.insert("data".to_owned(), Value::Object(item.data));
    json.into()
}

/// The endless-paging fault's answer: `response`, a pull page for `request`, made into a
/// page that does not advance — the request's own cursor (`""` for none), `hasMore:
/// true`, no checksum (only a last page carries one), and no rows unless `with_items`.
/// An error envelope, or the answer to anything but a pull, is left as it is.
pub(super) fn without_progress(
    request: &SyncRequest,
    mut response: Value,
    with_items: bool,
) -> Value {
    let cursor = request
        .variables
        .to_json()
        .get("lastSyncAt")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(page) = response
        .get_mut("data")
        .and_then(|data| data.get_mut(&request.operation_name))
        .and_then(Value::as_object_mut)
    else {
        return response;
    };
    if !page.contains_key("hasMore") {
        return response;
    }
    page.insert("lastSyncAt".to_owned(), Value::String(cursor));
    page.insert("hasMore".to_owned(), Value::Bool(true));
    page.insert("versionHash".to_owned(), Value::Null);
    if !with_items {
        page.insert("items".to_owned(), Value::Array(Vec::new()));
        page.insert("deletedIds".to_owned(), Value::Array(Vec::new()));
    }
    assert_eq!(page.get("hasMore"), Some(&Value::Bool(true)));
    response
}
