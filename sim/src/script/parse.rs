//! The scenario language's grammar: one command per line, `#` comments, JSON objects at
//! the end of a line. This module turns text into [`Command`]s and names the line of
//! anything it cannot read; it never runs anything.

use super::{Script, ScriptFailure, Step};
use crate::profile::FaultClass;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use sync_engine::{CrashPoint, Side};

/// Who an expectation looks at.
#[derive(Clone, Debug)]
pub(super) enum Who {
    Device(String),
    Server,
}

/// The user's answer to a conflict.
#[derive(Clone, Debug)]
pub(super) enum Choice {
    KeepLocal,
    UseServer,
    Merge(BTreeMap<String, Side>),
}

#[derive(Clone, Debug)]
pub(super) enum Command {
    // Setup, before the first `devices` line.
    Tenants(Vec<String>),
    Entities(Vec<String>),
    PushBatch(usize),
    PullPage(usize),
    SyncAfterWrite(bool),
    AutoMerge(bool),
    FaultsOff(Vec<FaultClass>),
    Devices(Vec<(String, String)>),
    // A device's user or its app.
    Create {
        device: String,
        count: usize,
        entity: String,
        space: String,
        alias: Option<String>,
        data: Map<String, Value>,
    },
    Update {
        device: String,
        alias: String,
        patch: Map<String, Value>,
    },
    Delete {
        device: String,
        alias: String,
    },
    Online(String, bool),
    AppOpen(String),
    Kill(String),
    Restart(String),
    CrashAt(String, CrashPoint),
    Clock(String, i64),
    Partition(String, Option<u64>),
    Heal(String),
    Resolve {
        device: String,
        alias: String,
        choice: Choice,
    },
    Force {
        device: String,
        entity: String,
        from_server: bool,
    },
    Wipe(String, String),
    Logout(String),
    Login(String, String),
    SyncStart(String),
    /// The app's background process on the device: `true` opens it (unless it runs) and
    /// starts its sync; `false` ends it.
    Background(String, bool),
    // The world.
    Sync(Vec<String>),
    Wait(u64),
    ResetCounters,
    Reject(String),
    Expect(Expectation),
}

impl Command {
    /// The devices whose user acts in this step: the ones fault runs strike first.
    /// Setup, expectations and world-wide bookkeeping are not actions.
    pub(super) fn actors(&self) -> Option<Vec<&str>> {
        match self {
            Command::Tenants(_)
            | Command::Entities(_)
            | Command::PushBatch(_)
            | Command::PullPage(_)
            | Command::SyncAfterWrite(_)
            | Command::AutoMerge(_)
            | Command::FaultsOff(_)
            | Command::Devices(_)
            | Command::ResetCounters
            | Command::Reject(_)
            | Command::Expect(_) => None,
            Command::Create { device, .. }
            | Command::Update { device, .. }
            | Command::Delete { device, .. }
            | Command::Resolve { device, .. }
            | Command::Force { device, .. }
            | Command::Online(device, _)
            | Command::AppOpen(device)
            | Command::Kill(device)
            | Command::Restart(device)
            | Command::CrashAt(device, _)
            | Command::Clock(device, _)
            | Command::Partition(device, _)
            | Command::Heal(device)
            | Command::Wipe(device, _)
            | Command::Logout(device)
            | Command::Login(device, _)
            | Command::SyncStart(device)
            | Command::Background(device, _) => Some(vec![device.as_str()]),
            Command::Sync(devices) => Some(devices.iter().map(String::as_str).collect()),
            // Time passes for everyone: every device's user may be struck.
            Command::Wait(_) => Some(Vec::new()),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Expectation {
    Count {
        who: Who,
        tenant: Option<String>,
        entity: String,
        count: usize,
    },
    Field {
        who: Who,
        alias: String,
        field: String,
        value: Value,
    },
    Deleted(Who, String),
    Exists(Who, String),
    Conflict {
        device: String,
        alias: String,
        fields: Vec<String>,
    },
    NoConflicts(String),
    QueueEmpty(String),
    Pending(String, u64),
    Failed(String, u64),
    Requests(String, String, u64),
    SyncsStarted(String, u64),
    MaxInFlight(String, usize),
    CannotAccess(String, String),
    Converged,
    NoDuplicates,
}

impl Expectation {
    /// Expectations about exact intermediate counts that faults legitimately change
    /// (retries add requests and syncs; restarts start syncs). Skipped in fault runs.
    pub(super) fn exact_only(&self) -> bool {
        matches!(
            self,
            Expectation::Requests(..) | Expectation::SyncsStarted(..) | Expectation::Pending(..)
        )
    }
}

/// Parses a scenario; errors name the line.
pub fn parse(name: &str, text: &str) -> Result<Script, ScriptFailure> {
    let mut steps = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let without_comment = strip_comment(raw).trim();
        if without_comment.is_empty() {
            continue;
        }
        let command = parse_line(without_comment).map_err(|message| ScriptFailure {
            line,
            text: without_comment.to_owned(),
            message: format!("cannot parse: {message}"),
        })?;
        steps.push(Step {
            line,
            text: without_comment.to_owned(),
            command,
        });
    }
    Ok(Script {
        name: name.to_owned(),
        steps,
    })
}

/// `#` starts a comment unless it sits inside a JSON string.
fn strip_comment(raw: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    for (at, c) in raw.char_indices() {
        match c {
            '\\' if in_string => escaped = !escaped,
            '"' if !escaped => in_string = !in_string,
            '#' if !in_string => return &raw[..at],
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    raw
}

fn object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("expected a JSON object, found {other}")),
        Err(error) => Err(format!("bad JSON {text:?}: {error}")),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("expected a number, found {text:?}"))
}

fn crash_point(name: &str) -> Result<CrashPoint, String> {
    CrashPoint::ALL
        .into_iter()
        .find(|point| point.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = CrashPoint::ALL.iter().map(|point| point.name()).collect();
            format!("unknown crash point {name:?} (one of {})", names.join(", "))
        })
}

fn fault_class(name: &str) -> Result<FaultClass, String> {
    FaultClass::ALL
        .into_iter()
        .find(|class| class.name() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = FaultClass::ALL.iter().map(|class| class.name()).collect();
            format!("unknown fault class {name:?} (one of {})", names.join(", "))
        })
}

fn on_off(word: &str) -> Result<bool, String> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, found {word:?}")),
    }
}

fn parse_line(line: &str) -> Result<Command, String> {
    // A JSON object, if any, runs from the first `{` to the end of the line.
    let (head, json) = match line.find('{') {
        Some(at) => (&line[..at], Some(line[at..].trim())),
        None => (line, None),
    };
    let words: Vec<&str> = head.split_whitespace().collect();
    let no_json = |command: Command| {
        if json.is_some() {
            Err("unexpected JSON object".to_owned())
        } else {
            Ok(command)
        }
    };
    let names = |rest: &[&str]| rest.iter().map(|word| (*word).to_owned()).collect();
    match words.as_slice() {
        ["tenants", rest @ ..] if !rest.is_empty() => no_json(Command::Tenants(names(rest))),
        ["entities", rest @ ..] if !rest.is_empty() => no_json(Command::Entities(names(rest))),
        ["devices", rest @ ..] if !rest.is_empty() => {
            let mut devices = Vec::new();
            for word in rest {
                let (device, tenant) = word
                    .split_once(':')
                    .ok_or_else(|| format!("expected device:tenant, found {word:?}"))?;
                devices.push((device.to_owned(), tenant.to_owned()));
            }
            no_json(Command::Devices(devices))
        }
        ["config", "push-batch", n] => no_json(Command::PushBatch(number(n)?)),
        ["config", "pull-page", n] => no_json(Command::PullPage(number(n)?)),
        ["config", "sync-after-write", on] => no_json(Command::SyncAfterWrite(on_off(on)?)),
        ["config", "auto-merge", on] => no_json(Command::AutoMerge(on_off(on)?)),
        ["faults", "off", rest @ ..] if !rest.is_empty() => {
            let classes = rest
                .iter()
                .map(|name| fault_class(name))
                .collect::<Result<_, _>>()?;
            no_json(Command::FaultsOff(classes))
        }
        ["sync", rest @ ..] if !rest.is_empty() => no_json(Command::Sync(names(rest))),
        ["wait", ms] => no_json(Command::Wait(number(ms)?)),
        ["reset-counters"] => no_json(Command::ResetCounters),
        ["server", "reject", alias] => no_json(Command::Reject((*alias).to_owned())),
        ["expect", rest @ ..] => parse_expectation(rest, json),
        [device, verb, rest @ ..] => parse_device_step(device, verb, rest, json),
        _ => Err("unknown command".to_owned()),
    }
}

fn parse_device_step(
    device: &str,
    verb: &str,
    rest: &[&str],
    json: Option<&str>,
) -> Result<Command, String> {
    let device = device.to_owned();
    let data = || json.map_or(Ok(Map::new()), object);
    let plain = |command: Command| {
        if json.is_some() {
            Err("unexpected JSON object".to_owned())
        } else {
            Ok(command)
        }
    };
    match (verb, rest) {
        ("create", rest) => {
            let (count, rest) = match rest.first().map(|word| word.parse::<usize>()) {
                Some(Ok(count)) => (count, &rest[1..]),
                _ => (1, rest),
            };
            let (entity, space, alias) = match rest {
                [entity, "in", space] => (*entity, *space, None),
                [entity, "in", space, "as", alias] => (*entity, *space, Some((*alias).to_owned())),
                _ => {
                    return Err(
                        "expected: DEVICE create [N] ENTITY in SPACE [as ALIAS] [{json}]"
                            .to_owned(),
                    )
                }
            };
            Ok(Command::Create {
                device,
                count,
                entity: entity.to_owned(),
                space: space.to_owned(),
                alias,
                data: data()?,
            })
        }
        ("update", [alias]) => Ok(Command::Update {
            device,
            alias: (*alias).to_owned(),
            patch: json
                .ok_or("expected: DEVICE update ALIAS {json}")
                .and_then(|text| object(text).map_err(|_| "bad JSON"))
                .map_err(str::to_owned)?,
        }),
        ("delete", [alias]) => plain(Command::Delete {
            device,
            alias: (*alias).to_owned(),
        }),
        ("offline", []) => plain(Command::Online(device, false)),
        ("online" | "network-regained", []) => plain(Command::Online(device, true)),
        ("app-open", []) => plain(Command::AppOpen(device)),
        ("kill", []) => plain(Command::Kill(device)),
        ("restart", []) => plain(Command::Restart(device)),
        ("crash-at", [point]) => plain(Command::CrashAt(device, crash_point(point)?)),
        ("clock", [delta]) => {
            let delta: i64 = number(delta.trim_start_matches('+'))?;
            plain(Command::Clock(device, delta))
        }
        ("partition", []) => plain(Command::Partition(device, None)),
        ("partition", [ms]) => plain(Command::Partition(device, Some(number(ms)?))),
        ("heal", []) => plain(Command::Heal(device)),
        ("resolve", [alias, choice, fields @ ..]) => {
            let choice = match (*choice, fields) {
                ("keep-local", []) => Choice::KeepLocal,
                ("use-server", []) => Choice::UseServer,
                ("merge", fields) if !fields.is_empty() => {
                    let mut sides = BTreeMap::new();
                    for field in fields {
                        let side = match field.split_once('=') {
                            Some((name, "local")) => (name, Side::Local),
                            Some((name, "server")) => (name, Side::Server),
                            _ => {
                                return Err(format!("expected FIELD=local|server, found {field:?}"))
                            }
                        };
                        sides.insert(side.0.to_owned(), side.1);
                    }
                    Choice::Merge(sides)
                }
                _ => {
                    return Err(
                        "expected keep-local, use-server or merge FIELD=local|server ..."
                            .to_owned(),
                    )
                }
            };
            plain(Command::Resolve {
                device,
                alias: (*alias).to_owned(),
                choice,
            })
        }
        ("force-from-server" | "force-push-local", [entity]) => plain(Command::Force {
            device,
            entity: (*entity).to_owned(),
            from_server: verb == "force-from-server",
        }),
        ("wipe", [space]) => plain(Command::Wipe(device, (*space).to_owned())),
        ("logout", []) => plain(Command::Logout(device)),
        ("login", [tenant]) => plain(Command::Login(device, (*tenant).to_owned())),
        ("sync-start", []) => plain(Command::SyncStart(device)),
        ("background-sync", []) => plain(Command::Background(device, true)),
        ("background-stop", []) => plain(Command::Background(device, false)),
        _ => Err(format!("unknown device command {verb:?}")),
    }
}

fn parse_expectation(words: &[&str], json: Option<&str>) -> Result<Command, String> {
    let who = |name: &str| {
        if name == "server" {
            Who::Server
        } else {
            Who::Device(name.to_owned())
        }
    };
    let expectation = match words {
        ["converged"] => Expectation::Converged,
        ["no-duplicates"] => Expectation::NoDuplicates,
        ["server", tenant, "count", entity, n] => Expectation::Count {
            who: Who::Server,
            tenant: Some((*tenant).to_owned()),
            entity: (*entity).to_owned(),
            count: number(n)?,
        },
        [device, "count", entity, n] => Expectation::Count {
            who: who(device),
            tenant: None,
            entity: (*entity).to_owned(),
            count: number(n)?,
        },
        [device, "conflict", alias, "fields", fields @ ..] => Expectation::Conflict {
            device: (*device).to_owned(),
            alias: (*alias).to_owned(),
            fields: fields
                .iter()
                .flat_map(|field| field.split(','))
                .filter(|field| !field.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        [device, "no-conflicts"] => Expectation::NoConflicts((*device).to_owned()),
        [device, "queue", "empty"] => Expectation::QueueEmpty((*device).to_owned()),
        [device, "pending", n] => Expectation::Pending((*device).to_owned(), number(n)?),
        [device, "failed", n] => Expectation::Failed((*device).to_owned(), number(n)?),
        [device, "requests", operation, n] => {
            Expectation::Requests((*device).to_owned(), (*operation).to_owned(), number(n)?)
        }
        [device, "syncs-started", n] => Expectation::SyncsStarted((*device).to_owned(), number(n)?),
        [device, "max-in-flight", n] => Expectation::MaxInFlight((*device).to_owned(), number(n)?),
        [device, "cannot-access", tenant] => {
            Expectation::CannotAccess((*device).to_owned(), (*tenant).to_owned())
        }
        [name, alias, "deleted"] => Expectation::Deleted(who(name), (*alias).to_owned()),
        [name, alias, "exists"] => Expectation::Exists(who(name), (*alias).to_owned()),
        [name, alias, field, "=", value @ ..] => {
            let text = match json {
                Some(json) => format!("{} {json}", value.join(" ")),
                None => value.join(" "),
            };
            let value = serde_json::from_str(text.trim())
                .map_err(|error| format!("bad JSON value {text:?}: {error}"))?;
            return Ok(Command::Expect(Expectation::Field {
                who: who(name),
                alias: (*alias).to_owned(),
                field: (*field).to_owned(),
                value,
            }));
        }
        _ => return Err("unknown expectation".to_owned()),
    };
    if json.is_some() {
        return Err("unexpected JSON object".to_owned());
    }
    Ok(Command::Expect(expectation))
}

#[cfg(test)]
mod tests {
    //! The grammar's corner cases: comments, and the verbs added with the kernel.
    use super::*;

    // Proves comments are stripped outside JSON strings only.
    #[test]
    fn comments_stop_at_hash_outside_strings() {
        assert_eq!(strip_comment("a {\"x\":\"#1\"} # c"), "a {\"x\":\"#1\"} ");
        assert_eq!(strip_comment("# all"), "");
    }

    // Proves the partition, fault-class and auto-merge lines parse, and a misspelt fault
    // class or crash point is refused with the list of valid names.
    #[test]
    fn new_verbs_parse_and_bad_names_are_refused() {
        assert!(matches!(
            parse_line("phone partition 30000"),
            Ok(Command::Partition(device, Some(30_000))) if device == "phone"
        ));
        assert!(matches!(
            parse_line("phone partition"),
            Ok(Command::Partition(_, None))
        ));
        assert!(matches!(parse_line("phone heal"), Ok(Command::Heal(_))));
        assert!(matches!(
            parse_line("config auto-merge on"),
            Ok(Command::AutoMerge(true))
        ));
        assert!(matches!(
            parse_line("faults off clock_jump partition"),
            Ok(Command::FaultsOff(classes))
                if classes == [FaultClass::ClockJump, FaultClass::Partition]
        ));
        let misspelt = parse_line("faults off clock_jumps").expect_err("no such class");
        assert!(misspelt.contains("cross_tenant_probe"), "{misspelt}");
        let bad_point = parse_line("phone crash-at mid_sync").expect_err("no such point");
        assert!(bad_point.contains("mid_wipe"), "{bad_point}");
    }
}
