//! Commands of the sorted-set family (ZADD ... ZSCAN), with Redis 7.0.15's
//! argument rules, replies and errors.
//!
//! Redis funnels most of these through a few generic routines
//! (`zaddGenericCommand`, `zrangeGenericCommand`, `zremrangeGenericCommand`,
//! `genericZpopCommand`, `zunionInterDiffGenericCommand`); we keep the same
//! split, because the option parsing, the order in which errors are detected
//! and the reply shapes are shared along exactly those lines. Every range —
//! by rank, score or lex — becomes a rank interval of the [`ZSet`], so one
//! walker serves all of them.
//!
//! Scores are answered as [`Reply::Double`]: a `%.17g` bulk string in RESP2 and
//! a double in RESP3, where `WITHSCORES` replies also become `[member, score]`
//! pairs, as Redis 7 does.

use bytes::Bytes;
use rand::Rng;

use super::flags::*;
use super::parse::{self, is};
use super::{BlockSpec, CmdResult, CommandSpec, Ctx, KeySpec};
use crate::db::zset::{LexBound, LexRange, ScoreRange, ZSet};
use crate::db::{Value, WRONGTYPE};
use crate::notify;
use crate::resp::Reply;

const ERR_MINMAX_FLOAT: &str = "ERR min or max is not a float";
const ERR_LEX_RANGE: &str = "ERR min or max not valid string range item";
const ERR_NAN: &str = "ERR resulting score is not a number (NaN)";
const ERR_XX_NX: &str = "ERR XX and NX options at the same time are not compatible";
const ERR_GT_LT_NX: &str = "ERR GT, LT, and/or NX options at the same time are not compatible";
const ERR_INCR_PAIRS: &str = "ERR INCR option supports a single increment-element pair";
const ERR_WEIGHT: &str = "ERR weight value is not a float";
const ERR_POSITIVE: &str = "ERR value is out of range, must be positive";
const ERR_NUMKEYS: &str = "ERR numkeys should be greater than 0";
const ERR_COUNT: &str = "ERR count should be greater than 0";
const ERR_LIMIT_NEG: &str = "ERR LIMIT can't be negative";
const ERR_OUT_OF_RANGE: &str = "ERR value is out of range";
const ERR_CURSOR: &str = "ERR invalid cursor";
const ERR_LIMIT_RANK: &str = "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX";
const ERR_WITHSCORES_LEX: &str = "ERR syntax error, WITHSCORES not supported in combination with BYLEX";
/// Replies larger than this are refused (ZRANDMEMBER with a huge negative
/// count would otherwise build a reply no client can read and no server can hold).
const MAX_REPLY_ELEMENTS: i64 = 1 << 24;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:expr, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "sorted_set",
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

const ONE: KeySpec = super::one_key();
const LOG_N: &str = "O(log(N)) where N is the number of elements in the sorted set.";
const RANGE_CX: &str = "O(log(N)+M) with N being the number of elements in the sorted set and M the number of \
                        elements returned.";
const SETOP_CX: &str = "O(N)+O(M*log(M)) with N being the sum of the sizes of the input sorted sets, and M being \
                        the number of elements in the resulting sorted set.";
/// Keys ending before the last argument (BZPOPMIN key... timeout).
const ALL_BUT_LAST: KeySpec = KeySpec::Range {
    first: 1,
    last: -2,
    step: 1,
};
const ZRANGESTORE_KEYS: KeySpec = KeySpec::Range {
    first: 1,
    last: 2,
    step: 1,
};

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "zadd",
        -4,
        WRITE | DENYOOM | FAST,
        ONE,
        zadd,
        "1.2.0",
        LOG_N,
        "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist."
    ),
    spec!(
        "zincrby",
        4,
        WRITE | DENYOOM | FAST,
        ONE,
        zincrby,
        "1.2.0",
        LOG_N,
        "Increments the score of a member in a sorted set."
    ),
    spec!(
        "zrem",
        -3,
        WRITE | FAST,
        ONE,
        zrem,
        "1.2.0",
        "O(M*log(N))",
        "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed."
    ),
    spec!(
        "zscore",
        3,
        READONLY | FAST,
        ONE,
        zscore,
        "1.2.0",
        "O(1)",
        "Returns the score of a member in a sorted set."
    ),
    spec!(
        "zmscore",
        -3,
        READONLY | FAST,
        ONE,
        zmscore,
        "6.2.0",
        "O(N)",
        "Returns the score of one or more members in a sorted set."
    ),
    spec!(
        "zcard",
        2,
        READONLY | FAST,
        ONE,
        zcard,
        "1.2.0",
        "O(1)",
        "Returns the number of members in a sorted set."
    ),
    spec!(
        "zcount",
        4,
        READONLY | FAST,
        ONE,
        zcount,
        "2.0.0",
        LOG_N,
        "Returns the count of members in a sorted set that have scores within a range."
    ),
    spec!(
        "zlexcount",
        4,
        READONLY | FAST,
        ONE,
        zlexcount,
        "2.8.9",
        LOG_N,
        "Returns the number of members in a sorted set within a lexicographical range."
    ),
    spec!(
        "zrange",
        -4,
        READONLY,
        ONE,
        zrange,
        "1.2.0",
        RANGE_CX,
        "Returns members in a sorted set within a range of indexes."
    ),
    spec!(
        "zrangestore",
        -5,
        WRITE | DENYOOM,
        ZRANGESTORE_KEYS,
        zrangestore,
        "6.2.0",
        RANGE_CX,
        "Stores a range of members from sorted set in a key."
    ),
    spec!(
        "zrangebyscore",
        -4,
        READONLY,
        ONE,
        zrangebyscore,
        "1.0.5",
        RANGE_CX,
        "Returns members in a sorted set within a range of scores."
    ),
    spec!(
        "zrevrangebyscore",
        -4,
        READONLY,
        ONE,
        zrevrangebyscore,
        "2.2.0",
        RANGE_CX,
        "Returns members in a sorted set within a range of scores in reverse order."
    ),
    spec!(
        "zrangebylex",
        -4,
        READONLY,
        ONE,
        zrangebylex,
        "2.8.9",
        RANGE_CX,
        "Returns members in a sorted set within a lexicographical range."
    ),
    spec!(
        "zrevrangebylex",
        -4,
        READONLY,
        ONE,
        zrevrangebylex,
        "2.8.9",
        RANGE_CX,
        "Returns members in a sorted set within a lexicographical range in reverse order."
    ),
    spec!(
        "zrevrange",
        -4,
        READONLY,
        ONE,
        zrevrange,
        "1.2.0",
        RANGE_CX,
        "Returns members in a sorted set within a range of indexes in reverse order."
    ),
    spec!(
        "zrank",
        3,
        READONLY | FAST,
        ONE,
        zrank,
        "2.0.0",
        LOG_N,
        "Returns the index of a member in a sorted set ordered by ascending scores."
    ),
    spec!(
        "zrevrank",
        3,
        READONLY | FAST,
        ONE,
        zrevrank,
        "2.0.0",
        LOG_N,
        "Returns the index of a member in a sorted set ordered by descending scores."
    ),
    spec!(
        "zremrangebyrank",
        4,
        WRITE,
        ONE,
        zremrangebyrank,
        "2.0.0",
        RANGE_CX,
        "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed."
    ),
    spec!(
        "zremrangebyscore",
        4,
        WRITE,
        ONE,
        zremrangebyscore,
        "1.2.0",
        RANGE_CX,
        "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed."
    ),
    spec!(
        "zremrangebylex",
        4,
        WRITE,
        ONE,
        zremrangebylex,
        "2.8.9",
        RANGE_CX,
        "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed."
    ),
    spec!(
        "zpopmin",
        -2,
        WRITE | FAST,
        ONE,
        zpopmin,
        "5.0.0",
        LOG_N,
        "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."
    ),
    spec!(
        "zpopmax",
        -2,
        WRITE | FAST,
        ONE,
        zpopmax,
        "5.0.0",
        LOG_N,
        "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."
    ),
    spec!(
        "bzpopmin",
        -3,
        WRITE | NOSCRIPT | BLOCKING | FAST,
        ALL_BUT_LAST,
        bzpopmin,
        "5.0.0",
        LOG_N,
        "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped."
    ),
    spec!(
        "bzpopmax",
        -3,
        WRITE | NOSCRIPT | BLOCKING | FAST,
        ALL_BUT_LAST,
        bzpopmax,
        "5.0.0",
        LOG_N,
        "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped."
    ),
    spec!(
        "zmpop",
        -4,
        WRITE,
        KeySpec::Custom(numkeys_at_1),
        zmpop,
        "7.0.0",
        "O(K) + O(M*log(N))",
        "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped."
    ),
    spec!(
        "bzmpop",
        -5,
        WRITE | BLOCKING,
        KeySpec::Custom(super::numkeys_at_2),
        bzmpop,
        "7.0.0",
        "O(K) + O(M*log(N))",
        "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped."
    ),
    spec!(
        "zunionstore",
        -4,
        WRITE | DENYOOM,
        KeySpec::Custom(store_keys),
        zunionstore,
        "2.0.0",
        SETOP_CX,
        "Stores the union of multiple sorted sets in a key."
    ),
    spec!(
        "zinterstore",
        -4,
        WRITE | DENYOOM,
        KeySpec::Custom(store_keys),
        zinterstore,
        "2.0.0",
        SETOP_CX,
        "Stores the intersect of multiple sorted sets in a key."
    ),
    spec!(
        "zdiffstore",
        -4,
        WRITE | DENYOOM,
        KeySpec::Custom(store_keys),
        zdiffstore,
        "6.2.0",
        SETOP_CX,
        "Stores the difference of multiple sorted sets in a key."
    ),
    spec!(
        "zunion",
        -3,
        READONLY,
        KeySpec::Custom(numkeys_at_1),
        zunion,
        "6.2.0",
        SETOP_CX,
        "Returns the union of multiple sorted sets."
    ),
    spec!(
        "zinter",
        -3,
        READONLY,
        KeySpec::Custom(numkeys_at_1),
        zinter,
        "6.2.0",
        SETOP_CX,
        "Returns the intersect of multiple sorted sets."
    ),
    spec!(
        "zdiff",
        -3,
        READONLY,
        KeySpec::Custom(numkeys_at_1),
        zdiff,
        "6.2.0",
        SETOP_CX,
        "Returns the difference between multiple sorted sets."
    ),
    spec!(
        "zintercard",
        -3,
        READONLY,
        KeySpec::Custom(numkeys_at_1),
        zintercard,
        "7.0.0",
        "O(N*K) worst case with N being the smallest input sorted set, K being the number of input sorted sets.",
        "Returns the number of members of the intersect of multiple sorted sets."
    ),
    spec!(
        "zrandmember",
        -2,
        READONLY,
        ONE,
        zrandmember,
        "6.2.0",
        "O(N) where N is the number of members returned",
        "Returns one or more random members from a sorted set."
    ),
    spec!(
        "zscan",
        -3,
        READONLY,
        ONE,
        zscan,
        "2.8.0",
        "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.",
        "Iterates over members and scores of a sorted set."
    ),
];

/// A member and its score copied out of a sorted set (which stores plain
/// bytes), for a reply or to keep past the set's borrow.
fn owned_item((m, s): (&[u8], f64)) -> (Bytes, f64) {
    (Bytes::copy_from_slice(m), s)
}

// --- key positions of numkeys-style commands ---------------------------------

fn numkeys_at_1(args: &[&[u8]]) -> Vec<usize> {
    super::numkeys_keys(args, 1)
}

/// The destination and the sources, or nothing at all when the sources'
/// count is unusable (as Redis' `zunionInterDiffStoreGetKeys`).
fn store_keys(args: &[&[u8]]) -> Vec<usize> {
    let sources = super::numkeys_keys(args, 2);
    if sources.is_empty() {
        return sources;
    }
    let mut v = vec![1];
    v.extend(sources);
    v
}

// --- argument parsing ------------------------------------------------------

/// Redis' `getDoubleFromObject`: the whole argument, no leading space, no
/// NaN, no overflow or underflow to zero.
pub(super) fn parse_score(b: &[u8]) -> Option<f64> {
    if b.is_empty() || b[0].is_ascii_whitespace() || b[0] == b'\x0b' {
        return None;
    }
    let (v, used, erange) = parse::strtod(b);
    if used != b.len() || v.is_nan() || (erange && (v.is_infinite() || v == 0.0)) {
        return None;
    }
    Some(v)
}

fn score_arg(b: &[u8]) -> Result<f64, Reply> {
    parse_score(b).ok_or_else(|| Reply::err(parse::ERR_NOT_FLOAT))
}

/// One end of a score range (`zslParseRangeItem`): `(` makes it exclusive;
/// the rest goes through plain `strtod`, so even an empty string is 0.
fn range_item(b: &[u8]) -> Option<(f64, bool)> {
    let (ex, num) = match b.first() {
        Some(b'(') => (true, &b[1..]),
        _ => (false, b),
    };
    let (v, used, _) = parse::strtod(num);
    if used != num.len() || v.is_nan() {
        return None;
    }
    Some((v, ex))
}

fn score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Reply> {
    match (range_item(min), range_item(max)) {
        (Some((min, min_ex)), Some((max, max_ex))) => Ok(ScoreRange {
            min,
            max,
            min_ex,
            max_ex,
        }),
        _ => Err(Reply::err(ERR_MINMAX_FLOAT)),
    }
}

fn lex_item(b: &[u8]) -> Option<LexBound> {
    match b.first() {
        Some(b'+') if b.len() == 1 => Some(LexBound::Max),
        Some(b'-') if b.len() == 1 => Some(LexBound::Min),
        Some(b'(') => Some(LexBound::Excl(Bytes::copy_from_slice(&b[1..]))),
        Some(b'[') => Some(LexBound::Incl(Bytes::copy_from_slice(&b[1..]))),
        _ => None,
    }
}

fn lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, Reply> {
    match (lex_item(min), lex_item(max)) {
        (Some(min), Some(max)) => Ok(LexRange { min, max }),
        _ => Err(Reply::err(ERR_LEX_RANGE)),
    }
}

// --- keyspace access ---------------------------------------------------------

/// A sorted set for reading, counting the lookup as a keyspace hit or miss.
pub(super) fn read<'c>(ctx: &'c mut Ctx<'_>, key: &[u8]) -> Result<Option<&'c ZSet>, Reply> {
    let state = ctx.state;
    let z = ctx.ks.get_obj::<ZSet>(key).map_err(Reply::err)?;
    super::looked_up(state, &mut ctx.events, key, z.is_some());
    Ok(z)
}

fn write<'c>(ctx: &'c mut Ctx<'_>, key: &[u8]) -> Result<Option<&'c mut ZSet>, Reply> {
    ctx.ks.get_obj_mut::<ZSet>(key).map_err(Reply::err)
}

/// Report a change, and the key's deletion when the change emptied it (the
/// keyspace deletes empty collections when the command ends).
fn changed(ctx: &mut Ctx, key: &[u8], event: &'static str, now_empty: bool) {
    ctx.changed(key, notify::ZSET, event);
    if now_empty {
        ctx.notify(notify::GENERIC, "del", key);
    }
}

/// Store `items` at `dst` (replacing whatever is there), or delete `dst`
/// when there is nothing to store. Returns the stored count.
pub(super) fn store(ctx: &mut Ctx, dst: &[u8], items: Vec<(Bytes, f64)>, event: &'static str) -> i64 {
    let lim = ctx.limits();
    let max_member = items.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    let mut z = if ZSet::fits_listpack(items.len(), max_member, &lim) {
        ZSet::default()
    } else {
        ZSet::new_skiplist()
    };
    for (m, s) in items {
        z.insert(&m, s, &lim);
    }
    let n = z.len() as i64;
    if n > 0 {
        ctx.ks.insert(dst, Value::ZSet(z), None);
        ctx.changed(dst, notify::ZSET, event);
    } else if ctx.ks.remove(dst).is_some() {
        ctx.changed(dst, notify::GENERIC, "del");
    }
    n
}

// --- replies -----------------------------------------------------------------

/// Members (and scores): flat in RESP2, `[member, score]` pairs in RESP3.
fn scored(proto: u8, items: impl IntoIterator<Item = (Bytes, f64)>, withscores: bool) -> Reply {
    let mut out = Vec::new();
    for (m, s) in items {
        if !withscores {
            out.push(Reply::Bulk(m));
        } else if proto >= 3 {
            out.push(Reply::Array(vec![Reply::Bulk(m), Reply::Double(s)]));
        } else {
            out.push(Reply::Bulk(m));
            out.push(Reply::Double(s));
        }
    }
    Reply::Array(out)
}

// --- ZADD / ZINCRBY ----------------------------------------------------------

pub(super) fn zadd(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zadd_generic(ctx, args, false)
}

fn zincrby(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zadd_generic(ctx, args, true)
}

/// `zaddGenericCommand`: ZINCRBY is ZADD INCR without options.
fn zadd_generic(ctx: &mut Ctx, args: &[&[u8]], zincrby: bool) -> CmdResult {
    let key = &args[1];
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = (false, false, false, false, false, zincrby);
    let mut idx = 2;
    if !zincrby {
        while idx < args.len() {
            let a = &args[idx];
            if is(a, "nx") {
                nx = true;
            } else if is(a, "xx") {
                xx = true;
            } else if is(a, "ch") {
                ch = true;
            } else if is(a, "incr") {
                incr = true;
            } else if is(a, "gt") {
                gt = true;
            } else if is(a, "lt") {
                lt = true;
            } else {
                break;
            }
            idx += 1;
        }
    }
    let elements = args.len() - idx;
    if !elements.is_multiple_of(2) || elements == 0 {
        return Err(parse::syntax());
    }
    let pairs = elements / 2;
    if xx && nx {
        return Err(Reply::err(ERR_XX_NX));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(Reply::err(ERR_GT_LT_NX));
    }
    if incr && pairs > 1 {
        return Err(Reply::err(ERR_INCR_PAIRS));
    }
    let mut scores = Vec::with_capacity(pairs);
    for p in 0..pairs {
        scores.push(score_arg(args[idx + p * 2])?);
    }
    let no_reply = || if incr { Reply::Null } else { Reply::Int(0) };
    let lim = ctx.limits();
    let apply = |z: &mut ZSet| {
        let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
        let mut last = 0.0;
        let mut nan = false;
        for (p, &score) in scores.iter().enumerate() {
            let member = &args[idx + p * 2 + 1];
            match z.score(member) {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { cur + score } else { score };
                    if new.is_nan() {
                        nan = true;
                        break;
                    }
                    if (lt && new >= cur) || (gt && new <= cur) {
                        continue;
                    }
                    if new != cur {
                        z.insert(member, new, &lim);
                        updated += 1;
                    }
                    processed += 1;
                    last = new;
                }
                None => {
                    if xx {
                        continue;
                    }
                    z.insert(member, score, &lim);
                    added += 1;
                    processed += 1;
                    last = score;
                }
            }
        }
        (added, updated, processed, last, nan)
    };
    // New members go in through `add_to` (memory accounted at once); XX
    // only updates, so it never creates the key.
    let (added, updated, processed, last, nan) = if xx {
        match write(ctx, key)? {
            Some(z) => apply(z),
            None => return Ok(no_reply()),
        }
    } else {
        ctx.ks.add_to::<ZSet, _>(key, apply).map_err(Reply::err)?
    };
    if added + updated > 0 {
        ctx.changed(key, notify::ZSET, if incr { "zincr" } else { "zadd" });
    }
    if nan {
        return Err(Reply::err(ERR_NAN));
    }
    Ok(if incr {
        if processed > 0 {
            Reply::Double(last)
        } else {
            Reply::Null
        }
    } else {
        Reply::Int(if ch { added + updated } else { added })
    })
}

// --- simple reads and ZREM ---------------------------------------------------

fn zrem(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let Some(z) = write(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let mut deleted = 0;
    for m in &args[2..] {
        if z.remove(m).is_some() {
            deleted += 1;
            if z.is_empty() {
                break;
            }
        }
    }
    let empty = z.is_empty();
    if deleted > 0 {
        changed(ctx, key, "zrem", empty);
    }
    Ok(Reply::Int(deleted))
}

fn zscore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let s = read(ctx, args[1])?.and_then(|z| z.score(args[2]));
    Ok(s.map_or(Reply::Null, Reply::Double))
}

fn zmscore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let z = read(ctx, args[1])?;
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|m| z.and_then(|z| z.score(m)).map_or(Reply::Null, Reply::Double))
            .collect(),
    ))
}

fn zcard(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(read(ctx, args[1])?.map_or(0, |z| z.len() as i64)))
}

fn zcount(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = score_range(args[2], args[3])?;
    let (lo, hi) = read(ctx, args[1])?.map_or((0, 0), |z| z.score_ranks(&r));
    Ok(Reply::Int((hi - lo) as i64))
}

fn zlexcount(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = lex_range(args[2], args[3])?;
    let (lo, hi) = read(ctx, args[1])?.map_or((0, 0), |z| z.lex_ranks(&r));
    Ok(Reply::Int((hi - lo) as i64))
}

fn zrank(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    rank_generic(ctx, args, false)
}

fn zrevrank(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    rank_generic(ctx, args, true)
}

fn rank_generic(ctx: &mut Ctx, args: &[&[u8]], rev: bool) -> CmdResult {
    let Some(z) = read(ctx, args[1])? else {
        return Ok(Reply::Null);
    };
    Ok(match z.rank(args[2]) {
        Some(r) if rev => Reply::Int((z.len() - 1 - r) as i64),
        Some(r) => Reply::Int(r as i64),
        None => Reply::Null,
    })
}

// --- ZRANGE and friends ------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum RangeKind {
    Auto,
    Rank,
    Score,
    Lex,
}

fn zrange(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zrange_generic(ctx, args, 1, None, RangeKind::Auto, None)
}
fn zrangestore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zrange_generic(ctx, args, 2, Some(args[1]), RangeKind::Auto, None)
}
fn zrevrange(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zrange_generic(ctx, args, 1, None, RangeKind::Rank, Some(true))
}
fn zrangebyscore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zrange_generic(ctx, args, 1, None, RangeKind::Score, Some(false))
}
fn zrevrangebyscore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zrange_generic(ctx, args, 1, None, RangeKind::Score, Some(true))
}
fn zrangebylex(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zrange_generic(ctx, args, 1, None, RangeKind::Lex, Some(false))
}
fn zrevrangebylex(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zrange_generic(ctx, args, 1, None, RangeKind::Lex, Some(true))
}

/// Clamp a Redis rank interval (negative = from the end) to `[lo, hi)`.
fn rank_interval(start: i64, end: i64, len: usize) -> (usize, usize) {
    let len = len as i64;
    let mut start = if start < 0 { len.saturating_add(start) } else { start };
    let mut end = if end < 0 { len.saturating_add(end) } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return (0, 0);
    }
    if end >= len {
        end = len - 1;
    }
    (start as usize, end as usize + 1)
}

/// `zrangeGenericCommand`.
fn zrange_generic(
    ctx: &mut Ctx,
    args: &[&[u8]],
    first: usize,
    dst: Option<&[u8]>,
    mut kind: RangeKind,
    mut rev: Option<bool>,
) -> CmdResult {
    let key = &args[first];
    let (mut minidx, mut maxidx) = (first + 1, first + 2);
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = first + 3;
    while j < args.len() {
        let a = &args[j];
        let left = args.len() - j - 1;
        if dst.is_none() && is(a, "withscores") {
            withscores = true;
        } else if is(a, "limit") && left >= 2 {
            offset = parse::int(args[j + 1])?;
            limit = parse::int(args[j + 2])?;
            j += 2;
        } else if rev.is_none() && is(a, "rev") {
            rev = Some(true);
        } else if kind == RangeKind::Auto && is(a, "bylex") {
            kind = RangeKind::Lex;
        } else if kind == RangeKind::Auto && is(a, "byscore") {
            kind = RangeKind::Score;
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if kind == RangeKind::Auto {
        kind = RangeKind::Rank;
    }
    if limit != -1 && kind == RangeKind::Rank {
        return Err(Reply::err(ERR_LIMIT_RANK));
    }
    if withscores && kind == RangeKind::Lex {
        return Err(Reply::err(ERR_WITHSCORES_LEX));
    }
    if rev && kind != RangeKind::Rank {
        std::mem::swap(&mut minidx, &mut maxidx);
    }
    enum Parsed {
        Rank(i64, i64),
        Score(ScoreRange),
        Lex(LexRange),
    }
    let parsed = match kind {
        RangeKind::Score => Parsed::Score(score_range(args[minidx], args[maxidx])?),
        RangeKind::Lex => Parsed::Lex(lex_range(args[minidx], args[maxidx])?),
        _ => Parsed::Rank(parse::int(args[minidx])?, parse::int(args[maxidx])?),
    };
    let items: Vec<(Bytes, f64)> = match read(ctx, key)? {
        None => Vec::new(),
        Some(z) => {
            let (lo, hi, paged) = match &parsed {
                Parsed::Rank(s, e) => {
                    let (lo, hi) = rank_interval(*s, *e, z.len());
                    (lo, hi, false)
                }
                Parsed::Score(r) => {
                    let (lo, hi) = z.score_ranks(r);
                    (lo, hi, true)
                }
                Parsed::Lex(r) => {
                    let (lo, hi) = z.lex_ranks(r);
                    (lo, hi, true)
                }
            };
            let (mut lo, mut hi) = (lo, hi);
            if paged {
                // LIMIT: a negative offset skips everything, a negative count takes all.
                if offset < 0 {
                    hi = lo;
                } else {
                    let skip = (offset as u64).min((hi - lo) as u64) as usize;
                    let count = hi - lo - skip;
                    let take = if limit < 0 {
                        count
                    } else {
                        count.min(limit as u64 as usize)
                    };
                    if rev {
                        hi -= skip;
                        lo = hi - take;
                    } else {
                        lo += skip;
                        hi = lo + take;
                    }
                }
            }
            let n = hi - lo;
            // Rank intervals already count from the end when reversed.
            let start = if rev && paged { z.len() - hi } else { lo };
            z.iter_from(start, rev).take(n).map(owned_item).collect()
        }
    };
    match dst {
        Some(dst) => Ok(Reply::Int(store(ctx, dst, items, "zrangestore"))),
        None => Ok(scored(ctx.proto(), items, withscores)),
    }
}

// --- ZREMRANGEBY* ------------------------------------------------------------

fn zremrangebyrank(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (start, end) = (parse::int(args[2])?, parse::int(args[3])?);
    zremrange_generic(ctx, args[1], "zremrangebyrank", |z| rank_interval(start, end, z.len()))
}

fn zremrangebyscore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = score_range(args[2], args[3])?;
    zremrange_generic(ctx, args[1], "zremrangebyscore", |z| z.score_ranks(&r))
}

fn zremrangebylex(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = lex_range(args[2], args[3])?;
    zremrange_generic(ctx, args[1], "zremrangebylex", |z| z.lex_ranks(&r))
}

fn zremrange_generic(
    ctx: &mut Ctx,
    key: &[u8],
    event: &'static str,
    ranks: impl FnOnce(&ZSet) -> (usize, usize),
) -> CmdResult {
    let Some(z) = write(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let (lo, hi) = ranks(z);
    let removed = z.remove_ranks(lo, hi).len();
    let empty = z.is_empty();
    if removed > 0 {
        changed(ctx, key, event, empty);
    }
    Ok(Reply::Int(removed as i64))
}

// --- pops --------------------------------------------------------------------

/// How a pop reply is shaped (`genericZpopCommand`'s flags).
#[derive(Clone, Copy)]
struct PopShape {
    /// BZPOP*/ZMPOP: the key is part of the reply.
    emit_key: bool,
    /// `[member, score]` pairs (RESP3 with COUNT, and ZMPOP always).
    nested: bool,
}

/// A key and the elements popped from it.
type Popped = (Bytes, Vec<(Bytes, f64)>);

/// Pop up to `count` elements from the first non-empty sorted set among
/// `keys`. `Ok(None)` when all are empty or missing. In `skip_wrongtype`
/// mode (a blocked client being served) keys of another type are passed over,
/// as Redis only serves a blocked BZPOP from a key that is a sorted set.
fn pop_first(
    ctx: &mut Ctx,
    keys: &[&[u8]],
    max: bool,
    count: usize,
    skip_wrongtype: bool,
) -> Result<Option<Popped>, Reply> {
    for key in keys {
        let z = match write(ctx, key) {
            Ok(Some(z)) if !z.is_empty() => z,
            Ok(_) => continue,
            Err(_) if skip_wrongtype => continue,
            Err(e) => return Err(e),
        };
        let n = count.min(z.len());
        let mut items = if max {
            let len = z.len();
            z.remove_ranks(len - n, len)
        } else {
            z.remove_ranks(0, n)
        };
        if max {
            items.reverse();
        }
        let empty = z.is_empty();
        if n > 0 {
            changed(ctx, key, if max { "zpopmax" } else { "zpopmin" }, empty);
            // Every pop (ZPOP*, ZMPOP and the blocking forms, also when a
            // waiter is served later) logs the non-blocking pop on the key
            // that served, as Redis 7.0.
            let cmd: &[u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
            ctx.propagate_args(&[cmd, key, itoa::Buffer::new().format(n).as_bytes()]);
        }
        return Ok(Some((Bytes::copy_from_slice(key), items)));
    }
    Ok(None)
}

/// `[key]` then the elements, either flat (`member, score, ...`) or as
/// `[member, score]` pairs under the key (`[key, [[m, s], ...]]`).
fn pop_reply(key: Bytes, items: Vec<(Bytes, f64)>, shape: PopShape) -> Reply {
    let mut out = Vec::with_capacity(items.len() * 2 + 1);
    if shape.emit_key && !shape.nested {
        out.push(Reply::Bulk(key.clone()));
    }
    for (m, s) in items {
        if shape.nested {
            out.push(Reply::Array(vec![Reply::Bulk(m), Reply::Double(s)]));
        } else {
            out.push(Reply::Bulk(m));
            out.push(Reply::Double(s));
        }
    }
    if shape.emit_key && shape.nested {
        return Reply::Array(vec![Reply::Bulk(key), Reply::Array(out)]);
    }
    Reply::Array(out)
}

fn zpopmin(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zpop_generic(ctx, args, false)
}

fn zpopmax(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zpop_generic(ctx, args, true)
}

fn zpop_generic(ctx: &mut Ctx, args: &[&[u8]], max: bool) -> CmdResult {
    if args.len() > 3 {
        return Err(parse::syntax());
    }
    let count = match args.get(2) {
        Some(c) => match parse::parse_i64(c) {
            Some(v) if v >= 0 => Some(v as u64),
            _ => return Err(Reply::err(ERR_POSITIVE)),
        },
        None => None,
    };
    let nested = ctx.proto() >= 3 && count.is_some();
    if count == Some(0) {
        // Redis still checks the key's type before answering.
        ctx.ks.get_obj::<ZSet>(args[1]).map_err(Reply::err)?;
        return Ok(Reply::Array(Vec::new()));
    }
    let n = count.map_or(1, |c| c.min(usize::MAX as u64) as usize);
    match pop_first(ctx, &args[1..2], max, n, false)? {
        None => Ok(Reply::Array(Vec::new())),
        Some((key, items)) => Ok(pop_reply(
            key,
            items,
            PopShape {
                emit_key: false,
                nested,
            },
        )),
    }
}

fn bzpopmin(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    bzpop_generic(ctx, args, false)
}

fn bzpopmax(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    bzpop_generic(ctx, args, true)
}

fn bzpop_generic(ctx: &mut Ctx, args: &[&[u8]], max: bool) -> CmdResult {
    let timeout = parse::timeout(args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    let shape = PopShape {
        emit_key: true,
        nested: false,
    };
    blocking_pop(ctx, keys, max, 1, timeout, shape)
}

/// `blockingGenericZpopCommand`: pop now, or block on all the keys.
fn blocking_pop(
    ctx: &mut Ctx,
    keys: &[&[u8]],
    max: bool,
    count: usize,
    timeout: Option<std::time::Duration>,
    shape: PopShape,
) -> CmdResult {
    if let Some((key, items)) = pop_first(ctx, keys, max, count, ctx.retry)? {
        return Ok(pop_reply(key, items, shape));
    }
    if ctx.in_exec {
        return Ok(Reply::NullArray);
    }
    // Each key once, as Redis' blockForKeys does.
    let mut uniq: Vec<Bytes> = Vec::with_capacity(keys.len());
    for k in keys {
        if !uniq.iter().any(|u| u == k) {
            uniq.push(Bytes::copy_from_slice(k));
        }
    }
    ctx.block = Some(BlockSpec {
        keys: uniq,
        timeout,
        on_timeout: Reply::NullArray,
        args: None,
    });
    Ok(Reply::Null)
}

fn zmpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zmpop_generic(ctx, args, 1, false)
}

fn bzmpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    zmpop_generic(ctx, args, 2, true)
}

/// Parse a count-like argument in `1..=i64::MAX` with a custom message.
fn at_least_one(b: &[u8], msg: &'static str) -> Result<i64, Reply> {
    match parse::parse_i64(b) {
        Some(v) if v >= 1 => Ok(v),
        _ => Err(Reply::err(msg)),
    }
}

/// `zmpopGenericCommand`.
fn zmpop_generic(ctx: &mut Ctx, args: &[&[u8]], numkeys_idx: usize, blocking: bool) -> CmdResult {
    let numkeys = at_least_one(args[numkeys_idx], ERR_NUMKEYS)? as u64;
    let where_idx = (numkeys_idx as u64 + 1).saturating_add(numkeys);
    if where_idx >= args.len() as u64 {
        return Err(parse::syntax());
    }
    let where_idx = where_idx as usize;
    let max = if is(args[where_idx], "min") {
        false
    } else if is(args[where_idx], "max") {
        true
    } else {
        return Err(parse::syntax());
    };
    let mut count = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        if count.is_none() && is(args[j], "count") && j + 1 < args.len() {
            count = Some(at_least_one(args[j + 1], ERR_COUNT)?);
            j += 2;
        } else {
            return Err(parse::syntax());
        }
    }
    let count = usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX);
    let keys = &args[numkeys_idx + 1..where_idx];
    let shape = PopShape {
        emit_key: true,
        nested: true,
    };
    if blocking {
        let timeout = parse::timeout(args[1])?;
        return blocking_pop(ctx, keys, max, count, timeout, shape);
    }
    match pop_first(ctx, keys, max, count, false)? {
        Some((key, items)) => Ok(pop_reply(key, items, shape)),
        None => Ok(Reply::NullArray),
    }
}

// --- ZUNION / ZINTER / ZDIFF -------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(target: &mut f64, v: f64, agg: Aggregate) {
    match agg {
        Aggregate::Sum => {
            *target += v;
            // inf + -inf: Redis stores 0 rather than NaN.
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if v < *target {
                *target = v;
            }
        }
        Aggregate::Max => {
            if v > *target {
                *target = v;
            }
        }
    }
}

/// An input of a set operation: sorted sets and plain sets (score 1).
struct Source {
    key: Bytes,
    len: usize,
    weight: f64,
}

/// Look an input up: its length, or WRONGTYPE for anything but a (sorted) set.
fn source_len(ctx: &mut Ctx, key: &[u8]) -> Result<usize, Reply> {
    let len = match ctx.ks.get(key) {
        None => None,
        Some(e) => match e.obj() {
            Some(Value::ZSet(z)) => Some(z.len()),
            Some(Value::Set(s)) => Some(s.len()),
            _ => return Err(Reply::err(WRONGTYPE)),
        },
    };
    ctx.looked_up(key, len.is_some());
    Ok(len.unwrap_or(0))
}

fn source_items(ctx: &mut Ctx, key: &[u8]) -> Vec<(Bytes, f64)> {
    match ctx.ks.peek(key).and_then(|e| e.obj()) {
        Some(Value::ZSet(z)) => z.iter().map(owned_item).collect(),
        Some(Value::Set(s)) => s.iter().map(|m| (Bytes::copy_from_slice(m), 1.0)).collect(),
        _ => Vec::new(),
    }
}

/// Scores of `members` in one input (`None` where absent).
fn source_scores(ctx: &mut Ctx, key: &[u8], members: &[(Bytes, f64)]) -> Vec<Option<f64>> {
    match ctx.ks.peek(key).and_then(|e| e.obj()) {
        Some(Value::ZSet(z)) => members.iter().map(|(m, _)| z.score(m)).collect(),
        Some(Value::Set(s)) => members.iter().map(|(m, _)| s.contains(m).then_some(1.0)).collect(),
        _ => vec![None; members.len()],
    }
}

fn zunionstore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setop_generic(ctx, args, Some(args[1]), 2, SetOp::Union, false)
}
fn zinterstore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setop_generic(ctx, args, Some(args[1]), 2, SetOp::Inter, false)
}
fn zdiffstore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setop_generic(ctx, args, Some(args[1]), 2, SetOp::Diff, false)
}
fn zunion(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setop_generic(ctx, args, None, 1, SetOp::Union, false)
}
fn zinter(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setop_generic(ctx, args, None, 1, SetOp::Inter, false)
}
fn zdiff(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setop_generic(ctx, args, None, 1, SetOp::Diff, false)
}
fn zintercard(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    setop_generic(ctx, args, None, 1, SetOp::Inter, true)
}

/// `zunionInterDiffGenericCommand`.
fn setop_generic(
    ctx: &mut Ctx,
    args: &[&[u8]],
    dst: Option<&[u8]>,
    numkeys_idx: usize,
    op: SetOp,
    card_only: bool,
) -> CmdResult {
    let setnum = parse::int(args[numkeys_idx])?;
    if setnum < 1 {
        let name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
        return Err(Reply::err(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    if setnum as u64 > (args.len() - numkeys_idx - 1) as u64 {
        return Err(parse::syntax());
    }
    let setnum = setnum as usize;
    let mut srcs = Vec::with_capacity(setnum);
    for key in &args[numkeys_idx + 1..numkeys_idx + 1 + setnum] {
        let len = source_len(ctx, key)?;
        srcs.push(Source {
            key: Bytes::copy_from_slice(key),
            len,
            weight: 1.0,
        });
    }
    let mut agg = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0u64;
    let mut j = numkeys_idx + 1 + setnum;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = &args[j];
        if op != SetOp::Diff && !card_only && remaining > setnum && is(a, "weights") {
            j += 1;
            for s in srcs.iter_mut() {
                s.weight = parse_score(args[j]).ok_or_else(|| Reply::err(ERR_WEIGHT))?;
                j += 1;
            }
        } else if op != SetOp::Diff && !card_only && remaining >= 2 && is(a, "aggregate") {
            let v = &args[j + 1];
            agg = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(parse::syntax());
            };
            j += 2;
        } else if dst.is_none() && !card_only && is(a, "withscores") {
            withscores = true;
            j += 1;
        } else if card_only && remaining >= 2 && is(a, "limit") {
            limit = match parse::parse_i64(args[j + 1]) {
                Some(v) if v >= 0 => v as u64,
                _ => return Err(Reply::err(ERR_LIMIT_NEG)),
            };
            j += 2;
        } else {
            return Err(parse::syntax());
        }
    }
    if op != SetOp::Diff {
        // Smallest first: intersections probe the larger sets with the
        // smallest one's members (the order also fixes how sums round).
        srcs.sort_by_key(|s| s.len);
    }
    let result: Vec<(Bytes, f64)> = match op {
        SetOp::Union => {
            let mut acc: hashbrown::HashMap<Bytes, f64, foldhash::fast::RandomState> = Default::default();
            for s in &srcs {
                if s.len == 0 {
                    continue;
                }
                for (m, score) in source_items(ctx, &s.key) {
                    let mut v = s.weight * score;
                    if v.is_nan() {
                        v = 0.0;
                    }
                    match acc.get_mut(&m) {
                        Some(t) => aggregate(t, v, agg),
                        None => {
                            acc.insert(m, v);
                        }
                    }
                }
            }
            acc.into_iter().collect()
        }
        SetOp::Inter => {
            if srcs.is_empty() || srcs[0].len == 0 {
                Vec::new()
            } else {
                let mut cand: Vec<(Bytes, f64)> = source_items(ctx, &srcs[0].key)
                    .into_iter()
                    .map(|(m, s)| {
                        let v = srcs[0].weight * s;
                        (m, if v.is_nan() { 0.0 } else { v })
                    })
                    .collect();
                for s in &srcs[1..] {
                    let scores = source_scores(ctx, &s.key, &cand);
                    cand = cand
                        .into_iter()
                        .zip(scores)
                        .filter_map(|((m, mut t), v)| {
                            let v = v?;
                            aggregate(&mut t, v * s.weight, agg);
                            Some((m, t))
                        })
                        .collect();
                    if cand.is_empty() {
                        break;
                    }
                }
                cand
            }
        }
        SetOp::Diff => {
            if srcs[0].len == 0 {
                Vec::new()
            } else {
                let mut cand = source_items(ctx, &srcs[0].key);
                for s in &srcs[1..] {
                    if s.len == 0 {
                        continue;
                    }
                    let scores = source_scores(ctx, &s.key, &cand);
                    cand = cand
                        .into_iter()
                        .zip(scores)
                        .filter(|(_, v)| v.is_none())
                        .map(|(c, _)| c)
                        .collect();
                    if cand.is_empty() {
                        break;
                    }
                }
                cand
            }
        }
    };
    if card_only {
        let n = result.len() as u64;
        return Ok(Reply::Int(if limit > 0 { n.min(limit) } else { n } as i64));
    }
    if let Some(dst) = dst {
        let event = match op {
            SetOp::Union => "zunionstore",
            SetOp::Inter => "zinterstore",
            SetOp::Diff => "zdiffstore",
        };
        return Ok(Reply::Int(store(ctx, dst, result, event)));
    }
    let mut result = result;
    // Redis builds the result as a sorted set: a small one is a listpack,
    // where -0 is stored as 0.
    let max_member = result.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    if ZSet::fits_listpack(result.len(), max_member, &ctx.limits()) {
        for (_, s) in result.iter_mut() {
            if *s == 0.0 {
                *s = 0.0;
            }
        }
    }
    // As the skiplist orders them: -0 and 0 are the same score.
    result.sort_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(&b.0))
    });
    Ok(scored(ctx.proto(), result, withscores))
}

// --- ZRANDMEMBER -------------------------------------------------------------

fn zrandmember(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() < 3 {
        let Some(z) = read(ctx, args[1])? else {
            return Ok(Reply::Null);
        };
        let r = rand::rng().random_range(0..z.len().max(1));
        return Ok(z.at(r).map_or(Reply::Null, |(m, _)| Reply::bulk(m)));
    }
    let count = match parse::parse_i64(args[2]) {
        Some(i64::MIN) => {
            return Err(Reply::err(
                "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ));
        }
        Some(v) => v,
        None => return Err(Reply::err(parse::ERR_NOT_INT)),
    };
    let withscores = match args.len() {
        3 => false,
        4 if is(args[3], "withscores") => true,
        _ => return Err(parse::syntax()),
    };
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Err(Reply::err(ERR_OUT_OF_RANGE));
    }
    let proto = ctx.proto();
    let Some(z) = read(ctx, args[1])? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let size = z.len();
    if count == 0 || size == 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    let mut rng = rand::rng();
    let pick = |r: usize| z.at(r).map(owned_item);
    // Repetitions allowed (negative count), or a single element.
    if count < 0 || count == 1 {
        let n = count.unsigned_abs();
        if n > MAX_REPLY_ELEMENTS as u64 {
            return Err(Reply::err(ERR_OUT_OF_RANGE));
        }
        let items: Vec<(Bytes, f64)> = (0..n).filter_map(|_| pick(rng.random_range(0..size))).collect();
        return Ok(scored(proto, items, withscores));
    }
    let count = count as usize;
    // The whole set: Redis walks it from the highest element down.
    if count >= size {
        let items: Vec<(Bytes, f64)> = z.iter_from(0, true).map(owned_item).collect();
        return Ok(scored(proto, items, withscores));
    }
    // Distinct random ranks: a partial shuffle of all ranks when many are
    // wanted, rejection sampling when few are.
    let ranks: Vec<usize> = if count * 3 > size {
        let mut all: Vec<usize> = (0..size).collect();
        for i in 0..count {
            let j = rng.random_range(i..size);
            all.swap(i, j);
        }
        all.truncate(count);
        all
    } else {
        let mut seen = std::collections::HashSet::with_capacity(count);
        let mut v = Vec::with_capacity(count);
        while v.len() < count {
            let r = rng.random_range(0..size);
            if seen.insert(r) {
                v.push(r);
            }
        }
        v
    };
    let items: Vec<(Bytes, f64)> = ranks.into_iter().filter_map(pick).collect();
    Ok(scored(proto, items, withscores))
}

// --- ZSCAN -------------------------------------------------------------------

/// `strtoul` as Redis' `parseScanCursorOrReply` uses it: no leading space,
/// an optional sign (`-` wraps around), no overflow; the empty string is 0.
fn scan_cursor(b: &[u8]) -> Option<u64> {
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() {
        return (b.is_empty()).then_some(0);
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Small sets (listpack in Redis) are returned whole, in order, with cursor 0.
/// Large ones are walked in the order of their members' hashes: the cursor is
/// the next hash to visit, which does not move when the set changes, so every
/// member present for the whole scan is returned.
fn zscan(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let cursor = scan_cursor(args[2]).ok_or_else(|| Reply::err(ERR_CURSOR))?;
    let empty = || Reply::Array(vec![Reply::bulk_static("0"), Reply::Array(Vec::new())]);
    let Some(z) = read(ctx, args[1])? else {
        return Ok(empty());
    };
    let mut count = 10usize;
    let mut pattern: Option<&[u8]> = None;
    let mut j = 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        if is(args[j], "count") && left >= 1 {
            let c = parse::int(args[j + 1])?;
            if c < 1 {
                return Err(parse::syntax());
            }
            count = c.min(1 << 20) as usize;
            j += 2;
        } else if is(args[j], "match") && left >= 1 {
            pattern = Some(args[j + 1]);
            j += 2;
        } else {
            return Err(parse::syntax());
        }
    }
    let (next, items) = if z.is_listpack() {
        (0, z.iter().map(owned_item).collect())
    } else {
        // Stepping may build the set's scan index, which changes its memory.
        match write(ctx, args[1])? {
            Some(z) => z.scan(cursor, count),
            None => (0, Vec::new()),
        }
    };
    let mut out = Vec::with_capacity(items.len() * 2);
    for (m, s) in items {
        if pattern.is_some_and(|p| !crate::glob::glob_match(p, &m, false)) {
            continue;
        }
        out.push(Reply::Bulk(m));
        out.push(Reply::bulk(crate::resp::reply::format_double(s)));
    }
    Ok(Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(out),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{Outcome, execute};
    use crate::db::Db;
    use crate::db::set::Set;
    use crate::session::Session;
    use crate::state::State;

    /// Run commands in-process against keys of other types, which the
    /// black-box tests cannot create until those families are merged.
    fn run(state: &State, session: &mut Session, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        match execute(state, session, &args) {
            Outcome::Reply(r) => r,
            Outcome::Block { .. } => panic!("unexpected block"),
            Outcome::Script { .. } | Outcome::AwaitScript => unreachable!("internal sessions run scripts in place"),
        }
    }

    #[test]
    fn plain_sets_as_inputs_and_wrongtype() {
        let state = State::new(Db::new(), crate::config::Config::default());
        let addr = "127.0.0.1:1".parse().expect("addr");
        let handle = std::sync::Arc::new(crate::client::ClientHandle::new(1, addr, addr));
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        let mut session = Session::new(handle, tx, true);
        {
            let mut ks = state.db.lock_all(crate::db::now_ms());
            let mut set = Set::default();
            for m in ["x", "y", "q"] {
                set.insert(m.as_bytes(), &Default::default());
            }
            ks.insert(b"{s}set", Value::Set(set), None);
            ks.set_str(b"{s}str", b"v", crate::db::Expiry::Clear);
        }
        let s = &state;
        let sess = &mut session;
        run(s, sess, &["ZADD", "{s}a", "1", "x", "2", "y", "3", "z"]);
        let bulks = |v: &[&str]| Reply::Array(v.iter().map(Reply::bulk).collect());
        // Set members score 1, times their weight.
        let union = run(
            s,
            sess,
            &["ZUNION", "2", "{s}a", "{s}set", "WEIGHTS", "2", "5", "WITHSCORES"],
        );
        let want = Reply::Array(
            [("q", 5.0), ("z", 6.0), ("x", 7.0), ("y", 9.0)]
                .iter()
                .flat_map(|(m, s)| [Reply::bulk(m), Reply::Double(*s)])
                .collect(),
        );
        assert_eq!(union, want);
        assert_eq!(run(s, sess, &["ZINTER", "2", "{s}a", "{s}set"]), bulks(&["x", "y"]));
        assert_eq!(run(s, sess, &["ZDIFF", "2", "{s}set", "{s}a"]), bulks(&["q"]));
        assert_eq!(run(s, sess, &["ZINTERCARD", "2", "{s}a", "{s}set"]), Reply::Int(2));
        assert_eq!(run(s, sess, &["ZUNIONSTORE", "{s}d", "1", "{s}set"]), Reply::Int(3));
        assert_eq!(run(s, sess, &["ZSCORE", "{s}d", "q"]), Reply::Double(1.0));
        let wrongtype = Reply::err(WRONGTYPE);
        for cmd in [
            &["ZADD", "{s}str", "1", "a"][..],
            &["ZSCORE", "{s}set", "a"],
            &["ZRANGE", "{s}str", "0", "-1"],
            &["ZRANGESTORE", "{s}d", "{s}str", "0", "-1"],
            &["ZPOPMIN", "{s}str", "0"],
            &["ZMPOP", "2", "{s}none", "{s}str", "MIN"],
            &["BZPOPMIN", "{s}str", "0"],
            &["ZUNION", "2", "{s}a", "{s}str"],
            &["ZRANDMEMBER", "{s}str", "2"],
            &["ZSCAN", "{s}str", "0"],
            &["ZREMRANGEBYSCORE", "{s}str", "-inf", "+inf"],
        ] {
            assert_eq!(run(s, sess, cmd), wrongtype, "{cmd:?}");
        }
        // Argument errors come before the type check.
        assert_eq!(
            run(s, sess, &["ZADD", "{s}str", "x", "a"]),
            Reply::err(parse::ERR_NOT_FLOAT)
        );
    }

    #[test]
    fn strtod_like_glibc() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"0x10"), Some(16.0));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"+Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_score(b"1e400"), None, "overflow is ERANGE");
        assert_eq!(parse_score(b"1e-400"), None, "underflow to zero is ERANGE");
        assert_eq!(parse_score(b"0e-400"), Some(0.0));
        assert_eq!(parse_score(b"nan"), None);
        assert_eq!(parse_score(b" 1"), None);
        assert_eq!(parse_score(b"1 "), None);
        assert_eq!(parse_score(b""), None);
        assert_eq!(parse_score(b"1e"), None);
        assert_eq!(parse_score(b".5"), Some(0.5));
        assert_eq!(parse_score(b"5."), Some(5.0));
        assert_eq!(range_item(b"( 1"), Some((1.0, true)));
        assert_eq!(range_item(b""), Some((0.0, false)));
        assert_eq!(range_item(b"("), Some((0.0, true)));
        assert_eq!(range_item(b"1e400"), Some((f64::INFINITY, false)));
        assert_eq!(range_item(b"(nan"), None);
        assert_eq!(range_item(b"[1"), None);
    }

    #[test]
    fn rank_intervals_clamp() {
        assert_eq!(rank_interval(0, -1, 5), (0, 5));
        assert_eq!(rank_interval(-100, 100, 5), (0, 5));
        assert_eq!(rank_interval(3, 2, 5), (0, 0));
        assert_eq!(rank_interval(5, 10, 5), (0, 0));
        assert_eq!(rank_interval(i64::MIN, i64::MAX, 5), (0, 5));
        assert_eq!(rank_interval(-1, -1, 0), (0, 0));
    }

    #[test]
    fn numkeys_positions() {
        let a: Vec<&[u8]> = ["zunionstore", "d", "2", "a", "b", "weights", "1", "2"]
            .iter()
            .map(|s| s.as_bytes())
            .collect();
        assert_eq!(store_keys(&a), vec![1, 3, 4]);
        // More keys claimed than there are arguments: none (as Redis'
        // extractor; the command itself then reports the error).
        let a: Vec<&[u8]> = ["zunion", "99", "a"].iter().map(|s| s.as_bytes()).collect();
        assert!(numkeys_at_1(&a).is_empty());
        let a: Vec<&[u8]> = ["zunionstore", "d", "3", "a"].iter().map(|s| s.as_bytes()).collect();
        assert!(store_keys(&a).is_empty());
        let a: Vec<&[u8]> = ["zunion", "1", "a", "b"].iter().map(|s| s.as_bytes()).collect();
        assert_eq!(numkeys_at_1(&a), vec![2]);
        let a: Vec<&[u8]> = ["zunion", "x", "a"].iter().map(|s| s.as_bytes()).collect();
        assert!(numkeys_at_1(&a).is_empty());
    }
}
