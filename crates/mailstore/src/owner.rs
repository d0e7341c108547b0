//! Who owns the mailboxes. In single-user mode (not root) that is simply the current
//! user. As root it is the account named by `--owner NAME`, else by `control/mailowner`,
//! else the account [`DEFAULT_OWNER`] if it exists; otherwise we refuse rather than
//! create root-owned mailboxes. The owner may never be root.

use postern_common::control::Control;
use postern_common::privilege::{self, Account};
use postern_common::{Error, Result, ResultExt};

/// Names the mailbox owner account for an instance run as root.
pub const OWNER_FILE: &str = "mailowner";
/// Used as root when neither `--owner` nor `control/mailowner` names an account.
pub const DEFAULT_OWNER: &str = "postern-mail";

/// The account mailboxes belong to.
pub fn mailbox_owner(control: &Control, explicit: Option<&str>) -> Result<Account> {
    if !privilege::is_root() {
        let uid = nix::unistd::geteuid().as_raw();
        let me = privilege::account_of(uid).unwrap_or(Account {
            name: uid.to_string(),
            uid,
            gid: nix::unistd::getegid().as_raw(),
            home: "/".into(),
        });
        if let Some(name) = explicit {
            if name != me.name {
                return Err(Error::perm(format!(
                    "--owner {name}: only root can give mailboxes to another account"
                )));
            }
        }
        return Ok(me);
    }
    let account = match explicit {
        Some(name) => privilege::lookup_account(name)?,
        None => match control.value(OWNER_FILE)? {
            Some(name) => privilege::lookup_account(&name).map_err(|e| e.context(format!("control/{OWNER_FILE}")))?,
            None => match privilege::lookup_account(DEFAULT_OWNER) {
                Ok(a) => a,
                Err(_) => {
                    return Err(Error::perm(format!(
                        "running as root and no mailbox owner: give --owner NAME, write control/{OWNER_FILE}, or create the account {DEFAULT_OWNER}"
                    )))
                }
            },
        },
    };
    if account.uid == 0 {
        return Err(Error::perm(format!(
            "mailbox owner {} is root: mailboxes must not belong to root",
            account.name
        )));
    }
    Ok(account)
}

/// Who owns `users.cdb` (uid, gid): the mailbox owner, so that postern-checkpassword,
/// running as that account (as root it becomes it; a system install makes it setuid to
/// it), can read the hashes and nothing else can. `None` when not root (the file is
/// then the caller's) or when no owner is configured yet (then root's, 0600).
pub fn database_owner(control: &Control) -> Result<Option<(u32, u32)>> {
    if !privilege::is_root() {
        return Ok(None);
    }
    Ok(mailbox_owner(control, None).ok().map(|a| (a.uid, a.gid)))
}

/// Remember `--owner NAME` in `control/mailowner` the first time it is given as root, so
/// later runs and the compiler agree on the owner.
pub fn remember(control: &Control, name: &str) -> Result<()> {
    if privilege::is_root() && control.value(OWNER_FILE)?.is_none() {
        postern_common::atomic::write_atomic(
            &control.path(OWNER_FILE),
            format!("{name}\n").as_bytes(),
            0o644,
        )
        .temp(format!("unable to write control/{OWNER_FILE}"))?;
    }
    Ok(())
}
