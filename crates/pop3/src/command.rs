//! A POP3 command line: a keyword, then (after one or more spaces) the argument.
//! Keywords are case-insensitive (RFC 1939 §3). Parsing never allocates more than the
//! line and rejects NUL bytes, which no POP3 command may contain.

/// Longest keyword we look at; every POP3 keyword has 3 or 4 characters.
pub const MAX_KEYWORD: usize = 16;

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// The keyword in upper case.
    pub keyword: String,
    /// Everything after the keyword and the spaces that follow it (may be empty).
    pub arg: &'a [u8],
}

impl Command<'_> {
    /// The argument split on spaces (for numbers).
    pub fn words(&self) -> Vec<&[u8]> {
        self.arg
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .collect()
    }
}

/// Why a line is not a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    Empty,
    Nul,
    Keyword,
}

/// Split a line (without its line ending) into keyword and argument.
pub fn parse(line: &[u8]) -> Result<Command<'_>, Bad> {
    if line.contains(&0) {
        return Err(Bad::Nul);
    }
    let (word, rest) = match line.iter().position(|&b| b == b' ') {
        Some(at) => (&line[..at], &line[at + 1..]),
        None => (line, &line[line.len()..]),
    };
    if word.is_empty() {
        return Err(Bad::Empty);
    }
    if word.len() > MAX_KEYWORD || !word.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Bad::Keyword);
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    Ok(Command {
        keyword: String::from_utf8_lossy(word).to_ascii_uppercase(),
        arg: &rest[start..],
    })
}

/// Largest message number or line count we parse (more digits is a syntax error).
const MAX_DIGITS: usize = 18;

/// A decimal number argument (for TOP's line count; 0 allowed).
pub fn number(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > MAX_DIGITS || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

/// A message number, 1-based, checked against `count`; the error is the reply text.
pub fn message_number(word: Option<&[u8]>, count: usize) -> Result<usize, &'static str> {
    let word = word.ok_or("syntax error: message number required")?;
    let n = number(word).ok_or("syntax error: bad message number")?;
    if n == 0 {
        return Err("messages are counted from 1");
    }
    if n > count as u64 {
        return Err("no such message");
    }
    Ok(n as usize - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_case_insensitive_and_spaces_skipped() {
        let c = parse(b"uSeR   alice@example.test").unwrap();
        assert_eq!(c.keyword, "USER");
        assert_eq!(c.arg, b"alice@example.test");
        let c = parse(b"PASS a b  c").unwrap();
        assert_eq!(c.arg, b"a b  c", "a password keeps its inner spaces");
        let c = parse(b"STAT").unwrap();
        assert_eq!((c.keyword.as_str(), c.arg), ("STAT", &b""[..]));
        assert_eq!(
            parse(b"TOP 1  5").unwrap().words(),
            vec![&b"1"[..], &b"5"[..]]
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(parse(b""), Err(Bad::Empty));
        assert_eq!(parse(b" STAT"), Err(Bad::Empty));
        assert_eq!(parse(b"ST\0AT"), Err(Bad::Nul));
        assert_eq!(parse(b"PASS x\0y"), Err(Bad::Nul));
        assert_eq!(parse(b"ST-AT"), Err(Bad::Keyword));
        assert_eq!(parse(&[b'A'; 17]), Err(Bad::Keyword));
    }

    #[test]
    fn message_numbers() {
        assert_eq!(message_number(Some(b"1"), 3), Ok(0));
        assert_eq!(message_number(Some(b"3"), 3), Ok(2));
        assert_eq!(message_number(Some(b"4"), 3), Err("no such message"));
        assert_eq!(
            message_number(Some(b"0"), 3),
            Err("messages are counted from 1")
        );
        assert!(message_number(Some(b"-1"), 3).is_err());
        assert!(message_number(Some(b"1x"), 3).is_err());
        assert!(message_number(Some(b"99999999999999999999999"), 3).is_err());
        assert!(message_number(None, 3).is_err());
        assert_eq!(number(b"0"), Some(0));
    }
}
