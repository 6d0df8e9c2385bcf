//! Regression (issue 14): a repair whose first request fails is not lost.
//!
//! A checksum mismatch at the end of a pass starts a repair: the entity is pulled again
//! from the start and the records the server no longer has are forgotten. The page that
//! showed the mismatch used to store its cursor, so when the repair's first request
//! failed, the next sync pulled on from that cursor as if nothing were wrong, and with a
//! write pending (which holds the checksum back) it did not even notice again: the
//! device kept a record the server had deleted. Now the mismatching page stores no cursor
//! and marks a whole pass under way, and the next sync runs that pass.

use serde_json::{json, Map, Value};
use sync_engine::testing::open_temp_engine;
use sync_engine::wire::{data_response, version_hash, SyncPullVariables, SyncRequest};
use sync_engine::{Engine, TransportError};

fn row(n: u64) -> Value {
    json!({"id": format!("srv-{n}"), "clientId": format!("space-{n}"), "spaceId": "s1",
           "version": 1, "updatedAt": (1_700_000_000_000u64 << 16) + n,
           "data": {"name": format!("s{n}")}})
}

fn hash_of(rows: &[u64]) -> String {
    let data: Vec<(String, Map<String, Value>)> = rows
        .iter()
        .map(|n| {
            let data = row(*n)["data"].as_object().cloned().unwrap();
            (format!("srv-{n}"), data)
        })
        .collect();
    version_hash(data.iter().map(|(id, data)| (id.as_str(), 1, data)))
}

fn page(rows: &[u64], cursor: &str, hash: Option<String>) -> Value {
    let items: Vec<Value> = rows.iter().map(|n| row(*n)).collect();
    json!({"items": items, "deletedIds": [], "lastSyncAt": cursor, "hasMore": false,
           "versionHash": hash})
}

fn cursor_of(request: &SyncRequest) -> Option<String> {
    let variables: SyncPullVariables =
        serde_json::from_value(request.variables.to_json().into_owned()).unwrap();
    variables.last_sync_at.filter(|cursor| !cursor.is_empty())
}

/// The answer to any other request: an empty page, or no results for a push.
fn other(request: &SyncRequest) -> Value {
    if request.operation_name.starts_with("syncPush") {
        json!({"results": []})
    } else {
        page(&[], "", None)
    }
}

/// Answers every request of the current sync with `answer` (None: the request fails).
fn drive(engine: &mut Engine, answer: &mut dyn FnMut(&mut Engine, &SyncRequest) -> Option<Value>) {
    while let Some(request) = engine.poll_request() {
        let response = match answer(engine, &request) {
            Some(payload) => Ok(data_response(&request.operation_name, payload)),
            None => Err(TransportError::unreachable("the network dropped")),
        };
        let _ = engine.handle_response(request.request_id, response);
    }
}

// Proves that after a repair's first request fails, the next sync pulls the entity from
// the start (not from the mismatching page's cursor) and forgets the record the server
// no longer has, although a write made meanwhile holds the checksum back.
#[test]
fn a_repair_cut_short_runs_again_whole() {
    let (_dir, mut engine) = open_temp_engine("acme");
    engine.set_auth_token("token-acme").unwrap();

    // First sync: the device holds spaces 1 and 2.
    engine.sync_now().unwrap();
    drive(&mut engine, &mut |_, request| {
        Some(match request.operation_name.as_str() {
            "syncPullSpace" => page(&[1, 2], "c2", Some(hash_of(&[1, 2]))),
            _ => other(request),
        })
    });
    assert!(engine.get("space-1").unwrap().is_some());

    // Space 1 was deleted and its tombstone purged: the page from c2 is empty and the
    // checksum covers space 2 alone. The repair's pull from the start fails.
    engine.sync_now().unwrap();
    drive(
        &mut engine,
        &mut |_, request| match request.operation_name.as_str() {
            "syncPullSpace" if cursor_of(request).is_some() => {
                Some(page(&[], "c2", Some(hash_of(&[2]))))
            }
            "syncPullSpace" => None,
            _ => Some(other(request)),
        },
    );

    // The next sync: while its pull is on the wire the user writes, so an op is pending
    // when the last page comes.
    engine.sync_now().unwrap();
    let mut space_pulls_from = Vec::new();
    drive(&mut engine, &mut |engine, request| {
        if request.operation_name != "syncPullSpace" {
            return Some(other(request));
        }
        space_pulls_from.push(cursor_of(request));
        engine
            .create("Space", "s1", json!({"name": "made mid-pull"}))
            .unwrap();
        Some(match cursor_of(request) {
            Some(_) => page(&[], "c2", Some(hash_of(&[2]))),
            None => page(&[2], "c2", Some(hash_of(&[2]))),
        })
    });
    assert_eq!(
        space_pulls_from.first(),
        Some(&None),
        "the cut-short repair runs again from the start: {space_pulls_from:?}"
    );
    assert!(
        engine.get("space-1").unwrap().is_none(),
        "the record the server no longer has is forgotten"
    );
    assert!(engine.get("space-2").unwrap().is_some());
}
