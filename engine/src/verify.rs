//! Whole-database consistency checks of one engine, for tests and the simulator.
//!
//! Read-only: it reports every broken invariant it finds, one line each naming the row
//! (`table row key: what is wrong`), and never repairs. It must see whatever a storage
//! fault or a bug could leave, including what the schema's constraints forbid: a damaged
//! database never had them enforced.

use crate::engine::Engine;
use crate::record::OpStatus;
use crate::store;
use std::collections::BTreeSet;

/// How many problems the report lists before it only counts the rest.
const REPORTED_MAX: usize = 50;

pub(crate) fn check_engine(engine: &Engine) -> Result<(), String> {
    let conn = &engine.conn;
    let storage = |error: rusqlite::Error| format!("storage error while checking: {error}");
    let scan = store::integrity::scan(conn).map_err(storage)?;
    let mut problems: Vec<String> = scan.damaged.iter().map(ToString::to_string).collect();
    problems.extend(
        store::integrity::broken_relations(conn)
            .map_err(storage)?
            .iter()
            .map(ToString::to_string),
    );
    problems.extend(
        store::integrity::storage_faults(conn)
            .map_err(storage)?
            .into_iter()
            .map(|fault| format!("storage: {fault}")),
    );

    let registered = |entity: &str| engine.registry().get(entity).is_some();
    // Another process of the app may have handed out newer stamps than this one saw.
    let hlc = engine
        .hlc
        .last()
        .max(store::hlc_high_water(conn).map_err(storage)?);
    for record in &scan.records {
        if record.updated_at > hlc {
            problems.push(format!(
                "records row {}: stamp {:?} is ahead of the HLC {:?}",
                record.client_id, record.updated_at, hlc
            ));
        }
        if !registered(&record.entity) {
            problems.push(format!(
                "records row {}: entity {} is not registered",
                record.client_id, record.entity
            ));
        }
    }
    // Ops another process of the app marked `sending` are its own (in flight, or left
    // by it dying until the next sync takes the lock): only when this process took the
    // sync lock last are they all this process's.
    let lock_path = engine.options.location.sync_lock_path(engine.tenant());
    let another_process_synced = crate::sync_lock::last_holder(&lock_path)
        .map_err(|error| format!("reading the sync lock's file: {error}"))?
        .is_some_and(|holder| holder != engine.process_token);
    let mut op_ids = BTreeSet::new();
    for op in &scan.ops {
        let row = format!("operation_queue row {} (op {})", op.seq, op.op_id);
        if !registered(&op.entity) {
            problems.push(format!("{row}: entity {} is not registered", op.entity));
        }
        if !op_ids.insert(op.op_id.as_str()) {
            problems.push(format!("{row}: its op id is queued twice"));
        }
        // A storage failure that ended the sync may have kept the reset from committing.
        let reset_owed = engine.sync.cleanup_owed;
        if op.status == OpStatus::Sending
            && !engine.sync.is_running()
            && !reset_owed
            && !another_process_synced
        {
            problems.push(format!("{row}: `sending` while no sync runs"));
        }
        if op.status == OpStatus::Success {
            problems.push(format!("{row}: `success` but kept in the queue"));
        }
    }
    for conflict in &scan.conflicts {
        let row = format!("conflicts row {}", conflict.id);
        if !registered(&conflict.entity) {
            problems.push(format!(
                "{row}: entity {} is not registered",
                conflict.entity
            ));
        }
        let waiting = scan
            .ops
            .iter()
            .any(|op| op.entity_id == conflict.client_id && op.status == OpStatus::Pending);
        if !waiting {
            problems.push(format!(
                "{row}: record {} has no op waiting for it",
                conflict.client_id
            ));
        }
    }
    for entity in &scan.cursor_entities {
        if !registered(entity) {
            problems.push(format!("sync_state row {entity}: entity is not registered"));
        }
    }
    // Staged force pages exist only while a force-from-server of their entity runs: a
    // force that ended, failed or was killed leaves none behind (unless a storage
    // failure ended it and kept the cleanup from committing: the next sync drops them).
    let forced = engine.sync.force_pull_entity();
    for (entity, rows) in store::force_staging::staged_counts(conn).map_err(storage)? {
        if forced != Some(entity.as_str()) && !engine.sync.cleanup_owed {
            problems.push(format!(
                "force_staging: {rows} rows of {entity} while no force of {entity} runs"
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(REPORTED_MAX);
    problems.truncate(REPORTED_MAX);
    if more > 0 {
        problems.push(format!("… and {more} more"));
    }
    Err(problems.join("\n"))
}
