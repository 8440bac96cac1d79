//! The `ferrokv-node` binary's runtime: how many worker threads `--threads`,
//! the config file's `threads` and the default give (INFO's
//! `ferrokv_worker_threads`), and that one worker — a current-thread
//! runtime, where nothing runs beside the connection being served — still
//! serves blocking pops, group commit, SAVE and `CONFIG SET appendonly`,
//! which run inline on that thread instead of through `block_in_place`.

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
        "default: one worker per usable core"
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
