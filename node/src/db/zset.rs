//! The sorted-set type: members ordered by `(score, member bytes)`.
//!
//! A member → node map answers ZSCORE in O(1); a skiplist with spans (Redis'
//! `zskiplist`, ported to an index arena so it is safe Rust) keeps the order
//! and answers rank queries in O(log n). Every range query (by rank, score or
//! lex) is reduced to a rank interval with two O(log n) descents — the number
//! of elements below a bound is a prefix count because the order is monotonic
//! in both score and member — and then walks the level-0 links, so a range of
//! k elements costs O(log n + k). Nodes live in a `Vec` and refer to each other
//! by index; freed slots are reused, so the arena does not grow under churn.
//!
//! Redis 7.0 stores small sets as a listpack and converts them to a skiplist
//! for good once they exceed `zset-max-listpack-entries` members or hold a
//! member longer than `zset-max-listpack-value` bytes ([`super::limits`]). We always use the skiplist, but track that threshold so `OBJECT
//! ENCODING` and the few replies whose order depends on the encoding (ZSCAN)
//! match Redis.

use std::cmp::Ordering;

use bytes::Bytes;
use hashbrown::HashTable;
use smallvec::SmallVec;

use super::entry::round_alloc;
use super::limits::Limits;

const MAX_LEVEL: usize = 32;
const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;
/// Bytes a member costs besides its own bytes: the node, its map entry, and
/// the average of 1.33 levels (p = 1/4).
const MEMBER_OVERHEAD: usize = std::mem::size_of::<Node>() + std::mem::size_of::<u32>() + 1;

#[derive(Clone, Copy)]
struct Level {
    next: u32,
    /// Number of level-0 steps this link jumps over.
    span: u32,
}

#[derive(Clone)]
struct Node {
    /// Boxed, not a `Bytes`: 16 bytes of node instead of 32, and a reply
    /// copies the member out rather than sharing it.
    member: Box<[u8]>,
    score: f64,
    prev: u32,
    /// Inline up to two levels: with p = 1/4, 15 nodes in 16 have at most
    /// two, and a separate allocation per node was 16 bytes of its memory.
    levels: SmallVec<[Level; 2]>,
}

/// A score interval, as parsed by ZRANGEBYSCORE and friends.
#[derive(Clone, Copy, Debug)]
pub struct ScoreRange {
    pub min: f64,
    pub max: f64,
    pub min_ex: bool,
    pub max_ex: bool,
}

impl ScoreRange {
    fn gte_min(&self, v: f64) -> bool {
        if self.min_ex { v > self.min } else { v >= self.min }
    }
    fn lte_max(&self, v: f64) -> bool {
        if self.max_ex { v < self.max } else { v <= self.max }
    }
}

/// One end of a lex interval: `-`, `+`, `[member` or `(member`.
#[derive(Clone, Debug, PartialEq)]
pub enum LexBound {
    Min,
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

/// A member interval, as parsed by ZRANGEBYLEX and friends.
#[derive(Clone, Debug)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    fn gte_min(&self, v: &[u8]) -> bool {
        match &self.min {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Incl(m) => v >= m.as_ref(),
            LexBound::Excl(m) => v > m.as_ref(),
        }
    }
    fn lte_max(&self, v: &[u8]) -> bool {
        match &self.max {
            LexBound::Max => true,
            LexBound::Min => false,
            LexBound::Incl(m) => v <= m.as_ref(),
            LexBound::Excl(m) => v < m.as_ref(),
        }
    }
}

#[derive(Clone)]
pub struct ZSet {
    /// Member → node: the table holds node indexes and finds them by the
    /// node's member, so a member is stored once (a map keyed by a second
    /// handle on it cost 36 bytes of entry and a shared-buffer header).
    map: HashTable<u32>,
    /// Hashes members for `map` and orders ZSCAN (seeded per set).
    hasher: foldhash::fast::RandomState,
    nodes: Vec<Node>,
    free: Vec<u32>,
    tail: u32,
    level: usize,
    /// Bytes of members plus per-member overhead, kept incrementally.
    bytes: usize,
    /// Past Redis' listpack thresholds once (never converts back).
    skiplist: bool,
    rng: u64,
    /// Members sorted by hash, built by the first ZSCAN step over a large set
    /// so later steps cost O(log n + count). Adding a member drops it (a scan
    /// must see members present throughout, so the next step rebuilds it);
    /// removed members are skipped when it is read.
    scan_index: Option<Vec<(u64, Bytes)>>,
}

impl Default for ZSet {
    fn default() -> Self {
        let head = Node {
            member: Box::default(),
            score: 0.0,
            prev: NIL,
            levels: smallvec::smallvec![Level { next: NIL, span: 0 }; MAX_LEVEL],
        };
        ZSet {
            map: HashTable::new(),
            hasher: Default::default(),
            nodes: vec![head],
            free: Vec::new(),
            tail: NIL,
            level: 1,
            bytes: 0,
            skiplist: false,
            rng: rand::random::<u64>() | 1,
            scan_index: None,
        }
    }
}

/// Is `(s1, m1)` before `(s2, m2)` in set order?
fn cmp(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    match s1.partial_cmp(&s2) {
        Some(Ordering::Equal) | None => m1.cmp(m2),
        Some(o) => o,
    }
}

impl ZSet {
    /// An empty set that Redis would build as a skiplist from the start
    /// (a large ZUNIONSTORE result), so its scores keep the sign of zero.
    pub fn new_skiplist() -> ZSet {
        ZSet {
            skiplist: true,
            ..ZSet::default()
        }
    }

    /// Would a set of `len` members, the longest `max_member` bytes, be a listpack?
    pub fn fits_listpack(len: usize, max_member: usize, lim: &Limits) -> bool {
        len <= lim.zset_entries && max_member <= lim.zset_value
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn mem_usage(&self) -> usize {
        self.bytes
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.map.capacity() * (std::mem::size_of::<u32>() + 1)
            + self
                .scan_index
                .as_ref()
                .map_or(0, |v| v.capacity() * std::mem::size_of::<(u64, Bytes)>())
    }
    /// `OBJECT ENCODING`, with Redis 7.0's thresholds.
    pub fn encoding(&self) -> &'static str {
        if self.is_listpack() { "listpack" } else { "skiplist" }
    }
    /// Would Redis still hold this set as a listpack?
    pub fn is_listpack(&self) -> bool {
        !self.skiplist
    }

    fn hash(&self, member: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(member)
    }

    /// The node holding `member`.
    fn find(&self, member: &[u8]) -> Option<u32> {
        self.find_hashed(self.hash(member), member)
    }

    /// [`Self::find`] given the member's hash.
    fn find_hashed(&self, hash: u64, member: &[u8]) -> Option<u32> {
        let nodes = &self.nodes;
        self.map
            .find(hash, |&i| nodes[i as usize].member.as_ref() == member)
            .copied()
    }

    /// Take `member` out of the map (its node stays until unlinked).
    fn unmap(&mut self, member: &[u8]) -> Option<u32> {
        let h = self.hash(member);
        let nodes = &self.nodes;
        let entry = self
            .map
            .find_entry(h, |&i| nodes[i as usize].member.as_ref() == member)
            .ok()?;
        Some(entry.remove().0)
    }

    /// Map node `n`, whose member (not mapped yet) hashes to `hash`.
    fn map_node(&mut self, hash: u64, n: u32) {
        let nodes = &self.nodes;
        let hasher = &self.hasher;
        let rehash = |i: &u32| {
            use std::hash::BuildHasher;
            hasher.hash_one(nodes[*i as usize].member.as_ref())
        };
        self.map.insert_unique(hash, n, rehash);
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.find(member).map(|i| self.nodes[i as usize].score)
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.find(member).is_some()
    }

    /// Insert a member or change its score. Returns true when it is new.
    /// `lim` decides a conversion to `skiplist` (`zset-max-listpack-*`).
    pub fn insert(&mut self, member: &[u8], mut score: f64, lim: &Limits) -> bool {
        // Hashed once: the lookup, and the map entry kept or added below.
        let hash = self.hash(member);
        let found = self.find_hashed(hash, member);
        let new = found.is_none();
        if new && (self.map.len() + 1 > lim.zset_entries || member.len() > lim.zset_value) {
            self.skiplist = true;
        }
        if !self.skiplist && score == 0.0 {
            // A listpack stores -0 as the integer 0: the sign is lost in Redis.
            score = 0.0;
        }
        if let Some(i) = found {
            let old = self.nodes[i as usize].score;
            // Redis compares with `==`: 0 and -0 are the same score.
            if old == score {
                return false;
            }
            let m = std::mem::take(&mut self.nodes[i as usize].member);
            self.list_delete(old, &m, i);
            let n = self.list_insert(m, score);
            // The node just freed is the one reused (the free list is a
            // stack), so the member's map entry still names it: no map
            // operation at all. Should that ever change, the entry follows.
            debug_assert_eq!(n, i, "a score update keeps the member's node");
            if n != i
                && let Some(node) = self.map.find_mut(hash, |&j| j == i)
            {
                *node = n;
            }
            return false;
        }
        let m: Box<[u8]> = member.into();
        self.bytes += round_alloc(m.len()) + MEMBER_OVERHEAD;
        self.scan_index = None;
        let n = self.list_insert(m, score);
        self.map_node(hash, n);
        true
    }

    /// Remove a member; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let i = self.unmap(member)?;
        let score = self.nodes[i as usize].score;
        let m = std::mem::take(&mut self.nodes[i as usize].member);
        self.list_delete(score, &m, i);
        self.bytes -= round_alloc(m.len()) + MEMBER_OVERHEAD;
        // A scan index mostly made of removed members only holds memory;
        // dropping it is always safe (the next step rebuilds it, and the
        // hash order, hence the cursor, stays the same).
        if self
            .scan_index
            .as_ref()
            .is_some_and(|v| v.len() > 2 * self.map.len() + 16)
        {
            self.scan_index = None;
        }
        if self.map.is_empty() {
            // Give the arena back: an emptied set is deleted anyway, unless a
            // command refills it first.
            self.nodes.truncate(1);
            self.nodes.shrink_to(16);
            self.free.clear();
            self.scan_index = None;
        }
        Some(score)
    }

    /// 0-based rank of a member in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let i = self.find(member)?;
        let (s, m) = (self.nodes[i as usize].score, &self.nodes[i as usize].member);
        // Elements strictly before (s, m).
        Some(self.count_while(|n| cmp(n.score, &n.member, s, m) == Ordering::Less))
    }

    /// The element at a 0-based rank.
    pub fn at(&self, rank: usize) -> Option<(&[u8], f64)> {
        let i = self.node_at(rank)?;
        let n = &self.nodes[i as usize];
        Some((&n.member, n.score))
    }

    /// Elements from rank `start`, ascending (or descending with `rev`, in
    /// which case `start` counts from the highest element).
    pub fn iter_from(&self, start: usize, rev: bool) -> Iter<'_> {
        let node = if rev {
            match self.len().checked_sub(start + 1) {
                Some(r) => self.node_at(r).unwrap_or(NIL),
                None => NIL,
            }
        } else {
            self.node_at(start).unwrap_or(NIL)
        };
        Iter { set: self, node, rev }
    }

    /// All elements in ascending order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0, false)
    }

    /// Ranks `[lo, hi)` of the elements inside a score range.
    pub fn score_ranks(&self, r: &ScoreRange) -> (usize, usize) {
        let lo = self.count_while(|n| !r.gte_min(n.score));
        let hi = self.count_while(|n| r.lte_max(n.score));
        (lo, hi.max(lo))
    }

    /// Ranks `[lo, hi)` of the elements inside a lex range (meaningful when
    /// all scores are equal, as in Redis).
    pub fn lex_ranks(&self, r: &LexRange) -> (usize, usize) {
        let lo = self.count_while(|n| !r.gte_min(&n.member));
        let hi = self.count_while(|n| r.lte_max(&n.member));
        (lo, hi.max(lo))
    }

    /// Remove the elements with ranks in `[lo, hi)`; returns them.
    pub fn remove_ranks(&mut self, lo: usize, hi: usize) -> Vec<(Bytes, f64)> {
        let out: Vec<(Bytes, f64)> = self
            .iter_from(lo, false)
            .take(hi.saturating_sub(lo))
            .map(|(m, s)| (Bytes::copy_from_slice(m), s))
            .collect();
        for (m, _) in &out {
            self.remove(m);
        }
        out
    }

    /// One ZSCAN step: members whose hash (under this set's own hasher) is
    /// at least `cursor`, about `count` of them, and the next cursor (0 at the
    /// end). The hash order does not move when members come and go, so a
    /// member present for the whole scan is returned exactly once.
    pub fn scan(&mut self, cursor: u64, count: usize) -> (u64, Vec<(Bytes, f64)>) {
        if self.scan_index.is_none() {
            let mut idx: Vec<(u64, Bytes)> = self
                .map
                .iter()
                .map(|&i| {
                    let m = &self.nodes[i as usize].member;
                    (self.hash(m), Bytes::copy_from_slice(m))
                })
                .collect();
            idx.sort_unstable_by_key(|e| e.0);
            self.scan_index = Some(idx);
        }
        let Some(idx) = self.scan_index.as_ref() else {
            return (0, Vec::new());
        };
        let mut i = idx.partition_point(|e| e.0 < cursor);
        let mut out = Vec::new();
        let mut visited = 0;
        // Members sharing a hash are returned together, so no cursor splits them.
        while i < idx.len() && (visited < count.max(1) || (i > 0 && idx[i].0 == idx[i - 1].0)) {
            if let Some(n) = self.find(&idx[i].1) {
                out.push((idx[i].1.clone(), self.nodes[n as usize].score));
            }
            visited += 1;
            i += 1;
        }
        let next = if i >= idx.len() { 0 } else { idx[i].0 };
        (next, out)
    }

    // --- skiplist internals ------------------------------------------------

    fn next(&self, x: u32, lvl: usize) -> u32 {
        self.nodes[x as usize].levels[lvl].next
    }
    fn span(&self, x: u32, lvl: usize) -> usize {
        self.nodes[x as usize].levels[lvl].span as usize
    }
    fn link(&mut self, x: u32, lvl: usize) -> &mut Level {
        &mut self.nodes[x as usize].levels[lvl]
    }

    /// Number of leading elements for which `pred` holds; `pred` must hold
    /// for a prefix of the order.
    fn count_while(&self, pred: impl Fn(&Node) -> bool) -> usize {
        let mut rank = 0;
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                if n == NIL || !pred(&self.nodes[n as usize]) {
                    break;
                }
                rank += self.span(x, i);
                x = n;
            }
        }
        rank
    }

    fn node_at(&self, rank: usize) -> Option<u32> {
        if rank >= self.len() {
            return None;
        }
        let target = rank + 1;
        let mut traversed = 0;
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                if n == NIL || traversed + self.span(x, i) > target {
                    break;
                }
                traversed += self.span(x, i);
                x = n;
            }
            if traversed == target {
                return Some(x);
            }
        }
        None
    }

    fn random_level(&mut self) -> usize {
        // xorshift64: a level needs two random bits per step (p = 1/4).
        let mut level = 1;
        loop {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            if self.rng & 3 != 0 || level >= MAX_LEVEL {
                return level;
            }
            level += 1;
        }
    }

    fn alloc(&mut self, node: Node) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn list_insert(&mut self, member: Box<[u8]>, score: f64) -> u32 {
        let mut update = [HEAD; MAX_LEVEL];
        let mut rank = [0usize; MAX_LEVEL];
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            rank[i] = if i == self.level - 1 { 0 } else { rank[i + 1] };
            loop {
                let n = self.next(x, i);
                if n == NIL {
                    break;
                }
                let nn = &self.nodes[n as usize];
                if cmp(nn.score, &nn.member, score, &member) != Ordering::Less {
                    break;
                }
                rank[i] += self.span(x, i);
                x = n;
            }
            update[i] = x;
        }
        let lvl = self.random_level();
        let len = self.len();
        if lvl > self.level {
            for i in self.level..lvl {
                rank[i] = 0;
                update[i] = HEAD;
                self.link(HEAD, i).span = len as u32;
            }
            self.level = lvl;
        }
        let x = self.alloc(Node {
            member,
            score,
            prev: NIL,
            levels: smallvec::smallvec![Level { next: NIL, span: 0 }; lvl],
        });
        for i in 0..lvl {
            let u = update[i];
            let ul = *self.link(u, i);
            let d = (rank[0] - rank[i]) as u32;
            *self.link(x, i) = Level {
                next: ul.next,
                span: ul.span - d,
            };
            *self.link(u, i) = Level { next: x, span: d + 1 };
        }
        for (i, &u) in update.iter().enumerate().take(self.level).skip(lvl) {
            self.link(u, i).span += 1;
        }
        self.nodes[x as usize].prev = if update[0] == HEAD { NIL } else { update[0] };
        let n = self.next(x, 0);
        if n == NIL {
            self.tail = x;
        } else {
            self.nodes[n as usize].prev = x;
        }
        x
    }

    /// Unlink node `node`, which holds (or held: the caller may have taken
    /// it) `member` with `score`.
    fn list_delete(&mut self, score: f64, member: &[u8], node: u32) {
        let mut update = [HEAD; MAX_LEVEL];
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                // Stop at the node itself: its member may have been taken.
                if n == NIL || n == node {
                    break;
                }
                let nn = &self.nodes[n as usize];
                if cmp(nn.score, &nn.member, score, member) != Ordering::Less {
                    break;
                }
                x = n;
            }
            update[i] = x;
        }
        let x = self.next(x, 0);
        if x != node {
            debug_assert!(false, "skiplist and map disagree");
            return;
        }
        for (i, &u) in update.iter().enumerate().take(self.level) {
            if self.next(u, i) == x {
                let xl = self.nodes[x as usize].levels[i];
                let ul = self.link(u, i);
                ul.span = ul.span + xl.span - 1;
                ul.next = xl.next;
            } else {
                self.link(u, i).span -= 1;
            }
        }
        let (prev, next) = (self.nodes[x as usize].prev, self.next(x, 0));
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        while self.level > 1 && self.next(HEAD, self.level - 1) == NIL {
            self.level -= 1;
        }
        let dead = &mut self.nodes[x as usize];
        dead.member = Box::default();
        dead.levels = SmallVec::new();
        self.free.push(x);
    }
}

/// Walks level 0 forwards (or backwards) from a node.
pub struct Iter<'a> {
    set: &'a ZSet,
    node: u32,
    rev: bool,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);
    fn next(&mut self) -> Option<Self::Item> {
        if self.node == NIL {
            return None;
        }
        let n = &self.set.nodes[self.node as usize];
        self.node = if self.rev { n.prev } else { n.levels[0].next };
        Some((&n.member, n.score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits {
        zset_entries: 128,
        zset_value: 64,
        ..Limits::KEEP
    };
    use proptest::prelude::*;

    /// The model: a Vec kept sorted by (score, member).
    fn model_sorted(v: &mut [(f64, Vec<u8>)]) {
        v.sort_by(|a, b| cmp(a.0, &a.1, b.0, &b.1));
    }

    fn check(z: &ZSet, model: &[(f64, Vec<u8>)]) {
        assert_eq!(z.len(), model.len());
        let got: Vec<(f64, Vec<u8>)> = z.iter().map(|(m, s)| (s, m.to_vec())).collect();
        assert_eq!(got, model);
        let rev: Vec<(f64, Vec<u8>)> = z.iter_from(0, true).map(|(m, s)| (s, m.to_vec())).collect();
        let mut want = model.to_vec();
        want.reverse();
        assert_eq!(rev, want);
        for (i, (s, m)) in model.iter().enumerate() {
            assert_eq!(z.rank(m), Some(i));
            assert_eq!(z.score(m), Some(*s));
            assert_eq!(z.at(i).map(|(m, s)| (s, m.to_vec())), Some((*s, m.clone())));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, i8),
        Remove(u8),
        RemoveRanks(u8, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), -5i8..5).prop_map(|(m, s)| Op::Insert(m % 64, s)),
            2 => any::<u8>().prop_map(|m| Op::Remove(m % 64)),
            1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::RemoveRanks(a % 70, b % 70)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_sorted_vec_model(ops in proptest::collection::vec(op(), 1..300), min in -6i8..6, max in -6i8..6,
                                     min_ex: bool, max_ex: bool, lo in 0u8..70, hi in 0u8..70) {
            let mut z = ZSet::default();
            let mut model: Vec<(f64, Vec<u8>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(m, s) => {
                        let m = vec![b'a' + m % 26, m];
                        let new = z.insert(&m, s as f64, &LIM);
                        let pos = model.iter().position(|(_, x)| *x == m);
                        prop_assert_eq!(new, pos.is_none());
                        if let Some(p) = pos { model.remove(p); }
                        model.push((s as f64, m));
                        model_sorted(&mut model);
                    }
                    Op::Remove(m) => {
                        let m = vec![b'a' + m % 26, m];
                        let pos = model.iter().position(|(_, x)| *x == m);
                        let got = z.remove(&m);
                        prop_assert_eq!(got, pos.map(|p| model[p].0));
                        if let Some(p) = pos { model.remove(p); }
                    }
                    Op::RemoveRanks(a, b) => {
                        let (a, b) = (a.min(b) as usize, a.max(b) as usize);
                        let removed = z.remove_ranks(a, b);
                        let hi = b.min(model.len());
                        let lo = a.min(hi);
                        let want: Vec<(f64, Vec<u8>)> = model.drain(lo..hi).collect();
                        let got: Vec<(f64, Vec<u8>)> = removed.into_iter().map(|(m, s)| (s, m.to_vec())).collect();
                        prop_assert_eq!(got, want);
                    }
                }
            }
            check(&z, &model);
            let r = ScoreRange { min: min as f64, max: max as f64, min_ex, max_ex };
            let (a, b) = z.score_ranks(&r);
            let want: Vec<usize> = (0..model.len()).filter(|&i| r.gte_min(model[i].0) && r.lte_max(model[i].0)).collect();
            prop_assert_eq!(b - a, want.len());
            if let Some(&f) = want.first() { prop_assert_eq!(a, f); }
            // Lex ranks over an all-equal-score copy.
            let mut flat = ZSet::default();
            for (_, m) in &model { flat.insert(m, 0.0, &LIM); }
            let lmin = LexBound::Incl(Bytes::from(vec![b'a' + lo % 26]));
            let lmax = LexBound::Excl(Bytes::from(vec![b'a' + hi % 26]));
            let lr = LexRange { min: lmin, max: lmax };
            let (a, b) = flat.lex_ranks(&lr);
            let cnt = model.iter().filter(|(_, m)| lr.gte_min(m) && lr.lte_max(m)).count();
            prop_assert_eq!(b - a, cnt);
            // Iterating from any rank, both ways.
            let n = model.len();
            let start = lo as usize;
            let fwd: Vec<Vec<u8>> = z.iter_from(start, false).map(|(m, _)| m.to_vec()).collect();
            let want: Vec<Vec<u8>> = model.iter().skip(start).map(|(_, m)| m.clone()).collect();
            prop_assert_eq!(fwd, want);
            let back: Vec<Vec<u8>> = z.iter_from(start, true).map(|(m, _)| m.to_vec()).collect();
            let want: Vec<Vec<u8>> = model.iter().rev().skip(start).map(|(_, m)| m.clone()).collect();
            prop_assert_eq!(back, want);
            prop_assert!(z.at(n).is_none());
        }
    }

    #[test]
    fn encoding_thresholds_and_memory() {
        let mut z = ZSet::default();
        let empty = z.mem_usage();
        for i in 0..128 {
            z.insert(format!("m{i}").as_bytes(), i as f64, &LIM);
        }
        assert_eq!(z.encoding(), "listpack");
        assert!(z.mem_usage() > empty);
        z.insert(b"one-more", 0.0, &LIM);
        assert_eq!(z.encoding(), "skiplist");
        z.remove(b"one-more");
        assert_eq!(z.encoding(), "skiplist", "never converts back");
        let mut z = ZSet::default();
        z.insert(&[b'x'; 64], 1.0, &LIM);
        assert_eq!(z.encoding(), "listpack");
        z.insert(&[b'x'; 65], 1.0, &LIM);
        assert_eq!(z.encoding(), "skiplist");
        z.remove(&[b'x'; 65]);
        z.remove(&[b'x'; 64]);
        assert!(z.is_empty());
        assert_eq!(z.bytes, 0);
    }

    #[test]
    fn scan_returns_members_present_throughout_once() {
        let mut z = ZSet::default();
        for i in 0..1000 {
            z.insert(format!("m{i}").as_bytes(), i as f64, &LIM);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            let (next, items) = z.scan(cursor, 10);
            for (m, _) in items {
                assert!(seen.insert(m), "returned twice");
            }
            // Churn while scanning: add new members; at one step remove most
            // of the set, which also drops the scan index mid-scan.
            z.insert(format!("new{step}").as_bytes(), 0.5, &LIM);
            if step == 3 {
                for i in 400..1000 {
                    z.remove(format!("m{i}").as_bytes());
                }
                assert!(z.scan_index.is_none());
            }
            step += 1;
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        assert!(step > 10);
        for i in 0..400 {
            assert!(seen.contains(format!("m{i}").as_bytes()), "m{i} missed");
        }
    }

    #[test]
    fn update_score_moves_member() {
        let mut z = ZSet::default();
        assert!(z.insert(b"a", 1.0, &LIM));
        assert!(z.insert(b"b", 2.0, &LIM));
        assert!(!z.insert(b"a", 3.0, &LIM));
        assert_eq!(z.rank(b"a"), Some(1));
        assert_eq!(z.rank(b"b"), Some(0));
        // -0 becomes 0 while the set is small (as in a listpack), and keeps its
        // sign once it is large; 0 and -0 compare equal.
        assert!(z.insert(b"c", -0.0, &LIM));
        assert!(z.score(b"c").is_some_and(|s| s.is_sign_positive()));
        for i in 0..200 {
            z.insert(format!("{i}").as_bytes(), 1.0, &LIM);
        }
        assert!(z.insert(b"d", -0.0, &LIM));
        assert!(z.score(b"d").is_some_and(|s| s.is_sign_negative()));
        assert!(!z.insert(b"d", 0.0, &LIM));
        assert!(z.score(b"d").is_some_and(|s| s.is_sign_negative()));
    }
}
