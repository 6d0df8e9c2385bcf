//! The reference model: every local write the app was told succeeded, and what may
//! legitimately discard it.
//!
//! A write is acknowledged when the engine call returned `Ok`. At the end of a run, each
//! acknowledged write must still be visible on the server — as the current value, or
//! overtaken by a write that happened after it, or by a delete (deletes win), or by a
//! concurrent write with a newer stamp (the policy), but never by a version it happened
//! after (the happens-before relation is the oracle's own, see `causality.rs`) — unless a
//! confirmed force, a wipe, a logout, a user's conflict choice or a reported permanent
//! failure discarded it. The model only records and judges; it never touches an engine.

use super::causality::Order;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use sync_engine::HlcStamp;

/// Whether the server's stored `data` is `written` as a server that rewrites what it
/// stores keeps it (the server-rewrite fault): the stored row is the truth, and an
/// acknowledged write whose data came back rewritten is still the write.
fn is_rewrite_of(stored: &Map<String, Value>, written: &Map<String, Value>) -> bool {
    stored.contains_key(crate::server::SERVER_NOTE_FIELD)
        && crate::server::rewritten(written) == *stored
}

#[derive(Clone, Debug, PartialEq)]
pub struct AckedWrite {
    pub device: usize,
    pub entity: String,
    pub space_id: String,
    pub stamp: HlcStamp,
    pub data: Map<String, Value>,
    pub deleted: bool,
    pub discarded: Option<&'static str>,
    /// The write's version in the oracle's causal history, when it entered it.
    pub version: Option<usize>,
}

/// A server row as the model needs to see it.
pub struct ServerView<'a> {
    pub updated_at: HlcStamp,
    pub is_deleted: bool,
    pub data: &'a Map<String, Value>,
}

#[derive(Debug, Default)]
pub struct Model {
    /// (tenant, client id) → the latest acknowledged write of each device.
    writes: BTreeMap<(String, String), Vec<AckedWrite>>,
    /// Client ids created in each tenant (for isolation checks).
    created: BTreeMap<String, BTreeSet<String>>,
    /// The same ids in creation order, to pick update targets from.
    created_order: BTreeMap<String, Vec<String>>,
    /// (device, tenant) → the force-from-server running there: its entity and the client
    /// ids of the device's writes it discards if, and only if, it completes.
    forces_running: BTreeMap<(usize, String), (String, BTreeSet<String>)>,
    /// (device, tenant, client id) of writes discarded since the oracle last took them:
    /// the device's copy of those records may change without the change being judged.
    released: Vec<(usize, String, String)>,
}

impl Model {
    pub fn record_create(&mut self, tenant: &str, client_id: &str) {
        if self
            .created
            .entry(tenant.to_owned())
            .or_default()
            .insert(client_id.to_owned())
        {
            self.created_order
                .entry(tenant.to_owned())
                .or_default()
                .push(client_id.to_owned());
        }
    }

    /// Client ids created in `tenant`, oldest first.
    pub fn created_list(&self, tenant: &str) -> &[String] {
        self.created_order.get(tenant).map_or(&[], Vec::as_slice)
    }

    pub fn created_in(&self, tenant: &str, client_id: &str) -> bool {
        self.created
            .get(tenant)
            .is_some_and(|ids| ids.contains(client_id))
    }

    pub fn tenant_of(&self, client_id: &str) -> Option<&str> {
        self.created
            .iter()
            .find(|(_, ids)| ids.contains(client_id))
            .map(|(tenant, _)| tenant.as_str())
    }

    pub fn acknowledge(&mut self, tenant: &str, client_id: &str, write: AckedWrite) {
        let writes = self
            .writes
            .entry((tenant.to_owned(), client_id.to_owned()))
            .or_default();
        writes.retain(|existing| existing.device != write.device);
        if let Some((_, covered)) = self
            .forces_running
            .get_mut(&(write.device, tenant.to_owned()))
        {
            // A write acknowledged after the force began is not one the force discards.
            covered.remove(client_id);
        }
        writes.push(write);
    }

    /// A confirmed force-from-server of `entity` is about to run on `device`: until the
    /// engine reports how it ended, the device's writes of `entity` may or may not be
    /// discarded. Called before the engine runs it, because an offline force reports its
    /// failure within the call. `false` when a force already runs there: the engine runs
    /// one at a time and refuses this one, and nothing is recorded.
    pub fn force_from_server_requested(
        &mut self,
        device: usize,
        tenant: &str,
        entity: &str,
    ) -> bool {
        let key = (device, tenant.to_owned());
        if self.forces_running.contains_key(&key) {
            return false;
        }
        let covered: BTreeSet<String> = self
            .writes
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .filter(|(_, writes)| {
                writes.iter().any(|write| {
                    write.device == device && write.entity == entity && write.discarded.is_none()
                })
            })
            .map(|((_, client_id), _)| client_id.clone())
            .collect();
        self.forces_running
            .insert(key, (entity.to_owned(), covered));
        true
    }

    /// The force recorded by [`Model::force_from_server_requested`] never started (the
    /// engine refused it, or the app was not running): it discards nothing.
    pub fn force_from_server_not_started(&mut self, device: usize, tenant: &str) {
        self.forces_running.remove(&(device, tenant.to_owned()));
    }

    /// The engine reported the end of a force-from-server of `entity` on `device`: a
    /// completed one discarded the writes it covered, a failed one discarded nothing. A
    /// completion the model was not told of (a driver that runs forces itself) discards
    /// every write of the device's entity, as a force does.
    pub fn force_from_server_ended(
        &mut self,
        device: usize,
        tenant: &str,
        entity: &str,
        completed: bool,
    ) {
        let running = self.forces_running.remove(&(device, tenant.to_owned()));
        let covered = match running {
            Some((forced, covered)) if forced == entity => Some(covered),
            Some(other) => {
                // Not this force's outcome: the one recorded still runs.
                self.forces_running
                    .insert((device, tenant.to_owned()), other);
                None
            }
            None => None,
        };
        if !completed {
            return;
        }
        match covered {
            Some(covered) => self.discard_where("force from server", |t, client_id, write| {
                t == tenant && write.device == device && covered.contains(client_id)
            }),
            None => self.discard_device_entity(device, tenant, entity),
        }
    }

    /// The device's app stopped (killed, or its engine closed) while a force-from-server
    /// ran there, so no outcome will come. It may have committed just before the kill (a
    /// kill in the sync that starts right after a completed force drops its event), so the
    /// writes it covered count as discarded.
    pub fn app_stopped(&mut self, device: usize) {
        let stopped: Vec<(usize, String)> = self
            .forces_running
            .keys()
            .filter(|(index, _)| *index == device)
            .cloned()
            .collect();
        for key in stopped {
            let (_, covered) = self.forces_running.remove(&key).expect("listed above");
            let tenant = key.1;
            self.discard_where(
                "force from server, app stopped before its outcome",
                |t, client_id, write| {
                    *t == tenant && write.device == device && covered.contains(client_id)
                },
            );
        }
    }

    fn discard_where(
        &mut self,
        reason: &'static str,
        mut matches: impl FnMut(&str, &str, &AckedWrite) -> bool,
    ) {
        for ((tenant, client_id), writes) in self.writes.iter_mut() {
            for write in writes.iter_mut() {
                if write.discarded.is_none() && matches(tenant, client_id, write) {
                    write.discarded = Some(reason);
                    self.released
                        .push((write.device, tenant.clone(), client_id.clone()));
                }
            }
        }
    }

    pub fn discard_device_space(&mut self, device: usize, tenant: &str, space_id: &str) {
        self.discard_where("wipe", |t, _, write| {
            t == tenant && write.device == device && write.space_id == space_id
        });
    }

    pub fn discard_device_entity(&mut self, device: usize, tenant: &str, entity: &str) {
        self.discard_where("force from server", |t, _, write| {
            t == tenant && write.device == device && write.entity == entity
        });
    }

    /// A force push by `device` overrides what every other device had written.
    pub fn discard_other_devices_entity(&mut self, device: usize, tenant: &str, entity: &str) {
        self.discard_where("force push by another device", |t, _, write| {
            t == tenant && write.device != device && write.entity == entity
        });
    }

    pub fn discard_device_tenant(&mut self, device: usize, tenant: &str) {
        self.discard_where("logout", |t, _, write| {
            t == tenant && write.device == device
        });
    }

    pub fn discard_record(
        &mut self,
        device: usize,
        tenant: &str,
        client_id: &str,
        reason: &'static str,
    ) {
        self.discard_where(reason, |t, c, write| {
            t == tenant && c == client_id && write.device == device
        });
    }

    /// The writes discarded since the last call, as (device, tenant, client id).
    pub fn take_released(&mut self) -> Vec<(usize, String, String)> {
        std::mem::take(&mut self.released)
    }

    /// Checks every surviving write of devices still logged in to its tenant against the
    /// server. `server` looks a record up by (tenant, client id); `order` says how a write
    /// relates to the server's version by the harness's own happens-before relation.
    pub fn check_no_lost_writes<'a>(
        &self,
        device_tenants: &BTreeMap<usize, String>,
        server: impl Fn(&str, &str) -> Option<ServerView<'a>>,
        order: impl Fn(&str, &str, &AckedWrite, &ServerView<'a>) -> Order,
    ) -> Result<usize, String> {
        let mut checked = 0;
        for ((tenant, client_id), writes) in &self.writes {
            for write in writes {
                if write.discarded.is_some() || device_tenants.get(&write.device) != Some(tenant) {
                    continue;
                }
                let covered_by_running_force = self
                    .forces_running
                    .get(&(write.device, tenant.clone()))
                    .is_some_and(|(_, covered)| covered.contains(client_id));
                if covered_by_running_force {
                    continue;
                }
                checked += 1;
                let Some(row) = server(tenant, client_id) else {
                    return Err(format!(
                        "lost write: device {} acknowledged {client_id} in tenant {tenant} (stamp {:?}), the server has no such record",
                        write.device, write.stamp
                    ));
                };
                if row.is_deleted {
                    // Deletes win, and tombstones are final.
                    continue;
                }
                let (overtaken, present) = match order(tenant, client_id, write, &row) {
                    Order::Same => (false, true),
                    Order::After => (true, false),
                    Order::Before => {
                        return Err(format!(
                            "causality: device {} acknowledged {client_id} in tenant {tenant} at stamp {:?} with {} \
                             after it had seen the version the server ends with (stamp {:?}, {}): a write lost to \
                             one it happened after",
                            write.device,
                            write.stamp,
                            Value::Object(write.data.clone()),
                            row.updated_at,
                            Value::Object(row.data.clone())
                        ))
                    }
                    // Concurrent writes: the policy decides, the newer stamp wins.
                    Order::Unrelated => (
                        row.updated_at > write.stamp,
                        row.updated_at == write.stamp
                            && (write.deleted
                                || row.data == &write.data
                                || is_rewrite_of(row.data, &write.data)),
                    ),
                };
                if !overtaken && !present {
                    return Err(format!(
                        "lost write: device {} acknowledged {client_id} in tenant {tenant} at stamp {:?} with {}; \
                         the server holds stamp {:?} with {} (a causally later or newer write must win)",
                        write.device,
                        write.stamp,
                        Value::Object(write.data.clone()),
                        row.updated_at,
                        Value::Object(row.data.clone())
                    ));
                }
            }
        }
        Ok(checked)
    }
}

#[cfg(test)]
mod tests {
    //! Regression: the drivers recorded a force-from-server's discards before running it
    //! and never took them back, so after a force that failed (and discarded nothing) the
    //! oracle stopped checking the device's writes of that entity. These tests prove the
    //! model now holds a failed force's writes to the no-lost-write check, and lets only
    //! a completed one (or one whose outcome a kill swallowed) discard them.
    use super::*;

    const TENANT: &str = "acme";

    fn model_with_one_write() -> Model {
        let mut model = Model::default();
        model.acknowledge(
            TENANT,
            "c1",
            AckedWrite {
                device: 0,
                entity: "Space".to_owned(),
                space_id: "s1".to_owned(),
                stamp: HlcStamp(7),
                data: Map::new(),
                deleted: false,
                discarded: None,
                version: None,
            },
        );
        model
    }

    /// Whether the write counts as lost when the server never got it.
    fn lost(model: &Model) -> bool {
        let logged_in = BTreeMap::from([(0, TENANT.to_owned())]);
        model
            .check_no_lost_writes(&logged_in, |_, _| None, |_, _, _, _| Order::Unrelated)
            .is_err()
    }

    #[test]
    fn a_failed_force_discards_nothing_and_a_completed_one_discards_what_it_covered() {
        // Proves: while a force runs its writes are not judged; a failed force hands them
        // back to the check; a completed one discards them; a second request while one
        // runs records nothing; a kill that swallows the outcome counts as a discard.
        let mut model = model_with_one_write();
        assert!(lost(&model), "an unsynced write the server lacks is lost");

        assert!(model.force_from_server_requested(0, TENANT, "Space"));
        assert!(!lost(&model), "a running force may still discard it");
        assert!(!model.force_from_server_requested(0, TENANT, "Space"));
        model.force_from_server_ended(0, TENANT, "Space", false);
        assert!(lost(&model), "a failed force discarded nothing");

        assert!(model.force_from_server_requested(0, TENANT, "Space"));
        model.force_from_server_not_started(0, TENANT);
        assert!(lost(&model), "a refused force discarded nothing");

        assert!(model.force_from_server_requested(0, TENANT, "Group"));
        model.force_from_server_ended(0, TENANT, "Group", true);
        assert!(
            lost(&model),
            "a force of another entity discards nothing of this one"
        );

        assert!(model.force_from_server_requested(0, TENANT, "Space"));
        model.app_stopped(0);
        assert!(
            !lost(&model),
            "a kill may have swallowed a completed force's outcome"
        );

        let mut model = model_with_one_write();
        assert!(model.force_from_server_requested(0, TENANT, "Space"));
        model.force_from_server_ended(0, TENANT, "Space", true);
        assert!(!lost(&model), "a completed force discarded it");
    }
}
