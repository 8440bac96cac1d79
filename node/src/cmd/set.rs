//! Commands of the `set` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
