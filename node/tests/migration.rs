//! Slot migration end to end: real `ferrokv-node` processes started by the
//! driver library, the `redis` crate's cluster client writing and reading
//! while a slot moves, kill -9 of the source mid-stream and resume, cancel,
//! and refused input.
//!
//! `FERROKV_MIGRATE_KEYS` sets how many keys the slot holds (default 20000
//! to keep CI fast; `FERROKV_MIGRATE_KEYS=100000` is the issue's size).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrokv_node::cluster::Topology;
use ferrokv_node::cluster::driver::{self, LocalCluster, MigrateOptions};
use ferrokv_node::slot::key_slot;
use support::TempDir;

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

fn key_count() -> usize {
    std::env::var("FERROKV_MIGRATE_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// A connection whose requests may wait (a busy machine, fsync per batch):
/// the crate's default 500 ms response timeout would fail the test.
async fn connect(client: &redis::Client) -> redis::aio::MultiplexedConnection {
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    con.set_response_timeout(Duration::from_secs(30));
    con
}

/// On failure, show what the nodes logged (their directories are removed).
fn dump_logs(dir: &Path, e: impl std::fmt::Debug) -> ! {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let log = std::fs::read_to_string(entry.path().join("node.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("--- {} ---", entry.path().display());
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
    }
    panic!("client failed: {e:?}");
}

/// The hash tag every key of a test uses, and its slot.
const TAG: &str = "{mig}";

fn bulk_key(i: usize) -> String {
    format!("{TAG}:k:{i}")
}

fn bulk_value(i: usize) -> String {
    format!("{i:0>100}")
}

struct Setup {
    cluster: LocalCluster,
    slot: u16,
    /// (shard, address, id) of the source and the target.
    source: (usize, String, String),
    target: (usize, String, String),
}

/// Every node logs writes with `appendfsync always`: what a node
/// acknowledged survives its kill -9.
const DURABLE: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];

async fn setup(dir: &Path) -> Setup {
    setup_with(dir, &[]).await
}

async fn setup_with(dir: &Path, extra: &[&str]) -> Setup {
    let cluster = LocalCluster::start_with(node_bin(), dir, 3, 0, extra).await.unwrap();
    let slot = key_slot(TAG.as_bytes());
    let t = &cluster.topology;
    let owner = driver::slot_owner(t, slot).unwrap().to_string();
    let s = cluster.shards.iter().position(|m| m[0].id == owner).unwrap();
    let d = (s + 1) % 3;
    let node = |i: usize| {
        let n = &cluster.shards[i][0];
        (i, n.addr.to_string(), n.id.clone())
    };
    Setup {
        source: node(s),
        target: node(d),
        slot,
        cluster,
    }
}

/// Load `n` keys into the source with pipelined SETs.
async fn bulk_load(addr: &str, n: usize) {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut con = connect(&client).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut p = redis::pipe();
        for &i in chunk {
            p.cmd("SET").arg(bulk_key(i)).arg(bulk_value(i)).ignore();
        }
        let _: () = p.query_async(&mut con).await.unwrap();
    }
}

async fn count_in_slot(addr: &str, slot: u16) -> i64 {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut con = connect(&client).await;
    redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query_async(&mut con)
        .await
        .unwrap()
}

/// Every bulk key on `addr` with its value (pipelined GETs, ASKING first so
/// an importing node answers too).
async fn check_bulk(addr: &str, n: usize) {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut con = connect(&client).await;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut p = redis::pipe();
        for &i in chunk {
            p.cmd("GET").arg(bulk_key(i));
        }
        let got: Vec<Option<String>> = p.query_async(&mut con).await.unwrap();
        for (&i, v) in chunk.iter().zip(got) {
            assert_eq!(v.as_deref(), Some(bulk_value(i).as_str()), "key {}", bulk_key(i));
        }
    }
}

/// What the concurrent client wrote: counters and last SET values.
#[derive(Default)]
struct Written {
    counters: HashMap<String, i64>,
    sets: HashMap<String, String>,
    ops: u64,
    latencies_us: Vec<u64>,
}

/// A cluster client INCRs counters, SETs keys and reads bulk keys (checking
/// values) until `stop`; any error fails the test.
fn spawn_client(
    rt: &tokio::runtime::Runtime,
    seeds: Vec<String>,
    n: usize,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Written> {
    rt.spawn(async move {
        let client = redis::cluster::ClusterClient::builder(seeds)
            .retries(30)
            .response_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        let mut w = Written::default();
        let mut j: usize = 0;
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            match j % 3 {
                0 => {
                    let k = format!("{TAG}:c:{}", j % 64);
                    let v: i64 = redis::cmd("INCR").arg(&k).query_async(&mut con).await.unwrap();
                    let e = w.counters.entry(k).or_insert(0);
                    *e += 1;
                    assert_eq!(v, *e, "counter value seen by the client");
                }
                1 => {
                    let k = format!("{TAG}:s:{}", j % 256);
                    let v = format!("w{j}");
                    let _: () = redis::cmd("SET").arg(&k).arg(&v).query_async(&mut con).await.unwrap();
                    w.sets.insert(k, v);
                }
                _ => {
                    let i = (j * 7919) % n;
                    let v: Option<String> = redis::cmd("GET").arg(bulk_key(i)).query_async(&mut con).await.unwrap();
                    assert_eq!(v.as_deref(), Some(bulk_value(i).as_str()), "read of {}", bulk_key(i));
                }
            }
            w.latencies_us.push(t0.elapsed().as_micros() as u64);
            j += 1;
            w.ops += 1;
            ops.fetch_add(1, Ordering::Relaxed);
        }
        w
    })
}

async fn check_written(addr: &str, w: &Written) {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut con = connect(&client).await;
    for (k, v) in &w.counters {
        let got: i64 = redis::cmd("GET").arg(k).query_async(&mut con).await.unwrap();
        assert_eq!(got, *v, "counter {k}");
    }
    for (k, v) in &w.sets {
        let got: String = redis::cmd("GET").arg(k).query_async(&mut con).await.unwrap();
        assert_eq!(&got, v, "set {k}");
    }
}

fn p99(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() * 99 / 100).copied().unwrap_or(0)
}

#[test]
fn migrate_slot_under_client_load() {
    let rt = runtime();
    let dir = TempDir::new("migrate-load");
    let n = key_count();
    let mut s = rt.block_on(setup(&dir.0));
    rt.block_on(bulk_load(&s.source.1, n));
    assert_eq!(rt.block_on(count_in_slot(&s.source.1, s.slot)), n as i64);

    let seeds: Vec<String> = s.cluster.addrs().iter().map(|a| format!("redis://{a}/")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let client = spawn_client(&rt, seeds, n, stop.clone(), ops.clone());
    // The client is running before the migration starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ops.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "client made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let ops_before = ops.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let next = rt
        .block_on(driver::migrate_slot(
            &s.cluster.topology,
            s.slot,
            &s.target.2,
            &MigrateOptions::default(),
        ))
        .unwrap();
    let took = t0.elapsed();
    let ops_during = ops.load(Ordering::Relaxed) - ops_before;
    // Keep the client going across the flip for a moment.
    let after = ops.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ops.load(Ordering::Relaxed) < after + 200 {
        assert!(Instant::now() < deadline, "client stalled after the flip");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let w = rt.block_on(client).unwrap_or_else(|e| dump_logs(&dir.0, e));
    eprintln!(
        "moved {n} keys in {took:?} ({:.0} keys/s); client: {ops_during} ops during the move, p99 {} us over {} ops",
        n as f64 / took.as_secs_f64(),
        p99(w.latencies_us.clone()),
        w.ops
    );
    s.cluster.topology = next;
    assert_eq!(
        driver::slot_owner(&s.cluster.topology, s.slot),
        Some(s.target.2.as_str())
    );

    // Source empty, target has everything: bulk keys, counters, sets.
    assert_eq!(rt.block_on(count_in_slot(&s.source.1, s.slot)), 0);
    let expected = n + w.counters.len() + w.sets.len();
    assert_eq!(rt.block_on(count_in_slot(&s.target.1, s.slot)), expected as i64);
    rt.block_on(check_bulk(&s.target.1, n));
    rt.block_on(check_written(&s.target.1, &w));
    // The client really was redirected mid-move (and followed silently).
    let errorstats: String = rt.block_on(async {
        let client = redis::Client::open(format!("redis://{}/", s.source.1)).unwrap();
        let mut con = connect(&client).await;
        redis::cmd("INFO")
            .arg("errorstats")
            .query_async(&mut con)
            .await
            .unwrap()
    });
    assert!(errorstats.contains("errorstat_ASK:"), "{errorstats}");
    // Both sides dropped their migration state with the flip.
    for a in [&s.source.1, &s.target.1] {
        assert!(
            rt.block_on(driver::migration_status(a, None)).unwrap().is_empty(),
            "{a}"
        );
    }
    rt.block_on(s.cluster.stop());
}

#[test]
fn source_killed_mid_stream_resumes() {
    let rt = runtime();
    let dir = TempDir::new("migrate-kill-source");
    let n = key_count();
    let mut s = rt.block_on(setup_with(&dir.0, DURABLE));
    rt.block_on(bulk_load(&s.source.1, n));
    rt.block_on(async {
        let mut c = driver::Conn::connect(&s.source.1).await.unwrap();
        let slot = s.slot.to_string();
        let mut t = driver::Conn::connect(&s.target.1).await.unwrap();
        t.ok(&[
            b"CLUSTER",
            b"MIGRATION",
            b"IMPORT",
            slot.as_bytes(),
            s.source.2.as_bytes(),
        ])
        .await
        .unwrap();
        // Small batches so that the kill lands mid-stream.
        c.ok(&[
            b"CLUSTER",
            b"MIGRATION",
            b"START",
            slot.as_bytes(),
            s.target.2.as_bytes(),
            b"BATCH",
            b"8",
        ])
        .await
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = rt
            .block_on(driver::migration_status(&s.source.1, Some(s.slot)))
            .unwrap();
        if st[0].keys_moved >= 200 {
            break;
        }
        assert!(Instant::now() < deadline, "stream made no progress: {st:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = s.cluster.shards[s.source.0][0].pid();
    rt.block_on(s.cluster.restart(node_bin(), s.source.0, 0)).unwrap();
    assert_ne!(pid, s.cluster.shards[s.source.0][0].pid());
    // The restarted source remembers the migration (and resumes it itself).
    let st = rt
        .block_on(driver::migration_status(&s.source.1, Some(s.slot)))
        .unwrap();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].role, "migrating");
    // A driver that lost its memory resumes from what the nodes hold.
    let t = rt.block_on(driver::held_topology(&s.target.1)).unwrap().unwrap();
    let next = rt
        .block_on(driver::resume_migration(&t, s.slot, &MigrateOptions::default()))
        .unwrap();
    assert_eq!(driver::slot_owner(&next, s.slot), Some(s.target.2.as_str()));
    assert_eq!(rt.block_on(count_in_slot(&s.source.1, s.slot)), 0);
    assert_eq!(rt.block_on(count_in_slot(&s.target.1, s.slot)), n as i64);
    rt.block_on(check_bulk(&s.target.1, n));
    rt.block_on(s.cluster.stop());
}

#[test]
fn cancel_brings_keys_back() {
    let rt = runtime();
    let dir = TempDir::new("migrate-cancel");
    let n = key_count().min(20_000);
    let s = rt.block_on(setup(&dir.0));
    rt.block_on(bulk_load(&s.source.1, n));
    let seeds: Vec<String> = s.cluster.addrs().iter().map(|a| format!("redis://{a}/")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let client = spawn_client(&rt, seeds, n, stop.clone(), ops.clone());
    rt.block_on(async {
        let slot = s.slot.to_string();
        let mut t = driver::Conn::connect(&s.target.1).await.unwrap();
        t.ok(&[
            b"CLUSTER",
            b"MIGRATION",
            b"IMPORT",
            slot.as_bytes(),
            s.source.2.as_bytes(),
        ])
        .await
        .unwrap();
        let mut c = driver::Conn::connect(&s.source.1).await.unwrap();
        c.ok(&[
            b"CLUSTER",
            b"MIGRATION",
            b"START",
            slot.as_bytes(),
            s.target.2.as_bytes(),
            b"BATCH",
            b"16",
        ])
        .await
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while rt.block_on(count_in_slot(&s.target.1, s.slot)) < (n / 4) as i64 {
        assert!(Instant::now() < deadline, "stream made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    rt.block_on(driver::cancel_migration(
        &s.cluster.topology,
        s.slot,
        &MigrateOptions::default(),
    ))
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let w = rt.block_on(client).unwrap_or_else(|e| dump_logs(&dir.0, e));
    assert!(w.ops > 0);
    // Everything is back on the source, which still owns the slot.
    assert_eq!(rt.block_on(count_in_slot(&s.target.1, s.slot)), 0);
    let expected = n + w.counters.len() + w.sets.len();
    assert_eq!(rt.block_on(count_in_slot(&s.source.1, s.slot)), expected as i64);
    rt.block_on(check_bulk(&s.source.1, n));
    rt.block_on(check_written(&s.source.1, &w));
    let held: Topology = rt.block_on(driver::held_topology(&s.source.1)).unwrap().unwrap();
    assert_eq!(held.epoch, s.cluster.topology.epoch);
    for a in [&s.source.1, &s.target.1] {
        assert!(
            rt.block_on(driver::migration_status(a, None)).unwrap().is_empty(),
            "{a}"
        );
    }
    rt.block_on(s.cluster.stop());
}

#[test]
fn bad_input_is_refused_and_a_dead_target_loses_nothing() {
    let rt = runtime();
    let dir = TempDir::new("migrate-bad");
    let mut s = rt.block_on(setup_with(&dir.0, DURABLE));
    let n = 3000;
    rt.block_on(bulk_load(&s.source.1, n));
    let slot = s.slot.to_string();
    let err = |addr: &str, args: &[&str]| -> String {
        rt.block_on(async {
            let mut c = driver::Conn::connect(addr).await.unwrap();
            let a: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            match c.request(&a).await.unwrap() {
                driver::Value::Error(e) => e,
                v => panic!("{args:?} was accepted: {v:?}"),
            }
        })
    };
    let unknown = "f".repeat(40);
    let (src, dst) = (s.source.1.clone(), s.target.1.clone());
    // START for a slot the node does not serve, to unknown nodes, to itself.
    let not_mine = (0..16384u16)
        .find(|&x| driver::slot_owner(&s.cluster.topology, x) != Some(s.source.2.as_str()))
        .unwrap()
        .to_string();
    assert!(err(&src, &["CLUSTER", "MIGRATION", "START", &not_mine, &s.target.2]).contains("not served"));
    assert!(err(&src, &["CLUSTER", "MIGRATION", "START", &slot, &unknown]).contains("unknown node"));
    assert!(err(&src, &["CLUSTER", "MIGRATION", "START", &slot, &s.source.2]).contains("this node's shard"));
    assert!(err(&src, &["CLUSTER", "MIGRATION", "START", "99999", &s.target.2]).contains("Invalid slot"));
    // IMPORT of a slot the target serves, or from a node that does not serve it.
    assert!(err(&dst, &["CLUSTER", "MIGRATION", "IMPORT", &slot, &unknown]).contains("unknown node"));
    assert!(err(&dst, &["CLUSTER", "MIGRATION", "IMPORT", &slot, &s.target.2]).contains("not the primary serving"));
    assert!(err(&src, &["CLUSTER", "MIGRATION", "IMPORT", &slot, &s.target.2]).contains("already served"));
    // RESTOREBATCH is refused unless the slot is imported from that source.
    assert!(err(&dst, &["CLUSTER", "RESTOREBATCH", &slot, &s.source.2, ""]).contains("not being imported"));
    assert!(err(&src, &["CLUSTER", "MIGRATION", "RESUME", &slot]).contains("no migration"));

    // A target that dies mid-stream: the source keeps every key it did not
    // see acknowledged, says why, and finishes once the target is back.
    rt.block_on(async {
        let mut t = driver::Conn::connect(&dst).await.unwrap();
        t.ok(&[
            b"CLUSTER",
            b"MIGRATION",
            b"IMPORT",
            slot.as_bytes(),
            s.source.2.as_bytes(),
        ])
        .await
        .unwrap();
        // A garbage payload is refused whole.
        match t
            .request(&[
                b"CLUSTER",
                b"RESTOREBATCH",
                slot.as_bytes(),
                s.source.2.as_bytes(),
                b"\x00\x00",
            ])
            .await
            .unwrap()
        {
            driver::Value::Error(e) => assert!(e.contains("bad restore payload"), "{e}"),
            v => panic!("garbage accepted: {v:?}"),
        }
        let mut c = driver::Conn::connect(&src).await.unwrap();
        c.ok(&[
            b"CLUSTER",
            b"MIGRATION",
            b"START",
            slot.as_bytes(),
            s.target.2.as_bytes(),
            b"BATCH",
            b"4",
        ])
        .await
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while rt.block_on(driver::migration_status(&src, Some(s.slot))).unwrap()[0].keys_moved < 100 {
        assert!(Instant::now() < deadline, "stream made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    // kill -9 of the target: what it acknowledged is in its log (fsynced
    // before each reply), the rest is still on the source.
    rt.block_on(s.cluster.shards[s.target.0][0].kill());
    // The stream notices on its next batch and keeps reconnecting.
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = rt.block_on(driver::migration_status(&src, Some(s.slot))).unwrap();
        if !st[0].last_error.is_empty() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "source did not notice the dead target: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!("source after the target died: {st:?}");
    // Nothing the target did not acknowledge is gone from the source.
    let left = rt.block_on(count_in_slot(&src, s.slot)) as u64;
    assert_eq!(left + st[0].keys_moved, n as u64, "{st:?}");
    assert!(left > 0 && st[0].keys_moved > 0, "{st:?}");
    let keys: Vec<String> = rt.block_on(async {
        let client = redis::Client::open(format!("redis://{src}/")).unwrap();
        let mut con = connect(&client).await;
        redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(s.slot)
            .arg(n)
            .query_async(&mut con)
            .await
            .unwrap()
    });
    let here: std::collections::HashSet<String> = keys.iter().cloned().collect();
    assert_eq!(here.len() as u64, left);
    // Redirects of a half-moved slot on the source: a key still here is
    // served, a moved one gets -ASK to the target, a mix gets -TRYAGAIN.
    let moved_key = (0..n).map(bulk_key).find(|k| !here.contains(k)).unwrap();
    let kept_key = keys[0].clone();
    let ask = format!("ASK {} {dst}", s.slot);
    let req = |addr: &str, args: &[&[u8]]| -> driver::Value {
        rt.block_on(async { driver::Conn::connect(addr).await.unwrap().request(args).await.unwrap() })
    };
    assert_eq!(
        req(&src, &[b"GET", moved_key.as_bytes()]),
        driver::Value::Error(ask.clone())
    );
    assert!(matches!(
        req(&src, &[b"GET", kept_key.as_bytes()]),
        driver::Value::Bulk(_)
    ));
    assert!(matches!(
        req(&src, &[b"MGET", kept_key.as_bytes(), moved_key.as_bytes()]),
        driver::Value::Error(e) if e.starts_with("TRYAGAIN")
    ));
    // The target comes back (its log + persisted IMPORTING state); the
    // driver resumes and every key ends on the target exactly once.
    rt.block_on(s.cluster.restart(node_bin(), s.target.0, 0)).unwrap();
    // The importing target serves a moved key only after ASKING.
    assert_eq!(
        req(&dst, &[b"GET", moved_key.as_bytes()]),
        driver::Value::Error(format!("MOVED {} {src}", s.slot))
    );
    let asked = rt.block_on(async {
        let mut c = driver::Conn::connect(&dst).await.unwrap();
        c.ok(&[b"ASKING"]).await.unwrap();
        c.request(&[b"GET", moved_key.as_bytes()]).await.unwrap()
    });
    let i: usize = moved_key.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(asked, driver::Value::Bulk(bulk_value(i).into_bytes()));
    let next = rt
        .block_on(driver::resume_migration(
            &s.cluster.topology,
            s.slot,
            &MigrateOptions::default(),
        ))
        .unwrap();
    assert_eq!(driver::slot_owner(&next, s.slot), Some(s.target.2.as_str()));
    assert_eq!(rt.block_on(count_in_slot(&src, s.slot)), 0);
    assert_eq!(rt.block_on(count_in_slot(&dst, s.slot)), n as i64);
    rt.block_on(check_bulk(&dst, n));
    rt.block_on(s.cluster.stop());
}

/// The Prometheus counters follow a migration (in-process nodes, so the
/// rendered text is read straight from their state).
#[test]
fn metrics_count_moved_keys() {
    use ferrokv_node::cluster::{Node, Shard};
    use ferrokv_node::config::ServeArgs;
    let dirs = [TempDir::new("migrate-metrics-a"), TempDir::new("migrate-metrics-b")];
    let servers: Vec<support::Server> = dirs
        .iter()
        .map(|d| {
            support::server_with(ServeArgs {
                cluster_enabled: Some("yes".into()),
                dir: Some(d.0.clone()),
                ..Default::default()
            })
        })
        .collect();
    let rt = runtime();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
    let ids: Vec<String> = addrs.iter().map(|a| rt.block_on(driver::node_id(a)).unwrap()).collect();
    let t = Topology {
        epoch: 1,
        nodes: servers
            .iter()
            .zip(&ids)
            .map(|(s, id)| Node {
                id: id.clone(),
                ip: "127.0.0.1".into(),
                port: s.addr.port(),
                cport: None,
            })
            .collect(),
        shards: vec![
            Shard {
                slots: vec![[0, 8191]],
                primary: ids[0].clone(),
                replicas: vec![],
            },
            Shard {
                slots: vec![[8192, 16383]],
                primary: ids[1].clone(),
                replicas: vec![],
            },
        ],
    };
    rt.block_on(driver::push_topology(&t)).unwrap();
    let slot = key_slot(TAG.as_bytes());
    let (src, dst) = if driver::slot_owner(&t, slot) == Some(ids[0].as_str()) {
        (0, 1)
    } else {
        (1, 0)
    };
    rt.block_on(bulk_load(&addrs[src], 500));
    let sample = |i: usize, name: &str| -> f64 {
        let text = servers[i].state.metrics.render(&servers[i].state);
        let line = text
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(sample(src, "ferrokv_migration_keys_moved_total"), 0.0);
    let next = rt
        .block_on(driver::migrate_slot(&t, slot, &ids[dst], &MigrateOptions::default()))
        .unwrap();
    assert_eq!(next.epoch, 2);
    assert_eq!(sample(src, "ferrokv_migration_keys_moved_total"), 500.0);
    assert!(sample(src, "ferrokv_migration_bytes_moved_total") > 500.0 * 100.0);
    assert_eq!(sample(dst, "ferrokv_migration_keys_received_total"), 500.0);
    assert_eq!(sample(src, "ferrokv_migrations_in_progress"), 0.0);
    rt.block_on(check_bulk(&addrs[dst], 500));
}

/// `INFO replication` of `addr` as text.
async fn info_replication(addr: &str) -> String {
    let mut c = driver::Conn::connect(addr).await.unwrap();
    match c.ok(&[b"INFO", b"replication"]).await.unwrap() {
        driver::Value::Bulk(b) => String::from_utf8(b).unwrap(),
        v => panic!("INFO replication: {v:?}"),
    }
}

/// `DIGEST` (whole dataset) or `DIGEST SLOT <slot>` of `addr`; the error
/// text if it answers with one (`-LOADING` from a replica in a full sync,
/// which a replica that fell behind the backlog does).
async fn digest(addr: &str, slot: Option<u16>) -> String {
    let mut c = driver::Conn::connect(addr).await.unwrap();
    let s = slot.map(|s| s.to_string());
    let mut args: Vec<&[u8]> = vec![b"DIGEST"];
    if let Some(s) = &s {
        args.extend([b"SLOT".as_slice(), s.as_bytes()]);
    }
    match c.request(&args).await.unwrap() {
        driver::Value::Bulk(b) => String::from_utf8(b).unwrap(),
        driver::Value::Error(e) => format!("-{e}"),
        v => panic!("DIGEST: {v:?}"),
    }
}

/// `GET key` on `addr` on a connection that sent `READONLY` first.
async fn readonly_get(addr: &str, key: &str) -> driver::Value {
    let mut c = driver::Conn::connect(addr).await.unwrap();
    c.ok(&[b"READONLY"]).await.unwrap();
    c.request(&[b"GET", key.as_bytes()]).await.unwrap()
}

/// `CLUSTER COUNTKEYSINSLOT` of `addr` as shown in a failure message.
async fn keys_in_slot(addr: &str, slot: u16) -> String {
    let mut c = driver::Conn::connect(addr).await.unwrap();
    let s = slot.to_string();
    format!(
        "{:?}",
        c.request(&[b"CLUSTER", b"COUNTKEYSINSLOT", s.as_bytes()])
            .await
            .unwrap()
    )
}

/// The value of `field` in an INFO text.
fn info_field(info: &str, field: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Poll until `replica` holds what `primary` holds: the same `DIGEST SLOT`
/// for `slot`, the same whole-dataset `DIGEST` (every other slot), and the
/// same replication offset (its log is the primary's, byte for byte).
async fn await_same_data(primary: &str, replica: &str, slot: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ps, rs) = (digest(primary, Some(slot)).await, digest(replica, Some(slot)).await);
        let (pa, ra) = (digest(primary, None).await, digest(replica, None).await);
        let po = info_field(&info_replication(primary).await, "master_repl_offset");
        let ro = info_field(&info_replication(replica).await, "slave_repl_offset");
        if ps == rs && pa == ra && po == ro && !ps.starts_with('-') && !pa.starts_with('-') {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica {replica} never caught up with {primary}: slot {slot} digests {ps} / {rs}, \
             dataset digests {pa} / {ra}, offsets {po} / {ro}, slot keys {} / {}\n{}",
            keys_in_slot(primary, slot).await,
            keys_in_slot(replica, slot).await,
            info_replication(replica).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll until every replica of `cluster` streams from its shard's primary.
async fn await_linked(cluster: &LocalCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for shard in &cluster.shards {
        let p = shard[0].addr;
        for r in shard[1..].iter().map(|n| n.addr.to_string()) {
            loop {
                let info = info_replication(&r).await;
                if info.contains("role:slave")
                    && info.contains(&format!("master_port:{}\r\n", p.port()))
                    && info.contains("master_link_status:up")
                {
                    break;
                }
                assert!(Instant::now() < deadline, "replica {r} never linked to {p}:\n{info}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Source and target shards each have a replica (3 shards × 1 replica, as
/// the topology sets it up: every replica follows its shard's primary). A
/// slot moves while a cluster client writes. Afterwards each replica holds
/// exactly its primary's data, for the moved slot and for the rest; the
/// source's replica no longer has the slot's keys; no key is lost or
/// duplicated; `READONLY` reads on either replica go where the new owner is.
#[test]
fn migrate_slot_with_replicas() {
    let rt = runtime();
    let dir = TempDir::new("migrate-replicas");
    let n = key_count();
    let cluster = rt.block_on(LocalCluster::start(node_bin(), &dir.0, 3, 1)).unwrap();
    let slot = key_slot(TAG.as_bytes());
    let owner = driver::slot_owner(&cluster.topology, slot).unwrap().to_string();
    let s = cluster.shards.iter().position(|m| m[0].id == owner).unwrap();
    let d = (s + 1) % 3;
    let addr = |shard: usize, member: usize| cluster.shards[shard][member].addr.to_string();
    let (src, src_replica) = (addr(s, 0), addr(s, 1));
    let (dst, dst_replica) = (addr(d, 0), addr(d, 1));
    let target_id = cluster.shards[d][0].id.clone();

    // Every replica is linked to its primary before any data goes in.
    rt.block_on(await_linked(&cluster));

    rt.block_on(bulk_load(&src, n));
    // Keys of other slots on every shard: the rest of the data, which the
    // move must leave alone on primaries and replicas.
    let rest: Vec<String> = (0..)
        .map(|i| format!("rest:{i}"))
        .filter(|k| key_slot(k.as_bytes()) != slot)
        .take(3000)
        .collect();
    let seeds: Vec<String> = cluster.addrs().iter().map(|a| format!("redis://{a}/")).collect();
    rt.block_on(async {
        let client = redis::cluster::ClusterClient::builder(seeds.clone())
            .response_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        for k in &rest {
            let _: () = redis::cmd("SET").arg(k).arg("r").query_async(&mut con).await.unwrap();
        }
    });
    rt.block_on(await_same_data(&src, &src_replica, slot));
    assert_eq!(rt.block_on(count_in_slot(&src_replica, slot)), n as i64);

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let client = spawn_client(&rt, seeds.clone(), n, stop.clone(), ops.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while ops.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "client made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let next = rt
        .block_on(driver::migrate_slot(
            &cluster.topology,
            slot,
            &target_id,
            &MigrateOptions::default(),
        ))
        .unwrap_or_else(|e| dump_logs(&dir.0, e));
    assert_eq!(driver::slot_owner(&next, slot), Some(target_id.as_str()));
    let after = ops.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ops.load(Ordering::Relaxed) < after + 200 {
        assert!(Instant::now() < deadline, "client stalled after the flip");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let w = rt.block_on(client).unwrap_or_else(|e| dump_logs(&dir.0, e));

    // Primaries: every key in exactly one place, with its last value.
    let expected = (n + w.counters.len() + w.sets.len()) as i64;
    assert_eq!(rt.block_on(count_in_slot(&src, slot)), 0);
    assert_eq!(rt.block_on(count_in_slot(&dst, slot)), expected);
    rt.block_on(check_bulk(&dst, n));
    rt.block_on(check_written(&dst, &w));

    // Replicas: the same data as their primaries, slot and rest.
    rt.block_on(await_same_data(&src, &src_replica, slot));
    rt.block_on(await_same_data(&dst, &dst_replica, slot));
    assert_eq!(rt.block_on(count_in_slot(&src_replica, slot)), 0);
    assert_eq!(rt.block_on(count_in_slot(&dst_replica, slot)), expected);
    // Nothing else moved: each primary (and its replica) holds exactly the
    // `rest:*` keys of the slots its shard serves, plus the moved slot on
    // the target.
    let rest_in = |id: &str| {
        rest.iter()
            .filter(|k| driver::slot_owner(&next, key_slot(k.as_bytes())) == Some(id))
            .count() as i64
    };
    let dbsize = |a: &str| -> i64 {
        rt.block_on(async {
            let mut c = driver::Conn::connect(a).await.unwrap();
            match c.ok(&[b"DBSIZE"]).await.unwrap() {
                driver::Value::Int(n) => n,
                v => panic!("DBSIZE: {v:?}"),
            }
        })
    };
    let source_rest = rest_in(&cluster.shards[s][0].id);
    let target_rest = rest_in(&target_id);
    for a in [&src, &src_replica] {
        assert_eq!(dbsize(a), source_rest, "{a}");
    }
    for a in [&dst, &dst_replica] {
        assert_eq!(dbsize(a), target_rest + expected, "{a}");
    }

    // READONLY reads after the flip: the source's replica sends the moved
    // slot to the target primary; the target's replica serves it itself
    // (and still sends a write, or a read without READONLY, to its primary).
    let key = bulk_key(0);
    let moved_to_dst = driver::Value::Error(format!("MOVED {slot} {dst}"));
    assert_eq!(rt.block_on(readonly_get(&src_replica, &key)), moved_to_dst);
    assert_eq!(
        rt.block_on(readonly_get(&dst_replica, &key)),
        driver::Value::Bulk(bulk_value(0).into_bytes())
    );
    let plain = rt.block_on(async {
        let mut c = driver::Conn::connect(&dst_replica).await.unwrap();
        c.request(&[b"GET", key.as_bytes()]).await.unwrap()
    });
    assert_eq!(plain, moved_to_dst);
    // A slot the source still serves: its replica serves it, the target's
    // replica sends it to the source primary.
    let kept = rest
        .iter()
        .find(|k| driver::slot_owner(&next, key_slot(k.as_bytes())) == Some(cluster.shards[s][0].id.as_str()))
        .unwrap();
    let kept_slot = key_slot(kept.as_bytes());
    assert_eq!(
        rt.block_on(readonly_get(&src_replica, kept)),
        driver::Value::Bulk(b"r".to_vec())
    );
    assert_eq!(
        rt.block_on(readonly_get(&dst_replica, kept)),
        driver::Value::Error(format!("MOVED {kept_slot} {src}"))
    );
    // A real cluster client reading from replicas finds every moved key.
    rt.block_on(async {
        let client = redis::cluster::ClusterClient::builder(seeds)
            .read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy)
            .response_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        for i in (0..n).step_by(97) {
            let v: Option<String> = redis::cmd("GET").arg(bulk_key(i)).query_async(&mut con).await.unwrap();
            assert_eq!(
                v.as_deref(),
                Some(bulk_value(i).as_str()),
                "replica read of {}",
                bulk_key(i)
            );
        }
    });
    rt.block_on(cluster.stop());
}

/// `CLUSTER MIGRATION IMPORT` on the target, then `START` on the source
/// with `batch` keys per batch (what `driver::migrate_slot` does before it
/// waits), for tests that interrupt a migration at a chosen point.
async fn begin_migration(s: &Setup, batch: usize) {
    let slot = s.slot.to_string();
    let batch = batch.to_string();
    let mut t = driver::Conn::connect(&s.target.1).await.unwrap();
    t.ok(&[
        b"CLUSTER",
        b"MIGRATION",
        b"IMPORT",
        slot.as_bytes(),
        s.source.2.as_bytes(),
    ])
    .await
    .unwrap();
    let mut c = driver::Conn::connect(&s.source.1).await.unwrap();
    c.ok(&[
        b"CLUSTER",
        b"MIGRATION",
        b"START",
        slot.as_bytes(),
        s.target.2.as_bytes(),
        b"BATCH",
        batch.as_bytes(),
    ])
    .await
    .unwrap();
}

/// The controller dies in the middle of the ownership flip: the target
/// already holds the new topology (epoch + 1), the source and the third
/// shard still hold the old one. Clients keep working in that state (the
/// source's `-ASK` leads to a target that now serves the slot), and a new
/// driver that starts from the old topology finishes the flip: every node
/// ends on the new epoch, both migration states are gone, every key is on
/// the target exactly once.
#[test]
fn controller_dies_mid_flip_and_a_new_one_finishes() {
    let rt = runtime();
    let dir = TempDir::new("migrate-mid-flip");
    let n = key_count().min(20_000);
    let s = rt.block_on(setup(&dir.0));
    rt.block_on(bulk_load(&s.source.1, n));
    rt.block_on(begin_migration(&s, 256));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = rt
            .block_on(driver::migration_status(&s.source.1, Some(s.slot)))
            .unwrap();
        if st[0].state == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "stream did not finish: {st:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The first push of the flip (the target) and then the controller is gone.
    let old = s.cluster.topology.clone();
    let next = driver::move_slot(&old, s.slot, &s.target.2).unwrap();
    rt.block_on(async {
        let mut c = driver::Conn::connect(&s.target.1).await.unwrap();
        c.ok(&[
            b"CLUSTER",
            b"SETTOPOLOGY",
            next.epoch.to_string().as_bytes(),
            next.to_json().as_bytes(),
        ])
        .await
        .unwrap();
    });
    assert_eq!(
        rt.block_on(driver::held_topology(&s.source.1))
            .unwrap()
            .map(|t| t.epoch),
        Some(old.epoch)
    );
    // A cluster client seeded with the source only works in the split state.
    rt.block_on(async {
        let client = redis::cluster::ClusterClient::builder(vec![format!("redis://{}/", s.source.1)])
            .retries(30)
            .response_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut con = client.get_async_connection().await.unwrap();
        for i in (0..n).step_by(499) {
            let v: Option<String> = redis::cmd("GET").arg(bulk_key(i)).query_async(&mut con).await.unwrap();
            assert_eq!(v.as_deref(), Some(bulk_value(i).as_str()), "{}", bulk_key(i));
        }
        let _: () = redis::cmd("SET")
            .arg(format!("{TAG}:split"))
            .arg("x")
            .query_async(&mut con)
            .await
            .unwrap();
    });
    // A new controller that only knows the old topology.
    let done = rt
        .block_on(driver::resume_migration(&old, s.slot, &MigrateOptions::default()))
        .unwrap();
    assert_eq!(done, next);
    for n in s.cluster.shards.iter().flatten() {
        let held = rt.block_on(driver::held_topology(&n.addr.to_string())).unwrap();
        assert_eq!(held.as_ref(), Some(&next), "{}", n.addr);
    }
    for a in [&s.source.1, &s.target.1] {
        assert!(
            rt.block_on(driver::migration_status(a, None)).unwrap().is_empty(),
            "{a}"
        );
    }
    assert_eq!(rt.block_on(count_in_slot(&s.source.1, s.slot)), 0);
    assert_eq!(rt.block_on(count_in_slot(&s.target.1, s.slot)), n as i64 + 1);
    rt.block_on(check_bulk(&s.target.1, n));
    // The source now sends the slot's keys to the target with -MOVED.
    let reply = rt.block_on(async {
        let mut c = driver::Conn::connect(&s.source.1).await.unwrap();
        c.request(&[b"GET", bulk_key(0).as_bytes()]).await.unwrap()
    });
    assert_eq!(reply, driver::Value::Error(format!("MOVED {} {}", s.slot, s.target.1)));
    rt.block_on(s.cluster.stop());
}

/// Start migrating the slot (batches of 64), and once half of its `n` keys are on the target,
/// cancel on both sides (source first, then the target, which starts sending the keys back);
/// returns, with the number of the slot's keys the source held at the cancel, when keys are
/// flowing back but the target still holds some.
fn cancel_midway(rt: &tokio::runtime::Runtime, s: &Setup, n: usize) -> i64 {
    rt.block_on(begin_migration(s, 64));
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(count_in_slot(&s.target.1, s.slot)) < (n / 2) as i64 {
        assert!(Instant::now() < deadline, "stream made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let slot = s.slot.to_string();
    rt.block_on(async {
        for a in [&s.source.1, &s.target.1] {
            let mut c = driver::Conn::connect(a).await.unwrap();
            c.ok(&[b"CLUSTER", b"MIGRATION", b"CANCEL", slot.as_bytes()])
                .await
                .unwrap();
        }
    });
    let left_at_cancel = rt.block_on(count_in_slot(&s.source.1, s.slot));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let back = rt.block_on(count_in_slot(&s.source.1, s.slot));
        let there = rt.block_on(count_in_slot(&s.target.1, s.slot));
        assert!(
            there > 0,
            "the return stream finished before the interruption ({back} back)"
        );
        if back > left_at_cancel {
            break;
        }
        assert!(Instant::now() < deadline, "the return stream made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    left_at_cancel
}

/// A cancel interrupted by kill -9 of the target while it sends the keys
/// back: the restarted target resumes its return stream from its persisted
/// state, a driver's `resume_migration` sees the source still cancelling
/// and completes the cancel, and every key ends on the source exactly once
/// with the slot never having left it.
#[test]
fn cancel_interrupted_by_a_target_restart_resumes() {
    let rt = runtime();
    let dir = TempDir::new("migrate-cancel-restart");
    let n = key_count().min(20_000);
    let mut s = rt.block_on(setup_with(&dir.0, DURABLE));
    rt.block_on(bulk_load(&s.source.1, n));
    // Kill the target once keys are flowing back but before all are.
    cancel_midway(&rt, &s, n);
    rt.block_on(s.cluster.restart(node_bin(), s.target.0, 0)).unwrap();
    let st = rt
        .block_on(driver::migration_status(&s.target.1, Some(s.slot)))
        .unwrap();
    eprintln!("restarted target: {st:?}");
    // The restarted target remembers that it owes the source keys (and has
    // resumed sending them by itself).
    assert!(st.len() == 1 && st[0].role == "importing", "{st:?}");
    let t = rt
        .block_on(driver::resume_migration(
            &s.cluster.topology,
            s.slot,
            &MigrateOptions::default(),
        ))
        .unwrap();
    assert_eq!(t.epoch, s.cluster.topology.epoch);
    assert_eq!(driver::slot_owner(&t, s.slot), Some(s.source.2.as_str()));
    for a in [&s.source.1, &s.target.1] {
        assert!(
            rt.block_on(driver::migration_status(a, None)).unwrap().is_empty(),
            "{a}"
        );
    }
    assert_eq!(rt.block_on(count_in_slot(&s.target.1, s.slot)), 0);
    assert_eq!(rt.block_on(count_in_slot(&s.source.1, s.slot)), n as i64);
    rt.block_on(check_bulk(&s.source.1, n));
    rt.block_on(s.cluster.stop());
}

/// A cancel interrupted by kill -9 of the source while the target sends
/// the keys back: the target's return stream waits for the restarted source
/// (same port, same data directory, its cancelling state persisted), the
/// driver's `cancel_migration` run again completes the cancel, and the slot
/// ends on the source exactly as it was before the migration (same
/// `DIGEST SLOT`, same key count), with no key left on the target.
#[test]
fn cancel_interrupted_by_a_source_restart_resumes() {
    let rt = runtime();
    let dir = TempDir::new("migrate-cancel-source-restart");
    let n = key_count().min(20_000);
    let mut s = rt.block_on(setup_with(&dir.0, DURABLE));
    rt.block_on(bulk_load(&s.source.1, n));
    let before = rt.block_on(digest(&s.source.1, Some(s.slot)));
    assert!(!before.starts_with('-'), "{before}");
    let opts = MigrateOptions {
        timeout: Duration::from_secs(60),
        ..Default::default()
    };
    // The cancel the controller started; kill the source once keys are flowing back but
    // before all are.
    let left_at_cancel = cancel_midway(&rt, &s, n);
    let pid = s.cluster.shards[s.source.0][0].pid();
    rt.block_on(s.cluster.restart(node_bin(), s.source.0, 0)).unwrap();
    assert_ne!(pid, s.cluster.shards[s.source.0][0].pid());
    eprintln!(
        "source restarted mid-cancel: {left_at_cancel} keys on it at the cancel, {} now, {} on the target",
        rt.block_on(count_in_slot(&s.source.1, s.slot)),
        rt.block_on(count_in_slot(&s.target.1, s.slot))
    );
    // The restarted source remembers it is undoing the migration: it does
    // not stream forward again, and it accepts its keys back.
    let st = rt
        .block_on(driver::migration_status(&s.source.1, Some(s.slot)))
        .unwrap();
    assert!(st.len() == 1 && st[0].role == "migrating" && st[0].cancelling, "{st:?}");
    assert!(rt.block_on(count_in_slot(&s.target.1, s.slot)) > 0);
    // The controller runs the cancel again (idempotent on both sides).
    rt.block_on(driver::cancel_migration(&s.cluster.topology, s.slot, &opts))
        .unwrap_or_else(|e| dump_logs(&dir.0, e));
    for a in [&s.source.1, &s.target.1] {
        assert!(
            rt.block_on(driver::migration_status(a, None)).unwrap().is_empty(),
            "{a}"
        );
    }
    let held = rt.block_on(driver::held_topology(&s.source.1)).unwrap().unwrap();
    assert_eq!(held.epoch, s.cluster.topology.epoch);
    assert_eq!(driver::slot_owner(&held, s.slot), Some(s.source.2.as_str()));
    assert_eq!(rt.block_on(count_in_slot(&s.target.1, s.slot)), 0);
    assert_eq!(rt.block_on(count_in_slot(&s.source.1, s.slot)), n as i64);
    assert_eq!(rt.block_on(digest(&s.source.1, Some(s.slot))), before);
    rt.block_on(check_bulk(&s.source.1, n));
    // And once more after a second restart: the cancel is over for good.
    rt.block_on(s.cluster.restart(node_bin(), s.source.0, 0)).unwrap();
    assert!(
        rt.block_on(driver::migration_status(&s.source.1, None))
            .unwrap()
            .is_empty()
    );
    assert_eq!(rt.block_on(digest(&s.source.1, Some(s.slot))), before);
    rt.block_on(s.cluster.stop());
}

/// What a WAIT writer sent and had acknowledged: per key, the sequence
/// number of its last SET that `WAIT 1` confirmed a replica has, and of the
/// last one sent at all.
#[derive(Default)]
struct Acked {
    acked: HashMap<String, u64>,
    sent: HashMap<String, u64>,
    ops: u64,
    /// Writes WAIT did not confirm (a replica had gone).
    unconfirmed: u64,
}

/// A client that SETs keys of the slot, each followed by `WAIT 1 250` on
/// the same connection, following `-MOVED` and `-ASK` itself (the redis
/// crate's cluster client would send WAIT to a random node) and retrying
/// on `-TRYAGAIN`, `-CLUSTERDOWN` and dead nodes by trying the next seed.
/// A write not accepted within 40 s fails the test.
fn spawn_wait_writer(
    rt: &tokio::runtime::Runtime,
    seeds: Vec<String>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Acked> {
    rt.spawn(async move {
        let mut conns: HashMap<String, redis::aio::MultiplexedConnection> = HashMap::new();
        let mut w = Acked::default();
        let mut seed = 0usize;
        let mut at = seeds[0].clone();
        let mut j: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            j += 1;
            let key = format!("{TAG}:w:{}", j % 128);
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut asking = false;
            loop {
                assert!(Instant::now() < deadline, "write of {key} not accepted for 40 s");
                let mut con = match conns.get(&at) {
                    Some(c) => c.clone(),
                    None => {
                        let client = redis::Client::open(format!("redis://{at}/")).unwrap();
                        match tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection())
                            .await
                        {
                            Ok(Ok(mut c)) => {
                                c.set_response_timeout(Duration::from_secs(10));
                                conns.insert(at.clone(), c.clone());
                                c
                            }
                            _ => {
                                seed += 1;
                                at = seeds[seed % seeds.len()].clone();
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        }
                    }
                };
                // One command at a time on this connection (no other task
                // uses it): ASKING holds for the next command only.
                let sent = async {
                    if std::mem::take(&mut asking) {
                        let () = redis::cmd("ASKING").query_async(&mut con).await?;
                    }
                    let () = redis::cmd("SET").arg(&key).arg(j).query_async(&mut con).await?;
                    // Short: a promoted replica has no replica of its own,
                    // so WAIT there always runs to its timeout.
                    redis::cmd("WAIT").arg(1).arg(250).query_async::<i64>(&mut con).await
                };
                w.sent.insert(key.clone(), j);
                match sent.await {
                    Ok(n) => {
                        if n >= 1 {
                            w.acked.insert(key.clone(), j);
                        } else {
                            w.unconfirmed += 1;
                        }
                        break;
                    }
                    Err(e) => {
                        if let Some((addr, _)) = e.redirect_node() {
                            asking = e.code() == Some("ASK");
                            at = addr.to_string();
                            continue;
                        }
                        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
                            conns.remove(&at);
                            seed += 1;
                            at = seeds[seed % seeds.len()].clone();
                        }
                        // -TRYAGAIN / -CLUSTERDOWN: the layout is changing.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            w.ops += 1;
            ops.fetch_add(1, Ordering::Relaxed);
        }
        w
    })
}

/// Every acknowledged write is on `addr` (a key's value is at least its
/// last acknowledged sequence number, at most its last sent one). Returns
/// how many of the writer's keys `addr` holds.
async fn check_acked(addr: &str, w: &Acked) -> usize {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut con = connect(&client).await;
    let mut present = 0;
    for (k, sent) in &w.sent {
        let got: Option<u64> = redis::cmd("GET").arg(k).query_async(&mut con).await.unwrap();
        let acked = w.acked.get(k).copied();
        match got {
            Some(v) => {
                present += 1;
                assert!(
                    acked.is_none_or(|a| a <= v),
                    "{k}: {v} older than acknowledged {acked:?}"
                );
                assert!(v <= *sent, "{k}: {v} never sent (last {sent})");
            }
            None => assert!(acked.is_none(), "{k}: acknowledged write {acked:?} lost"),
        }
    }
    present
}

/// Which primary a failover test kills mid-migration, and what the
/// controller then does with the migration.
#[derive(Clone, Copy, Debug)]
enum Failover {
    SourceThenResume,
    TargetThenCancel,
    SourceThenCancel,
    TargetThenResume,
}

/// 2 shards × 1 replica; a slot migrates while a client writes with
/// `WAIT 1`; mid-stream one side's primary is killed, `promote_replica`
/// promotes its replica (topology at a higher epoch, migration carried
/// over), and the migration is resumed or cancelled against the new
/// primary. Then: no acknowledged write lost, every bulk key once, the slot
/// in exactly one shard (the other holds none of its keys), no migration
/// state left, and the surviving shard's replica holds its primary's data.
fn failover_mid_migration(name: &str, case: Failover) {
    let rt = runtime();
    let dir = TempDir::new(name);
    let n = key_count().min(10_000);
    let mut cluster = rt.block_on(LocalCluster::start(node_bin(), &dir.0, 2, 1)).unwrap();
    let slot = key_slot(TAG.as_bytes());
    let owner = driver::slot_owner(&cluster.topology, slot).unwrap().to_string();
    let s = cluster.shards.iter().position(|m| m[0].id == owner).unwrap();
    let d = 1 - s;
    let addr = |c: &LocalCluster, shard: usize, member: usize| c.shards[shard][member].addr.to_string();
    let id = |c: &LocalCluster, shard: usize, member: usize| c.shards[shard][member].id.clone();
    let (src, dst) = (addr(&cluster, s, 0), addr(&cluster, d, 0));
    rt.block_on(await_linked(&cluster));
    rt.block_on(bulk_load(&src, n));
    rt.block_on(await_same_data(&src, &addr(&cluster, s, 1), slot));

    let seeds: Vec<String> = cluster.addrs().iter().map(|a| a.to_string()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let writer = spawn_wait_writer(&rt, seeds, stop.clone(), ops.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while ops.load(Ordering::Relaxed) < 50 {
        assert!(Instant::now() < deadline, "writer made no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    rt.block_on(async {
        let slot = slot.to_string();
        let mut t = driver::Conn::connect(&dst).await.unwrap();
        t.ok(&[b"CLUSTER", b"MIGRATION", b"IMPORT", slot.as_bytes(), owner.as_bytes()])
            .await
            .unwrap();
        let mut c = driver::Conn::connect(&src).await.unwrap();
        let target = id(&cluster, d, 0);
        c.ok(&[
            b"CLUSTER",
            b"MIGRATION",
            b"START",
            slot.as_bytes(),
            target.as_bytes(),
            b"BATCH",
            b"32",
        ])
        .await
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(count_in_slot(&dst, slot)) < (n / 3) as i64 {
        assert!(Instant::now() < deadline, "stream made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (dead, survivor) = match case {
        Failover::SourceThenResume | Failover::SourceThenCancel => (s, d),
        Failover::TargetThenCancel | Failover::TargetThenResume => (d, s),
    };
    rt.block_on(cluster.shards[dead][0].kill());
    let promoted = id(&cluster, dead, 1);
    let (t, slots) = rt
        .block_on(driver::promote_replica(&cluster.topology, &promoted))
        .unwrap_or_else(|e| dump_logs(&dir.0, e));
    assert_eq!(slots, vec![slot]);
    let opts = MigrateOptions {
        timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let resume = matches!(case, Failover::SourceThenResume | Failover::TargetThenResume);
    let t = if resume {
        rt.block_on(driver::resume_migration(&t, slot, &opts))
            .unwrap_or_else(|e| dump_logs(&dir.0, e))
    } else {
        rt.block_on(driver::cancel_migration(&t, slot, &opts))
            .unwrap_or_else(|e| dump_logs(&dir.0, e));
        t
    };
    // The writer keeps going across the end of the migration.
    let after = ops.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ops.load(Ordering::Relaxed) < after + 20 {
        assert!(Instant::now() < deadline, "writer stalled after the migration");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let w = rt.block_on(writer).unwrap_or_else(|e| dump_logs(&dir.0, e));
    eprintln!(
        "{case:?}: {} writes ({} acknowledged keys, {} unconfirmed)",
        w.ops,
        w.acked.len(),
        w.unconfirmed
    );

    // The primaries now: the promoted replica in the dead one's shard.
    let primary = |shard: usize| {
        if shard == dead {
            addr(&cluster, dead, 1)
        } else {
            addr(&cluster, shard, 0)
        }
    };
    let (owner_shard, other_shard) = if resume { (d, s) } else { (s, d) };
    let owner_addr = primary(owner_shard);
    let owner_id = id(&cluster, owner_shard, usize::from(owner_shard == dead));
    assert_eq!(driver::slot_owner(&t, slot), Some(owner_id.as_str()), "{case:?}");
    for n in t.nodes.iter() {
        let a = format!("{}:{}", n.ip, n.port);
        assert_eq!(
            rt.block_on(driver::held_topology(&a)).unwrap().as_ref(),
            Some(&t),
            "{a}"
        );
        assert!(
            rt.block_on(driver::migration_status(&a, None)).unwrap().is_empty(),
            "{a}"
        );
    }
    let present = rt.block_on(check_acked(&owner_addr, &w));
    assert_eq!(rt.block_on(count_in_slot(&primary(other_shard), slot)), 0, "{case:?}");
    assert_eq!(
        rt.block_on(count_in_slot(&owner_addr, slot)),
        (n + present) as i64,
        "{case:?}"
    );
    rt.block_on(check_bulk(&owner_addr, n));
    // The shard that kept its replica: it holds exactly its primary's data.
    rt.block_on(await_same_data(
        &addr(&cluster, survivor, 0),
        &addr(&cluster, survivor, 1),
        slot,
    ));
    rt.block_on(cluster.stop());
}

#[test]
fn source_failover_mid_migration_then_resume() {
    failover_mid_migration("migrate-failover-source-resume", Failover::SourceThenResume);
}

#[test]
fn target_failover_mid_migration_then_cancel() {
    failover_mid_migration("migrate-failover-target-cancel", Failover::TargetThenCancel);
}

#[test]
fn source_failover_mid_migration_then_cancel() {
    failover_mid_migration("migrate-failover-source-cancel", Failover::SourceThenCancel);
}

#[test]
fn target_failover_mid_migration_then_resume() {
    failover_mid_migration("migrate-failover-target-resume", Failover::TargetThenResume);
}
