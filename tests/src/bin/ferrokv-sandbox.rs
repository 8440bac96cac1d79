//! `ferrokv-sandbox`: start, stop and describe the local Kubernetes sandbox (issue 5).
//!
//! `up` starts etcd, kube-apiserver, kube-controller-manager, the S3 endpoint, Prometheus and
//! our kubelet in the background and returns once all are ready (the kubelet's Node Ready); `down` stops them by PID; `env` prints what a
//! shell needs to use them (`eval "$(ferrokv-sandbox env)"`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ferrokv_tests::controlplane::{self, Sandbox};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A real Kubernetes control plane on this machine, for ferrokv's e2e tests"
)]
struct Cli {
    /// Sandbox directory (state, PKI, logs). Default: $FERROKV_SANDBOX_DIR or ~/.cache/ferrokv/sandbox.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start whatever is not running (restart what runs with an outdated configuration) and
    /// wait until everything is ready, the kubelet's Node included.
    Up {
        /// Directory of the workspace binaries Pods run (`ferrokv-node`, `ferrokv-operator`,
        /// `sandbox-testimg`). Default: $FERROKV_BIN_DIR or this binary's own directory.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
    },
    /// Stop every sandbox process (by PID). State is kept for the next `up`.
    Down,
    /// Show which components run, with their PIDs and addresses.
    Status,
    /// Print `export` lines: KUBECONFIG, the S3 endpoint and credentials, the Prometheus URL, PATH.
    Env,
    /// Write a kubeconfig authenticated as a ServiceAccount (TokenRequest API) and print its path.
    ServiceAccountKubeconfig {
        #[arg(long, short)]
        namespace: String,
        name: String,
        /// Token lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// Write Prometheus file_sd targets for annotated Pods, forever (what `up` runs in the background).
    PrometheusSd {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the sandbox kubelet in the foreground (what `up` runs in the background).
    Kubelet(ferrokv_tests::kubelet::cli::KubeletArgs),
    /// Serve the sandbox's S3 endpoint in the foreground (what `up` runs in the background).
    S3Serve {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        access_key: String,
        #[arg(long)]
        secret_key: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // kube logs every refused connection while `up` polls a starting apiserver.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    ferrokv_tests::install_crypto_provider();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let open = || -> anyhow::Result<Sandbox> {
        let dir = match &cli.dir {
            Some(dir) => dir.clone(),
            None => controlplane::default_dir()?,
        };
        Ok(Sandbox::open(&dir)?)
    };
    match &cli.command {
        Command::Up { bin_dir } => {
            let mut sandbox = open()?;
            if let Some(dir) = bin_dir {
                sandbox = sandbox.with_pod_bin_dir(dir.clone());
            }
            let exe = std::env::current_exe().context("locating ferrokv-sandbox itself")?;
            let report = sandbox.up(&exe).await?;
            if report.started.is_empty() {
                eprintln!(
                    "ferrokv-sandbox: already up ({:.1}s to check)",
                    report.elapsed.as_secs_f64()
                );
            } else {
                eprintln!(
                    "ferrokv-sandbox: up in {:.1}s (apiserver ready at {:.1}s, controller-manager at {:.1}s, \
                     kubelet's node at {:.1}s); started {}",
                    report.elapsed.as_secs_f64(),
                    report.apiserver_ready.as_secs_f64(),
                    report.controller_manager_ready.as_secs_f64(),
                    report.kubelet_ready.as_secs_f64(),
                    report.started.join(", ")
                );
                if !report.restarted.is_empty() {
                    eprintln!(
                        "ferrokv-sandbox: restarted because their configuration changed: {}",
                        report.restarted.join(", ")
                    );
                }
            }
            eprintln!("ferrokv-sandbox: eval \"$(ferrokv-sandbox env)\" to use it");
        }
        Command::Down => {
            let stopped = open()?.down()?;
            eprintln!(
                "ferrokv-sandbox: stopped {}",
                if stopped.is_empty() {
                    "nothing".into()
                } else {
                    stopped.join(", ")
                }
            );
        }
        Command::Status => {
            let sandbox = open()?;
            let ports = &sandbox.state().ports;
            println!("sandbox   {}", sandbox.dir().display());
            println!("binaries  {}", sandbox.bin_dir().display());
            for (name, pid) in controlplane::status(&sandbox) {
                let addr = match name {
                    "etcd" => format!("http://127.0.0.1:{}", ports.etcd_client),
                    "kube-apiserver" => sandbox.apiserver_url(),
                    "kube-controller-manager" => format!("https://127.0.0.1:{}", ports.controller_manager),
                    "s3" => sandbox.s3_endpoint(),
                    "prometheus-sd" => sandbox.prometheus_targets().display().to_string(),
                    "kubelet" => format!(
                        "{} (pods on {} {}/{})",
                        sandbox.kubelet_url(),
                        sandbox.state().pod_network.bridge,
                        sandbox.state().pod_network.subnet,
                        sandbox.state().pod_network.prefix_len
                    ),
                    _ => sandbox.prometheus_url(),
                };
                match pid {
                    Some(pid) => println!("{name:<24} running  pid {pid:<8} {addr}"),
                    None => println!("{name:<24} stopped"),
                }
            }
        }
        Command::Env => {
            for (key, value) in open()?.env() {
                println!("export {key}={}", shell_quote(&value));
            }
        }
        Command::ServiceAccountKubeconfig { namespace, name, ttl } => {
            let sandbox = open()?;
            let client = sandbox.admin_client().await?;
            let path = sandbox
                .service_account_kubeconfig(&client, namespace, name, Duration::from_secs(*ttl))
                .await?;
            println!("{}", path.display());
        }
        Command::PrometheusSd { kubeconfig, out } => {
            let client = controlplane::client_from_kubeconfig(kubeconfig).await?;
            ferrokv_tests::prometheus_sd::run(client, out).await
        }
        Command::Kubelet(args) => ferrokv_tests::kubelet::cli::run(args.clone()).await?,
        Command::S3Serve {
            root,
            listen,
            access_key,
            secret_key,
        } => {
            ferrokv_tests::s3::serve(root, *listen, access_key, secret_key).await?;
        }
    }
    Ok(())
}

/// Single-quote for POSIX shells, so that `eval "$(ferrokv-sandbox env)"` is safe.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
