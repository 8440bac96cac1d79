//! Observe: the cluster's Pods from the watch cache and each node's own view, as last polled
//! by [`Nodes`](super::nodes::Nodes).
//!
//! Nodes are asked directly at their Pod IP (never through a Service or DNS: the operator must
//! see each node, including one no Service routes to), by background pollers: observing costs
//! no round trip. A node that does not answer (within [`NODE_TIMEOUT`]), or has not answered
//! yet, is observed as "not reachable" (`node: None`), which the planner treats like a Pod that
//! is not Ready.

use std::sync::Arc;
use std::time::Duration;

use ferrokv_node::cluster::driver::{Conn, DriverError, Value};
use ferrokv_node::cluster::topology::Topology;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};

use super::build::{CLIENT_PORT, LABEL_CLUSTER, LABEL_ROLE, LABEL_SHARD, auth_ref};
use super::nodes::{NodeKey, Nodes};
use super::plan::{NodeObs, Observed, PodObs};
use crate::crd::KvCluster;

/// How long one node may take to answer all the questions of one observation.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("failed to read the auth secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("auth secret {name} has no key {key}")]
    SecretKey { name: String, key: String },
}

/// The password the nodes require, `None` while its Secret does not exist.
/// The cluster's password: from the watch cache of the Secrets the operator generated when it is
/// one of them (no round trip), else (a Secret the user provides, which the operator does not
/// watch) read from the API.
pub async fn password(
    client: &kube::Client,
    generated: &Store<Secret>,
    kv: &KvCluster,
) -> Result<Option<String>, ObserveError> {
    let ns = kv.namespace().unwrap_or_default();
    let (name, key) = auth_ref(kv);
    let secret = match generated.get(&ObjectRef::new(&name).within(&ns)) {
        Some(cached) => Some(Secret::clone(&cached)),
        None => Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|source| ObserveError::Secret {
                name: name.clone(),
                source,
            })?,
    };
    let Some(secret) = secret else { return Ok(None) };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(&key)).cloned());
    value.map(Some).ok_or(ObserveError::SecretKey { name, key })
}

/// The cluster's Pods from the watch cache `pods` (no API round trip: the reconcile was
/// triggered by the very watch that fills it), and each Ready node's own view from `nodes`.
pub fn observe(
    pods: &Store<Pod>,
    statefulsets: &Store<StatefulSet>,
    nodes: &Arc<Nodes>,
    kv: &KvCluster,
    password: Option<&str>,
) -> Observed {
    let ns = kv.namespace().unwrap_or_default();
    let name = kv.name_any();
    let list: Vec<_> = pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && p.labels().get(LABEL_CLUSTER) == Some(&name))
        .collect();
    let cluster = ObjectRef::from_obj(kv);
    let found: Vec<(PodObs, Option<NodeKey>)> = list
        .iter()
        .filter_map(|p| {
            let obs = pod_obs(&name, p)?;
            let key = match (&obs.ip, obs.ready && !obs.terminating, &p.metadata.uid) {
                (Some(ip), true, Some(uid)) => Some(NodeKey {
                    cluster: cluster.clone(),
                    pod_uid: uid.clone(),
                    addr: format!("{ip}:{CLIENT_PORT}"),
                }),
                _ => None,
            };
            Some((obs, key))
        })
        .collect();
    let wanted: Vec<NodeKey> = found.iter().filter_map(|(_, k)| k.clone()).collect();
    let mut answers = nodes.read(&cluster, &wanted, password).into_iter();
    let mut pods: Vec<PodObs> = found
        .into_iter()
        .map(|(mut obs, key)| {
            if key.is_some() {
                obs.node = answers.next().flatten();
            }
            obs
        })
        .collect();
    pods.sort_by_key(|p| (p.shard, p.ordinal));
    let update_revisions = statefulsets
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()) && s.labels().get(LABEL_CLUSTER) == Some(&name))
        .filter_map(|s| {
            let shard: i32 = s.labels().get(LABEL_SHARD)?.parse().ok()?;
            Some((shard, s.status.as_ref()?.update_revision.clone()?))
        })
        .collect();
    Observed { pods, update_revisions }
}

fn pod_obs(cluster: &str, pod: &Pod) -> Option<PodObs> {
    let name = pod.name_any();
    let shard: i32 = pod.labels().get(LABEL_SHARD)?.parse().ok()?;
    // `<cluster>-<shard>-<ordinal>`: the StatefulSet's naming, which also tells the ordinal.
    let ordinal: i32 = name.strip_prefix(&format!("{cluster}-{shard}-"))?.parse().ok()?;
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    Some(PodObs {
        name,
        shard,
        ordinal,
        ip: status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        role_label: pod.labels().get(LABEL_ROLE).cloned(),
        node: None,
        revision: pod.labels().get("controller-revision-hash").cloned(),
        unschedulable: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| {
                c.iter().find(|c| {
                    c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
                })
            })
            .map(|c| c.message.clone().unwrap_or_else(|| "no node can run it".into())),
    })
}

/// Open an authenticated admin connection to a node.
pub async fn connect(addr: &str, password: Option<&str>) -> Result<Conn, DriverError> {
    let mut c = Conn::connect(addr).await?;
    if let Some(pw) = password {
        c.ok(&[b"AUTH", pw.as_bytes()]).await?;
    }
    Ok(c)
}

fn protocol(addr: &str, msg: String) -> DriverError {
    DriverError::Protocol {
        addr: addr.to_string(),
        msg,
    }
}

/// A node's state: its ID, the topology it holds, its replication role, link and offset.
pub async fn node_state(c: &mut Conn, addr: &str) -> Result<NodeObs, DriverError> {
    let id = match c.ok(&[b"CLUSTER", b"MYID"]).await? {
        Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        v => return Err(protocol(addr, format!("unexpected CLUSTER MYID reply {v:?}"))),
    };
    let held = match c.ok(&[b"CLUSTER", b"GETTOPOLOGY"]).await? {
        Value::Nil => None,
        Value::Bulk(b) => Some(Topology::from_json(&b).map_err(|e| protocol(addr, e.to_string()))?),
        v => return Err(protocol(addr, format!("unexpected CLUSTER GETTOPOLOGY reply {v:?}"))),
    };
    let info = match c.ok(&[b"INFO", b"replication"]).await? {
        Value::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
        v => return Err(protocol(addr, format!("unexpected INFO reply {v:?}"))),
    };
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':').map(str::trim))
    };
    let replica = field("role") == Some("slave");
    Ok(NodeObs {
        id,
        held,
        replica,
        link_up: replica && field("master_link_status") == Some("up"),
        offset: field(if replica {
            "slave_repl_offset"
        } else {
            "master_repl_offset"
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0),
    })
}
