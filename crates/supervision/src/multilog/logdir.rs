//! One log directory: its lock, the startup recovery, appending lines to
//! `current` with rotation at line boundaries, and the clean close.
//!
//! `current` is 0644 while multilog writes it and 0744 once it is complete (clean
//! exit). At startup a `current` without the owner-exec bit means the last run stopped
//! uncleanly: it is archived as `.u` (possibly truncated) and a fresh `current` begins,
//! together with the leftovers of an interrupted processor run.
//!
//! Lines are buffered in memory per directory and written with write(2) whenever the
//! input runs dry (so a reader of `current` sees complete lines promptly) or the buffer
//! fills; fsync happens only before a rotation and at exit. Every write is retried until
//! it succeeds ([`retry`]), and the bytes already written are tracked, so a failing disk
//! neither loses nor duplicates a line.

use super::archive::{finish, Code};
use super::processor;
use super::retry::retry;
use super::script::DirSpec;
use postern_common::lock::{self, Lock};
use postern_common::{Error, Result, ResultExt};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Within this many bytes of the size limit, writes are cut at a newline and the file is
/// rotated right after a write that ends a line, so archives end at line boundaries.
pub const CUT_WINDOW: u64 = 2000;

/// Pending output per directory that makes multilog write before the input runs dry.
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// Mode of `current` while it is written.
const MODE_WRITING: u32 = 0o644;
/// Mode of a complete file: the owner-exec bit says "finished".
const MODE_COMPLETE: u32 = 0o744;

/// An open, locked log directory.
#[derive(Debug)]
pub struct LogDir {
    spec: DirSpec,
    /// Held for the life of the process: the flock is the directory's ownership.
    _lock: Lock,
    current: File,
    /// Bytes in `current`.
    bytes: u64,
    /// Selected output not yet written.
    pending: Vec<u8>,
}

impl LogDir {
    /// Create (0700) and lock the directory, then recover what a previous run left.
    pub fn open(spec: DirSpec) -> Result<LogDir> {
        let dir = spec.path.clone();
        let show = dir.display().to_string();
        // An existing directory is fine; any real trouble shows up when locking.
        let _ = DirBuilder::new().mode(0o700).create(&dir);
        let lock = lock::try_exclusive(&dir.join("lock"), 0o600)
            .temp(format_args!("unable to lock directory {show}"))?
            .ok_or_else(|| {
                Error::temp(format!(
                    "unable to lock directory {show}: locked by another multilog"
                ))
            })?;
        let current_path = dir.join("current");
        let existing = match fs::metadata(&current_path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format_args!("unable to stat {show}/current"), &e)),
        };
        if let Some(meta) = existing.filter(|m| m.permissions().mode() & 0o100 != 0) {
            // Complete from a clean exit: keep appending to it.
            let current =
                open_current(&current_path).temp(format_args!("unable to open {show}/current"))?;
            return Ok(LogDir {
                bytes: meta.len(),
                spec,
                _lock: lock,
                current,
                pending: Vec::new(),
            });
        }
        recover(&spec);
        fs::write(dir.join("state"), b"").temp(format_args!("unable to write to {show}/state"))?;
        let current =
            open_current(&current_path).temp(format_args!("unable to open {show}/current"))?;
        Ok(LogDir {
            spec,
            _lock: lock,
            current,
            bytes: 0,
            pending: Vec::new(),
        })
    }

    /// Queue bytes for `current`.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// Whether enough is queued that it should be written now.
    pub fn buffer_full(&self) -> bool {
        self.pending.len() >= BUFFER_LIMIT
    }

    /// Write everything queued, rotating as `current` fills. Never gives up.
    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut rest = &pending[..];
        while !rest.is_empty() {
            if self.bytes >= self.spec.size {
                self.rotate();
            }
            let room = self.spec.size - self.bytes;
            let mut len = rest.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            if self.bytes + len as u64 + CUT_WINDOW >= self.spec.size {
                if let Some(nl) = rest[..len].iter().rposition(|&b| b == b'\n') {
                    len = nl + 1;
                }
            }
            let chunk = &rest[..len];
            let current = &mut self.current;
            let show = self.spec.path.display();
            let written = retry(
                format_args!("unable to write to {show}/current"),
                || match current.write(chunk) {
                    Ok(0) => Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing")),
                    other => other,
                },
            );
            self.bytes += written as u64;
            rest = &rest[written..];
            if self.bytes + CUT_WINDOW >= self.spec.size && chunk[written - 1] == b'\n' {
                self.rotate();
            }
        }
        // Keep the allocation for the next round.
        self.pending = pending;
        self.pending.clear();
    }

    /// Rotate now if `current` holds anything (SIGALRM).
    pub fn rotate_if_nonempty(&mut self) {
        self.flush();
        if self.bytes > 0 {
            self.rotate();
        }
    }

    /// Clean exit: write what is queued, fsync, and mark `current` complete (0744).
    pub fn close(&mut self) {
        self.flush();
        let show = self.spec.path.display();
        let current = &self.current;
        retry(
            format_args!("unable to write {show}/current to disk"),
            || current.sync_all(),
        );
        retry(format_args!("unable to set mode of {show}/current"), || {
            current.set_permissions(fs::Permissions::from_mode(MODE_COMPLETE))
        });
    }

    /// `current` is full: make it `previous`, start a new `current`, then archive
    /// `previous` directly or through the processor.
    fn rotate(&mut self) {
        let dir = self.spec.path.clone();
        let show = dir.display();
        let current = &self.current;
        retry(
            format_args!("unable to write {show}/current to disk"),
            || current.sync_all(),
        );
        retry(
            format_args!("unable to rename current to previous in {show}"),
            || fs::rename(dir.join("current"), dir.join("previous")),
        );
        self.current = retry(format_args!("unable to create {show}/current"), || {
            open_current(&dir.join("current"))
        });
        self.bytes = 0;
        retry(
            format_args!("unable to set mode of {show}/previous"),
            || {
                fs::set_permissions(
                    dir.join("previous"),
                    fs::Permissions::from_mode(MODE_COMPLETE),
                )
            },
        );
        match &self.spec.processor {
            None => finish(&dir, "previous", Code::Safe, self.spec.num),
            Some(p) => processor::process(&dir, p, self.spec.num),
        }
    }
}

/// Open `current` for appending, 0644 (also when it existed as 0744).
fn open_current(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(MODE_WRITING)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(MODE_WRITING))?;
    Ok(f)
}

/// After an unclean stop: drop half-made state, keep a finished processor's output,
/// else keep the unprocessed `previous`, and archive the old `current` as `.u`.
fn recover(spec: &DirSpec) {
    let dir = &spec.path;
    let _ = fs::remove_file(dir.join("state"));
    let _ = fs::remove_file(dir.join("newstate"));
    let processed_complete = fs::metadata(dir.join("processed"))
        .map(|m| m.permissions().mode() & 0o100 != 0)
        .unwrap_or(false);
    if processed_complete {
        let _ = fs::remove_file(dir.join("previous"));
        finish(dir, "processed", Code::Safe, spec.num);
    } else {
        let _ = fs::remove_file(dir.join("processed"));
        finish(dir, "previous", Code::Unsafe, spec.num);
    }
    finish(dir, "current", Code::Unsafe, spec.num);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multilog::archive::archives;

    fn spec(dir: &Path, size: u64, num: u64) -> DirSpec {
        DirSpec {
            path: dir.to_path_buf(),
            size,
            num,
            processor: None,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn archives_end_at_line_boundaries_within_the_cut_window() {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = LogDir::open(spec(tmp.path(), 4096, 1000)).unwrap();
        let mut all = Vec::new();
        for i in 0..1000 {
            let line = format!("{i:05} {}\n", "x".repeat(i % 90));
            all.extend_from_slice(line.as_bytes());
            d.push(line.as_bytes());
            if i % 37 == 0 {
                d.flush();
            }
        }
        d.close();
        let mut joined = Vec::new();
        for name in archives(tmp.path()).unwrap() {
            let data = fs::read(tmp.path().join(&name)).unwrap();
            assert!(data.ends_with(b"\n"), "{name}");
            assert!(
                data.len() as u64 <= 4096 && data.len() as u64 > 4096 - CUT_WINDOW,
                "{name}"
            );
            assert_eq!(mode(&tmp.path().join(&name)), 0o744);
            joined.extend(data);
        }
        joined.extend(fs::read(tmp.path().join("current")).unwrap());
        assert_eq!(joined, all);
        assert_eq!(mode(&tmp.path().join("current")), 0o744);
    }

    #[test]
    fn a_complete_current_is_appended_to() {
        let tmp = tempfile::tempdir().unwrap();
        let current = tmp.path().join("current");
        fs::write(&current, b"old\n").unwrap();
        fs::set_permissions(&current, fs::Permissions::from_mode(0o744)).unwrap();
        let mut d = LogDir::open(spec(tmp.path(), 4096, 10)).unwrap();
        assert_eq!(mode(&current), 0o644, "writing again");
        d.push(b"new\n");
        d.close();
        assert_eq!(fs::read(&current).unwrap(), b"old\nnew\n");
        assert!(archives(tmp.path()).unwrap().is_empty());
    }

    #[test]
    fn recovery_keeps_a_complete_processed_file_and_archives_current_as_u() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp.path().join(n);
        fs::write(p("current"), b"cur\n").unwrap();
        fs::write(p("previous"), b"prev\n").unwrap();
        fs::write(p("processed"), b"done\n").unwrap();
        fs::set_permissions(p("processed"), fs::Permissions::from_mode(0o744)).unwrap();
        fs::write(p("newstate"), b"half").unwrap();
        fs::write(p("state"), b"old").unwrap();
        let _d = LogDir::open(spec(tmp.path(), 4096, 10)).unwrap();
        let names = archives(tmp.path()).unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].ends_with(".s") && names[1].ends_with(".u"));
        assert_eq!(fs::read(p(&names[0])).unwrap(), b"done\n");
        assert_eq!(fs::read(p(&names[1])).unwrap(), b"cur\n");
        for gone in ["previous", "processed", "newstate"] {
            assert!(!p(gone).exists(), "{gone}");
        }
        assert_eq!(fs::read(p("state")).unwrap(), b"");
        assert_eq!(fs::read(p("current")).unwrap(), b"");
    }

    #[test]
    fn recovery_archives_an_unprocessed_previous_as_u() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| tmp.path().join(n);
        fs::write(p("previous"), b"prev\n").unwrap();
        fs::write(p("processed"), b"partial").unwrap();
        let _d = LogDir::open(spec(tmp.path(), 4096, 10)).unwrap();
        let names = archives(tmp.path()).unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with(".u"));
        assert_eq!(fs::read(p(&names[0])).unwrap(), b"prev\n");
        assert!(!p("processed").exists());
    }

    #[test]
    fn a_second_lock_on_the_directory_fails_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = LogDir::open(spec(tmp.path(), 4096, 10)).unwrap();
        let err = LogDir::open(spec(tmp.path(), 4096, 10)).unwrap_err();
        assert_eq!(err.kind, postern_common::Kind::Temp);
        assert!(err.msg.contains("unable to lock directory"), "{}", err.msg);
    }
}
