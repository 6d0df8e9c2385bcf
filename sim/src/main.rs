//! `syncsim`: run simulation campaigns and replay single seeds.
//!
//! Exit codes: 0 all passed, 1 invariant violated (or a configured fault class never
//! fired), 2 liveness failure, 3 panic in the engine or the server, 64 bad usage.

use std::io::IsTerminal;
use std::process::ExitCode;
use sync_sim::campaign::{
    parse_defects, replay_command, run_campaign, CampaignConfig, CampaignSummary,
};
use sync_sim::profile::Profile;
use sync_sim::server::ServerDefects;
use sync_sim::world::{run_seed, FailureKind, RunOptions, SeedReport};

const USAGE: &str = "usage:
  syncsim run [--seeds A..B] [--profile lite|default|big|perf] [--shard I/N] [--threads T] [--json PATH]
              [--defect NAME]...   (harness self-test: plant a server defect; the campaign should fail)
  syncsim replay SEED [--profile P] [--trace] [--defect NAME]...
  syncsim --help";

/// The flags `run` takes, each followed by a value.
const RUN_FLAGS: [&str; 6] = [
    "--seeds",
    "--profile",
    "--shard",
    "--threads",
    "--json",
    "--defect",
];
/// The flags `replay` takes after the seed: valued, then bare.
const REPLAY_FLAGS: [&str; 2] = ["--profile", "--defect"];
const REPLAY_SWITCHES: [&str; 1] = ["--trace"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = match args.first().map(String::as_str) {
        Some("run") => command_run(&args[1..]),
        Some("replay") => command_replay(&args[1..]),
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
        None => Err(USAGE.to_owned()),
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
    /// Accepts `args` only if each is one of `valued` followed by its value, or one of
    /// `switches`: a misspelt flag must stop the command, not be ignored.
    fn parse(args: &'a [String], valued: &[&str], switches: &[&str]) -> Result<Flags<'a>, String> {
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if valued.contains(&arg.as_str()) {
                if rest.next().is_none() {
                    return Err(format!("{arg} needs a value\n{USAGE}"));
                }
            } else if !switches.contains(&arg.as_str()) {
                return Err(format!("unknown argument {arg:?}\n{USAGE}"));
            }
        }
        Ok(Flags { args })
    }

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

    /// Every `--defect NAME`, planted together.
    fn defects(&self) -> Result<ServerDefects, String> {
        parse_defects(
            self.args
                .windows(2)
                .filter(|pair| pair[0] == "--defect")
                .map(|pair| pair[1].as_str()),
        )
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

fn print_failure(report: &SeedReport, profile: Profile, defects: &ServerDefects) {
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
    eprintln!("replay: {}", replay_command(report.seed, profile, defects));
}

fn command_run(args: &[String]) -> Result<ExitCode, String> {
    let flags = Flags::parse(args, &RUN_FLAGS, &[])?;
    let profile = flags.profile()?;
    let defects = flags.defects()?;
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
        defects,
    };
    let summary = run_campaign(&config, &|report| print_failure(report, profile, &defects));
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
        .ok_or(format!("replay needs a seed number first\n{USAGE}"))?;
    let flags = Flags::parse(&args[1..], &REPLAY_FLAGS, &REPLAY_SWITCHES)?;
    let profile = flags.profile()?;
    let defects = flags.defects()?;
    let keep_trace = flags.present("--trace");
    let report = run_seed(
        seed,
        profile,
        &RunOptions {
            keep_trace,
            defects,
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
            print_failure(&report, profile, &defects);
            Ok(ExitCode::from(exit_code(failure.kind)))
        }
    }
}
