//! Actions while a request is on the wire: when a device sends a request, the simulated
//! user sometimes acts right then, before the answer can arrive — updates or deletes a
//! record whose op is in the push, creates, logs out, switches tenant, or plans and
//! confirms a force. The oracle must stay sound for these: an edit made while its record's
//! op is in flight must survive the push's answer.
//!
//! Which requests get an action, and which action, come from the `InFlight` stream alone,
//! so the main workload's sequence does not move when this is on. This module chooses what
//! the user does; it never schedules deliveries or decides faults.

use super::{Act, ActionStream, World};
use crate::kernel::{Called, Failure};
use crate::rng::{SimRng, Stream};
use serde_json::{json, Map};
use std::collections::BTreeSet;
use sync_engine::OpStatus;

/// What the user does while a request is in flight.
#[derive(Clone, Copy, Debug)]
enum InFlightAction {
    UpdateInPush,
    DeleteInPush,
    Create,
    Logout,
    SwitchTenant,
    Force,
}

impl InFlightAction {
    /// Edits of records in the push come first and most often: they are the race.
    const WEIGHTED: [(InFlightAction, u64); 6] = [
        (InFlightAction::UpdateInPush, 8),
        (InFlightAction::DeleteInPush, 2),
        (InFlightAction::Create, 2),
        (InFlightAction::Logout, 1),
        (InFlightAction::SwitchTenant, 1),
        (InFlightAction::Force, 1),
    ];
}

/// The requests each device had in flight when the world last looked.
pub(super) struct InFlightWatch {
    rng: SimRng,
    seen: Vec<BTreeSet<u64>>,
}

impl InFlightWatch {
    pub(super) fn new(seed: u64, devices: usize) -> InFlightWatch {
        InFlightWatch {
            rng: SimRng::for_stream(seed, Stream::InFlight),
            seen: vec![BTreeSet::new(); devices],
        }
    }
}

impl World {
    /// After each step of the safety phase: every device that sent a request since the
    /// last look may get one user action now, while that request is on the wire.
    pub(super) fn act_while_in_flight(&mut self) -> Result<(), Failure> {
        let rate = self.sim.knobs().inflight_actions;
        if rate.is_zero() {
            return Ok(());
        }
        for index in 0..self.sim.devices().len() {
            let in_flight = &self.sim.device(index).in_flight;
            let sent_new = in_flight
                .iter()
                .any(|request| !self.inflight.seen[index].contains(request));
            self.inflight.seen[index].clone_from(in_flight);
            if !sent_new || !self.inflight.rng.chance(rate) {
                continue;
            }
            let weights = InFlightAction::WEIGHTED.map(|(_, weight)| weight);
            let action = InFlightAction::WEIGHTED[self.inflight.rng.weighted(&weights)].0;
            let sub_seed = self.inflight.rng.next_u64();
            let mut user = SimRng::new(sub_seed, 0);
            let (id, kept) = self.actions.next(ActionStream::InFlight);
            if !kept || self.sim.tenant_of(index).is_none() || !self.sim.device(index).is_running()
            {
                continue;
            }
            let name = self.sim.device(index).name.clone();
            self.sim
                .set_operation(&format!("user {action:?} while a request is in flight"));
            let at_ms = self.sim.elapsed_ms();
            self.actions.record(id, at_ms, &name, action, sub_seed);
            self.sim.trace(format!(
                "{name} acts while a request is in flight: {action:?}"
            ));
            let mut act = Act {
                sim: &mut self.sim,
                user: &mut user,
                index,
            };
            match action {
                InFlightAction::UpdateInPush => act.edit_in_push(false)?,
                InFlightAction::DeleteInPush => act.edit_in_push(true)?,
                InFlightAction::Create => act.create(1)?,
                InFlightAction::Logout => act.sim.logout(index)?,
                InFlightAction::SwitchTenant => act.switch_tenant()?,
                InFlightAction::Force => act.force()?,
            }
            self.inflight.seen[index].clone_from(&self.sim.device(index).in_flight);
        }
        Ok(())
    }
}

impl Act<'_> {
    /// Updates (or deletes) a record whose op is in the push on the wire now; any record
    /// when the request in flight is a pull.
    fn edit_in_push(&mut self, delete: bool) -> Result<(), Failure> {
        let index = self.index;
        let sending: Vec<String> = self
            .sim
            .call(index, |engine| Ok(engine.queued_ops()?))?
            .ok()
            .unwrap_or_default()
            .into_iter()
            .filter(|op| op.status == OpStatus::Sending)
            .map(|op| op.entity_id)
            .collect();
        let draw = self.user.next_u64();
        let target = match sending.get((draw % sending.len().max(1) as u64) as usize) {
            Some(client_id) => Some(client_id.clone()),
            None => self.pick_target(),
        };
        let Some(client_id) = target else {
            return Ok(());
        };
        if delete {
            self.sim
                .trace(format!("{} deletes {client_id} in flight", self.name()));
            let deleted = self
                .sim
                .call(index, |engine| Ok(engine.delete(&client_id)?))?;
            if matches!(deleted, Called::Done(_)) {
                self.sim.acknowledge(index, &client_id)?;
            }
            return Ok(());
        }
        let fields = ["title", "count", "color", "note"];
        let field = fields[self.user.index(fields.len())];
        let value = json!(format!("f{}", self.user.range(0, 99)));
        self.sim.trace(format!(
            "{} updates {client_id} {field} in flight",
            self.name()
        ));
        let mut patch = Map::new();
        patch.insert(field.to_owned(), value);
        self.write_patch(index, &client_id, patch)
    }
}
