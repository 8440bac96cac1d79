//! The snapshot file: a cut of the keyspace, checksummed block by block.
//!
//! ```text
//! file    := header functions block* trailer
//! header  := magic "FKVSNAP\0" | version:u32 | replid_len:u8 replid | offset:u64
//!            | created_ms:u64 | crc32c(header so far):u32
//! functions := 0xF1 | libs:u32 | len:u32 | lib*[len bytes] | crc32c(libs..lib*):u32
//!            (version 2 on; a library is name_len:u32 name code_len:u32 code)
//! block   := 0xB1 | slot:u16 | keys:u32 | len:u32 | data[len] | crc32c(slot..data):u32
//! trailer := 0xE0 | keys:u64 | blocks:u64 | crc32c(every byte before this field):u32
//! data    := entry*            (see [`crate::persist::codec`])
//! ```
//! All integers little-endian. `offset` is the write-log offset of the cut:
//! loading the snapshot and then applying the log from `offset` gives the
//! exact dataset, which is how the append-only log and replicas resume.
//!
//! Why this shape:
//! - **Per-block CRCs** say *where* damage is (`check` names the block and
//!   its byte offset) and let a reader reject a bad block before decoding it,
//!   so the key decoder only ever sees bytes that were written as they are.
//! - **The trailer** carries counts and a checksum of the whole file, so a
//!   file cut short at a block boundary, or with blocks dropped or reordered
//!   between files, is refused rather than loaded as a smaller dataset.
//! - **Streamable**: the writer needs only `Write` and never seeks (counts
//!   go in the trailer, not the header), so a replica's full sync sends the
//!   same bytes over a socket without touching the primary's disk; the
//!   reader needs only `Read`.
//! - **Versioned**: a reader refuses a newer `version` with a message saying
//!   so, and keeps reading every older one (a test loads a committed v1 file).
//!   Version 2 added the function libraries (Redis 7 functions are part of
//!   the dataset); a version 1 file has none.
//!
//! Files are written to a temporary name in the target directory, fsynced,
//! renamed over the old snapshot and the directory fsynced: a crash at any
//! point leaves either the old snapshot or the new one, never a mix.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::db::{Db, now_ms};
use crate::persist::codec::{CodecError, Decoded, decode_entry};
use crate::persist::cut::{self, Block, CutBusy, CutStream};
use crate::slot::{SLOTS, key_slot};

pub const MAGIC: &[u8; 8] = b"FKVSNAP\0";
pub const VERSION: u32 = 2;
const TAG_FUNCTIONS: u8 = 0xF1;
const TAG_BLOCK: u8 = 0xB1;
const TAG_TRAILER: u8 = 0xE0;
/// Largest block a reader accepts. Writers close blocks at about 1 MiB,
/// but one key larger than that (a 512 MB string) is one block.
pub const MAX_BLOCK: u32 = u32::MAX;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("failed to read snapshot: {0}")]
    Io(#[source] io::Error),
    #[error("failed to write snapshot: {0}")]
    Write(#[source] io::Error),
    #[error("not a ferrokv snapshot (bad magic {0:02x?})")]
    BadMagic([u8; 8]),
    #[error("snapshot format version {0} is newer than this build reads (up to {VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot header checksum mismatch")]
    HeaderChecksum,
    #[error("snapshot truncated at byte {at} while reading {what}")]
    Truncated { at: u64, what: &'static str },
    #[error("unexpected record tag {tag:#04x} at byte {at}")]
    BadTag { at: u64, tag: u8 },
    #[error("block {block} (slot {slot}) at byte {at}: checksum mismatch")]
    BlockChecksum { block: u64, slot: u16, at: u64 },
    #[error("block {block} at byte {at}: invalid slot {slot}")]
    BadSlot { block: u64, slot: u16, at: u64 },
    #[error("block {block} (slot {slot}) at byte {at}: {source}")]
    BadKey {
        block: u64,
        slot: u16,
        at: u64,
        #[source]
        source: CodecError,
    },
    #[error("block {block} (slot {slot}) at byte {at}: {msg}")]
    BadBlock {
        block: u64,
        slot: u16,
        at: u64,
        msg: String,
    },
    #[error("function libraries at byte {at}: {msg}")]
    BadFunctions { at: u64, msg: String },
    #[error("snapshot trailer at byte {at}: {msg}")]
    BadTrailer { at: u64, msg: String },
    #[error("data after the snapshot trailer at byte {0}")]
    TrailingData(u64),
    #[error("replication ID longer than 255 bytes")]
    ReplIdTooLong,
    #[error(transparent)]
    Busy(#[from] CutBusy),
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

/// What a snapshot says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub replid: String,
    pub offset: u64,
    pub created_ms: u64,
}

/// What a complete write or read saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub keys: u64,
    pub blocks: u64,
    pub bytes: u64,
    pub checksum: u32,
}

// ---- writing ----

/// Writes a snapshot to any `Write`; call [`SnapshotWriter::finish`] at the end.
pub struct SnapshotWriter<W: Write> {
    w: W,
    crc: u32,
    sum: Summary,
}

impl<W: Write> SnapshotWriter<W> {
    /// Start a snapshot: the header, then the function libraries.
    pub fn new(w: W, replid: &str, offset: u64, created_ms: u64, functions: &[(String, Bytes)]) -> Result<Self> {
        if replid.len() > 255 {
            return Err(SnapshotError::ReplIdTooLong);
        }
        let mut h = Vec::with_capacity(64);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.push(replid.len() as u8);
        h.extend_from_slice(replid.as_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        h.extend_from_slice(&created_ms.to_le_bytes());
        let hc = crc32c::crc32c(&h);
        h.extend_from_slice(&hc.to_le_bytes());
        let mut sw = SnapshotWriter {
            w,
            crc: 0,
            sum: Summary::default(),
        };
        sw.put(&h)?;
        let mut data = Vec::new();
        for (name, code) in functions {
            for part in [name.as_bytes(), &code[..]] {
                let len = u32::try_from(part.len())
                    .map_err(|_| SnapshotError::Write(io::Error::other("function library larger than 4 GiB")))?;
                data.extend_from_slice(&len.to_le_bytes());
                data.extend_from_slice(part);
            }
        }
        let len = u32::try_from(data.len())
            .map_err(|_| SnapshotError::Write(io::Error::other("function libraries larger than 4 GiB")))?;
        let mut head = [0u8; 9];
        head[0] = TAG_FUNCTIONS;
        head[1..5].copy_from_slice(&(functions.len() as u32).to_le_bytes());
        head[5..9].copy_from_slice(&len.to_le_bytes());
        let fc = crc32c::crc32c_append(crc32c::crc32c(&head[1..]), &data);
        sw.put(&head)?;
        sw.put(&data)?;
        sw.put(&fc.to_le_bytes())?;
        Ok(sw)
    }

    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.w.write_all(b).map_err(SnapshotError::Write)?;
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.sum.bytes += b.len() as u64;
        Ok(())
    }

    pub fn write_block(&mut self, b: &Block) -> Result<()> {
        let len = u32::try_from(b.data.len())
            .map_err(|_| SnapshotError::Write(io::Error::other("block larger than 4 GiB")))?;
        let mut head = [0u8; 11];
        head[0] = TAG_BLOCK;
        head[1..3].copy_from_slice(&b.slot.to_le_bytes());
        head[3..7].copy_from_slice(&b.keys.to_le_bytes());
        head[7..11].copy_from_slice(&len.to_le_bytes());
        let bc = crc32c::crc32c_append(crc32c::crc32c(&head[1..]), &b.data);
        self.put(&head)?;
        self.put(&b.data)?;
        self.put(&bc.to_le_bytes())?;
        self.sum.keys += b.keys as u64;
        self.sum.blocks += 1;
        Ok(())
    }

    /// Write the trailer and flush; returns the writer and what was written.
    pub fn finish(mut self) -> Result<(W, Summary)> {
        let mut t = [0u8; 17];
        t[0] = TAG_TRAILER;
        t[1..9].copy_from_slice(&self.sum.keys.to_le_bytes());
        t[9..17].copy_from_slice(&self.sum.blocks.to_le_bytes());
        self.put(&t)?;
        let total = self.crc;
        self.put(&total.to_le_bytes())?;
        self.w.flush().map_err(SnapshotError::Write)?;
        self.sum.checksum = total;
        Ok((self.w, self.sum))
    }

    /// The underlying writer (a full sync drains a `Vec` into a socket).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }
}

/// Write a whole cut. Blocks the thread until the cut completes: call it
/// from a plain thread, not an async task.
pub fn write_cut<W: Write>(w: W, mut cut: CutStream, replid: &str) -> Result<(W, Summary)> {
    let mut sw = SnapshotWriter::new(w, replid, cut.offset, now_ms(), &cut.functions)?;
    while let Some(b) = cut.blocking_next() {
        sw.write_block(&b)?;
    }
    sw.finish()
}

// ---- reading ----

/// Counts bytes and checksums everything read through it.
struct Tracked<R: Read> {
    r: R,
    pos: u64,
    crc: u32,
}

impl<R: Read> Tracked<R> {
    /// Read exactly `buf.len()` bytes; `Truncated` at end of input.
    fn exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(SnapshotError::Truncated {
                        at: self.pos + done as u64,
                        what,
                    });
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SnapshotError::Io(e)),
            }
        }
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Read `len` bytes into a vector that grows as data arrives, so a
    /// damaged length cannot make us allocate gigabytes up front.
    fn vec(&mut self, len: usize, what: &'static str) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(len.min(1 << 20));
        let start = self.pos;
        let n = (&mut self.r)
            .take(len as u64)
            .read_to_end(&mut v)
            .map_err(SnapshotError::Io)?;
        if n < len {
            return Err(SnapshotError::Truncated {
                at: start + n as u64,
                what,
            });
        }
        self.crc = crc32c::crc32c_append(self.crc, &v);
        self.pos += len as u64;
        Ok(v)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        self.exact(&mut a, what)?;
        Ok(a)
    }
}

/// One verified block, not yet decoded.
#[derive(Debug)]
pub struct RawBlock {
    /// 0-based index in the file.
    pub index: u64,
    /// Byte offset of the block's tag in the file.
    pub at: u64,
    pub slot: u16,
    pub keys: u32,
    pub data: Bytes,
}

impl RawBlock {
    /// Decode the block's keys, checking the count and that each key
    /// belongs to the block's slot.
    pub fn decode(&self) -> Result<Vec<Decoded>> {
        let mut input = &self.data[..];
        let mut out = Vec::with_capacity((self.keys as usize).min(self.data.len() / 4));
        while !input.is_empty() {
            let d = decode_entry(&mut input).map_err(|source| SnapshotError::BadKey {
                block: self.index,
                slot: self.slot,
                at: self.at,
                source,
            })?;
            if key_slot(&d.key) != self.slot {
                return Err(self.bad(format!(
                    "key of slot {} in a block of slot {}",
                    key_slot(&d.key),
                    self.slot
                )));
            }
            out.push(d);
        }
        if out.len() as u64 != self.keys as u64 {
            return Err(self.bad(format!("holds {} keys, its header says {}", out.len(), self.keys)));
        }
        Ok(out)
    }

    fn bad(&self, msg: String) -> SnapshotError {
        SnapshotError::BadBlock {
            block: self.index,
            slot: self.slot,
            at: self.at,
            msg,
        }
    }
}

/// Reads a snapshot from any `Read`: the header on construction, then
/// verified blocks until the trailer (which is checked too).
pub struct SnapshotReader<R: Read> {
    r: Tracked<R>,
    header: Header,
    functions: Vec<(String, Bytes)>,
    sum: Summary,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    pub fn new(r: R) -> Result<Self> {
        let mut r = Tracked { r, pos: 0, crc: 0 };
        let magic: [u8; 8] = match r.array("magic") {
            Ok(m) => m,
            Err(SnapshotError::Truncated { .. }) if r.pos == 0 => return Err(SnapshotError::BadMagic([0; 8])),
            Err(e) => return Err(e),
        };
        if &magic != MAGIC {
            return Err(SnapshotError::BadMagic(magic));
        }
        let version = u32::from_le_bytes(r.array("version")?);
        if version == 0 || version > VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let [len] = r.array::<1>("replication ID")?;
        let mut id = vec![0u8; len as usize];
        r.exact(&mut id, "replication ID")?;
        let offset = u64::from_le_bytes(r.array("offset")?);
        let created_ms = u64::from_le_bytes(r.array("creation time")?);
        let want = r.crc;
        let got = u32::from_le_bytes(r.array("header checksum")?);
        if got != want {
            return Err(SnapshotError::HeaderChecksum);
        }
        let functions = if version >= 2 {
            read_functions(&mut r)?
        } else {
            Vec::new()
        };
        Ok(SnapshotReader {
            r,
            functions,
            header: Header {
                version,
                replid: String::from_utf8_lossy(&id).into_owned(),
                offset,
                created_ms,
            },
            sum: Summary::default(),
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The function libraries (name, code); none before version 2.
    pub fn functions(&self) -> &[(String, Bytes)] {
        &self.functions
    }

    /// The next verified block, or `None` after a verified trailer.
    pub fn next_block(&mut self) -> Result<Option<RawBlock>> {
        if self.done {
            return Ok(None);
        }
        let at = self.r.pos;
        let [tag] = self.r.array::<1>("record tag")?;
        match tag {
            TAG_BLOCK => {
                let head: [u8; 10] = self.r.array("block header")?;
                let slot = u16::from_le_bytes([head[0], head[1]]);
                let keys = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
                let len = u32::from_le_bytes([head[6], head[7], head[8], head[9]]);
                let index = self.sum.blocks;
                let data = self.r.vec(len as usize, "block data")?;
                let want = crc32c::crc32c_append(crc32c::crc32c(&head), &data);
                let got = u32::from_le_bytes(self.r.array("block checksum")?);
                if got != want {
                    return Err(SnapshotError::BlockChecksum { block: index, slot, at });
                }
                if slot as usize >= SLOTS {
                    return Err(SnapshotError::BadSlot { block: index, slot, at });
                }
                self.sum.blocks += 1;
                self.sum.keys += keys as u64;
                Ok(Some(RawBlock {
                    index,
                    at,
                    slot,
                    keys,
                    data: Bytes::from(data),
                }))
            }
            TAG_TRAILER => {
                let keys = u64::from_le_bytes(self.r.array("trailer key count")?);
                let blocks = u64::from_le_bytes(self.r.array("trailer block count")?);
                let want = self.r.crc;
                let got = u32::from_le_bytes(self.r.array("trailer checksum")?);
                if got != want {
                    return Err(SnapshotError::BadTrailer {
                        at,
                        msg: "file checksum mismatch".into(),
                    });
                }
                if keys != self.sum.keys || blocks != self.sum.blocks {
                    return Err(SnapshotError::BadTrailer {
                        at,
                        msg: format!(
                            "says {keys} keys in {blocks} blocks, file holds {} keys in {} blocks",
                            self.sum.keys, self.sum.blocks
                        ),
                    });
                }
                let mut extra = [0u8; 1];
                loop {
                    match self.r.r.read(&mut extra) {
                        Ok(0) => break,
                        Ok(_) => return Err(SnapshotError::TrailingData(self.r.pos)),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(SnapshotError::Io(e)),
                    }
                }
                self.sum.checksum = got;
                self.sum.bytes = self.r.pos;
                self.done = true;
                Ok(None)
            }
            tag => Err(SnapshotError::BadTag { at, tag }),
        }
    }

    /// Totals so far (complete once `next_block` returned `None`).
    pub fn summary(&self) -> Summary {
        self.sum
    }
}

/// The function libraries record, verified before it is parsed.
fn read_functions<R: Read>(r: &mut Tracked<R>) -> Result<Vec<(String, Bytes)>> {
    let at = r.pos;
    let [tag] = r.array::<1>("function libraries")?;
    if tag != TAG_FUNCTIONS {
        return Err(SnapshotError::BadTag { at, tag });
    }
    let head: [u8; 8] = r.array("function libraries header")?;
    let libs = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let data = r.vec(len as usize, "function libraries")?;
    let want = crc32c::crc32c_append(crc32c::crc32c(&head), &data);
    let got = u32::from_le_bytes(r.array("function libraries checksum")?);
    let bad = |msg: &str| SnapshotError::BadFunctions { at, msg: msg.into() };
    if got != want {
        return Err(bad("checksum mismatch"));
    }
    let data = Bytes::from(data);
    let mut pos = 0usize;
    let mut part = || -> Result<Bytes> {
        let len = data
            .get(pos..pos + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("truncated length"))?;
        let end = pos + 4 + len;
        let bytes = data.get(pos + 4..end).ok_or_else(|| bad("truncated library"))?;
        let bytes = data.slice_ref(bytes);
        pos = end;
        Ok(bytes)
    };
    let mut out = Vec::new();
    for _ in 0..libs {
        let name = part()?;
        let code = part()?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| bad("library name is not UTF-8"))?;
        out.push((name, code));
    }
    if pos != data.len() {
        return Err(bad(&format!("{} bytes after {libs} libraries", data.len() - pos)));
    }
    Ok(out)
}

// ---- loading ----

/// What a load found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadInfo {
    pub offset: u64,
    pub replid: String,
    pub created_ms: u64,
    /// Keys in the file.
    pub keys: u64,
    /// Keys skipped because their TTL had passed.
    pub expired: u64,
}

/// Load a snapshot into `db` (normally empty). Keys whose TTL has passed
/// are skipped, as Redis does when a primary loads its RDB: they are gone
/// logically, and a later `DEL` for them in the log is a no-op. On error the
/// keyspace holds the blocks read so far; callers refuse to serve it.
pub fn load_into<R: Read>(db: &Db, r: R) -> Result<LoadInfo> {
    let mut reader = SnapshotReader::new(r)?;
    db.functions.replace(reader.functions().iter().cloned().collect());
    let now = now_ms();
    let mut expired = 0u64;
    while let Some(block) = reader.next_block()? {
        let keys = block.decode()?;
        let mut ks = db.lock_slot(block.slot, now);
        let lru = ks.lru_clock();
        for d in keys {
            if d.expire_at.is_some_and(|t| t <= now) {
                expired += 1;
                continue;
            }
            let key = d.key.clone();
            let e = d.into_entry(crate::db::evict::new_lru(lru, db));
            ks.insert_loaded(&key, e);
        }
    }
    let h = reader.header().clone();
    Ok(LoadInfo {
        offset: h.offset,
        replid: h.replid,
        created_ms: h.created_ms,
        keys: reader.summary().keys,
        expired,
    })
}

/// Load `path` into `db`; `Ok(None)` when there is no such file.
pub fn load_file(path: &Path, db: &Db) -> Result<Option<LoadInfo>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SnapshotError::Io(e)),
    };
    load_into(db, BufReader::with_capacity(1 << 20, f)).map(Some)
}

// ---- saving to a file ----

/// Cut the keyspace and write it to `path` durably: a temporary file in the
/// same directory, fsync, rename over `path`, fsync of the directory (so
/// the rename itself survives a power cut). Blocks until done: run it on a
/// plain thread.
pub fn save_file<T: AsRef<Db> + Send + Sync + 'static>(owner: &Arc<T>, path: &Path, replid: &str) -> Result<Summary> {
    let stream = cut::start(owner)?;
    save_stream(stream, path, replid)
}

/// [`save_file`] for a cut already started (BGSAVE starts it on the
/// command's thread so `CutBusy` is answered right away).
pub fn save_stream(stream: CutStream, path: &Path, replid: &str) -> Result<Summary> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("temp-{}-{name}", std::process::id()));
    let result = (|| {
        let f = File::create(&tmp).map_err(SnapshotError::Write)?;
        let (w, sum) = write_cut(BufWriter::with_capacity(1 << 20, f), stream, replid)?;
        let f = w.into_inner().map_err(|e| SnapshotError::Write(e.into_error()))?;
        f.sync_all().map_err(SnapshotError::Write)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(SnapshotError::Write)?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(SnapshotError::Write)?;
        Ok(sum)
    })();
    if result.is_err() {
        // Best effort: a leftover temp file only wastes space.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

// ---- offline check ----

/// What `ferrokv-node check` reports about a snapshot file.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub header: Header,
    pub summary: Summary,
    /// Keys per value type, in the order string, list, hash, set, zset, stream.
    pub types: [u64; 6],
    pub slots: usize,
    /// Function library names.
    pub functions: Vec<String>,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.header;
        writeln!(f, "snapshot format version {}", h.version)?;
        writeln!(f, "replication id {}", h.replid)?;
        writeln!(f, "log offset {}", h.offset)?;
        writeln!(f, "created at {} ms", h.created_ms)?;
        writeln!(
            f,
            "{} keys in {} blocks over {} slots, {} bytes",
            self.summary.keys, self.summary.blocks, self.slots, self.summary.bytes
        )?;
        let names = ["string", "list", "hash", "set", "zset", "stream"];
        let types: Vec<String> = names
            .iter()
            .zip(self.types)
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t}={n}"))
            .collect();
        writeln!(f, "types: {}", types.join(" "))?;
        if !self.functions.is_empty() {
            writeln!(
                f,
                "function libraries: {} ({})",
                self.functions.len(),
                self.functions.join(" ")
            )?;
        }
        write!(f, "checksums OK (file crc32c {:08x})", self.summary.checksum)
    }
}

/// Verify a snapshot offline: header, every block's checksum and keys, the
/// trailer. The error names the block and byte offset where it breaks.
pub fn check(path: &Path) -> Result<CheckReport> {
    let f = File::open(path).map_err(SnapshotError::Io)?;
    check_reader(BufReader::with_capacity(1 << 20, f))
}

pub fn check_reader<R: Read>(r: R) -> Result<CheckReport> {
    let mut reader = SnapshotReader::new(r)?;
    let mut types = [0u64; 6];
    let mut slots = vec![false; SLOTS];
    while let Some(block) = reader.next_block()? {
        slots[block.slot as usize] = true;
        for d in block.decode()? {
            let i = match d.value {
                crate::db::Value::Str(_) => 0,
                crate::db::Value::List(_) => 1,
                crate::db::Value::Hash(_) => 2,
                crate::db::Value::Set(_) => 3,
                crate::db::Value::ZSet(_) => 4,
                crate::db::Value::Stream(_) => 5,
            };
            types[i] += 1;
        }
    }
    Ok(CheckReport {
        header: reader.header().clone(),
        summary: reader.summary(),
        types,
        slots: slots.iter().filter(|s| **s).count(),
        functions: reader.functions().iter().map(|(n, _)| n.clone()).collect(),
    })
}

/// Does this file start like a snapshot? (`check` dispatches on it.)
pub fn is_snapshot(path: &Path) -> bool {
    let mut m = [0u8; 8];
    File::open(path).and_then(|mut f| f.read_exact(&mut m)).is_ok() && &m == MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Expiry;

    fn sample_db(n: usize) -> Arc<Db> {
        let db = Arc::new(Db::new());
        let mut ks = db.lock_all(0);
        for i in 0..n {
            ks.set_str(
                format!("key:{i}").as_bytes(),
                format!("value-{i}").as_bytes(),
                Expiry::Clear,
            );
        }
        ks.set_str(b"ttl", b"v", Expiry::At(now_ms() + 3_600_000));
        ks.set_str(b"gone", b"v", Expiry::At(1));
        drop(ks);
        db
    }

    fn snapshot_bytes(db: &Arc<Db>) -> Vec<u8> {
        let stream = cut::start(db).expect("no cut running");
        let (v, sum) = write_cut(Vec::new(), stream, "abc").expect("written");
        assert_eq!(sum.bytes, v.len() as u64);
        v
    }

    #[test]
    fn write_then_load_gives_the_same_keys() {
        let db = sample_db(3000);
        db.wlog.append(&[[Bytes::from_static(b"PING")]], false);
        let bytes = snapshot_bytes(&db);
        let fresh = Db::new();
        let info = load_into(&fresh, &bytes[..]).expect("loads");
        assert_eq!(info.keys, 3002);
        assert_eq!(info.expired, 1);
        assert_eq!(info.offset, db.wlog.offset());
        assert_eq!(info.replid, "abc");
        assert_eq!(fresh.key_counts(), (3001, 1));
        let report = check_reader(&bytes[..]).expect("checks");
        assert_eq!(report.summary.keys, 3002);
        assert_eq!(report.types[0], 3002);
    }

    #[test]
    fn function_libraries_travel_with_the_keys() {
        let db = sample_db(10);
        let mut libs = std::collections::BTreeMap::new();
        libs.insert("a".to_string(), Bytes::from_static(b"#!lua name=a\nreturn 1"));
        libs.insert("b".to_string(), Bytes::from_static(b"#!lua name=b\n"));
        db.functions.replace(libs.clone());
        let bytes = snapshot_bytes(&db);
        let fresh = Db::new();
        fresh.functions.replace(std::collections::BTreeMap::from([(
            "stale".to_string(),
            Bytes::from_static(b"x"),
        )]));
        load_into(&fresh, &bytes[..]).expect("loads");
        assert_eq!(*fresh.functions.get().codes, libs);
        assert_eq!(check_reader(&bytes[..]).expect("checks").functions, ["a", "b"]);
        // The record sits right after the header; a flipped byte in it is
        // named, not loaded.
        let header = 8 + 4 + 1 + 3 + 8 + 8 + 4;
        let mut bad = bytes.clone();
        bad[header + 12] ^= 0x01;
        let e = load_into(&Db::new(), &bad[..]).expect_err("corrupt libraries");
        assert!(matches!(e, SnapshotError::BadFunctions { .. }), "{e}");
        // A version 1 file has none: loading it leaves none.
        let v1 = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/snapshot-v1.fkv")).expect("v1 file");
        load_into(&fresh, &v1[..]).expect("v1 loads");
        assert!(fresh.functions.get().codes.is_empty());
    }

    #[test]
    fn damage_is_reported_where_it_is() {
        let db = sample_db(20_000);
        let bytes = snapshot_bytes(&db);
        // Header: bad magic, future version, header crc.
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(matches!(
            load_into(&Db::new(), &bad[..]),
            Err(SnapshotError::BadMagic(_))
        ));
        let mut bad = bytes.clone();
        bad[8..12].copy_from_slice(&7u32.to_le_bytes());
        let e = load_into(&Db::new(), &bad[..]).expect_err("future version");
        assert!(matches!(e, SnapshotError::UnsupportedVersion(7)), "{e}");
        // A byte inside the data of some block.
        let mut bad = bytes.clone();
        let mid = bytes.len() / 2;
        bad[mid] ^= 0x40;
        let e = load_into(&Db::new(), &bad[..]).expect_err("corrupt block");
        assert!(matches!(e, SnapshotError::BlockChecksum { .. }), "{e}");
        assert!(e.to_string().contains("block "), "{e}");
        // Cut short anywhere.
        for len in [0, 5, 20, 40, mid, bytes.len() - 5, bytes.len() - 1] {
            let e = load_into(&Db::new(), &bytes[..len]).expect_err("truncated");
            assert!(
                matches!(e, SnapshotError::Truncated { .. } | SnapshotError::BadMagic(_)),
                "{len}: {e}"
            );
        }
        // Cut at a block boundary and given a forged trailer: the counts or the checksum refuse it.
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(
            load_into(&Db::new(), &extra[..]),
            Err(SnapshotError::TrailingData(_))
        ));
    }
}
