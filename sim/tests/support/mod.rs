//! The shared harness of the end-to-end tests: real engines ("devices") against the real
//! reference server, with nothing mocked in between.
//!
//! Fault model: a [`ScriptedTransport`] hands each request to the server with the next
//! scripted [`ServerFault`] (none once the script runs out). `ApplyThenLoseResponse`
//! becomes a transport timeout, exactly what an app sees when a response is lost after
//! the server committed. An app kill is modelled by dropping the engine
//! ([`Device::reopen`]) or by a [`CrashAt`] hook firing at a named crash point; either way
//! only what SQLite committed survives. Time is a [`ManualClock`] per device, moved by
//! hand, so HLC stamps are chosen by the test.
//!
//! Every test file uses only part of this module.
#![allow(dead_code)]

use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use sync_engine::testing::{example_registry, EPOCH_MS};
use sync_engine::wire::SyncRequest;
use sync_engine::{
    CrashHook, CrashPoint, DbLocation, Engine, EngineOptions, EntityRegistry, Env, ListOptions,
    ManualClock, SeededEntropy, SyncEvent, TenantId, Transport, TransportError,
};
use sync_sim::server::{ReferenceServer, ServerFault, ServerRecord, ServerReply};

pub const ACME: &str = "acme";
pub const ACME_TOKEN: &str = "token-acme";
pub const GLOBEX: &str = "globex";
pub const GLOBEX_TOKEN: &str = "token-globex";
pub const SPACE_ENTITY: &str = "Space";
pub const SPACE: &str = "space-1";
pub const OTHER_SPACE: &str = "space-2";

/// The server, and a temporary directory under which every device keeps its databases.
pub struct World {
    pub server: ReferenceServer,
    dir: tempfile::TempDir,
    devices_opened: u64,
}

impl World {
    /// A server for the spec's example entity types with two tenants, `acme` and `globex`.
    pub fn new() -> World {
        let mut server = ReferenceServer::new(example_registry());
        server.add_tenant_token(ACME, ACME_TOKEN);
        server.add_tenant_token(GLOBEX, GLOBEX_TOKEN);
        World {
            server,
            dir: tempfile::tempdir().expect("temporary directory"),
            devices_opened: 0,
        }
    }

    /// A new device of `tenant` with the example registry, logged in with the tenant's
    /// token.
    pub fn device(&mut self, tenant: &str) -> Device {
        self.device_with_registry(tenant, example_registry())
    }

    /// A new device with its own directory, clock and entropy seed.
    pub fn device_with_registry(&mut self, tenant: &str, registry: EntityRegistry) -> Device {
        self.devices_opened += 1;
        let dir = self
            .dir
            .path()
            .join(format!("device-{}", self.devices_opened));
        let mut device = Device {
            engine: None,
            clock: ManualClock::new(EPOCH_MS),
            dir,
            tenant: tenant.to_owned(),
            registry,
            // Distinct per device and per reopen, so no two engines draw the same ids.
            seed: self.devices_opened * 1_000_003,
            opens: 0,
        };
        device.open();
        let token = match tenant {
            ACME => ACME_TOKEN,
            GLOBEX => GLOBEX_TOKEN,
            _ => "token-unknown",
        };
        device.set_auth_token(token).expect("store token");
        device
    }

    /// `sync_now`, then answers every request with the server, without faults.
    pub fn sync(&mut self, device: &mut Device) -> Vec<SyncEvent> {
        device.sync_now().expect("sync_now");
        self.drive(device)
    }

    /// Answers every request the device has (and those it makes in answer) without faults.
    pub fn drive(&mut self, device: &mut Device) -> Vec<SyncEvent> {
        let mut transport = ScriptedTransport::new(&mut self.server, []);
        device.drive_blocking(&mut transport).expect("drive")
    }

    /// Like [`World::drive`], one request at a time, asserting that the engine never has
    /// a second request out while one is unanswered. Returns the events and how many
    /// requests were answered.
    pub fn drive_one_at_a_time(&mut self, device: &mut Device) -> (Vec<SyncEvent>, usize) {
        let mut answered = 0;
        while let Some(request) = device.poll_request() {
            assert_eq!(
                device.poll_request(),
                None,
                "a second request while request {} is in flight",
                request.request_id
            );
            let response = self.server.handle(&request);
            device
                .handle_response(request.request_id, Ok(response))
                .expect("handle_response");
            answered += 1;
        }
        (device.drain_events(), answered)
    }

    /// A tenant's server records of one entity, in server-id order.
    pub fn server_records(&self, tenant: &str, entity: &str) -> Vec<ServerRecord> {
        self.server
            .records(tenant)
            .into_iter()
            .filter(|record| record.entity == entity)
            .cloned()
            .collect()
    }

    /// The server's live records of one entity as a [`LiveView`].
    pub fn server_view(&self, tenant: &str, entity: &str) -> LiveView {
        self.server_records(tenant, entity)
            .into_iter()
            .filter(|record| !record.is_deleted)
            .map(|record| {
                (
                    record.client_id.clone(),
                    LiveRecord {
                        server_id: Some(record.id.clone()),
                        version: record.version,
                        data: record.data.clone(),
                    },
                )
            })
            .collect()
    }

    /// The one server record of `client_id`; fails the test if there is not exactly one.
    pub fn server_record(&self, tenant: &str, client_id: &str) -> ServerRecord {
        let matches: Vec<&ServerRecord> = self
            .server
            .records(tenant)
            .into_iter()
            .filter(|record| record.client_id == client_id)
            .collect();
        assert_eq!(matches.len(), 1, "server rows for clientId {client_id}");
        matches[0].clone()
    }

    /// Asserts that each device's live records of `entity` equal the server's: same
    /// client ids, server ids, versions and data.
    pub fn assert_converged(&self, tenant: &str, entity: &str, devices: &[&Device]) {
        let server = self.server_view(tenant, entity);
        for device in devices {
            assert_eq!(
                device.live_view(entity),
                server,
                "device {} differs from the server",
                device.dir.display()
            );
        }
    }
}

/// What two sides must agree on for one live record.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveRecord {
    pub server_id: Option<String>,
    pub version: i64,
    pub data: Map<String, Value>,
}

/// Live records by client id.
pub type LiveView = BTreeMap<String, LiveRecord>;

/// One app install: an engine on its own directory, its clock, and what it needs to be
/// reopened after a kill. Derefs to the [`Engine`].
pub struct Device {
    engine: Option<Engine>,
    pub clock: ManualClock,
    dir: PathBuf,
    tenant: String,
    registry: EntityRegistry,
    seed: u64,
    opens: u64,
}

impl Device {
    fn open(&mut self) {
        assert!(self.engine.is_none(), "the previous engine must be dropped");
        self.opens += 1;
        let options = EngineOptions::new(
            DbLocation::new(&self.dir),
            TenantId::parse(&self.tenant).expect("valid tenant"),
            self.registry.clone(),
        );
        let env = Env::new(
            self.clock.clone(),
            SeededEntropy::new(self.seed + self.opens),
        );
        self.engine = Some(Engine::open(options, env).expect("open engine"));
    }

    /// The app is killed and started again: only what SQLite committed survives.
    pub fn reopen(&mut self) {
        drop(self.engine.take());
        self.open();
    }

    /// Logs out: drops the tenant database (consuming the engine, as a real logout does).
    pub fn drop_database(&mut self) {
        let engine = self.engine.take().expect("an open engine");
        engine.drop_database().expect("drop database");
    }

    /// Logs in again after [`Device::drop_database`].
    pub fn login(&mut self, token: &str) {
        self.open();
        self.set_auth_token(token).expect("store token");
    }

    pub fn db_location(&self) -> DbLocation {
        DbLocation::new(&self.dir)
    }

    pub fn tenant_id(&self) -> TenantId {
        TenantId::parse(&self.tenant).expect("valid tenant")
    }

    pub fn drain_events(&mut self) -> Vec<SyncEvent> {
        std::iter::from_fn(|| self.poll_event()).collect()
    }

    /// Creates a record in [`SPACE`] and returns its client id.
    pub fn create_named(&mut self, name: &str) -> String {
        self.create(SPACE_ENTITY, SPACE, serde_json::json!({ "name": name }))
            .expect("create")
    }

    /// A record that must exist.
    pub fn record(&self, id: &str) -> sync_engine::Record {
        self.get(id).expect("read").expect("record exists")
    }

    /// Live records of `entity` as a [`LiveView`].
    pub fn live_view(&self, entity: &str) -> LiveView {
        self.list(entity, None, ListOptions::default())
            .expect("list")
            .into_iter()
            .map(|record| {
                (
                    record.client_id,
                    LiveRecord {
                        server_id: record.server_id,
                        version: record.version,
                        data: record.data,
                    },
                )
            })
            .collect()
    }
}

impl std::ops::Deref for Device {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        self.engine.as_ref().expect("the device's engine is open")
    }
}

impl std::ops::DerefMut for Device {
    fn deref_mut(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("the device's engine is open")
    }
}

/// A transport straight into the server's `handle_with_fault`, one scripted fault per
/// request (none after the script), keeping a log of what was sent.
pub struct ScriptedTransport<'a> {
    server: &'a mut ReferenceServer,
    faults: VecDeque<ServerFault>,
    pub sent: Vec<SyncRequest>,
}

impl<'a> ScriptedTransport<'a> {
    pub fn new(
        server: &'a mut ReferenceServer,
        faults: impl IntoIterator<Item = ServerFault>,
    ) -> ScriptedTransport<'a> {
        ScriptedTransport {
            server,
            faults: faults.into_iter().collect(),
            sent: Vec::new(),
        }
    }
}

impl Transport for ScriptedTransport<'_> {
    fn send(&mut self, request: &SyncRequest) -> Result<Value, TransportError> {
        self.sent.push(request.clone());
        let fault = self.faults.pop_front().unwrap_or(ServerFault::None);
        match self.server.handle_with_fault(request, fault) {
            ServerReply::Response(response) => Ok(response),
            ServerReply::Delayed { response, .. } => Ok(response),
            ServerReply::Lost => Err(TransportError::timeout("response lost")),
        }
    }
}

/// A crash hook that kills the app the first time it reaches `point`.
pub struct CrashAt(pub CrashPoint);

impl CrashHook for CrashAt {
    fn should_crash(&mut self, point: CrashPoint) -> bool {
        point == self.0
    }
}

/// Counts events matching `predicate`.
pub fn count(events: &[SyncEvent], predicate: impl Fn(&SyncEvent) -> bool) -> usize {
    events.iter().filter(|event| predicate(event)).count()
}

/// A JSON object from a `json!` literal.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Everything durable in a device, for "old or new state entirely" comparisons.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub records: Vec<sync_engine::Record>,
    pub ops: Vec<sync_engine::QueuedOp>,
    pub conflicts: Vec<sync_engine::Conflict>,
    pub cursors: Vec<Option<String>>,
    pub token: Option<String>,
}

pub fn snapshot(device: &Device) -> Snapshot {
    Snapshot {
        records: device.all_records().expect("records"),
        ops: device.queued_ops().expect("ops"),
        conflicts: device.list_conflicts().expect("conflicts"),
        cursors: device
            .registry()
            .entities()
            .iter()
            .map(|config| device.cursor(config.name()).expect("cursor"))
            .collect(),
        token: device.auth_token().expect("token"),
    }
}
