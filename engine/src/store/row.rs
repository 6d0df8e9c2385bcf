//! Reading stored rows: a value that does not convert, or that the schema does not allow,
//! becomes a [`DamagedRow`] naming its row (table and key), never a panic.
//!
//! The store's functions return `rusqlite::Result`, so that callers compose them inside
//! one transaction with `?`. A damaged row travels through them as rusqlite's own "a
//! stored value could not be converted" error (`FromSqlConversionFailure`) carrying the
//! `DamagedRow`, and each operation's error enum takes it back out into its `Damaged`
//! variant (`error.rs`). The readers check what the schema's CHECK constraints state,
//! because a damaged database is exactly one whose rows did not pass them.

use crate::error::DamagedRow;
use crate::hlc::HlcStamp;
use rusqlite::types::{FromSql, Type, ValueRef};
use rusqlite::Row;
use serde_json::{Map, Value};
use std::fmt::Display;

/// A damaged row, as the store's functions return it.
pub fn damaged(
    table: &'static str,
    key: impl Into<String>,
    problem: impl Into<String>,
) -> rusqlite::Error {
    // Nobody reads the column index or type: the boxed `DamagedRow` names the row and
    // says what is wrong with it.
    rusqlite::Error::FromSqlConversionFailure(
        0,
        Type::Null,
        Box::new(DamagedRow::new(table, key, problem)),
    )
}

/// The `DamagedRow` a store function's error carries, or the error itself when it is
/// another SQLite failure.
pub fn into_damaged(error: rusqlite::Error) -> Result<DamagedRow, rusqlite::Error> {
    match error {
        rusqlite::Error::FromSqlConversionFailure(index, kind, inner) => {
            match inner.downcast::<DamagedRow>() {
                Ok(row) => Ok(*row),
                Err(inner) => Err(rusqlite::Error::FromSqlConversionFailure(
                    index, kind, inner,
                )),
            }
        }
        other => Err(other),
    }
}

/// Any stored value as text, for naming a row by its key whatever the key holds.
pub fn value_text(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(integer) => integer.to_string(),
        ValueRef::Real(real) => real.to_string(),
        ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
        ValueRef::Blob(blob) => format!("<{} bytes>", blob.len()),
    }
}

/// One row of `table` being read; its key is in column `key_index`.
pub struct StoredRow<'a, 'stmt> {
    row: &'a Row<'stmt>,
    table: &'static str,
    key_index: usize,
}

impl<'a, 'stmt> StoredRow<'a, 'stmt> {
    pub fn new(row: &'a Row<'stmt>, table: &'static str, key_index: usize) -> Self {
        StoredRow {
            row,
            table,
            key_index,
        }
    }

    /// The row's key as text. Computed only when a row is damaged.
    fn key(&self) -> String {
        self.row
            .get_ref(self.key_index)
            .map_or_else(|_| "?".to_owned(), value_text)
    }

    /// The row is damaged: `problem` is what column `column` holds.
    pub fn damaged(&self, column: usize, problem: impl Display) -> rusqlite::Error {
        let name = self.row.as_ref().column_name(column).unwrap_or("?");
        damaged(self.table, self.key(), format!("column {name}: {problem}"))
    }

    /// A value of the type the column declares.
    pub fn get<T: FromSql>(&self, column: usize) -> rusqlite::Result<T> {
        self.row.get(column).map_err(|error| match error {
            rusqlite::Error::InvalidColumnType(_, _, stored) => self.damaged(
                column,
                format!("holds a value of the wrong type ({stored})"),
            ),
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..) => self.damaged(column, error),
            other => other,
        })
    }

    /// An integer no smaller than `min`.
    pub fn at_least(&self, column: usize, min: i64) -> rusqlite::Result<i64> {
        let value: i64 = self.get(column)?;
        if value < min {
            return Err(self.damaged(column, format!("{value} is below {min}")));
        }
        Ok(value)
    }

    /// A boolean stored as 0 or 1.
    pub fn flag(&self, column: usize) -> rusqlite::Result<bool> {
        match self.get::<i64>(column)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.damaged(column, format!("{other} is not 0 or 1"))),
        }
    }

    pub fn stamp(&self, column: usize) -> rusqlite::Result<HlcStamp> {
        Ok(HlcStamp(self.get::<i64>(column)? as u64))
    }

    /// Text that `parse` accepts (a status, an operation); `what` names it in the report.
    pub fn parsed<T>(
        &self,
        column: usize,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> rusqlite::Result<T> {
        let text = self.text(column)?;
        parse(text).ok_or_else(|| self.damaged(column, format!("unknown {what} {text:?}")))
    }

    /// Text, borrowed from the row (what [`StoredRow::parsed`] reads: a parse that keeps
    /// the text copies it once, and one that does not copies nothing).
    fn text(&self, column: usize) -> rusqlite::Result<&str> {
        match self.row.get_ref(column)? {
            ValueRef::Text(bytes) => {
                std::str::from_utf8(bytes).map_err(|error| self.damaged(column, error))
            }
            other => Err(self.damaged(
                column,
                format!("holds a value of the wrong type ({})", other.data_type()),
            )),
        }
    }

    /// An entity type's name (whether the app registers it is not the row's concern).
    pub fn entity(&self, column: usize) -> rusqlite::Result<String> {
        self.parsed(column, "entity name", |text| {
            crate::registry::is_valid_entity_name(text).then(|| text.to_owned())
        })
    }

    pub fn space_id(&self, column: usize) -> rusqlite::Result<String> {
        self.parsed(column, "space id", |text| {
            crate::tenant::is_safe_name(text).then(|| text.to_owned())
        })
    }

    /// A JSON object stored as text.
    pub fn object(&self, column: usize) -> rusqlite::Result<Map<String, Value>> {
        let text = match self.row.get_ref(column)? {
            ValueRef::Text(text) => text,
            other => {
                return Err(self.damaged(
                    column,
                    format!("holds a value of the wrong type ({})", other.data_type()),
                ))
            }
        };
        match serde_json::from_slice(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(self.damaged(column, "JSON that is not an object")),
            Err(error) => Err(self.damaged(column, format!("not JSON ({error})"))),
        }
    }

    /// [`StoredRow::object`], or NULL.
    pub fn optional_object(&self, column: usize) -> rusqlite::Result<Option<Map<String, Value>>> {
        match self.row.get_ref(column)? {
            ValueRef::Null => Ok(None),
            _ => self.object(column).map(Some),
        }
    }
}
