//! A Maildir as POP3 sees it: the messages of `new/` and `cur/`, oldest
//! first, each with its unique name (the UIDL), its size *as sent* — CRLF line endings,
//! before dot-stuffing — and the renames a reader does (`new/x` → `cur/x:2,S`).
//!
//! Sizes: a message on disk normally has LF line endings; on the wire every line ends in
//! CRLF. A stored CRLF is sent as it is, a bare LF becomes CRLF, and a last line without
//! an LF gets a CRLF. [`Stuffer`] does exactly that (plus dot-stuffing) and [`sent_size`]
//! counts the same octets, so LIST, RETR and the bytes a client receives always agree.
//! A name carrying Dovecot's `,W=<size>` (the CRLF size) is trusted and not re-read.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most messages a session shows; older ones first, the rest wait for the next session.
pub const MAX_MESSAGES: usize = 200_000;
/// tmp/ files untouched for this long are leftovers of a crashed delivery (36 h).
pub const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);
/// RFC 1939 §7: a unique-id is 1 to 70 characters in 0x21..=0x7E.
pub const MAX_UID: usize = 70;
/// Read block for counting and sending.
pub const BLOCK: usize = 64 * 1024;

/// Which subdirectory a message is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    New,
    Cur,
}

impl Sub {
    pub fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// One message of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub sub: Sub,
    pub name: OsString,
    pub mtime: i64,
    /// Octets as sent (CRLF), without dot-stuffing.
    pub size: u64,
    pub deleted: bool,
    /// Retrieved (RETR or TOP) in this session: gets the `S` flag at QUIT.
    pub seen: bool,
}

impl Message {
    /// Path relative to the maildir.
    pub fn path(&self) -> PathBuf {
        Path::new(self.sub.dir()).join(&self.name)
    }

    /// The unique name: the file name up to its first `:`.
    pub fn unique(&self) -> &[u8] {
        unique_part(self.name.as_bytes())
    }

    /// The UIDL: the unique name when it is a valid unique-id, else a stable hash of it.
    pub fn uidl(&self) -> String {
        uidl_of(self.unique())
    }
}

pub fn unique_part(name: &[u8]) -> &[u8] {
    match name.iter().position(|&b| b == b':') {
        Some(at) => &name[..at],
        None => name,
    }
}

/// RFC 1939 unique-id for a unique name; names that do not qualify (too long, odd bytes)
/// get `x` + 16 hex digits of their FNV-1a hash, which is stable across sessions.
pub fn uidl_of(unique: &[u8]) -> String {
    let ok = !unique.is_empty()
        && unique.len() <= MAX_UID
        && unique.iter().all(|b| (0x21..=0x7e).contains(b));
    if ok {
        return String::from_utf8_lossy(unique).into_owned();
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in unique {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("x{h:016x}")
}

/// The size hint in a name: Dovecot's `,W=<n>` (CRLF size) before the `:`.
pub fn name_w_size(name: &[u8]) -> Option<u64> {
    let unique = unique_part(name);
    unique.split(|&b| b == b',').skip(1).find_map(|field| {
        let digits = field.strip_prefix(b"W=")?;
        if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    })
}

/// The name a message gets in cur/ when the session ends: `:2,` added if it has no info,
/// `S` merged into the flags (in ASCII order) if it was seen. Names with other info
/// (`:1,…`) keep their info.
pub fn cur_name(name: &[u8], seen: bool) -> Vec<u8> {
    match name.iter().position(|&b| b == b':') {
        None => {
            let mut out = name.to_vec();
            out.extend_from_slice(if seen { b":2,S" } else { b":2," });
            out
        }
        Some(at) => {
            let info = &name[at + 1..];
            let Some(flags) = info.strip_prefix(b"2,") else {
                return name.to_vec();
            };
            if !seen || flags.contains(&b'S') {
                return name.to_vec();
            }
            let mut flags = flags.to_vec();
            flags.push(b'S');
            flags.sort_unstable();
            let mut out = name[..at + 3].to_vec();
            out.extend_from_slice(&flags);
            out
        }
    }
}

/// Octets of a message as sent (see the module documentation).
pub fn sent_size(mut r: impl Read) -> io::Result<u64> {
    let mut buf = vec![0u8; BLOCK];
    let (mut total, mut prev_cr, mut at_start) = (0u64, false, true);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            total += 1;
            if b == b'\n' && !prev_cr {
                total += 1;
            }
            prev_cr = b == b'\r';
            at_start = b == b'\n';
        }
    }
    if !at_start {
        total += 2;
    }
    Ok(total)
}

/// Converts a stored message to its POP3 form: CRLF line endings, dot-stuffing, and for
/// TOP a stop after the headers, the blank line and `k` body lines.
#[derive(Debug, Clone)]
pub struct Stuffer {
    at_start: bool,
    prev_cr: bool,
    line_len: u64,
    in_body: bool,
    body_lines: u64,
    top: Option<u64>,
    done: bool,
}

impl Stuffer {
    /// The whole message (RETR).
    pub fn whole() -> Self {
        Stuffer {
            at_start: true,
            prev_cr: false,
            line_len: 0,
            in_body: false,
            body_lines: 0,
            top: None,
            done: false,
        }
    }

    /// Headers, the blank line, and `lines` body lines (TOP).
    pub fn top(lines: u64) -> Self {
        Stuffer {
            top: Some(lines),
            ..Stuffer::whole()
        }
    }

    /// The TOP line count, or `None` for a whole message.
    pub fn top_limit(&self) -> Option<u64> {
        self.top
    }

    /// Convert `input` onto `out`; false once TOP has all it wants (stop reading).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        if self.done {
            return false;
        }
        for &b in input {
            if self.at_start {
                if self
                    .top
                    .is_some_and(|k| self.in_body && self.body_lines >= k)
                {
                    self.done = true;
                    return false;
                }
                if b == b'.' {
                    out.push(b'.');
                }
                self.at_start = false;
            }
            if b == b'\n' {
                if !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                let empty = self.line_len == 0 || (self.line_len == 1 && self.prev_cr);
                if self.in_body {
                    self.body_lines += 1;
                } else if empty {
                    self.in_body = true;
                }
                self.at_start = true;
                self.line_len = 0;
                self.prev_cr = false;
            } else {
                out.push(b);
                self.line_len += 1;
                self.prev_cr = b == b'\r';
            }
        }
        true
    }

    /// End the message: a CRLF if the last line had none, then the terminating `.`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.at_start && !self.done {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// A Maildir opened for a POP3 session (paths are relative to `root`).
pub struct Maildir {
    pub root: PathBuf,
}

impl Maildir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Maildir { root: root.into() }
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    /// Delete tmp/ files not accessed or modified for [`TMP_MAX_AGE`]; returns how many.
    pub fn clean_tmp(&self, now: SystemTime) -> io::Result<usize> {
        let mut removed = 0;
        let limit = now
            .checked_sub(TMP_MAX_AGE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let limit = limit
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        for entry in fs::read_dir(self.path("tmp"))? {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file()
                && meta.atime().max(meta.mtime()) < limit
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The messages of new/ and cur/, oldest first (ties by name), at most
    /// [`MAX_MESSAGES`]. Dot-files and anything but regular files are skipped, and so is
    /// a file that vanishes while we look (another session deleted it).
    pub fn scan(&self) -> io::Result<Vec<Message>> {
        let mut found = Vec::new();
        for sub in [Sub::New, Sub::Cur] {
            for entry in fs::read_dir(self.path(sub.dir()))? {
                let entry = entry?;
                let name = entry.file_name();
                if name.as_bytes().first() == Some(&b'.') {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if !meta.is_file() {
                    continue;
                }
                found.push((meta.mtime(), sub, name));
            }
        }
        found.sort_by(|a, b| (a.0, a.2.as_bytes()).cmp(&(b.0, b.2.as_bytes())));
        found.truncate(MAX_MESSAGES);
        let mut messages = Vec::with_capacity(found.len());
        for (mtime, sub, name) in found {
            let size = match name_w_size(name.as_bytes()) {
                Some(size) => size,
                None => match fs::File::open(self.path(Path::new(sub.dir()).join(&name))) {
                    Ok(f) => sent_size(f)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            messages.push(Message {
                sub,
                name,
                mtime,
                size,
                deleted: false,
                seen: false,
            });
        }
        Ok(messages)
    }

    /// Find a message another session renamed (new/ → cur/, or new flags): the file in
    /// cur/ or new/ with the same unique name. Updates `msg` and returns true if found.
    pub fn relocate(&self, msg: &mut Message) -> bool {
        let unique = msg.unique().to_vec();
        for sub in [Sub::Cur, Sub::New] {
            let Ok(entries) = fs::read_dir(self.path(sub.dir())) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if unique_part(name.as_bytes()) == unique.as_slice() {
                    msg.sub = sub;
                    msg.name = name;
                    return true;
                }
            }
        }
        false
    }

    /// Open a message, following it if another session renamed it. `NotFound` means it
    /// is gone (deleted by another session).
    pub fn open(&self, msg: &mut Message) -> io::Result<fs::File> {
        match fs::File::open(self.path(msg.path())) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.relocate(msg) => {
                fs::File::open(self.path(msg.path()))
            }
            other => other,
        }
    }

    /// Remove a message; a message already gone counts as removed. Returns the size
    /// the Maildir++ quota counted for the file this call removed (`,S=` in its name,
    /// else its length), or `None` when it was already gone (whoever removed it
    /// accounts for it).
    pub fn delete(&self, msg: &mut Message) -> io::Result<Option<u64>> {
        match self.remove(msg) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.relocate(msg) {
                    match self.remove(msg) {
                        Ok(size) => Ok(Some(size)),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
                } else {
                    Ok(None)
                }
            }
            other => other.map(Some),
        }
    }

    fn remove(&self, msg: &Message) -> io::Result<u64> {
        let path = self.path(msg.path());
        let size = match postern_mailstore::maildir::size_in_name(msg.name.as_bytes()) {
            Some(size) => size,
            None => fs::metadata(&path)?.len(),
        };
        fs::remove_file(&path)?;
        Ok(size)
    }

    /// Move a kept message to cur/ with its new flags (see [`cur_name`]).
    pub fn keep(&self, msg: &mut Message) -> io::Result<()> {
        let target = OsString::from_vec(cur_name(msg.name.as_bytes(), msg.seen));
        if msg.sub == Sub::Cur && target == msg.name {
            return Ok(());
        }
        let to = Path::new("cur").join(OsStr::from_bytes(target.as_bytes()));
        match fs::rename(self.path(msg.path()), self.path(&to)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()), // gone or moved meanwhile
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(input: &[u8], mut s: Stuffer, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            if !s.feed(piece, &mut out) {
                break;
            }
        }
        s.finish(&mut out);
        out
    }

    /// What a client gets back after undoing dot-stuffing, without the final `.` line.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("terminator");
        let mut out = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    const SAMPLES: &[&[u8]] = &[
        b"",
        b"Subject: x\n\nbody\n",
        b"Subject: x\n\n.\n..dots\n.\nend",
        b"Subject: crlf\r\n\r\nmixed\nlines\r\nbare\rcr\n",
        b"no newline at all",
        b"\n\n\n",
        b".",
        b"a\r",
    ];

    #[test]
    fn whole_message_any_chunking() {
        for &msg in SAMPLES {
            let one = stuff(msg, Stuffer::whole(), msg.len().max(1));
            for chunk in 1..4 {
                assert_eq!(
                    stuff(msg, Stuffer::whole(), chunk),
                    one,
                    "{msg:?} in {chunk}-byte pieces"
                );
            }
            let plain = unstuff(&one);
            assert_eq!(
                plain.len() as u64,
                sent_size(msg).unwrap(),
                "size of {msg:?}"
            );
            assert!(plain.is_empty() || plain.ends_with(b"\r\n"));
            assert!(
                !plain.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
                "bare LF in {plain:?}"
            );
        }
        assert_eq!(stuff(b"a\n.b\n", Stuffer::whole(), 1), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(b"", Stuffer::whole(), 1), b".\r\n");
    }

    #[test]
    fn top_counts_body_lines_after_the_blank_line() {
        let msg = b"A: 1\nB: 2\n\nl1\n.l2\nl3\n";
        assert_eq!(stuff(msg, Stuffer::top(0), 1), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(
            stuff(msg, Stuffer::top(2), 1),
            b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
        );
        assert_eq!(
            stuff(msg, Stuffer::top(9), 3),
            stuff(msg, Stuffer::whole(), 3)
        );
        assert_eq!(
            stuff(b"A: 1\r\n\r\nx\r\ny", Stuffer::top(1), 2),
            b"A: 1\r\n\r\nx\r\n.\r\n"
        );
        assert_eq!(
            stuff(b"A: 1\nno body", Stuffer::top(0), 1),
            b"A: 1\r\nno body\r\n.\r\n"
        );
    }

    #[test]
    fn names_flags_and_uids() {
        assert_eq!(cur_name(b"123.M1P2.host", false), b"123.M1P2.host:2,");
        assert_eq!(cur_name(b"123.M1P2.host", true), b"123.M1P2.host:2,S");
        assert_eq!(cur_name(b"1.x:2,", true), b"1.x:2,S");
        assert_eq!(cur_name(b"1.x:2,FRT", true), b"1.x:2,FRST");
        assert_eq!(cur_name(b"1.x:2,ST", true), b"1.x:2,ST");
        assert_eq!(cur_name(b"1.x:1,weird", true), b"1.x:1,weird");
        assert_eq!(cur_name(b"1.x,S=12,W=14:2,", true), b"1.x,S=12,W=14:2,S");
        assert_eq!(unique_part(b"1.x,S=12:2,S"), b"1.x,S=12");
        assert_eq!(uidl_of(b"1.x,S=12"), "1.x,S=12");
        let odd = uidl_of("1.é x".as_bytes());
        assert!(odd.starts_with('x') && odd.len() == 17);
        assert_eq!(odd, uidl_of("1.é x".as_bytes()));
        assert_eq!(uidl_of(&[b'a'; 71]).len(), 17);
        assert_eq!(name_w_size(b"1.x,S=12,W=14:2,S"), Some(14));
        assert_eq!(name_w_size(b"1.x,S=12:2,W=14"), None);
        assert_eq!(name_w_size(b"1.x,W=:2,"), None);
    }
}
