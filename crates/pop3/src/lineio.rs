//! Line input and output for the POP3 programs, bounded in size and in time.
//!
//! [`LineReader`] returns one command line at a time (CRLF or a bare LF ends it; the CR
//! is dropped), never more than a given number of octets, and gives up after an idle
//! timeout. In *one-byte* mode it never reads past the end of the current line, so the
//! bytes a client pipelines after `PASS` stay in the socket for the program that takes
//! over the session (postern-popup uses it; postern-pop3d reads in blocks).
//! [`TimedWriter`] writes with a deadline, so a client that stops reading cannot hold a
//! process forever; it copes with non-blocking descriptors. The waiting itself is
//! [`postern_common::deadline`]'s.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::PollFlags;
use postern_common::deadline;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

/// RFC 2449 §4: a command line is at most 255 octets, CRLF included.
pub const MAX_COMMAND_LINE: usize = 255;
/// Block size for buffered reads.
pub const READ_BLOCK: usize = 4096;

/// What the next line of input turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A complete line, without its CR LF.
    Line(Vec<u8>),
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
    /// Nothing arrived within the idle timeout.
    Timeout,
    /// The line grew past the limit before its LF.
    TooLong,
}

/// Something lines can be read from, and waited on.
pub trait Source: Read {
    /// Wait up to `timeout` for input; `false` means the time ran out.
    fn wait(&self, timeout: Duration) -> io::Result<bool>;
}

impl Source for File {
    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        deadline::wait(self, PollFlags::POLLIN, timeout)
    }
}

impl Source for &[u8] {
    fn wait(&self, _timeout: Duration) -> io::Result<bool> {
        Ok(true)
    }
}

/// Reads command lines; see the module documentation.
pub struct LineReader<S> {
    src: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    one_byte: bool,
}

impl<S: Source> LineReader<S> {
    /// Read in blocks of [`READ_BLOCK`].
    pub fn buffered(src: S) -> Self {
        LineReader {
            src,
            buf: vec![0; READ_BLOCK],
            start: 0,
            end: 0,
            one_byte: false,
        }
    }

    /// Never read past the end of the current line.
    pub fn one_byte(src: S) -> Self {
        LineReader {
            src,
            buf: vec![0; 1],
            start: 0,
            end: 0,
            one_byte: true,
        }
    }

    /// Whether input is already buffered (more pipelined commands): the caller flushes
    /// its replies only when this is false.
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// Drop buffered input (before STLS: nothing read in cleartext may survive it).
    pub fn discard_buffered(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    pub fn get_ref(&self) -> &S {
        &self.src
    }

    /// The next line of at most `max` octets counting its line ending.
    pub fn read_line(&mut self, max: usize, timeout: Duration) -> io::Result<Input> {
        let mut line = Vec::new();
        loop {
            while self.start < self.end {
                let b = self.buf[self.start];
                self.start += 1;
                if b == b'\n' {
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Ok(Input::Line(line));
                }
                if line.len() + 1 >= max {
                    return Ok(Input::TooLong);
                }
                line.push(b);
            }
            if !self.src.wait(timeout)? {
                return Ok(Input::Timeout);
            }
            let want = if self.one_byte { 1 } else { self.buf.len() };
            match self.src.read(&mut self.buf[..want]) {
                Ok(0) => return Ok(Input::Eof),
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Input::Eof),
                Err(e) => return Err(e),
            }
        }
    }
}

/// A writer that gives up when the peer has not taken data for `timeout`.
pub struct TimedWriter {
    file: File,
    timeout: Duration,
}

impl TimedWriter {
    pub fn new(file: File, timeout: Duration) -> Self {
        TimedWriter { file, timeout }
    }

    /// Make writes non-blocking, so that one large write cannot block past the deadline.
    pub fn set_nonblocking(&self) -> io::Result<()> {
        let flags = OFlag::from_bits_truncate(fcntl(&self.file, FcntlArg::F_GETFL)?);
        fcntl(&self.file, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(())
    }
}

impl Write for TimedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        deadline::write(&mut self.file, data, self.timeout)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Our own handle on fd 0 (a duplicate, close-on-exec, not buffered by std).
pub fn stdin_file() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// Our own handle on fd 1 (a duplicate, close-on-exec, not buffered by std).
pub fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its input one byte per read, like a slow network.
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
    impl Source for Trickle<'_> {
        fn wait(&self, _: Duration) -> io::Result<bool> {
            Ok(true)
        }
    }

    fn all_lines<S: Source>(mut r: LineReader<S>) -> Vec<Input> {
        let mut out = Vec::new();
        loop {
            let i = r.read_line(10, Duration::from_secs(1)).unwrap();
            let stop = matches!(i, Input::Eof | Input::TooLong);
            out.push(i);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn crlf_and_bare_lf_end_lines_whole_or_byte_at_a_time() {
        let input = b"STAT\r\nLIST 1\nNOOP\r\n12345678\r\npartial";
        let want = vec![
            Input::Line(b"STAT".to_vec()),
            Input::Line(b"LIST 1".to_vec()),
            Input::Line(b"NOOP".to_vec()),
            Input::Line(b"12345678".to_vec()),
            Input::Eof,
        ];
        assert_eq!(all_lines(LineReader::buffered(&input[..])), want);
        assert_eq!(all_lines(LineReader::buffered(Trickle(input))), want);
        assert_eq!(all_lines(LineReader::one_byte(&input[..])), want);
    }

    #[test]
    fn limit_counts_the_line_ending() {
        // max 10: 8 octets + CRLF fit, 9 + LF fit, 10 do not.
        let got = all_lines(LineReader::buffered(&b"123456789\n1234567890\n"[..]));
        assert_eq!(
            got,
            vec![Input::Line(b"123456789".to_vec()), Input::TooLong]
        );
    }

    #[test]
    fn one_byte_mode_leaves_the_rest_unread() {
        let input = b"PASS x\r\nSTAT\r\n";
        let mut src = &input[..];
        let mut r = LineReader::one_byte(&mut src as &mut &[u8]);
        // Read through a &mut so we can look at what is left afterwards.
        assert_eq!(
            r.read_line(255, Duration::from_secs(1)).unwrap(),
            Input::Line(b"PASS x".to_vec())
        );
        assert!(!r.has_buffered());
        drop(r);
        assert_eq!(src, b"STAT\r\n");
    }

    impl Source for &mut &[u8] {
        fn wait(&self, _: Duration) -> io::Result<bool> {
            Ok(true)
        }
    }
}
