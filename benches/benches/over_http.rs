//! `sync_10k` over a real wire: the same two-device sync (A creates 10k items offline,
//! comes online and syncs; B syncs and holds them all), once with the reference server in
//! process and once behind `syncsim serve`'s GraphQL-over-HTTP endpoint on loopback,
//! through the engine's HTTP transport. The ratio of the two is what the wire costs:
//! JSON text both ways, GraphQL parsing and validation, HTTP on a socket.
//!
//! `cargo bench -p sync-benches --features http --bench over_http`. Each iteration gets
//! fresh devices and a fresh server (untimed); the server of the loopback case runs on
//! its own threads, so this measures elapsed time, not one thread's CPU.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::Value;
use std::time::Duration;
use sync_benches::{assert_clean_sync, items, Device, InProcessTransport, SPACE_ID, TENANT, TOKEN};
use sync_engine::{Engine, Transport};
use sync_http::{GraphqlClient, HttpTransport};
use sync_sim::http::serve::{spawn, LocalTenant, RunningServer, ServeConfig};
use sync_sim::server::ReferenceServer;

const COUNT: usize = 10_000;
/// The served schema's entity types are the contract's; `Space` is one of them.
const ENTITY: &str = "Space";

fn device(seed: u64) -> Device {
    Device::open_with(seed, sync_engine::testing::example_registry())
}

/// Two fresh devices (A offline) and the items A will create.
fn devices() -> (Device, Device, Vec<Value>) {
    let mut a = device(1);
    a.engine
        .handle_network_change(false)
        .expect("device A goes offline");
    (a, device(2), items(COUNT))
}

/// The timed part, over any transport.
fn sync_pair(a: &mut Engine, b: &mut Engine, items: Vec<Value>, transport: &mut dyn Transport) {
    a.create_many(ENTITY, SPACE_ID, items)
        .expect("create offline");
    a.handle_network_change(true)
        .expect("device A comes online");
    assert_clean_sync(&a.drive_blocking(transport).expect("device A syncs"));
    assert_clean_sync(&b.sync_blocking(transport).expect("device B syncs"));
}

fn in_process_server() -> ReferenceServer {
    let mut server = ReferenceServer::new(sync_engine::testing::example_registry());
    server.add_tenant_token(TENANT, TOKEN);
    server
}

fn served() -> RunningServer {
    let mut config = ServeConfig::local("127.0.0.1:0".parse().expect("an address"));
    config.tenants = vec![LocalTenant {
        tenant_id: TENANT.to_owned(),
        token: TOKEN.to_owned(),
    }];
    config.log_requests = false;
    spawn(config).expect("serve on loopback")
}

fn http_transport(server: &RunningServer) -> HttpTransport {
    let client = GraphqlClient::new(&server.endpoint())
        .expect("a loopback endpoint")
        .with_timeout(Duration::from_secs(60));
    HttpTransport::new(client)
}

/// Both devices hold all `COUNT` records, the same ones.
fn check_converged(a: &Device, b: &Device) {
    let listed = |device: &Device| {
        let mut records: Vec<(String, Option<String>)> = device
            .engine
            .all_records()
            .expect("read the records")
            .into_iter()
            .map(|record| (record.client_id, record.server_id))
            .collect();
        records.sort();
        records
    };
    let (on_a, on_b) = (listed(a), listed(b));
    assert_eq!(on_a.len(), COUNT);
    assert_eq!(on_a, on_b, "devices A and B differ");
}

fn sync_10k_wire(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync_10k_wire");
    group.throughput(Throughput::Elements(COUNT as u64));
    group.sample_size(10);
    group.bench_function("in_process", |bencher| {
        bencher.iter_batched(
            || (devices(), in_process_server()),
            |((mut a, mut b, items), mut server)| {
                sync_pair(
                    &mut a.engine,
                    &mut b.engine,
                    items,
                    &mut InProcessTransport::new(&mut server),
                );
                (a, b, server)
            },
            BatchSize::PerIteration,
        )
    });
    // Checked once before measuring: the wire delivers everything.
    let ((mut a, mut b, items), server) = (devices(), served());
    sync_pair(
        &mut a.engine,
        &mut b.engine,
        items,
        &mut http_transport(&server),
    );
    check_converged(&a, &b);
    group.bench_function("loopback_http", |bencher| {
        bencher.iter_batched(
            || (devices(), served()),
            |((mut a, mut b, items), server)| {
                let mut transport = http_transport(&server);
                sync_pair(&mut a.engine, &mut b.engine, items, &mut transport);
                (a, b, server)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    targets = sync_10k_wire
}
criterion_main!(benches);
