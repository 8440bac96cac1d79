//! The set type: unique members.
//!
//! Storage is a [`Dict`] in both of Redis 7.0's encodings; what differs is
//! behaviour Redis makes visible. While every member is an integer (as
//! Redis' `string2ll` accepts) and there are at most
//! `set-max-intset-entries` of them ([`super::limits`]), the set reports `intset` and keeps its members
//! sorted by value, so SMEMBERS, SSCAN and the set-algebra commands list them
//! in the order Redis' intset does, and SSCAN returns them in one call.
//! After that it becomes `hashtable` for good (Redis never converts back).
//!
//! `bytes` tracks the members' allocations so that [`Set::mem_usage`] is O(1).

use bytes::Bytes;

use super::dict::Dict;
use super::entry::round_alloc;
use super::limits::Limits;
use crate::cmd::parse::parse_i64;

#[derive(Clone, Default)]
pub struct Set {
    /// Members as boxed slices: 16 bytes of table slot each, where a
    /// `Bytes` took 32, which put a large set above Redis' memory per member
    /// (`bench/node-vs-redis.sh` measures it).
    dict: Dict<Box<[u8]>>,
    bytes: usize,
    hashtable: bool,
}

impl Set {
    /// An empty set already in the large encoding, for restoring one that
    /// was (Redis never converts back, and the order of a large one's
    /// members must not be re-sorted as a small one's would be).
    pub fn new_hashtable() -> Set {
        Set {
            hashtable: true,
            ..Set::default()
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
        if self.hashtable { "hashtable" } else { "intset" }
    }
    /// Small encoding: sorted by value and scans return everything.
    pub fn is_intset(&self) -> bool {
        !self.hashtable
    }
    pub fn contains(&self, m: &[u8]) -> bool {
        self.dict.find(m).is_some()
    }
    /// Add a member (copied: a stored member never pins a request buffer);
    /// returns true when it is new. `lim` decides a conversion to
    /// `hashtable` (`set-max-intset-entries`).
    pub fn insert(&mut self, m: &[u8], lim: &Limits) -> bool {
        if self.dict.find(m).is_some() {
            return false;
        }
        self.bytes += round_alloc(m.len());
        let m: Box<[u8]> = m.into();
        if !self.hashtable {
            match parse_i64(&m) {
                Some(v) if self.dict.len() < lim.intset_max() => {
                    let pos = self.sorted_position(v);
                    self.dict.insert_at(pos, m);
                    return true;
                }
                _ => self.hashtable = true,
            }
        }
        self.dict.push(m);
        true
    }
    /// Where integer `v` goes in an intset's sorted order.
    fn sorted_position(&self, v: i64) -> usize {
        let (mut lo, mut hi) = (0, self.dict.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            // Every member of an intset parses; `MIN` only guards the impossible.
            if parse_i64(self.dict.at(mid)).unwrap_or(i64::MIN) < v {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.dict.find(m) {
            Some(i) => {
                self.remove_at(i);
                true
            }
            None => false,
        }
    }
    /// Remove the member at position `i` (`i < len`), for SPOP.
    pub fn remove_at(&mut self, i: usize) -> Bytes {
        let m = if self.hashtable {
            self.dict.swap_remove(i)
        } else {
            self.dict.ordered_remove(i)
        };
        self.bytes -= round_alloc(m.len());
        Bytes::from(m.into_vec())
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.dict.iter().map(|m| &m[..])
    }
    /// The member at position `i` (`i < len`), for random picks.
    pub fn at(&self, i: usize) -> &[u8] {
        self.dict.at(i)
    }
    /// One SSCAN step over a `hashtable` set; see [`Dict::scan_bucket`].
    pub fn scan_bucket(&self, cursor: u64, mut f: impl FnMut(&[u8])) -> u64 {
        self.dict.scan_bucket(cursor, |m| f(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits {
        intset_entries: 512,
        ..Limits::KEEP
    };

    fn b(s: &str) -> &[u8] {
        s.as_bytes()
    }

    #[test]
    fn intset_is_sorted_and_converts_on_a_string() {
        let mut s = Set::default();
        for m in ["10", "-3", "7", "0", "-9223372036854775808", "9223372036854775807"] {
            assert!(s.insert(b(m), &LIM));
        }
        assert!(!s.insert(b("7"), &LIM));
        assert_eq!(s.encoding(), "intset");
        let v: Vec<&[u8]> = s.iter().collect();
        assert_eq!(
            v,
            vec![
                &b"-9223372036854775808"[..],
                b"-3",
                b"0",
                b"7",
                b"10",
                b"9223372036854775807"
            ]
        );
        assert!(s.remove(b"0"));
        assert_eq!(s.encoding(), "intset");
        s.insert(b("07"), &LIM);
        assert_eq!(s.encoding(), "hashtable", "07 is not a canonical integer");
        assert!(s.remove(b"07"));
        assert_eq!(s.encoding(), "hashtable");
    }

    #[test]
    fn intset_converts_past_512_members() {
        let mut s = Set::default();
        for i in 0..LIM.intset_entries {
            s.insert(i.to_string().as_bytes(), &LIM);
        }
        assert_eq!(s.encoding(), "intset");
        s.insert(b("100000"), &LIM);
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), LIM.intset_entries + 1);
        for i in 0..=LIM.intset_entries {
            assert!(s.contains(i.to_string().as_bytes()) || i == LIM.intset_entries);
        }
    }

    #[test]
    fn memory_balances() {
        let mut s = Set::default();
        for i in 0..1000 {
            s.insert(format!("m{i}").as_bytes(), &LIM);
        }
        assert!(s.mem_usage() > 0);
        while !s.is_empty() {
            s.remove_at(0);
        }
        assert_eq!(s.mem_usage(), 0);
    }
}
