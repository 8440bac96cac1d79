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
//!   a cluster, kill and restart them by PID. Its nodes share this machine's
//!   cores as Pods share a host, so each gets `cores / nodes` worker threads
//!   (at least one) — what a CPU limit of that size gives a node — rather
//!   than one per core each (see [`LocalCluster::start_with`]).
//! - Slot migration ([`migrate_slot`], [`resume_migration`],
//!   [`cancel_migration`], [`migration_status`]): the control plane's side of
//!   [`super::migrate`]. [`promote_replica`] fails a shard over while it is
//!   in a migration (the migration is carried over to the promoted replica).
//!   Every step is idempotent and reads back what the nodes hold, so a
//!   driver that restarts resumes from what the nodes report, not from
//!   memory it lost.

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
    #[error("slot {slot} migration: {msg}")]
    Migration { slot: u16, msg: String },
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
    /// Extra command-line arguments, reused by a restart.
    pub extra: Vec<String>,
    child: tokio::process::Child,
}

impl LocalNode {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL the process (by its PID, through the child handle) and reap it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Start one node in cluster mode on a free loopback port; its log goes to
/// `<dir>/node.log`.
pub async fn spawn_node(bin: &Path, dir: &Path, extra: &[&str]) -> Result<LocalNode, DriverError> {
    spawn_node_on(bin, dir, 0, extra).await
}

/// [`spawn_node`] on a given port (0: any free one). A node restarted on its
/// old port keeps the address the topology announces for it.
pub async fn spawn_node_on(bin: &Path, dir: &Path, port: u16, extra: &[&str]) -> Result<LocalNode, DriverError> {
    let spawn_err = |source| DriverError::Spawn {
        bin: bin.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(spawn_err)?;
    let log = std::fs::File::create(dir.join("node.log")).map_err(spawn_err)?;
    let mut child = tokio::process::Command::new(bin)
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes", "--dir"])
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
        extra: extra.iter().map(|a| a.to_string()).collect(),
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
        Self::start_with(bin, dir, shards, replicas, &[]).await
    }

    /// [`LocalCluster::start`] with extra arguments for every node (e.g.
    /// `--appendonly yes`).
    ///
    /// Unless `extra` sets `--threads`, each node runs `cores / nodes` worker
    /// threads (at least one): the nodes share this machine's cores the way
    /// Pods share a host, and a node given that much CPU by a Pod limit sizes
    /// its runtime the same way (`available_parallelism` counts the cgroup
    /// quota). With one worker per core per node instead, the workers
    /// outnumber the cores and pay for it on every request: measured with 3
    /// nodes on 2 cores (`redis-benchmark --cluster -P 1`), 2 workers per
    /// node cost 0.155 futex calls, ~0.36 instead of ~0.23 context switches
    /// and ~20% more server CPU per request than 1 worker per node.
    pub async fn start_with(
        bin: &Path,
        dir: &Path,
        shards: usize,
        replicas: usize,
        extra: &[&str],
    ) -> Result<LocalCluster, DriverError> {
        let share = (std::thread::available_parallelism().map_or(1, |n| n.get()) / (shards * (1 + replicas)).max(1))
            .max(1)
            .to_string();
        let mut extra = extra.to_vec();
        if !extra.iter().any(|a| *a == "--threads" || a.starts_with("--threads=")) {
            extra.extend(["--threads", share.as_str()]);
        }
        let extra = extra.as_slice();
        let mut nodes = Vec::new();
        for s in 0..shards {
            let mut members = Vec::new();
            for r in 0..=replicas {
                members.push(spawn_node(bin, &dir.join(format!("shard{s}-{r}")), extra).await?);
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

    /// Kill node `member` of shard `shard` with SIGKILL and start it again
    /// on the same port and data directory (same ID, same held topology).
    pub async fn restart(&mut self, bin: &Path, shard: usize, member: usize) -> Result<(), DriverError> {
        let n = &mut self.shards[shard][member];
        n.kill().await;
        let port = n.addr.port();
        let dir = n.dir.clone();
        let extra = n.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        // The port is free once the process is gone; retry briefly in case
        // the kernel has not released it yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match spawn_node_on(bin, &dir, port, &extra).await {
                Ok(fresh) => {
                    self.shards[shard][member] = fresh;
                    return Ok(());
                }
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
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

/// One slot migration as a node reports it (`CLUSTER MIGRATION STATUS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationStatus {
    pub slot: u16,
    /// `migrating` (the source) or `importing` (the target).
    pub role: String,
    pub peer: String,
    /// idle, streaming, done, failed, cancelling, cancelled.
    pub state: String,
    /// The migration is being undone (also when `state` is `failed`).
    pub cancelling: bool,
    pub keys_moved: u64,
    pub bytes_moved: u64,
    pub keys_left: u64,
    pub last_error: String,
}

fn text(v: &Value) -> String {
    match v {
        Value::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Simple(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The migrations `addr` holds, or the one of `slot`.
pub async fn migration_status(addr: &str, slot: Option<u16>) -> Result<Vec<MigrationStatus>, DriverError> {
    let mut c = Conn::connect(addr).await?;
    let s = slot.map(|s| s.to_string());
    let mut args: Vec<&[u8]> = vec![b"CLUSTER", b"MIGRATION", b"STATUS"];
    if let Some(s) = &s {
        args.push(s.as_bytes());
    }
    let Value::Array(items) = c.ok(&args).await? else {
        return Err(c.protocol("CLUSTER MIGRATION STATUS did not return an array"));
    };
    let mut out = Vec::new();
    for item in items {
        // RESP2 flattens the map into [key, value, ...].
        let Value::Array(kv) = item else {
            return Err(c.protocol("CLUSTER MIGRATION STATUS entry is not a map"));
        };
        let mut st = MigrationStatus::default();
        for pair in kv.chunks(2) {
            let [k, v] = pair else { continue };
            let n = || match v {
                Value::Int(n) => *n as u64,
                _ => 0,
            };
            match text(k).as_str() {
                "slot" => st.slot = n() as u16,
                "role" => st.role = text(v),
                "peer" => st.peer = text(v),
                "state" => st.state = text(v),
                "cancelling" => st.cancelling = n() != 0,
                "keys-moved" => st.keys_moved = n(),
                "bytes-moved" => st.bytes_moved = n(),
                "keys-left" => st.keys_left = n(),
                "last-error" => st.last_error = text(v),
                _ => {}
            }
        }
        out.push(st);
    }
    Ok(out)
}

fn node_addr(t: &Topology, id: &str, slot: u16) -> Result<String, DriverError> {
    t.node(id)
        .map(|n| format!("{}:{}", n.ip, n.port))
        .ok_or_else(|| DriverError::Migration {
            slot,
            msg: format!("unknown node id {id}"),
        })
}

/// The primary serving `slot` in `t`.
pub fn slot_owner(t: &Topology, slot: u16) -> Option<&str> {
    t.shards
        .iter()
        .find(|s| s.slots.iter().any(|r| r[0] <= slot && slot <= r[1]))
        .map(|s| s.primary.as_str())
}

/// `t` at the next epoch with `slot` served by the shard whose primary is
/// `target` (ranges split around the slot on the source side).
pub fn move_slot(t: &Topology, slot: u16, target: &str) -> Result<Topology, DriverError> {
    let bad = |msg: String| DriverError::Migration { slot, msg };
    if !t.shards.iter().any(|s| s.primary == target) {
        return Err(bad(format!("{target} is not a shard primary")));
    }
    let mut next = t.clone();
    next.epoch += 1;
    for s in &mut next.shards {
        let mut ranges = Vec::new();
        for r in &s.slots {
            if r[0] <= slot && slot <= r[1] {
                if r[0] < slot {
                    ranges.push([r[0], slot - 1]);
                }
                if slot < r[1] {
                    ranges.push([slot + 1, r[1]]);
                }
            } else {
                ranges.push(*r);
            }
        }
        if s.primary == target {
            ranges.push([slot, slot]);
            ranges.sort_unstable();
            // Merge with neighbours so layouts do not fragment slot by slot.
            let mut merged: Vec<[u16; 2]> = Vec::new();
            for r in ranges {
                match merged.last_mut() {
                    Some(last) if last[1] as usize + 1 == r[0] as usize => last[1] = r[1],
                    _ => merged.push(r),
                }
            }
            ranges = merged;
        }
        s.slots = ranges;
    }
    Ok(next)
}

/// How a migration is run.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Keys per batch (the node's default when `None`).
    pub batch: Option<usize>,
    /// How long to wait for the stream to finish.
    pub timeout: Duration,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            batch: None,
            timeout: Duration::from_secs(600),
        }
    }
}

async fn ok_at(addr: &str, args: &[&[u8]]) -> Result<Value, DriverError> {
    Conn::connect(addr).await?.ok(args).await
}

/// Poll the source until its stream reports `done` (every key acknowledged).
async fn await_stream(source: &str, slot: u16, timeout: Duration) -> Result<(), DriverError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let st = migration_status(source, Some(slot)).await?;
        match st.first().map(|s| s.state.as_str()) {
            Some("done") => return Ok(()),
            Some("failed") => {
                return Err(DriverError::Migration {
                    slot,
                    msg: format!("stream failed: {}", st[0].last_error),
                });
            }
            Some(_) => {}
            None => {
                return Err(DriverError::Migration {
                    slot,
                    msg: format!("{source} holds no migration of the slot"),
                });
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DriverError::Timeout(timeout));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Push the topology that gives `slot` to `target`: the target first (it
/// then serves the slot to everyone), then the source (whose `-MOVED` now
/// points at a node that already serves it), then everyone else.
async fn flip(t: &Topology, slot: u16, target: &str) -> Result<Topology, DriverError> {
    let next = move_slot(t, slot, target)?;
    let payload = next.to_json();
    let epoch = next.epoch.to_string();
    let source = slot_owner(t, slot).unwrap_or_default().to_string();
    for id in [target, source.as_str()] {
        let addr = node_addr(&next, id, slot)?;
        ok_at(
            &addr,
            &[b"CLUSTER", b"SETTOPOLOGY", epoch.as_bytes(), payload.as_bytes()],
        )
        .await?;
    }
    push_topology(&next).await?;
    Ok(next)
}

/// Move `slot` from the primary serving it in `t` to `target`'s shard:
/// mark both sides, stream, wait until every key was acknowledged, push the
/// new topology (epoch + 1). Returns that topology.
pub async fn migrate_slot(
    t: &Topology,
    slot: u16,
    target: &str,
    opts: &MigrateOptions,
) -> Result<Topology, DriverError> {
    let source = slot_owner(t, slot)
        .ok_or_else(|| DriverError::Migration {
            slot,
            msg: "no shard serves the slot".into(),
        })?
        .to_string();
    let (src, dst) = (node_addr(t, &source, slot)?, node_addr(t, target, slot)?);
    let s = slot.to_string();
    ok_at(
        &dst,
        &[b"CLUSTER", b"MIGRATION", b"IMPORT", s.as_bytes(), source.as_bytes()],
    )
    .await?;
    let batch = opts.batch.map(|b| b.to_string());
    let mut start: Vec<&[u8]> = vec![b"CLUSTER", b"MIGRATION", b"START", s.as_bytes(), target.as_bytes()];
    if let Some(b) = &batch {
        start.extend([b"BATCH".as_slice(), b.as_bytes()]);
    }
    ok_at(&src, &start).await?;
    await_stream(&src, slot, opts.timeout).await?;
    flip(t, slot, target).await
}

/// The newest topology any node of `t` holds: after a driver restart (or an
/// interrupted push) this is where the cluster really is.
pub async fn newest_topology(t: &Topology) -> Result<Topology, DriverError> {
    let mut best = t.clone();
    for n in &t.nodes {
        if let Ok(Some(h)) = held_topology(&format!("{}:{}", n.ip, n.port)).await
            && h.epoch > best.epoch
        {
            best = h;
        }
    }
    Ok(best)
}

/// Finish a migration of `slot` that was interrupted (a node or the driver
/// restarted): reads what the nodes hold, completes an interrupted
/// ownership push, restarts the stream (or a cancel's return stream) and
/// flips ownership. Returns the topology in force afterwards.
pub async fn resume_migration(t: &Topology, slot: u16, opts: &MigrateOptions) -> Result<Topology, DriverError> {
    let t = newest_topology(t).await?;
    // Every node gets the newest layout (a flip the driver did not finish).
    push_topology(&t).await?;
    let source = slot_owner(&t, slot).unwrap_or_default().to_string();
    let src = node_addr(&t, &source, slot)?;
    let Some(st) = migration_status(&src, Some(slot)).await?.into_iter().next() else {
        // The source holds no migration: nothing was started, or the flip
        // completed. Targets may still hold a stale import of the slot.
        return Ok(t);
    };
    let dst = node_addr(&t, &st.peer, slot)?;
    let s = slot.to_string();
    if st.cancelling {
        // Undo, not finish: the target owes the source its keys back.
        ok_at(&dst, &[b"CLUSTER", b"MIGRATION", b"CANCEL", s.as_bytes()]).await?;
        await_cancel(&src, &dst, slot, opts.timeout).await?;
        return Ok(t);
    }
    ok_at(
        &dst,
        &[b"CLUSTER", b"MIGRATION", b"IMPORT", s.as_bytes(), source.as_bytes()],
    )
    .await?;
    if st.state != "done" {
        ok_at(
            &src,
            &[b"CLUSTER", b"MIGRATION", b"START", s.as_bytes(), st.peer.as_bytes()],
        )
        .await?;
        await_stream(&src, slot, opts.timeout).await?;
    }
    flip(&t, slot, &st.peer).await
}

async fn await_cancel(src: &str, dst: &str, slot: u16, timeout: Duration) -> Result<(), DriverError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let d = migration_status(dst, Some(slot)).await?;
        if let Some(st) = d.first()
            && st.state == "failed"
        {
            return Err(DriverError::Migration {
                slot,
                msg: format!("return stream failed: {}", st.last_error),
            });
        }
        if d.is_empty() && migration_status(src, Some(slot)).await?.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DriverError::Timeout(timeout));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Undo a migration of `slot`: the source stops streaming, the target sends
/// back every key it received (and any created there through `-ASK`), both
/// states are cleared. The slot stays with the source.
pub async fn cancel_migration(t: &Topology, slot: u16, opts: &MigrateOptions) -> Result<(), DriverError> {
    let t = newest_topology(t).await?;
    let source = slot_owner(&t, slot).unwrap_or_default().to_string();
    let src = node_addr(&t, &source, slot)?;
    let Some(st) = migration_status(&src, Some(slot)).await?.into_iter().next() else {
        return Err(DriverError::Migration {
            slot,
            msg: format!("{src} holds no migration of the slot"),
        });
    };
    let dst = node_addr(&t, &st.peer, slot)?;
    let s = slot.to_string();
    ok_at(&src, &[b"CLUSTER", b"MIGRATION", b"CANCEL", s.as_bytes()]).await?;
    ok_at(&dst, &[b"CLUSTER", b"MIGRATION", b"CANCEL", s.as_bytes()]).await?;
    await_cancel(&src, &dst, slot, opts.timeout).await
}

/// `t` at the next epoch with `replica` as its shard's primary and that
/// shard's old primary gone from the layout (it is dead; the control plane
/// adds its replacement later as a replica).
pub fn promote(t: &Topology, replica: &str) -> Result<Topology, DriverError> {
    let bad = |msg: String| DriverError::Protocol {
        addr: String::new(),
        msg,
    };
    let shard = t
        .shards
        .iter()
        .position(|s| s.replicas.iter().any(|r| r == replica))
        .ok_or_else(|| bad(format!("{replica} is not a replica in the topology")))?;
    let mut next = t.clone();
    next.epoch += 1;
    let s = &mut next.shards[shard];
    let dead = std::mem::replace(&mut s.primary, replica.to_string());
    s.replicas.retain(|r| r != replica);
    next.nodes.retain(|n| n.id != dead);
    Ok(next)
}

/// Fail a shard over to `replica` when its primary died, carrying on the
/// slot migrations that primary was in (see "Failover during a migration"
/// in [`super::migrate`]): mark the replica with its side of each of them,
/// push [`promote`]'s topology, then re-point the other side at it. The
/// migrations are then finished with [`resume_migration`] or undone with
/// [`cancel_migration`] against the returned topology, as after any
/// interruption. Returns the new topology and the slots that were in
/// migration with the dead primary.
pub async fn promote_replica(t: &Topology, replica: &str) -> Result<(Topology, Vec<u16>), DriverError> {
    let t = newest_topology(t).await?;
    let next = promote(&t, replica)?;
    let shard = next
        .shards
        .iter()
        .position(|s| s.primary == replica)
        .ok_or_else(|| DriverError::Protocol {
            addr: String::new(),
            msg: format!("{replica} is not a replica in the topology"),
        })?;
    let dead = t.shards[shard].primary.clone();
    let replica_addr = next
        .node(replica)
        .map(|n| format!("{}:{}", n.ip, n.port))
        .unwrap_or_default();
    // The dead primary cannot say what it was doing; the other primaries
    // hold the other side of each of its migrations.
    let mut repoint: Vec<(String, u16)> = Vec::new();
    for (i, s) in t.shards.iter().enumerate() {
        if i == shard {
            continue;
        }
        let addr = node_addr(&t, &s.primary, 0)?;
        for st in migration_status(&addr, None).await? {
            if st.peer != dead {
                continue;
            }
            let slot = st.slot.to_string().into_bytes();
            let mut cmds = vec![if st.role == "importing" {
                // The dead primary was the source: its replica continues
                // sending the slot's keys it holds to this primary.
                vec![b"START".to_vec(), slot.clone(), s.primary.clone().into_bytes()]
            } else {
                vec![b"IMPORT".to_vec(), slot.clone(), s.primary.clone().into_bytes()]
            }];
            if st.cancelling {
                cmds.push(vec![b"CANCEL".to_vec(), slot]);
            }
            for c in cmds {
                let mut args: Vec<&[u8]> = vec![b"CLUSTER", b"MIGRATION"];
                args.extend(c.iter().map(Vec::as_slice));
                ok_at(&replica_addr, &args).await?;
            }
            repoint.push((addr.clone(), st.slot));
        }
    }
    push_topology(&next).await?;
    for (addr, slot) in &repoint {
        let s = slot.to_string();
        ok_at(
            addr,
            &[b"CLUSTER", b"MIGRATION", b"PEER", s.as_bytes(), replica.as_bytes()],
        )
        .await?;
    }
    Ok((next, repoint.into_iter().map(|(_, s)| s).collect()))
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
    fn move_slot_splits_and_merges_ranges() {
        let node = |i: u8| Node {
            id: format!("{i:040x}"),
            ip: "127.0.0.1".into(),
            port: 7000 + i as u16,
            cport: None,
        };
        let t = build_topology(4, &[vec![node(1)], vec![node(2)], vec![node(3)]]);
        let a = move_slot(&t, 100, &node(2).id).unwrap();
        assert_eq!(a.epoch, 5);
        assert_eq!(a.shards[0].slots, vec![[0, 99], [101, 5460]]);
        assert_eq!(a.shards[1].slots, vec![[100, 100], [5461, 10921]]);
        a.clone().validate().unwrap();
        // The slot next to the target's range joins it.
        let b = move_slot(&t, 5460, &node(2).id).unwrap();
        assert_eq!(b.shards[0].slots, vec![[0, 5459]]);
        assert_eq!(b.shards[1].slots, vec![[5460, 10921]]);
        assert_eq!(slot_owner(&b, 5460), Some(node(2).id.as_str()));
        assert!(move_slot(&t, 1, &"f".repeat(40)).is_err());
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
