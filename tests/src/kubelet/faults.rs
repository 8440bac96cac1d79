//! Fault injection into sandbox Pods: crash, freeze, cut off the network.
//!
//! The kubelet keeps one record file per live Pod (`<kubelet dir>/run/<namespace>_<name>.json`:
//! its network and the PID of each running container), rewritten whenever a container starts.
//! [`Faults`] reads those records, so a test injects faults from its own process into the Pods
//! of the sandbox's kubelet (a process `ferrokv-sandbox up` started): the faults are real
//! signals and real link state, which the kubelet then notices the way a kubelet would (a process that died, a
//! probe that fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::netns::{self, PodNetwork};
use super::process;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no running pod {namespace}/{name} in this sandbox ({path}): {source}")]
    NoRecord {
        namespace: String,
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt pod record {path}: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("pod {0} has no running container {1:?}")]
    NoContainer(String, String),
    #[error("pod {0} has no network")]
    NoNetwork(String),
    #[error("failed to signal pod {0}: {1}")]
    Signal(String, #[source] nix::Error),
    #[error("failed to change the link of pod {0}: {1}")]
    Network(String, #[source] netns::Error),
    #[error("failed to write pod record {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the kubelet publishes about a live Pod.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub network: Option<PodNetwork>,
    /// Running containers (init containers included while they run) → PID.
    pub containers: BTreeMap<String, i32>,
}

fn record_path(records_dir: &Path, namespace: &str, name: &str) -> PathBuf {
    records_dir.join(format!("{namespace}_{name}.json"))
}

/// Writes a record atomically (write then rename), so a reader never sees half a file.
pub fn write_record(records_dir: &Path, record: &PodRecord) -> Result<(), Error> {
    let path = record_path(records_dir, &record.namespace, &record.name);
    let tmp = path.with_extension(format!("json.{}", record.uid));
    let body = serde_json::to_vec_pretty(record).map_err(|source| Error::Corrupt {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&tmp, body).map_err(|source| Error::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })
}

/// Removes a record, unless it already belongs to a newer Pod of the same name (a StatefulSet
/// Pod recreated while the old one was still being torn down).
pub fn remove_record(records_dir: &Path, namespace: &str, name: &str, uid: &str) {
    let path = record_path(records_dir, namespace, name);
    let owned = std::fs::read(&path)
        .ok()
        .and_then(|body| serde_json::from_slice::<PodRecord>(&body).ok())
        .is_some_and(|r| r.uid == uid);
    if owned {
        let _ = std::fs::remove_file(path);
    }
}

/// Fault injection for the Pods of one sandbox.
#[derive(Clone, Debug)]
pub struct Faults {
    records_dir: PathBuf,
}

impl Faults {
    pub fn new(sandbox_dir: &Path) -> Self {
        Self {
            records_dir: sandbox_dir.join("run"),
        }
    }

    /// The live record of a Pod.
    pub fn record(&self, namespace: &str, name: &str) -> Result<PodRecord, Error> {
        let path = record_path(&self.records_dir, namespace, name);
        let body = std::fs::read(&path).map_err(|source| Error::NoRecord {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&body).map_err(|source| Error::Corrupt { path, source })
    }

    fn signal(&self, namespace: &str, name: &str, container: Option<&str>, signal: Signal) -> Result<(), Error> {
        let record = self.record(namespace, name)?;
        let pod = format!("{namespace}/{name}");
        let pids: Vec<i32> = match container {
            Some(c) => vec![
                *record
                    .containers
                    .get(c)
                    .ok_or_else(|| Error::NoContainer(pod.clone(), c.to_owned()))?,
            ],
            None => record.containers.values().copied().collect(),
        };
        if pids.is_empty() {
            return Err(Error::NoContainer(pod, "*".to_owned()));
        }
        for pid in pids {
            process::signal(pid, signal).map_err(|err| Error::Signal(pod.clone(), err))?;
        }
        Ok(())
    }

    /// Kills a container (all of the Pod's when `container` is `None`) with SIGKILL, as an OOM
    /// kill or a crash would: no chance to clean up.
    pub fn crash(&self, namespace: &str, name: &str, container: Option<&str>) -> Result<(), Error> {
        self.signal(namespace, name, container, Signal::SIGKILL)
    }

    /// Stops a Pod's processes (SIGSTOP): alive, holding their sockets, answering nothing.
    pub fn freeze(&self, namespace: &str, name: &str) -> Result<(), Error> {
        self.signal(namespace, name, None, Signal::SIGSTOP)
    }

    /// Resumes a frozen Pod (SIGCONT).
    pub fn thaw(&self, namespace: &str, name: &str) -> Result<(), Error> {
        self.signal(namespace, name, None, Signal::SIGCONT)
    }

    /// Cuts the Pod off the network: its host-side veth goes down, so neither the host nor other
    /// Pods reach it and it reaches nobody, while its processes keep running.
    pub async fn cut_network(&self, namespace: &str, name: &str) -> Result<(), Error> {
        self.set_link(namespace, name, false).await
    }

    /// Undoes [`Faults::cut_network`].
    pub async fn restore_network(&self, namespace: &str, name: &str) -> Result<(), Error> {
        self.set_link(namespace, name, true).await
    }

    async fn set_link(&self, namespace: &str, name: &str, up: bool) -> Result<(), Error> {
        let record = self.record(namespace, name)?;
        let pod = format!("{namespace}/{name}");
        let network = record.network.ok_or_else(|| Error::NoNetwork(pod.clone()))?;
        netns::set_link(&network.veth, up)
            .await
            .map_err(|err| Error::Network(pod, err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_removal_respects_uid() {
        let dir = std::env::temp_dir().join(format!("kubelet-faults-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let record = PodRecord {
            namespace: "ns".into(),
            name: "kv-0".into(),
            uid: "new".into(),
            network: Some(PodNetwork {
                netns: "fkv-2".into(),
                veth: "fkv2".into(),
                ip: "10.244.0.2".parse().unwrap(),
            }),
            containers: [("kv".to_owned(), 42)].into(),
        };
        write_record(&dir.join("run"), &record).unwrap();
        let faults = Faults::new(&dir);
        assert_eq!(faults.record("ns", "kv-0").unwrap(), record);
        remove_record(&dir.join("run"), "ns", "kv-0", "old");
        assert!(
            faults.record("ns", "kv-0").is_ok(),
            "an older pod's teardown keeps the new record"
        );
        remove_record(&dir.join("run"), "ns", "kv-0", "new");
        assert!(matches!(faults.record("ns", "kv-0"), Err(Error::NoRecord { .. })));
        assert!(matches!(faults.crash("ns", "kv-0", None), Err(Error::NoRecord { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
