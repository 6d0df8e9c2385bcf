//! A server that pages forever for a while: every pull page hands back the cursor its
//! request sent, with `hasMore: true`. The engine must end the sync with a typed failure
//! and retry on its backoff timer until the server pages again, and the world converges.
//! With the planted engine defect that trusts a repeated cursor, the phone asks for the
//! same page again and again, which the kernel's paging budget reports.

use serde_json::json;
use sync_engine::{SyncEvent, SyncFailure};
use sync_sim::kernel::{Failure, Sim, SimBuilder};
use sync_sim::server::{Defect, ServerDefects};

/// The laptop creates two records and syncs them; then for a minute the server's pages
/// do not advance (with their rows when `with_items`) while the phone syncs; then ten
/// minutes of virtual time pass, and the sync running then ends.
fn phone_pulls_from_a_stuck_pager(
    defects: ServerDefects,
    with_items: bool,
) -> Result<Sim, Failure> {
    let mut sim = SimBuilder::new(9)
        .tenants(vec!["acme".to_owned()])
        .device("phone", Some("acme"))
        .device("laptop", Some("acme"))
        .defects(defects)
        .collect_events(true)
        .build();
    sim.restart(0)?;
    sim.restart(1)?;
    sim.run_until_quiet()?;
    for n in 0..2 {
        let created = sim.call(1, |engine| {
            Ok(engine.create("Space", "space-0", json!({ "title": format!("t{n}") }))?)
        })?;
        let client_id = created.ok().expect("the create ran");
        sim.acknowledge_create(1, &client_id)?;
    }
    sim.call(1, |engine| Ok(engine.sync_now()?))?;
    sim.run_until_quiet()?;
    sim.stall_paging(60_000, with_items);
    sim.call(0, |engine| Ok(engine.sync_now()?))?;
    let later_ms = sim.now_ms() + 10 * 60_000;
    sim.run_until(later_ms)?;
    sim.run_until_quiet()?;
    Ok(sim)
}

// Proves a stuck pager ends the phone's sync with `PagingStalled`, that the phone retries
// on its own, and that the world converges once the server pages again.
#[test]
fn a_stuck_pager_fails_the_sync_and_the_retry_converges() {
    for with_items in [false, true] {
        let mut sim = phone_pulls_from_a_stuck_pager(ServerDefects::default(), with_items)
            .expect("no violation");
        let events = sim.take_events(0);
        let stalled = events.iter().any(|event| {
            matches!(
                event,
                SyncEvent::SyncFailed {
                    reason: SyncFailure::PagingStalled { .. },
                    retry_at_ms: Some(_),
                }
            )
        });
        assert!(stalled, "the phone's sync failed as stalled: {events:?}");
        assert_eq!(events.last(), Some(&SyncEvent::SyncCompleted));
        assert_eq!(sim.difference().expect("readable"), None);
        sim.final_checks().expect("every final check passes");
    }
}

// Proves the paging budget reveals an engine that trusts a repeated cursor: it keeps
// asking for the page that does not advance.
#[test]
fn an_engine_that_trusts_a_repeated_cursor_breaks_the_paging_budget() {
    let defects = ServerDefects::planting([Defect::TrustRepeatedCursor]);
    let failure = phone_pulls_from_a_stuck_pager(defects, false)
        .err()
        .expect("a violation");
    assert!(
        failure
            .message
            .starts_with("paging without progress: phone sent"),
        "{}",
        failure.message
    );
}
