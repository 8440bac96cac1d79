//! Background processes of the sandbox, tracked by PID files so that a later command (`down`,
//! `status`, another test binary) finds and stops exactly the processes `up` started.
//!
//! Why PID files and not a supervisor process: the control plane must outlive the command or
//! test binary that started it (one control plane serves a whole test run), and `down` must stop
//! it by PID, never by name, because other sandboxes may run on the same machine. A PID file
//! records the program path too, and a PID only counts as ours while `/proc/<pid>/cmdline` still
//! starts with that path: a recycled PID is never signalled.
//!
//! A PID file also records a fingerprint of the configuration the process was started with
//! (its program and the program's modification time, arguments and the contents of the files
//! it was told to read, such as certificates), so that `up` restarts exactly the processes whose configuration changed since
//! and leaves the others running.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("failed to write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("failed to start {program}")]
    Spawn { program: PathBuf, source: std::io::Error },
    #[error("failed to signal {name} (pid {pid})")]
    Signal { name: String, pid: u32, source: nix::Error },
    #[error("{name} (pid {pid}) did not exit after SIGKILL")]
    Unkillable { name: String, pid: u32 },
}

/// The PID files and logs of one sandbox's processes.
#[derive(Debug, Clone)]
pub struct Daemons {
    pids: PathBuf,
    logs: PathBuf,
}

impl Daemons {
    pub fn new(pids: PathBuf, logs: PathBuf) -> Self {
        Self { pids, logs }
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    fn pid_path(&self, name: &str) -> PathBuf {
        self.pids.join(format!("{name}.pid"))
    }

    /// Start `program` detached: in its own process group (a Ctrl-C of the starting command
    /// does not reach it), stdin closed, stdout and stderr appended to `<logs>/<name>.log`.
    /// `fingerprint` is recorded for [`Daemons::fingerprint`].
    pub fn spawn(&self, name: &str, program: &Path, args: &[String], fingerprint: &str) -> Result<u32, DaemonError> {
        for dir in [&self.pids, &self.logs] {
            fs::create_dir_all(dir).map_err(|source| DaemonError::Write {
                path: dir.clone(),
                source,
            })?;
        }
        let log_path = self.log_path(name);
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|source| DaemonError::Write {
                    path: log_path.clone(),
                    source,
                })
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?)
            .process_group(0)
            .spawn()
            .map_err(|source| DaemonError::Spawn {
                program: program.to_path_buf(),
                source,
            })?;
        let pid = child.id();
        // Reap the child if it exits while the starting process still runs (a test binary), so
        // that a dead process never lingers as a zombie that looks alive.
        std::thread::spawn(move || child.wait());
        let pid_path = self.pid_path(name);
        fs::write(&pid_path, format!("{pid}\n{}\n{fingerprint}\n", program.display()))
            .map_err(|source| DaemonError::Write { path: pid_path, source })?;
        Ok(pid)
    }

    /// The PID of `name` if the process it recorded is still alive and still runs its program.
    pub fn running(&self, name: &str) -> Option<u32> {
        let recorded = fs::read_to_string(self.pid_path(name)).ok()?;
        let mut lines = recorded.lines();
        let pid: u32 = lines.next()?.trim().parse().ok()?;
        let program = lines.next()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let argv0 = cmdline.split(|b| *b == 0).next()?;
        if argv0 != program.as_bytes() {
            return None;
        }
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesized command name, which may itself contain spaces.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        (state != "Z" && state != "X").then_some(pid)
    }

    /// The configuration fingerprint `name` was started with (empty for a PID file written by an
    /// older version, which then counts as changed).
    pub fn fingerprint(&self, name: &str) -> String {
        fs::read_to_string(self.pid_path(name))
            .ok()
            .and_then(|recorded| recorded.lines().nth(2).map(str::to_owned))
            .unwrap_or_default()
    }

    /// Stop `name`: SIGTERM, up to `grace` for it to exit, then SIGKILL. A process that is not
    /// running (or no longer ours) is left alone.
    pub fn stop(&self, name: &str, grace: Duration) -> Result<bool, DaemonError> {
        let Some(pid) = self.running(name) else {
            let _ = fs::remove_file(self.pid_path(name));
            return Ok(false);
        };
        let signal = |sig| {
            kill(Pid::from_raw(pid as i32), sig).map_err(|source| DaemonError::Signal {
                name: name.to_string(),
                pid,
                source,
            })
        };
        signal(Signal::SIGTERM)?;
        if !self.wait_gone(name, grace) {
            tracing::warn!(name, pid, "did not exit after SIGTERM, sending SIGKILL");
            signal(Signal::SIGKILL)?;
            if !self.wait_gone(name, Duration::from_secs(5)) {
                return Err(DaemonError::Unkillable {
                    name: name.to_string(),
                    pid,
                });
            }
        }
        let _ = fs::remove_file(self.pid_path(name));
        Ok(true)
    }

    fn wait_gone(&self, name: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.running(name).is_none() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `bytes` of a process's log, for error messages.
    pub fn log_tail(&self, name: &str, bytes: u64) -> String {
        let Ok(mut file) = File::open(self.log_path(name)) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut buf = Vec::new();
        let _ = file.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// A stable digest (64-bit FNV-1a, hex) of a configuration: stable across Rust versions, unlike
/// `DefaultHasher`, so a toolchain update does not restart every component.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        // A separator byte that cannot occur in arguments keeps ["ab", "c"] apart from ["a", "bc"].
        for byte in part.iter().chain(std::iter::once(&0u8)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_separates_parts() {
        assert_eq!(fingerprint(&[b"a", b"b"]), fingerprint(&[b"a", b"b"]));
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
    }
}
