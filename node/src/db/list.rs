//! The list type: a deque of elements with a running byte count.
//!
//! Redis keeps lists in a quicklist (a linked list of listpacks); a deque
//! in blocks ([`super::blocks`]) gives the same costs where they matter —
//! O(1) pushes and pops at both ends, growth by one block at a time with
//! nothing copied, O(1) indexing from either end (the quicklist's is O(N)).
//! Each slot is an `Elem`: 24 bytes holding an element of up to 22
//! bytes inline, a longer one boxed, so a list of short elements (queue
//! entries, IDs) costs no allocation per element. Middle edits (LINSERT,
//! LREM, LSET by far index) are O(N) as in Redis. The byte count is kept up to date on every change, so
//! [`List::mem_usage`] stays O(1) for memory accounting and eviction, and the
//! spine is shrunk when a list loses most of its elements so a drained list
//! does not keep its peak footprint.

use bytes::Bytes;

use super::blocks::Blocks;
use super::entry::round_alloc;

/// Slots per block: 64 × 24 bytes is 1536, one of jemalloc's size classes.
const BLOCK: usize = 64;

/// Below this many slots a spine is never shrunk (not worth the copy).
const MIN_SHRINK_CAPACITY: usize = 64;

/// Longest element kept inline in an [`Elem`].
const INLINE: usize = 22;

/// One list element: inline up to [`INLINE`] bytes, else boxed. 24 bytes
/// either way, where a `Bytes` took 32 plus an allocation of its own.
#[derive(Clone)]
enum Elem {
    Inline { len: u8, data: [u8; INLINE] },
    Boxed(Box<[u8]>),
}

impl Elem {
    fn new(v: &[u8]) -> Elem {
        if v.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..v.len()].copy_from_slice(v);
            Elem::Inline {
                len: v.len() as u8,
                data,
            }
        } else {
            Elem::Boxed(v.into())
        }
    }

    /// The element as a `Bytes` of its own (a boxed one is moved, not copied).
    fn into_bytes(self) -> Bytes {
        match self {
            Elem::Inline { len, data } => Bytes::copy_from_slice(&data[..len as usize]),
            Elem::Boxed(b) => Bytes::from(b.into_vec()),
        }
    }
}

/// The empty element: what a vacated slot holds while elements move.
impl Default for Elem {
    fn default() -> Self {
        Elem::Inline {
            len: 0,
            data: [0; INLINE],
        }
    }
}

impl AsRef<[u8]> for Elem {
    fn as_ref(&self) -> &[u8] {
        match self {
            Elem::Inline { len, data } => &data[..*len as usize],
            Elem::Boxed(b) => b,
        }
    }
}

#[derive(Clone, Default)]
pub struct List {
    items: Blocks<Elem, BLOCK>,
    /// Sum of `round_alloc(len)` of the boxed elements.
    bytes: usize,
}

/// Which end of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

/// Bytes allocated for an element besides its slot.
fn cost(v: &Elem) -> usize {
    match v {
        Elem::Inline { .. } => 0,
        Elem::Boxed(b) => round_alloc(b.len()),
    }
}

impl List {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn mem_usage(&self) -> usize {
        self.bytes + self.items.slots() * std::mem::size_of::<Elem>() + self.items.spine_bytes()
    }
    pub fn encoding(&self) -> &'static str {
        // Redis 7.0 always reports quicklist for lists.
        "quicklist"
    }

    pub fn push(&mut self, end: End, v: &[u8]) {
        match end {
            End::Left => self.push_front(v),
            End::Right => self.push_back(v),
        }
    }
    pub fn pop(&mut self, end: End) -> Option<Bytes> {
        match end {
            End::Left => self.pop_front(),
            End::Right => self.pop_back(),
        }
    }
    /// Append a copy of `v` (a stored element never pins a request buffer).
    pub fn push_back(&mut self, v: &[u8]) {
        let v = Elem::new(v);
        self.bytes += cost(&v);
        self.items.push_back(v);
    }
    pub fn push_front(&mut self, v: &[u8]) {
        let v = Elem::new(v);
        self.bytes += cost(&v);
        self.items.push_front(v);
    }
    pub fn pop_front(&mut self) -> Option<Bytes> {
        let v = self.items.pop_front()?;
        self.bytes -= cost(&v);
        self.maybe_shrink();
        Some(v.into_bytes())
    }
    pub fn pop_back(&mut self) -> Option<Bytes> {
        let v = self.items.pop_back()?;
        self.bytes -= cost(&v);
        self.maybe_shrink();
        Some(v.into_bytes())
    }
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.items.get(i).map(Elem::as_ref)
    }
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator {
        self.items.range(0, self.items.len()).map(Elem::as_ref)
    }
    /// Elements `start..=end` (already clamped by the caller).
    pub fn range(
        &self,
        start: usize,
        end: usize,
    ) -> impl DoubleEndedIterator<Item = &[u8]> + ExactSizeIterator + Clone {
        self.items.range(start, end.saturating_add(1)).map(Elem::as_ref)
    }

    /// Resolve a Redis index (negative counts from the tail) to a position.
    pub fn index(&self, i: i64) -> Option<usize> {
        let len = self.items.len() as i64;
        let i = if i < 0 { len.checked_add(i)? } else { i };
        (0..len).contains(&i).then_some(i as usize)
    }

    /// Replace the element at `i`; false when out of range.
    pub fn set(&mut self, i: usize, v: &[u8]) -> bool {
        let Some(slot) = self.items.get_mut(i) else {
            return false;
        };
        let v = Elem::new(v);
        self.bytes = self.bytes - cost(slot) + cost(&v);
        *slot = v;
        true
    }

    /// Insert `v` before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, v: &[u8]) {
        let v = Elem::new(v);
        self.bytes += cost(&v);
        self.items.insert(i, v);
    }

    /// Position of the first element equal to `v`, from the head.
    pub fn position(&self, v: &[u8]) -> Option<usize> {
        self.iter().position(|x| x == v)
    }

    /// Remove up to `limit` elements equal to `v` (0 = all), scanning from
    /// the head or from the tail. Returns how many were removed.
    pub fn remove_matching(&mut self, v: &[u8], limit: u64, from: End) -> u64 {
        // Only matches at or after `first` go: from the tail, that is the
        // earliest of the last `limit` matches, found without reallocating.
        let first = match from {
            End::Left => 0,
            End::Right => {
                let mut seen = 0u64;
                let mut cut = self.items.len();
                for (i, x) in self.iter().enumerate().rev() {
                    if limit != 0 && seen == limit {
                        break;
                    }
                    if x == v {
                        seen += 1;
                        cut = i;
                    }
                }
                cut
            }
        };
        let mut removed = 0u64;
        let mut freed = 0usize;
        self.items.retain(
            |at, x| {
                let gone = at >= first && x.as_ref() == v && (limit == 0 || removed < limit);
                removed += u64::from(gone);
                !gone
            },
            |x| freed += cost(&x),
        );
        self.bytes -= freed;
        self.maybe_shrink();
        removed
    }

    /// Drop `front` elements from the head and `back` from the tail.
    pub fn trim(&mut self, front: usize, back: usize) {
        for _ in 0..front.min(self.items.len()) {
            if let Some(v) = self.items.pop_front() {
                self.bytes -= cost(&v);
            }
        }
        for _ in 0..back.min(self.items.len()) {
            if let Some(v) = self.items.pop_back() {
                self.bytes -= cost(&v);
            }
        }
        self.maybe_shrink();
    }

    /// Pop up to `n` elements from one end, in pop order.
    pub fn pop_many(&mut self, end: End, n: usize) -> Vec<Bytes> {
        let n = n.min(self.items.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let v = match end {
                End::Left => self.items.pop_front(),
                End::Right => self.items.pop_back(),
            };
            let Some(v) = v else { break };
            self.bytes -= cost(&v);
            out.push(v.into_bytes());
        }
        self.maybe_shrink();
        out
    }

    fn maybe_shrink(&mut self) {
        self.items.shrink(MIN_SHRINK_CAPACITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> List {
        let mut l = List::default();
        for i in items {
            l.push_back(i.as_bytes());
        }
        l
    }

    fn items(l: &List) -> Vec<String> {
        l.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    /// The running byte count equals a full recount.
    fn check_bytes(l: &List) {
        assert_eq!(l.bytes, l.items.range(0, l.len()).map(cost).sum::<usize>());
    }

    #[test]
    fn elements_up_to_22_bytes_are_inline_and_every_slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Elem>(), 24);
        for n in [0, 1, 21, 22, 23, 100] {
            let v: Vec<u8> = (0..n as u8).collect();
            let e = Elem::new(&v);
            assert_eq!(e.as_ref(), &v[..]);
            assert_eq!(matches!(e, Elem::Inline { .. }), n <= INLINE, "{n}");
            assert_eq!(e.into_bytes(), Bytes::from(v));
        }
    }

    #[test]
    fn index_resolution() {
        let l = list(&["a", "b", "c"]);
        assert_eq!(l.index(0), Some(0));
        assert_eq!(l.index(-1), Some(2));
        assert_eq!(l.index(-3), Some(0));
        assert_eq!(l.index(-4), None);
        assert_eq!(l.index(3), None);
        assert_eq!(l.index(i64::MIN), None);
        assert_eq!(l.index(i64::MAX), None);
    }

    #[test]
    fn remove_matching_from_both_ends() {
        let mut l = list(&["x", "a", "x", "b", "x"]);
        assert_eq!(l.remove_matching(b"x", 2, End::Right), 2);
        assert_eq!(items(&l), ["x", "a", "b"]);
        check_bytes(&l);
        let mut l = list(&["x", "a", "x", "b", "x"]);
        assert_eq!(l.remove_matching(b"x", 2, End::Left), 2);
        assert_eq!(items(&l), ["a", "b", "x"]);
        assert_eq!(l.remove_matching(b"x", 0, End::Left), 1);
        assert_eq!(items(&l), ["a", "b"]);
        check_bytes(&l);
        let mut l = list(&["x", "a", "x", "b", "x"]);
        assert_eq!(l.remove_matching(b"x", 0, End::Right), 3);
        assert_eq!(items(&l), ["a", "b"]);
        let mut l = list(&["x", "a", "x"]);
        assert_eq!(l.remove_matching(b"x", 5, End::Right), 2);
        assert_eq!(l.remove_matching(b"zz", 1, End::Right), 0);
        assert_eq!(items(&l), ["a"]);
        check_bytes(&l);
    }

    #[test]
    fn trim_pop_many_and_set_keep_bytes_exact() {
        let mut l = list(&["a", "bb", "ccc", "dddd", "eeeee"]);
        l.trim(1, 1);
        assert_eq!(items(&l), ["bb", "ccc", "dddd"]);
        check_bytes(&l);
        assert!(l.set(1, b"a-much-longer-element-than-before"));
        assert!(!l.set(3, b"x"));
        check_bytes(&l);
        assert_eq!(l.pop_many(End::Right, 2).len(), 2);
        assert_eq!(items(&l), ["bb"]);
        l.trim(5, 5);
        assert!(l.is_empty());
        assert_eq!(l.bytes, 0);
    }

    #[test]
    fn drained_list_releases_its_spine() {
        let mut l = List::default();
        for i in 0..10_000 {
            l.push_back(format!("{i}").as_bytes());
        }
        let peak = l.mem_usage();
        while l.len() > 10 {
            l.pop_front();
        }
        check_bytes(&l);
        assert!(l.mem_usage() < peak / 100, "{} vs {}", l.mem_usage(), peak);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(bool, u8),
        Pop(bool),
        PopMany(bool, usize),
        Set(i64, u8),
        Insert(usize, u8),
        Remove(u8, u64, bool),
        Trim(usize, usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<bool>(), 0u8..4).prop_map(|(l, v)| Op::Push(l, v)),
            any::<bool>().prop_map(Op::Pop),
            (any::<bool>(), 0usize..5).prop_map(|(l, n)| Op::PopMany(l, n)),
            (-6i64..6, 0u8..4).prop_map(|(i, v)| Op::Set(i, v)),
            (0usize..8, 0u8..4).prop_map(|(i, v)| Op::Insert(i, v)),
            (0u8..4, 0u64..3, any::<bool>()).prop_map(|(v, n, l)| Op::Remove(v, n, l)),
            (0usize..3, 0usize..3).prop_map(|(f, b)| Op::Trim(f, b)),
        ]
    }

    /// Elements of varied sizes, so byte accounting errors show.
    fn elem(v: u8) -> Bytes {
        Bytes::from(vec![b'a' + v; 1 + v as usize * 9])
    }

    proptest::proptest! {
        /// The list behaves as a plain `Vec` model and its byte count stays exact.
        #[test]
        fn behaves_like_a_vec(ops in proptest::collection::vec(op(), 0..200)) {
            let mut l = List::default();
            let mut model: Vec<Bytes> = Vec::new();
            let end = |left: bool| if left { End::Left } else { End::Right };
            for op in ops {
                match op {
                    Op::Push(left, v) => {
                        l.push(end(left), &elem(v));
                        if left { model.insert(0, elem(v)) } else { model.push(elem(v)) }
                    }
                    Op::Pop(left) => {
                        let want = if model.is_empty() { None }
                            else if left { Some(model.remove(0)) } else { model.pop() };
                        proptest::prop_assert_eq!(l.pop(end(left)), want);
                    }
                    Op::PopMany(left, n) => {
                        let n = n.min(model.len());
                        let want: Vec<Bytes> = if left { model.drain(..n).collect() }
                            else { model.drain(model.len() - n..).rev().collect() };
                        proptest::prop_assert_eq!(l.pop_many(end(left), n), want);
                    }
                    Op::Set(i, v) => {
                        if let Some(at) = l.index(i) {
                            proptest::prop_assert!(l.set(at, &elem(v)));
                            model[at] = elem(v);
                        }
                    }
                    Op::Insert(i, v) => {
                        let i = i.min(model.len());
                        l.insert(i, &elem(v));
                        model.insert(i, elem(v));
                    }
                    Op::Remove(v, limit, left) => {
                        let target = elem(v);
                        let mut hits: Vec<usize> = (0..model.len()).filter(|&i| model[i] == target).collect();
                        if !left { hits.reverse(); }
                        if limit != 0 { hits.truncate(limit as usize); }
                        hits.sort_unstable();
                        for &i in hits.iter().rev() { model.remove(i); }
                        proptest::prop_assert_eq!(l.remove_matching(&target, limit, end(left)), hits.len() as u64);
                    }
                    Op::Trim(f, b) => {
                        l.trim(f, b);
                        let f = f.min(model.len());
                        model.drain(..f);
                        let b = b.min(model.len());
                        model.truncate(model.len() - b);
                    }
                }
                proptest::prop_assert_eq!(l.iter().map(Bytes::copy_from_slice).collect::<Vec<_>>(), model.clone());
                proptest::prop_assert_eq!(l.bytes, model.iter().map(|m| cost(&Elem::new(m))).sum::<usize>());
            }
        }
    }
}
