//! Replies to Lua values and back, as Redis 7.0 converts them
//! (`redisProtocolToLuaType` and `luaReplyToRedisReply` in script_lua.c).
//!
//! A script sees replies in RESP2 unless it called `redis.setresp(3)`: then
//! maps, sets, doubles, booleans, nulls and verbatim strings arrive as
//! their RESP3 shapes (`{map=...}`, `{set=...}`, `{double=...}`, ...), and
//! the booleans it returns are RESP3 booleans instead of 1 and nil.

use mlua::{Lua, Table, Value};

use crate::resp::Reply;

/// Deepest nesting converted; below it a reply says so, as Redis does when
/// its Lua stack runs out (a table that contains itself would otherwise
/// recurse for ever).
const MAX_DEPTH: usize = 1000;

/// A command's reply as the Lua value `redis.call` returns.
pub fn to_lua(lua: &Lua, reply: &Reply, resp3: bool) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Ok => single(lua, "ok", Value::String(lua.create_string("OK")?))?,
        Reply::Status(s) => single(lua, "ok", Value::String(lua.create_string(s.as_bytes())?))?,
        Reply::Error(e) => single(lua, "err", Value::String(lua.create_string(e.as_bytes())?))?,
        Reply::Int(i) => Value::Number(*i as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(b)?),
        // Pre-encoded replies (arrays of bulk strings built straight into
        // protocol bytes: LRANGE, SMEMBERS...); empty means no reply at all.
        Reply::Raw(b) if !b.is_empty() => match decode_raw(b) {
            Some(r) => to_lua(lua, &r, resp3)?,
            None => single(lua, "err", Value::String(lua.create_string("ERR unreadable reply")?))?,
        },
        Reply::Null | Reply::NullArray | Reply::Raw(_) => {
            if resp3 {
                Value::Nil
            } else {
                Value::Boolean(false)
            }
        }
        Reply::Array(items) | Reply::Push(items) | Reply::Multi(items) => array(lua, items, resp3)?,
        Reply::Set(items) => {
            if resp3 {
                let set = lua.create_table()?;
                for item in items {
                    set.raw_set(to_lua(lua, item, resp3)?, true)?;
                }
                single(lua, "set", Value::Table(set))?
            } else {
                array(lua, items, resp3)?
            }
        }
        Reply::Map(pairs) => {
            if resp3 {
                let map = lua.create_table()?;
                for (k, v) in pairs {
                    map.raw_set(to_lua(lua, k, resp3)?, to_lua(lua, v, resp3)?)?;
                }
                single(lua, "map", Value::Table(map))?
            } else {
                let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    t.raw_set(2 * i + 1, to_lua(lua, k, resp3)?)?;
                    t.raw_set(2 * i + 2, to_lua(lua, v, resp3)?)?;
                }
                Value::Table(t)
            }
        }
        Reply::Double(d) => {
            if resp3 {
                single(lua, "double", Value::Number(*d))?
            } else {
                Value::String(lua.create_string(crate::resp::reply::format_double(*d))?)
            }
        }
        Reply::DoubleText(s) => {
            if resp3 {
                let d = crate::cmd::parse::parse_f64(s.as_bytes()).unwrap_or(f64::NAN);
                single(lua, "double", Value::Number(d))?
            } else {
                Value::String(lua.create_string(s)?)
            }
        }
        Reply::Bool(b) => {
            if resp3 {
                Value::Boolean(*b)
            } else {
                Value::Number(*b as i64 as f64)
            }
        }
        Reply::Verbatim(b) => verbatim(lua, b"txt", b, resp3)?,
        Reply::VerbatimAs(format, b) => verbatim(lua, format, b, resp3)?,
        Reply::BigNum(n) => {
            if resp3 {
                single(lua, "big_number", Value::String(lua.create_string(n)?))?
            } else {
                Value::String(lua.create_string(n)?)
            }
        }
    })
}

/// Decode a pre-encoded RESP2 reply (see [`Reply::Raw`]).
fn decode_raw(b: &[u8]) -> Option<Reply> {
    let mut pos = 0;
    let r = decode_at(b, &mut pos, 0)?;
    (pos == b.len()).then_some(r)
}

fn decode_at(b: &[u8], pos: &mut usize, depth: usize) -> Option<Reply> {
    if depth > MAX_DEPTH {
        return None;
    }
    let kind = *b.get(*pos)?;
    let end = *pos + b.get(*pos..)?.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&b[*pos + 1..end]).ok()?;
    *pos = end + 2;
    match kind {
        b'+' => Some(Reply::Status(line.to_string().into())),
        b'-' => Some(Reply::err(line.to_string())),
        b':' => Some(Reply::Int(line.parse().ok()?)),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some(Reply::Null);
            }
            let data = b.get(*pos..*pos + n as usize)?;
            *pos += n as usize + 2;
            Some(Reply::Bulk(bytes::Bytes::copy_from_slice(data)))
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some(Reply::NullArray);
            }
            let mut items = Vec::with_capacity((n as usize).min(1024));
            for _ in 0..n {
                items.push(decode_at(b, pos, depth + 1)?);
            }
            Some(Reply::Array(items))
        }
        _ => None,
    }
}

fn single(lua: &Lua, field: &str, value: Value) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(field, value)?;
    Ok(Value::Table(t))
}

fn array(lua: &Lua, items: &[Reply], resp3: bool) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, to_lua(lua, item, resp3)?)?;
    }
    Ok(Value::Table(t))
}

fn verbatim(lua: &Lua, format: &[u8], text: &[u8], resp3: bool) -> mlua::Result<Value> {
    if !resp3 {
        return Ok(Value::String(lua.create_string(text)?));
    }
    let inner = lua.create_table()?;
    inner.raw_set("format", lua.create_string(format)?)?;
    inner.raw_set("string", lua.create_string(text)?)?;
    single(lua, "verbatim_string", Value::Table(inner))
}

/// A script's return value as the reply to its caller. `resp3` is the
/// protocol the script chose with `redis.setresp` (it decides booleans).
pub fn to_reply(value: &Value, resp3: bool) -> Reply {
    to_reply_at(value, resp3, 0)
}

fn to_reply_at(value: &Value, resp3: bool, depth: usize) -> Reply {
    if depth > MAX_DEPTH {
        return Reply::err("ERR reached lua stack limit");
    }
    match value {
        Value::String(s) => Reply::Bulk(bytes::Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) => {
            if resp3 {
                Reply::Bool(*b)
            } else if *b {
                Reply::Int(1)
            } else {
                Reply::Null
            }
        }
        Value::Number(n) => Reply::Int(c_cast(*n)),
        Value::Integer(i) => Reply::Int(*i),
        Value::Table(t) => table_to_reply(t, resp3, depth),
        _ => Reply::Null,
    }
}

fn table_to_reply(t: &Table, resp3: bool, depth: usize) -> Reply {
    let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(e) = field("err") {
        return Reply::err(one_line(&e.as_bytes()));
    }
    if let Value::String(s) = field("ok") {
        return Reply::Status(one_line(&s.as_bytes()).into());
    }
    match field("double") {
        Value::Number(d) => return Reply::Double(d),
        Value::Integer(i) => return Reply::Double(i as f64),
        _ => {}
    }
    if let Value::String(s) = field("big_number") {
        return Reply::BigNum(one_line(&s.as_bytes()));
    }
    if let Value::Table(v) = field("verbatim_string")
        && let Ok(Value::String(format)) = v.raw_get::<Value>("format")
        && let Ok(Value::String(text)) = v.raw_get::<Value>("string")
    {
        let text = bytes::Bytes::copy_from_slice(&text.as_bytes());
        let format = format.as_bytes();
        return match <[u8; 3]>::try_from(&format[..]) {
            Ok(f) if &f == b"txt" => Reply::Verbatim(text),
            Ok(f) => Reply::VerbatimAs(f, text),
            // Redis writes whatever it is given; RESP3 wants exactly three
            // characters, so anything else goes out as a plain string.
            Err(_) => Reply::Bulk(text),
        };
    }
    if let Value::Table(map) = field("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| (to_reply_at(&k, resp3, depth + 1), to_reply_at(&v, resp3, depth + 1)))
            .collect();
        return Reply::Map(pairs);
    }
    if let Value::Table(set) = field("set") {
        let items = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| to_reply_at(&k, resp3, depth + 1))
            .collect();
        return Reply::Set(items);
    }
    // An array: elements 1, 2, ... up to the first nil.
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(to_reply_at(&v, resp3, depth + 1)),
        }
    }
    Reply::Array(items)
}

/// C's `(long long)` of a double on x86-64: out of range (and NaN) is the
/// "integer indefinite" value, `i64::MIN` — what Redis replies to `return 1e100`.
fn c_cast(n: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// A status or error line: CR and LF become spaces, so the reply stays one
/// protocol line (Redis' `sdsmapchars`).
fn one_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_replies_decode() {
        let raw = Reply::bulk_array([&b"a"[..], b"", b"xyz"].into_iter(), 3);
        let Reply::Raw(b) = raw else { panic!() };
        let Some(Reply::Array(items)) = decode_raw(&b) else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[2], Reply::Bulk(x) if x.as_ref() == b"xyz"));
        assert!(decode_raw(b"*2\r\n$1\r\na\r\n").is_none());
        assert!(decode_raw(b"$5\r\nab\r\n").is_none());
    }
}
