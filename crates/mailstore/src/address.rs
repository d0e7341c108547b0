//! Mailbox addresses and domain names as postern stores them: lower-case, checked
//! against a small safe alphabet, because the default mailbox directory is built from
//! them (`users/DOMAIN/LOCAL`). Nothing that fails these checks reaches a path.
//!
//! Local parts are compared without regard to ASCII case, as vpopmail does: `Alice@x`
//! and `alice@x` are one mailbox. A local part may also hold letters and digits beyond
//! ASCII (`jörg@x`, RFC 6531 mail through SMTPUTF8), compared exactly as written.

use postern_common::{Error, Result};

/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL: usize = 64;
/// Longest domain name (RFC 5321 §4.5.3.1.2, minus the trailing dot).
pub const MAX_DOMAIN: usize = 253;
/// Longest label of a domain name.
pub const MAX_LABEL: usize = 63;

/// A checked, lower-cased domain name such as `example.test`.
pub fn domain(text: &str) -> Result<String> {
    let d = text.to_ascii_lowercase();
    let bad = |why: &str| Err(Error::perm(format!("bad domain {}: {why}", shown(text))));
    if d.is_empty() || d.len() > MAX_DOMAIN {
        return bad("empty or too long");
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return bad("empty or overlong label");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label may not start or end with '-'");
        }
    }
    Ok(d)
}

/// A checked, lower-cased local part (the part before `@`).
pub fn local_part(text: &str) -> Result<String> {
    let l = text.to_ascii_lowercase();
    let bad = |why: &str| {
        Err(Error::perm(format!(
            "bad local part {}: {why}",
            shown(text)
        )))
    };
    if l.is_empty() || l.len() > MAX_LOCAL {
        return bad("empty or too long");
    }
    if !l.chars().all(|c| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || "._+-=".contains(c)
            || (!c.is_ascii() && c.is_alphanumeric())
    }) {
        return bad("only letters, digits and . _ + - = are allowed");
    }
    if l.starts_with('.') || l.ends_with('.') || l.contains("..") {
        return bad("dots must separate words");
    }
    // It becomes a directory name: `-x` reads as an option to every tool an admin runs.
    if l.starts_with('-') {
        return bad("may not start with '-'");
    }
    Ok(l)
}

/// Most `-` cut points tried for an extension address.
pub const MAX_EXTENSION_TRIES: usize = 8;

/// The shorter forms of an extension local part, tried after the exact one, in order:
/// `a-b-c` gives `a-b`, then `a` (qmail's `user-ext`). One rule for the SMTP server's
/// RCPT check and postern-local's delivery, so neither accepts what the other refuses.
pub fn extension_bases(local: &str) -> impl Iterator<Item = &str> {
    let mut base = local;
    std::iter::from_fn(move || {
        let (shorter, _) = base.rsplit_once('-')?;
        if shorter.is_empty() {
            return None;
        }
        base = shorter;
        Some(base)
    })
    .take(MAX_EXTENSION_TRIES)
}

/// A checked mailbox address `local@domain`, lower-cased. Returns (local, domain).
pub fn mailbox(text: &str) -> Result<(String, String)> {
    match text.rsplit_once('@') {
        Some((l, d)) if !l.is_empty() => Ok((local_part(l)?, domain(d)?)),
        _ => Err(Error::perm(format!(
            "bad address {}: expected local@domain",
            shown(text)
        ))),
    }
}

/// A checked address joined back together: `local@domain`.
pub fn normalise(text: &str) -> Result<String> {
    let (l, d) = mailbox(text)?;
    Ok(format!("{l}@{d}"))
}

/// What an alias line may have on its left: an address, or `@domain` (catch-all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasKey {
    Address(String),
    CatchAll(String),
}

impl AliasKey {
    pub fn parse(text: &str) -> Result<AliasKey> {
        match text.strip_prefix('@') {
            Some(d) => Ok(AliasKey::CatchAll(domain(d)?)),
            None => Ok(AliasKey::Address(normalise(text)?)),
        }
    }
    /// The key as written in files and cdbs: `addr` or `@domain`.
    pub fn key(&self) -> String {
        match self {
            AliasKey::Address(a) => a.clone(),
            AliasKey::CatchAll(d) => format!("@{d}"),
        }
    }
    pub fn domain(&self) -> &str {
        match self {
            AliasKey::Address(a) => a.rsplit_once('@').map(|(_, d)| d).unwrap_or(""),
            AliasKey::CatchAll(d) => d,
        }
    }
}

/// An alias target: any address (local or remote). Bounded and printable, never a
/// program or a file: postern does not deliver to `|command` or `/path` from aliases.
pub fn target(text: &str) -> Result<String> {
    let (l, d) = match text.rsplit_once('@') {
        Some(p) => p,
        None => {
            return Err(Error::perm(format!(
                "bad target {}: expected local@domain",
                shown(text)
            )))
        }
    };
    if l.is_empty()
        || l.len() > MAX_LOCAL
        || !l
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>,:\"\\".contains(&b))
    {
        return Err(Error::perm(format!(
            "bad target {}: bad local part",
            shown(text)
        )));
    }
    Ok(format!("{l}@{}", domain(d)?))
}

fn shown(text: &str) -> String {
    format!("\"{}\"", postern_common::logline::printable(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_part_may_not_start_with_a_dash() {
        let err = local_part("-x").unwrap_err();
        assert!(err.msg.contains("may not start with '-'"), "{}", err.msg);
        assert!(mailbox("-x@example.test").is_err());
        assert_eq!(local_part("x-").unwrap(), "x-");
    }

    #[test]
    fn utf8_local_parts_hold_letters_and_digits_only() {
        assert_eq!(normalise("Jörg@Example.test").unwrap(), "jörg@example.test");
        assert_eq!(local_part("δοκιμή").unwrap(), "δοκιμή");
        assert_eq!(local_part("用户1").unwrap(), "用户1");
        // No invisible, space-like or control characters, no symbols.
        for bad in ["a\u{200b}b", "a\u{a0}b", "a\u{85}b", "a€b", "a\u{2028}b"] {
            assert!(local_part(bad).is_err(), "{bad:?} accepted");
        }
        // Domains stay ASCII (an IDN is stored in its xn-- form).
        assert!(domain("bücher.example").is_err());
    }

    #[test]
    fn extension_bases_cut_at_each_dash_from_the_right() {
        assert_eq!(
            extension_bases("a-b-c").collect::<Vec<_>>(),
            vec!["a-b", "a"]
        );
        assert_eq!(extension_bases("alice").count(), 0);
        assert_eq!(extension_bases("-x").count(), 0);
        let long = "a-".repeat(20) + "z";
        assert_eq!(extension_bases(&long).count(), MAX_EXTENSION_TRIES);
    }

    #[test]
    fn addresses_are_lower_cased_and_checked() {
        assert_eq!(
            normalise("Alice@Example.TEST").unwrap(),
            "alice@example.test"
        );
        assert_eq!(normalise("a.b+c@x.test").unwrap(), "a.b+c@x.test");
        for bad in [
            "",
            "@x.test",
            "a@",
            "a@-x.test",
            "../a@x.test",
            "a/b@x.test",
            "a@x..test",
            ".a@x.test",
            "a b@x.test",
            "a@x_y.test",
        ] {
            assert!(normalise(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalise(&format!("{}@x.test", "a".repeat(65))).is_err());
    }

    #[test]
    fn alias_keys_and_targets() {
        assert_eq!(
            AliasKey::parse("@Example.test").unwrap(),
            AliasKey::CatchAll("example.test".into())
        );
        assert_eq!(
            AliasKey::parse("Postmaster@example.test").unwrap().key(),
            "postmaster@example.test"
        );
        assert_eq!(target("Bob@Remote.TEST").unwrap(), "Bob@remote.test");
        assert!(target("|/bin/sh").is_err());
        assert!(target("/etc/passwd").is_err());
        assert!(target("a,b@x.test").is_err());
    }
}
