//! Durability: what leaves memory for disk or for another node.
//!
//! - [`codec`]: the binary encoding of one key (type, value, TTL, encoding
//!   flags) shared by snapshots, full syncs and (later) slot migration.
//! - [`cut`]: a point-in-time view of the keyspace taken without stopping
//!   writes, streamed as per-slot blocks and tied to a write-log offset.
//! - [`snapshot`]: the snapshot file format (header, checksummed blocks,
//!   trailer) over any `Write`/`Read`, loading, and the save bookkeeping.
//! - [`save`]: SAVE/BGSAVE bookkeeping, the `--save` schedule, `INFO
//!   persistence` snapshot fields.
//! - [`digest`]: an order-independent hash of the dataset or of one slot.

pub mod codec;
pub mod cut;
pub mod digest;
pub mod save;
pub mod snapshot;
