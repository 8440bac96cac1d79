//! A chained hash table with dense storage, the building block of the hash
//! and set types.
//!
//! Items live in one `Vec` (dense, no holes) and buckets hold the index of
//! the first item of their chain. Two things make this shape worth having
//! over a general-purpose map:
//!
//! - **A SCAN cursor that survives resizes.** An item sits in bucket
//!   `hash & mask`, as in Redis' `dict`, so the reverse-binary cursor of
//!   Redis' `dictScan` applies unchanged: every item present for a whole scan
//!   is returned at least once even if the table grows or shrinks between
//!   calls. Open-addressing maps move items around and cannot promise that.
//! - **O(1) random picks.** SRANDMEMBER, SPOP and HRANDFIELD pick
//!   `items[rand % len]`; dense storage makes that uniform and cheap.
//!
//! Resizing only rebuilds the bucket array (hashes are stored with the
//! items), never rehashes keys. Items can be removed either by swapping the
//! last one into the hole (O(1), for large collections) or by shifting
//! (order preserving, for the small encodings whose order Redis exposes).

use std::hash::BuildHasher;
use std::sync::LazyLock;

const NIL: u32 = u32::MAX;
const MIN_BUCKETS: usize = 4;

/// One hasher for every collection, seeded per process so that clients
/// cannot choose colliding members.
static HASHER: LazyLock<foldhash::fast::FixedState> =
    LazyLock::new(|| foldhash::fast::FixedState::with_seed(rand::random()));

fn hash_of(key: &[u8]) -> u32 {
    let h = HASHER.hash_one(key);
    (h ^ (h >> 32)) as u32
}

/// What the table stores: anything with a byte-string key.
pub trait DictItem {
    fn key(&self) -> &[u8];
}

impl DictItem for Box<[u8]> {
    fn key(&self) -> &[u8] {
        self
    }
}

#[derive(Clone)]
struct Slot<T> {
    hash: u32,
    next: u32,
    item: T,
}

#[derive(Clone)]
pub struct Dict<T> {
    slots: Vec<Slot<T>>,
    heads: Vec<u32>,
}

impl<T> Default for Dict<T> {
    fn default() -> Self {
        Dict {
            slots: Vec::new(),
            heads: Vec::new(),
        }
    }
}

impl<T: DictItem> Dict<T> {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held by the table itself (not by what the items point to).
    pub fn table_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot<T>>() + self.heads.capacity() * std::mem::size_of::<u32>()
    }

    fn mask(&self) -> usize {
        self.heads.len().wrapping_sub(1)
    }

    /// Index of the item with `key`.
    pub fn find(&self, key: &[u8]) -> Option<usize> {
        if self.heads.is_empty() {
            return None;
        }
        let h = hash_of(key);
        let mut i = self.heads[h as usize & self.mask()];
        while i != NIL {
            let s = &self.slots[i as usize];
            if s.hash == h && s.item.key() == key {
                return Some(i as usize);
            }
            i = s.next;
        }
        None
    }

    pub fn get(&self, key: &[u8]) -> Option<&T> {
        self.find(key).map(|i| &self.slots[i].item)
    }

    pub fn at(&self, i: usize) -> &T {
        &self.slots[i].item
    }

    /// Mutable access to an item; the caller must not change its key.
    pub fn at_mut(&mut self, i: usize) -> &mut T {
        &mut self.slots[i].item
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> + Clone {
        self.slots.iter().map(|s| &s.item)
    }

    /// Append an item whose key is not present; returns its index.
    pub fn push(&mut self, item: T) -> usize {
        let hash = hash_of(item.key());
        self.slots.push(Slot { hash, next: NIL, item });
        let i = self.slots.len() - 1;
        if self.slots.len() > self.heads.len() {
            self.resize(self.slots.len());
        } else {
            self.link(i);
        }
        i
    }

    /// Insert an item whose key is not present at position `pos`, shifting
    /// the ones after it (keeps an order the caller maintains).
    pub fn insert_at(&mut self, pos: usize, item: T) {
        let hash = hash_of(item.key());
        self.slots.insert(pos, Slot { hash, next: NIL, item });
        let want = self.slots.len().max(self.heads.len());
        self.resize(want);
    }

    /// Remove by moving the last item into the hole (O(1), reorders).
    pub fn swap_remove(&mut self, i: usize) -> T {
        self.unlink(i);
        let last = self.slots.len() - 1;
        if i != last {
            // Whatever pointed at `last` must now point at `i`.
            let b = self.slots[last].hash as usize & self.mask();
            if self.heads[b] == last as u32 {
                self.heads[b] = i as u32;
            } else {
                let mut j = self.heads[b];
                while j != NIL {
                    let next = self.slots[j as usize].next;
                    if next == last as u32 {
                        self.slots[j as usize].next = i as u32;
                        break;
                    }
                    j = next;
                }
            }
        }
        let item = self.slots.swap_remove(i).item;
        self.maybe_shrink();
        item
    }

    /// Remove keeping the order of the other items (O(n)).
    pub fn ordered_remove(&mut self, i: usize) -> T {
        let item = self.slots.remove(i).item;
        // Indexes after `i` moved down by one: rebuild the chains.
        if !self.maybe_shrink() {
            self.resize(self.heads.len());
        }
        item
    }

    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.heads = Vec::new();
    }

    fn link(&mut self, i: usize) {
        let b = self.slots[i].hash as usize & self.mask();
        self.slots[i].next = self.heads[b];
        self.heads[b] = i as u32;
    }

    fn unlink(&mut self, i: usize) {
        let b = self.slots[i].hash as usize & self.mask();
        let next = self.slots[i].next;
        if self.heads[b] == i as u32 {
            self.heads[b] = next;
            return;
        }
        let mut j = self.heads[b];
        while j != NIL {
            let s = &mut self.slots[j as usize];
            if s.next == i as u32 {
                s.next = next;
                return;
            }
            j = s.next;
        }
    }

    /// Rebuild the buckets for at least `n` items (load factor ≤ 1).
    fn resize(&mut self, n: usize) {
        let size = n.max(MIN_BUCKETS).next_power_of_two();
        if self.heads.len() != size {
            self.heads = vec![NIL; size];
        } else {
            self.heads.fill(NIL);
        }
        for i in 0..self.slots.len() {
            self.link(i);
        }
    }

    /// Shrink the buckets (and the item storage) when mostly empty, as Redis
    /// does below 10% fill. Returns true when it rebuilt the buckets.
    fn maybe_shrink(&mut self) -> bool {
        if self.slots.is_empty() {
            self.clear();
            return true;
        }
        if self.slots.capacity() > 4 * self.slots.len() && self.slots.capacity() > 16 {
            self.slots.shrink_to(self.slots.len() * 2);
        }
        if self.heads.len() > MIN_BUCKETS && self.slots.len() * 10 < self.heads.len() {
            self.resize(self.slots.len());
            return true;
        }
        false
    }

    /// One step of SCAN: visit the bucket `cursor` points at and return the
    /// next cursor (0 when the scan is complete), as Redis' `dictScan` does
    /// for a table that is not rehashing.
    pub fn scan_bucket(&self, cursor: u64, mut f: impl FnMut(&T)) -> u64 {
        if self.heads.is_empty() {
            return 0;
        }
        let mask = self.mask() as u64;
        let mut i = self.heads[(cursor & mask) as usize];
        while i != NIL {
            let s = &self.slots[i as usize];
            f(&s.item);
            i = s.next;
        }
        // Reverse-binary increment of the bits under the mask.
        let mut v = cursor | !mask;
        v = v.reverse_bits();
        v = v.wrapping_add(1);
        v.reverse_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn b(s: String) -> Box<[u8]> {
        s.into_bytes().into_boxed_slice()
    }

    fn check_consistent(d: &Dict<Box<[u8]>>) {
        for (i, it) in d.iter().enumerate() {
            assert_eq!(d.find(it), Some(i), "item {i} not reachable");
        }
        let mut linked = 0;
        for &h in &d.heads {
            let mut j = h;
            while j != NIL {
                linked += 1;
                j = d.slots[j as usize].next;
            }
        }
        assert_eq!(linked, d.len());
    }

    #[test]
    fn insert_find_remove_both_ways() {
        let mut d: Dict<Box<[u8]>> = Dict::default();
        for i in 0..1000 {
            d.push(b(format!("m{i}")));
        }
        check_consistent(&d);
        for i in (0..1000).step_by(3) {
            let at = d.find(format!("m{i}").as_bytes()).expect("present");
            d.swap_remove(at);
        }
        check_consistent(&d);
        for i in (1..1000).step_by(3) {
            let at = d.find(format!("m{i}").as_bytes()).expect("present");
            d.ordered_remove(at);
        }
        check_consistent(&d);
        assert_eq!(d.len(), 333);
        assert!(d.find(b"m0").is_none());
        assert!(d.find(b"m2").is_some());
        d.insert_at(0, b("first".into()));
        assert_eq!(d.at(0).as_ref(), b"first");
        check_consistent(&d);
        while !d.is_empty() {
            d.swap_remove(0);
        }
        assert_eq!(d.table_bytes(), 0);
    }

    #[test]
    fn ordered_remove_keeps_order() {
        let mut d: Dict<Box<[u8]>> = Dict::default();
        for s in ["a", "b", "c", "d"] {
            d.push(s.as_bytes().into());
        }
        d.ordered_remove(1);
        let v: Vec<&[u8]> = d.iter().map(|x| x.as_ref()).collect();
        assert_eq!(v, vec![&b"a"[..], b"c", b"d"]);
    }

    #[test]
    fn scan_survives_growth_and_shrinking() {
        let mut d: Dict<Box<[u8]>> = Dict::default();
        for i in 0..50 {
            d.push(b(format!("k{i}")));
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = d.scan_bucket(cursor, |it| {
                seen.insert(it.clone());
            });
            round += 1;
            // Grow a lot, then shrink a lot, while the scan is under way.
            if round < 30 {
                for j in 0..100 {
                    d.push(b(format!("x{round}-{j}")));
                }
            } else if round < 60 {
                for j in 0..100 {
                    if let Some(i) = d.find(format!("x{}-{j}", round - 29).as_bytes()) {
                        d.swap_remove(i);
                    }
                }
                assert!(round < 59 || d.len() == 50);
            }
            if cursor == 0 {
                break;
            }
        }
        assert!(d.heads.len() < 1024, "the table must have shrunk during the scan");
        for i in 0..50 {
            assert!(seen.contains(format!("k{i}").as_bytes()), "k{i} missed");
        }
    }
}

#[cfg(test)]
mod model {
    //! The dictionary against a `BTreeSet` model under random operations.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u16),
        InsertFront(u16),
        SwapRemove(u16),
        OrderedRemove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..300).prop_map(Op::Push),
            1 => (0u16..300).prop_map(Op::InsertFront),
            2 => (0u16..300).prop_map(Op::SwapRemove),
            1 => (0u16..300).prop_map(Op::OrderedRemove),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec(op(), 1..400)) {
            let mut d: Dict<Box<[u8]>> = Dict::default();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Push(k) | Op::InsertFront(k) => {
                        let key: Box<[u8]> = k.to_string().as_bytes().into();
                        if d.find(&key).is_none() {
                            if matches!(op, Op::Push(_)) { d.push(key); } else { d.insert_at(0, key); }
                            model.insert(k);
                        }
                    }
                    Op::SwapRemove(k) | Op::OrderedRemove(k) => {
                        if let Some(i) = d.find(k.to_string().as_bytes()) {
                            let before: Vec<Box<[u8]>> = d.iter().cloned().collect();
                            let removed = if matches!(op, Op::SwapRemove(_)) {
                                d.swap_remove(i)
                            } else {
                                let r = d.ordered_remove(i);
                                let mut expect = before.clone();
                                expect.remove(i);
                                prop_assert!(d.iter().eq(expect.iter()), "order kept");
                                r
                            };
                            prop_assert_eq!(removed, k.to_string().as_bytes().into());
                        }
                        model.remove(&k);
                    }
                }
                prop_assert_eq!(d.len(), model.len());
            }
            for k in 0u16..300 {
                prop_assert_eq!(d.find(k.to_string().as_bytes()).is_some(), model.contains(&k));
            }
            // A full scan from 0 returns every item exactly once (no resize in between).
            let mut seen = Vec::new();
            let mut cursor = 0;
            loop {
                cursor = d.scan_bucket(cursor, |it| seen.push(it.clone()));
                if cursor == 0 { break; }
            }
            seen.sort();
            let mut all: Vec<Box<[u8]>> = d.iter().cloned().collect();
            all.sort();
            prop_assert_eq!(seen, all);
        }
    }
}
