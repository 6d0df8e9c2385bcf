//! The input of the `engine_merge` target: the app's local writes, the answers a hostile
//! server gives, other devices' writes, the user's conflict resolutions and the app's
//! lifecycle (sync controls, clock moves, kills). Types only, with the small conversions
//! to wire values that need no harness state; the harness turns them into calls.

use super::super::{few, maybe_short_string, short_string, DataInput, Json, OperationInput};
use arbitrary::Arbitrary;
use serde::Deserialize;
use sync_engine::wire::ErrorCode;

/// A local write by the app.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum WriteInput {
    Create {
        entity: u8,
        space: u8,
        data: DataInput,
    },
    Update {
        record: u8,
        patch: DataInput,
    },
    Delete {
        record: u8,
    },
}

/// An id as a hostile server might send it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum IdInput {
    /// A local record's client id (by index, wrapping).
    Client(u8),
    /// A server id the engine or the server knows (by index, wrapping).
    Server(u8),
    /// An id nobody has seen.
    Fresh(u8),
    Text(#[arbitrary(with = short_string)] String),
    /// The client id of a local record of another entity than the request's (by index,
    /// wrapping; a fresh id when there is none): a row that would rewrite it.
    OtherEntityClient(u8),
    /// The server id of a local record of another entity than the request's: a row or a
    /// tombstone that would re-map or delete it.
    OtherEntityServer(u8),
}

/// A version number as a hostile server might send it: any, small, or at an edge.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
#[serde(untagged)]
pub enum NumberInput {
    Any(i64),
    Small(i8),
    Edge(u8),
}

impl NumberInput {
    pub(super) fn resolve(&self) -> i64 {
        const EDGES: [i64; 6] = [0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1];
        match self {
            NumberInput::Any(number) => *number,
            NumberInput::Small(number) => i64::from(*number),
            NumberInput::Edge(index) => EDGES[usize::from(*index) % EDGES.len()],
        }
    }
}

/// A stamp as a hostile server might send it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum EngineStampInput {
    /// Near a local record's stamp: equal stamps make conflicts.
    Local {
        record: u8,
        delta: i8,
    },
    /// Near a server record's stamp.
    Server {
        record: u8,
        delta: i8,
    },
    Exact(u64),
    /// 0, 1, the largest stamps.
    Edge(u8),
}

/// An error code a result or envelope may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary, Deserialize)]
pub enum CodeInput {
    Conflict,
    Stale,
    RecordDeleted,
    Validation,
    NotFound,
    Unauthorized,
    ServerBusy,
    Timeout,
}

impl CodeInput {
    pub(super) fn to_wire(self) -> ErrorCode {
        match self {
            CodeInput::Conflict => ErrorCode::Conflict,
            CodeInput::Stale => ErrorCode::Stale,
            CodeInput::RecordDeleted => ErrorCode::RecordDeleted,
            CodeInput::Validation => ErrorCode::Validation,
            CodeInput::NotFound => ErrorCode::NotFound,
            CodeInput::Unauthorized => ErrorCode::Unauthorized,
            CodeInput::ServerBusy => ErrorCode::ServerBusy,
            CodeInput::Timeout => ErrorCode::Timeout,
        }
    }
}

/// The server's side of a concurrent write, as a result reports it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ConflictInput {
    pub data: DataInput,
    pub version: NumberInput,
    pub stamp: EngineStampInput,
    #[serde(default)]
    pub deleted: bool,
}

/// One push result.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ResultInput {
    /// Answer for another op than the one at this position.
    #[serde(default)]
    pub other_op: Option<u8>,
    pub success: bool,
    pub code: Option<CodeInput>,
    pub id: Option<IdInput>,
    pub version: Option<NumberInput>,
    pub stamp: Option<EngineStampInput>,
    pub conflict: Option<ConflictInput>,
}

/// One pulled live row.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct PulledItemInput {
    pub id: IdInput,
    pub client_id: IdInput,
    pub space: u8,
    /// Put the row in another space than the local record it names (by client id, else by
    /// server id) is in: a row that would move the record. `space` when it names none.
    #[serde(default)]
    pub other_space: bool,
    pub version: NumberInput,
    pub stamp: EngineStampInput,
    pub data: DataInput,
}

#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum HashInput {
    Absent,
    /// The hash of the engine's live records: no repair follows.
    Local,
    /// The hash of the server's live records.
    Server,
    Text(#[arbitrary(with = short_string)] String),
}

/// A pull page as a hostile server might send it.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct PageInput {
    #[serde(default)]
    #[arbitrary(with = few::<PulledItemInput, 8>)]
    pub items: Vec<PulledItemInput>,
    #[serde(default)]
    #[arbitrary(with = few::<IdInput, 8>)]
    pub deleted: Vec<IdInput>,
    #[arbitrary(with = maybe_short_string)]
    pub cursor: Option<String>,
    pub hash: HashInput,
    #[serde(default)]
    pub has_more: bool,
}

/// A change to a JSON tree, at a node counted in pre-order.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum MutationInput {
    Replace { node: u16, value: Json },
    Remove { node: u16 },
    Duplicate { node: u16 },
}

/// How the next outstanding request is answered.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum AnswerInput {
    /// The reference server's answer.
    Server,
    /// The reference server's answer, then hostile edits.
    Mutated(#[arbitrary(with = few::<MutationInput, 4>)] Vec<MutationInput>),
    /// The server applies the request; the client sees a timeout.
    Lost,
    /// Any JSON; strings like `$client:0`, `$op:1`, `$stamp:0` become real ids and stamps.
    Json(Json),
    /// A success envelope with these push results (one per payload item when `aligned`).
    PushResults {
        #[arbitrary(with = few::<ResultInput, 12>)]
        results: Vec<ResultInput>,
        #[serde(default)]
        aligned: bool,
    },
    /// A success envelope with this page.
    Page(PageInput),
    /// An error envelope.
    Error(Option<CodeInput>),
    Transport {
        #[serde(default)]
        timeout: bool,
    },
    /// An answer delivered earlier in this run, again.
    Replay(u8),
    /// The request is never answered.
    Drop,
}

/// Another device's write, straight to the server.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct OtherWriteInput {
    pub record: u8,
    pub operation: OperationInput,
    pub stamp: EngineStampInput,
    pub data: DataInput,
    /// Based on the server's current version (else concurrent).
    #[serde(default)]
    pub current: bool,
}

#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum ResolutionInput {
    KeepLocal,
    UseServer,
    MergeFields(#[arbitrary(with = few::<(u8, bool), 4>)] Vec<(u8, bool)>),
    MergeValues(DataInput),
}

/// One step of an [`engine_merge`](super::engine_merge) run. The common steps come
/// first; the app's lifecycle is one variant, so that an arbitrary input spends most steps
/// writing and answering.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum StepInput {
    Write(WriteInput),
    /// Answers the oldest outstanding request, starting a sync first if none is.
    Answer {
        answer: AnswerInput,
        /// Deliver the same answer a second time (it must be ignored).
        #[serde(default)]
        redeliver: bool,
    },
    OtherDevice(OtherWriteInput),
    Resolve {
        conflict: u8,
        resolution: ResolutionInput,
    },
    #[serde(untagged)]
    Lifecycle(LifecycleInput),
}

/// The app's lifecycle and the user's sync controls (written in JSON without a wrapper).
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub enum LifecycleInput {
    SyncNow,
    /// Virtual time moves on: the engine's timers due meanwhile fire at their deadlines,
    /// then the app's timer callback runs once more.
    Timeout {
        advance_s: u16,
    },
    /// The device's wall clock jumps back (virtual time does not).
    ClockBack {
        back_s: u16,
    },
    Network {
        online: bool,
    },
    Cancel,
    WipeSpace {
        space: u8,
    },
    Force {
        entity: u8,
        push: bool,
    },
    /// The app is killed and reopened: in-memory state and unanswered requests are gone,
    /// and its files stay as a killed process leaves them (the WAL included).
    Reopen,
    /// The app will be killed the next time the engine reaches this crash point (an index
    /// into the named points of `CrashPoint::ALL`, wrapping), inside whichever call gets
    /// there first; it is reopened right after. A crash point never reached stays armed.
    Crash {
        point: u8,
    },
}

/// Input of [`engine_merge`](super::engine_merge): local writes, then steps.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct EngineMergeInput {
    #[serde(default)]
    #[arbitrary(with = few::<WriteInput, 8>)]
    pub setup: Vec<WriteInput>,
    pub steps: Vec<StepInput>,
}
