//! One SMTP transaction with one server (RFC 5321): greeting, EHLO (HELO when EHLO is
//! refused), STARTTLS (opportunistic, or required by the route: then no TLS means no
//! transaction), AUTH PLAIN or LOGIN inside TLS when the route gives credentials, MAIL
//! with SIZE and BODY=8BITMIME when offered (SMTPUTF8 when an address is not ASCII), every RCPT of the domain, DATA, the
//! dot-stuffed CRLF message, QUIT. With PIPELINING the MAIL, RCPT and DATA commands go in
//! one write. Results are per recipient.
//!
//! A malformed reply ([`reply`]: not CRLF-ended, a bare CR or LF, a NUL…) ends the
//! session at once, a temporary failure; a message bigger than the server's `SIZE n`
//! (n > 0) is never sent: a permanent failure (5.3.4) before MAIL.
//!
//! This module sets the session up (connect, greeting, EHLO, STARTTLS, AUTH); MAIL to
//! the end of DATA, and the message's wire form, are in `transaction`.

use super::auth;
use super::tls;
use postern_wire::delivery_report::RcptVerdict;
use postern_wire::smtp_reply::{self as reply, Reply};
use postern_wire::verdict::Verdict;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

mod transaction;

use transaction::transaction;
pub use transaction::{data_bytes, message_size, size_limit};

/// The stream under the session: plain TCP, or TLS over it after STARTTLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Settings of one attempt.
pub struct Params<'a> {
    pub helo: &'a str,
    pub host: &'a str,
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Whether to use STARTTLS when offered (false: the plain retry after a failed
    /// handshake, which only an opportunistic route makes).
    pub starttls: bool,
    /// The route's TLS policy: the rustls configuration and whether TLS is required.
    pub tls: &'a tls::Policy,
    /// Credentials to authenticate with (smtproutes' `auth=`), inside TLS only.
    pub auth: Option<&'a auth::Credentials>,
}

/// What the server said to one recipient, with text.
pub type RcptResult = (RcptVerdict, String);

/// How one attempt ended.
pub enum Attempt {
    /// Could not talk to this server at all (connect, greeting, EHLO/HELO): try the next.
    NextHost(String),
    /// The TLS handshake failed: try this server again without TLS.
    TlsFailed(String),
    /// A transaction result: recipient reports and the message's verdict.
    Done {
        rcpts: Vec<RcptResult>,
        verdict: Verdict,
        text: String,
    },
}

struct Session {
    io: BufReader<Conn>,
    host: String,
}

impl Session {
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let w = self.io.get_mut();
        w.write_all(bytes)?;
        w.flush()
    }
    fn reply(&mut self) -> io::Result<Reply> {
        reply::read(&mut self.io as &mut dyn BufRead)
    }
    fn said(&self, what: &str, r: &Reply) -> String {
        format!(
            "Connected to {} but {what}.\nRemote host said: {}",
            self.host,
            r.text()
        )
    }
}

/// Why the session ended on an I/O error: the connection died, or the server sent a
/// malformed reply ([`reply::malformed`]: a bare LF or CR, a NUL, a bad line…).
fn lost(host: &str, when: &str, e: &io::Error) -> String {
    match reply::malformed(e) {
        Some(why) => format!("malformed reply from {host} {when}: {why} (#4.5.0)"),
        None => format!(
            "Connected to {host} but connection died {when}: {}",
            postern_common::exit::describe_io(e)
        ),
    }
}

/// EHLO (or HELO): the extension keywords offered, upper-case, or why it failed.
fn greet(s: &mut Session, helo: &str) -> std::result::Result<Vec<String>, String> {
    s.send(format!("EHLO {helo}\r\n").as_bytes())
        .map_err(|e| lost(&s.host, "during EHLO", &e))?;
    let r = s.reply().map_err(|e| lost(&s.host, "during EHLO", &e))?;
    if r.class() == 2 {
        return Ok(r
            .lines
            .iter()
            .skip(1)
            .map(|l| l.to_ascii_uppercase())
            .collect());
    }
    s.send(format!("HELO {helo}\r\n").as_bytes())
        .map_err(|e| lost(&s.host, "during HELO", &e))?;
    let r = s.reply().map_err(|e| lost(&s.host, "during HELO", &e))?;
    if r.class() == 2 {
        Ok(Vec::new())
    } else {
        Err(s.said("my HELO was rejected", &r))
    }
}

/// AUTH PLAIN (preferred) or LOGIN with `c`, inside TLS. `Err`: the attempt's end — a
/// refused AUTH (535 and the like) is a temporary failure, never a bounce: a credentials
/// mistake must not return mail to its senders.
fn authenticate(s: &mut Session, ext: &[String], c: &auth::Credentials) -> Result<(), Attempt> {
    let Some(mech) = auth::choose(&auth::mechanisms(ext)) else {
        quit(s);
        return Err(Attempt::NextHost(format!(
            "auth={} in smtproutes, but {} offers no AUTH PLAIN or LOGIN",
            c.name, s.host
        )));
    };
    let lost_in = |s: &Session, e: io::Error| Attempt::NextHost(lost(&s.host, "during AUTH", &e));
    // Each step: send a line, read the reply.
    let step = |s: &mut Session, line: String| -> Result<Reply, Attempt> {
        s.send(format!("{line}\r\n").as_bytes())
            .map_err(|e| lost_in(s, e))?;
        s.reply().map_err(|e| lost_in(s, e))
    };
    let b64 = |text: &str| postern_common::sasl::encode_base64(text.as_bytes());
    let mut r = if mech == "PLAIN" {
        let r = step(s, format!("AUTH PLAIN {}", auth::plain_response(c)))?;
        if r.code == 334 {
            // A server that ignores the initial response asks for it again.
            step(s, auth::plain_response(c))?
        } else {
            r
        }
    } else {
        step(s, "AUTH LOGIN".into())?
    };
    if mech == "LOGIN" {
        for answer in [&c.user, &c.password] {
            if r.code != 334 {
                break;
            }
            r = step(s, b64(answer))?;
        }
    }
    if r.code == 235 {
        return Ok(());
    }
    quit(s);
    Err(Attempt::Done {
        rcpts: vec![],
        verdict: Verdict::Deferred,
        text: s.said(
            &format!("authentication with auth={} (AUTH {mech}) failed", c.name),
            &r,
        ),
    })
}

fn offers(ext: &[String], word: &str) -> bool {
    ext.iter()
        .any(|l| l.split_whitespace().next() == Some(word))
}

/// Run one attempt against `p.addr`.
pub fn attempt(p: &Params, sender: &[u8], rcpts: &[Vec<u8>], message: &[u8]) -> Attempt {
    let tcp = match TcpStream::connect_timeout(&p.addr, p.connect_timeout) {
        Ok(t) => t,
        Err(e) => {
            return Attempt::NextHost(format!(
                "Unable to connect to {}: {}",
                p.addr,
                postern_common::exit::describe_io(&e)
            ))
        }
    };
    let _ = tcp.set_read_timeout(Some(p.timeout));
    let _ = tcp.set_write_timeout(Some(p.timeout));
    let _ = tcp.set_nodelay(true);
    let mut s = Session {
        io: BufReader::new(Conn::Plain(tcp)),
        host: format!("{} ({})", p.host, p.addr.ip()),
    };
    match s.reply() {
        Ok(r) if r.code == 220 => {}
        Ok(r) => return Attempt::NextHost(s.said("greeting failed", &r)),
        Err(e) => {
            let when = if reply::malformed(&e).is_some() {
                "in its greeting"
            } else {
                "before the greeting"
            };
            return Attempt::NextHost(lost(&s.host, when, &e));
        }
    }
    let mut ext = match greet(&mut s, p.helo) {
        Ok(e) => e,
        Err(why) => return Attempt::NextHost(why),
    };
    let required = p.tls.required.as_deref();
    if p.starttls && offers(&ext, "STARTTLS") {
        if let Err(e) = s.send(b"STARTTLS\r\n") {
            return Attempt::NextHost(lost(&s.host, "during STARTTLS", &e));
        }
        match s.reply() {
            Ok(r) if r.code == 220 => {
                // With TLS required, a failure ends this address (never plain text);
                // otherwise the same address is tried again without STARTTLS.
                let failed = |why: String| match required {
                    Some(_) => Attempt::NextHost(why),
                    None => Attempt::TlsFailed(why),
                };
                if !s.io.buffer().is_empty() {
                    return failed(format!("{} sent data after its STARTTLS reply", s.host));
                }
                let host = s.host.clone();
                let Conn::Plain(tcp) = s.io.into_inner() else {
                    return failed("TLS twice".into());
                };
                let stream = match tls::start(
                    tcp,
                    p.tls.config.clone(),
                    tls::server_name(p.host, p.addr.ip()),
                    &host,
                ) {
                    Ok(stream) => stream,
                    Err(why) => return failed(why),
                };
                s = Session {
                    io: BufReader::new(Conn::Tls(stream)),
                    host,
                };
                ext = match greet(&mut s, p.helo) {
                    Ok(e) => e,
                    Err(why) => return Attempt::NextHost(why),
                };
            }
            Ok(r) => {
                if let Some(req) = required {
                    quit(&mut s);
                    return Attempt::NextHost(format!(
                        "{req}, but {} refused STARTTLS.\nRemote host said: {}",
                        s.host,
                        r.text()
                    ));
                }
                // Refused STARTTLS: carry on in plain text (opportunistic).
            }
            Err(e) => return Attempt::NextHost(lost(&s.host, "during STARTTLS", &e)),
        }
    }
    let encrypted = matches!(s.io.get_ref(), Conn::Tls(_));
    if !encrypted {
        // Nothing of the transaction, and no credentials, ever go in the clear when the
        // route requires TLS (auth= always does).
        if let Some(req) = required.or(p.auth.map(|_| "TLS required for AUTH")) {
            quit(&mut s);
            return Attempt::NextHost(format!("{req}, but {} did not offer STARTTLS", s.host));
        }
    }
    if let Some(c) = p.auth {
        if let Err(a) = authenticate(&mut s, &ext, c) {
            return a;
        }
    }
    transaction(&mut s, &ext, sender, rcpts, message)
}

fn quit(s: &mut Session) {
    if s.send(b"QUIT\r\n").is_ok() {
        let _ = s.reply();
    }
}
