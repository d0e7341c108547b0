//! The DNS TXT record that publishes a DKIM key (RFC 6376 3.6.1), and whether DNS
//! publishes it: `SELECTOR._domainkey.DOMAIN TXT "v=DKIM1; k=rsa; p=BASE64"`.

use super::keys::Key;
use base64ct::{Base64, Encoding};
use postern_dns::{Answer, Dns};
use std::time::Duration;

/// Longest string in one TXT record's character-string (RFC 1035 3.3).
pub const MAX_TXT_STRING: usize = 255;
/// How long `posternctl dkim list` waits for one key's record.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);

/// `SELECTOR._domainkey.DOMAIN`.
pub fn name(selector: &str, domain: &str) -> String {
    format!("{selector}._domainkey.{domain}")
}

/// The record's text: `v=DKIM1; k=TYPE; p=BASE64`.
pub fn value(key: &Key) -> Result<String, String> {
    Ok(format!(
        "v=DKIM1; k={}; p={}",
        key.kind.name(),
        Base64::encode_string(&key.public_key()?)
    ))
}

/// The record as a zone file line (BIND, NSD, Knot): the text split into strings of at
/// most 255 bytes, which DNS joins back into one.
pub fn zone_line(key: &Key) -> Result<String, String> {
    let v = value(key)?;
    let strings: Vec<String> = v
        .as_bytes()
        .chunks(MAX_TXT_STRING)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    Ok(format!(
        "{}. IN TXT ( {} )",
        name(&key.selector, &key.domain),
        strings.join(" ")
    ))
}

/// The value of tag `tag` in a DKIM key record (`tag=value; ...`), blanks removed (a
/// key record's `p=` may be folded with spaces).
pub fn tag(record: &[u8], tag: &str) -> Option<String> {
    let text = String::from_utf8_lossy(record);
    text.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim() == tag).then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

/// What DNS says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The record carries this key.
    Yes,
    /// No TXT record at the name.
    Missing,
    /// A record with another key (or none: `p=` empty is a revoked key).
    Different,
    /// DNS did not answer.
    Trouble(String),
}

impl Published {
    /// A word for `posternctl dkim list`.
    pub fn describe(&self) -> String {
        match self {
            Published::Yes => "published".to_string(),
            Published::Missing => "not published".to_string(),
            Published::Different => "DNS has another key".to_string(),
            Published::Trouble(e) => format!("DNS trouble: {e}"),
        }
    }
}

/// Whether `txt` (the record's text, its strings joined) carries `key`.
pub fn matches(txt: &[u8], key: &Key) -> Result<bool, String> {
    let ours = Base64::encode_string(&key.public_key()?);
    Ok(tag(txt, "p").as_deref() == Some(ours.as_str()))
}

/// Ask DNS whether it publishes `key`.
pub fn published(dns: &Dns, key: &Key) -> Result<Published, String> {
    Ok(
        match dns.txt(&name(&key.selector, &key.domain), LOOKUP_DEADLINE) {
            Answer::Found(txt) if matches(&txt, key)? => Published::Yes,
            Answer::Found(_) => Published::Different,
            Answer::NotFound => Published::Missing,
            Answer::Failed(e) => Published::Trouble(e),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::KeyType;

    #[test]
    fn a_zone_line_splits_the_text_into_strings_dns_joins() {
        let k = Key::generate("example.test", "s1", KeyType::Rsa).unwrap();
        let line = zone_line(&k).unwrap();
        assert!(line.starts_with("s1._domainkey.example.test. IN TXT ( \"v=DKIM1; k=rsa; p="));
        let joined: String = line
            .split('"')
            .skip(1)
            .step_by(2)
            .inspect(|s| assert!(s.len() <= MAX_TXT_STRING))
            .collect();
        assert_eq!(joined, value(&k).unwrap());
        assert!(matches(joined.as_bytes(), &k).unwrap());
        let other = Key::generate("example.test", "s1", KeyType::Rsa).unwrap();
        assert!(!matches(joined.as_bytes(), &other).unwrap());
    }

    #[test]
    fn tags_are_read_with_blanks_removed() {
        assert_eq!(
            tag(b"v=DKIM1; k=ed25519; p=ab cd\t=", "p").as_deref(),
            Some("abcd=")
        );
        assert_eq!(tag(b"v=DKIM1; p=", "p").as_deref(), Some(""));
        assert_eq!(tag(b"v=DKIM1", "p"), None);
    }
}
