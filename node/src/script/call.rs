//! Running a script and the commands it calls: Redis' `scriptPrepareForRun`
//! (refusals before the script starts) and `scriptCall` (the checks on
//! each `redis.call`), in the same order and with the same errors.

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use mlua::{Function, Lua, MultiValue, Value};

use super::{Engine, convert, flag};
use crate::cmd::{CmdResult, Ctx, flags};
use crate::resp::Reply;

/// Refuse to start a script whose shebang flags do not fit the node's state.
/// Scripts without a shebang are checked command by command instead.
pub fn prepare(ctx: &Ctx, script_flags: u32, read_only: bool) -> Result<(), Reply> {
    if script_flags & flag::COMPAT != 0 {
        return Ok(());
    }
    let state = ctx.state;
    let obey = ctx.session.repl.master;
    if script_flags & flag::NO_CLUSTER != 0 && state.cluster.is_enabled() {
        return Err(Reply::err(
            "ERR Can not run script on cluster, 'no-cluster' flag is set.",
        ));
    }
    if script_flags & flag::NO_WRITES == 0 {
        if !obey && state.repl.is_replica() && state.config.replica_read_only.load(Ordering::Relaxed) {
            return Err(Reply::err(
                "READONLY Can not run script with write flag on readonly replica",
            ));
        }
        if !obey && let Some(msg) = state.aof.write_error() {
            return Err(Reply::err(msg));
        }
        if read_only {
            return Err(Reply::err(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        if !state.repl.is_replica()
            && let Some(msg) = state.repl.refuse_write(state)
        {
            return Err(Reply::err(msg));
        }
    }
    if script_flags & (flag::ALLOW_OOM | flag::NO_WRITES) == 0 && crate::cmd::is_over_maxmemory(state) {
        return Err(Reply::err(
            "OOM allow-oom flag is not set on the script, can not run it when used memory > 'maxmemory'",
        ));
    }
    Ok(())
}

/// What one script run knows while it calls commands.
struct Run {
    read_only: bool,
    allow_oom: bool,
    cross_slot: bool,
    /// Over `maxmemory` when the script started.
    pre_oom: bool,
    /// The script asked for RESP3 replies (`redis.setresp(3)`).
    resp3: bool,
    /// `redis.set_repl` flags: 0 keeps the script's writes out of the write log.
    repl: u8,
    /// The slot of the keys it declared or first touched (cluster mode).
    slot: Option<u16>,
}

/// Run the compiled script `func` with `redis.call` bound to `ctx`. `name`
/// (the script's SHA1 or the function's name) is what errors cite; a
/// function gets `fn_args` (its keys and arguments).
#[allow(clippy::too_many_arguments)]
pub fn run(
    ctx: &mut Ctx,
    engine: &Engine,
    func: &Function,
    name: &str,
    script_flags: u32,
    read_only: bool,
    declared_slot: Option<u16>,
    fn_args: Option<(mlua::Table, mlua::Table)>,
) -> CmdResult {
    let compat = script_flags & flag::COMPAT != 0;
    let run = RefCell::new(Run {
        read_only: read_only || (!compat && script_flags & flag::NO_WRITES != 0),
        allow_oom: !compat && script_flags & flag::ALLOW_OOM != 0,
        cross_slot: compat || script_flags & flag::ALLOW_CROSS_SLOT != 0,
        pre_oom: crate::cmd::is_over_maxmemory(ctx.state),
        resp3: false,
        repl: 3,
        slot: declared_slot,
    });
    let scripts = &ctx.state.scripts;
    // Blocking commands answer at once inside a script, as inside EXEC.
    let was_in_exec = std::mem::replace(&mut ctx.in_exec, true);
    ctx.in_script = true;
    let proto = ctx.session.proto;
    let ctx_cell = RefCell::new(&mut *ctx);
    let result = engine.lua.scope(|scope| {
        let call = scope.create_function_mut(|lua, ()| {
            let mut ctx = ctx_cell.borrow_mut();
            let mut run = run.borrow_mut();
            let argv = lua
                .remove_app_data::<super::CallArgs>()
                .map(|a| a.0)
                .unwrap_or_default();
            call_command(lua, &mut ctx, &mut run, scripts, argv)
        })?;
        engine.rt.raw_set("call", call)?;
        let setresp = scope.create_function(|lua, args: MultiValue| {
            if args.len() != 1 {
                return super::error_table(lua, "ERR redis.setresp() requires one argument.");
            }
            match super::number(&args[0]).map(|n| n as i64) {
                Some(v @ (2 | 3)) => {
                    run.borrow_mut().resp3 = v == 3;
                    Ok(Value::Nil)
                }
                _ => super::error_table(lua, "ERR RESP version must be 2 or 3."),
            }
        })?;
        engine.rt.raw_set("setresp", setresp)?;
        let set_repl = scope.create_function(|lua, args: MultiValue| {
            if args.len() != 1 {
                return super::error_table(lua, "ERR redis.set_repl() requires two arguments.");
            }
            let v = args.front().and_then(super::number).unwrap_or(0.0) as i64;
            if v & !3 != 0 {
                return super::error_table(
                    lua,
                    "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
                );
            }
            run.borrow_mut().repl = v as u8;
            Ok(Value::Nil)
        })?;
        engine.rt.raw_set("set_repl", set_repl)?;
        engine.rt.raw_set("raised", Value::Nil)?;
        let runner: Function = engine.rt.raw_get("run")?;
        let (ok, value): (bool, Value) = match fn_args {
            None => runner.call(func.clone())?,
            Some((keys, args)) => runner.call((func.clone(), keys, args))?,
        };
        Ok(if ok {
            convert::to_reply(&value, run.borrow().resp3)
        } else {
            error_reply(&value, name)
        })
    });
    for name in ["call", "setresp", "set_repl", "raised"] {
        let _ = engine.rt.raw_set(name, Value::Nil);
    }
    let ctx = ctx_cell.into_inner();
    ctx.in_exec = was_in_exec;
    ctx.in_script = false;
    ctx.session.proto = proto;
    ctx.block = None;
    match result {
        Ok(Reply::Error(e)) => Err(Reply::Error(e)),
        Ok(r) => Ok(r),
        Err(e) => Err(Reply::err(format!(
            "ERR Error running script {name}, {}",
            super::lua_message(&e)
        ))),
    }
}

/// The reply to a script that raised an error: its message, and where in
/// the script (`... script: <sha>, on @user_script:<line>.`).
fn error_reply(value: &Value, sha: &str) -> Reply {
    let Value::Table(t) = value else {
        let msg = match value {
            Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "execution failure".to_string(),
        };
        let msg: String = msg.chars().take(100).collect();
        return Reply::err(format!("ERR Error running script {sha}, {msg}").replace(['\r', '\n'], " "));
    };
    let text = |name: &str| match t.raw_get::<Value>(name) {
        Ok(Value::String(s)) => Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
        Ok(Value::Number(n)) => Some(super::format_lua_number(n)),
        Ok(Value::Integer(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut msg = text("err").unwrap_or_else(|| "ERR unknown error".to_string());
    if let (Some(source), Some(line)) = (text("source"), text("line")) {
        msg = format!("{msg} script: {sha}, on {source}:{line}.");
    }
    Reply::err(msg.replace(['\r', '\n'], " "))
}

/// `redis.call`/`redis.pcall`: run one command, return its reply as a Lua
/// value and whether it is an error.
fn call_command(
    lua: &Lua,
    ctx: &mut Ctx,
    run: &mut Run,
    scripts: &super::Scripts,
    argv: Vec<Vec<u8>>,
) -> mlua::Result<(Value, bool)> {
    let failed = |msg: &str| -> mlua::Result<(Value, bool)> { Ok((super::error_table(lua, msg)?, true)) };
    if argv.is_empty() {
        return failed("ERR Please specify at least one argument for this redis lib call");
    }
    let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
    let reply = match execute(ctx, run, scripts, &argv) {
        Ok(reply) => reply,
        Err((spec, msg)) => {
            // Refused before it ran: a rejected call of the command, and an
            // error reply in INFO errorstats, as Redis counts them.
            let e = Reply::err(msg.clone());
            if let Some(spec) = spec {
                ctx.state.stats.commands.local(crate::cmd::table().id(spec)).rejected();
            }
            crate::cmd::count_error(ctx.state, &e);
            return failed(&msg);
        }
    };
    let is_error = reply.is_error();
    if is_error {
        crate::cmd::count_error(ctx.state, &reply);
    }
    Ok((convert::to_lua(lua, &reply, run.resp3)?, is_error))
}

type Refusal = (Option<&'static crate::cmd::CommandSpec>, String);

/// Check and run one command of a script (Redis' `scriptCall`).
fn execute(ctx: &mut Ctx, run: &mut Run, scripts: &super::Scripts, argv: &[&[u8]]) -> Result<Reply, Refusal> {
    let state = ctx.state;
    let spec = crate::cmd::resolve_for_script(argv).map_err(|m| (None, m.to_string()))?;
    let refuse = |msg: &str| Err((Some(spec), msg.to_string()));
    if spec.flags & flags::NOSCRIPT != 0 {
        return refuse("ERR This Redis command is not allowed from script");
    }
    let write = spec.flags & flags::WRITE != 0;
    if run.read_only && spec.flags & (flags::WRITE | flags::MAY_REPLICATE) != 0 {
        return refuse("ERR Write commands are not allowed from read-only scripts.");
    }
    let obey = ctx.session.repl.master;
    let wrote = scripts.run.wrote.load(Ordering::Relaxed);
    // Once a script has written, it cannot be failed half-way by the
    // node's state: these checks stop only its first write.
    if write && !wrote {
        if !obey && state.repl.is_replica() && state.config.replica_read_only.load(Ordering::Relaxed) {
            return refuse("READONLY You can't write against a read only replica.");
        }
        if let Some(msg) = state.aof.write_error() {
            return refuse(&msg);
        }
        if !obey
            && !state.repl.is_replica()
            && let Some(msg) = state.repl.refuse_write(state)
        {
            return refuse(msg);
        }
    }
    if !run.allow_oom
        && !obey
        && !wrote
        && run.pre_oom
        && spec.flags & flags::DENYOOM != 0
        && state.config.maxmemory.load(Ordering::Relaxed) > 0
    {
        return refuse("OOM command not allowed when used memory > 'maxmemory'.");
    }
    if write {
        scripts.run.wrote.store(true, Ordering::Release);
    }
    if state.cluster.is_enabled() && !obey {
        check_cluster(ctx, run, spec, argv).map_err(|m| (Some(spec), m.to_string()))?;
    }
    let log_len = ctx.log.len();
    ctx.session.proto = if run.resp3 { 3 } else { 2 };
    let reply = crate::cmd::run_queued(ctx, spec, argv, Some("lua"));
    if run.repl == 0 {
        ctx.log.truncate(log_len);
    }
    Ok(reply)
}

/// In cluster mode a script may only touch keys this node serves, and
/// (unless it allows cross-slot keys) all in one slot.
fn check_cluster(
    ctx: &mut Ctx,
    run: &mut Run,
    spec: &'static crate::cmd::CommandSpec,
    argv: &[&[u8]],
) -> Result<(), &'static str> {
    let state = ctx.state;
    let session = &mut *ctx.session;
    let saved = (
        session.asking,
        session.admitted_asking,
        session.routed_migrating,
        session.routed_slot,
    );
    let mut refused = crate::cluster::route(state, session, spec, argv);
    let slot = session.routed_slot;
    // A key of a slot being migrated away that has already left is served
    // by the target now (what EXEC checks once it holds the partitions).
    if refused.is_none() && (state.cluster.migrations.any() || session.admitted_asking || session.routed_migrating) {
        refused = crate::cluster::migrate::check_locked(state, ctx.session, &[(spec, argv)], &mut ctx.ks);
    }
    let session = &mut *ctx.session;
    (
        session.asking,
        session.admitted_asking,
        session.routed_migrating,
        session.routed_slot,
    ) = saved;
    if let Some(Reply::Error(e)) = refused {
        return Err(if e.starts_with("CLUSTERDOWN") {
            "ERR Script attempted to execute a command while the cluster is down"
        } else {
            "ERR Script attempted to access a non local key in a cluster node"
        });
    }
    if let Some(slot) = slot
        && !run.cross_slot
    {
        match run.slot {
            None => run.slot = Some(slot),
            Some(s) if s != slot => {
                return Err("ERR Script attempted to access keys that do not hash to the same slot");
            }
            Some(_) => {}
        }
    }
    Ok(())
}
