//! The hash type: field → value.
//!
//! Storage is a [`Dict`] in both of Redis' encodings; what differs is
//! behaviour Redis makes visible. While a hash is small (≤ 512 fields, every
//! field and value ≤ 64 bytes: Redis 7.0's `hash-max-listpack-*` defaults) it
//! reports `listpack`, keeps insertion order on removal, and HSCAN returns it
//! whole in one call, as Redis does with a listpack. Past either limit it
//! becomes `hashtable` for good (Redis never converts back), removal is O(1)
//! and HSCAN walks it with a cursor that survives resizes.
//!
//! `bytes` tracks the allocations of fields and values so that
//! [`Hash::mem_usage`] is O(1).

use bytes::Bytes;

use super::dict::Dict;
use super::entry::round_alloc;

/// Redis 7.0's `hash-max-listpack-entries` default.
pub const MAX_LISTPACK_ENTRIES: usize = 512;
/// Redis 7.0's `hash-max-listpack-value` default.
pub const MAX_LISTPACK_VALUE: usize = 64;

#[derive(Clone, Default)]
pub struct Hash {
    dict: Dict<(Bytes, Bytes)>,
    bytes: usize,
    hashtable: bool,
}

impl Hash {
    /// An empty hash already in the large encoding, for restoring one that
    /// was (Redis never converts back, and the order of a large one's
    /// members must not be re-sorted as a small one's would be).
    pub fn new_hashtable() -> Hash {
        Hash {
            hashtable: true,
            ..Hash::default()
        }
    }
    pub fn len(&self) -> usize {
        self.dict.len()
    }
    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }
    pub fn mem_usage(&self) -> usize {
        self.bytes + self.dict.table_bytes()
    }
    pub fn encoding(&self) -> &'static str {
        if self.hashtable { "hashtable" } else { "listpack" }
    }
    /// Small encoding: order is insertion order and scans return everything.
    pub fn is_listpack(&self) -> bool {
        !self.hashtable
    }
    pub fn get(&self, f: &[u8]) -> Option<&Bytes> {
        self.dict.get(f).map(|(_, v)| v)
    }
    pub fn contains(&self, f: &[u8]) -> bool {
        self.dict.find(f).is_some()
    }
    /// Insert or replace (a replaced value keeps its position); returns true
    /// when the field is new. Callers pass owned copies, not slices of a
    /// request buffer, so a stored field never pins a connection's buffer.
    pub fn insert(&mut self, f: Bytes, v: Bytes) -> bool {
        if f.len() > MAX_LISTPACK_VALUE || v.len() > MAX_LISTPACK_VALUE {
            self.hashtable = true;
        }
        let vlen = round_alloc(v.len());
        match self.dict.find(&f) {
            Some(i) => {
                let old = std::mem::replace(&mut self.dict.at_mut(i).1, v);
                self.bytes = self.bytes + vlen - round_alloc(old.len());
                false
            }
            None => {
                self.bytes += round_alloc(f.len()) + vlen;
                self.dict.push((f, v));
                if self.dict.len() > MAX_LISTPACK_ENTRIES {
                    self.hashtable = true;
                }
                true
            }
        }
    }
    pub fn remove(&mut self, f: &[u8]) -> Option<Bytes> {
        let i = self.dict.find(f)?;
        let (k, v) = if self.hashtable {
            self.dict.swap_remove(i)
        } else {
            self.dict.ordered_remove(i)
        };
        self.bytes -= round_alloc(k.len()) + round_alloc(v.len());
        Some(v)
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Bytes, &Bytes)> {
        self.dict.iter().map(|(k, v)| (k, v))
    }
    /// The field/value at position `i` (`i < len`), for random picks.
    pub fn at(&self, i: usize) -> (&Bytes, &Bytes) {
        let (k, v) = self.dict.at(i);
        (k, v)
    }
    /// One HSCAN step over a `hashtable` hash; see [`Dict::scan_bucket`].
    pub fn scan_bucket(&self, cursor: u64, mut f: impl FnMut(&Bytes, &Bytes)) -> u64 {
        self.dict.scan_bucket(cursor, |(k, v)| f(k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn listpack_until_too_many_fields_and_never_back() {
        let mut h = Hash::default();
        for i in 0..MAX_LISTPACK_ENTRIES {
            assert!(h.insert(b(&format!("f{i}")), b("v")));
        }
        assert_eq!(h.encoding(), "listpack");
        assert!(!h.insert(b("f0"), b("w")));
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("one-more"), b("v"));
        assert_eq!(h.encoding(), "hashtable");
        for i in 0..MAX_LISTPACK_ENTRIES {
            h.remove(format!("f{i}").as_bytes());
        }
        assert_eq!(h.len(), 1);
        assert_eq!(h.encoding(), "hashtable");
    }

    #[test]
    fn long_field_or_value_converts() {
        let mut h = Hash::default();
        h.insert(b("f"), Bytes::from(vec![b'x'; MAX_LISTPACK_VALUE]));
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("f"), Bytes::from(vec![b'x'; MAX_LISTPACK_VALUE + 1]));
        assert_eq!(h.encoding(), "hashtable");
        let mut h = Hash::default();
        h.insert(Bytes::from(vec![b'k'; MAX_LISTPACK_VALUE + 1]), b("v"));
        assert_eq!(h.encoding(), "hashtable");
    }

    #[test]
    fn listpack_keeps_insertion_order_and_memory_balances() {
        let mut h = Hash::default();
        for f in ["c", "a", "b", "d"] {
            h.insert(b(f), b("1"));
        }
        h.remove(b"a");
        h.insert(b("c"), b("2"));
        let order: Vec<&[u8]> = h.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(order, vec![&b"c"[..], b"b", b"d"]);
        assert_eq!(h.get(b"c").map(|v| v.as_ref()), Some(&b"2"[..]));
        for f in ["b", "c", "d"] {
            h.remove(f.as_bytes());
        }
        assert!(h.is_empty());
        assert_eq!(h.mem_usage(), 0);
    }
}
