//! Runs every `cases/*.scn` scenario: once exactly as written, then under fault seeds.
//! `SCENARIO=name` picks one file, `SCENARIO_SEED=clean|N` one run, `SCENARIO_SEEDS=K`
//! the number of fault seeds.

use std::sync::Mutex;
use sync_scenarios::{discover, run_file, Plan};

// Proves every scenario file holds: its expectations and the global invariants, clean
// and under faults. A `harness = false` target, so each scenario's line is printed even
// when it passes. Scenarios run on a few threads.
fn main() {
    let only = std::env::var("SCENARIO").ok();
    let files: Vec<_> = discover()
        .into_iter()
        .filter(|path| {
            let stem = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned());
            only.as_deref()
                .is_none_or(|only| stem.as_deref() == Some(only))
        })
        .collect();
    assert!(!files.is_empty(), "no scenario matched SCENARIO={only:?}");
    let plan = Plan::from_env();
    let next = Mutex::new(0usize);
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(8);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = {
                    let mut next = next.lock().expect("not poisoned");
                    *next += 1;
                    *next - 1
                };
                let Some(path) = files.get(index) else { break };
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                match run_file(path, &plan) {
                    Ok(runs) => {
                        let kills: u64 = runs.iter().map(|run| run.kills).sum();
                        let faults: u64 = runs.iter().map(|run| run.faults_fired).sum();
                        println!(
                            "scenario {name} ... ok ({} runs, {faults} network faults, {kills} kills)",
                            runs.len()
                        );
                    }
                    Err(message) => {
                        println!("scenario {name} ... FAILED");
                        failures.lock().expect("not poisoned").push(message);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("not poisoned");
    if !failures.is_empty() {
        eprintln!("\n{}\n", failures.join("\n\n"));
        eprintln!("{} of {} scenarios failed", failures.len(), files.len());
        std::process::exit(1);
    }
    println!("{} scenarios ok", files.len());
}
