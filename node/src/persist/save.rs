//! SAVE / BGSAVE bookkeeping, the `--save` schedule and the snapshot fields
//! of `INFO persistence`.
//!
//! A background save is a cut ([`crate::persist::cut`]) written by a plain
//! thread to `dir/dbfilename` through [`snapshot::save_stream`] (temp file,
//! fsync, rename, directory fsync). SAVE is the same thing waited for:
//! without fork there is nothing to gain from writing on the command's own
//! thread, and clients keep being served while it runs, which Redis' SAVE
//! cannot offer.
//!
//! Changes are counted from `Ctx::dirty` after every command (Redis'
//! `server.dirty`). A successful save subtracts the count it started with,
//! so changes made while it ran still count towards the next one. After a
//! failed background save the schedule waits [`RETRY_DELAY`] before trying
//! again (as Redis' `CONFIG_BGSAVE_RETRY_DELAY`), so a full disk is not
//! hammered ten times a second.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::db::now_ms;
use crate::persist::cut;
use crate::persist::snapshot::{self, SnapshotError};
use crate::server::shutdown::Shutdown;
use crate::state::State;

/// Wait after a failed background save before the schedule retries.
pub const RETRY_DELAY: Duration = Duration::from_secs(5);

pub struct SaveState {
    /// Changes since the last successful save (`rdb_changes_since_last_save`).
    /// Bumped by every write: sharded per thread (see `crate::counter`).
    pub dirty: crate::counter::Counter,
    /// `dirty` when the running save started.
    dirty_at_start: AtomicU64,
    /// Unix seconds of the last successful save (start time until then).
    pub lastsave: AtomicU64,
    in_progress: AtomicBool,
    last_ok: AtomicBool,
    last_time_sec: AtomicI64,
    current_start_ms: AtomicU64,
    last_attempt_ms: AtomicU64,
    saves: AtomicU64,
    /// BGSAVE SCHEDULE came while a cut was running: start one after it.
    scheduled: AtomicBool,
    /// Startup is loading a snapshot (`loading`).
    pub loading: AtomicBool,
    pub last_load_keys_loaded: AtomicU64,
    pub last_load_keys_expired: AtomicU64,
}

impl Default for SaveState {
    fn default() -> Self {
        SaveState {
            dirty: crate::counter::Counter::default(),
            dirty_at_start: AtomicU64::new(0),
            lastsave: AtomicU64::new(now_ms() / 1000),
            in_progress: AtomicBool::new(false),
            last_ok: AtomicBool::new(true),
            last_time_sec: AtomicI64::new(-1),
            current_start_ms: AtomicU64::new(0),
            last_attempt_ms: AtomicU64::new(0),
            saves: AtomicU64::new(0),
            scheduled: AtomicBool::new(false),
            loading: AtomicBool::new(false),
            last_load_keys_loaded: AtomicU64::new(0),
            last_load_keys_expired: AtomicU64::new(0),
        }
    }
}

impl SaveState {
    /// Count a command's changes (called after every command).
    #[inline]
    pub fn count_changes(&self, n: u64) {
        if n > 0 {
            self.dirty.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn in_progress(&self) -> bool {
        self.in_progress.load(Ordering::Acquire)
    }

    pub fn schedule(&self) {
        self.scheduled.store(true, Ordering::Relaxed);
    }

    pub fn last_ok(&self) -> bool {
        self.last_ok.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("Background save already in progress")]
    InProgress,
    #[error("{0}")]
    Failed(#[from] SnapshotError),
    #[error("failed to start the snapshot writer thread: {0}")]
    Thread(std::io::Error),
}

/// Start a background save. Returns once the cut has started (its pause
/// is over); the file is written by a new thread, which `wait` may join.
pub fn bgsave(state: &Arc<State>) -> Result<std::thread::JoinHandle<Result<(), SaveError>>, SaveError> {
    let s = &state.saves;
    if s.in_progress.swap(true, Ordering::AcqRel) {
        return Err(SaveError::InProgress);
    }
    let dirty = s.dirty.load(Ordering::Relaxed);
    let stream = match cut::start(state) {
        Ok(st) => st,
        Err(_) => {
            // Another cut (a replica's full sync) is running.
            s.in_progress.store(false, Ordering::Release);
            return Err(SaveError::InProgress);
        }
    };
    s.dirty_at_start.store(dirty, Ordering::Relaxed);
    let started = now_ms();
    s.current_start_ms.store(started, Ordering::Relaxed);
    s.last_attempt_ms.store(started, Ordering::Relaxed);
    let path = state.config.snapshot_path();
    let replid = state.repl.replid();
    let st = state.clone();
    std::thread::Builder::new()
        .name("bgsave".into())
        .spawn(move || {
            let t0 = Instant::now();
            let result = snapshot::save_stream(stream, &path, &replid);
            // The cut's dumper ends on its own once the stream is consumed or
            // dropped (a failed save drops it early). Until it has, another
            // cut cannot start: a SAVE right after this one returned would
            // be refused as "already in progress". The save is over when the
            // cut is.
            if !cut::wait_idle(&st.db, Duration::from_secs(30)) {
                tracing::warn!("the snapshot cut is still ending after 30 s");
            }
            let s = &st.saves;
            s.last_time_sec.store(t0.elapsed().as_secs() as i64, Ordering::Relaxed);
            let out = match result {
                Ok(sum) => {
                    let at_start = s.dirty_at_start.load(Ordering::Relaxed);
                    // Changes only grow meanwhile, so the count still holds `at_start`.
                    let now = s.dirty.load(Ordering::Relaxed);
                    s.dirty.sub(at_start.min(now));
                    s.lastsave.store(now_ms() / 1000, Ordering::Relaxed);
                    s.last_ok.store(true, Ordering::Relaxed);
                    s.saves.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        path = %path.display(),
                        keys = sum.keys,
                        bytes = sum.bytes,
                        ms = t0.elapsed().as_millis() as u64,
                        "snapshot saved"
                    );
                    Ok(())
                }
                Err(e) => {
                    s.last_ok.store(false, Ordering::Relaxed);
                    tracing::error!(path = %path.display(), error = %e, "snapshot save failed");
                    Err(SaveError::Failed(e))
                }
            };
            s.in_progress.store(false, Ordering::Release);
            out
        })
        .map_err(|e| {
            state.saves.in_progress.store(false, Ordering::Release);
            SaveError::Thread(e)
        })
}

/// SAVE: a background save, waited for.
pub fn save(state: &Arc<State>) -> Result<(), SaveError> {
    let handle = bgsave(state)?;
    handle.join().unwrap_or_else(|_| {
        Err(SaveError::Thread(std::io::Error::other(
            "snapshot writer thread panicked",
        )))
    })
}

/// The snapshot a stopping node writes: like [`save`], but a save already
/// running (scheduled or BGSAVE) is waited for and then followed by this
/// one, since it was cut before the last writes.
pub fn final_save(state: &Arc<State>) -> Result<(), SaveError> {
    loop {
        match save(state) {
            Err(SaveError::InProgress) => std::thread::sleep(std::time::Duration::from_millis(20)),
            other => return other,
        }
    }
}

/// Should the schedule start a save now?
fn due(state: &State, now_ms: u64) -> bool {
    let s = &state.saves;
    if s.in_progress() || cut::in_progress(&state.db) {
        return false;
    }
    if s.scheduled.load(Ordering::Relaxed) {
        return true;
    }
    if !s.last_ok() && now_ms.saturating_sub(s.last_attempt_ms.load(Ordering::Relaxed)) < RETRY_DELAY.as_millis() as u64
    {
        return false;
    }
    let dirty = s.dirty.load(Ordering::Relaxed);
    let age = (now_ms / 1000).saturating_sub(s.lastsave.load(Ordering::Relaxed));
    state
        .config
        .save_points
        .read()
        .iter()
        .any(|&(secs, changes)| dirty >= changes && age >= secs)
}

/// The save schedule (and BGSAVE SCHEDULE): checked ten times a second,
/// as Redis' `serverCron` does.
pub async fn schedule_task(state: Arc<State>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        if due(&state, now_ms()) {
            state.saves.scheduled.store(false, Ordering::Relaxed);
            match bgsave(&state) {
                Ok(_) => tracing::info!("background saving started by the save schedule"),
                Err(SaveError::InProgress) => {}
                Err(e) => tracing::error!(error = %e, "cannot start a scheduled background save"),
            }
        }
    }
}

/// The snapshot part of `INFO persistence`, with Redis' field names.
pub fn info(state: &State, out: &mut String) {
    let s = &state.saves;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let in_progress = s.in_progress();
    let current = if in_progress {
        (now_ms().saturating_sub(l(&s.current_start_ms)) / 1000) as i64
    } else {
        -1
    };
    let fields: [(&str, String); 13] = [
        ("loading", (s.loading.load(Ordering::Relaxed) as u8).to_string()),
        ("async_loading", "0".into()),
        (
            "rdb_changes_since_last_save",
            s.dirty.load(Ordering::Relaxed).to_string(),
        ),
        ("rdb_bgsave_in_progress", (in_progress as u8).to_string()),
        ("rdb_last_save_time", l(&s.lastsave).to_string()),
        ("rdb_last_bgsave_status", if s.last_ok() { "ok" } else { "err" }.into()),
        (
            "rdb_last_bgsave_time_sec",
            s.last_time_sec.load(Ordering::Relaxed).to_string(),
        ),
        ("rdb_current_bgsave_time_sec", current.to_string()),
        ("rdb_saves", l(&s.saves).to_string()),
        ("rdb_last_cow_size", "0".into()),
        ("rdb_last_load_keys_expired", l(&s.last_load_keys_expired).to_string()),
        ("rdb_last_load_keys_loaded", l(&s.last_load_keys_loaded).to_string()),
        (
            "ferrokv_snapshot_cut_in_progress",
            (cut::in_progress(&state.db) as u8).to_string(),
        ),
    ];
    for (k, v) in fields {
        let _ = write!(out, "{k}:{v}\r\n");
    }
}

/// Load `dir/dbfilename` at startup, if present, recording the `INFO`
/// load fields. The caller refuses to start on error: serving a partial
/// dataset as if it were whole would be silent data loss.
pub fn load_at_startup(state: &State) -> Result<Option<snapshot::LoadInfo>, SnapshotError> {
    let path = state.config.snapshot_path();
    let s = &state.saves;
    s.loading.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    let r = snapshot::load_file(&path, &state.db);
    s.loading.store(false, Ordering::Relaxed);
    if let Ok(Some(info)) = &r {
        s.last_load_keys_loaded
            .store(info.keys - info.expired, Ordering::Relaxed);
        s.last_load_keys_expired.store(info.expired, Ordering::Relaxed);
        tracing::info!(
            path = %path.display(),
            keys = info.keys,
            expired = info.expired,
            offset = info.offset,
            ms = t0.elapsed().as_millis() as u64,
            "snapshot loaded"
        );
    }
    r
}
