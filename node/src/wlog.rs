//! The write log: every change to the keyspace, as the Redis commands that
//! reproduce it, in one ordered byte stream.
//!
//! The same stream feeds the append-only file and the replicas, so "what a
//! replica has" and "what is on disk" are both a single number: an offset in
//! this stream (Redis' `master_repl_offset`). A snapshot records the offset it
//! was cut at; snapshot + stream after that offset = the exact dataset.
//!
//! Ordering: commands append while they still hold the partition locks of
//! their keys, so two commands on the same key appear in the log in the order
//! they were applied. Commands on different partitions commute, so their
//! relative order in the log does not matter. A point-in-time cut that holds
//! every partition lock therefore sees a log offset that matches the keyspace
//! exactly.
//!
//! Encoding: RESP multibulk, byte for byte what a Redis primary sends its
//! replicas, so offsets mean the same thing as in Redis and any tool that reads
//! a Redis replication stream or AOF can read ours.
//!
//! The log keeps a backlog of the last `repl-backlog-size` bytes for replicas
//! that reconnect (partial resync), and the bytes not yet handed to the
//! append-only file writer.
//!
//! Counting without keeping: until something reads the log's bytes — a
//! replica attaches (PSYNC/SYNC), this node starts replicating from a
//! primary, or an append-only file is attached — nothing is kept, only the
//! offset advances, by exactly the bytes the commands encode to (one atomic
//! compare-and-swap per write, no lock, no copy, not even the encoding). Taking
//! the log's mutex and copying into the backlog on every write, for a backlog
//! no one would ever read, was a measurable share of a pipelined write's CPU.
//! Offsets mean the same either way: `master_repl_offset`, the offsets
//! snapshots record and the offsets WAIT compares are all the same number,
//! and a replica that attaches later is fully synchronized at a snapshot cut
//! taken after the backlog was switched on, from which point on every byte is
//! kept. This is what Redis does too: a primary creates its backlog when the
//! first replica connects (and every replica keeps one, so that once promoted
//! its own replicas can resume partially). Once on, the backlog stays on for
//! the life of the process (Redis frees it after `repl-backlog-ttl`; keeping
//! it is never wrong). What a replica could ask of a primary whose backlog was
//! never on is a partial resync at an offset before the switch: none exists,
//! since no replica ever had this history, and the request gets a full sync
//! (as from Redis, which answers it with a full sync as well).
//!
//! The switch is a bit in the offset word itself, so that it and the offset
//! change in one atomic step: a writer that counted its bytes without the
//! lock did so entirely before the backlog was switched on (and the backlog
//! starts after those bytes); every later writer sees the bit, its
//! compare-and-swap fails, and it appends under the lock.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};

/// Default backlog size, as Redis' `repl-backlog-size`.
pub const DEFAULT_BACKLOG: usize = 1024 * 1024;

/// Bit of [`WriteLog::offset`]'s word: the log's bytes are kept (see the
/// module doc). Offsets stay far below it (2^62 bytes).
const KEEP: u64 = 1 << 63;

pub struct WriteLog {
    inner: Mutex<Inner>,
    /// Offset after the last appended byte, with the [`KEEP`] bit. Once
    /// `KEEP` is set it changes only under `inner`'s lock (and before that,
    /// only by compare-and-swap of writers that keep nothing).
    offset: AtomicU64,
    /// Wakes the append-only-file writer thread.
    pub aof_wake: Condvar,
    /// Wakes replica senders (async). Only signalled while someone holds a
    /// [`Listener`]: `Notify::notify_waiters` takes a mutex even when
    /// nobody waits, and every write would pay for it.
    pub appended: tokio::sync::Notify,
    listeners: AtomicUsize,
}

/// Interest in [`WriteLog::appended`]: a replica sender holds one for as long
/// as it tails the log.
pub struct Listener<'a>(&'a AtomicUsize);

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The newest `cap` bytes of the log in a ring, so that an append is one or
/// two copies whatever the backlog's size.
struct Ring {
    buf: Vec<u8>,
    /// Index of the oldest byte.
    head: usize,
    len: usize,
    cap: usize,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            buf: Vec::new(),
            head: 0,
            len: 0,
            cap: cap.max(1),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.buf.len() != self.cap {
            // Allocated on first use (as Redis allocates its backlog lazily).
            self.buf = vec![0; self.cap];
            self.head = 0;
            self.len = 0;
        }
        let cap = self.cap;
        let bytes = if bytes.len() > cap {
            &bytes[bytes.len() - cap..]
        } else {
            bytes
        };
        let tail = (self.head + self.len) % cap;
        let first = bytes.len().min(cap - tail);
        self.buf[tail..tail + first].copy_from_slice(&bytes[..first]);
        self.buf[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.len += bytes.len();
        if self.len > cap {
            self.head = (self.head + self.len - cap) % cap;
            self.len = cap;
        }
    }

    /// `n` bytes starting `skip` bytes after the oldest.
    fn copy(&self, skip: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        if n == 0 {
            return out;
        }
        let start = (self.head + skip) % self.cap;
        let first = n.min(self.cap - start);
        out.extend_from_slice(&self.buf[start..start + first]);
        out.extend_from_slice(&self.buf[..n - first]);
        out
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    fn set_cap(&mut self, cap: usize) {
        let keep = self.len.min(cap.max(1));
        let newest = self.copy(self.len - keep, keep);
        *self = Ring::new(cap);
        if !newest.is_empty() {
            self.push(&newest);
        }
    }
}

thread_local! {
    /// Encoding scratch buffer: commands are encoded outside the log's lock,
    /// and reusing one buffer per thread saves an allocation per write.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct Inner {
    backlog: Ring,
    /// Bytes not yet taken by the append-only-file writer (only collected
    /// while one is attached: without an AOF they would grow forever).
    unpersisted: BytesMut,
    collect_unpersisted: bool,
}

/// A reader asked for bytes the backlog no longer holds (or never held):
/// only a full resynchronization can bring it up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBacklog;

impl Default for WriteLog {
    fn default() -> Self {
        Self::counting(0, DEFAULT_BACKLOG)
    }
}

impl WriteLog {
    /// A log whose next byte will have offset `offset`, keeping its bytes
    /// from the start.
    pub fn new(offset: u64, backlog_cap: usize) -> Self {
        let log = Self::counting(offset, backlog_cap);
        log.keep_backlog();
        log
    }

    /// A log that only counts its bytes until [`WriteLog::keep_backlog`]
    /// (a node's log: see the module doc).
    pub fn counting(offset: u64, backlog_cap: usize) -> Self {
        WriteLog {
            inner: Mutex::new(Inner {
                backlog: Ring::new(backlog_cap),
                unpersisted: BytesMut::new(),
                collect_unpersisted: false,
            }),
            offset: AtomicU64::new(offset),
            aof_wake: Condvar::new(),
            appended: tokio::sync::Notify::new(),
            listeners: AtomicUsize::new(0),
        }
    }

    /// Offset after the last appended byte (`master_repl_offset`).
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::Acquire) & !KEEP
    }

    /// Keep the log's bytes from now on (a replica attaches, this node
    /// becomes a replica, an append-only file is attached): the backlog
    /// starts, empty, at the current offset. Idempotent, never undone.
    pub fn keep_backlog(&self) {
        if self.keeps_backlog() {
            return;
        }
        self.keep_locked(&mut self.inner.lock());
    }

    /// [`WriteLog::keep_backlog`] with the lock held: no locked writer runs
    /// meanwhile, and a counting writer either counted before this (its
    /// bytes precede the backlog) or sees the bit.
    fn keep_locked(&self, g: &mut Inner) {
        if self.offset.fetch_or(KEEP, Ordering::AcqRel) & KEEP == 0 {
            // Nothing was kept while counting; a backlog that starts now is empty.
            g.backlog.clear();
        }
    }

    /// Whether the log's bytes are kept (INFO's `repl_backlog_active`).
    pub fn keeps_backlog(&self) -> bool {
        self.offset.load(Ordering::Acquire) & KEEP != 0
    }

    /// Count `len` bytes without keeping them, unless the log keeps its
    /// bytes (`None`: append under the lock).
    #[inline]
    fn count_only(&self, len: u64) -> Option<u64> {
        let mut cur = self.offset.load(Ordering::Relaxed);
        while cur & KEEP == 0 {
            match self
                .offset
                .compare_exchange_weak(cur, cur + len, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(cur + len),
                Err(now) => cur = now,
            }
        }
        None
    }

    /// Append commands (each an argument vector). With `atomic` and more
    /// than one command, they are wrapped in MULTI/EXEC so that a replica or
    /// a log replay applies all or nothing of them. Returns the offset after
    /// the appended bytes: the client that caused them may be acknowledged
    /// once that offset is durable / replicated as required.
    pub fn append<A: AsRef<[T]>, T: AsRef<[u8]>>(&self, cmds: &[A], atomic: bool) -> u64 {
        self.append_waking(cmds, atomic, true)
    }

    /// [`WriteLog::append`], waking the replicas' senders only if
    /// `wake_senders`: a connection that pushes its writes to the replicas
    /// itself passes `false` and wakes them only for what it could not push.
    pub fn append_waking<A: AsRef<[T]>, T: AsRef<[u8]>>(&self, cmds: &[A], atomic: bool, wake_senders: bool) -> u64 {
        if cmds.is_empty() {
            return self.offset();
        }
        let wrap = atomic && cmds.len() > 1;
        if !self.keeps_backlog() {
            let mut len: usize = cmds.iter().map(|c| encoded_len(c.as_ref())).sum();
            if wrap {
                len += MULTI.len() + EXEC.len();
            }
            if let Some(end) = self.count_only(len as u64) {
                return end;
            }
        }
        SCRATCH.with(|scratch| {
            // A re-entrant use (impossible today) gets a fresh buffer rather than a panic.
            let mut fresh = Vec::new();
            let mut guard = scratch.try_borrow_mut();
            let buf = match guard.as_mut() {
                Ok(b) => &mut **b,
                Err(_) => &mut fresh,
            };
            buf.clear();
            if wrap {
                buf.extend_from_slice(MULTI);
            }
            for c in cmds {
                encode_command(buf, c.as_ref());
            }
            if wrap {
                buf.extend_from_slice(EXEC);
            }
            let end = self.append_raw_waking(buf, wake_senders);
            // Do not keep a huge buffer alive after one huge command.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            end
        })
    }

    /// Whether any replica sender listens (see [`WriteLog::listen`]).
    pub fn has_listeners(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    /// Register interest in [`WriteLog::appended`] (replica senders).
    pub fn listen(&self) -> Listener<'_> {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        Listener(&self.listeners)
    }

    /// Append bytes that already are RESP commands (a replica relaying its
    /// primary's stream unchanged keeps the primary's offsets).
    pub fn append_raw(&self, bytes: &[u8]) -> u64 {
        self.append_raw_waking(bytes, true)
    }

    /// [`WriteLog::append_raw`], waking the senders only if `wake_senders`
    /// (see [`WriteLog::append_waking`]).
    pub fn append_raw_waking(&self, bytes: &[u8], wake_senders: bool) -> u64 {
        if let Some(end) = self.count_only(bytes.len() as u64) {
            return end;
        }
        let mut g = self.inner.lock();
        g.backlog.push(bytes);
        if g.collect_unpersisted {
            g.unpersisted.extend_from_slice(bytes);
        }
        let n = bytes.len() as u64;
        let end = (self.offset.fetch_add(n, Ordering::AcqRel) & !KEEP) + n;
        drop(g);
        if wake_senders && self.listeners.load(Ordering::Relaxed) > 0 {
            self.appended.notify_waiters();
        }
        self.aof_wake.notify_one();
        end
    }

    /// Up to `max` bytes starting at `from`; empty when `from` is the end.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Bytes, OutOfBacklog> {
        let g = self.inner.lock();
        let offset = self.offset();
        let start = offset - g.backlog.len as u64;
        if from < start || from > offset {
            return Err(OutOfBacklog);
        }
        let skip = (from - start) as usize;
        let n = (g.backlog.len - skip).min(max);
        Ok(Bytes::from(g.backlog.copy(skip, n)))
    }

    /// First offset the backlog still holds (`repl_backlog_first_byte_offset`
    /// is this + 1 in Redis' INFO, which counts from 1).
    pub fn backlog_start(&self) -> u64 {
        let g = self.inner.lock();
        self.offset() - g.backlog.len as u64
    }

    pub fn backlog_len(&self) -> usize {
        self.inner.lock().backlog.len
    }

    pub fn backlog_cap(&self) -> usize {
        self.inner.lock().backlog.cap
    }

    /// Resize the backlog (`CONFIG SET repl-backlog-size`); shrinking drops the oldest bytes.
    pub fn set_backlog_cap(&self, cap: usize) {
        self.inner.lock().backlog.set_cap(cap);
    }

    /// Start (or stop) collecting bytes for an append-only-file writer
    /// (starting also keeps the backlog: the bytes are read now).
    pub fn collect_unpersisted(&self, on: bool) {
        let mut g = self.inner.lock();
        if on {
            self.keep_locked(&mut g);
        }
        g.collect_unpersisted = on;
        if !on {
            g.unpersisted.clear();
        }
    }

    /// Take the bytes not yet handed to the append-only-file writer, with the
    /// offset of their first byte. Blocks up to `wait` when there are none.
    pub fn take_unpersisted(&self, wait: std::time::Duration) -> (u64, Bytes) {
        let mut g = self.inner.lock();
        if g.unpersisted.is_empty() && !wait.is_zero() {
            self.aof_wake.wait_for(&mut g, wait);
        }
        let bytes = g.unpersisted.split().freeze();
        (self.offset() - bytes.len() as u64, bytes)
    }

    /// Start a new history at `offset` (after loading a snapshot, or when a
    /// replica takes a full copy of its primary): the backlog no longer
    /// describes the dataset.
    pub fn reset(&self, offset: u64) {
        let mut g = self.inner.lock();
        g.backlog.clear();
        g.unpersisted.clear();
        // A counting writer's compare-and-swap fails on the new word and
        // counts from `offset`, as a locked writer would after the reset.
        let keep = self.offset.load(Ordering::Acquire) & KEEP;
        self.offset.store(offset | keep, Ordering::Release);
    }
}

const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
const EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";

/// Decimal digits of `n` (compares for the usual short lengths).
#[inline]
fn digits(n: usize) -> usize {
    match n {
        0..10 => 1,
        10..100 => 2,
        100..1000 => 3,
        _ => {
            let (mut n, mut d) = (n / 1000, 4);
            while n >= 10 {
                n /= 10;
                d += 1;
            }
            d
        }
    }
}

/// Length of [`encode_command`]'s output for `args`, without encoding.
pub fn encoded_len<T: AsRef<[u8]>>(args: &[T]) -> usize {
    let header = 1 + digits(args.len()) + 2;
    header
        + args
            .iter()
            .map(|a| 1 + digits(a.as_ref().len()) + 2 + a.as_ref().len() + 2)
            .sum::<usize>()
}

/// Append one command as a RESP multibulk.
pub fn encode_command<T: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[T]) {
    let mut num = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        let a = a.as_ref();
        out.push(b'$');
        out.extend_from_slice(num.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
    }

    #[test]
    fn offsets_count_bytes_of_resp() {
        let log = WriteLog::new(100, 1024);
        let end = log.append(&[cmd(&["SET", "k", "v"])], false);
        let expect = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        assert_eq!(end, 100 + expect.len() as u64);
        assert_eq!(log.read_from(100, 1000).unwrap().as_ref(), expect);
        assert_eq!(log.read_from(end, 1000).unwrap().len(), 0);
        assert_eq!(log.read_from(99, 10), Err(OutOfBacklog));
        assert_eq!(log.read_from(end + 1, 10), Err(OutOfBacklog));
    }

    #[test]
    fn atomic_groups_are_wrapped_in_multi_exec() {
        let log = WriteLog::new(0, 1024);
        log.append(&[cmd(&["DEL", "a"]), cmd(&["DEL", "b"])], true);
        let all = log.read_from(0, 1000).unwrap();
        assert!(all.starts_with(b"*1\r\n$5\r\nMULTI\r\n"));
        assert!(all.ends_with(b"*1\r\n$4\r\nEXEC\r\n"));
        let log = WriteLog::new(0, 1024);
        log.append(&[cmd(&["DEL", "a"])], true);
        assert!(log.read_from(0, 1000).unwrap().starts_with(b"*2\r\n"));
    }

    #[test]
    fn backlog_keeps_the_newest_bytes() {
        let log = WriteLog::new(0, 10);
        log.append_raw(b"0123456789");
        log.append_raw(b"abc");
        assert_eq!(log.backlog_start(), 3);
        assert_eq!(log.read_from(3, 100).unwrap().as_ref(), b"3456789abc");
        assert_eq!(log.read_from(2, 100), Err(OutOfBacklog));
        log.append_raw(b"0123456789ABCDEF");
        assert_eq!(log.read_from(log.offset() - 10, 100).unwrap().as_ref(), b"6789ABCDEF");
        log.set_backlog_cap(4);
        assert_eq!(log.read_from(log.offset() - 4, 100).unwrap().as_ref(), b"CDEF");
    }

    #[test]
    fn ring_matches_a_simple_model_across_wraps_and_resizes() {
        use rand::Rng;
        let mut rng = rand::rng();
        let log = WriteLog::new(0, 37);
        let mut model: Vec<u8> = Vec::new();
        let mut cap = 37usize;
        for step in 0..5000u32 {
            if step % 500 == 499 {
                cap = rng.random_range(1..100);
                log.set_backlog_cap(cap);
            }
            let n = rng.random_range(0..60);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            model.extend_from_slice(&bytes);
            log.append_raw(&bytes);
            let held = model.len().min(cap).min(log.backlog_len());
            assert_eq!(log.backlog_start(), log.offset() - held as u64);
            let from = log.offset() - rng.random_range(0..=held) as u64;
            let got = log.read_from(from, 1000).unwrap();
            assert_eq!(got.as_ref(), &model[from as usize..], "step {step}");
        }
    }

    #[test]
    fn a_counting_log_advances_exactly_as_a_keeping_one() {
        use rand::Rng;
        let mut rng = rand::rng();
        let kept = WriteLog::new(7, 1 << 20);
        let counted = WriteLog::counting(7, 1 << 20);
        for _ in 0..2000 {
            let n = rng.random_range(1..4);
            let cmds: Vec<Vec<Bytes>> = (0..n)
                .map(|_| {
                    (0..rng.random_range(1..14))
                        .map(|_| Bytes::from(vec![b'x'; rng.random_range(0..120)]))
                        .collect()
                })
                .collect();
            let atomic = rng.random();
            assert_eq!(counted.append(&cmds, atomic), kept.append(&cmds, atomic));
            let mut encoded = Vec::new();
            encode_command(&mut encoded, &cmds[0]);
            assert_eq!(encoded.len(), encoded_len(&cmds[0]));
            assert_eq!(counted.append_raw(&encoded), kept.append_raw(&encoded));
        }
        for n in [0, 9, 10, 99, 100, 999, 1000, 9999, 10_000, 123_456, 1 << 20] {
            let c = [Bytes::from(vec![b'y'; n])];
            let mut encoded = Vec::new();
            encode_command(&mut encoded, &c);
            assert_eq!(encoded.len(), encoded_len(&c), "length {n}");
        }
        assert!(!counted.keeps_backlog());
        assert_eq!(counted.backlog_len(), 0);
        assert_eq!(counted.read_from(counted.offset(), 10).map(|b| b.len()), Ok(0));
        assert_eq!(counted.read_from(counted.offset() - 1, 10), Err(OutOfBacklog));
        // Switched on: kept from exactly that offset.
        counted.keep_backlog();
        let from = counted.offset();
        counted.append(&[cmd(&["SET", "k", "v"])], false);
        assert_eq!(
            counted.read_from(from, 100).unwrap().as_ref(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
        );
        assert_eq!(counted.read_from(from - 1, 100), Err(OutOfBacklog));
    }

    /// Writers on several threads while the backlog is switched on: what
    /// the backlog holds is whole commands, ending at the offset.
    #[test]
    fn switching_the_backlog_on_under_concurrent_writers_keeps_whole_commands() {
        for _ in 0..20 {
            let log = WriteLog::counting(0, 1 << 24);
            std::thread::scope(|s| {
                for t in 0..4u8 {
                    let log = &log;
                    s.spawn(move || {
                        for i in 0..3000usize {
                            let c = [Bytes::from(vec![b'a' + t; 1 + i % 50])];
                            if i % 2 == 0 {
                                log.append(&[c], false);
                            } else {
                                let mut raw = Vec::new();
                                encode_command(&mut raw, &c);
                                log.append_raw(&raw);
                            }
                        }
                    });
                }
                std::thread::yield_now();
                log.keep_backlog();
            });
            let total: u64 = (0..3000usize)
                .map(|i| encoded_len(&[Bytes::from(vec![0; 1 + i % 50])]) as u64)
                .sum();
            assert_eq!(log.offset(), 4 * total);
            let start = log.backlog_start();
            let mut b = &log.read_from(start, usize::MAX).unwrap()[..];
            assert_eq!(start + b.len() as u64, log.offset());
            while !b.is_empty() {
                // `*1\r\n$<n>\r\n<n bytes of one letter>\r\n`
                assert!(b.starts_with(b"*1\r\n$"), "not a command boundary");
                let digits = b[5..].iter().position(|&c| c == b'\r').unwrap();
                let n: usize = std::str::from_utf8(&b[5..5 + digits]).unwrap().parse().unwrap();
                let body = &b[5 + digits + 2..5 + digits + 2 + n];
                assert!(body.iter().all(|&c| c == body[0]));
                b = &b[5 + digits + 2 + n + 2..];
            }
        }
    }

    #[test]
    fn unpersisted_bytes_are_collected_only_when_asked() {
        let log = WriteLog::new(5, 1024);
        log.append_raw(b"xx");
        assert_eq!(log.take_unpersisted(std::time::Duration::ZERO).1.len(), 0);
        log.collect_unpersisted(true);
        log.append_raw(b"abc");
        let (start, b) = log.take_unpersisted(std::time::Duration::ZERO);
        assert_eq!((start, b.as_ref()), (7, &b"abc"[..]));
    }
}
