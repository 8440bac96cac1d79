//! ferrokv-operator: runs ferrokv clusters on Kubernetes.
//!
//! # Layout
//!
//! - [`crd`]: the `KvCluster` resource (`ferrokv.io/v1alpha1`), its schema rules and status.
//!   The CRD YAML in `crds/` and in the chart is generated from it (`ferrokv-operator crd`).
//! - [`controller`]: the KvCluster reconcile loop: observe (Pods from watch caches, nodes from
//!   background pollers at their Pod IPs) → plan (pure) → apply (server-side apply, status,
//!   topology push handed to a background task) → status.
//! - [`metrics`]: the operator's Prometheus metrics.
//! - [`leader`]: leader election through a Lease; the binary runs the controller only while
//!   [`leader::Elector`] says this replica leads.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`, reading the readiness the election loop and
//!   the binary record in [`http::Health`].
//! - [`telemetry`]: JSON or text logs.

pub mod controller;
pub mod crd;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod telemetry;

use kube::CustomResourceExt;

/// The CRDs this operator serves, as the YAML documents `ferrokv-operator crd` prints and
/// `crds/` holds (one file per kind).
pub fn crd_documents() -> Result<Vec<(&'static str, String)>, serde_yaml_ng::Error> {
    Ok(vec![(
        "kvcluster.yaml",
        yaml11_safe(&serde_yaml_ng::to_string(&crd::KvCluster::crd())?),
    )])
}

/// Quote the plain scalars that YAML 1.1 reads as booleans. serde_yaml_ng writes YAML 1.2, where
/// `no` is a string, but kubectl and helm parse YAML 1.1, where it is `false`: the
/// `appendfsync` enum value `no` would become the boolean `false` on its way to the apiserver.
fn yaml11_safe(yaml: &str) -> String {
    const BOOLISH: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false"];
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let (head, value) = match line.rsplit_once(": ") {
            Some((head, value)) if !line.trim_start().starts_with("- ") => (format!("{head}: "), value),
            _ => match line.split_once("- ") {
                Some((indent, value)) if indent.trim().is_empty() => (format!("{indent}- "), value),
                _ => (String::new(), line),
            },
        };
        if !head.is_empty() && BOOLISH.contains(&value.to_ascii_lowercase().as_str()) && !is_bool(value) {
            out.push_str(&format!("{head}'{value}'\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `true`/`false` written by the serializer are real booleans and stay as they are.
fn is_bool(value: &str) -> bool {
    value == "true" || value == "false"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_booleans_are_quoted_and_real_booleans_kept() {
        let yaml = "enum:\n- always\n- no\nserved: true\nx: off\nname: nothing\n  - yes\n";
        assert_eq!(
            yaml11_safe(yaml),
            "enum:\n- always\n- 'no'\nserved: true\nx: 'off'\nname: nothing\n  - 'yes'\n"
        );
    }
}
