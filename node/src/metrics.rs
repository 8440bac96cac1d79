//! Prometheus metrics of the node.
//!
//! Latency histograms are `prometheus` crate histograms, observed on the
//! command path (one handle per command, created on first use so idle
//! commands add no series). Everything else is already counted in
//! [`crate::state::Stats`] and the keyspace for `INFO`; those values are read
//! at scrape time and written in the same exposition format, so the two
//! views can never disagree and the hot path pays for each number once.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, Registry, TextEncoder};

use crate::state::State;

pub struct Metrics {
    pub registry: Registry,
    command_seconds: HistogramVec,
    handles: Vec<OnceLock<Histogram>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let command_seconds = HistogramVec::new(
            HistogramOpts::new("ferrokv_command_duration_seconds", "Command execution time by command.").buckets(vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01, 0.1, 1.0,
            ]),
            &["command"],
        )
        .expect("static metric definition is valid");
        registry
            .register(Box::new(command_seconds.clone()))
            .expect("metric registered once");
        let n = crate::cmd::table().len();
        Metrics {
            registry,
            command_seconds,
            handles: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn observe_command(&self, id: usize, elapsed: Duration) {
        let Some(slot) = self.handles.get(id) else {
            return;
        };
        let h = slot.get_or_init(|| {
            let name = &crate::cmd::table().all[id].1;
            self.command_seconds.with_label_values(&[name.as_str()])
        });
        h.observe(elapsed.as_secs_f64());
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
        metric("ferrokv_keys_with_expiry", "gauge", "Keys with a TTL.", volatile as f64);
        metric(
            "ferrokv_memory_used_bytes",
            "gauge",
            "Accounted bytes of the dataset.",
            state.db.used_memory() as f64,
        );
        metric(
            "ferrokv_memory_max_bytes",
            "gauge",
            "Configured maxmemory (0 = unlimited).",
            state.config.maxmemory.load(Ordering::Relaxed) as f64,
        );
        metric(
            "ferrokv_connected_clients",
            "gauge",
            "Client connections.",
            state.clients.len() as f64,
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
            let calls = s.commands[i].calls.load(Ordering::Relaxed);
            if calls > 0 {
                let _ = writeln!(out, "ferrokv_commands_total{{command=\"{name}\"}} {calls}");
            }
        }
        let _ = writeln!(
            out,
            "# HELP ferrokv_command_errors_total Failed commands by command.\n# TYPE ferrokv_command_errors_total counter"
        );
        for (i, (_, name)) in crate::cmd::table().all.iter().enumerate() {
            let failed = s.commands[i].failed_calls.load(Ordering::Relaxed)
                + s.commands[i].rejected_calls.load(Ordering::Relaxed);
            if failed > 0 {
                let _ = writeln!(out, "ferrokv_command_errors_total{{command=\"{name}\"}} {failed}");
            }
        }
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_ok() {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
        out
    }
}
