//! `syncsim`: run simulation campaigns, replay single seeds and case files, shrink a
//! failing seed to a small case.
//!
//! Exit codes: 0 all passed, 1 invariant violated (or a configured fault class never
//! fired, or a probe the profile is meant to reach never fired), 2 liveness failure, 3 panic in the engine or the server, 64 bad usage.
//!
//! clap parses and validates every argument (profile and defect names included) before
//! any seed runs, so a misspelt flag or value stops the command with a suggestion instead
//! of being ignored or failing halfway through a campaign.

mod wire_commands;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use sync_sim::campaign::{
    defect_names, replay_command, run_campaign, CampaignConfig, CampaignSummary,
};
use sync_sim::case::Case;
use sync_sim::determinism::check_determinism;
use sync_sim::fuzzing::sim_world_case;
use sync_sim::profile::{FaultClass, Knobs, Profile};
use sync_sim::server::{Defect, ServerDefects};
use sync_sim::shrink::{shrink, FailureSignature, CANDIDATE_RUNS_MAX_DEFAULT};
use sync_sim::signature::Signature;
use sync_sim::sweep::{run_once, run_sweep, SweepConfig, SweepSummary};
use sync_sim::timeline::render_html;
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
    /// Replay one seed, or a case file (--case), printing its knobs and (with --trace)
    /// every event; --html writes its timeline.
    Replay(ReplayArgs),
    /// Run one seed twice with the whole trace kept and print the first trace line that
    /// differs (exit code 1), or that the runs agree.
    CheckDeterminism(CheckDeterminismArgs),
    /// Shrink a failing seed (or case) to the smallest case that fails the same way (same
    /// kind, same invariant) and write it as a case file.
    #[command(
        long_about = "Shrink a failing seed (or case) to the smallest case that fails the same \
                      way (same kind, same invariant) and write it as a case file.\n\n\
                      Passes: fault classes off one at a time; fewer devices, tenants and \
                      spaces; a shorter safety phase; then delta debugging of the user actions \
                      and of the injected faults. Each candidate is one run; the shrink stops \
                      after --runs-max runs (default 500) with the smallest case found so far. \
                      Deterministic: the same seed shrinks to the same case."
    )]
    Shrink(ShrinkArgs),
    /// Write the run of a `sim_world` fuzz input (a libFuzzer crash artifact) as a case
    /// file, to replay with `replay --case` or shrink with `shrink --case`.
    CaseFromFuzz(CaseFromFuzzArgs),
    /// Run one fixed workload once per transaction boundary of the engines, killing the
    /// app there, then converge and check every invariant; fails on the first violation.
    Sweep(SweepArgs),
    /// Serve the reference server over GraphQL on HTTP (POST /graphql) on a loopback
    /// address, with two local tenants (needs the `http` feature).
    Serve(wire_commands::ServeArgs),
    /// Check a server against the wire contract over GraphQL on HTTP: idempotency,
    /// conflicts, paging, deletes, tenant isolation, the checksum, malformed requests
    /// (needs the `http` feature). Exit code 1 when any check fails.
    Conformance(wire_commands::ConformanceArgs),
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
    /// Switch a fault class off in every seed (repeatable); every other knob stays as the
    /// seed draws it. Probes are not accounted then.
    #[arg(long = "without", value_name = "CLASS", value_parser = fault_class_parser())]
    classes_off: Vec<FaultClass>,
}

/// A run to replay or shrink: a seed of a profile, or a case file.
#[derive(Debug, Args)]
struct RunChoice {
    /// The seed.
    #[arg(value_name = "SEED", required_unless_present = "case")]
    seed: Option<u64>,
    /// A case file instead of a seed (written by `shrink` or `case-from-fuzz`); the case
    /// holds its knobs, defects and phases.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seed", "profile", "defects", "safety_only", "classes_off"])]
    case: Option<PathBuf>,
    /// The profile the seed draws its knobs from.
    #[arg(long, value_name = "P", default_value = "default", value_parser = profile_parser())]
    profile: Profile,
    /// Plant a defect (repeatable), as the failing campaign did.
    #[arg(long = "defect", value_name = "NAME", value_parser = defect_parser())]
    defects: Vec<Defect>,
    /// A `--safety-only` run: faults never stop, no liveness phase.
    #[arg(long)]
    safety_only: bool,
    /// Switch a fault class off (repeatable), as the failing campaign did.
    #[arg(long = "without", value_name = "CLASS", value_parser = fault_class_parser())]
    classes_off: Vec<FaultClass>,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    run: RunChoice,
    /// Print every event of the run.
    #[arg(long)]
    trace: bool,
    /// Write the run's timeline to PATH: one self-contained HTML page (lanes per device
    /// and the server, requests and their fates, faults, state lines, the failure).
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CheckDeterminismArgs {
    /// The seed to run twice.
    #[arg(value_name = "SEED")]
    seed: u64,
    /// The profile the seed draws its knobs from.
    #[arg(long, value_name = "P", default_value = "default", value_parser = profile_parser())]
    profile: Profile,
    /// Plant a defect (repeatable), as a failing campaign did.
    #[arg(long = "defect", value_name = "NAME", value_parser = defect_parser())]
    defects: Vec<Defect>,
    /// Run the seed as `--safety-only` does.
    #[arg(long)]
    safety_only: bool,
}

#[derive(Debug, Args)]
struct ShrinkArgs {
    #[command(flatten)]
    run: RunChoice,
    /// Where to write the smallest failing case [default: shrunk-SEED.json].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Candidate runs at most; the shrink then stops with the smallest case found so far.
    #[arg(long, value_name = "N", default_value_t = CANDIDATE_RUNS_MAX_DEFAULT)]
    runs_max: usize,
}

#[derive(Debug, Args)]
struct CaseFromFuzzArgs {
    /// A `sim_world` input: a libFuzzer artifact (`fuzz/artifacts/sim_world/crash-…`) or
    /// a corpus file.
    #[arg(value_name = "ARTIFACT")]
    artifact: PathBuf,
    /// Where to write the case.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
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
        Command::CheckDeterminism(args) => Ok(command_check_determinism(args)),
        Command::Sweep(args) => command_sweep(args),
        Command::Shrink(args) => command_shrink(args),
        Command::CaseFromFuzz(args) => command_case_from_fuzz(args),
        Command::Serve(args) => wire_commands::command_serve(args),
        Command::Conformance(args) => wire_commands::command_conformance(args),
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

/// Accepts exactly the fault classes' names, listing them in help and errors.
fn fault_class_parser() -> impl TypedValueParser<Value = FaultClass> {
    let names: Vec<&'static str> = FaultClass::ALL.into_iter().map(FaultClass::name).collect();
    PossibleValuesParser::new(names).map(|name| {
        FaultClass::ALL
            .into_iter()
            .find(|class| class.name() == name)
            .expect("clap passes only listed class names")
    })
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

fn print_failure(report: &SeedReport, replay: &str) {
    let Some(failure) = &report.failure else {
        return;
    };
    eprintln!(
        "\nFAILED seed {} ({:?}): {}",
        report.seed, failure.kind, failure.message
    );
    eprintln!("signature: {}", Signature::of(failure, &report.operation));
    eprintln!(
        "knobs: {}",
        serde_json::to_string(&report.knobs).unwrap_or_default()
    );
    eprintln!("last events:");
    for line in &report.recent_events {
        eprintln!("  {line}");
    }
    eprintln!("replay: {replay}");
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
        classes_off,
    } = args;
    let defects = ServerDefects::planting(defects);
    let classes_off: BTreeSet<FaultClass> = classes_off.into_iter().collect();
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
    if !classes_off.is_empty() {
        let names: Vec<&str> = classes_off.iter().map(|class| class.name()).collect();
        println!("fault classes off: {}", names.join(", "));
    }
    let config = CampaignConfig {
        seeds,
        profile,
        shard,
        threads,
        progress: true,
        defects,
        safety_only,
        classes_off: classes_off.clone(),
    };
    let summary = run_campaign(&config, &|report| {
        let replay = replay_command(report.seed, profile, &defects, safety_only, &classes_off);
        print_failure(report, &replay)
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
    if !summary.groups.is_empty() {
        println!(
            "{} failures in {} groups (kind | invariant | operation):",
            summary.failures.len(),
            summary.groups.len()
        );
    }
    for group in &summary.groups {
        println!(
            "FAILED {:>5} x {}, smallest seed {}\n  replay: {}",
            group.count, group.signature, group.smallest_seed, group.replay
        );
    }
}

fn command_replay(args: ReplayArgs) -> Result<ExitCode, String> {
    let ReplayArgs { run, trace, html } = args;
    if let Some(path) = &run.case {
        return replay_case(path, trace, html.as_deref());
    }
    let RunChoice {
        seed,
        profile,
        defects,
        safety_only,
        classes_off,
        ..
    } = run;
    let seed = seed.expect("clap requires a seed without --case");
    let defects = ServerDefects::planting(defects);
    let classes_off: BTreeSet<FaultClass> = classes_off.into_iter().collect();
    let report = run_seed(
        seed,
        profile,
        &RunOptions {
            keep_trace: trace || html.is_some(),
            defects,
            safety_only,
            classes_off: classes_off.clone(),
            ..RunOptions::default()
        },
    );
    println!("seed {seed} profile {}", profile.name());
    println!(
        "knobs: {}",
        serde_json::to_string_pretty(&report.knobs).expect("knobs serialize")
    );
    print_run(&report, trace);
    let replay = replay_command(seed, profile, &defects, safety_only, &classes_off);
    if let Some(path) = &html {
        let mut title = format!("syncsim seed {seed} · profile {}", profile.name());
        for name in defect_names(&defects) {
            title.push_str(&format!(" · defect {name}"));
        }
        write_timeline(&report, &title, &replay, path)?;
    }
    Ok(finish_replay(&report, &replay))
}

/// Every trace line kept (with `trace`), then the run's hash and size.
fn print_run(report: &SeedReport, trace: bool) {
    if trace {
        for line in &report.trace {
            println!("{line}");
        }
    }
    println!(
        "trace hash {} events {} virtual {} ms faults {:?}",
        report.trace_hash, report.events, report.virtual_ms, report.faults_fired
    );
}

/// Writes the run's timeline page (`--html`).
fn write_timeline(
    report: &SeedReport,
    title: &str,
    replay: &str,
    path: &Path,
) -> Result<(), String> {
    let page = render_html(report, title, replay);
    std::fs::write(path, page)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    println!("timeline: {}", path.display());
    Ok(())
}

/// Says whether the replay passed, prints its failure, and gives its exit code.
fn finish_replay(report: &SeedReport, replay: &str) -> ExitCode {
    match &report.failure {
        None => {
            println!("passed");
            ExitCode::SUCCESS
        }
        Some(failure) => {
            print_failure(report, replay);
            ExitCode::from(exit_code(failure.kind))
        }
    }
}

fn command_check_determinism(args: CheckDeterminismArgs) -> ExitCode {
    let CheckDeterminismArgs {
        seed,
        profile,
        defects,
        safety_only,
    } = args;
    let options = RunOptions {
        keep_trace: true,
        defects: ServerDefects::planting(defects),
        safety_only,
        ..RunOptions::default()
    };
    let check = check_determinism(seed, profile, &options);
    let (first, second) = (&check.first, &check.second);
    if check.agrees() {
        println!(
            "seed {seed} profile {}: the two runs agree: trace hash {}, {} events, {} trace lines",
            profile.name(),
            first.trace_hash,
            first.events,
            first.trace.len()
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "seed {seed} profile {}: the two runs DIVERGE: trace hash {} vs {}",
        profile.name(),
        first.trace_hash,
        second.trace_hash
    );
    if let Some(divergence) = &check.divergence {
        println!("first difference at trace line {}:", divergence.index);
        let context_start = divergence.index - divergence.context.len();
        for (offset, line) in divergence.context.iter().enumerate() {
            println!("  {:>7}   {line}", context_start + offset);
        }
        let missing = "(the trace ended)".to_owned();
        let first_line = divergence.first.as_ref().unwrap_or(&missing);
        let second_line = divergence.second.as_ref().unwrap_or(&missing);
        println!("  {:>7} 1 {first_line}", divergence.index);
        println!("  {:>7} 2 {second_line}", divergence.index);
    }
    ExitCode::from(1)
}

fn replay_case(path: &Path, trace: bool, html: Option<&Path>) -> Result<ExitCode, String> {
    let case = Case::load(path).map_err(|error| error.to_string())?;
    println!(
        "case {}: seed {} profile {}, {} actions, {} faults{}",
        path.display(),
        case.seed,
        case.knobs.profile.name(),
        case.actions.len(),
        case.faults.len(),
        defects_suffix(&case.defects)
    );
    println!(
        "knobs: {}",
        serde_json::to_string_pretty(&case.knobs).expect("knobs serialize")
    );
    let report = case.replay(trace || html.is_some());
    print_run(&report, trace);
    if report.trace_hash == case.recorded.trace_hash {
        println!(
            "the same run as recorded (trace hash {})",
            case.recorded.trace_hash
        );
    } else {
        println!(
            "NOT the run recorded (its trace hash was {}, {} events)",
            case.recorded.trace_hash, case.recorded.events
        );
    }
    let otherwise = case.actions_replayed_otherwise(&report);
    if !otherwise.is_empty() {
        println!(
            "warning: {} of the case's actions were not replayed as listed (first: {:?} #{} \
             {}): the case was recorded by another version of syncsim or its knobs were edited",
            otherwise.len(),
            otherwise[0].stream,
            otherwise[0].number,
            otherwise[0].kind
        );
    }
    let replay = format!(
        "cargo run --release -p sync-sim -- replay --case {}",
        path.display()
    );
    if let Some(page) = html {
        let title = format!("syncsim case {}", path.display());
        write_timeline(&report, &title, &replay, page)?;
    }
    Ok(finish_replay(&report, &replay))
}

fn defects_suffix(defects: &[Defect]) -> String {
    defects
        .iter()
        .map(|defect| format!(" --defect {}", defect.name()))
        .collect()
}

fn command_shrink(args: ShrinkArgs) -> Result<ExitCode, String> {
    let ShrinkArgs { run, out, runs_max } = args;
    let start = match &run.case {
        Some(path) => Case::load(path).map_err(|error| error.to_string())?,
        None => {
            let seed = run.seed.expect("clap requires a seed without --case");
            let classes_off: BTreeSet<FaultClass> = run.classes_off.iter().copied().collect();
            let knobs = Knobs::derive(seed, run.profile).without(&classes_off);
            Case::record(seed, knobs, &run.defects, run.safety_only).0
        }
    };
    let out = out.unwrap_or_else(|| PathBuf::from(format!("shrunk-{}.json", start.seed)));
    println!(
        "syncsim shrink: seed {} profile {}{}, at most {runs_max} candidate runs",
        start.seed,
        start.knobs.profile.name(),
        defects_suffix(&start.defects)
    );
    if let Some(failure) = &start.recorded.failure {
        println!("failure {:?}: {}", failure.kind, failure.message);
        println!("signature {}", FailureSignature::of(failure));
    }
    println!(
        "start: {} events, {} actions, {} faults",
        start.recorded.events,
        start.actions.len(),
        start.faults.len()
    );
    let events_before = start.recorded.events;
    let shrunk = shrink(start, runs_max, &mut |pass| {
        println!(
            "  {:<32} events {:>7} -> {:<7} actions {:>4} -> {:<4} faults {:>4} -> {:<4} ({} runs)",
            pass.pass,
            pass.events_before,
            pass.events_after,
            pass.actions_before,
            pass.actions_after,
            pass.faults_before,
            pass.faults_after,
            pass.runs
        );
    })?;
    let case = &shrunk.case;
    case.save(&out).map_err(|error| error.to_string())?;
    println!(
        "smallest failing case: {} events ({:.1}x fewer), {} actions, {} faults, {} devices \
         ({} left out), {} tenants, {} spaces, {} fault classes, safety phase {} ms; {} runs{}",
        case.recorded.events,
        events_before as f64 / case.recorded.events.max(1) as f64,
        case.actions.len(),
        case.faults.len(),
        case.knobs.devices - case.absent_devices.len(),
        case.absent_devices.len(),
        case.knobs.tenants,
        case.knobs.spaces_per_tenant,
        case.knobs.faults.len(),
        case.knobs.safety_duration_ms,
        shrunk.runs,
        if shrunk.budget_spent {
            " (the budget ran out)"
        } else {
            ""
        }
    );
    if let Some(failure) = &case.recorded.failure {
        println!("failure {:?}: {}", failure.kind, failure.message);
    }
    println!("written to {}", out.display());
    println!(
        "replay: cargo run --release -p sync-sim -- replay --case {} --trace",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn command_case_from_fuzz(args: CaseFromFuzzArgs) -> Result<ExitCode, String> {
    let CaseFromFuzzArgs { artifact, out } = args;
    let bytes = std::fs::read(&artifact)
        .map_err(|error| format!("cannot read {}: {error}", artifact.display()))?;
    let case =
        sim_world_case(&bytes).map_err(|error| format!("{}: {error}", artifact.display()))?;
    case.save(&out).map_err(|error| error.to_string())?;
    match &case.recorded.failure {
        Some(failure) => println!(
            "seed {} failed ({:?}): {}",
            case.seed, failure.kind, failure.message
        ),
        None => println!("seed {} passed", case.seed),
    }
    println!(
        "{} events, {} actions, {} faults; written to {}",
        case.recorded.events,
        case.actions.len(),
        case.faults.len(),
        out.display()
    );
    println!(
        "replay: cargo run --release -p sync-sim -- replay --case {}",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
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
