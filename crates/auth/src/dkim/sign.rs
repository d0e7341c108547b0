//! The `DKIM-Signature:` postern-remote puts on outgoing mail (docs/postern-remote.md
//! "DKIM signing").
//!
//! Which domain signs: the `From:` address's domain when it has a signing key, else the
//! envelope sender's. That covers users' mail, postern's bounces and alerts alike, in
//! the one place every message leaves through. The signature is made over the message
//! exactly as postern-remote sends it ([`wire_form`]: every line end CRLF, a final one
//! added), relaxed/relaxed, over the headers of [`SIGNED_HEADERS`] present; `From:` is
//! signed once more than it occurs, so no `From:` can be added after signing.

use super::keys::{self, Key, KeyType};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use postern_common::control::Control;

/// The headers signed when present (RFC 6376 5.4.1's list, less the trace headers).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The message as postern-remote sends it, less the dot-stuffing SMTP undoes: every line
/// end (LF, CRLF or a lone CR) CRLF, a missing final one added.
pub fn wire_form(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 40 + 2);
    let mut i = 0;
    while i < msg.len() {
        match msg[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if msg.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The domain of an address (`user@Domain` → `domain`), if it has one.
fn domain_of(addr: &str) -> Option<String> {
    let (_, d) = addr.rsplit_once('@')?;
    let d = d
        .trim()
        .trim_end_matches('>')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

/// The domain and selector that sign `message` sent by `sender`: the `From:` domain's
/// signing selector, else the envelope sender's; none when neither has one.
pub fn signer_for(
    control: &Control,
    sender: &[u8],
    message: &[u8],
) -> Result<Option<(String, String)>, String> {
    let from = mail_auth::AuthenticatedMessage::parse(message).and_then(|m| domain_of(m.from()));
    let envelope = domain_of(&String::from_utf8_lossy(sender));
    for domain in [from, envelope].into_iter().flatten() {
        if !keys::valid_domain(&domain) {
            continue;
        }
        if let Some(selector) = keys::active(control, &domain)? {
            return Ok(Some((domain, selector)));
        }
    }
    Ok(None)
}

/// The `DKIM-Signature:` header (folded, CRLF-terminated) of `key` over `wire` (a
/// message in [`wire_form`]).
pub fn signature(key: &Key, wire: &[u8]) -> Result<String, String> {
    let err = |e: mail_auth::Error| format!("unable to sign for {}: {e}", key.domain);
    // From is listed twice: the one present is signed, and an added one breaks the
    // signature (RFC 6376 8.15).
    let mut headers: Vec<&str> = SIGNED_HEADERS.to_vec();
    headers.push("From");
    let sig = match key.kind {
        KeyType::Rsa => {
            DkimSigner::from_key(RsaKey::<Sha256>::from_pkcs8_der(&key.pkcs8).map_err(err)?)
                .domain(&key.domain)
                .selector(&key.selector)
                .headers(headers)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(wire)
        }
        KeyType::Ed25519 => DkimSigner::from_key(
            Ed25519Key::from_pkcs8_maybe_unchecked_der(&key.pkcs8).map_err(err)?,
        )
        .domain(&key.domain)
        .selector(&key.selector)
        .headers(headers)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(wire),
    }
    .map_err(err)?;
    Ok(sig.to_header())
}

/// `message` signed as it will go out: the signature header then the message in
/// [`wire_form`]; `None` when no hosted domain of the message has a signing key. An
/// error (a key unreadable, open to others, broken) is the caller's temporary failure:
/// the message waits for the fix rather than leave unsigned.
pub fn sign(control: &Control, sender: &[u8], message: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Some((domain, selector)) = signer_for(control, sender, message)? else {
        return Ok(None);
    };
    let key = keys::load(control, &domain, &selector)?;
    let wire = wire_form(message);
    let header = signature(&key, &wire)?;
    let mut out = Vec::with_capacity(header.len() + wire.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&wire);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_has_crlf_line_ends() {
        assert_eq!(wire_form(b"a\nb\r\nc\rd"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(wire_form(b"a\r\n"), b"a\r\n");
        assert_eq!(wire_form(b""), b"");
        assert_eq!(wire_form(b"a\r"), b"a\r\n");
    }

    #[test]
    fn domains_of_addresses() {
        assert_eq!(
            domain_of("Alice@Example.TEST").as_deref(),
            Some("example.test")
        );
        assert_eq!(domain_of("alice"), None);
        assert_eq!(domain_of("a@"), None);
    }

    fn instance() -> (tempfile::TempDir, Control) {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::at(dir.path());
        for (d, s, kind) in [
            ("example.test", "s1", KeyType::Rsa),
            ("other.test", "e1", KeyType::Ed25519),
        ] {
            let k = Key::generate(d, s, kind).unwrap();
            keys::save(&control, &k, None).unwrap();
            keys::set_active(&control, d, s, None).unwrap();
        }
        (dir, control)
    }

    #[test]
    fn the_from_domain_signs_else_the_envelope_senders() {
        let (_d, control) = instance();
        let msg = b"From: Alice <alice@Example.test>\nSubject: hi\n\nbody\n";
        assert_eq!(
            signer_for(&control, b"x@other.test", msg).unwrap(),
            Some(("example.test".into(), "s1".into()))
        );
        let msg = b"From: someone@elsewhere.test\n\nbody\n";
        assert_eq!(
            signer_for(&control, b"bounce@other.test", msg).unwrap(),
            Some(("other.test".into(), "e1".into()))
        );
        assert_eq!(signer_for(&control, b"", msg).unwrap(), None);
        assert_eq!(sign(&control, b"", msg).unwrap(), None);
    }

    #[test]
    fn a_signed_message_starts_with_its_signature() {
        let (_d, control) = instance();
        for from in ["alice@example.test", "bob@other.test"] {
            let msg = format!("From: {from}\nTo: x@y.test\nSubject: hi\n\n.dot\nbody");
            let out = sign(&control, b"", msg.as_bytes()).unwrap().unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("DKIM-Signature: v=1; "), "{text}");
            assert!(text.ends_with("\r\n.dot\r\nbody\r\n"), "{text}");
        }
    }
}
