//! The in-process reference server: the spec's `syncPush*` / `syncPull*` API over JSON.
//!
//! This module owns the server's public face: request routing, authentication (the tenant
//! comes from the token, DESIGN §4 #9), fault injection for the simulator, planted defects
//! for harness self-tests, and the inspection methods invariant checkers use. Push
//! semantics live in [`push`], pull semantics in [`pull`], and the per-tenant tables with
//! their indexes in [`state`].
//!
//! The server is the oracle the engine is tested against, so it must never read a clock,
//! draw a random number, iterate a hash map, or panic on anything a client sends: malformed
//! input gets an error envelope and changes nothing. A panic here is always a server bug
//! caught by an assertion.

mod pull;
mod push;
pub mod rules;
mod state;
#[cfg(test)]
mod tests;
mod variables;

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use sync_engine::hlc::HlcStamp;
use sync_engine::registry::OperationKind;
use sync_engine::wire::{self, ErrorCode, SyncAnswer, SyncRequest};
use sync_engine::EntityRegistry;

pub use push::{rewritten, SERVER_NOTE_FIELD};
use state::TenantState;
use variables::GivenVariables;

/// The length of a server id, `srv-` and ten digits (longer only past ten billion ids).
const SERVER_ID_LEN: usize = 14;

/// One record as the server stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerRecord {
    pub tenant_id: String,
    pub entity: String,
    /// The server-assigned id, `srv-{:010}`, unique across all tenants.
    pub id: String,
    /// The id the creating device chose; unique within the tenant.
    pub client_id: String,
    pub space_id: String,
    /// Starts at 1 and grows by 1 with every accepted write.
    pub version: i64,
    /// The HLC stamp of the accepted write that produced this version.
    pub updated_at: HlcStamp,
    /// Tombstones are final: once set, nothing clears it.
    pub is_deleted: bool,
    pub data: Map<String, Value>,
    /// The commit stamp of the push request that last changed this record; pulls page in
    /// `(commit_stamp, id)` order.
    pub commit_stamp: u64,
    /// The op that last changed this record.
    pub last_op_id: String,
}

/// One state change caused by one push item, in the order the server applied them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    pub tenant_id: String,
    pub op_id: String,
    /// The server id of the record the op changed.
    pub record_id: String,
    pub commit_stamp: u64,
}

/// One deliberately planted bug, by name: the one table of the names `syncsim --defect`
/// accepts and replay commands print. [`ServerDefects`] holds the switches themselves.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Defect {
    /// [`ServerDefects::skip_op_id_dedupe`].
    SkipOpIdDedupe,
    /// [`ServerDefects::wall_clock_cursor`].
    WallClockCursor,
    /// [`ServerDefects::skip_tenant_check`].
    SkipTenantCheck,
    /// [`ServerDefects::ignore_base_version`].
    IgnoreBaseVersion,
    /// [`ServerDefects::drop_last_row_of_page`].
    DropLastRowOfPage,
    /// [`ServerDefects::discard_wal_on_open`] (an engine defect).
    DiscardWalOnOpen,
    /// [`ServerDefects::push_answer_overwrites_newer_edit`] (an engine defect).
    PushAnswerOverwritesNewerEdit,
    /// [`ServerDefects::lossy_tenant_file_name`] (an engine defect).
    LossyTenantFileName,
    /// [`ServerDefects::drop_leaves_wal`] (an engine defect).
    DropLeavesWal,
    /// [`ServerDefects::retry_replaces_interval`] (an engine defect).
    RetryReplacesInterval,
    /// [`ServerDefects::pages_end_at_commit_boundaries`].
    PagesEndAtCommitBoundaries,
    /// [`ServerDefects::split_local_write`] (an engine defect).
    SplitLocalWrite,
    /// [`ServerDefects::accept_stale_answers`] (an engine defect).
    AcceptStaleAnswers,
    /// [`ServerDefects::fail_whole_batch`] (an engine defect).
    FailWholeBatch,
    /// [`ServerDefects::accept_far_future_stamps`].
    AcceptFarFutureStamps,
    /// [`ServerDefects::hlc_reuses_observed_stamp`] (an engine defect).
    HlcReusesObservedStamp,
    /// [`ServerDefects::conflict_on_same_batch_edit`].
    ConflictOnSameBatchEdit,
    /// [`ServerDefects::pull_overwrites_pending_edit`] (an engine defect).
    PullOverwritesPendingEdit,
    /// [`ServerDefects::advance_cursor_past_foreign_commits`] (an engine defect).
    AdvanceCursorPastForeignCommits,
    /// [`ServerDefects::skip_pull_notifications`] (an engine defect).
    SkipPullNotifications,
    /// [`ServerDefects::storage_error_leaves_sync_stuck`] (an engine defect).
    StorageErrorLeavesSyncStuck,
    /// [`ServerDefects::partial_batch_keeps_rolled_back_results`].
    PartialBatchKeepsRolledBackResults,
    /// [`ServerDefects::forget_timed_out_requests`] (an engine defect).
    ForgetTimedOutRequests,
    /// [`ServerDefects::insert_ignores_known_client_id`].
    InsertIgnoresKnownClientId,
    /// [`ServerDefects::omit_deleted_ids`].
    OmitDeletedIds,
    /// [`ServerDefects::version_hash_counts_tombstones`].
    VersionHashCountsTombstones,
    /// [`ServerDefects::apply_items_before_validating`].
    ApplyItemsBeforeValidating,
    /// [`ServerDefects::trust_repeated_cursor`] (an engine defect).
    TrustRepeatedCursor,
    /// [`ServerDefects::same_version_keeps_local_data`] (an engine defect).
    SameVersionKeepsLocalData,
    /// [`ServerDefects::push_before_durable`] (an engine defect).
    PushBeforeDurable,
    /// [`ServerDefects::resync_keeps_missing_rows`] (an engine defect).
    ResyncKeepsMissingRows,
    /// [`ServerDefects::recovery_drops_pending_ops`] (an engine defect).
    RecoveryDropsPendingOps,
    /// [`ServerDefects::sync_without_lock`] (an engine defect).
    SyncWithoutLock,
    /// [`ServerDefects::clock_per_process`] (an engine defect).
    ClockPerProcess,
}

impl Defect {
    /// Every defect, in declaration order.
    pub const ALL: &'static [Defect] = <Defect as strum::VariantArray>::VARIANTS;
    /// Every defect's name, in the order of [`Defect::ALL`].
    pub const NAMES: &'static [&'static str] = <Defect as strum::VariantNames>::VARIANTS;

    pub fn parse(raw: &str) -> Option<Defect> {
        raw.parse().ok()
    }

    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Deliberately planted bugs, each reproducing a flaw of the spec as written, so that the
/// harness can prove it catches them. All off by default.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerDefects {
    /// Forget idempotency: no replay of stored results by `opId`, no match of an insert's
    /// `clientId`, so a retried insert creates a second row (DESIGN §4 #2).
    pub skip_op_id_dedupe: bool,
    /// Stamp changed rows with the writer's wall clock (`updatedAt.wall_ms()`) instead of
    /// a server counter, so late commits with slow clocks hide behind cursors (§4 #1).
    pub wall_clock_cursor: bool,
    /// Trust `variables.tenantId` whatever the token says (§4 #9).
    pub skip_tenant_check: bool,
    /// Apply every update as a blind last-writer-wins, ignoring `baseVersion` and stamps
    /// (§4 #5).
    pub ignore_base_version: bool,
    /// When a page is not the last, leave its last row out while the cursor moves past it.
    pub drop_last_row_of_page: bool,
    /// An engine defect, carried here so that one table names every planted bug: the
    /// engine deletes the WAL a killed app left as if it were stale (see
    /// `sync_engine::PlantedDefects`). The server ignores it; the kernel hands it to every
    /// engine it opens.
    pub discard_wal_on_open: bool,
    /// An engine defect: a push answer settles its record as if the pushed op were the
    /// latest write, so an edit made while the push was on the wire is lost.
    pub push_answer_overwrites_newer_edit: bool,
    /// An engine defect: tenant database file names fold case and `-` onto `_`, so two
    /// tenants can share one database.
    pub lossy_tenant_file_name: bool,
    /// An engine defect: dropping a tenant that is not open leaves its `-wal` and `-shm`.
    pub drop_leaves_wal: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a transient sync failure
    /// drops the interval timer, so the device syncs again only when poked.
    pub retry_replaces_interval: bool,
    /// Never end a page inside a commit: a page that would split the rows of one push
    /// request ends before them instead (or, when they fill the page, runs to the end of
    /// the commit). Every cursor then sits at a commit boundary, so the clients' handling
    /// of a cursor inside a commit is never exercised; nothing else changes.
    pub pages_end_at_commit_boundaries: bool,
    /// An engine defect: a local write commits its record and its queued op in two
    /// transactions (see `sync_engine::PlantedDefects`); only a kill between the two
    /// commits shows it.
    pub split_local_write: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): an answer to a request id
    /// the process never issued passes for the answer to the request in flight, so an
    /// earlier process's answer is taken. The server ignores it; the kernel hands it to
    /// every engine.
    pub accept_stale_answers: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a push refused whole with
    /// `VALIDATION` fails every op of its batch, good ones too, instead of sending fewer
    /// ops at a time until the refused op stands alone. The server ignores it.
    pub fail_whole_batch: bool,
    /// Store writers' stamps as given, however far ahead of the server's clock: one
    /// device whose clock runs years ahead wins every concurrent write for years, and
    /// drags the clock of every device that pulls its rows years ahead with it.
    pub accept_far_future_stamps: bool,
    /// An engine defect: the clock hands out a stamp it just took in from a pull as the
    /// stamp of the next local write (see `sync_engine::PlantedDefects`).
    pub hlc_reuses_observed_stamp: bool,
    /// Optimistic locking by version within a batch: an update whose `baseVersion` is not
    /// the current version, because an earlier item of the same request just wrote the
    /// record, is answered `CONFLICT` for the user instead of letting the stamps decide.
    /// That earlier item is the same device's previous edit of the record (a device's
    /// follow-up edit carries the base both edits were made on), so the user is asked to
    /// choose between an edit and the one it was made on top of.
    pub conflict_on_same_batch_edit: bool,
    /// An engine defect: a pulled row older than a pending local edit overwrites the
    /// record until the edit's push and echo restore it (see
    /// `sync_engine::PlantedDefects`).
    pub pull_overwrites_pending_edit: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a push answer's "after"
    /// cursor is stored even when the device did not stand at its "before" cursor, so
    /// another device's commit in between is never pulled. The server ignores it.
    pub advance_cursor_past_foreign_commits: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a pulled page's changes are
    /// not announced by a `RecordsChanged` event. The server ignores it.
    pub skip_pull_notifications: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a storage failure inside a
    /// sync leaves the machine mid-run with nothing in flight, so the device never syncs
    /// again until it restarts. Only the storage faults reveal it. The server ignores it.
    pub storage_error_leaves_sync_stuck: bool,
    /// A push that fails after part of its batch was applied rolls back the records it
    /// wrote but keeps the `opId` results it stored along the way (as if they lived
    /// outside the transaction): the retry is answered from those results, so the writer
    /// takes its ops for applied while the server holds none of them. Only the
    /// partial-batch fault reveals it.
    pub partial_batch_keeps_rolled_back_results: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a request that timed out is
    /// remembered for a while only, and once forgotten its answer passes for the answer
    /// to the request in flight. Only the late-arrival fault answers that late. The
    /// server ignores it.
    pub forget_timed_out_requests: bool,
    /// An insert under a new `opId` whose `clientId` the tenant already has creates a
    /// second record instead of answering with the existing one (replay by `opId` still
    /// works): a device that re-issues an insert it never heard back about, as a force
    /// push does, duplicates the record.
    pub insert_ignores_known_client_id: bool,
    /// Pull pages leave `deletedIds` empty: tombstones move the cursor but are never
    /// reported, so a delete never reaches a device that already had the record.
    pub omit_deleted_ids: bool,
    /// The last page's `versionHash` also counts deleted records, so a device holding
    /// exactly the live records never matches it.
    pub version_hash_counts_tombstones: bool,
    /// A push batch is validated item by item while it is applied: the valid items before
    /// a malformed one are applied, then the request is refused. The simulator's clients
    /// never send a malformed item, so only `syncsim conformance` reveals it.
    pub apply_items_before_validating: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a pull page that says more
    /// rows follow but hands back a cursor its run of pages already sent is taken for
    /// progress, and the engine asks for the same page again for as long as the server
    /// answers so. Only the endless-paging fault answers so. The server ignores it.
    pub trust_repeated_cursor: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): a pulled row with the id,
    /// version and stamp the device already holds is taken for the echo of what the
    /// device has, whatever its data, and not stored. Only a server that rewrites what
    /// it stores (the server-rewrite fault) hands back other data at the same version.
    /// The server ignores it.
    pub same_version_keeps_local_data: bool,
    /// Engine: a push leaves without the durability barrier, its writes maybe only in
    /// the unsynced WAL, so a power loss can take them back after the server has them.
    /// The server ignores it.
    pub push_before_durable: bool,
    /// Engine: on `RESYNC_REQUIRED` the entity is pulled again from the start, but the
    /// synced records the pass does not bring are kept. The server ignores it.
    pub resync_keeps_missing_rows: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): the recovery of a corrupt
    /// database starts it empty instead of carrying the readable unsent ops over. Only a
    /// database damaged at open (the corrupt-at-open fault) is ever recovered. The server
    /// ignores it.
    pub recovery_drops_pending_ops: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): engines sync without the
    /// database's sync lock, and an open takes every `sending` op for a crash's leftover.
    /// Only two processes on one database (the second-process class) can tell. The server
    /// ignores it.
    pub sync_without_lock: bool,
    /// An engine defect (see `sync_engine::PlantedDefects`): each process's clock goes on
    /// from what it read at open, blind to stamps another process of the app handed out
    /// since. Only two processes on one database can tell. The server ignores it.
    pub clock_per_process: bool,
}

impl ServerDefects {
    /// The named defects planted together.
    pub fn planting(defects: impl IntoIterator<Item = Defect>) -> ServerDefects {
        let mut planted = ServerDefects::default();
        for defect in defects {
            *planted.switch(defect) = true;
        }
        planted
    }

    /// The planted defects, in [`Defect::ALL`] order (the inverse of [`Self::planting`]).
    pub fn planted(self) -> Vec<Defect> {
        let mut defects = self;
        Defect::ALL
            .iter()
            .copied()
            .filter(|defect| *defects.switch(*defect))
            .collect()
    }

    /// The switch of one defect: the one place that maps a name to a field, exhaustive so
    /// that a new [`Defect`] cannot compile without its field.
    fn switch(&mut self, defect: Defect) -> &mut bool {
        match defect {
            Defect::SkipOpIdDedupe => &mut self.skip_op_id_dedupe,
            Defect::WallClockCursor => &mut self.wall_clock_cursor,
            Defect::SkipTenantCheck => &mut self.skip_tenant_check,
            Defect::IgnoreBaseVersion => &mut self.ignore_base_version,
            Defect::DropLastRowOfPage => &mut self.drop_last_row_of_page,
            Defect::DiscardWalOnOpen => &mut self.discard_wal_on_open,
            Defect::PushAnswerOverwritesNewerEdit => &mut self.push_answer_overwrites_newer_edit,
            Defect::LossyTenantFileName => &mut self.lossy_tenant_file_name,
            Defect::DropLeavesWal => &mut self.drop_leaves_wal,
            Defect::RetryReplacesInterval => &mut self.retry_replaces_interval,
            Defect::PagesEndAtCommitBoundaries => &mut self.pages_end_at_commit_boundaries,
            Defect::SplitLocalWrite => &mut self.split_local_write,
            Defect::AcceptStaleAnswers => &mut self.accept_stale_answers,
            Defect::FailWholeBatch => &mut self.fail_whole_batch,
            Defect::AcceptFarFutureStamps => &mut self.accept_far_future_stamps,
            Defect::HlcReusesObservedStamp => &mut self.hlc_reuses_observed_stamp,
            Defect::ConflictOnSameBatchEdit => &mut self.conflict_on_same_batch_edit,
            Defect::PullOverwritesPendingEdit => &mut self.pull_overwrites_pending_edit,
            Defect::AdvanceCursorPastForeignCommits => {
                &mut self.advance_cursor_past_foreign_commits
            }
            Defect::SkipPullNotifications => &mut self.skip_pull_notifications,
            Defect::StorageErrorLeavesSyncStuck => &mut self.storage_error_leaves_sync_stuck,
            Defect::PartialBatchKeepsRolledBackResults => {
                &mut self.partial_batch_keeps_rolled_back_results
            }
            Defect::ForgetTimedOutRequests => &mut self.forget_timed_out_requests,
            Defect::InsertIgnoresKnownClientId => &mut self.insert_ignores_known_client_id,
            Defect::OmitDeletedIds => &mut self.omit_deleted_ids,
            Defect::VersionHashCountsTombstones => &mut self.version_hash_counts_tombstones,
            Defect::ApplyItemsBeforeValidating => &mut self.apply_items_before_validating,
            Defect::TrustRepeatedCursor => &mut self.trust_repeated_cursor,
            Defect::SameVersionKeepsLocalData => &mut self.same_version_keeps_local_data,
            Defect::PushBeforeDurable => &mut self.push_before_durable,
            Defect::ResyncKeepsMissingRows => &mut self.resync_keeps_missing_rows,
            Defect::RecoveryDropsPendingOps => &mut self.recovery_drops_pending_ops,
            Defect::SyncWithoutLock => &mut self.sync_without_lock,
            Defect::ClockPerProcess => &mut self.clock_per_process,
        }
    }

    /// Whether a `clientId` may own several records (idempotency switched off).
    pub(super) fn allows_duplicate_client_ids(self) -> bool {
        self.skip_op_id_dedupe || self.insert_ignores_known_client_id
    }

    /// Each flag that is set in either.
    fn union(self, other: ServerDefects) -> ServerDefects {
        ServerDefects::planting(self.planted().into_iter().chain(other.planted()))
    }
}

/// A fault the simulator injects into one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerFault {
    None,
    /// Answer `SERVER_BUSY` without looking at the request; nothing changes.
    FailBeforeApplying,
    /// Apply the request, then lose the response: the client sees nothing.
    ApplyThenLoseResponse,
    /// Apply the request; the response arrives `delay_ms` later.
    SlowResponse {
        delay_ms: u64,
    },
    /// Apply the first `applied` items of a push batch (at least one, fewer than all),
    /// then fail: answer `SERVER_BUSY`, or (`connection_dropped`) answer nothing. A
    /// request the server would refuse whole is refused as usual and changes nothing.
    ApplyPrefixThenFail {
        applied: usize,
        connection_dropped: bool,
    },
    /// Answer a pull as a page that does not advance: the page is read as usual, then
    /// handed back with the request's own cursor and `hasMore: true`, keeping its rows
    /// only `with_items`. A pull the server refuses is refused as usual; anything but a
    /// pull is answered as usual. Pulls change nothing, so neither does this.
    RepeatCursor {
        with_items: bool,
    },
    /// Apply a push, storing each inserted or updated row rewritten
    /// ([`push::rewritten`]: the title trimmed, a server-set `serverNote` added) at the
    /// version the server assigns, and answer with both cursors null: the results carry
    /// ids, versions and stamps but not the stored data, so the writer must pull it. A
    /// push the server refuses is refused as usual; anything but a push is answered as
    /// usual.
    RewriteStored,
}

/// What the server hands back to the simulated network.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerReply {
    Response(Value),
    /// The request was applied but its response is gone.
    Lost,
    Delayed {
        response: Value,
        delay_ms: u64,
    },
}

/// The reference server: every tenant's records, stored push results and effect log.
#[derive(Clone, Debug)]
pub struct ReferenceServer {
    registry: EntityRegistry,
    defects: ServerDefects,
    /// Every defect that was ever switched on: invariants a defect deliberately breaks
    /// stay unchecked for the rest of the run, even after the defect is switched off.
    defects_ever: ServerDefects,
    /// Bearer token → tenant id.
    tenant_by_token: BTreeMap<String, String>,
    tenants: BTreeMap<String, TenantState>,
    /// The last server id number handed out; ids are unique across tenants.
    server_id_last: u64,
    effects: Vec<Effect>,
    /// `effects` counted per tenant, then per opId, kept so invariants are cheap to check
    /// inline. Nested rather than keyed by the pair so that counting an effect looks the
    /// tenant up by `&str` and copies only the opId.
    effect_count_by_op: BTreeMap<String, BTreeMap<String, usize>>,
    /// Client ids whose pushes the server's business rules refuse (see
    /// [`ReferenceServer::refuse_client_id`]).
    refused_client_ids: BTreeSet<String>,
    /// The server's own clock (wall-clock ms), which bounds how far ahead a stored stamp
    /// may be ([`rules::STAMP_AHEAD_MS_MAX`]). The simulator sets it to virtual time before
    /// each request; a server never given a clock bounds nothing.
    clock_ms: Option<u64>,
}

/// Two servers are equal when they hold the same state: records, results, effects, tokens,
/// rules and defects. The clock is left out: it says when a request arrived, not what the
/// server stores, so "this request changed nothing" compares equal although the clock
/// moved. The destructuring is exhaustive so a new field must be placed on one side.
impl PartialEq for ReferenceServer {
    fn eq(&self, other: &Self) -> bool {
        let ReferenceServer {
            registry,
            defects,
            defects_ever,
            tenant_by_token,
            tenants,
            server_id_last,
            effects,
            effect_count_by_op,
            refused_client_ids,
            clock_ms: _,
        } = self;
        *registry == other.registry
            && *defects == other.defects
            && *defects_ever == other.defects_ever
            && *tenant_by_token == other.tenant_by_token
            && *tenants == other.tenants
            && *server_id_last == other.server_id_last
            && *effects == other.effects
            && *effect_count_by_op == other.effect_count_by_op
            && *refused_client_ids == other.refused_client_ids
    }
}

impl ReferenceServer {
    pub fn new(registry: EntityRegistry) -> Self {
        ReferenceServer {
            registry,
            defects: ServerDefects::default(),
            defects_ever: ServerDefects::default(),
            tenant_by_token: BTreeMap::new(),
            tenants: BTreeMap::new(),
            server_id_last: 0,
            effects: Vec::new(),
            effect_count_by_op: BTreeMap::new(),
            refused_client_ids: BTreeSet::new(),
            clock_ms: None,
        }
    }

    /// Lets `token` act for `tenant_id`. A token names exactly one tenant; registering it
    /// again moves it to the new tenant.
    pub fn add_tenant_token(&mut self, tenant_id: &str, token: &str) {
        self.tenant_by_token
            .insert(token.to_owned(), tenant_id.to_owned());
        self.tenants.entry(tenant_id.to_owned()).or_default();
        assert_eq!(
            self.tenant_by_token.get(token).map(String::as_str),
            Some(tenant_id)
        );
    }

    /// The tenant `token` acts for, if the server knows the token.
    pub fn tenant_of_token(&self, token: &str) -> Option<&str> {
        self.tenant_by_token.get(token).map(String::as_str)
    }

    /// Stops `token` from acting for anyone; the tenant's data stays.
    pub fn revoke_tenant_token(&mut self, token: &str) {
        self.tenant_by_token.remove(token);
        assert!(self.tenant_of_token(token).is_none());
    }

    /// A business rule of the server's, not a fault: from now on every push item that
    /// writes the record with this client id is answered, item by item, with a
    /// `VALIDATION` failure ("refused by the server's rules") and changes nothing; the
    /// other items of its batch are decided as usual. An op the server already applied
    /// keeps its stored result when it is retried.
    pub fn refuse_client_id(&mut self, client_id: &str) {
        self.refused_client_ids.insert(client_id.to_owned());
        assert!(self.refused_client_ids.contains(client_id));
    }

    /// Sets the server's clock; it never goes backwards.
    pub fn set_clock_ms(&mut self, now_ms: u64) {
        self.clock_ms = Some(
            self.clock_ms
                .map_or(now_ms, |clock_ms| clock_ms.max(now_ms)),
        );
        assert!(self.clock_ms >= Some(now_ms));
    }

    /// The result the server stored for `op_id` in `tenant_id`, if the op reached it and
    /// was decided (refused requests store nothing).
    pub fn stored_result(&self, tenant_id: &str, op_id: &str) -> Option<&wire::SyncResultItem> {
        self.tenants.get(tenant_id)?.stored_result(op_id)
    }

    pub fn set_defects(&mut self, defects: ServerDefects) {
        self.defects = defects;
        self.defects_ever = self.defects_ever.union(defects);
    }

    /// Handles one GraphQL-shaped request; returns the JSON envelope
    /// (`sync_engine::wire::data_response` / `error_response`).
    pub fn handle(&mut self, request: &SyncRequest) -> Value {
        let answer = self.route(
            request,
            GivenVariables::Borrowed(&request.variables),
            None,
            false,
        );
        answer_json(request, answer)
    }

    /// Same, answered typed (`SyncAnswer::Push` / `SyncAnswer::Pull`; a refusal comes as
    /// its JSON envelope): for a transport in the same process, which need not render
    /// JSON for the engine to read back. Typed variables are taken as they are, not copied
    /// or parsed: they are the items the JSON would have parsed to.
    pub fn handle_typed(&mut self, mut request: SyncRequest) -> SyncAnswer {
        let variables = GivenVariables::Owned(std::mem::take(&mut request.variables));
        match self.route(&request, variables, None, false) {
            Ok(answer) => answer,
            Err(rejection) => {
                SyncAnswer::Json(wire::error_response(rejection.code, &rejection.message))
            }
        }
    }

    /// Same, with an injected fault (the simulator's hooks).
    pub fn handle_with_fault(&mut self, request: &SyncRequest, fault: ServerFault) -> ServerReply {
        match fault {
            ServerFault::None => ServerReply::Response(self.handle(request)),
            ServerFault::FailBeforeApplying => ServerReply::Response(wire::error_response(
                ErrorCode::ServerBusy,
                "server busy: the request was not applied; retry later",
            )),
            ServerFault::ApplyThenLoseResponse => {
                // The response is computed and dropped: the state change is what matters.
                let _lost = self.handle(request);
                ServerReply::Lost
            }
            ServerFault::SlowResponse { delay_ms } => ServerReply::Delayed {
                response: self.handle(request),
                delay_ms,
            },
            ServerFault::ApplyPrefixThenFail {
                applied,
                connection_dropped,
            } => {
                let before = self
                    .defects
                    .partial_batch_keeps_rolled_back_results
                    .then(|| self.clone());
                let variables = GivenVariables::Borrowed(&request.variables);
                if let Err(rejection) = self.route(request, variables, Some(applied), false) {
                    let refused = wire::error_response(rejection.code, &rejection.message);
                    return ServerReply::Response(refused);
                }
                if let Some(before) = before {
                    self.roll_back_keeping_results(before, request);
                }
                if connection_dropped {
                    return ServerReply::Lost;
                }
                ServerReply::Response(wire::error_response(
                    ErrorCode::ServerBusy,
                    "server failed while applying the batch; retry later",
                ))
            }
            ServerFault::RepeatCursor { with_items } => {
                let response = self.handle(request);
                ServerReply::Response(pull::without_progress(request, response, with_items))
            }
            ServerFault::RewriteStored => {
                let variables = GivenVariables::Borrowed(&request.variables);
                let answer = self.route(request, variables, None, true);
                ServerReply::Response(answer_json(request, answer))
            }
        }
    }

    /// The planted `partial_batch_keeps_rolled_back_results`: back to the state `before`
    /// the request, except for the results it stored for its ops and the server ids it
    /// handed out (ids are never reused).
    fn roll_back_keeping_results(&mut self, before: ReferenceServer, request: &SyncRequest) {
        let variables = request.variables.to_json();
        let op_ids: Vec<&str> = variables["payload"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["opId"].as_str())
            .collect();
        let mut kept = Vec::new();
        for (tenant_id, tenant) in &self.tenants {
            let tenant_before = before.tenants.get(tenant_id);
            for op_id in &op_ids {
                let stored_before = tenant_before.and_then(|tenant| tenant.stored_result(op_id));
                if let (None, Some(result)) = (stored_before, tenant.stored_result(op_id)) {
                    kept.push((tenant_id.clone(), result.clone()));
                }
            }
        }
        let server_id_last = self.server_id_last;
        let clock_ms = self.clock_ms;
        *self = before;
        self.server_id_last = server_id_last;
        self.clock_ms = clock_ms;
        for (tenant_id, result) in kept {
            let tenant = self
                .tenants
                .get_mut(&tenant_id)
                .expect("kept from a tenant");
            tenant.store_result(result);
        }
    }

    /// A tenant's records, ordered by (entity, id).
    pub fn records(&self, tenant_id: &str) -> Vec<&ServerRecord> {
        let Some(tenant) = self.tenants.get(tenant_id) else {
            return Vec::new();
        };
        let mut records: Vec<&ServerRecord> = tenant.records().collect();
        records.sort_by(|a, b| (&a.entity, &a.id).cmp(&(&b.entity, &b.id)));
        records
    }

    /// The retention window closes on `tenant_id`'s tombstones: those committed before its
    /// last `keep_commits` commits leave the pull order, and a pull from a cursor before
    /// the newest of them is answered `RESYNC_REQUIRED`. Returns how many were purged.
    pub fn purge_tombstones(&mut self, tenant_id: &str, keep_commits: u64) -> usize {
        self.tenants
            .get_mut(tenant_id)
            .map_or(0, |tenant| tenant.purge_tombstones(keep_commits))
    }

    /// Whether the server ever purged tombstones of `entity` in `tenant_id`.
    pub fn purged_tombstones(&self, tenant_id: &str, entity: &str) -> bool {
        self.tenants
            .get(tenant_id)
            .is_some_and(|tenant| tenant.purge_epoch(entity) > 0)
    }

    /// How many rows (live records and tombstones) a pull of `entity` pages over in
    /// `tenant_id`.
    pub fn pull_rows(&self, tenant_id: &str, entity: &str) -> usize {
        self.tenants
            .get(tenant_id)
            .map_or(0, |tenant| tenant.entity_len(entity))
    }

    /// How many times the op changed state (0 or 1 unless `skip_op_id_dedupe` is planted).
    pub fn effect_count(&self, tenant_id: &str, op_id: &str) -> usize {
        self.effect_count_by_op
            .get(tenant_id)
            .and_then(|counts| counts.get(op_id))
            .copied()
            .unwrap_or(0)
    }

    /// Every state change, in the order it happened.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// Every tenant the server knows: those with a token and those with stored state.
    pub fn tenants(&self) -> Vec<String> {
        let mut tenants: BTreeSet<&String> = self.tenants.keys().collect();
        tenants.extend(self.tenant_by_token.values());
        tenants.into_iter().cloned().collect()
    }

    /// The tenant's current high-water commit stamp (0 before its first change).
    pub fn commit_stamp(&self, tenant_id: &str) -> u64 {
        self.tenants
            .get(tenant_id)
            .map_or(0, TenantState::commit_stamp)
    }

    /// How much a [`ReferenceServer::check_invariants`] call reads: records plus effects.
    pub fn check_size(&self) -> usize {
        self.effects.len()
            + self
                .tenants
                .values()
                .map(TenantState::record_count)
                .sum::<usize>()
    }

    /// Checks every server invariant over the whole state; panics on a broken one. Checks
    /// that a planted defect deliberately breaks are skipped once that defect was on.
    pub fn check_invariants(&self) {
        let mut ids_seen: BTreeSet<&str> = BTreeSet::new();
        for (tenant_id, tenant) in &self.tenants {
            tenant.check_invariants(tenant_id, self.defects_ever);
            for record in tenant.records() {
                assert!(
                    self.registry.get(&record.entity).is_some(),
                    "record {} has unregistered entity {}",
                    record.id,
                    record.entity
                );
                assert!(
                    ids_seen.insert(&record.id),
                    "server id {} used twice",
                    record.id
                );
                let number = record
                    .id
                    .strip_prefix("srv-")
                    .and_then(|digits| digits.parse::<u64>().ok());
                let issued =
                    number.is_some_and(|number| number >= 1 && number <= self.server_id_last);
                assert!(
                    issued,
                    "record id {} is one the server never issued",
                    record.id
                );
            }
        }
        let mut counted: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for effect in &self.effects {
            *counted
                .entry((effect.tenant_id.as_str(), effect.op_id.as_str()))
                .or_default() += 1;
            let Some(tenant) = self.tenants.get(&effect.tenant_id) else {
                panic!("effect in unknown tenant {}", effect.tenant_id);
            };
            assert!(
                tenant.record(&effect.record_id).is_some(),
                "effect on missing record {}",
                effect.record_id
            );
            assert!(
                effect.commit_stamp <= tenant.commit_stamp(),
                "effect stamp beyond the tenant's high water"
            );
        }
        let indexed = self
            .effect_count_by_op
            .iter()
            .flat_map(|(tenant_id, counts)| {
                counts
                    .iter()
                    .map(|(op_id, count)| ((tenant_id.as_str(), op_id.as_str()), *count))
            });
        assert!(
            counted
                .iter()
                .map(|(key, count)| (*key, *count))
                .eq(indexed),
            "the per-op effect index disagrees with the effect log"
        );
        if !self.defects_ever.skip_op_id_dedupe {
            for ((tenant_id, op_id), count) in &counted {
                assert!(
                    *count <= 1,
                    "op {op_id} of tenant {tenant_id} changed state {count} times"
                );
            }
        }
    }

    /// Resolves, authenticates and parses a request (its `variables`, which the caller
    /// may have taken out of it), then runs it; every rejection happens before any state
    /// changes.
    /// `prefix`: apply only the first that many items of a push (the partial-batch fault).
    /// `rewrite`: store a push's rows rewritten and leave its cursors null (the
    /// server-rewrite fault).
    fn route(
        &mut self,
        request: &SyncRequest,
        variables: GivenVariables<'_>,
        prefix: Option<usize>,
        rewrite: bool,
    ) -> Result<SyncAnswer, Rejection> {
        let Some((kind, entity)) = self.registry.resolve_operation(&request.operation_name) else {
            return Err(Rejection::validation(format!(
                "unknown operation {:?}",
                request.operation_name
            )));
        };
        let entity = entity.name().to_owned();
        let Some(token_tenant_id) = self.tenant_by_token.get(&request.token) else {
            return Err(Rejection::unauthorized("unknown token".to_owned()));
        };
        let token_tenant_id = token_tenant_id.clone();
        if !self.defects.skip_tenant_check && request.tenant_id != token_tenant_id {
            return Err(Rejection::unauthorized(
                "the request's tenant is not the token's tenant".to_owned(),
            ));
        }
        match kind {
            OperationKind::Push => {
                let variables = variables.push()?;
                let tenant_id = self.authorized_tenant(&token_tenant_id, &variables.tenant_id)?;
                if self.defects.apply_items_before_validating {
                    self.apply_valid_prefix(&tenant_id, &entity, &variables.payload);
                }
                let mut items = push::validate(variables.payload).map_err(Rejection::validation)?;
                rules::check_request_size(items.iter().map(push::PushItem::data))
                    .map_err(Rejection::validation)?;
                if let Some(applied) = prefix {
                    assert!(applied >= 1, "a partial batch applies one item at least");
                    assert!(applied < items.len(), "a partial batch leaves items out");
                    items.truncate(applied);
                }
                Ok(SyncAnswer::Push(
                    self.handle_push(&tenant_id, &entity, items, rewrite),
                ))
            }
            OperationKind::Pull => {
                let variables = variables.pull()?;
                let tenant_id = self.authorized_tenant(&token_tenant_id, &variables.tenant_id)?;
                let page = pull::PageRequest::parse(&variables).map_err(Rejection::validation)?;
                let purged = self
                    .tenants
                    .get(&tenant_id)
                    .is_some_and(|tenant| page.starts_before_purge(tenant, &entity));
                if purged {
                    return Err(Rejection {
                        code: ErrorCode::ResyncRequired,
                        message: format!(
                            "lastSyncAt is older than the tombstones of {entity} this server \
                             still keeps: pull from the start"
                        ),
                    });
                }
                let (page, items) = self.handle_pull(&tenant_id, &entity, &page);
                Ok(SyncAnswer::Pull { page, items })
            }
        }
    }

    /// The planted `apply_items_before_validating`: applies the items before the first
    /// malformed one, as a server validating while it writes would.
    fn apply_valid_prefix(
        &mut self,
        tenant_id: &str,
        entity: &str,
        payload: &[wire::SyncPushItem],
    ) {
        let valid_prefix: Vec<push::PushItem> = payload
            .iter()
            .map_while(|item| push::validate(vec![item.clone()]).ok())
            .flatten()
            .collect();
        if !valid_prefix.is_empty() && valid_prefix.len() < payload.len() {
            let _applied = self.handle_push(tenant_id, entity, valid_prefix, false);
        }
    }

    /// The tenant a request acts for: the token's, which `variables.tenantId` must name
    /// (or, with `skip_tenant_check` planted, whatever `variables.tenantId` says).
    fn authorized_tenant(
        &self,
        token_tenant_id: &str,
        variables_tenant_id: &str,
    ) -> Result<String, Rejection> {
        if self.defects.skip_tenant_check {
            return Ok(variables_tenant_id.to_owned());
        }
        if variables_tenant_id != token_tenant_id {
            return Err(Rejection::unauthorized(
                "variables.tenantId is not the token's tenant".to_owned(),
            ));
        }
        Ok(token_tenant_id.to_owned())
    }

    /// Hands out the next server id; ids are never reused.
    fn allocate_server_id(&mut self) -> String {
        use std::fmt::Write as _;
        self.server_id_last += 1;
        assert!(self.server_id_last >= 1);
        // Sized up front (`format!` would start smaller and grow): one per created record.
        let mut id = String::with_capacity(SERVER_ID_LEN);
        write!(id, "srv-{:010}", self.server_id_last).expect("writing to a String succeeds");
        id
    }

    /// Records one state change in the effect log.
    fn log_effect(&mut self, effect: Effect) {
        if !self.effect_count_by_op.contains_key(&effect.tenant_id) {
            self.effect_count_by_op
                .insert(effect.tenant_id.clone(), BTreeMap::new());
        }
        let counts = self
            .effect_count_by_op
            .get_mut(&effect.tenant_id)
            .expect("the tenant's counts were just added");
        let count = match counts.get_mut(&effect.op_id) {
            Some(count) => count,
            None => counts.entry(effect.op_id.clone()).or_default(),
        };
        *count += 1;
        if !self.defects_ever.skip_op_id_dedupe {
            assert_eq!(*count, 1, "op {} changed state twice", effect.op_id);
        }
        self.effects.push(effect);
    }
}

/// The JSON envelope of what [`ReferenceServer::route`] answered to `request`.
fn answer_json(request: &SyncRequest, answer: Result<SyncAnswer, Rejection>) -> Value {
    let payload = match answer {
        Ok(SyncAnswer::Json(envelope)) => return envelope,
        Ok(SyncAnswer::Push(response)) => {
            serde_json::to_value(response).expect("wire types always serialize to JSON")
        }
        Ok(SyncAnswer::Pull { page, items }) => pull::pull_page_json(page, items),
        Err(rejection) => return wire::error_response(rejection.code, &rejection.message),
    };
    wire::data_response(&request.operation_name, payload)
}

/// Why a whole request was refused, as an error envelope will say it.
struct Rejection {
    code: ErrorCode,
    message: String,
}

impl Rejection {
    fn validation(message: String) -> Rejection {
        Rejection {
            code: ErrorCode::Validation,
            message,
        }
    }

    fn unauthorized(message: String) -> Rejection {
        Rejection {
            code: ErrorCode::Unauthorized,
            message,
        }
    }
}
