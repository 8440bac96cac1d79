//! The sandbox's PKI: one CA, the apiserver's serving certificate, client certificates for the
//! admin and the controller manager, and the ServiceAccount token signing key.
//!
//! Why a real PKI on a test machine: the apiserver authenticates every caller by its client
//! certificate or its ServiceAccount token and authorizes it with RBAC, so a chart whose RBAC is
//! wrong fails in the sandbox as it would in a cluster. Every file is written once under
//! `<sandbox>/pki` and reused by later `up`s: regenerating would invalidate every kubeconfig and
//! ServiceAccount token handed out before, for no gain. Keys are ECDSA P-256 (rcgen's default,
//! accepted by the apiserver for serving, client auth and ES256 token signing).

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The first address of the sandbox's service CIDR: the in-cluster `kubernetes` Service, which
/// the apiserver's certificate must name so that in-cluster clients can verify it.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("failed to read {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("failed to generate {what}")]
    Generate { what: String, source: rcgen::Error },
}

/// A certificate and its private key, as PEM files on disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files of the sandbox's PKI under one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// The PKI under `dir`, generating whatever is missing. `server_ips` are extra addresses the
    /// apiserver is reached at (loopback is always included); `kubelet_ips` those of the
    /// kubelet's API.
    pub fn ensure(dir: &Path, server_ips: &[IpAddr], kubelet_ips: &[IpAddr]) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let pki = Self { dir: dir.to_path_buf() };
        if !pki.ca().cert.exists() || !pki.ca().key.exists() {
            pki.generate_ca()?;
        }
        let mut sans: Vec<String> = vec![
            "localhost".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
            "127.0.0.1".into(),
            KUBERNETES_SERVICE_IP.to_string(),
        ];
        sans.extend(server_ips.iter().map(IpAddr::to_string));
        pki.ensure_serving("apiserver", "kube-apiserver", sans)?;
        // The kubelet's API (container logs) is served at the Node's InternalIP, the Pod
        // bridge's gateway, which is where the apiserver connects and what it verifies.
        pki.ensure_serving(
            "kubelet",
            "sandbox-kubelet",
            kubelet_ips.iter().map(IpAddr::to_string).collect(),
        )?;
        if !pki.admin().cert.exists() {
            // system:masters bypasses RBAC: the admin is the sandbox's operator, not a test subject.
            pki.issue_client("admin", "sandbox-admin", &["system:masters"])?;
        }
        if !pki.controller_manager().cert.exists() {
            pki.issue_client("controller-manager", "system:kube-controller-manager", &[])?;
        }
        if !pki.apiserver_kubelet_client().cert.exists() {
            // What the apiserver presents to the kubelet's API (container logs); the kubelet
            // accepts any client certificate of the sandbox CA.
            pki.issue_client(
                "apiserver-kubelet-client",
                "kube-apiserver-kubelet-client",
                &["system:masters"],
            )?;
        }
        let (sa_key, sa_pub) = (pki.service_account_key(), pki.service_account_public_key());
        if !sa_key.exists() || !sa_pub.exists() {
            let key = KeyPair::generate().map_err(|source| PkiError::Generate {
                what: "sa key".into(),
                source,
            })?;
            write(&sa_key, &key.serialize_pem())?;
            write(&sa_pub, &key.public_key_pem())?;
        }
        Ok(pki)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ca(&self) -> CertFiles {
        self.files("ca")
    }

    pub fn apiserver(&self) -> CertFiles {
        self.files("apiserver")
    }

    pub fn admin(&self) -> CertFiles {
        self.files("admin")
    }

    pub fn controller_manager(&self) -> CertFiles {
        self.files("controller-manager")
    }

    /// The serving certificate of the kubelet's API.
    pub fn kubelet(&self) -> CertFiles {
        self.files("kubelet")
    }

    pub fn apiserver_kubelet_client(&self) -> CertFiles {
        self.files("apiserver-kubelet-client")
    }

    /// The private key (PKCS#8) that signs ServiceAccount tokens.
    pub fn service_account_key(&self) -> PathBuf {
        self.dir.join("sa.key")
    }

    /// Its public key, which verifies them: the apiserver does not read public keys out of a
    /// PKCS#8 private key file, so it gets a file of its own.
    pub fn service_account_public_key(&self) -> PathBuf {
        self.dir.join("sa.pub")
    }

    pub fn ca_pem(&self) -> Result<String, PkiError> {
        read(&self.ca().cert)
    }

    /// A client certificate for any identity (file stem `name`), e.g. a Node's
    /// `system:node:<name>` in group `system:nodes` for a kubelet. Reuses an existing one.
    pub fn issue_client(&self, name: &str, common_name: &str, groups: &[&str]) -> Result<CertFiles, PkiError> {
        let files = self.files(name);
        if files.cert.exists() && files.key.exists() {
            return Ok(files);
        }
        self.issue(
            name,
            common_name,
            groups,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// A serving certificate `name` for `sans`. The names are recorded beside it
    /// (`<name>.sans`), so that a sandbox made by an older version (other names) gets a new one.
    fn ensure_serving(&self, name: &str, common_name: &str, mut sans: Vec<String>) -> Result<(), PkiError> {
        sans.dedup();
        let sans_file = self.dir.join(format!("{name}.sans"));
        let wanted = sans.join("\n");
        let recorded = fs::read_to_string(&sans_file).unwrap_or_default();
        if !self.files(name).cert.exists() || recorded != wanted {
            self.issue(name, common_name, &[], sans, ExtendedKeyUsagePurpose::ServerAuth)?;
            write(&sans_file, &wanted)?;
        }
        Ok(())
    }

    fn files(&self, name: &str) -> CertFiles {
        CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        }
    }

    fn generate_ca(&self) -> Result<(), PkiError> {
        let gen_err = |source| PkiError::Generate {
            what: "ca".into(),
            source,
        };
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        params.distinguished_name = name_with("ferrokv-sandbox-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key).map_err(gen_err)?;
        let files = self.ca();
        write(&files.key, &key.serialize_pem())?;
        write(&files.cert, &cert.pem())
    }

    fn issue(
        &self,
        name: &str,
        common_name: &str,
        groups: &[&str],
        sans: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<CertFiles, PkiError> {
        let gen_err = |source| PkiError::Generate {
            what: name.to_string(),
            source,
        };
        let ca = self.ca();
        let ca_key = KeyPair::from_pem(&read(&ca.key)?).map_err(gen_err)?;
        let issuer = Issuer::from_ca_cert_pem(&read(&ca.cert)?, ca_key).map_err(gen_err)?;
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(sans).map_err(gen_err)?;
        params.distinguished_name = name_with(common_name, groups);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
        let files = self.files(name);
        write(&files.key, &key.serialize_pem())?;
        write(&files.cert, &cert.pem())?;
        Ok(files)
    }
}

/// Kubernetes reads the user from CN and its groups from the O entries.
fn name_with(common_name: &str, groups: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for group in groups {
        dn.push(DnType::OrganizationName, *group);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}
