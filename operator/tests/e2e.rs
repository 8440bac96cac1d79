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
//! 4. a replica Pod deleted comes back, resyncs, the cluster is Ready again; a change no node
//!    can run (a CPU request beyond the node) replaces one replica only and sets Degraded
//!    (Unschedulable), and reverting it makes the cluster Ready; a config change rolls through
//!    every member one at a time, data intact;
//! 5. reconcile p50/p99 from the operator's metrics;
//! 6. KvCluster deleted: every child gone.
//!
//! The operator is installed with the Helm chart and runs as its Deployment's Pod under the
//! sandbox kubelet, as the chart's ServiceAccount: an RBAC rule the chart lacks fails here.

mod sandbox;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use ferrokv_node::cluster::driver::even_ranges;
use ferrokv_operator::controller::build;
use ferrokv_operator::crd::{KvCluster, Phase};
use ferrokv_tests::controlplane::plain_http_get_at;
use ferrokv_tests::harness::{TestNs, wait_for};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

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
/// `cargo test --workspace` builds them, `cargo test -p ferrokv-operator` does not, so this
/// builds them when they are missing. Only then: a build with another package selection
/// unifies features differently and would replace the binaries the sandbox runs, which
/// restarts its components (and stops every Pod).
fn build_binaries() -> Result<()> {
    if ["ferrokv-node", "ferrokv-sandbox"]
        .iter()
        .all(|b| bin_dir().join(b).is_file())
    {
        return Ok(());
    }
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

/// The operator as a user runs it: the Helm chart installed in the test namespace (watching
/// only that namespace), its
/// Deployment's Pod run by the sandbox kubelet (image `ferrokv/operator` → this checkout's
/// `ferrokv-operator`), acting as the chart's ServiceAccount with the chart's RBAC.
struct Operator {
    release: String,
}

impl Operator {
    async fn install(ns: &TestNs) -> Result<Operator> {
        // One release per test namespace, named after it (its Roles live only there).
        let release = ns.name.clone();
        let out = ns
            .helm()?
            .args(["install", &release])
            .arg(sandbox::chart_dir())
            .args(["--skip-crds", "--wait", "--timeout", "120s"])
            // Scoped to the test namespace (Roles, no ClusterRole): an operator another test
            // run left behind in the shared sandbox never reconciles this test's cluster,
            // and this one never touches theirs.
            .arg("--set")
            .arg(format!("watchNamespaces={{{}}}", ns.name))
            .output()?;
        ensure!(
            out.status.success(),
            "helm install: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let op = Operator { release };
        op.wait_ready(ns, None).await?;
        Ok(op)
    }

    fn selector(&self) -> String {
        format!("app.kubernetes.io/instance={}", self.release)
    }

    /// The running, Ready operator Pod (other than `not`): its name and IP.
    async fn wait_ready(&self, ns: &TestNs, not: Option<&str>) -> Result<(String, String)> {
        let pods = ns.api::<Pod>();
        let lp = ListParams::default().labels(&self.selector());
        Ok(
            wait_for("the operator Pod to be Ready", Duration::from_secs(120), || async {
                let ready = pods.list(&lp).await?.items.into_iter().find_map(|p| {
                    let name = p.name_any();
                    let status = p.status?;
                    let ready = status
                        .conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    (ready && Some(name.as_str()) != not && p.metadata.deletion_timestamp.is_none())
                        .then_some((name, status.pod_ip?))
                });
                anyhow::Ok(ready)
            })
            .await?,
        )
    }

    /// Delete the operator's Pod (the Deployment starts a new one) and wait for its successor.
    async fn restart(&self, ns: &TestNs) -> Result<()> {
        let (pod, _) = self.wait_ready(ns, None).await?;
        ns.api::<Pod>().delete(&pod, &DeleteParams::default()).await?;
        self.wait_ready(ns, Some(&pod)).await?;
        Ok(())
    }

    /// The operator's `/metrics`, fetched from its Pod IP.
    async fn metrics(&self, ns: &TestNs) -> Result<String> {
        let (_, ip) = self.wait_ready(ns, None).await?;
        let addr = std::net::SocketAddr::new(ip.parse()?, 8080);
        let (status, body) =
            tokio::time::timeout(Duration::from_secs(10), plain_http_get_at(addr, "/metrics")).await??;
        ensure!(status == 200, "/metrics answered {status}");
        Ok(body)
    }

    async fn uninstall(self, ns: &TestNs) -> Result<()> {
        let out = ns.helm()?.args(["uninstall", &self.release, "--wait"]).output()?;
        ensure!(
            out.status.success(),
            "helm uninstall: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

/// Merge-patch the KvCluster (`{"spec": ...}`), as `kubectl patch --type=merge` does.
async fn merge_spec(ns: &TestNs, patch: serde_json::Value) -> Result<()> {
    ns.api::<KvCluster>()
        .patch(NAME, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// The cluster's node Pods.
async fn member_pods(ns: &TestNs) -> Result<Vec<Pod>> {
    let selector = format!("{}={NAME}", build::LABEL_CLUSTER);
    Ok(ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Name and UID of every node Pod: a Pod recreated under its old name has a new UID.
async fn pod_uids(ns: &TestNs) -> Result<Vec<(String, Option<String>)>> {
    Ok(member_pods(ns)
        .await?
        .iter()
        .map(|p| (p.name_any(), p.metadata.uid.clone()))
        .collect())
}

/// Per shard, the revision its StatefulSet's Pods should run.
async fn update_revisions(ns: &TestNs) -> Result<Vec<String>> {
    let api = ns.api::<StatefulSet>();
    let mut revisions = Vec::new();
    for s in 0..SHARDS {
        let sts = api.get(&build::statefulset_name(NAME, s as i32)).await?;
        revisions.push(sts.status.and_then(|s| s.update_revision).unwrap_or_default());
    }
    Ok(revisions)
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

/// Upper bound of the histogram bucket holding quantile `q` of the operator's successful
/// reconciles, from its `/metrics` text.
fn quantile(metrics: &str, q: f64) -> Option<f64> {
    let buckets = ok_buckets(metrics);
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    buckets.iter().find(|(_, c)| *c >= q * total).map(|(le, _)| *le)
}

/// `(le, cumulative count)` of the successful reconciles' histogram buckets, `+Inf` last.
fn ok_buckets(metrics: &str) -> Vec<(f64, f64)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("ferrokv_operator_reconcile_duration_seconds_bucket{"))
        .filter(|l| l.contains("result=\"ok\""))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, count))
        })
        .collect()
}

/// `le:count` of each non-empty bucket of the successful reconciles (counts per bucket, not
/// cumulative), e.g. `0.01:40 0.02:12 0.2:1`.
fn buckets(metrics: &str) -> String {
    let mut previous = 0.0;
    let mut out = Vec::new();
    for (le, count) in ok_buckets(metrics) {
        if count > previous {
            out.push(format!("{le}:{}", count - previous));
        }
        previous = count;
    }
    out.join(" ")
}

fn counter(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn rss_mib(metrics: &str) -> Option<f64> {
    let bytes: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))?
        .trim()
        .parse()
        .ok()?;
    Some(bytes / (1024.0 * 1024.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kvcluster_lifecycle() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ferrokv_operator=info,warn")
        .with_test_writer()
        .try_init();
    build_binaries()?;
    let ns = TestNs::new("operator", &bin_dir().join("ferrokv-sandbox")).await?;
    let result = scenarios(&ns).await;
    if let Err(e) = &result {
        eprintln!("e2e failed: {e:#}\n{}", ns.dump().await);
        return result;
    }
    ns.cleanup().await?;
    result
}

async fn scenarios(ns: &TestNs) -> Result<()> {
    // CRD and RBAC, then the operator as the ServiceAccount.
    sandbox::install_crds(ns).await?;
    let operator = Operator::install(ns).await?;

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
    operator.restart(ns).await?;
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
    merge_spec(ns, serde_json::json!({"spec": {"replicasPerShard": 2}})).await?;
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
    // 4b. A change the cluster cannot run: a CPU request no node has. The roll starts with one
    // replica (the canary), whose replacement cannot be scheduled: Degraded with the
    // scheduler's reason, and nothing else is touched.
    let before_pods = pod_uids(ns).await?;
    merge_spec(
        ns,
        serde_json::json!({"spec": {"resources": {"requests": {"cpu": "1000"}}}}),
    )
    .await?;
    let degraded = wait_for(
        "the KvCluster to be Degraded: Unschedulable",
        Duration::from_secs(90),
        || async {
            let kv = cluster(ns).await?;
            let c = kv
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
                .cloned();
            anyhow::Ok(c.filter(|c| c.status == "True" && c.reason == "Unschedulable"))
        },
    )
    .await?;
    ensure!(
        degraded.message.contains("Insufficient cpu"),
        "Degraded message: {}",
        degraded.message
    );
    // Exactly one member was replaced (a replica); every primary kept its Pod.
    let after = pod_uids(ns).await?;
    let replaced: Vec<&String> = before_pods
        .iter()
        .filter(|b| !after.contains(b))
        .map(|(n, _)| n)
        .collect();
    ensure!(replaced.len() == 1, "replaced by the bad change: {replaced:?}");
    let status = cluster(ns).await?.status.context("no status")?;
    ensure!(
        status
            .shards
            .iter()
            .all(|s| s.primary.as_ref().is_some_and(|p| !replaced.contains(&&p.pod))),
        "a primary was touched: {replaced:?}"
    );
    println!(
        "unschedulable change: Degraded ({}), only {} replaced",
        degraded.message, replaced[0]
    );
    // Reverted: the stuck Pod is replaced from the old template and the cluster is Ready again.
    merge_spec(ns, serde_json::json!({"spec": {"resources": null}})).await?;
    wait_ready(ns, 2, Duration::from_secs(120)).await?;
    println!("reverted: Ready again");

    // 4c. A change that runs: a config directive, rolled through all nine members one at a time.
    let t = Instant::now();
    let revisions_before = update_revisions(ns).await?;
    merge_spec(
        ns,
        serde_json::json!({"spec": {"config": {"maxmemory-policy": "allkeys-lru"}}}),
    )
    .await?;
    let kv = wait_for(
        "every member to run the new template",
        Duration::from_secs(240),
        || async {
            let revisions = update_revisions(ns).await?;
            if revisions == revisions_before {
                return anyhow::Ok(None);
            }
            let current = member_pods(ns).await?.iter().all(|p| {
                let shard: usize = p
                    .labels()
                    .get(build::LABEL_SHARD)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                revisions
                    .get(shard)
                    .is_some_and(|r| p.labels().get("controller-revision-hash") == Some(r))
            });
            let kv = cluster(ns).await?;
            anyhow::Ok((current && phase(&kv) == Some(Phase::Ready)).then_some(kv))
        },
    )
    .await?;
    let status = kv.status.context("no status")?;
    for member in status.shards.iter().flat_map(|s| s.primary.iter().chain(&s.replicas)) {
        let client = redis::Client::open(format!("redis://:{password}@{}/", member.address))?;
        let mut con = client.get_multiplexed_async_connection().await?;
        let policy: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut con)
            .await?;
        ensure!(
            policy.get(1).map(String::as_str) == Some("allkeys-lru"),
            "{}: {policy:?}",
            member.pod
        );
    }
    wait_digests_equal(ns, &password).await?;
    let seeds: Vec<String> = status
        .shards
        .iter()
        .filter_map(|s| s.primary.as_ref())
        .map(|p| format!("redis://:{password}@{}/", p.address))
        .collect();
    let client = redis::cluster::ClusterClient::builder(seeds).retries(10).build()?;
    let mut con = client.get_async_connection().await?;
    for i in (0..KEYS).step_by(97) {
        let v: Option<String> = redis::cmd("GET").arg(format!("key:{i}")).query_async(&mut con).await?;
        ensure!(
            v.as_deref() == Some(format!("value:{i}").as_str()),
            "after the roll key:{i} is {v:?}"
        );
    }
    println!(
        "config change rolled through {} members in {:.1}s, data intact",
        SHARDS * 3,
        t.elapsed().as_secs_f64()
    );

    // 5. The operator's own numbers (this process has run since the restart mid-creation).
    let metrics = operator.metrics(ns).await?;
    println!(
        "reconcile p50 <= {:?} s, p99 <= {:?} s (histogram bucket bounds; target p99 <= 0.05); \
         operator RSS {:.1} MiB (target <= 64); reconciles per bucket: {}; children applied/unchanged: {}/{}",
        quantile(&metrics, 0.5),
        quantile(&metrics, 0.99),
        rss_mib(&metrics).unwrap_or(f64::NAN),
        buckets(&metrics),
        counter(&metrics, "ferrokv_operator_child_applies_total{outcome=\"applied\"}").unwrap_or(0.0),
        counter(&metrics, "ferrokv_operator_child_applies_total{outcome=\"unchanged\"}").unwrap_or(0.0),
    );
    // Most reconciles find the children as last applied and write nothing.
    let unchanged = counter(&metrics, "ferrokv_operator_child_applies_total{outcome=\"unchanged\"}");
    let applied = counter(&metrics, "ferrokv_operator_child_applies_total{outcome=\"applied\"}");
    ensure!(
        unchanged.zip(applied).is_some_and(|(u, a)| u > a),
        "children applied {applied:?} times, found unchanged {unchanged:?}"
    );

    // A restart of a Ready cluster's operator changes nothing.
    let before = cluster(ns).await?.status;
    operator.restart(ns).await?;
    let settled = wait_ready(ns, 2, Duration::from_secs(30)).await?;
    ensure!(
        settled.status.as_ref().map(|s| (s.epoch, &s.shards)) == before.as_ref().map(|s| (s.epoch, &s.shards)),
        "an operator restart changed the topology"
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
    operator.uninstall(ns).await?;
    Ok(())
}
