//! Append-only log commands: BGREWRITEAOF.

use super::flags::*;
use super::{CmdResult, CommandSpec, Ctx, KeySpec};
use crate::resp::Reply;

pub static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "bgrewriteaof",
    arity: 1,
    flags: ADMIN | NOSCRIPT,
    keys: KeySpec::None,
    group: "server",
    summary: "Asynchronously rewrites the append-only file to disk.",
    since: "1.0.0",
    complexity: "O(1)",
    handler: bgrewriteaof,
    subcommands: &[],
}];

/// Starts the rewrite on its own thread and answers at once, as Redis does;
/// `INFO persistence` tells when it is done and how it went.
fn bgrewriteaof(ctx: &mut Ctx, _args: &[&[u8]]) -> CmdResult {
    match crate::persist::rewrite::start(ctx.state) {
        Ok(()) => Ok(Reply::status("Background append only file rewriting started")),
        Err(e) => Err(Reply::err(format!("ERR {e}"))),
    }
}
