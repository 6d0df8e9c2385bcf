//! Scripted scenarios: a small line-based language whose steps drive the simulation
//! kernel's devices one at a time, and whose `expect` lines ask the kernel's oracle.
//!
//! A script is parsed once ([`parse`]) and run either exactly as written
//! ([`RunMode::Clean`], the kernel with [`Knobs::quiet`]) or under a fault seed
//! ([`RunMode::Faults`]), which draws the fault rates of the random world's `default`
//! profile: lost, duplicated, delayed and late messages, server-busy answers, partitions,
//! offline periods, clock jumps, cross-tenant probes, kills between calls and kills at
//! every named crash point. Under faults `sync X` still means "drive X until a sync that
//! started in this step completes", so expectations stay meaningful.
//!
//! Time is virtual and moves only inside `sync`, `wait` and a force: every other step
//! happens at the same virtual millisecond, which is how two devices with equal clocks
//! write concurrently with equal HLC stamps. This module owns the language and the steps;
//! it never schedules an event, delivers a message, decides a fault or checks an
//! invariant itself — the kernel ([`crate::kernel::Sim`]) and its oracle do. Its failures
//! are [`ScriptFailure`]s naming the line, never panics. The language is documented in
//! `scenarios/README.md`.

mod drive;
mod expect;
mod parse;
mod runner;

pub use parse::parse;

use crate::kernel::panic_text;
use crate::profile::{FaultClass, Knobs};
use runner::Runner;
use std::collections::BTreeMap;

/// One parsed line.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1-based line number in the file.
    pub line: usize,
    pub text: String,
    command: parse::Command,
}

/// A parsed scenario.
#[derive(Clone, Debug)]
pub struct Script {
    pub name: String,
    pub steps: Vec<Step>,
}

/// How to run a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Exactly as written: no faults.
    Clean,
    /// With the world's fault model, its rates drawn from this seed.
    Faults { seed: u64 },
}

/// Where and why a scenario failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptFailure {
    /// 1-based line; 0 means "after the last step" (the global invariants).
    pub line: usize,
    pub text: String,
    pub message: String,
}

/// What a successful run observed (for the runner's summary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub steps: usize,
    /// Expectations about exact counts that faults legitimately change, not checked.
    pub skipped_expectations: usize,
    /// Every fault the kernel's ledger counted, all classes together.
    pub faults_fired: u64,
    /// App kills: between calls and at crash points (the ledger's), plus the script's own.
    pub kills: u64,
    /// The kernel's ledger, per fault class.
    pub faults_by_class: BTreeMap<FaultClass, u64>,
    /// Kills at the engine's crash points, by point (the script's `crash-at` included).
    pub crash_points_fired: BTreeMap<String, u64>,
    /// The kernel's trace hash: one seed replays one run, byte for byte.
    pub trace_hash: String,
}

/// Runs a parsed script once.
pub fn run(script: &Script, mode: RunMode) -> Result<RunSummary, ScriptFailure> {
    let mut runner = Runner::new(mode);
    let trace = std::env::var_os("SCENARIO_TRACE").is_some();
    let mut steps = 0;
    for step in &script.steps {
        if trace {
            eprintln!("[{mode:?}] line {}: {}", step.line, step.text);
        }
        let result = catch_panic(|| runner.step(step));
        if trace {
            runner.print_trace();
        }
        result.map_err(|message| ScriptFailure {
            line: step.line,
            text: step.text.clone(),
            message,
        })?;
        steps += 1;
    }
    let result = catch_panic(|| runner.finish());
    if trace {
        runner.print_trace();
    }
    result.map_err(|message| ScriptFailure {
        line: 0,
        text: "after the last step: settle every device, then check the global invariants"
            .to_owned(),
        message,
    })?;
    let mut summary = runner.summary();
    summary.steps = steps;
    Ok(summary)
}

/// A panic inside the engine, the server or the kernel becomes the step's failure.
fn catch_panic(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(format!("panic: {}", panic_text(&payload))),
    }
}

/// The knobs of a run: the script's batch sizes, sync-after-write and auto-merge, exact
/// clocks, and for a fault run the fault rates and network of the world's `default`
/// profile drawn from the seed, less the classes the script switched off.
fn knobs_for(mode: RunMode, setup: &runner::Setup) -> Knobs {
    let mut knobs = match mode {
        RunMode::Clean => Knobs::quiet(),
        RunMode::Faults { seed } => {
            let mut knobs = Knobs::derive(seed, crate::profile::Profile::Default);
            // A scenario's steps are the user's writes and the expectations about them;
            // a storage fault refuses a write, so it would fail the step, not the engine.
            // The random world, which takes a refused write as one not made, runs them.
            // A request held past its timeout may land after a step that expects the
            // server's copy to stand (a force from server), so it is left out too; so are
            // pages that do not advance, which fail a force from server a step expects
            // to complete (a force is not retried); and so is a server that rewrites
            // what it stores, since a step's expectations name the data it wrote; and so are
            // a power loss, which may take back writes a step expects to find, and a
            // database damaged at open, whose recovery loses what a step expects the device
            // to hold until it pulls again.
            knobs.faults.retain(|class, _| {
                !setup.faults_off.contains(class)
                    && !FaultClass::STORAGE.contains(class)
                    && *class != FaultClass::LateArrival
                    && *class != FaultClass::EndlessPaging
                    && *class != FaultClass::ServerRewrite
                    && *class != FaultClass::PowerLoss
                    && *class != FaultClass::CorruptAtOpen
            });
            knobs
        }
    };
    // The script's own clocks are exact: skew is what `D clock` says, nothing else.
    knobs.clock_offset_ms_max = 0;
    knobs.clock_drift_ppm_max = 0;
    knobs.tenants = setup.tenants.len();
    knobs.push_batch_max = setup.push_batch;
    knobs.pull_page_limit = setup.pull_page;
    knobs.sync_after_write = setup.sync_after_write;
    knobs.auto_merge_fields = setup.auto_merge;
    knobs
}

#[cfg(test)]
mod tests {
    //! The driver end to end on inline scripts: failures name their line, and a fault run
    //! really draws faults from the world's model.
    use super::*;

    // Proves a scenario runs end to end and a wrong count fails with the line named.
    #[test]
    fn a_wrong_count_names_its_line() {
        let text = "tenants A\ndevices phone:A\nphone create 2 Space in s1\nsync phone\nexpect server A count Space 3\n";
        let script = parse("inline.scn", text).expect("parses");
        let failure = run(&script, RunMode::Clean).expect_err("3 is wrong");
        assert_eq!(failure.line, 5);
        assert!(failure.message.contains("found 2"), "{}", failure.message);
    }

    // Proves a fault run counts faults in the kernel's ledger and still converges, and a
    // clean run counts none.
    #[test]
    fn fault_runs_fire_faults_and_clean_runs_none() {
        let text = "tenants A B\ndevices phone:A tablet:A laptop:B\nphone create 30 Space in s1\nsync phone tablet laptop\nwait 600000\nsync tablet laptop\nexpect tablet count Space 30\nexpect converged\n";
        let script = parse("inline.scn", text).expect("parses");
        let clean = run(&script, RunMode::Clean).expect("clean run passes");
        assert_eq!(clean.faults_fired, 0);
        assert_eq!(clean.kills, 0);
        let fired: u64 = (0..4)
            .map(|seed| run(&script, RunMode::Faults { seed }).expect("fault run passes"))
            .map(|summary| summary.faults_fired)
            .sum();
        assert!(fired > 0, "four fault seeds fired no fault");
    }

    // Proves one fault seed replays one run: the same trace hash, the same faults.
    #[test]
    fn a_fault_seed_replays_the_same_run() {
        let text = "tenants A\ndevices phone:A tablet:A\nphone create 5 Space in s1 as r\nsync phone\nphone update r1 {\"name\":\"x\"}\nsync phone tablet\nwait 60000\nexpect converged\n";
        let script = parse("inline.scn", text).expect("parses");
        let seed = 2;
        let first = run(&script, RunMode::Faults { seed }).expect("passes");
        let second = run(&script, RunMode::Faults { seed }).expect("passes");
        assert_eq!(first, second);
        assert!(!first.trace_hash.is_empty());
        let other = run(&script, RunMode::Faults { seed: seed + 1 }).expect("passes");
        assert_ne!(first.trace_hash, other.trace_hash);
    }

    // Proves the kernel promises the driver's bookkeeping rests on: a device the script
    // killed stays down while time passes, an open-ended partition or offline period is
    // not ended by the heal or return an earlier timed one scheduled, and a counter reset
    // keeps the requests in flight now.
    #[test]
    fn scripted_kill_partition_and_offline_stay_until_undone() {
        let mut sim = crate::kernel::SimBuilder::new(1)
            .tenants(vec!["A".to_owned()])
            .device("phone", Some("A"))
            .device("tablet", Some("A"))
            .build();
        for index in 0..2 {
            sim.restart(index).expect("opens");
        }
        sim.call(0, |engine| Ok(engine.sync_now()?)).expect("syncs");
        assert!(!sim.device(0).in_flight.is_empty());
        sim.reset_counters(0);
        assert_eq!(
            sim.device(0).counters.max_in_flight,
            sim.device(0).in_flight.len()
        );
        assert!(sim.device(0).counters.requests.is_empty());
        sim.crash(1, None);
        sim.kill(1);
        sim.partition(0, Some(1_000));
        sim.partition(0, None);
        sim.offline(0, Some(1_000)).expect("goes offline");
        sim.offline(0, None).expect("goes offline");
        let later_ms = sim.now_ms() + 60_000;
        sim.run_until(later_ms).expect("runs");
        assert!(!sim.device(1).is_running());
        assert!(!sim.device(0).network_up);
        assert!(!sim.device(0).app_online);
        sim.heal(0);
        sim.online(0).expect("back online");
        sim.restart(1).expect("reopens");
        assert!(sim.device(1).is_running());
        assert!(sim.device(0).network_up);
    }

    // Proves `faults off` removes a class from a fault run's knobs and nothing else.
    #[test]
    fn faults_off_removes_only_the_named_classes() {
        let text = "tenants A\nfaults off clock_jump partition\ndevices phone:A\n";
        let script = parse("inline.scn", text).expect("parses");
        let mut setup = runner::Setup::default();
        for step in &script.steps {
            setup.apply(&step.command).expect("valid setup");
        }
        let seed = (0..64)
            .find(|seed| {
                let faults = Knobs::derive(*seed, crate::profile::Profile::Default).faults;
                faults.contains_key(&FaultClass::ClockJump)
                    && faults.contains_key(&FaultClass::RequestLost)
            })
            .expect("some seed has both classes on");
        let knobs = knobs_for(RunMode::Faults { seed }, &setup);
        assert!(!knobs.faults.contains_key(&FaultClass::ClockJump));
        assert!(!knobs.faults.contains_key(&FaultClass::Partition));
        assert!(knobs.faults.contains_key(&FaultClass::RequestLost));
        assert_eq!(knobs.clock_offset_ms_max, 0);
        assert_eq!(knobs.clock_drift_ppm_max, 0);
    }
}
