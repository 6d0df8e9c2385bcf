//! One GraphQL-over-HTTP endpoint, and one POST to it per call.
//!
//! The client owns the HTTP details: the endpoint's URL (checked once, up front), the
//! headers every request carries, the whole-request deadline, and reading the answer.
//! Every HTTP status is an answer ([`HttpAnswer`]), never an error: what a status means
//! for the engine is [`crate::answer`]'s to say. Only a failure to get an answer at all
//! (no connection, the deadline passed) is a [`TransportError`]. It never retries and
//! never follows a redirect (a redirected POST would silently become a GET). Proxies are
//! `ureq`'s defaults: `ALL_PROXY` / `HTTPS_PROXY` / `HTTP_PROXY` and `NO_PROXY` from the
//! environment.

use crate::answer::transport_error;
use serde_json::Value;
use std::time::Duration;
use sync_engine::TransportError;
use ureq::http::Uri;

/// How long one request may take, from resolving the host to the last byte of the
/// answer, unless [`GraphqlClient::with_timeout`] says otherwise.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// The largest answer body read; a larger one is a failed request. A pull page of 1000
/// records at the reference server's 2 KiB data limit is about 3 MiB: this leaves room
/// for larger pages and records without letting a misbehaving server exhaust memory.
const BODY_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// What the client accepts, most preferred first (GraphQL over HTTP: the newer media
/// type lets a server answer request errors with a 4xx status and an envelope).
const ACCEPT: &str = "application/graphql-response+json, application/json";

/// An endpoint URL the client cannot use. Reported when the client is made, so a
/// misconfigured app fails at start-up rather than at its first sync.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    #[error("endpoint {endpoint:?} is not a URL: {reason}")]
    Malformed { endpoint: String, reason: String },
    #[error("endpoint {endpoint:?} has no scheme: write it as http://host:port/path")]
    MissingScheme { endpoint: String },
    #[error("endpoint {endpoint:?} has scheme {scheme:?}; only http and https are supported")]
    UnsupportedScheme { endpoint: String, scheme: String },
    #[error(
        "endpoint {endpoint:?} is https, and this build has no TLS: turn on sync-http's \
         `tls` feature"
    )]
    HttpsWithoutTls { endpoint: String },
    #[error("endpoint {endpoint:?} names no host")]
    MissingHost { endpoint: String },
}

/// An HTTP answer, whatever its status.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpAnswer {
    pub status: u16,
    /// The body as text (invalid UTF-8 replaced, so a snippet of it can be reported).
    pub text: String,
    /// The body parsed as JSON, if it is JSON.
    pub json: Option<Value>,
}

impl HttpAnswer {
    /// An answer with `text` as its body, parsed as JSON if it is JSON.
    pub fn new(status: u16, text: String) -> HttpAnswer {
        let json = serde_json::from_str(&text).ok();
        HttpAnswer { status, text, json }
    }
}

/// A GraphQL-over-HTTP endpoint: POSTs `application/json` bodies
/// `{"query","operationName","variables"}`, sends `Authorization: Bearer <token>` when a
/// token is given, and `Accept: application/graphql-response+json, application/json`.
#[derive(Clone, Debug)]
pub struct GraphqlClient {
    endpoint: String,
    timeout: Duration,
    agent: ureq::Agent,
}

impl GraphqlClient {
    /// A client for `endpoint`: an `http://` URL with a host (or `https://`, when the
    /// crate's `tls` feature is on). The deadline is [`TIMEOUT_DEFAULT`].
    pub fn new(endpoint: &str) -> Result<GraphqlClient, EndpointError> {
        check_endpoint(endpoint)?;
        Ok(GraphqlClient {
            endpoint: endpoint.to_owned(),
            timeout: TIMEOUT_DEFAULT,
            agent: agent(TIMEOUT_DEFAULT),
        })
    }

    /// The same endpoint with a different whole-request deadline: from resolving the
    /// host to the last byte of the answer.
    pub fn with_timeout(self, timeout: Duration) -> GraphqlClient {
        assert!(!timeout.is_zero(), "a zero deadline fails every request");
        GraphqlClient {
            endpoint: self.endpoint,
            timeout,
            agent: agent(timeout),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs one JSON body; any HTTP status comes back as an answer (not an error).
    pub fn post_json(
        &self,
        token: Option<&str>,
        body: &Value,
    ) -> Result<HttpAnswer, TransportError> {
        // `Value`'s `Display` is its compact JSON and cannot fail.
        self.post_raw(token, "application/json", body.to_string().as_bytes())
    }

    /// POSTs raw bytes with the given content type (for malformed-request checks).
    pub fn post_raw(
        &self,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Result<HttpAnswer, TransportError> {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", content_type)
            .header("Accept", ACCEPT);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let failure = |error: ureq::Error| transport_error(&self.endpoint, self.timeout, error);
        let mut response = request.send(body).map_err(failure)?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(BODY_BYTES_MAX)
            .read_to_vec()
            .map_err(failure)?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        Ok(HttpAnswer::new(status, text))
    }
}

/// The agent every request of one client goes through (it pools connections).
fn agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        // A status is an answer: `envelope_from_answer` maps it, with its body.
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        // A 301/302 would turn the POST into a GET, and a 307/308 makes ureq refuse to
        // resend the body: a redirect is an answer the mapping reports instead.
        .max_redirects(0)
        .user_agent(concat!("sync-http/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

fn check_endpoint(endpoint: &str) -> Result<(), EndpointError> {
    let owned = || endpoint.to_owned();
    // Without a scheme the URL parser reads `host/path` as garbage; say what is missing.
    if !endpoint.is_empty() && !endpoint.contains("://") {
        return Err(EndpointError::MissingScheme { endpoint: owned() });
    }
    let uri: Uri = endpoint
        .parse()
        .map_err(
            |error: ureq::http::uri::InvalidUri| EndpointError::Malformed {
                endpoint: owned(),
                reason: error.to_string(),
            },
        )?;
    match uri.scheme_str() {
        None => return Err(EndpointError::MissingScheme { endpoint: owned() }),
        Some("http") => {}
        Some("https") if cfg!(feature = "tls") => {}
        Some("https") => return Err(EndpointError::HttpsWithoutTls { endpoint: owned() }),
        Some(scheme) => {
            return Err(EndpointError::UnsupportedScheme {
                endpoint: owned(),
                scheme: scheme.to_owned(),
            })
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(EndpointError::MissingHost { endpoint: owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Which endpoint URLs a client accepts.
    use super::*;

    fn check(endpoint: &str, expected: Result<(), &str>) {
        let actual = GraphqlClient::new(endpoint).map(|client| {
            assert_eq!(client.endpoint(), endpoint);
            assert_eq!(client.timeout(), TIMEOUT_DEFAULT);
        });
        match (actual, expected) {
            (Ok(()), Ok(())) => {}
            (Err(error), Err(kind)) => {
                let debug = format!("{error:?}");
                assert!(debug.starts_with(kind), "{endpoint:?}: {debug}");
                assert!(error.to_string().contains(endpoint), "{error}");
            }
            (actual, expected) => panic!("{endpoint:?}: {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn http_urls_with_a_host_are_endpoints() {
        check("http://127.0.0.1:8080/graphql", Ok(()));
        check("http://localhost/graphql", Ok(()));
        check("http://[::1]:9000/", Ok(()));
        check("http://example.com", Ok(()));
        check("HTTP://example.com/graphql", Ok(()));
    }

    #[test]
    fn other_text_is_an_endpoint_error() {
        check("", Err("Malformed"));
        check("http://exa mple.com/graphql", Err("Malformed"));
        check("localhost/graphql", Err("MissingScheme"));
        check("/graphql", Err("MissingScheme"));
        check("ftp://example.com/graphql", Err("UnsupportedScheme"));
        check("ws://example.com/graphql", Err("UnsupportedScheme"));
        check("http://", Err("Malformed"));
        check("http://:8080/graphql", Err("MissingHost"));
        check("http://user@/graphql", Err("Malformed"));
    }

    #[test]
    fn https_needs_the_tls_feature() {
        if cfg!(feature = "tls") {
            check("https://example.com/graphql", Ok(()));
        } else {
            check("https://example.com/graphql", Err("HttpsWithoutTls"));
        }
    }

    #[test]
    #[should_panic(expected = "zero deadline")]
    fn a_zero_timeout_is_a_bug() {
        let client = GraphqlClient::new("http://127.0.0.1/").unwrap();
        let _ = client.with_timeout(Duration::ZERO);
    }
}
