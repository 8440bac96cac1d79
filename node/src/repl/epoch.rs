//! The persisted config epoch: the newest control-plane term this node has
//! accepted. It only grows, and it must survive restarts: a deposed primary
//! that restarts with a forgotten epoch would accept stale role commands and
//! could follow, or act as, a primary the control plane already replaced.
//!
//! Stored as `<dir>/config-epoch` (one decimal line), written to a temporary
//! file, fsynced, renamed over the old one and the directory fsynced, so a
//! crash leaves either the old or the new value, never a torn one. Without
//! `--dir` the epoch lives in memory only (tests, throwaway nodes).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

pub const FILE_NAME: &str = "config-epoch";

#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error("failed to read config epoch file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config epoch file {path} does not hold a number: {text:?}")]
    Parse { path: PathBuf, text: String },
}

pub struct Epoch {
    value: AtomicU64,
    path: Option<PathBuf>,
    /// Serializes writers so that the file never goes backwards.
    write: Mutex<()>,
}

impl Epoch {
    /// An epoch kept in memory only.
    pub fn in_memory() -> Epoch {
        Epoch {
            value: AtomicU64::new(0),
            path: None,
            write: Mutex::new(()),
        }
    }

    /// Load the epoch from `dir` (0 when the file does not exist yet). A file
    /// that exists but cannot be read or parsed stops the node: guessing 0
    /// would undo the fencing the file exists for.
    pub fn load(dir: Option<PathBuf>) -> Result<Epoch, EpochError> {
        let Some(dir) = dir else {
            return Ok(Epoch::in_memory());
        };
        let path = dir.join(FILE_NAME);
        let value = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map_err(|_| EpochError::Parse {
                path: path.clone(),
                text: text.chars().take(64).collect(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(EpochError::Read { path, source }),
        };
        Ok(Epoch {
            value: AtomicU64::new(value),
            path: Some(path),
            write: Mutex::new(()),
        })
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Raise the epoch to `n` (no-op if it is not newer). Persisted before it
    /// takes effect, so an acknowledged role change is never forgotten.
    pub fn raise(&self, n: u64) -> std::io::Result<()> {
        let _g = self.write.lock();
        if n <= self.get() {
            return Ok(());
        }
        if let Some(path) = &self.path {
            write_durably(path, format!("{n}\n").as_bytes())?;
        }
        self.value.store(n, Ordering::Release);
        tracing::info!(epoch = n, "config epoch raised");
        Ok(())
    }
}

/// temp file + fsync + rename + directory fsync.
fn write_durably(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_survives_reload_and_never_goes_back() {
        let dir = std::env::temp_dir().join(format!(
            "ferrokv-epoch-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let e = Epoch::load(Some(dir.clone())).unwrap();
        assert_eq!(e.get(), 0);
        e.raise(7).unwrap();
        e.raise(3).unwrap();
        assert_eq!(e.get(), 7);
        let again = Epoch::load(Some(dir.clone())).unwrap();
        assert_eq!(again.get(), 7);
        std::fs::write(dir.join(FILE_NAME), "garbage").unwrap();
        assert!(Epoch::load(Some(dir.clone())).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
