//! The qmail-queue protocol's envelope (interop §5.1), read by postern-queue from fd 1
//! and written by its callers: `F<sender>\0`, zero or more `T<recipient>\0`, then `\0`.
//! Read one buffered byte at a time, as qmail-queue does, so a hostile caller can make it
//! hold no more than [`postern_wire::queue_file::MAX_ADDRESS`] bytes of one address.

use postern_wire::queue_file::{MAX_ADDRESS, MAX_RECIPIENTS};
use crate::qq;
use std::io::{self, BufRead};

/// Why an envelope could not be read, each with its qmail-queue exit code.
#[derive(Debug)]
pub enum EnvelopeError {
    /// Reading failed, or the input ended before the final `\0` (54).
    Read(Option<io::Error>),
    /// The first byte is not `F` or a record does not start with `T` (91).
    Format,
    /// An address of 1003 bytes or more with its NUL (11).
    TooLong,
    /// More than [`MAX_RECIPIENTS`] recipients (31).
    TooMany,
}

impl EnvelopeError {
    pub fn exit_code(&self) -> i32 {
        match self {
            EnvelopeError::Read(_) => qq::READ_ERROR,
            EnvelopeError::Format => qq::ENVELOPE_FORMAT,
            EnvelopeError::TooLong => qq::ADDRESS_TOO_LONG,
            EnvelopeError::TooMany => qq::REFUSED,
        }
    }
}

fn byte(r: &mut impl BufRead) -> Result<u8, EnvelopeError> {
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(EnvelopeError::Read(Some(e))),
        };
        let Some(&b) = buf.first() else {
            return Err(EnvelopeError::Read(None));
        };
        r.consume(1);
        return Ok(b);
    }
}

fn address(r: &mut impl BufRead) -> Result<Vec<u8>, EnvelopeError> {
    let mut addr = Vec::new();
    loop {
        match byte(r)? {
            0 => return Ok(addr),
            _ if addr.len() >= MAX_ADDRESS => return Err(EnvelopeError::TooLong),
            b => addr.push(b),
        }
    }
}

/// Read an envelope: the sender and the recipients. Bytes after the final `\0` are not
/// read.
pub fn read_envelope(r: &mut impl BufRead) -> Result<(Vec<u8>, Vec<Vec<u8>>), EnvelopeError> {
    if byte(r)? != b'F' {
        return Err(EnvelopeError::Format);
    }
    let sender = address(r)?;
    let mut recipients = Vec::new();
    loop {
        match byte(r)? {
            0 => return Ok((sender, recipients)),
            b'T' => {
                if recipients.len() >= MAX_RECIPIENTS {
                    return Err(EnvelopeError::TooMany);
                }
                recipients.push(address(r)?);
            }
            _ => return Err(EnvelopeError::Format),
        }
    }
}

/// The envelope bytes a caller writes to the queue program's fd 1.
pub fn encode_envelope(sender: &[u8], recipients: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        3 + sender.len() + recipients.iter().map(|r| r.len() + 2).sum::<usize>(),
    );
    out.push(b'F');
    out.extend_from_slice(sender);
    out.push(0);
    for r in recipients {
        out.push(b'T');
        out.extend_from_slice(r);
        out.push(0);
    }
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    /// A reader that hands out one byte per read call.
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

    fn both(input: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), EnvelopeError> {
        let whole = read_envelope(&mut &input[..]);
        let trickled = read_envelope(&mut BufReader::with_capacity(1, Trickle(input)));
        assert_eq!(
            format!("{whole:?}"),
            format!("{trickled:?}"),
            "byte-at-a-time differs"
        );
        whole
    }

    #[test]
    fn reads_what_callers_write() {
        let rcpts = vec![b"a@b".to_vec(), b"\xffx@y".to_vec()];
        let bytes = encode_envelope(b"s@t", &rcpts);
        assert_eq!(bytes, b"Fs@t\0Ta@b\0T\xffx@y\0\0");
        let (s, r) = both(&bytes).unwrap();
        assert_eq!((s.as_slice(), r), (&b"s@t"[..], rcpts));
        let (s, r) = both(b"F\0\0").unwrap();
        assert!(s.is_empty() && r.is_empty());
    }

    #[test]
    fn every_early_end_is_a_read_error() {
        let bytes = encode_envelope(b"s@t", &[b"a@b".to_vec()]);
        for n in 0..bytes.len() {
            let err = both(&bytes[..n]).unwrap_err();
            assert_eq!(err.exit_code(), qq::READ_ERROR, "cut at {n}");
        }
    }

    #[test]
    fn format_errors_and_limits() {
        assert_eq!(
            both(b"Ts@t\0\0").unwrap_err().exit_code(),
            qq::ENVELOPE_FORMAT
        );
        assert_eq!(
            both(b"Fs\0Xa\0\0").unwrap_err().exit_code(),
            qq::ENVELOPE_FORMAT
        );
        let ok = [b"F".to_vec(), vec![b'a'; MAX_ADDRESS], b"\0Tb\0\0".to_vec()].concat();
        assert!(both(&ok).is_ok());
        let long = [
            b"F".to_vec(),
            vec![b'a'; MAX_ADDRESS + 1],
            b"\0Tb\0\0".to_vec(),
        ]
        .concat();
        assert_eq!(both(&long).unwrap_err().exit_code(), qq::ADDRESS_TOO_LONG);
        let many = encode_envelope(b"", &vec![b"x".to_vec(); MAX_RECIPIENTS + 1]);
        assert_eq!(
            read_envelope(&mut &many[..]).unwrap_err().exit_code(),
            qq::REFUSED
        );
    }
}
