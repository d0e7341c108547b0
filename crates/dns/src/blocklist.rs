//! DNS blocklists (RFC 5782): the name a zone is asked about for an address, and the
//! text of a TXT answer, which postern-rblsmtpd gives the blocked client as the reason.

use std::net::IpAddr;

/// Longest TXT text kept (all strings of all records, concatenated).
pub const MAX_TXT: usize = 4096;

/// The name a blocklist is asked about: `4.3.2.1.` for 1.2.3.4, reversed nibbles for
/// IPv6, followed by the zone.
pub fn reverse_name(ip: IpAddr, zone: &str) -> String {
    let mut name = String::new();
    match ip {
        IpAddr::V4(v4) => {
            for o in v4.octets().iter().rev() {
                name.push_str(&format!("{o}."));
            }
        }
        IpAddr::V6(v6) => {
            for b in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", b & 15, b >> 4));
            }
        }
    }
    name.push_str(zone.trim_end_matches('.'));
    name.push('.');
    name
}

/// The text of a TXT answer from the character-strings of its records, in answer order:
/// concatenated (as djbdns's dns_txt does), at most [`MAX_TXT`] bytes. Public so that the
/// fuzz target `dns_txt` can feed it what hickory decodes from arbitrary DNS messages.
pub fn txt_text<'a>(strings: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut text = Vec::new();
    for s in strings {
        text.extend_from_slice(s);
    }
    text.truncate(MAX_TXT);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("127.0.0.2".parse().unwrap(), "zen.test"),
            "2.0.0.127.zen.test."
        );
        assert_eq!(
            reverse_name("1.2.3.4".parse().unwrap(), "bl.test."),
            "4.3.2.1.bl.test."
        );
        let v6 = reverse_name("2001:db8::1".parse().unwrap(), "z");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.z."), "{v6}");
        assert_eq!(v6.matches('.').count(), 33);
    }

    #[test]
    fn txt_text_is_joined_and_bounded() {
        assert_eq!(txt_text([&b"ab"[..], b"cd"]), b"abcd");
        assert_eq!(txt_text([&[b'x'; 5000][..]]).len(), MAX_TXT);
    }
}
