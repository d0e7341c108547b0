//! `postern-checkpassword prog [arg...]`: the checkpassword interface over
//! postern's user database.
//!
//! Reads `user\0password\0[timestamp\0]` (at most [`MAX_INPUT`] bytes) from descriptor
//! 3 to end of file; `user` is a full address (case ignored). On success it sets `USER`,
//! `AUTHUSER` (the address), `HOME` (the user's directory), `MAILDIR`, changes to `HOME`
//! and execs `prog`, so success is `prog`'s exit status. Started as root, it first
//! becomes the configured mailbox owner ([`crate::owner`]; never root), and refuses
//! (111) when the user's directory is a symbolic link or belongs to anyone else. Unknown users are checked
//! against a dummy hash so that they take as long as a wrong password. Before checking,
//! it counts the attempt as a failure (taken back on success) and waits out the delay
//! the failed-login table ([`crate::authfail`]) gives the client IP and the account.

use crate::authfail::{self, Table};
use crate::{owner, password, userdb};
use postern_common::control::Control;
use postern_common::logline::LogLine;
use postern_common::{privilege, Error, Result, ResultExt};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

pub const PROG: &str = "postern-checkpassword";
/// Wrong password, unknown user, disabled login.
pub const EXIT_DENIED: i32 = 1;
/// Misuse: no program, fd 3 not open, input malformed or too long.
pub const EXIT_MISUSE: i32 = 2;
/// Temporary trouble: the database cannot be read, the exec failed.
pub const EXIT_TEMP: i32 = 111;
/// The most the interface allows on descriptor 3.
pub const MAX_INPUT: usize = 512;

/// What came in on descriptor 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
}

/// Split `user\0password\0…`; `None` when either field lacks its NUL. The timestamp
/// and anything after it are ignored (no APOP or CRAM-MD5: only hashes are stored).
pub fn parse_request(input: &[u8]) -> Option<Request> {
    let mut fields = input.splitn(3, |&b| b == 0);
    let user = fields.next()?;
    let password = fields.next()?;
    // splitn yields a third item only when the second field's NUL was present.
    fields.next()?;
    Some(Request {
        user: user.to_vec(),
        password: password.to_vec(),
    })
}

/// Why a login was refused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoUser,
    BadPass,
    Disabled,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::NoUser => "nouser",
            Refusal::BadPass => "badpass",
            Refusal::Disabled => "disabled",
        }
    }
}

fn table_warn(e: &Error) {
    postern_common::exit::warn(PROG, format!("failed-login table not used: {e}"));
}

/// Check `req` against the instance at `home` for a client at `ip`. `Ok(Err(_))` is a
/// refusal (already logged); `Err` is trouble.
pub fn authenticate(
    home: &Path,
    req: &Request,
    ip: &str,
) -> Result<std::result::Result<userdb::User, Refusal>> {
    let control = Control::for_home(home);
    let base_ms = authfail::first_delay(&control)?.as_millis() as u64;
    let name = String::from_utf8_lossy(&req.user).into_owned();
    let user = if req.user.is_empty() {
        None
    } else {
        userdb::lookup_user(home, &name)?
    };
    let account = user
        .as_ref()
        .map(|u| u.address.clone())
        .unwrap_or_else(|| name.to_lowercase());
    let (ip_key, user_key) = (format!("ip:{ip}"), format!("user:{account}"));

    // Count this attempt as a failure now, under the lock that reads the counts, so
    // parallel attempts see each other's; a success takes it back below.
    let delay = match Table::open(home) {
        Ok(mut t) => {
            let d = authfail::delay_for(t.failures(&ip_key), base_ms)
                .max(authfail::delay_for(t.failures(&user_key), base_ms));
            if let Err(e) = t
                .record_failure(&ip_key)
                .and_then(|_| t.record_failure(&user_key))
            {
                table_warn(&e);
            }
            d
        }
        Err(e) => {
            table_warn(&e);
            Duration::ZERO
        }
    }; // the lock is released here: nobody waits on another's delay or argon2 run
    std::thread::sleep(delay);

    let (hash, mut refusal) = match &user {
        None => (password::dummy_hash(), Some(Refusal::NoUser)),
        Some(u) if u.login_disabled() => (password::dummy_hash(), Some(Refusal::Disabled)),
        Some(u) => (u.hash.clone(), None),
    };
    let matched = password::verify(&req.password, &hash);
    if refusal.is_none() && (!matched || req.password.is_empty()) {
        refusal = Some(Refusal::BadPass);
    }

    match (refusal, user) {
        (None, Some(u)) => {
            match Table::open(home) {
                Ok(mut t) => {
                    if let Err(e) = t.clear(&ip_key).and_then(|_| t.undo_failure(&user_key)) {
                        table_warn(&e);
                    }
                }
                Err(e) => table_warn(&e),
            }
            LogLine::event("auth")
                .kv("user", &u.address)
                .kv("ip", ip)
                .emit();
            Ok(Ok(u))
        }
        (r, _) => {
            // The failure was recorded before verifying.
            let r = r.unwrap_or(Refusal::BadPass);
            LogLine::event("authfail")
                .kv("ip", ip)
                .kv("user", &account)
                .kv("reason", r.reason())
                .kv("delay", delay.as_millis())
                .emit();
            Ok(Err(r))
        }
    }
}

/// Become the mailbox owner when running as root, set the environment, change to
/// `HOME` and exec `prog`. Returns only on failure.
fn exec_as(instance: &Path, user: &userdb::User, prog: &[OsString], setid: bool) -> Error {
    let result = (|| -> Result<()> {
        if privilege::is_root() {
            become_owner(instance, user)?;
        } else if setid {
            // Already the owner (settled at start): the directory must be ours.
            let uid = nix::unistd::geteuid().as_raw();
            let name = privilege::account_of(uid).map_or(uid.to_string(), |a| a.name);
            enter_home(&user.home, uid, &name)?;
        }
        std::env::set_current_dir(&user.home)
            .temp(format!("unable to change to {}", user.home.display()))?;
        Ok(())
    })();
    if let Err(e) = result {
        return e;
    }
    let err = postern_common::sys::with_default_signals(&mut std::process::Command::new(&prog[0]))
        .args(&prog[1..])
        .env("USER", &user.address)
        .env("AUTHUSER", &user.address)
        .env("HOME", &user.home)
        .env("MAILDIR", &user.maildir)
        .exec();
    Error::io(format!("unable to run {}", prog[0].to_string_lossy()), &err)
}

/// Started as root: become the configured mailbox owner ([`owner::mailbox_owner`],
/// never root) — never whoever happens to own the directory — and only if the user's
/// home is a real directory (not a symlink) belonging to that owner. The directory we
/// then change to must be the one checked.
fn become_owner(instance: &Path, user: &userdb::User) -> Result<()> {
    let owner = owner::mailbox_owner(&Control::for_home(instance), None)?;
    check_home(&user.home, owner.uid, &owner.name)?;
    privilege::become_account(&owner)?;
    enter_home(&user.home, owner.uid, &owner.name)
}

/// The user's directory must be a real directory (not a symlink) owned by `uid`.
fn check_home(home: &Path, uid: u32, name: &str) -> Result<std::fs::Metadata> {
    let meta =
        std::fs::symlink_metadata(home).temp(format!("unable to stat {}", home.display()))?;
    if meta.file_type().is_symlink() {
        return Err(Error::temp(format!(
            "{} is a symbolic link: refusing to follow it",
            home.display()
        )));
    }
    if !meta.is_dir() {
        return Err(Error::temp(format!(
            "{} is not a directory",
            home.display()
        )));
    }
    if meta.uid() != uid {
        return Err(Error::temp(format!(
            "{} belongs to uid {}, not to the mailbox owner {name}",
            home.display(),
            meta.uid(),
        )));
    }
    Ok(meta)
}

/// Check the user's directory, change to it, and make sure it is the one checked.
fn enter_home(home: &Path, uid: u32, name: &str) -> Result<()> {
    let meta = check_home(home, uid, name)?;
    std::env::set_current_dir(home).temp(format!("unable to change to {}", home.display()))?;
    let here = std::fs::metadata(".").temp(format!("unable to stat {}", home.display()))?;
    if (here.dev(), here.ino()) != (meta.dev(), meta.ino()) {
        return Err(Error::temp(format!(
            "{} changed while it was checked",
            home.display()
        )));
    }
    Ok(())
}

/// Carry `err`'s reason with one of checkpassword's own exit codes.
fn with_code(code: i32) -> impl Fn(Error) -> Error {
    move |err| Error::code(code, err.msg)
}

/// The program, run through the exit funnel ([`postern_common::exit::run`]): on
/// success it does not return (it execs `prog`) unless `prog` is `true` answered here.
/// A refused login is [`EXIT_DENIED`] with no message (the answer, not an error).
pub fn main() -> Result<()> {
    let prog: Vec<OsString> = std::env::args_os().skip(1).collect();
    if prog.is_empty() {
        // The interface's misuse code, with the usual `usage:` line.
        let usage = Error::usage(format!("{PROG} prog [arg...]"));
        eprintln!("{}", postern_common::exit::error_line(PROG, &usage));
        return Err(Error::code(EXIT_MISUSE, ""));
    }
    let Some(fd) = postern_common::sys::take_fd3() else {
        return Err(Error::code(EXIT_MISUSE, "descriptor 3 is not open"));
    };
    let mut input = Vec::with_capacity(MAX_INPUT + 1);
    fd.take(MAX_INPUT as u64 + 1)
        .read_to_end(&mut input)
        .temp("unable to read descriptor 3")
        .map_err(with_code(EXIT_TEMP))?;
    if input.len() > MAX_INPUT {
        return Err(Error::code(
            EXIT_MISUSE,
            format!("input on descriptor 3 is longer than {MAX_INPUT} bytes"),
        ));
    }
    let Some(req) = parse_request(&input) else {
        return Err(Error::code(
            EXIT_MISUSE,
            "input on descriptor 3 is not user\\0password\\0",
        ));
    };
    // Installed setuid to the mailbox owner (scripts/install): the instance is the one
    // we are installed in, and we become that account for good before anything else.
    let home = postern_common::home::trusted_home();
    let setid = privilege::settle_setid(&home).map_err(with_code(EXIT_TEMP))?;
    if setid {
        setid_program(&home, &prog).map_err(with_code(EXIT_MISUSE))?;
    }
    let ip = std::env::var("TCPREMOTEIP").unwrap_or_else(|_| "unknown".to_string());
    match authenticate(&home, &req, &ip).map_err(with_code(EXIT_TEMP))? {
        Err(_) => Err(Error::code(EXIT_DENIED, "")),
        // `true` (SMTP AUTH) is answered here: never looked up in a PATH.
        Ok(_) if setid && prog[0] == "true" => Ok(()),
        Ok(user) => Err(with_code(EXIT_TEMP)(exec_as(&home, &user, &prog, setid))),
    }
}

/// Setuid, we run only what the install put beside us (`HOME/bin/…`, e.g.
/// postern-pop3d) or `true`: whoever may run us (the network account) must not turn a
/// password it has seen into any program of its choice running as the mailbox owner.
fn setid_program(home: &Path, prog: &[OsString]) -> Result<()> {
    if prog[0] == "true" {
        return Ok(());
    }
    let bin = std::fs::canonicalize(home.join("bin")).ok();
    let dir = std::fs::canonicalize(&prog[0])
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    match (bin, dir) {
        (Some(bin), Some(dir)) if bin == dir => Ok(()),
        _ => Err(Error::perm(format!(
            "installed setuid, it runs only programs in {}/bin or true, not {}",
            home.display(),
            prog[0].to_string_lossy()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_two_nul_terminated_fields() {
        let r = parse_request(b"a@x.test\0secret\0<1.2@h>\0").unwrap();
        assert_eq!(
            (r.user.as_slice(), r.password.as_slice()),
            (&b"a@x.test"[..], &b"secret"[..])
        );
        assert!(
            parse_request(b"a@x.test\0secret\0").is_some(),
            "no timestamp is fine"
        );
        assert!(parse_request(b"a@x.test\0secret").is_none());
        assert!(parse_request(b"a@x.test").is_none());
        assert!(parse_request(b"").is_none());
        assert_eq!(parse_request(b"\0\0").unwrap().user, b"");
    }

    #[test]
    fn parsing_byte_at_a_time_gives_the_same_answer() {
        let input = b"a@x.test\0secret\0ts\0";
        for n in 0..=input.len() {
            let expect = input[..n].iter().filter(|&&b| b == 0).count() >= 2;
            assert_eq!(parse_request(&input[..n]).is_some(), expect, "prefix {n}");
        }
    }
}
