//! The `MAIL FROM:<…>` / `RCPT TO:<…>` argument: the path and its ESMTP parameters,
//! read by postern-smtpd and `postern-inject -bs`, written by postern-remote.
//!
//! Addresses are parsed, never guessed at: an optional source route (`@a,@b:`) is
//! dropped as RFC 5321 §4.1.1.3 says; the domain is what follows the last `@` that is
//! not inside quotes, lower-cased with a trailing dot removed; a quoted local part is
//! unquoted and remembered as quoted, so the relay check can see an `@` hidden in it.
//! Outside quotes a local part may hold only dot-atom characters (RFC 5321 §4.1.2): an
//! `@`, a space or a backslash there is refused, never guessed at. The envelope gets the
//! local part back in RFC 5321's canonical form — as given when it is a dot-atom, else
//! re-quoted — so the address queued is the address the client gave.
//! The limits of RFC 5321 §4.5.3.1 apply to the text as given: over them is an error,
//! never a truncation.
//!
//! With SMTPUTF8 (RFC 6531, [`parse_path_arg_utf8`]) a local part and a domain may
//! also hold non-ASCII characters that are not controls (UTF-8 in the command line);
//! without it, any byte over 127 is refused.
//!
//! The writer, [`write_path`], angle-brackets an envelope address for a client's
//! `MAIL FROM:` / `RCPT TO:` line and refuses what would break the command line.

/// Longest local part.
pub const MAX_LOCAL: usize = 64;
/// Longest domain.
pub const MAX_DOMAIN: usize = 255;
/// Longest path, angle brackets included.
pub const MAX_PATH: usize = 256;
/// Most ESMTP parameters on one MAIL or RCPT.
pub const MAX_PARAMS: usize = 10;

/// A parsed mailbox from a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local part's value, unquoted (`"a@b"` gives `a@b`); for decisions only, the
    /// envelope uses [`Address::envelope`].
    pub local: String,
    /// The domain, lower-cased, without a trailing dot; `None` for `<postmaster>`.
    pub domain: Option<String>,
    /// Whether the local part was (partly) quoted.
    pub quoted: bool,
}

impl Address {
    /// The address as it goes into the queue envelope: `local@domain`, the local part in
    /// canonical form ([`canonical_local`]): `"john doe"@example.test` stays quoted.
    pub fn envelope(&self) -> String {
        let local = canonical_local(&self.local);
        match &self.domain {
            Some(d) => format!("{local}@{d}"),
            None => local,
        }
    }
}

/// `atext` of RFC 5322 §3.2.3: what a dot-atom is made of, besides dots.
pub fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
}

/// RFC 6531's `UTF8-non-ascii` as atext: a non-ASCII character that is not a control.
pub fn is_utf8_atext(c: char) -> bool {
    !c.is_ascii() && !c.is_control()
}

/// A local part's value in RFC 5321's canonical form (§4.1.2): as it is when it holds
/// only atext (RFC 6531's non-ASCII atext included) and dots, else a quoted string with
/// `"` and `\` escaped.
pub fn canonical_local(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c == '.' || is_atext(c) || is_utf8_atext(c))
    {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Why a MAIL or RCPT argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Not `FROM:<…>` / `TO:<…>`, or a malformed address.
    Syntax(&'static str),
    /// A part longer than RFC 5321 allows.
    TooLong(&'static str),
    /// A local part with a character outside quotes that a dot-atom may not hold
    /// (`a@b@c`, `a b@c`): a bad mailbox, not a command syntax error.
    BadLocal(&'static str),
}

/// `FROM:<path> params` or `TO:<path> params`, parsed. The address is `None` for `<>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathArg {
    pub address: Option<Address>,
    /// `(KEYWORD upper-cased, value)`.
    pub params: Vec<(String, Option<String>)>,
}

/// Parse the argument of MAIL (`keyword` = `FROM`) or RCPT (`TO`), ASCII only.
pub fn parse_path_arg(arg: &[u8], keyword: &str) -> Result<PathArg, PathError> {
    parse_path_arg_utf8(arg, keyword, false)
}

/// Whether the argument holds a byte over 127: what needs SMTPUTF8.
pub fn needs_utf8(arg: &[u8]) -> bool {
    !arg.is_ascii()
}

/// Parse the argument of MAIL or RCPT; with `utf8` (SMTPUTF8 in force) the address may
/// hold non-ASCII characters, as UTF-8.
pub fn parse_path_arg_utf8(arg: &[u8], keyword: &str, utf8: bool) -> Result<PathArg, PathError> {
    let text =
        std::str::from_utf8(arg).map_err(|_| PathError::Syntax("8-bit characters in command"))?;
    if !utf8 && !text.is_ascii() {
        return Err(PathError::Syntax("8-bit characters in command"));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(PathError::Syntax("control characters in command"));
    }
    let kw_len = keyword.len() + 1;
    if text.len() < kw_len
        || !text[..keyword.len()].eq_ignore_ascii_case(keyword)
        || text.as_bytes()[keyword.len()] != b':'
    {
        return Err(PathError::Syntax(
            "expected a path after the keyword and colon",
        ));
    }
    let rest = text[kw_len..].trim_start_matches(' ');
    let (inner, after) = if let Some(body) = rest.strip_prefix('<') {
        let close = closing_bracket(body).ok_or(PathError::Syntax("unbalanced angle brackets"))?;
        (&body[..close], &body[close + 1..])
    } else {
        // A bare address (no brackets): tolerated, as most servers do.
        let end = rest.find(' ').unwrap_or(rest.len());
        if rest[..end].is_empty() {
            return Err(PathError::Syntax("empty path"));
        }
        (&rest[..end], &rest[end..])
    };
    if inner.len() + 2 > MAX_PATH {
        return Err(PathError::TooLong("path longer than 256 characters"));
    }
    if !after.is_empty() && !after.starts_with(' ') {
        return Err(PathError::Syntax("junk after the path"));
    }
    let address = if inner.is_empty() {
        None
    } else {
        Some(parse_address_utf8(inner, utf8)?)
    };
    let mut params = Vec::new();
    for word in after.split(' ').filter(|w| !w.is_empty()) {
        if params.len() == MAX_PARAMS {
            return Err(PathError::Syntax("too many parameters"));
        }
        let (k, v) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (word, None),
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(PathError::Syntax("malformed parameter"));
        }
        params.push((k.to_ascii_uppercase(), v));
    }
    Ok(PathArg { address, params })
}

/// Index of the `>` that closes a path, skipping quoted text and escapes.
fn closing_bracket(body: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Parse `[route:]local[@domain]` (the text inside the angle brackets), ASCII only.
pub fn parse_address(inner: &str) -> Result<Address, PathError> {
    parse_address_utf8(inner, false)
}

/// [`parse_address`], with non-ASCII characters allowed where `utf8` says.
pub fn parse_address_utf8(inner: &str, utf8: bool) -> Result<Address, PathError> {
    if !utf8 && !inner.is_ascii() {
        return Err(PathError::Syntax("8-bit characters in command"));
    }
    let mut text = inner;
    if text.starts_with('@') {
        // Source route: `@a,@b:mailbox`. RFC 5321 says to ignore it.
        let colon = text
            .find(':')
            .ok_or(PathError::Syntax("source route without colon"))?;
        text = &text[colon + 1..];
    }
    // Find the last `@` outside quotes.
    let mut quoted = false;
    let mut escaped = false;
    let mut at = None;
    let mut any_quote = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                quoted = !quoted;
                any_quote = true;
            }
            '@' if !quoted => at = Some(i),
            _ => {}
        }
    }
    if quoted || escaped {
        return Err(PathError::Syntax("unterminated quoted string"));
    }
    let (raw_local, domain) = match at {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    if raw_local.is_empty() {
        return Err(PathError::Syntax("empty local part"));
    }
    if raw_local.len() > MAX_LOCAL {
        return Err(PathError::TooLong("local part longer than 64 characters"));
    }
    let local = unquote(raw_local)?;
    let domain = match domain {
        None => None,
        Some(d) => Some(check_domain(d)?),
    };
    // (Non-ASCII text only gets here with `utf8`: checked above.)
    Ok(Address {
        local,
        domain,
        quoted: any_quote,
    })
}

/// Remove quotes and backslash escapes (inside quotes); outside quotes only atext and
/// dots are allowed.
fn unquote(raw: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut quoted = false;
    let mut escaped = false;
    for c in raw.chars() {
        match c {
            _ if escaped => {
                out.push(c);
                escaped = false;
            }
            '"' => quoted = !quoted,
            '\\' if quoted => escaped = true,
            c if quoted || c == '.' || is_atext(c) || is_utf8_atext(c) => out.push(c),
            _ => {
                return Err(PathError::BadLocal(
                    "character not allowed in an unquoted local part",
                ))
            }
        }
    }
    Ok(out)
}

/// A domain or an address literal, lower-cased, trailing dot removed.
fn check_domain(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_DOMAIN {
        return Err(PathError::TooLong("domain longer than 255 characters"));
    }
    let d = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if d.is_empty() {
        return Err(PathError::Syntax("empty domain"));
    }
    if let Some(lit) = d.strip_prefix('[') {
        let ok = lit.ends_with(']')
            && lit.len() > 1
            && lit[..lit.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":.-".contains(&b));
        return if ok {
            Ok(d)
        } else {
            Err(PathError::Syntax("malformed address literal"))
        };
    }
    // A label of letters, digits, `-`, `_`; with SMTPUTF8, U-labels (non-ASCII
    // characters, kept as given: DNS lookups turn them into A-labels).
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && l.chars().count() <= 63
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || is_utf8_atext(c))
    });
    if labels_ok {
        Ok(d)
    } else {
        Err(PathError::Syntax("malformed domain"))
    }
}

/// An envelope address as a path for `MAIL FROM:` / `RCPT TO:` (`<a@b>`, `<>` for the
/// null sender). `None` when it holds CR, LF, NUL, `<` or `>`: such an address cannot be
/// sent without changing the command (or adding one).
pub fn write_path(address: &[u8]) -> Option<String> {
    if address
        .iter()
        .any(|&b| b == b'\r' || b == b'\n' || b == 0 || b == b'<' || b == b'>')
    {
        return None;
    }
    Some(format!("<{}>", String::from_utf8_lossy(address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtputf8_allows_non_ascii_addresses_and_nothing_else_does() {
        let arg = "TO:<jörg@bücher.example> NOTIFY=NEVER".as_bytes();
        assert!(needs_utf8(arg));
        assert_eq!(
            parse_path_arg(arg, "TO"),
            Err(PathError::Syntax("8-bit characters in command"))
        );
        let p = parse_path_arg_utf8(arg, "TO", true).unwrap();
        let a = p.address.unwrap();
        assert_eq!(a.local, "jörg");
        assert_eq!(a.domain.as_deref(), Some("bücher.example"));
        assert_eq!(a.envelope(), "jörg@bücher.example");
        // Still no controls, no invalid UTF-8, no C1 controls.
        assert!(parse_path_arg_utf8(b"TO:<j\xc3\xb6rg@x>", "TO", true).is_ok());
        assert!(parse_path_arg_utf8(b"TO:<j\xffrg@x>", "TO", true).is_err());
        assert!(parse_path_arg_utf8("TO:<j\u{85}rg@x>".as_bytes(), "TO", true).is_err());
        assert!(parse_path_arg_utf8(b"TO:<j\x01rg@x>", "TO", true).is_err());
        // Unchanged for ASCII.
        assert_eq!(
            parse_path_arg_utf8(b"FROM:<a@b.test>", "FROM", true),
            parse_path_arg(b"FROM:<a@b.test>", "FROM")
        );
    }

    fn addr(local: &str, domain: Option<&str>, quoted: bool) -> Address {
        Address {
            local: local.into(),
            domain: domain.map(Into::into),
            quoted,
        }
    }

    #[test]
    fn paths() {
        let p = parse_path_arg(b"FROM:<A@Example.TEST.>", "FROM").unwrap();
        assert_eq!(p.address, Some(addr("A", Some("example.test"), false)));
        let p = parse_path_arg(b"from: <> SIZE=100 BODY=8BITMIME", "FROM").unwrap();
        assert_eq!(p.address, None);
        assert_eq!(
            p.params,
            vec![
                ("SIZE".into(), Some("100".into())),
                ("BODY".into(), Some("8BITMIME".into()))
            ]
        );
        let p = parse_path_arg(b"TO:a@b.test", "TO").unwrap();
        assert_eq!(p.address, Some(addr("a", Some("b.test"), false)));
        let p = parse_path_arg(b"TO:<Postmaster>", "TO").unwrap();
        assert_eq!(p.address, Some(addr("Postmaster", None, false)));
    }

    #[test]
    fn source_routes_are_dropped() {
        let p = parse_path_arg(b"TO:<@relay.test,@other.test:user@victim.test>", "TO").unwrap();
        assert_eq!(p.address, Some(addr("user", Some("victim.test"), false)));
    }

    #[test]
    fn the_domain_is_after_the_last_unquoted_at() {
        let p = parse_path_arg(br#"TO:<"user@victim.test"@example.test>"#, "TO").unwrap();
        assert_eq!(
            p.address,
            Some(addr("user@victim.test", Some("example.test"), true))
        );
        assert!(matches!(
            parse_path_arg(b"TO:<user@victim.test@example.test>", "TO"),
            Err(PathError::BadLocal(_))
        ));
        let p = parse_path_arg(br#"TO:<"a>b"@example.test>"#, "TO").unwrap();
        assert_eq!(p.address, Some(addr("a>b", Some("example.test"), true)));
        let p = parse_path_arg(b"TO:<user@[192.0.2.1]>", "TO").unwrap();
        assert_eq!(p.address, Some(addr("user", Some("[192.0.2.1]"), false)));
    }

    #[test]
    fn limits_are_errors_not_truncations() {
        let local = "a".repeat(65);
        let line = format!("TO:<{local}@x.test>");
        assert!(matches!(
            parse_path_arg(line.as_bytes(), "TO"),
            Err(PathError::TooLong(_))
        ));
        let ok = format!("TO:<{}@x.test>", "a".repeat(64));
        assert!(parse_path_arg(ok.as_bytes(), "TO").is_ok());
        let domain = format!("{}.test", "d".repeat(60)).repeat(5);
        let line = format!("TO:<a@{domain}>");
        assert!(matches!(
            parse_path_arg(line.as_bytes(), "TO"),
            Err(PathError::TooLong(_))
        ));
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            &b"TO <a@b>"[..],
            b"TO:<a@b",
            b"TO:<a@b>x",
            b"TO:<\"a@b>",
            b"TO:<@x.test>",
            b"TO:<a@>",
            b"TO:<a@b..c>",
            b"TO:<a@b\x01>",
            b"TO:<a@b\xc3\xa9>",
            b"TO:",
        ] {
            assert!(
                matches!(parse_path_arg(bad, "TO"), Err(PathError::Syntax(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn quoted_local_parts_are_unquoted_in_the_envelope() {
        let env = |line: &[u8]| {
            parse_path_arg(line, "TO")
                .unwrap()
                .address
                .unwrap()
                .envelope()
        };
        assert_eq!(
            env(br#"TO:<"john doe"@example.test>"#),
            r#""john doe"@example.test"#
        );
        assert_eq!(
            env(br#"TO:<"x@victim.test"@gw.test>"#),
            r#""x@victim.test"@gw.test"#
        );
        assert_eq!(env(br#"TO:<"a\"b\\c"@x.test>"#), r#""a\"b\\c"@x.test"#);
        assert_eq!(
            env(br#"TO:<"a\bc"@x.test>"#),
            "abc@x.test",
            "a dot-atom needs no quotes"
        );
        assert_eq!(env(br#"TO:<"john.doe"@x.test>"#), "john.doe@x.test");
        assert_eq!(env(br#"TO:<"">"#), r#""""#);
        assert_eq!(env(b"TO:<O'Brien+tag@X.test>"), "O'Brien+tag@x.test");
        assert_eq!(env(b"TO:<a%b!c@x.test>"), "a%b!c@x.test");
        assert_eq!(env(b"TO:<Postmaster>"), "Postmaster");
    }

    #[test]
    fn unquoted_local_parts_are_dot_atoms() {
        for bad in [
            &b"TO:<a@b@c.test>"[..],
            b"TO:<a b@c.test>",
            b"TO:<a\\@b@c.test>",
            b"TO:<a\\ b@c.test>",
            b"TO:<a(b)@c.test>",
            b"TO:<a,b@c.test>",
            b"TO:<a;b@c.test>",
            b"TO:<a[b]@c.test>",
            b"TO:<a\"b c\"\\d@c.test>",
        ] {
            assert!(
                matches!(parse_path_arg(bad, "TO"), Err(PathError::BadLocal(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse_path_arg(bad, "TO")
            );
        }
        for good in [
            &b"TO:<a.b-c_d+e=f@x.test>"[..],
            b"TO:<{a}|~`#$&'*/?^@x.test>",
        ] {
            assert!(parse_path_arg(good, "TO").is_ok());
        }
    }

    #[test]
    fn written_paths_refuse_line_breaks() {
        assert_eq!(write_path(b"a@b.test").unwrap(), "<a@b.test>");
        assert_eq!(write_path(b"").unwrap(), "<>");
        assert!(write_path(b"a\r\nRCPT TO:<x>").is_none());
        assert!(write_path(b"a\0b@c.test").is_none());
    }

    /// The path argument rebuilt from its parts: the writer's path, then the parameters.
    fn rebuilt(keyword: &str, p: &PathArg) -> Option<String> {
        let env = p
            .address
            .as_ref()
            .map(Address::envelope)
            .unwrap_or_default();
        let mut line = format!("{keyword}:{}", write_path(env.as_bytes())?);
        for (k, v) in &p.params {
            line.push(' ');
            line.push_str(k);
            if let Some(v) = v {
                line.push('=');
                line.push_str(v);
            }
        }
        Some(line)
    }

    /// Arbitrary bytes, or text close enough to a path argument to get parsed.
    fn arbitrary_or_path_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::strategy::Strategy;
        proptest::prop_oneof![
            proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            "(FROM|to|TO):[ ]?<?(@[a-z.]{1,6}:)?[a-zA-Z.\"@ \\\\%!<>]{0,20}(@[a-zA-Z0-9.\\[\\]-]{0,12})?>?( [A-Za-z-]{0,6}(=[!-~]{0,6})?){0,3} ?"
                .prop_map(String::into_bytes),
        ]
    }

    proptest::proptest! {
        /// Whatever parses comes back the same when written out again and re-read: the
        /// same mailbox, the same parameters, within the same limits.
        #[test]
        fn parsed_paths_round_trip(arg in arbitrary_or_path_like()) {
            for keyword in ["FROM", "TO"] {
                let Ok(p) = parse_path_arg(&arg, keyword) else { continue };
                proptest::prop_assert!(p.params.len() <= MAX_PARAMS);
                if let Some(a) = &p.address {
                    proptest::prop_assert!(a.local.len() <= MAX_LOCAL);
                    let back = parse_address(&a.envelope()).unwrap();
                    proptest::prop_assert_eq!((&back.local, &back.domain), (&a.local, &a.domain));
                }
                let Some(line) = rebuilt(keyword, &p) else {
                    // Only a quoted `<` or `>` keeps an address from being written.
                    let env = p.address.as_ref().map(Address::envelope).unwrap_or_default();
                    proptest::prop_assert!(env.contains(['<', '>']));
                    continue;
                };
                let again = parse_path_arg(line.as_bytes(), keyword).unwrap();
                proptest::prop_assert_eq!(&again.params, &p.params);
                proptest::prop_assert_eq!(
                    again.address.map(|a| (a.local, a.domain)),
                    p.address.clone().map(|a| (a.local, a.domain))
                );
            }
        }
    }
}
