//! Apply: the writes of a reconcile — children by server-side apply, the generated auth
//! Secret (created once), the status (write-ahead of a topology push), the push itself, the
//! Pods' role labels — and the cleanup run by the finalizer.

use std::fmt::Debug;

use ferrokv_node::cluster::topology::{Node, Topology};
use futures::future::{BoxFuture, FutureExt, join_all, try_join_all};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::build::{self, Children, LABEL_CLUSTER, LABEL_ROLE};
use super::observe::{NODE_TIMEOUT, connect};
use super::plan::Role;
use crate::crd::{KvCluster, KvClusterStatus};

/// Length of a generated password: 32 alphanumerics are ~190 bits.
const PASSWORD_LEN: usize = 32;

fn apply_one<'a, K>(client: &kube::Client, fm: &'a str, obj: &'a K) -> BoxFuture<'a, Result<(), kube::Error>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
    K: Send + Sync + 'a,
{
    let api: Api<K> = Api::namespaced(client.clone(), obj.meta().namespace.as_deref().unwrap_or_default());
    async move {
        api.patch(&obj.name_any(), &PatchParams::apply(fm).force(), &Patch::Apply(obj))
            .await
            .map(|_| ())
    }
    .boxed()
}

/// Server-side apply of every child, all at once (one round trip of latency, not ten).
pub async fn children(client: &kube::Client, fm: &str, c: &Children) -> Result<(), kube::Error> {
    let mut writes = vec![
        apply_one(client, fm, &c.config_map),
        apply_one(client, fm, &c.headless),
        apply_one(client, fm, &c.client),
    ];
    writes.extend(c.statefulsets.iter().map(|s| apply_one(client, fm, s)));
    writes.extend(c.pdbs.iter().map(|p| apply_one(client, fm, p)));
    try_join_all(writes).await.map(|_| ())
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

/// Write the status (server-side apply of the status subresource).
pub async fn status(
    client: &kube::Client,
    fm: &str,
    kv: &KvCluster,
    status: &KvClusterStatus,
) -> Result<(), kube::Error> {
    let api: Api<KvCluster> = Api::namespaced(client.clone(), &kv.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": KvCluster::api_version(&()),
        "kind": KvCluster::kind(&()),
        "status": status,
    });
    api.patch_status(&kv.name_any(), &PatchParams::apply(fm).force(), &Patch::Apply(&patch))
        .await
        .map(|_| ())
}

/// What a push achieved.
#[derive(Debug, Default)]
pub struct PushOutcome {
    pub accepted: usize,
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
                Ok(()) => out.accepted += 1,
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
