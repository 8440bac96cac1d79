//! Argument parsing shared by command handlers, with Redis' exact rules and
//! error messages (an integer is what `string2ll` accepts, a float what
//! `strtold` accepts minus NaN, and so on).

use bytes::Bytes;

use crate::resp::Reply;

pub const ERR_NOT_INT: &str = "ERR value is not an integer or out of range";
pub const ERR_NOT_FLOAT: &str = "ERR value is not a valid float";
pub const ERR_SYNTAX: &str = "ERR syntax error";
pub const ERR_OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const ERR_NO_SUCH_KEY: &str = "ERR no such key";
pub const ERR_INDEX: &str = "ERR index out of range";
pub const ERR_TIMEOUT: &str = "ERR timeout is not a float or out of range";
pub const ERR_TIMEOUT_NEG: &str = "ERR timeout is negative";

/// Redis' `string2ll`: optional '-', no '+', no leading zeros, no spaces.
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    if b == b"0" {
        return Some(0);
    }
    let (neg, digits) = if b[0] == b'-' { (true, &b[1..]) } else { (false, b) };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(v).ok()
    }
}

/// Parse an integer argument or fail with Redis' message.
pub fn int(b: &[u8]) -> Result<i64, Reply> {
    parse_i64(b).ok_or_else(|| Reply::err(ERR_NOT_INT))
}

/// A non-negative integer argument.
pub fn uint(b: &[u8]) -> Result<u64, Reply> {
    match parse_i64(b) {
        Some(v) if v >= 0 => Ok(v as u64),
        _ => Err(Reply::err(ERR_NOT_INT)),
    }
}

/// An integer argument with a custom "out of range" message for negatives.
pub fn positive(b: &[u8], msg: &'static str) -> Result<i64, Reply> {
    match parse_i64(b) {
        Some(v) if v > 0 => Ok(v),
        Some(_) => Err(Reply::err(msg)),
        None => Err(Reply::err(ERR_NOT_INT)),
    }
}

/// Redis' `string2d`/`strtold` as used for float arguments: accepts `inf`,
/// `-inf`, `+inf`, exponents; rejects NaN, spaces and empty strings.
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => {
            if lower.contains("inf") || lower.contains("nan") {
                return None;
            }
            lower.parse::<f64>().ok()?
        }
    };
    if v.is_nan() { None } else { Some(v) }
}

pub fn float(b: &[u8]) -> Result<f64, Reply> {
    parse_f64(b).ok_or_else(|| Reply::err(ERR_NOT_FLOAT))
}

/// glibc's `strtod` on a byte string: the value and how many bytes it used
/// (0 when nothing converts). Redis parses scores with it, so we accept what
/// it accepts: leading spaces (in ranges), hex, `inf`, `infinity`, `nan`.
pub fn strtod(s: &[u8]) -> (f64, usize, bool) {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let start = i;
    let neg = matches!(s.get(i), Some(b'-'));
    if matches!(s.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let rest = &s[i..];
    let lower = |n: usize| -> Vec<u8> { rest.iter().take(n).map(|c| c.to_ascii_lowercase()).collect() };
    let sign = if neg { -1.0 } else { 1.0 };
    if lower(8) == b"infinity" {
        return (sign * f64::INFINITY, i + 8, false);
    }
    if lower(3) == b"inf" {
        return (sign * f64::INFINITY, i + 3, false);
    }
    if lower(3) == b"nan" {
        // `nan(chars)` is one token too; the sign is kept, as glibc's.
        let mut end = i + 3;
        if s.get(end) == Some(&b'(')
            && let Some(close) = s[end..].iter().position(|&c| c == b')')
            && s[end + 1..end + close]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            end += close + 1;
        }
        return (if neg { -f64::NAN } else { f64::NAN }, end, false);
    }
    if lower(2) == b"0x" && rest.get(2).is_some_and(|c| c.is_ascii_hexdigit() || *c == b'.') {
        let (v, used) = hex_float(&rest[2..]);
        if used > 0 {
            return (sign * v, i + 2 + used, false);
        }
    }
    let mut j = i;
    let mut digits = 0;
    let mut nonzero = false;
    while j < s.len() && s[j].is_ascii_digit() {
        nonzero |= s[j] != b'0';
        j += 1;
        digits += 1;
    }
    if j < s.len() && s[j] == b'.' {
        j += 1;
        while j < s.len() && s[j].is_ascii_digit() {
            nonzero |= s[j] != b'0';
            j += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return (0.0, 0, false);
    }
    if j < s.len() && (s[j] == b'e' || s[j] == b'E') {
        let mut k = j + 1;
        if k < s.len() && (s[k] == b'-' || s[k] == b'+') {
            k += 1;
        }
        if k < s.len() && s[k].is_ascii_digit() {
            while k < s.len() && s[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        }
    }
    let text = std::str::from_utf8(&s[start..j]).unwrap_or("0");
    let v: f64 = text.parse().unwrap_or(0.0);
    // ERANGE: overflow to infinity, or underflow of a non-zero number to zero.
    let erange = v.is_infinite() || (v == 0.0 && nonzero);
    (v, j, erange)
}

/// Hex mantissa `[digits][.digits]` with an optional binary exponent `p[+-]n`.
fn hex_float(s: &[u8]) -> (f64, usize) {
    let mut v = 0.0f64;
    let mut i = 0;
    let mut digits = 0;
    let mut scale = 0i32;
    while i < s.len() && s[i].is_ascii_hexdigit() {
        v = v * 16.0 + (s[i] as char).to_digit(16).unwrap_or(0) as f64;
        i += 1;
        digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_hexdigit() {
            v = v * 16.0 + (s[i] as char).to_digit(16).unwrap_or(0) as f64;
            scale -= 4;
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return (0.0, 0);
    }
    if i < s.len() && (s[i] == b'p' || s[i] == b'P') {
        let mut k = i + 1;
        let neg = k < s.len() && s[k] == b'-';
        if k < s.len() && (s[k] == b'-' || s[k] == b'+') {
            k += 1;
        }
        if k < s.len() && s[k].is_ascii_digit() {
            let mut e = 0i32;
            while k < s.len() && s[k].is_ascii_digit() {
                e = e.saturating_mul(10).saturating_add((s[k] - b'0') as i32);
                k += 1;
            }
            scale = scale.saturating_add(if neg { -e } else { e });
            i = k;
        }
    }
    (v * 2f64.powi(scale), i)
}

/// Blocking-command timeout in seconds (float), Redis 7.0 rules. `None` = forever.
///
/// Redis 7.0 computes `(long long) ceill(seconds * 1000)`: a timeout that
/// rounds up to 0 ms (`-0.0001`) means "forever", and a value too large for
/// a `long long` (`inf`, `1e20`) converts to `LLONG_MIN` on x86 and is
/// reported as negative. Deadlines beyond [`MAX_TIMEOUT_MS`] are treated as
/// forever: no client can tell the difference, and it keeps clock
/// arithmetic far from overflow.
pub fn timeout(b: &[u8]) -> Result<Option<std::time::Duration>, Reply> {
    let v = parse_f64(b).ok_or_else(|| Reply::err(ERR_TIMEOUT))?;
    let ms = (v * 1000.0).ceil();
    // 2^63: the first value a `long long` cannot hold.
    if !(0.0..9_223_372_036_854_775_808.0).contains(&ms) {
        return Err(Reply::err(ERR_TIMEOUT_NEG));
    }
    if ms == 0.0 || ms > MAX_TIMEOUT_MS as f64 {
        Ok(None)
    } else {
        Ok(Some(std::time::Duration::from_millis(ms as u64)))
    }
}

/// About 3000 years: longer timeouts block forever.
pub const MAX_TIMEOUT_MS: u64 = 100_000_000_000_000;

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

pub fn syntax() -> Reply {
    Reply::err(ERR_SYNTAX)
}

/// Format an integer as bytes.
pub fn i64_bytes(v: i64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(v).as_bytes())
}

/// Format a float as Redis does for INCRBYFLOAT / HINCRBYFLOAT results
/// (`%.17Lg` of a long double, trailing zeros removed): we print the
/// shortest representation that round-trips, which is what those produce for
/// values that are exactly representable as f64.
pub fn f64_human(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == v.trunc() && v.abs() < 1e17 {
        return format!("{}", v as i64);
    }
    let s = format!("{v}");
    if s.contains('e') {
        crate::resp::reply::format_g(v, 17)
    } else {
        s
    }
}

/// C's `atoi` (leading blanks, optional sign, digits; saturating here).
pub fn atoi(b: &[u8]) -> i64 {
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
        v = v.saturating_mul(10).saturating_add((d - b'0') as i64);
        i += 1;
    }
    if neg { -v } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"1a"), None);
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b""), None);
        assert_eq!(f64_human(10.5), "10.5");
        assert_eq!(f64_human(3.0), "3");
        assert_eq!(f64_human(5.0e3), "5000");
    }

    #[test]
    fn timeouts_as_redis_7_0() {
        use std::time::Duration;
        assert_eq!(timeout(b"0").expect("valid timeout"), None);
        assert_eq!(
            timeout(b"1.5").expect("valid timeout"),
            Some(Duration::from_millis(1500))
        );
        // ceil: a sub-millisecond timeout waits one millisecond...
        assert_eq!(
            timeout(b"0.0001").expect("valid timeout"),
            Some(Duration::from_millis(1))
        );
        // ...and a tiny negative one rounds to 0, which is "forever".
        assert_eq!(timeout(b"-0.0001").expect("valid timeout"), None);
        assert_eq!(timeout(b"1e12").expect("valid timeout"), None);
        for neg in ["-1", "inf", "-inf", "1e20", "9223372036854776"] {
            assert_eq!(timeout(neg.as_bytes()), Err(Reply::err(ERR_TIMEOUT_NEG)), "{neg}");
        }
        assert_eq!(timeout(b"abc"), Err(Reply::err(ERR_TIMEOUT)));
    }
}
