//! Command lines: the verb table and splitting a line into verb and argument. The
//! `MAIL FROM:` / `RCPT TO:` argument is parsed by [`postern_wire::smtp_path`].

/// The commands postern-smtpd knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    Auth,
    StartTls,
}

/// The verb table: every command the server answers other than with 502.
pub static VERBS: &[(&str, Verb)] = &[
    ("HELO", Verb::Helo),
    ("EHLO", Verb::Ehlo),
    ("MAIL", Verb::Mail),
    ("RCPT", Verb::Rcpt),
    ("DATA", Verb::Data),
    ("RSET", Verb::Rset),
    ("NOOP", Verb::Noop),
    ("QUIT", Verb::Quit),
    ("HELP", Verb::Help),
    ("VRFY", Verb::Vrfy),
    ("AUTH", Verb::Auth),
    ("STARTTLS", Verb::StartTls),
];

/// Split a command line into its verb (looked up case-insensitively) and argument
/// (after one space, trailing spaces removed). `None` for an unknown verb.
pub fn split(line: &[u8]) -> (Option<Verb>, &[u8]) {
    let (word, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    let mut end = arg.len();
    while end > 0 && arg[end - 1] == b' ' {
        end -= 1;
    }
    let verb = VERBS
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(word))
        .map(|(_, v)| *v);
    (verb, &arg[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive_and_from_the_table() {
        assert_eq!(split(b"ehlo x.test"), (Some(Verb::Ehlo), &b"x.test"[..]));
        assert_eq!(split(b"QuIt"), (Some(Verb::Quit), &b""[..]));
        assert_eq!(
            split(b"MAIL FROM:<a@b>  "),
            (Some(Verb::Mail), &b"FROM:<a@b>"[..])
        );
        assert_eq!(split(b"EXPN list").0, None);
        assert_eq!(split(b"BDAT 10").0, None);
        assert_eq!(split(b"").0, None);
    }
}
