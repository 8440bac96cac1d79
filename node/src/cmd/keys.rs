//! Commands of the `keys` family.

use super::CommandSpec;

pub static COMMANDS: &[CommandSpec] = &[];
