//! The decision of one reconcile: (spec, status, observed) → topology action, Pod roles,
//! status and the Events to record. A pure function, so every case is a plain `#[test]`.
//!
//! # Topology rules
//!
//! - **Status is the memory.** The topology last decided is kept in `status` (written *before*
//!   it is pushed), so an operator that restarts rebuilds it from there and never reshuffles
//!   slots. If status has none but the nodes hold one (status lost), the newest held one is
//!   adopted rather than a fresh layout computed. Epochs only go up: a new layout takes
//!   `max(status epoch, any held epoch) + 1`.
//! - **First topology** only when every Pod of every shard is Ready, has an IP and answered
//!   with its node ID: slots are split evenly, ordinal 0 of each shard is its primary.
//! - **Members change, slots never do** (here; resharding is a later feature). A replica whose
//!   Pod came back with a new IP or a new node ID (fresh volume) is put in the topology under
//!   its new address / ID with a new epoch, and resyncs from its primary. New replicas
//!   (`replicasPerShard` up) join once Ready; replicas beyond it are dropped.
//! - **The primary is never changed here.** A primary that is unreachable, or came back as a
//!   different node (its data gone), makes the cluster Degraded and is reported; promoting a
//!   replica is the failover feature, which will be one more rule in this function.
//! - **At most one action**: a push of a new layout, or a re-push of the current one to nodes
//!   that hold an older epoch (a push interrupted by a node restart or an operator crash).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ferrokv_node::cluster::driver::build_topology;
use ferrokv_node::cluster::topology::{Node, Shard, Topology};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::build::{CLIENT_PORT, pod_name};
use crate::crd::{KvCluster, KvClusterStatus, MemberStatus, Phase, ShardStatus};

/// One node Pod as observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodObs {
    pub name: String,
    pub shard: i32,
    pub ordinal: i32,
    pub ip: Option<String>,
    /// The Pod's Ready condition.
    pub ready: bool,
    pub terminating: bool,
    pub role_label: Option<String>,
    /// What the node answered over RESP; `None` when it could not be asked.
    pub node: Option<NodeObs>,
    /// The StatefulSet revision the Pod was created from (`controller-revision-hash`).
    pub revision: Option<String>,
    /// The scheduler's message when it cannot place the Pod (`PodScheduled=False`,
    /// `Unschedulable`): the spec asks for more than the cluster has.
    pub unschedulable: Option<String>,
}

/// A node's own view, read over RESP.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeObs {
    pub id: String,
    pub held: Option<Topology>,
    /// `INFO replication` role is `slave`.
    pub replica: bool,
    /// A replica's link to its primary is up (initial sync done, streaming).
    pub link_up: bool,
    pub offset: u64,
}

impl NodeObs {
    fn held_epoch(&self) -> u64 {
        self.held.as_ref().map_or(0, |t| t.epoch)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub pods: Vec<PodObs>,
    /// Per shard, the revision its StatefulSet's Pods should run (`status.updateRevision`).
    pub update_revisions: BTreeMap<i32, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushReason {
    /// The first layout of the cluster.
    Initial,
    /// A member joined, left, moved or was replaced.
    MembersChanged,
    /// Same layout and epoch, to nodes that hold an older one.
    Resync,
}

/// The one topology action of a reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyAction {
    pub topology: Topology,
    pub reason: PushReason,
}

/// Something the operator decided or noticed, recorded as a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub topology: Option<TopologyAction>,
    /// Pods whose `ferrokv.io/role` label must change (applied after the push).
    pub roles: Vec<(String, Role)>,
    pub status: KvClusterStatus,
    pub decisions: Vec<Decision>,
    pub requeue: Duration,
    /// The Pod to delete so its StatefulSet recreates it from the current template (rolling
    /// update, one Pod at a time; see [`rolling_update`]).
    pub delete: Option<String>,
}

/// How soon to look again while something is in progress. Node state changes wake a reconcile
/// through the node pollers; this is the backstop should a wake-up be missed.
pub const REQUEUE_BUSY: Duration = Duration::from_secs(2);
/// How often a Ready cluster is looked at anyway (a node can fall behind without any Pod change).
pub const REQUEUE_IDLE: Duration = Duration::from_secs(30);

/// One member of the layout being planned: the node and the Pod it runs in.
#[derive(Clone, Debug, PartialEq)]
struct Member {
    node: Node,
    pod: String,
}

fn parse_range(s: &str) -> Option<[u16; 2]> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    Some([a.trim().parse().ok()?, b.trim().parse().ok()?])
}

fn format_range(r: &[u16; 2]) -> String {
    if r[0] == r[1] {
        r[0].to_string()
    } else {
        format!("{}-{}", r[0], r[1])
    }
}

fn member_from_status(m: &MemberStatus) -> Option<Member> {
    let (ip, port) = m.address.rsplit_once(':')?;
    Some(Member {
        node: Node {
            id: m.node_id.clone(),
            ip: ip.to_string(),
            port: port.parse().ok()?,
            cport: None,
        },
        pod: m.pod.clone(),
    })
}

fn member_status(m: &Member) -> MemberStatus {
    MemberStatus {
        pod: m.pod.clone(),
        node_id: m.node.id.clone(),
        address: format!("{}:{}", m.node.ip, m.node.port),
    }
}

/// A layout: per shard, its slots, primary and replicas.
#[derive(Clone, Debug, PartialEq)]
struct LayoutShard {
    slots: Vec<[u16; 2]>,
    primary: Member,
    replicas: Vec<Member>,
}

fn layout_from_status(status: &KvClusterStatus) -> Option<Vec<LayoutShard>> {
    if status.epoch <= 0 || status.shards.is_empty() {
        return None;
    }
    let mut shards: Vec<&ShardStatus> = status.shards.iter().collect();
    shards.sort_by_key(|s| s.index);
    shards
        .into_iter()
        .map(|s| {
            Some(LayoutShard {
                slots: s.slots.iter().map(|r| parse_range(r)).collect::<Option<_>>()?,
                primary: member_from_status(s.primary.as_ref()?)?,
                replicas: s.replicas.iter().map(member_from_status).collect::<Option<_>>()?,
            })
        })
        .collect()
}

/// A held topology as a layout, Pods found by node ID among the observed ones.
fn layout_from_held(t: &Topology, pods_by_id: &HashMap<&str, &PodObs>) -> Option<Vec<LayoutShard>> {
    let member = |id: &str| {
        Some(Member {
            node: t.node(id)?.clone(),
            pod: pods_by_id.get(id).map(|p| p.name.clone()).unwrap_or_default(),
        })
    };
    t.shards
        .iter()
        .map(|s| {
            Some(LayoutShard {
                slots: s.slots.clone(),
                primary: member(&s.primary)?,
                replicas: s.replicas.iter().map(|r| member(r)).collect::<Option<_>>()?,
            })
        })
        .collect()
}

fn topology_of(epoch: u64, layout: &[LayoutShard]) -> Topology {
    Topology {
        epoch,
        nodes: layout
            .iter()
            .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
            .map(|m| m.node.clone())
            .collect(),
        shards: layout
            .iter()
            .map(|s| Shard {
                slots: s.slots.clone(),
                primary: s.primary.node.id.clone(),
                replicas: s.replicas.iter().map(|m| m.node.id.clone()).collect(),
            })
            .collect(),
    }
}

fn layout_of_built(t: &Topology, pods_by_id: &HashMap<&str, &PodObs>) -> Vec<LayoutShard> {
    layout_from_held(t, pods_by_id).unwrap_or_default()
}

/// A Pod that can be put in a topology: Ready, with an IP, and its node answered.
fn usable(p: &PodObs) -> Option<(&str, &NodeObs)> {
    if !p.ready || p.terminating {
        return None;
    }
    Some((p.ip.as_deref()?, p.node.as_ref()?))
}

fn node_of(p: &PodObs) -> Option<Node> {
    let (ip, n) = usable(p)?;
    Some(Node {
        id: n.id.clone(),
        ip: ip.to_string(),
        port: CLIENT_PORT,
        cport: None,
    })
}

/// The pure planner. `now` stamps conditions that change.
pub fn plan(kv: &KvCluster, observed: &Observed, now: Time) -> Plan {
    let name = kv.name_any();
    let spec = &kv.spec;
    let old = kv.status.clone().unwrap_or_default();
    let members_per_shard = 1 + spec.replicas_per_shard.max(0);
    let desired_nodes = spec.shards.max(0) * members_per_shard;
    let pods: HashMap<&str, &PodObs> = observed.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let pods_by_id: HashMap<&str, &PodObs> = observed
        .pods
        .iter()
        .filter_map(|p| Some((p.node.as_ref()?.id.as_str(), p)))
        .collect();
    let held_max = observed
        .pods
        .iter()
        .filter_map(|p| p.node.as_ref()?.held.as_ref())
        .max_by_key(|t| t.epoch);
    let held_epoch = held_max.map_or(0, |t| t.epoch);
    let ready_pods = observed
        .pods
        .iter()
        .filter(|p| p.ready && !p.terminating && p.shard < spec.shards && p.ordinal < members_per_shard)
        .count() as i32;

    let mut decisions = Vec::new();
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let mut progress: Vec<(&'static str, String)> = Vec::new();

    let current = layout_from_status(&old).or_else(|| {
        held_max
            .filter(|t| t.shards.len() == spec.shards as usize)
            .and_then(|t| layout_from_held(t, &pods_by_id))
    });
    let base_epoch = (old.epoch.max(0) as u64).max(held_epoch);

    let (layout, action) = match current {
        None => {
            let mut shards = Vec::new();
            for s in 0..spec.shards {
                let members: Option<Vec<Node>> = (0..members_per_shard)
                    .map(|o| pods.get(pod_name(&name, s, o).as_str()).and_then(|p| node_of(p)))
                    .collect();
                shards.push(members);
            }
            match shards.into_iter().collect::<Option<Vec<_>>>() {
                Some(shards) if desired_nodes > 0 => {
                    let t = build_topology(base_epoch + 1, &shards);
                    decisions.push(Decision {
                        warning: false,
                        reason: "TopologyCreated",
                        note: format!(
                            "all {desired_nodes} nodes ready: {} shards, slots split evenly, ordinal 0 primary, epoch {}",
                            spec.shards, t.epoch
                        ),
                    });
                    let layout = layout_of_built(&t, &pods_by_id);
                    (
                        Some(layout),
                        Some(TopologyAction {
                            topology: t,
                            reason: PushReason::Initial,
                        }),
                    )
                }
                _ => {
                    progress.push((
                        "WaitingForPods",
                        format!("{ready_pods}/{desired_nodes} node Pods ready; the first topology waits for all"),
                    ));
                    (None, None)
                }
            }
        }
        Some(cur) => {
            let mut next = Vec::with_capacity(cur.len());
            for (s, shard) in cur.iter().enumerate() {
                next.push(plan_shard(
                    &name,
                    s as i32,
                    shard,
                    members_per_shard,
                    &pods,
                    &mut decisions,
                    &mut problems,
                ));
            }
            let action = if next != cur {
                let t = topology_of(base_epoch + 1, &next);
                match t.clone().validate() {
                    Ok(_) => Some(TopologyAction {
                        topology: t,
                        reason: PushReason::MembersChanged,
                    }),
                    Err(e) => {
                        problems.push(("InvalidTopology", format!("planned topology refused: {e}")));
                        None
                    }
                }
            } else {
                let epoch = base_epoch.max(1);
                let stale: Vec<&str> = next
                    .iter()
                    .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
                    .filter_map(|m| Some((m, pods.get(m.pod.as_str())?)))
                    // The member itself, behind: not another node that took over its Pod.
                    .filter(|(m, p)| usable(p).is_some_and(|(_, n)| n.id == m.node.id && n.held_epoch() < epoch))
                    .map(|(_, p)| p.name.as_str())
                    .collect();
                if stale.is_empty() {
                    None
                } else {
                    progress.push(("Resync", format!("nodes behind epoch {epoch}: {}", stale.join(", "))));
                    Some(TopologyAction {
                        topology: topology_of(epoch, &next),
                        reason: PushReason::Resync,
                    })
                }
            };
            let layout = match &action {
                Some(a) if a.reason == PushReason::MembersChanged => next,
                _ => cur,
            };
            (Some(layout), action)
        }
    };

    let epoch = action
        .as_ref()
        .map_or(base_epoch, |a| a.topology.epoch)
        .max(old.epoch.max(0) as u64);

    // Per-shard readiness and the role labels.
    let mut shard_status = Vec::new();
    let mut roles = Vec::new();
    let mut all_ready = layout.is_some();
    if let Some(layout) = &layout {
        for (s, shard) in layout.iter().enumerate() {
            let in_sync = |m: &Member, replica: bool| {
                pods.get(m.pod.as_str()).is_some_and(|p| {
                    usable(p).is_some_and(|(ip, n)| {
                        n.id == m.node.id
                            && ip == m.node.ip
                            && n.held_epoch() >= epoch
                            && (!replica || (n.replica && n.link_up))
                    })
                })
            };
            let ready = shard.replicas.len() as i32 == members_per_shard - 1
                && in_sync(&shard.primary, false)
                && shard.replicas.iter().all(|m| in_sync(m, true));
            all_ready &= ready;
            if !ready && action.is_none() {
                let lagging: Vec<&str> = std::iter::once(&shard.primary)
                    .chain(&shard.replicas)
                    .filter(|m| !in_sync(m, **m != shard.primary))
                    .map(|m| m.pod.as_str())
                    .collect();
                if !lagging.is_empty() {
                    progress.push(("Syncing", format!("shard {s}: waiting for {}", lagging.join(", "))));
                }
            }
            shard_status.push(ShardStatus {
                index: s as i32,
                slots: shard.slots.iter().map(format_range).collect(),
                primary: Some(member_status(&shard.primary)),
                replicas: shard.replicas.iter().map(member_status).collect(),
                ready,
            });
            for (m, role) in std::iter::once((&shard.primary, Role::Primary))
                .chain(shard.replicas.iter().map(|m| (m, Role::Replica)))
            {
                if let Some(p) = pods.get(m.pod.as_str())
                    && p.node.as_ref().is_some_and(|n| n.id == m.node.id)
                    && p.role_label.as_deref() != Some(role.label())
                {
                    roles.push((p.name.clone(), role));
                }
            }
        }
    }
    let ready = all_ready && action.is_none();

    // Until some node holds a topology the cluster is still being created, even when the layout
    // is already decided (an operator that crashed between its status write and the push).
    let first_push = action
        .as_ref()
        .is_some_and(|a| a.reason == PushReason::Initial || (a.reason == PushReason::Resync && held_epoch == 0));
    let phase = if layout.is_none() || first_push {
        if observed.pods.is_empty() {
            Phase::Pending
        } else {
            Phase::Creating
        }
    } else if ready {
        Phase::Ready
    } else if problems.is_empty() && matches!(old.phase, None | Some(Phase::Pending) | Some(Phase::Creating)) {
        // Replicas doing their first sync after the first push: still creating, not degraded.
        Phase::Creating
    } else {
        Phase::Degraded
    };
    if phase == Phase::Degraded && problems.is_empty() {
        let missing = desired_nodes - ready_pods;
        problems.push(if missing > 0 {
            (
                "MembersNotReady",
                format!("{ready_pods}/{desired_nodes} node Pods ready"),
            )
        } else {
            (
                "MembersSyncing",
                "a topology change is being applied or replicas are syncing".into(),
            )
        });
    }
    // A Pod the scheduler cannot place: the spec asks for more than the cluster has. It is the
    // reason the cluster is degraded (also while it is being created: it would never finish).
    let unschedulable: Vec<&PodObs> = observed
        .pods
        .iter()
        .filter(|p| p.unschedulable.is_some() && !p.terminating)
        .collect();
    let phase = if unschedulable.is_empty() {
        phase
    } else {
        for p in unschedulable.iter().rev() {
            problems.insert(
                0,
                (
                    "Unschedulable",
                    format!(
                        "Pod {} cannot be scheduled: {}",
                        p.name,
                        p.unschedulable.as_deref().unwrap_or_default()
                    ),
                ),
            );
        }
        Phase::Degraded
    };
    let delete = rolling_update(observed, &shard_status, ready && action.is_none());
    if let Some((pod, from, to)) = &delete {
        let note = format!("replacing Pod {pod} (revision {from} -> {to})");
        progress.push(("RollingUpdate", note.clone()));
        decisions.push(Decision {
            warning: false,
            reason: "RollingUpdate",
            note,
        });
    } else if let Some(p) = observed.pods.iter().find(|p| outdated(observed, p)) {
        progress.push((
            "RollingUpdate",
            format!("Pod {} waits for the cluster to be Ready to be replaced", p.name),
        ));
    }
    if let Some(a) = &action {
        progress.insert(
            0,
            (
                "TopologyPush",
                format!("pushing epoch {} ({:?})", a.topology.epoch, a.reason),
            ),
        );
    }

    let generation = kv.metadata.generation;
    let old_cond = |t: &str| old.conditions.iter().find(|c| c.type_ == t);
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" }.to_string();
        let last_transition_time = match old_cond(type_) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.clone(),
        };
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time,
        }
    };
    let degraded = phase == Phase::Degraded;
    let (degraded_reason, degraded_msg) = problems
        .first()
        .cloned()
        .unwrap_or(("AsExpected", "every member is serving".into()));
    let (progress_reason, progress_msg) = progress.first().cloned().unwrap_or(("Stable", "nothing to do".into()));
    let conditions = vec![
        condition(
            "Ready",
            ready,
            if ready { "AllShardsReady" } else { "NotReady" },
            if ready {
                format!("{} shards serving all 16384 slots at epoch {epoch}", spec.shards)
            } else {
                format!("phase {phase:?}")
            },
        ),
        condition("Progressing", !progress.is_empty(), progress_reason, progress_msg),
        condition(
            "Degraded",
            degraded,
            if degraded { degraded_reason } else { "AsExpected" },
            if degraded {
                degraded_msg.clone()
            } else {
                "every member is serving".into()
            },
        ),
    ];

    let was = |t: &str, s: &str| old_cond(t).is_some_and(|c| c.status == s);
    if ready && !was("Ready", "True") {
        decisions.push(Decision {
            warning: false,
            reason: "Ready",
            note: format!("all shards ready at epoch {epoch}"),
        });
    }
    if degraded && !(was("Degraded", "True") && old_cond("Degraded").is_some_and(|c| c.reason == degraded_reason)) {
        decisions.push(Decision {
            warning: true,
            reason: "Degraded",
            note: format!("{degraded_reason}: {degraded_msg}"),
        });
    }

    let mut endpoints = vec![format!(
        "{name}.{}.svc:{CLIENT_PORT}",
        kv.namespace().unwrap_or_default()
    )];
    endpoints.extend(
        shard_status
            .iter()
            .filter_map(|s| s.primary.as_ref().map(|p| p.address.clone())),
    );

    let status = KvClusterStatus {
        phase: Some(phase),
        conditions,
        observed_generation: generation,
        ready_nodes: Some(format!("{ready_pods}/{desired_nodes}")),
        epoch: epoch as i64,
        shards: shard_status,
        endpoints,
    };
    Plan {
        topology: action,
        roles,
        status,
        decisions,
        requeue: if ready && delete.is_none() {
            REQUEUE_IDLE
        } else {
            REQUEUE_BUSY
        },
        delete: delete.map(|(pod, _, _)| pod),
    }
}

/// The Pod runs an older revision than its StatefulSet's current template.
fn outdated(observed: &Observed, p: &PodObs) -> bool {
    match (&p.revision, observed.update_revisions.get(&p.shard)) {
        (Some(have), Some(want)) => have != want,
        _ => false,
    }
}

/// The next Pod of a rolling update, with its old and new revision.
///
/// StatefulSets use `OnDelete`, so a template change (image, resources, config) reaches a Pod
/// only when the operator deletes it, and the operator does it the way a database must be
/// restarted:
/// - one Pod at a time, and only while the cluster is Ready (every member serving and in sync),
///   so that at most one member of the whole cluster is ever down for an update;
/// - replicas before primaries: the first replaced replica is the canary. If the new template
///   cannot run (the scheduler cannot place it, the image does not start), the cluster stops
///   being Ready and the update stops there, with one replica down and every primary serving:
///   a bad change never takes a shard's slots away. (Without replicas the first primary is the
///   canary: nothing else can be.)
/// - an outdated Pod the scheduler cannot place holds no process and no data: it is replaced at
///   once, even while the cluster is not Ready, so reverting a bad change undoes it.
fn rolling_update(observed: &Observed, shards: &[ShardStatus], ready: bool) -> Option<(String, String, String)> {
    let revisions = |p: &PodObs| {
        Some((
            p.name.clone(),
            p.revision.clone()?,
            observed.update_revisions.get(&p.shard)?.clone(),
        ))
    };
    let stuck = observed
        .pods
        .iter()
        .find(|p| outdated(observed, p) && p.unschedulable.is_some() && !p.terminating);
    if let Some(p) = stuck {
        return revisions(p);
    }
    if !ready || observed.pods.iter().any(|p| p.terminating) {
        return None;
    }
    let by_name: HashMap<&str, &PodObs> = observed.pods.iter().map(|p| (p.name.as_str(), p)).collect();
    let replicas = shards.iter().flat_map(|s| s.replicas.iter().rev());
    let primaries = shards.iter().filter_map(|s| s.primary.as_ref());
    replicas
        .chain(primaries)
        .filter_map(|m| by_name.get(m.pod.as_str()))
        .find(|p| outdated(observed, p))
        .and_then(|p| revisions(p))
}

/// The next members of one shard (see the module doc for the rules).
fn plan_shard(
    cluster: &str,
    s: i32,
    cur: &LayoutShard,
    members_per_shard: i32,
    pods: &HashMap<&str, &PodObs>,
    decisions: &mut Vec<Decision>,
    problems: &mut Vec<(&'static str, String)>,
) -> LayoutShard {
    let mut primary = cur.primary.clone();
    match pods.get(primary.pod.as_str()) {
        Some(p) if usable(p).is_some_and(|(_, n)| n.id == primary.node.id) => {
            if let Some(node) = node_of(p)
                && node.ip != primary.node.ip
            {
                decisions.push(Decision {
                    warning: false,
                    reason: "MemberMoved",
                    note: format!("primary {} of shard {s} is now at {}", p.name, node.ip),
                });
                primary.node = node;
            }
        }
        Some(p) if usable(p).is_some() => problems.push((
            "PrimaryReplaced",
            format!(
                "primary {} of shard {s} came back as a different node (its data volume is new); \
                 not promoted automatically",
                p.name
            ),
        )),
        _ => problems.push((
            "PrimaryUnavailable",
            format!("primary {} of shard {s} is not ready or not reachable", primary.pod),
        )),
    }
    let by_pod: BTreeMap<&str, &Member> = cur.replicas.iter().map(|m| (m.pod.as_str(), m)).collect();
    let mut replicas = Vec::new();
    for o in 0..members_per_shard {
        let pod = pod_name(cluster, s, o);
        if pod == primary.pod {
            continue;
        }
        let known = by_pod.get(pod.as_str()).copied();
        match (pods.get(pod.as_str()).and_then(|p| node_of(p)), known) {
            (Some(node), Some(m)) => {
                if node.id != m.node.id {
                    decisions.push(Decision {
                        warning: false,
                        reason: "MemberReplaced",
                        note: format!("{pod} of shard {s} is a new node {} (new volume); it resyncs", node.id),
                    });
                } else if node.ip != m.node.ip {
                    decisions.push(Decision {
                        warning: false,
                        reason: "MemberMoved",
                        note: format!("{pod} of shard {s} is now at {}", node.ip),
                    });
                }
                replicas.push(Member { node, pod });
            }
            (Some(node), None) => {
                decisions.push(Decision {
                    warning: false,
                    reason: "MemberJoined",
                    note: format!("{pod} joins shard {s} as a replica"),
                });
                replicas.push(Member { node, pod });
            }
            // Down for now: it stays a member, so it rejoins as itself.
            (None, Some(m)) => replicas.push(m.clone()),
            (None, None) => {}
        }
    }
    for m in &cur.replicas {
        if !replicas.iter().any(|r| r.pod == m.pod) {
            decisions.push(Decision {
                warning: false,
                reason: "MemberRemoved",
                note: format!("{} leaves shard {s} (replicasPerShard lowered)", m.pod),
            });
        }
    }
    LayoutShard {
        slots: cur.slots.clone(),
        primary,
        replicas,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::KvClusterSpec;
    use k8s_openapi::jiff::Timestamp;

    pub(crate) fn cluster(shards: i32, replicas: i32) -> KvCluster {
        let spec: KvClusterSpec =
            serde_json::from_value(serde_json::json!({"shards": shards, "replicasPerShard": replicas})).unwrap();
        let mut kv = KvCluster::new("kv", spec);
        kv.metadata.namespace = Some("ns".into());
        kv.metadata.uid = Some("uid-1".into());
        kv.metadata.generation = Some(1);
        kv
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn id(s: i32, o: i32, gen_: u8) -> String {
        format!("{:02x}{:02x}{:02x}{}", s, o, gen_, "0".repeat(34))
    }

    fn ip(s: i32, o: i32) -> String {
        format!("10.244.{s}.{}", o + 10)
    }

    /// Every Pod of the cluster, Ready and answering, holding `held`.
    fn all_pods(shards: i32, members: i32, held: Option<&Topology>) -> Observed {
        let mut pods = Vec::new();
        for s in 0..shards {
            for o in 0..members {
                pods.push(pod(s, o, held));
            }
        }
        Observed {
            pods,
            update_revisions: BTreeMap::new(),
        }
    }

    fn pod(s: i32, o: i32, held: Option<&Topology>) -> PodObs {
        PodObs {
            name: pod_name("kv", s, o),
            shard: s,
            ordinal: o,
            ip: Some(ip(s, o)),
            ready: true,
            terminating: false,
            role_label: None,
            node: Some(NodeObs {
                id: id(s, o, 0),
                held: held.cloned(),
                replica: o > 0,
                link_up: o > 0,
                offset: 0,
            }),
            revision: Some("rev-1".into()),
            unschedulable: None,
        }
    }

    /// Apply a plan the way a reconcile would: status written, topology pushed, labels set.
    fn converge(kv: &mut KvCluster, obs: &mut Observed, p: &Plan) {
        kv.status = Some(p.status.clone());
        if let Some(a) = &p.topology {
            for pod in &mut obs.pods {
                if let Some(n) = pod.node.as_mut()
                    && a.topology.node(&n.id).is_some()
                {
                    n.held = Some(a.topology.clone());
                }
            }
        }
        for (name, role) in &p.roles {
            if let Some(pod) = obs.pods.iter_mut().find(|p| &p.name == name) {
                pod.role_label = Some(role.label().into());
            }
        }
    }

    /// One reconcile: plan, then apply it as [`converge`] does; returns the plan.
    fn step(kv: &mut KvCluster, obs: &mut Observed) -> Plan {
        let p = plan(kv, obs, now());
        converge(kv, obs, &p);
        p
    }

    /// A cluster brought to Ready: first push, then a look that sees every node in sync.
    fn ready_cluster(shards: i32, replicas: i32) -> (KvCluster, Observed) {
        let mut kv = cluster(shards, replicas);
        let mut obs = all_pods(shards, replicas + 1, None);
        for _ in 0..2 {
            step(&mut kv, &mut obs);
        }
        assert_eq!(kv.status.as_ref().unwrap().phase, Some(Phase::Ready));
        (kv, obs)
    }

    fn cond<'a>(s: &'a KvClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn fresh_cluster_is_pending_and_waits() {
        let kv = cluster(3, 1);
        let p = plan(&kv, &Observed::default(), now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Pending));
        assert_eq!(p.status.epoch, 0);
        assert_eq!(p.status.ready_nodes.as_deref(), Some("0/6"));
        assert_eq!(cond(&p.status, "Progressing").reason, "WaitingForPods");
        assert_eq!(cond(&p.status, "Degraded").status, "False");
        assert_eq!(p.requeue, REQUEUE_BUSY);
    }

    #[test]
    fn partially_ready_cluster_is_creating_without_a_topology() {
        let kv = cluster(3, 1);
        let mut obs = all_pods(3, 2, None);
        obs.pods[3].ready = false;
        obs.pods[4].node = None;
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Creating));
        assert_eq!(p.status.ready_nodes.as_deref(), Some("5/6"));
        assert!(p.roles.is_empty());
    }

    #[test]
    fn all_ready_gives_the_first_topology_then_ready() {
        let mut kv = cluster(3, 1);
        let mut obs = all_pods(3, 2, None);
        let p = plan(&kv, &obs, now());
        let a = p.topology.clone().unwrap();
        assert_eq!(a.reason, PushReason::Initial);
        assert_eq!(a.topology.epoch, 1);
        a.topology.clone().validate().unwrap();
        for s in 0..3 {
            assert_eq!(a.topology.shards[s].primary, id(s as i32, 0, 0));
            assert_eq!(a.topology.shards[s].replicas, vec![id(s as i32, 1, 0)]);
            assert_eq!(a.topology.node(&id(s as i32, 0, 0)).unwrap().ip, ip(s as i32, 0));
        }
        assert_eq!(p.status.phase, Some(Phase::Creating));
        assert_eq!(p.status.epoch, 1);
        assert_eq!(p.status.shards[0].slots, vec!["0-5460"]);
        assert_eq!(p.status.shards[2].slots, vec!["10922-16383"]);
        assert_eq!(p.status.shards[1].primary.as_ref().unwrap().pod, "kv-1-0");
        assert_eq!(p.roles.len(), 6);
        assert!(p.decisions.iter().any(|d| d.reason == "TopologyCreated"));

        converge(&mut kv, &mut obs, &p);
        let p2 = plan(&kv, &obs, now());
        assert_eq!(p2.topology, None);
        assert_eq!(p2.status.phase, Some(Phase::Ready));
        assert_eq!(cond(&p2.status, "Ready").status, "True");
        assert!(p2.roles.is_empty());
        assert!(p2.decisions.iter().any(|d| d.reason == "Ready"));
        assert_eq!(p2.requeue, REQUEUE_IDLE);
        // Stable: a third look changes nothing, not even a condition time.
        converge(&mut kv, &mut obs, &p2);
        let p3 = plan(&kv, &obs, Time(Timestamp::from_second(1_900_000_000).unwrap()));
        assert_eq!(p3.status, p2.status);
        assert!(p3.decisions.is_empty());
    }

    #[test]
    fn first_sync_after_the_first_push_is_still_creating() {
        let mut kv = cluster(1, 1);
        let mut obs = all_pods(1, 2, None);
        step(&mut kv, &mut obs);
        obs.pods[1].node.as_mut().unwrap().link_up = false;
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Creating));
        assert_eq!(cond(&p.status, "Degraded").status, "False");
    }

    #[test]
    fn replicas_not_synced_keep_the_cluster_from_ready() {
        let mut kv = cluster(2, 1);
        let mut obs = all_pods(2, 2, None);
        step(&mut kv, &mut obs);
        step(&mut kv, &mut obs);
        obs.pods[1].node.as_mut().unwrap().link_up = false;
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Degraded));
        assert!(!p.status.shards[0].ready);
        assert!(p.status.shards[1].ready);
        assert_eq!(cond(&p.status, "Progressing").reason, "Syncing");
    }

    #[test]
    fn operator_restart_rebuilds_from_status_with_the_same_slots() {
        // Status of a previous operator: shard order and slots that even_ranges would not give
        // (as after a resharding), epoch 7.
        let mut kv = cluster(2, 0);
        let mut obs = all_pods(2, 1, None);
        let p = plan(&kv, &obs, now());
        let mut status = p.status.clone();
        status.shards[0].slots = vec!["0-100".into(), "8192-16383".into()];
        status.shards[1].slots = vec!["101-8191".into()];
        status.epoch = 7;
        kv.status = Some(status);
        let p = plan(&kv, &obs, now());
        // Nodes hold nothing (say, the crash came between the status write and the push): the
        // same layout is pushed again at the remembered epoch, slots untouched.
        let a = p.topology.clone().unwrap();
        assert_eq!(a.reason, PushReason::Resync);
        assert_eq!(a.topology.epoch, 7);
        assert_eq!(a.topology.shards[0].slots, vec![[0, 100], [8192, 16383]]);
        assert_eq!(a.topology.shards[1].slots, vec![[101, 8191]]);
        converge(&mut kv, &mut obs, &p);
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Ready));
        assert_eq!(p.status.epoch, 7);
    }

    #[test]
    fn lost_status_adopts_the_held_topology() {
        let mut kv = cluster(2, 0);
        let mut obs = all_pods(2, 1, None);
        step(&mut kv, &mut obs);
        kv.status = None;
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.epoch, 1);
        assert_eq!(p.status.phase, Some(Phase::Ready));
    }

    #[test]
    fn replicas_one_to_two_join_with_a_new_epoch() {
        let (mut kv, mut obs) = ready_cluster(2, 1);
        let slots_before: Vec<_> = kv
            .status
            .as_ref()
            .unwrap()
            .shards
            .iter()
            .map(|s| s.slots.clone())
            .collect();
        kv.spec.replicas_per_shard = 2;
        // The new Pods are not ready yet: Degraded (redundancy below the spec), no push.
        obs.pods.push(PodObs {
            ready: false,
            node: None,
            ..pod(0, 2, None)
        });
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Degraded));
        // Both new Pods ready: one push with both joining.
        obs.pods.pop();
        obs.pods.push(pod(0, 2, None));
        obs.pods.push(pod(1, 2, None));
        let p = plan(&kv, &obs, now());
        let a = p.topology.clone().unwrap();
        assert_eq!(a.reason, PushReason::MembersChanged);
        assert_eq!(a.topology.epoch, 2);
        assert_eq!(a.topology.shards[0].replicas, vec![id(0, 1, 0), id(0, 2, 0)]);
        assert_eq!(a.topology.shards[1].replicas, vec![id(1, 1, 0), id(1, 2, 0)]);
        assert_eq!(p.decisions.iter().filter(|d| d.reason == "MemberJoined").count(), 2);
        converge(&mut kv, &mut obs, &p);
        let p = plan(&kv, &obs, now());
        assert_eq!(p.status.phase, Some(Phase::Ready));
        let slots_after: Vec<_> = p.status.shards.iter().map(|s| s.slots.clone()).collect();
        assert_eq!(slots_before, slots_after);
        assert_eq!(p.status.shards[1].replicas.len(), 2);
    }

    #[test]
    fn replica_replaced_with_a_new_node_id_gets_a_new_epoch() {
        let (mut kv, mut obs) = ready_cluster(2, 1);
        // Pod kv-1-1 deleted: while it is away the shard keeps it as a member (Degraded).
        let i = obs.pods.iter().position(|p| p.name == "kv-1-1").unwrap();
        obs.pods[i].ready = false;
        obs.pods[i].node = None;
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Degraded));
        assert_eq!(p.status.shards[1].replicas[0].node_id, id(1, 1, 0));
        assert!(p.decisions.iter().any(|d| d.reason == "Degraded" && d.warning));
        converge(&mut kv, &mut obs, &p);
        // Back with a new volume (new ID) and a new IP.
        obs.pods[i] = pod(1, 1, None);
        obs.pods[i].ip = Some("10.244.9.9".into());
        obs.pods[i].node.as_mut().unwrap().id = id(1, 1, 1);
        let p = plan(&kv, &obs, now());
        let a = p.topology.clone().unwrap();
        assert_eq!(a.reason, PushReason::MembersChanged);
        assert_eq!(a.topology.epoch, 2);
        assert_eq!(a.topology.shards[1].replicas, vec![id(1, 1, 1)]);
        assert_eq!(a.topology.node(&id(1, 1, 1)).unwrap().ip, "10.244.9.9");
        assert!(a.topology.node(&id(1, 1, 0)).is_none());
        assert_eq!(a.topology.shards[0], {
            let t = kv.status.as_ref().unwrap();
            Shard {
                slots: vec![[0, 8191]],
                primary: t.shards[0].primary.as_ref().unwrap().node_id.clone(),
                replicas: vec![t.shards[0].replicas[0].node_id.clone()],
            }
        });
        assert!(p.decisions.iter().any(|d| d.reason == "MemberReplaced"));
        // The new node's role label comes with the push.
        assert!(p.roles.contains(&("kv-1-1".to_string(), Role::Replica)));
        converge(&mut kv, &mut obs, &p);
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(p.status.phase, Some(Phase::Ready));
    }

    #[test]
    fn replica_restarted_with_a_stale_epoch_gets_a_resync() {
        let mut kv = cluster(1, 1);
        let mut obs = all_pods(1, 2, None);
        step(&mut kv, &mut obs);
        obs.pods[1].node.as_mut().unwrap().held = None;
        let p = plan(&kv, &obs, now());
        let a = p.topology.unwrap();
        assert_eq!(a.reason, PushReason::Resync);
        assert_eq!(a.topology.epoch, 1);
    }

    #[test]
    fn primary_missing_is_degraded_and_never_promoted() {
        let mut kv = cluster(2, 1);
        let mut obs = all_pods(2, 2, None);
        step(&mut kv, &mut obs);
        step(&mut kv, &mut obs);
        obs.pods.retain(|p| p.name != "kv-0-0");
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None, "no failover in this version");
        assert_eq!(p.status.phase, Some(Phase::Degraded));
        let d = cond(&p.status, "Degraded");
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "PrimaryUnavailable"));
        assert_eq!(cond(&p.status, "Ready").status, "False");
        assert_eq!(p.status.shards[0].primary.as_ref().unwrap().pod, "kv-0-0");
        assert!(p.decisions.iter().any(|d| d.reason == "Degraded" && d.warning));
        // Back with a new volume: still not promoted, reported as replaced.
        let mut back = pod(0, 0, None);
        back.node.as_mut().unwrap().id = id(0, 0, 1);
        obs.pods.push(back);
        let p = plan(&kv, &obs, now());
        assert_eq!(p.topology, None);
        assert_eq!(cond(&p.status, "Degraded").reason, "PrimaryReplaced");
    }

    #[test]
    fn primary_back_at_a_new_ip_is_moved() {
        let mut kv = cluster(1, 0);
        let mut obs = all_pods(1, 1, None);
        step(&mut kv, &mut obs);
        obs.pods[0].ip = Some("10.244.7.7".into());
        let p = plan(&kv, &obs, now());
        let a = p.topology.unwrap();
        assert_eq!(a.topology.epoch, 2);
        assert_eq!(a.topology.nodes[0].ip, "10.244.7.7");
        assert_eq!(a.topology.nodes[0].id, id(0, 0, 0));
    }

    #[test]
    fn replicas_lowered_drops_the_highest_ordinals() {
        let mut kv = cluster(1, 2);
        let mut obs = all_pods(1, 3, None);
        step(&mut kv, &mut obs);
        kv.spec.replicas_per_shard = 1;
        let p = plan(&kv, &obs, now());
        let a = p.topology.unwrap();
        assert_eq!(a.topology.shards[0].replicas, vec![id(0, 1, 0)]);
        assert!(p.decisions.iter().any(|d| d.reason == "MemberRemoved"));
    }

    #[test]
    fn slot_ranges_round_trip() {
        assert_eq!(parse_range("0-5460"), Some([0, 5460]));
        assert_eq!(parse_range("7"), Some([7, 7]));
        assert_eq!(format_range(&[7, 7]), "7");
        assert_eq!(parse_range("x"), None);
    }

    /// Every StatefulSet's template moved to `rev` (a spec change): the Pods still run rev-1.
    fn template_changed(obs: &mut Observed, shards: i32, rev: &str) {
        obs.update_revisions = (0..shards).map(|s| (s, rev.to_string())).collect();
    }

    /// The Pod `name` deleted and recreated by its StatefulSet from `rev`, Ready again.
    fn recreated(obs: &mut Observed, name: &str, rev: &str) {
        let p = obs.pods.iter_mut().find(|p| p.name == name).unwrap();
        p.revision = Some(rev.into());
    }

    #[test]
    fn a_template_change_rolls_one_pod_at_a_time_replicas_first_primaries_last() {
        let (mut kv, mut obs) = ready_cluster(2, 1);
        template_changed(&mut obs, 2, "rev-2");
        let mut order = Vec::new();
        for _ in 0..4 {
            let p = plan(&kv, &obs, now());
            let pod = p.delete.clone().expect("a Pod to replace");
            assert!(
                p.decisions
                    .iter()
                    .any(|d| d.reason == "RollingUpdate" && d.note.contains(&pod))
            );
            assert_eq!(cond(&p.status, "Progressing").reason, "RollingUpdate");
            converge(&mut kv, &mut obs, &p);
            // While the replaced Pod is away, nothing else is touched.
            let away = obs.pods.iter_mut().find(|x| x.name == pod).unwrap();
            away.ready = false;
            let p2 = plan(&kv, &obs, now());
            assert_eq!(p2.delete, None, "a second Pod replaced while {pod} is down");
            converge(&mut kv, &mut obs, &p2);
            obs.pods.iter_mut().find(|x| x.name == pod).unwrap().ready = true;
            recreated(&mut obs, &pod, "rev-2");
            step(&mut kv, &mut obs);
            order.push(pod);
        }
        assert_eq!(
            order,
            ["kv-0-1", "kv-1-1", "kv-0-0", "kv-1-0"],
            "replicas first, then primaries"
        );
        let p = plan(&kv, &obs, now());
        assert_eq!(p.delete, None);
        assert_eq!(p.status.phase, Some(Phase::Ready));
    }

    #[test]
    fn an_unschedulable_replica_degrades_the_cluster_and_stops_the_roll() {
        let (mut kv, mut obs) = ready_cluster(2, 1);
        template_changed(&mut obs, 2, "rev-2");
        let p = plan(&kv, &obs, now());
        assert_eq!(p.delete.as_deref(), Some("kv-0-1"));
        converge(&mut kv, &mut obs, &p);
        // Recreated from rev-2, which asks for more CPU than any node has.
        let canary = obs.pods.iter_mut().find(|x| x.name == "kv-0-1").unwrap();
        *canary = PodObs {
            name: "kv-0-1".into(),
            shard: 0,
            ordinal: 1,
            revision: Some("rev-2".into()),
            unschedulable: Some("0/1 nodes are available: 1 Insufficient cpu.".into()),
            ..PodObs::default()
        };
        let p = plan(&kv, &obs, now());
        assert_eq!(p.status.phase, Some(Phase::Degraded));
        let d = cond(&p.status, "Degraded");
        assert_eq!((d.status.as_str(), d.reason.as_str()), ("True", "Unschedulable"));
        assert!(
            d.message.contains("kv-0-1") && d.message.contains("Insufficient cpu"),
            "{}",
            d.message
        );
        assert_eq!(p.delete, None, "no other Pod is touched: every primary keeps serving");
        assert!(p.topology.is_none(), "the member stays in the topology");
        converge(&mut kv, &mut obs, &p);

        // The spec reverted: rev-1 again. The stuck Pod is replaced at once (not Ready, but it
        // holds nothing), the others are current.
        template_changed(&mut obs, 2, "rev-1");
        let p = plan(&kv, &obs, now());
        assert_eq!(p.delete.as_deref(), Some("kv-0-1"));
    }

    #[test]
    fn an_unschedulable_pod_of_a_new_cluster_is_degraded_not_creating() {
        let kv = cluster(1, 0);
        let obs = Observed {
            pods: vec![PodObs {
                name: "kv-0-0".into(),
                unschedulable: Some("0/1 nodes are available: 1 Insufficient memory.".into()),
                ..PodObs::default()
            }],
            update_revisions: BTreeMap::new(),
        };
        let p = plan(&kv, &obs, now());
        assert_eq!(p.status.phase, Some(Phase::Degraded));
        assert_eq!(cond(&p.status, "Degraded").reason, "Unschedulable");
        assert!(p.topology.is_none());
    }
}
