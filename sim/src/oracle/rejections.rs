//! What the oracle knows of the server's rules (`server/rules.rs`): an op the engine
//! reports failed for good must be one the server refused — one bad op never takes good
//! ones down with it — and a device's clock is never dragged far ahead of real time by a
//! stamp it pulled. The end state of a rejected write (its record back at the server's
//! copy, or gone) needs no check of its own: convergence compares every record.

use super::Oracle;
use crate::kernel::device::Device;
use crate::kernel::{violation, Failure};
use crate::server::rules::STAMP_AHEAD_MS_MAX;
use crate::server::ReferenceServer;
use sync_engine::{Record, SyncEvent};

/// How far a device's stamps may run past both bounds: HLC counter carries.
const STAMP_SLACK_MS: u64 = 60_000;

impl Oracle {
    /// An `OpFailed` must name an op the server decided and refused: its stored result is
    /// a failure, or the device sent it alone in a request the server refused whole. A
    /// good op failed because another op of its batch was refused is a
    /// violation, and so is a failure the server never gave.
    pub fn check_reported_failure(
        &mut self,
        device: &Device,
        tenant: &str,
        event: &SyncEvent,
        server: &ReferenceServer,
    ) -> Result<(), Failure> {
        let SyncEvent::OpFailed {
            op_id,
            client_id,
            code,
            message,
        } = event
        else {
            return Ok(());
        };
        if self.hostile_server {
            return Ok(());
        }
        self.invariant_checks += 1;
        let refused = self.refused_alone.contains(op_id)
            || server
                .stored_result(tenant, op_id)
                .is_some_and(|result| !result.success);
        if !refused {
            return Err(violation(format!(
                "good op failed: {} reported op {op_id} of {client_id} in tenant {tenant} failed for good \
                 ({code:?}: {message}), but the server never refused that op",
                device.name
            )));
        }
        Ok(())
    }
}

/// A device's stamps come from its own clock (at most as far ahead as it ever read) or
/// from stamps it observed, which the server keeps within [`STAMP_AHEAD_MS_MAX`] of real
/// time. A stamp beyond both means some other device's clock dragged this one's along.
pub fn check_stamp_not_dragged_ahead(
    device: &Device,
    now_ms: u64,
    record: &Record,
) -> Result<(), Failure> {
    let own_clock_ms = device.clock_high_ms.max(device.device_ms(now_ms));
    let bound_ms = own_clock_ms.max(now_ms + STAMP_AHEAD_MS_MAX) + STAMP_SLACK_MS;
    let stamp_ms = record.updated_at.wall_ms();
    if stamp_ms > bound_ms {
        return Err(violation(format!(
            "clock dragged ahead: {} wrote {} at stamp {} ms, {} days past real time, while its own \
             clock never read past {own_clock_ms} ms: a stamp it pulled carried another device's \
             clock into its own",
            device.name,
            record.client_id,
            stamp_ms,
            (stamp_ms - now_ms) / 86_400_000
        )));
    }
    Ok(())
}
