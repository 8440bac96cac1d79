//! The KvCluster controller: a kube-rs runtime `Controller` whose reconcile is the pipeline
//! **observe → plan → apply → status**.
//!
//! # Layout
//!
//! - [`observe`]: the cluster's Pods (IP, readiness) from the watch cache and each node's view
//!   (node ID, held topology and epoch, role, replication link and offset) from [`nodes`].
//! - [`nodes`]: background pollers that ask each node its state at its Pod IP and wake the
//!   cluster's reconcile when it changes, and the background topology pushes: a reconcile never
//!   waits on a node.
//! - [`build`]: the children, pure functions of the spec: StatefulSet + PodDisruptionBudget per
//!   shard, headless and client Services, ConfigMap with the node config file, auth Secret.
//! - [`plan`]: the pure decision: at most one topology action, Pod role labels, the status, and
//!   the Events to record. Unit-tested with fixtures.
//! - [`apply`]: server-side apply with one field manager (skipped for children still as this
//!   process last applied them), the status write, the topology push (run by [`nodes`]), the
//!   role labels, and the finalizer's cleanup.
//!
//! # Watches and caches
//!
//! Per watch scope (every namespace, or each of `--watch-namespace`) one `Controller` runs,
//! triggered by the KvClusters and by reflector-backed watches of the node Pods, the children
//! and the generated Secrets. A reconcile reads those caches instead of the API: the trigger
//! comes from the same watch after the cache took the change, so what a reconcile reads is never
//! older than what woke it. The nodes are watched the same way, by pollers ([`nodes`]) that
//! trigger a reconcile when a node's state changes. A steady-state reconcile therefore costs no
//! round trip at all (one GET when the password Secret is the user's); writes happen only when
//! something changed, and a topology push is handed to a background task once the status names
//! it.
//!
//! # Why one StatefulSet per shard
//!
//! A shard's members are interchangeable Pods with stable names and volumes, which is exactly
//! what a StatefulSet gives (stable `<name>-<shard>-<ordinal>`, a PVC per ordinal that survives
//! the Pod, `Parallel` start). One per shard keeps shards independent: a shard's size, its
//! PodDisruptionBudget and its anti-affinity are per shard, and adding a shard (resharding) is
//! adding a StatefulSet without touching the others. A single StatefulSet for the whole cluster
//! would tie every shard's members to one ordinal space; Pods managed directly would mean
//! re-implementing what the StatefulSet controller does for volumes and identity.
//!
//! Roles are *not* tied to ordinals: ordinal 0 is the primary only at creation. The primary
//! is whatever the topology in status says, and the `ferrokv.io/role` label follows it.
//! - **Failover** (a later issue) is therefore a topology change only: promote the replica with
//!   the highest replication offset with a new epoch, push, move the `role=primary` label. No
//!   Kubernetes object changes, and the old primary comes back as a replica (epoch fencing).
//! - **Scale-in of a chosen member**: a StatefulSet only removes its highest ordinal. To remove
//!   another member, the operator first makes the highest ordinal's node take the chosen one's
//!   place in the topology (failing over to it if the chosen one is the primary), then scales
//!   the StatefulSet down; since roles are not ordinals, "which Pod goes" and "which node keeps
//!   serving" are separate decisions. Today `replicasPerShard` going down drops the highest
//!   ordinals, which are always replicas while no failover has happened.
//!
//! # Status is the operator's memory
//!
//! The topology decided is written to status *before* it is pushed. An operator that restarts
//! (or a new leader) reads it back and re-pushes what nodes miss; it never computes a fresh
//! layout for a cluster that has one, so slots are never reshuffled.
//!
//! Every decision is recorded as a Kubernetes Event (events.k8s.io, through the kube-rs
//! `Recorder`) on the KvCluster, and every reconcile's duration and result, and every
//! topology push, in [`Metrics`].

pub mod apply;
pub mod build;
pub mod nodes;
pub mod observe;
pub mod plan;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use self::build::LABEL_CLUSTER;
use self::plan::{Decision, PushReason, TopologyAction};
use crate::crd::KvCluster;
use crate::metrics::Metrics;

/// The finalizer that makes deletion run [`apply::cleanup`] first.
pub const FINALIZER: &str = "ferrokv.io/cleanup";

/// What the controller needs from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// Node image used when a KvCluster does not name one.
    pub node_image: String,
    /// Field manager of every server-side apply.
    pub field_manager: String,
    /// Namespaces whose KvClusters this operator runs; empty means every namespace.
    pub namespaces: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error(transparent)]
    Observe(#[from] observe::ObserveError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the KvCluster CRD is not served by the API server: {0}")]
    NoCrd(#[source] kube::Error),
    #[error("the Pod watch cache stopped")]
    CacheClosed,
}

impl Error {
    /// A short label for metrics and Events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Build(_) => "build",
            Error::Observe(_) => "observe",
            Error::Finalizer(_) => "finalizer",
            Error::NoCrd(_) => "no_crd",
            Error::CacheClosed => "cache_closed",
        }
    }
}

/// What every reconcile of one watch scope (a namespace, or all) shares.
pub struct Context {
    pub client: kube::Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// The scope's node Pods (by the cluster label), kept by a watch: what observe reads.
    pub pods: Store<Pod>,
    /// The Secrets the operator generated (by the managed-by label), kept by a watch.
    pub secrets: Store<Secret>,
    /// The scope's children, kept by watches: what lets apply skip unchanged objects.
    pub children: apply::ChildStores,
    pub applied: apply::AppliedCache,
    /// The nodes' states, kept by pollers, and the topology pushes in flight.
    pub nodes: Arc<nodes::Nodes>,
    /// Status writes and Pod deletions the caches may not show yet.
    pub expected: apply::Expectations,
}

/// Run the controller until `shutdown` resolves (only while this process leads).
///
/// With [`Config::namespaces`] set, one kube-rs `Controller` runs per namespace, each with its
/// own namespaced watches: the operator then needs (and the chart grants) only Roles in those
/// namespaces, and it never sees, let alone touches, KvClusters elsewhere. Two operators
/// installed for different namespaces therefore cannot fight over one cluster.
pub async fn run(
    client: kube::Client,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let scopes: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    // Fail fast and clearly when the CRD is missing, instead of a watcher retrying forever.
    for scope in &scopes {
        scoped::<KvCluster>(&client, scope.as_deref())
            .list(&ListParams::default().limit(1))
            .await
            .map_err(Error::NoCrd)?;
    }
    let reporter = Reporter {
        controller: config.field_manager.clone(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let controllers = futures::future::join_all(
        scopes
            .iter()
            .map(|scope| controller(&client, scope.as_deref(), &config, &metrics, &recorder, stopped.clone())),
    );
    tokio::pin!(controllers);
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut controllers => {}
        _ = &mut shutdown => {
            tracing::info!("controller stopping: finishing the reconciles in flight");
            let _ = stop.send(true);
            controllers.await;
        }
    }
    Ok(())
}

/// `Api` over one namespace, or over all of them.
fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch feeding a reflector store, and the stream of the objects it applied. The controller
/// is triggered by that same stream, after the store has the change: a reconcile never reads a
/// cache older than the event that started it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().reflect(writer).applied_objects();
    (store, stream)
}

/// One kube-rs `Controller` over `namespace` (or all), until `stopped` turns `true`.
async fn controller(
    client: &kube::Client,
    namespace: Option<&str>,
    config: &Config,
    metrics: &Arc<Metrics>,
    recorder: &Recorder,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    // Only our children are watched (by the managed-by label), not every object of their kinds.
    let ours = watcher::Config::default().labels("app.kubernetes.io/managed-by=ferrokv-operator");
    let (pods, pod_events) = reflect(
        scoped::<Pod>(client, namespace),
        watcher::Config::default().labels(LABEL_CLUSTER),
    );
    let (config_maps, cm_events) = reflect(scoped::<ConfigMap>(client, namespace), ours.clone());
    let (services, svc_events) = reflect(scoped::<Service>(client, namespace), ours.clone());
    let (statefulsets, sts_events) = reflect(scoped::<StatefulSet>(client, namespace), ours.clone());
    let (pdbs, pdb_events) = reflect(scoped::<PodDisruptionBudget>(client, namespace), ours.clone());
    let (secrets, secret_events) = reflect(scoped::<Secret>(client, namespace), ours);
    let (node_changes, node_events) = futures::channel::mpsc::unbounded();
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        metrics: metrics.clone(),
        recorder: recorder.clone(),
        pods,
        secrets,
        children: apply::ChildStores {
            config_maps,
            services,
            statefulsets,
            pdbs,
        },
        applied: apply::AppliedCache::default(),
        nodes: nodes::Nodes::new(node_changes),
        expected: apply::Expectations::default(),
    });
    Controller::new(scoped::<KvCluster>(client, namespace), watcher::Config::default())
        .owns_stream(sts_events)
        .owns_stream(svc_events)
        .owns_stream(cm_events)
        .owns_stream(secret_events)
        .owns_stream(pdb_events)
        // Pods are not owned by the KvCluster (their StatefulSet is), but their readiness and IP
        // are what the topology waits for: map them to their cluster by label.
        .watches_stream(pod_events, |pod| {
            let cluster = pod.labels().get(LABEL_CLUSTER).cloned();
            let ns = pod.namespace();
            cluster.map(|c| ObjectRef::<KvCluster>::new(&c).within(ns.as_deref().unwrap_or_default()))
        })
        // A node's state changed (polled), or a topology push ended.
        .reconcile_on(node_events)
        .graceful_shutdown_on(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile failed");
            }
        })
        .await;
}

fn error_policy(kv: Arc<KvCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %kv.name_any(), namespace = ?kv.namespace(), error = %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(kv: Arc<KvCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<KvCluster> = Api::namespaced(ctx.client.clone(), &kv.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, kv, |event| async {
        match event {
            Finalizer::Apply(kv) => reconcile_apply(&kv, &ctx).await,
            Finalizer::Cleanup(kv) => {
                ctx.nodes.forget(&ObjectRef::from_obj(kv.as_ref()));
                ctx.expected.forget(&kv);
                apply::cleanup(&ctx.client, &kv).await?;
                record(
                    &ctx,
                    &kv,
                    &Decision {
                        warning: false,
                        reason: "Cleanup",
                        note: "deleting the StatefulSets and data volumes".into(),
                    },
                )
                .await;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let label = match &result {
        Ok(_) => "ok",
        Err(_) => "error",
    };
    ctx.metrics.reconciles.with_label_values(&[label]).inc();
    ctx.metrics
        .reconcile_duration
        .with_label_values(&[label])
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn record(ctx: &Context, kv: &KvCluster, d: &Decision) {
    publish(&ctx.recorder, &kv.object_ref(&()), d).await;
}

async fn publish(recorder: &Recorder, reference: &k8s_openapi::api::core::v1::ObjectReference, d: &Decision) {
    let event = Event {
        type_: if d.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: d.reason.into(),
        note: Some(d.note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason = d.reason, "failed to record an event");
    }
}

async fn reconcile_apply(kv: &KvCluster, ctx: &Context) -> Result<Action, Error> {
    if ctx.expected.status_is_stale(kv) {
        // See `Expectations`: the watch event of our own write is on its way and wakes a
        // reconcile with the object as written; the requeue is the backstop.
        tracing::debug!(cluster = %kv.name_any(), "the cached object predates our last status write");
        return Ok(Action::requeue(plan::REQUEUE_BUSY));
    }
    let client = &ctx.client;
    let fm = ctx.config.field_manager.as_str();
    let ns = kv.namespace().unwrap_or_default();
    // Where a reconcile's time goes, in the debug log: the phases wait on different parties
    // (apiserver, nodes), which is what one needs to know when reconciles are slow.
    let t0 = Instant::now();
    let mut password = observe::password(client, &ctx.secrets, kv).await?;
    if password.is_none() && kv.spec.auth.is_none() {
        password = Some(apply::generate_secret(client, kv).await?);
        record(
            ctx,
            kv,
            &Decision {
                warning: false,
                reason: "SecretGenerated",
                note: format!(
                    "generated the password Secret {}",
                    build::auth_secret_name(&kv.name_any())
                ),
            },
        )
        .await;
    }
    let children = build::children(kv, &ctx.config.node_image)?;
    let t_secret = t0.elapsed();
    // A Pod cache that has not finished its first list would show a cluster without Pods.
    ctx.pods.wait_until_ready().await.map_err(|_| Error::CacheClosed)?;
    let mut observed = observe::observe(
        &ctx.pods,
        &ctx.children.statefulsets,
        &ctx.nodes,
        kv,
        password.as_deref(),
    );
    // A Pod this process deleted is terminating, whatever a lagging cache still says.
    if let Some(deleted) = ctx.expected.unseen_delete(kv, &ctx.pods) {
        tracing::debug!(cluster = %kv.name_any(), pod = %deleted, "the Pod cache has not shown our deletion yet");
        for p in observed.pods.iter_mut().filter(|p| p.name == deleted) {
            p.terminating = true;
        }
    }
    let t_observe = t0.elapsed();
    let mut plan = plan::plan(kv, &observed, Time(k8s_openapi::jiff::Timestamp::now()));
    if kv.spec.auth.is_some() && password.is_none() {
        plan.decisions.push(Decision {
            warning: true,
            reason: "AuthSecretMissing",
            note: format!(
                "the auth Secret {} does not exist (or lacks its key)",
                build::auth_ref(kv).0
            ),
        });
    }

    let cluster = ObjectRef::from_obj(kv);
    let pending = ctx.nodes.pending_push(&cluster);
    // The writes of a reconcile are independent of each other (the plan was made from caches,
    // not from what they return), so they go to the apiserver together: a reconcile that
    // changes a child, the status and labels costs one round trip of latency, not three.
    let children_write = apply::children(client, fm, &children, &ctx.children, &ctx.applied, &ctx.metrics);
    let status_write = async {
        // Write-ahead: the status names a topology before any node is sent it, so a crash
        // between the two is finished by the next reconcile (re-push), never redone differently.
        let write = kv.status.as_ref() != Some(&plan.status);
        if write {
            let rv = apply::status(client, fm, kv, &plan.status).await?;
            ctx.expected.wrote_status(kv, rv.as_deref());
        }
        if let Some(action) = &plan.topology
            && pending != Some(action.topology.epoch)
        {
            push(ctx, &cluster, kv, action, password.clone());
        }
        Ok::<_, kube::Error>(write)
    };
    // A role label follows the topology the node holds: not while a push is still on its way.
    let roles_write = async {
        if plan.topology.is_none() && pending.is_none() {
            apply::roles(client, &ns, &plan.roles).await?;
        }
        Ok::<_, kube::Error>(())
    };
    let ((), status_written, ()) = futures::try_join!(children_write, status_write, roles_write)?;
    let t_writes = t0.elapsed();
    if let Some(pod) = &plan.delete {
        let uid = ctx.pods.get(&ObjectRef::new(pod).within(&ns)).and_then(|p| p.uid());
        apply::delete_pod(client, &ns, pod, uid.as_deref()).await?;
        if let Some(uid) = uid {
            ctx.expected.deleted_pod(kv, pod, uid);
        }
    }
    tracing::debug!(
        cluster = %kv.name_any(),
        secret_ms = t_secret.as_millis() as u64,
        observe_ms = (t_observe - t_secret).as_millis() as u64,
        writes_ms = (t_writes - t_observe).as_millis() as u64,
        delete_ms = (t0.elapsed() - t_writes).as_millis() as u64,
        status_written,
        resource_version = kv.resource_version().unwrap_or_default(),
        "reconcile phases"
    );
    for d in &plan.decisions {
        tracing::info!(cluster = %kv.name_any(), namespace = %ns, reason = d.reason, "{}", d.note);
    }
    // Events are a report of what was decided and done, not part of doing it: they are posted
    // in the background (in order), so a slow apiserver delays them, never the reconcile.
    // The log lines above carry the same text should a post fail.
    if !plan.decisions.is_empty() {
        let (recorder, reference, decisions) = (ctx.recorder.clone(), kv.object_ref(&()), plan.decisions);
        tokio::spawn(async move {
            for d in &decisions {
                publish(&recorder, &reference, d).await;
            }
        });
    }
    Ok(Action::requeue(plan.requeue))
}

/// Hand `action`'s push to the background (see [`nodes`]); when it ends, count it and record
/// its Event.
fn push(
    ctx: &Context,
    cluster: &ObjectRef<KvCluster>,
    kv: &KvCluster,
    action: &TopologyAction,
    password: Option<String>,
) {
    let (metrics, recorder, reference) = (ctx.metrics.clone(), ctx.recorder.clone(), kv.object_ref(&()));
    let (epoch, reason) = (action.topology.epoch, action.reason);
    ctx.nodes.push(
        cluster.clone(),
        action.topology.clone(),
        password,
        move |outcome| async move {
            let d = push_decision(epoch, reason, &outcome);
            let result = match (outcome.accepted.len(), outcome.failed.len()) {
                (_, 0) => "ok",
                (0, _) => "error",
                _ => "partial",
            };
            metrics.topology_pushes.with_label_values(&[result]).inc();
            let name = reference.name.clone().unwrap_or_default();
            tracing::info!(cluster = %name, reason = d.reason, "{}", d.note);
            publish(&recorder, &reference, &d).await;
        },
    );
}

/// The Event recording how a topology push went.
fn push_decision(epoch: u64, reason: PushReason, outcome: &apply::PushOutcome) -> Decision {
    if outcome.failed.is_empty() {
        Decision {
            warning: false,
            reason: "TopologyPushed",
            note: format!(
                "epoch {epoch} pushed to {} nodes ({})",
                outcome.accepted.len(),
                match reason {
                    PushReason::Initial => "first topology",
                    PushReason::MembersChanged => "members changed",
                    PushReason::Resync => "nodes behind caught up",
                }
            ),
        }
    } else {
        let failed: Vec<String> = outcome.failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        Decision {
            warning: true,
            reason: "TopologyPushFailed",
            note: format!(
                "epoch {epoch}: {} nodes took it, {} did not ({})",
                outcome.accepted.len(),
                outcome.failed.len(),
                failed.join("; ")
            ),
        }
    }
}
