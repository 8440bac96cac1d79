//! One append-only log segment on disk: its format, a writer and a verifying
//! reader.
//!
//! ```text
//! file header (20 bytes, written whole before the file gets its name):
//!   "FKVLOG" | version u16 LE | start offset u64 LE | crc32c u32 LE (of the 16 bytes before)
//! records, back to back:
//!   magic u32 LE | payload len u32 LE | offset u64 LE | crc32c u32 LE | payload
//!   crc32c covers magic, len, offset and the payload
//! ```
//!
//! A payload is a chunk of the write log (RESP commands) exactly as the
//! writer thread took it, so it always holds whole commands; `offset` is the
//! write-log offset of its first byte. Each record's offset must equal the
//! previous record's offset + length: a gap or an overlap is corruption even
//! when every checksum is right (a lost or duplicated block).
//!
//! Why a checksum per record and not per file: a crash leaves a file whose
//! last record may be half written. Per-record checksums tell exactly which
//! prefix is intact, so the reader can tell a *torn tail* (the crash case:
//! nothing valid after the damage) from *corruption in the middle* (valid
//! records after damaged bytes: a disk or copy error that dropping bytes would
//! turn into silent data loss).
//!
//! The header gets to its final name only after it is fsynced (temp file +
//! rename + directory fsync), so a segment file that exists always has a
//! complete header and an empty segment is a valid one.
//!
//! # Zero-filled space ahead of the open segment
//!
//! Under `appendfsync always` the fsync is the cost every client waits for.
//! An `fdatasync` after an append that grew the file must also commit the
//! new file size (on ext4 a journal commit); one after overwriting blocks the
//! file already has need only write those blocks. Measured on this project's
//! machine (ext4 on virtio, 4 KB writes): 167–197 µs per append+fdatasync,
//! 110–129 µs per overwrite+fdatasync; with 50 unpipelined clients under
//! `always`, 51–69k writes/s instead of 41–53k (hand-run, four alternating
//! rounds; Redis 51–62k). So while the policy is `always`, a
//! helper thread keeps the open segment written with zeros (and fsynced) up
//! to [`PREFILL_AHEAD`] bytes past its last record, and records overwrite
//! those zeros. (PostgreSQL zero-fills its WAL segments for the same reason.
//! `fallocate` does not do it: writing into an allocated-but-unwritten extent
//! still commits metadata.) Under `everysec` and `no` the fsync is rare and
//! doubling the bytes written would cost more than it saves: no zero-fill.
//!
//! A file may therefore end in zeros after its last record: [`scan`] reads
//! such a tail as the clean end of the log (`preallocated` bytes), since a
//! record never starts with a zero byte (its magic). A record torn by a crash
//! inside the zeros still fails its checksum and is a torn tail as before.
//! A segment is cut back to its last record when it is closed (rotation,
//! shutdown), so closed segments hold no zeros and only a crash leaves a zero
//! tail, on the last segment, which the writer then continues to overwrite.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

pub const FILE_MAGIC: &[u8; 6] = b"FKVLOG";
pub const VERSION: u16 = 1;
pub const FILE_HEADER_LEN: usize = 20;
pub const RECORD_MAGIC: u32 = 0x4C52_4B46; // "FKRL" little endian
pub const RECORD_HEADER_LEN: usize = 20;
/// Largest payload a reader accepts: bigger lengths are damage, not data
/// (the writer never takes more than this from the write log at once).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// File name of the segment whose first record starts at `start` (zero padded
/// so that names sort like offsets).
pub fn file_name(start: u64) -> String {
    format!("seg-{start:020}.log")
}

/// The start offset a segment file name encodes.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("seg-")?.strip_suffix(".log")?.parse().ok()
}

pub fn encode_file_header(start: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..6].copy_from_slice(FILE_MAGIC);
    h[6..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&start.to_le_bytes());
    let crc = crc32c::crc32c(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Append one record (header + payload) to `out`.
pub fn encode_record(out: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h[..16]), payload);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// A record found intact by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Byte position of the record header in the file.
    pub pos: usize,
    /// Write-log offset of the payload's first byte.
    pub offset: u64,
    pub len: usize,
}

impl Record {
    pub fn payload<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        let s = self.pos + RECORD_HEADER_LEN;
        &file[s..s + self.len]
    }
    pub fn end_offset(&self) -> u64 {
        self.offset + self.len as u64
    }
}

/// How a segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to an intact record.
    Clean,
    /// The bytes from `at` to the end are an unfinished record (or garbage
    /// with nothing valid after it): what a crash during a write leaves.
    Torn { at: usize, bytes: usize, reason: String },
    /// Damage at `at` with intact data after it, or an offset that does not
    /// follow on: never repaired automatically.
    Corrupt { at: usize, reason: String },
}

/// What [`scan`] found in one segment file.
#[derive(Debug, Clone)]
pub struct Scan {
    pub start: u64,
    pub records: Vec<Record>,
    pub tail: Tail,
    /// Bytes that hold the header and the intact records.
    pub valid_len: usize,
    /// Zero bytes after the last record of a clean segment (space the writer
    /// had zero-filled ahead of itself: see the module doc).
    pub preallocated: usize,
}

impl Scan {
    /// Write-log offset after the last intact record.
    pub fn end_offset(&self) -> u64 {
        self.records.last().map(Record::end_offset).unwrap_or(self.start)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("not a ferrokv log segment (bad magic)")]
    BadMagic,
    #[error("log segment version {0} is not supported (this build reads version {VERSION})")]
    Version(u16),
    #[error("log segment header is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("log segment header checksum mismatch")]
    Checksum,
}

pub fn is_segment(data: &[u8]) -> bool {
    data.starts_with(FILE_MAGIC)
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parse the file header; returns the segment's start offset.
pub fn parse_file_header(data: &[u8]) -> Result<u64, HeaderError> {
    if data.len() < FILE_MAGIC.len() || !is_segment(data) {
        if data.len() < FILE_MAGIC.len() && FILE_MAGIC.starts_with(data) {
            return Err(HeaderError::Truncated(data.len()));
        }
        return Err(HeaderError::BadMagic);
    }
    if data.len() < FILE_HEADER_LEN {
        return Err(HeaderError::Truncated(data.len()));
    }
    let version = u16::from_le_bytes([data[6], data[7]]);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    let crc = read_u32(data, 16).ok_or(HeaderError::Truncated(data.len()))?;
    if crc32c::crc32c(&data[..16]) != crc {
        return Err(HeaderError::Checksum);
    }
    read_u64(data, 8).ok_or(HeaderError::Truncated(data.len()))
}

/// The record at `pos` if it is intact: `Ok(record)`, else why not.
fn record_at(data: &[u8], pos: usize) -> Result<Record, String> {
    let rest = data.len() - pos;
    if rest < RECORD_HEADER_LEN {
        return Err(format!(
            "incomplete record header ({rest} of {RECORD_HEADER_LEN} bytes)"
        ));
    }
    let magic = read_u32(data, pos).unwrap_or(0);
    if magic != RECORD_MAGIC {
        return Err(format!("bad record magic {magic:#010x}"));
    }
    let len = read_u32(data, pos + 4).unwrap_or(0) as usize;
    let offset = read_u64(data, pos + 8).unwrap_or(0);
    let crc = read_u32(data, pos + 16).unwrap_or(0);
    if len > MAX_PAYLOAD {
        return Err(format!("record length {len} is implausible"));
    }
    if rest - RECORD_HEADER_LEN < len {
        return Err(format!(
            "incomplete record payload ({} of {len} bytes)",
            rest - RECORD_HEADER_LEN
        ));
    }
    let body = &data[pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + len];
    if crc32c::crc32c_append(crc32c::crc32c(&data[pos..pos + 16]), body) != crc {
        return Err("record checksum mismatch".into());
    }
    Ok(Record { pos, offset, len })
}

/// Is there an intact record anywhere after `from`? (Tells damage followed by
/// data from a torn tail.)
fn intact_record_after(data: &[u8], from: usize) -> Option<usize> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut i = from;
    while i + RECORD_HEADER_LEN <= data.len() {
        if data[i..i + 4] == magic && record_at(data, i).is_ok() {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Verify a whole segment file held in memory. Never panics on any input.
pub fn scan(data: &[u8]) -> Result<Scan, HeaderError> {
    let start = parse_file_header(data)?;
    let mut records = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    let mut expect = start;
    let mut preallocated = 0;
    let tail = loop {
        if data[pos..].iter().all(|&b| b == 0) {
            preallocated = data.len() - pos;
            break Tail::Clean;
        }
        match record_at(data, pos) {
            Ok(r) if r.offset != expect => {
                break Tail::Corrupt {
                    at: pos,
                    reason: format!("record at offset {} where offset {expect} was expected", r.offset),
                };
            }
            Ok(r) => {
                expect = r.end_offset();
                pos += RECORD_HEADER_LEN + r.len;
                records.push(r);
            }
            Err(reason) => match intact_record_after(data, pos + 1) {
                Some(next) => {
                    break Tail::Corrupt {
                        at: pos,
                        reason: format!("{reason}, followed by an intact record at byte {next}"),
                    };
                }
                None => {
                    break Tail::Torn {
                        at: pos,
                        bytes: data.len() - pos,
                        reason,
                    };
                }
            },
        }
    };
    Ok(Scan {
        start,
        records,
        valid_len: pos,
        preallocated,
        tail,
    })
}

/// Fsync a directory so that a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `data` to `path` atomically: temp file, fsync, rename, directory fsync.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// How far past the last record the zero-fill helper keeps the open
/// segment zeroed.
pub const PREFILL_AHEAD: u64 = 2 << 20;
/// One zero write, followed by an fdatasync of its own: ~1–2 ms of disk
/// time on the helper thread, never on the writer's.
const PREFILL_CHUNK: usize = 256 << 10;
static ZEROS: [u8; PREFILL_CHUNK] = [0; PREFILL_CHUNK];

/// The segment being appended to.
pub struct SegmentWriter {
    file: File,
    pub path: PathBuf,
    pub start: u64,
    /// Write-log offset after the last record written.
    pub end: u64,
    /// File length after the last complete record write.
    pub len: u64,
    pub created: Instant,
    buf: Vec<u8>,
    prefill: Arc<Prefill>,
    prefill_thread: Option<std::thread::JoinHandle<()>>,
}

/// Shared by a [`SegmentWriter`] and its zero-fill helper thread.
struct Prefill {
    space: Mutex<Space>,
    cv: Condvar,
}

struct Space {
    /// Where the next record goes (the writer's `len`).
    written: u64,
    /// The file's length: bytes from `written` to here are zeros.
    zeroed: u64,
    /// Zero-fill no further than this (the rotation size).
    limit: u64,
    /// Zero-fill at all (the policy is `always`).
    enabled: bool,
    closed: bool,
    /// An fdatasync of the helper's failed: the writer reports it as its
    /// own failure (it may have dropped the records' pages too; see the
    /// AOF's poisoning).
    failed: Option<std::io::Error>,
}

impl Prefill {
    /// The helper thread: zero-fill in chunks while the space ahead of the
    /// writer is short. The zero write happens under the lock, so it never
    /// overlaps a record the writer is writing; its fdatasync happens
    /// outside it, on a file handle of its own (so that an fsync error is
    /// seen by the writer's handle too rather than consumed here).
    fn run(&self, file: File) {
        loop {
            let at = {
                let mut sp = self.space.lock();
                loop {
                    if sp.closed || sp.failed.is_some() {
                        return;
                    }
                    if sp.enabled && sp.zeroed < sp.limit && sp.zeroed - sp.written < PREFILL_AHEAD {
                        break;
                    }
                    self.cv.wait(&mut sp);
                }
                let at = sp.zeroed;
                let n = PREFILL_CHUNK.min((sp.limit - at) as usize);
                if let Err(e) = file.write_all_at(&ZEROS[..n], at) {
                    // A full disk, typically: not a failure of the log. Cut
                    // back what may have been written and stop; the writer
                    // appends past `zeroed` as if there were no zero-fill
                    // (and meets the full disk itself, if it is full).
                    tracing::info!(error = %e, "stopped zero-filling ahead of the log");
                    let _ = file.set_len(at);
                    return;
                }
                sp.zeroed = at + n as u64;
                at
            };
            if let Err(e) = file.sync_data() {
                tracing::error!(error = %e, at, "fdatasync of the log's zero-filled space failed");
                self.space.lock().failed = Some(e);
                return;
            }
        }
    }
}

impl SegmentWriter {
    /// Create a new, empty segment starting at `start` (atomically: see the
    /// module doc).
    pub fn create(dir: &Path, start: u64) -> std::io::Result<SegmentWriter> {
        let path = dir.join(file_name(start));
        write_atomic(&path, &encode_file_header(start))?;
        Self::reopen(&path, start, start, FILE_HEADER_LEN as u64)
    }

    /// Continue an existing segment that [`scan`] found clean up to
    /// `valid_len` bytes ending at offset `end` (a repaired tail was already
    /// truncated away; what follows `len` is zeros).
    pub fn reopen(path: &Path, start: u64, end: u64, len: u64) -> std::io::Result<SegmentWriter> {
        let file = OpenOptions::new().write(true).open(path)?;
        let zeroed = file.metadata()?.len().max(len);
        let helper_file = OpenOptions::new().write(true).open(path)?;
        let prefill = Arc::new(Prefill {
            space: Mutex::new(Space {
                written: len,
                zeroed,
                limit: 0,
                enabled: false,
                closed: false,
                failed: None,
            }),
            cv: Condvar::new(),
        });
        let p = prefill.clone();
        let prefill_thread = std::thread::Builder::new()
            .name("aof-prefill".into())
            .spawn(move || p.run(helper_file))?;
        Ok(SegmentWriter {
            file,
            path: path.to_path_buf(),
            start,
            end,
            len,
            created: Instant::now(),
            buf: Vec::new(),
            prefill,
            prefill_thread: Some(prefill_thread),
        })
    }

    /// Zero-fill ahead of the end, up to `limit` bytes of file (the
    /// rotation size), or not (`None`; on for `appendfsync always` only).
    pub fn set_prefill(&mut self, limit: Option<u64>) {
        let mut sp = self.prefill.space.lock();
        let (enabled, limit) = (limit.is_some(), limit.unwrap_or(0));
        if (sp.enabled, sp.limit) != (enabled, limit) {
            (sp.enabled, sp.limit) = (enabled, limit);
            self.prefill.cv.notify_one();
        }
    }

    /// Bytes of zeros after the last record.
    pub fn preallocated(&self) -> u64 {
        let sp = self.prefill.space.lock();
        sp.zeroed.saturating_sub(sp.written)
    }

    /// Write one record. On error the file may hold part of it; the caller
    /// truncates back to `self.len` (see [`SegmentWriter::truncate_partial`]).
    pub fn append(&mut self, offset: u64, payload: &[u8]) -> std::io::Result<()> {
        self.buf.clear();
        encode_record(&mut self.buf, offset, payload);
        {
            let mut sp = self.prefill.space.lock();
            if let Some(e) = sp.failed.take() {
                // Reported once; the helper has stopped.
                return Err(std::io::Error::new(e.kind(), format!("zero-filling the log: {e}")));
            }
            self.file.write_all_at(&self.buf, self.len)?;
            sp.written = self.len + self.buf.len() as u64;
            sp.zeroed = sp.zeroed.max(sp.written);
            if sp.enabled && sp.zeroed - sp.written < PREFILL_AHEAD / 2 {
                self.prefill.cv.notify_one();
            }
        }
        self.len += self.buf.len() as u64;
        self.end = offset + payload.len() as u64;
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// fdatasync: the file's data and size are on stable storage.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// Cut off a partially written record so that the file ends on a record
    /// boundary again (best effort after a failed write). Zero-filling stops
    /// for this segment.
    pub fn truncate_partial(&mut self) -> std::io::Result<()> {
        self.stop_prefill();
        self.file.set_len(self.len)?;
        self.file.sync_data()
    }

    /// Close the segment: cut the zero-filled space off and fsync, so that a
    /// closed segment ends with its last record (and a crash after this
    /// cannot leave it with a zero tail).
    pub fn close(&mut self) -> std::io::Result<()> {
        self.stop_prefill();
        if self.file.metadata()?.len() != self.len {
            self.file.set_len(self.len)?;
        }
        self.file.sync_all()
    }

    fn stop_prefill(&mut self) {
        self.prefill.space.lock().closed = true;
        self.prefill.cv.notify_one();
        if let Some(t) = self.prefill_thread.take() {
            let _ = t.join();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        self.stop_prefill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(start: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = encode_file_header(start).to_vec();
        let mut off = start;
        for p in payloads {
            encode_record(&mut out, off, p);
            off += p.len() as u64;
        }
        out
    }

    #[test]
    fn clean_segment_scans_whole() {
        let data = segment(100, &[b"abc", b"defg"]);
        let s = scan(&data).unwrap();
        assert_eq!(s.start, 100);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.end_offset(), 107);
        assert_eq!(s.records[1].payload(&data), b"defg");
        assert_eq!(s.valid_len, data.len());
    }

    #[test]
    fn every_truncation_is_a_torn_tail() {
        let data = segment(0, &[b"hello", b"world!"]);
        let first_end = FILE_HEADER_LEN + RECORD_HEADER_LEN + 5;
        for cut in FILE_HEADER_LEN + 1..data.len() {
            let s = scan(&data[..cut]).unwrap();
            match s.tail {
                Tail::Torn { at, bytes, .. } => {
                    assert_eq!(at + bytes, cut);
                    assert!(at == FILE_HEADER_LEN || at == first_end, "cut {cut}: at {at}");
                }
                Tail::Clean => assert_eq!(cut, first_end),
                t => panic!("cut {cut}: {t:?}"),
            }
        }
    }

    #[test]
    fn damage_before_intact_data_is_corruption() {
        let mut data = segment(0, &[b"hello", b"world!"]);
        data[FILE_HEADER_LEN + RECORD_HEADER_LEN + 1] ^= 0xff;
        match scan(&data).unwrap().tail {
            Tail::Corrupt { at, .. } => assert_eq!(at, FILE_HEADER_LEN),
            t => panic!("{t:?}"),
        }
        // Damage in the last record only: a torn tail.
        let mut data = segment(0, &[b"hello", b"world!"]);
        let n = data.len();
        data[n - 1] ^= 0xff;
        assert!(matches!(scan(&data).unwrap().tail, Tail::Torn { .. }));
    }

    #[test]
    fn zeros_after_the_last_record_are_the_clean_end() {
        let mut data = segment(0, &[b"hello"]);
        let valid = data.len();
        data.extend_from_slice(&[0u8; 64]);
        let s = scan(&data).unwrap();
        assert_eq!(
            (&s.tail, s.valid_len, s.preallocated, s.end_offset()),
            (&Tail::Clean, valid, 64, 5)
        );
        // A record torn inside the zeros (its header written, its payload
        // not): a torn tail, as without zero-fill.
        let mut torn = segment(0, &[b"hello"]);
        let mut rec = Vec::new();
        encode_record(&mut rec, 5, b"world!");
        torn.extend_from_slice(&rec[..RECORD_HEADER_LEN + 2]);
        torn.extend_from_slice(&[0u8; 64]);
        assert!(matches!(scan(&torn).unwrap().tail, Tail::Torn { at, .. } if at == valid));
        // Zeros where a record was, before an intact one: corruption.
        let mut hole = segment(0, &[b"hello", b"world!", b"again"]);
        let second = valid..valid + RECORD_HEADER_LEN + 6;
        hole[second].fill(0);
        assert!(matches!(scan(&hole).unwrap().tail, Tail::Corrupt { at, .. } if at == valid));
    }

    /// The writer with zero-fill on: records written while the helper
    /// zero-fills concurrently all survive (no zero write lands on a record),
    /// the file ends in zeros as a crash would leave it, a reopened writer
    /// continues over the zeros, and closing trims them.
    #[test]
    fn writer_overwrites_zero_filled_space() {
        let dir = std::env::temp_dir().join(format!("ferrokv-segment-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let payload = vec![b'x'; 1000];
        let limit = 64 << 20;
        let mut w = SegmentWriter::create(&dir, 0).unwrap();
        w.set_prefill(Some(limit));
        let mut offset = 0;
        for _ in 0..3000 {
            w.append(offset, &payload).unwrap();
            offset += payload.len() as u64;
        }
        w.sync().unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while w.preallocated() < PREFILL_AHEAD / 2 {
            assert!(Instant::now() < deadline, "no zero-fill ahead of the writer");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let path = w.path.clone();
        let (end, len) = (w.end, w.len);
        drop(w); // as a crash: the zeros stay
        let data = std::fs::read(&path).unwrap();
        let s = scan(&data).unwrap();
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!((s.records.len(), s.end_offset(), s.valid_len as u64), (3000, end, len));
        assert!(s.preallocated as u64 >= PREFILL_AHEAD / 2, "{}", s.preallocated);
        assert!(s.records.iter().all(|r| r.payload(&data) == payload.as_slice()));

        let mut w = SegmentWriter::reopen(&path, 0, end, len).unwrap();
        assert_eq!(w.preallocated(), s.preallocated as u64);
        w.append(end, b"after the restart").unwrap();
        w.close().unwrap();
        let data = std::fs::read(&path).unwrap();
        let s = scan(&data).unwrap();
        assert_eq!((&s.tail, s.records.len(), s.preallocated), (&Tail::Clean, 3001, 0));
        assert_eq!(data.len(), s.valid_len);
        assert_eq!(s.records[3000].payload(&data), b"after the restart");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn offset_gap_is_corruption() {
        let mut data = encode_file_header(0).to_vec();
        encode_record(&mut data, 0, b"abc");
        encode_record(&mut data, 4, b"def");
        assert!(matches!(scan(&data).unwrap().tail, Tail::Corrupt { .. }));
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(matches!(scan(b"nope"), Err(HeaderError::BadMagic)));
        assert!(matches!(scan(b"FKV"), Err(HeaderError::Truncated(3))));
        let mut h = encode_file_header(5).to_vec();
        h[9] ^= 1;
        assert!(matches!(scan(&h), Err(HeaderError::Checksum)));
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
    }
}
