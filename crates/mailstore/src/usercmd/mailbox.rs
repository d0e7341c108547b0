//! What the verbs that make or check mailboxes share: the new password from standard
//! input (no echo on a terminal), the mailbox directory and its owner, and the checks
//! that a domain is hosted and a mailbox exists.

use super::files::{user_line, Change};
use super::Ctx;
use crate::address;
use crate::userdb::{self, Sources, USERS};
use crate::{maildir, owner, password, popularity};
use postern_common::privilege::Account;
use postern_common::{Error, Result, ResultExt};
use std::io::{BufRead, Read};

/// One line from `input`, at most `MAX_LEN` bytes, without its line end.
fn read_line(input: &mut dyn BufRead) -> Result<String> {
    let mut buf = Vec::new();
    input
        .take(password::MAX_LEN as u64 + 2)
        .read_until(b'\n', &mut buf)
        .temp("unable to read the password from standard input")?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else if buf.len() > password::MAX_LEN {
        return Err(Error::perm(format!(
            "password refused: longer than {} bytes",
            password::MAX_LEN
        )));
    }
    String::from_utf8(buf).map_err(|_| Error::perm("password refused: not valid UTF-8"))
}

/// Switches terminal echo off while alive.
struct NoEcho(Option<nix::sys::termios::Termios>);

impl NoEcho {
    fn new() -> NoEcho {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let Ok(old) = tcgetattr(std::io::stdin()) else {
            return NoEcho(None);
        };
        let mut quiet = old.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        match tcsetattr(std::io::stdin(), SetArg::TCSAFLUSH, &quiet) {
            Ok(()) => NoEcho(Some(old)),
            Err(_) => NoEcho(None),
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSAFLUSH,
                old,
            );
        }
    }
}

/// The new password for `address`, from standard input (on a terminal: asked twice,
/// without echo), checked against the policy. Returns it with its popularity token.
pub(super) fn new_password(ctx: &mut Ctx, address: &str) -> Result<(String, Option<String>)> {
    let pw = if ctx.tty {
        let _quiet = NoEcho::new();
        eprint!("New password for {address}: ");
        let first = read_line(ctx.input)?;
        eprint!("\nAgain: ");
        let second = read_line(ctx.input)?;
        eprintln!();
        if first != second {
            return Err(Error::perm("passwords do not match"));
        }
        first
    } else {
        read_line(ctx.input)?
    };
    if pw.is_empty() {
        return Err(Error::perm(
            "no password on standard input (passwords are never taken from the command line)",
        ));
    }
    password::check_static(&pw, address)?;
    let token = popularity::check(&ctx.control, &pw)?;
    Ok((pw, token))
}

fn owner_of(ctx: &Ctx) -> Result<Account> {
    let account = owner::mailbox_owner(&ctx.control, ctx.owner.as_deref())?;
    if let Some(name) = &ctx.owner {
        owner::remember(&ctx.control, name)?;
    }
    Ok(account)
}

fn create_mailbox(ctx: &Ctx, owner: &Account, dir: &str, quota: Option<u64>) -> Result<()> {
    let home = ctx.home.join(dir);
    let ids = postern_common::privilege::is_root().then_some((owner.uid, owner.gid));
    maildir::create_mailbox(&home, ids)?;
    crate::authfail::prepare(&ctx.home, ids)?;
    if quota.is_some() {
        maildir::set_quota(&home.join("Maildir"), quota)?;
    }
    Ok(())
}

/// Create the mailbox `address` with a password from stdin, as part of `change`.
/// Refuses when the mailbox directory exists already (the mail of a deleted mailbox of
/// that name, say), unless `--reuse` was given: a new owner must not get old mail.
pub(super) fn add_mailbox(
    ctx: &mut Ctx,
    change: &mut Change,
    address: &str,
) -> Result<Option<String>> {
    let owner = owner_of(ctx)?;
    let dir = userdb::default_dir(address);
    let path = ctx.home.join(&dir);
    if !ctx.reuse && std::fs::symlink_metadata(&path).is_ok() {
        return Err(Error::perm(format!(
            "{} exists already: move it away, or give --reuse to hand its mail to {address}",
            path.display()
        )));
    }
    let (pw, token) = new_password(ctx, address)?;
    let hash = password::hash(&pw)?;
    create_mailbox(ctx, &owner, &dir, ctx.quota)?;
    change.append(
        &ctx.control,
        USERS,
        user_line(address, &hash, ctx.quota, &dir),
    )?;
    Ok(token)
}

pub(super) fn record_popularity(ctx: &Ctx, token: Option<String>) -> Result<()> {
    match token {
        Some(t) => popularity::record(&ctx.control, &t),
        None => Ok(()),
    }
}

pub(super) fn hosted_domain(sources: &Sources, domain: &str) -> Result<()> {
    if sources.hosts(domain) {
        Ok(())
    } else {
        Err(Error::perm(format!(
            "domain {domain} is not hosted here: run postern-user domain add {domain} first"
        )))
    }
}

pub(super) fn existing_user<'s>(sources: &'s Sources, text: &str) -> Result<&'s userdb::UserEntry> {
    let address = address::normalise(text)?;
    sources
        .user(&address)
        .ok_or_else(|| Error::perm(format!("no such mailbox: {address}")))
}
