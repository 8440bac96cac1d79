//! Slot migration: moving one slot's keys from the primary that serves it
//! (the *source*) to another shard's primary (the *target*) while clients
//! keep reading and writing them.
//!
//! # Commands
//!
//! All are ferrokv's own, sent by the control plane (or [`super::driver`]):
//!
//! - `CLUSTER MIGRATION IMPORT <slot> <source-id>` (on the target): mark the
//!   slot IMPORTING from the source. Refused when this node's shard already
//!   serves the slot, when this node is not its shard's primary, when
//!   `<source-id>` is not the primary of the shard serving the slot, or when
//!   the slot is already in a migration with another peer.
//! - `CLUSTER MIGRATION START <slot> <target-id> [BATCH <keys>]` (on the
//!   source): mark the slot MIGRATING to the target and start streaming its
//!   keys. Refused when this node does not serve the slot as a primary, when
//!   the target is unknown or in this node's shard. Idempotent for the same
//!   target (a repeated START resumes a stopped stream).
//! - `CLUSTER MIGRATION RESUME <slot>`: restart a stream that stopped on an
//!   error (the source's forward stream, or the target's return stream of a
//!   cancel).
//! - `CLUSTER MIGRATION CANCEL <slot>`: first on the source (stops its
//!   stream, then accepts the target's keys back), then on the target (which
//!   streams the slot's keys back to the source and, once it holds none,
//!   clears both nodes' states). The slot never leaves the source's shard.
//! - `CLUSTER MIGRATION PEER <slot> <node-id>`: point this node's migration
//!   of the slot at the primary that replaced its failed peer (see
//!   "Failover during a migration").
//! - `CLUSTER MIGRATION CLEAR <slot>`: drop this node's migration state of
//!   the slot (the end of a cancel; an operator's last resort).
//! - `CLUSTER MIGRATION STATUS [<slot>]`: one map per migration: `slot`,
//!   `role` (migrating/importing), `peer`, `state`
//!   (idle/streaming/done/failed/cancelling/cancelled), `cancelling` (0/1),
//!   `keys-moved`,
//!   `bytes-moved`, `keys-left` (keys of the slot still on this node),
//!   `last-error`.
//! - `CLUSTER RESTOREBATCH <slot> <source-id> <payload>` (internal, sent by
//!   a stream): insert the keys of `payload` — entries in the
//!   [`crate::persist::codec`] encoding, TTLs as absolute times — replacing
//!   existing ones. Refused unless this node imports the slot from
//!   `<source-id>` (or is the source of a cancelled migration receiving its
//!   keys back, or the request comes from the replication stream), and
//!   refused whole if any entry does not decode or is not of the slot.
//!
//! Ownership then flips by a topology with a higher epoch that lists the
//! slot in the target's shard, pushed by the driver (target first, so a
//! client sent there by the source's `-MOVED` is served). Applying a topology
//! drops the migration states it makes obsolete, in the same atomic write of
//! the state file as the topology.
//!
//! # Moving keys: MIGRATE-style, one batch at a time
//!
//! A stream takes the slot's partition lock, encodes up to `BATCH` keys (256
//! by default, at most ~1 MB), sends them in one `RESTOREBATCH`, waits for
//! the target's reply, deletes the keys that were acknowledged (logging a
//! `DEL` for each in the write log, so replicas and logs follow) and only
//! then releases the lock. A key is therefore in exactly one place at any
//! instant a command can observe: no write can land between the copy and the
//! delete, so no write is lost and no stale copy survives. The price is that
//! the slot's partition (1/64 of the keyspace) waits for one round trip to
//! the target per batch; on loopback that is well under a millisecond for
//! 256 small keys. The alternative — encode under the lock, send without it,
//! then delete only keys unchanged since — needs a per-key version on the
//! write path of every command; that is not worth it while the batch round
//! trip is this short. One batch is in flight at a time.
//!
//! If the target does not acknowledge a batch (it died, refused, or did not
//! answer within [`REPLY_TIMEOUT`]), the source keeps the batch's keys: a
//! key is deleted only after the target has it. The stream reconnects with
//! backoff for [`RECONNECT_FOR`] (a target that restarts is picked up again)
//! and then stops as `failed` until `RESUME`. Re-sending a key the target
//! already had is harmless: a restore replaces it with the source's copy,
//! which is the authoritative one for any key still on the source. For the
//! same reason keys a cancel brings back never replace one the source
//! holds.
//!
//! # Redirects (Redis' rules)
//!
//! On the source a command of a MIGRATING slot runs if all its keys are
//! still here; if none is, it gets `-ASK <slot> <target ip:port>` (a key
//! that never existed is then created on the target); if only some are,
//! `-TRYAGAIN`. This check runs with the command's partitions locked
//! ([`check_locked`]), not in [`super::route`], which runs before the
//! locks: a key can move between the two, and a write that then created it
//! on the source would fork it. On the target a key of an IMPORTING slot is
//! served only to a connection that sent `ASKING` (else `-MOVED` to the
//! source, which owns the slot); a multi-key command there with some keys
//! missing gets `-TRYAGAIN`. A command that routing let in because of a
//! migration (ASKING on the target, a migrating slot on the source) is
//! rechecked under the locks even if the migration ended in between, and
//! redirected to the slot's owner then.
//!
//! # Limits
//!
//! - Two streams in opposite directions between the same two nodes, for
//!   slots of the same partition (`slot % 64`), can each hold the partition
//!   the other's `RESTOREBATCH` needs; they then fail over [`REPLY_TIMEOUT`]
//!   and retry. The driver moves one slot at a time.
//! - A client blocked (BLPOP...) on the source on a key of a migrating slot
//!   stays blocked there while the slot moves (writes that reach the key on
//!   the target do not wake it); when ownership flips it gets `-MOVED` to
//!   the target ([`super::redirect_blocked`]), as in Redis.
//! - `CANCEL` on the source waits (up to twice [`REPLY_TIMEOUT`]) for the
//!   batch in flight, on the connection's thread.
//! - Failover is handled for a primary that died ([`super::driver::promote_replica`]
//!   drops it from the layout). A planned switchover of a live primary in a
//!   migration is not: the demoted primary drops its state, so the control
//!   plane must finish or cancel the migration first.
//! - A replica that stays behind longer than [`REPLY_TIMEOUT`] is no longer
//!   waited for; promoting it after that can fork or lose keys of the slot,
//!   as it would lose any write it had not received.
//!
//! # Failover during a migration
//!
//! A migration's state lives on the two primaries, so when one of them dies
//! and the control plane promotes its replica, the new primary must be told
//! what the old one was doing before it serves the slot, and the other side
//! must follow it. The control plane ([`super::driver::promote_replica`]):
//!
//! 1. marks the replica it promotes with its shard's side of every migration
//!    the dead primary was in (`START <slot> <target>` on a source replica,
//!    `IMPORT <slot> <source>` on a target replica, then `CANCEL` if the
//!    migration was being cancelled). A replica records the state without
//!    streaming, so from its first command as a primary the new source
//!    answers `-ASK` for keys it no longer holds instead of creating them
//!    again (a forked key), and the new target accepts `ASKING` and batches;
//! 2. pushes the topology that promotes it (higher epoch);
//! 3. re-points the surviving side: `CLUSTER MIGRATION PEER <slot> <new
//!    primary>` (refused while the old peer is still a primary);
//! 4. resumes or cancels the migration as after any interruption.
//!
//! This is safe because neither side lets go of a key before its replicas
//! have it: the target answers a batch once its online replicas acknowledged
//! it (like `WAIT`), and the source deletes a batch's keys and, until its
//! replicas acknowledged the deletes, answers `-TRYAGAIN` instead of `-ASK`
//! for keys it does not hold (so no client writes a moved key on the target
//! before the source's replicas know it moved). So a
//! promoted target holds every key the source deleted, and a promoted source
//! holds no stale copy of a key that moved (a key on both sides is one whose
//! batch was in flight: the same value on both). Resuming then streams the
//! promoted source's keys over the target's copies, and cancelling brings
//! the target's keys back; either ends with each key once, in one shard.
//! Both waits are bounded by [`REPLY_TIMEOUT`]: a replica that does not
//! acknowledge in time has fallen behind and is not the one to promote.
//! A demoted primary drops its migration states when it applies the
//! topology that demotes it.
//!
//! # Persistence and resume
//!
//! Each node's migration states live in its cluster state file next to the
//! topology, written the same way (temp file, fsync, rename, directory
//! fsync) before a command that changes them answers. A source that
//! restarts resumes streaming by itself; a target that restarts is found
//! again by the source's reconnect loop. The driver resumes from what the
//! nodes report (`STATUS`, `GETTOPOLOGY`). Progress counters are in memory
//! and restart at zero.
//!
//! Keys survive a crash as well as the nodes' own writes do. With
//! `appendfsync always` the target answers a batch only once it is in its
//! fsynced log, and the source releases the slot only once its `DEL`s are:
//! kill -9 of either side then loses nothing. With a weaker policy (or no
//! log) a crash can lose what the policy allows — including, on the source,
//! the deletion of keys already sent, which then come back and are sent
//! again over the target's copy.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError, View};
use crate::cmd::{CommandSpec, KeySpec, key_positions};
use crate::db::Keys;
use crate::resp::Reply;
use crate::session::Session;
use crate::slot::key_slot;
use crate::state::State;

/// Keys per batch unless START says otherwise.
pub const DEFAULT_BATCH_KEYS: usize = 256;
/// A batch is closed once its payload reaches this size.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// How long a stream waits for the peer's answer to one batch, holding the
/// slot's partition: long enough for a loaded peer, short enough that a hung
/// peer does not stall 1/64 of the keyspace for long.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stream keeps reconnecting to a peer that went away before it
/// stops as `failed`.
pub const RECONNECT_FOR: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cluster support is disabled")]
    Disabled,
    #[error("no topology is held yet")]
    NoTopology,
    #[error("invalid slot")]
    BadSlot,
    #[error("this node is not its shard's primary")]
    NotPrimary,
    #[error("slot {0} is not served by this node's shard")]
    NotOwner(u16),
    #[error("slot {0} is already served by this node's shard")]
    AlreadyOwner(u16),
    #[error("unknown node id {0}")]
    UnknownNode(String),
    #[error("node {0} is in this node's shard")]
    SameShard(String),
    #[error("node {node} is not the primary serving slot {slot}")]
    PeerNotOwner { node: String, slot: u16 },
    #[error("slot {slot} is already {kind} with node {peer}")]
    Busy {
        slot: u16,
        kind: &'static str,
        peer: String,
    },
    #[error("slot {0} has no migration on this node")]
    NoMigration(u16),
    #[error("slot {0} is not migrating from this node")]
    NotSource(u16),
    #[error("slot {0} is not importing to this node")]
    NotTarget(u16),
    #[error("slot {slot} is not being imported from {source_id}")]
    NotImporting { slot: u16, source_id: String },
    #[error("slot {0} is being cancelled; resume the cancel instead")]
    Cancelling(u16),
    #[error("node {0} is still a primary; a migration is re-pointed only after its peer failed over")]
    PeerStillPrimary(String),
    #[error("node {0} is not a shard primary")]
    PeerNotPrimary(String),
    #[error("slot {0} is not being cancelled on this node")]
    NotCancelling(u16),
    #[error("bad restore payload: {0}")]
    Payload(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Which side of a migration this node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The source: the slot is served here and its keys leave.
    Migrating,
    /// The target: keys arrive; served only to ASKING connections.
    Importing,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Migrating => "migrating",
            Kind::Importing => "importing",
        }
    }
}

/// One migration as kept in the cluster state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub slot: u16,
    pub kind: Kind,
    /// The other side's node ID.
    pub peer: String,
    /// The migration is being undone: keys flow back to the source.
    #[serde(default)]
    pub cancelling: bool,
}

/// What a slot's stream is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// No stream runs (a target that is not returning keys; a source after
    /// a cancel was asked, waiting for its keys back).
    Idle,
    Streaming,
    /// Every key was sent and acknowledged.
    Done,
    /// The stream stopped on an error; `RESUME` restarts it.
    Failed,
}

/// A slot in migration on this node, with its progress.
pub struct SlotMigration {
    pub slot: u16,
    pub kind: Kind,
    pub peer: String,
    pub cancelling: AtomicBool,
    pub keys_moved: AtomicU64,
    pub bytes_moved: AtomicU64,
    batch_keys: AtomicUsize,
    phase: Mutex<Phase>,
    last_error: Mutex<Option<String>>,
    /// Asks the running stream to stop after its current batch.
    stop: AtomicBool,
    /// The last batch's deletes are not yet acknowledged by this node's
    /// replicas: a key missing here gets `-TRYAGAIN`, not `-ASK`.
    fence: AtomicBool,
    /// A stream thread is running for this slot (at most one).
    running: AtomicBool,
}

impl SlotMigration {
    fn new(r: &Record) -> SlotMigration {
        SlotMigration {
            slot: r.slot,
            kind: r.kind,
            peer: r.peer.clone(),
            cancelling: AtomicBool::new(r.cancelling),
            keys_moved: AtomicU64::new(0),
            bytes_moved: AtomicU64::new(0),
            batch_keys: AtomicUsize::new(DEFAULT_BATCH_KEYS),
            phase: Mutex::new(Phase::Idle),
            last_error: Mutex::new(None),
            stop: AtomicBool::new(false),
            fence: AtomicBool::new(false),
            running: AtomicBool::new(false),
        }
    }

    fn record(&self) -> Record {
        Record {
            slot: self.slot,
            kind: self.kind,
            peer: self.peer.clone(),
            cancelling: self.cancelling.load(Ordering::Relaxed),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase.lock().clone()
    }

    fn state_name(&self) -> &'static str {
        let cancelling = self.cancelling.load(Ordering::Relaxed);
        match (self.phase(), cancelling) {
            (Phase::Failed, _) => "failed",
            (Phase::Streaming, true) | (Phase::Idle, true) => "cancelling",
            (Phase::Done, true) => "cancelled",
            (Phase::Streaming, false) => "streaming",
            (Phase::Done, false) => "done",
            (Phase::Idle, false) => "idle",
        }
    }
}

/// Every migration of this node, and the totals `/metrics` reports.
#[derive(Default)]
pub struct Migrations {
    slots: RwLock<HashMap<u16, Arc<SlotMigration>>>,
    /// Number of entries in `slots`: the command path reads only this when
    /// no migration runs.
    active: AtomicUsize,
    pub keys_moved_total: AtomicU64,
    pub bytes_moved_total: AtomicU64,
    pub keys_received_total: AtomicU64,
}

impl Migrations {
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Acquire) != 0
    }

    pub fn get(&self, slot: u16) -> Option<Arc<SlotMigration>> {
        if !self.any() {
            return None;
        }
        self.slots.read().get(&slot).cloned()
    }

    pub fn records(&self) -> Vec<Record> {
        let mut v: Vec<Record> = self.slots.read().values().map(|m| m.record()).collect();
        v.sort_by_key(|r| r.slot);
        v
    }

    /// Migrations with a stream running.
    pub fn in_progress(&self) -> usize {
        self.slots
            .read()
            .values()
            .filter(|m| m.running.load(Ordering::Relaxed))
            .count()
    }

    fn all(&self) -> Vec<Arc<SlotMigration>> {
        let mut v: Vec<_> = self.slots.read().values().cloned().collect();
        v.sort_by_key(|m| m.slot);
        v
    }

    fn set(&self, map: HashMap<u16, Arc<SlotMigration>>) {
        let mut g = self.slots.write();
        *g = map;
        self.active.store(g.len(), Ordering::Release);
    }

    /// Install records loaded from the state file.
    pub(super) fn load(&self, records: &[Record]) {
        self.set(
            records
                .iter()
                .map(|r| (r.slot, Arc::new(SlotMigration::new(r))))
                .collect(),
        );
    }
}

impl Cluster {
    /// Persist the held topology and `migrations` (the caller holds `apply`).
    fn save_with(&self, records: &[Record]) -> Result<(), MigrateError> {
        let file = self.file.get().ok_or(MigrateError::Disabled)?;
        let view = self.view.read().clone();
        file.save(view.as_ref().map(|v| &v.layout.topology), records)?;
        Ok(())
    }

    /// Change the migration table under the `apply` lock: `f` edits a copy,
    /// which is persisted before it replaces the live one, so no command ever
    /// sees a state a restart would forget.
    fn edit_migrations<R>(
        &self,
        f: impl FnOnce(&View, &mut HashMap<u16, Arc<SlotMigration>>) -> Result<R, MigrateError>,
    ) -> Result<R, MigrateError> {
        if !self.is_enabled() {
            return Err(MigrateError::Disabled);
        }
        let _g = self.apply.lock();
        let view = self.view().ok_or(MigrateError::NoTopology)?;
        let mut map = self.migrations.slots.read().clone();
        let r = f(&view, &mut map)?;
        let mut records: Vec<Record> = map.values().map(|m| m.record()).collect();
        records.sort_by_key(|r| r.slot);
        self.save_with(&records)?;
        self.migrations.set(map);
        Ok(r)
    }

    /// The migration records still meaningful under `view`: a source whose
    /// shard no longer serves the slot, or a target whose shard now does, is
    /// finished. Called by `set_topology` before it persists.
    pub(super) fn records_after(&self, view: &View) -> (Vec<Record>, bool) {
        let mut changed = false;
        // A primary the new layout demotes drops every migration: its peer
        // has been (or is being) re-pointed at the replica that replaced it,
        // and the state it remembers would only redirect clients wrongly
        // if it were promoted again later.
        let demoted = self.view().is_some_and(|v| v.primary) && !view.primary;
        let kept = self
            .migrations
            .records()
            .into_iter()
            .filter(|r| {
                if demoted {
                    changed = true;
                    return false;
                }
                let mine = view.layout.owner(r.slot) == Some(view.my_shard);
                let keep = match r.kind {
                    Kind::Migrating => mine,
                    Kind::Importing => !mine,
                };
                changed |= !keep;
                keep
            })
            .collect();
        (kept, changed)
    }

    /// Drop the live entries `records_after` dropped (after the file was
    /// written), stopping their streams.
    pub(super) fn retain_records(&self, kept: &[Record]) {
        let map: HashMap<u16, Arc<SlotMigration>> = self
            .migrations
            .slots
            .read()
            .iter()
            .filter(|(s, _)| kept.iter().any(|r| r.slot == **s))
            .map(|(s, m)| (*s, m.clone()))
            .collect();
        for m in self.migrations.all() {
            if !map.contains_key(&m.slot) {
                m.stop.store(true, Ordering::Relaxed);
                tracing::info!(slot = m.slot, kind = m.kind.name(), "migration finished by topology");
            }
        }
        self.migrations.set(map);
    }
}

fn peer_addr(view: &View, id: &str) -> Option<String> {
    view.layout.topology.node(id).map(|n| format!("{}:{}", n.ip, n.port))
}

/// `CLUSTER MIGRATION IMPORT`.
pub fn import(state: &State, slot: u16, source: &str) -> Result<(), MigrateError> {
    state.cluster.edit_migrations(|view, map| {
        // A replica of the target shard records the import (the replica the
        // control plane is about to promote; see "Failover during a
        // migration" above); it receives the keys through its primary's
        // replication stream meanwhile.
        let owner = view.layout.owner(slot).ok_or(MigrateError::BadSlot)?;
        if owner == view.my_shard {
            return Err(MigrateError::AlreadyOwner(slot));
        }
        let idx = view
            .layout
            .node_index(source)
            .ok_or_else(|| MigrateError::UnknownNode(source.to_string()))?;
        if view.layout.primaries[owner] != idx {
            return Err(MigrateError::PeerNotOwner {
                node: source.to_string(),
                slot,
            });
        }
        if let Some(m) = map.get(&slot) {
            if m.kind == Kind::Importing && m.peer == source {
                return Ok(());
            }
            return Err(MigrateError::Busy {
                slot,
                kind: m.kind.name(),
                peer: m.peer.clone(),
            });
        }
        let r = Record {
            slot,
            kind: Kind::Importing,
            peer: source.to_string(),
            cancelling: false,
        };
        map.insert(slot, Arc::new(SlotMigration::new(&r)));
        Ok(())
    })?;
    tracing::info!(slot, source, "slot importing");
    Ok(())
}

/// `CLUSTER MIGRATION START`: mark (persisted first) and start the stream.
pub fn start(state: &State, slot: u16, target: &str, batch: Option<usize>) -> Result<(), MigrateError> {
    let (m, primary) = state.cluster.edit_migrations(|view, map| {
        // A replica of the source shard accepts the state without streaming:
        // the control plane marks the replica it is about to promote, so the
        // new primary redirects the slot's missing keys from its first
        // command on (see "Failover during a migration" above).
        if view.layout.owner(slot) != Some(view.my_shard) {
            return Err(MigrateError::NotOwner(slot));
        }
        let idx = view
            .layout
            .node_index(target)
            .ok_or_else(|| MigrateError::UnknownNode(target.to_string()))?;
        if view.layout.shard_of[idx] == view.my_shard {
            return Err(MigrateError::SameShard(target.to_string()));
        }
        if view.layout.primaries[view.layout.shard_of[idx]] != idx {
            return Err(MigrateError::NotPrimary);
        }
        if let Some(m) = map.get(&slot) {
            if m.kind == Kind::Migrating && m.peer == target {
                if m.cancelling.load(Ordering::Relaxed) {
                    return Err(MigrateError::Cancelling(slot));
                }
                return Ok((m.clone(), view.primary));
            }
            return Err(MigrateError::Busy {
                slot,
                kind: m.kind.name(),
                peer: m.peer.clone(),
            });
        }
        let r = Record {
            slot,
            kind: Kind::Migrating,
            peer: target.to_string(),
            cancelling: false,
        };
        let m = Arc::new(SlotMigration::new(&r));
        map.insert(slot, m.clone());
        Ok((m, view.primary))
    })?;
    if let Some(b) = batch {
        m.batch_keys.store(b.clamp(1, 100_000), Ordering::Relaxed);
    }
    tracing::info!(slot, target, primary, "slot migrating");
    if primary {
        spawn_stream(state, m);
    }
    Ok(())
}

/// `CLUSTER MIGRATION RESUME`: restart a stopped stream.
pub fn resume(state: &State, slot: u16) -> Result<(), MigrateError> {
    let m = state
        .cluster
        .migrations
        .get(slot)
        .ok_or(MigrateError::NoMigration(slot))?;
    let cancelling = m.cancelling.load(Ordering::Relaxed);
    match (m.kind, cancelling) {
        (Kind::Migrating, false) | (Kind::Importing, true) => {
            spawn_stream(state, m);
            Ok(())
        }
        (Kind::Migrating, true) => Err(MigrateError::Cancelling(slot)),
        (Kind::Importing, false) => Err(MigrateError::NotSource(slot)),
    }
}

/// `CLUSTER MIGRATION CANCEL`: on the source, stop streaming and wait for
/// the keys to come back; on the target, send them back.
pub fn cancel(state: &State, slot: u16) -> Result<(), MigrateError> {
    let m = state
        .cluster
        .migrations
        .get(slot)
        .ok_or(MigrateError::NoMigration(slot))?;
    if m.kind == Kind::Migrating {
        m.stop.store(true, Ordering::Relaxed);
        // The running batch finishes (or fails) first: waiting here means a
        // CANCEL that answered leaves no batch in flight toward the target.
        let deadline = Instant::now() + REPLY_TIMEOUT * 2;
        while m.running.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    state.cluster.edit_migrations(|_, map| {
        let m = map.get(&slot).ok_or(MigrateError::NoMigration(slot))?;
        m.cancelling.store(true, Ordering::Relaxed);
        Ok(())
    })?;
    tracing::info!(slot, kind = m.kind.name(), "slot migration cancelling");
    match m.kind {
        Kind::Migrating => *m.phase.lock() = Phase::Idle,
        Kind::Importing => spawn_stream(state, m),
    }
    Ok(())
}

/// `CLUSTER MIGRATION CLEAR`.
pub fn clear(state: &State, slot: u16) -> Result<bool, MigrateError> {
    let removed = state.cluster.edit_migrations(|_, map| Ok(map.remove(&slot)))?;
    if let Some(m) = &removed {
        m.stop.store(true, Ordering::Relaxed);
        tracing::info!(slot, kind = m.kind.name(), "slot migration state cleared");
    }
    Ok(removed.is_some())
}

/// `CLUSTER MIGRATION PEER <slot> <node-id>`: point this node's migration
/// of `slot` at the node that replaced its peer in a failover. Refused while
/// the old peer is still a primary: two nodes sending or receiving one
/// slot's keys would fork them. The new peer must be a primary, of the shard
/// serving the slot when this node imports it, of another shard when this
/// node sends it. Kind and cancel state are kept; a running stream toward
/// the old peer is stopped (RESUME, START or CANCEL restarts it).
pub fn repoint(state: &State, slot: u16, peer: &str) -> Result<(), MigrateError> {
    let old = state.cluster.edit_migrations(|view, map| {
        let m = map.get(&slot).ok_or(MigrateError::NoMigration(slot))?;
        if m.peer == peer {
            return Ok(None);
        }
        let layout = &view.layout;
        if let Some(i) = layout.node_index(&m.peer)
            && layout.primaries[layout.shard_of[i]] == i
        {
            return Err(MigrateError::PeerStillPrimary(m.peer.clone()));
        }
        let idx = layout
            .node_index(peer)
            .ok_or_else(|| MigrateError::UnknownNode(peer.to_string()))?;
        let shard = layout.shard_of[idx];
        if layout.primaries[shard] != idx {
            return Err(MigrateError::PeerNotPrimary(peer.to_string()));
        }
        let ok = match m.kind {
            Kind::Importing => layout.owner(slot) == Some(shard),
            Kind::Migrating => shard != view.my_shard,
        };
        if !ok {
            return Err(MigrateError::PeerNotOwner {
                node: peer.to_string(),
                slot,
            });
        }
        let mut r = m.record();
        r.peer = peer.to_string();
        let fresh = Arc::new(SlotMigration::new(&r));
        fresh
            .batch_keys
            .store(m.batch_keys.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(map.insert(slot, fresh))
    })?;
    if let Some(old) = old {
        old.stop.store(true, Ordering::Relaxed);
        tracing::info!(slot, from = %old.peer, to = peer, "slot migration re-pointed after a failover");
    }
    Ok(())
}

/// Replicas streaming from this node (past their initial sync).
pub fn online_replicas(state: &State) -> usize {
    state
        .repl
        .replicas
        .lock()
        .iter()
        .filter(|p| p.state.load(Ordering::Relaxed) == crate::repl::sender_state::ONLINE)
        .count()
}

/// Wait (on a stream's thread) until every replica online now acknowledged
/// log offset `end`, one went offline, or [`REPLY_TIMEOUT`] passed. A
/// replica that does not answer in time is not waited for further: it has
/// fallen behind, and is then not the one a failover promotes (the control
/// plane picks the replica with the highest offset).
fn await_replicas(state: &State, end: u64) {
    let online = || online_replicas(state);
    let want = online();
    if want == 0 || state.repl.acked_count(end) >= want {
        return;
    }
    state.repl.getack.fetch_add(1, Ordering::Relaxed);
    state.db.wlog.appended.notify_waiters();
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut pause = Duration::from_micros(20);
    while state.repl.acked_count(end) < want.min(online()) {
        if Instant::now() > deadline {
            tracing::warn!(end, want, "replicas did not acknowledge migrated keys' deletes in time");
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// Start the stream threads of migrations loaded from the state file: a
/// restarted source picks up where it stopped.
pub fn resume_all(state: &Arc<State>) {
    for m in state.cluster.migrations.all() {
        let cancelling = m.cancelling.load(Ordering::Relaxed);
        if matches!((m.kind, cancelling), (Kind::Migrating, false) | (Kind::Importing, true)) {
            tracing::info!(slot = m.slot, "resuming slot migration after restart");
            spawn_stream(state, m);
        }
    }
}

fn spawn_stream(state: &State, m: Arc<SlotMigration>) {
    let Some(state) = state.this.upgrade() else {
        return;
    };
    if m.running.swap(true, Ordering::AcqRel) {
        return;
    }
    m.stop.store(false, Ordering::Relaxed);
    *m.phase.lock() = Phase::Streaming;
    *m.last_error.lock() = None;
    let slot = m.slot;
    let spawned = std::thread::Builder::new()
        .name(format!("migrate-{slot}"))
        .spawn(move || {
            let outcome = run_stream(&state, &m);
            let phase = match outcome {
                Ok(true) => Phase::Done,
                Ok(false) => Phase::Idle,
                Err(e) => {
                    tracing::warn!(slot, error = %e, "slot migration stream stopped");
                    *m.last_error.lock() = Some(e);
                    Phase::Failed
                }
            };
            *m.phase.lock() = phase;
            m.running.store(false, Ordering::Release);
        });
    if let Err(e) = spawned {
        tracing::error!(slot, error = %e, "failed to start migration stream thread");
    }
}

/// A blocking RESP connection to the peer: the stream holds a partition
/// lock while it waits for a reply, so it runs on its own thread, not on the
/// async runtime.
struct PeerConn {
    r: BufReader<TcpStream>,
}

impl PeerConn {
    fn connect(addr: &str) -> Result<PeerConn, String> {
        let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("bad peer address {addr}: {e}"))?;
        let s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))
            .map_err(|e| format!("failed to connect to {addr}: {e}"))?;
        let _ = s.set_nodelay(true);
        s.set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| format!("failed to set a timeout on {addr}: {e}"))?;
        Ok(PeerConn { r: BufReader::new(s) })
    }

    /// Send one command; `Ok` for `+...`/`:...` replies, `Err` otherwise.
    fn call(&mut self, args: &[&[u8]]) -> Result<String, String> {
        let mut out = Vec::with_capacity(64 + args.iter().map(|a| a.len()).sum::<usize>());
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.r
            .get_mut()
            .write_all(&out)
            .map_err(|e| format!("failed to send to peer: {e}"))?;
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(0) => return Err("peer closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("no reply from peer: {e}")),
        }
        let line = line.trim_end();
        match line.as_bytes().first() {
            Some(b'+') | Some(b':') => Ok(line[1..].to_string()),
            Some(b'-') => Err(format!("peer refused: {}", &line[1..])),
            _ => Err(format!("unexpected reply from peer: {line}")),
        }
    }
}

/// The stream: batches until the slot is empty here (`Ok(true)`), a stop
/// was asked (`Ok(false)`), or the peer stayed unreachable or refused.
fn run_stream(state: &State, m: &SlotMigration) -> Result<bool, String> {
    let slot = m.slot;
    let myid = state.cluster.myid().to_string();
    let slot_arg = slot.to_string();
    let mut conn: Option<PeerConn> = None;
    let mut down_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(10);
    loop {
        if m.stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let view = state.cluster.view().ok_or("no topology held")?;
        // Only a primary moves keys: a replica holds the state for the day
        // it is promoted, and a deposed primary must not send its stale copy.
        if !view.primary {
            return Ok(false);
        }
        let addr = peer_addr(&view, &m.peer).ok_or_else(|| format!("peer {} not in the topology", m.peer))?;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match PeerConn::connect(&addr) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    let since = *down_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > RECONNECT_FOR {
                        return Err(e);
                    }
                    *m.last_error.lock() = Some(e);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let mut ks = state.db.lock_slot(slot, crate::db::now_ms());
        // The state may have been cleared (topology flip, CLEAR) while this
        // thread waited for the lock.
        if !state
            .cluster
            .migrations
            .get(slot)
            .is_some_and(|cur| std::ptr::eq(&*cur, m))
        {
            return Ok(false);
        }
        let max_keys = m.batch_keys.load(Ordering::Relaxed);
        let mut payload = Vec::with_capacity(64 * 1024);
        let mut keys: Vec<Bytes> = Vec::with_capacity(max_keys);
        let mut dead: Vec<Bytes> = Vec::new();
        let now = ks.now;
        ks.visit_slot(slot, |e| {
            if e.is_expired(now) {
                dead.push(Bytes::copy_from_slice(e.key()));
            } else {
                crate::persist::codec::encode_entry(&mut payload, e.key(), e);
                keys.push(Bytes::copy_from_slice(e.key()));
            }
            keys.len() < max_keys && payload.len() < MAX_BATCH_BYTES
        });
        // Expired keys are not sent: they are deleted here as active
        // expiry would, and logged the same way.
        if !dead.is_empty() {
            for k in &dead {
                ks.remove_entry(k);
            }
            ks.expired.clear();
            state.db.log_deletes(&dead);
        }
        if keys.is_empty() {
            if !dead.is_empty() {
                continue;
            }
            if m.kind == Kind::Importing {
                // The return stream of a cancel is complete: the source
                // drops its state first (it then serves every key of the
                // slot itself), then this node, both while this partition is
                // still locked, so no ASKING command lands here in between.
                c.call(&[b"CLUSTER", b"MIGRATION", b"CLEAR", slot_arg.as_bytes()])?;
                clear(state, slot).map_err(|e| e.to_string())?;
                drop(ks);
            }
            return Ok(true);
        }
        let sent = payload.len() as u64;
        match c.call(&[
            b"CLUSTER",
            b"RESTOREBATCH",
            slot_arg.as_bytes(),
            myid.as_bytes(),
            &payload,
        ]) {
            Ok(_) => {
                for k in &keys {
                    ks.remove_entry(k);
                    state.watches.touch(k);
                }
                ks.expired.clear();
                state.db.log_deletes(&keys);
                // With `appendfsync always` the deletes are made durable
                // before the partition is released: once a client can see a
                // key gone from here (and write it on the target through
                // -ASK), a restart of this node cannot bring it back.
                let end = state.db.wlog.offset();
                while state.aof.must_wait(end) && !state.aof.is_poisoned() {
                    std::thread::sleep(Duration::from_micros(50));
                }
                // Likewise the replicas get the deletes before a client can
                // write a moved key on the target: a replica promoted after
                // this node dies then holds no stale copy of a moved key, so
                // every key it holds is the authoritative one and a resumed
                // stream may send it over the target's copy. The partition
                // is not held for that wait (the acknowledgements are read
                // by the async runtime, whose workers may be blocked on this
                // very partition): the fence, set while it is still held,
                // answers `-TRYAGAIN` instead of `-ASK` until they arrive.
                let fence = online_replicas(state) > 0 && state.repl.acked_count(end) < online_replicas(state);
                m.fence.store(fence, Ordering::Release);
                drop(ks);
                if fence {
                    await_replicas(state, end);
                    m.fence.store(false, Ordering::Release);
                }
                state.saves.count_changes(keys.len() as u64);
                let n = keys.len() as u64;
                m.keys_moved.fetch_add(n, Ordering::Relaxed);
                m.bytes_moved.fetch_add(sent, Ordering::Relaxed);
                let mig = &state.cluster.migrations;
                mig.keys_moved_total.fetch_add(n, Ordering::Relaxed);
                mig.bytes_moved_total.fetch_add(sent, Ordering::Relaxed);
                down_since = None;
                backoff = Duration::from_millis(10);
            }
            Err(e) if e.starts_with("peer refused") => return Err(e),
            Err(e) => {
                // Not acknowledged: the keys stay here. Reconnect and send
                // them again (the peer replaces what it may already have).
                drop(ks);
                conn = None;
                down_since.get_or_insert_with(Instant::now);
                *m.last_error.lock() = Some(e);
            }
        }
    }
}

/// `CLUSTER RESTOREBATCH <slot> <source-id> <payload>`: decode everything
/// first (all or nothing), then insert under the slot's partition lock and
/// log the command itself so replicas and the append-only log apply the
/// same batch (a replica applies it from its primary's stream, as a write). Returns the keys and the log offset the reply waits for
/// (with `appendfsync always` the source hears back only once the batch is
/// durable here, so an acknowledged key survives a crash of this node).
pub fn restore_batch(
    state: &State,
    session: &Session,
    slot: u16,
    source: &[u8],
    payload: &[u8],
) -> Result<(usize, u64), MigrateError> {
    let source = String::from_utf8_lossy(source);
    let allowed = session.cluster_internal
        || session.repl.master
        || state.cluster.migrations.get(slot).is_some_and(|m| {
            m.peer == source
                && (m.kind == Kind::Importing || (m.kind == Kind::Migrating && m.cancelling.load(Ordering::Relaxed)))
        });
    if !allowed {
        return Err(MigrateError::NotImporting {
            slot,
            source_id: source.into_owned(),
        });
    }
    // Keys coming back to the source of a cancelled migration do not replace
    // the ones it holds: a key still on the source is the authoritative copy
    // (clients write it there), and the target can hold an older one from a
    // batch whose acknowledgement was lost (the target died, or failed over,
    // with the batch applied). Forward batches do replace, by the same rule.
    let keep_existing = !session.repl.master
        && state
            .cluster
            .migrations
            .get(slot)
            .is_some_and(|m| m.kind == Kind::Migrating && m.cancelling.load(Ordering::Relaxed));
    let mut input: &[u8] = payload;
    let mut entries = Vec::new();
    while !input.is_empty() {
        let at = payload.len() - input.len();
        let d = crate::persist::codec::decode_entry(&mut input).map_err(|e| MigrateError::Payload(e.to_string()))?;
        let range = at..payload.len() - input.len();
        if key_slot(&d.key) != slot {
            return Err(MigrateError::Payload(format!(
                "key {} is not in slot {slot}",
                String::from_utf8_lossy(&d.key)
            )));
        }
        entries.push((d, range));
    }
    let n = entries.len();
    let mut ks = state.db.lock_slot(slot, crate::db::now_ms());
    let lru = ks.lru_clock();
    // What is logged (and so replicated) is what was applied: the payload
    // itself, or the entries kept of it.
    let mut logged: Option<Vec<u8>> = keep_existing.then(Vec::new);
    for (d, range) in entries {
        let key = d.key.clone();
        if let Some(out) = logged.as_mut() {
            if ks.contains_live(&key) {
                continue;
            }
            out.extend_from_slice(&payload[range]);
        }
        let e = d.into_entry(crate::db::evict::new_lru(lru, &state.db));
        ks.insert_loaded(&key, e);
        state.watches.touch(&key);
    }
    let slot_arg = slot.to_string();
    let cmd: [&[u8]; 5] = [
        b"CLUSTER",
        b"RESTOREBATCH",
        slot_arg.as_bytes(),
        source.as_bytes(),
        logged.as_deref().unwrap_or(payload),
    ];
    // A replica's log is its primary's stream byte for byte: the frame it
    // applied is relayed into it by `Ctx::flush_log`, so logging the batch
    // here as well would write it twice and shift the replica's offsets.
    let end = if session.repl.master || state.repl.is_replica() {
        state.db.wlog.offset()
    } else {
        state.db.wlog.append(&[cmd], false)
    };
    drop(ks);
    state.saves.count_changes(n as u64);
    state
        .cluster
        .migrations
        .keys_received_total
        .fetch_add(n as u64, Ordering::Relaxed);
    Ok((n, end))
}

/// `CLUSTER MIGRATION STATUS`: one map per migration.
pub fn status(state: &State, only: Option<u16>) -> Reply {
    let items = state
        .cluster
        .migrations
        .all()
        .into_iter()
        .filter(|m| only.is_none_or(|s| s == m.slot))
        .map(|m| {
            let left = state.db.with_slot(m.slot, |t| t.table.len());
            let err = m.last_error.lock().clone().unwrap_or_default();
            let kv = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
            Reply::Map(vec![
                kv("slot", Reply::Int(m.slot as i64)),
                kv("role", Reply::bulk_static(m.kind.name())),
                kv("peer", Reply::bulk(&m.peer)),
                kv("state", Reply::bulk_static(m.state_name())),
                // Separate from `state`, which a failed stream shows as
                // `failed` whichever way it was going.
                kv("cancelling", Reply::Int(m.cancelling.load(Ordering::Relaxed) as i64)),
                kv("keys-moved", Reply::Int(m.keys_moved.load(Ordering::Relaxed) as i64)),
                kv("bytes-moved", Reply::Int(m.bytes_moved.load(Ordering::Relaxed) as i64)),
                kv("keys-left", Reply::Int(left as i64)),
                kv("last-error", Reply::bulk(err)),
            ])
        })
        .collect();
    Reply::Array(items)
}

/// Call `f` with every key a command names (no allocation for fixed specs).
fn each_key(spec: &CommandSpec, args: &[&[u8]], f: &mut dyn FnMut(&[u8])) {
    if matches!(spec.keys, KeySpec::None | KeySpec::All) {
        return;
    }
    for i in key_positions(spec, args) {
        f(args[i]);
    }
}

/// The redirect decision of a migrating or importing slot, made with the
/// command's partitions locked (see the module doc). `queue` is the
/// transaction's commands for EXEC, else the command itself.
pub fn check_locked(
    state: &State,
    session: &mut Session,
    queue: &[(&'static CommandSpec, &[&[u8]])],
    ks: &mut Keys,
) -> Option<Reply> {
    let admitted = std::mem::take(&mut session.admitted_asking);
    let routed = std::mem::take(&mut session.routed_migrating);
    if session.cluster_internal || session.repl.master {
        return None;
    }
    let mut slot = None;
    let mut present = 0usize;
    let mut missing = 0usize;
    for (spec, args) in queue {
        each_key(spec, args, &mut |k| {
            slot = Some(key_slot(k));
            if ks.contains_live(k) {
                present += 1;
            } else {
                missing += 1;
            }
        });
    }
    let slot = slot?;
    let m = state.cluster.migrations.get(slot);
    match m.as_ref().map(|m| m.kind) {
        Some(Kind::Migrating) if missing > 0 => {
            let m = m?;
            if present > 0 {
                return Some(Reply::err("TRYAGAIN Multiple keys request during rehashing of slot"));
            }
            if m.fence.load(Ordering::Acquire) {
                return Some(Reply::err("TRYAGAIN Slot migration waits for this shard's replicas"));
            }
            let view = state.cluster.view()?;
            // A target dropped from the topology (it failed and the control
            // plane has not re-pointed the migration yet): the key may be on
            // its promoted replica, so neither serve it here nor guess.
            let Some(addr) = peer_addr(&view, &m.peer) else {
                return Some(Reply::err("TRYAGAIN Slot migration target is failing over"));
            };
            Some(Reply::err(format!("ASK {slot} {addr}")))
        }
        Some(Kind::Importing) if admitted && missing > 0 && present + missing > 1 => {
            Some(Reply::err("TRYAGAIN Multiple keys request during rehashing of slot"))
        }
        // While a cancel sends keys back, the source's `-ASK` may be stale:
        // the key can have gone back since. Creating it here would fork it,
        // so the client retries (and finds it on the source).
        Some(Kind::Importing) if admitted && missing > 0 && m.as_ref()?.cancelling.load(Ordering::Relaxed) => {
            Some(Reply::err("TRYAGAIN Slot is being returned to its owner"))
        }
        Some(Kind::Importing) | Some(Kind::Migrating) => None,
        None if admitted || routed => {
            // Let in by ASKING, or into a migrating slot of this shard, but
            // the migration ended (a cancel completed, ownership flipped)
            // before the locks were taken: the owner serves it now.
            let view = state.cluster.view()?;
            let owner = view.layout.owner(slot)?;
            if owner == view.my_shard {
                return None;
            }
            let p = view.layout.primary(owner);
            Some(Reply::err(format!("MOVED {slot} {}:{}", p.ip, p.port)))
        }
        None => None,
    }
}
