//! DNS for the acceptance programs: which servers to ask, and the few lookups they make
//! (TXT and A for blocklists, PTR and forward lookups for TCPREMOTEHOST), through
//! hickory-resolver on a current-thread tokio runtime owned by the caller's process.
//!
//! Servers come from `$POSTERN_HOME/control/resolvers` — one `ip`, `ip:port`, bare IPv6
//! `::1` or `[ipv6]:port` per line — or, when that file is missing, the `nameserver`
//! lines of /etc/resolv.conf. The hosts file is never consulted; names are always
//! absolute (no search list).
//!
//! Every lookup has a deadline; its outcome is [`Answer::Found`], [`Answer::NotFound`]
//! (NXDOMAIN or no records of that type) or [`Answer::Failed`] (timeout, SERVFAIL,
//! REFUSED, no servers) — the blocklist logic treats the last as "don't know".

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use postern_common::control::Control;
use postern_common::{Result, ResultExt};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use postern_common::resolvers::{
    parse_resolv_conf, parse_server, servers, MAX_SERVERS, RESOLV_CONF,
};

/// Longest wait for one try at one server; a lookup's own deadline may be shorter.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per server.
pub const ATTEMPTS: usize = 2;
/// Answers cached per process (a process makes a handful of lookups).
pub const CACHE_SIZE: usize = 64;
/// Longest TXT text kept (all strings of all records, concatenated).
pub const MAX_TXT: usize = 4096;

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Found(T),
    NotFound,
    Failed(String),
}

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

/// A resolver and the runtime it runs on.
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: Option<TokioResolver>,
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn classify<T>(r: std::result::Result<T, ResolveError>) -> Answer<T> {
    match r {
        Ok(v) => Answer::Found(v),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Answer::NotFound,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

impl Dns {
    /// A resolver asking `servers` (none: every lookup fails).
    pub fn new(servers: &[SocketAddr]) -> Result<Dns> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .temp("unable to start the DNS runtime")?;
        let resolver = (!servers.is_empty()).then(|| {
            let mut config = ResolverConfig::new();
            for &sa in servers {
                config.add_name_server(NameServerConfig::new(sa, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(sa, Protocol::Tcp));
            }
            let mut builder =
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
            let opts = builder.options_mut();
            opts.timeout = TRY_TIMEOUT;
            opts.attempts = ATTEMPTS;
            opts.use_hosts_file = ResolveHosts::Never;
            opts.cache_size = CACHE_SIZE;
            opts.ndots = 0;
            builder.build()
        });
        Ok(Dns { rt, resolver })
    }

    /// The servers of the instance named by `POSTERN_HOME`.
    pub fn from_env() -> Result<Dns> {
        Dns::new(&servers(&Control::from_env())?)
    }

    fn run<T, F, Fut>(&self, deadline: Duration, f: F) -> Answer<T>
    where
        F: FnOnce(TokioResolver) -> Fut,
        Fut: Future<Output = Answer<T>>,
    {
        let Some(resolver) = self.resolver.clone() else {
            return Answer::Failed("no DNS servers configured".to_string());
        };
        self.rt.block_on(async move {
            match tokio::time::timeout(deadline, f(resolver)).await {
                Ok(a) => a,
                Err(_) => Answer::Failed("timed out".to_string()),
            }
        })
    }

    /// The TXT text at `name`: every string of every record, concatenated (as djbdns's
    /// dns_txt does), at most [`MAX_TXT`] bytes.
    pub fn txt(&self, name: &str, deadline: Duration) -> Answer<Vec<u8>> {
        let name = absolute(name);
        self.run(deadline, |r| async move {
            match classify(r.txt_lookup(name).await) {
                Answer::Found(lookup) => Answer::Found(txt_text(
                    lookup.iter().flat_map(|txt| txt.iter().map(|s| &s[..])),
                )),
                Answer::NotFound => Answer::NotFound,
                Answer::Failed(e) => Answer::Failed(e),
            }
        })
    }

    /// The A records at `name`.
    pub fn a(&self, name: &str, deadline: Duration) -> Answer<Vec<Ipv4Addr>> {
        let name = absolute(name);
        self.run(deadline, |r| async move {
            match classify(r.ipv4_lookup(name).await) {
                Answer::Found(l) => Answer::Found(l.iter().map(|a| a.0).collect()),
                Answer::NotFound => Answer::NotFound,
                Answer::Failed(e) => Answer::Failed(e),
            }
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

    /// The A and AAAA addresses of `name`.
    pub fn ips(&self, name: &str, deadline: Duration) -> Answer<Vec<IpAddr>> {
        let name = absolute(name);
        self.run(deadline, |r| async move {
            match classify(r.lookup_ip(name).await) {
                Answer::Found(l) => Answer::Found(l.iter().collect()),
                Answer::NotFound => Answer::NotFound,
                Answer::Failed(e) => Answer::Failed(e),
            }
        })
    }
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
    fn no_servers_means_failed() {
        let dns = Dns::new(&[]).unwrap();
        assert!(matches!(
            dns.txt("x.test", Duration::from_secs(1)),
            Answer::Failed(_)
        ));
    }
}
