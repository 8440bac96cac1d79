//! The `ferrokv-operator` command: `run` (the default) takes part in leader election and runs
//! the controller while it leads; `crd` prints the CRDs.
//!
//! Shutdown order matters for the one-leader guarantee: on SIGTERM/SIGINT the controller stops
//! first, then the Lease is released (so a successor takes over at its next poll), then the
//! HTTP endpoint closes. Losing the Lease stops the controller at once; the process stays a
//! candidate and may lead again later.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use ferrokv_operator::controller;
use ferrokv_operator::http::{Health, Server};
use ferrokv_operator::leader::{Elector, LeaseSettings};
use ferrokv_operator::metrics::Metrics;
use ferrokv_operator::telemetry::{self, LogFormat};
use tokio::sync::watch;

/// Field manager of everything the operator applies.
const FIELD_MANAGER: &str = "ferrokv-operator";

/// ferrokv operator: runs ferrokv clusters (the `KvCluster` resource) on Kubernetes.
///
/// Without a subcommand, `run` is assumed. It connects to the cluster with $KUBECONFIG (or
/// ~/.kube/config), else with the Pod's ServiceAccount when running in a cluster.
#[derive(Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (the default): elect a leader through a Lease, reconcile KvClusters
    /// while leading, serve /metrics, /healthz and /readyz.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions (YAML, one document per kind) for `kubectl apply -f -`.
    Crd,
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// Node image of KvClusters that do not name one.
    #[arg(long, env = "FERROKV_NODE_IMAGE", default_value = concat!("ferrokv/node:", env!("CARGO_PKG_VERSION")))]
    node_image: String,

    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    #[arg(long, env = "FERROKV_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,

    /// Name of the leader-election Lease.
    #[arg(long, env = "FERROKV_LEASE_NAME", default_value = "ferrokv-operator")]
    lease_name: String,

    /// Namespace of the Lease; defaults to the namespace of the kubeconfig context or of the
    /// Pod's ServiceAccount.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,

    /// This replica's identity in the Lease; must be unique among replicas.
    /// Defaults to `<hostname>_<pid>`.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// Seconds a Lease stays valid after its last renewal; a crashed leader is replaced
    /// within this time.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_duration: u64,

    /// Seconds a leader keeps acting without renewing before it steps down (< lease duration).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    renew_deadline: u64,

    /// Seconds between attempts to acquire or renew the Lease (< renew deadline).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    retry_period: u64,

    /// Namespaces whose KvClusters this operator runs (repeat the flag, or separate with
    /// commas). Without it, every namespace. Scoped to namespaces, the operator needs only
    /// Roles there (the chart's `watchNamespaces`).
    #[arg(long = "watch-namespace", env = "FERROKV_WATCH_NAMESPACES", value_delimiter = ',')]
    watch_namespaces: Vec<String>,

    /// Log format (level from RUST_LOG, default info).
    #[arg(long, env = "FERROKV_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    // kube's rustls needs exactly one process-wide crypto provider. A build that unifies
    // features with the workspace's S3 code compiles aws-lc-rs in beside ring, and rustls then
    // refuses to pick one (it panics on the first TLS connection): choose ring explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => print_crds(),
        Some(Command::Run(args)) => run_blocking(args),
        None => run_blocking(cli.run),
    }
}

fn print_crds() -> ExitCode {
    match ferrokv_operator::crd_documents() {
        Ok(docs) => {
            use std::io::Write as _;
            let docs: Vec<String> = docs.into_iter().map(|(_, yaml)| yaml).collect();
            // `write!`, not `print!`: a closed pipe (`| head`) is an error to report, not a panic.
            match write!(std::io::stdout().lock(), "{}", docs.join("---\n")) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ferrokv-operator: cannot write the CRDs: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("ferrokv-operator: cannot render the CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_blocking(args: RunArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let error = format!("{e:#}");
            tracing::error!(%error, "operator failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new().context("failed to create the metrics registry")?);
    let health = Arc::new(Health::default());
    let client = kube::Client::try_default()
        .await
        .context("failed to configure the Kubernetes client (KUBECONFIG or in-cluster)")?;
    let settings = LeaseSettings {
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
        name: args.lease_name.clone(),
        identity: args.identity.clone().unwrap_or_else(default_identity),
        lease_duration: Duration::from_secs(args.lease_duration),
        renew_deadline: Duration::from_secs(args.renew_deadline),
        retry_period: Duration::from_secs(args.retry_period),
    };
    settings.validate()?;
    let config = controller::Config {
        node_image: args.node_image.clone(),
        field_manager: FIELD_MANAGER.to_string(),
        namespaces: watch_namespaces(&args.watch_namespaces)?,
    };

    let (shutdown_tx, shutdown) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    let server = Server::bind(args.http_addr, metrics.clone(), health.clone()).await?;
    tracing::info!(
        addr = %server.local_addr().map_or_else(|| args.http_addr.to_string(), |a| a.to_string()),
        "serving /metrics, /healthz, /readyz"
    );
    let http = tokio::spawn(server.serve(became_true(shutdown.clone())));
    let signals = tokio::spawn({
        let shutdown_tx = shutdown_tx.clone();
        async move {
            match termination_signal().await {
                Ok(signal) => tracing::info!(signal, "shutting down"),
                Err(e) => tracing::error!(error = %e, "cannot listen for signals; shutting down"),
            }
            let _ = shutdown_tx.send(true);
        }
    });

    tracing::info!(
        lease = %settings.name,
        namespace = %settings.namespace,
        identity = %settings.identity,
        "joining leader election"
    );
    let elector = Arc::new(Elector::new(client.clone(), settings, metrics.clone()));
    let (stop_elector, stop_elector_rx) = watch::channel(false);
    let election = tokio::spawn({
        let (elector, health) = (elector.clone(), health.clone());
        async move { elector.run(stop_elector_rx, || health.set_api_reachable()).await }
    });

    let result = lead_while_elected(&elector, &health, client, config, metrics, shutdown.clone()).await;

    // The controller has stopped: only now may a successor start, so only now release.
    let _ = stop_elector.send(true);
    let _ = election.await;
    elector.release().await;
    signals.abort();
    // Stops the HTTP endpoint also when we got here through an error rather than a signal.
    let _ = shutdown_tx.send(true);
    let _ = http.await;
    result
}

/// Run the controller each time this replica becomes leader, until shutdown.
async fn lead_while_elected(
    elector: &Elector,
    health: &Health,
    client: kube::Client,
    config: controller::Config,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut leading = elector.subscribe();
    // How long a controller that ignores its stop signal may keep running after the Lease was
    // lost: the margin between the renew deadline and the lease expiry for the others.
    let settings = elector.settings();
    let grace = settings.lease_duration.saturating_sub(settings.renew_deadline);
    loop {
        tokio::select! {
            _ = leading.wait_for(|l| *l) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        health.set_leading(true);
        tracing::info!("starting the controller");
        let stop = {
            let (mut leading, mut shutdown) = (leading.clone(), shutdown.clone());
            async move {
                tokio::select! {
                    _ = leading.wait_for(|l| !*l) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            }
        };
        let mut controller = tokio::spawn(controller::run(client.clone(), config.clone(), metrics.clone(), stop));
        health.set_controller_started();
        let outcome = tokio::select! {
            outcome = &mut controller => outcome,
            _ = async {
                let _ = leading.wait_for(|l| !*l).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::error!(?grace, "the controller did not stop after the lease was lost; aborting it");
                controller.abort();
                controller.await
            }
        };
        health.set_leading(false);
        match outcome {
            Ok(Ok(())) if *shutdown.borrow() => return Ok(()),
            Ok(Ok(())) => tracing::info!("controller stopped; standing by"),
            Ok(Err(e)) => return Err(e).context("the controller failed"),
            Err(e) if e.is_cancelled() => tracing::warn!("controller aborted; standing by"),
            Err(e) => return Err(e).context("the controller panicked"),
        }
    }
}

/// The namespaces to watch, trimmed, deduplicated and checked to be namespace names (an env
/// value like `"a, b,"` is a list of two).
fn watch_namespaces(raw: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for ns in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let valid = ns.len() <= 63
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !ns.starts_with('-')
            && !ns.ends_with('-');
        anyhow::ensure!(
            valid,
            "--watch-namespace {ns:?} is not a namespace name (RFC 1123 label)"
        );
        if !out.iter().any(|o| o == ns) {
            out.push(ns.to_string());
        }
    }
    Ok(out)
}

/// Resolves once `rx` reads `true` (or its sender is gone).
async fn became_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn termination_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// `<hostname>_<pid>`: unique per process even when two replicas share a host, which two
/// candidates with the same identity would not notice (both would "renew" the same Lease).
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ferrokv-operator".to_string());
    format!("{host}_{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_run_is_the_default() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["ferrokv-operator", "--lease-name", "x"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.lease_name, "x");
        assert_eq!(
            cli.run.node_image,
            format!("ferrokv/node:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(cli.run.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["ferrokv-operator", "run", "--log-format", "text"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Run(ref a)) if a.log_format == LogFormat::Text));
        assert!(Cli::try_parse_from(["ferrokv-operator", "--lease-name", "x", "crd"]).is_err());
    }

    #[test]
    fn watch_namespaces_are_a_checked_list() {
        let cli =
            Cli::try_parse_from(["ferrokv-operator", "--watch-namespace", "a,b", "--watch-namespace", "a"]).unwrap();
        assert_eq!(watch_namespaces(&cli.run.watch_namespaces).unwrap(), ["a", "b"]);
        assert_eq!(
            watch_namespaces(&[" team-1 ".into(), String::new()]).unwrap(),
            ["team-1"]
        );
        assert!(watch_namespaces(&[]).unwrap().is_empty(), "no flag: every namespace");
        for bad in ["Upper", "-x", "x-", "a_b", &"n".repeat(64)] {
            assert!(watch_namespaces(&[bad.to_string()]).is_err(), "{bad} accepted");
        }
    }
}
