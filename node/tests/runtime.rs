//! The `ferrokv-node` binary's connection threads: how many `--threads`,
//! the config file's `threads` and the default give (INFO's
//! `ferrokv_worker_threads`); that one thread — where nothing runs beside
//! the connection being served — still serves blocking pops, group commit,
//! SAVE and `CONFIG SET appendonly`, which run inline on it; and that the
//! adaptive thread count grows under a load that needs a second core while
//! one is free, moves connections (pub/sub included) without losing a reply,
//! and shrinks back once the load is gone; and that a connection gives back
//! the buffers a big request or reply made it grow; and when a thread
//! busy-polls (`--busy-poll`): under an unpipelined load with a core free,
//! not beside a busy process, not under a pipelined load, not idle.

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Frame, RawClient, TempDir, wait_for};

struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_node(extra: &[&str]) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferrokv-node");
    let out = child.stdout.take().unwrap();
    // Owned by a `Node` from here on, so a failed start is still killed and reaped.
    let mut node = Node {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let mut out = BufReader::new(out);
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("ferrokv-node exited before printing its address");
        }
        if let Some(a) = line.trim().strip_prefix("ferrokv-node listening on ") {
            node.addr = a.parse().unwrap();
            // Keep draining stdout so a later print never blocks the node.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
                    sink.clear();
                }
            });
            return node;
        }
    }
}

fn text(f: Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8(b).unwrap(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

fn workers(addr: SocketAddr) -> usize {
    let info = text(RawClient::connect(addr).cmd(&["INFO", "server"]));
    info.lines()
        .find_map(|l| l.strip_prefix("ferrokv_worker_threads:"))
        .expect("INFO server has ferrokv_worker_threads")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn threads_come_from_the_flag_the_config_file_or_the_usable_cores() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        workers(spawn_node(&[]).addr),
        cores,
        "default: one connection thread per usable core"
    );
    assert_eq!(workers(spawn_node(&["--threads", "3"]).addr), 3);
    assert_eq!(workers(spawn_node(&["--threads", "1"]).addr), 1);
    // The runtime is built before the server reads its config: the file's
    // `threads` must still size it.
    let dir = TempDir::new("runtime-conf");
    let conf = dir.0.join("ferrokv.conf");
    std::fs::write(&conf, "threads 3\n").unwrap();
    let conf = conf.to_str().unwrap();
    assert_eq!(workers(spawn_node(&["--config", conf]).addr), 3);
    // The flag wins over the file, as for every other setting.
    assert_eq!(workers(spawn_node(&["--config", conf, "--threads", "1"]).addr), 1);
}

#[test]
fn one_worker_serves_blocking_pops_group_commit_and_saves() {
    let dir = TempDir::new("runtime-one");
    let node = spawn_node(&[
        "--threads",
        "1",
        "--dir",
        dir.0.to_str().unwrap(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ]);
    assert_eq!(workers(node.addr), 1);
    let mut a = RawClient::connect(node.addr);
    let mut b = RawClient::connect(node.addr);
    // Group commit: the reply waits for the log writer thread's fsync.
    assert_eq!(b.cmd(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    // A pop blocked on the only worker must not keep it from serving the push.
    a.send(&["BLPOP", "list", "10"]);
    wait_for("the BLPOP to block", Duration::from_secs(10), || {
        let info = text(b.cmd(&["INFO", "clients"]));
        info.contains("blocked_clients:1").then_some(())
    });
    assert_eq!(b.cmd(&["RPUSH", "list", "x"]), Frame::Int(1));
    assert_eq!(a.read(), Frame::Array(vec![Frame::bulk("list"), Frame::bulk("x")]));
    // SAVE and CONFIG SET appendonly run inline on the only thread.
    assert_eq!(b.cmd(&["SAVE"]), Frame::Simple("OK".into()));
    assert!(dir.0.join("dump.fkv").exists(), "SAVE wrote the snapshot");
    assert_eq!(
        b.cmd(&["CONFIG", "SET", "appendonly", "no"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        b.cmd(&["CONFIG", "SET", "appendonly", "yes"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(a.cmd(&["INCR", "n"]), Frame::Int(1));
    assert_eq!(b.cmd(&["GET", "k"]), Frame::bulk("v"));
}

fn info_field(addr: SocketAddr, section: &str, field: &str) -> String {
    let info = text(RawClient::connect(addr).cmd(&["INFO", section]));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("INFO {section} has {field}"))
}

/// The `io-thread` of every client in CLIENT LIST but the asking one.
fn client_threads(addr: SocketAddr) -> Vec<usize> {
    let list = text(RawClient::connect(addr).cmd(&["CLIENT", "LIST"]));
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("io-thread="))
                .expect("CLIENT LIST has io-thread")
                .parse()
                .unwrap()
        })
        .collect()
}

/// Two 20k-member sets, `a` and `b`: SINTERCARD on them is ~a millisecond
/// of server work for a few bytes each way, so a few loaders keep one
/// thread busy while the test process itself leaves the other core idle.
fn two_big_sets(addr: SocketAddr) {
    let mut setup = RawClient::connect(addr);
    for set in ["a", "b"] {
        for chunk in 0..20 {
            let mut args = vec!["SADD".to_string(), set.to_string()];
            args.extend((chunk * 1000..(chunk + 1) * 1000).map(|i| format!("m{i}")));
            setup.send(&args);
        }
        for _ in 0..20 {
            assert_eq!(setup.read(), Frame::Int(1000));
        }
    }
}

/// Four connections sending SINTERCARD on [`two_big_sets`] in batches of
/// `depth` until `stop`, checking every reply; each returns its connection
/// and how many batches it got through.
fn spawn_loaders(addr: SocketAddr, depth: i64, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<(RawClient, u64)>> {
    (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = RawClient::connect(addr);
                let mut n = 0u64;
                // A pipeline goes out in one write, as real clients send one
                // (redis-benchmark -P); written a command at a time, the
                // server may read it in pieces.
                let pipeline: Vec<u8> = (0..depth)
                    .flat_map(|i| RawClient::encode(&["SINTERCARD", "2", "a", "b", "LIMIT", &(19990 + i).to_string()]))
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    c.send_raw(&pipeline);
                    for i in 0..depth {
                        assert_eq!(c.read(), Frame::Int(19990 + i));
                    }
                    n += 1;
                }
                (c, n)
            })
        })
        .collect()
}

/// Held by the tests that load the cores or need one free (the test harness
/// runs this file's tests in parallel): the busy-poll test's spinning threads
/// beside the adaptive test's load could keep its second thread from being
/// allowed.
fn cores() -> std::sync::MutexGuard<'static, ()> {
    static CORES: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CORES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether this machine has the two cores a test needs; says why it skips.
fn two_cores(why: &str) -> bool {
    let enough = std::thread::available_parallelism().unwrap().get() >= 2;
    if !enough {
        eprintln!("skipped: {why}");
    }
    enough
}

#[test]
fn adaptive_threads_grow_under_a_server_bound_load_and_shrink_after_it() {
    if !two_cores("growing needs a second core") {
        return;
    }
    let _cores = cores();
    let node = spawn_node(&["--threads", "2"]);
    assert_eq!(info_field(node.addr, "server", "ferrokv_worker_threads"), "2");
    assert_eq!(
        info_field(node.addr, "server", "io_threads_active"),
        "1",
        "starts with one"
    );
    two_big_sets(node.addr);
    // A subscriber, connected first so that it is among the connections moved.
    let mut sub = RawClient::connect(node.addr);
    sub.cmd(&["SUBSCRIBE", "ch"]);
    // Pipelined, so that a connection moves with requests still unread or
    // half-parsed: every reply must still come back, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders = spawn_loaders(node.addr, 8, &stop);
    wait_for("a second connection thread", Duration::from_secs(30), || {
        (info_field(node.addr, "server", "io_threads_active") == "2").then_some(())
    });
    wait_for("connections on both threads", Duration::from_secs(10), || {
        let t = client_threads(node.addr);
        (t.contains(&0) && t.contains(&1)).then_some(())
    });
    let mut publisher = RawClient::connect(node.addr);
    assert_eq!(publisher.cmd(&["PUBLISH", "ch", "during"]), Frame::Int(1));
    assert_eq!(
        sub.read(),
        Frame::Array(vec![Frame::bulk("message"), Frame::bulk("ch"), Frame::bulk("during")])
    );
    stop.store(true, Ordering::Relaxed);
    let mut idle: Vec<RawClient> = Vec::new();
    for l in loaders {
        let (c, n) = l.join().unwrap();
        assert!(n > 0);
        idle.push(c);
    }
    // Idle now: back to one thread, and the idle connections are woken to
    // move there without sending anything.
    wait_for("one connection thread again", Duration::from_secs(30), || {
        (info_field(node.addr, "server", "io_threads_active") == "1").then_some(())
    });
    wait_for("every connection on thread 0", Duration::from_secs(10), || {
        client_threads(node.addr).iter().all(|&t| t == 0).then_some(())
    });
    for c in &mut idle {
        assert_eq!(c.cmd(&["SCARD", "a"]), Frame::Int(20000));
    }
    assert_eq!(publisher.cmd(&["PUBLISH", "ch", "after"]), Frame::Int(1));
    assert_eq!(
        sub.read(),
        Frame::Array(vec![Frame::bulk("message"), Frame::bulk("ch"), Frame::bulk("after")])
    );
}

#[test]
fn without_adaptive_threads_every_thread_takes_connections() {
    let node = spawn_node(&["--threads", "2", "--adaptive-threads", "no"]);
    assert_eq!(info_field(node.addr, "server", "io_threads_active"), "2");
    let mut a = RawClient::connect(node.addr);
    let mut b = RawClient::connect(node.addr);
    assert_eq!(a.cmd(&["SET", "k", "1"]), Frame::Simple("OK".into()));
    assert_eq!(b.cmd(&["INCR", "k"]), Frame::Int(2));
    let mut t = client_threads(node.addr);
    t.sort();
    assert_eq!(t, vec![0, 1], "new connections go to the thread with the fewest");
    // The config file says the same (and the flag still wins over it).
    let dir = TempDir::new("runtime-adaptive");
    let conf = dir.0.join("ferrokv.conf");
    std::fs::write(&conf, "threads 2\nadaptive-threads no\n").unwrap();
    let conf = conf.to_str().unwrap();
    assert_eq!(
        info_field(spawn_node(&["--config", conf]).addr, "server", "io_threads_active"),
        "2"
    );
    let flag = spawn_node(&["--config", conf, "--adaptive-threads", "yes"]);
    assert_eq!(info_field(flag.addr, "server", "io_threads_active"), "1");
}

fn polling(addr: SocketAddr) -> String {
    info_field(addr, "server", "ferrokv_io_threads_polling")
}

/// INFO `ferrokv_io_threads_polling` stays 0 for two seconds (eight of the
/// balancer's samples). The watching over time is the check itself (a
/// decision that flips for one sample must be seen), hence the pauses
/// between readings rather than a wait for a condition.
fn never_polls(addr: SocketAddr, when: &str) {
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(polling(addr), "0", "polling {when}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stop the loaders and return how many batches each got through.
fn stop_loaders(stop: &AtomicBool, loaders: Vec<JoinHandle<(RawClient, u64)>>) -> Vec<u64> {
    stop.store(true, Ordering::Relaxed);
    loaders.into_iter().map(|l| l.join().unwrap().1).collect()
}

#[test]
fn busy_poll_auto_polls_for_a_busy_unpipelined_load_only_while_a_core_is_free() {
    if !two_cores("polling needs a core beyond the connection thread") {
        return;
    }
    let _cores = cores();
    // One connection thread, so the core beside it is the one polling needs.
    let node = spawn_node(&["--threads", "1"]);
    assert_eq!(polling(node.addr), "0", "nothing to poll for at start");
    two_big_sets(node.addr);

    // Unpipelined requests keep the thread busy and the test process
    // leaves the other core idle: the thread polls.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders = spawn_loaders(node.addr, 1, &stop);
    wait_for("the thread to poll", Duration::from_secs(30), || {
        (polling(node.addr) == "1").then_some(())
    });

    // Another process's work takes the free core (two spinning threads
    // here, for at most 30 s): the thread stops polling although its load
    // is the same.
    let hog_stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let hog_stop = hog_stop.clone();
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(30);
                let mut x = 0u64;
                while !hog_stop.load(Ordering::Relaxed) && Instant::now() < until {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    wait_for("polling to stop beside a busy process", Duration::from_secs(20), || {
        (polling(node.addr) == "0").then_some(())
    });
    hog_stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    wait_for("polling again once the core is free", Duration::from_secs(30), || {
        (polling(node.addr) == "1").then_some(())
    });
    assert!(stop_loaders(&stop, loaders).iter().all(|&n| n > 0));

    // No load: no polling.
    wait_for("polling to stop when the load ends", Duration::from_secs(10), || {
        (polling(node.addr) == "0").then_some(())
    });

    // A pipelined load as busy: requests are already waiting when a batch
    // ends, so the thread is never allowed to poll.
    let loaders = spawn_loaders(node.addr, 8, &stop_flag_reset(&stop));
    never_polls(node.addr, "under a pipelined load");
    assert!(stop_loaders(&stop, loaders).iter().all(|&n| n > 0));
}

fn stop_flag_reset(stop: &Arc<AtomicBool>) -> Arc<AtomicBool> {
    stop.store(false, Ordering::Relaxed);
    stop.clone()
}

#[test]
fn busy_poll_yes_and_no_are_fixed_and_come_from_the_flag_or_the_config_file() {
    let _cores = cores();
    let yes = spawn_node(&["--threads", "2", "--busy-poll", "yes"]);
    assert_eq!(polling(yes.addr), "2");
    let mut c = RawClient::connect(yes.addr);
    for i in 0..100 {
        assert_eq!(c.cmd(&["INCR", "n"]), Frame::Int(i + 1));
    }
    let dir = TempDir::new("runtime-busy-poll");
    let conf = dir.0.join("ferrokv.conf");
    std::fs::write(&conf, "threads 1\nbusy-poll no\n").unwrap();
    let no = spawn_node(&["--config", conf.to_str().unwrap()]);
    two_big_sets(no.addr);
    // The load under which `auto` polls (previous test): `no` never does.
    let stop = Arc::new(AtomicBool::new(false));
    let loaders = spawn_loaders(no.addr, 1, &stop);
    never_polls(no.addr, "with --busy-poll no");
    assert!(stop_loaders(&stop, loaders).iter().all(|&n| n > 0));
    // A value that is none of the three is refused at startup.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
        .args(["--port", "0", "--busy-poll", "always"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("always"), "{out:?}");
}

/// `used_memory` (jemalloc's allocated bytes, refreshed every 100 ms).
fn used_memory(addr: SocketAddr) -> i64 {
    info_field(addr, "memory", "used_memory").parse().unwrap()
}

#[test]
fn a_big_request_or_reply_does_not_keep_its_buffer() {
    let node = spawn_node(&["--threads", "1"]);
    let before = used_memory(node.addr);
    const VALUE: usize = 4 << 20;
    const CLIENTS: usize = 8;
    let value = "v".repeat(VALUE);
    let mut clients: Vec<RawClient> = (0..CLIENTS).map(|_| RawClient::connect(node.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let key = format!("big{i}");
        assert_eq!(c.cmd(&["SET", &key, &value]), Frame::Simple("OK".into()));
        match c.cmd(&["GET", &key]) {
            Frame::Bulk(b) => assert_eq!(b.len(), VALUE),
            other => panic!("GET: {other:?}"),
        }
        assert_eq!(c.cmd(&["PING"]), Frame::Simple("PONG".into()));
    }
    // The connections stay open and idle. The values themselves are 32 MiB;
    // input and output buffers kept at their peak would add 64 MiB or more.
    // used_memory is refreshed every 100 ms: poll it. Kept buffers would
    // never be given back, so the deadline fails the test.
    let data = (VALUE * CLIENTS) as i64;
    let mut grown = 0;
    wait_for(
        "used_memory without the connections' peak buffers",
        Duration::from_secs(5),
        || {
            grown = used_memory(node.addr) - before;
            (grown < data + data / 2).then_some(())
        },
    );
    assert!(grown >= data, "the values themselves are counted: {grown} < {data}");
    drop(clients);
}
