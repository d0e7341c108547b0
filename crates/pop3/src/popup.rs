//! postern-popup: the POP3 authorization state (RFC 1939 §4, RFC 2449 CAPA, RFC 5034
//! AUTH PLAIN, RFC 2595 STLS). It greets, collects a name and password, and runs a
//! checkpassword program with them on fd 3; on success that program runs
//! the mail server (postern-pop3d), which takes over the session.
//!
//! Differences from qmail-popup: up to [`MAX_FAILURES`] failed logins per connection
//! (not one); CAPA, AUTH PLAIN and STLS; `control/pop3requiretls` refuses passwords
//! before TLS. Input is read one byte at a time, so the commands a client pipelines after
//! its PASS reach the mail server untouched.

use crate::command;
use crate::lineio::{self, Input, LineReader, TimedWriter, MAX_COMMAND_LINE};
use nix::fcntl::OFlag;
use postern_common::control::Control;
use postern_common::logline::{printable, LogLine};
use postern_common::sasl;
use postern_common::starttls::{self, TlsControl, TlsInfo};
use postern_common::sys;
use postern_common::{getopt, Error, Result, ResultExt};
use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, SystemTime};

pub const USAGE: &str = "postern-popup [-t SECONDS] HOST CHECKPROGRAM SUBPROGRAM...";
/// Idle timeout before login, seconds (qmail-popup's 1200).
pub const DEFAULT_TIMEOUT: u64 = 1200;
/// Failed logins allowed per connection before we hang up.
pub const MAX_FAILURES: u32 = 3;
/// Commands allowed before login, so a client cannot stay forever without logging in.
pub const MAX_COMMANDS: u32 = 100;
/// Longest SASL continuation line (RFC 5034 lets it exceed the 255 of a command).
pub const MAX_SASL_LINE: usize = 1024;
/// The checkpassword interface reads at most 512 bytes from fd 3.
pub const MAX_CHECK_INPUT: usize = 512;
/// Exit codes of the checkpassword program / mail server that we interpret.
pub const CHECK_BAD_PASSWORD: i32 = 1;
pub const CHECK_PERM: i32 = 100;

enum Flow {
    Continue,
    Stop,
}

type Handler = fn(&mut Popup, &[u8]) -> Result<Flow>;

/// The verbs of the authorization state.
const COMMANDS: &[(&str, Handler)] = &[
    ("CAPA", Popup::capa),
    ("USER", Popup::user),
    ("PASS", Popup::pass),
    ("AUTH", Popup::auth),
    ("STLS", Popup::stls),
    ("NOOP", Popup::noop),
    ("QUIT", Popup::quit),
];

struct Popup {
    timestamp: String,
    program: Vec<OsString>,
    timeout: Duration,
    require_tls: bool,
    tls: Option<TlsControl>,
    tls_info: Option<TlsInfo>,
    input: LineReader<File>,
    output: TimedWriter,
    user: Option<Vec<u8>>,
    failures: u32,
    ip: String,
}

pub fn main() -> Result<()> {
    postern_common::privilege::not_dumpable()?;
    let (opts, args) = getopt::parse(&getopt::args(), "t:", USAGE)?;
    if args.len() < 3 {
        return Err(Error::usage(USAGE));
    }
    let host = args[0]
        .to_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::usage(USAGE))?;
    let control = Control::from_env();
    let timeout = match opts.iter().rev().find(|o| o.letter == 't') {
        Some(o) => o.number()?,
        None => control.number("timeoutpop3", DEFAULT_TIMEOUT)?,
    };
    let require_tls = control.flag("pop3requiretls")?;
    let tls = TlsControl::from_env()?;
    // Implicit TLS (POP3S, 995): postern-tlsd -i did the handshake before starting us.
    let tls_info = match (&tls, std::env::var(starttls::ENV_VERSION)) {
        (None, Ok(version)) if !version.is_empty() => Some(TlsInfo {
            version,
            cipher: std::env::var(starttls::ENV_CIPHER).unwrap_or_default(),
        }),
        _ => None,
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let timeout = Duration::from_secs(timeout.max(1));
    let mut popup = Popup {
        timestamp: format!("<{}.{}@{}>", std::process::id(), now, host),
        program: args[1..].to_vec(),
        timeout,
        require_tls,
        tls,
        tls_info,
        input: LineReader::one_byte(lineio::stdin_file().temp("unable to use stdin")?),
        output: TimedWriter::new(lineio::stdout_file().temp("unable to use stdout")?, timeout),
        user: None,
        failures: 0,
        ip: std::env::var("TCPREMOTEIP").unwrap_or_default(),
    };
    popup.run()
}

impl Popup {
    fn reply(&mut self, text: &str) -> Result<()> {
        let mut line = Vec::with_capacity(text.len() + 2);
        line.extend_from_slice(text.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.output
            .write_all(&line)
            .temp("unable to write to the client")
    }

    fn run(&mut self) -> Result<()> {
        let greeting = format!("+OK {}", self.timestamp);
        self.reply(&greeting)?;
        for _ in 0..MAX_COMMANDS {
            let line = match self
                .input
                .read_line(MAX_COMMAND_LINE, self.timeout)
                .temp("unable to read from the client")?
            {
                Input::Line(line) => line,
                Input::Eof => return Ok(()),
                Input::Timeout => {
                    self.log("timeout").emit();
                    return Ok(());
                }
                Input::TooLong => return self.reply("-ERR line too long"),
            };
            let flow = match command::parse(&line) {
                Err(_) => {
                    self.reply("-ERR syntax error")?;
                    Flow::Continue
                }
                Ok(cmd) => match COMMANDS.iter().find(|(name, _)| *name == cmd.keyword) {
                    Some((_, handler)) => handler(self, cmd.arg)?,
                    None => {
                        self.reply("-ERR authorization first")?;
                        Flow::Continue
                    }
                },
            };
            if let Flow::Stop = flow {
                return Ok(());
            }
        }
        self.reply("-ERR too many commands without login")
    }

    fn log(&self, event: &str) -> LogLine {
        LogLine::event(event)
            .kv("ip", &self.ip)
            .kv("tls", if self.tls_info.is_some() { "yes" } else { "no" })
    }

    /// Passwords may travel now: TLS is active, or it is not required.
    fn cleartext_ok(&self) -> bool {
        !self.require_tls || self.tls_info.is_some()
    }

    fn refuse_cleartext(&mut self) -> Result<Flow> {
        self.reply("-ERR [AUTH] plaintext authentication disallowed without TLS: use STLS first")?;
        Ok(Flow::Continue)
    }

    fn capa(&mut self, _arg: &[u8]) -> Result<Flow> {
        let mut lines = vec![
            "+OK capability list follows",
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
        ];
        if self.cleartext_ok() {
            lines.extend(["USER", "SASL PLAIN"]);
        }
        if self.tls.is_some() && self.tls_info.is_none() {
            lines.push("STLS");
        }
        // No IMPLEMENTATION: what the server runs is not the client's business (the SMTP
        // banner does not say it either, and `posternctl audit` checks that).
        lines.push(".");
        self.reply(&lines.join("\r\n"))?;
        Ok(Flow::Continue)
    }

    fn user(&mut self, arg: &[u8]) -> Result<Flow> {
        if !self.cleartext_ok() {
            return self.refuse_cleartext();
        }
        if arg.is_empty() {
            self.reply("-ERR syntax error: USER needs a name")?;
            return Ok(Flow::Continue);
        }
        self.user = Some(arg.to_vec());
        self.reply("+OK send PASS")?;
        Ok(Flow::Continue)
    }

    fn pass(&mut self, arg: &[u8]) -> Result<Flow> {
        if !self.cleartext_ok() {
            return self.refuse_cleartext();
        }
        let Some(user) = self.user.take() else {
            self.reply("-ERR USER first")?;
            return Ok(Flow::Continue);
        };
        if arg.is_empty() {
            self.reply("-ERR syntax error: PASS needs a password")?;
            return Ok(Flow::Continue);
        }
        self.login(&user, arg, "user")
    }

    fn auth(&mut self, arg: &[u8]) -> Result<Flow> {
        let words: Vec<&[u8]> = arg
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .collect();
        let Some(mech) = words.first() else {
            self.reply("+OK mechanisms follow\r\nPLAIN\r\n.")?;
            return Ok(Flow::Continue);
        };
        if !mech.eq_ignore_ascii_case(b"PLAIN") || words.len() > 2 {
            self.reply("-ERR unsupported authentication mechanism")?;
            return Ok(Flow::Continue);
        }
        if !self.cleartext_ok() {
            return self.refuse_cleartext();
        }
        let response = match words.get(1) {
            Some(&b"=") => Vec::new(),
            Some(initial) => initial.to_vec(),
            None => {
                self.reply("+ ")?;
                match self
                    .input
                    .read_line(MAX_SASL_LINE, self.timeout)
                    .temp("unable to read from the client")?
                {
                    Input::Line(line) if line == b"*" => {
                        self.reply("-ERR authentication cancelled")?;
                        return Ok(Flow::Continue);
                    }
                    Input::Line(line) => line,
                    Input::Eof | Input::Timeout => return Ok(Flow::Stop),
                    Input::TooLong => {
                        self.reply("-ERR line too long")?;
                        return Ok(Flow::Stop);
                    }
                }
            }
        };
        match sasl::decode_plain(&response) {
            Ok((user, pass)) => self.login(&user, &pass, "plain"),
            Err(_) => {
                self.reply("-ERR [AUTH] malformed PLAIN response")?;
                Ok(Flow::Continue)
            }
        }
    }

    fn stls(&mut self, arg: &[u8]) -> Result<Flow> {
        if self.tls_info.is_some() {
            self.reply("-ERR TLS is already active")?;
            return Ok(Flow::Continue);
        }
        if !arg.is_empty() {
            self.reply("-ERR syntax error: STLS takes no argument")?;
            return Ok(Flow::Continue);
        }
        let Some(ctl) = self.tls.as_mut() else {
            self.reply("-ERR STLS not available")?;
            return Ok(Flow::Continue);
        };
        let discarded = ctl.request(self.input.get_ref())?;
        self.input.discard_buffered();
        if discarded > 0 {
            self.log("discard")
                .kv("bytes", discarded)
                .kv("reason", "pipelined after STLS")
                .emit();
        }
        self.reply("+OK begin TLS negotiation")?;
        let outcome = match self.tls.as_mut() {
            Some(ctl) => ctl.start()?,
            None => Err("no control channel".to_string()),
        };
        match outcome {
            Ok(info) => {
                // RFC 2595 §4: forget everything said in cleartext.
                self.tls_info = Some(info);
                self.user = None;
                Ok(Flow::Continue)
            }
            Err(reason) => {
                self.log("tlsfail").kv("reason", reason).emit();
                Ok(Flow::Stop)
            }
        }
    }

    fn noop(&mut self, _arg: &[u8]) -> Result<Flow> {
        self.reply("+OK")?;
        Ok(Flow::Continue)
    }

    fn quit(&mut self, _arg: &[u8]) -> Result<Flow> {
        self.reply("+OK bye")?;
        Ok(Flow::Stop)
    }

    /// Run the checkpassword program; interpret its exit as the interface says.
    fn login(&mut self, user: &[u8], pass: &[u8], mech: &str) -> Result<Flow> {
        let mut data = Vec::with_capacity(user.len() + pass.len() + self.timestamp.len() + 3);
        for part in [user, pass, self.timestamp.as_bytes()] {
            data.extend_from_slice(part);
            data.push(0);
        }
        let status = if data.len() > MAX_CHECK_INPUT || user.contains(&0) {
            None // cannot be a valid login: answer like a wrong password
        } else {
            Some(self.check(&data)?)
        };
        let code = status.map(|s| (s.code(), s.signal()));
        match code {
            Some((Some(0), _)) => Ok(Flow::Stop), // the mail server ran the session
            None | Some((Some(CHECK_BAD_PASSWORD), _)) => {
                self.failures += 1;
                self.log("loginfail")
                    .kv("reason", "auth")
                    .kv("user", printable(user))
                    .kv("mech", mech)
                    .kv("failures", self.failures)
                    .emit();
                if self.failures >= MAX_FAILURES {
                    self.reply("-ERR [AUTH] authentication failed: too many failures")?;
                    return Ok(Flow::Stop);
                }
                self.reply("-ERR [AUTH] authentication failed")?;
                Ok(Flow::Continue)
            }
            Some((Some(CHECK_PERM), _)) => {
                self.log("loginfail")
                    .kv("user", printable(user))
                    .kv("status", CHECK_PERM)
                    .emit();
                self.reply("-ERR [SYS/PERM] mailbox unavailable")?;
                Ok(Flow::Stop)
            }
            Some((Some(other), _)) => {
                self.log("loginfail")
                    .kv("user", printable(user))
                    .kv("status", other)
                    .emit();
                self.reply("-ERR [SYS/TEMP] temporary problem, try again later")?;
                Ok(Flow::Stop)
            }
            Some((None, signal)) => {
                self.log("loginfail")
                    .kv("user", printable(user))
                    .kv("signal", signal.unwrap_or(0))
                    .emit();
                self.reply("-ERR [SYS/TEMP] aack, child crashed")?;
                Ok(Flow::Stop)
            }
        }
    }

    fn check(&mut self, data: &[u8]) -> Result<std::process::ExitStatus> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).temp("unable to create a pipe")?;
        let mut cmd = Command::new(&self.program[0]);
        cmd.args(&self.program[1..]);
        match &self.tls_info {
            Some(info) => cmd
                .env(starttls::ENV_VERSION, &info.version)
                .env(starttls::ENV_CIPHER, &info.cipher),
            None => cmd
                .env_remove(starttls::ENV_VERSION)
                .env_remove(starttls::ENV_CIPHER),
        };
        sys::give_fd3(&mut cmd, r.as_raw_fd());
        sys::with_default_signals(&mut cmd);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = self.reply("-ERR [SYS/TEMP] temporary problem, try again later");
                return Err(Error::io(
                    format!("unable to run {}", self.program[0].to_string_lossy()),
                    &e,
                ));
            }
        };
        drop(r);
        // A checker that exits without reading gives EPIPE here; its exit status decides.
        let _ = File::from(w).write_all(data);
        child
            .wait()
            .temp("unable to wait for the checkpassword program")
    }
}
