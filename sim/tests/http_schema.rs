//! The served schema is the contract: the GraphQL schema `syncsim serve` executes has
//! exactly the types, fields, arguments and defaults of `engine/schema.graphql`.

use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use std::collections::BTreeMap;
use sync_sim::http::graphql::{schema, Backend};

struct Unreachable;

impl Backend for Unreachable {
    fn handle(&self, _: &str, _: &str, _: serde_json::Value) -> serde_json::Value {
        unreachable!("the schema test runs no request")
    }
}

/// Every type the SDL defines, as one line per field: `name(args): Type`.
fn shapes(sdl: &str) -> BTreeMap<String, Vec<String>> {
    let document = async_graphql::parser::parse_schema(sdl).expect("SDL parses");
    let mut shapes = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else {
            continue;
        };
        let definition = definition.node;
        let name = definition.name.node.to_string();
        let input_value = |value: &async_graphql::parser::types::InputValueDefinition| {
            let default = value
                .default_value
                .as_ref()
                .map_or_else(String::new, |default| format!(" = {}", default.node));
            format!("{}: {}{default}", value.name.node, value.ty.node)
        };
        let lines = match &definition.kind {
            TypeKind::Scalar => vec!["scalar".to_owned()],
            TypeKind::Object(object) => object
                .fields
                .iter()
                .map(|field| {
                    let field = &field.node;
                    let arguments: Vec<String> = field
                        .arguments
                        .iter()
                        .map(|argument| input_value(&argument.node))
                        .collect();
                    format!(
                        "{}({}): {}",
                        field.name.node,
                        arguments.join(", "),
                        field.ty.node
                    )
                })
                .collect(),
            TypeKind::InputObject(input) => input
                .fields
                .iter()
                .map(|field| format!("input {}", input_value(&field.node)))
                .collect(),
            other => panic!("the contract has no {other:?} types"),
        };
        let mut lines = lines;
        lines.sort();
        shapes.insert(name, lines);
    }
    shapes
}

#[test]
fn the_served_schema_is_engine_schema_graphql() {
    let contract_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../engine/schema.graphql");
    let contract = std::fs::read_to_string(contract_path).expect("engine/schema.graphql");
    let contract = shapes(&contract);
    let served = shapes(&schema(Unreachable).sdl());
    // GraphQL's own scalars appear in a generated schema only where it chooses to print
    // them; the contract declares only its own.
    let builtin = ["String", "Int", "Float", "Boolean", "ID"];
    let served: BTreeMap<String, Vec<String>> = served
        .into_iter()
        .filter(|(name, _)| !builtin.contains(&name.as_str()))
        .collect();
    assert_eq!(
        contract.keys().collect::<Vec<_>>(),
        served.keys().collect::<Vec<_>>(),
        "the served schema defines other types than the contract"
    );
    for (name, fields) in &contract {
        assert_eq!(
            Some(fields),
            served.get(name),
            "type {name} differs between engine/schema.graphql and the served schema"
        );
    }
}
