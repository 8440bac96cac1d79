//! One container's life: start, probe, restart with backoff, stop.
//!
//! A [`Supervisor`] owns one container of a Pod for the Pod's whole life. Each start resolves
//! the environment again (a Secret created after the Pod is picked up on the next try, as with
//! kubelet), spawns the process ([`process`]) and runs its probes; when the process ends, the
//! restart policy decides between restarting after a backoff (doubling from the kubelet
//! config's base to its cap, reset after a container ran cleanly for twice the cap, like
//! kubelet) and terminating. Every transition is written into the shared [`PodRuntime`] and
//! the Pod's status patcher is woken, so the API always shows the current state.
//!
//! [`process`]: super::process

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use nix::sys::signal::Signal;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};
use tracing::{info, warn};

use super::Ctx;
use super::env::{self, Allocatable, PodFacts, Sources};
use super::faults::{self, PodRecord};
use super::mounts::{self, Bind, Volumes};
use super::netns::PodNetwork;
use super::probes::{self, ProbeSpec, Target, Tracker};
use super::process::{self, Launch, Process};
use super::status::{PodRuntime, State};

/// What a Pod's containers share.
pub(crate) struct PodContext {
    pub ctx: Arc<Ctx>,
    pub pod: Pod,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub facts: PodFacts,
    pub network: PodNetwork,
    pub volumes: Volumes,
    pub pod_dir: std::path::PathBuf,
    pub hosts_file: std::path::PathBuf,
    pub restart_policy: String,
    pub runtime: Arc<Mutex<PodRuntime>>,
    pub changed: Arc<Notify>,
    pub record: Mutex<PodRecord>,
}

impl PodContext {
    pub fn allocatable(&self) -> Allocatable {
        Allocatable {
            cpu: self.ctx.config.capacity_cpu.clone(),
            memory: self.ctx.config.capacity_memory.clone(),
        }
    }

    /// Applies `f` to the runtime record and wakes the status patcher.
    pub fn update(&self, f: impl FnOnce(&mut PodRuntime)) {
        f(&mut self.runtime.lock());
        self.changed.notify_one();
    }

    fn set_pid(&self, container: &str, pid: Option<i32>) {
        let mut record = self.record.lock();
        match pid {
            Some(pid) => record.containers.insert(container.to_owned(), pid),
            None => record.containers.remove(container),
        };
        if let Err(err) = faults::write_record(&self.ctx.config.records_dir(), &record) {
            warn!(%err, "failed to write pod record");
        }
    }

    pub async fn fetch_sources(&self) -> Result<Sources, kube::Error> {
        fetch_sources(&self.ctx.client, &self.namespace, &self.pod).await
    }

    /// Variables every container gets before its own: what kubelet derives from the Pod and the
    /// `kubernetes` Service.
    fn base_env(&self) -> Vec<(String, String)> {
        let mut vars = vec![("HOSTNAME".to_owned(), self.hostname())];
        if self.ctx.config.apiserver.is_some() {
            let host = self.ctx.network.gateway().to_string();
            let port = self.ctx.config.apiserver_pod_port.to_string();
            vars.extend([
                ("KUBERNETES_SERVICE_HOST".to_owned(), host.clone()),
                ("KUBERNETES_SERVICE_PORT".to_owned(), port.clone()),
                ("KUBERNETES_SERVICE_PORT_HTTPS".to_owned(), port.clone()),
                ("KUBERNETES_PORT".to_owned(), format!("tcp://{host}:{port}")),
            ]);
        }
        vars
    }

    pub fn hostname(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| self.name.clone())
    }
}

/// Fetches every ConfigMap and Secret the Pod references. Absent objects are `None`; whether
/// that is an error depends on the reference's `optional`, decided by the caller.
pub async fn fetch_sources(client: &kube::Client, namespace: &str, pod: &Pod) -> Result<Sources, kube::Error> {
    let (config_maps, secrets) = referenced_sources(pod);
    let mut sources = Sources::default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for name in config_maps {
        let cm = cms.get_opt(&name).await?;
        sources.config_maps.insert(name, cm);
    }
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in secrets {
        let secret = secret_api.get_opt(&name).await?;
        sources.secrets.insert(name, secret);
    }
    Ok(sources)
}

/// Names of the ConfigMaps and Secrets a Pod's env, envFrom and volumes reference.
pub fn referenced_sources(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = std::collections::BTreeSet::new();
    let mut secrets = std::collections::BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (Vec::new(), Vec::new());
    };
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
        for var in c.env.iter().flatten() {
            if let Some(source) = &var.value_from {
                if let Some(r) = &source.config_map_key_ref {
                    cms.insert(r.name.clone());
                }
                if let Some(r) = &source.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            cms.insert(cm.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                cms.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (cms.into_iter().collect(), secrets.into_iter().collect())
}

/// How a supervised container ended for good.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Exited and the restart policy does not restart it.
    Exited(i32),
    /// Stopped by the kubelet (Pod deletion or kubelet shutdown).
    Stopped,
}

pub(crate) struct Supervisor {
    pub pod: Arc<PodContext>,
    pub container: Container,
    pub index: usize,
    pub init: bool,
    /// `Some(grace)`: stop the container now, with that grace period.
    pub stop: watch::Receiver<Option<Duration>>,
}

impl Supervisor {
    fn update(&self, f: impl FnOnce(&mut super::status::ContainerRuntime)) {
        let (init, index) = (self.init, self.index);
        self.pod.update(|rt| {
            if let Some(c) = rt.container_mut(init, index) {
                f(c);
            }
        });
    }

    fn restart_policy(&self) -> &str {
        self.pod.restart_policy.as_str()
    }

    /// Waits `delay` unless asked to stop; `true` when asked to stop.
    async fn sleep_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            stop = self.stop.wait_for(Option::is_some) => stop.is_ok(),
        }
    }

    fn stop_requested(&self) -> Option<Duration> {
        *self.stop.borrow()
    }

    /// Builds the launch of the next start, or the reason it cannot start.
    async fn launch(&self) -> Result<Launch, (String, String)> {
        let pod = &self.pod;
        let config_error = |msg: String| ("CreateContainerConfigError".to_owned(), msg);
        let image = self.container.image.clone().unwrap_or_default();
        let sources = pod.fetch_sources().await.map_err(|e| config_error(e.to_string()))?;
        let env = env::resolve(
            &self.container,
            &pod.facts,
            &sources,
            &pod.allocatable(),
            &pod.base_env(),
        )
        .map_err(|e| config_error(e.to_string()))?;
        let command = env::expand_all(self.container.command.as_deref().unwrap_or_default(), &env);
        let args = env::expand_all(self.container.args.as_deref().unwrap_or_default(), &env);
        let program = pod
            .ctx
            .config
            .images
            .program(&image, &command, &args)
            .map_err(|e| ("ErrImagePull".to_owned(), e.to_string()))?;
        let mut binds = mounts::binds(&self.container, &pod.volumes).map_err(|e| config_error(e.to_string()))?;
        mounts::create_missing_sources(&binds).map_err(|e| config_error(e.to_string()))?;
        if !binds.iter().any(|b| b.target == std::path::Path::new("/etc/hosts")) {
            binds.push(Bind {
                source: pod.hosts_file.clone(),
                target: "/etc/hosts".into(),
                read_only: false,
            });
        }
        let working_dir = match self.container.working_dir.as_deref().filter(|w| !w.is_empty()) {
            Some(dir) => dir.into(),
            None => {
                // Images default to "/", but a process writing relative paths there would write
                // into the host's root; a per-container directory stands in for the image root.
                let dir = pod.pod_dir.join("containers").join(&self.container.name);
                std::fs::create_dir_all(&dir).map_err(|e| config_error(e.to_string()))?;
                dir
            }
        };
        Ok(Launch {
            program,
            env,
            netns: pod.network.netns.clone(),
            hostname: pod.hostname(),
            binds,
            working_dir,
        })
    }

    fn probe_specs(&self) -> Probes {
        let images = &self.pod.ctx.config.images;
        let parse = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref().map(|p| probes::parse(p, &self.container, images))
        };
        if self.init {
            return Probes {
                startup: None,
                liveness: None,
                readiness: None,
            };
        }
        Probes {
            startup: parse(&self.container.startup_probe),
            liveness: parse(&self.container.liveness_probe),
            readiness: parse(&self.container.readiness_probe),
        }
    }

    /// Runs the container's `preStop` hook before it is signalled, within the grace period (which
    /// the hook's time counts against, as with kubelet). A failing hook is logged, not fatal.
    async fn pre_stop(&self, pid: i32, env: &[(String, String)], grace: Duration) {
        let Some(hook) = self.container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
            return;
        };
        if let Some(sleep) = &hook.sleep {
            let secs = Duration::from_secs(u64::try_from(sleep.seconds).unwrap_or(0));
            tokio::time::sleep(secs.min(grace)).await;
            return;
        }
        let as_probe = k8s_openapi::api::core::v1::Probe {
            exec: hook.exec.clone(),
            http_get: hook.http_get.clone(),
            tcp_socket: hook.tcp_socket.clone(),
            ..Default::default()
        };
        let mut spec = probes::parse(&as_probe, &self.container, &self.pod.ctx.config.images);
        spec.timeout = grace.max(Duration::from_secs(1));
        let target = Target {
            pid,
            pod_ip: IpAddr::V4(self.pod.network.ip),
            env,
        };
        if let Err(err) = tokio::time::timeout(grace, probes::check(&spec, &target))
            .await
            .unwrap_or(Err("timed out".into()))
        {
            warn!(pod = %self.pod.name, container = %self.container.name, %err, "preStop hook failed");
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    /// Runs the container until it ends for good.
    pub async fn run(mut self) -> Outcome {
        let config = &self.pod.ctx.config;
        let base = config.restart_backoff;
        let max = config.restart_backoff_max;
        let mut backoff = base;
        let name = self.container.name.clone();
        let log = container_log(&config.logs_dir(), &self.pod.namespace, &self.pod.name, &name);
        loop {
            if self.stop_requested().is_some() {
                self.terminate_waiting();
                return Outcome::Stopped;
            }
            // Preparing a start reads ConfigMaps and Secrets: a stop must not wait for the API.
            let mut stop = self.stop.clone();
            let prepared = tokio::select! {
                prepared = self.launch() => prepared,
                _ = stop.wait_for(Option::is_some) => {
                    self.terminate_waiting();
                    return Outcome::Stopped;
                }
            };
            let launch = match prepared {
                Ok(launch) => launch,
                Err((reason, message)) => {
                    warn!(pod = %self.pod.name, container = %name, %reason, %message, "container cannot start");
                    self.update(|c| {
                        c.state = State::Waiting {
                            reason,
                            message: Some(message),
                        }
                    });
                    if self.sleep_or_stop(backoff).await {
                        self.terminate_waiting();
                        return Outcome::Stopped;
                    }
                    backoff = (backoff * 2).min(max);
                    continue;
                }
            };
            let header = format!("--- {} start of {} (pod {})\n", Timestamp::now(), name, self.pod.uid);
            let _ = append(&log, &header);
            let started_at = Timestamp::now();
            let started_instant = Instant::now();
            let (status, stopped, reason_override) = match process::spawn(&launch, &log) {
                Err(err) => {
                    warn!(pod = %self.pod.name, container = %name, %err, "failed to start container");
                    let _ = append(&log, &format!("{err}\n"));
                    (Err(err.to_string()), false, None)
                }
                Ok(proc) => self.supervise(proc, started_at, launch.env.clone()).await,
            };
            let finished_at = Timestamp::now();
            let (exit_code, reason, message) = match status {
                Ok(code) => {
                    let reason =
                        reason_override.unwrap_or_else(|| if code == 0 { "Completed" } else { "Error" }.into());
                    (code, reason, None)
                }
                Err(message) => (128, "StartError".to_owned(), Some(message)),
            };
            let pod_key = format!("{}/{}", self.pod.namespace, self.pod.name);
            info!(pod = %pod_key, container = %name, exit_code, %reason, "container ended");
            let terminated = State::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            };
            let restart = !stopped
                && match self.restart_policy() {
                    "Never" => false,
                    "OnFailure" => exit_code != 0,
                    // Init containers under `Always` rerun only until they succeed.
                    _ => !self.init || exit_code != 0,
                };
            if !restart {
                self.update(|c| {
                    c.state = terminated;
                    c.ready = false;
                    c.pid = None;
                });
                return if stopped {
                    Outcome::Stopped
                } else {
                    Outcome::Exited(exit_code)
                };
            }
            if started_instant.elapsed() > max * 2 {
                backoff = base;
            }
            let message = format!(
                "back-off {backoff:?} restarting failed container={name} pod={}",
                self.pod.name
            );
            self.update(|c| {
                c.last_state = Some(terminated);
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(message),
                };
                c.ready = false;
                c.started = false;
                c.pid = None;
            });
            if self.sleep_or_stop(backoff).await {
                self.terminate_waiting();
                return Outcome::Stopped;
            }
            backoff = (backoff * 2).min(max);
            self.update(|c| c.restart_count += 1);
        }
    }

    /// A container stopped while waiting to (re)start shows its last termination, or a
    /// termination without a run, so that the Pod's final status has no waiting container.
    fn terminate_waiting(&self) {
        self.update(|c| {
            if let State::Waiting { .. } = c.state {
                let now = Timestamp::now();
                c.state = c.last_state.clone().unwrap_or(State::Terminated {
                    exit_code: 0,
                    reason: "ContainerStatusUnknown".into(),
                    message: Some("the container was stopped before it started".into()),
                    started_at: now,
                    finished_at: now,
                });
            }
            c.ready = false;
        });
    }

    /// Watches a running process: its exit, its probes, a stop request. Returns the exit code
    /// (or why it could not be had), whether it was stopped on request, and a reason replacing
    /// the default one (a liveness kill).
    async fn supervise(
        &mut self,
        mut proc: Process,
        started_at: Timestamp,
        env: Vec<(String, String)>,
    ) -> (Result<i32, String>, bool, Option<String>) {
        let name = self.container.name.clone();
        let probes = self.probe_specs();
        self.update(|c| {
            c.state = State::Running { started_at };
            c.pid = Some(proc.pid);
            c.started = probes.startup.is_none();
            c.ready = false;
        });
        self.pod.set_pid(&name, Some(proc.pid));
        let (kill_tx, mut kill_rx) = mpsc::channel::<String>(1);
        let prober = tokio::spawn(probe_loop(
            self.pod.clone(),
            self.init,
            self.index,
            proc.pid,
            env.clone(),
            probes,
            kill_tx,
        ));
        let grace = self.grace();
        let result = tokio::select! {
            status = proc.child.wait() => (status.map(process::exit_code).map_err(|e| e.to_string()), false, None),
            Some(reason) = kill_rx.recv() => {
                info!(pod = %self.pod.name, container = %name, %reason, "killing container");
                let status = process::stop(&mut proc, grace).await;
                (Ok(process::exit_code(status)), false, Some(reason))
            }
            requested = async { self.stop.wait_for(Option::is_some).await.ok().and_then(|g| *g) } => {
                let grace = requested.unwrap_or(grace);
                let deadline = Instant::now() + grace;
                self.pre_stop(proc.pid, &env, grace).await;
                let status = process::stop(&mut proc, deadline.saturating_duration_since(Instant::now())).await;
                (Ok(process::exit_code(status)), true, None)
            }
        };
        prober.abort();
        // The process group may have children left (a shell's background job): they go with it.
        let _ = process::signal(proc.pid, Signal::SIGKILL);
        self.pod.set_pid(&name, None);
        result
    }
}

struct Probes {
    startup: Option<ProbeSpec>,
    liveness: Option<ProbeSpec>,
    readiness: Option<ProbeSpec>,
}

/// Runs a container's probes for one of its runs. Startup first; then liveness and readiness
/// side by side. A failed startup or liveness probe asks the supervisor to kill the container.
async fn probe_loop(
    pod: Arc<PodContext>,
    init: bool,
    index: usize,
    pid: i32,
    env: Vec<(String, String)>,
    probes: Probes,
    kill: mpsc::Sender<String>,
) {
    let pod_ip = IpAddr::V4(pod.network.ip);
    let target = Target { pid, pod_ip, env: &env };
    let set = |f: &dyn Fn(&mut super::status::ContainerRuntime)| {
        pod.update(|rt| {
            if let Some(c) = rt.container_mut(init, index) {
                f(c);
            }
        })
    };
    if let Some(startup) = &probes.startup {
        tokio::time::sleep(startup.initial_delay).await;
        let mut tracker = Tracker::new(startup);
        loop {
            let result = probes::check(startup, &target).await;
            match tracker.record(result.is_ok()) {
                Some(true) => break,
                Some(false) => {
                    let _ = kill
                        .send(format!("startup probe failed: {}", result.err().unwrap_or_default()))
                        .await;
                    return;
                }
                None => {}
            }
            tokio::time::sleep(startup.period).await;
        }
    }
    set(&|c| {
        c.started = true;
        if probes.readiness.is_none() {
            c.ready = true;
        }
    });
    let liveness = async {
        let Some(spec) = &probes.liveness else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(spec.initial_delay).await;
        let mut tracker = Tracker::new(spec);
        loop {
            let result = probes::check(spec, &target).await;
            if tracker.record(result.is_ok()) == Some(false) {
                let _ = kill
                    .send(format!("liveness probe failed: {}", result.err().unwrap_or_default()))
                    .await;
                return;
            }
            tokio::time::sleep(spec.period).await;
        }
    };
    let readiness = async {
        let Some(spec) = &probes.readiness else {
            return std::future::pending::<()>().await;
        };
        tokio::time::sleep(spec.initial_delay).await;
        let mut tracker = Tracker::new(spec);
        loop {
            let result = probes::check(spec, &target).await;
            if let Some(ready) = tracker.record(result.is_ok()) {
                set(&|c| c.ready = ready);
            }
            tokio::time::sleep(spec.period).await;
        }
    };
    tokio::select! {
        _ = liveness => {}
        _ = readiness => {}
    }
}

/// The log file of a container: every run of every Pod of that name appends to it, each run
/// after a `--- <time> start of <container>` header line.
pub fn container_log(logs_dir: &std::path::Path, namespace: &str, pod: &str, container: &str) -> std::path::PathBuf {
    logs_dir.join(namespace).join(pod).join(format!("{container}.log"))
}

fn append(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_sources_cover_env_env_from_and_volumes() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p" },
            "spec": {
                "initContainers": [{ "name": "i", "envFrom": [{ "secretRef": { "name": "s-init" } }] }],
                "containers": [{
                    "name": "c",
                    "envFrom": [{ "configMapRef": { "name": "cm-from" } }],
                    "env": [
                        { "name": "A", "valueFrom": { "configMapKeyRef": { "name": "cm-key", "key": "k" } } },
                        { "name": "B", "valueFrom": { "secretKeyRef": { "name": "s-key", "key": "k" } } },
                    ],
                }],
                "volumes": [
                    { "name": "v1", "configMap": { "name": "cm-vol" } },
                    { "name": "v2", "secret": { "secretName": "s-vol" } },
                    { "name": "v3", "projected": { "sources": [
                        { "configMap": { "name": "kube-root-ca.crt" } },
                        { "serviceAccountToken": { "path": "token" } },
                    ] } },
                ],
            },
        }))
        .unwrap();
        let (cms, secrets) = referenced_sources(&pod);
        assert_eq!(cms, vec!["cm-from", "cm-key", "cm-vol", "kube-root-ca.crt"]);
        assert_eq!(secrets, vec!["s-init", "s-key", "s-vol"]);
    }
}
