//! The SMTP state machine for one connection, generic over its input and output so it
//! runs in-process in tests. Everything outside the protocol (the queue, the user
//! database, the checkpassword program, postern-tlsd, the clock, the log) is reached
//! through [`Outside`], which the binary implements for real and tests fake.
//!
//! Replies are collected and flushed only when no more pipelined input is waiting
//! (RFC 2920), and always before a pause or a DATA transfer. Nothing a client sends is
//! ever echoed in a reply.
//!
//! This module keeps the dispatch loop and what every command shares (replies, errors,
//! reject lines, EHLO); MAIL and RCPT are in `envelope`, DATA in `message`, STARTTLS and
//! AUTH in `login`.

use crate::command::{self, Verb};
use crate::config::{Config, Peer};
use crate::greylist;
use crate::line::{Input, LineError, LineReader, MAX_COMMAND, MAX_TEXT};
use crate::queue::Job;
use crate::recipients::Verdict;
use postern_common::logline::LogLine;
use postern_common::Result;
use postern_mailstore::verifycache::Answer;
use std::io::{self, Write};
use std::time::Duration;

mod envelope;
mod login;
mod message;

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

    fn temp_failure(&mut self, reply: &str, err: &postern_common::Error) -> io::Result<Flow> {
        let line = LogLine::event("error")
            .kv("ip", &self.peer.ip)
            .kv("what", &err.msg);
        self.outside.log(line);
        self.reply(reply).map(|_| Flow::Continue)
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

#[cfg(test)]
mod tests;
