//! The log directory's manifest: which base snapshot and which segments make
//! up the log.
//!
//! ```text
//! ferrokv-aof-manifest 1
//! base base-00000000000000001234.fkv 1234
//! segment seg-00000000000000001234.log 1234
//! segment seg-00000000000067110000.log 67110000
//! ```
//!
//! `base -  <offset>` means "no base file: the dataset was empty at that
//! offset". Plain text so that an operator can read it and a backup tool (a
//! later issue ships closed segments to S3) can follow it without our code.
//!
//! Why a manifest at all when segment names carry their offsets: a rewrite
//! replaces the base and then deletes old segments; without one file that
//! switches from the old set to the new one atomically, a crash between
//! those steps would leave a directory whose meaning depends on guessing.
//! The manifest is written with temp file + fsync + rename + directory fsync,
//! so it is always either the old or the new one.

use std::path::Path;

use super::segment;

pub const FILE_NAME: &str = "manifest";
const HEADER: &str = "ferrokv-aof-manifest 1";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// File name of the base snapshot, if the dataset was not empty.
    pub base_file: Option<String>,
    /// Write-log offset the base corresponds to: replay starts here.
    pub base_offset: u64,
    /// Start offsets of the segments, ascending.
    pub segments: Vec<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read manifest {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("manifest {path} line {line}: {msg}")]
    Parse { path: String, line: usize, msg: String },
}

pub fn base_file_name(offset: u64) -> String {
    format!("base-{offset:020}.fkv")
}

impl Manifest {
    pub fn render(&self) -> String {
        let mut out = format!("{HEADER}\n");
        out.push_str(&format!(
            "base {} {}\n",
            self.base_file.as_deref().unwrap_or("-"),
            self.base_offset
        ));
        for s in &self.segments {
            out.push_str(&format!("segment {} {s}\n", segment::file_name(*s)));
        }
        out
    }

    pub fn parse(text: &str, path: &str) -> Result<Manifest, ManifestError> {
        let err = |line: usize, msg: String| ManifestError::Parse {
            path: path.to_string(),
            line,
            msg,
        };
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, l)) if l.trim() == HEADER => {}
            _ => return Err(err(1, format!("expected '{HEADER}'"))),
        }
        let mut m = Manifest::default();
        let mut saw_base = false;
        for (i, line) in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                [] => {}
                ["base", file, off] => {
                    m.base_offset = off.parse().map_err(|_| err(i + 1, format!("bad offset '{off}'")))?;
                    m.base_file = (*file != "-").then(|| file.to_string());
                    saw_base = true;
                }
                ["segment", file, start] => {
                    let start: u64 = start.parse().map_err(|_| err(i + 1, format!("bad offset '{start}'")))?;
                    if segment::parse_file_name(file) != Some(start) {
                        return Err(err(
                            i + 1,
                            format!("segment file '{file}' does not match offset {start}"),
                        ));
                    }
                    if m.segments.last().is_some_and(|&l| l >= start) {
                        return Err(err(i + 1, "segments out of order".into()));
                    }
                    m.segments.push(start);
                }
                _ => return Err(err(i + 1, format!("unexpected line '{line}'"))),
            }
        }
        if !saw_base {
            return Err(err(1, "no base line".into()));
        }
        Ok(m)
    }

    /// `None` when the directory has no manifest.
    pub fn load(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
        let path = dir.join(FILE_NAME);
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => Manifest::parse(&text, &shown).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ManifestError::Io { path: shown, source }),
        }
    }

    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        segment::write_atomic(&dir.join(FILE_NAME), self.render().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = Manifest {
            base_file: Some(base_file_name(7)),
            base_offset: 7,
            segments: vec![7, 100],
        };
        assert_eq!(Manifest::parse(&m.render(), "m").unwrap(), m);
        let empty = Manifest::default();
        assert_eq!(Manifest::parse(&empty.render(), "m").unwrap(), empty);
        assert!(Manifest::parse("garbage", "m").is_err());
        assert!(Manifest::parse("ferrokv-aof-manifest 1\nbase - 0\nsegment seg-1.log 2\n", "m").is_err());
    }
}
