//! The wire contract as an executable GraphQL schema: `engine/schema.graphql`, type for
//! type, with resolvers that hand every operation to the reference server.
//!
//! This module owns the translation between GraphQL values and the contract's JSON
//! (`sync_engine::wire`): typed arguments become the variables the reference server reads,
//! its JSON answer becomes typed output, and its error envelope becomes a GraphQL error
//! with the same `extensions.code`. It decides nothing about sync itself: every rule lives
//! in [`crate::server`]. A test (`sim/tests/http_schema.rs`) keeps the generated schema
//! and `engine/schema.graphql` identical in types, fields, arguments and defaults.

use async_graphql::{
    Context, EmptySubscription, ErrorExtensions, InputObject, InputValueError, InputValueResult,
    Json, Object, Scalar, ScalarType, SimpleObject, Value as GraphqlValue, ID,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// What the schema's resolvers run requests against (the served reference server).
pub trait Backend: Send + Sync + 'static {
    /// Handles one contract request (token already taken from the HTTP request) and
    /// returns the reference server's JSON envelope.
    fn handle(&self, operation_name: &str, token: &str, variables: Value) -> Value;
}

/// The bearer token of the HTTP request a resolver runs for ("" when none was sent).
#[derive(Clone, Debug, Default)]
pub struct BearerToken(pub String);

/// The executable schema.
pub type SyncSchema = async_graphql::Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Builds the schema over `backend`.
pub fn schema(backend: impl Backend) -> SyncSchema {
    let backend: Box<dyn Backend> = Box::new(backend);
    async_graphql::Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .register_output_type::<PulledItem>()
        .data(backend)
        .finish()
}

// ---- scalars ----------------------------------------------------------------------------

/// `scalar Cursor`: a server-issued opaque pull cursor, carried as a string.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

#[Scalar(name = "Cursor")]
impl ScalarType for Cursor {
    fn parse(value: GraphqlValue) -> InputValueResult<Self> {
        match value {
            GraphqlValue::String(text) => Ok(Cursor(text)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> GraphqlValue {
        GraphqlValue::String(self.0.clone())
    }
}

/// `scalar Stamp`: a hybrid logical clock stamp, an unsigned 64-bit integer written as a
/// JSON number. GraphQL's `Float` would carry it through a double and round every stamp
/// above 2^53 (all of them: the wall-clock milliseconds sit above bit 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Stamp(pub u64);

#[Scalar(name = "Stamp")]
impl ScalarType for Stamp {
    fn parse(value: GraphqlValue) -> InputValueResult<Self> {
        match &value {
            GraphqlValue::Number(number) => number.as_u64().map(Stamp).ok_or_else(|| {
                InputValueError::custom(format!("a stamp is an unsigned integer, got {number}"))
            }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn is_valid(value: &GraphqlValue) -> bool {
        matches!(value, GraphqlValue::Number(number) if number.is_u64())
    }

    fn to_value(&self) -> GraphqlValue {
        GraphqlValue::Number(self.0.into())
    }
}

// ---- input ------------------------------------------------------------------------------

/// `input SyncPushItem`.
#[derive(Clone, Debug, InputObject)]
#[graphql(name = "SyncPushItem")]
pub struct SyncPushItemInput {
    client_id: Option<String>,
    id: Option<ID>,
    operation: String,
    data: Json<Value>,
    op_id: String,
    base_version: Option<i64>,
    force: Option<bool>,
    space_id: String,
    updated_at: Stamp,
}

impl SyncPushItemInput {
    /// The item as the contract's JSON (`sync_engine::wire::SyncPushItem`): `force` is left
    /// out when the request left it out, as its default is `false`.
    fn into_json(self) -> Value {
        let mut item = Map::new();
        item.insert("clientId".into(), self.client_id.into());
        item.insert("id".into(), self.id.map(|id| id.0).into());
        item.insert("operation".into(), self.operation.into());
        item.insert("data".into(), self.data.0);
        item.insert("opId".into(), self.op_id.into());
        item.insert("baseVersion".into(), self.base_version.into());
        if let Some(force) = self.force {
            item.insert("force".into(), force.into());
        }
        item.insert("spaceId".into(), self.space_id.into());
        item.insert("updatedAt".into(), self.updated_at.0.into());
        Value::Object(item)
    }
}

// ---- output -----------------------------------------------------------------------------

/// `type SyncPushResponse`.
#[derive(Clone, Debug, Deserialize, SimpleObject)]
#[graphql(name = "SyncPushResponse")]
#[serde(rename_all = "camelCase")]
pub struct SyncPushResponse {
    results: Vec<SyncResultItem>,
    #[serde(default)]
    cursor_before: Option<Cursor>,
    #[serde(default)]
    cursor_after: Option<Cursor>,
}

/// `type SyncResultItem`.
#[derive(Clone, Debug, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct SyncResultItem {
    op_id: String,
    client_id: Option<String>,
    id: Option<ID>,
    success: bool,
    error_code: Option<String>,
    error_message: Option<String>,
    version: Option<i64>,
    updated_at: Option<Stamp>,
    conflict: Option<ConflictPayload>,
}

/// `type ConflictPayload`.
#[derive(Clone, Debug, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct ConflictPayload {
    server_data: Json<Value>,
    server_version: i64,
    server_updated_at: Stamp,
    server_is_deleted: bool,
}

/// `type SyncPullResponse`.
#[derive(Clone, Debug, Deserialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
pub struct SyncPullResponse {
    items: Vec<Json<Value>>,
    deleted_ids: Vec<ID>,
    last_sync_at: String,
    version_hash: Option<String>,
    has_more: bool,
}

/// `type PulledItem`: the shape of each element of `SyncPullResponse.items` (documented
/// in the schema; the items themselves travel as `JSON`).
#[derive(Clone, Debug, SimpleObject)]
pub struct PulledItem {
    id: ID,
    client_id: String,
    space_id: String,
    version: i64,
    updated_at: Stamp,
    data: Json<Value>,
}

// ---- roots ------------------------------------------------------------------------------

/// `type Query` and `type Mutation`: one pull and one push per entity type of the contract,
/// each forwarded under its operation name (`syncPullSpace`, `syncPushSpace`, …).
macro_rules! roots {
    ($($entity:literal: $pull:ident, $push:ident;)*) => {
        /// `type Query`: one pull per entity type.
        pub struct QueryRoot;

        #[Object(name = "Query")]
        impl QueryRoot {
            $(
                async fn $pull(
                    &self,
                    context: &Context<'_>,
                    last_sync_at: Option<String>,
                    tenant_id: ID,
                    #[graphql(default_with = "Some(1000)")] limit: Option<i64>,
                ) -> async_graphql::Result<SyncPullResponse> {
                    let operation_name = concat!("syncPull", $entity);
                    pull(context, operation_name, last_sync_at, tenant_id, limit)
                }
            )*
        }

        /// `type Mutation`: one push per entity type.
        pub struct MutationRoot;

        #[Object(name = "Mutation")]
        impl MutationRoot {
            $(
                async fn $push(
                    &self,
                    context: &Context<'_>,
                    payload: Vec<SyncPushItemInput>,
                    tenant_id: ID,
                ) -> async_graphql::Result<SyncPushResponse> {
                    push(context, concat!("syncPush", $entity), payload, tenant_id)
                }
            )*
        }
    };
}

roots! {
    "Space": sync_pull_space, sync_push_space;
    "Group": sync_pull_group, sync_push_group;
    "Identity": sync_pull_identity, sync_push_identity;
}

fn push(
    context: &Context<'_>,
    operation_name: &str,
    payload: Vec<SyncPushItemInput>,
    tenant_id: ID,
) -> async_graphql::Result<SyncPushResponse> {
    let payload: Vec<Value> = payload
        .into_iter()
        .map(SyncPushItemInput::into_json)
        .collect();
    let variables = serde_json::json!({ "payload": payload, "tenantId": tenant_id.0 });
    forward(context, operation_name, variables)
}

fn pull(
    context: &Context<'_>,
    operation_name: &str,
    last_sync_at: Option<String>,
    tenant_id: ID,
    limit: Option<i64>,
) -> async_graphql::Result<SyncPullResponse> {
    let variables =
        serde_json::json!({ "lastSyncAt": last_sync_at, "tenantId": tenant_id.0, "limit": limit });
    forward(context, operation_name, variables)
}

/// Runs one operation on the backend and reads its envelope: the payload as `T`, or the
/// server's error with its code in `extensions.code`.
fn forward<T: for<'de> Deserialize<'de>>(
    context: &Context<'_>,
    operation_name: &str,
    variables: Value,
) -> async_graphql::Result<T> {
    let backend = context.data::<Box<dyn Backend>>()?;
    let token = context
        .data_opt::<BearerToken>()
        .map_or("", |token| token.0.as_str());
    let envelope = backend.handle(operation_name, token, variables);
    match sync_engine::wire::into_envelope(operation_name, envelope) {
        sync_engine::wire::Envelope::Data(payload) => {
            serde_json::from_value(payload).map_err(|error| {
                // The reference server answered outside its own contract: a server bug.
                async_graphql::Error::new(format!(
                    "the server's answer does not fit the schema: {error}"
                ))
            })
        }
        sync_engine::wire::Envelope::Error { code, message } => {
            let error = async_graphql::Error::new(message);
            Err(match code {
                Some(code) => {
                    error.extend_with(|_, extensions| extensions.set("code", code.as_str()))
                }
                None => error,
            })
        }
    }
}
