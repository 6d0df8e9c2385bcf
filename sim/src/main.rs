//! `syncsim`: run simulation campaigns and replay single seeds.
//!
//! Exit codes: 0 all passed, 1 invariant violated (or a configured fault class never
//! fired, or a probe the profile is meant to reach never fired), 2 liveness failure, 3 panic in the engine or the server, 64 bad usage.
//!
//! clap parses and validates every argument (profile and defect names included) before
//! any seed runs, so a misspelt flag or value stops the command with a suggestion instead
//! of being ignored or failing halfway through a campaign.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use sync_sim::campaign::{replay_command, run_campaign, CampaignConfig, CampaignSummary};
use sync_sim::profile::Profile;
use sync_sim::server::{Defect, ServerDefects};
use sync_sim::sweep::{run_once, run_sweep, SweepConfig, SweepSummary};
use sync_sim::world::{run_seed, FailureKind, RunOptions, SeedReport};

/// The exit code of bad usage (`EX_USAGE`); clap's own is 2, which here means liveness.
const EXIT_USAGE: u8 = 64;

/// Deterministic simulation of many sync-engine devices against the reference server.
#[derive(Debug, Parser)]
#[command(
    name = "syncsim",
    version,
    after_help = "Exit codes: 0 all passed, 1 invariant violated (or a configured fault class \
                  never fired, or an expected probe never fired), 2 liveness failure, 3 panic, \
                  64 bad usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a campaign of seeds and summarise it; a failure prints its replay command.
    Run(RunArgs),
    /// Replay one seed, printing its knobs and (with --trace) every event.
    Replay(ReplayArgs),
    /// Run one fixed workload once per transaction boundary of the engines, killing the
    /// app there, then converge and check every invariant; fails on the first violation.
    Sweep(SweepArgs),
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// The seed whose world is the workload (its random faults off).
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// The profile the seed draws its knobs from.
    #[arg(long, value_name = "P", default_value = "default", value_parser = profile_parser())]
    profile: Profile,
    /// Worker threads [default: the available parallelism].
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// The workload's safety phase in virtual ms [default: the profile's].
    #[arg(long, value_name = "MS")]
    safety_ms: Option<u64>,
    /// Replay one kill: run the workload killed at boundary K only (0: no kill), printing
    /// every event.
    #[arg(long, value_name = "K")]
    boundary: Option<u64>,
    /// Also write the sweep summary as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Harness self-test: plant a defect (repeatable); the sweep should fail.
    #[arg(long = "defect", value_name = "NAME", value_parser = defect_parser())]
    defects: Vec<Defect>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The seeds to run, A included, B excluded.
    #[arg(long, value_name = "A..B", default_value = "0..1000", value_parser = parse_range)]
    seeds: Range<u64>,
    /// The profile each seed draws its knobs from.
    #[arg(long, value_name = "P", default_value = "default", value_parser = profile_parser())]
    profile: Profile,
    /// Run only the seeds with seed % N == I (one of N machines).
    #[arg(long, value_name = "I/N", default_value = "0/1", value_parser = parse_shard)]
    shard: (u64, u64),
    /// Worker threads [default: the available parallelism].
    #[arg(long, value_name = "T")]
    threads: Option<usize>,
    /// Also write the campaign summary as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Harness self-test: plant a server defect (repeatable); the campaign should fail.
    #[arg(long = "defect", value_name = "NAME", value_parser = defect_parser())]
    defects: Vec<Defect>,
    /// Faults never stop and only safety invariants are checked (no liveness phase, no
    /// convergence): for long campaigns hunting corruption and duplicates.
    #[arg(long)]
    safety_only: bool,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The seed to replay.
    #[arg(value_name = "SEED")]
    seed: u64,
    /// The profile the seed draws its knobs from.
    #[arg(long, value_name = "P", default_value = "default", value_parser = profile_parser())]
    profile: Profile,
    /// Print every event of the run.
    #[arg(long)]
    trace: bool,
    /// Plant a server defect (repeatable), as the failing campaign did.
    #[arg(long = "defect", value_name = "NAME", value_parser = defect_parser())]
    defects: Vec<Defect>,
    /// Replay a `--safety-only` seed: faults never stop, no liveness phase.
    #[arg(long)]
    safety_only: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout and succeed; every other clap error is bad
            // usage, which this command reports as 64 rather than clap's 2.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Run(args) => command_run(args),
        Command::Replay(args) => command_replay(args),
        Command::Sweep(args) => command_sweep(args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Accepts exactly the names of [`Profile::NAMES`], listing them in help and errors.
fn profile_parser() -> impl TypedValueParser<Value = Profile> {
    PossibleValuesParser::new(Profile::NAMES.iter().copied())
        .map(|name| Profile::parse(&name).expect("clap passes only listed profile names"))
}

/// Accepts exactly the names of [`Defect::NAMES`], listing them in help and errors.
fn defect_parser() -> impl TypedValueParser<Value = Defect> {
    PossibleValuesParser::new(Defect::NAMES.iter().copied())
        .map(|name| Defect::parse(&name).expect("clap passes only listed defect names"))
}

fn parse_range(raw: &str) -> Result<Range<u64>, String> {
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

fn print_failure(
    report: &SeedReport,
    profile: Profile,
    defects: &ServerDefects,
    safety_only: bool,
) {
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
    eprintln!(
        "replay: {}",
        replay_command(report.seed, profile, defects, safety_only)
    );
}

fn command_run(args: RunArgs) -> Result<ExitCode, String> {
    let RunArgs {
        seeds,
        profile,
        shard,
        threads,
        json,
        defects,
        safety_only,
    } = args;
    let defects = ServerDefects::planting(defects);
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    println!(
        "syncsim run: profile {} seeds {}..{} shard {}/{} threads {threads}{}",
        profile.name(),
        seeds.start,
        seeds.end,
        shard.0,
        shard.1,
        if safety_only { " safety only" } else { "" }
    );
    let config = CampaignConfig {
        seeds,
        profile,
        shard,
        threads,
        progress: true,
        defects,
        safety_only,
    };
    let summary = run_campaign(&config, &|report| {
        print_failure(report, profile, &defects, safety_only)
    });
    print_summary(&summary);
    if let Some(path) = json {
        let json = serde_json::to_string_pretty(&summary).expect("summary serializes");
        std::fs::write(&path, json)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    let worst = summary
        .failures
        .iter()
        .map(|failure| exit_code(failure.kind))
        .max();
    Ok(match worst {
        Some(code) => ExitCode::from(code),
        None if !summary.never_fired.is_empty() || !summary.probes_never_reached.is_empty() => {
            ExitCode::from(1)
        }
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
    if summary.safety_only {
        println!("safety only: faults never stopped, no liveness phase");
    } else {
        println!(
            "liveness: no sync now; each convergence bounded by {} ms of virtual time",
            summary.liveness_bound_ms
        );
    }
    println!("probes reached (seeds), * = the profile is meant to reach it:");
    for (probe, tally) in &summary.probes {
        println!(
            "  {}{:<28} {:>8} ({} seeds)",
            if tally.expected { '*' } else { ' ' },
            probe.name(),
            tally.hits,
            tally.seeds_reached
        );
    }
    for probe in &summary.probes_never_reached {
        println!(
            "FAILED: probe {} is meant to be reached by this profile but never fired",
            probe.name()
        );
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

fn command_replay(args: ReplayArgs) -> Result<ExitCode, String> {
    let ReplayArgs {
        seed,
        profile,
        trace,
        defects,
        safety_only,
    } = args;
    let defects = ServerDefects::planting(defects);
    let report = run_seed(
        seed,
        profile,
        &RunOptions {
            keep_trace: trace,
            defects,
            safety_only,
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
            print_failure(&report, profile, &defects, safety_only);
            Ok(ExitCode::from(exit_code(failure.kind)))
        }
    }
}

fn command_sweep(args: SweepArgs) -> Result<ExitCode, String> {
    let SweepArgs {
        seed,
        profile,
        threads,
        safety_ms,
        boundary,
        json,
        defects,
    } = args;
    let config = SweepConfig {
        safety_ms,
        seed,
        profile,
        defects: ServerDefects::planting(defects),
        threads: threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
    };
    if let Some(number) = boundary {
        return Ok(replay_kill(&config, number));
    }
    println!(
        "syncsim sweep: profile {} seed {seed} threads {}",
        profile.name(),
        config.threads
    );
    let summary = run_sweep(&config, &|_, _| {});
    print_sweep(&summary);
    if let Some(path) = json {
        let json = serde_json::to_string_pretty(&summary).expect("summary serializes");
        std::fs::write(&path, json)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    Ok(match &summary.failure {
        Some(failure) => ExitCode::from(exit_code(failure.kind)),
        None => ExitCode::SUCCESS,
    })
}

fn print_sweep(summary: &SweepSummary) {
    println!(
        "workload: {} transaction boundaries, {} acknowledged writes, {} conflicts stored, {} syncs completed",
        summary.boundaries,
        summary.acknowledged_writes,
        summary.conflicts_stored,
        summary.syncs_completed
    );
    println!("boundaries per transaction:");
    for (site, count) in &summary.per_site {
        println!("  {site:<16} {count:>8}");
    }
    println!(
        "{} kills run (every distinct boundary of {}) in {:.1} s",
        summary.kills_run, summary.boundaries, summary.wall_seconds
    );
    match &summary.failure {
        None => println!("passed: every kill reopened, converged and kept every invariant"),
        Some(failure) => {
            println!(
                "FAILED at boundary {} ({} of {} on d{}) {:?}: {}",
                failure.boundary,
                failure.point,
                failure.site,
                failure.device,
                failure.kind,
                failure.message
            );
            println!("last events:");
            for line in &failure.recent_events {
                println!("  {line}");
            }
            println!("replay: {}", failure.replay);
        }
    }
}

/// Runs the workload killed at boundary `number` (0: no kill) and prints its trace.
fn replay_kill(config: &SweepConfig, number: u64) -> ExitCode {
    let run = run_once(config, (number > 0).then_some(number), true);
    for line in &run.trace {
        println!("{line}");
    }
    match run.killed {
        Some(boundary) => println!(
            "killed d{} at boundary {} ({} of {})",
            boundary.device,
            boundary.number,
            boundary.point.name(),
            boundary.site.name()
        ),
        None => println!("no kill"),
    }
    match &run.failure {
        None => {
            println!("passed");
            ExitCode::SUCCESS
        }
        Some(failure) => {
            println!("FAILED {:?}: {}", failure.kind, failure.message);
            ExitCode::from(exit_code(failure.kind))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The command definition itself: clap's own consistency checks, and the defaults a
    //! bare `syncsim run` has always had.
    use super::*;
    use clap::CommandFactory;

    // Proves clap accepts the definition (defaults among the possible values, no clashing
    // names), which it otherwise checks only when a debug build parses.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    // Proves a bare `run` keeps its old defaults: seeds 0..1000 of `default`, one shard.
    #[test]
    fn run_defaults_are_unchanged() {
        let cli = Cli::try_parse_from(["syncsim", "run"]).expect("a bare run parses");
        let Command::Run(args) = cli.command else {
            panic!("`run` parsed as another command");
        };
        assert_eq!(args.seeds, 0..1000);
        assert_eq!(args.profile, Profile::Default);
        assert_eq!(args.shard, (0, 1));
        assert_eq!(args.threads, None);
        assert!(args.json.is_none());
        assert!(args.defects.is_empty());
        assert!(!args.safety_only);
    }
}
