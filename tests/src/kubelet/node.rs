//! The Node: registration, status heartbeat and lease renewal.
//!
//! The node lifecycle controller in kube-controller-manager marks a node whose Lease is not
//! renewed `Unknown` and taints it `NoExecute`, which evicts every Pod. So the Lease in
//! `kube-node-lease` is renewed every [`LEASE_RENEW`] (kubelet's 10 s, a quarter of the 40 s
//! lease) and the Ready condition's heartbeat refreshed every [`STATUS_REFRESH`].
//! All writes are server-side applies with one field manager, so re-registering after a
//! restart is the same call as the first registration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Ctx, FIELD_MANAGER};

pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
pub const STATUS_REFRESH: Duration = Duration::from_secs(20);
/// The Kubernetes version the node reports, the one of the sandbox's control plane.
pub const KUBELET_VERSION: &str = "v1.36.3";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to register node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Creates or updates the Node and marks it Ready.
pub(crate) async fn register(ctx: &Ctx) -> Result<(), Error> {
    let name = ctx.config.node_name.clone();
    let err = |source| Error::Register {
        node: name.clone(),
        source,
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "node.kubernetes.io/instance-type": "ferrokv-sandbox",
            },
        },
    });
    match nodes.patch(&name, &apply(), &Patch::Apply(&node)).await {
        Ok(_) => {}
        // A Node left by a kubelet configured differently (an older version set the immutable
        // podCIDR) cannot be updated into this one: replace it. Its Pods are orphans anyway.
        Err(kube::Error::Api(status)) if status.code == 422 => {
            warn!(node = %name, message = %status.message, "replacing a node that cannot be updated");
            nodes.delete(&name, &Default::default()).await.map_err(err)?;
            nodes.patch(&name, &apply(), &Patch::Apply(&node)).await.map_err(err)?;
        }
        Err(source) => return Err(err(source)),
    }
    patch_status(ctx).await.map_err(err)?;
    renew_lease(ctx).await.map_err(err)?;
    Ok(())
}

async fn patch_status(ctx: &Ctx) -> Result<(), kube::Error> {
    let config = &ctx.config;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let since = ctx.started_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let capacity = json!({
        "cpu": config.capacity_cpu,
        "memory": config.capacity_memory,
        "pods": config.capacity_pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let status = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": config.node_name },
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", &ready_message()),
            ],
            "addresses": [
                { "type": "InternalIP", "address": ctx.network.gateway().to_string() },
                { "type": "Hostname", "address": config.node_name },
            ],
            // Where the apiserver finds the kubelet's API (`kubectl logs`), with the InternalIP.
            "daemonEndpoints": { "kubeletEndpoint": { "Port": config.api.as_ref().map_or(0, |a| a.port) } },
            "nodeInfo": {
                "machineID": config.node_name,
                "systemUUID": config.node_name,
                "bootID": boot_id.trim(),
                "kernelVersion": kernel.trim(),
                "osImage": "ferrokv sandbox",
                "containerRuntimeVersion": "sandbox://0.1.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            },
        },
    });
    nodes
        .patch_status(&config.node_name, &apply(), &Patch::Apply(&status))
        .await
        .map(drop)
}

/// The Ready condition's message. It names the kubelet's PID, so that `ferrokv-sandbox up` can
/// tell the Ready status of the kubelet it just started from one an earlier kubelet left (the
/// timestamps have whole seconds, too coarse for a kubelet restarted within one).
pub fn ready_message() -> String {
    ready_message_of(std::process::id())
}

pub fn ready_message_of(pid: u32) -> String {
    format!("ferrokv sandbox kubelet (pid {pid}) is posting ready status")
}

async fn renew_lease(ctx: &Ctx) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let name = &ctx.config.node_name;
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "namespace": "kube-node-lease" },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        },
    });
    leases.patch(name, &apply(), &Patch::Apply(&lease)).await.map(drop)
}

/// Renews the lease and refreshes the node status until cancelled. Failures are logged and
/// retried on the next tick: an apiserver hiccup must not take the node down.
pub(crate) async fn heartbeat(ctx: std::sync::Arc<Ctx>, cancel: CancellationToken) -> Result<(), super::Error> {
    let mut lease_tick = tokio::time::interval(LEASE_RENEW);
    let mut status_tick = tokio::time::interval(STATUS_REFRESH);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = lease_tick.tick() => {
                if let Err(err) = renew_lease(&ctx).await {
                    warn!(%err, "failed to renew node lease");
                }
            }
            _ = status_tick.tick() => {
                if let Err(err) = patch_status(&ctx).await {
                    warn!(%err, "failed to refresh node status");
                }
            }
        }
    }
}
