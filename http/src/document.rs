//! The GraphQL documents of the engine's operations, and the request body that carries one.
//!
//! The engine names its operations `syncPush{Entity}` and `syncPull{Entity}` (see
//! `EntityConfig::push_operation_name`); each document's operation name equals its
//! field name, and each selects every field of the response type as
//! `engine/schema.graphql` declares it (a test compares the two). This module only
//! writes text; it never sends anything.

use serde_json::{json, Value};
use sync_engine::wire::SyncRequest;
use sync_engine::EntityConfig;

/// An operation name that is neither `syncPush{Entity}` nor `syncPull{Entity}` for a
/// valid entity name: there is no document for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no GraphQL document for operation {operation_name:?}: expected syncPush<Entity> or \
     syncPull<Entity>, the entity 1-64 ASCII letters and digits starting with a letter"
)]
pub struct UnknownOperation {
    pub operation_name: String,
}

/// The selection of `SyncPushResponse`: every field, nested types included.
const PUSH_SELECTION: &str = "\
    results {
      opId
      clientId
      id
      success
      errorCode
      errorMessage
      version
      updatedAt
      conflict {
        serverData
        serverVersion
        serverUpdatedAt
        serverIsDeleted
      }
    }
    cursorBefore
    cursorAfter";

/// The selection of `SyncPullResponse`: every field.
const PULL_SELECTION: &str = "\
    items
    deletedIds
    lastSyncAt
    versionHash
    hasMore";

/// The GraphQL document the engine's operation needs: `syncPush{Entity}` → a mutation
/// with `$payload: [SyncPushItem!]!, $tenantId: ID!` selecting every field of
/// `SyncPushResponse`; `syncPull{Entity}` → a query with `$lastSyncAt: String,
/// $tenantId: ID!, $limit: Int` selecting every field of `SyncPullResponse`. The
/// operation name equals the field name. Any other name is an [`UnknownOperation`].
pub fn document_for(operation_name: &str) -> Result<String, UnknownOperation> {
    let unknown = || UnknownOperation {
        operation_name: operation_name.to_owned(),
    };
    // The engine's own rule for entity names decides which names are operations, so an
    // entity the app registers always has a document and nothing else does.
    let is_entity = |entity: &str| EntityConfig::new(entity).is_ok();
    let document = if let Some(entity) = operation_name.strip_prefix("syncPush") {
        if !is_entity(entity) {
            return Err(unknown());
        }
        format!(
            "mutation {operation_name}($payload: [SyncPushItem!]!, $tenantId: ID!) {{\n  \
             {operation_name}(payload: $payload, tenantId: $tenantId) {{\n{PUSH_SELECTION}\n  }}\n}}\n"
        )
    } else if let Some(entity) = operation_name.strip_prefix("syncPull") {
        if !is_entity(entity) {
            return Err(unknown());
        }
        format!(
            "query {operation_name}($lastSyncAt: String, $tenantId: ID!, $limit: Int) {{\n  \
             {operation_name}(lastSyncAt: $lastSyncAt, tenantId: $tenantId, limit: $limit) \
             {{\n{PULL_SELECTION}\n  }}\n}}\n"
        )
    } else {
        return Err(unknown());
    };
    assert!(document.contains(operation_name));
    Ok(document)
}

/// The JSON body that carries `request`:
/// `{"query": document_for(..), "operationName": .., "variables": request.variables}`.
/// The tenant and the token travel elsewhere: the tenant is in the variables already,
/// the token in the `Authorization` header.
pub fn request_body(request: &SyncRequest) -> Result<Value, UnknownOperation> {
    let query = document_for(&request.operation_name)?;
    Ok(json!({
        "query": query,
        "operationName": request.operation_name,
        "variables": request.variables,
    }))
}

#[cfg(test)]
mod tests {
    //! Which names have documents, and what the documents declare.
    use super::*;
    use sync_engine::wire::{SyncPullVariables, SyncVariables};

    #[test]
    fn push_document_is_a_mutation_named_as_its_field() {
        let document = document_for("syncPushSpace").unwrap();
        assert!(document
            .starts_with("mutation syncPushSpace($payload: [SyncPushItem!]!, $tenantId: ID!) {"));
        assert!(document.contains("syncPushSpace(payload: $payload, tenantId: $tenantId) {"));
        assert!(!document.contains("query"));
    }

    #[test]
    fn pull_document_is_a_query_named_as_its_field() {
        let document = document_for("syncPullIdentity").unwrap();
        assert!(document.starts_with(
            "query syncPullIdentity($lastSyncAt: String, $tenantId: ID!, $limit: Int) {"
        ));
        assert!(document.contains(
            "syncPullIdentity(lastSyncAt: $lastSyncAt, tenantId: $tenantId, limit: $limit) {"
        ));
        assert!(!document.contains("mutation"));
    }

    #[test]
    fn braces_balance() {
        for name in ["syncPushGroup", "syncPullGroup"] {
            let document = document_for(name).unwrap();
            let mut depth: i32 = 0;
            for c in document.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                assert!(depth >= 0, "{name}: a brace closes before it opens");
            }
            assert_eq!(depth, 0, "{name}");
        }
    }

    #[test]
    fn names_that_are_not_engine_operations_have_no_document() {
        for name in [
            "",
            "syncPush",
            "syncPull",
            "syncPushspace ",
            "syncPush1Space",
            "syncPush_Space",
            "syncPushSpace{",
            "syncPushSpace(x: 1)",
            "SyncPushSpace",
            "syncDeleteSpace",
            "query",
        ] {
            assert_eq!(
                document_for(name),
                Err(UnknownOperation {
                    operation_name: name.to_owned()
                }),
                "{name:?}"
            );
        }
        let too_long = format!("syncPull{}", "A".repeat(65));
        assert!(document_for(&too_long).is_err());
        let longest = format!("syncPull{}", "A".repeat(64));
        assert!(document_for(&longest).is_ok());
    }

    #[test]
    fn request_body_carries_document_name_and_variables() {
        let request = SyncRequest {
            request_id: 7,
            operation_name: "syncPullSpace".into(),
            tenant_id: "acme".into(),
            token: "secret".into(),
            variables: SyncVariables::Pull(SyncPullVariables {
                last_sync_at: None,
                tenant_id: "acme".into(),
                limit: Some(50),
            }),
        };
        let body = request_body(&request).unwrap();
        assert_eq!(body["query"], document_for("syncPullSpace").unwrap());
        assert_eq!(body["operationName"], "syncPullSpace");
        assert_eq!(
            body["variables"],
            json!({"lastSyncAt": null, "tenantId": "acme", "limit": 50})
        );
        assert_eq!(body.as_object().unwrap().len(), 3);
        assert!(
            !body.to_string().contains("secret"),
            "the token is a header"
        );

        let unknown = SyncRequest {
            operation_name: "syncCheckSpace".into(),
            ..request
        };
        assert!(request_body(&unknown).is_err());
    }
}
