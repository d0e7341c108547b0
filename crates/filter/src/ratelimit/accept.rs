//! Reading postern-smtpd's `event=accept` log lines (docs/postern-smtpd.md), as multilog
//! stores them:
//!
//! ```text
//! @4000000065a1b2c30a1b2c3d event=accept ip=192.0.2.7 helo=mx.test from=<a@b.test> rcpts=3 size=1234 tls=yes auth=- qp=4242
//! ```
//!
//! Only `event`, `ip`, `from`, `rcpts` and `auth` matter here. `auth` absent, empty or
//! `-` means the client did not authenticate. Every other line is ignored. Senders and
//! logins are lower-cased: logins are account names, which the user database
//! lower-cases, so `Alice@…` and `alice@…` are one account with one counter.

use postern_common::logline::{get, parse};
use postern_common::tai64n::Tai64n;

/// Longest key we count; longer ones are cut (addresses are at most 1002 bytes anyway).
pub const MAX_KEY: usize = 320;

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// The multilog stamp, as unix seconds, when the line has one.
    pub stamp: Option<u64>,
    pub ip: Option<String>,
    /// The envelope sender, lower-cased, without `<>`; `None` for the null sender.
    pub sender: Option<String>,
    /// The authenticated login, lower-cased.
    pub auth: Option<String>,
    pub rcpts: u32,
}

/// A key as it may appear in the contract files: printable ASCII, no spaces, bounded.
pub fn clean_key(text: &str) -> Option<String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut key = text.to_string();
    key.truncate(MAX_KEY);
    Some(key)
}

/// The accepted message a log line records, or `None` for any other line.
pub fn parse_accept(line: &str) -> Option<Accept> {
    let fields = parse(line);
    if get(&fields, "event") != Some("accept") {
        return None;
    }
    let stamp = Tai64n::parse_label(line.as_bytes())
        .map(|t| t.unix_secs())
        .and_then(|s| u64::try_from(s).ok());
    let sender = get(&fields, "from")
        .map(|f| f.trim_start_matches('<').trim_end_matches('>'))
        .and_then(|f| clean_key(&f.to_ascii_lowercase()));
    let auth = get(&fields, "auth")
        .filter(|a| *a != "-")
        .and_then(|a| clean_key(&a.to_ascii_lowercase()));
    let ip = get(&fields, "ip").and_then(clean_key);
    let rcpts = get(&fields, "rcpts")
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    Some(Accept {
        stamp,
        ip,
        sender,
        auth,
        rcpts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_common::logline::LogLine;

    const LINE: &str = "@400000006563a1b20c0ffee0 event=accept ip=192.0.2.7 helo=mx.test \
        from=<Boss@Example.TEST> rcpts=3 size=1234 tls=yes auth=- qp=4242\n";

    #[test]
    fn reads_the_smtpd_accept_line() {
        let a = parse_accept(LINE).unwrap();
        assert_eq!(a.stamp, Some(0x6563a1b2 - 10));
        assert_eq!(a.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(a.sender.as_deref(), Some("boss@example.test"));
        assert_eq!(a.auth, None, "auth=- is not a user");
        assert_eq!(a.rcpts, 3);
    }

    #[test]
    fn authenticated_unstamped_and_null_sender() {
        let line = LogLine::event("accept")
            .kv("ip", "::1")
            .kv("from", "<>")
            .kv("rcpts", 1)
            .kv("auth", "alice@example.test");
        let a = parse_accept(line.as_str()).unwrap();
        assert_eq!(a.stamp, None);
        assert_eq!(a.sender, None, "the null sender is not counted");
        assert_eq!(a.auth.as_deref(), Some("alice@example.test"));
        let empty = parse_accept("event=accept ip=192.0.2.1 from=<a@b> auth=\"\"").unwrap();
        assert_eq!(empty.auth, None);
        assert_eq!(empty.rcpts, 1, "rcpts missing counts as one");
    }

    #[test]
    fn other_lines_are_ignored() {
        for line in [
            "",
            "@400000006563a1b20c0ffee0 event=reject ip=1.2.3.4 reason=rbl",
            "event=connect ip=1.2.3.4",
            "garbage without pairs",
            "@4000 event=accepted",
        ] {
            assert_eq!(parse_accept(line), None, "{line}");
        }
    }

    #[test]
    fn keys_that_cannot_be_written_are_dropped() {
        let line = LogLine::event("accept")
            .kv("ip", "192.0.2.1")
            .kv("from", "<a b@c.test>")
            .kv("auth", "x\ny");
        let a = parse_accept(line.as_str()).unwrap();
        assert_eq!(a.sender, None);
        assert_eq!(a.auth, None);
        assert_eq!(a.ip.as_deref(), Some("192.0.2.1"));
        let long = format!("event=accept from=<{}@b.test>", "x".repeat(2000));
        assert_eq!(parse_accept(&long).unwrap().sender.unwrap().len(), MAX_KEY);
    }

    #[test]
    fn auth_logins_bypass_ratelimit_blocks_by_changing_case() {
        for typed in [
            "alice@example.test",
            "Alice@Example.TEST",
            "ALICE@EXAMPLE.TEST",
        ] {
            let line = LogLine::event("accept")
                .kv("ip", "192.0.2.1")
                .kv("from", "<a@b.test>")
                .kv("auth", typed);
            let a = parse_accept(line.as_str()).unwrap();
            assert_eq!(a.auth.as_deref(), Some("alice@example.test"), "{typed}");
        }
    }
}
