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

use postern_common::{Error, Result};
use regex::{Regex, RegexBuilder};

/// Largest compiled size of one header pattern (bounds memory per rule).
pub const MAX_REGEX_SIZE: usize = 256 * 1024;

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
            ValueMatch::Length { min, max } => (*min..=*max).contains(&value.len()),
        }
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
        let value = match length_range(pattern) {
            Some((min, max)) => ValueMatch::Length { min, max },
            None => ValueMatch::Regex(
                RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .size_limit(MAX_REGEX_SIZE)
                    .build()
                    .map_err(|e| {
                        bad(&format!(
                            "bad pattern: {}",
                            e.to_string().lines().last().unwrap_or("")
                        ))
                    })?,
            ),
        };
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
