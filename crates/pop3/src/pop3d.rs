//! postern-pop3d: the POP3 transaction and update states (RFC 1939 §5–6) over one
//! Maildir, run by a checkpassword program after login. It greets with `+OK`, serves
//! STAT LIST UIDL RETR TOP DELE RSET NOOP CAPA QUIT, and applies deletions and the
//! `new/` → `cur/` renames only at QUIT: a dropped connection or a timeout changes
//! nothing. When the Maildir has a Maildir++ `maildirsize`, QUIT appends one
//! `-bytes -count` line for what it deleted (sizes as the quota counts them: `,S=` in
//! the name, else the file's length).
//!
//! Exit codes are part of the interface with postern-popup: before the greeting, 1 =
//! refused (running as root, as qmail-pop3d does), 100 = no such Maildir, 111 = trouble;
//! after the greeting the session is ours and we always exit 0.

use crate::command::{self, message_number};
use crate::lineio::{self, Input, LineReader, Source, TimedWriter, MAX_COMMAND_LINE};
use crate::maildir::{Maildir, Message, Stuffer, BLOCK};
use postern_common::control::Control;
use postern_common::logline::LogLine;
use postern_common::starttls;
use postern_common::{getopt, Error, Result, ResultExt};
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub const USAGE: &str = "postern-pop3d [-t SECONDS] [MAILDIR]";
/// Autologout: idle seconds in the transaction state (RFC 1939 asks for at least 600).
pub const DEFAULT_TIMEOUT: u64 = 600;
/// Exit code when started as root (qmail-pop3d's; postern-popup reports a failed login).
pub const EXIT_ROOT: i32 = 1;
/// Output buffer: replies are collected and written when no more commands are waiting.
pub const OUTPUT_BUFFER: usize = 64 * 1024;

enum Flow {
    Continue,
    Quit,
}

type Handler = fn(&mut Session, &command::Command) -> io::Result<Flow>;

/// The verbs of the transaction state.
const COMMANDS: &[(&str, Handler)] = &[
    ("STAT", Session::stat),
    ("LIST", Session::list),
    ("UIDL", Session::uidl),
    ("RETR", Session::retr),
    ("TOP", Session::top),
    ("DELE", Session::dele),
    ("RSET", Session::rset),
    ("NOOP", Session::noop),
    ("CAPA", Session::capa),
    ("QUIT", Session::quit),
];

struct Session {
    maildir: Maildir,
    messages: Vec<Message>,
    /// Replies (buffered; flushed when no pipelined command is waiting).
    out: Box<dyn Write>,
    retrieved: u64,
    retrieved_bytes: u64,
    deleted: u64,
    user: String,
    ip: String,
}

pub fn main() -> Result<()> {
    postern_common::privilege::not_dumpable()?;
    let (opts, args) = getopt::parse(&getopt::args(), "t:", USAGE)?;
    if args.len() > 1 {
        return Err(Error::usage(USAGE));
    }
    let user = std::env::var("AUTHUSER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default();
    let ip = std::env::var("TCPREMOTEIP").unwrap_or_default();
    if nix::unistd::geteuid().is_root() || nix::unistd::getuid().is_root() {
        LogLine::event("refuse")
            .kv("reason", "root")
            .kv("user", &user)
            .kv("ip", &ip)
            .emit();
        return Err(Error::code(EXIT_ROOT, "refusing to run as root"));
    }
    let root = match args.first() {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("MAILDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("./Maildir")),
    };
    let timeout = match opts.iter().rev().find(|o| o.letter == 't') {
        Some(o) => o.number()?,
        None => Control::from_env().number("timeoutpop3d", DEFAULT_TIMEOUT)?,
    };
    let timeout = Duration::from_secs(timeout.max(1));
    let maildir = Maildir::new(&root);
    let label = root.display().to_string();
    match std::fs::metadata(maildir.path("cur")) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::perm(format!("no Maildir at {label}")));
        }
        other => {
            other.temp(format!("unable to open {label}"))?;
        }
    }
    if let Err(e) = maildir.clean_tmp(SystemTime::now()) {
        postern_common::exit::warn("postern-pop3d", format!("unable to clean {label}/tmp: {e}"));
    }
    let messages = maildir.scan().temp(format!("unable to read {label}"))?;
    let output = TimedWriter::new(lineio::stdout_file().temp("unable to use stdout")?, timeout);
    output.set_nonblocking().temp("unable to set up stdout")?;
    let input = lineio::stdin_file().temp("unable to use stdin")?;
    let mut session = Session {
        maildir,
        messages,
        out: Box::new(BufWriter::with_capacity(OUTPUT_BUFFER, output)),
        retrieved: 0,
        retrieved_bytes: 0,
        deleted: 0,
        user,
        ip,
    };
    let (count, bytes) = session.totals();
    let tls = std::env::var(starttls::ENV_VERSION).ok();
    let mut login = LogLine::event("login")
        .kv("user", &session.user)
        .kv("ip", &session.ip);
    login = login.kv("tls", if tls.is_some() { "yes" } else { "no" });
    if let Some(version) = &tls {
        login = login.kv("version", version);
    }
    login.kv("messages", count).kv("bytes", bytes).emit();
    let reason = session.run(LineReader::buffered(input), timeout);
    session.log_logout(reason);
    Ok(())
}

impl Session {
    fn totals(&self) -> (u64, u64) {
        self.messages
            .iter()
            .filter(|m| !m.deleted)
            .fold((0, 0), |(n, b), m| (n + 1, b + m.size))
    }

    fn log_logout(&self, reason: &str) {
        LogLine::event("logout")
            .kv("user", &self.user)
            .kv("ip", &self.ip)
            .kv("reason", reason)
            .kv("retrieved", self.retrieved)
            .kv("deleted", self.deleted)
            .kv("bytes", self.retrieved_bytes)
            .emit();
    }

    fn line(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.write_all(b"\r\n")
    }

    /// The session; returns why it ended (for the log).
    fn run<S: Source>(&mut self, mut input: LineReader<S>, timeout: Duration) -> &'static str {
        let (count, bytes) = self.totals();
        let greeting = format!("+OK {count} messages ({bytes} octets)");
        if self.line(&greeting).and_then(|_| self.out.flush()).is_err() {
            return "writeerror";
        }
        loop {
            let line = match input.read_line(MAX_COMMAND_LINE, timeout) {
                Ok(Input::Line(line)) => line,
                Ok(Input::Eof) => return "eof",
                Ok(Input::Timeout) => return "timeout",
                Ok(Input::TooLong) => {
                    let _ = self
                        .line("-ERR line too long")
                        .and_then(|_| self.out.flush());
                    return "toolong";
                }
                Err(_) => return "readerror",
            };
            let result = match command::parse(&line) {
                Err(_) => self.line("-ERR syntax error").map(|_| Flow::Continue),
                Ok(cmd) => match COMMANDS.iter().find(|(name, _)| *name == cmd.keyword) {
                    Some((_, handler)) => handler(self, &cmd),
                    None => self.line("-ERR unknown command").map(|_| Flow::Continue),
                },
            };
            let flow = match result {
                Ok(flow) => flow,
                Err(_) => return "writeerror",
            };
            if let Flow::Quit = flow {
                return if self.out.flush().is_ok() {
                    "quit"
                } else {
                    "writeerror"
                };
            }
            // Pipelined commands: answer them all in one write.
            if !input.has_buffered() && self.out.flush().is_err() {
                return "writeerror";
            }
        }
    }

    /// The message a number argument names, if it exists and is not deleted; otherwise
    /// the `-ERR` reply has been written.
    fn pick(&mut self, word: Option<&[u8]>) -> io::Result<Option<usize>> {
        match message_number(word, self.messages.len()) {
            Err(why) => self.line(&format!("-ERR {why}")).map(|_| None),
            Ok(i) if self.messages[i].deleted => self.line("-ERR message is deleted").map(|_| None),
            Ok(i) => Ok(Some(i)),
        }
    }

    fn stat(&mut self, _cmd: &command::Command) -> io::Result<Flow> {
        let (count, bytes) = self.totals();
        self.line(&format!("+OK {count} {bytes}"))?;
        Ok(Flow::Continue)
    }

    fn listing(
        &mut self,
        cmd: &command::Command,
        what: fn(&Message) -> String,
    ) -> io::Result<Flow> {
        let words = cmd.words();
        if let Some(&word) = words.first() {
            if words.len() > 1 {
                self.line("-ERR syntax error")?;
            } else if let Some(i) = self.pick(Some(word))? {
                let text = format!("+OK {} {}", i + 1, what(&self.messages[i]));
                self.line(&text)?;
            }
            return Ok(Flow::Continue);
        }
        self.line("+OK listing follows")?;
        for i in 0..self.messages.len() {
            if !self.messages[i].deleted {
                let text = format!("{} {}", i + 1, what(&self.messages[i]));
                self.line(&text)?;
            }
        }
        self.line(".")?;
        Ok(Flow::Continue)
    }

    fn list(&mut self, cmd: &command::Command) -> io::Result<Flow> {
        self.listing(cmd, |m| m.size.to_string())
    }

    fn uidl(&mut self, cmd: &command::Command) -> io::Result<Flow> {
        self.listing(cmd, Message::uidl)
    }

    fn retr(&mut self, cmd: &command::Command) -> io::Result<Flow> {
        let words = cmd.words();
        if words.len() != 1 {
            self.line("-ERR syntax error: RETR needs a message number")?;
            return Ok(Flow::Continue);
        }
        if let Some(i) = self.pick(words.first().copied())? {
            self.send(i, Stuffer::whole())?;
        }
        Ok(Flow::Continue)
    }

    fn top(&mut self, cmd: &command::Command) -> io::Result<Flow> {
        let words = cmd.words();
        let lines = match words[..] {
            [_, n] => command::number(n),
            _ => None,
        };
        let Some(lines) = lines else {
            self.line("-ERR syntax error: TOP needs a message number and a line count")?;
            return Ok(Flow::Continue);
        };
        if let Some(i) = self.pick(words.first().copied())? {
            self.send(i, Stuffer::top(lines))?;
        }
        Ok(Flow::Continue)
    }

    /// Send message `i` through `stuffer`. A message that another session deleted gets
    /// `-ERR`, and the session goes on.
    fn send(&mut self, i: usize, mut stuffer: Stuffer) -> io::Result<()> {
        let mut file = match self.maildir.open(&mut self.messages[i]) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return self.line("-ERR message was removed by another session");
            }
            Err(_) => return self.line("-ERR [SYS/TEMP] unable to open that message"),
        };
        let whole = stuffer.top_limit().is_none();
        let size = self.messages[i].size;
        self.line(&if whole {
            format!("+OK {size} octets")
        } else {
            "+OK top of message follows".to_string()
        })?;
        let mut buf = vec![0u8; BLOCK];
        let mut out = Vec::with_capacity(BLOCK + BLOCK / 2);
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The reply has started: all we can do is end the message early.
                Err(_) => break,
            };
            out.clear();
            let more = stuffer.feed(&buf[..n], &mut out);
            self.out.write_all(&out)?;
            if !more {
                break;
            }
        }
        out.clear();
        stuffer.finish(&mut out);
        self.out.write_all(&out)?;
        self.messages[i].seen = true;
        if whole {
            self.retrieved += 1;
            self.retrieved_bytes += size;
        }
        Ok(())
    }

    fn dele(&mut self, cmd: &command::Command) -> io::Result<Flow> {
        let words = cmd.words();
        if words.len() != 1 {
            self.line("-ERR syntax error: DELE needs a message number")?;
            return Ok(Flow::Continue);
        }
        if let Some(i) = self.pick(words.first().copied())? {
            self.messages[i].deleted = true;
            self.line(&format!("+OK message {} deleted", i + 1))?;
        }
        Ok(Flow::Continue)
    }

    fn rset(&mut self, _cmd: &command::Command) -> io::Result<Flow> {
        for m in &mut self.messages {
            m.deleted = false;
        }
        let (count, bytes) = self.totals();
        self.line(&format!("+OK {count} messages ({bytes} octets)"))?;
        Ok(Flow::Continue)
    }

    fn noop(&mut self, _cmd: &command::Command) -> io::Result<Flow> {
        self.line("+OK")?;
        Ok(Flow::Continue)
    }

    fn capa(&mut self, _cmd: &command::Command) -> io::Result<Flow> {
        self.line("+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n.")?;
        Ok(Flow::Continue)
    }

    /// The update state: delete what was marked, move the rest to cur/ with its flags.
    fn quit(&mut self, _cmd: &command::Command) -> io::Result<Flow> {
        let mut failed = 0u64;
        // What the deletions free, as the Maildir++ quota counts it.
        let (mut freed_bytes, mut freed_count) = (0u64, 0u64);
        for i in 0..self.messages.len() {
            let mut msg = self.messages[i].clone();
            let result = if msg.deleted {
                self.maildir.delete(&mut msg)
            } else {
                self.maildir.keep(&mut msg).map(|()| None)
            };
            match result {
                Ok(removed) if msg.deleted => {
                    self.deleted += 1;
                    if let Some(size) = removed {
                        freed_bytes = freed_bytes.saturating_add(size);
                        freed_count += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    postern_common::exit::warn(
                        "postern-pop3d",
                        format!(
                            "unable to update {}: {e}",
                            postern_common::logline::printable(
                                msg.path().as_os_str().as_encoded_bytes()
                            )
                        ),
                    );
                }
            }
        }
        // Make the deletions and renames durable before we say they happened.
        for dir in ["new", "cur"] {
            if postern_common::atomic::fsync_dir(&self.maildir.path(dir)).is_err() {
                failed += 1;
            }
        }
        // One summed `-bytes -count` line, as Maildir++ allows; only when the maildir
        // has a maildirsize (append leaves a missing one missing).
        if freed_count > 0 {
            let bytes = i64::try_from(freed_bytes).unwrap_or(i64::MAX);
            let count = i64::try_from(freed_count).unwrap_or(i64::MAX);
            if let Err(e) = postern_mailstore::maildir::append(&self.maildir.root, -bytes, -count) {
                // The messages are gone; a stale maildirsize is recalculated later.
                postern_common::exit::warn("postern-pop3d", e.to_string());
            }
        }
        if failed > 0 {
            self.line(&format!(
                "-ERR [SYS/TEMP] unable to update {failed} messages"
            ))?;
        } else {
            self.line("+OK bye")?;
        }
        Ok(Flow::Quit)
    }
}

#[cfg(test)]
mod tests {
    //! The session driven in-process: each command next to the reply it must get.
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn maildir(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        for (i, (name, body)) in files.iter().enumerate() {
            let path = dir.path().join(name);
            std::fs::write(&path, body).unwrap();
            let t = nix::sys::time::TimeVal::new(1_700_000_000 + i as i64, 0);
            nix::sys::stat::utimes(&path, &t, &t).unwrap();
        }
        dir
    }

    /// Run `dialog` (command, expected reply) against `dir`; returns the end reason.
    fn converse(dir: &std::path::Path, dialog: &[(&str, &str)]) -> &'static str {
        let maildir = Maildir::new(dir);
        let messages = maildir.scan().unwrap();
        let out = Shared::default();
        let mut session = Session {
            maildir,
            messages,
            out: Box::new(out.clone()),
            retrieved: 0,
            retrieved_bytes: 0,
            deleted: 0,
            user: "u".into(),
            ip: "ip".into(),
        };
        let input: String = dialog[1..]
            .iter()
            .map(|(cmd, _)| format!("{cmd}\r\n"))
            .collect();
        let reason = session.run(
            LineReader::buffered(input.as_bytes()),
            Duration::from_secs(1),
        );
        let want: String = dialog
            .iter()
            .map(|(_, reply)| reply.replace('\n', "\r\n") + "\r\n")
            .collect();
        assert_eq!(String::from_utf8_lossy(&out.0.borrow()), want);
        reason
    }

    const A: &[u8] = b"Subject: a\n\nbody a\n";
    const B: &[u8] = b"Subject: b\n\n.dot\nb2\n";

    #[test]
    fn transaction_dialog() {
        let dir = maildir(&[("new/1.a.host", A), ("cur/2.b.host:2,F", B)]);
        let reason = converse(
            dir.path(),
            &[
                ("", "+OK 2 messages (46 octets)"),
                ("STAT", "+OK 2 46"),
                ("LIST", "+OK listing follows\n1 22\n2 24\n."),
                ("list 2", "+OK 2 24"),
                ("UIDL", "+OK listing follows\n1 1.a.host\n2 2.b.host\n."),
                ("TOP 2 0", "+OK top of message follows\nSubject: b\n\n."),
                ("RETR 2", "+OK 24 octets\nSubject: b\n\n..dot\nb2\n."),
                ("RETR 0", "-ERR messages are counted from 1"),
                ("RETR 3", "-ERR no such message"),
                ("RETR", "-ERR syntax error: RETR needs a message number"),
                (
                    "TOP 1",
                    "-ERR syntax error: TOP needs a message number and a line count",
                ),
                ("DELE 1", "+OK message 1 deleted"),
                ("DELE 1", "-ERR message is deleted"),
                ("STAT", "+OK 1 24"),
                ("LIST", "+OK listing follows\n2 24\n."),
                ("RSET", "+OK 2 messages (46 octets)"),
                ("DELE 1", "+OK message 1 deleted"),
                ("APOP x y", "-ERR unknown command"),
                // No IMPLEMENTATION line: the software is not named (as in the SMTP banner).
                (
                    "CAPA",
                    "+OK capability list follows\nTOP\nUIDL\nRESP-CODES\nPIPELINING\n.",
                ),
                ("NO\0OP", "-ERR syntax error"),
                ("NOOP", "+OK"),
                ("QUIT", "+OK bye"),
            ],
        );
        assert_eq!(reason, "quit");
        assert!(!dir.path().join("new/1.a.host").exists());
        assert!(dir.path().join("cur/2.b.host:2,FS").exists());
    }

    #[test]
    fn end_of_input_without_quit_changes_nothing() {
        let dir = maildir(&[("new/1.a.host", A)]);
        let reason = converse(
            dir.path(),
            &[
                ("", "+OK 1 messages (22 octets)"),
                ("RETR 1", "+OK 22 octets\nSubject: a\n\nbody a\n."),
                ("DELE 1", "+OK message 1 deleted"),
            ],
        );
        assert_eq!(reason, "eof");
        assert!(dir.path().join("new/1.a.host").exists());
    }
}
