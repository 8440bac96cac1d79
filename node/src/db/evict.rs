//! Access clocks and `maxmemory` eviction.
//!
//! Each entry carries Redis' 24-bit access field: an LRU clock in seconds, or
//! under an LFU policy a 16-bit minute timestamp and an 8-bit logarithmic
//! access counter (Redis' `LFULogIncr` / `LFUDecrAndReturn`, log factor 10,
//! decay 1 minute). Eviction samples `maxmemory-samples` keys from random
//! slots and evicts the best candidate, as Redis' approximated LRU/LFU does,
//! so no global ordering structure has to be maintained on the hot path.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use bytes::Bytes;
use rand::Rng;

use super::{Db, Entry, PARTITIONS};

const LFU_INIT_VAL: u32 = 5;
const LFU_LOG_FACTOR: f64 = 10.0;
const LFU_DECAY_MINUTES: u64 = 1;
const LRU_CLOCK_MAX: u32 = (1 << 24) - 1;

/// The eviction policies of Redis' `maxmemory-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Policy {
    NoEviction = 0,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileTtl,
    VolatileRandom,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::NoEviction,
        Policy::AllKeysLru,
        Policy::AllKeysLfu,
        Policy::AllKeysRandom,
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileTtl,
        Policy::VolatileRandom,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::AllKeysLfu => "allkeys-lfu",
            Policy::AllKeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileTtl => "volatile-ttl",
            Policy::VolatileRandom => "volatile-random",
        }
    }

    pub fn parse(s: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s))
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru | Policy::VolatileLfu | Policy::VolatileTtl | Policy::VolatileRandom
        )
    }
}

/// Eviction settings shared between the config and the keyspace.
pub struct EvictionConfig {
    pub policy: AtomicU8,
    pub lfu: AtomicBool,
    pub samples: AtomicU8,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        EvictionConfig {
            policy: AtomicU8::new(0),
            lfu: AtomicBool::new(false),
            samples: AtomicU8::new(5),
        }
    }
}

impl EvictionConfig {
    pub fn policy(&self) -> Policy {
        Policy::ALL[self.policy.load(Ordering::Relaxed) as usize % Policy::ALL.len()]
    }
    pub fn set_policy(&self, p: Policy) {
        self.policy.store(p as u8, Ordering::Relaxed);
        self.lfu.store(p.is_lfu(), Ordering::Relaxed);
    }
}

/// The LRU clock for a millisecond time.
pub fn lru_clock(now_ms: u64) -> u32 {
    ((now_ms / 1000) as u32) & LRU_CLOCK_MAX
}

fn lfu_minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xffff) as u32
}

/// The access field of a new key.
pub fn new_lru(clock: u32, db: &Db) -> u32 {
    if db.eviction.lfu.load(Ordering::Relaxed) {
        (lfu_minutes(super::now_ms()) << 8) | LFU_INIT_VAL
    } else {
        clock
    }
}

/// The LFU counter after time decay.
pub fn lfu_counter(lru: u32, now_ms: u64) -> u32 {
    let ldt = lru >> 8;
    let counter = lru & 255;
    let now = lfu_minutes(now_ms);
    let elapsed = if now >= ldt { now - ldt } else { 65535 - ldt + now };
    let periods = elapsed as u64 / LFU_DECAY_MINUTES;
    counter.saturating_sub(periods.min(255) as u32)
}

fn lfu_log_incr(counter: u32) -> u32 {
    if counter == 255 {
        return 255;
    }
    let base = counter.saturating_sub(LFU_INIT_VAL) as f64;
    let p = 1.0 / (base * LFU_LOG_FACTOR + 1.0);
    if rand::rng().random::<f64>() < p {
        counter + 1
    } else {
        counter
    }
}

/// Record an access to `e`.
pub fn touch(e: &mut Entry, clock: u32, lfu: bool, now_ms: u64) {
    if lfu {
        let c = lfu_log_incr(lfu_counter(e.lru, now_ms));
        e.lru = (lfu_minutes(now_ms) << 8) | c;
    } else {
        e.lru = clock;
    }
}

/// Seconds since last access under an LRU policy (`OBJECT IDLETIME`).
pub fn idle_seconds(e: &Entry, clock: u32) -> u64 {
    let lru = e.lru & LRU_CLOCK_MAX;
    if clock >= lru {
        (clock - lru) as u64
    } else {
        (LRU_CLOCK_MAX - lru + clock) as u64
    }
}

/// Evict keys until `over()` says memory is under the limit or nothing is
/// evictable. Returns the evicted keys (for notifications and replication).
pub fn evict(db: &Db, now: u64, mut over: impl FnMut(&Db) -> bool) -> Vec<Bytes> {
    let policy = db.eviction.policy();
    let mut evicted = Vec::new();
    if policy == Policy::NoEviction {
        return evicted;
    }
    let samples = db.eviction.samples.load(Ordering::Relaxed).max(1) as usize;
    let clock = lru_clock(now);
    let mut rng = rand::rng();
    let mut fruitless = 0;
    while over(db) {
        // Score: higher is a better eviction candidate.
        let mut best: Option<(u64, Bytes)> = None;
        for _ in 0..samples {
            // From a random partition to the first one with candidates: random
            // probes alone miss a keyspace of a few keys (one key in one of 64
            // partitions escaped 17 rounds of 5 probes a quarter of the time,
            // and the write got -OOM although a key could go).
            let start = rng.random_range(0..PARTITIONS);
            'walk: for off in 0..PARTITIONS {
                let mut ks = db.lock_partition((start + off) % PARTITIONS, now);
                if let Some(part) = ks.partitions_mut().next() {
                    if part.keys == 0 || (policy.volatile_only() && part.volatile == 0) {
                        continue 'walk;
                    }
                    // Walk the partition's slots from a random one to the first
                    // non-empty one: random probes alone miss a sparse keyspace
                    // (a few large values) and then nothing would ever be evicted.
                    let tables = part.slot_tables();
                    let start = rng.random_range(0..tables.len());
                    for i in 0..tables.len() {
                        let t = &tables[(start + i) % tables.len()];
                        let n = t.table.len();
                        if n == 0 || (policy.volatile_only() && t.volatile == 0) {
                            continue;
                        }
                        // Bounded walk so a huge slot costs at most 1024 steps.
                        let skip = rng.random_range(0..n.min(1024));
                        let cand = t
                            .table
                            .iter()
                            .skip(skip)
                            .chain(t.table.iter())
                            .find(|e| !policy.volatile_only() || e.expire_at().is_some());
                        if let Some(e) = cand {
                            let score = match policy {
                                Policy::AllKeysLru | Policy::VolatileLru => idle_seconds(e, clock),
                                Policy::AllKeysLfu | Policy::VolatileLfu => 255 - lfu_counter(e.lru, now) as u64,
                                Policy::VolatileTtl => u64::MAX - e.expire_at().unwrap_or(u64::MAX),
                                _ => rng.random::<u64>(),
                            };
                            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                                best = Some((score, Bytes::copy_from_slice(e.key())));
                            }
                        }
                        break;
                    }
                    break 'walk;
                }
            }
        }
        match best {
            Some((_, key)) => {
                let mut ks = db.lock_keys([&key], now);
                if ks.remove(&key).is_some() {
                    db.log_deletes(std::slice::from_ref(&key));
                    db.evicted_keys.fetch_add(1, Ordering::Relaxed);
                    evicted.push(key);
                }
                fruitless = 0;
            }
            None => {
                fruitless += 1;
                if fruitless > 16 {
                    break;
                }
            }
        }
    }
    evicted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Db, Expiry, now_ms};

    /// A keyspace of one key: every policy that may evict it finds it, every
    /// time (random partition probes alone gave up a quarter of the time).
    #[test]
    fn a_lone_key_is_always_found() {
        for policy in [
            Policy::AllKeysLru,
            Policy::AllKeysLfu,
            Policy::AllKeysRandom,
            Policy::VolatileTtl,
        ] {
            let db = Db::new();
            db.eviction.set_policy(policy);
            for i in 0..200 {
                let key = format!("k{i}");
                let now = now_ms();
                db.lock_keys([&key], now)
                    .set_str(key.as_bytes(), b"v", Expiry::At(now + 3_600_000));
                let evicted = evict(&db, now, |db| db.used_memory() > 0);
                assert_eq!(evicted, vec![Bytes::from(key)], "{policy:?}");
            }
        }
    }
}
