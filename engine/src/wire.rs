//! The wire contract: the spec's GraphQL types as Rust, serialized to camelCase JSON.
//!
//! `schema.graphql` beside this crate is the same contract as SDL (a test keeps the two
//! in agreement). Our additions to the spec's types: `opId` (idempotency key),
//! `baseVersion` (the server version the write was based on), `force`, `spaceId`, and
//! `updatedAt` (the writer's HLC stamp) on push items. `lastSyncAt` is an opaque
//! server-issued cursor, never a client timestamp. This module only describes data; it
//! never sends anything.

use crate::hlc::HlcStamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A request as the engine hands it to a transport: GraphQL operation name, the tenant it
/// is for, the bearer token, and the operation's variables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    /// Matches the response to the request; unique per engine instance.
    pub request_id: u64,
    pub operation_name: String,
    pub tenant_id: String,
    pub token: String,
    pub variables: SyncVariables,
}

impl SyncRequest {
    /// The same request with its variables as JSON, as a wire carries them.
    pub fn with_json_variables(mut self) -> SyncRequest {
        let variables = std::mem::take(&mut self.variables);
        self.variables = SyncVariables::Json(variables.into_json());
        self
    }
}

/// A request's variables: typed as the engine builds them, or JSON as a wire, a fault or a
/// test hands them over. Both mean the JSON they render to: a server reads a typed
/// variant exactly as it would read that JSON, and two variables are equal when their
/// JSON is. A transport to a server in the same process hands the typed variants over as
/// they are and skips JSON both ways; any other renders them ([`SyncVariables::to_json`],
/// or `Serialize`, which writes the same JSON without building it first).
#[derive(Clone, Debug)]
pub enum SyncVariables {
    Push(SyncPushVariables),
    Pull(SyncPullVariables),
    Json(Value),
}

impl SyncVariables {
    /// The variables as JSON: borrowed when they are JSON already, rendered when typed.
    pub fn to_json(&self) -> Cow<'_, Value> {
        match self {
            SyncVariables::Json(value) => Cow::Borrowed(value),
            typed => Cow::Owned(typed.clone().into_json()),
        }
    }

    /// The variables as JSON to edit (a fault or a test rewriting a request): typed ones are
    /// rendered first, and stay JSON.
    pub fn json_mut(&mut self) -> &mut Value {
        if !matches!(self, SyncVariables::Json(_)) {
            *self = SyncVariables::Json(std::mem::take(self).into_json());
        }
        match self {
            SyncVariables::Json(value) => value,
            _ => unreachable!("the variables were just made JSON"),
        }
    }

    /// The variables as JSON, moving a push's data rather than copying it.
    pub fn into_json(self) -> Value {
        match self {
            SyncVariables::Push(variables) => variables.into_value(),
            SyncVariables::Pull(variables) => {
                serde_json::to_value(variables).expect("pull variables serialize")
            }
            SyncVariables::Json(value) => value,
        }
    }
}

impl Default for SyncVariables {
    /// No variables: JSON `null`.
    fn default() -> SyncVariables {
        SyncVariables::Json(Value::Null)
    }
}

impl PartialEq for SyncVariables {
    fn eq(&self, other: &SyncVariables) -> bool {
        self.to_json() == other.to_json()
    }
}

impl From<Value> for SyncVariables {
    fn from(value: Value) -> SyncVariables {
        SyncVariables::Json(value)
    }
}

impl Serialize for SyncVariables {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SyncVariables::Push(variables) => variables.serialize(serializer),
            SyncVariables::Pull(variables) => variables.serialize(serializer),
            SyncVariables::Json(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for SyncVariables {
    /// Read back as JSON: what a wire carries is JSON until a server parses it.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(SyncVariables::Json)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Insert,
    Update,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
        }
    }

    pub fn parse(raw: &str) -> Option<Operation> {
        match raw {
            "insert" => Some(Operation::Insert),
            "update" => Some(Operation::Update),
            "delete" => Some(Operation::Delete),
            _ => None,
        }
    }
}

/// `input SyncPushItem`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncPushItem {
    pub client_id: Option<String>,
    pub id: Option<String>,
    pub operation: Operation,
    /// The record's full data after the write (a JSON object).
    pub data: Value,
    pub op_id: String,
    pub base_version: Option<i64>,
    #[serde(default)]
    pub force: bool,
    pub space_id: String,
    pub updated_at: HlcStamp,
}

/// Variables of `syncPush{Entity}(payload, tenantId)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncPushVariables {
    pub payload: Vec<SyncPushItem>,
    pub tenant_id: String,
}

impl SyncPushVariables {
    /// The variables as JSON, exactly as `serde_json::to_value` renders them, with every
    /// item's `data` moved in rather than copied (a push run's data is the bulk of it).
    pub fn into_value(self) -> Value {
        let payload = self
            .payload
            .into_iter()
            .map(|item| {
                let mut object = Map::new();
                object.insert("clientId".into(), item.client_id.into());
                object.insert("id".into(), item.id.into());
                object.insert("operation".into(), item.operation.as_str().into());
                object.insert("data".into(), item.data);
                object.insert("opId".into(), item.op_id.into());
                object.insert("baseVersion".into(), item.base_version.into());
                object.insert("force".into(), item.force.into());
                object.insert("spaceId".into(), item.space_id.into());
                object.insert("updatedAt".into(), item.updated_at.0.into());
                Value::Object(object)
            })
            .collect();
        let mut variables = Map::new();
        variables.insert("payload".into(), Value::Array(payload));
        variables.insert("tenantId".into(), self.tenant_id.into());
        Value::Object(variables)
    }
}

/// `type SyncPushResponse`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPushResponse {
    pub results: Vec<SyncResultItem>,
    /// The pull cursor of the pushed entity that a fully caught-up device held just
    /// before this request committed (`""`: the entity had no rows). Set together with
    /// `cursor_after`, or neither: a server that stored anything for this request that
    /// the results do not carry leaves both out, and the device pulls as usual.
    #[serde(default)]
    pub cursor_before: Option<String>,
    /// The pull cursor just after this request committed: every row between the two is
    /// a row this request changed, as its results describe it. Equal to `cursor_before`
    /// when the request changed nothing.
    #[serde(default)]
    pub cursor_after: Option<String>,
}

/// `type SyncResultItem`: the outcome of one push item, in payload order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResultItem {
    pub op_id: String,
    pub client_id: Option<String>,
    pub id: Option<String>,
    pub success: bool,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    pub version: Option<i64>,
    pub updated_at: Option<HlcStamp>,
    pub conflict: Option<ConflictPayload>,
}

/// `type ConflictPayload`: the server's side of a concurrent write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConflictPayload {
    pub server_data: Value,
    pub server_version: i64,
    pub server_updated_at: HlcStamp,
    pub server_is_deleted: bool,
}

/// Variables of `syncPull{Entity}(lastSyncAt, tenantId, limit)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncPullVariables {
    pub last_sync_at: Option<String>,
    pub tenant_id: String,
    pub limit: Option<i64>,
}

/// `type SyncPullResponse`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPullResponse {
    /// Live records changed since the cursor, as [`PulledItem`] JSON objects.
    pub items: Vec<Value>,
    /// Records deleted since the cursor.
    pub deleted_ids: Vec<String>,
    /// The cursor to send next time: covers exactly the rows in this page.
    pub last_sync_at: String,
    /// Checksum over the entity's live `(id, version)` pairs, see [`version_hash`]. Sent
    /// on the last page of a pull (`has_more: false`), where the client compares it.
    pub version_hash: Option<String>,
    pub has_more: bool,
}

/// The shape of one element of `SyncPullResponse.items`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulledItem {
    pub id: String,
    pub client_id: String,
    pub space_id: String,
    pub version: i64,
    pub updated_at: HlcStamp,
    pub data: Map<String, Value>,
}

impl PulledItem {
    /// Reads one element of `SyncPullResponse.items`, moving its strings and its data out
    /// of `value`: `serde_json::from_value` would rebuild the data map entry by entry,
    /// which cost more than the rest of reading a page. Accepts exactly what
    /// `serde_json::from_value::<PulledItem>` accepts (a test compares the two).
    pub fn from_value(value: Value) -> Option<PulledItem> {
        let object = match value {
            Value::Object(object) => object,
            // serde also reads a struct from an array of its fields; that rare shape is
            // left to serde.
            other => return serde_json::from_value(other).ok(),
        };
        // `deny_unknown_fields` and no defaults: these six fields and no other. A map
        // holds each key once, so six known keys are all six fields.
        if object.len() != 6 {
            return None;
        }
        let (mut id, mut client_id, mut space_id) = (None, None, None);
        let (mut version, mut updated_at, mut data) = (None, None, None);
        // Taken in the map's order, without removing keys one by one.
        for (key, value) in object {
            match (key.as_str(), value) {
                ("id", Value::String(text)) => id = Some(text),
                ("clientId", Value::String(text)) => client_id = Some(text),
                ("spaceId", Value::String(text)) => space_id = Some(text),
                ("version", value) => version = Some(value.as_i64()?),
                ("updatedAt", value) => updated_at = Some(HlcStamp(value.as_u64()?)),
                ("data", Value::Object(map)) => data = Some(map),
                _ => return None,
            }
        }
        let (id, client_id, space_id) = (id?, client_id?, space_id?);
        let (version, updated_at, data) = (version?, updated_at?, data?);
        Some(PulledItem {
            id,
            client_id,
            space_id,
            version,
            updated_at,
            data,
        })
    }
}

/// An answer as a transport hands it to the engine: the GraphQL envelope as JSON (what a
/// wire carries), or, from a server in the same process, the payload already typed. A
/// typed answer skips rendering and reading JSON and nothing else: the engine checks it
/// exactly as it checks the payload it reads out of an envelope.
#[derive(Clone, Debug, PartialEq)]
pub enum SyncAnswer {
    /// The response envelope: `{"data": {operation: payload}}` or `{"errors": [...]}`.
    Json(Value),
    /// The payload of a push operation.
    Push(SyncPushResponse),
    /// The payload of a pull operation, as [`read_pull_page`] returns it: the page with
    /// `items` empty, and its items read.
    Pull {
        page: SyncPullResponse,
        items: Vec<PulledItem>,
    },
}

/// Reads a `SyncPullResponse` and its items, moving every string and item data out of
/// `payload` rather than copying it: the page comes back with `items` empty, and its items
/// as [`PulledItem`]s. `None` for anything `serde_json::from_value` would refuse for the
/// page or for one of its items (a test compares the two).
pub fn read_pull_page(payload: Value) -> Option<(SyncPullResponse, Vec<PulledItem>)> {
    let mut object = match payload {
        Value::Object(object) => object,
        // A struct written as an array of its fields: left to serde.
        other => {
            let mut page: SyncPullResponse = serde_json::from_value(other).ok()?;
            let items = std::mem::take(&mut page.items)
                .into_iter()
                .map(PulledItem::from_value)
                .collect::<Option<_>>()?;
            return Some((page, items));
        }
    };
    // Unknown fields are allowed here, as serde allows them.
    let Some(Value::Array(items)) = object.remove("items") else {
        return None;
    };
    let Some(Value::Array(deleted_ids)) = object.remove("deletedIds") else {
        return None;
    };
    let deleted_ids = deleted_ids
        .into_iter()
        .map(|id| match id {
            Value::String(id) => Some(id),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let last_sync_at = take_string(&mut object, "lastSyncAt")?;
    let version_hash = match object.remove("versionHash") {
        None | Some(Value::Null) => None,
        Some(Value::String(hash)) => Some(hash),
        Some(_) => return None,
    };
    let Some(Value::Bool(has_more)) = object.remove("hasMore") else {
        return None;
    };
    let items = items
        .into_iter()
        .map(PulledItem::from_value)
        .collect::<Option<_>>()?;
    let page = SyncPullResponse {
        items: Vec::new(),
        deleted_ids,
        last_sync_at,
        version_hash,
        has_more,
    };
    Some((page, items))
}

/// Removes field `name` from `object` when it is a string.
fn take_string(object: &mut Map<String, Value>, name: &str) -> Option<String> {
    match object.remove(name)? {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// `errorCode` values and GraphQL error `extensions.code` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Equal stamps, different data: the user must choose.
    Conflict,
    /// The server's version is newer and won by the policy; the conflict payload has it.
    Stale,
    /// The record is deleted on the server; deletes win over concurrent updates.
    RecordDeleted,
    /// The request or item is malformed.
    Validation,
    /// The item names a record the server does not have.
    NotFound,
    /// The token is unknown or belongs to another tenant.
    Unauthorized,
    /// The server is overloaded or failed before applying anything.
    ServerBusy,
    /// The server did not answer in time (it may or may not have applied the request).
    Timeout,
    /// A pull's cursor is older than what the server still keeps (it purged tombstones
    /// past its retention window): the device must pull the entity again from the start.
    ResyncRequired,
}

impl ErrorCode {
    /// Transient errors are retried with backoff; the rest are final for the op.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorCode::ServerBusy | ErrorCode::Timeout)
    }

    /// The code as the wire spells it (`"VALIDATION"`), which is also how a failed op
    /// stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::Stale => "STALE",
            ErrorCode::RecordDeleted => "RECORD_DELETED",
            ErrorCode::Validation => "VALIDATION",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::ServerBusy => "SERVER_BUSY",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::ResyncRequired => "RESYNC_REQUIRED",
        }
    }

    /// The code a wire spelling names, or `None` for any other text.
    pub fn parse(raw: &str) -> Option<ErrorCode> {
        serde_json::from_value(Value::String(raw.to_owned())).ok()
    }
}

/// A GraphQL error envelope: `{"errors": [{"message": …, "extensions": {"code": …}}]}`.
pub fn error_response(code: ErrorCode, message: &str) -> Value {
    serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })
}

/// A GraphQL success envelope: `{"data": {operationName: payload}}`.
pub fn data_response(operation_name: &str, payload: Value) -> Value {
    let mut data = Map::new();
    data.insert(operation_name.to_owned(), payload);
    let mut envelope = Map::new();
    envelope.insert("data".to_owned(), Value::Object(data));
    Value::Object(envelope)
}

/// What a GraphQL envelope said: the operation's payload, or the first error.
#[derive(Clone, Debug, PartialEq)]
pub enum Envelope {
    Data(Value),
    Error {
        code: Option<ErrorCode>,
        message: String,
    },
}

/// Reads a response envelope; anything that is neither shape is a `Validation` error.
pub fn parse_envelope(operation_name: &str, response: &Value) -> Envelope {
    into_envelope(operation_name, response.clone())
}

/// [`parse_envelope`] for an owned response: the payload is moved out, not copied.
pub fn into_envelope(operation_name: &str, mut response: Value) -> Envelope {
    if let Some(first) = response
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        let message = first
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("error without message");
        let code = first
            .get("extensions")
            .and_then(|extensions| extensions.get("code"))
            .and_then(|code| serde_json::from_value(code.clone()).ok());
        return Envelope::Error {
            code,
            message: message.to_owned(),
        };
    }
    match response
        .get_mut("data")
        .and_then(|data| data.get_mut(operation_name))
    {
        Some(payload) => Envelope::Data(payload.take()),
        // Not an answer to this operation (garbled, truncated, or meant for another
        // request): no code, so the caller treats it as transient and retries.
        None => Envelope::Error {
            code: None,
            message: format!("response has neither errors nor data.{operation_name}"),
        },
    }
}

/// The checksum both sides compute over an entity's live records: FNV-1a (64-bit) over
/// `id:version:data\n` lines sorted by id, as 16 hex digits, where `data` is the record's
/// data as canonical compact JSON (keys sorted, no whitespace: what `serde_json` writes
/// for a `Map`, and the text the engine stores). A record whose data differs at the same
/// version therefore changes the checksum. The text of a record never holds a raw
/// newline (JSON escapes it), so the lines cannot run into each other.
pub fn version_hash<'a>(
    rows: impl IntoIterator<Item = (&'a str, i64, &'a Map<String, Value>)>,
) -> String {
    let mut rows: Vec<(&str, i64, &Map<String, Value>)> = rows.into_iter().collect();
    // Both sides usually read their rows in id order already: checking is one pass.
    if !rows.is_sorted_by(|a, b| (a.0, a.1) <= (b.0, b.1)) {
        rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    }
    let mut hasher = VersionHasher::new();
    for (id, version, data) in rows {
        hasher.row(id, version, data);
    }
    hasher.finish()
}

/// [`version_hash`] fed one row at a time, in id order, with each row's data as a map
/// (serialized straight into the hash, no text kept) or as its canonical text.
#[derive(Clone, Debug)]
pub struct VersionHasher {
    hash: u64,
}

impl Default for VersionHasher {
    fn default() -> Self {
        VersionHasher::new()
    }
}

impl VersionHasher {
    pub fn new() -> VersionHasher {
        VersionHasher {
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn head(&mut self, id: &str, version: i64) {
        self.feed(id.as_bytes());
        self.feed(b":");
        // The decimal digits without a `String` per line (this runs over every record).
        self.feed(itoa::Buffer::new().format(version).as_bytes());
        self.feed(b":");
    }

    /// One row whose data is a map.
    pub fn row(&mut self, id: &str, version: i64, data: &Map<String, Value>) {
        self.head(id, version);
        serde_json::to_writer(&mut *self, data).expect("a JSON map always serializes");
        self.feed(b"\n");
    }

    /// One row whose data is already canonical compact JSON text.
    pub fn row_text(&mut self, id: &str, version: i64, data_text: &str) {
        self.head(id, version);
        self.feed(data_text.as_bytes());
        self.feed(b"\n");
    }

    pub fn finish(self) -> String {
        format!("{:016x}", self.hash)
    }
}

impl std::io::Write for VersionHasher {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.feed(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The Rust types and `schema.graphql` agree on every field name, and JSON is camelCase.
    use super::*;
    use serde_json::json;
    use std::collections::BTreeSet;

    const SDL: &str = include_str!("../schema.graphql");

    /// Field names of `type Name {` / `input Name {` in the SDL.
    fn sdl_fields(type_name: &str) -> BTreeSet<String> {
        let start = SDL
            .lines()
            .position(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                words.len() >= 2
                    && (words[0] == "type" || words[0] == "input")
                    && words[1] == type_name
            })
            .unwrap_or_else(|| panic!("{type_name} missing from schema.graphql"));
        // Inside a multi-line `"""` description: its text names no field.
        let mut in_description = false;
        SDL.lines()
            .skip(start + 1)
            .take_while(|line| !line.trim_start().starts_with('}'))
            .filter_map(|line| {
                let line = line.trim();
                if line == "\"\"\"" {
                    in_description = !in_description;
                    return None;
                }
                if in_description
                    || line.is_empty()
                    || line.starts_with('#')
                    || line.starts_with("\"\"\"")
                {
                    return None;
                }
                let name_end = line.find([':', '('])?;
                Some(line[..name_end].trim().to_owned())
            })
            .collect()
    }

    fn json_fields(value: Value) -> BTreeSet<String> {
        value.as_object().expect("object").keys().cloned().collect()
    }

    fn sample_push_item() -> SyncPushItem {
        SyncPushItem {
            client_id: Some("c".into()),
            id: Some("s".into()),
            operation: Operation::Update,
            data: serde_json::json!({"name": "x"}),
            op_id: "o".into(),
            base_version: Some(1),
            force: false,
            space_id: "sp".into(),
            updated_at: HlcStamp(5),
        }
    }

    #[test]
    fn rust_types_match_sdl_field_names() {
        let push_item = sample_push_item();
        let result = SyncResultItem {
            op_id: "o".into(),
            client_id: None,
            id: None,
            success: true,
            error_code: None,
            error_message: None,
            version: None,
            updated_at: None,
            conflict: None,
        };
        let conflict = ConflictPayload {
            server_data: Value::Null,
            server_version: 1,
            server_updated_at: HlcStamp(1),
            server_is_deleted: false,
        };
        let pull = SyncPullResponse {
            items: vec![],
            deleted_ids: vec![],
            last_sync_at: String::new(),
            version_hash: None,
            has_more: false,
        };
        let item = PulledItem {
            id: "s".into(),
            client_id: "c".into(),
            space_id: "sp".into(),
            version: 1,
            updated_at: HlcStamp(1),
            data: Map::new(),
        };
        let push = SyncPushResponse {
            results: vec![],
            cursor_before: Some(String::new()),
            cursor_after: Some("1.x".into()),
        };
        let checks: [(&str, Value); 6] = [
            ("SyncPushItem", serde_json::to_value(push_item).unwrap()),
            ("SyncResultItem", serde_json::to_value(result).unwrap()),
            ("ConflictPayload", serde_json::to_value(conflict).unwrap()),
            ("SyncPullResponse", serde_json::to_value(pull).unwrap()),
            ("PulledItem", serde_json::to_value(item).unwrap()),
            ("SyncPushResponse", serde_json::to_value(push).unwrap()),
        ];
        for (type_name, json) in checks {
            assert_eq!(json_fields(json), sdl_fields(type_name), "{type_name}");
        }
    }

    #[test]
    fn sdl_declares_operations_and_arguments() {
        for needle in [
            "syncPushSpace(payload: [SyncPushItem!]!, tenantId: ID!): SyncPushResponse!",
            "syncPullSpace(lastSyncAt: String, tenantId: ID!, limit: Int = 1000): SyncPullResponse!",
        ] {
            assert!(SDL.contains(needle), "schema.graphql lacks {needle}");
        }
        let variables = SyncPullVariables {
            last_sync_at: None,
            tenant_id: "t".into(),
            limit: Some(1),
        };
        let names = json_fields(serde_json::to_value(variables).unwrap());
        assert_eq!(
            names,
            ["lastSyncAt", "limit", "tenantId"].map(String::from).into()
        );
    }

    #[test]
    fn envelopes_round_trip() {
        let ok = data_response("syncPullSpace", serde_json::json!({"x": 1}));
        assert_eq!(
            parse_envelope("syncPullSpace", &ok),
            Envelope::Data(serde_json::json!({"x": 1}))
        );
        let error = error_response(ErrorCode::Unauthorized, "no");
        assert_eq!(
            parse_envelope("syncPullSpace", &error),
            Envelope::Error {
                code: Some(ErrorCode::Unauthorized),
                message: "no".into()
            }
        );
        assert!(matches!(
            parse_envelope("syncPullSpace", &serde_json::json!(3)),
            Envelope::Error { .. }
        ));
    }

    #[test]
    fn push_variables_into_value_is_their_serialization() {
        let mut insert = sample_push_item();
        insert.operation = Operation::Insert;
        insert.id = None;
        insert.base_version = None;
        insert.force = true;
        let variables = SyncPushVariables {
            payload: vec![sample_push_item(), insert],
            tenant_id: "t".into(),
        };
        let expected = serde_json::to_value(variables.clone()).unwrap();
        assert_eq!(variables.into_value(), expected);
    }

    #[test]
    fn typed_variables_mean_the_json_they_render_to() {
        let push = SyncPushVariables {
            payload: vec![sample_push_item()],
            tenant_id: "t".into(),
        };
        let pull = SyncPullVariables {
            last_sync_at: Some("c1".into()),
            tenant_id: "t".into(),
            limit: Some(10),
        };
        for typed in [SyncVariables::Push(push), SyncVariables::Pull(pull)] {
            let json = typed.to_json().into_owned();
            assert_eq!(serde_json::to_value(&typed).unwrap(), json);
            assert_eq!(typed.clone().into_json(), json);
            assert_eq!(typed, SyncVariables::Json(json.clone()));
            let mut other = json;
            other["tenantId"] = json!("u");
            assert_ne!(typed, SyncVariables::Json(other));
        }
    }

    #[test]
    fn version_hash_ignores_input_order_and_covers_data() {
        let empty = Map::new();
        let data = |value: Value| value.as_object().cloned().expect("an object");
        let titled = data(json!({"t": "x y", "n": 1}));
        let a = version_hash([("b", 2, &empty), ("a", 1, &empty)]);
        assert_eq!(a, version_hash([("a", 1, &empty), ("b", 2, &empty)]));
        assert_ne!(a, version_hash([("a", 1, &empty), ("b", 3, &empty)]));
        // The same version with other data is another checksum.
        assert_ne!(a, version_hash([("a", 1, &empty), ("b", 2, &titled)]));
        assert_eq!(version_hash([]).len(), 16);
        // FNV-1a 64 over `a:1:{}\nb:-2:{"n":1,"t":"x y"}\nc:1234567890123:{"a":[1,null]}\n`,
        // as any server computes it: keys sorted, compact.
        let listed = data(json!({"a": [1, null]}));
        assert_eq!(
            version_hash([
                ("c", 1_234_567_890_123, &listed),
                ("a", 1, &empty),
                ("b", -2, &titled)
            ]),
            "573d67def1cb465d"
        );
        // Fed as text, the canonical text of each map gives the same checksum.
        let mut hasher = VersionHasher::new();
        for (id, version, map) in [
            ("a", 1, &empty),
            ("b", -2, &titled),
            ("c", 1_234_567_890_123, &listed),
        ] {
            hasher.row_text(id, version, &serde_json::to_string(map).unwrap());
        }
        assert_eq!(hasher.finish(), "573d67def1cb465d");
    }

    /// What serde reads from `value`, for comparing with the readers that move.
    fn serde_page(value: Value) -> Option<(SyncPullResponse, Vec<PulledItem>)> {
        let mut page: SyncPullResponse = serde_json::from_value(value).ok()?;
        let items = std::mem::take(&mut page.items)
            .into_iter()
            .map(|item| serde_json::from_value(item).ok())
            .collect::<Option<_>>()?;
        Some((page, items))
    }

    // Proves the pull page readers that move values out accept exactly what serde
    // accepts, and read the same values: the engine's refusal of a malformed page must
    // not depend on which reader ran.
    #[test]
    fn pull_page_readers_agree_with_serde() {
        let item = json!({"id": "s", "clientId": "c", "spaceId": "sp", "version": 2,
                          "updatedAt": 7, "data": {"t": "x", "n": [1, null]}});
        let with = |field: &str, value: Value| {
            let mut changed = item.clone();
            changed[field] = value;
            changed
        };
        let without = |field: &str| {
            let mut changed = item.clone();
            changed.as_object_mut().unwrap().remove(field);
            changed
        };
        let items = [
            item.clone(),
            with("extra", json!(1)),
            without("data"),
            without("version"),
            with("id", json!(3)),
            with("clientId", Value::Null),
            with("spaceId", json!(["sp"])),
            with("version", json!(-4)),
            with("version", json!(1.5)),
            with("version", json!(u64::MAX)),
            with("version", json!("2")),
            with("updatedAt", json!(-1)),
            with("updatedAt", json!(u64::MAX)),
            with("updatedAt", json!(2.0)),
            with("data", json!([])),
            with("data", Value::Null),
            with("data", json!({})),
            json!(["s", "c", "sp", 2, 7, {"t": "x"}]),
            json!(["s", "c"]),
            json!("s"),
            Value::Null,
            json!({}),
        ];
        for raw in &items {
            let expected = serde_json::from_value::<PulledItem>(raw.clone()).ok();
            assert_eq!(PulledItem::from_value(raw.clone()), expected, "{raw}");
        }
        let page = json!({"items": [item.clone(), item.clone()], "deletedIds": ["d"],
                          "lastSyncAt": "1.s", "versionHash": "00", "hasMore": true});
        let with = |field: &str, value: Value| {
            let mut changed = page.clone();
            changed[field] = value;
            changed
        };
        let without = |field: &str| {
            let mut changed = page.clone();
            changed.as_object_mut().unwrap().remove(field);
            changed
        };
        let pages = [
            page.clone(),
            with("extra", json!({"any": 1})),
            with("versionHash", Value::Null),
            without("versionHash"),
            with("versionHash", json!(1)),
            with("items", json!([])),
            with("items", json!([item.clone(), 3])),
            with("items", json!([with_field(&item, "extra")])),
            with("items", json!({})),
            without("items"),
            with("deletedIds", json!(["a", 1])),
            with("deletedIds", json!([])),
            without("deletedIds"),
            with("lastSyncAt", Value::Null),
            without("lastSyncAt"),
            with("hasMore", json!(1)),
            without("hasMore"),
            json!([[item.clone()], ["d"], "1.s", null, false]),
            json!([[3], ["d"], "1.s", null, false]),
            json!("page"),
            Value::Null,
        ];
        for raw in &pages {
            assert_eq!(
                read_pull_page(raw.clone()),
                serde_page(raw.clone()),
                "{raw}"
            );
        }
        assert!(read_pull_page(page).is_some());
    }

    fn with_field(object: &Value, field: &str) -> Value {
        let mut changed = object.clone();
        changed[field] = json!(true);
        changed
    }

    // A failed op stores its code by `as_str`: the spelling must be the wire's, both ways.
    #[test]
    fn error_code_text_is_the_wire_text() {
        let every = [
            ErrorCode::Conflict,
            ErrorCode::Stale,
            ErrorCode::RecordDeleted,
            ErrorCode::Validation,
            ErrorCode::NotFound,
            ErrorCode::Unauthorized,
            ErrorCode::ServerBusy,
            ErrorCode::Timeout,
        ];
        for code in every {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("validation"), None);
        assert_eq!(ErrorCode::parse(""), None);
    }
}
