//! A scenario's `expect` lines: questions about one device, the server, or the whole
//! world. The world-wide ones are the oracle's own queries (`converged` is
//! [`crate::kernel::Sim::difference`], `no-duplicates` the oracle's duplicate check,
//! `cannot-access` its cross-tenant probe); the others read an engine or the server
//! through their public inspection methods. This module never changes the world.

use super::parse::{Expectation, Who};
use super::runner::{failed, Scene};
use serde_json::Value;
use sync_engine::OpStatus;

fn expect_eq<T: PartialEq + std::fmt::Display>(
    found: T,
    expected: T,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    if found == expected {
        Ok(())
    } else {
        Err(format!("expected {expected} {}, found {found}", what()))
    }
}

impl Scene {
    fn server_record(&self, tenant: &str, client_id: &str) -> Option<crate::server::ServerRecord> {
        self.sim
            .server()
            .records(tenant)
            .into_iter()
            .find(|record| record.client_id == client_id)
            .cloned()
    }

    fn record_on_device(
        &self,
        index: usize,
        client_id: &str,
    ) -> Result<Option<sync_engine::Record>, String> {
        self.engine(index)?
            .get(client_id)
            .map_err(|error| error.to_string())
    }

    pub fn check(&mut self, expectation: &Expectation) -> Result<(), String> {
        match expectation {
            Expectation::Count {
                who,
                tenant,
                entity,
                count,
            } => {
                let (place, found) = match who {
                    Who::Server => {
                        let tenant = tenant.clone().expect("parsed with a tenant");
                        let found = self
                            .sim
                            .server()
                            .records(&tenant)
                            .iter()
                            .filter(|record| record.entity == *entity && !record.is_deleted)
                            .count();
                        (format!("the server (tenant {tenant})"), found)
                    }
                    Who::Device(name) => {
                        let index = self.index(name)?;
                        let found = self
                            .engine(index)?
                            .all_records()
                            .map_err(|error| error.to_string())?
                            .iter()
                            .filter(|record| record.entity == *entity && !record.is_deleted)
                            .count();
                        (name.clone(), found)
                    }
                };
                expect_eq(found, *count, || {
                    format!("live {entity} records on {place}")
                })
            }
            Expectation::Field {
                who,
                alias,
                field,
                value,
            } => {
                let (tenant, client_id) = self.alias(alias)?;
                let (place, data) = match who {
                    Who::Server => (
                        "the server".to_owned(),
                        self.server_record(&tenant, &client_id)
                            .map(|record| record.data),
                    ),
                    Who::Device(name) => {
                        let index = self.index(name)?;
                        let record = self.record_on_device(index, &client_id)?;
                        (name.clone(), record.map(|record| record.data))
                    }
                };
                let data = data.ok_or_else(|| format!("{alias} does not exist on {place}"))?;
                let found = data.get(field).cloned().unwrap_or(Value::Null);
                if found == *value {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {alias}.{field} = {value} on {place}, found {found} (the record is {})",
                        Value::Object(data)
                    ))
                }
            }
            Expectation::Deleted(who, alias) | Expectation::Exists(who, alias) => {
                let want_live = matches!(expectation, Expectation::Exists(..));
                let (tenant, client_id) = self.alias(alias)?;
                let (place, live) = match who {
                    Who::Server => (
                        "the server".to_owned(),
                        self.server_record(&tenant, &client_id)
                            .is_some_and(|record| !record.is_deleted),
                    ),
                    Who::Device(name) => {
                        let index = self.index(name)?;
                        let record = self.record_on_device(index, &client_id)?;
                        (
                            name.clone(),
                            record.is_some_and(|record| !record.is_deleted),
                        )
                    }
                };
                if live == want_live {
                    Ok(())
                } else if want_live {
                    Err(format!(
                        "expected {alias} to exist on {place}; it is deleted or absent"
                    ))
                } else {
                    Err(format!(
                        "expected {alias} to be deleted on {place}; it is live"
                    ))
                }
            }
            Expectation::Conflict {
                device,
                alias,
                fields,
            } => {
                let index = self.index(device)?;
                let (_, client_id) = self.alias(alias)?;
                let conflicts = self
                    .engine(index)?
                    .list_conflicts()
                    .map_err(|error| error.to_string())?;
                let conflict = conflicts
                    .iter()
                    .find(|conflict| conflict.client_id == client_id)
                    .ok_or_else(|| {
                        format!(
                            "expected an open conflict on {alias} on {device}; it has {} open conflicts, none on {alias}",
                            conflicts.len()
                        )
                    })?;
                let changed: Vec<String> = conflict
                    .changed_fields()
                    .into_iter()
                    .map(|diff| diff.field)
                    .collect();
                let mut wanted = fields.clone();
                wanted.sort();
                if changed == wanted {
                    Ok(())
                } else {
                    Err(format!(
                        "the conflict on {alias} on {device} differs in fields {changed:?}, expected {wanted:?}"
                    ))
                }
            }
            Expectation::NoConflicts(device) => {
                let index = self.index(device)?;
                let open = self
                    .engine(index)?
                    .list_conflicts()
                    .map_err(|error| error.to_string())?;
                expect_eq(open.len(), 0, || format!("open conflicts on {device}"))
            }
            Expectation::QueueEmpty(device) => {
                let index = self.index(device)?;
                let waiting: Vec<String> = self
                    .engine(index)?
                    .queued_ops()
                    .map_err(|error| error.to_string())?
                    .into_iter()
                    .filter(|op| matches!(op.status, OpStatus::Pending | OpStatus::Sending))
                    .map(|op| {
                        format!(
                            "{} {} ({:?})",
                            op.operation.as_str(),
                            op.entity_id,
                            op.status
                        )
                    })
                    .collect();
                if waiting.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "expected {device}'s queue to be empty; {} ops wait: {}",
                        waiting.len(),
                        waiting.join(", ")
                    ))
                }
            }
            Expectation::Pending(device, n) | Expectation::Failed(device, n) => {
                let index = self.index(device)?;
                let status = self
                    .engine(index)?
                    .status()
                    .map_err(|error| error.to_string())?;
                let (what, found) = match expectation {
                    Expectation::Pending(..) => ("pending ops", status.pending_ops),
                    _ => ("failed ops", status.failed_ops),
                };
                expect_eq(found, *n, || format!("{what} on {device}"))
            }
            Expectation::Requests(device, operation, n) => {
                let index = self.index(device)?;
                let requests = &self.sim.device(index).counters.requests;
                let found = requests.get(operation).copied().unwrap_or(0);
                expect_eq(found, *n, || {
                    format!(
                        "{operation} requests sent by {device} since the last reset-counters (all: {requests:?})"
                    )
                })
            }
            Expectation::SyncsStarted(device, n) => {
                let index = self.index(device)?;
                let found = self.sim.device(index).counters.syncs_started;
                expect_eq(found, *n, || {
                    format!("syncs started on {device} since the last reset-counters")
                })
            }
            Expectation::MaxInFlight(device, n) => {
                let index = self.index(device)?;
                let found = self.sim.device(index).counters.max_in_flight;
                if found <= *n {
                    Ok(())
                } else {
                    Err(format!(
                        "{device} had {found} requests in flight at once, at most {n} expected"
                    ))
                }
            }
            Expectation::CannotAccess(device, other) => {
                let index = self.index(device)?;
                let own = self.tenant(index)?;
                if own == *other {
                    return Err(format!("{device} is logged in to {other} itself"));
                }
                if !self.sim.tenants().contains(other) {
                    return Err(format!("unknown tenant {other:?}"));
                }
                self.sim
                    .probe_cross_tenant(index, Some(other))
                    .map_err(failed)
            }
            Expectation::Converged => match self.sim.difference().map_err(failed)? {
                None => Ok(()),
                Some(difference) => Err(format!("not converged: {difference}")),
            },
            Expectation::NoDuplicates => self.sim.check_no_duplicates().map_err(failed),
        }
    }
}
