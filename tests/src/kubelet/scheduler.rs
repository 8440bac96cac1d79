//! The scheduler of a one-node cluster: bind the Pods that fit the node, report the ones that
//! do not the way kube-scheduler does.
//!
//! There is no kube-scheduler in the sandbox. With a single node there is nothing to choose, but
//! there is something to refuse: the operator must see what a real cluster shows when a spec
//! cannot be satisfied, so this module runs kube-scheduler's resource and node-selector filters
//! (v1.36 `NodeResourcesFit`: cpu, memory, ephemeral-storage and the Pod count; the `nodeSelector`
//! half of `NodeAffinity`) against the Node:
//! - A Pod's request is kube-scheduler's: per resource, the sum of its containers plus its
//!   restartable (sidecar) init containers, or the largest init container (plus the sidecars
//!   started before it) if that is more; pod-level `resources.requests` replace it where set;
//!   `spec.overhead` is added. A container with limits and no requests requests its limits (the
//!   apiserver defaults it so; done here too so the pure function agrees on any input).
//! - The node's free capacity is its `status.allocatable` (what [`super::node`] advertises from
//!   [`super::KubeletConfig`]), read back from the Node like kube-scheduler does so the check and
//!   `kubectl describe node` cannot disagree, minus the requests of the Pods bound to it that are
//!   not terminal (kube-scheduler's informer drops Succeeded/Failed Pods; a terminating Pod still
//!   counts: its processes run until its grace period ends). A resource the Pod does not request
//!   is not checked, as in kube-scheduler.
//! - Quantities are exact integers (millicores, bytes) rounded up as `MilliValue`/`Value` do, not
//!   floats: `0.1` cpu eighty times must fit in 8 cpus.
//!
//! A Pod that does not fit stays unbound with kube-scheduler's condition (`PodScheduled=False`,
//! reason `Unschedulable`, its `FitError` message) and a `FailedScheduling` Warning Event, both
//! written only when the message changes (no status churn). It is tried again when capacity may
//! have freed (a bound Pod ended, was deleted or shrank; the Node changed) and every [`RETRY`].
//! Pods just bound count against the node until the watch of bound Pods shows them (kube-scheduler's
//! "assumed" Pods), so two Pods seen at once cannot both take the last free capacity.
//!
//! Deliberately not enforced: node affinity, Pod (anti-)affinity, topology spread and taints. The sandbox has one
//! node, and its purpose is to run the operator's shards: a required anti-affinity between a
//! shard's members (what a production spec sets) could never be satisfied on one node, so every
//! such cluster would stay Pending and nothing could be tested. Nor does it preempt: the message's
//! `preemption:` part is what kube-scheduler writes when no lower-priority Pod can be evicted.
//!
//! Binding goes through the `binding` subresource, exactly the call kube-scheduler makes (the
//! apiserver then sets `spec.nodeName` and `PodScheduled=True`). Volume binding is not waited for
//! here: the kubelet waits for a Pod's claims before starting it, which gives the same order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Ctx, FIELD_MANAGER};

/// Pods not bound yet (unfit or a transient binding failure) are tried again at this pace.
const RETRY: Duration = Duration::from_secs(2);

/// How long a Pod just bound counts against the node without the watch of bound Pods showing it:
/// kube-scheduler's assumed-Pod expiry, for a binding whose Pod is deleted before it is seen.
const ASSUME_TTL: Duration = Duration::from_secs(30);

const SCHEDULER_NAME: &str = "default-scheduler";

/// kube-scheduler's informer excludes terminal Pods: they hold no resources and no Pod slot.
const NOT_TERMINAL: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// kube-scheduler's reason for a `nodeSelector` naming a label value the node lacks.
pub const REASON_SELECTOR: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid quantity {0:?}")]
    Quantity(String),
}

/// Resources in kube-scheduler's units: cpu in millicores, memory and storage in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Resources {
    /// A resource list (`requests`, `limits`, `overhead`, `allocatable`); absent entries are 0.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Result<Self, Error> {
        Self::from_lists(list, None)
    }

    /// A container's requests: `requests`, or `fallback` (its limits) where it has none.
    fn from_lists(
        list: Option<&BTreeMap<String, Quantity>>,
        fallback: Option<&BTreeMap<String, Quantity>>,
    ) -> Result<Self, Error> {
        let get = |name: &str, scale: u32| -> Result<i64, Error> {
            let quantity = list
                .and_then(|l| l.get(name))
                .or_else(|| fallback.and_then(|l| l.get(name)));
            quantity.map_or(Ok(0), |q| quantity_scaled(&q.0, scale))
        };
        Ok(Self {
            milli_cpu: get("cpu", 3)?,
            memory: get("memory", 0)?,
            ephemeral_storage: get("ephemeral-storage", 0)?,
        })
    }

    fn add(&mut self, other: &Self) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
    }

    fn max(&mut self, other: &Self) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
    }
}

/// A quantity (`250m`, `1.5`, `64Mi`, `1G`, `2e3`) times 10^`scale`, rounded up: what
/// `Quantity.MilliValue()` (scale 3) and `Value()` (scale 0) give. Exact (integer arithmetic):
/// requests are summed and compared against capacity, where float rounding could refuse a Pod
/// that fits exactly. Values beyond 2^63-1 are capped there, as Kubernetes does. Negative
/// quantities are refused: neither requests nor capacities can be negative.
pub fn quantity_scaled(text: &str, scale: u32) -> Result<i64, Error> {
    let invalid = || Error::Quantity(text.to_owned());
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let split = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(split);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(invalid());
    }
    let (binary_exp, decimal_exp): (u32, i64) = match suffix {
        "" => (0, 0),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        other => {
            let exp = other.strip_prefix(['e', 'E']).ok_or_else(invalid)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid());
            }
            (0, exp.parse().map_err(|_| invalid())?)
        }
    };
    let frac = frac.trim_end_matches('0');
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    // u128 holds 38 decimal digits; more significant digits than that is no real quantity.
    if digits.len() > 36 {
        return Err(invalid());
    }
    let mantissa: u128 = digits.parse().map_err(|_| invalid())?;
    let exp = decimal_exp + i64::from(scale) - frac.len() as i64;
    let capped = |v: Option<u128>| v.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let scaled = mantissa.checked_mul(1u128 << binary_exp);
    if exp >= 0 {
        let power = u32::try_from(exp).ok().and_then(|e| 10u128.checked_pow(e));
        return Ok(capped(scaled.zip(power).and_then(|(s, p)| s.checked_mul(p))));
    }
    let Some(scaled) = scaled else {
        return Ok(i64::MAX);
    };
    // Below 10^-38 of the unit, a positive value still rounds up to 1.
    match u32::try_from(-exp).ok().and_then(|e| 10u128.checked_pow(e)) {
        Some(divisor) => Ok(capped(Some(scaled.div_ceil(divisor)))),
        None => Ok(1),
    }
}

fn container_requests(container: &Container) -> Result<Resources, Error> {
    let resources = container.resources.as_ref();
    Resources::from_lists(
        resources.and_then(|r| r.requests.as_ref()),
        resources.and_then(|r| r.limits.as_ref()),
    )
}

/// What a Pod asks of a node: `resource.PodRequests` of Kubernetes v1.36 (sidecar formula,
/// pod-level requests, overhead), without in-place resize (an unbound Pod has none).
pub fn pod_requests(spec: &PodSpec) -> Result<Resources, Error> {
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&container_requests(container)?);
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for init in spec.init_containers.iter().flatten() {
        let request = container_requests(init)?;
        if init.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running beside the containers and every later init container.
            total.add(&request);
            sidecars.add(&request);
            init_peak.max(&sidecars);
        } else {
            let mut running = request;
            running.add(&sidecars);
            init_peak.max(&running);
        }
    }
    total.max(&init_peak);
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        let level = Resources::from_list(Some(pod_level))?;
        if pod_level.contains_key("cpu") {
            total.milli_cpu = level.milli_cpu;
        }
        if pod_level.contains_key("memory") {
            total.memory = level.memory;
        }
    }
    total.add(&Resources::from_list(spec.overhead.as_ref())?);
    Ok(total)
}

/// The node as the filters see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub labels: BTreeMap<String, String>,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> Result<Self, Error> {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        Ok(Self {
            allocatable: Resources::from_list(allocatable)?,
            allowed_pods: allocatable
                .and_then(|a| a.get("pods"))
                .map_or(Ok(0), |q| quantity_scaled(&q.0, 0))?,
            labels: node.labels().clone(),
        })
    }
}

/// Why a Pod does not fit: kube-scheduler's filter reasons for the one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misfit {
    pub reasons: Vec<String>,
    /// No amount of eviction would make it fit (kube-scheduler's `UnschedulableAndUnresolvable`):
    /// decides the message's `preemption:` part.
    pub unresolvable: bool,
}

impl Misfit {
    /// kube-scheduler's `FitError` message for a one-node cluster, with the part its default
    /// preemption plugin appends when it evicts nothing (the sandbox never preempts):
    /// `0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No
    /// preemption victims found for incoming pod.`
    pub fn message(&self, preemption_never: bool) -> String {
        let mut reasons: Vec<String> = self.reasons.iter().map(|r| format!("1 {r}")).collect();
        reasons.sort();
        let preemption = if preemption_never {
            "not eligible due to preemptionPolicy=Never."
        } else if self.unresolvable {
            "0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        } else {
            "0/1 nodes are available: 1 No preemption victims found for incoming pod."
        };
        format!(
            "0/1 nodes are available: {}. preemption: {preemption}",
            reasons.join(", ")
        )
    }
}

/// kube-scheduler's `NodeAffinity` (node selector only) then `NodeResourcesFit` filters: `used`
/// and `pods_on_node` are what the Pods already bound there request and number. Like
/// kube-scheduler, the first failing filter decides, and a resource the Pod does not request is
/// not checked (a Pod without requests fits an overcommitted node).
pub fn fit(
    request: &Resources,
    node_selector: Option<&BTreeMap<String, String>>,
    node: &NodeInfo,
    used: &Resources,
    pods_on_node: usize,
) -> Result<(), Misfit> {
    let selected = node_selector
        .into_iter()
        .flatten()
        .all(|(key, value)| node.labels.get(key) == Some(value));
    if !selected {
        return Err(Misfit {
            reasons: vec![REASON_SELECTOR.to_owned()],
            unresolvable: true,
        });
    }
    let mut misfit = Misfit {
        reasons: Vec::new(),
        unresolvable: false,
    };
    if i64::try_from(pods_on_node).unwrap_or(i64::MAX).saturating_add(1) > node.allowed_pods {
        misfit.reasons.push(REASON_TOO_MANY_PODS.to_owned());
    }
    let checks = [
        ("cpu", request.milli_cpu, node.allocatable.milli_cpu, used.milli_cpu),
        ("memory", request.memory, node.allocatable.memory, used.memory),
        (
            "ephemeral-storage",
            request.ephemeral_storage,
            node.allocatable.ephemeral_storage,
            used.ephemeral_storage,
        ),
    ];
    for (name, requested, allocatable, used) in checks {
        if requested > 0 && requested > allocatable.saturating_sub(used) {
            misfit.reasons.push(format!("Insufficient {name}"));
            misfit.unresolvable |= requested > allocatable;
        }
    }
    if misfit.reasons.is_empty() { Ok(()) } else { Err(misfit) }
}

type Key = (String, String);

/// What the scheduling loop knows, all of it fed by its three watches.
#[derive(Default)]
struct State {
    /// Unbound Pods of the default scheduler that are not bound yet, by namespace and name.
    pending: BTreeMap<Key, Pod>,
    /// The Pods of the relist in progress of unbound Pods.
    unscheduled_relist: Option<Vec<Key>>,
    /// Requests of the non-terminal Pods bound to the node, by uid.
    bound: BTreeMap<String, Resources>,
    /// The relist in progress of bound Pods (replaces `bound` when complete).
    bound_relist: Option<BTreeMap<String, Resources>>,
    /// Nothing is scheduled before the first list of bound Pods: it would overcommit.
    bound_synced: bool,
    /// Pods this scheduler bound that the watch of bound Pods has not shown yet.
    assumed: BTreeMap<String, (Resources, Instant)>,
    node: Option<NodeInfo>,
}

enum Wake {
    Tick,
    Unscheduled(Result<Option<Event<Pod>>, watcher::Error>),
    Bound(Result<Option<Event<Pod>>, watcher::Error>),
    Node(Result<Option<Event<Node>>, watcher::Error>),
}

pub(crate) async fn run(ctx: Arc<Ctx>, cancel: CancellationToken) -> Result<(), super::Error> {
    let node_name = ctx.config.node_name.clone();
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let unscheduled_config = watcher::Config::default().fields(&format!(
        "spec.nodeName=,spec.schedulerName={SCHEDULER_NAME},{NOT_TERMINAL}"
    ));
    let bound_config = watcher::Config::default().fields(&format!("spec.nodeName={node_name},{NOT_TERMINAL}"));
    let node_config = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
    let mut unscheduled = std::pin::pin!(watcher::watcher(pods.clone(), unscheduled_config).default_backoff());
    let mut bound = std::pin::pin!(watcher::watcher(pods, bound_config).default_backoff());
    let mut node = std::pin::pin!(watcher::watcher(nodes, node_config).default_backoff());
    let mut state = State::default();
    let mut tick = tokio::time::interval(RETRY);
    loop {
        let wake = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => Wake::Tick,
            event = unscheduled.try_next() => Wake::Unscheduled(event),
            event = bound.try_next() => Wake::Bound(event),
            event = node.try_next() => Wake::Node(event),
        };
        let retry_all = match wake {
            Wake::Tick => true,
            Wake::Unscheduled(Ok(Some(event))) => {
                if let Some(key) = state.on_unscheduled(event) {
                    state.schedule(&ctx, &key).await;
                }
                false
            }
            Wake::Bound(Ok(Some(event))) => state.on_bound(event),
            Wake::Node(Ok(Some(event))) => state.on_node(event),
            Wake::Unscheduled(Ok(None)) | Wake::Bound(Ok(None)) | Wake::Node(Ok(None)) => {
                return Err(super::Error::Task("scheduler watch ended".into()));
            }
            Wake::Unscheduled(Err(err)) | Wake::Bound(Err(err)) | Wake::Node(Err(err)) => {
                warn!(%err, "scheduler watch error");
                false
            }
        };
        if retry_all {
            state.schedule_all(&ctx).await;
        }
    }
}

fn is_gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

fn key_of(pod: &Pod) -> Key {
    (pod.namespace().unwrap_or_default(), pod.name_any())
}

/// A bound Pod's requests; one that cannot be read (the apiserver validated it, so never in
/// practice) counts as requesting nothing rather than blocking the node.
fn bound_requests(pod: &Pod) -> Resources {
    let spec = pod.spec.clone().unwrap_or_default();
    pod_requests(&spec).unwrap_or_else(|err| {
        warn!(pod = ?key_of(pod), %err, "unreadable requests of a bound pod, counted as none");
        Resources::default()
    })
}

impl State {
    /// Tracks an unbound Pod; the key of one to schedule now.
    fn on_unscheduled(&mut self, event: Event<Pod>) -> Option<Key> {
        match event {
            Event::Apply(pod) | Event::InitApply(pod) => {
                let key = key_of(&pod);
                if let Some(listed) = self.unscheduled_relist.as_mut() {
                    listed.push(key.clone());
                }
                let assigned = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                if pod.metadata.deletion_timestamp.is_some() || is_gated(&pod) || assigned {
                    self.pending.remove(&key);
                    return None;
                }
                self.pending.insert(key.clone(), pod);
                Some(key)
            }
            // Bound (it left the field selector) or deleted.
            Event::Delete(pod) => {
                self.pending.remove(&key_of(&pod));
                None
            }
            // A relist (after a watch gap): Pods not in it were bound or deleted meanwhile.
            Event::Init => {
                self.unscheduled_relist = Some(Vec::new());
                None
            }
            Event::InitDone => {
                if let Some(listed) = self.unscheduled_relist.take() {
                    let listed: std::collections::BTreeSet<Key> = listed.into_iter().collect();
                    self.pending.retain(|key, _| listed.contains(key));
                }
                None
            }
        }
    }

    /// Tracks the Pods bound to the node; `true` when capacity may have freed.
    fn on_bound(&mut self, event: Event<Pod>) -> bool {
        match event {
            Event::Init => {
                self.bound_relist = Some(BTreeMap::new());
                false
            }
            Event::InitApply(pod) => {
                let requests = bound_requests(&pod);
                if let (Some(relist), Some(uid)) = (self.bound_relist.as_mut(), pod.uid()) {
                    relist.insert(uid, requests);
                }
                false
            }
            Event::InitDone => {
                if let Some(relist) = self.bound_relist.take() {
                    self.bound = relist;
                }
                self.bound_synced = true;
                true
            }
            Event::Apply(pod) => {
                let Some(uid) = pod.uid() else { return false };
                let requests = bound_requests(&pod);
                let before = self.bound.insert(uid, requests);
                // Only an in-place resize changes a bound Pod's requests.
                before.is_some_and(|b| b != requests)
            }
            Event::Delete(pod) => {
                if let Some(uid) = pod.uid() {
                    self.bound.remove(&uid);
                    self.assumed.remove(&uid);
                }
                true
            }
        }
    }

    /// Tracks the Node; `true` when it changed (labels or allocatable).
    fn on_node(&mut self, event: Event<Node>) -> bool {
        let node = match event {
            Event::Apply(node) | Event::InitApply(node) => node,
            Event::Delete(_) => {
                self.node = None;
                return false;
            }
            Event::Init | Event::InitDone => return false,
        };
        match NodeInfo::from_node(&node) {
            Ok(info) => {
                let changed = self.node.as_ref() != Some(&info);
                self.node = Some(info);
                changed
            }
            Err(err) => {
                warn!(%err, "unreadable node allocatable, scheduling paused");
                self.node = None;
                false
            }
        }
    }

    /// Requests and number of the Pods on the node, assumed ones included.
    fn usage(&mut self) -> (Resources, usize) {
        let bound = &self.bound;
        self.assumed
            .retain(|uid, (_, since)| !bound.contains_key(uid) && since.elapsed() < ASSUME_TTL);
        let mut used = Resources::default();
        for requests in self.bound.values().chain(self.assumed.values().map(|(r, _)| r)) {
            used.add(requests);
        }
        (used, self.bound.len() + self.assumed.len())
    }

    /// Every pending Pod, in kube-scheduler's queue order: higher priority first, then oldest.
    async fn schedule_all(&mut self, ctx: &Ctx) {
        let mut order: Vec<(i32, Option<Timestamp>, Key)> = self
            .pending
            .iter()
            .map(|(key, pod)| {
                let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
                (-priority, created, key.clone())
            })
            .collect();
        order.sort();
        for (_, _, key) in order {
            self.schedule(ctx, &key).await;
        }
    }

    /// One scheduling attempt: bind the Pod if it fits, otherwise say why on the Pod.
    async fn schedule(&mut self, ctx: &Ctx, key: &Key) {
        let Some(pod) = self.pending.get(key).cloned() else {
            return;
        };
        let uid = pod.uid().unwrap_or_default();
        if self.bound.contains_key(&uid) || self.assumed.contains_key(&uid) {
            // A stale event of a Pod already bound.
            self.pending.remove(key);
            return;
        }
        if !self.bound_synced || self.node.is_none() {
            return;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let request = match pod_requests(&spec) {
            Ok(request) => request,
            Err(err) => {
                warn!(pod = ?key, %err, "unreadable pod requests, not scheduled");
                return;
            }
        };
        let (used, count) = self.usage();
        let Some(node) = self.node.as_ref() else { return };
        match fit(&request, spec.node_selector.as_ref(), node, &used, count) {
            Ok(()) => match bind(ctx, &key.0, &key.1).await {
                Binding::Bound => {
                    self.assumed.insert(uid, (request, Instant::now()));
                    self.pending.remove(key);
                }
                Binding::Gone => {
                    self.pending.remove(key);
                }
                Binding::Retry => {}
            },
            Err(misfit) => {
                let never = spec.preemption_policy.as_deref() == Some("Never");
                let message = misfit.message(never);
                let current = unschedulable_condition(&pod);
                if current.as_ref().and_then(|c| c.message.as_deref()) == Some(message.as_str()) {
                    return;
                }
                match report_unschedulable(ctx, &pod, current.as_ref(), &message).await {
                    Ok(condition) => {
                        if let Some(pod) = self.pending.get_mut(key) {
                            set_condition(pod, condition);
                        }
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        self.pending.remove(key);
                    }
                    Err(err) => warn!(pod = ?key, %err, "failed to report an unschedulable pod, will retry"),
                }
            }
        }
    }
}

/// The Pod's `PodScheduled` condition if it is kube-scheduler's `False`/`Unschedulable`.
fn unschedulable_condition(pod: &Pod) -> Option<PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .cloned()
}

fn set_condition(pod: &mut Pod, condition: PodCondition) {
    let conditions = pod
        .status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

/// Writes kube-scheduler's `PodScheduled=False` condition and `FailedScheduling` Event.
/// The transition time is kept when the condition only changes its message, as
/// `UpdatePodCondition` does.
async fn report_unschedulable(
    ctx: &Ctx,
    pod: &Pod,
    current: Option<&PodCondition>,
    message: &str,
) -> Result<PodCondition, kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let since = current
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
    let condition = PodCondition {
        type_: "PodScheduled".to_owned(),
        status: "False".to_owned(),
        reason: Some("Unschedulable".to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: Some(since),
        ..Default::default()
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({ "status": { "conditions": [condition] } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    pods.patch_status(&name, &params, &Patch::Strategic(&patch)).await?;
    info!(pod = %format!("{namespace}/{name}"), %message, "pod unschedulable");
    // The Event is what `kubectl describe pod` shows; losing one only costs that.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = Timestamp::now();
    let event = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        // client-go's event name: the object's name and the time in hex nanoseconds.
        "metadata": { "name": format!("{name}.{:x}", now.as_nanosecond()), "namespace": namespace },
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "reportingController": SCHEDULER_NAME,
        "reportingInstance": format!("{SCHEDULER_NAME}-{}", ctx.config.node_name),
        "action": "Scheduling",
        "reason": "FailedScheduling",
        "type": "Warning",
        "note": message,
        "regarding": {
            "apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name,
            "uid": pod.uid(), "resourceVersion": pod.resource_version(),
        },
    });
    let created = match serde_json::from_value(event) {
        Ok(event) => events.create(&PostParams::default(), &event).await.map(drop),
        Err(err) => Err(kube::Error::SerdeError(err)),
    };
    if let Err(err) = created {
        warn!(pod = %format!("{namespace}/{name}"), %err, "failed to record a FailedScheduling event");
    }
    Ok(condition)
}

enum Binding {
    Bound,
    /// Bound by someone else (409) or deleted (404): nothing left to do.
    Gone,
    /// A transient failure: tried again later.
    Retry,
}

async fn bind(ctx: &Ctx, namespace: &str, name: &str) -> Binding {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "namespace": namespace },
        "target": { "apiVersion": "v1", "kind": "Node", "name": ctx.config.node_name },
    });
    match pods
        .create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding)
        .await
    {
        Ok(_) => {
            info!(pod = %format!("{namespace}/{name}"), node = %ctx.config.node_name, "bound pod");
            Binding::Bound
        }
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
            debug!(pod = %format!("{namespace}/{name}"), code = status.code, "binding not needed");
            Binding::Gone
        }
        Err(err) => {
            warn!(pod = %format!("{namespace}/{name}"), %err, "failed to bind pod, will retry");
            Binding::Retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn milli(q: &str) -> i64 {
        quantity_scaled(q, 3).unwrap()
    }

    fn value(q: &str) -> i64 {
        quantity_scaled(q, 0).unwrap()
    }

    #[test]
    fn quantities_are_exact_and_round_up() {
        assert_eq!(milli("250m"), 250);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("5."), 5000);
        assert_eq!(milli("+2"), 2000);
        assert_eq!(milli("0.1m"), 1, "sub-milli precision rounds up, as MilliValue does");
        assert_eq!(milli("2e3"), 2_000_000);
        assert_eq!(milli("2E-3"), 2);
        assert_eq!(milli("8"), 8000);
        assert_eq!(value("64Mi"), 64 << 20);
        assert_eq!(value("16Gi"), 16 << 30);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("1.5Gi"), 3 << 29);
        assert_eq!(value("1k"), 1000);
        assert_eq!(value("1Ki"), 1024);
        assert_eq!(value("1E"), 1_000_000_000_000_000_000);
        assert_eq!(value("1e3"), 1000);
        assert_eq!(value("0.5"), 1, "Value rounds up");
        assert_eq!(value("100m"), 1);
        assert_eq!(value("0"), 0);
        assert_eq!(value("000.000"), 0);
        assert_eq!(value("110"), 110);
        assert_eq!(value("16Ei"), i64::MAX, "capped at 2^63-1 as Kubernetes does");
        assert_eq!(value("1e100"), i64::MAX);
        assert_eq!(value("1e-100"), 1);
        // Eighty tenths of a cpu are exactly 8 cpus (floats would not sum to that).
        assert_eq!((0..80).map(|_| milli("0.1")).sum::<i64>(), milli("8"));
        for bad in [
            "", "x", ".", "1.2.3", "1Mb", "1 Gi", "-1", "1e", "e3", "1e+", "Mi", "1ee3", "1.5e3.5",
        ] {
            assert!(quantity_scaled(bad, 3).is_err(), "{bad:?} should be refused");
        }
    }

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: quantities(requests),
                limits: quantities(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sidecar(requests: &[(&str, &str)]) -> Container {
        Container {
            restart_policy: Some("Always".into()),
            ..container(requests, &[])
        }
    }

    fn res(milli_cpu: i64, memory: i64) -> Resources {
        Resources {
            milli_cpu,
            memory,
            ephemeral_storage: 0,
        }
    }

    #[test]
    fn pod_requests_follow_kubernetes() {
        // Containers sum; a container with only limits requests its limits.
        let spec = PodSpec {
            containers: vec![
                container(&[("cpu", "250m"), ("memory", "64Mi")], &[("cpu", "1")]),
                container(&[], &[("cpu", "500m"), ("memory", "1Gi")]),
                container(&[], &[]),
            ],
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec).unwrap(), res(750, (64 << 20) + (1 << 30)));

        // The largest init container wins where it exceeds the containers, per resource.
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "1"), ("memory", "1Gi")], &[])],
            init_containers: Some(vec![
                container(&[("cpu", "2")], &[]),
                container(&[("memory", "512Mi")], &[]),
            ]),
            overhead: quantities(&[("cpu", "100m"), ("memory", "10Mi")]),
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec).unwrap(), res(2100, (1 << 30) + (10 << 20)));

        // Sidecars add to the containers and to every init container after them.
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "1")], &[])],
            init_containers: Some(vec![
                container(&[("cpu", "1500m")], &[]),
                sidecar(&[("cpu", "500m")]),
                container(&[("cpu", "2")], &[]),
            ]),
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec).unwrap().milli_cpu, 2500);

        // Pod-level requests replace the containers' for the resources they name.
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "1"), ("memory", "1Gi")], &[])],
            resources: Some(ResourceRequirements {
                requests: quantities(&[("cpu", "3")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(pod_requests(&spec).unwrap(), res(3000, 1 << 30));

        let spec = PodSpec {
            containers: vec![container(&[("cpu", "lots")], &[])],
            ..Default::default()
        };
        assert!(pod_requests(&spec).is_err());
    }

    fn sandbox_node() -> NodeInfo {
        NodeInfo {
            allocatable: Resources {
                milli_cpu: milli("8"),
                memory: value("16Gi"),
                ephemeral_storage: value("100Gi"),
            },
            allowed_pods: 110,
            labels: [("kubernetes.io/hostname".to_owned(), "sandbox".to_owned())].into(),
        }
    }

    #[test]
    fn fit_checks_what_is_left() {
        let node = sandbox_node();
        let none = Resources::default();
        assert_eq!(
            fit(&res(8000, 16 << 30), None, &node, &none, 0),
            Ok(()),
            "exactly full fits"
        );
        assert_eq!(fit(&res(2000, 0), None, &node, &res(6000, 0), 3), Ok(()));

        let misfit = fit(&res(2001, 0), None, &node, &res(6000, 0), 3).unwrap_err();
        assert_eq!(misfit.reasons, ["Insufficient cpu"]);
        assert!(!misfit.unresolvable, "evicting the others would make room");
        assert_eq!(
            misfit.message(false),
            "0/1 nodes are available: 1 Insufficient cpu. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );

        let misfit = fit(&res(9000, 17 << 30), None, &node, &none, 0).unwrap_err();
        assert!(misfit.unresolvable, "more than the whole node");
        assert_eq!(
            misfit.message(false),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            misfit.message(true),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. \
             preemption: not eligible due to preemptionPolicy=Never."
        );

        // Pods without requests fit an overcommitted node, but not a full one.
        assert_eq!(fit(&none, None, &node, &res(9000, 0), 109), Ok(()));
        let misfit = fit(&res(1, 1), None, &node, &res(9000, 0), 110).unwrap_err();
        assert_eq!(misfit.reasons, ["Too many pods", "Insufficient cpu"]);
        assert_eq!(
            misfit.message(false),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods. \
             preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        let storage = Resources {
            ephemeral_storage: value("101Gi"),
            ..none
        };
        assert_eq!(
            fit(&storage, None, &node, &none, 0).unwrap_err().reasons,
            ["Insufficient ephemeral-storage"]
        );
    }

    #[test]
    fn node_selector_must_match_the_labels() {
        let node = sandbox_node();
        let none = Resources::default();
        let matching: BTreeMap<String, String> = [("kubernetes.io/hostname".into(), "sandbox".into())].into();
        assert_eq!(fit(&none, Some(&matching), &node, &none, 0), Ok(()));
        assert_eq!(fit(&none, Some(&BTreeMap::new()), &node, &none, 0), Ok(()));
        for selector in [
            [("kubernetes.io/hostname".to_owned(), "other".to_owned())],
            [("disktype".to_owned(), "ssd".to_owned())],
        ] {
            let selector: BTreeMap<String, String> = selector.into();
            // The selector filter runs first and alone decides, even for a Pod that is too big.
            let misfit = fit(&res(9000, 0), Some(&selector), &node, &none, 0).unwrap_err();
            assert_eq!(
                misfit.message(false),
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. \
                 preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
            );
        }
    }

    #[test]
    fn node_info_reads_what_the_node_advertises() {
        let node: Node = serde_json::from_value(json!({
            "metadata": { "name": "sandbox", "labels": { "kubernetes.io/hostname": "sandbox" } },
            "status": { "allocatable": { "cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi" } },
        }))
        .unwrap();
        assert_eq!(NodeInfo::from_node(&node).unwrap(), sandbox_node());
    }
}
