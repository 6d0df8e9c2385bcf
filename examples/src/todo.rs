//! The two-device todo app: a phone and a laptop of one tenant, each an [`Engine`] on its
//! own SQLite file, and the in-process reference server between them.
//!
//! This module owns the devices, the server and the clock, and turns each [`Command`] into
//! engine calls and lines of text. It never decides anything about sync or conflicts:
//! everything it prints about them is what the engine returned or reported as an event.
//!
//! Time is a [`ManualClock`] shared by both devices and the server; it moves one second at
//! each `sync`. Entropy is seeded per device. So one list of commands always prints the
//! same lines, which is what lets a test hold the app to a transcript.

mod command;

pub use command::{Choice, Command, Device, UsageError, HELP};

use serde_json::{json, Value};
use std::fmt;
use std::io::{self, BufRead, Write};
use sync_engine::wire::SyncRequest;
use sync_engine::{
    Clock, Conflict, DbLocation, Engine, EngineOptions, EntityConfig, EntityRegistry, Env,
    ListOptions, ManualClock, OpStatus, OpenError, ReadError, Record, Resolution, SeededEntropy,
    SyncError, SyncEvent, SyncFailure, TenantId, TransportError, WriteError,
};
use sync_sim::server::ReferenceServer;

/// The tenant both devices belong to.
pub const TENANT: &str = "home";
/// The bearer token the server maps to [`TENANT`].
const TOKEN: &str = "token-home";
/// The one entity type of the app.
pub const ENTITY: &str = "Todo";
/// The one space (list) every todo lives in.
pub const LIST_ID: &str = "my-list";
/// 2026-01-01T09:00:00Z: where the clock starts.
pub const START_MS: u64 = 1_767_258_000_000;
/// How far the clock moves at each `sync` command.
pub const SYNC_STEP_MS: u64 = 1_000;
/// What an offline device's transport answers every request with.
pub const OFFLINE_MESSAGE: &str = "no network";

/// One device: its engine, and whether its network is up.
struct Handset {
    engine: Engine,
    online: bool,
}

/// The app's whole state. Field order matters: the engines close their databases before
/// the temporary directory holding them is removed.
pub struct TodoApp {
    devices: [Handset; 2],
    server: ReferenceServer,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

/// Whether the app reads on after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// How [`run`] treats its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A person types: print a prompt before each line.
    Interactive,
    /// A script or a pipe: echo each line after `> `, so the output reads as a session.
    Script,
}

/// Why the app could not start.
#[derive(Debug)]
pub enum StartError {
    TempDir(io::Error),
    Open(OpenError),
    Token(WriteError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::TempDir(error) => write!(f, "cannot create a temporary directory: {error}"),
            StartError::Open(error) => write!(f, "cannot open a device database: {error}"),
            StartError::Token(error) => write!(f, "cannot store the auth token: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why a command did not run. All but `Output` are printed and the app reads on.
#[derive(Debug)]
enum Failure {
    Usage(String),
    Write(WriteError),
    Read(ReadError),
    Sync(SyncError),
    Output(io::Error),
}

impl From<UsageError> for Failure {
    fn from(error: UsageError) -> Failure {
        Failure::Usage(error.0)
    }
}

impl From<WriteError> for Failure {
    fn from(error: WriteError) -> Failure {
        Failure::Write(error)
    }
}

impl From<ReadError> for Failure {
    fn from(error: ReadError) -> Failure {
        Failure::Read(error)
    }
}

impl From<SyncError> for Failure {
    fn from(error: SyncError) -> Failure {
        Failure::Sync(error)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Output(error)
    }
}

/// Reads commands from `input` until it ends or says `quit`, writing everything to `out`.
pub fn run(
    app: &mut TodoApp,
    input: impl BufRead,
    out: &mut impl Write,
    mode: Mode,
) -> io::Result<()> {
    if mode == Mode::Interactive {
        write!(out, "> ")?;
        out.flush()?;
    }
    for line in input.lines() {
        let line = line?;
        if mode == Mode::Script && !line.trim().is_empty() {
            writeln!(out, "> {}", line.trim())?;
        }
        if app.run_line(&line, out)? == Flow::Quit {
            return Ok(());
        }
        if mode == Mode::Interactive {
            write!(out, "> ")?;
            out.flush()?;
        }
    }
    Ok(())
}

impl TodoApp {
    /// Two devices on fresh databases in a temporary directory, and an empty server.
    pub fn open() -> Result<TodoApp, StartError> {
        let dir = tempfile::tempdir().map_err(StartError::TempDir)?;
        let clock = ManualClock::new(START_MS);
        let mut server = ReferenceServer::new(registry());
        server.add_tenant_token(TENANT, TOKEN);
        let open = |device: Device, seed: u64| -> Result<Handset, StartError> {
            let options = EngineOptions::new(
                DbLocation::new(dir.path().join(device.name())),
                TenantId::parse(TENANT).expect("a valid tenant id"),
                registry(),
            );
            let env = Env::new(clock.clone(), SeededEntropy::new(seed));
            let mut engine = Engine::open(options, env).map_err(StartError::Open)?;
            engine.set_auth_token(TOKEN).map_err(StartError::Token)?;
            Ok(Handset {
                engine,
                online: true,
            })
        };
        // Different seeds: two devices must never draw the same ids.
        let devices = [open(Device::Phone, 1)?, open(Device::Laptop, 2)?];
        Ok(TodoApp {
            devices,
            server,
            clock,
            _dir: dir,
        })
    }

    /// Runs one line; a failed command prints `error: ...` and the app goes on. Only a
    /// failure to write the output is returned.
    pub fn run_line(&mut self, line: &str, out: &mut impl Write) -> io::Result<Flow> {
        let Some(parsed) = Command::parse(line) else {
            return Ok(Flow::Continue);
        };
        let outcome = parsed
            .map_err(Failure::from)
            .and_then(|command| self.execute(command, out));
        let message = match outcome {
            Ok(flow) => return Ok(flow),
            Err(Failure::Output(error)) => return Err(error),
            Err(Failure::Usage(message)) => message,
            Err(Failure::Write(error)) => error.to_string(),
            Err(Failure::Read(error)) => error.to_string(),
            Err(Failure::Sync(error)) => error.to_string(),
        };
        writeln!(out, "error: {message}")?;
        Ok(Flow::Continue)
    }

    /// The titles a device lists, in list order, each with ` [done]` when it is done.
    pub fn titles(&self, device: Device) -> Result<Vec<String>, ReadError> {
        Ok(todos(self.engine(device))?
            .iter()
            .map(|record| {
                let done = if is_done(record) { " [done]" } else { "" };
                format!("{}{done}", title(record))
            })
            .collect())
    }

    pub fn engine(&self, device: Device) -> &Engine {
        &self.devices[index(device)].engine
    }

    pub fn server(&self) -> &ReferenceServer {
        &self.server
    }

    fn execute(&mut self, command: Command, out: &mut impl Write) -> Result<Flow, Failure> {
        match command {
            Command::Help => writeln!(out, "{HELP}")?,
            Command::Quit => return Ok(Flow::Quit),
            Command::Add { device, title } => {
                let engine = self.engine_mut(device);
                let id =
                    engine.create(ENTITY, LIST_ID, json!({ "title": title, "done": false }))?;
                let label = todo_label(engine, &id)?;
                writeln!(out, "{device}: added {label} \"{title}\"")?;
            }
            Command::Edit {
                device,
                number,
                title,
            } => {
                let record = self.todo(device, number)?;
                self.engine_mut(device)
                    .update(&record.client_id, json!({ "title": title }))?;
                writeln!(out, "{device}: todo {number} is now \"{title}\"")?;
            }
            Command::Done { device, number } => {
                let record = self.todo(device, number)?;
                self.engine_mut(device)
                    .update(&record.client_id, json!({ "done": true }))?;
                writeln!(
                    out,
                    "{device}: todo {number} \"{}\" is done",
                    title(&record)
                )?;
            }
            Command::Remove { device, number } => {
                let record = self.todo(device, number)?;
                self.engine_mut(device).delete(&record.client_id)?;
                writeln!(
                    out,
                    "{device}: deleted todo {number} \"{}\"",
                    title(&record)
                )?;
            }
            Command::List { device } => {
                for device in chosen(device) {
                    self.print_list(device, out)?;
                }
            }
            Command::Offline(device) => {
                self.devices[index(device)].online = false;
                writeln!(
                    out,
                    "{device} is offline: its syncs fail until `online {device}`"
                )?;
            }
            Command::Online(device) => {
                self.devices[index(device)].online = true;
                writeln!(out, "{device} is online")?;
            }
            Command::Sync { device } => {
                self.clock.advance_ms(SYNC_STEP_MS);
                writeln!(out, "-- {} --", clock_text(self.clock.now_ms()))?;
                match device {
                    Some(device) => self.sync(device, out)?,
                    None => self.sync_all(out)?,
                }
            }
            Command::Conflicts(device) => self.print_conflicts(device, out)?,
            Command::Resolve {
                device,
                number,
                choice,
            } => self.resolve(device, number, choice, out)?,
            Command::Status => self.print_status(out)?,
        }
        Ok(Flow::Continue)
    }

    /// Syncs the phone, then the laptop, then the phone once more if the laptop's sync
    /// sent writes, so that after a `sync` each online device has what the other sent.
    fn sync_all(&mut self, out: &mut impl Write) -> Result<(), Failure> {
        self.sync(Device::Phone, out)?;
        let queued_before = self.engine(Device::Laptop).status()?.pending_ops;
        self.sync(Device::Laptop, out)?;
        let queued_after = self.engine(Device::Laptop).status()?.pending_ops;
        if queued_after < queued_before && self.devices[index(Device::Phone)].online {
            self.sync(Device::Phone, out)?;
        }
        Ok(())
    }

    /// Runs the engine's sans-IO loop until it has nothing more to send: after every
    /// input, drain the outputs (events, then the next request). The server answers in
    /// process; an offline device's transport fails every request, as a dead network would.
    fn sync(&mut self, device: Device, out: &mut impl Write) -> Result<(), Failure> {
        let TodoApp {
            devices,
            server,
            clock,
            ..
        } = self;
        let handset = &mut devices[index(device)];
        handset.engine.sync_now()?;
        let mut requests_sent = 0_usize;
        loop {
            print_events(device, &mut handset.engine, clock, out)?;
            let Some(request) = handset.engine.poll_request() else {
                break;
            };
            requests_sent += 1;
            let response = answer(server, clock, handset.online, &request);
            handset
                .engine
                .handle_response(request.request_id, response)?;
        }
        assert!(
            !handset.engine.status()?.syncing,
            "the loop ran the sync to its end"
        );
        assert!(
            requests_sent > 0,
            "a sync always sends at least one request"
        );
        Ok(())
    }

    fn resolve(
        &mut self,
        device: Device,
        number: usize,
        choice: Choice,
        out: &mut impl Write,
    ) -> Result<(), Failure> {
        let engine = self.engine_mut(device);
        let conflicts = engine.list_conflicts()?;
        let conflict = conflicts.get(number - 1).ok_or_else(|| {
            Failure::Usage(format!(
                "{device} has no conflict {number} ({} open)",
                conflicts.len()
            ))
        })?;
        let label = todo_label(engine, &conflict.client_id)?;
        let (resolution, outcome) = match choice {
            Choice::Local => (Resolution::KeepLocal, "kept this device's version"),
            Choice::Server => (Resolution::UseServer, "took the server's version"),
            Choice::Merge(fields) => (Resolution::MergeFields(fields), "merged field by field"),
        };
        engine.resolve_conflict(conflict.id, resolution)?;
        let record = engine
            .get(&conflict.client_id)?
            .expect("a resolved conflict's record stays");
        let pending = engine
            .queued_ops()?
            .iter()
            .any(|op| op.entity_id == conflict.client_id && op.status == OpStatus::Pending);
        writeln!(
            out,
            "{device}: {label} {outcome}: \"{}\"{}",
            title(&record),
            if pending {
                "; the next sync sends it"
            } else {
                ""
            }
        )?;
        Ok(())
    }

    fn print_list(&self, device: Device, out: &mut impl Write) -> Result<(), Failure> {
        let engine = self.engine(device);
        let records = todos(engine)?;
        if records.is_empty() {
            writeln!(out, "{device}: no todos")?;
            return Ok(());
        }
        writeln!(out, "{device}:")?;
        let queue = engine.queued_ops()?;
        let conflicts = engine.list_conflicts()?;
        for (position, record) in records.iter().enumerate() {
            let mark = if is_done(record) { 'x' } else { ' ' };
            let ops = || queue.iter().filter(|op| op.entity_id == record.client_id);
            let note = if conflicts.iter().any(|c| c.client_id == record.client_id) {
                "  (conflict)"
            } else if ops().any(|op| op.status == OpStatus::Failed) {
                "  (refused by the server)"
            } else if ops().any(|op| op.status != OpStatus::Success) {
                "  (not synced)"
            } else {
                ""
            };
            writeln!(out, "  {}. [{mark}] {}{note}", position + 1, title(record))?;
        }
        Ok(())
    }

    fn print_conflicts(&self, device: Device, out: &mut impl Write) -> Result<(), Failure> {
        let engine = self.engine(device);
        let conflicts = engine.list_conflicts()?;
        if conflicts.is_empty() {
            writeln!(out, "{device}: no conflicts")?;
        }
        for (position, conflict) in conflicts.iter().enumerate() {
            let label = todo_label(engine, &conflict.client_id)?;
            writeln!(
                out,
                "{device}: conflict {} of {}, on {label}:",
                position + 1,
                conflicts.len()
            )?;
            writeln!(out, "{}", dialog(conflict))?;
        }
        Ok(())
    }

    fn print_status(&self, out: &mut impl Write) -> Result<(), Failure> {
        writeln!(out, "clock {}", clock_text(self.clock.now_ms()))?;
        for device in Device::ALL {
            let status = self.engine(device).status()?;
            let network = if self.devices[index(device)].online {
                "online"
            } else {
                "offline"
            };
            let last_sync = status
                .last_successful_sync_ms
                .map_or_else(|| "never".to_owned(), clock_text);
            writeln!(
                out,
                "{device:<6} {network:<7} {} queued, {} refused, {} conflicts, last sync {last_sync}",
                status.pending_ops, status.failed_ops, status.open_conflicts
            )?;
        }
        Ok(())
    }

    fn engine_mut(&mut self, device: Device) -> &mut Engine {
        &mut self.devices[index(device)].engine
    }

    /// The todo the user numbered `number` on `device`.
    fn todo(&self, device: Device, number: usize) -> Result<Record, Failure> {
        let mut records = todos(self.engine(device))?;
        let count = records.len();
        if number > count {
            return Err(Failure::Usage(format!(
                "{device} has no todo {number} ({count} listed)"
            )));
        }
        Ok(records.swap_remove(number - 1))
    }
}

/// One entity type. Concurrent edits of different fields (a title on one device, `done`
/// on the other) merge without asking; edits of the same field ask the user.
fn registry() -> EntityRegistry {
    let mut todo = EntityConfig::new(ENTITY).expect("a valid entity name");
    todo.auto_merge_fields = true;
    let mut registry = EntityRegistry::new();
    registry
        .register(todo)
        .expect("one entity, registered once");
    registry
}

fn index(device: Device) -> usize {
    match device {
        Device::Phone => 0,
        Device::Laptop => 1,
    }
}

/// One device, or every device when none is named.
fn chosen(device: Option<Device>) -> Vec<Device> {
    device.map_or_else(|| Device::ALL.to_vec(), |device| vec![device])
}

/// The live todos in list order (by client id: UUID v7, so in creation order, and the
/// same order on every device).
fn todos(engine: &Engine) -> Result<Vec<Record>, ReadError> {
    engine.list(ENTITY, Some(LIST_ID), ListOptions::default())
}

fn title(record: &Record) -> &str {
    record
        .data
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn is_done(record: &Record) -> bool {
    record.data.get("done") == Some(&Value::Bool(true))
}

/// How the app names a record in a message: its number in the list, if it is listed.
fn todo_label(engine: &Engine, client_id: &str) -> Result<String, ReadError> {
    let position = todos(engine)?
        .iter()
        .position(|record| record.client_id == client_id);
    Ok(match position {
        Some(position) => format!("todo {}", position + 1),
        None => "a deleted todo".to_owned(),
    })
}

/// The spec's Conflict Resolution dialog, as the engine renders it.
fn dialog(conflict: &Conflict) -> String {
    conflict.to_string()
}

/// The server's answer to one request, or the transport's failure.
fn answer(
    server: &mut ReferenceServer,
    clock: &ManualClock,
    online: bool,
    request: &SyncRequest,
) -> Result<Value, TransportError> {
    if !online {
        return Err(TransportError::unreachable(OFFLINE_MESSAGE));
    }
    server.set_clock_ms(clock.now_ms());
    Ok(server.handle(request))
}

/// Prints every event the engine has queued, in order.
fn print_events(
    device: Device,
    engine: &mut Engine,
    clock: &ManualClock,
    out: &mut impl Write,
) -> Result<(), Failure> {
    while let Some(event) = engine.poll_event() {
        match event {
            SyncEvent::SyncStarted { trigger } => {
                let trigger = format!("{trigger:?}").to_lowercase();
                writeln!(out, "{device}: sync started ({trigger})")?;
            }
            SyncEvent::SyncCompleted => writeln!(out, "{device}: sync completed")?,
            SyncEvent::SyncFailed {
                reason,
                retry_at_ms,
            } => {
                let meaning = match &reason {
                    SyncFailure::Transport { .. } => "; the edits stay queued",
                    SyncFailure::AuthRequired { .. } => "; the app must log in again",
                    _ => "",
                };
                let retry = retry_at_ms
                    .map(|at_ms| {
                        let delay_ms = at_ms.saturating_sub(clock.now_ms());
                        format!(" (the engine asks for a retry in {delay_ms} ms)")
                    })
                    .unwrap_or_default();
                writeln!(out, "{device}: sync failed: {reason}{meaning}{retry}")?;
            }
            SyncEvent::ConflictStored { client_id, .. } => {
                let label = todo_label(engine, &client_id)?;
                writeln!(
                    out,
                    "{device}: conflict on {label}: both devices changed it at the same instant; see `conflicts {device}`"
                )?;
            }
            SyncEvent::ConflictAutoMerged { client_id } => {
                let label = todo_label(engine, &client_id)?;
                writeln!(
                    out,
                    "{device}: {label} changed on both devices, in different fields: merged"
                )?;
            }
            SyncEvent::OpSuperseded { client_id, .. } => {
                let label = todo_label(engine, &client_id)?;
                writeln!(out, "{device}: an edit of {label} lost to a newer one")?;
            }
            SyncEvent::OpFailed {
                client_id, message, ..
            } => {
                let label = todo_label(engine, &client_id)?;
                writeln!(
                    out,
                    "{device}: the server refused an edit of {label}: {message}"
                )?;
            }
            // What a list view would re-read: the app's cue to refresh.
            SyncEvent::RecordsChanged { ids, .. } => {
                let labels = ids
                    .iter()
                    .map(|id| todo_label(engine, id))
                    .collect::<Result<Vec<_>, _>>()?;
                writeln!(out, "{device}: changed: {}", labels.join(", "))?;
            }
            other => writeln!(out, "{device}: {other:?}")?,
        }
    }
    Ok(())
}

/// A clock reading as the time of day (UTC), e.g. `09:00:03`.
fn clock_text(now_ms: u64) -> String {
    let seconds = (now_ms / 1_000) % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3_600,
        (seconds / 60) % 60,
        seconds % 60
    )
}
