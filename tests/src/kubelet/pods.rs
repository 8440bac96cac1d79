//! The Pods of the node: one worker per Pod, from network setup to deletion.
//!
//! [`run`] watches the Pods bound to the node and keeps one worker task per Pod UID, feeding it
//! every new version of its Pod. A worker goes through kubelet's stages:
//! 1. **sandbox**: network namespace and address, then volumes (retried while a claim is not
//!    bound or a ConfigMap is missing; the reason is shown in the status message);
//! 2. **init containers**, one at a time, each to success (a failure under `Never` fails the
//!    Pod, otherwise it is retried with backoff);
//! 3. **containers**, all supervised side by side (see [`container`]);
//! 4. **end**: when every container ended for good the Pod is `Succeeded` or `Failed` (Job
//!    Pods); when the Pod is deleted, containers get SIGTERM, their grace period, then SIGKILL,
//!    and the Pod object is removed (delete with grace 0, UID precondition), which is what lets
//!    a StatefulSet create its successor.
//!
//! A status task per Pod patches the status subresource whenever the runtime record changes
//! and at least every [`STATUS_RESYNC`], so the API stays current even after a failed patch.
//!
//! [`container`]: super::container

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Ctx;
use super::container::{Outcome, PodContext, Supervisor};
use super::env::PodFacts;
use super::faults::{self, PodRecord};
use super::mounts::{self, HostEntry, ServiceEntry, VolumeContext};
use super::netns::PodNetwork;
use super::status::{self, ContainerRuntime, PodRuntime, State, Terminal};

/// Longest time between two status patches of a running Pod.
pub const STATUS_RESYNC: Duration = Duration::from_secs(10);
/// Longest grace period of a container stopped because the kubelet shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Longest wait for one status patch.
const PATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pace of retries while a Pod's sandbox cannot be set up yet.
const SETUP_RETRY: Duration = Duration::from_secs(1);

/// The names and `/etc/hosts` file of every Pod with a network, so that each Pod's file lists
/// the others (the sandbox's stand-in for cluster DNS, see [`mounts::hosts_file`]). Files are
/// rewritten in place: they are bind-mounted by inode, a rename would leave Pods on the old one.
#[derive(Default)]
pub struct HostsRegistry {
    pods: std::collections::BTreeMap<String, (HostEntry, std::path::PathBuf)>,
    services: Vec<ServiceEntry>,
}

impl HostsRegistry {
    fn set(&mut self, uid: &str, entry: HostEntry, file: std::path::PathBuf) {
        self.pods.insert(uid.to_owned(), (entry, file));
    }

    fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// Replaces the Services; `false` when nothing changed (no rewrite needed).
    pub(crate) fn set_services(&mut self, services: Vec<ServiceEntry>) -> bool {
        if self.services == services {
            return false;
        }
        self.services = services;
        true
    }

    pub(crate) fn write_all(&self) {
        for (uid, (own, file)) in &self.pods {
            let others: Vec<HostEntry> = self
                .pods
                .iter()
                .filter(|(u, _)| *u != uid)
                .map(|(_, (entry, _))| entry.clone())
                .collect();
            let content = mounts::hosts_file(own, &others, &self.services);
            if std::fs::read_to_string(file).ok().as_deref() == Some(content.as_str()) {
                continue;
            }
            if let Err(err) = std::fs::write(file, content) {
                warn!(file = %file.display(), %err, "failed to write pod hosts file");
            }
        }
    }
}

struct Worker {
    updates: watch::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

pub(crate) async fn run(ctx: Arc<Ctx>, cancel: CancellationToken) -> Result<(), super::Error> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
    let mut workers: HashMap<String, Worker> = HashMap::new();
    // Pods whose worker has finished (a completed Job Pod): a stale event from before the final
    // status patch must not start them again.
    let mut finished: HashSet<String> = HashSet::new();
    let mut listed: Option<HashSet<String>> = None;
    let shutdown = cancel.child_token();
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            event = events.try_next() => event,
        };
        for (uid, worker) in workers.iter() {
            if worker.task.is_finished() {
                finished.insert(uid.clone());
            }
        }
        workers.retain(|_, w| !w.task.is_finished());
        match event {
            Ok(Some(Event::Apply(pod))) => dispatch(&ctx, &mut workers, &finished, pod, &shutdown).await,
            Ok(Some(Event::Init)) => listed = Some(HashSet::new()),
            Ok(Some(Event::InitApply(pod))) => {
                if let Some(seen) = listed.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                dispatch(&ctx, &mut workers, &finished, pod, &shutdown).await;
            }
            Ok(Some(Event::InitDone)) => {
                // Pods that disappeared while the watch was down are gone for good.
                if let Some(seen) = listed.take() {
                    for (uid, worker) in workers.iter() {
                        if !seen.contains(uid) {
                            let _ = worker.updates.send(None);
                        }
                    }
                }
            }
            Ok(Some(Event::Delete(pod))) => {
                let uid = pod.uid().unwrap_or_default();
                if let Some(worker) = workers.get(&uid) {
                    let _ = worker.updates.send(None);
                }
                finished.remove(&uid);
            }
            Ok(None) => break,
            Err(err) => warn!(%err, "pod watch error"),
        }
    }
    // Kubelet shutdown: stop every Pod's processes, leave the Pod objects alone.
    shutdown.cancel();
    for (_, worker) in workers.drain() {
        let _ = worker.task.await;
    }
    if cancel.is_cancelled() {
        Ok(())
    } else {
        Err(super::Error::Task("pod watch ended".into()))
    }
}

async fn dispatch(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, Worker>,
    finished: &HashSet<String>,
    pod: Pod,
    shutdown: &CancellationToken,
) {
    let uid = pod.uid().unwrap_or_default();
    if let Some(worker) = workers.get(&uid) {
        let _ = worker.updates.send(Some(pod));
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let terminal = matches!(phase, Some("Succeeded" | "Failed"));
    if terminal || finished.contains(&uid) {
        // Nothing runs for a finished Pod: once deleted, the node lets the object go.
        if pod.metadata.deletion_timestamp.is_some() {
            finalize_deletion(ctx, &pod).await;
        }
        return;
    }
    let (updates, rx) = watch::channel(Some(pod.clone()));
    let task = tokio::spawn(run_pod(ctx.clone(), pod, rx, shutdown.clone()));
    workers.insert(uid, Worker { updates, task });
}

/// Removes a Pod object whose containers are all stopped.
async fn finalize_deletion(ctx: &Ctx, pod: &Pod) {
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => info!(pod = %format!("{namespace}/{}", pod.name_any()), "pod deleted"),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
        Err(err) => warn!(pod = %format!("{namespace}/{}", pod.name_any()), %err, "failed to finalize pod deletion"),
    }
}

/// How long to give containers when stopping, from the latest version of the Pod. A kubelet
/// shutting down gives at most [`SHUTDOWN_GRACE`]: whoever stops it (a sandbox `down`) will not
/// wait for 30 s grace periods, and a container killed with the kubelet is better than one
/// orphaned by it.
fn stop_grace(pod: Option<&Pod>, shutdown: &CancellationToken) -> Duration {
    let secs = pod
        .and_then(|p| {
            p.metadata
                .deletion_grace_period_seconds
                .or_else(|| p.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        })
        .unwrap_or(30);
    let grace = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    if shutdown.is_cancelled() {
        grace.min(SHUTDOWN_GRACE)
    } else {
        grace
    }
}

/// Why a worker stops before its Pod completes.
enum Stop {
    /// The Pod has a deletion timestamp: stop containers, then remove the object.
    Deleted(Box<Pod>),
    /// The Pod object is gone (force-deleted) or the kubelet shuts down: stop, touch nothing.
    Gone,
}

/// Waits for the Pod to be deleted, or the kubelet to shut down.
async fn stop_requested(updates: &mut watch::Receiver<Option<Pod>>, shutdown: &CancellationToken) -> Stop {
    loop {
        {
            let current = updates.borrow_and_update();
            match current.as_ref() {
                None => return Stop::Gone,
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => return Stop::Deleted(Box::new(pod.clone())),
                Some(_) => {}
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Stop::Gone,
            changed = updates.changed() => {
                if changed.is_err() {
                    return Stop::Gone;
                }
            }
        }
    }
}

async fn run_pod(ctx: Arc<Ctx>, pod: Pod, mut updates: watch::Receiver<Option<Pod>>, shutdown: CancellationToken) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".to_owned());
    let image = |c: &k8s_openapi::api::core::v1::Container| c.image.clone().unwrap_or_default();
    let runtime = Arc::new(Mutex::new(PodRuntime {
        pod_ip: None,
        host_ip: ctx.network.gateway().to_string(),
        start_time: Timestamp::now(),
        network_ready: false,
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ContainerRuntime::new(&c.name, &image(c)))
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| ContainerRuntime::new(&c.name, &image(c)))
            .collect(),
        terminal: None,
        message: None,
    }));
    let changed = Arc::new(Notify::new());
    let status_stop = CancellationToken::new();
    let status_task = tokio::spawn(status_loop(
        ctx.clone(),
        pod.clone(),
        runtime.clone(),
        changed.clone(),
        status_stop.clone(),
    ));
    info!(pod = %key, %uid, "starting pod");

    let stop = {
        let setup = setup(&ctx, &pod, &runtime, &changed);
        tokio::select! {
            stop = stop_requested(&mut updates, &shutdown) => Err(stop),
            setup = setup => Ok(setup),
        }
    };
    let (network, stop) = match stop {
        Err(stop) => (None, Some(stop)),
        Ok((network, volumes, facts, hosts_file)) => {
            let record = PodRecord {
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                network: Some(network.clone()),
                containers: Default::default(),
            };
            if let Err(err) = faults::write_record(&ctx.config.records_dir(), &record) {
                warn!(pod = %key, %err, "failed to write pod record");
            }
            let pod_cx = Arc::new(PodContext {
                ctx: ctx.clone(),
                pod: pod.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                uid: uid.clone(),
                facts,
                network: network.clone(),
                volumes,
                pod_dir: pod_dir(&ctx, &pod),
                hosts_file,
                restart_policy: restart_policy.clone(),
                runtime: runtime.clone(),
                changed: changed.clone(),
                record: Mutex::new(record),
            });
            let stop = run_containers(pod_cx, &mut updates, &shutdown).await;
            (Some(network), stop)
        }
    };

    // The end: containers are stopped; release the sandbox.
    if let Some(network) = &network {
        ctx.network.detach(network).await;
    }
    faults::remove_record(&ctx.config.records_dir(), &namespace, &name, &uid);
    {
        let mut hosts = ctx.hosts.lock();
        hosts.remove(&uid);
        hosts.write_all();
    }
    {
        let mut rt = runtime.lock();
        rt.network_ready = false;
        let PodRuntime { init, containers, .. } = &mut *rt;
        for c in init.iter_mut().chain(containers.iter_mut()) {
            c.ready = false;
            if let State::Waiting { .. } = c.state {
                let now = Timestamp::now();
                c.state = c.last_state.clone().unwrap_or(State::Terminated {
                    exit_code: 0,
                    reason: "ContainerStatusUnknown".into(),
                    message: Some("the pod was stopped before the container started".into()),
                    started_at: now,
                    finished_at: now,
                });
            }
        }
    }
    changed.notify_one();
    status_stop.cancel();
    let _ = status_task.await;
    match stop {
        Some(Stop::Deleted(latest)) => {
            let dir = pod_dir(&ctx, &pod);
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                debug!(dir = %dir.display(), %err, "pod dir not removed");
            }
            finalize_deletion(&ctx, &latest).await;
        }
        Some(Stop::Gone) => {}
        None => info!(pod = %key, "pod completed"),
    }
}

fn pod_dir(ctx: &Ctx, pod: &Pod) -> std::path::PathBuf {
    ctx.config.pods_dir().join(format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default()
    ))
}

type Sandbox = (PodNetwork, mounts::Volumes, PodFacts, std::path::PathBuf);

/// Network, facts and volumes of a Pod, retried until they are all there. A network that was
/// attached is detached again if the setup is abandoned (the future is dropped on deletion).
async fn setup(ctx: &Arc<Ctx>, pod: &Pod, runtime: &Arc<Mutex<PodRuntime>>, changed: &Arc<Notify>) -> Sandbox {
    let mut network: Option<NetworkGuard> = None;
    loop {
        let attempt = setup_once(ctx, pod, &mut network).await;
        match attempt {
            Ok((volumes, facts, hosts_file)) => {
                let Some(guard) = network.take() else { continue };
                let network = guard.disarm();
                runtime.lock().message = None;
                changed.notify_one();
                return (network, volumes, facts, hosts_file);
            }
            Err(message) => {
                debug!(pod = %pod.name_any(), %message, "pod sandbox not ready");
                {
                    let mut rt = runtime.lock();
                    rt.message = Some(message.clone());
                    let PodRuntime { init, containers, .. } = &mut *rt;
                    for c in init.iter_mut().chain(containers.iter_mut()) {
                        c.state = State::Waiting {
                            reason: "ContainerCreating".into(),
                            message: Some(message.clone()),
                        };
                    }
                    if let Some(network) = &network {
                        rt.pod_ip = Some(network.network.ip.to_string());
                        rt.network_ready = true;
                    }
                }
                changed.notify_one();
                tokio::time::sleep(SETUP_RETRY).await;
            }
        }
    }
}

/// Detaches a network unless disarmed: the setup future may be dropped at any await.
struct NetworkGuard {
    ctx: Arc<Ctx>,
    network: PodNetwork,
    armed: bool,
}

impl NetworkGuard {
    fn disarm(mut self) -> PodNetwork {
        self.armed = false;
        self.network.clone()
    }
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        if self.armed {
            let ctx = self.ctx.clone();
            let network = self.network.clone();
            tokio::spawn(async move { ctx.network.detach(&network).await });
        }
    }
}

async fn setup_once(
    ctx: &Arc<Ctx>,
    pod: &Pod,
    network: &mut Option<NetworkGuard>,
) -> Result<(mounts::Volumes, PodFacts, std::path::PathBuf), String> {
    if network.is_none() {
        let attached = ctx.network.attach().await.map_err(|e| format!("network: {e}"))?;
        *network = Some(NetworkGuard {
            ctx: ctx.clone(),
            network: attached,
            armed: true,
        });
    }
    let pod_ip = network.as_ref().map(|n| n.network.ip.to_string()).unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let facts = PodFacts {
        name: pod.name_any(),
        namespace: pod.namespace().unwrap_or_default(),
        uid: pod.uid().unwrap_or_default(),
        node_name: ctx.config.node_name.clone(),
        service_account: spec.service_account_name.clone().unwrap_or_else(|| "default".into()),
        pod_ip: pod_ip.clone(),
        host_ip: ctx.network.gateway().to_string(),
        labels: pod.labels().clone(),
        annotations: pod.annotations().clone(),
    };
    let dir = pod_dir(ctx, pod);
    std::fs::create_dir_all(&dir).map_err(|e| format!("pod dir {}: {e}", dir.display()))?;
    let hostname = spec.hostname.clone().unwrap_or_else(|| pod.name_any());
    let hosts_file = dir.join("etc-hosts");
    let entry = HostEntry {
        ip: pod_ip.clone(),
        hostname,
        subdomain: spec.subdomain.clone(),
        namespace: facts.namespace.clone(),
    };
    {
        let mut hosts = ctx.hosts.lock();
        hosts.set(&facts.uid, entry, hosts_file.clone());
        hosts.write_all();
    }

    let sources = super::container::fetch_sources(&ctx.client, &facts.namespace, pod)
        .await
        .map_err(|e| e.to_string())?;
    let allocatable = super::env::Allocatable {
        cpu: ctx.config.capacity_cpu.clone(),
        memory: ctx.config.capacity_memory.clone(),
    };
    let cx = VolumeContext {
        client: &ctx.client,
        pod,
        pod_dir: &dir,
        facts: &facts,
        sources: &sources,
        allocatable: &allocatable,
    };
    let volumes = mounts::prepare(&cx).await.map_err(|e| e.to_string())?;
    Ok((volumes, facts, hosts_file))
}

/// Init containers in order, then all containers; returns why the Pod stopped, or `None` when
/// it completed on its own.
async fn run_containers(
    pod: Arc<PodContext>,
    updates: &mut watch::Receiver<Option<Pod>>,
    shutdown: &CancellationToken,
) -> Option<Stop> {
    pod.update(|rt| {
        rt.pod_ip = Some(pod.network.ip.to_string());
        rt.network_ready = true;
        for c in rt.containers.iter_mut() {
            c.state = State::waiting(if rt.init.is_empty() {
                "ContainerCreating"
            } else {
                "PodInitializing"
            });
        }
    });
    let (stop_tx, stop_rx) = watch::channel::<Option<Duration>>(None);
    let spec = pod.pod.spec.clone().unwrap_or_default();

    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        let supervisor = Supervisor {
            pod: pod.clone(),
            container: container.clone(),
            index,
            init: true,
            stop: stop_rx.clone(),
        };
        let mut task = tokio::spawn(supervisor.run());
        let outcome = tokio::select! {
            outcome = &mut task => outcome,
            stop = stop_requested(updates, shutdown) => {
                let _ = stop_tx.send(Some(stop_grace(updates.borrow().as_ref(), shutdown)));
                let _ = task.await;
                return Some(stop);
            }
        };
        match outcome {
            Ok(Outcome::Exited(0)) => {}
            Ok(Outcome::Exited(code)) => {
                // Only reached under `Never`: any other policy retries a failed init container.
                info!(pod = %pod.name, container = %container.name, code, "init container failed, pod failed");
                pod.update(|rt| rt.terminal = Some(Terminal::Failed));
                return None;
            }
            Ok(Outcome::Stopped) | Err(_) => return Some(Stop::Gone),
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    for (index, container) in spec.containers.iter().enumerate() {
        let supervisor = Supervisor {
            pod: pod.clone(),
            container: container.clone(),
            index,
            init: false,
            stop: stop_rx.clone(),
        };
        tasks.spawn(supervisor.run());
    }
    let stop = tokio::select! {
        stop = stop_requested(updates, shutdown) => Some(stop),
        _ = async { while tasks.join_next().await.is_some() {} } => None,
    };
    match stop {
        Some(stop) => {
            let _ = stop_tx.send(Some(stop_grace(updates.borrow().as_ref(), shutdown)));
            while tasks.join_next().await.is_some() {}
            Some(stop)
        }
        None => {
            let terminal = pod
                .runtime
                .lock()
                .completion(&pod.restart_policy)
                .unwrap_or(Terminal::Failed);
            pod.update(|rt| rt.terminal = Some(terminal));
            None
        }
    }
}

/// Patches the Pod's status whenever the runtime changes, and at least every resync period.
async fn status_loop(
    ctx: Arc<Ctx>,
    pod: Pod,
    runtime: Arc<Mutex<PodRuntime>>,
    changed: Arc<Notify>,
    stop: CancellationToken,
) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut written: Option<PodStatus> = None;
    let mut previous: Option<PodStatus> = pod.status.clone();
    let mut final_attempts = 3;
    loop {
        let stopping = stop.is_cancelled();
        let snapshot = runtime.lock().clone();
        let desired = status::pod_status(&snapshot, previous.as_ref(), Timestamp::now());
        if written.as_ref() != Some(&desired) {
            let mut body = serde_json::to_value(&desired).unwrap_or_default();
            if desired.message.is_none()
                && let Some(map) = body.as_object_mut()
            {
                // A merge patch only clears a field that is explicitly null.
                map.insert("message".into(), serde_json::Value::Null);
            }
            let patch = json!({ "status": body });
            // Bounded: an unreachable apiserver must not hold up a Pod's teardown (or the
            // kubelet's shutdown) for the client's default timeout.
            let patched = tokio::time::timeout(
                PATCH_TIMEOUT,
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
            .unwrap_or_else(|_| Err(kube::Error::Service("status patch timed out".into())));
            match patched {
                Ok(_) => {
                    previous = Some(desired.clone());
                    written = Some(desired);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => return,
                Err(err) => {
                    warn!(pod = %format!("{namespace}/{name}"), %err, "failed to patch pod status");
                    if stopping && final_attempts > 0 {
                        // The final status (terminated containers, completed phase) must get
                        // out: it is what a Job controller counts.
                        final_attempts -= 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(STATUS_RESYNC) => {}
            _ = stop.cancelled() => {}
        }
    }
}
