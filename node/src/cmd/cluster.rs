//! CLUSTER commands, READONLY / READWRITE / ASKING.
//!
//! Slot arithmetic and the keys of a slot (`KEYSLOT`, `COUNTKEYSINSLOT`,
//! `GETKEYSINSLOT`) answer the same on a standalone node as in a cluster: the
//! keyspace is always split into 16384 slots. The topology commands need
//! `--cluster-enabled yes` and read the topology held in [`crate::cluster`];
//! their replies have Redis 7's shapes so that cluster clients parse them.
//! `CLUSTER SETTOPOLOGY <epoch> <payload>` is ferrokv's own: the control
//! plane's way to set the layout (format and epoch rules in
//! [`crate::cluster`]).

use bytes::Bytes;

use super::flags::*;
use super::parse::parse_i64;
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::cluster::migrate::{self, MigrateError};
use crate::cluster::{ClusterError, View};
use crate::resp::Reply;
use crate::slot::{SLOTS, key_slot};

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $since:literal, $cx:literal, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "cluster",
            summary: $summary,
            since: $since,
            complexity: $cx,
            handler: $h,
            subcommands: &[],
        }
    };
}

const ERR_DISABLED: &str = "ERR This instance has cluster support disabled";

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "readonly",
        arity: 1,
        flags: FAST | LOADING | STALE,
        keys: KeySpec::None,
        group: "cluster",
        summary: "Enables read-only queries for a connection to a Redis Cluster replica node.",
        since: "3.0.0",
        complexity: "O(1)",
        handler: readonly,
        subcommands: &[],
    },
    CommandSpec {
        name: "readwrite",
        arity: 1,
        flags: FAST | LOADING | STALE,
        keys: KeySpec::None,
        group: "cluster",
        summary: "Enables read-write queries for a connection to a Redis Cluster replica node.",
        since: "3.0.0",
        complexity: "O(1)",
        handler: readwrite,
        subcommands: &[],
    },
    CommandSpec {
        name: "asking",
        arity: 1,
        flags: FAST,
        keys: KeySpec::None,
        group: "cluster",
        summary: "Signals that a cluster client is following an -ASK redirect.",
        since: "3.0.0",
        complexity: "O(1)",
        handler: asking,
        subcommands: &[],
    },
    CommandSpec {
        name: "cluster",
        arity: -2,
        flags: 0,
        keys: KeySpec::None,
        group: "cluster",
        summary: "A container for Redis Cluster commands.",
        since: "3.0.0",
        complexity: "Depends on subcommand.",
        handler: no_subcommand,
        subcommands: &[
            spec!(
                "keyslot",
                3,
                STALE,
                KeySpec::None,
                keyslot,
                "3.0.0",
                "O(N) where N is the number of bytes in the key",
                "Returns the hash slot for a key."
            ),
            // Counting or listing a slot's keys reads that slot's partition; the
            // slot is an argument, not a key, so the command takes every
            // partition (cheap: nothing is scanned but the one slot table).
            spec!(
                "countkeysinslot",
                3,
                STALE,
                KeySpec::All,
                countkeysinslot,
                "3.0.0",
                "O(1)",
                "Returns the number of keys in a hash slot."
            ),
            spec!(
                "getkeysinslot",
                4,
                STALE,
                KeySpec::All,
                getkeysinslot,
                "3.0.0",
                "O(N) where N is the number of requested keys",
                "Returns the key names in a hash slot."
            ),
            spec!(
                "myid",
                2,
                LOADING | STALE,
                KeySpec::None,
                myid,
                "3.0.0",
                "O(1)",
                "Returns the ID of a node."
            ),
            spec!(
                "slots",
                2,
                LOADING | STALE,
                KeySpec::None,
                slots,
                "3.0.0",
                "O(N) where N is the total number of Cluster nodes",
                "Returns the mapping of cluster slots to nodes."
            ),
            spec!(
                "shards",
                2,
                LOADING | STALE,
                KeySpec::None,
                shards,
                "7.0.0",
                "O(N) where N is the total number of cluster nodes",
                "Returns the mapping of cluster slots to shards."
            ),
            spec!(
                "nodes",
                2,
                LOADING | STALE,
                KeySpec::None,
                nodes,
                "3.0.0",
                "O(N) where N is the total number of Cluster nodes",
                "Returns the cluster configuration for a node."
            ),
            spec!(
                "info",
                2,
                LOADING | STALE,
                KeySpec::None,
                info,
                "3.0.0",
                "O(1)",
                "Returns information about the state of a node."
            ),
            // ferrokv's own: the control plane pushes the whole layout. ADMIN
            // and not allowed in MULTI (it persists and may change the role).
            spec!(
                "settopology",
                4,
                ADMIN | STALE | NO_MULTI,
                KeySpec::None,
                settopology,
                "0.1.0",
                "O(N) where N is the number of slots and nodes",
                "Sets the cluster topology pushed by the control plane (refused when its epoch is older than the held one)."
            ),
            spec!(
                "gettopology",
                2,
                LOADING | STALE,
                KeySpec::None,
                gettopology,
                "0.1.0",
                "O(N) where N is the number of slots and nodes",
                "Returns the topology this node holds (JSON, the SETTOPOLOGY payload), or nil before the first one."
            ),
            // ferrokv's own slot migration control (see crate::cluster::migrate).
            spec!(
                "migration",
                -3,
                ADMIN | STALE | NO_MULTI,
                KeySpec::None,
                migration,
                "0.1.0",
                "O(1), STATUS: O(N) where N is the number of migrations",
                "Slot migration: IMPORT <slot> <source-id> | START <slot> <target-id> [BATCH <keys>] | \
                 RESUME <slot> | CANCEL <slot> | CLEAR <slot> | PEER <slot> <node-id> | STATUS [<slot>]."
            ),
            spec!(
                "restorebatch",
                5,
                // WRITE: a replica applies only the write commands of its
                // primary's stream, and this one carries a migration's keys.
                WRITE | ADMIN | STALE | NO_MULTI,
                KeySpec::None,
                restorebatch,
                "0.1.0",
                "O(N) where N is the number of keys in the payload",
                "Internal (slot migration stream): RESTOREBATCH <slot> <source-id> <payload> inserts \
                 encoded keys of a slot imported from <source-id>."
            ),
            spec!(
                "help",
                2,
                LOADING | STALE,
                KeySpec::None,
                help,
                "5.0.0",
                "O(1)",
                "Returns helpful text about the different subcommands."
            ),
        ],
    },
];

fn no_subcommand(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Err(Reply::err("ERR wrong number of arguments for 'cluster' command"))
}

fn keyslot(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(key_slot(args[2]) as i64))
}

/// A slot number, or `None` when it is an integer out of range.
fn slot_arg(arg: &[u8]) -> Result<Option<u16>, Reply> {
    let n = super::parse::int(arg)?;
    Ok((0..SLOTS as i64).contains(&n).then_some(n as u16))
}

fn countkeysinslot(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let slot = slot_arg(args[2])?.ok_or_else(|| Reply::err("ERR Invalid slot"))?;
    Ok(Reply::Int(ctx.ks.count_in_slot(slot) as i64))
}

fn getkeysinslot(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let invalid = || Reply::err("ERR Invalid slot or number of keys");
    let slot = slot_arg(args[2])?;
    let count = parse_i64(args[3]).ok_or_else(|| Reply::err(super::parse::ERR_NOT_INT))?;
    let (Some(slot), Ok(count)) = (slot, usize::try_from(count)) else {
        return Err(invalid());
    };
    Ok(Reply::bulks(ctx.ks.keys_in_slot(slot, count)))
}

fn help(_ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(super::server::help_reply(
        "CLUSTER",
        &[
            "COUNTKEYSINSLOT <slot>",
            "    Return the number of keys in <slot>.",
            "GETTOPOLOGY",
            "    Return the held topology as JSON (nil before the first SETTOPOLOGY).",
            "GETKEYSINSLOT <slot> <count>",
            "    Return key names stored by current node in a slot.",
            "INFO",
            "    Return information about the cluster.",
            "KEYSLOT <key>",
            "    Return the hash slot for <key>.",
            "MYID",
            "    Return the node id.",
            "MIGRATION IMPORT <slot> <source-id>",
            "    Mark <slot> importing from <source-id> (on the target).",
            "MIGRATION START <slot> <target-id> [BATCH <keys>]",
            "    Mark <slot> migrating to <target-id> and stream its keys (on the source).",
            "MIGRATION RESUME|CANCEL|CLEAR <slot>",
            "    Restart a stopped stream; undo a migration (source first, then target); drop the state.",
            "MIGRATION PEER <slot> <node-id>",
            "    Point the migration of <slot> at the primary that replaced its failed peer.",
            "MIGRATION STATUS [<slot>]",
            "    Progress of this node's slot migrations.",
            "NODES",
            "    Return cluster configuration seen by node. Output format:",
            "    <id> <ip:port@cport> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
            "SETTOPOLOGY <epoch> <payload>",
            "    Set the topology pushed by the control plane (JSON payload; refused if <epoch>",
            "    is older than the held epoch, or equal with a different layout).",
            "SHARDS",
            "    Return information about slot range mappings and the nodes associated with them.",
            "SLOTS",
            "    Return information about slots range mappings. Each range is made of:",
            "    start, end, master and replicas IP addresses, ports and ids",
        ],
    ))
}

fn enabled(ctx: &Ctx) -> Result<(), Reply> {
    if ctx.state.cluster.is_enabled() {
        Ok(())
    } else {
        Err(Reply::err(ERR_DISABLED))
    }
}

fn readonly(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    ctx.session.readonly = true;
    Ok(Reply::Ok)
}

fn readwrite(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    ctx.session.readonly = false;
    Ok(Reply::Ok)
}

fn asking(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    ctx.session.asking = true;
    Ok(Reply::Ok)
}

fn myid(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    Ok(Reply::bulk(ctx.state.cluster.myid()))
}

/// `[ip, port, id, {}]`: Redis 7's node entry (the map holds hostnames,
/// which ferrokv does not announce).
fn slot_node(n: &crate::cluster::Node) -> Reply {
    Reply::Array(vec![
        Reply::bulk(&n.ip),
        Reply::Int(n.port as i64),
        Reply::bulk(&n.id),
        Reply::Map(Vec::new()),
    ])
}

fn slots(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let Some(view) = ctx.state.cluster.view() else {
        return Ok(Reply::Array(Vec::new()));
    };
    let l = &view.layout;
    let out = l
        .runs()
        .into_iter()
        .map(|(start, end, s)| {
            let shard = &l.topology.shards[s];
            let mut entry = vec![
                Reply::Int(start as i64),
                Reply::Int(end as i64),
                slot_node(l.primary(s)),
            ];
            entry.extend(
                shard
                    .replicas
                    .iter()
                    .filter_map(|id| l.topology.node(id))
                    .map(slot_node),
            );
            Reply::Array(entry)
        })
        .collect();
    Ok(Reply::Array(out))
}

fn shards(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let Some(view) = ctx.state.cluster.view() else {
        return Ok(Reply::Array(Vec::new()));
    };
    let l = &view.layout;
    let my_offset = ctx.state.db.wlog.offset() as i64;
    let out = l
        .topology
        .shards
        .iter()
        .enumerate()
        .map(|(s, shard)| {
            let slots = l
                .shard_ranges(s)
                .into_iter()
                .flat_map(|(a, b)| [Reply::Int(a as i64), Reply::Int(b as i64)])
                .collect();
            let nodes = std::iter::once(&shard.primary)
                .chain(&shard.replicas)
                .filter_map(|id| l.topology.node(id))
                .map(|n| {
                    let role = if n.id == shard.primary { "master" } else { "replica" };
                    // Only this node's own offset is known here: there is no
                    // gossip to learn the others'.
                    let offset = if n.id == ctx.state.cluster.myid() { my_offset } else { 0 };
                    Reply::Map(vec![
                        (Reply::bulk_static("id"), Reply::bulk(&n.id)),
                        (Reply::bulk_static("port"), Reply::Int(n.port as i64)),
                        (Reply::bulk_static("ip"), Reply::bulk(&n.ip)),
                        (Reply::bulk_static("endpoint"), Reply::bulk(&n.ip)),
                        (Reply::bulk_static("role"), Reply::bulk_static(role)),
                        (Reply::bulk_static("replication-offset"), Reply::Int(offset)),
                        (Reply::bulk_static("health"), Reply::bulk_static("online")),
                    ])
                })
                .collect();
            Reply::Map(vec![
                (Reply::bulk_static("slots"), Reply::Array(slots)),
                (Reply::bulk_static("nodes"), Reply::Array(nodes)),
            ])
        })
        .collect();
    Ok(Reply::Array(out))
}

/// `CLUSTER NODES` text: one line per node, Redis 7.0's format. There is no
/// bus, so ping/pong times are 0 and every link is `connected`; each node's
/// config epoch is the topology's epoch.
pub fn nodes_text(view: Option<&View>, myid: &str, port: u16) -> String {
    let Some(view) = view else {
        return format!("{myid} :{port}@0 myself,master - 0 0 0 connected\n");
    };
    let l = &view.layout;
    let mut out = String::new();
    for (i, n) in l.topology.nodes.iter().enumerate() {
        let s = l.shard_of[i];
        let primary = l.primaries[s] == i;
        let myself = if i == view.me { "myself," } else { "" };
        let (flags, master) = if primary {
            ("master", "-")
        } else {
            ("slave", l.primary(s).id.as_str())
        };
        out.push_str(&format!(
            "{} {}:{}@{} {myself}{flags} {master} 0 0 {} connected",
            n.id,
            n.ip,
            n.port,
            n.cport.unwrap_or(0),
            l.topology.epoch
        ));
        if primary {
            for (a, b) in l.shard_ranges(s) {
                if a == b {
                    out.push_str(&format!(" {a}"));
                } else {
                    out.push_str(&format!(" {a}-{b}"));
                }
            }
        }
        out.push('\n');
    }
    out
}

fn nodes(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let view = ctx.state.cluster.view();
    let port = ctx.state.port.load(std::sync::atomic::Ordering::Relaxed) as u16;
    Ok(Reply::Verbatim(Bytes::from(nodes_text(
        view.as_deref(),
        ctx.state.cluster.myid(),
        port,
    ))))
}

fn info(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let view = ctx.state.cluster.view();
    let (assigned, known, size, epoch) = match &view {
        Some(v) => {
            let l = &v.layout;
            let size = (0..l.topology.shards.len())
                .filter(|&s| !l.shard_ranges(s).is_empty())
                .count();
            (l.assigned(), l.topology.nodes.len(), size, l.topology.epoch)
        }
        None => (0, 1, 0, 0),
    };
    let state = if assigned == SLOTS { "ok" } else { "fail" };
    let text = format!(
        "cluster_state:{state}\r\n\
         cluster_slots_assigned:{assigned}\r\n\
         cluster_slots_ok:{assigned}\r\n\
         cluster_slots_pfail:0\r\n\
         cluster_slots_fail:0\r\n\
         cluster_known_nodes:{known}\r\n\
         cluster_size:{size}\r\n\
         cluster_current_epoch:{epoch}\r\n\
         cluster_my_epoch:{epoch}\r\n\
         cluster_stats_messages_sent:0\r\n\
         cluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n"
    );
    Ok(Reply::Verbatim(Bytes::from(text)))
}

/// What the control plane reads back to see whether a node holds the layout
/// it pushed (drift after a restart, a missed push).
fn gettopology(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    Ok(match ctx.state.cluster.view() {
        Some(v) => Reply::bulk(v.layout.topology.to_json()),
        None => Reply::Null,
    })
}

fn settopology(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let epoch = std::str::from_utf8(args[2])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Reply::err("ERR invalid topology epoch"))?;
    match ctx.state.cluster.set_topology(epoch, args[3]) {
        Ok(Some(role)) => {
            crate::cluster::apply_role(ctx.state, role, epoch);
            crate::cluster::redirect_blocked(ctx.state);
            Ok(Reply::Ok)
        }
        Ok(None) => Ok(Reply::Ok),
        Err(e @ ClusterError::Io { .. }) => {
            tracing::error!(error = %e, "topology not applied");
            Err(Reply::err(format!("ERR {e}")))
        }
        Err(e) => Err(Reply::err(format!("ERR {e}"))),
    }
}

fn migrate_err(e: MigrateError) -> Reply {
    if let MigrateError::Cluster(ClusterError::Io { .. }) = &e {
        tracing::error!(error = %e, "slot migration state not persisted");
    }
    Reply::err(format!("ERR {e}"))
}

fn slot_required(arg: Option<&&[u8]>) -> Result<u16, Reply> {
    let arg = arg.ok_or_else(|| Reply::err("ERR wrong number of arguments for 'cluster|migration' command"))?;
    slot_arg(arg)?.ok_or_else(|| Reply::err("ERR Invalid slot"))
}

/// `CLUSTER MIGRATION <IMPORT|START|RESUME|CANCEL|CLEAR|STATUS> ...`.
fn migration(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    enabled(ctx)?;
    let sub = args[2].to_ascii_lowercase();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(Reply::err(
                "ERR wrong number of arguments for 'cluster|migration' command",
            ))
        }
    };
    let state = ctx.state;
    match sub.as_slice() {
        b"import" => {
            arity(5)?;
            let slot = slot_required(args.get(3))?;
            migrate::import(state, slot, &String::from_utf8_lossy(args[4])).map_err(migrate_err)?;
            Ok(Reply::Ok)
        }
        b"start" => {
            let batch = match args.len() {
                5 => None,
                7 if args[5].eq_ignore_ascii_case(b"batch") => {
                    let n = parse_i64(args[6]).filter(|n| *n > 0);
                    Some(n.ok_or_else(|| Reply::err("ERR BATCH must be a positive integer"))? as usize)
                }
                _ => return Err(Reply::err("ERR syntax error")),
            };
            let slot = slot_required(args.get(3))?;
            migrate::start(state, slot, &String::from_utf8_lossy(args[4]), batch).map_err(migrate_err)?;
            Ok(Reply::Ok)
        }
        b"peer" => {
            arity(5)?;
            let slot = slot_required(args.get(3))?;
            migrate::repoint(state, slot, &String::from_utf8_lossy(args[4])).map_err(migrate_err)?;
            Ok(Reply::Ok)
        }
        b"resume" | b"cancel" | b"clear" => {
            arity(4)?;
            let slot = slot_required(args.get(3))?;
            match sub.as_slice() {
                b"resume" => migrate::resume(state, slot),
                b"cancel" => migrate::cancel(state, slot),
                _ => migrate::clear(state, slot).map(|_| ()),
            }
            .map_err(migrate_err)?;
            Ok(Reply::Ok)
        }
        b"status" => {
            let only = match args.len() {
                3 => None,
                4 => Some(slot_required(args.get(3))?),
                _ => return Err(Reply::err("ERR syntax error")),
            };
            Ok(migrate::status(state, only))
        }
        _ => Err(Reply::err(format!(
            "ERR unknown subcommand 'migration {}'. Try CLUSTER HELP.",
            String::from_utf8_lossy(args[2])
        ))),
    }
}

/// `CLUSTER RESTOREBATCH <slot> <source-id> <payload>`. The command logs
/// itself (inside [`migrate::restore_batch`], under the slot's lock).
fn restorebatch(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    // The log replayed at startup runs before cluster mode is enabled.
    if !(ctx.session.cluster_internal || ctx.session.repl.master) {
        enabled(ctx)?;
    }
    let slot = slot_arg(args[2])?.ok_or_else(|| Reply::err("ERR Invalid slot"))?;
    let (n, end) = migrate::restore_batch(ctx.state, ctx.session, slot, args[3], args[4]).map_err(migrate_err)?;
    ctx.session
        .handle
        .write_offset
        .fetch_max(end, std::sync::atomic::Ordering::Relaxed);
    ctx.propagate_nothing();
    // The source deletes the keys once this answers, so the answer waits for
    // this node's replicas too (bounded like WAIT; the reply becomes the
    // number of replicas that have the batch): a replica promoted after
    // this node dies then has every key the source let go of.
    let online = migrate::online_replicas(ctx.state);
    if online > 0 && !ctx.session.repl.master && !ctx.session.cluster_internal {
        ctx.session.repl.wait = Some(crate::repl::primary::WaitRequest {
            numreplicas: online,
            target: end,
            timeout: Some(migrate::REPLY_TIMEOUT / 2),
        });
    }
    Ok(Reply::Int(n as i64))
}
