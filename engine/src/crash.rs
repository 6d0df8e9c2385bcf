//! Named crash points: where the simulator may kill the app inside an engine call.
//!
//! In production the hook is [`NoCrash`] and costs one virtual call. When a hook asks
//! for a crash, the engine abandons the call (an open transaction rolls back on drop),
//! returns `Killed`, and refuses every later call: the caller must drop the engine and
//! reopen it, exactly as after a real process kill. A crash is only ever a rollback.

use strum::{EnumCount, IntoStaticStr, VariantArray};

/// Every place inside the engine where a kill is meaningful.
///
/// The snake_case names (`after_local_commit`, ...) appear in scenario files and campaign
/// summaries, so strum derives them from this one definition rather than a second list.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EnumCount, IntoStaticStr, VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum CrashPoint {
    /// A local write and its queued op just committed; the caller has not heard back.
    AfterLocalCommit,
    /// Ops were marked `sending` and the request was built, before it is handed out.
    AfterMarkSending,
    /// The server's answer arrived; nothing of it is stored yet.
    BeforeStoringResponse,
    /// One pull page and its cursor committed (in a force from the server: the page was
    /// staged); the next page is not asked for yet.
    BetweenPullPages,
    /// Inside the force-from-server replacement transaction, before it commits.
    MidForce,
    /// Inside the wipe transaction, before it commits.
    MidWipe,
}

impl CrashPoint {
    /// Every crash point in declaration order, as an array so callers can iterate by value.
    pub const ALL: [CrashPoint; CrashPoint::COUNT] = *<CrashPoint as VariantArray>::VARIANTS
        .first_chunk()
        .unwrap();

    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Decides, at each crash point, whether the app dies there.
pub trait CrashHook {
    fn should_crash(&mut self, point: CrashPoint) -> bool;
}

/// The production hook: never crashes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCrash;

impl CrashHook for NoCrash {
    fn should_crash(&mut self, _point: CrashPoint) -> bool {
        false
    }
}

/// The hook plus whether it already fired: once killed, the engine refuses every call.
pub(crate) struct CrashState {
    pub(crate) hook: Box<dyn CrashHook>,
    pub(crate) killed_at: Option<CrashPoint>,
}

impl CrashState {
    pub(crate) fn new() -> CrashState {
        CrashState {
            hook: Box::new(NoCrash),
            killed_at: None,
        }
    }

    /// Asks the hook whether the app dies at `point`.
    pub(crate) fn reached(&mut self, point: CrashPoint) -> Result<(), CrashPoint> {
        if self.hook.should_crash(point) {
            self.killed_at = Some(point);
            return Err(point);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Crash point names are part of the scenario language and of campaign summaries: a
    //! renamed variant must not silently rename its point.
    use super::*;

    #[test]
    fn crash_point_names_stay_the_scenario_names() {
        let names: Vec<&str> = CrashPoint::ALL.into_iter().map(CrashPoint::name).collect();
        assert_eq!(
            names,
            [
                "after_local_commit",
                "after_mark_sending",
                "before_storing_response",
                "between_pull_pages",
                "mid_force",
                "mid_wipe",
            ]
        );
        assert_eq!(CrashPoint::ALL.len(), CrashPoint::COUNT);
    }
}
