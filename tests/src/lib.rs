//! ferrokv-tests: the local Kubernetes sandbox (issue 5) and the e2e harness on top of it.
//!
//! # Layout
//! - [`kubelet`]: our kubelet, which runs each Pod's containers as local processes.
pub mod kubelet;
