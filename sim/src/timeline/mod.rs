//! The timeline of one run as a single self-contained HTML page (`syncsim replay SEED
//! --html FILE`): a lane per device and one for the server along virtual time, requests
//! and answers as arrows marked with their fate, kills, restarts, partitions, offline
//! periods and clock jumps as marks, every device's state line, and the failure with the
//! records it names highlighted and one click away from the events that touched them.
//!
//! This module owns the page's data (built from a report's structured event log) and its
//! embedding into the template `timeline.html` (inline CSS and JS). The page must never
//! load anything: no network, no external script, style or font, so it opens from a
//! file anywhere, a CI artifact included. It reads a finished report and never runs or
//! changes a simulation.

use crate::kernel::event_log::{record_ids_in, EventKind, LoggedEvent};
use crate::signature::Signature;
use crate::world::SeedReport;
use serde::Serialize;
use std::collections::BTreeMap;

/// The page: CSS, the renderer's JS, and the place the data goes.
const TEMPLATE: &str = include_str!("timeline.html");
/// Where the template takes the run's JSON.
const DATA_SLOT: &str = "__TIMELINE_DATA__";
/// Where the template takes the page's title (HTML-escaped).
const TITLE_SLOT: &str = "__TIMELINE_TITLE__";

/// What the page shows, as JSON embedded in it.
#[derive(Debug, Serialize)]
struct TimelineData<'a> {
    title: &'a str,
    seed: u64,
    /// The lanes, left to right: every device of the run, then `server` (and `world`
    /// when some line belongs to no device).
    lanes: Vec<String>,
    /// Every record id the events name, once: events refer to them by index, since a
    /// pulled page names up to a thousand and would otherwise repeat them page after page.
    record_ids: Vec<&'a str>,
    events: Vec<TimelineEvent<'a>>,
    failure: Option<FailureView>,
    trace_hash: &'a str,
    virtual_ms: u64,
    replay: &'a str,
}

#[derive(Debug, Serialize)]
struct TimelineEvent<'a> {
    /// Virtual ms since the run began.
    at_ms: u64,
    /// Index into `lanes`.
    lane: usize,
    kind: EventKind,
    /// As text: request ids exceed what a JavaScript number holds exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fate: Option<&'a str>,
    /// Indices into `record_ids`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    records: Vec<usize>,
    text: &'a str,
}

#[derive(Debug, Serialize)]
struct FailureView {
    kind: String,
    message: String,
    signature: String,
    /// The records the message names.
    records: Vec<String>,
    /// The lane of the device the message names first (or `world`).
    lane: usize,
    at_ms: u64,
}

/// Renders the report's timeline as one HTML page; `title` heads it and `replay` is the
/// command that replays the run. The report must have been run with the trace kept.
pub fn render_html(report: &SeedReport, title: &str, replay: &str) -> String {
    let lanes = lanes_of(report);
    let lane_of = |name: &str| {
        lanes
            .iter()
            .position(|lane| lane == name)
            .expect("every logged lane is listed")
    };
    let mut record_ids: Vec<&str> = Vec::new();
    let mut record_index: BTreeMap<&str, usize> = BTreeMap::new();
    let events = report
        .event_log
        .iter()
        .map(|event: &LoggedEvent| TimelineEvent {
            at_ms: event.at_ms,
            lane: lane_of(&event.lane),
            kind: event.kind,
            request: event.request_id.map(|id| id.to_string()),
            fate: event.fate.as_deref(),
            records: event
                .records
                .iter()
                .map(|id| {
                    *record_index.entry(id).or_insert_with(|| {
                        record_ids.push(id);
                        record_ids.len() - 1
                    })
                })
                .collect(),
            text: &event.text,
        })
        .collect();
    let failure = report.failure.as_ref().map(|failure| {
        let named_lane = failure
            .message
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-')
            .find_map(|word| {
                lanes
                    .iter()
                    .position(|lane| lane == word && lane != "server")
            });
        FailureView {
            kind: format!("{:?}", failure.kind),
            message: failure.message.clone(),
            signature: Signature::of(failure, &report.operation).to_string(),
            records: record_ids_in(&failure.message),
            lane: named_lane.unwrap_or_else(|| lane_of("world")),
            at_ms: report.virtual_ms,
        }
    });
    let data = TimelineData {
        title,
        seed: report.seed,
        events,
        failure,
        trace_hash: &report.trace_hash,
        virtual_ms: report.virtual_ms,
        replay,
        lanes,
        record_ids,
    };
    let json = serde_json::to_string(&data).expect("the timeline serializes");
    TEMPLATE
        .replace(TITLE_SLOT, &escape_html(title))
        .replace(DATA_SLOT, &json_for_script(&json))
}

/// Every device of the run (`d0`… as the world names them, and any other lane the log
/// names), then `server` and `world`.
fn lanes_of(report: &SeedReport) -> Vec<String> {
    let mut lanes: Vec<String> = (0..report.knobs.devices)
        .map(|index| format!("d{index}"))
        .collect();
    for event in &report.event_log {
        let special = event.lane == "server" || event.lane == "world";
        if !special && !lanes.contains(&event.lane) {
            lanes.push(event.lane.clone());
        }
    }
    lanes.push("server".to_owned());
    lanes.push("world".to_owned());
    lanes
}

/// JSON made safe inside `<script type="application/json">`: no `<` at all, so neither
/// `</script>` nor `<!--` can end or bend the element (`\u003c` is the same JSON string).
fn json_for_script(json: &str) -> String {
    json.replace('<', "\\u003c")
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The JSON the page embeds, read back out of it (for tests and tools).
pub fn embedded_json(html: &str) -> Option<&str> {
    let start_tag = "<script type=\"application/json\" id=\"timeline-data\">";
    let start = html.find(start_tag)? + start_tag.len();
    let length = html[start..].find("</script>")?;
    Some(&html[start..start + length])
}

#[cfg(test)]
mod tests {
    //! The page of a real failing seed holds what a person needs and loads nothing; and
    //! what goes into it stays inert: a `</script>` in a trace line cannot end the data
    //! element, and the title cannot inject markup.
    use super::*;
    use crate::profile::Profile;
    use crate::server::{Defect, ServerDefects};
    use crate::world::{run_seed, RunOptions};
    use serde_json::Value;

    /// Fails within 40 s of virtual time, naming the record whose pending edit a pull
    /// overwrote (`monotonic reads`), in well under a second of a debug build.
    const FAILING_SEED: u64 = 0;

    #[test]
    fn a_failing_seed_renders_a_self_contained_timeline() {
        let options = RunOptions {
            keep_trace: true,
            defects: ServerDefects::planting([Defect::PullOverwritesPendingEdit]),
            ..RunOptions::default()
        };
        let report = run_seed(FAILING_SEED, Profile::Lite, &options);
        let failure = report
            .failure
            .clone()
            .expect("the planted defect fails the seed");
        let html = render_html(&report, "seed 0 <lite>", "syncsim replay 0");
        for external in ["http://", "https://", "src=", "<link", "@import", "//cdn"] {
            assert!(!html.contains(external), "the page loads {external}");
        }
        assert!(html.contains("<title>seed 0 &lt;lite&gt;</title>"));
        assert!(!html.contains(DATA_SLOT) && !html.contains(TITLE_SLOT));
        let data: Value = serde_json::from_str(embedded_json(&html).expect("the data is embedded"))
            .expect("the embedded data is JSON");
        let lanes: Vec<&str> = data["lanes"]
            .as_array()
            .expect("lanes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for device in 0..report.knobs.devices {
            assert!(lanes.contains(&format!("d{device}").as_str()), "{lanes:?}");
        }
        assert!(lanes.contains(&"server"));
        let shown = &data["failure"];
        assert_eq!(shown["message"], failure.message.as_str());
        assert!(
            failure.message.contains("monotonic reads"),
            "{}",
            failure.message
        );
        assert!(shown["signature"]
            .as_str()
            .expect("a signature")
            .contains("monotonic reads"));
        let records = shown["records"].as_array().expect("records");
        assert!(!records.is_empty(), "{}", failure.message);
        let events = data["events"].as_array().expect("events");
        assert_eq!(events.len(), report.event_log.len());
        let record_ids = data["record_ids"].as_array().expect("record ids");
        for record in records {
            let index = record_ids
                .iter()
                .position(|id| id == record)
                .unwrap_or_else(|| panic!("{record} is not among the record ids"));
            assert!(
                events.iter().any(|event| event["records"]
                    .as_array()
                    .is_some_and(|named| named.contains(&Value::from(index)))),
                "no event touches {record}"
            );
        }
        for kind in ["send", "arrive", "answer", "state", "open"] {
            assert!(
                events.iter().any(|event| event["kind"] == kind),
                "no {kind} event"
            );
        }
        let server = lanes.iter().position(|lane| *lane == "server");
        assert!(events.iter().any(|event| event["lane"].as_u64()
            == server.map(|lane| lane as u64)
            && event["fate"].is_string()
            && event["request"].is_string()));
    }

    #[test]
    fn embedded_json_cannot_close_its_script_element() {
        let json = serde_json::to_string(&serde_json::json!({"text": "</script><b>x</b>"}))
            .expect("serializes");
        let safe = json_for_script(&json);
        assert!(!safe.contains('<'));
        let back: serde_json::Value = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back["text"], "</script><b>x</b>");
        assert_eq!(
            escape_html("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
