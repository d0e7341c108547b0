//! The mailbox verbs: `add`, `passwd`, `del` (the directory moved aside, never
//! removed), `list` and `quota`.

use super::files::{user_line, Change};
use super::mailbox::{add_mailbox, existing_user, hosted_domain, new_password, record_popularity};
use super::{args, say, usage, Ctx, DELETED_DIR, MAX_DELETED_SUFFIX};
use crate::userdb::{self, Sources, USERS};
use crate::{address, maildir, password};
use postern_common::{Error, Result};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub(super) fn user_add(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [a] = args::<1>(rest)?;
    let address = address::normalise(a)?;
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    hosted_domain(
        &sources,
        address.rsplit_once('@').map(|(_, d)| d).unwrap_or(""),
    )?;
    if sources.user(&address).is_some() {
        return Err(Error::perm(format!("mailbox {address} exists already")));
    }
    if sources.aliases.iter().any(|al| al.key.key() == address) {
        return Err(Error::perm(format!(
            "{address} is an alias: postern-user alias del {address} first"
        )));
    }
    let mut change = Change::default();
    let token = add_mailbox(ctx, &mut change, &address)?;
    change.commit(&ctx.control)?;
    record_popularity(ctx, token)?;
    say(ctx, format!("added {address}"))
}

pub(super) fn user_passwd(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [a] = args::<1>(rest)?;
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    let u = existing_user(&sources, a)?.clone();
    let (pw, token) = new_password(ctx, &u.address)?;
    let hash = password::hash(&pw)?;
    let mut change = Change::default();
    change.replace(
        &ctx.control,
        USERS,
        &u.address,
        Some(user_line(&u.address, &hash, u.quota, &u.dir)),
    )?;
    change.commit(&ctx.control)?;
    record_popularity(ctx, token)?;
    say(ctx, format!("changed the password of {}", u.address))
}

pub(super) fn user_del(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [a] = args::<1>(rest)?;
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    let u = existing_user(&sources, a)?.clone();
    let mut change = Change::default();
    change.replace(&ctx.control, USERS, &u.address, None)?;
    change.commit(&ctx.control)?;
    // The address is gone first; a directory left in place makes a later `add` of the
    // same address refuse, so a failure here cannot hand the mail to someone else.
    let dir = ctx.home.join(&u.dir);
    match move_aside(&ctx.home, &u.address, &dir)? {
        Some(to) => say(
            ctx,
            format!(
                "deleted {}; its mail is kept in {}",
                u.address,
                to.display()
            ),
        ),
        None => say(
            ctx,
            format!("deleted {}; it had no mailbox directory", u.address),
        ),
    }
}

/// Move a deleted mailbox's directory to `users/DOMAIN/.deleted/LOCAL.UNIXTIME` (with
/// `.N` added if that is taken). `None` when there was no directory.
fn move_aside(home: &Path, address: &str, dir: &Path) -> Result<Option<PathBuf>> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(None);
    }
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let deleted = home.join("users").join(domain).join(DELETED_DIR);
    let failed = |e: &std::io::Error| {
        Error::io(
            format!(
                "deleted {address}, but unable to move {} aside",
                dir.display()
            ),
            e,
        )
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&deleted) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && deleted.is_dir() => {}
        Err(e) => return Err(failed(&e)),
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{local}.{now}");
    for n in 1..=MAX_DELETED_SUFFIX {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let to = deleted.join(name);
        // rename(2) would silently replace an empty directory: look first (under the
        // database lock, so no other postern-user races us).
        if std::fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        std::fs::rename(dir, &to).map_err(|e| failed(&e))?;
        postern_common::atomic::fsync_dir(&deleted).map_err(|e| failed(&e))?;
        return Ok(Some(to));
    }
    Err(Error::temp(format!(
        "deleted {address}, but unable to move {} aside: {} names taken",
        dir.display(),
        MAX_DELETED_SUFFIX
    )))
}

pub(super) fn user_list(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let domain = match rest {
        [] => None,
        [d] => Some(address::domain(d)?),
        _ => return Err(usage()),
    };
    let sources = Sources::read(&ctx.control)?;
    for u in &sources.users {
        if domain
            .as_ref()
            .is_some_and(|d| !u.address.ends_with(&format!("@{d}")))
        {
            continue;
        }
        let quota = u.quota.map(|q| q.to_string()).unwrap_or_else(|| "-".into());
        let line = match maildir::usage(&ctx.home.join(&u.dir).join("Maildir")) {
            Ok(usage) => format!("{} {quota} {} {}", u.address, usage.bytes, usage.count),
            Err(_) => format!("{} {quota} ? ?", u.address),
        };
        say(ctx, line)?;
    }
    Ok(())
}

pub(super) fn user_quota(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [a, q] = args::<2>(rest)?;
    let quota: u64 = q
        .parse()
        .map_err(|_| Error::usage(format!("quota needs a number of bytes, not {q:?}")))?;
    let quota = Some(quota).filter(|&q| q > 0);
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    let u = existing_user(&sources, a)?.clone();
    let mut change = Change::default();
    change.replace(
        &ctx.control,
        USERS,
        &u.address,
        Some(user_line(&u.address, &u.hash, quota, &u.dir)),
    )?;
    change.commit(&ctx.control)?;
    maildir::set_quota(&ctx.home.join(&u.dir).join("Maildir"), quota)?;
    match quota {
        Some(q) => say(ctx, format!("quota of {} is {q} bytes", u.address)),
        None => say(ctx, format!("{} has no quota", u.address)),
    }
}
