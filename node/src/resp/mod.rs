//! The Redis serialization protocol: request parsing and reply encoding.

pub mod parse;
pub mod reply;

pub use parse::{Check, Limits, ProtocolError};
pub use reply::Reply;
