//! The rules source syntax and the compiler to cdb records.
//!
//! `ADDRESS:allow` or `ADDRESS:deny`, then any number of `,VAR=QvalueQ` where Q is any
//! byte. Comments (`#`) and blank lines are skipped; trailing spaces, tabs and CR are
//! stripped. Addresses: `1.2.3.4`, `1.2.3.`, ranges `1.2.3.4-7` (one key per value),
//! `=host`, `=.suffix`, `=`, `info@…`, the empty default, IPv6 text and prefixes, and —
//! postern's addition — CIDR `10.0.0.0/8` / `2001:db8::/32`.
//!
//! Deliberately stricter than classic tcprules: a non-comment line without `:` is an
//! error (classic ignores it, so a typo silently drops a rule), as is whitespace or a
//! control byte inside an address, an empty variable name, and a range whose bounds are
//! not numbers or run backwards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest rules line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// One source line, compiled: the keys it stores (several for a range) and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub keys: Vec<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Parse one line (without its newline). `Ok(None)` for comments and blank lines; `Err`
/// carries a short reason.
pub fn parse_line(raw: &[u8]) -> Result<Option<Rule>, &'static str> {
    if raw.len() > MAX_LINE {
        return Err("line too long");
    }
    let mut end = raw.len();
    while end > 0 && matches!(raw[end - 1], b' ' | b'\t' | b'\r' | b'\n') {
        end -= 1;
    }
    let line = &raw[..end];
    if line.is_empty() || line[0] == b'#' {
        return Ok(None);
    }
    let colon = line.iter().position(|&b| b == b':').ok_or("no colon")?;
    // IPv6 addresses contain colons: the instructions start after the last colon that
    // is followed by allow or deny.
    let colon = line
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b':')
        .map(|(i, _)| i)
        .find(|&i| line[i + 1..].starts_with(b"allow") || line[i + 1..].starts_with(b"deny"))
        .unwrap_or(colon);
    let (address, instructions) = (&line[..colon], &line[colon + 1..]);
    if address.iter().any(|&b| b <= b' ' || b >= 0x7f) {
        return Err("space or control byte in the address");
    }
    let keys = keys_for(address)?;
    let value = parse_instructions(instructions)?;
    Ok(Some(Rule { keys, value }))
}

fn parse_instructions(mut rest: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut value = Vec::new();
    if let Some(r) = rest.strip_prefix(b"allow") {
        rest = r;
    } else if let Some(r) = rest.strip_prefix(b"deny") {
        value.extend_from_slice(b"D\0");
        rest = r;
    } else {
        return Err("instructions must start with allow or deny");
    }
    while !rest.is_empty() {
        rest = rest
            .strip_prefix(b",")
            .ok_or("expected , after the instruction")?;
        let eq = rest
            .iter()
            .position(|&b| b == b'=')
            .ok_or("variable without =")?;
        let name = &rest[..eq];
        if name.is_empty() || name.iter().any(|&b| b <= b' ' || b >= 0x7f || b == b',') {
            return Err("bad variable name");
        }
        let quote = *rest.get(eq + 1).ok_or("variable without a quoted value")?;
        let body = &rest[eq + 2..];
        let close = body
            .iter()
            .position(|&b| b == quote)
            .ok_or("value without its closing quote")?;
        let val = &body[..close];
        if val.contains(&0) {
            return Err("NUL in a value");
        }
        value.push(b'+');
        value.extend_from_slice(name);
        value.push(b'=');
        value.extend_from_slice(val);
        value.push(0);
        rest = &body[close + 1..];
    }
    Ok(value)
}

/// The cdb keys one address stands for.
fn keys_for(address: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let text = std::str::from_utf8(address).map_err(|_| "address is not ASCII")?;
    if text.contains('/') && !text.contains('@') && !text.starts_with('=') {
        return Ok(vec![cidr_key(text)?.into_bytes()]);
    }
    if !text.contains('=') && !text.contains('@') && text.contains('-') {
        return expand_range(text);
    }
    if let Ok(v6) = text.parse::<Ipv6Addr>() {
        return Ok(vec![v6.to_string().into_bytes()]);
    }
    Ok(vec![address.to_vec()])
}

/// `1.2.3.4-7` → `1.2.3.4` … `1.2.3.7`; `1.2.3-5.` → `1.2.3.` `1.2.4.` `1.2.5.`. The top
/// is capped at 255, as classic tcprules does.
fn expand_range(text: &str) -> Result<Vec<Vec<u8>>, &'static str> {
    let dash = text.find('-').ok_or("no range")?;
    let start = text[..dash].rfind('.').map(|d| d + 1).unwrap_or(0);
    let left: u32 = text[start..dash]
        .parse()
        .map_err(|_| "range start is not a number")?;
    let after = &text[dash + 1..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    let right: u32 = after[..digits]
        .parse()
        .map_err(|_| "range end is not a number")?;
    let right = right.min(255);
    if left > right {
        return Err("range runs backwards");
    }
    let (head, tail) = (&text[..start], &after[digits..]);
    Ok((left..=right)
        .map(|n| format!("{head}{n}{tail}").into_bytes())
        .collect())
}

/// Parse `NET/LEN` and normalise it: the network address with the host bits cleared.
/// IPv4 may be short, as ucspi-tcp6 allows: `127.0/8` is `127.0.0.0/8`.
pub fn cidr_key(text: &str) -> Result<String, &'static str> {
    let (net, len) = text.split_once('/').ok_or("no / in CIDR")?;
    let len: u8 = len.parse().map_err(|_| "bad CIDR prefix length")?;
    let ip = if net.contains(':') {
        IpAddr::V6(net.parse().map_err(|_| "bad IPv6 address in CIDR")?)
    } else {
        let parts: Vec<&str> = net.split('.').collect();
        if parts.is_empty() || parts.len() > 4 {
            return Err("bad IPv4 address in CIDR");
        }
        let mut octets = [0u8; 4];
        for (i, p) in parts.iter().enumerate() {
            octets[i] = p.parse().map_err(|_| "bad IPv4 address in CIDR")?;
        }
        IpAddr::V4(Ipv4Addr::from(octets))
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err("CIDR prefix length too long");
    }
    Ok(cidr_text(ip, len))
}

/// The key for `ip` masked to `len` bits: `10.0.0.0/8`.
pub fn cidr_text(ip: IpAddr, len: u8) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            format!("{}/{len}", Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            format!("{}/{len}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// One cdb record: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Compile a whole rules source into cdb records, in line order. The error names the
/// 1-based line and shows it in printable form.
pub fn compile(source: &[u8]) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    for (i, line) in source.split(|&b| b == b'\n').enumerate() {
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(rule)) => {
                for key in rule.keys {
                    records.push((key, rule.value.clone()));
                }
            }
            Err(_) => {
                let shown = &line[..line.len().min(200)];
                return Err(format!(
                    "unable to parse line {}: {}",
                    i + 1,
                    postern_common::logline::printable(shown)
                ));
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Rule {
        parse_line(line.as_bytes()).unwrap().unwrap()
    }

    fn keys(line: &str) -> Vec<String> {
        one(line)
            .keys
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn classic_encoding() {
        assert_eq!(one("1.2.3.:allow").value, b"");
        assert_eq!(one(":deny").keys, vec![b"".to_vec()]);
        assert_eq!(one(":deny").value, b"D\0");
        assert_eq!(one("x:deny,A=\"1\"").value, b"D\0+A=1\0");
        assert_eq!(
            one("10.:allow,RELAYCLIENT=\"\",RBLSMTPD=/-go away/").value,
            b"+RELAYCLIENT=\0+RBLSMTPD=-go away\0"
        );
        assert_eq!(
            one("=host.test:allow  \t\r").keys,
            vec![b"=host.test".to_vec()]
        );
    }

    #[test]
    fn ranges_expand_like_classic() {
        assert_eq!(
            keys("1.2.3.4-7:allow"),
            ["1.2.3.4", "1.2.3.5", "1.2.3.6", "1.2.3.7"]
        );
        assert_eq!(keys("1.2.3-5.:allow"), ["1.2.3.", "1.2.4.", "1.2.5."]);
        assert_eq!(keys("1.2.3.254-999:allow"), ["1.2.3.254", "1.2.3.255"]);
        assert!(parse_line(b"1.2.3.9-7:allow").is_err());
    }

    #[test]
    fn cidr_is_normalised() {
        assert_eq!(keys("10.1.2.3/8:allow"), ["10.0.0.0/8"]);
        assert_eq!(keys("127.0/8:allow"), ["127.0.0.0/8"]);
        assert_eq!(keys("2001:DB8::1/32:deny"), ["2001:db8::/32"]);
        assert!(parse_line(b"10.0.0.0/33:allow").is_err());
        assert!(parse_line(b"10.0.0.x/8:allow").is_err());
    }

    #[test]
    fn ipv6_addresses_and_prefixes() {
        assert_eq!(keys("::1:allow"), ["::1"]);
        assert_eq!(keys("2001:DB8:0::1:deny"), ["2001:db8::1"]);
        assert_eq!(keys("2001:db8:::deny"), ["2001:db8::"]);
        assert_eq!(keys("2001:db8::allow"), ["2001:db8:"]);
    }

    #[test]
    fn comments_blank_and_bad_lines() {
        assert_eq!(parse_line(b"# x:deny").unwrap(), None);
        assert_eq!(parse_line(b"   ").unwrap(), None);
        for bad in [
            "1.2.3.4: allow",
            "1.2.3.4:allow,deny",
            "1.2.3.4:allowx",
            "1.2.3.4:allow,A=\"x",
            "1.2.3.4:allow,A=\"x\",",
            "1.2.3.4:",
            "1.2.3.4:allow,A",
            "1.2.3.4 x:allow",
            "no colon here",
            "1.2.3.4:allow,=\"x\"",
        ] {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn compile_names_the_bad_line() {
        let err = compile(b"# ok\n1.2.3.4:allow\n5.6.7.8:alow\x01\n").unwrap_err();
        assert_eq!(err, "unable to parse line 3: 5.6.7.8:alow\\x01");
        let recs = compile(b"1.:deny\n:allow\n").unwrap();
        assert_eq!(
            recs,
            vec![
                (b"1.".to_vec(), b"D\0".to_vec()),
                (b"".to_vec(), b"".to_vec())
            ]
        );
    }
}
