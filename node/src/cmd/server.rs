//! Server commands: INFO, CONFIG, CLIENT, COMMAND, DBSIZE, FLUSHDB/FLUSHALL,
//! TIME, MEMORY, SLOWLOG, LATENCY.
//!
//! The bigger families live in submodules (`info`, `config`, `client`,
//! `command`); this file holds the table and the small commands. Commands
//! that count or drop keys (INFO, DBSIZE, FLUSH*) declare [`KeySpec::All`]
//! and work through the partitions the executor locked for them, so they
//! behave the same inside EXEC, which already holds every partition.

mod client;
mod command;
mod config;
mod info;

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::flags::*;
use super::parse::{int, is, syntax};
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::resp::Reply;
use crate::session::Session;
use crate::state::{SlowEntry, State};

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        spec!(@ "server", $name, $arity, $flags, $keys, $h, $since, $cx, $summary)
    };
    (@ $group:literal, $name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal,
     $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: $group,
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

/// A container command (`CONFIG`, `CLIENT`...): its handler only runs for a
/// bare name, which arity already refuses.
macro_rules! container {
    ($name:literal, $group:literal, $since:literal, $summary:literal, $subs:expr) => {
        CommandSpec {
            name: $name,
            arity: -2,
            flags: 0,
            keys: KeySpec::None,
            group: $group,
            summary: $summary,
            since: $since,
            complexity: "Depends on subcommand.",
            handler: container_without_subcommand,
            subcommands: $subs,
        }
    };
}

const ADM: u32 = ADMIN | NOSCRIPT | LOADING | STALE;
const CONN: u32 = NOSCRIPT | LOADING | STALE;
const HELPF: u32 = LOADING | STALE;

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "info",
        -1,
        LOADING | STALE,
        KeySpec::All,
        info::info,
        "1.0.0",
        "O(1)",
        "Returns information and statistics about the server."
    ),
    container!(
        "config",
        "server",
        "2.0.0",
        "A container for server configuration commands.",
        &[
            spec!(
                "get",
                -3,
                ADM,
                KeySpec::None,
                config::get,
                "2.0.0",
                "O(N) when N is the number of configuration parameters provided",
                "Returns the effective values of configuration parameters."
            ),
            spec!(
                "set",
                -4,
                ADM,
                KeySpec::None,
                config::set,
                "2.0.0",
                "O(N) when N is the number of configuration parameters provided",
                "Sets configuration parameters in-flight."
            ),
            spec!(
                "resetstat",
                2,
                ADM,
                KeySpec::None,
                config::resetstat,
                "2.0.0",
                "O(1)",
                "Resets the server's statistics."
            ),
            spec!(
                "rewrite",
                2,
                ADM,
                KeySpec::None,
                config::rewrite,
                "2.8.0",
                "O(1)",
                "Persists the effective configuration to file."
            ),
            spec!(
                "help",
                2,
                HELPF,
                KeySpec::None,
                config_help,
                "5.0.0",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
        ]
    ),
    container!(
        "client",
        "connection",
        "2.4.0",
        "A container for client connection commands.",
        &[
            spec!(
                @ "connection",
                "id",
                2,
                CONN,
                KeySpec::None,
                client::id,
                "5.0.0",
                "O(1)",
                "Returns the unique client ID of the connection."
            ),
            spec!(
                @ "connection",
                "setname",
                3,
                CONN,
                KeySpec::None,
                client::setname,
                "2.6.9",
                "O(1)",
                "Sets the connection name."
            ),
            spec!(
                @ "connection",
                "getname",
                2,
                CONN,
                KeySpec::None,
                client::getname,
                "2.6.9",
                "O(1)",
                "Returns the name of the connection."
            ),
            spec!(
                @ "connection",
                "list",
                -2,
                ADM,
                KeySpec::None,
                client::list,
                "2.4.0",
                "O(N) where N is the number of client connections",
                "Lists open connections."
            ),
            spec!(
                @ "connection",
                "kill",
                -3,
                ADM,
                KeySpec::None,
                client::kill,
                "2.4.0",
                "O(N) where N is the number of client connections",
                "Terminates open connections."
            ),
            spec!(
                @ "connection",
                "info",
                2,
                CONN,
                KeySpec::None,
                client::info,
                "6.2.0",
                "O(1)",
                "Returns information about the connection."
            ),
            spec!(
                @ "connection",
                "no-evict",
                3,
                ADM,
                KeySpec::None,
                client::no_evict,
                "7.0.0",
                "O(1)",
                "Sets the client eviction mode of the connection."
            ),
            spec!(
                @ "connection",
                "no-touch",
                3,
                CONN,
                KeySpec::None,
                client::no_touch,
                "7.2.0",
                "O(1)",
                "Controls whether commands sent by the client affect the LRU/LFU of accessed keys."
            ),
            spec!(
                @ "connection",
                "reply",
                3,
                CONN,
                KeySpec::None,
                client::reply,
                "3.2.0",
                "O(1)",
                "Instructs the server whether to reply to commands."
            ),
            spec!(
                @ "connection",
                "unblock",
                -3,
                ADM,
                KeySpec::None,
                client::unblock,
                "5.0.0",
                "O(log N) where N is the number of client connections",
                "Unblocks a client blocked by a blocking command from a different connection."
            ),
            spec!(
                @ "connection",
                "setinfo",
                4,
                CONN,
                KeySpec::None,
                client::setinfo,
                "7.2.0",
                "O(1)",
                "Sets information specific to the client or connection."
            ),
            spec!(
                @ "connection",
                "help",
                2,
                HELPF,
                KeySpec::None,
                client_help,
                "5.0.0",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
        ]
    ),
    CommandSpec {
        name: "command",
        arity: -1,
        flags: LOADING | STALE,
        keys: KeySpec::None,
        group: "server",
        summary: "Returns detailed information about all commands.",
        since: "2.8.13",
        complexity: "O(N) where N is the total number of Redis commands",
        handler: command::all,
        subcommands: &[
            spec!(
                "count",
                2,
                HELPF,
                KeySpec::None,
                command::count,
                "2.8.13",
                "O(1)",
                "Returns a count of commands."
            ),
            spec!(
                "docs",
                -2,
                HELPF,
                KeySpec::None,
                command::docs,
                "7.0.0",
                "O(N) where N is the number of commands to look up",
                "Returns documentary information about one, multiple or all commands."
            ),
            spec!(
                "getkeys",
                -4,
                HELPF,
                KeySpec::None,
                command::getkeys,
                "2.8.13",
                "O(N) where N is the number of arguments to the command",
                "Extracts the key names from an arbitrary command."
            ),
            spec!(
                "info",
                -2,
                HELPF,
                KeySpec::None,
                command::info,
                "2.8.13",
                "O(N) where N is the number of commands to look up",
                "Returns information about one, multiple or all commands."
            ),
            spec!(
                "list",
                -2,
                HELPF,
                KeySpec::None,
                command::list,
                "7.0.0",
                "O(N) where N is the total number of Redis commands",
                "Returns a list of command names."
            ),
            spec!(
                "help",
                2,
                HELPF,
                KeySpec::None,
                command_help,
                "5.0.0",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
        ],
    },
    spec!(
        "dbsize",
        1,
        READONLY | FAST,
        KeySpec::All,
        dbsize,
        "1.0.0",
        "O(1)",
        "Returns the number of keys in the database."
    ),
    spec!(
        "flushall",
        -1,
        WRITE,
        KeySpec::All,
        flushall,
        "1.0.0",
        "O(N) where N is the total number of keys in all databases",
        "Removes all keys from all databases."
    ),
    spec!(
        "flushdb",
        -1,
        WRITE,
        KeySpec::All,
        flushall,
        "1.0.0",
        "O(N) where N is the number of keys in the selected database",
        "Remove all keys from the current database."
    ),
    spec!(
        "time",
        1,
        LOADING | STALE | FAST,
        KeySpec::None,
        time,
        "2.6.0",
        "O(1)",
        "Returns the server time."
    ),
    container!(
        "memory",
        "server",
        "4.0.0",
        "A container for memory diagnostics commands.",
        &[
            spec!(
                "usage",
                -3,
                READONLY,
                KeySpec::Range {
                    first: 2,
                    last: 2,
                    step: 1
                },
                memory_usage,
                "4.0.0",
                "O(N) where N is the number of samples.",
                "Estimates the memory usage of a key."
            ),
            spec!(
                "help",
                2,
                HELPF,
                KeySpec::None,
                memory_help,
                "4.0.0",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
        ]
    ),
    container!(
        "slowlog",
        "server",
        "2.2.12",
        "A container for slow log commands.",
        &[
            spec!(
                "get",
                -2,
                ADMIN | LOADING | STALE,
                KeySpec::None,
                slowlog_get,
                "2.2.12",
                "O(N) where N is the number of entries returned",
                "Returns the slow log's entries."
            ),
            spec!(
                "len",
                2,
                ADMIN | LOADING | STALE,
                KeySpec::None,
                slowlog_len,
                "2.2.12",
                "O(1)",
                "Returns the number of entries in the slow log."
            ),
            spec!(
                "reset",
                2,
                ADMIN | LOADING | STALE,
                KeySpec::None,
                slowlog_reset,
                "2.2.12",
                "O(N) where N is the number of entries in the slowlog",
                "Clears all entries from the slow log."
            ),
            spec!(
                "help",
                2,
                HELPF,
                KeySpec::None,
                slowlog_help,
                "6.2.0",
                "O(1)",
                "Show helpful text about the different subcommands"
            ),
        ]
    ),
    container!(
        "latency",
        "server",
        "2.8.13",
        "A container for latency diagnostics commands.",
        &[
            spec!(
                "latest",
                2,
                ADM,
                KeySpec::None,
                latency_latest,
                "2.8.13",
                "O(1)",
                "Returns the latest latency samples for all events."
            ),
            spec!(
                "history",
                3,
                ADM,
                KeySpec::None,
                latency_history,
                "2.8.13",
                "O(1)",
                "Returns timestamp-latency samples for an event."
            ),
            spec!(
                "reset",
                -2,
                ADM,
                KeySpec::None,
                latency_reset,
                "2.8.13",
                "O(1)",
                "Resets the latency data for one or more events."
            ),
            spec!(
                "help",
                2,
                HELPF,
                KeySpec::None,
                latency_help,
                "2.8.13",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
        ]
    ),
];

fn container_without_subcommand(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Err(Reply::err(format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(args[0]).to_ascii_lowercase()
    )))
}

/// Redis' help reply: the header, the subcommands' lines, then HELP itself.
pub fn help_reply(name: &str, lines: &[&str]) -> Reply {
    let mut v = vec![Reply::status(format!(
        "{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ))];
    v.extend(lines.iter().map(|l| Reply::status(l.to_string())));
    v.push(Reply::status("HELP"));
    v.push(Reply::status("    Prints this help."));
    Reply::Array(v)
}

fn config_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(help_reply(
        "CONFIG",
        &[
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
        ],
    ))
}

fn client_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(help_reply("CLIENT", client::HELP))
}

fn command_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(help_reply(
        "COMMAND",
        &[
            "(no subcommand)",
            "    Return details about all Redis commands.",
            "COUNT",
            "    Return the total number of commands in this Redis server.",
            "LIST",
            "    Return a list of all commands in this Redis server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "GETKEYS <full-command>",
            "    Return the keys from a full Redis command.",
        ],
    ))
}

fn memory_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(help_reply(
        "MEMORY",
        &[
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value. Nested values are",
            "    sampled up to <count> times (default: 5, 0 means sample all).",
        ],
    ))
}

fn slowlog_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(help_reply(
        "SLOWLOG",
        &[
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
        ],
    ))
}

fn latency_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(help_reply(
        "LATENCY",
        &[
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
        ],
    ))
}

fn dbsize(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let n: usize = ctx.ks.partitions_mut().map(|p| p.keys).sum();
    Ok(Reply::Int(n as i64))
}

/// FLUSHALL and FLUSHDB (one database, so the same thing). The keys are
/// gone for every client at once either way; with ASYNC (or, without an
/// argument, `lazyfree-lazy-user-flush yes`) their memory is freed by the
/// background thread ([`crate::db::lazyfree`]) instead of under the locks.
fn flushall(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let lazy = match args.len() {
        1 => ctx.state.config.lazyfree_lazy_user_flush.load(Ordering::Relaxed),
        2 if is(args[1], "ASYNC") => true,
        2 if is(args[1], "SYNC") => false,
        _ => return Err(syntax()),
    };
    let ks = &mut ctx.ks;
    ctx.state.watches.touch_existing(|k| ks.contains_stored(k));
    let removed = ctx.ks.clear(lazy);
    // Clients blocked on keys look again (Redis' `scanDatabaseForDeletedStreams`):
    // XREADGROUP's stream is gone, which unblocks it with an error; the
    // others find nothing and keep waiting.
    ctx.ready.extend(ctx.state.blocking.keys());
    ctx.dirty += removed.max(1) as u64;
    Ok(Reply::Ok)
}

fn time(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Reply::Array(vec![
        Reply::bulk(now.as_secs().to_string()),
        Reply::bulk(now.subsec_micros().to_string()),
    ]))
}

fn memory_usage(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    // SAMPLES is accepted and checked; the size is exact, not sampled.
    let mut i = 3;
    while i < args.len() {
        if is(args[i], "SAMPLES") && i + 1 < args.len() {
            int(args[i + 1])?;
            i += 2;
        } else {
            return Err(syntax());
        }
    }
    Ok(match ctx.ks.peek(args[2]) {
        Some(e) => Reply::Int(e.mem_usage() as i64),
        None => Reply::Null,
    })
}

fn slowlog_get(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let count = match args.len() {
        2 => 10,
        3 => match super::parse::parse_i64(args[2]) {
            Some(-1) => usize::MAX,
            Some(n) if n >= 0 => n as usize,
            _ => return Err(Reply::err("ERR count should be greater than or equal to -1")),
        },
        _ => return Err(Reply::err("ERR wrong number of arguments for 'slowlog|get' command")),
    };
    let log = ctx.state.slowlog.entries.lock();
    Ok(Reply::Array(
        log.iter()
            .take(count)
            .map(|e| {
                Reply::Array(vec![
                    Reply::Int(e.id as i64),
                    Reply::Int(e.time as i64),
                    Reply::Int(e.micros as i64),
                    Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                    Reply::bulk(&e.addr),
                    Reply::bulk(&e.name),
                ])
            })
            .collect(),
    ))
}

fn slowlog_len(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(ctx.state.slowlog.entries.lock().len() as i64))
}

fn slowlog_reset(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    ctx.state.slowlog.entries.lock().clear();
    Ok(Reply::Ok)
}

fn latency_latest(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let events = ctx.state.latency.events.lock();
    Ok(Reply::Array(
        events
            .iter()
            .filter_map(|(name, ev)| {
                let (t, ms) = *ev.samples.back()?;
                Some(Reply::Array(vec![
                    Reply::bulk(name),
                    Reply::Int(t as i64),
                    Reply::Int(ms as i64),
                    Reply::Int(ev.max as i64),
                ]))
            })
            .collect(),
    ))
}

fn latency_history(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let events = ctx.state.latency.events.lock();
    let name = String::from_utf8_lossy(args[2]);
    let samples = events.get(name.as_ref()).map(|e| e.samples.clone()).unwrap_or_default();
    Ok(Reply::Array(
        samples
            .iter()
            .map(|(t, ms)| Reply::Array(vec![Reply::Int(*t as i64), Reply::Int(*ms as i64)]))
            .collect(),
    ))
}

fn latency_reset(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let mut events = ctx.state.latency.events.lock();
    if args.len() == 2 {
        let n = events.len();
        events.clear();
        return Ok(Reply::Int(n as i64));
    }
    let mut n = 0;
    for a in &args[2..] {
        if events.remove(String::from_utf8_lossy(a).as_ref()).is_some() {
            n += 1;
        }
    }
    Ok(Reply::Int(n))
}

/// Client names may not contain spaces, newlines or special characters.
pub fn validate_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Reply::err(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

/// Record a slow command.
pub fn slowlog_push(state: &State, session: &Session, args: &[&[u8]], micros: u64) {
    let max = state.config.slowlog_max_len.load(Ordering::Relaxed);
    if max == 0 {
        return;
    }
    // As Redis: at most 32 arguments, each at most 128 bytes.
    let mut logged: Vec<Bytes> = args
        .iter()
        .take(32)
        .map(|a| {
            if a.len() > 128 {
                let mut v = a[..128].to_vec();
                v.extend_from_slice(format!("... ({} more bytes)", a.len() - 128).as_bytes());
                Bytes::from(v)
            } else {
                Bytes::copy_from_slice(a)
            }
        })
        .collect();
    if args.len() > 32 {
        logged[31] = Bytes::from(format!("... ({} more arguments)", args.len() - 31));
    }
    let entry = SlowEntry {
        id: state.slowlog.next_id.fetch_add(1, Ordering::Relaxed),
        time: crate::db::now_ms() / 1000,
        micros,
        args: logged,
        addr: session.handle.addr.to_string(),
        name: session
            .handle
            .name
            .lock()
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default(),
    };
    let mut log = state.slowlog.entries.lock();
    log.push_front(entry);
    while log.len() > max {
        log.pop_back();
    }
}
