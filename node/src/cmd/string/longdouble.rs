//! Emulation of the x87 80-bit `long double` arithmetic behind Redis'
//! INCRBYFLOAT (and HINCRBYFLOAT).
//!
//! Redis parses both operands with `strtold`, adds them in 64-bit-mantissa
//! precision and prints the sum with `%.17Lf` before trimming trailing zeros.
//! The result is visible to clients (`12345.5 + 0.1` answers
//! `12345.59999999999999964`, `0.1 + 0.2` answers `0.3`), so f64 arithmetic
//! cannot reproduce it. Rust has no `long double` and passing one through FFI
//! is impossible, so this module does the three steps exactly: decimal (or C99
//! hex) to the nearest 64-bit-mantissa binary value, an exactly rounded
//! addition, and exact decimal printing — with a small big-integer type, since
//! operands may have thousands of digits (Redis accepts up to 5119 bytes).

use std::cmp::Ordering;

/// Redis' MAX_LONG_DOUBLE_CHARS: longer inputs are rejected.
const MAX_CHARS: usize = 5 * 1024;
/// Smallest exponent of a value `mant * 2^exp` (subnormals included).
const MIN_EXP: i64 = -16445;
/// Largest exponent of a value with a normalized 64-bit mantissa.
const MAX_EXP: i64 = 16320;

/// Unsigned big integer, little-endian 32-bit limbs, no trailing zero limbs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u128(mut v: u128) -> Big {
        let mut l = Vec::new();
        while v != 0 {
            l.push(v as u32);
            v >>= 32;
        }
        Big(l)
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn mul_add_small(&mut self, m: u32, a: u32) {
        let mut carry = a as u64;
        for l in self.0.iter_mut() {
            let v = *l as u64 * m as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    fn mul_pow10(&mut self, mut n: u64) {
        while n >= 9 {
            self.mul_add_small(1_000_000_000, 0);
            n -= 9;
        }
        if n > 0 {
            self.mul_add_small(10u32.pow(n as u32), 0);
        }
    }

    fn bits(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(&top) => (self.0.len() as u64 - 1) * 32 + (32 - top.leading_zeros() as u64),
        }
    }

    fn bit(&self, i: u64) -> bool {
        let limb = (i / 32) as usize;
        limb < self.0.len() && self.0[limb] >> (i % 32) & 1 == 1
    }

    /// Is any bit below position `i` set?
    fn any_below(&self, i: u64) -> bool {
        let limb = (i / 32) as usize;
        for (k, &l) in self.0.iter().enumerate() {
            if k < limb && l != 0 {
                return true;
            }
            if k == limb {
                return l & ((1u32 << (i % 32)) - 1) != 0;
            }
        }
        false
    }

    fn shl(&self, n: u64) -> Big {
        if self.is_zero() {
            return self.clone();
        }
        let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
        let mut out = vec![0u32; limbs];
        let mut carry = 0u32;
        for &l in &self.0 {
            if bits == 0 {
                out.push(l);
            } else {
                out.push((l << bits) | carry);
                carry = l >> (32 - bits);
            }
        }
        if carry != 0 {
            out.push(carry);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// The value shifted right by `n` bits, as u128 (callers keep it small).
    fn shr_u128(&self, n: u64) -> u128 {
        let mut v = 0u128;
        for i in 0..128u64 {
            if self.bit(n + i) {
                v |= 1 << i;
            }
        }
        v
    }

    fn cmp(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }

    /// `self - o`, requires `self >= o`.
    fn sub(&mut self, o: &Big) {
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let v = self.0[i] as i64 - o.0.get(i).copied().unwrap_or(0) as i64 - borrow;
            if v < 0 {
                self.0[i] = (v + (1 << 32)) as u32;
                borrow = 1;
            } else {
                self.0[i] = v as u32;
                borrow = 0;
            }
        }
        self.trim();
    }

    fn add(&mut self, o: &Big) {
        let mut carry = 0u64;
        for i in 0..self.0.len().max(o.0.len()) {
            if i == self.0.len() {
                self.0.push(0);
            }
            let v = self.0[i] as u64 + o.0.get(i).copied().unwrap_or(0) as u64 + carry;
            self.0[i] = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }

    fn divmod_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for l in self.0.iter_mut().rev() {
            let v = (rem << 32) | *l as u64;
            *l = (v / d as u64) as u32;
            rem = v % d as u64;
        }
        self.trim();
        rem as u32
    }

    fn to_decimal(&self) -> String {
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            chunks.push(n.divmod_small(1_000_000_000));
        }
        let mut s = chunks.pop().map_or_else(|| "0".to_string(), |c| c.to_string());
        for c in chunks.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

/// A finite value `(-1)^neg * mant * 2^exp`; `mant == 0` is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongDouble {
    neg: bool,
    mant: u64,
    exp: i64,
}

/// Result of rounding an exact value to long double precision.
enum Rounded {
    Value(LongDouble),
    Overflow,
}

/// Round `n * 2^e` (plus a sticky "something nonzero below") to a 64-bit
/// mantissa, ties to even, as the x87 unit and glibc's `strtold` do.
fn round(neg: bool, n: &Big, e: i64, sticky: bool) -> Rounded {
    if n.is_zero() {
        return Rounded::Value(LongDouble { neg, mant: 0, exp: 0 });
    }
    let bits = n.bits() as i64;
    let mut shift = (bits - 64).max(0);
    if e + shift < MIN_EXP {
        shift = MIN_EXP - e;
    }
    let (mut mant, exp) = if shift <= 0 {
        // Fits: shift left is not needed for correctness, keep it as is.
        (n.shr_u128(0), e)
    } else {
        let s = shift as u64;
        let q = n.shr_u128(s);
        let half = n.bit(s - 1);
        let rest = sticky || n.any_below(s - 1);
        let q = if half && (rest || q & 1 == 1) { q + 1 } else { q };
        (q, e + shift)
    };
    let mut exp = exp;
    if mant >> 64 != 0 {
        mant >>= 1;
        exp += 1;
    }
    // Normalize small values up to a 64-bit mantissa when the exponent allows.
    while mant != 0 && mant >> 63 == 0 && exp > MIN_EXP {
        mant <<= 1;
        exp -= 1;
    }
    if mant != 0 && exp > MAX_EXP {
        return Rounded::Overflow;
    }
    Rounded::Value(LongDouble {
        neg,
        mant: mant as u64,
        exp,
    })
}

/// What `strtold` made of an argument.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Finite(LongDouble),
    Infinite,
}

/// Redis' `string2ld`: the whole argument must be a number `strtold` accepts,
/// no leading space, not NaN, not out of range.
pub fn parse(input: &[u8]) -> Option<Parsed> {
    if input.is_empty() || input.len() >= MAX_CHARS {
        return None;
    }
    // `strtold` stops at a NUL byte, and Redis 7 (`string2ld`) refuses a
    // string it did not consume to the end: "1\02" is not a number.
    if input.contains(&0) {
        return None;
    }
    let s = input;
    let (neg, body) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == b"inf" || lower == b"infinity" {
        return Some(Parsed::Infinite);
    }
    if lower.len() > 2 && lower.starts_with(b"0x") {
        return parse_hex(neg, &lower[2..]);
    }
    parse_dec(neg, &lower)
}

fn digits_then_exponent(s: &[u8], radix: u32, exp_char: u8) -> Option<(Big, i64, bool, i64)> {
    // Returns (mantissa digits, count of fraction digits, saw a digit, exponent).
    let mut n = Big(Vec::new());
    let mut frac = 0i64;
    let mut any = false;
    let mut dot = false;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'.' && !dot {
            dot = true;
        } else if let Some(d) = (c as char).to_digit(radix) {
            n.mul_add_small(radix, d);
            any = true;
            if dot {
                frac += 1;
            }
        } else {
            break;
        }
        i += 1;
    }
    if !any {
        return None;
    }
    let mut exp = 0i64;
    if i < s.len() {
        if s[i] != exp_char {
            return None;
        }
        let rest = &s[i + 1..];
        let (eneg, edigits) = match rest.first() {
            Some(b'-') => (true, &rest[1..]),
            Some(b'+') => (false, &rest[1..]),
            _ => (false, rest),
        };
        if edigits.is_empty() || !edigits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for &d in edigits {
            exp = exp.saturating_mul(10).saturating_add((d - b'0') as i64);
        }
        if eneg {
            exp = -exp;
        }
    }
    Some((n, frac, any, exp))
}

fn parse_dec(neg: bool, s: &[u8]) -> Option<Parsed> {
    let (d, frac, _, exp) = digits_then_exponent(s, 10, b'e')?;
    if d.is_zero() {
        return Some(Parsed::Finite(LongDouble { neg, mant: 0, exp: 0 }));
    }
    let k = exp.saturating_sub(frac);
    // Decimal magnitude: value < 10^(digits + k). Out-of-range values are
    // rejected before any big power of ten is built.
    let digits = d.to_decimal().len() as i64;
    let magnitude = digits.saturating_add(k);
    if magnitude > 4934 {
        return None;
    }
    if magnitude < -4952 {
        return None;
    }
    let r = if k >= 0 {
        let mut n = d;
        n.mul_pow10(k as u64);
        round(neg, &n, 0, false)
    } else {
        let mut p = Big::from_u128(1);
        p.mul_pow10((-k) as u64);
        // Quotient with at least 66 significant bits, remainder as sticky.
        let s = (66 + p.bits() as i64 - d.bits() as i64 + 1).max(0) as u64;
        let mut a = d.shl(s);
        let qbits = a.bits().saturating_sub(p.bits());
        let mut q = Big(Vec::new());
        for i in (0..=qbits).rev() {
            let ps = p.shl(i);
            if a.cmp(&ps) != Ordering::Less {
                a.sub(&ps);
                q.add(&Big::from_u128(1).shl(i));
            }
        }
        round(neg, &q, -(s as i64), !a.is_zero())
    };
    finite(r)
}

fn parse_hex(neg: bool, s: &[u8]) -> Option<Parsed> {
    let (d, frac, _, exp) = digits_then_exponent(s, 16, b'p')?;
    if d.is_zero() {
        return Some(Parsed::Finite(LongDouble { neg, mant: 0, exp: 0 }));
    }
    let e = exp.saturating_sub(frac.saturating_mul(4));
    let top = e.saturating_add(d.bits() as i64);
    if !(MIN_EXP - 1..=MAX_EXP + 64).contains(&top) {
        return None;
    }
    finite(round(neg, &d, e, false))
}

/// `strtold` fails with ERANGE on overflow and on underflow to zero.
fn finite(r: Rounded) -> Option<Parsed> {
    match r {
        Rounded::Value(v) if v.mant != 0 => Some(Parsed::Finite(v)),
        _ => None,
    }
}

impl LongDouble {
    fn signed_big(&self, shift: i64) -> (bool, Big) {
        (self.neg, Big::from_u128(self.mant as u128).shl(shift as u64))
    }

    /// `self + o` rounded to long double; `None` when it overflows to infinity.
    pub fn checked_add(self, o: LongDouble) -> Option<LongDouble> {
        if self.mant == 0 {
            return Some(o);
        }
        if o.mant == 0 {
            return Some(self);
        }
        let (a, mut b) = if self.exp >= o.exp { (self, o) } else { (o, self) };
        // A term far below the other's last bit only decides the rounding
        // direction, which any tiny value of the same sign decides the same way.
        if a.exp - b.exp > 200 {
            b = LongDouble {
                neg: b.neg,
                mant: 1,
                exp: a.exp - 100,
            };
        }
        let e = b.exp;
        let (an, abig) = a.signed_big(a.exp - e);
        let (bn, bbig) = b.signed_big(0);
        let (neg, n) = if an == bn {
            let mut s = abig;
            s.add(&bbig);
            (an, s)
        } else {
            match abig.cmp(&bbig) {
                Ordering::Less => {
                    let mut s = bbig;
                    s.sub(&abig);
                    (bn, s)
                }
                _ => {
                    let mut s = abig;
                    s.sub(&bbig);
                    (an, s)
                }
            }
        };
        match round(neg, &n, e, false) {
            Rounded::Value(v) => Some(v),
            Rounded::Overflow => None,
        }
    }

    /// A finite double, exactly (every double is a long double).
    pub fn from_f64(v: f64) -> LongDouble {
        let bits = v.to_bits();
        let neg = bits >> 63 == 1;
        let biased = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1 << 52) - 1);
        let (mant, exp) = if biased == 0 {
            (frac, -1074)
        } else {
            (frac | (1 << 52), biased - 1075)
        };
        LongDouble { neg, mant, exp }
    }

    /// `%.17Lf` with trailing zeros (and a trailing dot) removed, and `-0`
    /// printed as `0`: Redis' `ld2string(LD_STR_HUMAN)`.
    pub fn to_human(self) -> String {
        let mut num = Big::from_u128(self.mant as u128);
        num.mul_pow10(17);
        let q = if self.exp >= 0 {
            num.shl(self.exp as u64)
        } else {
            let s = (-self.exp) as u64;
            let mut q = Big(Vec::new());
            // q = num >> s, rounded half to even on the exact remainder.
            let qbits = num.bits().saturating_sub(s);
            for i in 0..qbits {
                if num.bit(s + i) {
                    q.add(&Big::from_u128(1).shl(i));
                }
            }
            let half = s >= 1 && num.bit(s - 1);
            let rest = s >= 1 && num.any_below(s - 1);
            if half && (rest || q.bit(0)) {
                q.add(&Big::from_u128(1));
            }
            q
        };
        let mut digits = q.to_decimal();
        while digits.len() < 18 {
            digits.insert(0, '0');
        }
        let (int, frac) = digits.split_at(digits.len() - 17);
        let frac = frac.trim_end_matches('0');
        let mut out = String::new();
        if self.neg {
            out.push('-');
        }
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        if out == "-0" { "0".to_string() } else { out }
    }
}

/// Why an INCRBYFLOAT-style addition failed.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// An operand is not a valid float.
    NotFloat,
    /// The sum is NaN or infinite.
    NanOrInf,
}

/// INCRBYFLOAT's arithmetic on argument strings: `current + increment`,
/// formatted as Redis stores the result.
pub fn incr_by_float(current: &[u8], increment: &[u8]) -> Result<String, AddError> {
    let a = parse(current).ok_or(AddError::NotFloat)?;
    let b = parse(increment).ok_or(AddError::NotFloat)?;
    match (a, b) {
        (Parsed::Finite(a), Parsed::Finite(b)) => a.checked_add(b).map(LongDouble::to_human).ok_or(AddError::NanOrInf),
        _ => Err(AddError::NanOrInf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(a: &str, b: &str) -> String {
        incr_by_float(a.as_bytes(), b.as_bytes()).expect("valid operands")
    }

    #[test]
    fn matches_redis_7_on_x86_64() {
        // Expected values were produced by Redis 7.0.15 on x86-64.
        assert_eq!(add("10.5", "0.1"), "10.6");
        assert_eq!(add("0.1", "0.2"), "0.3");
        assert_eq!(add("12345.5", "0.1"), "12345.59999999999999964");
        assert_eq!(add("1e17", "1.5"), "100000000000000001.5");
        assert_eq!(add("123456789.123", "0.0000001"), "123456789.123000100000354");
        assert_eq!(add("1", "1e-20"), "1");
        assert_eq!(add("3.0e3", "0"), "3000");
        assert_eq!(add("-1", "1"), "0");
        assert_eq!(add("1.5", "-0.5"), "1");
        assert_eq!(add("99999999999999999", "1"), "100000000000000000");
        assert_eq!(add("1e30", "1"), "1000000000000000000024696061952");
        assert_eq!(add("5", "0x10"), "21");
    }

    #[test]
    fn rejects_what_string2ld_rejects() {
        for bad in [
            "", " 1", "1 ", "abc", "1e", "nan", "-nan", "1e5000", "1e-5000", ".", "0x", "1.2.3",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad:?} must be rejected");
        }
        assert_eq!(parse(b"inf"), Some(Parsed::Infinite));
        assert_eq!(parse(b"-Infinity"), Some(Parsed::Infinite));
        assert!(parse(b"1.").is_some());
        assert!(parse(b".5").is_some());
        assert!(parse(b"0e99999999999").is_some());
        assert_eq!(incr_by_float(b"inf", b"1"), Err(AddError::NanOrInf));
        assert_eq!(incr_by_float(b"1e4932", b"1e4932"), Err(AddError::NanOrInf));
    }
}
