//! Operating errors, one enum per kind of call.
//!
//! Three kinds of failure are kept apart: a bug is a panic (an assertion); an operating
//! error (SQLite, a damaged database, bad input from the caller, a simulated kill) is one
//! of these enums; a misbehaving server response is data the sync machine handles (an
//! event, a failed op).

use crate::crash::CrashPoint;
use crate::record::OpStatus;

/// A stored row the engine cannot use: a value that does not parse (JSON, a status or an
/// operation it does not know), a value of the wrong type or outside what the schema
/// allows, or a reference to a row that is missing. The database was changed behind the
/// engine's back (a storage fault, another program) or by a bug. The engine names the row
/// and never repairs it; every other row stays readable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("damaged database: {table} row {key}: {problem}")]
pub struct DamagedRow {
    table: &'static str,
    key: String,
    problem: String,
}

impl DamagedRow {
    pub(crate) fn new(
        table: &'static str,
        key: impl Into<String>,
        problem: impl Into<String>,
    ) -> DamagedRow {
        DamagedRow {
            table,
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The table holding the row, e.g. `records` or `operation_queue`.
    pub fn table(&self) -> &str {
        self.table
    }

    /// The row's primary key as text: a client id, a queue position, a conflict id.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What is wrong with the row.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// A failure of the database below the engine: a full disk, a lock another connection
/// holds, a damaged file, an I/O error. The engine's own type, so that an app never names
/// the SQLite binding's: [`StorageError::kind`] says what happened, the message says it
/// in words, and [`std::error::Error::source`] keeps SQLite's error for logs.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct StorageError {
    kind: StorageErrorKind,
    source: rusqlite::Error,
}

/// What kind of storage failure a [`StorageError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The disk (or the database's size limit) is full.
    Full,
    /// Another connection holds the lock the engine needs.
    Busy,
    /// The file is not a database, or its content is damaged.
    Corrupt,
    /// The operating system failed a read or a write.
    Io,
    /// The file cannot be written (permissions, a read-only medium).
    ReadOnly,
    /// Anything else SQLite reports.
    Other,
}

impl StorageError {
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }
}

impl StorageError {
    /// An operating-system failure on a file of the database's that SQLite does not
    /// manage (`what` names it), as an I/O storage error.
    pub(crate) fn from_io(error: &std::io::Error, what: &str) -> StorageError {
        let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR);
        StorageError {
            kind: StorageErrorKind::Io,
            source: rusqlite::Error::SqliteFailure(code, Some(format!("{what}: {error}"))),
        }
    }
}

impl From<rusqlite::Error> for StorageError {
    fn from(source: rusqlite::Error) -> StorageError {
        use rusqlite::ErrorCode as Code;
        let kind = match source.sqlite_error_code() {
            Some(Code::DiskFull) => StorageErrorKind::Full,
            Some(Code::DatabaseBusy | Code::DatabaseLocked) => StorageErrorKind::Busy,
            Some(Code::DatabaseCorrupt | Code::NotADatabase) => StorageErrorKind::Corrupt,
            Some(Code::SystemIoFailure) => StorageErrorKind::Io,
            Some(Code::ReadOnly) => StorageErrorKind::ReadOnly,
            _ => StorageErrorKind::Other,
        };
        StorageError { kind, source }
    }
}

/// `From<rusqlite::Error>` for an operation's error enum: a damaged row (which travels
/// through the store as a rusqlite error, see `store/row.rs`) becomes its `Damaged`
/// variant, every other SQLite failure its `Storage` variant.
macro_rules! from_storage_error {
    ($error:ident) => {
        impl From<rusqlite::Error> for $error {
            fn from(error: rusqlite::Error) -> $error {
                match crate::store::row::into_damaged(error) {
                    Ok(row) => $error::Damaged(row),
                    Err(error) => $error::Storage(StorageError::from(error)),
                }
            }
        }
    };
}

/// Opening or dropping a tenant database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("invalid tenant id {0:?}: use 1-64 characters from [A-Za-z0-9_-]")]
    InvalidTenantId(String),
    #[error("invalid database file prefix {0:?}: use characters from [A-Za-z0-9_-]")]
    InvalidDbPrefix(String),
    #[error("database schema version {found} is newer than this engine supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
    #[error(transparent)]
    Damaged(DamagedRow),
    #[error("file system error: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite finds the database file damaged: not a database (its header), or a page or
    /// b-tree it cannot read. Nothing was written; the file is as it was found.
    /// [`recover_corrupt_database`](crate::recover_corrupt_database) is the way out.
    #[error("corrupt database {}: {detail}", path.display())]
    Corrupt {
        path: std::path::PathBuf,
        /// What SQLite reported, for logs.
        detail: String,
    },
    /// A recovery was asked for a tenant that has no database file.
    #[error("no database to recover at {}", .0.display())]
    NothingToRecover(std::path::PathBuf),
    /// A recovery was asked for a database SQLite finds sound: nothing is moved aside.
    #[error("the database {} is not corrupt: nothing to recover", .0.display())]
    NotCorrupt(std::path::PathBuf),
}

/// Declaring entity types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid entity name {0:?}: ASCII letters and digits, starting with a letter")]
    InvalidEntityName(String),
    #[error("entity {0:?} registered twice")]
    DuplicateEntity(String),
    #[error("entity {0:?}: batch sizes must be at least 1")]
    ZeroBatchSize(String),
    #[error("no entity types registered")]
    NoEntities,
    #[error("invalid indexed field {0:?}: dot-separated names of ASCII letters, digits and '_'")]
    InvalidIndexedField(String),
    #[error("invalid sync setting: {0}")]
    InvalidSetting(String),
}

/// A local write: create, update, delete, conflict resolution, wipe, force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("unknown entity type {0:?}")]
    UnknownEntity(String),
    #[error("record data must be a JSON object")]
    DataNotObject,
    #[error("invalid space id {0:?}: use 1-64 characters from [A-Za-z0-9_-]")]
    InvalidSpaceId(String),
    #[error("no record with id {0:?}")]
    UnknownRecord(String),
    #[error("record {0:?} is deleted")]
    RecordDeleted(String),
    #[error("no open conflict with id {0}")]
    UnknownConflict(i64),
    #[error("no queued op with op id {0:?}")]
    UnknownOp(String),
    #[error("op {op_id:?} is {status:?}, not failed")]
    OpNotFailed { op_id: String, status: OpStatus },
    #[error("merge names field {0:?}, which is not one of the conflict's changed fields")]
    MergeFieldNotInConflict(String),
    #[error("the force plan is stale: {0}")]
    StalePlan(String),
    #[error("a sync is running; {0} must wait until it ends")]
    SyncInProgress(&'static str),
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
    #[error(transparent)]
    Damaged(DamagedRow),
    /// The simulator killed the app (feature `sim`); never without a crash hook.
    #[cfg_attr(not(feature = "sim"), doc(hidden))]
    #[error("the app was killed at crash point {0:?}")]
    Killed(CrashPoint),
}

/// A read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("unknown entity type {0:?}")]
    UnknownEntity(String),
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
    #[error(transparent)]
    Damaged(DamagedRow),
}

/// Driving the sync machine: only storage failures and simulated kills; every server
/// misbehaviour is handled as data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
    #[error(transparent)]
    Damaged(DamagedRow),
    /// The simulator killed the app (feature `sim`); never without a crash hook.
    #[cfg_attr(not(feature = "sim"), doc(hidden))]
    #[error("the app was killed at crash point {0:?}")]
    Killed(CrashPoint),
}

from_storage_error!(OpenError);
from_storage_error!(WriteError);
from_storage_error!(ReadError);
from_storage_error!(SyncError);

impl From<SyncError> for WriteError {
    fn from(error: SyncError) -> WriteError {
        match error {
            SyncError::Storage(error) => WriteError::Storage(error),
            SyncError::Damaged(row) => WriteError::Damaged(row),
            SyncError::Killed(point) => WriteError::Killed(point),
        }
    }
}

/// A query (`Engine::query`, `Engine::count`): refused before any read, or a failed read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    #[error("unknown entity type {0:?}")]
    UnknownEntity(String),
    #[error(
        "invalid field name {0:?}: dot-separated names of ASCII letters, digits and '_', \
         not starting with a digit, at most 64 characters"
    )]
    InvalidField(String),
    #[error("the IN list of field {0:?} mixes values of different kinds")]
    MixedKinds(String),
    #[error("field {0:?} is compared with a number that is not finite")]
    NotFinite(String),
    #[error("the cursor comes from a query with another order")]
    CursorOfAnotherOrder,
    #[error("storage error: {0}")]
    Storage(#[source] StorageError),
    #[error(transparent)]
    Damaged(DamagedRow),
}

from_storage_error!(QueryError);
