//! Building a [`Sim`]: the seed, the knobs, planted defects, tenants, devices (named, each
//! logged in to a tenant or not), the entity registry and what to keep for the driver. The
//! builder only assembles; nothing runs until a driver steps the `Sim`.

use super::device::{Device, KillSwitch};
use super::faults::{FaultChooser, FaultSelection};
use super::{temp_root, token_of, Faults, Sim, Trace, ENTITIES, EPOCH_MS};
use crate::oracle::Oracle;
use crate::profile::{FaultClass, Knobs};
use crate::rng::{SimRng, Stream};
use crate::server::{ReferenceServer, ServerDefects};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use sync_engine::{EntityConfig, EntityRegistry};

/// Builds a [`Sim`]: `SimBuilder::new(seed).knobs(..).defects(..).build()`.
pub struct SimBuilder {
    seed: u64,
    knobs: Knobs,
    defects: ServerDefects,
    tenants: Option<Vec<String>>,
    devices: Option<Vec<(String, Option<String>)>>,
    registry: Option<EntityRegistry>,
    keep_trace: bool,
    collect_events: bool,
    collect_requests: bool,
    hostile_server: bool,
    dir_prefix: &'static str,
    fault_selection: FaultSelection,
    record_faults: bool,
    logged_out_devices: BTreeSet<usize>,
}

impl SimBuilder {
    /// A run of `seed` with no faults, two devices on one tenant, until told otherwise.
    pub fn new(seed: u64) -> SimBuilder {
        SimBuilder {
            seed,
            knobs: Knobs::quiet(),
            defects: ServerDefects::default(),
            tenants: None,
            devices: None,
            registry: None,
            keep_trace: false,
            collect_events: false,
            collect_requests: false,
            hostile_server: false,
            dir_prefix: "syncsim-",
            fault_selection: FaultSelection::Dice,
            record_faults: false,
            logged_out_devices: BTreeSet::new(),
        }
    }

    /// The run's configuration; tenants `t0..`, devices `d0..` and the entity registry
    /// follow from it unless given.
    pub fn knobs(mut self, knobs: Knobs) -> SimBuilder {
        self.knobs = knobs;
        self
    }

    /// Planted defects of the server and the engine (harness self-tests only).
    pub fn defects(mut self, defects: ServerDefects) -> SimBuilder {
        self.defects = defects;
        self
    }

    pub fn tenants(mut self, tenants: Vec<String>) -> SimBuilder {
        self.tenants = Some(tenants);
        self
    }

    /// Adds a named device, logged in to `tenant` (or logged out).
    pub fn device(mut self, name: &str, tenant: Option<&str>) -> SimBuilder {
        self.devices
            .get_or_insert_with(Vec::new)
            .push((name.to_owned(), tenant.map(str::to_owned)));
        self
    }

    pub fn registry(mut self, registry: EntityRegistry) -> SimBuilder {
        self.registry = Some(registry);
        self
    }

    /// Keep every trace line (for `syncsim replay --trace`).
    pub fn keep_trace(mut self, keep: bool) -> SimBuilder {
        self.keep_trace = keep;
        self
    }

    /// Keep every engine event for the driver to read ([`Sim::take_events`]).
    pub fn collect_events(mut self, collect: bool) -> SimBuilder {
        self.collect_events = collect;
        self
    }

    /// Keep a copy of every request a device sends, for a driver that checks what went
    /// over the wire (pages asked for, cursors sent, ops pushed): [`Sim::take_requests`].
    pub fn collect_requests(mut self, collect: bool) -> SimBuilder {
        self.collect_requests = collect;
        self
    }

    /// The driver answers the devices' requests itself ([`Sim::hold`], [`Sim::deliver`])
    /// and may lie, as a hostile server would: the oracle skips the checks that hold only
    /// for the reference server's honest answers (see [`Oracle::hostile_server`]).
    pub fn hostile_server(mut self, hostile: bool) -> SimBuilder {
        self.hostile_server = hostile;
        self
    }

    /// Which fault opportunities fire: the dice's choice (a seed's run), or exactly a
    /// case's list.
    pub fn fault_selection(mut self, selection: FaultSelection) -> SimBuilder {
        self.fault_selection = selection;
        self
    }

    /// List every fault that fires, for a case file ([`Sim::recorded_faults`]).
    pub fn record_faults(mut self, record: bool) -> SimBuilder {
        self.record_faults = record;
        self
    }

    /// These devices of the knobs' `d0..` start logged out (a case that leaves a device
    /// out: it never opens unless its user logs in).
    pub fn logged_out_devices(mut self, devices: BTreeSet<usize>) -> SimBuilder {
        self.logged_out_devices = devices;
        self
    }

    pub fn dir_prefix(mut self, prefix: &'static str) -> SimBuilder {
        self.dir_prefix = prefix;
        self
    }

    pub fn build(self) -> Sim {
        let SimBuilder { seed, knobs, .. } = self;
        let registry = self
            .registry
            .unwrap_or_else(|| registry_for(&ENTITIES, &knobs));
        let mut server = ReferenceServer::new(registry.clone());
        server.set_defects(self.defects);
        let tenants = self.tenants.unwrap_or_else(|| {
            (0..knobs.tenants)
                .map(|index| format!("t{index}"))
                .collect()
        });
        for tenant in &tenants {
            server.add_tenant_token(tenant, &token_of(tenant));
        }
        let declared = self.devices.unwrap_or_else(|| {
            (0..knobs.devices)
                .map(|index| {
                    let tenant = tenants
                        .get(index % tenants.len().max(1))
                        .filter(|_| !self.logged_out_devices.contains(&index))
                        .cloned();
                    (format!("d{index}"), tenant)
                })
                .collect()
        });
        let root = temp_root(self.dir_prefix);
        let mut devices = Vec::with_capacity(declared.len());
        for (index, (name, tenant)) in declared.into_iter().enumerate() {
            let mut device =
                Device::new(index, name, root.path().join(format!("d{index}")), tenant);
            device.location = device
                .location
                .clone()
                .with_planted_defects(super::tenancy::engine_defects(&self.defects));
            let mut clock_rng = SimRng::new(seed, Stream::DeviceClockBase as u64 + index as u64);
            let offset_max = knobs.clock_offset_ms_max;
            let drift_max = knobs.clock_drift_ppm_max;
            device.clock_offset_ms = clock_rng.range(0, 2 * offset_max) as i64 - offset_max as i64;
            device.drift_ppm = clock_rng.range(0, 2 * drift_max) as i64 - drift_max as i64;
            devices.push(device);
        }
        let mut oracle = Oracle::default();
        oracle.hostile_server = self.hostile_server;
        let kill_switch = KillSwitch::new(
            seed,
            knobs.fault(FaultClass::KillAtCrashPoint),
            knobs.fault(FaultClass::KillAtCommit),
            FaultChooser::new(self.fault_selection.clone(), self.record_faults),
        );
        Sim {
            seed,
            planted: self.defects,
            now_ms: EPOCH_MS,
            next_seq: 0,
            queue: BTreeMap::new(),
            devices,
            server,
            entities: registry
                .entities()
                .iter()
                .map(|config| config.name().to_owned())
                .collect(),
            registry,
            tenants,
            kill_switch: Arc::new(Mutex::new(kill_switch)),
            faults: Faults::new(
                seed,
                &knobs,
                FaultChooser::new(self.fault_selection, self.record_faults),
            ),
            paging_window: None,
            latency: SimRng::for_stream(seed, Stream::Network),
            restarts: SimRng::for_stream(seed, Stream::Restarts),
            oracle,
            events: 0,
            server_requests: 0,
            stale_answers_delivered: 0,
            syncs_completed: 0,
            conflicts_stored: 0,
            probes: BTreeMap::new(),
            events_since_server_check: 0,
            delivering: false,
            collect_events: self.collect_events,
            collected: BTreeMap::new(),
            collect_requests: self.collect_requests,
            sent: BTreeMap::new(),
            trace: Trace::new(self.keep_trace),
            operation: String::new(),
            event_log: self.keep_trace.then(Vec::new),
            state_lines: BTreeMap::new(),
            root,
            knobs,
        }
    }
}

/// The registry of a run: `names`, with the knobs' batch sizes and merge option.
pub fn registry_for(names: &[&str], knobs: &Knobs) -> EntityRegistry {
    let mut registry = EntityRegistry::new();
    for name in names {
        let mut config = EntityConfig::new(name).expect("valid entity name");
        config.push_batch_max = knobs.push_batch_max;
        config.pull_page_limit = knobs.pull_page_limit;
        config.auto_merge_fields = knobs.auto_merge_fields;
        registry.register(config).expect("distinct names");
    }
    registry
}
