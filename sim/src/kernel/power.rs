//! Power loss: what survives of a device's database when the power goes, and the
//! durability promise the oracle holds the engine to.
//!
//! The engine runs WAL with `synchronous = NORMAL`: a commit is written to the `-wal`
//! file but not synced; a checkpoint syncs the WAL, copies it into the database file and
//! syncs that. So after a power loss the database file is as the last checkpoint left it,
//! the `-shm` index is gone, and the `-wal` keeps an arbitrary prefix (a torn last frame
//! included) of what was written to it — at least the frames a checkpoint synced. No
//! custom VFS is needed to model that: after killing the app, the fault cuts the `-wal`
//! at a byte length drawn from its own stream, no shorter than the synced frames, and
//! removes the `-shm`. SQLite's recovery keeps every transaction whose commit frame is
//! whole and checksummed, so commits vanish whole and in order: a suffix of them.
//!
//! What is synced is read from the files, never asked of the engine: the `-shm` index
//! says how many frames of the current WAL generation (its salt) a checkpoint copied, and
//! a new salt means the previous generation was checkpointed whole.
//!
//! The promise (ARCHITECTURE.md, "Durability"): before a push leaves the device, every
//! stamp, id and `opId` the engine issued is durable. The kernel checks it where it can
//! see it: each acknowledged write is noted with the WAL frame its commit ended at, and
//! a push that carries a noted write whose frame is not synced yet is a violation — a
//! power loss could take back a write the server already holds, and let the clock issue
//! its stamp again. After a power loss, the writes that may have vanished are discarded
//! from the model, the device's causal memory and cursors start over (what it showed may
//! go back), and every later acknowledged write must carry a stamp above every stamp
//! that left the device before the loss. Nothing here decides when the power goes; the
//! fault model does.

use super::{violation, Failure, Sim};
use crate::profile::FaultClass;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use sync_engine::registry::OperationKind;
use sync_engine::wire::SyncRequest;
use sync_engine::{HlcStamp, Record};

/// The size of the WAL file header, and of each frame's header before its page.
const WAL_HEADER_BYTES: u64 = 32;
const FRAME_HEADER_BYTES: u64 = 24;
/// The bytes of the `-shm` file read: both copies of the index header and the
/// checkpoint information after them.
const INDEX_BYTES: usize = 136;
/// `iVersion` of the WAL index format SQLite writes.
const INDEX_VERSION: u32 = 3_007_000;

/// The state of a WAL, as its `-shm` index tells it (native byte order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalIndex {
    /// The WAL generation: a checkpoint that copied every frame lets the next writer
    /// start the WAL over under a new salt.
    pub salt: [u32; 2],
    /// Frames of committed transactions in this generation.
    pub frames: u32,
    /// Frames a checkpoint copied into the database file, and so synced.
    pub backfilled: u32,
    pub page_size: u32,
}

impl WalIndex {
    /// Reads the index of `shm`; `None` if there is none, or it is not initialized.
    pub fn read(shm: &Path) -> Option<WalIndex> {
        let mut bytes = [0u8; INDEX_BYTES];
        std::fs::File::open(shm).ok()?.read_exact(&mut bytes).ok()?;
        let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        if word(0) != INDEX_VERSION || bytes[12] == 0 {
            return None;
        }
        let page_size = match u16::from_ne_bytes([bytes[14], bytes[15]]) {
            1 => 65_536,
            size => u32::from(size),
        };
        Some(WalIndex {
            salt: [word(32), word(36)],
            frames: word(16),
            backfilled: word(96),
            page_size,
        })
    }

    fn frame_bytes(&self) -> u64 {
        FRAME_HEADER_BYTES + u64::from(self.page_size)
    }
}

/// An acknowledged local write not yet known to be durable.
#[derive(Clone, Debug)]
struct UnsyncedWrite {
    tenant: String,
    client_id: String,
    stamp: HlcStamp,
    salt: [u32; 2],
    /// The WAL frame count just after the call that wrote it: its commit frame or later.
    frame: u32,
}

/// One device's durability bookkeeping, kept across its processes (a power loss is
/// judged by what earlier processes wrote and sent).
#[derive(Debug, Default)]
pub struct PowerWatch {
    unsynced: Vec<UnsyncedWrite>,
    /// Per tenant: the WAL generation and how many of its frames are known synced.
    synced: BTreeMap<String, ([u32; 2], u32)>,
    /// Per tenant: the newest stamp that left the device in a push.
    sent_max: BTreeMap<String, HlcStamp>,
    /// Per tenant: after a power loss, every new write's stamp must be above this.
    floor: BTreeMap<String, HlcStamp>,
}

impl PowerWatch {
    /// Takes in what `index` says is synced; returns the frames of its generation synced.
    fn observe(&mut self, tenant: &str, index: &WalIndex) -> u32 {
        let synced = self
            .synced
            .entry(tenant.to_owned())
            .or_insert((index.salt, 0));
        if synced.0 != index.salt {
            // A new generation: the last one was checkpointed whole.
            *synced = (index.salt, 0);
        }
        synced.1 = synced.1.max(index.backfilled);
        synced.1
    }

    fn is_synced(&self, write: &UnsyncedWrite) -> bool {
        self.synced
            .get(&write.tenant)
            .is_some_and(|(salt, frames)| *salt != write.salt || write.frame <= *frames)
    }

    /// A recovery could not read the clock's high-water mark (a known limit, see the
    /// engine's `recovery.rs`): the stamps that left before no longer bound new ones.
    pub fn clock_lost(&mut self, tenant: &str) {
        self.sent_max.remove(tenant);
        self.floor.remove(tenant);
    }

    /// The tenant's database was dropped: a new one starts with nothing to judge.
    pub fn forget_tenant(&mut self, tenant: &str) {
        self.unsynced.retain(|write| write.tenant != tenant);
        self.synced.remove(tenant);
        self.sent_max.remove(tenant);
        self.floor.remove(tenant);
    }
}

impl Sim {
    fn watching_power(&self) -> bool {
        !self.knobs.fault(FaultClass::PowerLoss).is_zero()
    }

    /// The device's `-shm` index of its logged-in tenant, if it has one.
    fn wal_index(&self, index: usize) -> Option<WalIndex> {
        let files = self.devices[index].db_files();
        WalIndex::read(files.get(1)?)
    }

    /// Notes an acknowledged write of `record` with the WAL frame its commit ended at
    /// (only while the power-loss class is on), and checks that a write after a power
    /// loss carries a stamp above every stamp that had left the device.
    pub(super) fn watch_write(
        &mut self,
        index: usize,
        tenant: &str,
        record: &Record,
    ) -> Result<(), Failure> {
        if !self.watching_power() {
            return Ok(());
        }
        let device = &self.devices[index];
        if let Some(floor) = device.power.floor.get(tenant) {
            if record.updated_at <= *floor {
                return Err(violation(format!(
                    "stamp reuse: after a power loss {} wrote {} at stamp {:?}, not above the \
                     stamp {floor:?} that had already left the device",
                    device.name, record.client_id, record.updated_at
                )));
            }
        }
        let Some(wal) = self.wal_index(index) else {
            return Ok(());
        };
        let power = &mut self.devices[index].power;
        let synced = power.observe(tenant, &wal);
        if wal.frames > synced {
            power.unsynced.push(UnsyncedWrite {
                tenant: tenant.to_owned(),
                client_id: record.client_id.clone(),
                stamp: record.updated_at,
                salt: wal.salt,
                frame: wal.frames,
            });
        }
        Ok(())
    }

    /// The durability promise, checked as a push leaves: every acknowledged write it
    /// carries is synced.
    pub(super) fn check_push_durable(
        &mut self,
        index: usize,
        request: &SyncRequest,
    ) -> Result<(), Failure> {
        if !self.watching_power() {
            return Ok(());
        }
        if !matches!(
            self.registry.resolve_operation(&request.operation_name),
            Some((OperationKind::Push, _))
        ) {
            return Ok(());
        }
        let wal = self.wal_index(index);
        let device = &mut self.devices[index];
        let tenant = request.tenant_id.as_str();
        let synced = wal.map(|wal| device.power.observe(tenant, &wal));
        let variables = request.variables.to_json();
        let items = variables["payload"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for item in items {
            let (Some(client_id), Some(stamp)) =
                (item["clientId"].as_str(), item["updatedAt"].as_u64())
            else {
                continue;
            };
            let stamp = HlcStamp(stamp);
            let sent_max = device.power.sent_max.entry(tenant.to_owned()).or_default();
            *sent_max = (*sent_max).max(stamp);
            let unsynced = device.power.unsynced.iter().find(|write| {
                write.tenant == tenant && write.client_id == client_id && write.stamp == stamp
            });
            if let Some(write) = unsynced.filter(|write| !device.power.is_synced(write)) {
                return Err(violation(format!(
                    "durability: {} sent {client_id} (stamp {stamp:?}) in a push while its write \
                     ended at WAL frame {} and only {} frames were synced: a power loss could take \
                     back a write the server holds",
                    device.name,
                    write.frame,
                    synced.unwrap_or(0)
                )));
            }
        }
        let power = &mut device.power;
        let unsynced = std::mem::take(&mut power.unsynced);
        power.unsynced = unsynced
            .into_iter()
            .filter(|write| !power.is_synced(write))
            .collect();
        Ok(())
    }

    /// The power-loss class's opportunity at every kill: when it fires, the device's WAL
    /// keeps a prefix drawn from the class's stream and its `-shm` is removed, and the
    /// oracle learns what may have vanished. Call right after the kill, before a reopen.
    pub(super) fn maybe_lose_power(&mut self, index: usize) {
        if !self.watching_power() || self.devices[index].tenant.is_none() {
            return;
        }
        let at_ms = self.now_ms - super::EPOCH_MS;
        let Some(draw) = self
            .faults
            .fire(FaultClass::PowerLoss, at_ms, |stream| stream.next_u64())
        else {
            return;
        };
        self.lose_power(index, draw);
    }

    /// Cuts the device's WAL where `draw` says (within what may be lost) and removes its
    /// `-shm`, as a power loss right now would leave them.
    pub fn lose_power(&mut self, index: usize, draw: u64) {
        assert!(
            !self.devices[index].is_running(),
            "the power goes after the kill"
        );
        // The app's background process goes down with the device.
        self.kill_background(index);
        let tenant = self.devices[index]
            .tenant
            .clone()
            .expect("a device with a database");
        let files = self.devices[index].db_files();
        let (wal_path, shm_path) = (&files[0], &files[1]);
        let wal = WalIndex::read(shm_path);
        let wal_len = std::fs::metadata(wal_path).map_or(0, |meta| meta.len());
        let device = &mut self.devices[index];
        let (synced, frame_bytes) = match &wal {
            Some(wal) => (device.power.observe(&tenant, wal), wal.frame_bytes()),
            None => (0, 1),
        };
        let keep_min = if synced == 0 {
            0
        } else {
            WAL_HEADER_BYTES + u64::from(synced) * frame_bytes
        };
        let keep_min = keep_min.min(wal_len);
        let keep = keep_min + draw % (wal_len - keep_min + 1);
        if wal_len > 0 {
            std::fs::OpenOptions::new()
                .write(true)
                .open(wal_path)
                .and_then(|file| file.set_len(keep))
                .unwrap_or_else(|error| panic!("cutting {}: {error}", wal_path.display()));
        }
        match std::fs::remove_file(shm_path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                panic!("removing {}: {error}", shm_path.display())
            }
            _ => {}
        }
        let kept_frames = match &wal {
            Some(_) if keep >= WAL_HEADER_BYTES => ((keep - WAL_HEADER_BYTES) / frame_bytes) as u32,
            _ => 0,
        };
        // Writes whose call ended past the frames kept may have vanished (whole, with
        // their ops): the model no longer expects them.
        let salt = wal.map(|wal| wal.salt);
        let power = &mut device.power;
        let (maybe_lost, kept): (Vec<UnsyncedWrite>, Vec<UnsyncedWrite>) =
            std::mem::take(&mut power.unsynced)
                .into_iter()
                .partition(|write| {
                    write.tenant == tenant
                        && salt.is_none_or(|salt| write.salt == salt && write.frame > kept_frames)
                });
        power.unsynced = kept;
        if let Some(sent_max) = power.sent_max.get(&tenant).copied() {
            power.floor.insert(tenant.clone(), sent_max);
        }
        let name = device.name.clone();
        for write in &maybe_lost {
            self.oracle.model.discard_record(
                index,
                &tenant,
                &write.client_id,
                "power loss before the write was durable",
            );
        }
        // What the device showed may go back to an older state: its causal memory and
        // its cursors start over from what the reopen finds.
        self.oracle.causality.forget(index, &tenant);
        self.oracle.reset_cursors(index, &tenant);
        self.trace(format!(
            "{name} loses power: WAL cut from {wal_len} to {keep} bytes ({synced} frames \
             synced), shared-memory index gone; {} acknowledged writes may have vanished",
            maybe_lost.len()
        ));
    }
}
