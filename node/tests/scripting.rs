//! Lua scripting against Redis 7.0.15: the same EVAL/EVALSHA/SCRIPT
//! commands sent to both servers must get byte-identical replies — values
//! converted both ways (RESP2 and RESP3), errors with their script position,
//! the sandbox, shebang flags, `math.random`'s sequence, `bit`.

// Test code: an unexpected value should fail the test right where it appears.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Diff, Frame, RawClient};

#[test]
fn values_convert_as_in_redis() {
    let mut d = Diff::new();
    d.check_all(&[
        &["SET", "s", "hello"],
        &["RPUSH", "l", "a", "b", "c"],
        &["HSET", "h", "f", "v"],
        &["ZADD", "z", "1.5", "m"],
        &["EVAL", "return 1", "0"],
        &["EVAL", "return 3.99", "0"],
        &["EVAL", "return -3.99", "0"],
        &["EVAL", "return 'x'", "0"],
        &["EVAL", "return true", "0"],
        &["EVAL", "return false", "0"],
        &["EVAL", "return nil", "0"],
        &["EVAL", "return {1, 2, 3, 'x', {4, 5}}", "0"],
        &["EVAL", "return {1, 2, nil, 4}", "0"],
        &["EVAL", "return {1, false, 3}", "0"],
        &["EVAL", "return {1, true, 3}", "0"],
        &["EVAL", "return {ok = 'fine'}", "0"],
        &["EVAL", "return {err = 'My Error'}", "0"],
        &["EVAL", "return redis.status_reply('PONG')", "0"],
        &["EVAL", "return redis.error_reply('My Error')", "0"],
        &["EVAL", "return redis.error_reply('-Oops')", "0"],
        &["EVAL", "return redis.error_reply(1)", "0"],
        &[
            "EVAL",
            "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}",
            "2",
            "k1",
            "k2",
            "a1",
            "a2",
        ],
        &["EVAL", "return #KEYS + #ARGV * 10", "1", "k", "a", "b"],
        &["EVAL", "return redis.call('get', KEYS[1])", "1", "s"],
        &["EVAL", "return redis.call('get', 'missing')", "0"],
        &["EVAL", "return type(redis.call('get', 'missing'))", "0"],
        &["EVAL", "return redis.call('lrange', 'l', 0, -1)", "0"],
        &["EVAL", "return redis.call('hgetall', 'h')", "0"],
        &["EVAL", "return redis.call('zscore', 'z', 'm')", "0"],
        &["EVAL", "return redis.call('zrange', 'z', 0, -1, 'withscores')", "0"],
        &["EVAL", "return redis.call('set', 'x', 1)", "0"],
        &["EVAL", "return redis.call('set', 'y', 1.5)", "0"],
        &["EVAL", "return redis.call('get', 'y')", "0"],
        &["EVAL", "return redis.call('set', 'y', 0.1)", "0"],
        &["EVAL", "return redis.call('get', 'y')", "0"],
        &["EVAL", "return redis.call('incr', 'x')", "0"],
        &["EVAL", "return redis.call('ping')", "0"],
        &["EVAL", "return type(redis.call('ping'))", "0"],
        &["EVAL", "return redis.call('ping').ok", "0"],
        &["EVAL", "return redis.pcall('incr', 's')", "0"],
        &["EVAL", "return type(redis.pcall('incr', 's'))", "0"],
        &["EVAL", "return redis.pcall('incr', 's').err", "0"],
        &["EVAL", "return redis.call('exists', 's', 'nope')", "0"],
        &["EVAL", "return redis.sha1hex('')", "0"],
        &["EVAL", "return redis.sha1hex('Pizza & Mandolino')", "0"],
        &["EVAL", "return tostring(1/3)", "0"],
        &["EVAL", "return tostring(1e100)", "0"],
        &["EVAL", "return 1e100", "0"],
        &["EVAL", "return redis.REDIS_VERSION", "0"],
        &["EVAL", "return redis.REDIS_VERSION_NUM", "0"],
    ]);
}

#[test]
fn resp3_conversions_match_redis() {
    let mut d = Diff::new();
    // (HELLO's reply carries each server's own client id.)
    d.both(&["HELLO", "3"]);
    d.check_all(&[
        &["HSET", "h", "f", "v", "g", "w"],
        &["ZADD", "z", "1.5", "m"],
        &["SADD", "s", "x"],
        &["EVAL", "return true", "0"],
        &["EVAL", "return false", "0"],
        &["EVAL", "return nil", "0"],
        &["EVAL", "redis.setresp(3); return true", "0"],
        &["EVAL", "redis.setresp(3); return false", "0"],
        &["EVAL", "redis.setresp(3); return redis.call('hgetall', 'h')", "0"],
        &["EVAL", "redis.setresp(3); return redis.call('smembers', 's')", "0"],
        &["EVAL", "redis.setresp(3); return redis.call('zscore', 'z', 'm')", "0"],
        &["EVAL", "redis.setresp(3); return redis.call('get', 'nope')", "0"],
        &["EVAL", "redis.setresp(3); return type(redis.call('get', 'nope'))", "0"],
        &[
            "EVAL",
            "redis.setresp(3); return redis.call('zscore', 'z', 'm').double",
            "0",
        ],
        &["EVAL", "return redis.call('hgetall', 'h')", "0"],
        &["EVAL", "return {double = 3.5}", "0"],
        &["EVAL", "return {big_number = '123456789012345678901234567890'}", "0"],
        &["EVAL", "return {map = {a = 1}}", "0"],
        &["EVAL", "return {set = {a = true}}", "0"],
        &[
            "EVAL",
            "return {verbatim_string = {format = 'txt', string = 'hi'}}",
            "0",
        ],
        &["EVAL", "redis.setresp(4)", "0"],
        &["EVAL", "redis.setresp()", "0"],
    ]);
    d.both(&["HELLO", "2"]);
    d.check_all(&[
        &["EVAL", "return {double = 3.5}", "0"],
        &["EVAL", "return {map = {a = 1}}", "0"],
        &["EVAL", "redis.setresp(3); return redis.call('hgetall', 'h')", "0"],
        &["EVAL", "redis.setresp(3); return true", "0"],
        &["EVAL", "redis.setresp(3); return false", "0"],
    ]);
}

#[test]
fn errors_match_redis() {
    let mut d = Diff::new();
    d.check_all(&[
        &["SET", "s", "hello"],
        &["EVAL", "return redis.call('incr', 's')", "0"],
        &["EVAL", "\n\nreturn redis.call('incr', 's')", "0"],
        &["EVAL", "return redis.call('nosuchcommand')", "0"],
        &["EVAL", "return redis.call('get')", "0"],
        &["EVAL", "return redis.call('get', 'a', 'b')", "0"],
        &["EVAL", "return redis.call()", "0"],
        &["EVAL", "return redis.pcall()", "0"],
        &["EVAL", "return redis.call('get', {})", "0"],
        &["EVAL", "return redis.call('eval', 'return 1', 0)", "0"],
        &["EVAL", "return redis.call('multi')", "0"],
        &["EVAL", "return redis.call('config', 'nosuch')", "0"],
        &["EVAL", "error('boom')", "0"],
        &["EVAL", "local x = 1\nerror('boom')", "0"],
        &["EVAL", "error({err = 'MYERR custom'})", "0"],
        &["EVAL", "error()", "0"],
        &["EVAL", "error(42)", "0"],
        &["EVAL", "return nosuchglobal", "0"],
        &["EVAL", "a = 5", "0"],
        &["EVAL", "local t = nil; return t.x", "0"],
        &["EVAL", "return 1 +", "0"],
        &["EVAL", "return pcall(function() redis.call('incr', 's') end)", "0"],
        &[
            "EVAL",
            "local ok, e = pcall(function() redis.call('incr', 's') end); return e",
            "0",
        ],
        &["EVAL", "local ok, e = pcall(error, 'x'); return {tostring(ok), e}", "0"],
        &["EVAL", "return 1", "-1"],
        &["EVAL", "return 1", "2", "a"],
        &["EVAL", "return 1", "x"],
        &["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"],
        &["EVALSHA", "short", "0"],
        &["EVAL_RO", "return redis.call('set', 'k', 'v')", "0"],
        &["EVAL_RO", "return redis.call('get', 's')", "0"],
        &["EVAL", "return redis.setresp(3, 3)", "0"],
        &["EVAL", "redis.set_repl(99)", "0"],
        &["EVAL", "return redis.log()", "0"],
        &["EVAL", "return redis.log('x', 'y')", "0"],
        &["EVAL", "return redis.log(99, 'y')", "0"],
        &["EVAL", "return redis.log(redis.LOG_WARNING, 'from a script')", "0"],
    ]);
}

#[test]
fn sandbox_matches_redis() {
    let mut d = Diff::new();
    d.check_all(&[
        &["EVAL", "print('x')", "0"],
        &["EVAL", "return loadfile", "0"],
        &["EVAL", "dofile('/etc/passwd')", "0"],
        &["EVAL", "return os", "0"],
        &["EVAL", "return io", "0"],
        &["EVAL", "return debug", "0"],
        &["EVAL", "return package", "0"],
        &["EVAL", "redis.call = function() return 1 end", "0"],
        &["EVAL", "string.upper = nil", "0"],
        &["EVAL", "math.x = 1", "0"],
        &["EVAL", "bit.band = nil", "0"],
        &["EVAL", "_G.x = 1", "0"],
        &["EVAL", "rawset(_G, 'x', 1)", "0"],
        &["EVAL", "setmetatable(_G, {})", "0"],
        &["EVAL", "local f = loadstring('x = 1'); f()", "0"],
        &[
            "EVAL",
            "local f = loadstring('return string.upper(\"a\")'); return f()",
            "0",
        ],
        &["EVAL", "return ('abc'):upper()", "0"],
        &["EVAL", "local t = {} t.x = 1 return t.x", "0"],
        &["EVAL", "return type(_G)", "0"],
        &["EVAL", "return tostring(_G == getfenv(0))", "0"],
        &["EVAL", "return table.concat({'a', 'b'}, '-')", "0"],
        &["EVAL", "return string.format('%d-%s', 5, 'x')", "0"],
        &["EVAL", "return math.floor(3.7)", "0"],
        &[
            "EVAL",
            "return coroutine.wrap(function() coroutine.yield(7) end)()",
            "0",
        ],
    ]);
}

#[test]
fn random_bit_and_shebang_match_redis() {
    let mut d = Diff::new();
    d.check_all(&[
            // A fresh server's first draws, then a seeded sequence.
            &[
                "EVAL",
                "return {math.random(1000), math.random(1000), math.random(10, 20)}",
                "0",
            ],
            &["EVAL", "return tostring(math.random())", "0"],
            &[
                "EVAL",
                "math.randomseed(42); return {math.random(100), math.random(100)}",
                "0",
            ],
            &["EVAL", "return math.random(0)", "0"],
            &[
                "EVAL",
                "return {bit.band(0xff, 0x0f), bit.bor(1, 2, 4), bit.bxor(5, 3)}",
                "0",
            ],
            &[
                "EVAL",
                "return {bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4)}",
                "0",
            ],
            &[
                "EVAL",
                "return {bit.tohex(255), bit.tohex(-1, -4), bit.bnot(0), bit.tobit(4294967297)}",
                "0",
            ],
            &[
                "EVAL",
                "return {bit.rol(0x12345678, 8), bit.ror(0x12345678, 8), bit.bswap(0x12345678)}",
                "0",
            ],
            &["EVAL", "return cjson.encode({1, 2, 'x', {a = 1}, true, false})", "0"],
            &["EVAL", "return cjson.encode({})", "0"],
            &["EVAL", "return cjson.encode({a = {b = {c = 'd/e'}}})", "0"],
            &["EVAL", "return cjson.encode({[1] = 1, [3] = 3})", "0"],
            &["EVAL", "return cjson.encode({[1] = 1, [20] = 3})", "0"],
            &["EVAL", "return cjson.encode({3.14159265358979, 1e20, -0.5, 100})", "0"],
            &[
                "EVAL",
                r#"return cjson.encode('quote" back\\ tab\t nl\n bell\7 del\127')"#,
                "0",
            ],
            &["EVAL", "return cjson.encode(cjson.null)", "0"],
            &["EVAL", "return cjson.encode({f = function() end})", "0"],
            &["EVAL", "return cjson.encode(1/0)", "0"],
            &["EVAL", "return cjson.encode({[true] = 1})", "0"],
            &[
                "EVAL",
                r#"local t = cjson.decode('{"a": [1, 2.5, "x", null, true], "b": {}}'); return {t.a[1], tostring(t.a[2]), t.a[3], tostring(t.a[4] == cjson.null), tostring(t.a[5]), type(t.b)}"#,
                "0",
            ],
            &["EVAL", r#"return cjson.decode('"\\u00e9\\ud83d\\ude00\\n"')"#, "0"],
            &["EVAL", "return cjson.decode('[1, 2')", "0"],
            &["EVAL", r#"return cjson.decode('{"a" 1}')"#, "0"],
            &[
                "EVAL",
                r#"return cjson.encode(cjson.decode('[1,{"k":[true,false,null]},"s"]'))"#,
                "0",
            ],
            &["EVAL", "#!lua\nreturn 1", "0"],
            &["EVAL", "#!lua flags=no-writes\nreturn redis.call('set', 'k', 'v')", "0"],
            &["EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'k')", "0"],
            &["EVAL_RO", "#!lua\nreturn 1", "0"],
            &["EVAL_RO", "#!lua flags=no-writes\nreturn 1", "0"],
            &["EVAL", "#!lua flags=bogus\nreturn 1", "0"],
            &["EVAL", "#!lua", "0"],
            &["EVAL", "#!perl\nreturn 1", "0"],
            &["EVAL", "#!lua name=x\nreturn 1", "0"],
            &["EVAL", "#!lua\nerror('line two')", "0"],
        ],
    );
}

#[test]
fn script_cache_matches_redis() {
    let mut d = Diff::new();
    let body = "return {KEYS[1], ARGV[1]}";
    let sha = d.check(&["SCRIPT", "LOAD", body]);
    let Frame::Bulk(sha) = sha else { panic!("{sha:?}") };
    let sha = String::from_utf8(sha).unwrap();
    assert_eq!(cached_scripts(&mut d.ours), 1);
    d.check_all(&[
        &["EVALSHA", &sha, "1", "k", "a"],
        &["EVALSHA", &sha.to_uppercase(), "1", "k", "a"],
        &["EVALSHA_RO", &sha, "1", "k", "a"],
        &["SCRIPT", "EXISTS", &sha, "ffffffffffffffffffffffffffffffffffffffff"],
        &["SCRIPT", "LOAD", "return +"],
        &["SCRIPT", "FLUSH", "bogus"],
        &["SCRIPT", "KILL"],
        &["SCRIPT", "NOSUCH"],
        &["SCRIPT", "FLUSH"],
        &["SCRIPT", "EXISTS", &sha],
        &["EVALSHA", &sha, "1", "k", "a"],
        &["EVAL", body, "1", "k", "a"],
        &["EVALSHA", &sha, "1", "k", "a"],
        &["SCRIPT", "FLUSH", "ASYNC"],
        &["SCRIPT", "EXISTS", &sha],
    ]);
    assert_eq!(cached_scripts(&mut d.ours), 0);
}

/// INFO memory's `number_of_cached_scripts`.
fn cached_scripts(c: &mut RawClient) -> u64 {
    let Frame::Bulk(info) = c.cmd(&["INFO", "memory"]) else {
        panic!()
    };
    let info = String::from_utf8(info).unwrap();
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("number_of_cached_scripts:"))
        .unwrap();
    line.trim().parse().unwrap()
}

#[test]
fn blocking_commands_and_transactions_match_redis() {
    let mut d = Diff::new();
    d.check_all(&[
        // Blocking commands answer at once inside a script.
        &["EVAL", "return redis.call('blpop', 'empty', 0)", "0"],
        &["EVAL", "return redis.call('brpop', 'empty', 1)", "0"],
        &["RPUSH", "l", "x"],
        &["EVAL", "return redis.call('blpop', 'l', 0)", "0"],
        // EVAL inside MULTI runs at EXEC.
        &["MULTI"],
        &["EVAL", "return redis.call('incr', 'c')", "0"],
        &["EVAL", "return redis.call('incrby', 'c', 10)", "0"],
        &["EXEC"],
        &["GET", "c"],
    ]);
}

/// A script's writes reach a replica as the commands it ran, inside
/// MULTI/EXEC, and the replica's dataset ends up equal.
#[test]
fn script_effects_replicate() {
    let primary = support::server();
    let replica = support::server();
    let mut p = RawClient::connect(primary.addr);
    let mut r = RawClient::connect(replica.addr);
    let port = primary.addr.port().to_string();
    assert_eq!(r.cmd(&["REPLICAOF", "127.0.0.1", &port]), Frame::Simple("OK".into()));
    p.cmd(&["SET", "n", "10"]);
    // The replica is in sync before the script runs (a full sync after it
    // would copy the unreplicated key too).
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
    let reply = p.cmd(&[
        "EVAL",
        "redis.call('incrby', KEYS[1], ARGV[1]); redis.call('rpush', KEYS[2], math.random(1000)); \
         redis.set_repl(redis.REPL_NONE); redis.call('set', 'unreplicated', 1); \
         redis.set_repl(redis.REPL_ALL); return redis.call('get', KEYS[1])",
        "2",
        "n",
        "l",
        "5",
    ]);
    assert_eq!(reply, Frame::bulk("15"));
    assert_eq!(p.cmd(&["WAIT", "1", "5000"]), Frame::Int(1));
    support::wait_for("the replica applies the script", Duration::from_secs(10), || {
        (r.cmd(&["GET", "n"]) == Frame::bulk("15")).then_some(())
    });
    assert_eq!(r.cmd(&["LRANGE", "l", "0", "-1"]), p.cmd(&["LRANGE", "l", "0", "-1"]));
    assert_eq!(r.cmd(&["EXISTS", "unreplicated"]), Frame::Int(0));
    assert_eq!(p.cmd(&["EXISTS", "unreplicated"]), Frame::Int(1));
    // A read-only replica refuses a script's write, runs its reads.
    let body = "return redis.call('set', 'x', 1)";
    let Frame::Bulk(sha) = r.cmd(&["SCRIPT", "LOAD", body]) else {
        panic!()
    };
    let sha = String::from_utf8(sha).unwrap();
    assert_eq!(
        r.cmd(&["EVAL", body, "0"]),
        Frame::Error(format!(
            "READONLY You can't write against a read only replica. script: {sha}, on @user_script:1."
        ))
    );
    assert_eq!(
        r.cmd(&["EVAL_RO", "return redis.call('get', 'n')", "0"]),
        Frame::bulk("15")
    );
}

/// A long script makes other clients wait, then (after busy-reply-threshold)
/// answer -BUSY; SCRIPT KILL stops it unless it wrote; the node then works.
#[test]
fn busy_script_is_killable() {
    let server = support::server();
    let mut admin = RawClient::connect(server.addr);
    // Set through Redis' old name, read through the new one.
    assert_eq!(
        admin.cmd(&["CONFIG", "SET", "lua-time-limit", "100"]),
        Frame::Simple("OK".into())
    );
    assert_eq!(
        admin.cmd(&["CONFIG", "GET", "busy-reply-threshold"]),
        Frame::Array(vec![Frame::bulk("busy-reply-threshold"), Frame::bulk("100")])
    );
    admin.cmd(&["SET", "k", "v"]);
    let mut runner = RawClient::connect(server.addr);
    runner.set_timeout(Duration::from_secs(20));
    runner.send(&["EVAL", "while true do end", "0"]);
    let mut other = RawClient::connect(server.addr);
    other.set_timeout(Duration::from_secs(20));
    support::wait_for("the script to be busy", Duration::from_secs(10), || {
        match other.cmd(&["GET", "k"]) {
            Frame::Error(e) if e.starts_with("BUSY ") => Some(()),
            _ => None,
        }
    });
    assert_eq!(other.cmd(&["SCRIPT", "KILL"]), Frame::Simple("OK".into()));
    match runner.read() {
        Frame::Error(e) => assert!(e.starts_with("ERR Script killed by user with SCRIPT KILL..."), "{e}"),
        f => panic!("{f:?}"),
    }
    assert_eq!(other.cmd(&["GET", "k"]), Frame::bulk("v"));
    assert_eq!(
        other.cmd(&["SCRIPT", "KILL"]),
        Frame::Error("NOTBUSY No scripts in execution right now.".into())
    );
    // A script that wrote cannot be killed; it runs to its end.
    runner.send(&[
        "EVAL",
        "redis.call('set', 'w', 1); local t = redis.call('time'); \
         while tonumber(redis.call('time')[1]) < tonumber(t[1]) + 2 do end; return 'done'",
        "0",
    ]);
    support::wait_for(
        "the writing script to be busy",
        Duration::from_secs(10),
        || match other.cmd(&["PING"]) {
            Frame::Error(e) if e.starts_with("BUSY ") => Some(()),
            _ => None,
        },
    );
    match other.cmd(&["SCRIPT", "KILL"]) {
        Frame::Error(e) => assert!(e.starts_with("UNKILLABLE "), "{e}"),
        f => panic!("{f:?}"),
    }
    assert_eq!(runner.read(), Frame::bulk("done"));
    assert_eq!(other.cmd(&["GET", "w"]), Frame::bulk("1"));
}

/// lua-cjson's configuration functions (settings that outlive the script
/// that makes them, as in Redis), its lenient number reading, and tricks
/// Redis' own suite tries against the sandbox.
#[test]
fn cjson_settings_and_sandbox_tricks_match_redis() {
    let mut d = Diff::new();
    d.check_all(&[
        &[
            "EVAL",
            "return {cjson.encode_max_depth(), cjson.decode_max_depth(), cjson.encode_keep_buffer(), \
                 cjson.encode_invalid_numbers(), cjson.decode_invalid_numbers(), cjson.encode_number_precision(), \
                 cjson.encode_sparse_array()}",
            "0",
        ],
        &["EVAL", "return {cjson.encode_sparse_array(nil, 3, 4)}", "0"],
        &["EVAL", "return cjson.encode({[1] = 1, [9] = 2})", "0"],
        &[
            "EVAL",
            "cjson.encode_sparse_array(true); return cjson.encode({[1] = 1, [20] = 3})",
            "0",
        ],
        &["EVAL", "return {cjson.encode_sparse_array(false, 2, 10)}", "0"],
        &[
            "EVAL",
            "cjson.encode_invalid_numbers(true); return cjson.encode({0/0, 1/0, -1/0})",
            "0",
        ],
        &[
            "EVAL",
            "cjson.encode_invalid_numbers('null'); return cjson.encode({0/0, 1/0})",
            "0",
        ],
        &["EVAL", "return cjson.encode_invalid_numbers('off')", "0"],
        &["EVAL", "return cjson.encode(0/0)", "0"],
        &[
            "EVAL",
            "cjson.encode_number_precision(3); return cjson.encode(3.14159)",
            "0",
        ],
        &["EVAL", "return cjson.encode_number_precision(14)", "0"],
        &["EVAL", "cjson.encode_max_depth(2); return cjson.encode({{{1}}})", "0"],
        &["EVAL", "cjson.decode_max_depth(2); return cjson.decode('[[[1]]]')", "0"],
        &[
            "EVAL",
            "return {cjson.encode_max_depth(1000), cjson.decode_max_depth(1000)}",
            "0",
        ],
        &["EVAL", "return cjson.encode_keep_buffer(false)", "0"],
        &["EVAL", "return cjson.encode_keep_buffer('on')", "0"],
        &["EVAL", "return cjson.encode_max_depth(0)", "0"],
        &["EVAL", "return cjson.encode_max_depth('x')", "0"],
        &["EVAL", "return cjson.encode_max_depth(1, 2)", "0"],
        &["EVAL", "return cjson.encode_invalid_numbers('maybe')", "0"],
        &["EVAL", "return cjson.encode_number_precision(15)", "0"],
        &[
            "EVAL",
            "return {tostring(cjson.decode('0x10')), tostring(cjson.decode('[NaN]')[1]), \
                 tostring(cjson.decode('-Infinity')), tostring(cjson.decode('007')), cjson.decode('+1'), \
                 tostring(cjson.decode('1.5e2')), tostring(cjson.decode('0x1p4'))}",
            "0",
        ],
        &[
            "EVAL",
            "cjson.decode_invalid_numbers(false); return cjson.decode('0x10')",
            "0",
        ],
        &["EVAL", "return cjson.decode('nan')", "0"],
        &["EVAL", "return cjson.decode_invalid_numbers(true)", "0"],
        &["EVAL", "return cjson.decode('[1, tru]')", "0"],
        &["EVAL", "return cjson.decode('-')", "0"],
        // The sandbox: what getmetatable shows is read-only too, and
        // precompiled chunks do not load.
        &["EVAL", "local g = getmetatable(_G); g.__index = {}", "0"],
        &["EVAL", "return type(getmetatable(_G))", "0"],
        &["EVAL", "return loadstring(string.dump(function() return 1 end))()", "0"],
        &["EVAL", "return {loadstring(string.dump(function() return 1 end))}", "0"],
        &["EVAL", "return loadstring('return 7')()", "0"],
        // XREAD/XREADGROUP may not block from a script; SORT BY a
        // constant orders a set for a script.
        &["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"],
        &["EVAL", "return redis.pcall('xread', 'STREAMS', 's', '$')", "0"],
        &[
            "EVAL",
            "return redis.pcall('xread', 'BLOCK', 0, 'STREAMS', 's', '$')",
            "0",
        ],
        &[
            "EVAL",
            "return redis.pcall('XREADGROUP', 'group', 'g', 'c', 'BLOCK', 0, 'STREAMS', 's', '>')",
            "0",
        ],
        &["SADD", "set", "c", "a", "b", "aa", "10", "9"],
        &["EVAL", "return redis.call('sort', 'set', 'by', 'nosort')", "0"],
        &["RPUSH", "list", "c", "a", "b"],
        &["EVAL", "return redis.call('sort', 'list', 'by', 'nosort')", "0"],
    ]);
}

/// lua-cmsgpack 0.4.0, byte for byte: every encoding `pack` chooses, what
/// `unpack`, `unpack_one` and `unpack_limit` read (offsets, limits,
/// truncated and malformed input), and their argument errors.
#[test]
fn cmsgpack_matches_redis() {
    let mut d = Diff::new();
    let hex = "local function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end ";
    let packs = [
        "nil",
        "1, -1, 0, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296",
        "-32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -9007199254740993",
        "0.1, 0.5, -2.25, 1e300, 1/0, -1/0, 2^63, -2^63, 2^53 + 0.5",
        "true, false, 'str', ''",
        "string.rep('x', 31), string.rep('x', 32), string.rep('y', 255), string.rep('y', 256)",
        "string.rep('z', 65535), string.rep('z', 65536)",
        "{1, 2, 3}, {}, {a = 1}, {[1] = 1, [3] = 3}, {[0] = 1}, {[1.5] = 1}, {[-1] = 1}",
        "{1, {2, {3, {4}}}}, {x = {y = {z = 'deep'}}}",
        "(function() local t = {} for i = 1, 20 do t[i] = i end return t end)()",
        "(function() local t = {} for i = 1, 70000 do t[i] = i % 7 end return t end)()",
        "(function() local a = {} a[1] = a return a end)()",
        "(function() local t = {} for i = 1, 20 do t = {t} end return t end)()",
        "print or function() end",
    ];
    let mut cases: Vec<Vec<String>> = packs
        .iter()
        .map(|p| {
            vec![
                "EVAL".into(),
                format!("{hex}return hex(cmsgpack.pack({p}))"),
                "0".into(),
            ]
        })
        .collect();
    let unpacks = [
        // Round trips, as strings so floats survive the reply.
        "local t = {cmsgpack.unpack(cmsgpack.pack(1, -1, 300, -300, 70000, -70000, 5000000000, -5000000000, 0.1, 1/0, 'hi', true, false))} \
         for i = 1, #t do t[i] = tostring(t[i]) end return t",
        "local t = cmsgpack.unpack(cmsgpack.pack({1, {2, 3}, 'x'})) return {t[1], t[2][1], t[2][2], t[3]}",
        "local t = cmsgpack.unpack(cmsgpack.pack({a = 1, b = {c = 'd'}})) return {t.a, t.b.c}",
        "return #cmsgpack.unpack(cmsgpack.pack(string.rep('q', 70000)))",
        // Hand-made input: every tag, big and signed integers.
        "return tostring(cmsgpack.unpack('\\202\\63\\128\\0\\0'))",
        "return tostring(cmsgpack.unpack('\\203\\64\\9\\33\\251\\84\\68\\45\\24'))",
        "return tostring(cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255'))",
        "return tostring(cmsgpack.unpack('\\207\\0\\0\\0\\1\\0\\0\\0\\0'))",
        "return tostring(cmsgpack.unpack('\\211\\255\\255\\255\\255\\255\\255\\255\\254'))",
        "return {cmsgpack.unpack('\\204\\200\\205\\1\\0\\206\\0\\1\\0\\0\\208\\128\\209\\255\\0\\210\\255\\255\\255\\0')}",
        "return {cmsgpack.unpack('\\255\\224\\127\\0')}",
        "return {cmsgpack.unpack('\\217\\3abc\\218\\0\\2de\\219\\0\\0\\0\\1f\\163ghi')}",
        "local t = cmsgpack.unpack('\\220\\0\\2\\1\\2') return t",
        "local t = cmsgpack.unpack('\\222\\0\\1\\161k\\161v') return t.k",
        "local t = cmsgpack.unpack('\\147\\1\\192\\3') return {t[1], t[2], t[3]}",
        "return cmsgpack.unpack('\\129\\192\\1')",
        "return cmsgpack.unpack('\\196\\1a')",
        "return cmsgpack.unpack('\\193')",
        "return cmsgpack.unpack('\\147\\1')",
        "return cmsgpack.unpack('\\217\\10abc')",
        "return cmsgpack.unpack('\\205\\1')",
        "return cmsgpack.unpack('\\219\\0\\0\\0\\9abc')",
        "return cmsgpack.unpack('')",
        "return cmsgpack.unpack(12)",
        "return cmsgpack.unpack()",
        "return cmsgpack.unpack({})",
        // Streams of values: one at a time, or a few.
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 1)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 2)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 3)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 4)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, -1)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_one(s, 'x')}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, 2)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, 5, 1)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, 0)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s, -1)}",
        "local s = cmsgpack.pack(1, 2, 3) return {cmsgpack.unpack_limit(s)}",
        "return cmsgpack.pack()",
        "local p = cmsgpack.pack return p()",
        "cmsgpack.pack = nil",
        "return {cmsgpack._NAME, cmsgpack._VERSION, cmsgpack._COPYRIGHT, cmsgpack._DESCRIPTION}",
    ];
    cases.extend(
        unpacks
            .iter()
            .map(|u| vec!["EVAL".to_string(), u.to_string(), "0".to_string()]),
    );
    let cases: Vec<Vec<&str>> = cases.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
    let cases: Vec<&[&str]> = cases.iter().map(Vec::as_slice).collect();
    d.check_all(&cases);
}

/// lua-struct: packing with every option, byte order and alignment, what
/// unpack reads back (offsets, `c0`, zero-terminated strings), sizes, and
/// the errors, byte for byte against Redis.
#[test]
fn struct_matches_redis() {
    let mut d = Diff::new();
    let hex = "local function hex(s) return (s:gsub('.', function(c) return string.format('%02x', c:byte()) end)) end ";
    let packs = [
        "'bBhHlLTiI', -1, 255, -2, 65535, -3, 2^40, 7, -4, 4000000000",
        "'>i2<i2>I8<I8', 258, 258, 2^33 + 5, 2^33 + 5",
        "'i3i16I1', -2, -2, 300",
        "'!4bi!8bd', 1, 2, 3, 1.5",
        "'!bh!2bi', 1, 2, 3, 4",
        "'>fd<fd', 1.5, -0.1, 1.5, -0.1",
        "'c5c0sx', 'abcdefg', 'xy', 'zz'",
        "' b b ', 1, 2",
        "'c3', 'ab'",
        "'b', 'x'",
        "'z'",
        "'!3'",
        "'i33'",
        "'i99999999999'",
        "'s', {}",
    ];
    let mut cases: Vec<Vec<String>> = packs
        .iter()
        .map(|p| vec!["EVAL".into(), format!("{hex}return hex(struct.pack({p}))"), "0".into()])
        .collect();
    let others = [
        "local t = {struct.unpack('bBhHlLiI', struct.pack('bBhHlLiI', -1, 255, -2, 65535, -3, 2^40, -4, 4000000000))} \
         for i = 1, #t do t[i] = tostring(t[i]) end return t",
        "local t = {struct.unpack('>i2<i2>I8', struct.pack('>i2<i2>I8', -258, 258, 2^33 + 5))} \
         for i = 1, #t do t[i] = tostring(t[i]) end return t",
        "local t = {struct.unpack('!4bi!8bd', struct.pack('!4bi!8bd', 1, 2, 3, 1.5))} \
         for i = 1, #t do t[i] = tostring(t[i]) end return t",
        "local t = {struct.unpack('fd', struct.pack('fd', 1.5, -0.1))} for i = 1, #t do t[i] = tostring(t[i]) end return t",
        "return {struct.unpack('bc0s', struct.pack('bc0s', 3, 'abc', 'zero'))}",
        "return {struct.unpack('c2c0', '03abcde')}",
        "return {struct.unpack('c0', 'abc')}",
        "return {struct.unpack('s', 'abc')}",
        "return {struct.unpack('b', 'ab', 2)}",
        "return {struct.unpack('b', 'ab', 3)}",
        "return {struct.unpack('b', 'ab', 0)}",
        "return {struct.unpack('b', 'ab', -1)}",
        "return {struct.unpack('i4', 'abc')}",
        "return {struct.unpack('i', 'abcdefgh', 'x')}",
        "return {struct.unpack('i16', string.rep('\\255', 16))}",
        "return {struct.unpack('I3', '\\1\\2\\3')}",
        "return {struct.unpack('q', 'abc')}",
        "return {struct.unpack()}",
        "return {struct.size('bhilTfdc3x'), struct.size('!8bd'), struct.size('!2bi'), struct.size('z'), struct.size('')}",
        "return struct.size('s')",
        "return struct.size('c0')",
        "return struct.size('<>!4#')",
        "struct.pack = nil",
    ];
    cases.extend(
        others
            .iter()
            .map(|u| vec!["EVAL".to_string(), u.to_string(), "0".to_string()]),
    );
    let cases: Vec<Vec<&str>> = cases.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
    let cases: Vec<&[&str]> = cases.iter().map(Vec::as_slice).collect();
    d.check_all(&cases);
}

/// A plain HTTP GET on the admin port; the whole response. `sent` hears
/// when the request is on the wire.
fn http(
    addr: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
    sent: Option<std::sync::mpsc::Sender<()>>,
) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    if let Some(sent) = sent {
        let _ = sent.send(());
    }
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// While a long script holds every partition, what waits for the keyspace
/// on the server's own runtime (here a /metrics scrape) must not keep new
/// clients out: a new connection is accepted and answered -BUSY, can
/// SCRIPT KILL, and /healthz answers. The real binary, whose runtime is one
/// thread.
#[test]
fn a_long_script_leaves_the_door_open() {
    let admin_port = support::free_port();
    let node = support::Binary::start(&["--admin-port", &admin_port.to_string()]);
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let mut c = RawClient::connect(node.addr);
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
        Frame::Simple("OK".into())
    );
    c.cmd(&["SET", "k", "v"]);
    let mut runner = RawClient::connect(node.addr);
    runner.set_timeout(Duration::from_secs(30));
    runner.send(&["EVAL", "while true do end", "0"]);
    support::wait_for("the script to be busy", Duration::from_secs(10), || {
        matches!(c.cmd(&["PING"]), Frame::Error(e) if e.starts_with("BUSY ")).then_some(())
    });
    let (sent_tx, sent) = std::sync::mpsc::channel();
    let scrape = std::thread::spawn(move || http(admin, "/metrics", Duration::from_secs(30), Some(sent_tx)));
    sent.recv_timeout(Duration::from_secs(10)).unwrap();
    // The scrape must reach its handler (and wait there for the keyspace)
    // before the new client connects, and nothing outside the process shows
    // that it has: this pause is the ordering under test. Were it too short,
    // the test would pass without exercising the wait, never fail wrongly.
    std::thread::sleep(Duration::from_millis(300));
    let mut fresh = support::RawClient::try_connect(node.addr).unwrap();
    fresh.set_timeout(Duration::from_secs(5));
    assert!(
        matches!(fresh.cmd(&["GET", "k"]), Frame::Error(e) if e.starts_with("BUSY ")),
        "a new connection is served during the script"
    );
    assert!(http(admin, "/healthz", Duration::from_secs(5), None).contains("200 OK"));
    assert_eq!(fresh.cmd(&["SCRIPT", "KILL"]), Frame::Simple("OK".into()));
    assert!(runner.read().is_error());
    let metrics = scrape.join().unwrap();
    assert!(metrics.contains("ferrokv_keys 1"), "{metrics}");
    assert_eq!(fresh.cmd(&["GET", "k"]), Frame::bulk("v"));
}

/// MULTI/EXEC meeting a busy script, as Redis' own unit/multi checks it,
/// compared with Redis: MULTI, DISCARD and UNWATCH are allowed while a
/// script is busy, a command refused inside the transaction aborts it, a
/// refused EXEC discards it (EXECABORT ... BUSY), and no transaction runs
/// half.
#[test]
fn transactions_meet_busy_scripts_as_in_redis() {
    let server = support::server();
    let redis = support::redis_server(&[]);
    let mut transcripts = Vec::new();
    for addr in [server.addr, redis.addr] {
        let mut c = RawClient::connect(addr);
        let mut out = Vec::new();
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "10"]);
        for order in [
            "multi during busy",
            "exec during busy",
            "body during busy",
            "discard during busy",
        ] {
            c.cmd(&["SET", "xx", "1"]);
            let mut runner = RawClient::connect(addr);
            runner.set_timeout(Duration::from_secs(20));
            let mut t = RawClient::connect(addr);
            t.set_timeout(Duration::from_secs(20));
            let busy = |c: &mut RawClient| {
                support::wait_for("a busy script", Duration::from_secs(10), || {
                    matches!(c.cmd(&["PING"]), Frame::Error(e) if e.starts_with("BUSY ")).then_some(())
                })
            };
            if order != "multi during busy" {
                out.push(t.cmd(&["MULTI"]));
                out.push(t.cmd(&["INCR", "xx"]));
            }
            runner.send(&["EVAL", "while true do end", "0"]);
            busy(&mut c);
            match order {
                "multi during busy" => {
                    out.push(t.cmd(&["MULTI"]));
                    out.push(t.cmd(&["INCR", "xx"]));
                    out.push(t.cmd(&["UNWATCH"]));
                }
                "exec during busy" => out.push(t.cmd(&["EXEC"])),
                "body during busy" => out.push(t.cmd(&["INCR", "xx"])),
                _ => out.push(t.cmd(&["DISCARD"])),
            }
            out.push(c.cmd(&["SCRIPT", "KILL"]));
            out.push(runner.read());
            if order != "exec during busy" && order != "discard during busy" {
                out.push(t.cmd(&["INCR", "xx"]));
                out.push(t.cmd(&["EXEC"]));
            }
            out.push(c.cmd(&["GET", "xx"]));
            out.push(t.cmd(&["PING", "asdf"]));
        }
        transcripts.push(out);
    }
    assert_eq!(transcripts[0], transcripts[1], "left: ferrokv, right: redis");
}

/// SHUTDOWN while a script is busy: refused without NOSAVE (a snapshot
/// would hold half the script), and SHUTDOWN NOSAVE stops the script and
/// the node at once; what the script wrote is not in the append-only log,
/// so the restarted node has none of it. The real binary.
#[test]
fn shutdown_nosave_stops_a_busy_script_and_keeps_none_of_it() {
    let dir = support::TempDir::new("shutdown-busy");
    let dir_arg = dir.0.to_string_lossy().into_owned();
    let args = [
        "--dir",
        dir_arg.as_str(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ];
    let mut node = support::Binary::start(&args);
    let mut c = RawClient::connect(node.addr);
    assert_eq!(c.cmd(&["SET", "before", "1"]), Frame::Simple("OK".into()));
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]),
        Frame::Simple("OK".into())
    );
    let mut runner = RawClient::connect(node.addr);
    runner.set_timeout(Duration::from_secs(30));
    runner.send(&["EVAL", "redis.call('set', 'half', 1) while true do end", "0"]);
    support::wait_for("the script to be busy", Duration::from_secs(10), || {
        matches!(c.cmd(&["PING"]), Frame::Error(e) if e.starts_with("BUSY ")).then_some(())
    });
    assert_eq!(
        c.cmd(&["SHUTDOWN"]),
        Frame::Error("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.".into())
    );
    assert_eq!(
        c.cmd(&["SCRIPT", "KILL"]),
        Frame::Error(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.".into()
        )
    );
    c.send(&["SHUTDOWN", "NOSAVE"]);
    assert!(node.wait_exit(Duration::from_secs(20)).success());
    let node = support::Binary::start(&args);
    let mut c = RawClient::connect(node.addr);
    assert_eq!(c.cmd(&["GET", "before"]), Frame::bulk("1"));
    assert_eq!(c.cmd(&["EXISTS", "half"]), Frame::Int(0));
}
