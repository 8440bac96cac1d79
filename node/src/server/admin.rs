//! Admin HTTP: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.
//! It listens on its own port so that scrapes and probes never compete with
//! clients for the RESP port's connection limit.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State as AxState;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::shutdown::Shutdown;
use crate::state::State;

pub async fn serve(state: Arc<State>, listener: TcpListener, mut shutdown: Shutdown) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "admin server stopped");
    }
}

async fn readyz(AxState(state): AxState<Arc<State>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(AxState(state): AxState<Arc<State>>) -> impl IntoResponse {
    // Rendering counts keys under each partition's lock: while a script
    // holds them all, a scrape waits on a blocking thread, not on the
    // server's runtime (where probes, replication links and the save
    // schedule must keep running).
    let body = tokio::task::spawn_blocking(move || state.metrics.render(&state))
        .await
        .unwrap_or_else(|e| format!("# metrics unavailable: {e}\n"));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
