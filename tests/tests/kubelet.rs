//! The sandbox kubelet against a real kube-apiserver and kube-controller-manager.
//!
//! The kubelet is the shared sandbox's own (`ferrokv-sandbox up` runs it as a daemon; the
//! harness starts the sandbox if needed), the one a user of the sandbox has: one kubelet per
//! sandbox. Its Pods run the workspace binaries of the `ferrokv-sandbox` binary's directory
//! (here this build's `sandbox-testimg`). Each scenario works in a namespace of its own and they
//! run concurrently. Fault injection goes through the kubelet's per-Pod records in its
//! directory (`<sandbox>/kubelet/run`), so it works from this process.
//!
//! Container mount paths are under `/var/lib/sandbox-test`: the kubelet runs processes on the
//! host's filesystem, so mount points it has to create are left there as empty directories.
//!
//! Scenarios (each reported by name on failure):
//! - `statefulset`: 3 replicas of the test image become Ready with distinct IPs, reach each
//!   other from inside their network namespaces by IP and by their headless-Service DNS names,
//!   and have their own hostname; a ClusterIP Service reaches them from the host and from a Pod
//!   (by IP and by name); a Pod deleted is recreated by the StatefulSet controller and finds the
//!   data it wrote in its PVC.
//! - `job`: a Job whose init container writes into an emptyDir and whose container reads it
//!   runs to completion (`Succeeded`, Job `succeeded: 1`), its output in the log file; a Job
//!   whose container exits 3 under `Never` fails with exit code 3.
//! - `crash`: a container killed with SIGKILL is restarted, its restart count rises and its
//!   last state says exit code 137; the Pod is Ready again.
//! - `network`: a Pod cut off the network is unreachable from the host until restored.
//! - `apiaccess`: a Pod reaches the apiserver the in-cluster way (`KUBERNETES_SERVICE_HOST/PORT`,
//!   the projected ServiceAccount token and CA), verifying the serving certificate: the kubelet's
//!   forwarder on the bridge gateway stands in for the `kubernetes` Service.
//! - `termination`: deleting a Pod runs its preStop hook, sends SIGTERM, and SIGKILLs a
//!   container that ignores it once the grace period is over; then the Pod object goes away.
//! - `config`: env from Secret / ConfigMap / downward API and `$(VAR)` expansion, ConfigMap,
//!   Secret and downward-API volumes, as seen by the process.
//! - `logs`: `kubectl logs` (apiserver → the kubelet's HTTPS API) shows a container's output,
//!   `--tail` its last lines, and after a crash restart `--previous` the previous run's output.
//! - `scheduling`: a Pod requesting more cpu than the node has, or with a `nodeSelector` the node
//!   does not match, stays Pending with kube-scheduler's `PodScheduled=False`/`Unschedulable`
//!   condition and message (written once, no churn) and a `FailedScheduling` Event; a Pod that
//!   fits runs; a Pod waiting for cpu a running Pod holds is bound and runs once that Pod is
//!   deleted. Its big Pod holds 6 of the node's 8 cpus for a few seconds: another test on the same
//!   sandbox that requests more than the rest meanwhile waits for it (nothing here requests any).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrokv_tests::controlplane::Sandbox;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGE: &str = "ferrokv/sandbox-testimg:dev";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubelet_scenarios() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ferrokv_tests=info,warn")
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let sandbox = ferrokv_tests::harness::shared_sandbox(Path::new(env!("CARGO_BIN_EXE_ferrokv-sandbox"))).await?;
    println!("sandbox (with its kubelet) up in {:?}", started.elapsed());
    let client = sandbox.admin_client().await?;
    let env = Env {
        client,
        faults: sandbox.faults(),
        sandbox_dir: sandbox.kubelet_dir(),
        sandbox,
    };
    wait_for("node Ready", Duration::from_secs(60), || async {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(env.client.clone());
        let node = nodes.get_opt("sandbox").await.ok()??;
        let ready = node
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await?;

    // Namespaces are unique per run: a namespace of an earlier, interrupted run may still be
    // terminating.
    let ns = |scenario: &str| format!("{scenario}-{}", std::process::id());
    let names = [
        "statefulset",
        "job",
        "crash",
        "network",
        "config",
        "apiaccess",
        "termination",
        "logs",
        "scheduling",
    ]
    .map(ns);
    let (a, b, c, d, e, f, g, h, i) = tokio::join!(
        run(&names[0], &env, statefulset(&env, &names[0])),
        run(&names[1], &env, job(&env, &names[1])),
        run(&names[2], &env, crash(&env, &names[2])),
        run(&names[3], &env, network(&env, &names[3])),
        run(&names[4], &env, config(&env, &names[4])),
        run(&names[5], &env, api_access(&env, &names[5])),
        run(&names[6], &env, termination(&env, &names[6])),
        run(&names[7], &env, logs(&env, &names[7])),
        run(&names[8], &env, scheduling(&env, &names[8])),
    );
    let scenarios = [a, b, c, d, e, f, g, h, i];
    let failures: Vec<String> = scenarios
        .into_iter()
        .filter_map(Result::err)
        .map(|e| format!("{e:#}"))
        .collect();
    if !failures.is_empty() {
        bail!("{} scenario(s) failed:\n{}", failures.len(), failures.join("\n\n"));
    }
    println!("all scenarios passed in {:?}", started.elapsed());
    Ok(())
}

struct Env {
    client: Client,
    faults: ferrokv_tests::kubelet::Faults,
    /// The sandbox kubelet's directory (volumes, logs, records).
    sandbox_dir: PathBuf,
    sandbox: Sandbox,
}

/// Runs a scenario in a fresh namespace named after it; on failure, dumps the namespace's Pods
/// and their logs so the failure can be understood from the test output alone.
async fn run(name: &str, env: &Env, scenario: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    let started = Instant::now();
    let result = scenario.await;
    match &result {
        Ok(()) => println!("scenario {name}: ok in {:?}", started.elapsed()),
        Err(err) => {
            println!("scenario {name}: FAILED after {:?}: {err:#}", started.elapsed());
            dump(env, name).await;
        }
    }
    // Deleting the namespace deletes its Pods through the kubelet (SIGTERM, grace period, final
    // delete); a namespace that does not go away means a Pod the kubelet did not let go of.
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let _ = namespaces.delete(name, &DeleteParams::default()).await;
    let gone = wait_for(
        &format!("namespace {name} to be deleted"),
        Duration::from_secs(90),
        || async { matches!(namespaces.get_opt(name).await, Ok(None)).then_some(()) },
    )
    .await;
    let result = result.and(gone);
    result.with_context(|| format!("scenario {name}"))
}

async fn dump(env: &Env, namespace: &str) {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
    for pod in pods
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let status = serde_json::to_string_pretty(&pod.status).unwrap_or_default();
        println!("--- pod {namespace}/{} status:\n{status}", pod.name_any());
        for c in pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        {
            let log = env
                .sandbox_dir
                .join("logs")
                .join(namespace)
                .join(pod.name_any())
                .join(format!("{}.log", c.name));
            let text = std::fs::read_to_string(&log).unwrap_or_else(|e| format!("({e})"));
            println!("--- log {}:\n{text}", log.display());
        }
    }
}

async fn create_namespace(env: &Env, name: &str) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } }))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    // Pods need the namespace's default ServiceAccount (the ServiceAccount admission plugin
    // rejects Pods until the controller created it).
    wait_for("default serviceaccount", Duration::from_secs(30), || async {
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(env.client.clone(), name);
        sas.get_opt("default").await.ok()?.map(|_| ())
    })
    .await
}

async fn create<K>(env: &Env, namespace: &str, value: serde_json::Value) -> Result<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(env.client.clone(), namespace);
    let object: K = serde_json::from_value(value)?;
    Ok(api.create(&PostParams::default(), &object).await?)
}

/// Polls `check` until it gives a value or `timeout` passes.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

/// Waits for a Ready Pod; `not_uid` skips an older incarnation of the same name.
async fn ready_pod(env: &Env, namespace: &str, name: &str, not_uid: Option<&str>) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), namespace);
    wait_for(
        &format!("pod {namespace}/{name} Ready"),
        Duration::from_secs(90),
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            let fresh = not_uid.is_none_or(|old| pod.uid().as_deref() != Some(old));
            (fresh && is_ready(&pod)).then_some(pod)
        },
    )
    .await
}

/// A plain HTTP GET from the host; `Err` when the Pod cannot be reached.
async fn http_get(ip: Ipv4Addr, port: u16, path: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("http timeout")??;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

fn serve_container(name: &str) -> serde_json::Value {
    json!({
        "name": name,
        "image": IMAGE,
        "args": ["serve", "8080"],
        "ports": [{ "name": "http", "containerPort": 8080 }],
        "env": [{ "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }],
        "readinessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 1 },
    })
}

async fn statefulset(env: &Env, ns: &str) -> Result<()> {
    create_namespace(env, ns).await?;
    create::<Service>(
        env,
        ns,
        json!({
            "metadata": { "name": "web" },
            "spec": { "clusterIP": "None", "selector": { "app": "web" }, "ports": [{ "port": 8080 }] },
        }),
    )
    .await?;
    let mut container = serve_container("web");
    container["volumeMounts"] = json!([{ "name": "data", "mountPath": "/var/lib/sandbox-test" }]);
    create::<StatefulSet>(
        env,
        ns,
        json!({
            "metadata": { "name": "web" },
            "spec": {
                "serviceName": "web",
                "replicas": 3,
                "podManagementPolicy": "Parallel",
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "terminationGracePeriodSeconds": 5, "containers": [container] },
                },
                "volumeClaimTemplates": [{
                    "metadata": { "name": "data" },
                    "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "10Mi" } } },
                }],
            },
        }),
    )
    .await?;

    let mut ips = Vec::new();
    for i in 0..3 {
        let pod = ready_pod(env, ns, &format!("web-{i}"), None).await?;
        ips.push(pod_ip(&pod).context("ready pod without ip")?);
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != 3 {
        bail!("pod ips are not distinct: {ips:?}");
    }
    for (i, ip) in ips.iter().enumerate() {
        let (code, body) = http_get(*ip, 8080, "/").await?;
        if code != 200 || !body.contains(&format!("hostname=web-{i} ")) || !body.contains(&format!("pod=web-{i}")) {
            bail!("web-{i} at {ip} answered {code} {body:?}");
        }
        for (j, peer) in ips.iter().enumerate() {
            let (code, body) = http_get(*ip, 8080, &format!("/fetch?addr={peer}:8080&path=/")).await?;
            if code != 200 || !body.contains(&format!("pod=web-{j}")) {
                bail!("web-{i} could not reach web-{j} at {peer}: {code} {body:?}");
            }
        }
    }

    // Peers find each other by their headless-Service DNS names (the kubelet's hosts files).
    for name in [format!("web-2.web.{ns}.svc.cluster.local"), "web-1.web".to_owned()] {
        let (code, body) = http_get(ips[0], 8080, &format!("/fetch?addr={name}:8080&path=/")).await?;
        if code != 200 || !body.contains(&format!("pod={}", &name[..5])) {
            bail!("web-0 could not reach {name}: {code} {body:?}");
        }
    }

    // A ClusterIP Service reaches the Pods, from the host and from a Pod (no kube-proxy: the
    // kubelet's userspace proxy on the bridge).
    let service = create::<Service>(
        env,
        ns,
        json!({
            "metadata": { "name": "web-svc" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
        }),
    )
    .await?;
    let cluster_ip: Ipv4Addr = service
        .spec
        .and_then(|s| s.cluster_ip)
        .context("service without cluster ip")?
        .parse()?;
    wait_for(
        "the service to answer from the host",
        Duration::from_secs(30),
        || async {
            let (code, body) = http_get(cluster_ip, 80, "/").await.ok()?;
            (code == 200 && body.contains("pod=web-")).then_some(())
        },
    )
    .await?;
    for addr in [
        cluster_ip.to_string(),
        "web-svc".to_owned(),
        format!("web-svc.{ns}.svc.cluster.local"),
    ] {
        let (code, body) = http_get(ips[2], 8080, &format!("/fetch?addr={addr}:80&path=/")).await?;
        if code != 200 || !body.contains("pod=web-") {
            bail!("web-2 could not reach service web-svc at {addr}:80 ({cluster_ip}): {code} {body:?}");
        }
    }

    // Data written into the claim survives the Pod.
    let (code, body) = http_get(
        ips[1],
        8080,
        "/write?path=/var/lib/sandbox-test/marker&data=kept-across-pods",
    )
    .await?;
    if code != 200 {
        bail!("write into the claim failed: {code} {body}");
    }
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let old = pods.get("web-1").await?;
    let old_uid = old.uid().unwrap_or_default();
    pods.delete("web-1", &DeleteParams::default()).await?;
    let new = ready_pod(env, ns, "web-1", Some(&old_uid)).await?;
    let new_ip = pod_ip(&new).context("recreated pod without ip")?;
    let (code, body) = http_get(new_ip, 8080, "/read?path=/var/lib/sandbox-test/marker").await?;
    if code != 200 || body != "kept-across-pods" {
        bail!("recreated web-1 read {code} {body:?} from its claim");
    }
    // Its name now resolves to its new address in its peers' hosts files.
    let (code, body) = http_get(ips[0], 8080, "/fetch?addr=web-1.web:8080&path=/").await?;
    if code != 200 || !body.contains("pod=web-1") {
        bail!("web-0 could not reach the recreated web-1 ({new_ip}) by name: {code} {body:?}");
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), ns);
    let claim = claims.get("data-web-1").await?;
    let volume = claim.spec.and_then(|s| s.volume_name).context("claim without volume")?;
    let on_disk = std::fs::read_to_string(env.sandbox_dir.join("volumes").join(&volume).join("marker"))?;
    if on_disk != "kept-across-pods" {
        bail!("volume dir of {volume} holds {on_disk:?}");
    }
    Ok(())
}

async fn job(env: &Env, ns: &str) -> Result<()> {
    create_namespace(env, ns).await?;
    // The main container also mounts an emptyDir over the directory its own binary lives in,
    // as a volume can cover an image's files: the kubelet must still start the program.
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_sandbox-testimg"))
        .parent()
        .context("test image binary without a directory")?
        .display()
        .to_string();
    create::<Job>(
        env,
        ns,
        json!({
            "metadata": { "name": "ok" },
            "spec": {
                "backoffLimit": 0,
                "template": { "spec": {
                    "restartPolicy": "Never",
                    "volumes": [{ "name": "work", "emptyDir": {} }, { "name": "cover", "emptyDir": {} }],
                    "initContainers": [{
                        "name": "prepare", "image": IMAGE,
                        "args": ["write", "/var/lib/sandbox-test/work/greeting", "hello from init"],
                        "volumeMounts": [{ "name": "work", "mountPath": "/var/lib/sandbox-test/work" }],
                    }],
                    "containers": [{
                        "name": "main", "image": IMAGE,
                        "args": ["cat", "/var/lib/sandbox-test/work/greeting"],
                        "volumeMounts": [
                            { "name": "work", "mountPath": "/var/lib/sandbox-test/work" },
                            { "name": "cover", "mountPath": bin_dir },
                        ],
                    }],
                } },
            },
        }),
    )
    .await?;
    create::<Job>(
        env,
        ns,
        json!({
            "metadata": { "name": "fails" },
            "spec": {
                "backoffLimit": 0,
                "template": { "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": IMAGE, "args": ["exit", "3"] }],
                } },
            },
        }),
    )
    .await?;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    wait_for("job ok to succeed", Duration::from_secs(90), || async {
        let job = jobs.get("ok").await.ok()?;
        (job.status?.succeeded? == 1).then_some(())
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let list = pods.list(&ListParams::default().labels("job-name=ok")).await?;
    let pod = list.items.first().context("no pod of job ok")?;
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    if phase.as_deref() != Some("Succeeded") {
        bail!("job pod phase {phase:?}");
    }
    let log = env
        .sandbox_dir
        .join("logs")
        .join(ns)
        .join(pod.name_any())
        .join("main.log");
    let text = std::fs::read_to_string(&log)?;
    if !text.contains("hello from init") {
        bail!(
            "main container log {} lacks the init container's output: {text:?}",
            log.display()
        );
    }

    wait_for("job fails to fail", Duration::from_secs(90), || async {
        let job = jobs.get("fails").await.ok()?;
        (job.status?.failed? >= 1).then_some(())
    })
    .await?;
    let list = pods.list(&ListParams::default().labels("job-name=fails")).await?;
    let pod = list.items.first().context("no pod of job fails")?;
    let status = pod.status.clone().unwrap_or_default();
    let code = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code));
    if status.phase.as_deref() != Some("Failed") || code != Some(3) {
        bail!("failing job pod: phase {:?}, exit code {code:?}", status.phase);
    }
    Ok(())
}

async fn single_pod(env: &Env, ns: &str, name: &str) -> Result<Pod> {
    create_namespace(env, ns).await?;
    create::<Pod>(
        env,
        ns,
        json!({
            "metadata": { "name": name },
            "spec": { "terminationGracePeriodSeconds": 2, "containers": [serve_container("srv")] },
        }),
    )
    .await?;
    ready_pod(env, ns, name, None).await
}

async fn crash(env: &Env, ns: &str) -> Result<()> {
    single_pod(env, ns, "srv").await?;
    env.faults.crash(ns, "srv", Some("srv"))?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let pod = wait_for(
        "restart count to rise and the pod to be Ready again",
        Duration::from_secs(60),
        || async {
            let pod = pods.get("srv").await.ok()?;
            let restarts = pod.status.as_ref()?.container_statuses.as_ref()?.first()?.restart_count;
            (restarts >= 1 && is_ready(&pod)).then_some(pod)
        },
    )
    .await?;
    let status = pod.status.and_then(|s| s.container_statuses).unwrap_or_default();
    let last = status
        .first()
        .and_then(|c| c.last_state.as_ref()?.terminated.as_ref().map(|t| t.exit_code));
    if last != Some(137) {
        bail!("last state after SIGKILL: exit code {last:?}, expected 137");
    }
    let ip = pod_ip(&ready_pod(env, ns, "srv", None).await?).context("no ip")?;
    let (code, _) = http_get(ip, 8080, "/healthz").await?;
    if code != 200 {
        bail!("restarted container answers {code}");
    }
    Ok(())
}

async fn network(env: &Env, ns: &str) -> Result<()> {
    let pod = single_pod(env, ns, "srv").await?;
    let ip = pod_ip(&pod).context("no ip")?;
    http_get(ip, 8080, "/healthz")
        .await
        .context("reachable before the cut")?;
    env.faults.cut_network(ns, "srv").await?;
    let cut = http_get(ip, 8080, "/healthz").await;
    env.faults.restore_network(ns, "srv").await?;
    if let Ok(answer) = cut {
        bail!("pod answered while cut off: {answer:?}");
    }
    wait_for("pod reachable after restore", Duration::from_secs(20), || async {
        http_get(ip, 8080, "/healthz").await.ok().filter(|(c, _)| *c == 200)
    })
    .await?;
    Ok(())
}

async fn config(env: &Env, ns: &str) -> Result<()> {
    create_namespace(env, ns).await?;
    create::<ConfigMap>(
        env,
        ns,
        json!({ "metadata": { "name": "cfg" }, "data": { "mode": "fast", "app.conf": "a=1\n" } }),
    )
    .await?;
    create::<Secret>(
        env,
        ns,
        json!({ "metadata": { "name": "creds" }, "stringData": { "password": "hunter2" } }),
    )
    .await?;
    let mut container = serve_container("srv");
    container["env"] = json!([
        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
        { "name": "MODE", "valueFrom": { "configMapKeyRef": { "name": "cfg", "key": "mode" } } },
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
        { "name": "ADDR", "value": "$(POD_IP):8080/$(MODE)" },
    ]);
    container["envFrom"] = json!([{ "prefix": "CFG_", "configMapRef": { "name": "cfg" } }]);
    container["volumeMounts"] = json!([
        { "name": "cfg", "mountPath": "/var/lib/sandbox-test/etc/cfg", "readOnly": true },
        { "name": "creds", "mountPath": "/var/lib/sandbox-test/etc/creds" },
        { "name": "info", "mountPath": "/var/lib/sandbox-test/etc/info" },
    ]);
    // Exec probes run inside the container's namespaces (they see its mounts) and name the
    // image's binary; a failing startup or liveness probe would restart the container.
    container["startupProbe"] = json!({
        "exec": { "command": ["sandbox-testimg", "cat", "/var/lib/sandbox-test/etc/info/name"] },
        "periodSeconds": 1, "failureThreshold": 5,
    });
    container["livenessProbe"] = json!({ "tcpSocket": { "port": "http" }, "periodSeconds": 1 });
    create::<Pod>(
        env,
        ns,
        json!({
            "metadata": { "name": "srv", "labels": { "tier": "test" } },
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [container],
                "volumes": [
                    { "name": "cfg", "configMap": { "name": "cfg" } },
                    { "name": "creds", "secret": { "secretName": "creds" } },
                    { "name": "info", "downwardAPI": { "items": [
                        { "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } },
                        { "path": "name", "fieldRef": { "fieldPath": "metadata.name" } },
                    ] } },
                ],
            },
        }),
    )
    .await?;
    let pod = ready_pod(env, ns, "srv", None).await?;
    let ip = pod_ip(&pod).context("no ip")?;
    let expect = [
        ("/env?name=MODE", "fast".to_owned()),
        ("/env?name=PASSWORD", "hunter2".to_owned()),
        ("/env?name=ADDR", format!("{ip}:8080/fast")),
        ("/env?name=CFG_mode", "fast".to_owned()),
        ("/read?path=/var/lib/sandbox-test/etc/cfg/app.conf", "a=1\n".to_owned()),
        (
            "/read?path=/var/lib/sandbox-test/etc/creds/password",
            "hunter2".to_owned(),
        ),
        (
            "/read?path=/var/lib/sandbox-test/etc/info/labels",
            "tier=\"test\"".to_owned(),
        ),
        ("/read?path=/var/lib/sandbox-test/etc/info/name", "srv".to_owned()),
    ];
    for (path, want) in expect {
        let (code, body) = http_get(ip, 8080, path).await?;
        if code != 200 || body != want {
            bail!("GET {path}: {code} {body:?}, expected {want:?}");
        }
    }
    let restarts = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first().map(|c| c.restart_count));
    if restarts != Some(0) {
        bail!("probes restarted the container: restart count {restarts:?}");
    }
    // The read-only ConfigMap mount is read-only for the process.
    let (code, _) = http_get(ip, 8080, "/write?path=/var/lib/sandbox-test/etc/cfg/x&data=1").await?;
    if code == 200 {
        bail!("wrote into a read-only mount");
    }
    Ok(())
}

async fn api_access(env: &Env, ns: &str) -> Result<()> {
    create_namespace(env, ns).await?;
    // Plain shell variables ($SA), not Kubernetes' $(VAR) references, are left to the shell.
    let script = "SA=/var/run/secrets/kubernetes.io/serviceaccount; \
        curl -sSf --max-time 10 --cacert $SA/ca.crt -H \"Authorization: Bearer `cat $SA/token`\" \
        https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/version";
    create::<Job>(
        env,
        ns,
        json!({
            "metadata": { "name": "version" },
            "spec": {
                "backoffLimit": 0,
                "template": { "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": IMAGE, "command": ["bash", "-c", script] }],
                } },
            },
        }),
    )
    .await?;
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), ns);
    let outcome = wait_for("job version to finish", Duration::from_secs(90), || async {
        let status = jobs.get("version").await.ok()?.status?;
        if status.succeeded.unwrap_or(0) == 1 {
            Some(true)
        } else if status.failed.unwrap_or(0) >= 1 {
            Some(false)
        } else {
            None
        }
    })
    .await?;
    if !outcome {
        bail!("the pod could not reach the apiserver in-cluster (see its log)");
    }
    Ok(())
}

async fn termination(env: &Env, ns: &str) -> Result<()> {
    create_namespace(env, ns).await?;
    let hook_dir = env.sandbox_dir.join(format!("hook-{ns}"));
    let grace = 3;
    create::<Pod>(
        env,
        ns,
        json!({
            "metadata": { "name": "stubborn" },
            "spec": {
                "terminationGracePeriodSeconds": grace,
                "volumes": [{ "name": "hook", "hostPath": { "path": hook_dir, "type": "DirectoryOrCreate" } }],
                "containers": [{
                    "name": "main", "image": IMAGE,
                    // Ignores SIGTERM: only the SIGKILL after the grace period ends it.
                    "command": ["bash", "-c", "trap '' TERM; : > /var/lib/sandbox-test/hook/trapped; while true; do sleep 0.2; done"],
                    "volumeMounts": [{ "name": "hook", "mountPath": "/var/lib/sandbox-test/hook" }],
                    // Ready once the trap is set, not merely once the process exists.
                    "readinessProbe": {
                        "exec": { "command": ["test", "-e", "/var/lib/sandbox-test/hook/trapped"] },
                        "periodSeconds": 1,
                    },
                    "lifecycle": { "preStop": { "exec": {
                        "command": ["sandbox-testimg", "write", "/var/lib/sandbox-test/hook/prestop", "ran"],
                    } } },
                }],
            },
        }),
    )
    .await?;
    ready_pod(env, ns, "stubborn", None).await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let started = Instant::now();
    pods.delete("stubborn", &DeleteParams::default()).await?;
    wait_for("pod stubborn to be gone", Duration::from_secs(60), || async {
        matches!(pods.get_opt("stubborn").await, Ok(None)).then_some(())
    })
    .await?;
    let took = started.elapsed();
    if took < Duration::from_secs(grace) {
        bail!("a container ignoring SIGTERM was gone after {took:?}, before its {grace} s grace period");
    }
    let hook = std::fs::read_to_string(hook_dir.join("prestop")).context("preStop hook did not run")?;
    if hook != "ran" {
        bail!("preStop hook wrote {hook:?}");
    }
    println!("termination: a SIGTERM-ignoring pod was gone {took:?} after deletion (grace {grace} s)");
    let _ = std::fs::remove_dir_all(&hook_dir);
    Ok(())
}

/// `kubectl logs` as the sandbox admin; `Err` with kubectl's stderr when it fails.
fn kubectl_logs(env: &Env, ns: &str, args: &[&str]) -> Result<String> {
    let output = std::process::Command::new(env.sandbox.binary("kubectl")?)
        .env("KUBECONFIG", env.sandbox.admin_kubeconfig())
        .args(["--namespace", ns, "logs"])
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!(
            "kubectl logs {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

async fn logs(env: &Env, ns: &str) -> Result<()> {
    create_namespace(env, ns).await?;
    // Each run counts itself in an emptyDir (which outlives container restarts) and prints two
    // lines naming its run; the first run then fails, the second stays up.
    let script = "f=/var/lib/sandbox-test/count/n; n=$(( $(cat $f 2>/dev/null || echo 0) + 1 )); echo $n > $f; \
        echo \"run $n first line\"; echo \"run $n second line\"; \
        if [ $n = 1 ]; then exit 1; fi; exec sleep 3600";
    create::<Pod>(
        env,
        ns,
        json!({
            "metadata": { "name": "talker" },
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "volumes": [{ "name": "count", "emptyDir": {} }],
                "containers": [{
                    "name": "main", "image": IMAGE,
                    "command": ["bash", "-c", script],
                    "volumeMounts": [{ "name": "count", "mountPath": "/var/lib/sandbox-test/count" }],
                }],
            },
        }),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    wait_for("talker restarted once and running", Duration::from_secs(60), || async {
        let pod = pods.get("talker").await.ok()?;
        let status = pod.status?.container_statuses?.into_iter().next()?;
        (status.restart_count >= 1 && status.state?.running.is_some()).then_some(())
    })
    .await?;
    // The second run's lines are written right after it starts: poll until they are there.
    let current = wait_for(
        "kubectl logs to show the second run",
        Duration::from_secs(30),
        || async {
            kubectl_logs(env, ns, &["talker"])
                .ok()
                .filter(|out| out.contains("run 2 second line"))
        },
    )
    .await?;
    if current != "run 2 first line\nrun 2 second line\n" {
        bail!("kubectl logs talker: {current:?}");
    }
    let previous = kubectl_logs(env, ns, &["talker", "-c", "main", "--previous"])?;
    if previous != "run 1 first line\nrun 1 second line\n" {
        bail!("kubectl logs --previous talker: {previous:?}");
    }
    let tail = kubectl_logs(env, ns, &["talker", "--tail=1"])?;
    if tail != "run 2 second line\n" {
        bail!("kubectl logs --tail=1 talker: {tail:?}");
    }
    Ok(())
}

/// The Pod's `PodScheduled=False` condition's message, if kube-scheduler's `Unschedulable`.
fn unschedulable_message(pod: &Pod) -> Option<String> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    (condition.status == "False" && condition.reason.as_deref() == Some("Unschedulable"))
        .then(|| condition.message.clone().unwrap_or_default())
}

fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// A test-image Pod requesting `cpu` (and 64Mi), with an optional `nodeSelector`.
async fn create_requesting(env: &Env, ns: &str, name: &str, cpu: &str, selector: serde_json::Value) -> Result<()> {
    let mut container = serve_container("srv");
    container["resources"] = json!({ "requests": { "cpu": cpu, "memory": "64Mi" } });
    create::<Pod>(
        env,
        ns,
        json!({
            "metadata": { "name": name },
            "spec": { "terminationGracePeriodSeconds": 2, "nodeSelector": selector, "containers": [container] },
        }),
    )
    .await?;
    Ok(())
}

/// Waits for a Pod to be reported unschedulable with `message`, checking it stays unbound.
async fn unschedulable(env: &Env, ns: &str, name: &str, message: &str) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    let pod = wait_for(
        &format!("pod {ns}/{name} Unschedulable with {message:?}"),
        Duration::from_secs(30),
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            (unschedulable_message(&pod).as_deref() == Some(message)).then_some(pod)
        },
    )
    .await?;
    if let Some(node) = bound_node(&pod) {
        bail!("unschedulable pod {name} bound to {node}");
    }
    Ok(pod)
}

async fn scheduling(env: &Env, ns: &str) -> Result<()> {
    const NO_VICTIMS: &str = "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    const NOT_HELPFUL: &str = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    create_namespace(env, ns).await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);

    // More cpu than the node has (8): never bound.
    create_requesting(env, ns, "too-big", "9", json!({})).await?;
    let too_big = unschedulable(
        env,
        ns,
        "too-big",
        &format!("0/1 nodes are available: 1 Insufficient cpu. {NOT_HELPFUL}"),
    )
    .await?;
    // A label the node lacks: never bound either.
    create_requesting(env, ns, "elsewhere", "100m", json!({ "disktype": "ssd" })).await?;
    unschedulable(
        env,
        ns,
        "elsewhere",
        &format!("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. {NOT_HELPFUL}"),
    )
    .await?;

    // Fits (and selects the node by its hostname label): runs.
    create_requesting(env, ns, "small", "100m", json!({ "kubernetes.io/hostname": "sandbox" })).await?;
    ready_pod(env, ns, "small", None).await?;

    // A big Pod that fits, then one that fits only without it.
    create_requesting(env, ns, "big", "6", json!({})).await?;
    ready_pod(env, ns, "big", None).await?;
    create_requesting(env, ns, "waiting", "3", json!({})).await?;
    unschedulable(
        env,
        ns,
        "waiting",
        &format!("0/1 nodes are available: 1 Insufficient cpu. {NO_VICTIMS}"),
    )
    .await?;
    pods.delete("big", &DeleteParams::default()).await?;
    let waiting = ready_pod(env, ns, "waiting", None).await?;
    if bound_node(&waiting) != Some("sandbox") {
        bail!("waiting pod bound to {:?}", bound_node(&waiting));
    }
    let scheduled = waiting
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| c.status.clone());
    if scheduled.as_deref() != Some("True") {
        bail!("bound pod's PodScheduled condition: {scheduled:?}");
    }

    // Through all of that (several retry rounds) the unschedulable Pod was written once.
    let now = pods.get("too-big").await?;
    if bound_node(&now).is_some() || now.resource_version() != too_big.resource_version() {
        bail!(
            "too-big changed while unschedulable: resourceVersion {:?} -> {:?}, node {:?}",
            too_big.resource_version(),
            now.resource_version(),
            bound_node(&now)
        );
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), ns);
    let failed: Vec<_> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("too-big")
        })
        .collect();
    if failed.len() != 1 {
        bail!("FailedScheduling events of too-big: {failed:?}, expected one");
    }
    Ok(())
}
