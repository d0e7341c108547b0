//! What each log line means to the report: the one table that maps the producers' events
//! (their `event=… key=value` lines, see docs/posternctl.md) to what is counted. When a
//! producer changes an event or a reason, this table — and the matching table in
//! docs/posternctl.md — is the only place to change.
//!
//! A line with an event the table does not know is counted as "other", never an error.

use crate::audit::relay::{FOREIGN, PROBE_HELO, PROBE_LOCAL};
use postern_common::logline;

/// Why mail or a client was refused, as the report groups it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Relay,
    UnknownUser,
    Rbl,
    BadSender,
    Virus,
    Spam,
    ContentRule,
    Mime,
    RateLimit,
    AuthFailure,
    AuthRequired,
    AccessRule,
    Pregreet,
    Other,
}

impl Category {
    /// Every category, in the order reports show them.
    pub const ALL: [Category; 14] = [
        Category::Relay,
        Category::UnknownUser,
        Category::Rbl,
        Category::BadSender,
        Category::Virus,
        Category::Spam,
        Category::ContentRule,
        Category::Mime,
        Category::RateLimit,
        Category::AuthFailure,
        Category::AuthRequired,
        Category::AccessRule,
        Category::Pregreet,
        Category::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Category::Relay => "relay",
            Category::UnknownUser => "unknown user",
            Category::Rbl => "RBL",
            Category::BadSender => "bad sender",
            Category::Virus => "virus",
            Category::Spam => "spam",
            Category::ContentRule => "content rule",
            Category::Mime => "MIME structure",
            Category::RateLimit => "rate limit",
            Category::AuthFailure => "AUTH failure",
            Category::AuthRequired => "AUTH required",
            Category::AccessRule => "access rule",
            Category::Pregreet => "talked first",
            Category::Other => "other",
        }
    }

    /// A short word for the one-line `--follow` summary.
    pub fn word(self) -> &'static str {
        match self {
            Category::Relay => "relay",
            Category::UnknownUser => "user",
            Category::Rbl => "rbl",
            Category::BadSender => "sender",
            Category::Virus => "virus",
            Category::Spam => "spam",
            Category::ContentRule => "content",
            Category::Mime => "mime",
            Category::RateLimit => "ratelimit",
            Category::AuthFailure => "auth",
            Category::AuthRequired => "authreq",
            Category::AccessRule => "access",
            Category::Pregreet => "pregreet",
            Category::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        Category::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }

    /// Whether a refusal of this category puts the client among the "blocked IPs". A
    /// submission client that tried MAIL before AUTH was told to log in, not blocked.
    pub fn blocks(self) -> bool {
        self != Category::AuthRequired
    }
}

/// What a line counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// smtpd accepted a message: `ip from rcpts size` — mail in.
    Accept,
    /// postern-send took a message over: `id from rcpts size` — remembers the size.
    Queued,
    /// postern-send finished one attempt: `id rcpt kind=local|remote result=ok|defer|fail`.
    Delivery,
    /// A refusal of this category (the client's `ip`, when the line has one, is "blocked").
    Reject(Category),
    /// postern-checkpassword's own `event=authfail`: the front end (smtpd, popup) usually
    /// logs the same failure right after it; the pair counts once (see `stats`).
    CheckerAuthFail,
    /// smtpd's greylisting answer for one recipient: `result=defer|retried|known|client`.
    Greylist,
    /// Known, and not counted (connections, successful logins, clean scans, …).
    Info,
}

/// `(event, key, value, class)`: the first row whose event matches and, unless `key` is
/// empty, whose `key` has `value` (`*` = any value, or the key missing) decides.
type Row = (&'static str, &'static str, &'static str, Class);

use Category::*;
use Class::{Accept, CheckerAuthFail, Delivery, Greylist, Info, Queued, Reject};

pub const TABLE: &[Row] = &[
    // postern-smtpd
    ("accept", "", "", Accept),
    ("reject", "reason", "relay", Reject(Relay)),
    ("reject", "reason", "unknownuser", Reject(UnknownUser)),
    // The next hop refused the recipient (control/verifyrecipients): unknown there.
    ("reject", "reason", "unverified", Reject(UnknownUser)),
    ("reject", "reason", "badrcptto", Reject(UnknownUser)),
    ("reject", "reason", "badmailfrom", Reject(BadSender)),
    ("reject", "reason", "sendermismatch", Reject(BadSender)),
    ("reject", "reason", "authfail", Reject(AuthFailure)),
    ("reject", "reason", "authrequired", Reject(AuthRequired)),
    ("reject", "reason", "rbl", Reject(Rbl)),
    ("reject", "reason", "ratelimit", Reject(RateLimit)),
    // Follows the unknownuser lines it sums up: counting it would count them twice.
    ("reject", "reason", "dictionary", Info),
    // The filter's own quarantine line counts a content or virus refusal.
    ("reject", "reason", "queue", Info),
    ("reject", "reason", "*", Reject(Other)),
    ("connect", "", "", Info),
    ("disconnect", "", "", Info),
    ("auth", "", "", Info),
    ("starttls", "", "", Info),
    // A callout's answer; its refusal has its own reject line.
    ("verify", "", "", Info),
    // Greylisting: a deferral is not a refusal; counted apart, by result.
    ("greylist", "", "", Greylist),
    // postern-rblsmtpd
    ("rbl", "result", "listed", Reject(Rbl)),
    ("rbl", "*", "*", Info),
    // postern-pregreet: `result=drop` refused a client that talked first; `gone` left.
    ("pregreet", "result", "drop", Reject(Pregreet)),
    ("pregreet", "*", "*", Info),
    // postern-scan: `event=quarantine reason=attachment|header|virus|mime|partial`, one
    // line per refused message (smtpd's `reason=queue` line for it is not counted).
    ("quarantine", "reason", "virus", Reject(Virus)),
    ("quarantine", "reason", "spam", Reject(Spam)),
    ("quarantine", "reason", "mime", Reject(Mime)),
    ("quarantine", "reason", "partial", Reject(Mime)),
    ("quarantine", "*", "*", Reject(ContentRule)),
    ("scan", "", "", Info),
    // A score engine's verdict (`score`, `action`); a refusal has its quarantine line.
    ("spam", "", "", Info),
    ("scanerror", "", "", Info),
    ("alertfail", "", "", Info),
    // postern-ratelimit: `kind=sender|ip|auth key action=warn|block|paranoid|hold|expire`.
    // A warning and the end of a block refuse nothing.
    ("ratelimit", "action", "block", Reject(RateLimit)),
    ("ratelimit", "action", "paranoid", Reject(RateLimit)),
    ("ratelimit", "action", "hold", Reject(RateLimit)),
    ("ratelimit", "*", "*", Info),
    ("follow", "", "", Info),
    ("alert", "", "", Info),
    ("holdbulk", "", "", Info),
    // postern-checkpassword
    ("authfail", "", "", CheckerAuthFail),
    // postern-popup / postern-pop3d
    ("loginfail", "reason", "auth", Reject(AuthFailure)),
    ("loginfail", "*", "*", Info),
    ("login", "", "", Info),
    ("logout", "", "", Info),
    ("refuse", "", "", Info),
    ("timeout", "", "", Info),
    ("discard", "", "", Info),
    // postern-tcpserver
    ("deny", "", "", Reject(AccessRule)),
    ("drop", "", "", Info),
    ("start", "", "", Info),
    ("end", "", "", Info),
    ("error", "", "", Info),
    // postern-send
    ("new", "", "", Queued),
    ("delivery", "", "", Delivery),
    ("retry", "", "", Info),
    ("done", "", "", Info),
    ("bounce", "", "", Info),
    ("hold", "", "", Info),
    ("admin", "", "", Info),
    ("reload", "", "", Info),
    ("corrupt", "", "", Info),
    ("stopping", "", "", Info),
    ("stop", "", "", Info),
    // postern-tlsd
    ("tls", "", "", Info),
    ("tlsfail", "", "", Info),
    ("tlsctl", "", "", Info),
    ("neterror", "", "", Info),
];

/// Lines without `event=` that a producer writes on purpose: `(start of the line, class)`.
pub const TEXT_LINES: &[(&str, Class)] = &[
    // Older postern-scan wrote its refusal again in words after the `quarantine` line,
    // which is the one counted.
    ("postern-scan: refused: ", Info),
];

/// The class of a line without `event=` ([`TEXT_LINES`]), or `None`.
pub fn classify_text(line: &str) -> Option<Class> {
    TEXT_LINES
        .iter()
        .find(|(start, _)| line.starts_with(start))
        .map(|&(_, class)| class)
}

/// Whether a refusal line is `posternctl audit`'s own relay probe: from a loopback
/// address (the probe binds 127.0.0.2 … 254), with the probe's HELO or sender. A
/// stranger cannot pass for it: the address is checked too.
pub fn is_audit_probe(fields: &[(String, String)]) -> bool {
    let loopback = logline::get(fields, "ip")
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    let sender = format!("<{PROBE_LOCAL}@{FOREIGN}>");
    loopback
        && (logline::get(fields, "helo") == Some(PROBE_HELO)
            || logline::get(fields, "from") == Some(sender.as_str()))
}

/// The class of a parsed line, or `None` for a line the table does not know ("other").
pub fn classify(fields: &[(String, String)]) -> Option<Class> {
    let event = logline::get(fields, "event")?;
    TABLE.iter().find_map(|&(ev, key, value, class)| {
        if ev != event {
            return None;
        }
        if key.is_empty() || value == "*" {
            return Some(class);
        }
        (logline::get(fields, key) == Some(value)).then_some(class)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(line: &str) -> Option<Class> {
        classify(&logline::parse(line))
    }

    #[test]
    fn smtpd_reasons_map_to_categories() {
        assert_eq!(
            class("event=reject ip=1.2.3.4 reason=relay rcpt=<a@b>"),
            Some(Reject(Relay))
        );
        assert_eq!(
            class("event=reject ip=1.2.3.4 reason=unknownuser"),
            Some(Reject(UnknownUser))
        );
        assert_eq!(
            class("event=reject ip=1.2.3.4 reason=hops"),
            Some(Reject(Other))
        );
        assert_eq!(class("event=reject ip=1.2.3.4 reason=queue"), Some(Info));
        assert_eq!(class("event=accept ip=1.2.3.4 size=5"), Some(Accept));
        assert_eq!(
            class("event=reject ip=1.2.3.4 reason=authrequired"),
            Some(Reject(AuthRequired))
        );
        assert!(!AuthRequired.blocks() && AuthFailure.blocks() && Relay.blocks());
    }

    #[test]
    fn scan_refusals_by_reason() {
        for (reason, category) in [
            ("virus", Virus),
            ("attachment", ContentRule),
            ("header", ContentRule),
            ("mime", Mime),
            ("partial", Mime),
        ] {
            assert_eq!(
                class(&format!(
                    "event=quarantine ip=192.0.2.1 reason={reason} rule=x"
                )),
                Some(Reject(category)),
                "{reason}"
            );
        }
        assert_eq!(
            classify_text("postern-scan: refused: virus: Eicar-Test-Signature"),
            Some(Info)
        );
        assert_eq!(classify_text("postern-scan: fatal: unable to read"), None);
    }

    #[test]
    fn the_audit_probe_is_recognised_only_from_loopback() {
        let probe = |line: &str| is_audit_probe(&logline::parse(line));
        assert!(probe(
            "event=reject ip=127.0.0.200 reason=relay helo=audit.example.net from=<postern-audit@relaytest.example.net> rcpt=<x@y>"
        ));
        assert!(probe(
            "event=reject ip=127.0.0.3 reason=unknownuser helo=audit.example.net rcpt=<x@y>"
        ));
        assert!(!probe(
            "event=reject ip=203.0.113.5 reason=relay helo=audit.example.net from=<postern-audit@relaytest.example.net>"
        ));
        assert!(!probe(
            "event=reject ip=127.0.0.1 reason=relay helo=a.test from=<a@b>"
        ));
    }

    #[test]
    fn other_producers() {
        assert_eq!(
            class("event=rbl ip=1.2.3.4 zone=z result=listed"),
            Some(Reject(Rbl))
        );
        assert_eq!(
            class("event=rbl ip=1.2.3.4 zone=z result=clear"),
            Some(Info)
        );
        assert_eq!(
            class("event=quarantine reason=virus detail=Eicar"),
            Some(Reject(Virus))
        );
        assert_eq!(
            class("event=quarantine reason=attachment"),
            Some(Reject(ContentRule))
        );
        assert_eq!(
            class("event=ratelimit kind=sender key=a action=block"),
            Some(Reject(RateLimit))
        );
        assert_eq!(
            class("event=ratelimit kind=sender key=a action=warn"),
            Some(Info)
        );
        assert_eq!(class("event=authfail ip=1.2.3.4"), Some(CheckerAuthFail));
        assert_eq!(
            class("event=delivery id=1 kind=remote result=ok"),
            Some(Delivery)
        );
    }

    #[test]
    fn unknown_lines_are_other_not_errors() {
        assert_eq!(class("event=brandnew x=1"), None);
        assert_eq!(class("postern-scan: fatal: unable to read"), None);
        assert_eq!(class(""), None);
    }
}
