//! Commands of the `generic` family: key existence, deletion, TTLs, renames,
//! copies, iteration (KEYS, SCAN, RANDOMKEY) and OBJECT introspection.
//!
//! These commands work on whole entries, whatever their type, so they use the
//! entry-level [`crate::db::Keys`] API. Commands Redis runs without touching
//! the access clock (TYPE, EXISTS, TTL, OBJECT) use `Keys::peek`, so that
//! introspection never changes what LRU/LFU eviction sees. Renames move the
//! entry itself, so TTL, access clock and string encoding travel with it.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use rand::Rng;

use super::flags::*;
use super::parse::{self, is};
use super::{CmdResult, CommandSpec, Ctx, KeySpec, one_key};
use crate::db::entry::{Entry, FLAG_EMBSTR, FLAG_RAW, FLAG_UNSHARED};
use crate::db::evict::{self, Policy};
use crate::glob::glob_match;
use crate::notify::GENERIC;
use crate::resp::Reply;

const ERR_NO_SUCH_KEY: &str = "ERR no such key";
const ERR_SAME_OBJECT: &str = "ERR source and destination objects are the same";
const ERR_DB_RANGE: &str = "ERR DB index is out of range";
const ERR_COPY_DB: &str = "ERR Copying to another database is not allowed in cluster mode";
/// Redis' `getIntFromObjectOrReply` for a valid integer outside 32 bits.
const ERR_INT_RANGE: &str = "ERR value is out of range, value must between -2147483648 and 2147483647";
const ERR_MOVE: &str = "ERR MOVE is not allowed in cluster mode";
const ERR_INVALID_CURSOR: &str = "ERR invalid cursor";
const ERR_EXPIRE_NX: &str = "ERR NX and XX, GT or LT options at the same time are not compatible";
const ERR_EXPIRE_GT_LT: &str = "ERR GT and LT options at the same time are not compatible";
const ERR_NOT_LFU: &str = "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note \
     that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
const ERR_IS_LFU: &str = "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when \
     switching between policies at runtime LRU and LFU data will take some time to adjust.";

/// Redis' `databases` default: DB indexes below this are valid, only 0 exists here.
const DATABASES: i64 = 16;
/// Shared integer objects (OBJ_SHARED_INTEGERS) report this refcount.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;
const SHARED_INTEGERS: i64 = 10_000;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "generic",
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

const ALL_FROM_1: KeySpec = super::all_keys_from(1);
const TWO_KEYS: KeySpec = KeySpec::Range {
    first: 1,
    last: 2,
    step: 1,
};
const OBJECT_KEY: KeySpec = KeySpec::Range {
    first: 2,
    last: 2,
    step: 1,
};

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "del",
        -2,
        WRITE,
        ALL_FROM_1,
        del,
        "1.0.0",
        "O(N) where N is the number of keys that will be removed.",
        "Deletes one or more keys."
    ),
    spec!(
        "unlink",
        -2,
        WRITE | FAST,
        ALL_FROM_1,
        unlink,
        "4.0.0",
        "O(1) for each key removed regardless of its size.",
        "Asynchronously deletes one or more keys."
    ),
    spec!(
        "exists",
        -2,
        READONLY | FAST,
        ALL_FROM_1,
        exists,
        "1.0.0",
        "O(N) where N is the number of keys to check.",
        "Determines whether one or more keys exist."
    ),
    spec!(
        "type",
        2,
        READONLY | FAST,
        one_key(),
        type_,
        "1.0.0",
        "O(1)",
        "Determines the type of value stored at a key."
    ),
    spec!(
        "touch",
        -2,
        READONLY | FAST,
        ALL_FROM_1,
        touch,
        "3.2.1",
        "O(N) where N is the number of keys that will be touched.",
        "Returns the number of existing keys out of those specified after updating the time they were last accessed."
    ),
    spec!(
        "expire",
        -3,
        WRITE | FAST,
        one_key(),
        expire,
        "1.0.0",
        "O(1)",
        "Sets the expiration time of a key in seconds."
    ),
    spec!(
        "pexpire",
        -3,
        WRITE | FAST,
        one_key(),
        pexpire,
        "2.6.0",
        "O(1)",
        "Sets the expiration time of a key in milliseconds."
    ),
    spec!(
        "expireat",
        -3,
        WRITE | FAST,
        one_key(),
        expireat,
        "1.2.0",
        "O(1)",
        "Sets the expiration time of a key to a Unix timestamp."
    ),
    spec!(
        "pexpireat",
        -3,
        WRITE | FAST,
        one_key(),
        pexpireat,
        "2.6.0",
        "O(1)",
        "Sets the expiration time of a key to a Unix milliseconds timestamp."
    ),
    spec!(
        "ttl",
        2,
        READONLY | FAST,
        one_key(),
        ttl,
        "1.0.0",
        "O(1)",
        "Returns the expiration time in seconds of a key."
    ),
    spec!(
        "pttl",
        2,
        READONLY | FAST,
        one_key(),
        pttl,
        "2.6.0",
        "O(1)",
        "Returns the expiration time in milliseconds of a key."
    ),
    spec!(
        "expiretime",
        2,
        READONLY | FAST,
        one_key(),
        expiretime,
        "7.0.0",
        "O(1)",
        "Returns the expiration time of a key as a Unix timestamp."
    ),
    spec!(
        "pexpiretime",
        2,
        READONLY | FAST,
        one_key(),
        pexpiretime,
        "7.0.0",
        "O(1)",
        "Returns the expiration time of a key as a Unix milliseconds timestamp."
    ),
    spec!(
        "persist",
        2,
        WRITE | FAST,
        one_key(),
        persist,
        "2.2.0",
        "O(1)",
        "Removes the expiration time of a key."
    ),
    spec!(
        "rename",
        3,
        WRITE,
        TWO_KEYS,
        rename,
        "1.0.0",
        "O(1)",
        "Renames a key and overwrites the destination."
    ),
    spec!(
        "renamenx",
        3,
        WRITE | FAST,
        TWO_KEYS,
        renamenx,
        "1.0.0",
        "O(1)",
        "Renames a key only when the target key name doesn't exist."
    ),
    spec!(
        "copy",
        -3,
        WRITE | DENYOOM,
        TWO_KEYS,
        copy,
        "6.2.0",
        "O(N) worst case for collections, where N is the number of nested items. O(1) for string values.",
        "Copies the value of a key to a new key."
    ),
    spec!(
        "keys",
        2,
        READONLY,
        KeySpec::All,
        keys,
        "1.0.0",
        "O(N) with N being the number of keys in the database, under the assumption that the key names in the \
         database and the given pattern have limited length.",
        "Returns all key names that match a pattern."
    ),
    spec!(
        "scan",
        -2,
        READONLY,
        KeySpec::All,
        scan,
        "2.8.0",
        "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to \
         return back to 0. N is the number of elements inside the collection.",
        "Iterates over the key names in the database."
    ),
    spec!(
        "randomkey",
        1,
        READONLY,
        KeySpec::All,
        randomkey,
        "1.0.0",
        "O(1)",
        "Returns a random key name from the database."
    ),
    spec!(
        "move",
        3,
        WRITE | FAST,
        one_key(),
        move_,
        "1.0.0",
        "O(1)",
        "Moves a key to another database."
    ),
    CommandSpec {
        name: "object",
        arity: -2,
        flags: 0,
        keys: KeySpec::None,
        group: "generic",
        summary: "A container for object introspection commands.",
        since: "2.2.3",
        complexity: "Depends on subcommand.",
        handler: object_help,
        subcommands: &[
            spec!(
                "encoding",
                3,
                READONLY,
                OBJECT_KEY,
                object_encoding,
                "2.2.3",
                "O(1)",
                "Returns the internal encoding of a Redis object."
            ),
            spec!(
                "freq",
                3,
                READONLY,
                OBJECT_KEY,
                object_freq,
                "4.0.0",
                "O(1)",
                "Returns the logarithmic access frequency counter of a Redis object."
            ),
            spec!(
                "idletime",
                3,
                READONLY,
                OBJECT_KEY,
                object_idletime,
                "2.2.3",
                "O(1)",
                "Returns the time since the last access to a Redis object."
            ),
            spec!(
                "refcount",
                3,
                READONLY,
                OBJECT_KEY,
                object_refcount,
                "2.2.3",
                "O(1)",
                "Returns the reference count of a value of a key."
            ),
            spec!(
                "help",
                2,
                LOADING | STALE,
                KeySpec::None,
                object_help,
                "6.2.0",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
        ],
    },
];

fn del(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let lazy = ctx.state.config.lazyfree_lazy_user_del.load(Ordering::Relaxed);
    remove_keys(ctx, args, lazy)
}

/// UNLINK: as DEL, but a big value is freed by the background thread
/// ([`crate::db::lazyfree`]), not under the partition lock.
fn unlink(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    remove_keys(ctx, args, true)
}

fn remove_keys(ctx: &mut Ctx, args: &[&[u8]], lazy: bool) -> CmdResult {
    let mut n = 0;
    for key in &args[1..] {
        if let Some(v) = ctx.ks.remove(key) {
            if lazy {
                ctx.state.db.lazyfree.free_value(v);
            }
            ctx.changed(key, GENERIC, "del");
            n += 1;
        }
    }
    Ok(Reply::Int(n))
}

fn exists(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let mut n = 0;
    for key in &args[1..] {
        let found = ctx.ks.peek(key).is_some();
        ctx.looked_up(key, found);
        n += found as i64;
    }
    Ok(Reply::Int(n))
}

fn type_(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let t = ctx.ks.peek(args[1]).map_or("none", Entry::type_name);
    ctx.looked_up(args[1], t != "none");
    Ok(Reply::status(t))
}

fn touch(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let mut n = 0;
    for key in &args[1..] {
        let found = ctx.ks.get(key).is_some();
        ctx.looked_up(key, found);
        n += found as i64;
    }
    Ok(Reply::Int(n))
}

/// NX | XX | GT | LT of the EXPIRE family.
#[derive(Default)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn expire_flags(args: &[&[u8]]) -> Result<ExpireFlags, Reply> {
    let mut f = ExpireFlags::default();
    for opt in args.iter().skip(3) {
        if is(opt, "nx") {
            f.nx = true;
        } else if is(opt, "xx") {
            f.xx = true;
        } else if is(opt, "gt") {
            f.gt = true;
        } else if is(opt, "lt") {
            f.lt = true;
        } else {
            return Err(Reply::err(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(Reply::err(ERR_EXPIRE_NX));
    }
    if f.gt && f.lt {
        return Err(Reply::err(ERR_EXPIRE_GT_LT));
    }
    Ok(f)
}

/// Redis' `expireGenericCommand`: `basetime` is the command's clock for
/// relative forms and 0 for absolute ones. A time already past deletes the key.
fn expire_generic(ctx: &mut Ctx, args: &[&[u8]], relative: bool, seconds: bool) -> CmdResult {
    let key = &args[1];
    let name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
    let invalid = || Reply::err(format!("ERR invalid expire time in '{name}' command"));
    let flags = expire_flags(args)?;
    let mut when = parse::int(args[2])?;
    if seconds {
        when = when.checked_mul(1000).ok_or_else(invalid)?;
    }
    let now = ctx.ks.now as i64;
    if relative {
        when = when.checked_add(now).ok_or_else(invalid)?;
    }
    let Some(current) = ctx.ks.get(key).map(Entry::expire_at) else {
        return Ok(Reply::Int(0));
    };
    let current = current.map(|c| c as i64);
    let refused = (flags.nx && current.is_some())
        || (flags.xx && current.is_none())
        || (flags.gt && current.is_none_or(|c| when <= c))
        || (flags.lt && current.is_some_and(|c| when >= c));
    if refused {
        return Ok(Reply::Int(0));
    }
    // Logged with the absolute time the command computed (Redis 7.0 logs
    // every form as PEXPIREAT), so a replay later, or on a replica with
    // another clock, sets the same deadline; and without NX/XX/GT/LT, whose
    // condition was already decided here.
    if when <= now {
        ctx.ks.remove(key);
        ctx.changed(key, GENERIC, "del");
        ctx.propagate_args(&[b"DEL", key]);
    } else {
        ctx.ks.set_expire(key, Some(when as u64));
        ctx.changed(key, GENERIC, "expire");
        ctx.propagate_args(&[b"PEXPIREAT", key, itoa::Buffer::new().format(when).as_bytes()]);
    }
    Ok(Reply::Int(1))
}

fn expire(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, true, true)
}

fn pexpire(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, true, false)
}

fn expireat(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, false, true)
}

fn pexpireat(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    expire_generic(ctx, args, false, false)
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 without TTL;
/// seconds are rounded to the nearest, as Redis does.
fn ttl_generic(ctx: &mut Ctx, key: &[u8], ms: bool, absolute: bool) -> CmdResult {
    let now = ctx.ks.now;
    let found = ctx.ks.peek(key).map(Entry::expire_at);
    ctx.looked_up(key, found.is_some());
    let Some(expire) = found else {
        return Ok(Reply::Int(-2));
    };
    let Some(expire) = expire else {
        return Ok(Reply::Int(-1));
    };
    let t = if absolute { expire } else { expire.saturating_sub(now) };
    let t = t.min(i64::MAX as u64) as i64;
    Ok(Reply::Int(if ms { t } else { t.saturating_add(500) / 1000 }))
}

fn ttl(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args[1], false, false)
}

fn pttl(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args[1], true, false)
}

fn expiretime(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args[1], false, true)
}

fn pexpiretime(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ttl_generic(ctx, args[1], true, true)
}

fn persist(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    if ctx.ks.get(key).and_then(Entry::expire_at).is_none() {
        return Ok(Reply::Int(0));
    }
    ctx.ks.set_expire(key, None);
    ctx.changed(key, GENERIC, "persist");
    Ok(Reply::Int(1))
}

/// Flags that describe a string's encoding and must follow its bytes.
const ENCODING_FLAGS: u8 = FLAG_RAW | FLAG_EMBSTR | FLAG_UNSHARED;

fn rename_generic(ctx: &mut Ctx, args: &[&[u8]], nx: bool) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    if !ctx.ks.exists(src) {
        return Err(Reply::err(ERR_NO_SUCH_KEY));
    }
    let done = if nx { Reply::Int(1) } else { Reply::Ok };
    if src == dst {
        return Ok(if nx { Reply::Int(0) } else { Reply::Ok });
    }
    if nx && ctx.ks.exists(dst) {
        return Ok(Reply::Int(0));
    }
    let Some(old) = ctx.ks.remove_entry(src) else {
        return Err(Reply::err(ERR_NO_SUCH_KEY));
    };
    let (expire, lru, flags) = (old.expire_at(), old.lru, old.flags & ENCODING_FLAGS);
    let mut moved = Entry::new(dst, old.into_value(), expire, lru);
    moved.flags |= flags;
    ctx.ks.insert_entry(dst, moved);
    ctx.changed(src, GENERIC, "rename_from");
    ctx.changed(dst, GENERIC, "rename_to");
    Ok(done)
}

fn rename(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    rename_generic(ctx, args, false)
}

fn renamenx(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    rename_generic(ctx, args, true)
}

fn copy(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (src, dst) = (&args[1], &args[2]);
    let mut replace = false;
    let mut db = 0i64;
    let mut j = 3;
    while j < args.len() {
        if is(args[j], "replace") {
            replace = true;
        } else if is(args[j], "db") && j + 1 < args.len() {
            db = parse::int(args[j + 1])?;
            if i32::try_from(db).is_err() {
                return Err(Reply::err(ERR_INT_RANGE));
            }
            if !(0..DATABASES).contains(&db) {
                return Err(Reply::err(ERR_DB_RANGE));
            }
            j += 1;
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }
    // There is only database 0, as in Redis' cluster mode.
    if db != 0 {
        return Err(Reply::err(ERR_COPY_DB));
    }
    if src == dst {
        return Err(Reply::err(ERR_SAME_OBJECT));
    }
    let found = ctx
        .ks
        .get(src)
        .map(|e| (e.clone_value(), e.expire_at(), e.flags & ENCODING_FLAGS));
    ctx.looked_up(src, found.is_some());
    let Some((value, expire, flags)) = found else {
        return Ok(Reply::Int(0));
    };
    if !replace && ctx.ks.exists(dst) {
        return Ok(Reply::Int(0));
    }
    let lru = evict::new_lru(ctx.ks.lru_clock(), ctx.ks.db());
    let mut entry = Entry::new(dst, value, expire, lru);
    // Redis duplicates the object: a shared small integer becomes its own.
    entry.flags |= flags | FLAG_UNSHARED;
    ctx.ks.insert_entry(dst, entry);
    ctx.changed(dst, GENERIC, "copy_to");
    Ok(Reply::Int(1))
}

/// There is only database 0, as in Redis' cluster mode, whose answer this is.
fn move_(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Err(Reply::err(ERR_MOVE))
}

fn keys(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let pattern = &args[1];
    let all = pattern == b"*";
    let mut out = Vec::new();
    ctx.ks.for_each_key(|e| {
        if all || glob_match(pattern, e.key(), false) {
            out.push(Reply::bulk(e.key()));
        }
    });
    Ok(Reply::Array(out))
}

/// Redis' `parseScanCursorOrReply` (`strtoul`): optional sign (a minus wraps
/// around), decimal digits, nothing else; an empty string is cursor 0.
fn parse_cursor(arg: &[u8]) -> Result<u64, Reply> {
    let invalid = || Reply::err(ERR_INVALID_CURSOR);
    let (neg, digits) = match arg.first() {
        Some(b'-') => (true, &arg[1..]),
        Some(b'+') => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() {
        return if arg.is_empty() { Ok(0) } else { Err(invalid()) };
    }
    let mut v = 0u64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(invalid());
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as u64))
            .ok_or_else(invalid)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

fn scan(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let cursor = parse_cursor(args[1])?;
    let mut count = 10i64;
    let mut pattern: Option<&[u8]> = None;
    let mut type_name: Option<&[u8]> = None;
    let mut i = 2;
    while i < args.len() {
        let more = i + 1 < args.len();
        if is(args[i], "count") && more {
            count = parse::int(args[i + 1])?;
            if count < 1 {
                return Err(parse::syntax());
            }
        } else if is(args[i], "match") && more {
            pattern = Some(args[i + 1]).filter(|p| *p != b"*");
        } else if is(args[i], "type") && more {
            type_name = Some(args[i + 1]);
        } else {
            return Err(parse::syntax());
        }
        i += 2;
    }
    // Bounds the work of one call; a larger COUNT only means "as many as you like".
    let count = count.min(1 << 20) as usize;
    let (next, keys) = ctx.ks.scan(cursor, count, |e| {
        pattern.is_none_or(|p| glob_match(p, e.key(), false))
            && type_name.is_none_or(|t| t.eq_ignore_ascii_case(e.type_name().as_bytes()))
    });
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ]))
}

/// Pick a key uniformly: weighted by the key counts of partitions, then slots.
fn pick_random(ctx: &mut Ctx) -> Option<Bytes> {
    let total: usize = ctx.ks.partitions_mut().map(|p| p.keys).sum();
    if total == 0 {
        return None;
    }
    let mut r = rand::rng().random_range(0..total);
    for part in ctx.ks.partitions_mut() {
        if r >= part.keys {
            r -= part.keys;
            continue;
        }
        for st in part.slot_tables().iter() {
            let n = st.table.len();
            if r >= n {
                r -= n;
                continue;
            }
            return st.table.iter().nth(r).map(|e| Bytes::copy_from_slice(e.key()));
        }
        return None;
    }
    None
}

fn randomkey(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    // An expired pick is deleted by the lookup and another key is drawn, as
    // Redis does; every round removes a key, so this ends.
    loop {
        let Some(key) = pick_random(ctx) else {
            return Ok(Reply::Null);
        };
        if ctx.ks.peek(&key).is_some() {
            return Ok(Reply::Bulk(key));
        }
    }
}

fn object_encoding(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.count_lookup(args[2], false);
    Ok(match ctx.ks.peek(args[2]) {
        None => Reply::Null,
        Some(e) => Reply::bulk(match e.obj() {
            None => super::string::string_encoding(e),
            Some(v) => v.encoding(),
        }),
    })
}

fn lru_or_lfu_policy(ctx: &Ctx) -> bool {
    matches!(
        ctx.state.db.eviction.policy(),
        Policy::AllKeysLru | Policy::VolatileLru | Policy::AllKeysLfu | Policy::VolatileLfu
    )
}

fn object_refcount(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    // Redis shares the objects of small integers unless an LRU/LFU policy
    // with a memory limit needs a per-key access clock.
    let shared_ok =
        ctx.state.config.maxmemory.load(std::sync::atomic::Ordering::Relaxed) == 0 || !lru_or_lfu_policy(ctx);
    ctx.count_lookup(args[2], false);
    Ok(match ctx.ks.peek(args[2]) {
        None => Reply::Null,
        Some(e) => {
            let small_int = e.obj().is_none()
                && e.flags & FLAG_UNSHARED == 0
                && super::string::string_encoding(e) == "int"
                && e.str_value()
                    .and_then(parse::parse_i64)
                    .is_some_and(|v| (0..SHARED_INTEGERS).contains(&v));
            Reply::Int(if small_int && shared_ok { SHARED_REFCOUNT } else { 1 })
        }
    })
}

fn object_freq(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.count_lookup(args[2], false);
    let now = ctx.ks.now;
    let Some(lru) = ctx.ks.peek(args[2]).map(|e| e.lru) else {
        return Ok(Reply::Null);
    };
    if !ctx.state.db.eviction.policy().is_lfu() {
        return Err(Reply::err(ERR_NOT_LFU));
    }
    Ok(Reply::Int(evict::lfu_counter(lru, now) as i64))
}

fn object_idletime(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.count_lookup(args[2], false);
    let clock = ctx.ks.lru_clock();
    let Some(idle) = ctx.ks.peek(args[2]).map(|e| evict::idle_seconds(e, clock)) else {
        return Ok(Reply::Null);
    };
    if ctx.state.db.eviction.policy().is_lfu() {
        return Err(Reply::err(ERR_IS_LFU));
    }
    Ok(Reply::Int(idle as i64))
}

fn object_help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Array(
        [
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
            "HELP",
            "    Prints this help.",
        ]
        .iter()
        .map(|s| Reply::status(*s))
        .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Outcome, execute};
    use crate::session::Session;
    use crate::state::State;

    /// A server state with a list at `list`, and a session to run commands
    /// (this branch has no list commands to create one over the wire).
    fn state_with_list() -> (std::sync::Arc<State>, Session) {
        let db = crate::db::Db::new();
        let args = crate::config::ServeArgs::default();
        let config = crate::config::Config::from_args(&args, &db.eviction).expect("default config");
        let state = State::new(db, config);
        {
            let mut ks = state.db.lock_all(crate::db::now_ms());
            let l = ks
                .get_obj_mut_or_create::<crate::db::list::List>(b"list")
                .expect("new list");
            l.push_back(b"x");
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let handle = std::sync::Arc::new(crate::client::ClientHandle::new(1, addr, addr));
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        (state, Session::new(handle, tx, true))
    }

    fn run(state: &State, session: &mut Session, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match execute(state, session, &args) {
            Outcome::Reply(r) => r,
            Outcome::Block { .. } => panic!("key commands never block"),
            Outcome::Script { .. } | Outcome::AwaitScript => unreachable!("internal sessions run scripts in place"),
        }
    }

    #[test]
    fn key_commands_work_on_any_type() {
        let (state, mut s) = state_with_list();
        let encoding = run(&state, &mut s, &["OBJECT", "ENCODING", "list"]);
        assert!(matches!(encoding, Reply::Bulk(_)), "{encoding:?}");
        assert_eq!(run(&state, &mut s, &["OBJECT", "REFCOUNT", "list"]), Reply::Int(1));
        assert_eq!(run(&state, &mut s, &["TYPE", "list"]), Reply::status("list"));
        assert_eq!(run(&state, &mut s, &["PEXPIRE", "list", "100000"]), Reply::Int(1));
        assert_eq!(run(&state, &mut s, &["RENAME", "list", "l2"]), Reply::Ok);
        assert_eq!(run(&state, &mut s, &["TYPE", "l2"]), Reply::status("list"));
        assert!(matches!(run(&state, &mut s, &["PTTL", "l2"]), Reply::Int(t) if t > 90_000));
        assert_eq!(run(&state, &mut s, &["COPY", "l2", "l3"]), Reply::Int(1));
        assert_eq!(run(&state, &mut s, &["TYPE", "l3"]), Reply::status("list"));
        assert!(matches!(run(&state, &mut s, &["PTTL", "l3"]), Reply::Int(t) if t > 90_000));
        let Reply::Array(scan) = run(&state, &mut s, &["SCAN", "0", "TYPE", "list", "COUNT", "1000"]) else {
            panic!("SCAN answers an array")
        };
        let Reply::Array(mut keys) = scan[1].clone() else {
            panic!("SCAN's second element is an array")
        };
        keys.sort_by_key(|k| format!("{k:?}"));
        assert_eq!(keys, vec![Reply::bulk("l2"), Reply::bulk("l3")]);
        assert_eq!(run(&state, &mut s, &["PERSIST", "l3"]), Reply::Int(1));
        assert_eq!(run(&state, &mut s, &["DEL", "l2", "l3"]), Reply::Int(2));
        assert_eq!(run(&state, &mut s, &["EXISTS", "l2", "l3"]), Reply::Int(0));
    }

    #[test]
    fn cursor_is_parsed_like_strtoul() {
        assert_eq!(parse_cursor(b"0"), Ok(0));
        assert_eq!(parse_cursor(b"+17"), Ok(17));
        assert_eq!(parse_cursor(b"-1"), Ok(u64::MAX));
        assert_eq!(parse_cursor(b""), Ok(0));
        assert!(parse_cursor(b"1a").is_err());
        assert!(parse_cursor(b" 1").is_err());
        assert!(parse_cursor(b"-").is_err());
        assert!(parse_cursor(b"18446744073709551616").is_err());
    }
}
