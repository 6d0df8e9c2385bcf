//! `syncsim serve`: the reference server behind a real GraphQL-over-HTTP endpoint.
//!
//! One route, `POST /graphql` (GraphQL over HTTP: a JSON body with `query`,
//! `operationName` and `variables`; the tenant's token as `Authorization: Bearer`). This
//! module owns the process around the schema of [`super::graphql`]: binding (loopback
//! only: the local tenants' tokens are printed and public), the local tenants, planted
//! defects, the optional journal ([`super::journal`]), one log line per request, and
//! stopping. It runs on the real clock: the served server's clock is the wall clock.
//! It never decides anything about sync: every request goes to [`ReferenceServer`].

use super::graphql::{self, Backend, BearerToken, SyncSchema};
use super::journal::{request_tenant, Journal, JournalError};
use crate::server::{ReferenceServer, ServerDefects};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_engine::wire::{self, ErrorCode, SyncRequest};

/// The path of the endpoint.
pub const GRAPHQL_PATH: &str = "/graphql";

/// The tenants a server starts with unless told otherwise: (tenant id, bearer token).
/// Conformance runs use them by default.
pub const LOCAL_TENANTS: [(&str, &str); 2] =
    [("alpha", "dev-token-alpha"), ("beta", "dev-token-beta")];

/// One tenant the server serves, and the token that acts for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalTenant {
    pub tenant_id: String,
    pub token: String,
}

impl LocalTenant {
    /// [`LOCAL_TENANTS`].
    pub fn defaults() -> Vec<LocalTenant> {
        LOCAL_TENANTS
            .iter()
            .map(|(tenant_id, token)| LocalTenant {
                tenant_id: (*tenant_id).to_owned(),
                token: (*token).to_owned(),
            })
            .collect()
    }
}

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// A loopback address; port 0 picks a free port (see [`RunningServer::addr`]).
    pub addr: SocketAddr,
    pub tenants: Vec<LocalTenant>,
    /// Keep pushes in `DIR` and replay them at start (in memory when `None`).
    pub data_dir: Option<PathBuf>,
    /// Harness self-tests: the server's planted defects.
    pub defects: ServerDefects,
    /// Stop by itself after this long (for scripts and tests).
    pub stop_after: Option<Duration>,
    /// One line per request on stderr.
    pub log_requests: bool,
}

impl ServeConfig {
    /// The local tenants on `addr`, in memory, no defects, logging, no time limit.
    pub fn local(addr: SocketAddr) -> ServeConfig {
        ServeConfig {
            addr,
            tenants: LocalTenant::defaults(),
            data_dir: None,
            defects: ServerDefects::default(),
            stop_after: None,
            log_requests: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to listen on {0}: the server's tokens are public, so it binds to loopback addresses only (e.g. 127.0.0.1:8080)")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("two local tenants share the token {0:?}: a token names exactly one tenant")]
    SharedToken(String),
}

/// The served reference server and its journal, behind one lock: requests are handled
/// one at a time, in arrival order, as the in-process server handles them.
struct Served {
    state: Mutex<ServedState>,
}

struct ServedState {
    server: ReferenceServer,
    journal: Option<Journal>,
}

impl Served {
    fn lock(&self) -> std::sync::MutexGuard<'_, ServedState> {
        self.state
            .lock()
            .expect("an earlier request panicked while holding the server: a server bug")
    }
}

impl Backend for Arc<Served> {
    fn handle(&self, operation_name: &str, token: &str, variables: Value) -> Value {
        let request = SyncRequest {
            request_id: 0,
            operation_name: operation_name.to_owned(),
            tenant_id: request_tenant(&variables),
            token: token.to_owned(),
            variables: variables.into(),
        };
        let clock_ms = wall_clock_ms();
        let mut state = self.lock();
        let ServedState { server, journal } = &mut *state;
        server.set_clock_ms(clock_ms);
        let answer = server.handle(&request);
        let is_push = operation_name.starts_with("syncPush");
        if let (true, Some(journal), Some(tenant_id)) =
            (is_push, journal.as_mut(), server.tenant_of_token(token))
        {
            if let Err(error) = journal.append(tenant_id, &request, clock_ms) {
                // The push is applied in memory but not kept: the client retries, and the
                // retry (answered from the stored result) is kept instead.
                eprintln!("syncsim serve: {error}");
                return wire::error_response(
                    ErrorCode::ServerBusy,
                    "the server could not keep the push; retry later",
                );
            }
        }
        answer
    }
}

/// The served server's clock: real milliseconds since the Unix epoch.
#[allow(clippy::disallowed_methods)] // A served server runs in real time, not the simulator's.
fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

struct App {
    schema: SyncSchema,
    served: Arc<Served>,
    log_requests: bool,
}

/// Builds the reference server a config describes: tenants, defects, and the journal
/// replayed (returns how many pushes it replayed).
fn build(config: &ServeConfig) -> Result<(Arc<Served>, usize), ServeError> {
    let mut server = ReferenceServer::new(sync_engine::testing::example_registry());
    server.set_defects(config.defects);
    for (index, tenant) in config.tenants.iter().enumerate() {
        if config.tenants[..index]
            .iter()
            .any(|earlier| earlier.token == tenant.token)
        {
            return Err(ServeError::SharedToken(tenant.token.clone()));
        }
        server.add_tenant_token(&tenant.tenant_id, &tenant.token);
    }
    let journal = config.data_dir.as_deref().map(Journal::open).transpose()?;
    let replayed = match &journal {
        Some(journal) => journal.replay_into(&mut server)?,
        None => 0,
    };
    let state = Mutex::new(ServedState { server, journal });
    Ok((Arc::new(Served { state }), replayed))
}

/// A server running on a thread of its own; dropping it stops it.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/graphql`.
    pub fn endpoint(&self) -> String {
        format!("http://{}{GRAPHQL_PATH}", self.addr)
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            // The server may have stopped already (its time limit): nothing to tell.
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().expect("the server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Err(error) = self.stop_and_join() {
            eprintln!("syncsim serve: {error}");
        }
    }
}

/// Starts a server on a thread of its own and returns once it listens.
pub fn spawn(config: ServeConfig) -> Result<RunningServer, ServeError> {
    let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel();
    let (ready_sender, ready_receiver) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let ready = move |addr: SocketAddr, _replayed: usize| {
            let _ = ready_sender.send(addr);
        };
        run(config, ready, async {
            let _ = stop_receiver.await;
        })
    });
    match ready_receiver.recv() {
        Ok(addr) => Ok(RunningServer {
            addr,
            stop: Some(stop_sender),
            thread: Some(thread),
        }),
        // The thread ended before listening: its error says why.
        Err(_) => Err(thread
            .join()
            .expect("the server thread panicked")
            .expect_err("a server that never listened ended with an error")),
    }
}

/// Serves on this thread until Ctrl-C or the config's time limit; `ready` is called once
/// the server listens, with its address and the number of pushes replayed from the
/// journal.
pub fn serve(
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr, usize) + Send + 'static,
) -> Result<(), ServeError> {
    run(config, ready, async {
        // Without a Ctrl-C handler the time limit (if any) still stops the server.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
}

fn run(
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr, usize) + Send + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if !config.addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(config.addr));
    }
    let (served, replayed) = build(&config)?;
    let app = Arc::new(App {
        schema: graphql::schema(Arc::clone(&served)),
        served,
        log_requests: config.log_requests,
    });
    let router = Router::new()
        .route(GRAPHQL_PATH, post(graphql_request))
        .with_state(app);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let stop_after = config.stop_after;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.addr,
            source,
        })?;
        ready(addr, replayed);
        let shutdown = async move {
            match stop_after {
                Some(limit) => {
                    tokio::select! {
                        () = stop => {}
                        () = tokio::time::sleep(limit) => {}
                    }
                }
                None => stop.await,
            }
        };
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })
    })
}

/// `POST /graphql`: runs the request with its bearer token; logs one line.
async fn graphql_request(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    let token = bearer_token(&headers);
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => {
            if app.log_requests {
                eprintln!(
                    "POST {GRAPHQL_PATH} - refused: not a GraphQL request ({})",
                    rejection.0
                );
            }
            return rejection.into_response();
        }
    };
    let operation = request
        .operation_name
        .clone()
        .unwrap_or_else(|| "-".to_owned());
    let items = request
        .variables
        .get("payload")
        .and_then(|payload| match payload {
            async_graphql::Value::List(items) => Some(items.len()),
            _ => None,
        });
    let started = started_at();
    let response = app
        .schema
        .execute(request.data(BearerToken(token.clone())))
        .await;
    if app.log_requests {
        let tenant = app
            .served
            .lock()
            .server
            .tenant_of_token(&token)
            .map_or_else(|| "(unknown token)".to_owned(), str::to_owned);
        let outcome = match response.errors.first() {
            None => "ok".to_owned(),
            Some(error) => {
                let code = error
                    .extensions
                    .as_ref()
                    .and_then(|extensions| extensions.get("code"))
                    .map_or_else(
                        || "ERROR".to_owned(),
                        |code| match code {
                            async_graphql::Value::String(code) => code.clone(),
                            other => other.to_string(),
                        },
                    );
                format!("{code}: {}", error.message)
            }
        };
        let items = items.map_or_else(String::new, |count| format!(" items={count}"));
        eprintln!(
            "POST {GRAPHQL_PATH} {operation} tenant={tenant}{items} {outcome} {:.1} ms",
            elapsed_ms(started)
        );
    }
    GraphQLResponse::from(response).into_response()
}

/// The token of `Authorization: Bearer TOKEN` ("" without one).
fn bearer_token(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_owned()
}

#[allow(clippy::disallowed_methods)] // The log's request time is real time.
fn started_at() -> std::time::Instant {
    std::time::Instant::now()
}

fn elapsed_ms(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1_000.0
}
