//! DNS for postern-remote: MX, then A/AAAA, through hickory-resolver on a current-thread
//! tokio runtime owned by this process (no DNSSEC, no DoT/DoH). Servers come from
//! `control/resolvers` (`ip` or `ip:port` per line, `[v6]:port`), else the `nameserver`
//! lines of /etc/resolv.conf. The hosts file is never read; names are absolute.

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use postern_common::{Result, ResultExt};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use postern_common::resolvers::{parse_server, servers};

/// One try at one server.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPTS: usize = 2;
/// Deadline for one whole lookup.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(60);
/// Most MX hosts and addresses used.
pub const MAX_MX: usize = 16;
pub const MAX_ADDRS: usize = 16;

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Found(T),
    NotFound,
    Failed(String),
}

fn classify<T>(r: std::result::Result<T, ResolveError>) -> Answer<T> {
    match r {
        Ok(v) => Answer::Found(v),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Answer::NotFound,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A resolver and its runtime.
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: Option<TokioResolver>,
}

impl Dns {
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
            let mut b =
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
            let o = b.options_mut();
            o.timeout = TRY_TIMEOUT;
            o.attempts = ATTEMPTS;
            o.use_hosts_file = ResolveHosts::Never;
            o.ndots = 0;
            b.build()
        });
        Ok(Dns { rt, resolver })
    }

    fn run<T, F, Fut>(&self, f: F) -> Answer<T>
    where
        F: FnOnce(TokioResolver) -> Fut,
        Fut: std::future::Future<Output = Answer<T>>,
    {
        let Some(r) = self.resolver.clone() else {
            return Answer::Failed("no DNS servers configured".into());
        };
        self.rt.block_on(async move {
            match tokio::time::timeout(LOOKUP_DEADLINE, f(r)).await {
                Ok(a) => a,
                Err(_) => Answer::Failed("timed out".into()),
            }
        })
    }

    /// MX hosts of `domain`, sorted by preference (ties keep DNS order). A null MX
    /// (RFC 7505, host `.`) gives an empty list.
    pub fn mx(&self, domain: &str) -> Answer<Vec<(u16, String)>> {
        let name = absolute(domain);
        self.run(|r| async move {
            match classify(r.mx_lookup(name).await) {
                Answer::Found(l) => {
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
                    Answer::Found(v)
                }
                Answer::NotFound => Answer::NotFound,
                Answer::Failed(e) => Answer::Failed(e),
            }
        })
    }

    /// IPv4 and IPv6 addresses of `host` (v4 first).
    pub fn ips(&self, host: &str) -> Answer<Vec<IpAddr>> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Answer::Found(vec![ip]);
        }
        let name = absolute(host);
        self.run(|r| async move {
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
