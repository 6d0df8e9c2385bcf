//! Push: validates a whole batch, then applies its items in payload order.
//!
//! This module owns the server's write policy: idempotent replay by `opId`, insert
//! matching by `clientId`, the version check and, for concurrent writes, the conflict
//! policy of DESIGN §5 (newer HLC stamp wins, deletes win, tombstones are final, equal
//! stamps with different data go to the user), and the business rules that refuse some
//! records outright (`refuse_client_id`). It never writes anything before the whole
//! batch has been validated, so a malformed batch is never partly applied.

use super::pull;
use super::rules;
use super::state::TenantState;
use super::{Effect, ReferenceServer, ServerDefects, ServerRecord};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use sync_engine::hlc::HlcStamp;
use sync_engine::wire::{
    ConflictPayload, ErrorCode, Operation, SyncPushItem, SyncPushResponse, SyncResultItem,
};

/// Most items in one push request.
pub(super) const PAYLOAD_LEN_MAX: usize = 1000;
const OP_ID_LEN_MAX: usize = 128;
const CLIENT_ID_LEN_MAX: usize = 128;
const ID_LEN_MAX: usize = 128;
const SPACE_ID_LEN_MAX: usize = 64;

/// A push item that passed validation: its ids have sane lengths, an insert has a
/// `clientId`, an update or delete names a record, and `data` is a JSON object.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PushItem {
    op_id: String,
    operation: Operation,
    id: Option<String>,
    client_id: Option<String>,
    data: Map<String, Value>,
    base_version: Option<i64>,
    force: bool,
    space_id: String,
    updated_at: HlcStamp,
}

/// Checks a whole batch before anything is applied; the error names the first bad item.
pub(super) fn validate(payload: Vec<SyncPushItem>) -> Result<Vec<PushItem>, String> {
    if payload.is_empty() || payload.len() > PAYLOAD_LEN_MAX {
        return Err(format!(
            "payload must hold 1-{PAYLOAD_LEN_MAX} items, it holds {}",
            payload.len()
        ));
    }
    let payload_len = payload.len();
    let items: Vec<PushItem> = payload
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            validate_item(item).map_err(|problem| format!("payload[{index}]: {problem}"))
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(items.len(), payload_len);
    Ok(items)
}

/// Explains why push variables did not deserialize, naming the first bad item when the
/// payload is an array: serde's own message does not say where inside the payload it
/// failed, and a client needs to know which op to look at.
pub(super) fn describe_variables_error(variables: &Value, error: &serde_json::Error) -> String {
    let bad_item = variables
        .get("payload")
        .and_then(Value::as_array)
        .and_then(|items| {
            items.iter().enumerate().find_map(|(index, item)| {
                SyncPushItem::deserialize(item)
                    .err()
                    .map(|item_error| format!("payload[{index}]: {item_error}"))
            })
        });
    format!(
        "invalid push variables: {}",
        bad_item.unwrap_or_else(|| error.to_string())
    )
}

fn validate_item(item: SyncPushItem) -> Result<PushItem, String> {
    if !is_text_of_len(&item.op_id, OP_ID_LEN_MAX) {
        return Err(format!("opId must be 1-{OP_ID_LEN_MAX} characters"));
    }
    let space_id_chars_ok = item
        .space_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !is_text_of_len(&item.space_id, SPACE_ID_LEN_MAX) || !space_id_chars_ok {
        return Err(format!(
            "spaceId must be 1-{SPACE_ID_LEN_MAX} characters from [A-Za-z0-9_-]"
        ));
    }
    if item
        .client_id
        .as_deref()
        .is_some_and(|client_id| !is_text_of_len(client_id, CLIENT_ID_LEN_MAX))
    {
        return Err(format!("clientId must be 1-{CLIENT_ID_LEN_MAX} characters"));
    }
    if item
        .id
        .as_deref()
        .is_some_and(|id| !is_text_of_len(id, ID_LEN_MAX))
    {
        return Err(format!("id must be 1-{ID_LEN_MAX} characters"));
    }
    match item.operation {
        Operation::Insert if item.client_id.is_none() => {
            return Err("an insert needs a clientId".to_owned())
        }
        Operation::Update | Operation::Delete if item.id.is_none() && item.client_id.is_none() => {
            return Err(format!(
                "an {} needs an id or a clientId",
                item.operation.as_str()
            ));
        }
        Operation::Insert | Operation::Update | Operation::Delete => {}
    }
    let Value::Object(data) = item.data else {
        return Err("data must be a JSON object".to_owned());
    };
    Ok(PushItem {
        op_id: item.op_id,
        operation: item.operation,
        id: item.id,
        client_id: item.client_id,
        data,
        base_version: item.base_version,
        force: item.force,
        space_id: item.space_id,
        updated_at: item.updated_at,
    })
}

impl PushItem {
    pub(super) fn data(&self) -> &Map<String, Value> {
        &self.data
    }
}

fn is_text_of_len(text: &str, len_max: usize) -> bool {
    let len = text.chars().count();
    (1..=len_max).contains(&len)
}

/// What one item does, decided from the current state before anything changes.
#[derive(Clone, Debug, PartialEq)]
enum Decision {
    /// The op already ran: hand back its stored result, store nothing new.
    Replay(SyncResultItem),
    /// Answer with this result (stored under the opId) and change no record.
    Answer(SyncResultItem),
    /// Create a new record for the item's clientId.
    Create,
    /// Write the item over the record with this server id (an update or a delete).
    Write { id: String },
}

impl ReferenceServer {
    /// Applies a validated batch in payload order and returns the `SyncPushResponse`.
    pub(super) fn handle_push(
        &mut self,
        tenant_id: &str,
        entity: &str,
        items: Vec<PushItem>,
        // The server-rewrite fault: store each inserted or updated row rewritten.
        rewrite: bool,
    ) -> SyncPushResponse {
        assert!(!items.is_empty());
        assert!(items.len() <= PAYLOAD_LEN_MAX);
        let item_count = items.len();
        let items = self.admit_stamps(items);
        // One commit stamp per request, taken when the first item changes state, so that a
        // request that changes nothing does not move the tenant's counter.
        let mut request_stamp: Option<u64> = None;
        let stamp_before = self.commit_stamp(tenant_id);
        let cursor_before = pull::caught_up_cursor(self.tenant_mut(tenant_id), entity);
        // Each item is consumed by its own step: its data moves into the stored record
        // rather than being copied.
        let results: Vec<SyncResultItem> = items
            .into_iter()
            .map(|item| self.push_item(tenant_id, entity, item, &mut request_stamp, rewrite))
            .collect();
        assert_eq!(results.len(), item_count);
        if let Some(stamp) = request_stamp {
            assert!(stamp > stamp_before);
            assert_eq!(stamp, self.commit_stamp(tenant_id));
        }
        let cursor_after = pull::caught_up_cursor(self.tenant_mut(tenant_id), entity);
        if request_stamp.is_none() && !self.defects.wall_clock_cursor {
            assert_eq!(
                cursor_after, cursor_before,
                "nothing changed, nothing moved"
            );
        }
        // Every row this request changed is stored exactly as its item was sent, with its
        // result's id, version and stamp: the answer carries all of it, so the cursors
        // may let a caught-up writer skip pulling its own writes back. A rewritten row is
        // not in the answer: both cursors stay null, and the writer pulls it.
        let stored_unsent = rewrite && request_stamp.is_some();
        SyncPushResponse {
            results,
            cursor_before: (!stored_unsent).then_some(cursor_before),
            cursor_after: (!stored_unsent).then_some(cursor_after),
        }
    }

    /// Decides and applies one item; returns its `SyncResultItem`.
    fn push_item(
        &mut self,
        tenant_id: &str,
        entity: &str,
        mut item: PushItem,
        request_stamp: &mut Option<u64>,
        rewrite: bool,
    ) -> SyncResultItem {
        let defects = self.defects;
        // A tenant's tables exist from its first push on, even if nothing is stored.
        self.tenant_mut(tenant_id);
        let decision = decide(
            &self.tenants[tenant_id],
            entity,
            &item,
            defects,
            &self.refused_client_ids,
            *request_stamp,
        );
        // What the record stores: the item's own data, moved out of it (nothing reads the
        // item's data once the decision is taken), or rewritten by the server.
        let stored_data = |item: &mut PushItem| {
            if rewrite {
                rewritten(&item.data)
            } else {
                std::mem::take(&mut item.data)
            }
        };
        let result = match decision {
            Decision::Replay(result) => {
                assert_eq!(result.op_id, item.op_id);
                return result;
            }
            Decision::Answer(result) => result,
            Decision::Create => {
                let id = self.allocate_server_id();
                let tenant = self.tenant_mut(tenant_id);
                let commit_stamp = commit_stamp_for_change(tenant, defects, &item, request_stamp);
                let record = ServerRecord {
                    tenant_id: tenant_id.to_owned(),
                    entity: entity.to_owned(),
                    id: id.clone(),
                    // The item's ids move into the record: the result reads the record's.
                    client_id: item.client_id.take().expect("an insert has a clientId"),
                    space_id: std::mem::take(&mut item.space_id),
                    version: 1,
                    updated_at: item.updated_at,
                    is_deleted: false,
                    data: stored_data(&mut item),
                    commit_stamp,
                    last_op_id: item.op_id.clone(),
                };
                let result = success(&item, Some(&record));
                tenant.insert_record(record);
                self.log_effect(Effect {
                    tenant_id: tenant_id.to_owned(),
                    op_id: item.op_id.clone(),
                    record_id: id,
                    commit_stamp,
                });
                result
            }
            Decision::Write { id } => {
                let tenant = self.tenant_mut(tenant_id);
                let Some(previous) = tenant.record(&id) else {
                    panic!("decided to write missing record {id}");
                };
                assert!(!previous.is_deleted, "tombstones are final");
                let mut record = previous.clone();
                record.version += 1;
                record.updated_at = item.updated_at;
                record.is_deleted = item.operation == Operation::Delete;
                record.data = if record.is_deleted {
                    std::mem::take(&mut item.data)
                } else {
                    stored_data(&mut item)
                };
                record.space_id = std::mem::take(&mut item.space_id);
                record.commit_stamp =
                    commit_stamp_for_change(tenant, defects, &item, request_stamp);
                record.last_op_id = item.op_id.clone();
                let result = success(&item, Some(&record));
                let effect = Effect {
                    tenant_id: tenant_id.to_owned(),
                    op_id: item.op_id.clone(),
                    record_id: id,
                    commit_stamp: record.commit_stamp,
                };
                tenant.replace_record(record);
                self.log_effect(effect);
                result
            }
        };
        // The result is stored under the item's opId, and answered.
        let answer = result.clone();
        self.tenant_mut(tenant_id)
            .store_result_under(item.op_id, result);
        answer
    }

    /// The server's clock policy: a stamp more than [`rules::STAMP_AHEAD_MS_MAX`] ahead of
    /// the server's clock is taken as that bound, for deciding and for storing.
    fn admit_stamps(&self, mut items: Vec<PushItem>) -> Vec<PushItem> {
        let Some(now_ms) = self.clock_ms else {
            return items;
        };
        if !self.defects.accept_far_future_stamps {
            for item in &mut items {
                item.updated_at = rules::admitted_stamp(item.updated_at, now_ms);
            }
        }
        items
    }

    /// The tenant's tables, created empty on its first write. Looked up by `&str` first:
    /// this runs several times per push item, and the entry API would copy the id each time.
    fn tenant_mut(&mut self, tenant_id: &str) -> &mut TenantState {
        if !self.tenants.contains_key(tenant_id) {
            self.tenants
                .insert(tenant_id.to_owned(), TenantState::default());
        }
        self.tenants
            .get_mut(tenant_id)
            .expect("the tenant was just added")
    }
}

/// The commit stamp for a row this request changes: the request's one stamp from the
/// tenant's counter, or, with `wall_clock_cursor` planted, the writer's wall clock.
fn commit_stamp_for_change(
    tenant: &mut TenantState,
    defects: ServerDefects,
    item: &PushItem,
    request_stamp: &mut Option<u64>,
) -> u64 {
    if defects.wall_clock_cursor {
        let stamp = item.updated_at.wall_ms();
        tenant.observe_commit_stamp(stamp);
        return stamp;
    }
    let stamp = *request_stamp.get_or_insert_with(|| tenant.allocate_commit_stamp());
    assert!(stamp <= tenant.commit_stamp());
    stamp
}

/// The write policy: what one item does to the tenant's current state.
fn decide(
    tenant: &TenantState,
    entity: &str,
    item: &PushItem,
    defects: ServerDefects,
    refused_client_ids: &BTreeSet<String>,
    // The commit stamp of this request, once an earlier item of it changed a record.
    request_stamp: Option<u64>,
) -> Decision {
    if !defects.skip_op_id_dedupe {
        if let Some(stored) = tenant.stored_result(&item.op_id) {
            return Decision::Replay(stored.clone());
        }
    }
    // After the replay: an op applied before the rule came in keeps its stored answer.
    if is_refused(tenant, item, refused_client_ids) {
        let message = "refused by the server's rules".to_owned();
        return Decision::Answer(failure(item, None, ErrorCode::Validation, message));
    }
    match item.operation {
        Operation::Insert => decide_insert(tenant, entity, item, defects),
        Operation::Update | Operation::Delete => {
            decide_write(tenant, entity, item, defects, request_stamp)
        }
    }
}

/// Whether the item writes a record whose client id the server's rules refuse: named by
/// the item's `clientId` or `id`, or the record its `id` locates.
fn is_refused(
    tenant: &TenantState,
    item: &PushItem,
    refused_client_ids: &BTreeSet<String>,
) -> bool {
    if refused_client_ids.is_empty() {
        return false;
    }
    let named = [&item.client_id, &item.id]
        .into_iter()
        .flatten()
        .any(|id| refused_client_ids.contains(id));
    let located = matches!(
        locate(tenant, item),
        Ok(Some(record)) if refused_client_ids.contains(&record.client_id)
    );
    named || located
}

fn decide_insert(
    tenant: &TenantState,
    entity: &str,
    item: &PushItem,
    defects: ServerDefects,
) -> Decision {
    assert_eq!(item.operation, Operation::Insert);
    let Some(client_id) = &item.client_id else {
        return Decision::Answer(failure(
            item,
            None,
            ErrorCode::Validation,
            "an insert needs a clientId".to_owned(),
        ));
    };
    if !defects.allows_duplicate_client_ids() {
        if let Some(existing) = tenant.record_by_client_id(client_id) {
            if existing.entity != entity {
                let message = format!(
                    "clientId {client_id:?} belongs to a {} record",
                    existing.entity
                );
                return Decision::Answer(failure(item, None, ErrorCode::Validation, message));
            }
            // A retried insert whose first response was lost (under a new opId, or with
            // its stored result gone): the existing row is the answer, never a second one.
            return Decision::Answer(success(item, Some(existing)));
        }
    }
    if let Err(problem) = rules::check_record(&item.data) {
        return Decision::Answer(failure(item, None, ErrorCode::Validation, problem));
    }
    Decision::Create
}

fn decide_write(
    tenant: &TenantState,
    entity: &str,
    item: &PushItem,
    defects: ServerDefects,
    request_stamp: Option<u64>,
) -> Decision {
    assert_ne!(item.operation, Operation::Insert);
    let record = match locate(tenant, item) {
        Err(message) => {
            return Decision::Answer(failure(item, None, ErrorCode::Validation, message))
        }
        Ok(None) => {
            let message = "no such record in this tenant".to_owned();
            return Decision::Answer(failure(item, None, ErrorCode::NotFound, message));
        }
        Ok(Some(record)) => record,
    };
    if record.entity != entity {
        let message = format!(
            "record {} is a {}, not a {entity}",
            record.id, record.entity
        );
        return Decision::Answer(failure(item, None, ErrorCode::Validation, message));
    }
    if record.is_deleted {
        // Tombstones are final: a second delete is a harmless echo, an update (even a
        // forced one) is refused with the server's row so the writer can drop its edit.
        return match item.operation {
            Operation::Delete => Decision::Answer(success(item, Some(record))),
            Operation::Insert | Operation::Update => {
                let message =
                    "the record is deleted; deletes win and tombstones are final".to_owned();
                Decision::Answer(failure(
                    item,
                    Some(record),
                    ErrorCode::RecordDeleted,
                    message,
                ))
            }
        };
    }
    let write = Decision::Write {
        id: record.id.clone(),
    };
    // Deletes win over concurrent updates, whatever the versions and stamps say.
    if item.operation == Operation::Delete {
        return write;
    }
    // The record's rules judge what an update would store; the refusal carries the
    // server's row, so the writer can go back to it.
    if let Err(problem) = rules::check_record(&item.data) {
        return Decision::Answer(failure(item, Some(record), ErrorCode::Validation, problem));
    }
    if item.force || item.base_version == Some(record.version) || defects.ignore_base_version {
        return write;
    }
    let same_write = item.updated_at == record.updated_at && same_data(&item.data, &record.data);
    let changed_by_this_batch = request_stamp == Some(record.commit_stamp);
    if defects.conflict_on_same_batch_edit && changed_by_this_batch && !same_write {
        let message = "the record changed since the version this write is based on".to_owned();
        return Decision::Answer(failure(item, Some(record), ErrorCode::Conflict, message));
    }
    // A concurrent write: the writer had not seen the current version. The newer HLC
    // stamp wins; equal stamps are a true tie that only the user can break.
    match item.updated_at.cmp(&record.updated_at) {
        Ordering::Greater => write,
        Ordering::Less => {
            let message = "the server's version is newer and wins".to_owned();
            Decision::Answer(failure(item, Some(record), ErrorCode::Stale, message))
        }
        Ordering::Equal
            if same_data(&item.data, &record.data) && item.space_id == record.space_id =>
        {
            Decision::Answer(success(item, Some(record)))
        }
        Ordering::Equal => {
            let message = "concurrent writes with equal stamps and different data".to_owned();
            Decision::Answer(failure(item, Some(record), ErrorCode::Conflict, message))
        }
    }
}

/// The data the server stores for `data` when it rewrites what it stores (the
/// server-rewrite fault), as a real server normalizes a field or adds one of its own: the
/// title without surrounding whitespace (unless nothing would be left), and a server-set
/// `serverNote`. Deterministic and idempotent: rewriting a rewritten row changes nothing.
pub fn rewritten(data: &Map<String, Value>) -> Map<String, Value> {
    let stored = rewrite_once(data);
    debug_assert_eq!(rewrite_once(&stored), stored, "a rewrite is idempotent");
    stored
}

/// The field the server sets when it rewrites a row, and its value.
pub const SERVER_NOTE_FIELD: &str = "serverNote";
const SERVER_NOTE: &str = "stored by the reference server";

fn rewrite_once(data: &Map<String, Value>) -> Map<String, Value> {
    let mut stored = data.clone();
    if let Some(Value::String(title)) = stored.get_mut("title") {
        let trimmed = title.trim();
        if !trimmed.is_empty() && trimmed.len() != title.len() {
            *title = trimmed.to_owned();
        }
    }
    stored.insert(
        SERVER_NOTE_FIELD.to_owned(),
        Value::String(SERVER_NOTE.to_owned()),
    );
    stored
}

/// Whether a write's `data` is what the server stores: as sent, or as the server
/// rewrote it (a retried write of a row the server rewrote is the same write).
fn same_data(sent: &Map<String, Value>, stored: &Map<String, Value>) -> bool {
    sent == stored || (stored.contains_key(SERVER_NOTE_FIELD) && rewritten(sent) == *stored)
}

/// The record an update or delete names: by server id when the tenant has it, else by
/// `clientId` (the spec sends `id: serverId || clientId`, so an unknown `id` may be a
/// clientId). An `id` and a `clientId` that name different records are refused.
fn locate<'a>(
    tenant: &'a TenantState,
    item: &PushItem,
) -> Result<Option<&'a ServerRecord>, String> {
    if let Some(record) = item.id.as_deref().and_then(|id| tenant.record(id)) {
        if let Some(client_id) = &item.client_id {
            if client_id != &record.client_id {
                return Err(format!(
                    "id {:?} and clientId {client_id:?} name different records",
                    record.id
                ));
            }
        }
        return Ok(Some(record));
    }
    let by_client_id = item
        .client_id
        .as_deref()
        .and_then(|client_id| tenant.record_by_client_id(client_id));
    let by_id_as_client_id = item
        .id
        .as_deref()
        .and_then(|id| tenant.record_by_client_id(id));
    Ok(by_client_id.or(by_id_as_client_id))
}

/// A successful result: the record's state after the item (none if there is no record).
fn success(item: &PushItem, record: Option<&ServerRecord>) -> SyncResultItem {
    SyncResultItem {
        op_id: item.op_id.clone(),
        client_id: record
            .map(|record| record.client_id.clone())
            .or_else(|| item.client_id.clone()),
        id: record.map(|record| record.id.clone()),
        success: true,
        error_code: None,
        error_message: None,
        version: record.map(|record| record.version),
        updated_at: record.map(|record| record.updated_at),
        conflict: None,
    }
}

/// A failed result; conflict-like codes carry the server's row as the conflict payload.
fn failure(
    item: &PushItem,
    record: Option<&ServerRecord>,
    code: ErrorCode,
    message: String,
) -> SyncResultItem {
    let needs_payload = matches!(
        code,
        ErrorCode::Stale | ErrorCode::Conflict | ErrorCode::RecordDeleted
    );
    if needs_payload {
        assert!(record.is_some(), "{code:?} needs the server's row");
    }
    // A rejection of an existing record's write carries the server's row too.
    let carries_payload = needs_payload || code == ErrorCode::Validation;
    let conflict = record
        .filter(|_| carries_payload)
        .map(|record| ConflictPayload {
            server_data: Value::Object(record.data.clone()),
            server_version: record.version,
            server_updated_at: record.updated_at,
            server_is_deleted: record.is_deleted,
        });
    SyncResultItem {
        success: false,
        error_code: Some(code),
        error_message: Some(message),
        conflict,
        ..success(item, record)
    }
}
