//! Regression: force-from-server kept every page of the pull in memory and cloned that
//! whole buffer again on each page, so a pull of `n` pages copied O(n²) items and held
//! the entity's entire replacement in memory. Each page is now staged in SQLite as it
//! arrives, and only the last page's transaction swaps the staged rows in.

use crate::testing::{open_temp_engine, EPOCH_MS};
use crate::wire::data_response;
use crate::{HlcStamp, ListOptions, SyncEvent};
use serde_json::json;

const ENTITY: &str = "Identity";
const PAGES: u64 = 40;
const ITEMS_PER_PAGE: u64 = 25;

#[test]
fn each_force_page_costs_the_same_and_readers_see_the_old_data_until_the_swap() {
    // Proves: the sync machine's in-memory state does not grow with the pages; every page
    // but the last changes only about its own rows in SQLite (the staging of that page),
    // however many pages came before; until the last page's
    // transaction, a reader sees exactly the old records; the swap then writes each
    // staged row once.
    let (_dir, mut engine) = open_temp_engine("acme");
    engine.set_auth_token("token-acme").unwrap();
    engine.create(ENTITY, "s1", json!({"name": "old"})).unwrap();
    let plan = engine.plan_force_from_server(ENTITY).unwrap();
    engine.execute_force(plan.confirm()).unwrap();

    let mut per_page_changes = Vec::new();
    // The sync machine's whole volatile state, measured by its debug rendering.
    let mut state_bytes = Vec::new();
    for page in 0..PAGES {
        let request = engine.poll_request().expect("the next force page");
        let items: Vec<_> = (0..ITEMS_PER_PAGE)
            .map(|i| {
                let n = page * ITEMS_PER_PAGE + i;
                json!({
                    "id": format!("srv-{n}"),
                    "clientId": format!("0190c0de-0000-7000-8000-{n:012}"),
                    "spaceId": "s1",
                    "version": 1,
                    "updatedAt": HlcStamp::new(EPOCH_MS - 1_000, 0),
                    "data": { "name": format!("server {n}") },
                })
            })
            .collect();
        let last = page + 1 == PAGES;
        let answer = data_response(
            &request.operation_name,
            json!({
                "items": items,
                "deletedIds": [],
                "lastSyncAt": format!("cursor-{page}"),
                "versionHash": null,
                "hasMore": !last,
            }),
        );
        let before = engine.conn.total_changes();
        engine
            .handle_response(request.request_id, Ok(answer))
            .unwrap();
        per_page_changes.push(engine.conn.total_changes() - before);
        if !last {
            state_bytes.push(format!("{:?}", engine.sync).len());
            let live = engine.list(ENTITY, None, ListOptions::default()).unwrap();
            assert_eq!(live.len(), 1, "page {page}: a reader sees the old data");
            assert_eq!(live[0].data["name"], json!("old"));
        }
    }

    let (smallest, largest) = (state_bytes.iter().min(), state_bytes.iter().max());
    assert!(
        largest.unwrap() - smallest.unwrap() < 64,
        "the machine's state grew with the pages: {state_bytes:?} bytes"
    );
    let (last, staged) = per_page_changes.split_last().unwrap();
    for (page, changes) in staged.iter().enumerate() {
        assert!(
            (ITEMS_PER_PAGE..=ITEMS_PER_PAGE + 2).contains(changes),
            "page {page} changed {changes} rows; every page's: {per_page_changes:?}"
        );
    }
    let total = PAGES * ITEMS_PER_PAGE;
    // Three rows per record (its record, its id mapping, its staged row) and two more for
    // its change note, written and cleared in the same transaction (`store/changes.rs`).
    assert!(
        *last <= ITEMS_PER_PAGE + 5 * total + 10,
        "the swap changed {last} rows for {total} records"
    );
    assert!(std::iter::from_fn(|| engine.poll_event()).any(|event| event
        == SyncEvent::ForceCompleted {
            entity: ENTITY.to_owned()
        }));
    let live = engine.list(ENTITY, None, ListOptions::default()).unwrap();
    assert_eq!(live.len() as u64, total);
    assert!(engine.queued_ops().unwrap().is_empty());
    engine.check_invariants().unwrap();
}
