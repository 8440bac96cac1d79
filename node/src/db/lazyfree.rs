//! Freeing big values off the command path (Redis' lazyfree).
//!
//! Dropping a value of a million elements frees a million allocations, tens
//! of milliseconds during which the command holds its partition lock and
//! its connection thread, so every client of that thread waits. `UNLINK`,
//! `FLUSHALL ASYNC` / `FLUSHDB ASYNC` (and `DEL` / `FLUSHALL` with
//! `lazyfree-lazy-user-del` / `-user-flush`) instead unhook the value under
//! the lock, as before, and hand it to one background thread that drops it.
//! As in Redis only values whose freeing costs more than [`THRESHOLD`]
//! allocations go there; a small one costs less to free than to send.
//!
//! INFO reports `lazyfree_pending_objects` (handed over, not freed yet) and
//! `lazyfreed_objects` (freed there since start or `CONFIG RESETSTAT`; a
//! flushed keyspace counts its keys), as Redis 7.0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};

use super::value::Value;

/// Values whose freeing costs more allocations than this are freed in the
/// background (Redis' `LAZYFREE_THRESHOLD`).
pub const THRESHOLD: usize = 64;

#[derive(Default)]
struct Counts {
    pending: AtomicU64,
    freed: AtomicU64,
}

/// Something to drop, and how many objects it counts for.
type Job = (Box<dyn Send>, u64);

/// The background freer of one keyspace. Its thread starts with the first
/// value handed over and ends when the keyspace is dropped.
#[derive(Default)]
pub struct LazyFree {
    counts: Arc<Counts>,
    tx: OnceLock<Option<Sender<Job>>>,
}

impl LazyFree {
    /// Free `v` in the background when it is big, here otherwise.
    pub fn free_value(&self, v: Value) {
        if v.free_effort() > THRESHOLD {
            self.hand_over(Box::new(v), 1);
        }
    }

    /// Free whatever `tables` holds (a flushed keyspace's slot tables) in the
    /// background; it counts as `keys` objects.
    pub fn free_tables<T: Send + 'static>(&self, tables: T, keys: u64) {
        if keys > 0 {
            self.hand_over(Box::new(tables), keys);
        }
    }

    fn hand_over(&self, job: Box<dyn Send>, objects: u64) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Job>();
            let counts = self.counts.clone();
            std::thread::Builder::new()
                .name("ferrokv-lazyfree".into())
                .spawn(move || {
                    for (job, objects) in rx {
                        drop(job);
                        counts.pending.fetch_sub(objects, Ordering::Relaxed);
                        counts.freed.fetch_add(objects, Ordering::Relaxed);
                    }
                })
                .map_err(|e| tracing::warn!(error = %e, "no lazyfree thread: big values are freed inline"))
                .ok()
                .map(|_| tx)
        });
        match tx {
            Some(tx) => {
                self.counts.pending.fetch_add(objects, Ordering::Relaxed);
                if let Err(e) = tx.send((job, objects)) {
                    // The thread is gone: free here after all.
                    self.counts.pending.fetch_sub(objects, Ordering::Relaxed);
                    drop(e.0);
                }
            }
            None => drop(job),
        }
    }

    /// Handed over and not freed yet.
    pub fn pending(&self) -> u64 {
        self.counts.pending.load(Ordering::Relaxed)
    }

    /// Freed in the background since start or the last reset.
    pub fn freed(&self) -> u64 {
        self.counts.freed.load(Ordering::Relaxed)
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset_freed(&self) {
        self.counts.freed.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::limits::Limits;
    use crate::db::set::Set;

    fn wait_freed(l: &LazyFree, n: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while l.freed() != n || l.pending() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "freed {} pending {}",
                l.freed(),
                l.pending()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn only_big_values_go_to_the_background() {
        let l = LazyFree::default();
        let set = |n: usize| {
            let mut s = Set::default();
            for i in 0..n {
                s.insert(format!("m{i}").as_bytes(), &Limits::default());
            }
            Value::Set(s)
        };
        l.free_value(set(THRESHOLD));
        l.free_value(Value::Str(bytes::Bytes::from_static(b"v")));
        assert_eq!(l.freed() + l.pending(), 0, "small values are freed inline");
        l.free_value(set(THRESHOLD + 1));
        l.free_value(set(10_000));
        wait_freed(&l, 2);
        l.free_tables(vec![set(5), set(5)], 2);
        wait_freed(&l, 4);
        l.reset_freed();
        assert_eq!(l.freed(), 0);
    }
}
