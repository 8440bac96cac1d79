//! `ferrokv-node`: run the server.

use clap::{Parser, Subcommand};
use ferrokv_node::config::ServeArgs;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// ferrokv node: a Redis-protocol key-value server.
#[derive(Parser, Debug)]
#[command(name = "ferrokv-node", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Verify a log segment, a log directory (manifest, base, segments) or a
    /// snapshot file offline and print what it holds; exits 1 on damage.
    Check {
        /// File or directory to verify.
        path: std::path::PathBuf,
    },
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => *a,
        Some(Command::Check { path }) => {
            let ok = ferrokv_node::persist::check(&path, &mut std::io::stdout())
                .map_err(|e| anyhow::anyhow!("failed to read {}: {e}", path.display()))?;
            std::process::exit(if ok { 0 } else { 1 });
        }
        None => cli.serve,
    };
    init_logging(&args.log_format);
    let rt = ferrokv_node::server::runtime()?;
    rt.block_on(async move {
        let running = ferrokv_node::server::start(&args).await?;
        for a in &running.addrs {
            // Tests and scripts read this line to learn the port (with --port 0).
            println!("ferrokv-node listening on {a}");
        }
        if let Some(a) = running.admin_addr {
            println!("ferrokv-node admin on http://{a}");
        }
        tracing::info!(addrs = ?running.addrs, "ready to accept connections");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let opts = tokio::select! {
            _ = tokio::signal::ctrl_c() => Default::default(),
            _ = term.recv() => Default::default(),
            opts = running.stop_requested() => opts,
        };
        tracing::info!(?opts, "shutting down");
        running
            .stop(opts)
            .await
            .map_err(|e| anyhow::anyhow!("stopped, but the final snapshot failed: {e}"))
    })?;
    Ok(())
}
