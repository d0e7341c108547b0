//! A delivery's outcome: delivered, deferred (a temporary failure, tried again later) or
//! failed (a permanent failure, bounced), with the text that says why.
//!
//! Inside a program an outcome is an [`Outcome`]; the letters `K` (delivered), `Z`
//! (deferred) and `D` (failed) of qmail's interfaces exist only where it crosses a pipe
//! or socket, written and read here: postern-local's worker answer (a letter then the
//! text, docs/postern-local.md, *Worker mode*) and the message record of
//! postern-remote's report ([`crate::delivery_report`], docs/postern-remote.md).

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Delivered (`K`).
    Delivered,
    /// A temporary failure (`Z`): tried again later.
    Deferred,
    /// A permanent failure (`D`): bounced.
    Failed,
}

impl Verdict {
    /// The letter on the wire.
    pub fn letter(self) -> u8 {
        match self {
            Verdict::Delivered => b'K',
            Verdict::Deferred => b'Z',
            Verdict::Failed => b'D',
        }
    }

    /// The verdict a letter stands for; `None` for any other byte.
    pub fn from_letter(letter: u8) -> Option<Verdict> {
        match letter {
            b'K' => Some(Verdict::Delivered),
            b'Z' => Some(Verdict::Deferred),
            b'D' => Some(Verdict::Failed),
            _ => None,
        }
    }
}

/// A verdict and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub text: String,
}

impl Outcome {
    pub fn new(verdict: Verdict, text: impl Into<String>) -> Outcome {
        Outcome {
            verdict,
            text: text.into(),
        }
    }

    pub fn delivered(text: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Delivered, text)
    }

    pub fn deferred(text: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Deferred, text)
    }

    pub fn failed(text: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Failed, text)
    }

    /// The letter then the text, as is (a caller that needs one line or a bound cuts
    /// the text first).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.text.len());
        out.push(self.verdict.letter());
        out.extend_from_slice(self.text.as_bytes());
        out
    }

    /// Read [`Outcome::encode`]'s bytes: a `K`, `Z` or `D`, then the text (invalid UTF-8
    /// replaced). `None` when empty or another letter.
    pub fn decode(bytes: &[u8]) -> Option<Outcome> {
        let (&letter, text) = bytes.split_first()?;
        Verdict::from_letter(letter)
            .map(|verdict| Outcome::new(verdict, String::from_utf8_lossy(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_letters_on_the_wire() {
        assert_eq!(Outcome::delivered("ok").encode(), b"Kok");
        assert_eq!(Outcome::deferred("later").encode(), b"Zlater");
        assert_eq!(Outcome::failed("no").encode(), b"Dno");
        assert_eq!(
            Outcome::decode(b"Dno mailbox"),
            Some(Outcome::failed("no mailbox"))
        );
        assert_eq!(Outcome::decode(b"K"), Some(Outcome::delivered("")));
        assert_eq!(Outcome::decode(b"Xwhat"), None);
        assert_eq!(Outcome::decode(b""), None);
        for b in 0..=255u8 {
            if let Some(v) = Verdict::from_letter(b) {
                assert_eq!(v.letter(), b);
            }
        }
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Delivered),
            Just(Verdict::Deferred),
            Just(Verdict::Failed)
        ]
    }

    proptest! {
        #[test]
        fn outcomes_round_trip(verdict in verdict(), text in any::<String>()) {
            let o = Outcome::new(verdict, text);
            prop_assert_eq!(Outcome::decode(&o.encode()), Some(o));
        }

        /// Whatever bytes arrive: what is read is written back as the same bytes (text
        /// that is UTF-8), and reads the same again.
        #[test]
        fn arbitrary_bytes_read_back_the_same(
            // Random bytes, and a verdict's letter followed by random bytes.
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                (verdict(), proptest::collection::vec(any::<u8>(), 0..32))
                    .prop_map(|(v, text)| [vec![v.letter()], text].concat()),
            ],
        ) {
            if let Some(o) = Outcome::decode(&bytes) {
                let again = o.encode();
                if std::str::from_utf8(&bytes[1..]).is_ok() {
                    prop_assert_eq!(&again, &bytes);
                }
                prop_assert_eq!(Outcome::decode(&again), Some(o));
            } else {
                prop_assert!(bytes.first().and_then(|&b| Verdict::from_letter(b)).is_none());
            }
        }
    }
}
