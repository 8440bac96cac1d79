//! Libraries Redis loads into its interpreter besides Lua's own: `bit`
//! (LuaBitOp 1.0: 32-bit operations on Lua numbers) and `cjson` (lua-cjson
//! 2.1: `encode`, `decode`, `null` and the configuration functions, with
//! its defaults: 14 significant digits, `/` escaped, sparse arrays refused,
//! 1000 levels deep, NaN/Infinity/hexadecimal accepted when decoding). The
//! configuration belongs to the interpreter, as in Redis: what one script
//! sets, the next one sees. And `cmsgpack` (lua-cmsgpack 0.4.0: `pack`,
//! `unpack`, `unpack_one`, `unpack_limit`), byte for byte as Redis packs,
//! and `struct` (Roberto Ierusalimschy's lua-struct: `pack`, `unpack`,
//! `size`, with the sizes and alignment of x86-64 Linux, where Redis runs).

use std::sync::Arc;

use mlua::{LightUserData, Lua, MultiValue, Table, Value};
use parking_lot::Mutex;

pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    globals.set("bit", bit(lua)?)?;
    globals.set("cjson", cjson(lua)?)?;
    globals.set("cmsgpack", cmsgpack(lua)?)?;
    globals.set("struct", lua_struct(lua)?)?;
    Ok(())
}

/// The name the running Rust function was called by (`luaL_argerror`'s
/// `ar.name`: `pack` for `cmsgpack.pack(...)`, `p` after `local p = ...`).
fn called_as(lua: &Lua, default: &str) -> String {
    lua.inspect_stack(0, |d| d.names().name.map(|n| n.into_owned()))
        .flatten()
        .unwrap_or_else(|| default.to_string())
}

// ---- cmsgpack ----

/// lua-cmsgpack's `LUACMSGPACK_MAX_NESTING`: deeper tables pack as nil
/// (so a table that contains itself packs).
const MSGPACK_MAX_NESTING: usize = 16;
/// How deep `unpack` follows nested arrays and maps. lua-cmsgpack recurses
/// until the Lua stack is full (about 4000 levels); this stops earlier, with
/// the same error, so a hostile payload cannot exhaust the thread's stack.
const MSGPACK_MAX_DECODE_DEPTH: usize = 1000;

fn cmsgpack(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                let msg = format!(
                    "bad argument #0 to '{}' (MessagePack pack needs input.)",
                    called_as(lua, "pack")
                );
                return Err(super::raise_here(lua, &msg));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                msgpack_encode(v, 0, &mut out).map_err(|e| super::raise_here(lua, &e))?;
            }
            lua.create_string(out)
        })?,
    )?;
    t.set(
        "unpack",
        lua.create_function(|lua, args: MultiValue| {
            let s = msgpack_input(lua, &args, "unpack")?;
            msgpack_unpack(lua, &s, 0, 0)
        })?,
    )?;
    t.set(
        "unpack_one",
        lua.create_function(|lua, args: MultiValue| {
            let s = msgpack_input(lua, &args, "unpack_one")?;
            let offset = integer_arg(lua, &args, 1, "unpack_one", Some(0))?;
            msgpack_unpack(lua, &s, 1, offset)
        })?,
    )?;
    t.set(
        "unpack_limit",
        lua.create_function(|lua, args: MultiValue| {
            let s = msgpack_input(lua, &args, "unpack_limit")?;
            let limit = integer_arg(lua, &args, 1, "unpack_limit", None)?;
            let offset = integer_arg(lua, &args, 2, "unpack_limit", Some(0))?;
            msgpack_unpack(lua, &s, limit, offset)
        })?,
    )?;
    t.set("_NAME", "cmsgpack")?;
    t.set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

/// `luaL_checklstring(L, 1)`: a string, or a number as Lua prints it.
fn msgpack_input(lua: &Lua, args: &MultiValue, f: &str) -> mlua::Result<Vec<u8>> {
    match args.front() {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Number(n)) => Ok(super::format_lua_number(*n).into_bytes()),
        Some(Value::Integer(n)) => Ok(n.to_string().into_bytes()),
        other => {
            let got = other.map_or("no value", |v| v.type_name());
            let msg = format!(
                "bad argument #1 to '{}' (string expected, got {got})",
                called_as(lua, f)
            );
            Err(super::raise_here(lua, &msg))
        }
    }
}

/// `luaL_checkinteger` / `luaL_optinteger` (with `default`) for argument `i` (0-based).
fn integer_arg(lua: &Lua, args: &MultiValue, i: usize, f: &str, default: Option<i64>) -> mlua::Result<i64> {
    match (args.get(i), default) {
        (None | Some(Value::Nil), Some(d)) => Ok(d),
        (Some(v), _) if super::number(v).is_some() => Ok(super::number(v).unwrap_or(0.0) as i64),
        (v, _) => {
            let got = v.map_or("no value", |v| v.type_name());
            let msg = format!(
                "bad argument #{} to '{}' (number expected, got {got})",
                i + 1,
                called_as(lua, f)
            );
            Err(super::raise_here(lua, &msg))
        }
    }
}

fn msgpack_encode(v: &Value, level: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::String(s) => {
            let b = s.as_bytes();
            let len = b.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len <= 0xff {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else if len <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(&b);
        }
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => msgpack_number(*n, out),
        Value::Integer(n) => msgpack_int(*n, out),
        Value::Table(t) if level < MSGPACK_MAX_NESTING => {
            // An array when its keys are exactly 1..n (integers that fit
            // an `int`), a map otherwise.
            let (mut count, mut max, mut array) = (0u64, 0f64, true);
            for pair in t.pairs::<Value, Value>() {
                let (k, _) = pair.map_err(|e| e.to_string())?;
                count += 1;
                match k {
                    Value::Number(n) if n > 0.0 && n.fract() == 0.0 && n <= i32::MAX as f64 => max = max.max(n),
                    Value::Integer(n) if n > 0 && n <= i32::MAX as i64 => max = max.max(n as f64),
                    _ => array = false,
                }
            }
            if array && max == count as f64 {
                msgpack_header(out, count, 0x90, 0xdc);
                for i in 1..=count {
                    let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                    msgpack_encode(&item, level + 1, out)?;
                }
            } else {
                msgpack_header(out, count, 0x80, 0xde);
                for pair in t.pairs::<Value, Value>() {
                    let (k, item) = pair.map_err(|e| e.to_string())?;
                    msgpack_encode(&k, level + 1, out)?;
                    msgpack_encode(&item, level + 1, out)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

/// An array or map header: fix form up to 15, then 16 and 32 bits.
fn msgpack_header(out: &mut Vec<u8>, n: u64, fix: u8, wide: u8) {
    if n <= 15 {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// A Lua number: as an integer when it is one (within int64), else as a
/// float when a float holds it exactly, else as a double.
fn msgpack_number(n: f64, out: &mut Vec<u8>) {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if n.fract() == 0.0 && (-TWO_63..TWO_63).contains(&n) {
        msgpack_int(n as i64, out);
    } else if (n as f32) as f64 == n || n.is_infinite() {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn msgpack_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Why decoding stopped (lua-cmsgpack's cursor errors).
enum MsgpackError {
    Eof,
    BadFormat,
    TooDeep,
    Lua(mlua::Error),
}

/// `mp_unpack_full`: up to `limit` values from `offset` (both 0: every
/// value, without the next offset in front).
fn msgpack_unpack(lua: &Lua, s: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    let decode_all = limit == 0 && offset == 0;
    if offset < 0 || limit < 0 {
        let msg = format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            s.len()
        );
        return Err(super::raise_here(lua, &msg));
    }
    if offset as u64 > s.len() as u64 {
        let msg = format!("Start offset {offset} greater than input length {}.", s.len());
        return Err(super::raise_here(lua, &msg));
    }
    let limit = if decode_all { i64::MAX } else { limit };
    let mut pos = offset as usize;
    let mut out = MultiValue::new();
    let mut count = 0;
    while pos < s.len() && count < limit {
        match msgpack_decode(lua, s, &mut pos, 0) {
            Ok(v) => out.push_back(v),
            Err(MsgpackError::Eof) => return Err(super::raise_here(lua, "Missing bytes in input.")),
            Err(MsgpackError::BadFormat) => return Err(super::raise_here(lua, "Bad data format in input.")),
            Err(MsgpackError::TooDeep) => {
                return Err(super::raise_here(
                    lua,
                    "too many return values at once; use unpack_one or unpack_limit instead.",
                ));
            }
            Err(MsgpackError::Lua(e)) => return Err(e),
        }
        count += 1;
    }
    if !decode_all {
        let next = if pos >= s.len() { -1.0 } else { pos as f64 };
        out.push_front(Value::Number(next));
    }
    Ok(out)
}

fn msgpack_decode(lua: &Lua, s: &[u8], pos: &mut usize, depth: usize) -> Result<Value, MsgpackError> {
    let lua_err = MsgpackError::Lua;
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], MsgpackError> {
        let end = pos.checked_add(n).filter(|&e| e <= s.len()).ok_or(MsgpackError::Eof)?;
        let b = &s[*pos..end];
        *pos = end;
        Ok(b)
    };
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64);
    let tag = *s.get(*pos).ok_or(MsgpackError::Eof)?;
    let string = |pos: &mut usize, header: usize, len: usize| -> Result<Value, MsgpackError> {
        // The whole string must be there before anything is consumed.
        if s.len() - *pos < header + len {
            return Err(MsgpackError::Eof);
        }
        *pos += header;
        let b = take(pos, len)?;
        lua.create_string(b).map(Value::String).map_err(lua_err)
    };
    let number = |pos: &mut usize, n: usize, f: &dyn Fn(&[u8]) -> f64| -> Result<Value, MsgpackError> {
        let b = take(pos, 1 + n)?;
        Ok(Value::Number(f(&b[1..])))
    };
    match tag {
        0xc0 => {
            *pos += 1;
            Ok(Value::Nil)
        }
        0xc2 | 0xc3 => {
            *pos += 1;
            Ok(Value::Boolean(tag == 0xc3))
        }
        0xcc => number(pos, 1, &|b| b[0] as f64),
        0xcd => number(pos, 2, &|b| be(b) as f64),
        0xce => number(pos, 4, &|b| be(b) as f64),
        // Pushed as a signed integer in Redis, so the top half wraps.
        0xcf => number(pos, 8, &|b| be(b) as i64 as f64),
        0xd0 => number(pos, 1, &|b| b[0] as i8 as f64),
        0xd1 => number(pos, 2, &|b| be(b) as u16 as i16 as f64),
        0xd2 => number(pos, 4, &|b| be(b) as u32 as i32 as f64),
        0xd3 => number(pos, 8, &|b| be(b) as i64 as f64),
        0xca => number(pos, 4, &|b| f32::from_bits(be(b) as u32) as f64),
        0xcb => number(pos, 8, &|b| f64::from_bits(be(b))),
        0xd9 => {
            let len = *s.get(*pos + 1).ok_or(MsgpackError::Eof)? as usize;
            string(pos, 2, len)
        }
        0xda => {
            let len = be(s.get(*pos + 1..*pos + 3).ok_or(MsgpackError::Eof)?) as usize;
            string(pos, 3, len)
        }
        0xdb => {
            let len = be(s.get(*pos + 1..*pos + 5).ok_or(MsgpackError::Eof)?) as usize;
            *pos += 5;
            string(pos, 0, len)
        }
        0xdc..=0xdf => {
            let n = if tag & 1 == 0 { 2 } else { 4 };
            let len = be(&take(pos, 1 + n)?[1..]);
            msgpack_collection(lua, s, pos, depth, len, tag >= 0xde)
        }
        t if t & 0x80 == 0 => {
            *pos += 1;
            Ok(Value::Number(t as f64))
        }
        t if t & 0xe0 == 0xe0 => {
            *pos += 1;
            Ok(Value::Number(t as i8 as f64))
        }
        t if t & 0xe0 == 0xa0 => string(pos, 1, (t & 0x1f) as usize),
        t if t & 0xf0 == 0x90 || t & 0xf0 == 0x80 => {
            *pos += 1;
            msgpack_collection(lua, s, pos, depth, (t & 0x0f) as u64, t & 0xf0 == 0x80)
        }
        _ => Err(MsgpackError::BadFormat),
    }
}

/// An array (keys 1..n) or map of `len` entries, decoded into a table.
fn msgpack_collection(
    lua: &Lua,
    s: &[u8],
    pos: &mut usize,
    depth: usize,
    len: u64,
    map: bool,
) -> Result<Value, MsgpackError> {
    if depth >= MSGPACK_MAX_DECODE_DEPTH {
        return Err(MsgpackError::TooDeep);
    }
    let t = lua.create_table().map_err(MsgpackError::Lua)?;
    for i in 1..=len {
        // Every entry takes at least one byte: a length the input cannot
        // hold ends here, before building anything that large.
        if *pos >= s.len() {
            return Err(MsgpackError::Eof);
        }
        if map {
            let k = msgpack_decode(lua, s, pos, depth + 1)?;
            let v = msgpack_decode(lua, s, pos, depth + 1)?;
            match &k {
                Value::Nil => return Err(MsgpackError::Lua(mlua::Error::runtime("table index is nil"))),
                Value::Number(n) if n.is_nan() => {
                    return Err(MsgpackError::Lua(mlua::Error::runtime("table index is NaN")));
                }
                _ => t.raw_set(k, v).map_err(MsgpackError::Lua)?,
            }
        } else {
            let v = msgpack_decode(lua, s, pos, depth + 1)?;
            t.raw_set(i, v).map_err(MsgpackError::Lua)?;
        }
    }
    Ok(Value::Table(t))
}

/// `cjson.null`: a NULL light userdata, as lua-cjson's.
fn json_null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// lua-cjson's `json_config_t` (less the buffer it keeps, which changes
/// nothing a script sees).
#[derive(Clone, Copy)]
struct Config {
    sparse_convert: bool,
    sparse_ratio: i64,
    sparse_safe: i64,
    encode_max_depth: i64,
    decode_max_depth: i64,
    precision: i64,
    keep_buffer: bool,
    /// 0: refuse NaN and Infinity, 1: write them (`nan`, `inf`), 2: write `null`.
    encode_invalid: usize,
    decode_invalid: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            precision: 14,
            keep_buffer: true,
            encode_invalid: 0,
            decode_invalid: true,
        }
    }
}

fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let config = Arc::new(Mutex::new(Config::default()));
    let t = lua.create_table()?;
    t.set("null", json_null())?;
    t.set("_NAME", "cjson")?;
    t.set("_VERSION", "2.1.0")?;
    let cfg = config.clone();
    t.set(
        "encode",
        lua.create_function(move |lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'encode' (expected 1 argument)",
                ));
            }
            let cfg = *cfg.lock();
            let mut out = Vec::new();
            encode(&cfg, &args[0], 0, &mut out).map_err(|msg| super::raise_here(lua, &msg))?;
            lua.create_string(out)
        })?,
    )?;
    let cfg = config.clone();
    t.set(
        "decode",
        lua.create_function(move |lua, args: MultiValue| {
            let Some(Value::String(s)) = args.front() else {
                return Err(mlua::Error::runtime("bad argument #1 to 'decode' (string expected)"));
            };
            let bytes = s.as_bytes().to_vec();
            let cfg = *cfg.lock();
            let mut p = Parser {
                s: &bytes,
                pos: 0,
                lua,
                cfg,
            };
            let v = p.document().map_err(|msg| super::raise_here(lua, &msg))?;
            Ok(v)
        })?,
    )?;
    // The configuration functions: each sets what it is given (nil keeps
    // the setting) and returns the settings, with lua-cjson's argument errors.
    type Setter = fn(&Lua, &mut Config, &MultiValue, &str) -> Result<MultiValue, String>;
    let setters: [(&str, usize, Setter); 7] = [
        ("encode_sparse_array", 3, |_, c, a, f| {
            enum_option(a, 0, f, &mut c.sparse_convert)?;
            int_option(a, 1, f, 0, &mut c.sparse_ratio)?;
            int_option(a, 2, f, 0, &mut c.sparse_safe)?;
            values([
                Value::Boolean(c.sparse_convert),
                num(c.sparse_ratio),
                num(c.sparse_safe),
            ])
        }),
        ("encode_max_depth", 1, |_, c, a, f| {
            int_option(a, 0, f, 1, &mut c.encode_max_depth)?;
            values([num(c.encode_max_depth)])
        }),
        ("decode_max_depth", 1, |_, c, a, f| {
            int_option(a, 0, f, 1, &mut c.decode_max_depth)?;
            values([num(c.decode_max_depth)])
        }),
        ("encode_number_precision", 1, |_, c, a, f| {
            int_option_max(a, 0, f, 1, 14, &mut c.precision)?;
            values([num(c.precision)])
        }),
        ("encode_keep_buffer", 1, |_, c, a, f| {
            enum_option(a, 0, f, &mut c.keep_buffer)?;
            values([Value::Boolean(c.keep_buffer)])
        }),
        ("encode_invalid_numbers", 1, |lua, c, a, f| {
            if let Some(v) = a.front().filter(|v| !v.is_nil()) {
                c.encode_invalid = match v {
                    Value::Boolean(b) => *b as usize,
                    v => option(v, f, &["off", "on", "null"])?,
                };
            }
            let shown = match c.encode_invalid {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => Value::String(lua.create_string("null").map_err(|e| e.to_string())?),
            };
            values([shown])
        }),
        ("decode_invalid_numbers", 1, |_, c, a, f| {
            enum_option(a, 0, f, &mut c.decode_invalid)?;
            values([Value::Boolean(c.decode_invalid)])
        }),
    ];
    for (name, max_args, set) in setters {
        let cfg = config.clone();
        t.set(
            name,
            lua.create_function(move |lua, args: MultiValue| {
                if args.len() > max_args {
                    let msg = format!("bad argument #{} to '{name}' (found too many arguments)", max_args + 1);
                    return Err(super::raise_here(lua, &msg));
                }
                let mut c = cfg.lock();
                set(lua, &mut c, &args, name).map_err(|msg| super::raise_here(lua, &msg))
            })?,
        )?;
    }
    Ok(t)
}

fn num(n: i64) -> Value {
    Value::Number(n as f64)
}

fn values<const N: usize>(v: [Value; N]) -> Result<MultiValue, String> {
    Ok(MultiValue::from_iter(v))
}

/// lua-cjson's `json_integer_option`: an integer in `min..=INT_MAX`.
fn int_option(args: &MultiValue, i: usize, f: &str, min: i64, setting: &mut i64) -> Result<(), String> {
    int_option_max(args, i, f, min, i32::MAX as i64, setting)
}

fn int_option_max(args: &MultiValue, i: usize, f: &str, min: i64, max: i64, setting: &mut i64) -> Result<(), String> {
    let Some(v) = args.get(i).filter(|v| !v.is_nil()) else {
        return Ok(());
    };
    let Some(n) = super::number(v) else {
        return Err(format!(
            "bad argument #{} to '{f}' (number expected, got {})",
            i + 1,
            v.type_name()
        ));
    };
    let n = n as i64;
    if n < min || n > max {
        // lua-cjson names argument #1 whichever it checks.
        return Err(format!(
            "bad argument #1 to '{f}' (expected integer between {min} and {max})"
        ));
    }
    *setting = n;
    Ok(())
}

/// lua-cjson's `json_enum_option` for on/off settings: a boolean, "on" or "off".
fn enum_option(args: &MultiValue, i: usize, f: &str, setting: &mut bool) -> Result<(), String> {
    match args.get(i) {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(b)) => *setting = *b,
        Some(v) => *setting = option(v, f, &["off", "on"])? == 1,
    }
    Ok(())
}

/// `luaL_checkoption` (argument #1, as lua-cjson only checks that one).
fn option(v: &Value, f: &str, options: &[&str]) -> Result<usize, String> {
    let text = match v {
        Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
        Value::Number(n) => super::format_lua_number(*n),
        other => {
            return Err(format!(
                "bad argument #1 to '{f}' (string expected, got {})",
                other.type_name()
            ));
        }
    };
    options
        .iter()
        .position(|o| *o == text)
        .ok_or_else(|| format!("bad argument #1 to '{f}' (invalid option '{text}')"))
}

fn encode(cfg: &Config, v: &Value, depth: i64, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Number(n) => encode_number(cfg, *n, out)?,
        Value::Integer(i) => encode_number(cfg, *i as f64, out)?,
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > cfg.encode_max_depth {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            // lua-cjson's lua_array_length: only positive integer keys make
            // an array; one much sparser than its length is refused.
            let mut max = 0f64;
            let mut items = 0usize;
            let mut is_array = true;
            for pair in t.pairs::<Value, Value>() {
                let (k, _) = pair.map_err(|e| e.to_string())?;
                let k = match k {
                    Value::Number(n) => n,
                    Value::Integer(i) => i as f64,
                    _ => {
                        is_array = false;
                        break;
                    }
                };
                if k.floor() == k && k >= 1.0 {
                    max = max.max(k);
                    items += 1;
                } else {
                    is_array = false;
                    break;
                }
            }
            if is_array
                && cfg.sparse_ratio > 0
                && max > (items as i64 * cfg.sparse_ratio) as f64
                && max > cfg.sparse_safe as f64
            {
                if !cfg.sparse_convert {
                    return Err("Cannot serialise table: excessively sparse array".into());
                }
                is_array = false;
            }
            if is_array && max > 0.0 {
                out.push(b'[');
                for i in 1..=max as usize {
                    if i > 1 {
                        out.push(b',');
                    }
                    let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                    encode(cfg, &item, depth, out)?;
                }
                out.push(b']');
            } else {
                out.push(b'{');
                let mut first = true;
                for pair in t.pairs::<Value, Value>() {
                    let (k, item) = pair.map_err(|e| e.to_string())?;
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    match &k {
                        Value::String(s) => encode_string(&s.as_bytes(), out),
                        Value::Number(_) | Value::Integer(_) => {
                            let n = match k {
                                Value::Number(n) => n,
                                Value::Integer(i) => i as f64,
                                _ => 0.0,
                            };
                            out.push(b'"');
                            encode_number(cfg, n, out)?;
                            out.push(b'"');
                        }
                        other => {
                            return Err(format!(
                                "Cannot serialise {}: table key must be a number or string",
                                other.type_name()
                            ));
                        }
                    }
                    out.push(b':');
                    encode(cfg, &item, depth, out)?;
                }
                out.push(b'}');
            }
        }
        other => return Err(format!("Cannot serialise {}: type not supported", other.type_name())),
    }
    Ok(())
}

fn encode_number(cfg: &Config, n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        match cfg.encode_invalid {
            0 => return Err("Cannot serialise number: must not be NaN or Inf".into()),
            1 if n.is_nan() => {
                out.extend_from_slice(b"nan");
                return Ok(());
            }
            1 => {
                out.extend_from_slice(if n < 0.0 { b"-inf" } else { b"inf" });
                return Ok(());
            }
            _ => {
                out.extend_from_slice(b"null");
                return Ok(());
            }
        }
    }
    out.extend_from_slice(crate::resp::reply::format_g(n, cfg.precision as usize).as_bytes());
    Ok(())
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c if c < 0x20 || c == 0x7f => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// lua-cjson's decoder: values in document order, `null` as `cjson.null`,
/// numbers through `strtod`.
struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    lua: &'a Lua,
    cfg: Config,
}

impl Parser<'_> {
    fn document(&mut self) -> Result<Value, String> {
        let v = self.value(0)?;
        self.skip_ws();
        if self.pos < self.s.len() {
            return Err(self.expected("the end"));
        }
        Ok(v)
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn expected_found(&self, what: &str, found: &str) -> String {
        format!("Expected {what} but found {found} at character {}", self.pos + 1)
    }

    fn expected(&self, what: &str) -> String {
        // lua-cjson names the token it found.
        let rest = &self.s[self.pos.min(self.s.len())..];
        let found = match rest.first() {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b'"') => "T_STRING",
            Some(b',') => "T_COMMA",
            Some(b':') => "T_COLON",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            Some(_) if rest.starts_with(b"true") || rest.starts_with(b"false") => "T_BOOLEAN",
            Some(_) if rest.starts_with(b"null") => "T_NULL",
            Some(_) => "invalid token",
        };
        format!("Expected {what} but found {found} at character {}", self.pos + 1)
    }

    /// Enter the object or array at `pos`: the table it fills.
    fn open(&mut self, depth: usize) -> Result<Table, String> {
        if depth as i64 >= self.cfg.decode_max_depth {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                depth + 1,
                self.pos + 1
            ));
        }
        self.pos += 1;
        let t = self.lua.create_table().map_err(|e| e.to_string())?;
        self.skip_ws();
        Ok(t)
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        self.skip_ws();
        let lua_err = |e: mlua::Error| e.to_string();
        match self.s.get(self.pos) {
            Some(b'{') => {
                let t = self.open(depth)?;
                if self.s.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                loop {
                    self.skip_ws();
                    if self.s.get(self.pos) != Some(&b'"') {
                        return Err(self.expected("object key string"));
                    }
                    let k = self.string()?;
                    self.skip_ws();
                    if self.s.get(self.pos) != Some(&b':') {
                        return Err(self.expected("colon"));
                    }
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    t.raw_set(self.lua.create_string(k).map_err(lua_err)?, v)
                        .map_err(lua_err)?;
                    self.skip_ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Value::Table(t));
                        }
                        _ => return Err(self.expected("comma or object end")),
                    }
                }
            }
            Some(b'[') => {
                let t = self.open(depth)?;
                if self.s.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(Value::Table(t));
                }
                let mut i = 1;
                loop {
                    let v = self.value(depth + 1)?;
                    t.raw_set(i, v).map_err(lua_err)?;
                    i += 1;
                    self.skip_ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Table(t));
                        }
                        _ => return Err(self.expected("comma or array end")),
                    }
                }
            }
            Some(b'"') => {
                let s = self.string()?;
                Ok(Value::String(self.lua.create_string(s).map_err(lua_err)?))
            }
            Some(_) => {
                for (word, v) in [
                    (&b"true"[..], Value::Boolean(true)),
                    (b"false", Value::Boolean(false)),
                    (b"null", json_null()),
                ] {
                    if self.s[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(v);
                    }
                }
                // A number, as lua-cjson reads one: what strtod takes, and
                // (unless decode_invalid_numbers is off) also JSON's invalid
                // numbers: a leading +, leading zeros, hexadecimal, inf, nan.
                let rest = &self.s[self.pos..];
                let numeric = matches!(rest[0], b'-' | b'0'..=b'9');
                let invalid = invalid_number(rest);
                let accepted = if numeric {
                    self.cfg.decode_invalid || !invalid
                } else {
                    self.cfg.decode_invalid && invalid
                };
                if !accepted {
                    return Err(self.expected_found("value", if numeric { "invalid number" } else { "invalid token" }));
                }
                match crate::cmd::parse::strtod(rest) {
                    (_, 0, _) => Err(self.expected_found("value", "invalid number")),
                    (n, used, _) => {
                        self.pos += used;
                        Ok(Value::Number(n))
                    }
                }
            }
            None => Err(self.expected("value")),
        }
    }

    /// A string token at `pos` (the opening quote), unescaped.
    fn string(&mut self) -> Result<Vec<u8>, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return Err(format!(
                    "Expected value but found unexpected end of string at character {}",
                    start + 1
                ));
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(format!(
                            "Expected value but found invalid escape code at character {}",
                            start + 1
                        ));
                    };
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4().ok_or_else(|| self.bad_unicode(start))?;
                            if (0xD800..0xDC00).contains(&cp) {
                                // A surrogate pair makes one code point.
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    return Err(self.bad_unicode(start));
                                }
                                self.pos += 2;
                                let low = self.hex4().ok_or_else(|| self.bad_unicode(start))?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(self.bad_unicode(start));
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(self.bad_unicode(start));
                            }
                            let ch = char::from_u32(cp).ok_or_else(|| self.bad_unicode(start))?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            return Err(format!(
                                "Expected value but found invalid escape code at character {}",
                                start + 1
                            ));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.pos..self.pos + 4)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
        self.pos += 4;
        Some(v)
    }

    fn bad_unicode(&self, start: usize) -> String {
        format!(
            "Expected value but found invalid unicode escape code at character {}",
            start + 1
        )
    }
}

/// LuaBitOp's `barg`: a number to int32, modulo 2^32 (its "add 2^52+2^51
/// and take the low word" trick), so 2^32 + 1 is 1 and -1 is 0xffffffff.
fn tobit(n: f64) -> i32 {
    (n + 6_755_399_441_055_744.0).to_bits() as u32 as i32
}

fn arg(args: &MultiValue, i: usize, name: &str) -> mlua::Result<i32> {
    match args.get(i) {
        Some(Value::Number(n)) => Ok(tobit(*n)),
        Some(Value::Integer(n)) => Ok(tobit(*n as f64)),
        Some(Value::String(s)) => match s
            .to_str()
            .ok()
            .and_then(|s| crate::cmd::parse::parse_f64(s.trim().as_bytes()))
        {
            Some(n) => Ok(tobit(n)),
            None => Err(bad(i, name, "string")),
        },
        other => Err(bad(i, name, other.map_or("no value", |v| v.type_name()))),
    }
}

fn bad(i: usize, name: &str, got: &str) -> mlua::Error {
    mlua::Error::runtime(format!(
        "bad argument #{} to '{name}' (number expected, got {got})",
        i + 1
    ))
}

fn bit(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let unary = |f: fn(i32) -> i32, name: &'static str| {
        lua.create_function(move |_, args: MultiValue| Ok(f(arg(&args, 0, name)?) as f64))
    };
    t.set("tobit", unary(|x| x, "tobit")?)?;
    t.set("bnot", unary(|x| !x, "bnot")?)?;
    t.set("bswap", unary(|x| x.swap_bytes(), "bswap")?)?;
    let fold = |f: fn(i32, i32) -> i32, name: &'static str| {
        lua.create_function(move |_, args: MultiValue| {
            let mut acc = arg(&args, 0, name)?;
            for i in 1..args.len() {
                acc = f(acc, arg(&args, i, name)?);
            }
            Ok(acc as f64)
        })
    };
    t.set("band", fold(|a, b| a & b, "band")?)?;
    t.set("bor", fold(|a, b| a | b, "bor")?)?;
    t.set("bxor", fold(|a, b| a ^ b, "bxor")?)?;
    let shift = |f: fn(i32, u32) -> i32, name: &'static str| {
        lua.create_function(move |_, args: MultiValue| {
            let x = arg(&args, 0, name)?;
            let n = arg(&args, 1, name)? as u32 & 31;
            Ok(f(x, n) as f64)
        })
    };
    t.set("lshift", shift(|x, n| ((x as u32) << n) as i32, "lshift")?)?;
    t.set("rshift", shift(|x, n| ((x as u32) >> n) as i32, "rshift")?)?;
    t.set("arshift", shift(|x, n| x >> n, "arshift")?)?;
    t.set("rol", shift(|x, n| (x as u32).rotate_left(n) as i32, "rol")?)?;
    t.set("ror", shift(|x, n| (x as u32).rotate_right(n) as i32, "ror")?)?;
    t.set(
        "tohex",
        lua.create_function(|_, args: MultiValue| {
            let x = arg(&args, 0, "tohex")? as u32;
            let mut n = if args.len() > 1 { arg(&args, 1, "tohex")? } else { 8 };
            let upper = n < 0;
            if upper {
                n = -n;
            }
            let n = n.clamp(0, 8) as usize;
            let full = if upper { format!("{x:08X}") } else { format!("{x:08x}") };
            Ok(full[8 - n..].to_string())
        })?,
    )?;
    Ok(t)
}

/// lua-cjson's `json_is_invalid_number`: what strtod reads but strict JSON
/// does not allow.
fn invalid_number(s: &[u8]) -> bool {
    let mut p = s;
    if p.first() == Some(&b'+') {
        return true;
    }
    if p.first() == Some(&b'-') {
        p = &p[1..];
    }
    match p.first() {
        Some(b'0') => matches!(p.get(1), Some(b'x' | b'X' | b'0'..=b'9')),
        Some(c) if *c <= b'9' => false,
        _ => {
            let word = |w: &[u8]| p.len() >= 3 && p[..3].eq_ignore_ascii_case(w);
            word(b"inf") || word(b"nan")
        }
    }
}

// ---- struct ----

/// lua-struct's `MAXINTSIZE`: the widest integer option (`i32`).
const STRUCT_MAX_INT: usize = 32;
/// `MAXALIGN` on x86-64: a double's alignment (8).
const STRUCT_MAX_ALIGN: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

/// lua-struct's `Header`: byte order and the largest alignment.
struct StructHeader {
    endian: Endian,
    align: usize,
}

impl Default for StructHeader {
    fn default() -> Self {
        StructHeader {
            endian: Endian::Little,
            align: 1,
        }
    }
}

/// A format string being read (`const char **fmt`).
struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
}

impl Format<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.fmt.get(self.pos)?;
        self.pos += 1;
        Some(c)
    }

    /// `getnum`: the digits that follow, or `default`.
    fn num(&mut self, default: usize) -> Result<usize, String> {
        if !self.fmt.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: usize = 0;
        while let Some(&c) = self.fmt.get(self.pos).filter(|c| c.is_ascii_digit()) {
            let d = (c - b'0') as usize;
            if a > i32::MAX as usize / 10 || a * 10 > i32::MAX as usize - d {
                return Err("integral size overflow".into());
            }
            a = a * 10 + d;
            self.pos += 1;
        }
        Ok(a)
    }

    /// `optsize`: the size of option `opt`, reading its count if it has one.
    fn size(&mut self, opt: u8) -> Result<usize, String> {
        Ok(match opt {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'x' => 1,
            b'c' => self.num(1)?,
            b'i' | b'I' => {
                let size = self.num(4)?;
                if size > STRUCT_MAX_INT {
                    return Err(format!("integral size {size} is larger than limit of {STRUCT_MAX_INT}"));
                }
                size
            }
            _ => 0,
        })
    }

    /// `controloptions`: byte order, alignment, spaces; anything else is
    /// not an option.
    fn control(&mut self, opt: u8, h: &mut StructHeader, f: &str) -> Result<(), String> {
        match opt {
            b' ' => {}
            b'>' => h.endian = Endian::Big,
            b'<' => h.endian = Endian::Little,
            b'!' => {
                let a = self.num(STRUCT_MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return Err(format!("alignment {a} is not a power of 2"));
                }
                h.align = a;
            }
            other => {
                return Err(format!(
                    "bad argument #1 to '{f}' (invalid format option '{}')",
                    other as char
                ));
            }
        }
        Ok(())
    }
}

/// `gettoalign`: padding before an item of `size` at `len`.
fn struct_align(len: usize, h: &StructHeader, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size.wrapping_sub(len & (size - 1))) & (size - 1)
}

fn lua_struct(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            let f = called_as(lua, "pack");
            struct_pack(lua, &args, &f)
                .map_err(|msg| super::raise_here(lua, &msg))
                .and_then(|b| lua.create_string(b))
        })?,
    )?;
    t.set(
        "unpack",
        lua.create_function(|lua, args: MultiValue| {
            let f = called_as(lua, "unpack");
            struct_unpack(lua, &args, &f).map_err(|msg| super::raise_here(lua, &msg))
        })?,
    )?;
    t.set(
        "size",
        lua.create_function(|lua, args: MultiValue| {
            let f = called_as(lua, "size");
            struct_size(&args, &f)
                .map(|n| n as f64)
                .map_err(|msg| super::raise_here(lua, &msg))
        })?,
    )?;
    Ok(t)
}

/// `luaL_checklstring` for argument `i` (0-based).
fn struct_string(args: &MultiValue, i: usize, f: &str) -> Result<Vec<u8>, String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Number(n)) => Ok(super::format_lua_number(*n).into_bytes()),
        Some(Value::Integer(n)) => Ok(n.to_string().into_bytes()),
        other => Err(format!(
            "bad argument #{} to '{f}' (string expected, got {})",
            i + 1,
            other.map_or("no value", |v| v.type_name())
        )),
    }
}

/// `luaL_checknumber` for argument `i` (0-based).
fn struct_number(args: &MultiValue, i: usize, f: &str) -> Result<f64, String> {
    let v = args.get(i);
    v.and_then(super::number).ok_or_else(|| {
        format!(
            "bad argument #{} to '{f}' (number expected, got {})",
            i + 1,
            v.map_or("no value", |v| v.type_name())
        )
    })
}

fn struct_bytes(mut b: Vec<u8>, endian: Endian) -> Vec<u8> {
    if endian == Endian::Big {
        b.reverse();
    }
    b
}

fn struct_pack(_lua: &Lua, args: &MultiValue, f: &str) -> Result<Vec<u8>, String> {
    let fmt = struct_string(args, 0, f)?;
    let mut fmt = Format { fmt: &fmt, pos: 0 };
    let mut h = StructHeader::default();
    let mut arg = 1;
    let mut out = Vec::new();
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(opt)?;
        let pad = struct_align(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = struct_number(args, arg, f)?;
                arg += 1;
                let value = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let le: Vec<u8> = (0..size)
                    .map(|i| if i < 8 { (value >> (8 * i)) as u8 } else { 0 })
                    .collect();
                out.extend(struct_bytes(le, h.endian));
            }
            b'x' => out.push(0),
            b'f' => {
                let n = struct_number(args, arg, f)? as f32;
                arg += 1;
                out.extend(struct_bytes(n.to_le_bytes().to_vec(), h.endian));
            }
            b'd' => {
                let n = struct_number(args, arg, f)?;
                arg += 1;
                out.extend(struct_bytes(n.to_le_bytes().to_vec(), h.endian));
            }
            b'c' | b's' => {
                let s = struct_string(args, arg, f)?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // lua-struct names the argument after the string.
                    return Err(format!("bad argument #{} to '{f}' (string too short)", arg + 1));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            _ => fmt.control(opt, &mut h, f)?,
        }
    }
    Ok(out)
}

fn struct_unpack(lua: &Lua, args: &MultiValue, f: &str) -> Result<MultiValue, String> {
    let fmt = struct_string(args, 0, f)?;
    let data = struct_string(args, 1, f)?;
    let start = match args.get(2) {
        None | Some(Value::Nil) => 1,
        Some(_) => struct_number(args, 2, f)? as i64,
    };
    if start == 0 {
        return Err(format!("bad argument #3 to '{f}' (offset must be 1 or greater)"));
    }
    // A negative offset is a huge size_t in lua-struct: past the data.
    let mut pos = if start < 0 { usize::MAX / 2 } else { start as usize - 1 };
    let too_short = || format!("bad argument #2 to '{f}' (data string too short)");
    let lua_err = |e: mlua::Error| e.to_string();
    let mut fmt = Format { fmt: &fmt, pos: 0 };
    let mut h = StructHeader::default();
    let mut out = MultiValue::new();
    while let Some(opt) = fmt.next() {
        let mut size = fmt.size(opt)?;
        pos = pos.saturating_add(struct_align(pos, &h, opt, size));
        if size > data.len() || pos > data.len() - size {
            return Err(too_short());
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let bytes = &data[pos..pos + size];
                let ordered: Vec<u8> = match h.endian {
                    Endian::Big => bytes.to_vec(),
                    Endian::Little => bytes.iter().rev().copied().collect(),
                };
                let mut l: u64 = 0;
                for b in ordered {
                    l = (l << 8) | b as u64;
                }
                let n = if opt.is_ascii_lowercase() {
                    // Sign extension (the shift wraps at 64 as on x86).
                    let mask = u64::MAX << ((size * 8).wrapping_sub(1) & 63);
                    if l & mask != 0 {
                        l |= mask;
                    }
                    l as i64 as f64
                } else {
                    l as f64
                };
                out.push_back(Value::Number(n));
            }
            b'x' => {}
            b'f' => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&data[pos..pos + 4]);
                let n = match h.endian {
                    Endian::Little => f32::from_le_bytes(b),
                    Endian::Big => f32::from_be_bytes(b),
                };
                out.push_back(Value::Number(n as f64));
            }
            b'd' => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[pos..pos + 8]);
                let n = match h.endian {
                    Endian::Little => f64::from_le_bytes(b),
                    Endian::Big => f64::from_be_bytes(b),
                };
                out.push_back(Value::Number(n));
            }
            b'c' => {
                if size == 0 {
                    let Some(n) = out.back().and_then(super::number) else {
                        return Err("format 'c0' needs a previous size".into());
                    };
                    out.pop_back();
                    size = if n < 0.0 { usize::MAX } else { n as usize };
                    if size > data.len() || pos > data.len() - size {
                        return Err(too_short());
                    }
                }
                let s = lua.create_string(&data[pos..pos + size]).map_err(lua_err)?;
                out.push_back(Value::String(s));
            }
            b's' => {
                let Some(end) = data[pos..].iter().position(|&c| c == 0) else {
                    return Err("unfinished string in data".into());
                };
                let s = lua.create_string(&data[pos..pos + end]).map_err(lua_err)?;
                out.push_back(Value::String(s));
                size = end + 1;
            }
            _ => fmt.control(opt, &mut h, f)?,
        }
        pos += size;
    }
    out.push_back(Value::Number((pos + 1) as f64));
    Ok(out)
}

fn struct_size(args: &MultiValue, f: &str) -> Result<usize, String> {
    let fmt = struct_string(args, 0, f)?;
    let mut fmt = Format { fmt: &fmt, pos: 0 };
    let mut h = StructHeader::default();
    let mut pos: usize = 0;
    while let Some(opt) = fmt.next() {
        let size = fmt.size(opt)?;
        pos += struct_align(pos, &h, opt, size);
        if opt == b's' {
            return Err(format!("bad argument #1 to '{f}' (option 's' has no fixed size)"));
        }
        if opt == b'c' && size == 0 {
            return Err(format!("bad argument #1 to '{f}' (option 'c0' has no fixed size)"));
        }
        if !opt.is_ascii_alphanumeric() {
            fmt.control(opt, &mut h, f)?;
        }
        pos += size;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tobit_wraps_modulo_2_32() {
        assert_eq!(tobit(1.0), 1);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(4_294_967_297.0), 1);
        assert_eq!(tobit(2_147_483_648.0), i32::MIN);
        assert_eq!(tobit(0.5), 0);
        assert_eq!(tobit(1.5), 2);
    }

    #[test]
    fn json_numbers_are_read_as_strtod_reads_them() {
        let read = |s: &str| {
            let (n, used, _) = crate::cmd::parse::strtod(s.as_bytes());
            (used > 0).then_some((n, used))
        };
        let cases: &[(&str, Option<(f64, usize)>)] = &[
            ("12", Some((12.0, 2))),
            ("-1.5e3x", Some((-1500.0, 6))),
            ("1.2.3", Some((1.2, 3))),
            ("1e", Some((1.0, 1))),
            ("0x10", Some((16.0, 4))),
            ("0x1.8p1", Some((3.0, 7))),
            ("0x", Some((0.0, 1))),
            ("+7", Some((7.0, 2))),
            ("007", Some((7.0, 3))),
            ("-Infinity", Some((f64::NEG_INFINITY, 9))),
            ("inf,", Some((f64::INFINITY, 3))),
            ("-", None),
            ("e5", None),
        ];
        for (text, want) in cases {
            assert_eq!(read(text), *want, "{text}");
        }
        let (n, used) = read("-nan(x1)]").unwrap();
        assert!(n.is_nan() && n.is_sign_negative());
        assert_eq!(used, 8);
        assert!(invalid_number(b"+1") && invalid_number(b"0x1") && invalid_number(b"-007") && invalid_number(b"nan"));
        assert!(!invalid_number(b"0.5") && !invalid_number(b"-12") && !invalid_number(b"true"));
    }
}
