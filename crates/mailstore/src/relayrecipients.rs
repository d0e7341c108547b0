//! `control/relayrecipients`: who exists behind this gateway, for domains in `rcpthosts`
//! that are not hosted here (their mailboxes live on an internal server). Without it
//! such a domain accepts every recipient, and the internal server's later refusal
//! becomes a bounce to a (usually forged) sender: backscatter. Like Postfix's
//! `relay_recipient_maps`.
//!
//! One entry per line: `local@domain` (that address) or `@domain` (any address of the
//! domain); `#` comments. A domain with at least one entry is *governed*: its
//! recipients must be listed (or the domain given as `@domain`), every other recipient
//! gets `550 5.1.1` at RCPT and counts toward the dictionary-attack limit like an
//! unknown local user. Recipients are never rewritten. Addresses are compared without
//! case (as Exchange and most internal servers treat them).
//!
//! Compiled by `posternctl cdb` into `relayrecipients.cdb` (keys: the domain, and each
//! entry lower-cased; values empty; 0644 — no secrets), atomically: a bad line names
//! itself and leaves the old cdb in force. No source file: no cdb, nothing governed.

use crate::address;
use crate::userdb::{get, open_cdb, write_cdb};
use postern_common::control::Control;
use postern_common::{Error, Result};
use std::collections::BTreeSet;
use std::path::Path;

pub const SOURCE: &str = "relayrecipients";
pub const CDB: &str = "relayrecipients.cdb";
/// Longest local part accepted in the file (RFC 5321's limit).
pub const MAX_LOCAL: usize = 64;

/// The cdb keys of a source text: each entry and each governed domain, lower-cased.
/// A bad line is a permanent error naming it.
pub fn keys(text: &str) -> Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    for line in postern_common::control::parse_lines(text) {
        let (domain, entry) = parse_line(&line)?;
        keys.insert(domain);
        keys.insert(entry);
    }
    Ok(keys)
}

/// One line: its domain and its entry (`local@domain` or `@domain`), lower-cased; a
/// bad line is a permanent error `control/relayrecipients:LINE: why: text`.
pub fn parse_line(line: &postern_common::control::Line) -> Result<(String, String)> {
    let bad = |why: &str| {
        Error::perm(format!(
            "control/{SOURCE}:{}: {why}: {}",
            line.number,
            postern_common::logline::printable(&line.text)
        ))
    };
    let (local, domain) = line
        .text
        .trim()
        .rsplit_once('@')
        .ok_or_else(|| bad("expected local@domain or @domain"))?;
    let domain = address::domain(domain).map_err(|e| bad(&e.msg))?;
    // Internal servers know local parts postern's own mailboxes do not allow
    // (apostrophes, say): any printable ASCII but '@' and space.
    if local.len() > MAX_LOCAL || !local.bytes().all(|b| b.is_ascii_graphic() && b != b'@') {
        return Err(bad(
            "a local part is printable ASCII without '@', at most 64 bytes",
        ));
    }
    let entry = format!("{}@{domain}", local.to_ascii_lowercase());
    Ok((domain, entry))
}

/// Compile `control/relayrecipients` into its cdb; remove the cdb when the source is
/// gone. Returns whether there is a source.
pub fn compile(home: &Path) -> Result<bool> {
    let control = Control::for_home(home);
    let Some(text) = control.read(SOURCE)? else {
        match std::fs::remove_file(control.path(CDB)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("unable to remove control/{CDB}"), &e))
            }
            _ => return Ok(false),
        }
    };
    let records: Vec<(Vec<u8>, Vec<u8>)> = keys(&text)?
        .into_iter()
        .map(|k| (k.into_bytes(), Vec::new()))
        .collect();
    write_cdb(&control.path(CDB), &records, 0o644, None)?;
    Ok(true)
}

/// Whether `domain` has entries in `relayrecipients.cdb` (its recipients are checked).
pub fn governs(home: &Path, domain: &str) -> Result<bool> {
    let control = Control::for_home(home);
    if !control.path(CDB).exists() {
        return Ok(false);
    }
    let db = open_cdb(&control, CDB)?;
    Ok(get(&db, CDB, &domain.to_ascii_lowercase())?.is_some())
}

/// For a recipient `addr` (`local@domain`): `None` when its domain is not governed (or
/// there is no cdb), else whether it is listed. An unreadable cdb is a temporary error.
pub fn listed(home: &Path, addr: &str) -> Result<Option<bool>> {
    let control = Control::for_home(home);
    if !control.path(CDB).exists() {
        return Ok(None);
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Ok(None);
    };
    let domain = domain.to_ascii_lowercase();
    let db = open_cdb(&control, CDB)?;
    if get(&db, CDB, &domain)?.is_none() {
        return Ok(None);
    }
    let exact = format!("{}@{domain}", local.to_ascii_lowercase());
    Ok(Some(
        get(&db, CDB, &exact)?.is_some() || get(&db, CDB, &format!("@{domain}"))?.is_some(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_their_domains_are_keys() {
        let k = keys("# internal\nAlice@Corp.test\n@partner.test\nO'Brien@corp.test\n").unwrap();
        let want: BTreeSet<String> = [
            "corp.test",
            "alice@corp.test",
            "o'brien@corp.test",
            "partner.test",
            "@partner.test",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(k, want);
    }

    #[test]
    fn a_bad_line_names_itself() {
        let err = keys("alice@corp.test\nno-at-sign\n").unwrap_err();
        assert!(
            err.msg.starts_with("control/relayrecipients:2: "),
            "{}",
            err.msg
        );
        let err = keys("a b@corp.test\n").unwrap_err();
        assert!(
            err.msg.starts_with("control/relayrecipients:1: "),
            "{}",
            err.msg
        );
        assert!(keys("x@bad_domain\n").is_err());
    }

    #[test]
    fn only_governed_domains_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir(home.join("control")).unwrap();
        assert_eq!(listed(home, "x@corp.test").unwrap(), None, "no cdb");
        std::fs::write(
            home.join("control/relayrecipients"),
            "alice@corp.test\n@partner.test\n",
        )
        .unwrap();
        assert!(compile(home).unwrap());
        assert_eq!(listed(home, "ALICE@corp.TEST").unwrap(), Some(true));
        assert_eq!(listed(home, "nosuch@corp.test").unwrap(), Some(false));
        assert_eq!(listed(home, "anyone@partner.test").unwrap(), Some(true));
        assert_eq!(listed(home, "x@elsewhere.test").unwrap(), None);
        std::fs::remove_file(home.join("control/relayrecipients")).unwrap();
        assert!(!compile(home).unwrap());
        assert_eq!(
            listed(home, "nosuch@corp.test").unwrap(),
            None,
            "cdb removed"
        );
    }
}
