//! Commands of the `zset` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
