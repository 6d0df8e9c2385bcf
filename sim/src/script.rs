//! Scripted scenarios: a small line-based language that drives real engines against the
//! reference server step by step, and checks expectations and the world's invariants.
//!
//! A script is parsed once ([`parse`]) and run either exactly as written
//! ([`RunMode::Clean`]) or under a seed ([`RunMode::Faults`]) that injects lost,
//! duplicated, delayed and late messages, server-busy answers, kills between steps and
//! kills at the engine's crash points during syncs. Under faults `sync X` means "drive X
//! until a sync that started in this step completes", retrying through backoff and
//! healing the network after too many attempts, so expectations stay meaningful.
//!
//! Time is virtual and moves only inside `sync`, `wait` and a force: every other step
//! happens at the same virtual millisecond, which is how two devices with equal clocks
//! write concurrently with equal HLC stamps. The driver uses only the engine's public API
//! and never reaches into the server beyond its inspection methods; its failures are
//! [`ScriptFailure`]s naming the line, never panics. The language is documented in
//! `scenarios/README.md`.

use crate::model::{AckedWrite, Model, ServerView};
use crate::rng::{Ratio, SimRng};
use crate::server::{ReferenceServer, ServerFault, ServerReply};
use crate::world::{
    device_canonical, first_difference, panic_text, server_canonical, temp_root, token_of, EPOCH_MS,
};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use sync_engine::wire::{ErrorCode, SyncRequest};
use sync_engine::{
    CrashHook, CrashPoint, DbLocation, Engine, EngineOptions, EntityConfig, EntityRegistry, Env,
    ManualClock, OpStatus, Resolution, Side, SyncError, SyncEvent, TenantId, TransportError,
    WriteError,
};

/// How long a request may go unanswered before the device sees a timeout.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Sync attempts within one `sync` step before the network is healed for the step.
const SYNC_ATTEMPTS_BEFORE_HEAL: usize = 12;
const SYNC_ATTEMPTS_MAX: usize = 40;
const SETTLE_ROUNDS_MAX: usize = 8;
const EVENTS_PER_STEP_MAX: u64 = 2_000_000;

/// One parsed line.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1-based line number in the file.
    pub line: usize,
    pub text: String,
    command: Command,
}

/// A parsed scenario.
#[derive(Clone, Debug)]
pub struct Script {
    pub name: String,
    pub steps: Vec<Step>,
}

/// How to run a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Exactly as written: no faults.
    Clean,
    /// With faults drawn from this seed between and inside the steps.
    Faults { seed: u64 },
}

/// Where and why a scenario failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptFailure {
    /// 1-based line; 0 means "after the last step" (the global invariants).
    pub line: usize,
    pub text: String,
    pub message: String,
}

/// What a successful run observed (for the runner's summary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub steps: usize,
    pub skipped_expectations: usize,
    pub faults_fired: u64,
    pub kills: u64,
}

#[derive(Clone, Debug)]
enum Who {
    Device(String),
    Server,
}

#[derive(Clone, Debug)]
enum Choice {
    KeepLocal,
    UseServer,
    Merge(BTreeMap<String, Side>),
}

#[derive(Clone, Debug)]
enum Command {
    Tenants(Vec<String>),
    Devices(Vec<(String, String)>),
    Entities(Vec<String>),
    PushBatch(usize),
    PullPage(usize),
    SyncAfterWrite(bool),
    Create {
        device: String,
        count: usize,
        entity: String,
        space: String,
        alias: Option<String>,
        data: Map<String, Value>,
    },
    Update {
        device: String,
        alias: String,
        patch: Map<String, Value>,
    },
    Delete {
        device: String,
        alias: String,
    },
    Online(String, bool),
    AppOpen(String),
    Kill(String),
    Restart(String),
    CrashAt(String, CrashPoint),
    Clock(String, i64),
    Resolve {
        device: String,
        alias: String,
        choice: Choice,
    },
    Force {
        device: String,
        entity: String,
        from_server: bool,
    },
    Wipe(String, String),
    Logout(String),
    Login(String, String),
    SyncStart(String),
    Sync(Vec<String>),
    Wait(u64),
    ResetCounters,
    Reject(String),
    Expect(Expectation),
}

#[derive(Clone, Debug)]
enum Expectation {
    Count {
        who: Who,
        tenant: Option<String>,
        entity: String,
        count: usize,
    },
    Field {
        who: Who,
        alias: String,
        field: String,
        value: Value,
    },
    Deleted(Who, String),
    Exists(Who, String),
    Conflict {
        device: String,
        alias: String,
        fields: Vec<String>,
    },
    NoConflicts(String),
    QueueEmpty(String),
    Pending(String, u64),
    Failed(String, u64),
    Requests(String, String, u64),
    SyncsStarted(String, u64),
    MaxInFlight(String, usize),
    CannotAccess(String, String),
    Converged,
    NoDuplicates,
}

impl Expectation {
    /// Expectations about exact intermediate counts that faults legitimately change
    /// (retries add requests and syncs; restarts start syncs). Skipped in fault runs.
    fn exact_only(&self) -> bool {
        matches!(
            self,
            Expectation::Requests(..) | Expectation::SyncsStarted(..) | Expectation::Pending(..)
        )
    }
}

// ---- parsing ------------------------------------------------------------------------------

/// Parses a scenario; errors name the line.
pub fn parse(name: &str, text: &str) -> Result<Script, ScriptFailure> {
    let mut steps = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let without_comment = strip_comment(raw).trim();
        if without_comment.is_empty() {
            continue;
        }
        let command = parse_line(without_comment).map_err(|message| ScriptFailure {
            line,
            text: without_comment.to_owned(),
            message: format!("cannot parse: {message}"),
        })?;
        steps.push(Step {
            line,
            text: without_comment.to_owned(),
            command,
        });
    }
    Ok(Script {
        name: name.to_owned(),
        steps,
    })
}

/// `#` starts a comment unless it sits inside a JSON string.
fn strip_comment(raw: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in raw.char_indices() {
        match c {
            '\\' if in_string => escaped = !escaped,
            '"' if !escaped => in_string = !in_string,
            '#' if !in_string => return &raw[..at],
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    raw
}

fn object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, found {other}")),
        Err(error) => Err(format!("bad JSON {text:?}: {error}")),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("expected a number, found {text:?}"))
}

fn crash_point(name: &str) -> Result<CrashPoint, String> {
    CrashPoint::ALL
        .into_iter()
        .find(|point| point.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = CrashPoint::ALL.iter().map(|point| point.name()).collect();
            format!("unknown crash point {name:?} (one of {})", names.join(", "))
        })
}

fn parse_line(line: &str) -> Result<Command, String> {
    // A JSON object, if any, runs from the first `{` to the end of the line.
    let (head, json) = match line.find('{') {
        Some(at) => (&line[..at], Some(line[at..].trim())),
        None => (line, None),
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let no_json = |command: Command| {
        if json.is_some() {
            Err("unexpected JSON object".to_owned())
        } else {
            Ok(command)
        }
    };
    let names = |rest: &[&str]| rest.iter().map(|word| (*word).to_owned()).collect();
    match words.as_slice() {
        ["tenants", rest @ ..] if !rest.is_empty() => no_json(Command::Tenants(names(rest))),
        ["entities", rest @ ..] if !rest.is_empty() => no_json(Command::Entities(names(rest))),
        ["devices", rest @ ..] if !rest.is_empty() => {
            let mut devices = Vec::new();
            for word in rest {
                let (device, tenant) = word
                    .split_once(':')
                    .ok_or_else(|| format!("expected device:tenant, found {word:?}"))?;
                devices.push((device.to_owned(), tenant.to_owned()));
            }
            no_json(Command::Devices(devices))
        }
        ["config", "push-batch", n] => no_json(Command::PushBatch(number(n)?)),
        ["config", "pull-page", n] => no_json(Command::PullPage(number(n)?)),
        ["config", "sync-after-write", on @ ("on" | "off")] => {
            no_json(Command::SyncAfterWrite(*on == "on"))
        }
        ["sync", rest @ ..] if !rest.is_empty() => no_json(Command::Sync(names(rest))),
        ["wait", ms] => no_json(Command::Wait(number(ms)?)),
        ["reset-counters"] => no_json(Command::ResetCounters),
        ["server", "reject", alias] => no_json(Command::Reject((*alias).to_owned())),
        ["expect", rest @ ..] => parse_expectation(rest, json),
        [device, verb, rest @ ..] => parse_device_step(device, verb, rest, json),
        _ => Err("unknown command".to_owned()),
    }
}

fn parse_device_step(
    device: &str,
    verb: &str,
    rest: &[&str],
    json: Option<&str>,
) -> Result<Command, String> {
    let device = device.to_owned();
    let data = || json.map_or(Ok(Map::new()), object);
    let plain = |command: Command| {
        if json.is_some() {
            Err("unexpected JSON object".to_owned())
        } else {
            Ok(command)
        }
    };
    match (verb, rest) {
        ("create", rest) => {
            let (count, rest) = match rest.first().map(|word| word.parse::<usize>()) {
                Some(Ok(count)) => (count, &rest[1..]),
                _ => (1, rest),
            };
            let (entity, space, alias) = match rest {
                [entity, "in", space] => (*entity, *space, None),
                [entity, "in", space, "as", alias] => (*entity, *space, Some((*alias).to_owned())),
                _ => {
                    return Err(
                        "expected: DEVICE create [N] ENTITY in SPACE [as ALIAS] [{json}]"
                            .to_owned(),
                    )
                }
            };
            Ok(Command::Create {
                device,
                count,
                entity: entity.to_owned(),
                space: space.to_owned(),
                alias,
                data: data()?,
            })
        }
        ("update", [alias]) => Ok(Command::Update {
            device,
            alias: (*alias).to_owned(),
            patch: json
                .ok_or("expected: DEVICE update ALIAS {json}")
                .and_then(|text| object(text).map_err(|_| "bad JSON"))
                .map_err(str::to_owned)?,
        }),
        ("delete", [alias]) => plain(Command::Delete {
            device,
            alias: (*alias).to_owned(),
        }),
        ("offline", []) => plain(Command::Online(device, false)),
        ("online" | "network-regained", []) => plain(Command::Online(device, true)),
        ("app-open", []) => plain(Command::AppOpen(device)),
        ("kill", []) => plain(Command::Kill(device)),
        ("restart", []) => plain(Command::Restart(device)),
        ("crash-at", [point]) => plain(Command::CrashAt(device, crash_point(point)?)),
        ("clock", [delta]) => {
            let delta: i64 = number(delta.trim_start_matches('+'))?;
            plain(Command::Clock(device, delta))
        }
        ("resolve", [alias, choice, fields @ ..]) => {
            let choice = match (*choice, fields) {
                ("keep-local", []) => Choice::KeepLocal,
                ("use-server", []) => Choice::UseServer,
                ("merge", fields) if !fields.is_empty() => {
                    let mut sides = BTreeMap::new();
                    for field in fields {
                        let side = match field.split_once('=') {
                            Some((name, "local")) => (name, Side::Local),
                            Some((name, "server")) => (name, Side::Server),
                            _ => {
                                return Err(format!("expected FIELD=local|server, found {field:?}"))
                            }
                        };
                        sides.insert(side.0.to_owned(), side.1);
                    }
                    Choice::Merge(sides)
                }
                _ => {
                    return Err(
                        "expected keep-local, use-server or merge FIELD=local|server ..."
                            .to_owned(),
                    )
                }
            };
            plain(Command::Resolve {
                device,
                alias: (*alias).to_owned(),
                choice,
            })
        }
        ("force-from-server" | "force-push-local", [entity]) => plain(Command::Force {
            device,
            entity: (*entity).to_owned(),
            from_server: verb == "force-from-server",
        }),
        ("wipe", [space]) => plain(Command::Wipe(device, (*space).to_owned())),
        ("logout", []) => plain(Command::Logout(device)),
        ("login", [tenant]) => plain(Command::Login(device, (*tenant).to_owned())),
        ("sync-start", []) => plain(Command::SyncStart(device)),
        _ => Err(format!("unknown device command {verb:?}")),
    }
}

fn parse_expectation(words: &[&str], json: Option<&str>) -> Result<Command, String> {
    let who = |name: &str| {
        if name == "server" {
            Who::Server
        } else {
            Who::Device(name.to_owned())
        }
    };
    let expectation = match words {
        ["converged"] => Expectation::Converged,
        ["no-duplicates"] => Expectation::NoDuplicates,
        ["server", tenant, "count", entity, n] => Expectation::Count {
            who: Who::Server,
            tenant: Some((*tenant).to_owned()),
            entity: (*entity).to_owned(),
            count: number(n)?,
        },
        [device, "count", entity, n] => Expectation::Count {
            who: who(device),
            tenant: None,
            entity: (*entity).to_owned(),
            count: number(n)?,
        },
        [device, "conflict", alias, "fields", fields @ ..] => Expectation::Conflict {
            device: (*device).to_owned(),
            alias: (*alias).to_owned(),
            fields: fields
                .iter()
                .flat_map(|field| field.split(','))
                .filter(|field| !field.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        [device, "no-conflicts"] => Expectation::NoConflicts((*device).to_owned()),
        [device, "queue", "empty"] => Expectation::QueueEmpty((*device).to_owned()),
        [device, "pending", n] => Expectation::Pending((*device).to_owned(), number(n)?),
        [device, "failed", n] => Expectation::Failed((*device).to_owned(), number(n)?),
        [device, "requests", operation, n] => {
            Expectation::Requests((*device).to_owned(), (*operation).to_owned(), number(n)?)
        }
        [device, "syncs-started", n] => Expectation::SyncsStarted((*device).to_owned(), number(n)?),
        [device, "max-in-flight", n] => Expectation::MaxInFlight((*device).to_owned(), number(n)?),
        [device, "cannot-access", tenant] => {
            Expectation::CannotAccess((*device).to_owned(), (*tenant).to_owned())
        }
        [name, alias, "deleted"] => Expectation::Deleted(who(name), (*alias).to_owned()),
        [name, alias, "exists"] => Expectation::Exists(who(name), (*alias).to_owned()),
        [name, alias, field, "=", value @ ..] => {
            let text = match json {
                Some(json) => format!("{} {json}", value.join(" ")),
                None => value.join(" "),
            };
            let value = serde_json::from_str(text.trim())
                .map_err(|error| format!("bad JSON value {text:?}: {error}"))?;
            return Ok(Command::Expect(Expectation::Field {
                who: who(name),
                alias: (*alias).to_owned(),
                field: (*field).to_owned(),
                value,
            }));
        }
        _ => return Err("unknown expectation".to_owned()),
    };
    if json.is_some() {
        return Err("unexpected JSON object".to_owned());
    }
    Ok(Command::Expect(expectation))
}

// ---- running ------------------------------------------------------------------------------

/// Runs a parsed script once.
pub fn run(script: &Script, mode: RunMode) -> Result<RunSummary, ScriptFailure> {
    let mut runner = Runner::new(mode);
    let trace = std::env::var_os("SCENARIO_TRACE").is_some();
    for step in &script.steps {
        if trace {
            eprintln!("[{mode:?}] line {}: {}", step.line, step.text);
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner.before_step(step)?;
            runner.step(step)
        }));
        let result = match outcome {
            Ok(result) => result,
            Err(payload) => Err(format!("panic: {}", panic_text(&payload))),
        };
        result.map_err(|message| ScriptFailure {
            line: step.line,
            text: step.text.clone(),
            message,
        })?;
        runner.summary.steps += 1;
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.finish()));
    let result = match outcome {
        Ok(result) => result,
        Err(payload) => Err(format!("panic: {}", panic_text(&payload))),
    };
    result.map_err(|message| ScriptFailure {
        line: 0,
        text: "after the last step: settle every device, then check the global invariants"
            .to_owned(),
        message,
    })?;
    Ok(runner.summary)
}

#[derive(Debug)]
enum Event {
    Timer {
        device: usize,
        generation: u64,
    },
    Arrival {
        device: usize,
        /// The sender's process: a restarted engine reuses request ids, so an answer
        /// must never reach a newer process.
        generation: u64,
        request: Box<SyncRequest>,
        fate: Fate,
    },
    Delivery {
        device: usize,
        generation: u64,
        request_id: u64,
        response: Result<Value, TransportError>,
    },
}

#[derive(Clone, Copy, Debug)]
enum Fate {
    Normal { return_ms: u64 },
    Busy { return_ms: u64 },
    ResponseLost,
    Late { late_by_ms: u64 },
}

/// Crash-point kills: random ones while faults are on and armed, plus one-shot ones a
/// script asks for with `crash-at`.
struct HookState {
    rng: SimRng,
    rate: Ratio,
    armed: bool,
    one_shot: BTreeMap<usize, CrashPoint>,
}

struct ScriptHook {
    device: usize,
    state: Rc<RefCell<HookState>>,
}

impl CrashHook for ScriptHook {
    fn should_crash(&mut self, point: CrashPoint) -> bool {
        let mut state = self.state.borrow_mut();
        if state.one_shot.get(&self.device) == Some(&point) {
            state.one_shot.remove(&self.device);
            return true;
        }
        let rate = state.rate;
        state.armed && state.rng.chance(rate)
    }
}

struct Dev {
    name: String,
    dir: std::path::PathBuf,
    clock: ManualClock,
    clock_offset_ms: i64,
    tenant: Option<String>,
    engine: Option<Engine>,
    generation: u64,
    app_online: bool,
    timer_at: Option<u64>,
    /// Numbers of syncs: the last one started, the last one completed.
    sync_started_seq: u64,
    sync_completed_seq: u64,
    // Counters since the last `reset-counters`.
    requests: BTreeMap<String, u64>,
    syncs_started: u64,
    max_in_flight: usize,
    in_flight: BTreeSet<u64>,
}

struct Runner {
    faults: Option<SimRng>,
    /// Faults are paused (a step healed the network, or the final settle).
    healed: bool,
    now_ms: u64,
    next_seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    tenants: Vec<String>,
    entities: Vec<String>,
    push_batch: usize,
    pull_page: usize,
    sync_after_write: bool,
    registry: Option<EntityRegistry>,
    server: Option<ReferenceServer>,
    devices: Vec<Dev>,
    /// alias → (tenant, client id)
    aliases: BTreeMap<String, (String, String)>,
    rejected: BTreeSet<String>,
    model: Model,
    hook: Rc<RefCell<HookState>>,
    summary: RunSummary,
    events_this_step: u64,
    root: tempfile::TempDir,
}

impl Runner {
    fn new(mode: RunMode) -> Runner {
        let (faults, hook_rng) = match mode {
            RunMode::Clean => (None, SimRng::new(0, 1)),
            RunMode::Faults { seed } => (Some(SimRng::new(seed, 0)), SimRng::new(seed, 1)),
        };
        let hook = HookState {
            rng: hook_rng,
            rate: if faults.is_some() {
                Ratio::new(1, 30)
            } else {
                Ratio::ZERO
            },
            armed: false,
            one_shot: BTreeMap::new(),
        };
        Runner {
            faults,
            healed: false,
            now_ms: EPOCH_MS,
            next_seq: 0,
            queue: BTreeMap::new(),
            tenants: Vec::new(),
            entities: vec![
                "Space".to_owned(),
                "Group".to_owned(),
                "Identity".to_owned(),
            ],
            push_batch: sync_engine::registry::PUSH_BATCH_MAX_DEFAULT,
            pull_page: sync_engine::registry::PULL_PAGE_LIMIT_DEFAULT,
            sync_after_write: false,
            registry: None,
            server: None,
            devices: Vec::new(),
            aliases: BTreeMap::new(),
            rejected: BTreeSet::new(),
            model: Model::default(),
            hook: Rc::new(RefCell::new(hook)),
            summary: RunSummary::default(),
            events_this_step: 0,
            root: temp_root("scenario-"),
        }
    }

    fn faults_active(&self) -> bool {
        self.faults.is_some() && !self.healed
    }

    fn server(&mut self) -> &mut ReferenceServer {
        self.server
            .as_mut()
            .expect("the server exists once devices are declared")
    }

    fn device(&self, name: &str) -> Result<usize, String> {
        self.devices
            .iter()
            .position(|device| device.name == name)
            .ok_or_else(|| format!("unknown device {name:?}"))
    }

    fn alias(&self, alias: &str) -> Result<(String, String), String> {
        self.aliases
            .get(alias)
            .cloned()
            .ok_or_else(|| format!("unknown record alias {alias:?}"))
    }

    fn engine(&self, index: usize) -> Result<&Engine, String> {
        self.devices[index]
            .engine
            .as_ref()
            .ok_or_else(|| format!("device {} is not running", self.devices[index].name))
    }

    /// In fault runs, before each action step: sometimes kill a running device and
    /// restart it at once (the step then runs on a freshly reopened engine).
    fn before_step(&mut self, step: &Step) -> Result<(), String> {
        self.healed = false;
        self.events_this_step = 0;
        // No kill right before a force: the restart's app-open sync would put local
        // changes on the wire, and a force cannot call back a push already sent.
        let action = !matches!(
            step.command,
            Command::Expect(_)
                | Command::Force { .. }
                | Command::Tenants(_)
                | Command::Devices(_)
                | Command::Entities(_)
                | Command::PushBatch(_)
                | Command::PullPage(_)
                | Command::SyncAfterWrite(_)
        );
        let Some(rng) = self.faults.as_mut() else {
            return Ok(());
        };
        if !action || !rng.chance(Ratio::new(1, 5)) {
            return Ok(());
        }
        let running: Vec<usize> = (0..self.devices.len())
            .filter(|index| self.devices[*index].engine.is_some())
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        let victim = running[rng.index(running.len())];
        self.summary.kills += 1;
        self.kill(victim);
        self.open_engine(victim)
    }

    fn registry(&self) -> EntityRegistry {
        let mut registry = EntityRegistry::new();
        for name in &self.entities {
            let mut config = EntityConfig::new(name).expect("valid entity name");
            config.push_batch_max = self.push_batch;
            config.pull_page_limit = self.pull_page;
            registry.register(config).expect("distinct entity names");
        }
        registry
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        let setup_done = self.server.is_some();
        match &step.command {
            Command::Tenants(_)
            | Command::Entities(_)
            | Command::PushBatch(_)
            | Command::PullPage(_)
            | Command::SyncAfterWrite(_)
                if setup_done =>
            {
                return Err("setup commands must come before `devices`".to_owned())
            }
            Command::Devices(_) | Command::Tenants(_) | Command::Entities(_) => {}
            Command::PushBatch(_) | Command::PullPage(_) | Command::SyncAfterWrite(_) => {}
            _ if !setup_done => return Err("declare `tenants` and `devices` first".to_owned()),
            _ => {}
        }
        match &step.command {
            Command::Tenants(tenants) => {
                for tenant in tenants {
                    TenantId::parse(tenant).map_err(|error| error.to_string())?;
                }
                self.tenants.clone_from(tenants);
                Ok(())
            }
            Command::Entities(entities) => {
                self.entities.clone_from(entities);
                Ok(())
            }
            Command::PushBatch(n) => {
                self.push_batch = *n;
                Ok(())
            }
            Command::PullPage(n) => {
                self.pull_page = *n;
                Ok(())
            }
            Command::SyncAfterWrite(on) => {
                self.sync_after_write = *on;
                Ok(())
            }
            Command::Devices(devices) => self.declare_devices(devices),
            Command::Create {
                device,
                count,
                entity,
                space,
                alias,
                data,
            } => self.create(device, *count, entity, space, alias.as_deref(), data),
            Command::Update {
                device,
                alias,
                patch,
            } => {
                let index = self.device(device)?;
                let (_, client_id) = self.alias(alias)?;
                let patch = Value::Object(patch.clone());
                if self
                    .call_write(index, |engine| engine.update(&client_id, patch))?
                    .is_some()
                {
                    self.acknowledge(index, &client_id)?;
                }
                Ok(())
            }
            Command::Delete { device, alias } => {
                let index = self.device(device)?;
                let (_, client_id) = self.alias(alias)?;
                if self
                    .call_write(index, |engine| engine.delete(&client_id))?
                    .is_some()
                {
                    self.acknowledge(index, &client_id)?;
                }
                Ok(())
            }
            Command::Online(device, online) => {
                let index = self.device(device)?;
                let online = *online;
                self.devices[index].app_online = online;
                self.call_sync(index, |engine| engine.handle_network_change(online))
            }
            Command::AppOpen(device) => {
                let index = self.device(device)?;
                self.call_sync(index, Engine::handle_app_open)
            }
            Command::Kill(device) => {
                let index = self.device(device)?;
                self.engine(index)?;
                self.kill(index);
                Ok(())
            }
            Command::Restart(device) => {
                let index = self.device(device)?;
                if self.devices[index].engine.is_some() {
                    return Err(format!("device {device} is running; kill it first"));
                }
                self.open_engine(index)
            }
            Command::CrashAt(device, point) => {
                let index = self.device(device)?;
                self.hook.borrow_mut().one_shot.insert(index, *point);
                Ok(())
            }
            Command::Clock(device, delta_ms) => {
                let index = self.device(device)?;
                self.devices[index].clock_offset_ms += delta_ms;
                Ok(())
            }
            Command::Resolve {
                device,
                alias,
                choice,
            } => self.resolve(device, alias, choice),
            Command::Force {
                device,
                entity,
                from_server,
            } => self.force(device, entity, *from_server),
            Command::Wipe(device, space) => {
                let index = self.device(device)?;
                let tenant = self.tenant_of(index)?;
                self.model.discard_device_space(index, &tenant, space);
                self.call_write(index, |engine| engine.wipe_space(space))?;
                Ok(())
            }
            Command::Logout(device) => self.logout(device),
            Command::Login(device, tenant) => {
                let index = self.device(device)?;
                if self.devices[index].tenant.is_some() {
                    return Err(format!("device {device} is logged in; log out first"));
                }
                if !self.tenants.contains(tenant) {
                    return Err(format!("unknown tenant {tenant:?}"));
                }
                self.devices[index].tenant = Some(tenant.clone());
                self.open_engine(index)
            }
            Command::SyncStart(device) => {
                let index = self.device(device)?;
                self.engine(index)?;
                self.call_sync(index, Engine::sync_now)
            }
            Command::Sync(devices) => {
                for device in devices {
                    let index = self.device(device)?;
                    self.sync_until_done(index)?;
                }
                Ok(())
            }
            Command::Wait(ms) => {
                let until = self.now_ms + ms;
                self.run_until(|runner| runner.next_event_at().is_some_and(|at| at <= until))?;
                self.now_ms = until;
                Ok(())
            }
            Command::ResetCounters => {
                for device in &mut self.devices {
                    device.requests.clear();
                    device.syncs_started = 0;
                    device.max_in_flight = device.in_flight.len();
                }
                Ok(())
            }
            Command::Reject(alias) => {
                let (_, client_id) = self.alias(alias)?;
                self.rejected.insert(client_id);
                Ok(())
            }
            Command::Expect(expectation) => {
                if self.faults.is_some() && expectation.exact_only() {
                    self.summary.skipped_expectations += 1;
                    return Ok(());
                }
                self.check(expectation)
            }
        }
    }

    fn declare_devices(&mut self, devices: &[(String, String)]) -> Result<(), String> {
        if self.tenants.is_empty() {
            return Err("declare `tenants` before `devices`".to_owned());
        }
        if self.server.is_none() {
            let registry = self.registry();
            let mut server = ReferenceServer::new(registry.clone());
            for tenant in &self.tenants {
                server.add_tenant_token(tenant, &token_of(tenant));
            }
            self.server = Some(server);
            self.registry = Some(registry);
        }
        for (name, tenant) in devices {
            if self.device(name).is_ok() {
                return Err(format!("device {name:?} declared twice"));
            }
            if !self.tenants.contains(tenant) {
                return Err(format!("unknown tenant {tenant:?}"));
            }
            if matches!(
                name.as_str(),
                "server" | "sync" | "wait" | "expect" | "config"
            ) {
                return Err(format!("{name:?} is a keyword, not a device name"));
            }
            let index = self.devices.len();
            self.devices.push(Dev {
                name: name.clone(),
                dir: self.root.path().join(format!("d{index}")),
                clock: ManualClock::new(self.now_ms),
                clock_offset_ms: 0,
                tenant: Some(tenant.clone()),
                engine: None,
                generation: 0,
                app_online: true,
                timer_at: None,
                sync_started_seq: 0,
                sync_completed_seq: 0,
                requests: BTreeMap::new(),
                syncs_started: 0,
                max_in_flight: 0,
                in_flight: BTreeSet::new(),
            });
            self.open_engine(index)?;
        }
        Ok(())
    }

    fn tenant_of(&self, index: usize) -> Result<String, String> {
        self.devices[index]
            .tenant
            .clone()
            .ok_or_else(|| format!("device {} is logged out", self.devices[index].name))
    }

    fn device_ms(&self, index: usize) -> u64 {
        (self.now_ms as i64 + self.devices[index].clock_offset_ms).max(0) as u64
    }

    // ---- engine plumbing ------------------------------------------------------------------

    fn open_engine(&mut self, index: usize) -> Result<(), String> {
        let tenant = self.tenant_of(index)?;
        let device_ms = self.device_ms(index);
        let seed = self.devices[index].generation;
        let device = &mut self.devices[index];
        assert!(device.engine.is_none());
        device.generation += 1;
        device.timer_at = None;
        device.in_flight.clear();
        device.clock.set_ms(device_ms);
        let entropy = SimRng::new(seed, 1_000 + index as u64);
        let mut options = EngineOptions::new(
            DbLocation::new(&device.dir),
            TenantId::parse(&tenant).map_err(|error| error.to_string())?,
            self.registry.clone().expect("registry"),
        );
        options.sync_after_write = self.sync_after_write;
        let mut engine = Engine::open(options, Env::new(device.clock.clone(), entropy))
            .map_err(|error| format!("{}: opening the database failed: {error}", device.name))?;
        engine
            .check_invariants()
            .map_err(|message| format!("{} after reopen: {message}", device.name))?;
        engine.set_crash_hook(Box::new(ScriptHook {
            device: index,
            state: Rc::clone(&self.hook),
        }));
        let app_online = device.app_online;
        device.engine = Some(engine);
        let token = token_of(&tenant);
        self.call_write(index, |engine| engine.set_auth_token(&token))?;
        if !app_online {
            self.call_sync(index, |engine| engine.handle_network_change(false))?;
        }
        self.call_sync(index, Engine::handle_app_open)
    }

    fn kill(&mut self, index: usize) {
        let device = &mut self.devices[index];
        if std::env::var_os("SCENARIO_TRACE").is_some() {
            eprintln!("  {} killed @{}", device.name, self.now_ms - EPOCH_MS);
        }
        device.engine = None;
        device.generation += 1;
        device.timer_at = None;
        device.in_flight.clear();
    }

    /// A crash-point kill: the app process dies and the user opens it again at once.
    fn crashed(&mut self, index: usize) -> Result<(), String> {
        self.summary.kills += 1;
        self.kill(index);
        self.open_engine(index)
    }

    fn call_write<T>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Engine) -> Result<T, WriteError>,
    ) -> Result<Option<T>, String> {
        let device_ms = self.device_ms(index);
        let device = &mut self.devices[index];
        device.clock.set_ms(device_ms);
        let name = device.name.clone();
        let engine = device
            .engine
            .as_mut()
            .ok_or_else(|| format!("device {name} is not running"))?;
        match f(engine) {
            Ok(value) => {
                self.drain(index)?;
                Ok(Some(value))
            }
            Err(WriteError::Killed(_)) => {
                self.crashed(index)?;
                Ok(None)
            }
            Err(error) => Err(format!("{name}: the engine refused: {error}")),
        }
    }

    fn call_sync(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Engine) -> Result<(), SyncError>,
    ) -> Result<(), String> {
        let device_ms = self.device_ms(index);
        let device = &mut self.devices[index];
        device.clock.set_ms(device_ms);
        let name = device.name.clone();
        let Some(engine) = device.engine.as_mut() else {
            return Err(format!("device {name} is not running"));
        };
        match f(engine) {
            Ok(()) => self.drain(index),
            Err(SyncError::Killed(_)) => self.crashed(index),
            Err(error) => Err(format!("{name}: sync error: {error}")),
        }
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.queue
            .insert((at_ms.max(self.now_ms), self.next_seq), event);
        self.next_seq += 1;
    }

    /// After every input, drain the outputs: requests, events, the next timer.
    fn drain(&mut self, index: usize) -> Result<(), String> {
        let now_ms = self.now_ms;
        let device_ms = self.device_ms(index);
        let device = &mut self.devices[index];
        let Some(engine) = device.engine.as_mut() else {
            return Ok(());
        };
        let requests: Vec<SyncRequest> = std::iter::from_fn(|| engine.poll_request()).collect();
        let events: Vec<SyncEvent> = std::iter::from_fn(|| engine.poll_event()).collect();
        let timer_at = engine
            .poll_timeout()
            .map(|deadline| now_ms + deadline.saturating_sub(device_ms));
        let generation = device.generation;
        if let Some(at_ms) = timer_at.filter(|at_ms| device.timer_at != Some(*at_ms)) {
            device.timer_at = Some(at_ms);
            self.schedule(
                at_ms,
                Event::Timer {
                    device: index,
                    generation,
                },
            );
        }
        for event in events {
            self.engine_event(index, event)?;
        }
        for request in requests {
            self.send(index, request);
        }
        Ok(())
    }

    fn engine_event(&mut self, index: usize, event: SyncEvent) -> Result<(), String> {
        let device = &mut self.devices[index];
        if std::env::var_os("SCENARIO_TRACE").is_some() {
            eprintln!("  {} @{}: {event:?}", device.name, self.now_ms - EPOCH_MS);
        }
        let tenant = device.tenant.clone().unwrap_or_default();
        match event {
            SyncEvent::SyncStarted { .. } => {
                device.sync_started_seq += 1;
                device.syncs_started += 1;
            }
            SyncEvent::SyncCompleted => device.sync_completed_seq = device.sync_started_seq,
            SyncEvent::OpFailed { client_id, .. } => {
                self.model
                    .discard_record(index, &tenant, &client_id, "reported permanent failure");
            }
            SyncEvent::RepairStarted { entity } => {
                return Err(format!(
                    "silent divergence: {}'s copy of {entity} disagreed with the server's versionHash",
                    device.name
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn draw_fate(&mut self) -> (Option<u64>, Fate, Option<u64>) {
        let active = self.faults_active();
        let Some(rng) = self.faults.as_mut().filter(|_| active) else {
            return (Some(5), Fate::Normal { return_ms: 5 }, None);
        };
        let mut fired = 0;
        let latency = |rng: &mut SimRng| {
            if rng.chance(Ratio::new(1, 8)) {
                rng.range(500, 3_000)
            } else {
                rng.range(1, 20)
            }
        };
        if rng.chance(Ratio::new(1, 12)) {
            self.summary.faults_fired += 1;
            return (None, Fate::ResponseLost, None);
        }
        let arrive_ms = latency(rng);
        let fate = if rng.chance(Ratio::new(1, 12)) {
            fired += 1;
            Fate::Busy {
                return_ms: latency(rng),
            }
        } else if rng.chance(Ratio::new(1, 12)) {
            fired += 1;
            Fate::ResponseLost
        } else if rng.chance(Ratio::new(1, 15)) {
            fired += 1;
            Fate::Late {
                late_by_ms: rng.range(1, 5_000),
            }
        } else {
            Fate::Normal {
                return_ms: latency(rng),
            }
        };
        let duplicate = rng.chance(Ratio::new(1, 10)).then(|| rng.range(1, 2_000));
        if duplicate.is_some() {
            fired += 1;
        }
        self.summary.faults_fired += fired;
        (Some(arrive_ms), fate, duplicate)
    }

    fn send(&mut self, index: usize, request: SyncRequest) {
        let device = &mut self.devices[index];
        *device
            .requests
            .entry(request.operation_name.clone())
            .or_insert(0) += 1;
        device.in_flight.insert(request.request_id);
        device.max_in_flight = device.max_in_flight.max(device.in_flight.len());
        let generation = device.generation;
        let (arrive_ms, fate, duplicate) = self.draw_fate();
        let Some(arrive_ms) = arrive_ms else {
            // Lost on the way: the device times out.
            let event = Event::Delivery {
                device: index,
                generation,
                request_id: request.request_id,
                response: Err(TransportError::timeout("request lost")),
            };
            self.schedule(self.now_ms + REQUEST_TIMEOUT_MS, event);
            return;
        };
        if let Some(after_ms) = duplicate {
            let copy = Event::Arrival {
                device: index,
                generation,
                request: Box::new(request.clone()),
                fate: Fate::Normal { return_ms: 5 },
            };
            self.schedule(self.now_ms + arrive_ms + after_ms, copy);
        }
        let event = Event::Arrival {
            device: index,
            generation,
            request: Box::new(request),
            fate,
        };
        self.schedule(self.now_ms + arrive_ms, event);
    }

    /// The server's answer, with pushes of `server reject`ed records refused for good.
    fn serve(&mut self, request: &SyncRequest, fault: ServerFault) -> Option<Value> {
        let rejected_items = request.operation_name.starts_with("syncPush")
            && request.variables["payload"]
                .as_array()
                .is_some_and(|items| {
                    items.iter().any(|item| {
                        item["clientId"]
                            .as_str()
                            .is_some_and(|id| self.rejected.contains(id))
                    })
                });
        if !rejected_items || fault == ServerFault::FailBeforeApplying {
            return match self.server().handle_with_fault(request, fault) {
                ServerReply::Response(response) => Some(response),
                ServerReply::Delayed { response, .. } => Some(response),
                ServerReply::Lost => None,
            };
        }
        let items = request.variables["payload"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let rejected = self.rejected.clone();
        let is_rejected = |item: &Value| {
            item["clientId"]
                .as_str()
                .is_some_and(|id| rejected.contains(id))
        };
        let kept: Vec<Value> = items
            .iter()
            .filter(|item| !is_rejected(item))
            .cloned()
            .collect();
        let mut kept_results = Vec::new();
        if !kept.is_empty() {
            let mut trimmed = request.clone();
            trimmed.variables["payload"] = Value::Array(kept);
            let reply = self.server().handle_with_fault(&trimmed, fault);
            let response = match reply {
                ServerReply::Response(response) | ServerReply::Delayed { response, .. } => response,
                ServerReply::Lost => return None,
            };
            match response["data"][&request.operation_name]["results"].as_array() {
                Some(results) => kept_results = results.clone(),
                None => return Some(response),
            }
        } else if fault == ServerFault::ApplyThenLoseResponse {
            return None;
        }
        let mut kept_results = kept_results.into_iter();
        let code = serde_json::to_value(ErrorCode::Validation).expect("serializable");
        let results: Vec<Value> = items
            .iter()
            .map(|item| {
                if is_rejected(item) {
                    json!({
                        "opId": item["opId"], "clientId": item["clientId"], "id": item["id"],
                        "success": false, "errorCode": code,
                        "errorMessage": "rejected by the scenario (`server reject`)",
                        "version": null, "updatedAt": null, "conflict": null
                    })
                } else {
                    kept_results.next().unwrap_or(Value::Null)
                }
            })
            .collect();
        Some(sync_engine::wire::data_response(
            &request.operation_name,
            json!({ "results": results }),
        ))
    }

    fn handle_event(&mut self, event: Event) -> Result<(), String> {
        self.events_this_step += 1;
        if self.events_this_step > EVENTS_PER_STEP_MAX {
            return Err("the step never went quiet (event budget exhausted)".to_owned());
        }
        match event {
            Event::Timer { device, generation } => {
                let due = self.devices[device].generation == generation
                    && self.devices[device].timer_at == Some(self.now_ms);
                if due {
                    self.devices[device].timer_at = None;
                    self.call_sync(device, Engine::handle_timeout)?;
                }
            }
            Event::Arrival {
                device,
                generation,
                request,
                fate,
            } => {
                let deliver = |runner: &mut Runner, at_ms, response| {
                    let event = Event::Delivery {
                        device,
                        generation,
                        request_id: request.request_id,
                        response,
                    };
                    runner.schedule(at_ms, event);
                };
                let timeout_at = self.now_ms + REQUEST_TIMEOUT_MS;
                match fate {
                    Fate::Normal { return_ms } => {
                        let response = self.serve(&request, ServerFault::None);
                        let response = response.expect("a plain request is answered");
                        deliver(self, self.now_ms + return_ms, Ok(response));
                    }
                    Fate::Busy { return_ms } => {
                        let response = self.serve(&request, ServerFault::FailBeforeApplying);
                        let response = response.expect("busy is an answer");
                        deliver(self, self.now_ms + return_ms, Ok(response));
                    }
                    Fate::ResponseLost => {
                        let _lost = self.serve(&request, ServerFault::ApplyThenLoseResponse);
                        deliver(
                            self,
                            timeout_at,
                            Err(TransportError::timeout("response lost")),
                        );
                    }
                    Fate::Late { late_by_ms } => {
                        let response = self.serve(&request, ServerFault::None);
                        let response = response.expect("a plain request is answered");
                        deliver(
                            self,
                            timeout_at,
                            Err(TransportError::timeout("server too slow")),
                        );
                        deliver(self, timeout_at + late_by_ms, Ok(response));
                    }
                }
            }
            Event::Delivery {
                device,
                generation,
                request_id,
                response,
            } => {
                let current = &mut self.devices[device];
                if current.generation != generation || current.engine.is_none() {
                    return Ok(());
                }
                current.in_flight.remove(&request_id);
                self.call_sync(device, |engine| {
                    engine.handle_response(request_id, response)
                })?;
            }
        }
        Ok(())
    }

    fn next_event_at(&self) -> Option<u64> {
        self.queue.keys().next().map(|(at_ms, _)| *at_ms)
    }

    fn network_busy(&self) -> bool {
        self.queue
            .values()
            .any(|event| !matches!(event, Event::Timer { .. }))
    }

    /// Processes events in time order while `more` says so.
    fn run_until(&mut self, more: impl Fn(&Runner) -> bool) -> Result<(), String> {
        while more(self) {
            let Some(((at_ms, _), event)) = self.queue.pop_first() else {
                break;
            };
            self.now_ms = self.now_ms.max(at_ms);
            self.handle_event(event)?;
        }
        Ok(())
    }

    fn run_until_quiet(&mut self) -> Result<(), String> {
        self.run_until(Runner::network_busy)
    }

    /// Drives a device until a sync that started in this call completes and the device is
    /// idle, retrying through backoff timers and healing the network if it must.
    fn sync_until_done(&mut self, index: usize) -> Result<(), String> {
        let target = self.devices[index].sync_started_seq + 1;
        self.hook.borrow_mut().armed = true;
        let result = self.drive_sync(index, target);
        self.hook.borrow_mut().armed = false;
        result
    }

    fn drive_sync(&mut self, index: usize, target: u64) -> Result<(), String> {
        if self.devices[index].tenant.is_none() {
            return Err(format!("device {} is logged out", self.devices[index].name));
        }
        if self.devices[index].engine.is_none() {
            return Err(format!(
                "device {} is not running",
                self.devices[index].name
            ));
        }
        self.call_sync(index, Engine::sync_now)?;
        for attempt in 0..SYNC_ATTEMPTS_MAX {
            if !self.devices[index].app_online {
                // Offline: nothing can complete; let what is in flight finish.
                return self.run_until_quiet();
            }
            if attempt == SYNC_ATTEMPTS_BEFORE_HEAL {
                self.healed = true;
                self.hook.borrow_mut().armed = false;
            }
            self.run_until_quiet()?;
            let device = &self.devices[index];
            let syncing = match device.engine.as_ref() {
                Some(engine) => engine.status().map_err(|error| error.to_string())?.syncing,
                None => true,
            };
            if device.sync_completed_seq >= target && !syncing {
                return Ok(());
            }
            if device.engine.is_none() {
                self.open_engine(index)?;
                continue;
            }
            match device.timer_at {
                // A retry with backoff (or a debounce) is due soon: wait for it.
                Some(at_ms) if !syncing && at_ms <= self.now_ms + 10 * 60 * 1000 => {
                    self.run_until(|runner| {
                        runner.next_event_at().is_some_and(|next| next <= at_ms)
                    })?;
                    if self.devices[index].sync_started_seq < target {
                        self.call_sync(index, Engine::sync_now)?;
                    }
                }
                _ => self.call_sync(index, Engine::sync_now)?,
            }
        }
        Err(format!(
            "{}: no sync completed after {SYNC_ATTEMPTS_MAX} attempts",
            self.devices[index].name
        ))
    }

    // ---- user actions -------------------------------------------------------------------

    fn acknowledge(&mut self, index: usize, client_id: &str) -> Result<(), String> {
        let tenant = self.tenant_of(index)?;
        let record = self
            .engine(index)?
            .get(client_id)
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("acknowledged record {client_id} is not readable"))?;
        self.model.acknowledge(
            &tenant,
            client_id,
            AckedWrite {
                device: index,
                entity: record.entity.clone(),
                space_id: record.space_id.clone(),
                stamp: record.updated_at,
                data: record.data.clone(),
                deleted: record.is_deleted,
                discarded: None,
            },
        );
        Ok(())
    }

    fn create(
        &mut self,
        device: &str,
        count: usize,
        entity: &str,
        space: &str,
        alias: Option<&str>,
        data: &Map<String, Value>,
    ) -> Result<(), String> {
        let index = self.device(device)?;
        let tenant = self.tenant_of(index)?;
        let items: Vec<Value> = (0..count)
            .map(|n| {
                let mut item = data.clone();
                if count > 1 && !item.contains_key("n") {
                    item.insert("n".to_owned(), json!(n + 1));
                }
                Value::Object(item)
            })
            .collect();
        let created = self
            .call_write(index, |engine| engine.create_many(entity, space, items))?
            .unwrap_or_default();
        for (n, client_id) in created.iter().enumerate() {
            self.model.record_create(&tenant, client_id);
            self.acknowledge(index, client_id)?;
            if let Some(alias) = alias {
                let name = if count == 1 {
                    alias.to_owned()
                } else {
                    format!("{alias}{}", n + 1)
                };
                self.aliases
                    .insert(name, (tenant.clone(), client_id.clone()));
            }
        }
        Ok(())
    }

    fn resolve(&mut self, device: &str, alias: &str, choice: &Choice) -> Result<(), String> {
        let index = self.device(device)?;
        let tenant = self.tenant_of(index)?;
        let (_, client_id) = self.alias(alias)?;
        let conflicts = self
            .engine(index)?
            .list_conflicts()
            .map_err(|error| error.to_string())?;
        let conflict = conflicts
            .iter()
            .find(|conflict| conflict.client_id == client_id)
            .ok_or_else(|| format!("{device} has no open conflict on {alias}"))?;
        let resolution = match choice {
            Choice::KeepLocal => Resolution::KeepLocal,
            Choice::UseServer => Resolution::UseServer,
            Choice::Merge(sides) => Resolution::MergeFields(sides.clone()),
        };
        self.model
            .discard_record(index, &tenant, &client_id, "user resolved a conflict");
        let id = conflict.id;
        let keeps_local = resolution != Resolution::UseServer;
        let resolved = self.call_write(index, |engine| engine.resolve_conflict(id, resolution))?;
        if resolved.is_some() && keeps_local {
            self.acknowledge(index, &client_id)?;
        }
        Ok(())
    }

    fn force(&mut self, device: &str, entity: &str, from_server: bool) -> Result<(), String> {
        let index = self.device(device)?;
        let tenant = self.tenant_of(index)?;
        let plan = self.call_write(index, |engine| {
            if from_server {
                engine.plan_force_from_server(entity)
            } else {
                engine.plan_force_push_local(entity)
            }
        })?;
        let Some(plan) = plan else { return Ok(()) };
        if from_server {
            self.model.discard_device_entity(index, &tenant, entity);
        } else {
            self.model
                .discard_other_devices_entity(index, &tenant, entity);
        }
        // A force runs to the end on a healed network; the driver does not retry it.
        self.healed = true;
        self.call_write(index, |engine| engine.execute_force(plan.confirm()))?;
        self.run_until_quiet()
    }

    fn logout(&mut self, device: &str) -> Result<(), String> {
        let index = self.device(device)?;
        let tenant = self.tenant_of(index)?;
        let engine = self.devices[index]
            .engine
            .take()
            .ok_or_else(|| format!("device {device} is not running"))?;
        self.kill(index);
        self.devices[index].tenant = None;
        self.model.discard_device_tenant(index, &tenant);
        engine
            .drop_database()
            .map_err(|error| format!("{device}: dropping the database failed: {error}"))
    }

    // ---- expectations ---------------------------------------------------------------------

    fn live_on_device(
        &self,
        index: usize,
        client_id: &str,
    ) -> Result<Option<sync_engine::Record>, String> {
        self.engine(index)?
            .get(client_id)
            .map_err(|error| error.to_string())
    }

    fn server_record(
        &mut self,
        tenant: &str,
        client_id: &str,
    ) -> Option<crate::server::ServerRecord> {
        self.server()
            .records(tenant)
            .into_iter()
            .find(|record| record.client_id == client_id)
            .cloned()
    }

    fn check(&mut self, expectation: &Expectation) -> Result<(), String> {
        match expectation {
            Expectation::Count {
                who,
                tenant,
                entity,
                count,
            } => {
                let (place, found) = match who {
                    Who::Server => {
                        let tenant = tenant.clone().expect("parsed with a tenant");
                        let found = self
                            .server()
                            .records(&tenant)
                            .iter()
                            .filter(|record| record.entity == *entity && !record.is_deleted)
                            .count();
                        (format!("the server (tenant {tenant})"), found)
                    }
                    Who::Device(name) => {
                        let index = self.device(name)?;
                        let found = self
                            .engine(index)?
                            .all_records()
                            .map_err(|error| error.to_string())?
                            .iter()
                            .filter(|record| record.entity == *entity && !record.is_deleted)
                            .count();
                        (name.clone(), found)
                    }
                };
                expect_eq(found, *count, || {
                    format!("live {entity} records on {place}")
                })
            }
            Expectation::Field {
                who,
                alias,
                field,
                value,
            } => {
                let (tenant, client_id) = self.alias(alias)?;
                let (place, data) = match who {
                    Who::Server => (
                        "the server".to_owned(),
                        self.server_record(&tenant, &client_id)
                            .map(|record| record.data),
                    ),
                    Who::Device(name) => {
                        let index = self.device(name)?;
                        let record = self.live_on_device(index, &client_id)?;
                        (name.clone(), record.map(|record| record.data))
                    }
                };
                let data = data.ok_or_else(|| format!("{alias} does not exist on {place}"))?;
                let found = data.get(field).cloned().unwrap_or(Value::Null);
                if found == *value {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {alias}.{field} = {value} on {place}, found {found} (the record is {})",
                        Value::Object(data)
                    ))
                }
            }
            Expectation::Deleted(who, alias) | Expectation::Exists(who, alias) => {
                let want_live = matches!(expectation, Expectation::Exists(..));
                let (tenant, client_id) = self.alias(alias)?;
                let (place, live) = match who {
                    Who::Server => (
                        "the server".to_owned(),
                        self.server_record(&tenant, &client_id)
                            .is_some_and(|record| !record.is_deleted),
                    ),
                    Who::Device(name) => {
                        let index = self.device(name)?;
                        let record = self.live_on_device(index, &client_id)?;
                        (
                            name.clone(),
                            record.is_some_and(|record| !record.is_deleted),
                        )
                    }
                };
                if live == want_live {
                    Ok(())
                } else if want_live {
                    Err(format!(
                        "expected {alias} to exist on {place}; it is deleted or absent"
                    ))
                } else {
                    Err(format!(
                        "expected {alias} to be deleted on {place}; it is live"
                    ))
                }
            }
            Expectation::Conflict {
                device,
                alias,
                fields,
            } => {
                let index = self.device(device)?;
                let (_, client_id) = self.alias(alias)?;
                let conflicts = self
                    .engine(index)?
                    .list_conflicts()
                    .map_err(|error| error.to_string())?;
                let conflict = conflicts
                    .iter()
                    .find(|conflict| conflict.client_id == client_id)
                    .ok_or_else(|| {
                        format!(
                            "expected an open conflict on {alias} on {device}; it has {} open conflicts, none on {alias}",
                            conflicts.len()
                        )
                    })?;
                let changed: Vec<String> = conflict
                    .changed_fields()
                    .into_iter()
                    .map(|diff| diff.field)
                    .collect();
                let mut wanted = fields.clone();
                wanted.sort();
                if changed == wanted {
                    Ok(())
                } else {
                    Err(format!(
                        "the conflict on {alias} on {device} differs in fields {changed:?}, expected {wanted:?}"
                    ))
                }
            }
            Expectation::NoConflicts(device) => {
                let index = self.device(device)?;
                let open = self
                    .engine(index)?
                    .list_conflicts()
                    .map_err(|error| error.to_string())?;
                expect_eq(open.len(), 0, || format!("open conflicts on {device}"))
            }
            Expectation::QueueEmpty(device) => {
                let index = self.device(device)?;
                let waiting: Vec<String> = self
                    .engine(index)?
                    .queued_ops()
                    .map_err(|error| error.to_string())?
                    .into_iter()
                    .filter(|op| matches!(op.status, OpStatus::Pending | OpStatus::Sending))
                    .map(|op| {
                        format!(
                            "{} {} ({:?})",
                            op.operation.as_str(),
                            op.entity_id,
                            op.status
                        )
                    })
                    .collect();
                if waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {device}'s queue to be empty; {} ops wait: {}",
                        waiting.len(),
                        waiting.join(", ")
                    ))
                }
            }
            Expectation::Pending(device, n) | Expectation::Failed(device, n) => {
                let index = self.device(device)?;
                let status = self
                    .engine(index)?
                    .status()
                    .map_err(|error| error.to_string())?;
                let (what, found) = match expectation {
                    Expectation::Pending(..) => ("pending ops", status.pending_ops),
                    _ => ("failed ops", status.failed_ops),
                };
                expect_eq(found, *n, || format!("{what} on {device}"))
            }
            Expectation::Requests(device, operation, n) => {
                let index = self.device(device)?;
                let found = self.devices[index]
                    .requests
                    .get(operation)
                    .copied()
                    .unwrap_or(0);
                expect_eq(found, *n, || {
                    format!(
                        "{operation} requests sent by {device} since the last reset-counters (all: {:?})",
                        self.devices[index].requests
                    )
                })
            }
            Expectation::SyncsStarted(device, n) => {
                let index = self.device(device)?;
                let found = self.devices[index].syncs_started;
                expect_eq(found, *n, || {
                    format!("syncs started on {device} since the last reset-counters")
                })
            }
            Expectation::MaxInFlight(device, n) => {
                let index = self.device(device)?;
                let found = self.devices[index].max_in_flight;
                if found <= *n {
                    Ok(())
                } else {
                    Err(format!(
                        "{device} had {found} requests in flight at once, at most {n} expected"
                    ))
                }
            }
            Expectation::CannotAccess(device, other) => self.probe_cross_tenant(device, other),
            Expectation::Converged => match self.difference()? {
                None => Ok(()),
                Some(difference) => Err(format!("not converged: {difference}")),
            },
            Expectation::NoDuplicates => self.check_no_duplicates(),
        }
    }

    /// A request carrying this device's token but naming another tenant must be refused
    /// and must change nothing.
    fn probe_cross_tenant(&mut self, device: &str, other: &str) -> Result<(), String> {
        let index = self.device(device)?;
        let own = self.tenant_of(index)?;
        if own == other {
            return Err(format!("{device} is logged in to {other} itself"));
        }
        let entity = self.entities[0].clone();
        let effects_before = self.server().effects().len();
        let stamp_before = self.server().commit_stamp(other);
        let pull = SyncRequest {
            request_id: 0,
            operation_name: format!("syncPull{entity}"),
            tenant_id: own.clone(),
            token: token_of(&own),
            variables: json!({ "lastSyncAt": null, "tenantId": other, "limit": 1000 }),
        };
        let push = SyncRequest {
            request_id: 0,
            operation_name: format!("syncPush{entity}"),
            tenant_id: own.clone(),
            token: token_of(&own),
            variables: json!({ "tenantId": other, "payload": [{
                "clientId": "0190c0de-0000-7000-8000-000000000001", "id": null,
                "operation": "insert", "data": {"probe": true},
                "opId": "0190c0de-0000-7000-8000-000000000002", "baseVersion": 0,
                "force": false, "spaceId": "s1", "updatedAt": 1
            }] }),
        };
        for request in [pull, push] {
            let response = self.server().handle(&request);
            let code = response.pointer("/errors/0/extensions/code").cloned();
            if code != Some(json!(ErrorCode::Unauthorized)) {
                return Err(format!(
                    "a {} with {own}'s token for tenant {other} was not refused: {}",
                    request.operation_name,
                    response.to_string().chars().take(200).collect::<String>()
                ));
            }
        }
        if self.server().effects().len() != effects_before
            || self.server().commit_stamp(other) != stamp_before
        {
            return Err("an unauthorized request changed server state".to_owned());
        }
        Ok(())
    }

    fn check_no_duplicates(&mut self) -> Result<(), String> {
        let mut effects: BTreeMap<(String, String), usize> = BTreeMap::new();
        for effect in self.server().effects() {
            *effects
                .entry((effect.tenant_id.clone(), effect.op_id.clone()))
                .or_insert(0) += 1;
        }
        if let Some(((tenant, op_id), count)) = effects.iter().find(|(_, count)| **count > 1) {
            return Err(format!(
                "op {op_id} of tenant {tenant} changed the server {count} times (exactly once expected)"
            ));
        }
        for tenant in self.tenants.clone() {
            let mut seen = BTreeSet::new();
            for record in self.server().records(&tenant) {
                if !seen.insert(record.client_id.clone()) {
                    return Err(format!(
                        "duplicate record: client id {} twice in tenant {tenant}",
                        record.client_id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The first way the logged-in devices differ from the server, or `None`.
    fn difference(&mut self) -> Result<Option<String>, String> {
        for index in 0..self.devices.len() {
            let Some(tenant) = self.devices[index].tenant.clone() else {
                continue;
            };
            let name = self.devices[index].name.clone();
            let Some(engine) = self.devices[index].engine.as_ref() else {
                return Ok(Some(format!("{name} is not running")));
            };
            let status = engine.status().map_err(|error| error.to_string())?;
            if status.syncing || status.pending_ops > 0 || status.open_conflicts > 0 {
                return Ok(Some(format!("{name} is not settled: {status:?}")));
            }
            let local = device_canonical(engine).map_err(|failure| failure.message)?;
            let server = server_canonical(self.server(), &tenant, &local.excluded);
            if local.rows != server {
                return Ok(Some(format!(
                    "{name} differs from the server in tenant {tenant}: {}",
                    first_difference(&local.rows, &server)
                )));
            }
        }
        Ok(None)
    }

    /// Heals everything, settles every device (open conflicts answered "use server"), and
    /// checks the world's final invariants.
    fn finish(&mut self) -> Result<(), String> {
        if self.server.is_none() {
            return Ok(());
        }
        self.healed = true;
        self.faults = None;
        self.hook.borrow_mut().armed = false;
        self.hook.borrow_mut().one_shot.clear();
        for index in 0..self.devices.len() {
            if self.devices[index].tenant.is_some() && self.devices[index].engine.is_none() {
                self.open_engine(index)?;
            }
            if self.devices[index].tenant.is_some() && !self.devices[index].app_online {
                self.devices[index].app_online = true;
                self.call_sync(index, |engine| engine.handle_network_change(true))?;
            }
        }
        let mut last = String::new();
        let mut converged = false;
        for _ in 0..SETTLE_ROUNDS_MAX {
            for index in 0..self.devices.len() {
                if self.devices[index].tenant.is_none() {
                    continue;
                }
                let tenant = self.tenant_of(index)?;
                let conflicts = self
                    .engine(index)?
                    .list_conflicts()
                    .map_err(|error| error.to_string())?;
                for conflict in conflicts {
                    self.model.discard_record(
                        index,
                        &tenant,
                        &conflict.client_id,
                        "user resolved a conflict",
                    );
                    let id = conflict.id;
                    self.call_write(index, |engine| {
                        engine.resolve_conflict(id, Resolution::UseServer)
                    })?;
                }
                self.sync_until_done(index)?;
            }
            match self.difference()? {
                None => {
                    converged = true;
                    break;
                }
                Some(difference) => last = difference,
            }
        }
        if !converged {
            return Err(format!(
                "no convergence after {SETTLE_ROUNDS_MAX} settle rounds: {last}"
            ));
        }
        self.server().check_invariants();
        self.check_no_duplicates()?;
        self.check_isolation_and_lost_writes()
    }

    fn check_isolation_and_lost_writes(&mut self) -> Result<(), String> {
        let mut server_rows = BTreeMap::new();
        for tenant in self.tenants.clone() {
            let server = self.server.as_ref().expect("server");
            for record in server.records(&tenant) {
                if !self.model.created_in(&tenant, &record.client_id) {
                    return Err(format!(
                        "tenant isolation: the server holds {} in tenant {tenant}, created elsewhere",
                        record.client_id
                    ));
                }
                server_rows.insert(
                    (tenant.clone(), record.client_id.clone()),
                    (record.updated_at, record.is_deleted, record.data.clone()),
                );
            }
        }
        let mut device_tenants = BTreeMap::new();
        for (index, device) in self.devices.iter().enumerate() {
            let (Some(tenant), Some(engine)) = (&device.tenant, &device.engine) else {
                continue;
            };
            device_tenants.insert(index, tenant.clone());
            engine
                .check_invariants()
                .map_err(|message| format!("{}: {message}", device.name))?;
            for record in engine.all_records().map_err(|error| error.to_string())? {
                if !self.model.created_in(tenant, &record.client_id) {
                    return Err(format!(
                        "tenant isolation: {} holds {} in tenant {tenant}'s database",
                        device.name, record.client_id
                    ));
                }
            }
        }
        self.model
            .check_no_lost_writes(&device_tenants, |tenant, client_id| {
                server_rows
                    .get(&(tenant.to_owned(), client_id.to_owned()))
                    .map(|(updated_at, is_deleted, data)| ServerView {
                        updated_at: *updated_at,
                        is_deleted: *is_deleted,
                        data,
                    })
            })
            .map(|_| ())
    }
}

fn expect_eq<T: PartialEq + std::fmt::Display>(
    found: T,
    expected: T,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    if found == expected {
        Ok(())
    } else {
        Err(format!("expected {expected} {}, found {found}", what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a scenario runs end to end and a wrong count fails with the line named.
    #[test]
    fn a_wrong_count_names_its_line() {
        let text = "tenants A\ndevices phone:A\nphone create 2 Space in s1\nsync phone\nexpect server A count Space 3\n";
        let script = parse("inline.scn", text).expect("parses");
        let failure = run(&script, RunMode::Clean).expect_err("3 is wrong");
        assert_eq!(failure.line, 5);
        assert!(failure.message.contains("found 2"), "{}", failure.message);
    }

    // Proves comments are stripped outside JSON strings only.
    #[test]
    fn comments_stop_at_hash_outside_strings() {
        assert_eq!(strip_comment("a {\"x\":\"#1\"} # c"), "a {\"x\":\"#1\"} ");
        assert_eq!(strip_comment("# all"), "");
    }
}
