//! Where a local recipient's mail goes, from the user database only (principle 1 of
//! docs/architecture.md: the address text never becomes a path). The order, first match wins:
//!
//! 1. a mailbox `local@domain` in users.cdb;
//! 2. an alias `local@domain` in aliases.cdb;
//! 3. for `user-ext@domain`, the same two lookups for `user-ext` shortened at each `-`
//!    from the right (`a-b-c` → `a-b` → `a`);
//! 4. the catch-all alias `@domain`;
//!
//! otherwise the address does not exist here (permanent).

use postern_common::control::Control;
use postern_common::{Error, Result};
use postern_mailstore::User;
use std::path::Path;

/// The outcome of resolving a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Deliver into this user's Maildir.
    Mailbox(User),
    /// Forward to these addresses (an alias or catch-all), found under `key`.
    Forward { key: String, targets: Vec<String> },
    /// No such address.
    Unknown,
}

/// The targets stored under exactly `key` in aliases.cdb (no catch-all fallback). An
/// instance without aliases.cdb has no aliases; an empty one is read as such by the
/// lookup itself.
fn exact_alias(home: &Path, key: &str) -> Result<Option<Vec<String>>> {
    let path = Control::for_home(home).path(postern_mailstore::userdb::ALIASES_CDB);
    if !path.exists() {
        return Ok(None);
    }
    postern_mailstore::userdb::alias_targets(home, key)
}

fn exact(home: &Path, addr: &str) -> Result<Option<Target>> {
    // A missing users.cdb is trouble (lookup_user says so); an empty one has no users.
    if let Some(user) = postern_mailstore::lookup_user(home, addr)? {
        return Ok(Some(Target::Mailbox(user)));
    }
    if let Some(targets) = exact_alias(home, addr)? {
        return Ok(Some(Target::Forward {
            key: addr.to_string(),
            targets,
        }));
    }
    Ok(None)
}

/// Resolve `addr` (already checked and lower-cased: `local@domain`).
pub fn resolve(home: &Path, addr: &str) -> Result<Target> {
    let (local, domain) = addr
        .rsplit_once('@')
        .ok_or_else(|| Error::perm(format!("bad address: {addr} (#5.1.3)")))?;
    if let Some(t) = exact(home, addr)? {
        return Ok(t);
    }
    for base in postern_mailstore::address::extension_bases(local) {
        if let Some(t) = exact(home, &format!("{base}@{domain}"))? {
            return Ok(t);
        }
    }
    let catch_all = format!("@{domain}");
    if let Some(targets) = exact_alias(home, &catch_all)? {
        return Ok(Target::Forward {
            key: catch_all,
            targets,
        });
    }
    Ok(Target::Unknown)
}
