//! Commands: one file per command family, one table that dispatches.
//!
//! Each family file exports `COMMANDS: &[CommandSpec]`. A spec carries what
//! Redis' command table carries — name, arity, flags, where the keys are —
//! and the handler that parses and applies the command. The table is the one
//! place that knows every command, so arity checks, key locking, `COMMAND
//! INFO`/`DOCS`/`GETKEYS`, per-command statistics and cluster slot
//! checks ([`crate::cluster::route`]) are done once, here, instead of in two hundred handlers. (This
//! departs from a mini-redis-style `Command` enum: with Redis' full command set
//! the table is the smaller and more uniform shape, and `COMMAND` needs the
//! metadata anyway.)
//!
//! Executing a command: look it up, check arity/auth/context, queue it if the
//! client is in MULTI, evict if over `maxmemory`, lock the partitions of its
//! keys (see [`crate::db`]), run the handler with a [`Ctx`], release the locks,
//! then publish keyspace notifications and serve clients blocked on keys the
//! command made ready.

pub mod aof;
pub mod cluster;
pub mod connection;
pub mod geo;
pub mod hash;
pub mod hll;
pub mod keys;
pub mod list;
pub mod parse;
pub mod persist;
pub mod pubsub;
pub mod repl;
pub mod script;
pub mod server;
pub mod set;
pub mod sort;
pub mod stream;
pub mod string;
pub mod txn;
pub mod zset;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::db::limits::Limits;
use crate::db::{Keys, now_ms};
use crate::resp::Reply;
use crate::session::Session;
use crate::state::State;

/// A handler's result: `Err` carries an error reply (so `?` works for
/// argument errors and WRONGTYPE).
pub type CmdResult = Result<Reply, Reply>;
pub type Handler = fn(&mut Ctx<'_>, &[&[u8]]) -> CmdResult;

/// Borrow owned arguments (a queued transaction, a blocked command, a
/// replicated command) as the slices a handler takes. A handler borrows a
/// client's arguments from the connection's input buffer for the length of
/// the call (see [`crate::resp::parse::view`]) and copies what it keeps.
pub fn view(args: &[Bytes]) -> crate::resp::parse::Slices<'_> {
    args.iter().map(|a| a.as_ref()).collect()
}

/// Copy borrowed arguments for keeping past the request (MULTI's queue, a
/// blocked command, the write log's pending entries).
pub fn owned(args: &[&[u8]]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const SKIP_MONITOR: u32 = 1 << 9;
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    pub const FAST: u32 = 1 << 11;
    pub const NO_AUTH: u32 = 1 << 12;
    pub const MAY_REPLICATE: u32 = 1 << 13;
    pub const NO_MULTI: u32 = 1 << 14;
    pub const ALLOW_BUSY: u32 = 1 << 15;
    /// Allowed while a RESP2 client has subscriptions.
    pub const PUBSUB_CONTEXT: u32 = 1 << 16;
    /// Runs immediately even inside MULTI (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET).
    pub const TXN_CONTROL: u32 = 1 << 17;
    /// Runs holding every partition although it names its keys (SORT, whose
    /// BY/GET patterns read keys found only while it runs); cluster routing
    /// still follows the named keys.
    pub const LOCK_ALL: u32 = 1 << 18;
    /// A command that may be given no keys although it names where they
    /// are (EVAL with `numkeys` 0).
    pub const NO_MANDATORY_KEYS: u32 = 1 << 19;
    /// A client's script command (EVAL...): run on a blocking thread, not
    /// on the connection thread (see [`crate::script`]).
    pub const SCRIPT: u32 = 1 << 20;

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_MONITOR, "skip_monitor"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (MAY_REPLICATE, "may_replicate"),
        (NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (NO_MULTI, "no_multi"),
        (ALLOW_BUSY, "allow_busy"),
    ];
}

/// Where a command's keys are.
#[derive(Clone, Copy)]
pub enum KeySpec {
    /// No keys.
    None,
    /// Keys at `first..=last` (negative `last` counts from the end) every `step`.
    Range { first: i32, last: i32, step: i32 },
    /// Keys found by parsing the arguments (numkeys, STREAMS ...): "movablekeys".
    Custom(fn(&[&[u8]]) -> Vec<usize>),
    /// The whole keyspace (KEYS, SCAN, FLUSHALL, DBSIZE, EXEC...).
    All,
}

pub const fn one_key() -> KeySpec {
    KeySpec::Range {
        first: 1,
        last: 1,
        step: 1,
    }
}
pub const fn all_keys_from(first: i32) -> KeySpec {
    KeySpec::Range {
        first,
        last: -1,
        step: 1,
    }
}

/// Key positions of a `numkeys key...` command (LMPOP, ZUNION, EVAL, ...)
/// with the count at `numkeys_idx`, as Redis' key extractors: `numkeys` read
/// with `atoi`, no keys at all when it is out of range (the command itself
/// then reports the error).
pub fn numkeys_keys(args: &[&[u8]], numkeys_idx: usize) -> Vec<usize> {
    let first = numkeys_idx + 1;
    let Some(arg) = args.get(numkeys_idx) else {
        return Vec::new();
    };
    let n = parse::atoi(arg);
    let avail = args.len().saturating_sub(first) as i64;
    if n < 1 || n > avail {
        return Vec::new();
    }
    (first..first + n as usize).collect()
}

/// [`numkeys_keys`] with the count at index 2 (EVAL, FCALL, ZINTERCARD, ZMPOP).
pub fn numkeys_at_2(args: &[&[u8]]) -> Vec<usize> {
    numkeys_keys(args, 2)
}

pub struct CommandSpec {
    /// Lower case. Subcommands are named by their own word (`get` under `config`).
    pub name: &'static str,
    /// As Redis: positive = exact argument count (command name included),
    /// negative = at least that many.
    pub arity: i32,
    pub flags: u32,
    pub keys: KeySpec,
    /// Redis' command group (`string`, `list`, `generic`, `server` ...).
    pub group: &'static str,
    pub summary: &'static str,
    pub since: &'static str,
    pub complexity: &'static str,
    pub handler: Handler,
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    pub fn is_write(&self) -> bool {
        self.flags & flags::WRITE != 0
    }
}

/// Stats/lookup identity of a spec: its index in [`Table::all`].
pub struct Table {
    pub all: Vec<(&'static CommandSpec, String)>,
    // Looked up on every request: a fast non-cryptographic hash (the keys are
    // our own static names and addresses, nothing a client chooses).
    by_name: HashMap<&'static str, usize, foldhash::fast::FixedState>,
    by_ptr: HashMap<usize, usize, foldhash::fast::FixedState>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.all.len()
    }
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
    /// Index of a spec (for statistics).
    pub fn id(&self, spec: &'static CommandSpec) -> usize {
        self.by_ptr
            .get(&(spec as *const CommandSpec as usize))
            .copied()
            .unwrap_or(0)
    }
    /// Full name: `get`, or `config|get` for a subcommand.
    pub fn full_name(&self, spec: &'static CommandSpec) -> &str {
        &self.all[self.id(spec)].1
    }
    pub fn top_level(&self) -> impl Iterator<Item = &'static CommandSpec> + '_ {
        self.all.iter().filter(|(_, n)| !n.contains('|')).map(|(s, _)| *s)
    }
    /// Index of a command by its full name (`client|list`): for the rare
    /// caller that needs it, a linear scan.
    pub fn id_of(&self, full_name: &str) -> Option<usize> {
        self.all.iter().position(|(_, n)| n == full_name)
    }
    pub fn get(&self, name: &str) -> Option<&'static CommandSpec> {
        self.by_name.get(name).map(|&i| self.all[i].0)
    }
}

fn families() -> [&'static [CommandSpec]; 19] {
    [
        connection::COMMANDS,
        keys::COMMANDS,
        string::COMMANDS,
        list::COMMANDS,
        hash::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
        stream::COMMANDS,
        pubsub::COMMANDS,
        txn::COMMANDS,
        server::COMMANDS,
        cluster::COMMANDS,
        repl::COMMANDS,
        aof::COMMANDS,
        persist::COMMANDS,
        sort::COMMANDS,
        geo::COMMANDS,
        hll::COMMANDS,
        script::COMMANDS,
    ]
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    let mut t = Table {
        all: Vec::new(),
        by_name: HashMap::default(),
        by_ptr: HashMap::default(),
    };
    for fam in families() {
        for spec in fam {
            let id = t.all.len();
            t.all.push((spec, spec.name.to_string()));
            t.by_name.insert(spec.name, id);
            t.by_ptr.insert(spec as *const CommandSpec as usize, id);
            for sub in spec.subcommands {
                let id = t.all.len();
                t.all.push((sub, format!("{}|{}", spec.name, sub.name)));
                t.by_ptr.insert(sub as *const CommandSpec as usize, id);
            }
        }
    }
    t
});

pub fn table() -> &'static Table {
    &TABLE
}

/// Find a command by its (case-insensitive) name.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&buf[..name.len()]).ok()?;
    table().get(lower)
}

fn find_sub(spec: &'static CommandSpec, name: &[u8]) -> Option<&'static CommandSpec> {
    spec.subcommands
        .iter()
        .find(|s| s.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Key argument positions of a command invocation.
pub fn key_positions(spec: &CommandSpec, args: &[&[u8]]) -> Vec<usize> {
    key_positions_iter(spec, args).collect()
}

/// Key argument positions without allocating for the common fixed-position
/// specs (this runs on every command).
pub fn key_positions_iter(spec: &CommandSpec, args: &[&[u8]]) -> KeyPositions {
    match spec.keys {
        KeySpec::None | KeySpec::All => KeyPositions::Listed(Vec::new().into_iter()),
        KeySpec::Range { first, last, step } => {
            let n = args.len() as i32;
            let last = if last < 0 { n + last } else { last.min(n - 1) };
            KeyPositions::Range {
                next: first,
                last: last.min(n - 1),
                step: step.max(1),
            }
        }
        KeySpec::Custom(f) => {
            let n = args.len();
            KeyPositions::Listed(f(args).into_iter().filter(|&i| i < n).collect::<Vec<_>>().into_iter())
        }
    }
}

pub enum KeyPositions {
    Range { next: i32, last: i32, step: i32 },
    Listed(std::vec::IntoIter<usize>),
}

impl Iterator for KeyPositions {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        match self {
            KeyPositions::Range { next, last, step } => {
                if *next > *last {
                    return None;
                }
                let i = *next;
                *next += *step;
                Some(i as usize)
            }
            KeyPositions::Listed(it) => it.next(),
        }
    }
}

/// What a blocking command waits for.
pub struct BlockSpec {
    pub keys: Vec<Bytes>,
    /// `None` = forever.
    pub timeout: Option<Duration>,
    /// Reply when the timeout passes.
    pub on_timeout: Reply,
    /// Command to re-run when a key is ready (defaults to the original).
    pub args: Option<Vec<Bytes>>,
}

/// A keyspace notification to publish after the locks are released.
pub struct Event {
    pub class: u32,
    pub event: &'static str,
    pub key: Bytes,
}

/// Everything a handler may use.
pub struct Ctx<'a> {
    pub state: &'a State,
    pub ks: Keys<'a>,
    pub session: &'a mut Session,
    /// Set by a blocking command that found nothing to serve.
    pub block: Option<BlockSpec>,
    pub events: Vec<Event>,
    /// Keys whose new contents may unblock waiting clients.
    pub ready: SmallVec<[Bytes; 2]>,
    /// Number of changes made (for INFO / save points).
    pub dirty: u64,
    /// This is a re-run for a blocked client: never block again.
    pub retry: bool,
    /// On a re-run, the ready key that woke the client. As in Redis 7.0, a
    /// client blocked on several keys is served from this one (not from the
    /// first of its keys that has data), so one transaction that fills two
    /// keys serves each key's waiters from that key.
    pub woken_by: Option<Bytes>,
    /// Running inside EXEC: blocking commands behave as non-blocking.
    pub in_exec: bool,
    /// Called from a Lua script (`redis.call`): a few commands answer as
    /// Redis answers its scripts (XREAD BLOCK refused, SORT of a set ordered).
    pub in_script: bool,
    /// What this command writes to the write log instead of its own
    /// arguments (Redis' `alsoPropagate`): set through [`Ctx::propagate`] by
    /// commands whose effect is not reproduced by replaying them verbatim
    /// (relative TTLs, random picks, generated IDs, blocking forms).
    pub propagate: Option<Vec<Vec<Bytes>>>,
    /// Commands collected for the write log so far (a transaction collects
    /// one entry per queued command that changed something).
    pub log: Vec<Vec<Bytes>>,
    /// `dirty` and `ks.expired.len()` when the log was last collected.
    log_mark: (u64, usize),
}

impl<'a> Ctx<'a> {
    /// The node's encoding thresholds now ([`crate::db::limits`]).
    pub fn limits(&self) -> Limits {
        self.state.config.limits.load()
    }

    /// May this command block now?
    pub fn can_block(&self) -> bool {
        !self.retry && !self.in_exec
    }

    /// Record a change to `key`: WATCH invalidation, blocked-client wakeup,
    /// keyspace notification. Every successful write calls this once per key
    /// it changed (Redis' `signalModifiedKey` + `notifyKeyspaceEvent`).
    pub fn changed(&mut self, key: &[u8], class: u32, event: &'static str) {
        self.state.watches.touch(key);
        self.dirty += 1;
        if self.state.blocking.any() && !self.ready.iter().any(|k| k.as_ref() == key) {
            self.ready.push(Bytes::copy_from_slice(key));
        }
        self.notify(class, event, key);
    }

    /// Write `cmd` to the write log in place of this command's arguments.
    /// Call once per command to log, in order; a command that calls this
    /// logs only what it passes here.
    pub fn propagate(&mut self, cmd: Vec<Bytes>) {
        self.propagate.get_or_insert_with(Vec::new).push(cmd);
    }

    /// Write `cmd` (given as byte strings) to the write log: the common
    /// shape of [`Ctx::propagate`] for rewritten commands.
    pub fn propagate_args(&mut self, cmd: &[&[u8]]) {
        self.propagate(cmd.iter().map(|a| Bytes::copy_from_slice(a)).collect());
    }

    /// This command changed something but must not be logged at all.
    pub fn propagate_nothing(&mut self) {
        self.propagate.get_or_insert_with(Vec::new);
    }

    /// Count a change that has no key to signal (a consumer group's
    /// pending list, FLUSHALL of an empty keyspace): it is still logged.
    pub fn dirty(&mut self) {
        self.dirty += 1;
    }

    /// Move what the command just run wrote into [`Ctx::log`]: a `DEL` for
    /// each key lazy expiry removed (before the command's own effects, which
    /// is when they happened), then the command's replacement commands or,
    /// if it changed anything, its own arguments.
    pub fn collect_log(&mut self, args: &[&[u8]]) {
        let (dirty_mark, expired_mark) = self.log_mark;
        for key in self.ks.expired.get(expired_mark..).unwrap_or_default() {
            self.log.push(vec![Bytes::from_static(b"DEL"), key.clone()]);
        }
        match self.propagate.take() {
            Some(cmds) => self.log.extend(cmds),
            None if self.dirty > dirty_mark => self.log.push(owned(args)),
            None => {}
        }
        self.log_mark = (self.dirty, self.ks.expired.len());
    }

    /// Collect the last command's log entries and append everything
    /// collected to the write log while the partition locks are still held
    /// (that is what orders the log like the keyspace). `atomic` wraps
    /// several commands in MULTI/EXEC: every caller passes it, as Redis 7.0
    /// wraps whatever one command propagates as several commands (SPOP's
    /// SREM batches, XREADGROUP's XCLAIMs + XGROUP SETID, a transaction), so
    /// a replica or a log replay never applies half of one command.
    pub fn flush_log(&mut self, args: &[&[u8]], atomic: bool) {
        self.flush_log_framed(args, None, atomic);
    }

    /// [`Ctx::flush_log`] given the bytes `args` arrived as (a canonical
    /// multibulk, see [`crate::resp::parse::view`]): a command
    /// that logs itself verbatim appends those bytes as they are.
    pub fn flush_log_framed(&mut self, args: &[&[u8]], frame: Option<&[u8]>, atomic: bool) {
        // On a replica the log holds the primary's stream, byte for byte:
        // the primary's commands relay what they were received as, and a
        // writable replica's local writes are not logged (as Redis 4+).
        if self.session.repl.master || self.state.repl.is_replica() {
            self.collect_log(args);
            self.log.clear();
            if let Some(raw) = self.session.repl.relay.take() {
                self.state.db.wlog.append_raw(&raw);
            }
            return;
        }
        // The common case — one command that logs itself verbatim — is
        // encoded straight from its arguments, without copying them.
        if self.log.is_empty()
            && self.propagate.is_none()
            && self.dirty > self.log_mark.0
            && self.ks.expired.len() == self.log_mark.1
        {
            let end = match frame {
                Some(frame) => {
                    debug_assert!(
                        {
                            let mut encoded = Vec::new();
                            crate::wlog::encode_command(&mut encoded, args);
                            encoded == frame
                        },
                        "a request's frame is the encoding of its arguments"
                    );
                    self.state
                        .db
                        .wlog
                        .append_raw_waking(frame, !self.session.pushes_through)
                }
                None => self
                    .state
                    .db
                    .wlog
                    .append_waking(&[args], false, !self.session.pushes_through),
            };
            self.session.handle.write_offset.fetch_max(end, Ordering::Relaxed);
            self.log_mark = (self.dirty, self.ks.expired.len());
            return;
        }
        self.collect_log(args);
        if !self.log.is_empty() {
            let end = self
                .state
                .db
                .wlog
                .append_waking(&self.log, atomic, !self.session.pushes_through);
            self.session.handle.write_offset.fetch_max(end, Ordering::Relaxed);
            self.log.clear();
        }
    }

    /// A keyspace notification without a modification signal.
    pub fn notify(&mut self, class: u32, event: &'static str, key: &[u8]) {
        self.notify_created();
        if self.state.config.notify_flags.load(Ordering::Relaxed) & class != 0 {
            self.events.push(Event {
                class,
                event,
                key: Bytes::copy_from_slice(key),
            });
        }
    }

    /// `new` events for the keys created since the last event, so they come
    /// before the event of the command that created them, as Redis fires
    /// `new` from `dbAdd`. Called by [`Ctx::notify`] and when a command ends.
    pub fn notify_created(&mut self) {
        if self.ks.created.is_empty() {
            return;
        }
        for key in std::mem::take(&mut self.ks.created) {
            self.events.push(Event {
                class: crate::notify::NEW,
                event: "new",
                key,
            });
        }
    }

    /// Count a read lookup of `key` as [`Ctx::looked_up`] would, for
    /// commands whose own lookup cannot (the value borrows the keyspace
    /// while they work): OBJECT (`notify` false: Redis' lookup there sends
    /// no key-miss event) and XINFO.
    pub fn count_lookup(&mut self, key: &[u8], notify: bool) {
        let found = self.ks.peek(key).is_some();
        if notify {
            self.looked_up(key, found);
        } else {
            count_stats(self.state, found);
        }
    }

    /// A read lookup of `key` ended (Redis' `lookupKeyRead`): a keyspace hit
    /// or miss for INFO, and on a miss the `keymiss` event.
    pub fn looked_up(&mut self, key: &[u8], found: bool) {
        looked_up(self.state, &mut self.events, key, found);
    }

    pub fn proto(&self) -> u8 {
        self.session.proto
    }
}

/// [`Ctx::looked_up`] without borrowing the whole [`Ctx`] (for a handler
/// whose looked-up value still borrows `ctx.ks`: pass `&mut ctx.events`).
pub(crate) fn looked_up(state: &State, events: &mut Vec<Event>, key: &[u8], found: bool) {
    count_stats(state, found);
    if !found && state.config.notify_flags.load(Ordering::Relaxed) & crate::notify::KEY_MISS != 0 {
        events.push(Event {
            class: crate::notify::KEY_MISS,
            event: "keymiss",
            key: Bytes::copy_from_slice(key),
        });
    }
}

fn count_stats(state: &State, found: bool) {
    let s = &state.stats;
    if found { &s.keyspace_hits } else { &s.keyspace_misses }.fetch_add(1, Ordering::Relaxed);
}

/// What a command asks of its connection.
pub enum Outcome {
    Reply(Reply),
    /// Block until a key is ready or the timeout passes.
    Block {
        spec: BlockSpec,
        args: Vec<Bytes>,
    },
    /// A script command to run on a blocking thread ([`run_script`]): it
    /// holds every partition for as long as the script runs, and the
    /// connection thread must stay free to serve `-BUSY` and SCRIPT KILL.
    /// The caller holds [`crate::script::Scripts::try_schedule`].
    Script {
        spec: &'static CommandSpec,
        id: usize,
        args: Vec<Bytes>,
        routed_slot: Option<u16>,
    },
    /// Another client's script is running: wait for
    /// [`crate::script::Scripts::settled`] and execute the request again,
    /// instead of blocking this connection thread on the partition locks.
    AwaitScript,
}

fn unknown_command(args: &[&[u8]]) -> Reply {
    let name = String::from_utf8_lossy(args[0]);
    let name: String = name.chars().take(128).collect();
    let mut rest = String::new();
    for a in args[1..].iter() {
        let a = String::from_utf8_lossy(a);
        let a: String = a.chars().take(128).collect();
        rest.push_str(&format!("'{a}' "));
        if rest.len() > 128 {
            break;
        }
    }
    Reply::err(format!(
        "ERR unknown command '{name}', with args beginning with: {rest}"
    ))
}

fn wrong_arity(spec: &'static CommandSpec) -> Reply {
    Reply::err(format!(
        "ERR wrong number of arguments for '{}' command",
        table().full_name(spec)
    ))
}

/// Resolve a command (and subcommand) and check its arity.
pub fn resolve(args: &[&[u8]]) -> Result<&'static CommandSpec, Reply> {
    let Some(spec) = lookup(args[0]) else {
        return Err(unknown_command(args));
    };
    let spec = if !spec.subcommands.is_empty() && args.len() >= 2 {
        match find_sub(spec, args[1]) {
            Some(sub) => sub,
            None => {
                let sub = String::from_utf8_lossy(args[1]);
                let sub: String = sub.chars().take(128).collect();
                return Err(Reply::err(format!(
                    "ERR unknown subcommand '{sub}'. Try {} HELP.",
                    spec.name.to_ascii_uppercase()
                )));
            }
        }
    } else {
        spec
    };
    check_arity(spec, args.len())?;
    Ok(spec)
}

fn check_arity(spec: &'static CommandSpec, n: usize) -> Result<(), Reply> {
    let n = n as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return Err(wrong_arity(spec));
    }
    Ok(())
}

/// Resolve through the session's one-entry cache of its last command.
fn resolve_cached(session: &mut Session, args: &[&[u8]]) -> Result<(&'static CommandSpec, usize), Reply> {
    if let Some((spec, id)) = session.last_command
        && spec.name.len() == args[0].len()
        && spec.name.as_bytes().eq_ignore_ascii_case(args[0])
    {
        check_arity(spec, args.len())?;
        return Ok((spec, id));
    }
    let spec = resolve(args)?;
    let id = table().id(spec);
    // Only top-level commands without subcommands are cached: a
    // subcommand's spec is not what the first argument names.
    if spec.subcommands.is_empty() && !table().all[id].1.contains('|') {
        session.last_command = Some((spec, id));
    }
    Ok((spec, id))
}

pub(crate) fn is_over_maxmemory(state: &State) -> bool {
    let max = state.config.maxmemory.load(Ordering::Relaxed);
    max > 0 && state.db.used_memory() as u64 > max
}

/// Evict if over the memory limit; true when still over it afterwards.
pub(crate) fn enforce_maxmemory(state: &State) -> bool {
    if !is_over_maxmemory(state) {
        return false;
    }
    let now = now_ms();
    let evicted = crate::db::evict::evict(&state.db, now, |_| is_over_maxmemory(state));
    for key in &evicted {
        state.watches.touch(key);
        state.notify(crate::notify::EVICTED, "evicted", key);
    }
    is_over_maxmemory(state)
}

/// Execute one client request.
pub fn execute(state: &State, session: &mut Session, args: &[&[u8]]) -> Outcome {
    execute_framed(state, session, args, None)
}

/// [`execute`] for a client's request, given the bytes it arrived as when
/// it was a multibulk (see [`crate::resp::parse::view`]): a command that
/// the write log records verbatim is logged by copying them.
pub fn execute_framed(state: &State, session: &mut Session, args: &[&[u8]], frame: Option<&[u8]>) -> Outcome {
    if args.is_empty() {
        return Outcome::Reply(Reply::Raw(Bytes::new()));
    }
    let (spec, id) = match resolve_cached(session, args) {
        Ok(s) => s,
        Err(e) => {
            if let Some(m) = session.multi.as_mut() {
                m.aborted = true;
            }
            count_error(state, &e);
            return Outcome::Reply(e);
        }
    };
    if !session.authenticated && spec.flags & flags::NO_AUTH == 0 {
        return reject(state, id, Reply::err("NOAUTH Authentication required."));
    }
    if session.in_pubsub_context() && spec.flags & flags::PUBSUB_CONTEXT == 0 {
        return reject(
            state,
            id,
            Reply::err(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                table().full_name(spec)
            )),
        );
    }
    // A client's script holds every partition while it runs: wait for it
    // (or, once it is past busy-reply-threshold, answer -BUSY) without
    // blocking this connection thread on its locks. A replica applies its
    // primary's stream whatever runs.
    if session.client_connection && state.scripts.is_scheduled() && !session.repl.master {
        if !state.scripts.is_busy() {
            return Outcome::AwaitScript;
        }
        if spec.flags & flags::ALLOW_BUSY == 0 {
            // MULTI, DISCARD and UNWATCH are allowed (as in Redis); a command
            // refused inside a transaction aborts it, and a refused EXEC
            // discards it.
            let busy = state.scripts.busy_error();
            if spec.name == "exec" && session.multi.is_some() {
                discard_multi(state, session);
                return reject(
                    state,
                    id,
                    Reply::err(format!("EXECABORT Transaction discarded because of: {busy}")),
                );
            }
            if let Some(m) = session.multi.as_mut() {
                m.aborted = true;
            }
            return reject(state, id, Reply::err(busy));
        }
    }
    if state.cluster.is_enabled()
        && let Some(e) = crate::cluster::route(state, session, spec, args)
    {
        // As Redis: a refused EXEC discards the transaction, a refused
        // command inside MULTI makes EXEC fail.
        if spec.name == "exec" && session.multi.is_some() {
            discard_multi(state, session);
        } else if let Some(m) = session.multi.as_mut() {
            m.aborted = true;
        }
        return reject(state, id, e);
    }
    // The slot routing hashed the keys to, for this command only: taken here, so that a
    // command refused below (or queued in MULTI) leaves nothing behind for the next one.
    let routed_slot = session.routed_slot.take();
    // A script command is checked with the flags its script declares.
    let cmd_flags = effective_flags(state, spec, args);
    if !session.repl.master
        && let Some(e) = refuse_by_replication(state, cmd_flags)
    {
        if let Some(m) = session.multi.as_mut() {
            m.aborted = true;
        }
        return reject(state, id, e);
    }
    // A write the append-only log cannot persist is refused, never
    // acknowledged (inside MULTI too: the transaction then aborts).
    if spec.name == "exec"
        && state.aof.is_poisoned()
        && let Some(m) = session.multi.as_mut()
        && m.queue
            .iter()
            .any(|(s, a)| queued_flags(state, s, a) & flags::WRITE != 0)
    {
        // Writes queued before the log failed: EXEC answers EXECABORT.
        m.aborted = true;
    }
    if cmd_flags & flags::WRITE != 0
        && let Some(msg) = state.aof.write_error()
    {
        if let Some(m) = session.multi.as_mut() {
            m.aborted = true;
        }
        return reject(state, id, Reply::err(msg));
    }
    // Out of memory (Redis' processCommand): a command that may grow the
    // dataset is refused; inside MULTI so is any command but EXEC and
    // DISCARD (a queue can grow without bound), and EXEC itself when it
    // holds such a command. A replica's dataset is its primary's: it never
    // evicts on its own (Redis' replica-ignore-maxmemory), or the two would
    // diverge.
    let oom_check = match &session.multi {
        None => cmd_flags & flags::DENYOOM != 0,
        Some(m) => match spec.name {
            "exec" => m
                .queue
                .iter()
                .any(|(s, a)| queued_flags(state, s, a) & flags::DENYOOM != 0),
            "discard" | "quit" | "reset" => false,
            _ => true,
        },
    };
    if oom_check && !state.repl.is_replica() && enforce_maxmemory(state) {
        const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
        if spec.name == "exec" && session.multi.is_some() {
            discard_multi(state, session);
            return reject(
                state,
                id,
                Reply::err(format!("EXECABORT Transaction discarded because of: {OOM}")),
            );
        }
        if let Some(m) = session.multi.as_mut() {
            m.aborted = true;
        }
        return reject(state, id, Reply::err(OOM));
    }
    if let Some(m) = session.multi.as_mut()
        && spec.flags & flags::TXN_CONTROL == 0
    {
        if spec.flags & flags::NO_MULTI != 0 {
            m.aborted = true;
            return Outcome::Reply(Reply::err("ERR Command not allowed inside a transaction"));
        }
        m.queue.push((spec, owned(args)));
        session.handle.multi.store(m.queue.len() as i64, Ordering::Relaxed);
        return Outcome::Reply(Reply::status("QUEUED"));
    }
    if spec.flags & flags::SCRIPT != 0 && session.client_connection {
        // Redis evicts before every command; a script's own writes cannot
        // (its partitions are locked), so make room before it starts.
        if !state.repl.is_replica() {
            enforce_maxmemory(state);
        }
        if !state.scripts.try_schedule() {
            return Outcome::AwaitScript;
        }
        return Outcome::Script {
            spec,
            id,
            args: owned(args),
            routed_slot,
        };
    }
    run_with(state, session, spec, id, args, false, frame, routed_slot)
}

/// Run a script command handed out as [`Outcome::Script`] (on a blocking
/// thread), then release the schedule however it ends.
pub fn run_script(
    state: &State,
    session: &mut Session,
    spec: &'static CommandSpec,
    id: usize,
    args: &[Bytes],
    routed_slot: Option<u16>,
) -> Outcome {
    struct Unschedule<'a>(&'a State);
    impl Drop for Unschedule<'_> {
        fn drop(&mut self) {
            self.0.scripts.unschedule();
        }
    }
    let _unschedule = Unschedule(state);
    run_with(state, session, spec, id, &view(args), false, None, routed_slot)
}

/// Redis' `addReplySubcommandSyntaxError`.
pub(crate) fn subcommand_syntax(args: &[&[u8]]) -> Reply {
    let sub = String::from_utf8_lossy(args[1]);
    let sub: String = sub.chars().take(128).collect();
    Reply::err(format!(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {} HELP.",
        String::from_utf8_lossy(args[0]).to_ascii_uppercase()
    ))
}

/// Resolve a command called from a script, with the errors Redis' scripts
/// get (`scriptVerifyCommandArity`).
pub fn resolve_for_script(args: &[&[u8]]) -> Result<&'static CommandSpec, &'static str> {
    const UNKNOWN: &str = "ERR Unknown Redis command called from script";
    let spec = lookup(args[0]).ok_or(UNKNOWN)?;
    let spec = if !spec.subcommands.is_empty() && args.len() >= 2 {
        find_sub(spec, args[1]).ok_or(UNKNOWN)?
    } else {
        spec
    };
    check_arity(spec, args.len()).map_err(|_| "ERR Wrong number of args calling Redis command from script")?;
    Ok(spec)
}

/// Run one command of a transaction or a script under the locks its
/// caller holds: the handler, its write-log entries, its statistics, the
/// slow log and MONITOR (shown as coming from `monitor_as` when given:
/// Redis shows a script's commands as the `lua` client's).
pub fn run_queued(ctx: &mut Ctx, spec: &'static CommandSpec, args: &[&[u8]], monitor_as: Option<&str>) -> Reply {
    ctx.block = None;
    let start = std::time::Instant::now();
    let r = match (spec.handler)(ctx, args) {
        Ok(r) | Err(r) => r,
    };
    ctx.collect_log(args);
    let micros = start.elapsed().as_micros() as u64;
    ctx.state
        .stats
        .commands
        .local(table().id(spec))
        .call(micros, r.is_error());
    log_slow(ctx.state, ctx.session, spec, args, micros);
    if ctx.state.pubsub.is_monitored() {
        feed_monitors_as(ctx.state, ctx.session, spec, args, monitor_as);
    }
    r
}

/// Drop the session's transaction and its WATCHes (a refused EXEC).
fn discard_multi(state: &State, session: &mut Session) {
    session.multi = None;
    session.handle.multi.store(-1, Ordering::Relaxed);
    let keys = std::mem::take(&mut session.watched);
    state.watches.unwatch(&keys, &session.watch_dirty);
    session.watch_dirty.store(false, Ordering::Release);
}

/// `-LOADING` while a full sync replaces the dataset, `-READONLY` /
/// `-NOREPLICAS` for writes (see [`crate::repl::Repl::refuse_write`]).
fn refuse_by_replication(state: &State, cmd_flags: u32) -> Option<Reply> {
    if cmd_flags & flags::LOADING == 0 && state.repl.loading.load(Ordering::Relaxed) {
        return Some(Reply::err("LOADING Redis is loading the dataset in memory"));
    }
    if cmd_flags & flags::WRITE != 0 {
        return state.repl.refuse_write(state).map(Reply::err);
    }
    None
}

/// A command's flags for the checks before it runs. A script command (EVAL,
/// FCALL and their variants) whose script declares flags (a shebang, a
/// registered function) is a write, or may use memory, only if its script
/// says so (Redis' `scriptFlagsToCmdFlags`): a `no-writes` function runs on
/// a read-only replica, a writing one is refused there as any write is.
fn effective_flags(state: &State, spec: &CommandSpec, args: &[&[u8]]) -> u32 {
    if spec.flags & flags::SCRIPT == 0 {
        return spec.flags;
    }
    let Some(declared) = state.scripts.declared_flags(&state.db, spec.name, args) else {
        return spec.flags;
    };
    use crate::script::flag;
    let mut f = spec.flags & !(flags::STALE | flags::DENYOOM | flags::WRITE | flags::MAY_REPLICATE);
    if declared & (flag::ALLOW_OOM | flag::NO_WRITES) == 0 {
        f |= flags::DENYOOM;
    }
    if declared & flag::NO_WRITES == 0 {
        f |= flags::WRITE;
    }
    if declared & flag::ALLOW_STALE != 0 {
        f |= flags::STALE;
    }
    f
}

/// [`effective_flags`] of a queued command: its arguments are viewed only
/// for a script command, so EXEC of ordinary commands allocates nothing.
fn queued_flags(state: &State, spec: &CommandSpec, args: &[Bytes]) -> u32 {
    if spec.flags & flags::SCRIPT == 0 {
        return spec.flags;
    }
    effective_flags(state, spec, &view(args))
}

/// Refuse a command before it runs: counted as a rejected call and an error reply.
fn reject(state: &State, id: usize, e: Reply) -> Outcome {
    state.stats.commands.local(id).rejected();
    count_error(state, &e);
    Outcome::Reply(e)
}

/// A blocked command woken with an error (NOGROUP, UNBLOCKED, MOVED...):
/// INFO errorstats and the command's `failed_calls`, as Redis counts them.
pub(crate) fn count_woken_error(state: &State, args: &[Bytes], reply: &Reply) {
    count_error(state, reply);
    if let Some(spec) = args.first().and_then(|name| lookup(name)) {
        state.stats.commands.local(table().id(spec)).failed();
    }
}

pub(crate) fn count_error(state: &State, reply: &Reply) {
    if let Reply::Error(msg) = reply {
        state.stats.total_error_replies.fetch_add(1, Ordering::Relaxed);
        let prefix = msg.split(' ').next().unwrap_or("ERR").to_string();
        *state.stats.errors.lock().entry(prefix).or_insert(0) += 1;
    }
}

/// Lock the command's keys and run it; publish and unblock afterwards.
pub fn run(
    state: &State,
    session: &mut Session,
    spec: &'static CommandSpec,
    id: usize,
    args: &[&[u8]],
    retry: bool,
) -> Outcome {
    run_with(state, session, spec, id, args, retry, None, None)
}

/// [`run`] for a client's request: with the request's bytes when it came as a multibulk (the
/// write log copies them if the command logs itself), and the slot cluster routing computed
/// for its keys (so they are not hashed again to lock their partition).
#[allow(clippy::too_many_arguments)]
fn run_with(
    state: &State,
    session: &mut Session,
    spec: &'static CommandSpec,
    id: usize,
    args: &[&[u8]],
    retry: bool,
    frame: Option<&[u8]>,
    routed_slot: Option<u16>,
) -> Outcome {
    // One clock read per command: a command's time starts where the
    // previous command of the same batch ended (the connection clears the
    // mark whenever it awaits), so it also covers parsing this request and
    // encoding the previous reply, tens of nanoseconds; the first command
    // of a batch reads the clock. quanta reads the TSC directly, and even
    // so, a second read per command was a tenth of a pipelined INCR's CPU
    // on our VMs (Redis reads the clock twice per command, through the vDSO).
    let start = session.clock_mark.take().unwrap_or_else(quanta::Instant::now);
    let now = session.clock_ms.unwrap_or_else(now_ms);
    let mut ks = match (spec.keys, routed_slot) {
        (KeySpec::None, _) => state.db.lock_keys(std::iter::empty::<&[u8]>(), now),
        (KeySpec::All, _) => state.db.lock_all(now),
        _ if spec.flags & flags::LOCK_ALL != 0 => state.db.lock_all(now),
        // Cluster routing hashed the keys already (all to this slot).
        (_, Some(slot)) => state
            .db
            .lock_slot_args(slot, key_positions_iter(spec, args).next().map(|i| args[i]), now),
        _ => state.db.lock_args(key_positions_iter(spec, args).map(|i| args[i]), now),
    };
    ks.no_touch = session.handle.no_touch.load(Ordering::Relaxed) && spec.name != "touch";
    ks.master_apply = session.repl.master;
    // EXEC makes this check itself, once it holds every partition. A
    // command let in by ASKING is checked even when no migration is left:
    // the import may have ended since routing, and it must then be
    // redirected, not run on a slot this node does not serve.
    if (state.cluster.migrations.any() || session.admitted_asking || session.routed_migrating)
        && spec.name != "exec"
        && let Some(reply) = crate::cluster::migrate::check_locked(state, session, &[(spec, args)], &mut ks)
    {
        drop(ks);
        count_error(state, &reply);
        let elapsed = lap(session, start);
        record(state, session, id, elapsed, &reply);
        log_slow(state, session, spec, args, elapsed.as_micros() as u64);
        return Outcome::Reply(reply);
    }
    let (result, block, expired, events, ready) = {
        let mut ctx = Ctx {
            state,
            ks,
            session: &mut *session,
            block: None,
            events: Vec::new(),
            ready: SmallVec::new(),
            dirty: 0,
            retry,
            woken_by: None,
            in_exec: false,
            in_script: false,
            propagate: None,
            log: Vec::new(),
            log_mark: (0, 0),
        };
        let result = (spec.handler)(&mut ctx, args);
        ctx.notify_created();
        ctx.flush_log_framed(args, frame, true);
        state.saves.count_changes(ctx.dirty);
        let Ctx {
            mut ks,
            block,
            events,
            ready,
            ..
        } = ctx;
        let expired = std::mem::take(&mut ks.expired);
        drop(ks);
        (result, block, expired, events, ready)
    };
    // Locks are released here: notifications and unblocking run without
    // them. Blocked clients are served once this command is accounted for
    // (Redis serves them after `call()`), so its slow log entry and its
    // MONITOR line come before theirs.
    after_command(state, expired, events, SmallVec::new());
    let reply = match result {
        Ok(r) | Err(r) => r,
    };
    let elapsed = lap(session, start);
    record(state, session, id, elapsed, &reply);
    // A command that blocked goes to the slow log when it is served (as
    // Redis' `updateStatsOnUnblock`), by whoever serves it.
    if block.is_none() {
        log_slow(state, session, spec, args, elapsed.as_micros() as u64);
    }
    // A blocked command's re-run is not shown again (Redis shows a command
    // once, when it is first called).
    if !retry && state.pubsub.is_monitored() {
        feed_monitors(state, session, spec, args);
    }
    if !ready.is_empty() {
        serve_blocked(state, ready.into_vec());
    }
    match block {
        Some(spec) => Outcome::Block {
            args: spec.args.clone().unwrap_or_else(|| owned(args)),
            spec,
        },
        None => Outcome::Reply(reply),
    }
}

/// MONITOR: show a command that ran to every monitoring client, as Redis'
/// `replicationFeedMonitors` after `call()`: admin commands (CONFIG,
/// SHUTDOWN, ...) and `skip_monitor` ones are never shown, passwords are
/// redacted. Commands refused before they ran (NOAUTH, OOM, queued in
/// MULTI) are not shown; EXEC shows the commands it runs, then itself.
pub(crate) fn feed_monitors(state: &State, session: &Session, spec: &CommandSpec, args: &[&[u8]]) {
    feed_monitors_as(state, session, spec, args, None)
}

fn feed_monitors_as(state: &State, session: &Session, spec: &CommandSpec, args: &[&[u8]], client: Option<&str>) {
    if spec.flags & (flags::ADMIN | flags::SKIP_MONITOR) != 0 {
        return;
    }
    feed_monitor_line(state, session, args, client);
}

/// Show a script command (EVAL, FCALL) to monitoring clients before the
/// commands it runs, as Redis' `evalCommand`/`fcallCommand` do (their
/// `skip_monitor` flag keeps them out of the feed after they ran).
pub(crate) fn feed_monitors_script(state: &State, session: &Session, args: &[&[u8]]) {
    if state.pubsub.is_monitored() {
        feed_monitor_line(state, session, args, None);
    }
}

fn feed_monitor_line(state: &State, session: &Session, args: &[&[u8]], client: Option<&str>) {
    let unix_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let client = match client {
        Some(c) => c.to_string(),
        None => session.handle.addr.to_string(),
    };
    let line = crate::pubsub::monitor_line(unix_us, &client, args);
    state.kill_overflowed(state.pubsub.feed_monitors(line));
}

/// Publish notifications (expired first, as they happened before the
/// command's own changes) and serve clients blocked on keys made ready.
pub fn after_command(state: &State, expired: Vec<Bytes>, events: Vec<Event>, ready: SmallVec<[Bytes; 2]>) {
    for key in &expired {
        state.watches.touch(key);
        state.notify(crate::notify::EXPIRED, "expired", key);
    }
    for e in &events {
        state.notify(e.class, e.event, &e.key);
    }
    if !ready.is_empty() {
        serve_blocked(state, ready.into_vec());
    }
}

/// Serve clients blocked on `ready` keys, oldest first.
pub fn serve_blocked(state: &State, ready: Vec<Bytes>) {
    let mut queue: std::collections::VecDeque<Bytes> = ready.into();
    let mut rounds = 0;
    while let Some(key) = queue.pop_front() {
        rounds += 1;
        if rounds > 10_000 {
            break;
        }
        for w in state.blocking.waiters(&key) {
            let mut slot = w.slot.lock();
            let Some(_) = slot.as_ref() else { continue };
            let args = view(&w.args);
            let Some(spec) = lookup(args[0]).and_then(|s| resolve(&args).ok().or(Some(s))) else {
                continue;
            };
            // A write re-run on a read-only replica would change what its
            // primary did not: the waiter blocked while this node was a
            // primary (it raced the demotion's sweep).
            if spec.flags & flags::WRITE != 0
                && state.repl.is_replica()
                && state.config.replica_read_only.load(Ordering::Relaxed)
            {
                drop(slot);
                state.blocking.force_unblock_one(&w, crate::blocking::ERR_ROLE_CHANGED);
                continue;
            }
            let Some(handle) = state.clients.get(w.client_id) else {
                continue;
            };
            let (tx, _rx) = tokio::sync::mpsc::channel(1);
            let mut session = Session::new(handle.clone(), tx, true);
            session.proto = handle.proto.load(Ordering::Relaxed);
            let start = std::time::Instant::now();
            let (reply, more) = run_for_waiter(state, &mut session, spec, &args, key.clone());
            match reply {
                Some(reply) => {
                    log_slow(state, &session, spec, &args, start.elapsed().as_micros() as u64);
                    if let Some(tx) = slot.take() {
                        let _ = tx.send(reply);
                    }
                    drop(slot);
                    state.blocking.unregister(&w);
                    // A key already queued will be looked at anyway; queueing
                    // it once per served waiter would only spend `rounds`.
                    for k in more {
                        if !queue.contains(&k) {
                            queue.push_back(k);
                        }
                    }
                }
                // Stream waiters wait for different IDs or groups (Redis checks
                // each of them), so one that cannot be served says nothing
                // about the next.
                None if spec.group == "stream" => continue,
                // The key is not (or no longer) able to serve this waiter, so
                // it cannot serve later waiters either: FIFO order is kept.
                None => break,
            }
        }
    }
}

/// Run a waiter's command; `None` if it would still block.
fn run_for_waiter(
    state: &State,
    session: &mut Session,
    spec: &'static CommandSpec,
    args: &[&[u8]],
    woken_by: Bytes,
) -> (Option<Reply>, Vec<Bytes>) {
    let now = now_ms();
    let ks = state.db.lock_args(key_positions_iter(spec, args).map(|i| args[i]), now);
    let mut ctx = Ctx {
        state,
        ks,
        session: &mut *session,
        block: None,
        events: Vec::new(),
        ready: SmallVec::new(),
        dirty: 0,
        retry: true,
        woken_by: Some(woken_by),
        in_exec: false,
        in_script: false,
        propagate: None,
        log: Vec::new(),
        log_mark: (0, 0),
    };
    let result = (spec.handler)(&mut ctx, args);
    ctx.notify_created();
    ctx.flush_log(args, true);
    state.saves.count_changes(ctx.dirty);
    let Ctx {
        ks,
        block,
        events,
        ready,
        ..
    } = ctx;
    let expired = std::mem::take(&mut { ks }.expired);
    // Same side effects as any command (expired keys also invalidate
    // WATCH); the keys made ready go back to the caller's queue instead.
    after_command(state, expired, events, SmallVec::new());
    if block.is_some() {
        return (None, Vec::new());
    }
    let reply = match result {
        Ok(r) | Err(r) => r,
    };
    (Some(reply), ready.into_vec())
}

/// Time since `start`, leaving the end as the next command's start when
/// the session chains its timings.
fn lap(session: &mut Session, start: quanta::Instant) -> Duration {
    let end = quanta::Instant::now();
    if session.chain_clock {
        session.clock_mark = Some(end);
    }
    end.saturating_duration_since(start)
}

fn record(state: &State, session: &Session, id: usize, elapsed: Duration, reply: &Reply) {
    let micros = elapsed.as_micros() as u64;
    // A command that blocks is counted once, when it is first run.
    let failed = reply.is_error();
    state.stats.commands.local(id).call(micros, failed);
    state.stats.total_commands_processed.fetch_add(1, Ordering::Relaxed);
    if failed {
        count_error(state, reply);
    }
    state.metrics.observe_command(id, elapsed);
    session.handle.last_cmd.store(id + 1, Ordering::Relaxed);
}

/// The slow log and the latency monitor's `command` events: for each
/// command run, each command EXEC runs, and a blocked command when served.
pub(crate) fn log_slow(state: &State, session: &Session, spec: &CommandSpec, args: &[&[u8]], micros: u64) {
    let threshold = state.config.slowlog_log_slower_than.load(Ordering::Relaxed);
    if threshold >= 0 && micros >= threshold as u64 && spec.flags & flags::SKIP_SLOWLOG == 0 {
        crate::cmd::server::slowlog_push(state, session, args, micros);
    }
    let latency_ms = state.config.latency_monitor_threshold.load(Ordering::Relaxed);
    if latency_ms > 0 && micros / 1000 >= latency_ms {
        let event = if spec.flags & flags::FAST != 0 {
            "fast-command"
        } else {
            "command"
        };
        state.latency.add(event, micros / 1000);
    }
}
