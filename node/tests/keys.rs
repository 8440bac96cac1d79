//! Black-box tests of the generic key commands: differential against Redis 7
//! (replies and errors), TTL behaviour over time, SCAN guarantees under
//! concurrent writes, glob patterns, OBJECT under eviction policies and
//! keyspace notifications.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use ferrokv_node::config::ServeArgs;
use support::{Diff, Frame, RawClient, redis_server, server, server_with, wait_for};

fn check_all(d: &mut Diff, cmds: &[&[&str]]) {
    for c in cmds {
        d.check(c);
    }
}

fn int(f: Frame) -> i64 {
    match f {
        Frame::Int(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn del_unlink_exists_type_touch() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["MSET", "a", "1", "b", "2", "c", "3", "d", "4"],
            &["EXISTS", "a", "a", "b", "none"],
            &["EXISTS", "none"],
            &["TYPE", "a"],
            &["TYPE", "none"],
            &["TOUCH", "a", "b", "none", "a"],
            &["DEL", "a", "none", "a"],
            &["UNLINK", "b", "c", "none"],
            &["EXISTS", "a", "b", "c", "d"],
            &["DEL"],
            &["EXISTS"],
            &["TYPE"],
            &["TYPE", "a", "b"],
            &["TOUCH"],
        ],
    );
}

#[test]
fn expire_family_options_and_errors() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["EXPIRE", "none", "100"],
            &["SET", "k", "v"],
            &["TTL", "k"],
            &["PTTL", "k"],
            &["EXPIRETIME", "k"],
            &["PEXPIRETIME", "k"],
            &["TTL", "none"],
            &["PTTL", "none"],
            &["EXPIRETIME", "none"],
            &["PEXPIRETIME", "none"],
            &["EXPIRE", "k", "100", "XX"],
            &["EXPIRE", "k", "100", "GT"],
            &["EXPIRE", "k", "100", "LT"],
            &["TTL", "k"],
            &["EXPIRE", "k", "200", "NX"],
            &["EXPIRE", "k", "200", "nx"],
            &["EXPIRE", "k", "200", "XX"],
            &["TTL", "k"],
            &["EXPIRE", "k", "100", "GT"],
            &["EXPIRE", "k", "300", "GT"],
            &["TTL", "k"],
            &["EXPIRE", "k", "400", "LT"],
            &["EXPIRE", "k", "50", "LT"],
            &["TTL", "k"],
            &["EXPIRE", "k", "50", "XX", "LT"],
            &["EXPIRE", "k", "10", "NX", "XX"],
            &["EXPIRE", "k", "10", "NX", "GT"],
            &["EXPIRE", "k", "10", "NX", "LT"],
            &["EXPIRE", "k", "10", "GT", "LT"],
            &["EXPIRE", "k", "10", "FOO"],
            &["EXPIRE", "k", "abc"],
            &["EXPIRE", "k", "1.5"],
            &["EXPIRE", "k", "9223372036854776"],
            &["EXPIRE", "k", "-9223372036854776"],
            &["EXPIRE", "k", "9223372036854775"],
            &["PEXPIRE", "k", "9223372036854775807"],
            &["EXPIREAT", "k", "9223372036854776"],
            &["PEXPIREAT", "k", "9223372036854775807"],
            &["PEXPIRETIME", "k"],
            &["EXPIREAT", "k", "99999999999"],
            &["EXPIRETIME", "k"],
            &["PEXPIREAT", "k", "99999999999999"],
            &["PEXPIRETIME", "k"],
            &["EXPIRETIME", "k"],
            &["PEXPIRE", "k", "100000"],
            &["TTL", "k"],
            &["PERSIST", "k"],
            &["PERSIST", "k"],
            &["PERSIST", "none"],
            &["TTL", "k"],
            // Times in the past delete the key (and still answer 1).
            &["EXPIRE", "k", "-1"],
            &["EXISTS", "k"],
            &["SET", "k", "v"],
            &["PEXPIRE", "k", "0"],
            &["EXISTS", "k"],
            &["SET", "k", "v"],
            &["EXPIREAT", "k", "1"],
            &["EXISTS", "k"],
            &["SET", "k", "v"],
            &["PEXPIREAT", "k", "-5"],
            &["EXISTS", "k"],
            &["SET", "k", "v"],
            &["EXPIRE", "k", "-1", "GT"],
            &["EXPIRE", "k", "-1", "LT"],
            &["EXISTS", "k"],
            &["EXPIRE", "k"],
            &["TTL"],
            &["PERSIST"],
        ],
    );
}

#[test]
fn resp3_replies_match() {
    let mut d = Diff::new();
    let _ = d.both(&["HELLO", "3"]);
    check_all(
        &mut d,
        &[
            &["RANDOMKEY"],
            &["SET", "k", "v"],
            &["TYPE", "k"],
            &["OBJECT", "ENCODING", "none"],
            &["OBJECT", "ENCODING", "k"],
            &["OBJECT", "HELP"],
            &["TTL", "k"],
            &["KEYS", "*"],
            &["COPY", "k", "c"],
            &["RENAME", "c", "d"],
            &["EXPIRE", "d", "100"],
        ],
    );
    // Cursors differ by design (slot-ordered here, hash-table order in Redis),
    // so SCAN is compared by the keys a full iteration returns.
    assert_eq!(scan_all(&mut d.ours, &[]), scan_all(&mut d.theirs, &[]));
}

#[test]
fn rename_and_renamenx() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["RENAME", "none", "x"],
            &["RENAMENX", "none", "x"],
            &["RENAME", "none", "none"],
            &["SET", "a", "1"],
            &["RENAME", "a", "a"],
            &["RENAMENX", "a", "a"],
            &["PEXPIRE", "a", "100000"],
            &["RENAME", "a", "b"],
            &["EXISTS", "a"],
            &["GET", "b"],
            &["TTL", "b"],
            &["SET", "c", "3"],
            &["RENAMENX", "b", "c"],
            &["RENAMENX", "b", "d"],
            &["TTL", "d"],
            &["RENAME", "c", "d"],
            &["GET", "d"],
            &["TTL", "d"],
            &["RENAME", "d"],
            &["RENAMENX", "d", "e", "f"],
        ],
    );
}

#[test]
fn copy_with_replace_and_db() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["COPY", "none", "x"],
            &["SET", "a", "1", "EX", "100"],
            &["COPY", "a", "a"],
            &["COPY", "a", "b"],
            &["GET", "b"],
            &["TTL", "b"],
            &["SET", "c", "3"],
            &["COPY", "a", "c"],
            &["GET", "c"],
            &["COPY", "a", "c", "REPLACE"],
            &["GET", "c"],
            &["COPY", "a", "c", "replace", "replace"],
            &["COPY", "a", "c", "FOO"],
            &["COPY", "a", "c", "DB"],
            &["COPY", "a", "c", "DB", "x"],
            &["COPY", "a", "c", "DB", "-1"],
            &["COPY", "a", "c", "DB", "16"],
            &["COPY", "a", "c", "DB", "99999999999"],
            &["COPY", "a", "e", "DB", "0"],
            &["COPY", "a", "a", "DB", "0"],
            &["COPY", "a"],
        ],
    );
    assert_eq!(
        d.ours.cmd(&["MOVE", "a", "1"]),
        Frame::Error("ERR MOVE is not allowed in cluster mode".into())
    );
    // Redis (not in cluster mode) has 16 databases; ferrokv has only db 0, as
    // Redis in cluster mode, and answers with cluster mode's error.
    assert_eq!(
        d.ours.cmd(&["COPY", "a", "f", "DB", "1"]),
        Frame::Error("ERR Copying to another database is not allowed in cluster mode".into())
    );
}

#[test]
fn keys_with_glob_patterns() {
    let mut d = Diff::new();
    d.check(&[
        "MSET", "hello", "1", "hallo", "2", "hxllo", "3", "hllo", "4", "heeeello", "5", "a*b", "6", "a?b", "7", "a[b",
        "8", "Hello", "9", "h\\llo", "10",
    ]);
    for p in [
        "*",
        "h?llo",
        "h*llo",
        "h[ae]llo",
        "h[^e]llo",
        "h[a-b]llo",
        "h[b-a]llo",
        "a\\*b",
        "a\\?b",
        "a[[]b",
        "a*",
        "*llo",
        "H*",
        "[h]*",
        "nomatch*",
        "h\\\\llo",
        "",
        "h[",
        "h[a-",
        "[^a-z]*",
    ] {
        d.check_unordered(&["KEYS", p]);
    }
    check_all(&mut d, &[&["KEYS"], &["KEYS", "a", "b"]]);
    // Expired keys are not listed.
    d.check(&["SET", "gone", "v", "PXAT", "1"]);
    d.check_unordered(&["KEYS", "*"]);
}

/// Iterate SCAN to the end on one client; returns every key seen (duplicates
/// fail the test).
fn scan_all(c: &mut RawClient, extra: &[&str]) -> BTreeSet<Vec<u8>> {
    let mut seen = BTreeSet::new();
    let mut cursor = "0".to_string();
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let Frame::Array(v) = c.cmd(&args) else {
            panic!("SCAN must answer an array")
        };
        let (Frame::Bulk(next), Frame::Array(keys)) = (&v[0], &v[1]) else {
            panic!("bad SCAN reply {v:?}")
        };
        for k in keys {
            let Frame::Bulk(k) = k else {
                panic!("key must be a bulk")
            };
            assert!(seen.insert(k.clone()), "SCAN returned {k:?} twice");
        }
        cursor = String::from_utf8(next.clone()).expect("cursor is decimal");
        if cursor == "0" {
            return seen;
        }
    }
}

#[test]
fn scan_options_and_errors_match_redis() {
    let mut d = Diff::new();
    for i in 0..300 {
        d.check(&["SET", &format!("key:{i}"), "v"]);
        d.check(&["SET", &format!("other:{i}"), "v"]);
    }
    for extra in [
        &[][..],
        &["COUNT", "7"],
        &["MATCH", "key:1*"],
        &["MATCH", "*", "COUNT", "1000"],
        &["MATCH", "other:[0-2]?", "COUNT", "3"],
        &["TYPE", "string"],
        &["TYPE", "STRING", "MATCH", "key:29*"],
        &["TYPE", "list"],
        &["TYPE", "nosuchtype"],
    ] {
        let ours = scan_all(&mut d.ours, extra);
        let theirs = scan_all(&mut d.theirs, extra);
        assert_eq!(ours, theirs, "SCAN {extra:?}");
    }
    check_all(
        &mut d,
        &[
            &["SCAN", "0", "COUNT", "0"],
            &["SCAN", "0", "COUNT", "-1"],
            &["SCAN", "0", "COUNT", "x"],
            &["SCAN", "0", "COUNT"],
            &["SCAN", "0", "MATCH"],
            &["SCAN", "0", "TYPE"],
            &["SCAN", "0", "FOO", "bar"],
            &["SCAN", "x"],
            &["SCAN", "1a"],
            &["SCAN", " 1"],
            &["SCAN", "18446744073709551616"],
            &["SCAN"],
        ],
    );
    // A cursor past the end (valid number) ends the iteration.
    assert_eq!(
        d.ours.cmd(&["SCAN", "18446744073709551615"]),
        Frame::Array(vec![Frame::bulk("0"), Frame::Array(vec![])])
    );
}

#[test]
fn scan_returns_every_key_once_with_concurrent_inserts() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    let n = 2000;
    for i in 0..n {
        c.cmd(&["SET", &format!("base:{i}"), "v"]);
    }
    let addr = s.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut w = RawClient::connect(addr);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                w.cmd(&["SET", &format!("new:{i}"), "v"]);
                w.cmd(&["DEL", &format!("new:{}", i / 2)]);
                i += 1;
            }
            i
        })
    };
    let seen = scan_all(&mut c, &["COUNT", "25"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().expect("writer");
    assert!(written > 0);
    for i in 0..n {
        assert!(seen.contains(format!("base:{i}").as_bytes()), "base:{i} missing");
    }
}

#[test]
fn randomkey_returns_live_keys() {
    let mut d = Diff::new();
    d.check(&["RANDOMKEY"]);
    d.check(&["RANDOMKEY", "x"]);
    let s = server();
    let mut c = RawClient::connect(s.addr);
    assert_eq!(c.cmd(&["RANDOMKEY"]), Frame::Null);
    c.cmd(&["MSET", "a", "1", "b", "2", "c", "3"]);
    let mut seen = HashSet::new();
    wait_for("RANDOMKEY to return every key", Duration::from_secs(10), || {
        match c.cmd(&["RANDOMKEY"]) {
            Frame::Bulk(k) => {
                assert!([&b"a"[..], b"b", b"c"].contains(&k.as_slice()), "unexpected key {k:?}");
                seen.insert(k);
            }
            other => panic!("RANDOMKEY answered {other:?}"),
        }
        (seen.len() == 3).then_some(())
    });
    // Only expired keys left: they are reclaimed and nil is returned.
    c.cmd(&["DEL", "a", "b", "c"]);
    c.cmd(&["SET", "x", "1", "PXAT", "1"]);
    c.cmd(&["SET", "y", "1", "PXAT", "1"]);
    assert_eq!(c.cmd(&["RANDOMKEY"]), Frame::Null);
    assert_eq!(c.cmd(&["KEYS", "*"]), Frame::Array(vec![]));
}

#[test]
fn object_subcommands_and_errors() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["SET", "k", "v"],
            &["OBJECT", "ENCODING", "k"],
            &["OBJECT", "encoding", "none"],
            &["OBJECT", "REFCOUNT", "k"],
            &["OBJECT", "REFCOUNT", "none"],
            &["OBJECT", "FREQ", "k"],
            &["OBJECT", "FREQ", "none"],
            &["OBJECT", "HELP"],
            &["OBJECT", "help"],
            &["OBJECT", "NOPE", "k"],
            &["OBJECT"],
            &["OBJECT", "ENCODING"],
            &["OBJECT", "ENCODING", "a", "b"],
            &["OBJECT", "HELP", "x"],
        ],
    );
    // Idle time is a clock reading; both are 0 for a key just written.
    d.check(&["OBJECT", "IDLETIME", "k"]);
    d.check(&["OBJECT", "IDLETIME", "none"]);
}

#[test]
fn object_freq_and_idletime_under_lfu() {
    let server = server_with(ServeArgs {
        maxmemory_policy: Some("allkeys-lfu".into()),
        ..Default::default()
    });
    let redis = redis_server(&["--maxmemory-policy", "allkeys-lfu"]);
    let mut d = Diff {
        ours: RawClient::connect(server.addr),
        theirs: RawClient::connect(redis.addr),
        _server: server,
        _redis: redis,
    };
    check_all(
        &mut d,
        &[
            &["SET", "k", "v"],
            &["OBJECT", "FREQ", "k"],
            &["OBJECT", "IDLETIME", "k"],
            &["OBJECT", "IDLETIME", "none"],
            &["OBJECT", "FREQ", "none"],
        ],
    );
    // OBJECT itself never counts as an access.
    for _ in 0..50 {
        d.check(&["OBJECT", "FREQ", "k"]);
    }
    // Reads raise the logarithmic counter (probabilistically, never down).
    for _ in 0..200 {
        d.ours.cmd(&["GET", "k"]);
    }
    assert!(int(d.ours.cmd(&["OBJECT", "FREQ", "k"])) > 5);
}

#[test]
fn object_idletime_is_not_reset_by_object() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    c.cmd(&["SET", "k", "v"]);
    wait_for("the key to become idle", Duration::from_secs(5), || {
        (int(c.cmd(&["OBJECT", "IDLETIME", "k"])) >= 1).then_some(())
    });
    // TYPE, EXISTS, TTL and OBJECT do not touch the key; GET does.
    c.cmd(&["TYPE", "k"]);
    c.cmd(&["EXISTS", "k"]);
    c.cmd(&["TTL", "k"]);
    assert!(int(c.cmd(&["OBJECT", "IDLETIME", "k"])) >= 1);
    c.cmd(&["GET", "k"]);
    assert_eq!(int(c.cmd(&["OBJECT", "IDLETIME", "k"])), 0);
}

#[test]
fn ttls_count_down_and_keys_expire() {
    let s = server();
    let mut c = RawClient::connect(s.addr);
    c.cmd(&["SET", "k", "v"]);
    assert_eq!(int(c.cmd(&["PEXPIRE", "k", "200"])), 1);
    let pttl = int(c.cmd(&["PTTL", "k"]));
    assert!((0..=200).contains(&pttl), "pttl {pttl}");
    assert!((0..=1).contains(&int(c.cmd(&["TTL", "k"]))));
    let at = int(c.cmd(&["PEXPIRETIME", "k"]));
    assert!(at > 1_600_000_000_000);
    assert_eq!(int(c.cmd(&["EXPIRETIME", "k"])), (at + 500) / 1000);
    wait_for("k to expire", Duration::from_secs(5), || {
        (int(c.cmd(&["EXISTS", "k"])) == 0).then_some(())
    });
    assert_eq!(int(c.cmd(&["TTL", "k"])), -2);
    // Active expiry reclaims keys nobody reads.
    for i in 0..50 {
        c.cmd(&["SET", &format!("v{i}"), "x", "PX", "30"]);
    }
    c.cmd(&["SET", "keep", "x"]);
    wait_for("volatile keys to be reclaimed", Duration::from_secs(10), || {
        let Frame::Array(keys) = c.cmd(&["KEYS", "*"]) else {
            return None;
        };
        (keys == vec![Frame::bulk("keep")]).then_some(())
    });
    // RENAME carries the TTL, PERSIST removes it.
    c.cmd(&["SET", "r", "v", "PX", "100000"]);
    c.cmd(&["RENAME", "r", "r2"]);
    assert!(int(c.cmd(&["PTTL", "r2"])) > 90_000);
    assert_eq!(int(c.cmd(&["PERSIST", "r2"])), 1);
    assert_eq!(int(c.cmd(&["TTL", "r2"])), -1);
}

/// Run `cmds` while subscribed to every keyspace event; returns the events in
/// order, up to a final marker, so missing and extra events both show.
fn keyspace_events(addr: std::net::SocketAddr, cmds: &[Vec<&str>]) -> Vec<(String, String)> {
    let mut sub = RawClient::connect(addr);
    sub.set_timeout(Duration::from_secs(5));
    sub.cmd(&["PSUBSCRIBE", "__key*__:*"]);
    let mut c = RawClient::connect(addr);
    for cmd in cmds {
        c.cmd(cmd);
    }
    c.cmd(&["SET", "__end", "1"]);
    let mut out = Vec::new();
    loop {
        let Frame::Array(v) = sub.read() else {
            panic!("unexpected frame")
        };
        let s = |f: &Frame| match f {
            Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        };
        let (ch, msg) = (s(&v[2]), s(&v[3]));
        if msg == "__end" {
            return out;
        }
        if !ch.ends_with("__end") {
            out.push((ch, msg));
        }
    }
}

#[test]
fn keyspace_notifications_for_key_commands() {
    let cmds: Vec<Vec<&str>> = vec![
        vec!["MSET", "a", "1", "b", "2", "c", "3"],
        vec!["DEL", "a", "none"],
        vec!["UNLINK", "b"],
        vec!["EXPIRE", "c", "100"],
        vec!["EXPIRE", "c", "100", "NX"],
        vec!["PEXPIRE", "c", "100000"],
        vec!["EXPIREAT", "c", "99999999999"],
        vec!["PERSIST", "c"],
        vec!["PERSIST", "c"],
        vec!["RENAME", "c", "d"],
        vec!["SET", "e", "1"],
        vec!["RENAMENX", "d", "e"],
        vec!["RENAMENX", "d", "f"],
        vec!["RENAME", "f", "e"],
        vec!["COPY", "e", "g"],
        vec!["COPY", "e", "g"],
        vec!["COPY", "e", "g", "REPLACE"],
        vec!["EXPIRE", "g", "-1"],
        vec!["TOUCH", "e"],
        vec!["EXISTS", "e"],
        vec!["SET", "h", "1", "PXAT", "1"],
        vec!["GET", "h"],
    ];
    let s = server_with(ServeArgs {
        notify_keyspace_events: Some("KEA".into()),
        ..Default::default()
    });
    let redis = redis_server(&["--notify-keyspace-events", "KEA"]);
    let ours = keyspace_events(s.addr, &cmds);
    let theirs = keyspace_events(redis.addr, &cmds);
    assert!(ours.len() > 30, "too few events: {ours:?}");
    assert_eq!(ours, theirs, "left: ferrokv, right: redis");
}

#[test]
fn expired_event_fires_for_unread_keys() {
    let s = server_with(ServeArgs {
        notify_keyspace_events: Some("Ex".into()),
        ..Default::default()
    });
    let mut sub = RawClient::connect(s.addr);
    sub.cmd(&["SUBSCRIBE", "__keyevent@0__:expired"]);
    let mut c = RawClient::connect(s.addr);
    c.cmd(&["SET", "k", "v", "PX", "20"]);
    sub.set_timeout(Duration::from_secs(10));
    assert_eq!(
        sub.read(),
        Frame::Array(vec![
            Frame::bulk("message"),
            Frame::bulk("__keyevent@0__:expired"),
            Frame::bulk("k")
        ])
    );
}

#[test]
fn real_client_uses_key_commands() {
    use redis::Commands;
    let s = server();
    let mut con = redis::Client::open(s.url())
        .expect("client")
        .get_connection()
        .expect("connect");
    let _: () = con.set("a", 1).expect("set");
    let _: () = con.set("b", 2).expect("set");
    let n: usize = con.exists(&["a", "b", "c"]).expect("exists");
    assert_eq!(n, 2);
    let ok: bool = con.expire("a", 100).expect("expire");
    assert!(ok);
    let ttl: i64 = con.ttl("a").expect("ttl");
    assert!((99..=100).contains(&ttl));
    let _: () = con.rename("a", "z").expect("rename");
    let keys: BTreeSet<String> = con.keys("*").expect("keys");
    assert_eq!(keys, ["b", "z"].iter().map(|s| s.to_string()).collect());
    let scanned: BTreeSet<String> = con
        .scan_match::<_, String>("*")
        .expect("scan")
        .collect::<Result<_, _>>()
        .expect("scan items");
    assert_eq!(scanned, keys);
    let t: String = redis::cmd("TYPE").arg("b").query(&mut con).expect("type");
    assert_eq!(t, "string");
    let deleted: usize = con.del(&["b", "z"]).expect("del");
    assert_eq!(deleted, 2);
}

/// SORT and SORT_RO against Redis: numeric and ALPHA order, DESC, LIMIT at
/// and past the edges, BY patterns (string keys, hash fields, missing
/// values, a constant pattern that keeps the native order), GET (`#`,
/// missing), STORE (a list, replacing any type and TTL; an empty result
/// deletes), a set stored unsorted (sorted ALPHA, as Redis), number
/// parsing (spaces, hex, inf, overflow), ties, and the errors.
#[test]
fn sort_matches_redis() {
    let mut d = Diff::new();
    check_all(
        &mut d,
        &[
            &["RPUSH", "l", "3", "1", "2", "10", "2", "-1.5", "0x10", " 4", "inf"],
            &["SADD", "iset", "30", "5", "-2", "7"],
            &["SADD", "words", "pear", "apple", "fig", "Banana", "apple2"],
            &["ZADD", "z", "3", "c", "1", "a", "2", "b", "5", "e", "4", "d"],
            &["RPUSH", "names", "b", "a", "c", "d"],
            &["MSET", "w_b", "2", "w_a", "3", "w_c", "1", "o_a", "A", "o_b", "B"],
            &["HSET", "h_a", "f", "9", "g", "x"],
            &["HSET", "h_b", "f", "1"],
            &["HSET", "h_c", "f", "5"],
            &["SET", "str", "v"],
            &["RPUSH", "bad", "1", "x", "2"],
            &["RPUSH", "huge", "1", "1e999"],
            &["RPUSH", "ties", "b", "a", "c"],
            &["MSET", "t_a", "1", "t_b", "1", "t_c", "0"],
        ],
    );
    for cmd in [
        &["SORT", "l"][..],
        &["SORT", "l", "DESC"],
        &["SORT", "l", "LIMIT", "0", "3"],
        &["SORT", "l", "LIMIT", "2", "100"],
        &["SORT", "l", "LIMIT", "-5", "2"],
        &["SORT", "l", "LIMIT", "100", "2"],
        &["SORT", "l", "LIMIT", "1", "-7"],
        &["SORT", "l", "LIMIT", "3", "0"],
        &["SORT", "iset"],
        &["SORT", "iset", "DESC", "LIMIT", "1", "2"],
        &["SORT", "words", "ALPHA"],
        &["SORT", "words", "ALPHA", "DESC", "LIMIT", "0", "2"],
        &["SORT", "words"],
        &["SORT", "z"],
        &["SORT", "z", "ALPHA", "DESC"],
        &["SORT", "z", "BY", "nosort"],
        &["SORT", "z", "BY", "nosort", "DESC", "LIMIT", "1", "3"],
        &["SORT", "names", "BY", "nosort"],
        &["SORT", "names", "BY", "nosort", "DESC", "LIMIT", "1", "2"],
        &["SORT", "names", "BY", "w_*"],
        &["SORT", "names", "BY", "w_*", "DESC"],
        &["SORT", "names", "BY", "w_*", "ALPHA"],
        &["SORT", "names", "BY", "h_*->f"],
        &["SORT", "names", "BY", "h_*->g", "ALPHA"],
        &[
            "SORT", "names", "BY", "w_*", "GET", "o_*", "GET", "#", "GET", "h_*->f", "GET", "nostar",
        ],
        &["SORT", "names", "ALPHA", "GET", "#", "LIMIT", "1", "2"],
        &["SORT", "ties", "BY", "t_*"],
        &["SORT", "ties", "BY", "t_*", "DESC"],
        &["SORT", "missing"],
        &["SORT", "missing", "BY", "nosort", "GET", "#"],
        &["SORT_RO", "names", "ALPHA"],
        &["SORT_RO", "names", "BY", "w_*", "GET", "o_*"],
        &["SORT", "names", "STORE", "dst", "ALPHA"],
        &["LRANGE", "dst", "0", "-1"],
        &["SET", "other", "x", "EX", "100"],
        &["SORT", "names", "BY", "w_*", "GET", "o_*", "STORE", "other"],
        &["LRANGE", "other", "0", "-1"],
        &["TTL", "other"],
        &["SORT", "iset", "BY", "nosort", "STORE", "dst"],
        &["LRANGE", "dst", "0", "-1"],
        &["SORT", "words", "BY", "nosort", "STORE", "dst"],
        &["LRANGE", "dst", "0", "-1"],
        &["SORT", "missing", "STORE", "dst"],
        &["EXISTS", "dst"],
        &["SORT", "l", "LIMIT", "0", "2", "STORE", "dst", "STORE", "dst2"],
        &["LRANGE", "dst2", "0", "-1"],
        &["EXISTS", "dst"],
    ] {
        d.check(cmd);
    }
    for cmd in [
        &["SORT", "bad"][..],
        &["SORT", "huge"],
        &["SORT", "str"],
        &["SORT", "l", "LIMIT", "0"],
        &["SORT", "l", "LIMIT", "x", "1"],
        &["SORT", "l", "BY"],
        &["SORT", "l", "NOPE"],
        &["SORT_RO", "l", "STORE", "dst"],
        &["SORT"],
    ] {
        d.check_error(cmd);
    }
    d.check(&["COMMAND", "GETKEYS", "SORT", "k", "BY", "w_*", "STORE", "d", "GET", "#"]);
}
