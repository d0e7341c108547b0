//! qmail-queue's custom error: how a program in `$QMAILQUEUE` position tells the SMTP
//! server *why* it refused a message, so the client reads more than "mail server
//! permanently rejected message".
//!
//! The convention is notqmail's (and the older qmail-queue-custom-error patch that
//! simscan and qmail-scanner used): the caller gives the queue program a pipe as
//! descriptor [`FD`] (6); the program writes one record — `D` (permanent) or `Z`
//! (temporary), then the reply text — and exits [`EXIT`] (82). The caller answers
//! `554 TEXT` for `D`, `451 TEXT` for `Z`. A program that does not know the convention
//! never writes to descriptor 6 and is not affected by it.
//!
//! postern's extension: a text that begins with a reply code of its class — `550`, `552`,
//! `553` or `554` after `D`, `450`, `451` or `452` after `Z` — is answered with that code
//! (`D550 5.7.1 …` → `550 5.7.1 …`), so a policy refusal can say 550 as RFC 7372 and the
//! big providers do. A qmail-smtpd with the classic patch would answer `554 550 5.7.1 …`:
//! still a permanent refusal, only uglier.
//!
//! The text reaches a stranger's SMTP client, so both sides [`clean`] it: printable ASCII
//! only, one line, at most [`MAX_TEXT`] characters; the caller reads at most
//! [`MAX_RECORD`] bytes. postern-scan writes the record ([`record`], [`take_pipe`]);
//! postern-smtpd reads it ([`reply`]).

use std::fs::File;
use std::os::fd::RawFd;

/// The descriptor the caller's pipe is on, in the queue program.
pub const FD: RawFd = 6;
/// The exit code that says "the reason is on descriptor 6".
pub const EXIT: i32 = 82;
/// Longest reply text kept (the rest is cut): one SMTP reply line with room to spare.
pub const MAX_TEXT: usize = 200;
/// Most bytes the caller reads from the pipe.
pub const MAX_RECORD: usize = 1024;

/// Whether the refusal is for good (`D`, 554) or for now (`Z`, 451).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Permanent,
    Temporary,
}

impl Class {
    fn letter(self) -> u8 {
        match self {
            Class::Permanent => b'D',
            Class::Temporary => b'Z',
        }
    }

    /// The SMTP reply code and the default enhanced status code (RFC 3463).
    fn codes(self) -> (&'static str, &'static str) {
        match self {
            Class::Permanent => ("554", "5.3.0"),
            Class::Temporary => ("451", "4.3.0"),
        }
    }

    /// The reply codes a record of this class may choose instead of the default: the
    /// ones RFC 5321 allows as an answer to the end of DATA.
    fn allowed_codes(self) -> &'static [&'static str] {
        match self {
            Class::Permanent => &["550", "552", "553", "554"],
            Class::Temporary => &["450", "451", "452"],
        }
    }
}

/// `text` made safe to send to a client: every byte that is not printable ASCII (CR, LF,
/// NUL, escapes, UTF-8) becomes a space, runs of spaces become one, and the result is
/// trimmed and cut at [`MAX_TEXT`] characters.
pub fn clean(text: impl AsRef<[u8]>) -> String {
    let mut out = String::new();
    for &b in text.as_ref() {
        let c = if (0x21..=0x7e).contains(&b) {
            b as char
        } else {
            ' '
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() == MAX_TEXT {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// The record a queue program writes on descriptor 6.
pub fn record(class: Class, text: &str) -> Vec<u8> {
    let mut out = vec![class.letter()];
    out.extend_from_slice(clean(text).as_bytes());
    out
}

/// Whether `text` starts with an enhanced status code of `class` (`5.7.1 `).
fn has_status_code(class: Class, text: &str) -> bool {
    let Some((code, _)) = text.split_once(' ') else {
        return false;
    };
    let mut parts = code.split('.');
    let first = parts.next();
    let rest: Vec<&str> = parts.collect();
    first == Some(&class.codes().1[..1])
        && rest.len() == 2
        && rest
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The SMTP reply for a record read from the pipe, or `None` when it is not one (empty,
/// no `D`/`Z`, no text): the caller then answers as for any unknown exit code. A reply
/// code of the record's class in front of the text is used instead of 554 / 451; text
/// without an enhanced status code of its class gets `5.3.0` / `4.3.0` in front.
pub fn reply(record: &[u8]) -> Option<String> {
    let class = match record.first()? {
        b'D' => Class::Permanent,
        b'Z' => Class::Temporary,
        _ => return None,
    };
    let text = clean(&record[1..record.len().min(MAX_RECORD)]);
    let (default_code, status) = class.codes();
    let (code, text) = match text.split_once(' ') {
        Some((c, rest)) if class.allowed_codes().contains(&c) => (c, rest.to_string()),
        _ => (default_code, text),
    };
    if text.is_empty() {
        return None;
    }
    if has_status_code(class, &text) {
        Some(format!("{code} {text}"))
    } else {
        Some(format!("{code} {status} {text}"))
    }
}

/// The queue program's side: descriptor 6 as a file, when the caller gave a pipe open for
/// writing there (and only then: a descriptor 6 that is a file, a socket or closed is
/// none of ours). Marked close-on-exec, so scanners and postern-queue do not inherit it.
/// Call once, before starting any child.
pub fn take_pipe() -> Option<File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::sys::stat::{fstat, SFlag};
    let fd = crate::sys::adopt_inherited_fd(FD).ok()?;
    let stat = fstat(&fd).ok()?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
        return None;
    }
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).ok()?);
    let mode = flags & OFlag::O_ACCMODE;
    if mode != OFlag::O_WRONLY && mode != OFlag::O_RDWR {
        return None;
    }
    Some(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_into_a_reply() {
        let r = record(
            Class::Permanent,
            "5.7.1 message refused: Executable File (.exe)",
        );
        assert_eq!(r, b"D5.7.1 message refused: Executable File (.exe)");
        assert_eq!(
            reply(&r).unwrap(),
            "554 5.7.1 message refused: Executable File (.exe)"
        );
        let r = record(Class::Temporary, "4.7.0 try again later");
        assert_eq!(reply(&r).unwrap(), "451 4.7.0 try again later");
    }

    #[test]
    fn text_without_a_status_code_of_its_class_gets_the_default() {
        assert_eq!(reply(b"Dvirus found").unwrap(), "554 5.3.0 virus found");
        assert_eq!(
            reply(b"D4.7.1 wrong class").unwrap(),
            "554 5.3.0 4.7.1 wrong class"
        );
        assert_eq!(
            reply(b"Zbusy (#4.3.0)\n").unwrap(),
            "451 4.3.0 busy (#4.3.0)"
        );
        assert_eq!(
            reply(b"D5.7.1234 too long").unwrap(),
            "554 5.3.0 5.7.1234 too long"
        );
    }

    #[test]
    fn hostile_text_cannot_add_a_reply_line_or_run_long() {
        let r = reply(b"D5.7.1 no\r\n250 2.0.0 ok: queued\x00\x1b[31m caf\xc3\xa9").unwrap();
        assert_eq!(r, "554 5.7.1 no 250 2.0.0 ok: queued [31m caf");
        assert!(!r.contains(['\r', '\n']));
        let long = format!("D5.7.1 {}", "x".repeat(5000));
        let r = reply(long.as_bytes()).unwrap();
        assert_eq!(r.len(), 4 + MAX_TEXT);
        assert_eq!(clean(format!("a{}b", " ".repeat(300))), "a b");
        assert_eq!(clean(" \t padded \r\n"), "padded");
    }

    #[test]
    fn a_reply_code_of_its_class_replaces_the_default() {
        assert_eq!(
            reply(b"D550 5.7.1 DMARC policy of example.org is reject").unwrap(),
            "550 5.7.1 DMARC policy of example.org is reject"
        );
        assert_eq!(reply(b"D552 too big").unwrap(), "552 5.3.0 too big");
        assert_eq!(reply(b"Z450 4.7.1 later").unwrap(), "450 4.7.1 later");
        // A code of the other class, or one not allowed after DATA, is only text.
        assert_eq!(reply(b"D451 4.7.1 x").unwrap(), "554 5.3.0 451 4.7.1 x");
        assert_eq!(reply(b"Z550 5.7.1 x").unwrap(), "451 4.3.0 550 5.7.1 x");
        assert_eq!(reply(b"D250 2.0.0 ok").unwrap(), "554 5.3.0 250 2.0.0 ok");
        assert_eq!(reply(b"D551 5.7.1 x").unwrap(), "554 5.3.0 551 5.7.1 x");
        // A code and nothing after it is not a reason.
        assert_eq!(reply(b"D550"), Some("554 5.3.0 550".to_string()));
        assert_eq!(reply(b"D550 "), Some("554 5.3.0 550".to_string()));
    }

    #[test]
    fn not_a_record() {
        for bad in [&b""[..], b"D", b"D \r\n", b"Kfine", b"queued"] {
            assert_eq!(reply(bad), None, "{bad:?}");
        }
    }
}
