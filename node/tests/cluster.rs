//! Cluster mode: topology validation and epochs, Redis 7 reply formats
//! (differential against a real Redis 7 cluster of the same shape), MOVED /
//! CROSSSLOT / READONLY routing, and real cluster clients — the `redis`
//! crate's cluster client, `redis-cli -c` and redis-py's `RedisCluster` —
//! against a 3-shard cluster of `ferrokv-node` processes started by the
//! driver library the operator uses.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferrokv_node::cluster::driver::{self, LocalCluster};
use ferrokv_node::cluster::{Node, Role, Shard, Topology};
use ferrokv_node::config::ServeArgs;
use ferrokv_node::slot::key_slot;
use support::{Frame, RawClient, RedisServer, Server, TempDir, redis_server, server_with, wait_for};

fn cluster_node(dir: &Path) -> Server {
    server_with(ServeArgs {
        cluster_enabled: Some("yes".into()),
        dir: Some(dir.to_path_buf()),
        ..Default::default()
    })
}

/// A bulk or verbatim string's text (CLUSTER NODES/INFO are verbatim in RESP3).
fn bulk_string(f: Frame) -> String {
    match f {
        Frame::Bulk(b) => String::from_utf8(b).unwrap(),
        Frame::Verbatim(b) if b.starts_with(b"txt:") => String::from_utf8(b[4..].to_vec()).unwrap(),
        other => panic!("expected a bulk string, got {other:?}"),
    }
}

fn myid(addr: SocketAddr) -> String {
    bulk_string(RawClient::connect(addr).cmd(&["CLUSTER", "MYID"]))
}

fn set_topology(addr: SocketAddr, t: &Topology) -> Frame {
    RawClient::connect(addr).cmd(&["CLUSTER", "SETTOPOLOGY", &t.epoch.to_string(), &t.to_json()])
}

/// Redis' layout for 3 masters (what `redis-cli --cluster create` assigns),
/// with node 3 a replica of node 0.
const RANGES: [[u16; 2]; 3] = [[0, 5460], [5461, 10922], [10923, 16383]];

fn topology_for(epoch: u64, ids: &[String], addrs: &[SocketAddr]) -> Topology {
    let nodes = ids
        .iter()
        .zip(addrs)
        .map(|(id, a)| Node {
            id: id.clone(),
            ip: a.ip().to_string(),
            port: a.port(),
            cport: Some(a.port() + 10000),
        })
        .collect();
    Topology {
        epoch,
        nodes,
        shards: (0..3)
            .map(|s| Shard {
                slots: vec![RANGES[s]],
                primary: ids[s].clone(),
                replicas: if s == 0 { vec![ids[3].clone()] } else { vec![] },
            })
            .collect(),
    }
}

/// Four in-process ferrokv nodes: shards 0..3 primaries, node 3 replica of 0.
struct Ferro {
    servers: Vec<Server>,
    ids: Vec<String>,
    addrs: Vec<SocketAddr>,
    topology: Topology,
    _dirs: Vec<TempDir>,
}

fn ferro_cluster() -> Ferro {
    let dirs: Vec<TempDir> = (0..4).map(|i| TempDir::new(&format!("cluster{i}"))).collect();
    let servers: Vec<Server> = dirs.iter().map(|d| cluster_node(&d.0)).collect();
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let ids: Vec<String> = addrs.iter().map(|&a| myid(a)).collect();
    let topology = topology_for(1, &ids, &addrs);
    for &a in &addrs {
        assert_eq!(set_topology(a, &topology), Frame::Simple("OK".into()));
    }
    Ferro {
        servers,
        ids,
        addrs,
        topology,
        _dirs: dirs,
    }
}

/// A real Redis 7 cluster of the same shape, formed by hand (ADDSLOTSRANGE,
/// MEET, REPLICATE) and waited on until every node agrees.
struct RedisCluster {
    servers: Vec<RedisServer>,
    ids: Vec<String>,
}

fn redis_cluster() -> RedisCluster {
    let servers: Vec<RedisServer> = (0..4)
        .map(|_| redis_server(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]))
        .collect();
    let ids: Vec<String> = servers.iter().map(|s| myid(s.addr)).collect();
    for (s, r) in servers.iter().zip(RANGES) {
        let mut c = RawClient::connect(s.addr);
        let reply = c.cmd(&["CLUSTER", "ADDSLOTSRANGE", &r[0].to_string(), &r[1].to_string()]);
        assert_eq!(reply, Frame::Simple("OK".into()));
    }
    let first = servers[0].addr;
    for s in &servers[1..] {
        let reply = RawClient::connect(s.addr).cmd(&["CLUSTER", "MEET", "127.0.0.1", &first.port().to_string()]);
        assert_eq!(reply, Frame::Simple("OK".into()));
    }
    let knows_all = |addr: SocketAddr| {
        let text = bulk_string(RawClient::connect(addr).cmd(&["CLUSTER", "NODES"]));
        text.lines().count() == 4 && !text.contains("handshake") && !text.contains("noaddr")
    };
    wait_for("redis nodes to meet", Duration::from_secs(30), || {
        servers.iter().all(|s| knows_all(s.addr)).then_some(())
    });
    let reply = RawClient::connect(servers[3].addr).cmd(&["CLUSTER", "REPLICATE", &ids[0]]);
    assert_eq!(reply, Frame::Simple("OK".into()));
    wait_for("redis cluster to settle", Duration::from_secs(30), || {
        servers
            .iter()
            .all(|s| {
                let mut c = RawClient::connect(s.addr);
                let info = bulk_string(c.cmd(&["CLUSTER", "INFO"]));
                let shards = c.cmd(&["CLUSTER", "SHARDS"]);
                info.contains("cluster_state:ok")
                    && count(&shards, &Frame::bulk("online")) == 4
                    && bulk_string(c.cmd(&["CLUSTER", "NODES"])).contains(&format!("slave {}", ids[0]))
            })
            .then_some(())
    });
    RedisCluster { servers, ids }
}

/// Occurrences of `x` anywhere in `f`.
fn count(f: &Frame, x: &Frame) -> usize {
    match f {
        _ if f == x => 1,
        Frame::Array(v) => v.iter().map(|e| count(e, x)).sum(),
        Frame::Map(v) => v.iter().map(|(k, e)| count(k, x) + count(e, x)).sum(),
        _ => 0,
    }
}

/// Replace node IDs and ports by their position so two clusters compare.
fn normalize(f: &Frame, ids: &[String], ports: &[u16]) -> Frame {
    let text = |s: &str| {
        let mut s = s.to_string();
        for (i, id) in ids.iter().enumerate() {
            s = s.replace(id, &format!("<id{i}>"));
        }
        for (i, p) in ports.iter().enumerate() {
            s = s.replace(&format!(":{}@{}", p, p + 10000), &format!(":<port{i}>@<cport{i}>"));
        }
        s
    };
    match f {
        Frame::Bulk(b) => Frame::Bulk(text(&String::from_utf8_lossy(b)).into_bytes()),
        Frame::Verbatim(b) => Frame::Verbatim(text(&String::from_utf8_lossy(b)).into_bytes()),
        Frame::Int(n) => match ports.iter().position(|&p| p as i64 == *n && *n > 16383) {
            Some(i) => Frame::Simple(format!("<port{i}>")),
            None => Frame::Int(*n),
        },
        Frame::Array(v) => Frame::Array(v.iter().map(|x| normalize(x, ids, ports)).collect()),
        Frame::Map(v) => Frame::Map(
            v.iter()
                .map(|(k, x)| (normalize(k, ids, ports), normalize(x, ids, ports)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `replication-offset` values differ between any two servers: zero them.
fn zero_offsets(f: &Frame) -> Frame {
    match f {
        Frame::Array(v) => {
            let mut out = Vec::with_capacity(v.len());
            let mut i = 0;
            while i < v.len() {
                out.push(zero_offsets(&v[i]));
                if v[i] == Frame::bulk("replication-offset") && i + 1 < v.len() {
                    out.push(Frame::Int(0));
                    i += 1;
                }
                i += 1;
            }
            Frame::Array(out)
        }
        other => other.clone(),
    }
}

/// `CLUSTER NODES` lines, sorted, with ping/pong times and config epochs
/// (gossip artefacts ferrokv does not have) blanked.
fn nodes_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(' ').collect();
            for i in [4, 5, 6] {
                if i < f.len() {
                    f[i] = "_";
                }
            }
            f.join(" ")
        })
        .collect();
    lines.sort();
    lines
}

fn info_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn topology_commands_match_a_real_redis_cluster() {
    let ferro = ferro_cluster();
    let redis = redis_cluster();
    let fports: Vec<u16> = ferro.addrs.iter().map(|a| a.port()).collect();
    let rports: Vec<u16> = redis.servers.iter().map(|s| s.addr.port()).collect();
    for node in [0, 3] {
        let mut ours = RawClient::connect(ferro.addrs[node]);
        let mut theirs = RawClient::connect(redis.servers[node].addr);
        for proto in ["2", "3"] {
            ours.cmd(&["HELLO", proto]);
            theirs.cmd(&["HELLO", proto]);
            let both = |args: &[&str], ours: &mut RawClient, theirs: &mut RawClient| {
                (
                    normalize(&ours.cmd(args), &ferro.ids, &fports),
                    normalize(&theirs.cmd(args), &redis.ids, &rports),
                )
            };
            let (a, b) = both(&["CLUSTER", "SLOTS"], &mut ours, &mut theirs);
            assert_eq!(
                a, b,
                "CLUSTER SLOTS (RESP{proto}) differs (left: ferrokv, right: redis)"
            );

            let (a, b) = both(&["CLUSTER", "SHARDS"], &mut ours, &mut theirs);
            if proto == "2" {
                // Redis lists shards in hash-table order: compare as a set.
                let (a, b) = (zero_offsets(&a).sorted(), zero_offsets(&b).sorted());
                assert_eq!(a, b, "CLUSTER SHARDS differs (left: ferrokv, right: redis)");
            } else {
                assert!(
                    matches!(&a, Frame::Array(v) if v.len() == 3 && v.iter().all(|s| matches!(s, Frame::Map(_)))),
                    "{a:?}"
                );
            }

            let (a, b) = both(&["CLUSTER", "NODES"], &mut ours, &mut theirs);
            assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b), "{a:?} vs {b:?}");
            let text = bulk_string;
            assert_eq!(nodes_lines(&text(a)), nodes_lines(&text(b)), "CLUSTER NODES differs");

            let (a, b) = both(&["CLUSTER", "INFO"], &mut ours, &mut theirs);
            let (a, b) = (info_map(&text(a)), info_map(&text(b)));
            for k in a.keys() {
                assert!(b.contains_key(k), "ferrokv's CLUSTER INFO field {k} is not Redis'");
            }
            for k in [
                "cluster_state",
                "cluster_slots_assigned",
                "cluster_slots_ok",
                "cluster_slots_pfail",
                "cluster_slots_fail",
                "cluster_known_nodes",
                "cluster_size",
            ] {
                assert_eq!(a.get(k), b.get(k), "CLUSTER INFO {k}");
            }
        }
        // Same redirections and errors as Redis for keys of every shard.
        let mut ours = RawClient::connect(ferro.addrs[node]);
        let mut theirs = RawClient::connect(redis.servers[node].addr);
        for args in [
            &["GET", "foo"][..],
            &["SET", "a", "1"],
            &["GET", "b"],
            &["MSET", "a", "1", "b", "2"],
            &["MGET", "{t}1", "{t}2"],
            &["SELECT", "1"],
            &["SELECT", "0"],
            &["CLUSTER", "KEYSLOT", "foo"],
            &["CLUSTER", "MYID", "x"],
            &["READONLY"],
            &["GET", "a"],
            &["SET", "a", "1"],
            &["READWRITE"],
            &["GET", "a"],
            &["ASKING"],
            &["INFO", "cluster"],
        ] {
            let a = normalize(&ours.cmd(args), &ferro.ids, &fports);
            let b = normalize(&theirs.cmd(args), &redis.ids, &rports);
            let port_of = |f: &Frame, ports: &[u16]| match f {
                Frame::Error(e) => {
                    let mut e = e.clone();
                    for (i, p) in ports.iter().enumerate() {
                        e = e.replace(&format!(":{p}"), &format!(":<port{i}>"));
                    }
                    Frame::Error(e)
                }
                other => other.clone(),
            };
            assert_eq!(
                port_of(&a, &fports),
                port_of(&b, &rports),
                "{args:?} on node {node} differs (left: ferrokv, right: redis)"
            );
        }
    }
}

#[test]
fn invalid_topologies_are_refused_with_clear_errors() {
    let dir = TempDir::new("cluster-bad");
    let server = cluster_node(&dir.0);
    let id = myid(server.addr);
    let other = format!("{:040x}", 7);
    let mut c = RawClient::connect(server.addr);
    let node = |id: &str, port: u16| format!(r#"{{"id":"{id}","ip":"127.0.0.1","port":{port}}}"#);
    let me = node(&id, server.addr.port());
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "invalid topology payload"),
        (
            format!(r#"{{"epoch":1,"nodes":[{me}],"shards":[{{"slots":[[0,100]],"primary":"{id}"}}]}}"#),
            "slots 101-16383 are not assigned",
        ),
        (
            format!(
                r#"{{"epoch":1,"nodes":[{me},{}],"shards":[{{"slots":[[0,9000]],"primary":"{id}"}},{{"slots":[[9000,16383]],"primary":"{other}"}}]}}"#,
                node(&other, 1)
            ),
            "slot 9000 is assigned to shard 0 and shard 1",
        ),
        (
            format!(
                r#"{{"epoch":1,"nodes":[{me}],"shards":[{{"slots":[[0,16383]],"primary":"{id}","replicas":["{other}"]}}]}}"#
            ),
            "names unknown node",
        ),
        (
            format!(r#"{{"epoch":1,"nodes":[{me},{me}],"shards":[{{"slots":[[0,16383]],"primary":"{id}"}}]}}"#),
            "duplicate node id",
        ),
        (
            format!(
                r#"{{"epoch":1,"nodes":[{me},{}],"shards":[{{"slots":[[0,16383]],"primary":"{id}"}},{{"primary":"{id}"}}]}}"#,
                node(&other, 1)
            ),
            "in more than one shard",
        ),
        (
            format!(
                r#"{{"epoch":1,"nodes":[{}],"shards":[{{"slots":[[0,16383]],"primary":"NOTHEX"}}]}}"#,
                node("NOTHEX", 1)
            ),
            "invalid node id 'NOTHEX'",
        ),
        (
            format!(
                r#"{{"epoch":1,"nodes":[{}],"shards":[{{"slots":[[0,16383]],"primary":"{other}"}}]}}"#,
                node(&other, 1)
            ),
            "does not contain this node",
        ),
        (
            format!(r#"{{"epoch":2,"nodes":[{me}],"shards":[{{"slots":[[0,16383]],"primary":"{id}"}}]}}"#),
            "does not match the command's epoch 1",
        ),
        (
            format!(r#"{{"epoch":1,"nodes":[{me}],"shards":[{{"slots":[[0,16384]],"primary":"{id}"}}]}}"#),
            "invalid slot range 0-16384",
        ),
    ];
    for (payload, want) in cases {
        match c.cmd(&["CLUSTER", "SETTOPOLOGY", "1", &payload]) {
            Frame::Error(e) => assert!(
                e.starts_with("ERR ") && e.contains(want),
                "{e:?} should contain {want:?}"
            ),
            other => panic!("{payload} was accepted: {other:?}"),
        }
    }
    // Nothing was applied: still no topology.
    assert_eq!(c.cmd(&["CLUSTER", "GETTOPOLOGY"]), Frame::Null);
    let info = bulk_string(c.cmd(&["CLUSTER", "INFO"]));
    assert!(
        info.contains("cluster_state:fail") && info.contains("cluster_current_epoch:0"),
        "{info}"
    );
    assert_eq!(
        c.cmd(&["GET", "k"]),
        Frame::Error("CLUSTERDOWN The cluster is down".into())
    );
    assert_eq!(
        c.cmd(&["CLUSTER", "SETTOPOLOGY", "x", "{}"]),
        Frame::Error("ERR invalid topology epoch".into())
    );
}

fn single(epoch: u64, id: &str, addr: SocketAddr, cport: Option<u16>) -> Topology {
    Topology {
        epoch,
        nodes: vec![Node {
            id: id.to_string(),
            ip: addr.ip().to_string(),
            port: addr.port(),
            cport,
        }],
        shards: vec![Shard {
            slots: vec![[0, 16383]],
            primary: id.to_string(),
            replicas: vec![],
        }],
    }
}

#[test]
fn epochs_fence_and_the_topology_survives_a_restart() {
    let dir = TempDir::new("cluster-epoch");
    let server = cluster_node(&dir.0);
    let addr = server.addr;
    let id = myid(addr);
    assert_eq!(
        set_topology(addr, &single(5, &id, addr, None)),
        Frame::Simple("OK".into())
    );
    // Same epoch, same topology: idempotent.
    assert_eq!(
        set_topology(addr, &single(5, &id, addr, None)),
        Frame::Simple("OK".into())
    );
    // Same epoch, different topology: refused.
    match set_topology(addr, &single(5, &id, addr, Some(1))) {
        Frame::Error(e) => assert!(e.contains("already held with a different layout"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Older epoch: refused, before the payload is even looked at.
    let reply = RawClient::connect(addr).cmd(&["CLUSTER", "SETTOPOLOGY", "4", "garbage"]);
    assert_eq!(
        reply,
        Frame::Error("ERR stale topology epoch 4 (held epoch is 5)".into())
    );
    let mut c = RawClient::connect(addr);
    assert_eq!(c.cmd(&["SET", "k", "v"]), Frame::Simple("OK".into()));
    let info = bulk_string(c.cmd(&["CLUSTER", "INFO"]));
    assert!(
        info.contains("cluster_state:ok\r\n") && info.contains("cluster_current_epoch:5\r\n"),
        "{info}"
    );
    drop(c);
    drop(server);

    // Same data directory: same ID, same epoch, still fenced.
    let server = cluster_node(&dir.0);
    assert_eq!(myid(server.addr), id);
    let mut c = RawClient::connect(server.addr);
    let info = bulk_string(c.cmd(&["CLUSTER", "INFO"]));
    assert!(info.contains("cluster_current_epoch:5\r\n"), "{info}");
    let reply = c.cmd(&["CLUSTER", "SETTOPOLOGY", "3", "{}"]);
    assert_eq!(
        reply,
        Frame::Error("ERR stale topology epoch 3 (held epoch is 5)".into())
    );
    // Ownership is by node ID, not address: the restarted node (on a new
    // port) still serves its slots. (Whether `k` survived is persistence's
    // business, not asserted here.)
    let served = |c: &mut RawClient| !c.cmd(&["GET", "k"]).is_error();
    assert!(served(&mut c));
    assert_eq!(
        set_topology(server.addr, &single(6, &id, server.addr, None)),
        Frame::Simple("OK".into())
    );
    assert!(served(&mut c));
    let info = bulk_string(c.cmd(&["CLUSTER", "INFO"]));
    assert!(info.contains("cluster_current_epoch:6\r\n"), "{info}");
}

/// A key name whose slot belongs to shard `s` of [`RANGES`].
fn key_in_shard(s: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}{i}"))
        .find(|k| {
            let slot = key_slot(k.as_bytes());
            RANGES[s][0] <= slot && slot <= RANGES[s][1]
        })
        .unwrap()
}

#[test]
fn moved_crossslot_multi_and_replica_reads() {
    let f = ferro_cluster();
    let k0 = key_in_shard(0, "a");
    let k1 = key_in_shard(1, "b");
    let moved = |k: &str, shard: usize| format!("MOVED {} {}", key_slot(k.as_bytes()), f.addrs[shard]);
    let mut p0 = RawClient::connect(f.addrs[0]);
    assert_eq!(p0.cmd(&["SET", &k0, "v0"]), Frame::Simple("OK".into()));
    assert_eq!(p0.cmd(&["SET", &k1, "v1"]), Frame::Error(moved(&k1, 1)));
    assert_eq!(p0.cmd(&["GET", &k1]), Frame::Error(moved(&k1, 1)));
    assert_eq!(
        RawClient::connect(f.addrs[1]).cmd(&["SET", &k1, "v1"]),
        Frame::Simple("OK".into())
    );
    // Multi-key commands: one slot or CROSSSLOT; keyless commands anywhere.
    let crossslot = Frame::Error("CROSSSLOT Keys in request don't hash to the same slot".into());
    assert_eq!(
        p0.cmd(&["MSET", "{x}a", "1", "{x}b", "2"]).is_error(),
        key_slot(b"x") > RANGES[0][1]
    );
    assert_eq!(p0.cmd(&["MGET", &k0, &k1]), crossslot);
    assert_eq!(p0.cmd(&["DEL", "a", "b"]), crossslot);
    assert_eq!(p0.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert!(matches!(p0.cmd(&["DBSIZE"]), Frame::Int(1)));
    assert_eq!(p0.cmd(&["SPUBLISH", &k1, "m"]), Frame::Error(moved(&k1, 1)));
    assert_eq!(
        RawClient::connect(f.addrs[0]).cmd(&["SSUBSCRIBE", &k1]),
        Frame::Error(moved(&k1, 1))
    );
    assert_eq!(RawClient::connect(f.addrs[0]).cmd(&["SSUBSCRIBE", &k0, &k1]), crossslot);
    // SORT routes by its key; patterns would read other slots' keys, so
    // BY with a pattern and GET are refused as in Redis Cluster.
    assert_eq!(p0.cmd(&["SORT", &k1]), Frame::Error(moved(&k1, 1)));
    assert!(matches!(p0.cmd(&["SORT", &k0, "BY", "nosort"]), Frame::Error(e) if e.starts_with("WRONGTYPE")));
    assert_eq!(
        p0.cmd(&["SORT", &k0, "BY", "w_*"]),
        Frame::Error("ERR BY option of SORT denied in Cluster mode.".into())
    );
    assert_eq!(
        p0.cmd(&["SORT", &k0, "GET", "#"]),
        Frame::Error("ERR GET option of SORT denied in Cluster mode.".into())
    );
    assert_eq!(
        p0.cmd(&["SELECT", "1"]),
        Frame::Error("ERR SELECT is not allowed in cluster mode".into())
    );

    // MULTI: checked at queue time; a redirect there aborts EXEC.
    assert_eq!(p0.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(p0.cmd(&["SET", &k0, "x"]), Frame::Simple("QUEUED".into()));
    assert_eq!(p0.cmd(&["SET", &k1, "x"]), Frame::Error(moved(&k1, 1)));
    assert!(matches!(p0.cmd(&["EXEC"]), Frame::Error(e) if e.starts_with("EXECABORT")));
    // Commands queued for different slots fail together at EXEC.
    let k0b = (0..)
        .map(|i| format!("c{i}"))
        .find(|k| key_slot(k.as_bytes()) <= RANGES[0][1] && key_slot(k.as_bytes()) != key_slot(k0.as_bytes()))
        .unwrap();
    assert_eq!(p0.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(p0.cmd(&["SET", &k0, "x"]), Frame::Simple("QUEUED".into()));
    assert_eq!(p0.cmd(&["SET", &k0b, "x"]), Frame::Simple("QUEUED".into()));
    assert_eq!(p0.cmd(&["EXEC"]), crossslot);
    assert_eq!(p0.cmd(&["GET", &k0]), Frame::bulk("v0"));
    assert_eq!(p0.cmd(&["EXEC"]), Frame::Error("ERR EXEC without MULTI".into()));

    // The replica (node 3, shard 0): everything goes to its primary, except
    // reads for READONLY connections.
    let mut r = RawClient::connect(f.addrs[3]);
    assert_eq!(r.cmd(&["GET", &k0]), Frame::Error(moved(&k0, 0)));
    assert_eq!(r.cmd(&["READONLY"]), Frame::Simple("OK".into()));
    // A replica answers -LOADING while it loads a full sync, as Redis does,
    // and it may not have started that sync yet when the topology is set:
    // wait until it streams from its primary (`master_link_status:up`,
    // reached only after the snapshot is loaded), so that nothing below can
    // meet a load that began between two commands.
    wait_for(
        "the replica's link up",
        Duration::from_secs(20),
        || match RawClient::connect(f.addrs[3]).cmd(&["INFO", "replication"]) {
            Frame::Bulk(b) => String::from_utf8_lossy(&b)
                .contains("master_link_status:up")
                .then_some(()),
            other => panic!("INFO replication: {other:?}"),
        },
    );
    // Served locally; its value depends on whether replication has caught up.
    let local = r.cmd(&["GET", &k0]);
    assert!(matches!(local, Frame::Null | Frame::Bulk(_)), "{local:?}");
    assert_eq!(r.cmd(&["SET", &k0, "w"]), Frame::Error(moved(&k0, 0)));
    assert_eq!(r.cmd(&["GET", &k1]), Frame::Error(moved(&k1, 1)));
    assert_eq!(r.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(r.cmd(&["GET", &k0]), Frame::Simple("QUEUED".into()));
    let exec = r.cmd(&["EXEC"]);
    assert!(
        matches!(&exec, Frame::Array(v) if v.len() == 1 && !v[0].is_error()),
        "{exec:?}"
    );
    assert_eq!(r.cmd(&["READWRITE"]), Frame::Simple("OK".into()));
    assert_eq!(r.cmd(&["GET", &k0]), Frame::Error(moved(&k0, 0)));
    assert_eq!(r.cmd(&["READONLY"]), Frame::Simple("OK".into()));
    assert_eq!(r.cmd(&["RESET"]), Frame::Simple("RESET".into()));
    assert_eq!(r.cmd(&["GET", &k0]), Frame::Error(moved(&k0, 0)));

    // Each node took the role the topology gives it.
    let role = |i: usize| f.servers[i].state.cluster.role.lock().clone();
    assert_eq!(role(0), Some((Role::Primary, 1)));
    assert_eq!(role(1), Some((Role::Primary, 1)));
    let primary = Role::Replica {
        host: f.addrs[0].ip().to_string(),
        port: f.addrs[0].port(),
    };
    assert_eq!(role(3), Some((primary, 1)));
    assert_eq!(f.topology.epoch, 1);
}

#[test]
fn cluster_mode_off_answers_as_redis_standalone() {
    let mut d = support::Diff::new();
    for args in [
        &["READONLY"][..],
        &["READWRITE"],
        &["ASKING"],
        &["CLUSTER", "INFO"],
        &["CLUSTER", "SLOTS"],
        &["CLUSTER", "MYID"],
        &["CLUSTER", "SETTOPOLOGY", "1", "{}"],
        &["MSET", "a", "1", "b", "2"],
        &["INFO", "cluster"],
    ] {
        let (a, b) = d.both(args);
        assert!(a.is_error() == b.is_error(), "{args:?}: {a:?} vs {b:?}");
        if args[0] != "CLUSTER" || args[1] != "SETTOPOLOGY" {
            assert_eq!(a, b, "{args:?}");
        }
    }
}

fn node_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferrokv-node"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn real_cluster_clients_follow_redirects() {
    let rt = runtime();
    let dir = TempDir::new("cluster-clients");
    let cluster = rt
        .block_on(LocalCluster::start(node_bin(), &dir.0, 3, 1))
        .expect("local cluster starts");
    let addrs = cluster.addrs();
    let urls: Vec<String> = addrs.iter().map(|a| format!("redis://{a}/")).collect();

    // The redis crate's cluster client (sync).
    let client = redis::cluster::ClusterClient::new(urls.clone()).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..300 {
        let _: () = redis::cmd("SET").arg(format!("rs:{i}")).arg(i).query(&mut con).unwrap();
    }
    for i in 0..300 {
        let v: i64 = redis::cmd("GET").arg(format!("rs:{i}")).query(&mut con).unwrap();
        assert_eq!(v, i);
    }
    let _: () = redis::cmd("MSET")
        .arg("{u}a")
        .arg("1")
        .arg("{u}b")
        .arg("2")
        .query(&mut con)
        .unwrap();
    let v: Vec<String> = redis::cmd("MGET").arg("{u}a").arg("{u}b").query(&mut con).unwrap();
    assert_eq!(v, vec!["1", "2"]);
    // Keys really are spread: every shard's primary holds some of them.
    let primaries: Vec<SocketAddr> = cluster.shards.iter().map(|s| s[0].addr).collect();
    for a in &primaries {
        let n = RawClient::connect(*a).cmd(&["DBSIZE"]);
        assert!(matches!(n, Frame::Int(n) if n > 50), "{a}: {n:?}");
    }

    // The async cluster client.
    rt.block_on(async {
        let client = redis::cluster::ClusterClient::new(urls.clone()).unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        for i in 0..100 {
            let _: () = redis::cmd("SET")
                .arg(format!("ra:{i}"))
                .arg(i)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        for i in 0..100 {
            let v: i64 = redis::cmd("GET")
                .arg(format!("ra:{i}"))
                .query_async(&mut con)
                .await
                .unwrap();
            assert_eq!(v, i);
        }
    });

    // redis-cli -c: connected to shard 0, keys of every shard.
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-c", "-h", "127.0.0.1", "-p", &addrs[0].port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed (scripts/install-test-deps.sh)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for i in 0..20 {
        assert_eq!(cli(&["SET", &format!("cli:{i}"), &format!("v{i}")]), "OK");
        assert_eq!(cli(&["GET", &format!("cli:{i}")]), format!("v{i}"));
    }
    assert_eq!(cli(&["GET", "rs:7"]), "7");

    // redis-py's RedisCluster.
    let script = r#"
import sys
from redis.cluster import RedisCluster, ClusterNode
nodes = [ClusterNode(h, int(p)) for h, p in (a.rsplit(":", 1) for a in sys.argv[1:])]
rc = RedisCluster(startup_nodes=nodes, decode_responses=True)
for i in range(300):
    rc.set(f"py:{i}", i)
for i in range(300):
    assert rc.get(f"py:{i}") == str(i), i
assert rc.get("rs:42") == "42"
rc.mset_nonatomic({"py:a": "1", "py:b": "2"})
assert rc.mget_nonatomic(["py:a", "py:b"]) == ["1", "2"]
assert len(rc.get_primaries()) == 3
assert len(rc.get_replicas()) == 3
print("ok")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(addrs.iter().map(|a| a.to_string()))
        .output()
        .expect("python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "redis-py RedisCluster failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every node holds what the driver pushed last.
    for a in &addrs {
        let held = rt.block_on(driver::held_topology(&a.to_string())).unwrap();
        assert_eq!(held.as_ref(), Some(&cluster.topology), "{a}");
    }
    // The driver's own client sees the same layout the clients used.
    let slots = rt.block_on(async {
        let mut c = driver::Conn::connect(&addrs[1].to_string()).await.unwrap();
        c.ok(&[b"CLUSTER", b"SLOTS"]).await.unwrap()
    });
    assert!(matches!(&slots, driver::Value::Array(v) if v.len() == 3), "{slots:?}");
    // Failover is a new topology: shard 0's replica becomes its primary.
    let mut cluster = cluster;
    let old = cluster.topology.clone();
    let mut t = old.clone();
    t.epoch = 2;
    let s0 = &mut t.shards[0];
    std::mem::swap(&mut s0.primary, &mut s0.replicas[0]);
    rt.block_on(cluster.set_topology(t)).expect("epoch 2 accepted");
    let (old_primary, new_primary) = (cluster.shards[0][0].addr, cluster.shards[0][1].addr);
    let key = (0..)
        .map(|i| format!("f{i}"))
        .find(|k| key_slot(k.as_bytes()) <= 5000)
        .unwrap();
    assert_eq!(
        RawClient::connect(old_primary).cmd(&["SET", &key, "1"]),
        Frame::Error(format!("MOVED {} {}", key_slot(key.as_bytes()), new_primary))
    );
    assert_eq!(
        RawClient::connect(new_primary).cmd(&["SET", &key, "1"]),
        Frame::Simple("OK".into())
    );
    // The old layout cannot come back.
    match rt.block_on(driver::push_topology(&old)) {
        Err(driver::DriverError::Refused { msg, .. }) => assert!(msg.contains("stale topology epoch 1"), "{msg}"),
        other => panic!("stale push accepted: {other:?}"),
    }
    let held = rt.block_on(driver::held_topology(&old_primary.to_string())).unwrap();
    assert_eq!(held.map(|t| t.epoch), Some(2));
    let pids: HashMap<SocketAddr, Option<u32>> = cluster.shards.iter().flatten().map(|n| (n.addr, n.pid())).collect();
    assert!(pids.values().all(|p| p.is_some()));
    rt.block_on(cluster.stop());
}

#[test]
fn config_file_enables_cluster_mode() {
    let dir = TempDir::new("cluster-conf");
    let conf = dir.0.join("node.conf");
    std::fs::write(
        &conf,
        format!(
            "cluster-enabled yes\ndir {}\ncluster-config-file state.json\n",
            dir.0.display()
        ),
    )
    .unwrap();
    let server = server_with(ServeArgs {
        config: Some(conf),
        ..Default::default()
    });
    let id = myid(server.addr);
    let file = std::fs::read_to_string(dir.0.join("state.json")).unwrap();
    assert!(file.contains(&id), "{file}");
    let mut c = RawClient::connect(server.addr);
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "cluster-enabled"]),
        Frame::Array(vec![Frame::bulk("cluster-enabled"), Frame::bulk("yes")])
    );
    assert!(bulk_string(c.cmd(&["INFO", "cluster"])).contains("cluster_enabled:1"));
}

/// Clients blocked on a slot that moves away get `-MOVED` to its new owner
/// when the topology flips (Redis' `clusterRedirectBlockedClientIfNeeded`);
/// their connections stay usable. Waiters on slots that stay keep waiting.
#[test]
fn blocked_clients_of_a_slot_that_moves_are_redirected() {
    let f = ferro_cluster();
    let gone = key_in_shard(0, "gone");
    let stays = key_in_shard(0, "stays");
    let slot = key_slot(gone.as_bytes());
    assert_ne!(slot, key_slot(stays.as_bytes()));
    let mut moved_away = RawClient::connect(f.addrs[0]);
    moved_away.set_timeout(Duration::from_secs(10));
    moved_away.send(&["BLPOP", &gone, "0"]);
    let mut staying = RawClient::connect(f.addrs[0]);
    staying.set_timeout(Duration::from_secs(10));
    staying.send(&["BLPOP", &stays, "0"]);
    let mut c = RawClient::connect(f.addrs[0]);
    wait_for("two blocked clients", Duration::from_secs(10), || {
        let info = bulk_string(c.cmd(&["INFO", "clients"]));
        info.contains("blocked_clients:2").then_some(())
    });
    let mut t = f.topology.clone();
    t.epoch = 2;
    t.shards[0].slots = vec![[RANGES[0][0], slot - 1], [slot + 1, RANGES[0][1]]]
        .into_iter()
        .filter(|r| r[0] <= r[1])
        .collect();
    t.shards[1].slots.push([slot, slot]);
    for &a in &f.addrs {
        // The replica may still be loading its first full sync: -LOADING
        // asks the control plane to push again.
        wait_for("topology accepted", Duration::from_secs(10), || {
            match set_topology(a, &t) {
                Frame::Simple(ok) if ok == "OK" => Some(()),
                Frame::Error(e) if e.starts_with("LOADING") => None,
                other => panic!("SETTOPOLOGY on {a}: {other:?}"),
            }
        });
    }
    assert_eq!(moved_away.read(), Frame::Error(format!("MOVED {slot} {}", f.addrs[1])));
    assert_eq!(moved_away.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(c.cmd(&["RPUSH", &stays, "x"]), Frame::Int(1));
    assert_eq!(
        staying.read(),
        Frame::Array(vec![Frame::bulk(&stays), Frame::bulk("x")])
    );
}

/// Scripts and functions in cluster mode, against a real Redis 7 cluster of
/// the same shape: routing by declared keys (MOVED, CROSSSLOT), a script
/// touching a key another node serves, keys of two slots (refused unless the
/// script allows it, or has no shebang), the `no-cluster` flag.
#[test]
fn scripts_in_cluster_mode_match_a_real_redis_cluster() {
    let f = ferro_cluster();
    let r = redis_cluster();
    let k0 = key_in_shard(0, "a");
    let k1 = key_in_shard(1, "b");
    let k0b = (0..)
        .map(|i| format!("c{i}"))
        .find(|k| key_slot(k.as_bytes()) <= RANGES[0][1] && key_slot(k.as_bytes()) != key_slot(k0.as_bytes()))
        .unwrap();
    let lib = "#!lua name=clib
redis.register_function('get', function(keys) return redis.call('get', keys[1]) end)
redis.register_function('getarg', function(keys, args) return redis.call('get', args[1]) end)
redis.register_function('both', function(keys, args) redis.call('get', keys[1]); return redis.call('get', args[1]) end)
redis.register_function{function_name = 'anyslot', flags = {'allow-cross-slot-keys'},
  callback = function(keys, args) redis.call('get', keys[1]); return redis.call('get', args[1]) end}
redis.register_function{function_name = 'nocluster', flags = {'no-cluster'}, callback = function() return 1 end}
";
    let get = "return redis.call('get', KEYS[1])";
    let both = "redis.call('get', KEYS[1]); return redis.call('get', ARGV[1])";
    let cases: Vec<Vec<String>> = [
        vec!["SET", &k0, "v0"],
        vec!["SET", &k0b, "v0b"],
        vec!["EVAL", get, "1", &k0],
        vec!["EVAL", get, "1", &k1],
        vec!["EVAL", get, "2", &k0, &k0b],
        vec!["EVAL", "return redis.call('get', ARGV[1])", "0", &k1],
        vec!["EVAL", "return redis.call('set', ARGV[1], 'x')", "0", &k1],
        vec!["EVAL", both, "1", &k0, &k0b],
        vec!["EVAL", &format!("#!lua\n{both}"), "1", &k0, &k0b],
        vec![
            "EVAL",
            &format!("#!lua flags=allow-cross-slot-keys\n{both}"),
            "1",
            &k0,
            &k0b,
        ],
        vec!["EVAL", &format!("#!lua\n{both}"), "1", &k0, &k1],
        vec!["EVAL", "#!lua flags=no-cluster\nreturn 1", "0"],
        vec!["EVAL", "return redis.call('dbsize')", "0"],
        vec!["FUNCTION", "LOAD", lib],
        vec!["FCALL", "get", "1", &k0],
        vec!["FCALL", "get", "1", &k1],
        vec!["FCALL", "getarg", "0", &k1],
        vec!["FCALL", "both", "1", &k0, &k0b],
        vec!["FCALL", "anyslot", "1", &k0, &k0b],
        vec!["FCALL", "nocluster", "0"],
        vec!["FCALL_RO", "get", "1", &k0],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    // MOVED names an address: compare by node position.
    let place = |frame: Frame, addrs: &[SocketAddr]| match frame {
        Frame::Error(mut e) => {
            for (i, a) in addrs.iter().enumerate() {
                e = e.replace(&a.to_string(), &format!("<node{i}>"));
            }
            Frame::Error(e)
        }
        other => other,
    };
    let redis_addrs: Vec<SocketAddr> = r.servers.iter().map(|s| s.addr).collect();
    let mut ours = RawClient::connect(f.addrs[0]);
    let mut theirs = RawClient::connect(redis_addrs[0]);
    let mut diffs = Vec::new();
    for case in &cases {
        let a = place(ours.cmd(case), &f.addrs);
        let b = place(theirs.cmd(case), &redis_addrs);
        if a != b {
            diffs.push(format!("{case:?}\n  ferrokv: {a:?}\n  redis:   {b:?}"));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} replies differ:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    assert!(!r.ids.is_empty());
}
