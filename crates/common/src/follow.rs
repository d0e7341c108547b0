//! Following a multilog directory's `current` across rotations, like `tail -F`, without
//! losing or repeating a line: postern-ratelimit counts from it, `posternctl report
//! --follow` sums it up.
//!
//! multilog rotates by closing `current`, renaming it to `@TAI64N.s` (same inode) and
//! starting a new `current`; nothing is written to the old file after the rename. Each
//! poll reads the open file to its end, *then* looks at `DIR/current`:
//! - the same inode: the file is only shorter than what was read if it was truncated by
//!   hand — judged by its size *after* the read (a size taken before it is smaller than
//!   the offset whenever the file grew in between, which used to read it all again);
//! - another inode: rotated. The old file is read to its end (its unterminated last line
//!   taken as it is), the new `current` is *opened first*, and then the rotated files
//!   between the two (found by inode, in name order, which is time order) are read, up to
//!   the one that is the file just opened — several rotations between two polls lose
//!   nothing, and one right after the open repeats nothing;
//! - none: multilog is between the rename and the new file; the old one is kept.
//!
//! The position (device, inode, offset of the first unread byte, at a line start) is
//! saved by the caller; on restart the same inode resumes at the offset, and if `current`
//! was rotated meanwhile the old file is found among the `@…` files and finished first.
//! A line is only taken once its newline is read.

use crate::logline::LogLine;
use crate::tai64n::Tai64n;
use crate::{Result, ResultExt};
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes read at a time.
pub const CHUNK: usize = 64 * 1024;
/// Longest line kept; a longer one is skipped whole (multilog cuts lines at 1000 by
/// default, so only a log written by something else has them).
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

impl Position {
    fn ids(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// Where to start when `current` is (re)opened.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    /// Resume in this file at its offset (a saved position, or the end at start-up); if it
    /// was rotated meanwhile, its rest is read from its new name first.
    Saved(Position),
    /// This file was read to its end when it was rotated: the files rotated after it next.
    Finished(Position),
    /// Everything rotated after this TAI64N label first: `current` was missing when we
    /// looked, so whatever multilog writes and rotates before we see it is new.
    Since(String),
    /// First start: `current` from its beginning.
    Fresh,
}

/// The open `current`.
#[derive(Debug)]
struct Open {
    file: File,
    pos: Position,
}

/// One followed directory.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    label: String,
    open: Option<Open>,
    start: Start,
    /// In the middle of a line longer than [`MAX_LINE`]: drop bytes up to its newline.
    skipping: bool,
    /// Log `event=follow` lines (rotations, catch-ups, truncations) on stderr.
    notes: bool,
}

fn ids(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn is_rotated(name: &str) -> bool {
    name.starts_with('@') && (name.ends_with(".s") || name.ends_with(".u"))
}

impl Follower {
    /// Follow `dir`, resuming at `saved` if there is one, else from the start of
    /// `current`. Rotations and catch-ups are logged as `event=follow` lines.
    pub fn new(dir: &Path, saved: Option<Position>) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            label: dir.display().to_string(),
            open: None,
            start: saved.map_or(Start::Fresh, Start::Saved),
            skipping: false,
            notes: true,
        }
    }

    /// Follow `dir` from the end of its `current` now: only lines written from here on.
    /// Without a `current`, whatever appears is new.
    pub fn at_end(dir: &Path) -> Follower {
        let at = fs::metadata(dir.join("current")).ok().map(|m| {
            let (dev, ino) = ids(&m);
            Position {
                dev,
                ino,
                offset: m.len(),
            }
        });
        Follower::new(dir, at)
    }

    /// No `event=follow` lines (for a program whose stderr is a person's terminal).
    pub fn quiet(mut self) -> Follower {
        self.notes = false;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The position to save: the open file's, else the one we will resume at.
    pub fn position(&self) -> Option<Position> {
        match (&self.open, &self.start) {
            (Some(o), _) => Some(o.pos),
            (None, Start::Saved(p) | Start::Finished(p)) => Some(*p),
            _ => None,
        }
    }

    fn note(&self, action: &str, file: &str, offset: u64) {
        if self.notes {
            LogLine::event("follow")
                .kv("dir", &self.label)
                .kv("file", file)
                .kv("action", action)
                .kv("offset", offset)
                .emit();
        }
    }

    /// Read whatever is new, handing each complete line to `sink`.
    pub fn poll(&mut self, sink: &mut dyn FnMut(&str)) -> Result<()> {
        let path = self.dir.join("current");
        let unreadable = || format!("unable to read {}", path.display());
        if let Some(open) = self.open.as_mut() {
            open.pos.offset = drain(
                &mut open.file,
                open.pos.offset,
                false,
                &mut self.skipping,
                sink,
            )
            .temp(unreadable())?;
            let now = match fs::metadata(&path) {
                Ok(m) => Some(ids(&m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).temp(format!("unable to stat {}", path.display())),
            };
            match now {
                // Between multilog's rename and its new file: keep the old one till then.
                None => return Ok(()),
                Some(now) if now == open.pos.ids() => {
                    // The size now, after the read: only a truncation makes it smaller.
                    let len = open
                        .file
                        .metadata()
                        .temp(format!("unable to stat {}", path.display()))?
                        .len();
                    if len >= open.pos.offset {
                        return Ok(());
                    }
                    open.pos.offset = 0;
                    self.skipping = false;
                    self.note("truncate", "current", 0);
                }
                Some(_) => {
                    // Rotated: nothing more comes to the old file; its last line is whole.
                    open.pos.offset = drain(
                        &mut open.file,
                        open.pos.offset,
                        true,
                        &mut self.skipping,
                        sink,
                    )
                    .temp(unreadable())?;
                    self.start = Start::Finished(open.pos);
                    self.open = None;
                    self.skipping = false;
                }
            }
        }
        if self.open.is_none() {
            self.reopen(&path, sink)?;
        }
        if let Some(open) = self.open.as_mut() {
            open.pos.offset = drain(
                &mut open.file,
                open.pos.offset,
                false,
                &mut self.skipping,
                sink,
            )
            .temp(unreadable())?;
        }
        Ok(())
    }

    /// Open `current`, after reading what was rotated since `start`.
    fn reopen(&mut self, path: &Path, sink: &mut dyn FnMut(&str)) -> Result<()> {
        // Opened before the directory is read: a rotation after this shows up in the
        // listing as this very file, where catching up stops.
        let current = match File::open(path) {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .temp(format!("unable to stat {}", path.display()))?;
                Some((file, ids(&meta), meta.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).temp(format!("unable to open {}", path.display())),
        };
        let start = self.start.clone();
        let action = match (&start, &current) {
            (Start::Saved(saved), Some((_, now, len))) if saved.ids() == *now => {
                let offset = if saved.offset > *len {
                    self.note("truncate", "current", 0);
                    0
                } else {
                    saved.offset
                };
                self.open_at(current, offset, "resume");
                return Ok(());
            }
            (Start::Fresh, Some(_)) => {
                self.open_at(current, 0, "open");
                return Ok(());
            }
            (Start::Fresh, None) => {
                self.start = Start::Since(Tai64n::now().label());
                self.note("wait", "current", 0);
                return Ok(());
            }
            (Start::Finished(_), _) => "rotate",
            _ => "open",
        };
        let until = current.as_ref().map(|c| c.1);
        let after = self.catch_up(start, until, sink)?;
        match current {
            Some(_) => self.open_at(current, 0, action),
            // Next time, what was rotated after the last file read now.
            None => self.start = Start::Since(after),
        }
        Ok(())
    }

    fn open_at(&mut self, current: Option<(File, (u64, u64), u64)>, offset: u64, action: &str) {
        if let Some((file, (dev, ino), _)) = current {
            self.note(action, "current", offset);
            self.skipping = false;
            self.open = Some(Open {
                file,
                pos: Position { dev, ino, offset },
            });
        }
    }

    /// Read the rotated files after `from` (the rest of a [`Start::Saved`] file first)
    /// and before the one whose inode is `until` (the `current` just opened). Returns the
    /// label to carry on after should `current` still be missing.
    fn catch_up(
        &mut self,
        from: Start,
        until: Option<(u64, u64)>,
        sink: &mut dyn FnMut(&str),
    ) -> Result<String> {
        // Taken before the listing: a file rotated after it has a later name.
        let mut after = match &from {
            Start::Since(label) => label.clone(),
            _ => Tai64n::now().label(),
        };
        let mut rotated: Vec<(String, PathBuf, (u64, u64))> = Vec::new();
        let entries = fs::read_dir(&self.dir)
            .temp(format!("unable to read directory {}", self.dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_rotated(&name) {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                rotated.push((name, entry.path(), ids(&meta)));
            }
        }
        rotated.sort();
        let mut todo: Vec<(&str, &Path, (u64, u64), u64)> = Vec::new();
        match &from {
            Start::Saved(old) | Start::Finished(old) => {
                match rotated.iter().position(|r| r.2 == old.ids()) {
                    Some(at) => {
                        after.clone_from(&rotated[at].0);
                        if matches!(from, Start::Saved(_)) {
                            let r = &rotated[at];
                            todo.push((&r.0, &r.1, r.2, old.offset));
                        }
                        todo.extend(
                            rotated[at + 1..]
                                .iter()
                                .map(|r| (r.0.as_str(), r.1.as_path(), r.2, 0)),
                        );
                    }
                    // The file we stopped in is gone (multilog deleted it): say so.
                    None if matches!(from, Start::Saved(_)) => self.note("lost", "-", old.offset),
                    None => {}
                }
            }
            Start::Since(label) => todo.extend(
                rotated
                    .iter()
                    .filter(|r| r.0.as_str() > label.as_str())
                    .map(|r| (r.0.as_str(), r.1.as_path(), r.2, 0)),
            ),
            Start::Fresh => {}
        }
        let todo = todo
            .into_iter()
            .take_while(|t| Some(t.2) != until)
            .take(MAX_CATCHUP);
        for (name, path, _, offset) in todo {
            let mut file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).temp(format!("unable to open {}", path.display())),
            };
            self.note("catchup", name, offset);
            let mut skipping = false;
            drain(&mut file, offset, true, &mut skipping, sink)
                .temp(format!("unable to read {}", path.display()))?;
            if name > after.as_str() {
                after = name.to_string();
            }
        }
        Ok(after)
    }
}

/// Read `file` from `offset` to its end, handing each complete line to `sink`; with
/// `last`, an unterminated final line too. A line longer than [`MAX_LINE`] is dropped
/// whole, `skipping` carrying that across calls. Returns the offset after the last byte
/// taken.
pub fn drain(
    file: &mut File,
    offset: u64,
    last: bool,
    skipping: &mut bool,
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
            if !std::mem::take(skipping) {
                sink(&String::from_utf8_lossy(&pending[start..start + nl]));
            }
            start += nl + 1;
        }
        consumed += start as u64;
        pending.drain(..start);
        if *skipping || pending.len() > MAX_LINE {
            // Far longer than any line postern writes: drop it rather than stall.
            consumed += pending.len() as u64;
            pending.clear();
            *skipping = true;
        }
    }
    if last && !pending.is_empty() && !*skipping {
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

    #[test]
    fn a_line_too_long_is_dropped_whole_even_across_polls() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        append(&current, "before\n");
        let mut f = Follower::new(dir.path(), None);
        assert_eq!(collect(&mut f), vec!["before"]);
        append(&current, &"x".repeat(MAX_LINE + 10));
        assert!(collect(&mut f).is_empty());
        append(&current, &"y".repeat(CHUNK * 2));
        assert!(collect(&mut f).is_empty());
        append(&current, "tail of the long line\nafter\n");
        assert_eq!(collect(&mut f), vec!["after"]);
    }

    #[test]
    fn at_end_reads_only_what_comes_after() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("current");
        append(&current, "old\n");
        let mut f = Follower::at_end(dir.path()).quiet();
        assert!(collect(&mut f).is_empty());
        append(&current, "new\n");
        fs::rename(
            &current,
            dir.path().join(format!("{}.s", Tai64n::now().label())),
        )
        .unwrap();
        append(&current, "newer\n");
        assert_eq!(collect(&mut f), vec!["new", "newer"]);
        // A directory without `current` yet: all of it is new.
        let empty = tempfile::tempdir().unwrap();
        let mut f = Follower::at_end(empty.path()).quiet();
        assert!(collect(&mut f).is_empty());
        append(&empty.path().join("current"), "first\n");
        assert_eq!(collect(&mut f), vec!["first"]);
    }

    /// A writer that behaves like multilog: appends lines to `current`, and every
    /// `rotate_every` lines closes it, renames it to `@TAI64N.s` and starts a new one.
    fn multilog_writer(
        dir: &Path,
        lines: usize,
        rotate_every: usize,
    ) -> std::thread::JoinHandle<()> {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            let current = dir.join("current");
            let open = || {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&current)
                    .unwrap()
            };
            let mut file = open();
            for i in 0..lines {
                file.write_all(format!("event=accept n={i}\n").as_bytes())
                    .unwrap();
                if i % rotate_every == rotate_every - 1 {
                    drop(file);
                    let label = Tai64n::now().label();
                    fs::rename(&current, dir.join(format!("{label}.s"))).unwrap();
                    file = open();
                }
            }
        })
    }

    /// Every line written while the follower reads, across rotations, arrives exactly
    /// once and in order. The follower used to judge truncation by a size stat'ed before
    /// reading (a file that grew meanwhile was read again from the start), and to open
    /// `current` by name after looking at the directory (a rotation in between lost or
    /// repeated a file).
    #[test]
    fn lines_written_during_reads_and_rotations_arrive_exactly_once() {
        const LINES: usize = 30_000;
        for round in 0..12 {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("current"), "start\n").unwrap();
            let mut f = Follower::new(dir.path(), None);
            let mut got: Vec<String> = Vec::new();
            f.poll(&mut |l| got.push(l.to_string())).unwrap();
            assert_eq!(got, vec!["start"]);
            got.clear();
            // A rotation or two per round, at different moments.
            let writer = multilog_writer(dir.path(), LINES, LINES / (1 + round % 3) + round);
            while !writer.is_finished() {
                f.poll(&mut |l| got.push(l.to_string())).unwrap();
            }
            writer.join().unwrap();
            f.poll(&mut |l| got.push(l.to_string())).unwrap();
            let expected: Vec<String> = (0..LINES).map(|i| format!("event=accept n={i}")).collect();
            if got != expected {
                let mut seen = std::collections::HashMap::new();
                for l in &got {
                    *seen.entry(l.as_str()).or_insert(0) += 1;
                }
                let twice = seen.values().filter(|&&n| n > 1).count();
                let missing = expected
                    .iter()
                    .filter(|l| !seen.contains_key(l.as_str()))
                    .count();
                panic!(
                    "round {round}: {} lines read for {LINES} written ({twice} more than once, {missing} never)",
                    got.len()
                );
            }
        }
    }
}
