//! `SORT` and `SORT_RO`: Redis 7.0's `sortCommandGeneric`, option for option.
//!
//! `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC]
//! [ALPHA] [STORE destination]` sorts a list, set or sorted set numerically
//! (elements, or the values `BY` names, parsed as glibc's `strtod` does) or,
//! with `ALPHA`, by bytes (Redis compares with `strcoll`, which is byte
//! order in the C locale Redis' package runs in by default). Equal numbers
//! are ordered by the elements' bytes, so the result is deterministic. A
//! `BY` pattern without `*` skips sorting (the native order of a list or
//! sorted set; a set then sorts `ALPHA` when stored, as Redis does so the
//! stored list is the same on every replica). A pattern's `*` is replaced
//! by the element and the key read as a string, or with `->field` as a
//! hash field; `GET #` is the element itself; a missing value is nil (an
//! empty string when stored). As in Redis cluster mode, `BY` with a real
//! pattern and `GET` are refused there: they name keys of other slots.
//!
//! Patterns read arbitrary keys, so SORT holds every partition while it
//! runs (its internal `LOCK_ALL` flag), as KEYS does; cluster routing still
//! follows its key arguments.

use bytes::Bytes;

use super::flags::*;
use super::parse::strtod;
use super::parse::{self, is};
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::db::WRONGTYPE;
use crate::db::list::List;
use crate::db::value::Value;
use crate::notify;
use crate::resp::Reply;

const ERR_NOT_DOUBLE: &str = "ERR One or more scores can't be converted into double";

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "sort",
        arity: -2,
        flags: WRITE | DENYOOM | LOCK_ALL,
        keys: KeySpec::Custom(sort_keys),
        group: "generic",
        summary: "Sort the elements in a list, set or sorted set, optionally storing the result.",
        since: "1.0.0",
        complexity: "O(N+M*log(M)) where N is the number of elements in the list or set to sort, and M the number of \
                     returned elements. When the elements are not sorted, complexity is O(N).",
        handler: sort,
        subcommands: &[],
    },
    CommandSpec {
        name: "sort_ro",
        arity: -2,
        flags: READONLY | LOCK_ALL,
        keys: KeySpec::Custom(sort_ro_keys),
        group: "generic",
        summary: "Sort the elements in a list, set or sorted set. Read-only variant of SORT.",
        since: "7.0.0",
        complexity: "O(N+M*log(M)) where N is the number of elements in the list or set to sort, and M the number of \
                     returned elements. When the elements are not sorted, complexity is O(N).",
        handler: sort_ro,
        subcommands: &[],
    },
];

/// The sorted key and, with `STORE`, the destination (Redis'
/// `sortGetKeys`: the last STORE wins; its argument is skipped like
/// every option's).
fn sort_keys(args: &[&[u8]]) -> Vec<usize> {
    let mut keys = vec![1];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let skip = if is(args[i], "LIMIT") {
            2
        } else if is(args[i], "GET") || is(args[i], "BY") {
            1
        } else if is(args[i], "STORE") {
            if i + 1 < args.len() {
                store = Some(i + 1);
            }
            1
        } else {
            0
        };
        i += 1 + skip;
    }
    keys.extend(store);
    keys
}

/// SORT_RO: the sorted key only (Redis marks it movablekeys too).
fn sort_ro_keys(_args: &[&[u8]]) -> Vec<usize> {
    vec![1]
}

fn sort(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    sort_generic(ctx, args, false)
}

fn sort_ro(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    sort_generic(ctx, args, true)
}

/// One element being sorted and what it is sorted by.
struct Item {
    elem: Bytes,
    score: f64,
    /// `ALPHA BY`: the value compared (`None` when the key is missing,
    /// which sorts first).
    by: Option<Bytes>,
}

fn sort_generic(ctx: &mut Ctx, args: &[&[u8]], readonly: bool) -> CmdResult {
    let (mut desc, mut alpha, mut dontsort) = (false, false, false);
    let (mut limit_start, mut limit_count) = (0i64, -1i64);
    let mut sortby: Option<&[u8]> = None;
    let mut store: Option<&[u8]> = None;
    let mut gets: Vec<&[u8]> = Vec::new();
    let cluster = ctx.state.cluster.is_enabled();
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = args[j];
        if is(a, "ASC") {
            desc = false;
        } else if is(a, "DESC") {
            desc = true;
        } else if is(a, "ALPHA") {
            alpha = true;
        } else if is(a, "LIMIT") && left >= 2 {
            limit_start = parse::int(args[j + 1])?;
            limit_count = parse::int(args[j + 2])?;
            j += 2;
        } else if !readonly && is(a, "STORE") && left >= 1 {
            store = Some(args[j + 1]);
            j += 1;
        } else if is(a, "BY") && left >= 1 {
            sortby = Some(args[j + 1]);
            // A constant pattern: nothing to look up, nothing to sort.
            if !args[j + 1].contains(&b'*') {
                dontsort = true;
            } else if cluster {
                return Err(Reply::err("ERR BY option of SORT denied in Cluster mode."));
            }
            j += 1;
        } else if is(a, "GET") && left >= 1 {
            if cluster {
                return Err(Reply::err("ERR GET option of SORT denied in Cluster mode."));
            }
            gets.push(args[j + 1]);
            j += 1;
        } else {
            return Err(parse::syntax());
        }
        j += 1;
    }

    let key = args[1];
    // Type and size first (the lookup Redis counts); the elements are
    // copied out below, over the range needed.
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        List,
        Set,
        ZSet,
    }
    let (kind, len) = {
        let found = match ctx.ks.get(key) {
            None => None,
            Some(e) => Some(match e.obj() {
                Some(Value::List(l)) => (Kind::List, l.len()),
                Some(Value::Set(s)) => (Kind::Set, s.len()),
                Some(Value::ZSet(z)) => (Kind::ZSet, z.len()),
                _ => return Err(Reply::err(WRONGTYPE)),
            }),
        };
        ctx.looked_up(key, found.is_some());
        match found {
            Some((k, n)) => (Some(k), n as i64),
            None => (None, 0),
        }
    };
    // A set has no order of its own: sorted ALPHA when stored, so every
    // replica stores the same list, and for a script, so that what it
    // computes from the reply is the same everywhere (as Redis).
    if dontsort && kind == Some(Kind::Set) && (store.is_some() || ctx.in_script) {
        dontsort = false;
        alpha = true;
        sortby = None;
    }

    // LIMIT, clamped as Redis does (an empty range when it starts past the end).
    let mut start = limit_start.clamp(0, len);
    let count = limit_count.clamp(-1, len);
    let mut end = if count < 0 { len - 1 } else { start + count - 1 };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);

    // Load the elements; lists and sorted sets left unsorted are read only
    // over the range asked for, in their own order (DESC from the end).
    let mut items: Vec<Item> = Vec::new();
    let item = |e: &[u8]| Item {
        elem: Bytes::copy_from_slice(e),
        score: 0.0,
        by: None,
    };
    let direct = dontsort && matches!(kind, Some(Kind::List | Kind::ZSet));
    if direct && end >= start {
        let n = (end - start + 1) as usize;
        match ctx.ks.get(key).and_then(|e| e.obj()) {
            Some(Value::List(l)) if desc => items.extend(l.iter().rev().skip(start as usize).take(n).map(item)),
            Some(Value::List(l)) => items.extend(l.iter().skip(start as usize).take(n).map(item)),
            Some(Value::ZSet(z)) => items.extend(z.iter_from(start as usize, desc).take(n).map(|(m, _)| item(m))),
            _ => {}
        }
        end -= start;
        start = 0;
    } else if !direct {
        match ctx.ks.get(key).and_then(|e| e.obj()) {
            Some(Value::List(l)) => items.extend(l.iter().map(item)),
            Some(Value::Set(s)) => items.extend(s.iter().map(item)),
            Some(Value::ZSet(z)) => items.extend(z.iter().map(|(m, _)| item(m))),
            _ => {}
        }
    }

    if !dontsort {
        let mut not_double = false;
        for it in items.iter_mut() {
            let by = match sortby {
                Some(p) => match lookup_by_pattern(ctx, p, &it.elem) {
                    Some(v) => v,
                    None => continue,
                },
                None => it.elem.clone(),
            };
            if alpha {
                if sortby.is_some() {
                    it.by = Some(by);
                }
            } else {
                let (v, used, erange) = strtod(&by);
                if used != by.len() || erange || v.is_nan() {
                    not_double = true;
                }
                it.score = v;
            }
        }
        if not_double {
            return Err(Reply::err(ERR_NOT_DOUBLE));
        }
        let by_pattern = sortby.is_some();
        items.sort_by(|a, b| {
            let ord = if !alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.elem.cmp(&b.elem))
            } else if by_pattern {
                a.by.cmp(&b.by)
            } else {
                a.elem.cmp(&b.elem)
            };
            if desc { ord.reverse() } else { ord }
        });
    }

    let range = if end >= start {
        &items[start as usize..=end as usize]
    } else {
        &items[..0]
    };
    match store {
        None => {
            let mut out = Vec::with_capacity(range.len() * gets.len().max(1));
            for it in range {
                if gets.is_empty() {
                    out.push(Reply::Bulk(it.elem.clone()));
                }
                for g in &gets {
                    out.push(match lookup_by_pattern(ctx, g, &it.elem) {
                        Some(v) => Reply::Bulk(v),
                        None => Reply::Null,
                    });
                }
            }
            Ok(Reply::Array(out))
        }
        Some(dst) => {
            let mut list = List::default();
            for it in range {
                if gets.is_empty() {
                    list.push_back(&it.elem);
                }
                for g in &gets {
                    list.push_back(&lookup_by_pattern(ctx, g, &it.elem).unwrap_or_default());
                }
            }
            let n = list.len();
            if n > 0 {
                ctx.ks.insert(dst, Value::List(list), None);
                ctx.changed(dst, notify::LIST, "sortstore");
                ctx.dirty += n as u64 - 1;
            } else if ctx.ks.remove(dst).is_some() {
                ctx.changed(dst, notify::GENERIC, "del");
            }
            Ok(Reply::Int(n as i64))
        }
    }
}

/// Redis' `lookupKeyByPattern`: `#` is the element itself; otherwise the
/// first `*` is replaced by the element and that key read as a string, or
/// with a `->field` suffix as the field of a hash. `None` when the pattern
/// has no `*`, the key is missing or of another type, or the field absent.
/// Each key read counts as a keyspace hit or miss, as Redis' lookup does.
fn lookup_by_pattern(ctx: &mut Ctx, pattern: &[u8], elem: &[u8]) -> Option<Bytes> {
    if pattern == b"#" {
        return Some(Bytes::copy_from_slice(elem));
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    let after = &pattern[star + 1..];
    let field = after
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&i| i + 2 < after.len())
        .map(|i| (star + 1 + i, &after[i + 2..]));
    let key_end = field.map_or(pattern.len(), |(i, _)| i);
    let mut key = Vec::with_capacity(key_end + elem.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    let found = ctx.ks.get(&key).map(|e| match (field, e.obj()) {
        (Some((_, f)), Some(Value::Hash(h))) => h.get(f).map(Bytes::copy_from_slice),
        (None, None) => e.str_value().map(Bytes::copy_from_slice),
        _ => None,
    });
    ctx.looked_up(&key, found.is_some());
    found.flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn store_destination_is_a_key() {
        let keys = |v: &[&str]| {
            let owned = b(v);
            let args: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            sort_keys(&args)
        };
        assert_eq!(keys(&["SORT", "k"]), vec![1]);
        assert_eq!(keys(&["SORT", "k", "STORE", "d"]), vec![1, 3]);
        assert_eq!(
            keys(&["SORT", "k", "GET", "store", "LIMIT", "0", "1", "STORE", "d"]),
            vec![1, 8]
        );
        assert_eq!(keys(&["SORT", "k", "STORE", "a", "STORE", "b"]), vec![1, 5]);
        assert_eq!(keys(&["SORT", "k", "BY", "STORE"]), vec![1]);
    }
}
