//! The engine and the reference server on a real wire: `syncsim serve` on a loopback
//! port, engines syncing through `sync_http::HttpTransport`. Two devices of one tenant
//! and one of another write offline, sync, meet a conflict and a force push; every device
//! of a tenant ends with what a fresh device pulls from the server, and no tenant ever
//! sees the other's records.

mod served;

use serde_json::{json, Value};
use served::ServeProcess;
use std::time::Duration;
use sync_engine::testing::{open_engine_in, EPOCH_MS};
use sync_engine::{Engine, ManualClock, Resolution, SyncEvent};
use sync_http::{GraphqlClient, HttpTransport};

const SPACE: &str = "Space";

struct Device {
    engine: Engine,
    clock: ManualClock,
    _dir: tempfile::TempDir,
}

fn device(tenant: &str, token: &str, seed: u64) -> Device {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = ManualClock::new(EPOCH_MS);
    let mut engine = open_engine_in(dir.path(), tenant, clock.clone(), seed);
    engine.set_auth_token(token).expect("store the token");
    Device {
        engine,
        clock,
        _dir: dir,
    }
}

fn sync(device: &mut Device, endpoint: &str) -> Vec<SyncEvent> {
    let client = GraphqlClient::new(endpoint)
        .expect("a loopback endpoint")
        .with_timeout(Duration::from_secs(10));
    let events = device
        .engine
        .sync_blocking(&mut HttpTransport::new(client))
        .expect("sync");
    assert!(events.contains(&SyncEvent::SyncCompleted), "{events:?}");
    events
}

/// What a device holds: (client id, server id, version, data), in client id order.
fn holdings(device: &Device) -> Vec<(String, Option<String>, i64, Value)> {
    let mut records: Vec<_> = device
        .engine
        .all_records()
        .expect("read the records")
        .into_iter()
        .filter(|record| !record.is_deleted)
        .map(|record| {
            (
                record.client_id,
                record.server_id,
                record.version,
                Value::Object(record.data),
            )
        })
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0));
    records
}

fn name_of(device: &Device, client_id: &str) -> Value {
    device
        .engine
        .get(client_id)
        .expect("read")
        .expect("present")
        .data["name"]
        .clone()
}

#[test]
fn two_tenants_sync_conflict_and_force_over_http_and_converge_isolated() {
    let server = ServeProcess::start(&[]);
    let endpoint = server.endpoint.clone();
    let mut phone = device("alpha", "dev-token-alpha", 1);
    let mut laptop = device("alpha", "dev-token-alpha", 2);
    let mut other = device("beta", "dev-token-beta", 3);

    // Offline writes on every device, then sync.
    let kitchen = phone
        .engine
        .create(SPACE, "home", json!({ "name": "Kitchen" }))
        .unwrap();
    let garden = phone
        .engine
        .create(SPACE, "home", json!({ "name": "Garden" }))
        .unwrap();
    let office = laptop
        .engine
        .create(SPACE, "home", json!({ "name": "Office" }))
        .unwrap();
    let private = other
        .engine
        .create(SPACE, "home", json!({ "name": "Beta only" }))
        .unwrap();
    for device in [&mut phone, &mut laptop, &mut other] {
        device.clock.advance_ms(1_000);
        sync(device, &endpoint);
    }
    sync(&mut phone, &endpoint);
    assert_eq!(holdings(&phone), holdings(&laptop));
    assert_eq!(holdings(&phone).len(), 3);
    assert_eq!(holdings(&other).len(), 1);
    assert_eq!(name_of(&phone, &office), json!("Office"));
    assert_eq!(name_of(&laptop, &garden), json!("Garden"));

    // A conflict: both devices rename the kitchen at the same instant (equal stamps);
    // the laptop's write reaches the server first, the phone keeps its own.
    let instant = EPOCH_MS + 60_000;
    phone.clock.set_ms(instant);
    laptop.clock.set_ms(instant);
    laptop
        .engine
        .update(&kitchen, json!({ "name": "Pantry" }))
        .unwrap();
    phone
        .engine
        .update(&kitchen, json!({ "name": "Larder" }))
        .unwrap();
    assert_eq!(
        phone.engine.get(&kitchen).unwrap().unwrap().updated_at,
        laptop.engine.get(&kitchen).unwrap().unwrap().updated_at,
        "the arrangement must give equal stamps"
    );
    sync(&mut laptop, &endpoint);
    let events = sync(&mut phone, &endpoint);
    assert!(
        events
            .iter()
            .any(|event| matches!(event, SyncEvent::ConflictStored { client_id, .. } if *client_id == kitchen)),
        "{events:?}"
    );
    let conflict = phone.engine.list_conflicts().unwrap().remove(0);
    phone
        .engine
        .resolve_conflict(conflict.id, Resolution::KeepLocal)
        .unwrap();
    sync(&mut phone, &endpoint);
    sync(&mut laptop, &endpoint);
    assert_eq!(name_of(&laptop, &kitchen), json!("Larder"));

    // A force push: the laptop's newer edit is on the server; the phone's older edit
    // would lose, and the phone forces it through.
    laptop.clock.advance_ms(5_000);
    laptop
        .engine
        .update(&office, json!({ "name": "Study" }))
        .unwrap();
    sync(&mut laptop, &endpoint);
    phone.clock.advance_ms(1_000);
    phone
        .engine
        .update(&office, json!({ "name": "Phone wins" }))
        .unwrap();
    let plan = phone.engine.plan_force_push_local(SPACE).unwrap();
    assert_eq!(plan.local_changes(), 1);
    phone.engine.execute_force(plan.confirm()).unwrap();
    sync(&mut phone, &endpoint);
    sync(&mut laptop, &endpoint);
    assert_eq!(name_of(&laptop, &office), json!("Phone wins"));
    sync(&mut phone, &endpoint);

    // Convergence: both devices of alpha hold what a fresh alpha device pulls.
    let mut fresh = device("alpha", "dev-token-alpha", 4);
    sync(&mut fresh, &endpoint);
    assert_eq!(holdings(&phone), holdings(&fresh));
    assert_eq!(holdings(&laptop), holdings(&fresh));
    assert_eq!(holdings(&fresh).len(), 3);
    for device in [&phone, &laptop, &fresh] {
        assert!(device.engine.queued_ops().unwrap().is_empty());
        assert!(device.engine.list_conflicts().unwrap().is_empty());
        device.engine.check_invariants().unwrap();
    }

    // Isolation: beta never sees alpha's records, nor alpha beta's.
    sync(&mut other, &endpoint);
    let mut fresh_beta = device("beta", "dev-token-beta", 5);
    sync(&mut fresh_beta, &endpoint);
    assert_eq!(holdings(&other), holdings(&fresh_beta));
    let beta_ids: Vec<String> = holdings(&fresh_beta).into_iter().map(|row| row.0).collect();
    assert_eq!(beta_ids, vec![private.clone()]);
    assert!(holdings(&fresh).iter().all(|row| row.0 != private));
}

#[test]
fn a_served_server_with_data_comes_back_after_a_restart() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let data_dir = data.path().to_str().expect("a UTF-8 path").to_owned();
    let mut phone = device("alpha", "dev-token-alpha", 1);
    let kitchen = phone
        .engine
        .create(SPACE, "home", json!({ "name": "Kitchen" }))
        .unwrap();
    {
        let server = ServeProcess::start(&["--data", &data_dir]);
        sync(&mut phone, &server.endpoint);
        phone.clock.advance_ms(1_000);
        phone
            .engine
            .update(&kitchen, json!({ "name": "Larder" }))
            .unwrap();
        sync(&mut phone, &server.endpoint);
    }
    let server = ServeProcess::start(&["--data", &data_dir]);
    let mut fresh = device("alpha", "dev-token-alpha", 2);
    sync(&mut fresh, &server.endpoint);
    assert_eq!(holdings(&fresh), holdings(&phone));
    assert_eq!(name_of(&fresh, &kitchen), json!("Larder"));
    // The restarted server goes on from where it stood: no id or cursor starts over.
    phone.clock.advance_ms(1_000);
    let garden = phone
        .engine
        .create(SPACE, "home", json!({ "name": "Garden" }))
        .unwrap();
    sync(&mut phone, &server.endpoint);
    sync(&mut fresh, &server.endpoint);
    assert_eq!(holdings(&fresh), holdings(&phone));
    let ids: Vec<Option<String>> = holdings(&phone).into_iter().map(|row| row.1).collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "the restarted server reused a server id");
    assert_eq!(name_of(&fresh, &garden), json!("Garden"));
}
