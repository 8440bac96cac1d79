//! This node's cluster identity and held topology on disk.
//!
//! One small JSON file in the data directory (`<dir>/nodes.json` by default):
//!
//! ```json
//! {"version": 1, "myid": "<40 hex>", "topology": { ...wire format... } | null,
//!  "migrations": [{"slot": 42, "kind": "migrating", "peer": "<40 hex>", "cancelling": false}, ...]}
//! ```
//!
//! `migrations` (slot migration states, see [`super::migrate`]) may be absent:
//! files written before slot migration existed read as having none.
//!
//! The ID is generated once, on the first start in cluster mode, and kept for
//! the life of the data directory: the control plane addresses nodes by ID, so
//! a node that restarts must come back as the same member. The topology is
//! kept so that a restarted node resumes serving its slots at its last epoch
//! and keeps refusing older ones without waiting for the next push.
//!
//! Every write goes to a temp file that is fsynced, renamed over the old
//! file, and then the directory is fsynced: a crash leaves either the old or
//! the new file, never a torn one, and the rename itself survives power loss.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ClusterError;
use super::migrate::Record;
use super::topology::{Topology, is_node_id};

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    myid: String,
    topology: Option<Topology>,
    #[serde(default)]
    migrations: Vec<Record>,
}

/// What a node loads from its state file.
pub type Loaded = (NodeFile, Option<Topology>, Vec<Record>);

/// Where the state file is and whose it is.
#[derive(Debug)]
pub struct NodeFile {
    pub path: PathBuf,
    pub myid: String,
}

fn new_id() -> String {
    (0..40).map(|_| format!("{:x}", rand::random::<u8>() & 15)).collect()
}

impl NodeFile {
    /// Read `<dir>/<name>`, or create it with a fresh ID when it does not
    /// exist. A file that exists but cannot be parsed stops the start: a
    /// node that silently took a new identity would look like a stranger to
    /// the control plane and would forget its epoch.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Loaded, ClusterError> {
        let path = dir.join(name);
        let io = |what, source| ClusterError::Io {
            what,
            path: path.clone(),
            source,
        };
        match fs::read(&path) {
            Ok(bytes) => {
                let bad = |msg: String| ClusterError::BadFile {
                    path: path.clone(),
                    msg,
                };
                let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                if disk.version != VERSION {
                    return Err(bad(format!("unknown version {}", disk.version)));
                }
                if !is_node_id(&disk.myid) {
                    return Err(bad(format!("invalid node id '{}'", disk.myid)));
                }
                Ok((NodeFile { path, myid: disk.myid }, disk.topology, disk.migrations))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| io("create directory", e))?;
                let file = NodeFile { path, myid: new_id() };
                file.save(None, &[])?;
                tracing::info!(myid = %file.myid, path = %file.path.display(), "created cluster node identity");
                Ok((file, None, Vec::new()))
            }
            Err(e) => Err(io("read", e)),
        }
    }

    /// Atomically replace the file with this ID, `topology` and the slot
    /// migration states.
    pub fn save(&self, topology: Option<&Topology>, migrations: &[Record]) -> Result<(), ClusterError> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            version: u32,
            myid: &'a str,
            topology: Option<&'a Topology>,
            migrations: &'a [Record],
        }
        let io = |what, source| ClusterError::Io {
            what,
            path: self.path.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(&Borrowed {
            version: VERSION,
            myid: &self.myid,
            topology,
            migrations,
        })
        .map_err(|e| io("encode", std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(|e| io("create", e))?;
        f.write_all(&body).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("fsync", e))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(|e| io("rename", e))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync directory of", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("ferrokv-nodefile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (a, t, m) = NodeFile::load_or_create(&dir, "nodes.json").unwrap();
        assert!(t.is_none() && m.is_empty());
        assert!(is_node_id(&a.myid));
        let (b, _, _) = NodeFile::load_or_create(&dir, "nodes.json").unwrap();
        assert_eq!(a.myid, b.myid);
        // A file without `migrations` (written before slot migration) loads.
        fs::write(
            dir.join("nodes.json"),
            format!(r#"{{"version": 1, "myid": "{}", "topology": null}}"#, a.myid),
        )
        .unwrap();
        let (c, _, m) = NodeFile::load_or_create(&dir, "nodes.json").unwrap();
        assert!(c.myid == a.myid && m.is_empty());
        let r = Record {
            slot: 7,
            kind: super::super::migrate::Kind::Migrating,
            peer: a.myid.clone(),
            cancelling: true,
        };
        c.save(None, std::slice::from_ref(&r)).unwrap();
        let (_, _, m) = NodeFile::load_or_create(&dir, "nodes.json").unwrap();
        assert_eq!(m, vec![r]);
        fs::write(dir.join("nodes.json"), b"{garbage").unwrap();
        assert!(matches!(
            NodeFile::load_or_create(&dir, "nodes.json"),
            Err(ClusterError::BadFile { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
