//! The sans-IO sync state machine: push the queue, pull every entity, check the hash.
//!
//! Inputs are `handle_*` calls (app opened, network changed, sync now, a timer, a
//! response); outputs are `poll_*` calls (the next request as data, the next timer
//! deadline, events). After every input, drain the outputs. The machine never sends,
//! sleeps or reads a clock of its own: time comes from the injected [`Env`](crate::Env).
//!
//! ```
//! # use sync_engine::{Engine, testing};
//! # let (_dir, mut engine) = testing::open_temp_engine("doc");
//! # struct Server; impl Server { fn call(&mut self, _r: &sync_engine::wire::SyncRequest) -> Result<serde_json::Value, sync_engine::TransportError> { Err(sync_engine::TransportError::unreachable("no server in this example")) } }
//! # let mut server = Server;
//! engine.sync_now()?;
//! while let Some(request) = engine.poll_request() {
//!     let response = server.call(&request); // the app's network, or the simulator's
//!     engine.handle_response(request.request_id, response)?;
//! }
//! while let Some(event) = engine.poll_event() {
//!     println!("{event:?}");
//! }
//! // Sleep until `engine.poll_timeout()`, then call `engine.handle_timeout()`.
//! # Ok::<(), sync_engine::SyncError>(())
//! ```
//!
//! A sync runs as: push runs (consecutive ops of one entity type, at most the entity's
//! `push_batch_max`, in queue order) until the queue has nothing sendable; then for each
//! registered entity, pull pages until `hasMore` is false, each page merged and its
//! cursor saved in one transaction; then compare `versionHash` and, on a mismatch with
//! nothing pending, run one repair pull from the start (what a pull answer does lives in
//! `pull_pages.rs`). One sync runs at a time; a trigger during a sync (or during a force
//! from the server) schedules one more sync after it.
//!
//! One process of the app syncs a database at a time: a sync, a force from the server
//! and a wipe run holding the database's sync lock (`sync_lock.rs`), and a sync that
//! finds another process holding it is deferred (`SyncDeferred`) and retried.

use crate::crash::{CommitError, CommitSite, CrashPoint};
use crate::engine::Engine;
use crate::error::SyncError;
use crate::failure::SyncFailure;
use crate::pull::PagingWatch;
use crate::push::{prepare_push, PreparedPush};
use crate::settings::SyncSettings;
use crate::store;
use crate::sync_lock::{Acquired, SyncLock};
use crate::wire::{SyncAnswer, SyncPullVariables, SyncPushVariables, SyncRequest, SyncVariables};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use crate::sync_events::{
    SyncEvent, SyncTrigger, Transport, TransportError, TransportErrorKind,
};

/// A timer: armed at a device-clock reading, firing `delay_ms` later. If the clock runs
/// backwards past `armed_at_ms`, the timer re-arms from the new reading, so a clock jump
/// never postpones a timer by more than its own delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timer {
    armed_at_ms: u64,
    delay_ms: u64,
}

impl Timer {
    fn deadline(&mut self, now_ms: u64) -> u64 {
        if now_ms < self.armed_at_ms {
            self.armed_at_ms = now_ms;
        }
        self.armed_at_ms + self.delay_ms
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Phase {
    Idle,
    Pushing,
    Pulling {
        entity_index: usize,
        repair: Option<RepairPass>,
    },
    /// Force from server: each page of one entity is staged in SQLite as it arrives, and
    /// the last page's transaction swaps them in whole (`force.rs`). Nothing of the pages
    /// is kept here, so this state does not grow with the pull.
    ForcePull {
        entity: String,
    },
}

/// A full re-pull after a checksum mismatch, or because the server no longer keeps what
/// happened after the device's cursor (a resync): the server ids seen so far.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct RepairPass {
    pub(crate) seen_server_ids: BTreeSet<String>,
    pub(crate) resync: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum InFlight {
    Push {
        /// The run as it was sent: its ops in queue order, each with the server id its
        /// record had then.
        ops: Vec<store::SentOp>,
        operation_name: String,
    },
    Pull {
        entity: String,
        operation_name: String,
        /// The cursor the request sent (`""` for none).
        cursor: String,
    },
}

/// The machine's volatile state: all of it is lost on an app kill, by design.
#[derive(Debug)]
pub(crate) struct SyncMachine {
    online: bool,
    pub(crate) phase: Phase,
    rerun_requested: bool,
    /// Entities whose checksum was repaired in this sync (one repair each per sync).
    pub(crate) repaired: BTreeSet<String>,
    /// The first request id of this process (ids count up from it).
    first_request_id: u64,
    next_request_id: u64,
    outgoing: VecDeque<SyncRequest>,
    in_flight: Option<(u64, InFlight)>,
    pub(crate) events: VecDeque<SyncEvent>,
    interval: Option<Timer>,
    retry: Option<Timer>,
    debounce: Option<Timer>,
    /// The request deadline of the request in flight (by its id), when the settings set one.
    deadline: Option<(u64, Timer)>,
    settings: SyncSettings,
    failure_streak: u32,
    /// Set while a push refused whole is sent in smaller runs (halved at each refusal,
    /// cleared when one op is refused alone or a sync starts).
    pub(crate) push_cap: Option<usize>,
    /// A storage failure ended a sync and also failed its cleanup (ops back to `pending`,
    /// a force's staged pages dropped); the next sync does it before anything else.
    pub(crate) cleanup_owed: bool,
    /// The requests of this process that timed out, with when (device clock), kept only
    /// with the planted `forget_timed_out_requests`.
    timed_out: BTreeMap<u64, (u64, InFlight)>,
    /// Watches the current run of pages of one entity (from its first page to the one
    /// that says no more follow) for a cursor that comes round again; restarted when a
    /// run of pages starts.
    pub(crate) paging: PagingWatch,
    /// The database's sync lock while this process runs a sync, a force or a wipe.
    pub(crate) lock: Option<SyncLock>,
    /// The database's HLC high-water mark when this process's last durability barrier
    /// ran: every stamp up to it, whichever process handed it out, is durable.
    pub(crate) durable_high_water: crate::hlc::HlcStamp,
}

/// How long the planted `forget_timed_out_requests` remembers a timed-out request.
pub(crate) const TIMED_OUT_MEMORY_MS: u64 = 15_000;

impl SyncMachine {
    /// `first_request_id` comes from entropy, so a process restarted after a kill does
    /// not reuse the ids of requests its predecessor left in flight.
    pub(crate) fn new(now_ms: u64, first_request_id: u64, settings: SyncSettings) -> SyncMachine {
        SyncMachine {
            online: true,
            phase: Phase::Idle,
            rerun_requested: false,
            repaired: BTreeSet::new(),
            first_request_id,
            next_request_id: first_request_id,
            outgoing: VecDeque::new(),
            in_flight: None,
            events: VecDeque::new(),
            interval: Some(Timer {
                armed_at_ms: now_ms,
                delay_ms: settings.interval_ms,
            }),
            retry: None,
            debounce: None,
            deadline: None,
            settings,
            failure_streak: 0,
            push_cap: None,
            cleanup_owed: false,
            timed_out: BTreeMap::new(),
            paging: PagingWatch::default(),
            lock: None,
            durable_high_water: crate::hlc::HlcStamp(0),
        }
    }

    pub(crate) fn online(&self) -> bool {
        self.online
    }

    /// Ends the run: nothing of it is left in flight, and the sync lock is let go.
    pub(crate) fn go_idle(&mut self) {
        self.phase = Phase::Idle;
        self.in_flight = None;
        self.outgoing.clear();
        self.lock = None;
    }

    pub(crate) fn is_running(&self) -> bool {
        self.phase != Phase::Idle
    }

    /// Whether a force-from-server is replacing `entity` (local writes to it must wait:
    /// the replacement would discard them without the plan having counted them).
    pub(crate) fn is_force_pulling(&self, entity: &str) -> bool {
        self.force_pull_entity() == Some(entity)
    }

    /// The entity a running force-from-server replaces, if one runs.
    pub(crate) fn force_pull_entity(&self) -> Option<&str> {
        match &self.phase {
            Phase::ForcePull { entity } => Some(entity),
            _ => None,
        }
    }

    /// Whether a sync waits to run after the current run.
    pub(crate) fn rerun_requested(&self) -> bool {
        self.rerun_requested
    }

    /// Queues an event for the app.
    pub(crate) fn report(&mut self, event: SyncEvent) {
        self.events.push_back(event);
    }

    pub(crate) fn arm_debounce(&mut self, now_ms: u64) {
        self.debounce = Some(Timer {
            armed_at_ms: now_ms,
            delay_ms: self.settings.after_write_delay_ms,
        });
    }

    /// The in-flight request's deadline timer, if the settings set one and the request it
    /// was armed for is still in flight.
    fn live_deadline(&mut self) -> Option<(u64, &mut Timer)> {
        let in_flight_id = self.in_flight.as_ref().map(|(id, _)| *id)?;
        match self.deadline.as_mut() {
            Some((id, timer)) if *id == in_flight_id => Some((*id, timer)),
            _ => None,
        }
    }
}

impl Engine {
    // ---- inputs -------------------------------------------------------------------------

    /// The app came to the foreground: sync if online, restart the interval timer.
    pub fn handle_app_open(&mut self) -> Result<(), SyncError> {
        let now_ms = self.env.now_ms();
        self.sync.interval = Some(Timer {
            armed_at_ms: now_ms,
            delay_ms: self.sync.settings.interval_ms,
        });
        self.start_sync(SyncTrigger::AppOpen)
    }

    /// Connectivity changed; going online starts a sync.
    pub fn handle_network_change(&mut self, online: bool) -> Result<(), SyncError> {
        let was_online = self.sync.online;
        self.sync.online = online;
        if online && !was_online {
            return self.start_sync(SyncTrigger::NetworkRegained);
        }
        Ok(())
    }

    /// The user pressed "sync now".
    pub fn sync_now(&mut self) -> Result<(), SyncError> {
        self.start_sync(SyncTrigger::Manual)
    }

    /// The earliest timer deadline on the device clock, if any timer is armed.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        let now_ms = self.env.now_ms();
        let request_deadline = self
            .sync
            .live_deadline()
            .map(|(_, timer)| timer.deadline(now_ms));
        [
            &mut self.sync.interval,
            &mut self.sync.retry,
            &mut self.sync.debounce,
        ]
        .into_iter()
        .filter_map(|timer| timer.as_mut().map(|timer| timer.deadline(now_ms)))
        .chain(request_deadline)
        .min()
    }

    /// Fires every timer whose deadline has passed on the device clock. A request past its
    /// deadline (`SyncSettings::request_deadline_ms`) fails as a transport timeout first.
    pub fn handle_timeout(&mut self) -> Result<(), SyncError> {
        let now_ms = self.env.now_ms();
        let overdue = self.sync.live_deadline().and_then(|(request_id, timer)| {
            (timer.deadline(now_ms) <= now_ms).then_some((request_id, timer.delay_ms))
        });
        if let Some((request_id, delay_ms)) = overdue {
            self.sync.deadline = None;
            let message = format!("no answer within {delay_ms} ms");
            self.handle_response(request_id, Err(TransportError::timeout(&message)))?;
        }
        let mut fired = Vec::new();
        if let Some(timer) = self.sync.interval.as_mut() {
            if timer.deadline(now_ms) <= now_ms {
                self.sync.interval = Some(Timer {
                    armed_at_ms: now_ms,
                    delay_ms: self.sync.settings.interval_ms,
                });
                fired.push(SyncTrigger::Interval);
            }
        }
        for (slot, trigger) in [
            (&mut self.sync.retry, SyncTrigger::Retry),
            (&mut self.sync.debounce, SyncTrigger::AfterWrite),
        ] {
            if let Some(timer) = slot.as_mut() {
                if timer.deadline(now_ms) <= now_ms {
                    *slot = None;
                    fired.push(trigger);
                }
            }
        }
        for trigger in fired {
            self.start_sync(trigger)?;
        }
        Ok(())
    }

    /// The next request to send, if any.
    pub fn poll_request(&mut self) -> Option<SyncRequest> {
        // A killed app hands out nothing it built before dying.
        self.ensure_alive().ok()?;
        self.sync.outgoing.pop_front()
    }

    /// The next event for the app, if any.
    pub fn poll_event(&mut self) -> Option<SyncEvent> {
        self.ensure_alive().ok()?;
        self.sync.events.pop_front()
    }

    /// The answer to request `request_id`: the JSON envelope, or a transport failure.
    /// Answers to requests that are no longer in flight (duplicates, late deliveries,
    /// requests of a sync that was abandoned) are ignored.
    pub fn handle_response(
        &mut self,
        request_id: u64,
        response: Result<Value, TransportError>,
    ) -> Result<(), SyncError> {
        self.handle_sync_answer(request_id, response.map(SyncAnswer::Json))
    }

    /// [`Engine::handle_response`] for an answer that may come typed from a server in the
    /// same process ([`SyncAnswer`]).
    pub fn handle_sync_answer(
        &mut self,
        request_id: u64,
        response: Result<SyncAnswer, TransportError>,
    ) -> Result<(), SyncError> {
        self.ensure_alive().map_err(SyncError::Killed)?;
        let defects = self.options.planted_defects;
        let now_ms = self.env.now_ms();
        if defects.forget_timed_out_requests {
            let forgotten = self
                .sync
                .timed_out
                .get(&request_id)
                .is_some_and(|(at_ms, _)| now_ms >= at_ms.saturating_add(TIMED_OUT_MEMORY_MS));
            if forgotten {
                let (_, timed_out) = self.sync.timed_out.remove(&request_id).expect("found");
                return self
                    .handle_answer(timed_out, response)
                    .map_err(|error| self.abandon_after_storage_failure(error));
            }
        }
        let Some((expected_id, in_flight)) = self.sync.in_flight.take() else {
            return Ok(());
        };
        let issued_here =
            (self.sync.first_request_id..self.sync.next_request_id).contains(&request_id);
        let taken_blindly = defects.accept_stale_answers && !issued_here;
        if expected_id != request_id && !taken_blindly {
            self.sync.in_flight = Some((expected_id, in_flight));
            return Ok(());
        }
        let timed_out =
            matches!(&response, Err(error) if error.kind == TransportErrorKind::Timeout);
        if defects.forget_timed_out_requests && expected_id == request_id && timed_out {
            let entry = (now_ms, in_flight.clone());
            self.sync.timed_out.insert(request_id, entry);
        }
        self.handle_answer(in_flight, response)
            .map_err(|error| self.abandon_after_storage_failure(error))
    }

    /// The answer to the request in flight (already taken out of `in_flight`).
    fn handle_answer(
        &mut self,
        in_flight: InFlight,
        response: Result<SyncAnswer, TransportError>,
    ) -> Result<(), SyncError> {
        self.crash_point(CrashPoint::BeforeStoringResponse)
            .map_err(SyncError::Killed)?;
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                return self.fail_sync(SyncFailure::Transport {
                    kind: error.kind,
                    message: error.message,
                })
            }
        };
        match in_flight {
            InFlight::Push {
                ops,
                operation_name,
            } => self.handle_push_response(ops, &operation_name, response),
            InFlight::Pull {
                entity,
                operation_name,
                cursor,
            } => self.handle_pull_response(&entity, &operation_name, &cursor, response),
        }
    }

    /// Runs one whole sync over a blocking transport; returns the events it produced.
    pub fn sync_blocking(
        &mut self,
        transport: &mut dyn Transport,
    ) -> Result<Vec<SyncEvent>, SyncError> {
        self.sync_now()?;
        self.drive_blocking(transport)
    }

    /// Sends every request the machine has (and any it produces in answer) until it goes
    /// quiet; returns the events produced meanwhile.
    pub fn drive_blocking(
        &mut self,
        transport: &mut dyn Transport,
    ) -> Result<Vec<SyncEvent>, SyncError> {
        while let Some(request) = self.poll_request() {
            let request_id = request.request_id;
            let response = transport.send_for_answer(request);
            self.handle_sync_answer(request_id, response)?;
        }
        Ok(std::iter::from_fn(|| self.poll_event()).collect())
    }

    // ---- the run ------------------------------------------------------------------------

    fn start_sync(&mut self, trigger: SyncTrigger) -> Result<(), SyncError> {
        self.ensure_alive().map_err(SyncError::Killed)?;
        if !self.sync.online {
            return Ok(());
        }
        if self.sync.phase != Phase::Idle {
            self.sync.rerun_requested = true;
            return Ok(());
        }
        match self.take_sync_lock() {
            Ok(true) => {}
            Ok(false) => {
                let now_ms = self.env.now_ms();
                let delay_ms = self.sync.settings.backoff_delay_ms(1, self.env.next_u64());
                self.sync.retry = Some(Timer {
                    armed_at_ms: now_ms,
                    delay_ms,
                });
                self.sync.events.push_back(SyncEvent::SyncDeferred {
                    retry_at_ms: now_ms + delay_ms,
                });
                return Ok(());
            }
            Err(error) => {
                // Nothing of a run began: no lock, nothing marked.
                if let SyncError::Storage(storage) = &error {
                    let reason = SyncFailure::storage(storage);
                    let retry_at_ms = Some(self.arm_retry());
                    self.sync.events.push_back(SyncEvent::SyncFailed {
                        reason,
                        retry_at_ms,
                    });
                }
                return Err(error);
            }
        }
        self.sync.retry = None;
        self.sync.debounce = None;
        self.sync.push_cap = None;
        self.sync.repaired.clear();
        self.sync.phase = Phase::Pushing;
        self.sync
            .events
            .push_back(SyncEvent::SyncStarted { trigger });
        self.clean_up_owed()
            .and_then(|()| self.advance())
            .map_err(|error| self.abandon_after_storage_failure(error))
    }

    /// Sets every op left `sending` back to `pending` and drops staged force pages, in
    /// one transaction. Run when a storage failure ends a sync, and again at the next
    /// sync's start when that failure kept it from committing.
    fn clean_up(&mut self, reason: &str) -> Result<(), CommitError> {
        let now_ms = self.env.now_ms();
        self.crash.commit_in(
            &mut self.conn,
            CommitSite::SendingReset,
            &mut self.sync.events,
            |conn| {
                store::reset_sending(conn, Some(reason), now_ms)?;
                store::force_staging::clear(conn)
            },
        )?;
        self.sync.cleanup_owed = false;
        Ok(())
    }

    /// Takes the database's sync lock for a run of this process (a sync, a force, a wipe)
    /// unless it holds it already; `Ok(false)` when another process of the app holds it.
    /// Whoever takes the lock knows that an op still `sending` was left by a process that
    /// is gone (it let go by dying), and puts it back to `pending` before anything else.
    pub(crate) fn take_sync_lock(&mut self) -> Result<bool, SyncError> {
        if self.sync.lock.is_some() || self.options.planted_defects.sync_without_lock {
            return Ok(true);
        }
        let path = self.options.location.sync_lock_path(&self.options.tenant);
        let acquired = SyncLock::try_acquire(&path, self.process_token).map_err(|error| {
            SyncError::Storage(crate::error::StorageError::from_io(&error, "the sync lock"))
        })?;
        let Acquired::Held(lock) = acquired else {
            return Ok(false);
        };
        self.sync.lock = Some(lock);
        let left_behind = match store::has_sending_op_anywhere(&self.conn) {
            Ok(true) => {
                let reason = if self.sync.cleanup_owed {
                    "storage failure"
                } else {
                    "interrupted: another process of the app stopped while sending"
                };
                self.clean_up(reason).map_err(SyncError::from)
            }
            Ok(false) => Ok(()),
            Err(error) => Err(error.into()),
        };
        if let Err(error) = left_behind {
            // Whoever takes the lock next (this process included) cleans up.
            if matches!(error, SyncError::Storage(_)) {
                self.sync.cleanup_owed = true;
            }
            self.sync.lock = None;
            return Err(error);
        }
        Ok(true)
    }

    /// Lets go of the sync lock if no run of this process needs it (a force or a wipe
    /// that took it and started no sync).
    pub(crate) fn release_sync_lock_if_idle(&mut self) {
        if self.sync.phase == Phase::Idle {
            self.sync.lock = None;
        }
    }

    fn clean_up_owed(&mut self) -> Result<(), SyncError> {
        if self.sync.cleanup_owed {
            self.clean_up("storage failure")?;
        }
        Ok(())
    }

    /// A storage failure (a full disk, a lock another connection holds) inside the sync
    /// machine: its transaction rolled back whole, and the run it was part of ends here,
    /// as a failed sync the retry timer tries again (or a failed force), so the next
    /// trigger starts a sync instead of waiting behind one that has nothing in flight.
    /// Returns the error for the caller; a kill or a damaged row passes through as it is.
    fn abandon_after_storage_failure(&mut self, error: SyncError) -> SyncError {
        let SyncError::Storage(storage) = &error else {
            return error;
        };
        if self.options.planted_defects.storage_error_leaves_sync_stuck {
            return error;
        }
        let reason = SyncFailure::storage(storage);
        let force_entity = self.sync.force_pull_entity().map(str::to_owned);
        self.sync.deadline = None;
        let rerun = std::mem::take(&mut self.sync.rerun_requested);
        // The clean-up runs while this process still holds the lock its ops were marked
        // under; the next holder (this process or another) does it if it fails here.
        let cleaned = self.clean_up(&reason.to_string());
        self.sync.go_idle();
        match cleaned {
            Ok(()) => {}
            Err(CommitError::Killed(point)) => return SyncError::Killed(point),
            Err(CommitError::Storage(_)) => self.sync.cleanup_owed = true,
        }
        // A force is not retried; a sync that waited for it is.
        let retry_at_ms = (force_entity.is_none() || rerun).then(|| self.arm_retry());
        let event = match force_entity {
            Some(entity) => SyncEvent::ForceFailed { entity, reason },
            None => SyncEvent::SyncFailed {
                reason,
                retry_at_ms,
            },
        };
        self.sync.events.push_back(event);
        error
    }

    /// Arms the retry timer with the backoff of one more failure in a row; returns its
    /// deadline.
    fn arm_retry(&mut self) -> u64 {
        let now_ms = self.env.now_ms();
        self.sync.failure_streak = self.sync.failure_streak.saturating_add(1);
        let delay_ms = self
            .sync
            .settings
            .backoff_delay_ms(self.sync.failure_streak, self.env.next_u64());
        self.sync.retry = Some(Timer {
            armed_at_ms: now_ms,
            delay_ms,
        });
        now_ms + delay_ms
    }

    /// Emits the next request of the current phase, or moves to the next phase.
    pub(crate) fn advance(&mut self) -> Result<(), SyncError> {
        assert!(self.sync.in_flight.is_none());
        loop {
            match self.sync.phase.clone() {
                Phase::Idle | Phase::ForcePull { .. } => return Ok(()),
                Phase::Pushing => {
                    if self.emit_push()? {
                        return Ok(());
                    }
                    self.sync.phase = Phase::Pulling {
                        entity_index: 0,
                        repair: None,
                    };
                }
                Phase::Pulling { entity_index, .. } => {
                    if entity_index >= self.options.registry.entities().len() {
                        return self.finish_sync();
                    }
                    let entity = self.options.registry.entities()[entity_index]
                        .name()
                        .to_owned();
                    let cursor = store::cursor(&self.conn, &entity)?;
                    if cursor.is_none() && store::resync_under_way(&self.conn, &entity)? {
                        // A resync pass was cut short: only a whole pass can tell which
                        // records the server no longer has, so it runs again whole.
                        self.begin_resync_pass(entity_index, &entity, false);
                        return Ok(());
                    }
                    self.emit_pull(&entity, cursor);
                    return Ok(());
                }
            }
        }
    }

    fn token(&mut self) -> Option<String> {
        store::token(&self.conn, "default").ok().flatten()
    }

    fn emit_request(
        &mut self,
        operation_name: String,
        variables: SyncVariables,
        in_flight: InFlight,
    ) {
        let token = self.token().unwrap_or_default();
        let request_id = self.sync.next_request_id;
        self.sync.next_request_id += 1;
        self.sync.outgoing.push_back(SyncRequest {
            request_id,
            operation_name,
            tenant_id: self.options.tenant.as_str().to_owned(),
            token,
            variables,
        });
        self.sync.in_flight = Some((request_id, in_flight));
        self.sync.deadline = self.sync.settings.request_deadline_ms.map(|delay_ms| {
            let armed_at_ms = self.env.now_ms();
            (
                request_id,
                Timer {
                    armed_at_ms,
                    delay_ms,
                },
            )
        });
    }

    /// Marks the next push run `sending` and emits its request; false if nothing to push.
    fn emit_push(&mut self) -> Result<bool, SyncError> {
        let now_ms = self.env.now_ms();
        let tx = self.conn.transaction()?;
        let prepared = prepare_push(&tx, &self.options.registry, self.sync.push_cap, now_ms)?;
        self.crash
            .commit(tx, CommitSite::MarkSending, &mut self.sync.events)?;
        match prepared {
            Some(prepared) => self.send_push(prepared).map(|()| true),
            None => Ok(false),
        }
    }

    /// Emits the request of a push run whose `sending` marks have committed.
    /// Before it leaves, every stamp, id and `opId` the engine handed out (the request's
    /// among them) is made durable: after a power loss the clock resumes at or after each,
    /// and no write the server may hold vanishes from the device (ARCHITECTURE.md,
    /// "Durability").
    ///
    /// Another process of the app may have handed out stamps this one never saw: the
    /// database's high-water mark above the one this process last made durable says so.
    pub(crate) fn send_push(&mut self, prepared: PreparedPush) -> Result<(), SyncError> {
        if !self.options.planted_defects.push_before_durable {
            let high_water = store::hlc_high_water(&self.conn)?;
            let issued_here = self.hlc.take_issued_since_barrier();
            if issued_here || high_water > self.sync.durable_high_water {
                let mark = self.options.location.clock_mark_path(&self.options.tenant);
                let durable = store::durability_barrier(&self.conn)
                    .map_err(SyncError::from)
                    .and_then(|()| {
                        crate::clock_mark::raise(&mark, high_water).map_err(|error| {
                            SyncError::Storage(crate::error::StorageError::from_io(
                                &error,
                                "the clock mark",
                            ))
                        })
                    });
                if let Err(error) = durable {
                    self.hlc.mark_issued();
                    return Err(error);
                }
                self.sync.durable_high_water = high_water;
            }
        }
        let variables = SyncVariables::Push(SyncPushVariables {
            payload: prepared.payload,
            tenant_id: self.options.tenant.as_str().to_owned(),
        });
        self.emit_request(
            prepared.operation_name.clone(),
            variables,
            InFlight::Push {
                ops: prepared.ops,
                operation_name: prepared.operation_name,
            },
        );
        self.crash_point(CrashPoint::AfterMarkSending)
            .map_err(SyncError::Killed)
    }

    /// Emits the first pull of a run of pages of `entity`, from `cursor`.
    pub(crate) fn emit_pull(&mut self, entity: &str, cursor: Option<String>) {
        self.sync
            .paging
            .start(cursor.as_deref().unwrap_or_default());
        self.emit_next_page(entity, cursor);
    }

    /// Emits the pull of the next page of the run of pages under way.
    pub(crate) fn emit_next_page(&mut self, entity: &str, cursor: Option<String>) {
        let sent = cursor.clone().unwrap_or_default();
        let config = self
            .options
            .registry
            .get(entity)
            .expect("pulling a registered entity");
        let operation_name = config.pull_operation_name();
        let variables = SyncVariables::Pull(SyncPullVariables {
            last_sync_at: cursor,
            tenant_id: self.options.tenant.as_str().to_owned(),
            limit: Some(config.pull_page_limit as i64),
        });
        self.emit_request(
            operation_name.clone(),
            variables,
            InFlight::Pull {
                entity: entity.to_owned(),
                operation_name,
                cursor: sent,
            },
        );
    }

    /// Abandons the running sync: ops in flight go back to `pending`, and answers to the
    /// abandoned request are ignored when they arrive.
    /// A running force-from-server ends with `ForceFailed` (its app waits for an outcome)
    /// and its staged pages are dropped.
    pub fn cancel_sync(&mut self) -> Result<(), SyncError> {
        self.abandon_run()?;
        self.sync.lock = None;
        Ok(())
    }

    /// [`Engine::cancel_sync`], keeping the sync lock if this process holds it (a force or
    /// a wipe runs next under it). Only the holder resets `sending` ops: when another
    /// process syncs, they are its ops in flight.
    pub(crate) fn abandon_run(&mut self) -> Result<(), SyncError> {
        let now_ms = self.env.now_ms();
        if self.sync.lock.is_some() || self.options.planted_defects.sync_without_lock {
            self.crash.commit_in(
                &mut self.conn,
                CommitSite::SendingReset,
                &mut self.sync.events,
                |conn| store::reset_sending(conn, Some("sync cancelled"), now_ms),
            )?;
        }
        if let Some(entity) = self.sync.force_pull_entity().map(str::to_owned) {
            self.crash.commit_in(
                &mut self.conn,
                CommitSite::StagingCleared,
                &mut self.sync.events,
                store::force_staging::clear,
            )?;
            self.sync.report(SyncEvent::ForceFailed {
                entity,
                reason: SyncFailure::Cancelled,
            });
        }
        self.sync.phase = Phase::Idle;
        self.sync.in_flight = None;
        self.sync.outgoing.clear();
        self.sync.rerun_requested = false;
        Ok(())
    }

    // ---- force-from-server hooks (the force itself is in `force.rs`) --------------------

    /// Starts pulling `entity` from the start for a confirmed force-from-server, with no
    /// page of an earlier force staged. `rerun_after`: a sync runs once the force ended
    /// (the force abandoned one).
    pub(crate) fn start_force_pull(
        &mut self,
        entity: &str,
        rerun_after: bool,
    ) -> Result<(), SyncError> {
        assert_eq!(self.sync.phase, Phase::Idle);
        assert!(self.sync.in_flight.is_none());
        self.crash.commit_in(
            &mut self.conn,
            CommitSite::StagingCleared,
            &mut self.sync.events,
            store::force_staging::clear,
        )?;
        self.sync.phase = Phase::ForcePull {
            entity: entity.to_owned(),
        };
        self.sync.rerun_requested = rerun_after;
        self.emit_pull(entity, None);
        Ok(())
    }

    /// The running force-from-server ended (`event` says how); a sync requested while it
    /// ran, or abandoned when it began, starts now.
    pub(crate) fn end_force_pull(&mut self, event: SyncEvent) -> Result<(), SyncError> {
        assert!(self.sync.force_pull_entity().is_some());
        assert!(matches!(
            event,
            SyncEvent::ForceCompleted { .. } | SyncEvent::ForceFailed { .. }
        ));
        self.sync.go_idle();
        self.sync.events.push_back(event);
        if std::mem::take(&mut self.sync.rerun_requested) {
            return self.start_sync(SyncTrigger::Manual);
        }
        Ok(())
    }

    fn finish_sync(&mut self) -> Result<(), SyncError> {
        let now_ms = self.env.now_ms();
        self.crash.commit_in(
            &mut self.conn,
            CommitSite::SyncCompleted,
            &mut self.sync.events,
            |conn| store::set_last_successful_sync_ms(conn, now_ms),
        )?;
        self.sync.go_idle();
        self.sync.failure_streak = 0;
        self.sync.events.push_back(SyncEvent::SyncCompleted);
        if std::mem::take(&mut self.sync.rerun_requested) {
            return self.start_sync(SyncTrigger::Manual);
        }
        Ok(())
    }

    /// Stops the sync: ops in flight go back to `pending`; transient failures re-arm the
    /// retry timer with backoff. A running force-from-server ends with `ForceFailed`.
    pub(crate) fn fail_sync(&mut self, reason: SyncFailure) -> Result<(), SyncError> {
        if self.sync.force_pull_entity().is_some() {
            // A force is not a sync: it ends with its own outcome and is not retried.
            return self.fail_force(reason);
        }
        let now_ms = self.env.now_ms();
        self.crash.commit_in(
            &mut self.conn,
            CommitSite::SendingReset,
            &mut self.sync.events,
            |conn| store::reset_sending(conn, Some(&reason.to_string()), now_ms),
        )?;
        self.sync.go_idle();
        self.sync.rerun_requested = false;
        let retry_at_ms = if reason.is_transient() {
            let retry_at_ms = self.arm_retry();
            if self.options.planted_defects.retry_replaces_interval {
                self.sync.interval = None;
            }
            Some(retry_at_ms)
        } else {
            None
        };
        self.sync.events.push_back(SyncEvent::SyncFailed {
            reason,
            retry_at_ms,
        });
        Ok(())
    }
}

/// The largest version a server may report: far beyond any real count of writes, far
/// below overflow when the engine adds to it.
const VERSION_MAX: i64 = 1 << 52;

pub(crate) fn plausible_version(version: i64) -> bool {
    (1..=VERSION_MAX).contains(&version)
}

/// Stamps past the year ~6400 are refused: adopting one would exhaust the HLC.
pub(crate) fn plausible_stamp(stamp: crate::hlc::HlcStamp) -> bool {
    stamp.wall_ms() < 1 << 47
}
