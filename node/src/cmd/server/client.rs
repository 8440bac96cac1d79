//! `CLIENT ...`: inspect and control connections through the shared client
//! registry ([`crate::client`]). Killing another connection only flags it and
//! wakes its task, which closes the socket itself; killing oneself closes
//! after the reply, as Redis does.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::validate_client_name;
use crate::client::ClientHandle;
use crate::cmd::parse::{is, parse_i64, syntax};
use crate::cmd::{CmdResult, Ctx};
use crate::resp::Reply;

pub fn id(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(ctx.session.id() as i64))
}

pub fn setname(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    validate_client_name(args[2])?;
    *ctx.session.handle.name.lock() = (!args[2].is_empty()).then(|| Bytes::copy_from_slice(args[2]));
    Ok(Reply::Ok)
}

pub fn getname(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(Reply::opt_bulk(ctx.session.handle.name.lock().as_ref()))
}

pub fn info(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    // As Redis, the running command is already this client's last command.
    if let Some(id) = crate::cmd::table().id_of("client|info") {
        ctx.session.handle.last_cmd.store(id + 1, Ordering::Relaxed);
    }
    let mut line = ctx.session.handle.info_line();
    line.push('\n');
    Ok(Reply::Verbatim(Bytes::from(line)))
}

/// A client type as `CLIENT LIST/KILL TYPE` name them.
#[derive(Clone, Copy, PartialEq)]
enum Type {
    Normal,
    PubSub,
    /// Our link to our primary.
    Master,
    /// Replicas attached to this node.
    Replica,
}

fn parse_type(arg: &[u8]) -> Result<Type, Reply> {
    let t = String::from_utf8_lossy(arg).to_ascii_lowercase();
    match t.as_str() {
        "normal" => Ok(Type::Normal),
        "pubsub" => Ok(Type::PubSub),
        "master" => Ok(Type::Master),
        "replica" | "slave" => Ok(Type::Replica),
        _ => Err(Reply::err(format!("ERR Unknown client type '{t}'"))),
    }
}

fn type_of(c: &ClientHandle) -> Type {
    match c.repl_role.load(Ordering::Relaxed) {
        crate::repl::client_role::MASTER => return Type::Master,
        crate::repl::client_role::REPLICA => return Type::Replica,
        _ => {}
    }
    let subs = c.subscriptions.load(Ordering::Relaxed)
        + c.psubscriptions.load(Ordering::Relaxed)
        + c.ssubscriptions.load(Ordering::Relaxed);
    if subs > 0 { Type::PubSub } else { Type::Normal }
}

pub fn list(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if let Some(id) = crate::cmd::table().id_of("client|list") {
        ctx.session.handle.last_cmd.store(id + 1, Ordering::Relaxed);
    }
    let mut ty = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        if is(args[i], "TYPE") && i + 1 < args.len() {
            ty = Some(parse_type(args[i + 1])?);
            i += 2;
        } else if is(args[i], "ID") && i + 1 < args.len() {
            let mut v = Vec::new();
            for a in &args[i + 1..] {
                match parse_i64(a) {
                    // Ids start at 1: zero or negative ids simply match nobody.
                    Some(n) => v.push(u64::try_from(n).unwrap_or(0)),
                    None => return Err(Reply::err("ERR Invalid client ID")),
                }
            }
            ids = Some(v);
            i = args.len();
        } else {
            return Err(syntax());
        }
    }
    let mut out = String::new();
    for c in ctx.state.clients.all() {
        if ty.is_some_and(|t| t != type_of(&c)) || ids.as_ref().is_some_and(|v| !v.contains(&c.id)) {
            continue;
        }
        out.push_str(&c.info_line());
        out.push('\n');
    }
    Ok(Reply::Verbatim(Bytes::from(out)))
}

/// `CLIENT KILL` filters; every given one must match.
#[derive(Default)]
struct Filter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    ty: Option<Type>,
    user: Option<Bytes>,
    skipme: bool,
}

impl Filter {
    fn matches(&self, c: &ClientHandle, me: u64) -> bool {
        !(self.skipme && c.id == me)
            && self.id.is_none_or(|id| id == c.id)
            && self.addr.as_ref().is_none_or(|a| *a == c.addr.to_string())
            && self.laddr.as_ref().is_none_or(|a| *a == c.laddr.to_string())
            && self.ty.is_none_or(|t| t == type_of(c))
            // Every connection runs as the `default` user.
            && self.user.as_ref().is_none_or(|u| u.as_ref() == b"default")
    }
}

pub fn kill(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let me = ctx.session.id();
    if args.len() == 3 {
        // Old form: CLIENT KILL addr:port → OK or an error.
        let addr = String::from_utf8_lossy(args[2]).into_owned();
        let filter = Filter {
            addr: Some(addr),
            ..Filter::default()
        };
        return match kill_matching(ctx, &filter, me) {
            0 => Err(Reply::err("ERR No such client")),
            _ => Ok(Reply::Ok),
        };
    }
    if !args.len().is_multiple_of(2) {
        return Err(syntax());
    }
    let mut f = Filter {
        skipme: true,
        ..Filter::default()
    };
    for pair in args[2..].chunks(2) {
        let (opt, val) = (&pair[0], &pair[1]);
        if is(opt, "ID") {
            match parse_i64(val) {
                Some(n) if n > 0 => f.id = Some(n as u64),
                _ => return Err(Reply::err("ERR client-id should be greater than 0")),
            }
        } else if is(opt, "TYPE") {
            f.ty = Some(parse_type(val)?);
        } else if is(opt, "ADDR") {
            f.addr = Some(String::from_utf8_lossy(val).into_owned());
        } else if is(opt, "LADDR") {
            f.laddr = Some(String::from_utf8_lossy(val).into_owned());
        } else if is(opt, "USER") {
            if val != b"default" {
                return Err(Reply::err(format!(
                    "ERR No such user '{}'",
                    String::from_utf8_lossy(val)
                )));
            }
            f.user = Some(Bytes::copy_from_slice(val));
        } else if is(opt, "SKIPME") {
            f.skipme = if is(val, "yes") {
                true
            } else if is(val, "no") {
                false
            } else {
                return Err(syntax());
            };
        } else {
            return Err(syntax());
        }
    }
    Ok(Reply::Int(kill_matching(ctx, &f, me) as i64))
}

fn kill_matching(ctx: &mut Ctx, f: &Filter, me: u64) -> usize {
    let mut n = 0;
    for c in ctx.state.clients.all() {
        if f.matches(&c, me) {
            n += 1;
            if c.id == me {
                ctx.session.close = true;
            } else {
                c.request_kill();
            }
        }
    }
    n
}

fn on_off(arg: &[u8]) -> Result<bool, Reply> {
    if is(arg, "on") {
        Ok(true)
    } else if is(arg, "off") {
        Ok(false)
    } else {
        Err(syntax())
    }
}

pub fn no_evict(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let v = on_off(args[2])?;
    ctx.session.handle.no_evict.store(v, Ordering::Relaxed);
    Ok(Reply::Ok)
}

pub fn no_touch(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let v = on_off(args[2])?;
    ctx.session.handle.no_touch.store(v, Ordering::Relaxed);
    Ok(Reply::Ok)
}

/// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: end another client's wait on keys
/// (BLPOP, XREAD BLOCK...), as if it timed out or with `-UNBLOCKED`. 1 if
/// it was waiting. A client in WAIT is not blocked on keys here and answers 0.
pub fn unblock(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let id = crate::cmd::parse::int(args[2])?;
    let error = match args.get(3) {
        None => false,
        Some(a) if is(a, "TIMEOUT") => false,
        Some(a) if is(a, "ERROR") => true,
        Some(_) => return Err(Reply::err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")),
    };
    if args.len() > 4 {
        return Err(syntax());
    }
    let blocking = &ctx.state.blocking;
    let Some(w) = u64::try_from(id).ok().and_then(|id| blocking.waiter_of(id)) else {
        return Ok(Reply::Int(0));
    };
    let reply = if error {
        Reply::err("UNBLOCKED client unblocked via CLIENT UNBLOCK")
    } else {
        w.on_timeout.clone()
    };
    Ok(Reply::Int(blocking.unblock_with(&w, reply, false) as i64))
}

pub fn reply(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if is(args[2], "ON") {
        ctx.session.reply_off = false;
        ctx.session.reply_skip = false;
        ctx.session.reply_skipping = false;
        Ok(Reply::Ok)
    } else if is(args[2], "OFF") {
        ctx.session.reply_off = true;
        Ok(Reply::Raw(Bytes::new()))
    } else if is(args[2], "SKIP") {
        if !ctx.session.reply_off {
            ctx.session.reply_skip = true;
        }
        Ok(Reply::Raw(Bytes::new()))
    } else {
        Err(syntax())
    }
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value` (Redis 7.2; redis-py and others
/// send it on connect and ignore a refusal, so answering it is cheap
/// goodwill that also makes `CLIENT LIST` more useful).
pub fn setinfo(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (slot, what) = if is(args[2], "LIB-NAME") {
        (&ctx.session.handle.lib_name, "lib-name")
    } else if is(args[2], "LIB-VER") {
        (&ctx.session.handle.lib_ver, "lib-ver")
    } else {
        return Err(Reply::err(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(args[2])
        )));
    };
    if validate_client_name(args[3]).is_err() {
        return Err(Reply::err(format!(
            "ERR {what} cannot contain spaces, newlines or special characters."
        )));
    }
    *slot.lock() = (!args[3].is_empty()).then(|| Bytes::copy_from_slice(args[3]));
    Ok(Reply::Ok)
}

pub const HELP: &[&str] = &[
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
];
