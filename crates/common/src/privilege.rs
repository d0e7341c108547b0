//! Accounts and privilege drops. A drop is for good: supplementary groups are replaced,
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

/// Become `uid`/`gid` with no supplementary groups but `gid`. Must be called while root
/// (or already as that uid/gid); verifies the result.
pub fn drop_to(uid: u32, gid: u32) -> Result<()> {
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    if unistd::geteuid().is_root() {
        unistd::setgroups(&[gid]).temp("unable to set supplementary groups")?;
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
