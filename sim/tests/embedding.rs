//! The engine as an app embeds it: an [`Engine`] is `Send`, so it can live on a sync
//! thread (or in a task) while the app's other threads hold what they need.

use serde_json::{json, Value};
use sync_engine::wire::SyncRequest;
use sync_engine::{
    DbLocation, Engine, EngineOptions, EntityRegistry, Env, ManualClock, SeededEntropy, TenantId,
    Transport, TransportError,
};
use sync_sim::server::ReferenceServer;

const TENANT: &str = "acme";
const TOKEN: &str = "token-acme";

fn registry() -> EntityRegistry {
    EntityRegistry::with_defaults(&["Item"]).expect("a valid entity name")
}

/// Hands each request to a server that lives on the same thread as the engine.
struct InProcess<'a>(&'a mut ReferenceServer);

impl Transport for InProcess<'_> {
    fn send(&mut self, request: &SyncRequest) -> Result<Value, TransportError> {
        Ok(self.0.handle(request))
    }
}

fn assert_send<T: Send>() {}

// Proves an engine opened on one thread syncs on another and comes back: its clock is a
// clone the opening thread keeps and moves, its writes reach the server from the sync
// thread, and the engine returned by the thread reads them back synced.
#[test]
fn an_engine_moves_to_a_sync_thread_and_back() {
    assert_send::<Engine>();
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(1_700_000_000_000);
    let options = EngineOptions::new(
        DbLocation::new(dir.path()),
        TenantId::parse(TENANT).expect("a valid tenant id"),
        registry(),
    );
    let mut engine =
        Engine::open(options, Env::new(clock.clone(), SeededEntropy::new(7))).expect("open");
    engine.set_auth_token(TOKEN).expect("store the token");
    let id = engine
        .create(
            "Item",
            "s1",
            json!({ "title": "written on the app thread" }),
        )
        .expect("create");

    let mut server = ReferenceServer::new(registry());
    server.add_tenant_token(TENANT, TOKEN);
    clock.advance_ms(1_000);
    let sync_thread = std::thread::spawn(move || {
        let events = engine
            .sync_blocking(&mut InProcess(&mut server))
            .expect("sync on the sync thread");
        (engine, server, events)
    });
    let (engine, server, events) = sync_thread.join().expect("the sync thread finished");

    assert_eq!(
        events.last(),
        Some(&sync_engine::SyncEvent::SyncCompleted),
        "{events:?}"
    );
    assert!(engine.queued_ops().expect("read the queue").is_empty());
    let record = engine.get(&id).expect("read").expect("the record");
    assert!(record.server_id.is_some(), "the push mapped the record");
    assert_eq!(
        server.records(TENANT).len(),
        1,
        "the server holds the write once"
    );
}
