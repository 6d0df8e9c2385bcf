//! The `corrupt_at_open` fault: a device's database file found damaged when its app
//! opens, and the recovery the app then runs.
//!
//! Fault model: while the app is not running, storage damages one page of the tenant's
//! database (its header, one time in five: SQLite no longer takes the file for a
//! database), as a failing flash cell or a torn sector would. The dice are thrown at every
//! open of an existing database by a new process (a restart after a kill, a login, a
//! switch back) while no other process of the app has it open, from the class's own
//! stream, which also draws where the damage lands
//! and its bytes. The damaged file is first brought to its last committed state (the
//! killed process's WAL checkpointed into it), so the damage is to committed data; a
//! page SQLite's `quick_check` would not notice (a free page) is put back and another
//! drawn, so the file holds exactly one damage SQLite reports.
//!
//! What is checked: the engine's open refuses the file with `OpenError::Corrupt`
//! (anything else is a violation), and `recover_corrupt_database` keeps every unsent op
//! the harness can itself read in the damaged file (its row, its record's row, its id
//! mapping), except the ops of a never-synced record whose `insert` is unreadable; the
//! reopened engine holds them. The oracle learns the promise: the device's writes whose
//! op could not be read are discarded from the model, the device's cursors and causal
//! memory start over (it pulls everything again), and every other check holds as always.
//! Nothing here decides when a restart happens; the lifecycle does.

use super::{violation, Failure, Sim};
use crate::profile::FaultClass;
use crate::rng::SimRng;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use sync_engine::{Engine, EngineOptions, Env, OpenError};

const PAGE_SIZE: u64 = 4096;
/// Pages tried before the damage falls back to the header.
const PAGE_TRIES_MAX: usize = 8;

/// Where the damage lands and what it writes, drawn when the fault fires.
#[derive(Clone, Copy, Debug)]
struct Damage {
    header: bool,
    /// Seeds the choice of pages and their bytes.
    seed: u64,
}

/// An op the queue held, not yet acknowledged by the server, when the damage struck.
struct UnsentOp {
    id: i64,
    op_id: String,
    entity_id: String,
    operation: String,
}

impl Sim {
    /// Opens the device's engine; when `corrupt_at_open` fires, damages its database
    /// first and checks the engine's refusal and the recovery (see the module header).
    pub(super) fn open_engine(
        &mut self,
        index: usize,
        tenant: &str,
        options: EngineOptions,
        entropy: SimRng,
    ) -> Result<Engine, Failure> {
        let name = self.devices[index].name.clone();
        let env = |sim: &Sim| Env::new(sim.devices[index].clock.clone(), entropy.clone());
        let main = options.location.db_path(&options.tenant);
        let exists = main.metadata().is_ok_and(|file| file.len() > 0);
        // Storage damages the file while the app is down: not while its other process
        // (a background sync) still has the database open and goes on using it.
        let other_process_open = self.devices[index]
            .background
            .as_ref()
            .is_some_and(|process| process.engine.is_some());
        let at_ms = self.elapsed_ms();
        let damage = if exists && !other_process_open {
            self.faults
                .fire(FaultClass::CorruptAtOpen, at_ms, |rng| Damage {
                    header: rng.range(0, 4) == 0,
                    seed: rng.next_u64(),
                })
        } else {
            None
        };
        let reopen_failed =
            |error: OpenError| violation(format!("{name}: reopening the database failed: {error}"));
        let Some(damage) = damage else {
            return Engine::open(options, env(self)).map_err(reopen_failed);
        };
        let unsent = checkpoint(&main).map_err(|error| {
            violation(format!(
                "{name}: reading the database before damage: {error}"
            ))
        })?;
        let where_ = damage.strike(&main);
        let expected = readable(&main, &unsent);
        self.trace(format!(
            "{name} database damaged ({where_}): {} unsent ops, {} readable",
            unsent.len(),
            expected.len()
        ));
        match Engine::open(options.clone(), env(self)) {
            Err(OpenError::Corrupt { .. }) => {}
            Err(error) => {
                return Err(violation(format!(
                "{name}: opening a corrupt database ({where_}) failed with {error}, not as corrupt"
            )))
            }
            Ok(_) => {
                return Err(violation(format!(
                    "{name}: a corrupt database ({where_}) opened"
                )))
            }
        }
        let report = sync_engine::recover_corrupt_database(&options.location, &options.tenant)
            .map_err(|error| violation(format!("{name}: recovering {tenant} failed: {error}")))?;
        self.trace(format!(
            "{name} recovered {tenant}: {} ops kept, {} lost",
            report.salvaged_ops(),
            report.lost_ops
        ));
        // The promise, in the model: writes whose op could not be read are gone; the
        // device pulls everything else again, from empty cursors, knowing nothing.
        for op in unsent.iter().filter(|op| !expected.contains(&op.op_id)) {
            self.oracle.model.discard_record(
                index,
                tenant,
                &op.entity_id,
                "corrupt database at open: its op could not be read",
            );
        }
        self.oracle.reset_cursors(index, tenant);
        self.oracle.causality.forget(index, tenant);
        if !report.clock_kept {
            self.devices[index].power.clock_lost(tenant);
        }
        let engine = Engine::open(options, env(self)).map_err(reopen_failed)?;
        let queued: BTreeSet<String> = engine
            .queued_ops()
            .map_err(|error| violation(format!("{name}: after recovery: {error}")))?
            .into_iter()
            .map(|op| op.op_id)
            .collect();
        if let Some(lost) = unsent
            .iter()
            .find(|op| expected.contains(&op.op_id) && !queued.contains(&op.op_id))
        {
            return Err(violation(format!(
                "lost unsent write: {name}'s recovery of a corrupt database ({where_}) dropped op {} \
                 ({} of record {}), readable in the damaged file; {} of {} unsent ops kept \
                 (report: {} kept, {} lost)",
                lost.op_id,
                lost.operation,
                lost.entity_id,
                unsent.iter().filter(|op| queued.contains(&op.op_id)).count(),
                unsent.len(),
                report.salvaged_ops(),
                report.lost_ops
            )));
        }
        self.oracle.invariant_checks += 1;
        Ok(engine)
    }
}

impl Damage {
    /// Damages the file at `main` so that SQLite reports it; returns where, for the trace.
    fn strike(self, main: &Path) -> String {
        let mut rng = SimRng::new(self.seed, 0);
        let mut file = std::fs::read(main).expect("read the database to damage");
        let pages = file.len() as u64 / PAGE_SIZE;
        if !self.header && pages >= 2 {
            for _ in 0..PAGE_TRIES_MAX {
                let page = rng.range(2, pages);
                let start = ((page - 1) * PAGE_SIZE) as usize;
                let end = start + PAGE_SIZE as usize;
                let before = file[start..end].to_vec();
                for byte in &mut file[start..end] {
                    *byte = rng.next_u64() as u8;
                }
                // No b-tree page type, and a page number far past the end where a free
                // or overflow page names its next page: never taken for a sound page.
                file[start] = 0;
                std::fs::write(main, &file).expect("write the damaged database");
                if sqlite_reports_damage(main) {
                    return format!("page {page} of {pages}");
                }
                file[start..end].copy_from_slice(&before);
            }
        }
        for byte in &mut file[..16] {
            *byte = rng.next_u64() as u8;
        }
        std::fs::write(main, &file).expect("write the damaged database");
        assert!(sqlite_reports_damage(main), "a database without its header");
        "header".to_owned()
    }
}

fn read_only(main: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(main, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Whether SQLite's `quick_check` (or opening at all) finds the file damaged.
fn sqlite_reports_damage(main: &Path) -> bool {
    let Ok(conn) = read_only(main) else {
        return true;
    };
    let _ = conn.pragma_update(None, "ignore_check_constraints", "ON");
    !matches!(
        conn.query_row("PRAGMA quick_check(1)", [], |row| row.get::<_, String>(0)),
        Ok(verdict) if verdict == "ok"
    )
}

/// Brings the file to its last committed state (the WAL a killed process left is
/// checkpointed into it and removed, as the last connection's close does) and lists the
/// ops the server has not acknowledged.
fn checkpoint(main: &Path) -> rusqlite::Result<Vec<UnsentOp>> {
    let conn = Connection::open(main)?;
    // A power loss may have taken every commit, the schema's too: nothing is unsent.
    let has_queue: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'operation_queue')",
        [],
        |row| row.get(0),
    )?;
    if !has_queue {
        conn.close().map_err(|(_, error)| error)?;
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare(
        "SELECT id, op_id, entity_id, operation FROM operation_queue \
         WHERE status != 'success' ORDER BY id",
    )?;
    let unsent = statement
        .query_map([], |row| {
            Ok(UnsentOp {
                id: row.get(0)?,
                op_id: row.get(1)?,
                entity_id: row.get(2)?,
                operation: row.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(statement);
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    conn.close().map_err(|(_, error)| error)?;
    Ok(unsent)
}

/// The op ids of `unsent` a recovery must keep, read by the harness itself in the damaged
/// file one row at a time: the op's row, its record's row and (for a synced record) its id
/// mapping readable, every column of them, and, for a record the server never had, its `insert` among them.
fn readable(main: &Path, unsent: &[UnsentOp]) -> BTreeSet<String> {
    let Ok(conn) = read_only(main) else {
        return BTreeSet::new();
    };
    // Per record: its base version, if its rows can be read.
    let mut records: BTreeMap<&str, Option<i64>> = BTreeMap::new();
    let mut first_op: BTreeMap<&str, &str> = BTreeMap::new();
    let mut readable_ops = Vec::new();
    for op in unsent {
        let row = conn
            .query_row(
                "SELECT * FROM operation_queue WHERE id = ?1",
                [op.id],
                |row| {
                    every_column(row)?;
                    row.get::<_, String>("op_id")
                },
            )
            .optional();
        if !matches!(row, Ok(Some(ref op_id)) if *op_id == op.op_id) {
            continue;
        }
        let base_version = *records.entry(op.entity_id.as_str()).or_insert_with(|| {
            let base_version = conn
                .query_row(
                    "SELECT * FROM records WHERE client_id = ?1",
                    [&op.entity_id],
                    |row| {
                        every_column(row)?;
                        row.get::<_, i64>("base_version")
                    },
                )
                .ok()?;
            let mapping = conn
                .query_row(
                    "SELECT * FROM id_map WHERE client_id = ?1",
                    [&op.entity_id],
                    every_column,
                )
                .optional();
            (base_version == 0 || mapping.is_ok()).then_some(base_version)
        });
        let Some(base_version) = base_version else {
            continue;
        };
        let first = *first_op
            .entry(op.entity_id.as_str())
            .or_insert(op.operation.as_str());
        if base_version == 0 && first != "insert" {
            continue;
        }
        readable_ops.push(op.op_id.clone());
    }
    readable_ops.into_iter().collect()
}

/// Reads every column of `row`: a value spilling onto a damaged overflow page fails here.
fn every_column(row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
    for index in 0..row.as_ref().column_count() {
        row.get::<_, rusqlite::types::Value>(index)?;
    }
    Ok(())
}
