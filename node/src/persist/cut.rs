//! A point-in-time cut of the keyspace, taken without stopping writes.
//!
//! # How
//!
//! [`start`] holds every partition lock for an instant, reads the write log's
//! offset (appends happen under partition locks, so no command is between
//! changing keys and logging them: the offset matches the keyspace exactly),
//! marks all 16384 slots *pending* in a bitmap and releases the locks. From
//! then on a slot is encoded exactly once, as it was at the cut, by whoever
//! gets to it first while holding its partition lock:
//!
//! - a background dumper thread walks the slots in order, locks each one's
//!   partition for the few microseconds its encoding takes, and encodes it;
//! - any mutable access to a pending slot ([`crate::db::Keys`] calls
//!   [`CutState::before_write`]) first encodes that slot synchronously
//!   (*copy on first write*), so the write lands after the slot was captured;
//! - FLUSHALL detaches pending slot tables whole instead of dropping them,
//!   and the dumper encodes them later ([`CutState::detach`]), so a flush
//!   during a cut costs no more than without one.
//!
//! Each encoded slot becomes one or more [`Block`]s on an unbounded channel
//! read through [`CutStream`]: writers never wait for the disk or a replica's
//! socket. The dumper, which produces most of the data, does wait when more
//! than [`MAX_QUEUED`] bytes are queued, so a slow consumer bounds memory to
//! roughly that plus what writers encode meanwhile.
//!
//! # Why not fork, or a copy
//!
//! Redis forks and lets the kernel copy pages on write. That needs `unsafe`
//! (forbidden here), does not mix with a multi-threaded runtime, and copies
//! whole 4 KiB pages for one-byte writes (up to 2× memory under a write-heavy
//! load). Copying the whole dataset up front stops the world for as long as
//! the copy takes. Per-slot copy-on-first-write gives the same point-in-time
//! view with a pause of one lock round over 64 partitions, copies only what is
//! written before the dumper reaches it (and then only once per slot), and
//! the copy *is* the encoded output, so nothing is copied twice.
//!
//! The hot-path cost when no cut runs is one relaxed atomic load per mutable
//! slot access ([`CutState::before_write`]). Relaxed suffices because the flag
//! is only set and cleared while the partition locks it protects are held or
//! when clearing it can do no harm (a stale `true` finds no pending bit).
//!
//! One cut runs at a time ([`CutBusy`] otherwise): callers wait for it
//! ([`wait_idle`]) and start their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::{Condvar, Mutex};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::db::{Db, Entry, SlotTable};
use crate::persist::codec::encode_entry;
use crate::slot::SLOTS;

/// A block is closed once its data passes this size, so one huge slot does
/// not become one huge allocation and checksummed unit.
pub const BLOCK_TARGET: usize = 1 << 20;
/// The dumper pauses while this many encoded bytes wait to be consumed.
pub const MAX_QUEUED: usize = 64 << 20;

/// Encoded keys of one slot (a slot may span several blocks).
#[derive(Debug, Clone)]
pub struct Block {
    pub slot: u16,
    pub keys: u32,
    pub data: Bytes,
}

#[derive(Debug, thiserror::Error)]
#[error("a snapshot cut is already in progress")]
pub struct CutBusy;

/// Queued-bytes accounting shared by producers and the consumer.
struct Queue {
    bytes: AtomicUsize,
    /// The dumper waits while more than this is queued.
    limit: AtomicUsize,
    lock: Mutex<()>,
    drained: Condvar,
}

struct Running {
    tx: UnboundedSender<Block>,
    queue: Arc<Queue>,
}

/// The per-keyspace cut state, living in [`Db`].
pub struct CutState {
    active: AtomicBool,
    /// One bit per slot: not yet captured by the running cut.
    pending: Box<[AtomicU64]>,
    /// A cut is running (or starting): one at a time.
    busy: AtomicBool,
    /// The running cut's sender, for writers capturing a slot. Lock order:
    /// partition locks before this one (writers hold their partition when
    /// they take it, and `start` takes it inside `Db::freeze`).
    running: Mutex<Option<Running>>,
    /// Slot tables FLUSHALL removed before the dumper captured them.
    detached: Mutex<Vec<(u16, HashTable<Entry>)>>,
    /// Signalled when a cut ends (for [`wait_idle`]).
    idle: Condvar,
    idle_lock: Mutex<()>,
}

impl Default for CutState {
    fn default() -> Self {
        CutState {
            active: AtomicBool::new(false),
            pending: (0..SLOTS / 64).map(|_| AtomicU64::new(0)).collect(),
            busy: AtomicBool::new(false),
            running: Mutex::new(None),
            detached: Mutex::new(Vec::new()),
            idle: Condvar::new(),
            idle_lock: Mutex::new(()),
        }
    }
}

impl CutState {
    /// Is a cut running? (One relaxed load: this is the hot-path check.)
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Called with `slot`'s partition locked, before anything in the slot
    /// changes: if the running cut has not captured the slot yet, capture it
    /// now.
    #[inline]
    pub fn before_write(&self, slot: u16, table: &SlotTable) {
        if self.is_active() {
            self.capture(slot, &table.table);
        }
    }

    /// Clear `slot`'s pending bit; true when it was set. Only called with
    /// the slot's partition locked, which is what makes "the one who clears
    /// the bit encodes the slot as it was at the cut" hold.
    fn take_pending(&self, slot: u16) -> bool {
        let bit = 1u64 << (slot % 64);
        self.pending[slot as usize / 64].fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    #[cold]
    fn capture(&self, slot: u16, table: &HashTable<Entry>) {
        if !self.take_pending(slot) {
            return;
        }
        let guard = self.running.lock();
        if let Some(r) = guard.as_ref() {
            encode_slot(slot, table, |b| send(r, b));
        }
    }

    /// FLUSHALL of a slot with its partition locked: hand a pending table
    /// to the cut whole (it is encoded later, outside the lock) instead of
    /// dropping it. Returns the table back when no cut needs it.
    pub fn detach(&self, slot: u16, table: HashTable<Entry>) -> Option<HashTable<Entry>> {
        if self.is_active() && self.take_pending(slot) {
            self.detached.lock().push((slot, table));
            return None;
        }
        Some(table)
    }
}

fn send(r: &Running, b: Block) -> bool {
    let len = b.data.len();
    r.queue.bytes.fetch_add(len, Ordering::Relaxed);
    if r.tx.send(b).is_err() {
        r.queue.bytes.fetch_sub(len, Ordering::Relaxed);
        return false;
    }
    true
}

/// Encode one slot's keys as blocks of about [`BLOCK_TARGET`] bytes.
/// Expired-but-present keys are kept: the cut is the table as it was, and
/// loaders drop what has expired by the time they run.
pub fn encode_slot(slot: u16, table: &HashTable<Entry>, mut emit: impl FnMut(Block) -> bool) -> bool {
    let mut buf = Vec::new();
    let mut keys = 0u32;
    for e in table.iter() {
        encode_entry(&mut buf, e.key(), e);
        keys += 1;
        if buf.len() >= BLOCK_TARGET {
            let data = Bytes::from(std::mem::take(&mut buf));
            if !emit(Block { slot, keys, data }) {
                return false;
            }
            keys = 0;
        }
    }
    if keys > 0 {
        return emit(Block {
            slot,
            keys,
            data: Bytes::from(buf),
        });
    }
    true
}

/// The receiving end of a cut.
pub struct CutStream {
    /// Write-log offset the cut corresponds to: the cut plus the log from
    /// this offset on is the current dataset.
    pub offset: u64,
    /// The function libraries at the cut (name, code).
    pub functions: Vec<(String, Bytes)>,
    rx: UnboundedReceiver<Block>,
    queue: Arc<Queue>,
}

impl CutStream {
    fn consumed(&self, b: &Option<Block>) {
        if let Some(b) = b {
            let before = self.queue.bytes.fetch_sub(b.data.len(), Ordering::Relaxed);
            let limit = self.queue.limit.load(Ordering::Relaxed);
            if before > limit && before - b.data.len() <= limit {
                let _g = self.queue.lock.lock();
                self.queue.drained.notify_all();
            }
        }
    }

    /// Next block, blocking the thread; `None` once the cut is complete.
    /// Must not be called from an async task (use [`CutStream::next`]).
    pub fn blocking_next(&mut self) -> Option<Block> {
        let b = self.rx.blocking_recv();
        self.consumed(&b);
        b
    }

    /// Next block; `None` once the cut is complete.
    pub async fn next(&mut self) -> Option<Block> {
        let b = self.rx.recv().await;
        self.consumed(&b);
        b
    }
}

/// Start a cut of `owner`'s keyspace. Dropping the returned stream before
/// it is exhausted aborts the cut.
pub fn start<T: AsRef<Db> + Send + Sync + 'static>(owner: &Arc<T>) -> Result<CutStream, CutBusy> {
    start_bounded(owner, MAX_QUEUED)
}

/// [`start`] with the dumper pausing once `max_queued` bytes wait to be
/// consumed (a full sync over a slow link may want less than the default).
pub fn start_bounded<T: AsRef<Db> + Send + Sync + 'static>(
    owner: &Arc<T>,
    max_queued: usize,
) -> Result<CutStream, CutBusy> {
    let db: &Db = (**owner).as_ref();
    let cut = &db.cut;
    let queue = Arc::new(Queue {
        limit: AtomicUsize::new(max_queued),
        bytes: AtomicUsize::new(0),
        lock: Mutex::new(()),
        drained: Condvar::new(),
    });
    let (tx, rx) = unbounded_channel();
    if cut.busy.swap(true, Ordering::AcqRel) {
        return Err(CutBusy);
    }
    // The commands that change the libraries hold every partition, as
    // this freeze does: the libraries read here are those at `offset`.
    let (offset, functions) = db.freeze(|| {
        for w in cut.pending.iter() {
            w.store(u64::MAX, Ordering::Relaxed);
        }
        *cut.running.lock() = Some(Running {
            tx: tx.clone(),
            queue: queue.clone(),
        });
        cut.active.store(true, Ordering::Relaxed);
        (db.wlog.offset(), db.functions.get().codes)
    });
    let functions = functions.iter().map(|(n, c)| (n.clone(), c.clone())).collect();
    let owner2 = owner.clone();
    let q = queue.clone();
    let tx2 = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("snapshot-cut".into())
        .spawn(move || dump((*owner2).as_ref(), tx2, q));
    drop(tx);
    if let Err(e) = spawned {
        // No thread to spare: dump right here, with no queue bound (nobody
        // consumes until we return). Slower to start, but the stream is
        // complete; ending it early would look like a smaller dataset.
        tracing::warn!(error = %e, "cannot start the snapshot dumper thread; dumping inline");
        queue.limit.store(usize::MAX, Ordering::Relaxed);
        let sender = cut.running.lock().as_ref().map(|r| r.tx.clone());
        if let Some(sender) = sender {
            dump(db, sender, queue.clone());
        }
    }
    Ok(CutStream {
        offset,
        functions,
        rx,
        queue,
    })
}

/// Wait until no cut is running (at most `timeout`); true if idle.
pub fn wait_idle(db: &Db, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    let mut g = db.cut.idle_lock.lock();
    while in_progress(db) {
        if db.cut.idle.wait_until(&mut g, deadline).timed_out() {
            return !in_progress(db);
        }
    }
    true
}

/// Is a cut running?
pub fn in_progress(db: &Db) -> bool {
    db.cut.busy.load(Ordering::Acquire)
}

/// The dumper: capture every slot nobody captured yet, then the detached
/// tables, then close the stream.
fn dump(db: &Db, tx: UnboundedSender<Block>, queue: Arc<Queue>) {
    let cut = &db.cut;
    let r = Running { tx, queue };
    let mut ok = true;
    for slot in 0..SLOTS as u16 {
        if !ok {
            break;
        }
        // Backpressure: let the consumer catch up before producing more.
        while r.queue.bytes.load(Ordering::Relaxed) > r.queue.limit.load(Ordering::Relaxed) && !r.tx.is_closed() {
            let mut g = r.queue.lock.lock();
            r.queue.drained.wait_for(&mut g, Duration::from_millis(50));
        }
        if r.tx.is_closed() {
            ok = false;
            break;
        }
        // Lock the partition even when the bit looks clear: a writer that
        // cleared it may still be sending that slot's blocks, and the stream
        // must not close before they are queued.
        db.with_slot(slot, |table| {
            if cut.take_pending(slot) {
                ok = encode_slot(slot, &table.table, |b| send(&r, b));
            }
        });
    }
    loop {
        let batch = std::mem::take(&mut *cut.detached.lock());
        if batch.is_empty() {
            break;
        }
        for (slot, table) in batch {
            if ok {
                ok = encode_slot(slot, &table, |b| send(&r, b));
            }
        }
    }
    if !ok {
        tracing::warn!("snapshot cut aborted: its consumer went away");
    }
    drop(r);
    finish(db);
}

/// End the cut: clear every pending bit (an aborted cut leaves some), drop
/// the writers' sender so the stream closes, wake waiters.
fn finish(db: &Db) {
    let cut = &db.cut;
    cut.active.store(false, Ordering::Relaxed);
    for w in cut.pending.iter() {
        w.store(0, Ordering::Relaxed);
    }
    cut.detached.lock().clear();
    *cut.running.lock() = None;
    let _g = cut.idle_lock.lock();
    cut.busy.store(false, Ordering::Release);
    cut.idle.notify_all();
}

impl AsRef<Db> for Db {
    fn as_ref(&self) -> &Db {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Expiry;
    use crate::persist::codec::decode_entry;
    use std::collections::HashMap;

    fn collect(mut s: CutStream) -> HashMap<Bytes, Bytes> {
        let mut out = HashMap::new();
        while let Some(b) = s.blocking_next() {
            let mut input = &b.data[..];
            let mut n = 0;
            while !input.is_empty() {
                let d = decode_entry(&mut input).expect("decodes");
                assert_eq!(crate::slot::key_slot(&d.key), b.slot);
                let v = match d.value {
                    crate::db::Value::Str(s) => s,
                    _ => panic!("only strings here"),
                };
                assert!(out.insert(d.key, v).is_none(), "a key captured twice");
                n += 1;
            }
            assert_eq!(n, b.keys);
        }
        out
    }

    fn set(db: &Db, k: &[u8], v: &[u8]) {
        let mut ks = db.lock_keys([k], 0);
        ks.set_str(k, v, Expiry::Clear);
        let cmd = [
            Bytes::from_static(b"SET"),
            Bytes::copy_from_slice(k),
            Bytes::copy_from_slice(v),
        ];
        db.wlog.append(&[cmd], false);
    }

    /// Writers hammer counters while a cut runs; each logs (offset, value)
    /// under its lock. The cut must hold, for every counter, exactly the
    /// value it had at the cut's offset.
    #[test]
    fn cut_under_concurrent_writers_is_point_in_time() {
        let db = Arc::new(Db::new());
        let counters = 2000usize;
        for i in 0..counters {
            set(&db, format!("c{i}").as_bytes(), b"0");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..4 {
            let db = db.clone();
            let stop = stop.clone();
            writers.push(std::thread::spawn(move || {
                // (key index, log end offset, value written)
                let mut log: Vec<(usize, u64, u64)> = Vec::new();
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let k = format!("c{}", i % counters);
                    let mut ks = db.lock_keys([k.as_bytes()], 0);
                    let cur: u64 = ks
                        .get_str(k.as_bytes())
                        .ok()
                        .flatten()
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                        .unwrap_or(0);
                    let v = (cur + 1).to_string();
                    ks.set_str(k.as_bytes(), v.as_bytes(), Expiry::Clear);
                    let cmd = [Bytes::from_static(b"INCR"), Bytes::from(k)];
                    let end = db.wlog.append(&[cmd], false);
                    drop(ks);
                    log.push((i % counters, end, cur + 1));
                    i = i.wrapping_mul(31).wrapping_add(7 + w);
                }
                log
            }));
        }
        // Let the writers get going, then cut (poll the log, never sleep).
        while db.wlog.offset() < 20_000 {
            std::thread::yield_now();
        }
        let stream = start(&db).expect("no cut running");
        let offset = stream.offset;
        let got = collect(stream);
        stop.store(true, Ordering::Relaxed);
        let mut expect: Vec<u64> = vec![0; counters];
        let mut after_cut = 0;
        for w in writers {
            for (k, end, v) in w.join().expect("writer") {
                if end <= offset {
                    expect[k] = expect[k].max(v);
                } else {
                    after_cut += 1;
                }
            }
        }
        assert!(after_cut > 0, "no write raced the cut; the test proves nothing");
        assert_eq!(got.len(), counters);
        for (k, want) in expect.iter().enumerate() {
            let v = got.get(format!("c{k}").as_bytes()).expect("counter present");
            assert_eq!(v.as_ref(), want.to_string().as_bytes(), "counter c{k}");
        }
        assert!(!in_progress(&db));
    }

    #[test]
    fn flushall_during_a_cut_keeps_the_cut_whole_and_one_cut_at_a_time() {
        let db = Arc::new(Db::new());
        for i in 0..5000 {
            set(&db, format!("k{i}").as_bytes(), b"v");
        }
        let stream = start(&db).expect("no cut running");
        assert!(matches!(start(&db), Err(CutBusy)));
        {
            let mut ks = db.lock_all(0);
            ks.clear(false);
            ks.set_str(b"after", b"flush", Expiry::Clear);
        }
        let got = collect(stream);
        assert_eq!(got.len(), 5000);
        assert!(!got.contains_key(&b"after"[..]));
        assert!(wait_idle(&db, Duration::from_secs(10)));
        let again = collect(start(&db).expect("idle again"));
        assert_eq!(again.len(), 1);
    }

    /// The server's own whole-keyspace mutators — active expiry, eviction,
    /// FLUSHALL — run while the dumper is stalled (a one-byte queue bound,
    /// nothing consumed yet): the cut must still be the keyspace at the cut.
    #[test]
    fn expiry_eviction_and_flush_during_a_stalled_cut_do_not_change_it() {
        let db = Arc::new(Db::new());
        {
            let mut ks = db.lock_all(0);
            for i in 0..3000 {
                let expire = if i % 2 == 0 { Expiry::At(1000) } else { Expiry::Clear };
                ks.set_str(format!("k{i}").as_bytes(), b"v", expire);
            }
        }
        let stream = start_bounded(&db, 1).expect("no cut running");
        let expired = crate::db::expire::active_expire_cycle(&db, Duration::from_secs(5));
        assert!(!expired.is_empty(), "active expiry found nothing to do");
        db.eviction.set_policy(crate::db::evict::Policy::AllKeysRandom);
        let mut left = 100;
        let evicted = crate::db::evict::evict(&db, 2000, |_| {
            left -= 1;
            left > 0
        });
        assert!(!evicted.is_empty(), "eviction found nothing to do");
        db.lock_all(2000).clear(false);
        assert_eq!(db.key_counts().0, 0);
        let got = collect(stream);
        assert_eq!(got.len(), 3000, "the cut lost keys changed after it was taken");
    }

    #[test]
    fn dropping_the_stream_aborts_the_cut() {
        let db = Arc::new(Db::new());
        for i in 0..1000 {
            set(&db, format!("k{i}").as_bytes(), b"v");
        }
        drop(start(&db).expect("no cut running"));
        assert!(wait_idle(&db, Duration::from_secs(10)));
        set(&db, b"k1", b"w");
        assert!(!db.cut.is_active());
    }
}
