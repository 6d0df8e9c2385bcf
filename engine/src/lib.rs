//! `sync-engine`: an offline-first sync engine an app embeds.
//!
//! One SQLite database per tenant; local-first create/update/delete with UUID v7 ids; a
//! durable operation queue; two-way sync (push, then pull) against the `syncPush*` /
//! `syncPull*` wire contract ([`wire`]); conflict detection and resolution; force sync
//! both ways; wiping a space; dropping a tenant database; recovering a corrupt one
//! ([`recover_corrupt_database`]).
//!
//! The engine does no I/O but its tenant's files (the SQLite database, two lock files and
//! the clock's mark beside it): time and randomness come from an injected
//! [`Env`], and the network belongs to the caller, who drives the sans-IO state machine
//! (see [`sync`] for the run loop). Start reading at [`Engine`].
//!
//! The app learns what changed from the same event stream: after every committed
//! transaction that changed what `get` and `list` show — local writes included —
//! [`poll_event`](Engine::poll_event) hands out one [`SyncEvent::RecordsChanged`] per
//! entity. Pages of records, filtered and ordered on fields of their data, come from
//! [`Engine::query`] (see [`query`]).

mod clock_mark;
pub mod conflict;
#[cfg(feature = "dialog")]
mod conflict_display;
#[cfg(feature = "sim")]
pub mod crash;
#[cfg(not(feature = "sim"))]
mod crash;
mod engine;
pub mod env;
pub mod error;
mod failed_ops;
mod failure;
pub mod force;
pub mod hlc;
pub mod ids;
mod legacy_names;
mod own_writes;
mod pull;
mod pull_pages;
mod push;
pub mod query;
pub mod record;
mod recovery;
pub mod registry;
mod settings;
mod store;
pub mod sync;
mod sync_events;
mod sync_lock;
pub mod system_env;
pub mod tenant;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod verify;
pub mod wire;

pub use conflict::{Resolution, Side};
#[cfg(feature = "sim")]
pub use crash::{CommitSite, CrashHook, CrashPoint, NoCrash};
#[cfg(feature = "sim")]
pub use engine::PlantedDefects;
pub use engine::{drop_tenant_database, Engine, EngineOptions};
pub use env::{Clock, Entropy, Env, ManualClock, SeededEntropy};
pub use error::{
    ConfigError, DamagedRow, OpenError, QueryError, ReadError, StorageError, StorageErrorKind,
    SyncError, WriteError,
};
pub use failure::SyncFailure;
pub use force::{ConfirmedForce, ForceDirection, ForceOutcome, ForcePlan};
pub use hlc::{Hlc, HlcStamp};
pub use query::{Comparison, Direction, Field, Filter, Query, QueryCursor, QueryPage, QueryValue};
pub use record::{
    Conflict, FailedOp, FieldDiff, ListOptions, OpStatus, QueuedOp, Record, Rejection, SyncStatus,
    WhichFailed,
};
pub use recovery::{recover_corrupt_database, RecoveryReport};
pub use registry::{EntityConfig, EntityRegistry};
pub use settings::SyncSettings;
pub use sync::{SyncEvent, SyncTrigger, Transport, TransportError, TransportErrorKind};
pub use tenant::{DbLocation, TenantId};

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
