//! The local store: the only module that writes SQL.
//!
//! One SQLite file per tenant; its tables, constraints and migrations are in [`schema`],
//! and every stored row is read through [`row`], which turns a damaged row into an error
//! naming it. Functions here take a `&Connection` (a `Transaction` derefs to one) and
//! never open transactions themselves: the caller decides what commits together, so that
//! "every durable change is one transaction" is visible at the call site. Every query
//! whose order matters has an `ORDER BY`.

use crate::hlc::HlcStamp;
use crate::record::Record;
use row::StoredRow;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::{Map, Value};

pub mod changes;
mod conflicts;
pub mod force_staging;
pub mod integrity;
mod meta;
pub mod pulled;
pub mod query;
mod queue;
pub mod row;
pub mod salvage;
pub mod schema;
mod sync_state;

pub use conflicts::{
    conflict_for_record, count_conflicts, delete_conflict_for_record, get_conflict, list_conflicts,
    put_conflict,
};

pub use pulled::{version_hash, NewRowWriter, NewestIds};
pub use queue::{
    all_ops, count_ops, count_unfinished_ops, delete_op, delete_ops_for_record,
    drop_pending_ops_for_record, end_flight, end_push_run, enqueue, enqueue_rendered, fail_op,
    failed_ops, has_any_op, has_other_unfinished_op, has_run_in_flight, has_sending_op,
    has_sending_op_anywhere, mark_sending, next_push_run, op_by_op_id, ops_for_record,
    ops_with_status, requeue_failed, reset_sending, sending_summary, set_op_status,
    unfinished_ops_for_record, NewOp, SendingSummary, SentOp,
};
use queue::{op_from_row, OP_COLUMNS};

pub use meta::{
    durability_barrier, hlc_high_water, last_successful_sync_ms, set_hlc_high_water,
    set_last_successful_sync_ms,
};
pub use sync_state::{
    cursor, reset_all_sync_state, resync_under_way, set_cursor, set_resync_under_way,
    set_sync_state,
};

// ---- records ----------------------------------------------------------------------------

const RECORD_COLUMNS: &str =
    "r.client_id, r.server_id, r.entity, r.space_id, r.version, r.base_version, \
     r.updated_at, r.is_deleted, r.data";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<Record> {
    let row = StoredRow::new(row, "records", 0);
    Ok(Record {
        client_id: row.get(0)?,
        server_id: row.get(1)?,
        entity: row.entity(2)?,
        space_id: row.space_id(3)?,
        version: row.at_least(4, 1)?,
        base_version: row.at_least(5, 0)?,
        updated_at: row.stamp(6)?,
        is_deleted: row.flag(7)?,
        data: row.object(8)?,
    })
}

pub fn object_to_text(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).expect("a JSON map always serializes")
}

pub fn get_record(conn: &Connection, client_id: &str) -> rusqlite::Result<Option<Record>> {
    conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM records r \
         WHERE r.client_id = ?1"
    ))?
    .query_row([client_id], record_from_row)
    .optional()
}

/// Whether the record exists (outer `Some`) and the server id it is mapped to, read
/// without parsing its data.
pub fn record_server_id(
    conn: &Connection,
    client_id: &str,
) -> rusqlite::Result<Option<Option<String>>> {
    conn.prepare_cached("SELECT r.server_id FROM records r WHERE r.client_id = ?1")?
        .query_row([client_id], |row| row.get(0))
        .optional()
}

/// A record by client id or by its server id.
pub fn find_record(conn: &Connection, id: &str) -> rusqlite::Result<Option<Record>> {
    if let Some(record) = get_record(conn, id)? {
        return Ok(Some(record));
    }
    match client_id_for_server_id(conn, id)? {
        Some(client_id) => get_record(conn, &client_id),
        None => Ok(None),
    }
}

/// The record that row `key` of `table` (a queued op, an id mapping, a conflict) belongs
/// to. Its absence is damage: the schema's foreign keys forbid it.
pub fn parent_record(
    conn: &Connection,
    table: &'static str,
    key: &dyn std::fmt::Display,
    client_id: &str,
) -> rusqlite::Result<Record> {
    get_record(conn, client_id)?.ok_or_else(|| {
        row::damaged(
            table,
            key.to_string(),
            format!("its record {client_id} is missing"),
        )
    })
}

/// Where a record the device holds lives: what a pulled row may not change. Read without
/// parsing the record's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub client_id: String,
    pub entity: String,
    pub space_id: String,
}

/// The record with this client id, if the device holds one, and the record that holds
/// this server id, if any ([`mapped_placement`]): the two lookups of a pulled row, in one
/// statement.
pub fn placements(
    conn: &Connection,
    client_id: &str,
    server_id: &str,
) -> rusqlite::Result<(Option<Placement>, Option<Placement>)> {
    conn.prepare_cached(
        "SELECT r.entity, r.space_id, m.client_id, m.entity, m.space_id \
         FROM (SELECT 1) LEFT JOIN records r ON r.client_id = ?1 \
         LEFT JOIN records m ON m.server_id = ?2",
    )?
    .query_row([client_id, server_id], |row| {
        let by_client_id = match row.get::<_, Option<String>>(0)? {
            Some(entity) => Some(Placement {
                client_id: client_id.to_owned(),
                entity,
                space_id: row.get(1)?,
            }),
            None => None,
        };
        let by_server_id = match row.get::<_, Option<String>>(2)? {
            Some(mapped_client_id) => Some(Placement {
                client_id: mapped_client_id,
                entity: row.get(3)?,
                space_id: row.get(4)?,
            }),
            None => None,
        };
        Ok((by_client_id, by_server_id))
    })
}

/// The record that holds this server id, if any, under its entity (which is what a
/// replacement of that entity clears).
pub fn mapped_placement(conn: &Connection, server_id: &str) -> rusqlite::Result<Option<Placement>> {
    conn.prepare_cached("SELECT client_id, entity, space_id FROM records WHERE server_id = ?1")?
        .query_row([server_id], |row| {
            Ok(Placement {
                client_id: row.get(0)?,
                entity: row.get(1)?,
                space_id: row.get(2)?,
            })
        })
        .optional()
}

pub fn list_records(
    conn: &Connection,
    entity: &str,
    space_id: Option<&str>,
    include_deleted: bool,
) -> rusqlite::Result<Vec<Record>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM records r \
         WHERE r.entity = ?1 AND (?2 IS NULL OR r.space_id = ?2) AND (?3 OR r.is_deleted = 0) \
         ORDER BY r.client_id"
    ))?;
    let rows = statement.query_map(params![entity, space_id, include_deleted], record_from_row)?;
    rows.collect()
}

/// Every record of every entity, ordered by client id (for whole-state checks).
pub fn all_records(conn: &Connection) -> rusqlite::Result<Vec<Record>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM records r \
         ORDER BY r.client_id"
    ))?;
    let rows = statement.query_map([], record_from_row)?;
    rows.collect()
}

/// Writes a record row whole (insert or replace), keeping the row's merge base.
pub fn put_record(conn: &Connection, record: &Record) -> rusqlite::Result<()> {
    changes::note(conn, &record.client_id, Some(&record.entity))?;
    put_local_record(conn, record).map(drop)
}

/// [`put_record`] for a local write, which announces its records itself: no change note
/// (`store/changes.rs`). Returns the data's text as stored, for the op that queues the
/// same data (`queue::enqueue_rendered`): a write renders its JSON once.
pub fn put_local_record(conn: &Connection, record: &Record) -> rusqlite::Result<String> {
    let data_text = object_to_text(&record.data);
    upsert_record(conn, record, &data_text, BaseWrite::Keep)?;
    Ok(data_text)
}

/// Inserts a record the device has just created (a new client id, never pushed, no server
/// id): one plain insert, where [`put_local_record`]'s upsert would look for a row to
/// update first. A record that exists already is refused by the primary key (the write
/// fails and its transaction with it). Takes no change note, like [`put_local_record`].
/// Returns the data's text as stored.
pub fn insert_created_record(conn: &Connection, record: &Record) -> rusqlite::Result<String> {
    assert!(record.server_id.is_none() && record.base_version == 0);
    let data_text = object_to_text(&record.data);
    conn.prepare_cached(
        "INSERT INTO records (client_id, entity, space_id, version, base_version, updated_at, \
         is_deleted, data) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
    )?
    .execute(params![
        record.client_id,
        record.entity,
        record.space_id,
        record.version,
        record.updated_at.0 as i64,
        record.is_deleted,
        data_text,
    ])?;
    Ok(data_text)
}

/// Writes a record row whole together with the data its `base_version` holds on the
/// server (the merge base) and the server's stamp of it, in one statement. Pass
/// `&record.data` and `record.updated_at` when the record is the server's copy.
pub fn put_record_with_base(
    conn: &Connection,
    record: &Record,
    base_data: &Map<String, Value>,
    base_stamp: HlcStamp,
) -> rusqlite::Result<()> {
    changes::note(conn, &record.client_id, Some(&record.entity))?;
    let data_text = object_to_text(&record.data);
    let stamp = (base_stamp != record.updated_at).then_some(base_stamp);
    if std::ptr::eq(base_data, &record.data) || *base_data == record.data {
        upsert_record(conn, record, &data_text, BaseWrite::SameAsData(stamp))
    } else {
        let base_text = object_to_text(base_data);
        upsert_record(conn, record, &data_text, BaseWrite::Text(&base_text, stamp))
    }
}

/// Writes a record the device does not hold, as the server holds it (its data is its
/// merge base), with its id mapping. Takes no change note (`store/changes.rs`): a record
/// that appears is a change the caller announces itself.
pub fn insert_pulled_record(conn: &Connection, record: &Record) -> rusqlite::Result<()> {
    assert!(record.server_id.is_some());
    assert_eq!(record.version, record.base_version);
    upsert_record(
        conn,
        record,
        &object_to_text(&record.data),
        BaseWrite::SameAsData(None),
    )
}

/// What a record write does with `base_data` and `base_updated_at`. A column holds the
/// merge base's data (its server stamp) only when it differs from the record's own data
/// (stamp); NULL with `base_version > 0` means "the same as `data`" (`updated_at`), as in
/// every synced row without local edits, so such rows do not store anything twice. NULL
/// with `base_version = 0` means the server has never confirmed the record.
enum BaseWrite<'a> {
    /// A local write: the old merge base stays. If it was implicit (NULL), the old data
    /// and stamp are written out as the explicit base, since the record's are about to
    /// change.
    Keep,
    /// The record's data is its merge base; the base's stamp, when it is not the record's.
    SameAsData(Option<HlcStamp>),
    Text(&'a str, Option<HlcStamp>),
}

fn upsert_record(
    conn: &Connection,
    record: &Record,
    data_text: &str,
    base: BaseWrite<'_>,
) -> rusqlite::Result<()> {
    let (keep_base, base_text, base_stamp) = match base {
        BaseWrite::Keep => (true, None, None),
        BaseWrite::SameAsData(stamp) => (false, None, stamp),
        BaseWrite::Text(text, stamp) => (false, Some(text), stamp),
    };
    // In `DO UPDATE SET`, `records.*` is the row as it was before this statement.
    conn.prepare_cached(
        "INSERT INTO records (client_id, entity, space_id, version, base_version, base_data, updated_at, \
         is_deleted, data, base_updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11) \
         ON CONFLICT (client_id) DO UPDATE SET entity = excluded.entity, space_id = excluded.space_id, \
         version = excluded.version, base_version = excluded.base_version, \
         base_data = CASE WHEN ?10 THEN COALESCE(records.base_data, \
             CASE WHEN records.base_version > 0 THEN records.data END) ELSE excluded.base_data END, \
         base_updated_at = CASE WHEN ?10 THEN COALESCE(records.base_updated_at, \
             CASE WHEN records.base_version > 0 THEN records.updated_at END) \
             ELSE excluded.base_updated_at END, \
         updated_at = excluded.updated_at, is_deleted = excluded.is_deleted, data = excluded.data",
    )?
    .execute(params![
        record.client_id,
        record.entity,
        record.space_id,
        record.version,
        record.base_version,
        base_text,
        record.updated_at.0 as i64,
        record.is_deleted,
        data_text,
        keep_base,
        base_stamp.map(|stamp| stamp.0 as i64),
    ])?;
    if let Some(server_id) = &record.server_id {
        write_id_mapping(conn, &record.client_id, server_id)?;
    }
    Ok(())
}

/// The data the server last confirmed for a record (the merge base for auto-merge).
pub fn base_data(
    conn: &Connection,
    client_id: &str,
) -> rusqlite::Result<Option<Map<String, Value>>> {
    conn.prepare_cached(
        "SELECT client_id, base_data, base_version, data FROM records WHERE client_id = ?1",
    )?
    .query_row([client_id], merge_base_from_row)
    .optional()
    .map(Option::flatten)
}

/// The server's stamp of a record's merge base (`None` before the server confirmed it).
pub fn base_stamp(conn: &Connection, client_id: &str) -> rusqlite::Result<Option<HlcStamp>> {
    conn.prepare_cached(
        "SELECT client_id, COALESCE(base_updated_at, updated_at), base_version FROM records \
         WHERE client_id = ?1",
    )?
    .query_row([client_id], |row| {
        let row = StoredRow::new(row, "records", 0);
        (row.at_least(2, 0)? > 0).then(|| row.stamp(1)).transpose()
    })
    .optional()
    .map(Option::flatten)
}

/// The merge base a `records` row stores: NULL `base_data` with `base_version > 0` means
/// "the same as `data`".
fn merge_base_from_row(row: &Row<'_>) -> rusqlite::Result<Option<Map<String, Value>>> {
    let row = StoredRow::new(row, "records", 0);
    match row.optional_object(1)? {
        Some(base) => Ok(Some(base)),
        None if row.at_least(2, 0)? > 0 => row.object(3).map(Some),
        None => Ok(None),
    }
}

/// A push of op `seq` was accepted: the pushed data (the op's payload, read from its
/// queue row, which must still exist) becomes the record's merge base at the server's
/// version and stamp (the one the server sent, else the op's own). With no later local
/// edit on top (no other unfinished op of the record), the record itself takes the
/// server's version (and stamp, when the server sent one); with later edits waiting, only
/// the merge base moves. One statement per op: the push answer runs it for every op it
/// acknowledges.
///
/// `first_server_id`: the server id the result gave a record that has none, written with
/// the version unless another record holds it already (a broken server: the first
/// mapping stays). The unique index decides, with no lookup before: a refused write
/// changed nothing, and the version is written again without the id. Returns whether the
/// record took the id. It then shows a server id it did not show, a change the caller
/// announces itself, so no change note is taken (`store/changes.rs`); otherwise the write
/// takes its note.
#[must_use = "a record that took its first server id is a change the caller must announce"]
pub fn set_pushed_version(
    conn: &Connection,
    client_id: &str,
    seq: i64,
    version: i64,
    updated_at: Option<HlcStamp>,
    first_server_id: Option<&str>,
) -> rusqlite::Result<bool> {
    let write = |server_id: Option<&str>| -> rusqlite::Result<usize> {
        conn.prepare_cached(
            "UPDATE records SET (version, updated_at, base_updated_at) = ( \
                 SELECT CASE WHEN later THEN records.version ELSE ?3 END, \
                 CASE WHEN later THEN records.updated_at ELSE COALESCE(?4, records.updated_at) END, \
                 CASE WHEN later THEN \
                     COALESCE(?4, (SELECT q.hlc FROM operation_queue q WHERE q.id = ?2)) END \
                 FROM (SELECT EXISTS (SELECT 1 FROM operation_queue WHERE entity_id = ?1 \
                     AND status = 'pending' AND id <> ?2) AS later)), \
             base_version = ?3, server_id = COALESCE(?5, server_id), \
             base_data = (SELECT NULLIF(q.payload, records.data) FROM operation_queue q WHERE q.id = ?2) \
             WHERE client_id = ?1",
        )?
        .execute(params![
            client_id,
            seq,
            version,
            updated_at.map(|stamp| stamp.0 as i64),
            server_id
        ])
    };
    if first_server_id.is_some() {
        match write(first_server_id) {
            Ok(changed) => {
                assert!(changed <= 1);
                return Ok(changed == 1);
            }
            Err(error) if is_unique_violation(&error) => {}
            Err(error) => return Err(error),
        }
    }
    changes::note(conn, client_id, None)?;
    let changed = write(None)?;
    assert!(changed <= 1);
    Ok(false)
}

/// Whether a statement failed on a UNIQUE constraint (SQLite then undid all it wrote).
fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// Whether the record got a new queued write after op `seq` was sent (the planted defect
/// `push_answer_overwrites_newer_edit` misses exactly these).
pub fn planted_edited_since_sent(
    conn: &Connection,
    client_id: &str,
    seq: i64,
) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM operation_queue q WHERE q.entity_id = ?1 \
         AND q.status = 'pending' AND q.id > ?2 \
         AND NOT EXISTS (SELECT 1 FROM push_in_flight f WHERE f.seq = q.id))",
    )?
    .query_row(params![client_id, seq], |row| row.get(0))
}

/// The planted defect `push_answer_overwrites_newer_edit`: the record's data becomes op
/// `seq`'s payload, whatever was written since.
pub fn planted_overwrite_with_op(
    conn: &Connection,
    client_id: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    changes::note(conn, client_id, None)?;
    conn.prepare_cached(
        "UPDATE records SET data = (SELECT q.payload FROM operation_queue q WHERE q.id = ?2), \
         base_data = NULL, is_deleted = 0 WHERE client_id = ?1 \
         AND (SELECT q.operation FROM operation_queue q WHERE q.id = ?2) != 'delete'",
    )?
    .execute(params![client_id, seq])?;
    Ok(())
}

pub fn delete_record(conn: &Connection, client_id: &str) -> rusqlite::Result<()> {
    changes::note(conn, client_id, None)?;
    conn.prepare_cached("DELETE FROM records WHERE client_id = ?1")?
        .execute([client_id])?;
    Ok(())
}

// ---- server ids -------------------------------------------------------------------------
//
// A record's server id is a column of its row (`records.server_id`, unique where set):
// acknowledging a push rewrites the row it already rewrites, and nothing can map a record
// that is gone. `id_map` is a view over it for the readers that join "the mapping".

pub fn set_id_mapping(
    conn: &Connection,
    client_id: &str,
    server_id: &str,
    entity: &str,
) -> rusqlite::Result<()> {
    changes::note(conn, client_id, Some(entity))?;
    write_id_mapping(conn, client_id, server_id)
}

/// [`set_id_mapping`] inside a record write that took the note already.
fn write_id_mapping(conn: &Connection, client_id: &str, server_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE records SET server_id = ?2 WHERE client_id = ?1 AND server_id IS NOT ?2",
    )?
    .execute(params![client_id, server_id])?;
    Ok(())
}

/// Maps a record that has no server id yet to the one a push result gave it, unless
/// another record holds that server id already (a broken server: the first mapping stays).
/// The common case of a push answer, kept apart from `set_id_mapping_unless_taken`: the
/// record takes the server id unless its unique index refuses it (`UPDATE OR IGNORE`),
/// with no lookup before.
///
/// Takes no change note (`store/changes.rs`): returns whether the mapping was added, and
/// then the record shows a server id it did not show, a change the caller announces
/// itself; when it was not added, nothing was written.
#[must_use = "an added mapping is a change the caller must announce"]
pub fn add_id_mapping_unless_taken(
    conn: &Connection,
    client_id: &str,
    server_id: &str,
) -> rusqlite::Result<bool> {
    let added = conn
        .prepare_cached(
            "UPDATE OR IGNORE records SET server_id = ?2 \
             WHERE client_id = ?1 AND server_id IS NULL",
        )?
        .execute(params![client_id, server_id])?;
    assert!(added <= 1);
    Ok(added == 1)
}

/// Maps a record to the server id a push result gave it, unless another record holds that
/// server id already (a broken server: the first mapping stays). One statement, where a
/// lookup and an insert would be two.
pub fn set_id_mapping_unless_taken(
    conn: &Connection,
    client_id: &str,
    server_id: &str,
    entity: &str,
) -> rusqlite::Result<()> {
    changes::note(conn, client_id, Some(entity))?;
    conn.prepare_cached(
        "UPDATE records SET server_id = ?2 WHERE client_id = ?1 AND server_id IS NOT ?2 \
         AND NOT EXISTS (SELECT 1 FROM records WHERE server_id = ?2 AND client_id <> ?1)",
    )?
    .execute(params![client_id, server_id])?;
    Ok(())
}

pub fn client_id_for_server_id(
    conn: &Connection,
    server_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT client_id FROM records WHERE server_id = ?1")?
        .query_row([server_id], |row| row.get(0))
        .optional()
}

// ---- auth tokens ------------------------------------------------------------------------

pub fn set_token(conn: &Connection, name: &str, token: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO auth_tokens (name, token) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET token = excluded.token",
        params![name, token],
    )?;
    Ok(())
}

pub fn token(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT token FROM auth_tokens WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()
}

// ---- bulk removal -----------------------------------------------------------------------

/// Deletes one space's records (their server ids with them), queued ops and conflicts.
pub fn wipe_space_rows(conn: &Connection, space_id: &str) -> rusqlite::Result<usize> {
    changes::note_space(conn, space_id)?;
    conn.execute(
        "DELETE FROM conflicts WHERE client_id IN (SELECT client_id FROM records WHERE space_id = ?1)",
        [space_id],
    )?;
    // An op keeps the space its record had when it was written. A record that a server
    // moved to this space (older engines accepted such moves) may still have ops of its
    // old space: they go with the record, since the schema's foreign keys forbid an op
    // without its record.
    conn.execute(
        "DELETE FROM operation_queue WHERE space_id = ?1 \
         OR entity_id IN (SELECT client_id FROM records WHERE space_id = ?1)",
        [space_id],
    )?;
    conn.execute("DELETE FROM records WHERE space_id = ?1", [space_id])
}

/// Deletes one entity's records (their server ids with them), queued ops, conflicts and
/// sync state.
pub fn clear_entity(conn: &Connection, entity: &str) -> rusqlite::Result<()> {
    changes::note_entity(conn, entity)?;
    conn.execute("DELETE FROM conflicts WHERE entity = ?1", [entity])?;
    conn.execute("DELETE FROM operation_queue WHERE entity = ?1", [entity])?;
    conn.execute("DELETE FROM records WHERE entity = ?1", [entity])?;
    conn.execute("DELETE FROM sync_state WHERE entity = ?1", [entity])?;
    Ok(())
}

/// Turns one pending or failed op into a forced, pending op under `op_id` (a new id when
/// the server may already have answered the old one).
pub fn mark_op_forced(
    conn: &Connection,
    seq: i64,
    op_id: &str,
    now_ms: u64,
) -> rusqlite::Result<()> {
    let changed = conn.execute(
        "UPDATE operation_queue SET op_id = ?2, force = 1, status = 'pending', error_code = NULL, \
         updated_at = ?3 WHERE id = ?1 AND status IN ('pending', 'failed') \
         AND id NOT IN (SELECT seq FROM push_in_flight)",
        params![seq, op_id, now_ms as i64],
    )?;
    assert_eq!(changed, 1, "op {seq} is not pending or failed");
    Ok(())
}

pub fn delete_entity_conflicts(conn: &Connection, entity: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM conflicts WHERE entity = ?1", [entity])
}
