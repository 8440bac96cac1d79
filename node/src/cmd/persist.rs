//! Snapshot commands: SAVE, BGSAVE, LASTSAVE, SHUTDOWN, and DIGEST.
//!
//! SAVE and BGSAVE take no partition locks themselves (the cut takes them
//! all for an instant), so they are `KeySpec::None`. Inside MULTI/EXEC every
//! partition is already held by the transaction, so a cut cannot start
//! there: BGSAVE in a transaction is scheduled for right after it instead,
//! and SAVE is refused in MULTI as in Redis (`no_multi`).
//!
//! `DIGEST` answers a 32-hex-digit hash of the whole dataset, `DIGEST SLOT
//! <slot>` of one slot (see [`crate::persist::digest`]): equal on two nodes
//! with the same data, whatever order it was written in.

use super::flags::*;
use super::parse::is;
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::persist::digest;
use crate::persist::save::{self, SaveError};
use crate::resp::Reply;
use crate::server::shutdown::StopOptions;
use crate::slot::SLOTS;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "server",
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
        "save",
        1,
        ADMIN | NOSCRIPT | NO_MULTI,
        KeySpec::None,
        save_cmd,
        "1.0.0",
        "O(N) where N is the total number of keys in all databases",
        "Synchronously saves the database(s) to disk."
    ),
    spec!(
        "bgsave",
        -1,
        ADMIN | NOSCRIPT,
        KeySpec::None,
        bgsave_cmd,
        "1.0.0",
        "O(N) where N is the total number of keys in all databases",
        "Asynchronously saves the database(s) to disk."
    ),
    spec!(
        "lastsave",
        1,
        LOADING | STALE | FAST,
        KeySpec::None,
        lastsave,
        "1.0.0",
        "O(1)",
        "Returns the Unix timestamp of the last successful save to disk."
    ),
    spec!(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI | ALLOW_BUSY,
        KeySpec::None,
        shutdown,
        "1.0.0",
        "O(N) when saving, where N is the total number of keys in all databases when saving data, otherwise O(1)",
        "Synchronously saves the database(s) to disk and shuts down the Redis server."
    ),
    spec!(
        "digest",
        -1,
        READONLY | STALE,
        KeySpec::All,
        digest_cmd,
        "ferrokv",
        "O(N) where N is the number of keys (in the slot with SLOT)",
        "Returns an order-independent hash of the dataset (DIGEST) or of one slot (DIGEST SLOT <slot>)."
    ),
];

fn owner(ctx: &Ctx) -> Result<std::sync::Arc<crate::state::State>, Reply> {
    ctx.state
        .this
        .upgrade()
        .ok_or_else(|| Reply::err("ERR server is shutting down"))
}

fn save_cmd(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let state = owner(ctx)?;
    // SAVE waits for the writer thread. On a multi-threaded runtime, let
    // tokio move this worker's other connections elsewhere meanwhile.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let result = if multi_thread {
        tokio::task::block_in_place(|| save::save(&state))
    } else {
        save::save(&state)
    };
    match result {
        Ok(()) => Ok(Reply::Ok),
        Err(SaveError::InProgress) => Err(Reply::err("ERR Background save already in progress")),
        Err(e) => {
            tracing::error!(error = %e, "SAVE failed");
            Err(Reply::err(format!("ERR {e}")))
        }
    }
}

fn bgsave_cmd(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let schedule = match args.len() {
        1 => false,
        2 if is(args[1], "SCHEDULE") => true,
        _ => return Err(super::parse::syntax()),
    };
    if ctx.in_exec {
        ctx.state.saves.schedule();
        return Ok(Reply::status("Background saving scheduled"));
    }
    let state = owner(ctx)?;
    match save::bgsave(&state) {
        Ok(_) => Ok(Reply::status("Background saving started")),
        Err(SaveError::InProgress) if schedule => {
            state.saves.schedule();
            Ok(Reply::status("Background saving scheduled"))
        }
        Err(SaveError::InProgress) => Err(Reply::err(
            "ERR Background save already in progress. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
        )),
        Err(e) => Err(Reply::err(format!("ERR {e}"))),
    }
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`: ask the process to stop
/// ([`crate::server::Running::stop`] says in which order) and close this
/// connection without a reply, as Redis does on success. `FORCE` is
/// accepted: an error never keeps this node up (see `stop`). `ABORT`
/// cancels a stop that is waiting for replicas in Redis; here client
/// connections are closed the moment a stop begins, so none is ever in
/// progress for a client to see.
fn shutdown(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (mut save, mut nosave, mut now, mut abort, mut other) = (false, false, false, false, false);
    for a in &args[1..] {
        match () {
            _ if is(a, "NOSAVE") => nosave = true,
            _ if is(a, "SAVE") => save = true,
            _ if is(a, "NOW") => now = true,
            _ if is(a, "FORCE") => other = true,
            _ if is(a, "ABORT") => abort = true,
            _ => return Err(super::parse::syntax()),
        }
    }
    if (abort && (save || nosave || now || other)) || (save && nosave) {
        return Err(super::parse::syntax());
    }
    if abort {
        return Err(Reply::err("ERR No shutdown in progress."));
    }
    // A busy script: only SHUTDOWN NOSAVE may stop the node (Redis' rule; a
    // snapshot now would hold half the script), and it stops the script.
    let scripts = &ctx.state.scripts;
    if scripts.is_busy() {
        if !nosave {
            return Err(Reply::err(scripts.busy_error()));
        }
        scripts.abort_for_shutdown();
    }
    tracing::info!(client = ctx.session.handle.id, "SHUTDOWN requested");
    ctx.state.stop.request(StopOptions {
        save: (save || nosave).then_some(save),
        now,
    });
    // No reply: the connection just closes, as in Redis.
    ctx.session.close = true;
    ctx.session.reply_skipping = true;
    Ok(Reply::Ok)
}

fn lastsave(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    let t = ctx.state.saves.lastsave.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Reply::Int(t as i64))
}

fn digest_cmd(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let d = match args.len() {
        1 => digest::of_keys(&mut ctx.ks),
        3 if is(args[1], "SLOT") => {
            let n = super::parse::int(args[2])?;
            if !(0..SLOTS as i64).contains(&n) {
                return Err(Reply::err("ERR Invalid slot"));
            }
            let mut acc = digest::EMPTY;
            ctx.ks
                .for_each_key_in_slot(n as u16, |e| acc = digest::combine(acc, digest::key_digest(e)));
            acc
        }
        _ => return Err(super::parse::syntax()),
    };
    Ok(Reply::bulk(digest::hex(d)))
}
