//! Replication commands: REPLICAOF/SLAVEOF (with an optional `EPOCH n` for
//! fenced role changes), ROLE, WAIT, and the replica handshake commands
//! REPLCONF, PSYNC and SYNC. The machinery lives in [`crate::repl`].
//!
//! Role commands:
//! - `REPLICAOF host port [EPOCH n]`, `REPLICAOF NO ONE [EPOCH n]`: with
//!   `EPOCH`, `n` older than the node's config epoch is refused with
//!   `-STALEEPOCH`; equal is applied (idempotent: the same command twice is
//!   a no-op); newer is persisted first, then applied.
//! - `REPLCONF epoch n` (handshake): answered `+EPOCH <ours>`, or `-FENCED`
//!   when the replica knows a newer epoch than this node (which must then no
//!   longer act as its primary).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::flags::*;
use super::parse::{int, is, syntax};
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::repl::{ReplError, link_state, primary};
use crate::resp::Reply;

macro_rules! spec {
    ($group:literal, $name:literal, $arity:expr, $flags:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: KeySpec::None,
            group: $group,
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "server",
        "replicaof",
        -3,
        ADMIN | NOSCRIPT | STALE,
        replicaof,
        "5.0.0",
        "O(1)",
        "Configures a server as replica of another, or promotes it to a master (optionally fenced by EPOCH n)."
    ),
    spec!(
        "server",
        "slaveof",
        -3,
        ADMIN | NOSCRIPT | STALE,
        replicaof,
        "1.0.0",
        "O(1)",
        "Sets a Redis server as a replica of another, or promotes it to being a master."
    ),
    spec!(
        "server",
        "role",
        1,
        NOSCRIPT | LOADING | STALE | FAST,
        role,
        "2.8.12",
        "O(1)",
        "Returns the replication role."
    ),
    spec!(
        "server",
        "replconf",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | ALLOW_BUSY,
        replconf,
        "3.0.0",
        "O(1)",
        "An internal command for configuring the replication stream."
    ),
    spec!(
        "server",
        "psync",
        -3,
        ADMIN | NOSCRIPT | NO_MULTI,
        psync,
        "2.8.0",
        "O(1)",
        "An internal command used in replication."
    ),
    spec!(
        "server",
        "sync",
        1,
        ADMIN | NOSCRIPT | NO_MULTI,
        sync,
        "1.0.0",
        "O(1)",
        "An internal command used in replication."
    ),
    spec!(
        "generic",
        "wait",
        3,
        NOSCRIPT,
        wait,
        "3.0.0",
        "O(1)",
        "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed."
    ),
];

fn epoch_arg(args: &[&[u8]]) -> Result<Option<u64>, Reply> {
    match args {
        [] => Ok(None),
        [kw, n] if is(kw, "EPOCH") => {
            let n = int(n)?;
            u64::try_from(n)
                .map(Some)
                .map_err(|_| Reply::err("ERR epoch must be a non-negative integer"))
        }
        _ => Err(syntax()),
    }
}

fn repl_error(e: ReplError) -> Reply {
    match e {
        ReplError::StaleEpoch { .. } => Reply::err(format!("STALEEPOCH {e}")),
        e => Reply::err(format!("ERR {e}")),
    }
}

fn replicaof(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let epoch = epoch_arg(&args[3..])?;
    let repl = &ctx.state.repl;
    if is(args[1], "NO") && is(args[2], "ONE") {
        repl.accept_epoch(epoch).map_err(repl_error)?;
        repl.become_primary(ctx.state);
        return Ok(Reply::Ok);
    }
    let port = int(args[2])?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Reply::err("ERR Invalid master port"))?;
    let host = String::from_utf8_lossy(args[1]).into_owned();
    repl.accept_epoch(epoch).map_err(repl_error)?;
    match repl.become_replica(&host, port) {
        Ok(true) => Ok(Reply::Ok),
        Ok(false) => Ok(Reply::status("OK Already connected to specified master")),
        Err(e) => Err(repl_error(e)),
    }
}

fn role(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let st = ctx.state;
    let offset = st.db.wlog.offset();
    match st.repl.master() {
        None => {
            let peers = st.repl.replicas.lock().clone();
            let list = peers
                .iter()
                .filter(|p| p.state.load(Ordering::Relaxed) == crate::repl::sender_state::ONLINE)
                .map(|p| {
                    Reply::Array(vec![
                        Reply::bulk(&p.ip),
                        Reply::bulk(p.listening_port.to_string()),
                        Reply::bulk(p.ack_offset.load(Ordering::Relaxed).to_string()),
                    ])
                })
                .collect();
            Ok(Reply::Array(vec![
                Reply::bulk_static("master"),
                Reply::Int(offset as i64),
                Reply::Array(list),
            ]))
        }
        Some((host, port, status)) => {
            let ls = status.state.load(Ordering::Relaxed);
            let off = if ls == link_state::CONNECTED { offset as i64 } else { -1 };
            Ok(Reply::Array(vec![
                Reply::bulk_static("slave"),
                Reply::bulk(host),
                Reply::Int(port as i64),
                Reply::bulk(link_state::name(ls)),
                Reply::Int(off),
            ]))
        }
    }
}

fn replconf(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len().is_multiple_of(2) {
        return Err(syntax());
    }
    let mut epoch_reply = None;
    for pair in args[1..].chunks(2) {
        let (opt, val) = (&pair[0], &pair[1]);
        if is(opt, "listening-port") {
            let p = int(val)?;
            ctx.session.repl.listening_port = u16::try_from(p).ok();
        } else if is(opt, "ip-address") || is(opt, "capa") || is(opt, "rdb-only") || is(opt, "rdb-filter-only") {
        } else if is(opt, "ack") || is(opt, "getack") {
            // Only meaningful on a replication stream, never answered.
            return Ok(Reply::Raw(Bytes::new()));
        } else if is(opt, "epoch") {
            let theirs =
                u64::try_from(int(val)?).map_err(|_| Reply::err("ERR epoch must be a non-negative integer"))?;
            let ours = ctx.state.repl.epoch.get();
            if theirs > ours {
                return Err(Reply::err(format!(
                    "FENCED this node's config epoch {ours} is older than the replica's {theirs}: it is no longer a primary"
                )));
            }
            ctx.session.repl.peer_epoch = Some(theirs);
            epoch_reply = Some(ours);
        } else {
            return Err(Reply::err(format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    Ok(match epoch_reply {
        Some(e) => Reply::status(format!("EPOCH {e}")),
        None => Reply::Ok,
    })
}

/// Checks shared by PSYNC and SYNC.
fn may_serve_replica(ctx: &Ctx) -> Result<(), Reply> {
    let repl = &ctx.state.repl;
    let ours = repl.epoch.get();
    if let Some(theirs) = ctx.session.repl.peer_epoch
        && theirs > ours
    {
        return Err(Reply::err(format!(
            "FENCED this node's config epoch {ours} is older than the replica's {theirs}"
        )));
    }
    if let Some((_, _, status)) = repl.master()
        && status.state.load(Ordering::Relaxed) != link_state::CONNECTED
    {
        return Err(Reply::err("NOMASTERLINK Can't SYNC while not connected with my master"));
    }
    Ok(())
}

fn psync(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    may_serve_replica(ctx)?;
    let offset = int(args[2])?;
    let plan = primary::plan_psync(ctx.state, args[1], offset);
    ctx.session.repl.psync = Some(plan);
    Ok(Reply::Raw(Bytes::new()))
}

fn sync(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    may_serve_replica(ctx)?;
    // As PSYNC (see `primary::plan_psync`): the stream after the snapshot is kept.
    ctx.state.db.wlog.keep_backlog();
    ctx.session.repl.psync = Some(primary::PsyncPlan { full: true, from: 0 });
    Ok(Reply::Raw(Bytes::new()))
}

fn wait(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let repl = &ctx.state.repl;
    if repl.is_replica() {
        return Err(Reply::err(
            "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is \
             configured to be writable (which is not the default) writes to replicas are just local and are not \
             propagated.",
        ));
    }
    let numreplicas = int(args[1])?.max(0) as usize;
    let timeout = int(args[2])?;
    if timeout < 0 {
        return Err(Reply::err("ERR timeout is negative"));
    }
    let target = ctx.session.handle.write_offset.load(Ordering::Relaxed);
    let n = repl.acked_count(target);
    if ctx.in_exec || n >= numreplicas {
        return Ok(Reply::Int(n as i64));
    }
    ctx.session.repl.wait = Some(primary::WaitRequest {
        numreplicas,
        target,
        timeout: (timeout > 0).then(|| Duration::from_millis(timeout as u64)),
    });
    // Replaced by the connection once the wait is over.
    Ok(Reply::Int(n as i64))
}
