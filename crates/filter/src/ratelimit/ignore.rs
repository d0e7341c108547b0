//! `control/ratelimit.ignore`: keys that are never counted. One entry per line:
//!
//! | entry | skips |
//! |---|---|
//! | `list@example.test` | that envelope sender (case-insensitive) |
//! | `@example.test` | every sender in that domain (not its subdomains) |
//! | `192.0.2.7`, `2001:db8::1` | that client IP |
//! | `192.0.2.0/24`, `2001:db8::/32` | a CIDR block |
//! | `10.`, `192.168.1.` | a tcprules-style prefix (ends in `.` or `:`) |
//! | `auth:alice@example.test` | that authenticated user (case-insensitive) |
//!
//! Each key of an accepted message is checked on its own: ignoring a relay's IP still
//! counts the senders that come through it.

use postern_common::control::Control;
use postern_common::logline::printable;
use postern_common::{Error, Result};
use std::collections::HashSet;
use std::net::IpAddr;

pub const FILE: &str = "ratelimit.ignore";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    senders: HashSet<String>,
    domains: HashSet<String>,
    ips: HashSet<IpAddr>,
    nets: Vec<(IpAddr, u8)>,
    prefixes: Vec<String>,
    users: HashSet<String>,
}

impl Ignore {
    /// Read the file; missing = ignore nothing. A bad line is an error naming it.
    pub fn load(control: &Control) -> Result<Ignore> {
        let mut ignore = Ignore::default();
        for line in control.list(FILE)? {
            ignore.add(&line.text).map_err(|why| {
                Error::temp(format!(
                    "control/{FILE}:{}: {why}: {}",
                    line.number,
                    printable(&line.text)
                ))
            })?;
        }
        Ok(ignore)
    }

    fn add(&mut self, entry: &str) -> std::result::Result<(), &'static str> {
        if let Some(user) = entry.strip_prefix("auth:") {
            if user.is_empty() {
                return Err("auth: needs a user name");
            }
            self.users.insert(user.to_ascii_lowercase());
        } else if let Some(domain) = entry.strip_prefix('@') {
            if domain.is_empty() {
                return Err("@ needs a domain");
            }
            self.domains.insert(domain.to_ascii_lowercase());
        } else if entry.contains('@') {
            self.senders.insert(entry.to_ascii_lowercase());
        } else if let Some((net, bits)) = entry.split_once('/') {
            let net: IpAddr = net.parse().map_err(|_| "not an IP address before /")?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            match bits.parse::<u8>() {
                Ok(b) if b <= max => self.nets.push((net, b)),
                _ => return Err("bad prefix length"),
            }
        } else if let Ok(ip) = entry.parse::<IpAddr>() {
            self.ips.insert(ip);
        } else if (entry.ends_with('.') || entry.ends_with(':'))
            && entry
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
        {
            self.prefixes.push(entry.to_ascii_lowercase());
        } else {
            return Err("not an address, @domain, IP, CIDR block, prefix or auth:USER");
        }
        Ok(())
    }

    /// `sender` is lower-case already (as [`super::accept`] gives it).
    pub fn sender(&self, sender: &str) -> bool {
        self.senders.contains(sender)
            || sender
                .rsplit_once('@')
                .is_some_and(|(_, d)| self.domains.contains(d))
    }

    pub fn ip(&self, ip: &str) -> bool {
        if let Ok(addr) = ip.parse::<IpAddr>() {
            if self.ips.contains(&addr) || self.nets.iter().any(|&(n, b)| in_net(addr, n, b)) {
                return true;
            }
        }
        let ip = ip.to_ascii_lowercase();
        self.prefixes.iter().any(|p| ip.starts_with(p.as_str()))
    }

    /// `user` is lower-case already (as [`super::accept`] gives it).
    pub fn auth(&self, user: &str) -> bool {
        self.users.contains(user)
    }
}

fn in_net(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn load(text: &str) -> Result<Ignore> {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), text).unwrap();
        Ignore::load(&Control::at(dir.path()))
    }

    #[test]
    fn every_entry_form() {
        let i = load(
            "# lists\nList@Example.TEST\n@partner.test\n192.0.2.7\n198.51.100.0/24\n\
             2001:db8::/32\n10.\nauth:webmail\n",
        )
        .unwrap();
        assert!(i.sender("list@example.test"));
        assert!(!i.sender("other@example.test"));
        assert!(i.sender("anyone@partner.test"));
        assert!(!i.sender("anyone@sub.partner.test"));
        assert!(i.ip("192.0.2.7"));
        assert!(!i.ip("192.0.2.8"));
        assert!(i.ip("198.51.100.200"));
        assert!(!i.ip("198.51.101.1"));
        assert!(i.ip("2001:db8:1::5"));
        assert!(!i.ip("2001:db9::5"));
        assert!(i.ip("10.1.2.3"));
        assert!(!i.ip("110.1.2.3"));
        assert!(i.auth("webmail"));
        assert!(!i.auth("alice"));
    }

    #[test]
    fn zero_prefix_matches_everything_of_the_family() {
        let i = load("0.0.0.0/0\n").unwrap();
        assert!(i.ip("203.0.113.1"));
        assert!(!i.ip("::1"));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = load("ok@x.test\n300.1.2.3/8\n").unwrap_err();
        assert!(
            err.msg
                .starts_with("control/ratelimit.ignore:2: not an IP address before /"),
            "{}",
            err.msg
        );
        let err = load("10.0.0.0/33\n").unwrap_err();
        assert!(err.msg.contains("bad prefix length"), "{}", err.msg);
        let err = load("localhost\n").unwrap_err();
        assert!(err.msg.contains(":1: not an address"), "{}", err.msg);
    }
}
