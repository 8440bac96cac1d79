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

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};

/// Default backlog size, as Redis' `repl-backlog-size`.
pub const DEFAULT_BACKLOG: usize = 1024 * 1024;

pub struct WriteLog {
    inner: Mutex<Inner>,
    /// Mirror of `Inner::offset` for readers that must not take the lock.
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
    /// Offset after the last appended byte.
    offset: u64,
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
        Self::new(0, DEFAULT_BACKLOG)
    }
}

impl WriteLog {
    /// A log whose next byte will have offset `offset`.
    pub fn new(offset: u64, backlog_cap: usize) -> Self {
        WriteLog {
            inner: Mutex::new(Inner {
                offset,
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
        self.offset.load(Ordering::Acquire)
    }

    /// Append commands (each an argument vector). With `atomic` and more
    /// than one command, they are wrapped in MULTI/EXEC so that a replica or
    /// a log replay applies all or nothing of them. Returns the offset after
    /// the appended bytes: the client that caused them may be acknowledged
    /// once that offset is durable / replicated as required.
    pub fn append<A: AsRef<[Bytes]>>(&self, cmds: &[A], atomic: bool) -> u64 {
        if cmds.is_empty() {
            return self.offset();
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
            let wrap = atomic && cmds.len() > 1;
            if wrap {
                encode_command(buf, &[Bytes::from_static(b"MULTI")]);
            }
            for c in cmds {
                encode_command(buf, c.as_ref());
            }
            if wrap {
                encode_command(buf, &[Bytes::from_static(b"EXEC")]);
            }
            let end = self.append_raw(buf);
            // Do not keep a huge buffer alive after one huge command.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            }
            end
        })
    }

    /// Register interest in [`WriteLog::appended`] (replica senders).
    pub fn listen(&self) -> Listener<'_> {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        Listener(&self.listeners)
    }

    /// Append bytes that already are RESP commands (a replica relaying its
    /// primary's stream unchanged keeps the primary's offsets).
    pub fn append_raw(&self, bytes: &[u8]) -> u64 {
        let mut g = self.inner.lock();
        g.offset += bytes.len() as u64;
        g.backlog.push(bytes);
        if g.collect_unpersisted {
            g.unpersisted.extend_from_slice(bytes);
        }
        let end = g.offset;
        self.offset.store(end, Ordering::Release);
        drop(g);
        if self.listeners.load(Ordering::Relaxed) > 0 {
            self.appended.notify_waiters();
        }
        self.aof_wake.notify_one();
        end
    }

    /// Up to `max` bytes starting at `from`; empty when `from` is the end.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Bytes, OutOfBacklog> {
        let g = self.inner.lock();
        let start = g.offset - g.backlog.len as u64;
        if from < start || from > g.offset {
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
        g.offset - g.backlog.len as u64
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

    /// Start (or stop) collecting bytes for an append-only-file writer.
    pub fn collect_unpersisted(&self, on: bool) {
        let mut g = self.inner.lock();
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
        (g.offset - bytes.len() as u64, bytes)
    }

    /// Start a new history at `offset` (after loading a snapshot, or when a
    /// replica takes a full copy of its primary): the backlog no longer
    /// describes the dataset.
    pub fn reset(&self, offset: u64) {
        let mut g = self.inner.lock();
        g.offset = offset;
        g.backlog.clear();
        g.unpersisted.clear();
        self.offset.store(offset, Ordering::Release);
    }
}

/// Append one command as a RESP multibulk.
pub fn encode_command(out: &mut Vec<u8>, args: &[Bytes]) {
    let mut num = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
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
