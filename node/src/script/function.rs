//! Redis 7 functions: libraries of named Lua functions loaded with
//! `FUNCTION LOAD` and called with `FCALL`/`FCALL_RO`, with Redis 7.0's
//! semantics and errors (`functions.c`, `function_lua.c`).
//!
//! **Functions are data.** Unlike EVAL's script cache, Redis 7 saves
//! libraries in its RDB, replicates `FUNCTION LOAD` and keeps them across
//! FLUSHALL. Here the libraries' code is held with the keyspace
//! ([`Libraries`] in [`crate::db::Db`]): a snapshot cut captures it at the
//! same instant as the keys (the commands that change it hold every
//! partition, like the cut's freeze), a snapshot load or a replica's full
//! sync replaces it, and the commands go to the write log like any write.
//! What runs is a cache: one Lua interpreter with the libraries compiled
//! ([`FnState`], in [`Scripts`]), rebuilt from the code whenever the
//! library set was replaced underneath it (its `generation` moved).
//!
//! A library's code runs once at load, with only `redis.register_function`,
//! `redis.log` and the version in sight (`prelude.lua` swaps the
//! environment), and must register at least one function. Loading is
//! limited to 500 ms, except from a primary or the log (Redis' rule: what
//! was accepted once is never refused on replay).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;

use super::{Engine, RunState, Scripts, call, error_table, raise};
use crate::cmd::{CmdResult, Ctx};
use crate::resp::Reply;

/// How long FUNCTION LOAD may run a library's code (Redis' `LOAD_TIMEOUT_MS`).
const LOAD_TIMEOUT_MS: u64 = 500;

const BAD_NAME: &str =
    "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// The function libraries of the dataset: each library's code by name.
#[derive(Default)]
pub struct Libraries {
    inner: Mutex<LibrarySet>,
}

/// One version of the library set.
#[derive(Clone, Default)]
pub struct LibrarySet {
    /// Moves on at every change; the compiled cache compares it.
    pub generation: u64,
    pub codes: Arc<BTreeMap<String, Bytes>>,
}

impl Libraries {
    pub fn get(&self) -> LibrarySet {
        self.inner.lock().clone()
    }

    /// Replace the whole set; returns its generation.
    pub fn replace(&self, codes: BTreeMap<String, Bytes>) -> u64 {
        self.update(|c| *c = codes)
    }

    /// Change the set in place; returns its generation. The map is copied
    /// only while a snapshot cut still holds the previous version.
    pub fn update(&self, change: impl FnOnce(&mut BTreeMap<String, Bytes>)) -> u64 {
        let mut set = self.inner.lock();
        set.generation += 1;
        change(Arc::make_mut(&mut set.codes));
        set.generation
    }
}

/// The compiled libraries ([`Scripts`] holds one behind a mutex).
#[derive(Default)]
pub(super) struct FnState {
    engine: Option<Engine>,
    /// The [`Libraries`] generation compiled here.
    generation: u64,
    libs: BTreeMap<String, Library>,
    /// Lowercased function name → (library, function): FCALL finds a
    /// function whatever its case, as Redis' function dictionary does.
    by_name: HashMap<String, (String, String)>,
}

struct Library {
    code: Bytes,
    functions: BTreeMap<String, Func>,
    /// The registered callbacks by function name, until the library is
    /// linked into the interpreter's cache table (see [`Scripts::link`]).
    callbacks: Option<Table>,
}

struct Func {
    desc: Option<Bytes>,
    flags: u32,
}

/// A library's shebang (`#!lua name=mylib`): Redis' `functionExtractLibMetaData`.
#[derive(Debug)]
struct Metadata {
    engine: String,
    name: String,
    /// Where the code after the shebang line starts (at its newline, so
    /// error line numbers are the user's).
    body: usize,
}

fn metadata(code: &[u8]) -> Result<Metadata, String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let parts = match crate::resp::parse::split_args(&code[..end]) {
        Some(p) if !p.is_empty() => p,
        _ => return Err("Invalid library metadata".into()),
    };
    let engine = String::from_utf8_lossy(&parts[0][2..]).into_owned();
    let mut name = None;
    for part in &parts[1..] {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err("Invalid metadata value, name argument was given multiple times".into());
            }
            name = Some(String::from_utf8_lossy(&part[5..]).into_owned());
            continue;
        }
        return Err(format!(
            "Invalid metadata value given: {}",
            String::from_utf8_lossy(part)
        ));
    }
    let Some(name) = name else {
        return Err("Library name was not given".into());
    };
    Ok(Metadata {
        engine,
        name,
        body: end,
    })
}

/// [`metadata`], then the checks Redis makes right after it (in its order):
/// a valid library name, a known engine.
fn checked_metadata(code: &[u8]) -> Result<Metadata, String> {
    let md = metadata(code)?;
    if !valid_name(md.name.as_bytes()) {
        return Err(BAD_NAME.into());
    }
    if !md.engine.eq_ignore_ascii_case("lua") {
        return Err(format!("Engine '{}' not found", md.engine));
    }
    Ok(md)
}

/// Redis' `functionsVerifyName`: `[A-Za-z0-9_]+`.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

fn err(msg: impl std::fmt::Display) -> Reply {
    Reply::err(format!("ERR {msg}"))
}

/// How FUNCTION RESTORE treats libraries that already exist.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RestorePolicy {
    Flush,
    Append,
    Replace,
}

impl FnState {
    fn engine(&mut self, run: &Arc<RunState>) -> Result<&Engine, String> {
        if self.engine.is_none() {
            self.engine = Some(Engine::new(run.clone()).map_err(|e| format!("Lua interpreter could not start: {e}"))?);
        }
        Ok(self.engine.as_ref().expect("just created"))
    }

    /// Compile and run a library's code (Redis' `functionsCreateWithLibraryCtx`
    /// up to its registrations); the library's name and what it registered.
    /// `timeout_ms` bounds the run (FUNCTION LOAD from a client).
    fn compile(
        &mut self,
        run: &Arc<RunState>,
        code: &Bytes,
        timeout_ms: Option<u64>,
    ) -> Result<(String, Library), String> {
        let md = checked_metadata(code)?;
        let engine = self.engine(run)?;
        let func = engine
            .lua
            .load(&code[md.body..])
            .set_name("@user_function")
            .into_function()
            .map_err(|e| format!("Error compiling function: {}", super::lua_message(&e)))?;
        let fenv: Table = engine
            .rt
            .raw_get("fenv")
            .map_err(|e| format!("Error compiling function: {e}"))?;
        func.set_environment(fenv)
            .map_err(|e| format!("Error compiling function: {e}"))?;
        let registered = RefCell::new(BTreeMap::new());
        let callbacks = engine
            .lua
            .create_table()
            .map_err(|e| format!("Error registering functions: ERR {e}"))?;
        run.load_deadline_ms
            .store(timeout_ms.map_or(0, |t| crate::db::now_ms() + t), Ordering::Relaxed);
        let outcome = engine.lua.scope(|scope| {
            let register =
                scope.create_function(|lua, args: MultiValue| register_function(lua, args, &registered, &callbacks))?;
            engine.rt.raw_set("register", register)?;
            let loader: Function = engine.rt.raw_get("load_library")?;
            loader.call::<(bool, Value)>(func)
        });
        run.load_deadline_ms.store(0, Ordering::Relaxed);
        let _ = engine.rt.raw_set("register", Value::Nil);
        let _ = engine.rt.raw_set("raised", Value::Nil);
        match outcome {
            Ok((true, _)) => {}
            Ok((false, e)) => return Err(format!("Error registering functions: {}", load_error(&e))),
            Err(e) => return Err(format!("Error registering functions: ERR {}", super::lua_message(&e))),
        }
        let functions = registered.into_inner();
        if functions.is_empty() {
            return Err("No functions registered".into());
        }
        Ok((
            md.name,
            Library {
                code: code.clone(),
                functions,
                callbacks: Some(callbacks),
            },
        ))
    }

    /// The first of `lib`'s functions that another library (other than
    /// `except`) already has.
    fn collision(&self, lib: &Library, except: Option<&str>) -> Option<String> {
        lib.functions.keys().find_map(|f| {
            let (owner, _) = self.by_name.get(&f.to_ascii_lowercase())?;
            (Some(owner.as_str()) != except).then(|| f.clone())
        })
    }
}

/// A load error's message as Redis' `luaExtractErrorInformation` reads it
/// from a load run without a message handler.
fn load_error(e: &Value) -> String {
    match e {
        Value::String(s) => format!("ERR {}", String::from_utf8_lossy(&s.as_bytes())),
        Value::Number(n) => format!("ERR {}", super::format_lua_number(*n)),
        Value::Integer(n) => format!("ERR {n}"),
        Value::Table(t) => match t.raw_get::<Value>("err") {
            Ok(Value::String(s)) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "(null)".into(),
        },
        _ => "(null)".into(),
    }
}

/// `redis.register_function(name, callback)` or
/// `redis.register_function{function_name=, callback=, flags=, description=}`.
fn register_function(
    lua: &Lua,
    args: MultiValue,
    registered: &RefCell<BTreeMap<String, Func>>,
    callbacks: &Table,
) -> mlua::Result<()> {
    let fail = |msg: &str| -> mlua::Result<()> { Err(raise(lua, error_table(lua, &format!("ERR {msg}"))?)) };
    let string = |v: &Value| -> Option<Bytes> {
        match v {
            Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Number(n) => Some(Bytes::from(super::format_lua_number(*n))),
            Value::Integer(n) => Some(Bytes::from(n.to_string())),
            _ => None,
        }
    };
    let (name, desc, callback, flags) = match args.len() {
        1 => {
            let Value::Table(t) = &args[0] else {
                return fail(
                    "calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).",
                );
            };
            let (mut name, mut desc, mut callback, mut flags) = (None, None, None, 0);
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let Some(key) = string(&k) else {
                    return fail("named argument key given to redis.register_function is not a string");
                };
                let key = String::from_utf8_lossy(&key).to_ascii_lowercase();
                match key.as_str() {
                    "function_name" => match string(&v) {
                        Some(n) => name = Some(n),
                        None => {
                            return fail("function_name argument given to redis.register_function must be a string");
                        }
                    },
                    "description" => match string(&v) {
                        Some(d) => desc = Some(d),
                        None => return fail("description argument given to redis.register_function must be a string"),
                    },
                    "callback" => match v {
                        Value::Function(f) => callback = Some(f),
                        _ => return fail("callback argument given to redis.register_function must be a function"),
                    },
                    "flags" => {
                        let Value::Table(list) = &v else {
                            return fail(
                                "flags argument to redis.register_function must be a table representing function flags",
                            );
                        };
                        match read_flags(list) {
                            Some(f) => flags = f,
                            None => return fail("unknown flag given"),
                        }
                    }
                    _ => return fail("unknown argument given to redis.register_function"),
                }
            }
            let Some(name) = name else {
                return fail("redis.register_function must get a function name argument");
            };
            let Some(callback) = callback else {
                return fail("redis.register_function must get a callback argument");
            };
            (name, desc, callback, flags)
        }
        2 => {
            let Some(name) = string(&args[0]) else {
                return fail("first argument to redis.register_function must be a string");
            };
            let Value::Function(callback) = &args[1] else {
                return fail("second argument to redis.register_function must be a function");
            };
            (name, None, callback.clone(), 0)
        }
        _ => return fail("wrong number of arguments to redis.register_function"),
    };
    if !valid_name(&name) {
        return fail(BAD_NAME);
    }
    let name = String::from_utf8_lossy(&name).into_owned();
    let mut registered = registered.borrow_mut();
    if registered.contains_key(&name) {
        drop(registered);
        return fail("Function already exists in the library");
    }
    callbacks.raw_set(name.as_str(), callback)?;
    registered.insert(name, Func { desc, flags });
    Ok(())
}

/// A `flags` table: every entry a known flag (any case), or `None`.
fn read_flags(list: &Table) -> Option<u32> {
    let mut flags = 0;
    for i in 1.. {
        match list.get::<Value>(i).ok()? {
            Value::Nil => break,
            Value::String(s) => {
                let s = s.to_str().ok()?;
                let (_, f) = super::SCRIPT_FLAGS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&s))?;
                flags |= f;
            }
            _ => return None,
        }
    }
    Some(flags)
}

impl Scripts {
    /// FUNCTION LOAD [REPLACE] code: the library's name.
    pub fn function_load(&self, db: &crate::db::Db, code: &[u8], replace: bool, from_master: bool) -> CmdResult {
        let mut st = self.functions.lock();
        self.synced(&mut st, db);
        let code = Bytes::copy_from_slice(code);
        let md = checked_metadata(&code).map_err(err)?;
        if !replace && st.libs.contains_key(&md.name) {
            return Err(err(format_args!("Library '{}' already exists", md.name)));
        }
        let timeout = (!from_master).then_some(LOAD_TIMEOUT_MS);
        let (name, lib) = self.compile_library(&mut st, &code, timeout)?;
        if let Some(f) = st.collision(&lib, Some(&name)) {
            return Err(err(format_args!("Function {f} already exists")));
        }
        self.unlink(&mut st, &name);
        let code = lib.code.clone();
        self.link(&mut st, name.clone(), lib);
        let generation = db.functions.update(|c| {
            c.insert(name.clone(), code);
        });
        self.commit(&mut st, generation);
        Ok(Reply::bulk(name))
    }

    /// FUNCTION DELETE library.
    pub fn function_delete(&self, db: &crate::db::Db, name: &[u8]) -> CmdResult {
        let mut st = self.functions.lock();
        self.synced(&mut st, db);
        let name = String::from_utf8_lossy(name);
        if self.unlink(&mut st, &name).is_none() {
            return Err(err("Library not found"));
        }
        let generation = db.functions.update(|c| {
            c.remove(name.as_ref());
        });
        self.commit(&mut st, generation);
        Ok(Reply::Ok)
    }

    /// FUNCTION FLUSH: every library, and the interpreter with them.
    pub fn function_flush(&self, db: &crate::db::Db) {
        let mut st = self.functions.lock();
        self.unlink_all(&mut st);
        st.engine = None;
        let generation = db.functions.replace(BTreeMap::new());
        self.commit(&mut st, generation);
    }

    /// FUNCTION RESTORE payload [policy].
    pub fn function_restore(&self, db: &crate::db::Db, payload: &[u8], policy: RestorePolicy) -> CmdResult {
        let Some(body) = crate::rdb::verify(payload) else {
            return Err(err("DUMP payload version or checksum are wrong"));
        };
        let mut st = self.functions.lock();
        self.synced(&mut st, db);
        // Compile every library first, into a set of its own (Redis' temporary
        // library context): nothing changes unless all of them load.
        let mut restored: BTreeMap<String, Library> = BTreeMap::new();
        let mut owners: HashMap<String, String> = HashMap::new();
        let mut r = crate::rdb::Reader::new(body);
        while !r.is_empty() {
            let code = match r.byte() {
                Err(_) => return Err(err("can not read data type")),
                Ok(crate::rdb::OPCODE_FUNCTION2) => r.string().map_err(|_| err("Failed loading library payload"))?,
                Ok(crate::rdb::OPCODE_FUNCTION_PRE_GA) => pre_ga_library(&mut r).map_err(err)?,
                Ok(_) => return Err(err("given type is not a function")),
            };
            let code = Bytes::from(code);
            let md = checked_metadata(&code).map_err(err)?;
            if restored.contains_key(&md.name) {
                return Err(err(format_args!("Library '{}' already exists", md.name)));
            }
            let (name, lib) = self.compile_library(&mut st, &code, None)?;
            for f in lib.functions.keys() {
                if owners.insert(f.to_ascii_lowercase(), name.clone()).is_some() {
                    return Err(err(format_args!("Function {f} already exists")));
                }
            }
            restored.insert(name, lib);
        }
        match policy {
            RestorePolicy::Flush => self.unlink_all(&mut st),
            RestorePolicy::Append | RestorePolicy::Replace => {
                let replace = policy == RestorePolicy::Replace;
                if !replace && let Some(name) = restored.keys().find(|n| st.libs.contains_key(*n)) {
                    return Err(err(format_args!("Library {name} already exists")));
                }
                // With REPLACE a library of the same name goes; another
                // library's function of the same name still refuses.
                for lib in restored.values() {
                    let clash = lib.functions.keys().find(|f| {
                        st.by_name
                            .get(&f.to_ascii_lowercase())
                            .is_some_and(|(owner, _)| !restored.contains_key(owner))
                    });
                    if let Some(f) = clash {
                        return Err(err(format_args!("Function {f} already exists")));
                    }
                }
                for name in restored.keys() {
                    self.unlink(&mut st, name);
                }
            }
        }
        let codes: Vec<(String, Bytes)> = restored.iter().map(|(n, l)| (n.clone(), l.code.clone())).collect();
        for (name, lib) in restored {
            self.link(&mut st, name, lib);
        }
        let generation = db.functions.update(|c| {
            if policy == RestorePolicy::Flush {
                c.clear();
            }
            c.extend(codes);
        });
        self.commit(&mut st, generation);
        Ok(Reply::Ok)
    }

    /// FUNCTION DUMP: every library as RDB `FUNCTION2` records.
    pub fn function_dump(db: &crate::db::Db) -> Reply {
        let set = db.functions.get();
        let mut out = Vec::new();
        for code in set.codes.values() {
            out.push(crate::rdb::OPCODE_FUNCTION2);
            crate::rdb::put_string(&mut out, code);
        }
        Reply::Bulk(Bytes::from(crate::rdb::seal(out)))
    }

    /// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE].
    pub fn function_list(&self, db: &crate::db::Db, pattern: Option<&[u8]>, with_code: bool) -> Reply {
        let mut st = self.functions.lock();
        self.synced(&mut st, db);
        let mut out = Vec::new();
        for (name, lib) in &st.libs {
            if pattern.is_some_and(|p| !crate::glob::glob_match(p, name.as_bytes(), true)) {
                continue;
            }
            let functions = lib
                .functions
                .iter()
                .map(|(fname, f)| {
                    Reply::Map(vec![
                        (Reply::bulk_static("name"), Reply::bulk(fname)),
                        (
                            Reply::bulk_static("description"),
                            f.desc.clone().map_or(Reply::Null, Reply::Bulk),
                        ),
                        (
                            Reply::bulk_static("flags"),
                            Reply::Set(
                                super::SCRIPT_FLAGS
                                    .iter()
                                    .filter(|(_, bit)| f.flags & bit != 0)
                                    .map(|(n, _)| Reply::status(*n))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect();
            let mut entry = vec![
                (Reply::bulk_static("library_name"), Reply::bulk(name)),
                (Reply::bulk_static("engine"), Reply::bulk_static("LUA")),
                (Reply::bulk_static("functions"), Reply::Array(functions)),
            ];
            if with_code {
                entry.push((Reply::bulk_static("library_code"), Reply::Bulk(lib.code.clone())));
            }
            out.push(Reply::Map(entry));
        }
        Reply::Array(out)
    }

    /// FUNCTION STATS (answered while a script runs: no interpreter lock).
    pub fn function_stats(&self) -> CmdResult {
        let run = &self.run;
        let running = if run.running.load(Ordering::Acquire) {
            let current = run.function.lock().clone();
            let Some((name, argv)) = current else {
                return Err(Reply::err(super::BUSY_EVAL));
            };
            let ms = crate::db::now_ms().saturating_sub(run.started_ms.load(Ordering::Relaxed));
            Reply::Map(vec![
                (Reply::bulk_static("name"), Reply::bulk(name)),
                (
                    Reply::bulk_static("command"),
                    Reply::Array(argv.into_iter().map(Reply::Bulk).collect()),
                ),
                (Reply::bulk_static("duration_ms"), Reply::Int(ms as i64)),
            ])
        } else {
            Reply::Null
        };
        Ok(Reply::Map(vec![
            (Reply::bulk_static("running_script"), running),
            (
                Reply::bulk_static("engines"),
                Reply::Map(vec![(
                    Reply::bulk_static("LUA"),
                    Reply::Map(vec![
                        (
                            Reply::bulk_static("libraries_count"),
                            Reply::Int(self.fn_libraries.load(Ordering::Relaxed) as i64),
                        ),
                        (
                            Reply::bulk_static("functions_count"),
                            Reply::Int(self.fn_functions.load(Ordering::Relaxed) as i64),
                        ),
                    ]),
                )]),
            ),
        ]))
    }

    /// INFO memory: the functions' interpreter, their code and counts.
    pub fn functions_memory(&self) -> (u64, u64, u64, u64) {
        (
            self.fn_lua_bytes.load(Ordering::Relaxed),
            self.fn_code_bytes.load(Ordering::Relaxed),
            self.fn_functions.load(Ordering::Relaxed),
            self.fn_libraries.load(Ordering::Relaxed),
        )
    }

    /// Record that the compiled set is now the dataset's `generation`.
    fn commit(&self, st: &mut FnState, generation: u64) {
        st.generation = generation;
        self.fn_flags.lock().0 = generation;
        let lua = st.engine.as_ref().map_or(0, |e| e.lua.used_memory());
        self.fn_lua_bytes.store(lua as u64, Ordering::Relaxed);
    }

    /// Bring the compiled set up to the dataset's: when the set was replaced
    /// underneath (a snapshot load, a full sync), compile it again from its
    /// code in a fresh interpreter.
    fn synced<'a>(&self, st: &'a mut FnState, db: &crate::db::Db) -> &'a mut FnState {
        let set = db.functions.get();
        if st.generation == set.generation {
            return st;
        }
        self.unlink_all(st);
        st.engine = None;
        let rebuilt = super::guarded(|| {
            for (name, code) in set.codes.iter() {
                match st.compile(&self.run, code, None) {
                    Ok((n, lib)) if n == *name => self.link(st, n, lib),
                    Ok((n, _)) => tracing::error!(library = %name, "stored library code names itself {n}; not loaded"),
                    // Code is stored only after it compiled once: this is a
                    // build whose Lua differs. The code is kept (and saved
                    // again); the log says why its functions are missing.
                    Err(e) => tracing::error!(library = %name, error = %e, "stored function library failed to load"),
                }
            }
        });
        if rebuilt.is_none() {
            self.reset(st);
        } else {
            self.commit(st, set.generation);
        }
        st
    }

    /// [`FnState::compile`], with the interpreter reset if it fails inside.
    fn compile_library(
        &self,
        st: &mut FnState,
        code: &Bytes,
        timeout_ms: Option<u64>,
    ) -> Result<(String, Library), Reply> {
        match super::guarded(|| st.compile(&self.run, code, timeout_ms)) {
            Some(compiled) => compiled.map_err(err),
            None => {
                self.reset(st);
                Err(Reply::err(super::INTERPRETER_RESET))
            }
        }
    }

    /// Add a compiled library: its callbacks into the interpreter's cache
    /// table, its functions into the name index, the flag map and the
    /// counters. Every change is per library, never a pass over all.
    fn link(&self, st: &mut FnState, name: String, mut lib: Library) {
        if let (Some(engine), Some(callbacks)) = (st.engine.as_ref(), lib.callbacks.take()) {
            let _ = engine.cache.raw_set(name.as_str(), callbacks);
        }
        let mut flags = self.fn_flags.lock();
        for (f, meta) in &lib.functions {
            // A name two functions of one library share in different case
            // is found as the first (as Redis' case-insensitive dictionary).
            if let std::collections::hash_map::Entry::Vacant(slot) = st.by_name.entry(f.to_ascii_lowercase()) {
                flags.1.insert(slot.key().clone(), meta.flags);
                slot.insert((name.clone(), f.clone()));
            }
        }
        self.fn_libraries.fetch_add(1, Ordering::Relaxed);
        self.fn_functions
            .fetch_add(lib.functions.len() as u64, Ordering::Relaxed);
        self.fn_code_bytes.fetch_add(lib.code.len() as u64, Ordering::Relaxed);
        st.libs.insert(name, lib);
    }

    /// Remove a library (its code goes with its entry in the cache table).
    fn unlink(&self, st: &mut FnState, name: &str) -> Option<Library> {
        let lib = st.libs.remove(name)?;
        if let Some(engine) = st.engine.as_ref() {
            let _ = engine.cache.raw_set(name, Value::Nil);
        }
        let mut flags = self.fn_flags.lock();
        for f in lib.functions.keys() {
            let lower = f.to_ascii_lowercase();
            if st.by_name.get(&lower).is_some_and(|(owner, _)| owner == name) {
                st.by_name.remove(&lower);
                flags.1.remove(&lower);
            }
        }
        self.fn_libraries.fetch_sub(1, Ordering::Relaxed);
        self.fn_functions
            .fetch_sub(lib.functions.len() as u64, Ordering::Relaxed);
        self.fn_code_bytes.fetch_sub(lib.code.len() as u64, Ordering::Relaxed);
        Some(lib)
    }

    fn unlink_all(&self, st: &mut FnState) {
        let names: Vec<String> = st.libs.keys().cloned().collect();
        for name in names {
            self.unlink(st, &name);
        }
    }

    /// Drop the interpreter after it failed inside (see [`super::guarded`]);
    /// the libraries are compiled again from the dataset's code on next use.
    fn reset(&self, st: &mut FnState) {
        self.unlink_all(st);
        st.engine = None;
        st.generation = u64::MAX;
        self.fn_flags.lock().0 = u64::MAX;
    }
}

/// A library as Redis 7.0's release candidates saved it: name, engine,
/// optional description, body (`rdbFunctionLoad`'s translation).
fn pre_ga_library(r: &mut crate::rdb::Reader<'_>) -> Result<Vec<u8>, &'static str> {
    let name = r.string().map_err(|_| "Failed loading library name")?;
    let engine = r.string().map_err(|_| "Failed loading engine name")?;
    let has_desc = r.len().map_err(|_| "Failed loading library description indicator")?;
    if has_desc != 0 {
        r.string().map_err(|_| "Failed loading library description")?;
    }
    let body = r.string().map_err(|_| "Failed loading library blob")?;
    let mut code = b"#!".to_vec();
    code.extend_from_slice(&engine);
    code.extend_from_slice(b" name=");
    code.extend_from_slice(&name);
    code.push(b'\n');
    code.extend_from_slice(&body);
    Ok(code)
}

/// FCALL / FCALL_RO `name numkeys key... arg...` inside the command's
/// context (every partition is locked).
pub fn fcall(ctx: &mut Ctx, args: &[&[u8]], read_only: bool) -> CmdResult {
    crate::cmd::feed_monitors_script(ctx.state, ctx.session, args);
    let state = ctx.state;
    let scripts = &state.scripts;
    let mut st = scripts.functions.lock();
    scripts.synced(&mut st, &state.db);
    let wanted = String::from_utf8_lossy(args[1]).to_ascii_lowercase();
    let Some((lib, name)) = st.by_name.get(&wanted).cloned() else {
        return Err(err("Function not found"));
    };
    let script_flags = st.libs[&lib].functions[&name].flags;
    let numkeys = std::str::from_utf8(args[2])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| err("Bad number of keys provided"))?;
    if numkeys > (args.len() - 3) as i64 {
        return Err(err("Number of keys can't be greater than number of args"));
    }
    if numkeys < 0 {
        return Err(err("Number of keys can't be negative"));
    }
    let numkeys = numkeys as usize;
    call::prepare(ctx, script_flags, read_only)?;
    let declared_slot = (state.cluster.is_enabled() && numkeys > 0).then(|| crate::slot::key_slot(args[3]));
    let engine = st.engine(&scripts.run).map_err(err)?;
    let lua_err = |e: mlua::Error| err(e);
    let func: Function = engine
        .cache
        .raw_get::<Table>(lib.as_str())
        .and_then(|t| t.raw_get(name.as_str()))
        .map_err(lua_err)?;
    let keys = super::array(&engine.lua, &args[3..3 + numkeys]).map_err(lua_err)?;
    let argv = super::array(&engine.lua, &args[3 + numkeys..]).map_err(lua_err)?;
    *scripts.run.function.lock() = Some((name.clone(), args.iter().map(|a| Bytes::copy_from_slice(a)).collect()));
    let _running = scripts.start_run(state);
    let log_mark = ctx.log.len();
    let outcome = super::guarded(|| {
        call::run(
            ctx,
            engine,
            &func,
            &name,
            script_flags,
            read_only,
            declared_slot,
            Some((keys, argv)),
        )
    });
    drop(func);
    if scripts.take_shutdown() {
        ctx.log.truncate(log_mark);
    }
    let Some(outcome) = outcome else {
        scripts.reset(&mut st);
        return Err(Reply::err(super::INTERPRETER_RESET));
    };
    let _ = engine.lua.gc_step_kbytes(50);
    scripts
        .fn_lua_bytes
        .store(engine.lua.used_memory() as u64, Ordering::Relaxed);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_metadata() {
        let md = metadata(b"#!lua name=mylib\nreturn 1").unwrap();
        assert_eq!((md.engine.as_str(), md.name.as_str(), md.body), ("lua", "mylib", 16));
        let md = metadata(b"#!LUA \"name=x y\"\n").unwrap();
        assert_eq!(md.name, "x y");
        assert_eq!(metadata(b"return 1").unwrap_err(), "Missing library metadata");
        assert_eq!(metadata(b"#!lua name=x").unwrap_err(), "Invalid library metadata");
        assert_eq!(metadata(b"#!lua\n").unwrap_err(), "Library name was not given");
        assert_eq!(
            metadata(b"#!lua name=a name=b\n").unwrap_err(),
            "Invalid metadata value, name argument was given multiple times"
        );
        assert_eq!(
            metadata(b"#!lua foo=bar\n").unwrap_err(),
            "Invalid metadata value given: foo=bar"
        );
        assert!(valid_name(b"my_lib9"));
        assert!(!valid_name(b""));
        assert!(!valid_name(b"my-lib"));
    }
}
