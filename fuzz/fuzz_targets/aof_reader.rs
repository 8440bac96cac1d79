//! Fuzz the append-only log's segment reader and manifest parser with
//! arbitrary bytes.
//!
//! Startup trusts what `scan` reports to decide between replaying, refusing
//! and truncating, so besides "no panic" this asserts what startup relies
//! on: intact records lie inside the valid prefix, follow each other without
//! gaps, a torn tail covers exactly the bytes after it, and a clean
//! segment ends with its records or with zeros (zero-filled space). The first input
//! byte picks whether a valid file header is put in front (so the fuzzer
//! spends its time on records, not on the header checksum).
#![no_main]

use ferrokv_node::persist::manifest::Manifest;
use ferrokv_node::persist::segment::{self, FILE_HEADER_LEN, RECORD_HEADER_LEN, Tail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = Vec::new();
    if mode & 1 == 0 {
        file.extend_from_slice(&segment::encode_file_header(u64::from(mode)));
    }
    file.extend_from_slice(rest);
    if let Ok(scan) = segment::scan(&file) {
        assert!(scan.valid_len >= FILE_HEADER_LEN && scan.valid_len <= file.len());
        let mut pos = FILE_HEADER_LEN;
        let mut off = scan.start;
        for r in &scan.records {
            assert_eq!(r.pos, pos, "records are back to back");
            assert_eq!(r.offset, off, "offsets follow on");
            pos += RECORD_HEADER_LEN + r.len;
            off = r.end_offset();
            assert_eq!(r.payload(&file).len(), r.len);
        }
        assert_eq!(pos, scan.valid_len);
        match scan.tail {
            Tail::Clean => {
                // What follows the records is zero-filled space, nothing else.
                assert_eq!(scan.valid_len + scan.preallocated, file.len());
                assert!(file[scan.valid_len..].iter().all(|&b| b == 0));
            }
            Tail::Torn { at, bytes, .. } => {
                assert_eq!(at, scan.valid_len);
                assert_eq!(at + bytes, file.len());
            }
            Tail::Corrupt { at, .. } => assert_eq!(at, scan.valid_len),
        }
    }
    if let Ok(text) = std::str::from_utf8(rest)
        && let Ok(m) = Manifest::parse(text, "fuzz")
    {
        assert_eq!(Manifest::parse(&m.render(), "fuzz").ok(), Some(m));
    }
});
