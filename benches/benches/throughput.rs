//! Throughput benchmarks of the sync engine, each against its floor in the same run.
//!
//! Every group reports elements (items) per second. Engine measures and their floors sit
//! in one group, so a ratio is read from one run on one machine. What each group measures
//! and what its floor does is written in `benches/README.md`; the scenarios themselves are
//! in the `sync_benches` library, which drives only the engine's public API.
//!
//! Every iteration starts from fresh temporary directories built in untimed setup
//! (`iter_batched`, one input per iteration); directories are removed after timing. Each
//! benchmark checks its scenario's outcome once before measuring. The groups use flat
//! sampling with 10 samples: an iteration takes from milliseconds to seconds, and
//! criterion's default of 100 linearly growing samples would take far too long.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
    SamplingMode, Throughput,
};
use std::time::Duration;
use sync_benches::floor::{LocalFloor, SyncFloor};
use sync_benches::query::{QueryScenario, PAGE_LEN};
use sync_benches::{
    items, prefilled_server, pull_all, Device, PushScenario, SyncScenario, ENTITY, SPACE_ID,
};
use sync_sim::profile::Profile;
use sync_sim::world::{run_seed, RunOptions};

/// The size of every fixed-size group.
const COUNT: usize = 10_000;

/// The records the `query` group's page is taken from.
const QUERY_COUNT: usize = 100_000;

/// The sizes of the `scale` group.
const SCALE_COUNTS: [usize; 3] = [1_000, 10_000, 100_000];

/// From this size on, an iteration takes seconds: keep the minimum number of runs.
const LARGE_COUNT_MIN: usize = 100_000;

/// A group of long iterations: 10 samples, flat sampling, `count` items per iteration.
fn group_of<'a>(c: &'a mut Criterion, name: &str, count: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(count as u64));
    group
}

/// Runs `check` the first time it is called, so a benchmark checks its outcome once even
/// though criterion calls its closure for warm-up and again for measurement.
fn once(done: &mut bool, check: impl FnOnce()) {
    if !*done {
        check();
        *done = true;
    }
}

/// 10k local creates: one transaction each, one transaction for all, and the floor.
fn local_write(c: &mut Criterion) {
    let mut group = group_of(c, "local_write", COUNT);
    let mut checked = false;
    group.bench_function("create_one_by_one", |b| {
        b.iter_batched(
            || (Device::open(1), items(COUNT)),
            |(mut device, items)| {
                for item in items {
                    device
                        .engine
                        .create(ENTITY, SPACE_ID, item)
                        .expect("create");
                }
                once(&mut checked, || {
                    let status = device.engine.status().expect("status");
                    assert_eq!(status.pending_ops, COUNT as u64);
                });
                device
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("create_many", |b| {
        b.iter_batched(
            || (Device::open(1), items(COUNT)),
            |(mut device, items)| {
                let ids = device
                    .engine
                    .create_many(ENTITY, SPACE_ID, items)
                    .expect("create_many");
                assert_eq!(ids.len(), COUNT);
                device
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("sqlite_floor", |b| {
        b.iter_batched(
            || LocalFloor::new(COUNT),
            LocalFloor::run,
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// 10k queued creates pushed, 100 per request, through the sans-IO API; the sync's pull
/// is not sent (see `sync_benches::push_queue`).
fn push(c: &mut Criterion) {
    let mut group = group_of(c, "push", COUNT);
    let mut checked = false;
    group.bench_function("sans_io_push_requests", |b| {
        once(&mut checked, || PushScenario::new(COUNT).run().check());
        b.iter_batched(
            || PushScenario::new(COUNT),
            PushScenario::run,
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// 10k records pulled (1000 per page) and merged into an empty device.
fn pull(c: &mut Criterion) {
    let mut group = group_of(c, "pull", COUNT);
    let mut server = None;
    group.bench_function("into_empty_device", |b| {
        let server = server.get_or_insert_with(|| {
            let mut server = prefilled_server(COUNT);
            let mut device = Device::open(2);
            pull_all(&mut device, &mut server);
            assert_eq!(device.records().len(), COUNT);
            server
        });
        b.iter_batched(
            || Device::open(2),
            |mut device| {
                pull_all(&mut device, server);
                device
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Benchmarks the two-device sync of `count` items and its floor, in `group`.
fn bench_sync_pair(group: &mut BenchmarkGroup<'_, WallTime>, count: usize, with_size: bool) {
    let id = |name: &str| {
        if with_size {
            BenchmarkId::new(name, count)
        } else {
            BenchmarkId::from_parameter(name)
        }
    };
    let mut checked = false;
    group.bench_function(id("e2e"), |b| {
        once(&mut checked, || {
            SyncScenario::new(count).run().check_converged()
        });
        b.iter_batched(
            || SyncScenario::new(count),
            SyncScenario::run,
            BatchSize::PerIteration,
        )
    });
    let mut checked = false;
    group.bench_function(id("sqlite_floor"), |b| {
        once(&mut checked, || SyncFloor::new(count).run().check());
        b.iter_batched(
            || SyncFloor::new(count),
            SyncFloor::run,
            BatchSize::PerIteration,
        )
    });
}

/// DESIGN §8's headline: A creates 10k offline → sync → B syncs and holds all 10k.
fn sync_10k(c: &mut Criterion) {
    let mut group = group_of(c, "sync_10k", COUNT);
    bench_sync_pair(&mut group, COUNT, false);
    group.finish();
}

/// The `sync_10k` shape at 1k, 10k and 100k items, each with its floor.
fn scale(c: &mut Criterion) {
    let mut group = group_of(c, "scale", SCALE_COUNTS[0]);
    for count in SCALE_COUNTS {
        group.throughput(Throughput::Elements(count as u64));
        if count >= LARGE_COUNT_MIN {
            // Ten iterations of several seconds each already exceed any measurement
            // time; a short target keeps criterion from asking for more.
            group.measurement_time(Duration::from_secs(1));
            group.warm_up_time(Duration::from_millis(100));
        }
        bench_sync_pair(&mut group, count, true);
    }
    group.finish();
}

/// A filtered, ordered page of 50 from 100k records on an indexed field, against the same
/// statement in plain SQLite on the same database (the floor). The device is built once,
/// untimed: a query reads and changes nothing.
fn query(c: &mut Criterion) {
    let mut group = c.benchmark_group("query");
    group.throughput(Throughput::Elements(PAGE_LEN as u64));
    let scenario = QueryScenario::new(QUERY_COUNT);
    scenario.check();
    group.bench_function("filtered_page_100k", |b| b.iter(|| scenario.run()));
    group.bench_function("sqlite_floor", |b| b.iter(|| scenario.run_floor()));
    group.finish();
}

/// Simulator speed: whole seeds (world built, run through safety and liveness, checked)
/// per second, for the `lite` and `default` profiles. Seeds are taken in order from 0, so
/// a run is repeatable; each seed draws its own world, so the mean is over many shapes.
/// A seed's verdict is not checked here (the simulator's own tests and campaigns do that).
fn sim(c: &mut Criterion) {
    let mut group = group_of(c, "sim", 1);
    for profile in [Profile::Lite, Profile::Default] {
        let mut seed = 0;
        group.bench_function(profile.name(), |b| {
            b.iter(|| {
                let report = run_seed(seed, profile, &RunOptions::default());
                seed += 1;
                report
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = local_write, push, pull, sync_10k, scale, query, sim
}
criterion_main!(benches);
