//! BGREWRITEAOF: compact the log into a new base snapshot, without blocking
//! clients.
//!
//! 1. Ask the writer to start a new segment at offset Y. Every older segment
//!    now ends at or before Y.
//! 2. Take a point-in-time cut of the dataset at offset X ≥ Y (the cut pauses
//!    writes only for an instant; the snapshot is written on this thread) and
//!    write it as `base-X.fkv` (temp file, fsync, rename, directory fsync).
//! 3. Switch the manifest to "base X, segments from Y on" atomically.
//! 4. Delete the segments before Y and the old base.
//!
//! Why segments before the new base may go: base X holds the whole effect of
//! every byte before X, and replay skips the bytes of the segment at Y that
//! lie before X. A crash before step 3 leaves the old manifest, whose base and
//! segments are all still there (a stray new base file is harmless); a crash
//! between 3 and 4 leaves old segments that startup sees lie wholly before
//! the first listed segment and deletes. Closed segments are never modified,
//! only deleted after the manifest stopped referring to them (a later issue
//! ships them to S3 before that).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::segment;
use crate::state::State;

/// Start a rewrite on its own thread. Errors are Redis' texts (without `ERR`).
pub fn start(state: &State) -> Result<(), String> {
    let aof = &state.aof;
    // A poisoned log (failed write/fsync) is restarted from a new base
    // instead: the old one has a hole.
    let poisoned = aof.is_poisoned() && state.config.appendonly.load(Ordering::Relaxed);
    if !aof.enabled.load(Ordering::Acquire) && !poisoned {
        return Err("append only file is off: CONFIG SET appendonly yes first".into());
    }
    let me = aof
        .setup
        .lock()
        .as_ref()
        .and_then(|(_, w)| w.upgrade())
        .ok_or("server is shutting down")?;
    if aof.rewrite_in_progress.swap(true, Ordering::AcqRel) {
        return Err("Background append only file rewriting already in progress".into());
    }
    let spawned = std::thread::Builder::new().name("aof-rewrite".into()).spawn(move || {
        let started = Instant::now();
        let result = if poisoned {
            super::rebase_now(&me).map(|()| me.db.wlog.offset())
        } else {
            run(&me)
        };
        let aof = &me.aof;
        aof.last_rewrite_secs
            .store(started.elapsed().as_secs(), Ordering::Relaxed);
        match result {
            Ok(offset) => {
                aof.rewrites.fetch_add(1, Ordering::Relaxed);
                aof.last_rewrite_ok.store(true, Ordering::Relaxed);
                tracing::info!(
                    offset,
                    ms = started.elapsed().as_millis() as u64,
                    "append-only log rewritten"
                );
            }
            Err(e) => {
                aof.last_rewrite_ok.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "append-only log rewrite failed");
            }
        }
        aof.rewrite_in_progress.store(false, Ordering::Release);
    });
    if let Err(e) = spawned {
        aof.rewrite_in_progress.store(false, Ordering::Release);
        return Err(format!("failed to start the rewrite: {e}"));
    }
    Ok(())
}

/// Wait (bounded) for the writer to start a new segment; its start offset.
fn rotate(state: &State) -> Result<u64, String> {
    let aof = &state.aof;
    aof.rotate_now.store(true, Ordering::Release);
    state.db.wlog.aof_wake.notify_all();
    let deadline = Instant::now() + Duration::from_secs(30);
    while aof.rotate_now.load(Ordering::Acquire) {
        if Instant::now() > deadline || !aof.enabled.load(Ordering::Acquire) {
            return Err("the log writer did not rotate its segment".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(e) = aof.write_error() {
        return Err(e);
    }
    Ok(aof.segment_start.load(Ordering::Acquire))
}

fn run(state: &Arc<State>) -> Result<u64, String> {
    let aof = &state.aof;
    let dir = aof.dir().ok_or("append only file is off")?;
    let y = rotate(state)?;
    let (x, name) = super::write_base_snapshot(state, &dir)?;
    if x < y {
        return Err(format!("snapshot offset {x} is before the new segment at {y}"));
    }
    let path = dir.join(&name);
    let base_size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let (old_base, old_segments) = {
        let mut files = aof.files.lock();
        let files = files.as_mut().ok_or("append only file is off")?;
        let mut m = files.manifest.clone();
        let old_base = m.base_file.replace(name.clone());
        m.base_offset = x;
        let old: Vec<u64> = m.segments.iter().copied().filter(|&s| s < y).collect();
        m.segments.retain(|&s| s >= y);
        m.store(&dir)
            .map_err(|e| format!("failed to write the manifest: {e}"))?;
        files.manifest = m;
        (old_base.filter(|b| *b != name), old)
    };
    for s in old_segments {
        let p = dir.join(segment::file_name(s));
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!(file = %p.display(), error = %e, "could not remove an old segment");
        }
    }
    if let Some(b) = old_base {
        let _ = std::fs::remove_file(dir.join(b));
    }
    aof.base_size.store(base_size, Ordering::Relaxed);
    let size = super::log_size(state, &dir);
    aof.current_size.store(size, Ordering::Relaxed);
    aof.rewrite_base_size.store(size, Ordering::Relaxed);
    Ok(x)
}
