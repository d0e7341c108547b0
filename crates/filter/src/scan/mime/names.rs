//! Header field text as a reader sees it, and the file names a part gives: unfolding,
//! RFC 2047 encoded words, Content-Type/Content-Disposition parameters (every repeat
//! kept) with RFC 2231 continuations and charsets — decoded in linear time, whatever a
//! hostile header holds.

use std::borrow::Cow;

/// A header field's name as scan matches it: lower-case, without the white space that
/// the obsolete syntax allows between the name and the colon (RFC 5322 4.5.3).
pub fn field_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_end_matches([' ', '\t', '\r'])
        .to_ascii_lowercase()
}

fn text_of(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        // Not UTF-8: Latin-1, as mailparse reads it.
        Err(_) => Cow::Owned(raw.iter().map(|&b| b as char).collect()),
    }
}

/// A header value unfolded: each line break and the white space around it become one
/// space.
pub(super) fn unfold(raw: &[u8]) -> String {
    let text = text_of(raw);
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i == 0 {
            out.push_str(line.trim_end_matches([' ', '\t']));
        } else {
            let line = line.trim_matches([' ', '\t']);
            if !line.is_empty() {
                out.push(' ');
                out.push_str(line);
            }
        }
    }
    out
}

/// A header field's value as a reader sees it: unfolded, encoded words decoded.
pub fn field_value(raw: &[u8]) -> String {
    decode_words(&unfold(raw))
}

fn is_wsp(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The end of the RFC 2047 encoded word `=?charset?X?text?=` that starts at `at`, if
/// one does. Neither part may hold `?` or white space, so looking for every word in a
/// value is linear.
fn encoded_word_at(b: &[u8], at: usize) -> Option<usize> {
    let run = |from: usize| {
        let mut j = from;
        while j < b.len() && b[j] != b'?' && !is_wsp(b[j]) {
            j += 1;
        }
        j
    };
    let charset_end = run(at + 2);
    if charset_end == at + 2 || b.get(charset_end) != Some(&b'?') {
        return None;
    }
    let enc = charset_end + 1;
    if !matches!(b.get(enc), Some(b'B' | b'b' | b'Q' | b'q')) || b.get(enc + 1) != Some(&b'?') {
        return None;
    }
    let text_end = run(enc + 2);
    (b.get(text_end) == Some(&b'?') && b.get(text_end + 1) == Some(&b'=')).then_some(text_end + 2)
}

/// Base64 as mail clients read it: anything not in the alphabet is skipped.
fn base64_lenient(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// One encoded word: mailparse for the charsets it knows, else the bytes as UTF-8.
fn decode_word(word: &str) -> Option<String> {
    let line = format!("X: {word}");
    if let Ok((h, _)) = mailparse::parse_header(line.as_bytes()) {
        let v = h.get_value();
        if v != word {
            return Some(v);
        }
    }
    // An unknown charset: a client still shows the ASCII in it, so decode the bytes.
    let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut fields = inner.splitn(3, '?');
    let (_, enc, text) = (fields.next()?, fields.next()?, fields.next()?);
    let bytes = if enc.eq_ignore_ascii_case("b") {
        base64_lenient(text.as_bytes())
    } else {
        let t = text.replace('_', " ");
        percent_like_decode(t.as_bytes(), b'=')
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `%XX` (or `=XX`) escapes decoded; anything else kept.
fn percent_like_decode(text: &[u8], escape: u8) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == escape {
            if let (Some(h), Some(l)) = (
                text.get(i + 1).and_then(|&c| hex(c)),
                text.get(i + 2).and_then(|&c| hex(c)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// Decode RFC 2047 encoded words in a value (mail clients put them in
/// `filename="=?UTF-8?B?…?="`, which RFC 2231 does not allow but every client reads).
/// Linear in the length of `value`; white space between two encoded words is dropped.
pub fn decode_words(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_string();
    }
    let b = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut copied = 0;
    let mut after_word: Option<usize> = None;
    let mut at = 0;
    while let Some(found) = value[at..].find("=?") {
        let start = at + found;
        match encoded_word_at(b, start)
            .and_then(|end| Some((end, decode_word(&value[start..end])?)))
        {
            Some((end, text)) => {
                let between = &value[copied..start];
                if !(after_word == Some(copied) && between.bytes().all(is_wsp)) {
                    out.push_str(between);
                }
                out.push_str(&text);
                copied = end;
                after_word = Some(end);
                at = end;
            }
            None => at = start + 2,
        }
    }
    out.push_str(&value[copied..]);
    out
}

/// Split a parameter list on `;` outside quoted strings.
fn split_params(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            quoted = !quoted;
        } else if c == b';' && !quoted {
            out.push(&value[start..i]);
            start = i + 1;
        }
    }
    out.push(&value[start..]);
    out
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if !escaped && c == '\\' {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// A Content-Type or Content-Disposition value: its lower-case first token and every
/// parameter in order — a repeated parameter is kept every time it appears.
pub(super) struct Params {
    pub(super) value: String,
    params: Vec<(String, String)>,
}

impl Params {
    pub(super) fn parse(value: &str) -> Params {
        let mut tokens = split_params(value).into_iter();
        let first = tokens.next().unwrap_or("").trim().to_ascii_lowercase();
        let params = tokens
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                Some((k.trim().to_ascii_lowercase(), unquote(v.trim())))
            })
            .collect();
        Params {
            value: first,
            params,
        }
    }

    /// Every value the parameter `base` is given: each plain `base=`, each RFC 2231
    /// `base*=`, and its `base*0`, `base*1*`… continuations (joined keeping the first of
    /// a repeated piece, and keeping the last, when those differ).
    pub(super) fn candidates(&self, base: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut push = |v: String| {
            if seen.insert(v.clone()) {
                out.push(v);
            }
        };
        let extended = format!("{base}*");
        let mut pieces: Vec<(usize, bool, &str)> = Vec::new();
        for (k, v) in &self.params {
            if k == base {
                push(v.clone());
            } else if *k == extended {
                push(decode_2231(v, true));
            } else if let Some(rest) = k.strip_prefix(extended.as_str()) {
                let (num, encoded) = match rest.strip_suffix('*') {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                if let Ok(n) = num.parse::<usize>() {
                    pieces.push((n, encoded, v));
                }
            }
        }
        if !pieces.is_empty() {
            for keep_last in [false, true] {
                let mut by_index: std::collections::BTreeMap<usize, (bool, &str)> =
                    std::collections::BTreeMap::new();
                for &(n, encoded, v) in &pieces {
                    if keep_last || !by_index.contains_key(&n) {
                        by_index.insert(n, (encoded, v));
                    }
                }
                push(join_2231(&by_index));
            }
        }
        out
    }
}

/// The charset and octets of an RFC 2231 `charset'language'%XX…` value (`with_charset`)
/// or of a later `%XX…` piece.
fn split_2231(v: &str, with_charset: bool) -> (String, Vec<u8>) {
    if with_charset {
        let mut parts = v.splitn(3, '\'');
        if let (Some(cs), Some(_), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
            return (cs.to_string(), percent_like_decode(rest.as_bytes(), b'%'));
        }
    }
    (String::new(), percent_like_decode(v.as_bytes(), b'%'))
}

/// Octets in a charset: mailparse for the charsets it knows, else UTF-8 (lossy).
fn charset_decode(charset: &str, octets: &[u8]) -> String {
    let plain = charset.is_empty()
        || charset.eq_ignore_ascii_case("utf-8")
        || charset.eq_ignore_ascii_case("us-ascii");
    let safe = charset
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c));
    if !plain && safe {
        let escaped: String = octets.iter().map(|b| format!("%{b:02X}")).collect();
        let ct = mailparse::parse_content_type(&format!("x/y; n*={charset}''{escaped}"));
        if let Some(v) = ct.params.get("n") {
            return v.clone();
        }
    }
    String::from_utf8_lossy(octets).into_owned()
}

fn decode_2231(v: &str, with_charset: bool) -> String {
    let (charset, octets) = split_2231(v, with_charset);
    charset_decode(&charset, &octets)
}

fn join_2231(pieces: &std::collections::BTreeMap<usize, (bool, &str)>) -> String {
    let mut charset = String::new();
    let mut octets = Vec::new();
    for (expected, (&n, &(encoded, v))) in pieces.iter().enumerate() {
        if n != expected {
            break;
        }
        if encoded {
            let (cs, bytes) = split_2231(v, n == 0);
            if n == 0 {
                charset = cs;
            }
            octets.extend_from_slice(&bytes);
        } else {
            octets.extend_from_slice(v.as_bytes());
        }
    }
    charset_decode(&charset, &octets)
}

/// The part's file names: every `filename` and `name` of every Content-Disposition and
/// every Content-Type header, each decoded (RFC 2231, RFC 2047). Clients differ in which
/// one they show, so the rules see them all (once each, last path component).
pub(super) fn file_names(dispositions: &[&[u8]], types: &[&[u8]]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let headers = dispositions
        .iter()
        .map(|v| (v, ["filename", "name"]))
        .chain(types.iter().map(|v| (v, ["name", "filename"])));
    for (value, bases) in headers {
        let params = Params::parse(&unfold(value));
        for base in bases {
            for raw in params.candidates(base) {
                let name = decode_words(&raw);
                // A path in a name is the client's business; the rules look at the last component.
                let last = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_string();
                if seen.insert(last.clone()) {
                    names.push(last);
                }
            }
        }
    }
    names
}
