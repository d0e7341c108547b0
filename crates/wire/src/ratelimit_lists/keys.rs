//! The keys of `ratelimit.blocked`: what postern-ratelimit counts and blocks under, and
//! the one rule that says whether a session is blocked by them: postern-ratelimit
//! writes the file with these keys, postern-smtpd reads it and asks [`is_blocked`].
//!
//! A forged envelope sender must not get a third party blocked everywhere, so:
//! - an **unauthenticated** message counts for its sender *together with the client's
//!   network* (`/24` for IPv4, `/64` for IPv6): `sender` keys look like
//!   `alice@example.test/203.0.113.0/24`. A botnet forging alice's address from
//!   elsewhere gets alice blocked only from its own networks.
//! - an **authenticated** message counts for its login (`auth` keys) and never for its
//!   sender address: a user's own limit follows the user, not the address they send as.
//! - `ip` keys are client addresses, as before.
//!
//! A `sender` key without a network (an admin's line, or one written by an older
//! version) blocks that sender from everywhere.

use std::net::IpAddr;

/// The client network a sender is counted with: `a.b.c.0/24` or the `/64` of an IPv6
/// address. `None` for text that is no address.
pub fn network(ip: &str) -> Option<String> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(format!("{a}.{b}.{c}.0/24"))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            Some(format!("{net}/64"))
        }
    }
}

/// The `sender` key of an unauthenticated message from `sender` (lower-cased, without
/// `<>`) sent by the client `ip`: `sender/network`, or the sender alone when `ip` is no
/// address.
pub fn sender_key(sender: &str, ip: &str) -> String {
    match network(ip) {
        Some(net) => format!("{sender}/{net}"),
        None => sender.to_string(),
    }
}

/// Whether a session is blocked by one of `blocked` (`(kind, key)` pairs, as in
/// `ratelimit.blocked`): its client `ip`, its login `auth` (case-insensitive), or — for
/// an unauthenticated session only — its `sender` from the client's network, or from
/// anywhere for a key without a network.
pub fn is_blocked<'a>(
    blocked: impl IntoIterator<Item = (&'a str, &'a str)>,
    ip: &str,
    sender: &str,
    auth: Option<&str>,
) -> bool {
    let sender = sender.to_ascii_lowercase();
    let from_here = sender_key(&sender, ip);
    blocked.into_iter().any(|(kind, key)| match kind {
        "ip" => key == ip,
        "sender" => auth.is_none() && !sender.is_empty() && (key == sender || key == from_here),
        "auth" => auth.is_some_and(|a| a.eq_ignore_ascii_case(key)),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_64() {
        assert_eq!(network("203.0.113.77").unwrap(), "203.0.113.0/24");
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6").unwrap(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(network("not an ip"), None);
        assert_eq!(sender_key("a@b.test", "192.0.2.9"), "a@b.test/192.0.2.0/24");
    }

    #[test]
    fn a_sender_is_blocked_from_its_network_only_and_never_when_authenticated() {
        let list = [("sender", "a@b.test/192.0.2.0/24")];
        assert!(is_blocked(list, "192.0.2.200", "A@B.test", None));
        assert!(!is_blocked(list, "198.51.100.1", "a@b.test", None));
        assert!(!is_blocked(
            list,
            "192.0.2.200",
            "a@b.test",
            Some("a@b.test")
        ));
        let everywhere = [("sender", "a@b.test")];
        assert!(is_blocked(everywhere, "198.51.100.1", "a@b.test", None));
        assert!(!is_blocked(everywhere, "198.51.100.1", "", None));
        let login = [("auth", "Alice@b.test"), ("ip", "192.0.2.9")];
        assert!(is_blocked(
            login,
            "10.0.0.1",
            "x@y.test",
            Some("alice@b.test")
        ));
        assert!(is_blocked(login, "192.0.2.9", "x@y.test", None));
        assert!(!is_blocked(login, "192.0.2.10", "x@y.test", None));
    }
}
