//! The Helm chart `charts/ferrokv-operator`: `helm lint` is clean, what `helm template` renders
//! is accepted by the real apiserver (`kubectl apply --dry-run=server`), the Deployment is
//! locked down, `values.schema.json` refuses bad values, and the RBAC grants what the operator
//! needs and nothing else (checked with `kubectl auth can-i` against the real RBAC authorizer).
//!
//! `cargo build -p ferrokv-tests --bin ferrokv-sandbox && cargo test -p ferrokv-operator --test chart`

mod sandbox;

use anyhow::{Context as _, bail};
use ferrokv_tests::harness::TestNs;
use sandbox::{apply_chart_rbac, chart_dir, delete_cluster_rbac, helm_template, run_with_stdin, test_ns, text};
use serde::Deserialize as _;
use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The documents of a rendered chart.
fn documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc).context("rendered YAML")?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn render(t: &TestNs, release: &str, sets: &[&str]) -> anyhow::Result<String> {
    let output = helm_template(t, release, sets)?;
    if !output.status.success() {
        bail!("helm template {sets:?} failed: {}", text(&output));
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn dry_run_apply(t: &TestNs, yaml: &str) -> anyhow::Result<String> {
    let mut cmd = t.kubectl()?;
    cmd.args(["apply", "--dry-run=server", "-f", "-"]);
    let output = run_with_stdin(cmd, yaml)?;
    if !output.status.success() {
        bail!("the apiserver refused the rendered chart: {}", text(&output));
    }
    Ok(text(&output))
}

#[tokio::test]
async fn chart_lints_and_renders_objects_the_apiserver_accepts() -> anyhow::Result<()> {
    let t = test_ns("chart").await?;

    let mut lint = t.helm()?;
    lint.args(["lint", "--strict"]).arg(chart_dir());
    let output = run_with_stdin(lint, "")?;
    let out = text(&output);
    assert!(output.status.success(), "helm lint: {out}");
    assert!(out.contains("0 chart(s) failed"), "helm lint: {out}");
    assert!(
        !out.contains("[WARNING]") && !out.contains("[ERROR]"),
        "helm lint: {out}"
    );

    // The chart is versioned with the workspace.
    let chart: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml"))?)?;
    assert_eq!(chart["appVersion"], VERSION, "Chart.yaml appVersion");
    assert_eq!(chart["version"], VERSION, "Chart.yaml version");

    // Defaults, with the CRDs.
    let mut cmd = t.helm()?;
    cmd.args(["template", "op"])
        .arg(chart_dir())
        .args(["--namespace", &t.name, "--include-crds"]);
    let output = run_with_stdin(cmd, "")?;
    assert!(output.status.success(), "helm template: {}", text(&output));
    let rendered = String::from_utf8(output.stdout)?;
    let docs = documents(&rendered)?;
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(&kind), "no {kind} rendered: {kinds:?}");
    }
    assert!(
        !kinds.contains(&"ServiceMonitor"),
        "ServiceMonitor must be off by default"
    );
    let applied = dry_run_apply(&t, &rendered)?;
    eprintln!("dry-run apply (defaults):\n{}", applied.trim());

    // The Deployment: the images of this version, locked down, probed, told who it is.
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(container["image"], format!("ferrokv/operator:{VERSION}"));
    assert_eq!(pod["serviceAccountName"], "op-ferrokv-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(container["resources"]["requests"]["memory"].is_string(), "{container}");
    assert!(container["resources"]["limits"]["memory"].is_string(), "{container}");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env = container["env"].as_array().context("container env")?;
    let env_value = |name: &str| env.iter().find(|e| e["name"] == name).cloned().unwrap_or_default();
    assert_eq!(
        env_value("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(
        env_value("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env_value("FERROKV_NODE_IMAGE")["value"],
        format!("ferrokv/node:{VERSION}")
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .context("container args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args.first(), Some(&"run"), "{args:?}");
    assert!(args.contains(&"--lease-name=op-ferrokv-operator"), "{args:?}");

    // Every option turned on still renders objects the apiserver accepts (the ServiceMonitor
    // aside: its CRD belongs to the Prometheus Operator, which the sandbox does not run).
    let sets = [
        "replicaCount=2",
        "image.tag=dev",
        "nodeImage.repository=registry.example/ferrokv/node",
        "logFormat=text",
        "leaderElection.leaseName=custom-lease",
        "metrics.port=9090",
        "metrics.podAnnotations=false",
        "podAnnotations.team=kv",
        "priorityClassName=",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prom",
    ];
    let rendered = render(&t, "custom", &sets)?;
    let docs = documents(&rendered)?;
    let monitors = of_kind(&docs, "ServiceMonitor");
    assert_eq!(monitors.len(), 1, "the ServiceMonitor is rendered when enabled");
    assert_eq!(monitors[0]["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitors[0]["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitors[0]["spec"]["endpoints"][0]["port"], "http-metrics");
    let deployment = of_kind(&docs, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let role = of_kind(&docs, "Role")[0];
    assert_eq!(role["rules"][1]["resourceNames"], serde_json::json!(["custom-lease"]));
    let without_monitor: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] != "ServiceMonitor")
        .map(serde_yaml_ng::to_string)
        .collect::<Result<_, _>>()?;
    dry_run_apply(&t, &without_monitor.join("---\n"))?;

    t.cleanup().await?;
    Ok(())
}

#[tokio::test]
async fn values_schema_refuses_bad_values() -> anyhow::Result<()> {
    let t = test_ns("chart-schema").await?;
    let bad = [
        ("replicaCount=-1", "replicaCount"),
        ("replicaCount=many", "replicaCount"),
        ("logFormat=xml", "logFormat"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("leaderElection.leaseDuration=0", "leaseDuration"),
        ("metrics.port=70000", "port"),
        ("metrics.serviceMonitor.interval=often", "interval"),
        ("replicas=2", "replicas"),
        ("serviceAccount.nmae=x", "nmae"),
        ("watchNamespaces={Team_A}", "watchNamespaces"),
    ];
    for (set, field) in bad {
        let output = helm_template(&t, "op", &[set])?;
        let out = text(&output);
        assert!(!output.status.success(), "--set {set} was accepted");
        assert!(
            out.contains("values don't meet the specifications of the schema") && out.contains(field),
            "--set {set}: refused without naming {field}: {out}"
        );
    }
    // A relation the schema cannot express, checked by the template.
    let output = helm_template(&t, "op", &["leaderElection.renewDeadline=20"])?;
    let out = text(&output);
    assert!(!output.status.success(), "renewDeadline ≥ leaseDuration was accepted");
    assert!(
        out.contains("need retryPeriod < renewDeadline < leaseDuration"),
        "{out}"
    );
    t.cleanup().await?;
    Ok(())
}

/// `kubectl auth can-i VERB RESOURCE` as the chart's ServiceAccount. `RESOURCE` is `TYPE`,
/// `TYPE/NAME`, or `TYPE#SUBRESOURCE`.
fn can_i(t: &TestNs, sa: &str, verb: &str, resource: &str, namespace: &str) -> anyhow::Result<bool> {
    let mut cmd = t.kubectl()?;
    cmd.args(["auth", "can-i", verb]);
    match resource.split_once('#') {
        Some((resource, subresource)) => cmd.arg(resource).arg(format!("--subresource={subresource}")),
        None => cmd.arg(resource),
    };
    cmd.arg(format!("--as=system:serviceaccount:{}:{sa}", t.name))
        .args(["--namespace", namespace]);
    let output = run_with_stdin(cmd, "")?;
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => bail!("kubectl auth can-i {verb} {resource}: {}", text(&output)),
    }
}

#[tokio::test]
async fn rbac_grants_what_the_operator_needs_and_nothing_more() -> anyhow::Result<()> {
    let t = test_ns("chart-rbac").await?;
    // Only the ServiceAccount and RBAC objects, for real (no Deployment: no operator runs here).
    let cluster_role = apply_chart_rbac(&t, "op", &[])?;

    let sa = "op-ferrokv-operator";
    let ns = t.name.as_str();
    let elsewhere = "default";
    let allowed = [
        ("watch", "kvclusters.ferrokv.io", elsewhere),
        ("patch", "kvclusters.ferrokv.io", elsewhere),
        ("patch", "kvclusters.ferrokv.io#status", elsewhere),
        ("update", "kvclusters.ferrokv.io#finalizers", elsewhere),
        ("create", "statefulsets.apps", elsewhere),
        ("delete", "statefulsets.apps", elsewhere),
        ("deletecollection", "statefulsets.apps", elsewhere),
        ("deletecollection", "persistentvolumeclaims", elsewhere),
        ("patch", "services", elsewhere),
        ("create", "configmaps", elsewhere),
        ("create", "secrets", elsewhere),
        ("create", "poddisruptionbudgets.policy", elsewhere),
        ("list", "pods", elsewhere),
        ("patch", "pods", elsewhere),
        ("delete", "pods", elsewhere),
        ("create", "events.events.k8s.io", elsewhere),
        ("create", "leases.coordination.k8s.io", ns),
        ("update", "leases.coordination.k8s.io/op-ferrokv-operator", ns),
    ];
    let denied = [
        ("create", "kvclusters.ferrokv.io", elsewhere),
        ("delete", "kvclusters.ferrokv.io", elsewhere),
        ("create", "pods", elsewhere),
        ("create", "pods#exec", elsewhere),
        ("update", "secrets", elsewhere),
        ("create", "deployments.apps", elsewhere),
        ("create", "persistentvolumes", elsewhere),
        ("get", "persistentvolumeclaims", elsewhere),
        ("delete", "namespaces", elsewhere),
        ("list", "nodes", elsewhere),
        ("create", "clusterroles.rbac.authorization.k8s.io", elsewhere),
        ("create", "rolebindings.rbac.authorization.k8s.io", ns),
        ("create", "leases.coordination.k8s.io", elsewhere),
        ("update", "leases.coordination.k8s.io/someone-elses", ns),
        ("delete", "leases.coordination.k8s.io/op-ferrokv-operator", ns),
    ];
    let mut wrong = Vec::new();
    for (verb, resource, namespace) in allowed {
        if !can_i(&t, sa, verb, resource, namespace)? {
            wrong.push(format!("cannot {verb} {resource} in {namespace}"));
        }
    }
    for (verb, resource, namespace) in denied {
        if can_i(&t, sa, verb, resource, namespace)? {
            wrong.push(format!("can {verb} {resource} in {namespace}"));
        }
    }

    // Cluster-scoped objects outlive the namespace: remove them whatever the outcome.
    delete_cluster_rbac(&t, &cluster_role)?;
    assert!(wrong.is_empty(), "the chart's RBAC is wrong:\n  {}", wrong.join("\n  "));
    t.cleanup().await?;
    Ok(())
}

/// `watchNamespaces`: the operator's rules as Roles in exactly those namespaces, nothing
/// cluster-wide, and the Deployment told which namespaces to watch.
#[tokio::test]
async fn watch_namespaces_grant_roles_only_there() -> anyhow::Result<()> {
    let t = test_ns("chart-scoped").await?;
    let ns = t.name.clone();
    let set = format!("watchNamespaces={{{ns}}}");
    let docs = documents(&render(&t, "op", &[&set])?)?;
    assert!(
        of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty(),
        "a namespace-scoped install renders cluster-wide RBAC"
    );
    let deployment = of_kind(&docs, "Deployment");
    let env = &deployment[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array().is_some_and(|e| e
            .iter()
            .any(|v| v["name"] == "FERROKV_WATCH_NAMESPACES" && v["value"] == ns.as_str())),
        "the operator is not told to watch {ns}: {env}"
    );
    // Several namespaces: a Role and a RoleBinding in each, and all of them told to the operator.
    let docs = documents(&render(&t, "op", &["watchNamespaces={team-a,team-b}"])?)?;
    for kind in ["Role", "RoleBinding"] {
        let mut namespaces: Vec<&str> = of_kind(&docs, kind)
            .iter()
            .filter(|d| d["metadata"]["name"] == "op-ferrokv-operator")
            .filter_map(|d| d["metadata"]["namespace"].as_str())
            .collect();
        namespaces.sort();
        assert_eq!(namespaces, ["team-a", "team-b"], "{kind}s of the watched namespaces");
    }
    let env = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array().is_some_and(|e| e
            .iter()
            .any(|v| v["name"] == "FERROKV_WATCH_NAMESPACES" && v["value"] == "team-a,team-b")),
        "{env}"
    );
    let cluster_role = apply_chart_rbac(&t, "op", &[&set])?;
    let sa = "op-ferrokv-operator";
    let elsewhere = "default";
    let mut wrong = Vec::new();
    for (verb, resource) in [
        ("watch", "kvclusters.ferrokv.io"),
        ("patch", "kvclusters.ferrokv.io#status"),
        ("create", "statefulsets.apps"),
        ("patch", "pods"),
        ("create", "secrets"),
        ("create", "events.events.k8s.io"),
    ] {
        if !can_i(&t, sa, verb, resource, &ns)? {
            wrong.push(format!("cannot {verb} {resource} in {ns}"));
        }
        if can_i(&t, sa, verb, resource, elsewhere)? {
            wrong.push(format!("can {verb} {resource} in {elsewhere}"));
        }
    }
    delete_cluster_rbac(&t, &cluster_role)?;
    assert!(wrong.is_empty(), "the scoped RBAC is wrong:\n  {}", wrong.join("\n  "));
    t.cleanup().await?;
    Ok(())
}
