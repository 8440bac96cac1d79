//! The full-sync payload: a point-in-time cut of the primary's keyspace,
//! encoded on a blocking thread and handed to the sender in chunks, and on
//! the replica, verification of the whole payload before it replaces the
//! dataset.
//!
//! TEMPORARY encoding (until the snapshot module lands): string keys only,
//! taken under every partition lock at once.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::state::State;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("full sync payload is truncated")]
    Truncated,
    #[error("full sync payload has a bad magic number")]
    BadMagic,
    #[error("key of an unsupported type in full sync")]
    Unsupported,
    #[error("snapshot encoder stopped")]
    EncoderGone,
}

/// A cut being streamed: the write-log offset it corresponds to and the
/// encoded payload in order.
pub struct Cut {
    pub offset: u64,
    pub chunks: mpsc::Receiver<Result<Bytes, PayloadError>>,
}

const MAGIC: &[u8] = b"FKVSYNC0";

pub fn start_cut(state: &Arc<State>) -> Result<Cut, PayloadError> {
    let (tx, rx) = mpsc::channel(16);
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    let mut n = 0u64;
    let mut bad = false;
    let offset;
    {
        let mut ks = state.db.lock_all(crate::db::now_ms());
        offset = state.db.wlog.offset();
        ks.for_each_key(|e| match e.str_value() {
            Some(v) => {
                n += 1;
                out.extend_from_slice(&(e.key().len() as u32).to_le_bytes());
                out.extend_from_slice(e.key());
                out.extend_from_slice(&e.expire_at().unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => bad = true,
        });
    }
    if bad {
        return Err(PayloadError::Unsupported);
    }
    out.extend_from_slice(&u32::MAX.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    let _ = tx.try_send(Ok(Bytes::from(out)));
    Ok(Cut { offset, chunks: rx })
}

struct Rec<'a> {
    key: &'a [u8],
    expire: Option<u64>,
    val: &'a [u8],
}

fn parse(mut p: &[u8], mut f: impl FnMut(Rec)) -> Result<u64, PayloadError> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Result<&'a [u8], PayloadError> {
        if p.len() < n {
            return Err(PayloadError::Truncated);
        }
        let (a, b) = p.split_at(n);
        *p = b;
        Ok(a)
    }
    fn u32_(p: &mut &[u8]) -> Result<u32, PayloadError> {
        let b = take(p, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64_(p: &mut &[u8]) -> Result<u64, PayloadError> {
        let b = take(p, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    if take(&mut p, MAGIC.len())? != MAGIC {
        return Err(PayloadError::BadMagic);
    }
    let mut n = 0;
    loop {
        let kl = u32_(&mut p)?;
        if kl == u32::MAX {
            let total = u64_(&mut p)?;
            if total != n || !p.is_empty() {
                return Err(PayloadError::Truncated);
            }
            return Ok(n);
        }
        let key = take(&mut p, kl as usize)?;
        let exp = u64_(&mut p)?;
        let vl = u32_(&mut p)?;
        let val = take(&mut p, vl as usize)?;
        n += 1;
        f(Rec {
            key,
            expire: (exp != 0).then_some(exp),
            val,
        });
    }
}

/// Check a whole payload without touching the dataset.
pub fn verify(payload: &[u8]) -> Result<u64, PayloadError> {
    parse(payload, |_| {})
}

/// Replace the dataset with the payload's (verify first: this flushes).
pub fn load(state: &State, payload: &[u8]) -> Result<u64, PayloadError> {
    let mut ks = state.db.lock_all(crate::db::now_ms());
    ks.clear();
    parse(payload, |r| {
        let expiry = match r.expire {
            Some(t) => crate::db::Expiry::At(t),
            None => crate::db::Expiry::Clear,
        };
        ks.set_str(r.key, r.val, expiry);
    })
}
