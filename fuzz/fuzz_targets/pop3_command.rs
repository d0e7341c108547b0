//! POP3 input as postern-popup and postern-pop3d read it: the bounded line reader (in
//! both its block and its one-byte mode), the command parser, message numbers and TOP
//! counts, and AUTH PLAIN responses (SASL, RFC 4616).
//!
//! Checks: the two reading modes cut the input into the same lines; a parsed command's
//! keyword is upper-case alphanumeric and its argument has no NUL; a message number is
//! within the mailbox.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_pop3::command;
use postern_pop3::lineio::{Input, LineReader, Source, MAX_COMMAND_LINE};
use postern_common::sasl;
use std::time::Duration;

/// Messages in the pretend mailbox.
const COUNT: usize = 5;

fn transcript<S: Source>(mut reader: LineReader<S>) -> Vec<Input> {
    let mut out = Vec::new();
    loop {
        let got = reader
            .read_line(MAX_COMMAND_LINE, Duration::from_secs(1))
            .expect("reading a slice never fails");
        let end = matches!(got, Input::Eof | Input::Timeout);
        out.push(got);
        if end {
            return out;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let lines = transcript(LineReader::buffered(data));
    let one = transcript(LineReader::one_byte(data));
    assert_eq!(lines, one, "block and one-byte reads cut lines differently");
    assert_eq!(lines.last(), Some(&Input::Eof));

    for input in &lines {
        let Input::Line(line) = input else { continue };
        assert!(line.len() < MAX_COMMAND_LINE);
        assert!(!line.contains(&b'\n'));
        let Ok(cmd) = command::parse(line) else {
            continue;
        };
        assert!(!cmd.keyword.is_empty() && cmd.keyword.len() <= command::MAX_KEYWORD);
        assert!(cmd
            .keyword
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert!(!cmd.arg.contains(&0));
        assert!(!cmd.arg.starts_with(b" "));
        let words = cmd.words();
        for w in &words {
            assert!(!w.is_empty() && !w.contains(&b' '));
            if let Some(n) = command::number(w) {
                assert_eq!(n.to_string().parse::<u64>().ok(), Some(n));
            }
        }
        if let Ok(i) = command::message_number(words.first().copied(), COUNT) {
            assert!(i < COUNT);
        }
        match cmd.keyword.as_str() {
            "AUTH" => {
                if let Some(resp) = words.get(1) {
                    if let Ok((user, pass)) = sasl::decode_plain(resp) {
                        assert!(!user.is_empty() && !pass.is_empty());
                        assert!(user.len() <= sasl::MAX_PLAIN && pass.len() <= sasl::MAX_PLAIN);
                    }
                }
            }
            "TOP" => {
                let _ = words.get(1).and_then(|w| command::number(w));
            }
            _ => {}
        }
        // A continuation line of AUTH PLAIN is the whole line.
        let _ = sasl::decode_plain(line);
    }
});
