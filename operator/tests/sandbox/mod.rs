//! What the operator's sandbox tests share: a namespace on the shared sandbox, the CRDs
//! installed from `crds/`, the chart rendered with `helm template`, and kubectl fed on stdin.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use ferrokv_tests::harness::TestNs;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn chart_dir() -> PathBuf {
    repo().join("charts/ferrokv-operator")
}

/// `ferrokv-sandbox`, which the harness runs to start sandbox components that are not running.
/// It is another package's binary (cargo gives tests only their own package's), so it is found
/// beside this test's executable: `cargo build -p ferrokv-tests --bin ferrokv-sandbox`.
pub fn sandbox_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/debug/deps/<test> → target/debug/ferrokv-sandbox
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("ferrokv-sandbox"))
        .context("the test executable has no target directory")?;
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build -p ferrokv-tests --bin ferrokv-sandbox`",
            path.display()
        );
    }
    Ok(path)
}

/// A fresh namespace `e2e-<prefix>-…` on the shared sandbox (started if needed).
pub async fn test_ns(prefix: &str) -> anyhow::Result<TestNs> {
    TestNs::new(prefix, &sandbox_exe()?)
        .await
        .context("starting the sandbox")
}

/// Run `cmd` with `stdin` on its standard input, bounded by a timeout.
pub fn run_with_stdin(mut cmd: Command, stdin: &str) -> anyhow::Result<Output> {
    let described = format!("{cmd:?}");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting {described}"))?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes())
            .with_context(|| format!("writing to {described}"))?;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(output) => output.with_context(|| format!("running {described}")),
        Err(_) => bail!("{described} did not finish within 120 s"),
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The CRDs of this checkout, applied server-side (taking over fields other checkouts' tests
/// may have applied) and Established. The apiserver swaps a changed CRD's validation in a
/// moment after the update: a test that depends on a rule just added polls for it.
pub async fn install_crds(t: &TestNs) -> anyhow::Result<()> {
    let path = repo().join("crds/kvcluster.yaml");
    let mut cmd = t.kubectl()?;
    cmd.args([
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=ferrokv-operator-tests",
        "-f",
    ])
    .arg(&path);
    let output = run_with_stdin(cmd, "")?;
    if !output.status.success() {
        bail!("kubectl apply {}: {}", path.display(), text(&output));
    }
    let mut cmd = t.kubectl()?;
    cmd.args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/kvclusters.ferrokv.io",
    ]);
    let output = run_with_stdin(cmd, "")?;
    if !output.status.success() {
        bail!("the KvCluster CRD is not established: {}", text(&output));
    }
    Ok(())
}

/// `helm template` of the chart (release `release` in the test namespace) with `--set` pairs.
pub fn helm_template(t: &TestNs, release: &str, sets: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = t.helm()?;
    cmd.args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", &t.name]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    run_with_stdin(cmd, "")
}

/// Apply the chart's ServiceAccount and RBAC (release `release`, values `sets`) for real, as
/// `helm install` would, without the Deployment. Returns the name of the cluster-scoped
/// objects (ClusterRole and ClusterRoleBinding, rendered when `watchNamespaces` is empty),
/// which outlive the namespace: delete them with [`delete_cluster_rbac`].
pub fn apply_chart_rbac(t: &TestNs, release: &str, sets: &[&str]) -> anyhow::Result<String> {
    use serde::Deserialize as _;
    let output = helm_template(t, release, sets)?;
    if !output.status.success() {
        bail!("helm template: {}", text(&output));
    }
    let rendered = String::from_utf8(output.stdout)?;
    let mut rbac = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&rendered) {
        let value = serde_json::Value::deserialize(doc)?;
        let kind = value["kind"].as_str().unwrap_or_default();
        if [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ]
        .contains(&kind)
        {
            rbac.push(serde_yaml_ng::to_string(&value)?);
        }
    }
    let mut apply = t.kubectl()?;
    apply.args(["apply", "-f", "-"]);
    let output = run_with_stdin(apply, &rbac.join("---\n"))?;
    if !output.status.success() {
        bail!("applying the chart's RBAC: {}", text(&output));
    }
    Ok(format!("{release}-ferrokv-operator-{}", t.name))
}

pub fn delete_cluster_rbac(t: &TestNs, name: &str) -> anyhow::Result<()> {
    let mut delete = t.kubectl()?;
    delete
        .args(["delete", "--ignore-not-found"])
        .arg(format!("clusterrole/{name}"))
        .arg(format!("clusterrolebinding/{name}"));
    let output = run_with_stdin(delete, "")?;
    if !output.status.success() {
        bail!("deleting {name}: {}", text(&output));
    }
    Ok(())
}
