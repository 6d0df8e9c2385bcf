//! Finding rows that break the schema, for `Engine::check_invariants`.
//!
//! SQLite enforces the schema's constraints on every commit of the engine's connection,
//! but a database can still hold rows that break them: storage damage, another program
//! that wrote with foreign keys or CHECK constraints off, or a database migrated with its
//! damage (`schema::migrate` carries such rows over). This module reads every row on its
//! own, so that one damaged row never hides another, and queries every relation the
//! schema declares. Read-only: it names rows and never repairs them.

use super::row::{into_damaged, value_text, StoredRow};
use super::{
    conflicts::{conflict_from_row, CONFLICT_COLUMNS},
    op_from_row, record_from_row, OP_COLUMNS, RECORD_COLUMNS,
};
use crate::error::DamagedRow;
use crate::record::{Conflict, QueuedOp, Record};
use rusqlite::{Connection, Row};

/// Every row of the database, read one by one: what parsed, and what is damaged.
#[derive(Debug)]
pub struct Scan {
    pub records: Vec<Record>,
    pub ops: Vec<QueuedOp>,
    pub conflicts: Vec<Conflict>,
    /// The entity of every cursor.
    pub cursor_entities: Vec<String>,
    pub damaged: Vec<DamagedRow>,
}

pub fn scan(conn: &Connection) -> rusqlite::Result<Scan> {
    let mut damaged = Vec::new();
    let records = read_each(
        conn,
        &format!("SELECT {RECORD_COLUMNS} FROM records r ORDER BY r.client_id"),
        record_from_row,
        &mut damaged,
    )?;
    // A record's data was read above; its merge base is read only by auto-merge.
    read_each(
        conn,
        "SELECT client_id, base_data FROM records WHERE base_data IS NOT NULL ORDER BY client_id",
        |row| StoredRow::new(row, "records", 0).object(1),
        &mut damaged,
    )?;
    let ops = read_each(
        conn,
        &format!("SELECT {OP_COLUMNS} FROM operation_queue q ORDER BY q.id"),
        op_from_row,
        &mut damaged,
    )?;
    let conflicts = read_each(
        conn,
        &format!(
            "SELECT {CONFLICT_COLUMNS} FROM conflicts c \
             LEFT JOIN id_map m ON m.client_id = c.client_id ORDER BY c.id"
        ),
        conflict_from_row,
        &mut damaged,
    )?;
    let cursor_entities = read_each(
        conn,
        "SELECT entity, last_sync_at, server_version_hash, updated_at FROM sync_state \
         ORDER BY entity",
        |row| {
            let row = StoredRow::new(row, "sync_state", 0);
            row.get::<Option<String>>(1)?;
            row.get::<Option<String>>(2)?;
            row.get::<i64>(3)?;
            row.entity(0)
        },
        &mut damaged,
    )?;
    read_each(
        conn,
        "SELECT key, value FROM meta ORDER BY key",
        |row| StoredRow::new(row, "meta", 0).get::<i64>(1),
        &mut damaged,
    )?;
    read_each(
        conn,
        "SELECT name, token FROM auth_tokens ORDER BY name",
        |row| StoredRow::new(row, "auth_tokens", 0).get::<String>(1),
        &mut damaged,
    )?;
    Ok(Scan {
        records,
        ops,
        conflicts,
        cursor_entities,
        damaged,
    })
}

/// Reads every row `sql` selects with `read`: the rows that read, in order; a damaged
/// row goes to `damaged` and the scan goes on. Any other SQLite failure ends it.
fn read_each<T>(
    conn: &Connection,
    sql: &str,
    read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    damaged: &mut Vec<DamagedRow>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut read_rows = Vec::new();
    for read_row in statement.query_map([], read)? {
        match read_row.map_err(into_damaged) {
            Ok(value) => read_rows.push(value),
            Err(Ok(row)) => damaged.push(row),
            Err(Err(error)) => return Err(error),
        }
    }
    Ok(read_rows)
}

/// The rows that belong to a record (by client id, under the record's entity), as the
/// schema's foreign keys declare: (table, key column, client id column).
const CHILDREN: [(&str, &str, &str); 2] = [
    ("operation_queue", "id", "entity_id"),
    ("conflicts", "id", "client_id"),
];

/// Rows whose record is missing or is a record of another entity.
pub fn broken_relations(conn: &Connection) -> rusqlite::Result<Vec<DamagedRow>> {
    let mut broken = Vec::new();
    for (table, key, client_id) in CHILDREN {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT c.{key}, c.{client_id}, c.entity, r.client_id IS NOT NULL, r.entity \
             FROM {table} c LEFT JOIN records r ON r.client_id = c.{client_id} \
             WHERE r.client_id IS NULL OR r.entity IS NOT c.entity ORDER BY c.{key}"
        ))?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let record = value_text(row.get_ref(1)?);
            let entity = value_text(row.get_ref(2)?);
            let problem = if row.get::<_, bool>(3)? {
                let record_entity = value_text(row.get_ref(4)?);
                format!("names {entity} record {record}, which is a {record_entity}")
            } else {
                format!("its record {record} is missing")
            };
            broken.push(DamagedRow::new(table, value_text(row.get_ref(0)?), problem));
        }
    }
    Ok(broken)
}

/// What SQLite's own whole-file check finds: pages, indexes that disagree with their
/// table, NULLs and CHECK failures. Empty when the file is sound.
pub fn storage_faults(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached("PRAGMA integrity_check")?;
    let faults = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(faults.into_iter().filter(|fault| fault != "ok").collect())
}
