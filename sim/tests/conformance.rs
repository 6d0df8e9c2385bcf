//! `syncsim conformance` against `syncsim serve`: every check passes against the reference
//! server, and each check fails against a server with the defect it exists to catch.

mod served;

use served::ServeProcess;
use std::process::Command;
use std::time::Duration;
use sync_sim::http::conformance::{run, ConformanceConfig, ConformanceReport, TenantLogin};
use sync_sim::http::serve::{spawn, ServeConfig};
use sync_sim::server::{Defect, ServerDefects};

/// Each check, and the planted server defect that must make it fail.
const CAUGHT_BY: [(&str, Defect); 8] = [
    ("push_replay_by_op_id", Defect::SkipOpIdDedupe),
    (
        "insert_with_known_client_id",
        Defect::InsertIgnoresKnownClientId,
    ),
    ("stale_base_version_conflicts", Defect::IgnoreBaseVersion),
    ("pages_resume_inside_a_commit", Defect::DropLastRowOfPage),
    ("deletes_reach_an_earlier_cursor", Defect::OmitDeletedIds),
    ("tenants_are_isolated", Defect::SkipTenantCheck),
    (
        "version_hash_matches_pulled_data",
        Defect::VersionHashCountsTombstones,
    ),
    (
        "malformed_push_changes_nothing",
        Defect::ApplyItemsBeforeValidating,
    ),
];

fn config(endpoint: String) -> ConformanceConfig {
    ConformanceConfig {
        endpoint,
        tenant_a: TenantLogin {
            tenant_id: "alpha".to_owned(),
            token: "dev-token-alpha".to_owned(),
        },
        tenant_b: TenantLogin {
            tenant_id: "beta".to_owned(),
            token: "dev-token-beta".to_owned(),
        },
        timeout: Duration::from_secs(10),
        run_tag: "conf-test".to_owned(),
        stamp_base_ms: sync_engine::testing::EPOCH_MS,
    }
}

fn check_against(defects: ServerDefects) -> ConformanceReport {
    let mut serve = ServeConfig::local("127.0.0.1:0".parse().expect("an address"));
    serve.defects = defects;
    serve.log_requests = false;
    serve.stop_after = Some(Duration::from_secs(60));
    let server = spawn(serve).expect("serve on loopback");
    let report = run(&config(server.endpoint())).expect("a valid endpoint");
    server.stop().expect("the server stops cleanly");
    report
}

#[test]
fn every_check_passes_against_the_reference_server() {
    let report = check_against(ServerDefects::default());
    eprintln!("{}", report.render(200));
    let names: Vec<&str> = report.checks.iter().map(|check| check.name).collect();
    assert_eq!(names, CAUGHT_BY.map(|(name, _)| name).to_vec());
    assert!(report.all_passed(), "{}", report.render(2000));
    assert!(report.checks.iter().all(|check| check.deciding.is_some()));
}

#[test]
fn each_check_fails_against_its_planted_defect() {
    let mut table = String::new();
    for (check, defect) in CAUGHT_BY {
        let report = check_against(ServerDefects::planting([defect]));
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|report| !report.passed)
            .map(|report| report.name)
            .collect();
        table.push_str(&format!(
            "{:<36} fails: {}\n",
            defect.name(),
            failed.join(", ")
        ));
        assert!(
            failed.contains(&check),
            "{check} passed against {}:\n{}",
            defect.name(),
            report.render(2000)
        );
        assert!(!report.all_passed());
    }
    eprintln!("{table}");
}

#[test]
fn the_command_line_passes_against_syncsim_serve_and_fails_against_a_defect() {
    let syncsim = env!("CARGO_BIN_EXE_syncsim");
    let sound = ServeProcess::start(&[]);
    let output = Command::new(syncsim)
        .args(["conformance", "--endpoint", &sound.endpoint, "--json", "-"])
        .output()
        .expect("run syncsim conformance");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json - prints JSON");
    assert_eq!(summary["passed"], 8);
    assert_eq!(summary["failed"], 0);

    let broken = ServeProcess::start(&["--defect", "skip_tenant_check"]);
    let output = Command::new(syncsim)
        .args(["conformance", "--endpoint", &broken.endpoint])
        .output()
        .expect("run syncsim conformance");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("FAIL  tenants_are_isolated"), "{text}");
    assert!(
        text.contains("request: "),
        "the deciding exchange is printed: {text}"
    );
}

#[test]
fn an_unreachable_endpoint_fails_every_check_and_a_bad_url_is_bad_usage() {
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let report = run(&config(format!("http://127.0.0.1:{port}/graphql"))).expect("a valid URL");
    assert_eq!(report.failed, 8, "{}", report.render(200));
    let output = Command::new(env!("CARGO_BIN_EXE_syncsim"))
        .args(["conformance", "--endpoint", "not a url"])
        .output()
        .expect("run syncsim conformance");
    assert_eq!(output.status.code(), Some(64), "{output:?}");
}
