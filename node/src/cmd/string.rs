//! Commands of the `string` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
