//! Where a local recipient's mail goes, from the user database only (DESIGN §1.1: the
//! address text never becomes a path). The order, first match wins:
//!
//! 1. a mailbox `local@domain` in users.cdb;
//! 2. an alias `local@domain` in aliases.cdb;
//! 3. for `user-ext@domain`, the same two lookups for `user-ext` shortened at each `-`
//!    from the right (`a-b-c` → `a-b` → `a`);
//! 4. the catch-all alias `@domain`;
//!
//! otherwise the address does not exist here (permanent).

use postern_common::control::Control;
use postern_common::{Error, Result, ResultExt};
use postern_mailstore::User;
use std::path::Path;

/// Most `-` cut points tried for an extension address.
pub const MAX_EXTENSION_TRIES: usize = 8;

/// Size of a cdb with no records (its hash table index only).
pub const EMPTY_CDB: u64 = 2048;

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

/// The targets stored under exactly `key` in aliases.cdb (no catch-all fallback).
fn exact_alias(home: &Path, key: &str) -> Result<Option<Vec<String>>> {
    let control = Control::for_home(home);
    let path = control.path(postern_mailstore::userdb::ALIASES_CDB);
    // An empty cdb is just its 2048-byte table, which the cdb crate refuses to open.
    if !has_records(&path) {
        return Ok(None);
    }
    let db = match cdb::CDB::open(&path) {
        Ok(db) => db,
        // No aliases at all is a normal instance.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).temp("unable to open control/aliases.cdb"),
    };
    match db.get(key.as_bytes()) {
        None => Ok(None),
        Some(Err(e)) => Err(e).temp("unable to read control/aliases.cdb"),
        Some(Ok(v)) => Ok(Some(
            v.split(|&b| b == 0)
                .filter(|t| !t.is_empty())
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .collect(),
        )),
    }
}

/// Whether a cdb exists with at least one record (the cdb crate refuses empty ones).
fn has_records(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > EMPTY_CDB)
}

fn exact(home: &Path, addr: &str) -> Result<Option<Target>> {
    let users = Control::for_home(home).path(postern_mailstore::userdb::USERS_CDB);
    // A missing users.cdb is trouble (lookup_user says so); an empty one has no users.
    let user = if users.exists() && !has_records(&users) {
        None
    } else {
        postern_mailstore::lookup_user(home, addr)?
    };
    if let Some(user) = user {
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
    let mut base = local;
    for _ in 0..MAX_EXTENSION_TRIES {
        let Some((shorter, _)) = base.rsplit_once('-') else {
            break;
        };
        if shorter.is_empty() {
            break;
        }
        base = shorter;
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
