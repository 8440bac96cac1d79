//! Driving a cluster from outside: what the operator does from Kubernetes and
//! what tests and benchmarks do on loopback.
//!
//! - [`even_ranges`] / [`build_topology`]: a balanced slot layout for N shards,
//!   each a primary plus replicas (pure functions, unit-tested).
//! - [`Conn`]: a minimal async RESP client (request = array of bulk strings,
//!   reply = [`Value`]). It is small on purpose: the operator needs a handful
//!   of admin commands, not a full client and its dependency tree.
//! - [`node_id`], [`push_topology`]: ask a node its ID; push a topology to
//!   every node it names (the new primaries first, so a replica never follows
//!   a node that does not yet know it is primary).
//! - [`LocalCluster`]: spawn `ferrokv-node` processes on loopback ports, form
//!   a cluster, and kill them by PID when done (or dropped).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::topology::{Node, Shard, Topology};
use crate::slot::SLOTS;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("failed to connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("i/o error talking to {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("protocol error from {addr}: {msg}")]
    Protocol { addr: String, msg: String },
    #[error("{addr} answered {cmd} with an error: {msg}")]
    Refused { addr: String, cmd: String, msg: String },
    #[error("failed to start node {bin}: {source}")]
    Spawn { bin: PathBuf, source: std::io::Error },
    #[error("node {0} exited or never said where it listens")]
    NoAddress(PathBuf),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

/// One RESP2 connection to a node.
pub struct Conn {
    addr: String,
    io: BufReader<TcpStream>,
}

/// How long one admin request may take before the driver gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Conn {
    pub async fn connect(addr: &str) -> Result<Conn, DriverError> {
        let s = TcpStream::connect(addr).await.map_err(|source| DriverError::Connect {
            addr: addr.to_string(),
            source,
        })?;
        let _ = s.set_nodelay(true);
        Ok(Conn {
            addr: addr.to_string(),
            io: BufReader::new(s),
        })
    }

    /// Send one command, read its reply (an error reply is `Ok(Value::Error)`).
    pub async fn request(&mut self, args: &[&[u8]]) -> Result<Value, DriverError> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        let addr = self.addr.clone();
        let io_err = |source| DriverError::Io {
            addr: addr.clone(),
            source,
        };
        let fut = async {
            self.io.get_mut().write_all(&out).await.map_err(io_err)?;
            self.read_value().await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| DriverError::Timeout(REQUEST_TIMEOUT))?
    }

    /// Like [`Conn::request`], but an error reply becomes `Err(Refused)`.
    pub async fn ok(&mut self, args: &[&[u8]]) -> Result<Value, DriverError> {
        match self.request(args).await? {
            Value::Error(msg) => Err(DriverError::Refused {
                addr: self.addr.clone(),
                cmd: String::from_utf8_lossy(args.first().copied().unwrap_or_default()).into_owned(),
                msg,
            }),
            v => Ok(v),
        }
    }

    fn protocol(&self, msg: impl Into<String>) -> DriverError {
        DriverError::Protocol {
            addr: self.addr.clone(),
            msg: msg.into(),
        }
    }

    async fn line(&mut self) -> Result<String, DriverError> {
        let mut line = String::new();
        let n = self.io.read_line(&mut line).await.map_err(|source| DriverError::Io {
            addr: self.addr.clone(),
            source,
        })?;
        if n == 0 || !line.ends_with("\r\n") {
            return Err(self.protocol("connection closed mid-reply"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_value(&mut self) -> std::pin::Pin<Box<dyn Future<Output = Result<Value, DriverError>> + Send + '_>> {
        Box::pin(async move {
            let line = self.line().await?;
            let (kind, rest) = line.split_at(line.len().min(1));
            let int = |s: &str| s.parse::<i64>().map_err(|_| self.protocol(format!("bad length '{s}'")));
            match kind {
                "+" => Ok(Value::Simple(rest.to_string())),
                "-" => Ok(Value::Error(rest.to_string())),
                ":" => Ok(Value::Int(int(rest)?)),
                "$" => {
                    let n = int(rest)?;
                    if n < 0 {
                        return Ok(Value::Nil);
                    }
                    let mut buf = vec![0; n as usize + 2];
                    self.io.read_exact(&mut buf).await.map_err(|source| DriverError::Io {
                        addr: self.addr.clone(),
                        source,
                    })?;
                    buf.truncate(n as usize);
                    Ok(Value::Bulk(buf))
                }
                "*" => {
                    let n = int(rest)?;
                    if n < 0 {
                        return Ok(Value::Nil);
                    }
                    let mut items = Vec::with_capacity(n.min(1024) as usize);
                    for _ in 0..n {
                        items.push(self.read_value().await?);
                    }
                    Ok(Value::Array(items))
                }
                _ => Err(self.protocol(format!("unexpected reply line '{line}'"))),
            }
        })
    }
}

/// Slot ranges of `n` shards, as even as 16384 allows (the first shards get
/// one slot more when it does not divide).
pub fn even_ranges(n: usize) -> Vec<[u16; 2]> {
    let n = n.max(1);
    (0..n)
        .map(|i| [(i * SLOTS / n) as u16, ((i + 1) * SLOTS / n - 1) as u16])
        .collect()
}

/// A topology for `shards`, each listed primary first, with [`even_ranges`].
pub fn build_topology(epoch: u64, shards: &[Vec<Node>]) -> Topology {
    let ranges = even_ranges(shards.len());
    Topology {
        epoch,
        nodes: shards.iter().flatten().cloned().collect(),
        shards: shards
            .iter()
            .zip(ranges)
            .filter_map(|(members, r)| {
                let (primary, replicas) = members.split_first()?;
                Some(Shard {
                    slots: vec![r],
                    primary: primary.id.clone(),
                    replicas: replicas.iter().map(|n| n.id.clone()).collect(),
                })
            })
            .collect(),
    }
}

/// The node's cluster ID (`CLUSTER MYID`).
pub async fn node_id(addr: &str) -> Result<String, DriverError> {
    let mut c = Conn::connect(addr).await?;
    match c.ok(&[b"CLUSTER", b"MYID"]).await? {
        Value::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        v => Err(c.protocol(format!("unexpected CLUSTER MYID reply {v:?}"))),
    }
}

/// The topology a node holds (`CLUSTER GETTOPOLOGY`), `None` before its first.
pub async fn held_topology(addr: &str) -> Result<Option<Topology>, DriverError> {
    let mut c = Conn::connect(addr).await?;
    match c.ok(&[b"CLUSTER", b"GETTOPOLOGY"]).await? {
        Value::Nil => Ok(None),
        Value::Bulk(b) => Topology::from_json(&b).map(Some).map_err(|e| c.protocol(e.to_string())),
        v => Err(c.protocol(format!("unexpected CLUSTER GETTOPOLOGY reply {v:?}"))),
    }
}

/// Push `t` to every node it names, primaries first. Stops at the first node
/// that refuses: the caller decides whether to retry (a push is idempotent
/// for an unchanged topology at the same epoch).
pub async fn push_topology(t: &Topology) -> Result<(), DriverError> {
    let payload = t.to_json();
    let epoch = t.epoch.to_string();
    let mut order: Vec<&Node> = Vec::with_capacity(t.nodes.len());
    order.extend(t.nodes.iter().filter(|n| t.shards.iter().any(|s| s.primary == n.id)));
    order.extend(t.nodes.iter().filter(|n| t.shards.iter().all(|s| s.primary != n.id)));
    for n in order {
        let mut c = Conn::connect(&format!("{}:{}", n.ip, n.port)).await?;
        c.ok(&[b"CLUSTER", b"SETTOPOLOGY", epoch.as_bytes(), payload.as_bytes()])
            .await?;
    }
    Ok(())
}

/// One `ferrokv-node` process of a [`LocalCluster`].
pub struct LocalNode {
    pub addr: SocketAddr,
    pub id: String,
    pub dir: PathBuf,
    child: tokio::process::Child,
}

impl LocalNode {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Start one node in cluster mode on a free loopback port; its log goes to
/// `<dir>/node.log`.
pub async fn spawn_node(bin: &Path, dir: &Path, extra: &[&str]) -> Result<LocalNode, DriverError> {
    let spawn_err = |source| DriverError::Spawn {
        bin: bin.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(spawn_err)?;
    let log = std::fs::File::create(dir.join("node.log")).map_err(spawn_err)?;
    let mut child = tokio::process::Command::new(bin)
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--dir",
        ])
        .arg(dir)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| DriverError::NoAddress(bin.to_path_buf()))?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(a) = line.strip_prefix("ferrokv-node listening on ") {
                return a.trim().parse::<SocketAddr>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(addr) = found else {
        let _ = child.start_kill();
        return Err(DriverError::NoAddress(bin.to_path_buf()));
    };
    // Keep reading stdout so that a later print never hits a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let id = node_id(&addr.to_string()).await?;
    Ok(LocalNode {
        addr,
        id,
        dir: dir.to_path_buf(),
        child,
    })
}

/// A cluster of local node processes. Dropping it kills every process.
pub struct LocalCluster {
    /// `shards[s][0]` is shard `s`'s primary, the rest its replicas.
    pub shards: Vec<Vec<LocalNode>>,
    pub topology: Topology,
}

impl LocalCluster {
    /// Start `shards × (1 + replicas)` nodes under `dir` and push an even
    /// layout at epoch 1.
    pub async fn start(bin: &Path, dir: &Path, shards: usize, replicas: usize) -> Result<LocalCluster, DriverError> {
        let mut nodes = Vec::new();
        for s in 0..shards {
            let mut members = Vec::new();
            for r in 0..=replicas {
                members.push(spawn_node(bin, &dir.join(format!("shard{s}-{r}")), &[]).await?);
            }
            nodes.push(members);
        }
        let described: Vec<Vec<Node>> = nodes
            .iter()
            .map(|members| {
                members
                    .iter()
                    .map(|n| Node {
                        id: n.id.clone(),
                        ip: n.addr.ip().to_string(),
                        port: n.addr.port(),
                        cport: None,
                    })
                    .collect()
            })
            .collect();
        let topology = build_topology(1, &described);
        push_topology(&topology).await?;
        Ok(LocalCluster {
            shards: nodes,
            topology,
        })
    }

    /// Push a new topology (a failover, an ownership flip) to every node and
    /// keep it as the current one once all accepted it.
    pub async fn set_topology(&mut self, t: Topology) -> Result<(), DriverError> {
        push_topology(&t).await?;
        self.topology = t;
        Ok(())
    }

    /// Client addresses of every node (seed list for cluster clients).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.shards.iter().flatten().map(|n| n.addr).collect()
    }

    /// Kill every node by PID and wait for it to exit.
    pub async fn stop(mut self) {
        for n in self.shards.iter_mut().flatten() {
            let _ = n.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_ranges_cover_every_slot_once() {
        for n in [1, 2, 3, 5, 7, 16] {
            let r = even_ranges(n);
            assert_eq!(r[0][0], 0);
            assert_eq!(r[n - 1][1] as usize, SLOTS - 1);
            for w in r.windows(2) {
                assert_eq!(w[0][1] + 1, w[1][0]);
            }
        }
        assert_eq!(even_ranges(3), vec![[0, 5460], [5461, 10921], [10922, 16383]]);
    }

    #[test]
    fn built_topology_validates() {
        let node = |i: u8| Node {
            id: format!("{i:040x}"),
            ip: "127.0.0.1".into(),
            port: 7000 + i as u16,
            cport: None,
        };
        let t = build_topology(3, &[vec![node(1), node(2)], vec![node(3), node(4)], vec![node(5)]]);
        let l = t.validate().unwrap();
        assert_eq!(l.primaries, vec![0, 2, 4]);
    }
}
