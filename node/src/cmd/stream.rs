//! Commands of the `stream` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
