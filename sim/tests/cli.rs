//! The `syncsim` command line: bad usage stops with exit code 64 before any seed runs
//! (with a suggestion for a misspelt flag), `--help` and `--version` print and succeed,
//! `replay --defect` replays the planted server that a failing self-test campaign ran
//! against, `--safety-only` keeps the faults on and checks only safety, and `sweep` fails
//! on its first bad kill with a replay of that kill. The case file commands: `shrink`
//! writes a case that `replay --case` replays with the same failure; `case-from-fuzz`
//! turns a `sim_world` input into a case that replays as the run it recorded; a file that
//! is not a case, or a seed that passes, is refused with a clear message and a non-zero
//! exit code, never a panic.

use std::process::{Command, Output};

fn syncsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncsim"))
        .args(args)
        .output()
        .expect("run syncsim")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_misspelt_flag_is_refused_before_anything_runs() {
    for args in [
        &["run", "--seed", "5"][..],
        &["run", "--seeds"][..],
        &["run", "--seeds", "5..5"][..],
        &["run", "--shard", "2/2"][..],
        &["run", "--profile", "huge"][..],
        &["run", "--defect", "no_such_defect"][..],
        &["replay", "3", "--trace", "--profle", "lite"][..],
        &["replay", "not-a-seed"][..],
        &["replay"][..],
        &["sweep", "--seed", "two"][..],
        &["sweep", "--profile", "huge"][..],
        &["campaign"][..],
        &[][..],
    ] {
        let output = syncsim(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        assert!(
            text(&output.stdout).is_empty(),
            "{args:?} ran something: {}",
            text(&output.stdout)
        );
        assert!(!text(&output.stderr).is_empty(), "{args:?} said nothing");
    }
}

#[test]
fn a_misspelt_flag_or_value_gets_a_suggestion() {
    for (args, suggestion) in [
        (&["run", "--seedz", "1"][..], "--seeds"),
        (&["replay", "3", "--profle", "lite"][..], "--profile"),
        (&["run", "--profile", "lit"][..], "lite"),
        (
            &["run", "--defect", "skip_op_id_dedup"][..],
            "skip_op_id_dedupe",
        ),
    ] {
        let output = syncsim(args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(suggestion), "{args:?}: {stderr}");
    }
}

#[test]
fn help_and_version_print_and_run_nothing() {
    for (args, mentions) in [
        (&["--help"][..], &["Usage: syncsim", "run", "replay"][..]),
        (
            &["run", "--help"][..],
            &[
                "Usage: syncsim run",
                "--seeds <A..B>",
                "--profile <P>",
                "--shard <I/N>",
                "--threads <T>",
                "--json <PATH>",
                "--defect <NAME>",
                "skip_op_id_dedupe",
            ][..],
        ),
        (
            &["replay", "-h"][..],
            &[
                "Usage: syncsim replay",
                "[SEED]",
                "--case <FILE>",
                "--trace",
                "--defect <NAME>",
            ][..],
        ),
        (
            &["shrink", "--help"][..],
            &[
                "Usage: syncsim shrink",
                "[SEED]",
                "--case <FILE>",
                "--out <FILE>",
                "--runs-max <N>",
                "default 500",
                "[default: 500]",
            ][..],
        ),
        (
            &["--version"][..],
            &[concat!("syncsim ", env!("CARGO_PKG_VERSION"))][..],
        ),
    ] {
        let output = syncsim(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let stdout = text(&output.stdout);
        for word in mentions {
            assert!(stdout.contains(word), "{args:?} lacks {word:?}: {stdout}");
        }
        assert!(
            !stdout.contains("syncsim run: profile"),
            "{args:?} ran a campaign"
        );
        assert!(!stdout.contains("knobs:"), "{args:?} replayed a seed");
    }
}

#[test]
fn replay_plants_the_defect_it_is_given() {
    // Seed 1 of `default` catches `skip_op_id_dedupe` (sim/tests/simulator.rs covers the
    // campaign side); replaying it must fail the same way, and pass without the defect.
    let planted = syncsim(&[
        "replay",
        "1",
        "--profile",
        "default",
        "--defect",
        "skip_op_id_dedupe",
    ]);
    assert_eq!(planted.status.code(), Some(1), "{}", text(&planted.stdout));
    assert!(text(&planted.stderr).contains("replay 1 --profile default --defect skip_op_id_dedupe"));
    let clean = syncsim(&["replay", "1", "--profile", "default"]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
}

#[test]
fn without_switches_a_class_off_and_reaches_the_replay_command() {
    // Seed 3 of `default` catches `clock_per_process` through the second process; with
    // `second_process` off the same seed passes, and a failing replay names the class.
    let args = [
        "replay",
        "3",
        "--profile",
        "default",
        "--defect",
        "clock_per_process",
    ];
    let caught = syncsim(&args);
    assert_eq!(caught.status.code(), Some(1), "{}", text(&caught.stdout));
    let off = syncsim(&[&args[..], &["--without", "second_process"]].concat());
    assert_eq!(off.status.code(), Some(0), "{}", text(&off.stderr));
    let other = syncsim(&[&args[..], &["--without", "power_loss"]].concat());
    assert_eq!(other.status.code(), Some(1), "{}", text(&other.stdout));
    assert!(text(&other.stderr).contains("--defect clock_per_process --without power_loss"));
    let misspelt = syncsim(&["run", "--seeds", "0..1", "--without", "power_lost"]);
    assert_eq!(misspelt.status.code(), Some(64), "a usage error");
    assert!(
        text(&misspelt.stderr).contains("power_loss"),
        "{}",
        text(&misspelt.stderr)
    );
}

#[test]
fn safety_only_keeps_the_faults_on_and_checks_only_safety() {
    // Without the flag the seed heals and converges with nobody pressing "sync now".
    let full = syncsim(&["replay", "0", "--profile", "lite", "--trace"]);
    assert_eq!(full.status.code(), Some(0), "{}", text(&full.stderr));
    let stdout = text(&full.stdout);
    assert!(stdout.contains("liveness: heal the network"), "{stdout}");
    assert!(stdout.contains("second workload"), "{stdout}");
    // With it, the run ends after the safety phase: no heal, no convergence.
    let safety = syncsim(&[
        "replay",
        "0",
        "--profile",
        "lite",
        "--trace",
        "--safety-only",
    ]);
    assert_eq!(safety.status.code(), Some(0), "{}", text(&safety.stderr));
    let stdout = text(&safety.stdout);
    assert!(
        stdout.contains("safety only: no liveness phase"),
        "{stdout}"
    );
    assert!(!stdout.contains("liveness: heal the network"), "{stdout}");
    assert!(!stdout.contains("second workload"), "{stdout}");

    // A defect that only stops recovery is a liveness failure, which a safety-only run
    // does not look for; a duplicate is a safety violation, which it still catches.
    let stuck = ["replay", "2", "--profile", "default"];
    let liveness_defect = ["--defect", "retry_replaces_interval"];
    let caught = syncsim(&[&stuck[..], &liveness_defect[..]].concat());
    assert_eq!(caught.status.code(), Some(2), "{}", text(&caught.stdout));
    let ignored = syncsim(&[&stuck[..], &liveness_defect[..], &["--safety-only"][..]].concat());
    assert_eq!(ignored.status.code(), Some(0), "{}", text(&ignored.stderr));
    let duplicates = syncsim(&[
        "replay",
        "1",
        "--profile",
        "default",
        "--defect",
        "skip_op_id_dedupe",
        "--safety-only",
    ]);
    assert_eq!(
        duplicates.status.code(),
        Some(1),
        "{}",
        text(&duplicates.stdout)
    );
    assert!(text(&duplicates.stderr).contains("replay 1 --profile default --safety-only"));

    // A campaign says it ran safety only, in its summary and its JSON.
    let json =
        std::env::temp_dir().join(format!("syncsim-safety-only-{}.json", std::process::id()));
    let campaign = syncsim(&[
        "run",
        "--seeds",
        "0..12",
        "--profile",
        "lite",
        "--safety-only",
        "--json",
        json.to_str().expect("a UTF-8 temp path"),
    ]);
    assert_eq!(
        campaign.status.code(),
        Some(0),
        "{}",
        text(&campaign.stdout)
    );
    assert!(text(&campaign.stdout).contains("safety only: faults never stopped"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON summary"))
            .expect("the summary is JSON");
    std::fs::remove_file(&json).expect("remove the JSON summary");
    assert_eq!(summary["safety_only"], serde_json::json!(true));
    assert!(summary["probes"]["sync_by_app_open"]["hits"].as_u64() > Some(0));
}

#[test]
fn sweep_fails_on_the_first_bad_kill_and_prints_a_replay_that_fails_alike() {
    let workload = ["--seed", "2", "--profile", "lite", "--safety-ms", "20000"];
    let planted = ["--defect", "split_local_write"];
    let sweep = syncsim(&[&["sweep"][..], &workload, &planted, &["--threads", "2"]].concat());
    let stdout = text(&sweep.stdout);
    // The split write shows either as a safety violation (1) or as a record that never
    // syncs (2), depending on what the workload does after the kill.
    let failed_with = sweep.status.code();
    assert!(matches!(failed_with, Some(1 | 2)), "{stdout}");
    assert!(stdout.contains("transaction boundaries"), "{stdout}");
    let boundary = stdout
        .split("--boundary ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no replay command in {stdout}"));
    let replay = syncsim(
        &[
            &["sweep"][..],
            &workload,
            &planted,
            &["--boundary", boundary],
        ]
        .concat(),
    );
    let replayed = text(&replay.stdout);
    assert_eq!(replay.status.code(), failed_with, "{replayed}");
    assert!(
        replayed.contains(&format!(
            "at boundary {boundary} (before_commit of local_write)"
        )),
        "{replayed}"
    );
}

#[test]
fn shrink_writes_a_case_that_replays_the_same_failure() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("shrunk.json");
    let out = out.to_str().expect("a UTF-8 path");
    let shrunk = syncsim(&[
        "shrink",
        "0",
        "--defect",
        "skip_op_id_dedupe",
        "--runs-max",
        "20",
        "--out",
        out,
    ]);
    let stdout = text(&shrunk.stdout);
    assert_eq!(
        shrunk.status.code(),
        Some(0),
        "{stdout}{}",
        text(&shrunk.stderr)
    );
    assert!(
        stdout.contains("signature Invariant | silent divergence"),
        "{stdout}"
    );
    assert!(stdout.contains("fault classes off"), "{stdout}");
    assert!(stdout.contains(&format!("replay --case {out}")), "{stdout}");
    let replayed = syncsim(&["replay", "--case", out]);
    let replay_out = text(&replayed.stdout);
    assert_eq!(replayed.status.code(), Some(1), "{replay_out}");
    assert!(
        replay_out.contains("the same run as recorded"),
        "{replay_out}"
    );
    assert!(text(&replayed.stderr).contains("silent divergence"));
    assert!(text(&replayed.stderr).contains(&format!("replay --case {out}")));
}

#[test]
fn a_fuzz_input_becomes_a_case_that_replays_its_run() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().join("fuzz.json");
    let out = out.to_str().expect("a UTF-8 path");
    let artifact = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/sim_world/calm_two_devices.json"
    );
    let written = syncsim(&["case-from-fuzz", artifact, "--out", out]);
    assert_eq!(written.status.code(), Some(0), "{}", text(&written.stderr));
    assert!(text(&written.stdout).contains("passed"));
    let replayed = syncsim(&["replay", "--case", out]);
    assert_eq!(
        replayed.status.code(),
        Some(0),
        "{}",
        text(&replayed.stdout)
    );
    assert!(text(&replayed.stdout).contains("the same run as recorded"));
    let unreadable = syncsim(&["case-from-fuzz", "/nonexistent/crash-1", "--out", out]);
    assert_eq!(unreadable.status.code(), Some(64));
    assert!(text(&unreadable.stderr).contains("cannot read /nonexistent/crash-1"));
}

#[test]
fn bad_case_files_and_passing_seeds_get_a_clear_error() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "crash-deadbeef").expect("write");
    let wrong_format = dir.path().join("format.json");
    std::fs::write(&wrong_format, r#"{"format": 1, "seed": 3}"#).expect("write");
    for (args, message) in [
        (
            vec!["replay", "--case", not_json.to_str().expect("path")],
            "not a case file: expected value at line 1 column 1",
        ),
        (
            vec!["replay", "--case", wrong_format.to_str().expect("path")],
            "not a case file: missing field `knobs`",
        ),
        (
            vec!["replay", "--case", "/nonexistent/case.json"],
            "case file /nonexistent/case.json",
        ),
        (
            vec!["shrink", "--case", "/nonexistent/case.json"],
            "case file /nonexistent/case.json",
        ),
        (
            vec!["shrink", "0", "--profile", "lite"],
            "seed 0 passes with these knobs: there is no failure to shrink",
        ),
        (
            vec!["replay", "--case", "x.json", "3"],
            "cannot be used with",
        ),
        (vec!["shrink"], "required"),
    ] {
        let output = syncsim(&args);
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn check_determinism_says_the_runs_agree_and_replay_writes_the_timeline() {
    // A seed the planted defect fails within 40 s of virtual time: both commands are fast.
    let seed = [
        "0",
        "--profile",
        "lite",
        "--defect",
        "pull_overwrites_pending_edit",
    ];
    let check = syncsim(&[&["check-determinism"][..], &seed].concat());
    let stdout = text(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("the two runs agree: trace hash"),
        "{stdout}"
    );
    let page =
        std::env::temp_dir().join(format!("syncsim-cli-timeline-{}.html", std::process::id()));
    let page_arg = page.to_str().expect("a UTF-8 temporary path");
    let replay = syncsim(&[&["replay"][..], &seed, &["--html", page_arg]].concat());
    assert_eq!(replay.status.code(), Some(1), "{}", text(&replay.stdout));
    let html = std::fs::read_to_string(&page).expect("the timeline was written");
    std::fs::remove_file(&page).expect("remove the timeline");
    assert!(html.contains("monotonic reads"));
    assert!(sync_sim::timeline::embedded_json(&html).is_some());
    // Without --trace the replay prints no trace lines, only the summary line.
    assert!(!text(&replay.stdout).contains(" state d0 "));
}

#[test]
fn a_failing_campaign_prints_and_writes_its_failures_grouped_by_signature() {
    // Seed 0 of `lite` fails fast with this defect: one failure, so one group.
    let json = std::env::temp_dir().join(format!("syncsim-cli-groups-{}.json", std::process::id()));
    let json_arg = json.to_str().expect("a UTF-8 temporary path");
    let campaign = syncsim(&[
        "run",
        "--seeds",
        "0..1",
        "--profile",
        "lite",
        "--defect",
        "pull_overwrites_pending_edit",
        "--json",
        json_arg,
    ]);
    let stdout = text(&campaign.stdout);
    assert_eq!(campaign.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 failures in 1 groups"), "{stdout}");
    assert!(
        stdout.contains(
            "FAILED     1 x Invariant | monotonic reads | in answer to syncPull, smallest seed 0"
        ),
        "{stdout}"
    );
    assert!(text(&campaign.stderr).contains("signature: Invariant | monotonic reads"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON summary"))
            .expect("the summary is JSON");
    std::fs::remove_file(&json).expect("remove the JSON summary");
    let group = &summary["groups"][0];
    assert_eq!(group["invariant"], "monotonic reads");
    assert_eq!(group["count"], 1);
    assert_eq!(group["smallest_seed"], 0);
    assert_eq!(
        summary["failures"][0]["signature"]["invariant"],
        "monotonic reads"
    );
}
