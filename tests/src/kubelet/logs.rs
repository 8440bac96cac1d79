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
//! terminated container per container. `follow` streams what the run appends until the
//! container stops running (per the kubelet's Pod record) or restarts, or the client leaves.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
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

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Serves the API until cancelled; each connection in its own task. `sandbox_dir` is the
/// kubelet's directory (its `logs/` and the Pod records of `run/`).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    sandbox_dir: PathBuf,
    cancel: CancellationToken,
) -> Result<(), super::Error> {
    let logs_dir = sandbox_dir.join("logs");
    info!(listen = ?listener.local_addr().ok(), "serving the kubelet api");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = accepted.map_err(super::Error::KubeletApi)?;
        let (acceptor, logs_dir, cancel) = (acceptor.clone(), logs_dir.clone(), cancel.clone());
        let sandbox_dir = sandbox_dir.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(stream).await {
                Ok(stream) => stream,
                Err(err) => {
                    debug!(%peer, %err, "kubelet api handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let (logs_dir, sandbox_dir) = (logs_dir.clone(), sandbox_dir.clone());
                async move { Ok::<_, Infallible>(handle(&req, &logs_dir, &sandbox_dir)) }
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

fn handle(req: &Request<Incoming>, logs_dir: &Path, sandbox_dir: &Path) -> Response<Body> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
        *response.status_mut() = status;
        response
    };
    let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    let [root, namespace, pod, container] = segments.as_slice() else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("{} is not served here\n", req.uri().path()),
        );
    };
    if *root != "containerLogs" {
        return reply(
            StatusCode::NOT_FOUND,
            format!("{} is not served here\n", req.uri().path()),
        );
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
        Some(run) if query.follow && !query.previous => {
            let first = query.trim(run);
            let follow = Follow {
                path,
                offset: text.len() as u64,
                faults: super::Faults::new(sandbox_dir),
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
                done: false,
            };
            let head = futures::stream::once(async move { Ok(Frame::data(Bytes::from(first))) });
            let tail = futures::stream::unfold(follow, Follow::next);
            use futures::StreamExt as _;
            Response::new(StreamBody::new(head.chain(tail)).boxed_unsync())
        }
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

/// A followed log: where the next output starts.
struct Follow {
    path: PathBuf,
    offset: u64,
    faults: super::Faults,
    namespace: String,
    pod: String,
    container: String,
    done: bool,
}

impl Follow {
    /// The next piece of output, once there is one; `None` once the run is over.
    async fn next(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, Self)> {
        let marker = format!(" start of {} (pod ", self.container);
        loop {
            if self.done {
                return None;
            }
            let bytes = self.read_new().unwrap_or_default();
            if !bytes.is_empty() {
                self.offset += bytes.len() as u64;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                // A new run's header: the followed run is over.
                let next_run = text
                    .match_indices("--- ")
                    .map(|(at, _)| at)
                    .filter(|at| *at == 0 || text.as_bytes()[at - 1] == b'\n')
                    .find(|at| text[*at..].lines().next().is_some_and(|line| line.contains(&marker)));
                let text = match next_run {
                    Some(at) => {
                        self.done = true;
                        text[..at].to_owned()
                    }
                    None => text,
                };
                return Some((Ok(Frame::data(Bytes::from(text))), self));
            }
            let running = self
                .faults
                .record(&self.namespace, &self.pod)
                .is_ok_and(|r| r.containers.contains_key(&self.container));
            if !running {
                return None;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    fn read_new(&self) -> std::io::Result<Vec<u8>> {
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// The query parameters of a log request this kubelet understands.
#[derive(Debug, Default, PartialEq)]
struct LogQuery {
    previous: bool,
    follow: bool,
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
}

impl LogQuery {
    fn parse(query: &str) -> Result<Self, String> {
        let mut out = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("{key}={value} is not a number\n"))
            };
            match key {
                "previous" => out.previous = value == "true" || value == "1",
                "follow" => out.follow = value == "true" || value == "1",
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
        assert_eq!(
            select_run(first_run_of_new_pod, "main", false),
            Some("run 1 a\nrun 1 b\n")
        );
        assert_eq!(
            select_run(first_run_of_new_pod, "main", true),
            None,
            "an earlier pod's run is not this pod's previous container"
        );
        assert_eq!(select_run("", "main", false), None);
    }

    #[test]
    fn query_parameters() {
        let q = LogQuery::parse("previous=true&tailLines=1&timestamps=true").unwrap();
        assert_eq!(
            q,
            LogQuery {
                previous: true,
                follow: false,
                tail_lines: Some(1),
                limit_bytes: None
            }
        );
        assert_eq!(q.trim("a\nb\nc\n"), "c\n");
        let q = LogQuery::parse("limitBytes=3").unwrap();
        assert_eq!(q.trim("abcdef"), "abc");
        assert!(LogQuery::parse("follow=true").unwrap().follow);
        assert!(!LogQuery::parse("follow=false").unwrap().follow);
        assert!(LogQuery::parse("tailLines=x").is_err());
    }
}
