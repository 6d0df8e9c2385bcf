//! The SQL of queries (`crate::query`) and of the indexes declared on fields.
//!
//! A validated query becomes one `SELECT` over `records`: the entity, the space and
//! `is_deleted = 0`, one term per filter on `json_extract(r.data, '$.field')` with a guard
//! on the field's JSON type (a filter matches only fields of its value's kind), the
//! keyset condition of the cursor, `ORDER BY` the field and the client id, `LIMIT` and
//! `OFFSET`. Field names reach the SQL only as JSON paths after validation, because an
//! expression index serves a query only when the query spells the same expression; every
//! value is a bound parameter.
//!
//! A declared index is `CREATE INDEX "query_index:{entity}:{field}" ON records (entity,
//! space_id, json_extract(data, '$.field'), client_id)`, created at open if missing; an
//! index of that naming that is no longer declared is dropped. This module must never
//! write a row.

use super::{record_from_row, RECORD_COLUMNS};
use crate::query::{Comparison, Direction, Query, QueryCursor, QueryPage, QueryValue, ValueKind};
use crate::registry::EntityRegistry;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use std::collections::BTreeSet;

/// The prefix of every declared index's name.
const INDEX_PREFIX: &str = "query_index:";

/// The index name of `entity`'s field `field` (entity names hold no `:`, fields neither).
pub fn index_name(entity: &str, field: &str) -> String {
    format!("{INDEX_PREFIX}{entity}:{field}")
}

/// The expression a query and its index both spell for a (validated) field.
fn field_expression(table: &str, field: &str) -> String {
    format!("json_extract({table}data, '$.{field}')")
}

/// Creates the declared indexes that are missing and drops the ones no longer declared.
pub fn ensure_indexes(conn: &Connection, registry: &EntityRegistry) -> rusqlite::Result<()> {
    let mut declared = BTreeSet::new();
    for config in registry.entities() {
        for field in &config.indexed_fields {
            declared.insert(index_name(config.name(), field));
            conn.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS \"{}\" ON records (entity, space_id, {}, client_id)",
                index_name(config.name(), field),
                field_expression("", field)
            ))?;
        }
    }
    let existing: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND substr(name, 1, ?1) = ?2 \
             ORDER BY name",
        )?
        .query_map(
            rusqlite::params![INDEX_PREFIX.len() as i64, INDEX_PREFIX],
            |row| row.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for name in existing.iter().filter(|name| !declared.contains(*name)) {
        conn.execute_batch(&format!("DROP INDEX \"{}\"", name.replace('"', "\"\"")))?;
    }
    Ok(())
}

/// The `WHERE` clause of a query's filters (entity, space, live, filters) and its
/// parameters, to which the caller may add more.
struct Sql {
    text: String,
    params: Vec<SqlValue>,
}

impl Sql {
    fn bind(&mut self, value: SqlValue) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }
}

fn sql_value(value: &QueryValue) -> SqlValue {
    match value {
        QueryValue::Bool(flag) => SqlValue::Integer(i64::from(*flag)),
        QueryValue::Int(number) => SqlValue::Integer(*number),
        QueryValue::Float(number) => SqlValue::Real(*number),
        QueryValue::Text(text) => SqlValue::Text(text.clone()),
    }
}

/// The condition that the field's JSON type is of `kind`.
fn kind_guard(field: &str, kind: ValueKind) -> String {
    let json_type = format!("json_type(r.data, '$.{field}')");
    match kind {
        ValueKind::Bool => format!("({json_type} = 'true' OR {json_type} = 'false')"),
        ValueKind::Number => format!("({json_type} = 'integer' OR {json_type} = 'real')"),
        ValueKind::Text => format!("{json_type} = 'text'"),
    }
}

fn filtered(query: &Query) -> Sql {
    let mut sql = Sql {
        text: String::new(),
        params: Vec::new(),
    };
    let entity = sql.bind(SqlValue::Text(query.entity.clone()));
    sql.text = format!("r.entity = {entity} AND r.is_deleted = 0");
    if let Some(space_id) = &query.space_id {
        let space = sql.bind(SqlValue::Text(space_id.clone()));
        sql.text.push_str(&format!(" AND r.space_id = {space}"));
    }
    for filter in &query.filters {
        let field = field_expression("r.", &filter.field);
        let Some(kind) = filter.values.first().map(QueryValue::kind) else {
            // `IN` an empty list matches nothing.
            sql.text.push_str(" AND 0");
            continue;
        };
        let operator = match filter.comparison {
            Comparison::Eq => "=",
            Comparison::Lt => "<",
            Comparison::Lte => "<=",
            Comparison::Gt => ">",
            Comparison::Gte => ">=",
            Comparison::In => "IN",
        };
        let values: Vec<String> = filter
            .values
            .iter()
            .map(|value| sql.bind(sql_value(value)))
            .collect();
        let operand = if filter.comparison == Comparison::In {
            format!("({})", values.join(", "))
        } else {
            values.concat()
        };
        let guard = kind_guard(&filter.field, kind);
        sql.text
            .push_str(&format!(" AND {field} {operator} {operand} AND {guard}"));
    }
    sql
}

/// The `SELECT` of one page of the query: its text and parameters. Its last column is
/// the sort value.
fn page_sql(query: &Query) -> Sql {
    let mut sql = filtered(query);
    let sort = query
        .order
        .as_ref()
        .map(|(field, direction)| (field_expression("r.", field), *direction));
    let direction = sort
        .as_ref()
        .map_or(Direction::Asc, |(_, direction)| *direction);
    let (after, before) = match direction {
        Direction::Asc => (">", "ASC"),
        Direction::Desc => ("<", "DESC"),
    };
    if let Some(cursor) = &query.after {
        let id = sql.bind(SqlValue::Text(cursor.client_id.clone()));
        let keyset = match &sort {
            None => format!("r.client_id > {id}"),
            Some((field, _)) if cursor.value == SqlValue::Null => match direction {
                Direction::Asc => {
                    format!("({field} IS NULL AND r.client_id > {id}) OR {field} IS NOT NULL")
                }
                Direction::Desc => format!("{field} IS NULL AND r.client_id < {id}"),
            },
            Some((field, _)) => {
                let value = sql.bind(cursor.value.clone());
                let nulls_last = match direction {
                    Direction::Asc => String::new(),
                    Direction::Desc => format!(" OR {field} IS NULL"),
                };
                format!(
                    "{field} {after} {value} OR ({field} = {value} AND r.client_id {after} {id}){nulls_last}"
                )
            }
        };
        sql.text.push_str(&format!(" AND ({keyset})"));
    }
    let (sort_column, order_by) = match &sort {
        None => ("NULL".to_owned(), format!("r.client_id {before}")),
        Some((field, _)) => (
            field.clone(),
            format!("{field} {before}, r.client_id {before}"),
        ),
    };
    // One row more than the page shows whether another page follows.
    let limit = query.limit.map_or(-1, |limit| limit as i64 + 1);
    let limit = sql.bind(SqlValue::Integer(limit));
    let offset = sql.bind(SqlValue::Integer(query.offset as i64));
    sql.text = format!(
        "SELECT {RECORD_COLUMNS}, {sort_column} FROM records r WHERE {} \
         ORDER BY {order_by} LIMIT {limit} OFFSET {offset}",
        sql.text
    );
    sql
}

/// One page of the query (validated by the caller).
pub fn page(conn: &Connection, query: &Query) -> rusqlite::Result<QueryPage> {
    let sql = page_sql(query);
    let mut statement = conn.prepare_cached(&sql.text)?;
    let mut rows = statement.query(rusqlite::params_from_iter(sql.params.iter()))?;
    let mut records = Vec::new();
    let mut last_value = SqlValue::Null;
    let mut more = false;
    while let Some(row) = rows.next()? {
        if query.limit.is_some_and(|limit| records.len() == limit) {
            more = true;
            break;
        }
        records.push(record_from_row(row)?);
        last_value = row.get(9)?;
    }
    let next = match records.last() {
        Some(last) if more => Some(QueryCursor {
            order: query.order.clone(),
            value: last_value,
            client_id: last.client_id.clone(),
        }),
        _ => None,
    };
    Ok(QueryPage { records, next })
}

/// How many records the query's filters match.
pub fn count(conn: &Connection, query: &Query) -> rusqlite::Result<u64> {
    let sql = filtered(query);
    let text = format!("SELECT count(*) FROM records r WHERE {}", sql.text);
    conn.prepare_cached(&text)?
        .query_row(rusqlite::params_from_iter(sql.params.iter()), |row| {
            row.get::<_, i64>(0)
        })
        .map(|count| count as u64)
}

/// The plan SQLite chose for a page of `query`, one line per step (`EXPLAIN QUERY PLAN`).
pub fn plan(conn: &Connection, query: &Query) -> rusqlite::Result<Vec<String>> {
    let sql = page_sql(query);
    let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))?;
    let rows = statement.query_map(rusqlite::params_from_iter(sql.params.iter()), |row| {
        row.get::<_, String>(3)
    })?;
    rows.collect()
}
