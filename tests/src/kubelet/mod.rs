//! The sandbox's kubelet: a Kubernetes node whose Pods are local processes.
//!
//! There is no Docker and no kind on the machines this project runs on, yet every operator
//! feature must be proven against a real Kubernetes API. So the real control plane
//! (kube-apiserver, kube-controller-manager) is paired with this kubelet, written with kube-rs,
//! which plays every node-side role a cluster needs:
//!
//! ## Layout
//! - [`node`]: registers one Ready `Node` with capacity and renews its `Lease` in
//!   `kube-node-lease`, so the node lifecycle controller never taints it away.
//! - [`scheduler`]: binds the unscheduled Pods (default scheduler name) that fit that node
//!   (kube-scheduler's resource and `nodeSelector` filters against its allocatable and the Pods
//!   already there) through the `binding` subresource; one that does not fit stays Pending with
//!   kube-scheduler's `Unschedulable` condition and Event until it does. Affinity and taints are
//!   ignored: one node could never satisfy a shard's anti-affinity.
//! - [`volumes`]: the provisioner of the `sandbox` StorageClass: a PVC becomes a PV backed by a
//!   directory under the sandbox dir, bound to the claim, so StatefulSet volumeClaimTemplates bind
//!   and data outlives Pods.
//! - [`pods`]: watches the Pods bound to the node and runs one worker per Pod: network, volumes
//!   ([`mounts`]), init containers in order, containers supervised with restart policy and
//!   backoff ([`container`]), probes ([`probes`]), graceful termination, completion of Job Pods.
//!   Every change of the runtime state is patched into the Pod's status ([`status`]).
//! - [`process`]: how a container becomes a process: image → binary ([`images`]), `$(VAR)`
//!   expansion and env resolution ([`env`]), started inside the Pod's network namespace and a
//!   private mount namespace where volumes are bind-mounted at their real `mountPath`.
//! - [`netns`]: one network namespace per Pod with its own IP on a host bridge.
//! - [`faults`]: the fault injection tests use (crash, freeze, cut the network). It works from
//!   any process through the per-Pod record files the kubelet keeps, because e2e tests may run
//!   in a different process than the kubelet.
//! - [`apiproxy`]: a TCP forwarder from the bridge gateway to the apiserver, which is what the
//!   `kubernetes` Service is to in-cluster clients (there is no kube-proxy here).
//! - [`services`]: ClusterIP Services, proxied in userspace from the host bridge to ready
//!   endpoints (there is no kube-proxy).
//! - [`tcp`]: what both forwarders share: an accept that waits out descriptor exhaustion
//!   instead of failing (which would stop the kubelet), and a per-peer connection cap.
//! - [`logs`]: the kubelet's HTTPS API, serving container logs to the apiserver (`kubectl logs`).
//! - [`cli`]: the arguments of a `ferrokv-sandbox kubelet` process.
//!
//! Everything needs root (network and mount namespaces), which the sandbox machines have.

pub mod apiproxy;
pub mod cli;
pub mod container;
pub mod env;
pub mod faults;
pub mod images;
pub mod logs;
pub mod mounts;
pub mod netns;
pub mod node;
pub mod pods;
pub mod probes;
pub mod process;
pub mod scheduler;
pub mod services;
pub mod status;
pub mod tcp;
pub mod volumes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use faults::Faults;
pub use images::ImageMap;
pub use netns::NetworkConfig;

/// How long the kubelet keeps retrying its registration while the apiserver is not ready.
const STARTUP_RETRY: Duration = Duration::from_secs(60);

/// Longest shutdown: Pods get at most 5 s each, plus slack for a slow apiserver.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

/// Field manager of every write this kubelet makes.
pub const FIELD_MANAGER: &str = "ferrokv-sandbox-kubelet";

/// Errors that stop the kubelet as a whole (per-Pod errors are reported in Pod status instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("failed to load kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("network setup failed: {0}")]
    Network(#[from] netns::Error),
    #[error("failed to prepare sandbox directory {path}: {source}")]
    SandboxDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("api forwarder failed: {0}")]
    ApiProxy(#[source] std::io::Error),
    #[error("kubelet api failed: {0}")]
    KubeletApi(#[source] std::io::Error),
    #[error(transparent)]
    KubeletApiTls(#[from] logs::Error),
    #[error("node registration failed: {0}")]
    Node(#[from] node::Error),
    #[error("a kubelet task ended: {0}")]
    Task(String),
}

/// How a kubelet is set up. `KubeletConfig::new` gives the defaults a sandbox uses.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Name of the one Node this kubelet is.
    pub node_name: String,
    /// Root of everything the kubelet writes: Pod dirs, volume dirs, logs, fault records.
    pub sandbox_dir: PathBuf,
    /// Which local binary runs for which image.
    pub images: ImageMap,
    /// Bridge and address range of Pod networks.
    pub network: NetworkConfig,
    /// Capacity (and allocatable) advertised on the Node, which [`scheduler`] enforces: Pods
    /// whose requests exceed what is left stay Pending, as with kube-scheduler.
    pub capacity_cpu: String,
    pub capacity_memory: String,
    pub capacity_pods: u32,
    /// First wait before restarting a failed container; doubles up to `restart_backoff_max`.
    /// Kubernetes uses 10 s / 300 s; the sandbox default is shorter so tests see restarts quickly.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// The apiserver address (as the kubelet reaches it) that Pods reach at the bridge gateway
    /// on port `apiserver_pod_port`: in-cluster clients (the operator) get
    /// `KUBERNETES_SERVICE_HOST/PORT` pointing there. `None`: Pods get no API access.
    /// The apiserver's serving certificate must have [`NetworkConfig::gateway`] among its IP
    /// SANs, or in-cluster clients reject it.
    pub apiserver: Option<SocketAddr>,
    pub apiserver_pod_port: u16,
    /// The kubelet's HTTPS API (container logs) on the gateway; `None`: not served, and the Node
    /// advertises port 0, so the apiserver does not try.
    pub api: Option<KubeletApi>,
}

/// Where and with which certificates the kubelet's API is served.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeletApi {
    pub port: u16,
    pub tls: logs::TlsFiles,
}

impl KubeletConfig {
    pub fn new(sandbox_dir: impl Into<PathBuf>, images: ImageMap) -> Self {
        Self {
            node_name: "sandbox".to_owned(),
            sandbox_dir: sandbox_dir.into(),
            images,
            network: NetworkConfig::default(),
            capacity_cpu: "8".to_owned(),
            capacity_memory: "16Gi".to_owned(),
            capacity_pods: 110,
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(30),
            apiserver: None,
            apiserver_pod_port: 6443,
            api: None,
        }
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.sandbox_dir.join("pods")
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.sandbox_dir.join("volumes")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.sandbox_dir.join("logs")
    }

    /// Per-Pod records the fault injector reads (see [`faults`]).
    pub fn records_dir(&self) -> PathBuf {
        self.sandbox_dir.join("run")
    }
}

/// What every task of the kubelet shares.
pub(crate) struct Ctx {
    pub client: kube::Client,
    pub config: KubeletConfig,
    pub network: netns::Network,
    /// The `/etc/hosts` of every live Pod, rewritten as Pods come and go.
    pub hosts: parking_lot::Mutex<pods::HostsRegistry>,
    /// When this kubelet started: the transition time of the Node's conditions.
    pub started_at: k8s_openapi::jiff::Timestamp,
}

/// Runs a kubelet until `cancel` fires or one of its loops fails for good.
///
/// On cancellation every Pod's processes are stopped (SIGTERM, then SIGKILL after their
/// grace period) and their network namespaces removed, so nothing outlives the sandbox.
pub async fn run(client: kube::Client, config: KubeletConfig, cancel: CancellationToken) -> Result<(), Error> {
    for dir in [
        config.pods_dir(),
        config.volumes_dir(),
        config.logs_dir(),
        config.records_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| Error::SandboxDir {
            path: dir.clone(),
            source,
        })?;
    }
    // A broken certificate fails the start before anything is set up.
    let api_tls = config.api.as_ref().map(|api| logs::tls_config(&api.tls)).transpose()?;
    let network = netns::Network::setup(config.network.clone()).await?;
    let ctx = Arc::new(Ctx {
        client,
        config,
        network,
        hosts: Default::default(),
        started_at: k8s_openapi::jiff::Timestamp::now(),
    });
    // The apiserver may still be starting (a sandbox starts everything at once): retry the
    // first writes for a while before giving up.
    let deadline = std::time::Instant::now() + STARTUP_RETRY;
    loop {
        let attempt = async {
            node::register(&ctx).await?;
            volumes::ensure_storage_class(&ctx).await
        };
        match attempt.await {
            Ok(()) => break,
            Err(err) if std::time::Instant::now() < deadline && !cancel.is_cancelled() => {
                tracing::info!(%err, "apiserver not ready for the kubelet yet, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => {
                ctx.network.teardown().await;
                return Err(err);
            }
        }
    }

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(target) = ctx.config.apiserver {
        let listen = SocketAddr::new(ctx.network.gateway().into(), ctx.config.apiserver_pod_port);
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(Error::ApiProxy)?;
        tasks.spawn(apiproxy::serve(listener, target, cancel.clone()));
    }
    if let (Some(api), Some(tls)) = (&ctx.config.api, api_tls) {
        let listen = SocketAddr::new(ctx.network.gateway().into(), api.port);
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(Error::KubeletApi)?;
        tasks.spawn(logs::serve(
            listener,
            tls,
            ctx.config.sandbox_dir.clone(),
            cancel.clone(),
        ));
    }
    tasks.spawn(node::heartbeat(ctx.clone(), cancel.clone()));
    tasks.spawn(scheduler::run(ctx.clone(), cancel.clone()));
    tasks.spawn(volumes::run(ctx.clone(), cancel.clone()));
    tasks.spawn(pods::run(ctx.clone(), cancel.clone()));
    tasks.spawn(services::run(ctx.clone(), cancel.clone()));

    // The first task to end decides: a clean end means cancellation, anything else is a
    // failure that would leave the node half-working, so everything stops.
    let first = tasks.join_next().await;
    cancel.cancel();
    // Pods get their grace periods; past this bound whatever is left is aborted, which
    // drops (and so SIGKILLs) any container process still running.
    let drained = tokio::time::timeout(SHUTDOWN_BOUND, async { while tasks.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!("kubelet tasks did not stop in time, aborting them");
        tasks.shutdown().await;
    }
    ctx.network.teardown().await;
    match first {
        Some(Ok(result)) => result,
        Some(Err(join)) => Err(Error::Task(join.to_string())),
        None => Ok(()),
    }
}

/// Runs a kubelet in the foreground until SIGTERM or SIGINT, then stops every Pod process and
/// removes the Pod networks: what a `ferrokv-sandbox kubelet` subprocess calls.
pub async fn run_until_signal(kubeconfig: &std::path::Path, config: KubeletConfig) -> Result<(), Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let client = client_from_kubeconfig(kubeconfig).await?;
    let cancel = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::Task(format!("signal handler: {e}")))?;
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        on_signal.cancel();
    });
    run(client, config, cancel).await
}

/// A client for the cluster of a kubeconfig file.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client, Error> {
    crate::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    Ok(kube::Client::try_from(config)?)
}
