//! `syncsim serve` and `syncsim conformance`: the command lines of the reference server on
//! a real wire and of the contract checks (part of the `syncsim` binary). The arguments always parse; running them needs the `http` feature,
//! and a `syncsim` built without it says how to get it instead of failing to parse.

use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use sync_sim::server::Defect;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The loopback address to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// A tenant and the bearer token that acts for it (repeatable). Replaces the two
    /// local tenants, alpha (dev-token-alpha) and beta (dev-token-beta).
    #[arg(long = "tenant", value_name = "TENANT=TOKEN", value_parser = parse_tenant)]
    pub tenants: Vec<(String, String)>,
    /// Keep every push in DIR (SQLite) and replay it at start, so the server survives a
    /// restart [default: in memory].
    #[arg(long = "data", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Harness self-test: plant a server defect (repeatable).
    #[arg(long = "defect", value_name = "NAME", value_parser = super::defect_parser())]
    pub defects: Vec<Defect>,
    /// Stop by itself after this many seconds (for scripts and tests).
    #[arg(long, value_name = "SECONDS")]
    pub stop_after: Option<u64>,
    /// No line per request.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ConformanceArgs {
    /// The GraphQL endpoint of the server under test.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080/graphql"
    )]
    pub endpoint: String,
    /// The tenant the checks write to.
    #[arg(long, value_name = "TENANT", default_value = "alpha")]
    pub tenant_a: String,
    /// The bearer token of tenant A.
    #[arg(long, value_name = "TOKEN", default_value = "dev-token-alpha")]
    pub token_a: String,
    /// A second tenant, which must never see or change tenant A's data.
    #[arg(long, value_name = "TENANT", default_value = "beta")]
    pub tenant_b: String,
    /// The bearer token of tenant B.
    #[arg(long, value_name = "TOKEN", default_value = "dev-token-beta")]
    pub token_b: String,
    /// The deadline of each request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Also write the results as JSON to PATH (`-`: standard output, instead of the text).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
}

fn parse_tenant(raw: &str) -> Result<(String, String), String> {
    let (tenant, token) = raw
        .split_once('=')
        .ok_or(format!("--tenant wants TENANT=TOKEN, got {raw:?}"))?;
    sync_engine::TenantId::parse(tenant).map_err(|error| format!("{error}"))?;
    let token_is_sendable = !token.is_empty()
        && token
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'"');
    if !token_is_sendable {
        return Err(format!(
            "the token of {tenant:?} must be printable ASCII without spaces or quotes"
        ));
    }
    Ok((tenant.to_owned(), token.to_owned()))
}

#[cfg(not(feature = "http"))]
pub fn command_serve(_args: ServeArgs) -> Result<ExitCode, String> {
    Err(WITHOUT_HTTP.to_owned())
}

#[cfg(not(feature = "http"))]
pub fn command_conformance(_args: ConformanceArgs) -> Result<ExitCode, String> {
    Err(WITHOUT_HTTP.to_owned())
}

#[cfg(not(feature = "http"))]
const WITHOUT_HTTP: &str = "this syncsim was built without its `http` feature; run \
    `cargo run --release -p sync-sim --features http -- serve` (or `conformance`)";

#[cfg(feature = "http")]
pub fn command_serve(args: ServeArgs) -> Result<ExitCode, String> {
    use sync_sim::http::serve::{serve, LocalTenant, ServeConfig, GRAPHQL_PATH};
    use sync_sim::server::ServerDefects;

    let mut config = ServeConfig::local(args.addr);
    if !args.tenants.is_empty() {
        config.tenants = args
            .tenants
            .into_iter()
            .map(|(tenant_id, token)| LocalTenant { tenant_id, token })
            .collect();
    }
    config.data_dir = args.data_dir;
    config.defects = ServerDefects::planting(args.defects);
    config.stop_after = args.stop_after.map(std::time::Duration::from_secs);
    config.log_requests = !args.quiet;
    let tenants = config.tenants.clone();
    let data = config.data_dir.as_ref().map_or_else(
        || "in memory".to_owned(),
        |dir| format!("kept in {}", dir.display()),
    );
    let defects = config.defects.planted();
    let ready = move |addr: SocketAddr, replayed: usize| {
        let mut banner = format!("syncsim serve: listening on http://{addr}{GRAPHQL_PATH}\n");
        for tenant in &tenants {
            banner += &format!("  tenant {:<12} token {}\n", tenant.tenant_id, tenant.token);
        }
        banner += &format!("  data {data} ({replayed} pushes replayed)\n");
        for defect in &defects {
            banner += &format!("  planted defect {}\n", defect.name());
        }
        // Tests and scripts read the address from the first line as soon as it is out. A
        // reader that has gone away (a closed pipe) must not stop the server.
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(banner.as_bytes())
            .and_then(|()| stdout.flush());
    };
    match serve(config, ready) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // A non-loopback address is bad usage (64); anything else is a failure to serve.
        Err(error @ sync_sim::http::serve::ServeError::NotLoopback(_)) => {
            Err(format!("syncsim serve: {error}"))
        }
        Err(error) => {
            eprintln!("syncsim serve: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(feature = "http")]
pub fn command_conformance(args: ConformanceArgs) -> Result<ExitCode, String> {
    use sync_sim::http::conformance::{run, ConformanceConfig, TenantLogin};

    let (run_tag, stamp_base_ms) = run_identity();
    let config = ConformanceConfig {
        endpoint: args.endpoint,
        tenant_a: TenantLogin {
            tenant_id: args.tenant_a,
            token: args.token_a,
        },
        tenant_b: TenantLogin {
            tenant_id: args.tenant_b,
            token: args.token_b,
        },
        timeout: std::time::Duration::from_millis(args.timeout_ms.max(1)),
        run_tag,
        stamp_base_ms,
    };
    let report = run(&config).map_err(|error| format!("syncsim conformance: {error}"))?;
    let json = serde_json::to_string_pretty(&report).expect("a report always serializes");
    match args.json.as_deref() {
        Some(path) if path == std::path::Path::new("-") => println!("{json}"),
        Some(path) => {
            std::fs::write(path, json + "\n")
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            print!("{}", report.render(400));
        }
        None => print!("{}", report.render(400)),
    }
    Ok(if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A tag no other run shares (its client ids start with it) and the run's stamp base:
/// both from the real clock, as the server under test lives in real time.
#[cfg(feature = "http")]
#[allow(clippy::disallowed_methods)] // A conformance run talks to a real server in real time.
fn run_identity() -> (String, u64) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(0));
    (format!("conf-{now_ms}-{}", std::process::id()), now_ms)
}
