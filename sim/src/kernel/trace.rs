//! The run's trace: every line the kernel and its drivers record, folded into one hash
//! (two runs of one seed must agree byte for byte), the last few kept for a failure
//! report, and all of them kept only when asked (`syncsim replay --trace`).

use std::collections::VecDeque;

const RECENT_EVENTS_MAX: usize = 40;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

#[derive(Debug)]
pub struct Trace {
    hash: u64,
    recent: VecDeque<String>,
    keep_all: bool,
    all: Vec<String>,
}

impl Trace {
    pub fn new(keep_all: bool) -> Trace {
        Trace {
            hash: FNV_OFFSET,
            recent: VecDeque::new(),
            keep_all,
            all: Vec::new(),
        }
    }

    /// Folds one line into the FNV-1a hash and keeps it as the report needs.
    pub fn record(&mut self, line: String) {
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
        if self.recent.len() == RECENT_EVENTS_MAX {
            self.recent.pop_front();
        }
        if self.keep_all {
            self.all.push(line.clone());
        }
        self.recent.push_back(line);
    }

    /// Keeps a line in the full trace only (when it is kept): not hashed and not among
    /// the recent lines, so the hash and a failure's last events are the same whether or
    /// not the full trace is kept (the state lines, `event_log.rs`).
    pub fn record_unhashed(&mut self, line: String) {
        if self.keep_all {
            self.all.push(line);
        }
    }

    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash)
    }

    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }

    pub fn take_all(&mut self) -> Vec<String> {
        std::mem::take(&mut self.all)
    }
}
