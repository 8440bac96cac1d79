//! Pod volumes: materialized as directories, then bind-mounted at their real `mountPath`.
//!
//! Every volume becomes a host directory before any container starts: emptyDir and
//! ConfigMap/Secret/downward-API/projected volumes under the Pod's dir (their files written
//! once, at Pod start: later ConfigMap edits are not propagated), a PVC as its PV's directory,
//! a hostPath as itself. Containers then see them where their spec says, because each container
//! process runs in a private mount namespace where [`Bind`]s are applied (see [`process`]):
//! that keeps Pod specs written for a real cluster (`/data`, `/etc/ferrokv`,
//! `/var/run/secrets/kubernetes.io/serviceaccount`) working unchanged, which rewriting paths in
//! arguments could not do for paths compiled into a program or read from a config file.
//!
//! [`process`]: super::process

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, ServiceAccount,
};
use kube::Api;
use kube::api::PostParams;

use super::env::{self, Allocatable, PodFacts, Sources};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("volume {volume}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume}: waiting for {what}")]
    NotReady { volume: String, what: String },
    #[error("volume {volume}: failed to write {path}: {source}")]
    Io {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("volume {volume}: {source}")]
    Source {
        volume: String,
        #[source]
        source: env::Error,
    },
    #[error("volume {volume}: api call failed: {source}")]
    Kube {
        volume: String,
        #[source]
        source: kube::Error,
    },
    #[error("container mount {0:?} names no volume of the pod")]
    UnknownVolume(String),
    #[error("mount path {0:?} must be absolute and without '..'")]
    BadPath(String),
}

impl Error {
    /// Waiting for something another controller does (a PVC to bind, a ConfigMap to appear) is
    /// retried; everything else is also retried, but reported as an error.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::NotReady { .. })
    }
}

/// One mount of a container: `source` on the host appears at `target` inside the container.
#[derive(Clone, Debug, PartialEq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The host path of each of a Pod's volumes, by volume name.
pub type Volumes = HashMap<String, PathBuf>;

/// Everything needed to materialize a Pod's volumes.
pub struct VolumeContext<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub pod_dir: &'a Path,
    pub facts: &'a PodFacts,
    pub sources: &'a Sources,
    pub allocatable: &'a Allocatable,
}

/// Materializes every volume of the Pod. Safe to call again after a `NotReady` error: files
/// are rewritten and directories reused.
pub async fn prepare(cx: &VolumeContext<'_>) -> Result<Volumes, Error> {
    let mut volumes = Volumes::new();
    let spec_volumes = cx.pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
    for volume in spec_volumes {
        let name = volume.name.clone();
        let dir = cx.pod_dir.join("volumes").join(&name);
        let path = if volume.empty_dir.is_some() {
            create_dir(&name, &dir)?;
            dir
        } else if let Some(cm) = &volume.config_map {
            let entries = config_map(cx.sources, &name, cm.name.as_str(), cm.optional, &cm.items)?;
            write_files(&name, &dir, &entries, cm.default_mode)?;
            dir
        } else if let Some(secret) = &volume.secret {
            let secret_name = secret.secret_name.clone().unwrap_or_default();
            let entries = secret_files(cx.sources, &name, &secret_name, secret.optional, &secret.items)?;
            write_files(&name, &dir, &entries, secret.default_mode)?;
            dir
        } else if let Some(downward) = &volume.downward_api {
            let entries = downward_files(cx, &name, downward.items.as_deref().unwrap_or_default())?;
            write_files(&name, &dir, &entries, downward.default_mode)?;
            dir
        } else if let Some(projected) = &volume.projected {
            let mut entries = Vec::new();
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    entries.extend(config_map(cx.sources, &name, &cm.name, cm.optional, &cm.items)?);
                }
                if let Some(secret) = &source.secret {
                    entries.extend(secret_files(
                        cx.sources,
                        &name,
                        &secret.name,
                        secret.optional,
                        &secret.items,
                    )?);
                }
                if let Some(downward) = &source.downward_api {
                    entries.extend(downward_files(
                        cx,
                        &name,
                        downward.items.as_deref().unwrap_or_default(),
                    )?);
                }
                if let Some(token) = &source.service_account_token {
                    let jwt =
                        service_account_token(cx, &name, token.audience.clone(), token.expiration_seconds).await?;
                    entries.push((token.path.clone(), jwt.into_bytes(), None));
                }
                if source.cluster_trust_bundle.is_some() || source.pod_certificate.is_some() {
                    return Err(Error::Invalid {
                        volume: name,
                        message: "unsupported projected source".into(),
                    });
                }
            }
            write_files(&name, &dir, &entries, projected.default_mode)?;
            dir
        } else if let Some(claim) = &volume.persistent_volume_claim {
            claim_dir(cx, &name, &claim.claim_name).await?
        } else if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
                create_dir(&name, &path)?;
            }
            path
        } else {
            return Err(Error::Invalid {
                volume: name,
                message: "unsupported volume type".into(),
            });
        };
        volumes.insert(volume.name, path);
    }
    Ok(volumes)
}

/// The binds of one container, parents before children so nested mount paths stack right.
pub fn binds(container: &Container, volumes: &Volumes) -> Result<Vec<Bind>, Error> {
    let mut binds = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes
            .get(&mount.name)
            .ok_or_else(|| Error::UnknownVolume(mount.name.clone()))?;
        let target = clean_absolute(&mount.mount_path)?;
        let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => volume.join(clean_relative(sub)?),
            None => volume.clone(),
        };
        binds.push(Bind {
            source,
            target,
            read_only: mount.read_only.unwrap_or(false),
        });
    }
    binds.sort_by_key(|bind| bind.target.components().count());
    Ok(binds)
}

/// Creates the source of subPath binds that do not exist yet, as kubelet does.
pub fn create_missing_sources(binds: &[Bind]) -> Result<(), Error> {
    for bind in binds {
        if !bind.source.exists() {
            create_dir("subPath", &bind.source)?;
        }
    }
    Ok(())
}

fn clean_absolute(path: &str) -> Result<PathBuf, Error> {
    let p = Path::new(path);
    let ok = p.is_absolute() && p.components().all(|c| !matches!(c, Component::ParentDir));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(Error::BadPath(path.to_owned()))
    }
}

fn clean_relative(path: &str) -> Result<PathBuf, Error> {
    let p = Path::new(path);
    let ok = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(Error::BadPath(path.to_owned()))
    }
}

/// A file of a materialized volume: path inside the volume, content, mode.
type Entry = (String, Vec<u8>, Option<i32>);

fn select(
    volume: &str,
    kind: &str,
    name: &str,
    all: Vec<(String, Vec<u8>)>,
    items: &Option<Vec<KeyToPath>>,
    optional: bool,
) -> Result<Vec<Entry>, Error> {
    match items {
        None => Ok(all.into_iter().map(|(k, v)| (k, v, None)).collect()),
        Some(items) => {
            let mut out = Vec::new();
            for item in items {
                match all.iter().find(|(k, _)| *k == item.key) {
                    Some((_, v)) => out.push((item.path.clone(), v.clone(), item.mode)),
                    None if optional => {}
                    None => {
                        return Err(Error::Invalid {
                            volume: volume.to_owned(),
                            message: format!("key {:?} not in {kind} {name:?}", item.key),
                        });
                    }
                }
            }
            Ok(out)
        }
    }
}

fn config_map(
    sources: &Sources,
    volume: &str,
    name: &str,
    optional: Option<bool>,
    items: &Option<Vec<KeyToPath>>,
) -> Result<Vec<Entry>, Error> {
    let optional = optional.unwrap_or(false);
    match sources.config_maps.get(name).and_then(Option::as_ref) {
        Some(cm) => select(volume, "configmap", name, env::config_map_entries(cm), items, optional),
        None if optional => Ok(Vec::new()),
        None => Err(Error::NotReady {
            volume: volume.to_owned(),
            what: format!("configmap {name:?}"),
        }),
    }
}

fn secret_files(
    sources: &Sources,
    volume: &str,
    name: &str,
    optional: Option<bool>,
    items: &Option<Vec<KeyToPath>>,
) -> Result<Vec<Entry>, Error> {
    let optional = optional.unwrap_or(false);
    match sources.secrets.get(name).and_then(Option::as_ref) {
        Some(secret) => select(volume, "secret", name, env::secret_entries(secret), items, optional),
        None if optional => Ok(Vec::new()),
        None => Err(Error::NotReady {
            volume: volume.to_owned(),
            what: format!("secret {name:?}"),
        }),
    }
}

fn downward_files(cx: &VolumeContext<'_>, volume: &str, items: &[DownwardAPIVolumeFile]) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            env::field_value(field, cx.facts)
        } else if let Some(resource) = &item.resource_field_ref {
            let container = cx.pod.spec.as_ref().and_then(|spec| {
                spec.containers
                    .iter()
                    .find(|c| Some(&c.name) == resource.container_name.as_ref())
            });
            env::resource_value(resource, container, cx.allocatable)
        } else {
            Ok(String::new())
        }
        .map_err(|source| Error::Source {
            volume: volume.to_owned(),
            source,
        })?;
        out.push((item.path.clone(), value.into_bytes(), item.mode));
    }
    Ok(out)
}

/// A bound ServiceAccount token from the TokenRequest API, as kubelet projects it.
async fn service_account_token(
    cx: &VolumeContext<'_>,
    volume: &str,
    audience: Option<String>,
    expiration_seconds: Option<i64>,
) -> Result<String, Error> {
    let account = cx.facts.service_account.clone();
    let account = if account.is_empty() {
        "default".to_owned()
    } else {
        account
    };
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a]),
            expiration_seconds: Some(expiration_seconds.unwrap_or(3607)),
            bound_object_ref: Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(cx.facts.name.clone()),
                uid: Some(cx.facts.uid.clone()),
            }),
        }),
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(cx.client.clone(), &cx.facts.namespace);
    let response: TokenRequest = api
        .create_subresource("token", &account, &PostParams::default(), &request)
        .await
        .map_err(|source| match &source {
            kube::Error::Api(status) if status.code == 404 => Error::NotReady {
                volume: volume.to_owned(),
                what: format!("serviceaccount {account:?}"),
            },
            _ => Error::Kube {
                volume: volume.to_owned(),
                source,
            },
        })?;
    Ok(response.status.and_then(|s| s.token).unwrap_or_default())
}

/// The directory of the PV a claim is bound to; `NotReady` until the provisioner bound it.
async fn claim_dir(cx: &VolumeContext<'_>, volume: &str, claim: &str) -> Result<PathBuf, Error> {
    let kube_err = |source| Error::Kube {
        volume: volume.to_owned(),
        source,
    };
    let waiting = |what: String| Error::NotReady {
        volume: volume.to_owned(),
        what,
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(cx.client.clone(), &cx.facts.namespace);
    let pvc = pvcs
        .get_opt(claim)
        .await
        .map_err(kube_err)?
        .ok_or_else(|| waiting(format!("pvc {claim:?}")))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let pv_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|_| bound);
    let pv_name = pv_name.ok_or_else(|| waiting(format!("pvc {claim:?} to be bound")))?;
    let pvs: Api<PersistentVolume> = Api::all(cx.client.clone());
    let pv = pvs
        .get_opt(&pv_name)
        .await
        .map_err(kube_err)?
        .ok_or_else(|| waiting(format!("pv {pv_name:?}")))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or_else(|| spec.local.map(|l| l.path))
        .ok_or_else(|| Error::Invalid {
            volume: volume.to_owned(),
            message: format!("pv {pv_name:?} is neither hostPath nor local"),
        })?;
    let path = PathBuf::from(path);
    create_dir(volume, &path)?;
    Ok(path)
}

fn create_dir(volume: &str, dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        volume: volume.to_owned(),
        path: dir.to_owned(),
        source,
    })
}

fn write_files(volume: &str, dir: &Path, entries: &[Entry], default_mode: Option<i32>) -> Result<(), Error> {
    create_dir(volume, dir)?;
    for (rel, content, mode) in entries {
        let rel = clean_relative(rel)?;
        let path = dir.join(rel);
        let io = |source| Error::Io {
            volume: volume.to_owned(),
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, content).map_err(io)?;
        let mode = mode.or(default_mode).unwrap_or(0o644) as u32 & 0o7777;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

/// A Pod as `/etc/hosts` knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostEntry {
    pub ip: String,
    pub hostname: String,
    pub subdomain: Option<String>,
    pub namespace: String,
}

impl HostEntry {
    /// The names other Pods find this one by: the DNS names a headless Service's `subdomain`
    /// gives a Pod (`<hostname>.<subdomain>.<namespace>.svc.cluster.local` and its shorter
    /// forms, which the cluster DNS search path would complete), and the short
    /// `<hostname>.<subdomain>` within its own namespace.
    fn names(&self, viewer_namespace: &str) -> Vec<String> {
        let Some(sub) = self.subdomain.as_deref().filter(|s| !s.is_empty()) else {
            return Vec::new();
        };
        let (h, ns) = (&self.hostname, &self.namespace);
        let mut names = vec![
            format!("{h}.{sub}.{ns}.svc.cluster.local"),
            format!("{h}.{sub}.{ns}.svc"),
            format!("{h}.{sub}.{ns}"),
        ];
        if viewer_namespace == ns {
            names.push(format!("{h}.{sub}"));
        }
        names
    }
}

/// A Service with a cluster IP as `/etc/hosts` knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceEntry {
    pub ip: String,
    pub name: String,
    pub namespace: String,
}

/// The `/etc/hosts` of a Pod: localhost, the Pod's own names, then the DNS names of every
/// other Pod of the node and of every Service with a cluster IP. The sandbox has no cluster
/// DNS; the names of StatefulSet Pods behind a headless Service (how peers usually find each
/// other) and of Services resolve through this file instead.
pub fn hosts_file(own: &HostEntry, others: &[HostEntry], services: &[ServiceEntry]) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (ferrokv sandbox kubelet).\n127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let mut own_names = own.names(&own.namespace);
    own_names.push(own.hostname.clone());
    out.push_str(&format!("{}\t{}\n", own.ip, own_names.join("\t")));
    for other in others {
        let names = other.names(&own.namespace);
        if !names.is_empty() && other.ip != own.ip {
            out.push_str(&format!("{}\t{}\n", other.ip, names.join("\t")));
        }
    }
    for service in services {
        let (name, ns) = (&service.name, &service.namespace);
        let mut names = vec![
            format!("{name}.{ns}.svc.cluster.local"),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}"),
        ];
        if *ns == own.namespace {
            names.push(name.clone());
        }
        out.push_str(&format!("{}\t{}\n", service.ip, names.join("\t")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::VolumeMount;

    fn mount(name: &str, path: &str, sub: Option<&str>, ro: bool) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            sub_path: sub.map(Into::into),
            read_only: Some(ro),
            ..Default::default()
        }
    }

    #[test]
    fn binds_map_volumes_to_mount_paths_parents_first() {
        let volumes: Volumes = [
            ("data".to_owned(), PathBuf::from("/s/v/pvc-1")),
            ("cfg".to_owned(), PathBuf::from("/s/p/cfg")),
        ]
        .into();
        let container = Container {
            volume_mounts: Some(vec![
                mount("cfg", "/data/conf/app.conf", Some("app.conf"), true),
                mount("data", "/data", None, false),
            ]),
            ..Default::default()
        };
        let binds = binds(&container, &volumes).unwrap();
        assert_eq!(
            binds,
            vec![
                Bind {
                    source: "/s/v/pvc-1".into(),
                    target: "/data".into(),
                    read_only: false
                },
                Bind {
                    source: "/s/p/cfg/app.conf".into(),
                    target: "/data/conf/app.conf".into(),
                    read_only: true
                },
            ]
        );
    }

    #[test]
    fn binds_reject_escapes_and_unknown_volumes() {
        let volumes: Volumes = [("data".to_owned(), PathBuf::from("/s/v"))].into();
        let with = |m: VolumeMount| Container {
            volume_mounts: Some(vec![m]),
            ..Default::default()
        };
        assert!(matches!(
            binds(&with(mount("data", "rel", None, false)), &volumes),
            Err(Error::BadPath(_))
        ));
        assert!(matches!(
            binds(&with(mount("data", "/a/../b", None, false)), &volumes),
            Err(Error::BadPath(_))
        ));
        assert!(matches!(
            binds(&with(mount("data", "/a", Some("../x"), false)), &volumes),
            Err(Error::BadPath(_))
        ));
        assert!(matches!(
            binds(&with(mount("nope", "/a", None, false)), &volumes),
            Err(Error::UnknownVolume(_))
        ));
    }

    #[test]
    fn hosts_file_names_the_pod_and_its_peers() {
        let entry = |ip: &str, h: &str, sub: Option<&str>, ns: &str| HostEntry {
            ip: ip.into(),
            hostname: h.into(),
            subdomain: sub.map(Into::into),
            namespace: ns.into(),
        };
        let own = entry("10.244.0.9", "kv-0", Some("kv"), "ns1");
        let others = [
            entry("10.244.0.10", "kv-1", Some("kv"), "ns1"),
            entry("10.244.0.11", "web-0", Some("web"), "ns2"),
            entry("10.244.0.12", "plain", None, "ns1"),
        ];
        let services = [ServiceEntry {
            ip: "10.96.0.10".into(),
            name: "kv-primary".into(),
            namespace: "ns1".into(),
        }];
        let hosts = hosts_file(&own, &others, &services);
        assert!(
            hosts.contains(
                "10.96.0.10\tkv-primary.ns1.svc.cluster.local\tkv-primary.ns1.svc\tkv-primary.ns1\tkv-primary\n"
            ),
            "{hosts}"
        );
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(
            hosts.contains("10.244.0.9\tkv-0.kv.ns1.svc.cluster.local\tkv-0.kv.ns1.svc\tkv-0.kv.ns1\tkv-0.kv\tkv-0\n"),
            "{hosts}"
        );
        assert!(hosts.contains("10.244.0.10\tkv-1.kv.ns1.svc.cluster.local\tkv-1.kv.ns1.svc\tkv-1.kv.ns1\tkv-1.kv\n"));
        assert!(hosts.contains("10.244.0.11\tweb-0.web.ns2.svc.cluster.local\tweb-0.web.ns2.svc\tweb-0.web.ns2\n"));
        assert!(
            !hosts.contains("plain"),
            "a pod without subdomain has no DNS name: {hosts}"
        );
    }

    #[test]
    fn write_files_honours_paths_and_modes() {
        let dir = std::env::temp_dir().join(format!("kubelet-mounts-{}", std::process::id()));
        let entries = vec![
            ("a/b.txt".to_owned(), b"hi".to_vec(), Some(0o600)),
            ("c".to_owned(), b"x".to_vec(), None),
        ];
        write_files("v", &dir, &entries, Some(0o640)).unwrap();
        assert_eq!(std::fs::read(dir.join("a/b.txt")).unwrap(), b"hi");
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a/b.txt"), 0o600);
        assert_eq!(mode("c"), 0o640);
        assert!(matches!(
            write_files("v", &dir, &[("../x".into(), vec![], None)], None),
            Err(Error::BadPath(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
