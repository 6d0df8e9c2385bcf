//! The `conflict_policy` target: the conflict policy's pure functions (`decide`,
//! `judge_pulled`) against each other and against the reference server, which must
//! decide a concurrent write the same way. Pure functions and one fresh server: no
//! engine lifecycle, so no simulation kernel.

use super::{decode, push_request, push_results, DataInput, StampInput, TENANT_A, TOKEN_A};
use crate::server::rules::check_record;
use crate::server::ReferenceServer;
use arbitrary::Arbitrary;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sync_engine::conflict::{self, PulledVerdict, Winner};
use sync_engine::hlc::HlcStamp;
use sync_engine::wire::{ErrorCode, Operation, SyncResultItem};
use sync_engine::{testing, OpStatus, QueuedOp, Record};

/// One side of a concurrent write.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct VersionInput {
    pub stamp: StampInput,
    pub data: DataInput,
}

/// Input of [`conflict_policy`]: a local copy (maybe with pending ops, maybe deleted) and
/// a pulled server copy of the same record.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct ConflictPolicyInput {
    pub local: VersionInput,
    pub server: VersionInput,
    #[serde(default)]
    pub local_missing: bool,
    #[serde(default)]
    pub local_deleted: bool,
    #[serde(default)]
    pub local_base_version: u8,
    #[serde(default)]
    pub server_version: u8,
    #[serde(default)]
    pub pending_ops: u8,
}

const POLICY_STAMPS: &[u64] = &[1000, 2000, 0, u64::MAX];

fn swapped(winner: Winner) -> Winner {
    match winner {
        Winner::Local => Winner::Server,
        Winner::Server => Winner::Local,
        Winner::Same => Winner::Same,
        Winner::User => Winner::User,
    }
}

/// `decide` is deterministic and symmetric and agrees with the stamps; `judge_pulled`
/// follows it; the reference server decides a concurrent write the same way.
pub fn conflict_policy(data: &[u8]) {
    if let Some(input) = decode::<ConflictPolicyInput>(data) {
        conflict_policy_input(&input);
    }
}

pub fn conflict_policy_input(input: &ConflictPolicyInput) {
    let local_stamp = HlcStamp(input.local.stamp.resolve(POLICY_STAMPS));
    let server_stamp = HlcStamp(input.server.stamp.resolve(POLICY_STAMPS));
    let local_data = input.local.data.to_map();
    let server_data = input.server.data.to_map();

    let winner = conflict::decide(local_stamp, &local_data, server_stamp, &server_data);
    assert_eq!(
        winner,
        conflict::decide(local_stamp, &local_data, server_stamp, &server_data),
        "decide is deterministic"
    );
    assert_eq!(
        swapped(winner),
        conflict::decide(server_stamp, &server_data, local_stamp, &local_data),
        "swapping the sides swaps the winner"
    );
    let expected = match local_stamp.cmp(&server_stamp) {
        std::cmp::Ordering::Greater => Winner::Local,
        std::cmp::Ordering::Less => Winner::Server,
        std::cmp::Ordering::Equal if local_data == server_data => Winner::Same,
        std::cmp::Ordering::Equal => Winner::User,
    };
    assert_eq!(
        winner, expected,
        "the newer stamp wins; equal stamps ask the user"
    );

    check_judge_pulled(
        input,
        local_stamp,
        &local_data,
        server_stamp,
        &server_data,
        winner,
    );
    check_server_agrees(
        input,
        local_stamp,
        &local_data,
        server_stamp,
        &server_data,
        winner,
    );
}

fn check_judge_pulled(
    input: &ConflictPolicyInput,
    local_stamp: HlcStamp,
    local_data: &Map<String, Value>,
    server_stamp: HlcStamp,
    server_data: &Map<String, Value>,
    winner: Winner,
) {
    let server_version = i64::from(input.server_version % 8) + 1;
    let local = Record {
        client_id: "c-1".to_owned(),
        server_id: Some("srv-1".to_owned()),
        entity: "Space".to_owned(),
        space_id: "space-1".to_owned(),
        version: i64::from(input.local_base_version % 8) + 1,
        base_version: i64::from(input.local_base_version % 8),
        updated_at: local_stamp,
        is_deleted: input.local_deleted,
        data: local_data.clone(),
    };
    let server = Record {
        client_id: "c-1".to_owned(),
        server_id: Some("srv-1".to_owned()),
        entity: "Space".to_owned(),
        space_id: "space-1".to_owned(),
        version: server_version,
        base_version: server_version,
        updated_at: server_stamp,
        is_deleted: false,
        data: server_data.clone(),
    };
    let pending: Vec<QueuedOp> = (0..input.pending_ops % 4)
        .map(|index| QueuedOp {
            seq: i64::from(index) + 1,
            op_id: format!("op-{index}"),
            entity: "Space".to_owned(),
            operation: if input.local_deleted && index + 1 == input.pending_ops % 4 {
                Operation::Delete
            } else {
                Operation::Update
            },
            entity_id: "c-1".to_owned(),
            space_id: "space-1".to_owned(),
            payload: local_data.clone(),
            base_version: local.base_version,
            updated_at: local_stamp,
            force: false,
            status: OpStatus::Pending,
            attempts: 0,
            last_error: None,
            created_at_ms: 0,
        })
        .collect();
    let local_ref = (!input.local_missing).then_some(&local);
    let verdict = conflict::judge_pulled(local_ref, &pending, &server);
    assert_eq!(
        verdict,
        conflict::judge_pulled(local_ref, &pending, &server),
        "judge_pulled is deterministic"
    );
    if input.local_missing {
        assert_eq!(verdict, PulledVerdict::Stored, "a new record is stored");
        return;
    }
    if pending.is_empty() {
        let expected = if server.version >= local.base_version {
            PulledVerdict::Stored
        } else {
            PulledVerdict::KeptLocal
        };
        assert_eq!(
            verdict, expected,
            "without local edits the newer version is kept"
        );
        return;
    }
    if input.local_deleted {
        assert_eq!(verdict, PulledVerdict::KeptLocal, "a pending delete wins");
        return;
    }
    match winner {
        Winner::Server => {
            let op_ids: Vec<String> = pending.iter().map(|op| op.op_id.clone()).collect();
            assert_eq!(verdict, PulledVerdict::Superseded(op_ids));
        }
        Winner::Local | Winner::Same => assert_eq!(verdict, PulledVerdict::KeptLocal),
        Winner::User => {
            let PulledVerdict::Conflict(conflict) = verdict else {
                panic!("equal stamps, different data: expected a conflict, got {verdict:?}");
            };
            assert_eq!(conflict.local_data, *local_data);
            assert_eq!(conflict.server_data, *server_data);
            assert_eq!(conflict.local_updated_at, local_stamp);
            assert_eq!(conflict.server_updated_at, server_stamp);
            assert_eq!(conflict.server_version, server_version);
            assert!(!conflict.server_is_deleted);
            assert!(!conflict.changed_fields().is_empty());
        }
    }
}

/// The server decides a concurrent update exactly as `decide` does (the client and the
/// server share one policy), and a delete wins whatever the stamps.
fn check_server_agrees(
    input: &ConflictPolicyInput,
    local_stamp: HlcStamp,
    local_data: &Map<String, Value>,
    server_stamp: HlcStamp,
    server_data: &Map<String, Value>,
    winner: Winner,
) {
    let mut server = ReferenceServer::new(testing::example_registry());
    server.add_tenant_token(TENANT_A, TOKEN_A);
    let push = |server: &mut ReferenceServer, item: Value| -> SyncResultItem {
        let request = push_request("syncPushSpace", TENANT_A, TOKEN_A, vec![item]);
        let response = server.handle(&request);
        server.check_invariants();
        let mut results = push_results(&request, &response).expect("a well-formed push");
        assert_eq!(results.len(), 1);
        results.remove(0)
    };
    // Data the server's own rules refuse (over the size limit, a title too long) never
    // meets the conflict policy: the server refuses the write, and there is no verdict to
    // compare.
    let refused_by_rules = |result: &SyncResultItem, data: &Map<String, Value>| {
        assert!(
            !result.success && result.error_code == Some(ErrorCode::Validation),
            "data the rules refuse ({:?}) must be refused: {result:?}",
            check_record(data)
        );
    };
    let inserted = push(
        &mut server,
        json!({"opId": "op-server", "clientId": "c-1", "operation": "insert",
               "data": server_data, "spaceId": "space-1", "updatedAt": server_stamp}),
    );
    if check_record(server_data).is_err() {
        refused_by_rules(&inserted, server_data);
        return;
    }
    assert!(inserted.success, "{inserted:?}");
    let id = inserted.id.expect("an insert names its row");
    let operation = if input.local_deleted {
        "delete"
    } else {
        "update"
    };
    // `baseVersion: 0` — the writer never saw the server's version 1: a concurrent write.
    let result = push(
        &mut server,
        json!({"opId": "op-local", "id": id, "operation": operation, "data": local_data,
               "baseVersion": 0, "spaceId": "space-1", "updatedAt": local_stamp}),
    );
    if !input.local_deleted && check_record(local_data).is_err() {
        refused_by_rules(&result, local_data);
        return;
    }
    let row = server.records(TENANT_A)[0].clone();
    if input.local_deleted {
        assert!(
            result.success,
            "deletes win whatever the stamps: {result:?}"
        );
        assert!(row.is_deleted);
        return;
    }
    match winner {
        Winner::Local => {
            assert!(result.success, "{result:?}");
            assert_eq!(row.version, 2);
            assert_eq!(&row.data, local_data);
        }
        Winner::Server => {
            assert_eq!(result.error_code, Some(ErrorCode::Stale), "{result:?}");
            assert_eq!(row.version, 1);
        }
        Winner::Same => {
            assert!(result.success, "{result:?}");
            assert_eq!(row.version, 1, "an identical write is an echo");
        }
        Winner::User => {
            assert_eq!(result.error_code, Some(ErrorCode::Conflict), "{result:?}");
            assert_eq!(row.version, 1);
        }
    }
}
