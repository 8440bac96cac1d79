//! Fuzz the snapshot reader and the key decoder with arbitrary bytes.
//!
//! The first input byte picks the layer, because random bytes almost never
//! get past a block checksum and would leave the decoder unexplored:
//! - even: the bytes are a whole snapshot file, read with `load_into`;
//! - odd: the bytes are one block's data, wrapped in a valid file (header,
//!   block with a correct checksum, trailer) so they reach the key decoder,
//!   the stream/collection rebuilders and the keyspace insert.
//!
//! Either way: no panic, no hang, no allocation sized by the input's claims
//! (libFuzzer's `-rss_limit_mb` catches those), and a load that succeeds
//! leaves a keyspace whose digest can be computed.
#![no_main]

use bytes::Bytes;
use ferrokv_node::db::Db;
use ferrokv_node::persist::cut::Block;
use ferrokv_node::persist::snapshot::{SnapshotWriter, load_into};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let db = Db::new();
    let file: Vec<u8> = if mode & 1 == 0 {
        data.to_vec()
    } else {
        // The slot comes from the next two bytes so mismatched keys are tried too.
        let (slot, data) = match data {
            [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) % 16384, rest),
            _ => return,
        };
        let Ok(mut w) = SnapshotWriter::new(Vec::new(), "fuzz", 0, 0, &[]) else {
            return;
        };
        let block = Block {
            slot,
            keys: u32::from(mode >> 1),
            data: Bytes::copy_from_slice(data),
        };
        if w.write_block(&block).is_err() {
            return;
        }
        match w.finish() {
            Ok((v, _)) => v,
            Err(_) => return,
        }
    };
    if load_into(&db, &file[..]).is_ok() {
        let _ = ferrokv_node::persist::digest::of_db(&db, 0);
    }
});
