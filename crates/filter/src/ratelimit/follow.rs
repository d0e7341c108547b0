//! Following a multilog directory's `current` across rotations, like `tail -F`, without
//! losing or repeating a line.
//!
//! multilog rotates by renaming `current` to `@TAI64N.s` (same inode) and starting a new
//! `current`. Each poll stats `DIR/current` *first*, then reads the open file to its end:
//! anything multilog wrote before the rename is then read from the old inode. When the
//! inode changed, the rotated files newer than the old one (found by inode, in name order,
//! which is time order) are read too — several rotations between two polls lose nothing —
//! and the new `current` is read from its start.
//!
//! The position (device, inode, offset of the first unread byte, always at a line start)
//! is saved by the caller; on restart the same inode resumes at the offset, and if
//! `current` was rotated meanwhile the old file is found among the `@…` files and
//! finished first. A line is only consumed once its newline is read (a rotated file's
//! last line is taken as it is, since nothing will be appended to it).

use postern_common::logline::LogLine;
use postern_common::tai64n::Tai64n;
use postern_common::{Result, ResultExt};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes read at a time.
pub const CHUNK: usize = 64 * 1024;
/// Longest line kept; a longer one is skipped (multilog cuts lines at 1000 by default).
pub const MAX_LINE: usize = 64 * 1024;
/// Most rotated files read to catch up in one go.
pub const MAX_CATCHUP: usize = 1000;

/// Where we are in a log directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// Where to start when `current` is (re)opened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// Resume at a saved position (after a restart).
    Saved(Position),
    /// Everything rotated after this TAI64N label first: `current` was missing when we
    /// looked, so whatever multilog writes and rotates before we see it is new.
    Since(String),
    /// First start: `current` from its beginning.
    Fresh,
}

/// One followed directory.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    label: String,
    open: Option<(File, Position)>,
    start: Start,
}

fn ids(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Follower {
    /// Follow `dir`, resuming at `saved` if there is one.
    pub fn new(dir: &Path, saved: Option<Position>) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            label: dir.display().to_string(),
            open: None,
            start: saved.map_or(Start::Fresh, Start::Saved),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The position to save: the open file's, else the one we will resume at.
    pub fn position(&self) -> Option<Position> {
        match (&self.open, &self.start) {
            (Some((_, p)), _) | (None, Start::Saved(p)) => Some(*p),
            _ => None,
        }
    }

    fn note(&self, action: &str, offset: u64) {
        self.note_file(action, "current", offset);
    }

    fn note_file(&self, action: &str, file: &str, offset: u64) {
        LogLine::event("follow")
            .kv("dir", &self.label)
            .kv("file", file)
            .kv("action", action)
            .kv("offset", offset)
            .emit();
    }

    /// Read whatever is new, handing each complete line to `sink`.
    pub fn poll(&mut self, sink: &mut dyn FnMut(&str)) -> Result<()> {
        let path = self.dir.join("current");
        let meta = match fs::metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).temp(format!("unable to stat {}", path.display())),
        };
        if let Some((file, pos)) = self.open.as_mut() {
            pos.offset = drain(file, pos.offset, false, sink)
                .temp(format!("unable to read {}", path.display()))?;
            let Some(meta) = meta else {
                return Ok(());
            };
            if ids(&meta) == (pos.dev, pos.ino) {
                // Truncated only if the file is shorter than what we read *now*: `meta`
                // was taken before the read, and a file that grew in between is longer
                // than it says (comparing with it re-read the whole file: every line
                // counted twice during a burst).
                let len = file
                    .metadata()
                    .temp(format!("unable to stat {}", path.display()))?
                    .len();
                if len < pos.offset {
                    pos.offset = 0;
                    self.note("truncate", 0);
                }
            } else {
                // Rotated: finish the old file, then every newer rotated one.
                let old = *pos;
                pos.offset = drain(file, pos.offset, true, sink)
                    .temp(format!("unable to read {}", path.display()))?;
                self.open = None;
                self.catch_up(Start::Saved(old), true, sink)?;
                self.start = Start::Since(Tai64n::now().label());
                self.open_current(&path, 0, "rotate")?;
            }
        } else {
            let Some(meta) = meta else {
                if self.start == Start::Fresh {
                    self.start = Start::Since(Tai64n::now().label());
                    self.note("wait", 0);
                }
                return Ok(());
            };
            match self.start.clone() {
                Start::Saved(saved) if ids(&meta) == (saved.dev, saved.ino) => {
                    self.open_current(&path, saved.offset, "resume")?;
                }
                Start::Fresh => self.open_current(&path, 0, "open")?,
                other => {
                    self.catch_up(other, false, sink)?;
                    self.open_current(&path, 0, "open")?;
                }
            }
        }
        if let Some((file, pos)) = self.open.as_mut() {
            pos.offset = drain(file, pos.offset, false, sink)
                .temp(format!("unable to read {}", path.display()))?;
        }
        Ok(())
    }

    fn open_current(&mut self, path: &Path, offset: u64, action: &str) -> Result<()> {
        let file = match File::open(path) {
            Ok(f) => f,
            // Between our stat and open: try again next poll.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).temp(format!("unable to open {}", path.display())),
        };
        let meta = file
            .metadata()
            .temp(format!("unable to stat {}", path.display()))?;
        let (dev, ino) = ids(&meta);
        let offset = if offset > meta.len() {
            self.note("truncate", 0);
            0
        } else {
            offset
        };
        self.note(action, offset);
        self.open = Some((file, Position { dev, ino, offset }));
        // Should this file go away unseen, start again from the rotated files.
        self.start = Start::Since(Tai64n::now().label());
        Ok(())
    }

    /// Read the rotated files after the one with `old`'s inode (`finished` says whether
    /// that file itself was read to its end already, else it is read from its offset), or
    /// those rotated after a moment.
    fn catch_up(&mut self, from: Start, finished: bool, sink: &mut dyn FnMut(&str)) -> Result<()> {
        let mut rotated: Vec<(String, PathBuf, (u64, u64))> = Vec::new();
        let entries = fs::read_dir(&self.dir)
            .temp(format!("unable to read directory {}", self.dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with('@') && (name.ends_with(".s") || name.ends_with(".u"))) {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                rotated.push((name, entry.path(), ids(&meta)));
            }
        }
        rotated.sort();
        let mut todo: Vec<(PathBuf, u64)> = Vec::new();
        match from {
            Start::Saved(old) => {
                let Some(at) = rotated.iter().position(|r| r.2 == (old.dev, old.ino)) else {
                    if !finished {
                        // The file we stopped in is gone (multilog deleted it): say so.
                        self.note_file("lost", "-", old.offset);
                    }
                    return Ok(());
                };
                if !finished {
                    todo.push((rotated[at].1.clone(), old.offset));
                }
                todo.extend(rotated[at + 1..].iter().map(|r| (r.1.clone(), 0)));
            }
            Start::Since(label) => {
                todo.extend(
                    rotated
                        .iter()
                        .filter(|r| r.0.as_str() > label.as_str())
                        .map(|r| (r.1.clone(), 0)),
                );
            }
            Start::Fresh => {}
        }
        for (path, offset) in todo.into_iter().take(MAX_CATCHUP) {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).temp(format!("unable to open {}", path.display())),
            };
            self.note_file(
                "catchup",
                &path.file_name().unwrap_or_default().to_string_lossy(),
                offset,
            );
            drain(&mut file, offset, true, sink)
                .temp(format!("unable to read {}", path.display()))?;
        }
        Ok(())
    }
}

/// Read `file` from `offset` to its end, handing each complete line to `sink`; with
/// `last`, an unterminated final line too. Returns the offset after the last line taken.
pub fn drain(
    file: &mut File,
    offset: u64,
    last: bool,
    sink: &mut dyn FnMut(&str),
) -> io::Result<u64> {
    file.seek(SeekFrom::Start(offset))?;
    let mut consumed = offset;
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            sink(&String::from_utf8_lossy(&pending[start..start + nl]));
            start += nl + 1;
        }
        consumed += start as u64;
        pending.drain(..start);
        if pending.len() > MAX_LINE {
            // Far longer than any line smtpd writes: skip it rather than stall.
            consumed += pending.len() as u64;
            pending.clear();
        }
    }
    if last && !pending.is_empty() {
        sink(&String::from_utf8_lossy(&pending));
        consumed += pending.len() as u64;
    }
    Ok(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(f: &mut Follower) -> Vec<String> {
        let mut lines = Vec::new();
        f.poll(&mut |l| lines.push(l.to_string())).unwrap();
        lines
    }

    fn append(path: &Path, text: &str) {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn partial_lines_wait_for_their_newline_byte_by_byte() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        let mut f = Follower::new(dir.path(), None);
        assert!(collect(&mut f).is_empty(), "no current yet");
        let text = "event=accept from=<a@b>\nsecond line\n";
        let mut got = Vec::new();
        for b in text.bytes() {
            append(&current, &(b as char).to_string());
            got.extend(collect(&mut f));
        }
        assert_eq!(got, vec!["event=accept from=<a@b>", "second line"]);
        assert_eq!(f.position().unwrap().offset, text.len() as u64);
    }

    #[test]
    fn rotations_between_polls_lose_and_repeat_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        append(&current, "1\n2\n");
        let mut f = Follower::new(dir.path(), None);
        assert_eq!(collect(&mut f), vec!["1", "2"]);
        append(&current, "3\n4");
        // Two rotations before the next poll; the first leaves an unterminated line.
        fs::rename(&current, dir.path().join("@400000000000000000000001.s")).unwrap();
        append(&current, "5\n");
        fs::rename(&current, dir.path().join("@400000000000000000000002.s")).unwrap();
        append(&current, "6\n");
        assert_eq!(collect(&mut f), vec!["3", "4", "5", "6"]);
        append(&current, "7\n");
        assert_eq!(collect(&mut f), vec!["7"]);
    }

    #[test]
    fn resumes_at_the_saved_position_even_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        append(&current, "a\nb\n");
        let mut f = Follower::new(dir.path(), None);
        assert_eq!(collect(&mut f), vec!["a", "b"]);
        let saved = f.position().unwrap();
        drop(f);
        // Same file, more lines.
        append(&current, "c\n");
        let mut f = Follower::new(dir.path(), Some(saved));
        assert_eq!(collect(&mut f), vec!["c"]);
        let saved = f.position().unwrap();
        drop(f);
        // Rotated while we were away.
        append(&current, "d\n");
        fs::rename(&current, dir.path().join("@400000000000000000000009.u")).unwrap();
        append(&current, "e\n");
        let mut f = Follower::new(dir.path(), Some(saved));
        assert_eq!(collect(&mut f), vec!["d", "e"]);
    }

    #[test]
    fn rotations_before_current_was_first_seen_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        // An old rotated file, from before we started: not ours to count.
        append(&dir.path().join("@400000000000000000000001.s"), "old\n");
        let mut f = Follower::new(dir.path(), None);
        assert!(collect(&mut f).is_empty());
        std::thread::sleep(std::time::Duration::from_millis(2));
        append(&current, "1\n");
        let rotated = format!("{}.s", Tai64n::now().label());
        fs::rename(&current, dir.path().join(rotated)).unwrap();
        append(&current, "2\n");
        assert_eq!(collect(&mut f), vec!["1", "2"]);
    }

    /// A writer appends while the follower reads: every line arrives exactly once. (The
    /// old check compared the offset after reading with a size taken before it, took
    /// the growth for a truncation and read the file again from the start.)
    #[test]
    fn lines_written_during_reads_are_counted_once() {
        // Several rounds: the race needs a write between the stat and the read.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let current = dir.path().join("current");
            append(&current, "start\n");
            let mut f = Follower::new(dir.path(), None);
            assert_eq!(collect(&mut f), vec!["start"]);
            const LINES: usize = 20_000;
            let writer = {
                let current = current.clone();
                std::thread::spawn(move || {
                    let mut file = fs::OpenOptions::new().append(true).open(&current).unwrap();
                    for i in 0..LINES {
                        file.write_all(format!("event=accept n={i}\n").as_bytes())
                            .unwrap();
                    }
                })
            };
            let mut got = Vec::new();
            while !writer.is_finished() {
                got.extend(collect(&mut f));
            }
            writer.join().unwrap();
            got.extend(collect(&mut f));
            assert_eq!(got.len(), LINES, "lines read more or less than once");
            let expected: Vec<String> = (0..LINES).map(|i| format!("event=accept n={i}")).collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn truncation_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        append(&current, "long line one\n");
        let mut f = Follower::new(dir.path(), None);
        assert_eq!(collect(&mut f).len(), 1);
        fs::write(&current, "x\n").unwrap();
        assert_eq!(collect(&mut f), vec!["x"]);
    }
}
