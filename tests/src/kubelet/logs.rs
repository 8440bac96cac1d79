//! The kubelet's API, as far as the sandbox needs it: container logs, for `kubectl logs`.
//!
//! `kubectl logs` asks the apiserver, which calls the kubelet of the Pod's node at the Node's
//! InternalIP and `daemonEndpoints.kubeletEndpoint.Port` over HTTPS:
//! `GET /containerLogs/{namespace}/{pod}/{container}?previous=…&tailLines=…&limitBytes=…`.
//! This serves that from the container log files ([`super::container::container_log`]).
//!
//! Why TLS with client certificates: the apiserver verifies the kubelet's serving certificate
//! (`--kubelet-certificate-authority`) and presents its own client certificate; a kubelet that
//! answered anyone would hand out every Pod's output (secrets printed by a careless process
//! included) to whoever reaches the bridge. Any client certificate of the sandbox CA is accepted:
//! only the apiserver and the sandbox's admin hold one, so no SubjectAccessReview is needed.
//!
//! A log file holds every run of a container (and of earlier Pods of the same name), each run
//! after a `--- <time> start of <container> (pod <uid>)` line. The current run is the last one;
//! `previous` is the run before it if it belongs to the same Pod, as a kubelet keeps exactly one
//! terminated container per container. `follow` is refused rather than answered with a
//! snapshot, so that `kubectl logs -f` fails plainly instead of silently not following.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read {path}: {source}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
}

/// The certificate the kubelet serves and the CA whose client certificates it accepts.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// The TLS server configuration of the kubelet's API: client certificates required.
pub fn tls_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    let pem = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Pem { path, source }
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem(&files.cert))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem(&files.key))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&files.client_ca).map_err(pem(&files.client_ca))? {
        roots
            .add(ca.map_err(pem(&files.client_ca))?)
            .map_err(|e| Error::Tls(e.to_string()))?;
    }
    // The ring provider explicitly: a process with both ring and aws-lc-rs compiled in has no
    // unambiguous default (see `crate::install_crypto_provider`).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the API until cancelled; each connection in its own task.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    logs_dir: PathBuf,
    cancel: CancellationToken,
) -> Result<(), super::Error> {
    info!(listen = ?listener.local_addr().ok(), "serving the kubelet api");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = accepted.map_err(super::Error::KubeletApi)?;
        let (acceptor, logs_dir, cancel) = (acceptor.clone(), logs_dir.clone(), cancel.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(err) => {
                    debug!(%peer, %err, "kubelet api handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let logs_dir = logs_dir.clone();
                async move { Ok::<_, Infallible>(handle(&req, &logs_dir)) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = builder.serve_connection(TokioIo::new(stream), service) => {
                    if let Err(err) = result {
                        debug!(%peer, %err, "kubelet api connection ended");
                    }
                }
            }
        });
    }
}

fn handle(req: &Request<Incoming>, logs_dir: &Path) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
    };
    let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let [root, namespace, pod, container] = segments.as_slice() else {
        return reply(StatusCode::NOT_FOUND, format!("{} is not served here\n", req.uri().path()));
    };
    if *root != "containerLogs" {
        return reply(StatusCode::NOT_FOUND, format!("{} is not served here\n", req.uri().path()));
    }
    let query = match LogQuery::parse(req.uri().query().unwrap_or_default()) {
        Ok(query) => query,
        Err(message) => return reply(StatusCode::BAD_REQUEST, message),
    };
    let path = super::container::container_log(logs_dir, namespace, pod, container);
    let text = match std::fs::read(&path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("no logs of container {container:?} in pod {namespace}/{pod}: {err}\n"),
            );
        }
    };
    match select_run(&text, container, query.previous) {
        Some(run) => reply(StatusCode::OK, query.trim(run)),
        None if query.previous => reply(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container {container:?} in pod {pod:?} not found\n"),
        ),
        None => reply(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} has not started\n"),
        ),
    }
}

/// The query parameters of a log request this kubelet understands.
#[derive(Debug, Default, PartialEq)]
struct LogQuery {
    previous: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

impl LogQuery {
    fn parse(query: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || value.parse::<usize>().map_err(|_| format!("{key}={value} is not a number\n"));
            match key {
                "previous" => out.previous = value == "true" || value == "1",
                "follow" if value == "true" || value == "1" => {
                    return Err("follow is not supported by the sandbox kubelet\n".to_owned());
                }
                "tailLines" => out.tail_lines = Some(number()?),
                "limitBytes" => out.limit_bytes = Some(number()?),
                // timestamps, sinceSeconds, sinceTime: the files have no per-line times; the
                // whole run is returned.
                _ => {}
            }
        }
        Ok(out)
    }

    fn trim(&self, run: &str) -> String {
        let mut text = run;
        if let Some(n) = self.tail_lines {
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let skip: usize = lines.iter().take(lines.len().saturating_sub(n)).map(|l| l.len()).sum();
            text = &text[skip..];
        }
        let mut text = text.to_owned();
        if let Some(limit) = self.limit_bytes
            && text.len() > limit
        {
            let mut cut = limit;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        text
    }
}

/// The current run's output (or the previous one's, if it belongs to the same Pod) of a log file,
/// without the kubelet's header lines.
fn select_run<'a>(text: &'a str, container: &str, previous: bool) -> Option<&'a str> {
    let marker = format!(" start of {container} (pod ");
    // (uid, start of the run's output) of each run, in order.
    let mut runs: Vec<(&str, usize, usize)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let end = offset + line.len();
        let header = line.trim_end();
        if header.starts_with("--- ")
            && let Some(at) = header.find(&marker)
            && let Some(uid) = header[at + marker.len()..].strip_suffix(')')
        {
            if let Some(last) = runs.last_mut() {
                last.2 = offset;
            }
            runs.push((uid, end, text.len()));
        }
        offset = end;
    }
    let (uid, start, end) = *runs.last()?;
    if !previous {
        return Some(&text[start..end]);
    }
    let (prev_uid, start, end) = *runs.iter().rev().nth(1)?;
    (prev_uid == uid).then(|| &text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "--- 2026-01-01T00:00:00Z start of main (pod old)\nold pod\n\
        --- 2026-01-01T00:00:01Z start of main (pod new)\nrun 1 a\nrun 1 b\n\
        --- 2026-01-01T00:00:02Z start of main (pod new)\nrun 2 a\n--- not a header\nrun 2 b\n";

    #[test]
    fn current_and_previous_runs_of_the_same_pod() {
        assert_eq!(
            select_run(LOG, "main", false),
            Some("run 2 a\n--- not a header\nrun 2 b\n")
        );
        assert_eq!(select_run(LOG, "main", true), Some("run 1 a\nrun 1 b\n"));
        let first_run_of_new_pod = &LOG[..LOG.find("--- 2026-01-01T00:00:02Z").unwrap()];
        assert_eq!(select_run(first_run_of_new_pod, "main", false), Some("run 1 a\nrun 1 b\n"));
        assert_eq!(
            select_run(first_run_of_new_pod, "main", true),
            None,
            "an earlier pod's run is not this pod's previous container"
        );
        assert_eq!(select_run("", "main", false), None);
    }

    #[test]
    fn query_tail_limit_and_follow() {
        let q = LogQuery::parse("previous=true&tailLines=1&timestamps=true").unwrap();
        assert_eq!(
            q,
            LogQuery {
                previous: true,
                tail_lines: Some(1),
                limit_bytes: None
            }
        );
        assert_eq!(q.trim("a\nb\nc\n"), "c\n");
        let q = LogQuery::parse("limitBytes=3").unwrap();
        assert_eq!(q.trim("abcdef"), "abc");
        assert!(LogQuery::parse("follow=true").is_err());
        assert!(LogQuery::parse("follow=false").is_ok());
        assert!(LogQuery::parse("tailLines=x").is_err());
    }
}
