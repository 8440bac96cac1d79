//! Pub/sub commands, including sharded pub/sub (SSUBSCRIBE/SPUBLISH).

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::flags::*;
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::pubsub::Subscriber;
use crate::resp::Reply;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $h:expr, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: "pubsub",
            summary: $summary,
            since: "2.0.0",
            complexity: "O(N)",
            handler: $h,
            subcommands: &[],
        }
    };
}

const SUB: u32 = PUBSUB | NOSCRIPT | LOADING | STALE | PUBSUB_CONTEXT;

pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "monitor",
        arity: 1,
        flags: ADMIN | NOSCRIPT | LOADING | STALE,
        keys: KeySpec::None,
        group: "server",
        summary: "Listens for all requests received by the server in real-time.",
        since: "1.0.0",
        complexity: "",
        handler: monitor,
        subcommands: &[],
    },
    spec!(
        "subscribe",
        -2,
        SUB,
        KeySpec::None,
        subscribe,
        "Listens for messages published to channels."
    ),
    spec!(
        "unsubscribe",
        -1,
        SUB,
        KeySpec::None,
        unsubscribe,
        "Stops listening to messages posted to channels."
    ),
    spec!(
        "psubscribe",
        -2,
        SUB,
        KeySpec::None,
        psubscribe,
        "Listens for messages published to channels that match one or more patterns."
    ),
    spec!(
        "punsubscribe",
        -1,
        SUB,
        KeySpec::None,
        punsubscribe,
        "Stops listening to messages published to channels that match one or more patterns."
    ),
    spec!(
        "ssubscribe",
        -2,
        SUB,
        KeySpec::None,
        ssubscribe,
        "Listens for messages published to shard channels."
    ),
    spec!(
        "sunsubscribe",
        -1,
        SUB,
        KeySpec::None,
        sunsubscribe,
        "Stops listening to messages posted to shard channels."
    ),
    spec!(
        "publish",
        3,
        PUBSUB | LOADING | STALE | FAST | MAY_REPLICATE,
        KeySpec::None,
        publish,
        "Posts a message to a channel."
    ),
    spec!(
        "spublish",
        3,
        PUBSUB | LOADING | STALE | FAST | MAY_REPLICATE,
        KeySpec::None,
        spublish,
        "Post a message to a shard channel"
    ),
    CommandSpec {
        name: "pubsub",
        arity: -2,
        flags: 0,
        keys: KeySpec::None,
        group: "pubsub",
        summary: "A container for Pub/Sub commands.",
        since: "2.8.0",
        complexity: "Depends on subcommand.",
        handler: help,
        subcommands: &[
            spec!(
                "channels",
                -2,
                PUBSUB | LOADING | STALE,
                KeySpec::None,
                channels,
                "Returns the active channels."
            ),
            spec!(
                "numsub",
                -2,
                PUBSUB | LOADING | STALE,
                KeySpec::None,
                numsub,
                "Returns a count of subscribers to channels."
            ),
            spec!(
                "numpat",
                2,
                PUBSUB | LOADING | STALE,
                KeySpec::None,
                numpat,
                "Returns a count of unique pattern subscriptions."
            ),
            spec!(
                "shardchannels",
                -2,
                PUBSUB | LOADING | STALE,
                KeySpec::None,
                shardchannels,
                "Returns the active shard channels."
            ),
            spec!(
                "shardnumsub",
                -2,
                PUBSUB | LOADING | STALE,
                KeySpec::None,
                shardnumsub,
                "Returns the count of subscribers of shard channels."
            ),
            spec!(
                "help",
                2,
                LOADING | STALE,
                KeySpec::None,
                help,
                "Returns helpful text about the different subcommands."
            ),
        ],
    },
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Channel,
    Pattern,
    Shard,
}

fn confirm(kind: &'static str, name: Option<Bytes>, count: usize) -> Reply {
    Reply::Push(vec![
        Reply::bulk_static(kind),
        name.map_or(Reply::Null, Reply::Bulk),
        Reply::Int(count as i64),
    ])
}

fn update_counts(ctx: &mut Ctx) {
    let h = &ctx.session.handle;
    h.subscriptions.store(ctx.session.channels.len(), Ordering::Relaxed);
    h.psubscriptions.store(ctx.session.patterns.len(), Ordering::Relaxed);
    h.ssubscriptions
        .store(ctx.session.shard_channels.len(), Ordering::Relaxed);
}

/// MONITOR: from now on this connection receives a line for every command
/// the node runs ([`crate::pubsub::monitor_line`], fed by
/// [`crate::cmd::feed_monitors`]); RESET or closing ends it. Through the
/// pub/sub queue, so a monitor that cannot keep up is disconnected rather
/// than slowing the node.
fn monitor(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    if !ctx.session.monitor {
        ctx.session.monitor = true;
        ctx.state.pubsub.add_monitor(Subscriber {
            client_id: ctx.session.id(),
            tx: ctx.session.push_tx.clone(),
        });
    }
    Ok(Reply::Ok)
}

fn do_subscribe(ctx: &mut Ctx, names: &[&[u8]], kind: Kind) -> CmdResult {
    let mut out = Vec::with_capacity(names.len());
    for &name in names {
        let name = Bytes::copy_from_slice(name);
        let sub = Subscriber {
            client_id: ctx.session.id(),
            tx: ctx.session.push_tx.clone(),
        };
        let set = match kind {
            Kind::Channel => &mut ctx.session.channels,
            Kind::Pattern => &mut ctx.session.patterns,
            Kind::Shard => &mut ctx.session.shard_channels,
        };
        if set.insert(name.clone()) {
            match kind {
                Kind::Channel => ctx.state.pubsub.subscribe(name.clone(), sub, false),
                Kind::Pattern => ctx.state.pubsub.psubscribe(name.clone(), sub),
                Kind::Shard => ctx.state.pubsub.subscribe(name.clone(), sub, true),
            };
        }
        let (label, count) = match kind {
            Kind::Channel => ("subscribe", ctx.session.channels.len() + ctx.session.patterns.len()),
            Kind::Pattern => ("psubscribe", ctx.session.channels.len() + ctx.session.patterns.len()),
            Kind::Shard => ("ssubscribe", ctx.session.shard_channels.len()),
        };
        out.push(confirm(label, Some(name.clone()), count));
    }
    update_counts(ctx);
    Ok(Reply::Multi(out))
}

fn do_unsubscribe(ctx: &mut Ctx, names: &[&[u8]], kind: Kind) -> Reply {
    let names: Vec<Bytes> = if names.is_empty() {
        let set = match kind {
            Kind::Channel => &ctx.session.channels,
            Kind::Pattern => &ctx.session.patterns,
            Kind::Shard => &ctx.session.shard_channels,
        };
        set.iter().cloned().collect()
    } else {
        crate::cmd::owned(names)
    };
    let label = match kind {
        Kind::Channel => "unsubscribe",
        Kind::Pattern => "punsubscribe",
        Kind::Shard => "sunsubscribe",
    };
    let id = ctx.session.id();
    let mut out = Vec::with_capacity(names.len().max(1));
    for name in &names {
        let removed = match kind {
            Kind::Channel => ctx.session.channels.remove(name),
            Kind::Pattern => ctx.session.patterns.remove(name),
            Kind::Shard => ctx.session.shard_channels.remove(name),
        };
        if removed {
            match kind {
                Kind::Channel => ctx.state.pubsub.unsubscribe(name, id, false),
                Kind::Pattern => ctx.state.pubsub.punsubscribe(name, id),
                Kind::Shard => ctx.state.pubsub.unsubscribe(name, id, true),
            };
        }
        let count = match kind {
            Kind::Shard => ctx.session.shard_channels.len(),
            _ => ctx.session.channels.len() + ctx.session.patterns.len(),
        };
        out.push(confirm(label, Some(name.clone()), count));
    }
    if out.is_empty() {
        let count = match kind {
            Kind::Shard => ctx.session.shard_channels.len(),
            _ => ctx.session.channels.len() + ctx.session.patterns.len(),
        };
        out.push(confirm(label, None, count));
    }
    update_counts(ctx);
    Reply::Multi(out)
}

/// Drop every subscription (RESET).
pub fn unsubscribe_everything(ctx: &mut Ctx) {
    ctx.state.pubsub.remove_client(ctx.session.id());
    ctx.session.monitor = false;
    ctx.session.channels.clear();
    ctx.session.patterns.clear();
    ctx.session.shard_channels.clear();
    update_counts(ctx);
}

fn subscribe(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    do_subscribe(ctx, &args[1..], Kind::Channel)
}
fn psubscribe(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    do_subscribe(ctx, &args[1..], Kind::Pattern)
}
fn ssubscribe(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    do_subscribe(ctx, &args[1..], Kind::Shard)
}
fn unsubscribe(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(do_unsubscribe(ctx, &args[1..], Kind::Channel))
}
fn punsubscribe(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(do_unsubscribe(ctx, &args[1..], Kind::Pattern))
}
fn sunsubscribe(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    Ok(do_unsubscribe(ctx, &args[1..], Kind::Shard))
}

fn publish(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    // Copied once here; every subscriber's message shares the copy.
    let (channel, message) = (Bytes::copy_from_slice(args[1]), Bytes::copy_from_slice(args[2]));
    Ok(Reply::Int(ctx.state.publish(&channel, &message) as i64))
}

fn spublish(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    let (channel, message) = (Bytes::copy_from_slice(args[1]), Bytes::copy_from_slice(args[2]));
    let (n, overflowed) = ctx.state.pubsub.spublish(&channel, &message);
    ctx.state.kill_overflowed(overflowed);
    Ok(Reply::Int(n as i64))
}

fn channels(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() > 3 {
        return Err(Reply::err(
            "ERR wrong number of arguments for 'pubsub|channels' command",
        ));
    }
    let list = ctx.state.pubsub.channels(args.get(2).map(|b| b.as_ref()), false);
    Ok(Reply::bulks(list))
}

fn shardchannels(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() > 3 {
        return Err(Reply::err(
            "ERR wrong number of arguments for 'pubsub|shardchannels' command",
        ));
    }
    let list = ctx.state.pubsub.channels(args.get(2).map(|b| b.as_ref()), true);
    Ok(Reply::bulks(list))
}

fn numsub(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    // Redis 7.0 answers a flat array even in RESP3.
    Ok(Reply::Array(
        args[2..]
            .iter()
            .flat_map(|c| [Reply::bulk(c), Reply::Int(ctx.state.pubsub.numsub(c, false) as i64)])
            .collect(),
    ))
}

fn shardnumsub(ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    // Redis 7.0 answers a flat array even in RESP3.
    Ok(Reply::Array(
        args[2..]
            .iter()
            .flat_map(|c| [Reply::bulk(c), Reply::Int(ctx.state.pubsub.numsub(c, true) as i64)])
            .collect(),
    ))
}

fn numpat(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    Ok(Reply::Int(ctx.state.pubsub.numpat() as i64))
}

fn help(_ctx: &mut Ctx, args: &[&[u8]]) -> CmdResult {
    if args.len() == 1 {
        return Err(Reply::err("ERR wrong number of arguments for 'pubsub' command"));
    }
    Ok(Reply::Array(
        [
            "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CHANNELS [<pattern>]",
            "    Return the currently active channels matching a <pattern> (default: '*').",
            "NUMPAT",
            "    Return number of subscriptions to patterns.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers for the specified channels, excluding",
            "    pattern subscriptions(default: no channels).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the currently active shard level channels matching a <pattern> (default: '*').",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers for the specified shard level channel(s)",
            "HELP",
            "    Prints this help.",
        ]
        .iter()
        .map(|s| Reply::status(*s))
        .collect(),
    ))
}
