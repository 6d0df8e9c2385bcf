//! Adversarial tenants and lifecycles in the random world.
//!
//! Tenant ids: with `adversarial_tenants` a world's ids are drawn to collide — variants of
//! one base id that differ only by case, by `-` versus `_`, or by a SQLite companion suffix
//! (`-wal`, `-shm`, `-journal`), some at the 64-character limit — so that a file-name
//! mapping that is not injective under case folding, or that lets one tenant's database be
//! another's WAL, meets its counterexample (the kernel checks the mapping on every open).
//!
//! Lifecycles: with `lifecycle_after_kill`, some logouts and tenant switches come right
//! after a kill, while the files still hold the killed process's WAL; a switch then drops
//! the database of the tenant it left. The kernel checks that a drop leaves no file and
//! that a dropped tenant opens empty. This module chooses ids and actions; it never
//! touches files itself.

use super::Act;
use crate::kernel::Failure;
use crate::profile::Knobs;
use crate::rng::{SimRng, Stream};

/// The tenant ids of a world: `t0, t1, …`, or colliding ids with `adversarial_tenants`.
pub fn tenant_ids(seed: u64, knobs: &Knobs) -> Vec<String> {
    if !knobs.adversarial_tenants {
        return (0..knobs.tenants)
            .map(|index| format!("t{index}"))
            .collect();
    }
    let mut rng = SimRng::for_stream(seed, Stream::Tenants);
    let base = base_id(&mut rng);
    let mut candidates = vec![
        swap_case(&base),
        base.to_ascii_lowercase(),
        base.to_ascii_uppercase(),
        base.replace('-', "+").replace('_', "-").replace('+', "_"),
    ];
    let suffix = ["-wal", "-shm", "-journal", "-WAL"][rng.index(4)];
    if base.len() + suffix.len() <= 64 {
        candidates.push(format!("{base}{suffix}"));
    }
    let mut ids = vec![base];
    while ids.len() < knobs.tenants && !candidates.is_empty() {
        let candidate = candidates.remove(rng.index(candidates.len()));
        if !ids.contains(&candidate) {
            ids.push(candidate);
        }
    }
    let mut spare = 0;
    while ids.len() < knobs.tenants {
        ids.push(format!("t{spare}"));
        spare += 1;
        ids.dedup();
    }
    ids
}

/// A mixed-case id with both `-` and `_`: short, 60 characters (so that a companion suffix
/// lands exactly on the limit), or at the 64-character limit.
fn base_id(rng: &mut SimRng) -> String {
    let short = format!("Acme-Org_{}", rng.range(0, 99));
    let target = [short.len(), 60, 64][rng.index(3)];
    let alphabet = b"aBcDeF-_xYz0189";
    let mut id = short;
    while id.len() < target {
        id.push(alphabet[rng.index(alphabet.len())] as char);
    }
    id
}

fn swap_case(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

impl Act<'_> {
    /// The app is killed, then the user logs out while it is down: the tenant's files
    /// still hold the killed process's WAL when they are dropped.
    pub(super) fn logout_after_kill(&mut self) -> Result<(), Failure> {
        let name = self.name();
        self.sim
            .trace(format!("{name} is killed, then logs out while down"));
        self.sim.kill(self.index);
        self.sim.logout(self.index)
    }

    /// The app is killed, the user opens it on another tenant, and the app drops the
    /// database of the tenant it left (still holding the killed process's WAL).
    pub(super) fn switch_after_kill_and_drop(&mut self) -> Result<(), Failure> {
        let current = self.tenant();
        let Some(next) = self.other_tenant() else {
            return Ok(());
        };
        self.sim.trace(format!(
            "{} is killed, switches to {next} and drops {current}",
            self.name()
        ));
        self.sim.kill(self.index);
        self.sim.switch_tenant(self.index, &next)?;
        self.sim.drop_tenant(self.index, &current)
    }
}
