//! Cluster mode: slot ownership from a topology the control plane pushes.
//!
//! ferrokv has no cluster bus and no gossip. The operator (or the test
//! [`driver`]) decides the whole layout — which nodes form which shard, which
//! node is each shard's primary, which slots each shard serves — and pushes it
//! to every node with `CLUSTER SETTOPOLOGY`. A node only checks, persists and
//! obeys it. One mechanism then covers placement, failover (promote = push a
//! topology naming a new primary) and the final ownership flip of a slot
//! migration (push a topology with the slot in its new shard).
//!
//! # Layout
//!
//! - [`topology`]: the serde model shared with the operator, its validation,
//!   and the per-slot owner table used on the command path.
//! - [`node`]: this node's identity and the held topology on disk
//!   (`<dir>/nodes.json`), written atomically.
//! - [`driver`]: a library the operator and tests call: even slot layouts,
//!   pushing a topology over RESP, a local cluster of node processes, and
//!   slot migration end to end (`migrate_slot`, `resume_migration`,
//!   `cancel_migration`).
//! - [`migrate`]: slot migration on a node: MIGRATING/IMPORTING states, the
//!   batch stream, `RESTOREBATCH`, `-ASK`/`-TRYAGAIN` under the locks.
//! - this file: the shared [`Cluster`] state, role changes, and [`route`],
//!   the redirect check run by `cmd::execute` before a command is queued or run.
//!
//! # `CLUSTER SETTOPOLOGY <epoch> <payload>`
//!
//! `payload` is a JSON document (compact, one bulk string):
//!
//! ```json
//! {"epoch": 7,
//!  "nodes": [{"id": "<40 hex>", "ip": "10.0.0.5", "port": 6379, "cport": 16379}, ...],
//!  "shards": [{"slots": [[0, 5460]], "primary": "<id>", "replicas": ["<id>", ...]}, ...]}
//! ```
//!
//! - `epoch` (≥ 1) must equal the command's `<epoch>` argument; the argument is
//!   there so a stale push is refused before its payload is even parsed.
//! - `nodes`: every node, with the address clients are redirected to; `cport`
//!   is optional and only shown in `CLUSTER NODES` (there is no bus).
//! - `shards`: inclusive slot ranges (a shard may have none), the primary, the
//!   replicas. Unknown fields are refused, so a typo is not silently ignored.
//!
//! Refused with `-ERR` and a message naming the problem: malformed JSON,
//! node IDs that are not 40 lower-case hex characters, duplicate node IDs, a
//! shard naming an unknown node, a node in two shards or in none, invalid
//! ranges, overlapping slots, slots no shard serves (gaps), and a topology
//! that does not contain this node (a push meant for another cluster).
//!
//! `CLUSTER GETTOPOLOGY` returns the held topology in the same format (nil
//! before the first push), so the control plane can compare what a node
//! holds with what it meant to push.
//!
//! # Epoch rules
//!
//! - epoch < held epoch: refused (`-ERR stale topology epoch ...`). This is the
//!   fence that makes a deposed primary that comes back obey the newer layout
//!   instead of the one it remembers.
//! - epoch == held epoch and the same topology (same nodes and shards in the
//!   same order; JSON whitespace and key order do not matter): `+OK`,
//!   nothing changes (the control plane may retry a push whose reply it lost).
//! - epoch == held epoch but a different topology: refused — two layouts
//!   under one epoch would mean two writers, so the pusher must bump it.
//! - epoch > held: persisted first (temp file, fsync, rename, directory
//!   fsync), then made visible to commands, then this node's role is applied.
//!   Persisting first means a node never serves a layout that a restart
//!   would forget, so its epoch never goes backwards.
//!
//! # Routing
//!
//! With cluster mode off [`route`] is never called (one relaxed load in
//! `execute`). With it on, a command's keys must all hash to one slot
//! (`-CROSSSLOT`); a slot served by another shard answers
//! `-MOVED <slot> <ip>:<port>` of that shard's primary; a replica serves reads
//! of its own shard's slots only to `READONLY` connections and redirects the
//! rest to its primary. Keyless commands always run. Inside MULTI each command
//! is checked as it is queued (a failure aborts the transaction, as Redis),
//! and EXEC checks the queued commands together. Until a topology is held,
//! commands with keys get `-CLUSTERDOWN The cluster is down`.
//! A slot IMPORTING here is served to `ASKING` connections; `-ASK` and
//! `-TRYAGAIN` of a slot in migration are decided with the command's locks
//! held ([`migrate::check_locked`]), because whether a key is still here can
//! change between this check and the locks.

pub mod driver;
pub mod migrate;
pub mod node;
pub mod topology;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::cmd::{CommandSpec, KeySpec, key_positions};
use crate::resp::Reply;
use crate::session::Session;
use crate::slot::key_slot;
use crate::state::State;
pub use node::NodeFile;
pub use topology::{Layout, Node, Shard, Topology, TopologyError};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid cluster state file {path}: {msg}")]
    BadFile { path: std::path::PathBuf, msg: String },
    #[error("stale topology epoch {got} (held epoch is {held})")]
    Stale { got: u64, held: u64 },
    #[error("topology epoch {0} is already held with a different layout; bump the epoch")]
    Conflict(u64),
    #[error("payload epoch {payload} does not match the command's epoch {arg}")]
    EpochMismatch { arg: u64, payload: u64 },
    #[error("topology does not contain this node ({0})")]
    NotMember(String),
    #[error("cluster support is disabled")]
    Disabled,
}

/// What this node should be, as the topology says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica { host: String, port: u16 },
}

/// The held topology as seen from this node.
pub struct View {
    pub layout: Layout,
    /// Index of this node in `layout.topology.nodes`.
    pub me: usize,
    /// This node's shard.
    pub my_shard: usize,
    pub primary: bool,
}

impl View {
    fn new(layout: Layout, myid: &str) -> Result<View, ClusterError> {
        let me = layout
            .node_index(myid)
            .ok_or_else(|| ClusterError::NotMember(myid.to_string()))?;
        let my_shard = layout.shard_of[me];
        let primary = layout.primaries[my_shard] == me;
        Ok(View {
            layout,
            me,
            my_shard,
            primary,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.layout.topology.epoch
    }

    pub fn role(&self) -> Role {
        if self.primary {
            Role::Primary
        } else {
            let p = self.layout.primary(self.my_shard);
            Role::Replica {
                host: p.ip.clone(),
                port: p.port,
            }
        }
    }
}

/// Cluster state shared by all connections (in [`State::cluster`]).
#[derive(Default)]
pub struct Cluster {
    /// Fixed at start; the command path reads only this when cluster mode is off.
    enabled: AtomicBool,
    /// Identity and file location, set once when cluster mode is enabled.
    file: std::sync::OnceLock<NodeFile>,
    /// The held topology. Readers hold the lock only for one lookup (the
    /// command path not even that: see [`Cluster::with_view`]); writers swap
    /// in a whole new view, so a command never sees half a topology.
    view: RwLock<Option<Arc<View>>>,
    /// Serializes SETTOPOLOGY: epoch check, persist and swap are one step.
    apply: Mutex<()>,
    /// The role the held topology gives this node, with its epoch: set
    /// under the same lock as the topology, so it never lags behind it
    /// (applying it through REPLICAOF is fenced by the epoch, see
    /// [`apply_role`]).
    pub role: Mutex<Option<(Role, u64)>>,
    /// Slots migrating from or importing to this node.
    pub migrations: migrate::Migrations,
    /// Changes with every view installed (see [`Cluster::with_view`]); 0
    /// before the first.
    generation: AtomicU64,
}

/// Source of [`Cluster::generation`] values: unique across every `Cluster`
/// of the process (tests run several nodes in one), so a cached view is
/// never mistaken for another node's.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

impl Cluster {
    /// Run `f` with the held view, for the command path. Every command in
    /// cluster mode routes, and taking the view's read lock for it made two
    /// atomic read-modify-writes per command on one cache line that every
    /// worker thread shares (bounced between cores); a thread-local cache
    /// cost ~90 instructions per access (callgrind). Instead each connection
    /// keeps the view it last used and only re-reads the lock when the
    /// generation (a plain load of a line written once per topology change)
    /// moved. The `Arc` is moved out and back, not cloned: a clone is again a
    /// write to a shared line.
    pub fn with_view<R>(&self, session: &mut Session, f: impl FnOnce(&mut Session, Option<&View>) -> R) -> R {
        // Generation first, then the view: a view read after the generation
        // is at least as new as it (writers store the view, then the
        // generation), so a cached view is never older than its number.
        let generation = self.generation.load(Ordering::Acquire);
        let mut cached = session.cluster_view.take();
        if cached.as_ref().is_none_or(|(g, _)| *g != generation) {
            cached = self.view().map(|v| (generation, v));
        }
        let r = f(session, cached.as_ref().map(|(_, v)| &**v));
        session.cluster_view = cached;
        r
    }

    /// Install a new view and announce it to [`Cluster::with_view`]'s caches.
    fn install(&self, view: Option<Arc<View>>) {
        *self.view.write() = view;
        self.generation
            .store(GENERATIONS.fetch_add(1, Ordering::Relaxed), Ordering::Release);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turn cluster mode on: load (or create) `<dir>/<file_name>` with this
    /// node's ID and the topology it held before a restart.
    pub fn enable(&self, dir: &Path, file_name: &str) -> Result<Option<Role>, ClusterError> {
        let (file, topology, migrations) = NodeFile::load_or_create(dir, file_name)?;
        self.migrations.load(&migrations);
        let role = match topology {
            Some(t) => {
                let view = View::new(t.validate()?, &file.myid)?;
                let role = view.role();
                *self.role.lock() = Some((role.clone(), view.epoch()));
                self.install(Some(Arc::new(view)));
                Some(role)
            }
            None => None,
        };
        // `enable` runs once at start; a second call keeps the first identity.
        let _ = self.file.set(file);
        self.enabled.store(true, Ordering::Relaxed);
        Ok(role)
    }

    pub fn myid(&self) -> &str {
        self.file.get().map(|f| f.myid.as_str()).unwrap_or("")
    }

    pub fn view(&self) -> Option<Arc<View>> {
        self.view.read().clone()
    }

    /// Check, persist and install a pushed topology. Returns the role to
    /// apply, or `None` when the push repeated the held topology.
    pub fn set_topology(&self, epoch: u64, payload: &[u8]) -> Result<Option<Role>, ClusterError> {
        let file = self.file.get().ok_or(ClusterError::Disabled)?;
        let _guard = self.apply.lock();
        let held = self.view.read().clone();
        if let Some(h) = &held
            && epoch < h.epoch()
        {
            return Err(ClusterError::Stale {
                got: epoch,
                held: h.epoch(),
            });
        }
        let topology = Topology::from_json(payload)?;
        if topology.epoch != epoch {
            return Err(ClusterError::EpochMismatch {
                arg: epoch,
                payload: topology.epoch,
            });
        }
        if let Some(h) = &held
            && epoch == h.epoch()
        {
            return if topology == h.layout.topology {
                Ok(None)
            } else {
                Err(ClusterError::Conflict(epoch))
            };
        }
        let view = View::new(topology.validate()?, &file.myid)?;
        // Migration states the new layout finishes (the source no longer
        // serves the slot, the target now does) go in the same atomic write
        // as the topology: a restart never sees one without the other.
        let (records, finished) = self.records_after(&view);
        file.save(Some(&view.layout.topology), &records)?;
        let role = view.role();
        *self.role.lock() = Some((role.clone(), epoch));
        self.install(Some(Arc::new(view)));
        if finished {
            self.retain_records(&records);
        }
        tracing::info!(epoch, "applied cluster topology");
        Ok(Some(role))
    }
}

/// Make this node what the topology says: a primary, or a replica of its
/// shard's primary.
///
/// Replication lives in `crate::repl` (built in parallel). When this binary
/// has a `REPLICAOF` command that takes an `EPOCH`, the role goes through it
/// (`REPLICAOF host port EPOCH n` / `REPLICAOF NO ONE EPOCH n`), so a fenced
/// role change follows the same path as an operator's. Without it the role
/// is only recorded in [`Cluster::role`]; routing already follows the
/// topology (a replica redirects writes to its primary) either way. Two
/// pushes racing may call this out of order; the epoch makes REPLICAOF
/// refuse the older one.
pub fn apply_role(state: &State, role: Role, epoch: u64) {
    if crate::cmd::lookup(b"replicaof").is_none() {
        tracing::info!(
            ?role,
            epoch,
            "replication not available in this build: role recorded only"
        );
        return;
    }
    let epoch = Bytes::from(epoch.to_string());
    let args: Vec<Bytes> = match &role {
        Role::Primary => vec!["REPLICAOF".into(), "NO".into(), "ONE".into(), "EPOCH".into(), epoch],
        Role::Replica { host, port } => vec![
            "REPLICAOF".into(),
            Bytes::from(host.clone()),
            Bytes::from(port.to_string()),
            "EPOCH".into(),
            epoch,
        ],
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let handle = Arc::new(crate::client::ClientHandle::new(0, addr, addr));
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let mut session = Session::new(handle, tx, true);
    session.cluster_internal = true;
    match crate::cmd::execute(state, &mut session, &crate::cmd::view(&args)) {
        crate::cmd::Outcome::Reply(Reply::Error(e)) => tracing::warn!(?role, error = %e, "role change refused"),
        _ => tracing::info!(?role, "role applied"),
    }
}

/// After a topology change, answer clients blocked on keys of a slot this
/// node no longer serves with `-MOVED` to its new owner (`-CLUSTERDOWN` if
/// nobody owns it), as Redis' `clusterRedirectBlockedClientIfNeeded`: a
/// write that would wake them now goes to the other node, so they would
/// otherwise wait until their timeout (or forever). A slot being imported
/// here keeps its waiters, as in Redis. The connections stay open; the
/// client follows the redirect.
pub fn redirect_blocked(state: &State) {
    let Some(view) = state.cluster.view() else { return };
    for w in state.blocking.all_waiters() {
        // A blocking command's keys are all in one slot (checked when it ran).
        let Some(key) = w.keys.first() else { continue };
        let slot = key_slot(key);
        let write = crate::cmd::lookup(&w.args[0]).is_some_and(|s| s.is_write());
        let reply = match view.layout.owner(slot) {
            Some(owner) if owner == view.my_shard && (view.primary || !write) => continue,
            _ if state
                .cluster
                .migrations
                .get(slot)
                .is_some_and(|m| m.kind == migrate::Kind::Importing) =>
            {
                continue;
            }
            Some(owner) => {
                let p = view.layout.primary(owner);
                Reply::err(format!("MOVED {slot} {}:{}", p.ip, p.port))
            }
            None => Reply::err("CLUSTERDOWN Hash slot not served"),
        };
        state.blocking.unblock_with(&w, reply, false);
    }
}

/// Call `f` with each key (or shard channel) a command addresses. Sharded
/// pub/sub channels are routed like keys, as in Redis. Fixed key positions
/// are walked without allocating: this runs for every command in cluster mode.
fn each_routed(spec: &CommandSpec, args: &[&[u8]], f: &mut dyn FnMut(&[u8]) -> Result<(), Reply>) -> Result<(), Reply> {
    match (spec.keys, spec.name) {
        (_, "spublish") => args.get(1).map_or(Ok(()), |c| f(c)),
        (_, "ssubscribe" | "sunsubscribe") => args.iter().skip(1).try_for_each(|c| f(c)),
        (KeySpec::Range { first, last, step }, _) => {
            let n = args.len() as i32;
            let last = if last < 0 { n + last } else { last.min(n - 1) };
            let mut i = first;
            while i <= last && i < n {
                f(args[i as usize])?;
                i += step.max(1);
            }
            Ok(())
        }
        (KeySpec::Custom(_), _) => key_positions(spec, args).into_iter().try_for_each(|i| f(args[i])),
        (KeySpec::None | KeySpec::All, _) => Ok(()),
    }
}

/// The redirect check: `None` to run the command here, or the error reply
/// (`-MOVED`, `-CROSSSLOT`, `-CLUSTERDOWN`, ...) that replaces it.
pub fn route(state: &State, session: &mut Session, spec: &'static CommandSpec, args: &[&[u8]]) -> Option<Reply> {
    // ASKING holds for the next command only (for a whole transaction when
    // given inside MULTI), as in Redis.
    let asking = session.asking;
    session.admitted_asking = false;
    session.routed_migrating = false;
    session.routed_slot = None;
    if spec.name != "asking" && session.multi.is_none() {
        session.asking = false;
    }
    // The replication stream from a primary is never redirected either.
    if session.cluster_internal || session.repl.master {
        return None;
    }
    if spec.name == "select" && crate::cmd::parse::parse_i64(args[1]).is_some_and(|n| n != 0) {
        return Some(Reply::err("ERR SELECT is not allowed in cluster mode"));
    }
    let mut write = spec.is_write();
    // One key at a fixed position (GET, SET, INCR, HSET...: most commands):
    // its slot directly, without the generic walk below (a closure called
    // through `dyn` per key), which cost about as much as the CRC16 itself
    // per GET. Sharded pub/sub and EXEC have `KeySpec::None`, so they never
    // take this path.
    if let KeySpec::Range { first, last, .. } = spec.keys
        && first == last
        && first > 0
        && let Some(key) = args.get(first as usize)
    {
        let slot = key_slot(key);
        session.routed_slot = Some(slot);
        return state.cluster.with_view(session, |session, view| {
            route_slot(state, session, view, slot, write, asking)
        });
    }
    let mut slot: Option<u16> = None;
    let mut check = |key: &[u8]| -> Result<(), Reply> {
        let s = key_slot(key);
        match slot {
            Some(prev) if prev != s => Err(Reply::err("CROSSSLOT Keys in request don't hash to the same slot")),
            _ => {
                slot = Some(s);
                Ok(())
            }
        }
    };
    let checked = if spec.name == "exec"
        && let Some(m) = &session.multi
    {
        m.queue.iter().try_for_each(|(spec, args)| {
            write |= spec.is_write();
            each_routed(spec, &crate::cmd::view(args), &mut check)
        })
    } else {
        each_routed(spec, args, &mut check)
    };
    if let Err(e) = checked {
        return Some(e);
    }
    let slot = slot?;
    if !matches!(spec.keys, KeySpec::None | KeySpec::All) {
        session.routed_slot = Some(slot);
    }
    state.cluster.with_view(session, |session, view| {
        route_slot(state, session, view, slot, write, asking)
    })
}

/// [`route`] once the command's slot is known.
fn route_slot(
    state: &State,
    session: &mut Session,
    view: Option<&View>,
    slot: u16,
    write: bool,
    asking: bool,
) -> Option<Reply> {
    let Some(view) = view else {
        return Some(Reply::err("CLUSTERDOWN The cluster is down"));
    };
    let Some(owner) = view.layout.owner(slot) else {
        return Some(Reply::err("CLUSTERDOWN Hash slot not served"));
    };
    if owner == view.my_shard && (view.primary || (session.readonly && !write)) {
        session.routed_migrating = state.cluster.migrations.get(slot).is_some();
        return None;
    }
    // A slot imported here from its owner: served to ASKING connections,
    // rechecked under the locks (the import may end before they are taken).
    if asking
        && view.primary
        && state
            .cluster
            .migrations
            .get(slot)
            .is_some_and(|m| m.kind == migrate::Kind::Importing)
    {
        session.admitted_asking = true;
        return None;
    }
    let p = view.layout.primary(owner);
    Some(Reply::err(format!("MOVED {slot} {}:{}", p.ip, p.port)))
}
