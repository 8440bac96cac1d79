//! Encoding thresholds: when a small collection switches to its large
//! encoding, and how big a stream's macro-node grows.
//!
//! These are Redis' `hash-max-listpack-*`, `zset-max-listpack-*`,
//! `set-max-intset-entries` and `stream-node-max-*` parameters. ferrokv does
//! not store a small hash as a listpack, but what the encoding makes visible
//! follows them exactly as in Redis: `OBJECT ENCODING`, the order HSCAN, SSCAN
//! and ZSCAN return a small collection in (whole, in one call), `-0` scores
//! of a listpack, and which entries approximate stream trimming (`MAXLEN ~`)
//! may remove. A user's tuned `redis.conf` therefore means the same here.
//!
//! The node holds them as atomics ([`SharedLimits`], in the config) so that
//! `CONFIG SET` applies at once; a command reads one [`Limits`] snapshot and
//! passes it to the insert paths that decide on a conversion. As in Redis a
//! lower limit converts a collection at its next write, never back.

use std::sync::atomic::{AtomicU64, Ordering};

/// One snapshot of the thresholds; [`Limits::default`] is Redis 7.0's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `hash-max-listpack-entries`: fields a small hash may hold.
    pub hash_entries: usize,
    /// `hash-max-listpack-value`: longest field or value of a small hash.
    pub hash_value: usize,
    /// `zset-max-listpack-entries`.
    pub zset_entries: usize,
    /// `zset-max-listpack-value`: longest member of a small sorted set.
    pub zset_value: usize,
    /// `set-max-intset-entries`.
    pub intset_entries: usize,
    /// `stream-node-max-bytes` (0: no limit but Redis' 1 GiB listpack cap).
    pub stream_node_bytes: usize,
    /// `stream-node-max-entries` (0: no limit).
    pub stream_node_entries: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            hash_entries: 512,
            hash_value: 64,
            zset_entries: 128,
            zset_value: 64,
            intset_entries: 512,
            stream_node_bytes: 4096,
            stream_node_entries: 100,
        }
    }
}

/// Redis caps a listpack at 1 GiB (`STREAM_LISTPACK_MAX_SIZE`), whatever
/// `stream-node-max-bytes` says.
const STREAM_LISTPACK_MAX_SIZE: usize = 1 << 30;
/// Redis caps an intset at 2^30 members whatever `set-max-intset-entries` says.
const INTSET_MAX: usize = 1 << 30;

impl Limits {
    /// Thresholds that never convert: for rebuilding a value saved in its
    /// small encoding (the saving node's limits decided; the next write
    /// re-checks against this node's).
    pub const KEEP: Limits = Limits {
        hash_entries: usize::MAX,
        hash_value: usize::MAX,
        zset_entries: usize::MAX,
        zset_value: usize::MAX,
        intset_entries: usize::MAX,
        stream_node_bytes: 0,
        stream_node_entries: 0,
    };

    /// Members an intset may hold.
    pub fn intset_max(&self) -> usize {
        self.intset_entries.min(INTSET_MAX)
    }

    /// Bytes at which a stream node is full.
    pub fn stream_node_max_bytes(&self) -> usize {
        match self.stream_node_bytes {
            0 => STREAM_LISTPACK_MAX_SIZE,
            n => n.min(STREAM_LISTPACK_MAX_SIZE),
        }
    }

    /// Entries an approximate trim (`MAXLEN ~` / `MINID ~` without `LIMIT`)
    /// may remove: 100 nodes' worth, bounded on both sides as in Redis so a
    /// limit of 0 or a huge one cannot make a trim unbounded.
    pub fn approx_trim_limit(&self) -> u64 {
        match self.stream_node_entries.saturating_mul(100) {
            0 => 10_000,
            n => n.min(1_000_000),
        }
    }
}

/// The live thresholds of a node: what `CONFIG SET` changes.
#[derive(Debug)]
pub struct SharedLimits {
    hash_entries: AtomicU64,
    hash_value: AtomicU64,
    zset_entries: AtomicU64,
    zset_value: AtomicU64,
    intset_entries: AtomicU64,
    stream_node_bytes: AtomicU64,
    stream_node_entries: AtomicU64,
}

/// One threshold, for the config table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    HashEntries,
    HashValue,
    ZSetEntries,
    ZSetValue,
    IntsetEntries,
    StreamNodeBytes,
    StreamNodeEntries,
}

impl Default for SharedLimits {
    fn default() -> SharedLimits {
        let d = Limits::default();
        SharedLimits {
            hash_entries: AtomicU64::new(d.hash_entries as u64),
            hash_value: AtomicU64::new(d.hash_value as u64),
            zset_entries: AtomicU64::new(d.zset_entries as u64),
            zset_value: AtomicU64::new(d.zset_value as u64),
            intset_entries: AtomicU64::new(d.intset_entries as u64),
            stream_node_bytes: AtomicU64::new(d.stream_node_bytes as u64),
            stream_node_entries: AtomicU64::new(d.stream_node_entries),
        }
    }
}

impl SharedLimits {
    fn cell(&self, l: Limit) -> &AtomicU64 {
        match l {
            Limit::HashEntries => &self.hash_entries,
            Limit::HashValue => &self.hash_value,
            Limit::ZSetEntries => &self.zset_entries,
            Limit::ZSetValue => &self.zset_value,
            Limit::IntsetEntries => &self.intset_entries,
            Limit::StreamNodeBytes => &self.stream_node_bytes,
            Limit::StreamNodeEntries => &self.stream_node_entries,
        }
    }

    pub fn get(&self, l: Limit) -> u64 {
        self.cell(l).load(Ordering::Relaxed)
    }

    pub fn set(&self, l: Limit, v: u64) {
        self.cell(l).store(v, Ordering::Relaxed);
    }

    /// The thresholds now (each read on its own: a `CONFIG SET` of several
    /// racing a command may be seen half applied, as each applies alone).
    pub fn load(&self) -> Limits {
        let n = |a: &AtomicU64| usize::try_from(a.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        Limits {
            hash_entries: n(&self.hash_entries),
            hash_value: n(&self.hash_value),
            zset_entries: n(&self.zset_entries),
            zset_value: n(&self.zset_value),
            intset_entries: n(&self.intset_entries),
            stream_node_bytes: n(&self.stream_node_bytes),
            stream_node_entries: self.stream_node_entries.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approximate_trim_limit_is_bounded_as_in_redis() {
        let mut l = Limits::default();
        assert_eq!(l.approx_trim_limit(), 10_000);
        l.stream_node_entries = 0;
        assert_eq!(l.approx_trim_limit(), 10_000);
        l.stream_node_entries = 50_000;
        assert_eq!(l.approx_trim_limit(), 1_000_000);
        l.stream_node_entries = u64::MAX;
        assert_eq!(l.approx_trim_limit(), 1_000_000);
    }

    #[test]
    fn shared_limits_round_trip() {
        let s = SharedLimits::default();
        assert_eq!(s.load(), Limits::default());
        s.set(Limit::ZSetEntries, 0);
        s.set(Limit::StreamNodeBytes, 0);
        let l = s.load();
        assert_eq!(l.zset_entries, 0);
        assert_eq!(l.stream_node_max_bytes(), 1 << 30);
    }
}
