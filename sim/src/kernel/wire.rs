//! The one delivery path: requests a device sends go through the network's fates to the
//! reference server and come back as deliveries to the device, whichever of its processes
//! runs when they arrive (answers to an earlier process's requests included);
//! partitions, offline periods, clock jumps, and the hold / release / deliver verbs with
//! which a driver answers requests itself. Payloads are never inspected or altered here.

use super::event_log::{client_ids_in, Entry, EventKind};
use super::network::{
    plan_endless_paging, plan_late_arrival, plan_partial_batch, plan_request, plan_server_rewrite,
    PagingWindow, RequestFate, ServerFate,
};
use super::{Called, Event, Failure, Sim, EPOCH_MS};
use crate::profile::FaultClass;
use crate::server::{ServerFault, ServerReply};
use serde_json::Value;
use sync_engine::registry::OperationKind;
use sync_engine::wire::SyncRequest;
use sync_engine::TransportError;

impl Sim {
    // ---- network verbs --------------------------------------------------------------------

    /// Cuts the device off the network (the app is not told); heals by itself after
    /// `heal_after_ms` if given. The latest partition decides when it ends: a heal an
    /// earlier one scheduled is called off, so it cannot end an open-ended cut early.
    pub fn partition(&mut self, index: usize, heal_after_ms: Option<u64>) {
        self.unschedule(
            |event| matches!(event, Event::PartitionHeal { device } if *device == index),
        );
        self.devices[index].network_up = false;
        let line = format!("{} partitioned", self.devices[index].name);
        self.trace_device(index, EventKind::Partition, line);
        self.note_state(index);
        if let Some(after_ms) = heal_after_ms {
            self.schedule(
                self.now_ms + after_ms,
                Event::PartitionHeal { device: index },
            );
        }
    }

    pub fn heal(&mut self, index: usize) {
        if !self.devices[index].network_up {
            self.devices[index].network_up = true;
            let line = format!("{} partition healed", self.devices[index].name);
            self.trace_device(index, EventKind::Heal, line);
            self.note_state(index);
        }
    }

    /// The app learns it is offline; back online by itself after `back_after_ms` if given.
    /// The latest offline period decides when it ends: a return an earlier one scheduled
    /// is called off.
    pub fn offline(&mut self, index: usize, back_after_ms: Option<u64>) -> Result<(), Failure> {
        self.unschedule(|event| matches!(event, Event::BackOnline { device } if *device == index));
        self.set_app_online(index, false)?;
        if let Some(after_ms) = back_after_ms {
            self.schedule(self.now_ms + after_ms, Event::BackOnline { device: index });
        }
        Ok(())
    }

    /// The app learns the network is back (a network-regained trigger).
    pub fn online(&mut self, index: usize) -> Result<(), Failure> {
        self.set_app_online(index, true)
    }

    pub(super) fn set_app_online(&mut self, index: usize, online: bool) -> Result<(), Failure> {
        self.devices[index].app_online = online;
        let line = format!("{} app online={online}", self.devices[index].name);
        let kind = if online {
            EventKind::Online
        } else {
            EventKind::Offline
        };
        self.trace_device(index, kind, line);
        self.call(index, |engine| Ok(engine.handle_network_change(online)?))?;
        Ok(())
    }

    /// Moves the device's wall clock (backwards too).
    pub fn clock_jump(&mut self, index: usize, delta_ms: i64) {
        let device = &mut self.devices[index];
        device.clock_high_ms = device.clock_high_ms.max(device.device_ms(self.now_ms));
        device.clock_offset_ms += delta_ms;
        let line = format!("{} clock jumps {delta_ms} ms", self.devices[index].name);
        self.trace_device(index, EventKind::ClockJump, line);
    }

    /// From now on the device's requests wait in [`Sim::take_held`] instead of going out.
    pub fn hold(&mut self, index: usize) {
        self.devices[index].holding = true;
    }

    /// Sends every held request through the network and stops holding.
    pub fn release(&mut self, index: usize) {
        self.devices[index].holding = false;
        for request in std::mem::take(&mut self.devices[index].held) {
            self.send(index, request);
        }
    }

    /// The fates of the device's next requests, in order, instead of drawing them: a test
    /// that needs "the second push's response is lost" says so here.
    pub fn plan_fates(&mut self, index: usize, fates: impl IntoIterator<Item = RequestFate>) {
        self.devices[index].planned_fates.extend(fates);
    }

    /// For the next `for_ms` of virtual time the server's pull pages do not advance (the
    /// endless-paging fault's window, opened by hand): every pull it would answer normally
    /// hands back its own cursor with `hasMore: true`, with its rows when `with_items`.
    pub fn stall_paging(&mut self, for_ms: u64, with_items: bool) {
        let until_ms = self.now_ms - EPOCH_MS + for_ms;
        self.paging_window = Some(PagingWindow {
            until_ms,
            with_items,
        });
        self.trace(format!("server pages do not advance for {for_ms} ms"));
    }

    /// The held requests, for a driver that answers them itself ([`Sim::deliver`]).
    pub fn take_held(&mut self, index: usize) -> Vec<SyncRequest> {
        std::mem::take(&mut self.devices[index].held)
    }

    /// Hands the device an answer now, as if it came off the wire.
    pub fn deliver(
        &mut self,
        index: usize,
        request_id: u64,
        response: Result<Value, TransportError>,
    ) -> Result<Called<()>, Failure> {
        self.devices[index].in_flight.remove(&request_id);
        let sent_alone = self.devices[index].single_op_pushes.remove(&request_id);
        if let (Some(op_id), Ok(answer)) = (sent_alone, &response) {
            if answer["errors"][0]["extensions"]["code"] == "VALIDATION" {
                self.oracle.refused_alone.insert(op_id);
            }
        }
        if let Ok(answer) = &response {
            self.oracle.touched_by_answer(index, answer);
        }
        self.delivering = true;
        let called = self.call(index, |engine| {
            Ok(engine.handle_response(request_id, response)?)
        });
        self.delivering = false;
        let called = called?;
        let device = &self.devices[index];
        if let (Some(tenant), Some(engine)) = (device.tenant.as_deref(), device.engine.as_ref()) {
            self.oracle
                .check_cursors(device, tenant, engine, &self.entities)?;
        }
        Ok(called)
    }

    pub(super) fn send(&mut self, index: usize, request: SyncRequest) {
        if self.collect_requests {
            self.sent.entry(index).or_default().push(request.clone());
        }
        let device = &mut self.devices[index];
        *device
            .counters
            .requests
            .entry(request.operation_name.clone())
            .or_insert(0) += 1;
        device.in_flight.insert(request.request_id);
        let variables = request.variables.to_json();
        if let Some([item]) = variables["payload"].as_array().map(Vec::as_slice) {
            if let Some(op_id) = item["opId"].as_str() {
                device
                    .single_op_pushes
                    .insert(request.request_id, op_id.to_owned());
            }
        }
        device.counters.max_in_flight = device.counters.max_in_flight.max(device.in_flight.len());
        if device.holding {
            device.held.push(request);
            return;
        }
        let generation = device.generation;
        let network_up = device.network_up;
        let timeout_at = self.now_ms + self.knobs.request_timeout_ms;
        let planned = self.devices[index].planned_fates.pop_front();
        let fate_planned = planned.is_some();
        // Drawn before the line is traced, which draws nothing: the trace is the same.
        let batch_len = request.variables.to_json()["payload"]
            .as_array()
            .map_or(0, Vec::len);
        let kind = self
            .registry
            .resolve_operation(&request.operation_name)
            .map(|(kind, _)| kind);
        let is_pull = kind == Some(OperationKind::Pull);
        let is_push = kind == Some(OperationKind::Push);
        let fate = network_up.then(|| match planned {
            Some(fate) => fate,
            None => {
                let at_ms = self.now_ms - EPOCH_MS;
                let fate = plan_request(&mut self.faults, &mut self.latency, &self.knobs, at_ms);
                // Drawn after every older class, each from its own stream.
                let fate = plan_partial_batch(&mut self.faults, fate, batch_len, at_ms);
                let fate = plan_late_arrival(&mut self.faults, fate, at_ms);
                let window = &mut self.paging_window;
                let fate = plan_endless_paging(&mut self.faults, window, fate, is_pull, at_ms);
                plan_server_rewrite(&mut self.faults, fate, is_push, at_ms)
            }
        });
        if (is_pull || is_push) && network_up && !fate_planned {
            // Drawn after every other class of the request, from its own stream.
            let at_ms = self.now_ms - EPOCH_MS;
            let keep = self
                .faults
                .fire(FaultClass::BoundedRetention, at_ms, |stream| {
                    stream.range(0, 4)
                });
            if let Some(keep) = keep {
                let purged = self.server.purge_tombstones(&request.tenant_id, keep);
                self.trace(format!(
                    "server purges {purged} tombstones of {} committed before its last {keep} commits",
                    request.tenant_id
                ));
            }
        }
        let fate_name = match fate {
            None => Some("unreachable"),
            Some(RequestFate::Lost) => Some("lost"),
            Some(RequestFate::HeldPastTimeout { .. }) => Some("held"),
            Some(RequestFate::Delivered { .. }) => None,
        };
        let name = &self.devices[index].name;
        let line = format!(
            "{name} -> {} #{}",
            request.operation_name, request.request_id
        );
        let mut entry = Entry::device(index, EventKind::Send).request(request.request_id);
        if let Some(fate_name) = fate_name {
            entry = entry.fate(fate_name);
        }
        self.trace_entry(entry, line, || client_ids_in(&request.variables.to_json()));
        let delivery = |response| Event::Delivery {
            device: index,
            generation,
            request_id: request.request_id,
            operation_name: request.operation_name.clone(),
            response,
        };
        let Some(fate) = fate else {
            self.faults.count(FaultClass::Partition);
            let event = delivery(Err(TransportError::unreachable("network partition")));
            self.schedule(self.now_ms + 50, event);
            return;
        };
        match fate {
            RequestFate::Lost => {
                let event = delivery(Err(TransportError::timeout("request lost")));
                self.schedule(timeout_at, event);
            }
            RequestFate::HeldPastTimeout {
                held_ms,
                return_latency_ms,
            } => {
                let event = delivery(Err(TransportError::timeout("request held")));
                self.schedule(timeout_at, event);
                let late = Event::ServerArrival {
                    device: index,
                    generation,
                    request: Box::new(request),
                    fate: ServerFate::Normal { return_latency_ms },
                    duplicate: false,
                };
                self.schedule(timeout_at + held_ms, late);
            }
            RequestFate::Delivered {
                latency_ms,
                server,
                duplicate_after_ms,
            } => {
                let arrive_at = self.now_ms + latency_ms;
                if let Some(after_ms) = duplicate_after_ms {
                    let duplicate = Event::ServerArrival {
                        device: index,
                        generation,
                        request: Box::new(request.clone()),
                        fate: ServerFate::Normal {
                            return_latency_ms: 5,
                        },
                        duplicate: true,
                    };
                    self.schedule(arrive_at + after_ms, duplicate);
                }
                let event = Event::ServerArrival {
                    device: index,
                    generation,
                    request: Box::new(request),
                    fate: server,
                    duplicate: false,
                };
                self.schedule(arrive_at, event);
            }
        }
    }

    pub(super) fn server_arrival(
        &mut self,
        index: usize,
        // The process that sent the request (the trace says when its answer reaches a
        // later one).
        generation: u64,
        request: &SyncRequest,
        fate: ServerFate,
        duplicate: bool,
    ) {
        self.server_requests += 1;
        // The server's clock is true time; the devices' clocks are what may be off.
        self.server.set_clock_ms(self.now_ms);
        let deliver = |sim: &mut Sim, at_ms: u64, response: Result<Value, TransportError>| {
            let event = Event::Delivery {
                device: index,
                generation,
                request_id: request.request_id,
                operation_name: request.operation_name.clone(),
                response,
            };
            sim.schedule(at_ms, event);
        };
        let timeout_at = self.now_ms + self.knobs.request_timeout_ms;
        let line = format!(
            "server <- {} {} #{} {fate:?} duplicate={duplicate}",
            self.devices[index].name, request.operation_name, request.request_id
        );
        let fate_name = match fate {
            _ if duplicate => "duplicate",
            ServerFate::Normal { .. } => "ok",
            ServerFate::Busy { .. } => "busy",
            ServerFate::ResponseLost => "response lost",
            ServerFate::TimeoutThenLate { .. } => "late",
            ServerFate::PartialBatch { .. } => "partial batch",
            ServerFate::EndlessPaging { .. } => "endless paging",
            ServerFate::Rewrite { .. } => "rewrite",
        };
        let entry = Entry::server(EventKind::Arrive)
            .request(request.request_id)
            .fate(fate_name);
        self.trace_entry(entry, line, || client_ids_in(&request.variables.to_json()));
        if !matches!(fate, ServerFate::Busy { .. }) {
            self.probe_pull(request, None);
        }
        match fate {
            ServerFate::Normal { return_latency_ms } => {
                let response = self.server.handle(request);
                self.probe_pull(request, Some(&response));
                deliver(self, self.now_ms + return_latency_ms, Ok(response));
            }
            ServerFate::Busy { return_latency_ms } => {
                let ServerReply::Response(response) = self
                    .server
                    .handle_with_fault(request, ServerFault::FailBeforeApplying)
                else {
                    unreachable!("failing before applying still answers");
                };
                deliver(self, self.now_ms + return_latency_ms, Ok(response));
            }
            ServerFate::ResponseLost => {
                let reply = self
                    .server
                    .handle_with_fault(request, ServerFault::ApplyThenLoseResponse);
                assert!(matches!(reply, ServerReply::Lost));
                let lost = Err(TransportError::timeout("response lost"));
                deliver(self, timeout_at, lost);
            }
            ServerFate::TimeoutThenLate { late_by_ms } => {
                let response = self.server.handle(request);
                self.probe_pull(request, Some(&response));
                let too_slow = Err(TransportError::timeout("server too slow"));
                deliver(self, timeout_at, too_slow);
                deliver(self, timeout_at + late_by_ms, Ok(response));
            }
            ServerFate::PartialBatch {
                applied,
                connection_dropped,
                return_latency_ms,
            } => {
                let fault = ServerFault::ApplyPrefixThenFail {
                    applied,
                    connection_dropped,
                };
                match self.server.handle_with_fault(request, fault) {
                    ServerReply::Response(response) => {
                        deliver(self, self.now_ms + return_latency_ms, Ok(response));
                    }
                    ServerReply::Lost => {
                        let dropped = Err(TransportError::timeout("connection dropped"));
                        deliver(self, timeout_at, dropped);
                    }
                    ServerReply::Delayed { .. } => unreachable!("a partial batch is never slow"),
                }
            }
            ServerFate::EndlessPaging {
                with_items,
                return_latency_ms,
            } => {
                let fault = ServerFault::RepeatCursor { with_items };
                let ServerReply::Response(response) = self.server.handle_with_fault(request, fault)
                else {
                    unreachable!("a page that does not advance is still answered");
                };
                deliver(self, self.now_ms + return_latency_ms, Ok(response));
            }
            ServerFate::Rewrite { return_latency_ms } => {
                let fault = ServerFault::RewriteStored;
                let ServerReply::Response(response) = self.server.handle_with_fault(request, fault)
                else {
                    unreachable!("a rewritten push is still answered");
                };
                deliver(self, self.now_ms + return_latency_ms, Ok(response));
            }
        }
    }

    pub(super) fn delivery(
        &mut self,
        index: usize,
        generation: u64,
        request_id: u64,
        operation_name: &str,
        response: Result<Value, TransportError>,
    ) -> Result<(), Failure> {
        let name = self.devices[index].name.clone();
        let entry = Entry::device(index, EventKind::Answer).request(request_id);
        if !self.devices[index].is_running() {
            let line = format!("{name} <- #{request_id} dropped: no app runs to receive it");
            self.trace_entry(entry.fate("dropped"), line, Vec::new);
            return Ok(());
        }
        let summary = match &response {
            Ok(_) => "response".to_owned(),
            Err(error) => format!("transport error {:?}", error.kind),
        };
        // An answer to a request an earlier process sent (before a kill, a logout or a
        // tenant switch) reaches whatever process runs now, as it would on a real
        // device: the connection belongs to the device, not the process. Only the engine
        // can tell that it is not the answer it waits for.
        let stale = if self.devices[index].generation == generation {
            ""
        } else {
            self.stale_answers_delivered += 1;
            " from an earlier process"
        };
        let fate = match &response {
            _ if !stale.is_empty() => "stale",
            Ok(_) => "ok",
            Err(error) => error.message.as_str(),
        };
        let line = format!("{name} <- {operation_name} #{request_id} {summary}{stale}");
        let entry = entry.fate(fate);
        self.trace_entry(entry, line, || match &response {
            Ok(answer) => client_ids_in(answer),
            Err(_) => Vec::new(),
        });
        self.probe_delivery(index, request_id, operation_name, &response);
        self.deliver(index, request_id, response)?;
        Ok(())
    }
}
