//! Taking a message apart the way a scanner must: every MIME part (with `mailparse`),
//! nested `message/rfc822` messages, decoded file names (RFC 2047 encoded words and
//! RFC 2231 parameters), the names inside zip archives and uuencoded attachments.
//!
//! Everything is bounded: nesting depth, number of parts, decoded bytes. Going over a
//! limit, and structure a mail client could read two ways (two Content-Type headers,
//! conflicting transfer encodings), is reported as *suspicious* — the caller refuses it,
//! because an attacker builds exactly such messages to slip past one scanner and open in
//! another client.

use crate::zipnames;
use mailparse::{MailHeaderMap, ParsedMail};

/// Deepest nesting of multiparts and enclosed messages we follow.
pub const MAX_DEPTH: usize = 30;
/// Most MIME parts in one message.
pub const MAX_PARTS: usize = 5_000;
/// Most decoded bytes we look at in one message (all parts together).
pub const MAX_DECODED: usize = 64 * 1024 * 1024;

/// A file the message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    /// Decoded size in bytes (for uuencoded files, the decoded length).
    pub size: u64,
    /// Where it was found: `mime`, `zip:OUTER.zip`, `uuencode`.
    pub source: String,
}

/// What a message is made of, as far as the rules care.
#[derive(Debug, Default, Clone)]
pub struct Analysis {
    /// Top-level headers: lower-case name, decoded value.
    pub headers: Vec<(String, String)>,
    /// The Content-Type of every part (lower-case `type/subtype`).
    pub content_types: Vec<String>,
    pub attachments: Vec<Attachment>,
    /// Why the structure itself is refused, if it is.
    pub suspicious: Vec<String>,
    pub parts: usize,
}

/// Decode RFC 2047 encoded words in a parameter value (mail clients put them in
/// `filename="=?UTF-8?B?…?="`, which RFC 2231 does not allow but every client reads).
pub fn decode_words(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_string();
    }
    let line = format!("X: {value}");
    match mailparse::parse_header(line.as_bytes()) {
        Ok((h, _)) => h.get_value(),
        Err(_) => value.to_string(),
    }
}

struct Walker {
    out: Analysis,
    decoded: usize,
}

/// Analyse a whole message (headers and body, as it will be queued).
pub fn analyse(message: &[u8]) -> Analysis {
    let mut w = Walker {
        out: Analysis::default(),
        decoded: 0,
    };
    match mailparse::parse_mail(message) {
        Ok(mail) => {
            w.out.headers = mail
                .headers
                .iter()
                .map(|h| (h.get_key().to_ascii_lowercase(), h.get_value()))
                .collect();
            w.part(&mail, 0);
        }
        Err(e) => w
            .out
            .suspicious
            .push(format!("unparseable MIME structure: {e}")),
    }
    w.out
}

impl Walker {
    fn part(&mut self, part: &ParsedMail, depth: usize) {
        if !self.out.suspicious.is_empty() {
            return;
        }
        self.out.parts += 1;
        if self.out.parts > MAX_PARTS {
            self.out
                .suspicious
                .push(format!("more than {MAX_PARTS} MIME parts"));
            return;
        }
        if depth > MAX_DEPTH {
            self.out
                .suspicious
                .push(format!("MIME nesting deeper than {MAX_DEPTH}"));
            return;
        }
        self.check_ambiguity(part);
        if !self.out.suspicious.is_empty() {
            return;
        }
        let ctype = part.ctype.mimetype.to_ascii_lowercase();
        self.out.content_types.push(ctype.clone());

        if !part.subparts.is_empty() || ctype.starts_with("multipart/") {
            for sub in &part.subparts {
                self.part(sub, depth + 1);
            }
            return;
        }
        // Every leaf is decoded (bounded by MAX_DECODED): a zip sent as an unnamed
        // application/octet-stream part must still have its members checked.
        let names = self.file_names(part);
        let body = match part.get_body_raw() {
            Ok(b) => b,
            Err(e) => {
                self.out.suspicious.push(format!("undecodable part: {e}"));
                return;
            }
        };
        self.decoded += body.len();
        if self.decoded > MAX_DECODED {
            self.out
                .suspicious
                .push(format!("more than {MAX_DECODED} decoded bytes"));
            return;
        }
        for name in &names {
            self.out.attachments.push(Attachment {
                name: name.clone(),
                size: body.len() as u64,
                source: "mime".into(),
            });
        }
        if body.starts_with(b"PK\x03\x04") || ctype.contains("zip") {
            let outer = names
                .first()
                .cloned()
                .unwrap_or_else(|| "(unnamed).zip".into());
            match zipnames::names(&body) {
                Ok(entries) => {
                    for (inner, size) in entries {
                        let name = inner
                            .rsplit(['/', '\\'])
                            .next()
                            .unwrap_or(&inner)
                            .to_string();
                        self.out.attachments.push(Attachment {
                            name,
                            size,
                            source: format!("zip:{outer}"),
                        });
                    }
                }
                Err(why) => self
                    .out
                    .suspicious
                    .push(format!("damaged zip archive {outer}: {why}")),
            }
        }
        if ctype == "message/rfc822" {
            match mailparse::parse_mail(&body) {
                Ok(inner) => self.part(&inner, depth + 1),
                Err(e) => self
                    .out
                    .suspicious
                    .push(format!("unparseable enclosed message: {e}")),
            }
        } else if ctype.starts_with("text/") {
            self.uuencoded(&body);
        }
    }

    /// The part's file names: Content-Disposition `filename` **and** Content-Type
    /// `name`. Clients differ in which one they show, so the rules see both (once each).
    fn file_names(&self, part: &ParsedMail) -> Vec<String> {
        let disposition = part.get_content_disposition();
        let mut names: Vec<String> = Vec::new();
        for raw in [
            disposition.params.get("filename"),
            part.ctype.params.get("name"),
        ]
        .into_iter()
        .flatten()
        {
            let name = decode_words(raw);
            // A path in a name is the client's business; the rules look at the last component.
            let last = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_string();
            if !names.contains(&last) {
                names.push(last);
            }
        }
        names
    }

    fn check_ambiguity(&mut self, part: &ParsedMail) {
        let types = part.headers.get_all_values("Content-Type");
        if types.len() > 1 {
            let first = mailparse::parse_content_type(&types[0]).mimetype;
            if types
                .iter()
                .any(|t| mailparse::parse_content_type(t).mimetype != first)
            {
                self.out
                    .suspicious
                    .push("conflicting Content-Type headers".into());
            }
        }
        let encodings: Vec<String> = part
            .headers
            .get_all_values("Content-Transfer-Encoding")
            .iter()
            .map(|e| e.trim().to_ascii_lowercase())
            .collect();
        if encodings.windows(2).any(|w| w[0] != w[1]) {
            self.out
                .suspicious
                .push("conflicting Content-Transfer-Encoding headers".into());
        }
    }

    /// uuencoded files inside text: `begin MODE NAME` … `end`.
    fn uuencoded(&mut self, body: &[u8]) {
        let mut current: Option<(String, u64)> = None;
        for line in body.split(|&b| b == b'\n') {
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
        let zip = crate::zipnames::tests::make_zip(&[("evil.exe", b"MZ")]);
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
}
