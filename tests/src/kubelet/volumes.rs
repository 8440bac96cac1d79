//! The volume provisioner of the `sandbox` StorageClass: a claim becomes a directory.
//!
//! For every pending claim of the class, a `hostPath` PersistentVolume `pvc-<claim uid>` is
//! created over `<sandbox>/volumes/pvc-<claim uid>` with the claim pre-bound in its `claimRef`,
//! and the binding is completed here too (claim `volumeName` and both statuses) rather than left
//! to kube-controller-manager's PV binder, so the sandbox does not depend on which controllers
//! it runs (if the binder does run, it sees a consistent, finished binding). The directory is
//! named after the claim, not the Pod, which is why a StatefulSet Pod recreated under the same
//! claim finds its data again.
//!
//! Binding mode is `Immediate`: with a single node there is no placement for
//! `WaitForFirstConsumer` to wait for, and binding early lets a test see a claim bound before
//! any Pod uses it. Reclaim policy is `Delete`: when the claim goes, the PV and its directory go.

use std::sync::Arc;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Ctx, FIELD_MANAGER};

pub const STORAGE_CLASS: &str = "sandbox";
pub const PROVISIONER: &str = "ferrokv.io/sandbox";
/// Pace of the sweep for volumes whose claim went away while no kubelet watched (a claim
/// deleted between two sandbox runs); the watch handles the rest as it happens.
const SWEEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Creates (or updates) the `sandbox` StorageClass as the cluster's default class, so claims
/// that name no class (most charts' defaults) are provisioned too.
pub(crate) async fn ensure_storage_class(ctx: &Ctx) -> Result<(), super::Error> {
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true,
    });
    classes
        .patch(
            STORAGE_CLASS,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&class),
        )
        .await?;
    Ok(())
}

pub(crate) async fn run(ctx: Arc<Ctx>, cancel: CancellationToken) -> Result<(), super::Error> {
    let claims: Api<PersistentVolumeClaim> = Api::all(ctx.client.clone());
    let mut events = std::pin::pin!(watcher::watcher(claims, watcher::Config::default()).default_backoff());
    let mut sweep_tick = tokio::time::interval(SWEEP);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = sweep_tick.tick() => {
                if let Err(err) = sweep(&ctx).await {
                    warn!(%err, "failed to sweep released volumes");
                }
                continue;
            }
            event = events.try_next() => event,
        };
        match event {
            Ok(Some(Event::Apply(claim) | Event::InitApply(claim))) => {
                if wants_volume(&claim)
                    && let Err(err) = provision(&ctx, &claim).await
                {
                    warn!(claim = %key(&claim), %err, "failed to provision volume");
                }
            }
            Ok(Some(Event::Delete(claim))) => {
                if let Err(err) = reclaim(&ctx, &claim).await {
                    warn!(claim = %key(&claim), %err, "failed to delete volume");
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(super::Error::Task("volume watch ended".into())),
            Err(err) => warn!(%err, "volume watch error"),
        }
    }
}

fn key(claim: &PersistentVolumeClaim) -> String {
    format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any())
}

/// A pending claim of our class that no volume is bound to yet.
pub fn wants_volume(claim: &PersistentVolumeClaim) -> bool {
    let spec = claim.spec.as_ref();
    let ours = spec.and_then(|s| s.storage_class_name.as_deref()) == Some(STORAGE_CLASS);
    let unbound = spec.and_then(|s| s.volume_name.as_deref()).is_none_or(str::is_empty);
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    ours && claim.metadata.deletion_timestamp.is_none() && (unbound || !bound)
}

fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.uid().unwrap_or_default())
}

async fn provision(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
    let namespace = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    let uid = claim.uid().unwrap_or_default();
    let pv_name = volume_name(claim);
    let dir = ctx.config.volumes_dir().join(&pv_name);
    if let Err(err) = std::fs::create_dir_all(&dir) {
        warn!(dir = %dir.display(), %err, "failed to create volume directory");
        return Ok(());
    }
    let spec = claim.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".to_owned());
    let access_modes = spec
        .access_modes
        .clone()
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);

    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    if pvs.get_opt(&pv_name).await?.is_none() {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": { "pv.kubernetes.io/provisioned-by": PROVISIONER },
            },
            "spec": {
                "capacity": { "storage": size },
                "accessModes": access_modes,
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": "Filesystem",
                "hostPath": { "path": dir.display().to_string(), "type": "DirectoryOrCreate" },
                "claimRef": {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": namespace, "name": name, "uid": uid,
                },
            },
        }))
        .map_err(kube::Error::SerdeError)?;
        match pvs.create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => return Err(err),
        }
    }
    let params = PatchParams::default();
    let pv_status = json!({ "status": { "phase": "Bound" } });
    pvs.patch_status(&pv_name, &params, &Patch::Merge(&pv_status)).await?;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let claim_patch = json!({
        "metadata": { "annotations": {
            "pv.kubernetes.io/bind-completed": "yes",
            "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.kubernetes.io/storage-provisioner": PROVISIONER,
        } },
        "spec": { "volumeName": pv_name },
    });
    claims.patch(&name, &params, &Patch::Merge(&claim_patch)).await?;
    let claim_status = json!({ "status": {
        "phase": "Bound",
        "accessModes": access_modes,
        "capacity": { "storage": size },
    } });
    claims
        .patch_status(&name, &params, &Patch::Merge(&claim_status))
        .await?;
    info!(claim = %format!("{namespace}/{name}"), volume = %pv_name, dir = %dir.display(), "provisioned volume");
    Ok(())
}

/// A deleted claim of our class: release and delete its volume and directory.
async fn reclaim(ctx: &Ctx, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
    let ours = claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()) == Some(STORAGE_CLASS);
    if !ours {
        return Ok(());
    }
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match pvs.get_opt(&volume_name(claim)).await? {
        Some(pv) if provisioned_by_us(&pv) => delete_volume(ctx, &pv).await,
        _ => Ok(()),
    }
}

fn provisioned_by_us(pv: &PersistentVolume) -> bool {
    pv.annotations()
        .get("pv.kubernetes.io/provisioned-by")
        .map(String::as_str)
        == Some(PROVISIONER)
}

/// Deletes every volume of ours whose claim no longer exists (or is a newer claim of the name).
async fn sweep(ctx: &Ctx) -> Result<(), kube::Error> {
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    for pv in pvs.list(&Default::default()).await?.items {
        if !provisioned_by_us(&pv) || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), claim_ref.namespace.as_deref().unwrap_or_default());
        let claim = claims.get_opt(claim_ref.name.as_deref().unwrap_or_default()).await?;
        if claim.is_none_or(|c| c.uid() != claim_ref.uid) {
            delete_volume(ctx, &pv).await?;
        }
    }
    Ok(())
}

async fn delete_volume(ctx: &Ctx, pv: &PersistentVolume) -> Result<(), kube::Error> {
    let pv_name = pv.name_any();
    let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
    // Released first: the pv-protection controller only lets go of a volume no claim holds.
    let released = json!({ "status": { "phase": "Released" } });
    pvs.patch_status(&pv_name, &PatchParams::default(), &Patch::Merge(&released))
        .await?;
    match pvs.delete(&pv_name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(err) => return Err(err),
    }
    // Only directories under this kubelet's volumes dir are removed: a volume provisioned by a
    // sandbox elsewhere on the machine is not ours to delete.
    let path = pv
        .spec
        .as_ref()
        .and_then(|s| s.host_path.as_ref())
        .map(|h| std::path::PathBuf::from(&h.path));
    if let Some(dir) = path.filter(|p| p.starts_with(ctx.config.volumes_dir()))
        && let Err(err) = std::fs::remove_dir_all(&dir)
    {
        warn!(dir = %dir.display(), %err, "failed to remove volume directory");
    }
    info!(volume = %pv_name, "deleted volume");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaimSpec, PersistentVolumeClaimStatus};

    fn claim(class: Option<&str>, volume: Option<&str>, phase: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: class.map(Into::into),
                volume_name: volume.map(Into::into),
                ..Default::default()
            }),
            status: Some(PersistentVolumeClaimStatus {
                phase: phase.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_pending_claims_of_our_class_are_provisioned() {
        assert!(wants_volume(&claim(Some("sandbox"), None, Some("Pending"))));
        assert!(
            wants_volume(&claim(Some("sandbox"), Some("pvc-1"), Some("Pending"))),
            "half-done binding resumes"
        );
        assert!(!wants_volume(&claim(Some("sandbox"), Some("pvc-1"), Some("Bound"))));
        assert!(!wants_volume(&claim(Some("other"), None, Some("Pending"))));
        assert!(!wants_volume(&claim(None, None, Some("Pending"))));
    }
}
