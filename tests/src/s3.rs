//! The sandbox's S3 endpoint: the `s3s` S3 protocol implementation over `s3s-fs` (objects as
//! files under a directory), with SigV4 authentication against one access key.
//!
//! Why in our own process and not a downloaded S3 server: it comes from crates.io like the rest
//! of the workspace, builds with it and needs no other registry. It runs as the `s3-serve`
//! subcommand of `ferrokv-sandbox` so that it outlives the `up` command like the other
//! components. Buckets are the root directory's subdirectories (`up` creates the sandbox's
//! bucket).

use std::net::SocketAddr;
use std::path::Path;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// s3s-fs's error type does not implement `std::error::Error`, so it is carried as text.
    #[error("failed to open the S3 root {root}: {reason}")]
    Root { root: String, reason: String },
    #[error("failed to listen on {addr}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Serve S3 on `listen` until the process is terminated.
pub async fn serve(root: &Path, listen: SocketAddr, access_key: &str, secret_key: &str) -> Result<(), S3Error> {
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| S3Error::Root {
        root: root.display().to_string(),
        reason: format!("{e:?}"),
    })?;
    let service = {
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        builder.build()
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| S3Error::Listen { addr: listen, source })?;
    tracing::info!(%listen, root = %root.display(), "s3 endpoint listening");
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and similar are transient: keep serving.
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let conn = http
            .serve_connection(TokioIo::new(socket), service.clone())
            .into_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "s3 connection ended with an error");
            }
        });
    }
}
