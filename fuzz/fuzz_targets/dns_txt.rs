//! DNS TXT answers as postern-rblsmtpd gets them from a blocklist: the DNS message
//! decoded by hickory (the resolver postern uses), the TXT character-strings joined and
//! bounded (`postern_dns::txt_text`), made safe as the block reason, and the SMTP dialogue
//! rblsmtpd then holds with the blocked client.
//!
//! Input: a DNS response message, then optionally a `==` line and what the client sends.
//!
//! Checks: the reason is at most 200 printable bytes; the block reply is one CRLF line;
//! the dialogue's output is whole CRLF lines, each one of the fixed replies or the block
//! reply, whatever the TXT record holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_dns::proto::op::Message;
use postern_dns::proto::rr::RData;
use postern_dns::{txt_text, MAX_TXT};
use postern_ucspi::rblsmtpd::dialogue::{self, GREETING, MAX_REASON};

fuzz_target!(|data: &[u8]| {
    let parts = postern_fuzz::parts(data);
    let (wire, client) = (
        parts[0],
        parts
            .get(1)
            .copied()
            .unwrap_or(b"HELO x\r\nMAIL FROM:<a@b>\r\nQUIT\r\n"),
    );

    let text = match Message::from_vec(wire) {
        Ok(msg) => {
            let strings: Vec<&[u8]> = msg
                .answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::TXT(txt) => Some(txt),
                    _ => None,
                })
                .flat_map(|txt| txt.iter().map(|s| &s[..]))
                .collect();
            let total: usize = strings.iter().map(|s| s.len()).sum();
            let text = txt_text(strings);
            assert_eq!(text.len(), total.min(MAX_TXT));
            text
        }
        // Not a DNS message: take the bytes as the TXT text itself.
        Err(_) => txt_text([wire]),
    };

    let reason = dialogue::sanitise(&text);
    assert!(reason.len() <= MAX_REASON);
    assert!(reason.bytes().all(|b| (32..=126).contains(&b)));
    for code in [451, 553] {
        let reply = dialogue::reply(code, &reason);
        assert!(reply.ends_with(b"\r\n"));
        assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
    }
    let block = dialogue::reply(451, &reason);
    let mut out = Vec::new();
    dialogue::session(client, &mut out, &block, || true).expect("in-memory dialogue");
    assert!(out.starts_with(GREETING));
    assert!(out.is_empty() || out.ends_with(b"\r\n"));
    let lines = out.split_inclusive(|&b| b == b'\n');
    for line in lines {
        assert!(
            line == &block[..]
                || line == GREETING
                || line == b"250 rblsmtpd.local\r\n"
                || line == b"221 rblsmtpd.local\r\n",
            "unexpected line {line:?}"
        );
    }
});
