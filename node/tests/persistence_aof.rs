//! The append-only log, black box over TCP: writes survive a restart under
//! each `appendfsync` policy, torn tails and corruption are handled as
//! documented in `persist/mod.rs`, group commit shares fsyncs without ever
//! acknowledging an unsynced write, a full disk turns writes into `-MISCONF`,
//! the zero-filled space of `always` never outlives an open segment nor
//! counts in its size, and `ferrokv-node check` reports what it finds.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferrokv_node::config::ServeArgs;
use support::{Frame, RawClient, TempDir, server_with, wait_for};

fn aof_args(dir: &Path, fsync: &str) -> ServeArgs {
    ServeArgs {
        dir: Some(dir.to_path_buf()),
        appendonly: Some("yes".into()),
        appendfsync: Some(fsync.into()),
        ..Default::default()
    }
}

/// Start a server the way `server_with` does, but return the startup error
/// instead of panicking.
fn try_start(mut args: ServeArgs) -> Result<(), String> {
    args.port = Some(0);
    args.bind = Some(vec!["127.0.0.1".into()]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        match ferrokv_node::server::start(&args).await {
            Ok(r) => {
                r.shutdown().await;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    })
}

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("appendonlydir")
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(log_dir(dir))
        .expect("log dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn info_field(c: &mut RawClient, section: &str, field: &str) -> String {
    let (Frame::Bulk(b) | Frame::Verbatim(b)) = c.cmd(&["INFO", section]) else {
        panic!("INFO reply")
    };
    let text = String::from_utf8_lossy(&b).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
}

fn write_dataset(c: &mut RawClient) {
    for i in 0..200 {
        assert_eq!(
            c.cmd(&["SET", &format!("k{i}"), &format!("v{i}")]),
            Frame::Simple("OK".into())
        );
    }
    for _ in 0..7 {
        c.cmd(&["INCR", "counter"]);
    }
    c.cmd(&["RPUSH", "list", "a", "b", "c"]);
    c.cmd(&["HSET", "h", "f1", "x", "f2", "y"]);
    c.cmd(&["MULTI"]);
    c.cmd(&["SET", "tx1", "1"]);
    c.cmd(&["SET", "tx2", "2"]);
    assert!(matches!(c.cmd(&["EXEC"]), Frame::Array(_)));
    c.cmd(&["DEL", "k0"]);
    c.cmd(&["SET", "ttl", "x", "EX", "1000"]);
}

fn verify_dataset(c: &mut RawClient) {
    for i in 1..200 {
        assert_eq!(c.cmd(&["GET", &format!("k{i}")]), Frame::bulk(&format!("v{i}")), "k{i}");
    }
    assert_eq!(c.cmd(&["GET", "k0"]), Frame::Null);
    assert_eq!(c.cmd(&["GET", "counter"]), Frame::bulk("7"));
    assert_eq!(
        c.cmd(&["LRANGE", "list", "0", "-1"]),
        Frame::Array(vec![Frame::bulk("a"), Frame::bulk("b"), Frame::bulk("c")])
    );
    assert_eq!(c.cmd(&["HGET", "h", "f2"]), Frame::bulk("y"));
    assert_eq!(c.cmd(&["GET", "tx2"]), Frame::bulk("2"));
    let Frame::Int(ttl) = c.cmd(&["TTL", "ttl"]) else {
        panic!("ttl")
    };
    assert!(ttl > 900 && ttl <= 1000, "ttl {ttl}");
}

#[test]
fn writes_survive_restart_for_each_fsync_policy() {
    for policy in ["always", "everysec", "no"] {
        let dir = TempDir::new(&format!("aof-{policy}"));
        let offset = {
            let s = server_with(aof_args(&dir.0, policy));
            let mut c = RawClient::connect(s.addr);
            assert_eq!(info_field(&mut c, "persistence", "aof_enabled"), "1");
            assert_eq!(
                c.cmd(&["CONFIG", "GET", "appendfsync"]),
                Frame::Array(vec![Frame::bulk("appendfsync"), Frame::bulk(policy)])
            );
            write_dataset(&mut c);
            s.state.db.wlog.offset()
        };
        let s = server_with(aof_args(&dir.0, policy));
        let mut c = RawClient::connect(s.addr);
        verify_dataset(&mut c);
        assert_eq!(
            s.state.db.wlog.offset(),
            offset,
            "{policy}: offsets continue where the file ends"
        );
        // Appending after a restart continues the same log.
        c.cmd(&["SET", "after", "restart"]);
        drop(c);
        drop(s);
        let s = server_with(aof_args(&dir.0, policy));
        let mut c = RawClient::connect(s.addr);
        verify_dataset(&mut c);
        assert_eq!(c.cmd(&["GET", "after"]), Frame::bulk("restart"));
    }
}

/// A server killed without shutdown: the log must hold what `always`
/// acknowledged. (The real kill -9 test is tests/crash.rs; this one checks
/// the in-process state right after the acknowledgement.)
#[test]
fn always_acknowledges_only_fsynced_writes_and_shares_fsyncs() {
    let dir = TempDir::new("aof-group");
    let s = server_with(aof_args(&dir.0, "always"));
    let clients = 32;
    let per_client = 100;
    let state = s.state.clone();
    let addr = s.addr;
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let state = state.clone();
            std::thread::spawn(move || {
                let mut c = RawClient::connect(addr);
                let Frame::Int(id) = c.cmd(&["CLIENT", "ID"]) else {
                    panic!("id")
                };
                let handle = state.clients.get(id as u64).expect("registered");
                for i in 0..per_client {
                    assert_eq!(c.cmd(&["SET", &format!("c{t}-{i}"), "v"]), Frame::Simple("OK".into()));
                    // The invariant: the reply left only after the write was fsynced.
                    let mine = handle.write_offset.load(Ordering::Relaxed);
                    assert!(state.aof.acked() >= mine, "acknowledged {mine} before fsync");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let acked = (clients * per_client) as u64;
    let fsyncs = s.state.aof.fsyncs.load(Ordering::Relaxed);
    eprintln!("group commit: {acked} acknowledged writes, {fsyncs} fsyncs");
    assert!(fsyncs > 0);
    assert!(
        fsyncs * 2 < acked,
        "group commit should share fsyncs: {fsyncs} fsyncs for {acked} writes"
    );
    // Reads never wait for the log: no fsync is needed to answer them.
    let mut c = RawClient::connect(s.addr);
    let before = s.state.aof.fsyncs.load(Ordering::Relaxed);
    for i in 0..50 {
        assert_eq!(c.cmd(&["GET", &format!("c0-{i}")]), Frame::bulk("v"));
    }
    assert_eq!(s.state.aof.fsyncs.load(Ordering::Relaxed), before);
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open segment");
    f.write_all(bytes).expect("append");
}

#[test]
fn torn_tail_is_refused_then_repaired_with_repair_log() {
    let dir = TempDir::new("aof-torn");
    {
        let s = server_with(aof_args(&dir.0, "always"));
        let mut c = RawClient::connect(s.addr);
        write_dataset(&mut c);
    }
    let seg = segments(&dir.0).pop().expect("a segment");
    let good_len = std::fs::metadata(&seg).expect("meta").len();
    // A record whose header promises 100 bytes of which only 10 were written.
    let mut torn = Vec::new();
    torn.extend_from_slice(&0x4C52_4B46u32.to_le_bytes());
    torn.extend_from_slice(&100u32.to_le_bytes());
    torn.extend_from_slice(&[0u8; 12]);
    torn.extend_from_slice(b"*3\r\n$3\r\nSE");
    append_bytes(&seg, &torn);

    let err = try_start(aof_args(&dir.0, "always")).expect_err("a torn tail must refuse to start");
    assert!(err.contains("torn record"), "{err}");
    assert!(err.contains(&seg.display().to_string()), "names the file: {err}");
    assert!(err.contains(&format!("byte {good_len}")), "names the position: {err}");
    assert!(
        err.contains(&format!("{} bytes", torn.len())),
        "names the byte count: {err}"
    );
    assert!(err.contains("--repair-log"), "{err}");

    let mut args = aof_args(&dir.0, "always");
    args.repair_log = true;
    let s = server_with(args);
    // Dropped: nothing but zeros after the good bytes (under `always` the
    // writer may already have zero-filled space ahead of itself).
    let data = std::fs::read(&seg).expect("read segment");
    assert!(
        data.len() as u64 >= good_len && data[good_len as usize..].iter().all(|&b| b == 0),
        "torn bytes dropped"
    );
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
    c.cmd(&["SET", "after", "repair"]);
    drop(c);
    drop(s);
    let s = server_with(aof_args(&dir.0, "always"));
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
    assert_eq!(c.cmd(&["GET", "after"]), Frame::bulk("repair"));
}

#[test]
fn corruption_in_the_middle_is_always_refused() {
    let dir = TempDir::new("aof-corrupt");
    {
        let s = server_with(aof_args(&dir.0, "always"));
        let mut c = RawClient::connect(s.addr);
        write_dataset(&mut c);
    }
    let seg = segments(&dir.0).pop().expect("a segment");
    let mut data = std::fs::read(&seg).expect("read");
    // A byte inside the first record's payload (header 20 + record header 20).
    data[45] ^= 0x20;
    std::fs::write(&seg, &data).expect("write");
    let err = try_start(aof_args(&dir.0, "always")).expect_err("corruption must refuse");
    assert!(err.contains("corrupt at byte 20"), "{err}");
    let mut args = aof_args(&dir.0, "always");
    args.repair_log = true;
    let err = try_start(args).expect_err("--repair-log does not repair corruption");
    assert!(err.contains("corrupt"), "{err}");
    // The offline checker agrees and exits non-zero.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
        .arg("check")
        .arg(&seg)
        .output()
        .expect("run check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("CORRUPT at byte 20"), "{text}");
}

#[test]
fn check_reports_a_healthy_log_and_a_torn_one() {
    let dir = TempDir::new("aof-check");
    {
        let s = server_with(aof_args(&dir.0, "everysec"));
        let mut c = RawClient::connect(s.addr);
        write_dataset(&mut c);
    }
    let run = |p: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
            .arg("check")
            .arg(p)
            .output()
            .expect("run check");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (ok, text) = run(&log_dir(&dir.0));
    assert!(ok, "{text}");
    assert!(
        text.contains("manifest: base (empty dataset) at offset 0, 1 segments"),
        "{text}"
    );
    assert!(text.contains("checksums OK"), "{text}");
    let seg = segments(&dir.0).pop().expect("segment");
    append_bytes(&seg, b"partial");
    let (ok, text) = run(&seg);
    assert!(!ok, "{text}");
    assert!(text.contains("TORN TAIL"), "{text}");
}

#[test]
fn segments_rotate_by_size_and_replay_in_order() {
    let dir = TempDir::new("aof-rotate");
    let mut args = aof_args(&dir.0, "everysec");
    args.aof_segment_size = Some("2kb".into());
    {
        let s = server_with(args.clone());
        let mut c = RawClient::connect(s.addr);
        write_dataset(&mut c);
        // More writes until the log rotated twice (rotation happens between
        // records, and how many writes a record holds depends on the writer's pace).
        let mut n = 0;
        wait_for("rotation", Duration::from_secs(30), || {
            n += 1;
            c.cmd(&["SET", &format!("pad{n}"), &"p".repeat(500)]);
            (segments(&dir.0).len() >= 3).then_some(())
        });
    }
    let segs = segments(&dir.0);
    assert!(segs.len() >= 3, "{segs:?}");
    let manifest = std::fs::read_to_string(log_dir(&dir.0).join("manifest")).expect("manifest");
    for s in &segs {
        let name = s.file_name().expect("name").to_string_lossy().into_owned();
        assert!(manifest.contains(&name), "{name} not in {manifest}");
    }
    let s = server_with(args);
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
}

/// Under `always` the open segment is zero-filled ahead of its last record;
/// closed segments (rotation) and the last one after a clean stop end with
/// their last record, and `aof_current_size` leaves the zeros out.
#[test]
fn zero_filled_space_is_trimmed_on_close_and_not_counted() {
    use ferrokv_node::persist::segment::{Tail, scan};
    let dir = TempDir::new("aof-zero-fill");
    let mut args = aof_args(&dir.0, "always");
    // Rotation by age, so that a segment closes with zeros still ahead of
    // its last record (one rotated by size has written over them).
    args.aof_segment_seconds = Some(1);
    let zeros = |p: &Path| {
        let data = std::fs::read(p).expect("read segment");
        let s = scan(&data).expect("segment header");
        assert_eq!(s.tail, Tail::Clean, "{}", p.display());
        (s.preallocated as u64, data.len() as u64)
    };
    {
        let s = server_with(args.clone());
        let mut c = RawClient::connect(s.addr);
        let mut n = 0;
        wait_for("a rotation", Duration::from_secs(30), || {
            n += 1;
            c.cmd(&["SET", &format!("k{n}"), &"v".repeat(1000)]);
            (segments(&dir.0).len() >= 2).then_some(())
        });
        // Once the writes stop, the log rotates (by age) at most once more,
        // to an empty segment, and then holds still: wait until its helper
        // has zero-filled 2 MiB ahead of it.
        let open = wait_for("the open segment zero-filled", Duration::from_secs(20), || {
            let open = segments(&dir.0).pop().expect("a segment");
            (zeros(&open).0 >= 2 << 20).then_some(open)
        });
        let segs = segments(&dir.0);
        assert_eq!(segs.last(), Some(&open));
        for closed in &segs[..segs.len() - 1] {
            assert_eq!(zeros(closed).0, 0, "closed segment {} keeps zeros", closed.display());
        }
        let open = &open;
        let on_disk: u64 = std::fs::read_dir(log_dir(&dir.0))
            .expect("log dir")
            .flatten()
            .map(|e| e.metadata().expect("metadata").len())
            .sum();
        let size: u64 = info_field(&mut c, "persistence", "aof_current_size")
            .parse()
            .expect("size");
        assert_eq!(size, on_disk - zeros(open).0);
    }
    for seg in segments(&dir.0) {
        assert_eq!(zeros(&seg).0, 0, "{} keeps zeros after a clean stop", seg.display());
    }
}

#[test]
fn config_set_turns_the_log_on_and_off() {
    let dir = TempDir::new("aof-config");
    {
        let s = server_with(ServeArgs {
            dir: Some(dir.0.clone()),
            ..Default::default()
        });
        let mut c = RawClient::connect(s.addr);
        assert_eq!(
            c.cmd(&["CONFIG", "GET", "appendonly"]),
            Frame::Array(vec![Frame::bulk("appendonly"), Frame::bulk("no")])
        );
        assert_eq!(info_field(&mut c, "persistence", "aof_enabled"), "0");
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "appendonly", "yes"]),
            Frame::Simple("OK".into())
        );
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "appendfsync", "always"]),
            Frame::Simple("OK".into())
        );
        assert!(c.cmd(&["CONFIG", "SET", "appendfsync", "sometimes"]).is_error());
        assert_eq!(info_field(&mut c, "persistence", "aof_enabled"), "1");
        write_dataset(&mut c);
    }
    let s = server_with(aof_args(&dir.0, "everysec"));
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "appendonly", "no"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(info_field(&mut c, "persistence", "aof_enabled"), "0");
}

/// A real full disk: a 4 MiB tmpfs (needs root; skipped with a message
/// otherwise). The log must refuse writes with MISCONF once it cannot
/// persist them, report it, lose none of the writes it acknowledged, and
/// recover with BGREWRITEAOF once space is freed.
#[test]
fn full_disk_refuses_writes_with_misconf() {
    let dir = TempDir::new("aof-full");
    let mnt = dir.0.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("SKIPPED full_disk_refuses_writes_with_misconf: cannot mount a tmpfs (not root?)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    // Room the test frees later so that BGREWRITEAOF can recover.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 5 << 19]).expect("filler");
    let value = "x".repeat(16 * 1024);
    let mut acked = Vec::new();
    {
        let s = server_with(aof_args(&mnt, "always"));
        let mut c = RawClient::connect(s.addr);
        let mut refused = None;
        for i in 0..200 {
            match c.cmd(&["SET", &format!("big{i}"), &value]) {
                Frame::Simple(ok) if ok == "OK" => acked.push(i),
                Frame::Error(e) => {
                    refused = Some(e);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        let e = refused.expect("a 4 MiB disk must fill up");
        assert!(e.starts_with("MISCONF Errors writing to the AOF file: "), "{e}");
        assert!(!acked.is_empty());
        // Later writes are refused up front; reads still work.
        let e = c.cmd(&["SET", "small", "1"]);
        assert!(matches!(&e, Frame::Error(m) if m.starts_with("MISCONF")), "{e:?}");
        assert_eq!(c.cmd(&["GET", "big0"]), Frame::bulk(&value));
        assert_eq!(info_field(&mut c, "persistence", "aof_last_write_status"), "err");
        let metrics = s.state.metrics.render(&s.state);
        assert!(metrics.contains("ferrokv_aof_last_write_ok 0"), "{metrics}");
        // Space is freed: BGREWRITEAOF starts the log afresh from a new base.
        std::fs::remove_file(&filler).expect("rm filler");
        assert_eq!(
            c.cmd(&["BGREWRITEAOF"]),
            Frame::Simple("Background append only file rewriting started".into())
        );
        wait_for("the log to recover", Duration::from_secs(30), || {
            (info_field(&mut c, "persistence", "aof_last_write_status") == "ok"
                && info_field(&mut c, "persistence", "aof_rewrite_in_progress") == "0")
                .then_some(())
        });
        assert_eq!(c.cmd(&["SET", "small", "after-recovery"]), Frame::Simple("OK".into()));
    }
    // Every acknowledged write is on the disk (the failed record was cut off).
    let s = server_with(aof_args(&mnt, "always"));
    let mut c = RawClient::connect(s.addr);
    for i in &acked {
        assert_eq!(c.cmd(&["GET", &format!("big{i}")]), Frame::bulk(&value), "big{i}");
    }
    assert_eq!(c.cmd(&["GET", "small"]), Frame::bulk("after-recovery"));
}

fn wait_rewrite_done(c: &mut RawClient, rewrites: &str) {
    wait_for("rewrite to finish", Duration::from_secs(30), || {
        (info_field(c, "persistence", "aof_rewrite_in_progress") == "0"
            && info_field(c, "persistence", "aof_rewrites") == rewrites)
            .then_some(())
    });
    assert_eq!(info_field(c, "persistence", "aof_last_bgrewrite_status"), "ok");
}

#[test]
fn bgrewriteaof_compacts_into_a_base_and_keeps_every_write() {
    let dir = TempDir::new("aof-rewrite");
    let mut args = aof_args(&dir.0, "everysec");
    args.aof_segment_size = Some("4kb".into());
    {
        let s = server_with(args.clone());
        let mut c = RawClient::connect(s.addr);
        // Overwrite the same keys until the log has rotated a few times: the
        // log grows, the dataset not. (Rotation happens between records, and
        // how many writes one record holds depends on the writer's pace.)
        let mut round = 0;
        let before = wait_for("rotations", Duration::from_secs(30), || {
            round += 1;
            for i in 0..20 {
                c.cmd(&["SET", &format!("k{i}"), &format!("r{round}-{}", "x".repeat(100))]);
            }
            let s = segments(&dir.0);
            (s.len() >= 3).then_some(s)
        });
        assert_eq!(
            c.cmd(&["BGREWRITEAOF"]),
            Frame::Simple("Background append only file rewriting started".into())
        );
        wait_rewrite_done(&mut c, "1");
        let after = segments(&dir.0);
        assert!(
            after.iter().all(|p| !before[..before.len() - 1].contains(p)),
            "segments wholly before the base are gone: {before:?} -> {after:?}"
        );
        let manifest = std::fs::read_to_string(log_dir(&dir.0).join("manifest")).expect("manifest");
        assert!(manifest.contains("base base-"), "{manifest}");
        // Writes after the rewrite go on in the new segment.
        write_dataset(&mut c);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
        .arg("check")
        .arg(log_dir(&dir.0))
        .output()
        .expect("run check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("checksums OK (file crc32c"),
        "the base is checked too: {text}"
    );
    let s = server_with(args);
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
    for i in 1..20 {
        assert_eq!(c.cmd(&["GET", &format!("k{i}")]), Frame::bulk(&format!("v{i}")));
    }
}

#[test]
fn appendonly_on_at_runtime_keeps_the_existing_dataset() {
    let dir = TempDir::new("aof-runtime");
    {
        let s = server_with(ServeArgs {
            dir: Some(dir.0.clone()),
            ..Default::default()
        });
        let mut c = RawClient::connect(s.addr);
        write_dataset(&mut c);
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "appendonly", "yes"]),
            Frame::Simple("OK".into())
        );
        c.cmd(&["SET", "after", "enable"]);
    }
    let s = server_with(aof_args(&dir.0, "everysec"));
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
    assert_eq!(c.cmd(&["GET", "after"]), Frame::bulk("enable"));
}

#[test]
fn first_start_with_the_log_takes_the_snapshot_as_its_base() {
    let dir = TempDir::new("aof-from-dump");
    {
        let s = server_with(ServeArgs {
            dir: Some(dir.0.clone()),
            ..Default::default()
        });
        let mut c = RawClient::connect(s.addr);
        write_dataset(&mut c);
        ferrokv_node::persist::snapshot::save_file(&s.state, &dir.0.join("dump.fkv"), &s.state.repl.replid())
            .expect("save dump.fkv");
    }
    {
        let s = server_with(aof_args(&dir.0, "always"));
        let mut c = RawClient::connect(s.addr);
        verify_dataset(&mut c);
        c.cmd(&["SET", "after", "base"]);
    }
    std::fs::remove_file(dir.0.join("dump.fkv")).expect("rm dump");
    let s = server_with(aof_args(&dir.0, "always"));
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
    assert_eq!(c.cmd(&["GET", "after"]), Frame::bulk("base"));
}

#[test]
fn the_log_rewrites_itself_when_it_doubles() {
    let dir = TempDir::new("aof-auto");
    let mut args = aof_args(&dir.0, "everysec");
    args.aof_segment_size = Some("8kb".into());
    {
        let s = server_with(args.clone());
        let mut c = RawClient::connect(s.addr);
        assert_eq!(
            c.cmd(&["CONFIG", "SET", "auto-aof-rewrite-min-size", "32kb"]),
            Frame::Simple("OK".into())
        );
        assert_eq!(
            c.cmd(&["CONFIG", "GET", "auto-aof-rewrite-percentage"]),
            Frame::Array(vec![Frame::bulk("auto-aof-rewrite-percentage"), Frame::bulk("100")])
        );
        let mut round = 0;
        wait_for("an automatic rewrite", Duration::from_secs(30), || {
            round += 1;
            for i in 0..20 {
                c.cmd(&["SET", &format!("k{i}"), &format!("r{round}-{}", "x".repeat(200))]);
            }
            (info_field(&mut c, "persistence", "aof_rewrites") != "0").then_some(())
        });
        let n = info_field(&mut c, "persistence", "aof_rewrites");
        wait_rewrite_done(&mut c, &n);
        write_dataset(&mut c);
    }
    let s = server_with(args);
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
}

/// A replica's full sync starts a new write-log history; the writer refuses
/// bytes that do not follow its segment, and `persist::rebase` restarts the
/// log from a new base.
#[test]
fn a_new_write_log_history_needs_a_rebase() {
    let dir = TempDir::new("aof-rebase");
    {
        let s = server_with(aof_args(&dir.0, "always"));
        let mut c = RawClient::connect(s.addr);
        c.cmd(&["SET", "before", "1"]);
        s.state.db.wlog.reset(1_000_000);
        let e = c.cmd(&["SET", "jump", "1"]);
        assert!(matches!(&e, Frame::Error(m) if m.contains("write log jumped")), "{e:?}");
        ferrokv_node::persist::rebase(&s.state).expect("rebase");
        assert_eq!(info_field(&mut c, "persistence", "aof_last_write_status"), "ok");
        write_dataset(&mut c);
    }
    let s = server_with(aof_args(&dir.0, "always"));
    let mut c = RawClient::connect(s.addr);
    verify_dataset(&mut c);
    assert_eq!(c.cmd(&["GET", "before"]), Frame::bulk("1"));
    assert_eq!(
        c.cmd(&["GET", "jump"]),
        Frame::bulk("1"),
        "applied before the log failed: in the base"
    );
    assert!(s.state.db.wlog.offset() > 1_000_000);
}
