//! The operator's Prometheus metrics (served on `/metrics`).
//!
//! One registry per process, created at start and shared by the controller and the HTTP
//! server, so tests can run several operators in one process without clashing on a global.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Metrics of the reconcile loop and of what it decided.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by result (`ok`, `error`).
    pub reconciles: IntCounterVec,
    /// Reconcile duration in seconds, by result.
    pub reconcile_duration: HistogramVec,
    /// Topology pushes to the nodes, by result.
    pub topology_pushes: IntCounterVec,
    /// Child objects per reconcile by outcome: `applied` (a server-side apply was sent) or
    /// `unchanged` (skipped: the object is as this process last applied it).
    pub child_applies: IntCounterVec,
    /// 1 while this process holds the leader Lease.
    pub leader: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("ferrokv_operator".into()), None)?;
        let reconciles = IntCounterVec::new(Opts::new("reconciles_total", "Reconciles by result."), &["result"])?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Reconcile duration by result.").buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]),
            &["result"],
        )?;
        let topology_pushes = IntCounterVec::new(
            Opts::new("topology_pushes_total", "Topology pushes to the nodes by result."),
            &["result"],
        )?;
        let child_applies = IntCounterVec::new(
            Opts::new(
                "child_applies_total",
                "Children server-side applied (applied) or found as last applied (unchanged).",
            ),
            &["outcome"],
        )?;
        let leader = IntGaugeVec::new(
            Opts::new("leader", "1 while this process holds the leader Lease."),
            &["lease"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(topology_pushes.clone()))?;
        registry.register(Box::new(child_applies.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            reconcile_duration,
            topology_pushes,
            child_applies,
            leader,
        })
    }
}
