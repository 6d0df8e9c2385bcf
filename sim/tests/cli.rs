//! The `syncsim` command line: bad usage stops with exit code 64 before any seed runs,
//! `--help` prints the usage, and `replay --defect` replays the planted server that a
//! failing self-test campaign ran against.

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
        &["run", "--profile", "huge"][..],
        &["run", "--defect", "no_such_defect"][..],
        &["replay", "3", "--trace", "--profle", "lite"][..],
        &["replay", "not-a-seed"][..],
        &["campaign"][..],
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
fn help_prints_the_usage_and_runs_nothing() {
    for args in [
        &["--help"][..],
        &["run", "--help"][..],
        &["replay", "-h"][..],
    ] {
        let output = syncsim(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let stdout = text(&output.stdout);
        assert!(stdout.starts_with("usage:"), "{args:?}: {stdout}");
        assert!(!stdout.contains("seeds,"), "{args:?} ran a campaign");
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
