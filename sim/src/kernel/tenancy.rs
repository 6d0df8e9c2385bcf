//! Tenants on a device, beyond the one logged in: the file names the engine gives each
//! tenant it ever opened there (checked distinct the way a case-insensitive file system
//! compares names, not only as the Linux file that happens to exist), dropping a tenant
//! that is not open, and the rule that a dropped tenant opens empty. Nothing here decides
//! when a tenant is dropped or switched; the drivers do.

use super::{violation, Failure, Sim};
use crate::server::ServerDefects;
use std::path::Path;
use sync_engine::{Engine, PlantedDefects, TenantId};

/// The engine's planted defects among `planted` (the one table that names every defect).
pub fn engine_defects(planted: &ServerDefects) -> PlantedDefects {
    PlantedDefects {
        discard_wal_on_open: planted.discard_wal_on_open,
        push_answer_overwrites_newer_edit: planted.push_answer_overwrites_newer_edit,
        lossy_tenant_file_name: planted.lossy_tenant_file_name,
        drop_leaves_wal: planted.drop_leaves_wal,
        retry_replaces_interval: planted.retry_replaces_interval,
        split_local_write: planted.split_local_write,
        accept_stale_answers: planted.accept_stale_answers,
        fail_whole_batch: planted.fail_whole_batch,
        hlc_reuses_observed_stamp: planted.hlc_reuses_observed_stamp,
        pull_overwrites_pending_edit: planted.pull_overwrites_pending_edit,
        advance_cursor_past_foreign_commits: planted.advance_cursor_past_foreign_commits,
        skip_pull_notifications: planted.skip_pull_notifications,
        storage_error_leaves_sync_stuck: planted.storage_error_leaves_sync_stuck,
        forget_timed_out_requests: planted.forget_timed_out_requests,
        trust_repeated_cursor: planted.trust_repeated_cursor,
        same_version_keeps_local_data: planted.same_version_keeps_local_data,
        push_before_durable: planted.push_before_durable,
        resync_keeps_missing_rows: planted.resync_keeps_missing_rows,
        recovery_drops_pending_ops: planted.recovery_drops_pending_ops,
        sync_without_lock: planted.sync_without_lock,
        clock_per_process: planted.clock_per_process,
    }
}

/// A file name as APFS, HFS+ and NTFS compare it: upper-casing first also folds `ſ` and
/// the Kelvin sign onto their ASCII letters.
pub fn case_folded(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().to_uppercase().to_lowercase())
        .unwrap_or_default()
}

impl Sim {
    /// Before the device opens `tenant`: no file of it (database or companion) equals,
    /// under case folding, a file of another tenant of the world or one the device ever
    /// opened — whether or not that tenant's files exist on this device yet.
    pub(super) fn check_file_mapping(&mut self, index: usize, tenant: &str) -> Result<(), Failure> {
        let device = &mut self.devices[index];
        if !device.tenants_opened.insert(tenant.to_owned()) {
            return Ok(());
        }
        let tenants = &self.tenants;
        let files_of = |tenant: &str| {
            let id = TenantId::parse(tenant).expect("simulated tenant ids are valid");
            device.location.db_files(&id).map(|path| case_folded(&path))
        };
        let mine = files_of(tenant);
        let others = device.tenants_opened.iter().chain(tenants);
        for other in others.filter(|other| *other != tenant) {
            if let Some(shared) = files_of(other).iter().find(|name| mine.contains(name)) {
                return Err(violation(format!(
                    "tenant file mapping: on {} tenants {other} and {tenant} both map to file {shared} \
                     on a case-insensitive file system",
                    device.name
                )));
            }
        }
        self.oracle.invariant_checks += 1;
        Ok(())
    }

    /// A tenant dropped on this device (logout, or a drop while another was open) opens
    /// empty: no record, no queued op, no conflict, no cursor, no sync history.
    pub(super) fn check_opened_empty_if_dropped(
        &mut self,
        index: usize,
        tenant: &str,
        engine: &Engine,
    ) -> Result<(), Failure> {
        if !self.devices[index].dropped_tenants.remove(tenant) {
            return Ok(());
        }
        let name = &self.devices[index].name;
        let read = |error: sync_engine::ReadError| violation(format!("{name}: {error}"));
        let status = engine.status().map_err(read)?;
        let records = engine.all_records().map_err(read)?.len();
        let cursors = self
            .entities
            .iter()
            .map(|entity| engine.cursor(entity))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read)?
            .into_iter()
            .flatten()
            .count();
        let leftovers = records as u64
            + status.pending_ops
            + status.failed_ops
            + status.open_conflicts
            + cursors as u64
            + u64::from(status.last_successful_sync_ms.is_some());
        if leftovers > 0 {
            return Err(violation(format!(
                "dropped tenant reopened with data: {name} logged back in to {tenant} and found \
                 {records} records, {status:?}, {cursors} cursors (a dropped tenant starts empty)"
            )));
        }
        self.oracle.invariant_checks += 1;
        Ok(())
    }

    /// Drops the database of `tenant`, which must not be the device's open tenant, as an
    /// app does for an account it left (its unsynced writes go with it). Fails if a file of
    /// it stays behind; the next open of `tenant` must find it empty.
    pub fn drop_tenant(&mut self, index: usize, tenant: &str) -> Result<(), Failure> {
        let device = &self.devices[index];
        assert_ne!(device.tenant.as_deref(), Some(tenant), "log out instead");
        let name = device.name.clone();
        self.trace(format!("{name} drops tenant {tenant}"));
        self.oracle.model.discard_device_tenant(index, tenant);
        self.oracle.reset_cursors(index, tenant);
        // What the device knew of the tenant's records goes with its files.
        self.oracle.causality.forget(index, tenant);
        self.devices[index].power.forget_tenant(tenant);
        let id = TenantId::parse(tenant).expect("simulated tenant ids are valid");
        let location = self.devices[index].location.clone();
        sync_engine::drop_tenant_database(&location, &id)
            .map_err(|error| violation(format!("{name}: dropping {tenant} failed: {error}")))?;
        let files = location.db_files(&id);
        let aside = location.corrupt_aside_files(&id);
        if let Some(path) = files.iter().chain(&aside).find(|path| path.exists()) {
            return Err(violation(format!(
                "{name}: dropping {tenant} left {} behind",
                path.display()
            )));
        }
        self.devices[index]
            .dropped_tenants
            .insert(tenant.to_owned());
        Ok(())
    }
}
