//! Runs the `sync_10k` scenario (or its floor) a number of times, for a profiler.
//!
//! `cargo build --release -p sync-benches --example profile_sync`, then for example
//! `perf record -g target/release/examples/profile_sync 10000 5` and `perf report`.
//! Arguments: item count (default 10000), repetitions (default 3), and `floor` to run the
//! plain-SQLite floor instead. It prints nothing but a line per run: timing is criterion's
//! job, this is only a steady workload to sample.

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
        if floor {
            SyncFloor::new(count).run().check();
        } else {
            SyncScenario::new(count).run().check_converged();
        }
        println!("run {run} of {count} items done");
    }
}
