//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::flags::*;
use super::parse::{is, parse_i64};
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::resp::Reply;

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The Redis version we are compatible with and report to clients, which use
/// it to decide which commands and reply shapes to expect.
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $h:expr, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: KeySpec::None,
            group: "connection",
            summary: $summary,
            since: "1.0.0",
            complexity: "O(1)",
            handler: $h,
            subcommands: &[],
        }
    };
}

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "ping",
        -1,
        FAST | PUBSUB_CONTEXT,
        ping,
        "Returns the server's liveliness response."
    ),
    spec!("echo", 2, FAST | LOADING | STALE, echo, "Returns the given string."),
    spec!(
        "hello",
        -1,
        FAST | NO_AUTH | NOSCRIPT | LOADING | STALE,
        hello,
        "Handshakes with the Redis server."
    ),
    spec!(
        "auth",
        -2,
        FAST | NO_AUTH | NOSCRIPT | LOADING | STALE,
        auth,
        "Authenticates the connection."
    ),
    spec!(
        "select",
        2,
        FAST | LOADING | STALE,
        select,
        "Changes the selected database."
    ),
    spec!(
        "quit",
        -1,
        FAST | NO_AUTH | LOADING | STALE | PUBSUB_CONTEXT | TXN_CONTROL,
        quit,
        "Closes the connection."
    ),
    spec!(
        "reset",
        1,
        FAST | NO_AUTH | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT | TXN_CONTROL,
        reset,
        "Resets the connection."
    ),
];

fn ping(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() > 2 {
        return Err(Reply::err("ERR wrong number of arguments for 'ping' command"));
    }
    if ctx.session.in_pubsub_context() {
        let msg = args.get(1).map_or_else(Bytes::new, |m| Bytes::copy_from_slice(m));
        return Ok(Reply::Array(vec![Reply::bulk_static("pong"), Reply::Bulk(msg)]));
    }
    Ok(match args.get(1) {
        Some(m) => Reply::bulk(m),
        None => Reply::status("PONG"),
    })
}

fn echo(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(Reply::bulk(args[1]))
}

fn check_password(ctx: &Ctx, user: Option<&[u8]>, pass: &[u8]) -> Result<(), Reply> {
    if let Some(u) = user
        && u != b"default"
    {
        return Err(Reply::err(WRONGPASS));
    }
    match ctx.state.config.requirepass.read().as_ref() {
        Some(p) if constant_time_eq(p, pass) => Ok(()),
        Some(_) => Err(Reply::err(WRONGPASS)),
        // With no password configured the default user is "nopass": any
        // password works for `AUTH default x` / HELLO AUTH, as in Redis.
        None => Ok(()),
    }
}

/// Compare without an early exit so response time does not leak a prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn auth(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (user, pass) = match args.len() {
        2 => (None, &args[1]),
        3 => (Some(args[1]), &args[2]),
        _ => return Err(super::parse::syntax()),
    };
    if user.is_none() && ctx.state.config.requirepass.read().is_none() {
        return Err(Reply::err(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    }
    check_password(ctx, user, pass)?;
    ctx.session.authenticated = true;
    Ok(Reply::Ok)
}

fn hello(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let mut proto = ctx.session.proto;
    let mut i = 1;
    if args.len() > 1 {
        proto = match parse_i64(args[1]) {
            Some(v @ 2..=3) => v as u8,
            Some(_) => return Err(Reply::err("NOPROTO unsupported protocol version")),
            None => {
                return Err(Reply::err("ERR Protocol version is not an integer or out of range"));
            }
        };
        i = 2;
    }
    let mut setname = None;
    while i < args.len() {
        if is(args[i], "AUTH") && i + 2 < args.len() {
            check_password(ctx, Some(args[i + 1]), args[i + 2])?;
            ctx.session.authenticated = true;
            i += 3;
        } else if is(args[i], "SETNAME") && i + 1 < args.len() {
            super::server::validate_client_name(args[i + 1])?;
            setname = Some(Bytes::copy_from_slice(args[i + 1]));
            i += 2;
        } else {
            return Err(Reply::err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(args[i])
            )));
        }
    }
    if !ctx.session.authenticated {
        return Err(Reply::err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(n) = setname {
        *ctx.session.handle.name.lock() = if n.is_empty() { None } else { Some(n) };
    }
    ctx.session.proto = proto;
    ctx.session.handle.proto.store(proto, Ordering::Relaxed);
    Ok(Reply::Map(vec![
        (Reply::bulk_static("server"), Reply::bulk_static("redis")),
        (Reply::bulk_static("version"), Reply::bulk_static(REDIS_COMPAT_VERSION)),
        (Reply::bulk_static("proto"), Reply::Int(proto as i64)),
        (Reply::bulk_static("id"), Reply::Int(ctx.session.id() as i64)),
        (Reply::bulk_static("mode"), Reply::bulk_static("standalone")),
        (Reply::bulk_static("role"), Reply::bulk_static("master")),
        (Reply::bulk_static("modules"), Reply::Array(vec![])),
    ]))
}

fn select(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    match parse_i64(args[1]) {
        Some(0) => Ok(Reply::Ok),
        Some(_) => Err(Reply::err("ERR DB index is out of range")),
        None => Err(Reply::err(super::parse::ERR_NOT_INT)),
    }
}

fn quit(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    ctx.session.close = true;
    Ok(Reply::Ok)
}

fn reset(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    super::txn::discard_state(ctx);
    super::pubsub::unsubscribe_everything(ctx);
    ctx.session.proto = 2;
    ctx.session.handle.proto.store(2, Ordering::Relaxed);
    *ctx.session.handle.name.lock() = None;
    ctx.session.handle.no_evict.store(false, Ordering::Relaxed);
    ctx.session.handle.no_touch.store(false, Ordering::Relaxed);
    ctx.session.reply_off = false;
    ctx.session.readonly = false;
    ctx.session.asking = false;
    ctx.session.reply_skip = false;
    ctx.session.authenticated = ctx.state.config.requirepass.read().is_none();
    Ok(Reply::status("RESET"))
}
