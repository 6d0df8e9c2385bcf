//! Storage faults in the kernel: a push answer that reaches a device while another
//! process holds its database's write lock (or while its disk is full) fails typed, which
//! the fault model allows, and the device syncs again by its own timers once the fault is
//! lifted, with no "sync now". With the planted engine defect that leaves the machine
//! mid-run after such a failure, the device's write never reaches the server.

use serde_json::json;
use sync_sim::kernel::{Failure, Sim, SimBuilder};
use sync_sim::server::{Defect, ServerDefects};

/// How a storage fault strikes the phone just after it sent its push.
#[derive(Clone, Copy)]
enum Fault {
    Busy,
    /// A full disk, while the laptop's large records wait on the server for the phone's
    /// pull.
    Full,
}

/// The phone creates a record and syncs; `fault` strikes its database for a minute while
/// the push is on the wire; then twenty minutes of virtual time pass with nobody pressing
/// "sync now". Returns the world and how many of the phone's calls failed on storage
/// while the answer was delivered.
fn push_answered_under(fault: Fault, defects: ServerDefects) -> Result<(Sim, usize), Failure> {
    let mut sim = SimBuilder::new(5)
        .tenants(vec!["acme".to_owned()])
        .device("phone", Some("acme"))
        .device("laptop", Some("acme"))
        .defects(defects)
        .build();
    sim.restart(0)?;
    sim.restart(1)?;
    sim.run_until_quiet()?;
    let note = "n".repeat(1_500);
    let created = sim.call(0, |engine| {
        Ok(engine.create("Space", "space-0", json!({ "title": "kept", "note": note }))?)
    })?;
    let client_id = created.ok().expect("the create ran");
    sim.acknowledge_create(0, &client_id)?;
    if let Fault::Full = fault {
        // Rows the phone's pull must store: more than the pages it has free.
        for index in 0..30 {
            let data = json!({ "title": format!("big {index}"), "note": note });
            let created = sim.call(1, |engine| Ok(engine.create("Space", "space-0", data)?))?;
            let client_id = created.ok().expect("the create ran");
            sim.oracle_mut().model.record_create("acme", &client_id);
            sim.acknowledge(1, &client_id)?;
        }
        sim.call(1, |engine| Ok(engine.sync_now()?))?;
        sim.run_until_quiet()?;
    }
    sim.call(0, |engine| Ok(engine.sync_now()?))?;
    match fault {
        Fault::Busy => sim.lock_database(0, 60_000),
        Fault::Full => sim.fill_disk(0, 60_000)?,
    }
    sim.run_until_quiet()?;
    let failures = storage_failures(&sim);
    let later_ms = sim.now_ms() + 20 * 60_000;
    sim.run_until(later_ms)?;
    Ok((sim, failures))
}

fn storage_failures(sim: &Sim) -> usize {
    sim.recent_trace()
        .iter()
        .filter(|line| line.contains("phone storage failure"))
        .count()
}

// Proves a push answer meeting a locked database is an allowed, typed failure, and the
// phone's own retry timer pushes the write once the lock is gone: the world converges.
#[test]
fn a_push_answer_meeting_a_lock_is_retried_by_the_timer_and_the_world_converges() {
    let (mut sim, failures) =
        push_answered_under(Fault::Busy, ServerDefects::default()).expect("no violation");
    assert!(failures >= 1, "the lock never met a write");
    assert_eq!(sim.difference().expect("readable"), None);
    sim.final_checks().expect("every final check passes");
}

// Proves the same for a full disk: the pulled page needs room the disk does not give.
#[test]
fn a_pull_on_a_full_disk_is_retried_by_the_timer_and_the_world_converges() {
    let (mut sim, failures) =
        push_answered_under(Fault::Full, ServerDefects::default()).expect("no violation");
    assert!(failures >= 1, "the full disk never refused a write");
    assert_eq!(sim.difference().expect("readable"), None);
    sim.final_checks().expect("every final check passes");
}

// Proves the kernel's storage faults reveal an engine left mid-run by a storage failure:
// its write stays on the phone.
#[test]
fn an_engine_left_mid_run_by_a_storage_failure_never_syncs_again() {
    let defects = ServerDefects::planting([Defect::StorageErrorLeavesSyncStuck]);
    let (sim, failures) = push_answered_under(Fault::Busy, defects).expect("no safety violation");
    assert!(failures >= 1, "the lock never met a write");
    let difference = sim.difference().expect("readable");
    assert!(difference.is_some(), "the stuck phone converged");
}
