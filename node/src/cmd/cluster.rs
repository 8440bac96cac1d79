//! Commands of the `cluster` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
