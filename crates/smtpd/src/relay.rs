//! The relay decision: may this client send to this recipient?
//!
//! A relay client (`RELAYCLIENT` set by the access rules, or an authenticated session)
//! may send anywhere. Anyone else may send only to a domain listed in `rcpthosts`
//! (`domain` exactly, `.domain` for any subdomain; no file means no domain), and only
//! to plain local parts: a `%`, `!` or `@` in the local part (quoted or not) asks some
//! downstream host to relay, the classic tricks. A recipient without a domain is
//! accepted only for `postmaster` (RFC 5321 §4.5.1). The sender is never consulted.

use postern_wire::smtp_path::Address;

/// The outcome for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Deliverable here, or the client may relay.
    Accept,
    /// A local part that asks for relaying through us (`%`, `!`, `@`).
    RelayTrick,
    /// A domain we do not accept mail for.
    NotOurs,
}

/// Whether `domain` (lower-case) is listed in `rcpthosts` (entries lower-cased).
pub fn rcpthosts_allows(domain: &str, rcpthosts: &[String]) -> bool {
    if rcpthosts.iter().any(|h| h == domain) {
        return true;
    }
    // `.example.test` allows every subdomain of example.test (not example.test itself).
    let mut rest = domain;
    while let Some(i) = rest.find('.') {
        let suffix = &rest[i..];
        if rcpthosts.iter().any(|h| h == suffix) {
            return true;
        }
        rest = &rest[i + 1..];
    }
    false
}

/// Whether a local part asks for source routing through us.
pub fn is_relay_trick(local: &str) -> bool {
    local.contains(['%', '!', '@'])
}

/// Decide for one recipient.
pub fn decide(rcpt: &Address, relay_allowed: bool, rcpthosts: &[String]) -> Decision {
    if relay_allowed {
        return Decision::Accept;
    }
    if is_relay_trick(&rcpt.local) {
        return Decision::RelayTrick;
    }
    match &rcpt.domain {
        None if rcpt.local.eq_ignore_ascii_case("postmaster") => Decision::Accept,
        None => Decision::NotOurs,
        Some(d) if rcpthosts_allows(d, rcpthosts) => Decision::Accept,
        Some(_) => Decision::NotOurs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_wire::smtp_path::parse_path_arg;

    fn hosts() -> Vec<String> {
        vec!["example.test".into(), ".sub.test".into()]
    }

    fn verdict(path: &str, relay: bool) -> Decision {
        let arg = format!("TO:{path}");
        let a = parse_path_arg(arg.as_bytes(), "TO")
            .unwrap()
            .address
            .unwrap();
        decide(&a, relay, &hosts())
    }

    #[test]
    fn rcpthosts_exact_and_subdomains() {
        let h = hosts();
        assert!(rcpthosts_allows("example.test", &h));
        assert!(!rcpthosts_allows("www.example.test", &h));
        assert!(rcpthosts_allows("a.sub.test", &h));
        assert!(rcpthosts_allows("a.b.sub.test", &h));
        assert!(!rcpthosts_allows("sub.test", &h));
        assert!(!rcpthosts_allows("notexample.test", &h));
        assert!(
            !rcpthosts_allows("example.test", &[]),
            "no rcpthosts: nothing"
        );
    }

    #[test]
    fn classic_relay_tricks_are_refused() {
        use Decision::*;
        assert_eq!(verdict("<user@example.test>", false), Accept);
        assert_eq!(verdict("<USER@EXAMPLE.TEST.>", false), Accept);
        assert_eq!(verdict("<user@victim.test>", false), NotOurs);
        assert_eq!(
            verdict("<user%victim.test@example.test>", false),
            RelayTrick
        );
        assert_eq!(
            verdict("<victim.test!user@example.test>", false),
            RelayTrick
        );
        assert_eq!(
            verdict("<\"user@victim.test\"@example.test>", false),
            RelayTrick
        );
        // `<user@victim.test@example.test>` is refused before any relay decision (an
        // `@` outside quotes is a bad local part, `501 5.1.3`); see command.rs.
        assert_eq!(verdict("<@example.test:user@victim.test>", false), NotOurs);
        assert_eq!(verdict("<user@[192.0.2.1]>", false), NotOurs);
        assert_eq!(verdict("<user@example.test.victim.test>", false), NotOurs);
        assert_eq!(verdict("<postmaster>", false), Accept);
        assert_eq!(verdict("<user>", false), NotOurs);
        assert_eq!(verdict("<\"john doe\"@example.test>", false), Accept);
    }

    #[test]
    fn relay_clients_may_send_anywhere() {
        assert_eq!(verdict("<user@victim.test>", true), Decision::Accept);
        assert_eq!(
            verdict("<user%victim.test@example.test>", true),
            Decision::Accept
        );
    }
}
