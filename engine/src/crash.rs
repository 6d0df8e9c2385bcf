//! Crash points: where the simulator may kill the app inside an engine call.
//!
//! Two kinds: the six named points of the sync protocol, and every transaction boundary.
//! Every commit of the engine goes through [`CrashState::commit`] (or
//! [`CrashState::commit_in`] for a one-statement write), which asks the hook on both
//! sides of the commit: [`CrashPoint::BeforeCommit`] (the kill turns the commit into a
//! rollback) and [`CrashPoint::AfterCommit`] (the commit is durable, the app dies before
//! doing anything else), naming the transaction by its [`CommitSite`]. Nothing else may
//! commit: clippy bans `Transaction::commit` outside this module.
//!
//! In production the hook is [`NoCrash`] and costs one virtual call per point. When a
//! hook asks for a crash, the engine abandons the call (an open transaction rolls back on
//! drop), returns `Killed`, and refuses every later call — and every later commit, so
//! nothing a dead engine does reaches the disk: the caller must drop the engine and
//! reopen it, exactly as after a real process kill. A crash is only ever a rollback.
//!
//! The module is public only with the `sim` feature (with `Engine::set_crash_hook` and
//! `Engine::killed_at`); without it the engine still commits through [`CrashState`], with
//! `NoCrash`, and nothing can install another hook.

use crate::sync::SyncEvent;
use rusqlite::{Connection, Transaction};
use std::collections::VecDeque;
use strum::{EnumCount, IntoStaticStr, VariantArray};

/// Every place inside the engine where a kill is meaningful.
///
/// The snake_case names (`after_local_commit`, ...) appear in scenario files and campaign
/// summaries, so strum derives them from this one definition rather than a second list.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EnumCount, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum CrashPoint {
    /// A local write and its queued op just committed; the caller has not heard back.
    AfterLocalCommit,
    /// Ops were marked `sending` and the request was built, before it is handed out.
    AfterMarkSending,
    /// The server's answer arrived; nothing of it is stored yet.
    BeforeStoringResponse,
    /// One pull page and its cursor committed (in a force from the server: the page was
    /// staged); the next page is not asked for yet.
    BetweenPullPages,
    /// Inside the force-from-server replacement transaction, before it commits.
    MidForce,
    /// Inside the wipe transaction, before it commits.
    MidWipe,
    /// At any commit of the engine, before it: the transaction rolls back.
    BeforeCommit,
    /// At any commit of the engine, right after it: the transaction is durable.
    AfterCommit,
}

impl CrashPoint {
    /// Every crash point in declaration order, as an array so callers can iterate by value.
    pub const ALL: [CrashPoint; CrashPoint::COUNT] = *<CrashPoint as VariantArray>::VARIANTS
        .first_chunk()
        .unwrap();

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether this is a transaction boundary rather than a named point.
    pub fn is_commit_boundary(self) -> bool {
        matches!(self, CrashPoint::BeforeCommit | CrashPoint::AfterCommit)
    }
}

/// Which transaction of the engine a commit boundary belongs to (the simulator's traces
/// and `syncsim sweep` count boundaries per site).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EnumCount, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[non_exhaustive]
pub enum CommitSite {
    /// A create, update or delete and its queued op.
    LocalWrite,
    /// A conflict resolution and the ops it replaces.
    Resolution,
    /// The auth token stored.
    AuthToken,
    /// The next push run marked `sending`.
    MarkSending,
    /// A push answer's results, id mappings and the next run's `sending` marks.
    PushResults,
    /// A push refused whole (`VALIDATION`): its ops marked failed.
    PushRejected,
    /// One pull page merged, with its cursor.
    PullPage,
    /// The end of a sync: the time of the last successful sync.
    SyncCompleted,
    /// A failed or cancelled sync: ops in flight back to `pending`.
    SendingReset,
    /// A force-from-server's staged pages dropped.
    StagingCleared,
    /// One force-from-server page staged.
    ForceStaged,
    /// The force-from-server replacement swapped in.
    ForceSwap,
    /// A force push's marks.
    ForcePush,
    /// A space wipe.
    Wipe,
    /// Failed ops put back in the queue, and their records rewritten.
    RetryFailed,
    /// Failed ops dropped, and their records returned to the server's state.
    DiscardFailed,
}

impl CommitSite {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Decides, at each crash point, whether the app dies there. `Send`, like the engine that
/// holds it.
pub trait CrashHook: Send {
    fn should_crash(&mut self, point: CrashPoint) -> bool;

    /// Asked on both sides of every commit (`point` is [`CrashPoint::BeforeCommit`] or
    /// [`CrashPoint::AfterCommit`]); by default the same answer as [`Self::should_crash`].
    fn should_crash_at_commit(&mut self, point: CrashPoint, site: CommitSite) -> bool {
        let _ = site;
        self.should_crash(point)
    }
}

/// The production hook: never crashes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCrash;

impl CrashHook for NoCrash {
    fn should_crash(&mut self, _point: CrashPoint) -> bool {
        false
    }
}

/// The hook plus whether it already fired: once killed, the engine refuses every call.
pub(crate) struct CrashState {
    pub(crate) hook: Box<dyn CrashHook>,
    pub(crate) killed_at: Option<CrashPoint>,
    /// The planted defect `skip_pull_notifications`: a pulled page's changes are not
    /// announced.
    pub(crate) planted_skip_pull_notifications: bool,
}

impl CrashState {
    pub(crate) fn new() -> CrashState {
        CrashState {
            hook: Box::new(NoCrash),
            killed_at: None,
            planted_skip_pull_notifications: false,
        }
    }

    /// Asks the hook whether the app dies at `point`.
    pub(crate) fn reached(&mut self, point: CrashPoint) -> Result<(), CrashPoint> {
        if self.hook.should_crash(point) {
            self.killed_at = Some(point);
            return Err(point);
        }
        Ok(())
    }

    /// Commits `tx` at a transaction boundary: the hook may kill the app before the commit
    /// (the transaction rolls back) or right after it. A dead engine commits nothing.
    ///
    /// The records the transaction changed are announced in `events`, one
    /// [`SyncEvent::RecordsChanged`] per entity, once the commit succeeded: a transaction
    /// that rolls back (a kill before the commit, a failed commit) announces nothing.
    pub(crate) fn commit(
        &mut self,
        tx: Transaction<'_>,
        site: CommitSite,
        events: &mut VecDeque<SyncEvent>,
    ) -> Result<(), CommitError> {
        self.commit_announcing(tx, site, events, None)
    }

    /// [`CrashState::commit`] of a local write that changed `known` (an entity and client
    /// ids) with the change notes off: those records are announced with whatever the
    /// notes caught.
    #[allow(clippy::disallowed_methods)] // The one place the engine commits.
    pub(crate) fn commit_announcing(
        &mut self,
        tx: Transaction<'_>,
        site: CommitSite,
        events: &mut VecDeque<SyncEvent>,
        known: Option<(&str, &[String])>,
    ) -> Result<(), CommitError> {
        if let Some(point) = self.killed_at {
            return Err(CommitError::Killed(point));
        }
        self.boundary(CrashPoint::BeforeCommit, site)?;
        let mut changed = crate::store::changes::take(&tx).map_err(CommitError::Storage)?;
        tx.commit().map_err(CommitError::Storage)?;
        if let Some((entity, ids)) = known.filter(|(_, ids)| !ids.is_empty()) {
            let announced = changed.entry(entity.to_owned()).or_default();
            announced.extend_from_slice(ids);
            announced.sort_unstable();
            announced.dedup();
        }
        let silenced = self.planted_skip_pull_notifications && site == CommitSite::PullPage;
        if !silenced {
            for (entity, ids) in changed {
                assert!(!ids.is_empty(), "an entity is announced with its records");
                events.push_back(SyncEvent::RecordsChanged { entity, ids });
            }
        }
        self.boundary(CrashPoint::AfterCommit, site)
    }

    /// Runs `body` in a transaction of its own and commits it at a boundary: the engine's
    /// one-statement writes, which would otherwise commit on their own where no hook sees.
    pub(crate) fn commit_in<T>(
        &mut self,
        conn: &mut Connection,
        site: CommitSite,
        events: &mut VecDeque<SyncEvent>,
        body: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, CommitError> {
        let tx = conn.transaction().map_err(CommitError::Storage)?;
        let value = body(&tx).map_err(CommitError::Storage)?;
        self.commit(tx, site, events)?;
        Ok(value)
    }

    fn boundary(&mut self, point: CrashPoint, site: CommitSite) -> Result<(), CommitError> {
        if self.hook.should_crash_at_commit(point, site) {
            self.killed_at = Some(point);
            return Err(CommitError::Killed(point));
        }
        Ok(())
    }
}

/// A commit that did not happen (`Killed` before it, or `Storage`), or a kill right after
/// it; converts into the error of the call it happened in.
#[derive(Debug)]
pub(crate) enum CommitError {
    Killed(CrashPoint),
    Storage(rusqlite::Error),
}

impl From<CommitError> for crate::error::WriteError {
    fn from(error: CommitError) -> crate::error::WriteError {
        match error {
            CommitError::Killed(point) => crate::error::WriteError::Killed(point),
            CommitError::Storage(error) => error.into(),
        }
    }
}

impl From<CommitError> for crate::error::SyncError {
    fn from(error: CommitError) -> crate::error::SyncError {
        match error {
            CommitError::Killed(point) => crate::error::SyncError::Killed(point),
            CommitError::Storage(error) => error.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Crash point names are part of the scenario language and of campaign summaries: a
    //! renamed variant must not silently rename its point.
    use super::*;

    #[test]
    fn crash_point_names_stay_the_scenario_names() {
        let names: Vec<&str> = CrashPoint::ALL.into_iter().map(CrashPoint::name).collect();
        assert_eq!(
            names,
            [
                "after_local_commit",
                "after_mark_sending",
                "before_storing_response",
                "between_pull_pages",
                "mid_force",
                "mid_wipe",
                "before_commit",
                "after_commit",
            ]
        );
        assert_eq!(CrashPoint::ALL.len(), CrashPoint::COUNT);
    }
}
