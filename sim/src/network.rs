//! The simulated network between devices and the reference server.
//!
//! Fault model, per request, drawn from the network stream: the request is lost (the
//! device sees a timeout), the server fails before applying (`SERVER_BUSY`), the server
//! applies and the response is lost (timeout), the server applies and answers too late
//! (a timeout first, the real answer later), the request is delivered twice, or it is
//! delayed (which reorders deliveries across devices). During a partition every request
//! fails as unreachable. The network never inspects or alters payloads.

use crate::profile::{FaultClass, Knobs};
use crate::rng::SimRng;

/// How one request travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFate {
    /// Never reaches the server.
    Lost,
    /// Reaches the server after `latency_ms`.
    Delivered {
        latency_ms: u64,
        server: ServerFate,
        duplicate_after_ms: Option<u64>,
    },
}

/// What happens at the server and on the way back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerFate {
    Normal { return_latency_ms: u64 },
    Busy { return_latency_ms: u64 },
    ResponseLost,
    TimeoutThenLate { late_by_ms: u64 },
}

/// Draws a request's fate. `faults_on` is false in the liveness phase.
pub fn plan_request(
    rng: &mut SimRng,
    knobs: &Knobs,
    faults_on: bool,
    fired: &mut impl FnMut(FaultClass),
) -> RequestFate {
    let mut chance = |rng: &mut SimRng, class: FaultClass| {
        let hit = faults_on && rng.chance(knobs.fault(class));
        if hit {
            fired(class);
        }
        hit
    };
    if chance(rng, FaultClass::RequestLost) {
        return RequestFate::Lost;
    }
    let latency = |rng: &mut SimRng, delayed: bool| {
        if delayed {
            rng.range(knobs.network_delay_ms_max / 2, knobs.network_delay_ms_max)
        } else {
            rng.range(1, 20)
        }
    };
    let delayed = chance(rng, FaultClass::Delay);
    let latency_ms = latency(rng, delayed);
    let server = if chance(rng, FaultClass::ServerBusy) {
        ServerFate::Busy {
            return_latency_ms: latency(rng, delayed),
        }
    } else if chance(rng, FaultClass::ResponseLost) {
        ServerFate::ResponseLost
    } else if chance(rng, FaultClass::ServerTimeout) {
        ServerFate::TimeoutThenLate {
            late_by_ms: rng.range(1, knobs.request_timeout_ms),
        }
    } else {
        ServerFate::Normal {
            return_latency_ms: latency(rng, delayed),
        }
    };
    let duplicate_after_ms =
        chance(rng, FaultClass::DuplicateDelivery).then(|| rng.range(1, 2_000));
    RequestFate::Delivered {
        latency_ms,
        server,
        duplicate_after_ms,
    }
}
