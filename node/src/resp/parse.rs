//! Request parsing: RESP multibulk arrays and telnet-style inline commands.
//!
//! Parsing is two-phase (after mini-redis `frame.rs`): [`check`] walks the buffer
//! and records where each argument lies without copying or allocating per
//! argument; only when a whole request is present are its arguments handed
//! out: borrowed from the buffer by [`view`] for a connection, which runs the
//! command and then advances past the request, or split off as zero-copy
//! [`Bytes`] by [`take`] for a reader that keeps them (a log replay).
//! A request that is not all there yet is [`Check::Incomplete`], not an error.
//!
//! Every length a client sends is checked against limits before it is trusted,
//! so a hostile `*2147483647` or `$9999999999` costs nothing but an error reply.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Largest inline request and largest `*`/`$` header line (Redis' PROTO_INLINE_MAX_SIZE).
pub const INLINE_MAX: usize = 64 * 1024;
/// Largest multibulk element count accepted (Redis accepts up to INT_MAX; we cap
/// far lower because each element costs a slot in the argument vector).
pub const MULTIBULK_MAX: i64 = 1024 * 1024;

/// Limits that a server configuration may change (`proto-max-bulk-len`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk_len: i64,
    /// Before AUTH, Redis refuses multibulk counts above 10 and bulks above 16 KiB
    /// so that an unauthenticated peer cannot make the server buffer much.
    pub unauthenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            unauthenticated: false,
        }
    }
}

/// A protocol violation. The message is what Redis sends after `-ERR `, and the
/// connection is closed after replying, as Redis does.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("Protocol error: too big inline request")]
    InlineTooBig,
    #[error("Protocol error: too big mbulk count string")]
    MbulkCountTooBig,
    #[error("Protocol error: too big bulk count string")]
    BulkCountTooBig,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
}

/// Result of the first phase.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// A whole request of `len` bytes is at the front of the buffer.
    Complete(Request),
    /// More bytes are needed.
    Incomplete,
}

/// Where the arguments of one complete request lie in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Total bytes the request occupies.
    pub len: usize,
    /// Argument byte ranges, or owned arguments for inline requests (quotes and
    /// escapes make inline arguments differ from the raw bytes).
    pub args: Args,
}

/// Argument ranges of a multibulk request. Inline for the common short
/// request, so parsing `GET key` allocates only the argument vector itself.
pub type Ranges = smallvec::SmallVec<[(usize, usize); 5]>;

impl Request {
    /// An empty or null multibulk, or a blank inline line: skipped, as Redis does.
    pub fn has_no_args(&self) -> bool {
        match &self.args {
            Args::Ranges(r) => r.is_empty(),
            Args::Owned(a) => a.is_empty(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Args {
    Ranges(Ranges),
    Owned(Vec<Vec<u8>>),
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    memchr_nl(&buf[from..]).map(|i| from + i)
}

// A plain loop, not `memchr`: protocol lines are a few bytes long, and
// measured per request the SIMD search's setup cost more than it saved.
fn memchr_nl(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// Parse a decimal integer as Redis' `string2ll` does for protocol headers:
/// an optional `-`, no `+`, no spaces, no leading zeros ("0" alone is fine,
/// "-0" is not), and the whole i64 range.
fn parse_len(digits: &[u8]) -> Option<i64> {
    if digits == b"0" {
        return Some(0);
    }
    let (neg, rest) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if rest.is_empty() || rest.len() > 19 || !(b'1'..=b'9').contains(&rest[0]) {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses too.
    let mut v: i64 = 0;
    for &d in rest {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub((d - b'0') as i64)?;
    }
    if neg { Some(v) } else { v.checked_neg() }
}

/// The common header line at `buf[pos..]` (`pos` is just after the `*` or
/// `$`): 1 to 18 digits without a leading zero, or a lone `0`, then CRLF.
/// Returns the value and the index after the LF, in one pass over the
/// bytes. `None` for anything else (a sign, a leading zero, a line not all
/// in the buffer, a malformed one), which the caller hands to the general
/// path, [`find_crlf`] + [`parse_len`]: whatever this accepts, that path
/// would accept with the same value, so errors and incomplete input are
/// decided in one place only.
#[inline]
fn quick_len(buf: &[u8], pos: usize) -> Option<(i64, usize)> {
    let digits = buf.get(pos..)?;
    let first = *digits.first()?;
    if !first.is_ascii_digit() {
        return None;
    }
    let mut v = (first - b'0') as i64;
    let mut i = 1;
    while let Some(&d) = digits.get(i) {
        if !d.is_ascii_digit() {
            break;
        }
        if i == 18 {
            // A 19th digit may overflow: the general path decides.
            return None;
        }
        v = v * 10 + (d - b'0') as i64;
        i += 1;
    }
    // 18 digits cannot overflow an i64; a leading zero is only "0" itself.
    if (first == b'0' && i > 1) || digits.get(i..i + 2) != Some(b"\r\n") {
        return None;
    }
    Some((v, pos + i + 2))
}

/// Phase one: is there a whole request at the front of `buf`?
pub fn check(buf: &[u8], limits: &Limits) -> Result<Check, ProtocolError> {
    if buf.is_empty() {
        return Ok(Check::Incomplete);
    }
    if buf[0] != b'*' {
        return check_inline(buf);
    }
    let (count, mut pos) = match quick_len(buf, 1) {
        Some(quick) => quick,
        None => {
            let Some(nl) = find_crlf(buf, 0) else {
                if buf.len() > INLINE_MAX {
                    return Err(ProtocolError::MbulkCountTooBig);
                }
                return Ok(Check::Incomplete);
            };
            if nl == 0 || buf[nl - 1] != b'\r' {
                return Err(ProtocolError::MultibulkLength);
            }
            (
                parse_len(&buf[1..nl - 1]).ok_or(ProtocolError::MultibulkLength)?,
                nl + 1,
            )
        }
    };
    if count > MULTIBULK_MAX {
        return Err(ProtocolError::MultibulkLength);
    }
    if limits.unauthenticated && count > 10 {
        return Err(ProtocolError::UnauthenticatedMultibulk);
    }
    if count <= 0 {
        // Redis ignores empty and null multibulks.
        return Ok(Check::Complete(Request {
            len: pos,
            args: Args::Ranges(Ranges::new()),
        }));
    }
    let mut ranges = Ranges::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(Check::Incomplete);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError::ExpectedBulk(buf[pos] as char));
        }
        let (len, start) = match quick_len(buf, pos + 1) {
            Some(quick) => quick,
            None => {
                let Some(nl) = find_crlf(buf, pos) else {
                    if buf.len() - pos > INLINE_MAX {
                        return Err(ProtocolError::BulkCountTooBig);
                    }
                    return Ok(Check::Incomplete);
                };
                if nl == pos || buf[nl - 1] != b'\r' {
                    return Err(ProtocolError::BulkLength);
                }
                (
                    parse_len(&buf[pos + 1..nl - 1]).ok_or(ProtocolError::BulkLength)?,
                    nl + 1,
                )
            }
        };
        if len < 0 || len > limits.max_bulk_len {
            return Err(ProtocolError::BulkLength);
        }
        if limits.unauthenticated && len > 16384 {
            return Err(ProtocolError::UnauthenticatedBulk);
        }
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(Check::Incomplete);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::BulkLength);
        }
        ranges.push((start, end));
        pos = end + 2;
    }
    Ok(Check::Complete(Request {
        len: pos,
        args: Args::Ranges(ranges),
    }))
}

fn check_inline(buf: &[u8]) -> Result<Check, ProtocolError> {
    let Some(nl) = memchr_nl(buf) else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::InlineTooBig);
        }
        return Ok(Check::Incomplete);
    };
    let line = if nl > 0 && buf[nl - 1] == b'\r' {
        &buf[..nl - 1]
    } else {
        &buf[..nl]
    };
    let args = split_args(line).ok_or(ProtocolError::UnbalancedQuotes)?;
    Ok(Check::Complete(Request {
        len: nl + 1,
        args: Args::Owned(args),
    }))
}

/// Phase two for a reader that keeps the arguments: split the request off
/// `buf` as zero-copy arguments. The request's own reference becomes its
/// last argument (one reference count fewer per request).
pub fn take(buf: &mut BytesMut, req: Request) -> Vec<Bytes> {
    let mut frame = buf.split_to(req.len).freeze();
    match req.args {
        Args::Ranges(ranges) => {
            let Some((&(last_start, last_end), rest)) = ranges.split_last() else {
                return Vec::new();
            };
            let mut args = Vec::with_capacity(ranges.len());
            args.extend(rest.iter().map(|&(s, e)| frame.slice(s..e)));
            frame.truncate(last_end);
            frame.advance(last_start);
            args.push(frame);
            args
        }
        Args::Owned(args) => args.into_iter().map(Bytes::from).collect(),
    }
}

/// A request's arguments borrowed from the buffer they arrived in. Counted
/// `Bytes` handles per argument cost two atomic operations each (a clone
/// and a drop on the buffer's shared count) plus a vector allocation per
/// request, about a tenth of a pipelined GET's CPU.
pub type Slices<'a> = smallvec::SmallVec<[&'a [u8]; 8]>;

/// Phase two without copying or counting references: the arguments of
/// `req` as slices of `buf` (the buffer [`check`] looked at), and the
/// request's bytes when it was a multibulk. The caller executes the
/// request, then drops the slices and advances `buf` by `req.len`. A
/// connection serves its requests this way; [`take`] remains for readers
/// that keep the arguments (a log replay, a replica's stream).
///
/// [`check`] accepts only canonical lengths (no sign, no leading zeros),
/// so a multibulk's bytes are exactly the RESP encoding of its arguments:
/// a command that the write log records verbatim is logged by copying
/// them instead of encoding its arguments again.
pub fn view<'a>(buf: &'a [u8], req: &'a Request) -> (Slices<'a>, Option<&'a [u8]>) {
    match &req.args {
        Args::Ranges(ranges) => (
            ranges.iter().map(|&(s, e)| &buf[s..e]).collect(),
            (!ranges.is_empty()).then(|| &buf[..req.len]),
        ),
        Args::Owned(args) => (args.iter().map(Vec::as_slice).collect(), None),
    }
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Split an inline command line into arguments, with the quoting rules of
/// Redis' `sdssplitargs` (double quotes with escapes, single quotes literal).
/// Returns `None` on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(args);
        }
        let mut cur = Vec::new();
        let mut inq = false;
        let mut insq = false;
        loop {
            if inq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && let (Some(h), Some(l)) = (hex_val(line[i + 2]), hex_val(line[i + 3]))
                {
                    cur.push(h * 16 + l);
                    i += 3;
                } else if line[i] == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                } else if line[i] == b'"' {
                    // A closing quote must be followed by a space or the end.
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else if insq {
                if i >= n {
                    return None;
                }
                if line[i] == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if line[i] == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        args.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Check::Complete(req) = check(&buf, &Limits::default())? {
            out.push(take(&mut buf, req).into_iter().map(|b| b.to_vec()).collect());
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_pipelining() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![vec![b"GET".to_vec(), b"k".to_vec()], vec![b"PING".to_vec()]]);
    }

    #[test]
    fn quick_len_agrees_with_the_general_path() {
        let lines: &[&[u8]] = &[
            b"0\r\n",
            b"00\r\n",
            b"7\r\n",
            b"16\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"012\r\n",
            b"123456789012345678\r\n",
            b"1234567890123456789\r\n",
            b"9223372036854775807\r\n",
            b"9223372036854775808\r\n",
            b"12\r",
            b"12\n",
            b"12",
            b"1x\r\n",
            b"1 \r\n",
            b"\r\n",
            b"",
        ];
        for line in lines {
            let mut buf = b"$".to_vec();
            buf.extend_from_slice(line);
            let general = find_crlf(&buf, 0)
                .filter(|&nl| nl > 0 && buf[nl - 1] == b'\r')
                .and_then(|nl| parse_len(&buf[1..nl - 1]).map(|v| (v, nl + 1)));
            if let Some(quick) = quick_len(&buf, 1) {
                assert_eq!(Some(quick), general, "{:?}", String::from_utf8_lossy(line));
            }
        }
        assert_eq!(quick_len(b"$16\r\n", 1), Some((16, 5)));
        assert_eq!(quick_len(b"*0\r\n", 1), Some((0, 4)));
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let full = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            assert_eq!(
                check(&full[..cut], &Limits::default()),
                Ok(Check::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_multibulk_frame_is_the_canonical_encoding_of_its_arguments() {
        let input = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$12\r\nhello\r\nworld\r\n*1\r\n$4\r\nPING\r\n";
        let mut buf = BytesMut::from(&input[..]);
        while let Check::Complete(req) = check(&buf, &Limits::default()).unwrap() {
            let (args, frame) = view(&buf, &req);
            let mut encoded = Vec::new();
            crate::wlog::encode_command(&mut encoded, &args);
            assert_eq!(frame, Some(&encoded[..]));
            let viewed: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
            drop(args);
            assert_eq!(take(&mut buf, req), viewed, "take and view agree");
        }
        let buf = BytesMut::from(&b"SET k v\r\n"[..]);
        let Check::Complete(req) = check(&buf, &Limits::default()).unwrap() else {
            panic!("inline request incomplete");
        };
        let (args, frame) = view(&buf, &req);
        assert_eq!(frame, None);
        assert_eq!(args.as_slice(), [&b"SET"[..], b"k", b"v"]);
    }

    #[test]
    fn binary_safe() {
        let got = parse_all(b"*1\r\n$4\r\n\r\n\0\xff\r\n").unwrap();
        assert_eq!(got, vec![vec![b"\r\n\0\xff".to_vec()]]);
    }

    #[test]
    fn bad_lengths() {
        let l = Limits::default();
        assert_eq!(check(b"*abc\r\n", &l), Err(ProtocolError::MultibulkLength));
        assert_eq!(check(b"*99999999999\r\n", &l), Err(ProtocolError::MultibulkLength));
        assert_eq!(check(b"*1\r\n$-1\r\n", &l), Err(ProtocolError::BulkLength));
        assert_eq!(check(b"*1\r\n$99999999999\r\n", &l), Err(ProtocolError::BulkLength));
        assert_eq!(check(b"*1\r\n:1\r\n", &l), Err(ProtocolError::ExpectedBulk(':')));
        assert_eq!(check(b"*1\r\n$1\r\nab\r\n", &l), Err(ProtocolError::BulkLength));
        let l2 = Limits {
            unauthenticated: true,
            ..l
        };
        assert_eq!(check(b"*11\r\n", &l2), Err(ProtocolError::UnauthenticatedMultibulk));
    }

    #[test]
    fn empty_and_null_multibulk_are_skipped() {
        assert_eq!(
            parse_all(b"*0\r\n*-1\r\n").unwrap(),
            vec![Vec::<Vec<u8>>::new(), vec![]]
        );
    }

    #[test]
    fn inline() {
        let got = parse_all(b"SET k \"a b\\n\" 'c d'\r\nPING\n").unwrap();
        assert_eq!(
            got[0],
            vec![b"SET".to_vec(), b"k".to_vec(), b"a b\n".to_vec(), b"c d".to_vec()]
        );
        assert_eq!(got[1], vec![b"PING".to_vec()]);
        assert_eq!(
            check(b"SET \"abc\r\n", &Limits::default()),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert!(matches!(
            check(&[b'a'; INLINE_MAX + 1], &Limits::default()),
            Err(ProtocolError::InlineTooBig)
        ));
        assert_eq!(split_args(b"\"\\x41\\x4a\"").unwrap(), vec![b"AJ".to_vec()]);
    }
}
