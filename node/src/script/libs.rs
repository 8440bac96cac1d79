//! Libraries Redis loads into its interpreter besides Lua's own: `bit`
//! (LuaBitOp 1.0: 32-bit operations on Lua numbers) and `cjson` (lua-cjson
//! 2.1's `encode`, `decode` and `null`, with its defaults: 14 significant
//! digits, `/` escaped, sparse arrays refused, 1000 levels deep).

use mlua::{LightUserData, Lua, MultiValue, Table, Value};

pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    globals.set("bit", bit(lua)?)?;
    globals.set("cjson", cjson(lua)?)?;
    Ok(())
}

/// `cjson.null`: a NULL light userdata, as lua-cjson's.
fn json_null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

const MAX_DEPTH: usize = 1000;

fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("null", json_null())?;
    t.set("_NAME", "cjson")?;
    t.set("_VERSION", "2.1.0")?;
    t.set(
        "encode",
        lua.create_function(|lua, args: MultiValue| {
            if args.len() != 1 {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'encode' (expected 1 argument)",
                ));
            }
            let mut out = Vec::new();
            encode(&args[0], 0, &mut out).map_err(|msg| super::raise_here(lua, &msg))?;
            lua.create_string(out)
        })?,
    )?;
    t.set(
        "decode",
        lua.create_function(|lua, args: MultiValue| {
            let Some(Value::String(s)) = args.front() else {
                return Err(mlua::Error::runtime("bad argument #1 to 'decode' (string expected)"));
            };
            let bytes = s.as_bytes().to_vec();
            let mut p = Parser { s: &bytes, pos: 0, lua };
            let v = p.document().map_err(|msg| super::raise_here(lua, &msg))?;
            Ok(v)
        })?,
    )?;
    Ok(t)
}

fn encode(v: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Number(n) => encode_number(*n, out)?,
        Value::Integer(i) => encode_number(*i as f64, out)?,
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
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
            if is_array && max > (items * 2) as f64 && max > 10.0 {
                return Err("Cannot serialise table: excessively sparse array".into());
            }
            if is_array && max > 0.0 {
                out.push(b'[');
                for i in 1..=max as usize {
                    if i > 1 {
                        out.push(b',');
                    }
                    let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                    encode(&item, depth, out)?;
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
                            encode_number(n, out)?;
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
                    encode(&item, depth, out)?;
                }
                out.push(b'}');
            }
        }
        other => return Err(format!("Cannot serialise {}: type not supported", other.type_name())),
    }
    Ok(())
}

fn encode_number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(crate::resp::reply::format_g(n, 14).as_bytes());
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
        if depth >= MAX_DEPTH {
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
                // A number: what strtod takes of JSON's number characters
                // (hexadecimal, inf and nan are refused, as lua-cjson does).
                let start = self.pos;
                let mut end = start;
                while end < self.s.len() && matches!(self.s[end], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    end += 1;
                }
                let text = std::str::from_utf8(&self.s[start..end]).unwrap_or("");
                match text.parse::<f64>() {
                    Ok(n) if !text.is_empty() => {
                        self.pos = end;
                        Ok(Value::Number(n))
                    }
                    _ => Err(self.expected("value")),
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

#[cfg(test)]
mod tests {
    use super::tobit;

    #[test]
    fn tobit_wraps_modulo_2_32() {
        assert_eq!(tobit(1.0), 1);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(4_294_967_297.0), 1);
        assert_eq!(tobit(2_147_483_648.0), i32::MIN);
        assert_eq!(tobit(0.5), 0);
        assert_eq!(tobit(1.5), 2);
    }
}
