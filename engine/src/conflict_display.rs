//! A stored [`Conflict`] as plain text: the spec's "Conflict Resolution" dialog (§5.3).
//!
//! The rendering shows only the fields that differ, Local and Server side by side, and the
//! three choices. Widths are computed from the content (in characters), so nothing is
//! cut off; values are shown as JSON, so a string is quoted and `"1"` is told apart from
//! `1`. This module only formats: it reads nothing and decides nothing.

use crate::record::Conflict;
use serde_json::Value;
use std::fmt;

const TITLE: &str = "Conflict Resolution";
const CHOICES: &str = "[Keep Local] [Use Server] [Merge]";
const LOCAL_HEADER: &str = "Local";
const SERVER_HEADER: &str = "Server";
/// Shown for a field that one side does not have.
const ABSENT: &str = "(absent)";

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let diffs = self.changed_fields();
        let cells: Vec<(String, String)> = diffs
            .iter()
            .map(|diff| (cell(diff.local.as_ref()), cell(diff.server.as_ref())))
            .collect();
        let local_width = column_width(LOCAL_HEADER, cells.iter().map(|(local, _)| local));
        let server_width = column_width(SERVER_HEADER, cells.iter().map(|(_, server)| server));

        let mut body: Vec<String> = vec![
            format!("Record: {} {}", self.entity, self.label()),
            String::new(),
        ];
        if diffs.is_empty() {
            body.push("No field differs.".to_owned());
            body.push(String::new());
        }
        for (diff, (local, server)) in diffs.iter().zip(&cells) {
            body.push(format!("Field: {}", diff.field));
            body.extend(side_by_side(
                local_width,
                server_width,
                [LOCAL_HEADER, SERVER_HEADER],
                [local, server],
            ));
            body.push(String::new());
        }
        if self.server_is_deleted {
            body.push("The server has deleted this record.".to_owned());
            body.push(String::new());
        }
        body.push(CHOICES.to_owned());

        let width = body
            .iter()
            .map(|line| line.chars().count())
            .chain([TITLE.chars().count()])
            .max()
            .expect("the title is always there");
        writeln!(f, "┌{}┐", "─".repeat(width + 2))?;
        writeln!(f, "│ {TITLE:<width$} │")?;
        writeln!(f, "├{}┤", "─".repeat(width + 2))?;
        for line in &body {
            writeln!(f, "│ {line:<width$} │")?;
        }
        write!(f, "└{}┘", "─".repeat(width + 2))
    }
}

impl Conflict {
    /// How the dialog names the record: its `name` or `title` field (local side first),
    /// else its client id.
    fn label(&self) -> String {
        ["name", "title"]
            .iter()
            .find_map(|field| {
                self.local_data
                    .get(*field)
                    .or_else(|| self.server_data.get(*field))
            })
            .map_or_else(
                || format!("(id {})", self.client_id),
                |value| cell(Some(value)),
            )
    }
}

/// One value as the dialog shows it.
fn cell(value: Option<&Value>) -> String {
    match value {
        Some(value) => value.to_string(),
        None => ABSENT.to_owned(),
    }
}

fn column_width<'a>(header: &str, cells: impl Iterator<Item = &'a String>) -> usize {
    cells
        .map(|cell| cell.chars().count())
        .chain([header.chars().count()])
        .max()
        .expect("the header is always there")
}

/// A two-column table: a header row and one value row.
fn side_by_side(
    local_width: usize,
    server_width: usize,
    headers: [&str; 2],
    values: [&str; 2],
) -> [String; 5] {
    let rule = |left: &str, middle: &str, right: &str| {
        format!(
            "{left}{}{middle}{}{right}",
            "─".repeat(local_width + 2),
            "─".repeat(server_width + 2)
        )
    };
    let row =
        |[local, server]: [&str; 2]| format!("│ {local:<local_width$} │ {server:<server_width$} │");
    [
        rule("┌", "┬", "┐"),
        row(headers),
        rule("├", "┼", "┤"),
        row(values),
        rule("└", "┴", "┘"),
    ]
}

#[cfg(test)]
mod tests {
    //! Snapshot tests: the exact text of the dialog for typical and edge-case conflicts.
    use super::*;
    use crate::hlc::HlcStamp;
    use serde_json::{json, Map};

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().expect("object").clone()
    }

    fn conflict(local: Value, server: Value) -> Conflict {
        Conflict {
            id: 1,
            entity: "Space".to_owned(),
            client_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
            server_id: Some("srv-0000000001".to_owned()),
            space_id: "space-1".to_owned(),
            local_version: 3,
            local_updated_at: HlcStamp(7),
            local_data: object(local),
            server_version: 2,
            server_updated_at: HlcStamp(7),
            server_data: object(server),
            server_is_deleted: false,
        }
    }

    #[test]
    fn renders_the_spec_example() {
        let conflict = conflict(
            json!({"name": "My Space", "icon": "star"}),
            json!({"name": "Workspace", "icon": "star"}),
        );
        let expected = "\
┌───────────────────────────────────┐
│ Conflict Resolution               │
├───────────────────────────────────┤
│ Record: Space \"My Space\"          │
│                                   │
│ Field: name                       │
│ ┌────────────┬─────────────┐      │
│ │ Local      │ Server      │      │
│ ├────────────┼─────────────┤      │
│ │ \"My Space\" │ \"Workspace\" │      │
│ └────────────┴─────────────┘      │
│                                   │
│ [Keep Local] [Use Server] [Merge] │
└───────────────────────────────────┘";
        assert_eq!(conflict.to_string(), expected);
    }

    #[test]
    fn several_fields_share_column_widths_and_absent_fields_are_marked() {
        let conflict = conflict(
            json!({"title": "Roadmap", "size": 1, "tags": ["a", "b"]}),
            json!({"title": "Roadmap 2024 (shared with the whole team)", "size": "1"}),
        );
        let expected = "\
┌─────────────────────────────────────────────────────────────┐
│ Conflict Resolution                                         │
├─────────────────────────────────────────────────────────────┤
│ Record: Space \"Roadmap\"                                     │
│                                                             │
│ Field: size                                                 │
│ ┌───────────┬─────────────────────────────────────────────┐ │
│ │ Local     │ Server                                      │ │
│ ├───────────┼─────────────────────────────────────────────┤ │
│ │ 1         │ \"1\"                                         │ │
│ └───────────┴─────────────────────────────────────────────┘ │
│                                                             │
│ Field: tags                                                 │
│ ┌───────────┬─────────────────────────────────────────────┐ │
│ │ Local     │ Server                                      │ │
│ ├───────────┼─────────────────────────────────────────────┤ │
│ │ [\"a\",\"b\"] │ (absent)                                    │ │
│ └───────────┴─────────────────────────────────────────────┘ │
│                                                             │
│ Field: title                                                │
│ ┌───────────┬─────────────────────────────────────────────┐ │
│ │ Local     │ Server                                      │ │
│ ├───────────┼─────────────────────────────────────────────┤ │
│ │ \"Roadmap\" │ \"Roadmap 2024 (shared with the whole team)\" │ │
│ └───────────┴─────────────────────────────────────────────┘ │
│                                                             │
│ [Keep Local] [Use Server] [Merge]                           │
└─────────────────────────────────────────────────────────────┘";
        assert_eq!(conflict.to_string(), expected);
    }

    #[test]
    fn a_record_without_a_name_is_named_by_its_client_id() {
        let mut conflict = conflict(json!({"n": 1}), json!({"n": 2}));
        conflict.server_is_deleted = true;
        let expected = "\
┌─────────────────────────────────────────────────────────┐
│ Conflict Resolution                                     │
├─────────────────────────────────────────────────────────┤
│ Record: Space (id 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b) │
│                                                         │
│ Field: n                                                │
│ ┌───────┬────────┐                                      │
│ │ Local │ Server │                                      │
│ ├───────┼────────┤                                      │
│ │ 1     │ 2      │                                      │
│ └───────┴────────┘                                      │
│                                                         │
│ The server has deleted this record.                     │
│                                                         │
│ [Keep Local] [Use Server] [Merge]                       │
└─────────────────────────────────────────────────────────┘";
        assert_eq!(conflict.to_string(), expected);
    }
}
