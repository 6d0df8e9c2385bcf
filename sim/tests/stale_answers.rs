//! Answers outlive the process that asked: the network delivers an answer to whatever
//! process of the device runs when it arrives, so after a kill, a logout or a tenant
//! switch the new engine receives answers to requests it never sent, and only the engine
//! can tell. These tests make one such answer arrive, with and without the planted engine
//! defect that cannot tell.

use serde_json::json;
use sync_sim::kernel::network::{RequestFate, ServerFate};
use sync_sim::kernel::{Failure, Sim, SimBuilder};
use sync_sim::server::{Defect, ServerDefects};

/// A request that reaches the server at once and whose answer takes `return_ms`.
fn slow_answer(return_ms: u64) -> RequestFate {
    RequestFate::Delivered {
        latency_ms: 1,
        server: ServerFate::Normal {
            return_latency_ms: return_ms,
        },
        duplicate_after_ms: None,
    }
}

/// The laptop puts an acme record on the server; the phone opens on acme (its pull of
/// `Space` is answered slowly), switches to globex before the answer comes, and globex's
/// own first pull is slower still: acme's answer arrives while globex waits for its pull.
fn phone_switches_tenant_under_a_slow_answer(defects: ServerDefects) -> Result<Sim, Failure> {
    let mut sim = SimBuilder::new(11)
        .tenants(vec!["acme".to_owned(), "globex".to_owned()])
        .device("phone", Some("acme"))
        .device("laptop", Some("acme"))
        .defects(defects)
        .build();
    sim.restart(1)?;
    let created = sim.call(1, |engine| {
        Ok(engine.create("Space", "space-0", json!({ "title": "acme only" }))?)
    })?;
    let client_id = created.ok().expect("the create ran");
    sim.oracle_mut().model.record_create("acme", &client_id);
    sim.call(1, |engine| Ok(engine.sync_now()?))?;
    sim.run_until_quiet()?;
    assert_eq!(sim.server().records("acme").len(), 1);

    sim.plan_fates(0, [slow_answer(5_000), slow_answer(10_000)]);
    sim.restart(0)?;
    sim.switch_tenant(0, "globex")?;
    sim.run_until_quiet()?;
    Ok(sim)
}

// Proves the kernel no longer drops an answer addressed to a process that is gone: acme's
// answer reaches the globex process, which ignores it — it waits for another request —
// so globex's database stays empty and the world converges.
#[test]
fn an_answer_to_an_earlier_process_reaches_the_new_one_which_ignores_it() {
    let mut sim =
        phone_switches_tenant_under_a_slow_answer(ServerDefects::default()).expect("no violation");
    assert_eq!(sim.stale_answers_delivered(), 1);
    assert!(sim
        .recent_trace()
        .iter()
        .any(|line| line.contains("from an earlier process")));
    let records = sim.engine(0).expect("globex runs").all_records().unwrap();
    assert!(records.is_empty(), "globex holds {records:?}");
    assert_eq!(sim.difference().expect("readable"), None);
    sim.final_checks().expect("every final check passes");
}

// Proves the capability catches an engine that numbers requests from 1 in each process:
// acme's answer to its pull #1 passes for globex's pull #1, and acme's record lands in
// globex's database.
#[test]
fn an_engine_that_takes_a_stale_answer_for_its_own_leaks_another_tenants_rows() {
    let defects = ServerDefects::planting([Defect::AcceptStaleAnswers]);
    let outcome = phone_switches_tenant_under_a_slow_answer(defects).and_then(|mut sim| {
        sim.final_checks()?;
        Ok(sim)
    });
    let failure = outcome.err().expect("the leak is caught");
    assert!(
        failure.message.contains("tenant isolation")
            && failure.message.contains("in tenant globex's database"),
        "{}",
        failure.message
    );
}
