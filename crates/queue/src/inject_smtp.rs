//! `postern-inject -bs`: a minimal SMTP dialogue on stdin/stdout, for programs that
//! submit mail by running `sendmail -bs` (PHP mailers do). Local submission only: every
//! message goes through the same path as `postern-inject` without `-bs` (missing fields
//! added, `Bcc:` dropped) into the queue program.
//!
//! Verbs: HELO, EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT (VRFY answers 252); anything
//! else 502. DATA ends at a line holding a single `.`; leading dots are unstuffed. Input
//! that ends inside DATA queues nothing. `MAIL FROM:` / `RCPT TO:` arguments are parsed as
//! postern-smtpd parses them ([`postern_wire::smtp_path`]).

use crate::header;
use crate::inject::{added_fields, qualify, write_message, Options};
use postern_common::{Error, Result, ResultExt};
use postern_wire::qmail_queue::{client, Failure};
use postern_wire::queue_file::MAX_RECIPIENTS;
use postern_wire::smtp_path;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};

/// Longest command line, bytes.
pub const MAX_COMMAND: usize = 4096;
/// DATA is read in pieces of at most this many bytes (longer lines pass in pieces).
pub const MAX_DATA_PIECE: usize = 64 * 1024;

/// One dialogue.
pub struct Session<'a> {
    /// `control/me`: the greeting and the domain for bare addresses.
    pub host: &'a str,
    /// The command line (`-F` applies to added `From:` fields).
    pub opts: &'a Options,
    /// The address for an added `From:` when MAIL gave the null sender `<>`.
    pub default_sender: &'a [u8],
}

fn reply(out: &mut impl Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|_| out.write_all(b"\r\n"))
        .and_then(|_| out.flush())
        .temp("unable to write to stdout")
}

/// The address of a `FROM:<a@b> PARAMS` / `TO:<a@b>` argument, parsed as postern-smtpd
/// parses it ([`smtp_path::parse_path_arg`]), in envelope form: `""` for `<>`, `None`
/// when the argument is malformed. Parameters are accepted and ignored.
fn path(arg: &str, keyword: &str) -> Option<String> {
    let parsed = smtp_path::parse_path_arg(arg.as_bytes(), keyword).ok()?;
    Some(parsed.address.map(|a| a.envelope()).unwrap_or_default())
}

impl Session<'_> {
    /// Run the dialogue until QUIT or the end of the input.
    pub fn run(
        &self,
        input: &mut impl BufRead,
        out: &mut impl Write,
        queue: &OsString,
    ) -> Result<()> {
        reply(out, &format!("220 {} ESMTP", self.host))?;
        let mut sender: Option<Vec<u8>> = None;
        let mut rcpts: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = input
                .by_ref()
                .take(MAX_COMMAND as u64 + 1)
                .read_until(b'\n', &mut line)
                .temp("unable to read stdin")?;
            if n == 0 {
                return Ok(());
            }
            if line.len() > MAX_COMMAND {
                reply(out, "500 line too long")?;
                return Ok(());
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
            match verb.to_ascii_uppercase().as_str() {
                "HELO" => {
                    (sender, rcpts) = (None, Vec::new());
                    reply(out, &format!("250 {}", self.host))?
                }
                "EHLO" => {
                    (sender, rcpts) = (None, Vec::new());
                    reply(
                        out,
                        &format!("250-{}\r\n250-PIPELINING\r\n250 8BITMIME", self.host),
                    )?
                }
                "MAIL" if sender.is_some() => reply(out, "503 MAIL already given")?,
                "MAIL" => match path(arg, "FROM").map(|p| qualify(&p, self.host)) {
                    Some(Ok(addr)) => {
                        sender = Some(addr);
                        reply(out, "250 ok")?
                    }
                    _ => reply(out, "501 syntax: MAIL FROM:<address>")?,
                },
                "RCPT" if sender.is_none() => reply(out, "503 MAIL first")?,
                "RCPT" if rcpts.len() >= MAX_RECIPIENTS => reply(out, "452 too many recipients")?,
                "RCPT" => match path(arg, "TO")
                    .filter(|p| !p.is_empty())
                    .map(|p| qualify(&p, self.host))
                {
                    Some(Ok(addr)) => {
                        rcpts.push(addr);
                        reply(out, "250 ok")?
                    }
                    _ => reply(out, "501 syntax: RCPT TO:<address>")?,
                },
                "DATA" if rcpts.is_empty() => reply(out, "503 RCPT first")?,
                "DATA" => {
                    reply(out, "354 go ahead, end with a line holding a single .")?;
                    let from = sender.take().unwrap_or_default();
                    let (answer, go_on) =
                        self.data(input, &from, &std::mem::take(&mut rcpts), queue);
                    reply(out, &answer)?;
                    if !go_on {
                        return Ok(());
                    }
                }
                "RSET" => {
                    (sender, rcpts) = (None, Vec::new());
                    reply(out, "250 ok")?
                }
                "NOOP" => reply(out, "250 ok")?,
                "VRFY" => reply(out, "252 send some mail, I'll try my best")?,
                "QUIT" => {
                    reply(out, &format!("221 {}", self.host))?;
                    return Ok(());
                }
                _ => reply(out, "502 unimplemented")?,
            }
        }
    }

    /// Read one message to its final dot and queue it. Returns the reply and whether the
    /// dialogue can go on (not when the input ended inside DATA).
    fn data(
        &self,
        input: &mut impl BufRead,
        sender: &[u8],
        rcpts: &[Vec<u8>],
        queue: &OsString,
    ) -> (String, bool) {
        let mut data = BufReader::new(DataReader::new(input));
        let queued = (|| -> std::result::Result<(), Failure> {
            let h = header::read(&mut data).map_err(Failure::Input)?;
            let from = if sender.is_empty() {
                self.default_sender
            } else {
                sender
            };
            let added = added_fields(&h, self.opts, from, self.host, std::time::SystemTime::now());
            client::inject(queue, sender, rcpts, |sink| {
                write_message(sink, &h, &added, &mut data)
            })
        })();
        // Whatever happened, stay in step with the client: read up to the final dot.
        if io::copy(&mut data, &mut io::sink()).is_err() {
            return (
                "451 the input ended inside DATA; nothing was queued".to_string(),
                false,
            );
        }
        match queued {
            Ok(()) => ("250 ok: queued".to_string(), true),
            Err(Failure::Input(e)) | Err(Failure::Queue(e)) => (smtp_error(&e), true),
        }
    }
}

fn smtp_error(e: &Error) -> String {
    let code = if e.kind == postern_common::Kind::Temp {
        451
    } else {
        554
    };
    format!(
        "{code} {}",
        postern_common::logline::printable(e.msg.as_bytes())
    )
}

/// The body of DATA: stops at the line holding a single `.`, removes one leading dot
/// from other lines, fails if the input ends first. CRLF is passed through (the
/// message writer turns it into LF).
pub struct DataReader<'a, R> {
    inner: &'a mut R,
    piece: Vec<u8>,
    pos: usize,
    at_line_start: bool,
    done: bool,
}

impl<'a, R: BufRead> DataReader<'a, R> {
    pub fn new(inner: &'a mut R) -> Self {
        DataReader {
            inner,
            piece: Vec::new(),
            pos: 0,
            at_line_start: true,
            done: false,
        }
    }
}

impl<R: BufRead> Read for DataReader<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.piece.len() {
                let n = out.len().min(self.piece.len() - self.pos);
                out[..n].copy_from_slice(&self.piece[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            self.piece.clear();
            self.pos = 0;
            let n = (&mut *self.inner)
                .take(MAX_DATA_PIECE as u64)
                .read_until(b'\n', &mut self.piece)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the input ended inside DATA",
                ));
            }
            let line_start = self.at_line_start;
            self.at_line_start = self.piece.ends_with(b"\n");
            if line_start && self.piece[0] == b'.' {
                if self.piece == b".\r\n" || self.piece == b".\n" {
                    self.done = true;
                    self.piece.clear();
                    return Ok(0);
                }
                self.pos = 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn body(input: &[u8]) -> (io::Result<Vec<u8>>, Vec<u8>) {
        let mut whole = input;
        let mut out = Vec::new();
        let r = DataReader::new(&mut whole)
            .read_to_end(&mut out)
            .map(|_| out);
        let mut trickle = BufReader::with_capacity(1, Trickle(input));
        let mut out2 = Vec::new();
        let r2 = DataReader::new(&mut trickle)
            .read_to_end(&mut out2)
            .map(|_| out2);
        assert_eq!(
            format!("{r:?}"),
            format!("{r2:?}"),
            "byte-at-a-time differs"
        );
        (r, whole.to_vec())
    }

    #[test]
    fn data_ends_at_the_dot_and_unstuffs() {
        let (got, rest) = body(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n");
        assert_eq!(got.unwrap(), b"Subject: x\r\n\r\n.leading dot\r\n");
        assert_eq!(rest, b"QUIT\r\n");
        let (got, _) = body(b"a\n.\n");
        assert_eq!(got.unwrap(), b"a\n");
        let (got, _) = body(b"no end\r\n");
        assert_eq!(got.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_dot_inside_a_long_line_is_not_special() {
        let mut input = vec![b'x'; MAX_DATA_PIECE - 1];
        input.extend_from_slice(b".\r\n.\r\n");
        let (got, _) = body(&input);
        assert_eq!(got.unwrap().len(), MAX_DATA_PIECE + 2);
    }

    #[test]
    fn paths() {
        assert_eq!(path("FROM:<a@b> SIZE=10", "FROM").as_deref(), Some("a@b"));
        assert_eq!(path("from: <>", "FROM").as_deref(), Some(""));
        assert_eq!(path("TO:x@y", "TO").as_deref(), Some("x@y"));
        assert_eq!(path("TO <x@y>", "TO"), None);
        // As strict as postern-smtpd: no guessing at malformed addresses.
        assert_eq!(path("TO:<a@b@c.test>", "TO"), None);
        assert_eq!(path("TO:<a@b", "TO"), None);
        assert_eq!(path("TO:<Postmaster>", "TO").as_deref(), Some("Postmaster"));
    }

    #[test]
    fn a_dialogue() {
        let opts = Options::default();
        let s = Session {
            host: "mx.test",
            opts: &opts,
            default_sender: b"me@mx.test",
        };
        let input =
            b"EHLO client\r\nRCPT TO:<x@y>\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:bare\r\n\
                      DATA\r\nSubject: t\r\n\r\nhi\r\n.\r\nDATA\r\nNOOP\r\nBOGUS\r\nQUIT\r\n";
        let mut out = Vec::new();
        s.run(&mut &input[..], &mut out, &OsString::from("true"))
            .unwrap();
        let codes: Vec<&str> = std::str::from_utf8(&out)
            .unwrap()
            .lines()
            .map(|l| &l[..4])
            .collect();
        assert_eq!(
            codes,
            [
                "220 ", "250-", "250-", "250 ", "503 ", "250 ", "250 ", "250 ", "354 ", "250 ",
                "503 ", "250 ", "502 ", "221 "
            ]
        );
    }
}
