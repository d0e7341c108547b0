//! DNS for postern-remote and postern-verify: postern-dns's resolver (servers from
//! `control/resolvers`, else resolv.conf; the one set of resolver options) with
//! postern-remote's deadline — MX, then A and AAAA. The lookups themselves are
//! postern-dns's ([`postern_dns::Dns::mx`], [`postern_dns::Dns::a_and_aaaa`]).

use postern_common::Result;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use postern_dns::{parse_server, servers, Answer, MAX_ADDRS, MAX_MX};

/// Deadline for one whole lookup (an MX question, or a host's A and AAAA).
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(60);

/// postern-dns's resolver, every lookup within [`LOOKUP_DEADLINE`].
pub struct Dns(postern_dns::Dns);

impl Dns {
    pub fn new(servers: &[SocketAddr]) -> Result<Dns> {
        postern_dns::Dns::new(servers).map(Dns)
    }

    /// MX hosts of `domain`, sorted by preference (ties keep DNS order). A null MX
    /// (RFC 7505, host `.`) gives an empty list.
    pub fn mx(&self, domain: &str) -> Answer<Vec<(u16, String)>> {
        self.0.mx(domain, LOOKUP_DEADLINE)
    }

    /// IPv4 and IPv6 addresses of `host` (v4 first); an IP literal is itself.
    pub fn ips(&self, host: &str) -> Answer<Vec<IpAddr>> {
        self.0.a_and_aaaa(host, LOOKUP_DEADLINE)
    }
}
