//! The sandbox's control plane: etcd, kube-apiserver and kube-controller-manager (real binaries
//! built by `scripts/sandbox-bootstrap.sh`), the local S3 endpoint, Prometheus and our kubelet,
//! started as background processes with their state under one sandbox directory.
//!
//! Layout of a sandbox directory (default `~/.cache/ferrokv/sandbox`, `FERROKV_SANDBOX_DIR`):
//! `state.json` (ports, S3 credentials and the Pod network, chosen once so that kubeconfigs and
//! `env` output stay valid across `down`/`up`), `pki/`, `admin.kubeconfig`, `etcd/`, `s3/`,
//! `prometheus/`, `kubelet/` (Pod dirs, volumes, container logs, fault-injection records),
//! `serviceaccounts/` (per-ServiceAccount kubeconfigs), `logs/<component>.log`,
//! `pids/<component>.pid`.
//!
//! `up` is idempotent: a component that runs with the configuration `up` would give it is left
//! alone, a dead one is started, and one whose configuration changed (flags, certificates, the
//! kubelet's binary directory) is restarted; see [`crate::daemon`] for the fingerprint.
//!
//! Why every component starts at once and readiness is awaited afterwards: the apiserver retries
//! etcd and the controller manager retries the apiserver, so starting them together overlaps
//! their start-up and keeps a warm `up` within seconds. Readiness means the apiserver's `/readyz`
//! (which includes etcd and the RBAC bootstrap) and the controller manager having created the
//! `default` ServiceAccount (proof that it runs with working credentials), not just a open port.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::{DaemonError, Daemons};
use crate::kubelet::{ImageMap, NetworkConfig};
use crate::pki::{Pki, PkiError};

/// The Kubernetes release `scripts/sandbox-bootstrap.sh` builds (its `K8S_VERSION`; a unit test
/// keeps the two equal). k8s-openapi's `v1_36` feature matches it.
pub const K8S_VERSION: &str = "v1.36.3";

/// The bootstrap script, named in every "binary missing" error.
pub const BOOTSTRAP_SCRIPT: &str = "scripts/sandbox-bootstrap.sh";

/// How long `up` waits for each component to become ready. A cold start on a loaded 2-core
/// machine takes far longer than a warm one; this bounds a hung start, not a normal one.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// How long a component gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// How long the kubelet gets to exit on SIGTERM: it first stops every Pod within its grace
/// period (the kubelet bounds its own shutdown at 30 s), and a SIGKILL before that would leave
/// network namespaces behind (its container processes die with it through their death signal).
const KUBELET_STOP_GRACE: Duration = Duration::from_secs(45);

/// Port of the kubelet's API (container logs) on the Pod network's gateway, as on real nodes.
pub const KUBELET_PORT: u16 = 10250;

/// The environment variable that picks the Pod network (0..=9, see
/// [`NetworkConfig::indexed`]) of a sandbox created from now on. Two sandboxes that run at the
/// same time on one machine need different ones.
pub const POD_NETWORK_ENV: &str = "FERROKV_SANDBOX_NET";

/// The environment variable naming the directory of the workspace binaries Pods run
/// (`ferrokv-node`, `ferrokv-operator`, `sandbox-testimg`), if not the `ferrokv-sandbox`
/// binary's own directory.
pub const BIN_DIR_ENV: &str = "FERROKV_BIN_DIR";

const SERVICE_CIDR: &str = "10.96.0.0/16";

/// The controllers the sandbox runs (kube-controller-manager names). Not `*`: node lifecycle,
/// cloud, CSR and similar controllers have nothing to do without real nodes and only add load.
/// `persistentvolume-binder-controller` binds the PVs our kubelet provisions to their claims;
/// `root-ca-certificate-publisher-controller` publishes `kube-root-ca.crt`, which every
/// projected ServiceAccount token volume needs.
pub const CONTROLLERS: &[&str] = &[
    "statefulset-controller",
    "replicaset-controller",
    "deployment-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "disruption-controller",
    "resourcequota-controller",
];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{binary} is missing: run {BOOTSTRAP_SCRIPT} first (it builds the sandbox's binaries into {dir})")]
    MissingBinary { binary: String, dir: PathBuf },
    #[error("{program} is missing: install it (Debian package {package}; {BOOTSTRAP_SCRIPT} does)")]
    MissingProgram { program: String, package: String },
    #[error("failed to read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("failed to parse {path}")]
    ParseState { path: PathBuf, source: serde_json::Error },
    #[error("failed to find a free loopback port")]
    Port(#[source] std::io::Error),
    #[error("HOME is not set and FERROKV_CACHE/FERROKV_SANDBOX_DIR are not given")]
    NoHome,
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("failed to load kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("failed to serialize a kubeconfig")]
    SerializeKubeconfig(#[source] serde_yaml_ng::Error),
    #[error("failed to build a Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("failed to request a token for ServiceAccount {namespace}/{name}")]
    TokenRequest {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("the TokenRequest for ServiceAccount {namespace}/{name} returned no token")]
    EmptyToken { namespace: String, name: String },
    #[error("{component} exited during start-up; last log lines:\n{log}")]
    Exited { component: &'static str, log: String },
    #[error("{POD_NETWORK_ENV}={0:?} is not a number in 0..=9")]
    PodNetwork(String),
    #[error("failed to remove the network namespaces the kubelet left: {0}")]
    Netns(String),
    #[error("{component} was not ready within {timeout:?} (last: {last}); last log lines:\n{log}")]
    NotReady {
        component: &'static str,
        timeout: Duration,
        last: String,
        log: String,
    },
}

/// One process of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Etcd,
    Apiserver,
    ControllerManager,
    S3,
    PrometheusSd,
    Prometheus,
    Kubelet,
}

impl Component {
    /// In start order; `down` stops them in reverse, so the kubelet stops first, while the
    /// apiserver still takes its Pods' final status.
    pub const ALL: [Component; 7] = [
        Component::Etcd,
        Component::Apiserver,
        Component::ControllerManager,
        Component::S3,
        Component::PrometheusSd,
        Component::Prometheus,
        Component::Kubelet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::Apiserver => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::S3 => "s3",
            Component::PrometheusSd => "prometheus-sd",
            Component::Prometheus => "prometheus",
            Component::Kubelet => "kubelet",
        }
    }
}

/// Loopback ports, chosen free once and then kept (see the module doc).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub s3: u16,
    pub prometheus: u16,
}

/// Credentials of the local S3 endpoint: random per sandbox, so that a client that forgets to
/// sign (or signs with other keys) fails as it would against real S3.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    pub region: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub ports: Ports,
    pub s3: S3Credentials,
    /// The kubelet's Pod network (a sandbox made before it was recorded has the default one).
    #[serde(default)]
    pub pod_network: NetworkConfig,
}

/// What `up` did and how long it took.
#[derive(Debug)]
pub struct UpReport {
    pub started: Vec<&'static str>,
    pub elapsed: Duration,
    pub apiserver_ready: Duration,
    pub controller_manager_ready: Duration,
    pub kubelet_ready: Duration,
    /// Components restarted because their configuration changed.
    pub restarted: Vec<&'static str>,
}

/// One sandbox directory and the processes that run from it.
#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
    bin_dir: PathBuf,
    /// Where Pods' binaries come from (see [`BIN_DIR_ENV`]); `None`: next to `ferrokv-sandbox`.
    pod_bin_dir: Option<PathBuf>,
    state: State,
    pki: Pki,
    daemons: Daemons,
}

/// `~/.cache/ferrokv` or `FERROKV_CACHE`.
pub fn cache_dir() -> Result<PathBuf, SandboxError> {
    if let Some(dir) = std::env::var_os("FERROKV_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").ok_or(SandboxError::NoHome)?;
    Ok(PathBuf::from(home).join(".cache").join("ferrokv"))
}

/// Where the bootstrap script puts the binaries of [`K8S_VERSION`].
pub fn bin_dir() -> Result<PathBuf, SandboxError> {
    Ok(cache_dir()?.join(format!("k8s-{K8S_VERSION}")))
}

/// `FERROKV_SANDBOX_DIR` or `~/.cache/ferrokv/sandbox`.
pub fn default_dir() -> Result<PathBuf, SandboxError> {
    if let Some(dir) = std::env::var_os("FERROKV_SANDBOX_DIR") {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_dir()?.join("sandbox"))
}

impl Sandbox {
    /// Open (or lay out) the sandbox at `dir`: its state, PKI and kubeconfigs. Starts nothing.
    pub fn open(dir: &Path) -> Result<Self, SandboxError> {
        fs::create_dir_all(dir).map_err(|source| SandboxError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let dir = dir.canonicalize().map_err(|source| SandboxError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let state = load_or_create_state(&dir.join("state.json"))?;
        // Pods reach the apiserver through a forwarder on their bridge's gateway, and the
        // apiserver reaches the kubelet's API there: both certificates must name it.
        let gateway = [IpAddr::V4(state.pod_network.gateway())];
        let pki = Pki::ensure(&dir.join("pki"), &gateway, &gateway)?;
        let daemons = Daemons::new(dir.join("pids"), dir.join("logs"));
        let sandbox = Self {
            bin_dir: bin_dir()?,
            pod_bin_dir: std::env::var_os(BIN_DIR_ENV).map(PathBuf::from),
            dir,
            state,
            pki,
            daemons,
        };
        sandbox.write_client_cert_kubeconfig(&sandbox.admin_kubeconfig(), "admin")?;
        sandbox
            .write_client_cert_kubeconfig(&sandbox.dir.join("controller-manager.kubeconfig"), "controller-manager")?;
        Ok(sandbox)
    }

    /// The sandbox at [`default_dir`].
    pub fn open_default() -> Result<Self, SandboxError> {
        Self::open(&default_dir()?)
    }

    /// Run Pods' binaries from `dir` (e.g. `target/release`) instead of [`BIN_DIR_ENV`] or the
    /// directory of the `ferrokv-sandbox` binary that runs `up`.
    pub fn with_pod_bin_dir(mut self, dir: PathBuf) -> Self {
        self.pod_bin_dir = Some(dir);
        self
    }

    /// The kubelet's directory: Pod dirs, volumes, `logs/<ns>/<pod>/<container>.log`, `run/`.
    pub fn kubelet_dir(&self) -> PathBuf {
        self.dir.join("kubelet")
    }

    /// Fault injection into the kubelet's Pods (crash, freeze, cut the network).
    pub fn faults(&self) -> crate::kubelet::Faults {
        crate::kubelet::Faults::new(&self.kubelet_dir())
    }

    /// The log file of a container (every run appended, see
    /// [`crate::kubelet::container::container_log`]).
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        crate::kubelet::container::container_log(&self.kubelet_dir().join("logs"), namespace, pod, container)
    }

    /// The kubelet's API, as the apiserver reaches it.
    pub fn kubelet_url(&self) -> String {
        format!("https://{}:{KUBELET_PORT}", self.state.pod_network.gateway())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The cluster-admin kubeconfig (client certificate in `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    pub fn apiserver_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.state.ports.apiserver)
    }

    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.state.ports.s3)
    }

    pub fn s3_root(&self) -> PathBuf {
        self.dir.join("s3")
    }

    pub fn prometheus_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.state.ports.prometheus)
    }

    /// A binary the bootstrap script builds (`kubectl`, `helm`, ...), or an error naming the script.
    pub fn binary(&self, name: &str) -> Result<PathBuf, SandboxError> {
        let path = self.bin_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(SandboxError::MissingBinary {
                binary: name.to_string(),
                dir: self.bin_dir.clone(),
            })
        }
    }

    /// The PID of a running component.
    pub fn running(&self, component: Component) -> Option<u32> {
        self.daemons.running(component.name())
    }

    /// `KUBECONFIG`, the S3 endpoint and credentials, the Prometheus URL and a `PATH` with
    /// kubectl and helm, as `export` lines would set them.
    pub fn env(&self) -> Vec<(String, String)> {
        let s3 = &self.state.s3;
        let path = std::env::var("PATH").unwrap_or_default();
        vec![
            ("KUBECONFIG".into(), self.admin_kubeconfig().display().to_string()),
            ("AWS_ENDPOINT_URL_S3".into(), self.s3_endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), s3.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), s3.secret_key.clone()),
            ("AWS_REGION".into(), s3.region.clone()),
            ("FERROKV_S3_BUCKET".into(), s3.bucket.clone()),
            ("PROMETHEUS_URL".into(), self.prometheus_url()),
            ("PATH".into(), format!("{}:{path}", self.bin_dir.display())),
        ]
    }

    /// A client of the apiserver as the sandbox admin.
    pub async fn admin_client(&self) -> Result<Client, SandboxError> {
        client_from_kubeconfig(&self.admin_kubeconfig()).await
    }

    /// Start whatever is not running (or runs with an outdated configuration) and wait until
    /// everything is ready, the kubelet's Node included. `sandbox_exe` is the `ferrokv-sandbox`
    /// binary, which serves S3 (`s3-serve`) and runs the kubelet (`kubelet`) in processes of
    /// their own.
    pub async fn up(&self, sandbox_exe: &Path) -> Result<UpReport, SandboxError> {
        let t0 = Instant::now();
        let etcd = self.binary("etcd")?;
        let apiserver = self.binary("kube-apiserver")?;
        let kcm = self.binary("kube-controller-manager")?;
        let prometheus = which("prometheus").ok_or_else(|| SandboxError::MissingProgram {
            program: "prometheus".into(),
            package: "prometheus".into(),
        })?;
        fs::create_dir_all(self.s3_root().join(&self.state.s3.bucket)).map_err(|source| SandboxError::Write {
            path: self.s3_root(),
            source,
        })?;
        self.write_prometheus_config()?;
        let pod_bin_dir = match &self.pod_bin_dir {
            Some(dir) => dir.clone(),
            None => sandbox_exe.parent().map(Path::to_path_buf).unwrap_or_default(),
        };

        let mut started = Vec::new();
        let mut restarted = Vec::new();
        let mut spawn = |component: Component| -> Result<bool, SandboxError> {
            let (program, args, files) = match component {
                Component::Etcd => (etcd.clone(), self.etcd_args(), vec![]),
                Component::Apiserver => (
                    apiserver.clone(),
                    self.apiserver_args(),
                    vec![self.pki.apiserver().cert, self.pki.apiserver_kubelet_client().cert],
                ),
                Component::ControllerManager => (kcm.clone(), self.controller_manager_args(), vec![]),
                Component::S3 => (sandbox_exe.to_path_buf(), self.s3_args(), vec![]),
                Component::PrometheusSd => (sandbox_exe.to_path_buf(), self.prometheus_sd_args(), vec![]),
                Component::Prometheus => (prometheus.clone(), self.prometheus_args(), vec![]),
                Component::Kubelet => (
                    sandbox_exe.to_path_buf(),
                    self.kubelet_args(&pod_bin_dir),
                    vec![self.pki.kubelet().cert],
                ),
            };
            // The program's modification time too: a rebuilt `ferrokv-sandbox` (new kubelet
            // code) must not leave the previous build's kubelet running.
            let modified = fs::metadata(&program)
                .and_then(|m| m.modified())
                .map(|t| format!("{t:?}"))
                .unwrap_or_default();
            let mut program_bytes = program.as_os_str().as_encoded_bytes().to_vec();
            program_bytes.extend_from_slice(modified.as_bytes());
            let contents: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap_or_default()).collect();
            let mut parts: Vec<&[u8]> = vec![&program_bytes];
            parts.extend(args.iter().map(|a| a.as_bytes()));
            parts.extend(contents.iter().map(Vec::as_slice));
            let fingerprint = crate::daemon::fingerprint(&parts);
            let name = component.name();
            if self.running(component).is_some() {
                if self.daemons.fingerprint(name) == fingerprint {
                    return Ok(false);
                }
                tracing::info!(component = name, "configuration changed, restarting");
                self.stop_component(component)?;
                restarted.push(name);
            }
            let pid = self.daemons.spawn(name, &program, &args, &fingerprint)?;
            tracing::info!(component = name, pid, "started");
            started.push(name);
            Ok(true)
        };
        for component in Component::ALL {
            // The controller manager exits at once if the apiserver cannot yet serve its
            // authentication config (or RBAC is not bootstrapped), and the kubelet gives up
            // registering after a minute, which a cold apiserver may need: both start once the
            // apiserver is ready.
            if !matches!(component, Component::ControllerManager | Component::Kubelet) {
                spawn(component)?;
            }
        }

        let client = self.admin_client().await?;
        self.wait_ready(Component::Apiserver, || async {
            match client.request_text(http_get("/readyz")?).await {
                Ok(body) if body.trim() == "ok" => Ok(None),
                Ok(body) => Err(body),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
        let apiserver_ready = t0.elapsed();
        spawn(Component::ControllerManager)?;
        spawn(Component::Kubelet)?;
        let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        self.wait_ready(Component::ControllerManager, || async {
            match service_accounts.get_opt("default").await {
                Ok(Some(_)) => Ok(None),
                Ok(None) => Err("no ServiceAccount default/default yet".to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
        let controller_manager_ready = t0.elapsed();
        let s3_port = self.state.ports.s3;
        self.wait_ready(Component::S3, || async move {
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, s3_port))
                .await
                .map(|_| None)
                .map_err(|e| e.to_string())
        })
        .await?;
        let prometheus_port = self.state.ports.prometheus;
        self.wait_ready(Component::Prometheus, || async move {
            match plain_http_get(prometheus_port, "/-/ready").await {
                Ok((200, _)) => Ok(None),
                Ok((status, body)) => Err(format!("HTTP {status}: {body}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
        // A Node left Ready by an earlier kubelet says nothing about the running one: its Ready
        // condition must name the running kubelet's PID.
        let nodes: Api<Node> = Api::all(client.clone());
        let node_name = crate::kubelet::KubeletConfig::new("", ImageMap::new()).node_name;
        self.wait_ready(Component::Kubelet, || async {
            let pid = self
                .running(Component::Kubelet)
                .ok_or_else(|| "the kubelet does not run".to_string())?;
            let node = nodes.get_opt(&node_name).await.map_err(|e| e.to_string())?;
            let ready = node
                .and_then(|n| n.status?.conditions)
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .ok_or_else(|| format!("no node {node_name} with a Ready condition yet"))?;
            let message = ready.message.unwrap_or_default();
            if ready.status == "True" && message == crate::kubelet::node::ready_message_of(pid) {
                Ok(None)
            } else {
                Err(format!("node {node_name} Ready={}: {message}", ready.status))
            }
        })
        .await?;
        let kubelet_ready = t0.elapsed();
        Ok(UpReport {
            started,
            elapsed: t0.elapsed(),
            apiserver_ready,
            controller_manager_ready,
            kubelet_ready,
            restarted,
        })
    }

    /// Stop every component by PID (reverse start order). Returns the names stopped.
    pub fn down(&self) -> Result<Vec<&'static str>, SandboxError> {
        let mut stopped = Vec::new();
        for component in Component::ALL.iter().rev() {
            if self.stop_component(*component)? {
                stopped.push(component.name());
            }
        }
        Ok(stopped)
    }

    /// Stop one component. For the kubelet, also make sure no Pod network namespace of this
    /// sandbox survives it: it removes them itself on SIGTERM, but one killed by SIGKILL (or a
    /// crash) cannot, and a leftover namespace would keep its veth and address on the bridge.
    fn stop_component(&self, component: Component) -> Result<bool, SandboxError> {
        let grace = match component {
            Component::Kubelet => KUBELET_STOP_GRACE,
            _ => STOP_GRACE,
        };
        let stopped = self.daemons.stop(component.name(), grace)?;
        if component == Component::Kubelet {
            self.remove_pod_namespaces()?;
        }
        Ok(stopped)
    }

    /// Deletes the network namespaces named with this sandbox's Pod network prefix, if any.
    fn remove_pod_namespaces(&self) -> Result<(), SandboxError> {
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .env("PATH", crate::kubelet::process::DEFAULT_PATH)
                .output()
                .map_err(|e| SandboxError::Netns(e.to_string()))
        };
        let listing = ip(&["netns", "list"])?;
        let prefix = format!("{}-", self.state.pod_network.name_prefix);
        for name in String::from_utf8_lossy(&listing.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
        {
            tracing::warn!(netns = name, "removing a Pod network namespace the kubelet left");
            let out = ip(&["netns", "del", name])?;
            if !out.status.success() {
                return Err(SandboxError::Netns(String::from_utf8_lossy(&out.stderr).into_owned()));
            }
        }
        Ok(())
    }

    /// Poll `probe` until it reports ready (`Ok(None)`), failing early if the component's process
    /// is gone and after [`READY_TIMEOUT`] otherwise.
    async fn wait_ready<F, Fut>(&self, component: Component, mut probe: F) -> Result<(), SandboxError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<()>, String>>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        // "Not running" must hold twice, a second apart, before start-up is
        // declared failed: one look was seen to misjudge a process that was
        // just started (CI, loaded machine), failing `up` for nothing.
        let mut gone_since: Option<Instant> = None;
        loop {
            let last = match probe().await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if self.running(component).is_some() {
                gone_since = None;
            } else if gone_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(1) {
                return Err(SandboxError::Exited {
                    component: component.name(),
                    log: self.daemons.log_tail(component.name(), 4000),
                });
            }
            if Instant::now() >= deadline {
                return Err(SandboxError::NotReady {
                    component: component.name(),
                    timeout: READY_TIMEOUT,
                    last,
                    log: self.daemons.log_tail(component.name(), 4000),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn etcd_args(&self) -> Vec<String> {
        let p = &self.state.ports;
        let client = format!("http://127.0.0.1:{}", p.etcd_client);
        let peer = format!("http://127.0.0.1:{}", p.etcd_peer);
        vec![
            "--name=sandbox".into(),
            format!("--data-dir={}", self.dir.join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=sandbox={peer}"),
            // The sandbox is disposable; fsync on a disk shared with parallel builds would make
            // every API write wait for the disk and the control plane crawl.
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ]
    }

    fn apiserver_args(&self) -> Vec<String> {
        let pki = &self.pki;
        let p = &self.state.ports;
        vec![
            format!("--etcd-servers=http://127.0.0.1:{}", p.etcd_client),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", p.apiserver),
            format!("--tls-cert-file={}", pki.apiserver().cert.display()),
            format!("--tls-private-key-file={}", pki.apiserver().key.display()),
            format!("--client-ca-file={}", pki.ca().cert.display()),
            "--authorization-mode=Node,RBAC".into(),
            "--anonymous-auth=false".into(),
            format!(
                "--service-account-key-file={}",
                pki.service_account_public_key().display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key().display()
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            format!(
                "--kubelet-client-certificate={}",
                pki.apiserver_kubelet_client().cert.display()
            ),
            format!("--kubelet-client-key={}", pki.apiserver_kubelet_client().key.display()),
            // `kubectl logs` goes through the apiserver to the kubelet's API, at the Node's
            // InternalIP (the Pod bridge's gateway), verified against the sandbox CA.
            format!("--kubelet-certificate-authority={}", pki.ca().cert.display()),
            "--kubelet-preferred-address-types=InternalIP".into(),
            "--allow-privileged=true".into(),
            // A loopback address is not a valid Endpoints address: the `kubernetes` Service's
            // endpoints would be rejected on every reconcile, so do not reconcile them.
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
        ]
    }

    fn controller_manager_args(&self) -> Vec<String> {
        let kubeconfig = self.dir.join("controller-manager.kubeconfig");
        vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kubeconfig.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", self.state.ports.controller_manager),
            format!("--controllers={}", CONTROLLERS.join(",")),
            format!("--root-ca-file={}", self.pki.ca().cert.display()),
            format!(
                "--service-account-private-key-file={}",
                self.pki.service_account_key().display()
            ),
            // Each controller acts as its own ServiceAccount, as in kubeadm clusters, so that the
            // bootstrap RBAC roles are exercised and not bypassed.
            "--use-service-account-credentials=true".into(),
            // One controller manager: waiting for a lease first would only slow `up` down.
            "--leader-elect=false".into(),
            format!("--cert-dir={}", self.dir.join("controller-manager").display()),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        ]
    }

    fn kubelet_args(&self, pod_bin_dir: &Path) -> Vec<String> {
        let net = &self.state.pod_network;
        let kubelet = self.pki.kubelet();
        vec![
            "kubelet".into(),
            format!("--kubeconfig={}", self.admin_kubeconfig().display()),
            format!("--dir={}", self.kubelet_dir().display()),
            format!("--bin-dir={}", pod_bin_dir.display()),
            format!("--bridge={}", net.bridge),
            format!("--subnet={}", net.subnet),
            format!("--prefix-len={}", net.prefix_len),
            format!("--name-prefix={}", net.name_prefix),
            format!("--apiserver=127.0.0.1:{}", self.state.ports.apiserver),
            format!("--port={KUBELET_PORT}"),
            format!("--tls-cert-file={}", kubelet.cert.display()),
            format!("--tls-private-key-file={}", kubelet.key.display()),
            format!("--client-ca-file={}", self.pki.ca().cert.display()),
        ]
    }

    fn s3_args(&self) -> Vec<String> {
        let s3 = &self.state.s3;
        vec![
            "s3-serve".into(),
            format!("--root={}", self.s3_root().display()),
            format!("--listen=127.0.0.1:{}", self.state.ports.s3),
            format!("--access-key={}", s3.access_key),
            format!("--secret-key={}", s3.secret_key),
        ]
    }

    fn prometheus_sd_args(&self) -> Vec<String> {
        vec![
            "prometheus-sd".into(),
            format!("--kubeconfig={}", self.admin_kubeconfig().display()),
            format!("--out={}", self.prometheus_targets().display()),
        ]
    }

    /// The file_sd target file `prometheus-sd` writes and Prometheus reads.
    pub fn prometheus_targets(&self) -> PathBuf {
        self.prometheus_dir().join("pods.json")
    }

    fn prometheus_dir(&self) -> PathBuf {
        self.dir.join("prometheus")
    }

    fn prometheus_args(&self) -> Vec<String> {
        let dir = self.prometheus_dir();
        vec![
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{}", self.state.ports.prometheus),
            "--web.enable-lifecycle".into(),
            "--storage.tsdb.retention.time=1d".into(),
        ]
    }

    /// Prometheus scrapes the Pods that `prometheus-sd` finds through the apiserver (annotated
    /// `prometheus.io/scrape: "true"`, at their Pod IP and `prometheus.io/port`, path
    /// `prometheus.io/path`, default `/metrics`). Rule files dropped into `prometheus/rules/` are
    /// loaded on reload (`POST /-/reload`).
    fn write_prometheus_config(&self) -> Result<(), SandboxError> {
        let dir = self.prometheus_dir();
        let rules = dir.join("rules");
        fs::create_dir_all(&rules).map_err(|source| SandboxError::Write {
            path: rules.clone(),
            source,
        })?;
        let config = format!(
            r#"# Written by ferrokv-sandbox up; edits are overwritten.
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - {rules}/*.yml
scrape_configs:
  - job_name: kubernetes-pods
    file_sd_configs:
      - files: [{targets}]
"#,
            rules = rules.display(),
            targets = self.prometheus_targets().display(),
        );
        let targets = self.prometheus_targets();
        if !targets.exists() {
            fs::write(&targets, "[]").map_err(|source| SandboxError::Write {
                path: targets.clone(),
                source,
            })?;
        }
        let path = dir.join("prometheus.yml");
        fs::write(&path, config).map_err(|source| SandboxError::Write { path, source })
    }

    /// A kubeconfig that authenticates with the client certificate `<pki>/<cert_name>.crt`.
    pub fn write_client_cert_kubeconfig(&self, path: &Path, cert_name: &str) -> Result<(), SandboxError> {
        let cert = self.pki.dir().join(format!("{cert_name}.crt"));
        let key = self.pki.dir().join(format!("{cert_name}.key"));
        let user = serde_json::json!({
            "client-certificate": cert.display().to_string(),
            "client-key": key.display().to_string(),
        });
        self.write_kubeconfig(path, cert_name, user)
    }

    fn write_kubeconfig(&self, path: &Path, user_name: &str, user: serde_json::Value) -> Result<(), SandboxError> {
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sandbox", "cluster": {
                "server": self.apiserver_url(),
                "certificate-authority": self.pki.ca().cert.display().to_string(),
            }}],
            "users": [{"name": user_name, "user": user}],
            "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": user_name}}],
            "current-context": "sandbox",
        });
        let yaml = serde_yaml_ng::to_string(&kubeconfig).map_err(SandboxError::SerializeKubeconfig)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| SandboxError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        fs::write(path, yaml).map_err(|source| SandboxError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A kubeconfig authenticated as ServiceAccount `namespace/name` with a token from the
    /// TokenRequest API (valid for `ttl`), so that a local process (the operator) acts with
    /// exactly that ServiceAccount's RBAC permissions. Written to
    /// `<sandbox>/serviceaccounts/<namespace>-<name>.kubeconfig`.
    pub async fn service_account_kubeconfig(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<PathBuf, SandboxError> {
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| SandboxError::TokenRequest {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        let token = response
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| SandboxError::EmptyToken {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })?;
        let path = self
            .dir
            .join("serviceaccounts")
            .join(format!("{namespace}-{name}.kubeconfig"));
        let user_name = format!("system:serviceaccount:{namespace}:{name}");
        self.write_kubeconfig(&path, &user_name, serde_json::json!({ "token": token }))?;
        Ok(path)
    }
}

/// A client for the cluster and user of a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, SandboxError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| SandboxError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| SandboxError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    Client::try_from(config).map_err(SandboxError::Client)
}

fn http_get(path: &str) -> Result<http::Request<Vec<u8>>, String> {
    http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())
}

/// A plain-HTTP GET on loopback (Prometheus has no TLS here), returning status and body: a few
/// lines of HTTP/1.0 spare the crate an HTTP client dependency for probes and queries.
pub async fn plain_http_get(port: u16, path_and_query: &str) -> std::io::Result<(u16, String)> {
    plain_http_get_at(std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path_and_query).await
}

/// [`plain_http_get`] at any address, e.g. a Pod IP on the sandbox's Pod network.
pub async fn plain_http_get_at(addr: std::net::SocketAddr, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path_and_query} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip()).as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(invalid)?;
    Ok((status, body.to_string()))
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn load_or_create_state(path: &Path) -> Result<State, SandboxError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SandboxError::ParseState {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pod_network = match std::env::var(POD_NETWORK_ENV) {
                Ok(value) => match value.parse::<u8>() {
                    Ok(index) if index <= 9 => NetworkConfig::indexed(index),
                    _ => return Err(SandboxError::PodNetwork(value)),
                },
                Err(_) => NetworkConfig::default(),
            };
            let state = State {
                pod_network,
                ports: free_ports()?,
                s3: S3Credentials {
                    access_key: format!(
                        "SANDBOX{}",
                        Alphanumeric.sample_string(&mut rand::rng(), 13).to_uppercase()
                    ),
                    secret_key: Alphanumeric.sample_string(&mut rand::rng(), 40),
                    bucket: "ferrokv".into(),
                    region: "us-east-1".into(),
                },
            };
            let json = serde_json::to_vec_pretty(&state).map_err(|source| SandboxError::ParseState {
                path: path.to_path_buf(),
                source,
            })?;
            fs::write(path, json).map_err(|source| SandboxError::Write {
                path: path.to_path_buf(),
                source,
            })?;
            Ok(state)
        }
        Err(source) => Err(SandboxError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Six distinct free loopback ports. All listeners are held until every port is chosen, so the
/// kernel cannot hand the same port out twice.
fn free_ports() -> Result<Ports, SandboxError> {
    let listeners = (0..6)
        .map(|_| TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SandboxError::Port)?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SandboxError::Port)?;
    let mut it = ports.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(Ports {
        etcd_client: next(),
        etcd_peer: next(),
        apiserver: next(),
        controller_manager: next(),
        s3: next(),
        prometheus: next(),
    })
}

/// Status of each component: its PID if running.
pub fn status(sandbox: &Sandbox) -> BTreeMap<&'static str, Option<u32>> {
    Component::ALL.iter().map(|c| (c.name(), sandbox.running(*c))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_script_builds_the_version_the_sandbox_runs() {
        let script = include_str!("../../scripts/sandbox-bootstrap.sh");
        assert!(
            script.lines().any(|l| l == format!("K8S_VERSION={K8S_VERSION}")),
            "{BOOTSTRAP_SCRIPT} must set K8S_VERSION={K8S_VERSION}"
        );
    }
}
