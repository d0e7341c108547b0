//! Recipient validation at RCPT time (no backscatter) and the alias half of the
//! sender-login match, over postern-mailstore's compiled databases.
//!
//! Only `recipients.cdb` (no secrets) and `aliases.cdb` are read, never `users.cdb`:
//! the SMTP server cannot see password hashes. An instance without `recipients.cdb`
//! hosts no mailboxes (a pure gateway): its `rcpthosts` domains are accepted without
//! validation. A database that exists but cannot be read is a temporary error (451),
//! never "accept all".
//!
//! A domain that is not hosted here may say who exists behind it: first
//! `control/relayrecipients` (a list), then `control/verifyrecipients` (ask the next hop
//! at RCPT time: [`Verdict::Verify`], done by [`crate::verify`]).

use postern_common::Result;
use std::path::PathBuf;

/// What the user database says about a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A mailbox, alias or catch-all exists.
    Valid,
    /// The domain is hosted here and has no such address.
    Unknown,
    /// Not a hosted domain: nothing to validate.
    NotHosted,
    /// Not hosted here, listed in `control/verifyrecipients`: ask the next hop.
    Verify,
}

/// The lookups the session needs; the mailstore implements them, tests fake them.
pub trait RecipientCheck {
    /// `addr` is `local@domain`, `domain` lower-case.
    fn check(&self, addr: &str, domain: &str) -> Result<Verdict>;
    /// Whether `sender` is an alias (or catch-all) that delivers to `login`.
    fn alias_of(&self, sender: &str, login: &str) -> Result<bool>;
}

/// The instance's user database.
pub struct Mailstore {
    pub home: PathBuf,
}

impl RecipientCheck for Mailstore {
    fn check(&self, addr: &str, domain: &str) -> Result<Verdict> {
        let cdb = self
            .home
            .join("control")
            .join(postern_mailstore::userdb::RECIPIENTS_CDB);
        let hosted = match std::fs::symlink_metadata(&cdb) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            _ => postern_mailstore::is_hosted_domain(&self.home, domain)?,
        };
        if hosted {
            return Ok(
                if postern_mailstore::is_valid_recipient(&self.home, addr)? {
                    Verdict::Valid
                } else {
                    Verdict::Unknown
                },
            );
        }
        // Not hosted here: a domain relayed to an internal server may say who exists
        // there (control/relayrecipients) — a listed address needs no callout, an
        // unlisted one is refused without one — or be verified by asking the next hop
        // (control/verifyrecipients); one that does neither accepts everyone.
        Ok(
            match postern_mailstore::relayrecipients::listed(&self.home, addr)? {
                Some(true) => Verdict::Valid,
                Some(false) => Verdict::Unknown,
                None if postern_mailstore::verify::governs(&self.home, domain)? => Verdict::Verify,
                None => Verdict::NotHosted,
            },
        )
    }

    fn alias_of(&self, sender: &str, login: &str) -> Result<bool> {
        let cdb = self
            .home
            .join("control")
            .join(postern_mailstore::userdb::ALIASES_CDB);
        if !cdb.exists() {
            return Ok(false);
        }
        let targets = postern_mailstore::resolve_alias(&self.home, sender)?.unwrap_or_default();
        Ok(targets.iter().any(|t| t.eq_ignore_ascii_case(login)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_database_means_nothing_hosted_and_a_broken_one_is_temporary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("control")).unwrap();
        let store = Mailstore {
            home: dir.path().to_path_buf(),
        };
        assert_eq!(
            store.check("a@example.test", "example.test").unwrap(),
            Verdict::NotHosted
        );
        assert!(!store
            .alias_of("sales@example.test", "a@example.test")
            .unwrap());
        // A cdb that cannot be read: never "accept".
        std::fs::create_dir(dir.path().join("control/recipients.cdb")).unwrap();
        let err = store.check("a@example.test", "example.test").unwrap_err();
        assert_eq!(err.kind, postern_common::Kind::Temp);
        std::fs::write(dir.path().join("control/aliases.cdb"), b"garbage").unwrap();
        assert!(store
            .alias_of("sales@example.test", "a@example.test")
            .is_err());
    }
}
