//! Spam scores and what they make of a message: every score engine in
//! `control/scanners` (`rspamd:`, `spamd:`) is asked after the virus scan, and its score
//! maps to an action by `control/spamactions` — `tag` (delivered with `X-Spam-Score:` and
//! `X-Spam-Status: Yes`), `quarantine` or `reject` (refused as the content rules refuse:
//! 554, copy, alert). Mail from authenticated users, relay clients and local injection is
//! skipped or scored with outbound settings, as `control/spamoutbound` says. An engine
//! that fails is a scanner error, like a virus engine's (`control/scanfailopen`).
//!
//! Every scored message loses the `X-Spam:` and `X-Spam-*:` header fields it came with —
//! only ours are believed — and gets ours: `X-Spam-Status: No, …` below the tag score.

use crate::scan::engines::Engine;
use crate::scan::quarantine::Refusal;
use crate::scan::{rspamd, spamd};
use postern_common::control::{Control, Line};
use postern_common::logline::LogLine;
use postern_common::{Error, Result};
use postern_wire::qmail_queue::{exit_code as qq, Envelope};
use std::borrow::Cow;
use std::time::Duration;

/// How long one score engine may take for one message (each of connect, send, answer).
pub const SCORE_TIMEOUT: Duration = Duration::from_secs(60);
/// Scores at or above which mail is tagged or refused when `control/spamactions` gives
/// no threshold at all.
pub const DEFAULT_TAG: f64 = 5.0;
pub const DEFAULT_REJECT: f64 = 15.0;
/// Most symbol names we put in a header or a log line.
pub const MAX_SYMBOLS: usize = 50;

/// What an engine said about a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub score: f64,
    /// The engine's own threshold (rspamd: `required_score`; spamd: `required_score`).
    pub required: f64,
    /// rspamd's own action (`no action`, `add header`, `reject`, …); none from spamd.
    pub action: Option<String>,
    /// The rules that hit, sorted.
    pub symbols: Vec<String>,
}

/// What the engines are told besides the message.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub sender: &'a [u8],
    pub recipients: &'a [Vec<u8>],
    pub client_ip: Option<&'a str>,
    pub client_host: Option<&'a str>,
    pub helo: Option<&'a str>,
    /// The authenticated user (rspamd's `User`: it then scores as outbound mail).
    pub auth_user: Option<&'a str>,
    /// Outbound settings: rspamd's `Settings-ID`, spamd's `User`.
    pub settings: Option<&'a str>,
}

/// What is done with a message, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Deliver,
    Tag,
    Quarantine,
    Reject,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Deliver => "none",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }
}

/// `control/spamactions`: score thresholds (`tag 5`, `quarantine 10`, `reject 15`),
/// and `rspamd` to take rspamd's own action for rspamd engines.
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    pub tag: Option<f64>,
    pub quarantine: Option<f64>,
    pub reject: Option<f64>,
    pub rspamd_action: bool,
}

impl Default for Actions {
    fn default() -> Actions {
        Actions {
            tag: Some(DEFAULT_TAG),
            quarantine: None,
            reject: Some(DEFAULT_REJECT),
            rspamd_action: false,
        }
    }
}

impl Actions {
    /// Parse the file's lines; a file without thresholds keeps the default ones.
    pub fn parse(lines: &[Line]) -> Result<Actions> {
        let mut a = Actions {
            tag: None,
            quarantine: None,
            reject: None,
            rspamd_action: false,
        };
        let mut any_threshold = false;
        for l in lines {
            let bad = |why: &str| Error::temp(format!("control/spamactions:{}: {why}", l.number));
            let words: Vec<&str> = l.text.split_whitespace().collect();
            if words == ["rspamd"] {
                a.rspamd_action = true;
                continue;
            }
            let [name, score] = words[..] else {
                return Err(bad(
                    "expected ACTION SCORE (tag, quarantine, reject) or rspamd",
                ));
            };
            let score: f64 = score
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite())
                .ok_or_else(|| bad("the score is not a number"))?;
            let slot = match name {
                "tag" => &mut a.tag,
                "quarantine" => &mut a.quarantine,
                "reject" => &mut a.reject,
                _ => return Err(bad("expected tag, quarantine, reject or rspamd")),
            };
            *slot = Some(score);
            any_threshold = true;
        }
        if !any_threshold {
            let d = Actions::default();
            (a.tag, a.reject) = (d.tag, d.reject);
        }
        Ok(a)
    }

    /// The action for `score` from `engine`.
    pub fn decide(&self, engine: &Engine, score: &Score) -> Action {
        if let (true, Engine::Rspamd(_), Some(action)) =
            (self.rspamd_action, engine, score.action.as_deref())
        {
            return rspamd_action(action);
        }
        let reached = |t: Option<f64>| t.is_some_and(|t| score.score >= t);
        if reached(self.reject) {
            Action::Reject
        } else if reached(self.quarantine) {
            Action::Quarantine
        } else if reached(self.tag) {
            Action::Tag
        } else {
            Action::Deliver
        }
    }
}

/// rspamd's action names as ours: `greylist` and `soft reject` (temporary refusals, which
/// postern-smtpd's greylisting does in its own way) deliver like `no action`.
pub fn rspamd_action(name: &str) -> Action {
    match name {
        "reject" => Action::Reject,
        "quarantine" => Action::Quarantine,
        "add header" | "rewrite subject" => Action::Tag,
        _ => Action::Deliver,
    }
}

/// `control/spamoutbound`: what happens to mail from authenticated users, relay clients
/// and local injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Not scored (the default).
    Skip,
    /// Scored, naming the engines' outbound settings when given: rspamd's
    /// `Settings-ID: NAME`, spamd's `User: NAME`.
    Score(Option<String>),
}

impl Outbound {
    pub fn parse(value: Option<&str>) -> Result<Outbound> {
        let words: Vec<&str> = value.unwrap_or("skip").split_whitespace().collect();
        match words[..] {
            [] | ["skip"] => Ok(Outbound::Skip),
            ["score"] => Ok(Outbound::Score(None)),
            ["score", name] => Ok(Outbound::Score(Some(name.to_string()))),
            _ => Err(Error::temp(
                "control/spamoutbound: expected skip, score or score SETTINGS",
            )),
        }
    }
}

/// Where the mail comes from, as postern-smtpd's environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Inbound,
    Authenticated(String),
    RelayClient,
    /// No `TCPREMOTEIP`: postern-inject or another local program.
    Local,
}

impl Origin {
    pub fn from_env() -> Origin {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(user) = var("AUTHUSER") {
            Origin::Authenticated(user)
        } else if std::env::var_os("RELAYCLIENT").is_some() {
            Origin::RelayClient
        } else if var("TCPREMOTEIP").is_none() {
            Origin::Local
        } else {
            Origin::Inbound
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Origin::Inbound => "inbound",
            Origin::Authenticated(_) => "authenticated",
            Origin::RelayClient => "relayclient",
            Origin::Local => "local",
        }
    }
}

/// The client's HELO name, from the `Received:` line postern-smtpd put on top
/// (`Received: from HELO (HOST [IP])`).
pub fn helo_from_received(message: &[u8]) -> Option<&str> {
    let rest = message.strip_prefix(b"Received: from ")?;
    let end = rest.iter().position(|&b| b == b' ' || b == b'\n')?;
    std::str::from_utf8(&rest[..end])
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
}

/// Whether a header field name is one of the spam headers we own.
fn is_spam_field(name: &[u8]) -> bool {
    let name = name.trim_ascii_end().to_ascii_lowercase();
    name == b"x-spam" || name.starts_with(b"x-spam-")
}

/// The message without the `X-Spam:`/`X-Spam-*:` fields of its header section (with
/// their continuation lines); unchanged when it has none.
pub fn strip_spam_headers(message: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    let mut dropping = false;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            dropping = line
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|colon| is_spam_field(&line[..colon]));
            if dropping && out.is_none() {
                out = Some(message[..pos].to_vec());
            }
        }
        if let (false, Some(o)) = (dropping, out.as_mut()) {
            o.extend_from_slice(line);
        }
        pos = end;
    }
    match out {
        Some(mut o) => {
            o.extend_from_slice(&message[pos..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(message),
    }
}

/// Symbol names as one list for a header or a log line: safe bytes only, at most
/// [`MAX_SYMBOLS`].
pub fn symbol_list(symbols: &[String]) -> String {
    let mut names: Vec<String> = symbols
        .iter()
        .take(MAX_SYMBOLS)
        .map(|s| {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if symbols.len() > MAX_SYMBOLS {
        names.push("...".into());
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// Our two header fields for a scored message (LF line ends, as in the queue).
pub fn headers(engine: &Engine, score: &Score, action: Action, actions: &Actions) -> String {
    let kind = match engine {
        Engine::Rspamd(_) => "rspamd",
        _ => "spamd",
    };
    let tagged = if action >= Action::Tag { "Yes" } else { "No" };
    let required = match (actions.rspamd_action, engine) {
        (true, Engine::Rspamd(_)) => Some(score.required),
        _ => actions.tag,
    };
    let mut status = format!("X-Spam-Status: {tagged}, score={:.1}", score.score);
    if let Some(r) = required {
        status.push_str(&format!(" required={r:.1}"));
    }
    status.push_str(&format!(" engine={kind}\n\ttests="));
    // Folded at commas, so no line grows past 78 characters.
    let mut width = 7;
    let list = symbol_list(&score.symbols);
    for (i, name) in list.split(',').enumerate() {
        if i > 0 {
            status.push(',');
            width += 1;
            if width + name.len() > 70 {
                status.push_str("\n\t");
                width = 0;
            }
        }
        status.push_str(name);
        width += name.len();
    }
    format!("X-Spam-Score: {:.1}\n{status}\n", score.score)
}

/// What the spam check decided.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Refuse (quarantine or reject), as a content rule refuses.
    pub refusal: Option<Refusal>,
    /// The engines asked, for the `scan` line.
    pub engines: Vec<String>,
    /// Scored: the message is delivered without its own spam headers and with these.
    rewrite: Option<String>,
}

impl Outcome {
    /// The message to deliver.
    pub fn message<'a>(&self, original: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.rewrite {
            None => Cow::Borrowed(original),
            Some(headers) => {
                let mut m = headers.as_bytes().to_vec();
                m.extend_from_slice(&strip_spam_headers(original));
                Cow::Owned(m)
            }
        }
    }
}

/// Ask every score engine in `engines` about the message, log each answer (`event=spam`)
/// and decide; mail from a `goodmailfrom` sender (`good`) is not scored. An engine error
/// is 451 (exit 71) unless `fail_open`; a broken control file is exit 55.
pub fn check(
    control: &Control,
    engines: &[Engine],
    message: &[u8],
    envelope: &Envelope,
    good: bool,
    fail_open: bool,
    log: &dyn Fn(&str) -> LogLine,
) -> Result<Outcome> {
    let engines: Vec<&Engine> = engines.iter().filter(|e| e.is_score()).collect();
    if engines.is_empty() {
        return Ok(Outcome::default());
    }
    let settings = (|| -> Result<_> {
        Ok((
            Actions::parse(&control.list("spamactions")?)?,
            Outbound::parse(control.value("spamoutbound")?.as_deref())?,
        ))
    })();
    let (actions, outbound) = settings.map_err(|e| {
        log("scanerror").kv("error", &e.msg).emit();
        Error::code(qq::CONFIG_ERROR, e.msg)
    })?;
    if good {
        log("spam")
            .kv("action", "skipped")
            .kv("origin", "goodmailfrom")
            .emit();
        return Ok(Outcome::default());
    }
    let origin = Origin::from_env();
    let settings_id = match (&origin, &outbound) {
        (Origin::Inbound, _) => None,
        (_, Outbound::Skip) => {
            log("spam")
                .kv("action", "skipped")
                .kv("origin", origin.name())
                .emit();
            return Ok(Outcome::default());
        }
        (_, Outbound::Score(name)) => name.as_deref(),
    };
    let client_ip = std::env::var("TCPREMOTEIP").ok().filter(|v| !v.is_empty());
    let client_host = std::env::var("TCPREMOTEHOST")
        .ok()
        .filter(|v| !v.is_empty());
    let facts = Facts {
        sender: &envelope.sender,
        recipients: &envelope.recipients,
        client_ip: client_ip.as_deref(),
        client_host: client_host.as_deref(),
        helo: client_ip.as_ref().and_then(|_| helo_from_received(message)),
        auth_user: match &origin {
            Origin::Authenticated(u) => Some(u),
            _ => None,
        },
        settings: settings_id,
    };

    let mut outcome = Outcome {
        rewrite: Some(String::new()),
        ..Outcome::default()
    };
    let mut worst: Option<(&Engine, Score, Action)> = None;
    for engine in engines {
        outcome.engines.push(engine.name());
        let answer = match engine {
            Engine::Rspamd(at) => rspamd::check(at, message, &facts, SCORE_TIMEOUT),
            Engine::Spamd(at) => spamd::check(at, message, &facts, SCORE_TIMEOUT),
            _ => continue,
        };
        match answer {
            Ok(score) => {
                let action = actions.decide(engine, &score);
                let mut line = log("spam")
                    .kv("engine", engine.name())
                    .kv("origin", origin.name())
                    .kv("score", format!("{:.1}", score.score))
                    .kv("required", format!("{:.1}", score.required))
                    .kv("action", action.name());
                if let Some(a) = &score.action {
                    line = line.kv("engine_action", a);
                }
                line.kv("symbols", symbol_list(&score.symbols)).emit();
                if worst.as_ref().is_none_or(|(_, _, w)| action > *w) {
                    worst = Some((engine, score, action));
                }
            }
            Err(why) => {
                let why = format!("{}: {why}", engine.name());
                log("scanerror")
                    .kv("engine", engine.name())
                    .kv("error", &why)
                    .kv("failopen", fail_open)
                    .emit();
                if !fail_open {
                    return Err(Error::code(
                        qq::TEMP_REFUSED,
                        format!("spam scanner failed: {why}"),
                    ));
                }
            }
        }
    }
    match worst {
        Some((engine, score, action @ (Action::Quarantine | Action::Reject))) => {
            outcome.refusal = Some(Refusal {
                reason: "spam".into(),
                rule: format!("{}:{}", engine.name(), action.name()),
                detail: format!("score {:.1}: {}", score.score, symbol_list(&score.symbols)),
                reply: REPLY_SPAM.into(),
            });
        }
        Some((engine, score, action)) => {
            outcome.rewrite = Some(headers(engine, &score, action, &actions));
        }
        // Every engine failed and scanfailopen let the mail through: unscored, but the
        // sender's own spam headers still go.
        None => {}
    }
    Ok(outcome)
}

/// What the client is told for mail refused for its score.
pub const REPLY_SPAM: &str = "classified as spam";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::engines::Endpoint;
    use postern_common::control::parse_lines;

    fn score(s: f64, action: Option<&str>) -> Score {
        Score {
            score: s,
            required: 15.0,
            action: action.map(String::from),
            symbols: vec!["GTUBE".into(), "MISSING_DATE".into()],
        }
    }

    fn rspamd() -> Engine {
        Engine::Rspamd(Endpoint::Tcp("127.0.0.1:11333".into()))
    }

    fn spamd() -> Engine {
        Engine::Spamd(Endpoint::Tcp("127.0.0.1:783".into()))
    }

    #[test]
    fn thresholds_and_defaults() {
        let d = Actions::parse(&[]).unwrap();
        assert_eq!(d, Actions::default());
        assert_eq!(d.decide(&spamd(), &score(4.9, None)), Action::Deliver);
        assert_eq!(d.decide(&spamd(), &score(5.0, None)), Action::Tag);
        assert_eq!(d.decide(&spamd(), &score(14.9, None)), Action::Tag);
        assert_eq!(d.decide(&spamd(), &score(15.0, None)), Action::Reject);
        let a = Actions::parse(&parse_lines("# ours\ntag 3\nquarantine 10\nreject 20\n")).unwrap();
        assert_eq!(a.decide(&spamd(), &score(3.0, None)), Action::Tag);
        assert_eq!(a.decide(&spamd(), &score(12.0, None)), Action::Quarantine);
        assert_eq!(a.decide(&spamd(), &score(1005.2, None)), Action::Reject);
        let only_quarantine = Actions::parse(&parse_lines("quarantine 8\n")).unwrap();
        assert_eq!(
            only_quarantine.decide(&spamd(), &score(1000.0, None)),
            Action::Quarantine,
            "a threshold not listed is off"
        );
        assert_eq!(
            only_quarantine.decide(&spamd(), &score(7.0, None)),
            Action::Deliver
        );
    }

    #[test]
    fn rspamds_own_action_for_rspamd_only() {
        let a = Actions::parse(&parse_lines("rspamd\n")).unwrap();
        assert!(a.rspamd_action);
        assert_eq!(a.tag, Some(DEFAULT_TAG), "defaults stay for spamd");
        assert_eq!(
            a.decide(&rspamd(), &score(1.0, Some("reject"))),
            Action::Reject
        );
        assert_eq!(
            a.decide(&rspamd(), &score(99.0, Some("no action"))),
            Action::Deliver
        );
        assert_eq!(
            a.decide(&rspamd(), &score(7.0, Some("add header"))),
            Action::Tag
        );
        assert_eq!(
            a.decide(&rspamd(), &score(7.0, Some("rewrite subject"))),
            Action::Tag
        );
        assert_eq!(
            a.decide(&rspamd(), &score(4.0, Some("greylist"))),
            Action::Deliver
        );
        assert_eq!(a.decide(&spamd(), &score(16.0, None)), Action::Reject);
    }

    #[test]
    fn bad_action_lines_are_named() {
        for (text, msg) in [
            (
                "tag\n",
                "control/spamactions:1: expected ACTION SCORE (tag, quarantine, reject) or rspamd",
            ),
            (
                "tag 5\ndrop 3\n",
                "control/spamactions:2: expected tag, quarantine, reject or rspamd",
            ),
            (
                "reject lots\n",
                "control/spamactions:1: the score is not a number",
            ),
            (
                "reject inf\n",
                "control/spamactions:1: the score is not a number",
            ),
        ] {
            assert_eq!(Actions::parse(&parse_lines(text)).unwrap_err().msg, msg);
        }
    }

    #[test]
    fn outbound_settings() {
        assert_eq!(Outbound::parse(None).unwrap(), Outbound::Skip);
        assert_eq!(Outbound::parse(Some("skip")).unwrap(), Outbound::Skip);
        assert_eq!(
            Outbound::parse(Some("score")).unwrap(),
            Outbound::Score(None)
        );
        assert_eq!(
            Outbound::parse(Some("score outbound")).unwrap(),
            Outbound::Score(Some("outbound".into()))
        );
        assert!(Outbound::parse(Some("maybe")).is_err());
    }

    #[test]
    fn strips_only_spam_fields_of_the_header() {
        let m = b"Received: from x\n\tby y\nX-Spam-Status: No, score=-100\n  folded\nSubject: hi\nx-spam : yes\nX-Spammer: keep\nX-Spam-Score: -9\n\nX-Spam-Status: in the body\n";
        assert_eq!(
            &*strip_spam_headers(m),
            &b"Received: from x\n\tby y\nSubject: hi\nX-Spammer: keep\n\nX-Spam-Status: in the body\n"[..]
        );
        let crlf = b"X-Spam-Flag: YES\r\nSubject: a\r\n\r\nbody\r\n";
        assert_eq!(
            &*strip_spam_headers(crlf),
            &b"Subject: a\r\n\r\nbody\r\n"[..]
        );
        let clean = b"Subject: a\n\nbody\n";
        assert!(matches!(strip_spam_headers(clean), Cow::Borrowed(_)));
        assert_eq!(&*strip_spam_headers(b"X-Spam: yes"), b"");
    }

    #[test]
    fn our_headers_fold_and_say_yes_or_no() {
        let d = Actions::default();
        let h = headers(&spamd(), &score(7.25, None), Action::Tag, &d);
        assert_eq!(
            h,
            "X-Spam-Score: 7.2\nX-Spam-Status: Yes, score=7.2 required=5.0 engine=spamd\n\ttests=GTUBE,MISSING_DATE\n"
        );
        let h = headers(&spamd(), &score(-0.5, None), Action::Deliver, &d);
        assert!(h.contains("X-Spam-Status: No, score=-0.5"), "{h}");
        let many = Score {
            symbols: (0..80).map(|i| format!("SYMBOL_NUMBER_{i}\n:x")).collect(),
            ..score(20.0, None)
        };
        let h = headers(&rspamd(), &many, Action::Tag, &d);
        assert!(h.lines().all(|l| l.len() <= 78), "{h}");
        assert!(h.contains("SYMBOL_NUMBER_49x,..."), "{h}");
        assert!(!h.contains("SYMBOL_NUMBER_50"), "{h}");
        let rs = Actions::parse(&parse_lines("rspamd\n")).unwrap();
        assert!(
            headers(&rspamd(), &score(7.0, Some("add header")), Action::Tag, &rs)
                .contains("Yes, score=7.0 required=15.0 engine=rspamd")
        );
    }

    #[test]
    fn helo_from_smtpds_received_line() {
        assert_eq!(
            helo_from_received(b"Received: from mx.outside.test (ptr.test [192.0.2.7])\n\tby me"),
            Some("mx.outside.test")
        );
        assert_eq!(helo_from_received(b"Subject: Received: from x y\n"), None);
        assert_eq!(helo_from_received(b"Received: from \n"), None);
    }

    #[test]
    fn the_rewritten_message_has_our_headers_first() {
        let o = Outcome {
            rewrite: Some("X-Spam-Score: 1.0\n".into()),
            ..Outcome::default()
        };
        assert_eq!(
            &*o.message(b"X-Spam-Score: -50\nSubject: x\n\nbody\n"),
            b"X-Spam-Score: 1.0\nSubject: x\n\nbody\n"
        );
        let unscored = Outcome::default();
        assert!(matches!(unscored.message(b"x"), Cow::Borrowed(_)));
    }
}
