//! The bounded CRLF line reader every SMTP byte goes through.
//!
//! A line ends only at CR LF. A bare LF, a bare CR or a NUL anywhere is a framing error
//! the caller answers with 451 and a closed connection: a server and a filter that split
//! lines differently are how messages get smuggled. A line longer than the limit is
//! consumed to its end (so the session stays in step) and reported as too long; it is
//! never truncated and never kept. The reader keeps its own buffer so the session can
//! tell whether pipelined input is waiting and can throw it away (STARTTLS).
//!
//! Every read waits only as long as the session's [`Pace`] allows (the idle timeout,
//! the session time limit, the minimum data rate), measured on the [`Input`]'s clock.

use crate::pace::{Limit, Pace};
use std::io::{self, Read};
use std::time::Duration;

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
    /// Reading failed; `TimedOut` when the peer went quiet (`timeoutsmtpd`).
    Io(io::Error),
    /// The session time limit (`timeoutsession`) is reached.
    SessionLimit,
    /// The client sends more slowly than `minrate`.
    Slow,
}

impl LineError {
    /// The framing errors that end a session with 451.
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
            LineError::SessionLimit => "session time limit",
            LineError::Slow => "too slow",
        }
    }
}

impl From<Limit> for LineError {
    fn from(limit: Limit) -> LineError {
        match limit {
            Limit::Idle => {
                LineError::Io(io::Error::new(io::ErrorKind::TimedOut, "client timed out"))
            }
            Limit::Session => LineError::SessionLimit,
            Limit::Slow => LineError::Slow,
        }
    }
}

/// Where the client's bytes come from: reads that wait at most a given time, and the
/// clock the waits are measured on.
pub trait Input {
    /// Read what is there, waiting at most `wait` for something: `Ok(0)` at the end of
    /// the input, an error of kind `TimedOut` when nothing came in time.
    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize>;
    /// Monotonic time, from any fixed point.
    fn now(&self) -> Duration;
}

/// A plain reader never makes anyone wait: its bytes are there and no time passes
/// (in-memory input).
impl<R: Read> Input for R {
    fn read_within(&mut self, buf: &mut [u8], _wait: Duration) -> io::Result<usize> {
        self.read(buf)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A buffered reader of CRLF lines over any byte source.
pub struct LineReader<R> {
    src: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    pace: Pace,
    /// In DATA: every wait counts against the rate, not only those inside a line.
    bulk: bool,
}

impl<R: Input> LineReader<R> {
    /// A reader without time limits.
    pub fn new(src: R) -> Self {
        Self::with_pace(src, Pace::unlimited())
    }

    /// A reader whose waits `pace` bounds (see [`crate::pace`]).
    pub fn with_pace(src: R, pace: Pace) -> Self {
        LineReader {
            src,
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            pace,
            bulk: false,
        }
    }

    /// Count every wait against the minimum rate (a DATA transfer), or only the waits
    /// inside a line (commands).
    pub fn set_bulk(&mut self, bulk: bool) {
        self.bulk = bulk;
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

    /// The next byte; `in_line`: part of the current line has been read already.
    fn next_byte(&mut self, in_line: bool) -> Result<u8, LineError> {
        if self.start == self.end {
            self.fill(self.bulk || in_line)?;
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(b)
    }

    /// Read into the empty buffer, waiting no longer than the pace allows.
    fn fill(&mut self, metered: bool) -> Result<(), LineError> {
        loop {
            let before = self.src.now();
            let (wait, limit) = self.pace.next_wait(before, metered);
            if wait.is_zero() {
                return Err(limit.into());
            }
            let got = self.src.read_within(&mut self.buf, wait);
            let waited = self.src.now().saturating_sub(before);
            match got {
                Ok(0) => return Err(LineError::Eof),
                Ok(n) => {
                    self.pace.account(waited, n, metered);
                    self.start = 0;
                    self.end = n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    self.pace.account(waited, 0, metered);
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    self.pace.account(waited, 0, metered);
                    return Err(limit.into());
                }
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }

    /// Read one line into `out` (cleared first), without its CR LF. `limit` counts the
    /// CR LF, as the RFC limits do.
    pub fn read_line(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), LineError> {
        out.clear();
        let keep = limit.saturating_sub(2);
        let mut overflow = false;
        let mut pending_cr = false;
        let mut in_line = false;
        loop {
            let b = self.next_byte(in_line)?;
            in_line = true;
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

/// A client on a fake clock, for tests: pieces of input, each arriving a given time
/// after the previous one was read.
#[cfg(test)]
pub(crate) mod fake {
    use super::Input;
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::io;
    use std::rc::Rc;
    use std::time::Duration;

    #[derive(Debug, Default)]
    pub struct Timeline {
        pieces: VecDeque<(Duration, Vec<u8>)>,
        clock: Rc<Cell<Duration>>,
    }

    impl Timeline {
        /// The fake clock, to read after the timeline has been given away.
        pub fn clock(&self) -> Rc<Cell<Duration>> {
            self.clock.clone()
        }

        /// `bytes` arrive `after` the previous piece.
        pub fn then(mut self, after: Duration, bytes: &[u8]) -> Self {
            self.pieces.push_back((after, bytes.to_vec()));
            self
        }

        /// `bytes` one at a time, `every` apart.
        pub fn trickle(mut self, every: Duration, bytes: &[u8]) -> Self {
            for &b in bytes {
                self = self.then(every, &[b]);
            }
            self
        }
    }

    impl Input for Timeline {
        fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
            let clock = self.clock.clone();
            let advance = |by: Duration| clock.set(clock.get() + by);
            let Some((after, bytes)) = self.pieces.front_mut() else {
                return Ok(0);
            };
            if *after > wait {
                *after -= wait;
                advance(wait);
                return Err(io::Error::new(io::ErrorKind::TimedOut, "fake"));
            }
            advance(std::mem::take(after));
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            bytes.drain(..n);
            if bytes.is_empty() {
                self.pieces.pop_front();
            }
            Ok(n)
        }

        fn now(&self) -> Duration {
            self.clock.get()
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

    #[test]
    fn waits_are_bounded_by_the_pace() {
        use super::fake::Timeline;
        let s = Duration::from_secs;
        let pace = || Pace::new(Duration::ZERO, s(5), Some(s(100)), 100, s(10));
        // A pause between lines is not metered; one inside a line is.
        let input = Timeline::default()
            .then(s(4), b"NOOP\r\n")
            .then(s(4), b"NO")
            .then(s(4), b"OP")
            .then(s(4), b"\r\n")
            .then(s(4), b"NO")
            .trickle(s(4), b"OP\r\n");
        let mut r = LineReader::with_pace(input, pace());
        let mut line = Vec::new();
        for _ in 0..2 {
            r.read_line(&mut line, MAX_COMMAND).unwrap();
            assert_eq!(line, b"NOOP");
        }
        assert!(matches!(
            r.read_line(&mut line, MAX_COMMAND),
            Err(LineError::Slow)
        ));
        // Line 2 used 8 s of the 10 inside the line (and earned a little back); line
        // 3 stalls after its first piece at 20 s and is cut when the rest runs out.
        let cut = r.get_mut().now();
        assert!(cut > s(22) && cut < s(23), "{cut:?}");
        // Nothing at all: the idle timeout, as before.
        let mut r = LineReader::with_pace(Timeline::default().then(s(6), b"x"), pace());
        let e = r.read_line(&mut line, MAX_COMMAND).unwrap_err();
        assert_eq!(e.name(), "timeout");
        // Never slow, never idle: the session time limit.
        let mut r = LineReader::with_pace(
            Timeline::default().trickle(s(3), &b"NOOP\r\n".repeat(100)),
            Pace::new(Duration::ZERO, s(5), Some(s(100)), 0, s(10)),
        );
        let e = loop {
            if let Err(e) = r.read_line(&mut line, MAX_COMMAND) {
                break e;
            }
        };
        assert!(matches!(e, LineError::SessionLimit), "{e:?}");
        assert_eq!(r.get_mut().now(), s(100));
    }
}
