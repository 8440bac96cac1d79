//! ferrokv node: a Redis-protocol key-value server.
//!
//! # Layout
//!
//! ```text
//!  TCP ──► server::conn ──► resp::parse ──► cmd::execute ──► cmd/<family>.rs handler
//!            ▲    │                            │                    │
//!            │    └── pub/sub queue ◄──────────┼── pubsub           ▼
//!            └──────── resp::reply ◄───────────┘            db::Keys (locked partitions)
//! ```
//!
//! - [`server`]: listeners, the accept loop (connection cap), the connection
//!   threads and their balancer ([`server::threads`]), one task per
//!   connection ([`server::conn`]), active expiry, the admin HTTP port
//!   ([`server::admin`]: `/metrics`, `/healthz`, `/readyz`), and stopping
//!   (SIGTERM or `SHUTDOWN`: [`server::Running::stop`]).
//! - [`resp`]: two-phase request parsing (RESP multibulk and inline) and
//!   reply encoding for RESP2 and RESP3.
//! - [`cmd`]: the command table. One file per command family; each spec names
//!   its arity, flags and key positions, and a handler that parses and applies
//!   the command through a [`cmd::Ctx`].
//! - [`db`]: the keyspace. 16384 slot tables in 64 independently locked
//!   partitions, compact entries, lazy and active expiry, eviction, the
//!   encoding thresholds ([`db::limits`]), and the background freer of big
//!   deleted values ([`db::lazyfree`]).
//! - [`script`]: Lua scripting (EVAL & co.) and Redis 7 functions (FUNCTION,
//!   FCALL; [`script::function`]) on Lua 5.1: the interpreters and their
//!   sandbox, `redis.call`, reply conversions, and the running script's
//!   state that `-BUSY`, SCRIPT KILL and FUNCTION KILL read.
//! - [`rdb`]: the parts of Redis' RDB format that servers exchange (the
//!   FUNCTION DUMP payload: encodings, RDB version, CRC-64).
//! - [`state`]: what all connections share (keyspace, config, clients,
//!   pub/sub, blocked clients, WATCH registry, statistics, metrics).
//! - [`session`]: per-connection state (protocol, auth, MULTI, subscriptions).
//! - [`cluster`]: cluster mode: the pushed topology, `-MOVED`/`-CROSSSLOT`
//!   routing before a command runs, and the driver the operator calls.
//! - [`wlog`]: the write log, every keyspace change as RESP commands at byte
//!   offsets; it feeds the append-only log and (later) replicas.
//! - [`persist`]: the data directory and startup (snapshot load, log replay),
//!   snapshots, and the append-only log ([`persist::aof`]: a writer thread,
//!   `appendfsync` policies, group commit with the connection, `-MISCONF` on
//!   failure; checksummed segments, zero-filled ahead of the writer by a
//!   helper thread under `always` ([`persist::segment`]), manifest,
//!   BGREWRITEAOF).
//! - [`repl`]: replication (PSYNC, senders tailing the write log, client
//!   connections pushing their own writes to online replicas, the replica
//!   link that applies and relays its primary's stream, WAIT, config epochs).
//!
//! # Concurrency
//!
//! Connections run on connection threads ([`server::threads`]), each a
//! current-thread tokio runtime that serves its connections from read to
//! reply; with two active threads both cores parse, execute and write at
//! once. How many threads take connections follows the load and the free
//! cores (one while the cores are taken, e.g. by a load generator beside the
//! node), and connections move between threads between request batches.
//! A thread with a core to itself and an unpipelined load polls epoll for a
//! few microseconds after a batch instead of sleeping (`--busy-poll`).
//! There is no global lock on the command path: a
//! command locks only the partitions (`slot % 64`) that hold its keys, in
//! ascending order, for the duration of the handler; statistics are relaxed
//! atomics. Commands on the same partition serialize, which is what gives
//! each command Redis' atomicity; MULTI/EXEC and whole-keyspace commands take
//! all partitions. Side effects that do not need the keyspace — keyspace
//! notifications, pub/sub delivery, serving clients blocked on keys — run
//! after the locks are released.
//!
//! # Write path
//!
//! Every change a command makes is reported through [`cmd::Ctx::changed`]
//! (WATCH invalidation, blocked-client wakeup, keyspace events, dirty count),
//! and collected into the write log under the partition locks. With
//! `appendfsync always` the connection holds a batch's replies until the
//! append-only log has fsynced the client's last write (group commit).

pub mod blocking;
pub mod client;
pub mod cluster;
pub mod cmd;
pub mod config;
pub mod counter;
pub mod db;
pub mod glob;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod pubsub;
pub mod rdb;
pub mod repl;
pub mod resp;
pub mod script;
pub mod server;
pub mod session;
pub mod slot;
pub mod state;
pub mod wlog;
