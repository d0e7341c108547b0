//! SASL PLAIN (RFC 4616) as POP3 AUTH (RFC 5034) and SMTP AUTH (RFC 4954) carry it: base64 of
//! `authzid NUL authcid NUL passwd`. We log in as authcid; an authzid naming someone
//! else is refused (no proxy logins).

/// Largest decoded PLAIN message: 255 bytes for each of the three parts.
pub const MAX_PLAIN: usize = 3 * 255 + 2;

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Strict base64 (RFC 4648 §4): length a multiple of 4, `=` only at the end.
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() & 3 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (i, chunk) in text.chunks(4).enumerate() {
        let last = i + 1 == text.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Base64-encode (for tests and for the `+ ` challenge, which is empty for PLAIN).
pub fn encode_base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a PLAIN response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainError {
    Base64,
    Shape,
    Authzid,
}

/// Decode a PLAIN response into (user, password).
pub fn decode_plain(response: &[u8]) -> Result<(Vec<u8>, Vec<u8>), PlainError> {
    let raw = decode_base64(response).ok_or(PlainError::Base64)?;
    if raw.len() > MAX_PLAIN {
        return Err(PlainError::Shape);
    }
    let parts: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
    let [authzid, user, pass] = parts[..] else {
        return Err(PlainError::Shape);
    };
    if user.is_empty() || pass.is_empty() {
        return Err(PlainError::Shape);
    }
    if !authzid.is_empty() && authzid != user {
        return Err(PlainError::Authzid);
    }
    Ok((user.to_vec(), pass.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_is_strict() {
        for data in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            b"\0alice\0secret",
            &[0xff, 0xfe, 0x00],
        ] {
            let text = encode_base64(data);
            assert_eq!(
                decode_base64(text.as_bytes()).as_deref(),
                Some(data),
                "{text}"
            );
        }
        assert_eq!(encode_base64(b"\0alice\0secret"), "AGFsaWNlAHNlY3JldA==");
        assert!(decode_base64(b"AGFsaWNlAHNlY3JldA=").is_none());
        assert!(decode_base64(b"AG=s").is_none());
        assert!(decode_base64(b"AG s").is_none());
        assert!(decode_base64(b"A===").is_none());
    }

    #[test]
    fn plain_messages() {
        let ok = encode_base64(b"\0alice@example.test\0pw with space");
        assert_eq!(
            decode_plain(ok.as_bytes()),
            Ok((b"alice@example.test".to_vec(), b"pw with space".to_vec()))
        );
        let same = encode_base64(b"bob\0bob\0x");
        assert!(decode_plain(same.as_bytes()).is_ok());
        let proxy = encode_base64(b"admin\0bob\0x");
        assert_eq!(decode_plain(proxy.as_bytes()), Err(PlainError::Authzid));
        for bad in [&b"\0bob"[..], b"\0\0x", b"\0bob\0", b"a\0b\0c\0d"] {
            assert_eq!(
                decode_plain(encode_base64(bad).as_bytes()),
                Err(PlainError::Shape)
            );
        }
        assert_eq!(decode_plain(b"!!!!"), Err(PlainError::Base64));
    }
}
