//! Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT, with Redis
//! 7.0's semantics on a Lua 5.1 interpreter (the version Redis embeds, so a
//! script that runs on Redis runs here).
//!
//! Layout:
//! - this file: [`Scripts`] (one interpreter behind a mutex, the cache of
//!   compiled scripts by SHA1, and the state of the running script that
//!   BUSY, SCRIPT KILL and the other connections read without that mutex),
//!   and [`eval`], which runs a script inside a command;
//! - `call.rs`: `redis.call`/`redis.pcall` — one command run from a script,
//!   with the checks Redis' `scriptCall` makes;
//! - `convert.rs`: replies to Lua values and back (`redisProtocolToLuaType`,
//!   `luaReplyToRedisReply`);
//! - `libs.rs`: the `bit` and `cjson` libraries Redis loads;
//! - `prelude.lua`: the `redis` table and the sandbox (read-only globals and
//!   libraries), run once per interpreter.
//!
//! **Atomicity.** A script runs with every keyspace partition locked (the
//! command's `LOCK_ALL` flag), as EXEC does: nothing interleaves with it, and
//! it may touch keys it did not declare (allowed outside cluster mode, as in
//! Redis). Its writes go to the write log as the commands it ran, wrapped in
//! MULTI/EXEC (Redis 7.0's effects replication), so replicas and log replay
//! never run Lua and never see half a script.
//!
//! **Long scripts.** A client's EVAL runs on a blocking thread, not on its
//! connection thread (see `Outcome::Script` in [`crate::cmd`]), and while it
//! runs, other connections' commands wait without blocking their threads;
//! after `busy-reply-threshold` they get `-BUSY` instead, and SCRIPT KILL
//! stops a script that has not written yet. A count hook every 100,000 Lua
//! instructions checks the clock and the kill flag, as in Redis.

mod call;
mod convert;
pub mod function;
mod libs;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};
use parking_lot::Mutex;

use crate::cmd::{CmdResult, Ctx};
use crate::resp::Reply;

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";
/// `-BUSY` while an EVAL script runs past `busy-reply-threshold`...
const BUSY_EVAL: &str = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// ... and while a function does.
const BUSY_FUNCTION: &str = "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";

/// Shebang flags (`#!lua flags=...`), as Redis' `SCRIPT_FLAG_*`.
pub mod flag {
    /// No shebang: Redis' compatibility mode for scripts written before 7.0.
    pub const COMPAT: u32 = 1 << 0;
    pub const NO_WRITES: u32 = 1 << 1;
    pub const ALLOW_OOM: u32 = 1 << 2;
    pub const ALLOW_STALE: u32 = 1 << 3;
    pub const NO_CLUSTER: u32 = 1 << 4;
    pub const ALLOW_CROSS_SLOT: u32 = 1 << 5;
}

/// The flags a script's shebang or a function may declare, in the order
/// FUNCTION LIST shows them (Redis' `scripts_flags_def`).
const SCRIPT_FLAGS: &[(&str, u32)] = &[
    ("no-writes", flag::NO_WRITES),
    ("allow-oom", flag::ALLOW_OOM),
    ("allow-stale", flag::ALLOW_STALE),
    ("no-cluster", flag::NO_CLUSTER),
    ("allow-cross-slot-keys", flag::ALLOW_CROSS_SLOT),
];

/// What the node knows about scripts.
#[derive(Default)]
pub struct Scripts {
    engine: Mutex<Option<Engine>>,
    run: Arc<RunState>,
    /// Held from the moment a client's EVAL is handed to a blocking thread
    /// until it is done (see [`Scripts::try_schedule`]).
    scheduled: AtomicBool,
    /// Cached scripts and their bodies' bytes, readable without the engine
    /// (INFO while a script runs).
    cached: AtomicU64,
    cached_bytes: AtomicU64,
    lua_bytes: AtomicU64,
    /// Shebang flags of cached scripts that have a shebang, by SHA1, and
    /// functions' flags by lowercased name with the library generation
    /// they belong to: read by the checks before a command runs, which must
    /// not wait for the interpreter a running script holds.
    sha_flags: Mutex<HashMap<String, u32>>,
    fn_flags: Mutex<(u64, HashMap<String, u32>)>,
    /// Redis 7 functions: their own interpreter and compiled libraries
    /// (see [`function`]), and counts readable while one runs.
    functions: Mutex<function::FnState>,
    fn_libraries: AtomicU64,
    fn_functions: AtomicU64,
    fn_code_bytes: AtomicU64,
    fn_lua_bytes: AtomicU64,
}

/// The running script, shared with the count hook.
#[derive(Default)]
struct RunState {
    running: AtomicBool,
    started_ms: AtomicU64,
    threshold_ms: AtomicU64,
    busy: AtomicBool,
    kill: AtomicBool,
    /// SHUTDOWN NOSAVE stopped it (with `kill`, whatever it wrote): what
    /// it wrote is not logged, so no log or replica keeps half a script.
    shutdown: AtomicBool,
    /// It ran a write: SCRIPT KILL can no longer stop it.
    wrote: AtomicBool,
    /// The running function's name and command (FUNCTION STATS); `None`
    /// while an EVAL script runs.
    function: Mutex<Option<(String, Vec<Bytes>)>>,
    /// FUNCTION LOAD's deadline (ms since the epoch; 0: none), which the
    /// count hook enforces while a library's code runs.
    load_deadline_ms: AtomicU64,
    /// Signalled when a script ends or becomes busy ([`Scripts::settled`]).
    settled: tokio::sync::Notify,
}

struct Engine {
    lua: Lua,
    /// The interpreter's real global table (KEYS and ARGV are set here);
    /// scripts see it through the read-only proxy `env`.
    globals: Table,
    env: Table,
    /// The runtime table the prelude's functions read: `call`, `setresp`
    /// and `set_repl` exist only while a script runs.
    rt: Table,
    /// Compiled code, in a Lua table: scripts by SHA1, function libraries
    /// by name. Not one Rust handle each: every handle holds a slot of
    /// mlua's reference stack, which is as deep as a C function's Lua stack
    /// (8000), and running out of it panics.
    cache: Table,
    /// Cached scripts' flags by SHA1.
    scripts: HashMap<String, u32>,
}

impl Scripts {
    /// Is a script past `busy-reply-threshold`? Other clients then get `-BUSY`.
    pub fn is_busy(&self) -> bool {
        self.run.busy.load(Ordering::Relaxed)
    }

    /// Is a client's script scheduled or running on its blocking thread?
    /// Other clients' commands then wait for [`Scripts::settled`] instead of
    /// blocking their connection thread on the partition locks it holds.
    pub fn is_scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Acquire)
    }

    /// Take the right to run a script on a blocking thread; false when
    /// another one has it (the caller waits for [`Scripts::settled`]).
    pub fn try_schedule(&self) -> bool {
        self.scheduled
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The scheduled script is done.
    pub fn unschedule(&self) {
        self.scheduled.store(false, Ordering::Release);
        self.run.settled.notify_waiters();
    }

    /// Wait until no script is scheduled, or the running one is busy.
    pub async fn settled(&self) {
        loop {
            let notified = self.run.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_scheduled() || self.is_busy() {
                return;
            }
            notified.await;
        }
    }

    /// The `-BUSY` error for other clients: it names the command that can
    /// stop what runs.
    pub fn busy_error(&self) -> &'static str {
        if self.run.function.lock().is_some() {
            BUSY_FUNCTION
        } else {
            BUSY_EVAL
        }
    }

    /// SCRIPT KILL (`eval`) or FUNCTION KILL: each stops only its own kind.
    pub fn kill(&self, from_master: bool, eval: bool) -> Reply {
        let run = &self.run;
        if !run.running.load(Ordering::Acquire) {
            return Reply::err("NOTBUSY No scripts in execution right now.");
        }
        if from_master {
            return Reply::err(
                "UNKILLABLE The busy script was sent by a master instance in the context of replication and cannot be killed.",
            );
        }
        if run.wrote.load(Ordering::Acquire) {
            return Reply::err(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
            );
        }
        let running_eval = run.function.lock().is_none();
        if eval && !running_eval {
            return Reply::err(BUSY_FUNCTION);
        }
        if !eval && running_eval {
            return Reply::err(BUSY_EVAL);
        }
        run.kill.store(true, Ordering::Release);
        Reply::Ok
    }

    /// SHUTDOWN NOSAVE while a script is busy: stop it even if it wrote
    /// (Redis exits there and then; here the node stops once the script has
    /// unwound, and what the script wrote never reaches the log).
    pub fn abort_for_shutdown(&self) {
        let run = &self.run;
        if run.running.load(Ordering::Acquire) {
            run.shutdown.store(true, Ordering::Release);
            run.kill.store(true, Ordering::Release);
        }
    }

    /// Whether the script that just ended was stopped by SHUTDOWN NOSAVE
    /// (and clear that).
    fn take_shutdown(&self) -> bool {
        self.run.shutdown.swap(false, Ordering::AcqRel)
    }

    /// Mark a script as running from now on (BUSY's clock, SCRIPT KILL's
    /// target) until the returned guard drops.
    fn start_run(&self, state: &crate::state::State) -> RunningGuard<'_> {
        // busy, kill and wrote are false here: RunningGuard clears them when
        // a script ends, and SCRIPT KILL sets kill only while one runs.
        let run = &self.run;
        run.started_ms.store(crate::db::now_ms(), Ordering::Relaxed);
        run.threshold_ms.store(
            state.config.busy_reply_threshold.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        run.running.store(true, Ordering::Release);
        RunningGuard(self)
    }

    /// The flags the script of EVAL/FCALL `args` declares; `None` for a
    /// script without a shebang, or one not known (yet).
    pub fn declared_flags(&self, db: &crate::db::Db, command: &str, args: &[&[u8]]) -> Option<u32> {
        let declared = match command {
            "eval" | "eval_ro" => shebang(args.get(1)?).ok()?.0,
            "evalsha" | "evalsha_ro" => {
                let sha = String::from_utf8_lossy(args.get(1)?).to_ascii_lowercase();
                *self.sha_flags.lock().get(&sha)?
            }
            "fcall" | "fcall_ro" => {
                let name = String::from_utf8_lossy(args.get(1)?).to_ascii_lowercase();
                let generation = db.functions.get().generation;
                let known = self.fn_flags.lock();
                if known.0 != generation {
                    return None;
                }
                *known.1.get(&name)?
            }
            _ => return None,
        };
        (declared & flag::COMPAT == 0).then_some(declared)
    }

    /// SCRIPT EXISTS: one flag per SHA1.
    pub fn exists(&self, shas: &[&[u8]]) -> Vec<bool> {
        let engine = self.engine.lock();
        shas.iter()
            .map(|s| {
                let sha = String::from_utf8_lossy(s).to_ascii_lowercase();
                engine.as_ref().is_some_and(|e| e.scripts.contains_key(&sha))
            })
            .collect()
    }

    /// SCRIPT LOAD: compile and cache, reply the SHA1.
    pub fn load(&self, body: &[u8]) -> CmdResult {
        let mut slot = self.engine.lock();
        let engine = self.engine_mut(&mut slot)?;
        let sha = sha1_hex(body);
        match guarded(|| self.compile(engine, &sha, body)) {
            Some(compiled) => compiled?,
            None => {
                *slot = None;
                self.forget_all();
                return Err(Reply::err(INTERPRETER_RESET));
            }
        }
        Ok(Reply::Bulk(Bytes::from(sha)))
    }

    /// SCRIPT FLUSH: forget every script and start a fresh interpreter.
    pub fn flush(&self) {
        let old = self.engine.lock().take();
        self.forget_all();
        drop(old);
    }

    /// The counters and flags of a script cache that was dropped.
    fn forget_all(&self) {
        self.sha_flags.lock().clear();
        self.cached.store(0, Ordering::Relaxed);
        self.cached_bytes.store(0, Ordering::Relaxed);
        self.lua_bytes.store(0, Ordering::Relaxed);
    }

    /// INFO memory: `used_memory_lua`, `used_memory_scripts`, `number_of_cached_scripts`.
    pub fn memory(&self) -> (u64, u64, u64) {
        (
            self.lua_bytes.load(Ordering::Relaxed),
            self.cached_bytes.load(Ordering::Relaxed),
            self.cached.load(Ordering::Relaxed),
        )
    }

    fn engine_mut<'e>(&self, slot: &'e mut Option<Engine>) -> Result<&'e mut Engine, Reply> {
        if slot.is_none() {
            let engine = Engine::new(self.run.clone())
                .map_err(|e| Reply::err(format!("ERR Lua interpreter could not start: {e}")))?;
            self.lua_bytes.store(engine.lua.used_memory() as u64, Ordering::Relaxed);
            *slot = Some(engine);
        }
        Ok(slot.as_mut().expect("just created"))
    }

    /// Compile `body` as the script `sha` unless it is cached.
    fn compile(&self, engine: &mut Engine, sha: &str, body: &[u8]) -> Result<(), Reply> {
        if engine.scripts.contains_key(sha) {
            return Ok(());
        }
        let (flags, shebang_len) = shebang(body).map_err(Reply::err)?;
        // The shebang line is skipped but its newline kept, so line numbers
        // in errors are the user's.
        let func = engine
            .lua
            .load(&body[shebang_len..])
            .set_name("@user_script")
            .into_function()
            .map_err(|e| {
                Reply::err(format!(
                    "ERR Error compiling script (new function): {}",
                    lua_message(&e)
                ))
            })?;
        func.set_environment(engine.env.clone())
            .map_err(|e| Reply::err(format!("ERR {e}")))?;
        if flags & flag::COMPAT == 0 {
            self.sha_flags.lock().insert(sha.to_string(), flags);
        }
        engine
            .cache
            .raw_set(sha, func)
            .map_err(|e| Reply::err(format!("ERR {e}")))?;
        engine.scripts.insert(sha.to_string(), flags);
        self.cached.fetch_add(1, Ordering::Relaxed);
        self.cached_bytes.fetch_add(body.len() as u64 + 40, Ordering::Relaxed);
        Ok(())
    }
}

/// The message of a Lua error, without mlua's decoration.
fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        e => e.to_string(),
    }
}

impl Engine {
    fn new(run: Arc<RunState>) -> mlua::Result<Engine> {
        // Base (always loaded), table, string and math: Redis' set, less
        // `debug`, which Redis also hides from scripts (its error handler
        // keeps a private reference; ours asks mlua for the frame instead).
        let lua = Lua::new_with(StdLib::TABLE | StdLib::STRING | StdLib::MATH, LuaOptions::new())?;
        let globals = lua.globals();
        let redis = lua.create_table()?;
        redis.set("REDIS_VERSION", crate::cmd::connection::REDIS_COMPAT_VERSION)?;
        redis.set("REDIS_VERSION_NUM", redis_version_num())?;
        for (name, level) in [
            ("LOG_DEBUG", 0),
            ("LOG_VERBOSE", 1),
            ("LOG_NOTICE", 2),
            ("LOG_WARNING", 3),
        ] {
            redis.set(name, level)?;
        }
        for (name, v) in [
            ("REPL_NONE", 0),
            ("REPL_AOF", 1),
            ("REPL_SLAVE", 2),
            ("REPL_REPLICA", 2),
            ("REPL_ALL", 3),
        ] {
            redis.set(name, v)?;
        }
        globals.set("redis", redis)?;
        libs::install(&lua, &globals)?;
        // The API functions are Rust functions, as Redis' are C functions:
        // a script's `return redis.call(...)` is then not a Lua tail call, so
        // its own frame (and line) is still there when an error is reported.
        let rt = lua.create_table()?;
        lua.set_named_registry_value(RT, rt.clone())?;
        let redis: Table = globals.get("redis")?;
        redis.set(
            "call",
            lua.create_function(|lua, args: MultiValue| redis_call(lua, args, true))?,
        )?;
        redis.set(
            "pcall",
            lua.create_function(|lua, args: MultiValue| redis_call(lua, args, false))?,
        )?;
        for name in ["setresp", "set_repl"] {
            redis.set(
                name,
                lua.create_function(move |lua, args: MultiValue| {
                    let Value::Function(f) = rt_table(lua)?.raw_get::<Value>(name)? else {
                        let msg = format!("ERR redis.{name} can only be called inside a script invocation");
                        return Err(raise(lua, error_table(lua, &msg)?));
                    };
                    match f.call::<Value>(args)? {
                        Value::Nil => Ok(()),
                        e => Err(raise(lua, e)),
                    }
                })?,
            )?;
        }
        redis.set("log", lua.create_function(log)?)?;
        redis.set(
            "sha1hex",
            lua.create_function(|lua, args: MultiValue| {
                if args.len() != 1 {
                    return Err(raise(lua, error_table(lua, "ERR wrong number of arguments")?));
                }
                let bytes = match &args[0] {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Number(n) => format_lua_number(*n).into_bytes(),
                    Value::Integer(n) => n.to_string().into_bytes(),
                    _ => Vec::new(),
                };
                Ok(sha1_hex(&bytes))
            })?,
        )?;
        // math.random/randomseed: Redis' own generator (rand.c, the 48-bit
        // drand48 recurrence), so a script draws the same numbers on every
        // node and every platform.
        let math: Table = globals.get("math")?;
        let rand = Arc::new(Mutex::new(Rand48::default()));
        let r = rand.clone();
        math.set(
            "random",
            lua.create_function(move |lua, args: MultiValue| {
                let drawn = r.lock().random(&args);
                drawn.map_err(|msg| raise_here(lua, &msg))
            })?,
        )?;
        let r = rand;
        math.set(
            "randomseed",
            lua.create_function(move |lua, args: MultiValue| match args.front().and_then(number) {
                Some(seed) => {
                    r.lock().seed(seed as i32);
                    Ok(())
                }
                None => {
                    let got = args.front().map_or("no value", |v| v.type_name());
                    let msg = format!("bad argument #1 to 'randomseed' (number expected, got {got})");
                    Err(raise_here(lua, &msg))
                }
            })?,
        )?;
        let killed = run.clone();
        rt.set(
            "killed",
            lua.create_function(move |_, ()| Ok(killed.kill.load(Ordering::Acquire)))?,
        )?;
        rt.set("where", lua.create_function(user_frame)?)?;
        // An error's text: a Rust callback's error without mlua's wrapping.
        rt.set(
            "describe",
            lua.create_function(|lua, err: Value| {
                Ok(match &err {
                    Value::Error(e) => lua_message(e),
                    Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
                    Value::Number(n) => format_lua_number(*n),
                    Value::Integer(n) => n.to_string(),
                    Value::Nil => "nil".to_string(),
                    Value::Boolean(b) => b.to_string(),
                    v => lua.globals().get::<Function>("tostring")?.call::<String>(v.clone())?,
                })
            })?,
        )?;
        let env: Table = lua
            .load(include_str!("prelude.lua"))
            .set_name("=[redis]")
            .call((globals.clone(), rt.clone()))?;

        // The count hook: the clock for BUSY, the flag for SCRIPT KILL,
        // FUNCTION LOAD's time limit.
        let hook_run = run;
        lua.set_hook(HookTriggers::new().every_nth_instruction(100_000), move |lua, _| {
            let deadline = hook_run.load_deadline_ms.load(Ordering::Relaxed);
            if deadline > 0 && crate::db::now_ms() > deadline {
                return Err(raise(lua, error_table(lua, "ERR FUNCTION LOAD timeout")?));
            }
            if !hook_run.running.load(Ordering::Relaxed) {
                return Ok(VmState::Continue);
            }
            let threshold = hook_run.threshold_ms.load(Ordering::Relaxed);
            if threshold > 0
                && !hook_run.busy.load(Ordering::Relaxed)
                && crate::db::now_ms().saturating_sub(hook_run.started_ms.load(Ordering::Relaxed)) >= threshold
            {
                tracing::warn!(
                    "a Lua script has been running for more than {threshold} ms (busy-reply-threshold): other clients now get -BUSY"
                );
                hook_run.busy.store(true, Ordering::Release);
                hook_run.settled.notify_waiters();
            }
            if hook_run.kill.load(Ordering::Acquire) {
                return Err(mlua::Error::runtime("Script killed by user with SCRIPT KILL..."));
            }
            Ok(VmState::Continue)
        })?;
        let cache = lua.create_table()?;
        Ok(Engine {
            lua,
            globals,
            env,
            rt,
            cache,
            scripts: HashMap::new(),
        })
    }
}

/// `redis.log(level, ...)`: to the node's log at the matching level.
fn log(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    if args.len() < 2 {
        return Err(raise(
            lua,
            error_table(lua, "ERR redis.log() requires two arguments or more.")?,
        ));
    }
    let Some(level) = number(&args[0]) else {
        return Err(raise(
            lua,
            error_table(lua, "ERR First argument must be a number (log level).")?,
        ));
    };
    let level = level as i64;
    if !(0..=3).contains(&level) {
        return Err(raise(lua, error_table(lua, "ERR Invalid debug level.")?));
    }
    let mut msg = Vec::new();
    for (i, v) in args.iter().skip(1).enumerate() {
        let part = match v {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Number(n) => format_lua_number(*n).into_bytes(),
            Value::Integer(n) => n.to_string().into_bytes(),
            _ => continue,
        };
        if i > 0 {
            msg.push(b' ');
        }
        msg.extend_from_slice(&part);
    }
    let msg = String::from_utf8_lossy(&msg);
    match level {
        0 => tracing::debug!(target: "lua", "{msg}"),
        1 | 2 => tracing::info!(target: "lua", "{msg}"),
        _ => tracing::warn!(target: "lua", "{msg}"),
    }
    Ok(())
}

/// Where the prelude's runtime table lives (in the registry, so the Rust
/// functions reach it through their `&Lua` without holding a handle to it:
/// a handle captured in a function the interpreter owns would keep the
/// interpreter alive after SCRIPT FLUSH).
const RT: &str = "ferrokv.rt";

fn rt_table(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(RT)
}

/// Raise `value` as the script's error (Redis' `lua_error` with a table or
/// a string): mlua raises its own wrapper, which the prelude's handler and
/// pcall swap for the value left here.
fn raise(lua: &Lua, value: Value) -> mlua::Error {
    if let Ok(rt) = rt_table(lua) {
        let _ = rt.raw_set("raised", value);
    }
    mlua::Error::runtime("script error")
}

/// Raise `msg` prefixed with the calling line, as `luaL_error` does.
fn raise_here(lua: &Lua, msg: &str) -> mlua::Error {
    let place = lua
        .inspect_stack(1, |d| {
            let line = d.current_line()?;
            Some(format!("{}:{line}: ", d.source().short_src?))
        })
        .flatten()
        .unwrap_or_default();
    match lua.create_string(format!("{place}{msg}")) {
        Ok(s) => raise(lua, Value::String(s)),
        Err(e) => e,
    }
}

/// `redis.call` (`raise`) and `redis.pcall`: run the command through the
/// running script's `rt.call`.
fn redis_call(lua: &Lua, args: MultiValue, raise_errors: bool) -> mlua::Result<Value> {
    let Value::Function(call) = rt_table(lua)?.raw_get::<Value>("call")? else {
        let e = error_table(
            lua,
            "ERR redis.call/pcall can only be called inside a script invocation",
        )?;
        return Err(raise(lua, e));
    };
    // The arguments travel to the command as bytes, not as Lua values: the
    // call then holds one reference per argument only while they are read
    // here (a script may pass thousands, as `unpack` allows).
    let argv = match command_args(&args) {
        Ok(argv) => argv,
        Err(msg) => {
            let e = error_table(lua, msg)?;
            return if raise_errors { Err(raise(lua, e)) } else { Ok(e) };
        }
    };
    drop(args);
    lua.set_app_data(CallArgs(argv));
    let (reply, failed): (Value, bool) = call.call(())?;
    if failed && raise_errors {
        return Err(raise(lua, reply));
    }
    Ok(reply)
}

/// The arguments of the `redis.call` being run, handed from [`redis_call`]
/// to the running script's `rt.call`.
struct CallArgs(Vec<Vec<u8>>);

/// `redis.call`'s arguments as a command line (Redis' `luaArgsToRedisArgv`).
fn command_args(args: &MultiValue) -> Result<Vec<Vec<u8>>, &'static str> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call");
    }
    args.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            // Not Lua's %.14g, which would lose precision.
            Value::Number(n) => Ok(crate::resp::reply::format_double(*n).into_bytes()),
            Value::Integer(n) => Ok(n.to_string().into_bytes()),
            _ => Err("ERR Lua redis lib command arguments must be strings or integers"),
        })
        .collect()
}

/// A Lua value as a number the way `lua_tonumber` sees it (numeric strings too).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => Some(*n),
        Value::Integer(n) => Some(*n as f64),
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| crate::cmd::parse::parse_f64(s.trim().as_bytes())),
        _ => None,
    }
}

/// Redis' error value: a table `{err = msg}`.
fn error_table(lua: &Lua, msg: &str) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set("err", msg)?;
    Ok(Value::Table(t))
}

/// The Lua frame nearest the error that is not ours (the prelude's handler
/// and wrappers): its source and line, as Redis' handler reports the frame
/// that raised the error, or its caller when that is a C function.
fn user_frame(lua: &Lua, (): ()) -> mlua::Result<(Option<String>, Option<i64>)> {
    for level in 1..200 {
        let frame = lua.inspect_stack(level, |d| {
            let source = d.source();
            (source.what, source.source.map(|s| s.to_string()), d.current_line())
        });
        match frame {
            None => break,
            Some((what, Some(source), line)) if what != "C" && source != "=[redis]" => {
                return Ok((Some(source), line.map(|l| l as i64)));
            }
            Some(_) => {}
        }
    }
    Ok((None, None))
}

/// Redis' version as a number (`0x00MMmmpp`), for `redis.REDIS_VERSION_NUM`.
fn redis_version_num() -> i64 {
    let mut parts = crate::cmd::connection::REDIS_COMPAT_VERSION
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (a << 16) | (b << 8) | c
}

/// Lua's own `%.14g` (what `tostring` and `..` give a number).
pub fn format_lua_number(n: f64) -> String {
    if n.is_finite() {
        crate::resp::reply::format_g(n, 14)
    } else {
        crate::resp::reply::format_double(n)
    }
}

/// Parse a script's shebang: its flags and the length of the line (not its
/// newline), or `(COMPAT, 0)` without one.
fn shebang(body: &[u8]) -> Result<(u32, usize), String> {
    if !body.starts_with(b"#!") {
        return Ok((flag::COMPAT, 0));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let Some(engine) = parts.next() else {
        return Err("ERR Invalid engine in script shebang".into());
    };
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut flags = 0;
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for name in list.split(',') {
            if name.is_empty() {
                continue;
            }
            match SCRIPT_FLAGS.iter().find(|(n, _)| *n == name) {
                Some((_, f)) => flags |= f,
                None => return Err(format!("ERR Unexpected flag in script shebang: {name}")),
            }
        }
    }
    Ok((flags, end))
}

pub fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// Redis' `redisLrand48`/`redisSrand48` (rand.c): drand48's recurrence.
struct Rand48 {
    x: u64,
}

impl Default for Rand48 {
    fn default() -> Self {
        Rand48 { x: 0x1234_ABCD_330E }
    }
}

impl Rand48 {
    const MASK: u64 = (1 << 48) - 1;

    fn seed(&mut self, seed: i32) {
        self.x = ((seed as u32 as u64) << 16) | 0x330E;
    }

    fn next(&mut self) -> i32 {
        self.x = (self.x.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB)) & Self::MASK;
        (self.x >> 17) as i32
    }

    /// `math.random([m [, n]])` as Redis' `redis_math_random`.
    fn random(&mut self, args: &MultiValue) -> Result<f64, String> {
        const MAX: i64 = i32::MAX as i64;
        let r = (self.next() as i64 % MAX) as f64 / MAX as f64;
        let int = |v: &Value, n: usize| -> Result<i64, String> {
            number(v)
                .map(|f| f as i32 as i64)
                .ok_or_else(|| format!("bad argument #{n} to 'random' (number expected, got {})", v.type_name()))
        };
        match args.len() {
            0 => Ok(r),
            1 => {
                let u = int(&args[0], 1)?;
                if u < 1 {
                    return Err("bad argument #1 to 'random' (interval is empty)".into());
                }
                Ok((r * u as f64).floor() + 1.0)
            }
            2 => {
                let (l, u) = (int(&args[0], 1)?, int(&args[1], 2)?);
                if l > u {
                    return Err("bad argument #2 to 'random' (interval is empty)".into());
                }
                Ok((r * (u - l + 1) as f64).floor() + l as f64)
            }
            _ => Err("wrong number of arguments".into()),
        }
    }
}

/// How EVAL was called.
#[derive(Clone, Copy)]
pub struct Mode {
    /// EVALSHA / EVALSHA_RO: the first argument is a SHA1.
    pub by_sha: bool,
    /// EVAL_RO / EVALSHA_RO: writes refused.
    pub read_only: bool,
}

/// Run EVAL/EVALSHA(_RO) `args` inside the command's context (every
/// partition is locked).
pub fn eval(ctx: &mut Ctx, args: &[&[u8]], mode: Mode) -> CmdResult {
    crate::cmd::feed_monitors_script(ctx.state, ctx.session, args);
    let numkeys = crate::cmd::parse::int(args[2])?;
    if numkeys > (args.len() - 3) as i64 {
        return Err(Reply::err("ERR Number of keys can't be greater than number of args"));
    }
    if numkeys < 0 {
        return Err(Reply::err("ERR Number of keys can't be negative"));
    }
    let numkeys = numkeys as usize;
    let state = ctx.state;
    let scripts = &state.scripts;
    let mut slot = scripts.engine.lock();
    let engine = scripts.engine_mut(&mut slot)?;
    let sha = if mode.by_sha {
        if args[1].len() != 40 {
            return Err(Reply::err(NOSCRIPT));
        }
        let sha = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
        if !engine.scripts.contains_key(&sha) {
            return Err(Reply::err(NOSCRIPT));
        }
        sha
    } else {
        let sha = sha1_hex(args[1]);
        scripts.compile(engine, &sha, args[1])?;
        sha
    };
    let script_flags = engine.scripts[&sha];
    call::prepare(ctx, script_flags, mode.read_only)?;
    // In cluster mode routing checked that the declared keys share a slot.
    let declared_slot = (ctx.state.cluster.is_enabled() && numkeys > 0).then(|| crate::slot::key_slot(args[3]));
    let lua_err = |e: mlua::Error| Reply::err(format!("ERR {e}"));
    let func: Function = engine.cache.raw_get(sha.as_str()).map_err(lua_err)?;
    engine
        .globals
        .raw_set("KEYS", array(&engine.lua, &args[3..3 + numkeys]).map_err(lua_err)?)
        .map_err(lua_err)?;
    engine
        .globals
        .raw_set("ARGV", array(&engine.lua, &args[3 + numkeys..]).map_err(lua_err)?)
        .map_err(lua_err)?;

    let _running = scripts.start_run(state);
    let log_mark = ctx.log.len();
    let outcome = guarded(|| {
        call::run(
            ctx,
            engine,
            &func,
            &sha,
            script_flags,
            mode.read_only,
            declared_slot,
            None,
        )
    });
    drop(func);
    if scripts.take_shutdown() {
        ctx.log.truncate(log_mark);
    }
    let Some(outcome) = outcome else {
        *slot = None;
        scripts.forget_all();
        return Err(Reply::err(INTERPRETER_RESET));
    };
    scripts
        .lua_bytes
        .store(engine.lua.used_memory() as u64, Ordering::Relaxed);
    // Redis steps the collector every 50 scripts; a full cycle here would
    // cost the next script its latency.
    let _ = engine.lua.gc_step_kbytes(50);
    outcome
}

const INTERPRETER_RESET: &str =
    "ERR internal error in the Lua interpreter; it was reset (cached scripts are gone, function libraries reload)";

/// Run `f`, turning a panic inside it (mlua's own, such as its reference
/// stack running out) into `None`: nothing a client's script does may take
/// a node thread down. The caller then drops the interpreter, whose state
/// the panic may have left half-changed.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %msg, "the Lua interpreter failed; it is reset");
            None
        }
    }
}

/// A Lua array of strings (KEYS, ARGV, a function's two arguments).
fn array(lua: &Lua, items: &[&[u8]]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, a) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(a)?)?;
    }
    Ok(t)
}

/// Clears the running script's state however [`eval`] or
/// [`function::fcall`] ends.
struct RunningGuard<'a>(&'a Scripts);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        let run = &self.0.run;
        run.running.store(false, Ordering::Release);
        run.busy.store(false, Ordering::Release);
        run.kill.store(false, Ordering::Release);
        run.wrote.store(false, Ordering::Release);
        *run.function.lock() = None;
        self.0.run.settled.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_flags() {
        assert_eq!(shebang(b"return 1").unwrap(), (flag::COMPAT, 0));
        assert_eq!(shebang(b"#!lua\nreturn 1").unwrap(), (0, 5));
        assert_eq!(
            shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap(),
            (flag::NO_WRITES | flag::ALLOW_OOM, 31)
        );
        assert_eq!(shebang(b"#!lua").unwrap_err(), "ERR Invalid script shebang");
        assert_eq!(
            shebang(b"#!python\n").unwrap_err(),
            "ERR Unexpected engine in script shebang: #!python"
        );
        assert_eq!(
            shebang(b"#!lua flags=bad\n").unwrap_err(),
            "ERR Unexpected flag in script shebang: bad"
        );
        assert_eq!(
            shebang(b"#!lua x=1\n").unwrap_err(),
            "ERR Unknown lua shebang option: x=1"
        );
    }
}
