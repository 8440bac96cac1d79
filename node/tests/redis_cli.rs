//! The real `redis-cli` (Debian redis-tools, 7.0.15) against ferrokv: one-shot
//! commands, `--pipe` mass insertion from a generated RESP stream, and RESP3
//! (`-3`). Where possible the same invocation runs against real Redis and the
//! outputs must be identical, since that is what a user (or a script parsing
//! redis-cli's output) sees.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use support::{RawClient, redis_server, server};

/// Run redis-cli against `addr` with `args`, feeding `stdin`.
fn cli(addr: SocketAddr, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd
        .spawn()
        .expect("redis-cli must be installed (scripts/install-test-deps.sh installs it)");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        // Feed from a thread: redis-cli writes replies while reading input.
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    child.wait_with_output().expect("redis-cli output")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Same invocation on both servers; outputs must be identical. Returns ours.
#[track_caller]
fn same(ours: SocketAddr, theirs: SocketAddr, args: &[&str]) -> String {
    let a = text(&cli(ours, args, None));
    let b = text(&cli(theirs, args, None));
    assert_eq!(a, b, "redis-cli {args:?} (left: ferrokv, right: redis)");
    a
}

#[test]
fn one_shot_commands_match_redis() {
    let s = server();
    let r = redis_server(&[]);
    let out = same(s.addr, r.addr, &["PING"]);
    assert!(out.contains("stdout:\nPONG\n"), "{out}");
    let out = same(s.addr, r.addr, &["ECHO", "hello world"]);
    assert!(out.contains("stdout:\nhello world\n"), "{out}");
    same(s.addr, r.addr, &["PING", "with spaces and \"quotes\""]);
    // Errors, raw (stdout is not a terminal) and formatted.
    let out = same(s.addr, r.addr, &["NOSUCHCOMMAND", "a", "b"]);
    assert!(out.contains("ERR unknown command 'NOSUCHCOMMAND'"), "{out}");
    same(s.addr, r.addr, &["--no-raw", "NOSUCHCOMMAND"]);
    same(s.addr, r.addr, &["ECHO"]);
    same(s.addr, r.addr, &["--no-raw", "ECHO", "x"]);
    // Integers and arrays, raw and formatted.
    same(s.addr, r.addr, &["PUBLISH", "nobody", "hi"]);
    same(s.addr, r.addr, &["--no-raw", "PUBLISH", "nobody", "hi"]);
    same(s.addr, r.addr, &["PUBSUB", "NUMSUB", "a", "b"]);
    same(s.addr, r.addr, &["--no-raw", "PUBSUB", "NUMSUB", "a", "b"]);
    same(s.addr, r.addr, &["--no-raw", "PUBSUB", "CHANNELS"]);
    // Binary-safe output escaping.
    same(s.addr, r.addr, &["--no-raw", "ECHO", "tab\there\u{1}"]);
    // -e: an error reply makes the exit status non-zero.
    let out = same(s.addr, r.addr, &["-e", "NOSUCHCOMMAND"]);
    assert!(out.starts_with("status Some(1)"), "{out}");
}

/// A RESP stream for `redis-cli --pipe`: `n` commands, every 1000th of them an
/// unknown command when `with_errors` (counted as an error by redis-cli).
fn pipe_stream(n: usize, with_errors: bool) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut errors = 0;
    for i in 0..n {
        if with_errors && i % 1000 == 999 {
            out.extend_from_slice(&RawClient::encode(&["NOSUCHCOMMAND", &i.to_string()]));
            errors += 1;
        } else if i % 2 == 0 {
            out.extend_from_slice(&RawClient::encode(&[
                "ECHO",
                &format!("value:{i}:{}", "x".repeat(i % 64)),
            ]));
        } else {
            out.extend_from_slice(&RawClient::encode(&["PING"]));
        }
    }
    (out, errors)
}

#[test]
fn pipe_mode_streams_a_generated_resp_file() {
    let s = server();
    let r = redis_server(&[]);
    let n = 50_000;
    for with_errors in [false, true] {
        let (stream, errors) = pipe_stream(n, with_errors);
        let ours = cli(s.addr, &["--pipe"], Some(&stream));
        let theirs = cli(r.addr, &["--pipe"], Some(&stream));
        // redis-cli prints each error reply and exits 1 when there was any.
        assert_eq!(ours.status.success(), errors == 0, "{}", text(&ours));
        let summary = String::from_utf8_lossy(&ours.stdout).into_owned();
        assert!(
            summary.ends_with(&format!("errors: {errors}, replies: {n}\n")),
            "{summary}"
        );
        assert_eq!(text(&ours), text(&theirs), "left: ferrokv, right: redis");
    }
}

#[test]
fn resp3_mode() {
    let s = server();
    let r = redis_server(&[]);
    // -3 sends HELLO 3 first; replies are then decoded as RESP3.
    let out = same(s.addr, r.addr, &["-3", "PING"]);
    assert!(out.contains("stdout:\nPONG\n"), "{out}");
    same(s.addr, r.addr, &["-3", "--no-raw", "ECHO", "x"]);
    same(s.addr, r.addr, &["-3", "--no-raw", "NOSUCHCOMMAND"]);
    // HELLO's map: the values differ (server name, version, id) but the keys,
    // their order and the RESP3 map formatting must be Redis'.
    let keys = |addr| {
        let o = cli(addr, &["-3", "--no-raw", "HELLO", "3"], None);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.split(" => ").next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let (ours, theirs) = (keys(s.addr), keys(r.addr));
    assert_eq!(ours, theirs, "HELLO 3 map keys (left: ferrokv, right: redis)");
    let o = cli(s.addr, &["-3", "--no-raw", "HELLO", "3"], None);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"proto\" => (integer) 3"),
        "{}",
        text(&o)
    );
}

/// Redis 7.0 answers PUBSUB NUMSUB with a flat array even in RESP3.
#[test]
fn resp3_pubsub_numsub_is_an_array_like_redis() {
    let s = server();
    let r = redis_server(&[]);
    let out = same(s.addr, r.addr, &["-3", "--no-raw", "PUBSUB", "NUMSUB", "a"]);
    assert!(out.contains("1) \"a\"\n2) (integer) 0\n"), "{out}");
}
