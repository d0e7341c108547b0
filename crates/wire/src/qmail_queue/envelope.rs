//! The envelope on the queue program's fd 1: `F<sender>\0`, zero or more
//! `T<recipient>\0`, then `\0`. Addresses are bytes and stay bytes: whatever a caller
//! hands in, the queue gets unchanged (a program that needs text, such as postern-scan's
//! rules, decodes its own copy).
//!
//! The reader takes one buffered byte at a time, as qmail-queue does, so a hostile caller
//! can make it hold no more than [`MAX_ADDRESS`] bytes of one address, and it stops at
//! the final `\0` (what follows is not read). Its limits are the queue file's: an address
//! of 1003 bytes or more counting its NUL is exit 11, more than [`MAX_RECIPIENTS`]
//! recipients exit 31.

use super::exit_code;
use crate::queue_file::{MAX_ADDRESS, MAX_RECIPIENTS};
use std::fmt;
use std::io::{self, BufRead};

/// A sender (empty = the null sender `<>`) and its recipients, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
}

/// Why an envelope could not be read, each with its qmail-queue exit code.
#[derive(Debug)]
pub enum EnvelopeError {
    /// Reading failed (`Some`), or the input ended before the final `\0` (54).
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
            EnvelopeError::Read(_) => exit_code::READ_ERROR,
            EnvelopeError::Format => exit_code::ENVELOPE_FORMAT,
            EnvelopeError::TooLong => exit_code::ADDRESS_TOO_LONG,
            EnvelopeError::TooMany => exit_code::REFUSED,
        }
    }
}

/// The words of postern-scan's `fatal:` line for each case.
impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Read(Some(e)) => write!(f, "unable to read envelope: {e}"),
            EnvelopeError::Read(None) => f.write_str("envelope ended early"),
            EnvelopeError::Format => f.write_str("envelope format error"),
            EnvelopeError::TooLong => f.write_str("address too long"),
            EnvelopeError::TooMany => f.write_str("too many recipients"),
        }
    }
}

impl Envelope {
    /// The envelope of `sender` and `recipients`, copied.
    pub fn new<R: AsRef<[u8]>>(sender: impl AsRef<[u8]>, recipients: &[R]) -> Envelope {
        Envelope {
            sender: sender.as_ref().to_vec(),
            recipients: recipients.iter().map(|r| r.as_ref().to_vec()).collect(),
        }
    }

    /// The bytes a caller writes to the queue program's fd 1.
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.sender, &self.recipients)
    }

    /// Read an envelope from the queue program's fd 1, up to and including its final
    /// `\0`.
    pub fn read(r: &mut impl BufRead) -> Result<Envelope, EnvelopeError> {
        if byte(r)? != b'F' {
            return Err(EnvelopeError::Format);
        }
        let sender = address(r)?;
        let mut recipients = Vec::new();
        loop {
            match byte(r)? {
                0 => return Ok(Envelope { sender, recipients }),
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
}

/// The envelope bytes for `sender` and `recipients`, without building an [`Envelope`].
/// An address must not hold a NUL (the reader would take it for the address's end);
/// SMTP paths, command-line and header addresses never do.
pub fn encode<R: AsRef<[u8]>>(sender: &[u8], recipients: &[R]) -> Vec<u8> {
    let size = 3
        + sender.len()
        + recipients
            .iter()
            .map(|r| r.as_ref().len() + 2)
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.push(b'F');
    out.extend_from_slice(sender);
    out.push(0);
    for r in recipients {
        out.push(b'T');
        out.extend_from_slice(r.as_ref());
        out.push(0);
    }
    out.push(0);
    out
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

    /// Read `input` whole and one byte at a time: the same answer either way.
    fn both(input: &[u8]) -> Result<Envelope, EnvelopeError> {
        let whole = Envelope::read(&mut &input[..]);
        let trickled = Envelope::read(&mut BufReader::with_capacity(1, Trickle(input)));
        assert_eq!(
            format!("{whole:?}"),
            format!("{trickled:?}"),
            "byte-at-a-time differs"
        );
        whole
    }

    #[test]
    fn reads_what_callers_write() {
        let env = Envelope::new(b"s@t", &[&b"a@b"[..], b"\xffx@y"]);
        let bytes = env.encode();
        assert_eq!(bytes, b"Fs@t\0Ta@b\0T\xffx@y\0\0");
        assert_eq!(both(&bytes).unwrap(), env);
        let bounce = both(b"F\0\0").unwrap();
        assert!(bounce.sender.is_empty() && bounce.recipients.is_empty());
        assert_eq!(encode(b"", &["a@b"]), b"F\0Ta@b\0\0");
        assert_eq!(
            encode(b"s@x", &["a@b".to_string(), "c@d".to_string()]),
            b"Fs@x\0Ta@b\0Tc@d\0\0"
        );
    }

    #[test]
    fn reading_stops_at_the_final_nul() {
        let mut input = &b"Fs\0Tr\0\0trailing"[..];
        assert_eq!(
            Envelope::read(&mut input).unwrap(),
            Envelope::new("s", &["r"])
        );
        assert_eq!(input, b"trailing");
    }

    #[test]
    fn every_early_end_is_a_read_error() {
        let bytes = encode(b"s@t", &["a@b"]);
        for n in 0..bytes.len() {
            let err = both(&bytes[..n]).unwrap_err();
            assert_eq!(err.exit_code(), exit_code::READ_ERROR, "cut at {n}");
            assert_eq!(err.to_string(), "envelope ended early");
        }
    }

    #[test]
    fn format_errors_and_limits() {
        let code = |input: &[u8]| both(input).unwrap_err().exit_code();
        assert_eq!(code(b"Ts@t\0\0"), exit_code::ENVELOPE_FORMAT);
        assert_eq!(code(b"Xa\0Tb\0\0"), exit_code::ENVELOPE_FORMAT);
        assert_eq!(code(b"Fs\0Xa\0\0"), exit_code::ENVELOPE_FORMAT);
        assert_eq!(code(b"Fa\0Ub\0\0"), exit_code::ENVELOPE_FORMAT);
        let longest = [b"F".to_vec(), vec![b'a'; MAX_ADDRESS], b"\0Tb\0\0".to_vec()].concat();
        assert!(both(&longest).is_ok());
        // 1002 bytes and the NUL: 1003, refused as qmail-queue does.
        let long = [
            b"F".to_vec(),
            vec![b'a'; MAX_ADDRESS + 1],
            b"\0Tb\0\0".to_vec(),
        ]
        .concat();
        assert_eq!(code(&long), exit_code::ADDRESS_TOO_LONG);
        let long_rcpt = format!("Fa\0T{}\0\0", "x".repeat(1003));
        assert_eq!(code(long_rcpt.as_bytes()), exit_code::ADDRESS_TOO_LONG);
        let most = encode(b"", &vec![b"x".to_vec(); MAX_RECIPIENTS]);
        assert!(Envelope::read(&mut &most[..]).is_ok());
        let many = encode(b"", &vec![b"x".to_vec(); MAX_RECIPIENTS + 1]);
        assert_eq!(
            Envelope::read(&mut &many[..]).unwrap_err().exit_code(),
            exit_code::REFUSED
        );
    }

    mod properties {
        use super::super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// Any bytes but NUL, up to the longest address.
        fn address() -> impl Strategy<Value = Vec<u8>> {
            vec(1u8..=255, 0..=MAX_ADDRESS)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Every envelope within the limits, whatever its bytes, reads back as
            /// itself, and nothing after it is read.
            #[test]
            fn envelopes_round_trip(
                sender in address(),
                recipients in vec(address(), 0..8),
                tail in vec(any::<u8>(), 0..16),
            ) {
                let env = Envelope { sender, recipients };
                let mut bytes = env.encode();
                let len = bytes.len();
                bytes.extend_from_slice(&tail);
                let mut input = &bytes[..];
                prop_assert_eq!(Envelope::read(&mut input).unwrap(), env);
                prop_assert_eq!(input.len(), bytes.len() - len);
            }

            /// Whatever arbitrary bytes read as re-encodes to exactly the bytes read.
            #[test]
            fn what_is_read_re_encodes_to_itself(
                bytes in prop_oneof![
                    vec(any::<u8>(), 0..64),
                    vec(prop_oneof![Just(0u8), Just(b'F'), Just(b'T'), any::<u8>()], 0..64),
                ]
            ) {
                let mut input = &bytes[..];
                if let Ok(env) = Envelope::read(&mut input) {
                    let consumed = bytes.len() - input.len();
                    prop_assert_eq!(env.encode(), &bytes[..consumed]);
                }
            }
        }
    }
}
