//! Keeping the files other programs honour — `control/ratelimit.blocked` and
//! `control/ratelimit.holdauth`, whose format is [`postern_wire::ratelimit_lists`] — as
//! lists of entries that expire: postern-smtpd refuses MAIL with `451 4.7.1` while a
//! blocked entry is in force; postern-send holds the queued outbound mail of a held user.
//!
//! The file on disk is the state: every update reads it, drops what expired, adds what
//! is new (a key already listed keeps the later `UNTIL`), and replaces it atomically —
//! so an admin who deletes a line to lift a block is not overruled. Lines we cannot read
//! are kept as they are (and reported), never silently dropped.

use postern_common::atomic::write_atomic;
use postern_common::{Result, ResultExt};
use postern_wire::ratelimit_lists::{self, Entry, Layout, List};
use std::fs;
use std::io;
use std::path::Path;

/// Mode of the files: smtpd and send run as other users and must read them.
pub const MODE: u32 = 0o644;
/// Most entries kept in one file; past it the ones that expire soonest go.
pub const MAX_ENTRIES: usize = 100_000;

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
    let mut list = ratelimit_lists::read(&text, layout);
    let before = list.entries.clone();
    let expired = merge(&mut list, add, now);
    if list.entries != before {
        write_atomic(
            path,
            ratelimit_lists::render(&list, layout).as_bytes(),
            MODE,
        )
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
    fn merge_expires_and_extends() {
        let mut list = ratelimit_lists::read("sender a@b 100\nsender c@d 300\n", Layout::Blocked);
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
        let path = dir.path().join(ratelimit_lists::BLOCKED);
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
