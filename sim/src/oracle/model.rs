//! The reference model: every local write the app was told succeeded, and what may
//! legitimately discard it.
//!
//! A write is acknowledged when the engine call returned `Ok`. At the end of a run, each
//! acknowledged write must still be visible on the server — as the current value, or
//! overtaken by a write with a newer stamp, or by a delete (deletes win) — unless a
//! confirmed force, a wipe, a logout, a user's conflict choice or a reported permanent
//! failure discarded it. The model only records and judges; it never touches an engine.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use sync_engine::HlcStamp;

#[derive(Clone, Debug, PartialEq)]
pub struct AckedWrite {
    pub device: usize,
    pub entity: String,
    pub space_id: String,
    pub stamp: HlcStamp,
    pub data: Map<String, Value>,
    pub deleted: bool,
    pub discarded: Option<&'static str>,
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
        writes.push(write);
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

    /// Checks every surviving write of devices still logged in to its tenant against the
    /// server. `server` looks a record up by (tenant, client id).
    pub fn check_no_lost_writes<'a>(
        &self,
        device_tenants: &BTreeMap<usize, String>,
        server: impl Fn(&str, &str) -> Option<ServerView<'a>>,
    ) -> Result<usize, String> {
        let mut checked = 0;
        for ((tenant, client_id), writes) in &self.writes {
            for write in writes {
                if write.discarded.is_some() || device_tenants.get(&write.device) != Some(tenant) {
                    continue;
                }
                checked += 1;
                let Some(row) = server(tenant, client_id) else {
                    return Err(format!(
                        "lost write: device {} acknowledged {client_id} in tenant {tenant} (stamp {:?}), the server has no such record",
                        write.device, write.stamp
                    ));
                };
                let overtaken = row.is_deleted || row.updated_at > write.stamp;
                let present =
                    row.updated_at == write.stamp && (write.deleted || row.data == &write.data);
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
