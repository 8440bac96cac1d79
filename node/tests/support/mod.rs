//! Test support shared by the node's black-box tests: an in-process ferrokv
//! server on port 0, a real Redis 7 (Debian's `redis-server`) on a free port
//! for differential tests, and a raw RESP client that compares replies
//! byte-for-byte-level (as parsed frames).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrokv_node::config::ServeArgs;

/// A ferrokv server running on its own runtime thread; stops on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The server's shared state, for tests that must observe what no
    /// command shows (e.g. that a client is blocked before the next step).
    pub state: std::sync::Arc<ferrokv_node::state::State>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start ferrokv with default settings on 127.0.0.1:0.
pub fn server() -> Server {
    server_with(ServeArgs::default())
}

/// Start ferrokv with the given flags (port and bind default to 127.0.0.1:0).
pub fn server_with(mut args: ServeArgs) -> Server {
    if args.port.is_none() {
        args.port = Some(0);
    }
    if args.bind.is_none() {
        args.bind = Some(vec!["127.0.0.1".into()]);
    }
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let running = ferrokv_node::server::start(&args).await.expect("server starts");
            addr_tx
                .send((running.addr(), running.admin_addr, running.state.clone()))
                .expect("send addr");
            // Wait for the stop signal without blocking the runtime.
            let _ = tokio::task::spawn_blocking(move || {
                let _ = stop_rx.recv();
            })
            .await;
            running.shutdown().await;
        });
    });
    let (addr, admin, state) = addr_rx.recv_timeout(Duration::from_secs(10)).expect("server address");
    Server {
        addr,
        admin,
        state,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// A free TCP port on loopback (racy by nature; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A real Redis 7 server process, killed (by PID) on drop.
pub struct RedisServer {
    pub addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("ferrokv-test-{tag}-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

/// Start Debian's `redis-server` (the reference). Extra args are appended.
pub fn redis_server(extra: &[&str]) -> RedisServer {
    let dir = TempDir::new("redis");
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--dir", dir.0.to_str().expect("utf8 path")])
        .args(["--enable-debug-command", "yes"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("redis-server must be installed (scripts/install-test-deps.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        while Instant::now() < deadline {
            if is_redis_child(addr, child.id()) {
                return RedisServer { addr, child, _dir: dir };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("redis-server did not start");
}

/// Does our redis-server child answer on `addr`? The port may have been
/// taken by another test's server in the meantime (then the child fails to
/// bind), and a probe may hit a server that is going away: never panic here.
fn is_redis_child(addr: SocketAddr, pid: u32) -> bool {
    let Ok(mut c) = RawClient::try_connect(addr) else {
        return false;
    };
    let mut ask = |args: &[&str]| -> Option<Frame> {
        c.writer.write_all(&RawClient::encode(args)).ok()?;
        c.try_read().ok()
    };
    let ours = format!("process_id:{pid}\r\n");
    ask(&["PING"]) == Some(Frame::Simple("PONG".into()))
        && matches!(ask(&["INFO", "server"]), Some(Frame::Bulk(b)) if String::from_utf8_lossy(&b).contains(&ours))
}

/// A parsed RESP2/RESP3 frame, for comparing replies of two servers.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    NullArray,
    Array(Vec<Frame>),
    Map(Vec<(Frame, Frame)>),
    Set(Vec<Frame>),
    Double(String),
    Bool(bool),
    Verbatim(Vec<u8>),
    Push(Vec<Frame>),
    BigNumber(String),
}

impl Frame {
    pub fn bulk(s: &str) -> Frame {
        Frame::Bulk(s.as_bytes().to_vec())
    }
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }
    /// Order-insensitive form (sorts arrays/sets recursively), for replies whose
    /// order Redis leaves unspecified (SMEMBERS, HGETALL, KEYS ...).
    pub fn sorted(&self) -> Frame {
        match self {
            Frame::Array(v) | Frame::Set(v) => {
                let mut v: Vec<Frame> = v.iter().map(Frame::sorted).collect();
                v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                Frame::Array(v)
            }
            Frame::Map(v) => {
                let mut v: Vec<(Frame, Frame)> = v.iter().map(|(a, b)| (a.sorted(), b.sorted())).collect();
                v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                Frame::Map(v)
            }
            f => f.clone(),
        }
    }
}

/// A minimal RESP client that returns parsed frames (no interpretation).
pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        Self::try_connect(addr).expect("connect")
    }

    pub fn try_connect(addr: SocketAddr) -> std::io::Result<RawClient> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(RawClient {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    pub fn set_timeout(&mut self, t: Duration) {
        let _ = self.writer.set_read_timeout(Some(t));
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let b = Self::encode(args);
        self.send_raw(&b);
    }

    /// Send a command and read one reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        self.send(args);
        self.read()
    }

    pub fn read(&mut self) -> Frame {
        self.try_read().expect("read reply")
    }

    pub fn try_read(&mut self) -> std::io::Result<Frame> {
        read_frame(&mut self.reader)
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if line.ends_with(b"\r\n") {
        line.truncate(line.len() - 2);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_frame(r: &mut impl BufRead) -> std::io::Result<Frame> {
    let line = read_line(r)?;
    let (t, rest) = line.split_at(1);
    let n = || {
        rest.parse::<i64>()
            .map_err(|_| std::io::Error::other(format!("bad length line {line:?}")))
    };
    Ok(match t {
        "+" => Frame::Simple(rest.to_string()),
        "-" => Frame::Error(rest.to_string()),
        ":" => Frame::Int(n()?),
        "_" => Frame::Null,
        "#" => Frame::Bool(rest == "t"),
        "," => Frame::Double(rest.to_string()),
        "(" => Frame::BigNumber(rest.to_string()),
        "$" | "=" => {
            let len = n()?;
            if len < 0 {
                Frame::Null
            } else {
                let mut buf = vec![0; len as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                if t == "=" {
                    Frame::Verbatim(buf)
                } else {
                    Frame::Bulk(buf)
                }
            }
        }
        "*" | "~" | ">" => {
            let len = n()?;
            if len < 0 {
                Frame::NullArray
            } else {
                let mut v = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    v.push(read_frame(r)?);
                }
                match t {
                    "*" => Frame::Array(v),
                    "~" => Frame::Set(v),
                    _ => Frame::Push(v),
                }
            }
        }
        "%" => {
            let len = n()?;
            let mut v = Vec::with_capacity(len as usize);
            for _ in 0..len {
                let k = read_frame(r)?;
                let val = read_frame(r)?;
                v.push((k, val));
            }
            Frame::Map(v)
        }
        _ => {
            return Err(std::io::Error::other(format!("unknown frame type in {line:?}")));
        }
    })
}

/// Poll `f` until it returns `Some` or the deadline passes (no fixed sleeps).
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the same commands against ferrokv and Redis and compares replies.
pub struct Diff {
    pub ours: RawClient,
    pub theirs: RawClient,
    pub _server: Server,
    pub _redis: RedisServer,
}

impl Diff {
    pub fn new() -> Diff {
        let server = server();
        let redis = redis_server(&[]);
        Diff {
            ours: RawClient::connect(server.addr),
            theirs: RawClient::connect(redis.addr),
            _server: server,
            _redis: redis,
        }
    }

    /// Both replies, without comparing.
    pub fn both(&mut self, args: &[&str]) -> (Frame, Frame) {
        (self.ours.cmd(args), self.theirs.cmd(args))
    }

    /// Replies must be equal; returns ours.
    #[track_caller]
    pub fn check(&mut self, args: &[&str]) -> Frame {
        let (a, b) = self.both(args);
        assert_eq!(a, b, "reply to {args:?} differs (left: ferrokv, right: redis)");
        a
    }

    /// Replies must be equal up to ordering of array elements.
    #[track_caller]
    pub fn check_unordered(&mut self, args: &[&str]) -> Frame {
        let (a, b) = self.both(args);
        assert_eq!(
            a.sorted(),
            b.sorted(),
            "reply to {args:?} differs (left: ferrokv, right: redis)"
        );
        a
    }

    /// Every case is compared, and all differences are reported together.
    #[track_caller]
    pub fn check_all(&mut self, cases: &[&[&str]]) {
        let mut diffs = Vec::new();
        for args in cases {
            let (a, b) = self.both(args);
            if a != b {
                diffs.push(format!("{args:?}\n  ferrokv: {a:?}\n  redis:   {b:?}"));
            }
        }
        assert!(
            diffs.is_empty(),
            "{} replies differ:\n{}",
            diffs.len(),
            diffs.join("\n")
        );
    }

    /// Both must reply with an error; messages must match too.
    #[track_caller]
    pub fn check_error(&mut self, args: &[&str]) {
        let a = self.check(args);
        assert!(a.is_error(), "expected an error for {args:?}, got {a:?}");
    }
}

/// The real `ferrokv-node` binary as a child process; killed (by PID) on
/// drop unless it already exited.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Binary {
    /// Start the binary on a free loopback port with `args` and wait until
    /// it listens.
    pub fn start(args: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ferrokv-node");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("ferrokv-node listening on ") {
                    let _ = tx.send(a.trim().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("ferrokv-node did not start")
            .parse()
            .expect("address");
        Binary { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` (a `kill` signal name such as "TERM") to this process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} {}", self.pid());
    }

    /// Wait up to `limit` for the process to exit; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        wait_for("ferrokv-node to exit", limit, || {
            self.child.try_wait().expect("try_wait")
        })
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
