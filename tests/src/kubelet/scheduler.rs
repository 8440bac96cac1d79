//! The scheduler of a one-node cluster: bind every unscheduled Pod to the node.
//!
//! There is no kube-scheduler in the sandbox; with a single node there is nothing to choose,
//! so every Pod of the default scheduler that has no node and no scheduling gate is bound
//! through the `binding` subresource, exactly the call kube-scheduler makes (the apiserver then
//! sets `spec.nodeName` and the `PodScheduled` condition). Volume binding is not waited for
//! here: the kubelet waits for a Pod's claims before starting it, which gives the same order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Ctx;

/// Unbound Pods whose binding failed for a transient reason are retried at this pace.
const RETRY: Duration = Duration::from_secs(2);

pub(crate) async fn run(ctx: Arc<Ctx>, cancel: CancellationToken) -> Result<(), super::Error> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=,spec.schedulerName=default-scheduler");
    let mut events = std::pin::pin!(watcher::watcher(pods, config).default_backoff());
    let mut retry: BTreeMap<(String, String), ()> = BTreeMap::new();
    let mut tick = tokio::time::interval(RETRY);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {
                let pending = std::mem::take(&mut retry);
                for (namespace, name) in pending.into_keys() {
                    if !bind(&ctx, &namespace, &name).await {
                        retry.insert((namespace, name), ());
                    }
                }
                continue;
            }
            event = events.try_next() => event,
        };
        let pod = match event {
            Ok(Some(Event::Apply(pod) | Event::InitApply(pod))) => pod,
            Ok(Some(_)) => continue,
            Ok(None) => return Err(super::Error::Task("scheduler watch ended".into())),
            Err(err) => {
                warn!(%err, "scheduler watch error");
                continue;
            }
        };
        let gated = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_some_and(|g| !g.is_empty());
        if pod.metadata.deletion_timestamp.is_some() || gated {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        if !bind(&ctx, &namespace, &name).await {
            retry.insert((namespace, name), ());
        }
    }
}

/// Binds one Pod; `false` when it should be retried.
async fn bind(ctx: &Ctx, namespace: &str, name: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": { "name": name, "namespace": namespace },
        "target": { "apiVersion": "v1", "kind": "Node", "name": ctx.config.node_name },
    });
    match pods
        .create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding)
        .await
    {
        Ok(_) => {
            info!(pod = %format!("{namespace}/{name}"), node = %ctx.config.node_name, "bound pod");
            true
        }
        // Already bound (409) or gone (404): nothing left to do.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
            debug!(pod = %format!("{namespace}/{name}"), code = status.code, "binding not needed");
            true
        }
        Err(err) => {
            warn!(pod = %format!("{namespace}/{name}"), %err, "failed to bind pod, will retry");
            false
        }
    }
}
