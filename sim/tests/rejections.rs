//! Permanent rejections: the server's rules (`server/rules.rs`) refuse some writes, and
//! too large a push request whole. The engine reports each refused write, takes its record
//! back to the server's copy (or drops it, if the server never had it), and never fails a
//! good op because another op of its batch was refused.

use serde_json::{json, Value};
use sync_engine::{OpStatus, SyncEvent};
use sync_sim::kernel::{Failure, Sim, SimBuilder};
use sync_sim::server::rules::PUSH_DATA_BYTES_MAX;
use sync_sim::server::{Defect, ServerDefects};

fn world(defects: ServerDefects) -> Sim {
    let mut sim = SimBuilder::new(5)
        .tenants(vec!["acme".to_owned()])
        .device("phone", Some("acme"))
        .device("laptop", Some("acme"))
        .defects(defects)
        .collect_events(true)
        .build();
    sim.restart(0).expect("open the phone");
    sim.restart(1).expect("open the laptop");
    sim.run_until_quiet().expect("no violation");
    sim
}

/// Creates `items` on the phone, tells the model, and returns their client ids.
fn create(sim: &mut Sim, items: Vec<Value>) -> Vec<String> {
    let created = sim
        .call(0, |engine| {
            Ok(engine.create_many("Space", "space-0", items)?)
        })
        .expect("no violation")
        .ok()
        .expect("the create ran");
    for client_id in &created {
        sim.acknowledge_create(0, client_id).expect("no violation");
    }
    created
}

fn sync_both(sim: &mut Sim) -> Result<(), Failure> {
    for device in [0, 1] {
        sim.call(device, |engine| Ok(engine.sync_now()?))?;
        sim.run_until_quiet()?;
    }
    Ok(())
}

fn failed_ops(sim: &mut Sim) -> Vec<String> {
    sim.take_events(0)
        .into_iter()
        .filter_map(|event| match event {
            SyncEvent::OpFailed { client_id, .. } => Some(client_id),
            _ => None,
        })
        .collect()
}

/// Thirty records of about a kilobyte: fine one by one, too much for one request.
fn large_records() -> Vec<Value> {
    (0..30)
        .map(|n| json!({ "title": format!("large-{n}"), "note": "n".repeat(1_000) }))
        .collect()
}

// Proves a batch refused whole for its size is sent in smaller runs until it fits: every
// record reaches the server, nothing is reported failed, and the world converges.
#[test]
fn a_push_refused_whole_for_its_size_is_sent_in_halves_and_every_op_applies() {
    let mut sim = world(ServerDefects::default());
    const { assert!(30 * 1_000 > PUSH_DATA_BYTES_MAX) };
    let created = create(&mut sim, large_records());
    sync_both(&mut sim).expect("no violation");
    assert_eq!(failed_ops(&mut sim), Vec::<String>::new());
    assert_eq!(sim.server().records("acme").len(), created.len());
    assert_eq!(sim.difference().expect("readable"), None);
    sim.final_checks().expect("every final check passes");
}

// Proves one bad op among good ones fails alone: the record with an empty title is
// reported, never reaches the server and is gone from the phone; the others apply.
#[test]
fn one_refused_create_fails_alone_and_its_record_is_gone() {
    let mut sim = world(ServerDefects::default());
    let mut items = large_records();
    items[7] = json!({ "title": "" });
    let created = create(&mut sim, items);
    sync_both(&mut sim).expect("no violation");
    assert_eq!(failed_ops(&mut sim), vec![created[7].clone()]);
    assert_eq!(sim.server().records("acme").len(), created.len() - 1);
    let engine = sim.engine(0).expect("the phone runs");
    let refused = engine
        .get(&created[7])
        .unwrap()
        .expect("kept as a tombstone");
    assert!(refused.is_deleted, "the refused record is gone for the app");
    let ops = engine.queued_ops().unwrap();
    assert_eq!(
        ops.len(),
        1,
        "only the failed op stays, as the report: {ops:?}"
    );
    assert_eq!(ops[0].status, OpStatus::Failed);
    assert_eq!(sim.difference().expect("readable"), None);
    sim.final_checks().expect("every final check passes");
}

// Proves a refused update takes its record back to the server's copy (the rejection
// carries the server's row), so the phone converges with the server and the laptop.
#[test]
fn a_refused_update_returns_its_record_to_the_servers_copy() {
    let mut sim = world(ServerDefects::default());
    let created = create(&mut sim, vec![json!({ "title": "fine", "count": 1 })]);
    sync_both(&mut sim).expect("no violation");
    let client_id = created[0].clone();
    sim.call(0, |engine| {
        Ok(engine.update(&client_id, json!({ "note": "x".repeat(3_000) }))?)
    })
    .expect("no violation");
    sync_both(&mut sim).expect("no violation");
    assert_eq!(failed_ops(&mut sim), vec![client_id.clone()]);
    let record = sim.engine(0).unwrap().get(&client_id).unwrap().unwrap();
    assert_eq!(
        Value::Object(record.data),
        json!({ "title": "fine", "count": 1 })
    );
    assert_eq!(sim.difference().expect("readable"), None);
    sim.final_checks().expect("every final check passes");
}

// Proves the oracle catches the old behaviour: a request refused whole fails every op of
// its batch, though the server refused none of them.
#[test]
fn an_engine_that_fails_the_whole_batch_is_caught() {
    let mut sim = world(ServerDefects::planting([Defect::FailWholeBatch]));
    create(&mut sim, large_records());
    let failure = sync_both(&mut sim).expect_err("good ops failed");
    assert!(
        failure.message.starts_with("good op failed"),
        "{}",
        failure.message
    );
}
