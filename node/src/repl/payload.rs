//! The full-sync payload: a snapshot (the same format as `dump.fkv`,
//! [`crate::persist::snapshot`]) of a point-in-time cut
//! ([`crate::persist::cut`]), produced on a plain thread and handed to the
//! sender in chunks, so it streams into the replica's socket without
//! touching the primary's disk; and, on the replica, verification of the
//! whole payload before it replaces the dataset.
//!
//! The cut does not stop writes: it records the write-log offset of its
//! instant, and the sender continues the stream from that offset, so
//! snapshot + stream = the primary's dataset at every later offset.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::persist::cut;
use crate::persist::snapshot::{SnapshotError, SnapshotReader, SnapshotWriter};
use crate::state::State;

/// Chunk size handed to the socket writer.
const CHUNK: usize = 256 * 1024;
/// How long a full sync waits for a running cut (a BGSAVE) to finish: one
/// cut runs at a time.
const CUT_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    #[error("another snapshot cut kept running for {0:?}")]
    CutBusy(Duration),
    #[error("snapshot encoder stopped: {0}")]
    Encoder(String),
    #[error("payload is for offset {found}, the primary announced {announced}")]
    OffsetMismatch { found: u64, announced: u64 },
}

/// A cut being streamed: the write-log offset it corresponds to and the
/// encoded payload in order.
pub struct Cut {
    pub offset: u64,
    pub chunks: mpsc::Receiver<Result<Bytes, PayloadError>>,
}

/// `Write` into a channel of chunks, for the snapshot writer's thread.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, PayloadError>>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        // The receiver is gone when the replica disconnected: stop encoding.
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "replica went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Start a cut and its encoder thread.
pub async fn start_cut(state: &Arc<State>) -> Result<Cut, PayloadError> {
    let st = state.clone();
    let stream = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + CUT_WAIT;
        loop {
            match cut::start(&st) {
                Ok(s) => return Ok(s),
                Err(cut::CutBusy) if std::time::Instant::now() < deadline => {
                    cut::wait_idle(&st.db, Duration::from_secs(1));
                }
                Err(cut::CutBusy) => return Err(PayloadError::CutBusy(CUT_WAIT)),
            }
        }
    })
    .await
    .map_err(|e| PayloadError::Encoder(e.to_string()))??;
    let offset = stream.offset;
    let replid = state.repl.replid();
    let (tx, rx) = mpsc::channel(8);
    let err_tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("repl-full-sync".into())
        .spawn(move || {
            let mut stream = stream;
            let run = || -> Result<(), PayloadError> {
                let w = ChannelWriter {
                    buf: Vec::with_capacity(CHUNK),
                    tx,
                };
                let mut sw = SnapshotWriter::new(w, &replid, stream.offset, crate::db::now_ms(), &stream.functions)?;
                while let Some(b) = stream.blocking_next() {
                    sw.write_block(&b)?;
                }
                let (mut w, _) = sw.finish()?;
                w.flush().map_err(SnapshotError::Write)?;
                Ok(())
            };
            if let Err(e) = run() {
                let _ = err_tx.blocking_send(Err(e));
            }
        });
    spawned.map_err(|e| PayloadError::Encoder(e.to_string()))?;
    Ok(Cut { offset, chunks: rx })
}

/// Check a whole payload (every block checksum and the trailer) without
/// touching the dataset; it must be the cut the primary announced.
pub fn verify(payload: &[u8], announced: u64) -> Result<u64, PayloadError> {
    let mut reader = SnapshotReader::new(payload)?;
    let found = reader.header().offset;
    if found != announced {
        return Err(PayloadError::OffsetMismatch { found, announced });
    }
    while reader.next_block()?.is_some() {}
    Ok(reader.summary().keys)
}

/// Replace the dataset with the payload's (call [`verify`] first: this
/// flushes). Unlike a primary loading its own snapshot, keys past their TTL
/// are kept: a replica's keys expire when its primary says so.
pub fn load(state: &State, payload: &[u8]) -> Result<u64, PayloadError> {
    let db = &state.db;
    let now = crate::db::now_ms();
    db.lock_all(now).clear(false);
    let mut reader = SnapshotReader::new(payload)?;
    // The primary's function libraries replace the replica's, as its keys do.
    db.functions.replace(reader.functions().iter().cloned().collect());
    let mut n = 0;
    while let Some(block) = reader.next_block()? {
        let keys = block.decode()?;
        let mut ks = db.lock_slot(block.slot, now);
        let lru = ks.lru_clock();
        for d in keys {
            let key = d.key.clone();
            let e = d.into_entry(crate::db::evict::new_lru(lru, db));
            ks.insert_loaded(&key, e);
            n += 1;
        }
    }
    Ok(n)
}
