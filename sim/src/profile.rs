//! Profiles and the per-seed knobs drawn from them (swarm testing).
//!
//! A profile names ranges; each seed draws its own configuration inside them: how many
//! tenants and devices, which fault classes are on and at what rate, the workload mix,
//! the batch sizes. Drawing uses only the `Knobs` stream, so the knobs of a seed never
//! depend on anything the run does.

use crate::kernel::probes::Probe;
use crate::rng::{Ratio, SimRng, Stream};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A family of seeds: the ranges each seed draws its knobs from.
///
/// The lowercase names are the `--profile` values and appear in JSON summaries and replay
/// commands; strum derives parsing, naming and the list of names from this definition.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Profile {
    /// Small worlds, short runs: the fastest smoke test.
    Lite,
    /// The campaign profile: every fault class in play.
    Default,
    /// Bulk creates up to 10k items per action.
    Big,
    /// Throughput: faults rarer, more actions per device.
    Perf,
}

impl Profile {
    /// Every profile's name, in declaration order (`lite`, `default`, `big`, `perf`).
    pub const NAMES: &'static [&'static str] = <Profile as strum::VariantNames>::VARIANTS;

    pub fn parse(raw: &str) -> Option<Profile> {
        raw.parse().ok()
    }

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The code-path probes a campaign of this profile is meant to reach: one of them that
    /// never fires in a campaign of at least `PROBE_ACCOUNTING_SEEDS_MIN` seeds fails it.
    /// `safety_only` campaigns have no liveness phase, so nothing is expected of it.
    pub fn expected_probes(self, safety_only: bool) -> Vec<Probe> {
        let mut expected = vec![
            Probe::ConflictStored,
            Probe::ConflictResolved,
            Probe::OpSuperseded,
            Probe::RecordDeletedSettledOp,
            Probe::StaleAnswered,
            Probe::LateAnswerIgnored,
            Probe::PageSplitsCommit,
            Probe::CursorInsideCommit,
            Probe::ForceExecuted,
            Probe::ForceFromServerCompleted,
            Probe::SpaceWiped,
            Probe::SyncByAppOpen,
            Probe::SyncByNetworkRegained,
            Probe::SyncByAfterWrite,
            Probe::SyncByRetry,
            Probe::SyncByManual,
        ];
        if self != Profile::Lite {
            expected.extend([Probe::ConflictAutoMerged, Probe::ForceFailed]);
        }
        if !safety_only {
            expected.push(Probe::SyncByInterval);
        }
        expected.sort();
        expected
    }
}

/// Every fault class the simulator can inject and count.
///
/// serde (JSON summaries) and strum (`name`, the campaign's text report) both spell the
/// classes in snake_case; a test below keeps the two spellings equal.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumCount,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum FaultClass {
    RequestLost,
    ResponseLost,
    DuplicateDelivery,
    Delay,
    Partition,
    OfflinePeriod,
    ServerBusy,
    ServerTimeout,
    KillBetweenCalls,
    KillAtCrashPoint,
    ClockJump,
    CrossTenantProbe,
    /// A kill at a transaction boundary of the engine: before or after any commit.
    KillAtCommit,
    /// The device's disk is full for a while: its database may not grow, so a write that
    /// needs a new page fails (`SQLITE_FULL`), one that fits succeeds.
    DiskFull,
    /// Another process of the app holds the database's write lock for a while: every
    /// write of the engine fails busy (`SQLITE_BUSY`); reads go on.
    StorageBusy,
    /// The server commits the first few ops of a push batch, then fails the request
    /// (the `SERVER_BUSY` envelope or a dropped connection) instead of answering.
    PartialBatch,
    /// A request is held in the network past the device's request timeout and reaches
    /// the server only then, after the device gave up on it (and usually retried): the
    /// server applies it late, and its answer comes to a device that no longer waits.
    LateArrival,
    /// For a while, the server's pull pages stop advancing: every pull it would answer
    /// normally hands back the request's own cursor with `hasMore: true`, with the page's
    /// rows or with none, as a server stuck in a paging bug would.
    EndlessPaging,
    /// The server rewrites what it stores for a push: every inserted or updated row is
    /// stored normalized, with a server-set field, at the version it assigns, and the
    /// answer leaves both cursors null so the writer pulls the stored rows.
    ServerRewrite,
    /// The device loses power at a kill: its database file stays as the last checkpoint
    /// left it, its `-wal` keeps a prefix (any byte length, no shorter than what a
    /// checkpoint synced) and its `-shm` is gone.
    PowerLoss,
    /// The server keeps tombstones only for a retention window: now and then it purges
    /// those older than its last few commits, and answers a pull from a cursor before
    /// them `RESYNC_REQUIRED`.
    BoundedRetention,
    /// The device's database file is found damaged when the app opens after a kill (a
    /// page or its header overwritten): the engine must refuse it typed, and the app runs
    /// the recovery, which keeps the readable unsent ops and re-pulls the rest.
    CorruptAtOpen,
    /// The app's second process (a background sync task) opens the same tenant database
    /// while the app runs, may write a record, syncs, and closes once its sync ended; it
    /// may be killed like the app. Both processes write and sync one database.
    SecondProcess,
}

impl FaultClass {
    /// Every class in declaration order, as an array so callers can iterate by value. The
    /// order matters: knob drawing walks it, so reordering reshuffles every seed.
    pub const ALL: [FaultClass; <FaultClass as strum::EnumCount>::COUNT] =
        *<FaultClass as strum::VariantArray>::VARIANTS
            .first_chunk()
            .unwrap();

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Classes whose knobs are drawn after every other knob of a seed: added after the
    /// others, they leave the knobs every older seed drew as they were.
    const DRAWN_LAST: [FaultClass; 1] = [FaultClass::KillAtCommit];

    /// The storage faults, drawn after every other knob (for the same reason).
    pub const STORAGE: [FaultClass; 2] = [FaultClass::DiskFull, FaultClass::StorageBusy];

    /// The server faults added after the storage faults, drawn after them (for the same
    /// reason), in this order.
    pub const SERVER_LATE: [FaultClass; 4] = [
        FaultClass::PartialBatch,
        FaultClass::LateArrival,
        FaultClass::EndlessPaging,
        FaultClass::ServerRewrite,
    ];

    /// The storage faults added after the late server faults, drawn after them (for the
    /// same reason).
    pub const STORAGE_LATE: [FaultClass; 1] = [FaultClass::PowerLoss];

    /// The server faults added after the late storage faults, drawn after them (for the
    /// same reason).
    pub const SERVER_LATER: [FaultClass; 1] = [FaultClass::BoundedRetention];

    /// Whether the class's knob is drawn after the swarm's walk over every class.
    fn drawn_later(self) -> bool {
        self == FaultClass::CorruptAtOpen
            || self == FaultClass::SecondProcess
            || FaultClass::DRAWN_LAST.contains(&self)
            || FaultClass::STORAGE.contains(&self)
            || FaultClass::SERVER_LATE.contains(&self)
            || FaultClass::STORAGE_LATE.contains(&self)
            || FaultClass::SERVER_LATER.contains(&self)
    }
}

const YEAR_MS: u64 = 365 * 86_400_000;

/// The configuration one seed runs with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knobs {
    pub profile: Profile,
    pub tenants: usize,
    pub devices: usize,
    pub spaces_per_tenant: usize,
    /// Rate of each enabled fault class (per request, per action, or per crash point).
    pub faults: BTreeMap<FaultClass, Ratio>,
    pub safety_duration_ms: u64,
    pub liveness_rounds_max: usize,
    pub action_gap_ms_max: u64,
    pub network_delay_ms_max: u64,
    pub request_timeout_ms: u64,
    pub clock_offset_ms_max: u64,
    pub clock_drift_ppm_max: u64,
    pub clock_jump_ms_max: u64,
    pub bulk_create_max: usize,
    pub push_batch_max: usize,
    pub pull_page_limit: usize,
    pub sync_after_write: bool,
    pub auto_merge_fields: bool,
    /// Share of updates that another device of the tenant makes to the same record, in
    /// the same virtual millisecond, with a different value.
    pub concurrent_edit: Ratio,
    /// Workload weights: create, update, delete, bulk, sync, resolve, force, wipe,
    /// logout/login, switch tenant.
    pub workload_weights: [u64; 10],
    /// Tenant ids drawn to collide: differing only by case, by `-` versus `_`, by a SQLite
    /// companion suffix (`-wal`), at the 64-character limit (`world/tenants.rs`).
    pub adversarial_tenants: bool,
    /// Chance that a request a device sends gets a user action while it is on the wire
    /// (`world/inflight.rs`).
    pub inflight_actions: Ratio,
    /// Share of logouts and tenant switches that come right after a kill, while the files
    /// still hold the killed process's WAL; a switch then drops the tenant it left.
    pub lifecycle_after_kill: Ratio,
    /// Share of written records that break a rule of the server's (`server/rules.rs`).
    pub invalid_write: Ratio,
    /// Share of create actions whose records are large (about a kilobyte each), so that a
    /// bulk of them is over one push request's size limit.
    pub large_write: Ratio,
}

impl Knobs {
    pub fn fault(&self, class: FaultClass) -> Ratio {
        self.faults.get(&class).copied().unwrap_or(Ratio::ZERO)
    }

    /// The same knobs with the fault classes `off` switched off (`syncsim run --without`):
    /// every other knob, and every other class's stream, stays as the seed drew it.
    pub fn without(mut self, off: &BTreeSet<FaultClass>) -> Knobs {
        self.faults.retain(|class, _| !off.contains(class));
        self
    }

    /// A world with no faults and exact clocks: one tenant, two devices, the engine's
    /// default batch sizes. Scenarios and tests start here and set what they need.
    pub fn quiet() -> Knobs {
        Knobs {
            profile: Profile::Lite,
            tenants: 1,
            devices: 2,
            spaces_per_tenant: 1,
            faults: BTreeMap::new(),
            safety_duration_ms: 0,
            liveness_rounds_max: 12,
            action_gap_ms_max: 10_000,
            network_delay_ms_max: 3_000,
            request_timeout_ms: 10_000,
            clock_offset_ms_max: 0,
            clock_drift_ppm_max: 0,
            clock_jump_ms_max: 1_000,
            bulk_create_max: 1,
            push_batch_max: sync_engine::registry::PUSH_BATCH_MAX_DEFAULT,
            pull_page_limit: sync_engine::registry::PULL_PAGE_LIMIT_DEFAULT,
            sync_after_write: false,
            auto_merge_fields: false,
            concurrent_edit: Ratio::ZERO,
            workload_weights: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            adversarial_tenants: false,
            inflight_actions: Ratio::ZERO,
            lifecycle_after_kill: Ratio::ZERO,
            invalid_write: Ratio::ZERO,
            large_write: Ratio::ZERO,
        }
    }

    pub fn derive(seed: u64, profile: Profile) -> Knobs {
        let mut rng = SimRng::for_stream(seed, Stream::Knobs);
        let (tenants_max, devices_max, safety_ms, bulk_max) = match profile {
            Profile::Lite => (2, 3, 2 * 60_000, 20),
            Profile::Default => (3, 4, 4 * 60_000, 60),
            Profile::Big => (2, 3, 10 * 60_000, 10_000),
            Profile::Perf => (3, 4, 20 * 60_000, 100),
        };
        let mut faults = BTreeMap::new();
        let denominator = match profile {
            Profile::Perf => 200,
            _ => 100,
        };
        for class in FaultClass::ALL {
            // Swarm testing: each class is on in about two seeds of three.
            if class.drawn_later() || rng.range(0, 2) == 0 {
                continue;
            }
            let numerator = match class {
                FaultClass::KillBetweenCalls
                | FaultClass::ClockJump
                | FaultClass::CrossTenantProbe => rng.range(1, 3),
                FaultClass::KillAtCrashPoint => rng.range(1, 4),
                FaultClass::Partition | FaultClass::OfflinePeriod => rng.range(1, 4),
                _ => rng.range(2, 15),
            };
            faults.insert(class, Ratio::new(numerator, denominator));
        }
        let small = [30, 25, 6, 2, 10, 8, 1, 1, 1, 1];
        let mut workload_weights = small;
        for weight in workload_weights.iter_mut() {
            *weight = rng.range(*weight / 2, *weight * 3 / 2 + 1);
        }
        let synchronized_clocks = rng.range(0, 2) == 0;
        if synchronized_clocks {
            faults.remove(&FaultClass::ClockJump);
        }
        let mut knobs = Knobs {
            profile,
            tenants: rng.range(1, tenants_max) as usize,
            devices: rng.range(2, devices_max) as usize,
            spaces_per_tenant: rng.range(1, 3) as usize,
            faults,
            safety_duration_ms: safety_ms,
            liveness_rounds_max: 12,
            action_gap_ms_max: rng.range(2_000, 30_000),
            network_delay_ms_max: rng.range(5, 3_000),
            request_timeout_ms: 10_000,
            // One seed in three has synchronized clocks, where equal stamps (and so user
            // conflicts) happen when two devices edit in the same millisecond.
            clock_offset_ms_max: if synchronized_clocks {
                0
            } else {
                rng.range(0, 3 * 3_600_000)
            },
            clock_drift_ppm_max: if synchronized_clocks {
                0
            } else {
                rng.range(0, 2_000)
            },
            concurrent_edit: Ratio::new(rng.range(0, 2), 4),
            clock_jump_ms_max: rng.range(1_000, 6 * 3_600_000),
            bulk_create_max: bulk_max,
            push_batch_max: [100, 100, 7, 1][rng.index(4)],
            pull_page_limit: [1000, 1000, 3, 50][rng.index(4)],
            sync_after_write: rng.coin(),
            auto_merge_fields: rng.range(0, 3) == 0,
            workload_weights,
            adversarial_tenants: false,
            inflight_actions: Ratio::ZERO,
            lifecycle_after_kill: Ratio::ZERO,
            invalid_write: Ratio::ZERO,
            large_write: Ratio::ZERO,
        };
        for class in FaultClass::DRAWN_LAST {
            if rng.range(0, 2) == 0 {
                continue;
            }
            // Per transaction boundary: a seed crosses thousands of them.
            let numerator = rng.range(1, 3);
            knobs
                .faults
                .insert(class, Ratio::new(numerator, 4 * denominator));
        }
        // Drawn after every knob above, so that those stay as they were for every seed.
        knobs.invalid_write = Ratio::new(rng.range(0, 3), 100);
        knobs.large_write = Ratio::new(rng.range(0, 2), 4);
        // Extreme clocks: one seed in four of those without synchronized clocks has
        // device clocks set, and jumping, by years (ahead or behind), not hours.
        if !synchronized_clocks && rng.range(0, 3) == 0 {
            knobs.clock_offset_ms_max = rng.range(YEAR_MS, 5 * YEAR_MS);
            knobs.clock_jump_ms_max = rng.range(YEAR_MS, 5 * YEAR_MS);
        }
        // Drawn after every other knob, so that they keep the values they had before.
        knobs.adversarial_tenants = rng.coin();
        if knobs.adversarial_tenants {
            // Colliding ids need two tenants at least.
            knobs.tenants = knobs.tenants.max(2);
        }
        knobs.inflight_actions = Ratio::new(rng.range(1, 4), 10);
        knobs.lifecycle_after_kill = Ratio::new(rng.range(1, 3), 4);
        // Storage faults, per user action: each on in about half the seeds.
        for class in FaultClass::STORAGE {
            if rng.coin() {
                let numerator = rng.range(2, 8);
                knobs
                    .faults
                    .insert(class, Ratio::new(numerator, denominator));
            }
        }
        // Late server faults, per request the server would answer normally: each on in
        // about half the seeds.
        for class in FaultClass::SERVER_LATE {
            if rng.coin() {
                // A firing of endless paging stalls every pull for a window, not one
                // request: it fires less often.
                let numerator = match class {
                    FaultClass::EndlessPaging | FaultClass::ServerRewrite => rng.range(1, 4),
                    _ => rng.range(2, 15),
                };
                knobs
                    .faults
                    .insert(class, Ratio::new(numerator, denominator));
            }
        }
        // Late storage faults, per kill: each on in about half the seeds.
        for class in FaultClass::STORAGE_LATE {
            if rng.coin() {
                knobs.faults.insert(class, Ratio::new(rng.range(1, 3), 4));
            }
        }
        // Later server faults, per pull sent: each on in about half the seeds.
        for class in FaultClass::SERVER_LATER {
            if rng.coin() {
                knobs
                    .faults
                    .insert(class, Ratio::new(rng.range(5, 21), denominator));
            }
        }
        // A damaged database at open, per open of an existing database by a new process:
        // on in about half the seeds, rare (each firing loses the device's synced state).
        if rng.coin() {
            let numerator = rng.range(2, 5);
            knobs.faults.insert(
                FaultClass::CorruptAtOpen,
                Ratio::new(numerator, denominator),
            );
        }
        // A second process of the app, per user action: on in about half the seeds.
        if rng.coin() {
            knobs.faults.insert(
                FaultClass::SecondProcess,
                Ratio::new(rng.range(5, 21), denominator),
            );
        }
        knobs
    }
}

#[cfg(test)]
mod tests {
    //! Profile and fault class names appear on the command line, in JSON summaries and in
    //! replay commands: deriving them must keep them exactly as they were.
    use super::*;

    #[test]
    fn profile_names_round_trip() {
        assert_eq!(Profile::NAMES, ["lite", "default", "big", "perf"]);
        for name in Profile::NAMES {
            let profile = Profile::parse(name).expect("a listed profile parses");
            assert_eq!(profile.name(), *name);
            let json = serde_json::to_string(&profile).expect("a profile serializes");
            assert_eq!(json, format!("\"{name}\""));
        }
        assert_eq!(Profile::parse("huge"), None);
        assert_eq!(Profile::parse("Lite"), None);
    }

    #[test]
    fn fault_class_names_are_the_serialized_names() {
        let names: Vec<&str> = FaultClass::ALL.into_iter().map(FaultClass::name).collect();
        assert_eq!(
            names,
            [
                "request_lost",
                "response_lost",
                "duplicate_delivery",
                "delay",
                "partition",
                "offline_period",
                "server_busy",
                "server_timeout",
                "kill_between_calls",
                "kill_at_crash_point",
                "clock_jump",
                "cross_tenant_probe",
                "kill_at_commit",
                "disk_full",
                "storage_busy",
                "partial_batch",
                "late_arrival",
                "endless_paging",
                "server_rewrite",
                "power_loss",
                "bounded_retention",
                "corrupt_at_open",
                "second_process",
            ]
        );
        for class in FaultClass::ALL {
            let json = serde_json::to_string(&class).expect("a fault class serializes");
            assert_eq!(json, format!("\"{}\"", class.name()));
        }
    }
}
