//! A request that reaches the server only after the device gave up on it: the phone's
//! push is held in the network past its request timeout, the phone retries, and the held
//! copy lands later. The server replays the retried op by `opId`, so the late copy
//! changes nothing, and its answer reaches a phone that no longer waits for it. With the
//! planted engine defect that forgets timed-out requests, the late answer is handled as
//! the answer to its request after all, over ops the retry already settled.

use serde_json::json;
use sync_sim::kernel::network::RequestFate;
use sync_sim::kernel::{Failure, Sim, SimBuilder};
use sync_sim::server::{Defect, ServerDefects};

/// The phone creates a record and syncs; its push reaches the server 30 s after the
/// phone's 10 s request timeout; then ten minutes of virtual time pass, and the sync
/// running then ends.
fn push_arrives_late(defects: ServerDefects) -> Result<Sim, Failure> {
    let mut sim = SimBuilder::new(5)
        .tenants(vec!["acme".to_owned()])
        .device("phone", Some("acme"))
        .device("laptop", Some("acme"))
        .defects(defects)
        .build();
    sim.restart(0)?;
    sim.restart(1)?;
    sim.run_until_quiet()?;
    let created = sim.call(0, |engine| {
        Ok(engine.create("Space", "space-0", json!({ "title": "once" }))?)
    })?;
    let client_id = created.ok().expect("the create ran");
    sim.acknowledge_create(0, &client_id)?;
    sim.plan_fates(
        0,
        [RequestFate::HeldPastTimeout {
            held_ms: 30_000,
            return_latency_ms: 5,
        }],
    );
    sim.call(0, |engine| Ok(engine.sync_now()?))?;
    let later_ms = sim.now_ms() + 10 * 60_000;
    sim.run_until(later_ms)?;
    // The interval timer may have started a sync just now: let it finish.
    sim.run_until_quiet()?;
    Ok(sim)
}

// Proves a late copy of a retried push changes nothing and its answer is ignored: one
// record, one effect, and the world converges.
#[test]
fn a_push_landing_after_its_retry_changes_nothing_and_its_answer_is_ignored() {
    let mut sim = push_arrives_late(ServerDefects::default()).expect("no violation");
    assert_eq!(sim.server().records("acme").len(), 1);
    assert_eq!(sim.server().effects().len(), 1);
    assert_eq!(sim.difference().expect("readable"), None);
    sim.final_checks().expect("every final check passes");
}

// Proves the late-arrival fault reveals an engine that forgets its timed-out requests:
// the late answer is taken for its request after the retry settled its ops.
#[test]
#[should_panic(expected = "ops in flight must stay `sending` until answered")]
fn an_engine_that_forgets_timed_out_requests_takes_the_late_answer() {
    let defects = ServerDefects::planting([Defect::ForgetTimedOutRequests]);
    let _ = push_arrives_late(defects);
}
