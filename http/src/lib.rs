//! The sync engine's GraphQL-over-HTTP client transport.
//!
//! `sync-engine` does no I/O: it hands each request to a [`sync_engine::Transport`] and
//! reads back a GraphQL response envelope. This crate is that transport for a real
//! server. It owns three things: the GraphQL document each engine operation needs
//! ([`document_for`], [`request_body`]), one HTTP POST per request ([`GraphqlClient`]),
//! and the mapping from what came back — an HTTP answer or a failure to get one — to what
//! the engine's `Transport::send` returns ([`envelope_from_answer`], its rules in the
//! [`answer`] module).
//!
//! It never decides anything about sync: it does not retry, back off, batch, reorder,
//! cache or read a response's payload. It carries requests and maps failures; every
//! decision about what a failure means for the queue stays in the engine, which sees
//! either the server's own envelope, a contract error code, or a [`TransportError`] it
//! treats as transient.
//!
//! The transport reads the real clock (the request deadline, inside `ureq`); the engine's
//! determinism rules do not reach here, because the engine never sees this crate's time.
//!
//! The app makes the client once, with the endpoint from its configuration, and hands
//! the transport to the engine; a failed sync is retried by the engine's own timer
//! (`SyncEvent::SyncFailed::retry_at_ms`), not here.
//!
//! ```no_run
//! use sync_http::{GraphqlClient, HttpTransport};
//!
//! fn sync(engine: &mut sync_engine::Engine) -> Result<(), Box<dyn std::error::Error>> {
//!     let client = GraphqlClient::new("http://127.0.0.1:8080/graphql")?;
//!     let events = engine.sync_blocking(&mut HttpTransport::new(client))?;
//!     println!("{events:?}");
//!     Ok(())
//! }
//! ```
//!
//! [`TransportError`]: sync_engine::TransportError

pub mod answer;
mod client;
mod document;
mod transport;

pub use answer::envelope_from_answer;
pub use client::{EndpointError, GraphqlClient, HttpAnswer, TIMEOUT_DEFAULT};
pub use document::{document_for, request_body, UnknownOperation};
pub use transport::HttpTransport;
