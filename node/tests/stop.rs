//! Stopping a node on purpose (SIGTERM, `SHUTDOWN`), on the real binary:
//! the final snapshot Redis takes when save points are configured (or
//! `SHUTDOWN SAVE` asks), none with `NOSAVE`, the command's errors, and a
//! stopping primary waiting for a lagging replica (but not with `NOW`).

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::{Binary, Frame, RawClient, TempDir, wait_for};

fn dir_arg(dir: &TempDir) -> String {
    dir.0.to_str().unwrap().to_string()
}

fn fill(c: &mut RawClient, prefix: &str, n: usize) {
    for i in 0..n {
        let r = c.cmd(&["SET", &format!("{prefix}:{i}"), &format!("value-{i}")]);
        assert_eq!(r, Frame::Simple("OK".into()));
    }
}

fn dbsize(c: &mut RawClient) -> i64 {
    match c.cmd(&["DBSIZE"]) {
        Frame::Int(n) => n,
        other => panic!("DBSIZE: {other:?}"),
    }
}

/// SIGTERM with a save schedule that has not fired: the node saves before
/// it exits, as Redis does, so a restart finds every write.
#[test]
fn sigterm_takes_a_final_snapshot_when_save_points_are_set() {
    let dir = TempDir::new("stop-sigterm");
    let d = dir_arg(&dir);
    let mut node = Binary::start(&["--dir", &d, "--save", "3600 1"]);
    let mut c = RawClient::connect(node.addr);
    fill(&mut c, "k", 500);
    let digest = c.cmd(&["DIGEST"]);
    node.signal("TERM");
    assert!(node.wait_exit(Duration::from_secs(30)).success());
    let node = Binary::start(&["--dir", &d, "--save", "3600 1"]);
    let mut c = RawClient::connect(node.addr);
    assert_eq!(dbsize(&mut c), 500);
    assert_eq!(c.cmd(&["DIGEST"]), digest);
}

#[test]
fn shutdown_saves_as_asked_and_closes_without_a_reply() {
    let dir = TempDir::new("stop-shutdown");
    let d = dir_arg(&dir);
    // No save points: only `SHUTDOWN SAVE` writes a snapshot.
    let mut node = Binary::start(&["--dir", &d, "--save", ""]);
    let mut c = RawClient::connect(node.addr);
    fill(&mut c, "a", 100);
    for (args, err) in [
        (&["SHUTDOWN", "ABORT"][..], "ERR No shutdown in progress."),
        (&["SHUTDOWN", "SAVE", "NOSAVE"], "ERR syntax error"),
        (&["SHUTDOWN", "ABORT", "NOW"], "ERR syntax error"),
        (&["SHUTDOWN", "LATER"], "ERR syntax error"),
    ] {
        assert_eq!(c.cmd(args), Frame::Error(err.into()), "{args:?}");
    }
    assert_eq!(c.cmd(&["MULTI"]), Frame::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["SHUTDOWN"]),
        Frame::Error("ERR Command not allowed inside a transaction".into())
    );
    assert_eq!(c.cmd(&["DISCARD"]), Frame::Simple("OK".into()));
    c.send(&["SHUTDOWN", "SAVE"]);
    assert!(c.try_read().is_err(), "SHUTDOWN answers nothing: the connection closes");
    assert!(node.wait_exit(Duration::from_secs(30)).success());

    // Save points set, but NOSAVE: what was written since is gone.
    let mut node = Binary::start(&["--dir", &d, "--save", "3600 1"]);
    let mut c = RawClient::connect(node.addr);
    assert_eq!(dbsize(&mut c), 100);
    fill(&mut c, "b", 50);
    c.send(&["SHUTDOWN", "NOSAVE", "NOW", "FORCE"]);
    assert!(c.try_read().is_err());
    assert!(node.wait_exit(Duration::from_secs(30)).success());

    // And the default with save points: saved.
    let mut node = Binary::start(&["--dir", &d, "--save", "3600 1"]);
    let mut c = RawClient::connect(node.addr);
    assert_eq!(dbsize(&mut c), 100, "NOSAVE wrote no snapshot");
    fill(&mut c, "c", 50);
    c.send(&["shutdown"]);
    assert!(c.try_read().is_err());
    assert!(node.wait_exit(Duration::from_secs(30)).success());
    let node = Binary::start(&["--dir", &d, "--save", ""]);
    assert_eq!(dbsize(&mut RawClient::connect(node.addr)), 150);
}

/// A primary whose replica cannot acknowledge (the replica process is
/// stopped with SIGSTOP) waits for it before exiting, and exits once the
/// replica resumes and catches up; with `NOW` it does not wait.
#[test]
fn a_stopping_primary_waits_for_a_lagging_replica_unless_now() {
    for now in [false, true] {
        let (pd, rd) = (TempDir::new("stop-primary"), TempDir::new("stop-replica"));
        let mut primary = Binary::start(&["--dir", &dir_arg(&pd), "--save", ""]);
        let port = primary.addr.port().to_string();
        let replica = Binary::start(&["--dir", &dir_arg(&rd), "--save", "", "--replicaof", "127.0.0.1", &port]);
        let mut p = RawClient::connect(primary.addr);
        let mut r = RawClient::connect(replica.addr);
        wait_for("the replica online", Duration::from_secs(30), || {
            let Frame::Bulk(info) = p.cmd(&["INFO", "replication"]) else {
                return None;
            };
            String::from_utf8_lossy(&info).contains("state=online").then_some(())
        });
        fill(&mut p, "k", 10);
        // Everything so far is acknowledged; then the replica stops acking.
        assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
        replica.signal("STOP");
        fill(&mut p, "late", 10);
        let started = Instant::now();
        let shutdown: &[&str] = if now { &["SHUTDOWN", "NOW"] } else { &["SHUTDOWN"] };
        p.send(shutdown);
        assert!(p.try_read().is_err());
        if now {
            assert!(primary.wait_exit(Duration::from_secs(5)).success());
            assert!(started.elapsed() < Duration::from_secs(1), "NOW does not wait");
            replica.signal("CONT");
            continue;
        }
        // The sleep is what is tested: the primary must still be up after
        // it, waiting for the stopped replica (it exits at once without the
        // wait, as the NOW case shows).
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            primary.child.try_wait().unwrap().is_none(),
            "the primary waits for its replica to acknowledge"
        );
        replica.signal("CONT");
        assert!(primary.wait_exit(Duration::from_secs(15)).success());
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "exited once the replica caught up"
        );
        assert_eq!(dbsize(&mut r), 20);
    }
}
