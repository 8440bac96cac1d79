//! Commands of the `list` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
