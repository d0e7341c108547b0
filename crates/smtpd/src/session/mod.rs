//! The SMTP state machine for one connection, generic over its input and output so it
//! runs in-process in tests. Everything outside the protocol (the queue, the user
//! database, the checkpassword program, postern-tlsd, the clock, the log) is reached
//! through [`Outside`], which the binary implements for real and tests fake.
//!
//! Replies are collected and flushed only when no more pipelined input is waiting
//! (RFC 2920), and always before a pause or a DATA transfer. Nothing a client sends is
//! ever echoed in a reply.

use crate::auth::{self, Mechanism};
use crate::command::{self, Verb};
use crate::config::{self, Config, Peer};
use crate::data::{self, Data};
use crate::greylist;
use crate::line::{Input, LineError, LineReader, MAX_COMMAND, MAX_TEXT};
use crate::queue::{self, Job, Outcome};
use crate::received;
use crate::recipients::Verdict;
use crate::relay::{self, Decision};
use postern_common::logline::LogLine;
use postern_common::Result;
use postern_mailstore::verifycache::{self, Answer};
use postern_wire::smtp_path::{self, Address, PathError};
use std::io::{self, Write};
use std::time::Duration;

/// Errors (syntax, sequence, refusals) a session may make before 421.
pub const MAX_ERRORS: u32 = 20;

/// The TLS facts after a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub version: String,
    pub cipher: String,
}

/// Everything the session needs from outside the protocol.
pub trait Outside {
    /// Recipient validation ([`crate::recipients`]).
    fn recipient(&mut self, addr: &str, domain: &str) -> Result<Verdict>;
    /// Recipient verification by callout ([`crate::verify`]): what the next hop says
    /// about `addr`, or `Err` when the prober could not be asked.
    fn verify(&mut self, addr: &str) -> Result<Answer>;
    /// Greylisting's answer for the triplet ([`crate::greylist`]), recording what it
    /// learns; `Err` when the state cannot be kept (the session then accepts). The
    /// default, for fakes, never defers.
    fn greylist(
        &mut self,
        _settings: &greylist::Settings,
        _ip: &str,
        _sender: &str,
        _rcpt: &str,
    ) -> Result<greylist::Verdict> {
        Ok(greylist::Verdict::Known)
    }
    /// Whether `sender` is an alias delivering to `login`.
    fn alias_of(&mut self, sender: &str, login: &str) -> Result<bool>;
    /// Whether a checkpassword program was given (AUTH can be offered).
    fn auth_configured(&self) -> bool;
    /// Check a login: `Ok(true)` accepted, `Ok(false)` refused, `Err` temporary.
    fn check_password(&mut self, user: &[u8], pass: &[u8]) -> Result<bool>;
    /// Start a queue run; `auth_user` goes into the queue's environment as `AUTHUSER`.
    fn queue(&mut self, priority: bool, auth_user: Option<&str>) -> Result<Box<dyn Job>>;
    /// Whether postern-tlsd is in front of us.
    fn tls_configured(&self) -> bool;
    /// STARTTLS step 1: ask tlsd to hold the network; returns the discarded byte count.
    fn tls_request(&mut self) -> Result<usize>;
    /// STARTTLS step 3: handshake outcome.
    fn tls_start(&mut self) -> Result<std::result::Result<Tls, String>>;
    /// Pause (failed AUTH, dictionary attacks).
    fn sleep(&mut self, pause: Duration);
    /// Emit one log line.
    fn log(&mut self, line: LogLine);
}

/// Whether the session goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Close the connection; the reason goes into `event=disconnect`.
    Close(&'static str),
}

/// One SMTP session.
pub struct Session<'a, R: Input, W: Write> {
    input: LineReader<R>,
    out: W,
    cfg: &'a Config,
    peer: &'a Peer,
    outside: &'a mut dyn Outside,
    submission: bool,
    helo: Option<String>,
    esmtp: bool,
    /// This transaction's MAIL carried SMTPUTF8: its addresses may be UTF-8.
    smtputf8: bool,
    /// `Some("")` is the null sender.
    sender: Option<String>,
    rcpts: Vec<String>,
    rcpt_refused_for_count: bool,
    auth_user: Option<String>,
    tls: Option<Tls>,
    errors: u32,
    unknown_rcpts: u64,
    auth_failures: u32,
    messages: u64,
    line: Vec<u8>,
}

impl<'a, R: Input, W: Write> Session<'a, R, W> {
    pub fn new(
        input: R,
        out: W,
        cfg: &'a Config,
        peer: &'a Peer,
        outside: &'a mut dyn Outside,
        submission: bool,
    ) -> Self {
        let pace = cfg.pace(input.now());
        Session {
            input: LineReader::with_pace(input, pace),
            out,
            cfg,
            peer,
            outside,
            submission,
            helo: None,
            esmtp: false,
            smtputf8: false,
            sender: None,
            rcpts: Vec::new(),
            rcpt_refused_for_count: false,
            auth_user: None,
            tls: None,
            errors: 0,
            unknown_rcpts: 0,
            auth_failures: 0,
            messages: 0,
            line: Vec::with_capacity(MAX_TEXT),
        }
    }

    /// A connection that is TLS from its first byte (implicit TLS, port 465: postern-tlsd
    /// `-i`): AUTH is offered as under STARTTLS, and STARTTLS is not.
    pub fn with_tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self
    }

    /// Log the connection, serve it, log the disconnect. Errors writing to the client
    /// end the session (`reason=writeerror`); only the log can fail here.
    pub fn run(mut self) -> io::Result<()> {
        let mut connect = LogLine::event("connect").kv("ip", &self.peer.ip);
        if !self.peer.port.is_empty() {
            connect.push("port", &self.peer.port);
        }
        if let Some(h) = &self.peer.host {
            connect.push("host", h);
        }
        if !self.peer.local_ip.is_empty() {
            connect.push(
                "local",
                format!("{}:{}", self.peer.local_ip, self.peer.local_port),
            );
        }
        connect.push(
            "mode",
            if self.submission {
                "submission"
            } else {
                "smtp"
            },
        );
        self.outside.log(connect);
        // A client that goes away while we write ends the session like any other end.
        let reason = self.serve().unwrap_or("writeerror");
        let _ = self.out.flush();
        let line = LogLine::event("disconnect")
            .kv("ip", &self.peer.ip)
            .kv("reason", reason)
            .kv("messages", self.messages)
            .kv("errors", self.errors)
            .kv("tls", self.tls_word())
            .kv("auth", self.auth_user.as_deref().unwrap_or("-"));
        self.outside.log(line);
        Ok(())
    }

    /// Greet, then read and answer commands until the session ends; the reason.
    fn serve(&mut self) -> io::Result<&'static str> {
        let greeting = format!("220 {} ESMTP", printable_reply(&self.cfg.greeting));
        self.reply(&greeting)?;
        loop {
            if self.input.buffered() == 0 {
                self.out.flush()?;
            }
            let flow = match self.input.read_line(&mut self.line, MAX_COMMAND) {
                Ok(()) => self.command()?,
                Err(e) => self.read_failed(e, "command")?,
            };
            if let Flow::Close(reason) = flow {
                return Ok(reason);
            }
        }
    }

    fn tls_word(&self) -> String {
        self.tls
            .as_ref()
            .map(|t| t.version.clone())
            .unwrap_or_else(|| "no".to_string())
    }

    fn reply(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\r\n")
    }

    /// A reply that counts as a client error; past [`MAX_ERRORS`] the session ends.
    fn error(&mut self, text: &str) -> io::Result<Flow> {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.reply("421 4.7.0 too many errors, closing connection")?;
            self.reject("errors", None).emit_to(self.outside);
            return Ok(Flow::Close("errors"));
        }
        self.reply(text)?;
        Ok(Flow::Continue)
    }

    /// Start an `event=reject` line with what we know.
    fn reject(&self, reason: &str, rcpt: Option<&str>) -> LogLine {
        let mut l = LogLine::event("reject")
            .kv("ip", &self.peer.ip)
            .kv("reason", reason);
        if let Some(h) = &self.helo {
            l.push("helo", h);
        }
        if let Some(s) = &self.sender {
            l.push("from", format!("<{s}>"));
        }
        if let Some(r) = rcpt {
            l.push("rcpt", format!("<{r}>"));
        }
        if let Some(u) = &self.auth_user {
            l.push("auth", u);
        }
        l
    }

    /// What to do when no line could be read.
    fn read_failed(&mut self, e: LineError, during: &str) -> io::Result<Flow> {
        match e {
            e if e.is_framing() => {
                let text = format!(
                    "451 4.5.2 {} in {during}, closing connection (RFC 5321 2.3.8)",
                    e.name()
                );
                self.reply(&text)?;
                self.reject("framing", None)
                    .kv("detail", format!("{} in {during}", e.name()))
                    .emit_to(self.outside);
                Ok(Flow::Close("framing"))
            }
            LineError::TooLong => self.error("500 5.5.2 line too long"),
            LineError::Eof => Ok(Flow::Close("eof")),
            LineError::Io(ref io) if io.kind() == io::ErrorKind::TimedOut => {
                self.reply("451 4.4.2 timeout, closing connection")?;
                self.reject("timeout", None)
                    .kv("during", during)
                    .emit_to(self.outside);
                Ok(Flow::Close("timeout"))
            }
            LineError::SessionLimit => {
                self.reply("421 4.4.2 session time limit, closing connection")?;
                self.reject("sessionlimit", None)
                    .kv("during", during)
                    .emit_to(self.outside);
                Ok(Flow::Close("sessionlimit"))
            }
            LineError::Slow => {
                self.reply("421 4.4.2 too slow, closing connection")?;
                self.reject("slow", None)
                    .kv("during", during)
                    .emit_to(self.outside);
                Ok(Flow::Close("slow"))
            }
            LineError::Io(_) => Ok(Flow::Close("readerror")),
            _ => Ok(Flow::Close("readerror")),
        }
    }

    fn command(&mut self) -> io::Result<Flow> {
        let line = std::mem::take(&mut self.line);
        let (verb, arg) = command::split(&line);
        let flow = match verb {
            None => self.error("502 5.5.1 command not recognised"),
            Some(Verb::Helo) => self.helo(arg, false),
            Some(Verb::Ehlo) => self.helo(arg, true),
            Some(Verb::Mail) => self.mail(arg),
            Some(Verb::Rcpt) => self.rcpt(arg),
            Some(Verb::Data) => self.data(arg),
            Some(Verb::Rset) => {
                self.reset();
                self.reply("250 2.0.0 ok").map(|_| Flow::Continue)
            }
            Some(Verb::Noop) => self.reply("250 2.0.0 ok").map(|_| Flow::Continue),
            Some(Verb::Quit) => {
                let text = format!(
                    "221 2.0.0 {} closing connection",
                    printable_reply(&self.cfg.me)
                );
                self.reply(&text).map(|_| Flow::Close("quit"))
            }
            Some(Verb::Help) => self.reply("214 2.0.0 see RFC 5321").map(|_| Flow::Continue),
            Some(Verb::Vrfy) => self
                .reply("252 2.5.2 send some mail, I'll try my best")
                .map(|_| Flow::Continue),
            Some(Verb::Auth) => self.auth(arg),
            Some(Verb::StartTls) => self.starttls(arg),
        };
        self.line = line;
        flow
    }

    fn reset(&mut self) {
        self.sender = None;
        self.smtputf8 = false;
        self.rcpts.clear();
        self.rcpt_refused_for_count = false;
    }

    fn auth_offered(&self) -> bool {
        self.outside.auth_configured()
            && self.auth_user.is_none()
            && (self.tls.is_some() || self.peer.is_loopback() || self.cfg.authcleartext)
    }

    fn helo(&mut self, arg: &[u8], esmtp: bool) -> io::Result<Flow> {
        if arg.is_empty() {
            return self.error(if esmtp {
                "501 5.5.4 syntax: EHLO hostname"
            } else {
                "501 5.5.4 syntax: HELO hostname"
            });
        }
        self.reset();
        self.helo = Some(String::from_utf8_lossy(&arg[..arg.len().min(255)]).into_owned());
        self.esmtp = esmtp;
        let me = printable_reply(&self.cfg.me);
        if !esmtp {
            return self.reply(&format!("250 {me}")).map(|_| Flow::Continue);
        }
        let mut lines = vec![
            me,
            "PIPELINING".to_string(),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
        ];
        lines.push(if self.cfg.databytes > 0 {
            format!("SIZE {}", self.cfg.databytes)
        } else {
            "SIZE".to_string()
        });
        lines.push("ENHANCEDSTATUSCODES".to_string());
        if self.outside.tls_configured() && self.tls.is_none() {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.reply(&format!("250{sep}{l}"))?;
        }
        Ok(Flow::Continue)
    }

    fn mail(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if self.helo.is_none() {
            return self.error("503 5.5.1 send EHLO or HELO first");
        }
        if self.sender.is_some() {
            return self.error("503 5.5.1 nested MAIL command");
        }
        if self.submission && self.auth_user.is_none() {
            self.reject("authrequired", None).emit_to(self.outside);
            return self.error("530 5.7.0 authentication required");
        }
        // SMTPUTF8 (RFC 6531): after EHLO the path may be UTF-8, if MAIL says so.
        let parsed = match smtp_path::parse_path_arg_utf8(arg, "FROM", self.esmtp) {
            Ok(p) => p,
            Err(PathError::Syntax(why)) => {
                return self.error(&format!("501 5.5.4 syntax error in MAIL: {why}"))
            }
            Err(PathError::TooLong(why) | PathError::BadLocal(why)) => {
                return self.error(&format!("501 5.1.7 {why}"))
            }
        };
        for (i, (key, value)) in parsed.params.iter().enumerate() {
            // `SIZE=1 SIZE=2`: which one counts would be a guess; refuse instead.
            if parsed.params[..i].iter().any(|(k, _)| k == key) {
                return self.error("501 5.5.4 MAIL parameter given twice");
            }
            match (key.as_str(), value.as_deref()) {
                ("SIZE", Some(v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    // Too many digits for 64 bits is simply too big.
                    let n = v.parse::<u64>().unwrap_or(u64::MAX);
                    if self.cfg.databytes > 0 && n > self.cfg.databytes {
                        self.reject("size", None)
                            .kv("size", v)
                            .emit_to(self.outside);
                        return self
                            .reply("552 5.3.4 message size exceeds fixed maximum message size")
                            .map(|_| Flow::Continue);
                    }
                }
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                ("AUTH", Some(_)) => {} // RFC 4954 §5: accepted, not trusted
                ("SMTPUTF8", None) => {}
                _ => return self.error("555 5.5.4 unsupported MAIL parameter"),
            }
        }
        let smtputf8 = parsed.params.iter().any(|(k, _)| k == "SMTPUTF8");
        if smtp_path::needs_utf8(arg) && !smtputf8 {
            return self.error("553 5.6.7 a non-ASCII address needs the SMTPUTF8 parameter");
        }
        let sender = parsed
            .address
            .as_ref()
            .map(Address::envelope)
            .unwrap_or_default();
        if !sender.is_empty() && config::listed(&sender, &self.cfg.badmailfrom) {
            self.reject("badmailfrom", None)
                .kv("from", format!("<{sender}>"))
                .emit_to(self.outside);
            return self
                .reply("553 5.7.1 sender refused")
                .map(|_| Flow::Continue);
        }
        if config::rate_limited(
            &self.cfg.ratelimit_blocked,
            &self.peer.ip,
            &sender,
            self.auth_user.as_deref(),
        ) {
            self.reject("ratelimit", None)
                .kv("from", format!("<{sender}>"))
                .emit_to(self.outside);
            return self
                .reply("451 4.7.1 sending rate exceeded, try again later")
                .map(|_| Flow::Continue);
        }
        if let Some(login) = self.auth_user.clone() {
            match self.sender_allowed(&login, &sender) {
                Ok(true) => {}
                Ok(false) => {
                    self.reject("sendermismatch", None)
                        .kv("from", format!("<{sender}>"))
                        .emit_to(self.outside);
                    return self
                        .reply("553 5.7.1 sender address not owned by the authenticated user")
                        .map(|_| Flow::Continue);
                }
                Err(e) => {
                    return self.temp_failure("451 4.3.0 temporary failure checking the sender", &e)
                }
            }
        }
        self.sender = Some(sender);
        self.smtputf8 = smtputf8;
        self.reply("250 2.1.0 ok").map(|_| Flow::Continue)
    }

    /// The sender-login match: own address, `authsenders`, or an alias delivering to us.
    fn sender_allowed(&mut self, login: &str, sender: &str) -> Result<bool> {
        if sender.eq_ignore_ascii_case(login) {
            return Ok(true);
        }
        let login_lc = login.to_ascii_lowercase();
        let sender_lc = sender.to_ascii_lowercase();
        let domain = sender_lc.rsplit_once('@').map(|(_, d)| d);
        for (who, pattern) in &self.cfg.authsenders {
            if who != "*" && *who != login_lc {
                continue;
            }
            let hit = match pattern.as_str() {
                "*" => true,
                "<>" => sender.is_empty(),
                p if p.starts_with('@') => domain.is_some_and(|d| d == &p[1..]),
                p => p == sender_lc,
            };
            if hit {
                return Ok(true);
            }
        }
        if sender.is_empty() {
            return Ok(false);
        }
        self.outside.alias_of(&sender_lc, &login_lc)
    }

    fn temp_failure(&mut self, reply: &str, err: &postern_common::Error) -> io::Result<Flow> {
        let line = LogLine::event("error")
            .kv("ip", &self.peer.ip)
            .kv("what", &err.msg);
        self.outside.log(line);
        self.reply(reply).map(|_| Flow::Continue)
    }

    fn rcpt(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if self.sender.is_none() {
            return self.error("503 5.5.1 MAIL first");
        }
        if smtp_path::needs_utf8(arg) && !self.smtputf8 {
            return self.error("553 5.6.7 a non-ASCII address needs SMTPUTF8 on MAIL");
        }
        let parsed = match smtp_path::parse_path_arg_utf8(arg, "TO", self.smtputf8) {
            Ok(p) => p,
            Err(PathError::Syntax(why)) => {
                return self.error(&format!("501 5.5.4 syntax error in RCPT: {why}"))
            }
            Err(PathError::TooLong(why) | PathError::BadLocal(why)) => {
                return self.error(&format!("501 5.1.3 {why}"))
            }
        };
        let Some(mut address) = parsed.address else {
            return self.error("501 5.1.3 a recipient may not be empty");
        };
        if !parsed.params.is_empty() {
            return self.error("555 5.5.4 unsupported RCPT parameter");
        }
        if self.rcpts.len() as u64 >= self.cfg.max_rcpts {
            if !self.rcpt_refused_for_count {
                self.rcpt_refused_for_count = true;
                self.reject("toomanyrcpts", None).emit_to(self.outside);
            }
            return self
                .reply("452 4.5.3 too many recipients")
                .map(|_| Flow::Continue);
        }
        let relay_allowed = self.peer.relayclient || self.auth_user.is_some();
        match relay::decide(&address, relay_allowed, &self.cfg.rcpthosts) {
            Decision::Accept => {}
            Decision::RelayTrick => {
                let shown = address.envelope();
                self.reject("relay", Some(&shown))
                    .kv("detail", "routing")
                    .emit_to(self.outside);
                return self.error("553 5.7.1 sorry, relaying through this server is not allowed");
            }
            Decision::NotOurs => {
                let shown = address.envelope();
                self.reject("relay", Some(&shown)).emit_to(self.outside);
                return self
                    .error("553 5.7.1 sorry, that domain isn't in my list of allowed rcpthosts");
            }
        }
        if address.domain.is_none() {
            // `<postmaster>` (RFC 5321 §4.5.1): ours, so a domain we accept mail for — not
            // `me`, which need not be one (its MX is us: the message would loop).
            match first_domain(&self.cfg.rcpthosts) {
                Some(d) => address.domain = Some(d.to_string()),
                None => {
                    self.reject("nodomain", Some(&address.envelope()))
                        .emit_to(self.outside);
                    return self
                        .reply("550 5.1.1 no domain to deliver a recipient without one to")
                        .map(|_| Flow::Continue);
                }
            }
        }
        let rcpt = address.envelope();
        // The same recipient twice is one delivery, not two copies (100 × one RCPT
        // would be 100 copies of up to databytes each). It was accepted once already.
        if self.rcpts.iter().any(|r| same_recipient(r, &rcpt)) {
            return self.reply("250 2.1.5 ok").map(|_| Flow::Continue);
        }
        if config::listed(&rcpt, &self.cfg.badrcptto) {
            self.reject("badrcptto", Some(&rcpt)).emit_to(self.outside);
            return self
                .reply("553 5.7.1 recipient refused")
                .map(|_| Flow::Continue);
        }
        let domain = address.domain.clone().unwrap_or_default();
        match self.outside.recipient(&rcpt, &domain) {
            Ok(Verdict::Valid) | Ok(Verdict::NotHosted) => {}
            Ok(Verdict::Unknown) => return self.unknown_rcpt(&rcpt, "unknownuser", None),
            // Only for a domain we take mail for; a relay client's mail to a listed
            // domain outside rcpthosts is outbound, as any other.
            Ok(Verdict::Verify) if relay::rcpthosts_allows(&domain, &self.cfg.rcpthosts) => {
                if let Some(flow) = self.verify_rcpt(&rcpt)? {
                    return Ok(flow);
                }
            }
            Ok(Verdict::Verify) => {}
            Err(e) => {
                return self
                    .temp_failure("451 4.3.0 temporary failure looking up the recipient", &e)
            }
        }
        if self.cfg.greylist.on && !relay_allowed {
            if let Some(flow) = self.greylist_rcpt(&rcpt)? {
                return Ok(flow);
            }
        }
        self.rcpts.push(rcpt);
        self.reply("250 2.1.5 ok").map(|_| Flow::Continue)
    }

    /// Greylisting (`control/greylist`), for a client that is neither authenticated nor
    /// a relay client: `None` when `rcpt` may be accepted, else the 451 already given.
    /// `goodmailfrom` senders pass; trouble keeping the state fails open (logged).
    fn greylist_rcpt(&mut self, rcpt: &str) -> io::Result<Option<Flow>> {
        let sender = self.sender.clone().unwrap_or_default();
        if config::listed(&sender, &self.cfg.goodmailfrom) {
            return Ok(None);
        }
        let verdict = match self
            .outside
            .greylist(&self.cfg.greylist, &self.peer.ip, &sender, rcpt)
        {
            Ok(v) => v,
            Err(e) => {
                let line = LogLine::event("error")
                    .kv("ip", &self.peer.ip)
                    .kv("what", format!("greylist: {}", e.msg));
                self.outside.log(line);
                return Ok(None);
            }
        };
        let mut line = LogLine::event("greylist")
            .kv("ip", &self.peer.ip)
            .kv("from", format!("<{sender}>"))
            .kv("rcpt", format!("<{rcpt}>"))
            .kv("result", verdict.word());
        if let greylist::Verdict::Defer { wait } = verdict {
            line.push("wait", wait);
            self.outside.log(line);
            return self
                .reply("451 4.7.1 greylisted, please try again later")
                .map(|_| Some(Flow::Continue));
        }
        self.outside.log(line);
        Ok(None)
    }

    /// Ask the next hop about `rcpt` (`control/verifyrecipients`): `None` when it exists
    /// (the caller accepts it), else the reply already given — 550 counted as an unknown
    /// user, 450 when nothing could be learnt, 451 when the prober could not be asked.
    fn verify_rcpt(&mut self, rcpt: &str) -> io::Result<Option<Flow>> {
        // A probe may take a while: the client gets what it is owed first.
        self.out.flush()?;
        let answer = match self.outside.verify(rcpt) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .temp_failure("451 4.3.0 temporary failure verifying the recipient", &e)
                    .map(Some)
            }
        };
        let line = LogLine::event("verify")
            .kv("ip", &self.peer.ip)
            .kv("rcpt", format!("<{rcpt}>"))
            .kv("result", answer.outcome.as_str())
            .kv("cached", if answer.cached { "yes" } else { "no" })
            .kv("detail", &answer.text);
        self.outside.log(line);
        match answer.outcome {
            verifycache::Outcome::Pass => Ok(None),
            verifycache::Outcome::Fail => self
                .unknown_rcpt(rcpt, "unverified", Some(&answer.text))
                .map(Some),
            verifycache::Outcome::TempFail => {
                self.reject("verifytempfail", Some(rcpt))
                    .kv("detail", &answer.text)
                    .emit_to(self.outside);
                self.reply("450 4.4.3 unable to verify the recipient now, try again later")
                    .map(|_| Some(Flow::Continue))
            }
        }
    }

    /// 550 for an unknown user (or one the next hop refused: `reason=unverified`);
    /// slower with every one past the first few, then 421.
    fn unknown_rcpt(&mut self, rcpt: &str, reason: &str, detail: Option<&str>) -> io::Result<Flow> {
        self.unknown_rcpts += 1;
        let mut line = self.reject(reason, Some(rcpt));
        if let Some(d) = detail {
            line.push("detail", d);
        }
        line.emit_to(self.outside);
        if self.unknown_rcpts >= self.cfg.max_unknown_rcpts {
            self.reply("421 4.7.0 too many unknown recipients, closing connection")?;
            self.reject("dictionary", None)
                .kv("unknown", self.unknown_rcpts)
                .emit_to(self.outside);
            return Ok(Flow::Close("dictionary"));
        }
        if self.unknown_rcpts > config::FREE_UNKNOWN_RCPTS {
            self.out.flush()?;
            let steps = (self.unknown_rcpts - config::FREE_UNKNOWN_RCPTS) as u32;
            self.outside
                .sleep(self.cfg.unknown_rcpt_delay.saturating_mul(steps));
        }
        self.reply("550 5.1.1 sorry, no mailbox here by that name")
            .map(|_| Flow::Continue)
    }

    fn data(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if !arg.is_empty() {
            return self.error("501 5.5.4 DATA takes no argument");
        }
        let Some(sender) = self.sender.clone() else {
            return self.error("503 5.5.1 MAIL first");
        };
        if self.rcpts.is_empty() {
            return self.error("554 5.5.1 no valid recipients");
        }
        let priority = self.peer.relayclient || self.auth_user.is_some();
        let mut job = match self.outside.queue(priority, self.auth_user.as_deref()) {
            Ok(j) => j,
            Err(e) => {
                let reply = queue::start_failure(&e);
                self.reset();
                return self.temp_failure(&reply, &e);
            }
        };
        self.reply("354 go ahead, end with <CRLF>.<CRLF>")?;
        self.out.flush()?;
        let header = received::header(&received::Facts {
            helo: self.helo.as_deref().unwrap_or("unknown"),
            remote_host: self.peer.host.as_deref(),
            remote_ip: &self.peer.ip,
            me: &self.cfg.me,
            esmtp: self.esmtp,
            utf8: self.smtputf8,
            tls: self
                .tls
                .as_ref()
                .map(|t| (t.version.as_str(), t.cipher.as_str())),
            authenticated: self.auth_user.is_some(),
            date: &received::now_rfc5322(),
        });
        let mut broken = job.write(header.as_bytes()).is_err();
        let mut state = Data::new(self.cfg.databytes);
        // The client owes us the message now: every wait counts against the rate.
        self.input.set_bulk(true);
        loop {
            match self.input.read_line(&mut self.line, MAX_TEXT) {
                Ok(()) => match state.line(&self.line) {
                    data::Line::End => break,
                    data::Line::Text(text) => {
                        if !broken && !state.doomed() {
                            let mut buf = Vec::with_capacity(text.len() + 1);
                            buf.extend_from_slice(text);
                            buf.push(b'\n');
                            broken = job.write(&buf).is_err();
                        }
                    }
                },
                Err(LineError::TooLong) => state.long_line(),
                Err(e) => {
                    self.input.set_bulk(false);
                    job.abort();
                    let flow = self.read_failed(e, "message data")?;
                    self.reset();
                    return Ok(flow);
                }
            }
        }
        self.input.set_bulk(false);
        let rcpts = std::mem::take(&mut self.rcpts);
        let outcome = if state.too_big() {
            job.abort();
            self.reject("size", None)
                .kv("size", state.size)
                .emit_to(self.outside);
            "552 5.3.4 message too big".to_string()
        } else if state.too_many_hops() {
            job.abort();
            self.reject("hops", None)
                .kv("hops", state.hops)
                .emit_to(self.outside);
            "554 5.4.6 too many hops, this message is looping".to_string()
        } else if state.too_long {
            job.abort();
            self.reject("linelength", None).emit_to(self.outside);
            "552 5.3.4 a line of the message is longer than 1000 octets".to_string()
        } else {
            match job.finish(&sender, &rcpts) {
                Outcome::Queued { pid } => {
                    self.messages += 1;
                    let line = LogLine::event("accept")
                        .kv("ip", &self.peer.ip)
                        .kv("helo", self.helo.as_deref().unwrap_or(""))
                        .kv("from", format!("<{sender}>"))
                        .kv("rcpts", rcpts.len())
                        .kv("size", state.size)
                        .kv("tls", self.tls_word())
                        .kv("auth", self.auth_user.as_deref().unwrap_or("-"))
                        .kv("qp", pid);
                    self.outside.log(line);
                    format!("250 2.0.0 ok: queued as qp {pid}")
                }
                Outcome::Refused { reply, code } => {
                    let code = code.map(|c| c.to_string()).unwrap_or_else(|| "none".into());
                    // The text after the reply code and the enhanced status code.
                    let detail = reply.splitn(3, ' ').nth(2).unwrap_or("");
                    self.reject("queue", None)
                        .kv("code", code)
                        .kv("detail", detail)
                        .emit_to(self.outside);
                    reply
                }
            }
        };
        self.reset();
        self.reply(&outcome).map(|_| Flow::Continue)
    }

    fn starttls(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if !self.outside.tls_configured() {
            return self.error("502 5.5.1 STARTTLS not available");
        }
        if self.tls.is_some() {
            return self.error("503 5.5.1 TLS already active");
        }
        if !arg.is_empty() {
            return self.error("501 5.5.4 STARTTLS takes no argument");
        }
        self.out.flush()?;
        // Pipelined bytes after STARTTLS are an injection attempt: never executed.
        let buffered = self.input.discard_buffer();
        let drained = match self.outside.tls_request() {
            Ok(n) => n,
            Err(e) => {
                return self.temp_failure("454 4.7.0 TLS not available due to temporary reason", &e)
            }
        };
        self.reply("220 2.0.0 Ready to start TLS")?;
        self.out.flush()?;
        let discarded = buffered + drained;
        match self.outside.tls_start() {
            Ok(Ok(tls)) => {
                let line = LogLine::event("starttls")
                    .kv("ip", &self.peer.ip)
                    .kv("version", &tls.version)
                    .kv("cipher", &tls.cipher)
                    .kv("discarded", discarded);
                self.outside.log(line);
                // RFC 3207 §4.2: forget everything learnt before the handshake.
                self.reset();
                self.helo = None;
                self.esmtp = false;
                self.auth_user = None;
                self.tls = Some(tls);
                Ok(Flow::Continue)
            }
            Ok(Err(reason)) => {
                self.reject("tls", None)
                    .kv("detail", reason)
                    .kv("discarded", discarded)
                    .emit_to(self.outside);
                Ok(Flow::Close("tls"))
            }
            Err(e) => {
                self.reject("tls", None)
                    .kv("detail", e.msg)
                    .emit_to(self.outside);
                Ok(Flow::Close("tls"))
            }
        }
    }

    /// Read one line of an AUTH exchange and decode it. `Err(flow)` when the exchange
    /// is over (cancelled, malformed, connection trouble); the reply is already sent.
    fn auth_response(&mut self) -> io::Result<std::result::Result<Vec<u8>, Flow>> {
        self.out.flush()?;
        let mut line = Vec::new();
        if let Err(e) = self.input.read_line(&mut line, auth::MAX_AUTH_LINE) {
            return self.read_failed(e, "AUTH").map(Err);
        }
        if line == b"*" {
            self.reply("501 5.0.0 AUTH exchange cancelled")?;
            return Ok(Err(Flow::Continue));
        }
        match auth::decode(&line) {
            Some(d) => Ok(Ok(d)),
            None => self
                .error("501 5.5.2 cannot decode the AUTH response")
                .map(Err),
        }
    }

    fn auth(&mut self, arg: &[u8]) -> io::Result<Flow> {
        if !self.outside.auth_configured() {
            return self.error("502 5.5.1 AUTH not available");
        }
        if !self.esmtp {
            return self.error("503 5.5.1 send EHLO first");
        }
        if self.auth_user.is_some() {
            return self.error("503 5.5.1 already authenticated");
        }
        if self.sender.is_some() {
            return self.error("503 5.5.1 no AUTH during a mail transaction");
        }
        if !self.auth_offered() {
            return self
                .error("538 5.7.11 encryption required for requested authentication mechanism");
        }
        let (mech, initial) = match arg.iter().position(|&b| b == b' ') {
            Some(i) => (&arg[..i], Some(&arg[i + 1..])),
            None => (arg, None),
        };
        let Some(mech) = Mechanism::parse(mech) else {
            return self.error("504 5.5.4 unrecognised authentication type");
        };
        let decoded_initial = match initial {
            None => None,
            Some(text) => match auth::decode(text) {
                Some(d) => Some(d),
                None => return self.error("501 5.5.2 cannot decode the AUTH response"),
            },
        };
        let (user, pass) = match mech {
            Mechanism::Plain => {
                let msg = match decoded_initial {
                    Some(m) => m,
                    None => {
                        self.reply("334 ")?;
                        match self.auth_response()? {
                            Ok(m) => m,
                            Err(flow) => return Ok(flow),
                        }
                    }
                };
                match auth::parse_plain(&msg) {
                    Some(up) => up,
                    None => return self.error("501 5.5.2 malformed PLAIN response"),
                }
            }
            Mechanism::Login => {
                let user = match decoded_initial {
                    Some(u) => u,
                    None => {
                        self.reply(auth::PROMPT_USER)?;
                        match self.auth_response()? {
                            Ok(u) => u,
                            Err(flow) => return Ok(flow),
                        }
                    }
                };
                self.reply(auth::PROMPT_PASS)?;
                let pass = match self.auth_response()? {
                    Ok(p) => p,
                    Err(flow) => return Ok(flow),
                };
                (user, pass)
            }
        };
        if !auth::acceptable_login(&user) || pass.contains(&0) {
            return self.error("501 5.5.2 malformed login name or password");
        }
        let login = String::from_utf8_lossy(&user).into_owned();
        match self.outside.check_password(&user, &pass) {
            Ok(true) => {
                // The user database lower-cases the whole address (postern-mailstore), so
                // `Alice@…` and `alice@…` are one account: from here on it has one name,
                // for the rate-limit blocks, the logs, AUTHUSER and the sender-login match.
                let login = account_name(&login);
                let line = LogLine::event("auth")
                    .kv("ip", &self.peer.ip)
                    .kv("user", &login)
                    .kv("mech", mech.name())
                    .kv("result", "ok")
                    .kv("tls", self.tls_word());
                self.outside.log(line);
                self.auth_user = Some(login);
                self.reply("235 2.7.0 authentication successful")
                    .map(|_| Flow::Continue)
            }
            Ok(false) => {
                self.auth_failures += 1;
                self.reject("authfail", None)
                    .kv("user", &login)
                    .kv("mech", mech.name())
                    .emit_to(self.outside);
                self.out.flush()?;
                self.outside.sleep(self.cfg.auth_fail_delay);
                if self.auth_failures >= auth::MAX_FAILURES {
                    self.reply("421 4.7.0 too many authentication failures, closing connection")?;
                    return Ok(Flow::Close("authfail"));
                }
                self.reply("535 5.7.8 authentication credentials invalid")
                    .map(|_| Flow::Continue)
            }
            Err(e) => self.temp_failure("454 4.7.0 temporary authentication failure", &e),
        }
    }
}

/// The domain `<postmaster>` belongs to: the first `rcpthosts` entry that is a domain
/// (not a `.domain` wildcard), as `alertto` defaults to.
pub fn first_domain(rcpthosts: &[String]) -> Option<&str> {
    rcpthosts
        .iter()
        .map(String::as_str)
        .find(|h| !h.is_empty() && !h.starts_with('.'))
}

/// The account a login authenticated as: its normalised (lower-case) name.
pub fn account_name(login: &str) -> String {
    login.to_ascii_lowercase()
}

/// Reply text from configuration: printable ASCII only.
fn printable_reply(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// Emitting a built line through [`Outside::log`].
trait EmitTo {
    fn emit_to(self, outside: &mut dyn Outside);
}

impl EmitTo for LogLine {
    fn emit_to(self, outside: &mut dyn Outside) {
        outside.log(self);
    }
}

/// Whether two envelope recipients are the same mailbox: the domain compared without
/// case (DNS names are case-insensitive), the local part exactly (RFC 5321 §2.4 leaves
/// its case to the receiving host).
fn same_recipient(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
