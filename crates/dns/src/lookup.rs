//! The lookups the programs make, each within a `deadline` its caller chooses: TXT and A
//! for DNS blocklists (postern-rblsmtpd, posternctl audit), PTR and a forward check for
//! TCPREMOTEHOST (postern-tcpserver), MX then A and AAAA for delivery (postern-remote,
//! postern-verify).

use crate::blocklist::txt_text;
use crate::resolver::{absolute, classify, Answer, Dns};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// Most MX hosts used.
pub const MAX_MX: usize = 16;
/// Most addresses used of one host.
pub const MAX_ADDRS: usize = 16;

impl Dns {
    /// The TXT text at `name`: every string of every record, concatenated (as djbdns's
    /// dns_txt does), at most [`crate::MAX_TXT`] bytes.
    pub fn txt(&self, name: &str, deadline: Duration) -> Answer<Vec<u8>> {
        let name = absolute(name);
        self.run(deadline, |r| async move {
            classify(r.txt_lookup(name).await)
                .map(|lookup| txt_text(lookup.iter().flat_map(|txt| txt.iter().map(|s| &s[..]))))
        })
    }

    /// The A records at `name`.
    pub fn a(&self, name: &str, deadline: Duration) -> Answer<Vec<Ipv4Addr>> {
        let name = absolute(name);
        self.run(deadline, |r| async move {
            classify(r.ipv4_lookup(name).await).map(|l| l.iter().map(|a| a.0).collect())
        })
    }

    /// The first PTR name of `ip`, lowercase, without the trailing dot.
    pub fn ptr(&self, ip: IpAddr, deadline: Duration) -> Answer<String> {
        self.run(deadline, |r| async move {
            match classify(r.reverse_lookup(ip).await) {
                Answer::Found(l) => match l.iter().next() {
                    Some(p) => {
                        Answer::Found(p.0.to_string().trim_end_matches('.').to_ascii_lowercase())
                    }
                    None => Answer::NotFound,
                },
                Answer::NotFound => Answer::NotFound,
                Answer::Failed(e) => Answer::Failed(e),
            }
        })
    }

    /// The addresses of `name` as tcpserver confirms a PTR name: its A records, or its
    /// AAAA records when it has no A (hickory's `lookup_ip`, IPv4 then IPv6).
    pub fn a_else_aaaa(&self, name: &str, deadline: Duration) -> Answer<Vec<IpAddr>> {
        let name = absolute(name);
        self.run(deadline, |r| async move {
            classify(r.lookup_ip(name).await).map(|l| l.iter().collect())
        })
    }

    /// MX hosts of `domain`, sorted by preference (ties keep DNS order), at most
    /// [`MAX_MX`], lowercase, without the trailing dot. A null MX (RFC 7505, host `.`)
    /// gives an empty list.
    pub fn mx(&self, domain: &str, deadline: Duration) -> Answer<Vec<(u16, String)>> {
        let name = absolute(domain);
        self.run(deadline, |r| async move {
            classify(r.mx_lookup(name).await).map(|l| {
                let mut v: Vec<(u16, String)> = l
                    .iter()
                    .map(|mx| {
                        (
                            mx.preference(),
                            mx.exchange()
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        )
                    })
                    .take(MAX_MX)
                    .collect();
                v.sort_by_key(|(p, _)| *p);
                v.retain(|(_, h)| !h.is_empty());
                v
            })
        })
    }

    /// The A and AAAA addresses of `host` (IPv4 first), at most [`MAX_ADDRS`]; an IP
    /// literal is its own address. Found when either lookup finds addresses; else the
    /// first failure, else not found.
    pub fn a_and_aaaa(&self, host: &str, deadline: Duration) -> Answer<Vec<IpAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Answer::Found(vec![ip]);
        }
        let name = absolute(host);
        self.run(deadline, |r| async move {
            let mut out: Vec<IpAddr> = Vec::new();
            let mut failed = None;
            match classify(r.ipv4_lookup(name.clone()).await) {
                Answer::Found(l) => out.extend(l.iter().map(|a| IpAddr::V4(a.0))),
                Answer::NotFound => {}
                Answer::Failed(e) => failed = Some(e),
            }
            match classify(r.ipv6_lookup(name).await) {
                Answer::Found(l) => out.extend(l.iter().map(|a| IpAddr::V6(a.0))),
                Answer::NotFound => {}
                Answer::Failed(e) => failed = failed.or(Some(e)),
            }
            out.truncate(MAX_ADDRS);
            match (out.is_empty(), failed) {
                (false, _) => Answer::Found(out),
                (true, Some(e)) => Answer::Failed(e),
                (true, None) => Answer::NotFound,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_literal_needs_no_lookup() {
        let dns = Dns::new(&[]).unwrap();
        assert_eq!(
            dns.a_and_aaaa("192.0.2.1", Duration::from_secs(1)),
            Answer::Found(vec!["192.0.2.1".parse().unwrap()])
        );
        assert!(matches!(
            dns.a_and_aaaa("x.test", Duration::from_secs(1)),
            Answer::Failed(_)
        ));
    }
}
