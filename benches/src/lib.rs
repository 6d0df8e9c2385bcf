//! Shared setup for the throughput benchmarks in `benches/throughput.rs`.
//!
//! This crate owns the scenarios the benchmarks time: devices (a real [`Engine`] on its
//! own temporary directory), the in-process transport to the reference server, the
//! push-only driver, the two-device sync of `sync_10k` and `scale`, and (in [`floor`]) the
//! plain-SQLite floors every measure is compared with. It drives the engine only through
//! the public API an app uses, and it never reads a clock: criterion does the timing.
//!
//! Each scenario is built in a `new` (untimed setup) and consumed by a `run` (the timed
//! routine) that hands itself back, so that removing temporary directories stays outside
//! the measurement. Correctness is checked by `check_*` functions that the benchmarks call
//! once before measuring, and by the tests below.

pub mod floor;
pub mod query;

use serde_json::{json, Value};
use sync_engine::testing::EPOCH_MS;
use sync_engine::wire::{SyncAnswer, SyncRequest, SyncVariables};
use sync_engine::{
    DbLocation, Engine, EngineOptions, EntityRegistry, Env, ListOptions, ManualClock,
    SeededEntropy, SyncEvent, TenantId, Transport, TransportError,
};
use sync_sim::server::ReferenceServer;

/// The one entity type the benchmarks sync (one type keeps the pull phase to one run of
/// pages; an app with several types pays one extra, empty pull request per type).
pub const ENTITY: &str = "Item";
pub const SPACE_ID: &str = "space-1";
pub const TENANT: &str = "bench";
pub const TOKEN: &str = "bench-token";

/// The prefix of every push operation name (`syncPushItem`).
const PUSH_OPERATION_PREFIX: &str = "syncPush";

pub fn registry() -> EntityRegistry {
    EntityRegistry::with_defaults(&[ENTITY]).expect("the bench entity name is valid")
}

/// The app data of item `index`: a small object, about 50 bytes of JSON.
pub fn item_data(index: usize) -> Value {
    json!({
        "title": format!("item {index:06}"),
        "done": index.is_multiple_of(3),
        "position": index,
    })
}

/// `count` items, as an app would hand them to `create_many`.
pub fn items(count: usize) -> Vec<Value> {
    (0..count).map(item_data).collect()
}

/// One device: a real engine on its own temporary directory, logged in to [`TENANT`].
///
/// The clock is a [`ManualClock`] that stands still, so runs are deterministic; the
/// hybrid logical clock still gives every write its own stamp.
pub struct Device {
    // Declared before `dir` so that the database closes before its directory goes.
    pub engine: Engine,
    dir: tempfile::TempDir,
}

impl Device {
    /// Opens a fresh, empty device; `seed` feeds its id entropy (give each device its own).
    pub fn open(seed: u64) -> Device {
        Device::open_with(seed, registry())
    }

    /// [`Device::open`] with the app's own entity registry.
    pub fn open_with(seed: u64, registry: EntityRegistry) -> Device {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = EngineOptions::new(
            DbLocation::new(dir.path()),
            TenantId::parse(TENANT).expect("the bench tenant id is valid"),
            registry,
        );
        let env = Env::new(ManualClock::new(EPOCH_MS), SeededEntropy::new(seed));
        let mut engine = Engine::open(options, env).expect("open the engine");
        engine.set_auth_token(TOKEN).expect("store the token");
        Device { engine, dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The device's live records of [`ENTITY`], ordered by client id.
    pub fn records(&self) -> Vec<sync_engine::Record> {
        self.engine
            .list(ENTITY, None, ListOptions::default())
            .expect("list records")
    }
}

/// A reference server that knows [`TOKEN`] as [`TENANT`]'s.
pub fn server() -> ReferenceServer {
    let mut server = ReferenceServer::new(registry());
    server.add_tenant_token(TENANT, TOKEN);
    server
}

/// A blocking transport that hands each request straight to an in-process server: no
/// serialization (the request's variables go over typed and the server answers typed,
/// [`ReferenceServer::handle_typed`]), no network, no faults. The wire's JSON is measured over HTTP (`benches/over_http.rs`).
pub struct InProcessTransport<'a> {
    server: &'a mut ReferenceServer,
}

impl<'a> InProcessTransport<'a> {
    pub fn new(server: &'a mut ReferenceServer) -> InProcessTransport<'a> {
        InProcessTransport { server }
    }
}

impl Transport for InProcessTransport<'_> {
    fn send(&mut self, request: &SyncRequest) -> Result<Value, TransportError> {
        Ok(self.server.handle(request))
    }

    fn send_for_answer(&mut self, request: SyncRequest) -> Result<SyncAnswer, TransportError> {
        Ok(self.server.handle_typed(request))
    }
}

/// Panics unless a sync's events end in success with nothing failed or conflicting.
pub fn assert_clean_sync(events: &[SyncEvent]) {
    assert_eq!(events.last(), Some(&SyncEvent::SyncCompleted), "{events:?}");
    for event in events {
        let clean = matches!(
            event,
            SyncEvent::SyncStarted { .. }
                | SyncEvent::SyncCompleted
                | SyncEvent::RecordsChanged { .. }
        );
        assert!(clean, "unexpected sync event {event:?}");
    }
}

/// Starts a sync and answers only its push requests, through the sans-IO API; stops at
/// the first request that is not a push (the sync's first pull, which is dropped
/// unanswered). Returns how many ops the push requests carried.
pub fn push_queue(engine: &mut Engine, server: &mut ReferenceServer) -> usize {
    engine.sync_now().expect("start a sync");
    let mut ops_pushed = 0;
    while let Some(request) = engine.poll_request() {
        if !request.operation_name.starts_with(PUSH_OPERATION_PREFIX) {
            break;
        }
        let SyncVariables::Push(variables) = &request.variables else {
            panic!("the engine's push carries typed variables");
        };
        ops_pushed += variables.payload.len();
        let request_id = request.request_id;
        let answer = server.handle_typed(request);
        engine
            .handle_sync_answer(request_id, Ok(answer))
            .expect("store the push results");
    }
    ops_pushed
}

/// A device with `count` creates queued (one `create_many`), and a fresh server: the
/// input of the `push` benchmark.
pub struct PushScenario {
    pub device: Device,
    pub server: ReferenceServer,
    count: usize,
}

impl PushScenario {
    pub fn new(count: usize) -> PushScenario {
        let mut device = Device::open(1);
        device
            .engine
            .create_many(ENTITY, SPACE_ID, items(count))
            .expect("queue the creates");
        PushScenario {
            device,
            server: server(),
            count,
        }
    }

    /// The timed part: every queued op pushed, nothing pulled.
    pub fn run(mut self) -> PushScenario {
        let ops_pushed = push_queue(&mut self.device.engine, &mut self.server);
        assert_eq!(ops_pushed, self.count);
        self
    }

    /// After [`PushScenario::run`]: the queue is empty and the server holds every record.
    pub fn check(&self) {
        let status = self.device.engine.status().expect("status");
        assert_eq!(status.pending_ops, 0);
        assert_eq!(status.failed_ops, 0);
        assert_eq!(self.server.records(TENANT).len(), self.count);
    }
}

/// A server holding `count` records that device A created and synced: the input of the
/// `pull` benchmark (pulls never change server state, so one server serves every run).
pub fn prefilled_server(count: usize) -> ReferenceServer {
    let scenario = SyncScenario::new(count).run();
    scenario.check_converged();
    scenario.server
}

/// Pulls everything on `server` into `device` with one whole sync (the device has nothing
/// queued, so the sync's push phase is one empty queue read).
pub fn pull_all(device: &mut Device, server: &mut ReferenceServer) {
    let events = device
        .engine
        .sync_blocking(&mut InProcessTransport::new(server))
        .expect("sync");
    assert_clean_sync(&events);
}

/// The end-to-end shape of DESIGN §8: device A creates `count` items offline, goes
/// online and syncs (push, then pull of its own echoes); device B, empty, syncs and then
/// holds all `count` items.
pub struct SyncScenario {
    pub a: Device,
    pub b: Device,
    pub server: ReferenceServer,
    items: Vec<Value>,
    count: usize,
}

impl SyncScenario {
    /// Two empty devices of one tenant (A offline), an empty server, and the items.
    pub fn new(count: usize) -> SyncScenario {
        let mut a = Device::open(1);
        a.engine
            .handle_network_change(false)
            .expect("device A goes offline");
        SyncScenario {
            a,
            b: Device::open(2),
            server: server(),
            items: items(count),
            count,
        }
    }

    /// The timed part: A's offline creates, A's sync when it comes online, B's sync.
    pub fn run(mut self) -> SyncScenario {
        let items = std::mem::take(&mut self.items);
        self.a
            .engine
            .create_many(ENTITY, SPACE_ID, items)
            .expect("create offline");
        let mut transport = InProcessTransport::new(&mut self.server);
        // Coming back online starts a sync; driving it sends every request it makes.
        self.a
            .engine
            .handle_network_change(true)
            .expect("device A comes online");
        let events = self
            .a
            .engine
            .drive_blocking(&mut transport)
            .expect("device A syncs");
        assert_clean_sync(&events);
        let events = self
            .b
            .engine
            .sync_blocking(&mut transport)
            .expect("device B syncs");
        assert_clean_sync(&events);
        self
    }

    /// After [`SyncScenario::run`]: A, B and the server hold the same `count` records.
    pub fn check_converged(&self) {
        let summary =
            |records: Vec<sync_engine::Record>| -> Vec<(String, Option<String>, i64, Value)> {
                records
                    .into_iter()
                    .map(|record| {
                        (
                            record.client_id,
                            record.server_id,
                            record.version,
                            Value::Object(record.data),
                        )
                    })
                    .collect()
            };
        let on_a = summary(self.a.records());
        let on_b = summary(self.b.records());
        assert_eq!(on_a.len(), self.count);
        assert_eq!(on_a, on_b, "devices A and B differ");
        assert!(on_b
            .iter()
            .all(|(_, server_id, version, _)| { server_id.is_some() && *version == 1 }));
        assert_eq!(self.server.records(TENANT).len(), self.count);
        for device in [&self.a, &self.b] {
            let status = device.engine.status().expect("status");
            assert_eq!(status.pending_ops, 0);
            assert_eq!(status.open_conflicts, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The scenarios do what the benchmark names claim, at a small size: the push driver
    //! pushes the whole queue and nothing else, and the sync converges both devices.
    use super::*;

    #[test]
    fn push_scenario_empties_the_queue_without_pulling() {
        // 250 ops: two full batches of 100 and one of 50.
        let scenario = PushScenario::new(250).run();
        scenario.check();
        // The device stood where the server stood before each of its three pushes, so its
        // cursor followed its own writes to the third commit's last row, without a pull.
        assert_eq!(
            scenario.device.engine.cursor(ENTITY).unwrap().as_deref(),
            Some("3.srv-0000000250")
        );
    }

    /// The same transport through JSON both ways, as a wire carries a request: the
    /// variables rendered, the answer the server's envelope.
    struct JsonTransport<'a>(&'a mut ReferenceServer);

    impl Transport for JsonTransport<'_> {
        fn send(&mut self, request: &SyncRequest) -> Result<Value, TransportError> {
            let request = request.clone().with_json_variables();
            assert!(matches!(request.variables, SyncVariables::Json(_)));
            Ok(self.0.handle(&request))
        }
    }

    /// Device A creates `count` items and syncs, then device B syncs, over `typed` or
    /// JSON answers; returns both devices' records, cursors and the events of A's sync.
    fn sync_pair(count: usize, typed: bool) -> Vec<(Vec<sync_engine::Record>, Option<String>)> {
        let mut server = server();
        let mut devices = [Device::open(1), Device::open(2)];
        devices[0]
            .engine
            .create_many(ENTITY, SPACE_ID, items(count))
            .expect("create");
        for device in &mut devices {
            let events = if typed {
                device
                    .engine
                    .sync_blocking(&mut InProcessTransport::new(&mut server))
            } else {
                device.engine.sync_blocking(&mut JsonTransport(&mut server))
            };
            assert_clean_sync(&events.expect("sync"));
        }
        devices
            .iter()
            .map(|device| (device.records(), device.engine.cursor(ENTITY).unwrap()))
            .collect()
    }

    #[test]
    fn typed_requests_and_answers_leave_the_devices_as_json_does() {
        // 250 items: three push requests, and B pulls them in pages.
        let typed = sync_pair(250, true);
        assert_eq!(typed[1].0.len(), 250);
        assert_eq!(typed, sync_pair(250, false));
    }

    #[test]
    fn a_typed_answer_of_the_other_kind_fails_the_sync_and_changes_nothing() {
        let mut server = server();
        let mut device = Device::open(4);
        device
            .engine
            .create_many(ENTITY, SPACE_ID, items(3))
            .unwrap();
        device.engine.sync_now().unwrap();
        let push = device.engine.poll_request().expect("a push request");
        assert!(push.operation_name.starts_with(PUSH_OPERATION_PREFIX));
        // A pull page in answer to the push (from a pull the server answered meanwhile).
        let pull = SyncRequest {
            operation_name: format!("syncPull{ENTITY}"),
            variables: serde_json::json!({ "tenantId": TENANT, "lastSyncAt": null, "limit": 10 })
                .into(),
            ..push.clone()
        };
        let wrong = server.handle_typed(pull);
        assert!(matches!(wrong, SyncAnswer::Pull { .. }));
        device
            .engine
            .handle_sync_answer(push.request_id, Ok(wrong))
            .unwrap();
        let events: Vec<SyncEvent> = std::iter::from_fn(|| device.engine.poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|event| matches!(event, SyncEvent::SyncFailed { .. })),
            "{events:?}"
        );
        assert_eq!(device.engine.status().unwrap().pending_ops, 3);
        assert!(device
            .records()
            .iter()
            .all(|record| record.server_id.is_none()));
    }

    #[test]
    fn query_scenario_agrees_with_its_floor_and_uses_the_index() {
        query::QueryScenario::new(2_000).check();
    }

    #[test]
    fn sync_scenario_converges_and_pull_fills_an_empty_device() {
        let mut server = prefilled_server(1_050);
        let mut device = Device::open(3);
        pull_all(&mut device, &mut server);
        assert_eq!(device.records().len(), 1_050);
        assert!(device.engine.cursor(ENTITY).unwrap().is_some());
    }
}
