//! Libraries Redis loads into its interpreter besides Lua's own. `bit` is
//! LuaBitOp 1.0 (what Redis bundles): 32-bit operations on Lua numbers.

use mlua::{Lua, MultiValue, Table, Value};

pub fn install(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    globals.set("bit", bit(lua)?)?;
    Ok(())
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
