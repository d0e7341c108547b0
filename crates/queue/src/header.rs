//! The message header as postern-inject sees it: read up to the blank line (bounded),
//! split into fields with their continuation lines, so it can drop `Bcc:`, add what is
//! missing, and read recipients out of `To:`/`Cc:`/`Bcc:` for `-t`.
//!
//! Line ends are normalised to LF (the queue's convention; postern-remote writes CRLF).

use postern_common::{Error, Result};
use std::io::{BufRead, Read};

/// Largest header postern-inject accepts, bytes.
pub const MAX_HEADER: usize = 1024 * 1024;
/// Most header fields.
pub const MAX_FIELDS: usize = 10_000;

/// One header field: its name and its raw lines (LF-terminated, continuations included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub raw: Vec<u8>,
}

impl Field {
    /// Whether the field is called `name` (case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value, unfolded (line breaks removed), as text (invalid UTF-8 replaced).
    pub fn value(&self) -> String {
        // After the first colon: the name has none, but may be followed by WSP.
        let colon = self.raw.iter().position(|&b| b == b':').unwrap_or(0);
        let after = &self.raw[(colon + 1).min(self.raw.len())..];
        let text = String::from_utf8_lossy(after);
        text.replace('\n', "").trim().to_string()
    }
}

/// A header read from the input, and the first body line if the header ended without a
/// blank line (a line that is not a field).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Header {
    pub fields: Vec<Field>,
    /// Bytes that belong to the body, already read: a non-field line that ended the header.
    pub body_start: Vec<u8>,
    /// Whether the input ended inside the header (no body at all).
    pub ended: bool,
}

impl Header {
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.is(name))
    }
}

/// The field name of a line, if it starts a field: printable ASCII without `:` or space,
/// then optional spaces and tabs (the obsolete syntax of RFC 5322 §4.5.3, `Bcc : x`,
/// which readers must accept: taking it for the body would show a `Bcc` to everyone),
/// then `:`. The name is returned without the spaces.
fn field_name(line: &[u8]) -> Option<&str> {
    let colon = line.iter().position(|&b| b == b':')?;
    let mut name = &line[..colon];
    while let [rest @ .., b' ' | b'\t'] = name {
        name = rest;
    }
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// Read one line (bounded by `room`), with CRLF turned into LF. `None` at EOF.
fn read_line(input: &mut impl BufRead, room: usize) -> Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut limited = input.by_ref().take(room as u64 + 1);
    limited
        .read_until(b'\n', &mut line)
        .map_err(|e| Error::io("unable to read the message", &e))?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.len() > room {
        return Err(Error::perm(format!(
            "the header is longer than {MAX_HEADER} bytes"
        )));
    }
    if line.ends_with(b"\r\n") {
        line.truncate(line.len() - 2);
        line.push(b'\n');
    } else if !line.ends_with(b"\n") {
        line.push(b'\n');
    }
    Ok(Some(line))
}

/// Read the header from `input`. A leading mbox `From ` line is dropped.
pub fn read(input: &mut impl BufRead) -> Result<Header> {
    let mut header = Header::default();
    let mut used = 0usize;
    let mut first = true;
    loop {
        let Some(line) = read_line(input, MAX_HEADER.saturating_sub(used))? else {
            header.ended = true;
            return Ok(header);
        };
        used += line.len();
        if std::mem::take(&mut first) && line.starts_with(b"From ") {
            continue;
        }
        if line == b"\n" {
            return Ok(header);
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(last) = header.fields.last_mut() {
                last.raw.extend_from_slice(&line);
                continue;
            }
        }
        match field_name(&line) {
            Some(name) => {
                if header.fields.len() >= MAX_FIELDS {
                    return Err(Error::perm(format!(
                        "the header has more than {MAX_FIELDS} fields"
                    )));
                }
                header.fields.push(Field {
                    name: name.to_string(),
                    raw: line,
                });
            }
            None => {
                header.body_start = line;
                return Ok(header);
            }
        }
    }
}

/// The addresses in the named fields (`To`, `Cc`, `Bcc`), in order.
pub fn addresses(header: &Header, names: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in header
        .fields
        .iter()
        .filter(|f| names.iter().any(|n| f.is(n)))
    {
        let value = f.value();
        if value.is_empty() {
            continue;
        }
        match mailparse::addrparse(&value) {
            Ok(list) => push_list(&list, &mut out),
            // mailparse wants an `@` in every address; cron mail says `To: root`. Parse
            // the items one by one and take a bare local part as it is.
            Err(e) => {
                for item in split_items(&value) {
                    match mailparse::addrparse(&item) {
                        Ok(list) => push_list(&list, &mut out),
                        Err(_) if is_local_part(&without_comments(&item)) => {
                            out.push(without_comments(&item))
                        }
                        Err(_) => {
                            return Err(Error::perm(format!(
                                "unable to parse the {} field: {e}",
                                f.name
                            )))
                        }
                    }
                }
            }
        }
        out.retain(|a| !a.is_empty());
    }
    Ok(out)
}

fn push_list(list: &mailparse::MailAddrList, out: &mut Vec<String>) {
    // mailparse leaves the separator on an address that follows a group.
    let clean = |a: &str| {
        a.trim_matches(|c: char| c == ',' || c.is_whitespace())
            .to_string()
    };
    for a in list.iter() {
        match a {
            mailparse::MailAddr::Single(s) => out.push(clean(&s.addr)),
            mailparse::MailAddr::Group(g) => out.extend(g.addrs.iter().map(|s| clean(&s.addr))),
        }
    }
}

/// Split an address list at the commas outside quotes, `<>` and comments.
fn split_items(value: &str) -> Vec<String> {
    let (mut items, mut cur) = (Vec::new(), String::new());
    let (mut quoted, mut angle, mut paren, mut escaped) = (false, false, 0u32, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if quoted {
            quoted = c != '"';
        } else {
            match c {
                '"' => quoted = true,
                '<' => angle = true,
                '>' => angle = false,
                '(' => paren += 1,
                ')' => paren = paren.saturating_sub(1),
                ',' if !angle && paren == 0 => {
                    items.push(std::mem::take(&mut cur).trim().to_string());
                    continue;
                }
                _ => {}
            }
        }
        cur.push(c);
    }
    items.push(cur.trim().to_string());
    items.retain(|i| !i.is_empty());
    items
}

/// The text without `(comments)` (not nested-aware beyond depth counting), trimmed.
fn without_comments(item: &str) -> String {
    let mut depth = 0u32;
    let mut out = String::new();
    for c in item.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// A bare local part (`root`, `ops-team`): RFC 5322 atext and dots only.
fn is_local_part(item: &str) -> bool {
    !item.is_empty()
        && item
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
}

/// Turns CRLF into LF in a stream cut into arbitrary pieces.
#[derive(Debug, Default)]
pub struct CrlfToLf {
    pending_cr: bool,
}

impl CrlfToLf {
    /// Convert one piece, appending to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    out.push(b'\r');
                }
            }
            if b == b'\r' {
                self.pending_cr = true;
            } else {
                out.push(b);
            }
        }
    }

    /// The end of the stream: a final lone CR is kept.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_continuations_and_body() {
        let text = b"From me Thu\nTo: a@x.test,\r\n  \"B, b\" <b@x.test>\nSubject: hi\n\nbody\n";
        let h = read(&mut &text[..]).unwrap();
        let names: Vec<_> = h.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["To", "Subject"]);
        assert_eq!(h.fields[0].raw, b"To: a@x.test,\n  \"B, b\" <b@x.test>\n");
        assert_eq!(addresses(&h, &["to"]).unwrap(), ["a@x.test", "b@x.test"]);
        assert!(h.body_start.is_empty() && !h.ended);
    }

    #[test]
    fn a_non_field_line_starts_the_body() {
        let h = read(&mut &b"Subject: x\nhello world\nmore\n"[..]).unwrap();
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.body_start, b"hello world\n");
        let h = read(&mut &b"just text\n"[..]).unwrap();
        assert!(h.fields.is_empty());
        let h = read(&mut &b"Subject: x"[..]).unwrap();
        assert!(h.ended);
        assert_eq!(h.fields[0].raw, b"Subject: x\n");
    }

    /// Regression (postern-inject put a `Bcc :` line in the body): WSP between a field
    /// name and its colon (RFC 5322 §4.5.3 obsolete syntax) ended the header, so the
    /// Bcc line was shown to everyone and its address never got the message with -t.
    #[test]
    fn bcc_with_space_before_the_colon_is_a_field() {
        let text = b"To: a@x.test\nBcc : secret@y.test\nSubject: hi\n\nbody";
        let h = read(&mut &text[..]).unwrap();
        let names: Vec<_> = h.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["To", "Bcc", "Subject"]);
        assert!(h.body_start.is_empty() && !h.ended);
        assert!(h.fields[1].is("bcc"));
        assert_eq!(h.fields[1].value(), "secret@y.test");
        assert_eq!(
            addresses(&h, &["To", "Cc", "Bcc"]).unwrap(),
            ["a@x.test", "secret@y.test"]
        );
        let h = read(&mut &b"Subject\t \t: spaced\n\n"[..]).unwrap();
        assert_eq!(h.fields[0].name, "Subject");
        assert_eq!(h.fields[0].value(), "spaced");
        // Only a name can stand before the spaces: these are body lines.
        for line in [&b" : x\n"[..], b"two words: x\n", b"\t: x\n"] {
            let mut input = b"Subject: s\n".to_vec();
            input.extend_from_slice(line);
            let h = read(&mut &input[..]).unwrap();
            assert_eq!(h.fields.len(), 1, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn groups_and_limits() {
        let h = read(&mut &b"Cc: team: a@x.test, b@x.test;, c@y.test\n\n"[..]).unwrap();
        assert_eq!(
            addresses(&h, &["Cc"]).unwrap(),
            ["a@x.test", "b@x.test", "c@y.test"]
        );
        let h = read(&mut &b"To: root, \"A, B\" <a@x.test>, ops (team)\n\n"[..]).unwrap();
        assert_eq!(addresses(&h, &["To"]).unwrap(), ["root", "a@x.test", "ops"]);
        let h = read(&mut &b"To: not an address\n\n"[..]).unwrap();
        assert!(addresses(&h, &["To"]).is_err());
        let big = format!("Subject: {}\n\n", "x".repeat(MAX_HEADER));
        assert_eq!(
            read(&mut big.as_bytes()).unwrap_err().kind,
            postern_common::Kind::Perm
        );
    }

    #[test]
    fn crlf_conversion_is_the_same_in_any_pieces() {
        let input = b"a\r\nb\rc\r\r\nd\r";
        let mut whole = Vec::new();
        let mut c = CrlfToLf::default();
        c.feed(input, &mut whole);
        c.finish(&mut whole);
        assert_eq!(whole, b"a\nb\rc\r\nd\r");
        let mut bytewise = Vec::new();
        let mut c = CrlfToLf::default();
        for b in input {
            c.feed(std::slice::from_ref(b), &mut bytewise);
        }
        c.finish(&mut bytewise);
        assert_eq!(bytewise, whole);
    }
}
