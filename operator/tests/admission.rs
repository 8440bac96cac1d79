//! Admission of `KvCluster` manifests by the real kube-apiserver, through `kubectl apply` as a
//! user would: every bad manifest is refused with a message naming the field, the good ones
//! (and both `examples/`) are accepted with their defaults filled in, and changes to immutable
//! fields are refused while mutable ones go through.
//!
//! The rules under test are the CRD's (`crds/kvcluster.yaml`, generated from
//! `operator/src/crd.rs`): OpenAPI bounds and enums, strict field validation, and CEL rules.
//! No operator runs: admission is the apiserver's job alone.
//!
//! `cargo build -p ferrokv-tests --bin ferrokv-sandbox && cargo test -p ferrokv-operator --test admission`

mod sandbox;

use std::time::Duration;

use anyhow::{Context as _, bail};
use ferrokv_operator::crd::KvCluster;
use ferrokv_tests::harness::TestNs;
use sandbox::{install_crds, run_with_stdin, test_ns, text};

/// A manifest `name` with `spec` (YAML lines indented by two spaces under `spec:`).
fn manifest(name: &str, spec: &str) -> String {
    format!("apiVersion: ferrokv.io/v1alpha1\nkind: KvCluster\nmetadata:\n  name: {name}\nspec:\n{spec}\n")
}

/// `kubectl apply -f -` of `yaml` in the test namespace: (accepted, kubectl's output).
fn kubectl_apply(t: &TestNs, yaml: &str, dry_run: bool) -> anyhow::Result<(bool, String)> {
    let mut cmd = t.kubectl()?;
    cmd.args(["apply", "-f", "-"]);
    if dry_run {
        cmd.arg("--dry-run=server");
    }
    let output = run_with_stdin(cmd, yaml)?;
    Ok((output.status.success(), text(&output)))
}

/// Bad manifests: (what is wrong, spec, substrings the refusal must contain).
const BAD: &[(&str, &str, &[&str])] = &[
    ("no shards", "  replicasPerShard: 1", &["spec.shards: Required value"]),
    (
        "zero shards",
        "  shards: 0",
        &["spec.shards", "greater than or equal to 1"],
    ),
    (
        "too many shards",
        "  shards: 16385",
        &["spec.shards", "less than or equal to 16384"],
    ),
    (
        "shards not a number",
        "  shards: three",
        &["spec.shards", "must be of type integer"],
    ),
    (
        "too many replicas",
        "  shards: 3\n  replicasPerShard: 6",
        &["spec.replicasPerShard", "less than or equal to 5"],
    ),
    (
        "negative replicas",
        "  shards: 3\n  replicasPerShard: -1",
        &["spec.replicasPerShard", "greater than or equal to 0"],
    ),
    (
        "misspelled field",
        "  shards: 3\n  replicas: 2",
        &["unknown field \"spec.replicas\""],
    ),
    (
        "unknown appendfsync",
        "  shards: 3\n  persistence:\n    appendfsync: sometimes",
        &["spec.persistence.appendfsync: Unsupported value: \"sometimes\""],
    ),
    (
        // YAML 1.1 reads an unquoted `no` as the boolean false.
        "appendfsync no unquoted",
        "  shards: 3\n  persistence:\n    appendfsync: no",
        &["spec.persistence.appendfsync", "must be of type string"],
    ),
    (
        "bad snapshot schedule",
        "  shards: 3\n  persistence:\n    snapshotSchedule: every hour",
        &["spec.persistence.snapshotSchedule", "should match"],
    ),
    (
        "reserved config key",
        "  shards: 3\n  config:\n    port: \"7000\"",
        &["spec.config", "config: unsupported key", "managed by the operator"],
    ),
    (
        "unknown eviction policy",
        "  shards: 3\n  config:\n    maxmemory-policy: lru",
        &["spec.config", "maxmemory-policy must be one of"],
    ),
    (
        "config value too long",
        "  shards: 3\n  config:\n    maxmemory: \"111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111\"",
        &["spec.config.maxmemory: Too long"],
    ),
    (
        "empty image",
        "  shards: 3\n  image: \"\"",
        &["spec.image", "at least 1 chars long"],
    ),
    (
        "unknown pull policy",
        "  shards: 3\n  imagePullPolicy: Sometimes",
        &["spec.imagePullPolicy: Unsupported value: \"Sometimes\""],
    ),
    (
        "auth without a Secret",
        "  shards: 3\n  auth:\n    key: pw",
        &["spec.auth.secretName: Required value"],
    ),
    (
        "empty storage class",
        "  shards: 3\n  storage:\n    storageClassName: \"\"",
        &["spec.storage.storageClassName", "at least 1 chars long"],
    ),
    (
        "storage size not a quantity",
        "  shards: 3\n  storage:\n    size: lots",
        &["spec.storage.size: Invalid value: \"lots\"", "should match"],
    ),
    (
        "negative storage size",
        "  shards: 3\n  storage:\n    size: -1Gi",
        &["spec.storage.size: Invalid value: \"-1Gi\"", "should match"],
    ),
    (
        "zero storage size",
        "  shards: 3\n  storage:\n    size: \"0\"",
        &["spec.storage.size: Invalid value: \"0\"", "should match"],
    ),
    (
        "cpu not a quantity",
        "  shards: 3\n  resources:\n    requests:\n      cpu: lots",
        &["spec.resources.requests.cpu: Invalid value: \"lots\"", "should match"],
    ),
    (
        "memory limit not a quantity",
        "  shards: 3\n  resources:\n    limits:\n      memory: 1 GB",
        &["spec.resources.limits.memory: Invalid value: \"1 GB\"", "should match"],
    ),
    (
        // An int-or-string takes no YAML float: a fractional CPU must be quoted or in millicores.
        "fractional cpu as a YAML number",
        "  shards: 3\n  resources:\n    requests:\n      cpu: 0.5",
        &["spec.resources.requests.cpu", "must be of type integer,string"],
    ),
    (
        "unknown anti-affinity",
        "  shards: 3\n  placement:\n    shardAntiAffinity: Always",
        &["spec.placement.shardAntiAffinity: Unsupported value: \"Always\""],
    ),
];

/// A config with one key more than the 26 allowed (`CONFIG_KEYS`, `maxProperties`).
fn too_many_config_keys() -> String {
    let mut spec = String::from("  shards: 3\n  config:\n");
    for key in ferrokv_operator::crd::CONFIG_KEYS {
        spec.push_str(&format!("    {key}: \"1\"\n"));
    }
    spec.push_str("    maxmemory-policy-extra: \"1\"\n");
    spec
}

/// The rules this checkout added may not be served yet (another checkout's older CRD applied a
/// moment ago, or the apiserver still swapping validators): wait until one of the newest is.
async fn newest_rules_served(t: &TestNs) -> anyhow::Result<()> {
    let probe = manifest("probe", "  shards: 3\n  storage:\n    size: lots");
    t.wait_for("the CRD's newest rules to be served", Duration::from_secs(30), || {
        let result = kubectl_apply(t, &probe, true);
        async move {
            match result {
                Ok((false, out)) if out.contains("spec.storage.size: Invalid value") => Ok(Some(())),
                Ok((_, out)) => Err(format!("probe not refused as expected: {out}")),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn bad_manifests_are_refused_with_a_message_naming_the_field() -> anyhow::Result<()> {
    let t = test_ns("admission-bad").await?;
    install_crds(&t).await?;
    newest_rules_served(&t).await?;

    let too_many = too_many_config_keys();
    let long_name = "a".repeat(41);
    let mut cases: Vec<(String, String, Vec<&str>)> = BAD
        .iter()
        .enumerate()
        .map(|(i, (what, spec, expect))| (what.to_string(), manifest(&format!("bad-{i}"), spec), expect.to_vec()))
        .collect();
    let at_most = format!("must have at most {} items", ferrokv_operator::crd::CONFIG_KEYS.len());
    cases.push((
        "too many config keys".into(),
        manifest("bad-config-keys", &too_many),
        vec!["spec.config: Too many", at_most.as_str()],
    ));
    cases.push((
        "name too long".into(),
        manifest(&long_name, "  shards: 3"),
        vec!["metadata.name must be at most 40 characters"],
    ));
    assert!(cases.len() >= 15);

    let mut failures = Vec::new();
    for (what, yaml, expected) in &cases {
        let (accepted, out) = kubectl_apply(&t, yaml, false)?;
        if accepted {
            failures.push(format!("{what}: accepted:\n{out}"));
            continue;
        }
        let missing: Vec<&&str> = expected.iter().filter(|e| !out.contains(**e)).collect();
        if !missing.is_empty() {
            failures.push(format!("{what}: refused, but without {missing:?}:\n{out}"));
        } else {
            eprintln!("refused ({what}): {}", out.trim());
        }
    }
    // Nothing was created behind a refusal.
    let left = t.api::<KvCluster>().list(&Default::default()).await?;
    if !left.items.is_empty() {
        failures.push(format!(
            "objects exist after refusals: {:?}",
            left.items.iter().map(|k| k.metadata.name.clone()).collect::<Vec<_>>()
        ));
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} bad manifests misjudged:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );
    }
    eprintln!("{} bad manifests refused with the expected messages", cases.len());
    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn good_manifests_and_the_examples_are_accepted_with_defaults() -> anyhow::Result<()> {
    let t = test_ns("admission-good").await?;
    install_crds(&t).await?;
    newest_rules_served(&t).await?;

    let max_name = "m".repeat(40);
    let good = [
        ("minimal", manifest("minimal", "  shards: 1")),
        (
            "upper bounds",
            manifest(&max_name, "  shards: 16384\n  replicasPerShard: 5"),
        ),
        (
            "no replicas, fsync left to the kernel, no snapshots",
            manifest(
                "lean",
                "  shards: 2\n  replicasPerShard: 0\n  persistence:\n    appendfsync: \"no\"\n    snapshotSchedule: \"\"",
            ),
        ),
        (
            "numeric quantities",
            manifest(
                "numeric",
                "  shards: 1\n  resources:\n    requests:\n      cpu: \"0.5\"\n      memory: 1000000\n    limits:\n      cpu: 1\n  storage:\n    size: 1073741824",
            ),
        ),
        (
            "examples/kvcluster-small.yaml",
            std::fs::read_to_string(sandbox::repo().join("examples/kvcluster-small.yaml"))?,
        ),
        (
            "examples/kvcluster-production.yaml",
            std::fs::read_to_string(sandbox::repo().join("examples/kvcluster-production.yaml"))?,
        ),
    ];
    for (what, yaml) in &good {
        let (accepted, out) = kubectl_apply(&t, yaml, false)?;
        assert!(accepted, "{what} was refused:\n{out}");
    }

    // The schema's defaults are filled in by the apiserver.
    let api = t.api::<KvCluster>();
    let minimal = api.get("minimal").await?;
    assert_eq!(minimal.spec.replicas_per_shard, 1);
    assert_eq!(minimal.spec.storage.size.0, "1Gi");
    assert_eq!(minimal.spec.persistence.appendfsync.as_str(), "everysec");
    assert_eq!(minimal.spec.persistence.snapshot_schedule, "3600 1 300 100 60 10000");

    let production = api.get("orders").await.context("the production example")?;
    assert_eq!(production.spec.persistence.appendfsync.as_str(), "always");
    assert_eq!(
        production.spec.auth.as_ref().map(|a| a.secret_name.as_str()),
        Some("orders-auth")
    );
    let small = api.get("small").await.context("the small example")?;
    assert_eq!((small.spec.shards, small.spec.replicas_per_shard), (3, 1));
    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn immutable_fields_cannot_change_and_mutable_ones_can() -> anyhow::Result<()> {
    let t = test_ns("admission-update").await?;
    install_crds(&t).await?;
    newest_rules_served(&t).await?;

    let base = "  shards: 3\n  replicasPerShard: 1\n  storage:\n    size: 1Gi";
    let (accepted, out) = kubectl_apply(&t, &manifest("kv", base), false)?;
    assert!(accepted, "{out}");
    let generation = t.api::<KvCluster>().get("kv").await?.metadata.generation;

    let refused = [
        (
            "shards changed",
            "  shards: 4\n  replicasPerShard: 1\n  storage:\n    size: 1Gi",
            "shards cannot be changed after creation",
        ),
        (
            "storage size changed",
            "  shards: 3\n  replicasPerShard: 1\n  storage:\n    size: 2Gi",
            "storage cannot be changed after creation",
        ),
        (
            "storage class added",
            "  shards: 3\n  replicasPerShard: 1\n  storage:\n    size: 1Gi\n    storageClassName: fast",
            "storage cannot be changed after creation",
        ),
    ];
    for (what, spec, expected) in refused {
        let (accepted, out) = kubectl_apply(&t, &manifest("kv", spec), false)?;
        assert!(!accepted, "{what}: accepted:\n{out}");
        assert!(out.contains(expected), "{what}: refused without {expected:?}:\n{out}");
        eprintln!("refused ({what}): {}", out.trim());
    }
    let unchanged = t.api::<KvCluster>().get("kv").await?;
    assert_eq!(
        unchanged.metadata.generation, generation,
        "a refused update changed the object"
    );

    let (accepted, out) = kubectl_apply(
        &t,
        &manifest(
            "kv",
            "  shards: 3\n  replicasPerShard: 2\n  storage:\n    size: 1Gi\n  config:\n    maxmemory: 64mb",
        ),
        false,
    )?;
    assert!(accepted, "scaling replicas and changing config was refused:\n{out}");
    let updated = t.api::<KvCluster>().get("kv").await?;
    assert_eq!(updated.spec.replicas_per_shard, 2);
    assert_eq!(updated.spec.config.get("maxmemory").map(String::as_str), Some("64mb"));
    t.cleanup().await?;
    Ok(())
}
