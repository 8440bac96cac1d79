//! Commands of the `set` family, with Redis 7.0.15's replies and errors.
//!
//! The set-algebra commands follow Redis' algorithms step for step (SINTER
//! walks the smallest set; SUNION/SDIFF build the result by adding members
//! one by one to a fresh set that starts as an intset; SDIFF picks the same
//! of its two algorithms), because the result's encoding and, for intsets,
//! its order are visible to clients. Handlers cannot hold two sets at once
//! (each lookup borrows the keyspace), so they copy members out — `Bytes`
//! clones are reference-count bumps.

use bytes::Bytes;
use rand::Rng;

use super::flags::*;
use super::hash::{
    ERR_OUT_OF_RANGE, ERR_RANGE_COUNT, MAX_RANDOM_REPLY, distinct_positions, scan_cursor, scan_matches, scan_opts,
    scan_reply,
};
use super::{CmdResult, CommandSpec, Ctx, KeySpec, all_keys_from, one_key, parse};
use crate::db::Value;
use crate::db::set::Set;
use crate::notify;
use crate::resp::Reply;

const ERR_POSITIVE: &str = "ERR value is out of range, must be positive";
const ERR_NUMKEYS: &str = "ERR numkeys should be greater than 0";
const ERR_NUMKEYS_ARGS: &str = "ERR Number of keys can't be greater than number of args";
const ERR_LIMIT: &str = "ERR LIMIT can't be negative";

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "set",
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
        "sadd",
        -3,
        WRITE | DENYOOM | FAST,
        one_key(),
        sadd,
        "1.0.0",
        "O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.",
        "Add one or more members to a set"
    ),
    spec!(
        "srem",
        -3,
        WRITE | FAST,
        one_key(),
        srem,
        "1.0.0",
        "O(N) where N is the number of members to be removed.",
        "Remove one or more members from a set"
    ),
    spec!(
        "smembers",
        2,
        READONLY,
        one_key(),
        smembers,
        "1.0.0",
        "O(N) where N is the set cardinality.",
        "Get all the members in a set"
    ),
    spec!(
        "sismember",
        3,
        READONLY | FAST,
        one_key(),
        sismember,
        "1.0.0",
        "O(1)",
        "Determine if a given value is a member of a set"
    ),
    spec!(
        "smismember",
        -3,
        READONLY | FAST,
        one_key(),
        smismember,
        "6.2.0",
        "O(N) where N is the number of elements being checked for membership",
        "Returns the membership associated with the given elements for a set"
    ),
    spec!(
        "scard",
        2,
        READONLY | FAST,
        one_key(),
        scard,
        "1.0.0",
        "O(1)",
        "Get the number of members in a set"
    ),
    spec!(
        "spop",
        -2,
        WRITE | FAST,
        one_key(),
        spop,
        "1.0.0",
        "Without the count argument O(1), otherwise O(N) where N is the value of the passed count.",
        "Remove and return one or multiple random members from a set"
    ),
    spec!(
        "srandmember",
        -2,
        READONLY,
        one_key(),
        srandmember,
        "1.0.0",
        "Without the count argument O(1), otherwise O(N) where N is the absolute value of the passed count.",
        "Get one or multiple random members from a set"
    ),
    spec!(
        "smove",
        4,
        WRITE | FAST,
        KeySpec::Range {
            first: 1,
            last: 2,
            step: 1
        },
        smove,
        "1.0.0",
        "O(1)",
        "Move a member from one set to another"
    ),
    spec!(
        "sinter",
        -2,
        READONLY,
        all_keys_from(1),
        sinter,
        "1.0.0",
        "O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets.",
        "Intersect multiple sets"
    ),
    spec!(
        "sintercard",
        -3,
        READONLY,
        KeySpec::Custom(sintercard_keys),
        sintercard,
        "7.0.0",
        "O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets.",
        "Intersect multiple sets and return the cardinality of the result"
    ),
    spec!(
        "sinterstore",
        -3,
        WRITE | DENYOOM,
        all_keys_from(1),
        sinterstore,
        "1.0.0",
        "O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets.",
        "Intersect multiple sets and store the resulting set in a key"
    ),
    spec!(
        "sunion",
        -2,
        READONLY,
        all_keys_from(1),
        sunion,
        "1.0.0",
        "O(N) where N is the total number of elements in all given sets.",
        "Add multiple sets"
    ),
    spec!(
        "sunionstore",
        -3,
        WRITE | DENYOOM,
        all_keys_from(1),
        sunionstore,
        "1.0.0",
        "O(N) where N is the total number of elements in all given sets.",
        "Add multiple sets and store the resulting set in a key"
    ),
    spec!(
        "sdiff",
        -2,
        READONLY,
        all_keys_from(1),
        sdiff,
        "1.0.0",
        "O(N) where N is the total number of elements in all given sets.",
        "Subtract multiple sets"
    ),
    spec!(
        "sdiffstore",
        -3,
        WRITE | DENYOOM,
        all_keys_from(1),
        sdiffstore,
        "1.0.0",
        "O(N) where N is the total number of elements in all given sets.",
        "Subtract multiple sets and store the resulting set in a key"
    ),
    spec!(
        "sscan",
        -3,
        READONLY,
        one_key(),
        sscan,
        "2.8.0",
        "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection..",
        "Incrementally iterate Set elements"
    ),
];

/// A set for reading (keyspace hit/miss counted), or WRONGTYPE.
fn read<'a>(ctx: &'a mut Ctx, key: &[u8]) -> Result<Option<&'a Set>, Reply> {
    let state = ctx.state;
    // A collection emptied earlier in the same transaction is only deleted
    // when EXEC ends: it counts as absent (and cannot be sampled).
    let s = ctx
        .ks
        .get_obj::<Set>(key)
        .map_err(Reply::err)?
        .filter(|s| !s.is_empty());
    super::looked_up(state, &mut ctx.events, key, s.is_some());
    Ok(s)
}

fn bulks<M: AsRef<[u8]>>(members: impl Iterator<Item = M>) -> Vec<Reply> {
    members.map(|m| Reply::bulk(m.as_ref())).collect()
}

fn sadd(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let lim = ctx.limits();
    let added = ctx
        .ks
        .add_to::<Set, _>(args[1], |s| args[2..].iter().filter(|m| s.insert(m, &lim)).count())
        .map_err(Reply::err)?;
    if added > 0 {
        ctx.changed(args[1], notify::SET, "sadd");
    }
    Ok(Reply::Int(added as i64))
}

fn srem(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let Some(s) = ctx.ks.get_obj_mut::<Set>(args[1]).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    let removed = args[2..].iter().filter(|m| s.remove(m)).count();
    let emptied = s.is_empty();
    if removed > 0 {
        ctx.changed(args[1], notify::SET, "srem");
        if emptied {
            ctx.notify(notify::GENERIC, "del", args[1]);
        }
    }
    Ok(Reply::Int(removed as i64))
}

fn smembers(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let s = read(ctx, args[1])?;
    Ok(Reply::Set(s.map_or_else(Vec::new, |s| bulks(s.iter()))))
}

fn sismember(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let s = read(ctx, args[1])?;
    Ok(Reply::Int(s.is_some_and(|s| s.contains(args[2])) as i64))
}

fn smismember(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let s = read(ctx, args[1])?;
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|m| Reply::Int(s.is_some_and(|s| s.contains(m)) as i64))
            .collect(),
    ))
}

fn scard(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let s = read(ctx, args[1])?;
    Ok(Reply::Int(s.map_or(0, Set::len) as i64))
}

/// Members per logged SREM of an SPOP with a count (Redis' batch size).
const SPOP_BATCH: usize = 1024;

fn spop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let count = match args.len() {
        2 => None,
        3 => match parse::parse_i64(args[2]) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return Err(Reply::err(ERR_POSITIVE)),
        },
        _ => return Err(parse::syntax()),
    };
    let key = &args[1];
    // An empty set (emptied earlier in the same EXEC) is absent.
    let Some(s) = ctx
        .ks
        .get_obj_mut::<Set>(key)
        .map_err(Reply::err)?
        .filter(|s| !s.is_empty())
    else {
        return Ok(if count.is_some() {
            Reply::Set(Vec::new())
        } else {
            Reply::Null
        });
    };
    // The random picks are logged as the members removed (SREM) or, when
    // the whole set goes, as DEL: a replay must not pick again (Redis 7.0).
    let mut removed = Vec::new();
    let reply = match count {
        None => {
            let m = s.remove_at(rand::rng().random_range(0..s.len()));
            removed.push(m.clone());
            Reply::Bulk(m)
        }
        Some(0) => return Ok(Reply::Set(Vec::new())),
        Some(n) if n >= s.len() as u64 => {
            // The whole set, in its order, as Redis answers with SUNION.
            let all = bulks(s.iter());
            *s = Set::default();
            Reply::Set(all)
        }
        Some(n) => {
            let mut rng = rand::rng();
            let mut out = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let m = s.remove_at(rng.random_range(0..s.len()));
                removed.push(m.clone());
                out.push(Reply::Bulk(m));
            }
            Reply::Set(out)
        }
    };
    let emptied = s.is_empty();
    ctx.changed(key, notify::SET, "spop");
    if emptied {
        ctx.notify(notify::GENERIC, "del", key);
    }
    if removed.is_empty() {
        ctx.propagate_args(&[b"DEL", key]);
    }
    // Batches keep each logged command bounded, as Redis' SPOP with count.
    for batch in removed.chunks(SPOP_BATCH) {
        let mut cmd = Vec::with_capacity(batch.len() + 2);
        cmd.push(Bytes::from_static(b"SREM"));
        cmd.push(Bytes::copy_from_slice(key));
        cmd.extend(batch.iter().cloned());
        ctx.propagate(cmd);
    }
    Ok(reply)
}

fn srandmember(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let count = match args.len() {
        2 => None,
        3 => {
            let n = parse::int(args[2])?;
            if n == i64::MIN {
                return Err(Reply::err(ERR_RANGE_COUNT));
            }
            Some(n)
        }
        _ => return Err(parse::syntax()),
    };
    let s = read(ctx, args[1])?;
    let Some(count) = count else {
        return Ok(match s {
            Some(s) if !s.is_empty() => Reply::bulk(s.at(rand::rng().random_range(0..s.len()))),
            _ => Reply::Null,
        });
    };
    let Some(s) = s else {
        return Ok(Reply::Array(Vec::new()));
    };
    if count < 0 && count.unsigned_abs() > MAX_RANDOM_REPLY {
        return Err(Reply::err(ERR_OUT_OF_RANGE));
    }
    let len = s.len();
    let out = if count < 0 {
        let mut rng = rand::rng();
        (0..count.unsigned_abs())
            .map(|_| Reply::bulk(s.at(rng.random_range(0..len))))
            .collect()
    } else if count as u64 >= len as u64 {
        bulks(s.iter())
    } else {
        distinct_positions(len, count as usize)
            .into_iter()
            .map(|i| Reply::bulk(s.at(i)))
            .collect()
    };
    Ok(Reply::Array(out))
}

fn smove(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let Some(s) = ctx.ks.get_obj::<Set>(src).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    if src == dst {
        return Ok(Reply::Int(s.contains(member) as i64));
    }
    ctx.ks.get_obj::<Set>(dst).map_err(Reply::err)?;
    let Some(s) = ctx.ks.get_obj_mut::<Set>(src).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    if !s.remove(member) {
        return Ok(Reply::Int(0));
    }
    let emptied = s.is_empty();
    ctx.changed(src, notify::SET, "srem");
    if emptied {
        ctx.notify(notify::GENERIC, "del", src);
    }
    let lim = ctx.limits();
    let d = ctx.ks.get_obj_mut_or_create::<Set>(dst).map_err(Reply::err)?;
    if d.insert(member, &lim) {
        ctx.changed(dst, notify::SET, "sadd");
    }
    Ok(Reply::Int(1))
}

/// Sizes of the source sets (`None` = missing), checking every key's type
/// first as Redis does (WRONGTYPE wins over a missing key anywhere). Each
/// lookup counts a keyspace hit or miss, the STORE variants' too (Redis
/// looks their sources up for reading).
fn source_sizes(ctx: &mut Ctx, keys: &[&[u8]]) -> Result<Vec<Option<usize>>, Reply> {
    let mut sizes = Vec::with_capacity(keys.len());
    for k in keys {
        let state = ctx.state;
        let s = ctx.ks.get_obj::<Set>(k).map_err(Reply::err)?;
        super::looked_up(state, &mut ctx.events, k, s.is_some());
        sizes.push(s.map(Set::len));
    }
    Ok(sizes)
}

/// Members of an existing set, copied out.
fn members(ctx: &mut Ctx, key: &[u8]) -> Vec<Bytes> {
    match ctx.ks.get_obj::<Set>(key) {
        Ok(Some(s)) => s.iter().map(Bytes::copy_from_slice).collect(),
        _ => Vec::new(),
    }
}

/// The intersection, in the order of the smallest set, stopping after
/// `limit` members (0 = no limit). `None` when a key is missing.
fn intersect(ctx: &mut Ctx, keys: &[&[u8]], limit: usize) -> Result<Vec<Bytes>, Reply> {
    let sizes = source_sizes(ctx, keys)?;
    if sizes.iter().any(Option::is_none) {
        return Ok(Vec::new());
    }
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let mut cand = members(ctx, keys[order[0]]);
    for &i in &order[1..] {
        if cand.is_empty() {
            break;
        }
        if let Ok(Some(s)) = ctx.ks.get_obj::<Set>(keys[i]) {
            cand.retain(|m| s.contains(m));
        }
    }
    if limit > 0 {
        cand.truncate(limit);
    }
    Ok(cand)
}

fn sinter(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = intersect(ctx, &args[1..], 0)?;
    Ok(Reply::Set(bulks(r.iter())))
}

/// Key positions of SINTERCARD: `numkeys` keys after it, none when `numkeys`
/// is invalid (the handler then answers with the error).
fn sintercard_keys(args: &[&[u8]]) -> Vec<usize> {
    match args.get(1).and_then(|n| parse::parse_i64(n)) {
        Some(n) if n >= 1 && (n as u64) <= (args.len() as u64).saturating_sub(2) => (2..2 + n as usize).collect(),
        _ => Vec::new(),
    }
}

fn sintercard(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let numkeys = match parse::parse_i64(args[1]) {
        Some(n) if n >= 1 => n as u64,
        _ => return Err(Reply::err(ERR_NUMKEYS)),
    };
    if numkeys > (args.len() - 2) as u64 {
        return Err(Reply::err(ERR_NUMKEYS_ARGS));
    }
    let end = 2 + numkeys as usize;
    let mut limit = 0usize;
    let mut i = end;
    while i < args.len() {
        if parse::is(args[i], "limit") && i + 1 < args.len() {
            limit = match parse::parse_i64(args[i + 1]) {
                Some(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(Reply::err(ERR_LIMIT)),
            };
            i += 2;
        } else {
            return Err(parse::syntax());
        }
    }
    let r = intersect(ctx, &args[2..end], limit)?;
    Ok(Reply::Int(r.len() as i64))
}

/// Store `result` at `dst` (any previous value and TTL are replaced), or
/// delete `dst` when the result is empty; answers the cardinality.
fn store(ctx: &mut Ctx, dst: &[u8], result: Set, event: &'static str) -> CmdResult {
    let n = result.len();
    if n > 0 {
        ctx.ks.insert(dst, Value::Set(result), None);
        ctx.changed(dst, notify::SET, event);
    } else if ctx.ks.remove(dst).is_some() {
        ctx.changed(dst, notify::GENERIC, "del");
    }
    Ok(Reply::Int(n as i64))
}

fn sinterstore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = intersect(ctx, &args[2..], 0)?;
    let lim = ctx.limits();
    let mut result = Set::default();
    for m in r {
        result.insert(&m, &lim);
    }
    store(ctx, args[1], result, "sinterstore")
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Union,
    Diff,
}

/// SUNION/SDIFF as Redis' `sunionDiffGenericCommand`: members are added to
/// (and, for the second SDIFF algorithm, removed from) a fresh set.
fn union_diff(ctx: &mut Ctx, keys: &[&[u8]], op: Op) -> Result<Set, Reply> {
    let sizes = source_sizes(ctx, keys)?;
    let lim = ctx.limits();
    let mut result = Set::default();
    match op {
        Op::Union => {
            for (k, size) in keys.iter().zip(&sizes) {
                if size.is_some() {
                    for m in members(ctx, k) {
                        result.insert(&m, &lim);
                    }
                }
            }
        }
        Op::Diff => {
            let Some(first) = sizes[0] else {
                return Ok(result);
            };
            // Redis' choice: algorithm 1 (check each member of the first set
            // against the others) unless that does clearly more work than
            // algorithm 2 (add the first set, remove every other).
            let present: Vec<usize> = (0..keys.len()).filter(|&i| sizes[i].is_some()).collect();
            let one = (first * present.len()) / 2;
            let two: usize = present.iter().filter_map(|&i| sizes[i]).sum();
            if one <= two {
                let mut others: Vec<usize> = present.into_iter().filter(|&i| i != 0).collect();
                // Largest first: duplicates are found sooner.
                others.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
                let mut cand = members(ctx, keys[0]);
                for &i in &others {
                    // A key named twice subtracts itself.
                    if keys[i] == keys[0] {
                        cand.clear();
                        break;
                    }
                    if let Ok(Some(s)) = ctx.ks.get_obj::<Set>(keys[i]) {
                        cand.retain(|m| !s.contains(m));
                    }
                }
                for m in cand {
                    result.insert(&m, &lim);
                }
            } else {
                for m in members(ctx, keys[0]) {
                    result.insert(&m, &lim);
                }
                for &i in &present[1..] {
                    if result.is_empty() {
                        break;
                    }
                    for m in members(ctx, keys[i]) {
                        result.remove(&m);
                    }
                }
            }
        }
    }
    Ok(result)
}

fn sunion(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = union_diff(ctx, &args[1..], Op::Union)?;
    Ok(Reply::Set(bulks(r.iter())))
}

fn sdiff(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = union_diff(ctx, &args[1..], Op::Diff)?;
    Ok(Reply::Set(bulks(r.iter())))
}

fn sunionstore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = union_diff(ctx, &args[2..], Op::Union)?;
    store(ctx, args[1], r, "sunionstore")
}

fn sdiffstore(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = union_diff(ctx, &args[2..], Op::Diff)?;
    store(ctx, args[1], r, "sdiffstore")
}

fn sscan(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let cursor = scan_cursor(args[2])?;
    let Some(s) = read(ctx, args[1])? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let opts = scan_opts(&args[3..])?;
    let keep = |m: &[u8]| scan_matches(&opts, m);
    if s.is_intset() {
        return Ok(scan_reply(0, bulks(s.iter().filter(|m| keep(m)))));
    }
    // As Redis: visit buckets until `count` members were collected, at most
    // 10×count buckets, filtering afterwards.
    let mut cursor = cursor;
    let mut budget = opts.count.saturating_mul(10);
    let mut collected = Vec::new();
    loop {
        cursor = s.scan_bucket(cursor, |m| collected.push(Bytes::copy_from_slice(m)));
        if cursor == 0 || budget == 0 || collected.len() >= opts.count {
            break;
        }
        budget -= 1;
    }
    Ok(scan_reply(cursor, bulks(collected.iter().filter(|m| keep(m)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(v: &[&'a str]) -> Vec<&'a [u8]> {
        v.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn sintercard_key_positions() {
        assert_eq!(sintercard_keys(&args(&["SINTERCARD", "2", "a", "b"])), vec![2, 3]);
        assert_eq!(sintercard_keys(&args(&["SINTERCARD", "1", "a", "LIMIT", "3"])), vec![2]);
        // Invalid numkeys: no keys, the handler answers with the error.
        assert!(sintercard_keys(&args(&["SINTERCARD", "3", "a", "b"])).is_empty());
        assert!(sintercard_keys(&args(&["SINTERCARD", "0", "a"])).is_empty());
        assert!(sintercard_keys(&args(&["SINTERCARD", "x", "a"])).is_empty());
        assert!(sintercard_keys(&args(&["SINTERCARD", "9223372036854775807", "a"])).is_empty());
    }
}
