//! One key's slot in a hash table, laid out to keep per-key overhead below Redis'.
//!
//! A string key (the common case) is one allocation holding an optional expiry,
//! the key and the value: `[expire u64 LE]? [varint key length] [key] [value]`.
//! The table holds a 24-byte [`Entry`] (access clock, flags, a fat pointer), so
//! a key with a small value costs one table slot plus one allocation, where
//! Redis pays a dictEntry, a key sds and a robj. Other types live in a boxed
//! [`ObjEntry`] that carries the key, expiry and the structured value.

use super::value::Value;

pub const FLAG_EXPIRE: u8 = 1;
/// The string was modified in place (APPEND/SETRANGE/SETBIT...), so `OBJECT
/// ENCODING` reports `raw` as Redis does for unshared strings.
pub const FLAG_RAW: u8 = 2;
/// The string was stored without Redis' integer encoding attempt (INCRBYFLOAT
/// results), so `OBJECT ENCODING` reports `embstr` (or `raw` past 44 bytes)
/// even when it looks like an integer.
pub const FLAG_EMBSTR: u8 = 4;
/// An int-encoded string that is its own object rather than one of Redis'
/// shared small integers (a COPY duplicates it), for `OBJECT REFCOUNT`.
pub const FLAG_UNSHARED: u8 = 8;

pub struct Entry {
    /// LRU clock (seconds, 24 bits) or, under an LFU policy, 16 bits of
    /// minutes plus an 8-bit logarithmic counter, as in Redis' `robj.lru`.
    pub lru: u32,
    pub flags: u8,
    body: Body,
}

enum Body {
    Str(Box<[u8]>),
    Obj(Box<ObjEntry>),
}

pub struct ObjEntry {
    key: Box<[u8]>,
    expire: u64,
    pub value: Value,
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn get_varint(buf: &[u8]) -> (usize, usize) {
    let mut n = 0usize;
    let mut shift = 0;
    for (i, &b) in buf.iter().enumerate() {
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return (n, i + 1);
        }
        shift += 7;
    }
    // Only buffers built by `encode_str` are decoded, so the varint is complete.
    (n, buf.len())
}

fn encode_str(key: &[u8], val: &[u8], expire: Option<u64>) -> Box<[u8]> {
    let mut buf = Vec::with_capacity(expire.map_or(0, |_| 8) + varint_len(key.len()) + key.len() + val.len());
    if let Some(e) = expire {
        buf.extend_from_slice(&e.to_le_bytes());
    }
    put_varint(&mut buf, key.len());
    buf.extend_from_slice(key);
    buf.extend_from_slice(val);
    buf.into_boxed_slice()
}

/// A borrowed view of a value, strings included.
pub enum ValRef<'a> {
    Str(&'a [u8]),
    Obj(&'a Value),
}

impl Entry {
    pub fn new_str(key: &[u8], val: &[u8], expire: Option<u64>, lru: u32) -> Entry {
        Entry {
            lru,
            flags: if expire.is_some() { FLAG_EXPIRE } else { 0 },
            body: Body::Str(encode_str(key, val, expire)),
        }
    }

    pub fn new_obj(key: &[u8], value: Value, expire: Option<u64>, lru: u32) -> Entry {
        debug_assert!(!matches!(value, Value::Str(_)), "strings are stored inline");
        if let Value::Str(s) = value {
            return Entry::new_str(key, &s, expire, lru);
        }
        Entry {
            lru,
            flags: if expire.is_some() { FLAG_EXPIRE } else { 0 },
            body: Body::Obj(Box::new(ObjEntry {
                key: key.into(),
                expire: expire.unwrap_or(0),
                value,
            })),
        }
    }

    /// Build an entry for any value (strings are laid out inline).
    pub fn new(key: &[u8], value: Value, expire: Option<u64>, lru: u32) -> Entry {
        match value {
            Value::Str(s) => Entry::new_str(key, &s, expire, lru),
            v => Entry::new_obj(key, v, expire, lru),
        }
    }

    fn str_parts(buf: &[u8], has_expire: bool) -> (usize, usize) {
        let off = if has_expire { 8 } else { 0 };
        let (klen, n) = get_varint(&buf[off..]);
        (off + n, off + n + klen)
    }

    pub fn key(&self) -> &[u8] {
        match &self.body {
            Body::Str(buf) => {
                let (s, e) = Self::str_parts(buf, self.flags & FLAG_EXPIRE != 0);
                &buf[s..e]
            }
            Body::Obj(o) => &o.key,
        }
    }

    pub fn expire_at(&self) -> Option<u64> {
        if self.flags & FLAG_EXPIRE == 0 {
            return None;
        }
        match &self.body {
            Body::Str(buf) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[..8]);
                Some(u64::from_le_bytes(b))
            }
            Body::Obj(o) => Some(o.expire),
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at().is_some_and(|e| e <= now_ms)
    }

    pub fn set_expire(&mut self, expire: Option<u64>) {
        match &mut self.body {
            Body::Str(buf) => {
                let has = self.flags & FLAG_EXPIRE != 0;
                let (s, e) = Self::str_parts(buf, has);
                *buf = encode_str(&buf[s..e], &buf[e..], expire);
            }
            Body::Obj(o) => o.expire = expire.unwrap_or(0),
        }
        if expire.is_some() {
            self.flags |= FLAG_EXPIRE;
        } else {
            self.flags &= !FLAG_EXPIRE;
        }
    }

    pub fn is_str(&self) -> bool {
        matches!(self.body, Body::Str(_))
    }

    pub fn str_value(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Str(buf) => {
                let (_, e) = Self::str_parts(buf, self.flags & FLAG_EXPIRE != 0);
                Some(&buf[e..])
            }
            Body::Obj(_) => None,
        }
    }

    pub fn value(&self) -> ValRef<'_> {
        match &self.body {
            Body::Str(_) => ValRef::Str(self.str_value().unwrap_or_default()),
            Body::Obj(o) => ValRef::Obj(&o.value),
        }
    }

    pub fn obj(&self) -> Option<&Value> {
        match &self.body {
            Body::Obj(o) => Some(&o.value),
            Body::Str(_) => None,
        }
    }

    pub fn obj_mut(&mut self) -> Option<&mut Value> {
        match &mut self.body {
            Body::Obj(o) => Some(&mut o.value),
            Body::Str(_) => None,
        }
    }

    /// Replace a string value, keeping the key and expiry.
    pub fn set_str_value(&mut self, val: &[u8]) {
        // A value of the same length (INCR's counter, mostly) is overwritten
        // where it is: no allocation, no copy of the key.
        if let Some(v) = self.str_value_mut()
            && v.len() == val.len()
        {
            v.copy_from_slice(val);
            return;
        }
        let expire = self.expire_at();
        let buf = encode_str(self.key(), val, expire);
        self.body = Body::Str(buf);
    }

    /// The bytes of a string value, for in-place edits (SETBIT, SETRANGE)
    /// that must not copy a value of up to 512MB per command.
    pub fn str_value_mut(&mut self) -> Option<&mut [u8]> {
        let has_expire = self.flags & FLAG_EXPIRE != 0;
        match &mut self.body {
            Body::Str(buf) => {
                let (_, e) = Self::str_parts(buf, has_expire);
                Some(&mut buf[e..])
            }
            Body::Obj(_) => None,
        }
    }

    /// Grow (zero-filled) or shrink a string value to `len` bytes in one
    /// reallocation, which the allocator can often do in place (APPEND,
    /// SETRANGE and SETBIT past the end).
    pub fn resize_str(&mut self, len: usize) {
        let has_expire = self.flags & FLAG_EXPIRE != 0;
        if let Body::Str(buf) = &mut self.body {
            let (_, e) = Self::str_parts(buf, has_expire);
            let mut v = Vec::from(std::mem::take(buf));
            let total = e + len;
            v.reserve_exact(total.saturating_sub(v.len()));
            v.resize(total, 0);
            *buf = v.into_boxed_slice();
        }
    }

    /// Take the value out as an owned [`Value`] (strings are copied out).
    pub fn into_value(self) -> Value {
        match self.body {
            Body::Obj(o) => o.value,
            Body::Str(_) => Value::Str(bytes::Bytes::copy_from_slice(self.str_value().unwrap_or_default())),
        }
    }

    pub fn clone_value(&self) -> Value {
        match &self.body {
            Body::Obj(o) => o.value.clone(),
            Body::Str(_) => Value::Str(bytes::Bytes::copy_from_slice(self.str_value().unwrap_or_default())),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match &self.body {
            Body::Str(_) => "string",
            Body::Obj(o) => o.value.type_name(),
        }
    }

    /// Approximate bytes this key costs: table slot, allocation, value.
    pub fn mem_usage(&self) -> usize {
        const SLOT: usize = std::mem::size_of::<Entry>() + 8;
        match &self.body {
            Body::Str(buf) => SLOT + round_alloc(buf.len()),
            Body::Obj(o) => {
                SLOT + round_alloc(std::mem::size_of::<ObjEntry>()) + round_alloc(o.key.len()) + o.value.mem_usage()
            }
        }
    }
}

/// jemalloc's small size classes, so estimates track what memory really costs.
pub fn round_alloc(n: usize) -> usize {
    match n {
        0 => 0,
        1..=8 => 8,
        9..=128 => n.div_ceil(16) * 16,
        129..=256 => n.div_ceil(32) * 32,
        257..=512 => n.div_ceil(64) * 64,
        513..=1024 => n.div_ceil(128) * 128,
        _ => n.div_ceil(256) * 256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_compact() {
        assert!(std::mem::size_of::<Entry>() <= 24, "{}", std::mem::size_of::<Entry>());
    }

    #[test]
    fn str_roundtrip_with_and_without_expiry() {
        let mut e = Entry::new_str(b"key", b"value", None, 0);
        assert_eq!(e.key(), b"key");
        assert_eq!(e.str_value(), Some(&b"value"[..]));
        assert_eq!(e.expire_at(), None);
        e.set_expire(Some(12345));
        assert_eq!(e.key(), b"key");
        assert_eq!(e.str_value(), Some(&b"value"[..]));
        assert_eq!(e.expire_at(), Some(12345));
        e.set_str_value(b"other");
        assert_eq!(e.expire_at(), Some(12345));
        assert_eq!(e.str_value(), Some(&b"other"[..]));
        e.set_expire(None);
        assert_eq!(e.expire_at(), None);
        e.resize_str(7);
        assert_eq!(e.str_value(), Some(&b"other\0\0"[..]));
        if let Some(v) = e.str_value_mut() {
            v[5] = b'!';
        }
        e.resize_str(6);
        assert_eq!(e.str_value(), Some(&b"other!"[..]));
        assert_eq!(e.key(), b"key");
        let long_key = vec![b'k'; 300];
        let e = Entry::new_str(&long_key, b"", Some(1), 0);
        assert_eq!(e.key(), &long_key[..]);
        assert_eq!(e.str_value(), Some(&b""[..]));
    }
}
