//! Fuzz the RESP request parser with arbitrary bytes.
//!
//! The connection loop calls `check` on whatever a client sent and, on
//! `Complete`, `take`s exactly that many bytes off the buffer. This target does
//! the same until the buffer is drained, an error is returned, or more bytes are
//! needed, and asserts what the loop relies on: no panic, a complete request
//! consumes at least one byte and never more than is buffered, every argument
//! range lies inside the request, and `take` removes exactly `len` bytes.
//! The first input byte picks the limits (authenticated or not, small or
//! default bulk limit) so that those branches are explored too.
#![no_main]

use bytes::BytesMut;
use ferrokv_node::resp::parse::{Args, Check, Limits, check, take};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_bulk_len: if mode & 1 == 0 { 512 * 1024 * 1024 } else { 64 },
        unauthenticated: mode & 2 != 0,
    };
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match check(&buf, &limits) {
            Ok(Check::Complete(req)) => {
                assert!(req.len > 0, "a complete request must consume bytes");
                assert!(req.len <= before, "request longer than the buffer");
                let expected_args = match &req.args {
                    Args::Ranges(r) => {
                        for &(s, e) in r {
                            assert!(s <= e && e <= req.len, "argument range {s}..{e} outside request");
                        }
                        r.len()
                    }
                    Args::Owned(a) => a.len(),
                };
                let len = req.len;
                let args = take(&mut buf, req);
                assert_eq!(args.len(), expected_args);
                assert_eq!(buf.len(), before - len, "take must remove exactly the request");
            }
            Ok(Check::Incomplete) | Err(_) => break,
        }
        if buf.is_empty() {
            break;
        }
    }
});
