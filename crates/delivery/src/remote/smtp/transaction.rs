//! The transaction once the session is set up: what is decided before MAIL (the
//! sender's path, the server's SIZE, SMTPUTF8), MAIL, every RCPT, DATA and the message
//! in its wire form ([`data_bytes`], sized as RFC 1870 counts it), with PIPELINING when
//! offered. Results are per recipient.

use super::{lost, offers, quit, Attempt, RcptResult, Session};
use postern_wire::delivery_report::RcptVerdict;
use postern_wire::smtp_path::write_path;
use postern_wire::verdict::Verdict;
use std::io;

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

pub(super) fn transaction(
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
