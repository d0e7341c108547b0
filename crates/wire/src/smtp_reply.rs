//! Reading SMTP replies, bounded and strict: each line at most [`MAX_LINE`] bytes, at
//! most [`MAX_LINES`] lines per reply, every line ended by CRLF with no CR, LF or NUL
//! inside (RFC 5321 §2.3.8: a bare LF or CR, or a NUL, is never a valid reply).
//! `250-first` / `250 last` continuation rules; a line whose code differs from the
//! first, or that is malformed, is a protocol error ([`io::ErrorKind::InvalidData`],
//! its text naming the fault, e.g. `bare LF`): the session ends there — nothing is sent
//! on the strength of a malformed reply.
//!
//! The one reader for every SMTP client in postern: postern-remote, postern-verify and
//! `posternctl audit`'s relay probe. Callers keep their own I/O (sockets, TLS,
//! timeouts) and hand this a [`BufRead`].

use std::io::{self, BufRead};

pub const MAX_LINE: usize = 4096;
pub const MAX_LINES: usize = 100;

/// One SMTP reply: its code and its text lines (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply as the server sent it, lines joined with `\n` (for reports).
    pub fn text(&self) -> String {
        let n = self.lines.len();
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{}{}{}", self.code, if i + 1 < n { '-' } else { ' ' }, l))
            .collect::<Vec<_>>()
            .join("\n")
    }
    pub fn class(&self) -> u16 {
        self.code / 100
    }
    /// The code and the first line's text (`250 ok`), for one-line reports.
    pub fn first(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }
}

/// What is wrong with a malformed reply (the inner error of [`read`]'s `InvalidData`
/// errors, so that they are told apart from TLS errors of the same kind).
#[derive(Debug)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Malformed {}

fn proto(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Malformed(why))
}

/// What is wrong with the reply, when an error from [`read`] is a malformed reply
/// (rather than a lost connection or a TLS error).
pub fn malformed(e: &io::Error) -> Option<&'static str> {
    e.get_ref()?.downcast_ref::<Malformed>().map(|m| m.0)
}

/// Read one line (without CRLF), at most MAX_LINE bytes. The line must end in CRLF and
/// have no other CR, no LF and no NUL.
fn read_line(r: &mut dyn BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if line.len() > MAX_LINE + 2 {
            return Err(proto("reply line too long"));
        }
        if done {
            line.pop();
            if line.pop() != Some(b'\r') {
                return Err(proto("bare LF"));
            }
            if line.contains(&b'\r') {
                return Err(proto("bare CR"));
            }
            if line.contains(&0) {
                return Err(proto("NUL"));
            }
            return Ok(line);
        }
    }
}

/// Read one whole reply.
pub fn read(r: &mut dyn BufRead) -> io::Result<Reply> {
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.len() < 3
            || !line[..3].iter().all(u8::is_ascii_digit)
            || (line.len() > 3 && line[3] != b' ' && line[3] != b'-')
        {
            return Err(proto("malformed reply line"));
        }
        let c: u16 = std::str::from_utf8(&line[..3])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| proto("bad code"))?;
        if *code.get_or_insert(c) != c {
            return Err(proto("reply code changed inside a reply"));
        }
        let text = if line.len() > 4 {
            postern_common::logline::printable(&line[4..])
        } else {
            String::new()
        };
        lines.push(text);
        if lines.len() > MAX_LINES {
            return Err(proto("too many reply lines"));
        }
        if line.len() == 3 || line[3] == b' ' {
            return Ok(Reply { code: c, lines });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds one byte per read, to show the parser does not depend on chunking.
    struct Trickle<'a>(&'a [u8]);
    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    #[test]
    fn multiline_whole_and_byte_at_a_time() {
        let input = b"250-mx.test hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n220 next\r\n";
        let mut whole: &[u8] = input;
        let a = read(&mut whole).unwrap();
        let mut trickle = io::BufReader::with_capacity(1, Trickle(input));
        let b = read(&mut trickle).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.code, 250);
        assert_eq!(a.lines, vec!["mx.test hello", "PIPELINING", "SIZE 1000"]);
        assert_eq!(read(&mut whole).unwrap().code, 220);
        assert_eq!(a.text(), "250-mx.test hello\n250-PIPELINING\n250 SIZE 1000");
    }

    #[test]
    fn limits_and_garbage() {
        let long = format!("250 {}\r\n", "x".repeat(MAX_LINE + 10));
        assert!(read(&mut long.as_bytes()).is_err());
        let many = "250-x\r\n".repeat(MAX_LINES + 1) + "250 y\r\n";
        assert!(read(&mut many.as_bytes()).is_err());
        for bad in ["hello\r\n", "25 x\r\n", "250-a\r\n251 b\r\n", "250"] {
            assert!(read(&mut bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(read(&mut &b"354\r\n"[..]).unwrap().code, 354);
    }

    fn fault(input: &[u8]) -> String {
        let e = read(&mut &input[..]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{input:?}: {e}");
        assert_eq!(malformed(&e), Some(e.to_string().as_str()));
        e.to_string()
    }

    /// A reply line ends in CRLF and has no CR, LF or NUL inside: anything else is a
    /// malformed reply (a hostile or broken server), named by its fault.
    #[test]
    fn strict_line_ends_and_no_nul() {
        assert!(fault(b"220 mx ESMTP\n").contains("bare LF"));
        assert!(fault(b"220-mx\n220 ESMTP\r\n").contains("bare LF"));
        assert!(fault(b"250-a\r\n250 b\n").contains("bare LF"));
        assert!(fault(b"220 mx\rESMTP\r\n").contains("bare CR"));
        assert!(fault(b"220 mx ESMTP\r\r\n").contains("bare CR"));
        assert!(fault(b"220 mx\0ESMTP\r\n").contains("NUL"));
        assert!(fault(b"250-a\0\r\n250 b\r\n").contains("NUL"));
        let mut trickle = io::BufReader::with_capacity(1, Trickle(b"220 mx\n"));
        assert_eq!(malformed(&read(&mut trickle).unwrap_err()), Some("bare LF"));
        let closed = read(&mut &b"220 mx"[..]).unwrap_err();
        assert_eq!(
            malformed(&closed),
            None,
            "a lost connection is not malformed"
        );
        let tls = io::Error::new(io::ErrorKind::InvalidData, "corrupt TLS record");
        assert_eq!(malformed(&tls), None);
        let mut trickle = io::BufReader::with_capacity(1, Trickle(b"220 mx ESMTP\r\n"));
        assert_eq!(read(&mut trickle).unwrap().lines, vec!["mx ESMTP"]);
    }

    /// The reply as a server would send it: CRLF lines.
    fn wire(r: &Reply) -> Vec<u8> {
        let n = r.lines.len();
        let mut out = Vec::new();
        for (i, l) in r.lines.iter().enumerate() {
            let sep = if i + 1 < n { '-' } else { ' ' };
            out.extend_from_slice(format!("{:03}{sep}{l}\r\n", r.code).as_bytes());
        }
        out
    }

    /// Arbitrary bytes, or bytes close enough to replies to get past the first check.
    fn arbitrary_or_reply_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::strategy::Strategy;
        proptest::prop_oneof![
            proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            "((25[01]|4[0-9][0-9])[- ]?[ -~\\r\\n\\x00\\x80]{0,12}\\r?\\n?){1,6}"
                .prop_map(String::into_bytes),
        ]
    }

    proptest::proptest! {
        /// Over arbitrary bytes: whatever is read is bounded and printable, does not
        /// depend on how the input is chunked, and reads back as the same code and lines
        /// when sent again (its text escaped once more: `\` is shown as `\\`).
        #[test]
        fn arbitrary_bytes_round_trip(input in arbitrary_or_reply_like(), cut in 1usize..16) {
            let mut whole: &[u8] = &input;
            let mut trickle = io::BufReader::with_capacity(cut, &input[..]);
            loop {
                let a = read(&mut whole);
                let b = read(&mut trickle);
                proptest::prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                let Ok(r) = a else { break };
                proptest::prop_assert!((1..=MAX_LINES).contains(&r.lines.len()));
                proptest::prop_assert!(r.code <= 999);
                proptest::prop_assert!(!r.text().chars().any(|c| c.is_control() && c != '\n'));
                let again = read(&mut &wire(&r)[..]).unwrap();
                proptest::prop_assert_eq!(again.code, r.code);
                let escaped: Vec<String> = r.lines.iter().map(postern_common::logline::printable).collect();
                proptest::prop_assert_eq!(again.lines, escaped);
            }
        }

        /// Valid replies built from parts read back as those parts.
        #[test]
        fn replies_written_read_back(code in 200u16..600, lines in proptest::collection::vec("[ -\\[\\]-~]{0,80}", 1..8)) {
            let r = Reply { code, lines };
            proptest::prop_assert_eq!(read(&mut &wire(&r)[..]).unwrap(), r);
        }
    }
}
