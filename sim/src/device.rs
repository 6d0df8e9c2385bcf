//! A simulated device: the real engine, its own clock, its databases, its lifecycle.
//!
//! Fault model: the device clock is virtual time plus an offset, a drift (ppm) and
//! jumps (backwards too). An app kill drops the `Engine` (everything in memory is lost)
//! while the SQLite files in the device's directory keep every committed transaction,
//! exactly as on a phone. The device knows nothing of the network or the scheduler.

use crate::rng::{Ratio, SimRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use sync_engine::{CrashHook, CrashPoint, Engine, ManualClock};

/// Decides kills at the engine's named crash points; shared by all devices of a world.
#[derive(Debug)]
pub struct KillSwitch {
    pub rng: SimRng,
    pub rate: Ratio,
    pub armed: bool,
    pub fired: BTreeMap<CrashPoint, u64>,
}

/// The hook installed in every simulated engine.
pub struct SimCrashHook(pub Rc<RefCell<KillSwitch>>);

impl CrashHook for SimCrashHook {
    fn should_crash(&mut self, point: CrashPoint) -> bool {
        let mut switch = self.0.borrow_mut();
        if !switch.armed || switch.rate.is_zero() {
            return false;
        }
        let rate = switch.rate;
        let crash = switch.rng.chance(rate);
        if crash {
            *switch.fired.entry(point).or_insert(0) += 1;
        }
        crash
    }
}

pub struct Device {
    pub index: usize,
    pub dir: PathBuf,
    pub clock: ManualClock,
    pub clock_offset_ms: i64,
    pub drift_ppm: i64,
    /// The tenant logged in on this device (its database is the open one).
    pub tenant: Option<String>,
    /// `None` while the app is dead or logged out.
    pub engine: Option<Engine>,
    /// Bumped at every kill and reopen: answers addressed to an older process are lost.
    pub generation: u64,
    /// False during a network partition (the app believes it is online).
    pub network_up: bool,
    /// What the app was last told about connectivity.
    pub app_online: bool,
    pub restart_scheduled: bool,
    /// The virtual time of the engine timer event currently scheduled.
    pub timer_at: Option<u64>,
}

impl Device {
    /// The device's wall clock at virtual time `now_ms`.
    pub fn device_ms(&self, now_ms: u64) -> u64 {
        let drift_ms =
            (now_ms as i128 - crate::world::EPOCH_MS as i128) * self.drift_ppm as i128 / 1_000_000;
        let device_ms = now_ms as i128 + self.clock_offset_ms as i128 + drift_ms;
        device_ms.clamp(0, u64::MAX as i128 / 2) as u64
    }

    /// Sets the injected clock before an engine call.
    pub fn tick_clock(&self, now_ms: u64) {
        self.clock.set_ms(self.device_ms(now_ms));
    }

    pub fn is_running(&self) -> bool {
        self.engine.is_some()
    }
}
