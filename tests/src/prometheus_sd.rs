//! Pod discovery for the sandbox's Prometheus: writes a `file_sd` target file listing the Pods
//! annotated `prometheus.io/scrape: "true"` (at their Pod IP and `prometheus.io/port`, path
//! `prometheus.io/path`), labelled with their namespace and name.
//!
//! Why not Prometheus's own `kubernetes_sd`: Debian builds its prometheus without it. This runs
//! as the `prometheus-sd` subcommand of `ferrokv-sandbox`, a process of its own like the other
//! components. It lists Pods every [`INTERVAL`] rather than watching: a sandbox has few Pods,
//! and a list cannot miss an event; Prometheus notices the rewritten file at once (inotify).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

/// How often Pods are listed.
pub const INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, PartialEq)]
struct TargetGroup {
    targets: Vec<String>,
    labels: BTreeMap<String, String>,
}

/// The target groups of the Pods that ask to be scraped and have an IP.
fn target_groups(pods: &[Pod]) -> Vec<TargetGroup> {
    let mut groups = Vec::new();
    for pod in pods {
        let annotations = pod.annotations();
        if annotations.get("prometheus.io/scrape").map(String::as_str) != Some("true") {
            continue;
        }
        let Some(port) = annotations.get("prometheus.io/port") else {
            continue;
        };
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()) else {
            continue;
        };
        let mut labels = BTreeMap::from([
            ("namespace".to_string(), pod.namespace().unwrap_or_default()),
            ("pod".to_string(), pod.name_any()),
        ]);
        if let Some(path) = annotations.get("prometheus.io/path") {
            labels.insert("__metrics_path__".into(), path.clone());
        }
        groups.push(TargetGroup {
            targets: vec![format!("{ip}:{port}")],
            labels,
        });
    }
    groups
}

/// List Pods and rewrite `out` whenever the targets change, forever. Errors (an apiserver that
/// is restarting) are logged and retried: discovery must outlive them.
pub async fn run(client: Client, out: &Path) -> ! {
    let pods: Api<Pod> = Api::all(client);
    let mut last: Option<String> = None;
    loop {
        match pods.list(&ListParams::default()).await {
            Ok(list) => {
                let json = serde_json::to_string_pretty(&target_groups(&list.items)).unwrap_or_else(|_| "[]".into());
                if last.as_deref() != Some(json.as_str()) {
                    // Written to a temporary file and renamed: Prometheus never reads half a file.
                    let tmp = out.with_extension("json.tmp");
                    match std::fs::write(&tmp, &json).and_then(|()| std::fs::rename(&tmp, out)) {
                        Ok(()) => last = Some(json),
                        Err(e) => tracing::warn!(error = %e, path = %out.display(), "failed to write targets"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "failed to list pods"),
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: serde_json::Value, ip: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "annotations": annotations},
            "status": {"podIP": ip},
        }))
        .expect("valid pod")
    }

    #[test]
    fn only_annotated_pods_with_an_ip_and_a_port_are_targets() {
        let pods = vec![
            pod(
                serde_json::json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9121"}),
                Some("10.0.0.1"),
            ),
            pod(
                serde_json::json!({"prometheus.io/scrape": "true", "prometheus.io/port": "9121"}),
                None,
            ),
            pod(
                serde_json::json!({"prometheus.io/scrape": "false", "prometheus.io/port": "9121"}),
                Some("10.0.0.2"),
            ),
            pod(serde_json::json!({"prometheus.io/scrape": "true"}), Some("10.0.0.3")),
            pod(
                serde_json::json!({"prometheus.io/scrape": "true", "prometheus.io/port": "80", "prometheus.io/path": "/m"}),
                Some("10.0.0.4"),
            ),
        ];
        let groups = target_groups(&pods);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].targets, vec!["10.0.0.1:9121".to_string()]);
        assert_eq!(groups[0].labels.get("pod").map(String::as_str), Some("p"));
        assert_eq!(groups[1].labels.get("__metrics_path__").map(String::as_str), Some("/m"));
    }
}
