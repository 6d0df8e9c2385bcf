//! The `sim_world` target: a whole simulated world — the random world of `world.rs` on
//! the simulation kernel, devices running the real engine, the reference server, a faulty
//! network — with a fuzzer-chosen seed and knobs. The oracle is the simulator's own: every
//! safety invariant, and convergence once healed. This file only maps bytes to knobs (and
//! an input to the case file of its run); it never relaxes a knob beyond the ranges the
//! profiles use.

use super::{decode, few};
use crate::case::Case;
use crate::profile::{FaultClass, Knobs, Profile};
use crate::rng::Ratio;
use crate::world::{run_seed_with_knobs, RunOptions};
use arbitrary::Arbitrary;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The simulator's knobs, drawn by the fuzzer instead of a profile: every field is brought
/// into the range the profiles use, so a failure is a bug, not an impossible world.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct KnobsInput {
    pub tenants: u8,
    pub devices: u8,
    pub spaces_per_tenant: u8,
    /// (fault class index, rate in percent); a class named twice takes the last rate.
    #[serde(default)]
    #[arbitrary(with = few::<(u8, u8), 12>)]
    pub faults: Vec<(u8, u8)>,
    pub safety_s: u8,
    pub action_gap_ms_max: u16,
    pub network_delay_ms_max: u16,
    #[serde(default)]
    pub clock_offset_ms_max: u32,
    #[serde(default)]
    pub clock_drift_ppm_max: u16,
    #[serde(default)]
    pub clock_jump_ms_max: u32,
    pub bulk_create_max: u8,
    pub push_batch_max: u8,
    pub pull_page_limit: u8,
    #[serde(default)]
    pub sync_after_write: bool,
    #[serde(default)]
    pub auto_merge_fields: bool,
    #[serde(default)]
    pub concurrent_edit_quarters: u8,
    /// Create, update, delete, bulk, sync, resolve, force, wipe, logout/login, switch.
    pub workload_weights: [u8; 10],
}

impl KnobsInput {
    fn to_knobs(&self) -> Knobs {
        let mut faults = BTreeMap::new();
        for (class, percent) in self.faults.iter().take(FaultClass::ALL.len()) {
            let class = FaultClass::ALL[usize::from(*class) % FaultClass::ALL.len()];
            let percent = u64::from(*percent % 51);
            if percent > 0 {
                faults.insert(class, Ratio::new(percent, 100));
            }
        }
        let mut workload_weights = self.workload_weights.map(|weight| u64::from(weight % 32));
        if workload_weights.iter().all(|weight| *weight == 0) {
            workload_weights[0] = 1;
        }
        Knobs {
            profile: Profile::Lite,
            tenants: usize::from(self.tenants % 2) + 1,
            devices: usize::from(self.devices % 2) + 2,
            spaces_per_tenant: usize::from(self.spaces_per_tenant % 2) + 1,
            faults,
            safety_duration_ms: (u64::from(self.safety_s % 110) + 10) * 1000,
            liveness_rounds_max: 12,
            // Profiles space actions 2-30 s apart; much denser worlds only run slower.
            action_gap_ms_max: u64::from(self.action_gap_ms_max % 30_000).max(1_000),
            network_delay_ms_max: u64::from(self.network_delay_ms_max % 3_000).max(5),
            request_timeout_ms: 10_000,
            clock_offset_ms_max: u64::from(self.clock_offset_ms_max % (3 * 3_600_000)),
            clock_drift_ppm_max: u64::from(self.clock_drift_ppm_max % 2_000),
            clock_jump_ms_max: u64::from(self.clock_jump_ms_max % (6 * 3_600_000)).max(1_000),
            bulk_create_max: usize::from(self.bulk_create_max % 60) + 1,
            push_batch_max: usize::from(self.push_batch_max % 100) + 1,
            pull_page_limit: usize::from(self.pull_page_limit % 50) + 2,
            sync_after_write: self.sync_after_write,
            auto_merge_fields: self.auto_merge_fields,
            concurrent_edit: Ratio::new(u64::from(self.concurrent_edit_quarters % 5), 4),
            workload_weights,
            // Bits the fields above leave unused, so that saved inputs keep their meaning.
            adversarial_tenants: self.tenants & 2 != 0,
            inflight_actions: Ratio::new(u64::from(self.spaces_per_tenant / 2 % 4), 10),
            lifecycle_after_kill: Ratio::new(u64::from(self.devices / 2 % 3), 4),
            invalid_write: Ratio::ZERO,
            large_write: Ratio::ZERO,
        }
    }
}

/// Input of [`sim_world`]: a seed and the knobs to run it with.
#[derive(Clone, Debug, PartialEq, Arbitrary, Deserialize)]
pub struct WorldInput {
    pub seed: u64,
    pub knobs: KnobsInput,
}

/// A simulated world (devices running the real engine, the reference server, a faulty
/// network) with fuzzer-chosen knobs passes every safety invariant and converges once
/// healed, exactly as the simulator's own seeds must.
pub fn sim_world(data: &[u8]) {
    if let Some(input) = decode::<WorldInput>(data) {
        sim_world_input(&input);
    }
}

/// The run a `sim_world` input makes, written down as a case file (`syncsim
/// case-from-fuzz`), so that a crash libFuzzer found replays through `syncsim replay
/// --case` and shrinks through `syncsim shrink --case` like any seed. An error for bytes
/// the target would skip.
pub fn sim_world_case(data: &[u8]) -> Result<Case, String> {
    let input = decode::<WorldInput>(data)
        .ok_or("not a sim_world input: too few bytes for its seed and knobs")?;
    Ok(Case::record(input.seed, input.knobs.to_knobs(), &[], false).0)
}

pub fn sim_world_input(input: &WorldInput) {
    let knobs = input.knobs.to_knobs();
    let report = run_seed_with_knobs(input.seed, knobs.clone(), &RunOptions::default());
    if let Some(failure) = &report.failure {
        panic!(
            "world seed {} failed ({:?}): {}\nknobs: {knobs:?}\nrecent events:\n{}",
            input.seed,
            failure.kind,
            failure.message,
            report.recent_events.join("\n")
        );
    }
}
