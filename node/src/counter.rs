//! Statistics counters that many threads bump on every command.
//!
//! A plain `AtomicU64` that every worker thread increments bounces its cache
//! line between cores on every command; with pipelined clients that traffic
//! cost more than the command itself. These counters are split into shards
//! so that an increment touches a line only its own core writes; reading
//! sums the shards. Reads are rare (INFO, `/metrics`) and may be a few
//! increments behind a concurrent writer, which no reader can tell apart
//! from reading a moment earlier.
//!
//! A thread claims a shard of its own the first time it counts, and gives
//! it back when it exits. Only the owner ever writes an owned shard, so its
//! increments are a plain load and store instead of a locked
//! read-modify-write: a command bumps six to eight counters, and each
//! `lock add` drains the store buffer (tens of cycles each, a tenth of a
//! pipelined command's CPU). Threads that find every shard taken share one
//! more shard with atomic increments. Nothing but the owner writes a shard,
//! not even a reset: `CONFIG RESETSTAT` records the current sums as a
//! baseline that reads subtract.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Shards threads can own: enough for the worker threads of a typical node
/// plus the occasional blocking-pool thread.
pub const SHARDS: usize = 16;
/// Owned shards plus the shared one (index `SHARDS`).
const CELLS: usize = SHARDS + 1;

/// Bit `i` set: shard `i` is free to claim.
static FREE: AtomicUsize = AtomicUsize::new((1 << SHARDS) - 1);

/// A thread's shard; owned ones go back to [`FREE`] when the thread exits.
struct Claim(usize);

impl Claim {
    fn new() -> Claim {
        let mut free = FREE.load(Ordering::Acquire);
        while free != 0 {
            let i = free.trailing_zeros() as usize;
            // Acquire: the previous owner's last stores happen before ours.
            match FREE.compare_exchange_weak(free, free & !(1 << i), Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => return Claim(i),
                Err(now) => free = now,
            }
        }
        Claim(SHARDS)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.0 < SHARDS {
            // Release: the next owner sees every store this thread made.
            FREE.fetch_or(1 << self.0, Ordering::Release);
        }
    }
}

thread_local! {
    static CLAIM: Claim = Claim::new();
}

/// This thread's shard (the shared one while the thread is exiting).
pub fn shard() -> usize {
    CLAIM.try_with(|c| c.0).unwrap_or(SHARDS)
}

/// Add `n` to `cell` of shard `shard`: a plain load and store in an owned
/// shard (only its owner thread writes it), atomic in the shared one.
#[inline]
fn add(cell: &AtomicU64, n: u64, shard: usize) {
    if shard < SHARDS {
        cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    } else {
        cell.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A sharded `u64` counter with `AtomicU64`'s method names, so call sites
/// read the same. The orderings passed in are accepted for that reason;
/// counters are always relaxed.
#[derive(Default)]
pub struct Counter {
    cells: [Padded; CELLS],
    /// Sum at the last [`Counter::store`], subtracted by reads.
    base: AtomicU64,
}

impl Counter {
    pub fn fetch_add(&self, n: u64, _: Ordering) {
        let s = shard();
        add(&self.cells[s].0, n, s);
    }

    /// Take `n` off the sum (kept in this thread's shard, wrapping: only
    /// the sum over shards means anything). The caller must not take more
    /// than the sum holds.
    pub fn sub(&self, n: u64) {
        let s = shard();
        add(&self.cells[s].0, n.wrapping_neg(), s);
    }

    fn sum(&self) -> u64 {
        self.cells
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }

    pub fn load(&self, _: Ordering) -> u64 {
        self.sum().wrapping_sub(self.base.load(Ordering::Relaxed))
    }

    /// Make the value `v` from now on (CONFIG RESETSTAT stores 0): moves the
    /// baseline, since the shards belong to their threads.
    pub fn store(&self, v: u64, _: Ordering) {
        self.base.store(self.sum().wrapping_sub(v), Ordering::Relaxed);
    }
}

/// Per-command counters of one shard (`INFO commandstats`).
#[derive(Default)]
pub struct CmdStat {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected_calls: AtomicU64,
    failed_calls: AtomicU64,
}

/// Summed per-command counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CmdTotals {
    pub calls: u64,
    pub usec: u64,
    pub rejected_calls: u64,
    pub failed_calls: u64,
}

/// One command's counters in this thread's shard.
pub struct LocalCmdStat<'a> {
    cell: &'a CmdStat,
    shard: usize,
}

impl LocalCmdStat<'_> {
    /// A call that ran for `usec` microseconds.
    pub fn call(&self, usec: u64, failed: bool) {
        add(&self.cell.calls, 1, self.shard);
        add(&self.cell.usec, usec, self.shard);
        if failed {
            add(&self.cell.failed_calls, 1, self.shard);
        }
    }

    /// A blocked call that ended in an error when it was woken (counted as
    /// a call when it blocked).
    pub fn failed(&self) {
        add(&self.cell.failed_calls, 1, self.shard);
    }

    /// A call refused before it ran.
    pub fn rejected(&self) {
        add(&self.cell.rejected_calls, 1, self.shard);
    }
}

/// Per-command counters, one array per shard (shard-major, so a thread's
/// increments stay within its own array instead of every command's four
/// counters sitting on lines that all threads write).
pub struct CommandStats {
    shards: Vec<Box<[CmdStat]>>,
    /// Sums at the last reset, per command (see the module doc).
    base: Mutex<Vec<CmdTotals>>,
}

impl CommandStats {
    pub fn new(commands: usize) -> Self {
        CommandStats {
            shards: (0..CELLS)
                .map(|_| (0..commands).map(|_| CmdStat::default()).collect())
                .collect(),
            base: Mutex::new(vec![CmdTotals::default(); commands]),
        }
    }

    /// This thread's counters of command `id` (for incrementing).
    pub fn local(&self, id: usize) -> LocalCmdStat<'_> {
        let shard = shard();
        LocalCmdStat {
            cell: &self.shards[shard][id],
            shard,
        }
    }

    fn sum(&self, id: usize) -> CmdTotals {
        let mut t = CmdTotals::default();
        for s in &self.shards {
            let c = &s[id];
            t.calls = t.calls.wrapping_add(c.calls.load(Ordering::Relaxed));
            t.usec = t.usec.wrapping_add(c.usec.load(Ordering::Relaxed));
            t.rejected_calls = t.rejected_calls.wrapping_add(c.rejected_calls.load(Ordering::Relaxed));
            t.failed_calls = t.failed_calls.wrapping_add(c.failed_calls.load(Ordering::Relaxed));
        }
        t
    }

    pub fn total(&self, id: usize) -> CmdTotals {
        let t = self.sum(id);
        let b = self.base.lock().get(id).copied().unwrap_or_default();
        CmdTotals {
            calls: t.calls.wrapping_sub(b.calls),
            usec: t.usec.wrapping_sub(b.usec),
            rejected_calls: t.rejected_calls.wrapping_sub(b.rejected_calls),
            failed_calls: t.failed_calls.wrapping_sub(b.failed_calls),
        }
    }

    pub fn reset(&self) {
        let mut base = self.base.lock();
        for (id, b) in base.iter_mut().enumerate() {
            *b = self.sum(id);
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
            shards: (0..CELLS)
                .map(|_| (0..commands).map(|_| HistCell::default()).collect())
                .collect(),
        }
    }

    pub fn observe(&self, id: usize, elapsed: std::time::Duration) {
        let shard = shard();
        let Some(cell) = self.shards[shard].get(id) else {
            return;
        };
        let nanos = elapsed.as_nanos().min(u64::MAX as u128) as u64;
        if let Some(b) = BUCKET_NANOS.iter().position(|&ub| nanos <= ub) {
            add(&cell.buckets[b], 1, shard);
        }
        add(&cell.count, 1, shard);
        add(&cell.sum_nanos, nanos, shard);
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
    fn shards_are_owned_then_shared() {
        // More threads alive at once than owned shards: the rest share the
        // atomic shard, and every increment still counts.
        let c = std::sync::Arc::new(Counter::default());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(SHARDS + 4));
        let handles: Vec<_> = (0..SHARDS + 4)
            .map(|_| {
                let (c, barrier) = (c.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let s = shard();
                    barrier.wait();
                    for _ in 0..10_000 {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                    s
                })
            })
            .collect();
        let shards: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(c.load(Ordering::Relaxed), (SHARDS as u64 + 4) * 10_000);
        let mut owned: Vec<usize> = shards.iter().copied().filter(|&s| s < SHARDS).collect();
        owned.sort_unstable();
        owned.dedup();
        assert_eq!(
            owned.len(),
            shards.iter().filter(|&&s| s < SHARDS).count(),
            "an owned shard had two owners"
        );
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
        for _ in 0..5 {
            s.local(2).call(10, false);
        }
        std::thread::scope(|sc| {
            sc.spawn(|| s.local(2).call(1, true));
        });
        assert_eq!(
            s.total(2),
            CmdTotals {
                calls: 6,
                usec: 51,
                rejected_calls: 0,
                failed_calls: 1
            }
        );
        s.reset();
        assert_eq!(s.total(2), CmdTotals::default());
        s.local(2).rejected();
        assert_eq!(s.total(2).rejected_calls, 1);
    }
}
