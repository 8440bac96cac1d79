//! Scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT
//! (LOAD, EXISTS, FLUSH, KILL, HELP). The interpreter and what a script
//! may do are in [`crate::script`].
//!
//! The EVAL family holds every partition while a script runs (`LOCK_ALL`:
//! a script may touch keys it did not declare) and, from a client, runs on
//! a blocking thread (`SCRIPT`: see [`crate::cmd::Outcome::Script`]).
//! Cluster routing follows the declared keys (`numkeys`), as Redis'.

use super::flags::*;
use super::{CmdResult, CommandSpec, Ctx, KeySpec, parse};
use crate::resp::Reply;
use crate::script::Mode;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "scripting",
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

const EVAL: u32 = NOSCRIPT | SKIP_MONITOR | MAY_REPLICATE | NO_MANDATORY_KEYS | STALE | LOCK_ALL | SCRIPT;
const EVAL_RO: u32 = NOSCRIPT | SKIP_MONITOR | NO_MANDATORY_KEYS | STALE | READONLY | LOCK_ALL | SCRIPT;

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "eval",
        -3,
        EVAL,
        KeySpec::Custom(super::zset::numkeys_at_2),
        eval,
        "2.6.0",
        "Depends on the script that is executed.",
        "Executes a server-side Lua script."
    ),
    spec!(
        "evalsha",
        -3,
        EVAL,
        KeySpec::Custom(super::zset::numkeys_at_2),
        evalsha,
        "2.6.0",
        "Depends on the script that is executed.",
        "Executes a server-side Lua script by SHA1 digest."
    ),
    spec!(
        "eval_ro",
        -3,
        EVAL_RO,
        KeySpec::Custom(super::zset::numkeys_at_2),
        eval_ro,
        "7.0.0",
        "Depends on the script that is executed.",
        "Executes a read-only server-side Lua script."
    ),
    spec!(
        "evalsha_ro",
        -3,
        EVAL_RO,
        KeySpec::Custom(super::zset::numkeys_at_2),
        evalsha_ro,
        "7.0.0",
        "Depends on the script that is executed.",
        "Executes a read-only server-side Lua script by SHA1 digest."
    ),
    CommandSpec {
        name: "script",
        arity: -2,
        flags: 0,
        keys: KeySpec::None,
        group: "scripting",
        summary: "A container for Lua scripts management commands.",
        since: "2.6.0",
        complexity: "Depends on subcommand.",
        handler: script_help,
        subcommands: &[
            spec!(
                "exists",
                -3,
                NOSCRIPT,
                KeySpec::None,
                script_exists,
                "2.6.0",
                "O(N) with N being the number of scripts to check (so checking a single script is an O(1) operation).",
                "Determines whether server-side Lua scripts exist in the script cache."
            ),
            spec!(
                "flush",
                -2,
                NOSCRIPT,
                KeySpec::None,
                script_flush,
                "2.6.0",
                "O(N) with N being the number of scripts in cache",
                "Removes all server-side Lua scripts from the script cache."
            ),
            spec!(
                "help",
                2,
                LOADING | STALE,
                KeySpec::None,
                script_help,
                "5.0.0",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
            spec!(
                "kill",
                2,
                NOSCRIPT | ALLOW_BUSY,
                KeySpec::None,
                script_kill,
                "2.6.0",
                "O(1)",
                "Terminates a server-side Lua script during execution."
            ),
            spec!(
                "load",
                3,
                NOSCRIPT | STALE,
                KeySpec::None,
                script_load,
                "2.6.0",
                "O(N) with N being the length in bytes of the script body.",
                "Loads a server-side Lua script to the script cache."
            ),
        ],
    },
];

fn eval(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    crate::script::eval(
        ctx,
        args,
        Mode {
            by_sha: false,
            read_only: false,
        },
    )
}

fn evalsha(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    crate::script::eval(
        ctx,
        args,
        Mode {
            by_sha: true,
            read_only: false,
        },
    )
}

fn eval_ro(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    crate::script::eval(
        ctx,
        args,
        Mode {
            by_sha: false,
            read_only: true,
        },
    )
}

fn evalsha_ro(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    crate::script::eval(
        ctx,
        args,
        Mode {
            by_sha: true,
            read_only: true,
        },
    )
}

fn script_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(super::server::help_reply(
        "SCRIPT",
        &[
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
        ],
    ))
}

fn script_exists(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Array(
        ctx.state
            .scripts
            .exists(&args[2..])
            .into_iter()
            .map(|e| Reply::Int(e as i64))
            .collect(),
    ))
}

fn script_flush(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    match args.len() {
        2 => {}
        3 if parse::is(args[2], "sync") || parse::is(args[2], "async") => {}
        _ => return Err(Reply::err("ERR SCRIPT FLUSH only support SYNC|ASYNC option")),
    }
    // The interpreter is dropped here either way: it is one allocation
    // arena, freed in one go, not a keyspace to walk.
    ctx.state.scripts.flush();
    Ok(Reply::Ok)
}

fn script_kill(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    match ctx.state.scripts.kill(ctx.session.repl.master) {
        Reply::Error(e) => Err(Reply::Error(e)),
        r => Ok(r),
    }
}

fn script_load(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.state.scripts.load(args[2])
}
