//! The `ferrokv-operator` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ferrokv operator: runs ferrokv clusters (the `KvCluster` resource) on Kubernetes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (YAML, one document per kind) for `kubectl apply -f -`.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match ferrokv_operator::crd_documents() {
            Ok(docs) => {
                let docs: Vec<String> = docs.into_iter().map(|(_, yaml)| yaml).collect();
                print!("{}", docs.join("---\n"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferrokv-operator: cannot render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
