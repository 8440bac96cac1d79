//! Redis 7 functions against Redis 7.0.15: the same FUNCTION/FCALL commands
//! sent to both servers must get byte-identical replies (library metadata,
//! registration, load and run errors with their positions, flags, LIST,
//! DELETE, FLUSH, STATS); payloads of FUNCTION DUMP restore across the two
//! servers both ways; libraries survive a restart (snapshot and append-only
//! log), reach replicas (stream and full sync), and a long function answers
//! to FUNCTION KILL and FUNCTION STATS.

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use ferrokv_node::config::ServeArgs;
use support::{Diff, Frame, RawClient, TempDir, server_with, wait_for};

const LIB: &str = "#!lua name=mylib
local function set(keys, args)
  return redis.call('set', keys[1], args[1])
end
redis.register_function('myset', set)
redis.register_function{
  function_name = 'myget',
  callback = function(keys) return redis.call('get', keys[1]) end,
  flags = {'no-writes'},
  description = 'read a key',
}
redis.register_function{
  function_name = 'boom',
  callback = function(keys, args)
    local x = 1
    error('exploded ' .. args[1])
  end,
}
redis.register_function('fail', function() return redis.call('incr', 'notanumber') end)
redis.register_function('keysglobal', function() return KEYS end)
redis.register_function('again', function() redis.register_function('x', function() end) end)
redis.register_function('echo', function(keys, args) return {#keys, #args, keys[1], args[1]} end)
redis.register_function{function_name = 'oom', callback = function() return 1 end, flags = {'ALLOW-OOM', 'allow-stale'}}
";

#[test]
fn loading_and_calling_match_redis() {
    let mut d = Diff::new();
    d.check_all(&[
            &["FUNCTION", "LOAD", LIB],
            &["FUNCTION", "LOAD", LIB],
            &["FUNCTION", "LOAD", "REPLACE", LIB],
            &["FUNCTION", "LOAD", "BOGUS", LIB],
            &["SET", "notanumber", "x"],
            &["FCALL", "myset", "1", "k", "v"],
            &["FCALL", "MYGET", "1", "k"],
            &["FCALL_RO", "myget", "1", "k"],
            &["FCALL_RO", "myset", "1", "k", "w"],
            &["FCALL", "boom", "0", "now"],
            &["FCALL", "fail", "0"],
            &["FCALL", "keysglobal", "0"],
            &["FCALL", "again", "0"],
            &["FCALL", "echo", "2", "k1", "k2", "a1"],
            &["FCALL", "echo", "0"],
            &["FCALL", "oom", "0"],
            &["FCALL", "nosuch", "0"],
            &["FCALL", "myget", "x"],
            &["FCALL", "myget", "-1"],
            &["FCALL", "myget", "3", "k"],
            &["FCALL"],
            // Library metadata and names.
            &["FUNCTION", "LOAD", "return 1"],
            &["FUNCTION", "LOAD", "#!lua name=x"],
            &["FUNCTION", "LOAD", "#!lua\nreturn 1"],
            &["FUNCTION", "LOAD", "#!lua name=a name=b\n"],
            &["FUNCTION", "LOAD", "#!lua foo=bar\n"],
            &["FUNCTION", "LOAD", "#!lua name=bad-name\n"],
            &["FUNCTION", "LOAD", "#!python name=p\n"],
            &[
                "FUNCTION",
                "LOAD",
                "#!LUA NAME=upper\nredis.register_function('upper_f', function() return 'up' end)",
            ],
            &["FCALL", "upper_f", "0"],
            // Compile and load errors.
            &["FUNCTION", "LOAD", "#!lua name=e1\nreturn +"],
            &["FUNCTION", "LOAD", "#!lua name=e2\n\nerror('at load')"],
            &["FUNCTION", "LOAD", "#!lua name=e3\nreturn 1"],
            &["FUNCTION", "LOAD", "#!lua name=e4\nredis.call('set', 'a', 'b')"],
            &["FUNCTION", "LOAD", "#!lua name=e5\nlocal s = string.len('x')"],
            &["FUNCTION", "LOAD", "#!lua name=e6\nx = 1"],
            &["FUNCTION", "LOAD", "#!lua name=e7\nerror({err = 'MYERR custom'})"],
            &["FUNCTION", "LOAD", "#!lua name=e8\nredis.register_function()"],
            &["FUNCTION", "LOAD", "#!lua name=e9\nredis.register_function('f')"],
            &["FUNCTION", "LOAD", "#!lua name=e10\nredis.register_function('f', 'g')"],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e11\nredis.register_function({}, function() end)",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e12\nredis.register_function('bad name', function() end)",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e13\nredis.register_function('f', function() end)\nredis.register_function('f', function() end)",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e14\nredis.register_function{function_name = 'f'}",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e15\nredis.register_function{callback = function() end}",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e16\nredis.register_function{function_name = 'f', callback = function() end, flags = {'bogus'}}",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e17\nredis.register_function{function_name = 'f', callback = function() end, flags = 'no-writes'}",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e18\nredis.register_function{function_name = 'f', callback = 5}",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e19\nredis.register_function{function_name = 'f', callback = function() end, nosuch = 1}",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e20\nredis.register_function{function_name = {}, callback = function() end}",
            ],
            &["FUNCTION", "LOAD", "#!lua name=e21\nredis.register_function(1, 2, 3)"],
            &["FUNCTION", "LOAD", "#!lua name=e22\nredis.register_function('x')"],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e23\nredis.register_function('myset', function() end)",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e24\nredis.register_function('MYSET', function() end)",
            ],
            &[
                "FUNCTION",
                "LOAD",
                "#!lua name=e25\nlocal v = redis.REDIS_VERSION\nredis.log(redis.LOG_NOTICE, 'loading')\nredis.register_function('e25f', function() return v end)",
            ],
            &["FCALL", "e25f", "0"],
            &["FUNCTION", "LIST", "LIBRARYNAME", "e*"],
            &["FUNCTION", "LIST", "LIBRARYNAME"],
            &["FUNCTION", "LIST", "BOGUS"],
            &["FUNCTION", "LIST", "WITHCODE", "WITHCODE"],
            &["FUNCTION", "DELETE", "nosuch"],
            &["FUNCTION", "DELETE", "e25"],
            &["FCALL", "e25f", "0"],
            &["FUNCTION", "FLUSH", "BOGUS"],
            &["FUNCTION", "FLUSH", "SYNC", "X"],
            &["FUNCTION", "STATS"],
            &["FUNCTION", "KILL"],
            &["FUNCTION", "HELP"],
            &["FUNCTION", "NOSUCH"],
            &["FUNCTION", "RESTORE", "garbage"],
            &["FUNCTION", "RESTORE", "garbage", "BOGUS"],
            &["FUNCTION", "RESTORE", "garbage", "FLUSH", "X"],
            // Over maxmemory a function that may write is refused before it
            // runs, as any command that may grow the dataset; inside MULTI
            // that aborts the transaction.
            &["CONFIG", "SET", "maxmemory", "1"],
            &["FCALL", "myset", "1", "k", "v"],
            &["FCALL", "myget", "1", "k"],
            &["FCALL", "oom", "0"],
            &["EVAL", "#!lua\nreturn 1", "0"],
            &["EVAL", "#!lua flags=no-writes\nreturn 1", "0"],
            &["EVAL", "return 1", "0"],
            &["MULTI"],
            &["FCALL", "myset", "1", "k", "v"],
            &["EXEC"],
            &["CONFIG", "SET", "maxmemory", "0"],
            &["FUNCTION", "FLUSH"],
            &["FCALL", "myset", "1", "k", "v"],
            &["FUNCTION", "LIST"],
            &["FUNCTION", "STATS"],
        ],
    );
}

/// FUNCTION LIST's libraries (and a library's functions) come in hash
/// order in Redis: compare them as sets, in RESP3 so maps stay maps.
#[test]
fn list_matches_redis() {
    let mut d = Diff::new();
    d.both(&["HELLO", "3"]);
    d.check(&["FUNCTION", "LOAD", LIB]);
    d.check(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=other\nredis.register_function{function_name = 'o1', description = 'first', callback = function() end, flags = {'no-cluster', 'allow-cross-slot-keys', 'no-writes'}}",
    ]);
    d.check_unordered(&["FUNCTION", "LIST"]);
    d.check_unordered(&["FUNCTION", "LIST", "WITHCODE"]);
    d.check_unordered(&["FUNCTION", "LIST", "LIBRARYNAME", "oth*", "WITHCODE"]);
    d.check(&["FUNCTION", "LIST", "LIBRARYNAME", "nomatch"]);
    d.check(&["FUNCTION", "STATS"]);
}

/// What one server's FUNCTION DUMP holds restores on the other, with every
/// restore policy and its errors.
#[test]
fn dump_payloads_restore_across_servers() {
    let mut d = Diff::new();
    let other = "#!lua name=other\nredis.register_function('o1', function() return 'o1' end)";
    let clash = "#!lua name=clash\nredis.register_function('myset', function() return 'clash' end)";
    for (from_ours, label) in [(true, "ferrokv -> redis"), (false, "redis -> ferrokv")] {
        d.check(&["FUNCTION", "FLUSH"]);
        d.check(&["FUNCTION", "LOAD", LIB]);
        d.check(&["FUNCTION", "LOAD", other]);
        let (src, dst) = if from_ours {
            (&mut d.ours, &mut d.theirs)
        } else {
            (&mut d.theirs, &mut d.ours)
        };
        let Frame::Bulk(payload) = src.cmd(&["FUNCTION", "DUMP"]) else {
            panic!("{label}: no payload")
        };
        let want = src.cmd(&["FUNCTION", "LIST", "WITHCODE"]).sorted();
        // Already there: APPEND refuses (naming the first library found,
        // in hash order on Redis).
        let refused = dst.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &payload]);
        assert!(
            [
                Frame::Error("ERR Library mylib already exists".into()),
                Frame::Error("ERR Library other already exists".into())
            ]
            .contains(&refused),
            "{label}: {refused:?}"
        );
        assert_eq!(
            dst.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &payload, b"REPLACE"]),
            Frame::Simple("OK".into()),
            "{label}"
        );
        assert_eq!(dst.cmd(&["FUNCTION", "LIST", "WITHCODE"]).sorted(), want, "{label}");
        // Another library's function of the same name refuses even REPLACE.
        dst.cmd(&["FUNCTION", "DELETE", "mylib"]);
        assert_eq!(dst.cmd(&["FUNCTION", "LOAD", clash]), Frame::bulk("clash"));
        assert_eq!(
            dst.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &payload, b"REPLACE"]),
            Frame::Error("ERR Function myset already exists".into()),
            "{label}"
        );
        assert_eq!(
            dst.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &payload, b"FLUSH"]),
            Frame::Simple("OK".into()),
            "{label}"
        );
        assert_eq!(dst.cmd(&["FUNCTION", "LIST", "WITHCODE"]).sorted(), want, "{label}");
        assert_eq!(dst.cmd(&["FCALL", "o1", "0"]), Frame::bulk("o1"), "{label}");
        // Damaged payloads change nothing.
        let mut flipped = payload.clone();
        flipped[5] ^= 0x20;
        let mut short = payload.clone();
        short.truncate(payload.len() - 3);
        for bad in [flipped, short, b"\xf5".to_vec()] {
            assert_eq!(
                dst.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &bad]),
                Frame::Error("ERR DUMP payload version or checksum are wrong".into()),
                "{label}"
            );
        }
        assert_eq!(dst.cmd(&["FUNCTION", "LIST", "WITHCODE"]).sorted(), want, "{label}");
    }
    // An empty dump restores to nothing, on both.
    d.check(&["FUNCTION", "FLUSH"]);
    let Frame::Bulk(empty) = d.ours.cmd(&["FUNCTION", "DUMP"]) else {
        panic!()
    };
    assert_eq!(
        d.theirs.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &empty, b"FLUSH"]),
        Frame::Simple("OK".into())
    );
    d.check(&["FUNCTION", "LIST"]);
    // A DUMP payload of a key is not a function payload.
    d.theirs.cmd(&["SET", "k", "v"]);
    let Frame::Bulk(key_dump) = d.theirs.cmd(&["DUMP", "k"]) else {
        panic!()
    };
    let (a, b) = (
        d.ours.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &key_dump]),
        d.theirs.cmd(&[b"FUNCTION".as_slice(), b"RESTORE", &key_dump]),
    );
    assert_eq!(a, b);
    assert_eq!(a, Frame::Error("ERR given type is not a function".into()));
}

fn args_in(dir: &Path, aof: bool) -> ServeArgs {
    ServeArgs {
        dir: Some(dir.to_path_buf()),
        appendonly: aof.then(|| "yes".into()),
        ..Default::default()
    }
}

fn listed(c: &mut RawClient) -> Frame {
    c.cmd(&["FUNCTION", "LIST", "WITHCODE"]).sorted()
}

/// Libraries are data: a snapshot holds them, the append-only log replays
/// them, `ferrokv-node check` names them, FLUSHALL leaves them.
#[test]
fn libraries_survive_restarts() {
    for aof in [false, true] {
        let dir = TempDir::new(if aof { "fn-aof" } else { "fn-snap" });
        let before = {
            let s = server_with(args_in(&dir.0, aof));
            let mut c = RawClient::connect(s.addr);
            assert_eq!(c.cmd(&["FUNCTION", "LOAD", LIB]), Frame::bulk("mylib"));
            assert_eq!(
                c.cmd(&[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=gone\nredis.register_function('g', function() end)"
                ]),
                Frame::bulk("gone")
            );
            assert_eq!(c.cmd(&["FUNCTION", "DELETE", "gone"]), Frame::Simple("OK".into()));
            assert_eq!(c.cmd(&["FCALL", "myset", "1", "k", "v"]), Frame::Simple("OK".into()));
            assert_eq!(c.cmd(&["FLUSHALL"]), Frame::Simple("OK".into()));
            assert_eq!(c.cmd(&["FCALL", "myset", "1", "k2", "v2"]), Frame::Simple("OK".into()));
            if !aof {
                assert_eq!(c.cmd(&["SAVE"]), Frame::Simple("OK".into()));
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrokv-node"))
                    .arg("check")
                    .arg(dir.0.join("dump.fkv"))
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{text}");
                assert!(text.contains("function libraries: 1 (mylib)"), "{text}");
            }
            listed(&mut c)
        };
        let s = server_with(args_in(&dir.0, aof));
        let mut c = RawClient::connect(s.addr);
        assert_eq!(listed(&mut c), before, "aof={aof}");
        assert_eq!(c.cmd(&["FCALL", "myget", "1", "k2"]), Frame::bulk("v2"), "aof={aof}");
        assert_eq!(c.cmd(&["EXISTS", "k"]), Frame::Int(0), "aof={aof}");
        assert_eq!(
            c.cmd(&["FCALL", "g", "0"]),
            Frame::Error("ERR Function not found".into())
        );
    }
}

/// A replica gets the libraries in its full sync and every later change
/// through the stream; a function's writes replicate as their effects.
#[test]
fn libraries_replicate() {
    let primary = support::server();
    let replica = support::server();
    let mut p = RawClient::connect(primary.addr);
    let mut r = RawClient::connect(replica.addr);
    assert_eq!(p.cmd(&["FUNCTION", "LOAD", LIB]), Frame::bulk("mylib"));
    // The replica had a library of its own: the primary's set replaces it.
    assert_eq!(
        r.cmd(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=local\nredis.register_function('l', function() end)"
        ]),
        Frame::bulk("local")
    );
    let port = primary.addr.port().to_string();
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), Frame::Simple("OK".into()));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
    wait_for("the full sync", Duration::from_secs(10), || {
        (listed(&mut r) == listed(&mut p)).then_some(())
    });
    // A replica runs a `no-writes` function.
    assert_eq!(p.cmd(&["FCALL", "myset", "1", "k", "v"]), Frame::Simple("OK".into()));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
    assert_eq!(r.cmd(&["FCALL", "myget", "1", "k"]), Frame::bulk("v"));
    assert_eq!(
        p.cmd(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=later\nredis.register_function('inc', function(k) return redis.call('incr', k[1]) end)"
        ]),
        Frame::bulk("later")
    );
    assert_eq!(p.cmd(&["FCALL", "inc", "1", "n"]), Frame::Int(1));
    assert_eq!(p.cmd(&["FUNCTION", "DELETE", "mylib"]), Frame::Simple("OK".into()));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
    wait_for("the stream", Duration::from_secs(10), || {
        (listed(&mut r) == listed(&mut p)).then_some(())
    });
    assert_eq!(r.cmd(&["GET", "n"]), Frame::bulk("1"));
    // A replica runs read-only functions and refuses the others' writes.
    assert_eq!(
        r.cmd(&["FCALL", "inc", "1", "n"]),
        Frame::Error("READONLY You can't write against a read only replica.".into())
    );
    assert_eq!(p.cmd(&["FUNCTION", "FLUSH"]), Frame::Simple("OK".into()));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
    wait_for("the flush", Duration::from_secs(10), || {
        (r.cmd(&["FUNCTION", "LIST"]) == Frame::Array(vec![])).then_some(())
    });
}

/// A long function: other clients get the functions' -BUSY, FUNCTION STATS
/// shows it, SCRIPT KILL refuses and FUNCTION KILL stops it. A library whose
/// code runs too long at load is refused.
#[test]
fn long_functions_are_killable_and_loads_time_out() {
    let server = support::server();
    let mut admin = RawClient::connect(server.addr);
    admin.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
    assert_eq!(
        admin.cmd(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=slow\nredis.register_function('spin', function() while true do end end)"
        ]),
        Frame::bulk("slow")
    );
    let mut runner = RawClient::connect(server.addr);
    runner.set_timeout(Duration::from_secs(20));
    runner.send(&["FCALL", "spin", "0", "arg"]);
    let mut other = RawClient::connect(server.addr);
    other.set_timeout(Duration::from_secs(20));
    wait_for("the function to be busy", Duration::from_secs(10), || {
        match other.cmd(&["GET", "k"]) {
            Frame::Error(e) if e.starts_with("BUSY ") => Some(e),
            _ => None,
        }
    });
    assert_eq!(
        other.cmd(&["GET", "k"]),
        Frame::Error("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.".into())
    );
    let Frame::Array(stats) = other.cmd(&["FUNCTION", "STATS"]) else {
        panic!()
    };
    assert_eq!(stats[0], Frame::bulk("running_script"));
    let Frame::Array(running) = &stats[1] else {
        panic!("{stats:?}")
    };
    assert_eq!(
        running[..4],
        [
            Frame::bulk("name"),
            Frame::bulk("spin"),
            Frame::bulk("command"),
            Frame::Array(vec![
                Frame::bulk("FCALL"),
                Frame::bulk("spin"),
                Frame::bulk("0"),
                Frame::bulk("arg")
            ]),
        ]
    );
    assert_eq!(
        other.cmd(&["SCRIPT", "KILL"]),
        Frame::Error("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.".into())
    );
    assert_eq!(other.cmd(&["FUNCTION", "KILL"]), Frame::Simple("OK".into()));
    match runner.read() {
        Frame::Error(e) => assert!(e.starts_with("ERR Script killed by user with SCRIPT KILL..."), "{e}"),
        f => panic!("{f:?}"),
    }
    assert_eq!(
        other.cmd(&["FUNCTION", "KILL"]),
        Frame::Error("NOTBUSY No scripts in execution right now.".into())
    );
    // An EVAL script is not FUNCTION KILL's to stop.
    runner.send(&["EVAL", "while true do end", "0"]);
    wait_for("the script to be busy", Duration::from_secs(10), || {
        match other.cmd(&["PING"]) {
            Frame::Error(e) if e.starts_with("BUSY ") => Some(()),
            _ => None,
        }
    });
    assert_eq!(
        other.cmd(&["FUNCTION", "KILL"]),
        Frame::Error("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.".into())
    );
    assert_eq!(
        other.cmd(&["FUNCTION", "STATS"]),
        Frame::Error("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.".into())
    );
    assert_eq!(other.cmd(&["SCRIPT", "KILL"]), Frame::Simple("OK".into()));
    assert!(runner.read().is_error());
    // Loading runs a library's code for at most 500 ms.
    let started = std::time::Instant::now();
    assert_eq!(
        other.cmd(&["FUNCTION", "LOAD", "#!lua name=forever\nwhile true do end"]),
        Frame::Error("ERR Error registering functions: ERR FUNCTION LOAD timeout".into())
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(other.cmd(&["PING"]), Frame::Simple("PONG".into()));
    assert_eq!(
        other.cmd(&["FCALL", "spin", "x"]),
        Frame::Error("ERR Bad number of keys provided".into())
    );
}

/// More cached scripts and libraries than mlua's reference stack is deep
/// (8000), and a `redis.call` with thousands of arguments: the interpreters
/// keep working (once, 8,000 cached scripts made SCRIPT LOAD panic a
/// connection thread).
#[test]
fn thousands_of_scripts_libraries_and_arguments() {
    let server = support::server();
    let mut c = RawClient::connect(server.addr);
    c.set_timeout(Duration::from_secs(120));
    const N: usize = 9000;
    for i in 0..N {
        c.send(&["SCRIPT", "LOAD", &format!("return {i}")]);
        c.send(&[
            "FUNCTION",
            "LOAD",
            &format!("#!lua name=lib{i}\nredis.register_function('f{i}', function() return {i} end)"),
        ]);
    }
    for i in 0..N {
        assert!(matches!(c.read(), Frame::Bulk(_)), "SCRIPT LOAD {i}");
        assert_eq!(c.read(), Frame::bulk(&format!("lib{i}")));
    }
    let first = ferrokv_node::script::sha1_hex(b"return 0");
    assert_eq!(c.cmd(&["EVALSHA", &first, "0"]), Frame::Int(0));
    assert_eq!(c.cmd(&["EVAL", "return 'still here'", "0"]), Frame::bulk("still here"));
    assert_eq!(c.cmd(&["FCALL", "f0", "0"]), Frame::Int(0));
    assert_eq!(c.cmd(&["FCALL", &format!("f{}", N - 1), "0"]), Frame::Int(N as i64 - 1));
    assert_eq!(c.cmd(&["FUNCTION", "DELETE", "lib5"]), Frame::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["FCALL", "f5", "0"]),
        Frame::Error("ERR Function not found".into())
    );
    let Frame::Bulk(info) = c.cmd(&["INFO", "memory"]) else {
        panic!()
    };
    let info = String::from_utf8(info).unwrap();
    assert!(
        info.contains(&format!("number_of_cached_scripts:{}\r\n", N + 1)),
        "{info}"
    );
    assert!(info.contains(&format!("number_of_libraries:{}\r\n", N - 1)), "{info}");
    // Thousands of arguments, numbers and strings.
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "local a = {} for i = 1, 7900 do a[i] = i end return redis.call('rpush', 'n', unpack(a))",
            "0"
        ]),
        Frame::Int(7900)
    );
    assert_eq!(
        c.cmd(&[
            "EVAL",
            "local a = {} for i = 1, 7900 do a[i] = 'x' .. i end return redis.call('rpush', 's', unpack(a))",
            "0"
        ]),
        Frame::Int(7900)
    );
    // Past what `unpack` (and a C function's stack) allows: an error, and
    // the interpreter goes on.
    let e = c.cmd(&[
        "EVAL",
        "local a = {} for i = 1, 8100 do a[i] = 'x' end return redis.call('rpush', 's', unpack(a))",
        "0",
    ]);
    assert!(e.is_error(), "{e:?}");
    assert_eq!(c.cmd(&["EVALSHA", &first, "0"]), Frame::Int(0));
    assert_eq!(c.cmd(&["LLEN", "s"]), Frame::Int(7900));
}
