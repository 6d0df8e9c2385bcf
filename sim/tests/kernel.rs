//! The simulation kernel's own promises: a simulated kill leaves the files a killed
//! process leaves (the WAL included), so a reopen runs SQLite's real WAL recovery; and
//! each fault class draws from its own stream, so switching one off leaves the user's
//! actions exactly as they were.

use serde_json::json;
use std::collections::BTreeMap;
use sync_engine::{DbLocation, TenantId};
use sync_sim::kernel::{Called, SimBuilder};
use sync_sim::profile::{FaultClass, Knobs, Profile};
use sync_sim::world::{run_seed_with_knobs, RunOptions};

/// The number of records an engine-less look at the main database file alone finds (none
/// when even the schema is still in the WAL).
fn records_in_main_file_only(main: &std::path::Path) -> i64 {
    let copy_dir = tempfile::tempdir().expect("temporary directory");
    let copy = copy_dir.path().join("main-only.db");
    std::fs::copy(main, &copy).expect("copy the main file without its WAL");
    let conn = rusqlite::Connection::open(&copy).expect("open the copy");
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'records'",
            [],
            |row| row.get(0),
        )
        .expect("read the schema");
    if tables == 0 {
        return 0;
    }
    conn.query_row("SELECT count(*) FROM records", [], |row| row.get(0))
        .expect("count records")
}

// Proves a kill does not close SQLite cleanly: right after it the device's `-wal` holds
// the committed writes the main file does not have yet, and the reopened engine sees
// every one of them — which it can only do by recovering them from that WAL.
#[test]
fn a_kill_leaves_the_wal_and_the_reopen_recovers_from_it() {
    let mut sim = SimBuilder::new(1)
        .tenants(vec!["acme".to_owned()])
        .device("phone", Some("acme"))
        .build();
    sim.restart(0).expect("open");
    let items: Vec<_> = (0..25).map(|n| json!({ "n": n })).collect();
    let created = sim
        .call(0, |engine| Ok(engine.create_many("Space", "s1", items)?))
        .expect("no violation");
    let Called::Done(created) = created else {
        panic!("the create did not run: {created:?}");
    };
    assert_eq!(created.len(), 25);

    sim.crash(0, None);
    assert!(!sim.device(0).is_running());
    let tenant = TenantId::parse("acme").expect("valid tenant");
    let main = DbLocation::new(&sim.device(0).dir).db_path(&tenant);
    let mut wal = main.clone().into_os_string();
    wal.push("-wal");
    let wal_len = std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0);
    assert!(wal_len > 0, "a killed process leaves its WAL behind");
    assert!(
        records_in_main_file_only(&main) < 25,
        "the writes must still be in the WAL only, not checkpointed by a clean close"
    );

    assert!(sim.restart(0).expect("reopen passes the oracle's checks"));
    let records = sim.engine(0).expect("running").all_records().expect("read");
    assert_eq!(records.len(), 25, "WAL recovery brought back every commit");
}

/// The user's actions of a run's safety phase, as the world traces them: `d1 action
/// Create` per line. (The second workload starts once the world converged, which faults
/// decide.)
fn user_actions(knobs: Knobs, seed: u64) -> Vec<String> {
    let options = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let report = run_seed_with_knobs(seed, knobs, &options);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    report
        .trace
        .iter()
        .take_while(|line| !line.contains("liveness: heal the network"))
        .filter(|line| line.contains(" action "))
        .cloned()
        .collect()
}

// Proves turning one fault class off does not reshuffle the workload: the same seed with
// the class switched off draws the same user actions at the same times. Seeds are taken
// in order until every fault class has been switched off in a seed where it was on.
#[test]
fn switching_one_fault_class_off_keeps_the_same_user_actions() {
    let mut compared: BTreeMap<FaultClass, u64> = BTreeMap::new();
    for seed in 0..60 {
        if FaultClass::ALL
            .iter()
            .all(|class| compared.contains_key(class))
        {
            break;
        }
        let knobs = Knobs::derive(seed, Profile::Lite);
        let due: Vec<FaultClass> = FaultClass::ALL
            .into_iter()
            .filter(|class| !knobs.fault(*class).is_zero() && !compared.contains_key(class))
            .collect();
        if due.is_empty() {
            continue;
        }
        let with_all = user_actions(knobs.clone(), seed);
        assert!(!with_all.is_empty());
        for class in due {
            let mut without = knobs.clone();
            without.faults.remove(&class);
            assert_eq!(
                user_actions(without, seed),
                with_all,
                "seed {seed}: switching {} off changed the user's actions",
                class.name()
            );
            compared.insert(class, seed);
        }
    }
    let missing: Vec<&str> = FaultClass::ALL
        .iter()
        .filter(|class| !compared.contains_key(class))
        .map(|class| class.name())
        .collect();
    assert!(missing.is_empty(), "never on in 60 lite seeds: {missing:?}");
}
