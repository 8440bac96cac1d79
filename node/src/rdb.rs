//! The pieces of Redis' RDB format that cross the wire between servers:
//! length and string encodings and the `DUMP` payload trailer (RDB version
//! and CRC-64). `FUNCTION DUMP` / `FUNCTION RESTORE` use them, so a
//! payload dumped by Redis 7 restores here and one dumped here restores on
//! Redis 7.
//!
//! ferrokv's own files (snapshots, log segments) are not RDB: see
//! [`crate::persist`]. This module only speaks the exchange format.
//!
//! Strings are written uncompressed (valid RDB; Redis reads them as it
//! reads its own short strings) and read in every encoding Redis writes:
//! plain, the integer encodings and LZF.

use thiserror::Error;

/// The RDB version this node writes into payloads: Redis 7.0's.
pub const VERSION: u16 = 10;
/// The newest RDB version whose payloads this node reads. A function
/// payload has not changed shape up to Redis 7.4's version 12, so payloads
/// from newer Redis 7 releases restore too (Redis 7.0 itself refuses them).
pub const MAX_READ_VERSION: u16 = 12;

/// `RDB_OPCODE_FUNCTION_PRE_GA`: a library as Redis 7.0's release
/// candidates wrote it (name, engine, description, body).
pub const OPCODE_FUNCTION_PRE_GA: u8 = 246;
/// `RDB_OPCODE_FUNCTION2`: a library as its whole code, shebang included.
pub const OPCODE_FUNCTION2: u8 = 245;

const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RdbError {
    #[error("payload truncated")]
    Truncated,
    #[error("invalid length encoding {0:#04x}")]
    BadLength(u8),
    #[error("unknown string encoding {0}")]
    BadEncoding(u8),
    #[error("LZF data does not decompress to its stated length")]
    BadLzf,
}

/// `rdbSaveLen`.
pub fn put_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if len <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// `rdbSaveRawString`, uncompressed.
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Append the DUMP trailer: RDB version, then the CRC-64 of everything
/// before it (both little-endian), as Redis' `createDumpPayload`.
pub fn seal(mut payload: Vec<u8>) -> Vec<u8> {
    payload.extend_from_slice(&VERSION.to_le_bytes());
    let crc = crc64(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    payload
}

/// Redis' `verifyDumpPayload`: the body before the trailer, or `None` when
/// the payload is too short, too new or fails its checksum.
pub fn verify(payload: &[u8]) -> Option<&[u8]> {
    if payload.len() < 10 {
        return None;
    }
    let (body, trailer) = payload.split_at(payload.len() - 10);
    let version = u16::from_le_bytes([trailer[0], trailer[1]]);
    if version > MAX_READ_VERSION {
        return None;
    }
    let want = u64::from_le_bytes(trailer[2..10].try_into().ok()?);
    (crc64(&payload[..payload.len() - 8]) == want).then_some(body)
}

/// CRC-64/Jones as Redis computes it (`crc64.c`, the catalogue's CRC-64/REDIS).
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, data)
}

/// Reads RDB values from a byte slice.
pub struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input }
    }

    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RdbError> {
        if self.input.len() < n {
            return Err(RdbError::Truncated);
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    pub fn byte(&mut self) -> Result<u8, RdbError> {
        Ok(self.take(1)?[0])
    }

    /// `rdbLoadLen`: a length, or `Err(Ok(encoding))` for a specially
    /// encoded string (the two top bits are 11).
    fn len_or_encoding(&mut self) -> Result<Result<u64, u8>, RdbError> {
        let b = self.byte()?;
        Ok(match b >> 6 {
            0 => Ok((b & 0x3f) as u64),
            1 => Ok((((b & 0x3f) as u64) << 8) | self.byte()? as u64),
            2 => match b {
                0x80 => Ok(u32::from_be_bytes(self.array()?) as u64),
                0x81 => Ok(u64::from_be_bytes(self.array()?)),
                _ => return Err(RdbError::BadLength(b)),
            },
            _ => Err(b & 0x3f),
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_or_encoding()? {
            Ok(n) => Ok(n),
            Err(_) => Err(RdbError::BadLength(0xc0)),
        }
    }

    fn size(&mut self) -> Result<usize, RdbError> {
        let n = self.len()?;
        // Never more than what is left: a damaged length cannot make us
        // allocate beyond the payload's own size.
        usize::try_from(n).map_err(|_| RdbError::Truncated)
    }

    /// `rdbGenericLoadStringObject`: a string in any of its encodings.
    pub fn string(&mut self) -> Result<Vec<u8>, RdbError> {
        match self.len_or_encoding()? {
            Ok(n) => {
                let n = usize::try_from(n).map_err(|_| RdbError::Truncated)?;
                Ok(self.take(n)?.to_vec())
            }
            Err(ENC_INT8) => Ok((self.byte()? as i8).to_string().into_bytes()),
            Err(ENC_INT16) => Ok(i16::from_le_bytes(self.array()?).to_string().into_bytes()),
            Err(ENC_INT32) => Ok(i32::from_le_bytes(self.array()?).to_string().into_bytes()),
            Err(ENC_LZF) => {
                let compressed = self.size()?;
                let len = self.size()?;
                let data = self.take(compressed)?;
                // An LZF token expands at most 264 bytes per input byte (a
                // back reference of up to 264 bytes in 2–3 bytes): a stated
                // length beyond that is damage, refused before allocating.
                if len > compressed.saturating_mul(264) {
                    return Err(RdbError::BadLzf);
                }
                let mut out = vec![0u8; len];
                match lzf_rust::decompress(data, &mut out) {
                    Ok(n) if n == len => Ok(out),
                    _ => Err(RdbError::BadLzf),
                }
            }
            Err(e) => Err(RdbError::BadEncoding(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_redis_crc64() {
        // The check value in Redis' crc64.c self-test.
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
    }

    #[test]
    fn lengths_round_trip() {
        for n in [0u64, 1, 63, 64, 16383, 16384, u32::MAX as u64, u32::MAX as u64 + 1] {
            let mut out = Vec::new();
            put_len(&mut out, n);
            let mut r = Reader::new(&out);
            assert_eq!(r.len().unwrap(), n);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn strings_in_every_encoding() {
        let mut r = Reader::new(&[0xc0, 0xfe, 0xc1, 0x39, 0x30, 0xc2, 0x15, 0xcd, 0x5b, 0x07]);
        assert_eq!(r.string().unwrap(), b"-2");
        assert_eq!(r.string().unwrap(), b"12345");
        assert_eq!(r.string().unwrap(), b"123456789");
        let text = b"abcabcabcabcabcabcabcabcabcabcabc".repeat(4);
        let mut buf = vec![0u8; text.len() * 2];
        let n = lzf_rust::compress(&text, &mut buf).unwrap();
        let mut enc = vec![0xc3];
        put_len(&mut enc, n as u64);
        put_len(&mut enc, text.len() as u64);
        enc.extend_from_slice(&buf[..n]);
        assert_eq!(Reader::new(&enc).string().unwrap(), text);
        // A stated length the data cannot produce.
        let mut bad = vec![0xc3];
        put_len(&mut bad, n as u64);
        put_len(&mut bad, text.len() as u64 + 1);
        bad.extend_from_slice(&buf[..n]);
        assert_eq!(Reader::new(&bad).string().unwrap_err(), RdbError::BadLzf);
        assert_eq!(Reader::new(&[0x05, b'a']).string().unwrap_err(), RdbError::Truncated);
        assert_eq!(Reader::new(&[0xc4]).string().unwrap_err(), RdbError::BadEncoding(4));
    }

    #[test]
    fn sealed_payloads_verify() {
        let mut body = vec![OPCODE_FUNCTION2];
        put_string(&mut body, b"#!lua name=x\nreturn 1");
        let sealed = seal(body.clone());
        assert_eq!(verify(&sealed), Some(&body[..]));
        let mut flipped = sealed.clone();
        flipped[3] ^= 1;
        assert_eq!(verify(&flipped), None);
        assert_eq!(verify(&sealed[..9]), None);
    }
}
