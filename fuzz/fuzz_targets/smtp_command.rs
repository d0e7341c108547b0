//! SMTP command lines as postern-smtpd parses them: the verb table, `MAIL FROM:` and
//! `RCPT TO:` paths with their ESMTP parameters, bare addresses, the AUTH mechanism
//! names, SASL base64 and PLAIN responses, and the DATA line classifier.
//!
//! Round trips: a parsed address put back in canonical form (`Address::envelope`)
//! parses to the same mailbox; a parsed path argument rebuilt from its parts parses to
//! the same thing; base64 encode then decode is the identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::sasl;
use postern_smtpd::command::{self, Verb};
use postern_smtpd::{auth, data};
use postern_wire::smtp_path::{self, Address};

/// The parsed address and the one read back from its envelope form agree.
fn same_mailbox(a: &Address, b: &Address) {
    assert_eq!(a.local, b.local, "local part changed: {a:?} -> {b:?}");
    assert_eq!(a.domain, b.domain, "domain changed: {a:?} -> {b:?}");
}

fuzz_target!(|line: &[u8]| {
    let (verb, arg) = command::split(line);
    assert!(!arg.ends_with(b" "), "argument keeps a trailing space");

    for keyword in ["FROM", "TO"] {
        let Ok(path) = smtp_path::parse_path_arg(arg, keyword) else {
            continue;
        };
        assert!(path.params.len() <= smtp_path::MAX_PARAMS);
        let mut again = format!("{keyword}:<");
        if let Some(a) = &path.address {
            let env = a.envelope();
            let back = smtp_path::parse_address(&env)
                .unwrap_or_else(|e| panic!("envelope {env:?} of {a:?} does not parse: {e:?}"));
            same_mailbox(a, &back);
            again.push_str(&env);
        }
        again.push('>');
        for (k, v) in &path.params {
            again.push(' ');
            again.push_str(k);
            if let Some(v) = v {
                again.push('=');
                again.push_str(v);
            }
        }
        let reparsed = smtp_path::parse_path_arg(again.as_bytes(), keyword)
            .unwrap_or_else(|e| panic!("{again:?} (from {arg:?}) does not parse: {e:?}"));
        assert_eq!(reparsed.params, path.params);
        match (&reparsed.address, &path.address) {
            (Some(a), Some(b)) => same_mailbox(a, b),
            (None, None) => {}
            other => panic!("address changed: {other:?}"),
        }
    }

    if let Ok(text) = std::str::from_utf8(arg) {
        if let Ok(a) = smtp_path::parse_address(text) {
            assert!(a.local.len() <= smtp_path::MAX_LOCAL);
            if let Some(d) = &a.domain {
                assert_eq!(*d, d.to_ascii_lowercase());
                assert!(!d.ends_with('.'));
            }
            let back = smtp_path::parse_address(&a.envelope()).expect("envelope parses");
            same_mailbox(&a, &back);
        }
    }

    if verb == Some(Verb::Auth) || verb.is_none() {
        let mut words = arg.split(|&b| b == b' ');
        let _ = words.next().and_then(auth::Mechanism::parse);
        if let Some(initial) = words.next() {
            if let Some(msg) = auth::decode(initial) {
                if let Some((user, _pass)) = auth::parse_plain(&msg) {
                    let _ = auth::acceptable_login(&user);
                }
            }
        }
    }

    // SASL base64: whatever decodes re-encodes to something that decodes the same.
    if let Some(raw) = sasl::decode_base64(arg) {
        let enc = sasl::encode_base64(&raw);
        assert_eq!(
            sasl::decode_base64(enc.as_bytes()).as_deref(),
            Some(&raw[..])
        );
        assert_eq!(enc.len(), arg.len());
    }
    if let Ok((user, pass)) = sasl::decode_plain(arg) {
        assert!(!user.is_empty() && !pass.is_empty());
    }
    let enc = sasl::encode_base64(line);
    assert_eq!(sasl::decode_base64(enc.as_bytes()).as_deref(), Some(line));

    // DATA: the same bytes as message lines.
    let mut d = data::Data::new(4096);
    for l in line.split(|&b| b == b'\n') {
        match d.line(l.strip_suffix(b"\r").unwrap_or(l)) {
            data::Line::End => break,
            data::Line::Text(t) => assert!(t.len() <= l.len()),
        }
    }
    let _ = d.doomed();
});
