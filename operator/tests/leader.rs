//! Leader election between real `ferrokv-operator` processes against the sandbox's apiserver,
//! each acting as the chart's ServiceAccount (so the chart's lease RBAC is exercised too):
//!
//! - of two replicas exactly one holds the Lease, and only its `ferrokv_operator_leader` metric
//!   is 1 (checked repeatedly over several renewal periods); both are ready;
//! - only the leader acts: a KvCluster created and deleted meanwhile is reconciled (and cleaned
//!   up) by the leader, and the standby's reconcile counter stays at 0;
//! - the leader killed with SIGKILL (no chance to release) is replaced within the lease
//!   duration;
//! - a leader stopped with SIGTERM releases the Lease: a third replica takes over at its next
//!   poll, far sooner than a lease duration, and the stopped one exits 0.
//!
//! `cargo build -p ferrokv-tests --bin ferrokv-sandbox && cargo test -p ferrokv-operator --test leader`

mod sandbox;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ferrokv_operator::crd::KvCluster;
use ferrokv_tests::controlplane::plain_http_get;
use ferrokv_tests::harness::{TestNs, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use sandbox::{apply_chart_rbac, delete_cluster_rbac, install_crds, test_ns};

const LEASE: &str = "op-ferrokv-operator";
const SERVICE_ACCOUNT: &str = "op-ferrokv-operator";
/// The operator's default timings, which this test keeps.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// One operator process; killed (by its PID) when dropped.
struct Operator {
    identity: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Operator {
    fn start(t: &TestNs, kubeconfig: &Path, identity: &str) -> anyhow::Result<Operator> {
        // A free port: bound and released at once; nothing else on loopback takes it meanwhile.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::env::temp_dir().join(format!("{}-{identity}.log", t.name));
        let child = Command::new(env!("CARGO_BIN_EXE_ferrokv-operator"))
            .arg("run")
            .arg(format!("--http-addr=127.0.0.1:{port}"))
            .arg(format!("--lease-name={LEASE}"))
            .arg("--log-format=text")
            .arg(format!("--watch-namespace={}", t.name))
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", &t.name)
            .env("RUST_LOG", "info,ferrokv_operator=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .context("starting ferrokv-operator")?;
        Ok(Operator {
            identity: identity.to_string(),
            child,
            port,
            log,
        })
    }

    /// `ferrokv_operator_leader{lease=LEASE}` as this process reports it.
    async fn leader_metric(&self) -> anyhow::Result<i64> {
        let (status, body) = plain_http_get(self.port, "/metrics").await?;
        if status != 200 {
            bail!("{}: /metrics answered {status}", self.identity);
        }
        let prefix = format!("ferrokv_operator_leader{{lease=\"{LEASE}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("{}: no leader metric in:\n{body}", self.identity))
    }

    /// Reconciles this process ran (`ferrokv_operator_reconciles_total`, every result).
    async fn reconciles(&self) -> anyhow::Result<u64> {
        let (status, body) = plain_http_get(self.port, "/metrics").await?;
        if status != 200 {
            bail!("{}: /metrics answered {status}", self.identity);
        }
        Ok(body
            .lines()
            .filter_map(|l| l.strip_prefix("ferrokv_operator_reconciles_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    async fn ready(&self) -> anyhow::Result<bool> {
        Ok(plain_http_get(self.port, "/readyz").await?.0 == 200)
    }

    fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("--- {} ({}):\n{}", self.identity, self.log.display(), tail.join("\n"))
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.child.id());
        }
        Ok(())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn holder(t: &TestNs) -> anyhow::Result<Option<String>> {
    let lease = t.api::<Lease>().get_opt(LEASE).await?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Wait until `expected` holds the Lease and is the only one of `operators` reporting itself
/// leader; returns how long that took.
async fn wait_for_leader(
    t: &TestNs,
    operators: &[&Operator],
    expected: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let what = format!(
        "one leader among {:?}",
        operators.iter().map(|o| &o.identity).collect::<Vec<_>>()
    );
    let leader = wait_for(&what, timeout, move || async move {
        let Some(holder) = holder(t).await? else {
            return Ok::<_, anyhow::Error>(None);
        };
        if expected.is_some_and(|e| e != holder) {
            return Ok(None);
        }
        let mut leaders = Vec::new();
        for op in operators {
            if op.leader_metric().await? == 1 {
                leaders.push(op.identity.clone());
            }
        }
        Ok((leaders == [holder.clone()]).then_some(holder))
    })
    .await;
    match leader {
        Ok(leader) => Ok(leader),
        Err(e) => {
            let logs: Vec<String> = operators.iter().map(|o| o.logs()).collect();
            bail!("{e}\n{}", logs.join("\n"))
        }
    }
}

/// Exactly one of `operators` is leader at every sample over `period`, and it is the holder.
async fn exactly_one_leader_for(t: &TestNs, operators: &[&Operator], period: Duration) -> anyhow::Result<String> {
    let start = Instant::now();
    let mut leader = None;
    while start.elapsed() < period {
        let holder = holder(t).await?.context("the Lease has no holder")?;
        let mut leaders = Vec::new();
        for op in operators {
            if op.leader_metric().await? == 1 {
                leaders.push(op.identity.clone());
            }
            if !op.ready().await? {
                bail!("{} is not ready", op.identity);
            }
        }
        if leaders != [holder.clone()] {
            bail!("Lease held by {holder} but processes reporting leadership: {leaders:?}");
        }
        if leader.as_ref().is_some_and(|l| *l != holder) {
            bail!("leadership moved from {leader:?} to {holder} with both replicas healthy");
        }
        leader = Some(holder);
        // Sampling an invariant over time (not waiting for a state): a fixed pace is the point.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    leader.context("no sample taken")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_fast_takeover() -> anyhow::Result<()> {
    let t = test_ns("leader").await?;
    install_crds(&t).await?;
    // Scoped to the test namespace (Roles there), as `--watch-namespace` is.
    let scope = format!("watchNamespaces={{{}}}", t.name);
    let cluster_rbac = apply_chart_rbac(&t, "op", &[&scope])?;
    let result = scenario(&t).await;
    delete_cluster_rbac(&t, &cluster_rbac)?;
    result?;
    t.cleanup().await?;
    Ok(())
}

async fn scenario(t: &TestNs) -> anyhow::Result<()> {
    let kubeconfig = t
        .sandbox()
        .service_account_kubeconfig(&t.client, &t.name, SERVICE_ACCOUNT, Duration::from_secs(900))
        .await?;
    let a = Operator::start(t, &kubeconfig, "operator-a")?;
    let b = Operator::start(t, &kubeconfig, "operator-b")?;

    let started = Instant::now();
    let first = wait_for_leader(t, &[&a, &b], None, Duration::from_secs(30)).await?;
    eprintln!("leader {first} elected in {:.1}s", started.elapsed().as_secs_f64());
    // Several renewal periods: the leader keeps the Lease, the other never claims it.
    let steady = exactly_one_leader_for(t, &[&a, &b], RETRY_PERIOD * 3).await?;
    assert_eq!(steady, first);

    // Only the leader acts: a KvCluster is reconciled by it, never by the standby.
    let (lead, standby) = if first == a.identity { (&a, &b) } else { (&b, &a) };
    t.apply(
        "apiVersion: ferrokv.io/v1alpha1\nkind: KvCluster\nmetadata:\n  name: only\n\
         spec:\n  shards: 1\n  replicasPerShard: 0\n  storage:\n    size: 16Mi\n",
    )
    .await?;
    let kvs = t.api::<KvCluster>();
    wait_for(
        "the leader to reconcile the KvCluster",
        Duration::from_secs(30),
        || async {
            let phase = kvs.get("only").await?.status.and_then(|s| s.phase);
            anyhow::Ok(phase.map(|_| ()))
        },
    )
    .await?;
    let (by_leader, by_standby) = (lead.reconciles().await?, standby.reconciles().await?);
    assert!(by_leader > 0, "{} leads but reconciled nothing", lead.identity);
    assert_eq!(by_standby, 0, "the standby {} reconciled", standby.identity);
    kvs.delete("only", &Default::default()).await?;
    wait_for(
        "the KvCluster to be cleaned up and gone",
        Duration::from_secs(60),
        || async { anyhow::Ok(kvs.get_opt("only").await?.is_none().then_some(())) },
    )
    .await?;
    assert_eq!(standby.reconciles().await?, 0, "the standby reconciled the deletion");
    eprintln!("only the leader reconciled: {by_leader} reconciles, the standby none");
    let transitions_before = t
        .api::<Lease>()
        .get(LEASE)
        .await?
        .spec
        .and_then(|s| s.lease_transitions);

    // SIGKILL: the leader cannot release; the other must wait out the lease, and no longer.
    let (mut leader, follower) = if first == a.identity { (a, b) } else { (b, a) };
    let killed = Instant::now();
    leader.child.kill()?;
    leader.child.wait()?;
    let second = wait_for_leader(
        t,
        &[&follower],
        Some(&follower.identity),
        LEASE_DURATION + RETRY_PERIOD * 2,
    )
    .await?;
    let takeover = killed.elapsed();
    eprintln!(
        "after SIGKILL of {}: {second} took over in {:.1}s (lease duration {}s)",
        leader.identity,
        takeover.as_secs_f64(),
        LEASE_DURATION.as_secs()
    );
    // The last renewal was at most one retry period before the kill: the lease expired between
    // LEASE_DURATION - RETRY_PERIOD and LEASE_DURATION after it. Sooner would mean the follower
    // took a live lease; later, that it did not watch the expiry.
    assert!(
        takeover <= LEASE_DURATION + RETRY_PERIOD / 2,
        "takeover took {takeover:?}, more than the lease duration"
    );
    assert!(
        takeover + Duration::from_millis(500) >= LEASE_DURATION - RETRY_PERIOD,
        "takeover after {takeover:?}: the lease of the killed leader cannot have expired yet"
    );
    let transitions_after = t
        .api::<Lease>()
        .get(LEASE)
        .await?
        .spec
        .and_then(|s| s.lease_transitions);
    assert_eq!(transitions_after, transitions_before.map(|n| n + 1), "leaseTransitions");
    drop(leader);

    // SIGTERM: the leader stops its controller, releases the Lease and exits 0; the standby
    // takes over at its next poll.
    let mut old = follower;
    let c = Operator::start(t, &kubeconfig, "operator-c")?;
    let standby = &c;
    wait_for(
        "operator-c ready as a standby",
        Duration::from_secs(30),
        move || async move {
            Ok::<_, anyhow::Error>((standby.ready().await? && standby.leader_metric().await? == 0).then_some(()))
        },
    )
    .await?;
    let stopped = Instant::now();
    old.signal("TERM")?;
    let third = wait_for_leader(t, &[&c], Some("operator-c"), LEASE_DURATION).await?;
    let handover = stopped.elapsed();
    eprintln!(
        "after SIGTERM of {}: {third} took over in {:.1}s",
        old.identity,
        handover.as_secs_f64()
    );
    let status = wait_for(&format!("{} to exit", old.identity), Duration::from_secs(20), || {
        let exited = old.child.try_wait();
        async move { exited.map_err(|e| e.to_string()) }
    })
    .await?;
    assert!(
        status.success(),
        "{} exited with {status}:\n{}",
        old.identity,
        old.logs()
    );
    assert!(
        old.logs().contains("released the lease"),
        "no release logged:\n{}",
        old.logs()
    );
    assert!(
        handover < RETRY_PERIOD * 2 + Duration::from_secs(1),
        "handover after a release took {handover:?}: the Lease was not released"
    );
    drop(c);
    Ok(())
}
