//! `CONFIG GET/SET/RESETSTAT/REWRITE`, over the parameter table in
//! [`crate::config::PARAMS`] (which owns parsing and storage); this module
//! owns Redis' reply shapes and error texts and the all-or-nothing rule of a
//! multi-parameter `CONFIG SET`.

use std::sync::atomic::Ordering;

use crate::cmd::{CmdResult, Ctx};
use crate::config::{ALIASES, ConfigError, PARAMS, Param, find_param};
use crate::db::evict::EvictionConfig;
use crate::glob::glob_match;
use crate::resp::Reply;
use crate::state::State;

pub fn get(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (cfg, ev) = (&ctx.state.config, &ctx.state.db.eviction);
    let mut out = Vec::new();
    // Each parameter once, however many patterns match it (Redis 7).
    for p in PARAMS {
        if args[2..].iter().any(|pat| glob_match(pat, p.name.as_bytes(), true)) {
            out.push((Reply::bulk(p.name), Reply::bulk((p.get)(cfg, ev))));
        }
    }
    // Old names answer under their own name too, as in Redis 7.0.
    for (alias, name) in ALIASES {
        if args[2..].iter().any(|pat| glob_match(pat, alias.as_bytes(), true))
            && let Some(p) = find_param(name)
        {
            out.push((Reply::bulk(*alias), Reply::bulk((p.get)(cfg, ev))));
        }
    }
    Ok(Reply::Map(out))
}

fn set_failed(name: &str, why: impl std::fmt::Display) -> Reply {
    Reply::err(format!(
        "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
    ))
}

/// Redis 7.0 lists the policies in its own order.
const POLICY_CHOICES: &str = "argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, \
     volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction";

/// Redis' wording for a value a parameter refuses.
fn value_error(p: &Param, e: ConfigError) -> Reply {
    if let ConfigError::Invalid(_) = e {
        match p.name {
            "maxmemory-policy" => return set_failed(p.name, POLICY_CHOICES),
            "notify-keyspace-events" => {
                return set_failed(p.name, "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.");
            }
            "proto-max-bulk-len" => {
                return set_failed(
                    p.name,
                    "argument must be between 1048576 and 9223372036854775807 inclusive",
                );
            }
            "maxmemory-samples" => return set_failed(p.name, "argument must be between 1 and 64 inclusive"),
            _ => {}
        }
    }
    set_failed(p.name, e)
}

pub fn set(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if !args.len().is_multiple_of(2) {
        return Err(crate::cmd::parse::syntax());
    }
    let mut pairs: Vec<(&'static Param, String)> = Vec::new();
    for pair in args[2..].chunks(2) {
        let name = String::from_utf8_lossy(pair[0]);
        let Some(p) = find_param(&name) else {
            return Err(Reply::err(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )));
        };
        if p.set.is_none() {
            return Err(set_failed(p.name, "can't set immutable config"));
        }
        if pairs.iter().any(|(q, _)| std::ptr::eq(*q, p)) {
            return Err(set_failed(p.name, "duplicate parameter"));
        }
        pairs.push((p, String::from_utf8_lossy(pair[1]).into_owned()));
    }
    apply_all(ctx.state, &pairs)?;
    if pairs.iter().any(|(p, _)| p.name == "notify-keyspace-events") {
        crate::state::sync_notify(&ctx.state.db, &ctx.state.config);
    }
    // A lower limit (or a policy that may now evict) takes effect at once,
    // as in Redis, not at the next write: the memory is given back and the
    // `evicted` events go out now. Inside EXEC every partition is held by
    // this thread already, so there the next write evicts.
    if pairs
        .iter()
        .any(|(p, _)| matches!(p.name, "maxmemory" | "maxmemory-policy"))
        && !ctx.in_exec
        && !ctx.state.repl.is_replica()
    {
        crate::cmd::enforce_maxmemory(ctx.state);
    }
    if pairs.iter().any(|(p, _)| p.name.starts_with("append")) {
        crate::persist::apply_config(ctx.state).map_err(|e| set_failed("appendonly", e))?;
    }
    Ok(Reply::Ok)
}

/// Apply every pair or none: on the first refusal, restore the values of
/// the parameters already changed (as Redis 7 does).
fn apply_all(state: &State, pairs: &[(&'static Param, String)]) -> Result<(), Reply> {
    let (cfg, ev) = (&state.config, &state.db.eviction);
    let old: Vec<String> = pairs.iter().map(|(p, _)| (p.get)(cfg, ev)).collect();
    for (i, (p, v)) in pairs.iter().enumerate() {
        let Some(setter) = p.set else { continue };
        if let Err(e) = setter(cfg, ev, v) {
            for (j, (q, _)) in pairs[..i].iter().enumerate() {
                if let Some(s) = q.set {
                    let _ = s(cfg, ev, &old[j]);
                }
            }
            return Err(value_error(p, e));
        }
    }
    Ok(())
}

pub fn resetstat(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let state = ctx.state;
    let s = &state.stats;
    for c in [
        &s.total_commands_processed,
        &s.keyspace_hits,
        &s.keyspace_misses,
        &s.net_input_bytes,
        &s.net_output_bytes,
    ] {
        c.store(0, Ordering::Relaxed);
    }
    for a in [
        &s.total_connections_received,
        &s.rejected_connections,
        &s.total_error_replies,
        &s.pubsub_overflow_disconnects,
        &state.db.expired_keys,
        &state.db.evicted_keys,
    ] {
        a.store(0, Ordering::Relaxed);
    }
    s.commands.reset();
    s.errors.lock().clear();
    state.db.lazyfree.reset_freed();
    state.mem_peak.store(0, Ordering::Relaxed);
    Ok(Reply::Ok)
}

pub fn rewrite(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let Some(path) = ctx.state.config.config_file.clone() else {
        return Err(Reply::err("ERR The server is running without a config file"));
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let new = rewritten(&text, &ctx.state.config, &ctx.state.db.eviction);
    // Write a sibling file and rename it over the original, so a crash
    // mid-write never leaves a truncated config behind.
    let tmp = path.with_extension("rewrite.tmp");
    let result = std::fs::write(&tmp, new).and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(error = %e, path = %path.display(), "CONFIG REWRITE failed");
        return Err(Reply::err(format!("ERR Rewriting config file: {e}")));
    }
    Ok(Reply::Ok)
}

/// The config file with every runtime parameter brought up to date: lines
/// naming a parameter get its current value (in place, keeping comments and
/// order); parameters that differ from their default and are not in the file
/// are appended. Directives this node does not change at runtime (`port`,
/// `admin-port`...) are kept as written.
pub fn rewritten(text: &str, cfg: &crate::config::Config, ev: &EvictionConfig) -> String {
    let defaults = crate::config::Config::default();
    let default_ev = EvictionConfig::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let directive = trimmed.split_whitespace().next().unwrap_or("");
        match find_param(directive).filter(|p| p.set.is_some() && !trimmed.starts_with('#')) {
            Some(p) if !seen.contains(&p.name) => {
                seen.push(p.name);
                out.push_str(&format!("{} {}\n", p.name, quote((p.get)(cfg, ev))));
            }
            // A repeated directive: the first occurrence carries the value.
            Some(_) => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    let mut header = false;
    for p in PARAMS.iter().filter(|p| p.set.is_some() && !seen.contains(&p.name)) {
        let v = (p.get)(cfg, ev);
        if v != (p.get)(&defaults, &default_ev) {
            if !header {
                out.push_str("# Generated by CONFIG REWRITE\n");
                header = true;
            }
            out.push_str(&format!("{} {}\n", p.name, quote(v)));
        }
    }
    out
}

/// Values with spaces or nothing at all are written in double quotes.
fn quote(v: String) -> String {
    if v.is_empty() || v.contains(char::is_whitespace) {
        format!("\"{v}\"")
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn rewrite_updates_in_place_and_appends_changed() {
        let cfg = Config::default();
        let ev = EvictionConfig::default();
        cfg.maxmemory.store(1 << 20, Ordering::Relaxed);
        cfg.timeout.store(7, Ordering::Relaxed);
        let text = "# my node\nport 7000\nmaxmemory 5mb\nmaxmemory 9mb\n";
        let out = rewritten(text, &cfg, &ev);
        assert_eq!(
            out,
            "# my node\nport 7000\nmaxmemory 1048576\n# Generated by CONFIG REWRITE\ntimeout 7\n"
        );
        // Rewriting again is stable.
        assert_eq!(rewritten(&out, &cfg, &ev), out);
    }
}
