//! Statistics counters that many threads bump on every command.
//!
//! A plain `AtomicU64` that every worker thread increments bounces its cache
//! line between cores on every command; with pipelined clients that traffic
//! cost more than the command itself. These counters are split into shards,
//! one per thread (threads pick a shard round-robin the first time they
//! count), so an increment touches a line only its own core writes; reading
//! sums the shards. Reads are rare (INFO, `/metrics`) and may be a few
//! increments behind a concurrent writer, which no reader can tell apart
//! from reading a moment earlier.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Shards per counter: enough that the worker threads of a typical node
/// rarely share one.
pub const SHARDS: usize = 8;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// This thread's shard.
pub fn shard() -> usize {
    SHARD.with(|s| *s)
}

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A sharded `u64` counter with `AtomicU64`'s method names, so call sites
/// read the same. The orderings passed in are accepted for that reason;
/// counters are always relaxed.
#[derive(Default)]
pub struct Counter([Padded; SHARDS]);

impl Counter {
    pub fn fetch_add(&self, n: u64, _: Ordering) {
        self.0[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Take `n` off the sum (kept in this thread's shard, wrapping: only
    /// the sum over shards means anything). The caller must not take more
    /// than the sum holds.
    pub fn sub(&self, n: u64) {
        self.0[shard()].0.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn load(&self, _: Ordering) -> u64 {
        self.0
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    /// Only `store(0)` (CONFIG RESETSTAT) is meaningful for a sum of shards:
    /// the whole value lands in one shard, the others are cleared.
    pub fn store(&self, v: u64, _: Ordering) {
        for (i, p) in self.0.iter().enumerate() {
            p.0.store(if i == 0 { v } else { 0 }, Ordering::Relaxed);
        }
    }
}

/// Per-command counters of one shard (`INFO commandstats`).
#[derive(Default)]
pub struct CmdStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub rejected_calls: AtomicU64,
    pub failed_calls: AtomicU64,
}

/// Summed per-command counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CmdTotals {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

/// Per-command counters, one array per shard (shard-major, so a thread's
/// increments stay within its own array instead of every command's four
/// counters sitting on lines that all threads write).
pub struct CommandStats {
    shards: Vec<Box<[CmdStat]>>,
}

impl CommandStats {
    pub fn new(commands: usize) -> Self {
        CommandStats {
            shards: (0..SHARDS)
                .map(|_| (0..commands).map(|_| CmdStat::default()).collect())
                .collect(),
        }
    }

    /// This thread's counters of command `id` (for incrementing).
    pub fn local(&self, id: usize) -> &CmdStat {
        &self.shards[shard()][id]
    }

    pub fn total(&self, id: usize) -> CmdTotals {
        let mut t = CmdTotals::default();
        for s in &self.shards {
            let c = &s[id];
            t.calls += c.calls.load(Ordering::Relaxed);
            t.usec += c.usec.load(Ordering::Relaxed);
            t.rejected_calls += c.rejected_calls.load(Ordering::Relaxed);
            t.failed_calls += c.failed_calls.load(Ordering::Relaxed);
        }
        t
    }

    pub fn reset(&self) {
        for s in &self.shards {
            for c in s.iter() {
                c.calls.store(0, Ordering::Relaxed);
                c.usec.store(0, Ordering::Relaxed);
                c.rejected_calls.store(0, Ordering::Relaxed);
                c.failed_calls.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Upper bounds (seconds) of the command latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.01, 0.1, 1.0,
];
const BUCKET_NANOS: [u64; 12] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// One command's latency histogram in one shard: counts per bucket
/// (non-cumulative), total count and sum in nanoseconds.
#[derive(Default)]
struct HistCell {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// Command latency histograms, sharded like [`CommandStats`]. Written by
/// hand rather than with the `prometheus` crate's `Histogram`, whose every
/// observation is four read-modify-writes on lines shared by all threads.
pub struct LatencyHistograms {
    shards: Vec<Box<[HistCell]>>,
}

/// A histogram summed over shards, cumulative as Prometheus exposes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistTotals {
    pub cumulative: [u64; 12],
    pub count: u64,
    pub sum_seconds: f64,
}

impl LatencyHistograms {
    pub fn new(commands: usize) -> Self {
        LatencyHistograms {
            shards: (0..SHARDS)
                .map(|_| (0..commands).map(|_| HistCell::default()).collect())
                .collect(),
        }
    }

    pub fn observe(&self, id: usize, elapsed: std::time::Duration) {
        let Some(cell) = self.shards[shard()].get(id) else {
            return;
        };
        let nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        if let Some(b) = BUCKET_NANOS.iter().position(|&ub| nanos <= ub) {
            cell.buckets[b].fetch_add(1, Ordering::Relaxed);
        }
        cell.count.fetch_add(1, Ordering::Relaxed);
        cell.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn total(&self, id: usize) -> HistTotals {
        let mut t = HistTotals {
            cumulative: [0; 12],
            count: 0,
            sum_seconds: 0.0,
        };
        let mut sum_nanos: u128 = 0;
        for s in &self.shards {
            let Some(c) = s.get(id) else { continue };
            for (acc, b) in t.cumulative.iter_mut().zip(&c.buckets) {
                *acc += b.load(Ordering::Relaxed);
            }
            t.count += c.count.load(Ordering::Relaxed);
            sum_nanos += c.sum_nanos.load(Ordering::Relaxed) as u128;
        }
        let mut running = 0;
        for b in t.cumulative.iter_mut() {
            running += *b;
            *b = running;
        }
        t.sum_seconds = sum_nanos as f64 / 1e9;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sums_shards_across_threads() {
        let c = std::sync::Arc::new(Counter::default());
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.load(Ordering::Relaxed), 12_000);
        std::thread::spawn({
            let c = c.clone();
            move || c.sub(2_000)
        })
        .join()
        .unwrap();
        assert_eq!(c.load(Ordering::Relaxed), 10_000);
        c.store(0, Ordering::Relaxed);
        assert_eq!(c.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_is_seconds() {
        let h = LatencyHistograms::new(2);
        h.observe(1, std::time::Duration::from_micros(3));
        h.observe(1, std::time::Duration::from_micros(30));
        h.observe(1, std::time::Duration::from_secs(2));
        let t = h.total(1);
        assert_eq!(t.count, 3);
        assert_eq!(t.cumulative[0], 1);
        assert_eq!(t.cumulative[2], 1, "30 us is above the 25 us bound");
        assert_eq!(t.cumulative[3], 2);
        assert_eq!(t.cumulative[11], 2, "2 s is above the last bound: only +Inf holds it");
        assert!((t.sum_seconds - 2.000033).abs() < 1e-9);
        assert_eq!(h.total(0).count, 0);
    }

    #[test]
    fn command_stats_sum_and_reset() {
        let s = CommandStats::new(3);
        s.local(2).calls.fetch_add(5, Ordering::Relaxed);
        std::thread::scope(|sc| {
            sc.spawn(|| s.local(2).calls.fetch_add(1, Ordering::Relaxed));
        });
        assert_eq!(s.total(2).calls, 6);
        s.reset();
        assert_eq!(s.total(2), CmdTotals::default());
    }
}
