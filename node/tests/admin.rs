//! The admin HTTP port: `/metrics` in valid Prometheus text format with the
//! numbers INFO reports, `/healthz`, `/readyz`; and the real binary's memory
//! figures, which come from jemalloc.

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ferrokv_node::config::ServeArgs;
use ferrokv_node::db::{Expiry, now_ms};
use ferrokv_node::state::State;
use support::{Frame, RawClient};

/// An in-process server with the admin port on, and its shared state.
struct AdminServer {
    addr: SocketAddr,
    admin: SocketAddr,
    state: Arc<State>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn admin_server() -> AdminServer {
    let args = ServeArgs {
        port: Some(0),
        admin_port: Some(0),
        bind: Some(vec!["127.0.0.1".into()]),
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let running = ferrokv_node::server::start(&args).await.expect("server starts");
            let admin = running.admin_addr.expect("admin port is on");
            tx.send((running.addr(), admin, running.state.clone())).expect("send");
            let _ = tokio::task::spawn_blocking(move || {
                let _ = stop_rx.recv();
            })
            .await;
            running.shutdown().await;
        });
    });
    let (addr, admin, state) = rx.recv_timeout(Duration::from_secs(10)).expect("server address");
    AdminServer {
        addr,
        admin,
        state,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A plain HTTP/1.1 GET (no client library: the point is the wire format).
fn http_get(addr: SocketAddr, path: &str) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect admin port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).expect("status").parse().expect("status code");
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').expect("header line");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut body = Vec::new();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("utf8 body"),
    }
}

/// The value of an unlabelled sample, or of one with exactly `labels`.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `promtool check metrics` on the text, when promtool is installed.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED promtool validation: promtool is not installed (apt-get install prometheus)");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn health_and_readiness() {
    let s = admin_server();
    let r = http_get(s.admin, "/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = http_get(s.admin, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (200, "ready"));
    s.state.ready.store(false, std::sync::atomic::Ordering::Relaxed);
    let r = http_get(s.admin, "/readyz");
    assert_eq!((r.status, r.body.as_str()), (503, "not ready"));
    assert_eq!(http_get(s.admin, "/nope").status, 404);
}

#[test]
fn metrics_expose_commands_keys_memory_clients() {
    let s = admin_server();
    let mut c = RawClient::connect(s.addr);
    for _ in 0..5 {
        assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    }
    assert!(c.cmd(&["CONFIG", "SET", "maxmemory", "foo"]).is_error());
    {
        let now = now_ms();
        let mut ks = s.state.db.lock_all(now);
        for i in 0..10 {
            ks.set_str(format!("k{i}").as_bytes(), b"value", Expiry::Clear);
        }
        ks.set_str(b"soon", b"v", Expiry::At(now + 60_000));
        // Already expired: active or lazy expiry removes and counts it.
        ks.set_str(b"gone", b"v", Expiry::At(now.saturating_sub(1)));
    }
    let mut probe = RawClient::connect(s.addr);
    support::wait_for("the expired key to be collected", Duration::from_secs(5), || {
        (s.state.db.expired_keys.load(std::sync::atomic::Ordering::Relaxed) == 1).then_some(())
    });
    let _ = probe.cmd(&["PING"]);

    let r = http_get(s.admin, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    let m = &r.body;
    promtool_check(m);
    assert_eq!(sample(m, "ferrokv_keys"), Some(11.0), "{m}");
    assert_eq!(sample(m, "ferrokv_keys_with_expiry"), Some(1.0));
    assert_eq!(sample(m, "ferrokv_expired_keys_total"), Some(1.0));
    assert_eq!(sample(m, "ferrokv_evicted_keys_total"), Some(0.0));
    assert_eq!(sample(m, "ferrokv_connected_clients"), Some(2.0));
    // Idle: one connection thread takes connections, of one per usable core.
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(sample(m, "ferrokv_io_threads"), Some(cores));
    assert_eq!(sample(m, "ferrokv_io_threads_active"), Some(1.0));
    assert!(sample(m, "ferrokv_memory_used_bytes").unwrap() > 0.0);
    assert!(sample(m, "ferrokv_memory_dataset_bytes").unwrap() > 0.0);
    assert!(sample(m, "ferrokv_memory_rss_bytes").unwrap() > 1e6);
    assert!(sample(m, "ferrokv_net_input_bytes_total").unwrap() > 0.0);
    assert!(sample(m, "ferrokv_net_output_bytes_total").unwrap() > 0.0);
    assert_eq!(sample(m, "ferrokv_commands_total{command=\"ping\"}"), Some(6.0));
    assert_eq!(
        sample(m, "ferrokv_command_errors_total{command=\"config|set\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(m, "ferrokv_command_duration_seconds_count{command=\"ping\"}"),
        Some(6.0)
    );
    assert_eq!(
        sample(
            m,
            "ferrokv_command_duration_seconds_bucket{command=\"ping\",le=\"+Inf\"}"
        ),
        Some(6.0)
    );
    assert!(m.contains("# TYPE ferrokv_command_duration_seconds histogram"));
    // The same numbers as INFO.
    let Frame::Bulk(info) = c.cmd(&["INFO", "stats"]) else {
        panic!()
    };
    let info = String::from_utf8(info).unwrap();
    assert!(info.contains("expired_keys:1\r\n"), "{info}");
}

/// The real binary, with jemalloc as its allocator; killed (by PID) on drop.
struct Node {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_node() -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
        .args(["--port", "0", "--admin-port", "0", "--bind", "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferrokv-node");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut admin) = (None, None);
    while addr.is_none() || admin.is_none() {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("ferrokv-node exited before printing its addresses");
        }
        if let Some(a) = line.trim().strip_prefix("ferrokv-node listening on ") {
            addr = a.parse().ok();
        }
        if let Some(a) = line.trim().strip_prefix("ferrokv-node admin on http://") {
            admin = a.parse().ok();
        }
    }
    Node {
        child,
        addr: addr.unwrap(),
        admin: admin.unwrap(),
    }
}

#[test]
fn binary_reports_jemalloc_memory() {
    let node = spawn_node();
    let mut c = RawClient::connect(node.addr);
    let Frame::Bulk(info) = c.cmd(&["INFO", "memory"]) else {
        panic!()
    };
    let info = String::from_utf8(info).unwrap();
    let field = |name: &str| -> String {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")).map(String::from))
            .unwrap_or_else(|| panic!("{name} missing in {info}"))
    };
    assert_eq!(field("mem_allocator"), "jemalloc-5.3.0");
    let used: u64 = field("used_memory").parse().unwrap();
    let rss: u64 = field("used_memory_rss").parse().unwrap();
    // Allocated bytes of a running node: above the 1 MiB floor, below RSS.
    assert!(used > 1 << 20 && used < rss, "used {used} rss {rss}");
    let m = http_get(node.admin, "/metrics").body;
    promtool_check(&m);
    let metric_used = sample(&m, "ferrokv_memory_used_bytes").unwrap();
    assert!(metric_used > (1 << 20) as f64, "{metric_used}");
    // A large write shows at once, not after the allocator's next refresh
    // (INFO right before and right after, well within 100 ms of each other).
    let used_now = |c: &mut RawClient| -> u64 {
        let Frame::Bulk(info) = c.cmd(&["INFO", "memory"]) else {
            panic!()
        };
        let info = String::from_utf8(info).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let before = used_now(&mut c);
    let members: Vec<String> = (0..50_000).map(|i| format!("member-{i:08}")).collect();
    let mut sadd = vec!["SADD", "big"];
    sadd.extend(members.iter().map(String::as_str));
    assert_eq!(c.cmd(&sadd), Frame::Int(50_000));
    let after = used_now(&mut c);
    assert!(after > before + 2_000_000, "used_memory {before} -> {after}");
}
