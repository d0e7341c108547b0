//! `postern-user`: the admin's tool for virtual domains, mailboxes, passwords, quotas and
//! aliases. It edits the flat files (`control/domains`, `control/users`,
//! `control/aliases`) in place — comments and order kept — and recompiles the cdbs;
//! every change is checked as a whole before anything is written, under the database
//! lock. Passwords come from standard input only, never from the command line.

use crate::address::{self, AliasKey};
use crate::userdb::{self, Sources, ALIASES, DOMAINS, USERS};
use crate::{maildir, owner, password, popularity};
use postern_common::control::{parse_lines, Control};
use postern_common::privilege::Account;
use postern_common::{Error, Result, ResultExt};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

pub const PROG: &str = "postern-user";
pub const USAGE: &str = "postern-user [--owner NAME] domain add DOMAIN [--postmaster ADDRESS] [--reuse] | domain del DOMAIN | domain list | add ADDRESS [--quota BYTES] [--reuse] | passwd ADDRESS | del ADDRESS | list [DOMAIN] | quota ADDRESS BYTES | alias add ADDRESS TARGET... | alias del ADDRESS | alias list | compile";
/// The list of domains SMTP accepts mail for; `domain add|del` keep it in step.
pub const RCPTHOSTS: &str = "rcpthosts";
/// Where `del` moves a deleted mailbox's directory: `users/DOMAIN/.deleted/LOCAL.UNIXTIME`.
pub const DELETED_DIR: &str = ".deleted";
/// Options that take no value.
const FLAGS: &[&str] = &["--reuse"];
/// Most `.N` suffixes tried when a deleted mailbox's name is taken (same second).
const MAX_DELETED_SUFFIX: u32 = 100;

/// The command's state: where the instance is, the options, and the I/O.
pub struct Ctx<'a> {
    pub home: PathBuf,
    pub control: Control,
    pub owner: Option<String>,
    pub quota: Option<u64>,
    pub postmaster: Option<String>,
    /// `--reuse`: `add` may take over an existing mailbox directory.
    pub reuse: bool,
    pub input: &'a mut dyn BufRead,
    /// Whether standard input is a terminal (prompt twice, without echo).
    pub tty: bool,
    pub out: &'a mut dyn Write,
}

type Handler = fn(&mut Ctx, &[String]) -> Result<()>;

/// The verbs: the words that name them, the options they take, the handler.
const VERBS: &[(&[&str], &[&str], Handler)] = &[
    (
        &["domain", "add"],
        &["--postmaster", "--owner", "--reuse"],
        domain_add,
    ),
    (&["domain", "del"], &[], domain_del),
    (&["domain", "list"], &[], domain_list),
    (&["alias", "add"], &[], alias_add),
    (&["alias", "del"], &[], alias_del),
    (&["alias", "list"], &[], alias_list),
    (&["add"], &["--quota", "--owner", "--reuse"], user_add),
    (&["passwd"], &[], user_passwd),
    (&["del"], &[], user_del),
    (&["list"], &[], user_list),
    (&["quota"], &[], user_quota),
    (&["compile"], &[], compile),
];

fn usage() -> Error {
    Error::usage(USAGE)
}

/// The program: `postern-user ARGS` on the instance named by `POSTERN_HOME`.
pub fn main() -> Result<()> {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        args.push(a.into_string().map_err(|_| usage())?);
    }
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut input = stdin.lock();
    let mut out = std::io::stdout().lock();
    run(
        &postern_common::home::postern_home(),
        &args,
        &mut input,
        tty,
        &mut out,
    )
}

/// Run one command against the instance at `home`.
pub fn run(
    home: &Path,
    args: &[String],
    input: &mut dyn BufRead,
    tty: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let mut words = Vec::new();
    let mut opts: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if let Some(name) = a.strip_prefix("--").filter(|n| !n.is_empty()) {
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None if FLAGS.contains(&a.as_str()) => (name.to_string(), String::new()),
                None => {
                    i += 1;
                    (name.to_string(), args.get(i).ok_or_else(usage)?.clone())
                }
            };
            opts.push((format!("--{name}"), value));
        } else {
            words.push(a.clone());
        }
        i += 1;
    }
    let (path, allowed, handler) = VERBS
        .iter()
        .find(|(path, _, _)| {
            words.len() >= path.len() && path.iter().zip(&words).all(|(p, w)| p == w)
        })
        .ok_or_else(usage)?;
    let mut ctx = Ctx {
        home: home.to_path_buf(),
        control: Control::for_home(home),
        owner: None,
        quota: None,
        postmaster: None,
        reuse: false,
        input,
        tty,
        out,
    };
    for (name, value) in opts {
        if !allowed.contains(&name.as_str()) {
            return Err(usage());
        }
        match name.as_str() {
            "--owner" => ctx.owner = Some(value),
            "--postmaster" => ctx.postmaster = Some(value),
            "--reuse" if value.is_empty() => ctx.reuse = true,
            "--quota" => {
                let q: u64 = value.parse().map_err(|_| {
                    Error::usage(format!("--quota needs a number of bytes, not {value:?}"))
                })?;
                ctx.quota = Some(q).filter(|&q| q > 0);
            }
            _ => return Err(usage()),
        }
    }
    if !ctx.control.dir().is_dir() {
        return Err(Error::temp(format!(
            "no instance at {}: control/ does not exist",
            home.display()
        )));
    }
    handler(&mut ctx, &words[path.len()..])
}

fn say(ctx: &mut Ctx, text: impl std::fmt::Display) -> Result<()> {
    writeln!(ctx.out, "{text}").temp("unable to write to standard output")
}

fn args<const N: usize>(rest: &[String]) -> Result<[&str; N]> {
    if rest.len() != N {
        return Err(usage());
    }
    let mut a = [""; N];
    for (i, r) in rest.iter().enumerate() {
        a[i] = r;
    }
    Ok(a)
}

// ---- the flat files -------------------------------------------------------------

/// A flat file's raw lines (comments and all).
fn raw(control: &Control, name: &str) -> Result<Vec<String>> {
    Ok(control
        .read(name)?
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default())
}

fn join(lines: &[String]) -> String {
    let mut s = lines.join("\n");
    if !s.is_empty() {
        s.push('\n');
    }
    s
}

/// The key a raw line defines (domain, address, alias key), if it is an entry.
fn key_of(file: &str, line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    match file {
        DOMAINS => address::domain(t).ok(),
        USERS => address::normalise(t.split(':').next()?.trim()).ok(),
        _ => AliasKey::parse(t.split(':').next()?.trim())
            .ok()
            .map(|k| k.key()),
    }
}

/// Edits to the three files, applied together.
#[derive(Default)]
struct Change {
    domains: Option<Vec<String>>,
    users: Option<Vec<String>>,
    aliases: Option<Vec<String>>,
}

impl Change {
    fn lines<'c>(&'c mut self, control: &Control, file: &str) -> Result<&'c mut Vec<String>> {
        let slot = match file {
            DOMAINS => &mut self.domains,
            USERS => &mut self.users,
            _ => &mut self.aliases,
        };
        if slot.is_none() {
            *slot = Some(raw(control, file)?);
        }
        Ok(slot.as_mut().expect("just filled"))
    }

    fn append(&mut self, control: &Control, file: &str, line: String) -> Result<()> {
        self.lines(control, file)?.push(line);
        Ok(())
    }

    /// Replace the entry `key` with `line` (or remove it when `None`). Returns whether
    /// there was one.
    fn replace(
        &mut self,
        control: &Control,
        file: &str,
        key: &str,
        line: Option<String>,
    ) -> Result<bool> {
        let lines = self.lines(control, file)?;
        let mut found = false;
        let mut out = Vec::with_capacity(lines.len());
        for l in lines.drain(..) {
            if key_of(file, &l).as_deref() == Some(key) {
                if !found {
                    if let Some(new) = &line {
                        out.push(new.clone());
                    }
                }
                found = true;
            } else {
                out.push(l);
            }
        }
        *lines = out;
        Ok(found)
    }

    /// Check the edited files as a whole, write them, and compile the cdbs.
    fn commit(self, control: &Control) -> Result<Sources> {
        let text = |slot: &Option<Vec<String>>, file: &str| -> Result<String> {
            match slot {
                Some(l) => Ok(join(l)),
                None => Ok(control.read(file)?.unwrap_or_default()),
            }
        };
        let (d, u, a) = (
            text(&self.domains, DOMAINS)?,
            text(&self.users, USERS)?,
            text(&self.aliases, ALIASES)?,
        );
        let sources = Sources::parse(&parse_lines(&d), &parse_lines(&u), &parse_lines(&a))?;
        for (slot, file, text, mode) in [
            (&self.domains, DOMAINS, &d, 0o644),
            (&self.users, USERS, &u, 0o600),
            (&self.aliases, ALIASES, &a, 0o644),
        ] {
            if slot.is_some() {
                postern_common::atomic::write_atomic(&control.path(file), text.as_bytes(), mode)
                    .temp(format!("unable to write control/{file}"))?;
            }
        }
        userdb::compile(control, &sources)?;
        Ok(sources)
    }
}

fn user_line(address: &str, hash: &str, quota: Option<u64>, dir: &str) -> String {
    let q = quota.map(|q| q.to_string()).unwrap_or_else(|| "0".into());
    if dir == userdb::default_dir(address) {
        format!("{address}:{hash}:{q}")
    } else {
        format!("{address}:{hash}:{q}:{dir}")
    }
}

fn alias_line<S: AsRef<str>>(key: &str, targets: &[S]) -> String {
    let targets: Vec<&str> = targets.iter().map(AsRef::as_ref).collect();
    format!("{key}: {}", targets.join(", "))
}

/// Add or remove `domain` in `control/rcpthosts`, keeping everything else.
fn edit_rcpthosts(control: &Control, domain: &str, present: bool) -> Result<()> {
    let mut lines = raw(control, RCPTHOSTS)?;
    let has = lines.iter().any(|l| l.trim().eq_ignore_ascii_case(domain));
    if has == present {
        return Ok(());
    }
    if present {
        lines.push(domain.to_string());
    } else {
        lines.retain(|l| !l.trim().eq_ignore_ascii_case(domain));
    }
    postern_common::atomic::write_atomic(&control.path(RCPTHOSTS), join(&lines).as_bytes(), 0o644)
        .temp(format!("unable to write control/{RCPTHOSTS}"))
}

// ---- passwords and mailboxes ----------------------------------------------------------

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
fn new_password(ctx: &mut Ctx, address: &str) -> Result<(String, Option<String>)> {
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
fn add_mailbox(ctx: &mut Ctx, change: &mut Change, address: &str) -> Result<Option<String>> {
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

fn record_popularity(ctx: &Ctx, token: Option<String>) -> Result<()> {
    match token {
        Some(t) => popularity::record(&ctx.control, &t),
        None => Ok(()),
    }
}

fn hosted_domain(sources: &Sources, domain: &str) -> Result<()> {
    if sources.hosts(domain) {
        Ok(())
    } else {
        Err(Error::perm(format!(
            "domain {domain} is not hosted here: run postern-user domain add {domain} first"
        )))
    }
}

fn existing_user<'s>(sources: &'s Sources, text: &str) -> Result<&'s userdb::UserEntry> {
    let address = address::normalise(text)?;
    sources
        .user(&address)
        .ok_or_else(|| Error::perm(format!("no such mailbox: {address}")))
}

// ---- the verbs ------------------------------------------------------------------------

fn domain_add(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [d] = args::<1>(rest)?;
    let domain = address::domain(d)?;
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    if sources.hosts(&domain) {
        return Err(Error::perm(format!(
            "domain {domain} is already hosted here"
        )));
    }
    let mut change = Change::default();
    change.append(&ctx.control, DOMAINS, domain.clone())?;
    let postmaster = format!("postmaster@{domain}");
    let abuse = format!("abuse@{domain}");
    let (token, message) = match ctx.postmaster.clone() {
        Some(target) => {
            let target = address::target(&target)?;
            change.append(
                &ctx.control,
                ALIASES,
                alias_line(&postmaster, &[target.as_str()]),
            )?;
            change.append(
                &ctx.control,
                ALIASES,
                alias_line(&abuse, &[target.as_str()]),
            )?;
            (
                None,
                format!("added {domain}: {postmaster} and {abuse} go to {target}"),
            )
        }
        None => {
            let token = add_mailbox(ctx, &mut change, &postmaster)?;
            change.append(
                &ctx.control,
                ALIASES,
                alias_line(&abuse, &[postmaster.as_str()]),
            )?;
            (
                token,
                format!("added {domain}: mailbox {postmaster}, and {abuse} goes to it"),
            )
        }
    };
    change.commit(&ctx.control)?;
    record_popularity(ctx, token)?;
    edit_rcpthosts(&ctx.control, &domain, true)?;
    say(ctx, message)
}

fn domain_del(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [d] = args::<1>(rest)?;
    let domain = address::domain(d)?;
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    hosted_domain(&sources, &domain)?;
    let suffix = format!("@{domain}");
    let left = sources
        .users
        .iter()
        .filter(|u| u.address.ends_with(&suffix))
        .count();
    if left > 0 {
        return Err(Error::perm(format!(
            "domain {domain} still has {left} mailboxes: delete them first"
        )));
    }
    let mut change = Change::default();
    for a in sources.aliases.iter().filter(|a| a.key.domain() == domain) {
        change.replace(&ctx.control, ALIASES, &a.key.key(), None)?;
    }
    change.replace(&ctx.control, DOMAINS, &domain, None)?;
    change.commit(&ctx.control)?;
    edit_rcpthosts(&ctx.control, &domain, false)?;
    say(ctx, format!("deleted {domain} and its aliases"))
}

fn domain_list(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    args::<0>(rest)?;
    let sources = Sources::read(&ctx.control)?;
    for (_, d) in &sources.domains {
        say(ctx, d)?;
    }
    Ok(())
}

fn user_add(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
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

fn user_passwd(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
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

fn user_del(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
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

fn user_list(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
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

fn user_quota(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
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

fn alias_add(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let (key, targets) = match rest {
        [key, targets @ ..] if !targets.is_empty() => (AliasKey::parse(key)?, targets),
        _ => return Err(usage()),
    };
    let mut new = Vec::new();
    for t in targets {
        new.push(address::target(t)?);
    }
    let _lock = userdb::lock(&ctx.control)?;
    let sources = Sources::read(&ctx.control)?;
    hosted_domain(&sources, key.domain())?;
    if sources.user(&key.key()).is_some() {
        return Err(Error::perm(format!(
            "{} is a mailbox: an address is either a mailbox or an alias",
            key.key()
        )));
    }
    let mut all = sources
        .aliases
        .iter()
        .find(|a| a.key == key)
        .map(|a| a.targets.clone())
        .unwrap_or_default();
    for t in new {
        if !all.contains(&t) {
            all.push(t);
        }
    }
    let mut change = Change::default();
    let line = alias_line(&key.key(), &all);
    if !change.replace(&ctx.control, ALIASES, &key.key(), Some(line.clone()))? {
        change.append(&ctx.control, ALIASES, line.clone())?;
    }
    change.commit(&ctx.control)?;
    say(ctx, line)
}

fn alias_del(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    let [a] = args::<1>(rest)?;
    let key = AliasKey::parse(a)?;
    let _lock = userdb::lock(&ctx.control)?;
    Sources::read(&ctx.control)?;
    let mut change = Change::default();
    if !change.replace(&ctx.control, ALIASES, &key.key(), None)? {
        return Err(Error::perm(format!("no such alias: {}", key.key())));
    }
    change.commit(&ctx.control)?;
    say(ctx, format!("deleted alias {}", key.key()))
}

fn alias_list(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    args::<0>(rest)?;
    let sources = Sources::read(&ctx.control)?;
    for a in &sources.aliases {
        say(ctx, alias_line(&a.key.key(), &a.targets))?;
    }
    Ok(())
}

fn compile(ctx: &mut Ctx, rest: &[String]) -> Result<()> {
    args::<0>(rest)?;
    userdb::compile_all(&ctx.home)
}
