//! Replies and their encoding in RESP2 or RESP3.
//!
//! Handlers build a [`Reply`] tree once; the connection encodes it for the
//! protocol the client chose with `HELLO`. RESP3-only types degrade as Redis
//! degrades them for RESP2 clients (maps become flat arrays, booleans become
//! integers, doubles become bulk strings, nulls become `$-1`/`*-1`).

use bytes::{BufMut, Bytes, BytesMut};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// A simple string (`+...`); must not contain CR or LF.
    Status(Cow<'static, str>),
    /// An error line (`-...`) including its prefix, e.g. `ERR syntax error`.
    Error(Cow<'static, str>),
    Int(i64),
    Bulk(Bytes),
    /// A null bulk string: `$-1` in RESP2.
    Null,
    /// A null array: `*-1` in RESP2.
    NullArray,
    Array(Vec<Reply>),
    /// Key/value pairs: a RESP3 map, a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A RESP3 set, an array in RESP2.
    Set(Vec<Reply>),
    /// A RESP3 double; a bulk string formatted as `%.17g` in RESP2 (Redis 7.0).
    Double(f64),
    /// A RESP3 double given as its text (Redis' `addReplyHumanLongDouble`:
    /// GEOPOS coordinates); the same text as a bulk string in RESP2.
    DoubleText(String),
    /// A RESP3 boolean; the integer 1 or 0 in RESP2.
    Bool(bool),
    /// A RESP3 verbatim string (`=len\r\ntxt:...`), a bulk string in RESP2.
    Verbatim(Bytes),
    /// A RESP3 verbatim string of another format than `txt` (a script's
    /// `{verbatim_string = {format = ..., string = ...}}`).
    VerbatimAs([u8; 3], Bytes),
    /// A RESP3 big number (`(...`), a bulk string in RESP2.
    BigNum(String),
    /// A RESP3 push (out-of-band pub/sub message); an array in RESP2.
    Push(Vec<Reply>),
    /// Already-encoded bytes, appended verbatim (used for replies that do not
    /// depend on the protocol, such as `MONITOR`-style feeds).
    Raw(Bytes),
    /// Several top-level replies to one command (SUBSCRIBE to N channels
    /// answers with N frames).
    Multi(Vec<Reply>),
}

impl Reply {
    pub fn err(msg: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error(msg.into())
    }
    pub fn status(msg: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Status(msg.into())
    }
    pub fn bulk(b: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(b.as_ref()))
    }
    pub fn bulk_static(b: &'static str) -> Reply {
        Reply::Bulk(Bytes::from_static(b.as_bytes()))
    }
    pub fn opt_bulk(b: Option<impl AsRef<[u8]>>) -> Reply {
        match b {
            Some(b) => Reply::bulk(b),
            None => Reply::Null,
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
    /// An array of bulk strings.
    pub fn bulks<I, T>(items: I) -> Reply
    where
        I: IntoIterator<Item = T>,
        T: Into<Bytes>,
    {
        Reply::Array(items.into_iter().map(|b| Reply::Bulk(b.into())).collect())
    }

    /// An array of `n` bulk strings borrowed from the keyspace, encoded at
    /// once (an array of bulk strings is the same bytes in RESP2 and RESP3):
    /// one buffer instead of a copied `Bytes` and a `Reply` per element,
    /// which were two thirds of LRANGE's CPU. `items` is walked twice (the
    /// exact size first).
    pub fn bulk_array<'a, I>(items: I, n: usize) -> Reply
    where
        I: Iterator<Item = &'a [u8]> + Clone,
    {
        // "$<len>\r\n<bytes>\r\n": at most 20 digits of length plus 5 bytes.
        let size = 24 + items.clone().map(|b| b.len() + 25).sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        int_line(&mut out, b'*', n as i64);
        let mut written = 0;
        for b in items {
            bulk(&mut out, b);
            written += 1;
        }
        debug_assert_eq!(written, n, "bulk_array: the iterator must yield n items");
        Reply::Raw(out.freeze())
    }

    /// Encode for protocol `proto` (2 or 3).
    pub fn encode(&self, out: &mut BytesMut, proto: u8) {
        let resp3 = proto >= 3;
        match self {
            Reply::Ok => out.put_slice(b"+OK\r\n"),
            Reply::Status(s) => simple_line(out, b'+', s.as_bytes()),
            Reply::Error(s) => simple_line(out, b'-', s.as_bytes()),
            Reply::Int(i) => int_line(out, b':', *i),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Null => out.put_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" }),
            Reply::NullArray => out.put_slice(if resp3 { b"_\r\n" } else { b"*-1\r\n" }),
            Reply::Array(items) => {
                int_line(out, b'*', items.len() as i64);
                for r in items {
                    r.encode(out, proto);
                }
            }
            Reply::Set(items) => {
                int_line(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                for r in items {
                    r.encode(out, proto);
                }
            }
            Reply::Push(items) => {
                int_line(out, if resp3 { b'>' } else { b'*' }, items.len() as i64);
                for r in items {
                    r.encode(out, proto);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    int_line(out, b'%', pairs.len() as i64);
                } else {
                    int_line(out, b'*', pairs.len() as i64 * 2);
                }
                for (k, v) in pairs {
                    k.encode(out, proto);
                    v.encode(out, proto);
                }
            }
            Reply::Double(d) => {
                let s = format_double(*d);
                if resp3 {
                    line(out, b',', s.as_bytes());
                } else {
                    bulk(out, s.as_bytes());
                }
            }
            Reply::DoubleText(s) => {
                if resp3 {
                    line(out, b',', s.as_bytes());
                } else {
                    bulk(out, s.as_bytes());
                }
            }
            Reply::Bool(b) => {
                if resp3 {
                    out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" });
                } else {
                    out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" });
                }
            }
            Reply::Verbatim(b) => {
                if resp3 {
                    int_line(out, b'=', b.len() as i64 + 4);
                    out.put_slice(b"txt:");
                    out.put_slice(b);
                    out.put_slice(b"\r\n");
                } else {
                    bulk(out, b);
                }
            }
            Reply::VerbatimAs(format, b) => {
                if resp3 {
                    int_line(out, b'=', b.len() as i64 + 4);
                    out.put_slice(format);
                    out.put_slice(b":");
                    out.put_slice(b);
                    out.put_slice(b"\r\n");
                } else {
                    bulk(out, b);
                }
            }
            Reply::BigNum(n) => {
                if resp3 {
                    line(out, b'(', n.as_bytes());
                } else {
                    bulk(out, n.as_bytes());
                }
            }
            Reply::Raw(b) => out.put_slice(b),
            Reply::Multi(items) => {
                for r in items {
                    r.encode(out, proto);
                }
            }
        }
    }
}

fn line(out: &mut BytesMut, prefix: u8, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(prefix);
    out.put_slice(s);
    out.put_slice(b"\r\n");
}

/// A simple string or error: one line, so a CR or LF in it (an error quoting a client's byte,
/// say) would end the frame early and desynchronise the client. Like Redis
/// (`addReplyErrorFormat`), they become spaces.
fn simple_line(out: &mut BytesMut, prefix: u8, s: &[u8]) {
    if !s.iter().any(|&b| b == b'\r' || b == b'\n') {
        return line(out, prefix, s);
    }
    out.reserve(s.len() + 3);
    out.put_u8(prefix);
    out.extend(s.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.put_slice(b"\r\n");
}

fn int_line(out: &mut BytesMut, prefix: u8, i: i64) {
    let mut buf = itoa::Buffer::new();
    line(out, prefix, buf.format(i).as_bytes());
}

fn bulk(out: &mut BytesMut, b: &[u8]) {
    let mut buf = itoa::Buffer::new();
    let len = buf.format(b.len());
    out.reserve(b.len() + len.len() + 5);
    out.put_u8(b'$');
    out.put_slice(len.as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// Format a double as Redis 7.0 does in replies: C's `%.17g`, with `inf`/`-inf`.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d.is_nan() {
        return "nan".into();
    }
    format_g(d, 17)
}

/// C's `%.{prec}g`.
pub fn format_g(d: f64, prec: usize) -> String {
    if d == 0.0 {
        return if d.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let prec = prec.max(1);
    // Scientific form with prec significant digits tells us the exponent after rounding.
    let sci = format!("{:.*e}", prec - 1, d);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{:.*}", decimals, d)).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, proto: u8) -> Vec<u8> {
        let mut b = BytesMut::new();
        r.encode(&mut b, proto);
        b.to_vec()
    }

    #[test]
    fn bulk_array_encodes_as_an_array_of_bulks_in_both_protocols() {
        let items: Vec<&[u8]> = vec![b"a", b"", b"bin\r\n\x00", &[b'x'; 300]];
        for n in 0..=items.len() {
            let pre = Reply::bulk_array(items[..n].iter().copied(), n);
            let tree = Reply::Array(items[..n].iter().map(Reply::bulk).collect());
            for proto in [2, 3] {
                assert_eq!(enc(&pre, proto), enc(&tree, proto), "{n} items, RESP{proto}");
            }
        }
    }

    #[test]
    fn errors_and_statuses_stay_one_line() {
        // The parser's error quotes the byte it found: a raw newline from the client.
        let e = Reply::err(crate::resp::parse::ProtocolError::ExpectedBulk('\n').to_string());
        assert_eq!(enc(&e, 2), b"-Protocol error: expected '$', got ' '\r\n");
        assert_eq!(enc(&Reply::status("a\r\nb"), 3), b"+a  b\r\n");
        assert_eq!(enc(&Reply::err("ERR plain"), 2), b"-ERR plain\r\n");
    }

    #[test]
    fn resp2_and_resp3() {
        let m = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(enc(&m, 2), b"*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, 3), b"%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Null, 2), b"$-1\r\n");
        assert_eq!(enc(&Reply::NullArray, 2), b"*-1\r\n");
        assert_eq!(enc(&Reply::Null, 3), b"_\r\n");
        assert_eq!(enc(&Reply::Bool(true), 2), b":1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), 3), b",1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), 2), b"$3\r\n1.5\r\n");
    }

    #[test]
    fn percent_17g() {
        assert_eq!(format_double(1.1), "1.1000000000000001");
        assert_eq!(format_double(1.0), "1");
        assert_eq!(format_double(-2.5), "-2.5");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(123456789012345678.0), "1.2345678901234568e+17");
        assert_eq!(format_double(0.0001), "0.0001");
        assert_eq!(format_double(0.00001), "1.0000000000000001e-05");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(3.0), "3");
    }
}
