//! The app's command line: one command per line, parsed into [`Command`].
//!
//! This module only parses; it never touches an engine. Todos and conflicts are named by
//! their 1-based position in a device's list, as the user reads them off `list` and
//! `conflicts`, never by id.

use std::collections::BTreeMap;
use std::fmt;
use sync_engine::Side;

/// The usage text `help` prints.
pub const HELP: &str = "\
commands (<device> is phone or laptop, <n> a number from `list` or `conflicts`):
  add <device> <title>                 create a todo on one device
  edit <device> <n> <title>            retitle todo <n>
  done <device> <n>                    mark todo <n> done
  rm <device> <n>                      delete todo <n>
  list [device]                        the todos of one device, or of both
  offline <device> / online <device>   take a device off the network / put it back
  sync [device]                        sync one device, or both (phone, laptop, phone)
  conflicts <device>                   show the device's conflict dialogs
  resolve <device> <n> local           keep this device's version of conflict <n>
  resolve <device> <n> server          take the server's version
  resolve <device> <n> merge <field>=local|server ...
                                       choose per field (unnamed fields take the server's)
  status                               queue, conflicts and last sync of each device
  help, quit
The clock moves one second at each `sync`. Edits of one todo made on both devices between
two syncs carry the same instant: edits of different fields merge, edits of the same field
become a conflict to resolve. Otherwise the later edit wins.";

/// One of the app's two devices; both belong to the same tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Device {
    Phone,
    Laptop,
}

impl Device {
    /// Every device, in the order `sync` and `list` visit them.
    pub const ALL: [Device; 2] = [Device::Phone, Device::Laptop];

    pub fn name(self) -> &'static str {
        match self {
            Device::Phone => "phone",
            Device::Laptop => "laptop",
        }
    }

    fn parse(word: &str) -> Result<Device, UsageError> {
        Device::ALL
            .into_iter()
            .find(|device| device.name() == word)
            .ok_or_else(|| UsageError(format!("no device `{word}`: use phone or laptop")))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The user's answer to a conflict dialog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    Local,
    Server,
    /// Which side each named field takes.
    Merge(BTreeMap<String, Side>),
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Add {
        device: Device,
        title: String,
    },
    Edit {
        device: Device,
        number: usize,
        title: String,
    },
    Done {
        device: Device,
        number: usize,
    },
    Remove {
        device: Device,
        number: usize,
    },
    List {
        device: Option<Device>,
    },
    Offline(Device),
    Online(Device),
    Sync {
        device: Option<Device>,
    },
    Conflicts(Device),
    Resolve {
        device: Device,
        number: usize,
        choice: Choice,
    },
    Status,
    Quit,
}

/// A line that is not a command, with what to type instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl Command {
    /// Parses one line; `None` for a blank line or a `#` comment.
    pub fn parse(line: &str) -> Option<Result<Command, UsageError>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        Some(parse_words(&words))
    }
}

fn parse_words(words: &[&str]) -> Result<Command, UsageError> {
    let usage = |text: &str| UsageError(format!("usage: {text}"));
    let command = match words {
        ["help"] => Command::Help,
        ["quit"] | ["exit"] => Command::Quit,
        ["status"] => Command::Status,
        ["add", device, title @ ..] if !title.is_empty() => Command::Add {
            device: Device::parse(device)?,
            title: title.join(" "),
        },
        ["add", ..] => return Err(usage("add <device> <title>")),
        ["edit", device, number, title @ ..] if !title.is_empty() => Command::Edit {
            device: Device::parse(device)?,
            number: parse_number(number)?,
            title: title.join(" "),
        },
        ["edit", ..] => return Err(usage("edit <device> <n> <title>")),
        ["done", device, number] => Command::Done {
            device: Device::parse(device)?,
            number: parse_number(number)?,
        },
        ["done", ..] => return Err(usage("done <device> <n>")),
        ["rm", device, number] => Command::Remove {
            device: Device::parse(device)?,
            number: parse_number(number)?,
        },
        ["rm", ..] => return Err(usage("rm <device> <n>")),
        ["list"] => Command::List { device: None },
        ["list", device] => Command::List {
            device: Some(Device::parse(device)?),
        },
        ["offline", device] => Command::Offline(Device::parse(device)?),
        ["online", device] => Command::Online(Device::parse(device)?),
        ["sync"] => Command::Sync { device: None },
        ["sync", device] => Command::Sync {
            device: Some(Device::parse(device)?),
        },
        ["conflicts", device] => Command::Conflicts(Device::parse(device)?),
        ["resolve", device, number, "local"] => Command::Resolve {
            device: Device::parse(device)?,
            number: parse_number(number)?,
            choice: Choice::Local,
        },
        ["resolve", device, number, "server"] => Command::Resolve {
            device: Device::parse(device)?,
            number: parse_number(number)?,
            choice: Choice::Server,
        },
        ["resolve", device, number, "merge", fields @ ..] if !fields.is_empty() => {
            Command::Resolve {
                device: Device::parse(device)?,
                number: parse_number(number)?,
                choice: Choice::Merge(parse_merge_fields(fields)?),
            }
        }
        ["resolve", ..] => {
            return Err(usage(
                "resolve <device> <n> local | server | merge <field>=local|server ...",
            ))
        }
        [word, ..] => {
            return Err(UsageError(format!(
                "unknown command `{word}` (type `help`)"
            )))
        }
        [] => unreachable!("blank lines are skipped before parsing"),
    };
    Ok(command)
}

fn parse_number(word: &str) -> Result<usize, UsageError> {
    match word.parse::<usize>() {
        Ok(number) if number >= 1 => Ok(number),
        _ => Err(UsageError(format!(
            "`{word}` is not a number from the list (1, 2, ...)"
        ))),
    }
}

fn parse_merge_fields(fields: &[&str]) -> Result<BTreeMap<String, Side>, UsageError> {
    let mut choices = BTreeMap::new();
    for field in fields {
        let (name, side) = match field.split_once('=') {
            Some((name, "local")) if !name.is_empty() => (name, Side::Local),
            Some((name, "server")) if !name.is_empty() => (name, Side::Server),
            _ => {
                return Err(UsageError(format!(
                    "`{field}` is not <field>=local or <field>=server"
                )))
            }
        };
        choices.insert(name.to_owned(), side);
    }
    assert_eq!(choices.is_empty(), fields.is_empty());
    Ok(choices)
}

#[cfg(test)]
mod tests {
    //! The command language: what parses to what, and that a mistyped line says what to
    //! type instead rather than doing something else.
    use super::*;

    fn check(line: &str, expected: Option<Result<Command, &str>>) {
        let actual = Command::parse(line).map(|parsed| parsed.map_err(|error| error.0));
        let expected = expected.map(|parsed| parsed.map_err(str::to_owned));
        assert_eq!(actual, expected, "{line:?}");
    }

    #[test]
    fn commands_parse() {
        check("", None);
        check("   # a comment", None);
        check(
            "add phone  Buy   milk ",
            Some(Ok(Command::Add {
                device: Device::Phone,
                title: "Buy milk".to_owned(),
            })),
        );
        check(
            "edit laptop 2 Call mum",
            Some(Ok(Command::Edit {
                device: Device::Laptop,
                number: 2,
                title: "Call mum".to_owned(),
            })),
        );
        check("list", Some(Ok(Command::List { device: None })));
        check(
            "sync laptop",
            Some(Ok(Command::Sync {
                device: Some(Device::Laptop),
            })),
        );
        check(
            "resolve phone 1 merge title=local done=server",
            Some(Ok(Command::Resolve {
                device: Device::Phone,
                number: 1,
                choice: Choice::Merge(BTreeMap::from([
                    ("done".to_owned(), Side::Server),
                    ("title".to_owned(), Side::Local),
                ])),
            })),
        );
    }

    #[test]
    fn mistakes_say_what_to_type() {
        check("add phone", Some(Err("usage: add <device> <title>")));
        check(
            "add tablet Buy milk",
            Some(Err("no device `tablet`: use phone or laptop")),
        );
        check(
            "done phone 0",
            Some(Err("`0` is not a number from the list (1, 2, ...)")),
        );
        check(
            "resolve phone 1 merge",
            Some(Err(
                "usage: resolve <device> <n> local | server | merge <field>=local|server ...",
            )),
        );
        check(
            "resolve phone 1 merge title=mine",
            Some(Err("`title=mine` is not <field>=local or <field>=server")),
        );
        check("fly", Some(Err("unknown command `fly` (type `help`)")));
    }
}
