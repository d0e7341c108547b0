//! Finding the rule for a client: the candidate keys in order, the first
//! one present wins, and its value decoded into allow/deny and environment variables.
//!
//! Order: `info@ip`, `info@=host`, `ip`, `=host`, the dotted (or, for IPv6, colon)
//! prefixes of the address longest first, postern's CIDR keys longest first, `=.suffix`
//! for each suffix of the host name, `=`, and the empty key.

use super::source::cidr_text;
use postern_common::cdb::{Reader, Source};
use std::ffi::OsString;
use std::io;
use std::net::IpAddr;
use std::os::unix::ffi::OsStringExt;

/// What tcpserver knows about the client when it looks up the rules.
#[derive(Debug, Clone)]
pub struct Client<'a> {
    pub ip: IpAddr,
    /// TCPREMOTEHOST, if set.
    pub host: Option<&'a str>,
    /// TCPREMOTEINFO, if set.
    pub info: Option<&'a str>,
}

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The key that matched; `None` when no rule applies (allow, nothing set).
    pub key: Option<Vec<u8>>,
    pub deny: bool,
    /// The `+VAR=value` entries, in order.
    pub env: Vec<(OsString, OsString)>,
}

impl Decision {
    /// The matched key for logs: the key text, `""` for the default rule, `none` if no rule.
    pub fn rule_name(&self) -> String {
        match &self.key {
            None => "none".to_string(),
            Some(k) => String::from_utf8_lossy(k).into_owned(),
        }
    }
}

/// The address as rules write it: dotted quad, or compressed lowercase IPv6.
pub fn ip_text(ip: IpAddr) -> String {
    ip.to_string()
}

/// Every key to try for `client`, in the order they are tried.
pub fn candidate_keys(client: &Client) -> Vec<Vec<u8>> {
    let ip = ip_text(client.ip);
    let mut keys: Vec<String> = Vec::new();
    if let Some(info) = client.info {
        keys.push(format!("{info}@{ip}"));
        if let Some(host) = client.host {
            keys.push(format!("{info}@={host}"));
        }
    }
    keys.push(ip.clone());
    if let Some(host) = client.host {
        keys.push(format!("={host}"));
    }
    let sep = if client.ip.is_ipv4() { '.' } else { ':' };
    let mut prefix = ip.as_str();
    // Drop the last part (and, for IPv6, each further one) keeping the separator.
    while let Some(at) = prefix[..prefix.len().saturating_sub(1)].rfind(sep) {
        prefix = &prefix[..=at];
        keys.push(prefix.to_string());
    }
    let bits = if client.ip.is_ipv4() { 32 } else { 128 };
    for len in (0..=bits).rev() {
        keys.push(cidr_text(client.ip, len));
    }
    if let Some(host) = client.host {
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            keys.push(format!("={}", &rest[dot..]));
            rest = &rest[dot + 1..];
        }
        keys.push("=".to_string());
    }
    keys.push(String::new());
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(keys.len());
    for k in keys {
        // An IPv6 address can repeat a prefix; trying it twice is harmless but wasteful.
        if !out.iter().any(|o| o == k.as_bytes()) {
            out.push(k.into_bytes());
        }
    }
    out
}

/// Decode a rule's value: `D` = deny, `+VAR=value` = set; other entries are ignored, as
/// classic tcpserver does.
pub fn decode(key: Vec<u8>, value: &[u8]) -> Decision {
    let mut d = Decision {
        key: Some(key),
        deny: false,
        env: Vec::new(),
    };
    for entry in value.split(|&b| b == 0) {
        match entry.first() {
            Some(b'D') => d.deny = true,
            Some(b'+') => {
                if let Some(eq) = entry.iter().position(|&b| b == b'=') {
                    let name = OsString::from_vec(entry[1..eq].to_vec());
                    let val = OsString::from_vec(entry[eq + 1..].to_vec());
                    d.env.push((name, val));
                }
            }
            _ => {}
        }
    }
    d
}

/// Look `client` up in a rules cdb.
pub fn lookup<S: Source + ?Sized>(reader: &Reader<S>, client: &Client) -> io::Result<Decision> {
    for key in candidate_keys(client) {
        if let Some(value) = reader.find(&key)? {
            return Ok(decode(key, &value));
        }
    }
    Ok(Decision::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::compile;
    use postern_common::cdb::Writer;

    fn cdb(source: &str) -> Reader<[u8]> {
        let mut w = Writer::new();
        for (k, v) in compile(source.as_bytes()).unwrap() {
            w.add(&k, &v).unwrap();
        }
        Reader::from_bytes(&w.finish().unwrap())
    }

    fn client<'a>(ip: &str, host: Option<&'a str>) -> Client<'a> {
        Client {
            ip: ip.parse().unwrap(),
            host,
            info: None,
        }
    }

    #[test]
    fn order_of_keys_for_ipv4() {
        let c = Client {
            ip: "1.2.3.4".parse().unwrap(),
            host: Some("a.b.c"),
            info: Some("joe"),
        };
        let keys: Vec<String> = candidate_keys(&c)
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(
            &keys[..7],
            [
                "joe@1.2.3.4",
                "joe@=a.b.c",
                "1.2.3.4",
                "=a.b.c",
                "1.2.3.",
                "1.2.",
                "1."
            ]
        );
        assert_eq!(keys[7], "1.2.3.4/32");
        assert_eq!(keys[7 + 32], "0.0.0.0/0");
        assert_eq!(&keys[40..], ["=.b.c", "=.c", "=", ""]);
    }

    #[test]
    fn ipv6_prefixes() {
        let keys: Vec<String> = candidate_keys(&client("2001:db8::1", None))
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(
            &keys[..4],
            ["2001:db8::1", "2001:db8::", "2001:db8:", "2001:"]
        );
        assert_eq!(keys[4], "2001:db8::1/128");
    }

    #[test]
    fn first_key_and_first_duplicate_win() {
        let r = cdb("1.2.3.4:deny\n1.2.3.4:allow\n1.2.:allow,A=\"x\"\n10.0.0.0/8:deny\n=.example.test:allow,H=\"1\"\n:deny\n");
        let d = lookup(&r, &client("1.2.3.4", None)).unwrap();
        assert!(d.deny);
        assert_eq!(d.rule_name(), "1.2.3.4");
        let d = lookup(&r, &client("1.2.9.9", None)).unwrap();
        assert!(!d.deny);
        assert_eq!(d.env, vec![(OsString::from("A"), OsString::from("x"))]);
        let d = lookup(&r, &client("10.200.1.1", None)).unwrap();
        assert!(d.deny);
        assert_eq!(d.rule_name(), "10.0.0.0/8");
        let d = lookup(&r, &client("9.9.9.9", Some("mx.example.test"))).unwrap();
        assert_eq!(d.rule_name(), "=.example.test");
        let d = lookup(&r, &client("9.9.9.9", None)).unwrap();
        assert!(d.deny);
        assert_eq!(d.rule_name(), "");
    }

    #[test]
    fn no_rule_allows() {
        let r = cdb("1.2.3.4:deny\n");
        let d = lookup(&r, &client("5.6.7.8", None)).unwrap();
        assert_eq!(d, Decision::default());
        assert_eq!(d.rule_name(), "none");
    }

    #[test]
    fn decode_ignores_unknown_entries() {
        let d = decode(b"k".to_vec(), b"X\0+NOEQ\0+A=b=c\0");
        assert!(!d.deny);
        assert_eq!(d.env, vec![(OsString::from("A"), OsString::from("b=c"))]);
    }
}
