//! The kubelet as a command: the arguments of a `ferrokv-sandbox kubelet` subcommand.
//!
//! A sandbox runs its kubelet as a process of its own (started by `up`, stopped by `down` with
//! SIGTERM), so that it outlives the command that started it like the other components. This
//! module is that process's command line; the binary only has to hand it the parsed arguments.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::logs::TlsFiles;
use super::{Error, ImageMap, KubeletApi, KubeletConfig, NetworkConfig};

/// Run the sandbox kubelet: a Node whose Pods are local processes.
#[derive(Clone, Debug, clap::Args)]
pub struct KubeletArgs {
    /// Admin kubeconfig of the sandbox's apiserver.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// Directory for Pod dirs, volumes, container logs and fault-injection records.
    #[arg(long)]
    pub dir: PathBuf,
    /// Directory of the workspace's built binaries (`target/debug`): `ferrokv/node` runs
    /// `ferrokv-node` from there, `ferrokv/operator` `ferrokv-operator`, and
    /// `ferrokv/sandbox-testimg` `sandbox-testimg`.
    #[arg(long)]
    pub bin_dir: PathBuf,
    #[arg(long, default_value = "sandbox")]
    pub node_name: String,
    /// Host bridge of the Pod network.
    #[arg(long, default_value = "fkvbr0")]
    pub bridge: String,
    /// Pod subnet (its first address is the bridge's, the gateway).
    #[arg(long, default_value = "10.244.0.0")]
    pub subnet: Ipv4Addr,
    #[arg(long, default_value_t = 16)]
    pub prefix_len: u8,
    /// Prefix of network namespace and veth names (at most 5 characters).
    #[arg(long, default_value = "fkv")]
    pub name_prefix: String,
    /// The apiserver's address, forwarded to Pods at the gateway (`KUBERNETES_SERVICE_HOST`).
    /// Its serving certificate must name the gateway IP.
    #[arg(long)]
    pub apiserver: Option<SocketAddr>,
    /// Port of the forwarded apiserver on the gateway.
    #[arg(long, default_value_t = 6443)]
    pub apiserver_pod_port: u16,
    /// Port of the kubelet's HTTPS API (container logs) on the gateway; needs the three TLS files.
    #[arg(long, requires_all = ["tls_cert_file", "tls_private_key_file", "client_ca_file"])]
    pub port: Option<u16>,
    /// Serving certificate of the kubelet's API (must name the gateway IP).
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA whose client certificates (the apiserver's) the kubelet's API accepts.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// First restart backoff of a failed container, in milliseconds (doubles up to 30 s).
    #[arg(long, default_value_t = 1000)]
    pub restart_backoff_ms: u64,
}

impl KubeletArgs {
    pub fn config(&self) -> KubeletConfig {
        let mut config = KubeletConfig::new(&self.dir, ImageMap::ferrokv(&self.bin_dir));
        config.node_name = self.node_name.clone();
        config.network = NetworkConfig {
            bridge: self.bridge.clone(),
            subnet: self.subnet,
            prefix_len: self.prefix_len,
            name_prefix: self.name_prefix.clone(),
        };
        config.apiserver = self.apiserver;
        config.apiserver_pod_port = self.apiserver_pod_port;
        config.restart_backoff = Duration::from_millis(self.restart_backoff_ms);
        config.api = match (
            self.port,
            &self.tls_cert_file,
            &self.tls_private_key_file,
            &self.client_ca_file,
        ) {
            (Some(port), Some(cert), Some(key), Some(client_ca)) => Some(KubeletApi {
                port,
                tls: TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: client_ca.clone(),
                },
            }),
            _ => None,
        };
        config
    }
}

/// Runs the kubelet until SIGTERM or SIGINT.
pub async fn run(args: KubeletArgs) -> Result<(), Error> {
    super::run_until_signal(&args.kubeconfig, args.config()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kubelet: KubeletArgs,
    }

    #[test]
    fn defaults_make_a_sandbox_kubelet() {
        let cli = Cli::parse_from([
            "x",
            "--kubeconfig",
            "/k",
            "--dir",
            "/s",
            "--bin-dir",
            "/b",
            "--apiserver",
            "127.0.0.1:6443",
        ]);
        let config = cli.kubelet.config();
        assert_eq!(config.node_name, "sandbox");
        assert_eq!(config.network, NetworkConfig::default());
        assert_eq!(config.apiserver, Some("127.0.0.1:6443".parse().unwrap()));
        assert!(config.images.lookup("ferrokv/node:1").is_some());
        assert_eq!(config.sandbox_dir, PathBuf::from("/s"));
        assert_eq!(config.api, None);
    }

    #[test]
    fn the_api_needs_its_certificates() {
        let base = [
            "x",
            "--kubeconfig",
            "/k",
            "--dir",
            "/s",
            "--bin-dir",
            "/b",
            "--port",
            "10250",
        ];
        assert!(Cli::try_parse_from(base).is_err());
        let full = [
            &base[..],
            &[
                "--tls-cert-file",
                "/c",
                "--tls-private-key-file",
                "/k",
                "--client-ca-file",
                "/ca",
            ][..],
        ]
        .concat();
        let config = Cli::parse_from(full).kubelet.config();
        assert_eq!(config.api.map(|a| a.port), Some(10250));
    }
}
