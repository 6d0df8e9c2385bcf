//! Regression (issue 14): a server that pages forever. A pull answer that hands back the
//! cursor its request sent, with `hasMore: true`, made the engine ask for the same page
//! again, and again: the sync never ended, nothing else ran, and the device hammered the
//! server as fast as it answered. The engine must notice that its pages stopped
//! advancing, end the sync with a typed failure, keep the pages it committed before, and
//! try again on its own backoff timer.
//!
//! The fake server here counts requests and gives up past a limit, so a looping engine
//! fails the test instead of hanging it.

use serde_json::{json, Value};
use sync_engine::testing::{open_engine_in, EPOCH_MS};
use sync_engine::wire::{data_response, SyncPullVariables, SyncRequest};
use sync_engine::{Engine, ManualClock, SyncEvent, SyncFailure};

/// More requests than any sync here needs: past it, the engine is looping.
const REQUESTS_MAX: usize = 50;

/// A pull page as JSON.
fn page(items: Value, last_sync_at: &str, has_more: bool) -> Value {
    json!({"items": items, "deletedIds": [], "lastSyncAt": last_sync_at, "hasMore": has_more})
}

/// One `Space` row the server holds.
fn space_row(n: u64) -> Value {
    json!({"id": format!("srv-{n}"), "clientId": format!("space-{n}"), "spaceId": "s1",
           "version": 1, "updatedAt": (EPOCH_MS << 16) + n, "data": {"name": format!("s{n}")}})
}

/// The cursor a pull request sends (`""` for none).
fn cursor_of(request: &SyncRequest) -> String {
    let variables: SyncPullVariables =
        serde_json::from_value(request.variables.to_json().into_owned()).expect("pull variables");
    variables.last_sync_at.unwrap_or_default()
}

/// Sends every request the engine has to `server`, at most [`REQUESTS_MAX`] in all;
/// returns the events of the run.
fn drive(engine: &mut Engine, server: &mut dyn FnMut(&SyncRequest) -> Value) -> Vec<SyncEvent> {
    let mut sent = 0;
    while let Some(request) = engine.poll_request() {
        sent += 1;
        assert!(
            sent <= REQUESTS_MAX,
            "the engine keeps asking: {sent} requests, the last a {} from {:?}",
            request.operation_name,
            cursor_of(&request)
        );
        let answer = server(&request);
        engine
            .handle_response(request.request_id, Ok(answer))
            .expect("a looping answer is data, never an operating error");
    }
    std::iter::from_fn(|| engine.poll_event()).collect()
}

/// A server whose `Space` pages are fine up to cursor `c1` (one row) and from there hand
/// back the request's cursor with `hasMore: true` — with the row again when `with_items`.
/// Every other entity has nothing.
fn stuck_after_first_page(with_items: bool) -> impl FnMut(&SyncRequest) -> Value {
    move |request| {
        let operation = request.operation_name.as_str();
        let cursor = cursor_of(request);
        let answer = match (operation, cursor.as_str()) {
            ("syncPullSpace", "") => page(json!([space_row(1)]), "c1", true),
            ("syncPullSpace", stuck) => {
                let items = if with_items {
                    json!([space_row(2)])
                } else {
                    json!([])
                };
                page(items, stuck, true)
            }
            _ => page(json!([]), "", false),
        };
        data_response(operation, answer)
    }
}

fn paging_stalled(events: &[SyncEvent]) -> Option<(SyncFailure, Option<u64>)> {
    events.iter().find_map(|event| match event {
        SyncEvent::SyncFailed {
            reason,
            retry_at_ms,
        } => Some((reason.clone(), *retry_at_ms)),
        _ => None,
    })
}

// Proves a page that repeats its request's cursor with more to come ends the sync with
// `PagingStalled` (with or without rows on the page), keeps the page committed before it,
// writes nothing of the stalled page, and is retried on the backoff timer, which syncs
// once the server pages correctly again.
#[test]
fn a_page_repeating_its_cursor_ends_the_sync_and_it_is_retried() {
    for with_items in [false, true] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = ManualClock::new(EPOCH_MS);
        let mut engine = open_engine_in(dir.path(), "acme", clock.clone(), 3);
        engine.set_auth_token("token-acme").unwrap();
        engine.sync_now().unwrap();
        let events = drive(&mut engine, &mut stuck_after_first_page(with_items));
        let (reason, retry_at_ms) = paging_stalled(&events).expect("the sync failed");
        assert_eq!(
            reason,
            SyncFailure::PagingStalled {
                entity: "Space".to_owned(),
                cursor: "c1".to_owned(),
            }
        );
        assert!(!events.contains(&SyncEvent::SyncCompleted));
        let retry_at_ms = retry_at_ms.expect("a stalled pager is retried");
        // The first page stands; the stalled page's row does not.
        assert!(engine.get("space-1").unwrap().is_some());
        assert!(engine.get("space-2").unwrap().is_none());
        assert_eq!(engine.poll_request(), None, "nothing more is asked");

        // The retry timer fires and the server pages correctly from where it stood.
        clock.set_ms(retry_at_ms);
        engine.handle_timeout().unwrap();
        let events = drive(&mut engine, &mut |request: &SyncRequest| {
            let operation = request.operation_name.as_str();
            let answer = match (operation, cursor_of(request).as_str()) {
                ("syncPullSpace", "c1") => page(json!([space_row(2)]), "c2", false),
                ("syncPullSpace", other) => panic!("the retry pulls from c1, not {other:?}"),
                _ => page(json!([]), "", false),
            };
            data_response(operation, answer)
        });
        assert_eq!(events.last(), Some(&SyncEvent::SyncCompleted));
        assert!(engine.get("space-2").unwrap().is_some());
    }
}

// Proves a pager that cycles (c1 -> c2 -> c1, each page "with more") is caught too: a
// cursor already seen in the same pass is no progress.
#[test]
fn a_pager_that_cycles_through_cursors_ends_the_sync() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut engine = open_engine_in(dir.path(), "acme", ManualClock::new(EPOCH_MS), 3);
    engine.set_auth_token("token-acme").unwrap();
    engine.sync_now().unwrap();
    let events = drive(&mut engine, &mut |request: &SyncRequest| {
        let operation = request.operation_name.as_str();
        let answer = match (operation, cursor_of(request).as_str()) {
            ("syncPullSpace", "" | "c2") => page(json!([]), "c1", true),
            ("syncPullSpace", _) => page(json!([]), "c2", true),
            _ => page(json!([]), "", false),
        };
        data_response(operation, answer)
    });
    let (reason, retry_at_ms) = paging_stalled(&events).expect("the sync failed");
    assert!(
        matches!(reason, SyncFailure::PagingStalled { .. }),
        "{reason:?}"
    );
    assert!(retry_at_ms.is_some());
}

// Proves the rule is no wider than a stall: a last page may keep the cursor it was asked
// for (nothing new), and pages that advance may go on for as long as they advance.
#[test]
fn pages_that_advance_or_end_are_not_a_stall() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut engine = open_engine_in(dir.path(), "acme", ManualClock::new(EPOCH_MS), 3);
    engine.set_auth_token("token-acme").unwrap();
    engine.sync_now().unwrap();
    let events = drive(&mut engine, &mut |request: &SyncRequest| {
        let operation = request.operation_name.as_str();
        let cursor = cursor_of(request);
        let answer = match (operation, cursor.as_str()) {
            ("syncPullSpace", "c9") => page(json!([]), "c9", false),
            ("syncPullSpace", from) => {
                let n: u64 = from.trim_start_matches('c').parse().unwrap_or(0) + 1;
                page(json!([space_row(n)]), &format!("c{n}"), true)
            }
            _ => page(json!([]), &cursor, false),
        };
        data_response(operation, answer)
    });
    assert_eq!(events.last(), Some(&SyncEvent::SyncCompleted));
    assert!(engine.get("space-9").unwrap().is_some());
}
