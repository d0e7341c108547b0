//! What each log line means to the report: the one table that maps the producers' events
//! (DESIGN §5 `event=… key=value` lines) to what is counted. When a producer changes an
//! event or a reason, this table — and the matching table in docs/posternctl.md — is the
//! only place to change.
//!
//! A line with an event the table does not know is counted as "other", never an error.

use postern_common::logline;

/// Why mail or a client was refused, as the report groups it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Relay,
    UnknownUser,
    Rbl,
    BadSender,
    Virus,
    ContentRule,
    RateLimit,
    AuthFailure,
    AccessRule,
    Other,
}

impl Category {
    /// Every category, in the order reports show them.
    pub const ALL: [Category; 10] = [
        Category::Relay,
        Category::UnknownUser,
        Category::Rbl,
        Category::BadSender,
        Category::Virus,
        Category::ContentRule,
        Category::RateLimit,
        Category::AuthFailure,
        Category::AccessRule,
        Category::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Category::Relay => "relay",
            Category::UnknownUser => "unknown user",
            Category::Rbl => "RBL",
            Category::BadSender => "bad sender",
            Category::Virus => "virus",
            Category::ContentRule => "content rule",
            Category::RateLimit => "rate limit",
            Category::AuthFailure => "AUTH failure",
            Category::AccessRule => "access rule",
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
            Category::ContentRule => "content",
            Category::RateLimit => "ratelimit",
            Category::AuthFailure => "auth",
            Category::AccessRule => "access",
            Category::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        Category::ALL.iter().position(|&c| c == self).unwrap_or(0)
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
    /// Known, and not counted (connections, successful logins, clean scans, …).
    Info,
}

/// `(event, key, value, class)`: the first row whose event matches and, unless `key` is
/// empty, whose `key` has `value` (`*` = any value, or the key missing) decides.
type Row = (&'static str, &'static str, &'static str, Class);

use Category::*;
use Class::{Accept, CheckerAuthFail, Delivery, Info, Queued, Reject};

pub const TABLE: &[Row] = &[
    // postern-smtpd
    ("accept", "", "", Accept),
    ("reject", "reason", "relay", Reject(Relay)),
    ("reject", "reason", "unknownuser", Reject(UnknownUser)),
    ("reject", "reason", "badrcptto", Reject(UnknownUser)),
    ("reject", "reason", "badmailfrom", Reject(BadSender)),
    ("reject", "reason", "sendermismatch", Reject(BadSender)),
    ("reject", "reason", "authfail", Reject(AuthFailure)),
    ("reject", "reason", "authrequired", Reject(AuthFailure)),
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
    // postern-rblsmtpd
    ("rbl", "result", "listed", Reject(Rbl)),
    ("rbl", "*", "*", Info),
    // postern-scan
    ("quarantine", "reason", "virus", Reject(Virus)),
    ("quarantine", "*", "*", Reject(ContentRule)),
    ("scan", "", "", Info),
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
        assert_eq!(class("postern-scan: refused: virus: Eicar"), None);
        assert_eq!(class(""), None);
    }
}
