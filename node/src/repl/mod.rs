//! Replication: a primary streams its write log to replicas; a replica copies
//! the primary's dataset once (full sync) and then applies the same stream,
//! so both hold the same keys at the same offset.
//!
//! # Protocol (Redis 7's PSYNC2, spoken between ferrokv nodes)
//!
//! The replica connects to the primary as an ordinary client and sends:
//!
//! ```text
//! PING                                  → +PONG (or -NOAUTH, then:)
//! AUTH <masterauth>                     → +OK            (only with --masterauth)
//! REPLCONF listening-port <port>        → +OK
//! REPLCONF capa eof capa psync2         → +OK
//! REPLCONF epoch <replica's epoch>      → +EPOCH <primary's epoch> | -FENCED ...
//! PSYNC <replid> <offset+1>             → +CONTINUE <replid>
//!                                       | +FULLRESYNC <replid> <offset>, then the snapshot
//! ```
//!
//! After `PSYNC` the connection stops being a client: the primary writes the
//! write-log stream to it and reads `REPLCONF ACK <offset>` back, which the
//! replica sends every second and when asked by `REPLCONF GETACK *`.
//!
//! - **Partial resync** (`+CONTINUE`): the replica's replication ID is the
//!   primary's current one, or the primary's previous one (`replid2`) and the
//!   offset is not past the point where that history ended (`second_repl_offset`,
//!   after a failover), and the backlog still holds every byte from the
//!   requested offset. The primary sends the log from there.
//! - **Full sync** (`+FULLRESYNC`): anything else, including a replica whose
//!   history diverged (a deposed primary with writes nobody else has). The
//!   primary takes a point-in-time cut of its keyspace and streams it as a
//!   snapshot straight into the socket (no disk), framed as Redis frames a
//!   diskless transfer: `$EOF:<40 random characters>\r\n`, the payload, the
//!   same 40 characters. The size of a cut is unknown until its last slot is
//!   encoded, so a `$<length>` header would mean buffering the whole snapshot
//!   on the primary first; the end mark lets the first block leave as soon as
//!   it is encoded. Then the primary sends the log from the cut's offset.
//! - `REPLCONF GETACK *` and `\n` keepalives are written by the primary
//!   between whole commands but are not part of the write log (Redis puts its
//!   GETACK and PINGs into the stream). Our write log is also the append-only
//!   file, and control traffic has no place there, so the replica counts
//!   neither in its offset.
//!
//! # States
//!
//! Primary side, per replica (`INFO replication` `slaveN:state=`):
//! `wait_bgsave` (cut being taken) → `send_bulk` (snapshot streaming) →
//! `online` (log streaming). A replica whose sender finds its next byte gone
//! from the backlog is disconnected (logged, `ferrokv_backlog_disconnects` in
//! INFO stats); it reconnects and full-syncs.
//!
//! Replica side (`ROLE`): `connect` (waiting to retry, with exponential
//! backoff up to 5 s) → `connecting` → `handshake` → `sync` (receiving the
//! snapshot) → `connected` (applying the stream). `master_link_status` is
//! `up` only in `connected`.
//!
//! # Consistency guarantees
//!
//! - A replica's offset means the same bytes as its primary's: it relays the
//!   exact bytes it received into its own write log (`append_raw`, under the
//!   partition locks of the command that applied them, as every log append
//!   is). So it persists the stream to its own append-only file, serves PSYNC
//!   to its own replicas, and can be promoted and serve partial resyncs to
//!   its siblings. A transaction's bytes are relayed only at its `EXEC`, so a
//!   replica's offset never points inside a transaction.
//! - A replica never expires keys by its own clock (the primary sends `DEL`
//!   when a key expires there): reads of a key that is logically expired
//!   answer as if it were absent but do not delete it, and commands from the
//!   primary see it as present. Active expiry and eviction are off. Writes of
//!   normal clients are refused with `-READONLY` (`replica-read-only yes`);
//!   with `replica-read-only no` they apply locally and are never relayed.
//! - A full sync replaces the dataset only once the whole payload has arrived
//!   and verified: a primary vanishing mid-transfer leaves the old data in
//!   place. The payload is held in memory until then (as Redis' diskless
//!   load with `swapdb` holds a second dataset). With `appendonly`, the
//!   replica's log is closed before the load and restarted from a base of
//!   the new dataset after it (Redis' `restartAOFAfterSYNC`): the old log
//!   describes a history that no longer exists.
//! - A replica whose append-only log failed (`-MISCONF`) stops applying the
//!   stream and drops the link rather than acknowledge writes it would lose;
//!   it keeps retrying, and after a restart resumes from its persisted
//!   offset.
//! - A stream from another dataset is never applied: the replica's PSYNC names
//!   its replication ID and offset, and anything the primary cannot continue
//!   exactly becomes a full sync that replaces the replica's data.
//!
//! # Epochs and fencing
//!
//! A node persists a config epoch (`<dir>/config-epoch`, see [`epoch`]). The
//! control plane changes roles with `REPLICAOF NO ONE EPOCH <n>` and
//! `REPLICAOF <host> <port> EPOCH <n>`: an older `n` than the node's is
//! refused (`-STALEEPOCH`), an equal one is applied idempotently, a newer one
//! is persisted before the role changes. The handshake carries epochs both
//! ways: a primary refuses a replica that knows a newer epoch than its own
//! (`-FENCED`: it has been deposed), and a replica refuses to follow a
//! primary with an older epoch. A deposed primary that is told
//! `REPLICAOF <new primary> EPOCH <n>` demotes itself and resyncs: partially
//! if its history is a prefix of the new primary's, fully otherwise.
//!
//! **Which writes a deposed primary loses.** Replication is asynchronous: a
//! write is acknowledged to its client once applied on the primary (and
//! persisted per `appendfsync`). When the primary is cut off and a replica
//! with offset `R` is promoted, every write the old primary applied past `R`
//! (acknowledged or not) exists only on the old primary; when it rejoins it
//! full-syncs from the new primary and those writes are gone. That is the
//! writes of the replication lag at the failover, plus every write the old
//! primary accepted after the failover until it learned of the new epoch.
//!
//! - `WAIT n timeout` returning `>= n` means the client's last write is on
//!   `n` replicas. The operator promotes the replica with the highest offset,
//!   so such a write survives any failover that loses fewer than `n` replicas
//!   at once. A WAIT that returns fewer (timeout) promises nothing; the write
//!   stays applied on the primary and may or may not survive.
//! - `min-replicas-to-write N` + `min-replicas-max-lag L`: the primary refuses
//!   writes (`-NOREPLICAS`) unless `N` replicas acknowledged within `L`
//!   seconds. A primary partitioned from its replicas therefore stops taking
//!   writes at most `L` seconds (plus one ack interval) after the partition,
//!   which bounds the writes a deposed primary can accept and later lose to
//!   that window; it does not make them zero. Only WAIT gives a per-write
//!   guarantee.

pub mod epoch;
pub mod payload;
pub mod primary;
pub mod replica;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast, mpsc, watch};

use crate::client::ClientHandle;
use crate::state::State;

/// A replication ID: 40 random hex characters, as Redis' `replid`.
pub fn new_replid() -> String {
    (0..40).map(|_| format!("{:x}", rand::random::<u8>() & 15)).collect()
}

/// `replid2` when there is no previous history.
pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// What `ClientHandle::repl_role` holds: how `CLIENT LIST` flags and
/// `CLIENT KILL TYPE` see a connection.
pub mod client_role {
    pub const NORMAL: u8 = 0;
    /// A replica attached to this node (flag `S`, type `replica`).
    pub const REPLICA: u8 = 1;
    /// This node's link to its primary (flag `M`, type `master`).
    pub const MASTER: u8 = 2;
}

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error("config epoch {requested} is older than this node's epoch {current}")]
    StaleEpoch { requested: u64, current: u64 },
    #[error("failed to persist the config epoch: {0}")]
    Epoch(#[from] std::io::Error),
    #[error("server is shutting down")]
    ShuttingDown,
}

/// A connected replica, as the primary sees it.
pub struct ReplicaPeer {
    pub handle: Arc<ClientHandle>,
    pub ip: String,
    pub listening_port: u16,
    /// `sender_state::*`.
    pub state: AtomicU8,
    /// Offset the replica last acknowledged.
    pub ack_offset: AtomicU64,
    /// Unix ms of the last acknowledgement.
    pub last_ack_ms: AtomicU64,
    /// The stream's write side once the replica is online (`None` before,
    /// during a full sync, and after the stream ended): shared by the sender
    /// task and the connections that push their writes through
    /// ([`primary::push_through`]); its lock orders every write to the socket.
    pub outlet: Mutex<Option<primary::Outlet>>,
}

pub mod sender_state {
    pub const WAIT_BGSAVE: u8 = 0;
    pub const SEND_BULK: u8 = 1;
    pub const ONLINE: u8 = 2;
    pub fn name(s: u8) -> &'static str {
        match s {
            WAIT_BGSAVE => "wait_bgsave",
            SEND_BULK => "send_bulk",
            _ => "online",
        }
    }
}

/// Replica-side link states, named as `ROLE` names them.
pub mod link_state {
    pub const CONNECT: u8 = 0;
    pub const CONNECTING: u8 = 1;
    pub const HANDSHAKE: u8 = 2;
    pub const SYNC: u8 = 3;
    pub const CONNECTED: u8 = 4;
    pub fn name(s: u8) -> &'static str {
        match s {
            CONNECT => "connect",
            CONNECTING => "connecting",
            HANDSHAKE => "handshake",
            SYNC => "sync",
            _ => "connected",
        }
    }
}

/// The observable state of a replica's link to its primary.
#[derive(Default)]
pub struct LinkStatus {
    pub state: AtomicU8,
    /// Unix ms of the last byte received from the primary.
    pub last_io_ms: AtomicU64,
    /// Offset of the last byte received (applied or not): `slave_read_repl_offset`.
    pub read_offset: AtomicU64,
    /// Payload bytes received so far during a full sync.
    pub sync_read_bytes: AtomicU64,
    /// Unix ms when the link last went down (0 = never up).
    pub down_since_ms: AtomicU64,
    pub last_error: Mutex<String>,
}

/// This node's primary, while it is a replica.
pub struct MasterLink {
    pub host: String,
    pub port: u16,
    pub status: Arc<LinkStatus>,
    /// Dropping this stops the link task.
    _stop: watch::Sender<()>,
}

struct Ids {
    replid: String,
    replid2: String,
    /// Redis' `second_replid_offset`: the first offset (1-based, as PSYNC
    /// counts) that `replid2`'s history does not share with ours; -1 = none.
    second_offset: i64,
}

/// What the server gives replication to spawn tasks that stop on shutdown.
/// The completion sender is held weakly: the state lives as long as the
/// tasks do, and a strong sender in it would make shutdown wait forever.
#[derive(Clone)]
pub struct Tasks {
    pub notify: broadcast::Sender<()>,
    pub done: mpsc::WeakSender<()>,
}

impl Tasks {
    /// `None` once the server is shutting down.
    pub fn shutdown(&self) -> Option<crate::server::shutdown::Shutdown> {
        let done = self.done.upgrade()?;
        Some(crate::server::shutdown::Shutdown::new(self.notify.subscribe(), done))
    }
}

#[derive(Default)]
pub struct ReplStats {
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    /// Replicas disconnected because they fell behind the backlog.
    pub backlog_disconnects: AtomicU64,
}

/// Replication state of this node, in [`State::repl`].
pub struct Repl {
    ids: Mutex<Ids>,
    master: Mutex<Option<MasterLink>>,
    /// Mirrors `master.is_some()` for the write path, which must not lock.
    is_replica: AtomicBool,
    /// A full sync is replacing the dataset: clients get `-LOADING`.
    pub loading: AtomicBool,
    pub replicas: Mutex<Vec<Arc<ReplicaPeer>>>,
    /// Signalled on every acknowledgement (WAIT).
    pub acked: Notify,
    /// Bumped to ask every sender for a `REPLCONF GETACK`.
    pub getack: AtomicU64,
    pub stats: ReplStats,
    pub epoch: epoch::Epoch,
    /// Serializes role changes with a full sync's load, so a load finishing
    /// after `REPLICAOF NO ONE` cannot bring back the old primary's history.
    pub(crate) role_lock: Mutex<()>,
    state: OnceLock<Weak<State>>,
    tasks: OnceLock<Tasks>,
}

impl Repl {
    pub fn new(epoch: epoch::Epoch) -> Repl {
        Repl {
            ids: Mutex::new(Ids {
                replid: new_replid(),
                replid2: NO_REPLID.into(),
                second_offset: -1,
            }),
            master: Mutex::new(None),
            is_replica: AtomicBool::new(false),
            loading: AtomicBool::new(false),
            replicas: Mutex::new(Vec::new()),
            acked: Notify::new(),
            getack: AtomicU64::new(0),
            stats: ReplStats::default(),
            epoch,
            role_lock: Mutex::new(()),
            state: OnceLock::new(),
            tasks: OnceLock::new(),
        }
    }

    /// Called once the server runs: lets commands spawn link tasks.
    pub fn attach(&self, state: &Arc<State>, tasks: Tasks) {
        let _ = self.state.set(Arc::downgrade(state));
        let _ = self.tasks.set(tasks);
    }

    pub fn is_replica(&self) -> bool {
        self.is_replica.load(Ordering::Relaxed)
    }

    /// (replid, replid2, second_repl_offset)
    pub fn ids(&self) -> (String, String, i64) {
        let g = self.ids.lock();
        (g.replid.clone(), g.replid2.clone(), g.second_offset)
    }

    pub fn replid(&self) -> String {
        self.ids.lock().replid.clone()
    }

    /// Set the replication ID (a snapshot loaded at startup keeps its history).
    pub fn set_replid(&self, replid: String) {
        self.ids.lock().replid = replid;
    }

    /// The primary this node follows: (host, port, link status).
    pub fn master(&self) -> Option<(String, u16, Arc<LinkStatus>)> {
        self.master
            .lock()
            .as_ref()
            .map(|m| (m.host.clone(), m.port, m.status.clone()))
    }

    /// Is `status` the link of the primary this node follows now?
    pub(crate) fn is_current(&self, status: &Arc<LinkStatus>) -> bool {
        self.master
            .lock()
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(&m.status, status))
    }

    /// Begin a new history (promotion): the old ID stays valid for partial
    /// resyncs up to where it ended, as PSYNC2's `shiftReplicationId`.
    fn shift_replid(&self, offset: u64) {
        let mut g = self.ids.lock();
        g.replid2 = std::mem::replace(&mut g.replid, new_replid());
        g.second_offset = offset as i64 + 1;
        tracing::info!(replid = %g.replid, replid2 = %g.replid2, second_offset = g.second_offset,
            "new replication ID (promoted)");
    }

    /// The primary continued us under a new ID (it was promoted since): our
    /// history up to `offset` is shared with that new ID.
    pub(crate) fn adopt_continued_id(&self, new_id: &str, offset: u64) {
        let mut g = self.ids.lock();
        if g.replid != new_id {
            g.replid2 = std::mem::replace(&mut g.replid, new_id.to_string());
            g.second_offset = offset as i64 + 1;
        }
    }

    /// A full sync gave us the primary's dataset and history.
    pub(crate) fn adopt_full_sync_id(&self, id: &str) {
        let mut g = self.ids.lock();
        g.replid = id.to_string();
        g.replid2 = NO_REPLID.into();
        g.second_offset = -1;
    }

    /// Check (and persist) a role change's epoch. `None` = a plain command
    /// without EPOCH, which leaves the epoch alone.
    pub fn accept_epoch(&self, requested: Option<u64>) -> Result<(), ReplError> {
        let Some(n) = requested else { return Ok(()) };
        let current = self.epoch.get();
        if n < current {
            return Err(ReplError::StaleEpoch { requested: n, current });
        }
        self.epoch.raise(n)?;
        Ok(())
    }

    /// `REPLICAOF NO ONE`. Returns false if this node already was a primary.
    pub fn become_primary(&self, state: &State) -> bool {
        let _g = self.role_lock.lock();
        let Some(old) = self.master.lock().take() else {
            return false;
        };
        drop(old);
        self.is_replica.store(false, Ordering::Relaxed);
        state.db.no_expire.store(false, Ordering::Relaxed);
        self.shift_replid(state.db.wlog.offset());
        // Our replicas must learn the new ID; they reconnect and continue
        // partially (PSYNC2), as Redis disconnects them here too.
        self.disconnect_replicas("this node was promoted to primary");
        tracing::info!("replication: now a primary");
        true
    }

    /// `REPLICAOF host port`. Returns false if already following that primary.
    pub fn become_replica(&self, host: &str, port: u16) -> Result<bool, ReplError> {
        let _g = self.role_lock.lock();
        if let Some(m) = self.master.lock().as_ref()
            && m.host.eq_ignore_ascii_case(host)
            && m.port == port
        {
            return Ok(false);
        }
        let (Some(state), Some(shutdown)) = (
            self.state.get().and_then(Weak::upgrade),
            self.tasks.get().and_then(Tasks::shutdown),
        ) else {
            return Err(ReplError::ShuttingDown);
        };
        let was_primary = !self.is_replica();
        self.is_replica.store(true, Ordering::Relaxed);
        state.db.no_expire.store(true, Ordering::Relaxed);
        let (stop_tx, stop_rx) = watch::channel(());
        let status = Arc::new(LinkStatus::default());
        *self.master.lock() = Some(MasterLink {
            host: host.to_string(),
            port,
            status: status.clone(),
            _stop: stop_tx,
        });
        if was_primary {
            self.disconnect_replicas("this node became a replica");
            // A client blocked on a primary (BLPOP...) must not be served by
            // the new primary's stream: popping on a replica would make it
            // differ from its primary. As Redis, unblock with an error and
            // close (a waiter that registers after this finds `is_replica`
            // set: see `cmd::serve_blocked`).
            let n = state.blocking.force_unblock(crate::blocking::ERR_ROLE_CHANGED);
            if n > 0 {
                tracing::info!(clients = n, "replication: unblocked clients blocked on keys");
            }
        }
        tracing::info!(host, port, "replication: following a new primary");
        tokio::spawn(replica::run(state, host.to_string(), port, status, stop_rx, shutdown));
        Ok(true)
    }

    /// Close every replica connection (role or history changed).
    pub fn disconnect_replicas(&self, why: &str) {
        let peers = self.replicas.lock().clone();
        for p in peers {
            tracing::info!(replica = %format!("{}:{}", p.ip, p.listening_port), why, "disconnecting replica");
            p.handle.request_kill();
        }
    }

    /// Replicas streaming (past their full sync).
    pub fn online_count(&self) -> usize {
        self.replicas
            .lock()
            .iter()
            .filter(|p| p.state.load(Ordering::Relaxed) == sender_state::ONLINE)
            .count()
    }

    /// Replicas that acknowledged offset `target` or later.
    pub fn acked_count(&self, target: u64) -> usize {
        self.replicas
            .lock()
            .iter()
            .filter(|p| {
                p.state.load(Ordering::Relaxed) == sender_state::ONLINE
                    && p.ack_offset.load(Ordering::Relaxed) >= target
            })
            .count()
    }

    /// Replicas online that acknowledged within `max_lag` seconds (Redis'
    /// `repl_good_slaves_count`).
    pub fn good_replicas(&self, max_lag: u64) -> usize {
        let now = crate::db::now_ms();
        self.replicas
            .lock()
            .iter()
            .filter(|p| {
                p.state.load(Ordering::Relaxed) == sender_state::ONLINE
                    && now.saturating_sub(p.last_ack_ms.load(Ordering::Relaxed)) <= max_lag * 1000
            })
            .count()
    }

    /// The error a client write must get now, if any: `-READONLY` on a
    /// read-only replica, `-NOREPLICAS` on a primary without enough good
    /// replicas.
    pub fn refuse_write(&self, state: &State) -> Option<&'static str> {
        if self.is_replica() {
            if state.config.replica_read_only.load(Ordering::Relaxed) {
                return Some("READONLY You can't write against a read only replica.");
            }
            return None;
        }
        let min = state.config.min_replicas_to_write.load(Ordering::Relaxed);
        if min > 0 {
            let lag = state.config.min_replicas_max_lag.load(Ordering::Relaxed);
            if (self.good_replicas(lag) as u64) < min {
                return Some("NOREPLICAS Not enough good replicas to write.");
            }
        }
        None
    }

    /// `INFO replication`, with Redis' field names.
    pub fn info_fields(&self, state: &State) -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| f.push((k.to_string(), v));
        let now = crate::db::now_ms();
        let offset = state.db.wlog.offset();
        match self.master() {
            None => put("role", "master".into()),
            Some((host, port, st)) => {
                put("role", "slave".into());
                put("master_host", host);
                put("master_port", port.to_string());
                let ls = st.state.load(Ordering::Relaxed);
                let up = ls == link_state::CONNECTED;
                put("master_link_status", if up { "up" } else { "down" }.into());
                let last_io = st.last_io_ms.load(Ordering::Relaxed);
                let ago = if last_io == 0 {
                    -1
                } else {
                    (now.saturating_sub(last_io) / 1000) as i64
                };
                put("master_last_io_seconds_ago", ago.to_string());
                put("master_sync_in_progress", u8::from(ls == link_state::SYNC).to_string());
                put(
                    "slave_read_repl_offset",
                    st.read_offset.load(Ordering::Relaxed).max(offset).to_string(),
                );
                put("slave_repl_offset", offset.to_string());
                if ls == link_state::SYNC {
                    put("master_sync_total_bytes", "-1".into());
                    put(
                        "master_sync_read_bytes",
                        st.sync_read_bytes.load(Ordering::Relaxed).to_string(),
                    );
                }
                if !up {
                    let since = st.down_since_ms.load(Ordering::Relaxed);
                    let secs = if since == 0 {
                        -1
                    } else {
                        (now.saturating_sub(since) / 1000) as i64
                    };
                    put("master_link_down_since_seconds", secs.to_string());
                    let err = st.last_error.lock().clone();
                    if !err.is_empty() {
                        // Why the link is down, for operators (not a Redis field).
                        put("ferrokv_master_link_error", err.replace(['\r', '\n'], " "));
                    }
                }
                put("slave_priority", "100".into());
                let ro = state.config.replica_read_only.load(Ordering::Relaxed);
                put("slave_read_only", u8::from(ro).to_string());
                put("replica_announced", "1".into());
            }
        }
        let peers = self.replicas.lock().clone();
        put("connected_slaves", peers.len().to_string());
        if !self.is_replica() {
            let min = state.config.min_replicas_to_write.load(Ordering::Relaxed);
            if min > 0 {
                let lag = state.config.min_replicas_max_lag.load(Ordering::Relaxed);
                put("min_slaves_good_slaves", self.good_replicas(lag).to_string());
            }
        }
        for (i, p) in peers.iter().enumerate() {
            let lag = now.saturating_sub(p.last_ack_ms.load(Ordering::Relaxed)) / 1000;
            put(
                &format!("slave{i}"),
                format!(
                    "ip={},port={},state={},offset={},lag={}",
                    p.ip,
                    p.listening_port,
                    sender_state::name(p.state.load(Ordering::Relaxed)),
                    p.ack_offset.load(Ordering::Relaxed),
                    lag
                ),
            );
        }
        let (replid, replid2, second) = self.ids();
        put("master_failover_state", "no-failover".into());
        put("master_replid", replid);
        put("master_replid2", replid2);
        put("master_repl_offset", offset.to_string());
        put("second_repl_offset", second.to_string());
        put(
            "repl_backlog_active",
            u8::from(state.db.wlog.keeps_backlog()).to_string(),
        );
        put("repl_backlog_size", state.db.wlog.backlog_cap().to_string());
        put(
            "repl_backlog_first_byte_offset",
            (state.db.wlog.backlog_start() + 1).to_string(),
        );
        put("repl_backlog_histlen", state.db.wlog.backlog_len().to_string());
        put("ferrokv_config_epoch", self.epoch.get().to_string());
        f
    }
}

/// Per-connection replication state (in [`crate::session::Session`]).
#[derive(Default)]
pub struct SessionRepl {
    /// `REPLCONF listening-port`.
    pub listening_port: Option<u16>,
    /// `REPLCONF epoch`: the epoch the connecting replica knows.
    pub peer_epoch: Option<u64>,
    /// Set by PSYNC/SYNC: the connection becomes a replica stream.
    pub psync: Option<primary::PsyncPlan>,
    /// Set by WAIT: the connection waits for acknowledgements before replying.
    pub wait: Option<primary::WaitRequest>,
    /// This session applies the primary's stream on a replica: it may write
    /// on a read-only replica, its commands are not logged again, and keys
    /// are not expired by this node's clock.
    pub master: bool,
    /// Exact bytes of the primary's stream to relay into this node's write
    /// log when the current command's log is flushed (under its locks).
    pub relay: Option<Vec<u8>>,
}

/// Start the background parts of replication: the backlog size follower
/// and, with `--replicaof`, the link to the primary.
pub fn start(state: &Arc<State>, tasks: Tasks, replicaof: Option<(String, u16)>) -> Result<(), ReplError> {
    state.repl.attach(state, tasks.clone());
    state
        .db
        .wlog
        .set_backlog_cap(state.config.repl_backlog_size.load(Ordering::Relaxed) as usize);
    if let Some((host, port)) = replicaof {
        state.repl.become_replica(&host, port)?;
    }
    if let Some(shutdown) = tasks.shutdown() {
        tokio::spawn(cron(state.clone(), shutdown));
    }
    Ok(())
}

/// Once a second: follow `CONFIG SET repl-backlog-size` (the config table
/// cannot reach the write log).
async fn cron(state: Arc<State>, mut shutdown: crate::server::shutdown::Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        let want = state.config.repl_backlog_size.load(Ordering::Relaxed) as usize;
        if want != state.db.wlog.backlog_cap() {
            state.db.wlog.set_backlog_cap(want);
        }
    }
}
