//! Commands of the `list` family, including the blocking pops.
//!
//! Each handler parses its arguments in the order Redis 7.0 does — so that a
//! command with several problems reports the same one as Redis (LRANGE
//! checks its indexes before the key, LINDEX the key before its index) —
//! then applies the change through [`Ctx::ks`] and reports it with
//! [`Ctx::changed`] using Redis' event names. A pop that empties a list also
//! publishes the generic `del` event, as Redis' `listElementsRemoved` does;
//! the empty key itself is deleted by `Keys` when the command ends.
//!
//! Replies copy the elements they show rather than sharing them: sharing a
//! `Bytes` would give the stored element a reference-counted header that
//! memory accounting does not see (popped elements are moved, not copied).
//!
//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) first try
//! to serve themselves exactly like their non-blocking twin. When every key
//! is empty they hand a [`BlockSpec`] to the connection, which re-runs the
//! same command for the client (`ctx.retry`) each time one of its keys is
//! written. A re-run behaves as Redis 7.0's `serveClientsBlockedOnListKey`:
//! it pops only from the key that woke the client (`ctx.woken_by`), and a
//! key that is not a list cannot serve a list waiter, so it is skipped
//! instead of failing the waiter with WRONGTYPE. Inside MULTI/EXEC (and
//! scripts) blocking is denied and the command answers as if it timed out.

use bytes::Bytes;

use super::flags::*;
use super::parse::{self, ERR_INDEX, ERR_NO_SUCH_KEY};
use super::{BlockSpec, CmdResult, CommandSpec, Ctx, KeySpec, one_key};
use crate::db::list::{End, List};
use crate::notify;
use crate::resp::Reply;

const ERR_MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
const ERR_RANK_ZERO: &str = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use \
                             negative to start from the end of the list";
const ERR_COUNT_NEGATIVE: &str = "ERR COUNT can't be negative";
const ERR_MAXLEN_NEGATIVE: &str = "ERR MAXLEN can't be negative";
const ERR_NUMKEYS: &str = "ERR numkeys should be greater than 0";
const ERR_MPOP_COUNT: &str = "ERR count should be greater than 0";

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $complexity:expr,
     $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "list",
            summary: $summary,
            since: $since,
            complexity: $complexity,
            handler: $h,
            subcommands: &[],
        }
    };
}

/// BLPOP/BRPOP: every argument but the first (name) and last (timeout).
const BPOP_KEYS: KeySpec = KeySpec::Range {
    first: 1,
    last: -2,
    step: 1,
};
/// LMOVE-style commands: source and destination.
const MOVE_KEYS: KeySpec = KeySpec::Range {
    first: 1,
    last: 2,
    step: 1,
};
const PUSH_COMPLEXITY: &str =
    "O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.";
const MPOP_COMPLEXITY: &str = "O(N+M) where N is the number of provided keys and M is the number of elements returned.";

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "lpush",
        -3,
        WRITE | DENYOOM | FAST,
        one_key(),
        lpush,
        "1.0.0",
        PUSH_COMPLEXITY,
        "Prepend one or multiple elements to a list"
    ),
    spec!(
        "rpush",
        -3,
        WRITE | DENYOOM | FAST,
        one_key(),
        rpush,
        "1.0.0",
        PUSH_COMPLEXITY,
        "Append one or multiple elements to a list"
    ),
    spec!(
        "lpushx",
        -3,
        WRITE | DENYOOM | FAST,
        one_key(),
        lpushx,
        "2.2.0",
        PUSH_COMPLEXITY,
        "Prepend an element to a list, only if the list exists"
    ),
    spec!(
        "rpushx",
        -3,
        WRITE | DENYOOM | FAST,
        one_key(),
        rpushx,
        "2.2.0",
        PUSH_COMPLEXITY,
        "Append an element to a list, only if the list exists"
    ),
    spec!(
        "lpop",
        -2,
        WRITE | FAST,
        one_key(),
        lpop,
        "1.0.0",
        "O(N) where N is the number of elements returned",
        "Remove and get the first elements in a list"
    ),
    spec!(
        "rpop",
        -2,
        WRITE | FAST,
        one_key(),
        rpop,
        "1.0.0",
        "O(N) where N is the number of elements returned",
        "Remove and get the last elements in a list"
    ),
    spec!(
        "llen",
        2,
        READONLY | FAST,
        one_key(),
        llen,
        "1.0.0",
        "O(1)",
        "Get the length of a list"
    ),
    spec!(
        "lrange",
        4,
        READONLY,
        one_key(),
        lrange,
        "1.0.0",
        "O(S+N) where S is the distance of start offset from HEAD for small lists, from nearest end (HEAD or TAIL) \
         for large lists; and N is the number of elements in the specified range.",
        "Get a range of elements from a list"
    ),
    spec!(
        "lindex",
        3,
        READONLY,
        one_key(),
        lindex,
        "1.0.0",
        "O(N) where N is the number of elements to traverse to get to the element at index. This makes asking for \
         the first or the last element of the list O(1).",
        "Get an element from a list by its index"
    ),
    spec!(
        "lset",
        4,
        WRITE | DENYOOM,
        one_key(),
        lset,
        "1.0.0",
        "O(N) where N is the length of the list. Setting either the first or the last element of the list is O(1).",
        "Set the value of an element in a list by its index"
    ),
    spec!(
        "lrem",
        4,
        WRITE,
        one_key(),
        lrem,
        "1.0.0",
        "O(N+M) where N is the length of the list and M is the number of elements removed.",
        "Remove elements from a list"
    ),
    spec!(
        "ltrim",
        4,
        WRITE,
        one_key(),
        ltrim,
        "1.0.0",
        "O(N) where N is the number of elements to be removed by the operation.",
        "Trim a list to the specified range"
    ),
    spec!(
        "linsert",
        5,
        WRITE | DENYOOM,
        one_key(),
        linsert,
        "2.2.0",
        "O(N) where N is the number of elements to traverse before seeing the value pivot. This means that inserting \
         somewhere on the left end on the list (head) can be considered O(1) and inserting somewhere on the right \
         end (tail) is O(N).",
        "Insert an element before or after another element in a list"
    ),
    spec!(
        "lpos",
        -3,
        READONLY,
        one_key(),
        lpos,
        "6.0.6",
        "O(N) where N is the number of elements in the list, for the average case. When searching for elements near \
         the head or the tail of the list, or when the MAXLEN option is provided, the command may run in constant \
         time.",
        "Return the index of matching elements on a list"
    ),
    spec!(
        "lmove",
        5,
        WRITE | DENYOOM,
        MOVE_KEYS,
        lmove,
        "6.2.0",
        "O(1)",
        "Pop an element from a list, push it to another list and return it"
    ),
    spec!(
        "rpoplpush",
        3,
        WRITE | DENYOOM,
        MOVE_KEYS,
        rpoplpush,
        "1.2.0",
        "O(1)",
        "Remove the last element in a list, prepend it to another list and return it"
    ),
    spec!(
        "lmpop",
        -4,
        WRITE,
        KeySpec::Custom(lmpop_keys),
        lmpop,
        "7.0.0",
        MPOP_COMPLEXITY,
        "Pop elements from a list"
    ),
    spec!(
        "blpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        BPOP_KEYS,
        blpop,
        "2.0.0",
        "O(N) where N is the number of provided keys.",
        "Remove and get the first element in a list, or block until one is available"
    ),
    spec!(
        "brpop",
        -3,
        WRITE | NOSCRIPT | BLOCKING,
        BPOP_KEYS,
        brpop,
        "2.0.0",
        "O(N) where N is the number of provided keys.",
        "Remove and get the last element in a list, or block until one is available"
    ),
    spec!(
        "blmove",
        6,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        MOVE_KEYS,
        blmove,
        "6.2.0",
        "O(1)",
        "Pop an element from a list, push it to another list and return it; or block until one is available"
    ),
    spec!(
        "brpoplpush",
        4,
        WRITE | DENYOOM | NOSCRIPT | BLOCKING,
        MOVE_KEYS,
        brpoplpush,
        "2.2.0",
        "O(1)",
        "Pop an element from a list, push it to another list and return it; or block until one is available"
    ),
    spec!(
        "blmpop",
        -5,
        WRITE | BLOCKING,
        KeySpec::Custom(blmpop_keys),
        blmpop,
        "7.0.0",
        MPOP_COMPLEXITY,
        "Pop elements from a list, or block until one is available"
    ),
];

// ---------------------------------------------------------------------------
// Shared pieces

fn wrongtype(e: &'static str) -> Reply {
    Reply::err(e)
}

/// `LEFT` / `RIGHT` (LMOVE, BLMOVE, LMPOP, BLMPOP); anything else is a syntax error.
fn end_arg(b: &[u8]) -> Result<End, Reply> {
    if parse::is(b, "left") {
        Ok(End::Left)
    } else if parse::is(b, "right") {
        Ok(End::Right)
    } else {
        Err(parse::syntax())
    }
}

fn push_event(end: End) -> &'static str {
    match end {
        End::Left => "lpush",
        End::Right => "rpush",
    }
}

fn pop_event(end: End) -> &'static str {
    match end {
        End::Left => "lpop",
        End::Right => "rpop",
    }
}

/// LEFT / RIGHT, for logged LMOVEs.
fn end_word(end: End) -> &'static [u8] {
    match end {
        End::Left => b"LEFT",
        End::Right => b"RIGHT",
    }
}

/// The non-blocking pop a served blocking pop is logged as.
fn pop_word(end: End) -> &'static [u8] {
    match end {
        End::Left => b"LPOP",
        End::Right => b"RPOP",
    }
}

/// Redis' `getRangeLongFromObjectOrReply` with a custom message: one message
/// for both "not an integer" and "out of range".
fn ranged(b: &[u8], min: i64, msg: &'static str) -> Result<i64, Reply> {
    match parse::parse_i64(b) {
        Some(v) if v >= min => Ok(v),
        _ => Err(Reply::err(msg)),
    }
}

/// Side effects of removing elements from the head or tail (Redis'
/// `listElementsRemoved`): the pop event, then `del` if the list is gone.
fn popped(ctx: &mut Ctx, key: &[u8], end: End, emptied: bool) {
    ctx.changed(key, notify::LIST, pop_event(end));
    if emptied {
        ctx.notify(notify::GENERIC, "del", key);
    }
}

/// The list at `key`, for changing it. A list emptied earlier in the same
/// MULTI/EXEC is only deleted when the transaction ends; until then it counts
/// as absent, as it would be in Redis.
fn list_mut<'k>(ctx: &'k mut Ctx, key: &[u8]) -> Result<Option<&'k mut List>, Reply> {
    Ok(ctx
        .ks
        .get_obj_mut::<List>(key)
        .map_err(wrongtype)?
        .filter(|l| !l.is_empty()))
}

/// The list at `key` for a pop, if it has elements. A re-run for a blocked
/// client treats a non-list as empty (see the module doc).
fn poppable<'k>(ctx: &'k mut Ctx, key: &[u8]) -> Result<Option<&'k mut List>, Reply> {
    let retry = ctx.retry;
    match ctx.ks.get_obj_mut::<List>(key) {
        Ok(Some(l)) if !l.is_empty() => Ok(Some(l)),
        Ok(_) => Ok(None),
        Err(_) if retry => Ok(None),
        Err(e) => Err(wrongtype(e)),
    }
}

/// The keys a pop may take from: all of them, except on a re-run for a
/// blocked client, which is served from the key that woke it (Redis 7.0's
/// `serveClientsBlockedOnListKey`).
fn candidates<'a, 'k>(ctx: &Ctx, keys: &'a [&'k [u8]]) -> &'a [&'k [u8]] {
    match ctx.woken_by.as_ref().and_then(|w| keys.iter().position(|k| *k == w)) {
        Some(i) if ctx.retry => &keys[i..=i],
        _ => keys,
    }
}

/// Nothing to serve: block, or answer `denied` when blocking is not allowed
/// (inside MULTI/EXEC). A re-run that still finds nothing blocks again.
fn block_on(ctx: &mut Ctx, keys: &[&[u8]], timeout: Option<std::time::Duration>, denied: Reply) -> CmdResult {
    if !ctx.retry && !ctx.can_block() {
        return Ok(denied);
    }
    let mut unique: Vec<Bytes> = Vec::with_capacity(keys.len());
    for k in keys {
        if !unique.iter().any(|u| u == k) {
            unique.push(Bytes::copy_from_slice(k));
        }
    }
    ctx.block = Some(BlockSpec {
        keys: unique,
        timeout,
        // Redis answers every list timeout with a null array, even BLMOVE's.
        on_timeout: Reply::NullArray,
        args: None,
    });
    Ok(Reply::Null)
}

fn lmpop_keys(args: &[&[u8]]) -> Vec<usize> {
    super::numkeys_keys(args, 1)
}

fn blmpop_keys(args: &[&[u8]]) -> Vec<usize> {
    super::numkeys_keys(args, 2)
}

/// Clamp a Redis `start..=end` range (negative = from the tail) to a list of
/// `len` elements; `None` when empty.
fn clamp_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let llen = len as i64;
    // `llen + x` cannot overflow: llen >= 0 and x < 0.
    let start = if start < 0 { llen + start } else { start }.max(0);
    let end = if end < 0 { llen + end } else { end };
    if start > end || start >= llen {
        return None;
    }
    Some((start as usize, end.min(llen - 1) as usize))
}

// ---------------------------------------------------------------------------
// Push

fn push(ctx: &mut Ctx, args: &[&[u8]], end: End, only_existing: bool) -> CmdResult {
    let key = args[1];
    // Copied (by the list) so that a stored element does not pin the request buffer.
    let push_all = |list: &mut List| {
        for v in &args[2..] {
            list.push(end, v);
        }
        list.len() as i64
    };
    let len = if only_existing {
        match list_mut(ctx, key)? {
            Some(l) => push_all(l),
            None => return Ok(Reply::Int(0)),
        }
    } else {
        ctx.ks.add_to::<List, _>(key, push_all).map_err(wrongtype)?
    };
    ctx.changed(key, notify::LIST, push_event(end));
    Ok(Reply::Int(len))
}

fn lpush(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    push(ctx, args, End::Left, false)
}

fn rpush(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    push(ctx, args, End::Right, false)
}

fn lpushx(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    push(ctx, args, End::Left, true)
}

fn rpushx(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    push(ctx, args, End::Right, true)
}

// ---------------------------------------------------------------------------
// Pop

/// LPOP/RPOP key [count]: without a count a bulk (or null); with one an array
/// (or a null array for a missing key — checked before the `count 0` case).
fn pop(ctx: &mut Ctx, args: &[&[u8]], end: End) -> CmdResult {
    if args.len() > 3 {
        return Err(Reply::err(format!(
            "ERR wrong number of arguments for '{}' command",
            pop_event(end)
        )));
    }
    let count = match args.get(2) {
        Some(c) => Some(ranged(c, 0, ERR_MUST_BE_POSITIVE)? as usize),
        None => None,
    };
    let key = &args[1];
    let Some(list) = list_mut(ctx, key)? else {
        return Ok(if count.is_some() { Reply::NullArray } else { Reply::Null });
    };
    let reply = match count {
        Some(0) => return Ok(Reply::Array(Vec::new())),
        Some(n) => Reply::bulks(list.pop_many(end, n)),
        None => match list.pop(end) {
            Some(v) => Reply::Bulk(v),
            None => return Ok(Reply::Null),
        },
    };
    let emptied = list.is_empty();
    popped(ctx, key, end, emptied);
    Ok(reply)
}

fn lpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    pop(ctx, args, End::Left)
}

fn rpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    pop(ctx, args, End::Right)
}

// ---------------------------------------------------------------------------
// Reads

/// Run a read against the list at `key` (absent = `None`), counting the
/// keyspace hit or miss as Redis' `lookupKeyRead` does.
fn read_list(ctx: &mut Ctx, key: &[u8], f: impl FnOnce(Option<&List>) -> CmdResult) -> CmdResult {
    let (found, out) = match ctx.ks.get_obj::<List>(key) {
        Ok(l) => {
            // An emptied list counts as absent (see `list_mut`).
            let l = l.filter(|l| !l.is_empty());
            (l.is_some(), f(l))
        }
        Err(e) => (true, Err(wrongtype(e))),
    };
    ctx.looked_up(key, found);
    out
}

fn llen(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    read_list(ctx, args[1], |l| Ok(Reply::Int(l.map_or(0, List::len) as i64)))
}

fn lrange(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let start = parse::int(args[2])?;
    let end = parse::int(args[3])?;
    read_list(ctx, args[1], |l| {
        let Some((l, (s, e))) = l.and_then(|l| Some((l, clamp_range(start, end, l.len())?))) else {
            return Ok(Reply::Array(Vec::new()));
        };
        Ok(Reply::bulk_array(l.range(s, e), e - s + 1))
    })
}

fn lindex(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    read_list(ctx, args[1], |l| {
        let Some(l) = l else {
            return Ok(Reply::Null);
        };
        // The index is checked only once the key is known to be a list.
        let index = parse::int(args[2])?;
        Ok(l.index(index).and_then(|i| l.get(i)).map_or(Reply::Null, Reply::bulk))
    })
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len].
fn lpos(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let mut rank: i64 = 1;
    let mut count: Option<i64> = None;
    let mut maxlen: i64 = 0;
    let mut j = 3;
    while j < args.len() {
        let more = j + 1 < args.len();
        let opt = &args[j];
        if parse::is(opt, "rank") && more {
            j += 1;
            rank = parse::int(args[j])?;
            if rank == 0 {
                return Err(Reply::err(ERR_RANK_ZERO));
            }
        } else if parse::is(opt, "count") && more {
            j += 1;
            count = Some(ranged(args[j], 0, ERR_COUNT_NEGATIVE)?);
        } else if parse::is(opt, "maxlen") && more {
            j += 1;
            maxlen = ranged(args[j], 0, ERR_MAXLEN_NEGATIVE)?;
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }
    // A negative rank searches from the tail. Redis 7.0 negates it in C
    // `long` arithmetic, so RANK -9223372036854775808 stays negative (and
    // then matches from the first hit on); wrapping math reproduces that.
    let from_tail = rank < 0;
    if from_tail {
        rank = rank.wrapping_neg();
    }
    read_list(ctx, args[1], |l| match l {
        None => Ok(if count.is_some() {
            Reply::Array(Vec::new())
        } else {
            Reply::Null
        }),
        Some(list) => Ok(positions(list, args[2], rank, from_tail, count, maxlen)),
    })
}

/// LPOS' search (Redis' loop, including its C `long` arithmetic).
fn positions(list: &List, ele: &[u8], rank: i64, from_tail: bool, count: Option<i64>, maxlen: i64) -> Reply {
    let len = list.len();
    let mut matches: i64 = 0;
    let mut found = Vec::new();
    for scanned in 0..len {
        if maxlen != 0 && scanned as i64 >= maxlen {
            break;
        }
        let idx = if from_tail { len - 1 - scanned } else { scanned };
        if list.get(idx).is_none_or(|v| v != ele) {
            continue;
        }
        matches += 1;
        if matches >= rank {
            found.push(Reply::Int(idx as i64));
            match count {
                None => break,
                Some(c) if c != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= c => break,
                Some(_) => {}
            }
        }
    }
    match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Null),
    }
}

// ---------------------------------------------------------------------------
// In-place edits

fn lset(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let Some(list) = list_mut(ctx, key)? else {
        return Err(Reply::err(ERR_NO_SUCH_KEY));
    };
    let index = parse::int(args[2])?;
    let Some(i) = list.index(index) else {
        return Err(Reply::err(ERR_INDEX));
    };
    list.set(i, args[3]);
    ctx.changed(key, notify::LIST, "lset");
    Ok(Reply::Ok)
}

fn lrem(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let count = parse::int(args[2])?;
    let key = &args[1];
    let Some(list) = list_mut(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let from = if count < 0 { End::Right } else { End::Left };
    let removed = list.remove_matching(args[3], count.unsigned_abs(), from);
    let emptied = list.is_empty();
    if removed > 0 {
        ctx.changed(key, notify::LIST, "lrem");
    }
    if emptied {
        ctx.notify(notify::GENERIC, "del", key);
    }
    Ok(Reply::Int(removed as i64))
}

fn ltrim(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let start = parse::int(args[2])?;
    let end = parse::int(args[3])?;
    let key = &args[1];
    let Some(list) = list_mut(ctx, key)? else {
        return Ok(Reply::Ok);
    };
    let len = list.len();
    let (front, back) = match clamp_range(start, end, len) {
        None => (len, 0),
        Some((s, e)) => (s, len - 1 - e),
    };
    list.trim(front, back);
    let emptied = list.is_empty();
    // As Redis: the event and the modification signal even when nothing was trimmed.
    ctx.changed(key, notify::LIST, "ltrim");
    if emptied {
        ctx.notify(notify::GENERIC, "del", key);
    }
    Ok(Reply::Ok)
}

fn linsert(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let after = if parse::is(args[2], "after") {
        true
    } else if parse::is(args[2], "before") {
        false
    } else {
        return Err(parse::syntax());
    };
    let key = &args[1];
    let Some(list) = list_mut(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let Some(pos) = list.position(args[3]) else {
        return Ok(Reply::Int(-1));
    };
    list.insert(pos + after as usize, args[4]);
    let len = list.len() as i64;
    ctx.changed(key, notify::LIST, "linsert");
    Ok(Reply::Int(len))
}

// ---------------------------------------------------------------------------
// Moves

/// Move one element from `src` to `dst` (Redis' `lmoveGenericCommand`).
/// `Ok(None)` when `src` has nothing to give (`retry` as in [`poppable`]).
fn do_move(ctx: &mut Ctx, src: &[u8], dst: &[u8], from: End, to: End) -> Result<Option<Reply>, Reply> {
    if poppable(ctx, src)?.is_none() {
        return Ok(None);
    }
    // The destination's type is checked before anything is popped.
    if src != dst {
        ctx.ks.get_obj::<List>(dst).map_err(wrongtype)?;
    }
    let Some(list) = ctx.ks.get_obj_mut::<List>(src).map_err(wrongtype)? else {
        return Ok(None);
    };
    let Some(v) = list.pop(from) else {
        return Ok(None);
    };
    let emptied = list.is_empty() && src != dst;
    let reply = Reply::bulk(&v);
    ctx.ks
        .get_obj_mut_or_create::<List>(dst)
        .map_err(wrongtype)?
        .push(to, &v);
    // Redis' order: the push on the destination, then the pop on the source.
    ctx.changed(dst, notify::LIST, push_event(to));
    popped(ctx, src, from, emptied);
    // The blocking forms log the move they made (a replay must not block,
    // and a served waiter's command is not what happened), as Redis 7.0.
    ctx.propagate_args(&[b"LMOVE", src, dst, end_word(from), end_word(to)]);
    Ok(Some(reply))
}

fn lmove(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let from = end_arg(args[3])?;
    let to = end_arg(args[4])?;
    Ok(do_move(ctx, args[1], args[2], from, to)?.unwrap_or(Reply::Null))
}

fn rpoplpush(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(do_move(ctx, args[1], args[2], End::Right, End::Left)?.unwrap_or(Reply::Null))
}

fn blocking_move(ctx: &mut Ctx, args: &[&[u8]], from: End, to: End, timeout: &[u8]) -> CmdResult {
    let timeout = parse::timeout(timeout)?;
    match do_move(ctx, args[1], args[2], from, to)? {
        Some(r) => Ok(r),
        // Denied blocking answers with a null bulk here, unlike the timeout.
        None => block_on(ctx, &args[1..2], timeout, Reply::Null),
    }
}

fn blmove(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let from = end_arg(args[3])?;
    let to = end_arg(args[4])?;
    blocking_move(ctx, args, from, to, args[5])
}

fn brpoplpush(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    blocking_move(ctx, args, End::Right, End::Left, args[3])
}

// ---------------------------------------------------------------------------
// Blocking pops and multi-key pops

fn blocking_pop(ctx: &mut Ctx, args: &[&[u8]], end: End) -> CmdResult {
    let timeout = parse::timeout(args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    for key in candidates(ctx, keys) {
        let Some(list) = poppable(ctx, key)? else {
            continue;
        };
        let Some(v) = list.pop(end) else {
            continue;
        };
        let emptied = list.is_empty();
        popped(ctx, key, end, emptied);
        // The key actually popped, without blocking (Redis 7.0).
        ctx.propagate_args(&[pop_word(end), key]);
        return Ok(Reply::Array(vec![Reply::bulk(key), Reply::Bulk(v)]));
    }
    block_on(ctx, keys, timeout, Reply::NullArray)
}

fn blpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    blocking_pop(ctx, args, End::Left)
}

fn brpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    blocking_pop(ctx, args, End::Right)
}

/// Parsed `numkeys key [key ...] LEFT|RIGHT [COUNT count]`.
struct Mpop<'a> {
    keys: &'a [&'a [u8]],
    end: End,
    count: usize,
}

fn parse_mpop<'a>(args: &'a [&'a [u8]], numkeys_idx: usize) -> Result<Mpop<'a>, Reply> {
    let numkeys = ranged(args[numkeys_idx], 1, ERR_NUMKEYS)?;
    let where_idx = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(numkeys_idx + 1))
        .filter(|&i| i < args.len())
        .ok_or_else(parse::syntax)?;
    let end = end_arg(args[where_idx])?;
    let mut count = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        if count.is_none() && parse::is(args[j], "count") && j + 1 < args.len() {
            j += 1;
            count = Some(ranged(args[j], 1, ERR_MPOP_COUNT)?);
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }
    Ok(Mpop {
        keys: &args[numkeys_idx + 1..where_idx],
        end,
        count: count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX)),
    })
}

/// Pop from the first non-empty key: `[key, [elements...]]`, or `None`.
fn mpop_first(ctx: &mut Ctx, m: &Mpop) -> Result<Option<Reply>, Reply> {
    for key in candidates(ctx, m.keys) {
        let Some(list) = poppable(ctx, key)? else {
            continue;
        };
        let items = list.pop_many(m.end, m.count);
        let emptied = list.is_empty();
        popped(ctx, key, m.end, emptied);
        // LMPOP/BLMPOP log the pop from the key that served (Redis 7.0).
        ctx.propagate_args(&[pop_word(m.end), key, itoa::Buffer::new().format(items.len()).as_bytes()]);
        return Ok(Some(Reply::Array(vec![Reply::bulk(key), Reply::bulks(items)])));
    }
    Ok(None)
}

fn lmpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let m = parse_mpop(args, 1)?;
    Ok(mpop_first(ctx, &m)?.unwrap_or(Reply::NullArray))
}

fn blmpop(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let m = parse_mpop(args, 2)?;
    let timeout = parse::timeout(args[1])?;
    match mpop_first(ctx, &m)? {
        Some(r) => Ok(r),
        None => block_on(ctx, m.keys, timeout, Reply::NullArray),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(v: &[&'a str]) -> Vec<&'a [u8]> {
        v.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn ranges_clamp_like_redis() {
        assert_eq!(clamp_range(0, -1, 3), Some((0, 2)));
        assert_eq!(clamp_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(clamp_range(2, 1, 3), None);
        assert_eq!(clamp_range(3, 5, 3), None);
        assert_eq!(clamp_range(0, -4, 3), None);
        assert_eq!(clamp_range(i64::MIN, i64::MAX, 3), Some((0, 2)));
        assert_eq!(clamp_range(0, 0, 0), None);
    }

    #[test]
    fn numkeys_key_positions() {
        assert_eq!(lmpop_keys(&args(&["lmpop", "2", "a", "b", "left"])), vec![2, 3]);
        // As genericGetKeys: keys even when the direction is missing.
        assert_eq!(lmpop_keys(&args(&["lmpop", "2", "a", "b"])), vec![2, 3]);
        assert!(lmpop_keys(&args(&["lmpop", "3", "a", "b"])).is_empty());
        assert!(lmpop_keys(&args(&["lmpop", "0", "a", "left"])).is_empty());
        assert!(lmpop_keys(&args(&["lmpop", "-1", "a", "left"])).is_empty());
        assert!(lmpop_keys(&args(&["lmpop", "99999999999999999999999", "a"])).is_empty());
        assert_eq!(blmpop_keys(&args(&["blmpop", "0", "1", "k", "left"])), vec![3]);
    }

    #[test]
    fn mpop_parsing() {
        let a = args(&["lmpop", "2", "a", "b", "RIGHT", "count", "5"]);
        let m = parse_mpop(&a, 1).expect("valid LMPOP");
        assert_eq!(m.keys.len(), 2);
        assert_eq!(m.end, End::Right);
        assert_eq!(m.count, 5);
        let a = args(&["lmpop", "9223372036854775807", "a", "left"]);
        assert!(parse_mpop(&a, 1).is_err());
        let a = args(&["lmpop", "1", "a", "left", "count", "1", "count", "2"]);
        assert!(parse_mpop(&a, 1).is_err());
    }
}
