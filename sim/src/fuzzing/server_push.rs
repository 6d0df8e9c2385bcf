//! The `server_push` target: the reference server under arbitrary and hostile push
//! requests, sent in order to the [`fixture_server`]. It also owns the request checks
//! that `server_pull` reuses for its writes ([`send_and_check`]) and the documented push
//! contract those checks compare the server against ([`push_acceptance`]). It drives the
//! server directly: there is no engine, so no simulation kernel.

use super::server_pull::check_page_rows;
use super::{
    entity_name, few, fixture_server, looks_like_json, request, DataInput, Json, OperationInput,
    StampInput, Text, FIXTURE_CLIENT_IDS, FIXTURE_OP_IDS, FIXTURE_SERVER_IDS, FIXTURE_SPACES,
    FIXTURE_STAMPS, PUSH_ITEMS_MAX, REQUESTS_MAX, TENANT_A, TENANT_B, TOKEN_A, TOKEN_B,
};
use crate::server::ReferenceServer;
use arbitrary::{Arbitrary, Unstructured};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use sync_engine::hlc::HlcStamp;
use sync_engine::registry::OperationKind;
use sync_engine::testing;
use sync_engine::wire::{
    self, Envelope, ErrorCode, Operation, SyncPullResponse, SyncPushItem, SyncPushResponse,
    SyncPushVariables, SyncRequest, SyncResultItem,
};

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

impl PushRequestInput {
    pub(super) fn to_request(&self) -> SyncRequest {
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
pub(super) struct ReplayLog {
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
    let variables = SyncPushVariables::deserialize(&*request.variables.to_json())
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
pub(super) fn send_and_check(
    server: &mut ReferenceServer,
    request: &SyncRequest,
    answers: &mut ReplayLog,
) {
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
    let variables = SyncPushVariables::deserialize(&*request.variables.to_json())
        .expect("accepted variables parse");
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
