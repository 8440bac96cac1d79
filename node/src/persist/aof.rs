//! The append-only log: the write log's bytes, in checksummed segment files,
//! written and fsynced by one writer thread.
//!
//! # Data flow
//!
//! Commands append to the write log ([`crate::wlog`]) under their partition
//! locks; while the AOF is on, the log also keeps those bytes in an
//! "unpersisted" buffer. The writer thread swaps that buffer out
//! (`take_unpersisted`: one buffer swap per batch, however many commands it
//! holds), writes it as one record to the open segment and fsyncs as the
//! policy says. Blocking file IO lives on this one std thread so that no
//! tokio worker ever waits for a disk.
//!
//! # Durability of each `appendfsync` mode
//!
//! - **always**: a client hears back about a write only after the segment
//!   holding it was fsynced (`fdatasync`). The connection, after executing a
//!   batch of pipelined requests, waits on a `tokio::sync::watch` of the
//!   synced offset until it reaches the client's `write_offset`; every client
//!   whose write landed before the fsync started is released by that one
//!   fsync (group commit). Guarantee: every acknowledged write survives a
//!   process crash *and* an OS crash or power loss (given a disk that honours
//!   flushes). A write whose fsync failed is answered with `-MISCONF`, never OK.
//!   Reads never wait, so a reader may see a write that is not yet durable
//!   (as in Redis); what it saw can be lost by a crash only together with the
//!   unacknowledged write itself.
//! - **everysec**: replies do not wait. The writer hands new bytes to the OS
//!   within about a millisecond and fsyncs at most once a second. Guarantee:
//!   a process crash (kill -9) loses at most the last few milliseconds of
//!   acknowledged writes; an OS crash loses at most about one second of them
//!   (plus the duration of a slow fsync, during which writes accumulate).
//! - **no**: as everysec without our fsync: the OS writes back when it likes
//!   (typically within 30 s on Linux). A process crash loses what everysec
//!   loses; an OS crash can lose everything since the last writeback.
//!
//! # Failure
//!
//! A failed write or fsync *poisons* the log (as fjall's `Poisoned`): after
//! a failed fsync the kernel may have dropped the dirty pages and marked them
//! clean, so retrying could "succeed" without the data ever reaching the
//! disk (the 2018 fsyncgate lesson). From then on every write command is
//! refused with `-MISCONF Errors writing to the AOF file: <reason>`, clients
//! waiting for the failed fsync get that error instead of OK, and INFO /
//! metrics say so. After a failed write the writer truncates the segment back
//! to its last whole record (best effort), so a restart sees a clean log that
//! holds exactly what was persisted. A restart, or a BGREWRITEAOF once the
//! cause is fixed (space freed), clears the state: the log has a hole where
//! the failed bytes were, and only a new base (or the restart's load +
//! replay) makes log and dataset agree again. BGREWRITEAOF on a poisoned log
//! therefore starts the log afresh from a cut of the dataset
//! ([`super::rebase`]); if that fails too, writes stay refused.
//! `CONFIG SET appendonly no` also clears it: with no log, there is nothing
//! to refuse writes for.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::manifest::Manifest;
use super::segment::SegmentWriter;
use crate::state::State;

/// `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fsync {
    Always = 0,
    EverySec = 1,
    No = 2,
}

impl Fsync {
    pub fn parse(s: &str) -> Option<Fsync> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }
    pub fn from_u8(v: u8) -> Fsync {
        match v {
            0 => Fsync::Always,
            2 => Fsync::No,
            _ => Fsync::EverySec,
        }
    }
}

/// Default `--aof-segment-size`.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// The AOF's shared state: read by connections (group commit, MISCONF),
/// INFO, metrics and CONFIG; driven by the writer thread.
pub struct Aof {
    /// A writer thread is running (`aof_enabled`).
    pub enabled: AtomicBool,
    fsync: AtomicU8,
    pub segment_size: AtomicU64,
    /// 0 = no time-based rotation.
    pub segment_seconds: AtomicU64,
    /// Offset up to which writes may be acknowledged under the current
    /// policy (fsynced for `always`); `u64::MAX` when no writer runs.
    acked: AtomicU64,
    acked_tx: tokio::sync::watch::Sender<u64>,
    poisoned: AtomicBool,
    error: Mutex<Option<String>>,
    /// fsync calls made (group commit makes this far smaller than the number
    /// of acknowledged writes).
    pub fsyncs: AtomicU64,
    pub records: AtomicU64,
    pub write_errors: AtomicU64,
    /// Bytes of the log (base + segments) and of the base alone.
    pub current_size: AtomicU64,
    pub base_size: AtomicU64,
    pub rewrite_in_progress: AtomicBool,
    pub last_rewrite_ok: AtomicBool,
    pub rewrites: AtomicU64,
    pub last_rewrite_secs: AtomicU64,
    /// `current_size` after startup or the last rewrite: automatic rewrites
    /// compare growth against it (Redis' `aof_rewrite_base_size`).
    pub rewrite_base_size: AtomicU64,
    /// The directory and manifest of the running log.
    pub(crate) files: Mutex<Option<Files>>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Startup's settings (directory names) and the state itself, for
    /// `CONFIG SET appendonly yes` (which must start a writer thread).
    pub(crate) setup: Mutex<Option<(super::PersistConfig, std::sync::Weak<State>)>>,
    /// BGREWRITEAOF asks the writer to start a new segment; the writer
    /// clears it when done.
    pub(crate) rotate_now: AtomicBool,
    /// Start offset of the segment being written.
    pub(crate) segment_start: AtomicU64,
    /// Connections waiting in [`Aof::wait_acked`] (group commit sizing).
    waiting: std::sync::atomic::AtomicUsize,
    /// Entries into [`Aof::wait_acked`] ever (group commit sizing).
    entered: AtomicU64,
    /// The `entered` count the writer is gathering for (`u64::MAX`: none);
    /// the connection that reaches it wakes the writer.
    gather_target: AtomicU64,
    gather_lock: Mutex<()>,
    gather_cv: Condvar,
    /// Zeros after the open segment's last record (space zero-filled ahead
    /// of the writer under `always`; see [`super::segment`]): not log data,
    /// so not part of the log's size.
    pub(crate) preallocated: AtomicU64,
}

pub(crate) struct Files {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Default for Aof {
    fn default() -> Self {
        Aof {
            enabled: AtomicBool::new(false),
            fsync: AtomicU8::new(Fsync::EverySec as u8),
            segment_size: AtomicU64::new(DEFAULT_SEGMENT_SIZE),
            segment_seconds: AtomicU64::new(0),
            acked: AtomicU64::new(u64::MAX),
            acked_tx: tokio::sync::watch::Sender::new(u64::MAX),
            poisoned: AtomicBool::new(false),
            error: Mutex::new(None),
            fsyncs: AtomicU64::new(0),
            records: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            current_size: AtomicU64::new(0),
            base_size: AtomicU64::new(0),
            rewrite_in_progress: AtomicBool::new(false),
            last_rewrite_ok: AtomicBool::new(true),
            rewrites: AtomicU64::new(0),
            last_rewrite_secs: AtomicU64::new(0),
            rewrite_base_size: AtomicU64::new(0),
            files: Mutex::new(None),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            setup: Mutex::new(None),
            rotate_now: AtomicBool::new(false),
            segment_start: AtomicU64::new(0),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            entered: AtomicU64::new(0),
            gather_target: AtomicU64::new(u64::MAX),
            gather_lock: Mutex::new(()),
            gather_cv: Condvar::new(),
            preallocated: AtomicU64::new(0),
        }
    }
}

impl Aof {
    pub fn fsync(&self) -> Fsync {
        Fsync::from_u8(self.fsync.load(Ordering::Relaxed))
    }

    pub fn set_fsync(&self, f: Fsync) {
        self.fsync.store(f as u8, Ordering::Relaxed);
    }

    /// The `-MISCONF` reply text when writes must be refused.
    pub fn write_error(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        let reason = self.error.lock().clone().unwrap_or_default();
        Some(format!("MISCONF Errors writing to the AOF file: {reason}"))
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Must a client whose last write ended at `offset` wait before hearing
    /// back? Only with `always`, and only until that offset is fsynced.
    pub fn must_wait(&self, offset: u64) -> bool {
        offset > self.acked.load(Ordering::Acquire) && self.fsync() == Fsync::Always
    }

    /// Wait until `offset` may be acknowledged; the MISCONF text if the
    /// write could not be persisted.
    pub async fn wait_acked(&self, offset: u64) -> Result<(), String> {
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let entered = self.entered.fetch_add(1, Ordering::Relaxed) + 1;
        if entered == self.gather_target.load(Ordering::Relaxed) {
            // The lock orders this after the writer's last check.
            let _g = self.gather_lock.lock();
            self.gather_cv.notify_one();
        }
        let _waiting = Waiting(&self.waiting);
        let mut rx = self.acked_tx.subscribe();
        let _ = rx.wait_for(|&v| v >= offset || self.is_poisoned()).await;
        match self.write_error() {
            // Bytes before the failure were persisted: their writers get OK.
            Some(e) if self.acked.load(Ordering::Acquire) < offset => Err(e),
            _ => Ok(()),
        }
    }

    /// Offset up to which writes may be acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    fn publish(&self, offset: u64) {
        self.acked.store(offset, Ordering::Release);
        self.acked_tx.send_replace(offset);
    }

    fn poison(&self, what: &str, e: &std::io::Error) {
        self.poison_msg(format!("{what}: {e}"));
    }

    pub(crate) fn poison_msg(&self, reason: String) {
        tracing::error!(error = %reason, "append-only log failed; refusing writes until a restart or BGREWRITEAOF");
        *self.error.lock() = Some(reason);
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        self.poisoned.store(true, Ordering::Release);
        // Wake the waiters so that they see the error.
        self.acked_tx.send_modify(|_| {});
    }

    /// Only for a log that restarts from a new base ([`super::rebase`]).
    pub(crate) fn clear_poison(&self) {
        self.poisoned.store(false, Ordering::Release);
        *self.error.lock() = None;
    }

    /// `aof_last_write_status`.
    pub fn last_write_ok(&self) -> bool {
        !self.is_poisoned()
    }

    pub fn dir(&self) -> Option<PathBuf> {
        self.files.lock().as_ref().map(|f| f.dir.clone())
    }
}

/// Start the writer thread on `segment` (the open, last segment of the log
/// whose directory and manifest are `files`). The write log must already
/// collect unpersisted bytes from `segment.end` on.
pub(crate) fn start_writer(state: &Arc<State>, segment: SegmentWriter, files: Files) -> std::io::Result<()> {
    let aof = &state.aof;
    aof.stop.store(false, Ordering::Relaxed);
    aof.publish(segment.end);
    aof.segment_start.store(segment.start, Ordering::Release);
    *aof.files.lock() = Some(files);
    aof.enabled.store(true, Ordering::Release);
    let st = state.clone();
    let handle = std::thread::Builder::new()
        .name("aof-writer".into())
        .spawn(move || Writer::new(st, segment).run())?;
    *aof.thread.lock() = Some(handle);
    Ok(())
}

/// Stop the writer after it wrote (and fsynced) everything logged so far.
/// Blocks: call from a blocking context.
pub fn stop_writer(state: &State) {
    let aof = &state.aof;
    aof.stop.store(true, Ordering::Release);
    state.db.wlog.aof_wake.notify_all();
    let handle = aof.thread.lock().take();
    if let Some(h) = handle {
        let _ = h.join();
    }
    state.db.wlog.collect_unpersisted(false);
    aof.enabled.store(false, Ordering::Release);
    aof.publish(u64::MAX);
}

/// [`Writer::gather`]: the quiet gap that ends a wait, and the longest wait.
/// The floor is about the clients' round trip, not the disk: once the
/// zero-filled log made an fsync ~150 µs, a gap of the fsync's duration
/// (floor 100 µs) ended the wait while connections were still coming back
/// (18–24 of 50 unpipelined clients' writes per fsync, hand-run); with a
/// 400 µs floor `always -P 1` went from 48–63k to 53–70k writes/s (seven
/// alternating rounds, each at or above the 100 µs build; Redis 48–62k).
const GATHER_GAP_MIN: Duration = Duration::from_micros(400);
const GATHER_GAP_MAX: Duration = Duration::from_millis(1);
const GATHER_MAX: Duration = Duration::from_millis(2);

struct Writer {
    state: Arc<State>,
    seg: SegmentWriter,
    unsynced: bool,
    last_sync: Instant,
    /// How long the last fsync took, how many waiting connections it
    /// released, and [`Aof::entered`] when it completed and when the log
    /// it synced was taken (see [`Writer::gather`]).
    last_fsync: Duration,
    released: usize,
    entered_at_sync: u64,
    entered_at_take: u64,
}

impl Writer {
    fn new(state: Arc<State>, seg: SegmentWriter) -> Self {
        Writer {
            state,
            seg,
            unsynced: false,
            last_sync: Instant::now(),
            last_fsync: Duration::ZERO,
            released: 0,
            entered_at_sync: 0,
            entered_at_take: 0,
        }
    }

    /// `always`: right after an fsync released N waiting connections, they
    /// answer their clients and come back with new writes, one after the
    /// other as the clients' requests arrive. Taking the log at once would
    /// fsync only the first of them and leave the rest for the fsync after
    /// (measured with 50 unpipelined clients: 21–24 writes per fsync when
    /// this counted the wrong thing, below; ~40 now). So wait until N connections have come back to wait —
    /// counted as new entries into `wait_acked`: the released ones leave
    /// the `waiting` count only once their thread runs them, after this
    /// starts, so counting those saw everyone back at once — for as long
    /// as they keep coming: the wait ends when no connection has come back
    /// for the last fsync's duration (400 µs to 1 ms), or after 2 ms in
    /// all. A lone client comes back at once and does not wait at all;
    /// released connections that do not come back (their clients went on
    /// with reads) cost one quiet gap, not a fixed delay.
    fn gather(&mut self) {
        let aof = &self.state.aof;
        let want = std::mem::take(&mut self.released) as u64;
        if want == 0 {
            return;
        }
        let start = Instant::now();
        let gap = self.last_fsync.clamp(GATHER_GAP_MIN, GATHER_GAP_MAX);
        let target = self.entered_at_sync.wrapping_add(want);
        let (mut seen, mut progress) = (self.entered_at_sync, start);
        let mut g = aof.gather_lock.lock();
        aof.gather_target.store(target, Ordering::Relaxed);
        loop {
            let entered = aof.entered.load(Ordering::Relaxed);
            if entered.wrapping_sub(self.entered_at_sync) >= want || aof.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            if entered != seen {
                (seen, progress) = (entered, now);
            }
            let until = (progress + gap).min(start + GATHER_MAX);
            if now >= until {
                break;
            }
            aof.gather_cv.wait_until(&mut g, until);
        }
        aof.gather_target.store(u64::MAX, Ordering::Relaxed);
    }

    fn run(mut self) {
        let state = self.state.clone();
        let (aof, wlog) = (&state.aof, &state.db.wlog);
        let mut busy = false;
        loop {
            let stopping = aof.stop.load(Ordering::Acquire);
            let policy = aof.fsync();
            // With everysec/no nobody waits for us: while writes keep coming,
            // poll every millisecond instead of sleeping on the condvar, so
            // that appends find no waiter to wake (no futex call per command)
            // and one write carries a millisecond's worth of commands.
            if policy == Fsync::Always && !stopping {
                self.gather();
            }
            self.seg
                .set_prefill((policy == Fsync::Always && !stopping).then(|| aof.segment_size.load(Ordering::Relaxed)));
            let wait = if stopping {
                Duration::ZERO
            } else if busy && policy != Fsync::Always {
                std::thread::sleep(Duration::from_millis(1));
                Duration::ZERO
            } else {
                Duration::from_millis(100)
            };
            let (start, bytes) = wlog.take_unpersisted(wait);
            busy = !bytes.is_empty();
            if busy {
                self.entered_at_take = aof.entered.load(Ordering::Relaxed);
            }
            if busy && !aof.is_poisoned() {
                if start != self.seg.end {
                    // The write log started a new history (a replica's full
                    // sync): these bytes do not follow the segment.
                    let e = std::io::Error::other(format!(
                        "write log jumped from offset {} to {start}; a new base is needed",
                        self.seg.end
                    ));
                    aof.poison("log continuity", &e);
                } else if let Err(e) = self.seg.append(start, &bytes) {
                    aof.poison("write failed", &e);
                    if let Err(e2) = self.seg.truncate_partial() {
                        tracing::error!(error = %e2, "could not truncate the partial record");
                    }
                } else {
                    aof.records.fetch_add(1, Ordering::Relaxed);
                    aof.current_size.fetch_add(
                        (bytes.len() + super::segment::RECORD_HEADER_LEN) as u64,
                        Ordering::Relaxed,
                    );
                    self.unsynced = true;
                }
            }
            if !aof.is_poisoned() {
                self.sync_per_policy(policy, stopping);
                self.maybe_rotate();
                if !stopping {
                    self.maybe_auto_rewrite();
                }
            }
            aof.preallocated.store(self.seg.preallocated(), Ordering::Relaxed);
            if stopping && !busy {
                // Leave the segment ending with its last record (no zeros a
                // reader would have to know about).
                if let Err(e) = self.seg.close() {
                    tracing::warn!(file = %self.seg.path.display(), error = %e, "could not trim the log segment's zero-filled space");
                }
                aof.preallocated.store(0, Ordering::Relaxed);
                return;
            }
        }
    }

    fn sync(&mut self) -> bool {
        let aof = &self.state.aof;
        let started = Instant::now();
        match self.seg.sync() {
            Ok(()) => {
                self.last_fsync = started.elapsed();
                // Connections that began waiting after the log was taken
                // wait for writes this fsync did not cover: they stay.
                let entered = aof.entered.load(Ordering::Relaxed);
                let late = entered.wrapping_sub(self.entered_at_take) as usize;
                self.released = aof.waiting.load(Ordering::Relaxed).saturating_sub(late);
                self.entered_at_sync = entered;
                aof.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.unsynced = false;
                self.last_sync = Instant::now();
                true
            }
            Err(e) => {
                aof.poison("fsync failed", &e);
                false
            }
        }
    }

    fn sync_per_policy(&mut self, policy: Fsync, stopping: bool) {
        let due = match policy {
            Fsync::Always => true,
            Fsync::EverySec => self.last_sync.elapsed() >= Duration::from_secs(1),
            Fsync::No => false,
        };
        if self.unsynced && (due || stopping) && !self.sync() {
            return;
        }
        // Under everysec/no, written = acknowledgeable (nobody waits; this
        // releases clients that waited under `always` before a CONFIG SET).
        if policy != Fsync::Always || !self.unsynced {
            self.state.aof.publish(self.seg.end);
        }
    }

    /// `auto-aof-rewrite-percentage` / `-min-size`, as Redis: rewrite once
    /// the log is at least the minimum size and has grown by the percentage
    /// since the last rewrite (or startup). The rewrite runs on its own
    /// thread; this only starts it.
    fn maybe_auto_rewrite(&self) {
        let (aof, cfg) = (&self.state.aof, &self.state.config);
        let pct = cfg.auto_aof_rewrite_percentage.load(Ordering::Relaxed);
        let size = aof.current_size.load(Ordering::Relaxed);
        if pct == 0
            || aof.rewrite_in_progress.load(Ordering::Relaxed)
            || size < cfg.auto_aof_rewrite_min_size.load(Ordering::Relaxed)
        {
            return;
        }
        let base = aof.rewrite_base_size.load(Ordering::Relaxed).max(1);
        if size.saturating_sub(base) * 100 / base >= pct {
            tracing::info!(size, base, pct, "starting an automatic append-only log rewrite");
            if let Err(e) = super::rewrite::start(&self.state) {
                tracing::warn!(error = %e, "automatic rewrite did not start");
                // Do not retry on every loop: wait for the log to grow again.
                aof.rewrite_base_size.store(size, Ordering::Relaxed);
            }
        }
    }

    fn maybe_rotate(&mut self) {
        let state = self.state.clone();
        let aof = &state.aof;
        let by_size = self.seg.len >= aof.segment_size.load(Ordering::Relaxed);
        let secs = aof.segment_seconds.load(Ordering::Relaxed);
        let by_time = secs > 0 && self.seg.created.elapsed() >= Duration::from_secs(secs);
        let forced = aof.rotate_now.load(Ordering::Acquire);
        if !self.seg.is_empty()
            && (by_size || by_time || forced)
            && let Err(e) = self.rotate()
        {
            aof.poison("segment rotation failed", &e);
        }
        if forced {
            aof.rotate_now.store(false, Ordering::Release);
        }
    }

    /// Close the segment (fsynced: closed segments are immutable and complete)
    /// and continue in a new one; the manifest lists it before any record
    /// goes into it.
    fn rotate(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.seg.sync()?;
            self.state.aof.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.unsynced = false;
        }
        let mut files = self.state.aof.files.lock();
        let Some(files) = files.as_mut() else {
            return Err(std::io::Error::other("no log directory"));
        };
        // Closed segments end with their last record: trimmed (and that
        // made durable) before the next segment exists.
        self.seg.close()?;
        let next = SegmentWriter::create(&files.dir, self.seg.end)?;
        files.manifest.segments.push(next.start);
        files.manifest.store(&files.dir)?;
        // The new header and manifest line count too (records are counted
        // as written); the closed segment has no zeros left.
        self.state.aof.preallocated.store(0, Ordering::Relaxed);
        self.state
            .aof
            .current_size
            .store(super::log_size(&self.state, &files.dir), Ordering::Relaxed);
        tracing::info!(closed = %self.seg.path.display(), next = %next.path.display(), "rotated log segment");
        self.seg = next;
        self.state.aof.segment_start.store(self.seg.start, Ordering::Release);
        self.state.aof.publish(self.seg.end);
        Ok(())
    }
}

/// Path of the log directory for `--dir` and `--appenddirname`.
pub fn log_dir(dir: &Path, appenddirname: &str) -> PathBuf {
    dir.join(appenddirname)
}
