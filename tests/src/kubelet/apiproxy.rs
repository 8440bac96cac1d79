//! The `kubernetes` Service for Pods: a TCP forwarder from the bridge gateway to the apiserver.
//!
//! In-cluster clients (the operator, running as a Pod) find the API through
//! `KUBERNETES_SERVICE_HOST/PORT`; on a real node kube-proxy routes that ClusterIP to the
//! apiserver. The sandbox has no kube-proxy and its apiserver listens on loopback, which a Pod's
//! namespace cannot reach, so the kubelet forwards bytes from `gateway:port` to it. TLS is
//! end to end (the forwarder never sees plaintext): the apiserver's serving certificate must
//! name the gateway IP for in-cluster clients to verify it.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::tcp::{self, PeerLimit};

/// Bound on connecting to the apiserver: a connection that cannot be made in this time
/// frees its descriptors rather than waiting out the kernel's SYN retries.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts until cancelled; each connection is piped to `target` in its own task. Running out
/// of descriptors pauses accepting instead of ending the forwarder (see [`super::tcp`]).
pub async fn serve(listener: TcpListener, target: SocketAddr, cancel: CancellationToken) -> Result<(), super::Error> {
    info!(listen = ?listener.local_addr().ok(), %target, "forwarding pod api traffic");
    let limit = PeerLimit::default();
    loop {
        let (mut inbound, peer) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            accepted = tcp::accept(&listener, "pod api") => accepted,
        };
        let Some(slot) = limit.admit(peer.ip(), "pod api") else {
            continue;
        };
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut outbound = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    debug!(%peer, %err, "apiserver unreachable");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "apiserver did not accept in time");
                    return;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {
                    if let Err(err) = result {
                        debug!(%peer, %err, "api connection ended");
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_flow_both_ways() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf).await.unwrap();
            conn.write_all(&buf.map(|b| b.to_ascii_uppercase())).await.unwrap();
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, target, cancel.clone()));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut reply = [0u8; 4];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"PING");
        cancel.cancel();
        task.await.unwrap().unwrap();
    }
}
