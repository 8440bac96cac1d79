//! Just enough x87 80-bit `long double` arithmetic to reproduce Redis'
//! HINCRBYFLOAT (and INCRBYFLOAT) results digit for digit.
//!
//! Redis parses with `strtold`, adds in `long double` (64-bit mantissa on
//! x86-64) and prints with `%.17Lf`, trailing zeros removed. An `f64` has 11
//! mantissa bits fewer, so `10.5 + 0.1` would print as `10.59999999999999964`
//! where Redis prints `10.6`. Here values are `m × 2^e` with a 64-bit `m`,
//! parsing and addition round to nearest-even exactly (big integers where an
//! exact intermediate needs them), and printing rounds the exact binary value
//! as glibc's `printf` does. Subnormals keep a full mantissa here (they all
//! print as 0 anyway); only values that would round to zero underflow.

use std::cmp::Ordering;

/// Largest binary exponent of the mantissa's lowest bit (value < 2^16384).
const MAX_E: i64 = 16384 - 64;
/// Below this exponent of the mantissa's lowest bit a value is smaller than
/// half the least subnormal long double (2^-16445) and rounds to zero.
const MIN_E: i64 = -16446 - 64;
/// Longest string `string2ld` accepts (`MAX_LONG_DOUBLE_CHARS`).
const MAX_CHARS: usize = 5 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LongDouble {
    Zero {
        neg: bool,
    },
    /// `m × 2^e`, `m` normalized (top bit set).
    Finite {
        neg: bool,
        m: u64,
        e: i64,
    },
    Inf {
        neg: bool,
    },
}

/// A little-endian big unsigned integer, for exact intermediates.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn from_u128(mut v: u128) -> Big {
        let mut l = Vec::new();
        while v > 0 {
            l.push(v as u32);
            v >>= 32;
        }
        Big(l)
    }
    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }
    fn bits(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(&top) => (self.0.len() as u64 - 1) * 32 + (32 - top.leading_zeros() as u64),
        }
    }
    fn bit(&self, i: u64) -> bool {
        self.0.get((i / 32) as usize).is_some_and(|l| l >> (i % 32) & 1 == 1)
    }
    /// Any bit below position `i` set?
    fn any_below(&self, i: u64) -> bool {
        let full = (i / 32) as usize;
        if self.0.iter().take(full).any(|&l| l != 0) {
            return true;
        }
        let rem = i % 32;
        rem > 0 && self.0.get(full).is_some_and(|&l| l & ((1u32 << rem) - 1) != 0)
    }
    fn mul_small(&mut self, k: u32) {
        let mut carry = 0u64;
        for l in self.0.iter_mut() {
            let v = *l as u64 * k as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }
    fn add_small(&mut self, k: u32) {
        let mut carry = k as u64;
        for l in self.0.iter_mut() {
            if carry == 0 {
                return;
            }
            let v = *l as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }
    /// Remainder of division by `k`, quotient left in place.
    fn divmod_small(&mut self, k: u32) -> u32 {
        let mut rem = 0u64;
        for l in self.0.iter_mut().rev() {
            let v = (rem << 32) | *l as u64;
            *l = (v / k as u64) as u32;
            rem = v % k as u64;
        }
        self.trim();
        rem as u32
    }
    fn shl(&self, n: u64) -> Big {
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
        if carry > 0 {
            out.push(carry);
        }
        let mut b = Big(out);
        b.trim();
        b
    }
    /// The bits from position `from` upwards (at most 128 of them).
    fn shr_u128(&self, from: u64) -> u128 {
        let mut v = 0u128;
        for i in 0..128 {
            if self.bit(from + i) {
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
    fn sub(&self, o: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for (i, &l) in self.0.iter().enumerate() {
            let mut v = l as i64 - borrow - o.0.get(i).copied().unwrap_or(0) as i64;
            borrow = 0;
            if v < 0 {
                v += 1 << 32;
                borrow = 1;
            }
            out.push(v as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }
    fn pow10(n: u64) -> Big {
        let mut b = Big(vec![1]);
        let mut left = n;
        while left >= 9 {
            b.mul_small(1_000_000_000);
            left -= 9;
        }
        for _ in 0..left {
            b.mul_small(10);
        }
        b
    }
    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            chunks.push(n.divmod_small(1_000_000_000));
        }
        let mut s = chunks.pop().map_or_else(String::new, |c| c.to_string());
        for c in chunks.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

impl LongDouble {
    pub fn is_finite(&self) -> bool {
        !matches!(self, LongDouble::Inf { .. })
    }

    /// `n × 2^e` (plus a nonzero tail below it when `sticky`), rounded to
    /// nearest-even.
    fn round(neg: bool, n: &Big, e: i64, sticky: bool) -> LongDouble {
        if n.is_zero() {
            return LongDouble::Zero { neg };
        }
        let bits = n.bits();
        let (m, e) = if bits <= 64 {
            // Exact (a sticky tail only exists when bits were cut off).
            ((n.shr_u128(0) as u64) << (64 - bits), e - (64 - bits) as i64)
        } else {
            let shift = bits - 64;
            let mut m = n.shr_u128(shift) as u64;
            let half = n.bit(shift - 1);
            let rest = sticky || n.any_below(shift - 1);
            let mut e = e + shift as i64;
            if half && (rest || m & 1 == 1) {
                m = m.wrapping_add(1);
                if m == 0 {
                    m = 1 << 63;
                    e += 1;
                }
            }
            (m, e)
        };
        if e > MAX_E {
            return LongDouble::Inf { neg };
        }
        if e < MIN_E {
            return LongDouble::Zero { neg };
        }
        LongDouble::Finite { neg, m, e }
    }

    /// Redis' `string2ld`: the whole string must be a `strtold` number, no
    /// leading space, no NaN, no overflow or underflow.
    pub fn parse(b: &[u8]) -> Option<LongDouble> {
        if b.is_empty() || b.len() >= MAX_CHARS {
            return None;
        }
        let (neg, rest) = match b[0] {
            b'-' => (true, &b[1..]),
            b'+' => (false, &b[1..]),
            _ => (false, b),
        };
        let lower = rest.to_ascii_lowercase();
        if lower == b"inf" || lower == b"infinity" {
            return Some(LongDouble::Inf { neg });
        }
        if lower.len() > 2 && lower.starts_with(b"0x") {
            Self::parse_digits(neg, &lower[2..], 16)
        } else {
            Self::parse_digits(neg, &lower, 10)
        }
    }

    /// Digits with an optional point and exponent (`e` decimal, `p` binary).
    /// Overflow and underflow (a nonzero literal rounding to zero) are
    /// refused, as `strtold`'s ERANGE makes `string2ld` refuse them.
    fn parse_digits(neg: bool, s: &[u8], radix: u32) -> Option<LongDouble> {
        let exp_char = if radix == 16 { b'p' } else { b'e' };
        let (mant, exp) = match s.iter().position(|&c| c == exp_char) {
            Some(p) => (&s[..p], Some(&s[p + 1..])),
            None => (s, None),
        };
        let mut n = Big(Vec::new());
        let mut frac = 0i64;
        let mut digits = 0;
        let mut dot = false;
        for &c in mant {
            if c == b'.' && !dot {
                dot = true;
                continue;
            }
            let d = (c as char).to_digit(radix)?;
            n.mul_small(radix);
            n.add_small(d);
            digits += 1;
            if dot {
                frac += 1;
            }
        }
        if digits == 0 {
            return None;
        }
        let mut e10: i64 = 0;
        if let Some(e) = exp {
            let (eneg, e) = match e.first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if e.is_empty() || !e.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let mut v: i64 = 0;
            for &d in e {
                v = (v * 10 + (d - b'0') as i64).min(1_000_000);
            }
            e10 = if eneg { -v } else { v };
        }
        if n.is_zero() {
            return Some(LongDouble::Zero { neg });
        }
        let v = if radix == 16 {
            Self::round(neg, &n, e10.saturating_sub(4 * frac), false)
        } else {
            let e10 = e10 - frac;
            if !(-5500..=5000).contains(&e10) {
                return None;
            }
            if e10 >= 0 {
                Self::round(neg, &mul(&n, &Big::pow10(e10 as u64)), 0, false)
            } else {
                // n / 10^-e: scale n so the quotient has 66+ bits, divide exactly.
                let den = Big::pow10((-e10) as u64);
                let k = (den.bits() + 66).saturating_sub(n.bits());
                let (q, rem_nonzero) = div_small_quotient(&n.shl(k), &den);
                Self::round(neg, &q, -(k as i64), rem_nonzero)
            }
        };
        matches!(v, LongDouble::Finite { .. }).then_some(v)
    }

    fn parts(&self) -> Option<(bool, u64, i64)> {
        match *self {
            LongDouble::Finite { neg, m, e } => Some((neg, m, e)),
            _ => None,
        }
    }

    /// `self + o`, rounded to nearest-even.
    fn sum(self, o: LongDouble) -> LongDouble {
        match (self, o) {
            (LongDouble::Inf { neg: a }, LongDouble::Inf { neg: b }) if a != b => LongDouble::Inf { neg: a },
            (LongDouble::Inf { .. }, _) => self,
            (_, LongDouble::Inf { .. }) => o,
            (LongDouble::Zero { neg: a }, LongDouble::Zero { neg: b }) => LongDouble::Zero { neg: a && b },
            (LongDouble::Zero { .. }, _) => o,
            (_, LongDouble::Zero { .. }) => self,
            _ => {
                let (Some((na, ma, ea)), Some((nb, mb, eb))) = (self.parts(), o.parts()) else {
                    return self;
                };
                // An addend more than 66 bits below the other cannot move
                // the rounded result.
                if ea - eb > 66 {
                    return self;
                }
                if eb - ea > 66 {
                    return o;
                }
                let e0 = ea.min(eb);
                let a = Big::from_u128(ma as u128).shl((ea - e0) as u64);
                let b = Big::from_u128(mb as u128).shl((eb - e0) as u64);
                if na == nb {
                    let s = add(&a, &b);
                    Self::round(na, &s, e0, false)
                } else {
                    match a.cmp(&b) {
                        Ordering::Equal => LongDouble::Zero { neg: false },
                        Ordering::Greater => Self::round(na, &a.sub(&b), e0, false),
                        Ordering::Less => Self::round(nb, &b.sub(&a), e0, false),
                    }
                }
            }
        }
    }

    /// Redis' `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, trailing zeros and
    /// dot removed, `-0` as `0`.
    pub fn to_human(&self) -> String {
        let (neg, m, e) = match *self {
            LongDouble::Inf { neg } => return if neg { "-inf".into() } else { "inf".into() },
            LongDouble::Zero { .. } => return "0".into(),
            LongDouble::Finite { neg, m, e } => (neg, m, e),
        };
        let mut s = String::new();
        if neg {
            s.push('-');
        }
        if e >= 0 {
            s.push_str(&Big::from_u128(m as u128).shl(e as u64).to_decimal());
        } else {
            // value × 10^17 = m × 10^17 / 2^k, rounded half-even; m × 10^17 < 2^121.
            let k = (-e) as u64;
            let p = m as u128 * 100_000_000_000_000_000u128;
            let q = if k >= 128 {
                0
            } else {
                let q = p >> k;
                let rem = p & ((1u128 << k) - 1);
                let half = 1u128 << (k - 1);
                if rem > half || (rem == half && q & 1 == 1) {
                    q + 1
                } else {
                    q
                }
            };
            let int = q / 100_000_000_000_000_000;
            let frac = q % 100_000_000_000_000_000;
            let frac = format!("{frac:017}");
            let frac = frac.trim_end_matches('0');
            s.push_str(&int.to_string());
            if !frac.is_empty() {
                s.push('.');
                s.push_str(frac);
            }
        }
        if s == "-0" {
            s = "0".into();
        }
        s
    }
}

impl std::ops::Add for LongDouble {
    type Output = LongDouble;
    fn add(self, o: LongDouble) -> LongDouble {
        self.sum(o)
    }
}

fn add(a: &Big, b: &Big) -> Big {
    let mut out = Vec::with_capacity(a.0.len().max(b.0.len()) + 1);
    let mut carry = 0u64;
    for i in 0..a.0.len().max(b.0.len()) {
        let v = a.0.get(i).copied().unwrap_or(0) as u64 + b.0.get(i).copied().unwrap_or(0) as u64 + carry;
        out.push(v as u32);
        carry = v >> 32;
    }
    if carry > 0 {
        out.push(carry as u32);
    }
    Big(out)
}

fn mul(a: &Big, b: &Big) -> Big {
    let mut out = vec![0u32; a.0.len() + b.0.len()];
    for (i, &x) in a.0.iter().enumerate() {
        let mut carry = 0u64;
        for (j, &y) in b.0.iter().enumerate() {
            let v = out[i + j] as u64 + x as u64 * y as u64 + carry;
            out[i + j] = v as u32;
            carry = v >> 32;
        }
        let mut k = i + b.0.len();
        while carry > 0 {
            let v = out[k] as u64 + carry;
            out[k] = v as u32;
            carry = v >> 32;
            k += 1;
        }
    }
    let mut r = Big(out);
    r.trim();
    r
}

/// `num / den` when the quotient is small (≤ 128 bits), by binary long
/// division; also whether the remainder is nonzero.
fn div_small_quotient(num: &Big, den: &Big) -> (Big, bool) {
    let mut rem = num.clone();
    let top = num.bits().saturating_sub(den.bits());
    let mut q = 0u128;
    for i in (0..=top.min(127)).rev() {
        let d = den.shl(i);
        if rem.cmp(&d) != Ordering::Less {
            rem = rem.sub(&d);
            q |= 1 << i;
        }
    }
    (Big::from_u128(q), !rem.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(a: &str, b: &str) -> String {
        let a = LongDouble::parse(a.as_bytes()).expect("a parses");
        let b = LongDouble::parse(b.as_bytes()).expect("b parses");
        (a + b).to_human()
    }

    #[test]
    fn matches_redis_long_double_results() {
        // Every expectation below is Redis 7.0.15's answer (x86-64).
        assert_eq!(incr("10.5", "0.1"), "10.6");
        assert_eq!(incr("10.6", "-5"), "5.6");
        assert_eq!(incr("5.0e3", "2.0e2"), "5200");
        assert_eq!(incr("0.1", "0.2"), "0.3");
        assert_eq!(incr("0", "1e20"), "100000000000000000000");
        assert_eq!(incr("0", "1.23456789012345678e-5"), "0.00001234567890123");
        assert_eq!(incr("0", "-0.0"), "0");
        assert_eq!(incr("0", "3e-320"), "0");
        assert_eq!(incr("0x10", "1"), "17");
        assert_eq!(incr("17", "0x1p4"), "33");
        assert_eq!(incr("+1", "1"), "2");
        assert_eq!(
            incr("0", "1e308"),
            "99999999999999999996685879655845645660560099847415567207797047994921734868838061872100126921888539320446747225054013223152134749593960583597420814430196418767959100019603190778663109604507106667939153395788938914560543563061268364901618630217086589253444881623791300855757318142424510452728255046343928578048"
        );
        assert_eq!(
            incr("1", "1e70"),
            "10000000000000000000222479489586148259025995410601157579323600873193472"
        );
        assert_eq!(incr("0", "1e-4950"), "0");
        assert_eq!(incr("0", "0.0000000000000000049"), "0");
        assert_eq!(incr("0", "0.000000000000000005"), "0");
        assert_eq!(incr("0", "0.000000000000000015"), "0.00000000000000002");
        assert_eq!(incr("0", "-0.000000000000000005"), "0");
        assert_eq!(incr("0", "0e99999"), "0");
        assert_eq!(incr("0", "0x1.8p1"), "3");
        assert_eq!(incr("0", "123456789.123456789"), "123456789.12345678899873747");
        assert_eq!(
            incr("123456789.12345678899873747", "0.000000001"),
            "123456789.12345678999554366"
        );
        let max = "1.7976931348623157e308";
        let twice = LongDouble::parse(max.as_bytes()).map(|v| (v + v).to_human());
        assert!(twice.is_some_and(|t| t.starts_with("3595386269724631399918420935482088680967")));
        assert!(LongDouble::parse(b"1e4932").is_some());
        assert!(LongDouble::parse(b"1e4933").is_none());
    }

    #[test]
    fn parse_rejects_what_string2ld_rejects() {
        for bad in [
            "", " 1", "1 ", "x", "1e", "nan", "0x", "1e99999", "1..2", "--1", "1e-5000", "1e4933",
        ] {
            assert!(LongDouble::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        for good in ["0", "-0", "0.000", "0e10", ".5", "1.", "inf", "-Infinity", "1E3"] {
            assert!(LongDouble::parse(good.as_bytes()).is_some(), "{good:?}");
        }
    }
}
