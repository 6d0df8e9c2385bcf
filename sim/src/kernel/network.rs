//! The simulated network between devices and the reference server.
//!
//! Fault model, per request, each class drawn from its own stream: the request is lost (the
//! device sees a timeout), the server fails before applying (`SERVER_BUSY`), the server
//! applies and the response is lost (timeout), the server applies and answers too late
//! (a timeout first, the real answer later), the request is delivered twice, or it is
//! delayed (which reorders deliveries across devices), or the server applies the first
//! few ops of a push batch and then fails it (`SERVER_BUSY` or a dropped connection), or
//! a request is held until after the device's timeout and reaches the server only then,
//! or, for a while, the server's pull pages hand back their request's cursor with
//! `hasMore: true` (a window the class opens and every normal pull inside it meets), or
//! the server stores a push's rows rewritten and answers it with null cursors.
//! During a partition every request fails as unreachable. The network never alters
//! payloads; of their contents it reads only how many ops a push carries.

use super::faults::Faults;
use crate::profile::{FaultClass, Knobs};
use crate::rng::SimRng;

/// How one request travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFate {
    /// Never reaches the server.
    Lost,
    /// Held in the network: reaches the server `held_ms` after the device's request
    /// timeout, which the device sees first; the server answers it as usual, after
    /// `return_latency_ms`, to a device that gave up on it.
    HeldPastTimeout {
        held_ms: u64,
        return_latency_ms: u64,
    },
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
    Normal {
        return_latency_ms: u64,
    },
    Busy {
        return_latency_ms: u64,
    },
    ResponseLost,
    TimeoutThenLate {
        late_by_ms: u64,
    },
    /// The server applies the first `applied` items of the push, then fails: the
    /// `SERVER_BUSY` envelope comes back after `return_latency_ms`, or
    /// (`connection_dropped`) nothing does and the device times out.
    PartialBatch {
        applied: usize,
        connection_dropped: bool,
        return_latency_ms: u64,
    },
    /// The server reads the pull page as usual, then answers it as a page that does not
    /// advance: the request's own cursor, `hasMore: true`, the page's rows only when
    /// `with_items`.
    EndlessPaging {
        with_items: bool,
        return_latency_ms: u64,
    },
    /// The server applies the push, storing its inserted and updated rows rewritten, and
    /// answers with both cursors null.
    Rewrite {
        return_latency_ms: u64,
    },
}

/// A stretch of virtual time during which the server's pull pages do not advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingWindow {
    /// Virtual time since the run began, like a fault's `at_ms`.
    pub until_ms: u64,
    pub with_items: bool,
}

/// The longest window of endless paging one firing opens.
pub const ENDLESS_PAGING_MS_MAX: u64 = 60_000;

/// The endless-paging fault, for a pull the server would answer normally: every such
/// pull throws the class's dice (from its own stream), so its opportunities do not depend
/// on earlier firings; one that fires opens (or extends) a window of 5 s to 1 min, and
/// every normal pull inside an open window meets the fault.
pub fn plan_endless_paging(
    faults: &mut Faults,
    window: &mut Option<PagingWindow>,
    fate: RequestFate,
    is_pull: bool,
    at_ms: u64,
) -> RequestFate {
    let RequestFate::Delivered {
        latency_ms,
        server: ServerFate::Normal { return_latency_ms },
        duplicate_after_ms,
    } = fate
    else {
        return fate;
    };
    if !is_pull {
        return fate;
    }
    let fired = faults.fire(FaultClass::EndlessPaging, at_ms, |stream| {
        (stream.range(5_000, ENDLESS_PAGING_MS_MAX), stream.coin())
    });
    if let Some((window_ms, with_items)) = fired {
        let until_ms = at_ms + window_ms;
        let longer = window.is_none_or(|open| open.until_ms < until_ms);
        if longer {
            *window = Some(PagingWindow {
                until_ms,
                with_items,
            });
        }
    }
    let Some(open) = window.filter(|open| at_ms < open.until_ms && faults.is_on()) else {
        return fate;
    };
    RequestFate::Delivered {
        latency_ms,
        server: ServerFate::EndlessPaging {
            with_items: open.with_items,
            return_latency_ms,
        },
        duplicate_after_ms,
    }
}

/// The server-rewrite fault, for a push the server would answer normally: every such
/// push throws the class's dice (from its own stream), so its opportunities do not depend
/// on earlier firings.
pub fn plan_server_rewrite(
    faults: &mut Faults,
    fate: RequestFate,
    is_push: bool,
    at_ms: u64,
) -> RequestFate {
    let RequestFate::Delivered {
        latency_ms,
        server: ServerFate::Normal { return_latency_ms },
        duplicate_after_ms,
    } = fate
    else {
        return fate;
    };
    if !is_push
        || faults
            .fire(FaultClass::ServerRewrite, at_ms, |_| ())
            .is_none()
    {
        return fate;
    }
    RequestFate::Delivered {
        latency_ms,
        server: ServerFate::Rewrite { return_latency_ms },
        duplicate_after_ms,
    }
}

/// The partial-batch fault, for a push of `batch_len` items the server would answer
/// normally: drawn from the class's own stream, and only for a batch of two items or
/// more (one applied, one left out at least).
pub fn plan_partial_batch(
    faults: &mut Faults,
    fate: RequestFate,
    batch_len: usize,
    at_ms: u64,
) -> RequestFate {
    let RequestFate::Delivered {
        latency_ms,
        server: ServerFate::Normal { return_latency_ms },
        duplicate_after_ms,
    } = fate
    else {
        return fate;
    };
    if batch_len < 2 {
        return fate;
    }
    let Some((applied, connection_dropped)) =
        faults.fire(FaultClass::PartialBatch, at_ms, |stream| {
            (
                stream.range(1, batch_len as u64 - 1) as usize,
                stream.coin(),
            )
        })
    else {
        return fate;
    };
    assert!(applied >= 1);
    assert!(applied < batch_len);
    RequestFate::Delivered {
        latency_ms,
        server: ServerFate::PartialBatch {
            applied,
            connection_dropped,
            return_latency_ms,
        },
        duplicate_after_ms,
    }
}

/// Draws a request's fate. Whether each fault fires, and its parameters, come from that
/// class's own stream; latencies come from `latency_rng`, two draws per leg whatever
/// fires, so the network's timing does not shift when a class is switched off.
pub fn plan_request(
    faults: &mut Faults,
    latency_rng: &mut SimRng,
    knobs: &Knobs,
    at_ms: u64,
) -> RequestFate {
    let mut latency = |delayed: bool| {
        let normal_ms = latency_rng.range(1, 20);
        let delayed_ms =
            latency_rng.range(knobs.network_delay_ms_max / 2, knobs.network_delay_ms_max);
        if delayed {
            delayed_ms
        } else {
            normal_ms
        }
    };
    let lost = faults.hit(FaultClass::RequestLost, at_ms);
    let delayed = faults.hit(FaultClass::Delay, at_ms);
    let latency_ms = latency(delayed);
    let return_latency_ms = latency(delayed);
    if lost {
        return RequestFate::Lost;
    }
    let server = if faults.hit(FaultClass::ServerBusy, at_ms) {
        ServerFate::Busy { return_latency_ms }
    } else if faults.hit(FaultClass::ResponseLost, at_ms) {
        ServerFate::ResponseLost
    } else if let Some(late_by_ms) = faults.fire(FaultClass::ServerTimeout, at_ms, |stream| {
        stream.range(1, knobs.request_timeout_ms)
    }) {
        ServerFate::TimeoutThenLate { late_by_ms }
    } else {
        ServerFate::Normal { return_latency_ms }
    };
    let duplicate_after_ms = faults.fire(FaultClass::DuplicateDelivery, at_ms, |stream| {
        stream.range(1, 2_000)
    });
    RequestFate::Delivered {
        latency_ms,
        server,
        duplicate_after_ms,
    }
}

/// The late-arrival fault, for a request the server would answer normally: drawn from the
/// class's own stream, after every other class of the request.
pub fn plan_late_arrival(faults: &mut Faults, fate: RequestFate, at_ms: u64) -> RequestFate {
    let RequestFate::Delivered {
        server: ServerFate::Normal { return_latency_ms },
        ..
    } = fate
    else {
        return fate;
    };
    let Some(held_ms) = faults.fire(FaultClass::LateArrival, at_ms, |stream| {
        stream.range(1, 60_000)
    }) else {
        return fate;
    };
    assert!(held_ms >= 1);
    RequestFate::HeldPastTimeout {
        held_ms,
        return_latency_ms,
    }
}
