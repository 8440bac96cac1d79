//! Configuration: command-line flags (clap), an optional Redis-style config
//! file (`directive value` per line), and the runtime parameters that
//! `CONFIG GET/SET` read and change.
//!
//! Parameters that the hot path reads are atomics, so `CONFIG SET` takes
//! effect immediately without any lock on the command path.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::db::evict::{EvictionConfig, Policy};
use crate::db::limits::{Limit, SharedLimits};
use crate::notify;
use crate::persist::aof::Fsync;

/// Flags of `ferrokv-node serve` (also accepted without the subcommand).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Redis-style config file (`port 6379`, `maxmemory 1gb`, ...); flags given
    /// on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Addresses to listen on (repeat or space-separate for several).
    #[arg(long, value_delimiter = ' ', num_args = 1..)]
    pub bind: Option<Vec<String>>,
    /// Client port (0 picks a free port and prints it).
    #[arg(long)]
    pub port: Option<u16>,
    /// Admin HTTP port for /metrics, /healthz and /readyz (off when absent).
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// Password clients must send with AUTH (or HELLO ... AUTH).
    #[arg(long, env = "FERROKV_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Memory limit for the dataset (e.g. 100mb, 2gb; 0 = no limit).
    #[arg(long)]
    pub maxmemory: Option<String>,
    /// What to do at the memory limit: noeviction, allkeys-lru, allkeys-lfu,
    /// allkeys-random, volatile-lru, volatile-lfu, volatile-ttl, volatile-random.
    #[arg(long)]
    pub maxmemory_policy: Option<String>,
    /// Keys sampled per eviction.
    #[arg(long)]
    pub maxmemory_samples: Option<u8>,
    /// Maximum simultaneous client connections.
    #[arg(long)]
    pub maxclients: Option<usize>,
    /// Close connections idle for this many seconds (0 = never).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Keyspace notification classes, as Redis' notify-keyspace-events (e.g. KEA).
    #[arg(long)]
    pub notify_keyspace_events: Option<String>,
    /// Largest bulk string a client may send, in bytes (e.g. 512mb).
    #[arg(long)]
    pub proto_max_bulk_len: Option<String>,
    /// Commands slower than this many microseconds go to the SLOWLOG (-1 = off).
    #[arg(long)]
    pub slowlog_log_slower_than: Option<i64>,
    /// Entries kept in the SLOWLOG.
    #[arg(long)]
    pub slowlog_max_len: Option<usize>,
    /// Connection threads (default: the cores this process may use, counting
    /// its CPU affinity and cgroup CPU quota rounded down, so a container
    /// limited to less than 2 CPUs gets 1). Each serves its connections from
    /// read to reply and sleeps in epoll_wait between batches, as a Redis
    /// process does; SAVE and other blocking commands hold up the clients of
    /// the thread they run on.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Start with one active connection thread and add or retire threads as
    /// the load and the free cores require (yes, the default), or keep all
    /// `--threads` taking connections (no). INFO's `io_threads_active`
    /// shows how many take them.
    #[arg(long, value_name = "yes|no")]
    pub adaptive_threads: Option<String>,
    /// Let a connection thread poll its sockets for a few microseconds
    /// after serving a request instead of going to sleep in epoll_wait at
    /// once: `auto` (the default) does so only while unpipelined requests
    /// keep it busy and other processes leave it a whole core (never under
    /// a CPU limit that the polling would eat into); `yes` whenever it has
    /// just served a request; `no` never. INFO's `ferrokv_io_threads_polling` shows
    /// how many threads poll.
    #[arg(long, value_name = "auto|yes|no")]
    pub busy_poll: Option<String>,
    /// Data directory: the snapshot file, the append-only log, the cluster
    /// state file and the persisted config epoch (`config-epoch`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Snapshot file name inside --dir.
    #[arg(long, value_name = "NAME")]
    pub dbfilename: Option<String>,
    /// Snapshot schedule as in Redis: "<seconds> <changes>" pairs, e.g.
    /// "3600 1 300 100 60 10000" (save after 3600 s if 1 key changed, ...);
    /// "" turns it off (the default).
    #[arg(long, value_name = "POINTS")]
    pub save: Option<String>,
    /// Cluster mode: `yes` to serve slots from a pushed topology
    /// (`CLUSTER SETTOPOLOGY`) and redirect clients with `-MOVED`.
    #[arg(long, value_name = "yes|no")]
    pub cluster_enabled: Option<String>,
    /// Cluster state file (node ID and held topology), relative to `--dir`.
    #[arg(long, value_name = "FILE")]
    pub cluster_config_file: Option<String>,
    /// Start as a replica of this primary: `--replicaof HOST PORT`.
    #[arg(long, num_args = 2, value_names = ["HOST", "PORT"])]
    pub replicaof: Option<Vec<String>>,
    /// Bytes of write log kept for replicas that reconnect (partial resync), e.g. 1mb.
    #[arg(long)]
    pub repl_backlog_size: Option<String>,
    /// Password this node sends (AUTH) to its primary.
    #[arg(long, env = "FERROKV_MASTERAUTH", hide_env_values = true)]
    pub masterauth: Option<String>,
    /// Replicas refuse writes from clients (yes) or apply them locally only (no).
    #[arg(long)]
    pub replica_read_only: Option<String>,
    /// Refuse writes unless this many replicas acknowledged within min-replicas-max-lag (0 = off).
    #[arg(long)]
    pub min_replicas_to_write: Option<u64>,
    /// Seconds within which a replica must have acknowledged to count for min-replicas-to-write.
    #[arg(long)]
    pub min_replicas_max_lag: Option<u64>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: String,
    /// Log every write to the append-only log (yes/no).
    #[arg(long)]
    pub appendonly: Option<String>,
    /// When the append-only log is fsynced: always (before replying),
    /// everysec, or no (left to the OS).
    #[arg(long)]
    pub appendfsync: Option<String>,
    /// Name of the append-only log directory under --dir.
    #[arg(long)]
    pub appenddirname: Option<String>,
    /// Start even if the log ends with a torn record: truncate it (and say how
    /// many bytes were dropped). Corruption elsewhere is never repaired.
    #[arg(long)]
    pub repair_log: bool,
    /// Rotate to a new log segment when the current one reaches this size (e.g. 64mb).
    #[arg(long)]
    pub aof_segment_size: Option<String>,
    /// Rotate to a new log segment after this many seconds (0 = only by size).
    #[arg(long)]
    pub aof_segment_seconds: Option<u64>,
}

/// A parse error for a configuration value, worded as Redis words them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("argument couldn't be parsed into an integer")]
    Integer,
    #[error("argument must be a memory value")]
    Memory,
    #[error("invalid argument '{0}'")]
    Invalid(String),
    #[error("argument must be between {0} and {1} inclusive")]
    Range(i64, i64),
    #[error("unknown option or number of arguments for CONFIG SET - '{0}'")]
    Unknown(String),
    #[error("failed to read config file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("config file {path} line {line}: {msg}")]
    FileLine { path: PathBuf, line: usize, msg: String },
}

/// Parse a memory amount as Redis does (`1gb`, `100mb`, `10k`, plain bytes).
pub fn parse_memory(s: &str) -> Result<u64, ConfigError> {
    let l = s.trim().to_ascii_lowercase();
    let (num, mul) = [
        ("gb", 1u64 << 30),
        ("mb", 1 << 20),
        ("kb", 1 << 10),
        ("g", 1_000_000_000),
        ("m", 1_000_000),
        ("k", 1000),
        ("b", 1),
    ]
    .iter()
    .find(|(suf, _)| l.ends_with(suf))
    .map(|(suf, m)| (&l[..l.len() - suf.len()], *m))
    .unwrap_or((&l[..], 1));
    let n: u64 = num.parse().map_err(|_| ConfigError::Memory)?;
    n.checked_mul(mul).ok_or(ConfigError::Memory)
}

/// `--busy-poll`: when an idle connection thread polls instead of sleeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyPoll {
    Auto,
    Yes,
    No,
}

impl BusyPoll {
    fn parse(v: &str) -> Result<BusyPoll, ConfigError> {
        match v.to_ascii_lowercase().as_str() {
            "auto" => Ok(BusyPoll::Auto),
            "yes" => Ok(BusyPoll::Yes),
            "no" => Ok(BusyPoll::No),
            _ => Err(ConfigError::Invalid(v.to_string())),
        }
    }
}

/// A Redis-style boolean (`yes`/`no`).
fn parse_yes_no(v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(ConfigError::Invalid(v.to_string())),
    }
}

/// Runtime configuration shared by all connections.
pub struct Config {
    pub bind: Vec<String>,
    pub port: u16,
    pub admin_port: Option<u16>,
    pub threads: Option<usize>,
    /// See [`ServeArgs::adaptive_threads`].
    pub adaptive_threads: bool,
    /// See [`ServeArgs::busy_poll`].
    pub busy_poll: BusyPoll,
    pub requirepass: RwLock<Option<Bytes>>,
    pub maxmemory: AtomicU64,
    pub maxclients: AtomicUsize,
    pub timeout: AtomicU64,
    pub notify_flags: AtomicU32,
    pub proto_max_bulk_len: AtomicI64,
    pub slowlog_log_slower_than: AtomicI64,
    pub slowlog_max_len: AtomicUsize,
    pub config_file: Option<PathBuf>,
    /// Milliseconds above which the latency monitor records an event (0 = off).
    pub latency_monitor_threshold: AtomicU64,
    /// `--dir` / `dir` when given explicitly: where the config epoch is
    /// persisted (without it the epoch lives in memory, so throwaway nodes
    /// and tests never share an epoch through the working directory).
    pub epoch_dir: Option<PathBuf>,
    /// `--replicaof` / `replicaof` directive: the primary to follow at start.
    pub replicaof: Option<(String, u16)>,
    /// Wanted backlog size; the replication cron applies it to the write log.
    pub repl_backlog_size: AtomicU64,
    pub masterauth: RwLock<Option<String>>,
    pub replica_read_only: std::sync::atomic::AtomicBool,
    pub min_replicas_to_write: AtomicU64,
    pub min_replicas_max_lag: AtomicU64,
    /// `appendonly` as configured; [`crate::persist::apply_config`] starts or
    /// stops the log to match.
    pub appendonly: AtomicBool,
    /// `appendfsync` ([`crate::persist::aof::Fsync`] as u8).
    pub appendfsync: AtomicU8,
    /// Automatic BGREWRITEAOF: when the log has grown by this percentage
    /// since the last rewrite (0 = off) and is at least the minimum size.
    pub auto_aof_rewrite_percentage: AtomicU64,
    pub auto_aof_rewrite_min_size: AtomicU64,
    /// Where snapshots go (`dir`), and their file name (`dbfilename`).
    pub dir: RwLock<PathBuf>,
    pub dbfilename: RwLock<String>,
    /// Save points (seconds, changes): BGSAVE when at least `changes`
    /// changes are unsaved and the last save is `seconds` old. Empty: off.
    pub save_points: RwLock<Vec<(u64, u64)>>,
    pub cluster_enabled: bool,
    /// Cluster state file (node ID, held topology) inside `dir`.
    pub cluster_config_file: String,
    /// Encoding thresholds (`hash-max-listpack-entries`, ...).
    pub limits: SharedLimits,
    /// `list-max-listpack-size`: kept and reported for redis.conf
    /// compatibility only. In Redis it sizes a quicklist's nodes, which
    /// nothing but memory use shows (7.0 reports every list as `quicklist`);
    /// ferrokv's list has no such nodes ([`crate::db::list`]).
    pub list_max_listpack_size: AtomicI64,
    /// DEL frees big values in the background, as UNLINK.
    pub lazyfree_lazy_user_del: AtomicBool,
    /// FLUSHALL/FLUSHDB without an argument are ASYNC.
    pub lazyfree_lazy_user_flush: AtomicBool,
    /// Largest sparse HyperLogLog before it turns dense.
    pub hll_sparse_max_bytes: AtomicU64,
    /// `busy-reply-threshold` (`lua-time-limit`), ms: after this long a
    /// running script makes other clients' commands answer `-BUSY` and
    /// becomes killable with SCRIPT KILL (0: never).
    pub busy_reply_threshold: AtomicU64,
}

/// Parse Redis' `save` value: pairs of seconds and changes, or "" for none.
pub fn parse_save_points(v: &str) -> Result<Vec<(u64, u64)>, ConfigError> {
    let words: Vec<&str> = v.split_whitespace().collect();
    if !words.len().is_multiple_of(2) {
        return Err(ConfigError::Invalid(v.to_string()));
    }
    words
        .chunks(2)
        .map(|c| match (c[0].parse(), c[1].parse()) {
            (Ok(secs), Ok(changes)) => Ok((secs, changes)),
            _ => Err(ConfigError::Invalid(v.to_string())),
        })
        .collect()
}

impl Config {
    /// Path of the snapshot file (`dir`/`dbfilename`).
    pub fn snapshot_path(&self) -> PathBuf {
        self.dir.read().join(&*self.dbfilename.read())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: vec!["127.0.0.1".into()],
            port: 6379,
            admin_port: None,
            threads: None,
            adaptive_threads: true,
            busy_poll: BusyPoll::Auto,
            requirepass: RwLock::new(None),
            maxmemory: AtomicU64::new(0),
            maxclients: AtomicUsize::new(10000),
            timeout: AtomicU64::new(0),
            notify_flags: AtomicU32::new(0),
            proto_max_bulk_len: AtomicI64::new(512 * 1024 * 1024),
            slowlog_log_slower_than: AtomicI64::new(10000),
            slowlog_max_len: AtomicUsize::new(128),
            config_file: None,
            latency_monitor_threshold: AtomicU64::new(0),
            epoch_dir: None,
            replicaof: None,
            repl_backlog_size: AtomicU64::new(crate::wlog::DEFAULT_BACKLOG as u64),
            masterauth: RwLock::new(None),
            replica_read_only: std::sync::atomic::AtomicBool::new(true),
            min_replicas_to_write: AtomicU64::new(0),
            min_replicas_max_lag: AtomicU64::new(10),
            appendonly: AtomicBool::new(false),
            appendfsync: AtomicU8::new(Fsync::EverySec as u8),
            auto_aof_rewrite_percentage: AtomicU64::new(100),
            auto_aof_rewrite_min_size: AtomicU64::new(64 << 20),
            dir: RwLock::new(PathBuf::from(".")),
            dbfilename: RwLock::new("dump.fkv".into()),
            save_points: RwLock::new(Vec::new()),
            cluster_enabled: false,
            cluster_config_file: "nodes.json".into(),
            limits: SharedLimits::default(),
            list_max_listpack_size: AtomicI64::new(-2),
            lazyfree_lazy_user_del: AtomicBool::new(false),
            lazyfree_lazy_user_flush: AtomicBool::new(false),
            hll_sparse_max_bytes: AtomicU64::new(3000),
            busy_reply_threshold: AtomicU64::new(5000),
        }
    }
}

type Getter = fn(&Config, &EvictionConfig) -> String;
type Setter = fn(&Config, &EvictionConfig, &str) -> Result<(), ConfigError>;

/// One `CONFIG GET/SET` parameter.
pub struct Param {
    pub name: &'static str,
    pub get: Getter,
    /// `None` for parameters that can only be set at startup.
    pub set: Option<Setter>,
}

fn int<T: std::str::FromStr>(v: &str) -> Result<T, ConfigError> {
    v.parse().map_err(|_| ConfigError::Integer)
}

/// Every parameter this server knows, in the order `CONFIG GET *` lists them.
pub static PARAMS: &[Param] = &[
    Param {
        name: "bind",
        get: |c, _| c.bind.join(" "),
        set: None,
    },
    Param {
        name: "port",
        get: |c, _| c.port.to_string(),
        set: None,
    },
    Param {
        name: "requirepass",
        get: |c, _| {
            c.requirepass
                .read()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        },
        set: Some(|c, _, v| {
            *c.requirepass.write() = if v.is_empty() {
                None
            } else {
                Some(Bytes::copy_from_slice(v.as_bytes()))
            };
            Ok(())
        }),
    },
    Param {
        name: "maxmemory",
        get: |c, _| c.maxmemory.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.maxmemory.store(parse_memory(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-policy",
        get: |_, e| e.policy().name().to_string(),
        set: Some(|_, e, v| {
            e.set_policy(Policy::parse(v).ok_or_else(|| ConfigError::Invalid(v.to_string()))?);
            Ok(())
        }),
    },
    Param {
        name: "maxmemory-samples",
        get: |_, e| e.samples.load(Ordering::Relaxed).to_string(),
        set: Some(|_, e, v| {
            let n: u8 = int(v)?;
            if n == 0 || n > 64 {
                return Err(ConfigError::Invalid(v.to_string()));
            }
            e.samples.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "maxclients",
        get: |c, _| c.maxclients.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.maxclients.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "timeout",
        get: |c, _| c.timeout.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.timeout.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "notify-keyspace-events",
        get: |c, _| notify::flags_to_string(c.notify_flags.load(Ordering::Relaxed)),
        set: Some(|c, _, v| {
            let f = notify::parse_flags(v).ok_or_else(|| ConfigError::Invalid(v.to_string()))?;
            c.notify_flags.store(f, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "proto-max-bulk-len",
        get: |c, _| c.proto_max_bulk_len.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            let n = parse_memory(v)?;
            if n < 1024 * 1024 {
                return Err(ConfigError::Invalid(v.to_string()));
            }
            c.proto_max_bulk_len
                .store(n.min(i64::MAX as u64) as i64, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "slowlog-log-slower-than",
        get: |c, _| c.slowlog_log_slower_than.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.slowlog_log_slower_than.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "slowlog-max-len",
        get: |c, _| c.slowlog_max_len.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.slowlog_max_len.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "latency-monitor-threshold",
        get: |c, _| c.latency_monitor_threshold.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.latency_monitor_threshold.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "repl-backlog-size",
        get: |c, _| c.repl_backlog_size.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            let n = parse_memory(v)?;
            if n == 0 {
                return Err(ConfigError::Invalid(v.to_string()));
            }
            c.repl_backlog_size.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "masterauth",
        get: |c, _| c.masterauth.read().clone().unwrap_or_default(),
        set: Some(|c, _, v| {
            *c.masterauth.write() = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        }),
    },
    Param {
        name: "replica-read-only",
        get: |c, _| yes_no(c.replica_read_only.load(Ordering::Relaxed)),
        set: Some(|c, _, v| {
            c.replica_read_only.store(parse_yes_no(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "min-replicas-to-write",
        get: |c, _| c.min_replicas_to_write.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.min_replicas_to_write.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "min-replicas-max-lag",
        get: |c, _| c.min_replicas_max_lag.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.min_replicas_max_lag.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "save",
        get: |c, _| {
            let points = c.save_points.read();
            let words: Vec<String> = points.iter().map(|(s, n)| format!("{s} {n}")).collect();
            words.join(" ")
        },
        set: Some(|c, _, v| {
            *c.save_points.write() = parse_save_points(v)?;
            Ok(())
        }),
    },
    Param {
        name: "dir",
        get: |c, _| {
            let d = c.dir.read();
            // Redis reports the absolute working directory.
            std::fs::canonicalize(&*d)
                .unwrap_or_else(|_| d.clone())
                .to_string_lossy()
                .into_owned()
        },
        set: Some(|c, _, v| {
            let p = PathBuf::from(v);
            if !p.is_dir() {
                return Err(ConfigError::Invalid(format!("{v}: not a directory")));
            }
            *c.dir.write() = p;
            Ok(())
        }),
    },
    Param {
        name: "dbfilename",
        get: |c, _| c.dbfilename.read().clone(),
        set: Some(|c, _, v| {
            // As Redis: a plain file name, so a client cannot write elsewhere.
            if v.is_empty() || v.contains('/') || v == "." || v == ".." {
                return Err(ConfigError::Invalid(
                    "dbfilename can't be a path, just a filename".into(),
                ));
            }
            *c.dbfilename.write() = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "appendonly",
        get: |c, _| yes_no(c.appendonly.load(Ordering::Relaxed)),
        set: Some(|c, _, v| {
            c.appendonly.store(parse_yes_no(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "auto-aof-rewrite-percentage",
        get: |c, _| c.auto_aof_rewrite_percentage.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.auto_aof_rewrite_percentage.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "auto-aof-rewrite-min-size",
        get: |c, _| c.auto_aof_rewrite_min_size.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.auto_aof_rewrite_min_size.store(parse_memory(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "appendfsync",
        get: |c, _| Fsync::from_u8(c.appendfsync.load(Ordering::Relaxed)).name().into(),
        set: Some(|c, _, v| {
            let f = Fsync::parse(v).ok_or_else(|| ConfigError::Invalid(v.to_string()))?;
            c.appendfsync.store(f as u8, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "databases",
        get: |_, _| "1".into(),
        set: None,
    },
    Param {
        name: "hash-max-listpack-entries",
        get: |c, _| c.limits.get(Limit::HashEntries).to_string(),
        set: Some(|c, _, v| set_limit(c, Limit::HashEntries, count(v)?)),
    },
    Param {
        name: "hash-max-listpack-value",
        get: |c, _| c.limits.get(Limit::HashValue).to_string(),
        set: Some(|c, _, v| set_limit(c, Limit::HashValue, bytes_limit(v)?)),
    },
    Param {
        name: "zset-max-listpack-entries",
        get: |c, _| c.limits.get(Limit::ZSetEntries).to_string(),
        set: Some(|c, _, v| set_limit(c, Limit::ZSetEntries, count(v)?)),
    },
    Param {
        name: "zset-max-listpack-value",
        get: |c, _| c.limits.get(Limit::ZSetValue).to_string(),
        set: Some(|c, _, v| set_limit(c, Limit::ZSetValue, bytes_limit(v)?)),
    },
    Param {
        name: "set-max-intset-entries",
        get: |c, _| c.limits.get(Limit::IntsetEntries).to_string(),
        set: Some(|c, _, v| set_limit(c, Limit::IntsetEntries, count(v)?)),
    },
    Param {
        name: "stream-node-max-bytes",
        get: |c, _| c.limits.get(Limit::StreamNodeBytes).to_string(),
        set: Some(|c, _, v| set_limit(c, Limit::StreamNodeBytes, bytes_limit(v)?)),
    },
    Param {
        name: "stream-node-max-entries",
        get: |c, _| c.limits.get(Limit::StreamNodeEntries).to_string(),
        set: Some(|c, _, v| set_limit(c, Limit::StreamNodeEntries, count(v)?)),
    },
    Param {
        name: "list-max-listpack-size",
        get: |c, _| c.list_max_listpack_size.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            let n: i64 = int(v)?;
            if !(i32::MIN as i64..=i32::MAX as i64).contains(&n) {
                return Err(ConfigError::Range(i32::MIN.into(), i32::MAX.into()));
            }
            c.list_max_listpack_size.store(n, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "list-compress-depth",
        get: |_, _| "0".into(),
        // Compressing a list's interior is not implemented: 0 (Redis'
        // default, no compression) is the only value, so a config that
        // asks for compression is refused rather than silently ignored.
        set: Some(|_, _, v| match int::<i64>(v)? {
            0 => Ok(()),
            1..=0x7fff_ffff => Err(ConfigError::Invalid(format!(
                "{v}: ferrokv does not compress lists (only 0 is supported)"
            ))),
            _ => Err(ConfigError::Range(0, i32::MAX.into())),
        }),
    },
    Param {
        name: "lazyfree-lazy-user-del",
        get: |c, _| yes_no(c.lazyfree_lazy_user_del.load(Ordering::Relaxed)),
        set: Some(|c, _, v| {
            c.lazyfree_lazy_user_del.store(parse_yes_no(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "lazyfree-lazy-user-flush",
        get: |c, _| yes_no(c.lazyfree_lazy_user_flush.load(Ordering::Relaxed)),
        set: Some(|c, _, v| {
            c.lazyfree_lazy_user_flush.store(parse_yes_no(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "busy-reply-threshold",
        get: |c, _| c.busy_reply_threshold.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.busy_reply_threshold.store(int(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "hll-sparse-max-bytes",
        get: |c, _| c.hll_sparse_max_bytes.load(Ordering::Relaxed).to_string(),
        set: Some(|c, _, v| {
            c.hll_sparse_max_bytes.store(bytes_limit(v)?, Ordering::Relaxed);
            Ok(())
        }),
    },
    Param {
        name: "cluster-enabled",
        get: |c, _| if c.cluster_enabled { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "cluster-config-file",
        get: |c, _| c.cluster_config_file.clone(),
        set: None,
    },
];

/// A count parameter (`*-entries`): an integer from 0, as Redis' range.
fn count(v: &str) -> Result<u64, ConfigError> {
    match int::<i64>(v)? {
        n if n < 0 => Err(ConfigError::Range(0, i64::MAX)),
        n => Ok(n as u64),
    }
}

/// A size parameter (`*-value`, `stream-node-max-bytes`): bytes, with
/// Redis' memory units (`1kb`).
fn bytes_limit(v: &str) -> Result<u64, ConfigError> {
    parse_memory(v).and_then(|n| match n {
        n if n > i64::MAX as u64 => Err(ConfigError::Range(0, i64::MAX)),
        n => Ok(n),
    })
}

fn set_limit(c: &Config, l: Limit, v: u64) -> Result<(), ConfigError> {
    c.limits.set(l, v);
    Ok(())
}

/// Redis' older names of parameters, still accepted by `CONFIG GET/SET` and
/// in a config file (Redis 7.0 renamed ziplist to listpack).
pub static ALIASES: &[(&str, &str)] = &[
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
    ("lua-time-limit", "busy-reply-threshold"),
];

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// `host port` for `replicaof`.
fn parse_replicaof(words: &[&str]) -> Result<(String, u16), ConfigError> {
    match words {
        [host, port] => {
            let port: u16 = port
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ConfigError::Invalid(port.to_string()))?;
            Ok((host.to_string(), port))
        }
        _ => Err(ConfigError::Invalid(words.join(" "))),
    }
}

/// The parameter called `name` (or one of its [`ALIASES`]).
pub fn find_param(name: &str) -> Option<&'static Param> {
    let name = ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map_or(name, |(_, canonical)| canonical);
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

impl Config {
    /// Build the runtime config from flags (and the config file they name).
    pub fn from_args(args: &ServeArgs, eviction: &EvictionConfig) -> Result<Config, ConfigError> {
        let mut cfg = Config {
            config_file: args.config.clone(),
            ..Config::default()
        };
        if let Some(path) = &args.config {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
                path: path.clone(),
                source,
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                let v = v.trim().trim_matches('"');
                let err = |msg: String| ConfigError::FileLine {
                    path: path.clone(),
                    line: i + 1,
                    msg,
                };
                match k.to_ascii_lowercase().as_str() {
                    "bind" => cfg.bind = v.split_whitespace().map(String::from).collect(),
                    "port" => cfg.port = v.parse().map_err(|_| err(format!("invalid port '{v}'")))?,
                    "admin-port" => {
                        cfg.admin_port = Some(v.parse().map_err(|_| err(format!("invalid admin-port '{v}'")))?)
                    }
                    "dir" => {
                        *cfg.dir.write() = PathBuf::from(v);
                        cfg.epoch_dir = Some(PathBuf::from(v));
                    }
                    "replicaof" | "slaveof" => {
                        let words: Vec<&str> = v.split_whitespace().collect();
                        cfg.replicaof = Some(parse_replicaof(&words).map_err(|e| err(e.to_string()))?);
                    }
                    "threads" => cfg.threads = Some(v.parse().map_err(|_| err(format!("invalid threads '{v}'")))?),
                    "adaptive-threads" => cfg.adaptive_threads = parse_yes_no(v).map_err(|e| err(e.to_string()))?,
                    "busy-poll" => cfg.busy_poll = BusyPoll::parse(v).map_err(|e| err(e.to_string()))?,
                    "cluster-enabled" => cfg.cluster_enabled = parse_yes_no(v).map_err(|e| err(e.to_string()))?,
                    "cluster-config-file" => cfg.cluster_config_file = v.to_string(),
                    name => match find_param(name).and_then(|p| p.set) {
                        Some(set) => set(&cfg, eviction, v).map_err(|e| err(e.to_string()))?,
                        None => return Err(err(format!("unknown directive '{k}'"))),
                    },
                }
            }
        }
        if let Some(b) = &args.bind {
            cfg.bind = b.clone();
        }
        if let Some(p) = args.port {
            cfg.port = p;
        }
        if args.admin_port.is_some() {
            cfg.admin_port = args.admin_port;
        }
        if args.threads.is_some() {
            cfg.threads = args.threads;
        }
        if let Some(v) = &args.adaptive_threads {
            cfg.adaptive_threads = parse_yes_no(v)?;
        }
        if let Some(v) = &args.busy_poll {
            cfg.busy_poll = BusyPoll::parse(v)?;
        }
        if let Some(v) = &args.cluster_enabled {
            cfg.cluster_enabled = parse_yes_no(v)?;
        }
        if let Some(f) = &args.cluster_config_file {
            cfg.cluster_config_file = f.clone();
        }
        let set = |name: &str, v: Option<String>| -> Result<(), ConfigError> {
            if let (Some(v), Some(p)) = (v, find_param(name))
                && let Some(set) = p.set
            {
                set(&cfg, eviction, &v)?;
            }
            Ok(())
        };
        set("requirepass", args.requirepass.clone())?;
        set("maxmemory", args.maxmemory.clone())?;
        set("maxmemory-policy", args.maxmemory_policy.clone())?;
        set("maxmemory-samples", args.maxmemory_samples.map(|v| v.to_string()))?;
        set("maxclients", args.maxclients.map(|v| v.to_string()))?;
        set("timeout", args.timeout.map(|v| v.to_string()))?;
        set("notify-keyspace-events", args.notify_keyspace_events.clone())?;
        set("proto-max-bulk-len", args.proto_max_bulk_len.clone())?;
        set(
            "slowlog-log-slower-than",
            args.slowlog_log_slower_than.map(|v| v.to_string()),
        )?;
        set("slowlog-max-len", args.slowlog_max_len.map(|v| v.to_string()))?;
        set("repl-backlog-size", args.repl_backlog_size.clone())?;
        set("masterauth", args.masterauth.clone())?;
        set("replica-read-only", args.replica_read_only.clone())?;
        set(
            "min-replicas-to-write",
            args.min_replicas_to_write.map(|v| v.to_string()),
        )?;
        set("min-replicas-max-lag", args.min_replicas_max_lag.map(|v| v.to_string()))?;
        set("appendonly", args.appendonly.clone())?;
        set("appendfsync", args.appendfsync.clone())?;
        set("dir", args.dir.as_ref().map(|d| d.to_string_lossy().into_owned()))?;
        set("dbfilename", args.dbfilename.clone())?;
        set("save", args.save.clone())?;
        if args.dir.is_some() {
            cfg.epoch_dir = args.dir.clone();
        }
        if let Some(words) = &args.replicaof {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            cfg.replicaof = Some(parse_replicaof(&words)?);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("100").unwrap(), 100);
        assert_eq!(parse_memory("1kb").unwrap(), 1024);
        assert_eq!(parse_memory("1k").unwrap(), 1000);
        assert_eq!(parse_memory("2GB").unwrap(), 2 << 30);
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn config_file_and_flags() {
        let dir = std::env::temp_dir().join(format!("ferrokv-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.conf");
        std::fs::write(
            &path,
            "# comment\nport 7000\nmaxmemory 1mb\nmaxmemory-policy allkeys-lru\n\
             hash-max-ziplist-entries 16\nstream-node-max-bytes 1kb\n",
        )
        .unwrap();
        let ev = EvictionConfig::default();
        let args = ServeArgs {
            config: Some(path.clone()),
            port: Some(7001),
            ..Default::default()
        };
        let cfg = Config::from_args(&args, &ev).unwrap();
        assert_eq!(cfg.port, 7001);
        assert_eq!(cfg.maxmemory.load(Ordering::Relaxed), 1 << 20);
        assert_eq!(ev.policy(), Policy::AllKeysLru);
        let lim = cfg.limits.load();
        assert_eq!((lim.hash_entries, lim.stream_node_bytes), (16, 1024));
        std::fs::write(&path, "list-compress-depth 1\n").unwrap();
        let err = Config::from_args(
            &ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            },
            &ev,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("does not compress"), "{err}");
        std::fs::write(&path, "bogus 1\n").unwrap();
        let err = Config::from_args(
            &ServeArgs {
                config: Some(path),
                ..Default::default()
            },
            &ev,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
