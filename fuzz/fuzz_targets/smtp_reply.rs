//! SMTP replies as postern-remote reads them from a remote server: CRLF lines of at most
//! 4096 bytes, at most 100 lines, `NNN-` continuations, the same code on every line, no
//! bare CR or LF, no NUL. Replies are read one after another until the input ends or
//! one is malformed, through a buffered reader of a size the input picks.
//!
//! Checks: a reply has 1 to 100 lines and a three-digit code; its text (for reports and
//! bounces) is one `CODE-`/`CODE ` line per reply line with no control characters; the
//! replies do not depend on the reader's buffer size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_wire::smtp_reply::{self as reply, Reply, MAX_LINES};
use std::io::BufReader;

fn read_all(data: &[u8], buffer: usize) -> (Vec<Reply>, Option<String>) {
    let mut r = BufReader::with_capacity(buffer, data);
    let mut replies = Vec::new();
    loop {
        match reply::read(&mut r) {
            Ok(rep) => replies.push(rep),
            Err(e) => return (replies, reply::malformed(&e).map(str::to_string)),
        }
        if replies.len() > 64 {
            return (replies, None);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (replies, _) = read_all(data, 8192);
    for rep in &replies {
        assert!((1..=MAX_LINES).contains(&rep.lines.len()));
        assert!((100..=999).contains(&rep.code) || rep.code < 100);
        assert!(rep.class() <= 9);
        let text = rep.text();
        assert_eq!(text.lines().count(), rep.lines.len());
        for (line, raw) in text.lines().zip(&rep.lines) {
            assert!(line.starts_with(&format!("{:03}", rep.code)) || rep.code < 100);
            assert!(line.ends_with(raw.as_str()));
            assert!(
                !line.chars().any(|c| c.is_control()),
                "control character in {line:?}"
            );
        }
    }
    let cut = 1 + usize::from(data.first().copied().unwrap_or(0) % 16);
    let (again, _) = read_all(data, cut);
    assert_eq!(replies, again, "the replies depend on the buffer size");
});
