//! The engine's [`Transport`] over HTTP: one request, one POST, one mapped answer.
//!
//! It holds no state between requests but the client's connection pool: the engine
//! matches answers to requests, and decides what every failure means.

use crate::answer::envelope_from_answer;
use crate::client::GraphqlClient;
use crate::document::request_body;
use serde_json::Value;
use sync_engine::wire::SyncRequest;
use sync_engine::{Transport, TransportError};

/// The engine's transport: sends each [`SyncRequest`] to a [`GraphqlClient`]'s endpoint,
/// with `request.token` as the bearer token, and maps the answer with
/// [`envelope_from_answer`].
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: GraphqlClient,
}

impl HttpTransport {
    pub fn new(client: GraphqlClient) -> HttpTransport {
        HttpTransport { client }
    }

    pub fn client(&self) -> &GraphqlClient {
        &self.client
    }
}

impl Transport for HttpTransport {
    /// # Panics
    ///
    /// If the engine names an operation that has no document ([`crate::document_for`]):
    /// every name the engine makes has one, so this is the engine and this crate
    /// disagreeing on the contract, a bug, not a network condition to retry.
    fn send(&mut self, request: &SyncRequest) -> Result<Value, TransportError> {
        let body = request_body(request).unwrap_or_else(|error| panic!("{error}"));
        // The engine sends an empty token when it has none: no header, rather than a
        // bearer of nothing.
        let token = Some(request.token.as_str()).filter(|token| !token.is_empty());
        let answer = self.client.post_json(token, &body)?;
        envelope_from_answer(answer)
    }
}
