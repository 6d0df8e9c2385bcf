//! The answers of `engine_merge`'s hostile server: the reference server's own answer, that
//! answer with hostile edits, arbitrary JSON whose `$…` placeholders become the engine's
//! real ids, stamps and cursor, structured push results and pull pages, errors, transport
//! failures, replays of earlier answers, or silence. Ids and stamps are picked near the
//! ones the engine and the server hold, so short inputs reach the interesting cases. This
//! file only builds answers; the harness delivers them and checks what they did.

use super::{
    AnswerInput, CodeInput, EngineHarness, EngineStampInput, HashInput, IdInput, MutationInput,
    NumberInput, PageInput, ResultInput, Snapshot,
};
use crate::fuzzing::{space_name, PUSH_ITEMS_MAX, TENANT_A};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use sync_engine::hlc::HlcStamp;
use sync_engine::wire::{
    self, ConflictPayload, SyncPushItem, SyncPushResponse, SyncRequest, SyncResultItem,
};
use sync_engine::{testing, Record, TransportError};

impl EngineHarness {
    /// The answer `answer` makes to `request`; `None` when the request is never answered.
    /// The honest answers come from the kernel's reference server, which applies them.
    pub(super) fn response(
        &mut self,
        answer: &AnswerInput,
        request: &SyncRequest,
        before: &Snapshot,
    ) -> Option<Result<Value, TransportError>> {
        match answer {
            AnswerInput::Server => Some(Ok(self.sim.server_mut().handle(request))),
            AnswerInput::Mutated(mutations) => {
                let mut response = self.sim.server_mut().handle(request);
                for mutation in mutations.iter().take(4) {
                    mutate(&mut response, mutation);
                }
                Some(Ok(response))
            }
            AnswerInput::Lost => {
                let _lost = self.sim.server_mut().handle(request);
                Some(Err(TransportError::timeout("response lost")))
            }
            AnswerInput::Json(json) => {
                Some(Ok(self.resolve_placeholders(&json.0, request, before)))
            }
            AnswerInput::PushResults { results, aligned } => Some(Ok(
                self.push_results_answer(request, results, *aligned, before)
            )),
            AnswerInput::Page(page) => Some(Ok(self.page_answer(request, page, before))),
            AnswerInput::Error(code) => Some(Ok(match code {
                Some(code) => wire::error_response(code.to_wire(), "hostile error"),
                None => json!({"errors": [{"message": "no code"}]}),
            })),
            AnswerInput::Transport { timeout } => Some(Err(if *timeout {
                TransportError::timeout("hostile timeout")
            } else {
                TransportError::unreachable("hostile unreachable")
            })),
            AnswerInput::Replay(index) if !self.delivered.is_empty() => Some(Ok(self.delivered
                [usize::from(*index) % self.delivered.len()]
            .clone())),
            AnswerInput::Replay(_) => Some(Ok(Value::Null)),
            AnswerInput::Drop => None,
        }
    }

    /// Stamps hostile inputs pick near: the local records' and the server's.
    pub(super) fn stamp(&self, stamp: &EngineStampInput, before: &Snapshot) -> HlcStamp {
        let near = |stamps: Vec<u64>, index: u8, delta: i8| {
            let base = match stamps.len() {
                0 => testing::EPOCH_MS << 16,
                len => stamps[usize::from(index) % len],
            };
            HlcStamp(base.saturating_add_signed(i64::from(delta)))
        };
        match stamp {
            EngineStampInput::Exact(value) => HlcStamp(*value),
            EngineStampInput::Edge(index) => {
                const EDGES: [u64; 6] = [0, 1, u64::MAX, u64::MAX - 1, i64::MAX as u64, 1 << 63];
                HlcStamp(EDGES[usize::from(*index) % EDGES.len()])
            }
            EngineStampInput::Local { record, delta } => near(
                before
                    .records
                    .iter()
                    .map(|record| record.updated_at.0)
                    .collect(),
                *record,
                *delta,
            ),
            EngineStampInput::Server { record, delta } => near(
                self.sim
                    .server()
                    .records(TENANT_A)
                    .iter()
                    .map(|record| record.updated_at.0)
                    .collect(),
                *record,
                *delta,
            ),
        }
    }

    fn server_ids(&self, before: &Snapshot) -> Vec<String> {
        let mut ids: BTreeSet<String> = before
            .records
            .iter()
            .filter_map(|record| record.server_id.clone())
            .collect();
        ids.extend(
            self.sim
                .server()
                .records(TENANT_A)
                .iter()
                .map(|record| record.id.clone()),
        );
        ids.into_iter().collect()
    }

    /// The id `id` stands for in an answer to a request for `entity`.
    fn id(&self, id: &IdInput, entity: &str, before: &Snapshot) -> String {
        let of_other_entity = |index: u8, server: bool| -> Option<String> {
            let ids: Vec<&String> = before
                .records
                .iter()
                .filter(|record| record.entity != entity)
                .filter_map(|record| {
                    if server {
                        record.server_id.as_ref()
                    } else {
                        Some(&record.client_id)
                    }
                })
                .collect();
            (!ids.is_empty()).then(|| ids[usize::from(index) % ids.len()].clone())
        };
        match id {
            IdInput::Client(index) if !before.records.is_empty() => before.records
                [usize::from(*index) % before.records.len()]
            .client_id
            .clone(),
            IdInput::OtherEntityClient(index) => {
                of_other_entity(*index, false).unwrap_or_else(|| format!("fresh-{index}"))
            }
            IdInput::OtherEntityServer(index) => {
                of_other_entity(*index, true).unwrap_or_else(|| format!("srv-fresh-{index}"))
            }
            IdInput::Server(index) => {
                let ids = self.server_ids(before);
                if ids.is_empty() {
                    format!("srv-fresh-{index}")
                } else {
                    ids[usize::from(*index) % ids.len()].clone()
                }
            }
            IdInput::Client(index) | IdInput::Fresh(index) => format!("fresh-{index}"),
            IdInput::Text(text) => text.clone(),
        }
    }

    fn resolve_placeholders(
        &self,
        value: &Value,
        request: &SyncRequest,
        before: &Snapshot,
    ) -> Value {
        let variables = request.variables.to_json();
        let op_ids: Vec<String> = variables
            .get("payload")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.get("opId").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let server_ids = self.server_ids(before);
        let cursor = variables
            .get("lastSyncAt")
            .filter(|cursor| cursor.is_string())
            .cloned()
            .unwrap_or_else(|| json!(""));
        let pick = |list: &[String], index: usize| -> Option<Value> {
            (!list.is_empty()).then(|| Value::String(list[index % list.len()].clone()))
        };
        let record = |index: usize| -> Option<&Record> {
            (!before.records.is_empty()).then(|| &before.records[index % before.records.len()])
        };
        let client_ids: Vec<String> = before.records.iter().map(|r| r.client_id.clone()).collect();
        let substitute = |text: &str| -> Option<Value> {
            if text == "$cursor" {
                return Some(cursor.clone());
            }
            let (name, index) = text.strip_prefix('$')?.split_once(':')?;
            let index: usize = index.parse().ok()?;
            match name {
                "client" => pick(&client_ids, index),
                "server" => pick(&server_ids, index),
                "op" => pick(&op_ids, index),
                "stamp" => record(index).map(|record| json!(record.updated_at.0)),
                "stamp+" => record(index).map(|record| json!(record.updated_at.0 + 1)),
                "stamp-" => {
                    record(index).map(|record| json!(record.updated_at.0.saturating_sub(1)))
                }
                "version" => record(index).map(|record| json!(record.version)),
                _ => None,
            }
        };
        map_strings(value, &substitute)
    }

    fn push_results_answer(
        &self,
        request: &SyncRequest,
        results: &[ResultInput],
        aligned: bool,
        before: &Snapshot,
    ) -> Value {
        let payload: Vec<SyncPushItem> = request
            .variables
            .to_json()
            .get("payload")
            .cloned()
            .and_then(|payload| serde_json::from_value(payload).ok())
            .unwrap_or_default();
        let entity = request.operation_name.trim_start_matches("syncPush");
        let count = if aligned {
            payload.len()
        } else {
            results.len().min(PUSH_ITEMS_MAX)
        };
        let mut built = Vec::with_capacity(count);
        for index in 0..count {
            let Some(input) = results.get(index % results.len().max(1)) else {
                break;
            };
            let own = payload.get(index);
            let op_id = match (input.other_op, own) {
                (None, Some(item)) => item.op_id.clone(),
                (Some(other), _) if !before.ops.is_empty() => before.ops
                    [usize::from(other) % before.ops.len()]
                .op_id
                .clone(),
                _ => format!("op-unknown-{index}"),
            };
            let conflict = input.conflict.as_ref().map(|conflict| ConflictPayload {
                server_data: conflict.data.to_value(),
                server_version: conflict.version.resolve(),
                server_updated_at: self.stamp(&conflict.stamp, before),
                server_is_deleted: conflict.deleted,
            });
            built.push(SyncResultItem {
                op_id,
                client_id: own.and_then(|item| item.client_id.clone()),
                id: input.id.as_ref().map(|id| self.id(id, entity, before)),
                success: input.success,
                error_code: input.code.map(CodeInput::to_wire),
                error_message: None,
                version: input.version.as_ref().map(NumberInput::resolve),
                updated_at: input.stamp.as_ref().map(|stamp| self.stamp(stamp, before)),
                conflict,
            });
        }
        // No cursors: the answer never lets the device skip its pull, so the fuzzed pages
        // that follow still reach every record.
        let payload = serde_json::to_value(SyncPushResponse {
            results: built,
            cursor_before: None,
            cursor_after: None,
        })
        .expect("wire types serialize");
        wire::data_response(&request.operation_name, payload)
    }

    fn page_answer(&self, request: &SyncRequest, page: &PageInput, before: &Snapshot) -> Value {
        let entity = request.operation_name.trim_start_matches("syncPull");
        let items: Vec<Value> = page
            .items
            .iter()
            .take(PUSH_ITEMS_MAX)
            .map(|item| {
                let id = self.id(&item.id, entity, before);
                let client_id = self.id(&item.client_id, entity, before);
                let named = before
                    .records
                    .iter()
                    .find(|record| record.client_id == client_id)
                    .or_else(|| {
                        let server_id = Some(&id);
                        before
                            .records
                            .iter()
                            .find(|r| r.server_id.as_ref() == server_id)
                    });
                let space = match named {
                    Some(record) if item.other_space => other_space(&record.space_id),
                    _ => space_name(item.space),
                };
                json!({
                    "id": id,
                    "clientId": client_id,
                    "spaceId": space,
                    "version": item.version.resolve(),
                    "updatedAt": self.stamp(&item.stamp, before),
                    "data": item.data.to_value(),
                })
            })
            .collect();
        let version_hash = match &page.hash {
            HashInput::Absent => None,
            HashInput::Local => Some(wire::version_hash(
                before
                    .records
                    .iter()
                    .filter(|record| record.entity == entity && !record.is_deleted)
                    .filter_map(|record| {
                        record
                            .server_id
                            .as_deref()
                            .map(|id| (id, record.version, &record.data))
                    }),
            )),
            HashInput::Server => {
                let rows = self.sim.server().records(TENANT_A);
                Some(wire::version_hash(
                    rows.iter()
                        .filter(|row| row.entity == entity && !row.is_deleted)
                        .map(|row| (row.id.as_str(), row.version, &row.data)),
                ))
            }
            HashInput::Text(text) => Some(text.clone()),
        };
        let deleted: Vec<String> = page
            .deleted
            .iter()
            .take(PUSH_ITEMS_MAX)
            .map(|id| self.id(id, entity, before))
            .collect();
        let cursor = page
            .cursor
            .clone()
            .unwrap_or_else(|| "1.srv-fuzz".to_owned());
        wire::data_response(
            &request.operation_name,
            json!({"items": items, "deletedIds": deleted, "lastSyncAt": cursor,
                   "versionHash": version_hash, "hasMore": page.has_more}),
        )
    }
}

/// A space of the fuzz vocabulary other than `space_id`.
fn other_space(space_id: &str) -> &'static str {
    if space_name(0) == space_id {
        space_name(1)
    } else {
        space_name(0)
    }
}

/// Rewrites every string of a JSON tree that `substitute` knows.
fn map_strings(value: &Value, substitute: &dyn Fn(&str) -> Option<Value>) -> Value {
    match value {
        Value::String(text) => substitute(text).unwrap_or_else(|| value.clone()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| map_strings(item, substitute))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), map_strings(item, substitute)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Applies one mutation at the `node`-th node (pre-order, wrapping) of a JSON tree.
fn mutate(root: &mut Value, mutation: &MutationInput) {
    let node = match mutation {
        MutationInput::Replace { node, .. }
        | MutationInput::Remove { node }
        | MutationInput::Duplicate { node } => usize::from(*node),
    };
    let count = count_nodes(root);
    let mut target = node % count;
    if target == 0 {
        if let MutationInput::Replace { value, .. } = mutation {
            *root = value.0.clone();
        }
        return;
    }
    mutate_child(root, &mut target, mutation);
}

fn count_nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Walks `parent`'s children in pre-order, counting `target` down; mutates the child at
/// zero. Returns true once done.
fn mutate_child(parent: &mut Value, target: &mut usize, mutation: &MutationInput) -> bool {
    match parent {
        Value::Array(items) => {
            for index in 0..items.len() {
                *target -= 1;
                if *target == 0 {
                    match mutation {
                        MutationInput::Replace { value, .. } => items[index] = value.0.clone(),
                        MutationInput::Remove { .. } => {
                            items.remove(index);
                        }
                        MutationInput::Duplicate { .. } => {
                            let copy = items[index].clone();
                            items.insert(index, copy);
                        }
                    }
                    return true;
                }
                if mutate_child(&mut items[index], target, mutation) {
                    return true;
                }
            }
            false
        }
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                *target -= 1;
                if *target == 0 {
                    match mutation {
                        MutationInput::Replace { value, .. } => {
                            map.insert(key, value.0.clone());
                        }
                        MutationInput::Remove { .. } => {
                            map.remove(&key);
                        }
                        MutationInput::Duplicate { .. } => {
                            let copy = map[&key].clone();
                            map.insert(format!("{key}Copy"), copy);
                        }
                    }
                    return true;
                }
                if mutate_child(map.get_mut(&key).expect("key exists"), target, mutation) {
                    return true;
                }
            }
            false
        }
        _ => false,
    }
}
