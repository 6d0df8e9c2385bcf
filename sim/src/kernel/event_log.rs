//! The structured event log and the per-device state lines: what a timeline of the run
//! is drawn from, kept only when the whole trace is kept (`keep_trace`), so campaigns pay
//! nothing for them.
//!
//! Every logged event is also a trace line (the same text), recorded at the same place
//! the trace line always was, so the trace and its hash are exactly what they are without
//! the log. The state lines are the exception, by design: reading a device's queue,
//! conflicts and cursors costs SQLite queries, so they are computed only when the trace is
//! kept, and they go into the kept trace without entering the hash (or the last-events
//! buffer of a failure report). A seed's hash is therefore the same with and without
//! `keep_trace`, and `syncsim check-determinism`, which keeps both traces whole, compares
//! the state lines too. Nothing here decides anything about the run; it only writes down.

use super::{Sim, EPOCH_MS};
use serde::Serialize;
use serde_json::Value;

/// What kind of thing happened, for the timeline's marks and arrows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A request leaves a device (an arrow towards the server starts).
    Send,
    /// A request reaches the server, with the fate it meets there.
    Arrive,
    /// An answer (or a transport error) reaches a device.
    Answer,
    Kill,
    /// The app opens its database (a restart, a login, a tenant switch).
    Open,
    Logout,
    Partition,
    Heal,
    Offline,
    Online,
    ClockJump,
    Timer,
    /// An event the engine handed out (`SyncEvent`).
    Engine,
    /// The device's compact state line.
    State,
    /// Any other line: user actions, and what drivers trace.
    Note,
}

/// One event of the run, with what a timeline needs to place it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoggedEvent {
    /// Virtual ms since the run began.
    pub at_ms: u64,
    /// The device's name, `server`, or `world` for lines that belong to no device.
    pub lane: String,
    pub kind: EventKind,
    pub request_id: Option<u64>,
    /// What happened to a request or an answer: `lost`, `busy`, `late`, `duplicate`…
    pub fate: Option<String>,
    /// The client ids of the records the event names or carries.
    pub records: Vec<String>,
    /// The trace line, without its time stamp.
    pub text: String,
}

/// A logged event before the kernel stamps it with the time. It borrows and allocates
/// nothing until the log is kept: most runs never keep it.
pub(super) struct Entry<'a> {
    /// The device's index, or `None` for the server.
    device: Option<usize>,
    kind: EventKind,
    request_id: Option<u64>,
    fate: Option<&'a str>,
}

impl<'a> Entry<'a> {
    pub(super) fn device(index: usize, kind: EventKind) -> Entry<'a> {
        Entry {
            device: Some(index),
            kind,
            request_id: None,
            fate: None,
        }
    }

    pub(super) fn server(kind: EventKind) -> Entry<'a> {
        Entry {
            device: None,
            ..Entry::device(0, kind)
        }
    }

    pub(super) fn request(mut self, request_id: u64) -> Entry<'a> {
        self.request_id = Some(request_id);
        self
    }

    pub(super) fn fate(mut self, fate: &'a str) -> Entry<'a> {
        self.fate = Some(fate);
        self
    }
}

/// The client ids a request or an answer carries (`clientId` anywhere in the JSON), in
/// order, without repeats.
pub fn client_ids_in(value: &Value) -> Vec<String> {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("clientId", Value::String(id)) if !found.contains(id) => {
                            found.push(id.clone());
                        }
                        _ => walk(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(value, &mut found);
    found
}

/// The record ids (UUIDs, as the engine makes them) a line of text names, in order,
/// without repeats.
pub fn record_ids_in(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let words = text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'));
    for word in words.filter(|word| is_uuid(word)) {
        if !found.iter().any(|seen| seen == word) {
            found.push(word.to_owned());
        }
    }
    found
}

fn is_uuid(word: &str) -> bool {
    word.len() == 36
        && word.char_indices().all(|(position, c)| match position {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl Sim {
    /// Whether the whole trace, the event log and the state lines are kept.
    pub fn keeps_trace(&self) -> bool {
        self.event_log.is_some()
    }

    /// The structured events so far (empty unless the trace is kept).
    pub fn take_event_log(&mut self) -> Vec<LoggedEvent> {
        self.event_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Records `line` in the trace (exactly as [`Sim::trace`] does) and, when the log is
    /// kept, `entry` with it; `records` adds the record ids only then, since finding them
    /// costs.
    pub(super) fn trace_entry(
        &mut self,
        entry: Entry<'_>,
        line: String,
        records: impl FnOnce() -> Vec<String>,
    ) {
        if let Some(log) = self.event_log.as_mut() {
            let lane = match entry.device {
                Some(index) => self.devices[index].name.clone(),
                None => "server".to_owned(),
            };
            let mut records_named = record_ids_in(&line);
            for id in records() {
                if !records_named.contains(&id) {
                    records_named.push(id);
                }
            }
            log.push(LoggedEvent {
                at_ms: self.now_ms - EPOCH_MS,
                lane,
                kind: entry.kind,
                request_id: entry.request_id,
                fate: entry.fate.map(str::to_owned),
                records: records_named,
                text: line.clone(),
            });
        }
        self.trace_line(line);
    }

    /// [`Sim::trace_entry`] for an event of one device that carries no request.
    pub(super) fn trace_device(&mut self, index: usize, kind: EventKind, line: String) {
        self.trace_entry(Entry::device(index, kind), line, Vec::new);
    }

    /// Logs a driver's or the kernel's plain line: its lane is the device (or `server`)
    /// it starts with, its records the ids it names.
    pub(super) fn log_note(&mut self, line: &str) {
        if self.event_log.is_none() {
            return;
        }
        let first = line.split(' ').next().unwrap_or_default();
        let lane = if first == "server" || self.device_named(first).is_some() {
            first
        } else {
            "world"
        };
        let event = LoggedEvent {
            at_ms: self.now_ms - EPOCH_MS,
            lane: lane.to_owned(),
            kind: EventKind::Note,
            request_id: None,
            fate: None,
            records: record_ids_in(line),
            text: line.to_owned(),
        };
        if let Some(log) = self.event_log.as_mut() {
            log.push(event);
        }
    }

    /// After anything that may have changed the device: its state line, when the trace is
    /// kept and the line differs from the device's last one.
    pub(super) fn note_state(&mut self, index: usize) {
        if self.event_log.is_none() {
            return;
        }
        let line = self.state_line(index);
        if self.state_lines.get(&index) == Some(&line) {
            return;
        }
        self.state_lines.insert(index, line.clone());
        let stamped = format!("{:>9} {line}", self.now_ms - EPOCH_MS);
        self.trace.record_unhashed(stamped);
        let lane = self.devices[index].name.clone();
        if let Some(log) = self.event_log.as_mut() {
            log.push(LoggedEvent {
                at_ms: self.now_ms - EPOCH_MS,
                lane,
                kind: EventKind::State,
                request_id: None,
                fate: None,
                records: Vec::new(),
                text: line,
            });
        }
    }

    /// `state d2 gen=3 q=4 cur=Space:17,Group:5,Identity:- conflicts=1 inflight=1 online`:
    /// process generation, queued ops (pending or sending), each entity's cursor (the
    /// commit stamp it stands at), open conflicts, requests in flight, connectivity.
    pub fn state_line(&self, index: usize) -> String {
        let device = &self.devices[index];
        let mut line = format!("state {} gen={}", device.name, device.generation);
        let Some(engine) = device.engine.as_ref() else {
            let why = if device.tenant.is_some() {
                " down"
            } else {
                " logged-out"
            };
            line.push_str(why);
            return line;
        };
        match engine.status() {
            Ok(status) => {
                line.push_str(&format!(" q={}", status.pending_ops));
                if status.failed_ops > 0 {
                    line.push_str(&format!(" failed={}", status.failed_ops));
                }
                let cursors: Vec<String> = self
                    .entities
                    .iter()
                    .map(|entity| {
                        let cursor = engine.cursor(entity).ok().flatten();
                        let stamp = cursor
                            .as_deref()
                            .and_then(|raw| raw.split('.').next())
                            .filter(|stamp| !stamp.is_empty())
                            .unwrap_or("-");
                        format!("{entity}:{stamp}")
                    })
                    .collect();
                line.push_str(&format!(
                    " cur={} conflicts={}",
                    cursors.join(","),
                    status.open_conflicts
                ));
                if status.syncing {
                    line.push_str(" syncing");
                }
            }
            Err(error) => line.push_str(&format!(" unreadable: {error}")),
        }
        line.push_str(&format!(" inflight={}", device.in_flight.len()));
        line.push_str(if device.app_online {
            " online"
        } else {
            " offline"
        });
        if !device.network_up {
            line.push_str(" partitioned");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    //! Record ids are found in trace text and in wire JSON the way the timeline needs
    //! them: every id once, in order, nothing that merely looks hexadecimal.
    use super::*;
    use serde_json::json;

    const A: &str = "018bcfda-8672-7000-82b6-88fe23e9f610";
    const B: &str = "018bd053-d878-7000-819f-741a05fe9b4f";

    #[test]
    fn record_ids_are_found_in_text_once_each() {
        let line = format!("d0 created {A}..{B}; update {A} (tenant acme-org_7d0-0-f9a)");
        assert_eq!(record_ids_in(&line), vec![A.to_owned(), B.to_owned()]);
        assert!(record_ids_in("d1 -> syncPullSpace #106306030119265 deadbeef").is_empty());
        assert!(record_ids_in(&A.replace('-', "x")).is_empty());
    }

    #[test]
    fn client_ids_are_found_anywhere_in_wire_json() {
        let push =
            json!({"payload": [{"clientId": A, "opId": B}, {"clientId": B}, {"clientId": A}]});
        assert_eq!(client_ids_in(&push), vec![A.to_owned(), B.to_owned()]);
        let page = json!({"data": {"syncPullSpace": {"items": [{"id": "s1", "clientId": B}]}}});
        assert_eq!(client_ids_in(&page), vec![B.to_owned()]);
        assert!(client_ids_in(&json!({"items": []})).is_empty());
    }
}
