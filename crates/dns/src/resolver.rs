//! The resolver: which servers, with which options, on which runtime. Every lookup has a
//! deadline; its outcome is [`Answer::Found`], [`Answer::NotFound`] (NXDOMAIN or no
//! records of that type) or [`Answer::Failed`] (timeout, SERVFAIL, REFUSED, no servers)
//! — which callers treat as temporary ("don't know", "try again later").

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use postern_common::control::Control;
use postern_common::{Result, ResultExt};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest wait for one try at one server; a lookup's own deadline may be shorter.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per server.
pub const ATTEMPTS: usize = 2;
/// Answers cached per process. Each process is short-lived and asks a bounded set of
/// distinct questions, so the cache's only use is that no question is asked twice in one
/// run (an MX host listed twice, a zone asked for TXT then A). The most any program asks
/// is postern-remote's (and postern-verify's): one MX question, then A and AAAA for each
/// of up to [`crate::MAX_MX`] hosts — 33, more than hickory's default of 32. 64 holds
/// every program's questions (rblsmtpd's and tcpserver's are fewer) for a few KiB.
pub const CACHE_SIZE: usize = 64;

/// The outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    Found(T),
    NotFound,
    Failed(String),
}

impl<T> Answer<T> {
    /// The found value mapped by `f`; the other outcomes unchanged.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        match self {
            Answer::Found(v) => Answer::Found(f(v)),
            Answer::NotFound => Answer::NotFound,
            Answer::Failed(e) => Answer::Failed(e),
        }
    }
}

/// NXDOMAIN and "no records of that type" are answers; anything else is a failure.
pub(crate) fn classify<T>(r: std::result::Result<T, ResolveError>) -> Answer<T> {
    match r {
        Ok(v) => Answer::Found(v),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Answer::NotFound,
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// `name` with its trailing dot: never completed by a search list.
pub(crate) fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A resolver and the runtime it runs on.
pub struct Dns {
    rt: tokio::runtime::Runtime,
    resolver: Option<TokioResolver>,
}

impl Dns {
    /// A resolver asking `servers`, over UDP and TCP (none: every lookup fails).
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

    /// A resolver asking the servers of `control` ([`crate::servers`]).
    pub fn from_control(control: &Control) -> Result<Dns> {
        Dns::new(&crate::servers(control)?)
    }

    /// A resolver asking the servers of the instance named by `POSTERN_HOME`.
    pub fn from_env() -> Result<Dns> {
        Dns::from_control(&Control::from_env())
    }

    /// The configured hickory resolver (`None` without servers), for a library that
    /// makes its own lookups (mail-auth's SPF, DKIM and DMARC checks, postern-auth):
    /// same servers, same options, same hickory.
    pub fn hickory(&self) -> Option<TokioResolver> {
        self.resolver.clone()
    }

    /// Run `f` on the runtime, `None` when `deadline` passes first.
    pub fn block_on<F: Future>(&self, deadline: Duration, f: F) -> Option<F::Output> {
        self.rt
            .block_on(async move { tokio::time::timeout(deadline, f).await.ok() })
    }

    /// Run the lookup `f` on the runtime, failing it when `deadline` passes first.
    pub(crate) fn run<T, F, Fut>(&self, deadline: Duration, f: F) -> Answer<T>
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_servers_means_failed() {
        let dns = Dns::new(&[]).unwrap();
        assert_eq!(
            dns.txt("x.test", Duration::from_secs(1)),
            Answer::Failed("no DNS servers configured".to_string())
        );
        assert!(matches!(
            dns.mx("x.test", Duration::from_secs(1)),
            Answer::Failed(_)
        ));
    }

    #[test]
    fn names_are_absolute() {
        assert_eq!(absolute("a.test"), "a.test.");
        assert_eq!(absolute("a.test."), "a.test.");
    }
}
