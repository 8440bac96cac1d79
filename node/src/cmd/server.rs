//! Server commands: INFO, CONFIG, CLIENT, COMMAND, DBSIZE, FLUSHDB/FLUSHALL,
//! TIME, MEMORY, SLOWLOG, LATENCY.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::CommandSpec;
use crate::resp::Reply;
use crate::session::Session;
use crate::state::{SlowEntry, State};

pub static COMMANDS: &[CommandSpec] = &[];

/// Client names may not contain spaces, newlines or special characters.
pub fn validate_client_name(name: &[u8]) -> Result<(), Reply> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Reply::err(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

/// Record a slow command.
pub fn slowlog_push(state: &State, session: &Session, args: &[Bytes], micros: u64) {
    let max = state.config.slowlog_max_len.load(Ordering::Relaxed);
    if max == 0 {
        return;
    }
    // As Redis: at most 32 arguments, each at most 128 bytes.
    let mut logged: Vec<Bytes> = args
        .iter()
        .take(32)
        .map(|a| {
            if a.len() > 128 {
                let mut v = a[..128].to_vec();
                v.extend_from_slice(format!("... ({} more bytes)", a.len() - 128).as_bytes());
                Bytes::from(v)
            } else {
                a.clone()
            }
        })
        .collect();
    if args.len() > 32 {
        logged[31] = Bytes::from(format!("... ({} more arguments)", args.len() - 31));
    }
    let entry = SlowEntry {
        id: state.slowlog.next_id.fetch_add(1, Ordering::Relaxed),
        time: crate::db::now_ms() / 1000,
        micros,
        args: logged,
        addr: session.handle.addr.to_string(),
        name: session
            .handle
            .name
            .lock()
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default(),
    };
    let mut log = state.slowlog.entries.lock();
    log.push_front(entry);
    while log.len() > max {
        log.pop_back();
    }
}
