//! The envelope as the qmail-queue protocol carries it on fd 1: `F<sender>\0`, then
//! `T<recipient>\0` for each recipient, then one more `\0` (interop §5.1).

/// Longest address we accept (qmail-queue refuses 1003 bytes and more, exit 11).
pub const MAX_ADDRESS: usize = 1002;
/// Most recipients in one envelope.
pub const MAX_RECIPIENTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    pub sender: String,
    pub recipients: Vec<String>,
}

/// Why an envelope was refused, as the qmail-queue exit code it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Ended before the final `\0` (54).
    Truncated,
    /// Not `F…` / `T…` records (91).
    Format,
    /// An address of 1003 bytes or more (11).
    TooLong,
}

impl Envelope {
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut records = Vec::new();
        let mut rest = bytes;
        loop {
            let end = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or(EnvelopeError::Truncated)?;
            let record = &rest[..end];
            rest = &rest[end + 1..];
            if record.is_empty() && !records.is_empty() {
                break;
            }
            if record.len() > MAX_ADDRESS + 1 {
                return Err(EnvelopeError::TooLong);
            }
            records.push(record);
            if records.len() > MAX_RECIPIENTS + 1 {
                return Err(EnvelopeError::Format);
            }
        }
        let mut it = records.into_iter();
        let sender = it
            .next()
            .and_then(|r| r.strip_prefix(b"F"))
            .ok_or(EnvelopeError::Format)?;
        let mut env = Envelope {
            sender: String::from_utf8_lossy(sender).into_owned(),
            recipients: Vec::new(),
        };
        for r in it {
            let rcpt = r.strip_prefix(b"T").ok_or(EnvelopeError::Format)?;
            env.recipients
                .push(String::from_utf8_lossy(rcpt).into_owned());
        }
        if env.recipients.is_empty() {
            return Err(EnvelopeError::Format);
        }
        Ok(env)
    }

    /// The protocol bytes for this envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.push(b'F');
        out.extend_from_slice(self.sender.as_bytes());
        out.push(0);
        for r in &self.recipients {
            out.push(b'T');
            out.extend_from_slice(r.as_bytes());
            out.push(0);
        }
        out.push(0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let env = Envelope {
            sender: "a@b.test".into(),
            recipients: vec!["c@d.test".into(), "e@f.test".into()],
        };
        assert_eq!(Envelope::parse(&env.to_bytes()), Ok(env.clone()));
        let bounce = Envelope {
            sender: String::new(),
            recipients: vec!["x@y.test".into()],
        };
        assert_eq!(Envelope::parse(&bounce.to_bytes()), Ok(bounce));
    }

    #[test]
    fn errors_map_to_qmail_queue_cases() {
        assert_eq!(Envelope::parse(b"Fa\0Tb\0"), Err(EnvelopeError::Truncated));
        assert_eq!(Envelope::parse(b"Xa\0Tb\0\0"), Err(EnvelopeError::Format));
        assert_eq!(Envelope::parse(b"Fa\0Ub\0\0"), Err(EnvelopeError::Format));
        let long = format!("Fa\0T{}\0\0", "x".repeat(1003));
        assert_eq!(
            Envelope::parse(long.as_bytes()),
            Err(EnvelopeError::TooLong)
        );
    }
}
