//! CLUSTER commands that need no topology: slot arithmetic and the keys of a
//! slot. The keyspace is always split into 16384 slots, so these answer the
//! same on a standalone node as in a cluster. (Topology commands come with
//! the operator-pushed topology.)

use bytes::Bytes;

use super::flags::*;
use super::parse::parse_i64;
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
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

pub static COMMANDS: &[CommandSpec] = &[CommandSpec {
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
}];

fn no_subcommand(_ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Err(Reply::err("ERR wrong number of arguments for 'cluster' command"))
}

fn keyslot(_ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(key_slot(&args[2]) as i64))
}

/// A slot number, or `None` when it is an integer out of range.
fn slot_arg(arg: &[u8]) -> Result<Option<u16>, Reply> {
    let n = super::parse::int(arg)?;
    Ok((0..SLOTS as i64).contains(&n).then_some(n as u16))
}

fn countkeysinslot(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let slot = slot_arg(&args[2])?.ok_or_else(|| Reply::err("ERR Invalid slot"))?;
    Ok(Reply::Int(ctx.ks.count_in_slot(slot) as i64))
}

fn getkeysinslot(ctx: &mut Ctx, args: &[Bytes]) -> CmdResult {
    let invalid = || Reply::err("ERR Invalid slot or number of keys");
    let slot = slot_arg(&args[2])?;
    let count = parse_i64(&args[3]).ok_or_else(|| Reply::err(super::parse::ERR_NOT_INT))?;
    let (Some(slot), Ok(count)) = (slot, usize::try_from(count)) else {
        return Err(invalid());
    };
    Ok(Reply::bulks(ctx.ks.keys_in_slot(slot, count)))
}

fn help(_ctx: &mut Ctx, _args: &[Bytes]) -> CmdResult {
    Ok(super::server::help_reply(
        "CLUSTER",
        &[
            "COUNTKEYSINSLOT <slot>",
            "    Return the number of keys in <slot>.",
            "GETKEYSINSLOT <slot> <count>",
            "    Return key names stored by current node in a slot.",
            "KEYSLOT <key>",
            "    Return the hash slot for <key>.",
        ],
    ))
}
