//! Apply: the writes of a reconcile — children by server-side apply, the generated auth
//! Secret (created once), the status (write-ahead of a topology push), the push itself, the
//! Pods' role labels — and the cleanup run by the finalizer.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash as _, Hasher as _};

use ferrokv_node::cluster::topology::{Node, Topology};
use futures::future::{BoxFuture, FutureExt, join_all, try_join_all};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::build::{self, Children, LABEL_CLUSTER, LABEL_ROLE};
use super::observe::{NODE_TIMEOUT, connect};
use super::plan::Role;
use crate::crd::{KvCluster, KvClusterStatus};
use crate::metrics::Metrics;

/// Length of a generated password: 32 alphanumerics are ~190 bits.
const PASSWORD_LEN: usize = 32;

/// What this process last server-side applied to each child: the hash of the object it sent
/// and the [`written_state`] of the object the apiserver answered with.
///
/// A reconcile runs on every change of a cluster's Pods, children and status, and applying ten
/// unchanged children each time is most of its latency and of the apiserver's work for it. A
/// child is skipped when the watch cache ([`ChildStores`]) holds it in exactly the written state
/// this process's last apply produced, with the same desired object: nobody has changed it
/// since, so the apply would be a no-op. Any other write (a user's `kubectl edit`) changes that
/// state, and the next reconcile applies again and undoes the drift. The cache is memory only: a restarted operator (or a new
/// leader) applies everything once.
#[derive(Default)]
pub struct AppliedCache {
    entries: parking_lot::Mutex<HashMap<ChildKey, (u64, String)>>,
}

type ChildKey = (String, String, String);

/// Watch caches of the children (by the managed-by label), read to skip unchanged applies.
#[derive(Clone)]
pub struct ChildStores {
    pub config_maps: Store<ConfigMap>,
    pub services: Store<Service>,
    pub statefulsets: Store<StatefulSet>,
    pub pdbs: Store<PodDisruptionBudget>,
}

/// What identifies the written (non-status) state of a stored object. Objects with a
/// `generation` (StatefulSets, PodDisruptionBudgets) bump it on every spec change, and their
/// controllers rewrite their status all the time: the generation with the metadata the operator
/// sets (labels, annotations, owners) tells a status update from drift, where the
/// `resourceVersion` would call every status update a change. Others (ConfigMaps, Services)
/// have no generation and next to no status writes: their `resourceVersion` is it.
fn written_state(meta: &ObjectMeta) -> Option<String> {
    match meta.generation {
        Some(generation) => {
            let mut h = std::hash::DefaultHasher::new();
            (generation, &meta.labels, &meta.annotations).hash(&mut h);
            if let Some(owners) = &meta.owner_references {
                for o in owners {
                    (&o.uid, &o.controller).hash(&mut h);
                }
            }
            Some(format!("g{generation}-{:x}", h.finish()))
        }
        None => meta.resource_version.clone(),
    }
}

fn hash_of<K: Serialize>(obj: &K) -> Option<u64> {
    let bytes = serde_json::to_vec(obj).ok()?;
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

struct Applier<'a> {
    client: &'a kube::Client,
    fm: &'a str,
    cache: &'a AppliedCache,
    metrics: &'a Metrics,
}

impl Applier<'_> {
    fn apply<'a, K>(&'a self, store: &'a Store<K>, obj: &'a K) -> BoxFuture<'a, Result<(), kube::Error>>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
        K: Send + Sync + 'a,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj.name_any();
        let key: ChildKey = (K::kind(&()).into_owned(), ns.clone(), name.clone());
        let hash = hash_of(obj);
        let current = store
            .get(&ObjectRef::<K>::new(&name).within(&ns))
            .and_then(|o| written_state(o.meta()));
        let unchanged = match (hash, current, self.cache.entries.lock().get(&key)) {
            (Some(h), Some(rv), Some((last_h, last_rv))) => h == *last_h && rv == *last_rv,
            _ => false,
        };
        async move {
            if unchanged {
                self.metrics.child_applies.with_label_values(&["unchanged"]).inc();
                return Ok(());
            }
            let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
            let applied = api
                .patch(&name, &PatchParams::apply(self.fm).force(), &Patch::Apply(obj))
                .await?;
            self.metrics.child_applies.with_label_values(&["applied"]).inc();
            let mut entries = self.cache.entries.lock();
            match (hash, written_state(applied.meta())) {
                (Some(h), Some(rv)) => entries.insert(key, (h, rv)),
                _ => entries.remove(&key),
            };
            Ok(())
        }
        .boxed()
    }
}

/// Server-side apply of every child that changed, all at once (one round trip of latency,
/// not ten).
pub async fn children(
    client: &kube::Client,
    fm: &str,
    c: &Children,
    stores: &ChildStores,
    cache: &AppliedCache,
    metrics: &Metrics,
) -> Result<(), kube::Error> {
    let applier = Applier {
        client,
        fm,
        cache,
        metrics,
    };
    let mut writes = vec![
        applier.apply(&stores.config_maps, &c.config_map),
        applier.apply(&stores.services, &c.headless),
        applier.apply(&stores.services, &c.client),
    ];
    writes.extend(c.statefulsets.iter().map(|s| applier.apply(&stores.statefulsets, s)));
    writes.extend(c.pdbs.iter().map(|p| applier.apply(&stores.pdbs, p)));
    try_join_all(writes).await.map(|_| ())
}

/// Delete a Pod for a rolling update: its StatefulSet (`OnDelete`) recreates it from the
/// current template, with the same name and volume. With `uid`, only that incarnation: a plan
/// made from a cache that has not seen the Pod replaced must not delete its replacement.
/// Already gone (or already replaced) is fine.
pub async fn delete_pod(client: &kube::Client, ns: &str, pod: &str, uid: Option<&str>) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: uid.map(|uid| kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Pod>::namespaced(client.clone(), ns).delete(pod, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Create the generated auth Secret when it does not exist; returns its password. Create, not
/// apply: an existing Secret is never rewritten, so the password clients hold stays valid.
pub async fn generate_secret(client: &kube::Client, kv: &KvCluster) -> Result<String, super::Error> {
    let password = Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN);
    let secret = build::auth_secret(kv, &password)?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &kv.namespace().unwrap_or_default());
    api.create(&PostParams::default(), &secret).await?;
    Ok(password)
}

/// Write the status (server-side apply of the status subresource); returns the
/// resourceVersion the write produced.
pub async fn status(
    client: &kube::Client,
    fm: &str,
    kv: &KvCluster,
    status: &KvClusterStatus,
) -> Result<Option<String>, kube::Error> {
    let api: Api<KvCluster> = Api::namespaced(client.clone(), &kv.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": KvCluster::api_version(&()),
        "kind": KvCluster::kind(&()),
        "status": status,
    });
    api.patch_status(&kv.name_any(), &PatchParams::apply(fm).force(), &Patch::Apply(&patch))
        .await
        .map(|kv| kv.resource_version())
}

/// What this process wrote that its watch caches may not show yet, per KvCluster (by UID) —
/// the "expectations" of Kubernetes' own controllers. The controller plans from caches, and a
/// cache learns of a write only when the write's watch event arrives, a few milliseconds later;
/// a reconcile woken in between (by a Pod or a node change) must not act on the older picture.
///
/// - **Status writes**: the resourceVersion of the last one. A reconcile whose copy of the
///   KvCluster predates it would write the same status again, or worse, decide a topology the
///   write already recorded and push it under a new epoch. It does nothing instead: the write's
///   own watch event wakes a reconcile with the fresh object at once. resourceVersions are
///   opaque to clients by contract; the apiserver's etcd storage makes them increasing
///   integers, and one that does not parse as one is treated as fresh (at worst a redundant
///   write).
/// - **Rolling-update deletions**: the Pod (name and UID) last deleted. A reconcile that runs
///   before that deletion's watch event sees the Pod still serving and in sync, the cluster
///   Ready, and would replace a second member: two down at once, where the rolling update
///   promises one (seen in the e2e test: a bad change replaced the canary of one shard and then
///   a replica of another). Until the cache shows the Pod terminating, gone or replaced (another
///   UID), the reconcile treats it as terminating.
#[derive(Default)]
pub struct Expectations {
    by_cluster: parking_lot::Mutex<HashMap<String, Expected>>,
}

#[derive(Default)]
struct Expected {
    status_rv: Option<u64>,
    /// Pod name, Pod UID, when deleted.
    deleted: Option<(String, String, std::time::Instant)>,
}

/// Longest a deletion is expected: a watch event lost for good must not hold the rolling update
/// forever (the reflector relists well within this).
const DELETE_EXPECTATION_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl Expectations {
    fn with<R>(&self, kv: &KvCluster, f: impl FnOnce(&mut Expected) -> R) -> Option<R> {
        let uid = kv.uid()?;
        Some(f(self.by_cluster.lock().entry(uid).or_default()))
    }

    /// This process wrote `kv`'s status, which the apiserver stored as `resource_version`.
    pub fn wrote_status(&self, kv: &KvCluster, resource_version: Option<&str>) {
        if let Some(rv) = resource_version.and_then(|v| v.parse().ok()) {
            self.with(kv, |e| e.status_rv = Some(rv));
        }
    }

    /// `kv` is older than this process's last status write of it.
    pub fn status_is_stale(&self, kv: &KvCluster) -> bool {
        let Some(rv) = kv.resource_version().and_then(|v| v.parse::<u64>().ok()) else {
            return false;
        };
        self.with(kv, |e| e.status_rv.is_some_and(|written| rv < written))
            .unwrap_or(false)
    }

    /// This process deleted Pod `pod` (UID `uid`) of `kv`.
    pub fn deleted_pod(&self, kv: &KvCluster, pod: &str, uid: String) {
        self.with(kv, |e| {
            e.deleted = Some((pod.to_string(), uid, std::time::Instant::now()))
        });
    }

    /// The Pod of `kv`'s last deletion when `pods` still shows it as it was (same UID, not
    /// terminating); forgets the deletion once the cache has caught up.
    pub fn unseen_delete(&self, kv: &KvCluster, pods: &Store<Pod>) -> Option<String> {
        let ns = kv.namespace().unwrap_or_default();
        self.with(kv, |e| {
            let (name, uid, at) = e.deleted.as_ref()?;
            let cached = pods.get(&ObjectRef::new(name).within(&ns));
            let stale =
                cached.is_some_and(|p| p.uid().as_ref() == Some(uid) && p.metadata.deletion_timestamp.is_none());
            if stale && at.elapsed() < DELETE_EXPECTATION_TTL {
                return Some(name.clone());
            }
            e.deleted = None;
            None
        })
        .flatten()
    }

    /// `kv` is gone: nothing more is expected of it.
    pub fn forget(&self, kv: &KvCluster) {
        if let Some(uid) = kv.uid() {
            self.by_cluster.lock().remove(&uid);
        }
    }
}

/// What a push achieved.
#[derive(Debug, Default)]
pub struct PushOutcome {
    /// Addresses of the nodes that took it.
    pub accepted: Vec<String>,
    /// `(address, error)` of the nodes that did not take it.
    pub failed: Vec<(String, String)>,
}

/// Push `t` to every node it names: primaries first (all at once), then replicas, so a replica
/// never follows a node that does not yet know it is primary.
///
/// Unlike the driver's `push_topology`, a node that does not answer does not stop the push: a
/// replica being restarted must not keep its shard's other members (or other shards) on an old
/// epoch. It gets the topology when it is back (the planner re-pushes to nodes behind).
pub async fn push(t: &Topology, password: Option<&str>) -> PushOutcome {
    let payload = t.to_json();
    let epoch = t.epoch.to_string();
    let is_primary = |n: &Node| t.shards.iter().any(|s| s.primary == n.id);
    let mut out = PushOutcome::default();
    for primaries in [true, false] {
        let sends = t.nodes.iter().filter(|n| is_primary(n) == primaries).map(|n| {
            let addr = format!("{}:{}", n.ip, n.port);
            let (payload, epoch) = (&payload, &epoch);
            async move {
                let send = async {
                    let mut c = connect(&addr, password).await?;
                    c.ok(&[b"CLUSTER", b"SETTOPOLOGY", epoch.as_bytes(), payload.as_bytes()])
                        .await
                };
                let r = match tokio::time::timeout(NODE_TIMEOUT, send).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {NODE_TIMEOUT:?}")),
                };
                (addr, r)
            }
        });
        for (addr, r) in join_all(sends).await {
            match r {
                Ok(()) => out.accepted.push(addr),
                Err(e) => out.failed.push((addr, e)),
            }
        }
    }
    out
}

/// Set `ferrokv.io/role` on Pods (after the push that gave them that role).
pub async fn roles(client: &kube::Client, ns: &str, roles: &[(String, Role)]) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patches = roles.iter().map(|(pod, role)| {
        let api = api.clone();
        async move {
            let patch = json!({"metadata": {"labels": {LABEL_ROLE: role.label()}}});
            match api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
                // The Pod went away since it was observed: its replacement is labelled later.
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                r => r.map(|_| ()),
            }
        }
    });
    try_join_all(patches).await.map(|_| ())
}

/// The finalizer's cleanup: delete the StatefulSets now (their Pods stop at once rather than
/// when the garbage collector gets to them) and the data volumes, which no owner reference
/// covers when a StatefulSet's claim retention policy is not honoured. Everything else is
/// removed by the garbage collector through owner references.
pub async fn cleanup(client: &kube::Client, kv: &KvCluster) -> Result<(), kube::Error> {
    let ns = kv.namespace().unwrap_or_default();
    let selector = ListParams::default().labels(&format!("{LABEL_CLUSTER}={}", kv.name_any()));
    let dp = DeleteParams::background();
    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .delete_collection(&dp, &selector)
        .await?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
        .delete_collection(&dp, &selector)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(generation: Option<i64>, rv: &str, label: &str) -> ObjectMeta {
        ObjectMeta {
            generation,
            resource_version: Some(rv.into()),
            labels: Some([("app".to_string(), label.to_string())].into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_cached_cluster_older_than_our_status_write_is_stale() {
        let kv_at = |uid: &str, rv: &str| {
            let mut kv = crate::controller::plan::tests::cluster(1, 0);
            kv.metadata.uid = Some(uid.into());
            kv.metadata.resource_version = Some(rv.into());
            kv
        };
        let writes = Expectations::default();
        assert!(!writes.status_is_stale(&kv_at("u1", "10")), "nothing written yet");
        writes.wrote_status(&kv_at("u1", "10"), Some("15"));
        assert!(
            writes.status_is_stale(&kv_at("u1", "10")),
            "the copy from before the write"
        );
        assert!(!writes.status_is_stale(&kv_at("u1", "15")), "the write itself");
        assert!(!writes.status_is_stale(&kv_at("u1", "16")), "later");
        assert!(
            !writes.status_is_stale(&kv_at("u2", "10")),
            "another object (recreated: new UID)"
        );
        assert!(
            !writes.status_is_stale(&kv_at("u1", "not-a-number")),
            "opaque: treated as fresh"
        );
        writes.forget(&kv_at("u1", "10"));
        assert!(!writes.status_is_stale(&kv_at("u1", "10")));
    }

    #[test]
    fn a_deleted_pod_counts_as_terminating_until_the_cache_shows_it() {
        let mut kv = crate::controller::plan::tests::cluster(1, 1);
        kv.metadata.uid = Some("cluster-uid".into());
        kv.metadata.namespace = Some("ns".into());
        let pod = |uid: &str, terminating: bool| Pod {
            metadata: ObjectMeta {
                name: Some("kv-0-1".into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                deletion_timestamp: terminating
                    .then(|| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        };
        let (store, mut writer) = kube::runtime::reflector::store::<Pod>();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod("old", false)));
        let deletes = Expectations::default();
        assert_eq!(deletes.unseen_delete(&kv, &store), None, "nothing deleted yet");
        deletes.deleted_pod(&kv, "kv-0-1", "old".into());
        assert_eq!(
            deletes.unseen_delete(&kv, &store).as_deref(),
            Some("kv-0-1"),
            "the cache lags"
        );
        assert_eq!(deletes.unseen_delete(&kv, &store).as_deref(), Some("kv-0-1"), "still");
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod("old", true)));
        assert_eq!(
            deletes.unseen_delete(&kv, &store),
            None,
            "the cache shows it terminating"
        );
        // Cleared: even a cache that went back would not bring it back.
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod("old", false)));
        assert_eq!(deletes.unseen_delete(&kv, &store), None);
        // Replaced (another UID) or gone also end the wait.
        deletes.deleted_pod(&kv, "kv-0-1", "old".into());
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(pod("new", false)));
        assert_eq!(deletes.unseen_delete(&kv, &store), None, "replaced");
        deletes.deleted_pod(&kv, "kv-0-1", "new".into());
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Delete(pod("new", true)));
        assert_eq!(deletes.unseen_delete(&kv, &store), None, "gone");
        deletes.deleted_pod(&kv, "kv-0-2", "other".into());
        deletes.forget(&kv);
        assert_eq!(deletes.unseen_delete(&kv, &store), None, "forgotten with its cluster");
    }

    #[test]
    fn status_writes_are_not_drift_but_spec_and_label_changes_are() {
        let applied = written_state(&meta(Some(3), "100", "a"));
        // The StatefulSet controller wrote status: new resourceVersion, same generation.
        assert_eq!(written_state(&meta(Some(3), "107", "a")), applied);
        // Someone edited the spec, or a label.
        assert_ne!(written_state(&meta(Some(4), "108", "a")), applied);
        assert_ne!(written_state(&meta(Some(3), "109", "b")), applied);
        // Without a generation every write counts.
        assert_eq!(written_state(&meta(None, "5", "a")).as_deref(), Some("5"));
        assert_ne!(
            written_state(&meta(None, "6", "a")),
            written_state(&meta(None, "5", "a"))
        );
    }
}
