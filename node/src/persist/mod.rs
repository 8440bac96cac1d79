//! Persistence: the data directory, startup (load + replay) and the
//! append-only log.
//!
//! # Data directory (`--dir`)
//!
//! ```text
//! <dir>/dump.fkv                         snapshot (SAVE/BGSAVE, `--dbfilename`)
//! <dir>/<appenddirname>/manifest         base + segments of the log (see manifest.rs)
//! <dir>/<appenddirname>/base-<off>.fkv   the log's base snapshot at write-log offset <off>
//! <dir>/<appenddirname>/seg-<off>.log    log segments, each named by its first offset
//! ```
//!
//! # Startup
//!
//! With `--appendonly yes`: load the manifest's base snapshot (offset B),
//! then replay every log record after B through the normal command path with
//! a loading session (no replies, no auth or memory checks). Without it: load
//! `dump.fkv` if present. The server does not listen until loading is done,
//! so no client ever sees a half-loaded dataset (`INFO persistence` shows
//! `loading:0` to anyone who can connect; there is no `-LOADING` state).
//!
//! Offsets during replay: replayed commands append to the write log like any
//! command, but what they append can differ from the file (a key that
//! expired since adds a `DEL`), so the log's offsets would drift from the
//! file's. Replay therefore runs with the log's AOF collection off, and when
//! it is done the write log is `reset` to the file's end offset: from then
//! on, offset N in memory is offset N in the file, which is what appending to
//! the last segment, group commit and replicas' offsets rely on.
//!
//! Damage: a torn final record (a crash mid-write) refuses startup with the
//! file, position and byte count unless `--repair-log` is given, which
//! truncates it and says how many bytes it dropped. Anything else — damage
//! followed by intact records, an offset gap between records or segments, a
//! torn record in a closed segment, a segment the manifest lists but the
//! directory lacks — always refuses: dropping it would silently lose
//! acknowledged writes.
//!
//! # Modules
//!
//! - [`codec`]: the binary encoding of one key (type, value, TTL, encoding
//!   flags) shared by snapshots, full syncs and (later) slot migration.
//! - [`cut`]: a point-in-time view of the keyspace taken without stopping
//!   writes, streamed as per-slot blocks and tied to a write-log offset.
//! - [`snapshot`]: the snapshot file format (header, checksummed blocks,
//!   trailer) over any `Write`/`Read`, loading, and the save bookkeeping.
//! - [`save`]: SAVE/BGSAVE bookkeeping, the `--save` schedule, `INFO
//!   persistence` snapshot fields.
//! - [`digest`]: an order-independent hash of the dataset or of one slot.
//! - [`aof`]: the append-only log writer (fsync policies, group commit,
//!   failure handling); [`segment`]: the log's file format and verifying
//!   reader; [`manifest`]: which base and segments make up the log;
//!   [`rewrite`]: BGREWRITEAOF.

pub mod aof;
pub mod codec;
pub mod cut;
pub mod digest;
pub mod manifest;
pub mod rewrite;
pub mod save;
pub mod segment;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use crate::client::ClientHandle;
use crate::cmd;
use crate::resp::parse::{self, Check, Limits};
use crate::session::{Multi, Session};
use crate::state::State;
use aof::{Files, Fsync};
use manifest::Manifest;
use segment::{SegmentWriter, Tail};

/// What startup needs to know (from `ServeArgs`).
#[derive(Debug, Clone)]
pub struct PersistConfig {
    pub dir: PathBuf,
    pub dbfilename: String,
    pub appendonly: bool,
    pub appenddirname: String,
    pub appendfsync: Fsync,
    pub repair_log: bool,
    pub segment_size: u64,
    pub segment_seconds: u64,
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            dir: PathBuf::from("."),
            dbfilename: "dump.fkv".into(),
            appendonly: false,
            appenddirname: "appendonlydir".into(),
            appendfsync: Fsync::EverySec,
            repair_log: false,
            segment_size: aof::DEFAULT_SEGMENT_SIZE,
            segment_seconds: 0,
        }
    }
}

impl PersistConfig {
    pub fn from_args(args: &crate::config::ServeArgs, config: &crate::config::Config) -> Result<Self, PersistError> {
        let d = PersistConfig::default();
        let bad = |msg: String| PersistError::Config(msg);
        let segment_size = match &args.aof_segment_size {
            Some(s) => crate::config::parse_memory(s).map_err(|e| bad(format!("--aof-segment-size {s}: {e}")))?,
            None => d.segment_size,
        };
        Ok(PersistConfig {
            dir: config.dir.read().clone(),
            appendonly: config.appendonly.load(Ordering::Relaxed),
            appendfsync: Fsync::from_u8(config.appendfsync.load(Ordering::Relaxed)),
            appenddirname: args.appenddirname.clone().unwrap_or(d.appenddirname),
            repair_log: args.repair_log,
            segment_size,
            segment_seconds: args.aof_segment_seconds.unwrap_or(0),
            dbfilename: config.dbfilename.read().clone(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("invalid persistence configuration: {0}")]
    Config(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("log segment {path}: {source}")]
    Header {
        path: PathBuf,
        source: segment::HeaderError,
    },
    #[error(
        "log segment {path} ends with a torn record at byte {at} ({bytes} bytes: {reason}); \
         start with --repair-log to drop those {bytes} bytes"
    )]
    TornTail {
        path: PathBuf,
        at: usize,
        bytes: usize,
        reason: String,
    },
    #[error("log segment {path} is corrupt at byte {at}: {reason}; refusing to start (restore it from a backup)")]
    Corrupt { path: PathBuf, at: usize, reason: String },
    #[error("append-only log {dir} is inconsistent: {msg}")]
    Inconsistent { dir: PathBuf, msg: String },
    #[error("replaying {path} at offset {offset}: {msg}")]
    Replay { path: PathBuf, offset: u64, msg: String },
    #[error("snapshot {path}: {msg}")]
    Snapshot { path: PathBuf, msg: String },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Load the dataset (snapshot and/or log) and, with `appendonly`, start the
/// log writer. Runs before the server listens. Blocking: call it from a
/// blocking context.
pub fn startup(state: &Arc<State>, cfg: &PersistConfig) -> Result<(), PersistError> {
    let aof = &state.aof;
    *aof.setup.lock() = Some((cfg.clone(), Arc::downgrade(state)));
    aof.set_fsync(cfg.appendfsync);
    aof.segment_size.store(cfg.segment_size.max(1), Ordering::Relaxed);
    aof.segment_seconds.store(cfg.segment_seconds, Ordering::Relaxed);
    if !cfg.appendonly {
        if let Some(offset) = load_dump(state, cfg)? {
            state.db.wlog.reset(offset);
        }
        return Ok(());
    }
    let dir = aof::log_dir(&cfg.dir, &cfg.appenddirname);
    std::fs::create_dir_all(&dir).map_err(io_err("failed to create log directory", &dir))?;
    let started = std::time::Instant::now();
    let (segment, manifest) = match Manifest::load(&dir)? {
        Some(m) => open_existing(state, &dir, m, cfg.repair_log)?,
        None => create_new(state, cfg, &dir)?,
    };
    aof.base_size.store(
        manifest
            .base_file
            .as_ref()
            .and_then(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .unwrap_or(0),
        Ordering::Relaxed,
    );
    aof.preallocated.store(segment.preallocated(), Ordering::Relaxed);
    let size = log_size(state, &dir);
    aof.current_size.store(size, Ordering::Relaxed);
    aof.rewrite_base_size.store(size, Ordering::Relaxed);
    tracing::info!(
        dir = %dir.display(),
        offset = state.db.wlog.offset(),
        ms = started.elapsed().as_millis() as u64,
        "append-only log loaded"
    );
    state.db.wlog.collect_unpersisted(true);
    aof::start_writer(
        state,
        segment,
        Files {
            dir: dir.clone(),
            manifest,
        },
    )
    .map_err(io_err("failed to start the log writer for", &dir))
}

/// After `CONFIG SET`: make the log match `appendonly` and `appendfsync`.
/// Turning the log off waits for the writer to write and fsync what it has.
pub fn apply_config(state: &State) -> Result<(), String> {
    // Both directions wait for a thread (the writer's last fsync, or the
    // base snapshot). On a multi-threaded runtime, let tokio move this
    // worker's other connections elsewhere meanwhile.
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| apply_config_blocking(state))
    } else {
        apply_config_blocking(state)
    }
}

/// Start the log afresh from a new base after the write log began a new
/// history (`WriteLog::reset`, e.g. a replica's full sync): the old log no
/// longer leads to the dataset, and the writer refuses to append bytes that
/// do not follow it ("log continuity"). Blocks until the new base is on
/// disk; writes made meanwhile are in the base, but with `always` they are
/// acknowledged without waiting while the log restarts. A no-op when the log
/// is off.
pub fn rebase(state: &State) -> Result<(), String> {
    if !state.aof.enabled.load(Ordering::Acquire) {
        return Ok(());
    }
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(|| rebase_now(state))
    } else {
        rebase_now(state)
    }
}

/// [`rebase`] without the runtime handling, also for a log whose writer
/// already stopped. On failure the log stays poisoned: writes are refused.
pub(crate) fn rebase_now(state: &State) -> Result<(), String> {
    aof::stop_writer(state);
    // The new base makes log and dataset agree again.
    state.aof.clear_poison();
    start_on_thread(state).inspect_err(|e| state.aof.poison_msg(format!("restarting the log failed: {e}")))
}

fn start_on_thread(state: &State) -> Result<(), String> {
    let (pcfg, me) = state.aof.setup.lock().clone().ok_or("persistence was not set up")?;
    let me = me.upgrade().ok_or("server is shutting down")?;
    let worker = std::thread::Builder::new()
        .name("aof-enable".into())
        .spawn(move || enable_at_runtime(&me, &pcfg))
        .map_err(|e| format!("failed to start: {e}"))?;
    worker
        .join()
        .unwrap_or_else(|_| Err("the enabling thread panicked".into()))
}

fn apply_config_blocking(state: &State) -> Result<(), String> {
    let cfg = &state.config;
    state
        .aof
        .set_fsync(Fsync::from_u8(cfg.appendfsync.load(Ordering::Relaxed)));
    let want = cfg.appendonly.load(Ordering::Relaxed);
    let running = state.aof.enabled.load(Ordering::Acquire);
    if want == running {
        return Ok(());
    }
    if !want {
        aof::stop_writer(state);
        state.aof.clear_poison();
        return Ok(());
    }
    // The cut streams its blocks through a channel that must not be waited
    // on from a runtime thread: the work runs on a plain thread, and CONFIG
    // SET answers when the log is on (or why it is not).
    start_on_thread(state).inspect_err(|_| cfg.appendonly.store(false, Ordering::Relaxed))
}

/// `CONFIG SET appendonly yes`: the log must start from a base that matches
/// the dataset. Collection of log bytes starts (offset S) under every
/// partition lock, then a cut at X ≥ S becomes the base; the first segment
/// starts at S (replay skips what the base already holds) and the manifest
/// is written once, complete. Blocks until the base is on disk.
fn enable_at_runtime(me: &Arc<State>, pcfg: &PersistConfig) -> Result<(), String> {
    let state: &State = me;
    let dir = aof::log_dir(&pcfg.dir, &pcfg.appenddirname);
    std::fs::create_dir_all(&dir).map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    // A previous log in the directory stays valid until the new manifest
    // replaces it; only then are its files deleted.
    let old_segments = list_segments(&dir).map_err(|e| e.to_string())?;
    let old_base = Manifest::load(&dir).ok().flatten().and_then(|m| m.base_file);
    let (start, keys) = {
        let mut ks = state.db.lock_all(crate::db::now_ms());
        let keys: usize = ks.partitions_mut().map(|p| p.keys).sum();
        state.db.wlog.collect_unpersisted(true);
        (state.db.wlog.offset(), keys)
    };
    if old_segments.contains(&start) {
        // Same name as the new first segment: it has to go first.
        let _ = std::fs::remove_file(dir.join(manifest::FILE_NAME));
        std::fs::remove_file(dir.join(segment::file_name(start)))
            .map_err(|e| format!("failed to clear {}: {e}", dir.display()))?;
    }
    let started = (|| -> Result<(), String> {
        let (base_file, base_offset) = if keys > 0 {
            let (x, name) = write_base_snapshot(me, &dir)?;
            (Some(name), x)
        } else {
            (None, start)
        };
        let io = |e: std::io::Error| format!("in {}: {e}", dir.display());
        let seg = SegmentWriter::create(&dir, start).map_err(io)?;
        let m = Manifest {
            base_file,
            base_offset,
            segments: vec![start],
        };
        m.store(&dir).map_err(io)?;
        let base_size = m
            .base_file
            .as_ref()
            .and_then(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        state.aof.base_size.store(base_size, Ordering::Relaxed);
        for &o in old_segments.iter().filter(|&&o| o != start) {
            let _ = std::fs::remove_file(dir.join(segment::file_name(o)));
        }
        if let Some(b) = old_base.filter(|b| Some(b) != m.base_file.as_ref()) {
            let _ = std::fs::remove_file(dir.join(b));
        }
        state.aof.preallocated.store(0, Ordering::Relaxed);
        let size = log_size(state, &dir);
        state.aof.current_size.store(size, Ordering::Relaxed);
        state.aof.rewrite_base_size.store(size, Ordering::Relaxed);
        aof::start_writer(
            me,
            seg,
            Files {
                dir: dir.clone(),
                manifest: m,
            },
        )
        .map_err(io)
    })();
    started.map_err(|e| {
        state.db.wlog.collect_unpersisted(false);
        format!("failed to start the append-only log: {e}")
    })
}

/// Bytes of the log on disk: its directory's files less the zeros after the
/// open segment's last record.
pub(crate) fn log_size(state: &State, dir: &Path) -> u64 {
    dir_size(dir).saturating_sub(state.aof.preallocated.load(Ordering::Relaxed))
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

/// Remove what an interrupted rewrite or atomic write left behind: base
/// files the manifest does not name and temporary files. (Best effort: they
/// only waste space.)
fn remove_leftovers(dir: &Path, base: Option<&str>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stray_base = name.starts_with("base-") && name.ends_with(".fkv") && Some(name.as_str()) != base;
        let temp = name.ends_with(".tmp") || name.starts_with("temp-");
        if stray_base || temp {
            tracing::info!(file = %e.path().display(), "removing a leftover file from the log directory");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Segment files in `dir`, by start offset.
fn list_segments(dir: &Path) -> Result<Vec<u64>, PersistError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err("failed to list", dir))? {
        let e = e.map_err(io_err("failed to list", dir))?;
        if let Some(s) = segment::parse_file_name(&e.file_name().to_string_lossy()) {
            v.push(s);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// First start with the log on: the dataset is whatever `dump.fkv` holds
/// (or nothing). Its copy becomes the base, so no cut of the live dataset is
/// needed: nothing has changed since it was loaded.
fn create_new(state: &Arc<State>, cfg: &PersistConfig, dir: &Path) -> Result<(SegmentWriter, Manifest), PersistError> {
    for s in list_segments(dir)? {
        // Without a manifest these never became a complete log.
        let p = dir.join(segment::file_name(s));
        tracing::warn!(file = %p.display(), "removing a log segment that no manifest lists");
        std::fs::remove_file(&p).map_err(io_err("failed to remove", &p))?;
    }
    let dump = cfg.dir.join(&cfg.dbfilename);
    let mut m = Manifest::default();
    if let Some(offset) = load_dump(state, cfg)? {
        state.db.wlog.reset(offset);
        let base = manifest::base_file_name(offset);
        let base_path = dir.join(&base);
        copy_durably(&dump, &base_path)?;
        m.base_file = Some(base);
        m.base_offset = offset;
    } else {
        m.base_offset = state.db.wlog.offset();
    }
    let seg = SegmentWriter::create(dir, m.base_offset).map_err(io_err("failed to create a segment in", dir))?;
    m.segments.push(seg.start);
    m.store(dir).map_err(io_err("failed to write the manifest in", dir))?;
    tracing::info!(dir = %dir.display(), offset = m.base_offset, "created the append-only log");
    Ok((seg, m))
}

fn copy_durably(from: &Path, to: &Path) -> Result<(), PersistError> {
    let data = std::fs::read(from).map_err(io_err("failed to read", from))?;
    segment::write_atomic(to, &data).map_err(io_err("failed to write", to))
}

/// Load base + segments of an existing log; returns the segment to append to.
fn open_existing(
    state: &Arc<State>,
    dir: &Path,
    mut m: Manifest,
    repair: bool,
) -> Result<(SegmentWriter, Manifest), PersistError> {
    let inconsistent = |msg: String| PersistError::Inconsistent {
        dir: dir.to_path_buf(),
        msg,
    };
    if let Some(base) = &m.base_file {
        let path = dir.join(base);
        let offset = load_snapshot_file(state, &path)?;
        if offset != m.base_offset {
            return Err(inconsistent(format!(
                "base {base} is at offset {offset}, the manifest says {}",
                m.base_offset
            )));
        }
    }
    state.db.wlog.reset(m.base_offset);
    remove_leftovers(dir, m.base_file.as_deref());
    let on_disk = list_segments(dir)?;
    for s in &m.segments {
        if !on_disk.contains(s) {
            return Err(inconsistent(format!(
                "segment {} is listed in the manifest but missing",
                segment::file_name(*s)
            )));
        }
    }
    let first = m.segments.first().copied().unwrap_or(m.base_offset);
    let last_listed = m.segments.last().copied().unwrap_or(0);
    let mut segs = m.segments.clone();
    for &s in &on_disk {
        if s < first {
            // Wholly before the base: left over from a rewrite that was
            // interrupted after its manifest was written.
            let p = dir.join(segment::file_name(s));
            tracing::info!(file = %p.display(), "removing a segment older than the log's base");
            std::fs::remove_file(&p).map_err(io_err("failed to remove", &p))?;
        } else if s > last_listed {
            // Created by a rotation that crashed before the manifest listed it.
            segs.push(s);
        } else if !m.segments.contains(&s) {
            return Err(inconsistent(format!(
                "segment {} is not in the manifest",
                segment::file_name(s)
            )));
        }
    }
    if segs.is_empty() {
        return Err(inconsistent("the manifest lists no segment".into()));
    }
    if segs[0] > m.base_offset {
        return Err(inconsistent(format!(
            "the log starts at offset {} but its base is at {}: bytes are missing",
            segs[0], m.base_offset
        )));
    }
    let mut replay = Replayer::new(state.clone());
    let mut expect = segs[0];
    let mut writer = None;
    for (i, &s) in segs.iter().enumerate() {
        let path = dir.join(segment::file_name(s));
        let data = std::fs::read(&path).map_err(io_err("failed to read", &path))?;
        let scan = segment::scan(&data).map_err(|source| PersistError::Header {
            path: path.clone(),
            source,
        })?;
        if scan.start != s {
            return Err(inconsistent(format!(
                "{} says it starts at offset {}",
                path.display(),
                scan.start
            )));
        }
        if s != expect {
            return Err(inconsistent(format!(
                "gap: {} starts at offset {s} but the previous segment ends at {expect}",
                path.display()
            )));
        }
        let last = i + 1 == segs.len();
        for r in &scan.records {
            if r.end_offset() <= m.base_offset {
                continue;
            }
            let skip = m.base_offset.saturating_sub(r.offset) as usize;
            replay
                .feed(&r.payload(&data)[skip..])
                .map_err(|msg| PersistError::Replay {
                    path: path.clone(),
                    offset: r.offset,
                    msg,
                })?;
        }
        let end_offset = scan.end_offset();
        let valid_len = match scan.tail {
            Tail::Torn { at, .. } => at as u64,
            _ => scan.valid_len as u64,
        };
        match scan.tail {
            Tail::Clean => {}
            Tail::Corrupt { at, reason } => return Err(PersistError::Corrupt { path, at, reason }),
            Tail::Torn { at, reason, .. } if !last => {
                return Err(PersistError::Corrupt {
                    path,
                    at,
                    reason: format!("torn record in a closed segment ({reason})"),
                });
            }
            Tail::Torn { at, bytes, reason } => {
                if !repair {
                    return Err(PersistError::TornTail {
                        path,
                        at,
                        bytes,
                        reason,
                    });
                }
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err("failed to open", &path))?;
                f.set_len(at as u64).map_err(io_err("failed to truncate", &path))?;
                f.sync_all().map_err(io_err("failed to fsync", &path))?;
                tracing::warn!(
                    file = %path.display(),
                    at,
                    dropped_bytes = bytes,
                    reason = %reason,
                    "--repair-log: truncated the torn tail of the log"
                );
                eprintln!(
                    "ferrokv-node: --repair-log: dropped {bytes} bytes of a torn record at byte {at} of {}",
                    path.display()
                );
            }
        }
        expect = end_offset;
        if last {
            writer = Some((path, scan.start, end_offset, valid_len));
        }
    }
    let keys = replay.finish().map_err(|msg| PersistError::Replay {
        path: dir.to_path_buf(),
        offset: expect,
        msg,
    })?;
    tracing::info!(commands = keys, "replayed the append-only log");
    m.segments = segs;
    let Some((path, start, end, valid_len)) = writer else {
        return Err(inconsistent("no segment to append to".into()));
    };
    if end < m.base_offset {
        // The base was cut ahead of what the writer had written before a
        // crash: every segment lies wholly before it.
        let seg = SegmentWriter::create(dir, m.base_offset).map_err(io_err("failed to create a segment in", dir))?;
        let old = std::mem::replace(&mut m.segments, vec![seg.start]);
        m.store(dir).map_err(io_err("failed to write the manifest in", dir))?;
        for s in old {
            let _ = std::fs::remove_file(dir.join(segment::file_name(s)));
        }
        state.db.wlog.reset(m.base_offset);
        return Ok((seg, m));
    }
    state.db.wlog.reset(end);
    let seg = SegmentWriter::reopen(&path, start, end, valid_len).map_err(io_err("failed to open", &path))?;
    Ok((seg, m))
}

/// Executes logged commands through the normal command path.
struct Replayer {
    state: Arc<State>,
    session: Session,
    buf: BytesMut,
    commands: u64,
    errors: u64,
}

impl Replayer {
    fn new(state: Arc<State>) -> Self {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let handle = Arc::new(ClientHandle::new(0, addr, addr));
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        // The node drives this session itself: never redirected in cluster
        // mode, and allowed the internal commands it logged (RESTOREBATCH).
        let mut session = Session::new(handle, tx, true);
        session.cluster_internal = true;
        Replayer {
            state,
            session,
            buf: BytesMut::new(),
            commands: 0,
            errors: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let limits = Limits {
            max_bulk_len: i64::MAX,
            unauthenticated: false,
        };
        loop {
            let req = match parse::check(&self.buf, &limits) {
                Ok(Check::Complete(req)) => req,
                Ok(Check::Incomplete) => return Ok(()),
                Err(e) => return Err(format!("not a RESP command stream: {e}")),
            };
            let args = parse::take(&mut self.buf, req);
            if !args.is_empty() {
                self.execute(args)?;
            }
        }
    }

    fn execute(&mut self, args: Vec<Bytes>) -> Result<(), String> {
        let view = cmd::view(&args);
        let spec = cmd::resolve(&view).map_err(|e| format!("cannot replay {}", reply_text(&e)))?;
        self.commands += 1;
        if spec.name == "multi" && self.session.multi.is_none() {
            self.session.multi = Some(Multi {
                queue: Vec::new(),
                aborted: false,
            });
            return Ok(());
        }
        if let Some(m) = self.session.multi.as_mut()
            && spec.name != "exec"
        {
            drop(view);
            m.queue.push((spec, args));
            return Ok(());
        }
        // No auth, MISCONF or maxmemory checks: the log holds what the
        // dataset was; refusing part of it would make a different one.
        if let cmd::Outcome::Reply(r) = cmd::run(
            &self.state,
            &mut self.session,
            spec,
            cmd::table().id(spec),
            &view,
            false,
        ) {
            self.check_reply(&r);
        }
        Ok(())
    }

    fn check_reply(&mut self, r: &crate::resp::Reply) {
        let errs: Vec<&crate::resp::Reply> = match r {
            crate::resp::Reply::Array(items) => items.iter().filter(|i| i.is_error()).collect(),
            r if r.is_error() => vec![r],
            _ => Vec::new(),
        };
        for e in errs {
            self.errors += 1;
            if self.errors <= 10 {
                tracing::warn!(reply = %reply_text(e), "a replayed command failed");
            }
        }
    }

    fn finish(self) -> Result<u64, String> {
        if !self.buf.is_empty() {
            return Err(format!("the log ends inside a command ({} bytes)", self.buf.len()));
        }
        if self.session.multi.is_some() {
            return Err("the log ends inside MULTI without EXEC".into());
        }
        if self.errors > 0 {
            tracing::warn!(errors = self.errors, "replayed commands that failed");
        }
        Ok(self.commands)
    }
}

fn reply_text(r: &crate::resp::Reply) -> String {
    match r {
        crate::resp::Reply::Error(m) => m.to_string(),
        _ => "reply".into(),
    }
}

// ---- The snapshot reader/writer (persist::snapshot) as the log uses it ----

/// Load `dump.fkv` (`--dir`/`--dbfilename`) if present, with the snapshot
/// module's INFO bookkeeping; its write-log offset.
fn load_dump(state: &Arc<State>, cfg: &PersistConfig) -> Result<Option<u64>, PersistError> {
    save::load_at_startup(state)
        .map(|info| {
            info.map(|i| {
                // Same history as before the restart: replicas may continue it.
                state.repl.set_replid(i.replid);
                i.offset
            })
        })
        .map_err(|e| PersistError::Snapshot {
            path: cfg.dir.join(&cfg.dbfilename),
            msg: e.to_string(),
        })
}

/// Load a snapshot file into the (empty) dataset; returns its write-log offset.
fn load_snapshot_file(state: &Arc<State>, path: &Path) -> Result<u64, PersistError> {
    let started = std::time::Instant::now();
    let snap_err = |msg: String| PersistError::Snapshot {
        path: path.to_path_buf(),
        msg,
    };
    match snapshot::load_file(path, &state.db) {
        Ok(Some(info)) => {
            tracing::info!(
                file = %path.display(),
                keys = info.keys,
                expired = info.expired,
                offset = info.offset,
                ms = started.elapsed().as_millis() as u64,
                "loaded snapshot"
            );
            state.repl.set_replid(info.replid);
            Ok(info.offset)
        }
        Ok(None) => Err(snap_err("file not found".into())),
        Err(e) => Err(snap_err(e.to_string())),
    }
}

/// Cut the live dataset and write it as `base-<offset>.fkv` in `dir`
/// (temp file, fsync, rename, directory fsync); its offset and file name.
pub(crate) fn write_base_snapshot(state: &Arc<State>, dir: &Path) -> Result<(u64, String), String> {
    let stream = cut::start(state).map_err(|e| e.to_string())?;
    let offset = stream.offset;
    let name = manifest::base_file_name(offset);
    snapshot::save_stream(stream, &dir.join(&name), &state.repl.replid())
        .map_err(|e| format!("failed to write the base snapshot: {e}"))?;
    Ok((offset, name))
}

/// `ferrokv-node check` for a snapshot file.
fn check_snapshot_file(path: &Path, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
    if !snapshot::is_snapshot(path) {
        writeln!(
            out,
            "{}: BAD: neither a ferrokv snapshot nor a log segment",
            path.display()
        )?;
        return Ok(false);
    }
    match snapshot::check(path) {
        Ok(report) => {
            writeln!(out, "{}: {report}", path.display())?;
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "{}: BAD snapshot: {e}", path.display())?;
            Ok(false)
        }
    }
}

// ---- `ferrokv-node check` ----

/// Verify a log segment, a log directory, or a snapshot file, printing what
/// it holds. `Ok(true)` when everything is intact.
pub fn check(path: &Path, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
    if path.is_dir() {
        return check_dir(path, out);
    }
    let data = std::fs::read(path)?;
    if segment::is_segment(&data) {
        return check_segment(path, &data, None, out);
    }
    check_snapshot_file(path, out)
}

fn check_segment(path: &Path, data: &[u8], expect: Option<u64>, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
    let scan = match segment::scan(data) {
        Ok(s) => s,
        Err(e) => {
            writeln!(out, "{}: BAD: {e}", path.display())?;
            return Ok(false);
        }
    };
    let payload: usize = scan.records.iter().map(|r| r.len).sum();
    writeln!(
        out,
        "{}: log segment v{}, offsets {}..{}, {} records, {payload} payload bytes, {} bytes in file",
        path.display(),
        segment::VERSION,
        scan.start,
        scan.end_offset(),
        scan.records.len(),
        data.len()
    )?;
    let mut ok = true;
    if let Some(e) = expect
        && e != scan.start
    {
        writeln!(out, "  BAD: expected to start at offset {e} (gap or overlap)")?;
        ok = false;
    }
    if scan.preallocated > 0 {
        writeln!(
            out,
            "  {} zero bytes after the last record (space the writer zero-fills ahead of itself; a crash left it)",
            scan.preallocated
        )?;
    }
    match scan.tail {
        Tail::Clean => writeln!(out, "  checksums OK")?,
        Tail::Torn { at, bytes, reason } => {
            writeln!(
                out,
                "  TORN TAIL at byte {at}: {bytes} bytes ({reason}); --repair-log would drop them"
            )?;
            ok = false;
        }
        Tail::Corrupt { at, reason } => {
            writeln!(out, "  CORRUPT at byte {at}: {reason}")?;
            ok = false;
        }
    }
    Ok(ok)
}

fn check_dir(dir: &Path, out: &mut dyn std::io::Write) -> std::io::Result<bool> {
    let m = match Manifest::load(dir) {
        Ok(Some(m)) => m,
        Ok(None) => {
            writeln!(out, "{}: no manifest", dir.display())?;
            return Ok(false);
        }
        Err(e) => {
            writeln!(out, "BAD: {e}")?;
            return Ok(false);
        }
    };
    writeln!(
        out,
        "{}: manifest: base {} at offset {}, {} segments",
        dir.display(),
        m.base_file.as_deref().unwrap_or("(empty dataset)"),
        m.base_offset,
        m.segments.len()
    )?;
    let mut ok = true;
    if let Some(b) = &m.base_file {
        ok &= check(&dir.join(b), out)?;
    }
    let mut expect = None;
    for s in &m.segments {
        let p = dir.join(segment::file_name(*s));
        match std::fs::read(&p) {
            Ok(data) => {
                ok &= check_segment(&p, &data, expect, out)?;
                expect = segment::scan(&data).ok().map(|s| s.end_offset());
            }
            Err(e) => {
                writeln!(out, "{}: BAD: {e}", p.display())?;
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// `INFO persistence` fields of the log (Redis 7 names).
pub fn info_fields(state: &State) -> Vec<(&'static str, String)> {
    let a = &state.aof;
    let on = a.enabled.load(Ordering::Relaxed);
    let mut v = vec![
        ("aof_enabled", (on as u8).to_string()),
        (
            "aof_rewrite_in_progress",
            (a.rewrite_in_progress.load(Ordering::Relaxed) as u8).to_string(),
        ),
        ("aof_rewrite_scheduled", "0".into()),
        ("aof_last_rewrite_time_sec", {
            let s = a.last_rewrite_secs.load(Ordering::Relaxed);
            if a.rewrites.load(Ordering::Relaxed) == 0 {
                "-1".into()
            } else {
                s.to_string()
            }
        }),
        ("aof_current_rewrite_time_sec", "-1".into()),
        (
            "aof_last_bgrewrite_status",
            if a.last_rewrite_ok.load(Ordering::Relaxed) {
                "ok"
            } else {
                "err"
            }
            .into(),
        ),
        ("aof_rewrites", a.rewrites.load(Ordering::Relaxed).to_string()),
        (
            "aof_last_write_status",
            if a.last_write_ok() { "ok" } else { "err" }.into(),
        ),
    ];
    if on {
        v.push(("aof_current_size", a.current_size.load(Ordering::Relaxed).to_string()));
        v.push(("aof_base_size", a.base_size.load(Ordering::Relaxed).to_string()));
        v.push(("aof_pending_rewrite", "0".into()));
        v.push(("aof_fsyncs", a.fsyncs.load(Ordering::Relaxed).to_string()));
    }
    v
}
