//! Zip archives as postern-scan reads the names in them: the central directory, local
//! headers nobody points at, ZIP64 fields, nested archives (inflated within a budget) —
//! once on the bytes as they are, and once as a base64 attachment of a message, the way
//! postern-scan meets them.
//!
//! Checks: no panic, no unbounded work; an archive named in the message is listed under
//! `zip:NAME`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_common::sasl::encode_base64;
use postern_filter::scan::{mime, zipnames};

fuzz_target!(|zip: &[u8]| {
    let _ = zipnames::names(zip);

    let mut message = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: zip\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\n\
Content-Type: application/zip; name=\"files.zip\"\r\n\
Content-Disposition: attachment; filename=\"files.zip\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\n"
        .to_vec();
    let b64 = encode_base64(zip);
    for line in b64.as_bytes().chunks(76) {
        message.extend_from_slice(line);
        message.extend_from_slice(b"\r\n");
    }
    message.extend_from_slice(b"--b1--\r\n");
    let a = mime::analyse(&message);
    assert!(
        a.attachments.iter().any(|att| att.name == "files.zip"),
        "the archive itself is an attachment"
    );
    for att in &a.attachments {
        if let Some(archive) = att.source.strip_prefix("zip:") {
            assert!(archive.starts_with("files.zip"), "{:?}", att.source);
        }
    }
});
