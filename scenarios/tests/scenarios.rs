//! The scenario suite as libtest trials: one per `cases/*.scn` file, named by its stem.
//! `cargo test -p sync-scenarios -- NAME` runs the scenarios whose names contain NAME
//! (`--exact` for just one), `-- --list` lists them, and cargo-nextest runs each in its
//! own process. `SCENARIO_SEED=clean|N` picks one run of each scenario and
//! `SCENARIO_SEEDS=K` the number of fault seeds.

use libtest_mimic::{Arguments, Failed, Trial};
use std::process::ExitCode;
use sync_scenarios::{discover, run_file, Plan};

// Proves every scenario file holds: its expectations and the global invariants, clean
// and under faults. libtest-mimic runs the trials on `--test-threads` threads and
// captures nothing, so the per-scenario fault counts are printed only with
// `--nocapture`, where the output is wanted.
fn main() -> ExitCode {
    let arguments = Arguments::from_args();
    let plan = Plan::from_env();
    let counts_wanted = arguments.nocapture;
    let trials: Vec<Trial> = discover()
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .expect("a discovered file has a name")
                .to_string_lossy()
                .into_owned();
            let plan = plan.clone();
            Trial::test(name.clone(), move || -> Result<(), Failed> {
                let runs = run_file(&path, &plan)?;
                if counts_wanted {
                    let kills: u64 = runs.iter().map(|run| run.kills).sum();
                    let faults: u64 = runs.iter().map(|run| run.faults_fired).sum();
                    println!(
                        "scenario {name}: {} runs, {faults} faults, {kills} kills",
                        runs.len()
                    );
                }
                Ok(())
            })
        })
        .collect();
    // An empty suite would pass without proving anything.
    assert!(!trials.is_empty(), "no scenario files in scenarios/cases");
    libtest_mimic::run(&arguments, trials).exit_code()
}
