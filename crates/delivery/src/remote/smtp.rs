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

use super::auth;
use super::tls;
use postern_wire::delivery_report::RcptVerdict;
use postern_wire::smtp_path::write_path;
use postern_wire::smtp_reply::{self as reply, Reply};
use postern_wire::verdict::Verdict;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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

/// Convert a message to SMTP DATA: every line ending (LF, CRLF or a lone CR) becomes
/// CRLF, a leading `.` is doubled, a missing final line end is added, and `.CRLF` ends it.
///
/// A deliberate difference from qmail-remote, which refuses (permanently) a message with
/// a partial final line rather than alter it: we fix it up as Postfix does, at the cost
/// of any DKIM signature made over such a malformed message (docs/postern-remote.md).
pub fn data_bytes(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 40 + 5);
    let mut at_start = true;
    let mut i = 0;
    while i < msg.len() {
        let b = msg[i];
        if at_start && b == b'.' {
            out.push(b'.');
        }
        match b {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if msg.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_start = true;
            }
            b'\n' => {
                out.extend_from_slice(b"\r\n");
                at_start = true;
            }
            _ => {
                out.push(b);
                at_start = false;
            }
        }
        i += 1;
    }
    if !at_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The message's size as RFC 1870 counts it, for `SIZE=` and the server's limit: the
/// octets of the message as sent, CRLF line ends included (a missing final one added),
/// without the dot-stuffing and the final `.CRLF` ([`data_bytes`] less those).
pub fn message_size(msg: &[u8]) -> u64 {
    let mut size = 0u64;
    let mut at_start = true;
    let mut i = 0;
    while i < msg.len() {
        match msg[i] {
            b'\r' | b'\n' => {
                if msg[i] == b'\r' && msg.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                size += 2;
                at_start = true;
            }
            _ => {
                size += 1;
                at_start = false;
            }
        }
        i += 1;
    }
    if !at_start {
        size += 2;
    }
    size
}

/// The server's message size limit from its EHLO keywords (`SIZE n`, RFC 1870): `None`
/// when it offers none, or `SIZE 0` / `SIZE` alone (no fixed limit), or a number we
/// cannot read.
pub fn size_limit(ext: &[String]) -> Option<u64> {
    ext.iter().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("SIZE"))
            .then(|| words.next()?.parse::<u64>().ok())
            .flatten()
            .filter(|&n| n > 0)
    })
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
                let conn = match rustls::ClientConnection::new(
                    p.tls.config.clone(),
                    tls::server_name(p.host, p.addr.ip()),
                ) {
                    Ok(c) => c,
                    Err(e) => return failed(format!("TLS setup: {e}")),
                };
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                while stream.conn.is_handshaking() {
                    if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                        return failed(tls::handshake_failure(&host, &e));
                    }
                }
                s = Session {
                    io: BufReader::new(Conn::Tls(Box::new(stream))),
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

fn transaction(
    s: &mut Session,
    ext: &[String],
    sender: &[u8],
    rcpts: &[Vec<u8>],
    message: &[u8],
) -> Attempt {
    let done = |rcpts: Vec<RcptResult>, verdict: Verdict, text: String| Attempt::Done {
        rcpts,
        verdict,
        text,
    };
    let from = match before_mail(s, ext, sender, rcpts, message) {
        Ok(from) => from,
        Err(refused) => return refused,
    };
    let size = message_size(message);
    let utf8 = needs_smtputf8(sender, rcpts);
    let data = data_bytes(message);
    let mut mail = format!("MAIL FROM:{from}");
    if offers(ext, "SIZE") {
        mail.push_str(&format!(" SIZE={size}"));
    }
    if offers(ext, "8BITMIME") && message.iter().any(|&b| b >= 0x80) {
        mail.push_str(" BODY=8BITMIME");
    }
    if utf8 {
        mail.push_str(" SMTPUTF8");
    }
    mail.push_str("\r\n");
    let mut rcpt_cmds = Vec::new();
    for r in rcpts {
        rcpt_cmds.push(write_path(r).map(|p| format!("RCPT TO:{p}\r\n")));
    }
    let pipelining = offers(ext, "PIPELINING");
    let io_fail = |s: &Session, when: &str, e: io::Error| {
        done(vec![], Verdict::Deferred, lost(&s.host, when, &e))
    };

    // MAIL
    let mut batch = mail.clone().into_bytes();
    if pipelining {
        for c in rcpt_cmds.iter().flatten() {
            batch.extend_from_slice(c.as_bytes());
        }
        batch.extend_from_slice(b"DATA\r\n");
    }
    if let Err(e) = s.send(&batch) {
        return io_fail(s, "during MAIL", e);
    }
    let mail_reply = match s.reply() {
        Ok(r) => r,
        Err(e) => return io_fail(s, "during MAIL", e),
    };
    let mut results: Vec<RcptResult> = Vec::new();
    let mut accepted = 0;
    for cmd in &rcpt_cmds {
        let Some(cmd) = cmd else {
            results.push((
                RcptVerdict::Refused,
                "recipient address contains a forbidden character".into(),
            ));
            continue;
        };
        if !pipelining && mail_reply.class() == 2 {
            if let Err(e) = s.send(cmd.as_bytes()) {
                return io_fail(s, "during RCPT", e);
            }
        }
        if pipelining || mail_reply.class() == 2 {
            let r = match s.reply() {
                Ok(r) => r,
                Err(e) => return io_fail(s, "during RCPT", e),
            };
            match r.class() {
                2 => {
                    accepted += 1;
                    results.push((RcptVerdict::Accepted, String::new()));
                }
                5 => results.push((RcptVerdict::Refused, s.said("recipient was rejected", &r))),
                _ => results.push((RcptVerdict::Deferred, s.said("recipient was deferred", &r))),
            }
        }
    }
    if mail_reply.class() != 2 {
        if pipelining {
            let _ = s.reply(); // DATA's reply
        }
        quit(s);
        let verdict = if mail_reply.class() == 5 {
            Verdict::Failed
        } else {
            Verdict::Deferred
        };
        return done(vec![], verdict, s.said("sender was rejected", &mail_reply));
    }
    // DATA
    if !pipelining && accepted > 0 {
        if let Err(e) = s.send(b"DATA\r\n") {
            return io_fail(s, "during DATA", e);
        }
    }
    if accepted == 0 {
        // A server that answers the pipelined DATA with 354 anyway gets an empty message
        // (RFC 2920 §3.1), then its final reply, so the session can end cleanly.
        if pipelining && matches!(s.reply(), Ok(r) if r.code == 354) && s.send(b".\r\n").is_ok() {
            let _ = s.reply();
        }
        quit(s);
        return done(
            results,
            Verdict::Failed,
            format!("Giving up on {}: no recipient was accepted.", s.host),
        );
    }
    let r = match s.reply() {
        Ok(r) => r,
        Err(e) => return io_fail(s, "during DATA", e),
    };
    if r.code != 354 {
        quit(s);
        let verdict = if r.class() == 5 {
            Verdict::Failed
        } else {
            Verdict::Deferred
        };
        return done(results, verdict, s.said("DATA command failed", &r));
    }
    if let Err(e) = s.send(&data) {
        return done(
            results,
            Verdict::Deferred,
            lost(&s.host, "while sending the message", &e),
        );
    }
    let r = match s.reply() {
        Ok(r) => r,
        Err(e) => {
            return done(
                results,
                Verdict::Deferred,
                format!(
                    "{} Possible duplicate!",
                    lost(&s.host, "after the message was sent", &e)
                ),
            )
        }
    };
    quit(s);
    match r.class() {
        2 => done(
            results,
            Verdict::Delivered,
            format!(
                "{} accepted message.\nRemote host said: {}",
                s.host,
                r.text()
            ),
        ),
        5 => done(
            results,
            Verdict::Failed,
            s.said("failed after I sent the message", &r),
        ),
        _ => done(
            results,
            Verdict::Deferred,
            s.said("failed after I sent the message", &r),
        ),
    }
}

/// Whether an address of the transaction is not ASCII (RFC 6531: it needs SMTPUTF8).
fn needs_smtputf8(sender: &[u8], rcpts: &[Vec<u8>]) -> bool {
    !sender.is_ascii() || rcpts.iter().any(|r| !r.is_ascii())
}

/// What is decided before `MAIL`: the sender as a path, or the failure that ends the
/// delivery without sending — a sender that cannot be written, a message over the
/// server's SIZE (RFC 1870), a non-ASCII address for a server without SMTPUTF8. The
/// message is never changed to fit.
fn before_mail(
    s: &mut Session,
    ext: &[String],
    sender: &[u8],
    rcpts: &[Vec<u8>],
    message: &[u8],
) -> std::result::Result<String, Attempt> {
    let failed = |text: String| Attempt::Done {
        rcpts: vec![],
        verdict: Verdict::Failed,
        text,
    };
    let Some(from) = write_path(sender) else {
        return Err(failed(
            "sender address contains a forbidden character".into(),
        ));
    };
    let size = message_size(message);
    if let Some(limit) = size_limit(ext).filter(|&limit| size > limit) {
        // The server said it would refuse it: do not send it at all.
        quit(s);
        return Err(failed(format!(
            "message too big for {} (SIZE {limit}): it is {size} bytes. (#5.3.4)",
            s.host
        )));
    }
    // SMTPUTF8 (RFC 6531): an address that is not ASCII may only go to a server that
    // offers it, with the parameter on MAIL; otherwise the message cannot be sent as it
    // is, and is never changed: it fails for good (#5.6.7) and is bounced.
    if needs_smtputf8(sender, rcpts) && !offers(ext, "SMTPUTF8") {
        quit(s);
        return Err(failed(format!(
            "{} does not offer SMTPUTF8, which this message's non-ASCII address needs. (#5.6.7)",
            s.host
        )));
    }
    Ok(from)
}

fn quit(s: &mut Session) {
    if s.send(b"QUIT\r\n").is_ok() {
        let _ = s.reply();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_crlf_and_dot_stuffed() {
        assert_eq!(
            data_bytes(b"a\n.b\n..c\r\nd\re"),
            b"a\r\n..b\r\n...c\r\nd\r\ne\r\n.\r\n"
        );
        assert_eq!(data_bytes(b".\n"), b"..\r\n.\r\n");
        assert_eq!(data_bytes(b""), b".\r\n");
        assert_eq!(data_bytes(b"x.\n"), b"x.\r\n.\r\n");
    }

    #[test]
    fn size_is_rfc1870s_without_stuffing_and_final_dot() {
        // "a\r\n" + ".b\r\n" (one stuffed dot not counted) + "c\r\n" (added)
        assert_eq!(message_size(b"a\n.b\r\nc"), 3 + 4 + 3);
        assert_eq!(message_size(b""), 0);
        assert_eq!(message_size(b"x\ry"), 6);
        for m in [&b"a\n.b\r\nc"[..], b"", b".\n..\n", b"x\ry\n"] {
            let stuffed = data_bytes(m)
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b".."))
                .count() as u64;
            assert_eq!(message_size(m) + stuffed + 3, data_bytes(m).len() as u64);
        }
    }

    #[test]
    fn size_limit_from_the_ehlo_keywords() {
        let ext = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(size_limit(&ext(&["PIPELINING", "SIZE 10"])), Some(10));
        assert_eq!(size_limit(&ext(&["SIZE 0"])), None, "0: no limit");
        assert_eq!(size_limit(&ext(&["SIZE"])), None);
        assert_eq!(size_limit(&ext(&["SIZE lots"])), None);
        assert_eq!(size_limit(&ext(&["SIZEX 10"])), None);
        assert_eq!(size_limit(&ext(&[])), None);
    }
}
