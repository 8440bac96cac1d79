//! Commands of the `hash` family, with Redis 7.0.15's replies and errors.
//!
//! Each handler parses its arguments completely before touching the
//! keyspace, so a malformed command never creates or changes a key. Fields
//! and values are copied out of the request buffer before they are stored
//! (arguments are zero-copy slices of the connection's buffer, which a stored
//! slice would keep alive). HINCRBYFLOAT computes in emulated x87 long
//! double (the same arithmetic as INCRBYFLOAT, [`super::string::longdouble`])
//! so its results match Redis digit for digit. Also
//! home of the HSCAN/SSCAN argument parsing, which the set family shares.

use bytes::Bytes;
use rand::Rng;

use super::flags::*;
use super::parse::{self, ERR_NOT_FLOAT, ERR_OVERFLOW};
use super::string::longdouble::{self, Parsed};
use super::{CmdResult, CommandSpec, Ctx, one_key};
use crate::db::hash::Hash;

use crate::notify;
use crate::resp::Reply;

const ERR_HASH_NOT_INT: &str = "ERR hash value is not an integer";
const ERR_HASH_NOT_FLOAT: &str = "ERR hash value is not a float";
const ERR_NAN_INCR: &str = "ERR value is NaN or Infinity";
const ERR_NAN_RESULT: &str = "ERR increment would produce NaN or Infinity";
const ERR_INVALID_CURSOR: &str = "ERR invalid cursor";
pub(super) const ERR_RANGE_COUNT: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";
pub(super) const ERR_OUT_OF_RANGE: &str = "ERR value is out of range";
/// Largest number of elements a random-with-repetition reply (negative
/// count) may hold. Redis serves any count and runs out of memory on absurd
/// ones; a client must never be able to do that to this server.
pub(super) const MAX_RANDOM_REPLY: u64 = 10_000_000;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: one_key(),
            group: "hash",
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
        "hset",
        -4,
        WRITE | DENYOOM | FAST,
        hset,
        "2.0.0",
        "O(1) for each field/value pair added, so O(N) to add N field/value pairs when the command is called with multiple field/value pairs.",
        "Set the string value of a hash field"
    ),
    spec!(
        "hmset",
        -4,
        WRITE | DENYOOM | FAST,
        hmset,
        "2.0.0",
        "O(N) where N is the number of fields being set.",
        "Set multiple hash fields to multiple values"
    ),
    spec!(
        "hsetnx",
        4,
        WRITE | DENYOOM | FAST,
        hsetnx,
        "2.0.0",
        "O(1)",
        "Set the value of a hash field, only if the field does not exist"
    ),
    spec!(
        "hget",
        3,
        READONLY | FAST,
        hget,
        "2.0.0",
        "O(1)",
        "Get the value of a hash field"
    ),
    spec!(
        "hmget",
        -3,
        READONLY | FAST,
        hmget,
        "2.0.0",
        "O(N) where N is the number of fields being requested.",
        "Get the values of all the given hash fields"
    ),
    spec!(
        "hdel",
        -3,
        WRITE | FAST,
        hdel,
        "2.0.0",
        "O(N) where N is the number of fields to be removed.",
        "Delete one or more hash fields"
    ),
    spec!(
        "hexists",
        3,
        READONLY | FAST,
        hexists,
        "2.0.0",
        "O(1)",
        "Determine if a hash field exists"
    ),
    spec!(
        "hlen",
        2,
        READONLY | FAST,
        hlen,
        "2.0.0",
        "O(1)",
        "Get the number of fields in a hash"
    ),
    spec!(
        "hstrlen",
        3,
        READONLY | FAST,
        hstrlen,
        "3.2.0",
        "O(1)",
        "Get the length of the value of a hash field"
    ),
    spec!(
        "hkeys",
        2,
        READONLY,
        hkeys,
        "2.0.0",
        "O(N) where N is the size of the hash.",
        "Get all the fields in a hash"
    ),
    spec!(
        "hvals",
        2,
        READONLY,
        hvals,
        "2.0.0",
        "O(N) where N is the size of the hash.",
        "Get all the values in a hash"
    ),
    spec!(
        "hgetall",
        2,
        READONLY,
        hgetall,
        "2.0.0",
        "O(N) where N is the size of the hash.",
        "Get all the fields and values in a hash"
    ),
    spec!(
        "hincrby",
        4,
        WRITE | DENYOOM | FAST,
        hincrby,
        "2.0.0",
        "O(1)",
        "Increment the integer value of a hash field by the given number"
    ),
    spec!(
        "hincrbyfloat",
        4,
        WRITE | DENYOOM | FAST,
        hincrbyfloat,
        "2.6.0",
        "O(1)",
        "Increment the float value of a hash field by the given amount"
    ),
    spec!(
        "hscan",
        -3,
        READONLY,
        hscan,
        "2.8.0",
        "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection..",
        "Incrementally iterate hash fields and associated values"
    ),
    spec!(
        "hrandfield",
        -2,
        READONLY,
        hrandfield,
        "6.2.0",
        "O(N) where N is the number of fields returned",
        "Get one or multiple random fields from a hash"
    ),
];

fn wrong_args(name: &str) -> Reply {
    Reply::err(format!("ERR wrong number of arguments for '{name}' command"))
}

/// A hash for reading (keyspace hit/miss counted), or WRONGTYPE.
fn read<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a Hash>, Reply> {
    let state = ctx.state;
    // A collection emptied earlier in the same transaction is only deleted
    // when EXEC ends: it counts as absent (and cannot be sampled).
    let h = ctx
        .ks
        .get_obj::<Hash>(key)
        .map_err(Reply::err)?
        .filter(|h| !h.is_empty());
    super::looked_up(state, &mut ctx.events, key, h.is_some());
    Ok(h)
}

fn set_pairs(ctx: &mut Ctx, args: &[&[u8]], name: &str) -> Result<i64, Reply> {
    if !args.len().is_multiple_of(2) {
        return Err(wrong_args(name));
    }
    let lim = ctx.limits();
    let added = ctx
        .ks
        .add_to::<Hash, _>(args[1], |h| {
            let mut added = 0;
            for pair in args[2..].chunks_exact(2) {
                if h.insert(pair[0], pair[1], &lim) {
                    added += 1;
                }
            }
            added
        })
        .map_err(Reply::err)?;
    ctx.changed(args[1], notify::HASH, "hset");
    Ok(added)
}

fn hset(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    set_pairs(ctx, args, "hset").map(Reply::Int)
}

fn hmset(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    set_pairs(ctx, args, "hmset").map(|_| Reply::Ok)
}

fn hsetnx(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let lim = ctx.limits();
    let h = ctx.ks.get_obj_mut_or_create::<Hash>(args[1]).map_err(Reply::err)?;
    if h.contains(args[2]) {
        return Ok(Reply::Int(0));
    }
    h.insert(args[2], args[3], &lim);
    ctx.changed(args[1], notify::HASH, "hset");
    Ok(Reply::Int(1))
}

fn hget(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let h = read(ctx, args[1])?;
    Ok(Reply::opt_bulk(h.and_then(|h| h.get(args[2]))))
}

fn hmget(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let h = read(ctx, args[1])?;
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|f| Reply::opt_bulk(h.and_then(|h| h.get(f))))
            .collect(),
    ))
}

fn hdel(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(h) = ctx.ks.get_obj_mut::<Hash>(args[1]).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    let deleted = args[2..].iter().filter(|f| h.remove(f)).count();
    let emptied = h.is_empty();
    if deleted > 0 {
        ctx.changed(args[1], notify::HASH, "hdel");
        if emptied {
            ctx.notify(notify::GENERIC, "del", args[1]);
        }
    }
    Ok(Reply::Int(deleted as i64))
}

fn hexists(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let h = read(ctx, args[1])?;
    Ok(Reply::Int(h.is_some_and(|h| h.contains(args[2])) as i64))
}

fn hlen(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let h = read(ctx, args[1])?;
    Ok(Reply::Int(h.map_or(0, Hash::len) as i64))
}

fn hstrlen(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let h = read(ctx, args[1])?;
    Ok(Reply::Int(h.and_then(|h| h.get(args[2])).map_or(0, <[u8]>::len) as i64))
}

fn hkeys(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(match read(ctx, args[1])? {
        Some(h) => Reply::bulk_array(h.iter().map(|(k, _)| k), h.len()),
        None => Reply::Array(Vec::new()),
    })
}

fn hvals(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(match read(ctx, args[1])? {
        Some(h) => Reply::bulk_array(h.iter().map(|(_, v)| v), h.len()),
        None => Reply::Array(Vec::new()),
    })
}

fn hgetall(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let h = read(ctx, args[1])?;
    Ok(Reply::Map(
        h.into_iter()
            .flat_map(Hash::iter)
            .map(|(k, v)| (Reply::bulk(k), Reply::bulk(v)))
            .collect(),
    ))
}

fn hincrby(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let incr = parse::int(args[3])?;
    let lim = ctx.limits();
    let h = ctx.ks.get_obj_mut_or_create::<Hash>(args[1]).map_err(Reply::err)?;
    let old = match h.get(args[2]) {
        Some(v) => parse::parse_i64(v).ok_or_else(|| Reply::err(ERR_HASH_NOT_INT))?,
        None => 0,
    };
    let new = old.checked_add(incr).ok_or_else(|| Reply::err(ERR_OVERFLOW))?;
    h.insert(args[2], &parse::i64_bytes(new), &lim);
    ctx.changed(args[1], notify::HASH, "hincrby");
    Ok(Reply::Int(new))
}

fn hincrbyfloat(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let incr = match longdouble::parse(args[3]) {
        Some(Parsed::Finite(v)) => v,
        Some(Parsed::Infinite) => return Err(Reply::err(ERR_NAN_INCR)),
        None => return Err(Reply::err(ERR_NOT_FLOAT)),
    };
    let lim = ctx.limits();
    let h = ctx.ks.get_obj_mut_or_create::<Hash>(args[1]).map_err(Reply::err)?;
    let old = match longdouble::parse(h.get(args[2]).unwrap_or(b"0")) {
        Some(Parsed::Finite(v)) => v,
        // A stored "inf" parses, but any sum with it is infinite.
        Some(Parsed::Infinite) => return Err(Reply::err(ERR_NAN_RESULT)),
        None => return Err(Reply::err(ERR_HASH_NOT_FLOAT)),
    };
    let new = old.checked_add(incr).ok_or_else(|| Reply::err(ERR_NAN_RESULT))?;
    let text = Bytes::from(new.to_human());
    h.insert(args[2], &text, &lim);
    ctx.changed(args[1], notify::HASH, "hincrbyfloat");
    // The result, not the increment (Redis 7.0): long double arithmetic and
    // its formatting must not be redone by whoever replays the log.
    ctx.propagate_args(&[b"HSET", args[1], args[2], &text]);
    Ok(Reply::Bulk(text))
}

/// Parsed `[MATCH pattern] [COUNT count]` of HSCAN/SSCAN.
pub(super) struct ScanOpts {
    pub pattern: Option<Bytes>,
    pub count: usize,
}

/// Redis' `parseScanCursorOrReply`: C `strtoul` over the whole argument, so a
/// sign is accepted (`-1` wraps around) and an empty string is cursor 0.
pub(super) fn scan_cursor(b: &[u8]) -> Result<u64, Reply> {
    let bad = || Reply::err(ERR_INVALID_CURSOR);
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        Some(_) => (false, b),
        None => return Ok(0),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add((d - b'0') as u64))
            .ok_or_else(bad)?;
    }
    Ok(if neg { v.wrapping_neg() } else { v })
}

/// Options after the cursor (`args[3..]`), as Redis' `scanGenericCommand`.
pub(super) fn scan_opts(args: &[&[u8]]) -> Result<ScanOpts, Reply> {
    let mut opts = ScanOpts {
        pattern: None,
        count: 10,
    };
    let mut i = 0;
    while i < args.len() {
        let more = i + 1 < args.len();
        if parse::is(args[i], "count") && more {
            let n = parse::int(args[i + 1])?;
            if n < 1 {
                return Err(parse::syntax());
            }
            opts.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if parse::is(args[i], "match") && more {
            let p = &args[i + 1];
            opts.pattern = if *p == b"*" {
                None
            } else {
                Some(Bytes::copy_from_slice(p))
            };
        } else {
            return Err(parse::syntax());
        }
        i += 2;
    }
    Ok(opts)
}

/// The `[cursor, [items...]]` reply of the *SCAN family.
pub(super) fn scan_reply(cursor: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![
        Reply::bulk(itoa::Buffer::new().format(cursor).as_bytes()),
        Reply::Array(items),
    ])
}

pub(super) fn scan_matches(opts: &ScanOpts, item: &[u8]) -> bool {
    opts.pattern
        .as_ref()
        .is_none_or(|p| crate::glob::glob_match(p, item, false))
}

fn hscan(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let cursor = scan_cursor(args[2])?;
    let Some(h) = read(ctx, args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let opts = scan_opts(&args[3..])?;
    let mut items = Vec::new();
    let mut push = |k: &[u8], v: &[u8]| {
        if scan_matches(&opts, k) {
            items.push(Reply::bulk(k));
            items.push(Reply::bulk(v));
        }
    };
    if h.is_listpack() {
        for (k, v) in h.iter() {
            push(k, v);
        }
        return Ok(scan_reply(0, items));
    }
    // As Redis: visit buckets until `count` items (fields and values both
    // count) were collected, at most 10×count buckets, filtering afterwards.
    let mut cursor = cursor;
    let mut visited = 0usize;
    let mut budget = opts.count.saturating_mul(10);
    let mut collected = Vec::new();
    loop {
        cursor = h.scan_bucket(cursor, |k, v| {
            collected.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
            visited += 2;
        });
        if cursor == 0 || budget == 0 || visited >= opts.count {
            break;
        }
        budget -= 1;
    }
    for (k, v) in &collected {
        push(k, v);
    }
    Ok(scan_reply(cursor, items))
}

/// `count` distinct positions out of `len` (`count < len`), in random order.
pub(super) fn distinct_positions(len: usize, count: usize) -> Vec<usize> {
    rand::seq::index::sample(&mut rand::rng(), len, count).into_vec()
}

fn hrandfield(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() == 2 {
        let h = read(ctx, args[1])?;
        return Ok(match h {
            Some(h) if !h.is_empty() => Reply::bulk(h.at(rand::rng().random_range(0..h.len())).0),
            _ => Reply::Null,
        });
    }
    let count = parse::int(args[2])?;
    if count == i64::MIN {
        return Err(Reply::err(ERR_RANGE_COUNT));
    }
    let withvalues = match args.len() {
        3 => false,
        4 if parse::is(args[3], "withvalues") => {
            if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
                return Err(Reply::err(ERR_OUT_OF_RANGE));
            }
            true
        }
        _ => return Err(parse::syntax()),
    };
    let resp3 = ctx.proto() >= 3;
    let Some(h) = read(ctx, args[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    if count < 0 && count.unsigned_abs() > MAX_RANDOM_REPLY {
        return Err(Reply::err(ERR_OUT_OF_RANGE));
    }
    let field = |i: usize, out: &mut Vec<Reply>| {
        let (k, v) = h.at(i);
        if !withvalues {
            out.push(Reply::bulk(k));
        } else if resp3 {
            out.push(Reply::Array(vec![Reply::bulk(k), Reply::bulk(v)]));
        } else {
            out.push(Reply::bulk(k));
            out.push(Reply::bulk(v));
        }
    };
    let len = h.len();
    let mut out = Vec::new();
    if count < 0 {
        // With repetition: every pick is independent.
        let mut rng = rand::rng();
        for _ in 0..count.unsigned_abs() {
            field(rng.random_range(0..len), &mut out);
        }
    } else if count as u64 >= len as u64 {
        for i in 0..len {
            field(i, &mut out);
        }
    } else {
        let mut picks = distinct_positions(len, count as usize);
        if h.is_listpack() {
            // Redis samples a listpack in order ("non-random order").
            picks.sort_unstable();
        }
        for i in picks {
            field(i, &mut out);
        }
    }
    Ok(Reply::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_cursor_is_strtoul() {
        assert_eq!(scan_cursor(b"0").ok(), Some(0));
        assert_eq!(scan_cursor(b"").ok(), Some(0));
        assert_eq!(scan_cursor(b"01").ok(), Some(1));
        assert_eq!(scan_cursor(b"+7").ok(), Some(7));
        assert_eq!(scan_cursor(b"-1").ok(), Some(u64::MAX));
        assert_eq!(scan_cursor(b"18446744073709551615").ok(), Some(u64::MAX));
        assert!(scan_cursor(b"18446744073709551616").is_err());
        assert!(scan_cursor(b"-").is_err());
        assert!(scan_cursor(b" 1").is_err());
        assert!(scan_cursor(b"1x").is_err());
    }
}
