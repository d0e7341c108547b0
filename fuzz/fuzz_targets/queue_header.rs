//! A message header as postern-inject reads it from a local sender (`-t`): fields with
//! continuation lines and the obsolete `Name :` syntax, bounded size and field count, the
//! mbox `From ` line, and the addresses of To/Cc/Bcc (RFC 5322 lists, groups, comments,
//! bare local parts); plus the CRLF-to-LF filter the queue applies to the body.
//!
//! Checks: field names have no space or colon; the CRLF filter drops exactly the CR of
//! each CRLF and gives the same output however the input is cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_queue::header::{self, CrlfToLf};

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    if let Ok(h) = header::read(&mut input) {
        for f in &h.fields {
            assert!(!f.name.is_empty());
            assert!(!f.name.contains([' ', ':', '\t']), "{:?}", f.name);
            assert!(f.raw.ends_with(b"\n"));
            let _ = f.value();
        }
        if let Ok(list) = header::addresses(&h, &["To", "Cc", "Bcc"]) {
            assert!(list.iter().all(|a| !a.is_empty()));
        }
        let _ = h.has("bcc");
    }

    let mut whole = Vec::new();
    let mut f = CrlfToLf::default();
    f.feed(data, &mut whole);
    f.finish(&mut whole);
    let cut = 1 + data.first().copied().unwrap_or(0) as usize % 7;
    let mut pieces = Vec::new();
    let mut f = CrlfToLf::default();
    for c in data.chunks(cut) {
        f.feed(c, &mut pieces);
    }
    f.finish(&mut pieces);
    assert_eq!(whole, pieces, "CRLF filter depends on the cuts");
    let crlf = data.windows(2).filter(|w| w == b"\r\n").count();
    assert_eq!(whole.len(), data.len() - crlf, "one byte less per CRLF");
});
