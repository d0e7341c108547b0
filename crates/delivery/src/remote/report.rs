//! postern-remote's report on fd 1, in qmail-remote's format (interop §6.3): one record
//! per recipient in argument order — `r` accepted, `h` refused for good, `s` deferred —
//! then one message record — `K` accepted, `Z` temporary failure, `D` permanent failure
//! — each a letter, free text (may contain `\n`), and a terminating NUL. On a failure
//! before any RCPT there are no recipient records.

use std::io::{self, Write};

/// Largest record text kept when reading a report.
pub const MAX_TEXT: usize = 10_000;

/// A whole report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub rcpts: Vec<(u8, String)>,
    pub letter: u8,
    pub text: String,
}

/// Write a report.
pub fn write(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    let mut buf = Vec::new();
    for (letter, text) in &r.rcpts {
        buf.push(*letter);
        buf.extend(text.bytes().filter(|&b| b != 0));
        buf.push(0);
    }
    buf.push(r.letter);
    buf.extend(r.text.bytes().filter(|&b| b != 0));
    buf.push(0);
    out.write_all(&buf)?;
    out.flush()
}

/// What one recipient's delivery came to: `K`, `Z` or `D` and the text, as qmail-rspawn
/// combines the records: `h` → D, `s` → Z, `r` → the message letter; no record for the
/// recipient → the message letter. A report without a message record is a `Z`.
pub fn per_recipient(raw: &[u8], count: usize) -> Vec<(u8, String)> {
    let records: Vec<(u8, String)> = raw
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| {
            (
                r[0],
                String::from_utf8_lossy(&r[1..r.len().min(MAX_TEXT + 1)]).into_owned(),
            )
        })
        .collect();
    let msg = records
        .iter()
        .find(|(l, _)| matches!(l, b'K' | b'Z' | b'D'))
        .cloned();
    let rcpt_records: Vec<&(u8, String)> = records
        .iter()
        .filter(|(l, _)| matches!(l, b'r' | b'h' | b's'))
        .collect();
    let (mletter, mtext) = msg.unwrap_or((b'Z', "postern-remote gave no result (#4.3.0)".into()));
    (0..count)
        .map(|i| match rcpt_records.get(i) {
            Some((b'h', t)) => (b'D', t.clone()),
            Some((b's', t)) => (b'Z', t.clone()),
            Some(_) if mletter == b'K' => (b'K', mtext.clone()),
            _ => (mletter, mtext.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_combination() {
        let r = Report {
            rcpts: vec![
                (b'r', String::new()),
                (b'h', "no".into()),
                (b's', "later".into()),
            ],
            letter: b'K',
            text: "ok\nsaid".into(),
        };
        let mut buf = Vec::new();
        write(&mut buf, &r).unwrap();
        assert_eq!(buf, b"r\0hno\0slater\0Kok\nsaid\0");
        assert_eq!(
            per_recipient(&buf, 3),
            vec![
                (b'K', "ok\nsaid".to_string()),
                (b'D', "no".into()),
                (b'Z', "later".into())
            ]
        );
        assert_eq!(
            per_recipient(b"Zconnect failed\0", 2),
            vec![(b'Z', "connect failed".to_string()); 2]
        );
        assert_eq!(per_recipient(b"", 1)[0].0, b'Z');
    }
}
