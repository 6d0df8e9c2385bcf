//! The `corrupt_at_open` fault in the kernel: the phone's database is damaged while its
//! app is down, the engine refuses it typed at the restart, and the recovery keeps the
//! writes it had not pushed yet: they reach the laptop, the records it had synced come
//! back by pulling, and the world converges. With the planted engine defect whose
//! recovery starts the database empty, the restart is a violation: a readable unsent
//! write was dropped.

use serde_json::json;
use sync_sim::kernel::{Failure, Sim, SimBuilder};
use sync_sim::profile::{FaultClass, Knobs};
use sync_sim::rng::Ratio;
use sync_sim::server::{Defect, ServerDefects};

/// A seed whose damage lands on a page of synced records (neither the header nor the
/// queue), so that every unsent write is readable.
const SEED: u64 = 7;

/// The phone syncs 40 records, writes 3 more offline, and is killed; its restart meets
/// a damaged database (the class fires at every open). Then it comes back online and
/// twenty minutes pass with nobody pressing "sync now".
fn damaged_while_down(defects: ServerDefects) -> Result<Sim, Failure> {
    let mut knobs = Knobs::quiet();
    knobs
        .faults
        .insert(FaultClass::CorruptAtOpen, Ratio::new(1, 1));
    let mut sim = SimBuilder::new(SEED)
        .knobs(knobs)
        .tenants(vec!["acme".to_owned()])
        .device("phone", Some("acme"))
        .device("laptop", Some("acme"))
        .defects(defects)
        .keep_trace(true)
        .build();
    sim.restart(0)?;
    sim.restart(1)?;
    sim.run_until_quiet()?;
    let note = "n".repeat(500);
    let create = |sim: &mut Sim, title: String| -> Result<(), Failure> {
        let data = json!({ "title": title, "note": note });
        let created = sim.call(0, |engine| Ok(engine.create("Space", "space-0", data)?))?;
        let client_id = created.ok().expect("the create ran");
        sim.acknowledge_create(0, &client_id)
    };
    for index in 0..40 {
        create(&mut sim, format!("synced {index}"))?;
    }
    sim.call(0, |engine| Ok(engine.sync_now()?))?;
    sim.run_until_quiet()?;
    sim.offline(0, None)?;
    for index in 0..3 {
        create(&mut sim, format!("unsent {index}"))?;
    }
    sim.kill(0);
    sim.restart(0)?;
    sim.online(0)?;
    sim.run_until_quiet()?;
    let later_ms = sim.now_ms() + 20 * 60_000;
    sim.run_until(later_ms)?;
    Ok(sim)
}

// Proves the damage is refused and recovered at the restart, the unsent writes are kept
// and pushed, the synced records are pulled back, and every final check passes.
#[test]
fn a_database_damaged_while_the_app_was_down_is_recovered_and_converges() {
    let mut sim = damaged_while_down(ServerDefects::default()).expect("no violation");
    assert_eq!(
        sim.faults().ledger().get(&FaultClass::CorruptAtOpen),
        Some(&1)
    );
    let trace = sim.take_trace().join("\n");
    assert!(trace.contains("phone database damaged (page"), "{trace}");
    assert!(trace.contains("3 unsent ops, 3 readable"), "{trace}");
    assert!(
        trace.contains("phone recovered acme: 3 ops kept, 0 lost"),
        "{trace}"
    );
    assert_eq!(sim.difference().expect("readable"), None);
    let phone = sim.engine(0).expect("the phone runs");
    assert_eq!(phone.all_records().expect("records").len(), 43);
    sim.final_checks().expect("every final check passes");
}

// Proves the harness catches a recovery that drops the unsent writes it could read.
#[test]
fn a_recovery_that_drops_unsent_writes_is_a_violation() {
    let Err(failure) =
        damaged_while_down(ServerDefects::planting([Defect::RecoveryDropsPendingOps]))
    else {
        panic!("the dropped writes went unnoticed");
    };
    assert!(
        failure.message.contains("lost unsent write"),
        "{}",
        failure.message
    );
}
