//! `postern-tai64nlocal`: daemontools' tai64nlocal. It copies stdin to stdout and
//! replaces a TAI64N label at the start of a line (`@` + 24 lowercase hex digits, as
//! `postern-multilog t` and `tai64n` write them) with the local time
//! `YYYY-MM-DD HH:MM:SS.NNNNNNNNN`. Every other byte passes through unchanged, non-UTF-8
//! included.
//!
//! Only the first [`LABEL_LEN`] + 1 bytes of a line are ever held, so memory stays
//! bounded for any line length. Output is flushed after every read, so it works live at
//! the end of a pipe.
//!
//! Differences from the classic tool, which turns `@` plus *any* run of hex digits into
//! a date: a label must be exactly 24 lowercase hex digits (not followed by a 25th), and
//! anything else — including an `@` with fewer digits — passes through untouched.

use postern_common::tai64n::Tai64n;
use postern_common::{Result, ResultExt};
use std::io::{self, Read, Write};

/// `@` + 24 hex digits.
pub const LABEL_LEN: usize = 25;

/// Bytes read at a time.
pub const INPUT_CHUNK: usize = 16 * 1024;

/// Run `postern-tai64nlocal`: stdin to stdout.
pub fn main() -> Result<()> {
    let mut args = postern_common::getopt::args();
    if let Some(extra) = args.pop() {
        return Err(postern_common::Error::usage(format!(
            "postern-tai64nlocal < input (unexpected argument {:?})",
            extra.to_string_lossy()
        )));
    }
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut conv = Converter::default();
    let mut buf = vec![0u8; INPUT_CHUNK];
    let mut out = Vec::with_capacity(INPUT_CHUNK * 2);
    loop {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).temp("unable to read input"),
        };
        if n == 0 {
            conv.finish(&mut out);
        } else {
            conv.feed(&buf[..n], &mut out);
        }
        output
            .write_all(&out)
            .and_then(|()| output.flush())
            .temp("unable to write output")?;
        out.clear();
        if n == 0 {
            return Ok(());
        }
    }
}

/// The streaming converter: feed chunks, collect output.
#[derive(Debug, Default)]
pub struct Converter {
    /// The start of the current line, while it might still be a label.
    start: Vec<u8>,
    /// Past the start of the line: copy until the newline.
    passing: bool,
}

impl Converter {
    /// Convert a chunk of input, appending to `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while let Some((&b, rest)) = data.split_first() {
            if self.passing {
                // Copy the rest of the line in one go.
                match data.iter().position(|&c| c == b'\n') {
                    Some(nl) => {
                        out.extend_from_slice(&data[..=nl]);
                        self.passing = false;
                        data = &data[nl + 1..];
                    }
                    None => {
                        out.extend_from_slice(data);
                        data = &[];
                    }
                }
                continue;
            }
            self.start.push(b);
            data = rest;
            if b == b'\n' || self.start.len() > LABEL_LEN || !could_be_label(&self.start) {
                self.flush_start(out);
                self.passing = b != b'\n';
            }
        }
    }

    /// End of input: whatever is held goes out (a bare label is converted too).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush_start(out);
        self.passing = false;
    }

    fn flush_start(&mut self, out: &mut Vec<u8>) {
        match label_at(&self.start) {
            Some(t) => {
                out.extend_from_slice(t.format_local().as_bytes());
                out.extend_from_slice(&self.start[LABEL_LEN..]);
            }
            None => out.extend_from_slice(&self.start),
        }
        self.start.clear();
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// Whether `start` (at most [`LABEL_LEN`] bytes) is still a prefix of a label.
fn could_be_label(start: &[u8]) -> bool {
    start[0] == b'@' && start[1..].iter().all(|&b| is_lower_hex(b))
}

/// The label at the start of `line`, if it is `@` + exactly 24 lowercase hex digits.
fn label_at(line: &[u8]) -> Option<Tai64n> {
    if line.len() < LABEL_LEN || !could_be_label(&line[..LABEL_LEN]) {
        return None;
    }
    if line.get(LABEL_LEN).is_some_and(|&b| is_lower_hex(b)) {
        return None;
    }
    Tai64n::parse_label(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut c = Converter::default();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            c.feed(piece, &mut out);
        }
        c.finish(&mut out);
        out
    }

    fn local(label: &str) -> String {
        Tai64n::parse_label(label.as_bytes())
            .unwrap()
            .format_local()
    }

    #[test]
    fn a_leading_label_becomes_local_time() {
        let label = Tai64n::from_unix(1_700_000_000, 5).label();
        let input = format!("{label} hello\n{label}\n");
        let want = format!("{} hello\n{}\n", local(&label), local(&label));
        assert_eq!(convert(input.as_bytes(), 4096), want.as_bytes());
    }

    #[test]
    fn everything_else_passes_through_byte_exact() {
        let input: &[u8] = b"plain\n@short label\n@400000005f00000000000000z-not-a-label-but-24-hex?\n\
              \xff\xfe binary \0 bytes\n@4000000000000000000000000 25 hex digits\n\
              @400000005F0000000000000A uppercase\n x @400000005f00000000000000 not leading\nno newline";
        let out = convert(input, 4096);
        // Only the third line had a label; check everything but it is untouched.
        let text = input.split(|&b| b == b'\n').collect::<Vec<_>>();
        let got = out.split(|&b| b == b'\n').collect::<Vec<_>>();
        assert_eq!(text.len(), got.len());
        for (i, (a, b)) in text.iter().zip(&got).enumerate() {
            if i != 2 {
                assert_eq!(a, b, "line {i}");
            }
        }
        assert!(got[2].ends_with(b"z-not-a-label-but-24-hex?"));
        assert!(!got[2].starts_with(b"@"));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_output() {
        let label = Tai64n::from_unix(1_234_567_890, 999_999_999).label();
        let mut input = format!("{label} a\n@12\n\n{label}").into_bytes();
        input.extend(std::iter::repeat_n(b'q', 5000));
        input.extend_from_slice(b"\n\xc3\x28\n");
        let whole = convert(&input, input.len());
        for chunk in [1, 2, 3, 24, 25, 26, 27] {
            assert_eq!(convert(&input, chunk), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn many_short_lines_in_one_chunk_pass_through() {
        let input = b"a\n".repeat(200_000);
        assert_eq!(convert(&input, input.len()), input);
    }

    #[test]
    fn a_bare_label_at_end_of_input_is_converted() {
        let label = Tai64n::from_unix(86_400, 0).label();
        assert_eq!(convert(label.as_bytes(), 1), local(&label).as_bytes());
    }
}
