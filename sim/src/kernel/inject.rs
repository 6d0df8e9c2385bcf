//! The fault model's verbs: the faults that strike a device around its user's actions
//! (each drawn from its own class's stream), the cross-tenant probe, arming the crash
//! points, a kill at one numbered transaction boundary (`syncsim sweep`), and switching
//! every fault off for the liveness phase.

use super::device::Boundary;
use super::{Event, Failure, Sim, EPOCH_MS};
use crate::profile::FaultClass;

impl Sim {
    // ---- the fault model --------------------------------------------------------------------

    /// Switches every fault off (the liveness phase): nothing is injected any more, the
    /// crash points stop firing, partitions and offline periods end.
    pub fn stop_faults(&mut self) -> Result<(), Failure> {
        self.faults.set_on(false);
        self.kill_switch().armed = false;
        for index in 0..self.devices.len() {
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
