//! Queries over one entity's records: filters on JSON fields, an order, pages.
//!
//! `Engine::list` returns every record of an entity (and space); a [`Query`] asks for a
//! page of them: filters on fields of the records' data (equality, range, `IN`), an order
//! by one field with the client id breaking ties, a limit, and keyset ([`Query::after`])
//! or offset pagination; [`Engine::count`] counts what the filters match. Deleted
//! records never match.
//!
//! How values compare, exactly: a field is read as SQLite's `json_extract` reads it. A
//! filter matches only fields of its value's kind — a boolean filter only `true`/`false`
//! fields, a number filter only numbers (integers and reals compare by value), a text
//! filter only strings (compared bytewise) — so a missing field, `null`, or a field of
//! another kind never matches. The order puts missing and `null` fields first (last when
//! descending), then booleans and numbers by value (`false` as 0, `true` as 1), then
//! strings bytewise, then arrays and objects by their JSON text.
//!
//! Field names are dot-separated names (`priority`, `address.city`) of ASCII letters,
//! digits and `_`, not starting with a digit, at most 64 characters: the store puts them
//! into SQL as JSON paths (an expression index is used only when the query spells the
//! same expression), so anything else is refused before any SQL is built. Values are
//! always bound as parameters. Declared indexes (`EntityConfig::indexed_fields`) make a
//! filter or an order on the field use an index within a space.
//!
//! This module owns the query's description and its validation; it must never write SQL
//! (that is `store/query.rs`).

use crate::engine::Engine;
use crate::error::QueryError;
use crate::record::Record;

/// A field of the records' data, to build a filter: `Field("priority").gte(2)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a>(pub &'a str);

/// A value a filter compares with.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryValue {
    Bool(bool),
    Int(i64),
    /// A finite number (`NaN` and infinities are refused).
    Float(f64),
    Text(String),
}

/// The kind of a value: a filter matches only fields of its value's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueKind {
    Bool,
    Number,
    Text,
}

impl QueryValue {
    pub(crate) fn kind(&self) -> ValueKind {
        match self {
            QueryValue::Bool(_) => ValueKind::Bool,
            QueryValue::Int(_) | QueryValue::Float(_) => ValueKind::Number,
            QueryValue::Text(_) => ValueKind::Text,
        }
    }
}

impl From<bool> for QueryValue {
    fn from(value: bool) -> QueryValue {
        QueryValue::Bool(value)
    }
}

impl From<i64> for QueryValue {
    fn from(value: i64) -> QueryValue {
        QueryValue::Int(value)
    }
}

impl From<i32> for QueryValue {
    fn from(value: i32) -> QueryValue {
        QueryValue::Int(value.into())
    }
}

impl From<f64> for QueryValue {
    fn from(value: f64) -> QueryValue {
        QueryValue::Float(value)
    }
}

impl From<&str> for QueryValue {
    fn from(value: &str) -> QueryValue {
        QueryValue::Text(value.to_owned())
    }
}

impl From<String> for QueryValue {
    fn from(value: String) -> QueryValue {
        QueryValue::Text(value)
    }
}

/// How a filter compares the field with its value(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
    /// Equal to one of the values (all of one kind; none matches nothing).
    In,
}

/// One condition on a field, built by [`Field`]; a query's filters must all hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub(crate) field: String,
    pub(crate) comparison: Comparison,
    pub(crate) values: Vec<QueryValue>,
}

impl Field<'_> {
    fn compare(self, comparison: Comparison, values: Vec<QueryValue>) -> Filter {
        Filter {
            field: self.0.to_owned(),
            comparison,
            values,
        }
    }

    pub fn eq(self, value: impl Into<QueryValue>) -> Filter {
        self.compare(Comparison::Eq, vec![value.into()])
    }

    pub fn lt(self, value: impl Into<QueryValue>) -> Filter {
        self.compare(Comparison::Lt, vec![value.into()])
    }

    pub fn lte(self, value: impl Into<QueryValue>) -> Filter {
        self.compare(Comparison::Lte, vec![value.into()])
    }

    pub fn gt(self, value: impl Into<QueryValue>) -> Filter {
        self.compare(Comparison::Gt, vec![value.into()])
    }

    pub fn gte(self, value: impl Into<QueryValue>) -> Filter {
        self.compare(Comparison::Gte, vec![value.into()])
    }

    /// The field equals one of `values`.
    pub fn is_in<V: Into<QueryValue>>(self, values: impl IntoIterator<Item = V>) -> Filter {
        let values = values.into_iter().map(Into::into).collect();
        self.compare(Comparison::In, values)
    }
}

/// Sort direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// Where a page ended: pass it to [`Query::after`] for the next page of the same query.
/// It holds the last record's sort value and client id, so records written meanwhile
/// neither repeat nor shift the pages.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryCursor {
    pub(crate) order: Option<(String, Direction)>,
    pub(crate) value: rusqlite::types::Value,
    pub(crate) client_id: String,
}

/// One page of a query's records, and the cursor of the next page when there may be one
/// (the page was full and more records matched).
#[derive(Clone, Debug, PartialEq)]
pub struct QueryPage {
    pub records: Vec<Record>,
    pub next: Option<QueryCursor>,
}

/// A query over one entity's live records (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub(crate) entity: String,
    pub(crate) space_id: Option<String>,
    pub(crate) filters: Vec<Filter>,
    pub(crate) order: Option<(String, Direction)>,
    pub(crate) limit: Option<usize>,
    pub(crate) offset: usize,
    pub(crate) after: Option<QueryCursor>,
}

impl Query {
    /// Every live record of `entity`, ordered by client id.
    pub fn new(entity: &str) -> Query {
        Query {
            entity: entity.to_owned(),
            space_id: None,
            filters: Vec::new(),
            order: None,
            limit: None,
            offset: 0,
            after: None,
        }
    }

    /// Only records of one space.
    pub fn space(mut self, space_id: &str) -> Query {
        self.space_id = Some(space_id.to_owned());
        self
    }

    /// Adds a filter; every filter must hold.
    pub fn filter(mut self, filter: Filter) -> Query {
        self.filters.push(filter);
        self
    }

    /// Orders by a field (ties by client id, in the same direction).
    pub fn order_by(mut self, field: &str, direction: Direction) -> Query {
        self.order = Some((field.to_owned(), direction));
        self
    }

    /// At most `limit` records per page.
    pub fn limit(mut self, limit: usize) -> Query {
        self.limit = Some(limit);
        self
    }

    /// Skips the first `offset` records (after the cursor, if any).
    pub fn offset(mut self, offset: usize) -> Query {
        self.offset = offset;
        self
    }

    /// Starts after the record where a previous page of this query ended.
    pub fn after(mut self, cursor: QueryCursor) -> Query {
        self.after = Some(cursor);
        self
    }

    /// Checks every field name, value and the cursor; no SQL is built before this.
    pub(crate) fn validate(&self) -> Result<(), QueryError> {
        for filter in &self.filters {
            validate_field_name(&filter.field)?;
            let mut kinds = filter.values.iter().map(QueryValue::kind);
            if let Some(first) = kinds.next() {
                if kinds.any(|kind| kind != first) {
                    return Err(QueryError::MixedKinds(filter.field.clone()));
                }
            }
            let single = filter.comparison == Comparison::In || filter.values.len() == 1;
            assert!(single, "a comparison other than IN has one value");
            for value in &filter.values {
                if matches!(value, QueryValue::Float(number) if !number.is_finite()) {
                    return Err(QueryError::NotFinite(filter.field.clone()));
                }
            }
        }
        if let Some((field, _)) = &self.order {
            validate_field_name(field)?;
        }
        if let Some(cursor) = &self.after {
            if cursor.order != self.order {
                return Err(QueryError::CursorOfAnotherOrder);
            }
        }
        Ok(())
    }
}

/// A field name the store may spell as a JSON path: dot-separated names of ASCII letters,
/// digits and `_`, not starting with a digit, at most 64 characters.
pub(crate) fn validate_field_name(field: &str) -> Result<(), QueryError> {
    let segment_ok = |segment: &str| {
        segment
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if field.len() > 64 || !field.split('.').all(segment_ok) {
        return Err(QueryError::InvalidField(field.to_owned()));
    }
    Ok(())
}

impl Engine {
    /// One page of the live records of `query.entity` that match every filter, in the
    /// query's order (see [`crate::query`]). Bad field names, mixed-kind `IN` lists,
    /// non-finite numbers and a cursor of another order are refused before any read.
    pub fn query(&self, query: &Query) -> Result<QueryPage, QueryError> {
        self.check_query(query)?;
        Ok(crate::store::query::page(&self.conn, query)?)
    }

    /// How many live records match the query's filters (its order, limit, offset and
    /// cursor are ignored).
    pub fn count(&self, query: &Query) -> Result<u64, QueryError> {
        self.check_query(query)?;
        Ok(crate::store::query::count(&self.conn, query)?)
    }

    /// The steps of the plan SQLite chose for a page of `query` (`EXPLAIN QUERY PLAN`),
    /// e.g. to check that a declared index serves it.
    pub fn query_plan(&self, query: &Query) -> Result<Vec<String>, QueryError> {
        self.check_query(query)?;
        Ok(crate::store::query::plan(&self.conn, query)?)
    }

    fn check_query(&self, query: &Query) -> Result<(), QueryError> {
        if self.options.registry.get(&query.entity).is_none() {
            return Err(QueryError::UnknownEntity(query.entity.clone()));
        }
        query.validate()
    }
}

#[cfg(test)]
mod tests {
    //! Field names that could not be spelt safely as a JSON path are refused.
    use super::*;

    #[test]
    fn field_names_are_validated() {
        for good in ["a", "priority", "_x", "address.city", "a1.b_2"] {
            assert!(validate_field_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "", "1a", "a.", ".a", "a..b", "a b", "a'b", "a\"", "$.a", "a[0]", &long,
        ] {
            assert!(
                matches!(validate_field_name(bad), Err(QueryError::InvalidField(_))),
                "{bad}"
            );
        }
    }
}
