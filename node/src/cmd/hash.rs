//! Commands of the `hash` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
