//! The transport against a real socket: what it sends, and how each kind of answer (or
//! no answer) reaches the engine. The fake server (`fake_server/`) records what it got;
//! every test stops by itself within a few seconds at most.

mod fake_server;

use fake_server::{FakeServer, Reply};
use serde_json::{json, Value};
use std::time::Duration;
use sync_engine::wire::{error_response, ErrorCode, SyncRequest};
use sync_engine::{Transport, TransportError, TransportErrorKind};
use sync_http::{document_for, EndpointError, GraphqlClient, HttpAnswer, HttpTransport};

const ACCEPT: &str = "application/graphql-response+json, application/json";

fn push_request(token: &str) -> SyncRequest {
    SyncRequest {
        request_id: 3,
        operation_name: "syncPushSpace".into(),
        tenant_id: "acme".into(),
        token: token.into(),
        variables: json!({
            "payload": [{
                "clientId": "c1", "id": null, "operation": "insert",
                "data": {"title": "milk"}, "opId": "op-1", "baseVersion": null,
                "force": false, "spaceId": "s1", "updatedAt": 1_700_000_000_000_u64,
            }],
            "tenantId": "acme",
        })
        .into(),
    }
}

fn transport_to(server: &FakeServer) -> HttpTransport {
    let client = GraphqlClient::new(&server.url()).expect("a loopback endpoint");
    HttpTransport::new(client.with_timeout(Duration::from_secs(5)))
}

/// Sends `push_request` to a server answering `reply`; returns what the engine gets.
fn exchange(reply: Reply) -> Result<Value, TransportError> {
    let server = FakeServer::answering(reply);
    let result = transport_to(&server).send(&push_request("token-acme"));
    server.only_request();
    result
}

// Proves the request is GraphQL over HTTP as the server expects it: a POST to the
// endpoint's path, JSON with the document, operation name and the engine's variables,
// the bearer token, and the Accept header; and that a data envelope reaches the engine
// unchanged.
#[test]
fn the_transport_posts_the_graphql_request() {
    let envelope = json!({"data": {"syncPushSpace": {"results": [], "cursorBefore": null, "cursorAfter": null}}});
    let server = FakeServer::answering(Reply::new(
        200,
        "application/graphql-response+json",
        &envelope.to_string(),
    ));
    let request = push_request("token-acme");
    let mut transport = transport_to(&server);
    assert_eq!(transport.client().endpoint(), server.url());

    let response = transport.send(&request);
    let recorded = server.only_request();

    assert_eq!(response, Ok(envelope));
    assert_eq!(recorded.request_line, "POST /graphql HTTP/1.1");
    assert_eq!(recorded.header("content-type"), Some("application/json"));
    assert_eq!(recorded.header("accept"), Some(ACCEPT));
    assert_eq!(recorded.header("authorization"), Some("Bearer token-acme"));
    let body = recorded.json();
    assert_eq!(
        body,
        json!({
            "query": document_for("syncPushSpace").unwrap(),
            "operationName": "syncPushSpace",
            "variables": request.variables.to_json(),
        })
    );
}

// Proves no Authorization header goes out without a token: the engine's empty token (it
// has none stored) and the client's `None`.
#[test]
fn no_token_sends_no_authorization_header() {
    let envelope = json!({"data": {"syncPushSpace": {"results": []}}});
    let server = FakeServer::answering(Reply::json(200, &envelope));
    assert_eq!(transport_to(&server).send(&push_request("")), Ok(envelope));
    let recorded = server.only_request();
    assert_eq!(recorded.header("authorization"), None);
    assert_eq!(recorded.header("content-type"), Some("application/json"));

    let server = FakeServer::answering(Reply::new(200, "text/plain", "ok"));
    let client = GraphqlClient::new(&server.url()).unwrap();
    let answer = client.post_json(None, &json!({"query": "{ x }"}));
    let recorded = server.only_request();
    assert_eq!(
        answer,
        Ok(HttpAnswer {
            status: 200,
            text: "ok".into(),
            json: None
        })
    );
    assert_eq!(recorded.header("authorization"), None);
    assert_eq!(recorded.json(), json!({"query": "{ x }"}));
}

// Proves `post_raw` sends the bytes and the content type as given (for the conformance
// tool's malformed requests), and that an error status is an answer, with its body
// parsed when it is JSON.
#[test]
fn post_raw_sends_bytes_as_given_and_any_status_is_an_answer() {
    let refusal = error_response(ErrorCode::Validation, "not JSON");
    let server = FakeServer::answering(Reply::json(400, &refusal));
    let client = GraphqlClient::new(&server.url()).unwrap();
    let answer = client
        .post_raw(Some("t0k"), "text/plain; charset=utf-8", b"{not json")
        .expect("an answer");
    let recorded = server.only_request();
    assert_eq!(recorded.body, b"{not json");
    assert_eq!(
        recorded.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(recorded.header("authorization"), Some("Bearer t0k"));
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json, Some(refusal));
    assert_eq!(answer.text, answer.json.as_ref().unwrap().to_string());

    let server = FakeServer::answering(Reply::new(500, "text/html", "<h1>oops</h1>"));
    let client = GraphqlClient::new(&server.url()).unwrap();
    let answer = client.post_raw(None, "application/json", b"{}");
    server.only_request();
    assert_eq!(
        answer,
        Ok(HttpAnswer {
            status: 500,
            text: "<h1>oops</h1>".into(),
            json: None
        })
    );
}

/// What the engine should get for one canned answer.
enum Expected {
    /// The server's body, unchanged.
    Body,
    /// A contract error envelope with this code.
    Code(ErrorCode),
    /// `Unreachable`, its message containing this.
    Unreachable(&'static str),
}

fn check(reply: Reply, expected: Expected) {
    let body = match &reply {
        Reply::Answer { body, .. } => serde_json::from_slice::<Value>(body).ok(),
        Reply::Silent => None,
    };
    let actual = exchange(reply);
    match (expected, actual) {
        (Expected::Body, Ok(envelope)) => assert_eq!(Some(envelope), body),
        (Expected::Code(code), Ok(envelope)) => {
            let message = envelope["errors"][0]["message"].as_str().unwrap();
            assert_eq!(envelope, error_response(code, message));
        }
        (Expected::Unreachable(needle), Err(error)) => {
            assert_eq!(error.kind, TransportErrorKind::Unreachable, "{error:?}");
            assert!(error.message.contains(needle), "{error:?} lacks {needle:?}");
        }
        (_, actual) => panic!("unexpected {actual:?}"),
    }
}

// Proves each mapping rule of `sync_http::answer` holds for answers read off the wire
// (the rules' edge cases are unit tests beside them).
#[test]
fn each_kind_of_answer_reaches_the_engine_as_the_rules_say() {
    let data = json!({"data": {"syncPushSpace": {"results": []}}});
    let coded = error_response(ErrorCode::Validation, "too big");
    let busy = error_response(ErrorCode::ServerBusy, "later");
    let uncoded = json!({"errors": [{"message": "internal"}]});
    let html = "<html><body>Not Found</body></html>";

    check(Reply::json(200, &data), Expected::Body);
    check(Reply::json(200, &coded), Expected::Body);
    check(
        Reply::new(200, "text/html", html),
        Expected::Unreachable("not JSON"),
    );
    check(
        Reply::json(200, &json!([1])),
        Expected::Unreachable("neither"),
    );

    check(Reply::json(401, &coded), Expected::Body);
    check(
        Reply::new(401, "text/plain", "log in"),
        Expected::Code(ErrorCode::Unauthorized),
    );
    check(
        Reply::new(403, "", ""),
        Expected::Code(ErrorCode::Unauthorized),
    );

    check(Reply::json(503, &busy), Expected::Body);
    check(
        Reply::json(500, &uncoded),
        Expected::Code(ErrorCode::ServerBusy),
    );
    check(
        Reply::new(502, "text/html", "<h1>Bad Gateway</h1>"),
        Expected::Code(ErrorCode::ServerBusy),
    );
    check(
        Reply::new(429, "", ""),
        Expected::Code(ErrorCode::ServerBusy),
    );
    check(
        Reply::new(408, "", ""),
        Expected::Code(ErrorCode::ServerBusy),
    );

    check(Reply::json(400, &coded), Expected::Body);
    check(
        Reply::new(404, "text/html", html),
        Expected::Unreachable("HTTP 404 Not Found: <html><body>Not Found"),
    );
    check(Reply::new(405, "", ""), Expected::Unreachable("HTTP 405"));
}

// Proves a redirect is reported, not followed: a followed 302 would resend the push as
// a GET, and the fake server (one connection) records exactly one request.
#[test]
fn a_redirect_is_not_followed() {
    let reply = Reply::Answer {
        status: 302,
        headers: vec!["Location: /elsewhere".into()],
        body: Vec::new(),
    };
    let server = FakeServer::answering(reply);
    let result = transport_to(&server).send(&push_request("token-acme"));
    let recorded = server.stop();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let error = result.unwrap_err();
    assert_eq!(error.kind, TransportErrorKind::Unreachable);
    assert!(error.message.contains("HTTP 302 Found"), "{error:?}");
}

// Proves a server that takes the request and never answers costs the engine one
// deadline, not a hang: `Timeout` (transient), no sooner than the deadline, and well
// within a second of it.
#[test]
fn a_server_that_never_answers_times_out_at_the_deadline() {
    let server = FakeServer::silent();
    let deadline = Duration::from_millis(300);
    let client = GraphqlClient::new(&server.url())
        .unwrap()
        .with_timeout(deadline);
    let mut transport = HttpTransport::new(client);

    // Measuring the deadline needs the wall clock; the determinism ban is for the
    // engine and the simulator, and this test times the transport's real deadline.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let result = transport.send(&push_request("token-acme"));
    let elapsed = started.elapsed();
    let recorded = server.only_request();

    let error = result.unwrap_err();
    assert_eq!(error.kind, TransportErrorKind::Timeout, "{error:?}");
    assert!(error.message.contains("300 ms"), "{error:?}");
    assert!(error.message.contains(transport.client().endpoint()));
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < deadline + Duration::from_secs(1), "{elapsed:?}");
    assert_eq!(recorded.header("authorization"), Some("Bearer token-acme"));
}

// Proves a port nobody listens on is `Unreachable` (transient), named in the message.
#[test]
fn a_closed_port_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/graphql", listener.local_addr().unwrap());
    drop(listener);
    let client = GraphqlClient::new(&endpoint)
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    let error = HttpTransport::new(client)
        .send(&push_request("token-acme"))
        .unwrap_err();
    assert_eq!(error.kind, TransportErrorKind::Unreachable, "{error:?}");
    assert!(error.message.contains(&endpoint), "{error:?}");
}

// Proves a bad endpoint is refused when the client is made, with a typed error.
#[test]
fn a_bad_endpoint_is_an_endpoint_error() {
    assert!(matches!(
        GraphqlClient::new("localhost:8080/graphql"),
        Err(EndpointError::MissingScheme { .. })
    ));
    assert!(matches!(
        GraphqlClient::new("gopher://localhost/graphql"),
        Err(EndpointError::UnsupportedScheme { scheme, .. }) if scheme == "gopher"
    ));
    assert!(matches!(
        GraphqlClient::new("http://:80/graphql"),
        Err(EndpointError::MissingHost { .. })
    ));
    assert!(matches!(
        GraphqlClient::new("http://local host/graphql"),
        Err(EndpointError::Malformed { .. })
    ));
    let https = GraphqlClient::new("https://sync.example.com/graphql");
    if cfg!(feature = "tls") {
        assert!(https.is_ok());
    } else {
        assert!(matches!(https, Err(EndpointError::HttpsWithoutTls { .. })));
    }
}

// Proves an operation the crate has no document for is a bug, stopped before anything
// is sent (no server exists here to send it to).
#[test]
#[should_panic(expected = "no GraphQL document for operation \"syncCheckSpace\"")]
fn an_operation_without_a_document_is_a_bug() {
    let client = GraphqlClient::new("http://127.0.0.1:9/graphql").unwrap();
    let request = SyncRequest {
        operation_name: "syncCheckSpace".into(),
        ..push_request("token-acme")
    };
    let _ = HttpTransport::new(client).send(&request);
}
