//! The stream type: an append-only log of field/value entries keyed by
//! `ms-seq` IDs, with consumer groups.
//!
//! Entries live in a `BTreeMap` ordered by ID, which gives every range query
//! (XRANGE, XREAD, trimming by MINID) in O(log n + k). Redis stores them as a
//! radix tree of listpack "macro nodes", and that layout is visible to
//! clients: `XADD/XTRIM ... ~` only drops whole nodes, and `XINFO STREAM`
//! reports `radix-tree-keys`/`radix-tree-nodes`. So next to the entries we keep
//! a light shadow of Redis' nodes ([`Node`]: master ID, live/deleted counts and
//! the exact listpack byte size Redis would have), split with Redis' default
//! `stream-node-max-entries 100` / `stream-node-max-bytes 4096` rules. That is
//! enough to trim approximately exactly as Redis does without storing
//! listpacks.
//!
//! Consumer groups follow Redis' model: a group has a last-delivered ID, a
//! logical read counter (`entries_read`, `-1` when unknown) and a pending
//! entries list (PEL) of [`Nack`]s; each consumer keeps the set of IDs it owns.
//! All group changes go through [`Stream`] methods so that memory is
//! accounted incrementally (`mem_usage` stays O(1)).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;

use super::entry::round_alloc;
use super::limits::Limits;

/// Accounting estimates (bytes) for group bookkeeping.
const NACK_COST: usize = 64;
const CONSUMER_COST: usize = 64;
const GROUP_COST: usize = 96;
const ENTRY_COST: usize = 48;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const ZERO: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    pub fn is_zero(&self) -> bool {
        self.ms == 0 && self.seq == 0
    }

    /// The next ID (`streamIncrID`); `None` past the last possible ID.
    pub fn incr(self) -> Option<StreamId> {
        if self.seq == u64::MAX {
            if self.ms == u64::MAX {
                return None;
            }
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            Some(StreamId::new(self.ms, self.seq + 1))
        }
    }

    /// The previous ID (`streamDecrID`); `None` before 0-0.
    pub fn decr(self) -> Option<StreamId> {
        if self.seq == 0 {
            if self.ms == 0 {
                return None;
            }
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            Some(StreamId::new(self.ms, self.seq - 1))
        }
    }

    pub fn to_bytes(self) -> Bytes {
        Bytes::from(self.to_string())
    }

    /// 128-bit big-endian form: the key Redis uses in its radix trees.
    fn encode(self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.ms.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Redis' `string2ll`: the strict integer form (no sign but '-', no leading
/// zeros, no spaces).
fn strict_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    if b == b"0" {
        return Some(0);
    }
    let (neg, digits) = if b[0] == b'-' { (true, &b[1..]) } else { (false, b) };
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i128 = 0;
    for &d in digits {
        v = v * 10 + (d - b'0') as i128;
        if v > i64::MAX as i128 + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Redis' `string2ull`: `string2ll` first, then C's `strtoull` (which also
/// takes leading spaces, a sign, and leading zeros, and wraps negatives).
fn string2ull(s: &[u8]) -> Option<u64> {
    if let Some(v) = strict_i64(s) {
        return u64::try_from(v).ok();
    }
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((s[i] - b'0') as u64)?;
        i += 1;
    }
    if i == start || i != s.len() {
        return None;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// A parsed ID argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedId {
    pub id: StreamId,
    /// False for XADD's `<ms>-*` form.
    pub seq_given: bool,
}

/// Parse a stream ID as Redis' `streamGenericParseIDOrReply` does. `strict`
/// rejects the `-` and `+` shorthands; `missing_seq` fills `<ms>` alone;
/// `allow_auto_seq` accepts `<ms>-*` (XADD only).
pub fn parse_id(arg: &[u8], strict: bool, missing_seq: u64, allow_auto_seq: bool) -> Option<ParsedId> {
    if arg.len() > 127 {
        return None;
    }
    // Redis parses a C string: an embedded NUL ends the argument.
    let buf = match arg.iter().position(|&b| b == 0) {
        Some(n) => &arg[..n],
        None => arg,
    };
    let full = |id| Some(ParsedId { id, seq_given: true });
    if buf == b"-" || buf == b"+" {
        if strict {
            return None;
        }
        return full(if buf == b"-" { StreamId::ZERO } else { StreamId::MAX });
    }
    match buf.iter().position(|&b| b == b'-') {
        None => full(StreamId::new(string2ull(buf)?, missing_seq)),
        Some(dash) => {
            let ms = string2ull(&buf[..dash])?;
            let seq = &buf[dash + 1..];
            if allow_auto_seq && seq == b"*" {
                return Some(ParsedId {
                    id: StreamId::new(ms, 0),
                    seq_given: false,
                });
            }
            full(StreamId::new(ms, string2ull(seq)?))
        }
    }
}

/// Bytes a listpack spends on one element (encoding, data and back-length).
fn lp_str_size(s: &[u8]) -> usize {
    if s.len() <= 20
        && let Some(v) = strict_i64(s)
    {
        return lp_int_size(v);
    }
    let l = s.len();
    let enc = if l < 64 {
        1 + l
    } else if l < 4096 {
        2 + l
    } else {
        5 + l
    };
    enc + lp_backlen(enc)
}

fn lp_int_size(v: i64) -> usize {
    let enc = if (0..=127).contains(&v) {
        1
    } else if (-4096..=4095).contains(&v) {
        2
    } else if (-32768..=32767).contains(&v) {
        3
    } else if (-8_388_608..=8_388_607).contains(&v) {
        4
    } else if i32::try_from(v).is_ok() {
        5
    } else {
        9
    };
    enc + 1
}

fn lp_backlen(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..16383 => 2,
        16383..2097151 => 3,
        2097151..268435455 => 4,
        _ => 5,
    }
}

/// Shadow of one Redis listpack macro node (see the module doc).
#[derive(Clone, Debug)]
struct Node {
    live: u32,
    deleted: u32,
    lp_bytes: usize,
    master_fields: Box<[Bytes]>,
    /// Last entry ever appended to the node (deleted or not).
    last: StreamId,
}

/// A pending (delivered, not acknowledged) entry of a group.
#[derive(Clone, Debug)]
pub struct Nack {
    pub consumer: Bytes,
    pub delivery_time: i64,
    pub delivery_count: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Consumer {
    pub seen_time: u64,
    pub pel: BTreeSet<StreamId>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub last_id: StreamId,
    /// Logical read counter; -1 when unknown (Redis' `SCG_INVALID_ENTRIES_READ`).
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Nack>,
    pub consumers: BTreeMap<Bytes, Consumer>,
}

/// How XADD picks the new ID.
#[derive(Clone, Copy, Debug)]
pub enum AddId {
    /// `*`
    Auto,
    /// `<ms>-*`
    AutoSeq(u64),
    Exact(StreamId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// The stream's last ID is the maximum possible one.
    Exhausted,
    /// The ID is not greater than the stream's last ID.
    TooSmall,
}

/// Trimming strategy of XADD / XTRIM.
#[derive(Clone, Copy, Debug)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// Entry as handed to replies: ID and flattened field/value pairs.
pub type EntryRef = (StreamId, Box<[Bytes]>);

/// What XCLAIM asks for.
pub struct ClaimArgs<'a> {
    pub consumer: &'a Bytes,
    pub min_idle: i64,
    pub delivery_time: i64,
    pub retry_count: Option<u64>,
    pub force: bool,
    pub justid: bool,
    pub now: u64,
}

/// What XAUTOCLAIM returns: next cursor, claimed entries (fields `None`
/// with JUSTID), and IDs dropped from the PEL because the entry is gone.
pub struct AutoClaimed {
    pub next: StreamId,
    pub claimed: Vec<(StreamId, Option<Box<[Bytes]>>)>,
    pub deleted: Vec<StreamId>,
}

#[derive(Clone, Default)]
pub struct Stream {
    entries: BTreeMap<StreamId, Box<[Bytes]>>,
    nodes: BTreeMap<StreamId, Node>,
    pub last_id: StreamId,
    /// First entry's ID (0-0 when empty): `recorded-first-entry-id`.
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: i64,
    groups: BTreeMap<Bytes, Group>,
    entry_bytes: usize,
    group_bytes: usize,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn mem_usage(&self) -> usize {
        64 + self.entry_bytes + self.group_bytes + self.nodes.len() * 64
    }

    fn entry_cost(fields: &[Bytes]) -> usize {
        ENTRY_COST + fields.iter().map(|f| round_alloc(f.len()) + 8).sum::<usize>()
    }

    /// ID of the last entry present (`streamLastValidID`); 0-0 when empty.
    pub fn last_valid_id(&self) -> StreamId {
        self.entries.last_key_value().map_or(StreamId::ZERO, |(k, _)| *k)
    }

    pub fn get(&self, id: StreamId) -> Option<&[Bytes]> {
        self.entries.get(&id).map(|f| &f[..])
    }

    pub fn contains(&self, id: StreamId) -> bool {
        self.entries.contains_key(&id)
    }

    /// Entries with `start <= id <= end`, at most `count` (0 = all), in
    /// reverse order when `rev`.
    pub fn range(&self, start: StreamId, end: StreamId, count: usize, rev: bool) -> Vec<EntryRef> {
        if start > end {
            return Vec::new();
        }
        let take = if count == 0 { usize::MAX } else { count };
        let it = self.entries.range(start..=end);
        if rev {
            it.rev().take(take).map(|(k, v)| (*k, v.clone())).collect()
        } else {
            it.take(take).map(|(k, v)| (*k, v.clone())).collect()
        }
    }

    /// Append an entry (`streamAppendItem`). `fields` are field/value pairs;
    /// `lim` says when the tail node is full (`stream-node-max-*`).
    pub fn add(&mut self, id: AddId, fields: &[Bytes], now_ms: u64, lim: &Limits) -> Result<StreamId, AddError> {
        if self.last_id == StreamId::MAX {
            return Err(AddError::Exhausted);
        }
        let last = self.last_id;
        let id = match id {
            AddId::Auto => {
                if now_ms > last.ms {
                    StreamId::new(now_ms, 0)
                } else {
                    last.incr().ok_or(AddError::Exhausted)?
                }
            }
            AddId::AutoSeq(ms) => {
                if ms == last.ms {
                    if last.seq == u64::MAX {
                        return Err(AddError::TooSmall);
                    }
                    StreamId::new(ms, last.seq + 1)
                } else {
                    StreamId::new(ms, 0)
                }
            }
            AddId::Exact(id) => id,
        };
        if id <= last {
            return Err(AddError::TooSmall);
        }
        self.append_to_node(id, fields, lim);
        let fields: Box<[Bytes]> = fields.into();
        self.entry_bytes += Self::entry_cost(&fields);
        self.entries.insert(id, fields);
        self.entries_added = self.entries_added.wrapping_add(1);
        self.last_id = id;
        if self.entries.len() == 1 {
            self.first_id = id;
        }
        Ok(id)
    }

    /// Account the new entry in the tail node, or start a node, as Redis does.
    fn append_to_node(&mut self, id: StreamId, fields: &[Bytes], lim: &Limits) {
        let numfields = fields.len() / 2;
        let totelelen: usize = fields.iter().map(Bytes::len).sum();
        let tail = self.nodes.iter_mut().next_back();
        let new_node = match &tail {
            None => true,
            Some((_, n)) => {
                n.lp_bytes + totelelen >= lim.stream_node_max_bytes()
                    || (lim.stream_node_entries != 0
                        && u64::from(n.live) + u64::from(n.deleted) >= lim.stream_node_entries)
            }
        };
        let (master, node) = match tail {
            Some((m, n)) if !new_node => (*m, n),
            _ => {
                let master_fields: Box<[Bytes]> = fields.iter().step_by(2).cloned().collect();
                let mut lp = 6 + 1 + lp_int_size(0) * 2 + lp_int_size(numfields as i64) + lp_int_size(0);
                lp += master_fields.iter().map(|f| lp_str_size(f)).sum::<usize>();
                self.nodes.insert(
                    id,
                    Node {
                        live: 0,
                        deleted: 0,
                        lp_bytes: lp,
                        master_fields,
                        last: id,
                    },
                );
                let Some(n) = self.nodes.get_mut(&id) else {
                    return;
                };
                (id, n)
            }
        };
        // The live counter is re-encoded in place: count it with its new size.
        let old_count = lp_int_size(node.live as i64);
        node.live += 1;
        node.lp_bytes = node.lp_bytes - old_count + lp_int_size(node.live as i64);
        let same = fields.len() / 2 == node.master_fields.len()
            && fields
                .iter()
                .step_by(2)
                .zip(node.master_fields.iter())
                .all(|(a, b)| a == b);
        let mut lp = lp_int_size(if same { 2 } else { 0 });
        lp += lp_int_size(id.ms.wrapping_sub(master.ms) as i64);
        lp += lp_int_size(id.seq.wrapping_sub(master.seq) as i64);
        let mut lp_count = numfields as i64 + 3;
        if !same {
            lp += lp_int_size(numfields as i64);
            lp += fields.iter().step_by(2).map(|f| lp_str_size(f)).sum::<usize>();
            lp_count += numfields as i64 + 1;
        }
        lp += fields.iter().skip(1).step_by(2).map(|v| lp_str_size(v)).sum::<usize>();
        lp += lp_int_size(lp_count);
        node.lp_bytes += lp;
        node.last = id;
    }

    fn node_of(&mut self, id: StreamId) -> Option<(StreamId, &mut Node)> {
        self.nodes.range_mut(..=id).next_back().map(|(k, n)| (*k, n))
    }

    /// Remove one entry (XDEL): the node marks it deleted and goes away with
    /// its last live entry.
    fn remove_entry(&mut self, id: StreamId, drop_empty_node: bool) -> bool {
        let Some(fields) = self.entries.remove(&id) else {
            return false;
        };
        self.entry_bytes -= Self::entry_cost(&fields);
        if let Some((master, node)) = self.node_of(id) {
            node.live = node.live.saturating_sub(1);
            node.deleted += 1;
            if node.live == 0 && drop_empty_node {
                self.nodes.remove(&master);
            }
        }
        true
    }

    fn refresh_first_id(&mut self) {
        self.first_id = self.entries.first_key_value().map_or(StreamId::ZERO, |(k, _)| *k);
    }

    /// XDEL: delete the given IDs, returns how many existed.
    pub fn delete(&mut self, ids: &[StreamId]) -> usize {
        let mut deleted = 0;
        let mut first = false;
        for &id in ids {
            if self.remove_entry(id, true) {
                first |= id == self.first_id;
                if id > self.max_deleted_id {
                    self.max_deleted_id = id;
                }
                deleted += 1;
            }
        }
        if deleted > 0 && (self.entries.is_empty() || first) {
            self.refresh_first_id();
        }
        deleted
    }

    /// Trim (`streamTrim`): whole nodes first; within a node only when
    /// exact. `limit` bounds the entries removed (0 = none). Returns the
    /// number of entries removed.
    pub fn trim(&mut self, strategy: Trim, approx: bool, limit: u64) -> u64 {
        let mut deleted: u64 = 0;
        loop {
            if let Trim::MaxLen(max) = strategy
                && self.entries.len() as u64 <= max
            {
                break;
            }
            let Some((&master, node)) = self.nodes.iter().next() else {
                break;
            };
            let live = node.live as u64;
            if limit != 0 && deleted + live > limit {
                break;
            }
            let remove_node = match strategy {
                Trim::MaxLen(max) => (self.entries.len() as u64).saturating_sub(live) >= max,
                Trim::MinId(min) => node.last < min,
            };
            let node_end = self
                .nodes
                .range((std::ops::Bound::Excluded(master), std::ops::Bound::Unbounded))
                .next()
                .map(|(k, _)| *k);
            let in_node: Vec<StreamId> = match node_end {
                Some(end) => self.entries.range(master..end).map(|(k, _)| *k).collect(),
                None => self.entries.range(master..).map(|(k, _)| *k).collect(),
            };
            if remove_node {
                for id in &in_node {
                    if let Some(f) = self.entries.remove(id) {
                        self.entry_bytes -= Self::entry_cost(&f);
                    }
                }
                self.nodes.remove(&master);
                deleted += live;
                continue;
            }
            if approx {
                break;
            }
            for id in in_node {
                let stop = match strategy {
                    Trim::MaxLen(max) => self.entries.len() as u64 <= max,
                    Trim::MinId(min) => id >= min,
                };
                if stop {
                    break;
                }
                self.remove_entry(id, false);
                deleted += 1;
            }
            break;
        }
        self.refresh_first_id();
        deleted
    }

    /// XSETID's fields.
    pub fn set_meta(&mut self, last: StreamId, entries_added: Option<i64>, max_deleted: Option<StreamId>) {
        self.last_id = last;
        if let Some(n) = entries_added {
            self.entries_added = n;
        }
        if let Some(m) = max_deleted {
            self.max_deleted_id = m;
        }
    }

    /// `radix-tree-keys`: the number of macro nodes.
    pub fn radix_tree_keys(&self) -> usize {
        self.nodes.len()
    }

    /// `radix-tree-nodes`: nodes of a canonical radix tree over the node keys
    /// (128-bit big-endian IDs), which is the shape Redis' rax builds.
    pub fn radix_tree_nodes(&self) -> usize {
        let keys: Vec<[u8; 16]> = self.nodes.keys().map(|k| k.encode()).collect();
        if keys.is_empty() {
            return 1;
        }
        rax_nodes(&keys, 0)
    }

    // ---- consumer groups ----

    pub fn group(&self, name: &[u8]) -> Option<&Group> {
        self.groups.get(name)
    }

    pub fn groups(&self) -> impl Iterator<Item = (&Bytes, &Group)> {
        self.groups.iter()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// False when the group exists already.
    pub fn create_group(&mut self, name: &Bytes, last_id: StreamId, entries_read: i64) -> bool {
        if self.groups.contains_key(name) {
            return false;
        }
        self.group_bytes += GROUP_COST + round_alloc(name.len());
        self.groups.insert(
            name.clone(),
            Group {
                last_id,
                entries_read,
                pel: BTreeMap::new(),
                consumers: BTreeMap::new(),
            },
        );
        true
    }

    pub fn destroy_group(&mut self, name: &[u8]) -> bool {
        let Some(g) = self.groups.remove(name) else {
            return false;
        };
        let cost = GROUP_COST
            + round_alloc(name.len())
            + g.pel.len() * NACK_COST
            + g.consumers
                .keys()
                .map(|c| CONSUMER_COST + round_alloc(c.len()))
                .sum::<usize>();
        self.group_bytes = self.group_bytes.saturating_sub(cost);
        true
    }

    pub fn set_group_id(&mut self, name: &[u8], id: StreamId, entries_read: i64) -> bool {
        match self.groups.get_mut(name) {
            Some(g) => {
                g.last_id = id;
                g.entries_read = entries_read;
                true
            }
            None => false,
        }
    }

    /// Create a consumer; false when it exists (or the group does not).
    pub fn create_consumer(&mut self, group: &[u8], name: &Bytes, now: u64) -> bool {
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        if g.consumers.contains_key(name) {
            return false;
        }
        g.consumers.insert(
            name.clone(),
            Consumer {
                seen_time: now,
                pel: BTreeSet::new(),
            },
        );
        self.group_bytes += CONSUMER_COST + round_alloc(name.len());
        true
    }

    /// Look a consumer up refreshing its seen time, creating it if needed;
    /// true when created. False too when the group does not exist.
    pub fn touch_consumer(&mut self, group: &[u8], name: &Bytes, now: u64) -> bool {
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        if let Some(c) = g.consumers.get_mut(name) {
            c.seen_time = now;
            return false;
        }
        self.create_consumer(group, name, now)
    }

    /// Delete a consumer and its pending entries; the number it had pending.
    pub fn delete_consumer(&mut self, group: &[u8], name: &[u8]) -> Option<usize> {
        let g = self.groups.get_mut(group)?;
        let c = g.consumers.remove(name)?;
        for id in &c.pel {
            g.pel.remove(id);
        }
        let cost = CONSUMER_COST + round_alloc(name.len()) + c.pel.len() * NACK_COST;
        self.group_bytes = self.group_bytes.saturating_sub(cost);
        Some(c.pel.len())
    }

    /// Counter of an ID's position since the first entry ever added, when it
    /// can be known (`streamEstimateDistanceFromFirstEverEntry`); -1 if not.
    pub fn estimate_distance(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        if self.entries.is_empty() && id <= self.last_id {
            return self.entries_added;
        }
        if id == self.last_id {
            return self.entries_added;
        } else if id > self.last_id {
            return -1;
        }
        if self.max_deleted_id.is_zero() || self.max_deleted_id < self.first_id {
            let len = self.entries.len() as i64;
            if id < self.first_id {
                return self.entries_added.wrapping_sub(len);
            } else if id == self.first_id {
                return self.entries_added.wrapping_sub(len).wrapping_add(1);
            }
        }
        -1
    }

    /// Does `[start, +inf]` contain a deleted entry (`streamRangeHasTombstones`)?
    fn has_tombstones_from(&self, start: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted_id.is_zero() {
            return false;
        }
        if self.first_id > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id
    }

    /// A group's lag (`streamReplyWithCGLag`); `None` when unknown.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != -1 && !self.has_tombstones_from(g.last_id) {
            return Some(self.entries_added.wrapping_sub(g.entries_read));
        }
        let read = self.estimate_distance(g.last_id);
        (read != -1).then(|| self.entries_added.wrapping_sub(read))
    }

    /// XREADGROUP `>`: deliver entries from `start` on, advancing the
    /// group's last ID and read counter, recording them as pending for the
    /// consumer unless `noack`.
    pub fn read_group_new(
        &mut self,
        group: &[u8],
        consumer: &Bytes,
        start: StreamId,
        count: usize,
        noack: bool,
        now: u64,
    ) -> Vec<EntryRef> {
        let entries = self.range(start, StreamId::MAX, count, false);
        for (id, _) in &entries {
            let id = *id;
            let Some(g) = self.groups.get(group) else {
                break;
            };
            if id > g.last_id {
                let read = if g.entries_read != -1 && !self.has_tombstones_from(id) {
                    g.entries_read.wrapping_add(1)
                } else if self.entries_added != 0 {
                    self.estimate_distance(id)
                } else {
                    g.entries_read
                };
                if let Some(g) = self.groups.get_mut(group) {
                    g.entries_read = read;
                    g.last_id = id;
                }
            }
            if !noack {
                self.assign_nack(group, consumer, id, now as i64, Some(1));
            }
        }
        entries
    }

    /// Make `consumer` the owner of the pending entry `id` (creating the
    /// NACK if needed), with the given delivery time and count (`None`
    /// keeps the count).
    fn assign_nack(&mut self, group: &[u8], consumer: &Bytes, id: StreamId, time: i64, count: Option<u64>) {
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let mut added = 0;
        match g.pel.get_mut(&id) {
            Some(n) => {
                if n.consumer != *consumer {
                    if let Some(old) = g.consumers.get_mut(&n.consumer) {
                        old.pel.remove(&id);
                    }
                    n.consumer = consumer.clone();
                }
                n.delivery_time = time;
                if let Some(c) = count {
                    n.delivery_count = c;
                }
            }
            None => {
                g.pel.insert(
                    id,
                    Nack {
                        consumer: consumer.clone(),
                        delivery_time: time,
                        delivery_count: count.unwrap_or(1),
                    },
                );
                added = NACK_COST;
            }
        }
        if let Some(c) = g.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
        self.group_bytes += added;
    }

    fn drop_nack(&mut self, group: &[u8], id: StreamId) -> bool {
        let Some(g) = self.groups.get_mut(group) else {
            return false;
        };
        let Some(n) = g.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = g.consumers.get_mut(&n.consumer) {
            c.pel.remove(&id);
        }
        self.group_bytes = self.group_bytes.saturating_sub(NACK_COST);
        true
    }

    /// XREADGROUP with an ID: the consumer's pending entries from `start`,
    /// fields `None` for entries deleted since; delivered ones count again.
    pub fn read_group_history(
        &mut self,
        group: &[u8],
        consumer: &[u8],
        start: StreamId,
        count: usize,
        now: u64,
    ) -> Vec<(StreamId, Option<Box<[Bytes]>>)> {
        let Some(g) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let Some(c) = g.consumers.get(consumer) else {
            return Vec::new();
        };
        let take = if count == 0 { usize::MAX } else { count };
        let ids: Vec<StreamId> = c.pel.range(start..).take(take).copied().collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.entries.get(&id) {
                Some(f) => {
                    if let Some(n) = g.pel.get_mut(&id) {
                        n.delivery_time = now as i64;
                        n.delivery_count = n.delivery_count.wrapping_add(1);
                    }
                    out.push((id, Some(f.clone())));
                }
                None => out.push((id, None)),
            }
        }
        out
    }

    /// XACK: how many of `ids` were pending.
    pub fn ack(&mut self, group: &[u8], ids: &[StreamId]) -> usize {
        ids.iter().filter(|&&id| self.drop_nack(group, id)).count()
    }

    /// XCLAIM. Returns claimed IDs (with fields unless JUSTID) and whether
    /// anything changed.
    pub fn claim(&mut self, group: &[u8], ids: &[StreamId], a: &ClaimArgs) -> Vec<(StreamId, Option<Box<[Bytes]>>)> {
        let mut out = Vec::new();
        let mut consumer_ready = false;
        for &id in ids {
            let Some(g) = self.groups.get(group) else {
                break;
            };
            let pending = g.pel.get(&id).map(|n| (n.delivery_time, n.delivery_count));
            if !self.entries.contains_key(&id) {
                if pending.is_some() {
                    self.drop_nack(group, id);
                }
                continue;
            }
            let (exists, owner_none) = match pending {
                Some(_) => (true, false),
                None if a.force => (true, true),
                None => (false, false),
            };
            if !exists {
                continue;
            }
            if !owner_none
                && a.min_idle != 0
                && let Some((time, _)) = pending
                && (a.now as i64).wrapping_sub(time) < a.min_idle
            {
                continue;
            }
            if !consumer_ready {
                self.touch_consumer(group, a.consumer, a.now);
                consumer_ready = true;
            }
            let count = match (a.retry_count, owner_none) {
                (Some(c), _) => Some(c),
                // A NACK made by FORCE starts at 1 delivery, then counts this one.
                (None, true) => Some(if a.justid { 1 } else { 2 }),
                (None, false) => {
                    let cur = pending.map_or(0, |(_, c)| c);
                    Some(if a.justid { cur } else { cur.wrapping_add(1) })
                }
            };
            self.assign_nack(group, a.consumer, id, a.delivery_time, count);
            let fields = if a.justid { None } else { self.entries.get(&id).cloned() };
            out.push((id, fields));
        }
        out
    }

    /// XAUTOCLAIM from `start`, claiming at most `count` entries and looking
    /// at no more than `10 * count` PEL entries.
    #[allow(clippy::too_many_arguments)] // XAUTOCLAIM's own argument list
    pub fn autoclaim(
        &mut self,
        group: &[u8],
        consumer: &Bytes,
        min_idle: i64,
        start: StreamId,
        count: usize,
        justid: bool,
        now: u64,
    ) -> AutoClaimed {
        let mut attempts = count.saturating_mul(10);
        let mut count = count;
        let mut res = AutoClaimed {
            next: StreamId::ZERO,
            claimed: Vec::new(),
            deleted: Vec::new(),
        };
        let mut cursor = Some(start);
        let mut consumer_ready = false;
        loop {
            if attempts == 0 || count == 0 {
                // The loop stopped on a limit: the cursor is the next PEL entry.
                res.next = cursor
                    .and_then(|c| {
                        self.groups
                            .get(group)
                            .and_then(|g| g.pel.range(c..).next().map(|(k, _)| *k))
                    })
                    .unwrap_or(StreamId::ZERO);
                return res;
            }
            attempts -= 1;
            let Some(c) = cursor else {
                return res;
            };
            let Some((id, time, dc)) = self.groups.get(group).and_then(|g| {
                g.pel
                    .range(c..)
                    .next()
                    .map(|(k, n)| (*k, n.delivery_time, n.delivery_count))
            }) else {
                return res;
            };
            cursor = id.incr();
            if !self.entries.contains_key(&id) {
                self.drop_nack(group, id);
                res.deleted.push(id);
                count -= 1;
                continue;
            }
            if min_idle != 0 && (now as i64).wrapping_sub(time) < min_idle {
                continue;
            }
            if !consumer_ready {
                self.touch_consumer(group, consumer, now);
                consumer_ready = true;
            }
            let dc = if justid { dc } else { dc.wrapping_add(1) };
            self.assign_nack(group, consumer, id, now as i64, Some(dc));
            let fields = if justid { None } else { self.entries.get(&id).cloned() };
            res.claimed.push((id, fields));
            count -= 1;
        }
    }
}

/// Nodes of a canonical radix tree holding `keys` (sorted, distinct, all
/// sharing their first `depth` bytes): a compressed node per shared run, a
/// branching node per fork, a leaf per key.
/// One macro-node shadow as the snapshot codec ([`crate::persist::codec`])
/// stores it. The shadows are part of what clients can observe (approximate
/// trimming, `XINFO STREAM`), so a restored stream must get them back exactly
/// rather than rebuild them by re-adding entries (deleted entries would be
/// forgotten and node boundaries would move).
pub struct NodeShadow<'a> {
    pub master: StreamId,
    pub live: u32,
    pub deleted: u32,
    pub lp_bytes: usize,
    pub master_fields: &'a [Bytes],
    pub last: StreamId,
}

/// An owned [`NodeShadow`], as decoded from a snapshot.
pub struct NodeParts {
    pub master: StreamId,
    pub live: u32,
    pub deleted: u32,
    pub lp_bytes: usize,
    pub master_fields: Box<[Bytes]>,
    pub last: StreamId,
}

/// Everything a stream holds, for restoring one from a snapshot. Consumers'
/// own pending sets are not part of it: they are rebuilt from the groups'
/// PELs (every NACK names its consumer), so they cannot disagree.
pub struct StreamParts {
    pub entries: Vec<(StreamId, Box<[Bytes]>)>,
    pub nodes: Vec<NodeParts>,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: i64,
    /// Group name, last delivered ID, entries read, PEL, consumers (name, seen time).
    pub groups: Vec<GroupParts>,
}

pub struct GroupParts {
    pub name: Bytes,
    pub last_id: StreamId,
    pub entries_read: i64,
    pub pel: Vec<(StreamId, Nack)>,
    pub consumers: Vec<(Bytes, u64)>,
}

/// Largest `live + deleted` a restored node may claim: a node is at most
/// 1 GiB (Redis' listpack cap) of entries of a few bytes each, and a bound
/// keeps the counters' arithmetic from overflowing on a corrupt (but
/// checksummed-by-accident) input.
const MAX_NODE_ENTRIES_RESTORED: u32 = 1 << 30;

impl Stream {
    /// Entries in ID order.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (StreamId, &[Bytes])> {
        self.entries.iter().map(|(k, v)| (*k, &v[..]))
    }

    /// Macro-node shadows in ID order.
    pub fn node_shadows(&self) -> impl ExactSizeIterator<Item = NodeShadow<'_>> {
        self.nodes.iter().map(|(m, n)| NodeShadow {
            master: *m,
            live: n.live,
            deleted: n.deleted,
            lp_bytes: n.lp_bytes,
            master_fields: &n.master_fields,
            last: n.last,
        })
    }

    /// Rebuild a stream from its parts, checking the invariants the rest of
    /// this module relies on (entries sorted and unique, every entry inside
    /// a node whose live count matches, field lists in pairs), so a damaged
    /// input is refused here instead of misbehaving later.
    pub fn from_parts(p: StreamParts) -> Result<Stream, &'static str> {
        let mut s = Stream {
            last_id: p.last_id,
            first_id: p.first_id,
            max_deleted_id: p.max_deleted_id,
            entries_added: p.entries_added,
            ..Stream::default()
        };
        for n in p.nodes {
            if n.live
                .checked_add(n.deleted)
                .is_none_or(|t| t > MAX_NODE_ENTRIES_RESTORED)
            {
                return Err("stream node counts out of range");
            }
            if n.lp_bytes > 1 << 40 || n.lp_bytes < 16 {
                return Err("stream node size out of range");
            }
            if n.last < n.master {
                return Err("stream node ends before it starts");
            }
            if s.nodes.last_key_value().is_some_and(|(k, _)| *k >= n.master) {
                return Err("stream nodes out of order");
            }
            s.nodes.insert(
                n.master,
                Node {
                    live: n.live,
                    deleted: n.deleted,
                    lp_bytes: n.lp_bytes,
                    master_fields: n.master_fields,
                    last: n.last,
                },
            );
        }
        // Walk entries and nodes together: each node's live count must be
        // the number of entries between its master ID and the next node's.
        let masters: Vec<(StreamId, u32)> = s.nodes.iter().map(|(k, n)| (*k, n.live)).collect();
        let mut node = 0usize;
        let mut in_node = 0u32;
        for (id, fields) in p.entries {
            if !fields.len().is_multiple_of(2) || fields.is_empty() {
                return Err("stream entry fields are not pairs");
            }
            if s.entries.last_key_value().is_some_and(|(k, _)| *k >= id) {
                return Err("stream entries out of order");
            }
            if id > s.last_id {
                return Err("stream entry after the last ID");
            }
            while node + 1 < masters.len() && masters[node + 1].0 <= id {
                if in_node != masters[node].1 {
                    return Err("stream node live count does not match its entries");
                }
                node += 1;
                in_node = 0;
            }
            if masters.get(node).is_none_or(|(m, _)| *m > id) {
                return Err("stream entry outside every node");
            }
            in_node += 1;
            s.entry_bytes += Self::entry_cost(&fields);
            s.entries.insert(id, fields);
        }
        if !masters.is_empty() && (in_node != masters[node].1 || masters[node + 1..].iter().any(|(_, l)| *l != 0)) {
            return Err("stream node live count does not match its entries");
        }
        for g in p.groups {
            if !s.create_group(&g.name, g.last_id, g.entries_read) {
                return Err("duplicate stream consumer group");
            }
            for (name, seen) in g.consumers {
                if !s.create_consumer(&g.name, &name, seen) {
                    return Err("duplicate stream consumer");
                }
            }
            for (id, nack) in g.pel {
                let Some(grp) = s.groups.get_mut(&g.name) else {
                    return Err("stream consumer group vanished");
                };
                if grp.pel.last_key_value().is_some_and(|(k, _)| *k >= id) {
                    return Err("stream pending entries out of order");
                }
                if let Some(c) = grp.consumers.get_mut(&nack.consumer) {
                    c.pel.insert(id);
                }
                grp.pel.insert(id, nack);
                s.group_bytes += NACK_COST;
            }
        }
        Ok(s)
    }
}

fn rax_nodes(keys: &[[u8; 16]], depth: usize) -> usize {
    if depth == 16 {
        return 1;
    }
    let (first, last) = (&keys[0], &keys[keys.len() - 1]);
    let mut l = depth;
    while l < 16 && first[l] == last[l] {
        l += 1;
    }
    if l > depth {
        return 1 + rax_nodes(keys, l);
    }
    let mut n = 1;
    let mut i = 0;
    while i < keys.len() {
        let b = keys[i][depth];
        let mut j = i;
        while j < keys.len() && keys[j][depth] == b {
            j += 1;
        }
        n += rax_nodes(&keys[i..j], depth + 1);
        i = j;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    fn f(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn parse_ids_like_redis() {
        let p = |s: &str| parse_id(s.as_bytes(), false, 0, false).map(|p| p.id);
        assert_eq!(p("1-2"), Some(id(1, 2)));
        assert_eq!(p("5"), Some(id(5, 0)));
        assert_eq!(p("-"), Some(StreamId::ZERO));
        assert_eq!(p("+"), Some(StreamId::MAX));
        assert_eq!(parse_id(b"-", true, 0, false), None);
        assert_eq!(p(" 1"), Some(id(1, 0)));
        assert_eq!(p("01-02"), Some(id(1, 2)));
        assert_eq!(p("+5"), Some(id(5, 0)));
        assert_eq!(p("1--05"), Some(id(1, 5u64.wrapping_neg())));
        assert_eq!(p("1--5"), None);
        assert_eq!(p("1-"), None);
        assert_eq!(p("-1"), None);
        assert_eq!(p("18446744073709551616"), None);
        assert_eq!(p("1 "), None);
        assert_eq!(p(""), None);
        assert_eq!(p("1-*"), None);
        assert_eq!(
            parse_id(b"7-*", true, 0, true),
            Some(ParsedId {
                id: id(7, 0),
                seq_given: false
            })
        );
        assert_eq!(
            parse_id(b"3", false, u64::MAX, false).map(|p| p.id),
            Some(id(3, u64::MAX))
        );
    }

    #[test]
    fn add_rejects_small_ids_and_generates_sequences() {
        let mut s = Stream::default();
        assert_eq!(
            s.add(AddId::Exact(id(1, 1)), &f(&["a", "1"]), 0, &Limits::default()),
            Ok(id(1, 1))
        );
        assert_eq!(
            s.add(AddId::Exact(id(1, 1)), &f(&["a", "1"]), 0, &Limits::default()),
            Err(AddError::TooSmall)
        );
        assert_eq!(
            s.add(AddId::AutoSeq(1), &f(&["a", "1"]), 0, &Limits::default()),
            Ok(id(1, 2))
        );
        assert_eq!(
            s.add(AddId::AutoSeq(0), &f(&["a", "1"]), 0, &Limits::default()),
            Err(AddError::TooSmall)
        );
        assert_eq!(s.add(AddId::Auto, &f(&["a", "1"]), 0, &Limits::default()), Ok(id(1, 3)));
        assert_eq!(
            s.add(AddId::Auto, &f(&["a", "1"]), 50, &Limits::default()),
            Ok(id(50, 0))
        );
        s.set_meta(StreamId::MAX, None, None);
        assert_eq!(
            s.add(AddId::Auto, &f(&["a", "1"]), 50, &Limits::default()),
            Err(AddError::Exhausted)
        );
        assert_eq!(s.len(), 4);
        assert_eq!(s.entries_added, 4);
    }

    #[test]
    fn nodes_split_at_100_entries_and_approx_trim_drops_whole_nodes() {
        let mut s = Stream::default();
        for i in 1..=250 {
            s.add(AddId::Exact(id(i, 0)), &f(&["f", "v"]), 0, &Limits::default())
                .expect("test setup");
        }
        assert_eq!(s.radix_tree_keys(), 3);
        assert_eq!(
            s.trim(Trim::MaxLen(180), true, Limits::default().approx_trim_limit()),
            0
        );
        assert_eq!(
            s.trim(Trim::MaxLen(120), true, Limits::default().approx_trim_limit()),
            100
        );
        assert_eq!(s.len(), 150);
        assert_eq!(s.first_id, id(101, 0));
        assert_eq!(s.trim(Trim::MaxLen(10), false, 0), 140);
        assert_eq!(s.first_id, id(241, 0));
        assert_eq!(s.trim(Trim::MinId(id(245, 0)), false, 0), 4);
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn big_entries_split_nodes_by_bytes() {
        let mut s = Stream::default();
        let big = "x".repeat(1000);
        for i in 1..=10 {
            s.add(AddId::Exact(id(i, 0)), &f(&["f", &big]), 0, &Limits::default())
                .expect("test setup");
        }
        // Four 1000-byte values fill a 4096-byte listpack.
        assert!(s.radix_tree_keys() >= 3, "{}", s.radix_tree_keys());
    }

    #[test]
    fn delete_tracks_first_and_max_deleted() {
        let mut s = Stream::default();
        for i in 1..=3 {
            s.add(AddId::Exact(id(i, 0)), &f(&["a", "b"]), 0, &Limits::default())
                .expect("test setup");
        }
        assert_eq!(s.delete(&[id(1, 0), id(9, 9)]), 1);
        assert_eq!(s.first_id, id(2, 0));
        assert_eq!(s.max_deleted_id, id(1, 0));
        assert_eq!(s.delete(&[id(2, 0), id(3, 0)]), 2);
        assert_eq!(s.first_id, StreamId::ZERO);
        assert_eq!(s.radix_tree_keys(), 0);
        assert_eq!(s.mem_usage(), Stream::default().mem_usage());
    }

    #[test]
    fn groups_deliver_ack_and_claim() {
        let mut s = Stream::default();
        for i in 1..=3 {
            s.add(AddId::Exact(id(i, 0)), &f(&["a", "b"]), 0, &Limits::default())
                .expect("test setup");
        }
        let g = Bytes::from_static(b"g");
        let c1 = Bytes::from_static(b"c1");
        let c2 = Bytes::from_static(b"c2");
        assert!(s.create_group(&g, StreamId::ZERO, -1));
        assert!(!s.create_group(&g, StreamId::ZERO, -1));
        assert!(s.touch_consumer(&g, &c1, 10));
        let got = s.read_group_new(&g, &c1, id(0, 1), 2, false, 10);
        assert_eq!(got.len(), 2);
        let grp = s.group(&g).expect("test setup");
        assert_eq!(grp.last_id, id(2, 0));
        assert_eq!(grp.entries_read, 2);
        assert_eq!(s.lag(s.group(&g).expect("test setup")), Some(1));
        let claimed = s.claim(
            &g,
            &[id(1, 0)],
            &ClaimArgs {
                consumer: &c2,
                min_idle: 0,
                delivery_time: 20,
                retry_count: None,
                force: false,
                justid: false,
                now: 20,
            },
        );
        assert_eq!(claimed.len(), 1);
        let grp = s.group(&g).expect("test setup");
        assert_eq!(grp.pel[&id(1, 0)].consumer, c2);
        assert_eq!(grp.pel[&id(1, 0)].delivery_count, 2);
        assert!(grp.consumers[&c1].pel.len() == 1 && grp.consumers[&c2].pel.len() == 1);
        assert_eq!(s.ack(&g, &[id(1, 0), id(1, 0), id(2, 0)]), 2);
        assert_eq!(s.delete_consumer(&g, &c1), Some(0));
        assert!(s.destroy_group(&g));
        assert_eq!(s.group_count(), 0);
    }

    #[test]
    fn group_memory_is_released() {
        let mut s = Stream::default();
        for i in 1..=5 {
            s.add(AddId::Exact(id(i, 0)), &f(&["a", "b"]), 0, &Limits::default())
                .expect("test setup");
        }
        let base = s.mem_usage();
        let g = Bytes::from_static(b"group");
        let (c1, c2) = (Bytes::from_static(b"c1"), Bytes::from_static(b"c2"));
        s.create_group(&g, StreamId::ZERO, -1);
        s.touch_consumer(&g, &c1, 0);
        s.read_group_new(&g, &c1, id(0, 1), 0, false, 0);
        s.create_consumer(&g, &c2, 0);
        s.autoclaim(&g, &c2, 0, StreamId::ZERO, 2, false, 1);
        assert!(s.mem_usage() > base);
        assert_eq!(s.delete_consumer(&g, &c2), Some(2));
        assert_eq!(s.ack(&g, &[id(3, 0)]), 1);
        assert!(s.destroy_group(&g));
        assert_eq!(s.mem_usage(), base);
    }

    #[test]
    fn autoclaim_reports_deleted_and_cursor() {
        let mut s = Stream::default();
        for i in 1..=4 {
            s.add(AddId::Exact(id(i, 0)), &f(&["a", "b"]), 0, &Limits::default())
                .expect("test setup");
        }
        let g = Bytes::from_static(b"g");
        let c = Bytes::from_static(b"c");
        s.create_group(&g, StreamId::ZERO, -1);
        s.touch_consumer(&g, &c, 0);
        s.read_group_new(&g, &c, id(0, 1), 0, false, 0);
        s.delete(&[id(2, 0)]);
        let r = s.autoclaim(&g, &c, 0, StreamId::ZERO, 2, true, 5);
        assert_eq!(r.claimed.iter().map(|x| x.0).collect::<Vec<_>>(), vec![id(1, 0)]);
        assert_eq!(r.deleted, vec![id(2, 0)]);
        assert_eq!(r.next, id(3, 0));
        let r = s.autoclaim(&g, &c, 0, r.next, 10, true, 5);
        assert_eq!(r.claimed.len(), 2);
        assert_eq!(r.next, StreamId::ZERO);
    }

    #[test]
    fn rax_node_counts() {
        assert_eq!(rax_nodes(&[id(1, 1).encode()], 0), 2);
        // Shared 7-byte prefix, fork, then two 8-byte tails with leaves.
        assert_eq!(rax_nodes(&[id(1, 1).encode(), id(101, 1).encode()], 0), 6);
    }
}
