//! The fault model's verbs: the faults that strike a device around its user's actions
//! (each drawn from its own class's stream), the cross-tenant probe, arming the crash
//! points, a kill at one numbered transaction boundary (`syncsim sweep`), the storage
//! faults, and switching every fault off for the liveness phase.
//!
//! Storage faults strike the device's real database. A full disk: the engine's
//! connection may not grow the database past its size (SQLite's page limit, which
//! belongs to one connection, so the engine sets it on the kernel's behalf), and every
//! write needing a new page fails `SQLITE_FULL`. Busy: a second connection, as the app's
//! other process would hold, keeps the write lock, and every write of the engine fails
//! `SQLITE_BUSY` (the simulated engine waits for no lock). Each lasts a drawn span of
//! virtual time and is lifted before the device's first call after it, at a kill or
//! logout (the process that met it is gone), and when the faults stop.

use super::device::Boundary;
use super::{violation, Event, Failure, Sim, EPOCH_MS};
use crate::profile::FaultClass;
use sync_engine::TenantId;

impl Sim {
    // ---- the fault model --------------------------------------------------------------------

    /// Switches every fault off (the liveness phase): nothing is injected any more, the
    /// crash points stop firing, partitions and offline periods end.
    pub fn stop_faults(&mut self) -> Result<(), Failure> {
        self.faults.set_on(false);
        self.kill_switch().armed = false;
        for index in 0..self.devices.len() {
            self.stop_background(index);
            self.lift_storage_faults(index, true)?;
            self.heal(index);
            if !self.devices[index].app_online {
                self.online(index)?;
            }
        }
        Ok(())
    }

    /// Whether crash points and transaction boundaries may fire at their configured rates
    /// (one-shot kills always do).
    pub fn arm_crash_points(&mut self, armed: bool) {
        self.kill_switch().armed = armed && self.faults.is_on();
    }

    /// Kills the app that crosses the run's `number`th transaction boundary (counted over
    /// every device from 1), whatever the phase and the rates.
    pub fn kill_at_boundary(&mut self, number: u64) {
        self.kill_switch().kill_at_boundary = Some(number);
    }

    /// Starts listing every transaction boundary the engines cross ([`Sim::boundaries`]).
    pub fn log_boundaries(&mut self) {
        self.kill_switch().boundary_log = Some(Vec::new());
    }

    /// The boundaries crossed since [`Sim::log_boundaries`], in order.
    pub fn boundaries(&self) -> Vec<Boundary> {
        self.kill_switch().boundary_log.clone().unwrap_or_default()
    }

    /// The boundary a kill struck last, if any did.
    pub fn last_boundary_kill(&self) -> Option<Boundary> {
        self.kill_switch().last_boundary_kill
    }

    /// The faults that may strike a device around one of its user's actions, each drawn
    /// from its own class's stream: a kill soon after, a partition, an offline period, a
    /// clock jump, a cross-tenant probe. Every driver with a user uses this one draw.
    pub fn inject_action_faults(&mut self, index: usize) -> Result<(), Failure> {
        let at_ms = self.now_ms - EPOCH_MS;
        let faults = &mut self.faults;
        if let Some(delay_ms) = faults.fire(FaultClass::KillBetweenCalls, at_ms, |stream| {
            stream.range(0, 3_000)
        }) {
            self.schedule(self.now_ms + delay_ms, Event::Kill { device: index });
        }
        if self.devices[index].network_up {
            if let Some(heal_ms) = self.faults.fire(FaultClass::Partition, at_ms, |stream| {
                stream.range(5_000, 120_000)
            }) {
                self.partition(index, Some(heal_ms));
            }
        }
        if self.devices[index].app_online && self.devices[index].is_running() {
            if let Some(back_ms) = self
                .faults
                .fire(FaultClass::OfflinePeriod, at_ms, |stream| {
                    stream.range(5_000, 300_000)
                })
            {
                self.offline(index, Some(back_ms))?;
            }
        }
        let jump_max = self.knobs.clock_jump_ms_max;
        if let Some(delta) = self.faults.fire(FaultClass::ClockJump, at_ms, |stream| {
            stream.range(0, 2 * jump_max) as i64 - jump_max as i64
        }) {
            self.clock_jump(index, delta);
        }
        if self.tenants.len() > 1 && self.faults.hit(FaultClass::CrossTenantProbe, at_ms) {
            self.probe_cross_tenant(index, None)?;
        }
        let device = &self.devices[index];
        if device.is_running() && device.disk_full_until_ms.is_none() {
            if let Some(full_ms) = self.faults.fire(FaultClass::DiskFull, at_ms, |stream| {
                stream.range(5_000, 120_000)
            }) {
                self.fill_disk(index, full_ms)?;
            }
        }
        let device = &self.devices[index];
        if device.is_running() && device.lock_holder.is_none() {
            if let Some(busy_ms) = self.faults.fire(FaultClass::StorageBusy, at_ms, |stream| {
                stream.range(1_000, 60_000)
            }) {
                self.lock_database(index, busy_ms);
            }
        }
        Ok(())
    }

    /// The running app's disk is full for `full_ms` of virtual time: its database may
    /// not grow.
    pub fn fill_disk(&mut self, index: usize, full_ms: u64) -> Result<(), Failure> {
        let until_ms = self.now_ms + full_ms;
        let device = &mut self.devices[index];
        let engine = device.engine.as_mut().expect("a running app");
        engine.simulate_full_disk(true).map_err(|error| {
            violation(format!("{}: filling the disk failed: {error}", device.name))
        })?;
        device.disk_full_until_ms = Some(until_ms);
        let line = format!("{} disk full for {full_ms} ms", device.name);
        self.trace(line);
        Ok(())
    }

    /// Another process of the running app takes its database's write lock and holds it
    /// for `busy_ms` of virtual time.
    pub fn lock_database(&mut self, index: usize, busy_ms: u64) {
        let until_ms = self.now_ms + busy_ms;
        let device = &mut self.devices[index];
        assert!(device.is_running());
        let tenant = device
            .tenant
            .as_deref()
            .expect("a running app is logged in");
        let tenant = TenantId::parse(tenant).expect("simulated tenant ids are valid");
        let path = device.location.db_path(&tenant);
        let holder = rusqlite::Connection::open(&path)
            .unwrap_or_else(|error| panic!("opening {} beside the app: {error}", path.display()));
        // No transaction of the engine stays open across calls, so the lock is free.
        holder
            .execute_batch("BEGIN IMMEDIATE")
            .expect("the write lock is free between engine calls");
        device.lock_holder = Some((holder, until_ms));
        let line = format!("{} database locked for {busy_ms} ms", device.name);
        self.trace(line);
    }

    /// Lifts the device's storage faults whose span is over (`all`: every one of them).
    pub(super) fn lift_storage_faults(&mut self, index: usize, all: bool) -> Result<(), Failure> {
        let now_ms = self.now_ms;
        let device = &mut self.devices[index];
        if let Some(until_ms) = device.disk_full_until_ms {
            if all || until_ms <= now_ms {
                device.disk_full_until_ms = None;
                if let Some(engine) = device.engine.as_mut() {
                    engine.simulate_full_disk(false).map_err(|error| {
                        violation(format!("{}: freeing the disk failed: {error}", device.name))
                    })?;
                }
                let line = format!("{} disk has room again", device.name);
                self.trace(line);
            }
        }
        let device = &mut self.devices[index];
        if let Some((_, until_ms)) = &device.lock_holder {
            if all || *until_ms <= now_ms {
                device.lock_holder = None;
                let line = format!("{} database lock released", device.name);
                self.trace(line);
            }
        }
        Ok(())
    }

    /// Sends, with the device's token, a pull and a push naming another tenant (`other`,
    /// or the first tenant that is not the device's); the oracle requires both refused.
    pub fn probe_cross_tenant(&mut self, index: usize, other: Option<&str>) -> Result<(), Failure> {
        let Some(own) = self.devices[index].tenant.clone() else {
            return Ok(());
        };
        let other = match other {
            Some(other) => other.to_owned(),
            None => match self.tenants.iter().find(|tenant| **tenant != own) {
                Some(other) => other.clone(),
                None => return Ok(()),
            },
        };
        self.trace(format!(
            "{} cross-tenant probe {own} -> {other}",
            self.devices[index].name
        ));
        let entity = self.entities[0].clone();
        self.oracle
            .probe_cross_tenant(&mut self.server, &own, &other, &entity, self.events)
    }
}
