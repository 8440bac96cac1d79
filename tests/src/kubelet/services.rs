//! ClusterIP Services without kube-proxy: a userspace proxy per Service port.
//!
//! Each TCP port of a Service with a cluster IP gets a listener on `clusterIP:port`, the cluster
//! IP being added (/32) to the host bridge. Pods reach it through their default route (the
//! bridge), the host reaches it directly, and every connection is piped to one ready endpoint of
//! the Service's EndpointSlices (round robin), which kube-controller-manager's EndpointSlice
//! controller keeps up to date from Pod readiness. This is kube-proxy's original userspace
//! mode: slower than iptables rules, but it needs no netfilter, and a sandbox moves little data.
//! `default/kubernetes` has no endpoints here (the apiserver is on loopback); it forwards to the
//! apiserver when one is configured.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Ctx;
use super::mounts::ServiceEntry;
use super::tcp::{self, PeerLimit};

/// How often listeners are reconciled with the Services.
const RESYNC: Duration = Duration::from_millis(500);

/// One proxied Service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    namespace: String,
    service: String,
    port_name: String,
}

pub(crate) async fn run(ctx: Arc<Ctx>, cancel: CancellationToken) -> Result<(), super::Error> {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector::reflector(
        services_writer,
        watcher(Api::<Service>::all(ctx.client.clone()), watcher::Config::default()).default_backoff(),
    );
    let slice_events = reflector::reflector(
        slices_writer,
        watcher(
            Api::<EndpointSlice>::all(ctx.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    );
    let feed = tokio::spawn(async move {
        tokio::join!(
            service_events.for_each(|_| async {}),
            slice_events.for_each(|_| async {})
        );
    });

    let bridge = ctx.network.config().bridge.clone();
    let mut listeners: BTreeMap<(Ipv4Addr, u16), (Target, JoinHandle<()>)> = BTreeMap::new();
    let mut addresses: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let state = services.state();
        let entries = service_entries(&state);
        {
            let mut hosts = ctx.hosts.lock();
            if hosts.set_services(entries) {
                hosts.write_all();
            }
        }
        let desired = desired_ports(&state);
        listeners.retain(|key, (target, task)| {
            let keep = desired.get(key) == Some(target) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let wanted_ips: BTreeSet<Ipv4Addr> = desired.keys().map(|(ip, _)| *ip).collect();
        for ip in addresses.difference(&wanted_ips).copied().collect::<Vec<_>>() {
            let _ = super::netns::set_address(&bridge, ip, false).await;
            addresses.remove(&ip);
        }
        for ((ip, port), target) in desired {
            if listeners.contains_key(&(ip, port)) {
                continue;
            }
            if !addresses.contains(&ip) {
                if let Err(err) = super::netns::set_address(&bridge, ip, true).await {
                    warn!(%ip, %err, "failed to add a service address");
                    continue;
                }
                addresses.insert(ip);
            }
            let listener = match TcpListener::bind((ip, port)).await {
                Ok(listener) => listener,
                Err(err) => {
                    debug!(%ip, port, %err, "service port not bound yet");
                    continue;
                }
            };
            info!(service = %format!("{}/{}", target.namespace, target.service), %ip, port, "proxying service port");
            let task = tokio::spawn(proxy(listener, target.clone(), slices.clone(), ctx.config.apiserver));
            listeners.insert((ip, port), (target, task));
        }
    }
    feed.abort();
    for (_, (_, task)) in listeners {
        task.abort();
    }
    for ip in addresses {
        let _ = super::netns::set_address(&bridge, ip, false).await;
    }
    Ok(())
}

/// The names Pods resolve Services by (see [`super::mounts::hosts_file`]).
fn service_entries(services: &[Arc<Service>]) -> Vec<ServiceEntry> {
    let mut entries: Vec<ServiceEntry> = services
        .iter()
        .filter_map(|service| {
            let ip = service.spec.as_ref()?.cluster_ip.as_deref()?.parse::<Ipv4Addr>().ok()?;
            Some(ServiceEntry {
                ip: ip.to_string(),
                name: service.name_any(),
                namespace: service.namespace()?,
            })
        })
        .collect();
    entries.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    entries
}

/// Every TCP port of every Service with a cluster IP.
fn desired_ports(services: &[Arc<Service>]) -> BTreeMap<(Ipv4Addr, u16), Target> {
    let mut desired = BTreeMap::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else { continue };
            desired.insert(
                (ip, number),
                Target {
                    namespace: service.namespace().unwrap_or_default(),
                    service: service.name_any(),
                    port_name: port.name.clone().unwrap_or_default(),
                },
            );
        }
    }
    desired
}

/// The ready endpoints of a Service port, from its EndpointSlices.
fn endpoints(slices: &Store<EndpointSlice>, target: &Target, apiserver: Option<SocketAddr>) -> Vec<SocketAddr> {
    if target.namespace == "default" && target.service == "kubernetes" {
        return apiserver.into_iter().collect();
    }
    let mut out = Vec::new();
    for slice in slices.state() {
        let owner = slice.labels().get("kubernetes.io/service-name");
        if slice.namespace().as_deref() != Some(&target.namespace) || owner != Some(&target.service) {
            continue;
        }
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == target.port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for endpoint in slice.endpoints.iter().flatten() {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, port));
                }
            }
        }
    }
    out.sort();
    out
}

async fn proxy(listener: TcpListener, target: Target, slices: Store<EndpointSlice>, apiserver: Option<SocketAddr>) {
    let next = Arc::new(AtomicUsize::new(0));
    let limit = PeerLimit::default();
    loop {
        let (mut inbound, peer) = tcp::accept(&listener, &target.service).await;
        let candidates = endpoints(&slices, &target, apiserver);
        if candidates.is_empty() {
            debug!(service = %target.service, %peer, "no ready endpoint, connection refused");
            continue;
        }
        let Some(slot) = limit.admit(peer.ip(), &target.service) else {
            continue;
        };
        let pick = candidates[next.fetch_add(1, Ordering::Relaxed) % candidates.len()];
        tokio::spawn(async move {
            let _slot = slot;
            let connect = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(pick)).await;
            let Ok(Ok(mut outbound)) = connect else {
                debug!(%pick, "service endpoint unreachable");
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}
