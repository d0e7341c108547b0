//! postern-remote's report on fd 1, which postern-send reads (docs/postern-remote.md), in
//! qmail-remote's format: one record per recipient in argument order — `r` accepted,
//! `h` refused for good, `s` deferred — then one message record — `K` accepted, `Z`
//! temporary failure, `D` permanent failure ([`crate::verdict`]) — each a letter, free
//! text (may contain `\n`), and a terminating NUL. On a failure before any RCPT there are
//! no recipient records.

use crate::verdict::{Outcome, Verdict};
use std::io::{self, Write};

/// Largest record text kept when reading a report.
pub const MAX_TEXT: usize = 10_000;

/// What the server said to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RcptVerdict {
    /// RCPT accepted (`r`): the message record says what became of it.
    Accepted,
    /// Refused for good (`h`).
    Refused,
    /// Refused for now (`s`).
    Deferred,
}

impl RcptVerdict {
    /// The letter on the wire.
    pub fn letter(self) -> u8 {
        match self {
            RcptVerdict::Accepted => b'r',
            RcptVerdict::Refused => b'h',
            RcptVerdict::Deferred => b's',
        }
    }

    /// The recipient verdict a letter stands for; `None` for any other byte.
    pub fn from_letter(letter: u8) -> Option<RcptVerdict> {
        match letter {
            b'r' => Some(RcptVerdict::Accepted),
            b'h' => Some(RcptVerdict::Refused),
            b's' => Some(RcptVerdict::Deferred),
            _ => None,
        }
    }
}

/// A whole report: the recipient records and the message record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rcpts: Vec<(RcptVerdict, String)>,
    pub verdict: Verdict,
    pub text: String,
}

/// A report's bytes. A NUL inside a text is left out (it would end the record).
pub fn encode(r: &Report) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut record = |letter: u8, text: &str| {
        buf.push(letter);
        buf.extend(text.bytes().filter(|&b| b != 0));
        buf.push(0);
    };
    for (verdict, text) in &r.rcpts {
        record(verdict.letter(), text);
    }
    record(r.verdict.letter(), &r.text);
    buf
}

/// Write a report in one write, and flush it.
pub fn write(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    out.write_all(&encode(r))?;
    out.flush()
}

/// The records of a report as read, tolerantly: texts cut at [`MAX_TEXT`] bytes,
/// records with another letter skipped, the first message record taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    pub rcpts: Vec<(RcptVerdict, String)>,
    /// `None`: the report has no message record (postern-remote died, say).
    pub message: Option<Outcome>,
}

/// Read a report's bytes.
pub fn read(raw: &[u8]) -> Records {
    let mut records = Records {
        rcpts: Vec::new(),
        message: None,
    };
    for r in raw.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let text = || String::from_utf8_lossy(&r[1..r.len().min(MAX_TEXT + 1)]).into_owned();
        if let Some(v) = RcptVerdict::from_letter(r[0]) {
            records.rcpts.push((v, text()));
        } else if let Some(v) = Verdict::from_letter(r[0]) {
            records
                .message
                .get_or_insert_with(|| Outcome::new(v, text()));
        }
    }
    records
}

/// What each of `count` recipients' delivery came to, as qmail-rspawn combines the
/// records: `h` → failed, `s` → deferred, `r` → the message record; no record for the
/// recipient → the message record. A report without a message record is a deferral.
pub fn per_recipient(raw: &[u8], count: usize) -> Vec<Outcome> {
    let records = read(raw);
    let message = records
        .message
        .unwrap_or_else(|| Outcome::deferred("postern-remote gave no result (#4.3.0)"));
    (0..count)
        .map(|i| match records.rcpts.get(i) {
            Some((RcptVerdict::Refused, t)) => Outcome::failed(t.clone()),
            Some((RcptVerdict::Deferred, t)) => Outcome::deferred(t.clone()),
            Some((RcptVerdict::Accepted, _)) | None => message.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_combination() {
        let r = Report {
            rcpts: vec![
                (RcptVerdict::Accepted, String::new()),
                (RcptVerdict::Refused, "no".into()),
                (RcptVerdict::Deferred, "later".into()),
            ],
            verdict: Verdict::Delivered,
            text: "ok\nsaid".into(),
        };
        let mut buf = Vec::new();
        write(&mut buf, &r).unwrap();
        assert_eq!(buf, b"r\0hno\0slater\0Kok\nsaid\0");
        assert_eq!(
            per_recipient(&buf, 3),
            vec![
                Outcome::delivered("ok\nsaid"),
                Outcome::failed("no"),
                Outcome::deferred("later")
            ]
        );
        assert_eq!(
            per_recipient(b"Zconnect failed\0", 2),
            vec![Outcome::deferred("connect failed"); 2]
        );
        assert_eq!(per_recipient(b"", 1)[0].verdict, Verdict::Deferred);
        // The first message record counts; unknown letters are skipped.
        assert_eq!(
            per_recipient(b"xwhat\0Dno\0Kyes\0", 1),
            vec![Outcome::failed("no")]
        );
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Delivered),
            Just(Verdict::Deferred),
            Just(Verdict::Failed)
        ]
    }

    fn rcpt_verdict() -> impl Strategy<Value = RcptVerdict> {
        prop_oneof![
            Just(RcptVerdict::Accepted),
            Just(RcptVerdict::Refused),
            Just(RcptVerdict::Deferred)
        ]
    }

    /// A text as it survives the report: no NUL.
    fn text() -> impl Strategy<Value = String> {
        any::<String>().prop_map(|t| t.replace('\0', ""))
    }

    proptest! {
        #[test]
        fn reports_round_trip(
            rcpts in vec((rcpt_verdict(), text()), 0..5),
            verdict in verdict(),
            text in text(),
        ) {
            let r = Report { rcpts, verdict, text };
            let records = read(&encode(&r));
            prop_assert_eq!(&records.rcpts, &r.rcpts);
            prop_assert_eq!(records.message, Some(Outcome::new(r.verdict, r.text)));
        }

        /// Whatever bytes postern-remote's fd 1 held: every recipient gets an outcome,
        /// and the records read, written again, read the same.
        #[test]
        fn arbitrary_bytes_read_back_the_same(
            // Random bytes, and bytes rich in the report's own letters and NULs.
            bytes in prop_oneof![
                vec(any::<u8>(), 0..200),
                vec(prop_oneof![
                    Just(0u8), Just(b'K'), Just(b'Z'), Just(b'D'),
                    Just(b'r'), Just(b'h'), Just(b's'), any::<u8>()
                ], 0..60),
            ],
            count in 0usize..5,
        ) {
            prop_assert_eq!(per_recipient(&bytes, count).len(), count);
            let records = read(&bytes);
            if let Some(message) = records.message.clone() {
                let again = Report {
                    rcpts: records.rcpts.clone(),
                    verdict: message.verdict,
                    text: message.text,
                };
                prop_assert_eq!(read(&encode(&again)), records);
            }
        }
    }
}
