//! Pod networking: one network namespace per Pod, its own IP, one host bridge.
//!
//! Each Pod gets a namespace with `lo` and an `eth0` veth whose peer is enslaved to a bridge on
//! the host; the bridge holds the gateway address (`.1` of the subnet). So a Pod's processes bind
//! `0.0.0.0` and ports never clash between Pods, Pods reach each other and the host reaches
//! them through the bridge, like on a real node with a bridge CNI. Cutting a Pod off is taking
//! its host-side veth down: the Pod keeps its address but nothing reaches it, which is what a
//! partition looks like from both sides.
//!
//! Everything is done with iproute2 (`ip`), which the sandbox machines have and which is the
//! reference tool for this; the calls are few (a handful per Pod start) so forking is cheap.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{debug, warn};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to run ip {args}: {source}")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ip {args} failed: {stderr}")]
    Command { args: String, stderr: String },
    #[error("ip {0} timed out")]
    Timeout(String),
    #[error("pod address range {0} is exhausted")]
    Exhausted(String),
    #[error("invalid network config: {0}")]
    Config(String),
}

/// Where Pod networks live. Recorded in a sandbox's `state.json`, so it is serializable.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkConfig {
    /// Host bridge every Pod's veth is enslaved to (created if missing, removed on teardown).
    pub bridge: String,
    /// Pod subnet; the gateway is its first address.
    pub subnet: Ipv4Addr,
    pub prefix_len: u8,
    /// Prefix of namespace and veth names (≤ 5 characters, because a link name has at most 15
    /// and the rest is a hex Pod number), so two sandboxes on one machine don't collide.
    pub name_prefix: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            bridge: "fkvbr0".to_owned(),
            subnet: Ipv4Addr::new(10, 244, 0, 0),
            prefix_len: 16,
            name_prefix: "fkv".to_owned(),
        }
    }
}

impl NetworkConfig {
    /// The `index`th (0..=9) Pod network of a machine: 0 is [`NetworkConfig::default`]; others
    /// get the bridge `fkvbr<index>`, subnet `10.<244+index>.0.0/16` and name prefix
    /// `fk<index>`, so that several sandboxes (one per developer checkout) run side by side.
    /// Why not `fkv<index>`: veth names are the prefix plus a hex Pod number, and `fkv1` + `a`
    /// would be the default network's `fkv` + `1a`. One digit for the same reason.
    pub fn indexed(index: u8) -> Self {
        if index == 0 {
            return Self::default();
        }
        Self {
            bridge: format!("fkvbr{index}"),
            subnet: Ipv4Addr::new(10, 244u8.saturating_add(index), 0, 0),
            prefix_len: 16,
            name_prefix: format!("fk{index}"),
        }
    }

    /// The bridge's address, which Pods reach the host (and the apiserver forwarder) at. The
    /// apiserver's serving certificate must name it for in-cluster clients to verify the server.
    pub fn gateway(&self) -> Ipv4Addr {
        let size = 1u32.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0);
        let base = u32::from(self.subnet) & !size.wrapping_sub(1);
        Ipv4Addr::from(base.wrapping_add(1))
    }
}

/// A Pod's network: its namespace, host-side veth and address.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PodNetwork {
    pub netns: String,
    pub veth: String,
    pub ip: Ipv4Addr,
}

/// The node's Pod network: the bridge and an address allocator.
pub struct Network {
    config: NetworkConfig,
    gateway: Ipv4Addr,
    ipam: Mutex<Ipam>,
}

/// Hands out Pod addresses round-robin, so an address just released (a deleted StatefulSet Pod)
/// is not immediately given to the next Pod while peers may still hold it in their topology.
struct Ipam {
    size: u32,
    next: u32,
    used: BTreeSet<u32>,
}

impl Ipam {
    fn allocate(&mut self) -> Option<u32> {
        // Offsets 0 (network), 1 (gateway) and size-1 (broadcast) are never Pods.
        let usable = self.size.saturating_sub(3);
        for _ in 0..usable {
            let candidate = self.next;
            self.next = if self.next + 1 >= self.size - 1 {
                2
            } else {
                self.next + 1
            };
            if !self.used.contains(&candidate) {
                self.used.insert(candidate);
                return Some(candidate);
            }
        }
        None
    }
}

impl Network {
    /// Creates the bridge (or adopts an existing one) and removes namespaces a previous run of
    /// a kubelet with the same name prefix left behind.
    pub async fn setup(config: NetworkConfig) -> Result<Self, Error> {
        if !(8..=28).contains(&config.prefix_len) {
            return Err(Error::Config(format!(
                "prefix length {} not in 8..=28",
                config.prefix_len
            )));
        }
        if config.name_prefix.is_empty() || config.name_prefix.len() > 5 {
            return Err(Error::Config(format!(
                "name prefix {:?} must have 1 to 5 characters",
                config.name_prefix
            )));
        }
        let size = 1u32 << (32 - u32::from(config.prefix_len));
        let gateway = config.gateway();
        let network = Self {
            gateway,
            ipam: Mutex::new(Ipam {
                size,
                next: 2,
                used: BTreeSet::new(),
            }),
            config,
        };

        for stale in network.own_namespaces().await? {
            warn!(netns = %stale, "removing a network namespace left by an earlier run");
            let _ = ip(&["netns", "del", &stale]).await;
        }
        let bridge = network.config.bridge.as_str();
        if ip(&["link", "show", bridge]).await.is_err() {
            ip(&["link", "add", bridge, "type", "bridge"]).await?;
        }
        let cidr = format!("{gateway}/{}", network.config.prefix_len);
        ip(&["addr", "replace", &cidr, "dev", bridge]).await?;
        ip(&["link", "set", bridge, "up"]).await?;
        Ok(network)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    async fn own_namespaces(&self) -> Result<Vec<String>, Error> {
        let prefix = format!("{}-", self.config.name_prefix);
        let listing = ip(&["netns", "list"]).await?;
        Ok(listing
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| name.starts_with(&prefix))
            .map(str::to_owned)
            .collect())
    }

    /// Creates a Pod's namespace, wired to the bridge with a fresh address.
    pub async fn attach(&self) -> Result<PodNetwork, Error> {
        let (offset, base) = {
            let mut ipam = self.ipam.lock();
            let offset = ipam.allocate().ok_or_else(|| Error::Exhausted(self.cidr()))?;
            (offset, u32::from(self.gateway) - 1)
        };
        let pod = PodNetwork {
            netns: format!("{}-{offset:x}", self.config.name_prefix),
            veth: format!("{}{offset:x}", self.config.name_prefix),
            ip: Ipv4Addr::from(base + offset),
        };
        match self.wire(&pod).await {
            Ok(()) => {
                debug!(netns = %pod.netns, ip = %pod.ip, "pod network attached");
                Ok(pod)
            }
            Err(err) => {
                self.detach(&pod).await;
                Err(err)
            }
        }
    }

    async fn wire(&self, pod: &PodNetwork) -> Result<(), Error> {
        let ns = pod.netns.as_str();
        let addr = format!("{}/{}", pod.ip, self.config.prefix_len);
        let gateway = self.gateway.to_string();
        ip(&["netns", "add", ns]).await?;
        ip(&[
            "link", "add", &pod.veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])
        .await?;
        ip(&["link", "set", &pod.veth, "master", &self.config.bridge]).await?;
        ip(&["link", "set", &pod.veth, "up"]).await?;
        ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"]).await?;
        ip(&["-n", ns, "link", "set", "eth0", "up"]).await?;
        ip(&["-n", ns, "link", "set", "lo", "up"]).await?;
        ip(&["-n", ns, "route", "add", "default", "via", &gateway]).await?;
        Ok(())
    }

    /// Removes a Pod's namespace and veth and frees its address. Best effort: a Pod being torn
    /// down must not be kept alive by a half-removed link.
    pub async fn detach(&self, pod: &PodNetwork) {
        if let Err(err) = ip(&["netns", "del", &pod.netns]).await {
            debug!(netns = %pod.netns, %err, "netns already gone");
        }
        // Deleting the namespace destroys eth0 and with it the veth pair; this catches the case
        // where the namespace was never created but the link was.
        let _ = ip(&["link", "del", &pod.veth]).await;
        let offset = u32::from(pod.ip).wrapping_sub(u32::from(self.gateway) - 1);
        self.ipam.lock().used.remove(&offset);
    }

    /// Removes every Pod namespace still attached and the bridge.
    pub async fn teardown(&self) {
        if let Ok(names) = self.own_namespaces().await {
            for name in names {
                let _ = ip(&["netns", "del", &name]).await;
            }
        }
        let _ = ip(&["link", "del", &self.config.bridge]).await;
    }

    fn cidr(&self) -> String {
        format!("{}/{}", self.config.subnet, self.config.prefix_len)
    }
}

/// Adds or removes a /32 address on a host link: the cluster IPs the service proxy listens on.
pub async fn set_address(link: &str, address: Ipv4Addr, present: bool) -> Result<(), Error> {
    let cidr = format!("{address}/32");
    let verb = if present { "replace" } else { "del" };
    ip(&["addr", verb, &cidr, "dev", link]).await.map(drop)
}

/// Sets a host-side veth up or down: the network cut of fault injection.
pub async fn set_link(veth: &str, up: bool) -> Result<(), Error> {
    ip(&["link", "set", veth, if up { "up" } else { "down" }])
        .await
        .map(drop)
}

/// Runs `ip` with a deadline; a hung `ip` would otherwise wedge a Pod worker forever.
async fn ip(args: &[&str]) -> Result<String, Error> {
    let joined = args.join(" ");
    let output = tokio::process::Command::new("ip")
        .args(args)
        // iproute2 lives in /usr/sbin, which a non-login PATH (a CI job's) may lack.
        .env("PATH", super::process::DEFAULT_PATH)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .map_err(|_| Error::Timeout(joined.clone()))?
        .map_err(|source| Error::Spawn {
            args: joined.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            args: joined,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_is_the_first_address() {
        assert_eq!(NetworkConfig::default().gateway(), Ipv4Addr::new(10, 244, 0, 1));
        let config = NetworkConfig {
            subnet: Ipv4Addr::new(10, 246, 7, 9),
            prefix_len: 16,
            ..Default::default()
        };
        assert_eq!(config.gateway(), Ipv4Addr::new(10, 246, 0, 1));
    }

    #[test]
    fn ipam_is_round_robin_and_skips_reserved() {
        let mut ipam = Ipam {
            size: 8,
            next: 2,
            used: BTreeSet::new(),
        };
        let first: Vec<_> = (0..5).map(|_| ipam.allocate()).collect();
        assert_eq!(first, vec![Some(2), Some(3), Some(4), Some(5), Some(6)]);
        assert_eq!(ipam.allocate(), None);
        ipam.used.remove(&3);
        assert_eq!(ipam.allocate(), Some(3));
        ipam.used.remove(&2);
        ipam.used.remove(&5);
        assert_eq!(ipam.allocate(), Some(5), "continues after the last allocation");
        assert_eq!(ipam.allocate(), Some(2));
    }
}
