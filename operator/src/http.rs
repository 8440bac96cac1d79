//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
//!
//! It shares [`Health`] with the election loop and the binary rather than probing anything
//! itself, so a probe never waits on the apiserver and a slow apiserver cannot make the
//! kubelet restart a healthy operator.
//!
//! - `/healthz` (liveness) answers 200 as long as the process serves HTTP: a lost lease or an
//!   unreachable apiserver is handled inside the process, and restarting it would not help.
//! - `/readyz` answers 200 once the apiserver has been reached (the Lease was read) and, if
//!   this replica leads, its controller has started. A standby replica is ready too: it is
//!   doing its job, waiting.
//! - `/metrics`: the operator's registry ([`crate::metrics`]) followed by the process metrics
//!   (`process_resident_memory_bytes`, CPU, file descriptors), which keep their standard,
//!   unprefixed names so existing dashboards and alerts find them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::metrics::Metrics;

/// Readiness facts, set by the election loop and the binary.
#[derive(Debug, Default)]
pub struct Health {
    api_reachable: AtomicBool,
    leading: AtomicBool,
    controller_started: AtomicBool,
}

impl Health {
    pub fn set_api_reachable(&self) {
        self.api_reachable.store(true, Ordering::Relaxed);
    }

    /// This replica leads (`true`) or stands by; a new leader is not ready until its
    /// controller has started.
    pub fn set_leading(&self, leading: bool) {
        self.controller_started.store(false, Ordering::Relaxed);
        self.leading.store(leading, Ordering::Relaxed);
    }

    pub fn set_controller_started(&self) {
        self.controller_started.store(true, Ordering::Relaxed);
    }

    /// Why the replica is not ready, or `None` when it is.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if !self.api_reachable.load(Ordering::Relaxed) {
            Some("the Kubernetes API has not been reached yet")
        } else if self.leading.load(Ordering::Relaxed) && !self.controller_started.load(Ordering::Relaxed) {
            Some("leading, but the controller has not started yet")
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to listen on {addr}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
    #[error("failed to register the process metrics")]
    Register(#[source] prometheus::Error),
}

struct AppState {
    metrics: Arc<Metrics>,
    process: Registry,
    health: Arc<Health>,
}

/// The bound listener, before serving: binding first lets the binary fail fast on a busy port
/// and log the actual address (port 0 in tests).
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Server {
    pub async fn bind(addr: SocketAddr, metrics: Arc<Metrics>, health: Arc<Health>) -> Result<Server, Error> {
        let process = Registry::new();
        #[cfg(target_os = "linux")]
        process
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .map_err(Error::Register)?;
        let state = Arc::new(AppState {
            metrics,
            process,
            health,
        });
        let router = Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Server { listener, router })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serve until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), Error> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(Error::Serve)
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut families = state.metrics.registry.gather();
    families.extend(state.process.gather());
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&families, &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_string())],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_string())],
            format!("failed to encode metrics: {e}\n").into_bytes(),
        ),
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.health.not_ready_reason() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_the_api_and_a_started_controller_when_leading() {
        let health = Health::default();
        assert!(health.not_ready_reason().is_some());
        health.set_api_reachable();
        assert_eq!(health.not_ready_reason(), None, "a standby replica is ready");
        health.set_leading(true);
        assert!(health.not_ready_reason().is_some());
        health.set_controller_started();
        assert_eq!(health.not_ready_reason(), None);
        health.set_leading(false);
        assert_eq!(health.not_ready_reason(), None);
    }
}
