//! `syncsim conformance`: the contract's promises, checked against any server that claims
//! to implement `engine/schema.graphql` over GraphQL on HTTP.
//!
//! This module owns the session a run keeps (the endpoint, two tenants' tokens, fresh
//! client ids and stamps) and the report; [`checks`] holds the checks themselves. Each
//! check writes only records of its own (client ids carry the run's tag), so a run may
//! target a server that already holds data, and two runs never see each other's records.
//! Every check decides on one exchange, a request and its answer, which the report
//! keeps. It never trusts the server under test: any answer, however malformed, ends in
//! a pass or a fail, never a panic.

mod checks;

use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;
use sync_http::{document_for, GraphqlClient, HttpAnswer};

pub use checks::CHECK_NAMES;

/// One tenant the run acts for, and its bearer token.
#[derive(Clone, Debug)]
pub struct TenantLogin {
    pub tenant_id: String,
    pub token: String,
}

/// What to check, and where.
#[derive(Clone, Debug)]
pub struct ConformanceConfig {
    pub endpoint: String,
    /// The tenant every check writes to.
    pub tenant_a: TenantLogin,
    /// A second tenant, which must never see or change tenant A's data.
    pub tenant_b: TenantLogin,
    /// The deadline of each request.
    pub timeout: Duration,
    /// Starts every client id the run writes, so runs never collide (e.g. `conf-…`).
    pub run_tag: String,
    /// The HLC wall-clock milliseconds the run's stamps start from (the server bounds how
    /// far ahead of its clock a stamp may be, so this should be about now).
    pub stamp_base_ms: u64,
}

/// A request and the answer that decided a check.
#[derive(Clone, Debug, Serialize)]
pub struct Exchange {
    /// The JSON body sent (or, for a raw request, its text as a JSON string).
    pub request: Value,
    pub status: u16,
    /// The answer's body: JSON when it is JSON, else its text.
    pub answer: Value,
}

/// The outcome of one check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub name: &'static str,
    pub passed: bool,
    /// What held, or what was wrong.
    pub summary: String,
    /// The exchange that decided it (absent when the server could not be reached).
    pub deciding: Option<Exchange>,
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
pub struct ConformanceReport {
    pub endpoint: String,
    pub checks: Vec<CheckReport>,
    pub passed: usize,
    pub failed: usize,
}

impl ConformanceReport {
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }

    /// The report as text: one line per check, with its deciding request and answer
    /// (cut to `body_chars_max` characters each).
    pub fn render(&self, body_chars_max: usize) -> String {
        let mut text = format!("conformance of {}\n", self.endpoint);
        for check in &self.checks {
            let verdict = if check.passed { "pass" } else { "FAIL" };
            text.push_str(&format!(
                "{verdict}  {:<36} {}\n",
                check.name, check.summary
            ));
            if let Some(exchange) = &check.deciding {
                text.push_str(&format!(
                    "      request: {}\n      answer (HTTP {}): {}\n",
                    cut(&request_line(&exchange.request), body_chars_max),
                    exchange.status,
                    cut(&exchange.answer.to_string(), body_chars_max)
                ));
            }
        }
        text.push_str(&format!("{} passed, {} failed\n", self.passed, self.failed));
        text
    }
}

/// A GraphQL request as its operation and variables (the document follows from the
/// operation); anything else as it was sent.
fn request_line(request: &Value) -> String {
    match (request.get("operationName"), request.get("variables")) {
        (Some(Value::String(operation)), Some(variables)) => format!("{operation} {variables}"),
        _ => request.to_string(),
    }
}

fn cut(text: &str, chars_max: usize) -> String {
    match text.char_indices().nth(chars_max) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("not an endpoint this client can reach: {0}")]
    Endpoint(#[from] sync_http::EndpointError),
}

/// Runs every check, in order, against the configured endpoint.
pub fn run(config: &ConformanceConfig) -> Result<ConformanceReport, ConformanceError> {
    let client = GraphqlClient::new(&config.endpoint)?.with_timeout(config.timeout);
    let mut session = Session {
        client,
        config: config.clone(),
        next: 0,
        last: None,
    };
    let mut reports = Vec::new();
    for (name, check) in checks::CHECKS {
        session.last = None;
        let (passed, summary) = match check(&mut session) {
            Ok(summary) => (true, summary),
            Err(Failed(summary)) => (false, summary),
        };
        reports.push(CheckReport {
            name,
            passed,
            summary,
            deciding: session.last.take(),
        });
    }
    let passed = reports.iter().filter(|report| report.passed).count();
    Ok(ConformanceReport {
        endpoint: config.endpoint.clone(),
        failed: reports.len() - passed,
        passed,
        checks: reports,
    })
}

/// Why a check failed; the session's last exchange is the evidence.
#[derive(Debug)]
struct Failed(String);

type CheckResult = Result<String, Failed>;

/// Fails the check with `message` unless `condition` holds.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(Failed(message()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    A,
    B,
}

/// The pages of one pull, from a cursor to the end.
#[derive(Debug, Default)]
struct Pulled {
    /// Live items in the order they came.
    items: Vec<Value>,
    deleted_ids: Vec<String>,
    /// `lastSyncAt` of the last page.
    cursor: Option<String>,
    /// `versionHash` of the last page.
    version_hash: Option<String>,
    /// The number of items of each page.
    page_sizes: Vec<usize>,
}

impl Pulled {
    /// The items whose `clientId` is `client_id`.
    fn with_client_id(&self, client_id: &str) -> Vec<&Value> {
        self.items
            .iter()
            .filter(|item| item["clientId"] == client_id)
            .collect()
    }
}

/// The checks' view of the server: requests with the run's tenants, fresh ids and stamps,
/// and the last exchange kept as evidence.
struct Session {
    client: GraphqlClient,
    config: ConformanceConfig,
    next: u64,
    last: Option<Exchange>,
}

/// The pages one pull may take before the check gives up on the server.
const PAGES_MAX: usize = 10_000;

impl Session {
    fn login(&self, who: Who) -> &TenantLogin {
        match who {
            Who::A => &self.config.tenant_a,
            Who::B => &self.config.tenant_b,
        }
    }

    /// A fresh client id (or op id) of this run.
    fn fresh(&mut self, what: &str) -> String {
        self.next += 1;
        format!("{}-{what}-{}", self.config.run_tag, self.next)
    }

    /// A fresh stamp: the run's base milliseconds plus `offset_ms`, with a fresh counter.
    fn stamp(&mut self, offset_ms: u64) -> u64 {
        self.next += 1;
        ((self.config.stamp_base_ms + offset_ms) << 16) | (self.next & 0xffff)
    }

    /// The space every record of the run lives in.
    fn space_id(&self) -> String {
        self.config.run_tag.clone()
    }

    fn insert(&mut self, client_id: &str, data: Value, stamp: u64) -> Value {
        let op_id = self.fresh("op");
        json!({
            "clientId": client_id, "id": null, "operation": "insert", "data": data,
            "opId": op_id, "baseVersion": null, "spaceId": self.space_id(), "updatedAt": stamp,
        })
    }

    fn write(&mut self, operation: &str, id: &str, base: i64, data: Value, stamp: u64) -> Value {
        let op_id = self.fresh("op");
        json!({
            "clientId": null, "id": id, "operation": operation, "data": data,
            "opId": op_id, "baseVersion": base, "spaceId": self.space_id(), "updatedAt": stamp,
        })
    }

    /// Sends one GraphQL request as `who`; keeps it as the last exchange.
    fn send(&mut self, who: Who, operation_name: &str, variables: Value) -> Result<Value, Failed> {
        let document = document_for(operation_name).expect("the checks name contract operations");
        let body =
            json!({ "query": document, "operationName": operation_name, "variables": variables });
        let token = self.login(who).token.clone();
        let answer = self
            .client
            .post_json(Some(&token), &body)
            .map_err(|error| Failed(format!("{operation_name}: no answer: {}", error.message)))?;
        self.keep(body, &answer);
        answer
            .json
            .ok_or_else(|| Failed(format!("{operation_name}: the answer is not JSON")))
    }

    /// Sends raw bytes as `who`; keeps the exchange.
    fn send_raw(&mut self, who: Who, content_type: &str, body: &str) -> Result<HttpAnswer, Failed> {
        let token = self.login(who).token.clone();
        let answer = self
            .client
            .post_raw(Some(&token), content_type, body.as_bytes())
            .map_err(|error| Failed(format!("no answer: {}", error.message)))?;
        self.keep(Value::String(body.to_owned()), &answer);
        Ok(answer)
    }

    fn keep(&mut self, request: Value, answer: &HttpAnswer) {
        self.last = Some(Exchange {
            request,
            status: answer.status,
            answer: answer
                .json
                .clone()
                .unwrap_or_else(|| Value::String(answer.text.clone())),
        });
    }

    /// Pushes `items` to the `Space` entity as `who`, for `who`'s own tenant.
    fn push(&mut self, who: Who, items: Vec<Value>) -> Result<Value, Failed> {
        let tenant_id = self.login(who).tenant_id.clone();
        self.push_for(who, &tenant_id, items)
    }

    /// Pushes as `who`, naming `tenant_id` in the variables.
    fn push_for(&mut self, who: Who, tenant_id: &str, items: Vec<Value>) -> Result<Value, Failed> {
        let variables = json!({ "payload": items, "tenantId": tenant_id });
        self.send(who, "syncPushSpace", variables)
    }

    /// The push's results, which must be one per item.
    fn push_results(&mut self, who: Who, items: Vec<Value>) -> Result<Vec<Value>, Failed> {
        let count = items.len();
        let answer = self.push(who, items)?;
        let results = data_of(&answer, "syncPushSpace")?["results"]
            .as_array()
            .cloned()
            .ok_or_else(|| Failed("the push answer has no results list".to_owned()))?;
        ensure(results.len() == count, || {
            format!("{count} items pushed, {} results answered", results.len())
        })?;
        Ok(results)
    }

    /// One push of one item that must succeed; returns its result.
    fn push_one_ok(&mut self, item: Value) -> Result<Value, Failed> {
        let result = self.push_results(Who::A, vec![item])?.remove(0);
        ensure(result["success"] == true, || {
            format!("a valid write was refused: {result}")
        })?;
        Ok(result)
    }

    /// Every page of tenant `tenant_id`'s `Space` rows after `cursor`, as `who`.
    fn pull_for(
        &mut self,
        who: Who,
        tenant_id: &str,
        cursor: Option<String>,
        limit: i64,
    ) -> Result<Pulled, Failed> {
        let mut pulled = Pulled {
            cursor: cursor.clone(),
            ..Pulled::default()
        };
        for _ in 0..PAGES_MAX {
            let variables =
                json!({ "lastSyncAt": pulled.cursor, "tenantId": tenant_id, "limit": limit });
            let answer = self.send(who, "syncPullSpace", variables)?;
            let page = data_of(&answer, "syncPullSpace")?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            pulled.page_sizes.push(items.len());
            pulled.items.extend(items);
            pulled.deleted_ids.extend(
                page["deletedIds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned),
            );
            let next = page["lastSyncAt"].as_str().map(str::to_owned);
            let has_more = page["hasMore"] == true;
            if has_more && next == pulled.cursor {
                return Err(Failed(
                    "a page with hasMore: true repeats the request's cursor".to_owned(),
                ));
            }
            pulled.cursor = next;
            if !has_more {
                pulled.version_hash = page["versionHash"].as_str().map(str::to_owned);
                return Ok(pulled);
            }
        }
        Err(Failed(format!(
            "the pull did not end within {PAGES_MAX} pages"
        )))
    }

    /// Every page of tenant A's rows after `cursor`.
    fn pull(&mut self, cursor: Option<String>) -> Result<Pulled, Failed> {
        let tenant_id = self.config.tenant_a.tenant_id.clone();
        self.pull_for(Who::A, &tenant_id, cursor, 1000)
    }

    /// Tenant A's cursor now: where a device that pulled everything stands.
    fn cursor_now(&mut self) -> Result<Option<String>, Failed> {
        Ok(self.pull(None)?.cursor)
    }
}

/// `data.{field}` of a GraphQL answer, or a failure quoting its first error.
fn data_of<'a>(answer: &'a Value, field: &str) -> Result<&'a Value, Failed> {
    if let Some(error) = answer["errors"]
        .as_array()
        .and_then(|errors| errors.first())
    {
        return Err(Failed(format!("{field} answered an error: {error}")));
    }
    match answer.get("data").and_then(|data| data.get(field)) {
        Some(payload) if payload.is_object() => Ok(payload),
        _ => Err(Failed(format!("the answer has no data.{field}"))),
    }
}

/// The `extensions.code` of an answer's first error, if it has errors.
fn error_code(answer: &Value) -> Option<String> {
    let first = answer["errors"].as_array()?.first()?;
    Some(
        first["extensions"]["code"]
            .as_str()
            .unwrap_or("(no code)")
            .to_owned(),
    )
}
