//! The bounded CRLF line reader every SMTP byte goes through (DESIGN §1.7).
//!
//! A line ends only at CR LF. A bare LF, a bare CR or a NUL anywhere is a framing error
//! the caller answers with 451 and a closed connection: a server and a filter that split
//! lines differently are how messages get smuggled. A line longer than the limit is
//! consumed to its end (so the session stays in step) and reported as too long; it is
//! never truncated and never kept. The reader keeps its own buffer so the session can
//! tell whether pipelined input is waiting and can throw it away (STARTTLS).

use std::io::{self, Read};

/// Longest command line, CR LF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND: usize = 512;
/// Longest text line in DATA, CR LF included (RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT: usize = 1000;
/// Size of the input buffer.
const BUFFER: usize = 16 * 1024;

/// Why no line came back.
#[derive(Debug)]
pub enum LineError {
    /// LF without CR before it.
    BareLf,
    /// CR not followed by LF.
    BareCr,
    /// A NUL byte.
    Nul,
    /// The line was longer than the limit; it has been consumed.
    TooLong,
    /// The peer closed the connection (possibly in the middle of a line).
    Eof,
    /// Reading failed; `TimedOut` when the peer went quiet.
    Io(io::Error),
}

impl LineError {
    /// The framing errors that end a session with 451 (DESIGN §1.7).
    pub fn is_framing(&self) -> bool {
        matches!(self, LineError::BareLf | LineError::BareCr | LineError::Nul)
    }

    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            LineError::BareLf => "bare LF",
            LineError::BareCr => "bare CR",
            LineError::Nul => "NUL",
            LineError::TooLong => "line too long",
            LineError::Eof => "eof",
            LineError::Io(e) if e.kind() == io::ErrorKind::TimedOut => "timeout",
            LineError::Io(_) => "read error",
        }
    }
}

/// A buffered reader of CRLF lines over any byte source.
pub struct LineReader<R> {
    src: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(src: R) -> Self {
        LineReader {
            src,
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Bytes read from the source and not yet returned as lines.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Throw away buffered input; returns how many bytes were dropped.
    pub fn discard_buffer(&mut self) -> usize {
        let n = self.buffered();
        self.start = 0;
        self.end = 0;
        n
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.src
    }

    fn next_byte(&mut self) -> Result<u8, LineError> {
        if self.start == self.end {
            loop {
                match self.src.read(&mut self.buf) {
                    Ok(0) => return Err(LineError::Eof),
                    Ok(n) => {
                        self.start = 0;
                        self.end = n;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(LineError::Io(e)),
                }
            }
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(b)
    }

    /// Read one line into `out` (cleared first), without its CR LF. `limit` counts the
    /// CR LF, as the RFC limits do.
    pub fn read_line(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), LineError> {
        out.clear();
        let keep = limit.saturating_sub(2);
        let mut overflow = false;
        let mut pending_cr = false;
        loop {
            let b = self.next_byte()?;
            if pending_cr {
                if b == b'\n' {
                    return if overflow {
                        Err(LineError::TooLong)
                    } else {
                        Ok(())
                    };
                }
                return Err(LineError::BareCr);
            }
            match b {
                b'\r' => pending_cr = true,
                b'\n' => return Err(LineError::BareLf),
                0 => return Err(LineError::Nul),
                _ if out.len() < keep => out.push(b),
                _ => overflow = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out one byte per read, as a slow client would.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn lines_whole(input: &[u8], limit: usize) -> Vec<Result<Vec<u8>, String>> {
        collect(LineReader::new(input), limit)
    }

    fn lines_trickle(input: &[u8], limit: usize) -> Vec<Result<Vec<u8>, String>> {
        collect(LineReader::new(Trickle(input)), limit)
    }

    fn collect<R: Read>(mut r: LineReader<R>, limit: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            match r.read_line(&mut line, limit) {
                Ok(()) => out.push(Ok(line.clone())),
                Err(LineError::Eof) => return out,
                Err(e) => {
                    let framing = e.is_framing();
                    out.push(Err(e.name().to_string()));
                    if framing {
                        return out;
                    }
                }
            }
        }
    }

    fn check(input: &[u8], limit: usize, expect: &[Result<&[u8], &str>]) {
        let expect: Vec<Result<Vec<u8>, String>> = expect
            .iter()
            .map(|e| e.map(|l| l.to_vec()).map_err(|s| s.to_string()))
            .collect();
        assert_eq!(lines_whole(input, limit), expect, "whole input {input:?}");
        assert_eq!(
            lines_trickle(input, limit),
            expect,
            "byte at a time {input:?}"
        );
    }

    #[test]
    fn crlf_lines() {
        check(
            b"EHLO x\r\nQUIT\r\n",
            MAX_COMMAND,
            &[Ok(b"EHLO x"), Ok(b"QUIT")],
        );
        check(b"\r\n", MAX_COMMAND, &[Ok(b"")]);
    }

    #[test]
    fn bare_lf_cr_and_nul_are_framing_errors() {
        check(b"EHLO x\nQUIT\r\n", MAX_COMMAND, &[Err("bare LF")]);
        check(
            b"ok\r\nEHLO x\rQUIT\r\n",
            MAX_COMMAND,
            &[Ok(b"ok"), Err("bare CR")],
        );
        check(b"EHLO \0x\r\n", MAX_COMMAND, &[Err("NUL")]);
        check(b"a\r\r\n", MAX_COMMAND, &[Err("bare CR")]);
    }

    #[test]
    fn long_lines_are_consumed_and_reported() {
        let mut input = vec![b'a'; 600];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        check(&input, MAX_COMMAND, &[Err("line too long"), Ok(b"NOOP")]);
        // Exactly at the limit: 510 bytes + CR LF.
        let mut input = vec![b'b'; 510];
        input.extend_from_slice(b"\r\n");
        assert_eq!(lines_whole(&input, MAX_COMMAND), vec![Ok(vec![b'b'; 510])]);
        let mut input = vec![b'b'; 511];
        input.extend_from_slice(b"\r\n");
        assert_eq!(
            lines_whole(&input, MAX_COMMAND),
            vec![Err("line too long".to_string())]
        );
    }

    #[test]
    fn unterminated_line_is_eof() {
        check(b"QUIT", MAX_COMMAND, &[]);
    }

    #[test]
    fn discard_drops_pipelined_input() {
        let mut r = LineReader::new(&b"STARTTLS\r\nMAIL FROM:<a@b>\r\n"[..]);
        let mut line = Vec::new();
        r.read_line(&mut line, MAX_COMMAND).unwrap();
        assert_eq!(line, b"STARTTLS");
        assert_eq!(r.buffered(), 17);
        assert_eq!(r.discard_buffer(), 17);
        assert!(matches!(
            r.read_line(&mut line, MAX_COMMAND),
            Err(LineError::Eof)
        ));
    }
}
