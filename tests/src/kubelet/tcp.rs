//! TCP plumbing of the kubelet's forwarders (the Pods' API forwarder and the Service proxies):
//! an accept that survives running out of file descriptors, and a per-peer connection cap.
//!
//! Both forwarders hold two descriptors per connection inside the kubelet process, so a Pod
//! that opens connections without bound (a client stuck in a reconnect loop, two operators
//! fighting over one object) would otherwise exhaust the kubelet's descriptors. An accept error
//! must then not end the forwarder (that used to stop the whole kubelet, and with it every
//! Pod), and one Pod must not be able to starve the others: past [`PER_PEER_LIMIT`] open
//! connections a peer's new ones are closed at once and the kubelet says so in its log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

/// Open connections one peer address may hold through one forwarder. A kube-rs or client-go
/// controller needs a few watches plus its concurrent requests: far below this.
pub const PER_PEER_LIMIT: usize = 512;

/// How long accepting pauses after a resource error (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
/// condition lasts until connections close, and retrying at once would spin a core.
const RESOURCE_PAUSE: Duration = Duration::from_millis(100);

/// The next accepted connection. Errors are logged (at most once a second) and waited out:
/// per-connection errors (the peer reset before accept) are skipped, resource errors pause.
pub async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    let mut last_warning: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err) => {
                if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    warn!(forwarder = what, %err, "accept failed; waiting");
                    last_warning = Some(Instant::now());
                }
                if is_resource_error(&err) {
                    tokio::time::sleep(RESOURCE_PAUSE).await;
                }
            }
        }
    }
}

fn is_resource_error(err: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux).
    matches!(err.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// Counts open connections per peer IP; a [`Slot`] is one of them until dropped.
#[derive(Clone, Default)]
pub struct PeerLimit {
    open: Arc<Mutex<HashMap<IpAddr, PeerCount>>>,
}

#[derive(Default)]
struct PeerCount {
    open: usize,
    /// Warned about this crossing of the limit already: a runaway peer would flood the log.
    warned: bool,
}

/// One admitted connection; dropping it frees the peer's slot.
pub struct Slot {
    open: Arc<Mutex<HashMap<IpAddr, PeerCount>>>,
    peer: IpAddr,
}

impl PeerLimit {
    /// A slot for `peer`, or `None` (with a warning) when it already holds the limit.
    pub fn admit(&self, peer: IpAddr, what: &str) -> Option<Slot> {
        let mut open = self.open.lock();
        let count = open.entry(peer).or_default();
        if count.open >= PER_PEER_LIMIT {
            if !count.warned {
                warn!(forwarder = what, %peer, limit = PER_PEER_LIMIT, "peer at its connection limit; refusing more");
                count.warned = true;
            }
            return None;
        }
        count.open += 1;
        Some(Slot {
            open: self.open.clone(),
            peer,
        })
    }

    #[cfg(test)]
    fn open(&self, peer: IpAddr) -> usize {
        self.open.lock().get(&peer).map_or(0, |c| c.open)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(count) = open.get_mut(&self.peer) {
            count.open = count.open.saturating_sub(1);
            count.warned = false;
            if count.open == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_capped_and_its_slots_come_back() {
        let limit = PeerLimit::default();
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let b: IpAddr = "10.0.0.3".parse().unwrap();
        let mut slots: Vec<Slot> = (0..PER_PEER_LIMIT).map(|_| limit.admit(a, "t").unwrap()).collect();
        assert!(limit.admit(a, "t").is_none(), "past the limit");
        assert!(limit.admit(a, "t").is_none(), "still past it");
        assert!(limit.admit(b, "t").is_some(), "another peer is not affected");
        slots.pop();
        let again = limit.admit(a, "t");
        assert!(again.is_some(), "a freed slot is reusable");
        assert!(limit.admit(a, "t").is_none());
        drop(again);
        slots.clear();
        assert_eq!(limit.open(a), 0, "every slot came back");
    }

    #[test]
    fn resource_errors_are_told_apart() {
        assert!(is_resource_error(&std::io::Error::from_raw_os_error(24)));
        assert!(!is_resource_error(&std::io::Error::from_raw_os_error(103)));
    }
}
