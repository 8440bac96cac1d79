//! The `KvCluster` resource (`ferrokv.io/v1alpha1`): what a user declares and what the
//! operator reports back.
//!
//! The schema is the first line of defence: every rule that can be checked without looking
//! at the cluster (bounds, enums, formats, immutable fields, reserved configuration keys) is
//! in the OpenAPI schema or a CEL rule, so a bad manifest is refused by `kubectl apply` with
//! a message naming the field, instead of being accepted and failing later in a reconcile
//! the user has to go and look for. Only fields the operator acts on exist here: a field the
//! operator would ignore is worse than a missing one.
//!
//! `crds/kvcluster.yaml` and the chart's copy are generated from these types
//! (`ferrokv-operator crd`); `operator/tests/crds.rs` fails when they drift.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Node configuration directives a user may set through `spec.config`. Everything else is
/// owned by the operator (ports, data directory, cluster mode, auth, persistence — those have
/// their own fields) or would break the cluster's contract with it.
pub const CONFIG_KEYS: &[&str] = &[
    "maxmemory",
    "maxmemory-policy",
    "maxmemory-samples",
    "maxclients",
    "timeout",
    "notify-keyspace-events",
    "proto-max-bulk-len",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-monitor-threshold",
    "repl-backlog-size",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "set-max-intset-entries",
    "stream-node-max-bytes",
    "stream-node-max-entries",
    "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush",
    "busy-reply-threshold",
    "hll-sparse-max-bytes",
];

/// A ferrokv cluster: `shards` slot ranges, each served by a primary and
/// `replicasPerShard` replicas, one StatefulSet per shard.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ferrokv.io",
    version = "v1alpha1",
    kind = "KvCluster",
    namespaced,
    status = "KvClusterStatus",
    shortname = "kvc",
    category = "ferrokv",
    doc = "A ferrokv cluster: shards of a primary and replicas serving the 16384 hash slots.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        description = "Ready nodes / desired nodes",
        json_path = ".status.readyNodes"
    ),
    printcolumn(name = "Shards", type_ = "integer", json_path = ".spec.shards"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Epoch", type_ = "integer", priority = 1, json_path = ".status.epoch"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Children are named `<name>-<shard>` (StatefulSets) and `<name>-<shard>-<ordinal>` (Pods);
    // a StatefulSet's name must leave room for the controller-revision-hash label (≤ 63).
    validation = Rule::new("self.metadata.name.size() <= 40")
        .message("metadata.name must be at most 40 characters: Pods are named <name>-<shard>-<ordinal>")
        .reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct KvClusterSpec {
    /// Number of shards. Each serves an even share of the 16384 slots.
    /// Changing it after creation is refused: online resharding is not implemented yet.
    #[schemars(range(min = 1, max = 16384))]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("shards cannot be changed after creation yet (online resharding is not implemented)")
        .reason(Reason::FieldValueForbidden))]
    pub shards: i32,

    /// Replicas of each shard's primary (0 = no redundancy).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 5))]
    pub replicas_per_shard: i32,

    /// Node container image. Defaults to the image the operator was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// Image pull policy of the node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// CPU and memory of each node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Kubernetes' own schema for these quantities is a bare int-or-string: without a pattern,
    // `cpu: lots` would be accepted here and refused only later, on the StatefulSet.
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,

    /// Each node's data volume (snapshot, append-only log, cluster state).
    #[serde(default)]
    pub storage: StorageSpec,

    #[serde(default)]
    pub persistence: PersistenceSpec,

    /// Password clients and replicas authenticate with. When absent the operator generates
    /// a Secret `<name>-auth` (key `password`) and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Node configuration overrides (`directive: value`, as in a Redis config file),
    /// limited to tuning directives; see the schema's allowed keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 26, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(validation = Rule::new(config_keys_rule())
        .message(config_keys_message().as_str())
        .reason(Reason::FieldValueInvalid))]
    #[x_kube(validation = Rule::new(
        "!('maxmemory-policy' in self) || self['maxmemory-policy'] in \
         ['noeviction', 'allkeys-lru', 'allkeys-lfu', 'allkeys-random', 'volatile-lru', \
          'volatile-lfu', 'volatile-random', 'volatile-ttl']")
        .message("config: maxmemory-policy must be one of noeviction, allkeys-lru, allkeys-lfu, \
                  allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl"))]
    pub config: BTreeMap<String, String>,

    /// Where the node Pods run.
    #[serde(default)]
    pub placement: Placement,
}

/// A Kubernetes quantity (`resource.Quantity`'s own grammar, as controller-gen writes it).
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// `ResourceRequirements` with [`QUANTITY_PATTERN`] on every request and limit.
fn resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = <ResourceRequirements as schemars::JsonSchema>::json_schema(generator);
    // What kube writes for the `Option` this replaces.
    schema.insert("nullable".into(), true.into());
    for list in ["requests", "limits"] {
        let values = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(list))
            .and_then(|l| l.get_mut("additionalProperties"))
            .and_then(|v| v.as_object_mut());
        if let Some(values) = values {
            values.insert("pattern".into(), QUANTITY_PATTERN.into());
        }
    }
    schema
}

fn default_replicas() -> i32 {
    1
}

/// The CEL rule limiting `spec.config` to [`CONFIG_KEYS`].
fn config_keys_rule() -> String {
    let keys: Vec<String> = CONFIG_KEYS.iter().map(|k| format!("'{k}'")).collect();
    format!("self.all(k, k in [{}])", keys.join(", "))
}

fn config_keys_message() -> String {
    format!(
        "config: unsupported key; the keys that may be set are {} (ports, dir, auth, persistence \
         and cluster settings are managed by the operator)",
        CONFIG_KEYS.join(", ")
    )
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The data volume of each node. Immutable: a StatefulSet's volume claims cannot change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("storage cannot be changed after creation (volume expansion is not implemented)")
    .reason(Reason::FieldValueForbidden))]
pub struct StorageSpec {
    /// Size of each node's volume claim.
    #[serde(default = "default_storage_size")]
    // A positive byte quantity (`500Mi`, `1Gi`, `1073741824`): refused here rather than on the
    // volume claims. A pattern, not a CEL rule: CEL's cost estimate for an unbounded
    // int-or-string exceeds the apiserver's budget.
    #[schemars(extend("pattern" = r"^(0*[1-9][0-9]*(\.[0-9]*)?|0*\.[0-9]*[1-9][0-9]*)([KMGTPE]i|[kMGTPE])?$"))]
    pub size: Quantity,
    /// StorageClass of the volume claims; the cluster's default class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> Quantity {
    Quantity("1Gi".into())
}

/// How each node persists its data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistenceSpec {
    /// When the append-only log is fsynced: `always` (before acknowledging each write; group
    /// commit keeps throughput up), `everysec` (at most one second of writes lost on a power
    /// failure), `no` (left to the kernel).
    #[serde(default)]
    pub appendfsync: Appendfsync,
    /// Snapshot schedule in Redis' `save` form: pairs of `<seconds> <changes>` ("3600 1 300 100"
    /// = after an hour if one key changed, after 5 minutes if 100 did). Empty turns scheduled
    /// snapshots off (the append-only log still persists every write).
    #[serde(default = "default_snapshot_schedule")]
    #[schemars(regex(pattern = r"^$|^[1-9][0-9]{0,8} [1-9][0-9]{0,8}( [1-9][0-9]{0,8} [1-9][0-9]{0,8})*$"))]
    pub snapshot_schedule: String,
}

impl Default for PersistenceSpec {
    fn default() -> Self {
        PersistenceSpec {
            appendfsync: Appendfsync::default(),
            snapshot_schedule: default_snapshot_schedule(),
        }
    }
}

fn default_snapshot_schedule() -> String {
    "3600 1 300 100 60 10000".into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Appendfsync {
    Always,
    #[default]
    Everysec,
    No,
}

impl Appendfsync {
    pub fn as_str(self) -> &'static str {
        match self {
            Appendfsync::Always => "always",
            Appendfsync::Everysec => "everysec",
            Appendfsync::No => "no",
        }
    }
}

/// A user-provided password Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Secret in the cluster's namespace holding the password.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the password in that Secret.
    #[serde(default = "default_auth_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_auth_key() -> String {
    "password".into()
}

/// Pod placement. Shard members are spread across nodes by default so that one Kubernetes
/// node failing never takes a shard's primary and all its replicas with it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra affinity rules, merged with the shard anti-affinity below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Spreading of one shard's members across Kubernetes nodes (topology key
    /// `kubernetes.io/hostname`): `Preferred` (default; still schedules on a single node),
    /// `Required` (a shard never has two members on one node), `None`.
    #[serde(default)]
    pub shard_anti_affinity: AntiAffinity,
    /// PriorityClass of the node Pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum AntiAffinity {
    #[default]
    Preferred,
    Required,
    None,
}

/// What the operator observed and decided, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KvClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// `Ready`, `Progressing`, `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// "ready/desired" node Pods, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_nodes: Option<String>,
    /// Epoch of the topology last pushed to the nodes (0: none yet).
    #[serde(default)]
    pub epoch: i64,
    /// Per shard: slots, primary, replicas. This is the operator's memory of the topology:
    /// an operator restart rebuilds the topology from here, so it never reshuffles slots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardStatus>,
    /// Where clients connect (any node; cluster clients follow redirects from there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Phase {
    /// Accepted; nothing created yet, or waiting for Pods to be scheduled.
    Pending,
    /// Pods are starting or the first topology has not been pushed.
    Creating,
    /// Every slot is served and every node is in sync.
    Ready,
    /// Serving, but something is missing or failing (see the conditions).
    Degraded,
}

/// One shard as last pushed to the nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// Shard index (the StatefulSet `<cluster>-<index>`).
    pub index: i32,
    /// Inclusive slot ranges, e.g. `0-5460`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<String>,
    /// The primary's member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<MemberStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<MemberStatus>,
    /// Members whose Pod is Ready / members desired.
    #[serde(default)]
    pub ready: bool,
}

/// One node of a shard: its Pod, node ID and the address it was announced at.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub pod: String,
    /// The node's cluster ID (40 hex characters).
    pub node_id: String,
    /// `ip:port` the node was announced at (its Pod IP).
    pub address: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_schema_carries_the_cel_rules_and_bounds() {
        let crd = serde_json::to_string(&KvCluster::crd()).unwrap_or_default();
        assert!(crd.contains("self.metadata.name.size() <= 40"), "{crd}");
        assert!(crd.contains("shards cannot be changed"), "{crd}");
        assert!(crd.contains("'maxmemory-policy'"), "{crd}");
        assert!(crd.contains("\"maximum\":16384"), "{crd}");
        // Every allowed directive fits at once, and no more.
        let max = format!("\"maxProperties\":{}", CONFIG_KEYS.len());
        assert!(crd.contains(&max), "{max} in {crd}");
    }

    #[test]
    fn a_minimal_spec_gets_its_defaults() {
        let spec: KvClusterSpec = serde_json::from_value(serde_json::json!({"shards": 3})).unwrap();
        assert_eq!(spec.replicas_per_shard, 1);
        assert_eq!(spec.persistence.appendfsync, Appendfsync::Everysec);
        assert_eq!(spec.storage.size, Quantity("1Gi".into()));
        assert_eq!(spec.placement.shard_anti_affinity, AntiAffinity::Preferred);
    }
}
