//! `=file` status files: each selected line overwrites the file from
//! offset 0 with exactly [`STATUS_SIZE`] bytes — the line's first 1000 bytes padded
//! with newlines — so a monitor can read "the last interesting line" at a fixed size.
//! The file is created at startup, relative to the starting directory.

use super::line::HEAD_LIMIT;
use super::retry::retry;
use postern_common::{Result, ResultExt};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

/// Bytes written for each selected line.
pub const STATUS_SIZE: usize = HEAD_LIMIT + 1;

/// An open status file.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    file: File,
}

impl StatusFile {
    /// Create or open the file (not truncated: every write is the full record anyway).
    pub fn open(path: PathBuf) -> Result<StatusFile> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .temp(format_args!("unable to open {}", path.display()))?;
        Ok(StatusFile { path, file })
    }

    /// Record `head` (at most [`HEAD_LIMIT`] bytes) as the latest line.
    pub fn write(&self, head: &[u8]) {
        let mut record = [b'\n'; STATUS_SIZE];
        let n = head.len().min(HEAD_LIMIT);
        record[..n].copy_from_slice(&head[..n]);
        retry(
            format_args!("unable to write to {}", self.path.display()),
            || self.file.write_all_at(&record, 0),
        );
    }
}

/// What `e` copies to stderr for a line's head: the head and a newline, or its first
/// [`STDERR_LIMIT`] bytes and `...` when longer.
pub fn stderr_copy(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STDERR_LIMIT + 4);
    if head.len() > STDERR_LIMIT {
        out.extend_from_slice(&head[..STDERR_LIMIT]);
        out.extend_from_slice(b"...\n");
    } else {
        out.extend_from_slice(head);
        out.push(b'\n');
    }
    out
}

/// Bytes of a line that `e` copies before cutting it short.
pub const STDERR_LIMIT: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_records_are_exactly_1001_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let st = StatusFile::open(dir.path().join("status")).unwrap();
        st.write(&[b'x'; 1000]);
        st.write(b"short");
        let got = std::fs::read(dir.path().join("status")).unwrap();
        assert_eq!(got.len(), STATUS_SIZE);
        assert_eq!(&got[..5], b"short");
        assert!(got[5..].iter().all(|&b| b == b'\n'));
    }

    #[test]
    fn stderr_copies_are_cut_at_200_bytes() {
        assert_eq!(stderr_copy(b"hi"), b"hi\n");
        let long = [b'a'; 201];
        let out = stderr_copy(&long);
        assert_eq!(out.len(), 204);
        assert!(out.ends_with(b"a...\n"));
        assert_eq!(stderr_copy(&[b'b'; 200]).len(), 201);
    }
}
