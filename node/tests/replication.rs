//! Replication between in-process ferrokv nodes over TCP: full and partial
//! resync, the replica's read-only behaviour, WAIT, min-replicas-to-write,
//! config-epoch fencing, and faults (foreign replication IDs, a primary that
//! vanishes mid full sync).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use ferrokv_node::config::ServeArgs;
use support::{Frame, RawClient, Server, server_with, wait_for};

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

fn s(f: &Frame) -> String {
    match f {
        Frame::Bulk(b) | Frame::Verbatim(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) | Frame::Error(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn info(addr: SocketAddr, section: &str) -> BTreeMap<String, String> {
    let mut c = RawClient::connect(addr);
    let text = s(&c.cmd(&["INFO", section]));
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn field(addr: SocketAddr, section: &str, name: &str) -> String {
    info(addr, section).get(name).cloned().unwrap_or_default()
}

fn num(addr: SocketAddr, section: &str, name: &str) -> i64 {
    field(addr, section, name).parse().unwrap_or(-1)
}

fn primary() -> Server {
    server_with(ServeArgs::default())
}

fn replica_of(p: &Server) -> Server {
    server_with(ServeArgs {
        replicaof: Some(vec!["127.0.0.1".into(), p.addr.port().to_string()]),
        ..Default::default()
    })
}

/// Wait until `r` follows `p` with the link up and the same offset.
fn wait_synced(p: SocketAddr, r: SocketAddr) {
    wait_for("replica in sync", SYNC_TIMEOUT, || {
        let ri = info(r, "replication");
        let po = num(p, "replication", "master_repl_offset");
        (ri.get("master_link_status").map(String::as_str) == Some("up")
            && ri.get("slave_repl_offset").and_then(|v| v.parse::<i64>().ok()) == Some(po))
        .then_some(())
    });
}

/// Every key with its type and a canonical rendering of its value.
fn dataset(addr: SocketAddr) -> BTreeMap<String, String> {
    let mut c = RawClient::connect(addr);
    let Frame::Array(keys) = c.cmd(&["KEYS", "*"]) else {
        panic!("KEYS must answer an array")
    };
    let mut out = BTreeMap::new();
    for k in keys {
        let k = s(&k);
        let ty = s(&c.cmd(&["TYPE", &k]));
        let v = match ty.as_str() {
            "string" => c.cmd(&["GET", &k]),
            "list" => c.cmd(&["LRANGE", &k, "0", "-1"]),
            "hash" => c.cmd(&["HGETALL", &k]).sorted(),
            "set" => c.cmd(&["SMEMBERS", &k]).sorted(),
            "zset" => c.cmd(&["ZRANGE", &k, "0", "-1", "WITHSCORES"]),
            "stream" => c.cmd(&["XRANGE", &k, "-", "+"]),
            _ => Frame::Null,
        };
        let ttl = match c.cmd(&["PEXPIRETIME", &k]) {
            Frame::Int(t) => t,
            _ => -3,
        };
        out.insert(k, format!("{ty} {ttl} {v:?}"));
    }
    out
}

fn load(addr: SocketAddr, prefix: &str, n: usize) {
    let mut c = RawClient::connect(addr);
    for i in 0..n {
        c.send(&[
            "SET",
            &format!("{prefix}:{i}"),
            &format!("value-{i}-{}", "x".repeat(i % 50)),
        ]);
    }
    for _ in 0..n {
        assert_eq!(c.read(), Frame::Simple("OK".into()));
    }
}

fn digest(addr: SocketAddr) -> String {
    s(&RawClient::connect(addr).cmd(&["DIGEST"]))
}

/// Keys of every type, with and without TTLs. `verbatim_safe`: only
/// commands whose replay anywhere gives the same result (explicit stream
/// IDs, absolute TTLs), for data that reaches the replica through the
/// stream rather than the snapshot.
fn load_types(addr: SocketAddr, prefix: &str, n: usize, verbatim_safe: bool) {
    let mut c = RawClient::connect(addr);
    for i in 0..n {
        let k = |t: &str| format!("{prefix}:{t}:{}", i % 97);
        let v = i.to_string();
        let cmds: Vec<Vec<String>> = vec![
            vec!["RPUSH".into(), k("list"), v.clone()],
            vec!["HSET".into(), k("hash"), format!("f{}", i % 13), v.clone()],
            vec!["SADD".into(), k("set"), v.clone()],
            vec!["ZADD".into(), k("zset"), format!("{}.5", i % 31), v.clone()],
            if verbatim_safe {
                vec![
                    "XADD".into(),
                    k("stream"),
                    format!("{}-1", i + 1),
                    "f".into(),
                    v.clone(),
                ]
            } else {
                vec!["XADD".into(), k("stream"), "*".into(), "f".into(), v.clone()]
            },
            if verbatim_safe {
                vec![
                    "SET".into(),
                    k("ttl"),
                    v.clone(),
                    "PXAT".into(),
                    "99999999999999".into(),
                ]
            } else {
                vec!["SET".into(), k("ttl"), v.clone(), "PX".into(), "600000".into()]
            },
        ];
        for cmd in &cmds {
            c.send(cmd);
        }
        for _ in &cmds {
            assert!(!c.read().is_error());
        }
    }
    assert!(
        !c.cmd(&["XGROUP", "CREATE", &format!("{prefix}:stream:1"), "g", "0"])
            .is_error()
    );
    if !verbatim_safe {
        let stream = format!("{prefix}:stream:1");
        let r = c.cmd(&["XREADGROUP", "GROUP", "g", "c1", "COUNT", "3", "STREAMS", &stream, ">"]);
        assert!(!r.is_error());
    }
}

#[test]
fn replica_converges_serves_reads_and_refuses_writes() {
    // A backlog smaller than what is written during the transfer: the
    // primary must hold those writes for the replica, not start over.
    let p = server_with(ServeArgs {
        repl_backlog_size: Some("16kb".into()),
        ..Default::default()
    });
    load(p.addr, "before", 3000);
    load_types(p.addr, "t", 500, false);
    let mut pc = RawClient::connect(p.addr);
    // Writes keep coming while the replica takes its full sync.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (p.addr, stop.clone());
        std::thread::spawn(move || {
            let mut c = RawClient::connect(addr);
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(!c.cmd(&["INCR", &format!("during:{}", i % 500)]).is_error());
                assert!(!c.cmd(&["LPUSH", "during:list", &i.to_string()]).is_error());
                i += 1;
            }
            i
        })
    };
    let r = replica_of(&p);
    wait_for("replica link up", SYNC_TIMEOUT, || {
        (field(r.addr, "replication", "master_link_status") == "up").then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    wait_synced(p.addr, r.addr);
    assert_eq!(num(p.addr, "stats", "sync_full"), 1);
    assert_eq!(digest(p.addr), digest(r.addr));
    // Writes after the full sync arrive through the stream.
    load(p.addr, "after", 500);
    load_types(p.addr, "u", 200, true);
    pc.cmd(&["DEL", "before:7"]);
    pc.cmd(&["MULTI"]);
    pc.cmd(&["INCR", "counter"]);
    pc.cmd(&["INCR", "counter"]);
    pc.cmd(&["EXEC"]);
    wait_synced(p.addr, r.addr);
    assert_eq!(digest(p.addr), digest(r.addr));
    assert_eq!(dataset(p.addr), dataset(r.addr));

    let mut rc = RawClient::connect(r.addr);
    assert_eq!(rc.cmd(&["GET", "counter"]), Frame::bulk("2"));
    assert_eq!(
        rc.cmd(&["SET", "x", "1"]),
        Frame::Error("READONLY You can't write against a read only replica.".into())
    );
    // A write queued in MULTI is refused and aborts the transaction.
    rc.cmd(&["MULTI"]);
    assert!(rc.cmd(&["SET", "x", "1"]).is_error());
    assert!(s(&rc.cmd(&["EXEC"])).starts_with("EXECABORT"));

    let ri = info(r.addr, "replication");
    assert_eq!(ri["role"], "slave");
    assert_eq!(ri["master_port"], p.addr.port().to_string());
    assert_eq!(ri["master_replid"], field(p.addr, "replication", "master_replid"));
    let pi = info(p.addr, "replication");
    assert_eq!(pi["connected_slaves"], "1");
    assert!(pi["slave0"].contains(",state=online,"), "{}", pi["slave0"]);
    assert!(
        pi["slave0"].contains(&format!("port={}", r.addr.port())),
        "{}",
        pi["slave0"]
    );

    let Frame::Array(role) = rc.cmd(&["ROLE"]) else {
        panic!("ROLE")
    };
    assert_eq!(role[0], Frame::bulk("slave"));
    assert_eq!(role[2], Frame::Int(p.addr.port() as i64));
    assert_eq!(role[3], Frame::bulk("connected"));
    let Frame::Array(role) = pc.cmd(&["ROLE"]) else {
        panic!("ROLE")
    };
    assert_eq!(role[0], Frame::bulk("master"));
    assert!(matches!(&role[2], Frame::Array(v) if v.len() == 1));
    // Metrics for the operator.
    let text = r.state.metrics.render(&r.state);
    assert!(text.contains("ferrokv_repl_master_link_up 1"), "{text}");
    assert!(text.contains("ferrokv_repl_is_replica 1"));
    let text = p.state.metrics.render(&p.state);
    assert!(text.contains("ferrokv_repl_connected_replicas 1"), "{text}");
    let full = num(p.addr, "stats", "sync_full");
    assert!(
        text.contains(&format!("ferrokv_repl_full_syncs_total {full}")),
        "{text}"
    );
    // The link shows up as a client of each side.
    assert!(s(&rc.cmd(&["CLIENT", "LIST", "TYPE", "master"])).contains("flags=M"));
    assert!(s(&pc.cmd(&["CLIENT", "LIST", "TYPE", "replica"])).contains("flags=S"));
}

#[test]
fn short_disconnect_resumes_with_a_partial_resync() {
    let p = primary();
    load(p.addr, "k", 1000);
    let r = replica_of(&p);
    wait_synced(p.addr, r.addr);
    let mut rc = RawClient::connect(r.addr);
    for round in 0..3 {
        assert_eq!(rc.cmd(&["CLIENT", "KILL", "TYPE", "master"]), Frame::Int(1));
        load(p.addr, &format!("round{round}"), 200);
        wait_synced(p.addr, r.addr);
    }
    assert_eq!(num(p.addr, "stats", "sync_full"), 1, "no second full sync");
    assert!(num(p.addr, "stats", "sync_partial_ok") >= 3);
    assert_eq!(dataset(p.addr), dataset(r.addr));
}

#[test]
fn falling_behind_the_backlog_forces_a_full_resync() {
    let p = server_with(ServeArgs {
        repl_backlog_size: Some("16kb".into()),
        ..Default::default()
    });
    let r = replica_of(&p);
    wait_synced(p.addr, r.addr);
    assert_eq!(num(p.addr, "stats", "sync_full"), 1);
    // Keep the replica out (its handshake fails without the password) while
    // more than the backlog is written.
    let mut pc = RawClient::connect(p.addr);
    assert_eq!(
        pc.cmd(&["CONFIG", "SET", "requirepass", "secret"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(pc.cmd(&["AUTH", "secret"]), Frame::Simple("OK".into()));
    let mut rc = RawClient::connect(r.addr);
    rc.cmd(&["CLIENT", "KILL", "TYPE", "master"]);
    wait_for("link down", SYNC_TIMEOUT, || {
        (field(r.addr, "replication", "master_link_status") == "down").then_some(())
    });
    for i in 0..400 {
        pc.cmd(&["SET", &format!("big{i}"), &"v".repeat(100)]);
    }
    assert!(num_auth(p.addr, "master_repl_offset") > 40_000);
    assert_eq!(
        pc.cmd(&["CONFIG", "SET", "requirepass", ""]),
        Frame::Simple("OK".into())
    );
    wait_synced(p.addr, r.addr);
    assert_eq!(num(p.addr, "stats", "sync_full"), 2, "second sync must be full");
    assert!(num(p.addr, "stats", "sync_partial_err") >= 1);
    assert_eq!(dataset(p.addr), dataset(r.addr));
}

fn num_auth(addr: SocketAddr, name: &str) -> i64 {
    let mut c = RawClient::connect(addr);
    c.cmd(&["AUTH", "secret"]);
    let text = s(&c.cmd(&["INFO", "replication"]));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

#[test]
fn wait_counts_replicas_that_acknowledged() {
    let p = primary();
    let mut c = RawClient::connect(p.addr);
    assert_eq!(c.cmd(&["SET", "a", "1"]), Frame::Simple("OK".into()));
    assert_eq!(c.cmd(&["WAIT", "0", "0"]), Frame::Int(0));
    let t = Instant::now();
    assert_eq!(c.cmd(&["WAIT", "1", "200"]), Frame::Int(0));
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "WAIT must block until the timeout"
    );
    let r1 = replica_of(&p);
    let r2 = replica_of(&p);
    wait_synced(p.addr, r1.addr);
    wait_synced(p.addr, r2.addr);
    for i in 0..20 {
        assert_eq!(c.cmd(&["SET", "a", &i.to_string()]), Frame::Simple("OK".into()));
        assert_eq!(c.cmd(&["WAIT", "2", "5000"]), Frame::Int(2));
    }
    let t = Instant::now();
    assert_eq!(c.cmd(&["WAIT", "3", "300"]), Frame::Int(2));
    assert!(t.elapsed() >= Duration::from_millis(290));
    // Inside MULTI, WAIT answers at once.
    c.cmd(&["MULTI"]);
    c.cmd(&["SET", "b", "1"]);
    c.cmd(&["WAIT", "5", "0"]);
    let Frame::Array(replies) = c.cmd(&["EXEC"]) else {
        panic!("EXEC")
    };
    assert!(matches!(replies[1], Frame::Int(n) if n <= 2));
    let mut rc = RawClient::connect(r1.addr);
    assert!(s(&rc.cmd(&["WAIT", "1", "0"])).contains("cannot be used with replica instances"));
}

/// Connections push their writes to an online replica's socket themselves,
/// concurrently with each other (on both connection threads) and with the
/// sender, which writes GETACKs and whatever a connection left behind: the
/// stream must stay whole and in order (no resync, no protocol error, equal
/// digests).
#[test]
fn writers_on_both_threads_and_the_sender_share_the_stream() {
    let p = server_with(ServeArgs {
        threads: Some(2),
        adaptive_threads: Some("no".into()),
        // Room for everything written: falling out of the backlog is
        // another test's subject.
        repl_backlog_size: Some("64mb".into()),
        ..Default::default()
    });
    let r = replica_of(&p);
    wait_synced(p.addr, r.addr);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // WAIT makes the sender interleave GETACKs with the connections' writes.
    let waiter = {
        let (addr, stop) = (p.addr, stop.clone());
        std::thread::spawn(move || {
            let mut c = RawClient::connect(addr);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(matches!(c.cmd(&["WAIT", "1", "50"]), Frame::Int(_)));
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let addr = p.addr;
            std::thread::spawn(move || {
                let mut c = RawClient::connect(addr);
                let big = "x".repeat(4_000_000);
                for i in 0..1500 {
                    let key = format!("w{w}:{}", i % 50);
                    if i % 100 == 7 {
                        // Larger than a socket buffer: some of it is left
                        // for the sender.
                        assert!(!c.cmd(&["SET", &key, &big]).is_error());
                    } else if i % 10 == 3 {
                        // A pipelined batch.
                        for j in 0..16 {
                            c.send(&["RPUSH", &format!("w{w}:list"), &format!("{i}.{j}")]);
                        }
                        for _ in 0..16 {
                            assert!(!c.read().is_error());
                        }
                    } else {
                        assert!(!c.cmd(&["APPEND", &key, &i.to_string()]).is_error());
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    waiter.join().unwrap();
    wait_synced(p.addr, r.addr);
    assert_eq!(digest(p.addr), digest(r.addr));
    assert_eq!(num(p.addr, "stats", "sync_full"), 1);
    assert_eq!(num(p.addr, "stats", "ferrokv_backlog_disconnects"), 0);
    // The link never dropped (a reconnect would have resynced partially).
    assert_eq!(num(p.addr, "stats", "sync_partial_ok"), 0);
}

#[test]
fn min_replicas_to_write_refuses_writes_without_good_replicas() {
    let p = primary();
    let mut c = RawClient::connect(p.addr);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "min-replicas-to-write", "1"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        c.cmd(&["SET", "a", "1"]),
        Frame::Error("NOREPLICAS Not enough good replicas to write.".into())
    );
    assert_eq!(c.cmd(&["GET", "a"]), Frame::Null, "reads are served");
    let r = replica_of(&p);
    wait_synced(p.addr, r.addr);
    wait_for("write accepted", SYNC_TIMEOUT, || {
        (c.cmd(&["SET", "a", "1"]) == Frame::Simple("OK".into())).then_some(())
    });
    drop(r);
    wait_for("writes refused again", SYNC_TIMEOUT, || {
        c.cmd(&["SET", "a", "2"]).is_error().then_some(())
    });
}

#[test]
fn promoted_replica_serves_partial_resync_to_its_sibling() {
    let a = primary();
    load(a.addr, "k", 500);
    let b = replica_of(&a);
    let c = replica_of(&a);
    wait_synced(a.addr, b.addr);
    wait_synced(a.addr, c.addr);
    let mut bc = RawClient::connect(b.addr);
    assert_eq!(
        bc.cmd(&["REPLICAOF", "NO", "ONE", "EPOCH", "1"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        field(b.addr, "replication", "master_replid2"),
        field(a.addr, "replication", "master_replid")
    );
    let mut cc = RawClient::connect(c.addr);
    assert_eq!(
        cc.cmd(&["REPLICAOF", "127.0.0.1", &b.addr.port().to_string(), "EPOCH", "1"]),
        Frame::Simple("OK".into())
    );
    load(b.addr, "new", 100);
    wait_synced(b.addr, c.addr);
    assert_eq!(num(b.addr, "stats", "sync_full"), 0, "the sibling continued partially");
    assert_eq!(num(b.addr, "stats", "sync_partial_ok"), 1);
    assert_eq!(digest(b.addr), digest(c.addr));
}

#[test]
fn epochs_fence_stale_commands_and_a_returning_primary_demotes_itself() {
    let dir = support::TempDir::new("epoch");
    let a = server_with(ServeArgs {
        dir: Some(dir.0.clone()),
        ..Default::default()
    });
    let mut ac = RawClient::connect(a.addr);
    assert_eq!(
        ac.cmd(&["REPLICAOF", "NO", "ONE", "EPOCH", "1"]),
        Frame::Simple("OK".into())
    );
    let b = primary();
    let mut bc = RawClient::connect(b.addr);
    let a_port = a.addr.port().to_string();
    assert_eq!(
        bc.cmd(&["REPLICAOF", "127.0.0.1", &a_port, "EPOCH", "1"]),
        Frame::Simple("OK".into())
    );
    load(a.addr, "k", 300);
    wait_synced(a.addr, b.addr);

    // Failover: B is promoted in epoch 2; A does not know and keeps taking writes.
    assert_eq!(
        bc.cmd(&["REPLICAOF", "NO", "ONE", "EPOCH", "2"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        bc.cmd(&["REPLICAOF", "NO", "ONE", "EPOCH", "2"]),
        Frame::Simple("OK".into()),
        "idempotent"
    );
    assert_eq!(ac.cmd(&["SET", "lost", "1"]), Frame::Simple("OK".into()));
    assert_eq!(bc.cmd(&["SET", "kept", "1"]), Frame::Simple("OK".into()));
    // A stale control-plane command is refused.
    let stale = bc.cmd(&["REPLICAOF", "127.0.0.1", &a_port, "EPOCH", "1"]);
    assert!(s(&stale).starts_with("STALEEPOCH"), "{stale:?}");
    assert_eq!(field(b.addr, "replication", "role"), "master");
    // A node that knows epoch 2 is refused by A (epoch 1) at the handshake.
    let mut raw = RawClient::connect(a.addr);
    assert!(s(&raw.cmd(&["REPLCONF", "epoch", "2"])).starts_with("FENCED"));

    // The old primary learns of epoch 2: it demotes itself and, its history
    // having diverged ("lost"), takes a full copy of B.
    assert_eq!(
        ac.cmd(&["REPLICAOF", "127.0.0.1", &b.addr.port().to_string(), "EPOCH", "2"]),
        Frame::Simple("OK".into())
    );
    wait_synced(b.addr, a.addr);
    assert_eq!(num(b.addr, "stats", "sync_full"), 1);
    assert_eq!(ac.cmd(&["GET", "lost"]), Frame::Null);
    assert_eq!(ac.cmd(&["GET", "kept"]), Frame::bulk("1"));
    assert_eq!(dataset(a.addr), dataset(b.addr));

    // The epoch survives a restart.
    drop(ac);
    drop(a);
    let a = server_with(ServeArgs {
        dir: Some(dir.0.clone()),
        ..Default::default()
    });
    assert_eq!(field(a.addr, "replication", "ferrokv_config_epoch"), "2");
    let mut ac = RawClient::connect(a.addr);
    assert!(s(&ac.cmd(&["REPLICAOF", "NO", "ONE", "EPOCH", "1"])).starts_with("STALEEPOCH"));

    // A replica that knows a newer epoch refuses to follow an older primary.
    assert_eq!(
        ac.cmd(&["REPLICAOF", "NO", "ONE", "EPOCH", "3"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        ac.cmd(&["REPLICAOF", "127.0.0.1", &b.addr.port().to_string()]),
        Frame::Simple("OK".into())
    );
    wait_for("link refused", SYNC_TIMEOUT, || {
        let i = info(a.addr, "replication");
        i.get("ferrokv_master_link_error")
            .filter(|e| e.contains("FENCED") || e.contains("older than ours"))
            .cloned()
    });
    assert_eq!(field(a.addr, "replication", "master_link_status"), "down");
}

#[test]
fn foreign_replication_id_gets_a_full_sync() {
    let p = primary();
    load(p.addr, "k", 10);
    let mut stream = c_stream(p.addr);
    stream
        .write_all(&RawClient::encode(&[
            "PSYNC",
            "0123456789012345678901234567890123456789",
            "5",
        ]))
        .unwrap();
    let mut rd = std::io::BufReader::new(stream);
    let head = read_line(&mut rd);
    assert!(head.starts_with("+FULLRESYNC "), "{head}");
    assert!(read_line(&mut rd).starts_with("$EOF:"));
    assert!(num(p.addr, "stats", "sync_partial_err") >= 1);
}

fn c_stream(addr: SocketAddr) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// One line, skipping empty keepalive lines.
fn read_line(r: &mut impl BufRead) -> String {
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "connection closed");
        let t = line.trim();
        if !t.is_empty() {
            return t.to_string();
        }
    }
}

/// One RESP command (array of bulk strings) as strings.
fn read_command(r: &mut impl BufRead) -> Vec<String> {
    let head = read_line(r);
    let n: usize = head.trim_start_matches('*').parse().unwrap();
    (0..n)
        .map(|_| {
            let _len = read_line(r);
            read_line(r)
        })
        .collect()
}

/// Play a primary on `fake`: accept the replica, answer its handshake, reply
/// `psync_reply` to PSYNC. Returns the connection's two halves.
fn fake_primary_handshake(fake: &TcpListener, psync_reply: &str) -> (std::net::TcpStream, impl BufRead) {
    let (conn, _) = fake.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut rd = std::io::BufReader::new(conn);
    loop {
        let cmd = read_command(&mut rd);
        let reply = match (
            cmd[0].to_ascii_uppercase().as_str(),
            cmd.get(1).map(|s| s.to_ascii_lowercase()),
        ) {
            ("PING", _) => "+PONG\r\n".to_string(),
            ("REPLCONF", Some(o)) if o == "epoch" => "+EPOCH 0\r\n".to_string(),
            ("REPLCONF", _) => "+OK\r\n".to_string(),
            ("PSYNC", _) => psync_reply.to_string(),
            other => panic!("unexpected {other:?}"),
        };
        w.write_all(reply.as_bytes()).unwrap();
        if cmd[0].eq_ignore_ascii_case("PSYNC") {
            return (w, rd);
        }
    }
}

#[test]
fn replica_never_expires_keys_by_its_own_clock() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let r = primary();
    let mut rc = RawClient::connect(r.addr);
    let port = fake.local_addr().unwrap().port().to_string();
    assert_eq!(rc.cmd(&["REPLICAOF", "127.0.0.1", &port]), Frame::Simple("OK".into()));
    let (mut w, _rd) = fake_primary_handshake(&fake, "+CONTINUE 2222222222222222222222222222222222222222\r\n");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 100;
    w.write_all(&RawClient::encode(&["SET", "k", "v", "PXAT", &at.to_string()]))
        .unwrap();
    wait_for("key replicated", SYNC_TIMEOUT, || {
        (rc.cmd(&["DBSIZE"]) == Frame::Int(1)).then_some(())
    });
    // Past its TTL by our clock: reads see nothing, but the key stays...
    wait_for("key logically expired", SYNC_TIMEOUT, || {
        (rc.cmd(&["GET", "k"]) == Frame::Null).then_some(())
    });
    assert_eq!(rc.cmd(&["DBSIZE"]), Frame::Int(1));
    assert_eq!(rc.cmd(&["EXISTS", "k"]), Frame::Int(0));
    // ...and the primary's commands still see it (it had not expired there).
    w.write_all(&RawClient::encode(&["APPEND", "k", "x"])).unwrap();
    w.write_all(&RawClient::encode(&["PERSIST", "k"])).unwrap();
    wait_for("primary's commands applied", SYNC_TIMEOUT, || {
        (rc.cmd(&["GET", "k"]) == Frame::bulk("vx")).then_some(())
    });
    // The primary's DEL is what removes keys.
    w.write_all(&RawClient::encode(&["DEL", "k"])).unwrap();
    wait_for("key deleted", SYNC_TIMEOUT, || {
        (rc.cmd(&["DBSIZE"]) == Frame::Int(0)).then_some(())
    });
    assert_eq!(
        field(r.addr, "replication", "master_replid"),
        "2222222222222222222222222222222222222222"
    );
}

#[test]
fn primary_vanishing_mid_full_sync_leaves_the_old_data() {
    // A fake primary: completes the handshake, announces a full sync, sends
    // part of a payload and hangs up.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_port = fake.local_addr().unwrap().port();
    let r = primary();
    load(r.addr, "old", 100);
    let before = dataset(r.addr);
    let mut rc = RawClient::connect(r.addr);
    assert_eq!(
        rc.cmd(&["REPLICAOF", "127.0.0.1", &fake_port.to_string()]),
        Frame::Simple("OK".into())
    );
    let (w, rd) = fake_primary_handshake(
        &fake,
        "+FULLRESYNC 1111111111111111111111111111111111111111 1000\r\n\
         $EOF:abcdefghijabcdefghijabcdefghijabcdefghij\r\nFKVSYNC0-partial-payload",
    );
    wait_for("sync in progress", SYNC_TIMEOUT, || {
        (field(r.addr, "replication", "master_sync_in_progress") == "1").then_some(())
    });
    drop(w);
    drop(rd);
    wait_for("link error reported", SYNC_TIMEOUT, || {
        info(r.addr, "replication")
            .get("ferrokv_master_link_error")
            .filter(|e| e.contains("old dataset kept"))
            .cloned()
    });
    assert_eq!(
        dataset(r.addr),
        before,
        "old data must survive an interrupted full sync"
    );
    // A payload that arrives whole but is not a valid snapshot: refused,
    // the old data stays.
    let (w, rd) = fake_primary_handshake(
        &fake,
        "+FULLRESYNC 1111111111111111111111111111111111111111 1000\r\n\
         $EOF:abcdefghijabcdefghijabcdefghijabcdefghij\r\nnot a snapshot at all, but complete\
         abcdefghijabcdefghijabcdefghijabcdefghij",
    );
    wait_for("payload rejected", SYNC_TIMEOUT, || {
        info(r.addr, "replication")
            .get("ferrokv_master_link_error")
            .filter(|e| e.contains("payload rejected"))
            .cloned()
    });
    drop((w, rd));
    assert_eq!(dataset(r.addr), before);
    assert_eq!(rc.cmd(&["REPLICAOF", "NO", "ONE"]), Frame::Simple("OK".into()));
    assert_eq!(dataset(r.addr), before);
}

#[test]
fn chained_replica_gets_the_same_stream_and_offsets() {
    let a = primary();
    load(a.addr, "k", 300);
    let b = replica_of(&a);
    wait_synced(a.addr, b.addr);
    let c = server_with(ServeArgs {
        replicaof: Some(vec!["127.0.0.1".into(), b.addr.port().to_string()]),
        ..Default::default()
    });
    wait_synced(b.addr, c.addr);
    load(a.addr, "more", 300);
    load_types(a.addr, "t", 50, true);
    wait_synced(a.addr, b.addr);
    wait_synced(b.addr, c.addr);
    assert_eq!(
        num(a.addr, "replication", "master_repl_offset"),
        num(c.addr, "replication", "master_repl_offset")
    );
    assert_eq!(digest(a.addr), digest(c.addr));
    assert_eq!(
        field(c.addr, "replication", "master_replid"),
        field(a.addr, "replication", "master_replid")
    );
}

#[test]
fn replica_slower_than_the_backlog_is_disconnected() {
    let p = server_with(ServeArgs {
        repl_backlog_size: Some("16kb".into()),
        ..Default::default()
    });
    // A replica that takes its full sync, then stops reading.
    let mut stream = c_stream(p.addr);
    stream.write_all(&RawClient::encode(&["PSYNC", "?", "-1"])).unwrap();
    let mut rd = std::io::BufReader::new(stream.try_clone().unwrap());
    assert!(read_line(&mut rd).starts_with("+FULLRESYNC"));
    let mark = read_line(&mut rd).trim_start_matches("$EOF:").to_string();
    let mut payload = Vec::new();
    while !payload.ends_with(mark.as_bytes()) {
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut rd, &mut b).unwrap();
        payload.push(b[0]);
    }
    wait_for("replica online", SYNC_TIMEOUT, || {
        field(p.addr, "replication", "slave0")
            .contains("state=online")
            .then_some(())
    });
    // Far more than the socket buffers and the backlog can hold.
    let value = "v".repeat(1000);
    let mut c = RawClient::connect(p.addr);
    for i in 0..30_000 {
        c.send(&["SET", &format!("k{}", i % 100), &value]);
        if i % 1000 == 999 {
            for _ in 0..1000 {
                c.read();
            }
        }
    }
    // Drain: the primary must have given up on us and closed the stream.
    stream.set_read_timeout(Some(SYNC_TIMEOUT)).unwrap();
    let mut sink = Vec::new();
    let closed = std::io::Read::read_to_end(&mut rd, &mut sink).is_ok();
    assert!(closed, "the primary must close a replica that fell out of the backlog");
    assert_eq!(num(p.addr, "stats", "ferrokv_backlog_disconnects"), 1);
    assert_eq!(num(p.addr, "replication", "connected_slaves"), 0);
}

#[test]
fn replica_persists_the_stream_and_resumes_partially_after_a_restart() {
    let p = primary();
    load(p.addr, "k", 500);
    let dir = support::TempDir::new("replica-aof");
    let replica_args = || ServeArgs {
        dir: Some(dir.0.clone()),
        appendonly: Some("yes".into()),
        replicaof: Some(vec!["127.0.0.1".into(), p.addr.port().to_string()]),
        ..Default::default()
    };
    let r = server_with(replica_args());
    wait_synced(p.addr, r.addr);
    // After the full sync the replica's log restarts from a base of the new
    // dataset; what follows arrives through the stream and is logged too.
    load(p.addr, "streamed", 300);
    wait_synced(p.addr, r.addr);
    assert_eq!(field(r.addr, "persistence", "aof_last_write_status"), "ok");
    let offset = num(r.addr, "replication", "master_repl_offset");
    let want = digest(p.addr);
    drop(r);
    // Restarted, it has everything up to its offset from its own disk...
    let r = server_with(ServeArgs {
        replicaof: None,
        ..replica_args()
    });
    assert_eq!(num(r.addr, "replication", "master_repl_offset"), offset);
    assert_eq!(digest(r.addr), want);
    // ...and continues from there.
    load(p.addr, "later", 100);
    let mut rc = RawClient::connect(r.addr);
    assert_eq!(
        rc.cmd(&["REPLICAOF", "127.0.0.1", &p.addr.port().to_string()]),
        Frame::Simple("OK".into())
    );
    wait_synced(p.addr, r.addr);
    assert_eq!(
        num(p.addr, "stats", "sync_full"),
        1,
        "the restarted replica resumed partially"
    );
    assert_eq!(digest(p.addr), digest(r.addr));
}

#[test]
fn replica_authenticates_with_masterauth() {
    let p = server_with(ServeArgs {
        requirepass: Some("s3cret".into()),
        ..Default::default()
    });
    let port = p.addr.port().to_string();
    let without = server_with(ServeArgs {
        replicaof: Some(vec!["127.0.0.1".into(), port.clone()]),
        ..Default::default()
    });
    let with = server_with(ServeArgs {
        replicaof: Some(vec!["127.0.0.1".into(), port]),
        masterauth: Some("s3cret".into()),
        ..Default::default()
    });
    wait_for("authenticated replica up", SYNC_TIMEOUT, || {
        (field(with.addr, "replication", "master_link_status") == "up").then_some(())
    });
    let err = wait_for("refusal reported", SYNC_TIMEOUT, || {
        info(without.addr, "replication")
            .get("ferrokv_master_link_error")
            .cloned()
    });
    assert!(err.contains("NOAUTH"), "{err}");
    assert_eq!(field(without.addr, "replication", "master_link_status"), "down");
}

/// A client blocked on a primary that becomes a replica is unblocked with an
/// error and disconnected, as Redis does; it must never be served by the new
/// primary's stream (that would pop on the replica alone and fork it).
#[test]
fn demotion_unblocks_blocked_clients_and_the_replica_stays_identical() {
    let a = primary();
    let b = primary();
    let mut blocked = RawClient::connect(a.addr);
    blocked.set_timeout(Duration::from_secs(10));
    blocked.send(&["BLPOP", "q", "0"]);
    let mut xblocked = RawClient::connect(a.addr);
    xblocked.set_timeout(Duration::from_secs(10));
    let mut ac = RawClient::connect(a.addr);
    assert_eq!(ac.cmd(&["XADD", "s", "1-1", "f", "v"]), Frame::bulk("1-1"));
    assert_eq!(ac.cmd(&["XGROUP", "CREATE", "s", "g", "$"]), Frame::Simple("OK".into()));
    xblocked.send(&["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"]);
    wait_for("two blocked clients", SYNC_TIMEOUT, || {
        (num(a.addr, "clients", "blocked_clients") == 2).then_some(())
    });
    assert_eq!(
        ac.cmd(&["REPLICAOF", "127.0.0.1", &b.addr.port().to_string()]),
        Frame::Simple("OK".into())
    );
    let changed = "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)";
    for c in [&mut blocked, &mut xblocked] {
        assert_eq!(c.read(), Frame::Error(changed.into()));
        assert!(c.try_read().is_err(), "the connection is closed after the error");
    }
    assert_eq!(num(a.addr, "clients", "blocked_clients"), 0);
    let mut bc = RawClient::connect(b.addr);
    assert_eq!(bc.cmd(&["RPUSH", "q", "x", "y"]), Frame::Int(2));
    wait_synced(b.addr, a.addr);
    assert_eq!(ac.cmd(&["LLEN", "q"]), Frame::Int(2));
    assert_eq!(digest(a.addr), digest(b.addr));
}
