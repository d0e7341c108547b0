//! `control/filter.rules`: the content policy, in qmail-scanner's quarantine-attachments
//! format — one rule per line, `PATTERN<TAB>SIZE-OR-TYPE<TAB>DESCRIPTION`:
//!
//! - `.exe<TAB>0<TAB>…`: an attachment whose (decoded) file name ends in `.exe`, any size;
//! - `readme.exe<TAB>29568<TAB>…`: an attachment with exactly that name and size
//!   (the classic way to stop one known worm without blocking a whole extension);
//! - `PATTERN<TAB>Virus-HEADER<TAB>…`: a header rule. `HEADER` is a header name (`Subject`,
//!   `Date`, `MIME-Version`, …) or one of `MAILFROM` (the envelope sender), `To` (the
//!   envelope recipients and the To: header), `TCPREMOTEIP` (the client's address) and
//!   `Content-Type` (the type of every MIME part). `PATTERN` is a case-insensitive regular
//!   expression searched in the value, or `{N,}` / `{N,M}` for a value length in bytes —
//!   the guard against header overflow attempts (`{100,}` on `Date`).
//!
//! Names match case-insensitively, after trailing dots and spaces are removed (Windows
//! ignores them, so `virus.exe.` is `virus.exe`). Blank lines and `#` comments are
//! ignored; a bad line is an error naming its number, and the caller keeps the old rules.
//!
//! Compiling a regular expression is most of what postern-scan would spend per message
//! (a Unicode `.{100,}` is a hundred UTF-8 automata: 2 million instructions each, at
//! every start), so the two shapes real rule files use most are matched without one,
//! exactly as the regex would match them: `.{N,}` / `.{N,M}` (some line of the value has
//! N characters — the shipped header-overflow rules) and plain text (a case-insensitive
//! substring, `I LOVE YOU`, `message/partial`). Every other pattern is a regex.

use postern_common::{Error, Result};
use regex::{Regex, RegexBuilder};

/// Largest compiled size of one header pattern (bounds memory per rule).
pub const MAX_REGEX_SIZE: usize = 256 * 1024;
/// Largest `N` (and `M`) of a `.{N,}` / `.{N,M}` pattern matched without a regex: the
/// regex of every such pattern compiles within [`MAX_REGEX_SIZE`] (a test says so), so
/// a pattern that would fail as a regex is never taken for one that does not.
pub const MAX_LINE_RUN: usize = 200;
/// Longest plain-text pattern matched without a regex (the same reason).
pub const MAX_LITERAL: usize = 256;

/// What a header rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    MailFrom,
    To,
    TcpRemoteIp,
    ContentType,
    /// Any other header, by name (stored lower-case).
    Header(String),
}

/// How a header rule matches a value.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Regex(Regex),
    /// `.{N,}` or `.{N,M}` as a regex searches: some line of the value (`.` is any
    /// character but `\n`) has at least `min` characters.
    LineRun {
        min: usize,
    },
    /// A pattern of plain text as the case-insensitive regex searches it.
    Literal(Literal),
    /// Value length in bytes within `min..=max`.
    Length {
        min: usize,
        max: usize,
    },
}

impl ValueMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Regex(re) => re.is_match(value),
            ValueMatch::LineRun { min } => {
                value.len() >= *min && value.split('\n').any(|l| l.chars().count() >= *min)
            }
            ValueMatch::Literal(text) => text.found_in(value),
            ValueMatch::Length { min, max } => (*min..=*max).contains(&value.len()),
        }
    }
}

/// Plain text — printable ASCII without a regex metacharacter — searched for as the
/// regex crate's case-insensitive search does: Unicode simple case folding, under which
/// an ASCII letter matches its other case and nothing else, except `k` (also U+212A
/// KELVIN SIGN) and `s` (also U+017F LATIN SMALL LETTER LONG S). A test holds this
/// against the regex crate for every character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    /// The pattern, lower-case.
    folded: Vec<u8>,
}

impl Literal {
    /// The pattern as plain text, if it is such (and short enough).
    fn parse(pattern: &str) -> Option<Literal> {
        let plain = |b: u8| (b' '..=b'~').contains(&b) && !b"\\.+*?()|[]{}^$".contains(&b);
        (pattern.len() <= MAX_LITERAL && pattern.bytes().all(plain)).then(|| Literal {
            folded: pattern.to_ascii_lowercase().into_bytes(),
        })
    }

    /// The ASCII byte a character is case-insensitively equal to, or 0xff (never in a
    /// pattern) for one that equals none.
    fn fold(c: char) -> u8 {
        match c {
            '\u{212a}' => b'k',
            '\u{17f}' => b's',
            c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => 0xff,
        }
    }

    fn found_in(&self, value: &str) -> bool {
        if value.len() < self.folded.len() {
            // A character folded to ASCII is at least one byte long.
            return false;
        }
        let folded: Vec<u8> = if value.is_ascii() {
            value.as_bytes().to_ascii_lowercase()
        } else {
            value.chars().map(Self::fold).collect()
        };
        crate::scan::bytes::contains(&folded, &self.folded)
    }
}

/// How an attachment rule matches a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameMatch {
    /// `.ext`: the name ends in it.
    Extension(String),
    /// The whole name.
    Exact(String),
}

#[derive(Debug, Clone)]
pub enum RuleKind {
    /// `size` 0 = any size.
    Attachment {
        name: NameMatch,
        size: u64,
    },
    Header {
        field: Field,
        value: ValueMatch,
    },
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub line: usize,
    pub pattern: String,
    pub kind: RuleKind,
    pub description: String,
}

/// A file name as rules compare it: lower-case, trailing dots and spaces removed.
pub fn normalise_name(name: &str) -> String {
    name.trim_end_matches(['.', ' ']).to_lowercase()
}

impl NameMatch {
    pub fn matches(&self, name: &str) -> bool {
        let name = normalise_name(name);
        match self {
            NameMatch::Extension(ext) => name.ends_with(ext.as_str()),
            NameMatch::Exact(exact) => name == *exact,
        }
    }
}

fn length_range(pattern: &str) -> Option<(usize, usize)> {
    let inner = pattern.strip_prefix('{')?.strip_suffix('}')?;
    let (lo, hi) = inner.split_once(',')?;
    let min = lo.trim().parse().ok()?;
    let max = if hi.trim().is_empty() {
        usize::MAX
    } else {
        hi.trim().parse().ok()?
    };
    (min <= max).then_some((min, max))
}

/// `.{N,}` or `.{N,M}` (N ≤ M ≤ [`MAX_LINE_RUN`], digits only): its `N`.
fn line_run(pattern: &str) -> Option<usize> {
    let inner = pattern.strip_prefix(".{")?.strip_suffix('}')?;
    let (lo, hi) = inner.split_once(',')?;
    let number = |t: &str| {
        (!t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<usize>().ok())
            .flatten()
    };
    let min = number(lo)?;
    let max = if hi.is_empty() { min } else { number(hi)? };
    (min <= max && max <= MAX_LINE_RUN).then_some(min)
}

/// The regex a header rule's pattern is (when it is not `{N,M}`): case-insensitive,
/// size-limited.
pub fn header_regex(pattern: &str) -> std::result::Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(MAX_REGEX_SIZE)
        .build()
}

/// How a header rule's pattern matches: `{N,M}` a length, else the regex — matched
/// without compiling it when it is `.{N,M}` or plain text.
fn value_match(pattern: &str) -> std::result::Result<ValueMatch, regex::Error> {
    Ok(if let Some((min, max)) = length_range(pattern) {
        ValueMatch::Length { min, max }
    } else if let Some(min) = line_run(pattern) {
        ValueMatch::LineRun { min }
    } else if let Some(text) = Literal::parse(pattern) {
        ValueMatch::Literal(text)
    } else {
        ValueMatch::Regex(header_regex(pattern)?)
    })
}

fn parse_line(number: usize, line: &str) -> Result<Rule> {
    let bad = |why: &str| Error::perm(format!("control/filter.rules:{number}: {why}"));
    let mut cols = line.splitn(3, '\t');
    let pattern = cols.next().unwrap_or("").trim();
    let kind_text = cols
        .next()
        .ok_or_else(|| bad("expected PATTERN<TAB>SIZE-OR-TYPE<TAB>DESCRIPTION"))?
        .trim();
    let description = cols.next().unwrap_or("").trim().to_string();
    if pattern.is_empty() {
        return Err(bad("empty pattern"));
    }
    let kind = if let Some(header) = kind_text.strip_prefix("Virus-") {
        let field = match header.to_ascii_lowercase().as_str() {
            "" => return Err(bad("Virus- needs a header name")),
            "mailfrom" => Field::MailFrom,
            "to" => Field::To,
            "tcpremoteip" => Field::TcpRemoteIp,
            "content-type" => Field::ContentType,
            other
                if other
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                Field::Header(other.to_string())
            }
            _ => return Err(bad("bad header name after Virus-")),
        };
        let value = value_match(pattern).map_err(|e| {
            bad(&format!(
                "bad pattern: {}",
                e.to_string().lines().last().unwrap_or("")
            ))
        })?;
        RuleKind::Header { field, value }
    } else {
        let size: u64 = kind_text
            .parse()
            .map_err(|_| bad("second column must be a size or Virus-HEADER"))?;
        let norm = normalise_name(pattern);
        let name = if norm.starts_with('.') {
            NameMatch::Extension(norm)
        } else {
            NameMatch::Exact(norm)
        };
        RuleKind::Attachment { name, size }
    };
    Ok(Rule {
        line: number,
        pattern: pattern.to_string(),
        kind,
        description,
    })
}

/// Parse the whole file; the first bad line is an error.
pub fn parse(text: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.trim_end_matches(['\r', ' ']);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        rules.push(parse_line(i + 1, line)?);
    }
    Ok(rules)
}

/// The shipped default policy (`control/filter.rules`: the classic unsafe-extension list).
pub const DEFAULT_RULES: &str = include_str!("../../../../control/filter.rules");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_parses() {
        let rules = parse(DEFAULT_RULES).unwrap();
        assert!(rules.len() > 50);
        assert!(rules.iter().any(|r| matches!(
            &r.kind,
            RuleKind::Header {
                field: Field::ContentType,
                ..
            }
        )));
    }

    #[test]
    fn the_shipped_policy_refuses_todays_malware_carriers() {
        let rules = parse(DEFAULT_RULES).unwrap();
        let refused = |file: &str| {
            rules.iter().any(
                |r| matches!(&r.kind, RuleKind::Attachment { name, size: 0 } if name.matches(file)),
            )
        };
        for ext in [
            "iso", "img", "vhd", "vhdx", "one", "html", "htm", "shtml", "xll", "ps1", "jar",
        ] {
            assert!(refused(&format!("Invoice.{ext}")), ".{ext}");
            assert!(
                refused(&format!("Invoice.{}", ext.to_uppercase())),
                ".{ext} upper"
            );
        }
        for fine in [
            "report.pdf",
            "photo.jpg",
            "notes.txt",
            "page.html.txt",
            "disk.isox",
        ] {
            assert!(!refused(fine), "{fine}");
        }
    }

    #[test]
    fn attachment_rules() {
        let rules = parse(".exe\t0\tExecutable\nreadme.exe\t29568\tworm\n").unwrap();
        let RuleKind::Attachment { name, size } = &rules[0].kind else {
            panic!()
        };
        assert_eq!(*size, 0);
        assert!(name.matches("Invoice.PDF.EXE"));
        assert!(name.matches("virus.exe. . "));
        assert!(!name.matches("exe"));
        let RuleKind::Attachment { name, size } = &rules[1].kind else {
            panic!()
        };
        assert_eq!(*size, 29568);
        assert!(name.matches("README.exe"));
        assert!(!name.matches("xreadme.exe"));
    }

    #[test]
    fn header_rules() {
        let rules =
            parse("{100,}\tVirus-Date\tDate overflow\nI LOVE YOU\tVirus-Subject\tlove bug\n")
                .unwrap();
        let RuleKind::Header { field, value } = &rules[0].kind else {
            panic!()
        };
        assert_eq!(*field, Field::Header("date".into()));
        assert!(value.matches(&"x".repeat(100)));
        assert!(!value.matches(&"x".repeat(99)));
        let RuleKind::Header { value, .. } = &rules[1].kind else {
            panic!()
        };
        assert!(value.matches("fwd: i love you"));
    }

    /// Haystacks for holding a pattern matched without a regex against the regex.
    const HAYSTACKS: &[&str] = &[
        "",
        "x",
        "Message/Partial; id=1",
        "MESSAGE/PARTIAL",
        "message/partia",
        "text/plain",
        "fwd: I Love You",
        "i love\nyou",
        "mes\u{17f}age/partial",
        "MESSAGE/PARTIAL\u{e9}",
        "\u{212a}ey: \u{212a}ELVIN",
        "key: kelvin",
        "ſ ẞ ß ﬆ İ ı Ω ω K Å",
        "ﬆop stop ſtop",
        "\u{1f600}",
    ];

    fn run_of(n: usize, c: char) -> String {
        std::iter::repeat_n(c, n).collect()
    }

    #[test]
    fn patterns_matched_without_a_regex_match_as_the_regex_does() {
        let mut haystacks: Vec<String> = HAYSTACKS.iter().map(|h| h.to_string()).collect();
        for n in [0, 1, 2, 3, 99, 100, 101, 150, 199, 200, 201, 250] {
            for c in ['x', '\u{e9}', '\u{1f600}', '\r'] {
                haystacks.push(run_of(n, c));
                haystacks.push(format!("{}\n{}", run_of(n / 2, c), run_of(n, c)));
                haystacks.push(format!("{}\n", run_of(n, c)));
            }
        }
        let patterns = [
            ".{100,}",
            ".{0,}",
            ".{1,}",
            ".{3,3}",
            ".{100,150}",
            ".{200,}",
            ".{200,200}",
            ".{0,200}",
            "message/partial",
            "I LOVE YOU",
            "love",
            "KEY",
            "kelvin",
            "stop",
            "ss",
            "a-b_c@d=e'f\"g<h>i!j%k,l;m:n/o#p&q~r`s",
        ];
        for pattern in patterns {
            let rule = parse(&format!("{pattern}\tVirus-Subject\tx\n")).unwrap();
            let RuleKind::Header { value, .. } = &rule[0].kind else {
                panic!()
            };
            assert!(
                !matches!(value, ValueMatch::Regex(_)),
                "{pattern} should not need a regex"
            );
            let re = header_regex(pattern).unwrap();
            for h in &haystacks {
                assert_eq!(value.matches(h), re.is_match(h), "{pattern:?} on {h:?}");
            }
        }
        // What is not of those shapes, or too big to be sure of, stays a regex.
        for pattern in [
            ".{201,}",
            ".{0,201}",
            ".{ 100,}",
            ".{100}",
            "^love",
            "lo.e",
            "caf\u{e9}",
            &"x".repeat(MAX_LITERAL + 1),
        ] {
            let rule = parse(&format!("{pattern}\tVirus-Subject\tx\n")).unwrap();
            let RuleKind::Header { value, .. } = &rule[0].kind else {
                panic!()
            };
            assert!(matches!(value, ValueMatch::Regex(_)), "{pattern}");
        }
        // A reversed range is still the regex's error.
        assert!(parse(".{5,3}\tVirus-Subject\tx\n").is_err());
    }

    #[test]
    fn the_case_folding_of_plain_text_is_the_regex_crates() {
        // Every character that a case-insensitive printable-ASCII class matches...
        let ascii = header_regex("^[ -~]$").unwrap();
        let mut buf = [0u8; 4];
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let one: &str = c.encode_utf8(&mut buf);
            let folded = Literal::fold(c);
            let printable = (b' '..=b'~').contains(&folded);
            assert_eq!(ascii.is_match(one), printable, "{c:?} U+{:04X}", c as u32);
            if printable {
                // ...is the one ASCII character fold says, and matches nothing else.
                for a in b' '..=b'~' {
                    let re =
                        header_regex(&format!("^{}$", regex::escape(&(a as char).to_string())))
                            .unwrap();
                    assert_eq!(
                        re.is_match(one),
                        a.to_ascii_lowercase() == folded,
                        "{c:?} against {:?}",
                        a as char
                    );
                }
            }
        }
    }

    #[test]
    fn the_regex_of_every_pattern_matched_without_one_compiles() {
        let n = MAX_LINE_RUN;
        for pattern in [
            format!(".{{{n},}}"),
            format!(".{{{n},{n}}}"),
            format!(".{{0,{n}}}"),
            "k".repeat(MAX_LITERAL),
            "s".repeat(MAX_LITERAL),
        ] {
            header_regex(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        }
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse("# ok\n.exe\t0\tfine\n.com zero\n").unwrap_err();
        assert_eq!(
            e.msg,
            "control/filter.rules:3: expected PATTERN<TAB>SIZE-OR-TYPE<TAB>DESCRIPTION"
        );
        let e = parse(".exe\tlots\tx\n").unwrap_err();
        assert!(
            e.msg.starts_with("control/filter.rules:1: second column"),
            "{}",
            e.msg
        );
        let e = parse("(\tVirus-Subject\tx\n").unwrap_err();
        assert!(
            e.msg.starts_with("control/filter.rules:1: bad pattern"),
            "{}",
            e.msg
        );
        let e = parse("x\tVirus-\tx\n").unwrap_err();
        assert!(e.msg.contains("needs a header name"));
    }
}
