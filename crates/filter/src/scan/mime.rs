//! Taking a message apart the way a scanner must: every MIME part, nested
//! `message/rfc822` messages, decoded file names (RFC 2047 encoded words and RFC 2231
//! parameters), the names inside zip archives and uuencoded attachments.
//!
//! The structure is walked here, one header section at a time, with `mailparse` only
//! splitting a bounded header section into fields and decoding bodies — so that:
//!
//! - every header section (the message's, each part's, each enclosed message's) is
//!   bounded *before* it is parsed: [`MAX_HEADER_BYTES`], [`MAX_HEADER_LINES`];
//! - header names are matched the RFC 5322 obsolete-syntax way (`Content-Type :`, white
//!   space before the colon, is `Content-Type`), as mail clients do;
//! - header values are unfolded and decoded in linear time (a hostile header must not
//!   cost quadratic time or unbounded memory).
//!
//! Everything is bounded: nesting depth, number of parts, decoded bytes, header sections.
//! Going over a limit, and structure a mail client could read two ways (Content-Type
//! headers that differ in type or boundary, two boundaries, conflicting transfer
//! encodings), is reported as *suspicious* — the caller refuses it, because an attacker
//! builds exactly such messages to slip past one scanner and open in another client. A
//! file name given more than one way (two `name=`, `filename` and `filename*`, two
//! headers) is not refused: every candidate is an attachment name.
//!
//! Decoding header text and file names (RFC 2047, RFC 2231) is in `names`.

use crate::scan::{bytes, zipnames};
use mailparse::body::Body;
use mailparse::{MailHeader, ParsedContentType};
use names::{file_names, unfold, Params};
use std::borrow::Cow;

mod names;

pub use names::{decode_words, field_name, field_value};

/// Deepest nesting of multiparts and enclosed messages we follow.
pub const MAX_DEPTH: usize = 30;
/// Most MIME parts in one message.
pub const MAX_PARTS: usize = 5_000;
/// Most decoded bytes we look at in one message (all parts together).
pub const MAX_DECODED: usize = 64 * 1024 * 1024;
/// Largest header section (of the message, of each MIME part, of each enclosed message)
/// we parse; a bigger one is refused.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// Most lines in one header section (folded continuation lines count); more is refused.
pub const MAX_HEADER_LINES: usize = 10_000;

/// A file the message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    /// Decoded size in bytes (for uuencoded files, the decoded length).
    pub size: u64,
    /// Where it was found: `mime`, `zip:OUTER.zip` (`zip:OUTER.zip/INNER.zip` when
    /// nested), `uuencode`.
    pub source: String,
}

/// What a message is made of, as far as the rules care.
#[derive(Debug, Default, Clone)]
pub struct Analysis {
    /// Top-level headers: lower-case name (without white space before the colon),
    /// unfolded and decoded value.
    pub headers: Vec<(String, String)>,
    /// The Content-Type of every part (lower-case `type/subtype`).
    pub content_types: Vec<String>,
    pub attachments: Vec<Attachment>,
    /// Why the structure itself is refused, if it is.
    pub suspicious: Vec<String>,
    pub parts: usize,
}

/// Where a header section is, for the log line.
#[derive(Clone, Copy)]
enum Place {
    Message,
    Part,
    Enclosed,
}

impl Place {
    fn describe(self) -> &'static str {
        match self {
            Place::Message => "the message",
            Place::Part => "a MIME part",
            Place::Enclosed => "an enclosed message",
        }
    }
}

/// The end of the header section that starts `raw` (just past the empty line, or the
/// end of `raw`), or which limit it is over. Only up to the limit is looked at.
fn header_section_end(raw: &[u8], place: Place) -> Result<usize, String> {
    let mut at = 0;
    let mut lines = 0;
    while at < raw.len() {
        if raw[at] == b'\n' {
            return Ok(at + 1);
        }
        if raw[at..].starts_with(b"\r\n") {
            return Ok(at + 2);
        }
        lines += 1;
        if lines > MAX_HEADER_LINES {
            return Err(format!(
                "header section of {} over {MAX_HEADER_LINES} lines",
                place.describe()
            ));
        }
        let window = &raw[at..raw.len().min(MAX_HEADER_BYTES + 1)];
        match bytes::find(b'\n', window) {
            Some(nl) => at += nl + 1,
            None if raw.len() > MAX_HEADER_BYTES => at = MAX_HEADER_BYTES + 1,
            None => at = raw.len(),
        }
        if at > MAX_HEADER_BYTES {
            return Err(format!(
                "header section of {} over {MAX_HEADER_BYTES} bytes",
                place.describe()
            ));
        }
    }
    Ok(raw.len())
}

/// The first line-start occurrence of `delim` in `body` at or after `from`. Line by line,
/// so linear whatever the delimiter.
fn find_line_prefix(body: &[u8], from: usize, delim: &[u8]) -> Option<usize> {
    let mut at = from;
    while at < body.len() {
        if body[at..].starts_with(delim) {
            return Some(at);
        }
        at += bytes::find(b'\n', &body[at..])? + 1;
    }
    None
}

/// The line break just before a delimiter belongs to the delimiter (RFC 2046).
fn strip_trailing_crlf(body: &[u8], start: usize, mut end: usize) -> usize {
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// The body parts of a multipart body, split on `--boundary` lines as mailparse splits
/// them; at most `limit`.
fn split_multipart<'a>(body: &'a [u8], boundary: &str, limit: usize) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut parts = Vec::new();
    let Some(first) = find_line_prefix(body, 0, delim) else {
        return parts;
    };
    let mut delim_end = first + delim.len();
    while parts.len() < limit {
        let Some(nl) = bytes::find(b'\n', &body[delim_end..]) else {
            break;
        };
        let start = delim_end + nl + 1;
        let next = find_line_prefix(body, start, delim);
        let end = next
            .map(|x| strip_trailing_crlf(body, start, x))
            .unwrap_or(body.len());
        parts.push(&body[start..end]);
        delim_end = next.map(|x| x + delim.len()).unwrap_or(body.len());
        if delim_end + 2 > body.len() || body[delim_end..].starts_with(b"--") {
            break;
        }
    }
    parts
}

/// The lines of `body` as `body.split(|&b| b == b'\n')` gives them, found a word at a time.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let r = rest?;
        match bytes::find(b'\n', r) {
            Some(nl) => {
                rest = Some(&r[nl + 1..]);
                Some(&r[..nl])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

struct Walker {
    out: Analysis,
    decoded: usize,
    zip_budget: zipnames::Budget,
}

/// Analyse a whole message (headers and body, as it will be queued).
pub fn analyse(message: &[u8]) -> Analysis {
    let mut w = Walker {
        out: Analysis::default(),
        decoded: 0,
        zip_budget: zipnames::Budget::default(),
    };
    w.entity(message, 0, false, Place::Message);
    w.out
}

impl Walker {
    fn refuse(&mut self, why: impl Into<String>) {
        self.out.suspicious.push(why.into());
    }

    /// One entity — the message, a body part or an enclosed message: header section,
    /// then its body.
    fn entity(&mut self, raw: &[u8], depth: usize, in_digest: bool, place: Place) {
        if !self.out.suspicious.is_empty() {
            return;
        }
        self.out.parts += 1;
        if self.out.parts > MAX_PARTS {
            return self.refuse(format!("more than {MAX_PARTS} MIME parts"));
        }
        if depth > MAX_DEPTH {
            return self.refuse(format!("MIME nesting deeper than {MAX_DEPTH}"));
        }
        // Bounded before anything parses it.
        let header_end = match header_section_end(raw, place) {
            Ok(end) => end,
            Err(why) => return self.refuse(why),
        };
        let fields = match mailparse::parse_headers(&raw[..header_end]) {
            Ok((fields, _)) => fields,
            Err(e) => {
                return self.refuse(match place {
                    Place::Enclosed => format!("unparseable enclosed message: {e}"),
                    _ => format!("unparseable MIME structure: {e}"),
                })
            }
        };
        let body = &raw[header_end..];
        let fields: Vec<(String, &MailHeader)> = fields
            .iter()
            .map(|h| (field_name(h.get_key_raw()), h))
            .collect();
        let values = |name: &str| -> Vec<&[u8]> {
            fields
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, h)| h.get_value_raw())
                .collect()
        };
        if matches!(place, Place::Message) {
            self.out.headers = fields
                .iter()
                .map(|(n, h)| (n.clone(), field_value(h.get_value_raw())))
                .collect();
        }

        // Structure a client could read two ways is refused.
        let types: Vec<Params> = values("content-type")
            .into_iter()
            .map(|v| Params::parse(&unfold(v)))
            .collect();
        let structure = |p: &Params| (p.value.clone(), p.candidates("boundary"));
        let first = types.first().map(structure);
        if types.iter().any(|p| Some(structure(p)) != first)
            || first.as_ref().is_some_and(|(_, b)| b.len() > 1)
        {
            return self.refuse("conflicting Content-Type headers");
        }
        let encodings: Vec<String> = values("content-transfer-encoding")
            .into_iter()
            .map(|v| unfold(v).trim().to_ascii_lowercase())
            .collect();
        if encodings.windows(2).any(|w| w[0] != w[1]) {
            return self.refuse("conflicting Content-Transfer-Encoding headers");
        }

        let (ctype, boundary) = match first {
            Some((t, b)) => (t, b.into_iter().next()),
            None if in_digest => ("message/rfc822".to_string(), None),
            None => ("text/plain".to_string(), None),
        };
        self.out.content_types.push(ctype.clone());

        if ctype.starts_with("multipart") {
            if let Some(boundary) = boundary {
                let digest = ctype == "multipart/digest";
                let room = MAX_PARTS + 1 - self.out.parts.min(MAX_PARTS);
                for part in split_multipart(body, &boundary, room) {
                    self.entity(part, depth + 1, digest, Place::Part);
                }
            }
            return;
        }

        // Every leaf is decoded (bounded by MAX_DECODED): a zip sent as an unnamed
        // application/octet-stream part must still have its members checked.
        let names = file_names(&values("content-disposition"), &values("content-type"));
        let no_type = ParsedContentType::default();
        let decoded: Cow<[u8]> = match Body::new(body, &no_type, &encodings.first().cloned()) {
            Body::Base64(b) | Body::QuotedPrintable(b) => match b.get_decoded() {
                Ok(d) => Cow::Owned(d),
                Err(e) => return self.refuse(format!("undecodable part: {e}")),
            },
            Body::SevenBit(b) | Body::EightBit(b) => Cow::Borrowed(b.get_raw()),
            Body::Binary(b) => Cow::Borrowed(b.get_raw()),
        };
        self.decoded += decoded.len();
        if self.decoded > MAX_DECODED {
            return self.refuse(format!("more than {MAX_DECODED} decoded bytes"));
        }
        for name in &names {
            self.out.attachments.push(Attachment {
                name: name.clone(),
                size: decoded.len() as u64,
                source: "mime".into(),
            });
        }
        // A zip is opened whatever the part says it is: unzip tools go by the content.
        if zipnames::is_zip(&decoded) || ctype.contains("zip") {
            let outer = names
                .first()
                .cloned()
                .unwrap_or_else(|| "(unnamed).zip".into());
            match zipnames::list(&decoded, &outer, &mut self.zip_budget) {
                Ok(entries) => {
                    for e in entries {
                        let name = e
                            .name
                            .rsplit(['/', '\\'])
                            .next()
                            .unwrap_or(&e.name)
                            .to_string();
                        self.out.attachments.push(Attachment {
                            name,
                            size: e.size,
                            source: format!("zip:{}", e.archive),
                        });
                    }
                }
                Err(why) => return self.refuse(why),
            }
        }
        if ctype == "message/rfc822" {
            self.entity(&decoded, depth + 1, false, Place::Enclosed);
        } else if ctype.starts_with("text/") {
            self.uuencoded(&decoded);
        }
    }

    /// uuencoded files inside text: `begin MODE NAME` … `end`.
    fn uuencoded(&mut self, body: &[u8]) {
        let mut current: Option<(String, u64)> = None;
        for line in lines(body) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match &mut current {
                None => {
                    if let Some(rest) = line.strip_prefix(b"begin ") {
                        let text = String::from_utf8_lossy(rest);
                        let mut words = text.splitn(2, ' ');
                        let mode = words.next().unwrap_or("");
                        if let (true, Some(name)) = (
                            mode.len() >= 3 && mode.bytes().all(|b| (b'0'..=b'7').contains(&b)),
                            words.next(),
                        ) {
                            current = Some((name.trim().to_string(), 0));
                        }
                    }
                }
                Some((name, size)) => {
                    if line == b"end" {
                        self.out.attachments.push(Attachment {
                            name: name.clone(),
                            size: *size,
                            source: "uuencode".into(),
                        });
                        current = None;
                    } else if let Some(&first) = line.first() {
                        *size += ((first.wrapping_sub(b' ')) & 0x3f) as u64;
                    }
                }
            }
        }
        if let Some((name, size)) = current {
            // No `end` line: clients still extract it, so it counts.
            self.out.attachments.push(Attachment {
                name,
                size,
                source: "uuencode".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: &Analysis) -> Vec<String> {
        a.attachments.iter().map(|x| x.name.clone()).collect()
    }

    #[test]
    fn lines_are_split_as_slice_split_does() {
        for body in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"\n\na\r\n\nb\n\n"] {
            let ours: Vec<&[u8]> = lines(body).collect();
            let std: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
            assert_eq!(ours, std, "{body:?}");
        }
    }

    #[test]
    fn rfc2231_split_and_encoded_names() {
        let msg = b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*0*=UTF-8''in%76oice; filename*1=\".exe\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n--B\r\nContent-Type: application/octet-stream; name=\"=?UTF-8?B?ZXZpbC5zY3I=?=\"\r\n\r\nxx\r\n--B--\r\n";
        let a = analyse(msg);
        assert!(a.suspicious.is_empty(), "{:?}", a.suspicious);
        assert_eq!(names(&a), vec!["invoice.exe", "evil.scr"]);
        assert_eq!(a.attachments[0].size, 4);
        assert_eq!(
            a.content_types,
            vec![
                "multipart/mixed",
                "text/plain",
                "application/octet-stream",
                "application/octet-stream"
            ]
        );
    }

    #[test]
    fn both_names_of_a_part_are_checked() {
        // Clients that prefer Content-Type's name show evil.exe.
        let msg = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/x-msdownload; name=\"evil.exe\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nMZ\r\n--B--\r\n";
        assert_eq!(names(&analyse(msg)), vec!["notes.txt", "evil.exe"]);
    }

    #[test]
    fn an_unnamed_zip_part_is_still_opened() {
        let zip = crate::scan::zipnames::tests::make_zip(&[("evil.exe", b"MZ")]);
        let mut msg = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        msg.extend_from_slice(&zip);
        msg.extend_from_slice(b"\r\n--B--\r\n");
        let a = analyse(&msg);
        assert_eq!(names(&a), vec!["evil.exe"], "{:?}", a.suspicious);
        assert_eq!(a.attachments[0].source, "zip:(unnamed).zip");
    }

    #[test]
    fn nested_messages_and_uuencode() {
        let inner = "Subject: inner\r\nContent-Type: text/plain\r\n\r\nbegin 644 run.bat\r\n#9&5L\r\n`\r\nend\r\n";
        let msg = format!("Subject: outer\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--Z\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--Z--\r\n");
        let a = analyse(msg.as_bytes());
        assert_eq!(names(&a), vec!["run.bat"]);
        assert_eq!(a.attachments[0].source, "uuencode");
        assert_eq!(a.attachments[0].size, 3);
    }

    #[test]
    fn conflicting_structure_is_suspicious() {
        let msg =
            b"Content-Type: text/plain\r\nContent-Type: application/x-msdownload\r\n\r\nx\r\n";
        assert_eq!(
            analyse(msg).suspicious,
            vec!["conflicting Content-Type headers"]
        );
        let msg = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n\r\nx\r\n";
        assert_eq!(
            analyse(msg).suspicious,
            vec!["conflicting Content-Transfer-Encoding headers"]
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut msg = String::new();
        for i in 0..60 {
            msg.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
            ));
        }
        msg.push_str("Content-Type: text/plain\r\n\r\nx\r\n");
        let a = analyse(msg.as_bytes());
        assert!(!a.suspicious.is_empty());
    }

    #[test]
    fn many_parts_are_bounded() {
        let mut msg = String::from("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
        for _ in 0..(MAX_PARTS + 10) {
            msg.push_str("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        }
        msg.push_str("--b--\r\n");
        let a = analyse(msg.as_bytes());
        assert_eq!(
            a.suspicious,
            vec![format!("more than {MAX_PARTS} MIME parts")]
        );
    }

    fn multipart(parts: &[&[u8]]) -> Vec<u8> {
        let mut msg = b"Content-Type: multipart/mixed; boundary=B\r\n\r\n".to_vec();
        for p in parts {
            msg.extend_from_slice(b"--B\r\n");
            msg.extend_from_slice(p);
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"--B--\r\n");
        msg
    }

    #[test]
    fn content_types_with_different_boundaries_are_refused_at_any_level() {
        // One client splits on A and sees notes.txt; another splits on Z and sees c.exe.
        let top = b"Content-Type: multipart/mixed; boundary=A\r\nContent-Type: multipart/mixed; boundary=Z\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\n--Z\r\nContent-Type: application/octet-stream; name=\"c.exe\"\r\n\r\nMZ\r\n--Z--\r\n--A--\r\n";
        assert_eq!(
            analyse(top).suspicious,
            vec!["conflicting Content-Type headers"]
        );
        let inner = multipart(&[b"Content-Type: multipart/mixed; boundary=A\r\nContent-type : multipart/mixed; boundary=Z\r\n\r\n--A\r\n\r\nx\r\n--A--"]);
        assert_eq!(
            analyse(&inner).suspicious,
            vec!["conflicting Content-Type headers"]
        );
        // Two boundary parameters in one header are as ambiguous.
        let twice = b"Content-Type: multipart/mixed; boundary=A; boundary=Z\r\n\r\n--A\r\n\r\nx\r\n--A--\r\n";
        assert_eq!(
            analyse(twice).suspicious,
            vec!["conflicting Content-Type headers"]
        );
        // The same header twice is not ambiguous.
        let same = b"Content-Type: multipart/mixed; boundary=A\r\nContent-Type: multipart/mixed; boundary=\"A\"\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\nx\r\n--A--\r\n";
        assert!(analyse(same).suspicious.is_empty());
    }

    #[test]
    fn every_candidate_name_of_a_part_counts() {
        let two_types = multipart(&[b"Content-Type: application/octet-stream; name=\"a.txt\"\r\nContent-Type: application/octet-stream; name=\"c.exe\"\r\n\r\nMZ"]);
        let a = analyse(&two_types);
        assert!(a.suspicious.is_empty(), "{:?}", a.suspicious);
        assert_eq!(names(&a), vec!["a.txt", "c.exe"]);
        let two_dispositions = multipart(&[b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\nContent-Disposition: attachment; filename=\"c.exe\"\r\n\r\nMZ"]);
        assert_eq!(names(&analyse(&two_dispositions)), vec!["a.txt", "c.exe"]);
        // A plain and an RFC 2231 form of the same parameter, or one given twice.
        let both_forms = multipart(&[b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"a.txt\"; filename*=UTF-8''c%2Eexe\r\n\r\nMZ"]);
        assert_eq!(names(&analyse(&both_forms)), vec!["a.txt", "c.exe"]);
        let repeated = multipart(&[
            b"Content-Type: application/octet-stream; name=\"c.exe\"; name=\"a.txt\"\r\n\r\nMZ",
        ]);
        assert_eq!(names(&analyse(&repeated)), vec!["c.exe", "a.txt"]);
    }

    #[test]
    fn obsolete_header_syntax_is_read() {
        // RFC 5322 4.5.3: white space between a field name and its colon.
        let msg = multipart(&[b"Content-Type : application/octet-stream; name=\"b.exe\"\r\nContent-Transfer-Encoding\t: base64\r\n\r\nTVqQAA=="]);
        let a = analyse(&msg);
        assert_eq!(names(&a), vec!["b.exe"], "{:?}", a.suspicious);
        assert_eq!(a.attachments[0].size, 4, "decoded as base64");
        assert_eq!(
            a.content_types,
            vec!["multipart/mixed", "application/octet-stream"]
        );
        // The structure itself, and the headers the header rules see.
        let top = b"Subject : I love you\r\nContent-Type  : multipart/mixed; boundary=Q\r\n\r\n--Q\r\nContent-Disposition : attachment; filename=d.exe\r\n\r\nMZ\r\n--Q--\r\n";
        let a = analyse(top);
        assert_eq!(names(&a), vec!["d.exe"]);
        assert!(a
            .headers
            .contains(&("subject".to_string(), "I love you".to_string())));
        // Two Content-Type headers, one in the obsolete form, are two.
        let msg =
            b"Content-Type: text/plain\r\nContent-Type : application/x-msdownload\r\n\r\nx\r\n";
        assert_eq!(
            analyse(msg).suspicious,
            vec!["conflicting Content-Type headers"]
        );
    }

    #[test]
    fn header_sections_are_bounded_before_parsing() {
        let mut msg = String::from("Subject: x");
        for _ in 0..(MAX_HEADER_LINES + 1) {
            msg.push_str("\r\n a");
        }
        msg.push_str("\r\n\r\nbody\r\n");
        let a = analyse(msg.as_bytes());
        assert_eq!(
            a.suspicious,
            vec![format!(
                "header section of the message over {MAX_HEADER_LINES} lines"
            )]
        );
        let long = format!("Subject: {}\r\n\r\nbody\r\n", "a".repeat(MAX_HEADER_BYTES));
        assert_eq!(
            analyse(long.as_bytes()).suspicious,
            vec![format!(
                "header section of the message over {MAX_HEADER_BYTES} bytes"
            )]
        );
        // The same limits apply to each part's header section.
        let part = format!("X-Long: {}\r\n\r\nx", "a".repeat(MAX_HEADER_BYTES));
        assert_eq!(
            analyse(&multipart(&[part.as_bytes()])).suspicious,
            vec![format!(
                "header section of a MIME part over {MAX_HEADER_BYTES} bytes"
            )]
        );
        // Just under both limits is fine.
        let mut ok = String::from("Subject: x");
        for _ in 0..(MAX_HEADER_LINES - 2) {
            ok.push_str("\r\n a");
        }
        ok.push_str("\r\n\r\nbody\r\n");
        assert!(analyse(ok.as_bytes()).suspicious.is_empty());
    }

    fn zip_part(zip: &[u8], headers: &str) -> Vec<u8> {
        let mut part = headers.as_bytes().to_vec();
        part.extend_from_slice(b"\r\n\r\n");
        part.extend_from_slice(zip);
        multipart(&[&part])
    }

    #[test]
    fn every_name_in_a_zip_counts_local_headers_too() {
        let mut zip = crate::scan::zipnames::tests::make_zip(&[("invoice.exe", b"MZ")]);
        // The central directory says invoice.txt; the local header still says .exe.
        let cd = zip.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
        let at = cd
            + zip[cd..]
                .windows(11)
                .position(|w| w == b"invoice.exe")
                .unwrap();
        zip[at..at + 11].copy_from_slice(b"invoice.txt");
        let a = analyse(&zip_part(
            &zip,
            "Content-Type: application/zip; name=\"invoice.zip\"",
        ));
        assert!(a.suspicious.is_empty(), "{:?}", a.suspicious);
        assert_eq!(names(&a), vec!["invoice.zip", "invoice.txt", "invoice.exe"]);
    }

    #[test]
    fn a_zip_behind_junk_in_any_part_is_opened() {
        let mut data = b"\xff\xd8\xff\xe0".to_vec();
        data.extend(std::iter::repeat_n(0x5a, 4096));
        data.extend(crate::scan::zipnames::tests::make_zip(&[("c.exe", b"MZ")]));
        let a = analyse(&zip_part(
            &data,
            "Content-Type: image/jpeg; name=\"photo.jpg\"",
        ));
        assert!(a.suspicious.is_empty(), "{:?}", a.suspicious);
        assert_eq!(names(&a), vec!["photo.jpg", "c.exe"]);
        assert_eq!(a.attachments[1].source, "zip:photo.jpg");
    }

    #[test]
    fn zips_inside_zips_are_opened_to_a_limit() {
        let inner = crate::scan::zipnames::tests::make_zip(&[("c.exe", b"MZ")]);
        // Named like anything but a zip: the content decides.
        let outer =
            crate::scan::zipnames::tests::make_zip(&[("readme.txt", b"hi"), ("data.bin", &inner)]);
        let a = analyse(&zip_part(
            &outer,
            "Content-Type: application/zip; name=\"a.zip\"",
        ));
        assert!(a.suspicious.is_empty(), "{:?}", a.suspicious);
        assert_eq!(names(&a), vec!["a.zip", "readme.txt", "data.bin", "c.exe"]);
        assert_eq!(a.attachments[3].source, "zip:a.zip/data.bin");
        let mut deep = inner;
        for level in 0..crate::scan::zipnames::MAX_ZIP_DEPTH {
            deep = crate::scan::zipnames::tests::make_zip(&[(&format!("level{level}.zip"), &deep)]);
        }
        let a = analyse(&zip_part(
            &deep,
            "Content-Type: application/zip; name=\"a.zip\"",
        ));
        assert_eq!(
            a.suspicious,
            vec![format!(
                "zip archives nested deeper than {} in a.zip",
                crate::scan::zipnames::MAX_ZIP_DEPTH
            )]
        );
    }

    #[test]
    fn hostile_header_values_and_boundaries_cost_linear_time() {
        // Near the header limit, shapes that make a naive decoder quadratic (mailparse's
        // get_value takes over 30 s and 40 MB on each of these).
        let started = std::time::Instant::now();
        let n = MAX_HEADER_BYTES / 4;
        for filler in ["=?", "=? ", "=?a?b?", " =?utf-8?q?a?="] {
            let value = filler.repeat(n / filler.len());
            let msg = format!(
                "Subject: {value}\r\nContent-Type: application/octet-stream; name=\"{value}\"\r\n\r\nx\r\n"
            );
            let a = analyse(msg.as_bytes());
            assert!(a.suspicious.is_empty(), "{:?}", a.suspicious);
        }
        // A long boundary against a body of lines that almost match it.
        let boundary = "-".repeat(100_000);
        let mut msg = format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n");
        for _ in 0..200 {
            msg.push_str(&"-".repeat(99_999));
            msg.push_str("\r\n");
        }
        assert!(analyse(msg.as_bytes()).suspicious.is_empty());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        // Encoded words are still decoded, adjacent ones joined.
        assert_eq!(
            decode_words("=?UTF-8?B?ZXZp?= =?UTF-8?Q?l=2Eexe?= x =?x-unknown?B?LmV4ZQ==?="),
            "evil.exe x .exe"
        );

        // Many candidates are deduplicated in linear time, not quadratic.
        let many: String = (0..50_000).map(|i| format!("; name=n{i}.txt")).collect();
        let msg = format!("Content-Type: application/octet-stream{many}\r\n\r\nx\r\n");
        assert_eq!(analyse(msg.as_bytes()).attachments.len(), 50_000);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
