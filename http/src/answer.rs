//! How an HTTP exchange becomes what the engine's `Transport::send` returns.
//!
//! The engine understands three things: a GraphQL envelope (`data`, or `errors` whose
//! `extensions.code` is one of the contract's [`ErrorCode`]s), and a [`TransportError`]
//! (`Unreachable` or `Timeout`), which it treats as transient: it backs off and retries,
//! and the ops stay queued. The rules, in order:
//!
//! - **No answer.** Connection refused, a host that does not resolve, or any other I/O
//!   or protocol failure → `TransportError::unreachable`. The deadline passing →
//!   `TransportError::timeout`.
//! - **2xx** with a JSON object that has `data` or `errors` → that body, unchanged.
//! - **401, 403** → the body if it is a GraphQL envelope with `errors`; otherwise (an
//!   auth gateway's own page) `error_response(ErrorCode::Unauthorized, ..)`, so the
//!   engine waits for a new token as it does for the server's own refusal.
//! - **408, 429, 5xx** → the body if it is a GraphQL envelope whose first error (the one
//!   the engine reads) carries an `extensions.code`; otherwise
//!   `error_response(ErrorCode::ServerBusy, "HTTP 503 ...")`, which is transient.
//! - **Any other 4xx** → the body if it is a GraphQL envelope with `errors` (GraphQL over
//!   HTTP answers request errors with 400); otherwise `TransportError::unreachable`.
//! - **2xx** with a body that is not JSON, or JSON that is neither shape, and **any
//!   other status** (1xx, 3xx: redirects are not followed) → `TransportError::unreachable`.
//!
//! "A GraphQL envelope with `errors`" is a JSON object whose `errors` is a non-empty
//! array. Every message this module writes names the status and a short, truncated
//! snippet of the body. This module never sends anything and never decides anything
//! about sync: a code the server wrote reaches the engine as the server wrote it.

use crate::client::HttpAnswer;
use serde_json::Value;
use std::time::Duration;
use sync_engine::wire::{error_response, ErrorCode};
use sync_engine::TransportError;

/// How many characters of a body a message quotes.
const SNIPPET_CHARS_MAX: usize = 160;

/// How an HTTP answer becomes what the engine's `Transport::send` returns (the rules are
/// the [module's](self)).
pub fn envelope_from_answer(answer: HttpAnswer) -> Result<Value, TransportError> {
    let HttpAnswer { status, text, json } = answer;
    let shape = Shape::of(json.as_ref());
    let described = || describe(status, &text);
    match status {
        200..=299 => match shape {
            Shape::Envelope { .. } => Ok(json.expect("an envelope is JSON")),
            Shape::OtherJson => Err(TransportError::unreachable(&format!(
                "endpoint answered {}, JSON that is neither a GraphQL `data` nor `errors` \
                 envelope",
                described()
            ))),
            Shape::NotJson => Err(TransportError::unreachable(&format!(
                "endpoint answered {}, a body that is not JSON",
                described()
            ))),
        },
        401 | 403 => match shape {
            Shape::Envelope { errors: true, .. } => Ok(json.expect("an envelope is JSON")),
            _ => Ok(error_response(ErrorCode::Unauthorized, &described())),
        },
        408 | 429 | 500..=599 => match shape {
            Shape::Envelope {
                first_error_coded: true,
                ..
            } => Ok(json.expect("an envelope is JSON")),
            _ => Ok(error_response(ErrorCode::ServerBusy, &described())),
        },
        400..=499 => match shape {
            Shape::Envelope { errors: true, .. } => Ok(json.expect("an envelope is JSON")),
            // Not a GraphQL answer: a wrong URL (404), a wrong method (405), a proxy's or
            // load balancer's HTML page. It says nothing about the ops, so it must not
            // fail them for good: a permanent failure would drop the user's writes over a
            // misconfiguration that fixing the URL cures. As `Unreachable` the ops stay
            // queued, the engine backs off, and the app shows the server as unreachable,
            // with this message saying why.
            _ => Err(TransportError::unreachable(&format!(
                "endpoint answered {}; is the URL a GraphQL endpoint?",
                described()
            ))),
        },
        _ => Err(TransportError::unreachable(&format!(
            "endpoint answered {}; redirects are not followed",
            described()
        ))),
    }
}

/// What a body is, as far as the rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// A JSON object with `data` or `errors`.
    Envelope {
        /// `errors` is a non-empty array.
        errors: bool,
        /// The first error has an `extensions.code`.
        first_error_coded: bool,
    },
    OtherJson,
    NotJson,
}

impl Shape {
    fn of(json: Option<&Value>) -> Shape {
        let Some(json) = json else {
            return Shape::NotJson;
        };
        let Some(object) = json.as_object() else {
            return Shape::OtherJson;
        };
        if !object.contains_key("data") && !object.contains_key("errors") {
            return Shape::OtherJson;
        }
        let first_error = object
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|errors| errors.first());
        let first_error_coded = first_error
            .and_then(|error| error.get("extensions"))
            .and_then(|extensions| extensions.get("code"))
            .is_some_and(|code| !code.is_null());
        if first_error_coded {
            assert!(first_error.is_some());
        }
        Shape::Envelope {
            errors: first_error.is_some(),
            first_error_coded,
        }
    }
}

/// `HTTP 404 Not Found: <snippet>`.
fn describe(status: u16, text: &str) -> String {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .map(|reason| format!(" {reason}"))
        .unwrap_or_default();
    format!("HTTP {status}{reason}: {}", snippet(text))
}

/// The body on one line, whitespace runs as one space, cut at [`SNIPPET_CHARS_MAX`].
fn snippet(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return "(empty body)".to_owned();
    }
    let line = words.join(" ");
    let mut chars = line.chars();
    let mut cut: String = chars.by_ref().take(SNIPPET_CHARS_MAX).collect();
    if chars.next().is_some() {
        cut.push('…');
    }
    cut
}

/// The failure to get an answer from `endpoint` within `timeout`, as the engine sees it.
pub(crate) fn transport_error(
    endpoint: &str,
    timeout: Duration,
    error: ureq::Error,
) -> TransportError {
    let deadline = || {
        TransportError::timeout(&format!(
            "no answer from {endpoint} within {} ms",
            timeout.as_millis()
        ))
    };
    match error {
        ureq::Error::Timeout(_) => deadline(),
        ureq::Error::Io(ref io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            deadline()
        }
        ureq::Error::HostNotFound => {
            TransportError::unreachable(&format!("{endpoint}: host not found"))
        }
        ureq::Error::BodyExceedsLimit(limit) => {
            TransportError::unreachable(&format!("{endpoint}: answer larger than {limit} bytes"))
        }
        error => TransportError::unreachable(&format!("{endpoint}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    //! Each rule of the module doc, one table row per case; `check` is the only caller
    //! of `envelope_from_answer`.
    use super::*;
    use sync_engine::TransportErrorKind;

    #[derive(Debug)]
    enum Expected {
        /// The body, unchanged.
        Body,
        /// An error envelope with this code; its message contains these.
        Code(ErrorCode, &'static [&'static str]),
        /// `Unreachable`; its message contains these.
        Unreachable(&'static [&'static str]),
    }

    fn check(status: u16, body: &str, expected: Expected) {
        let answer = HttpAnswer::new(status, body.to_owned());
        let actual = envelope_from_answer(answer.clone());
        match (&expected, actual) {
            (Expected::Body, Ok(envelope)) => {
                assert_eq!(Some(envelope), answer.json, "{status} {body}");
            }
            (Expected::Code(code, needles), Ok(envelope)) => {
                let message = envelope["errors"][0]["message"].as_str().unwrap();
                assert_eq!(envelope, error_response(*code, message), "{status} {body}");
                for needle in *needles {
                    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
                }
            }
            (Expected::Unreachable(needles), Err(error)) => {
                assert_eq!(
                    error.kind,
                    TransportErrorKind::Unreachable,
                    "{status} {body}"
                );
                for needle in *needles {
                    assert!(
                        error.message.contains(needle),
                        "{:?} lacks {needle:?}",
                        error.message
                    );
                }
            }
            (expected, actual) => panic!("{status} {body}: {actual:?}, expected {expected:?}"),
        }
    }

    const DATA: &str = r#"{"data":{"syncPullSpace":{"items":[]}}}"#;
    const CODED: &str = r#"{"errors":[{"message":"no","extensions":{"code":"VALIDATION"}}]}"#;
    const UNCODED: &str = r#"{"errors":[{"message":"boom"}]}"#;
    const HTML: &str = "<html>\n  <body>Not   Found</body>\n</html>";

    #[test]
    fn success_with_an_envelope_passes_through() {
        check(200, DATA, Expected::Body);
        check(200, CODED, Expected::Body);
        check(200, UNCODED, Expected::Body);
        check(200, r#"{"data":null,"errors":[]}"#, Expected::Body);
        check(204, r#"{"data":{}}"#, Expected::Body);
    }

    #[test]
    fn success_without_an_envelope_is_unreachable() {
        check(
            200,
            HTML,
            Expected::Unreachable(&["HTTP 200 OK", "not JSON", "<html>"]),
        );
        check(
            200,
            "",
            Expected::Unreachable(&["not JSON", "(empty body)"]),
        );
        check(200, "[1,2]", Expected::Unreachable(&["neither", "[1,2]"]));
        check(200, r#"{"result":1}"#, Expected::Unreachable(&["neither"]));
        check(200, "\"data\"", Expected::Unreachable(&["neither"]));
    }

    #[test]
    fn unauthorized_is_the_servers_envelope_or_the_contract_code() {
        check(401, CODED, Expected::Body);
        check(403, UNCODED, Expected::Body);
        let auth_page = Expected::Code(ErrorCode::Unauthorized, &["HTTP 401 Unauthorized", "go"]);
        check(401, "go away", auth_page);
        check(
            403,
            r#"{"errors":[]}"#,
            Expected::Code(ErrorCode::Unauthorized, &["HTTP 403 Forbidden"]),
        );
        check(403, DATA, Expected::Code(ErrorCode::Unauthorized, &["403"]));
    }

    #[test]
    fn overload_is_the_servers_coded_envelope_or_server_busy() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            check(status, CODED, Expected::Body);
            check(
                status,
                UNCODED,
                Expected::Code(ErrorCode::ServerBusy, &["boom"]),
            );
            check(
                status,
                HTML,
                Expected::Code(ErrorCode::ServerBusy, &["HTTP"]),
            );
            check(
                status,
                "",
                Expected::Code(ErrorCode::ServerBusy, &["(empty body)"]),
            );
        }
        check(
            503,
            "busy",
            Expected::Code(
                ErrorCode::ServerBusy,
                &["HTTP 503 Service Unavailable: busy"],
            ),
        );
        check(
            429,
            r#"{"errors":[{"message":"slow","extensions":{"code":null}}]}"#,
            Expected::Code(ErrorCode::ServerBusy, &["429 Too Many Requests"]),
        );
        assert!(ErrorCode::ServerBusy.is_transient());
    }

    #[test]
    fn other_client_errors_pass_an_envelope_and_are_unreachable_otherwise() {
        check(400, CODED, Expected::Body);
        check(422, UNCODED, Expected::Body);
        check(
            404,
            HTML,
            Expected::Unreachable(&["HTTP 404 Not Found", "<html> <body>Not Found"]),
        );
        check(
            405,
            "",
            Expected::Unreachable(&["HTTP 405 Method Not Allowed", "(empty body)"]),
        );
        check(404, r#"{"errors":[]}"#, Expected::Unreachable(&["404"]));
        check(410, DATA, Expected::Unreachable(&["410 Gone"]));
    }

    #[test]
    fn other_statuses_are_unreachable() {
        check(
            301,
            "",
            Expected::Unreachable(&["HTTP 301 Moved Permanently"]),
        );
        check(
            308,
            DATA,
            Expected::Unreachable(&["308", "redirects are not followed"]),
        );
        check(100, DATA, Expected::Unreachable(&["100"]));
        check(600, CODED, Expected::Unreachable(&["HTTP 600:"]));
    }

    #[test]
    fn snippets_are_one_short_line() {
        let long = format!("{{\"text\": \"{}\"}}\n\n", "x".repeat(1000));
        let error = envelope_from_answer(HttpAnswer::new(404, long)).unwrap_err();
        assert!(error.message.contains("x…;"), "{}", error.message);
        assert!(error.message.chars().count() < SNIPPET_CHARS_MAX + 80);
        assert!(!error.message.contains('\n'));
        assert_eq!(snippet(" a\n\tb  "), "a b");
        assert_eq!(
            snippet(&"é".repeat(SNIPPET_CHARS_MAX)),
            "é".repeat(SNIPPET_CHARS_MAX)
        );
        assert_eq!(snippet(" \n"), "(empty body)");
    }

    #[test]
    fn failures_to_get_an_answer_are_unreachable_or_timeout() {
        let endpoint = "http://127.0.0.1:9/graphql";
        let timeout = Duration::from_millis(300);
        let map = |error| transport_error(endpoint, timeout, error);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases = [
            (
                ureq::Error::Io(refused),
                TransportErrorKind::Unreachable,
                "refused",
            ),
            (
                ureq::Error::HostNotFound,
                TransportErrorKind::Unreachable,
                "host not found",
            ),
            (
                ureq::Error::ConnectionFailed,
                TransportErrorKind::Unreachable,
                endpoint,
            ),
            (
                ureq::Error::BodyExceedsLimit(10),
                TransportErrorKind::Unreachable,
                "10 bytes",
            ),
            (
                ureq::Error::Timeout(ureq::Timeout::Global),
                TransportErrorKind::Timeout,
                "within 300 ms",
            ),
            (
                ureq::Error::Io(std::io::ErrorKind::TimedOut.into()),
                TransportErrorKind::Timeout,
                "within 300 ms",
            ),
        ];
        for (error, kind, needle) in cases {
            let debug = format!("{error:?}");
            let mapped = map(error);
            assert_eq!(mapped.kind, kind, "{debug}");
            assert!(
                mapped.message.contains(needle),
                "{debug}: {}",
                mapped.message
            );
            assert!(mapped.message.contains(endpoint), "{}", mapped.message);
        }
    }
}
