//! What postern reads out of a Maildir: the file names (unique part, UIDL, Dovecot's
//! `,W=` size, the flags a POP3 reader adds on rename), a stored message as postern-pop3d
//! sends it (CRLF line ends, dot-stuffing, TOP's cut) with the size LIST announces, and
//! the Maildir++ `maildirsize` quota file postern-local reads and rewrites.
//!
//! Input: the same bytes as a message, as a file name (the first line) and as a
//! `maildirsize`.
//!
//! Checks: the octets sent are the octets LIST counted, plus one per stuffed dot; the
//! message end (`CRLF . CRLF`) appears only at the end; the conversion does not depend
//! on the reads; TOP sends a prefix of RETR; a UIDL is 1-70 printable characters; the
//! quota line renders to text that parses to the same quota.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_pop3::maildir::{
    cur_name, name_w_size, sent_size, uidl_of, unique_part, Stuffer, MAX_UID,
};
use postern_mailstore::maildir::{parse_size_file, Quota, Usage};

fn convert(mut s: Stuffer, message: &[u8], cut: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in postern_fuzz::chunks(message, cut) {
        if !s.feed(piece, &mut out) {
            break;
        }
    }
    s.finish(&mut out);
    out
}

fuzz_target!(|data: &[u8]| {
    // The message, as RETR sends it.
    let sent = convert(Stuffer::whole(), data, 0);
    let dots =
        usize::from(data.first() == Some(&b'.')) + data.windows(2).filter(|w| w == b"\n.").count();
    let counted = sent_size(data).expect("reading a slice never fails");
    assert_eq!(
        sent.len() as u64,
        counted + dots as u64 + 3,
        "LIST's size and RETR's octets disagree"
    );
    let mut wire = b"\r\n".to_vec();
    wire.extend_from_slice(&sent);
    let ends = wire.windows(5).filter(|w| w == b"\r\n.\r\n").count();
    assert_eq!(ends, 1, "the message ends before its end");
    assert!(wire.ends_with(b"\r\n.\r\n"));
    let cut = 1 + usize::from(data.last().copied().unwrap_or(0) % 5);
    assert_eq!(
        convert(Stuffer::whole(), data, cut),
        sent,
        "RETR depends on the reads"
    );
    let k = u64::from(data.first().copied().unwrap_or(0) % 8);
    let top = convert(Stuffer::top(k), data, cut);
    assert!(top.ends_with(b".\r\n"));
    let top_body = &top[..top.len() - 3];
    assert!(sent.starts_with(top_body), "TOP is not a prefix of RETR");

    // The first line as a file name in new/ or cur/.
    let name = data.split(|&b| b == b'\n').next().unwrap_or(b"");
    let unique = unique_part(name);
    assert!(!unique.contains(&b':'));
    let uidl = uidl_of(unique);
    assert!(!uidl.is_empty() && uidl.len() <= MAX_UID);
    assert!(uidl.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    let _ = name_w_size(name);
    for seen in [false, true] {
        let renamed = cur_name(name, seen);
        assert_eq!(
            unique_part(&renamed),
            unique,
            "the rename changes the unique name"
        );
        assert_eq!(
            cur_name(&renamed, seen),
            renamed,
            "renaming twice changes it again"
        );
    }

    // maildirsize.
    let text = String::from_utf8_lossy(data);
    if let Some(first) = text.lines().next() {
        if let Some(q) = Quota::parse(first) {
            assert_eq!(Quota::parse(&q.render()), Some(q));
            let _ = q.exceeded_by(
                Usage {
                    bytes: i64::MAX,
                    count: i64::MIN,
                },
                u64::MAX,
            );
        }
    }
    if let Some(sf) = parse_size_file(&text) {
        let _ = sf.quota.exceeded_by(sf.usage, counted);
    }
});
