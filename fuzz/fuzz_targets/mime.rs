//! A message as postern-scan takes it apart: the MIME walk (multiparts, nested
//! `message/rfc822`, transfer encodings, the header-section bounds), file names from
//! RFC 2047 encoded words and RFC 2231 parameters, uuencoded files in text parts, zip
//! archives in attachments; then the shipped filter.rules applied to the analysis.
//!
//! Checks: no panic; the part count and nesting stay within the documented bounds; an
//! attachment name is a last path component.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_filter::scan::{mime, policy, rules};
use postern_wire::qmail_queue::Envelope;
use std::sync::OnceLock;

fn shipped_rules() -> &'static [rules::Rule] {
    static RULES: OnceLock<Vec<rules::Rule>> = OnceLock::new();
    RULES.get_or_init(|| rules::parse(rules::DEFAULT_RULES).expect("the shipped rules parse"))
}

fuzz_target!(|message: &[u8]| {
    let a = mime::analyse(message);
    assert!(a.parts <= mime::MAX_PARTS + 1, "{} parts", a.parts);
    for att in &a.attachments {
        if att.source == "mime" {
            assert!(
                !att.name.contains('/') && !att.name.contains('\\'),
                "attachment name keeps a path: {:?}",
                att.name
            );
        }
    }
    for (name, _) in &a.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
    }
    let envelope = Envelope::new("sender@example.test", &["rcpt@example.test"]);
    let cx = policy::Context {
        envelope: &envelope,
        client_ip: "192.0.2.7",
        allow_partial: false,
    };
    let _ = policy::check(&a, shipped_rules(), &cx);

    // The header-value decoders on their own, on the same bytes.
    let _ = mime::field_value(message);
    let _ = mime::field_name(&message[..message.len().min(80)]);
    let text = String::from_utf8_lossy(message);
    let decoded = mime::decode_words(&text);
    // Decoding never makes a value longer than a few bytes per input byte.
    assert!(decoded.len() <= 4 * text.len() + 16);
});
