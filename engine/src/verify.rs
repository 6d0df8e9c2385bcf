//! Whole-database consistency checks of one engine, for tests and the simulator.
//!
//! Read-only: it reports the first broken invariant as a message and never repairs.

use crate::engine::Engine;
use crate::record::OpStatus;
use crate::store;
use std::collections::BTreeSet;

pub(crate) fn check_engine(engine: &Engine) -> Result<(), String> {
    let conn = &engine.conn;
    let storage = |error: rusqlite::Error| format!("storage error while checking: {error}");
    let records = store::all_records(conn).map_err(storage)?;
    let ops = store::all_ops(conn).map_err(storage)?;
    let conflicts = store::list_conflicts(conn).map_err(storage)?;
    let client_ids: BTreeSet<&str> = records
        .iter()
        .map(|record| record.client_id.as_str())
        .collect();
    let hlc = engine.hlc.last();
    for record in &records {
        if record.version < 1 || record.base_version < 0 {
            return Err(format!(
                "record {} has version {} base {}",
                record.client_id, record.version, record.base_version
            ));
        }
        if record.updated_at > hlc {
            return Err(format!(
                "record {} stamp {:?} is ahead of the HLC {:?}",
                record.client_id, record.updated_at, hlc
            ));
        }
        if engine.registry().get(&record.entity).is_none() {
            return Err(format!(
                "record {} has unregistered entity {}",
                record.client_id, record.entity
            ));
        }
    }
    let mut op_ids = BTreeSet::new();
    for op in &ops {
        if !client_ids.contains(op.entity_id.as_str()) {
            return Err(format!(
                "op {} refers to missing record {}",
                op.op_id, op.entity_id
            ));
        }
        if !op_ids.insert(op.op_id.as_str()) {
            return Err(format!("op id {} queued twice", op.op_id));
        }
        if op.status == OpStatus::Sending && !engine.sync.is_running() {
            return Err(format!("op {} is `sending` while no sync runs", op.op_id));
        }
        if op.status == OpStatus::Success {
            return Err(format!(
                "op {} is `success` but was kept in the queue",
                op.op_id
            ));
        }
    }
    for conflict in &conflicts {
        let waiting = ops
            .iter()
            .any(|op| op.entity_id == conflict.client_id && op.status == OpStatus::Pending);
        if !waiting {
            return Err(format!(
                "conflict {} on {} has no waiting op",
                conflict.id, conflict.client_id
            ));
        }
    }
    Ok(())
}
