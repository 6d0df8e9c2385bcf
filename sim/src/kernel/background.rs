//! The app's second process: a background sync task that opens the tenant database the
//! app has open, may write, syncs, and closes once its sync has ended.
//!
//! Both processes are real engines on one database file, each with its own connection,
//! clock state, timers and requests. The device's fields hold one process at a time (the
//! app's, unless a verb here swapped the background one in): [`Sim::as_background`]
//! swaps the background process in, runs a kernel verb, and swaps it back, so that every
//! verb ([`Sim::call`] and its draining, deliveries, timers, kills) works on either
//! process unchanged. An answer or a timer finds its process by generation.
//!
//! A kill inside a background call kills that process alone (no restart follows: the
//! system starts the task again when it likes); a power loss takes both processes. The
//! process ends cleanly once its sync is over, and always before the app logs out or
//! switches tenant, and before the liveness phase.

use super::device::Process;
use super::event_log::EventKind;
use super::{Failure, Sim};
use crate::profile::FaultClass;
use std::sync::Arc;

impl Sim {
    /// Runs `verb` with the device's background process swapped in, if it runs.
    pub fn as_background<T>(
        &mut self,
        index: usize,
        verb: impl FnOnce(&mut Sim) -> Result<T, Failure>,
    ) -> Result<Option<T>, Failure> {
        if self.devices[index].background.is_none() {
            return Ok(None);
        }
        self.devices[index].swap_processes();
        let result = verb(self);
        self.devices[index].swap_processes();
        let device = &mut self.devices[index];
        if device
            .background
            .as_ref()
            .is_some_and(|b| b.engine.is_none())
        {
            device.background = None;
            // Killed inside the verb: the app's view is read afresh.
            if let (Some(tenant), Some(engine)) = (device.tenant.as_deref(), &device.engine) {
                self.oracle.background_died(device, tenant, engine)?;
            }
        }
        result.map(Some)
    }

    /// Runs `verb` on the process `generation` names: the background process when it is
    /// that one, else the device's fields as they are (the app, or nothing: an answer to
    /// a process that is gone reaches whatever process runs, as on a real device).
    pub(super) fn as_process(
        &mut self,
        index: usize,
        generation: u64,
        verb: impl FnOnce(&mut Sim) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let background = self.devices[index].background.as_ref();
        if background.is_some_and(|b| b.generation == generation) {
            return self.as_background(index, verb).map(drop);
        }
        verb(self)
    }

    /// Whether the class fires for the device now, the app running and no background
    /// process: then the background process opens the database the app has open, and
    /// the draw of the class's stream for what the task does is returned.
    pub fn maybe_start_background(&mut self, index: usize) -> Result<Option<u64>, Failure> {
        let device = &self.devices[index];
        if device.background.is_some() || !device.is_running() || device.tenant.is_none() {
            return Ok(None);
        }
        let at_ms = self.elapsed_ms();
        let Some(draw) = self
            .faults
            .fire(FaultClass::SecondProcess, at_ms, |stream| stream.next_u64())
        else {
            return Ok(None);
        };
        self.start_background(index)?;
        if self.devices[index].background.is_none() {
            return Ok(None);
        }
        Ok(Some(draw))
    }

    /// Opens the background process on the app's tenant database (the app runs).
    pub fn start_background(&mut self, index: usize) -> Result<(), Failure> {
        let tenant = self.devices[index]
            .tenant
            .clone()
            .expect("a background process opens the logged-in tenant");
        assert!(self.devices[index].background.is_none());
        let now_ms = self.now_ms;
        let device = &mut self.devices[index];
        device.background = Some(Process::default());
        device.swap_processes();
        device.generation = device.next_generation();
        device.tick_clock(now_ms);
        let (options, entropy) = self.process_options(index, &tenant);
        let device = &mut self.devices[index];
        let env = sync_engine::Env::new(device.clock.clone(), entropy);
        let opened = sync_engine::Engine::open(options, env);
        let mut engine = match opened {
            Ok(engine) => engine,
            Err(error) => {
                device.swap_processes();
                device.background = None;
                let expected = matches!(&error, sync_engine::OpenError::Storage(_))
                    && device.storage_fault_active();
                if expected {
                    // A typed failure the fault model expects (the app's other
                    // connection holds the write lock): the task does not run.
                    let line = format!("{} background process cannot open: {error}", device.name);
                    self.trace(line);
                    return Ok(());
                }
                return Err(super::violation(format!(
                    "{}: the background process failed to open the database: {error}",
                    device.name
                )));
            }
        };
        engine.set_crash_hook(Box::new(super::device::SimCrashHook {
            device: index,
            switch: Arc::clone(&self.kill_switch),
        }));
        device.engine = Some(engine);
        let line = format!(
            "{} background process opens {tenant} generation {}",
            device.name, device.generation
        );
        device.swap_processes();
        self.faults.count(FaultClass::SecondProcess);
        self.trace_device(index, EventKind::Open, line);
        let token = super::token_of(&tenant);
        self.as_background(index, |sim| {
            sim.call(index, |engine| Ok(engine.set_auth_token(&token)?))
                .map(drop)
        })?;
        Ok(())
    }

    /// Whether the device's background process runs and has no sync under way.
    pub fn background_idle(&self, index: usize) -> bool {
        let Some(background) = self.devices[index].background.as_ref() else {
            return false;
        };
        background
            .engine
            .as_ref()
            .is_some_and(|engine| engine.status().is_ok_and(|status| !status.syncing))
    }

    /// Ends the background process cleanly (its task is done, or the app logs out): its
    /// connection closes as a process's last act does, requests it sent go unanswered.
    pub fn stop_background(&mut self, index: usize) {
        let Some(mut background) = self.devices[index].background.take() else {
            return;
        };
        if let Some(engine) = background.engine.take() {
            drop(engine);
            let line = format!("{} background process ends", self.devices[index].name);
            self.trace_device(index, EventKind::Logout, line);
        }
    }

    /// The background process dies with the device (a power loss): killed, not closed.
    pub(super) fn kill_background(&mut self, index: usize) {
        if self.devices[index].background.is_none() {
            return;
        }
        let killed = self.as_background(index, |sim| {
            sim.devices[index].kill_process();
            Ok(())
        });
        killed.expect("a kill cannot fail");
        let line = format!("{} background process killed", self.devices[index].name);
        self.trace_device(index, EventKind::Kill, line);
    }
}
