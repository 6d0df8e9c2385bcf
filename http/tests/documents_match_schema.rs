//! Every operation `engine/schema.graphql` declares has a document here, and each
//! document agrees with the SDL: a `mutation` for a `Mutation` field and a `query` for a
//! `Query` field, one variable per argument with the argument's type, each argument
//! passed its own variable, and a selection that names every field of the return type,
//! nested object types included. A field added to the SDL therefore cannot go missing
//! from the documents unnoticed. The SDL is read at test time, as the file is now.
//!
//! The parsing here is just enough for these two texts (no parser dependency): the SDL
//! as this repository writes it, and the documents as `sync_http` writes them.

use std::collections::BTreeMap;
use sync_http::document_for;

/// A field of an SDL type: its arguments (name → type, defaults dropped) and its type.
#[derive(Clone, Debug)]
struct SdlField {
    arguments: BTreeMap<String, String>,
    type_text: String,
}

/// `type` and `input` declarations: type name → field name → field.
type Sdl = BTreeMap<String, BTreeMap<String, SdlField>>;

fn read_sdl() -> Sdl {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/schema.graphql");
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    let mut sdl = Sdl::new();
    let mut current: Option<String> = None;
    let mut in_description = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("\"\"\"") {
            // A one-line description opens and closes on the same line.
            if !(line.len() > 3 && line.ends_with("\"\"\"")) {
                in_description = !in_description;
            }
            continue;
        }
        if in_description || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if current.is_none() {
            if words.len() >= 3 && (words[0] == "type" || words[0] == "input") && words[2] == "{" {
                current = Some(words[1].to_owned());
                sdl.entry(words[1].to_owned()).or_default();
            }
            continue;
        }
        if line == "}" {
            current = None;
            continue;
        }
        let type_name = current.as_ref().expect("inside a type");
        let (name, field) = parse_sdl_field(line);
        let fields = sdl.get_mut(type_name).expect("the type's entry");
        assert!(
            fields.insert(name, field).is_none(),
            "{line}: declared twice"
        );
    }
    assert!(current.is_none(), "a type is not closed");
    sdl
}

/// `name(a: T, b: U = 1): R` or `name: R`.
fn parse_sdl_field(line: &str) -> (String, SdlField) {
    let name_end = line
        .find([':', '('])
        .unwrap_or_else(|| panic!("not a field: {line}"));
    let name = line[..name_end].trim().to_owned();
    let (arguments, rest) = if line[name_end..].starts_with('(') {
        let close = line.find(')').expect("arguments close");
        (
            parse_arguments(&line[name_end + 1..close]),
            &line[close + 1..],
        )
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let type_text = rest
        .trim()
        .strip_prefix(':')
        .unwrap_or_else(|| panic!("no type: {line}"))
        .trim()
        .to_owned();
    (
        name,
        SdlField {
            arguments,
            type_text,
        },
    )
}

/// `a: T, b: U = 1` → {a: T, b: U}; a leading `$` (variable definitions) is dropped.
fn parse_arguments(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .map(|argument| {
            let (name, type_text) = argument.split_once(':').expect("name: Type");
            let type_text = type_text.split('=').next().expect("a type");
            (
                name.trim().trim_start_matches('$').to_owned(),
                type_text.trim().to_owned(),
            )
        })
        .collect()
}

/// `[SyncResultItem!]!` → `SyncResultItem`.
fn base_type(type_text: &str) -> &str {
    type_text.trim_matches(|c| c == '[' || c == ']' || c == '!')
}

/// One field of a selection set, with its own selection (empty for a leaf).
#[derive(Debug)]
struct Selected {
    name: String,
    children: Vec<Selected>,
}

/// The selection set whose `{` was just consumed, up to its `}`.
fn parse_selection(tokens: &mut std::slice::Iter<'_, String>) -> Vec<Selected> {
    let mut fields: Vec<Selected> = Vec::new();
    while let Some(token) = tokens.next() {
        match token.as_str() {
            "}" => return fields,
            "{" => {
                let parent = fields.last_mut().expect("a selection set follows a field");
                assert!(parent.children.is_empty(), "two selection sets");
                parent.children = parse_selection(tokens);
                assert!(!parent.children.is_empty(), "an empty selection set");
            }
            name => fields.push(Selected {
                name: name.to_owned(),
                children: Vec::new(),
            }),
        }
    }
    panic!("a selection set is not closed")
}

/// A document taken apart: `(keyword, operation name, variables, field, field
/// arguments, selection of the field)`.
struct Document {
    keyword: String,
    operation_name: String,
    variables: BTreeMap<String, String>,
    field: String,
    field_arguments: BTreeMap<String, String>,
    selection: Vec<Selected>,
}

fn parse_document(text: &str) -> Document {
    let (head, rest) = text.split_once('(').expect("variable definitions");
    let (keyword, operation_name) = head.trim().split_once(' ').expect("keyword and name");
    let (variables, rest) = rest.split_once(')').expect("variable definitions close");
    let rest = rest
        .trim()
        .strip_prefix('{')
        .expect("the operation's selection");
    let (field, rest) = rest.split_once('(').expect("the field's arguments");
    let (field_arguments, rest) = rest.split_once(')').expect("the arguments close");
    let spaced = rest.replace('{', " { ").replace('}', " } ");
    let tokens: Vec<String> = spaced.split_whitespace().map(str::to_owned).collect();
    let mut tokens = tokens.iter();
    assert_eq!(tokens.next().map(String::as_str), Some("{"), "{text}");
    let selection = parse_selection(&mut tokens);
    assert_eq!(tokens.next().map(String::as_str), Some("}"), "{text}");
    assert_eq!(tokens.next(), None, "text after the operation: {text}");
    Document {
        keyword: keyword.to_owned(),
        operation_name: operation_name.to_owned(),
        variables: parse_arguments(variables),
        field: field.trim().to_owned(),
        field_arguments: parse_arguments(field_arguments),
        selection,
    }
}

/// `selection` names every field of `type_name`, and nothing else; object-typed fields
/// have a selection that does the same for their type, and scalar fields have none.
fn check_selection(sdl: &Sdl, type_name: &str, selection: &[Selected], path: &str) {
    let fields = sdl
        .get(type_name)
        .unwrap_or_else(|| panic!("{path}: {type_name} is not a type in the SDL"));
    let selected: Vec<&str> = selection.iter().map(|field| field.name.as_str()).collect();
    let declared: Vec<&str> = fields.keys().map(String::as_str).collect();
    let mut selected_sorted = selected.clone();
    selected_sorted.sort_unstable();
    selected_sorted.dedup();
    assert_eq!(
        selected.len(),
        selected_sorted.len(),
        "{path}: a field twice"
    );
    assert_eq!(
        selected_sorted, declared,
        "{path}: the selection and {type_name}"
    );
    for field in selection {
        let field_type = base_type(&fields[&field.name].type_text);
        let path = format!("{path}.{}", field.name);
        if sdl.contains_key(field_type) {
            assert!(
                !field.children.is_empty(),
                "{path}: {field_type} needs a selection"
            );
            check_selection(sdl, field_type, &field.children, &path);
        } else {
            assert!(
                field.children.is_empty(),
                "{path}: a scalar has no selection"
            );
        }
    }
}

fn check_operations(sdl: &Sdl, root_type: &str, keyword: &str) -> usize {
    let operations = sdl
        .get(root_type)
        .unwrap_or_else(|| panic!("no {root_type} in the SDL"));
    for (name, declared) in operations {
        let text = document_for(name).unwrap_or_else(|error| panic!("{error}"));
        let document = parse_document(&text);
        assert_eq!(document.keyword, keyword, "{text}");
        assert_eq!(&document.operation_name, name, "{text}");
        assert_eq!(&document.field, name, "{text}");
        assert_eq!(document.variables, declared.arguments, "{name}: variables");
        let passed: BTreeMap<String, String> = declared
            .arguments
            .keys()
            .map(|argument| (argument.clone(), format!("${argument}")))
            .collect();
        assert_eq!(document.field_arguments, passed, "{name}: arguments");
        let return_type = base_type(&declared.type_text);
        check_selection(sdl, return_type, &document.selection, name);
    }
    operations.len()
}

#[test]
fn every_sdl_operation_has_a_document_that_selects_every_field() {
    let sdl = read_sdl();
    let pushes = check_operations(&sdl, "Mutation", "mutation");
    let pulls = check_operations(&sdl, "Query", "query");
    // Space, Group and Identity, each both ways.
    assert_eq!((pushes, pulls), (3, 3));
    for name in ["syncPushSpace", "syncPushGroup", "syncPushIdentity"] {
        assert!(sdl["Mutation"].contains_key(name), "{name}");
    }
    for name in ["syncPullSpace", "syncPullGroup", "syncPullIdentity"] {
        assert!(sdl["Query"].contains_key(name), "{name}");
    }
}

// Proves the checks above can fail: a selection missing a field of the SDL, or naming
// one the SDL lacks, is caught, and so is a scalar given a selection.
#[test]
fn the_selection_check_catches_a_missing_or_extra_field() {
    let sdl = read_sdl();
    let document = parse_document(&document_for("syncPullSpace").unwrap());
    let mut missing = document.selection;
    let removed = missing.pop().expect("a field");
    let caught = std::panic::catch_unwind(|| {
        check_selection(&sdl, "SyncPullResponse", &missing, "syncPullSpace")
    });
    assert!(caught.is_err(), "a missing field passed the check");

    missing.push(removed);
    missing.push(Selected {
        name: "notInTheSdl".into(),
        children: Vec::new(),
    });
    let caught = std::panic::catch_unwind(|| {
        check_selection(&sdl, "SyncPullResponse", &missing, "syncPullSpace")
    });
    assert!(caught.is_err(), "an extra field passed the check");

    missing.pop();
    missing[0].children.push(Selected {
        name: "id".into(),
        children: Vec::new(),
    });
    let caught = std::panic::catch_unwind(|| {
        check_selection(&sdl, "SyncPullResponse", &missing, "syncPullSpace")
    });
    assert!(
        caught.is_err(),
        "a scalar with a selection passed the check"
    );
}

// Proves the SDL reader sees the nested types the push selection must cover.
#[test]
fn the_sdl_reader_finds_the_response_types() {
    let sdl = read_sdl();
    let names = |type_name: &str| -> Vec<String> { sdl[type_name].keys().cloned().collect() };
    assert_eq!(
        names("ConflictPayload"),
        [
            "serverData",
            "serverIsDeleted",
            "serverUpdatedAt",
            "serverVersion"
        ]
    );
    assert!(names("SyncPushResponse").contains(&"cursorBefore".to_owned()));
    assert_eq!(
        sdl["SyncResultItem"]["conflict"].type_text,
        "ConflictPayload"
    );
    assert_eq!(
        sdl["Query"]["syncPullSpace"].arguments["limit"], "Int",
        "a default is not part of the type"
    );
}
