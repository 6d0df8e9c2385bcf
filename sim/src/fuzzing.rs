//! Fuzz target bodies: what `fuzz/fuzz_targets/*.rs` hands libFuzzer's bytes to, and what
//! `sim/tests/fuzz_corpus.rs` runs on stable over the checked-in corpus and over generated
//! inputs, so a crash found by a campaign becomes an ordinary failing `cargo test`.
//!
//! Each target is `pub fn NAME(data: &[u8])`. Bytes that start with `{` or `[` are read as
//! JSON first (the readable form the seed corpus is written in); any other bytes, or JSON
//! of the wrong shape, drive an [`Arbitrary`] input. A target fails only by panicking, and
//! every property it checks is an assertion whose message names the contract that broke:
//!
//! - [`server_push`]: the reference server under arbitrary and hostile push requests.
//! - [`server_pull`]: paging with arbitrary cursors and limits over arbitrary pushes.
//! - [`engine_merge`]: an engine with local writes fed hostile push results and pages.
//! - [`conflict_policy`]: `decide` and `judge_pulled` against each other and the server.
//! - [`sim_world`]: a whole simulated world with fuzzer-chosen knobs.
//!
//! `fuzz/README.md` explains campaigns, the corpus, and how a crash becomes a regression
//! test. This module must never weaken a property to make an input pass: an input that
//! breaks one is a bug report.
//!
//! Targets own no clock and no randomness: one input replays one run. Work per input is
//! bounded (`*_MAX` constants) so that a campaign spends its time on breadth.

use crate::server::ReferenceServer;
use arbitrary::{Arbitrary, Unstructured};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Number, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use sync_engine::conflict::{self, PulledVerdict, Winner};
use sync_engine::hlc::HlcStamp;
use sync_engine::registry::OperationKind;
use sync_engine::wire::{
    self, ConflictPayload, Envelope, ErrorCode, Operation, PulledItem, SyncPullResponse,
    SyncPushItem, SyncPushResponse, SyncPushVariables, SyncRequest, SyncResultItem,
};
use sync_engine::{
    testing, Engine, ManualClock, OpStatus, QueuedOp, Record, Resolution, Side, SyncEvent,
    TransportError,
};

// ---- decoding ---------------------------------------------------------------------------

/// Reads a target's input: JSON when the bytes look like JSON and fit `T`, else
/// `Arbitrary` over all the bytes.
fn decode<T>(data: &[u8]) -> Option<T>
where
    T: for<'a> Arbitrary<'a> + DeserializeOwned,
{
    if looks_like_json(data) {
        if let Ok(input) = serde_json::from_slice(data) {
            return Some(input);
        }
    }
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

fn looks_like_json(data: &[u8]) -> bool {
    matches!(data.first(), Some(b'{' | b'['))
}

// ---- shared vocabulary ------------------------------------------------------------------

const TENANT_A: &str = "tenant-a";
const TOKEN_A: &str = "token-a";
const TENANT_B: &str = "tenant-b";
const TOKEN_B: &str = "token-b";
const ENTITIES: [&str; 3] = ["Space", "Group", "Identity"];
const SPACES: [&str; 2] = ["space-1", "space-2"];
/// Stands for a string longer than any id limit (expanded by [`Text::resolve`]).
const LONG: &str = "<long>";

/// Words JSON generators draw strings and object keys from: the wire's field names, codes
/// and the fixtures' ids, so that generated JSON often has the right shape.
const WORDS: &[&str] = &[
    "opId",
    "clientId",
    "id",
    "operation",
    "data",
    "baseVersion",
    "force",
    "spaceId",
    "updatedAt",
    "payload",
    "tenantId",
    "results",
    "success",
    "errorCode",
    "errorMessage",
    "version",
    "conflict",
    "serverData",
    "serverVersion",
    "serverUpdatedAt",
    "serverIsDeleted",
    "items",
    "deletedIds",
    "lastSyncAt",
    "versionHash",
    "hasMore",
    "limit",
    "errors",
    "message",
    "extensions",
    "code",
    "insert",
    "update",
    "delete",
    "STALE",
    "CONFLICT",
    "RECORD_DELETED",
    "VALIDATION",
    "NOT_FOUND",
    "UNAUTHORIZED",
    "SERVER_BUSY",
    "TIMEOUT",
    "name",
    "color",
    "c-1",
    "c-2",
    "srv-0000000001",
    "srv-0000000002",
    "space-1",
    "tenant-a",
    "",
    "$client:0",
    "$client:1",
    "$server:0",
    "$op:0",
    "$op:1",
    "$stamp:0",
    "$stamp+:0",
    "$version:0",
    "$cursor",
];

/// Numbers worth trying: limits, version edges, stamps at the fixtures' values and at the
/// ends of their types.
const NUMBERS: &[i128] = &[
    0,
    1,
    2,
    -1,
    1000,
    2000,
    10_000,
    10_001,
    1 << 53,
    i64::MAX as i128,
    i64::MIN as i128,
    u64::MAX as i128,
];

fn number(value: i128) -> Value {
    if let Ok(small) = i64::try_from(value) {
        Value::from(small)
    } else if let Ok(large) = u64::try_from(value) {
        Value::from(large)
    } else {
        Value::Null
    }
}

/// A JSON value of bounded size whose strings and keys lean on [`WORDS`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Json(pub Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Json(json_value(u, 3)?))
    }
}

fn json_value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let kinds: u8 = if depth == 0 { 6 } else { 8 };
    Ok(match u.int_in_range(0..=kinds - 1)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => number(*u.choose(NUMBERS)?),
        3 => match u.int_in_range(0..=2)? {
            0 => Value::from(u.arbitrary::<i64>()?),
            1 => Value::from(u.arbitrary::<u64>()?),
            _ => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        },
        4 => Value::String((*u.choose(WORDS)?).to_owned()),
        5 => Value::String(short_string(u)?),
        6 => {
            let len = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(json_value(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let len = u.int_in_range(0..=5)?;
            let mut map = Map::new();
            for _ in 0..len {
                let key = if u.ratio(7, 8)? {
                    (*u.choose(WORDS)?).to_owned()
                } else {
                    short_string(u)?
                };
                map.insert(key, json_value(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// Up to `MAX` elements, the count taken from one byte. `Arbitrary`'s own `Vec` reads its
/// length from the input's end and tends to swallow every byte left, which turns most
/// inputs into one huge request; this keeps arbitrary inputs a sequence of small steps.
fn few<'a, T: Arbitrary<'a>, const MAX: usize>(
    u: &mut Unstructured<'a>,
) -> arbitrary::Result<Vec<T>> {
    let len = u.int_in_range(0..=MAX)?;
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        if u.is_empty() {
            break;
        }
        items.push(T::arbitrary(u)?);
    }
    Ok(items)
}

/// A string of at most 40 bytes (invalid UTF-8 replaced), for the same reason as [`few`].
fn short_string(u: &mut Unstructured<'_>) -> arbitrary::Result<String> {
    let len = u.int_in_range(0..=40)?;
    let bytes = u.bytes(len.min(u.len()))?;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn maybe_short_string(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<String>> {
    Ok(if u.arbitrary()? {
        Some(short_string(u)?)
    } else {
        None
    })
}

/// A string: a word from the context's list (by index, wrapping), or any text.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
#[serde(untagged)]
pub enum Text {
    Word(u8),
    Any(#[arbitrary(with = short_string)] String),
}

impl Text {
    fn resolve(&self, words: &[&str]) -> String {
        let word = match self {
            Text::Any(text) => return text.clone(),
            Text::Word(index) => words[usize::from(*index) % words.len()],
        };
        if word == LONG {
            "x".repeat(200)
        } else {
            word.to_owned()
        }
    }
}

const FIELDS: [&str; 4] = ["name", "color", "size", "note"];

/// A record's data: a few fields from [`FIELDS`] with small values, or any JSON (which
/// need not be an object).
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
#[serde(untagged)]
pub enum DataInput {
    Fields(#[arbitrary(with = few::<(u8, u8), 6>)] Vec<(u8, u8)>),
    Json(Json),
}

impl DataInput {
    fn to_value(&self) -> Value {
        match self {
            DataInput::Json(json) => json.0.clone(),
            DataInput::Fields(fields) => {
                let values = [
                    Value::Null,
                    json!(true),
                    json!(0),
                    json!(1),
                    json!("a"),
                    json!("b"),
                    json!([]),
                    json!({}),
                ];
                let mut map = Map::new();
                for (field, value) in fields.iter().take(6) {
                    let name = FIELDS[usize::from(*field) % FIELDS.len()];
                    let value = values[usize::from(*value) % values.len()].clone();
                    map.insert(name.to_owned(), value);
                }
                Value::Object(map)
            }
        }
    }

    /// The data as an object; anything else becomes `{}`.
    fn to_map(&self) -> Map<String, Value> {
        match self.to_value() {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

/// An HLC stamp: near one of the context's stamps, or any value.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
#[serde(untagged)]
pub enum StampInput {
    Exact(u64),
    Near { base: u8, delta: i8 },
}

impl StampInput {
    fn resolve(&self, bases: &[u64]) -> u64 {
        match self {
            StampInput::Exact(stamp) => *stamp,
            StampInput::Near { base, delta } => {
                let base = match bases.len() {
                    0 => 1000,
                    len => bases[usize::from(*base) % len],
                };
                base.saturating_add_signed(i64::from(*delta))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationInput {
    Insert,
    Update,
    Delete,
}

impl OperationInput {
    fn to_wire(self) -> Operation {
        match self {
            OperationInput::Insert => Operation::Insert,
            OperationInput::Update => Operation::Update,
            OperationInput::Delete => Operation::Delete,
        }
    }
}

fn entity_name(index: u8) -> &'static str {
    ENTITIES[usize::from(index) % ENTITIES.len()]
}

fn space_name(index: u8) -> &'static str {
    SPACES[usize::from(index) % SPACES.len()]
}

// ---- the server fixture -----------------------------------------------------------------

const FIXTURE_OP_IDS: &[&str] = &[
    "op-1", "op-2", "op-3", "op-4", "op-5", "op-6", "op-7", "op-8", "", LONG,
];
const FIXTURE_CLIENT_IDS: &[&str] = &["c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "", LONG];
const FIXTURE_SERVER_IDS: &[&str] = &[
    "srv-0000000001",
    "srv-0000000002",
    "srv-0000000003",
    "srv-0000000004",
    "srv-0000000005",
    "srv-0000000006",
    "c-1",
    "c-5",
    "",
    LONG,
];
const FIXTURE_SPACES: &[&str] = &["space-1", "space-2", "", "bad space", LONG];
const FIXTURE_STAMPS: &[u64] = &[1000, 2000, 3000, 0, u64::MAX];

/// A server with two tenants and a few records in every state, so that short inputs
/// reach updates, stale writes, conflicts and tombstones.
///
/// Tenant A: Space `c-1` (v1, stamp 1000, srv-1), `c-2` (v2, stamp 2000, srv-2), `c-3`
/// (deleted, srv-3); Group `c-4` (srv-4). Tenant B: Space `c-1` (srv-5).
pub fn fixture_server() -> ReferenceServer {
    static FIXTURE: std::sync::OnceLock<ReferenceServer> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(build_fixture_server).clone()
}

fn build_fixture_server() -> ReferenceServer {
    let mut server = ReferenceServer::new(testing::example_registry());
    server.add_tenant_token(TENANT_A, TOKEN_A);
    server.add_tenant_token(TENANT_B, TOKEN_B);
    let insert = |op_id: &str, client_id: &str| {
        json!({"opId": op_id, "clientId": client_id, "operation": "insert",
               "data": {"name": client_id}, "spaceId": "space-1", "updatedAt": 1000})
    };
    let batches = [
        (
            "syncPushSpace",
            TENANT_A,
            TOKEN_A,
            vec![
                insert("fx-1", "c-1"),
                insert("fx-2", "c-2"),
                insert("fx-3", "c-3"),
            ],
        ),
        (
            "syncPushSpace",
            TENANT_A,
            TOKEN_A,
            vec![
                json!({"opId": "fx-4", "id": "srv-0000000002", "operation": "update",
                       "data": {"name": "two"}, "baseVersion": 1, "spaceId": "space-1",
                       "updatedAt": 2000}),
                json!({"opId": "fx-5", "id": "srv-0000000003", "operation": "delete",
                       "data": {}, "baseVersion": 1, "spaceId": "space-1", "updatedAt": 2000}),
            ],
        ),
        (
            "syncPushGroup",
            TENANT_A,
            TOKEN_A,
            vec![insert("fx-6", "c-4")],
        ),
        (
            "syncPushSpace",
            TENANT_B,
            TOKEN_B,
            vec![insert("fx-7", "c-1")],
        ),
    ];
    for (operation_name, tenant_id, token, items) in batches {
        let request = push_request(operation_name, tenant_id, token, items);
        let response = server.handle(&request);
        let results = push_results(&request, &response).expect("fixture push accepted");
        assert!(results.iter().all(|result| result.success), "{results:?}");
    }
    server.check_invariants();
    server
}

fn request(operation_name: &str, tenant_id: &str, token: &str, variables: Value) -> SyncRequest {
    SyncRequest {
        request_id: 1,
        operation_name: operation_name.to_owned(),
        tenant_id: tenant_id.to_owned(),
        token: token.to_owned(),
        variables,
    }
}

fn push_request(
    operation_name: &str,
    tenant_id: &str,
    token: &str,
    items: Vec<Value>,
) -> SyncRequest {
    request(
        operation_name,
        tenant_id,
        token,
        json!({"payload": items, "tenantId": tenant_id}),
    )
}

/// The results of a push answered with data; `None` for an error envelope.
fn push_results(request: &SyncRequest, response: &Value) -> Option<Vec<SyncResultItem>> {
    match wire::parse_envelope(&request.operation_name, response) {
        Envelope::Data(payload) => {
            let parsed: SyncPushResponse =
                serde_json::from_value(payload).expect("a push answer is a SyncPushResponse");
            Some(parsed.results)
        }
        Envelope::Error { code, .. } => {
            assert!(code.is_some(), "an error envelope names its code");
            None
        }
    }
}

// ---- server_push ------------------------------------------------------------------------

/// One push item, built from the fixture's vocabulary so that op ids, client ids and
/// server ids collide with each other and with the fixture's records.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ItemInput {
    pub op_id: Text,
    pub operation: OperationInput,
    pub client_id: Option<Text>,
    pub id: Option<Text>,
    pub data: DataInput,
    pub base_version: Option<i8>,
    #[serde(default)]
    pub force: bool,
    pub space_id: Text,
    pub updated_at: StampInput,
}

impl ItemInput {
    fn to_item(&self) -> SyncPushItem {
        SyncPushItem {
            client_id: self
                .client_id
                .as_ref()
                .map(|text| text.resolve(FIXTURE_CLIENT_IDS)),
            id: self
                .id
                .as_ref()
                .map(|text| text.resolve(FIXTURE_SERVER_IDS)),
            operation: self.operation.to_wire(),
            data: self.data.to_value(),
            op_id: self.op_id.resolve(FIXTURE_OP_IDS),
            base_version: self.base_version.map(i64::from),
            force: self.force,
            space_id: self.space_id.resolve(FIXTURE_SPACES),
            updated_at: HlcStamp(self.updated_at.resolve(FIXTURE_STAMPS)),
        }
    }
}

/// Who a request claims to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary, Deserialize)]
pub enum AuthInput {
    TenantA,
    TenantB,
    /// The token is A's; the request names tenant B.
    RequestTenantMismatch,
    /// The request is A's; `variables.tenantId` names tenant B.
    VariablesTenantMismatch,
    UnknownToken,
}

impl AuthInput {
    /// (request tenant, token, variables tenant)
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            AuthInput::TenantA => (TENANT_A, TOKEN_A, TENANT_A),
            AuthInput::TenantB => (TENANT_B, TOKEN_B, TENANT_B),
            AuthInput::RequestTenantMismatch => (TENANT_B, TOKEN_A, TENANT_B),
            AuthInput::VariablesTenantMismatch => (TENANT_A, TOKEN_A, TENANT_B),
            AuthInput::UnknownToken => (TENANT_A, "token-unknown", TENANT_A),
        }
    }
}

/// A change to a well-formed batch's JSON that may make it malformed.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum TamperInput {
    RemoveField { item: u8, field: u8 },
    SetField { item: u8, field: u8, value: Json },
    AddUnknownField { item: u8 },
    PayloadNotArray(Json),
    EmptyPayload,
    OversizePayload,
    RemoveTenantId,
}

const ITEM_FIELDS: [&str; 9] = [
    "opId",
    "clientId",
    "id",
    "operation",
    "data",
    "baseVersion",
    "force",
    "spaceId",
    "updatedAt",
];

impl TamperInput {
    fn apply(&self, variables: &mut Value) {
        fn item_at(variables: &mut Value, index: u8) -> Option<&mut Map<String, Value>> {
            let items = variables.get_mut("payload")?.as_array_mut()?;
            let len = items.len();
            if len == 0 {
                return None;
            }
            items[usize::from(index) % len].as_object_mut()
        }
        let field_name = |field: u8| ITEM_FIELDS[usize::from(field) % ITEM_FIELDS.len()];
        match self {
            TamperInput::RemoveField { item, field } => {
                if let Some(object) = item_at(variables, *item) {
                    object.remove(field_name(*field));
                }
            }
            TamperInput::SetField { item, field, value } => {
                if let Some(object) = item_at(variables, *item) {
                    object.insert(field_name(*field).to_owned(), value.0.clone());
                }
            }
            TamperInput::AddUnknownField { item } => {
                if let Some(object) = item_at(variables, *item) {
                    object.insert("unexpected".to_owned(), json!(1));
                }
            }
            TamperInput::PayloadNotArray(value) => variables["payload"] = value.0.clone(),
            TamperInput::EmptyPayload => variables["payload"] = json!([]),
            TamperInput::OversizePayload => {
                if let Some(first) = variables["payload"].get(0).cloned() {
                    variables["payload"] = Value::Array(vec![first; 1001]);
                }
            }
            TamperInput::RemoveTenantId => {
                if let Some(object) = variables.as_object_mut() {
                    object.remove("tenantId");
                }
            }
        }
    }
}

/// One request of a [`server_push`] run.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum PushRequestInput {
    /// A batch built from items, possibly tampered with.
    Batch {
        entity: u8,
        auth: AuthInput,
        #[arbitrary(with = few::<ItemInput, 12>)]
        items: Vec<ItemInput>,
        tamper: Option<TamperInput>,
    },
    /// Any JSON as the variables of tenant A's `syncPushSpace`.
    Variables(Json),
    /// Any operation name, token, tenant and variables.
    Raw {
        operation: Text,
        token: Text,
        tenant: Text,
        variables: Json,
    },
    /// A pull, which must change nothing.
    Pull {
        entity: u8,
        cursor: Option<Text>,
        limit: Option<i16>,
    },
}

const PUSH_ITEMS_MAX: usize = 12;
const REQUESTS_MAX: usize = 24;

impl PushRequestInput {
    fn to_request(&self) -> SyncRequest {
        match self {
            PushRequestInput::Batch {
                entity,
                auth,
                items,
                tamper,
            } => {
                let (tenant_id, token, variables_tenant_id) = auth.parts();
                let payload: Vec<SyncPushItem> = items
                    .iter()
                    .take(PUSH_ITEMS_MAX)
                    .map(ItemInput::to_item)
                    .collect();
                let mut variables = serde_json::to_value(SyncPushVariables {
                    payload,
                    tenant_id: variables_tenant_id.to_owned(),
                })
                .expect("push variables serialize");
                if let Some(tamper) = tamper {
                    tamper.apply(&mut variables);
                }
                let operation_name = format!("syncPush{}", entity_name(*entity));
                request(&operation_name, tenant_id, token, variables)
            }
            PushRequestInput::Variables(variables) => {
                request("syncPushSpace", TENANT_A, TOKEN_A, variables.0.clone())
            }
            PushRequestInput::Raw {
                operation,
                token,
                tenant,
                variables,
            } => request(
                &operation.resolve(&[
                    "syncPushSpace",
                    "syncPushGroup",
                    "syncPullSpace",
                    "syncPushNope",
                    "syncPush",
                    "",
                ]),
                &tenant.resolve(&[TENANT_A, TENANT_B, "tenant-c", ""]),
                &token.resolve(&[TOKEN_A, TOKEN_B, "", "token-a "]),
                variables.0.clone(),
            ),
            PushRequestInput::Pull {
                entity,
                cursor,
                limit,
            } => {
                let cursor = cursor.as_ref().map(|text| {
                    text.resolve(&["", "1.srv-0000000001", "3.srv-0000000002", "0.x", "."])
                });
                request(
                    &format!("syncPull{}", entity_name(*entity)),
                    TENANT_A,
                    TOKEN_A,
                    json!({"lastSyncAt": cursor, "tenantId": TENANT_A, "limit": limit}),
                )
            }
        }
    }
}

/// Input of [`server_push`]: requests sent in order to [`fixture_server`].
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ServerPushInput {
    pub requests: Vec<PushRequestInput>,
}

/// The reference server never panics on a push; a malformed request is refused with an
/// error envelope and changes nothing; invariants hold after every request; commit
/// stamps never decrease; a replayed op gets its first answer back.
///
/// Bytes that are JSON are the variables of tenant A's `syncPushSpace` (a top-level array:
/// one request per element); other bytes drive a [`ServerPushInput`].
pub fn server_push(data: &[u8]) {
    if looks_like_json(data) {
        if let Ok(value) = serde_json::from_slice::<Value>(data) {
            let requests = match value {
                Value::Array(elements) => elements,
                single => vec![single],
            };
            return server_push_input(&ServerPushInput {
                requests: requests
                    .into_iter()
                    .map(|variables| PushRequestInput::Variables(Json(variables)))
                    .collect(),
            });
        }
    }
    if let Ok(input) = ServerPushInput::arbitrary_take_rest(Unstructured::new(data)) {
        server_push_input(&input);
    }
}

pub fn server_push_input(input: &ServerPushInput) {
    let mut server = fixture_server();
    let mut answers = ReplayLog::default();
    for request_input in input.requests.iter().take(REQUESTS_MAX) {
        let request = request_input.to_request();
        send_and_check(&mut server, &request, &mut answers);
    }
}

/// Every push result the server gave, per (tenant, opId): a replay must repeat it.
#[derive(Default)]
struct ReplayLog {
    first_result: BTreeMap<(String, String), SyncResultItem>,
}

/// What the contract says about a request before the server sees it: `Err` when it must
/// be refused as a whole. Mirrors the documented contract, not the server's code.
fn push_acceptance(server_tokens: &[(&str, &str)], request: &SyncRequest) -> Result<(), String> {
    let registry = testing::example_registry();
    let Some((kind, _)) = registry.resolve_operation(&request.operation_name) else {
        return Err("unknown operation".to_owned());
    };
    let Some(&(token_tenant, _)) = server_tokens
        .iter()
        .find(|(_, token)| *token == request.token)
    else {
        return Err("unknown token".to_owned());
    };
    if request.tenant_id != token_tenant {
        return Err("request tenant is not the token's".to_owned());
    }
    if kind == OperationKind::Pull {
        return Ok(());
    }
    let variables = SyncPushVariables::deserialize(&request.variables)
        .map_err(|error| format!("variables: {error}"))?;
    if variables.tenant_id != token_tenant {
        return Err("variables tenant is not the token's".to_owned());
    }
    if variables.payload.is_empty() || variables.payload.len() > 1000 {
        return Err("payload length".to_owned());
    }
    for item in &variables.payload {
        push_item_acceptance(item)?;
    }
    Ok(())
}

/// The documented limits of one push item (sim/src/server/push.rs, `validate`).
fn push_item_acceptance(item: &SyncPushItem) -> Result<(), String> {
    let len_ok = |text: &str, len_max: usize| (1..=len_max).contains(&text.chars().count());
    if !len_ok(&item.op_id, 128) {
        return Err("opId length".to_owned());
    }
    let space_chars_ok = item
        .space_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !len_ok(&item.space_id, 64) || !space_chars_ok {
        return Err("spaceId".to_owned());
    }
    if item.client_id.as_deref().is_some_and(|id| !len_ok(id, 128)) {
        return Err("clientId length".to_owned());
    }
    if item.id.as_deref().is_some_and(|id| !len_ok(id, 128)) {
        return Err("id length".to_owned());
    }
    match item.operation {
        Operation::Insert if item.client_id.is_none() => {
            return Err("insert without clientId".to_owned())
        }
        Operation::Update | Operation::Delete if item.id.is_none() && item.client_id.is_none() => {
            return Err("write without id".to_owned())
        }
        Operation::Insert | Operation::Update | Operation::Delete => {}
    }
    if !item.data.is_object() {
        return Err("data not an object".to_owned());
    }
    Ok(())
}

const FIXTURE_TOKENS: [(&str, &str); 2] = [(TENANT_A, TOKEN_A), (TENANT_B, TOKEN_B)];

/// Sends one request and checks everything the contract promises about its answer and
/// the state change it caused.
fn send_and_check(server: &mut ReferenceServer, request: &SyncRequest, answers: &mut ReplayLog) {
    let before = server.clone();
    let response = server.handle(request);
    server.check_invariants();
    // The server is deterministic: the same request on the same state, the same answer.
    let mut twin = before.clone();
    assert_eq!(
        twin.handle(request),
        response,
        "the server answered differently"
    );
    assert!(twin == *server, "the server changed state differently");
    let acceptance = push_acceptance(&FIXTURE_TOKENS, request);
    let envelope = wire::parse_envelope(&request.operation_name, &response);
    if let Err(reason) = &acceptance {
        assert!(
            matches!(envelope, Envelope::Error { .. }),
            "a malformed request ({reason}) was answered with data: {request:?} -> {response}"
        );
    }
    check_state_change(&before, server, request);
    let payload = match envelope {
        Envelope::Error { code, message } => {
            assert!(
                *server == before,
                "a refused request changed state: {request:?}"
            );
            assert!(
                matches!(code, Some(ErrorCode::Validation | ErrorCode::Unauthorized)),
                "unexpected refusal {code:?} {message}"
            );
            if request.operation_name.starts_with("syncPull") {
                return;
            }
            // A well-formed request deserves data; only a malformed one is refused.
            assert!(
                acceptance.is_err(),
                "a well-formed request was refused ({code:?} {message}): {request:?}"
            );
            return;
        }
        Envelope::Data(payload) => payload,
    };
    if request.operation_name.starts_with("syncPull") {
        assert!(*server == before, "a pull changed state");
        let page: SyncPullResponse =
            serde_json::from_value(payload).expect("a pull answer is a SyncPullResponse");
        check_page_rows(
            server,
            &request.tenant_id,
            &request.operation_name[8..],
            &page,
        );
        return;
    }
    let variables =
        SyncPushVariables::deserialize(&request.variables).expect("accepted variables parse");
    let parsed: SyncPushResponse =
        serde_json::from_value(payload).expect("a push answer is a SyncPushResponse");
    check_push_results(
        server,
        &request.tenant_id,
        &variables.payload,
        &parsed.results,
    );
    for result in parsed.results {
        let key = (request.tenant_id.clone(), result.op_id.clone());
        match answers.first_result.get(&key) {
            Some(first) => assert_eq!(
                first, &result,
                "op {} answered differently on replay",
                result.op_id
            ),
            None => {
                answers.first_result.insert(key, result);
            }
        }
    }
}

/// Results come one per item in payload order and are internally consistent.
fn check_push_results(
    server: &ReferenceServer,
    tenant_id: &str,
    payload: &[SyncPushItem],
    results: &[SyncResultItem],
) {
    assert_eq!(results.len(), payload.len(), "one result per item");
    let records = server.records(tenant_id);
    for (item, result) in payload.iter().zip(results) {
        assert_eq!(result.op_id, item.op_id, "results in payload order");
        if result.success {
            assert!(result.error_code.is_none(), "{result:?}");
            assert!(result.conflict.is_none(), "{result:?}");
        } else {
            assert!(result.error_code.is_some(), "{result:?}");
        }
        let carries_row = matches!(
            result.error_code,
            Some(ErrorCode::Stale | ErrorCode::Conflict | ErrorCode::RecordDeleted)
        );
        assert_eq!(result.conflict.is_some(), carries_row, "{result:?}");
        if let Some(id) = &result.id {
            let record = records.iter().find(|record| &record.id == id);
            let Some(record) = record else {
                panic!("result names record {id} the tenant does not have: {result:?}");
            };
            assert!(result
                .version
                .is_some_and(|version| version <= record.version));
            assert!(result.version.is_some_and(|version| version >= 1));
        }
        if let Some(conflict) = &result.conflict {
            assert!(conflict.server_version >= 1, "{result:?}");
            assert!(conflict.server_data.is_object(), "{result:?}");
        }
    }
}

/// What may change between two server states: records only move forward, tombstones
/// stay, commit stamps never decrease, and one request takes at most one commit stamp.
fn check_state_change(before: &ReferenceServer, after: &ReferenceServer, request: &SyncRequest) {
    for tenant_id in before.tenants() {
        let stamp_before = before.commit_stamp(&tenant_id);
        let stamp_after = after.commit_stamp(&tenant_id);
        assert!(stamp_after >= stamp_before, "commit stamp went backwards");
        let records_after = after.records(&tenant_id);
        for old in before.records(&tenant_id) {
            let Some(new) = records_after.iter().find(|record| record.id == old.id) else {
                panic!("record {} vanished", old.id);
            };
            assert!(new.version >= old.version, "version went backwards");
            assert!(
                new.commit_stamp >= old.commit_stamp,
                "row stamp went backwards"
            );
            if new.version == old.version {
                assert_eq!(*new, old, "a record changed without a new version");
            }
            if old.is_deleted {
                assert!(new.is_deleted, "a tombstone was resurrected");
            }
            assert_eq!(new.client_id, old.client_id);
            assert_eq!(new.entity, old.entity);
        }
    }
    let new_effects = &after.effects()[before.effects().len()..];
    assert_eq!(
        &after.effects()[..before.effects().len()],
        before.effects(),
        "the effect log is append-only"
    );
    if let Some(first) = new_effects.first() {
        let stamp = after.commit_stamp(&first.tenant_id);
        assert_eq!(
            stamp,
            before.commit_stamp(&first.tenant_id) + 1,
            "one commit stamp per request"
        );
        for effect in new_effects {
            assert_eq!(
                effect.tenant_id, request.tenant_id,
                "effects stay in the tenant"
            );
            assert_eq!(effect.commit_stamp, stamp, "one commit stamp per request");
        }
    }
    for tenant_id in after.tenants() {
        let changed = before.records(&tenant_id) != after.records(&tenant_id);
        if changed {
            assert_eq!(
                tenant_id, request.tenant_id,
                "a request changed another tenant"
            );
        }
    }
}

// ---- server_pull ------------------------------------------------------------------------

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
fn check_page_rows(
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
        .map(|record| (record.id.as_str(), record.version));
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

// ---- conflict_policy --------------------------------------------------------------------

/// One side of a concurrent write.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct VersionInput {
    pub stamp: StampInput,
    pub data: DataInput,
}

/// Input of [`conflict_policy`]: a local copy (maybe with pending ops, maybe deleted) and
/// a pulled server copy of the same record.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ConflictPolicyInput {
    pub local: VersionInput,
    pub server: VersionInput,
    #[serde(default)]
    pub local_missing: bool,
    #[serde(default)]
    pub local_deleted: bool,
    #[serde(default)]
    pub local_base_version: u8,
    #[serde(default)]
    pub server_version: u8,
    #[serde(default)]
    pub pending_ops: u8,
}

const POLICY_STAMPS: &[u64] = &[1000, 2000, 0, u64::MAX];

fn swapped(winner: Winner) -> Winner {
    match winner {
        Winner::Local => Winner::Server,
        Winner::Server => Winner::Local,
        Winner::Same => Winner::Same,
        Winner::User => Winner::User,
    }
}

/// `decide` is deterministic and symmetric and agrees with the stamps; `judge_pulled`
/// follows it; the reference server decides a concurrent write the same way.
pub fn conflict_policy(data: &[u8]) {
    if let Some(input) = decode::<ConflictPolicyInput>(data) {
        conflict_policy_input(&input);
    }
}

pub fn conflict_policy_input(input: &ConflictPolicyInput) {
    let local_stamp = HlcStamp(input.local.stamp.resolve(POLICY_STAMPS));
    let server_stamp = HlcStamp(input.server.stamp.resolve(POLICY_STAMPS));
    let local_data = input.local.data.to_map();
    let server_data = input.server.data.to_map();

    let winner = conflict::decide(local_stamp, &local_data, server_stamp, &server_data);
    assert_eq!(
        winner,
        conflict::decide(local_stamp, &local_data, server_stamp, &server_data),
        "decide is deterministic"
    );
    assert_eq!(
        swapped(winner),
        conflict::decide(server_stamp, &server_data, local_stamp, &local_data),
        "swapping the sides swaps the winner"
    );
    let expected = match local_stamp.cmp(&server_stamp) {
        std::cmp::Ordering::Greater => Winner::Local,
        std::cmp::Ordering::Less => Winner::Server,
        std::cmp::Ordering::Equal if local_data == server_data => Winner::Same,
        std::cmp::Ordering::Equal => Winner::User,
    };
    assert_eq!(
        winner, expected,
        "the newer stamp wins; equal stamps ask the user"
    );

    check_judge_pulled(
        input,
        local_stamp,
        &local_data,
        server_stamp,
        &server_data,
        winner,
    );
    check_server_agrees(
        input,
        local_stamp,
        &local_data,
        server_stamp,
        &server_data,
        winner,
    );
}

fn check_judge_pulled(
    input: &ConflictPolicyInput,
    local_stamp: HlcStamp,
    local_data: &Map<String, Value>,
    server_stamp: HlcStamp,
    server_data: &Map<String, Value>,
    winner: Winner,
) {
    let server_version = i64::from(input.server_version % 8) + 1;
    let local = Record {
        client_id: "c-1".to_owned(),
        server_id: Some("srv-1".to_owned()),
        entity: "Space".to_owned(),
        space_id: "space-1".to_owned(),
        version: i64::from(input.local_base_version % 8) + 1,
        base_version: i64::from(input.local_base_version % 8),
        updated_at: local_stamp,
        is_deleted: input.local_deleted,
        data: local_data.clone(),
    };
    let server = Record {
        client_id: "c-1".to_owned(),
        server_id: Some("srv-1".to_owned()),
        entity: "Space".to_owned(),
        space_id: "space-1".to_owned(),
        version: server_version,
        base_version: server_version,
        updated_at: server_stamp,
        is_deleted: false,
        data: server_data.clone(),
    };
    let pending: Vec<QueuedOp> = (0..input.pending_ops % 4)
        .map(|index| QueuedOp {
            seq: i64::from(index) + 1,
            op_id: format!("op-{index}"),
            entity: "Space".to_owned(),
            operation: if input.local_deleted && index + 1 == input.pending_ops % 4 {
                Operation::Delete
            } else {
                Operation::Update
            },
            entity_id: "c-1".to_owned(),
            space_id: "space-1".to_owned(),
            payload: local_data.clone(),
            base_version: local.base_version,
            updated_at: local_stamp,
            force: false,
            status: OpStatus::Pending,
            attempts: 0,
            last_error: None,
            created_at_ms: 0,
        })
        .collect();
    let local_ref = (!input.local_missing).then_some(&local);
    let verdict = conflict::judge_pulled(local_ref, &pending, &server);
    assert_eq!(
        verdict,
        conflict::judge_pulled(local_ref, &pending, &server),
        "judge_pulled is deterministic"
    );
    if input.local_missing {
        assert_eq!(verdict, PulledVerdict::Stored, "a new record is stored");
        return;
    }
    if pending.is_empty() {
        let expected = if server.version >= local.base_version {
            PulledVerdict::Stored
        } else {
            PulledVerdict::KeptLocal
        };
        assert_eq!(
            verdict, expected,
            "without local edits the newer version is kept"
        );
        return;
    }
    if input.local_deleted {
        assert_eq!(verdict, PulledVerdict::KeptLocal, "a pending delete wins");
        return;
    }
    match winner {
        Winner::Server => {
            let op_ids: Vec<String> = pending.iter().map(|op| op.op_id.clone()).collect();
            assert_eq!(verdict, PulledVerdict::Superseded(op_ids));
        }
        Winner::Local | Winner::Same => assert_eq!(verdict, PulledVerdict::KeptLocal),
        Winner::User => {
            let PulledVerdict::Conflict(conflict) = verdict else {
                panic!("equal stamps, different data: expected a conflict, got {verdict:?}");
            };
            assert_eq!(conflict.local_data, *local_data);
            assert_eq!(conflict.server_data, *server_data);
            assert_eq!(conflict.local_updated_at, local_stamp);
            assert_eq!(conflict.server_updated_at, server_stamp);
            assert_eq!(conflict.server_version, server_version);
            assert!(!conflict.server_is_deleted);
            assert!(!conflict.changed_fields().is_empty());
        }
    }
}

/// The server decides a concurrent update exactly as `decide` does (the client and the
/// server share one policy), and a delete wins whatever the stamps.
fn check_server_agrees(
    input: &ConflictPolicyInput,
    local_stamp: HlcStamp,
    local_data: &Map<String, Value>,
    server_stamp: HlcStamp,
    server_data: &Map<String, Value>,
    winner: Winner,
) {
    let mut server = ReferenceServer::new(testing::example_registry());
    server.add_tenant_token(TENANT_A, TOKEN_A);
    let push = |server: &mut ReferenceServer, item: Value| -> SyncResultItem {
        let request = push_request("syncPushSpace", TENANT_A, TOKEN_A, vec![item]);
        let response = server.handle(&request);
        server.check_invariants();
        let mut results = push_results(&request, &response).expect("a well-formed push");
        assert_eq!(results.len(), 1);
        results.remove(0)
    };
    let inserted = push(
        &mut server,
        json!({"opId": "op-server", "clientId": "c-1", "operation": "insert",
               "data": server_data, "spaceId": "space-1", "updatedAt": server_stamp}),
    );
    assert!(inserted.success);
    let id = inserted.id.expect("an insert names its row");
    let operation = if input.local_deleted {
        "delete"
    } else {
        "update"
    };
    // `baseVersion: 0` — the writer never saw the server's version 1: a concurrent write.
    let result = push(
        &mut server,
        json!({"opId": "op-local", "id": id, "operation": operation, "data": local_data,
               "baseVersion": 0, "spaceId": "space-1", "updatedAt": local_stamp}),
    );
    let row = server.records(TENANT_A)[0].clone();
    if input.local_deleted {
        assert!(
            result.success,
            "deletes win whatever the stamps: {result:?}"
        );
        assert!(row.is_deleted);
        return;
    }
    match winner {
        Winner::Local => {
            assert!(result.success, "{result:?}");
            assert_eq!(row.version, 2);
            assert_eq!(&row.data, local_data);
        }
        Winner::Server => {
            assert_eq!(result.error_code, Some(ErrorCode::Stale), "{result:?}");
            assert_eq!(row.version, 1);
        }
        Winner::Same => {
            assert!(result.success, "{result:?}");
            assert_eq!(row.version, 1, "an identical write is an echo");
        }
        Winner::User => {
            assert_eq!(result.error_code, Some(ErrorCode::Conflict), "{result:?}");
            assert_eq!(row.version, 1);
        }
    }
}

// ---- engine_merge -----------------------------------------------------------------------

/// A local write by the app.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum WriteInput {
    Create {
        entity: u8,
        space: u8,
        data: DataInput,
    },
    Update {
        record: u8,
        patch: DataInput,
    },
    Delete {
        record: u8,
    },
}

/// An id as a hostile server might send it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum IdInput {
    /// A local record's client id (by index, wrapping).
    Client(u8),
    /// A server id the engine or the server knows (by index, wrapping).
    Server(u8),
    /// An id nobody has seen.
    Fresh(u8),
    Text(#[arbitrary(with = short_string)] String),
}

/// A version number as a hostile server might send it: any, small, or at an edge.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
#[serde(untagged)]
pub enum NumberInput {
    Any(i64),
    Small(i8),
    Edge(u8),
}

impl NumberInput {
    fn resolve(&self) -> i64 {
        const EDGES: [i64; 6] = [0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1];
        match self {
            NumberInput::Any(number) => *number,
            NumberInput::Small(number) => i64::from(*number),
            NumberInput::Edge(index) => EDGES[usize::from(*index) % EDGES.len()],
        }
    }
}

/// A stamp as a hostile server might send it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum EngineStampInput {
    /// Near a local record's stamp: equal stamps make conflicts.
    Local {
        record: u8,
        delta: i8,
    },
    /// Near a server record's stamp.
    Server {
        record: u8,
        delta: i8,
    },
    Exact(u64),
    /// 0, 1, the largest stamps.
    Edge(u8),
}

/// An error code a result or envelope may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary, Deserialize)]
pub enum CodeInput {
    Conflict,
    Stale,
    RecordDeleted,
    Validation,
    NotFound,
    Unauthorized,
    ServerBusy,
    Timeout,
}

impl CodeInput {
    fn to_wire(self) -> ErrorCode {
        match self {
            CodeInput::Conflict => ErrorCode::Conflict,
            CodeInput::Stale => ErrorCode::Stale,
            CodeInput::RecordDeleted => ErrorCode::RecordDeleted,
            CodeInput::Validation => ErrorCode::Validation,
            CodeInput::NotFound => ErrorCode::NotFound,
            CodeInput::Unauthorized => ErrorCode::Unauthorized,
            CodeInput::ServerBusy => ErrorCode::ServerBusy,
            CodeInput::Timeout => ErrorCode::Timeout,
        }
    }
}

/// The server's side of a concurrent write, as a result reports it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ConflictInput {
    pub data: DataInput,
    pub version: NumberInput,
    pub stamp: EngineStampInput,
    #[serde(default)]
    pub deleted: bool,
}

/// One push result.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ResultInput {
    /// Answer for another op than the one at this position.
    #[serde(default)]
    pub other_op: Option<u8>,
    pub success: bool,
    pub code: Option<CodeInput>,
    pub id: Option<IdInput>,
    pub version: Option<NumberInput>,
    pub stamp: Option<EngineStampInput>,
    pub conflict: Option<ConflictInput>,
}

/// One pulled live row.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct PulledItemInput {
    pub id: IdInput,
    pub client_id: IdInput,
    pub space: u8,
    pub version: NumberInput,
    pub stamp: EngineStampInput,
    pub data: DataInput,
}

#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum HashInput {
    Absent,
    /// The hash of the engine's live records: no repair follows.
    Local,
    /// The hash of the server's live records.
    Server,
    Text(#[arbitrary(with = short_string)] String),
}

/// A pull page as a hostile server might send it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct PageInput {
    #[serde(default)]
    #[arbitrary(with = few::<PulledItemInput, 8>)]
    pub items: Vec<PulledItemInput>,
    #[serde(default)]
    #[arbitrary(with = few::<IdInput, 8>)]
    pub deleted: Vec<IdInput>,
    #[arbitrary(with = maybe_short_string)]
    pub cursor: Option<String>,
    pub hash: HashInput,
    #[serde(default)]
    pub has_more: bool,
}

/// A change to a JSON tree, at a node counted in pre-order.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum MutationInput {
    Replace { node: u16, value: Json },
    Remove { node: u16 },
    Duplicate { node: u16 },
}

/// How the next outstanding request is answered.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum AnswerInput {
    /// The reference server's answer.
    Server,
    /// The reference server's answer, then hostile edits.
    Mutated(#[arbitrary(with = few::<MutationInput, 4>)] Vec<MutationInput>),
    /// The server applies the request; the client sees a timeout.
    Lost,
    /// Any JSON; strings like `$client:0`, `$op:1`, `$stamp:0` become real ids and stamps.
    Json(Json),
    /// A success envelope with these push results (one per payload item when `aligned`).
    PushResults {
        #[arbitrary(with = few::<ResultInput, 12>)]
        results: Vec<ResultInput>,
        #[serde(default)]
        aligned: bool,
    },
    /// A success envelope with this page.
    Page(PageInput),
    /// An error envelope.
    Error(Option<CodeInput>),
    Transport {
        #[serde(default)]
        timeout: bool,
    },
    /// An answer delivered earlier in this run, again.
    Replay(u8),
    /// The request is never answered.
    Drop,
}

/// Another device's write, straight to the server.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct OtherWriteInput {
    pub record: u8,
    pub operation: OperationInput,
    pub stamp: EngineStampInput,
    pub data: DataInput,
    /// Based on the server's current version (else concurrent).
    #[serde(default)]
    pub current: bool,
}

#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum ResolutionInput {
    KeepLocal,
    UseServer,
    MergeFields(#[arbitrary(with = few::<(u8, bool), 4>)] Vec<(u8, bool)>),
    MergeValues(DataInput),
}

/// One step of an [`engine_merge`] run. The common steps come first; the app's lifecycle
/// is one variant, so that an arbitrary input spends most steps writing and answering.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum StepInput {
    Write(WriteInput),
    /// Answers the oldest outstanding request, starting a sync first if none is.
    Answer {
        answer: AnswerInput,
        /// Deliver the same answer a second time (it must be ignored).
        #[serde(default)]
        redeliver: bool,
    },
    OtherDevice(OtherWriteInput),
    Resolve {
        conflict: u8,
        resolution: ResolutionInput,
    },
    #[serde(untagged)]
    Lifecycle(LifecycleInput),
}

/// The app's lifecycle and the user's sync controls (written in JSON without a wrapper).
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum LifecycleInput {
    SyncNow,
    Timeout {
        advance_s: u16,
    },
    ClockBack {
        back_s: u16,
    },
    Network {
        online: bool,
    },
    Cancel,
    WipeSpace {
        space: u8,
    },
    Force {
        entity: u8,
        push: bool,
    },
    /// The app is killed and reopened: in-memory state and unanswered requests are gone.
    Reopen,
}

/// Input of [`engine_merge`]: local writes, then steps.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct EngineMergeInput {
    #[serde(default)]
    #[arbitrary(with = few::<WriteInput, 8>)]
    pub setup: Vec<WriteInput>,
    pub steps: Vec<StepInput>,
}

const ENGINE_STEPS_MAX: usize = 48;
const ENGINE_SETUP_MAX: usize = 8;
/// Requests a well-behaved server needs at most to bring the engine back to idle.
const QUIET_REQUESTS_MAX: usize = 400;

/// An engine with local writes, fed arbitrary and hostile push results and pull pages,
/// never panics and never returns a storage error; `check_invariants` holds after every
/// step; no queued op disappears unless an answer (or the user) legitimately settled it;
/// an answer to a request that is no longer in flight changes nothing; and afterwards a
/// well-behaved server brings the engine back to idle.
pub fn engine_merge(data: &[u8]) {
    if let Some(input) = decode::<EngineMergeInput>(data) {
        engine_merge_input(&input);
    }
}

pub fn engine_merge_input(input: &EngineMergeInput) {
    let mut harness = EngineHarness::new();
    for write in input.setup.iter().take(ENGINE_SETUP_MAX) {
        harness.write(write);
    }
    harness.check("setup");
    for (index, step) in input.steps.iter().take(ENGINE_STEPS_MAX).enumerate() {
        harness.step(step);
        harness.check(&format!("step {index} {step:?}"));
    }
    harness.go_quiet();
}

/// Ops that a step may legitimately remove from the queue.
#[derive(Default, Debug)]
struct Settled {
    op_ids: BTreeSet<String>,
    /// Every op of these records (client ids).
    records: BTreeSet<String>,
    spaces: BTreeSet<String>,
    entities: BTreeSet<String>,
    /// Ops of these entities that were sent before may take a new opId (a confirmed
    /// force push re-sends them as new writes, so the server does not replay its answer).
    renamed_entities: BTreeSet<String>,
}

/// What the engine looked like before a step.
struct Snapshot {
    records: Vec<Record>,
    ops: Vec<QueuedOp>,
}

struct EngineHarness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    engine: Engine,
    opened: u64,
    server: ReferenceServer,
    /// Requests polled and not yet answered, oldest first.
    outstanding: VecDeque<SyncRequest>,
    /// The newest request the current engine emitted: the only one that can be in flight.
    newest_request_id: u64,
    delivered: Vec<Value>,
    other_writes: u64,
    events: Vec<SyncEvent>,
}

impl EngineHarness {
    fn new() -> EngineHarness {
        let dir = scratch_dir();
        let clock = ManualClock::new(testing::EPOCH_MS);
        let mut engine = testing::open_engine_in(dir.path(), TENANT_A, clock.clone(), 7);
        engine.set_auth_token(TOKEN_A).expect("store token");
        let mut server = ReferenceServer::new(testing::example_registry());
        server.add_tenant_token(TENANT_A, TOKEN_A);
        EngineHarness {
            dir,
            clock,
            engine,
            opened: 1,
            server,
            outstanding: VecDeque::new(),
            newest_request_id: 0,
            delivered: Vec::new(),
            other_writes: 0,
            events: Vec::new(),
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            records: self.engine.all_records().expect("read records"),
            ops: self.engine.queued_ops().expect("read queue"),
        }
    }

    /// After every input, drain the outputs (the driving contract).
    fn drain(&mut self) {
        while let Some(request) = self.engine.poll_request() {
            assert!(
                request.request_id > self.newest_request_id,
                "request ids grow"
            );
            self.newest_request_id = request.request_id;
            self.outstanding.push_back(request);
        }
        while let Some(event) = self.engine.poll_event() {
            self.events.push(event);
        }
    }

    fn check(&self, context: &str) {
        if let Err(problem) = self.engine.check_invariants() {
            panic!("engine invariant broken after {context}: {problem}");
        }
        self.server.check_invariants();
    }

    fn write(&mut self, write: &WriteInput) {
        let records = self.engine.all_records().expect("read records");
        let pick = |index: u8| -> Option<String> {
            (!records.is_empty()).then(|| {
                records[usize::from(index) % records.len()]
                    .client_id
                    .clone()
            })
        };
        let outcome = match write {
            WriteInput::Create {
                entity,
                space,
                data,
            } => self
                .engine
                .create(entity_name(*entity), space_name(*space), data.to_value())
                .map(drop),
            WriteInput::Update { record, patch } => match pick(*record) {
                Some(id) => self.engine.update(&id, patch.to_value()).map(drop),
                None => Ok(()),
            },
            WriteInput::Delete { record } => match pick(*record) {
                Some(id) => self.engine.delete(&id),
                None => Ok(()),
            },
        };
        accept_write_outcome(outcome);
        self.drain();
    }

    fn step(&mut self, step: &StepInput) {
        let before = self.snapshot();
        let mut settled = Settled::default();
        self.events.clear();
        match step {
            StepInput::Write(write) => self.write(write),
            StepInput::Lifecycle(LifecycleInput::SyncNow) => {
                self.engine.sync_now().expect("sync_now");
                self.drain();
            }
            StepInput::Answer { answer, redeliver } => {
                settled = self.answer(answer, *redeliver, &before);
            }
            StepInput::OtherDevice(write) => self.other_device(write, &before),
            StepInput::Lifecycle(LifecycleInput::Timeout { advance_s }) => {
                self.clock.advance_ms(u64::from(*advance_s) * 1000);
                self.engine.handle_timeout().expect("handle_timeout");
                self.drain();
            }
            StepInput::Lifecycle(LifecycleInput::ClockBack { back_s }) => {
                let now_ms = self.clock_now_ms();
                self.clock
                    .set_ms(now_ms.saturating_sub(u64::from(*back_s) * 1000));
                self.engine.handle_timeout().expect("handle_timeout");
                self.drain();
            }
            StepInput::Lifecycle(LifecycleInput::Network { online }) => {
                self.engine
                    .handle_network_change(*online)
                    .expect("handle_network_change");
                self.drain();
            }
            StepInput::Lifecycle(LifecycleInput::Cancel) => {
                self.engine.cancel_sync().expect("cancel_sync");
                self.drain();
            }
            StepInput::Resolve {
                conflict,
                resolution,
            } => {
                let conflicts = self.engine.list_conflicts().expect("list conflicts");
                if !conflicts.is_empty() {
                    let chosen = &conflicts[usize::from(*conflict) % conflicts.len()];
                    settled.records.insert(chosen.client_id.clone());
                    let resolution = match resolution {
                        ResolutionInput::KeepLocal => Resolution::KeepLocal,
                        ResolutionInput::UseServer => Resolution::UseServer,
                        ResolutionInput::MergeFields(choices) => Resolution::MergeFields(
                            choices
                                .iter()
                                .map(|(field, local)| {
                                    let name = FIELDS[usize::from(*field) % FIELDS.len()];
                                    let side = if *local { Side::Local } else { Side::Server };
                                    (name.to_owned(), side)
                                })
                                .collect(),
                        ),
                        ResolutionInput::MergeValues(data) => {
                            Resolution::MergeValues(data.to_map())
                        }
                    };
                    accept_write_outcome(self.engine.resolve_conflict(chosen.id, resolution));
                    self.drain();
                }
            }
            StepInput::Lifecycle(LifecycleInput::WipeSpace { space }) => {
                let space = space_name(*space);
                settled.spaces.insert(space.to_owned());
                accept_write_outcome(self.engine.wipe_space(space).map(drop));
                self.drain();
            }
            StepInput::Lifecycle(LifecycleInput::Force { entity, push }) => {
                let entity = entity_name(*entity);
                let plan = if *push {
                    self.engine.plan_force_push_local(entity)
                } else {
                    self.engine.plan_force_from_server(entity)
                };
                let plan = plan.expect("plan a force for a registered entity");
                if *push {
                    settled.renamed_entities.insert(entity.to_owned());
                }
                accept_write_outcome(self.engine.execute_force(plan.confirm()));
                self.drain();
            }
            StepInput::Lifecycle(LifecycleInput::Reopen) => self.reopen(),
        }
        for event in &self.events {
            if let SyncEvent::ForceCompleted { entity } = event {
                settled.entities.insert(entity.clone());
            }
        }
        check_no_op_lost(&before.ops, &self.snapshot().ops, &settled, step);
    }

    fn clock_now_ms(&self) -> u64 {
        use sync_engine::Clock;
        self.clock.now_ms()
    }

    fn reopen(&mut self) {
        let dir = self.dir.path().to_owned();
        self.opened += 1;
        // Dropping the engine is the kill; the database keeps every committed transaction.
        let engine = testing::open_engine_in(&dir, TENANT_A, self.clock.clone(), 7 + self.opened);
        self.engine = engine;
        self.outstanding.clear();
        self.newest_request_id = 0;
        self.drain();
    }

    /// Stamps hostile inputs pick near: the local records' and the server's.
    fn stamp(&self, stamp: &EngineStampInput, before: &Snapshot) -> HlcStamp {
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
                self.server
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
            self.server
                .records(TENANT_A)
                .iter()
                .map(|record| record.id.clone()),
        );
        ids.into_iter().collect()
    }

    fn id(&self, id: &IdInput, before: &Snapshot) -> String {
        match id {
            IdInput::Client(index) if !before.records.is_empty() => before.records
                [usize::from(*index) % before.records.len()]
            .client_id
            .clone(),
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

    fn other_device(&mut self, write: &OtherWriteInput, before: &Snapshot) {
        let rows = self.server.records(TENANT_A);
        self.other_writes += 1;
        let op_id = format!("other-{}", self.other_writes);
        let stamp = self.stamp(&write.stamp, before);
        let (entity, item) = match (write.operation, rows.is_empty()) {
            (OperationInput::Insert, _) | (_, true) => (
                entity_name(write.record),
                json!({"opId": op_id, "clientId": format!("other-client-{}", self.other_writes),
                       "operation": "insert", "data": write.data.to_map(),
                       "spaceId": space_name(write.record), "updatedAt": stamp}),
            ),
            (operation, false) => {
                let row = rows[usize::from(write.record) % rows.len()];
                let base_version = if write.current {
                    row.version
                } else {
                    row.version - 1
                };
                (
                    ENTITIES
                        .iter()
                        .find(|name| **name == row.entity)
                        .copied()
                        .expect("a registered entity"),
                    json!({"opId": op_id, "id": row.id, "operation": operation.to_wire(),
                           "data": write.data.to_map(), "baseVersion": base_version,
                           "spaceId": row.space_id, "updatedAt": stamp}),
                )
            }
        };
        let request = push_request(&format!("syncPush{entity}"), TENANT_A, TOKEN_A, vec![item]);
        let response = self.server.handle(&request);
        assert!(
            push_results(&request, &response).is_some(),
            "another device's well-formed write was refused: {response}"
        );
    }

    /// Answers the oldest outstanding request; returns the ops the answer may settle.
    fn answer(&mut self, answer: &AnswerInput, redeliver: bool, before: &Snapshot) -> Settled {
        if self.outstanding.is_empty() {
            self.engine.sync_now().expect("sync_now");
            self.drain();
        }
        let Some(request) = self.outstanding.pop_front() else {
            return Settled::default();
        };
        let response: Option<Result<Value, TransportError>> = match answer {
            AnswerInput::Server => Some(Ok(self.server.handle(&request))),
            AnswerInput::Mutated(mutations) => {
                let mut response = self.server.handle(&request);
                for mutation in mutations.iter().take(4) {
                    mutate(&mut response, mutation);
                }
                Some(Ok(response))
            }
            AnswerInput::Lost => {
                let _lost = self.server.handle(&request);
                Some(Err(TransportError::timeout("response lost")))
            }
            AnswerInput::Json(json) => {
                Some(Ok(self.resolve_placeholders(&json.0, &request, before)))
            }
            AnswerInput::PushResults { results, aligned } => Some(Ok(
                self.push_results_answer(&request, results, *aligned, before)
            )),
            AnswerInput::Page(page) => Some(Ok(self.page_answer(&request, page, before))),
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
        };
        let Some(response) = response else {
            return Settled::default();
        };
        if let Ok(value) = &response {
            self.delivered.push(value.clone());
        }
        let in_flight = request.request_id == self.newest_request_id;
        let current = self.snapshot();
        let settled = if in_flight {
            settled_by_answer(&request, &response, before)
        } else {
            Settled::default()
        };
        self.engine
            .handle_response(request.request_id, response.clone())
            .unwrap_or_else(|error| panic!("handle_response failed on {response:?}: {error}"));
        if !in_flight {
            let after = self.snapshot();
            assert_eq!(
                after.ops, current.ops,
                "an answer no longer in flight changed the queue"
            );
            assert_eq!(
                after.records, current.records,
                "an answer no longer in flight changed records"
            );
        }
        self.drain();
        if redeliver {
            let between = self.snapshot();
            self.engine
                .handle_response(request.request_id, response)
                .expect("a duplicate answer is ignored");
            let after = self.snapshot();
            assert_eq!(
                after.ops, between.ops,
                "a duplicate answer changed the queue"
            );
            assert_eq!(
                after.records, between.records,
                "a duplicate answer changed records"
            );
            self.drain();
        }
        settled
    }

    fn resolve_placeholders(
        &self,
        value: &Value,
        request: &SyncRequest,
        before: &Snapshot,
    ) -> Value {
        let op_ids: Vec<String> = request
            .variables
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
        let cursor = request
            .variables
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
            .get("payload")
            .cloned()
            .and_then(|payload| serde_json::from_value(payload).ok())
            .unwrap_or_default();
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
                id: input.id.as_ref().map(|id| self.id(id, before)),
                success: input.success,
                error_code: input.code.map(CodeInput::to_wire),
                error_message: None,
                version: input.version.as_ref().map(NumberInput::resolve),
                updated_at: input.stamp.as_ref().map(|stamp| self.stamp(stamp, before)),
                conflict,
            });
        }
        let payload = serde_json::to_value(SyncPushResponse { results: built })
            .expect("wire types serialize");
        wire::data_response(&request.operation_name, payload)
    }

    fn page_answer(&self, request: &SyncRequest, page: &PageInput, before: &Snapshot) -> Value {
        let items: Vec<Value> = page
            .items
            .iter()
            .take(PUSH_ITEMS_MAX)
            .map(|item| {
                json!({
                    "id": self.id(&item.id, before),
                    "clientId": self.id(&item.client_id, before),
                    "spaceId": space_name(item.space),
                    "version": item.version.resolve(),
                    "updatedAt": self.stamp(&item.stamp, before),
                    "data": item.data.to_value(),
                })
            })
            .collect();
        let entity = request.operation_name.trim_start_matches("syncPull");
        let version_hash = match &page.hash {
            HashInput::Absent => None,
            HashInput::Local => Some(wire::version_hash(
                before
                    .records
                    .iter()
                    .filter(|record| record.entity == entity && !record.is_deleted)
                    .filter_map(|record| {
                        record.server_id.as_deref().map(|id| (id, record.version))
                    }),
            )),
            HashInput::Server => {
                let rows = self.server.records(TENANT_A);
                Some(wire::version_hash(
                    rows.iter()
                        .filter(|row| row.entity == entity && !row.is_deleted)
                        .map(|row| (row.id.as_str(), row.version)),
                ))
            }
            HashInput::Text(text) => Some(text.clone()),
        };
        let deleted: Vec<String> = page
            .deleted
            .iter()
            .take(PUSH_ITEMS_MAX)
            .map(|id| self.id(id, before))
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

    /// With a well-behaved server and the network back, the engine settles: every sync
    /// ends within a bounded number of requests, and invariants still hold.
    fn go_quiet(&mut self) {
        self.engine.cancel_sync().expect("cancel_sync");
        self.drain();
        self.outstanding.clear();
        self.engine
            .handle_network_change(true)
            .expect("handle_network_change");
        self.engine.sync_now().expect("sync_now");
        self.drain();
        for _ in 0..QUIET_REQUESTS_MAX {
            let Some(request) = self.outstanding.pop_front() else {
                break;
            };
            let response = self.server.handle(&request);
            self.engine
                .handle_response(request.request_id, Ok(response))
                .expect("handle_response");
            self.drain();
            self.check("a well-behaved sync");
        }
        let status = self.engine.status().expect("status");
        assert!(
            !status.syncing,
            "the engine did not settle against a well-behaved server within {QUIET_REQUESTS_MAX} requests"
        );
    }
}

/// A temporary directory for one run's database, in memory when the machine has a tmpfs
/// at `/dev/shm`: creating and syncing SQLite files on a disk costs ten times the run.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("sync-fuzz-");
    let dir = if shm.is_dir() {
        builder.tempdir_in(shm).or_else(|_| builder.tempdir())
    } else {
        builder.tempdir()
    };
    dir.expect("temporary directory")
}

/// A local write may be refused for reasons of the app's making; never for storage.
fn accept_write_outcome(outcome: Result<(), sync_engine::WriteError>) {
    match outcome {
        Err(sync_engine::WriteError::Storage(error)) => panic!("storage error: {error}"),
        Err(sync_engine::WriteError::Killed(point)) => panic!("killed at {point:?} without a hook"),
        Ok(()) | Err(_) => {}
    }
}

/// Which ops an answer to the request in flight may settle, read off the answer alone: a
/// matching push result that is a success or a supersession (a `STALE`/`RECORD_DELETED`
/// with the server's row) settles its own op, and a server row that is deleted settles
/// every op of the record (deletes win); a pulled row newer than the local copy settles
/// the record's ops, and so does a pulled tombstone of it.
fn settled_by_answer(
    request: &SyncRequest,
    response: &Result<Value, TransportError>,
    before: &Snapshot,
) -> Settled {
    let mut settled = Settled::default();
    let Ok(response) = response else {
        return settled;
    };
    let Envelope::Data(payload) = wire::parse_envelope(&request.operation_name, response) else {
        return settled;
    };
    if request.operation_name.starts_with("syncPush") {
        let variables: SyncPushVariables = serde_json::from_value(request.variables.clone())
            .expect("the engine's own push variables parse");
        let Ok(parsed) = serde_json::from_value::<SyncPushResponse>(payload) else {
            return settled;
        };
        let matches = parsed.results.len() == variables.payload.len()
            && parsed
                .results
                .iter()
                .zip(&variables.payload)
                .all(|(result, item)| result.op_id == item.op_id);
        if !matches {
            return settled;
        }
        for (item, result) in variables.payload.iter().zip(&parsed.results) {
            let superseded = matches!(
                result.error_code,
                Some(ErrorCode::Stale | ErrorCode::RecordDeleted)
            ) && result.conflict.is_some();
            if result.success || superseded {
                settled.op_ids.insert(item.op_id.clone());
            }
            if superseded
                && result
                    .conflict
                    .as_ref()
                    .is_some_and(|c| c.server_is_deleted)
            {
                settled
                    .records
                    .insert(item.client_id.clone().expect("the engine sends clientId"));
            }
        }
        return settled;
    }
    let Ok(page) = serde_json::from_value::<SyncPullResponse>(payload) else {
        return settled;
    };
    let mut client_by_server_id: BTreeMap<String, String> = before
        .records
        .iter()
        .filter_map(|record| Some((record.server_id.clone()?, record.client_id.clone())))
        .collect();
    for raw in &page.items {
        let Ok(item) = serde_json::from_value::<PulledItem>(raw.clone()) else {
            continue;
        };
        let local = before
            .records
            .iter()
            .find(|record| record.client_id == item.client_id);
        if local.is_some_and(|local| item.updated_at > local.updated_at) {
            settled.records.insert(item.client_id.clone());
        }
        client_by_server_id
            .entry(item.id.clone())
            .or_insert(item.client_id.clone());
    }
    for id in &page.deleted_ids {
        if let Some(client_id) = client_by_server_id.get(id) {
            settled.records.insert(client_id.clone());
        }
    }
    settled
}

/// Every op queued before a step is still queued after it (at the same queue position),
/// unchanged, unless the step settled it.
fn check_no_op_lost(before: &[QueuedOp], after: &[QueuedOp], settled: &Settled, step: &StepInput) {
    for op in before {
        match after.iter().find(|other| other.seq == op.seq) {
            Some(kept) => {
                if kept.op_id != op.op_id {
                    assert!(
                        settled.renamed_entities.contains(&op.entity) && op.attempts > 0,
                        "op {} took a new opId {} in {step:?}",
                        op.op_id,
                        kept.op_id
                    );
                }
                assert_eq!(kept.entity_id, op.entity_id, "a queued op changed record");
                assert_eq!(kept.operation, op.operation, "a queued op changed kind");
                assert_eq!(kept.payload, op.payload, "a queued op's payload changed");
                assert_eq!(
                    kept.updated_at, op.updated_at,
                    "a queued op's stamp changed"
                );
            }
            None => {
                let allowed = settled.op_ids.contains(&op.op_id)
                    || settled.records.contains(&op.entity_id)
                    || settled.spaces.contains(&op.space_id)
                    || settled.entities.contains(&op.entity);
                assert!(
                    allowed,
                    "op {} ({:?} of {}, {:?}) was lost in {step:?}; settled: {settled:?}",
                    op.op_id, op.operation, op.entity_id, op.status
                );
            }
        }
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

// ---- sim_world --------------------------------------------------------------------------

/// The simulator's knobs, drawn by the fuzzer instead of a profile: every field is brought
/// into the range the profiles use, so a failure is a bug, not an impossible world.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct KnobsInput {
    pub tenants: u8,
    pub devices: u8,
    pub spaces_per_tenant: u8,
    /// (fault class index, rate in percent); a class named twice takes the last rate.
    #[serde(default)]
    #[arbitrary(with = few::<(u8, u8), 12>)]
    pub faults: Vec<(u8, u8)>,
    pub safety_s: u8,
    pub action_gap_ms_max: u16,
    pub network_delay_ms_max: u16,
    #[serde(default)]
    pub clock_offset_ms_max: u32,
    #[serde(default)]
    pub clock_drift_ppm_max: u16,
    #[serde(default)]
    pub clock_jump_ms_max: u32,
    pub bulk_create_max: u8,
    pub push_batch_max: u8,
    pub pull_page_limit: u8,
    #[serde(default)]
    pub sync_after_write: bool,
    #[serde(default)]
    pub auto_merge_fields: bool,
    #[serde(default)]
    pub concurrent_edit_quarters: u8,
    /// Create, update, delete, bulk, sync, resolve, force, wipe, logout/login, switch.
    pub workload_weights: [u8; 10],
}

impl KnobsInput {
    fn to_knobs(&self) -> crate::profile::Knobs {
        use crate::profile::{FaultClass, Knobs, Profile};
        use crate::rng::Ratio;
        let mut faults = BTreeMap::new();
        for (class, percent) in self.faults.iter().take(FaultClass::ALL.len()) {
            let class = FaultClass::ALL[usize::from(*class) % FaultClass::ALL.len()];
            let percent = u64::from(*percent % 51);
            if percent > 0 {
                faults.insert(class, Ratio::new(percent, 100));
            }
        }
        let mut workload_weights = self.workload_weights.map(|weight| u64::from(weight % 32));
        if workload_weights.iter().all(|weight| *weight == 0) {
            workload_weights[0] = 1;
        }
        Knobs {
            profile: Profile::Lite,
            tenants: usize::from(self.tenants % 2) + 1,
            devices: usize::from(self.devices % 2) + 2,
            spaces_per_tenant: usize::from(self.spaces_per_tenant % 2) + 1,
            faults,
            safety_duration_ms: (u64::from(self.safety_s % 110) + 10) * 1000,
            liveness_rounds_max: 12,
            // Profiles space actions 2-30 s apart; much denser worlds only run slower.
            action_gap_ms_max: u64::from(self.action_gap_ms_max % 30_000).max(1_000),
            network_delay_ms_max: u64::from(self.network_delay_ms_max % 3_000).max(5),
            request_timeout_ms: 10_000,
            clock_offset_ms_max: u64::from(self.clock_offset_ms_max % (3 * 3_600_000)),
            clock_drift_ppm_max: u64::from(self.clock_drift_ppm_max % 2_000),
            clock_jump_ms_max: u64::from(self.clock_jump_ms_max % (6 * 3_600_000)).max(1_000),
            bulk_create_max: usize::from(self.bulk_create_max % 60) + 1,
            push_batch_max: usize::from(self.push_batch_max % 100) + 1,
            pull_page_limit: usize::from(self.pull_page_limit % 50) + 2,
            sync_after_write: self.sync_after_write,
            auto_merge_fields: self.auto_merge_fields,
            concurrent_edit: Ratio::new(u64::from(self.concurrent_edit_quarters % 5), 4),
            workload_weights,
        }
    }
}

/// Input of [`sim_world`]: a seed and the knobs to run it with.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct WorldInput {
    pub seed: u64,
    pub knobs: KnobsInput,
}

/// A simulated world (devices running the real engine, the reference server, a faulty
/// network) with fuzzer-chosen knobs passes every safety invariant and converges once
/// healed, exactly as the simulator's own seeds must.
pub fn sim_world(data: &[u8]) {
    if let Some(input) = decode::<WorldInput>(data) {
        sim_world_input(&input);
    }
}

pub fn sim_world_input(input: &WorldInput) {
    let knobs = input.knobs.to_knobs();
    let options = crate::world::RunOptions::default();
    let report = crate::world::run_seed_with_knobs(input.seed, knobs.clone(), &options);
    if let Some(failure) = &report.failure {
        panic!(
            "world seed {} failed ({:?}): {}\nknobs: {knobs:?}\nrecent events:\n{}",
            input.seed,
            failure.kind,
            failure.message,
            report.recent_events.join("\n")
        );
    }
}
