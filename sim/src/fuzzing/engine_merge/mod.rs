//! The `engine_merge` target: one app on the simulation kernel — a [`Sim`] whose only
//! device is logged in to tenant A — whose requests the target holds and answers itself:
//! with the reference server's answer, a mutated one, arbitrary JSON, or structured
//! hostile push results and pages (`answers.rs`). Around the answers: local writes, other
//! devices' writes straight to the server (the hostile world), conflict resolution,
//! wipes, forces, clock moves and kills (a reopen, or a crash at a named crash point).
//! Every engine call goes through [`Sim::call`], which drains the outputs afterwards, and
//! a kill is the kernel's, which leaves the files as a killed process leaves them, so the
//! engine is driven here exactly as in every other simulation.
//!
//! The oracle is this target's per-step contract — `Engine::check_invariants` after every
//! step, no queued op lost unless an answer or the user settled it ([`check_no_op_lost`]),
//! nothing impossible applied ([`check_nothing_impossible_applied`]: no record changes
//! entity, nor space except by a completed force-from-server of its entity; an answer for
//! one entity touches no record of another; a page naming records of another entity, or
//! moving one to another space outside a force, is refused whole), an answer no longer in
//! flight or delivered twice changes nothing, and afterwards a well-behaved server brings
//! the engine back to idle — plus the kernel oracle's checks
//! that hold whatever a server says (a reopened database passes its invariants). The
//! kernel is told the server is hostile (`SimBuilder::hostile_server`), so the oracle
//! skips only what a lying server may legitimately cause. This module never relaxes a
//! property to make an input pass.

mod answers;
mod input;

pub use input::{
    AnswerInput, CodeInput, ConflictInput, EngineMergeInput, EngineStampInput, HashInput, IdInput,
    LifecycleInput, MutationInput, NumberInput, OtherWriteInput, PageInput, PulledItemInput,
    ResolutionInput, ResultInput, StepInput, WriteInput,
};

use super::{
    decode, entity_name, push_request, push_results, space_name, OperationInput, ENTITIES, FIELDS,
    TENANT_A,
};
use crate::kernel::{token_of, CallError, Called, Failure, Sim, SimBuilder};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use sync_engine::wire::{
    self, Envelope, ErrorCode, PulledItem, SyncPullResponse, SyncPushResponse, SyncPushVariables,
    SyncRequest,
};
use sync_engine::{
    testing, CrashPoint, Engine, QueuedOp, Record, Resolution, Side, SyncEvent, TransportError,
};

const ENGINE_STEPS_MAX: usize = 48;
const ENGINE_SETUP_MAX: usize = 8;
/// Requests a well-behaved server needs at most to bring the engine back to idle.
const QUIET_REQUESTS_MAX: usize = 400;
/// The app: the run's only device.
const APP: usize = 0;
/// Seeds only the engine's entropy (the ids it mints): the input decides everything else.
const SEED: u64 = 7;

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
    /// Every entity's pull cursor, in [`ENTITIES`] order.
    cursors: Vec<Option<String>>,
}

/// An answer the harness delivered, and what the engine must do with it.
struct Answered {
    /// The entity of the request it answers (a push run or a pull is of one entity).
    entity: String,
    /// Why the engine must refuse it, judged by the harness from the page alone.
    refusal: Option<Refusal>,
}

/// A pull page the engine must refuse whole (ARCHITECTURE.md, "What the engine refuses
/// from a server").
#[derive(Debug)]
enum Refusal {
    /// It names a record of another entity, or gives one server id to two records:
    /// refused in every pull.
    Always(String),
    /// It moves a record the app holds to another space: refused unless it is a page of a
    /// confirmed force-from-server, which replaces the entity's records whole.
    UnlessForce(String),
}

struct EngineHarness {
    /// The kernel: the app's device (its requests held for this harness to answer), its
    /// clock, and the reference server the honest answers come from.
    sim: Sim,
    /// Requests the app's current process sent and the harness has not answered, oldest
    /// first.
    outstanding: VecDeque<SyncRequest>,
    /// The newest request the current process sent: the only one that can be in flight.
    newest_request_id: u64,
    /// The process (the device's generation) the outstanding requests belong to: the
    /// answers to a dead process's requests are never delivered to its successor.
    generation: u64,
    delivered: Vec<Value>,
    other_writes: u64,
}

impl EngineHarness {
    fn new() -> EngineHarness {
        let mut sim = SimBuilder::new(SEED)
            .tenants(vec![TENANT_A.to_owned()])
            .device("app", Some(TENANT_A))
            .registry(testing::example_registry())
            .collect_events(true)
            .hostile_server(true)
            .dir_prefix("sync-fuzz-")
            .build();
        sim.hold(APP);
        let mut harness = EngineHarness {
            generation: sim.device(APP).generation,
            sim,
            outstanding: VecDeque::new(),
            newest_request_id: 0,
            delivered: Vec::new(),
            other_writes: 0,
        };
        harness.keep_running();
        // Opening the app starts a sync. The input starts the first sync itself (the
        // corpus is written for an idle engine whose first request answers its setup), so
        // the app-open sync is cancelled before anything else happens.
        harness.call("cancel_sync", |engine| Ok(engine.cancel_sync()?));
        harness.outstanding.clear();
        harness
    }

    fn engine(&self) -> &Engine {
        self.sim
            .engine(APP)
            .expect("the harness reopens the app after every kill")
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            records: self.engine().all_records().expect("read records"),
            ops: self.engine().queued_ops().expect("read queue"),
            cursors: ENTITIES
                .iter()
                .map(|entity| self.engine().cursor(entity).expect("read cursor"))
                .collect(),
        }
    }

    fn check(&self, context: &str) {
        if let Err(problem) = self.engine().check_invariants() {
            panic!("engine invariant broken after {context}: {problem}");
        }
        self.sim.server().check_invariants();
    }

    /// Calls the app's engine through the kernel (which drains its outputs afterwards),
    /// then picks up the requests it sent. A storage error fails the run; a refused input
    /// (`Called::Rejected`) is the app's own mistake and changes nothing; a kill can only
    /// come from a crash point the input armed, and the app is reopened at once.
    fn call<T>(
        &mut self,
        what: &str,
        call: impl FnOnce(&mut Engine) -> Result<T, CallError>,
    ) -> Called<T> {
        let outcome = self.sim.call(APP, call);
        let called = self.settle(what, outcome);
        assert!(
            !matches!(called, Called::NotRunning),
            "{what}: the app was not running"
        );
        called
    }

    /// Takes a kernel verb's outcome: a failure (a storage error, or a check of the
    /// kernel's oracle) fails the run; afterwards the app runs and its new requests are
    /// outstanding.
    fn settle<T>(&mut self, what: &str, outcome: Result<T, Failure>) -> T {
        let value = outcome.unwrap_or_else(|failure| self.fail(what, &failure));
        self.keep_running();
        value
    }

    fn fail(&self, what: &str, failure: &Failure) -> ! {
        panic!(
            "{what} failed ({:?}): {}\nrecent events:\n{}",
            failure.kind,
            failure.message,
            self.sim.recent_trace().join("\n")
        );
    }

    /// Reopens the app if a kill took it down, forgets the requests of a process that is
    /// gone (their answers would be addressed to it), and collects the new requests.
    fn keep_running(&mut self) {
        while !self.sim.device(APP).is_running() {
            // A crash point may fire inside the reopen's own calls (the app-open sync):
            // the app is down again, and reopened again.
            let reopened = self.sim.restart(APP);
            let reopened = reopened.unwrap_or_else(|failure| self.fail("reopen", &failure));
            assert!(reopened, "the logged-in app reopens");
        }
        let generation = self.sim.device(APP).generation;
        if generation != self.generation {
            self.generation = generation;
            self.outstanding.clear();
            self.newest_request_id = 0;
        }
        for request in self.sim.take_held(APP) {
            assert!(
                request.request_id > self.newest_request_id,
                "request ids grow"
            );
            self.newest_request_id = request.request_id;
            self.outstanding.push_back(request);
        }
    }

    fn write(&mut self, write: &WriteInput) {
        let records = self.engine().all_records().expect("read records");
        let pick = |index: u8| -> Option<String> {
            (!records.is_empty()).then(|| {
                records[usize::from(index) % records.len()]
                    .client_id
                    .clone()
            })
        };
        // A local write may be refused for reasons of the app's making; never for storage.
        match write {
            WriteInput::Create {
                entity,
                space,
                data,
            } => {
                let (entity, space, data) = (entity_name(*entity), space_name(*space), data);
                self.call("create", |engine| {
                    Ok(engine.create(entity, space, data.to_value()).map(drop)?)
                });
            }
            WriteInput::Update { record, patch } => {
                if let Some(id) = pick(*record) {
                    self.call("update", |engine| {
                        Ok(engine.update(&id, patch.to_value()).map(drop)?)
                    });
                }
            }
            WriteInput::Delete { record } => {
                if let Some(id) = pick(*record) {
                    self.call("delete", |engine| Ok(engine.delete(&id)?));
                }
            }
        }
    }

    fn step(&mut self, step: &StepInput) {
        let before = self.snapshot();
        let mut settled = Settled::default();
        let mut answered = None;
        self.sim.take_events(APP);
        match step {
            StepInput::Write(write) => self.write(write),
            StepInput::Answer { answer, redeliver } => {
                (settled, answered) = self.answer(answer, *redeliver, &before);
            }
            StepInput::OtherDevice(write) => self.other_device(write, &before),
            StepInput::Resolve {
                conflict,
                resolution,
            } => {
                if let Some(client_id) = self.resolve(*conflict, resolution) {
                    settled.records.insert(client_id);
                }
            }
            StepInput::Lifecycle(lifecycle) => self.lifecycle(lifecycle, &mut settled),
        }
        let mut forced = BTreeSet::new();
        for event in self.sim.take_events(APP) {
            if let SyncEvent::ForceCompleted { entity } = event {
                settled.entities.insert(entity.clone());
                forced.insert(entity);
            }
        }
        let after = self.snapshot();
        check_no_op_lost(&before.ops, &after.ops, &settled, step);
        check_nothing_impossible_applied(&before, &after, &forced, answered.as_ref(), step);
    }

    /// Resolves one open conflict, if there is any; returns its record's client id.
    fn resolve(&mut self, conflict: u8, resolution: &ResolutionInput) -> Option<String> {
        let conflicts = self.engine().list_conflicts().expect("list conflicts");
        if conflicts.is_empty() {
            return None;
        }
        let chosen = &conflicts[usize::from(conflict) % conflicts.len()];
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
            ResolutionInput::MergeValues(data) => Resolution::MergeValues(data.to_map()),
        };
        let id = chosen.id;
        self.call("resolve_conflict", |engine| {
            Ok(engine.resolve_conflict(id, resolution)?)
        });
        Some(chosen.client_id.clone())
    }

    fn lifecycle(&mut self, lifecycle: &LifecycleInput, settled: &mut Settled) {
        match lifecycle {
            LifecycleInput::SyncNow => {
                self.call("sync_now", |engine| Ok(engine.sync_now()?));
            }
            LifecycleInput::Timeout { advance_s } => {
                let until_ms = self.sim.now_ms() + u64::from(*advance_s) * 1000;
                let ran = self.sim.run_until(until_ms);
                self.settle("advancing virtual time", ran);
                self.call("handle_timeout", |engine| Ok(engine.handle_timeout()?));
            }
            LifecycleInput::ClockBack { back_s } => {
                self.sim.clock_jump(APP, -(i64::from(*back_s) * 1000));
                self.call("handle_timeout", |engine| Ok(engine.handle_timeout()?));
            }
            LifecycleInput::Network { online } => {
                let changed = if *online {
                    self.sim.online(APP)
                } else {
                    self.sim.offline(APP, None)
                };
                self.settle("handle_network_change", changed);
            }
            LifecycleInput::Cancel => {
                self.call("cancel_sync", |engine| Ok(engine.cancel_sync()?));
            }
            LifecycleInput::WipeSpace { space } => {
                let space = space_name(*space);
                settled.spaces.insert(space.to_owned());
                self.call("wipe_space", |engine| {
                    Ok(engine.wipe_space(space).map(drop)?)
                });
            }
            LifecycleInput::Force { entity, push } => {
                let (entity, push) = (entity_name(*entity), *push);
                if push {
                    settled.renamed_entities.insert(entity.to_owned());
                }
                self.call("force", |engine| {
                    let plan = if push {
                        engine.plan_force_push_local(entity)
                    } else {
                        engine.plan_force_from_server(entity)
                    };
                    let plan = plan.expect("plan a force for a registered entity");
                    Ok(engine.execute_force(plan.confirm())?)
                });
            }
            LifecycleInput::Reopen => {
                self.sim.crash(APP, None);
                self.keep_running();
            }
            LifecycleInput::Crash { point } => {
                // The named points only: the stored corpus indexes them, and a kill at a
                // transaction boundary is the world's and the sweep's to draw.
                let named: Vec<CrashPoint> = CrashPoint::ALL
                    .into_iter()
                    .filter(|point| !point.is_commit_boundary())
                    .collect();
                let point = named[usize::from(*point) % named.len()];
                self.sim.crash(APP, Some(point));
            }
        }
    }

    fn other_device(&mut self, write: &OtherWriteInput, before: &Snapshot) {
        let rows = self.sim.server().records(TENANT_A);
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
        // Another device of the tenant, straight to the server: the world changes under
        // the app without the kernel's network, as a hostile world may.
        let token = token_of(TENANT_A);
        let request = push_request(&format!("syncPush{entity}"), TENANT_A, &token, vec![item]);
        let response = self.sim.server_mut().handle(&request);
        assert!(
            push_results(&request, &response).is_some(),
            "another device's well-formed write was refused: {response}"
        );
    }

    /// Answers the oldest outstanding request; returns the ops the answer may settle, and
    /// what was answered.
    fn answer(
        &mut self,
        answer: &AnswerInput,
        redeliver: bool,
        before: &Snapshot,
    ) -> (Settled, Option<Answered>) {
        if self.outstanding.is_empty() {
            self.call("sync_now", |engine| Ok(engine.sync_now()?));
        }
        let Some(request) = self.outstanding.pop_front() else {
            return (Settled::default(), None);
        };
        let Some(response) = self.response(answer, &request, before) else {
            return (Settled::default(), None);
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
        let answered = Answered {
            entity: request_entity(&request).to_owned(),
            refusal: if in_flight {
                refusal(&request, &response, before)
            } else {
                None
            },
        };
        let sender = self.generation;
        let what = format!("handle_response on {response:?}");
        let delivered = self.sim.deliver(APP, request.request_id, response.clone());
        self.settle(&what, delivered);
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
        // A kill while storing the answer took its sender along: a second copy would be
        // addressed to a process that no longer exists.
        if redeliver && self.generation == sender {
            let between = self.snapshot();
            let delivered = self.sim.deliver(APP, request.request_id, response);
            self.settle("a duplicate answer is ignored", delivered);
            let after = self.snapshot();
            assert_eq!(
                after.ops, between.ops,
                "a duplicate answer changed the queue"
            );
            assert_eq!(
                after.records, between.records,
                "a duplicate answer changed records"
            );
        }
        (settled, Some(answered))
    }

    /// With a well-behaved server and the network back, the engine settles: every sync
    /// ends within a bounded number of requests, and invariants still hold.
    fn go_quiet(&mut self) {
        self.call("cancel_sync", |engine| Ok(engine.cancel_sync()?));
        self.outstanding.clear();
        let online = self.sim.online(APP);
        self.settle("handle_network_change", online);
        self.call("sync_now", |engine| Ok(engine.sync_now()?));
        for _ in 0..QUIET_REQUESTS_MAX {
            let Some(request) = self.outstanding.pop_front() else {
                break;
            };
            let response = self.sim.server_mut().handle(&request);
            let delivered = self.sim.deliver(APP, request.request_id, Ok(response));
            self.settle("handle_response", delivered);
            self.check("a well-behaved sync");
        }
        let status = self.engine().status().expect("status");
        assert!(
            !status.syncing,
            "the engine did not settle against a well-behaved server within {QUIET_REQUESTS_MAX} requests"
        );
    }
}

/// Which ops an answer to the request in flight may settle, read off the answer alone: a
/// matching push result that is a success or a supersession (a `STALE`/`RECORD_DELETED`
/// with the server's row) settles its own op, and a server row that is deleted settles
/// every op of the record (deletes win), as does a refusal for good of a record the
/// server never had (a push of its op alone refused whole with `VALIDATION` included); a
/// pulled row newer than the local copy settles
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
    let envelope = wire::parse_envelope(&request.operation_name, response);
    // Refused for good, without a server row, a record the server never had: it becomes
    // a local tombstone and its later writes go (they could never apply).
    let never_on_server = |client_id: &str| {
        before
            .records
            .iter()
            .any(|record| record.client_id == client_id && record.base_version == 0)
    };
    if request.operation_name.starts_with("syncPush") {
        let variables =
            <SyncPushVariables as serde::Deserialize>::deserialize(&*request.variables.to_json())
                .expect("the engine's own push variables parse");
        if let (
            Envelope::Error {
                code: Some(ErrorCode::Validation),
                ..
            },
            [item],
        ) = (&envelope, variables.payload.as_slice())
        {
            // A push of one op refused whole is that op refused alone, for good.
            let client_id = item.client_id.clone().expect("the engine sends clientId");
            if never_on_server(&client_id) {
                settled.records.insert(client_id);
            }
        }
        let Envelope::Data(payload) = envelope else {
            return settled;
        };
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
            let refused_for_good = !result.success
                && result.conflict.is_none()
                && result.error_code.is_none_or(|code| !code.is_transient());
            let client_id = item.client_id.clone().expect("the engine sends clientId");
            if refused_for_good && never_on_server(&client_id) {
                settled.records.insert(client_id);
            }
        }
        return settled;
    }
    let Envelope::Data(payload) = envelope else {
        return settled;
    };
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

/// The entity a request is for: every push run and every pull is of one entity.
fn request_entity(request: &SyncRequest) -> &str {
    let name = request.operation_name.as_str();
    name.strip_prefix("syncPush")
        .or_else(|| name.strip_prefix("syncPull"))
        .expect("the engine sends only syncPush* and syncPull*")
}

/// Whether the engine must refuse `response` to the pull `request`, judged by this
/// harness from the page and the records before it (not by asking the engine): a row that
/// names, by client id or server id, a record of another entity; a tombstone naming one;
/// one server id given to two records on the page; or a row that names a record of the
/// page's entity in another space than the row's. `None` for anything else, including
/// pages the engine refuses for other reasons (those apply nothing either).
fn refusal(
    request: &SyncRequest,
    response: &Result<Value, TransportError>,
    before: &Snapshot,
) -> Option<Refusal> {
    let entity = request.operation_name.strip_prefix("syncPull")?;
    let Envelope::Data(payload) =
        wire::parse_envelope(&request.operation_name, response.as_ref().ok()?)
    else {
        return None;
    };
    let page = serde_json::from_value::<SyncPullResponse>(payload).ok()?;
    let items: Vec<PulledItem> = page
        .items
        .iter()
        .map(|item| serde_json::from_value(item.clone()).ok())
        .collect::<Option<_>>()?;
    let mut moved = None;
    let mut claimed: BTreeMap<&str, &str> = BTreeMap::new();
    for item in &items {
        if claimed
            .insert(&item.id, &item.client_id)
            .is_some_and(|first| first != item.client_id)
        {
            return Some(Refusal::Always(format!("server id {} twice", item.id)));
        }
        let named = before.records.iter().filter(|record| {
            record.client_id == item.client_id || record.server_id.as_ref() == Some(&item.id)
        });
        for record in named {
            if record.entity != entity {
                return Some(Refusal::Always(format!(
                    "a {entity} row names {} record {}",
                    record.entity, record.client_id
                )));
            }
            if record.space_id != item.space_id {
                moved = Some(Refusal::UnlessForce(format!(
                    "a {entity} row moves {} from {} to {}",
                    record.client_id, record.space_id, item.space_id
                )));
            }
        }
    }
    for server_id in &page.deleted_ids {
        let named = before
            .records
            .iter()
            .find(|record| record.server_id.as_ref() == Some(server_id) && record.entity != entity);
        if let Some(record) = named {
            return Some(Refusal::Always(format!(
                "a {entity} tombstone names {} record {}",
                record.entity, record.client_id
            )));
        }
    }
    moved
}

/// Nothing impossible is applied by a step: no record changes entity; no record changes
/// space, except by a completed force-from-server of its entity (`forced`), which
/// replaces them all with the server's copy; an answer to a request for one entity
/// creates, changes or removes no record of another; and a page the engine must refuse
/// ([`refusal`]) applies nothing: no record and no cursor changes.
fn check_nothing_impossible_applied(
    before: &Snapshot,
    after: &Snapshot,
    forced: &BTreeSet<String>,
    answered: Option<&Answered>,
    step: &StepInput,
) {
    for record in &before.records {
        let Some(now) = after
            .records
            .iter()
            .find(|now| now.client_id == record.client_id)
        else {
            continue;
        };
        assert_eq!(
            now.entity, record.entity,
            "record {} changed entity in {step:?}",
            record.client_id
        );
        if !forced.contains(&record.entity) {
            assert_eq!(
                now.space_id, record.space_id,
                "record {} moved space in {step:?}",
                record.client_id
            );
        }
    }
    let Some(answered) = answered else {
        return;
    };
    let others = |snapshot: &Snapshot| -> Vec<Record> {
        snapshot
            .records
            .iter()
            .filter(|record| record.entity != answered.entity)
            .cloned()
            .collect()
    };
    assert_eq!(
        others(after),
        others(before),
        "an answer for {} changed records of other entities in {step:?}",
        answered.entity
    );
    let reason = match &answered.refusal {
        Some(Refusal::Always(reason)) => reason,
        Some(Refusal::UnlessForce(reason)) if !forced.contains(&answered.entity) => reason,
        _ => return,
    };
    assert!(
        !forced.contains(&answered.entity),
        "a force completed on a page it must refuse ({reason}) in {step:?}"
    );
    assert_eq!(
        after.records, before.records,
        "a page the engine must refuse ({reason}) changed records in {step:?}"
    );
    assert_eq!(
        after.cursors, before.cursors,
        "a page the engine must refuse ({reason}) moved a cursor in {step:?}"
    );
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
