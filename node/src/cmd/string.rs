//! Commands of the `string` family: plain values, counters, ranges and bits.
//!
//! Strings live inline in their [`Entry`]: reads borrow the bytes, writes
//! either replace the key (`Keys::set_str`, which also decides the TTL) or
//! edit the value in place through `Keys::entry_mut` (keeping TTL and access
//! clock, as Redis' `dbOverwrite` does). Redis has no separate "string object"
//! here to carry an encoding, so the entry's flags remember what `OBJECT
//! ENCODING` must answer: [`FLAG_RAW`] after in-place edits (Redis unshares
//! the value), [`FLAG_EMBSTR`] for INCRBYFLOAT results (never int-encoded),
//! and otherwise Redis' `tryObjectEncoding` rules apply to the bytes.
//!
//! Every result that grows a string is checked against `proto-max-bulk-len`
//! with Redis' error, so a client cannot make the server allocate more than a
//! configured maximum per value.

pub mod longdouble;

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::flags::*;
use super::parse::{self, ERR_NOT_FLOAT, ERR_NOT_INT, ERR_OVERFLOW, is, parse_i64};
use super::{CmdResult, CommandSpec, Ctx, KeySpec, one_key};
use crate::db::entry::{Entry, FLAG_EMBSTR, FLAG_RAW, FLAG_UNSHARED};
use crate::db::{Expiry, WRONGTYPE};
use crate::notify::{GENERIC, STRING};
use crate::resp::Reply;

pub use longdouble::{AddError, incr_by_float};

const ERR_MAX_SIZE: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
const ERR_BIT_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const ERR_BIT_VALUE: &str = "ERR bit is not an integer or out of range";
const ERR_OFFSET: &str = "ERR offset is out of range";
const ERR_NAN_INF: &str = "ERR increment would produce NaN or Infinity";
const ERR_DECR_OVERFLOW: &str = "ERR decrement would overflow";
const ERR_BITPOS_BIT: &str = "ERR The bit argument must be 1 or 0.";
const ERR_BITOP_NOT: &str = "ERR BITOP NOT must be called with a single source key.";

/// Strings up to this length are `embstr` in Redis (OBJ_ENCODING_EMBSTR_SIZE_LIMIT).
const EMBSTR_LIMIT: usize = 44;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "string",
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

const ALL_FROM_1: KeySpec = super::all_keys_from(1);
const PAIRS_FROM_1: KeySpec = KeySpec::Range {
    first: 1,
    last: -1,
    step: 2,
};

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "get",
        2,
        READONLY | FAST,
        one_key(),
        get,
        "1.0.0",
        "O(1)",
        "Returns the string value of a key."
    ),
    spec!(
        "set",
        -3,
        WRITE | DENYOOM,
        one_key(),
        set,
        "1.0.0",
        "O(1)",
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."
    ),
    spec!(
        "setnx",
        3,
        WRITE | DENYOOM | FAST,
        one_key(),
        setnx,
        "1.0.0",
        "O(1)",
        "Set the string value of a key only when the key doesn't exist."
    ),
    spec!(
        "setex",
        4,
        WRITE | DENYOOM,
        one_key(),
        setex,
        "2.0.0",
        "O(1)",
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."
    ),
    spec!(
        "psetex",
        4,
        WRITE | DENYOOM,
        one_key(),
        psetex,
        "2.6.0",
        "O(1)",
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."
    ),
    spec!(
        "getset",
        3,
        WRITE | DENYOOM | FAST,
        one_key(),
        getset,
        "1.0.0",
        "O(1)",
        "Returns the previous string value of a key after setting it to a new value."
    ),
    spec!(
        "getdel",
        2,
        WRITE | FAST,
        one_key(),
        getdel,
        "6.2.0",
        "O(1)",
        "Returns the string value of a key after deleting the key."
    ),
    spec!(
        "getex",
        -2,
        WRITE | FAST,
        one_key(),
        getex,
        "6.2.0",
        "O(1)",
        "Returns the string value of a key after setting its expiration time."
    ),
    spec!(
        "mget",
        -2,
        READONLY | FAST,
        ALL_FROM_1,
        mget,
        "1.0.0",
        "O(N) where N is the number of keys to retrieve.",
        "Atomically returns the string values of one or more keys."
    ),
    spec!(
        "mset",
        -3,
        WRITE | DENYOOM,
        PAIRS_FROM_1,
        mset,
        "1.0.1",
        "O(N) where N is the number of keys to set.",
        "Atomically creates or modifies the string values of one or more keys."
    ),
    spec!(
        "msetnx",
        -3,
        WRITE | DENYOOM,
        PAIRS_FROM_1,
        msetnx,
        "1.0.1",
        "O(N) where N is the number of keys to set.",
        "Atomically modifies the string values of one or more keys only when all keys don't exist."
    ),
    spec!(
        "incr",
        2,
        WRITE | DENYOOM | FAST,
        one_key(),
        incr,
        "1.0.0",
        "O(1)",
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "decr",
        2,
        WRITE | DENYOOM | FAST,
        one_key(),
        decr,
        "1.0.0",
        "O(1)",
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "incrby",
        3,
        WRITE | DENYOOM | FAST,
        one_key(),
        incrby,
        "1.0.0",
        "O(1)",
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "decrby",
        3,
        WRITE | DENYOOM | FAST,
        one_key(),
        decrby,
        "1.0.0",
        "O(1)",
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "incrbyfloat",
        3,
        WRITE | DENYOOM | FAST,
        one_key(),
        incrbyfloat,
        "2.6.0",
        "O(1)",
        "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."
    ),
    spec!(
        "append",
        3,
        WRITE | DENYOOM | FAST,
        one_key(),
        append,
        "2.0.0",
        "O(1). The amortized time complexity is O(1) assuming the appended value is small and the already \
         present value is of any size, since the dynamic string library used by Redis will double the free \
         space available on every reallocation.",
        "Appends a string to the value of a key. Creates the key if it doesn't exist."
    ),
    spec!(
        "strlen",
        2,
        READONLY | FAST,
        one_key(),
        strlen,
        "2.2.0",
        "O(1)",
        "Returns the length of a string value."
    ),
    spec!(
        "getrange",
        4,
        READONLY,
        one_key(),
        getrange,
        "2.4.0",
        "O(N) where N is the length of the returned string.",
        "Returns a substring of the string stored at a key."
    ),
    spec!(
        "substr",
        4,
        READONLY,
        one_key(),
        getrange,
        "1.0.0",
        "O(N) where N is the length of the returned string.",
        "Returns a substring from a string value."
    ),
    spec!(
        "setrange",
        4,
        WRITE | DENYOOM,
        one_key(),
        setrange,
        "2.2.0",
        "O(1), not counting the time taken to copy the new string in place.",
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."
    ),
    spec!(
        "setbit",
        4,
        WRITE | DENYOOM,
        one_key(),
        setbit,
        "2.2.0",
        "O(1)",
        "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist."
    ),
    spec!(
        "getbit",
        3,
        READONLY | FAST,
        one_key(),
        getbit,
        "2.2.0",
        "O(1)",
        "Returns a bit value by offset."
    ),
    spec!(
        "bitcount",
        -2,
        READONLY,
        one_key(),
        bitcount,
        "2.6.0",
        "O(N)",
        "Counts the number of set bits (population counting) in a string."
    ),
    spec!(
        "bitpos",
        -3,
        READONLY,
        one_key(),
        bitpos,
        "2.8.7",
        "O(N)",
        "Finds the first set (1) or clear (0) bit in a string."
    ),
    spec!(
        "bitop",
        -4,
        WRITE | DENYOOM,
        super::all_keys_from(2),
        bitop,
        "2.6.0",
        "O(N)",
        "Performs bitwise operations on multiple strings, and stores the result."
    ),
    spec!(
        "bitfield",
        -2,
        WRITE | DENYOOM,
        one_key(),
        bitfield,
        "3.2.0",
        "O(1) for each subcommand specified",
        "Performs arbitrary bitfield integer operations on strings."
    ),
    spec!(
        "bitfield_ro",
        -2,
        READONLY | FAST,
        one_key(),
        bitfield_ro,
        "6.0.0",
        "O(1) for each subcommand specified",
        "Performs arbitrary read-only bitfield integer operations on strings."
    ),
    spec!(
        "lcs",
        -3,
        READONLY,
        KeySpec::Range {
            first: 1,
            last: 2,
            step: 1
        },
        lcs,
        "7.0.0",
        "O(N*M) where N and M are the lengths of s1 and s2, respectively",
        "Finds the longest common substring."
    ),
];

/// `OBJECT ENCODING` of a string entry, following Redis' `tryObjectEncoding`
/// (`int` for what `string2l` accepts in at most 20 bytes, `embstr` up to 44
/// bytes, `raw` beyond) unless the entry was edited in place.
pub fn string_encoding(e: &Entry) -> &'static str {
    let v = e.str_value().unwrap_or_default();
    if e.flags & FLAG_RAW != 0 {
        "raw"
    } else if e.flags & FLAG_EMBSTR == 0 && v.len() <= 20 && parse_i64(v).is_some() {
        "int"
    } else if v.len() <= EMBSTR_LIMIT {
        "embstr"
    } else {
        "raw"
    }
}

/// `proto-max-bulk-len`: the largest string a command may build.
fn max_len(ctx: &Ctx) -> u64 {
    ctx.state.config.proto_max_bulk_len.load(Ordering::Relaxed).max(0) as u64
}

/// Redis' `checkStringLength`: may a string of `size` grow by `append` bytes?
fn check_len(ctx: &Ctx, size: u64, append: u64) -> Result<(), Reply> {
    match size.checked_add(append) {
        Some(total) if total <= max_len(ctx) => Ok(()),
        _ => Err(Reply::err(ERR_MAX_SIZE)),
    }
}

/// Look a string up for a read command and apply `f` to its bytes in place
/// (no copy of a possibly huge value): counts the hit or miss, WRONGTYPE for
/// other types.
fn with_str<R>(ctx: &mut Ctx, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, Reply> {
    let r = match ctx.ks.get(key) {
        None => Ok(None),
        Some(e) => e.str_value().map(|v| Some(f(v))).ok_or_else(|| Reply::err(WRONGTYPE)),
    };
    ctx.looked_up(key, !matches!(r, Ok(None)));
    r
}

/// Read a whole string for a read command (see [`with_str`]).
fn read_str(ctx: &mut Ctx, key: &[u8]) -> Result<Option<Bytes>, Reply> {
    with_str(ctx, key, Bytes::copy_from_slice)
}

/// Read a string for a write command (Redis' `lookupKeyWrite`: no statistics).
fn write_lookup(ctx: &mut Ctx, key: &[u8]) -> Result<Option<Bytes>, Reply> {
    match ctx.ks.get(key) {
        None => Ok(None),
        Some(e) => e
            .str_value()
            .map(|v| Some(Bytes::copy_from_slice(v)))
            .ok_or_else(|| Reply::err(WRONGTYPE)),
    }
}

/// The length of a string about to be edited in place, or WRONGTYPE.
fn write_len(ctx: &mut Ctx, key: &[u8]) -> Result<Option<usize>, Reply> {
    match ctx.ks.get(key) {
        None => Ok(None),
        Some(e) => e
            .str_value()
            .map(|v| Some(v.len()))
            .ok_or_else(|| Reply::err(WRONGTYPE)),
    }
}

/// The bytes of an existing string, grown (zero-filled) to at least
/// `min_len`, for an in-place edit. Like Redis' `dbUnshareStringValue`, this
/// makes the value `raw` even if the caller ends up changing nothing.
fn edit_str<'c>(ctx: &'c mut Ctx<'_>, key: &[u8], min_len: usize) -> Option<&'c mut [u8]> {
    let e = ctx.ks.entry_mut(key)?;
    if e.str_value()?.len() < min_len {
        e.resize_str(min_len);
    }
    e.flags = (e.flags & !(FLAG_EMBSTR | FLAG_UNSHARED)) | FLAG_RAW;
    e.str_value_mut()
}

/// Replace the value of an existing string key in place (TTL and access
/// clock kept) and set its encoding flags.
fn overwrite(ctx: &mut Ctx, key: &[u8], val: &[u8], flags: u8) {
    if let Some(e) = ctx.ks.entry_mut(key) {
        e.set_str_value(val);
        e.flags = (e.flags & !(FLAG_RAW | FLAG_EMBSTR | FLAG_UNSHARED)) | flags;
    }
}

/// Create a new string key (no TTL) with encoding flags.
fn create(ctx: &mut Ctx, key: &[u8], val: &[u8], flags: u8) {
    ctx.ks.set_str(key, val, Expiry::Clear);
    if flags != 0
        && let Some(e) = ctx.ks.entry_mut(key)
    {
        e.flags |= flags;
    }
}

fn get(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(Reply::opt_bulk(read_str(ctx, args[1])?))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// EX: relative seconds.
    Ex,
    /// PX: relative milliseconds.
    Px,
    /// EXAT: absolute unix seconds.
    ExAt,
    /// PXAT: absolute unix milliseconds.
    PxAt,
}

impl Unit {
    fn absolute(self) -> bool {
        matches!(self, Unit::ExAt | Unit::PxAt)
    }
}

/// Options of SET and GETEX (Redis' `parseExtendedStringArgumentsOrReply`).
#[derive(Default)]
struct ExtOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(Unit, &'a [u8])>,
}

/// Parse SET (`is_set`) or GETEX options from `args[from..]`, with Redis'
/// rules for which options exclude which (a conflict is a syntax error).
fn parse_ext<'a>(args: &'a [&'a [u8]], from: usize, is_set: bool) -> Result<ExtOpts<'a>, Reply> {
    let mut o = ExtOpts::default();
    let mut j = from;
    while j < args.len() {
        let opt = &args[j];
        let next = args.get(j + 1);
        let unit = |o: &ExtOpts| o.expire.map(|(u, _)| u);
        let timed = |o: &ExtOpts, allow: Unit| o.keepttl || o.persist || unit(o).is_some_and(|u| u != allow);
        if is(opt, "nx") && !o.xx && is_set {
            o.nx = true;
        } else if is(opt, "xx") && !o.nx && is_set {
            o.xx = true;
        } else if is(opt, "get") && is_set {
            o.get = true;
        } else if is(opt, "keepttl") && !o.persist && o.expire.is_none() && is_set {
            o.keepttl = true;
        } else if is(opt, "persist") && !is_set && o.expire.is_none() && !o.keepttl {
            o.persist = true;
        } else if let Some(u) = [
            ("ex", Unit::Ex),
            ("px", Unit::Px),
            ("exat", Unit::ExAt),
            ("pxat", Unit::PxAt),
        ]
        .iter()
        .find(|(w, _)| is(opt, w))
        .map(|(_, u)| *u)
            && !timed(&o, u)
            && let Some(next) = next
        {
            o.expire = Some((u, next));
            j += 1;
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }
    Ok(o)
}

/// Redis' `getExpireMillisecondsOrReply`: a positive time, converted to an
/// absolute unix time in milliseconds without overflowing.
fn expire_at_ms(now: u64, unit: Unit, arg: &[u8], cmd: &str) -> Result<u64, Reply> {
    let v = parse::int(arg)?;
    let invalid = || Reply::err(format!("ERR invalid expire time in '{cmd}' command"));
    let seconds = matches!(unit, Unit::Ex | Unit::ExAt);
    if v <= 0 || (seconds && v > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if seconds { v * 1000 } else { v };
    let ms = if unit.absolute() {
        ms
    } else {
        ms.checked_add(now as i64).ok_or_else(invalid)?
    };
    if ms <= 0 {
        return Err(invalid());
    }
    Ok(ms as u64)
}

/// The core of SET, SETNX, SETEX, PSETEX: returns whether the value was set
/// and, with GET, the old value.
fn set_generic(ctx: &mut Ctx, key: &[u8], val: &[u8], o: &ExtOpts, cmd: &str) -> Result<(bool, Option<Bytes>), Reply> {
    let expire = match o.expire {
        Some((unit, arg)) => Some(expire_at_ms(ctx.ks.now, unit, arg, cmd)?),
        None => None,
    };
    let old = if o.get { read_str(ctx, key)? } else { None };
    let found = if o.get { old.is_some() } else { ctx.ks.exists(key) };
    if (o.nx && found) || (o.xx && !found) {
        return Ok((false, old));
    }
    let expiry = match expire {
        Some(ms) => Expiry::At(ms),
        None if o.keepttl => Expiry::Keep,
        None => Expiry::Clear,
    };
    ctx.ks.set_str(key, val, expiry);
    ctx.changed(key, STRING, "set");
    if let Some(ms) = expire {
        ctx.notify(GENERIC, "expire", key);
        // As Redis 7.0: the absolute deadline this command computed, so a
        // replay at another time sets the same one. NX/XX/GET are dropped:
        // their outcome is decided and the replay starts from the same state.
        ctx.propagate_args(&[b"SET", key, val, b"PXAT", itoa::Buffer::new().format(ms).as_bytes()]);
    }
    Ok((true, old))
}

fn set(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let o = parse_ext(args, 3, true)?;
    let (done, old) = set_generic(ctx, args[1], args[2], &o, "set")?;
    Ok(if o.get {
        Reply::opt_bulk(old)
    } else if done {
        Reply::Ok
    } else {
        Reply::Null
    })
}

fn setnx(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let o = ExtOpts {
        nx: true,
        ..Default::default()
    };
    let (done, _) = set_generic(ctx, args[1], args[2], &o, "setnx")?;
    Ok(Reply::Int(done as i64))
}

fn setex_generic(ctx: &mut Ctx, args: &[&[u8]], unit: Unit, cmd: &str) -> CmdResult {
    let o = ExtOpts {
        expire: Some((unit, args[2])),
        ..Default::default()
    };
    set_generic(ctx, args[1], args[3], &o, cmd)?;
    Ok(Reply::Ok)
}

fn setex(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setex_generic(ctx, args, Unit::Ex, "setex")
}

fn psetex(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setex_generic(ctx, args, Unit::Px, "psetex")
}

fn getset(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let old = read_str(ctx, args[1])?;
    ctx.ks.set_str(args[1], args[2], Expiry::Clear);
    ctx.changed(args[1], STRING, "set");
    Ok(Reply::opt_bulk(old))
}

fn getdel(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(v) = read_str(ctx, args[1])? else {
        return Ok(Reply::Null);
    };
    ctx.ks.remove(args[1]);
    ctx.changed(args[1], GENERIC, "del");
    Ok(Reply::Bulk(v))
}

fn getex(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let o = parse_ext(args, 2, false)?;
    let Some(v) = read_str(ctx, key)? else {
        return Ok(Reply::Null);
    };
    let now = ctx.ks.now;
    let expire = match o.expire {
        Some((unit, arg)) => Some((unit, expire_at_ms(now, unit, arg, "getex")?)),
        None => None,
    };
    // Logged as the key-level command with the absolute time, as Redis 7.0
    // does: GETEX itself would recompute a relative TTL at replay time.
    match expire {
        Some((unit, ms)) if unit.absolute() && ms <= now => {
            ctx.ks.remove(key);
            ctx.changed(key, GENERIC, "del");
            ctx.propagate_args(&[b"DEL", key]);
        }
        Some((_, ms)) => {
            ctx.ks.set_expire(key, Some(ms));
            ctx.changed(key, GENERIC, "expire");
            ctx.propagate_args(&[b"PEXPIREAT", key, itoa::Buffer::new().format(ms).as_bytes()]);
        }
        None if o.persist && ctx.ks.peek(key).and_then(Entry::expire_at).is_some() => {
            ctx.ks.set_expire(key, None);
            ctx.changed(key, GENERIC, "persist");
            ctx.propagate_args(&[b"PERSIST", key]);
        }
        None => {}
    }
    Ok(Reply::Bulk(v))
}

fn mget(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let mut out = Vec::with_capacity(args.len() - 1);
    for key in &args[1..] {
        let v = ctx.ks.get(key).map(|e| e.str_value().map(Bytes::copy_from_slice));
        ctx.looked_up(key, v.is_some());
        out.push(Reply::opt_bulk(v.flatten()));
    }
    Ok(Reply::Array(out))
}

fn mset_arity(args: &[&[u8]]) -> Result<(), Reply> {
    if args.len().is_multiple_of(2) {
        return Err(Reply::err(format!(
            "ERR wrong number of arguments for '{}' command",
            String::from_utf8_lossy(args[0]).to_ascii_lowercase()
        )));
    }
    Ok(())
}

fn mset(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    mset_arity(args)?;
    for kv in args[1..].chunks(2) {
        ctx.ks.set_str(kv[0], kv[1], Expiry::Clear);
        ctx.changed(kv[0], STRING, "set");
    }
    Ok(Reply::Ok)
}

fn msetnx(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    mset_arity(args)?;
    if args[1..].chunks(2).any(|kv| ctx.ks.exists(kv[0])) {
        return Ok(Reply::Int(0));
    }
    for kv in args[1..].chunks(2) {
        ctx.ks.set_str(kv[0], kv[1], Expiry::Clear);
        ctx.changed(kv[0], STRING, "set");
    }
    Ok(Reply::Int(1))
}

/// INCR, DECR, INCRBY, DECRBY: the value must be an integer `string2ll`
/// accepts; the result is stored int-encoded, keeping the TTL.
fn incr_by(ctx: &mut Ctx, key: &[u8], delta: i64) -> CmdResult {
    let mut buf = itoa::Buffer::new();
    // One lookup for the read and the write: the counter is edited in place.
    let edited = ctx.ks.edit_touched(key, |e| {
        let cur =
            parse_i64(e.str_value().ok_or_else(|| Reply::err(WRONGTYPE))?).ok_or_else(|| Reply::err(ERR_NOT_INT))?;
        let new = cur.checked_add(delta).ok_or_else(|| Reply::err(ERR_OVERFLOW))?;
        e.set_str_value(buf.format(new).as_bytes());
        e.flags &= !(FLAG_RAW | FLAG_EMBSTR | FLAG_UNSHARED);
        Ok::<i64, Reply>(new)
    });
    let new = match edited {
        Some(new) => new?,
        None => {
            create(ctx, key, buf.format(delta).as_bytes(), 0);
            delta
        }
    };
    ctx.changed(key, STRING, "incrby");
    Ok(Reply::Int(new))
}

fn incr(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    incr_by(ctx, args[1], 1)
}

fn decr(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    incr_by(ctx, args[1], -1)
}

fn incrby(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let delta = parse::int(args[2])?;
    incr_by(ctx, args[1], delta)
}

fn decrby(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let delta = parse::int(args[2])?;
    if delta == i64::MIN {
        return Err(Reply::err(ERR_DECR_OVERFLOW));
    }
    incr_by(ctx, args[1], -delta)
}

fn incrbyfloat(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let old = write_lookup(ctx, key)?;
    let cur = old.as_deref().unwrap_or(b"0");
    let new = incr_by_float(cur, args[2]).map_err(|e| match e {
        AddError::NotFloat => Reply::err(ERR_NOT_FLOAT),
        AddError::NanOrInf => Reply::err(ERR_NAN_INF),
    })?;
    if old.is_some() {
        overwrite(ctx, key, new.as_bytes(), FLAG_EMBSTR);
    } else {
        create(ctx, key, new.as_bytes(), FLAG_EMBSTR);
    }
    ctx.changed(key, STRING, "incrbyfloat");
    // The result, not the increment (Redis 7.0): float formatting and
    // long double arithmetic must not be redone by whoever replays the log.
    ctx.propagate_args(&[b"SET", key, new.as_bytes(), b"KEEPTTL"]);
    Ok(Reply::Bulk(Bytes::from(new)))
}

fn append(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (key, tail) = (&args[1], &args[2]);
    let len = match write_len(ctx, key)? {
        None => {
            create(ctx, key, tail, 0);
            tail.len()
        }
        Some(len) => {
            check_len(ctx, len as u64, tail.len() as u64)?;
            let total = len + tail.len();
            if let Some(v) = edit_str(ctx, key, total) {
                v[len..total].copy_from_slice(tail);
            }
            total
        }
    };
    ctx.changed(key, STRING, "append");
    Ok(Reply::Int(len as i64))
}

fn strlen(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let len = with_str(ctx, args[1], <[u8]>::len)?.unwrap_or(0);
    Ok(Reply::Int(len as i64))
}

fn getrange(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let start = parse::int(args[2])?;
    let end = parse::int(args[3])?;
    let range = |v: &[u8]| {
        if start < 0 && end < 0 && start > end {
            return Bytes::new();
        }
        let len = v.len() as i64;
        let start = if start < 0 { (len + start).max(0) } else { start };
        let end = if end < 0 { (len + end).max(0) } else { end }.min(len - 1);
        if start > end || len == 0 {
            return Bytes::new();
        }
        Bytes::copy_from_slice(&v[start as usize..=end as usize])
    };
    Ok(Reply::Bulk(with_str(ctx, args[1], range)?.unwrap_or_default()))
}

fn setrange(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (key, val) = (&args[1], &args[3]);
    let offset = parse::int(args[2])?;
    if offset < 0 {
        return Err(Reply::err(ERR_OFFSET));
    }
    let offset = offset as u64;
    let Some(len) = write_len(ctx, key)? else {
        if val.is_empty() {
            return Ok(Reply::Int(0));
        }
        check_len(ctx, offset, val.len() as u64)?;
        let mut v = vec![0u8; offset as usize];
        v.extend_from_slice(val);
        create(ctx, key, &v, FLAG_RAW);
        ctx.changed(key, STRING, "setrange");
        return Ok(Reply::Int(v.len() as i64));
    };
    if val.is_empty() {
        return Ok(Reply::Int(len as i64));
    }
    check_len(ctx, offset, val.len() as u64)?;
    let end = offset as usize + val.len();
    if let Some(v) = edit_str(ctx, key, end) {
        v[offset as usize..end].copy_from_slice(val);
    }
    ctx.changed(key, STRING, "setrange");
    Ok(Reply::Int(len.max(end) as i64))
}

/// Redis' `getBitOffsetFromArgument`: a bit offset inside the largest
/// allowed string.
fn bit_offset(ctx: &Ctx, arg: &[u8]) -> Result<u64, Reply> {
    match parse_i64(arg) {
        Some(v) if v >= 0 && ((v as u64) >> 3) < max_len(ctx) => Ok(v as u64),
        _ => Err(Reply::err(ERR_BIT_OFFSET)),
    }
}

fn setbit(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let offset = bit_offset(ctx, args[2])?;
    let on = match args[3] {
        b"0" => false,
        b"1" => true,
        _ => return Err(Reply::err(ERR_BIT_VALUE)),
    };
    let byte = (offset >> 3) as usize;
    let mask = 1u8 << (7 - (offset & 7));
    let (old, dirty) = match write_len(ctx, key)? {
        None => {
            let mut v = vec![0u8; byte + 1];
            if on {
                v[byte] |= mask;
            }
            create(ctx, key, &v, FLAG_RAW);
            (false, true)
        }
        Some(len) => {
            let grows = len < byte + 1;
            let Some(v) = edit_str(ctx, key, byte + 1) else {
                return Ok(Reply::Int(0));
            };
            let old = v[byte] & mask != 0;
            if on {
                v[byte] |= mask;
            } else {
                v[byte] &= !mask;
            }
            (old, grows || old != on)
        }
    };
    if dirty {
        ctx.changed(key, STRING, "setbit");
    }
    Ok(Reply::Int(old as i64))
}

fn getbit(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let offset = bit_offset(ctx, args[2])?;
    let bit = with_str(ctx, args[1], |v| {
        v.get((offset >> 3) as usize)
            .is_some_and(|b| b & (1 << (7 - (offset & 7))) != 0)
    })?;
    Ok(Reply::Int(bit.unwrap_or(false) as i64))
}

/// Parse a `BYTE|BIT` unit argument.
fn bit_unit(arg: &[u8]) -> Result<bool, Reply> {
    if is(arg, "bit") {
        Ok(true)
    } else if is(arg, "byte") {
        Ok(false)
    } else {
        Err(parse::syntax())
    }
}

/// Clamp a `start..=end` range (negative = from the end) of `totlen` units as
/// Redis' BITCOUNT/BITPOS do; in bit units, also compute masks of the bits of
/// the first and last byte that lie outside the range, and convert to bytes.
fn bit_range(mut start: i64, mut end: i64, totlen: i64, isbit: bool) -> (i64, i64, u8, u8) {
    if start < 0 {
        start += totlen;
    }
    if end < 0 {
        end += totlen;
    }
    start = start.max(0);
    end = end.max(0).min(totlen - 1);
    let (mut first_mask, mut last_mask) = (0u8, 0u8);
    if isbit && start <= end {
        first_mask = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_mask = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    (start, end, first_mask, last_mask)
}

fn popcount(b: &[u8]) -> i64 {
    b.iter().map(|x| x.count_ones() as i64).sum()
}

fn bitcount(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    // Redis 7.0 looks the key up before parsing the range: a missing key
    // answers 0 even to a malformed range.
    with_str(ctx, args[1], |v| bitcount_of(v, args))?.unwrap_or(Ok(Reply::Int(0)))
}

fn bitcount_of(v: &[u8], args: &[&[u8]]) -> CmdResult {
    let strlen = v.len() as i64;
    let (start, end, first_mask, last_mask) = match args.len() {
        4 | 5 => {
            let start = parse::int(args[2])?;
            let end = parse::int(args[3])?;
            if start < 0 && end < 0 && start > end {
                return Ok(Reply::Int(0));
            }
            let isbit = args.len() == 5 && bit_unit(args[4])?;
            let totlen = if isbit { strlen << 3 } else { strlen };
            bit_range(start, end, totlen, isbit)
        }
        2 => (0, strlen - 1, 0, 0),
        _ => return Err(parse::syntax()),
    };
    if start > end {
        return Ok(Reply::Int(0));
    }
    let (s, e) = (start as usize, end as usize);
    let mut count = popcount(&v[s..=e]);
    if first_mask != 0 {
        count -= (v[s] & first_mask).count_ones() as i64;
    }
    if last_mask != 0 {
        count -= (v[e] & last_mask).count_ones() as i64;
    }
    Ok(Reply::Int(count))
}

/// Redis' `redisBitpos`: position of the first bit equal to `bit`; when not
/// found, -1 for a 1 and the first position past the bytes for a 0.
fn first_bit(bytes: &[u8], bit: bool) -> i64 {
    for (i, &b) in bytes.iter().enumerate() {
        let b = if bit { b } else { !b };
        if b != 0 {
            return i as i64 * 8 + b.leading_zeros() as i64;
        }
    }
    if bit { -1 } else { bytes.len() as i64 * 8 }
}

fn bitpos(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let bit = parse::int(args[2])?;
    if bit != 0 && bit != 1 {
        return Err(Reply::err(ERR_BITPOS_BIT));
    }
    let bit = bit == 1;
    // A missing key is an infinite run of zeros.
    with_str(ctx, args[1], |p| bitpos_of(p, bit, args))?.unwrap_or(Ok(Reply::Int(if bit { -1 } else { 0 })))
}

fn bitpos_of(p: &[u8], bit: bool, args: &[&[u8]]) -> CmdResult {
    let strlen = p.len() as i64;
    let mut end_given = false;
    let (mut start, end, first_mask, last_mask) = match args.len() {
        4..=6 => {
            let start = parse::int(args[3])?;
            let isbit = args.len() == 6 && bit_unit(args[5])?;
            let end = if args.len() >= 5 {
                end_given = true;
                parse::int(args[4])?
            } else if isbit {
                (strlen << 3) + 7
            } else {
                strlen - 1
            };
            let totlen = if isbit { strlen << 3 } else { strlen };
            bit_range(start, end, totlen, isbit)
        }
        3 => (0, strlen - 1, 0, 0),
        _ => return Err(parse::syntax()),
    };
    if start > end {
        return Ok(Reply::Int(-1));
    }
    // A transcription of Redis 7.0's bitposCommand, masks and quirks included.
    let mut bytes = end - start + 1;
    let byte_of = |i: i64| p[i as usize];
    let masked = |b: u8, mask: u8| if bit { b & !mask } else { b | mask };
    let pos = 'found: {
        if first_mask != 0 {
            let mut tmp = masked(byte_of(start), first_mask);
            if last_mask != 0 && bytes == 1 {
                tmp = masked(tmp, last_mask);
            }
            let pos = first_bit(&[tmp], bit);
            if bytes == 1 || (pos != -1 && pos != 8) {
                break 'found pos;
            }
            start += 1;
            bytes -= 1;
        }
        let curbytes = bytes - i64::from(last_mask != 0);
        if curbytes > 0 {
            let pos = first_bit(&p[start as usize..(start + curbytes) as usize], bit);
            if bytes == curbytes || (pos != -1 && pos != curbytes << 3) {
                break 'found pos;
            }
            start += curbytes;
            bytes -= curbytes;
        }
        first_bit(&[masked(byte_of(end), last_mask)], bit)
    };
    if end_given && !bit && pos == bytes << 3 {
        return Ok(Reply::Int(-1));
    }
    Ok(Reply::Int(if pos != -1 { pos + (start << 3) } else { pos }))
}

fn bitop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    #[derive(PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let op = match args[1].to_ascii_lowercase().as_slice() {
        b"and" => Op::And,
        b"or" => Op::Or,
        b"xor" => Op::Xor,
        b"not" => Op::Not,
        _ => return Err(parse::syntax()),
    };
    if op == Op::Not && args.len() != 4 {
        return Err(Reply::err(ERR_BITOP_NOT));
    }
    let dest = &args[2];
    let mut srcs: Vec<Bytes> = Vec::with_capacity(args.len() - 3);
    for key in &args[3..] {
        srcs.push(read_str(ctx, key)?.unwrap_or_default());
    }
    let maxlen = srcs.iter().map(Bytes::len).max().unwrap_or(0);
    if maxlen == 0 {
        if ctx.ks.remove(dest).is_some() {
            ctx.changed(dest, GENERIC, "del");
        }
        return Ok(Reply::Int(0));
    }
    let byte = |s: &Bytes, i: usize| s.get(i).copied().unwrap_or(0);
    let res: Vec<u8> = (0..maxlen)
        .map(|i| match op {
            Op::Not => !byte(&srcs[0], i),
            Op::And => srcs.iter().fold(0xff, |acc, s| acc & byte(s, i)),
            Op::Or => srcs.iter().fold(0, |acc, s| acc | byte(s, i)),
            Op::Xor => srcs.iter().fold(0, |acc, s| acc ^ byte(s, i)),
        })
        .collect();
    create(ctx, dest, &res, FLAG_RAW);
    ctx.changed(dest, STRING, "set");
    Ok(Reply::Int(maxlen as i64))
}

const ERR_BITFIELD_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
const ERR_BITFIELD_OVERFLOW: &str = "ERR Invalid OVERFLOW type specified";
const ERR_BITFIELD_RO: &str = "ERR BITFIELD_RO only supports the GET subcommand";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

/// One BITFIELD operation: an integer of `bits` bits at bit `offset`.
#[derive(Clone, Copy)]
struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

/// `i<1..64>` or `u<1..63>` (Redis' `getBitfieldTypeFromArgument`).
fn bitfield_type(arg: &[u8]) -> Result<(bool, u32), Reply> {
    let err = || Reply::err(ERR_BITFIELD_TYPE);
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(err()),
    };
    match parse_i64(&arg[1..]) {
        Some(b) if b >= 1 && ((signed && b <= 64) || (!signed && b <= 63)) => Ok((signed, b as u32)),
        _ => Err(err()),
    }
}

/// A bitfield offset: a bit number, or `#n` meaning `n * bits`.
fn bitfield_offset(ctx: &Ctx, arg: &[u8], bits: u32) -> Result<u64, Reply> {
    let err = || Reply::err(ERR_BIT_OFFSET);
    let (hash, num) = match arg.first() {
        Some(b'#') => (true, &arg[1..]),
        _ => (false, arg),
    };
    let mut v = parse_i64(num).ok_or_else(err)?;
    if hash {
        v = v.checked_mul(bits as i64).ok_or_else(err)?;
    }
    if v < 0 || ((v as u64) >> 3) >= max_len(ctx) {
        return Err(err());
    }
    Ok(v as u64)
}

/// Read `bits` bits at `offset`, most significant first; bytes past the end
/// of the string read as zero.
fn get_field(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for i in 0..bits as u64 {
        let o = offset + i;
        let bit = p.get((o >> 3) as usize).map_or(0, |b| (b >> (7 - (o & 7))) & 1);
        v = (v << 1) | bit as u64;
    }
    v
}

fn set_field(p: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..bits as u64 {
        let o = offset + i;
        let bit = (value >> (bits as u64 - 1 - i)) & 1;
        if let Some(b) = p.get_mut((o >> 3) as usize) {
            let mask = 1u8 << (7 - (o & 7));
            if bit == 1 {
                *b |= mask;
            } else {
                *b &= !mask;
            }
        }
    }
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    if bits < 64 && v & (1 << (bits - 1)) != 0 {
        (v | (u64::MAX << bits)) as i64
    } else {
        v as i64
    }
}

/// Redis' `checkUnsignedBitfieldOverflow`: `Some(result)` when `value + incr`
/// leaves the range (the wrapped or saturated value, `None` inside it).
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max = (1u64 << bits) - 1;
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = value.wrapping_neg() as i64;
    let wrap = || value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > maxincr) {
        Some(if ow == Overflow::Wrap { wrap() } else { max })
    } else if incr < 0 && incr < minincr {
        Some(if ow == Overflow::Wrap { wrap() } else { 0 })
    } else {
        None
    }
}

/// Redis' `checkSignedBitfieldOverflow`, its 64-bit special cases included.
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max: i64 = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let c = (value as u64).wrapping_add(incr as u64);
        sign_extend(if bits < 64 { c & ((1u64 << bits) - 1) } else { c }, bits)
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(if ow == Overflow::Wrap { wrap() } else { max })
    } else if value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr) {
        Some(if ow == Overflow::Wrap { wrap() } else { min })
    } else {
        None
    }
}

fn parse_bitfield(ctx: &Ctx, args: &[&[u8]]) -> Result<Vec<Field>, Reply> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let rem = args.len() - j - 1;
        let sub = &args[j];
        let op_arity = if is(sub, "get") && rem >= 2 {
            2
        } else if (is(sub, "set") || is(sub, "incrby")) && rem >= 3 {
            3
        } else if is(sub, "overflow") && rem >= 1 {
            let t = &args[j + 1];
            overflow = if is(t, "wrap") {
                Overflow::Wrap
            } else if is(t, "sat") {
                Overflow::Sat
            } else if is(t, "fail") {
                Overflow::Fail
            } else {
                return Err(Reply::err(ERR_BITFIELD_OVERFLOW));
            };
            j += 2;
            continue;
        } else {
            return Err(parse::syntax());
        };
        let (signed, bits) = bitfield_type(args[j + 1])?;
        let offset = bitfield_offset(ctx, args[j + 2], bits)?;
        let op = if op_arity == 2 {
            FieldOp::Get
        } else {
            let v = parse::int(args[j + 3])?;
            if is(sub, "set") {
                FieldOp::Set(v)
            } else {
                FieldOp::IncrBy(v)
            }
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        j += 1 + op_arity;
    }
    Ok(fields)
}

fn bitfield(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    bitfield_generic(ctx, args, false)
}

fn bitfield_ro(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    bitfield_generic(ctx, args, true)
}

/// Apply one SET/INCRBY to the bytes: the reply and whether the bits changed.
fn apply_field(p: &mut [u8], f: &Field) -> (Reply, bool) {
    let raw_old = get_field(p, f.offset, f.bits);
    let (new, ret, failed) = if f.signed {
        let old = sign_extend(raw_old, f.bits);
        let (new, ret, ov) = match f.op {
            FieldOp::IncrBy(incr) => {
                let ov = signed_overflow(old, incr, f.bits, f.overflow);
                let new = ov.unwrap_or(old.wrapping_add(incr));
                (new, new, ov.is_some())
            }
            FieldOp::Set(v) => {
                let ov = signed_overflow(v, 0, f.bits, f.overflow);
                (ov.unwrap_or(v), old, ov.is_some())
            }
            FieldOp::Get => (old, old, false),
        };
        (new as u64, ret, ov && f.overflow == Overflow::Fail)
    } else {
        let (new, ret, ov) = match f.op {
            FieldOp::IncrBy(incr) => {
                let ov = unsigned_overflow(raw_old, incr, f.bits, f.overflow);
                let new = ov.unwrap_or(raw_old.wrapping_add(incr as u64));
                (new, new, ov.is_some())
            }
            FieldOp::Set(v) => {
                let ov = unsigned_overflow(v as u64, 0, f.bits, f.overflow);
                (ov.unwrap_or(v as u64), raw_old, ov.is_some())
            }
            FieldOp::Get => (raw_old, raw_old, false),
        };
        (new, ret as i64, ov && f.overflow == Overflow::Fail)
    };
    if failed {
        return (Reply::Null, false);
    }
    let mask = if f.bits == 64 { u64::MAX } else { (1u64 << f.bits) - 1 };
    set_field(p, f.offset, f.bits, new & mask);
    (Reply::Int(ret), raw_old != new & mask)
}

fn bitfield_generic(ctx: &mut Ctx, args: &[&[u8]], readonly_cmd: bool) -> CmdResult {
    let key = &args[1];
    let fields = parse_bitfield(ctx, args)?;
    let read = |p: &[u8], f: &Field| {
        let v = get_field(p, f.offset, f.bits);
        Reply::Int(if f.signed { sign_extend(v, f.bits) } else { v as i64 })
    };
    let highest = fields
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| f.offset + f.bits as u64 - 1)
        .max();
    let Some(highest) = highest else {
        let replies = with_str(ctx, key, |p| fields.iter().map(|f| read(p, f)).collect::<Vec<_>>())?;
        return Ok(Reply::Array(
            replies.unwrap_or_else(|| fields.iter().map(|f| read(&[], f)).collect()),
        ));
    };
    if readonly_cmd {
        return Err(Reply::err(ERR_BITFIELD_RO));
    }
    // Like SETBIT: create or grow the string to the farthest bit written.
    let need = (highest >> 3) as usize + 1;
    let dirty = match write_len(ctx, key)? {
        None => {
            create(ctx, key, &vec![0u8; need], FLAG_RAW);
            true
        }
        Some(len) => len < need,
    };
    let Some(p) = edit_str(ctx, key, need) else {
        return Ok(Reply::Array(Vec::new()));
    };
    let mut changes = false;
    let replies = fields
        .iter()
        .map(|f| {
            if f.op == FieldOp::Get {
                return read(p, f);
            }
            let (reply, changed) = apply_field(p, f);
            changes |= changed || (dirty && !matches!(reply, Reply::Null));
            reply
        })
        .collect();
    if changes {
        ctx.changed(key, STRING, "setbit");
    } else if dirty {
        // Every write failed (OVERFLOW FAIL) but the string was created or
        // grown: not a modification Redis signals, yet the dataset changed,
        // so it must still be logged.
        ctx.dirty();
    }
    Ok(Reply::Array(replies))
}

const ERR_LCS_TYPE: &str = "ERR The specified keys must contain string values";
const ERR_LCS_IDX_LEN: &str = "ERR If you want both the length and indexes, please just use IDX.";
const ERR_LCS_MEMORY: &str = "ERR Insufficient memory, failed allocating transient memory for LCS";
/// Largest dynamic-programming table LCS may build (cells of 4 bytes):
/// bounds the transient memory one client can make the server allocate.
const LCS_MAX_CELLS: u64 = 64 * 1024 * 1024;

fn lcs(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let lookup = |ctx: &mut Ctx, key: &[u8]| {
        let v = ctx.ks.get(key).map(|e| {
            e.str_value()
                .map(Bytes::copy_from_slice)
                .ok_or_else(|| Reply::err(ERR_LCS_TYPE))
        });
        ctx.looked_up(key, v.is_some());
        v.unwrap_or(Ok(Bytes::new()))
    };
    let a = lookup(ctx, args[1]);
    let b = lookup(ctx, args[2]);
    let (a, b) = (a?, b?);
    let (mut idx, mut len, mut withmatchlen, mut minmatchlen) = (false, false, false, 0i64);
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        if is(args[j], "idx") {
            idx = true;
        } else if is(args[j], "len") {
            len = true;
        } else if is(args[j], "withmatchlen") {
            withmatchlen = true;
        } else if is(args[j], "minmatchlen") && more {
            minmatchlen = parse::int(args[j + 1])?.max(0);
            j += 1;
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }
    if idx && len {
        return Err(Reply::err(ERR_LCS_IDX_LEN));
    }
    let (alen, blen) = (a.len(), b.len());
    if (alen as u64 + 1) * (blen as u64 + 1) > LCS_MAX_CELLS {
        return Err(Reply::err(ERR_LCS_MEMORY));
    }
    let w = blen + 1;
    let mut dp = vec![0u32; (alen + 1) * w];
    for i in 1..=alen {
        for jj in 1..=blen {
            dp[i * w + jj] = if a[i - 1] == b[jj - 1] {
                dp[(i - 1) * w + jj - 1] + 1
            } else {
                dp[(i - 1) * w + jj].max(dp[i * w + jj - 1])
            };
        }
    }
    let total = dp[alen * w + blen];
    if len {
        return Ok(Reply::Int(total as i64));
    }
    // Walk back from the end, as Redis does, collecting the string and the
    // matching ranges (from the last to the first).
    let mut result = vec![0u8; total as usize];
    let mut k = total as usize;
    let mut matches = Vec::new();
    let (mut i, mut jj) = (alen, blen);
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (alen, 0usize, 0usize, 0usize);
    while i > 0 && jj > 0 {
        let mut emit = false;
        if a[i - 1] == b[jj - 1] {
            result[k - 1] = a[i - 1];
            if a_start == alen {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, jj - 1, jj - 1);
            } else if a_start == i && b_start == jj {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            k -= 1;
            i -= 1;
            jj -= 1;
        } else {
            if dp[(i - 1) * w + jj] > dp[i * w + jj - 1] {
                i -= 1;
            } else {
                jj -= 1;
            }
            if a_start != alen {
                emit = true;
            }
        }
        if emit {
            let match_len = (a_end + 1).wrapping_sub(a_start) as i64;
            if minmatchlen == 0 || match_len >= minmatchlen {
                let mut m = vec![
                    Reply::Array(vec![Reply::Int(a_start as i64), Reply::Int(a_end as i64)]),
                    Reply::Array(vec![Reply::Int(b_start as i64), Reply::Int(b_end as i64)]),
                ];
                if withmatchlen {
                    m.push(Reply::Int(match_len));
                }
                matches.push(Reply::Array(m));
            }
            a_start = alen;
        }
    }
    if idx {
        return Ok(Reply::Map(vec![
            (Reply::bulk_static("matches"), Reply::Array(matches)),
            (Reply::bulk_static("len"), Reply::Int(total as i64)),
        ]));
    }
    Ok(Reply::Bulk(Bytes::from(result)))
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
            Outcome::Block { .. } => panic!("string commands never block"),
            Outcome::Script { .. } | Outcome::AwaitScript => unreachable!("internal sessions run scripts in place"),
        }
    }

    #[test]
    fn string_commands_refuse_other_types() {
        let (state, mut s) = state_with_list();
        let wrongtype = Reply::err(WRONGTYPE);
        for cmd in [
            &["GET", "list"][..],
            &["SET", "list", "v", "GET"],
            &["GETSET", "list", "v"],
            &["GETDEL", "list"],
            &["GETEX", "list", "PERSIST"],
            &["INCR", "list"],
            &["DECRBY", "list", "2"],
            &["INCRBYFLOAT", "list", "1"],
            &["APPEND", "list", "x"],
            &["STRLEN", "list"],
            &["GETRANGE", "list", "0", "1"],
            &["SETRANGE", "list", "0", "x"],
            &["SETRANGE", "list", "0", ""],
            &["SETBIT", "list", "0", "1"],
            &["GETBIT", "list", "0"],
            &["BITCOUNT", "list"],
            &["BITPOS", "list", "1"],
            &["BITOP", "AND", "dest", "list"],
            &["BITFIELD", "list", "GET", "u8", "0"],
            &["BITFIELD", "list", "SET", "u8", "0", "1"],
            &["BITFIELD_RO", "list", "GET", "u8", "0"],
        ] {
            assert_eq!(run(&state, &mut s, cmd), wrongtype, "{cmd:?}");
        }
        assert_eq!(
            run(&state, &mut s, &["LCS", "list", "x"]),
            Reply::err("ERR The specified keys must contain string values")
        );
        // Non-string values read as nil in MGET; SET and MSET replace them.
        assert_eq!(run(&state, &mut s, &["MGET", "list"]), Reply::Array(vec![Reply::Null]));
        assert_eq!(run(&state, &mut s, &["MSETNX", "list", "v"]), Reply::Int(0));
        assert_eq!(run(&state, &mut s, &["SET", "list", "v"]), Reply::Ok);
        assert_eq!(run(&state, &mut s, &["GET", "list"]), Reply::bulk("v"));
    }

    #[test]
    fn encodings_follow_try_object_encoding() {
        let e = |v: &[u8], flags: u8| {
            let mut e = Entry::new_str(b"k", v, None, 0);
            e.flags |= flags;
            string_encoding(&e)
        };
        assert_eq!(e(b"123", 0), "int");
        assert_eq!(e(b"-9223372036854775808", 0), "int");
        assert_eq!(e(b"9223372036854775808", 0), "embstr");
        assert_eq!(e(b"0123", 0), "embstr");
        assert_eq!(e(b"", 0), "embstr");
        assert_eq!(e(&[b'x'; 44], 0), "embstr");
        assert_eq!(e(&[b'x'; 45], 0), "raw");
        assert_eq!(e(b"3", FLAG_EMBSTR), "embstr");
        assert_eq!(e(b"3", FLAG_RAW), "raw");
    }

    #[test]
    fn first_bit_pads_zeros() {
        assert_eq!(first_bit(&[0x00, 0x10], true), 11);
        assert_eq!(first_bit(&[0xff], false), 8);
        assert_eq!(first_bit(&[0x00], true), -1);
        assert_eq!(first_bit(&[], false), 0);
    }
}
