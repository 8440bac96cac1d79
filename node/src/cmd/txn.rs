//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! EXEC locks every partition, then checks the WATCH flag, then runs the
//! queued commands: writers set WATCH flags while holding their partition
//! lock, so once EXEC holds all of them the flag it reads is final and
//! nothing can interleave with the transaction.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::flags::*;
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::resp::Reply;
use crate::session::Multi;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "transactions",
            summary: $summary,
            since: "1.2.0",
            complexity: "O(1)",
            handler: $h,
            subcommands: &[],
        }
    };
}

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "multi",
        1,
        NOSCRIPT | LOADING | STALE | FAST | TXN_CONTROL | ALLOW_BUSY,
        KeySpec::None,
        multi,
        "Starts a transaction."
    ),
    spec!(
        "exec",
        1,
        NOSCRIPT | LOADING | STALE | SKIP_SLOWLOG | TXN_CONTROL,
        KeySpec::None,
        exec,
        "Executes all commands in a transaction."
    ),
    spec!(
        "discard",
        1,
        NOSCRIPT | LOADING | STALE | FAST | TXN_CONTROL | ALLOW_BUSY,
        KeySpec::None,
        discard,
        "Discards a transaction."
    ),
    spec!(
        "watch",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | TXN_CONTROL,
        super::all_keys_from(1),
        watch,
        "Monitors changes to keys to determine the execution of a transaction."
    ),
    spec!(
        "unwatch",
        1,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        KeySpec::None,
        unwatch,
        "Forgets about watched keys of a transaction."
    ),
];

fn multi(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    if ctx.session.multi.is_some() {
        return Err(Reply::err("ERR MULTI calls can not be nested"));
    }
    ctx.session.multi = Some(Multi {
        queue: Vec::new(),
        aborted: false,
    });
    ctx.session.handle.multi.store(0, Ordering::Relaxed);
    Ok(Reply::Ok)
}

/// Leave MULTI and forget watched keys (EXEC, DISCARD, RESET, disconnect).
pub fn discard_state(ctx: &mut Ctx) {
    ctx.session.multi = None;
    ctx.session.handle.multi.store(-1, Ordering::Relaxed);
    unwatch_all(ctx);
}

pub fn unwatch_all(ctx: &mut Ctx) {
    let keys = std::mem::take(&mut ctx.session.watched);
    ctx.state.watches.unwatch(&keys, &ctx.session.watch_dirty);
    ctx.session.watch_dirty.store(false, Ordering::Release);
}

fn discard(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    if ctx.session.multi.is_none() {
        return Err(Reply::err("ERR DISCARD without MULTI"));
    }
    discard_state(ctx);
    Ok(Reply::Ok)
}

fn exec(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let Some(multi) = ctx.session.multi.take() else {
        return Err(Reply::err("ERR EXEC without MULTI"));
    };
    if multi.aborted {
        discard_state(ctx);
        return Err(Reply::err(
            "EXECABORT Transaction discarded because of previous errors.",
        ));
    }
    // Take every partition first; only then is the WATCH flag final.
    let master_apply = ctx.ks.master_apply;
    ctx.ks = ctx.state.db.lock_all(ctx.ks.now);
    ctx.ks.master_apply = master_apply;
    if ctx.state.cluster.migrations.any() || ctx.session.admitted_asking || ctx.session.routed_migrating {
        let views: Vec<_> = multi.queue.iter().map(|(s, a)| (*s, super::view(a))).collect();
        let queue: Vec<_> = views.iter().map(|(s, a)| (*s, a.as_slice())).collect();
        if let Some(r) = crate::cluster::migrate::check_locked(ctx.state, ctx.session, &queue, &mut ctx.ks) {
            discard_state(ctx);
            return Err(r);
        }
    }
    let dirty = ctx.session.watch_dirty.load(Ordering::Acquire);
    discard_state(ctx);
    if dirty {
        return Ok(Reply::NullArray);
    }
    ctx.in_exec = true;
    let mut replies = Vec::with_capacity(multi.queue.len());
    for (spec, args) in multi.queue {
        replies.push(super::run_queued(ctx, spec, &super::view(&args), None));
    }
    ctx.block = None;
    ctx.in_exec = false;
    Ok(Reply::Array(replies))
}

fn watch(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if ctx.session.multi.is_some() {
        return Err(Reply::err("ERR WATCH inside MULTI is not allowed"));
    }
    for &k in &args[1..] {
        if !ctx.session.watched.iter().any(|w| w == k) {
            let k = Bytes::copy_from_slice(k);
            ctx.state.watches.watch(k.clone(), &ctx.session.watch_dirty);
            ctx.session.watched.push(k);
        }
    }
    Ok(Reply::Ok)
}

fn unwatch(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    unwatch_all(ctx);
    Ok(Reply::Ok)
}
