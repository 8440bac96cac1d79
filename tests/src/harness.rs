//! The e2e harness: one shared sandbox per test run, a fresh namespace per test, and the verbs
//! tests are written in (`apply`, `wait_for`, `pod_ip`, `kubectl`, `helm`).
//!
//! Why one control plane for the whole run: starting it takes seconds to tens of seconds, a
//! namespace takes milliseconds, and namespaces isolate tests well enough for everything but
//! cluster-scoped objects (whose names a test must make unique itself). The first test (of any
//! test binary) that needs the sandbox starts it under a file lock; later ones find it running.
//! It keeps running after the tests so that the next run is warm; `ferrokv-sandbox down` stops it.
//!
//! Every test gets a new kube `Client`: a client's connection pool belongs to the tokio runtime
//! that created it, and each `#[tokio::test]` has its own runtime.
//!
//! Test namespaces older than an hour are leftovers of earlier runs and are deleted when a test
//! process first opens the sandbox.
//!
//! When a test fails (panics) its namespace is kept and a dump of its Pods, the tail of each of
//! their containers' logs (the kubelet's log files, what `kubectl logs` serves) and its Events,
//! with the sandbox's log directory, goes to stderr, which the test runner shows with the
//! failure.

use std::fmt::Display;
use std::fs::OpenOptions;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Api, Client, ResourceExt};
use nix::fcntl::{Flock, FlockArg};
use rand::distr::{Alphanumeric, SampleString};
use serde::Deserialize;

use crate::controlplane::{Sandbox, SandboxError};

/// The field manager of everything the harness applies.
pub const FIELD_MANAGER: &str = "ferrokv-e2e";

/// Set to keep every test namespace, not only those of failed tests.
pub const KEEP_NAMESPACES_ENV: &str = "FERROKV_E2E_KEEP_NAMESPACES";

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("failed to lock {path}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("kubernetes API call failed: {what}")]
    Kube { what: String, source: kube::Error },
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("prometheus query failed: {0}")]
    Prometheus(String),
    #[error("timed out after {timeout:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Kube { what, source }
}

static SHARED: tokio::sync::Mutex<Option<Sandbox>> = tokio::sync::Mutex::const_new(None);

/// The shared sandbox, started if it is not running. `sandbox_exe` is the `ferrokv-sandbox`
/// binary (`env!("CARGO_BIN_EXE_ferrokv-sandbox")` in this crate's tests).
pub async fn shared_sandbox(sandbox_exe: &Path) -> Result<Sandbox, HarnessError> {
    crate::install_crypto_provider();
    let mut shared = SHARED.lock().await;
    if let Some(sandbox) = shared.as_ref() {
        return Ok(sandbox.clone());
    }
    let sandbox = Sandbox::open_default()?;
    let lock_path = sandbox.dir().join("up.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| HarnessError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    // Blocks this test thread while another test binary runs `up`: it is about to be usable.
    let lock = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| HarnessError::Lock {
        path: lock_path,
        source: errno.into(),
    })?;
    let report = sandbox.up(sandbox_exe).await?;
    drop(lock);
    if !report.started.is_empty() {
        eprintln!(
            "e2e: sandbox up in {:.1}s (started {}) at {}",
            report.elapsed.as_secs_f64(),
            report.started.join(", "),
            sandbox.dir().display()
        );
    }
    remove_stale_namespaces(&sandbox).await;
    *shared = Some(sandbox.clone());
    Ok(sandbox)
}

/// Test namespaces older than this are leftovers of earlier runs (kept because their test
/// failed, or because the run was killed). No test uses its namespace this long: a cargo test
/// step is bounded well below it.
const STALE_NAMESPACE_AGE: Duration = Duration::from_secs(3600);

/// Delete the test namespaces earlier runs left on the shared sandbox. What they hold keeps
/// running otherwise (an operator Pod of a failed e2e keeps reconciling, for ever, on every
/// kubelet restart), costing every later run CPU and descriptors. Best effort: a failure here
/// only means the leftovers stay another run.
async fn remove_stale_namespaces(sandbox: &Sandbox) {
    let Ok(client) = sandbox.admin_client().await else {
        return;
    };
    let api = Api::<Namespace>::all(client);
    let Ok(list) = api.list(&ListParams::default().labels("ferrokv.dev/e2e=true")).await else {
        return;
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    for ns in list.items {
        let created = ns.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let stale = created.is_some_and(|c| {
            let age = now.duration_since(c);
            age.is_positive() && age.unsigned_abs() >= STALE_NAMESPACE_AGE
        });
        if stale && ns.metadata.deletion_timestamp.is_none() {
            let name = ns.name_any();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(namespace = %name, "deleted a test namespace left by an earlier run"),
                Err(err) => tracing::warn!(namespace = %name, %err, "could not delete a stale test namespace"),
            }
        }
    }
}

/// One test's namespace on the shared sandbox.
pub struct TestNs {
    pub client: Client,
    pub name: String,
    sandbox: Sandbox,
    cleaned: bool,
}

impl TestNs {
    /// A fresh namespace `e2e-<prefix>-<random>` on the shared sandbox.
    pub async fn new(prefix: &str, sandbox_exe: &Path) -> Result<Self, HarnessError> {
        let sandbox = shared_sandbox(sandbox_exe).await?;
        let client = sandbox.admin_client().await?;
        let name = format!(
            "e2e-{prefix}-{}",
            Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase()
        );
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"ferrokv.dev/e2e": "true"}}
        }))
        .map_err(|e| HarnessError::Manifest(e.to_string()))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(kube_err(format!("create namespace {name}")))?;
        Ok(Self {
            client,
            name,
            sandbox,
            cleaned: false,
        })
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// An API of namespaced `K` in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Server-side apply every document of `yaml` (namespaced objects without a namespace go to
    /// this test's namespace), as `kubectl apply --server-side --force-conflicts` would.
    pub async fn apply(&self, yaml: &str) -> Result<Vec<DynamicObject>, HarnessError> {
        let mut applied = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
            let value = serde_json::Value::deserialize(doc).map_err(|e| HarnessError::Manifest(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let mut obj: DynamicObject =
                serde_json::from_value(value).map_err(|e| HarnessError::Manifest(e.to_string()))?;
            let types = obj
                .types
                .clone()
                .ok_or_else(|| HarnessError::Manifest("a document has no kind".into()))?;
            let gvk = GroupVersionKind::try_from(&types).map_err(|e| HarnessError::Manifest(e.to_string()))?;
            let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(kube_err(format!("discover {}", types.kind)))?;
            let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
                let ns = obj.namespace().unwrap_or_else(|| self.name.clone());
                obj.metadata.namespace = Some(ns.clone());
                Api::namespaced_with(self.client.clone(), &ns, &resource)
            } else {
                Api::all_with(self.client.clone(), &resource)
            };
            let name = obj.name_any();
            let result = api
                .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj))
                .await
                .map_err(kube_err(format!("apply {} {name}", types.kind)))?;
            applied.push(result);
        }
        Ok(applied)
    }

    /// Poll `check` until it returns `Ok(Some(value))` or `timeout` passes. An `Err` (or
    /// `Ok(None)`) means "not yet"; the last error is reported on timeout.
    pub async fn wait_for<T, E, F, Fut>(&self, what: &str, timeout: Duration, check: F) -> Result<T, HarnessError>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, E>>,
    {
        wait_for(what, timeout, check).await
    }

    /// The IP of Pod `name`, once it has one.
    pub async fn pod_ip(&self, name: &str) -> Result<Option<IpAddr>, HarnessError> {
        let pod = self
            .api::<Pod>()
            .get(name)
            .await
            .map_err(kube_err(format!("get pod {name}")))?;
        Ok(pod.status.and_then(|s| s.pod_ip).and_then(|ip| ip.parse().ok()))
    }

    /// `kubectl` as the sandbox admin, defaulting to this test's namespace.
    pub fn kubectl(&self) -> Result<Command, HarnessError> {
        let mut cmd = Command::new(self.sandbox.binary("kubectl")?);
        cmd.env("KUBECONFIG", self.sandbox.admin_kubeconfig())
            .arg("--namespace")
            .arg(&self.name);
        Ok(cmd)
    }

    /// `helm` as the sandbox admin, defaulting to this test's namespace, with its caches and
    /// config inside the sandbox so that the user's helm setup neither leaks in nor is touched.
    pub fn helm(&self) -> Result<Command, HarnessError> {
        let mut cmd = Command::new(self.sandbox.binary("helm")?);
        let home = self.sandbox.dir().join("helm");
        cmd.env("KUBECONFIG", self.sandbox.admin_kubeconfig())
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("HELM_NAMESPACE", &self.name);
        Ok(cmd)
    }

    /// Run an instant PromQL query against the sandbox's Prometheus; returns `data.result`.
    pub async fn prometheus_query(&self, promql: &str) -> Result<Vec<serde_json::Value>, HarnessError> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let port = self.sandbox.state().ports.prometheus;
        let (status, body) = crate::controlplane::plain_http_get(port, &path)
            .await
            .map_err(|e| HarnessError::Prometheus(e.to_string()))?;
        let value: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| HarnessError::Prometheus(format!("HTTP {status}: {e}: {body}")))?;
        match value.pointer("/data/result").and_then(|r| r.as_array()) {
            Some(result) if status == 200 => Ok(result.clone()),
            _ => Err(HarnessError::Prometheus(format!("HTTP {status}: {body}"))),
        }
    }

    /// Pods (phase, IP, conditions, container states) and Events of this namespace, and where
    /// the sandbox's logs are.
    pub async fn dump(&self) -> String {
        dump(&self.client, &self.name, &self.sandbox).await
    }

    /// Delete the namespace (unless `FERROKV_E2E_KEEP_NAMESPACES` is set). Not waiting for it
    /// to be gone: the namespace controller finishes in the background.
    pub async fn cleanup(mut self) -> Result<(), HarnessError> {
        self.cleaned = true;
        if std::env::var_os(KEEP_NAMESPACES_ENV).is_some() {
            return Ok(());
        }
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await
            .map_err(kube_err(format!("delete namespace {}", self.name)))?;
        Ok(())
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            if !self.cleaned {
                tracing::warn!(namespace = %self.name, "TestNs dropped without cleanup(); namespace kept");
            }
            return;
        }
        // The test failed: dump what it left. Drop cannot await, and this thread's runtime may
        // be the one panicking, so the dump runs on a thread with its own runtime.
        let (kubeconfig, ns, sandbox) = (self.sandbox.admin_kubeconfig(), self.name.clone(), self.sandbox.clone());
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = crate::controlplane::client_from_kubeconfig(&kubeconfig).await.ok()?;
                Some(dump(&client, &ns, &sandbox).await)
            })
        });
        match handle.join() {
            Ok(Some(text)) => eprintln!("{text}"),
            _ => eprintln!("e2e: could not dump namespace {} after the failure", self.name),
        }
        eprintln!("e2e: namespace {} kept for inspection", self.name);
    }
}

/// Poll `check` until it returns `Ok(Some(value))` or `timeout` passes (see [`TestNs::wait_for`]).
pub async fn wait_for<T, E, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, HarnessError>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, E>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                timeout,
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Percent-encode a URL query value (RFC 3986 unreserved characters stay as they are).
fn percent_encode(value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// How much of each container log a dump shows (its end).
const DUMP_LOG_TAIL: usize = 3000;

async fn dump(client: &Client, ns: &str, sandbox: &Sandbox) -> String {
    use std::fmt::Write as _;
    let mut out = format!("===== e2e dump of namespace {ns} =====\n");
    match Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(pods) => {
            let _ = writeln!(out, "--- pods ({})", pods.items.len());
            for pod in pods.items {
                let name = pod.name_any();
                let status = pod.status.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{name}: phase={} node={} ip={}",
                    status.phase.unwrap_or_default(),
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_else(|| "<none>".into()),
                    status.pod_ip.unwrap_or_else(|| "<none>".into()),
                );
                for c in status.conditions.unwrap_or_default() {
                    let _ = writeln!(
                        out,
                        "    condition {}={} {}",
                        c.type_,
                        c.status,
                        c.message.unwrap_or_default()
                    );
                }
                for c in status.container_statuses.unwrap_or_default() {
                    let _ = writeln!(
                        out,
                        "    container {} ready={} restarts={} state={}",
                        c.name,
                        c.ready,
                        c.restart_count,
                        serde_json::to_string(&c.state).unwrap_or_default()
                    );
                }
                let containers = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>();
                for container in containers {
                    let path = sandbox.container_log(ns, &name, &container);
                    let text = match std::fs::read(&path) {
                        Ok(bytes) => {
                            let text = String::from_utf8_lossy(&bytes);
                            let mut from = text.len().saturating_sub(DUMP_LOG_TAIL);
                            while !text.is_char_boundary(from) {
                                from += 1;
                            }
                            text[from..].to_string()
                        }
                        Err(e) => format!("({e})\n"),
                    };
                    let _ = write!(out, "    --- log of {container} ({}):\n{text}", path.display());
                }
            }
        }
        Err(e) => {
            let _ = writeln!(out, "--- pods: {e}");
        }
    }
    match Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
    {
        Ok(events) => {
            let mut events = events.items;
            events.sort_by_key(|e| e.last_timestamp.clone());
            let _ = writeln!(out, "--- events ({})", events.len());
            for e in events {
                let _ = writeln!(
                    out,
                    "{} {} {}/{}: {}",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.message.unwrap_or_default()
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "--- events: {e}");
        }
    }
    let _ = writeln!(
        out,
        "--- sandbox logs: {}; container logs: {}",
        sandbox.logs_dir().display(),
        sandbox.kubelet_dir().join("logs").display()
    );
    out
}
