//! Black-box tests of the wire protocol: malformed requests get Redis 7.0.15's
//! exact error and the connection is closed, hostile lengths cost nothing,
//! garbage on one connection does not disturb another, deep pipelines and
//! inline commands work, and random bytes never crash the server.
//!
//! Where Redis is the reference, the same bytes go to a real `redis-server`
//! and both transcripts (bytes received, closed or not) must be identical;
//! every case also states the expected reply, so a test still fails when both
//! servers change together.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrokv_node::config::ServeArgs;
use proptest::prelude::*;
use support::{Frame, RawClient, redis_server, server, server_with};

const MULTIBULK: &str = "-ERR Protocol error: invalid multibulk length\r\n";
const BULK: &str = "-ERR Protocol error: invalid bulk length\r\n";
const QUOTES: &str = "-ERR Protocol error: unbalanced quotes in request\r\n";

/// What a server did with some bytes: everything it sent back, and whether it
/// closed the connection (within the deadline).
#[derive(Debug, PartialEq, Eq)]
struct Transcript {
    reply: String,
    closed: bool,
}

/// Send `input` on a fresh connection and collect the reply until the server
/// closes the connection or sends nothing for `quiet`.
fn exchange(addr: SocketAddr, input: &[u8], quiet: Duration) -> Transcript {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.write_all(input).expect("write");
    s.set_read_timeout(Some(quiet)).expect("timeout");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    Transcript {
        reply: String::from_utf8_lossy(&reply).into_owned(),
        closed,
    }
}

/// Inputs Redis 7.0.15 rejects with a protocol error, and the error it sends.
fn protocol_error_cases() -> Vec<(Vec<u8>, String)> {
    let mut cases: Vec<(Vec<u8>, String)> = vec![
        // Multibulk count: not a number, signs and spaces, beyond INT_MAX / i64.
        (b"*abc\r\n".to_vec(), MULTIBULK.into()),
        (b"*\r\n".to_vec(), MULTIBULK.into()),
        (b"* 1\r\n".to_vec(), MULTIBULK.into()),
        (b"*1 \r\n".to_vec(), MULTIBULK.into()),
        (b"*+1\r\n".to_vec(), MULTIBULK.into()),
        (b"*2147483648\r\n".to_vec(), MULTIBULK.into()),
        (b"*99999999999\r\n".to_vec(), MULTIBULK.into()),
        (b"*9223372036854775808\r\n".to_vec(), MULTIBULK.into()),
        // Bulk length: not a number, negative, above proto-max-bulk-len (512mb).
        (b"*1\r\n$abc\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$-1\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$-2\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$+4\r\nPING\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$4 \r\nPING\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$536870913\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$2147483648\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$99999999999\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$9223372036854775808\r\n".to_vec(), BULK.into()),
        (b"*1\r\n$-9223372036854775808\r\n".to_vec(), BULK.into()),
        // Something other than a bulk inside a multibulk.
        (
            b"*1\r\n:1\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got ':'\r\n".into(),
        ),
        (
            b"*1\r\nPING\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got 'P'\r\n".into(),
        ),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n*1\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got '*'\r\n".into(),
        ),
        // Inline requests with unbalanced quotes.
        (b"SET \"abc\r\n".to_vec(), QUOTES.into()),
        (b"SET 'a\r\n".to_vec(), QUOTES.into()),
        (b"SET \"a\"b\r\n".to_vec(), QUOTES.into()),
        (b"ECHO 'a'b\r\n".to_vec(), QUOTES.into()),
        // A valid request first: it is answered, then the error.
        (
            b"PING\r\n*1\r\n:1\r\n".to_vec(),
            "+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n".into(),
        ),
        (
            b"*1\r\n$4\r\nPING\r\n*abc\r\n".to_vec(),
            format!("+PONG\r\n{MULTIBULK}"),
        ),
    ];
    // Header lines and inline requests longer than 64 KiB without a newline.
    let mut inline = vec![b'a'; 70_000];
    cases.push((inline.clone(), "-ERR Protocol error: too big inline request\r\n".into()));
    inline[0] = b'*';
    inline[1..].fill(b'1');
    cases.push((inline, "-ERR Protocol error: too big mbulk count string\r\n".into()));
    let mut bulk = b"*1\r\n$".to_vec();
    bulk.extend(std::iter::repeat_n(b'1', 70_000));
    cases.push((bulk, "-ERR Protocol error: too big bulk count string\r\n".into()));
    cases
}

#[test]
fn protocol_errors_match_redis_and_close_the_connection() {
    let ours = server();
    let redis = redis_server(&[]);
    let quiet = Duration::from_secs(5);
    for (input, expected) in protocol_error_cases() {
        let shown = String::from_utf8_lossy(&input[..input.len().min(40)]).into_owned();
        let theirs = exchange(redis.addr, &input, quiet);
        let got = exchange(ours.addr, &input, quiet);
        assert_eq!(
            theirs,
            Transcript {
                reply: expected.clone(),
                closed: true
            },
            "reference Redis changed its answer to {shown:?}"
        );
        assert_eq!(got, theirs, "ferrokv differs from Redis for {shown:?}");
    }
    // The server is still fine.
    assert_eq!(
        RawClient::connect(ours.addr).cmd(&["PING"]),
        Frame::Simple("PONG".into())
    );
}

/// Before AUTH, Redis limits multibulk counts to 10 and bulks to 16 KiB.
#[test]
fn unauthenticated_limits_match_redis() {
    let ours = server_with(ServeArgs {
        requirepass: Some("pw".into()),
        ..Default::default()
    });
    // Set the password after start: `redis_server` waits for a PONG.
    let redis = redis_server(&[]);
    assert_eq!(
        RawClient::connect(redis.addr).cmd(&["CONFIG", "SET", "requirepass", "pw"]),
        Frame::Simple("OK".into())
    );
    let quiet = Duration::from_secs(5);
    let closing = [
        (
            &b"*11\r\n"[..],
            "-ERR Protocol error: unauthenticated multibulk length\r\n",
        ),
        (
            &b"*1\r\n$16385\r\n"[..],
            "-ERR Protocol error: unauthenticated bulk length\r\n",
        ),
    ];
    for (input, expected) in closing {
        let theirs = exchange(redis.addr, input, quiet);
        assert_eq!(theirs.reply, expected);
        assert!(theirs.closed);
        assert_eq!(exchange(ours.addr, input, quiet), theirs);
    }
    // At the limits, and after AUTH, nothing is refused (the request is just incomplete).
    let quiet = Duration::from_millis(300);
    for input in [
        &b"*10\r\n"[..],
        b"*1\r\n$16384\r\n",
        b"PING\r\n",
        b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*11\r\n",
        b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$16385\r\n",
    ] {
        let theirs = exchange(redis.addr, input, quiet);
        assert!(!theirs.closed, "{input:?}");
        assert_eq!(exchange(ours.addr, input, quiet), theirs, "{input:?}");
    }
}

/// Redis parses lengths with `string2ll`, which refuses leading zeros and "-0".
#[test]
fn lengths_with_leading_zeros_are_refused_like_redis() {
    let ours = server();
    let redis = redis_server(&[]);
    let quiet = Duration::from_secs(5);
    for input in [
        &b"*01\r\n$4\r\nPING\r\n"[..],
        b"*-0\r\nPING\r\n",
        b"*1\r\n$04\r\nPING\r\n",
        b"*1\r\n$-0\r\n",
    ] {
        let theirs = exchange(redis.addr, input, quiet);
        assert!(
            theirs.closed && theirs.reply.starts_with("-ERR Protocol error"),
            "{theirs:?}"
        );
        assert_eq!(exchange(ours.addr, input, quiet), theirs, "{input:?}");
    }
}

/// Requests that are odd but valid: empty and negative multibulks are skipped,
/// blank inline lines are ignored, a bare LF ends an inline request.
#[test]
fn odd_but_valid_requests_match_redis() {
    let ours = server();
    let redis = redis_server(&[]);
    let quiet = Duration::from_millis(300);
    let cases: [(&[u8], &str); 9] = [
        (b"*0\r\nPING\r\n", "+PONG\r\n"),
        (b"*-1\r\nPING\r\n", "+PONG\r\n"),
        (b"*-5\r\nPING\r\n", "+PONG\r\n"),
        (b"\r\n   \r\n\n\nPING\n", "+PONG\r\n"),
        (b"PING\nPING\r\n", "+PONG\r\n+PONG\r\n"),
        (
            b"*1\r\n$0\r\n\r\n",
            "-ERR unknown command '', with args beginning with: \r\n",
        ),
        (b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", "$0\r\n\r\n"),
        // Binary-safe bulk: CR, LF and NUL inside an argument.
        (b"*2\r\n$4\r\nECHO\r\n$5\r\na\r\n\0b\r\n", "$5\r\na\r\n\0b\r\n"),
        // Lengths at the limits are accepted and just wait for the data.
        (b"*1\r\n$536870912\r\n", ""),
    ];
    for (input, expected) in cases {
        let theirs = exchange(redis.addr, input, quiet);
        assert_eq!(
            theirs,
            Transcript {
                reply: expected.into(),
                closed: false
            },
            "reference Redis changed its answer to {input:?}"
        );
        assert_eq!(exchange(ours.addr, input, quiet), theirs, "{input:?}");
    }
}

#[test]
fn inline_commands_match_redis() {
    let ours = server();
    let redis = redis_server(&[]);
    let quiet = Duration::from_millis(300);
    let cases: [(&[u8], &str); 8] = [
        (b"PING\r\n", "+PONG\r\n"),
        (b"ping hello\r\n", "$5\r\nhello\r\n"),
        (b"ECHO \"a b\"\r\n", "$3\r\na b\r\n"),
        (b"ECHO \"a\\tb\\n\"\r\n", "$4\r\na\tb\n\r\n"),
        (b"ECHO \"\\x41\\x4a\"\r\n", "$2\r\nAJ\r\n"),
        (b"ECHO \"\\x4\"\r\n", "$2\r\nx4\r\n"),
        (b"ECHO 'it\\'s'\r\n", "$4\r\nit's\r\n"),
        (b"ECHO a b\r\n", "-ERR wrong number of arguments for 'echo' command\r\n"),
    ];
    for (input, expected) in cases {
        let theirs = exchange(redis.addr, input, quiet);
        assert_eq!(
            theirs,
            Transcript {
                reply: expected.into(),
                closed: false
            },
            "reference Redis changed its answer to {input:?}"
        );
        assert_eq!(exchange(ours.addr, input, quiet), theirs, "{input:?}");
    }
}

#[test]
fn pipeline_of_ten_thousand_commands() {
    let s = server();
    let n = 10_000;
    let mut input = Vec::new();
    for i in 0..n {
        // Mix multibulk and inline requests in one stream.
        if i % 3 == 0 {
            input.extend_from_slice(format!("ECHO m{i}\r\n").as_bytes());
        } else {
            input.extend_from_slice(&RawClient::encode(&["ECHO", &format!("m{i}")]));
        }
    }
    input.extend_from_slice(b"PING\r\n");
    let sock = TcpStream::connect(s.addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut writer = sock.try_clone().expect("clone socket");
    // Write from another thread: the server answers while we are still sending,
    // and neither side may block the other on full socket buffers.
    let t = std::thread::spawn(move || writer.write_all(&input));
    let mut r = BufReader::new(sock);
    for i in 0..n {
        assert_eq!(
            read_frame(&mut r).expect("reply"),
            Frame::bulk(&format!("m{i}")),
            "reply {i}"
        );
    }
    assert_eq!(read_frame(&mut r).expect("reply"), Frame::Simple("PONG".into()));
    t.join().expect("writer thread").expect("write");
}

/// Read one RESP2/RESP3 reply. Kept apart from `support::RawClient` because
/// these tests need to read from sockets they also write from other threads.
fn read_frame(r: &mut impl BufRead) -> std::io::Result<Frame> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    if !line.ends_with(b"\r\n") {
        return Err(std::io::Error::other(format!("reply line without CRLF: {line:?}")));
    }
    let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let bad = || std::io::Error::other(format!("malformed reply line {line:?}"));
    let len = || text.parse::<i64>().map_err(|_| bad());
    Ok(match line[0] {
        b'+' => Frame::Simple(text),
        b'-' => Frame::Error(text),
        b':' => Frame::Int(len()?),
        b'$' => match len()? {
            n if n < 0 => Frame::Null,
            n => {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                if !buf.ends_with(b"\r\n") {
                    return Err(bad());
                }
                buf.truncate(n as usize);
                Frame::Bulk(buf)
            }
        },
        b'*' => match len()? {
            n if n < 0 => Frame::NullArray,
            n => (0..n)
                .map(|_| read_frame(r))
                .collect::<Result<_, _>>()
                .map(Frame::Array)?,
        },
        _ => return Err(bad()),
    })
}

/// VmSize and VmRSS of a process, in KiB.
fn vm_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmSize:"), field("VmRSS:"))
}

/// The real `ferrokv-node` binary on a free port, killed on drop. Used where
/// the test must look at the server process alone (its memory).
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    // Kept open: a closed pipe would make the node's next print fail.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_process() -> NodeProcess {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferrokv-node");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read listen line");
    let addr = line
        .trim()
        .strip_prefix("ferrokv-node listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    NodeProcess {
        child,
        addr,
        _stdout: stdout,
    }
}

/// A client announcing a 512 MB bulk or a million arguments must not make the
/// server reserve that memory before the bytes arrive (Redis reserves big
/// bulks up front; we do not need to).
#[test]
fn huge_announced_lengths_do_not_allocate() {
    let node = node_process();
    let mut probe = RawClient::connect(node.addr);
    assert_eq!(probe.cmd(&["PING"]), Frame::Simple("PONG".into()));
    let (size0, rss0) = vm_kib(node.child.id());
    let mut conns = Vec::new();
    for i in 0..32 {
        let mut s = TcpStream::connect(node.addr).expect("connect");
        let header: &[u8] = if i % 2 == 0 {
            b"*1\r\n$536870912\r\nabc"
        } else {
            b"*1048576\r\n$4\r\nECHO\r\n$1\r\n"
        };
        s.write_all(header).expect("write");
        conns.push(s);
    }
    assert_eq!(probe.cmd(&["PING"]), Frame::Simple("PONG".into()));
    // What is tested is an absence (no reservation), so there is no state to
    // wait for: sample the process for a while and check every sample.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        let (size1, rss1) = vm_kib(node.child.id());
        let grew_virtual = size1.saturating_sub(size0);
        let grew_rss = rss1.saturating_sub(rss0);
        // 16 × 512 MB would be 8 GB of reservations; allow 256 MB for thread
        // stacks, allocator arenas and buffers.
        assert!(grew_virtual < 256 * 1024, "virtual memory grew by {grew_virtual} KiB");
        assert!(grew_rss < 64 * 1024, "resident memory grew by {grew_rss} KiB");
        // The sampling interval of the observation window: watching memory over
        // time is the point of this test, not waiting for a state.
        std::thread::sleep(Duration::from_millis(20));
    }
    for mut c in conns {
        // Those requests are incomplete: no reply, connection open.
        c.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let mut b = [0u8; 1];
        assert!(
            matches!(c.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut),
            "an incomplete request must neither be answered nor closed"
        );
    }
    assert_eq!(probe.cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// One client floods the server with garbage (random bytes on fresh
/// connections, and unknown inline commands it never reads replies to) for a
/// bounded time; another keeps getting prompt answers.
#[test]
fn garbage_flood_does_not_disturb_other_clients() {
    let s = server();
    let addr = s.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let flood = Duration::from_secs(3);
    let mut floods = Vec::new();
    {
        let stop = stop.clone();
        floods.push(std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut conns = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut c) = TcpStream::connect(addr) else { continue };
                conns += 1;
                let mut junk = vec![0u8; 4096];
                for b in junk.iter_mut() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    *b = rng as u8;
                }
                let _ = c.write_all(&junk);
            }
            conns
        }));
    }
    {
        let stop = stop.clone();
        floods.push(std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).expect("connect");
            let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
            let line = b"NOSUCHCOMMAND with some arguments\r\n".repeat(100);
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // The server stops reading once its replies back up; the write
                // then times out, which is fine: we only keep it busy.
                if c.write_all(&line).is_ok() {
                    sent += 100;
                }
            }
            sent
        }));
    }
    let mut c = RawClient::connect(s.addr);
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let mut rounds = 0;
    while start.elapsed() < flood {
        let t = Instant::now();
        assert_eq!(
            c.cmd(&["ECHO", &format!("r{rounds}")]),
            Frame::bulk(&format!("r{rounds}"))
        );
        worst = worst.max(t.elapsed());
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<u64> = floods.into_iter().map(|t| t.join().expect("flood thread")).collect();
    assert!(counts[0] > 10, "the flood made only {} connections", counts[0]);
    assert!(rounds > 50, "only {rounds} round trips in {flood:?}");
    assert!(
        worst < Duration::from_secs(2),
        "a round trip took {worst:?} during the flood"
    );
    assert_eq!(RawClient::connect(s.addr).cmd(&["PING"]), Frame::Simple("PONG".into()));
}

/// Read everything until the server closes; every reply must be well-formed RESP.
fn read_all_frames(s: TcpStream) -> Result<Vec<Frame>, String> {
    let mut r = BufReader::new(s);
    let mut frames = Vec::new();
    loop {
        match read_frame(&mut r) {
            Ok(f) => frames.push(f),
            // A server that closes with unread input resets the connection.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(frames);
            }
            Err(e) => return Err(format!("after {} frames: {e}", frames.len())),
        }
    }
}

/// Bytes that look like requests, damaged: the interesting inputs for a parser.
fn request_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"PING".to_vec()),
        Just(b"ECHO".to_vec()),
        (-3i64..20).prop_map(|n| n.to_string().into_bytes()),
        Just(b"2147483648".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever a client sends, the server answers with well-formed RESP,
    /// closes the connection when the client has finished sending, and keeps
    /// serving everyone else.
    #[test]
    fn random_bytes_never_break_the_server(
        input in prop_oneof![prop::collection::vec(any::<u8>(), 0..2048), request_like()]
    ) {
        let s = shared_server();
        let mut c = TcpStream::connect(s).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        // The server may close early (protocol error): a failed write is fine.
        let _ = c.write_all(&input);
        let _ = c.shutdown(Shutdown::Write);
        let frames = read_all_frames(c);
        prop_assert!(frames.is_ok(), "bad reply stream: {:?}", frames);
        let mut probe = RawClient::connect(s);
        prop_assert_eq!(probe.cmd(&["PING"]), Frame::Simple("PONG".into()));
    }
}

/// One server for all proptest cases (starting one per case is slow).
fn shared_server() -> SocketAddr {
    static SERVER: std::sync::OnceLock<support::Server> = std::sync::OnceLock::new();
    SERVER.get_or_init(server).addr
}
