//! A container as a process: started in its Pod's network namespace, in a private mount and
//! UTS namespace of its own, with the Pod's volumes bind-mounted at their mount paths.
//!
//! The launch chain is `setpriv --pdeathsig KILL -- ip netns exec NS unshare --uts -- bash -c
//! MOUNT_SCRIPT ...`:
//! - `setpriv --pdeathsig KILL` makes the kernel kill the container if the kubelet dies without
//!   stopping it (SIGKILLed by a `down` that lost patience): no orphan keeps a port or a volume;
//! - `ip netns exec` enters the Pod's network namespace and already unshares a mount namespace
//!   whose mounts are slaves of the host's, so binds made inside never leak to the host;
//! - `unshare --uts` gives the container its own hostname (the Pod name, as in a real Pod);
//! - the script opens every volume source and the program first (a mount may cover their paths,
//!   as a volume covers an image's files), creates the mount points (empty directories or files
//!   on the host's root if missing: the only trace a container leaves outside the sandbox dir),
//!   bind-mounts each volume (remounting read-only ones), `cd`s to the working dir and `exec`s
//!   the program through its descriptor (argv[0] stays the name the spec gave).
//!
//! Every step `exec`s the next, so the PID the kubelet spawned *is* the container's process and
//! signals reach it directly; it also leads its own process group, so a container that forks
//! is stopped as a whole. Paths and arguments travel as positional parameters, never spliced
//! into the script, so nothing in a Pod spec can inject shell syntax.
//!
//! Doing this with `setns`/`mount` from Rust would need a `pre_exec` hook, which is unsafe code;
//! the workspace forbids it, and iproute2 + util-linux are the reference tools anyway.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::images::Program;
use super::mounts::Bind;

/// Exit code of a container whose mounts or working dir could not be set up.
pub const SETUP_FAILED_EXIT: i32 = 111;

const MOUNT_SCRIPT: &str = r#"
# Every source and the program are opened before anything is mounted, and used through their
# descriptors: a mount (an emptyDir on /tmp, a volume on /work) may cover the path of a later
# source or of the program itself, as it would in a container.
binds=()
while [ "$1" != "--" ]; do
  exec {fd}<"$1" || { echo "sandbox: cannot open volume source $1" >&2; exit 111; }
  binds+=("$fd" "$2" "$3")
  shift 3
done
shift
name="$1" dir="$2" prog="$3"
shift 3
path=$(command -v -- "$prog") || { echo "sandbox: $prog: not found" >&2; exit 127; }
exec {pfd}<"$path" || { echo "sandbox: cannot open $path" >&2; exit 127; }
for ((i = 0; i < ${#binds[@]}; i += 3)); do
  fd=${binds[i]} target=${binds[i+1]} mode=${binds[i+2]}
  if [ -d "/proc/self/fd/$fd" ]; then
    mkdir -p "$target" || exit 111
  else
    mkdir -p "$(dirname "$target")" || exit 111
    [ -e "$target" ] || : > "$target" || exit 111
  fi
  mount -c --bind "/proc/self/fd/$fd" "$target" || exit 111
  if [ "$mode" = ro ]; then mount -c -o remount,bind,ro "$target" || exit 111; fi
  exec {fd}<&-
done
hostname "$name" 2>/dev/null
cd "$dir" || exit 111
exec -a "$prog" "/proc/self/fd/$pfd" "$@"
"#;

/// Default `PATH` of a container, as in most images.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to open log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("started process has no pid")]
    NoPid,
}

/// Everything a container process needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub program: Program,
    pub env: Vec<(String, String)>,
    pub netns: String,
    pub hostname: String,
    pub binds: Vec<Bind>,
    pub working_dir: PathBuf,
}

/// The argv of the launch chain.
pub fn command_line(launch: &Launch) -> Vec<OsString> {
    let mut argv: Vec<OsString> = [
        "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        "ip",
        "netns",
        "exec",
        &launch.netns,
        "unshare",
        "--uts",
        "--",
        "bash",
        "-c",
        MOUNT_SCRIPT,
        "sandbox-mount",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    for bind in &launch.binds {
        argv.push(bind.source.clone().into());
        argv.push(bind.target.clone().into());
        argv.push(if bind.read_only { "ro" } else { "rw" }.into());
    }
    argv.push("--".into());
    argv.push(launch.hostname.clone().into());
    argv.push(launch.working_dir.clone().into());
    argv.push(launch.program.path.clone().into());
    argv.extend(launch.program.args.iter().map(OsString::from));
    argv
}

/// A started container process.
pub struct Process {
    pub child: tokio::process::Child,
    pub pid: i32,
}

/// Starts a container process, its output appended to `log`.
pub fn spawn(launch: &Launch, log: &Path) -> Result<Process, Error> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Log {
            path: log.to_owned(),
            source,
        })?;
    }
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| Error::Log {
                path: log.to_owned(),
                source,
            })
    };
    let (stdout, stderr) = (open()?, open()?);
    let argv = command_line(launch);
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        // A backstop only: the kubelet stops containers itself, but if its task is dropped the
        // process must not outlive it.
        .kill_on_drop(true);
    let child = command.spawn().map_err(|source| Error::Spawn {
        program: launch.program.path.display().to_string(),
        source,
    })?;
    let pid = child.id().ok_or(Error::NoPid)?;
    let pid = i32::try_from(pid).map_err(|_| Error::NoPid)?;
    Ok(Process { child, pid })
}

/// Sends `signal` to the container's process group. A group that is already gone is not an
/// error: the container exited on its own meanwhile.
pub fn signal(pid: i32, signal: Signal) -> Result<(), nix::Error> {
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(err) => Err(err),
    }
}

/// Stops a container as kubelet does: SIGTERM to the group, up to `grace` to exit, then SIGKILL.
/// A frozen (SIGSTOPped) container is continued so that it can act on SIGTERM.
pub async fn stop(process: &mut Process, grace: Duration) -> ExitStatus {
    if let Ok(Some(status)) = process.child.try_wait() {
        return status;
    }
    let _ = signal(process.pid, Signal::SIGTERM);
    let _ = signal(process.pid, Signal::SIGCONT);
    if let Ok(Ok(status)) = tokio::time::timeout(grace, process.child.wait()).await {
        let _ = signal(process.pid, Signal::SIGKILL);
        return status;
    }
    let _ = signal(process.pid, Signal::SIGKILL);
    match process.child.wait().await {
        Ok(status) => status,
        Err(_) => ExitStatus::from_raw(Signal::SIGKILL as i32),
    }
}

/// A container's exit code: its own, or 128 + the signal that killed it (as container
/// runtimes report, e.g. 137 for SIGKILL).
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs a command inside a running container (its network, mount and UTS namespaces): the exec
/// probe. Returns the exit code, or `None` when it did not finish within `timeout`.
pub async fn exec_in(
    pid: i32,
    program: &Program,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<Option<i32>, Error> {
    let mut command = tokio::process::Command::new("nsenter");
    command
        .arg("-t")
        .arg(pid.to_string())
        .args(["-m", "-n", "-u", "--"])
        .arg(&program.path)
        .args(&program.args)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        program: program.path.display().to_string(),
        source,
    })?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Ok(Some(exit_code(status))),
        Ok(Err(source)) => Err(Error::Spawn {
            program: program.path.display().to_string(),
            source,
        }),
        Err(_) => {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                let _ = signal(pid, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_passes_everything_as_arguments() {
        let launch = Launch {
            program: Program {
                path: "/bin/app".into(),
                args: vec!["--x=$(nope)".into(), "a b".into()],
            },
            env: vec![],
            netns: "fkv-2".into(),
            hostname: "kv-0".into(),
            binds: vec![
                Bind {
                    source: "/s/v1".into(),
                    target: "/data".into(),
                    read_only: false,
                },
                Bind {
                    source: "/s/cfg".into(),
                    target: "/etc/app".into(),
                    read_only: true,
                },
            ],
            working_dir: "/data".into(),
        };
        let argv: Vec<String> = command_line(&launch)
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            &argv[..11],
            &[
                "setpriv",
                "--pdeathsig",
                "KILL",
                "--",
                "ip",
                "netns",
                "exec",
                "fkv-2",
                "unshare",
                "--uts",
                "--"
            ]
        );
        assert_eq!(argv[13], MOUNT_SCRIPT);
        assert_eq!(
            &argv[14..],
            &[
                "sandbox-mount",
                "/s/v1",
                "/data",
                "rw",
                "/s/cfg",
                "/etc/app",
                "ro",
                "--",
                "kv-0",
                "/data",
                "/bin/app",
                "--x=$(nope)",
                "a b"
            ]
        );
    }

    #[test]
    fn exit_codes_of_signals_are_128_plus() {
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
    }
}
