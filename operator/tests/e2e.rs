//! The KvCluster controller end to end, in the sandbox: real kube-apiserver and
//! kube-controller-manager (StatefulSets, garbage collection), the sandbox kubelet running
//! `ferrokv-node` Pods in their own network namespaces, the operator with a ServiceAccount's
//! RBAC, and real Redis clients (the `redis` crate's cluster client, `redis-cli -c`).
//!
//! One scenario chain in one namespace, because every step builds on the cluster the previous
//! one left (creating a cluster is the slow part):
//! 1. apply a 3-shard × 1-replica KvCluster; the operator is restarted mid-creation; → Ready
//!    (time printed), slots evenly split, one epoch (no reshuffle);
//! 2. 10k keys written and read back with the cluster client via Pod IPs; `redis-cli -c` works;
//! 3. `replicasPerShard` 1 → 2: new replicas join the topology and sync (DIGEST equal);
//! 4. a replica Pod deleted comes back, resyncs, the cluster is Ready again;
//! 5. reconcile p50/p99 from the operator's metrics;
//! 6. KvCluster deleted: every child gone.
//!
//! Two pieces stand in for what other branches bring, each in one small function so that they
//! can be swapped at merge: [`ensure_kubelet`] (until `ferrokv-sandbox up` starts the kubelet)
//! and [`Operator::start`] (the controller runs in this process, with the kubeconfig of a
//! ServiceAccount bound to `fixtures/e2e-rbac.yaml`, until the chart and the `run` command of
//! the binary are merged; then: `helm install` and the Deployment through the kubelet).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrokv_node::cluster::driver::even_ranges;
use ferrokv_operator::controller::{self, build};
use ferrokv_operator::crd::{KvCluster, Phase};
use ferrokv_operator::metrics::Metrics;
use ferrokv_tests::harness::{TestNs, wait_for};
use ferrokv_tests::kubelet::{ImageMap, Kubelet, KubeletConfig};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use tokio::sync::oneshot;

const NAME: &str = "kv";
const SHARDS: usize = 3;
const KEYS: usize = 10_000;

/// `target/debug`, where cargo put this crate's binary and where the node binary is built.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ferrokv-operator"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The node (the image `ferrokv/node` runs) and the sandbox binary are other crates' bins:
/// cargo does not build them for this test, so it does (a no-op when they are fresh).
fn build_binaries() -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "ferrokv-node",
            "--bin",
            "ferrokv-node",
            "-p",
            "ferrokv-tests",
            "--bin",
            "ferrokv-sandbox",
        ])
        .env("CARGO_TARGET_DIR", bin_dir().parent().context("no target dir")?)
        .status()?;
    ensure!(status.success(), "building ferrokv-node and ferrokv-sandbox failed");
    Ok(())
}

/// WORKAROUND until `ferrokv-sandbox up` starts the kubelet: use a kubelet whose Node is Ready
/// (the sandbox's, or another test's), or start one as a subprocess that lives as long as this
/// test. At merge this becomes a no-op (the sandbox's kubelet is always there).
async fn ensure_kubelet(ns: &TestNs) -> Result<Option<Kubelet>> {
    // A Node's Ready condition outlives its kubelet here (no node lifecycle controller runs):
    // a kubelet is alive when it renewed its Lease lately.
    let leases: Api<Lease> = Api::namespaced(ns.client.clone(), "kube-node-lease");
    let alive = || async {
        let now = k8s_openapi::jiff::Timestamp::now();
        anyhow::Ok(leases.list(&ListParams::default()).await?.items.iter().any(|l| {
            l.spec
                .as_ref()
                .and_then(|s| s.renew_time.as_ref())
                .is_some_and(|t| now.duration_since(t.0).as_secs() < 20)
        }))
    };
    if alive().await? {
        return Ok(None);
    }
    // This branch's `ferrokv-sandbox` has no `kubelet` command yet: the library's kubelet runs
    // in this process (its Pods' processes stop with it).
    let sandbox = ns.sandbox();
    let config = KubeletConfig::new(sandbox.dir().join("kubelet"), ImageMap::ferrokv(&bin_dir()));
    let guard = Kubelet::start(&sandbox.admin_kubeconfig(), config).await?;
    wait_for("the kubelet to renew its Lease", Duration::from_secs(60), || async {
        anyhow::Ok(alive().await?.then_some(()))
    })
    .await?;
    Ok(Some(guard))
}

/// The operator: the controller with a ServiceAccount's client, in this process.
struct Operator {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), controller::Error>>,
}

impl Operator {
    async fn start(kubeconfig: &Path, metrics: Arc<Metrics>) -> Result<Operator> {
        let client = ferrokv_tests::controlplane::client_from_kubeconfig(kubeconfig).await?;
        let config = controller::Config {
            node_image: "ferrokv/node:0.1.0".into(),
            field_manager: "ferrokv-operator".into(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(controller::run(client, config, metrics, async move {
            let _ = stopped.await;
        }));
        Ok(Operator { stop, task })
    }

    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task).await???;
        Ok(())
    }
}

async fn cluster(ns: &TestNs) -> Result<KvCluster> {
    Ok(ns.api::<KvCluster>().get(NAME).await?)
}

fn phase(kv: &KvCluster) -> Option<Phase> {
    kv.status.as_ref().and_then(|s| s.phase)
}

/// Wait for phase Ready with `replicas` replicas in every shard of the status.
async fn wait_ready(ns: &TestNs, replicas: usize, timeout: Duration) -> Result<KvCluster> {
    Ok(wait_for("the KvCluster to be Ready", timeout, || async {
        let kv = cluster(ns).await?;
        let s = kv.status.clone().unwrap_or_default();
        let ok = phase(&kv) == Some(Phase::Ready)
            && s.shards.len() == SHARDS
            && s.shards.iter().all(|sh| sh.replicas.len() == replicas && sh.ready);
        if ok {
            anyhow::Ok(Some(kv))
        } else {
            bail!(
                "phase {:?}, ready nodes {:?}, conditions {:?}",
                phase(&kv),
                s.ready_nodes,
                s.conditions
                    .iter()
                    .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                    .collect::<Vec<_>>()
            )
        }
    })
    .await?)
}

async fn password(ns: &TestNs) -> Result<String> {
    let secret = ns.api::<Secret>().get(&build::auth_secret_name(NAME)).await?;
    let bytes = secret
        .data
        .and_then(|d| d.get("password").cloned())
        .context("no password")?;
    Ok(String::from_utf8(bytes.0)?)
}

/// `DIGEST` of the node at `address` (ip:port).
async fn digest(address: &str, password: &str) -> Result<String> {
    let client = redis::Client::open(format!("redis://:{password}@{address}/"))?;
    let mut con = client.get_multiplexed_async_connection().await?;
    Ok(redis::cmd("DIGEST").query_async(&mut con).await?)
}

/// Every replica's DIGEST equals its primary's (polled: replication is asynchronous).
async fn wait_digests_equal(ns: &TestNs, password: &str) -> Result<()> {
    wait_for(
        "replica digests to equal their primary's",
        Duration::from_secs(60),
        || async {
            let kv = cluster(ns).await?;
            let status = kv.status.context("no status")?;
            for s in &status.shards {
                let primary = digest(&s.primary.as_ref().context("no primary")?.address, password).await?;
                for r in &s.replicas {
                    let d = digest(&r.address, password).await?;
                    if d != primary {
                        bail!("shard {} replica {}: {d} != primary {primary}", s.index, r.pod);
                    }
                }
            }
            anyhow::Ok(Some(()))
        },
    )
    .await?;
    Ok(())
}

fn quantile(metrics: &Metrics, q: f64) -> Option<f64> {
    let h = metrics.reconcile_duration.with_label_values(&["ok"]);
    let proto = prometheus::core::Metric::metric(&h);
    let hist = proto.get_histogram();
    let total = hist.get_sample_count() as f64;
    if total == 0.0 {
        return None;
    }
    hist.get_bucket()
        .iter()
        .find(|b| b.cumulative_count() as f64 >= q * total)
        .map(|b| b.upper_bound())
}

fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kvcluster_lifecycle() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ferrokv_operator=info,warn")
        .with_test_writer()
        .try_init();
    build_binaries()?;
    let ns = TestNs::new("operator", &bin_dir().join("ferrokv-sandbox")).await?;
    let kubelet = ensure_kubelet(&ns).await?;
    let result = scenarios(&ns).await;
    if let Some(k) = kubelet {
        k.shutdown().await?;
    }
    if let Err(e) = &result {
        eprintln!("e2e failed: {e:#}\n{}", ns.dump().await);
        return result;
    }
    ns.cleanup().await?;
    result
}

async fn scenarios(ns: &TestNs) -> Result<()> {
    // CRD and RBAC, then the operator as the ServiceAccount.
    for (_, crd) in ferrokv_operator::crd_documents()? {
        ns.apply(&crd).await?;
    }
    wait_for("the KvCluster CRD to be served", Duration::from_secs(30), || async {
        anyhow::Ok(
            ns.api::<KvCluster>()
                .list(&ListParams::default())
                .await
                .ok()
                .map(|_| ()),
        )
    })
    .await?;
    let rbac = include_str!("fixtures/e2e-rbac.yaml")
        .replace("NAMESPACE", &ns.name)
        .replace("NAME", &format!("ferrokv-operator-{}", ns.name));
    ns.apply(&rbac).await?;
    let kubeconfig = ns
        .sandbox()
        .service_account_kubeconfig(&ns.client, &ns.name, "ferrokv-operator", Duration::from_secs(3600))
        .await?;
    let metrics = Arc::new(Metrics::new()?);
    let mut operator = Operator::start(&kubeconfig, metrics.clone()).await?;

    // 1. Create; restart the operator while the Pods start.
    let t0 = Instant::now();
    ns.apply(&format!(
        "apiVersion: ferrokv.io/v1alpha1\nkind: KvCluster\nmetadata:\n  name: {NAME}\n\
         spec:\n  shards: {SHARDS}\n  replicasPerShard: 1\n  storage:\n    size: 64Mi\n"
    ))
    .await?;
    wait_for("the operator to start creating", Duration::from_secs(60), || async {
        let kv = cluster(ns).await?;
        let sts = ns.api::<StatefulSet>().list(&ListParams::default()).await?.items.len();
        anyhow::Ok((phase(&kv).is_some() && sts == SHARDS).then_some(()))
    })
    .await?;
    let restarted_in = phase(&cluster(ns).await?);
    operator.stop().await?;
    operator = Operator::start(&kubeconfig, metrics.clone()).await?;
    println!("operator restarted mid-creation (phase {restarted_in:?})");
    let kv = wait_ready(ns, 1, Duration::from_secs(240)).await?;
    println!("3x1 KvCluster Ready in {:.1}s", t0.elapsed().as_secs_f64());
    let status = kv.status.clone().context("no status")?;
    ensure!(
        status.epoch == 1,
        "one topology push expected, epoch is {}",
        status.epoch
    );
    for (s, r) in status.shards.iter().zip(even_ranges(SHARDS)) {
        ensure!(
            s.slots == vec![format!("{}-{}", r[0], r[1])],
            "shard {} slots {:?}",
            s.index,
            s.slots
        );
        let primary = s.primary.as_ref().context("no primary")?;
        ensure!(primary.pod == build::pod_name(NAME, s.index, 0), "primary {primary:?}");
    }
    // The role labels the client Service selects.
    let primaries = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("ferrokv.io/role=primary"))
        .await?;
    ensure!(
        primaries.items.len() == SHARDS,
        "{} primary-labelled Pods",
        primaries.items.len()
    );

    // 2. Data through the cluster client, seeded with Pod IPs.
    let password = password(ns).await?;
    let seeds: Vec<String> = status
        .shards
        .iter()
        .filter_map(|s| s.primary.as_ref())
        .map(|p| format!("redis://:{password}@{}/", p.address))
        .collect();
    let t = Instant::now();
    let client = redis::cluster::ClusterClient::builder(seeds)
        .retries(10)
        .response_timeout(Duration::from_secs(10))
        .build()?;
    let con = client.get_async_connection().await?;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let writes = chunk.iter().map(|i| {
            let mut con = con.clone();
            async move {
                redis::cmd("SET")
                    .arg(format!("key:{i}"))
                    .arg(format!("value:{i}"))
                    .query_async::<()>(&mut con)
                    .await
            }
        });
        futures::future::try_join_all(writes).await?;
    }
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let reads = chunk.iter().map(|i| {
            let mut con = con.clone();
            async move {
                let v: Option<String> = redis::cmd("GET").arg(format!("key:{i}")).query_async(&mut con).await?;
                anyhow::Ok((*i, v))
            }
        });
        for (i, v) in futures::future::try_join_all(reads).await? {
            ensure!(
                v.as_deref() == Some(format!("value:{i}").as_str()),
                "key:{i} read {v:?}"
            );
        }
    }
    println!("{KEYS} keys written and read back in {:.1}s", t.elapsed().as_secs_f64());
    // redis-cli in cluster mode, from the first shard's primary, for a key of another shard.
    let first = status.shards[0].primary.as_ref().context("no primary")?;
    let ip = first.address.rsplit_once(':').map(|(ip, _)| ip).unwrap_or_default();
    let cli = |args: &[&str]| -> Result<String> {
        let out = Command::new("redis-cli")
            .args(["-c", "-h", ip, "-p", "6379", "--no-auth-warning", "-a", &password])
            .args(args)
            .output()
            .context("redis-cli (Debian redis-tools, scripts/install-test-deps.sh)")?;
        ensure!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // "foo" hashes to slot 12182: shard 2, not the shard redis-cli connects to.
    ensure!(cli(&["set", "foo", "bar"])? == "OK");
    ensure!(cli(&["get", "foo"])? == "bar");
    ensure!(cli(&["get", "key:42"])? == "value:42");
    println!("redis-cli -c follows the redirects");

    // 3. replicasPerShard 1 → 2.
    let t = Instant::now();
    ns.api::<KvCluster>()
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicasPerShard": 2}})),
        )
        .await?;
    let kv = wait_ready(ns, 2, Duration::from_secs(180)).await?;
    let epoch = kv.status.as_ref().map_or(0, |s| s.epoch);
    ensure!(epoch > 1, "the new replicas must come with a new epoch");
    wait_digests_equal(ns, &password).await?;
    for s in &kv.status.as_ref().context("no status")?.shards {
        let r = even_ranges(SHARDS)[s.index as usize];
        ensure!(
            s.slots == vec![format!("{}-{}", r[0], r[1])],
            "slots moved: {:?}",
            s.slots
        );
    }
    println!(
        "replicas 1 -> 2: joined and in sync in {:.1}s (epoch {epoch})",
        t.elapsed().as_secs_f64()
    );

    // 4. A replica Pod deleted comes back, resyncs, Ready again.
    let t = Instant::now();
    let victim = build::pod_name(NAME, 1, 1);
    let old_uid = ns.api::<Pod>().get(&victim).await?.uid();
    ns.api::<Pod>().delete(&victim, &DeleteParams::default()).await?;
    wait_for("the replica Pod to be recreated", Duration::from_secs(60), || async {
        let p = ns.api::<Pod>().get_opt(&victim).await?;
        anyhow::Ok(p.filter(|p| p.uid() != old_uid).map(|_| ()))
    })
    .await?;
    wait_for(
        "the cluster to notice the missing replica",
        Duration::from_secs(30),
        || async {
            let kv = cluster(ns).await?;
            let back = kv
                .status
                .as_ref()
                .is_some_and(|s| s.phase == Some(Phase::Ready) && s.shards.iter().all(|s| s.ready));
            // Either it was seen Degraded, or it was back fast enough that it never had to be.
            anyhow::Ok((phase(&kv) == Some(Phase::Degraded) || back).then_some(()))
        },
    )
    .await?;
    let kv = wait_ready(ns, 2, Duration::from_secs(120)).await?;
    wait_digests_equal(ns, &password).await?;
    let member = kv
        .status
        .as_ref()
        .and_then(|s| s.shards.get(1))
        .and_then(|s| s.replicas.iter().find(|r| r.pod == victim).cloned());
    ensure!(member.is_some(), "the recreated replica is a member again");
    println!(
        "replica Pod deleted: back, resynced, Ready in {:.1}s (epoch {})",
        t.elapsed().as_secs_f64(),
        kv.status.as_ref().map_or(0, |s| s.epoch)
    );
    // A restart of a Ready cluster's operator changes nothing.
    let before = cluster(ns).await?.status;
    operator.stop().await?;
    operator = Operator::start(&kubeconfig, metrics.clone()).await?;
    let settled = wait_ready(ns, 2, Duration::from_secs(30)).await?;
    ensure!(
        settled.status.as_ref().map(|s| (s.epoch, &s.shards)) == before.as_ref().map(|s| (s.epoch, &s.shards)),
        "an operator restart changed the topology"
    );

    // 5. The operator's own numbers.
    println!(
        "reconcile p50 <= {:?} s, p99 <= {:?} s (histogram bucket bounds; target p99 <= 0.05); \
         RSS of this test process (operator in-process + test + clients): {:.1} MiB",
        quantile(&metrics, 0.5),
        quantile(&metrics, 0.99),
        rss_mib().unwrap_or(f64::NAN)
    );

    // 6. Delete: every child goes.
    let t = Instant::now();
    ns.api::<KvCluster>().delete(NAME, &DeleteParams::default()).await?;
    let selector = ListParams::default().labels(&format!("{}={NAME}", build::LABEL_CLUSTER));
    wait_for("every child to be gone", Duration::from_secs(120), || async {
        let left = [
            ns.api::<KvCluster>().list(&ListParams::default()).await?.items.len(),
            ns.api::<StatefulSet>().list(&selector).await?.items.len(),
            ns.api::<Pod>().list(&selector).await?.items.len(),
            ns.api::<Service>().list(&selector).await?.items.len(),
            ns.api::<ConfigMap>().list(&selector).await?.items.len(),
            ns.api::<Secret>().list(&selector).await?.items.len(),
            ns.api::<PodDisruptionBudget>().list(&selector).await?.items.len(),
            ns.api::<PersistentVolumeClaim>().list(&selector).await?.items.len(),
        ];
        if left.iter().all(|n| *n == 0) {
            anyhow::Ok(Some(()))
        } else {
            bail!("left (kvc, sts, pods, svc, cm, secret, pdb, pvc): {left:?}")
        }
    })
    .await?;
    println!(
        "KvCluster deleted: every child gone in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    operator.stop().await?;
    Ok(())
}
