//! `control/ratelimit.blocked` and `control/ratelimit.holdauth` (docs/postern-ratelimit.md,
//! *Contract: …*): written by postern-ratelimit, read by postern-smtpd and postern-send.
//!
//! - `ratelimit.blocked`: `KIND KEY UNTIL` lines (`sender ADDR[/NET] UNTIL`,
//!   `ip IP UNTIL`, `auth USER UNTIL`); the keys and the rule that matches a session
//!   against them are in [`keys`].
//! - `ratelimit.holdauth`: `USER UNTIL` lines.
//!
//! `UNTIL` is unix time in seconds; an entry is in force while `now < UNTIL`. Comments
//! and blank lines follow the control-file rule ([`postern_common::control::parse_lines`]).
//! Fields are written separated by one space and read separated by any run of spaces or
//! tabs (a hand-edited line means what it says). A line that is not an entry is kept
//! aside, verbatim, in [`List::bad`]: readers ignore it, postern-ratelimit writes it back.
//! What to do with entries (expiry, lower-casing for comparison, limits) is the caller's.

pub mod keys;

/// The blocked list, in `control/`.
pub const BLOCKED: &str = "ratelimit.blocked";
/// The held users list, in `control/`.
pub const HOLDAUTH: &str = "ratelimit.holdauth";
/// The kinds of key in the blocked list.
pub const KINDS: [&str; 3] = ["sender", "ip", "auth"];

/// Which of the two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `KIND KEY UNTIL`
    Blocked,
    /// `USER UNTIL`
    Hold,
}

/// One line of either file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `sender`, `ip` or `auth`; empty in the hold list.
    pub kind: String,
    /// As written (not lower-cased).
    pub key: String,
    pub until: u64,
}

impl Entry {
    /// Whether the entry is in force at `now` (unix seconds).
    pub fn in_force(&self, now: u64) -> bool {
        now < self.until
    }
}

/// A file's entries, and the lines that were not entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    pub entries: Vec<Entry>,
    pub bad: Vec<String>,
}

impl Layout {
    /// The comment the writer puts first.
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

/// One meaningful line (trimmed, not a comment) as an entry, or `None` when it is not one.
pub fn entry(line: &str, layout: Layout) -> Option<Entry> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    match (layout, words.as_slice()) {
        (Layout::Blocked, [kind, key, until]) if KINDS.contains(kind) => {
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
    }
}

/// Read a file's text: its entries in order, and the lines that are not entries.
pub fn read(text: &str, layout: Layout) -> List {
    let mut list = List::default();
    for line in postern_common::control::parse_lines(text) {
        match entry(&line.text, layout) {
            Some(e) => list.entries.push(e),
            None => list.bad.push(line.text),
        }
    }
    list
}

/// The file's text for `list`: the header comment, the entries, then the bad lines as
/// they were.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(kind: &str, key: &str, until: u64) -> Entry {
        Entry {
            kind: kind.into(),
            key: key.into(),
            until,
        }
    }

    #[test]
    fn read_render_round_trip() {
        let text = "# c\nsender a@b.test 100\nip 192.0.2.1 200\nauth alice 300\nbogus line\n";
        let list = read(text, Layout::Blocked);
        assert_eq!(
            list.entries,
            vec![
                entry("sender", "a@b.test", 100),
                entry("ip", "192.0.2.1", 200),
                entry("auth", "alice", 300)
            ]
        );
        assert_eq!(list.bad, vec!["bogus line"]);
        assert_eq!(read(&render(&list, Layout::Blocked), Layout::Blocked), list);
        let hold = read("alice 300\nbob\n", Layout::Hold);
        assert_eq!(hold.entries, vec![entry("", "alice", 300)]);
        assert!(render(&hold, Layout::Hold).contains("\nalice 300\nbob\n"));
    }

    #[test]
    fn what_is_not_an_entry() {
        let text =
            "sender broken\nfoo x 3000\nip 192.0.2.1 soon\nip a b 1\n  ip\t192.0.2.9  7 \r\n";
        let list = read(text, Layout::Blocked);
        assert_eq!(list.entries, vec![entry("ip", "192.0.2.9", 7)]);
        assert_eq!(list.bad.len(), 4);
        let hold = read(
            "a 1 extra\nb notanumber\n# c 1\n\n Alice@X.test 5\n",
            Layout::Hold,
        );
        assert_eq!(hold.entries, vec![entry("", "Alice@X.test", 5)]);
        assert_eq!(hold.bad, vec!["a 1 extra", "b notanumber"]);
        assert!(entry("", "k", 5).in_force(4) && !entry("", "k", 5).in_force(5));
    }

    /// A key as postern-ratelimit writes it: printable ASCII without spaces, not starting
    /// a comment.
    fn key() -> impl Strategy<Value = String> {
        "[!-\"$-~][!-~]{0,40}"
    }

    fn layout() -> impl Strategy<Value = Layout> {
        prop_oneof![Just(Layout::Blocked), Just(Layout::Hold)]
    }

    proptest! {
        /// Entries written are read back as they were.
        #[test]
        fn written_entries_read_back(
            layout in layout(),
            raw in proptest::collection::vec((0usize..3, key(), any::<u64>()), 0..20),
        ) {
            let entries: Vec<Entry> = raw
                .into_iter()
                .map(|(k, key, until)| Entry {
                    kind: match layout {
                        Layout::Blocked => KINDS[k].to_string(),
                        Layout::Hold => String::new(),
                    },
                    key,
                    until,
                })
                .collect();
            let list = List { entries, bad: Vec::new() };
            prop_assert_eq!(read(&render(&list, layout), layout), list);
        }

        /// Over arbitrary bytes: what is read, written and read again is the same list
        /// (the bad lines included), and no line is lost.
        #[test]
        fn arbitrary_text_round_trips(
            layout in layout(),
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..400),
                "((sender|ip|auth|#)?[ \t]{0,2}[!-~]{0,8}[ \t]{0,2}[0-9a]{0,4}[ \t]{0,2}[0-9]{0,2}\r?\n){0,8}"
                    .prop_map(String::into_bytes),
            ],
        ) {
            let text = String::from_utf8_lossy(&bytes);
            let list = read(&text, layout);
            let meaningful = postern_common::control::parse_lines(&text).len();
            prop_assert_eq!(list.entries.len() + list.bad.len(), meaningful);
            prop_assert_eq!(read(&render(&list, layout), layout), list);
        }
    }
}
