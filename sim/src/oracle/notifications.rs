//! The check of change notifications: what a device's engine announced with
//! `RecordsChanged` events against what its database shows through the public reads.
//!
//! Per device, the oracle keeps the records the device showed at the last check (every
//! record, read with `all_records` at the reopen and at each check). A check compares
//! them with what the device shows now, over the window of calls since the last one:
//! every record that appeared, disappeared or shows any field differently must have been
//! announced in the window's events, under its entity, and a record announced exactly
//! once must show a change (a record changed and changed back is announced twice). A
//! kill inside a call swallows its events, so the device's view is dropped until the
//! reopen reads it afresh.
//!
//! Reading every record after every call doubled a campaign's time, so a device is
//! compared every [`CALLS_PER_CHECK`] returned calls and at the end of the run: a change
//! left unannounced stays different from the last view until the next comparison (only
//! another announced change of the same record can hide it), so the window costs little
//! of what the check finds.
//!
//! This module reads engines; it never drives them.

use sync_engine::{Engine, Record};

use std::collections::BTreeMap;

/// Returned calls of a device between two comparisons of its records.
pub const CALLS_PER_CHECK: u32 = 32;

/// What one device showed at the last check.
#[derive(Debug)]
struct Shown {
    tenant: String,
    records: BTreeMap<String, Record>,
    /// Calls returned since the last comparison.
    calls: u32,
}

/// The announcements of the call in progress: per client id, its entity and how many
/// events named it.
type Announced = BTreeMap<String, (String, u32)>;

#[derive(Debug, Default)]
pub struct Notifications {
    shown: BTreeMap<usize, Shown>,
    announced: BTreeMap<usize, Announced>,
}

impl Notifications {
    /// The device (re)opened `tenant` and shows `records`: the baseline of its next check.
    pub fn opened(&mut self, device: usize, tenant: &str, records: &[Record]) {
        let records = records
            .iter()
            .map(|record| (record.client_id.clone(), record.clone()))
            .collect();
        let tenant = tenant.to_owned();
        let calls = 0;
        self.shown.insert(
            device,
            Shown {
                tenant,
                records,
                calls,
            },
        );
        self.announced.remove(&device);
    }

    /// The device's process ended or logged out: its view is read afresh at the next open.
    pub fn forget(&mut self, device: usize) {
        self.shown.remove(&device);
        self.announced.remove(&device);
    }

    /// A `RecordsChanged` event: its ids are sorted, without repeats, and not empty.
    pub fn announce(&mut self, device: usize, entity: &str, ids: &[String]) -> Result<(), String> {
        if ids.is_empty() {
            return Err(format!("RecordsChanged of {entity} names no record"));
        }
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(format!(
                "RecordsChanged of {entity} is not sorted without repeats: {} before {}",
                pair[0], pair[1]
            ));
        }
        let announced = self.announced.entry(device).or_default();
        for id in ids {
            let (named, count) = announced
                .entry(id.clone())
                .or_insert_with(|| (entity.to_owned(), 0));
            if named != entity {
                return Err(format!(
                    "RecordsChanged names {id} under {named} and {entity}"
                ));
            }
            *count += 1;
        }
        Ok(())
    }

    /// After a call into the device's engine returned and its events were drained (or at
    /// the end of a run, `now`): once the window is full, every change the device shows
    /// was announced, and nothing announced once is unchanged. Returns how many records
    /// it compared.
    pub fn check(
        &mut self,
        device: usize,
        tenant: &str,
        engine: &Engine,
        now: bool,
    ) -> Result<u64, String> {
        let Some(shown) = self
            .shown
            .get_mut(&device)
            .filter(|shown| shown.tenant == tenant)
        else {
            self.announced.remove(&device);
            return Ok(0);
        };
        shown.calls += 1;
        if !now && shown.calls < CALLS_PER_CHECK {
            return Ok(0);
        }
        shown.calls = 0;
        let announced = self.announced.remove(&device).unwrap_or_default();
        let now: BTreeMap<String, Record> = engine
            .all_records()
            .map_err(|error| format!("reading every record: {error}"))?
            .into_iter()
            .map(|record| (record.client_id.clone(), record))
            .collect();
        let before = std::mem::replace(&mut shown.records, now);
        let now = &shown.records;
        let mut ids: Vec<&String> = before.keys().chain(now.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in &ids {
            let (old, new) = (before.get(*id), now.get(*id));
            let changed = old != new;
            let entity = new.or(old).map(|record| record.entity.as_str());
            match announced.get(*id) {
                None if changed => {
                    return Err(format!(
                        "notifications: {id} changed without a RecordsChanged event \
                         (was {}, now {})",
                        describe(old),
                        describe(new)
                    ))
                }
                Some((named, _)) if Some(named.as_str()) != entity && entity.is_some() => {
                    return Err(format!(
                        "notifications: {id} announced under {named}, but it is a {}",
                        entity.unwrap_or_default()
                    ))
                }
                Some((_, 1)) if !changed => {
                    return Err(format!(
                        "notifications: {id} announced once but shows no change ({})",
                        describe(new)
                    ))
                }
                _ => {}
            }
        }
        if let Some(id) = announced
            .keys()
            .find(|id| !before.contains_key(*id) && !now.contains_key(*id))
        {
            if announced[id].1 == 1 {
                return Err(format!(
                    "notifications: {id} announced once but the device never showed it"
                ));
            }
        }
        Ok(ids.len() as u64)
    }
}

fn describe(record: Option<&Record>) -> String {
    match record {
        None => "absent".to_owned(),
        Some(record) => format!(
            "version {} base {} stamp {:?} deleted {} server id {:?}",
            record.version,
            record.base_version,
            record.updated_at,
            record.is_deleted,
            record.server_id
        ),
    }
}
