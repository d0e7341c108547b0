//! Accounts and privilege drops. A drop is for good: supplementary groups are removed,
//! then the gid, then the uid, and we check that root cannot be regained — a program
//! that asked to lose root and still has it must stop, not carry on.

use crate::exit::{Error, Result, ResultExt};
use nix::unistd::{self, Gid, Uid, User};
use std::path::PathBuf;

/// A system account, as the password database gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// Look up `name` in the password database. Unknown is permanent, a lookup error temporary.
pub fn lookup_account(name: &str) -> Result<Account> {
    match User::from_name(name).temp(format!("unable to look up account {name}"))? {
        Some(u) => Ok(Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        }),
        None => Err(Error::perm(format!("unknown account: {name}"))),
    }
}

/// Look up the account that owns `uid`, if there is one.
pub fn account_of(uid: u32) -> Option<Account> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
        })
}

pub fn is_root() -> bool {
    unistd::geteuid().is_root()
}

/// Become `uid`/`gid` with no supplementary groups at all (the primary `gid` grants the
/// group's access). An empty list, not `[gid]` as the classic tools set: a setuid
/// program this process starts cannot drop supplementary groups (only root can), so an
/// account's group must not linger there — postern-remote started by postern-send would
/// otherwise keep the send group and with it the queue. Must be called while root (or
/// already as that uid/gid); verifies the result.
pub fn drop_to(uid: u32, gid: u32) -> Result<()> {
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    if unistd::geteuid().is_root() {
        unistd::setgroups(&[]).temp("unable to set supplementary groups")?;
    }
    unistd::setgid(gid).temp(format!("unable to set gid {gid}"))?;
    unistd::setuid(uid).temp(format!("unable to set uid {uid}"))?;
    if unistd::getuid() != uid
        || unistd::geteuid() != uid
        || unistd::getgid() != gid
        || unistd::getegid() != gid
    {
        return Err(Error::temp("privileges were not dropped"));
    }
    if !uid.is_root() && unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(Error::temp(
            "root could be regained after dropping privileges",
        ));
    }
    Ok(())
}

/// What a setuid program's children may inherit from its caller: the UCSPI variables
/// and postern-tlsd's channel. Everything else (`LD_PRELOAD`, `PATH`, `POSTERN_HOME`…)
/// is dropped — once the ids are settled, the dynamic loader no longer protects a child.
pub const SETID_KEEP: &[&str] = &[
    "PROTO",
    "TCPLOCALIP",
    "TCPLOCALPORT",
    "TCPLOCALHOST",
    "TCPREMOTEIP",
    "TCPREMOTEPORT",
    "TCPREMOTEHOST",
    "TCPREMOTEINFO",
    "POSTERN_TLS_FD",
    "POSTERN_TLS_VERSION",
    "POSTERN_TLS_CIPHER",
    // The priority lane of a message postern-send hands to postern-local.
    "POSTERN_PRIORITY",
];

/// The `PATH` a setuid program gives its children.
pub const SETID_PATH: &str = "/usr/bin:/bin";

/// For a program installed setuid and setgid to its own account (and not started by
/// root): make the effective ids the real and saved ones too, for good, so the caller's
/// uid and gid cannot be regained and a child runs as the account (a shell started with
/// real ≠ effective uid would otherwise drop back to the caller's); clear the
/// environment but [`SETID_KEEP`], set `PATH` to [`SETID_PATH`] and `POSTERN_HOME` to
/// `home` (the [`crate::home::trusted_home`]); set the umask to 077. Returns whether it
/// was setuid/setgid; does nothing otherwise. Call it first thing in `main`, while
/// single-threaded.
///
/// Nothing of the caller's group access may survive (postern-remote must not keep
/// postern-send's group, which reads the queue): the program must be setgid to its own
/// account's group, and it refuses to run with any supplementary group, which only root
/// could drop. The install starts its callers with none.
pub fn settle_setid(home: &std::path::Path) -> Result<bool> {
    let (euid, egid) = (unistd::geteuid(), unistd::getegid());
    if unistd::getuid() == euid && unistd::getgid() == egid {
        return Ok(false);
    }
    let own_gid = account_of(euid.as_raw()).map(|a| a.gid);
    if !euid.is_root() && own_gid != Some(egid.as_raw()) {
        return Err(Error::temp(format!(
            "installed setuid but not setgid to its own group (gid {egid}): \
             the caller's group would stay (reinstall: scripts/install sets mode 6755)"
        )));
    }
    unistd::setresgid(egid, egid, egid).temp(format!("unable to set gid {egid}"))?;
    let others = || -> Result<Vec<Gid>> {
        Ok(unistd::getgroups()
            .temp("unable to read the supplementary groups")?
            .into_iter()
            .filter(|g| *g != egid)
            .collect())
    };
    if !others()?.is_empty() {
        // Works only with the privilege to (a capable caller); otherwise refuse below.
        let _ = unistd::setgroups(&[]);
        let left = others()?;
        if !left.is_empty() {
            let list: Vec<String> = left.iter().map(|g| g.to_string()).collect();
            return Err(Error::temp(format!(
                "started with the supplementary groups {}, which a setuid program cannot drop: \
                 its caller must run without them",
                list.join(",")
            )));
        }
    }
    unistd::setresuid(euid, euid, euid).temp(format!("unable to set uid {euid}"))?;
    if unistd::getuid() != euid || unistd::getgid() != egid {
        return Err(Error::temp("the setuid ids did not stick"));
    }
    for (key, _) in std::env::vars_os() {
        if !SETID_KEEP.iter().any(|k| key == *k) {
            std::env::remove_var(&key);
        }
    }
    std::env::set_var("PATH", SETID_PATH);
    std::env::set_var("POSTERN_HOME", home);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    Ok(true)
}

/// Forbid `ptrace` and core dumps of this process by other processes of the same
/// account. Every SMTP and POP3 session runs as the one network account; without this,
/// a compromised session could attach to another and read its AUTH line or mail.
pub fn not_dumpable() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).temp("unable to clear the dumpable flag")
}

/// Become `account` (its uid and primary gid).
pub fn become_account(account: &Account) -> Result<()> {
    drop_to(account.uid, account.gid)
        .map_err(|e| e.context(format!("unable to become {}", account.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_exists_and_unknown_does_not() {
        let root = lookup_account("root").unwrap();
        assert_eq!(root.uid, 0);
        let err = lookup_account("no-such-account-postern").unwrap_err();
        assert_eq!(err.kind, crate::exit::Kind::Perm);
    }
}
