//! Stream commands (XADD, XRANGE, XREAD, consumer groups, XINFO ...), with
//! Redis 7.0's argument rules, replies and error texts.
//!
//! Each handler parses its arguments in the order Redis does (so that when
//! several things are wrong the same error wins), then applies the command
//! through [`crate::db::stream::Stream`]. Only changes Redis signals as key
//! modifications (XADD, XDEL, XTRIM, stream creation) go through
//! `Ctx::changed`; XSETID and consumer-group bookkeeping (deliveries, XACK,
//! XCLAIM) count as dirty and emit Redis' events without invalidating WATCH,
//! as in Redis 7.0 (a differential test pins this down).
//!
//! What reaches the write log is the effect, never a clock-dependent
//! command: XADD with the ID it got and an exact `MAXLEN =` for whatever it
//! trimmed, XREADGROUP / XCLAIM / XAUTOCLAIM as the pending entries they
//! set (see `log_pending`), as Redis 7.0 propagates them.
//!
//! Blocking XREAD/XREADGROUP register on their stream keys with `$` already
//! resolved to the stream's last ID (Redis remembers the ID at block time);
//! when re-run for a waiter they serve the first stream that has entries past
//! that ID — or, for a group, past the group's last delivered ID.

use bytes::Bytes;

use super::flags::*;
use super::parse::{self, int, is};
use super::{BlockSpec, CmdResult, CommandSpec, Ctx, KeySpec, one_key};
use crate::db::limits::Limits;
use crate::db::stream::{AddError, AddId, ClaimArgs, EntryRef, Stream, StreamId, Trim, parse_id};
use crate::notify::STREAM;
use crate::resp::Reply;

const ERR_INVALID_ID: &str = "ERR Invalid stream ID specified as stream command argument";
const ERR_ID_TOO_SMALL: &str = "ERR The ID specified in XADD is equal or smaller than the target stream top item";
const ERR_ID_ZERO: &str = "ERR The ID specified in XADD must be greater than 0-0";
const ERR_EXHAUSTED: &str = "ERR The stream has exhausted the last possible ID, unable to add more items";
const ERR_MAXLEN_AND_MINID: &str = "ERR syntax error, MAXLEN and MINID options at the same time are not compatible";
const ERR_START_ID: &str = "ERR invalid start ID for the interval";
const ERR_END_ID: &str = "ERR invalid end ID for the interval";
const ERR_NO_SUCH_KEY: &str = "ERR no such key";
const ERR_BLOCKED_GROUP_GONE: &str = "NOGROUP the consumer group this client was blocked on no longer exists";
const ERR_BLOCKED_KEY_GONE: &str = "UNBLOCKED the stream key no longer exists";
const ERR_ENTRIES_READ: &str = "ERR value for ENTRIESREAD must be positive or -1";
/// XREAD/XREADGROUP served after blocking without COUNT return at most this many.
const BLOCKED_DEFAULT_COUNT: usize = 1000;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "stream",
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

const fn key_at(i: i32) -> KeySpec {
    KeySpec::Range {
        first: i,
        last: i,
        step: 1,
    }
}

pub static COMMANDS: &[CommandSpec] = &[
    spec!(
        "xadd",
        -5,
        WRITE | DENYOOM | FAST,
        one_key(),
        xadd,
        "5.0.0",
        "O(1) when adding a new entry, O(N) when trimming where N being the number of entries evicted.",
        "Appends a new entry to a stream"
    ),
    spec!(
        "xlen",
        2,
        READONLY | FAST,
        one_key(),
        xlen,
        "5.0.0",
        "O(1)",
        "Return the number of entries in a stream"
    ),
    spec!(
        "xrange",
        -4,
        READONLY,
        one_key(),
        xrange,
        "5.0.0",
        "O(N) with N being the number of elements being returned. If N is constant (e.g. always asking for the first 10 elements with COUNT), you can consider it O(1).",
        "Return a range of elements in a stream, with IDs matching the specified IDs interval"
    ),
    spec!(
        "xrevrange",
        -4,
        READONLY,
        one_key(),
        xrevrange,
        "5.0.0",
        "O(N) with N being the number of elements returned. If N is constant (e.g. always asking for the first 10 elements with COUNT), you can consider it O(1).",
        "Return a range of elements in a stream, with IDs matching the specified IDs interval, in reverse order (from greater to smaller IDs) compared to XRANGE"
    ),
    spec!(
        "xread",
        -4,
        READONLY | BLOCKING,
        KeySpec::Custom(xread_keys),
        xread,
        "5.0.0",
        "For each stream mentioned: O(N) with N being the number of elements being returned, it means that XREAD-ing with a fixed COUNT is O(1). Note that when the BLOCK option is used, XADD will pay O(M) time in order to serve the M clients blocked on the stream getting new data.",
        "Return never seen elements in multiple streams, with IDs greater than the ones reported by the caller for each stream. Can block."
    ),
    spec!(
        "xreadgroup",
        -7,
        WRITE | BLOCKING,
        KeySpec::Custom(xread_keys),
        xreadgroup,
        "5.0.0",
        "For each stream mentioned: O(M) with M being the number of elements returned. If M is constant (e.g. always asking for the first 10 elements with COUNT), you can consider it O(1). On the other side when XREADGROUP blocks, XADD will pay the O(N) time in order to serve the N clients blocked on the stream getting new data.",
        "Return new entries from a stream using a consumer group, or access the history of the pending entries for a given consumer. Can block."
    ),
    spec!(
        "xdel",
        -3,
        WRITE | FAST,
        one_key(),
        xdel,
        "5.0.0",
        "O(1) for each single item to delete in the stream, regardless of the stream size.",
        "Removes the specified entries from the stream. Returns the number of items actually deleted, that may be different from the number of IDs passed in case certain IDs do not exist."
    ),
    spec!(
        "xtrim",
        -4,
        WRITE,
        one_key(),
        xtrim,
        "5.0.0",
        "O(N), with N being the number of evicted entries. Constant times are very small however, since entries are organized in macro nodes containing multiple entries that can be released with a single deallocation.",
        "Trims the stream to (approximately if '~' is passed) a certain size"
    ),
    spec!(
        "xsetid",
        -3,
        WRITE | DENYOOM | FAST,
        one_key(),
        xsetid,
        "5.0.0",
        "O(1)",
        "An internal command for replicating stream values"
    ),
    CommandSpec {
        name: "xgroup",
        arity: -2,
        flags: 0,
        keys: KeySpec::None,
        group: "stream",
        summary: "A container for consumer groups commands",
        since: "5.0.0",
        complexity: "Depends on subcommand.",
        handler: xgroup_help,
        subcommands: &[
            spec!(
                "create",
                -5,
                WRITE | DENYOOM,
                key_at(2),
                xgroup_create,
                "5.0.0",
                "O(1)",
                "Create a consumer group."
            ),
            spec!(
                "setid",
                -5,
                WRITE,
                key_at(2),
                xgroup_setid,
                "5.0.0",
                "O(1)",
                "Set a consumer group to an arbitrary last delivered ID value."
            ),
            spec!(
                "destroy",
                4,
                WRITE,
                key_at(2),
                xgroup_destroy,
                "5.0.0",
                "O(N) where N is the number of entries in the group's pending entries list (PEL).",
                "Destroy a consumer group."
            ),
            spec!(
                "createconsumer",
                5,
                WRITE | DENYOOM,
                key_at(2),
                xgroup_createconsumer,
                "6.2.0",
                "O(1)",
                "Create a consumer in a consumer group."
            ),
            spec!(
                "delconsumer",
                5,
                WRITE,
                key_at(2),
                xgroup_delconsumer,
                "5.0.0",
                "O(1)",
                "Delete a consumer from a consumer group."
            ),
            spec!(
                "help",
                2,
                LOADING | STALE,
                KeySpec::None,
                xgroup_help,
                "5.0.0",
                "O(1)",
                "Show helpful text about the different subcommands"
            ),
        ],
    },
    spec!(
        "xack",
        -4,
        WRITE | FAST,
        one_key(),
        xack,
        "5.0.0",
        "O(1) for each message ID processed.",
        "Marks a pending message as correctly processed, effectively removing it from the pending entries list of the consumer group. Return value of the command is the number of messages successfully acknowledged, that is, the IDs we were actually able to resolve in the PEL."
    ),
    spec!(
        "xpending",
        -3,
        READONLY,
        one_key(),
        xpending,
        "5.0.0",
        "O(N) with N being the number of elements returned, so asking for a small fixed number of entries per call is O(1). O(M), where M is the total number of entries scanned when used with the IDLE filter. When the command returns just the summary and the list of consumers is small, it runs in O(1) time; otherwise, an additional O(N) time for iterating every consumer.",
        "Return information and entries from a stream consumer group pending entries list, that are messages fetched but never acknowledged."
    ),
    spec!(
        "xclaim",
        -6,
        WRITE | FAST,
        one_key(),
        xclaim,
        "5.0.0",
        "O(log N) with N being the number of messages in the PEL of the consumer group.",
        "Changes (or acquires) ownership of a message in a consumer group, as if the message was delivered to the specified consumer."
    ),
    spec!(
        "xautoclaim",
        -6,
        WRITE | FAST,
        one_key(),
        xautoclaim,
        "6.2.0",
        "O(1) if COUNT is small.",
        "Changes (or acquires) ownership of messages in a consumer group, as if the messages were delivered to the specified consumer."
    ),
    CommandSpec {
        name: "xinfo",
        arity: -2,
        flags: 0,
        keys: KeySpec::None,
        group: "stream",
        summary: "A container for stream introspection commands",
        since: "5.0.0",
        complexity: "Depends on subcommand.",
        handler: xinfo_help,
        subcommands: &[
            spec!(
                "consumers",
                4,
                READONLY,
                key_at(2),
                xinfo_consumers,
                "5.0.0",
                "O(1)",
                "List the consumers in a consumer group"
            ),
            spec!(
                "groups",
                3,
                READONLY,
                key_at(2),
                xinfo_groups,
                "5.0.0",
                "O(1)",
                "List the consumer groups of a stream"
            ),
            spec!(
                "stream",
                -3,
                READONLY,
                key_at(2),
                xinfo_stream,
                "5.0.0",
                "O(1)",
                "Get information about a stream"
            ),
            spec!(
                "help",
                2,
                LOADING | STALE,
                KeySpec::None,
                xinfo_help,
                "5.0.0",
                "O(1)",
                "Show helpful text about the different subcommands"
            ),
        ],
    },
];

// ---- argument helpers ----

fn strict_id(arg: &[u8]) -> Result<StreamId, Reply> {
    strict_id_seq(arg, 0)
}

fn strict_id_seq(arg: &[u8], missing_seq: u64) -> Result<StreamId, Reply> {
    parse_id(arg, true, missing_seq, false)
        .map(|p| p.id)
        .ok_or_else(|| Reply::err(ERR_INVALID_ID))
}

fn loose_id(arg: &[u8], missing_seq: u64) -> Result<StreamId, Reply> {
    parse_id(arg, false, missing_seq, false)
        .map(|p| p.id)
        .ok_or_else(|| Reply::err(ERR_INVALID_ID))
}

/// An XRANGE/XPENDING/XAUTOCLAIM bound: `(` makes it exclusive (and then
/// `-`/`+` are not allowed).
fn interval_id(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), Reply> {
    if arg.len() > 1 && arg[0] == b'(' {
        Ok((strict_id_seq(&arg[1..], missing_seq)?, true))
    } else {
        Ok((loose_id(arg, missing_seq)?, false))
    }
}

fn start_bound(arg: &[u8]) -> Result<StreamId, Reply> {
    let (id, ex) = interval_id(arg, 0)?;
    if ex {
        id.incr().ok_or_else(|| Reply::err(ERR_START_ID))
    } else {
        Ok(id)
    }
}

fn end_bound(arg: &[u8]) -> Result<StreamId, Reply> {
    let (id, ex) = interval_id(arg, u64::MAX)?;
    if ex {
        id.decr().ok_or_else(|| Reply::err(ERR_END_ID))
    } else {
        Ok(id)
    }
}

fn wrong_args(name: &str) -> Reply {
    Reply::err(format!("ERR wrong number of arguments for '{name}' command"))
}

fn text(b: &[u8]) -> String {
    // Redis formats names with %s: a NUL ends them.
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn nogroup(key: &[u8], group: &[u8], suffix: &str) -> Reply {
    Reply::err(format!(
        "NOGROUP No such key '{}' or consumer group '{}'{suffix}",
        text(key),
        text(group)
    ))
}

fn nogroup_for_key(key: &[u8], group: &[u8]) -> Reply {
    Reply::err(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        text(group),
        text(key)
    ))
}

// ---- reply helpers ----

fn id_reply(id: StreamId) -> Reply {
    Reply::Bulk(id.to_bytes())
}

fn fields_reply(fields: &[Bytes]) -> Reply {
    Reply::Array(fields.iter().map(|f| Reply::Bulk(f.clone())).collect())
}

fn entry_reply(e: &EntryRef) -> Reply {
    Reply::Array(vec![id_reply(e.0), fields_reply(&e.1)])
}

fn entries_reply(entries: &[EntryRef]) -> Reply {
    Reply::Array(entries.iter().map(entry_reply).collect())
}

/// XREAD's per-stream results: an array of `[key, entries]` in RESP2, a map
/// in RESP3.
fn streams_reply(proto: u8, items: Vec<(Bytes, Reply)>) -> Reply {
    if proto >= 3 {
        Reply::Map(items.into_iter().map(|(k, v)| (Reply::Bulk(k), v)).collect())
    } else {
        Reply::Array(
            items
                .into_iter()
                .map(|(k, v)| Reply::Array(vec![Reply::Bulk(k), v]))
                .collect(),
        )
    }
}

fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|s| Reply::status(*s)).collect())
}

// ---- XADD / XTRIM ----

/// Parsed trimming (and, for XADD, ID) options.
struct AddTrimArgs {
    trim: Option<Trim>,
    approx: bool,
    limit: u64,
    nomkstream: bool,
    /// XADD: explicit ID (None = `*`) and the index of the ID argument.
    id: Option<crate::db::stream::ParsedId>,
    id_pos: usize,
}

/// Redis' `streamParseAddOrTrimArgsOrReply`.
fn parse_add_trim(args: &[&[u8]], xadd: bool, lim: &Limits) -> Result<AddTrimArgs, Reply> {
    let mut a = AddTrimArgs {
        trim: None,
        approx: false,
        limit: 0,
        nomkstream: false,
        id: None,
        id_pos: args.len(),
    };
    let mut limit: i64 = 0;
    let mut limit_given = false;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i];
        if xadd && opt == b"*" {
            a.id_pos = i;
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if a.trim.is_some() {
                return Err(Reply::err(ERR_MAXLEN_AND_MINID));
            }
            a.approx = false;
            let next = &args[i + 1];
            if more >= 2 && next == b"~" {
                a.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            if is(opt, "maxlen") {
                let n = int(args[i + 1])?;
                if n < 0 {
                    return Err(Reply::err("ERR The MAXLEN argument must be >= 0."));
                }
                a.trim = Some(Trim::MaxLen(n as u64));
            } else {
                a.trim = Some(Trim::MinId(strict_id(args[i + 1])?));
            }
            i += 1;
        } else if is(opt, "limit") && more > 0 {
            limit = int(args[i + 1])?;
            if limit < 0 {
                return Err(Reply::err("ERR The LIMIT argument must be >= 0."));
            }
            limit_given = true;
            i += 1;
        } else if xadd && is(opt, "nomkstream") {
            a.nomkstream = true;
        } else if xadd {
            a.id = Some(parse_id(opt, true, 0, true).ok_or_else(|| Reply::err(ERR_INVALID_ID))?);
            a.id_pos = i;
            break;
        } else {
            return Err(parse::syntax());
        }
        i += 1;
    }
    if limit != 0 && a.trim.is_none() {
        return Err(Reply::err(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && a.trim.is_none() {
        return Err(Reply::err(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit_given {
        if !a.approx {
            return Err(Reply::err(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
        a.limit = limit as u64;
    } else {
        a.limit = if a.approx { lim.approx_trim_limit() } else { 0 };
    }
    Ok(a)
}

fn xadd(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let lim = ctx.limits();
    let a = parse_add_trim(args, true, &lim)?;
    let field_pos = a.id_pos + 1;
    if field_pos > args.len() || (args.len() - field_pos) < 2 || (args.len() - field_pos) % 2 == 1 {
        return Err(wrong_args("xadd"));
    }
    if let Some(p) = a.id
        && p.seq_given
        && p.id.is_zero()
    {
        return Err(Reply::err(ERR_ID_ZERO));
    }
    let exists = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)?.is_some();
    if !exists && a.nomkstream {
        return Ok(Reply::Null);
    }
    let now = ctx.ks.now;
    let s = ctx.ks.get_obj_mut_or_create::<Stream>(key).map_err(Reply::err)?;
    let add = match a.id {
        None => AddId::Auto,
        Some(p) if !p.seq_given => AddId::AutoSeq(p.id.ms),
        Some(p) => AddId::Exact(p.id),
    };
    // Copied once: the entry and the logged XADD share the copies.
    let fields = crate::cmd::owned(&args[field_pos..]);
    let id = match s.add(add, &fields, now, &lim) {
        Ok(id) => id,
        Err(AddError::Exhausted) => return Err(Reply::err(ERR_EXHAUSTED)),
        Err(AddError::TooSmall) => return Err(Reply::err(ERR_ID_TOO_SMALL)),
    };
    let trimmed = match a.trim {
        Some(t) => s.trim(t, a.approx, a.limit),
        None => 0,
    };
    let len = s.len();
    ctx.changed(key, STREAM, "xadd");
    if trimmed > 0 {
        ctx.notify(STREAM, "xtrim", key);
    }
    // Logged with the ID it got (`*` and `ms-*` depend on the clock and the
    // stream's last ID) and, when it trimmed, with the exact length it left:
    // `~` trimming depends on node layout and LIMIT, which a replay must not
    // re-decide (Redis 7.0 rewrites `~` the same way).
    let mut cmd = Vec::with_capacity(args.len() - field_pos + 6);
    cmd.push(Bytes::from_static(b"XADD"));
    cmd.push(Bytes::copy_from_slice(key));
    if trimmed > 0 {
        cmd.extend(exact_maxlen(len));
    }
    cmd.push(id.to_bytes());
    cmd.extend(fields);
    ctx.propagate(cmd);
    Ok(id_reply(id))
}

/// `MAXLEN = len`: the exact form of a trim that left `len` entries.
fn exact_maxlen(len: usize) -> [Bytes; 3] {
    [
        Bytes::from_static(b"MAXLEN"),
        Bytes::from_static(b"="),
        Bytes::copy_from_slice(itoa::Buffer::new().format(len).as_bytes()),
    ]
}

fn xtrim(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let a = parse_add_trim(args, false, &ctx.limits())?;
    let Some(trim) = a.trim else {
        return Err(parse::syntax());
    };
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    let deleted = s.trim(trim, a.approx, a.limit);
    let len = s.len();
    if deleted > 0 {
        ctx.changed(key, STREAM, "xtrim");
        ctx.dirty += deleted - 1;
        // The exact length left, for the same reason as XADD's trimming.
        let mut cmd = vec![Bytes::from_static(b"XTRIM"), Bytes::copy_from_slice(key)];
        cmd.extend(exact_maxlen(len));
        ctx.propagate(cmd);
    }
    Ok(Reply::Int(deleted as i64))
}

// ---- reads ----

fn xlen(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let len = ctx.ks.get_obj::<Stream>(args[1]).map_err(Reply::err)?.map(Stream::len);
    ctx.looked_up(args[1], len.is_some());
    Ok(Reply::Int(len.unwrap_or(0) as i64))
}

fn xrange(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    range_generic(ctx, args, false)
}

fn xrevrange(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    range_generic(ctx, args, true)
}

fn range_generic(ctx: &mut Ctx, args: &[&[u8]], rev: bool) -> CmdResult {
    let (start_arg, end_arg) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let start = start_bound(start_arg)?;
    let end = end_bound(end_arg)?;
    let mut count: i64 = -1;
    let mut j = 4;
    while j < args.len() {
        if is(args[j], "count") && j + 1 < args.len() {
            count = int(args[j + 1])?.max(0);
            j += 2;
        } else {
            return Err(parse::syntax());
        }
    }
    let (found, reply) = match ctx.ks.get_obj::<Stream>(args[1]).map_err(Reply::err)? {
        None => (false, Reply::Array(Vec::new())),
        Some(_) if count == 0 => (true, Reply::NullArray),
        Some(s) => (true, entries_reply(&s.range(start, end, count.max(0) as usize, rev))),
    };
    ctx.looked_up(args[1], found);
    Ok(reply)
}

/// Key positions of XREAD/XREADGROUP (Redis' `xreadGetKeys`): the first half
/// of the arguments after the STREAMS keyword.
fn xread_keys(args: &[&[u8]]) -> Vec<usize> {
    let mut pos = None;
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if is(a, "block") || is(a, "count") {
            i += 2;
        } else if is(a, "group") {
            i += 3;
        } else if is(a, "noack") {
            i += 1;
        } else {
            if is(a, "streams") {
                pos = Some(i);
            }
            break;
        }
    }
    let Some(pos) = pos else {
        return Vec::new();
    };
    let num = args.len() - pos - 1;
    if num == 0 || !num.is_multiple_of(2) {
        return Vec::new();
    }
    (pos + 1..pos + 1 + num / 2).collect()
}

fn xread(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    read_generic(ctx, args, false)
}

fn xreadgroup(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let r = read_generic(ctx, args, true);
    // What it changed is logged by `log_group_read`; never the read itself,
    // whose result depends on the clock and on the state at replay time.
    if ctx.propagate.is_none() {
        ctx.propagate_nothing();
    }
    r
}

/// What each stream of an XREAD asks for.
#[derive(Clone, Copy)]
enum ReadFrom {
    /// Entries after this ID (XREAD, and XREADGROUP history).
    After(StreamId),
    /// XREADGROUP `>`.
    New,
}

fn read_generic(ctx: &mut Ctx, args: &[&[u8]], grouped: bool) -> CmdResult {
    let mut timeout: Option<i64> = None;
    let mut count: usize = 0;
    let mut streams_arg = 0;
    let mut noack = false;
    let mut group_arg: Option<(Bytes, Bytes)> = None;
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - i - 1;
        let o = &args[i];
        if is(o, "block") && more > 0 {
            if ctx.in_script {
                return Err(Reply::err(format!(
                    "ERR {} command is not allowed with BLOCK option from scripts",
                    String::from_utf8_lossy(args[0])
                )));
            }
            i += 1;
            let t =
                parse::parse_i64(args[i]).ok_or_else(|| Reply::err("ERR timeout is not an integer or out of range"))?;
            if t < 0 {
                return Err(Reply::err(parse::ERR_TIMEOUT_NEG));
            }
            timeout = Some(t);
        } else if is(o, "count") && more > 0 {
            i += 1;
            count = int(args[i])?.max(0) as usize;
        } else if is(o, "streams") && more > 0 {
            streams_arg = i + 1;
            if !(args.len() - streams_arg).is_multiple_of(2) {
                return Err(Reply::err(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            break;
        } else if is(o, "group") && more >= 2 {
            if !grouped {
                return Err(Reply::err(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group_arg = Some((Bytes::copy_from_slice(args[i + 1]), Bytes::copy_from_slice(args[i + 2])));
            i += 2;
        } else if is(o, "noack") {
            if !grouped {
                return Err(Reply::err(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
        } else {
            return Err(parse::syntax());
        }
        i += 1;
    }
    if streams_arg == 0 {
        return Err(parse::syntax());
    }
    if grouped && group_arg.is_none() {
        return Err(Reply::err("ERR Missing GROUP option for XREADGROUP"));
    }
    let group = group_arg.as_ref().map(|(g, c)| (g, c));
    let n = (args.len() - streams_arg) / 2;
    let keys = &args[streams_arg..streams_arg + n];
    let id_args = &args[streams_arg + n..];

    if ctx.retry {
        return serve_waiter(ctx, keys, id_args, group, count, noack);
    }

    let mut from = Vec::with_capacity(n);
    let state = ctx.state;
    for (key, id_arg) in keys.iter().zip(id_args) {
        let s = ctx.ks.get_obj::<Stream>(key).map_err(Reply::err)?;
        // Redis looks each stream up twice (here to check the type and
        // resolve `$`, and again to serve it), and INFO counts both.
        super::looked_up(state, &mut ctx.events, key, s.is_some());
        let last = s.map(|s| s.last_id);
        if let Some((g, _)) = group
            && s.and_then(|s| s.group(g)).is_none()
        {
            return Err(nogroup(key, g, " in XREADGROUP with GROUP option"));
        }
        if id_arg == b"$" {
            if grouped {
                return Err(Reply::err(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
                ));
            }
            from.push(ReadFrom::After(last.unwrap_or(StreamId::ZERO)));
        } else if id_arg == b">" {
            if !grouped {
                return Err(Reply::err(
                    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.",
                ));
            }
            from.push(ReadFrom::New);
        } else {
            from.push(ReadFrom::After(strict_id(id_arg)?));
        }
    }

    let now = ctx.ks.now;
    let proto = ctx.proto();
    let mut out = Vec::new();
    for (key, f) in keys.iter().zip(&from) {
        let found = ctx.ks.get(key).is_some();
        ctx.looked_up(key, found);
        match group {
            None => {
                let ReadFrom::After(gt) = *f else { continue };
                let Some(s) = ctx.ks.get_obj::<Stream>(key).map_err(Reply::err)? else {
                    continue;
                };
                if s.last_valid_id() > gt
                    && let Some(start) = gt.incr()
                {
                    out.push((
                        Bytes::copy_from_slice(key),
                        entries_reply(&s.range(start, StreamId::MAX, count, false)),
                    ));
                }
            }
            Some((g, c)) => {
                let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
                    continue;
                };
                let Some(before) = s.group(g).map(|grp| (grp.last_id, grp.entries_read)) else {
                    continue;
                };
                let group_last = before.0;
                let serve = match f {
                    ReadFrom::After(_) => true,
                    ReadFrom::New => !s.is_empty() && s.last_valid_id() > group_last,
                };
                if !serve {
                    continue;
                }
                // Redis makes (or refreshes) the consumer only when serving.
                let created = s.touch_consumer(g, c, now);
                let (reply, delivered) = group_read(s, g, c, *f, group_last, count, noack, now);
                out.push((Bytes::copy_from_slice(key), reply));
                ctx.dirty += 1;
                if created {
                    ctx.notify(STREAM, "xgroup-createconsumer", key);
                    ctx.dirty += 1;
                }
                log_group_read(ctx, key, g, c, created, before, &delivered);
            }
        }
    }
    if !out.is_empty() {
        return Ok(streams_reply(proto, out));
    }
    let Some(ms) = timeout else {
        return Ok(Reply::NullArray);
    };
    if !ctx.can_block() {
        return Ok(Reply::NullArray);
    }
    // Re-run with `$` resolved to the ID it meant now. Nothing can ever
    // appear between the ID and the stream's last ID (they were deleted), so
    // waiting from the last ID is the same wait; it lets a re-run compare
    // with the last ID as Redis does.
    let mut rewritten = crate::cmd::owned(args);
    for (j, (key, f)) in keys.iter().zip(&from).enumerate() {
        if let ReadFrom::After(id) = f {
            let last = ctx
                .ks
                .get_obj::<Stream>(key)
                .ok()
                .flatten()
                .map_or(StreamId::ZERO, |s| s.last_id);
            rewritten[streams_arg + n + j] = (*id).max(last).to_bytes();
        }
    }
    ctx.block = Some(BlockSpec {
        keys: crate::cmd::owned(keys),
        // Beyond decades a timeout is "forever"; capping keeps timer math sane.
        timeout: (ms > 0 && ms < 1 << 40).then(|| std::time::Duration::from_millis(ms as u64)),
        on_timeout: Reply::NullArray,
        args: Some(rewritten),
    });
    Ok(Reply::Null)
}

/// Serve one stream of an XREADGROUP: new entries (`>`) or the consumer's
/// pending history after an ID. Also returns the IDs whose pending entry
/// it created or updated.
#[allow(clippy::too_many_arguments)]
fn group_read(
    s: &mut Stream,
    g: &[u8],
    c: &Bytes,
    from: ReadFrom,
    group_last: StreamId,
    count: usize,
    noack: bool,
    now: u64,
) -> (Reply, Vec<StreamId>) {
    match from {
        ReadFrom::New => {
            let Some(start) = group_last.incr() else {
                return (Reply::Array(Vec::new()), Vec::new());
            };
            let entries = s.read_group_new(g, c, start, count, noack, now);
            let ids = if noack {
                Vec::new()
            } else {
                entries.iter().map(|e| e.0).collect()
            };
            (entries_reply(&entries), ids)
        }
        ReadFrom::After(id) => {
            let Some(start) = id.incr() else {
                return (Reply::Array(Vec::new()), Vec::new());
            };
            let hist = s.read_group_history(g, c, start, count, now);
            // Only entries that still exist are delivered again (and counted).
            let ids = hist.iter().filter(|(_, f)| f.is_some()).map(|(id, _)| *id).collect();
            let reply = Reply::Array(
                hist.iter()
                    .map(|(id, f)| {
                        Reply::Array(vec![id_reply(*id), f.as_deref().map_or(Reply::NullArray, fields_reply)])
                    })
                    .collect(),
            );
            (reply, ids)
        }
    }
}

// ---- write log forms of consumer-group changes ----
//
// Consumer-group state changes depend on the clock (delivery times) and on
// what the stream held when a read ran, so they are logged as their effect,
// the way Redis 7.0 propagates them: each pending entry as an XCLAIM that
// sets it exactly (owner, delivery time, delivery count), the group's
// position as XGROUP SETID with ENTRIESREAD, consumer creation as XGROUP
// CREATECONSUMER. What stays clock-dependent, as in Redis, is a consumer's
// seen-time: no command sets it explicitly.

/// Log the state pending entry `id` of `group` has now: an XCLAIM with
/// FORCE (creates it if needed) and JUSTID (does not count a delivery), or
/// an XACK when it is no longer pending.
fn log_pending(ctx: &mut Ctx, key: &[u8], group: &[u8], id: StreamId) {
    let nack = ctx
        .ks
        .get_obj::<Stream>(key)
        .ok()
        .flatten()
        .and_then(|s| s.group(group))
        .and_then(|g| g.pel.get(&id))
        .map(|n| (n.consumer.clone(), n.delivery_time, n.delivery_count));
    let id = id.to_bytes();
    match nack {
        Some((consumer, time, count)) => ctx.propagate_args(&[
            b"XCLAIM",
            key,
            group,
            &consumer,
            b"0",
            &id,
            b"TIME",
            itoa::Buffer::new().format(time).as_bytes(),
            b"RETRYCOUNT",
            itoa::Buffer::new().format(count).as_bytes(),
            b"FORCE",
            b"JUSTID",
        ]),
        None => ctx.propagate_args(&[b"XACK", key, group, &id]),
    }
}

/// A group's position: last delivered ID and entries-read counter.
fn group_position(ctx: &mut Ctx, key: &[u8], group: &[u8]) -> Option<(StreamId, i64)> {
    let s = ctx.ks.get_obj::<Stream>(key).ok().flatten()?;
    s.group(group).map(|g| (g.last_id, g.entries_read))
}

/// Log the group's position if it moved from `before`.
fn log_group_position(ctx: &mut Ctx, key: &[u8], group: &[u8], before: (StreamId, i64)) {
    let Some((last, read)) = group_position(ctx, key, group) else {
        return;
    };
    if (last, read) == before {
        return;
    }
    ctx.propagate_args(&[
        b"XGROUP",
        b"SETID",
        key,
        group,
        &last.to_bytes(),
        b"ENTRIESREAD",
        itoa::Buffer::new().format(read).as_bytes(),
    ]);
}

/// Log what one stream of an XREADGROUP changed.
fn log_group_read(
    ctx: &mut Ctx,
    key: &[u8],
    group: &[u8],
    consumer: &[u8],
    created: bool,
    before: (StreamId, i64),
    delivered: &[StreamId],
) {
    if created {
        ctx.propagate_args(&[b"XGROUP", b"CREATECONSUMER", key, group, consumer]);
    }
    for &id in delivered {
        log_pending(ctx, key, group, id);
    }
    log_group_position(ctx, key, group, before);
}

/// Re-run of a blocked XREAD/XREADGROUP: serve the first stream with entries
/// past what the client waits for, or keep waiting.
fn serve_waiter(
    ctx: &mut Ctx,
    keys: &[&[u8]],
    id_args: &[&[u8]],
    group: Option<(&Bytes, &Bytes)>,
    count: usize,
    noack: bool,
) -> CmdResult {
    let count = if count == 0 { BLOCKED_DEFAULT_COUNT } else { count };
    let now = ctx.ks.now;
    let proto = ctx.proto();
    for (key, id_arg) in keys.iter().zip(id_args) {
        match group {
            None => {
                let Ok(Some(s)) = ctx.ks.get_obj::<Stream>(key) else {
                    continue;
                };
                let Ok(gt) = strict_id(id_arg) else { continue };
                // As Redis: the last ID moved (the new entries may already be
                // trimmed away, which answers an empty list).
                if s.last_id > gt
                    && let Some(start) = gt.incr()
                {
                    let entries = entries_reply(&s.range(start, StreamId::MAX, count, false));
                    return Ok(streams_reply(proto, vec![(Bytes::copy_from_slice(key), entries)]));
                }
            }
            Some((g, c)) => {
                let Ok(Some(s)) = ctx.ks.get_obj_mut::<Stream>(key) else {
                    return Err(Reply::err(ERR_BLOCKED_KEY_GONE));
                };
                let Some(before) = s.group(g).map(|grp| (grp.last_id, grp.entries_read)) else {
                    return Err(Reply::err(ERR_BLOCKED_GROUP_GONE));
                };
                let last = before.0;
                if s.last_valid_id() > last {
                    let created = s.touch_consumer(g, c, now);
                    let (entries, delivered) = group_read(s, g, c, ReadFrom::New, last, count, noack, now);
                    if created {
                        ctx.notify(STREAM, "xgroup-createconsumer", key);
                    }
                    ctx.dirty += 1;
                    log_group_read(ctx, key, g, c, created, before, &delivered);
                    return Ok(streams_reply(proto, vec![(Bytes::copy_from_slice(key), entries)]));
                }
            }
        }
    }
    // Still nothing: keep waiting (the server keeps the original spec).
    ctx.block = Some(BlockSpec {
        keys: crate::cmd::owned(keys),
        timeout: None,
        on_timeout: Reply::NullArray,
        args: None,
    });
    Ok(Reply::Null)
}

// ---- writes ----

fn xdel(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    if ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)?.is_none() {
        return Ok(Reply::Int(0));
    }
    let ids = args[2..].iter().map(|a| strict_id(a)).collect::<Result<Vec<_>, _>>()?;
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    let deleted = s.delete(&ids);
    if deleted > 0 {
        ctx.changed(key, STREAM, "xdel");
        ctx.dirty += deleted as u64 - 1;
    }
    Ok(Reply::Int(deleted as i64))
}

fn xsetid(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let id = strict_id(args[2])?;
    let mut entries_added: Option<i64> = None;
    let mut max_deleted: Option<StreamId> = None;
    let mut i = 3;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if is(args[i], "entriesadded") && more > 0 {
            let n = int(args[i + 1])?;
            if n < 0 {
                return Err(Reply::err("ERR entries_added must be positive"));
            }
            entries_added = Some(n);
        } else if is(args[i], "maxdeletedid") && more > 0 {
            let m = strict_id(args[i + 1])?;
            if id < m {
                return Err(Reply::err(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
            max_deleted = Some(m);
        } else {
            return Err(parse::syntax());
        }
        i += 2;
    }
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Err(Reply::err(ERR_NO_SUCH_KEY));
    };
    if !s.is_empty() {
        if id < s.last_valid_id() {
            return Err(Reply::err(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if let Some(n) = entries_added
            && (s.len() as u64) > n as u64
        {
            return Err(Reply::err(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    if id < s.max_deleted_id {
        return Err(Reply::err(
            "ERR The ID specified in XSETID is smaller than current max_deleted_entry_id",
        ));
    }
    s.set_meta(id, entries_added, max_deleted.filter(|m| !m.is_zero()));
    // Redis 7.0 does not signal XSETID as a key modification (WATCH survives it).
    ctx.dirty += 1;
    ctx.notify(STREAM, "xsetid", key);
    Ok(Reply::Ok)
}

// ---- XGROUP ----

/// Parse `[MKSTREAM] [ENTRIESREAD n]` (CREATE) or `[ENTRIESREAD n]` (SETID).
fn group_options(args: &[&[u8]], allow_mkstream: bool) -> Result<(bool, i64), Reply> {
    let mut mkstream = false;
    let mut entries_read = -1;
    let mut i = 5;
    while i < args.len() {
        if allow_mkstream && is(args[i], "mkstream") {
            mkstream = true;
            i += 1;
        } else if is(args[i], "entriesread") && i + 1 < args.len() {
            entries_read = int(args[i + 1])?;
            if entries_read < 0 && entries_read != -1 {
                return Err(Reply::err(ERR_ENTRIES_READ));
            }
            i += 2;
        } else {
            return Err(super::subcommand_syntax(args));
        }
    }
    Ok((mkstream, entries_read))
}

const ERR_XGROUP_NO_KEY: &str = "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.";

/// The checks every XGROUP subcommand but HELP makes: the key must be a
/// stream (unless MKSTREAM) and, for some, the group must exist.
fn group_preamble(ctx: &mut Ctx, args: &[&[u8]], mkstream: bool, need_group: bool) -> Result<bool, Reply> {
    let s = ctx.ks.get_obj::<Stream>(args[2]).map_err(Reply::err)?;
    if !mkstream {
        let Some(s) = s else {
            return Err(Reply::err(ERR_XGROUP_NO_KEY));
        };
        if need_group && s.group(args[3]).is_none() {
            return Err(nogroup_for_key(args[2], args[3]));
        }
    }
    Ok(s.is_some())
}

fn xgroup_create(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (mkstream, entries_read) = group_options(args, true)?;
    let exists = group_preamble(ctx, args, mkstream, false)?;
    if args.len() > 8 {
        return Err(super::subcommand_syntax(args));
    }
    let key = &args[2];
    let id = if args[4] == b"$" {
        ctx.ks
            .get_obj::<Stream>(key)
            .ok()
            .flatten()
            .map_or(StreamId::ZERO, |s| s.last_id)
    } else {
        strict_id(args[4])?
    };
    let s = ctx.ks.get_obj_mut_or_create::<Stream>(key).map_err(Reply::err)?;
    let created = s.create_group(&Bytes::copy_from_slice(args[3]), id, entries_read);
    if !created {
        return Err(Reply::err("BUSYGROUP Consumer Group name already exists"));
    }
    if exists {
        ctx.dirty += 1;
        ctx.notify(STREAM, "xgroup-create", key);
    } else {
        // MKSTREAM made the key: a modification Redis signals.
        ctx.changed(key, STREAM, "xgroup-create");
    }
    Ok(Reply::Ok)
}

fn xgroup_setid(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (_, entries_read) = group_options(args, false)?;
    group_preamble(ctx, args, false, true)?;
    if args.len() != 5 && args.len() != 7 {
        return Err(super::subcommand_syntax(args));
    }
    let key = &args[2];
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Err(Reply::err(ERR_XGROUP_NO_KEY));
    };
    let id = if args[4] == b"$" {
        s.last_id
    } else {
        loose_id(args[4], 0)?
    };
    s.set_group_id(args[3], id, entries_read);
    ctx.dirty += 1;
    ctx.notify(STREAM, "xgroup-setid", key);
    Ok(Reply::Ok)
}

fn xgroup_destroy(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    group_preamble(ctx, args, false, false)?;
    let key = &args[2];
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    if !s.destroy_group(args[3]) {
        return Ok(Reply::Int(0));
    }
    ctx.dirty += 1;
    ctx.notify(STREAM, "xgroup-destroy", key);
    // Clients blocked in XREADGROUP on this group must get NOGROUP (Redis'
    // signalKeyAsReady, which does not invalidate WATCH).
    if ctx.state.blocking.any() && !ctx.ready.iter().any(|k| k == key) {
        ctx.ready.push(Bytes::copy_from_slice(key));
    }
    Ok(Reply::Int(1))
}

fn xgroup_createconsumer(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    group_preamble(ctx, args, false, true)?;
    let key = &args[2];
    let now = ctx.ks.now;
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Err(Reply::err(ERR_XGROUP_NO_KEY));
    };
    let created = s.create_consumer(args[3], &Bytes::copy_from_slice(args[4]), now);
    if created {
        ctx.dirty += 1;
        ctx.notify(STREAM, "xgroup-createconsumer", key);
    }
    Ok(Reply::Int(created as i64))
}

fn xgroup_delconsumer(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    group_preamble(ctx, args, false, true)?;
    let key = &args[2];
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Err(Reply::err(ERR_XGROUP_NO_KEY));
    };
    let pending = s.delete_consumer(args[3], args[4]);
    if pending.is_some() {
        ctx.dirty += 1;
        ctx.notify(STREAM, "xgroup-delconsumer", key);
    }
    Ok(Reply::Int(pending.unwrap_or(0) as i64))
}

fn xgroup_help(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() == 1 {
        return Err(wrong_args("xgroup"));
    }
    Ok(help(&[
        "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CREATE <key> <groupname> <id|$> [option]",
        "    Create a new consumer group. Options are:",
        "    * MKSTREAM",
        "      Create the empty stream if it does not exist.",
        "    * ENTRIESREAD entries_read",
        "      Set the group's entries_read counter (internal use).",
        "CREATECONSUMER <key> <groupname> <consumer>",
        "    Create a new consumer in the specified group.",
        "DELCONSUMER <key> <groupname> <consumer>",
        "    Remove the specified consumer.",
        "DESTROY <key> <groupname>",
        "    Remove the specified group.",
        "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
        "    Set the current group ID and entries_read counter.",
        "HELP",
        "    Prints this help.",
    ]))
}

// ---- pending entries ----

fn xack(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let has_group = match ctx.ks.get_obj::<Stream>(key).map_err(Reply::err)? {
        Some(s) => s.group(args[2]).is_some(),
        None => false,
    };
    if !has_group {
        return Ok(Reply::Int(0));
    }
    let ids = args[3..].iter().map(|a| strict_id(a)).collect::<Result<Vec<_>, _>>()?;
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Ok(Reply::Int(0));
    };
    let acked = s.ack(args[2], &ids);
    ctx.dirty += acked as u64;
    Ok(Reply::Int(acked as i64))
}

fn xpending(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let n = args.len();
    if n != 3 && !(6..=9).contains(&n) {
        return Err(parse::syntax());
    }
    let mut range = None;
    let mut consumer: Option<&[u8]> = None;
    let mut min_idle: i64 = 0;
    if n >= 6 {
        let mut start_idx = 3;
        if is(args[3], "idle") {
            min_idle = int(args[4])?;
            if n < 8 {
                return Err(parse::syntax());
            }
            start_idx += 2;
        }
        let count = int(args[start_idx + 2])?.max(0);
        let start = start_bound(args[start_idx])?;
        let end = end_bound(args[start_idx + 1])?;
        if start_idx + 3 < n {
            consumer = Some(args[start_idx + 3]);
        }
        range = Some((start, end, count as u64));
    }
    let key = &args[1];
    let now = ctx.ks.now as i64;
    let Some(s) = ctx.ks.get_obj::<Stream>(key).map_err(Reply::err)? else {
        return Err(nogroup(key, args[2], ""));
    };
    let Some(g) = s.group(args[2]) else {
        return Err(nogroup(key, args[2], ""));
    };
    let Some((start, end, mut count)) = range else {
        if g.pel.is_empty() {
            return Ok(Reply::Array(vec![
                Reply::Int(0),
                Reply::Null,
                Reply::Null,
                Reply::NullArray,
            ]));
        }
        let first = g.pel.keys().next().copied().unwrap_or_default();
        let last = g.pel.keys().next_back().copied().unwrap_or_default();
        let owners = g
            .consumers
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(name, c)| {
                Reply::Array(vec![
                    Reply::Bulk(name.clone()),
                    Reply::Bulk(parse::i64_bytes(c.pel.len() as i64)),
                ])
            })
            .collect();
        return Ok(Reply::Array(vec![
            Reply::Int(g.pel.len() as i64),
            id_reply(first),
            id_reply(last),
            Reply::Array(owners),
        ]));
    };
    let ids: Box<dyn Iterator<Item = StreamId>> = match consumer {
        Some(c) => match g.consumers.get(c) {
            Some(c) => Box::new(c.pel.range(start..).copied()),
            None => return Ok(Reply::Array(Vec::new())),
        },
        None => Box::new(g.pel.range(start..).map(|(k, _)| *k)),
    };
    let mut out = Vec::new();
    for id in ids {
        if count == 0 || id > end {
            break;
        }
        let Some(nack) = g.pel.get(&id) else { continue };
        let idle = now.wrapping_sub(nack.delivery_time);
        if min_idle != 0 && idle < min_idle {
            continue;
        }
        count -= 1;
        out.push(Reply::Array(vec![
            id_reply(id),
            Reply::Bulk(nack.consumer.clone()),
            Reply::Int(idle.max(0)),
            Reply::Int(nack.delivery_count as i64),
        ]));
    }
    Ok(Reply::Array(out))
}

fn claimed_reply(items: Vec<(StreamId, Option<Box<[Bytes]>>)>) -> Reply {
    Reply::Array(
        items
            .into_iter()
            .map(|(id, f)| match f {
                Some(f) => entry_reply(&(id, f)),
                None => id_reply(id),
            })
            .collect(),
    )
}

/// A pending entry's owner, delivery time and count (`None`: not pending).
fn pending_state(s: &Stream, group: &[u8], id: StreamId) -> Option<(Bytes, i64, u64)> {
    let n = s.group(group)?.pel.get(&id)?;
    Some((n.consumer.clone(), n.delivery_time, n.delivery_count))
}

/// Log the pending entries an XCLAIM/XAUTOCLAIM changed and the group's
/// position if it moved; nothing else of the command (its own arguments
/// would redo the idle-time checks at replay time).
fn log_claims(
    ctx: &mut Ctx,
    key: &[u8],
    group: &[u8],
    changed: std::collections::BTreeSet<StreamId>,
    before: Option<(StreamId, i64)>,
) {
    for id in changed {
        log_pending(ctx, key, group, id);
    }
    if let Some(before) = before {
        log_group_position(ctx, key, group, before);
    }
    if ctx.propagate.is_none() {
        ctx.propagate_nothing();
    }
}

fn xclaim(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let has_group = match ctx.ks.get_obj::<Stream>(key).map_err(Reply::err)? {
        Some(s) => s.group(args[2]).is_some(),
        None => false,
    };
    if !has_group {
        return Err(nogroup(key, args[2], ""));
    }
    let min_idle = parse::parse_i64(args[4])
        .ok_or_else(|| Reply::err("ERR Invalid min-idle-time argument for XCLAIM"))?
        .max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < args.len() {
        match parse_id(args[j], true, 0, false) {
            Some(p) => ids.push(p.id),
            None => break,
        }
        j += 1;
    }
    let now = ctx.ks.now as i64;
    let mut delivery: Option<i64> = None;
    let mut retry: Option<i64> = None;
    let (mut force, mut justid) = (false, false);
    let mut last_id = StreamId::ZERO;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j];
        let num = |b: &[u8], what: &str| {
            parse::parse_i64(b).ok_or_else(|| Reply::err(format!("ERR Invalid {what} option argument for XCLAIM")))
        };
        if is(opt, "force") {
            force = true;
        } else if is(opt, "justid") {
            justid = true;
        } else if is(opt, "idle") && more > 0 {
            j += 1;
            delivery = Some(now.wrapping_sub(num(args[j], "IDLE")?));
        } else if is(opt, "time") && more > 0 {
            j += 1;
            delivery = Some(num(args[j], "TIME")?);
        } else if is(opt, "retrycount") && more > 0 {
            j += 1;
            retry = Some(num(args[j], "RETRYCOUNT")?);
        } else if is(opt, "lastid") && more > 0 {
            j += 1;
            last_id = strict_id(args[j])?;
        } else {
            return Err(Reply::err(format!("ERR Unrecognized XCLAIM option '{}'", text(opt))));
        }
        j += 1;
    }
    let delivery_time = match delivery {
        Some(t) if (0..=now).contains(&t) => t,
        _ => now,
    };
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Err(nogroup(key, args[2], ""));
    };
    let before = s.group(args[2]).map(|g| (g.last_id, g.entries_read));
    let pending_before: Vec<_> = ids.iter().map(|id| pending_state(s, args[2], *id)).collect();
    if let Some(g) = s.group(args[2])
        && last_id > g.last_id
    {
        let read = g.entries_read;
        s.set_group_id(args[2], last_id, read);
        ctx.dirty += 1;
    }
    let had_consumer = s.group(args[2]).is_some_and(|g| g.consumers.contains_key(args[3]));
    let claimed = s.claim(
        args[2],
        &ids,
        &ClaimArgs {
            consumer: &Bytes::copy_from_slice(args[3]),
            min_idle,
            delivery_time,
            retry_count: retry.filter(|r| *r >= 0).map(|r| r as u64),
            force,
            justid,
            now: now as u64,
        },
    );
    let has_consumer = s.group(args[2]).is_some_and(|g| g.consumers.contains_key(args[3]));
    // Every requested entry whose pending state changed (claimed, or
    // dropped because the entry is gone) is logged as that state.
    let changed: std::collections::BTreeSet<StreamId> = ids
        .iter()
        .zip(pending_before)
        .filter(|(id, b)| pending_state(s, args[2], **id) != *b)
        .map(|(id, _)| *id)
        .collect();
    ctx.dirty += claimed.len() as u64;
    if !had_consumer && has_consumer {
        ctx.notify(STREAM, "xgroup-createconsumer", key);
    }
    log_claims(ctx, key, args[2], changed, before);
    Ok(claimed_reply(claimed))
}

fn xautoclaim(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let key = &args[1];
    let min_idle = parse::parse_i64(args[4])
        .ok_or_else(|| Reply::err("ERR Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0);
    let start = start_bound(args[5])?;
    let mut count: usize = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if is(args[j], "count") && more > 0 {
            const MAX_COUNT: i64 = i64::MAX / 16;
            match parse::parse_i64(args[j + 1]) {
                Some(c) if (1..=MAX_COUNT).contains(&c) => count = c as usize,
                _ => return Err(Reply::err("ERR COUNT must be > 0")),
            }
            j += 1;
        } else if is(args[j], "justid") {
            justid = true;
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }
    let now = ctx.ks.now;
    let Some(s) = ctx.ks.get_obj_mut::<Stream>(key).map_err(Reply::err)? else {
        return Err(nogroup(key, args[2], ""));
    };
    let Some(g) = s.group(args[2]) else {
        return Err(nogroup(key, args[2], ""));
    };
    let had_consumer = g.consumers.contains_key(args[3]);
    let before = Some((g.last_id, g.entries_read));
    let r = s.autoclaim(
        args[2],
        &Bytes::copy_from_slice(args[3]),
        min_idle,
        start,
        count,
        justid,
        now,
    );
    let has_consumer = s.group(args[2]).is_some_and(|g| g.consumers.contains_key(args[3]));
    ctx.dirty += (r.claimed.len() + r.deleted.len()) as u64;
    if !had_consumer && has_consumer {
        ctx.notify(STREAM, "xgroup-createconsumer", key);
    }
    let changed = r.claimed.iter().map(|c| c.0).chain(r.deleted.iter().copied()).collect();
    log_claims(ctx, key, args[2], changed, before);
    Ok(Reply::Array(vec![
        id_reply(r.next),
        claimed_reply(r.claimed),
        Reply::Array(r.deleted.into_iter().map(id_reply).collect()),
    ]))
}

// ---- XINFO ----

fn bulk(s: &'static str) -> Reply {
    Reply::bulk_static(s)
}

fn entries_read_reply(n: i64) -> Reply {
    if n == -1 { Reply::Null } else { Reply::Int(n) }
}

fn xinfo_stream(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.count_lookup(args[2], true);
    let Some(s) = ctx.ks.get_obj::<Stream>(args[2]).map_err(Reply::err)? else {
        return Err(Reply::err(ERR_NO_SUCH_KEY));
    };
    let opts = &args[3..];
    let mut full = false;
    let mut count: i64 = 10;
    if !opts.is_empty() {
        if !is(opts[0], "full") {
            return Err(super::subcommand_syntax(args));
        }
        full = true;
        if opts.len() == 3 {
            if !is(opts[1], "count") {
                return Err(super::subcommand_syntax(args));
            }
            count = int(opts[2])?;
            if count < 0 {
                count = 10;
            }
        } else if opts.len() != 1 {
            return Err(super::subcommand_syntax(args));
        }
    }
    let mut m = vec![
        (bulk("length"), Reply::Int(s.len() as i64)),
        (bulk("radix-tree-keys"), Reply::Int(s.radix_tree_keys() as i64)),
        (bulk("radix-tree-nodes"), Reply::Int(s.radix_tree_nodes() as i64)),
        (bulk("last-generated-id"), id_reply(s.last_id)),
        (bulk("max-deleted-entry-id"), id_reply(s.max_deleted_id)),
        (bulk("entries-added"), Reply::Int(s.entries_added)),
        (bulk("recorded-first-entry-id"), id_reply(s.first_id)),
    ];
    if !full {
        m.push((bulk("groups"), Reply::Int(s.group_count() as i64)));
        let first = s.range(StreamId::ZERO, StreamId::MAX, 1, false);
        let last = s.range(StreamId::ZERO, StreamId::MAX, 1, true);
        m.push((bulk("first-entry"), first.first().map_or(Reply::Null, entry_reply)));
        m.push((bulk("last-entry"), last.first().map_or(Reply::Null, entry_reply)));
        return Ok(Reply::Map(m));
    }
    let limit = if count == 0 { usize::MAX } else { count as usize };
    m.push((
        bulk("entries"),
        entries_reply(&s.range(StreamId::ZERO, StreamId::MAX, count as usize, false)),
    ));
    let groups = s
        .groups()
        .map(|(name, g)| {
            let pending = g
                .pel
                .iter()
                .take(limit)
                .map(|(id, n)| {
                    Reply::Array(vec![
                        id_reply(*id),
                        Reply::Bulk(n.consumer.clone()),
                        Reply::Int(n.delivery_time),
                        Reply::Int(n.delivery_count as i64),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cname, c)| {
                    let pel = c
                        .pel
                        .iter()
                        .take(limit)
                        .filter_map(|id| g.pel.get(id).map(|n| (id, n)))
                        .map(|(id, n)| {
                            Reply::Array(vec![
                                id_reply(*id),
                                Reply::Int(n.delivery_time),
                                Reply::Int(n.delivery_count as i64),
                            ])
                        })
                        .collect();
                    Reply::Map(vec![
                        (bulk("name"), Reply::Bulk(cname.clone())),
                        (bulk("seen-time"), Reply::Int(c.seen_time as i64)),
                        (bulk("pel-count"), Reply::Int(c.pel.len() as i64)),
                        (bulk("pending"), Reply::Array(pel)),
                    ])
                })
                .collect();
            Reply::Map(vec![
                (bulk("name"), Reply::Bulk(name.clone())),
                (bulk("last-delivered-id"), id_reply(g.last_id)),
                (bulk("entries-read"), entries_read_reply(g.entries_read)),
                (bulk("lag"), s.lag(g).map_or(Reply::Null, Reply::Int)),
                (bulk("pel-count"), Reply::Int(g.pel.len() as i64)),
                (bulk("pending"), Reply::Array(pending)),
                (bulk("consumers"), Reply::Array(consumers)),
            ])
        })
        .collect();
    m.push((bulk("groups"), Reply::Array(groups)));
    Ok(Reply::Map(m))
}

fn xinfo_groups(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.count_lookup(args[2], true);
    let Some(s) = ctx.ks.get_obj::<Stream>(args[2]).map_err(Reply::err)? else {
        return Err(Reply::err(ERR_NO_SUCH_KEY));
    };
    Ok(Reply::Array(
        s.groups()
            .map(|(name, g)| {
                Reply::Map(vec![
                    (bulk("name"), Reply::Bulk(name.clone())),
                    (bulk("consumers"), Reply::Int(g.consumers.len() as i64)),
                    (bulk("pending"), Reply::Int(g.pel.len() as i64)),
                    (bulk("last-delivered-id"), id_reply(g.last_id)),
                    (bulk("entries-read"), entries_read_reply(g.entries_read)),
                    (bulk("lag"), s.lag(g).map_or(Reply::Null, Reply::Int)),
                ])
            })
            .collect(),
    ))
}

fn xinfo_consumers(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    ctx.count_lookup(args[2], true);
    let now = ctx.ks.now as i64;
    let Some(s) = ctx.ks.get_obj::<Stream>(args[2]).map_err(Reply::err)? else {
        return Err(Reply::err(ERR_NO_SUCH_KEY));
    };
    let Some(g) = s.group(args[3]) else {
        return Err(nogroup_for_key(args[2], args[3]));
    };
    Ok(Reply::Array(
        g.consumers
            .iter()
            .map(|(name, c)| {
                Reply::Map(vec![
                    (bulk("name"), Reply::Bulk(name.clone())),
                    (bulk("pending"), Reply::Int(c.pel.len() as i64)),
                    (bulk("idle"), Reply::Int(now.wrapping_sub(c.seen_time as i64).max(0))),
                ])
            })
            .collect(),
    ))
}

fn xinfo_help(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() == 1 {
        return Err(wrong_args("xinfo"));
    }
    Ok(help(&[
        "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CONSUMERS <key> <groupname>",
        "    Show consumers of <groupname>.",
        "GROUPS <key>",
        "    Show the stream consumer groups.",
        "STREAM <key> [FULL [COUNT <count>]",
        "    Show information about the stream.",
        "HELP",
        "    Prints this help.",
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b<'a>(v: &[&'a str]) -> Vec<&'a [u8]> {
        v.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn xread_key_positions() {
        assert_eq!(xread_keys(&b(&["xread", "streams", "a", "b", "0", "0"])), vec![2, 3]);
        assert_eq!(
            xread_keys(&b(&["xread", "count", "1", "block", "0", "streams", "a", "0"])),
            vec![6]
        );
        assert_eq!(
            xread_keys(&b(&[
                "xreadgroup",
                "group",
                "g",
                "c",
                "noack",
                "streams",
                "streams",
                ">"
            ])),
            vec![6]
        );
        assert!(xread_keys(&b(&["xread", "streams", "a"])).is_empty());
        assert!(xread_keys(&b(&["xread", "foo", "streams", "a", "0"])).is_empty());
    }

    #[test]
    fn add_trim_option_errors() {
        let e = |v: &[&str]| parse_add_trim(&b(v), true, &Limits::default()).err();
        assert!(e(&["xadd", "s", "maxlen", "~", "2", "limit", "5", "*"]).is_none());
        assert_eq!(
            e(&["xadd", "s", "limit", "5", "*"]),
            Some(Reply::err(
                "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
            ))
        );
        assert_eq!(
            e(&["xadd", "s", "maxlen", "1", "minid", "1", "*"]),
            Some(Reply::err(ERR_MAXLEN_AND_MINID))
        );
        assert_eq!(e(&["xadd", "s", "bad", "a"]), Some(Reply::err(ERR_INVALID_ID)));
    }
}
