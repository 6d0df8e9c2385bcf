//! Runs the `sync_10k` scenario (or its floor) a number of times, for a profiler.
//!
//! `cargo build --release -p sync-benches --example profile_sync`, then for example
//! `perf record -g target/release/examples/profile_sync 10000 5` and `perf report`.
//! Arguments: item count (default 10000), repetitions (default 3), and `floor` to run the
//! plain-SQLite floor instead. It prints a line per run with the wall time of the part a
//! benchmark times and, on Linux, the time the thread spent on a CPU in it (the rest is
//! waiting, mostly for `fsync` at WAL checkpoints): timing is criterion's job, this is a
//! steady workload to sample, and the two times say whether a gap is CPU or I/O.

use std::time::Instant;
use sync_benches::floor::SyncFloor;
use sync_benches::SyncScenario;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(10_000, |text| {
        text.parse().expect("the item count is a number")
    });
    let runs: usize = args.next().map_or(3, |text| {
        text.parse().expect("the repetition count is a number")
    });
    let floor = args.next().as_deref() == Some("floor");
    for run in 0..runs {
        // Setup and checks stay outside the measured part, as in the benchmarks.
        let (wall, on_cpu) = if floor {
            let input = SyncFloor::new(count);
            let (timed, output) = measured(|| input.run());
            output.check();
            timed
        } else {
            let input = SyncScenario::new(count);
            let (timed, output) = measured(|| input.run());
            output.check_converged();
            timed
        };
        let on_cpu = on_cpu.map_or_else(|| "unknown".to_owned(), |ms| format!("{ms:.1} ms"));
        println!("run {run} of {count} items: wall {wall:.1} ms, on CPU {on_cpu}");
    }
}

/// Runs `body`; its wall time and the calling thread's time on a CPU, in milliseconds.
#[allow(clippy::disallowed_methods)] // A profiling harness reads the real clock; no engine does.
fn measured<T>(body: impl FnOnce() -> T) -> ((f64, Option<f64>), T) {
    let cpu_before = thread_cpu_ns();
    let started = Instant::now();
    let output = body();
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let cpu_ms = thread_cpu_ns()
        .zip(cpu_before)
        .map(|(after, before)| (after - before) as f64 / 1e6);
    ((wall_ms, cpu_ms), output)
}

/// The calling thread's time on a CPU so far, in nanoseconds: the first field of Linux's
/// `/proc/thread-self/schedstat`. `None` where there is no such file.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
