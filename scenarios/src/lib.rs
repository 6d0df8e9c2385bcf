//! The scenario suite's runner: finds `cases/*.scn`, runs each once exactly as written and
//! then under fault seeds, and turns a failure into a message naming the file, the line,
//! the seed and the command that replays it.
//!
//! The language itself (parsing and the scripted driver) lives in `sync_sim::script`; this
//! crate only discovers files, chooses seeds and formats reports. It never touches an
//! engine directly.

use std::path::{Path, PathBuf};
use sync_sim::script::{self, RunMode, RunSummary, Script, ScriptFailure};

/// Fault seeds per scenario unless `SCENARIO_SEEDS` says otherwise.
pub const FAULT_SEEDS_DEFAULT: u64 = 8;

/// The directory holding the scenario files.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

/// Every `*.scn` file, sorted by name.
pub fn discover() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("scenarios/cases exists")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "scn"))
        .collect();
    files.sort();
    files
}

/// Which runs each scenario does: every mode, or the one named by `SCENARIO_SEED`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub modes: Vec<RunMode>,
}

impl Plan {
    /// Clean first, then fault seeds `0..seeds`.
    pub fn all(seeds: u64) -> Plan {
        let mut modes = vec![RunMode::Clean];
        modes.extend((0..seeds).map(|seed| RunMode::Faults { seed }));
        Plan { modes }
    }

    /// From `SCENARIO_SEED` (`clean` or a number) and `SCENARIO_SEEDS` (a count).
    pub fn from_env() -> Plan {
        if let Ok(seed) = std::env::var("SCENARIO_SEED") {
            let mode = match seed.trim() {
                "clean" => RunMode::Clean,
                number => RunMode::Faults {
                    seed: number
                        .parse()
                        .expect("SCENARIO_SEED is `clean` or a number"),
                },
            };
            return Plan { modes: vec![mode] };
        }
        let seeds = std::env::var("SCENARIO_SEEDS")
            .ok()
            .map(|count| count.parse().expect("SCENARIO_SEEDS is a number"))
            .unwrap_or(FAULT_SEEDS_DEFAULT);
        Plan::all(seeds)
    }
}

fn mode_text(mode: RunMode) -> String {
    match mode {
        RunMode::Clean => "clean".to_owned(),
        RunMode::Faults { seed } => seed.to_string(),
    }
}

/// A failure as a person reads it: file, line, step, seed, reason, replay command.
pub fn describe(file: &str, mode: RunMode, failure: &ScriptFailure) -> String {
    let stem = file.strip_suffix(".scn").unwrap_or(file);
    let place = if failure.line == 0 {
        format!("{file}, after the last step")
    } else {
        format!("{file}:{}", failure.line)
    };
    let run = match mode {
        RunMode::Clean => "the clean run (no faults)".to_owned(),
        RunMode::Faults { seed } => format!("fault seed {seed}"),
    };
    format!(
        "scenario {place}: step `{}` failed in {run}\n  {}\n  replay: SCENARIO_SEED={} cargo test -p sync-scenarios -- {stem} --exact",
        failure.text,
        failure.message,
        mode_text(mode)
    )
}

/// Parses and runs one scenario text under every mode of `plan`; the first failure wins.
pub fn run_text(file: &str, text: &str, plan: &Plan) -> Result<Vec<RunSummary>, String> {
    let parsed: Script =
        script::parse(file, text).map_err(|failure| describe(file, RunMode::Clean, &failure))?;
    let mut summaries = Vec::new();
    for mode in &plan.modes {
        let summary =
            script::run(&parsed, *mode).map_err(|failure| describe(file, *mode, &failure))?;
        summaries.push(summary);
    }
    Ok(summaries)
}

/// Runs one file.
pub fn run_file(path: &Path, plan: &Plan) -> Result<Vec<RunSummary>, String> {
    let file = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(|error| format!("{file}: {error}"))?;
    run_text(&file, &text, plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a wrong expectation fails with a message naming the file, the line, the step
    // and a replay command.
    #[test]
    fn a_wrong_expectation_names_file_line_and_step() {
        let text = "\
    # Offline creates, then a count that is off by one.
    tenants A
    devices phone:A tablet:A
    phone offline
    phone create 3 Space in s1
    phone online
    sync phone tablet
    expect tablet count Space 4
    ";
        let message = run_text("wrong_count.scn", text, &Plan::all(0)).expect_err("4 is wrong");
        println!("{message}");
        assert!(message.contains("wrong_count.scn:8"), "{message}");
        assert!(
            message.contains("`expect tablet count Space 4`"),
            "{message}"
        );
        assert!(
            message.contains("expected 4 live Space records on tablet, found 3"),
            "{message}"
        );
        assert!(
            message.contains(
                "replay: SCENARIO_SEED=clean cargo test -p sync-scenarios -- wrong_count --exact"
            ),
            "{message}"
        );
    }

    // Proves a line the language does not know is reported with its line number.
    #[test]
    fn an_unknown_command_names_its_line() {
        let text = "tenants A\ndevices phone:A\nphone juggle\n";
        let message = run_text("bad.scn", text, &Plan::all(0)).expect_err("juggle is not a step");
        assert!(message.contains("bad.scn:3"), "{message}");
        assert!(message.contains("unknown device command"), "{message}");
    }
}
