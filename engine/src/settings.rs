//! The sync schedule an app tunes: the interval, the after-write delay, the retry backoff
//! and the request deadline ([`SyncSettings`], part of `EngineOptions`). This module holds
//! the values and their validation only; the timers that use them live in `sync.rs`.

use crate::error::ConfigError;

/// When the engine syncs by itself and how long it waits. The defaults are the
/// specification's: a sync every 5 minutes, 500 ms after a local write (when
/// `sync_after_write` is on), retries from 1 s doubling up to 5 minutes.
///
/// Build it from [`SyncSettings::default`] and change the fields you need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncSettings {
    /// The periodic sync.
    pub interval_ms: u64,
    /// How long after a local write its sync starts (later writes move it back).
    pub after_write_delay_ms: u64,
    /// The first retry's delay after a failed sync; doubled for each failure in a row,
    /// with half of it random (equal jitter).
    pub backoff_base_ms: u64,
    /// The longest retry delay.
    pub backoff_cap_ms: u64,
    /// How long the engine waits for the answer to a request it handed out before it
    /// treats the request as timed out (a transport failure, retried like one; a late
    /// answer is then ignored). `None`: the transport's own timeout is the only one.
    pub request_deadline_ms: Option<u64>,
}

impl Default for SyncSettings {
    fn default() -> SyncSettings {
        SyncSettings {
            interval_ms: 5 * 60 * 1000,
            after_write_delay_ms: 500,
            backoff_base_ms: 1_000,
            backoff_cap_ms: 5 * 60 * 1000,
            request_deadline_ms: None,
        }
    }
}

impl SyncSettings {
    /// Refuses settings the timers cannot run on: a zero interval, base or deadline
    /// (a timer that is always due), or a cap below the base.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let zero = [
            ("interval_ms", self.interval_ms),
            ("backoff_base_ms", self.backoff_base_ms),
            ("request_deadline_ms", self.request_deadline_ms.unwrap_or(1)),
        ]
        .into_iter()
        .find(|(_, value)| *value == 0);
        if let Some((name, _)) = zero {
            return Err(ConfigError::InvalidSetting(format!(
                "{name} must be at least 1"
            )));
        }
        if self.backoff_cap_ms < self.backoff_base_ms {
            return Err(ConfigError::InvalidSetting(format!(
                "backoff_cap_ms ({}) is below backoff_base_ms ({})",
                self.backoff_cap_ms, self.backoff_base_ms
            )));
        }
        Ok(())
    }

    /// Exponential backoff with seeded "equal jitter": half fixed, half random, capped.
    pub fn backoff_delay_ms(&self, failure_streak: u32, random: u64) -> u64 {
        let exponent = failure_streak.saturating_sub(1).min(20);
        let delay_ms = self
            .backoff_base_ms
            .saturating_mul(1 << exponent)
            .min(self.backoff_cap_ms);
        let half = delay_ms / 2;
        half + random % (half + 1)
    }
}
