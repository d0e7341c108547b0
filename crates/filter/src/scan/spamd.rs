//! SpamAssassin's spamc/spamd protocol, by hand: `SYMBOLS SPAMC/1.5`, `Content-length`,
//! and `User` when outbound settings name one; the message; then we close our side. The
//! answer is `SPAMD/1.1 0 EX_OK`, `Spam: True ; 15.0 / 5.0` and, after an empty line,
//! the names of the rules that hit, comma-separated.

use crate::scan::engines::Endpoint;
use crate::scan::spam::{Facts, Score};
use std::io::{Read, Write};
use std::time::Duration;

/// Longest answer we read (the symbol list is short).
pub const MAX_REPLY: u64 = 64 * 1024;

/// The request's head, up to the empty line.
pub fn request_head(message_len: usize, facts: &Facts) -> Vec<u8> {
    let mut head = format!("SYMBOLS SPAMC/1.5\r\nContent-length: {message_len}\r\n");
    // A user name is one word: spamd would refuse anything else as a bad header.
    if let Some(user) = facts.settings.filter(|u| {
        !u.is_empty()
            && u.bytes()
                .all(|b| b.is_ascii_graphic() && b != b':' && b != b'/')
    }) {
        head.push_str(&format!("User: {user}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Ask spamd at `endpoint` about `message`, within `limit` for each step.
pub fn check(
    endpoint: &Endpoint,
    message: &[u8],
    facts: &Facts,
    limit: Duration,
) -> Result<Score, String> {
    let io = |e: std::io::Error| postern_common::exit::describe_io(&e);
    let mut s = endpoint.connect(limit).map_err(io)?;
    s.write_all(&request_head(message.len(), facts))
        .map_err(io)?;
    s.write_all(message).map_err(io)?;
    s.flush().map_err(io)?;
    s.shutdown_write().map_err(io)?;
    let mut reply = Vec::new();
    s.take(MAX_REPLY + 1).read_to_end(&mut reply).map_err(io)?;
    if reply.len() as u64 > MAX_REPLY {
        return Err(format!("answer longer than {MAX_REPLY} bytes"));
    }
    parse_reply(&reply)
}

/// `SPAMD/1.x 0 EX_OK`, a `Spam:` header, the symbols.
pub fn parse_reply(reply: &[u8]) -> Result<Score, String> {
    // Cut as bytes: 200 bytes may end inside a character (a fuzzed answer did).
    let shown = |s: &str| postern_common::logline::printable(&s.as_bytes()[..s.len().min(200)]);
    let text = String::from_utf8_lossy(reply);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut words = status.split_whitespace();
    let (Some(proto), Some(code)) = (words.next(), words.next()) else {
        return Err(format!("no spamd answer: {}", shown(status)));
    };
    if !proto.starts_with("SPAMD/") {
        return Err(format!("no spamd answer: {}", shown(status)));
    }
    if code != "0" {
        return Err(format!("spamd answered {}", shown(status)));
    }
    let spam = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("spam"))
        .map(|(_, v)| v.trim())
        .ok_or_else(|| format!("spamd answer without Spam: {}", shown(head)))?;
    // `True ; 15.0 / 5.0`
    let numbers = spam
        .split_once(';')
        .and_then(|(_, n)| n.split_once('/'))
        .and_then(|(s, r)| Some((s.trim().parse::<f64>().ok()?, r.trim().parse::<f64>().ok()?)))
        .filter(|(s, r)| s.is_finite() && r.is_finite());
    let Some((score, required)) = numbers else {
        return Err(format!("bad Spam: header: {}", shown(spam)));
    };
    let mut symbols: Vec<String> = body
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    symbols.sort();
    Ok(Score {
        score,
        required,
        action: None,
        symbols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_answer_cut_inside_a_character_is_an_error_not_a_panic() {
        // Found by the spam_reply fuzz target: 199 bytes, then a 3-byte character.
        let mut status = "x".repeat(199).into_bytes();
        status.extend_from_slice("\u{20ac}\r\n\r\n".as_bytes());
        assert!(parse_reply(&status).is_err());
        let mut spam = b"SPAMD/1.1 0 EX_OK\r\nSpam: ".to_vec();
        spam.extend_from_slice("€".repeat(100).as_bytes());
        spam.extend_from_slice(b"\r\n\r\n");
        assert!(parse_reply(&spam)
            .unwrap_err()
            .starts_with("bad Spam: header: "));
    }

    fn facts(settings: Option<&str>) -> Facts<'_> {
        Facts {
            sender: b"a@b.test",
            recipients: &[],
            client_ip: None,
            client_host: None,
            helo: None,
            auth_user: None,
            settings,
        }
    }

    #[test]
    fn the_request() {
        assert_eq!(
            request_head(12, &facts(None)),
            b"SYMBOLS SPAMC/1.5\r\nContent-length: 12\r\n\r\n"
        );
        assert_eq!(
            request_head(0, &facts(Some("outbound"))),
            b"SYMBOLS SPAMC/1.5\r\nContent-length: 0\r\nUser: outbound\r\n\r\n"
        );
        assert_eq!(
            request_head(0, &facts(Some("a b"))),
            b"SYMBOLS SPAMC/1.5\r\nContent-length: 0\r\n\r\n",
            "never a header spamd would refuse"
        );
    }

    #[test]
    fn reads_the_answer() {
        let s = parse_reply(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 24\r\nSpam: True ; 1005.2 / 5.0\r\n\r\nMISSING_DATE,GTUBE,NO_RELAYS").unwrap();
        assert_eq!((s.score, s.required), (1005.2, 5.0));
        assert_eq!(s.symbols, vec!["GTUBE", "MISSING_DATE", "NO_RELAYS"]);
        assert_eq!(s.action, None);
        let s = parse_reply(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -0.0 / 5.0\r\n\r\n").unwrap();
        assert_eq!(s.score, 0.0);
        assert!(s.symbols.is_empty());
    }

    #[test]
    fn anything_else_is_an_error() {
        for bad in [
            &b""[..],
            b"SPAMD/1.0 76 Bad header line: x\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\n\r\n",
            b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; lots / 5.0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nSpam: True ; 1 / 5\r\n\r\n",
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
