//! Server-wide shared state: the keyspace, configuration, clients, pub/sub,
//! blocked clients, WATCHed keys and statistics. One `Arc<State>` is shared
//! by every connection task and background job.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::blocking::Blocking;
use crate::client::Clients;
use crate::config::Config;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::pubsub::PubSub;

pub use crate::counter::{CmdStat, CmdTotals};
use crate::counter::{CommandStats, Counter};

/// Server statistics (`INFO stats`, `/metrics`). The counters bumped on
/// every command are sharded per thread ([`crate::counter`]).
pub struct Stats {
    pub total_connections_received: AtomicU64,
    pub total_commands_processed: Counter,
    pub rejected_connections: AtomicU64,
    pub keyspace_hits: Counter,
    pub keyspace_misses: Counter,
    pub net_input_bytes: Counter,
    pub net_output_bytes: Counter,
    pub total_error_replies: AtomicU64,
    pub pubsub_overflow_disconnects: AtomicU64,
    /// Indexed by the command's table id.
    pub commands: CommandStats,
    /// Error replies by prefix (`INFO errorstats`).
    pub errors: Mutex<HashMap<String, u64>>,
}

/// One SLOWLOG entry.
#[derive(Clone)]
pub struct SlowEntry {
    pub id: u64,
    pub time: u64,
    pub micros: u64,
    pub args: Vec<Bytes>,
    pub addr: String,
    pub name: String,
}

/// Samples kept per latency event, as Redis' `LATENCY_TS_LEN`.
pub const LATENCY_SAMPLES: usize = 160;

/// One latency event's history (`LATENCY HISTORY`): at most one sample per
/// second (the worst one), the newest last, plus the all-time maximum.
#[derive(Default, Clone)]
pub struct LatencyEvent {
    /// (unix seconds, milliseconds)
    pub samples: VecDeque<(u64, u64)>,
    pub max: u64,
}

/// The latency monitor (`LATENCY LATEST/HISTORY/RESET`). Events are only
/// recorded when `latency-monitor-threshold` is above zero, so the map's lock
/// is taken only by commands that were already slow.
#[derive(Default)]
pub struct Latency {
    pub events: Mutex<std::collections::BTreeMap<&'static str, LatencyEvent>>,
}

impl Latency {
    /// Record `ms` for `event` now.
    pub fn add(&self, event: &'static str, ms: u64) {
        let now = crate::db::now_ms() / 1000;
        let mut events = self.events.lock();
        let ev = events.entry(event).or_default();
        ev.max = ev.max.max(ms);
        match ev.samples.back_mut() {
            Some((t, m)) if *t == now => *m = (*m).max(ms),
            _ => {
                ev.samples.push_back((now, ms));
                if ev.samples.len() > LATENCY_SAMPLES {
                    ev.samples.pop_front();
                }
            }
        }
    }
}

#[derive(Default)]
pub struct SlowLog {
    pub next_id: AtomicU64,
    pub entries: Mutex<VecDeque<SlowEntry>>,
}

/// Keys watched by clients in a MULTI (WATCH). A write to a watched key sets
/// the watchers' dirty flags; EXEC then aborts.
#[derive(Default)]
pub struct Watches {
    count: AtomicUsize,
    map: Mutex<HashMap<Bytes, Vec<Arc<AtomicBool>>>>,
}

impl Watches {
    pub fn watch(&self, key: Bytes, flag: &Arc<AtomicBool>) {
        let mut m = self.map.lock();
        let v = m.entry(key).or_default();
        if !v.iter().any(|f| Arc::ptr_eq(f, flag)) {
            v.push(flag.clone());
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn unwatch(&self, keys: &[Bytes], flag: &Arc<AtomicBool>) {
        let mut m = self.map.lock();
        for k in keys {
            if let Some(v) = m.get_mut(k) {
                let before = v.len();
                v.retain(|f| !Arc::ptr_eq(f, flag));
                self.count.fetch_sub(before - v.len(), Ordering::Relaxed);
                if v.is_empty() {
                    m.remove(k);
                }
            }
        }
    }

    /// A key was modified.
    pub fn touch(&self, key: &[u8]) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(v) = self.map.lock().get(key) {
            for f in v {
                f.store(true, Ordering::Release);
            }
        }
    }

    /// FLUSHALL/FLUSHDB: every watched key for which `exists` holds is
    /// modified. As Redis 7.0's `touchAllWatchedKeysInDb`, a watched key
    /// that was not there is not touched by emptying the keyspace.
    pub fn touch_existing(&self, mut exists: impl FnMut(&[u8]) -> bool) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        for (k, v) in self.map.lock().iter() {
            if exists(k) {
                for f in v {
                    f.store(true, Ordering::Release);
                }
            }
        }
    }

    pub fn watched_keys(&self) -> usize {
        self.map.lock().len()
    }
}

pub struct State {
    pub db: Db,
    pub config: Config,
    pub clients: Clients,
    pub pubsub: PubSub,
    pub blocking: Blocking,
    pub watches: Watches,
    pub stats: Stats,
    pub slowlog: SlowLog,
    pub metrics: Metrics,
    pub started: Instant,
    /// 40 hex characters, new every start, as Redis' run_id.
    pub run_id: String,
    /// Actual bound client port (differs from config when it was 0).
    pub port: AtomicU64,
    pub ready: AtomicBool,
    pub latency: Latency,
    /// Highest `used_memory` seen (INFO memory `used_memory_peak`).
    pub mem_peak: AtomicU64,
    /// Replication: role, replication IDs, replicas, config epoch.
    pub repl: crate::repl::Repl,
    /// The append-only log (group commit, MISCONF, INFO).
    pub aof: crate::persist::aof::Aof,
    /// Snapshot bookkeeping: changes since the last save, BGSAVE status.
    pub saves: crate::persist::save::SaveState,
    /// This state's own `Arc`, for commands that start background work
    /// outliving the command (BGSAVE's snapshot thread).
    pub this: std::sync::Weak<State>,
    /// Cluster mode (off unless `--cluster-enabled yes`): identity, the held
    /// topology, routing.
    pub cluster: crate::cluster::Cluster,
    /// Connection threads: how many exist and how many take connections.
    pub io_threads: crate::server::threads::Counts,
    /// `SHUTDOWN` asks here; the process that runs the server stops it.
    pub stop: crate::server::shutdown::StopRequest,
    /// Lua scripting: the interpreter, the script cache, the running script.
    pub scripts: crate::script::Scripts,
}

impl AsRef<Db> for State {
    fn as_ref(&self) -> &Db {
        &self.db
    }
}

/// Tell the keyspace whether to record the keys commands create (the `new`
/// keyspace event), after `notify-keyspace-events` changed.
pub fn sync_notify(db: &Db, config: &Config) {
    use crate::notify::{KEYEVENT, KEYSPACE, NEW};
    let f = config.notify_flags.load(Ordering::Relaxed);
    db.record_new
        .store(f & NEW != 0 && f & (KEYSPACE | KEYEVENT) != 0, Ordering::Relaxed);
}

impl State {
    pub fn new(db: Db, config: Config) -> Arc<State> {
        Self::with_repl(
            db,
            config,
            crate::repl::Repl::new(crate::repl::epoch::Epoch::in_memory()),
        )
    }

    /// A state whose replication keeps its config epoch where `repl` says.
    pub fn with_repl(db: Db, config: Config, repl: crate::repl::Repl) -> Arc<State> {
        let n = crate::cmd::table().len();
        sync_notify(&db, &config);
        let run_id: String = (0..40).map(|_| format!("{:x}", rand::random::<u8>() & 15)).collect();
        Arc::new_cyclic(|this| State {
            db,
            port: AtomicU64::new(config.port as u64),
            config,
            clients: Clients::default(),
            pubsub: PubSub::default(),
            blocking: Blocking::default(),
            watches: Watches::default(),
            stats: Stats {
                total_connections_received: AtomicU64::new(0),
                total_commands_processed: Counter::default(),
                rejected_connections: AtomicU64::new(0),
                keyspace_hits: Counter::default(),
                keyspace_misses: Counter::default(),
                net_input_bytes: Counter::default(),
                net_output_bytes: Counter::default(),
                total_error_replies: AtomicU64::new(0),
                pubsub_overflow_disconnects: AtomicU64::new(0),
                commands: CommandStats::new(n),
                errors: Mutex::new(HashMap::new()),
            },
            slowlog: SlowLog::default(),
            metrics: Metrics::new(),
            started: Instant::now(),
            run_id,
            ready: AtomicBool::new(false),
            latency: Latency::default(),
            mem_peak: AtomicU64::new(0),
            repl,
            aof: Default::default(),
            saves: crate::persist::save::SaveState::default(),
            this: this.clone(),
            cluster: crate::cluster::Cluster::default(),
            io_threads: Default::default(),
            stop: Default::default(),
            scripts: Default::default(),
        })
    }

    /// Publish to a channel, disconnecting subscribers that cannot keep up.
    pub fn publish(&self, channel: &Bytes, payload: &Bytes) -> usize {
        let (n, overflowed) = self.pubsub.publish(channel, payload);
        self.kill_overflowed(overflowed);
        n
    }

    pub fn kill_overflowed(&self, ids: Vec<u64>) {
        for id in ids {
            if let Some(c) = self.clients.get(id) {
                tracing::warn!(client = id, "pub/sub queue full, disconnecting slow subscriber");
                self.stats.pubsub_overflow_disconnects.fetch_add(1, Ordering::Relaxed);
                c.request_kill();
            }
        }
    }

    /// Emit a keyspace notification if its class is enabled.
    pub fn notify(&self, class: u32, event: &str, key: &[u8]) {
        let flags = self.config.notify_flags.load(Ordering::Relaxed);
        if flags & class == 0 {
            return;
        }
        if flags & crate::notify::KEYSPACE != 0 {
            let mut ch = Vec::with_capacity(15 + key.len());
            ch.extend_from_slice(b"__keyspace@0__:");
            ch.extend_from_slice(key);
            self.publish(&Bytes::from(ch), &Bytes::copy_from_slice(event.as_bytes()));
        }
        if flags & crate::notify::KEYEVENT != 0 {
            let ch = format!("__keyevent@0__:{event}");
            self.publish(&Bytes::from(ch), &Bytes::copy_from_slice(key));
        }
    }
}
