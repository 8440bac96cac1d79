//! Hash slots: every key maps to one of 16384 slots exactly as Redis Cluster does
//! (CRC16/XMODEM of the key, or of the first non-empty `{hash tag}`), even on a
//! single node, so that a key's slot is always known and a slot's keys can be
//! counted, iterated and moved without scanning the whole keyspace.

/// Number of hash slots in the keyspace (Redis Cluster's fixed value).
pub const SLOTS: usize = 16384;

/// `TABLES[k][b]`: the CRC16/XMODEM register after byte `b` followed by
/// `k` zero bytes, starting from zero. `TABLES[0]` is the classic
/// byte-at-a-time table.
const fn make_tables() -> [[u16; 256]; 8] {
    let mut t = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut j = 0;
        while j < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            j += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

static TABLES: [[u16; 256]; 8] = make_tables();

/// CRC16 with the XMODEM polynomial (0x1021), as used by Redis Cluster.
///
/// Slicing-by-8: the byte-at-a-time loop is one long dependency chain (each
/// byte's table index needs the previous byte's result), about 8 cycles a
/// byte, and every command hashes its keys, so a 16-byte key cost more than
/// the hash-table lookup itself. Eight bytes at a time are eight independent
/// lookups XORed together. The CRC is linear, so the 16-bit register folds
/// into the first two bytes of each block and byte `i` of the block
/// contributes `TABLES[7 - i]` (its value followed by `7 - i` zero bytes).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    let (blocks, rest) = data.as_chunks::<8>();
    for b in blocks {
        crc = fold_block(crc, b);
    }
    for &b in rest {
        crc = fold_byte(crc, b);
    }
    crc
}

/// One 8-byte block folded into the CRC (see [`crc16`]). Inlined into both callers: they are
/// on every command's path.
#[inline(always)]
fn fold_block(crc: u16, b: &[u8; 8]) -> u16 {
    TABLES[7][(b[0] ^ (crc >> 8) as u8) as usize]
        ^ TABLES[6][(b[1] ^ crc as u8) as usize]
        ^ TABLES[5][b[2] as usize]
        ^ TABLES[4][b[3] as usize]
        ^ TABLES[3][b[4] as usize]
        ^ TABLES[2][b[5] as usize]
        ^ TABLES[1][b[6] as usize]
        ^ TABLES[0][b[7] as usize]
}

/// One byte folded into the CRC: the classic table step.
#[inline(always)]
fn fold_byte(crc: u16, b: u8) -> u16 {
    (crc << 8) ^ TABLES[0][(((crc >> 8) as u8) ^ b) as usize]
}

/// The byte-at-a-time reference [`crc16`] is checked against.
#[cfg(test)]
fn crc16_bytewise(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc = fold_byte(crc, b);
    }
    crc
}

/// The part of the key that is hashed: the content of the first `{...}` when it
/// is non-empty, otherwise the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The slot of `key`. This runs for every key of every command, up to three
/// times (partition lock, lookup, insert), so it is one pass: each 8-byte
/// block is checked for a `{` with a word-wide test (a byte-at-a-time
/// search cost more than the CRC itself) and folded into the CRC as in
/// [`crc16`]; only a key that has a `{` goes through [`hash_tag`].
pub fn key_slot(key: &[u8]) -> u16 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const BRACES: u64 = u64::from_ne_bytes([b'{'; 8]);
    let tagged = |key: &[u8]| crc16(hash_tag(key)) & (SLOTS as u16 - 1);
    let mut crc: u16 = 0;
    // Fixed-size blocks: one 8-byte load for the word, no bounds checks.
    let (blocks, rest) = key.as_chunks::<8>();
    for b in blocks {
        let word = u64::from_ne_bytes(*b);
        // Some byte of `x` is zero, i.e. some byte of the block is `{`.
        let x = word ^ BRACES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return tagged(key);
        }
        crc = fold_block(crc, b);
    }
    for &b in rest {
        if b == b'{' {
            return tagged(key);
        }
        crc = fold_byte(crc, b);
    }
    crc & (SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_reference_value() {
        // The reference check value of CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn sliced_crc_equals_bytewise() {
        // Every length up to three blocks plus a remainder, varied contents.
        let data: Vec<u8> = (0..64u32).map(|i| (i.wrapping_mul(167) ^ (i >> 3)) as u8).collect();
        for start in 0..8 {
            for end in start..data.len() {
                let d = &data[start..end];
                assert_eq!(crc16(d), crc16_bytewise(d), "{d:?}");
            }
        }
        assert_eq!(crc16(&[0xff; 40]), crc16_bytewise(&[0xff; 40]));
    }

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") & 16383);
        assert_eq!(key_slot(b"foo{{bar}}zap"), crc16(b"{bar") & 16383);
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn one_pass_slot_equals_crc_of_hash_tag() {
        for key in [
            &b"counter:__rand_int__"[..],
            b"{",
            b"}",
            b"{}",
            b"a{b",
            b"a{b}c",
            b"a}{b}",
            b"{{}}",
            b"\x00\xff{\x7f}",
            b"mylist",
            b"key:000000123456",
            b"key:0000{0123456",
            b"key:00000123456{x}",
            b"0123456789abcdef{",
            b"\x7a\x7b\x7c\xfb\x7b\x00\x01\x02\x03",
            b"\xfb\xfb\xfb\xfb\xfb\xfb\xfb\xfb\x7b",
        ] {
            assert_eq!(key_slot(key), crc16(hash_tag(key)) & 16383, "{key:?}");
        }
    }

    #[test]
    fn brace_found_at_every_position() {
        // A `{` (and a tag after it) at each offset of keys up to three
        // blocks long: the word-wide test must see it in every byte lane.
        for len in 0..24usize {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert_eq!(key_slot(&base), crc16(&base) & 16383);
            for at in 0..len {
                let mut key = base.clone();
                key[at] = b'{';
                key.extend_from_slice(b"tag}");
                assert_eq!(key_slot(&key), crc16(hash_tag(&key)) & 16383, "{key:?}");
            }
        }
    }
}
