//! `COMMAND`, `COMMAND COUNT/INFO/DOCS/LIST/GETKEYS`: the command table as
//! Redis 7.0 describes it to clients. Cluster clients read key positions
//! from here, so first/last/step and the key specs come from the same
//! [`KeySpec`] that the server locks by.

use bytes::Bytes;

use crate::cmd::{CmdResult, CommandSpec, Ctx, KeySpec, flags, key_positions, lookup, resolve, table};
use crate::glob::glob_match;
use crate::resp::Reply;

/// ACL categories in the order Redis prints them, derived from the group
/// and flags, plus the few that Redis assigns by hand.
fn acl_categories(spec: &'static CommandSpec) -> Vec<&'static str> {
    let f = spec.flags;
    let has = |flag: u32| f & flag != 0;
    // A bare container (CONFIG, CLIENT...) is only @slow; its subcommands carry the rest.
    if f == 0 && !spec.subcommands.is_empty() {
        return vec!["@slow"];
    }
    let full = table().full_name(spec);
    let group = spec.group;
    let mut out = Vec::new();
    if group == "generic" || matches!(full, "dbsize" | "flushall" | "flushdb") {
        out.push("@keyspace");
    }
    if has(flags::READONLY) && group != "scripting" {
        out.push("@read");
    }
    if has(flags::WRITE) {
        out.push("@write");
    }
    for (cat, groups) in [
        ("@set", &["set"][..]),
        ("@sortedset", &["sorted-set", "sorted_set", "zset"][..]),
        ("@list", &["list"][..]),
        ("@hash", &["hash"][..]),
        ("@string", &["string"][..]),
        ("@bitmap", &["bitmap"][..]),
        ("@hyperloglog", &["hyperloglog"][..]),
        ("@geo", &["geo"][..]),
        ("@stream", &["stream"][..]),
    ] {
        if groups.contains(&group) {
            out.push(cat);
        }
    }
    if has(flags::PUBSUB) {
        out.push("@pubsub");
    }
    if has(flags::ADMIN) {
        out.push("@admin");
    }
    if has(flags::FAST) {
        out.push("@fast");
    } else {
        out.push("@slow");
    }
    if has(flags::BLOCKING) {
        out.push("@blocking");
    }
    if has(flags::ADMIN) || matches!(spec.keys, KeySpec::All) && has(flags::WRITE) || full == "info" {
        out.push("@dangerous");
    }
    if group == "connection" || full.starts_with("client|") || full.starts_with("command") {
        out.push("@connection");
    }
    if group == "transactions" {
        out.push("@transaction");
    }
    if group == "scripting" {
        out.push("@scripting");
    }
    out
}

fn flag_names(spec: &CommandSpec) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for (bit, name) in flags::NAMES {
        // movablekeys sits between no_multi and allow_busy in Redis' order.
        if *bit == flags::ALLOW_BUSY && matches!(spec.keys, KeySpec::Custom(_)) {
            v.push("movablekeys");
        }
        if spec.flags & bit != 0 {
            v.push(name);
        }
    }
    if matches!(spec.keys, KeySpec::Custom(_)) && !v.contains(&"movablekeys") {
        v.push("movablekeys");
    }
    v
}

/// The legacy first/last/step (0 0 0 when keys are found by parsing). Redis 7.0 derives it from the first key
/// spec when that is a plain range, so a few commands whose keys are found
/// by parsing still announce one: the destination of the *STORE commands,
/// SORT's sorted key, GEORADIUS' index, and the shard channels of sharded pub/sub (cluster
/// clients route `SPUBLISH` by it).
fn key_range(spec: &CommandSpec) -> (i64, i64, i64) {
    match (spec.keys, spec.name) {
        (KeySpec::Range { first, last, step }, _) => (first as i64, last as i64, step as i64),
        (
            _,
            "zunionstore" | "zinterstore" | "zdiffstore" | "spublish" | "sort" | "sort_ro" | "georadius"
            | "georadiusbymember",
        ) => (1, 1, 1),
        (_, "ssubscribe" | "sunsubscribe") => (1, -1, 1),
        _ => (0, 0, 0),
    }
}

fn status_set(items: &[&'static str]) -> Reply {
    Reply::Set(items.iter().map(|s| Reply::status(*s)).collect())
}

fn map(pairs: Vec<(&'static str, Reply)>) -> Reply {
    Reply::Map(pairs.into_iter().map(|(k, v)| (Reply::bulk_static(k), v)).collect())
}

fn key_specs(spec: &CommandSpec) -> Reply {
    let access: &[&'static str] = if spec.flags & flags::WRITE != 0 {
        &["RW", "update"]
    } else {
        &["RO", "access"]
    };
    match spec.keys {
        KeySpec::Range { first, last, step } => {
            let lastkey = if last < 0 { last } else { last - first };
            Reply::Set(vec![map(vec![
                ("flags", status_set(access)),
                (
                    "begin_search",
                    map(vec![
                        ("type", Reply::bulk_static("index")),
                        ("spec", map(vec![("index", Reply::Int(first as i64))])),
                    ]),
                ),
                (
                    "find_keys",
                    map(vec![
                        ("type", Reply::bulk_static("range")),
                        (
                            "spec",
                            map(vec![
                                ("lastkey", Reply::Int(lastkey as i64)),
                                ("keystep", Reply::Int(step as i64)),
                                ("limit", Reply::Int(0)),
                            ]),
                        ),
                    ]),
                ),
            ])])
        }
        KeySpec::Custom(_) => Reply::Set(vec![map(vec![
            ("flags", status_set(access)),
            (
                "begin_search",
                map(vec![("type", Reply::bulk_static("unknown")), ("spec", map(vec![]))]),
            ),
            (
                "find_keys",
                map(vec![("type", Reply::bulk_static("unknown")), ("spec", map(vec![]))]),
            ),
        ])]),
        KeySpec::None | KeySpec::All => Reply::Set(vec![]),
    }
}

/// One `COMMAND INFO` entry (Redis 7.0's ten fields).
fn describe(spec: &'static CommandSpec) -> Reply {
    let (first, last, step) = key_range(spec);
    // Redis' request/response policy tips are for cluster proxies; this
    // node routes by key positions only, so it claims none.
    let tips = Vec::new();
    Reply::Array(vec![
        Reply::bulk(table().full_name(spec)),
        Reply::Int(spec.arity as i64),
        status_set(&flag_names(spec)),
        Reply::Int(first),
        Reply::Int(last),
        Reply::Int(step),
        status_set(&acl_categories(spec)),
        Reply::Set(tips),
        key_specs(spec),
        // Redis 7.0 answers an empty set, or an array of entries.
        if spec.subcommands.is_empty() {
            Reply::Set(vec![])
        } else {
            Reply::Array(spec.subcommands.iter().map(describe).collect())
        },
    ])
}

pub fn all(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Array(table().top_level().map(describe).collect()))
}

pub fn count(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(table().top_level().count() as i64))
}

/// A command or `container|sub` by name.
fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    match name.split_once('|') {
        Some((parent, sub)) => lookup(parent.as_bytes())?.subcommands.iter().find(|s| s.name == sub),
        None => lookup(name.as_bytes()),
    }
}

pub fn info(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() == 2 {
        return Ok(Reply::Array(table().top_level().map(describe).collect()));
    }
    Ok(Reply::Array(
        args[2..]
            .iter()
            .map(|n| find(n).map_or(Reply::Null, describe))
            .collect(),
    ))
}

fn doc(spec: &'static CommandSpec) -> Reply {
    let mut fields = vec![
        ("summary", Reply::bulk_static(spec.summary)),
        ("since", Reply::bulk_static(spec.since)),
        ("group", Reply::bulk_static(spec.group)),
        ("complexity", Reply::bulk_static(spec.complexity)),
    ];
    if !spec.subcommands.is_empty() {
        fields.push((
            "subcommands",
            Reply::Map(
                spec.subcommands
                    .iter()
                    .map(|s| (Reply::bulk(table().full_name(s)), doc(s)))
                    .collect(),
            ),
        ));
    }
    map(fields)
}

pub fn docs(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let specs: Vec<&'static CommandSpec> = if args.len() == 2 {
        table().top_level().collect()
    } else {
        args[2..].iter().filter_map(|n| find(n)).collect()
    };
    Ok(Reply::Map(
        specs
            .into_iter()
            .map(|s| (Reply::bulk(table().full_name(s)), doc(s)))
            .collect(),
    ))
}

pub fn list(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    use crate::cmd::parse::{is, syntax};
    let mut filter: Option<(String, Bytes)> = None;
    match args.len() {
        2 => {}
        5 if is(args[2], "FILTERBY") => {
            let kind = String::from_utf8_lossy(args[3]).to_ascii_lowercase();
            if !matches!(kind.as_str(), "module" | "aclcat" | "pattern") {
                return Err(syntax());
            }
            filter = Some((kind, Bytes::copy_from_slice(args[4])));
        }
        _ => return Err(syntax()),
    }
    let mut out = Vec::new();
    for (spec, name) in table().all.iter() {
        let keep = match &filter {
            None => true,
            Some((kind, v)) => match kind.as_str() {
                // No modules are loaded, so no command belongs to one.
                "module" => false,
                "aclcat" => {
                    let want = format!("@{}", String::from_utf8_lossy(v).to_ascii_lowercase());
                    acl_categories(spec).contains(&want.as_str())
                }
                _ => glob_match(v, name.as_bytes(), true),
            },
        };
        if keep {
            out.push(Reply::bulk(name));
        }
    }
    Ok(Reply::Array(out))
}

pub fn getkeys(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let cmd = &args[2..];
    if lookup(cmd[0]).is_none() {
        return Err(Reply::err("ERR Invalid command specified"));
    }
    let spec = resolve(cmd).map_err(|_| Reply::err("ERR Invalid number of arguments specified for command"))?;
    if matches!(spec.keys, KeySpec::None | KeySpec::All) {
        return Err(Reply::err("ERR The command has no key arguments"));
    }
    let keys = key_positions(spec, cmd);
    // A command whose keys may be none (EVAL, FCALL with numkeys 0) has
    // none to list; for any other, no keys means bad arguments.
    if keys.is_empty() && spec.flags & flags::NO_MANDATORY_KEYS != 0 {
        return Ok(Reply::Array(Vec::new()));
    }
    if keys.is_empty() {
        return Err(Reply::err("ERR Invalid arguments specified for command"));
    }
    Ok(Reply::Array(keys.into_iter().map(|i| Reply::bulk(cmd[i])).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_consistent_metadata() {
        for (spec, name) in table().all.iter() {
            assert!(spec.arity != 0, "{name}: arity 0");
            assert!(!spec.summary.is_empty(), "{name}: no summary");
            let cats = acl_categories(spec);
            assert!(
                cats.contains(&"@fast") ^ cats.contains(&"@slow"),
                "{name}: exactly one of @fast/@slow"
            );
            if let KeySpec::Range { first, step, .. } = spec.keys {
                assert!(first > 0 && step > 0, "{name}: bad key range");
            }
        }
    }
}
