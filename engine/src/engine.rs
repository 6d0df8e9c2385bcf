//! The engine an app embeds: one open tenant database, local-first CRUD, reads, status.
//!
//! Every local write commits the record and its queued operation in one transaction,
//! together with the HLC high-water mark. The engine owns no thread, socket or clock: the
//! sync half of its API (in `sync.rs`) takes inputs and hands out requests as data.

use crate::crash::{CommitSite, CrashPoint, CrashState};
use crate::env::Env;
use crate::error::{OpenError, ReadError, SyncError, WriteError};
use crate::hlc::Hlc;
use crate::ids::uuid_v7;
use crate::record::{ListOptions, OpStatus, QueuedOp, Record, SyncStatus};
use crate::registry::{EntityConfig, EntityRegistry};
use crate::settings::SyncSettings;
use crate::store::{self, NewOp};
use crate::sync::SyncMachine;
use crate::tenant::{DbLocation, TenantId};
use crate::wire::Operation;
use rusqlite::Connection;
use serde_json::{Map, Value};

/// The token name under which the tenant's auth token is kept (wipes keep it).
const AUTH_TOKEN_NAME: &str = "default";

/// What [`Engine::open`] needs besides the environment.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub location: DbLocation,
    pub tenant: TenantId,
    pub registry: EntityRegistry,
    /// Start a sync shortly after a local write (the spec's optional "after mutation"),
    /// `settings.after_write_delay_ms` after the last one.
    pub sync_after_write: bool,
    /// The sync schedule: interval, after-write delay, backoff, request deadline.
    pub settings: SyncSettings,
    /// How long a write waits for a lock another connection holds (an app's second
    /// process) before it fails with a busy [`StorageError`](crate::StorageError).
    pub busy_timeout_ms: u64,
    /// Deliberately planted bugs for the simulator's self-tests (feature `sim`).
    #[cfg(feature = "sim")]
    pub planted_defects: PlantedDefects,
    /// Without the `sim` feature nothing can plant a defect: all stay off.
    #[cfg(not(feature = "sim"))]
    pub(crate) planted_defects: PlantedDefects,
}

/// Engine bugs the simulator plants to prove it can catch them (`syncsim --defect`).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedDefects {
    /// On open, delete a `-wal` and `-shm` left beside the database as stale leftovers of
    /// a crash. They are not stale: the WAL holds every transaction committed since the
    /// last checkpoint, so a killed app loses its latest writes. Invisible to a harness
    /// whose kills close SQLite cleanly (no WAL is ever left behind).
    pub discard_wal_on_open: bool,
    /// When a push answer confirms an op of a record edited again after the push was sent,
    /// settle the record as if the pushed op were its latest write: it takes the pushed
    /// data and version, and the edits queued while the push was on the wire are dropped.
    /// Invisible unless the user edits a record whose op is in flight.
    pub push_answer_overwrites_newer_edit: bool,
    /// Name tenant files by the lower-cased id with `-` as `_` ("ids are case-insensitive
    /// anyway"): `Acme-1` and `acme_1` share one database. Invisible unless two such
    /// tenants meet on one device. Carried by [`DbLocation`], which names the files.
    pub lossy_tenant_file_name: bool,
    /// Dropping a tenant's database removes the database and its journal but not its
    /// `-wal` and `-shm` ("a closed database has no WAL"). True after a clean close, which
    /// checkpoints; false after a kill. Carried by [`DbLocation`].
    pub drop_leaves_wal: bool,
    /// On a transient sync failure, hand the schedule over to the retry timer: the
    /// interval timer is dropped, and nothing but an app open arms it again. A device
    /// whose sync once failed then syncs only when something pokes it (a write with
    /// `sync_after_write`, the network coming back, "sync now"), so changes from other
    /// devices never arrive on their own.
    pub retry_replaces_interval: bool,
    /// A local write commits its record in one transaction and its queued op in a second.
    /// A kill between the two leaves a changed record that nothing will ever push: the
    /// device silently diverges from the server. Invisible to kills at the named crash
    /// points, which all lie outside a local write's transactions.
    pub split_local_write: bool,
    /// Ignore only the late answers of requests this process sent, and take an answer
    /// to a request id it never issued as the answer to the request in flight: an answer
    /// to a request of the previous process (sent before a kill, a logout or a tenant
    /// switch), maybe another tenant's, passes for the one it waits for. Invisible to a
    /// harness that drops answers addressed to a process that is gone.
    pub accept_stale_answers: bool,
    /// When the server refuses a push request whole with `VALIDATION`, mark every op of
    /// the batch failed, as if each were bad, instead of sending fewer ops at a time until
    /// the refused op stands alone: one bad op fails up to a batch of good ones. Invisible
    /// to a harness whose workload never gets a request refused whole.
    pub fail_whole_batch: bool,
    /// After taking in a remote stamp ahead of its own, the clock hands out that very
    /// stamp at its next tick instead of the stamp after it (an off-by-one in merging a
    /// received stamp). A write made right after pulling a record can then carry the
    /// stamp of the version it overwrote, which "the newer stamp wins" cannot order.
    /// Invisible to an oracle that trusts the stamps it is checking.
    pub hlc_reuses_observed_stamp: bool,
    /// A pulled row older than a pending local edit is written over the record anyway
    /// (the op stays queued), so the app shows the older version until the op's push and
    /// its echo restore the edit. Invisible to an oracle that only looks at the end.
    pub pull_overwrites_pending_edit: bool,
    /// Store a push answer's "after" cursor even when the device's cursor is not the
    /// answer's "before" one: another device's commit between the device's last pull and
    /// this push is then skipped by every later pull, and never arrives.
    pub advance_cursor_past_foreign_commits: bool,
    /// A pulled page's transaction announces nothing: the app is never told of the
    /// records another device changed, and keeps showing them as they were. Invisible to
    /// a harness that does not compare announcements with the database.
    pub skip_pull_notifications: bool,
    /// A storage failure inside a sync (a full disk, a lock another connection holds)
    /// returns its error and nothing more: the machine stays in `Pushing` or `Pulling`
    /// with nothing in flight and its ops `sending`, so every later trigger only asks for
    /// a sync after the one that never ends. Invisible without storage faults.
    pub storage_error_leaves_sync_stuck: bool,
    /// Keep a request that timed out in a table for a while
    /// (15 s of device time) and, once its entry expires, take its late
    /// answer as the answer to that request after all: a push's results settle its ops
    /// again, a pull's page is stored with its cursor, whatever the device did since.
    /// Invisible while every answer comes within a timeout of its request's own: only a
    /// request that reaches the server after the device gave up on it answers later.
    pub forget_timed_out_requests: bool,
    /// Take every pull page's cursor as progress: a page that says more rows follow but
    /// hands back the cursor its request sent (or one already passed in the same run of
    /// pages) is stored and its "next" page asked for, again and again, for as long as the
    /// server answers so. Invisible against a server whose pages always advance.
    pub trust_repeated_cursor: bool,
    /// Take a pulled row with the id, version and stamp the device already holds for the
    /// echo of what it has, whatever its data, and store nothing: "one version, one
    /// content". Invisible against a server that stores exactly what was pushed; a server
    /// that rewrites what it stores hands back other data at the same version, which the
    /// device then never takes, not even in a repair.
    pub same_version_keeps_local_data: bool,
    /// Send a push without the durability barrier: the stamps, ids and `opId`s it carries
    /// may sit in an unsynced WAL when it leaves, so a power loss can take writes the
    /// server already holds off the device and let its clock hand their stamps out again.
    /// Invisible to a harness whose kills keep every byte written (no power loss).
    pub push_before_durable: bool,
    /// On `RESYNC_REQUIRED`, pull the entity again from the start but keep every synced
    /// record the pass does not bring: a record deleted on the server whose tombstone was
    /// purged stays on the device for good. Invisible against a server that keeps every
    /// tombstone (no resync is ever required).
    pub resync_keeps_missing_rows: bool,
    /// Recover a corrupt database by starting it empty ("the server has everything"):
    /// the damaged file is moved aside as promised, but the unsent ops still readable in
    /// it are not carried over, so writes the app was told succeeded vanish. Invisible
    /// unless a database is damaged while it holds ops not yet pushed. Carried by
    /// [`DbLocation`].
    pub recovery_drops_pending_ops: bool,
    /// Sync without the database's sync lock, and take every op found `sending` at open
    /// for a leftover of a crash ("one app, one process"): a second process of the app
    /// (a background sync beside the UI) then pushes again the ops the first one has in
    /// flight, and its open drops the pages a running force has staged. Invisible unless
    /// two processes open one tenant database.
    pub sync_without_lock: bool,
    /// Each process's clock goes on from the high-water mark it read at open, without
    /// taking in what another process of the app persisted since: two processes writing
    /// in the same millisecond hand out the same stamp, so "the newer stamp wins" cannot
    /// order their writes. Invisible unless two processes write to one database.
    pub clock_per_process: bool,
}

impl EngineOptions {
    pub fn new(location: DbLocation, tenant: TenantId, registry: EntityRegistry) -> EngineOptions {
        EngineOptions {
            location,
            tenant,
            registry,
            sync_after_write: false,
            settings: SyncSettings::default(),
            busy_timeout_ms: 5_000,
            planted_defects: PlantedDefects::default(),
        }
    }
}

/// One tenant's open database and sync state machine.
pub struct Engine {
    pub(crate) conn: Connection,
    pub(crate) env: Env,
    /// This process's name in the sync lock's file (`sync_lock.rs`), from entropy.
    pub(crate) process_token: u64,
    pub(crate) hlc: Hlc,
    pub(crate) options: EngineOptions,
    pub(crate) sync: SyncMachine,
    /// The simulator's kill switch; once it fired, the "process" is dead.
    pub(crate) crash: CrashState,
    /// The page limit to restore when a simulated full disk has room again.
    page_limit_before_full: Option<i64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tenant", &self.options.tenant)
            .field("hlc", &self.hlc)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (creating and migrating if needed) the tenant's database. Ops that a crash
    /// left `sending` become `pending` again, and the pages a force-from-server had staged
    /// when the app was killed are dropped (the force never replaced anything).
    ///
    /// A file SQLite finds damaged (not a database, or a page it cannot read: `PRAGMA
    /// quick_check`, one read of every page, before anything is written) is refused with
    /// [`OpenError::Corrupt`] and left exactly as it was;
    /// [`recover_corrupt_database`](crate::recover_corrupt_database) is the way out.
    pub fn open(options: EngineOptions, env: Env) -> Result<Engine, OpenError> {
        let path = options.location.db_path(&options.tenant);
        Engine::open_checked(options, env).map_err(|error| match error {
            // Damage met past the check (a page that turned bad since) is corruption too.
            OpenError::Storage(storage)
                if storage.kind() == crate::error::StorageErrorKind::Corrupt =>
            {
                OpenError::Corrupt {
                    path,
                    detail: storage.to_string(),
                }
            }
            other => other,
        })
    }

    fn open_checked(options: EngineOptions, env: Env) -> Result<Engine, OpenError> {
        if options.registry.entities().is_empty() {
            return Err(crate::error::ConfigError::NoEntities.into());
        }
        options.settings.validate()?;
        std::fs::create_dir_all(options.location.dir())?;
        crate::legacy_names::migrate(&options.location, &options.tenant)?;
        if options.planted_defects.discard_wal_on_open {
            let [wal, shm, ..] = options.location.db_files(&options.tenant);
            for leftover in [wal, shm] {
                match std::fs::remove_file(leftover) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error.into())
                    }
                    _ => {}
                }
            }
        }
        // Another process of the app may be setting the same database up right now.
        let setting_up =
            crate::sync_lock::OpenLock::acquire(&options.location.open_lock_path(&options.tenant))?;
        let mut conn = store::schema::open(
            &options.location.db_path(&options.tenant),
            options.busy_timeout_ms,
        )?;
        drop(setting_up);
        store::changes::install(&conn)?;
        let now_ms = env.now_ms();
        let mut env = env;
        // Request ids start at a random point (below 2^48, so they stay exact in JSON).
        // The first one, random per process, also names the process in the sync lock's
        // file.
        let first_request_id = (env.next_u64() >> 16).max(1);
        let process_token = first_request_id;
        // Ops `sending` and a force's staged pages belong to a sync in flight. With the sync
        // lock free no process runs one, so they are a dead process's leftovers; with it
        // held, another process of the app syncs, and they are its own.
        let lock_path = options.location.sync_lock_path(&options.tenant);
        let lock = crate::sync_lock::SyncLock::try_acquire(&lock_path, process_token)?;
        let nobody_syncs = matches!(lock, crate::sync_lock::Acquired::Held(_))
            || options.planted_defects.sync_without_lock;
        let tx = conn.transaction()?;
        if nobody_syncs {
            store::reset_sending(
                &tx,
                Some("interrupted: the app stopped while sending"),
                now_ms,
            )?;
            store::force_staging::clear(&tx)?;
        }
        store::query::ensure_indexes(&tx, &options.registry)?;
        // The mark beside the database bounds the clock too: it outlives a damaged header.
        let mark = crate::clock_mark::read(&options.location.clock_mark_path(&options.tenant));
        let mut hlc = Hlc::resume(store::hlc_high_water(&tx)?.max(mark.unwrap_or_default()));
        hlc.planted_reuses_observed = options.planted_defects.hlc_reuses_observed_stamp;
        // Before any crash hook is installed: no boundary to kill at.
        #[allow(clippy::disallowed_methods)]
        tx.commit()?;
        drop(lock);
        let sync = SyncMachine::new(now_ms, first_request_id, options.settings);
        let mut crash = CrashState::new();
        crash.planted_skip_pull_notifications = options.planted_defects.skip_pull_notifications;
        Ok(Engine {
            conn,
            env,
            process_token,
            hlc,
            options,
            sync,
            crash,
            page_limit_before_full: None,
        })
    }

    /// Installs the simulator's crash hook (production keeps `NoCrash`).
    #[cfg(feature = "sim")]
    pub fn set_crash_hook(&mut self, hook: Box<dyn crate::crash::CrashHook>) {
        self.crash.hook = hook;
    }

    /// Simulates a full disk (`true`): the database may not grow past its current size,
    /// so a write that needs a new page fails with a "full" storage error, while writes
    /// that fit in the pages it has succeed, as on a real full disk. `false` gives it room
    /// again. SQLite's page limit belongs to one connection, so only the engine can set it
    /// on its own; the simulator's disk-full fault and the tests use this.
    #[doc(hidden)]
    pub fn simulate_full_disk(&mut self, full: bool) -> Result<(), SyncError> {
        if full {
            let limit: i64 = self
                .conn
                .pragma_query_value(None, "max_page_count", |row| row.get(0))?;
            self.page_limit_before_full.get_or_insert(limit);
            let pages: i64 = self
                .conn
                .pragma_query_value(None, "page_count", |row| row.get(0))?;
            self.conn.pragma_update(None, "max_page_count", pages)?;
        } else if let Some(limit) = self.page_limit_before_full.take() {
            self.conn.pragma_update(None, "max_page_count", limit)?;
        }
        Ok(())
    }

    pub fn tenant(&self) -> &TenantId {
        &self.options.tenant
    }

    pub fn registry(&self) -> &EntityRegistry {
        &self.options.registry
    }

    /// Whether a crash point fired; a killed engine must be dropped and reopened.
    #[cfg(feature = "sim")]
    pub fn killed_at(&self) -> Option<CrashPoint> {
        self.crash.killed_at
    }

    pub(crate) fn ensure_alive(&self) -> Result<(), CrashPoint> {
        match self.crash.killed_at {
            Some(point) => Err(point),
            None => Ok(()),
        }
    }

    /// Asks the crash hook whether the app dies at `point`.
    pub(crate) fn crash_point(&mut self, point: CrashPoint) -> Result<(), CrashPoint> {
        self.crash.reached(point)
    }

    /// Refuses a local write to an entity that a running force-from-server replaces.
    pub(crate) fn ensure_not_force_pulling(&self, entity: &str) -> Result<(), WriteError> {
        if self.sync.is_force_pulling(entity) {
            return Err(WriteError::SyncInProgress(
                "a local write to an entity being force-synced from the server",
            ));
        }
        Ok(())
    }

    pub(crate) fn entity_config(&self, entity: &str) -> Result<&EntityConfig, WriteError> {
        self.options
            .registry
            .get(entity)
            .ok_or_else(|| WriteError::UnknownEntity(entity.to_owned()))
    }

    // ---- auth ---------------------------------------------------------------------------

    /// Stores the tenant's auth token (kept by space wipes, dropped with the database).
    pub fn set_auth_token(&mut self, token: &str) -> Result<(), WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        self.crash.commit_in(
            &mut self.conn,
            CommitSite::AuthToken,
            &mut self.sync.events,
            |conn| store::set_token(conn, AUTH_TOKEN_NAME, token),
        )?;
        Ok(())
    }

    pub fn auth_token(&self) -> Result<Option<String>, ReadError> {
        Ok(store::token(&self.conn, AUTH_TOKEN_NAME)?)
    }

    // ---- local-first writes -------------------------------------------------------------

    /// Creates a record locally and queues its `insert`, in one transaction. Returns the
    /// new client id (UUID v7).
    pub fn create(
        &mut self,
        entity: &str,
        space_id: &str,
        data: Value,
    ) -> Result<String, WriteError> {
        let mut ids = self.create_many(entity, space_id, vec![data])?;
        Ok(ids.pop().expect("one id per item"))
    }

    /// Creates many records in ONE transaction (e.g. 10k items offline). All or nothing:
    /// one invalid item rejects the whole batch.
    pub fn create_many(
        &mut self,
        entity: &str,
        space_id: &str,
        items: Vec<Value>,
    ) -> Result<Vec<String>, WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        self.entity_config(entity)?;
        self.ensure_not_force_pulling(entity)?;
        validate_space_id(space_id)?;
        let objects: Vec<Map<String, Value>> = items
            .into_iter()
            .map(into_object)
            .collect::<Result<_, _>>()?;
        let now_ms = self.env.now_ms();
        let split = self.options.planted_defects.split_local_write;
        let mut ids = Vec::with_capacity(objects.len());
        let mut unqueued = Vec::new();
        let tx = self.conn.transaction()?;
        catch_up_clock(&mut self.hlc, &tx, &self.options)?;
        for data in objects {
            let updated_at = self.hlc.tick(now_ms);
            let client_id = uuid_v7(updated_at, self.env.entropy.next_u64()).to_string();
            let op_id = uuid_v7(self.hlc.tick(now_ms), self.env.entropy.next_u64()).to_string();
            let record = Record {
                client_id: client_id.clone(),
                server_id: None,
                entity: entity.to_owned(),
                space_id: space_id.to_owned(),
                version: 1,
                base_version: 0,
                updated_at,
                is_deleted: false,
                data,
            };
            let data_text = store::insert_created_record(&tx, &record)?;
            if split {
                unqueued.push((record, op_id));
            } else {
                store::enqueue_rendered(
                    &tx,
                    &new_op(&record, &op_id, Operation::Insert, false, now_ms),
                    &data_text,
                )?;
            }
            ids.push(client_id);
        }
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        let mut created = ids.clone();
        created.sort_unstable();
        self.crash.commit_announcing(
            tx,
            CommitSite::LocalWrite,
            &mut self.sync.events,
            Some((entity, &created)),
        )?;
        if split {
            let tx = self.conn.transaction()?;
            for (record, op_id) in &unqueued {
                store::enqueue(
                    &tx,
                    &new_op(record, op_id, Operation::Insert, false, now_ms),
                )?;
            }
            self.crash
                .commit(tx, CommitSite::LocalWrite, &mut self.sync.events)?;
        }
        self.after_local_commit()?;
        Ok(ids)
    }

    /// Applies `patch` (a JSON object) to a record's data as a JSON Merge Patch (RFC 7396:
    /// a field set to `null` is removed, an object merges into the object it names, any
    /// other value replaces), bumps its version and queues an `update` carrying the whole
    /// record and its base version, in one transaction.
    pub fn update(&mut self, id: &str, patch: Value) -> Result<Record, WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        let patch = into_object(patch)?;
        let mut record = self.live_record(id)?;
        merge_patch(&mut record.data, patch);
        self.write_local(record, Operation::Update)
    }

    /// Soft-deletes a record and queues a `delete`, in one transaction.
    pub fn delete(&mut self, id: &str) -> Result<(), WriteError> {
        self.ensure_alive().map_err(WriteError::Killed)?;
        let mut record = self.live_record(id)?;
        record.is_deleted = true;
        self.write_local(record, Operation::Delete)?;
        Ok(())
    }

    fn live_record(&self, id: &str) -> Result<Record, WriteError> {
        let record = store::find_record(&self.conn, id)?
            .ok_or_else(|| WriteError::UnknownRecord(id.to_owned()))?;
        self.ensure_not_force_pulling(&record.entity)?;
        if record.is_deleted {
            return Err(WriteError::RecordDeleted(id.to_owned()));
        }
        Ok(record)
    }

    /// Commits a changed record (new stamp, version + 1) and its queued op together.
    pub(crate) fn write_local(
        &mut self,
        mut record: Record,
        operation: Operation,
    ) -> Result<Record, WriteError> {
        self.write_local_with(&mut record, operation, false, |_| Ok(()))?;
        Ok(record)
    }

    /// [`Engine::write_local`] with extra statements in the same transaction (used by
    /// conflict resolution to close the conflict atomically with the new write).
    pub(crate) fn write_local_with(
        &mut self,
        record: &mut Record,
        operation: Operation,
        force: bool,
        extra: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<(), WriteError> {
        let now_ms = self.env.now_ms();
        let tx = self.conn.transaction()?;
        catch_up_clock(&mut self.hlc, &tx, &self.options)?;
        record.updated_at = self.hlc.tick(now_ms);
        record.version += 1;
        let op_id = uuid_v7(self.hlc.tick(now_ms), self.env.entropy.next_u64()).to_string();
        // Every field but the stamp may stay as it was; the stamp is new: a change.
        let changed = [record.client_id.clone()];
        let entity = record.entity.clone();
        extra(&tx)?;
        if let Some(mut open) = store::conflict_for_record(&tx, &record.client_id)? {
            if operation == Operation::Delete {
                // Deletes win over concurrent updates: a delete settles the open conflict,
                // and the waiting updates it supersedes go with it (else the delete would
                // wait behind them forever while the record is already deleted here).
                store::drop_pending_ops_for_record(&tx, &record.client_id)?;
                store::delete_conflict_for_record(&tx, &record.client_id)?;
            } else {
                // The dialog's local side is the record as it is now, so that "Keep Local"
                // or a merge never drops an edit made while the conflict was open.
                open.local_version = record.version;
                open.local_updated_at = record.updated_at;
                open.local_data = record.data.clone();
                store::put_conflict(&tx, &open)?;
            }
        }
        let data_text = store::put_local_record(&tx, record)?;
        let op = new_op(record, &op_id, operation, force, now_ms);
        let known = Some((entity.as_str(), &changed[..]));
        if self.options.planted_defects.split_local_write {
            store::set_hlc_high_water(&tx, self.hlc.last())?;
            self.crash.commit_announcing(
                tx,
                CommitSite::LocalWrite,
                &mut self.sync.events,
                known,
            )?;
            let tx = self.conn.transaction()?;
            store::enqueue(&tx, &op)?;
            self.crash
                .commit(tx, CommitSite::LocalWrite, &mut self.sync.events)?;
            return self.after_local_commit();
        }
        store::enqueue_rendered(&tx, &op, &data_text)?;
        store::set_hlc_high_water(&tx, self.hlc.last())?;
        self.crash
            .commit_announcing(tx, CommitSite::LocalWrite, &mut self.sync.events, known)?;
        self.after_local_commit()
    }

    pub(crate) fn after_local_commit(&mut self) -> Result<(), WriteError> {
        self.crash_point(CrashPoint::AfterLocalCommit)
            .map_err(WriteError::Killed)?;
        if self.options.sync_after_write {
            let now_ms = self.env.now_ms();
            self.sync.arm_debounce(now_ms);
        }
        Ok(())
    }

    // ---- reads --------------------------------------------------------------------------

    /// A record by client id or server id; deleted records are returned (check
    /// `is_deleted`), unknown ids give `None`.
    pub fn get(&self, id: &str) -> Result<Option<Record>, ReadError> {
        Ok(store::find_record(&self.conn, id)?)
    }

    /// Records of one entity type (optionally one space), ordered by client id; deleted
    /// records are hidden unless asked for.
    pub fn list(
        &self,
        entity: &str,
        space_id: Option<&str>,
        options: ListOptions,
    ) -> Result<Vec<Record>, ReadError> {
        if self.options.registry.get(entity).is_none() {
            return Err(ReadError::UnknownEntity(entity.to_owned()));
        }
        Ok(store::list_records(
            &self.conn,
            entity,
            space_id,
            options.include_deleted,
        )?)
    }

    /// Every record of every entity, deleted ones included, ordered by client id.
    pub fn all_records(&self) -> Result<Vec<Record>, ReadError> {
        Ok(store::all_records(&self.conn)?)
    }

    /// The operation queue in push order.
    pub fn queued_ops(&self) -> Result<Vec<QueuedOp>, ReadError> {
        Ok(store::all_ops(&self.conn)?)
    }

    pub fn status(&self) -> Result<SyncStatus, ReadError> {
        Ok(SyncStatus {
            online: self.sync.online(),
            syncing: self.sync.is_running(),
            pending_ops: store::count_unfinished_ops(&self.conn, None)?,
            failed_ops: store::count_ops(&self.conn, OpStatus::Failed, None)?,
            open_conflicts: store::count_conflicts(&self.conn)?,
            last_successful_sync_ms: store::last_successful_sync_ms(&self.conn)?,
        })
    }

    /// The pull cursor of one entity (opaque, server-issued).
    pub fn cursor(&self, entity: &str) -> Result<Option<String>, ReadError> {
        Ok(store::cursor(&self.conn, entity)?)
    }

    /// Drops this tenant's database (logout): cancels any sync in flight (the engine is
    /// consumed, so a late response has nowhere to land) and removes every file SQLite
    /// made for it. Logging in again starts empty, with no cursor.
    pub fn drop_database(self) -> Result<(), OpenError> {
        let Engine { conn, options, .. } = self;
        conn.close().map_err(|(_, error)| error)?;
        drop_tenant_database(&options.location, &options.tenant)
    }

    /// Whole-database consistency checks (the simulator runs them after every step).
    pub fn check_invariants(&self) -> Result<(), String> {
        crate::verify::check_engine(self)
    }
}

/// Removes every file of a tenant's database without opening it (one still under its
/// legacy name too, and a damaged one a recovery kept aside).
pub fn drop_tenant_database(location: &DbLocation, tenant: &TenantId) -> Result<(), OpenError> {
    if location.dir().exists() {
        crate::legacy_names::migrate(location, tenant)?;
    }
    let [wal, shm, journal, main] = location.db_files(tenant);
    let mut files = if location.planted().drop_leaves_wal {
        vec![journal, main]
    } else {
        vec![wal, shm, journal, main]
    };
    // A damaged database kept aside by a recovery goes with the tenant, and so do the
    // lock files.
    files.extend(location.corrupt_aside_files(tenant));
    files.push(location.sync_lock_path(tenant));
    files.push(location.open_lock_path(tenant));
    files.push(location.clock_mark_path(tenant));
    for path in files {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Before a transaction hands out stamps: takes in the high-water mark another process of
/// the app may have raised in the same database, read under the transaction's write lock
/// (transactions begin `IMMEDIATE`), so no two processes hand out one stamp.
pub(crate) fn catch_up_clock(
    hlc: &mut Hlc,
    tx: &Connection,
    options: &EngineOptions,
) -> rusqlite::Result<()> {
    if !options.planted_defects.clock_per_process {
        hlc.catch_up(store::hlc_high_water(tx)?);
    }
    Ok(())
}

/// The queued op of a local write of `record` (its data, base version and stamp).
fn new_op<'a>(
    record: &'a Record,
    op_id: &'a str,
    operation: Operation,
    force: bool,
    now_ms: u64,
) -> NewOp<'a> {
    NewOp {
        op_id,
        entity: &record.entity,
        operation,
        entity_id: &record.client_id,
        space_id: &record.space_id,
        payload: &record.data,
        base_version: record.base_version,
        updated_at: record.updated_at,
        force,
        now_ms,
    }
}

/// RFC 7396 over an object: `null` removes a field, an object patch merges into the
/// field's object (a field that is not an object is replaced by one), anything else
/// replaces the field.
fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (field, value) in patch {
        match value {
            Value::Null => {
                target.remove(&field);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(field)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(nested) = slot else {
                    unreachable!("made an object above")
                };
                merge_patch(nested, inner);
            }
            other => {
                target.insert(field, other);
            }
        }
    }
}

pub(crate) fn into_object(value: Value) -> Result<Map<String, Value>, WriteError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(WriteError::DataNotObject),
    }
}

pub(crate) fn validate_space_id(space_id: &str) -> Result<(), WriteError> {
    if TenantId::parse(space_id).is_err() {
        return Err(WriteError::InvalidSpaceId(space_id.to_owned()));
    }
    Ok(())
}
