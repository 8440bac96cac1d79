//! Nodes: what the operator knows of each node, kept up to date by background tasks, so that a
//! reconcile reads it without waiting on any node.
//!
//! A reconcile used to ask every node over RESP (connect, AUTH, three commands) and push
//! topologies inline. A node busy with a full sync or fsyncing a topology made the reconcile as
//! slow as the slowest node (60–200 ms measured on the sandbox), and a node that hung cost the
//! two-second timeout to every reconcile of its cluster, during which the controller's worker
//! for that cluster could do nothing else, not even notice the KvCluster was deleted. The
//! Kubernetes side already works from watch caches; this module does the same for the nodes:
//!
//! - **Pollers.** One task per node (per Pod UID *and* IP: a recreated Pod, or a Pod with a new
//!   address, is a node not heard from yet) keeps an authenticated connection and asks the node
//!   its state every [`POLL_INTERVAL`], or at once when poked. When what the planner uses
//!   changes (node ID, held topology, role, replication link; not the offset, which moves with
//!   every write), the poller triggers a reconcile of the node's cluster. A node that does not
//!   answer within [`NODE_TIMEOUT`] is recorded as unreachable, as before.
//! - **Pushes.** A topology push runs in a task of its own, one at a time per cluster and in the
//!   order they were decided. The reconcile that decides a push writes the status first (the
//!   write-ahead that lets a restarted operator finish it, see the controller's doc) and then
//!   hands the push over and returns. When the push ends, the nodes that took it are recorded as
//!   holding it (a reconcile must not read them as behind and push again), their pollers look
//!   again, and the cluster is reconciled. While a push is pending, reconciles neither push it
//!   again nor move role labels (a label follows the topology the node holds).
//!
//! Why reading a cache is safe for the planner: a node is used only after it has answered (a
//! node not heard from yet reads as unreachable, which the planner treats like a Pod that is not
//! Ready), and what a reconcile reads is at most one poll interval old; a node that dies shows
//! up within the same interval, and its Pod's readiness through the Pod watch. The pollers of a
//! cluster follow its Ready Pods: a Pod that leaves (or stops being Ready) has its poller
//! stopped at the next reconcile of its cluster, and deleting the cluster stops them all.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ferrokv_node::cluster::driver::{Conn, DriverError};
use ferrokv_node::cluster::topology::Topology;
use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::apply::{self, PushOutcome};
use super::observe::{NODE_TIMEOUT, connect, node_state};
use super::plan::NodeObs;
use crate::crd::KvCluster;

/// How often each node is asked for its state when nothing pokes its poller.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One node as the operator addresses it: a Pod incarnation (UID) at an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeKey {
    pub cluster: ObjectRef<KvCluster>,
    pub pod_uid: String,
    pub addr: String,
}

struct Poller {
    /// The last answer; `None` until the node answered, or when its last poll failed.
    obs: Option<NodeObs>,
    password: Option<String>,
    poke: Arc<Notify>,
    task: AbortHandle,
}

/// A cluster's pushes: run one at a time, and the epoch of the last one decided until it ends.
#[derive(Default)]
struct PushLane {
    turn: tokio::sync::Mutex<()>,
    pending: Mutex<Option<u64>>,
}

/// The node caches and push tasks of one watch scope (see the module doc).
pub struct Nodes {
    pollers: Mutex<HashMap<NodeKey, Poller>>,
    lanes: Mutex<HashMap<ObjectRef<KvCluster>, Arc<PushLane>>>,
    trigger: mpsc::UnboundedSender<ObjectRef<KvCluster>>,
}

impl Nodes {
    /// A registry whose changes are sent, as the cluster to reconcile, to `trigger`.
    pub fn new(trigger: mpsc::UnboundedSender<ObjectRef<KvCluster>>) -> Arc<Nodes> {
        Arc::new(Nodes {
            pollers: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashMap::new()),
            trigger,
        })
    }

    /// What is known of `wanted` (the cluster's Ready Pods), in order; starts a poller for a
    /// node not known yet (read as unreachable until it answers) and stops the pollers of the
    /// cluster's nodes that are no longer wanted. A changed password restarts a node's poller.
    pub fn read(
        self: &Arc<Self>,
        cluster: &ObjectRef<KvCluster>,
        wanted: &[NodeKey],
        password: Option<&str>,
    ) -> Vec<Option<NodeObs>> {
        let mut pollers = self.pollers.lock();
        pollers.retain(|k, p| {
            let keep = &k.cluster != cluster || wanted.contains(k);
            if !keep {
                p.task.abort();
            }
            keep
        });
        wanted
            .iter()
            .map(|key| match pollers.get(key) {
                Some(p) if p.password.as_deref() == password => p.obs.clone(),
                _ => {
                    if let Some(old) = pollers.remove(key) {
                        old.task.abort();
                    }
                    let poke = Arc::new(Notify::new());
                    let task = tokio::spawn(poll(
                        Arc::downgrade(self),
                        key.clone(),
                        password.map(str::to_string),
                        poke.clone(),
                    ))
                    .abort_handle();
                    pollers.insert(
                        key.clone(),
                        Poller {
                            obs: None,
                            password: password.map(str::to_string),
                            poke,
                            task,
                        },
                    );
                    None
                }
            })
            .collect()
    }

    /// The epoch of the cluster's push that was handed over and has not ended yet.
    pub fn pending_push(&self, cluster: &ObjectRef<KvCluster>) -> Option<u64> {
        let lane = self.lanes.lock().get(cluster).cloned()?;
        *lane.pending.lock()
    }

    /// Push `topology` to its nodes in the background (after the cluster's earlier pushes), then
    /// record who took it, reconcile the cluster, and call `done` with the outcome (metrics,
    /// Events).
    pub fn push<F, Fut>(
        self: &Arc<Self>,
        cluster: ObjectRef<KvCluster>,
        topology: Topology,
        password: Option<String>,
        done: F,
    ) where
        F: FnOnce(PushOutcome) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let lane = self.lanes.lock().entry(cluster.clone()).or_default().clone();
        *lane.pending.lock() = Some(topology.epoch);
        let nodes = Arc::downgrade(self);
        tokio::spawn(async move {
            let outcome = {
                let _turn = lane.turn.lock().await;
                apply::push(&topology, password.as_deref()).await
            };
            {
                let mut pending = lane.pending.lock();
                if *pending == Some(topology.epoch) {
                    *pending = None;
                }
            }
            if let Some(nodes) = nodes.upgrade() {
                nodes.took(&cluster, &topology, &outcome.accepted);
                let _ = nodes.trigger.unbounded_send(cluster);
            }
            done(outcome).await;
        });
    }

    /// The nodes at `accepted` hold `topology` now (they answered OK to it): recorded at once,
    /// and their pollers asked to confirm.
    fn took(&self, cluster: &ObjectRef<KvCluster>, topology: &Topology, accepted: &[String]) {
        let mut pollers = self.pollers.lock();
        for (key, p) in pollers.iter_mut() {
            if &key.cluster != cluster || !accepted.contains(&key.addr) {
                continue;
            }
            if let Some(obs) = &mut p.obs
                && obs.held.as_ref().is_none_or(|h| h.epoch < topology.epoch)
            {
                obs.held = Some(topology.clone());
            }
            p.poke.notify_one();
        }
    }

    /// Stop everything of a cluster that is going away.
    pub fn forget(&self, cluster: &ObjectRef<KvCluster>) {
        self.pollers.lock().retain(|k, p| {
            let keep = &k.cluster != cluster;
            if !keep {
                p.task.abort();
            }
            keep
        });
        self.lanes.lock().remove(cluster);
    }

    /// Store a poll's result; true when the planner would see a difference.
    fn observed(&self, key: &NodeKey, obs: Option<NodeObs>) -> bool {
        let mut pollers = self.pollers.lock();
        let Some(p) = pollers.get_mut(key) else {
            return false;
        };
        let changed = !same_for_planning(p.obs.as_ref(), obs.as_ref());
        p.obs = obs;
        changed
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for p in self.pollers.get_mut().values() {
            p.task.abort();
        }
    }
}

/// Equal in everything the planner reads: the replication offset changes with every write and
/// would wake a reconcile per poll of a busy cluster for nothing.
fn same_for_planning(a: Option<&NodeObs>, b: Option<&NodeObs>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.id == b.id && a.held == b.held && a.replica == b.replica && a.link_up == b.link_up,
        (None, None) => true,
        _ => false,
    }
}

/// One node's poller: ask, store, wait for the interval or a poke; until aborted or the
/// registry is gone. The connection is kept between polls and dropped after any failure (a
/// timed-out command leaves it mid-reply).
async fn poll(nodes: Weak<Nodes>, key: NodeKey, password: Option<String>, poke: Arc<Notify>) {
    let mut conn: Option<Conn> = None;
    loop {
        let obs = match tokio::time::timeout(NODE_TIMEOUT, ask(&mut conn, &key.addr, password.as_deref())).await {
            Ok(Ok(obs)) => Some(obs),
            Ok(Err(e)) => {
                tracing::debug!(addr = %key.addr, error = %e, "node did not answer");
                None
            }
            Err(_) => {
                tracing::debug!(addr = %key.addr, "node timed out");
                None
            }
        };
        if obs.is_none() {
            conn = None;
        }
        let Some(registry) = nodes.upgrade() else { return };
        if registry.observed(&key, obs) {
            let _ = registry.trigger.unbounded_send(key.cluster.clone());
        }
        drop(registry);
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = poke.notified() => {}
        }
    }
}

async fn ask(conn: &mut Option<Conn>, addr: &str, password: Option<&str>) -> Result<NodeObs, DriverError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(connect(addr, password).await?),
    };
    node_state(c, addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    /// A real node, in this process, on a loopback port.
    async fn node(password: Option<&str>) -> ferrokv_node::server::Running {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let args = ferrokv_node::config::ServeArgs {
            port: Some(0),
            bind: Some(vec!["127.0.0.1".into()]),
            requirepass: password.map(str::to_string),
            cluster_enabled: Some("yes".into()),
            dir: Some(dir),
            ..Default::default()
        };
        ferrokv_node::server::start(&args).await.expect("node starts")
    }

    fn key(cluster: &ObjectRef<KvCluster>, uid: &str, addr: &str) -> NodeKey {
        NodeKey {
            cluster: cluster.clone(),
            pod_uid: uid.into(),
            addr: addr.into(),
        }
    }

    async fn next_trigger(rx: &mut mpsc::UnboundedReceiver<ObjectRef<KvCluster>>) -> ObjectRef<KvCluster> {
        tokio::time::timeout(Duration::from_secs(10), rx.next())
            .await
            .expect("a trigger within 10 s")
            .expect("trigger channel open")
    }

    #[tokio::test]
    async fn unknown_until_polled_then_cached_and_push_recorded() {
        let running = node(Some("pw")).await;
        let addr = running.addr().to_string();
        let (tx, mut rx) = mpsc::unbounded();
        let nodes = Nodes::new(tx);
        let cluster = ObjectRef::<KvCluster>::new("kv").within("ns");
        let wanted = [key(&cluster, "uid-1", &addr)];

        // Never heard from: unreachable for now, and the poller's first answer wakes the cluster.
        assert_eq!(nodes.read(&cluster, &wanted, Some("pw")), vec![None]);
        assert_eq!(next_trigger(&mut rx).await, cluster);
        let obs = nodes.read(&cluster, &wanted, Some("pw"))[0].clone().expect("answered");
        assert_eq!(obs.id.len(), 40, "node ID {}", obs.id);
        assert!(obs.held.is_none() && !obs.replica);

        // A push ends with the node recorded as holding it, and the cluster woken.
        let t = ferrokv_node::cluster::driver::build_topology(
            1,
            &[vec![ferrokv_node::cluster::topology::Node {
                id: obs.id.clone(),
                ip: "127.0.0.1".into(),
                port: running.addr().port(),
                cport: None,
            }]],
        );
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        nodes.push(cluster.clone(), t.clone(), Some("pw".into()), move |o| async move {
            let _ = done_tx.send(o);
        });
        assert_eq!(nodes.pending_push(&cluster), Some(1));
        let outcome = done_rx.await.expect("push done");
        assert_eq!((outcome.accepted, outcome.failed), (vec![addr.clone()], vec![]));
        assert_eq!(nodes.pending_push(&cluster), None);
        assert_eq!(next_trigger(&mut rx).await, cluster);
        let held = nodes.read(&cluster, &wanted, Some("pw"))[0]
            .clone()
            .and_then(|o| o.held);
        assert_eq!(held.map(|h| h.epoch), Some(1));

        // A new Pod incarnation at the same address is not the node answered before.
        let recreated = [key(&cluster, "uid-2", &addr)];
        assert_eq!(nodes.read(&cluster, &recreated, Some("pw")), vec![None]);
        assert_eq!(
            nodes.pollers.lock().len(),
            1,
            "the old incarnation's poller was stopped"
        );
        running.shutdown().await;
    }

    #[tokio::test]
    async fn a_node_that_goes_away_wakes_its_cluster_and_forget_stops_pollers() {
        let running = node(None).await;
        let addr = running.addr().to_string();
        let (tx, mut rx) = mpsc::unbounded();
        let nodes = Nodes::new(tx);
        let cluster = ObjectRef::<KvCluster>::new("kv").within("ns");
        let wanted = [key(&cluster, "uid-1", &addr)];
        assert_eq!(nodes.read(&cluster, &wanted, None), vec![None]);
        assert_eq!(next_trigger(&mut rx).await, cluster);
        assert!(nodes.read(&cluster, &wanted, None)[0].is_some());

        // The node stops: its next poll fails, the cluster is woken and reads it as unreachable.
        running.shutdown().await;
        assert_eq!(next_trigger(&mut rx).await, cluster);
        assert_eq!(nodes.read(&cluster, &wanted, None), vec![None]);

        // A Pod no longer wanted (not Ready, gone) has its poller stopped; forget stops the rest.
        let other = [key(&cluster, "uid-9", "127.0.0.1:1")];
        nodes.read(&cluster, &other, None);
        assert_eq!(nodes.pollers.lock().keys().cloned().collect::<Vec<_>>(), other.to_vec());
        nodes.forget(&cluster);
        assert!(nodes.pollers.lock().is_empty());
        assert_eq!(nodes.pending_push(&cluster), None);
    }

    #[test]
    fn offset_alone_is_no_change() {
        let a = NodeObs {
            id: "n1".into(),
            offset: 10,
            ..Default::default()
        };
        let b = NodeObs {
            offset: 99,
            ..a.clone()
        };
        let c = NodeObs {
            link_up: true,
            ..a.clone()
        };
        assert!(same_for_planning(Some(&a), Some(&b)));
        assert!(!same_for_planning(Some(&a), Some(&c)));
        assert!(!same_for_planning(Some(&a), None));
        assert!(same_for_planning(None, None));
    }
}
