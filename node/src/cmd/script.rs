//! Scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT
//! (LOAD, EXISTS, FLUSH, KILL, HELP); Redis 7 functions: FCALL, FCALL_RO
//! and FUNCTION (LOAD, DELETE, FLUSH, LIST, DUMP, RESTORE, STATS, KILL,
//! HELP). The interpreters and what a script may do are in
//! [`crate::script`] and [`crate::script::function`].
//!
//! The EVAL and FCALL families hold every partition while a script runs
//! (`LOCK_ALL`: a script may touch keys it did not declare) and, from a
//! client, run on a blocking thread (`SCRIPT`: see
//! [`crate::cmd::Outcome::Script`]). Cluster routing follows the declared
//! keys (`numkeys`), as Redis'. The FUNCTION commands that change the
//! libraries hold every partition too: libraries are part of the dataset,
//! and a snapshot cut must see them as of its log offset.

use super::flags::*;
use super::{CmdResult, CommandSpec, Ctx, KeySpec, parse};
use crate::resp::Reply;
use crate::script::Mode;
use crate::script::function::RestorePolicy;

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
        KeySpec::Custom(super::numkeys_at_2),
        eval,
        "2.6.0",
        "Depends on the script that is executed.",
        "Executes a server-side Lua script."
    ),
    spec!(
        "evalsha",
        -3,
        EVAL,
        KeySpec::Custom(super::numkeys_at_2),
        evalsha,
        "2.6.0",
        "Depends on the script that is executed.",
        "Executes a server-side Lua script by SHA1 digest."
    ),
    spec!(
        "eval_ro",
        -3,
        EVAL_RO,
        KeySpec::Custom(super::numkeys_at_2),
        eval_ro,
        "7.0.0",
        "Depends on the script that is executed.",
        "Executes a read-only server-side Lua script."
    ),
    spec!(
        "evalsha_ro",
        -3,
        EVAL_RO,
        KeySpec::Custom(super::numkeys_at_2),
        evalsha_ro,
        "7.0.0",
        "Depends on the script that is executed.",
        "Executes a read-only server-side Lua script by SHA1 digest."
    ),
    spec!(
        "fcall",
        -3,
        EVAL,
        KeySpec::Custom(super::numkeys_at_2),
        fcall,
        "7.0.0",
        "Depends on the function that is executed.",
        "Invoke a function"
    ),
    spec!(
        "fcall_ro",
        -3,
        EVAL_RO,
        KeySpec::Custom(super::numkeys_at_2),
        fcall_ro,
        "7.0.0",
        "Depends on the function that is executed.",
        "Invoke a read-only function"
    ),
    CommandSpec {
        name: "function",
        arity: -2,
        flags: 0,
        keys: KeySpec::None,
        group: "scripting",
        summary: "A container for function commands",
        since: "7.0.0",
        complexity: "Depends on subcommand.",
        handler: function_help,
        subcommands: &[
            spec!(
                "delete",
                3,
                NOSCRIPT | WRITE | LOCK_ALL,
                KeySpec::None,
                function_delete,
                "7.0.0",
                "O(1)",
                "Delete a function by name"
            ),
            spec!(
                "dump",
                2,
                NOSCRIPT,
                KeySpec::None,
                function_dump,
                "7.0.0",
                "O(N) where N is the number of functions",
                "Dump all functions into a serialized binary payload"
            ),
            spec!(
                "flush",
                -2,
                NOSCRIPT | WRITE | LOCK_ALL,
                KeySpec::None,
                function_flush,
                "7.0.0",
                "O(N) where N is the number of functions deleted",
                "Deleting all functions"
            ),
            spec!(
                "help",
                2,
                LOADING | STALE,
                KeySpec::None,
                function_help,
                "7.0.0",
                "O(1)",
                "Show helpful text about the different subcommands"
            ),
            spec!(
                "kill",
                2,
                NOSCRIPT | ALLOW_BUSY,
                KeySpec::None,
                function_kill,
                "7.0.0",
                "O(1)",
                "Kill the function currently in execution."
            ),
            spec!(
                "list",
                -2,
                NOSCRIPT,
                KeySpec::None,
                function_list,
                "7.0.0",
                "O(N) where N is the number of functions",
                "List information about all the functions"
            ),
            spec!(
                "load",
                -3,
                NOSCRIPT | WRITE | DENYOOM | LOCK_ALL,
                KeySpec::None,
                function_load,
                "7.0.0",
                "O(1) (considering compilation time is redundant)",
                "Create a function with the given arguments (name, code, description)"
            ),
            spec!(
                "restore",
                -3,
                NOSCRIPT | WRITE | DENYOOM | LOCK_ALL,
                KeySpec::None,
                function_restore,
                "7.0.0",
                "O(N) where N is the number of functions on the payload",
                "Restore all the functions on the given payload"
            ),
            spec!(
                "stats",
                2,
                NOSCRIPT | ALLOW_BUSY,
                KeySpec::None,
                function_stats,
                "7.0.0",
                "O(1)",
                "Return information about the function currently running (name, description, duration)"
            ),
        ],
    },
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
    match ctx.state.scripts.kill(ctx.session.repl.master, true) {
        Reply::Error(e) => Err(Reply::Error(e)),
        r => Ok(r),
    }
}

fn script_load(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.state.scripts.load(args[2])
}

fn fcall(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    crate::script::function::fcall(ctx, args, false)
}

fn fcall_ro(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    crate::script::function::fcall(ctx, args, true)
}

/// What a primary's stream or the log replay sends is applied without the
/// limits a client gets (Redis' `mustObeyClient`).
fn obeyed(ctx: &Ctx) -> bool {
    ctx.session.repl.master || !ctx.session.client_connection
}

fn function_load(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let mut replace = false;
    let (options, code) = args[2..].split_at(args.len() - 3);
    for option in options {
        if parse::is(option, "replace") {
            replace = true;
        } else {
            return Err(Reply::err(format!(
                "ERR Unknown option given: {}",
                String::from_utf8_lossy(option)
            )));
        }
    }
    let reply = ctx
        .state
        .scripts
        .function_load(&ctx.state.db, code[0], replace, obeyed(ctx))?;
    ctx.dirty += 1;
    Ok(reply)
}

fn function_delete(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let reply = ctx.state.scripts.function_delete(&ctx.state.db, args[2])?;
    ctx.dirty += 1;
    Ok(reply)
}

fn function_flush(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    match args.len() {
        2 => {}
        3 if parse::is(args[2], "sync") || parse::is(args[2], "async") => {}
        3 => return Err(Reply::err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")),
        _ => return Err(super::subcommand_syntax(args)),
    }
    // One interpreter, freed in one go either way (as SCRIPT FLUSH).
    ctx.state.scripts.function_flush(&ctx.state.db);
    ctx.dirty += 1;
    Ok(Reply::Ok)
}

fn function_list(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (mut with_code, mut pattern) = (false, None);
    let mut i = 2;
    while i < args.len() {
        if !with_code && parse::is(args[i], "withcode") {
            with_code = true;
        } else if pattern.is_none() && parse::is(args[i], "libraryname") {
            if i + 1 >= args.len() {
                return Err(Reply::err("ERR library name argument was not given"));
            }
            i += 1;
            pattern = Some(args[i]);
        } else {
            return Err(Reply::err(format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(args[i])
            )));
        }
        i += 1;
    }
    Ok(ctx.state.scripts.function_list(&ctx.state.db, pattern, with_code))
}

fn function_dump(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(crate::script::Scripts::function_dump(&ctx.state.db))
}

fn function_restore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let policy = match args.get(3) {
        _ if args.len() > 4 => return Err(super::subcommand_syntax(args)),
        None => RestorePolicy::Append,
        Some(p) if parse::is(p, "append") => RestorePolicy::Append,
        Some(p) if parse::is(p, "replace") => RestorePolicy::Replace,
        Some(p) if parse::is(p, "flush") => RestorePolicy::Flush,
        Some(_) => {
            return Err(Reply::err(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ));
        }
    };
    let reply = ctx.state.scripts.function_restore(&ctx.state.db, args[2], policy)?;
    ctx.dirty += 1;
    Ok(reply)
}

fn function_stats(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    ctx.state.scripts.function_stats()
}

fn function_kill(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    match ctx.state.scripts.kill(ctx.session.repl.master, false) {
        Reply::Error(e) => Err(Reply::Error(e)),
        r => Ok(r),
    }
}

fn function_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(super::server::help_reply(
        "FUNCTION",
        &[
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library with the given library name and code.",
            "DELETE <LIBRARY NAME>",
            "    Delete the given library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return general information on all the libraries:",
            "    * Library name",
            "    * The engine used to run the Library",
            "    * Library description",
            "    * Functions list",
            "    * Library code (if WITHCODE is given)",
            "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            "STATS",
            "    Return information about the current function running:",
            "    * Function name",
            "    * Command used to run the function",
            "    * Duration in MS that the function is running",
            "    If no function is running, return nil",
            "    In addition, returns a list of available engines.",
            "KILL",
            "    Kill the current running function.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete all the libraries.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the libraries.",
            "    * SYNC: Synchronously flush the libraries.",
            "DUMP",
            "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
            "    control how to handle existing libraries (default APPEND):",
            "    * FLUSH: delete all existing libraries.",
            "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
            "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
            "      libraries with the new libraries (notice that even on this option there is a chance of failure",
            "      in case of functions name collision with another library).",
        ],
    ))
}
