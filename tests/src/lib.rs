//! ferrokv-tests: the local Kubernetes sandbox (issue 5) and the e2e harness on top of it.
//!
//! The sandbox is a real Kubernetes control plane on one machine, without containers: etcd,
//! kube-apiserver and kube-controller-manager built from the Kubernetes Go modules by
//! `scripts/sandbox-bootstrap.sh`, our kubelet, a local S3 endpoint and Prometheus.
//!
//! # Layout
//! - [`pki`]: the CA, serving and client certificates and the ServiceAccount signing key.
//! - [`daemon`]: background processes tracked by PID files (start, find, stop by PID).
//! - [`controlplane`]: the [`controlplane::Sandbox`]: its directory, its components' flags,
//!   `up`/`down`, kubeconfigs (admin and per ServiceAccount).
//! - [`prometheus_sd`]: Pod discovery for Prometheus (`ferrokv-sandbox prometheus-sd`).
//! - [`s3`]: the S3 endpoint (`s3s` over `s3s-fs`), served by `ferrokv-sandbox s3-serve`.
//! - [`harness`]: what e2e tests use: the shared sandbox, a namespace per test, `apply`,
//!   `wait_for`, dumps on failure.
//! - [`kubelet`]: our kubelet, which runs each Pod's containers as local processes; `up` runs
//!   it as one more component (`ferrokv-sandbox kubelet`), and it serves container logs to the
//!   apiserver for `kubectl logs`.
//!
//! Data flows one way: the `ferrokv-sandbox` binary and the harness open a `Sandbox`, which
//! writes its PKI and kubeconfigs, starts its components through `daemon`, and hands out
//! `kube::Client`s built from those kubeconfigs.
pub mod controlplane;
pub mod daemon;
pub mod harness;
pub mod kubelet;
pub mod pki;
pub mod prometheus_sd;
pub mod s3;

/// Make ring rustls's process-wide crypto provider. kube's rustls needs one provider; with
/// aws-sdk-s3 in the same test binary both ring and aws-lc-rs are compiled in and rustls would
/// refuse to pick. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
