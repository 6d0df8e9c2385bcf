//! The todo example, driven as a user would drive it: the walkthrough from the crate docs
//! and the README, step by step, with what each step must have done to the devices and
//! the server; and the README's transcript, which must be what the app prints.

use sync_engine::Engine;
use sync_examples::todo::{run, Device, Mode, TodoApp, ENTITY, TENANT};

/// Runs one line and returns what it printed.
fn step(app: &mut TodoApp, line: &str) -> String {
    let mut out = Vec::new();
    app.run_line(line, &mut out)
        .expect("output to a Vec never fails");
    String::from_utf8(out).expect("the app prints UTF-8")
}

/// Runs one line and checks that its output holds every `expected` piece.
fn check(app: &mut TodoApp, line: &str, expected: &[&str]) -> String {
    let printed = step(app, line);
    for piece in expected {
        assert!(
            printed.contains(piece),
            "`{line}` should print {piece:?}; it printed:\n{printed}"
        );
    }
    assert!(!printed.contains("error:"), "`{line}` failed:\n{printed}");
    printed
}

fn queued(engine: &Engine) -> u64 {
    engine.status().expect("status").pending_ops
}

fn conflicts(engine: &Engine) -> u64 {
    engine.status().expect("status").open_conflicts
}

fn titles(app: &TodoApp, device: Device) -> Vec<String> {
    app.titles(device).expect("list the todos")
}

/// The server's live titles: what every device converges to.
fn server_titles(app: &TodoApp) -> Vec<String> {
    let mut titles: Vec<String> = app
        .server()
        .records(TENANT)
        .iter()
        .filter(|record| record.entity == ENTITY && !record.is_deleted)
        .map(|record| record.data["title"].as_str().expect("a title").to_owned())
        .collect();
    titles.sort();
    titles
}

// Proves the walkthrough works end to end: a todo made on the phone reaches the laptop,
// concurrent edits of its title while the laptop is offline become a conflict on the
// laptop (after its offline sync failed with a transport failure), the dialog shows both
// titles, keeping the laptop's version syncs it to the server and the phone, and both
// devices end with the same list.
#[test]
fn walkthrough_resolves_a_conflict_and_both_devices_agree() {
    let mut app = TodoApp::open().expect("start the app");
    let (phone, laptop) = (Device::Phone, Device::Laptop);

    check(
        &mut app,
        "add phone Buy milk",
        &["phone: added todo 1 \"Buy milk\""],
    );
    assert_eq!(queued(app.engine(phone)), 1, "the create waits for a sync");
    assert!(titles(&app, laptop).is_empty());

    check(
        &mut app,
        "sync",
        &["phone: sync completed", "laptop: sync completed"],
    );
    assert_eq!(queued(app.engine(phone)), 0, "the phone pushed its create");
    assert_eq!(server_titles(&app), ["Buy milk"]);
    assert_eq!(titles(&app, laptop), ["Buy milk"], "the laptop pulled it");
    check(&mut app, "list laptop", &["1. [ ] Buy milk"]);

    check(&mut app, "offline laptop", &["laptop is offline"]);
    check(
        &mut app,
        "edit phone 1 Buy oat milk",
        &["todo 1 is now \"Buy oat milk\""],
    );
    check(
        &mut app,
        "edit laptop 1 Buy soy milk",
        &["todo 1 is now \"Buy soy milk\""],
    );
    let printed = check(
        &mut app,
        "sync",
        &[
            "phone: sync completed",
            "laptop: sync failed: transport: no network",
        ],
    );
    assert!(!printed.contains("laptop: sync completed"), "{printed}");
    assert_eq!(server_titles(&app), ["Buy oat milk"]);
    assert_eq!(
        queued(app.engine(laptop)),
        1,
        "the laptop's edit stays queued"
    );

    check(&mut app, "online laptop", &["laptop is online"]);
    check(
        &mut app,
        "sync laptop",
        &["laptop: conflict on todo 1", "laptop: sync completed"],
    );
    assert_eq!(conflicts(app.engine(laptop)), 1);
    assert_eq!(conflicts(app.engine(phone)), 0);
    assert_eq!(server_titles(&app), ["Buy oat milk"], "the conflict waits");
    check(
        &mut app,
        "list laptop",
        &["1. [ ] Buy soy milk  (conflict)"],
    );

    check(
        &mut app,
        "conflicts laptop",
        &[
            "laptop: conflict 1 of 1, on todo 1:",
            "Conflict Resolution",
            "Field: title",
            "\"Buy soy milk\"",
            "\"Buy oat milk\"",
            "[Keep Local] [Use Server] [Merge]",
        ],
    );
    check(&mut app, "conflicts phone", &["phone: no conflicts"]);

    check(
        &mut app,
        "resolve laptop 1 local",
        &["kept this device's version: \"Buy soy milk\"; the next sync sends it"],
    );
    assert_eq!(conflicts(app.engine(laptop)), 0);
    check(&mut app, "sync", &["laptop: sync completed"]);

    assert_eq!(server_titles(&app), ["Buy soy milk"]);
    assert_eq!(titles(&app, phone), ["Buy soy milk"]);
    assert_eq!(titles(&app, laptop), ["Buy soy milk"]);
    for device in [phone, laptop] {
        assert_eq!(
            queued(app.engine(device)),
            0,
            "{device} has nothing left to send"
        );
        assert_eq!(
            conflicts(app.engine(device)),
            0,
            "{device} has no conflict left"
        );
    }
    check(&mut app, "status", &["0 queued, 0 refused, 0 conflicts"]);
}

// Proves the two other answers to concurrent edits: edits of different fields merge on
// their own, and a `merge` resolution takes each named field from the side the user
// chose (here the server's title after a conflict on the title).
#[test]
fn different_fields_merge_and_a_merge_resolution_takes_the_chosen_side() {
    let mut app = TodoApp::open().expect("start the app");
    check(&mut app, "add laptop Call mum", &["laptop: added todo 1"]);
    check(&mut app, "sync", &["phone: sync completed"]);
    check(&mut app, "offline phone", &[]);
    check(&mut app, "done phone 1", &["todo 1 \"Call mum\" is done"]);
    check(&mut app, "edit laptop 1 Call mum back", &[]);
    check(&mut app, "sync laptop", &["laptop: sync completed"]);
    check(&mut app, "online phone", &[]);
    check(
        &mut app,
        "sync phone",
        &["phone: todo 1 changed on both devices, in different fields: merged"],
    );
    check(&mut app, "sync", &[]);
    for device in Device::ALL {
        assert_eq!(titles(&app, device), ["Call mum back [done]"], "{device}");
    }

    check(&mut app, "offline phone", &[]);
    check(&mut app, "edit phone 1 Call dad", &[]);
    check(&mut app, "edit laptop 1 Call gran", &[]);
    check(&mut app, "sync laptop", &[]);
    check(&mut app, "online phone", &[]);
    check(&mut app, "sync phone", &["phone: conflict on todo 1"]);
    let printed = step(&mut app, "resolve phone 1 merge title=mine");
    assert!(printed.contains("error: `title=mine`"), "{printed}");
    check(
        &mut app,
        "resolve phone 1 merge title=server",
        &["phone: todo 1 merged field by field: \"Call gran\""],
    );
    check(&mut app, "sync", &[]);
    for device in Device::ALL {
        assert_eq!(titles(&app, device), ["Call gran [done]"], "{device}");
        assert_eq!(conflicts(app.engine(device)), 0);
    }
}

// Proves the README's transcript is what the app prints for `examples/walkthrough.todo`:
// the README's block must be one contiguous run of the script's output.
#[test]
fn readme_transcript_is_the_walkthrough_output() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("walkthrough.todo")).expect("the script");
    let readme = std::fs::read_to_string(root.join("../README.md")).expect("the README");

    let mut app = TodoApp::open().expect("start the app");
    let mut out = Vec::new();
    run(&mut app, script.as_bytes(), &mut out, Mode::Script).expect("run the script");
    let printed = String::from_utf8(out).expect("UTF-8");
    assert_eq!(
        app.titles(Device::Phone).expect("list"),
        app.titles(Device::Laptop).expect("list")
    );

    let section = readme
        .split("## Try it: a two-device todo app")
        .nth(1)
        .expect("the README's todo section");
    let transcript = section
        .split("```text\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("the section's text block, the transcript");
    assert!(transcript.lines().count() > 10, "{transcript}");
    assert!(
        printed.contains(transcript),
        "the README's transcript is not what the app prints; the app printed:\n{printed}"
    );
}
