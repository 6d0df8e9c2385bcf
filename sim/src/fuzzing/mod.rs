//! Fuzz target bodies: what `fuzz/fuzz_targets/*.rs` hands libFuzzer's bytes to, and what
//! `sim/tests/fuzz_corpus.rs` runs on stable over the checked-in corpus and over generated
//! inputs, so a crash found by a campaign becomes an ordinary failing `cargo test`.
//!
//! Each target is `pub fn NAME(data: &[u8])`. Bytes that start with `{` or `[` are read as
//! JSON first (the readable form the seed corpus is written in); any other bytes, or JSON
//! of the wrong shape, drive an [`Arbitrary`] input. A target fails only by panicking, and
//! every property it checks is an assertion whose message names the contract that broke.
//! One file per target:
//!
//! - [`server_push`] (`server_push.rs`): the reference server under arbitrary and hostile
//!   push requests.
//! - [`server_pull`] (`server_pull.rs`): paging with arbitrary cursors and limits over
//!   arbitrary pushes.
//! - [`engine_merge`] (`engine_merge/`): an app on the simulation kernel (one [`Sim`]
//!   device) whose requests the target answers itself with hostile push results and
//!   pages, plus kills at named crash points.
//! - [`conflict_policy`] (`conflict_policy.rs`): `decide` and `judge_pulled` against each
//!   other and the server.
//! - [`sim_world`] (`sim_world.rs`): a whole simulated world with fuzzer-chosen knobs.
//!
//! This file owns what the targets share: decoding, the input vocabulary ([`Json`],
//! [`Text`], [`DataInput`], [`StampInput`], [`OperationInput`], the bounded `few` and
//! `short_string` generators) and the [`fixture_server`]. The targets that drive the
//! engine run it on the kernel; the server and policy targets call the server and pure
//! functions directly, since they have no engine lifecycle.
//!
//! `fuzz/README.md` explains campaigns, the corpus, and how a crash becomes a regression
//! test. This module must never weaken a property to make an input pass: an input that
//! breaks one is a bug report.
//!
//! Targets own no clock and no randomness: one input replays one run. Work per input is
//! bounded (`*_MAX` constants) so that a campaign spends its time on breadth.
//!
//! [`Sim`]: crate::kernel::Sim

mod conflict_policy;
mod engine_merge;
mod server_pull;
mod server_push;
mod sim_world;

pub use conflict_policy::{
    conflict_policy, conflict_policy_input, ConflictPolicyInput, VersionInput,
};
pub use engine_merge::{
    engine_merge, engine_merge_input, AnswerInput, CodeInput, ConflictInput, EngineMergeInput,
    EngineStampInput, HashInput, IdInput, LifecycleInput, MutationInput, NumberInput,
    OtherWriteInput, PageInput, PulledItemInput, ResolutionInput, ResultInput, StepInput,
    WriteInput,
};
pub use server_pull::{
    server_pull, server_pull_input, BatchInput, CursorInput, LimitInput, PullStepInput,
    ServerPullInput,
};
pub use server_push::{
    server_push, server_push_input, AuthInput, ItemInput, PushRequestInput, ServerPushInput,
    TamperInput,
};
pub use sim_world::{sim_world, sim_world_case, sim_world_input, KnobsInput, WorldInput};

use crate::server::ReferenceServer;
use arbitrary::{Arbitrary, Unstructured};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Number, Value};
use sync_engine::testing;
use sync_engine::wire::{self, Envelope, Operation, SyncPushResponse, SyncRequest, SyncResultItem};

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
/// Items per push a target builds at most, and requests per run.
const PUSH_ITEMS_MAX: usize = 12;
const REQUESTS_MAX: usize = 24;
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

/// A JSON value of bounded size whose strings and keys lean on `WORDS`.
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

/// A record's data: a few fields from `FIELDS` with small values, or any JSON (which
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
        variables: variables.into(),
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
