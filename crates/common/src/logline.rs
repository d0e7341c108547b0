//! Log lines: one event per line, `key=value` pairs starting with `event=`,
//! e.g. `event=reject ip=203.0.113.9 reason=rbl zone=zen.test from=<a@b.test>`.
//!
//! Values that contain a space, `"`, `\` or `=` — or are empty — are written in double
//! quotes with `\"` and `\\` escapes. Control bytes and non-ASCII never reach the log raw:
//! they are written as `\xNN`, so a hostile HELO cannot forge a second log line.
//! [`parse`] reads the lines back (the reports and the rate limiter use it); it skips
//! the `@TAI64N ` stamp multilog puts in front.

use std::fmt::{self, Write as _};
use std::io::Write as _;

/// A log line being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    buf: String,
}

impl LogLine {
    /// Start a line with `event=NAME`.
    pub fn event(name: &str) -> Self {
        let mut line = LogLine {
            buf: String::with_capacity(128),
        };
        line.push("event", name);
        line
    }

    /// Add `key=value` (builder style).
    pub fn kv(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.push(key, value);
        self
    }

    /// Add `key=value`.
    pub fn push(&mut self, key: &str, value: impl fmt::Display) {
        if !self.buf.is_empty() {
            self.buf.push(' ');
        }
        self.buf.push_str(key);
        self.buf.push('=');
        let value = value.to_string();
        write_value(&mut self.buf, &value);
    }

    pub fn as_str(&self) -> &str {
        &self.buf
    }

    /// Write the line and its newline to stderr in one write, so lines from several
    /// processes sharing the log pipe never interleave.
    pub fn emit(&self) {
        let mut out = String::with_capacity(self.buf.len() + 1);
        out.push_str(&self.buf);
        out.push('\n');
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.buf)
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .bytes()
            .any(|b| matches!(b, b' ' | b'"' | b'\\' | b'='))
}

fn write_value(out: &mut String, value: &str) {
    let quoted = needs_quotes(value);
    if quoted {
        out.push('"');
    }
    for c in value.chars() {
        match c {
            '"' if quoted => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut bytes = [0u8; 4];
                for b in c.encode_utf8(&mut bytes).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
    }
    if quoted {
        out.push('"');
    }
}

/// Make arbitrary bytes safe for a log or an error message: printable ASCII stays,
/// everything else becomes `\xNN`.
pub fn printable(text: impl AsRef<[u8]>) -> String {
    let mut out = String::new();
    for &b in text.as_ref() {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Undo the `\xNN`, `\\` and `\"` escapes of a value.
fn unescape(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'x' if i + 3 < bytes.len() => {
                    // Two hex digits, looked at as bytes: slicing the text could cut a
                    // character in two (`\xaé` in a hostile file panicked here).
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4])
                        .ok()
                        .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(b) = hex {
                        out.push(b);
                        i += 4;
                        continue;
                    }
                    out.push(b'\\');
                    i += 1;
                }
                other => {
                    out.push(other);
                    i += 2;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse a log line into its `key=value` pairs, in order. A leading multilog stamp
/// (`@4000… `) and any words without `=` are skipped.
pub fn parse(line: &str) -> Vec<(String, String)> {
    let mut rest = line.trim_end_matches(['\n', '\r']);
    if rest.starts_with('@') {
        rest = rest.split_once(' ').map(|(_, r)| r).unwrap_or("");
    }
    let mut fields = Vec::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b' ' {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b' ' {
            continue; // a word without '=': not ours
        }
        let key = &rest[start..i];
        i += 1; // '='
        let value = if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let vstart = i;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            let v = unescape(&rest[vstart..i.min(bytes.len())]);
            i += 1; // closing quote
            v
        } else {
            let vstart = i;
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
            unescape(&rest[vstart..i])
        };
        fields.push((key.to_string(), value));
    }
    fields
}

/// The value of `key` in a parsed line.
pub fn get<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_documented_shape() {
        let line = LogLine::event("reject")
            .kv("ip", "203.0.113.9")
            .kv("reason", "rbl")
            .kv("zone", "zen.test")
            .kv("from", "<a@b.test>");
        assert_eq!(
            line.as_str(),
            "event=reject ip=203.0.113.9 reason=rbl zone=zen.test from=<a@b.test>"
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let line = LogLine::event("x")
            .kv("text", "go away now")
            .kv("empty", "")
            .kv("q", "a\"b");
        assert_eq!(
            line.as_str(),
            r#"event=x text="go away now" empty="" q="a\"b""#
        );
        let evil = LogLine::event("helo").kv("name", "x\r\nevent=forged");
        assert_eq!(evil.as_str(), r#"event=helo name="x\x0d\x0aevent=forged""#);
        assert!(!evil.as_str().contains('\n'));
    }

    #[test]
    fn parse_round_trips() {
        let values = [
            "plain",
            "with space",
            "",
            "quote\"d",
            "back\\slash",
            "eq=ual",
            "nl\nx",
            "é",
        ];
        for v in values {
            let line = LogLine::event("t").kv("v", v).kv("after", 1);
            let fields = parse(line.as_str());
            assert_eq!(get(&fields, "event"), Some("t"));
            assert_eq!(get(&fields, "v"), Some(v), "value {v:?} via {line}");
            assert_eq!(get(&fields, "after"), Some("1"));
        }
    }

    #[test]
    fn parse_skips_the_multilog_stamp() {
        let fields = parse("@400000006563a1b20c0ffee0 event=start pid=12\n");
        assert_eq!(get(&fields, "event"), Some("start"));
        assert_eq!(get(&fields, "pid"), Some("12"));
    }

    #[test]
    fn a_bad_hex_escape_is_kept_as_text() {
        // Found by the fuzz target send_state: a character cut by `\x` panicked.
        let fields = parse("k=\\xa\u{e9} sign=\\x+f");
        assert_eq!(get(&fields, "k"), Some("\\xa\u{e9}"));
        assert_eq!(get(&fields, "sign"), Some("\\x+f"));
        assert_eq!(get(&parse("k=\\x41"), "k"), Some("A"));
    }

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable(b"ok\r\n\x00"), "ok\\x0d\\x0a\\x00");
    }
}
