//! The hash type: field → value.
//!
//! Storage is a [`Dict`] in both of Redis' encodings; what differs is
//! behaviour Redis makes visible. While a hash is small (at most
//! `hash-max-listpack-entries` fields, each field and value at most
//! `hash-max-listpack-value` bytes: [`super::limits`]) it reports
//! `listpack`, keeps insertion order on removal, and HSCAN returns it whole
//! in one call, as Redis does with a listpack. Past either limit it
//! becomes `hashtable` for good (Redis never converts back), removal is O(1)
//! and HSCAN walks it with a cursor that survives resizes.
//!
//! `bytes` tracks the allocations of fields and values so that
//! [`Hash::mem_usage`] is O(1).

use super::dict::{Dict, DictItem};
use super::entry::round_alloc;
use super::limits::Limits;

/// One field and its value in a single allocation: the field's length
/// (LEB128, one byte below 128), the field, the value. Two `Bytes` per
/// field cost 64 bytes of table slot and two allocations; this costs 16 and
/// one, which for a hash of 100k short fields takes less memory than Redis
/// does for the same hash, and one cache miss fewer per lookup.
#[derive(Clone)]
pub struct Pair(Box<[u8]>);

impl Pair {
    fn new(field: &[u8], value: &[u8]) -> Pair {
        let mut buf = Vec::with_capacity(10 + field.len() + value.len());
        let mut n = field.len();
        while n >= 0x80 {
            buf.push((n as u8) | 0x80);
            n >>= 7;
        }
        buf.push(n as u8);
        buf.extend_from_slice(field);
        buf.extend_from_slice(value);
        Pair(buf.into_boxed_slice())
    }

    /// Where the field starts and ends.
    #[inline]
    fn field_range(&self) -> (usize, usize) {
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let b = self.0[i];
            len |= ((b & 0x7f) as usize) << shift;
            i += 1;
            if b < 0x80 {
                return (i, i + len);
            }
            shift += 7;
        }
    }

    pub fn field(&self) -> &[u8] {
        let (start, end) = self.field_range();
        &self.0[start..end]
    }

    pub fn value(&self) -> &[u8] {
        &self.0[self.field_range().1..]
    }

    /// Overwrite the value with one of the same length.
    fn set_value(&mut self, v: &[u8]) {
        let start = self.field_range().1;
        self.0[start..].copy_from_slice(v);
    }

    /// Bytes accounted for the allocation.
    fn cost(&self) -> usize {
        round_alloc(self.0.len())
    }
}

impl DictItem for Pair {
    fn key(&self) -> &[u8] {
        self.field()
    }
}

#[derive(Clone, Default)]
pub struct Hash {
    dict: Dict<Pair>,
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
    pub fn get(&self, f: &[u8]) -> Option<&[u8]> {
        self.dict.get(f).map(Pair::value)
    }
    pub fn contains(&self, f: &[u8]) -> bool {
        self.dict.find(f).is_some()
    }
    /// Insert or replace (a replaced value keeps its position); returns true
    /// when the field is new. Both are copied: a stored field never pins a
    /// connection's request buffer. `lim` decides a conversion to
    /// `hashtable` (`hash-max-listpack-*`).
    pub fn insert(&mut self, f: &[u8], v: &[u8], lim: &Limits) -> bool {
        self.check_lengths(f, v, lim);
        let new = match self.dict.find(f) {
            Some(i) => {
                let old = self.dict.at_mut(i);
                // A value of the same length (a counter, a fixed-size record) is
                // overwritten where it is: no allocation, no accounting change.
                if old.value().len() == v.len() {
                    old.set_value(v);
                } else {
                    let pair = Pair::new(f, v);
                    let cost = pair.cost();
                    let old = std::mem::replace(old, pair);
                    self.bytes = self.bytes + cost - old.cost();
                }
                false
            }
            None => {
                let pair = Pair::new(f, v);
                self.bytes += pair.cost();
                self.dict.push(pair);
                true
            }
        };
        // Checked on every write, an update too: a limit lowered since the
        // hash grew converts it at its next write, as Redis' hashTypeSet.
        if self.dict.len() > lim.hash_entries {
            self.hashtable = true;
        }
        new
    }
    /// Convert when `f` or `v` is too long for the small encoding.
    fn check_lengths(&mut self, f: &[u8], v: &[u8], lim: &Limits) {
        if f.len() > lim.hash_value || v.len() > lim.hash_value {
            self.hashtable = true;
        }
    }
    /// Remove a field; true when it was there.
    pub fn remove(&mut self, f: &[u8]) -> bool {
        let Some(i) = self.dict.find(f) else {
            return false;
        };
        let pair = if self.hashtable {
            self.dict.swap_remove(i)
        } else {
            self.dict.ordered_remove(i)
        };
        self.bytes -= pair.cost();
        true
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + Clone {
        self.dict.iter().map(|p| (p.field(), p.value()))
    }
    /// The field/value at position `i` (`i < len`), for random picks.
    pub fn at(&self, i: usize) -> (&[u8], &[u8]) {
        let p = self.dict.at(i);
        (p.field(), p.value())
    }
    /// One HSCAN step over a `hashtable` hash; see [`Dict::scan_bucket`].
    pub fn scan_bucket(&self, cursor: u64, mut f: impl FnMut(&[u8], &[u8])) -> u64 {
        self.dict.scan_bucket(cursor, |p| f(p.field(), p.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> &[u8] {
        s.as_bytes()
    }

    const LIM: Limits = Limits {
        hash_entries: 512,
        hash_value: 64,
        ..Limits::KEEP
    };

    #[test]
    fn listpack_until_too_many_fields_and_never_back() {
        let mut h = Hash::default();
        for i in 0..LIM.hash_entries {
            assert!(h.insert(format!("f{i}").as_bytes(), b("v"), &LIM));
        }
        assert_eq!(h.encoding(), "listpack");
        assert!(!h.insert(b("f0"), b("w"), &LIM));
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("one-more"), b("v"), &LIM);
        assert_eq!(h.encoding(), "hashtable");
        for i in 0..LIM.hash_entries {
            h.remove(format!("f{i}").as_bytes());
        }
        assert_eq!(h.len(), 1);
        assert_eq!(h.encoding(), "hashtable");
    }

    #[test]
    fn long_field_or_value_converts() {
        let mut h = Hash::default();
        h.insert(b("f"), &[b'x'; LIM.hash_value], &LIM);
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("f"), &[b'x'; LIM.hash_value + 1], &LIM);
        assert_eq!(h.encoding(), "hashtable");
        let mut h = Hash::default();
        h.insert(&[b'k'; LIM.hash_value + 1], b("v"), &LIM);
        assert_eq!(h.encoding(), "hashtable");
    }

    #[test]
    fn a_pair_holds_any_field_and_value() {
        for flen in [0, 1, 127, 128, 300, 16_384, 70_000] {
            let field: Vec<u8> = (0..flen).map(|i| (i % 251) as u8).collect();
            for value in [&b""[..], b"v", &[0x80; 200][..]] {
                let p = Pair::new(&field, value);
                assert_eq!(p.field(), &field[..]);
                assert_eq!(p.value(), value);
            }
        }
    }

    #[test]
    fn listpack_keeps_insertion_order_and_memory_balances() {
        let mut h = Hash::default();
        for f in ["c", "a", "b", "d"] {
            h.insert(b(f), b("1"), &LIM);
        }
        h.remove(b"a");
        h.insert(b("c"), b("2"), &LIM);
        let order: Vec<&[u8]> = h.iter().map(|(k, _)| k).collect();
        assert_eq!(order, vec![&b"c"[..], b"b", b"d"]);
        assert_eq!(h.get(b"c"), Some(&b"2"[..]));
        let before = h.mem_usage();
        assert!(!h.insert(b("c"), b("3"), &LIM), "same length: in place");
        assert_eq!(h.get(b"c"), Some(&b"3"[..]));
        assert!(
            !h.insert(b("c"), b("a longer value"), &LIM),
            "another length: a new pair"
        );
        assert_eq!(h.get(b"c"), Some(&b"a longer value"[..]));
        assert!(h.mem_usage() >= before);
        for f in ["b", "c", "d"] {
            h.remove(f.as_bytes());
        }
        assert!(h.is_empty());
        assert_eq!(h.mem_usage(), 0);
    }
}
