//! Queries: filters, order and both kinds of pagination agree with a brute-force
//! evaluation in Rust over random records; bad field names and other bad input are
//! refused; a declared index is created at open, used by the plan, and dropped once no
//! longer declared.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::path::Path;
use sync_engine::{
    testing, ConfigError, DbLocation, Direction, Engine, EngineOptions, EntityConfig,
    EntityRegistry, Env, Field, Filter, ManualClock, Query, QueryError, QueryValue, Record,
    SeededEntropy, TenantId,
};

const ENTITY: &str = "Item";

fn open(dir: &Path, indexed: &[&str]) -> Engine {
    let mut config = EntityConfig::new(ENTITY).unwrap();
    config.indexed_fields = indexed.iter().map(|field| (*field).to_owned()).collect();
    let mut registry = EntityRegistry::new();
    registry.register(config).unwrap();
    registry
        .register(EntityConfig::new("Other").unwrap())
        .unwrap();
    let options = EngineOptions::new(
        DbLocation::new(dir),
        TenantId::parse("acme").unwrap(),
        registry,
    );
    let env = Env::new(ManualClock::new(testing::EPOCH_MS), SeededEntropy::new(3));
    Engine::open(options, env).unwrap()
}

// ---- the brute-force model ----------------------------------------------------------------

/// A field as SQLite's `json_extract` gives it, in SQLite's order: NULL, numbers, text.
#[derive(Clone, Debug)]
enum Shown {
    Null,
    Number(f64),
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Number,
    Text,
    Other,
}

fn shown(data: &Map<String, Value>, field: &str) -> (Shown, Kind) {
    match data.get(field) {
        None | Some(Value::Null) => (Shown::Null, Kind::Other),
        Some(Value::Bool(flag)) => (Shown::Number(f64::from(u8::from(*flag))), Kind::Bool),
        Some(Value::Number(number)) => (Shown::Number(number.as_f64().unwrap()), Kind::Number),
        Some(Value::String(text)) => (Shown::Text(text.clone()), Kind::Text),
        Some(other) => (Shown::Text(other.to_string()), Kind::Other),
    }
}

fn compare(a: &Shown, b: &Shown) -> Ordering {
    let rank = |value: &Shown| match value {
        Shown::Null => 0,
        Shown::Number(_) => 1,
        Shown::Text(_) => 2,
    };
    match (a, b) {
        (Shown::Number(x), Shown::Number(y)) => x.partial_cmp(y).unwrap(),
        (Shown::Text(x), Shown::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// A filter as data the model can evaluate and the engine can be given.
#[derive(Clone, Debug)]
struct ModelFilter {
    field: &'static str,
    comparison: &'static str,
    values: Vec<QueryValue>,
}

fn model_value(value: &QueryValue) -> (Shown, Kind) {
    match value {
        QueryValue::Bool(flag) => (Shown::Number(f64::from(u8::from(*flag))), Kind::Bool),
        QueryValue::Int(number) => (Shown::Number(*number as f64), Kind::Number),
        QueryValue::Float(number) => (Shown::Number(*number), Kind::Number),
        QueryValue::Text(text) => (Shown::Text(text.clone()), Kind::Text),
    }
}

impl ModelFilter {
    fn matches(&self, data: &Map<String, Value>) -> bool {
        let (field, kind) = shown(data, self.field);
        self.values.iter().any(|value| {
            let (value, value_kind) = model_value(value);
            let order = compare(&field, &value);
            kind == value_kind
                && match self.comparison {
                    "eq" | "in" => order == Ordering::Equal,
                    "lt" => order == Ordering::Less,
                    "lte" => order != Ordering::Greater,
                    "gt" => order == Ordering::Greater,
                    _ => order != Ordering::Less,
                }
        })
    }

    fn to_filter(&self) -> Filter {
        let field = Field(self.field);
        let value = self.values[0].clone();
        match self.comparison {
            "eq" => field.eq(value),
            "lt" => field.lt(value),
            "lte" => field.lte(value),
            "gt" => field.gt(value),
            "gte" => field.gte(value),
            _ => field.is_in(self.values.clone()),
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    space: Option<&'static str>,
    filters: Vec<ModelFilter>,
    order: Option<(&'static str, Direction)>,
    limit: usize,
}

impl Case {
    fn query(&self) -> Query {
        let mut query = Query::new(ENTITY);
        if let Some(space) = self.space {
            query = query.space(space);
        }
        for filter in &self.filters {
            query = query.filter(filter.to_filter());
        }
        if let Some((field, direction)) = self.order {
            query = query.order_by(field, direction);
        }
        query
    }

    /// Every record the query must return, in order: the brute-force evaluation.
    fn expected(&self, records: &[Record]) -> Vec<String> {
        let mut matching: Vec<&Record> = records
            .iter()
            .filter(|record| !record.is_deleted && record.entity == ENTITY)
            .filter(|record| self.space.is_none_or(|space| record.space_id == space))
            .filter(|record| self.filters.iter().all(|f| f.matches(&record.data)))
            .collect();
        let field = self.order.map(|(field, _)| field);
        matching.sort_by(|a, b| {
            let by_field = field.map_or(Ordering::Equal, |field| {
                compare(&shown(&a.data, field).0, &shown(&b.data, field).0)
            });
            by_field.then_with(|| a.client_id.cmp(&b.client_id))
        });
        if matches!(self.order, Some((_, Direction::Desc))) {
            matching.reverse();
        }
        matching
            .iter()
            .map(|record| record.client_id.clone())
            .collect()
    }
}

// ---- random data and queries --------------------------------------------------------------

fn any_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|flag| Some(json!(flag))),
        (-3i64..4).prop_map(|number| Some(json!(number))),
        (-6i64..7).prop_map(|half| Some(json!(half as f64 / 2.0))),
        prop::sample::select(vec!["", "a", "ab", "b", "B", "é"]).prop_map(|t| Some(json!(t))),
        Just(Some(json!([1, "a"]))),
    ]
}

fn any_query_value() -> impl Strategy<Value = QueryValue> {
    prop_oneof![
        any::<bool>().prop_map(QueryValue::Bool),
        (-3i64..4).prop_map(QueryValue::Int),
        (-6i64..7).prop_map(|half| QueryValue::Float(half as f64 / 2.0)),
        prop::sample::select(vec!["", "a", "ab", "b", "B"]).prop_map(QueryValue::from),
    ]
}

const FIELDS: [&str; 3] = ["p", "q", "missing"];

fn any_filter() -> impl Strategy<Value = ModelFilter> {
    let comparisons = vec!["eq", "lt", "lte", "gt", "gte", "in"];
    (
        prop::sample::select(FIELDS.to_vec()),
        prop::sample::select(comparisons),
        any_query_value(),
        prop::collection::vec(any_query_value(), 0..4),
    )
        .prop_map(|(field, comparison, value, more)| {
            let values = if comparison == "in" {
                // An IN list holds values of one kind.
                let kind = std::mem::discriminant(&model_value(&value).1);
                std::iter::once(value.clone())
                    .chain(more)
                    .filter(|v| std::mem::discriminant(&model_value(v).1) == kind)
                    .collect()
            } else {
                vec![value]
            };
            ModelFilter {
                field,
                comparison,
                values,
            }
        })
}

fn any_case() -> impl Strategy<Value = Case> {
    let direction = prop_oneof![Just(Direction::Asc), Just(Direction::Desc)];
    (
        prop::option::of(prop::sample::select(vec!["s1", "s2"])),
        prop::collection::vec(any_filter(), 0..3),
        prop::option::of((prop::sample::select(FIELDS.to_vec()), direction)),
        1usize..6,
    )
        .prop_map(|(space, filters, order, limit)| Case {
            space,
            filters,
            order,
            limit,
        })
}

/// Records: (space, data, deleted afterwards).
fn any_records() -> impl Strategy<Value = Vec<(bool, Value, bool)>> {
    let record = (
        any::<bool>(),
        any_value(),
        any_value(),
        prop::bool::weighted(0.2),
    );
    prop::collection::vec(record, 0..30).prop_map(|records| {
        records
            .into_iter()
            .map(|(in_s1, p, q, deleted)| {
                let mut data = Map::new();
                if let Some(p) = p {
                    data.insert("p".to_owned(), p);
                }
                if let Some(q) = q {
                    data.insert("q".to_owned(), q);
                }
                (in_s1, Value::Object(data), deleted)
            })
            .collect()
    })
}

fn fill(engine: &mut Engine, records: &[(bool, Value, bool)]) {
    for (in_s1, data, deleted) in records {
        let space = if *in_s1 { "s1" } else { "s2" };
        let id = engine.create(ENTITY, space, data.clone()).unwrap();
        if *deleted {
            engine.delete(&id).unwrap();
        }
    }
    engine.create("Other", "s1", json!({"p": 1})).unwrap();
}

fn ids(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|record| record.client_id.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // Proves a query's pages (keyset and offset), joined, are exactly the brute-force
    // evaluation of its filters and order, and `count` is its length.
    #[test]
    fn pages_match_the_brute_force_evaluation(records in any_records(), case in any_case(),
                                              indexed in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = open(dir.path(), if indexed { &["p", "q"] } else { &[] });
        fill(&mut engine, &records);
        let all = engine.all_records().unwrap();
        let expected = case.expected(&all);

        let query = case.query();
        prop_assert_eq!(ids(&engine.query(&query).unwrap().records), expected.clone());
        prop_assert_eq!(engine.count(&query).unwrap(), expected.len() as u64);

        let mut keyset = Vec::new();
        let mut page_query = query.clone().limit(case.limit);
        loop {
            let page = engine.query(&page_query).unwrap();
            prop_assert!(page.records.len() <= case.limit);
            keyset.extend(ids(&page.records));
            match page.next {
                Some(cursor) => page_query = query.clone().limit(case.limit).after(cursor),
                None => break,
            }
        }
        prop_assert_eq!(&keyset, &expected);

        let mut offset = Vec::new();
        for start in (0..=expected.len()).step_by(case.limit) {
            let page = engine.query(&query.clone().limit(case.limit).offset(start)).unwrap();
            offset.extend(ids(&page.records));
        }
        prop_assert_eq!(&offset, &expected);
    }
}

// Proves bad input is refused with a typed error before any read: bad field names in a
// filter, an order or a declared index, an unknown entity, a mixed IN list, a non-finite
// number, a cursor of another order.
#[test]
fn bad_queries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path(), &["p"]);
    for n in 0..3 {
        engine.create(ENTITY, "s1", json!({ "p": n })).unwrap();
    }
    for bad in [
        "",
        "p'); DROP TABLE records; --",
        "a b",
        "1p",
        "p.",
        "$.p",
        "p[0]",
    ] {
        let filtered = Query::new(ENTITY).filter(Field(bad).eq(1));
        assert!(
            matches!(engine.query(&filtered), Err(QueryError::InvalidField(field)) if field == bad),
            "{bad:?}"
        );
        let ordered = Query::new(ENTITY).order_by(bad, Direction::Asc);
        assert!(matches!(
            engine.count(&ordered),
            Err(QueryError::InvalidField(_))
        ));
    }
    assert!(matches!(
        engine.query(&Query::new("Nope")),
        Err(QueryError::UnknownEntity(_))
    ));
    let mixed = Query::new(ENTITY).filter(Field("p").is_in([QueryValue::Int(1), "a".into()]));
    assert!(matches!(
        engine.query(&mixed),
        Err(QueryError::MixedKinds(_))
    ));
    let nan = Query::new(ENTITY).filter(Field("p").lt(f64::NAN));
    assert!(matches!(engine.query(&nan), Err(QueryError::NotFinite(_))));
    let by_p = Query::new(ENTITY).order_by("p", Direction::Asc).limit(1);
    let cursor = engine.query(&by_p).unwrap().next.expect("more pages");
    let by_id = Query::new(ENTITY).limit(1).after(cursor);
    assert!(matches!(
        engine.query(&by_id),
        Err(QueryError::CursorOfAnotherOrder)
    ));
    assert_eq!(engine.count(&Query::new(ENTITY)).unwrap(), 3);

    let mut config = EntityConfig::new(ENTITY).unwrap();
    config.indexed_fields = vec!["p; DROP".to_owned()];
    assert_eq!(
        EntityRegistry::new().register(config).unwrap_err(),
        ConfigError::InvalidIndexedField("p; DROP".to_owned())
    );
}

// Proves a declared index serves a filtered, ordered page in one space (the plan searches
// it and sorts nothing), an undeclared field does not get one, and reopening without the
// declaration drops the index.
#[test]
fn the_plan_uses_the_declared_index() {
    let dir = tempfile::tempdir().unwrap();
    let query = |field: &str| {
        Query::new(ENTITY)
            .space("s1")
            .filter(Field(field).gte(2))
            .order_by(field, Direction::Asc)
            .limit(50)
    };
    let uses_index = |plan: &[String], field: &str| {
        plan.iter()
            .any(|step| step.contains(&format!("\"query_index:{ENTITY}:{field}\"")))
            || plan
                .iter()
                .any(|step| step.contains(&format!("query_index:{ENTITY}:{field} ")))
    };
    {
        let mut engine = open(dir.path(), &["priority"]);
        for n in 0..200 {
            let data = json!({ "priority": n % 7, "title": format!("t{n}") });
            engine.create(ENTITY, "s1", data).unwrap();
        }
        let plan = engine.query_plan(&query("priority")).unwrap();
        assert!(uses_index(&plan, "priority"), "{plan:?}");
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "the index gives the order: {plan:?}"
        );
        let plan = engine.query_plan(&query("title")).unwrap();
        assert!(!uses_index(&plan, "title"), "{plan:?}");
        assert!(
            plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
        let page = engine.query(&query("priority")).unwrap();
        assert_eq!(page.records.len(), 50);
        let priorities: Vec<i64> = page
            .records
            .iter()
            .map(|record| record.data["priority"].as_i64().unwrap())
            .collect();
        // 29 of the 200 records have priority 2 (n % 7 == 2), then come those with 3.
        assert_eq!(priorities, [vec![2; 29], vec![3; 21]].concat());
    }
    let engine = open(dir.path(), &[]);
    let plan = engine.query_plan(&query("priority")).unwrap();
    assert!(!uses_index(&plan, "priority"), "{plan:?}");
}
