//! The rate limiter's holds (docs/postern-ratelimit.md, *Contract: control/holdbulk* and
//! *Contract: control/ratelimit.holdauth*), written by postern-ratelimit and read here:
//!
//! - `control/holdbulk`: while it exists and its first line (`UNTIL`, unix time) is in
//!   the future — or is not a number at all — non-priority inbound mail is held;
//! - `control/ratelimit.holdauth`: `USER UNTIL` lines; while one is in force, the mail
//!   that user submitted is held.
//!
//! Held mail stays queued: no delivery, no bounce, and the time on hold does not count
//! towards `queuelifetime` (the state file's `held=`). This module only reads the files
//! and answers "is this message held, and why"; the scheduler parks and releases.

use postern_common::control::Control;
use postern_common::{Error, Result};
use postern_wire::ratelimit_lists::{self, Layout};
use std::collections::HashMap;
use std::io::Read;

/// The hold files, in `control/`.
pub const HOLDBULK: &str = "holdbulk";
pub const HOLDAUTH: &str = ratelimit_lists::HOLDAUTH;
/// The files are reread at least this often (another daemon writes them), besides on
/// SIGHUP and when an entry in force runs out.
pub const REREAD_SECS: u64 = 60;
/// Most bytes read of either file.
pub const MAX_FILE: u64 = 1024 * 1024;
/// Most `USER UNTIL` entries kept from `ratelimit.holdauth`.
pub const MAX_USERS: usize = 10_000;
/// Longest user name compared (postern-ratelimit cuts keys at 320 bytes).
pub const MAX_USER: usize = 320;
/// The envelope sender of double bounces (never held, like every bounce).
const DOUBLE_BOUNCE_SENDER: &str = "#@[]";

/// The state of `control/holdbulk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bulk {
    /// No file: nothing held.
    #[default]
    Off,
    /// Held while `now < UNTIL`.
    Until(u64),
    /// The first line is not a number (an admin's file), or the file cannot be read
    /// (fail closed): held while the file is there.
    Always,
}

/// Why a message is held (the `reason=` of `event=hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Bulk,
    Auth,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Bulk => "holdbulk",
            Reason::Auth => "holdauth",
        }
    }
}

/// Both files as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    pub bulk: Bulk,
    /// Lower-cased user → UNTIL.
    pub auth: HashMap<String, u64>,
}

/// `control/holdbulk`'s text: the first line, trimmed, is `UNTIL` or anything else.
pub fn parse_bulk(text: &[u8]) -> Bulk {
    let first = text.split(|&b| b == b'\n').next().unwrap_or(b"");
    std::str::from_utf8(first)
        .ok()
        .and_then(|l| l.trim().parse::<u64>().ok())
        .map_or(Bulk::Always, Bulk::Until)
}

/// `control/ratelimit.holdauth`'s text: `USER UNTIL` lines
/// ([`postern_wire::ratelimit_lists`]); comments, blank lines and lines that cannot be
/// read (not UTF-8, not an entry) are skipped (the contract's rule for readers).
pub fn parse_auth(text: &[u8]) -> HashMap<String, u64> {
    let text: Vec<&str> = text
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .collect();
    let mut out = HashMap::new();
    for e in ratelimit_lists::read(&text.join("\n"), Layout::Hold).entries {
        if e.key.len() > MAX_USER || out.len() >= MAX_USERS {
            continue;
        }
        let until = out.entry(e.key.to_ascii_lowercase()).or_insert(e.until);
        *until = (*until).max(e.until);
    }
    out
}

/// A control file's bytes: `None` when it does not exist.
fn read(control: &Control, name: &str) -> Result<Option<Vec<u8>>> {
    let path = control.path(name);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("unable to read control/{name}"), &e)),
    };
    let mut text = Vec::new();
    file.take(MAX_FILE)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(format!("unable to read control/{name}"), &e))?;
    Ok(Some(text))
}

impl Holds {
    /// Read both files. Trouble is returned beside the result, never instead of it: an
    /// unreadable `holdbulk` holds bulk mail (fail closed: priority mail still flows), an
    /// unreadable `ratelimit.holdauth` keeps the entries of `previous`.
    pub fn load(control: &Control, previous: &Holds) -> (Holds, Vec<Error>) {
        let mut errors = Vec::new();
        let bulk = match read(control, HOLDBULK) {
            Ok(None) => Bulk::Off,
            Ok(Some(text)) => parse_bulk(&text),
            Err(e) => {
                errors.push(e);
                Bulk::Always
            }
        };
        let auth = match read(control, HOLDAUTH) {
            Ok(None) => HashMap::new(),
            Ok(Some(text)) => parse_auth(&text),
            Err(e) => {
                errors.push(e);
                previous.auth.clone()
            }
        };
        (Holds { bulk, auth }, errors)
    }

    pub fn bulk_in_force(&self, now: u64) -> bool {
        match self.bulk {
            Bulk::Off => false,
            Bulk::Until(until) => now < until,
            Bulk::Always => true,
        }
    }

    /// Whether mail submitted by `user` (any case) is held at `now`.
    pub fn auth_in_force(&self, user: &str, now: u64) -> bool {
        !user.is_empty()
            && self
                .auth
                .get(&user.to_ascii_lowercase())
                .is_some_and(|&until| now < until)
    }

    /// The earliest time after `now` at which an entry in force runs out.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        let bulk = match self.bulk {
            Bulk::Until(u) if u > now => Some(u),
            _ => None,
        };
        self.auth
            .values()
            .copied()
            .filter(|&u| u > now)
            .chain(bulk)
            .min()
    }
}

/// What the hold rules look at in a message.
pub struct Message<'a> {
    /// Submitted by a trusted client: the queue file has `Ipriority=1`. (Not the
    /// priority lane as a whole: `prioritysenders`/`prioritysubject` match what any
    /// outsider can write, so they never release mail from `holdbulk`.)
    pub trusted: bool,
    /// The envelope sender.
    pub sender: &'a str,
    /// The authenticated submitter, when the queue recorded one (`Iauth=`).
    pub auth: Option<&'a str>,
    /// Recipients, with whether each is local (a hosted domain).
    pub rcpts: Vec<(&'a str, bool)>,
}

/// A priority recipient, which `holdbulk` never holds: `postmaster@` or `abuse@` a
/// hosted domain, or an `alertto` address. Only that recipient goes; the others of the
/// same message stay held.
pub fn priority_rcpt(addr: &str, local: bool, alert_to: &[String]) -> bool {
    let local_part = addr.rsplit_once('@').map_or(addr, |(l, _)| l);
    (local
        && (local_part.eq_ignore_ascii_case("postmaster")
            || local_part.eq_ignore_ascii_case("abuse")))
        || alert_to.iter().any(|a| a.eq_ignore_ascii_case(addr))
}

impl Message<'_> {
    /// Who submitted the message, for `ratelimit.holdauth`: the recorded authenticated
    /// user, else the envelope sender (virtual users authenticate with their address).
    pub fn submitter(&self) -> &str {
        self.auth.unwrap_or(self.sender)
    }

    /// Whether `holdbulk` lets the whole message go: a trusted submission
    /// (`Ipriority=1`), or what looks like a bounce — a null or double-bounce sender and
    /// exactly one recipient (a real bounce has one; anybody can send from `<>`, so a
    /// null-sender message to several recipients is held like any other). Priority
    /// recipients of a held message still get it (see [`priority_rcpt`]).
    pub fn is_priority(&self) -> bool {
        self.trusted
            || ((self.sender.is_empty() || self.sender == DOUBLE_BOUNCE_SENDER)
                && self.rcpts.len() == 1)
    }

    /// Whether `holds` keep this message at `now`, and why.
    pub fn held(&self, holds: &Holds, now: u64) -> Option<Reason> {
        if holds.auth_in_force(self.submitter(), now) {
            return Some(Reason::Auth);
        }
        if holds.bulk_in_force(now) && !self.is_priority() {
            // Held, except its priority recipients (the scheduler sends to those).
            return Some(Reason::Bulk);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdbulk_first_line_is_until_or_hold() {
        assert_eq!(
            parse_bulk(b"1767225600\n# postern-ratelimit: ...\n"),
            Bulk::Until(1767225600)
        );
        assert_eq!(parse_bulk(b" 42 \n"), Bulk::Until(42));
        assert_eq!(parse_bulk(b"hold everything\n1767225600\n"), Bulk::Always);
        assert_eq!(parse_bulk(b""), Bulk::Always);
        let h = Holds {
            bulk: Bulk::Until(100),
            auth: HashMap::new(),
        };
        assert!(h.bulk_in_force(99) && !h.bulk_in_force(100));
        assert!(!Holds::default().bulk_in_force(0));
    }

    #[test]
    fn holdauth_lines_and_expiry() {
        let a = parse_auth(
            b"# Written by postern-ratelimit. USER UNTIL:\n\
              Alice@Example.test 200\n\
              \n\
              bob@x.test notanumber\n\
              carol@x.test 1 extra\n\
              alice@example.test 150\n\
              dave@x.test 50\n",
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a["alice@example.test"], 200);
        let h = Holds {
            bulk: Bulk::Until(120),
            auth: a,
        };
        assert!(h.auth_in_force("ALICE@example.test", 199));
        assert!(!h.auth_in_force("alice@example.test", 200));
        assert!(!h.auth_in_force("dave@x.test", 60));
        assert!(!h.auth_in_force("", 0));
        assert_eq!(h.next_expiry(60), Some(120));
        assert_eq!(h.next_expiry(120), Some(200));
        assert_eq!(h.next_expiry(200), None);
    }

    #[test]
    fn priority_mail_is_never_held_by_holdbulk() {
        let holds = Holds {
            bulk: Bulk::Always,
            auth: parse_auth(b"alice@example.test 1000\n"),
        };
        let alert = vec!["Admin@Elsewhere.test".to_string()];
        let msg = |trusted, sender, rcpt, local| Message {
            trusted,
            sender,
            auth: None,
            rcpts: vec![(rcpt, local)],
        };
        // Held as a message, unless its only recipient is a priority one.
        let held = |m: &Message| {
            m.held(&holds, 10)
                .filter(|_| !m.rcpts.iter().all(|&(a, l)| priority_rcpt(a, l, &alert)))
        };
        assert_eq!(
            held(&msg(false, "spam@far.test", "bob@example.test", true)),
            Some(Reason::Bulk)
        );
        assert_eq!(
            held(&msg(true, "boss@example.test", "x@far.test", false)),
            None
        );
        assert_eq!(held(&msg(false, "", "bob@example.test", true)), None);
        assert_eq!(held(&msg(false, "#@[]", "pm@example.test", true)), None);
        assert_eq!(
            held(&msg(false, "s@far.test", "PostMaster@example.test", true)),
            None
        );
        assert_eq!(
            held(&msg(false, "s@far.test", "abuse@example.test", true)),
            None
        );
        // postmaster@ a domain not hosted here is not ours to protect.
        assert_eq!(
            held(&msg(false, "s@far.test", "postmaster@far.test", false)),
            Some(Reason::Bulk)
        );
        assert_eq!(
            held(&msg(false, "s@far.test", "admin@elsewhere.test", false)),
            None
        );
        // holdauth holds a hijacked account's priority mail too.
        assert_eq!(
            held(&msg(true, "Alice@Example.test", "x@far.test", false)),
            Some(Reason::Auth)
        );
        // The recorded authenticated user wins over the envelope sender.
        let m = Message {
            trusted: true,
            sender: "someone@else.test",
            auth: Some("alice@example.test"),
            rcpts: vec![("x@far.test", false)],
        };
        assert_eq!(held(&m), Some(Reason::Auth));
    }

    /// Regression (holdbulk escape hatches): any null-sender message, or one with a
    /// single postmaster@/abuse@ recipient among others, released the whole message
    /// to every recipient.
    #[test]
    fn holdbulk_escape_hatches_release_only_priority_recipients() {
        let holds = Holds {
            bulk: Bulk::Always,
            auth: HashMap::new(),
        };
        let alert = vec!["admin@elsewhere.test".to_string()];
        let msg = |sender, rcpts: Vec<(&'static str, bool)>| Message {
            trusted: false,
            sender,
            auth: None,
            rcpts,
        };
        // A null sender to many: not a bounce, held.
        let m = msg("", vec![("a@example.test", true), ("b@example.test", true)]);
        assert_eq!(m.held(&holds, 10), Some(Reason::Bulk));
        let m = msg(
            "#@[]",
            vec![("a@example.test", true), ("b@example.test", true)],
        );
        assert_eq!(m.held(&holds, 10), Some(Reason::Bulk));
        // A real bounce (one recipient) flows.
        assert_eq!(
            msg("", vec![("a@example.test", true)]).held(&holds, 10),
            None
        );
        // postmaster@ among others: the message is held; only postmaster@ is released.
        let m = msg(
            "spam@far.test",
            vec![
                ("postmaster@example.test", true),
                ("bob@example.test", true),
            ],
        );
        assert_eq!(m.held(&holds, 10), Some(Reason::Bulk));
        let released: Vec<&str> = m
            .rcpts
            .iter()
            .filter(|&&(a, l)| priority_rcpt(a, l, &alert))
            .map(|&(a, _)| a)
            .collect();
        assert_eq!(released, ["postmaster@example.test"]);
        assert!(priority_rcpt("Abuse@example.test", true, &alert));
        assert!(priority_rcpt("ADMIN@elsewhere.test", false, &alert));
        assert!(!priority_rcpt("abuse@far.test", false, &alert));
        // Only a trusted submission releases the whole message.
        let mut m = msg("boss@example.test", vec![("x@far.test", false)]);
        assert_eq!(m.held(&holds, 10), Some(Reason::Bulk));
        m.trusted = true;
        assert_eq!(m.held(&holds, 10), None);
    }
}
