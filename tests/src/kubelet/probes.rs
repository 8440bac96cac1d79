//! Startup, liveness and readiness probes: exec, tcpSocket and httpGet, with kubelet's timing
//! and threshold rules.
//!
//! Probes are checked from where kubelet checks them: network probes from the host, through
//! the bridge, to the Pod's IP (so a Pod cut off the network fails them, as on a real node),
//! exec probes inside the container's namespaces. The HTTP probe speaks just enough HTTP/1.1
//! (one GET, read the status line) to avoid pulling an HTTP client into the sandbox; HTTPS and
//! gRPC probes are not supported and always fail, with a message saying so.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::images::{ImageMap, Program};
use super::process;

/// What a probe does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Exec(Program),
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Http {
        host: Option<String>,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Unsupported(String),
}

/// A probe with kubelet's defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// Resolves a probe of `container` (named ports, the image's executables).
pub fn parse(probe: &Probe, container: &Container, images: &ImageMap) -> ProbeSpec {
    let secs = |v: Option<i32>, default: i32| Duration::from_secs(u64::try_from(v.unwrap_or(default)).unwrap_or(0));
    let action = if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let image = container.image.clone().unwrap_or_default();
        match images.exec_program(&image, &command) {
            Ok(program) => Action::Exec(program),
            Err(err) => Action::Unsupported(err.to_string()),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        match port(&tcp.port, container) {
            Ok(port) => Action::Tcp {
                host: tcp.host.clone(),
                port,
            },
            Err(msg) => Action::Unsupported(msg),
        }
    } else if let Some(http) = &probe.http_get {
        let scheme = http.scheme.as_deref().unwrap_or("HTTP");
        match port(&http.port, container) {
            Ok(_) if !scheme.eq_ignore_ascii_case("HTTP") => {
                Action::Unsupported(format!("httpGet scheme {scheme} is not supported by the sandbox"))
            }
            Ok(port) => Action::Http {
                host: http.host.clone(),
                port,
                path: http
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            },
            Err(msg) => Action::Unsupported(msg),
        }
    } else if probe.grpc.is_some() {
        Action::Unsupported("grpc probes are not supported by the sandbox".into())
    } else {
        Action::Unsupported("probe has no handler".into())
    };
    ProbeSpec {
        action,
        initial_delay: secs(probe.initial_delay_seconds, 0),
        period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: u32::try_from(probe.success_threshold.unwrap_or(1)).unwrap_or(1).max(1),
        failure_threshold: u32::try_from(probe.failure_threshold.unwrap_or(3)).unwrap_or(3).max(1),
    }
}

/// A port by number or by the name of one of the container's ports.
pub fn port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Ok(n),
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("no container port named {name:?}")),
        },
    }
}

/// Consecutive-result bookkeeping: a probe's result only flips after `success_threshold`
/// successes or `failure_threshold` failures in a row.
#[derive(Clone, Debug)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    result: Option<bool>,
}

impl Tracker {
    pub fn new(spec: &ProbeSpec) -> Self {
        Self {
            success_threshold: spec.success_threshold,
            failure_threshold: spec.failure_threshold,
            successes: 0,
            failures: 0,
            result: None,
        }
    }

    /// Records one probe outcome; returns the settled result when it changes.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_threshold && self.result != Some(true) {
                self.result = Some(true);
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_threshold && self.result != Some(false) {
                self.result = Some(false);
                return Some(false);
            }
        }
        None
    }
}

/// Where a probe runs: the container's process and the Pod's address.
pub struct Target<'a> {
    pub pid: i32,
    pub pod_ip: IpAddr,
    pub env: &'a [(String, String)],
}

/// Runs a probe once. `Err` carries why it failed, for logs and events.
pub async fn check(spec: &ProbeSpec, target: &Target<'_>) -> Result<(), String> {
    match &spec.action {
        Action::Exec(program) => match process::exec_in(target.pid, program, target.env, spec.timeout).await {
            Ok(Some(0)) => Ok(()),
            Ok(Some(code)) => Err(format!("exec probe exited with {code}")),
            Ok(None) => Err(format!("exec probe timed out after {:?}", spec.timeout)),
            Err(err) => Err(err.to_string()),
        },
        Action::Tcp { host, port } => {
            let addr = address(host.as_deref(), target.pod_ip, *port)?;
            match tokio::time::timeout(spec.timeout, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("dial {addr}: {err}")),
                Err(_) => Err(format!("dial {addr}: timed out")),
            }
        }
        Action::Http {
            host,
            port,
            path,
            headers,
        } => {
            let addr = address(host.as_deref(), target.pod_ip, *port)?;
            match tokio::time::timeout(spec.timeout, http_get(addr, path, headers)).await {
                Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
                Ok(Ok(code)) => Err(format!("http probe returned {code}")),
                Ok(Err(err)) => Err(format!("http get {addr}{path}: {err}")),
                Err(_) => Err(format!("http get {addr}{path}: timed out")),
            }
        }
        Action::Unsupported(msg) => Err(msg.clone()),
    }
}

fn address(host: Option<&str>, pod_ip: IpAddr, port: u16) -> Result<SocketAddr, String> {
    let ip = match host.filter(|h| !h.is_empty()) {
        Some(h) => h
            .parse::<IpAddr>()
            .map_err(|_| format!("probe host {h:?} is not an IP address"))?,
        None => pod_ip,
    };
    Ok(SocketAddr::new(ip, port))
}

/// One `GET`, returning the status code.
async fn http_get(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("User-Agent: kube-probe/sandbox\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&buf).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad status line"))
}

fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, ExecAction, HTTPGetAction, TCPSocketAction};

    fn container() -> Container {
        Container {
            name: "c".into(),
            image: Some("ferrokv/node:1".into()),
            ports: Some(vec![ContainerPort {
                name: Some("admin".into()),
                container_port: 9121,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn images() -> ImageMap {
        ImageMap::new().with("ferrokv/node", "/bin/ferrokv-node")
    }

    #[test]
    fn defaults_are_kubelets() {
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(6379),
                host: None,
            }),
            ..Default::default()
        };
        let spec = parse(&probe, &container(), &images());
        assert_eq!(spec.action, Action::Tcp { host: None, port: 6379 });
        assert_eq!(spec.period, Duration::from_secs(10));
        assert_eq!(spec.timeout, Duration::from_secs(1));
        assert_eq!((spec.success_threshold, spec.failure_threshold), (1, 3));
        assert_eq!(spec.initial_delay, Duration::ZERO);
    }

    #[test]
    fn named_ports_exec_and_http() {
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("admin".into()),
                path: Some("/readyz".into()),
                ..Default::default()
            }),
            period_seconds: Some(2),
            ..Default::default()
        };
        let spec = parse(&probe, &container(), &images());
        assert_eq!(
            spec.action,
            Action::Http {
                host: None,
                port: 9121,
                path: "/readyz".into(),
                headers: vec![]
            }
        );
        assert_eq!(spec.period, Duration::from_secs(2));

        let probe = Probe {
            exec: Some(ExecAction {
                command: Some(vec!["ferrokv-node".into(), "check".into()]),
            }),
            ..Default::default()
        };
        let spec = parse(&probe, &container(), &images());
        assert_eq!(
            spec.action,
            Action::Exec(Program {
                path: "/bin/ferrokv-node".into(),
                args: vec!["check".into()]
            })
        );

        let bad = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("nope".into()),
                host: None,
            }),
            ..Default::default()
        };
        assert!(matches!(
            parse(&bad, &container(), &images()).action,
            Action::Unsupported(_)
        ));
        let https = Probe {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(1),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            parse(&https, &container(), &images()).action,
            Action::Unsupported(_)
        ));
    }

    #[test]
    fn tracker_flips_only_on_thresholds() {
        let spec = ProbeSpec {
            action: Action::Unsupported(String::new()),
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut t = Tracker::new(&spec);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the failure run");
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status_line(b"garbage\r\n"), None);
    }

    #[tokio::test]
    async fn network_probes_against_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let code = if String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ") {
                    200
                } else {
                    503
                };
                let _ = conn
                    .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let spec = |action| ProbeSpec {
            action,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 1,
        };
        let target = Target {
            pid: 0,
            pod_ip: "127.0.0.1".parse().unwrap(),
            env: &[],
        };
        let http = |path: &str| Action::Http {
            host: None,
            port,
            path: path.into(),
            headers: vec![],
        };
        assert_eq!(check(&spec(Action::Tcp { host: None, port }), &target).await, Ok(()));
        assert_eq!(check(&spec(http("/ok")), &target).await, Ok(()));
        assert!(check(&spec(http("/bad")), &target).await.is_err());
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            check(
                &spec(Action::Tcp {
                    host: None,
                    port: closed
                }),
                &target
            )
            .await
            .is_err()
        );
    }
}
