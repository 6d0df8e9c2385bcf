//! Real engines syncing through `HttpTransport` over a loopback socket, with the
//! simulator's reference server behind a thin GraphQL-over-HTTP front: the documents,
//! headers and mapping carry a whole sync, and the failures a deployment meets (an auth
//! gateway's 401 page, a wrong URL) reach the engine as failures it waits out, never as
//! ops failed for good.

mod fake_server;

use fake_server::{FakeServer, Recorded, Reply};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_engine::wire::SyncRequest;
use sync_engine::{
    DbLocation, Engine, EngineOptions, EntityRegistry, Env, ManualClock, SeededEntropy, SyncEvent,
    SyncFailure, TenantId, TransportErrorKind,
};
use sync_http::{document_for, GraphqlClient, HttpTransport};
use sync_sim::server::ReferenceServer;

const TENANT: &str = "acme";
const TOKEN: &str = "token-acme";

fn registry() -> EntityRegistry {
    EntityRegistry::with_defaults(&["Item", "Space"]).expect("valid entity names")
}

fn open_engine(dir: &tempfile::TempDir, seed: u64, token: &str) -> Engine {
    let options = EngineOptions::new(
        DbLocation::new(dir.path()),
        TenantId::parse(TENANT).expect("a valid tenant id"),
        registry(),
    );
    let clock = ManualClock::new(1_700_000_000_000);
    let mut engine =
        Engine::open(options, Env::new(clock, SeededEntropy::new(seed))).expect("open");
    engine.set_auth_token(token).expect("store the token");
    engine
}

fn transport_to(server: &FakeServer) -> HttpTransport {
    let client = GraphqlClient::new(&server.url()).expect("a loopback endpoint");
    HttpTransport::new(client.with_timeout(Duration::from_secs(10)))
}

/// The reference server as a GraphQL endpoint: the request's document must be the one
/// `sync_http` writes for its operation; the token comes from the bearer header.
fn graphql_front(server: Arc<Mutex<ReferenceServer>>) -> impl FnMut(&Recorded) -> Reply {
    move |recorded| {
        let body = recorded.json();
        let operation_name = body["operationName"].as_str().expect("an operationName");
        assert_eq!(body["query"], document_for(operation_name).unwrap());
        let token = recorded
            .header("authorization")
            .and_then(|header| header.strip_prefix("Bearer "))
            .unwrap_or_default();
        let variables = body["variables"].clone();
        let request = SyncRequest {
            request_id: 0,
            operation_name: operation_name.to_owned(),
            tenant_id: variables["tenantId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            token: token.to_owned(),
            variables: variables.into(),
        };
        let response = server.lock().expect("the server lock").handle(&request);
        Reply::json(200, &response)
    }
}

fn reference_server() -> Arc<Mutex<ReferenceServer>> {
    let mut server = ReferenceServer::new(registry());
    server.add_tenant_token(TENANT, TOKEN);
    Arc::new(Mutex::new(server))
}

// Proves a write made on one device reaches another through HTTP: the first device's
// push is applied once, and the second device's pull brings the record with the same
// client id and data.
#[test]
fn a_write_travels_between_two_engines_over_http() {
    let server = reference_server();
    let front = FakeServer::start(graphql_front(Arc::clone(&server)));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut writer = open_engine(&dir_a, 1, TOKEN);
    let mut reader = open_engine(&dir_b, 2, TOKEN);
    let id = writer
        .create("Item", "s1", json!({"title": "milk"}))
        .expect("create");

    let pushed = writer
        .sync_blocking(&mut transport_to(&front))
        .expect("sync");
    let pulled = reader
        .sync_blocking(&mut transport_to(&front))
        .expect("sync");
    let requests = front.stop();

    assert_eq!(pushed.last(), Some(&SyncEvent::SyncCompleted), "{pushed:?}");
    assert_eq!(pulled.last(), Some(&SyncEvent::SyncCompleted), "{pulled:?}");
    assert!(writer.queued_ops().unwrap().is_empty());
    assert_eq!(server.lock().unwrap().records(TENANT).len(), 1);
    let record = reader.get(&id).unwrap().expect("the pulled record");
    assert_eq!(record.data["title"], "milk");
    assert!(record.server_id.is_some());
    // One push from the writer, then a pull per entity from each device.
    let operations: Vec<String> = requests
        .iter()
        .map(|request| request.json()["operationName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(operations.first().map(String::as_str), Some("syncPushItem"));
    assert!(
        operations.contains(&"syncPullSpace".to_owned()),
        "{operations:?}"
    );
    assert_eq!(
        operations
            .iter()
            .filter(|name| name.starts_with("syncPush"))
            .count(),
        1
    );
}

// Proves an auth gateway's own 401 page (not GraphQL) stops the sync as the server's
// own refusal would: `AuthRequired`, not retried by a timer, and the write still queued.
#[test]
fn a_gateway_401_page_asks_the_app_for_a_new_token() {
    let server = reference_server();
    let mut forward = graphql_front(Arc::clone(&server));
    let front = FakeServer::start(move |recorded| {
        if recorded.header("authorization") == Some(&format!("Bearer {TOKEN}")) {
            forward(recorded)
        } else {
            Reply::new(401, "text/html", "<html>Please log in</html>")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open_engine(&dir, 3, "expired-token");
    engine
        .create("Item", "s1", json!({"title": "eggs"}))
        .unwrap();

    let events = engine
        .sync_blocking(&mut transport_to(&front))
        .expect("sync");
    front.stop();

    let failure = events.iter().find_map(|event| match event {
        SyncEvent::SyncFailed {
            reason,
            retry_at_ms,
        } => Some((reason.clone(), *retry_at_ms)),
        _ => None,
    });
    let Some((SyncFailure::AuthRequired { message }, None)) = failure else {
        panic!("expected AuthRequired without a retry: {events:?}");
    };
    assert!(message.contains("HTTP 401"), "{message}");
    assert_eq!(engine.queued_ops().unwrap().len(), 1);
    assert!(server.lock().unwrap().records(TENANT).is_empty());
}

// Proves a wrong URL (a 404 page) keeps the user's writes: the sync fails as
// `Unreachable` with a retry scheduled, and the op stays queued rather than failed.
#[test]
fn a_wrong_url_keeps_the_writes_queued() {
    let front = FakeServer::answering(Reply::new(404, "text/html", "<h1>Not Found</h1>"));
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open_engine(&dir, 4, TOKEN);
    engine
        .create("Item", "s1", json!({"title": "bread"}))
        .unwrap();

    let events = engine
        .sync_blocking(&mut transport_to(&front))
        .expect("sync");
    front.stop();

    let failed = events.iter().any(|event| {
        matches!(
            event,
            SyncEvent::SyncFailed {
                reason: SyncFailure::Transport {
                    kind: TransportErrorKind::Unreachable,
                    message,
                },
                retry_at_ms: Some(_),
            } if message.contains("HTTP 404")
        )
    });
    assert!(failed, "{events:?}");
    assert!(!events
        .iter()
        .any(|event| matches!(event, SyncEvent::OpFailed { .. })));
    assert_eq!(engine.queued_ops().unwrap().len(), 1);
}
