//! The SMTP rblsmtpd speaks to a blocked client, instead of running the server: a
//! greeting, 250 to HELO/EHLO/RSET/NOOP, the block reply (451 or 553 with the reason)
//! to MAIL, RCPT, DATA and everything else, 221 to QUIT. The reason never carries a
//! byte outside 32..126, so a TXT record cannot inject a line into the dialogue.

use std::io::{self, Read, Write};

/// The greeting and the name in every reply.
pub const GREETING: &[u8] = b"220 rblsmtpd.local\r\n";
const OK: &[u8] = b"250 rblsmtpd.local\r\n";
const BYE: &[u8] = b"221 rblsmtpd.local\r\n";
/// Longest reason text sent (classic: 200).
pub const MAX_REASON: usize = 200;
/// Longest command line kept; the rest of a longer line is read and ignored.
pub const MAX_LINE: usize = 1000;
/// Most commands answered before the connection is dropped.
pub const MAX_COMMANDS: usize = 100;

/// Make a reason safe for the wire: bytes outside 32..126 become `?`, at most
/// [`MAX_REASON`] bytes.
pub fn sanitise(text: &[u8]) -> String {
    text.iter()
        .take(MAX_REASON)
        .map(|&b| {
            if (32..=126).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// The block reply line: `451 reason` or `553 reason`, CRLF.
pub fn reply(code: u16, reason: &str) -> Vec<u8> {
    format!("{code} {}\r\n", sanitise(reason.as_bytes())).into_bytes()
}

/// The answer to one command line (without its line end), and whether to stop after it.
pub fn answer<'a>(line: &[u8], block: &'a [u8]) -> (&'a [u8], bool) {
    let verb_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let verb = line[..verb_end].to_ascii_lowercase();
    match verb.as_slice() {
        b"quit" => (BYE, true),
        b"helo" | b"ehlo" | b"rset" | b"noop" => (OK, false),
        _ => (block, false),
    }
}

/// Run the dialogue until QUIT, end of input, [`MAX_COMMANDS`], or `ready` says the
/// time is up (it is called before each read and returns false at the deadline).
pub fn session(
    mut input: impl Read,
    mut output: impl Write,
    block: &[u8],
    mut ready: impl FnMut() -> bool,
) -> io::Result<()> {
    output.write_all(GREETING)?;
    output.flush()?;
    let mut line = Vec::with_capacity(128);
    let mut buf = [0u8; 512];
    let mut commands = 0;
    loop {
        if !ready() {
            return Ok(());
        }
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            if b != b'\n' {
                if line.len() < MAX_LINE {
                    line.push(b);
                }
                continue;
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let (reply, stop) = answer(&line, block);
            output.write_all(reply)?;
            output.flush()?;
            line.clear();
            commands += 1;
            if stop || commands >= MAX_COMMANDS {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talk(input: &[u8]) -> String {
        let mut out = Vec::new();
        session(input, &mut out, &reply(451, "listed"), || true).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_whole_dialogue() {
        let out = talk(
            b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nnoop\nDATA\r\nQuIt\r\nHELO after\r\n",
        );
        assert_eq!(
            out,
            "220 rblsmtpd.local\r\n250 rblsmtpd.local\r\n451 listed\r\n451 listed\r\n\
             250 rblsmtpd.local\r\n451 listed\r\n221 rblsmtpd.local\r\n"
        );
    }

    #[test]
    fn byte_at_a_time_is_the_same() {
        let input = b"HELO x\r\nRCPT TO:<c@d>\r\nQUIT\r\n";
        let whole = talk(input);
        let mut out = Vec::new();
        let one_byte = OneByte(input);
        session(one_byte, &mut out, &reply(451, "listed"), || true).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), whole);
    }

    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.split_first() {
                None => Ok(0),
                Some((&b, rest)) => {
                    buf[0] = b;
                    self.0 = rest;
                    Ok(1)
                }
            }
        }
    }

    #[test]
    fn reasons_are_sanitised_and_cut() {
        assert_eq!(reply(451, "a\r\n250 ok\x00\u{e9}"), b"451 a??250 ok???\r\n");
        let long = "x".repeat(500);
        assert_eq!(reply(553, &long).len(), 4 + 200 + 2);
    }

    #[test]
    fn the_deadline_ends_the_dialogue() {
        let mut out = Vec::new();
        session(&b"HELO x\r\n"[..], &mut out, b"451 x\r\n", || false).unwrap();
        assert_eq!(out, GREETING);
    }

    #[test]
    fn too_many_commands_end_it() {
        let input = "NOOP\r\n".repeat(MAX_COMMANDS + 10);
        let out = talk(input.as_bytes());
        assert_eq!(out.matches("250 ").count(), MAX_COMMANDS);
    }
}
