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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Wakes replica senders (async).
    pub appended: tokio::sync::Notify,
}

struct Inner {
    /// Offset after the last appended byte.
    offset: u64,
    backlog: VecDeque<u8>,
    backlog_cap: usize,
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
                backlog: VecDeque::new(),
                backlog_cap,
                unpersisted: BytesMut::new(),
                collect_unpersisted: false,
            }),
            offset: AtomicU64::new(offset),
            aof_wake: Condvar::new(),
            appended: tokio::sync::Notify::new(),
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
        let mut buf = Vec::with_capacity(64);
        let wrap = atomic && cmds.len() > 1;
        if wrap {
            encode_command(&mut buf, &[Bytes::from_static(b"MULTI")]);
        }
        for c in cmds {
            encode_command(&mut buf, c.as_ref());
        }
        if wrap {
            encode_command(&mut buf, &[Bytes::from_static(b"EXEC")]);
        }
        self.append_raw(&buf)
    }

    /// Append bytes that already are RESP commands (a replica relaying its
    /// primary's stream unchanged keeps the primary's offsets).
    pub fn append_raw(&self, bytes: &[u8]) -> u64 {
        let mut g = self.inner.lock();
        g.offset += bytes.len() as u64;
        let cap = g.backlog_cap;
        if bytes.len() >= cap {
            g.backlog.clear();
            g.backlog.extend(&bytes[bytes.len() - cap..]);
        } else {
            let excess = (g.backlog.len() + bytes.len()).saturating_sub(cap);
            g.backlog.drain(..excess);
            g.backlog.extend(bytes);
        }
        if g.collect_unpersisted {
            g.unpersisted.extend_from_slice(bytes);
        }
        let end = g.offset;
        self.offset.store(end, Ordering::Release);
        drop(g);
        self.appended.notify_waiters();
        self.aof_wake.notify_one();
        end
    }

    /// Up to `max` bytes starting at `from`; empty when `from` is the end.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Bytes, OutOfBacklog> {
        let g = self.inner.lock();
        let start = g.offset - g.backlog.len() as u64;
        if from < start || from > g.offset {
            return Err(OutOfBacklog);
        }
        let skip = (from - start) as usize;
        let n = (g.backlog.len() - skip).min(max);
        let mut out = Vec::with_capacity(n);
        out.extend(g.backlog.range(skip..skip + n));
        Ok(Bytes::from(out))
    }

    /// First offset the backlog still holds (`repl_backlog_first_byte_offset`
    /// is this + 1 in Redis' INFO, which counts from 1).
    pub fn backlog_start(&self) -> u64 {
        let g = self.inner.lock();
        g.offset - g.backlog.len() as u64
    }

    pub fn backlog_len(&self) -> usize {
        self.inner.lock().backlog.len()
    }

    pub fn backlog_cap(&self) -> usize {
        self.inner.lock().backlog_cap
    }

    /// Resize the backlog (`CONFIG SET repl-backlog-size`); shrinking drops the oldest bytes.
    pub fn set_backlog_cap(&self, cap: usize) {
        let mut g = self.inner.lock();
        g.backlog_cap = cap.max(1);
        let excess = g.backlog.len().saturating_sub(g.backlog_cap);
        g.backlog.drain(..excess);
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
