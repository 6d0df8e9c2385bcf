//! The `server_pull` target: paging with arbitrary cursors (issued, forged, garbage) and
//! limits over arbitrary pushes to the [`fixture_server`]. It owns the page checks —
//! every row of a page is the server's current row, pages are the next rows after their
//! cursor, paging to the end yields every row once — which `server_push` also applies to
//! the pulls it sends. It drives the server directly: no engine, no simulation kernel.

use super::server_push::{send_and_check, AuthInput, ItemInput, PushRequestInput, ReplayLog};
use super::{
    decode, entity_name, few, fixture_server, request, short_string, Text, FIXTURE_SERVER_IDS,
    REQUESTS_MAX, TENANT_A, TOKEN_A,
};
use crate::server::ReferenceServer;
use arbitrary::Arbitrary;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use sync_engine::wire::{self, Envelope, ErrorCode, PulledItem, SyncPullResponse, SyncRequest};

/// A cursor to pull from.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum CursorInput {
    /// No `lastSyncAt` at all.
    Absent,
    /// `""`: from the start.
    Start,
    /// One the server issued earlier in this run (by index, wrapping).
    Issued(u8),
    /// `"{stamp}.{id}"` built by hand: a position the server never issued.
    Forged { stamp: u64, id: Text },
    /// Any text.
    Any(#[arbitrary(with = short_string)] String),
}

#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum LimitInput {
    Default,
    Small(u8),
    Any(i64),
}

impl LimitInput {
    fn to_limit(&self) -> Option<i64> {
        match self {
            LimitInput::Default => None,
            LimitInput::Small(limit) => Some(i64::from(*limit % 9)),
            LimitInput::Any(limit) => Some(*limit),
        }
    }
}

/// A batch of tenant A's writes, well formed or not.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct BatchInput {
    pub entity: u8,
    #[arbitrary(with = few::<ItemInput, 6>)]
    pub items: Vec<ItemInput>,
}

impl BatchInput {
    fn to_request(&self) -> SyncRequest {
        PushRequestInput::Batch {
            entity: self.entity,
            auth: AuthInput::TenantA,
            items: self.items.clone(),
            tamper: None,
        }
        .to_request()
    }
}

/// One step of a [`server_pull`] run.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum PullStepInput {
    Push(BatchInput),
    /// One page: checked row by row against the server's records.
    Page {
        entity: u8,
        cursor: CursorInput,
        limit: LimitInput,
    },
    /// Pages from the start until `hasMore` is false: every row exactly once, in order.
    PageAll {
        entity: u8,
        limit: u8,
        absent: bool,
    },
    /// Pages everything, writes, then pages from the last cursor: exactly the rows the
    /// writes changed.
    Resume {
        entity: u8,
        limit: u8,
        #[arbitrary(with = few::<BatchInput, 4>)]
        writes: Vec<BatchInput>,
    },
}

/// Input of [`server_pull`]: tenant A's pushes over [`fixture_server`], then steps.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ServerPullInput {
    #[serde(default)]
    #[arbitrary(with = few::<BatchInput, 3>)]
    pub pushes: Vec<BatchInput>,
    pub steps: Vec<PullStepInput>,
}

/// A `(commit_stamp, id)` position in an entity's pull order.
type Position = (u64, String);

/// Pulls never panic and never change state; a page holds exactly the next rows after its
/// cursor, in order; paging from the start until `hasMore` is false yields every row of
/// the entity exactly once (live as items, deleted as deletedIds).
pub fn server_pull(data: &[u8]) {
    if let Some(input) = decode::<ServerPullInput>(data) {
        server_pull_input(&input);
    }
}

pub fn server_pull_input(input: &ServerPullInput) {
    let mut server = fixture_server();
    let mut answers = ReplayLog::default();
    for batch in input.pushes.iter().take(REQUESTS_MAX) {
        send_and_check(&mut server, &batch.to_request(), &mut answers);
    }
    // Cursors the server issued, with the position each stands for.
    let mut issued: Vec<(String, Option<Position>)> = Vec::new();
    for step in input.steps.iter().take(REQUESTS_MAX) {
        match step {
            PullStepInput::Push(batch) => {
                send_and_check(&mut server, &batch.to_request(), &mut answers);
            }
            PullStepInput::Page {
                entity,
                cursor,
                limit,
            } => {
                let entity = entity_name(*entity);
                let (raw, position) = match cursor {
                    CursorInput::Absent => (None, Some(None)),
                    CursorInput::Start => (Some(String::new()), Some(None)),
                    CursorInput::Issued(index) if !issued.is_empty() => {
                        let (raw, position) = &issued[usize::from(*index) % issued.len()];
                        (Some(raw.clone()), Some(position.clone()))
                    }
                    CursorInput::Issued(_) => (None, Some(None)),
                    CursorInput::Forged { stamp, id } => {
                        let id = id.resolve(FIXTURE_SERVER_IDS);
                        (Some(format!("{stamp}.{id}")), Some(Some((*stamp, id))))
                    }
                    CursorInput::Any(raw) => (Some(raw.clone()), None),
                };
                let limit = limit.to_limit();
                if let Some(page) = pull_page(&mut server, entity, raw.as_deref(), limit) {
                    if let Some(position) = position {
                        let expected_limit = usize::try_from(limit.unwrap_or(1000))
                            .expect("an accepted limit is positive");
                        check_page_is_next_rows(&server, entity, &position, expected_limit, &page);
                        issued.push((
                            page.last_sync_at.clone(),
                            page_end(&server, &page, position),
                        ));
                    }
                } else if position.is_some() {
                    // A cursor the server issued (or none) and a limit in range must work;
                    // forged positions may be refused only for ids the server would not issue.
                    let limit_ok = limit.is_none_or(|limit| (1..=10_000).contains(&limit));
                    let forged_but_sane = match cursor {
                        CursorInput::Forged { id, .. } => {
                            let id = id.resolve(FIXTURE_SERVER_IDS);
                            !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
                        }
                        _ => true,
                    };
                    assert!(
                        !(limit_ok && forged_but_sane),
                        "a valid pull was refused: {raw:?} limit {limit:?}"
                    );
                }
            }
            PullStepInput::PageAll {
                entity,
                limit,
                absent,
            } => {
                let entity = entity_name(*entity);
                let start = if *absent { None } else { Some("") };
                let (cursor, position) =
                    page_everything(&mut server, entity, start, None, page_limit(*limit));
                issued.push((cursor, position));
            }
            PullStepInput::Resume {
                entity,
                limit,
                writes,
            } => {
                let entity = entity_name(*entity);
                let limit = page_limit(*limit);
                let (cursor, position) =
                    page_everything(&mut server, entity, Some(""), None, limit);
                for batch in writes.iter().take(4) {
                    send_and_check(&mut server, &batch.to_request(), &mut answers);
                }
                page_everything(&mut server, entity, Some(&cursor), position, limit);
            }
        }
    }
}

fn page_limit(raw: u8) -> i64 {
    i64::from(raw % 8) + 1
}

/// Sends one pull of tenant A; `None` if it was refused. Checks that it changed nothing.
fn pull_page(
    server: &mut ReferenceServer,
    entity: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Option<SyncPullResponse> {
    let request = request(
        &format!("syncPull{entity}"),
        TENANT_A,
        TOKEN_A,
        json!({"lastSyncAt": cursor, "tenantId": TENANT_A, "limit": limit}),
    );
    let before = server.clone();
    let response = server.handle(&request);
    assert!(*server == before, "a pull changed state");
    match wire::parse_envelope(&request.operation_name, &response) {
        Envelope::Data(payload) => {
            let page: SyncPullResponse =
                serde_json::from_value(payload).expect("a pull answer is a SyncPullResponse");
            check_page_rows(server, TENANT_A, entity, &page);
            Some(page)
        }
        Envelope::Error { code, .. } => {
            assert_eq!(code, Some(ErrorCode::Validation), "{response}");
            None
        }
    }
}

/// The entity's rows in pull order, with their positions.
fn pull_order(server: &ReferenceServer, tenant_id: &str, entity: &str) -> Vec<Position> {
    let mut order: Vec<Position> = server
        .records(tenant_id)
        .into_iter()
        .filter(|record| record.entity == entity)
        .map(|record| (record.commit_stamp, record.id.clone()))
        .collect();
    order.sort();
    order
}

/// Every row of a page is a row of this tenant and entity, in its current state, and
/// each list is in pull order; the checksum covers the entity's live rows.
pub(super) fn check_page_rows(
    server: &ReferenceServer,
    tenant_id: &str,
    entity: &str,
    page: &SyncPullResponse,
) {
    let records = server.records(tenant_id);
    let find = |id: &str| {
        records
            .iter()
            .find(|record| record.id == id && record.entity == entity)
            .copied()
    };
    let mut item_positions = Vec::new();
    for raw in &page.items {
        let item: PulledItem =
            serde_json::from_value(raw.clone()).expect("a page item is a PulledItem");
        let Some(record) = find(&item.id) else {
            panic!("page item {} is not a {entity} of {tenant_id}", item.id);
        };
        assert!(!record.is_deleted, "a tombstone was sent as an item");
        assert_eq!(item.client_id, record.client_id);
        assert_eq!(item.version, record.version);
        assert_eq!(item.updated_at, record.updated_at);
        assert_eq!(item.space_id, record.space_id);
        assert_eq!(item.data, record.data);
        item_positions.push((record.commit_stamp, record.id.clone()));
    }
    let mut deleted_positions = Vec::new();
    for id in &page.deleted_ids {
        let Some(record) = find(id) else {
            panic!("deleted id {id} is not a {entity} of {tenant_id}");
        };
        assert!(record.is_deleted, "a live row was sent as deleted");
        deleted_positions.push((record.commit_stamp, record.id.clone()));
    }
    for positions in [&item_positions, &deleted_positions] {
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "page rows out of order: {positions:?}"
        );
    }
    let live = records
        .iter()
        .filter(|record| record.entity == entity && !record.is_deleted)
        .map(|record| (record.id.as_str(), record.version, &record.data));
    // The checksum comes with the last page only, where the client compares it.
    let expected_hash = (!page.has_more).then(|| wire::version_hash(live));
    assert_eq!(page.version_hash, expected_hash);
}

/// A page from `position` holds exactly the next `limit` rows after it.
fn check_page_is_next_rows(
    server: &ReferenceServer,
    entity: &str,
    position: &Option<Position>,
    limit: usize,
    page: &SyncPullResponse,
) {
    let after: Vec<Position> = pull_order(server, TENANT_A, entity)
        .into_iter()
        .filter(|row| position.as_ref().is_none_or(|position| row > position))
        .collect();
    let expected: BTreeSet<&str> = after
        .iter()
        .take(limit)
        .map(|(_, id)| id.as_str())
        .collect();
    let got: BTreeSet<&str> = page
        .items
        .iter()
        .filter_map(|item| item.get("id").and_then(Value::as_str))
        .chain(page.deleted_ids.iter().map(String::as_str))
        .collect();
    assert_eq!(got, expected, "a page is the next rows after its cursor");
    assert_eq!(
        page.has_more,
        after.len() > limit,
        "hasMore says whether rows remain"
    );
}

/// The position a page's `lastSyncAt` stands for: its last row, or where it started.
fn page_end(
    server: &ReferenceServer,
    page: &SyncPullResponse,
    start: Option<Position>,
) -> Option<Position> {
    let records = server.records(TENANT_A);
    page.items
        .iter()
        .filter_map(|item| item.get("id").and_then(Value::as_str))
        .chain(page.deleted_ids.iter().map(String::as_str))
        .filter_map(|id| records.iter().find(|record| record.id == id))
        .map(|record| (record.commit_stamp, record.id.clone()))
        .max()
        .or(start)
}

/// Pages from `start` until `hasMore` is false; checks that the pages hold every row after
/// `position` exactly once, in order. Returns the final cursor and its position.
fn page_everything(
    server: &mut ReferenceServer,
    entity: &str,
    start: Option<&str>,
    position: Option<Position>,
    limit: i64,
) -> (String, Option<Position>) {
    let expected: Vec<Position> = pull_order(server, TENANT_A, entity)
        .into_iter()
        .filter(|row| position.as_ref().is_none_or(|position| row > position))
        .collect();
    let records: Vec<crate::server::ServerRecord> =
        server.records(TENANT_A).into_iter().cloned().collect();
    let pages_max = expected.len() / usize::try_from(limit).expect("positive") + 2;
    let mut cursor = start.map(str::to_owned);
    let mut seen: Vec<Position> = Vec::new();
    let mut end = position;
    for _ in 0..pages_max {
        let Some(page) = pull_page(server, entity, cursor.as_deref(), Some(limit)) else {
            panic!("paging with an issued cursor was refused: {cursor:?}");
        };
        let mut rows: Vec<Position> = Vec::new();
        for raw in &page.items {
            let id = raw["id"].as_str().expect("item id");
            let record = records.iter().find(|record| record.id == id).expect("row");
            assert!(!record.is_deleted, "live rows come as items");
            rows.push((record.commit_stamp, record.id.clone()));
        }
        for id in &page.deleted_ids {
            let record = records.iter().find(|record| &record.id == id).expect("row");
            assert!(record.is_deleted, "deleted rows come as deletedIds");
            rows.push((record.commit_stamp, record.id.clone()));
        }
        rows.sort();
        if page.has_more {
            assert_eq!(
                rows.len(),
                usize::try_from(limit).expect("positive"),
                "a full page"
            );
        }
        if let (Some(last_seen), Some(first)) = (seen.last(), rows.first()) {
            assert!(last_seen < first, "pages overlap or go backwards");
        }
        if let Some(last) = rows.last() {
            end = Some(last.clone());
        }
        seen.extend(rows);
        cursor = Some(page.last_sync_at.clone());
        if !page.has_more {
            assert_eq!(
                seen, expected,
                "paging to the end yields every row exactly once"
            );
            let again = pull_page(server, entity, cursor.as_deref(), Some(limit))
                .expect("the final cursor is valid");
            assert!(again.items.is_empty() && again.deleted_ids.is_empty());
            assert!(!again.has_more);
            assert_eq!(
                again.last_sync_at, page.last_sync_at,
                "an empty page keeps its cursor"
            );
            return (page.last_sync_at, end);
        }
    }
    panic!("paging did not finish within {pages_max} pages of {limit}");
}
