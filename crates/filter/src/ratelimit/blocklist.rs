//! The files other programs honour, kept as lists of entries that expire:
//!
//! - `control/ratelimit.blocked` — `KIND KEY UNTIL` lines (`sender ADDR UNTIL`,
//!   `ip IP UNTIL`, `auth USER UNTIL`): postern-smtpd refuses MAIL with `451 4.7.1`
//!   while `UNTIL` (unix seconds) is in the future.
//! - `control/ratelimit.holdauth` — `USER UNTIL` lines: postern-send holds the queued
//!   outbound mail of USER while `UNTIL` is in the future.
//!
//! The file on disk is the state: every update reads it, drops what expired, adds what
//! is new (a key already listed keeps the later `UNTIL`), and replaces it atomically —
//! so an admin who deletes a line to lift a block is not overruled. Lines we cannot read
//! are kept as they are (and reported), never silently dropped.

use postern_common::atomic::write_atomic;
use postern_common::{Result, ResultExt};
use std::fs;
use std::io;
use std::path::Path;

/// The blocked list.
pub const BLOCKED: &str = "ratelimit.blocked";
/// The held users list.
pub const HOLDAUTH: &str = "ratelimit.holdauth";
/// Mode of the files: smtpd and send run as other users and must read them.
pub const MODE: u32 = 0o644;
/// Most entries kept in one file; past it the ones that expire soonest go.
pub const MAX_ENTRIES: usize = 100_000;

/// Which of the two layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `KIND KEY UNTIL`
    Blocked,
    /// `USER UNTIL`
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `sender`, `ip` or `auth`; empty in the hold list.
    pub kind: String,
    pub key: String,
    pub until: u64,
}

/// A file's entries, and the lines that were not entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    pub entries: Vec<Entry>,
    pub bad: Vec<String>,
}

impl Layout {
    fn header(self) -> &'static str {
        match self {
            Layout::Blocked => {
                "# Written by postern-ratelimit (docs/postern-ratelimit.md). KIND KEY UNTIL:\n\
                 # smtpd answers MAIL with 451 4.7.1 while UNTIL (unix time) is in the future.\n"
            }
            Layout::Hold => {
                "# Written by postern-ratelimit (docs/postern-ratelimit.md). USER UNTIL:\n\
                 # postern-send holds USER's outbound mail while UNTIL (unix time) is in the future.\n"
            }
        }
    }
}

/// Read the entries of `text`.
pub fn parse(text: &str, layout: Layout) -> List {
    let mut list = List::default();
    for line in postern_common::control::parse_lines(text) {
        let words: Vec<&str> = line.text.split_whitespace().collect();
        let entry = match (layout, words.as_slice()) {
            (Layout::Blocked, [kind, key, until])
                if super::policy::Kind::from_name(kind).is_some() =>
            {
                until.parse().ok().map(|until| Entry {
                    kind: kind.to_string(),
                    key: key.to_string(),
                    until,
                })
            }
            (Layout::Hold, [key, until]) => until.parse().ok().map(|until| Entry {
                kind: String::new(),
                key: key.to_string(),
                until,
            }),
            _ => None,
        };
        match entry {
            Some(e) => list.entries.push(e),
            None => list.bad.push(line.text),
        }
    }
    list
}

/// The file text for `list`.
pub fn render(list: &List, layout: Layout) -> String {
    let mut out = String::from(layout.header());
    for e in &list.entries {
        match layout {
            Layout::Blocked => out.push_str(&format!("{} {} {}\n", e.kind, e.key, e.until)),
            Layout::Hold => out.push_str(&format!("{} {}\n", e.key, e.until)),
        }
    }
    for b in &list.bad {
        out.push_str(b);
        out.push('\n');
    }
    out
}

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Entries that expired and were removed.
    pub expired: Vec<Entry>,
    /// Lines that are not entries (kept).
    pub bad: Vec<String>,
    /// The soonest `UNTIL` left in the file.
    pub next: Option<u64>,
}

/// Merge `add` into `list` and drop what expired by `now`.
pub fn merge(list: &mut List, add: &[Entry], now: u64) -> Vec<Entry> {
    let (live, expired): (Vec<Entry>, Vec<Entry>) =
        list.entries.drain(..).partition(|e| e.until > now);
    list.entries = live;
    for a in add {
        match list
            .entries
            .iter_mut()
            .find(|e| e.kind == a.kind && e.key == a.key)
        {
            Some(e) => e.until = e.until.max(a.until),
            None => list.entries.push(a.clone()),
        }
    }
    if list.entries.len() > MAX_ENTRIES {
        list.entries.sort_by_key(|e| std::cmp::Reverse(e.until));
        list.entries.truncate(MAX_ENTRIES);
    }
    expired
}

/// Update the file at `path`: drop expired entries, add `add`. The file is rewritten only
/// when something changed.
pub fn update(path: &Path, layout: Layout, add: &[Entry], now: u64) -> Result<Update> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).temp(format!("unable to read {}", path.display())),
    };
    let mut list = parse(&text, layout);
    let before = list.entries.clone();
    let expired = merge(&mut list, add, now);
    if list.entries != before {
        write_atomic(path, render(&list, layout).as_bytes(), MODE)
            .temp(format!("unable to write {}", path.display()))?;
    }
    Ok(Update {
        expired,
        next: list.entries.iter().map(|e| e.until).min(),
        bad: list.bad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, key: &str, until: u64) -> Entry {
        Entry {
            kind: kind.into(),
            key: key.into(),
            until,
        }
    }

    #[test]
    fn parse_render_round_trip() {
        let text = "# c\nsender a@b.test 100\nip 192.0.2.1 200\nauth alice 300\nbogus line\n";
        let list = parse(text, Layout::Blocked);
        assert_eq!(
            list.entries,
            vec![
                entry("sender", "a@b.test", 100),
                entry("ip", "192.0.2.1", 200),
                entry("auth", "alice", 300)
            ]
        );
        assert_eq!(list.bad, vec!["bogus line"]);
        assert_eq!(
            parse(&render(&list, Layout::Blocked), Layout::Blocked),
            list
        );
        let hold = parse("alice 300\nbob\n", Layout::Hold);
        assert_eq!(hold.entries, vec![entry("", "alice", 300)]);
        assert!(render(&hold, Layout::Hold).contains("\nalice 300\nbob\n"));
    }

    #[test]
    fn merge_expires_and_extends() {
        let mut list = parse("sender a@b 100\nsender c@d 300\n", Layout::Blocked);
        let expired = merge(
            &mut list,
            &[entry("sender", "c@d", 250), entry("ip", "1.2.3.4", 400)],
            100,
        );
        assert_eq!(expired, vec![entry("sender", "a@b", 100)]);
        assert_eq!(
            list.entries,
            vec![entry("sender", "c@d", 300), entry("ip", "1.2.3.4", 400)]
        );
    }

    #[test]
    fn update_writes_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BLOCKED);
        let u = update(&path, Layout::Blocked, &[], 10).unwrap();
        assert_eq!(u.next, None);
        assert!(!path.exists(), "nothing to write");
        let u = update(&path, Layout::Blocked, &[entry("ip", "192.0.2.1", 50)], 10).unwrap();
        assert_eq!(u.next, Some(50));
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("\nip 192.0.2.1 50\n"), "{text}");
        let u = update(&path, Layout::Blocked, &[], 50).unwrap();
        assert_eq!(u.expired, vec![entry("ip", "192.0.2.1", 50)]);
        assert!(!fs::read_to_string(&path).unwrap().contains("192.0.2.1"));
    }
}
