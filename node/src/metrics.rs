//! Prometheus metrics of the node, and the process-level numbers (memory,
//! CPU) that both `/metrics` and `INFO` report.
//!
//! Latency histograms are observed on the command path into per-thread
//! shards ([`crate::counter`]) and written in the exposition format here;
//! commands that never ran add no series. Everything else is already counted in
//! [`crate::state::Stats`] and the keyspace for `INFO`; those values are read
//! at scrape time and written in the same exposition format, so the two
//! views can never disagree and the hot path pays for each number once.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use prometheus::{Encoder, Registry, TextEncoder};

use crate::counter::{LATENCY_BUCKETS, LatencyHistograms};

use crate::state::State;

pub struct Metrics {
    pub registry: Registry,
    /// Per-command latency, sharded per thread and exposed by hand (see
    /// [`crate::counter::LatencyHistograms`] for why not a `prometheus` histogram).
    latency: LatencyHistograms,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            registry: Registry::new(),
            latency: LatencyHistograms::new(crate::cmd::table().len()),
        }
    }

    pub fn observe_command(&self, id: usize, elapsed: Duration) {
        self.latency.observe(id, elapsed);
    }

    /// `ferrokv_command_duration_seconds`, one series per command that ran.
    fn render_latency(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ferrokv_command_duration_seconds Command execution time by command.\n\
             # TYPE ferrokv_command_duration_seconds histogram"
        );
        for (i, (_, name)) in crate::cmd::table().all.iter().enumerate() {
            let t = self.latency.total(i);
            if t.count == 0 {
                continue;
            }
            for (ub, n) in LATENCY_BUCKETS.iter().zip(t.cumulative) {
                let _ = writeln!(
                    out,
                    "ferrokv_command_duration_seconds_bucket{{command=\"{name}\",le=\"{ub}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "ferrokv_command_duration_seconds_bucket{{command=\"{name}\",le=\"+Inf\"}} {}",
                t.count
            );
            let _ = writeln!(
                out,
                "ferrokv_command_duration_seconds_sum{{command=\"{name}\"}} {}",
                t.sum_seconds
            );
            let _ = writeln!(
                out,
                "ferrokv_command_duration_seconds_count{{command=\"{name}\"}} {}",
                t.count
            );
        }
    }

    /// The whole exposition text.
    pub fn render(&self, state: &State) -> String {
        let mut out = String::new();
        let s = &state.stats;
        let (keys, volatile) = state.db.key_counts();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric("ferrokv_keys", "gauge", "Keys in the dataset.", keys as f64);
        let aof = &state.aof;
        metric(
            "ferrokv_aof_enabled",
            "gauge",
            "1 while the append-only log is on.",
            aof.enabled.load(Ordering::Relaxed) as u8 as f64,
        );
        metric(
            "ferrokv_aof_last_write_ok",
            "gauge",
            "0 after a failed log write or fsync: writes are refused (MISCONF).",
            aof.last_write_ok() as u8 as f64,
        );
        metric(
            "ferrokv_aof_write_errors_total",
            "counter",
            "Failed log writes and fsyncs.",
            aof.write_errors.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_aof_fsyncs_total",
            "counter",
            "fsync calls on the log (group commit shares one among many writes).",
            aof.fsyncs.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_aof_size_bytes",
            "gauge",
            "Bytes of the append-only log (base and segments).",
            aof.current_size.load(Ordering::Relaxed) as f64,
        );
        let repl = &state.repl;
        metric(
            "ferrokv_repl_offset",
            "gauge",
            "Write-log offset (INFO master_repl_offset; on a replica, how far it has applied its primary's stream).",
            state.db.wlog.offset() as f64,
        );
        metric(
            "ferrokv_repl_is_replica",
            "gauge",
            "1 while this node follows a primary.",
            repl.is_replica() as u8 as f64,
        );
        metric(
            "ferrokv_repl_master_link_up",
            "gauge",
            "1 while a replica's link to its primary is up (0 on a primary).",
            repl.master()
                .is_some_and(|(_, _, st)| st.state.load(Ordering::Relaxed) == crate::repl::link_state::CONNECTED)
                as u8 as f64,
        );
        metric(
            "ferrokv_repl_connected_replicas",
            "gauge",
            "Replicas attached to this node.",
            repl.replicas.lock().len() as f64,
        );
        metric(
            "ferrokv_repl_config_epoch",
            "gauge",
            "Newest control-plane epoch this node accepted.",
            repl.epoch.get() as f64,
        );
        metric(
            "ferrokv_repl_full_syncs_total",
            "counter",
            "Full syncs served to replicas.",
            repl.stats.sync_full.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_repl_backlog_disconnects_total",
            "counter",
            "Replicas disconnected for falling further behind than the backlog.",
            repl.stats.backlog_disconnects.load(Ordering::Relaxed) as f64,
        );
        metric("ferrokv_keys_with_expiry", "gauge", "Keys with a TTL.", volatile as f64);
        metric(
            "ferrokv_memory_used_bytes",
            "gauge",
            "Bytes allocated by the node (INFO used_memory).",
            used_memory(state) as f64,
        );
        metric(
            "ferrokv_memory_dataset_bytes",
            "gauge",
            "Accounted bytes of the keys and values, which maxmemory limits.",
            state.db.used_memory() as f64,
        );
        metric(
            "ferrokv_memory_rss_bytes",
            "gauge",
            "Resident set size of the process.",
            rss_bytes() as f64,
        );
        metric(
            "ferrokv_memory_max_bytes",
            "gauge",
            "Configured maxmemory (0 = unlimited).",
            state.config.maxmemory.load(Ordering::Relaxed) as f64,
        );
        let mig = &state.cluster.migrations;
        metric(
            "ferrokv_migration_keys_moved_total",
            "counter",
            "Keys this node sent to another shard by slot migration (acknowledged by the target).",
            mig.keys_moved_total.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_migration_bytes_moved_total",
            "counter",
            "Encoded bytes of the keys counted in ferrokv_migration_keys_moved_total.",
            mig.bytes_moved_total.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_migration_keys_received_total",
            "counter",
            "Keys this node received by slot migration.",
            mig.keys_received_total.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_migrations_in_progress",
            "gauge",
            "Slot migration streams running on this node.",
            mig.in_progress() as f64,
        );
        metric(
            "ferrokv_connected_clients",
            "gauge",
            "Client connections.",
            state.clients.len() as f64,
        );
        metric(
            "ferrokv_io_threads_active",
            "gauge",
            "Connection threads taking connections (adaptive, up to ferrokv_io_threads).",
            state.io_threads.active.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_io_threads_polling",
            "gauge",
            "Connection threads allowed to busy-poll between requests (--busy-poll).",
            state.io_threads.polling.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_io_threads",
            "gauge",
            "Connection threads started (--threads).",
            state.io_threads.total.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_blocked_clients",
            "gauge",
            "Clients blocked on keys.",
            state.clients.blocked_count() as f64,
        );
        metric(
            "ferrokv_connections_received_total",
            "counter",
            "Connections accepted.",
            s.total_connections_received.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_connections_rejected_total",
            "counter",
            "Connections refused at maxclients.",
            s.rejected_connections.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_expired_keys_total",
            "counter",
            "Keys deleted because their TTL passed.",
            state.db.expired_keys.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_evicted_keys_total",
            "counter",
            "Keys evicted by the maxmemory policy.",
            state.db.evicted_keys.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_keyspace_hits_total",
            "counter",
            "Successful key lookups.",
            s.keyspace_hits.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_keyspace_misses_total",
            "counter",
            "Failed key lookups.",
            s.keyspace_misses.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_net_input_bytes_total",
            "counter",
            "Bytes read from clients.",
            s.net_input_bytes.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_net_output_bytes_total",
            "counter",
            "Bytes written to clients.",
            s.net_output_bytes.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_error_replies_total",
            "counter",
            "Error replies sent.",
            s.total_error_replies.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_pubsub_channels",
            "gauge",
            "Channels with at least one subscriber.",
            state.pubsub.channels(None, false).len() as f64,
        );
        let (user, sys, _, _) = cpu_seconds();
        metric(
            "ferrokv_cpu_seconds_total",
            "counter",
            "User and system CPU time of the process.",
            user + sys,
        );
        metric(
            "ferrokv_uptime_seconds",
            "gauge",
            "Seconds since the node started.",
            state.started.elapsed().as_secs_f64(),
        );
        let _ = writeln!(
            out,
            "# HELP ferrokv_commands_total Commands processed by command.\n# TYPE ferrokv_commands_total counter"
        );
        for (i, (_, name)) in crate::cmd::table().all.iter().enumerate() {
            let calls = s.commands.total(i).calls;
            if calls > 0 {
                let _ = writeln!(out, "ferrokv_commands_total{{command=\"{name}\"}} {calls}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP ferrokv_command_errors_total Failed commands by command.\n# TYPE ferrokv_command_errors_total counter"
        );
        for (i, (_, name)) in crate::cmd::table().all.iter().enumerate() {
            let t = s.commands.total(i);
            let failed = t.failed_calls + t.rejected_calls;
            if failed > 0 {
                let _ = writeln!(out, "ferrokv_command_errors_total{{command=\"{name}\"}} {failed}");
            }
        }
        self.render_latency(&mut out);
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_ok() {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
        out
    }
}

/// How often jemalloc's statistics are refreshed at most. Advancing the
/// epoch merges per-thread counters, which is too costly to do on every INFO
/// or scrape when a monitoring loop polls in a tight cycle.
const ALLOCATOR_REFRESH: Duration = Duration::from_millis(100);

/// The last refresh: when, jemalloc's `stats.allocated` then, and the
/// dataset's accounted size then (when the refresh knew it).
static ALLOCATOR_CACHE: Mutex<Option<(Instant, u64, Option<u64>)>> = Mutex::new(None);

/// Bytes allocated through jemalloc (`stats.allocated`) at the last refresh
/// (at most [`ALLOCATOR_REFRESH`] ago), and the dataset size then; `None`
/// when jemalloc is not the process' allocator (in-process tests use the
/// system allocator: jemalloc is linked but sees no allocations). Given the
/// dataset size now, a refresh that did not record one is not reused.
fn allocator_sample(dataset: Option<u64>) -> Option<(u64, Option<u64>)> {
    let mut cache = ALLOCATOR_CACHE.lock();
    let (allocated, dataset_then) = match *cache {
        Some((at, v, d)) if at.elapsed() < ALLOCATOR_REFRESH && (dataset.is_none() || d.is_some()) => (v, d),
        _ => {
            let _ = tikv_jemalloc_ctl::epoch::advance();
            let v = tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64;
            *cache = Some((Instant::now(), v, dataset));
            (v, dataset)
        }
    };
    // A process that really runs on jemalloc has allocated at least its own
    // runtime, connection buffers and command table: far more than 1 MiB.
    (allocated >= 1 << 20).then_some((allocated, dataset_then))
}

/// Bytes allocated through jemalloc at the last refresh (see [`allocator_sample`]).
pub fn allocator_allocated() -> Option<u64> {
    allocator_sample(None).map(|(a, _)| a)
}

/// `mem_allocator` as INFO reports it.
pub fn allocator_name() -> String {
    match allocator_allocated() {
        Some(_) => {
            let v = tikv_jemalloc_ctl::version::read().unwrap_or("5.3.0");
            format!("jemalloc-{}", v.split('-').next().unwrap_or(v))
        }
        None => "libc".into(),
    }
}

/// `used_memory`: what the allocator has handed out, or (without jemalloc)
/// the dataset accounting. Also raises the recorded peak.
pub fn used_memory(state: &State) -> u64 {
    let dataset = state.db.used_memory() as u64;
    // Between refreshes the allocator's figure moves with the dataset's, so
    // a big write shows at once (an INFO right after it is not 100 ms stale).
    let used = allocator_sample(Some(dataset)).map_or(dataset, |(allocated, then)| {
        let then = then.unwrap_or(dataset);
        allocated.saturating_add(dataset).saturating_sub(then).max(dataset)
    });
    state.mem_peak.fetch_max(used, Ordering::Relaxed);
    used
}

/// Resident set size of the process, from `/proc/self/status` (0 if unknown).
pub fn rss_bytes() -> u64 {
    proc_status_kb("/proc/self/status", "VmRSS:") * 1024
}

/// Physical memory of the machine (0 if unknown).
pub fn total_system_memory() -> u64 {
    proc_status_kb("/proc/meminfo", "MemTotal:") * 1024
}

fn proc_status_kb(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds used by the process: (user, system, children user, children system).
///
/// Read from `/proc/self/stat` in clock ticks; Linux fixes the user-visible
/// tick (`USER_HZ`) at 100 on every architecture, whatever the kernel's HZ.
pub fn cpu_seconds() -> (f64, f64, f64, f64) {
    const USER_HZ: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return (0.0, 0.0, 0.0, 0.0);
    };
    // The command name (field 2) may contain spaces: count fields after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
    // After ')': state is field 3, so utime (14) is index 11.
    let at = |i: usize| f.get(i).copied().unwrap_or(0.0) / USER_HZ;
    (at(11), at(12), at(13), at(14))
}

/// Redis' `bytesToHuman`: `1.02M`, `512B`.
pub fn bytes_to_human(n: u64) -> String {
    let d = n as f64;
    let k = 1024.0f64;
    if d < k {
        return format!("{n}B");
    }
    for (i, unit) in ["K", "M", "G", "T"].iter().enumerate() {
        if d < k.powi(i as i32 + 2) {
            return format!("{:.2}{unit}", d / k.powi(i as i32 + 1));
        }
    }
    format!("{:.2}P", d / k.powi(5))
}
