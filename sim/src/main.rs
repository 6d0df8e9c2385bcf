//! `syncsim`: run simulation campaigns and replay single seeds.
//!
//! Exit codes: 0 all passed, 1 invariant violated (or a configured fault class never
//! fired), 2 liveness failure, 3 panic in the engine or the server, 64 bad usage.

use std::io::IsTerminal;
use std::process::ExitCode;
use sync_sim::campaign::{
    parse_defect, replay_command, run_campaign, CampaignConfig, CampaignSummary, DEFECT_NAMES,
};
use sync_sim::profile::Profile;
use sync_sim::world::{run_seed, FailureKind, RunOptions, SeedReport};

const USAGE: &str = "usage:
  syncsim run [--seeds A..B] [--profile lite|default|big|perf] [--shard I/N] [--threads T] [--json PATH]
              [--defect NAME]   (harness self-test: plant a server defect; the campaign should fail)
  syncsim replay SEED [--profile P] [--trace] [--defect NAME]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => command_run(&args[1..]),
        Some("replay") => command_replay(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(64)
        }
    }
}

/// Reads `--flag value` pairs and bare flags after the positional arguments.
struct Flags<'a> {
    args: &'a [String],
}

impl<'a> Flags<'a> {
    fn value(&self, name: &str) -> Result<Option<&'a str>, String> {
        match self.args.iter().position(|arg| arg == name) {
            Some(index) => self
                .args
                .get(index + 1)
                .map(|value| Some(value.as_str()))
                .ok_or(format!("{name} needs a value")),
            None => Ok(None),
        }
    }

    fn present(&self, name: &str) -> bool {
        self.args.iter().any(|arg| arg == name)
    }

    fn defects(&self) -> Result<sync_sim::server::ServerDefects, String> {
        match self.value("--defect")? {
            None => Ok(sync_sim::server::ServerDefects::default()),
            Some(raw) => {
                parse_defect(raw).ok_or(format!("unknown defect {raw:?}; one of {DEFECT_NAMES:?}"))
            }
        }
    }

    fn profile(&self) -> Result<Profile, String> {
        match self.value("--profile")? {
            None => Ok(Profile::Default),
            Some(raw) => Profile::parse(raw).ok_or(format!(
                "unknown profile {raw:?} (lite, default, big, perf)"
            )),
        }
    }
}

fn parse_range(raw: &str) -> Result<std::ops::Range<u64>, String> {
    let (start, end) = raw
        .split_once("..")
        .ok_or(format!("--seeds wants A..B, got {raw:?}"))?;
    let start: u64 = start.parse().map_err(|_| format!("bad seed {start:?}"))?;
    let end: u64 = end.parse().map_err(|_| format!("bad seed {end:?}"))?;
    if start >= end {
        return Err(format!("empty seed range {raw}"));
    }
    Ok(start..end)
}

fn parse_shard(raw: &str) -> Result<(u64, u64), String> {
    let (index, count) = raw
        .split_once('/')
        .ok_or(format!("--shard wants I/N, got {raw:?}"))?;
    let index: u64 = index
        .parse()
        .map_err(|_| format!("bad shard index {index:?}"))?;
    let count: u64 = count
        .parse()
        .map_err(|_| format!("bad shard count {count:?}"))?;
    if count == 0 || index >= count {
        return Err(format!("shard {raw} is not I/N with I < N"));
    }
    Ok((index, count))
}

fn exit_code(kind: FailureKind) -> u8 {
    match kind {
        FailureKind::Invariant => 1,
        FailureKind::Liveness => 2,
        FailureKind::Panic => 3,
    }
}

fn print_failure(report: &SeedReport, profile: Profile) {
    let Some(failure) = &report.failure else {
        return;
    };
    eprintln!(
        "\nFAILED seed {} ({:?}): {}",
        report.seed, failure.kind, failure.message
    );
    eprintln!(
        "knobs: {}",
        serde_json::to_string(&report.knobs).unwrap_or_default()
    );
    eprintln!("last events:");
    for line in &report.recent_events {
        eprintln!("  {line}");
    }
    eprintln!("replay: {}", replay_command(report.seed, profile));
}

fn command_run(args: &[String]) -> Result<ExitCode, String> {
    let flags = Flags { args };
    let profile = flags.profile()?;
    let seeds = match flags.value("--seeds")? {
        Some(raw) => parse_range(raw)?,
        None => 0..1000,
    };
    let shard = match flags.value("--shard")? {
        Some(raw) => parse_shard(raw)?,
        None => (0, 1),
    };
    let threads = match flags.value("--threads")? {
        Some(raw) => raw
            .parse()
            .map_err(|_| format!("bad thread count {raw:?}"))?,
        None => std::thread::available_parallelism().map_or(2, usize::from),
    };
    println!(
        "syncsim run: profile {} seeds {}..{} shard {}/{} threads {threads}",
        profile.name(),
        seeds.start,
        seeds.end,
        shard.0,
        shard.1
    );
    let config = CampaignConfig {
        seeds,
        profile,
        shard,
        threads,
        progress: std::io::stderr().is_terminal(),
        defects: flags.defects()?,
    };
    let summary = run_campaign(&config, &|report| print_failure(report, profile));
    print_summary(&summary);
    if let Some(path) = flags.value("--json")? {
        let json = serde_json::to_string_pretty(&summary).expect("summary serializes");
        std::fs::write(path, json).map_err(|error| format!("cannot write {path}: {error}"))?;
    }
    let worst = summary
        .failures
        .iter()
        .map(|failure| exit_code(failure.kind))
        .max();
    Ok(match worst {
        Some(code) => ExitCode::from(code),
        None if !summary.never_fired.is_empty() => ExitCode::from(1),
        None => ExitCode::SUCCESS,
    })
}

fn print_summary(summary: &CampaignSummary) {
    println!(
        "{} seeds, {} failed, {:.1} seeds/s, virtual/wall {:.0}x, {} events, {} invariant checks, {} acknowledged writes, {} conflicts",
        summary.seeds_run,
        summary.failures.len(),
        summary.seeds_per_second,
        summary.virtual_wall_ratio,
        summary.events,
        summary.invariant_checks,
        summary.acknowledged_writes,
        summary.conflicts_stored
    );
    println!("faults fired (seeds enabled):");
    for (class, tally) in &summary.faults {
        println!(
            "  {:<22} {:>8} ({} seeds)",
            class.name(),
            tally.fired,
            tally.seeds_enabled
        );
    }
    println!("crash points fired:");
    for (point, count) in &summary.crash_points_fired {
        println!("  {point:<24} {count:>8}");
    }
    for class in &summary.never_fired {
        println!(
            "FAILED: fault class {} was configured but never fired",
            class.name()
        );
    }
    for failure in &summary.failures {
        println!(
            "FAILED seed {} {:?}: {}\n  replay: {}",
            failure.seed, failure.kind, failure.message, failure.replay
        );
    }
}

fn command_replay(args: &[String]) -> Result<ExitCode, String> {
    let seed: u64 = args
        .first()
        .and_then(|raw| raw.parse().ok())
        .ok_or(USAGE.to_owned())?;
    let flags = Flags { args: &args[1..] };
    let profile = flags.profile()?;
    let keep_trace = flags.present("--trace");
    let report = run_seed(
        seed,
        profile,
        &RunOptions {
            keep_trace,
            ..RunOptions::default()
        },
    );
    println!("seed {seed} profile {}", profile.name());
    println!(
        "knobs: {}",
        serde_json::to_string_pretty(&report.knobs).expect("knobs serialize")
    );
    for line in &report.trace {
        println!("{line}");
    }
    println!(
        "trace hash {} events {} virtual {} ms faults {:?}",
        report.trace_hash, report.events, report.virtual_ms, report.faults_fired
    );
    match &report.failure {
        None => {
            println!("passed");
            Ok(ExitCode::SUCCESS)
        }
        Some(failure) => {
            print_failure(&report, profile);
            Ok(ExitCode::from(exit_code(failure.kind)))
        }
    }
}
