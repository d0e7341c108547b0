//! postern-local: deliver one message to one local recipient (docs/postern-local.md).
//!
//! `postern-local [--] SENDER RECIPIENT`, message on fd 0 from its first header line.
//! The recipient is resolved through the user database ([`crate::resolve`]); a mailbox
//! gets the message in its Maildir ([`crate::maildir`]) with `Return-Path:` and
//! `Delivered-To:` in front; an alias or catch-all is forwarded by queueing one new copy
//! (with `Delivered-To:` in front and the original sender) through postern-queue.
//! One line of reason goes to stdout on success, and the usual
//! `postern-local: fatal: …` line to stderr on failure; exit 0 / 100 / 111.

use crate::maildir;
use crate::resolve::{self, Target};
use postern_common::control::Control;
use postern_common::{getopt, privilege, Error, Result, ResultExt};
use std::io::{self, Read};
use std::path::Path;

const USAGE: &str = "postern-local [--] sender recipient | postern-local -w";
/// Most header bytes read to look for `Delivered-To:` lines; the rest streams through.
pub const MAX_HEADER_SCAN: usize = 256 * 1024;
/// Most `Delivered-To:` lines a message may carry before it counts as looping.
pub const MAX_HOPS: usize = 100;

/// The start of the message: up to the end of its header (or [`MAX_HEADER_SCAN`]).
pub struct Head {
    pub bytes: Vec<u8>,
}

impl Head {
    /// Read from `input` until the blank line ending the header, EOF or the limit.
    pub fn read(input: &mut dyn Read) -> io::Result<Head> {
        let mut bytes = Vec::with_capacity(4096);
        let mut byte = [0u8; 1];
        // Byte-wise up to the limit: the header is small, and what we do not read
        // stays in the input for the copy.
        while bytes.len() < MAX_HEADER_SCAN {
            if input.read(&mut byte)? == 0 {
                break;
            }
            bytes.push(byte[0]);
            if bytes.ends_with(b"\n\n") || bytes == b"\n" {
                break;
            }
        }
        Ok(Head { bytes })
    }

    /// The values of the `Delivered-To:` fields (unfolded, trimmed).
    pub fn delivered_to(&self) -> Vec<String> {
        header_values(&self.bytes, "delivered-to")
    }
}

/// The values of every header field `name` (lower-case) in `head`.
pub fn header_values(head: &[u8], name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c.trim().to_string());
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon].eq_ignore_ascii_case(name.as_bytes()) {
                current = Some(
                    String::from_utf8_lossy(&line[colon + 1..])
                        .trim()
                        .to_string(),
                );
            }
        }
    }
    out.extend(current.map(|c| c.trim().to_string()));
    out
}

/// A header field value with its newlines made harmless (qmail writes `_`). Every other
/// byte is kept as it is: a UTF-8 address (SMTPUTF8) stays UTF-8, never re-encoded.
fn one_line(text: &[u8]) -> Vec<u8> {
    text.iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b'_' } else { b })
        .collect()
}

/// `NAME: VALUE\n` with the value through [`one_line`].
fn header_line(name: &str, value: &[u8]) -> Vec<u8> {
    let mut line = format!("{name}: ").into_bytes();
    line.extend_from_slice(&one_line(value));
    line.push(b'\n');
    line
}

/// What a successful delivery did, for the reason line.
/// `priority`: the message is in the priority lane (`Ipriority=1`); a forwarded copy
/// asks postern-queue for it too, so an alias does not lose the lane.
pub fn deliver(
    home: &Path,
    sender: &[u8],
    recipient: &str,
    priority: bool,
    input: &mut dyn Read,
) -> Result<String> {
    let addr = postern_mailstore::address::normalise(recipient).map_err(|_| {
        Error::perm(format!(
            "bad recipient address {} (#5.1.3)",
            postern_common::logline::printable(recipient)
        ))
    })?;
    let head = Head::read(input).temp("unable to read the message")?;
    let seen = head.delivered_to();
    if seen.iter().any(|v| v.eq_ignore_ascii_case(&addr)) {
        return Err(Error::perm(format!(
            "this message is looping: it already has my Delivered-To line for {addr} (#5.4.6)"
        )));
    }
    if seen.len() >= MAX_HOPS {
        return Err(Error::perm(format!(
            "this message is looping: more than {MAX_HOPS} Delivered-To lines (#5.4.6)"
        )));
    }
    let dtline = header_line("Delivered-To", addr.as_bytes());
    match resolve::resolve(home, &addr)? {
        Target::Unknown => Err(Error::perm(format!(
            "no mailbox here by that name: {addr} (#5.1.1)"
        ))),
        Target::Forward { key, targets } => {
            if targets.is_empty() {
                return Err(Error::perm(format!("alias {key} has no targets (#5.1.1)")));
            }
            let mut prefix = dtline;
            prefix.extend_from_slice(&head.bytes);
            let rcpts: Vec<&[u8]> = targets.iter().map(|t| t.as_bytes()).collect();
            // postern-queue honours it from a trusted caller only (control/priorityuids
            // lists the mail account in a system install). One thread: safe to set.
            if priority {
                std::env::set_var(PRIORITY_ENV, "1");
            } else {
                std::env::remove_var(PRIORITY_ENV);
            }
            crate::progs::inject(&prefix, input, sender, &rcpts)?;
            Ok(format!(
                "forwarded to {} via alias {key}",
                targets.join(", ")
            ))
        }
        Target::Mailbox(user) => {
            let owner = expected_owner(home)?;
            maildir::check_mailbox(&user.home, &user.maildir, owner.0)?;
            if privilege::is_root() {
                privilege::drop_to(owner.0, owner.1)?;
            }
            let mut path = b"<".to_vec();
            path.extend_from_slice(sender);
            path.push(b'>');
            let mut prefix = header_line("Return-Path", &path);
            prefix.extend_from_slice(&dtline);
            prefix.extend_from_slice(&head.bytes);
            let name = maildir::deliver(&user.maildir, user.quota, &prefix, input)?;
            Ok(format!("delivered to {addr}: {name}"))
        }
    }
}

/// The uid and gid mailboxes must belong to: the mailbox owner account when we run as
/// root (we drop to it before writing), else ourselves.
fn expected_owner(home: &Path) -> Result<(u32, u32)> {
    if privilege::is_root() {
        // A missing owner is a configuration problem: keep the mail (temporary).
        let acct = postern_mailstore::owner::mailbox_owner(&Control::for_home(home), None)
            .map_err(|e| Error::temp(e.msg))?;
        Ok((acct.uid, acct.gid))
    } else {
        Ok((
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ))
    }
}

/// How postern-send tells a one-shot postern-local, and postern-local tells
/// postern-queue, that a message is in the priority lane.
pub const PRIORITY_ENV: &str = "POSTERN_PRIORITY";

/// postern-local's main.
pub fn main() -> Result<()> {
    let (opts, args) = getopt::parse(&getopt::args(), "w", USAGE)?;
    if !opts.is_empty() {
        // -w: a worker for postern-send (crate::local_worker), no arguments.
        if !args.is_empty() {
            return Err(Error::usage(USAGE));
        }
        let home = postern_common::home::trusted_home();
        postern_common::privilege::settle_setid(&home)?;
        return crate::local_worker::serve(&home);
    }
    let [sender, recipient] = args.as_slice() else {
        return Err(Error::usage(USAGE));
    };
    let recipient = recipient
        .to_str()
        .ok_or_else(|| Error::perm("recipient is not valid UTF-8 (#5.1.3)"))?;
    let sender = std::os::unix::ffi::OsStrExt::as_bytes(sender.as_os_str()).to_vec();
    // Installed setuid to the mailbox owner: our own instance, our account for good.
    let home = postern_common::home::trusted_home();
    postern_common::privilege::settle_setid(&home)?;
    let priority = std::env::var_os(PRIORITY_ENV).is_some_and(|v| v == "1");
    let reason = deliver(&home, &sender, recipient, priority, &mut io::stdin().lock())?;
    println!("{}", postern_common::logline::printable(reason));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_unfold_and_stop_at_the_body() {
        let head = b"Delivered-To: a@x.test\nSubject: s\nDELIVERED-TO:\n  b@x.test\n\nDelivered-To: c@x.test\n";
        assert_eq!(
            header_values(head, "delivered-to"),
            vec!["a@x.test", "b@x.test"]
        );
    }

    #[test]
    fn head_stops_at_blank_line_byte_by_byte() {
        let msg = b"A: 1\nB: 2\n\nbody\n";
        let mut r: &[u8] = msg;
        let head = Head::read(&mut r).unwrap();
        assert_eq!(head.bytes, b"A: 1\nB: 2\n\n");
        assert_eq!(r, b"body\n");
        let mut r: &[u8] = b"\nbody";
        assert_eq!(Head::read(&mut r).unwrap().bytes, b"\n");
    }

    #[test]
    fn newlines_in_fields_become_underscores() {
        assert_eq!(one_line(b"a\nb\rc"), b"a_b_c");
        assert_eq!(
            one_line("zoë".as_bytes()),
            "zoë".as_bytes(),
            "UTF-8 kept as it is"
        );
        assert_eq!(
            header_line("Delivered-To", b"j\xc3\xb6rg@x"),
            b"Delivered-To: j\xc3\xb6rg@x\n"
        );
    }
}
