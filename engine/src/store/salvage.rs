//! Reading what is still readable in a damaged database, and writing it into a new one
//! (`recovery.rs` owns the files and the promise; this module owns the SQL).
//!
//! The damaged file is read through a read-only connection, one row at a time: a scan
//! stops at the first page SQLite cannot read, so the queue is scanned from both ends and
//! the positions between are looked up one by one. Values are copied as they are stored;
//! the new database's constraints judge them when they are inserted, and a row that
//! fails its insert is lost like an unreadable one. This module never writes to the
//! damaged file.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Transaction};
use std::collections::{BTreeMap, BTreeSet};

/// The queue's columns, in the order a salvaged row holds them (`id` first).
const OP_COLUMNS: &str = "id, op_id, entity, operation, entity_id, space_id, payload, \
    base_version, hlc, force, status, attempts, last_error, created_at, updated_at, error_code";
const OP_COLUMN_COUNT: usize = 16;
const RECORD_COLUMNS: &str = "client_id, entity, space_id, version, base_version, base_data, \
    updated_at, is_deleted, data, base_updated_at";
const RECORD_COLUMN_COUNT: usize = 10;
/// How many queue positions between two readable ends are looked up one by one at most:
/// a sequence number beyond it is damage, not a queue.
const GAP_LOOKUPS_MAX: i64 = 1_000_000;

/// A queued op as read from the damaged file: its columns, and the few it is judged by.
#[derive(Clone, Debug)]
pub struct SalvagedOp {
    pub op_id: String,
    pub entity_id: String,
    pub operation: String,
    pub hlc: i64,
    values: Vec<Value>,
}

/// A record (and its id mapping, if it has one) as read from the damaged file.
#[derive(Clone, Debug)]
pub struct SalvagedRecord {
    pub base_version: i64,
    pub updated_at: i64,
    values: Vec<Value>,
    id_map: Option<Vec<Value>>,
}

/// What could be read of the damaged file.
#[derive(Debug, Default)]
pub struct Salvage {
    /// Unsent and failed ops, in queue order (`sent` ones count as unsent: a crash is a
    /// rollback, and the server recognises a replay by `opId`).
    pub ops: Vec<SalvagedOp>,
    /// The records those ops belong to, by client id (missing: unreadable).
    pub records: BTreeMap<String, SalvagedRecord>,
    /// Queue positions, and ops' records, that could not be read.
    pub unreadable_ops: u64,
    /// The clock's high-water mark, if its row could be read.
    pub hlc_high_water: Option<i64>,
    pub auth_tokens: Vec<(String, String)>,
}

/// Reads what it can of the queue's unsent ops, their records and id mappings, the clock's
/// high-water mark and the auth tokens. Never fails: what cannot be read is not there.
pub fn read(damaged: &Connection) -> Salvage {
    let mut salvage = Salvage::default();
    read_ops(damaged, &mut salvage);
    let mut lookup_record = damaged
        .prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE client_id = ?1"
        ))
        .ok();
    let mut lookup_mapping = damaged
        .prepare("SELECT client_id, server_id, entity FROM id_map WHERE client_id = ?1")
        .ok();
    for op in &salvage.ops {
        if salvage.records.contains_key(&op.entity_id) {
            continue;
        }
        let record = lookup_record.as_mut().and_then(|statement| {
            statement
                .query_row([&op.entity_id], |row| values(row, RECORD_COLUMN_COUNT))
                .ok()
        });
        let Some(record) = record else {
            continue;
        };
        let mapping = lookup_mapping.as_mut().map(|statement| {
            statement
                .query_row([&op.entity_id], |row| values(row, 3))
                .optional()
        });
        let id_map = match mapping {
            Some(Ok(found)) => found,
            // A synced record whose mapping cannot be read cannot be pushed to: left out.
            Some(Err(_)) | None if integer(&record[4]) > 0 => continue,
            _ => None,
        };
        salvage.records.insert(
            op.entity_id.clone(),
            SalvagedRecord {
                base_version: integer(&record[4]),
                updated_at: integer(&record[6]),
                values: record,
                id_map,
            },
        );
    }
    salvage.hlc_high_water = damaged
        .query_row("SELECT value FROM meta WHERE key = 'hlc'", [], |row| {
            row.get::<_, i64>(0)
        })
        .ok();
    if let Ok(mut statement) = damaged.prepare("SELECT name, token FROM auth_tokens ORDER BY name")
    {
        if let Ok(mut rows) = statement.query([]) {
            while let Ok(Some(row)) = rows.next() {
                if let (Ok(name), Ok(token)) = (row.get(0), row.get(1)) {
                    salvage.auth_tokens.push((name, token));
                }
            }
        }
    }
    salvage
}

/// The queue's unsent and failed ops: a scan from each end up to the first unreadable
/// page, then one lookup per position between the two.
fn read_ops(damaged: &Connection, salvage: &mut Salvage) {
    let mut found: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    let in_flight = in_flight(damaged);
    let forward_end = scan(damaged, "ASC", &mut found);
    if forward_end.is_ok() {
        return keep_unsent(found, in_flight.as_ref(), salvage);
    }
    let low = found.keys().next_back().copied().unwrap_or(0);
    let mut from_end = BTreeMap::new();
    let _ = scan(damaged, "DESC", &mut from_end);
    let high = match from_end.keys().next().copied() {
        Some(first) => Some(first),
        // Nothing readable from the end: the highest position ever handed out bounds it.
        None => damaged
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'operation_queue'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .ok()
            .map(|seq| seq + 1),
    };
    found.extend(from_end);
    match (
        high,
        damaged.prepare(&format!(
            "SELECT {OP_COLUMNS} FROM operation_queue WHERE id = ?1"
        )),
    ) {
        (Some(high), Ok(mut lookup)) if high - low <= GAP_LOOKUPS_MAX => {
            for id in low + 1..high {
                match lookup
                    .query_row([id], |row| values(row, OP_COLUMN_COUNT))
                    .optional()
                {
                    Ok(Some(row)) => {
                        found.insert(id, row);
                    }
                    Ok(None) => {}
                    Err(_) => salvage.unreadable_ops += 1,
                }
            }
        }
        // Where the unreadable part ends is unknown: at least one row is lost.
        _ => salvage.unreadable_ops += 1,
    }
    keep_unsent(found, in_flight.as_ref(), salvage);
}

/// The queue positions of the push run that was on the wire (`push_in_flight`), or
/// `None` when they cannot be read.
fn in_flight(damaged: &Connection) -> Option<BTreeSet<i64>> {
    let mut statement = damaged.prepare("SELECT seq FROM push_in_flight").ok()?;
    let seqs = statement
        .query_map([], |row| row.get::<_, i64>(0))
        .ok()?
        .collect::<rusqlite::Result<BTreeSet<i64>>>();
    seqs.ok()
}

/// Scans the queue in `order`, adding every row to `found`, until the end (`Ok`) or the
/// first row SQLite cannot read (`Err`).
fn scan(
    damaged: &Connection,
    order: &str,
    found: &mut BTreeMap<i64, Vec<Value>>,
) -> rusqlite::Result<()> {
    let mut statement = damaged.prepare(&format!(
        "SELECT {OP_COLUMNS} FROM operation_queue ORDER BY id {order}"
    ))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let row = values(row, OP_COLUMN_COUNT)?;
        found.insert(integer(&row[0]), row);
    }
    Ok(())
}

/// Keeps the unsent and failed ops. An op of the run that was on the wire counts the
/// attempt its run would have counted when it ended (it may have reached the server, so a
/// later force sends it under a new `opId`); when the run cannot be read, every `pending`
/// op counts as possibly sent.
fn keep_unsent(
    found: BTreeMap<i64, Vec<Value>>,
    in_flight: Option<&BTreeSet<i64>>,
    salvage: &mut Salvage,
) {
    for (seq, mut row) in found {
        let status = text(&row[10]);
        if status == "success" {
            continue;
        }
        let maybe_sent = status == "pending" && in_flight.is_none_or(|run| run.contains(&seq));
        if maybe_sent {
            row[11] = Value::Integer(integer(&row[11]).saturating_add(1));
        }
        salvage.ops.push(SalvagedOp {
            op_id: text(&row[1]),
            entity_id: text(&row[4]),
            operation: text(&row[3]),
            hlc: integer(&row[8]),
            values: row,
        });
    }
}

/// Writes the salvaged rows into the new database's transaction: each record with its id
/// mapping, then its ops, then the clock and the tokens. A row the new database refuses
/// (a value that breaks its constraints) is left out with everything that depends on it.
/// Returns the op ids written.
pub fn write(
    tx: &Transaction<'_>,
    salvage: &Salvage,
    ops: &[&SalvagedOp],
    hlc_high_water: i64,
) -> rusqlite::Result<Vec<String>> {
    let mut insert_record = tx.prepare(&format!(
        "INSERT INTO records ({RECORD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?;
    // The damaged file's mapping (a row of its `id_map`, a table or a view by its schema
    // version) becomes the written record's server id.
    let mut insert_mapping = tx.prepare(
        "UPDATE records SET server_id = ?2 WHERE client_id = ?1 AND entity = ?3 \
         AND server_id IS NULL",
    )?;
    let mut insert_op = tx.prepare(&format!(
        "INSERT INTO operation_queue ({OP_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    ))?;
    let mut written_records: BTreeMap<&str, bool> = BTreeMap::new();
    let mut written_ops = Vec::new();
    for op in ops {
        let Some(record) = salvage.records.get(&op.entity_id) else {
            continue;
        };
        let written = *written_records
            .entry(op.entity_id.as_str())
            .or_insert_with(|| {
                let inserted = insert_record
                    .execute(rusqlite::params_from_iter(&record.values))
                    .is_ok();
                let mapped = match &record.id_map {
                    Some(mapping) if inserted => insert_mapping
                        .execute(rusqlite::params_from_iter(mapping))
                        .is_ok_and(|updated| updated == 1),
                    Some(_) => false,
                    None => true,
                };
                inserted && mapped
            });
        if written
            && insert_op
                .execute(rusqlite::params_from_iter(&op.values))
                .is_ok()
        {
            written_ops.push(op.op_id.clone());
        }
    }
    super::set_hlc_high_water(tx, crate::hlc::HlcStamp(hlc_high_water.max(0) as u64))?;
    for (name, token) in &salvage.auth_tokens {
        super::set_token(tx, name, token)?;
    }
    Ok(written_ops)
}

fn values(row: &rusqlite::Row<'_>, count: usize) -> rusqlite::Result<Vec<Value>> {
    (0..count).map(|index| row.get::<_, Value>(index)).collect()
}

fn integer(value: &Value) -> i64 {
    match value {
        Value::Integer(number) => *number,
        _ => 0,
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Text(text) => text.clone(),
        _ => String::new(),
    }
}
