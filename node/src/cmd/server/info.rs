//! `INFO [section ...]`: Redis 7.0's sections and field names, each field
//! reporting something this node really measures. Fields whose subject does
//! not exist here yet (RDB/AOF details, replication backlog, latency
//! percentiles) are left out rather than filled with invented values, so a
//! monitoring tool never graphs a number that means nothing.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::cmd::connection::REDIS_COMPAT_VERSION;
use crate::cmd::{CmdResult, Ctx, table};
use crate::metrics;
use crate::resp::Reply;
use crate::state::State;

/// Every section, in the order Redis prints them, and whether it is part of
/// `INFO` / `INFO default`.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("cluster", true),
    ("keyspace", true),
];

/// Which sections an `INFO` invocation asks for (Redis 7.0's rules: no
/// argument or `default` = the default set, `all` = every section but module
/// ones, `everything` = all; unknown names select nothing).
fn selected(args: &[&[u8]]) -> Vec<bool> {
    let mut want = vec![false; SECTIONS.len()];
    if args.len() <= 1 {
        return SECTIONS.iter().map(|(_, d)| *d).collect();
    }
    for a in &args[1..] {
        let a = String::from_utf8_lossy(a).to_ascii_lowercase();
        match a.as_str() {
            "default" => {
                for (w, (_, d)) in want.iter_mut().zip(SECTIONS) {
                    *w |= *d;
                }
            }
            "all" | "everything" => want.iter_mut().for_each(|w| *w = true),
            name => {
                if let Some(i) = SECTIONS.iter().position(|(n, _)| *n == name) {
                    want[i] = true;
                }
            }
        }
    }
    want
}

pub fn info(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let want = selected(args);
    // Key counts come from the partitions this command holds (all of them),
    // never from `Db::key_counts`, which would lock them a second time.
    let (mut keys, mut expires) = (0usize, 0usize);
    if want[SECTIONS.len() - 1] {
        for p in ctx.ks.partitions_mut() {
            keys += p.keys;
            expires += p.volatile;
        }
    }
    let state = ctx.state;
    let mut out = String::new();
    for (i, (name, _)) in SECTIONS.iter().enumerate() {
        if !want[i] {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let title = match *name {
            "cpu" => "CPU".to_string(),
            n => {
                let mut t = n.to_string();
                t[..1].make_ascii_uppercase();
                t
            }
        };
        let _ = write!(out, "# {title}\r\n");
        let mut s = Section(&mut out);
        match *name {
            "server" => server(state, &mut s),
            "clients" => clients(state, &mut s),
            "memory" => memory(state, &mut s),
            "persistence" => persistence(state, &mut s),
            "stats" => stats(state, &mut s),
            "replication" => replication(state, &mut s),
            "cpu" => cpu(&mut s),
            "commandstats" => commandstats(state, &mut s),
            "errorstats" => errorstats(state, &mut s),
            "cluster" => s.field("cluster_enabled", u8::from(state.cluster.is_enabled())),
            "keyspace" if keys > 0 => s.field("db0", format!("keys={keys},expires={expires},avg_ttl=0")),
            _ => {}
        }
    }
    Ok(Reply::Verbatim(Bytes::from(out)))
}

struct Section<'a>(&'a mut String);

impl Section<'_> {
    fn field(&mut self, name: &str, value: impl std::fmt::Display) {
        let _ = write!(self.0, "{name}:{value}\r\n");
    }
}

fn server(state: &State, s: &mut Section) {
    let now = crate::db::now_ms();
    let uptime = state.started.elapsed().as_secs();
    let os = format!(
        "{} {} {}",
        read_trimmed("/proc/sys/kernel/ostype").unwrap_or_else(|| "Linux".into()),
        read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        std::env::consts::ARCH
    );
    s.field("redis_version", REDIS_COMPAT_VERSION);
    s.field("ferrokv_version", env!("CARGO_PKG_VERSION"));
    s.field("redis_git_sha1", "00000000");
    s.field("redis_git_dirty", 0);
    s.field("redis_mode", "standalone");
    s.field("os", os);
    s.field("arch_bits", usize::BITS);
    s.field("multiplexing_api", "epoll");
    s.field("process_id", std::process::id());
    s.field("process_supervised", "no");
    s.field("run_id", &state.run_id);
    s.field("tcp_port", state.port.load(Ordering::Relaxed));
    s.field("server_time_usec", now * 1000);
    s.field("uptime_in_seconds", uptime);
    s.field("uptime_in_days", uptime / 86400);
    s.field("hz", 10);
    s.field("configured_hz", 10);
    s.field("lru_clock", crate::db::evict::lru_clock(now));
    s.field(
        "executable",
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    s.field(
        "config_file",
        state
            .config
            .config_file
            .as_ref()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    );
    // Connection threads taking connections now (Redis reports 0 or 1 for
    // its I/O threads; here the count, see `server::threads`).
    s.field("io_threads_active", state.io_threads.active.load(Ordering::Relaxed));
    // Threads allowed to busy-poll now (`--busy-poll`; ferrokv's own field).
    s.field(
        "ferrokv_io_threads_polling",
        state.io_threads.polling.load(Ordering::Relaxed),
    );
    // All connection threads (`--threads`, or the cores this process may
    // use): what an operator checks when a CPU limit should have lowered it.
    s.field("ferrokv_worker_threads", state.io_threads.total.load(Ordering::Relaxed));
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn clients(state: &State, s: &mut Section) {
    let all = state.clients.all();
    let max_qbuf = all.iter().map(|c| c.qbuf.load(Ordering::Relaxed)).max().unwrap_or(0);
    s.field("connected_clients", all.len());
    s.field("cluster_connections", 0);
    s.field("maxclients", state.config.maxclients.load(Ordering::Relaxed));
    s.field("client_recent_max_input_buffer", max_qbuf);
    s.field("client_recent_max_output_buffer", 0);
    s.field(
        "blocked_clients",
        all.iter().filter(|c| c.blocked.load(Ordering::Relaxed)).count(),
    );
    s.field("tracking_clients", 0);
}

fn memory(state: &State, s: &mut Section) {
    let used = metrics::used_memory(state);
    let rss = metrics::rss_bytes();
    let peak = state.mem_peak.load(Ordering::Relaxed).max(used);
    let dataset = state.db.used_memory() as u64;
    let total = metrics::total_system_memory();
    let max = state.config.maxmemory.load(Ordering::Relaxed);
    s.field("used_memory", used);
    s.field("used_memory_human", metrics::bytes_to_human(used));
    s.field("used_memory_rss", rss);
    s.field("used_memory_rss_human", metrics::bytes_to_human(rss));
    s.field("used_memory_peak", peak);
    s.field("used_memory_peak_human", metrics::bytes_to_human(peak));
    s.field(
        "used_memory_peak_perc",
        format!("{:.2}%", used as f64 * 100.0 / peak.max(1) as f64),
    );
    s.field("used_memory_dataset", dataset);
    s.field(
        "used_memory_dataset_perc",
        format!("{:.2}%", dataset as f64 * 100.0 / used.max(1) as f64),
    );
    // Scripting, with Redis 7.0's names: the EVAL interpreter and script
    // cache, the functions' interpreter and libraries, and their totals.
    let (lua, scripts, cached) = state.scripts.memory();
    let (fn_lua, fn_code, functions, libraries) = state.scripts.functions_memory();
    s.field("used_memory_lua", lua);
    s.field("used_memory_vm_eval", lua);
    s.field("used_memory_lua_human", metrics::bytes_to_human(lua));
    s.field("used_memory_scripts_eval", scripts);
    s.field("number_of_cached_scripts", cached);
    s.field("number_of_functions", functions);
    s.field("number_of_libraries", libraries);
    s.field("used_memory_vm_functions", fn_lua);
    s.field("used_memory_vm_total", lua + fn_lua);
    s.field("used_memory_vm_total_human", metrics::bytes_to_human(lua + fn_lua));
    s.field("used_memory_functions", fn_code);
    s.field("used_memory_scripts", scripts + fn_code);
    s.field("used_memory_scripts_human", metrics::bytes_to_human(scripts + fn_code));
    s.field("total_system_memory", total);
    s.field("total_system_memory_human", metrics::bytes_to_human(total));
    s.field("maxmemory", max);
    s.field("maxmemory_human", metrics::bytes_to_human(max));
    s.field("maxmemory_policy", state.db.eviction.policy().name());
    s.field(
        "mem_fragmentation_ratio",
        format!("{:.2}", rss as f64 / used.max(1) as f64),
    );
    s.field("mem_allocator", metrics::allocator_name());
    s.field("lazyfree_pending_objects", state.db.lazyfree.pending());
    s.field("lazyfreed_objects", state.db.lazyfree.freed());
}

/// Snapshot fields (Redis' `rdb_*` names, see [`crate::persist::save::info`]),
/// then the append-only log's.
fn persistence(state: &State, s: &mut Section) {
    crate::persist::save::info(state, s.0);
    for (name, value) in crate::persist::info_fields(state) {
        s.field(name, value);
    }
}

fn stats(state: &State, s: &mut Section) {
    let st = &state.stats;
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    s.field("total_connections_received", l(&st.total_connections_received));
    s.field(
        "total_commands_processed",
        st.total_commands_processed.load(Ordering::Relaxed),
    );
    s.field("total_net_input_bytes", st.net_input_bytes.load(Ordering::Relaxed));
    s.field("total_net_output_bytes", st.net_output_bytes.load(Ordering::Relaxed));
    s.field("rejected_connections", l(&st.rejected_connections));
    s.field("expired_keys", l(&state.db.expired_keys));
    s.field("evicted_keys", l(&state.db.evicted_keys));
    s.field("keyspace_hits", st.keyspace_hits.load(Ordering::Relaxed));
    s.field("keyspace_misses", st.keyspace_misses.load(Ordering::Relaxed));
    s.field("pubsub_channels", state.pubsub.channels(None, false).len());
    s.field("pubsub_patterns", state.pubsub.numpat());
    s.field("pubsubshard_channels", state.pubsub.channels(None, true).len());
    s.field("sync_full", l(&state.repl.stats.sync_full));
    s.field("sync_partial_ok", l(&state.repl.stats.sync_partial_ok));
    s.field("sync_partial_err", l(&state.repl.stats.sync_partial_err));
    s.field("total_error_replies", l(&st.total_error_replies));
    s.field("ferrokv_backlog_disconnects", l(&state.repl.stats.backlog_disconnects));
    s.field(
        "ferrokv_pubsub_overflow_disconnects",
        l(&st.pubsub_overflow_disconnects),
    );
}

fn replication(state: &State, s: &mut Section) {
    for (k, v) in state.repl.info_fields(state) {
        s.field(&k, v);
    }
}

fn cpu(s: &mut Section) {
    let (user, sys, cuser, csys) = metrics::cpu_seconds();
    s.field("used_cpu_sys", format!("{sys:.6}"));
    s.field("used_cpu_user", format!("{user:.6}"));
    s.field("used_cpu_sys_children", format!("{csys:.6}"));
    s.field("used_cpu_user_children", format!("{cuser:.6}"));
}

fn commandstats(state: &State, s: &mut Section) {
    for (i, (_, name)) in table().all.iter().enumerate() {
        let c = state.stats.commands.total(i);
        let (calls, rejected, failed) = (c.calls, c.rejected_calls, c.failed_calls);
        if calls == 0 && rejected == 0 && failed == 0 {
            continue;
        }
        let usec = c.usec;
        let per_call = if calls == 0 { 0.0 } else { usec as f64 / calls as f64 };
        s.field(
            &format!("cmdstat_{name}"),
            format!(
                "calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}"
            ),
        );
    }
}

fn errorstats(state: &State, s: &mut Section) {
    let errors = state.stats.errors.lock();
    let mut names: Vec<_> = errors.iter().collect();
    names.sort();
    for (prefix, count) in names {
        s.field(&format!("errorstat_{prefix}"), format!("count={count}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(v: &[&'a str]) -> Vec<&'a [u8]> {
        v.iter().map(|s| s.as_bytes()).collect()
    }

    fn names(w: &[bool]) -> Vec<&'static str> {
        SECTIONS
            .iter()
            .zip(w)
            .filter(|(_, w)| **w)
            .map(|((n, _), _)| *n)
            .collect()
    }

    #[test]
    fn section_selection_follows_redis() {
        let default = names(&selected(&args(&["info"])));
        assert!(!default.contains(&"commandstats"));
        assert!(default.contains(&"keyspace"));
        assert_eq!(names(&selected(&args(&["info", "default"]))), default);
        assert_eq!(names(&selected(&args(&["info", "all"]))).len(), SECTIONS.len());
        assert_eq!(names(&selected(&args(&["info", "everything"]))).len(), SECTIONS.len());
        assert_eq!(
            names(&selected(&args(&["info", "KEYSPACE", "cpu"]))),
            vec!["cpu", "keyspace"]
        );
        assert!(names(&selected(&args(&["info", "nope"]))).is_empty());
    }
}
