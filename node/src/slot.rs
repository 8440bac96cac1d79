//! Hash slots: every key maps to one of 16384 slots exactly as Redis Cluster does
//! (CRC16/XMODEM of the key, or of the first non-empty `{hash tag}`), even on a
//! single node, so that a key's slot is always known and a slot's keys can be
//! counted, iterated and moved without scanning the whole keyspace.

/// Number of hash slots in the keyspace (Redis Cluster's fixed value).
pub const SLOTS: usize = 16384;

const fn make_table() -> [u16; 256] {
    let mut table = [0u16; 256];
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
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC16_TABLE: [u16; 256] = make_table();

/// CRC16 with the XMODEM polynomial (0x1021), as used by Redis Cluster.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc = (crc << 8) ^ CRC16_TABLE[(((crc >> 8) as u8) ^ b) as usize];
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

/// The slot of `key`. This runs for every key of every command, so the CRC
/// is computed in the same pass that looks for a `{`: only a key that has
/// one goes through [`hash_tag`] (a second pass over the key was a
/// measurable share of a pipelined command).
pub fn key_slot(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in key {
        if b == b'{' {
            return crc16(hash_tag(key)) & (SLOTS as u16 - 1);
        }
        crc = (crc << 8) ^ CRC16_TABLE[(((crc >> 8) as u8) ^ b) as usize];
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
        ] {
            assert_eq!(key_slot(key), crc16(hash_tag(key)) & 16383, "{key:?}");
        }
    }
}
