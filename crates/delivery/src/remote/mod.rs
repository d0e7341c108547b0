//! postern-remote: deliver one message to the recipients of one domain by SMTP
//! (docs/postern-remote.md). `postern-remote DOMAIN SENDER RCPT...`, message on fd 0.
//!
//! - [`route`] — `control/smtproutes`, with per-route TLS policy and credentials.
//! - [`auth`] — `control/smtpauth`, the credentials of `auth=`.
//! - [`dns`] — MX and A/AAAA lookups.
//! - [`smtp`] — the client (its replies read by [`postern_wire::smtp_reply`]).
//! - [`tls`] — STARTTLS: opportunistic, or required (and verified) by a route.
//! - DKIM signing: [`postern_auth::dkim::sign`], before anything else.
//!
//! The report it writes on fd 1 (qmail-remote's format) is
//! [`postern_wire::delivery_report`].

pub mod auth;
pub mod dns;
pub mod route;
pub mod smtp;
pub mod tls;

use postern_common::control::Control;
use postern_common::{getopt, Error, Result, ResultExt};
use postern_wire::delivery_report::{self, Report};
use postern_wire::verdict::Outcome;
use route::Route;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const USAGE: &str = "postern-remote domain sender recipient...";
/// Largest message read from fd 0.
pub const MAX_MESSAGE: u64 = 256 * 1024 * 1024;
/// Most recipients in one run.
pub const MAX_RCPTS: usize = 10_000;
/// Most server addresses tried in one run.
pub const MAX_TRIES: usize = 20;

/// A server to try: the host name (for messages and SNI) and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
}

/// The route for `domain` and its options (`control/smtproutes`), or the trouble with
/// that file.
fn route_for(
    control: &Control,
    domain: &str,
) -> std::result::Result<(Route, route::Options), String> {
    let routes =
        route::parse(&control.list("smtproutes").map_err(|e| e.msg)?).map_err(|e| e.msg)?;
    Ok(route::lookup(&routes, domain))
}

/// The servers for `domain` by `route`, in order, or the outcome to report if there
/// are none.
fn targets(
    control: &Control,
    domain: &str,
    route: Route,
) -> std::result::Result<Vec<Target>, Outcome> {
    let temp = |e: Error| Outcome::deferred(e.msg);
    let dns = || -> std::result::Result<dns::Dns, Outcome> {
        let servers = dns::servers(control).map_err(temp)?;
        dns::Dns::new(&servers).map_err(temp)
    };
    let addrs_of =
        |d: &dns::Dns, host: &str, port: u16| -> std::result::Result<Vec<Target>, Outcome> {
            match d.ips(host) {
                dns::Answer::Found(ips) => Ok(ips
                    .into_iter()
                    .map(|ip| Target {
                        host: host.to_string(),
                        addr: SocketAddr::new(ip, port),
                    })
                    .collect()),
                dns::Answer::NotFound => Err(Outcome::failed(format!(
                    "Sorry, I couldn't find any host named {host}. (#5.1.2)"
                ))),
                dns::Answer::Failed(e) => Err(Outcome::deferred(format!(
                    "CNAME lookup failed temporarily for {host}: {e}. (#4.4.3)"
                ))),
            }
        };
    match route {
        Route::Relay { host, port } => {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![Target {
                    host,
                    addr: SocketAddr::new(ip, port),
                }]);
            }
            addrs_of(&dns()?, &host, port)
        }
        Route::Mx => {
            let d = dns()?;
            match d.mx(domain) {
                dns::Answer::Found(mx) if mx.is_empty() || mx.iter().all(|(_, h)| h == ".") => {
                    Err(Outcome::failed(format!(
                        "Sorry, {domain} does not accept mail (null MX). (#5.1.10)"
                    )))
                }
                dns::Answer::Found(mx) => {
                    let me = control
                        .value_or("me", &postern_common::control::system_hostname())
                        .map_err(temp)?;
                    let mx = drop_self(mx, &me).ok_or_else(|| {
                        Outcome::failed(format!(
                            "Sorry. Although I'm listed as a best-preference MX for {domain}, \
                                 I don't host it and have no route for it. (#5.4.6)"
                        ))
                    })?;
                    let mut out = Vec::new();
                    let mut last = None;
                    for (_, host) in mx {
                        match addrs_of(&d, &host, route::DEFAULT_PORT) {
                            Ok(t) => out.extend(t),
                            Err(e) => last = Some(e),
                        }
                    }
                    match (out.is_empty(), last) {
                        (true, Some(e)) => Err(Outcome::deferred(e.text)),
                        _ => Ok(out),
                    }
                }
                dns::Answer::NotFound => addrs_of(&d, domain, route::DEFAULT_PORT),
                dns::Answer::Failed(e) => Err(Outcome::deferred(format!(
                    "MX lookup failed temporarily for {domain}: {e}. (#4.4.3)"
                ))),
            }
        }
    }
}

/// qmail's MX loop rule: when this host (`me`) is among the MX hosts, only those with
/// a better (lower) preference are used; `None` when that leaves none (we would be
/// sending the mail to ourselves).
pub fn drop_self(mut mx: Vec<(u16, String)>, me: &str) -> Option<Vec<(u16, String)>> {
    let me = me.trim_end_matches('.').to_ascii_lowercase();
    if let Some(own) = mx.iter().filter(|(_, h)| *h == me).map(|(p, _)| *p).min() {
        mx.retain(|(p, _)| *p < own);
    }
    (!mx.is_empty()).then_some(mx)
}

/// postern-remote's main. Usage trouble exits 100; everything else is reported on fd 1
/// and exits 0.
pub fn main() -> Result<()> {
    // Installed setuid to its own account: our own instance (settle_setid sets
    // POSTERN_HOME to it), that account for good.
    postern_common::privilege::settle_setid(&postern_common::home::trusted_home())?;
    let (_, args) = getopt::parse(&getopt::args(), "", USAGE)?;
    if args.len() < 3 || args.len() - 2 > MAX_RCPTS {
        return Err(Error::usage(USAGE));
    }
    let domain = args[0]
        .to_str()
        .ok_or_else(|| Error::usage(USAGE))?
        .to_ascii_lowercase();
    let bytes =
        |a: &std::ffi::OsString| std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()).to_vec();
    let sender = bytes(&args[1]);
    let rcpts: Vec<Vec<u8>> = args[2..].iter().map(bytes).collect();
    let mut message = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_MESSAGE)
        .read_to_end(&mut message)
        .temp("unable to read the message")?;
    let control = Control::from_env();
    // DKIM-signed as it goes out, when the From: (else the sender's) domain has a key
    // (docs/postern-remote.md "DKIM signing"); a key it cannot use keeps the mail queued.
    let out = match postern_auth::dkim::sign::sign(&control, &sender, &message) {
        Ok(signed) => {
            let message = signed.as_deref().unwrap_or(&message);
            deliver(&control, &domain, &sender, &rcpts, message)
        }
        Err(e) => Report {
            rcpts: vec![],
            verdict: Outcome::deferred(String::new()).verdict,
            text: format!("DKIM signing failed: {e}. (#4.3.0)"),
        },
    };
    delivery_report::write(&mut std::io::stdout().lock(), &out).temp("unable to write the report")
}

/// Deliver and describe the outcome (no I/O besides the network).
pub fn deliver(
    control: &Control,
    domain: &str,
    sender: &[u8],
    rcpts: &[Vec<u8>],
    message: &[u8],
) -> Report {
    let fail = |o: Outcome| Report {
        rcpts: vec![],
        verdict: o.verdict,
        text: o.text,
    };
    let setting = |name: &str, default: u64| control.number(name, default);
    let (timeout, connect_timeout) = match (
        setting("timeoutremote", 1200),
        setting("timeoutconnect", 60),
    ) {
        (Ok(a), Ok(b)) => (Duration::from_secs(a.max(1)), Duration::from_secs(b.max(1))),
        (Err(e), _) | (_, Err(e)) => return fail(Outcome::deferred(e.msg)),
    };
    let helo = match control.value("helohost").and_then(|h| match h {
        Some(h) => Ok(h),
        None => control.value_or("me", &postern_common::control::system_hostname()),
    }) {
        Ok(h) => h,
        Err(e) => return fail(Outcome::deferred(e.msg)),
    };
    let (route, options) = match route_for(control, domain) {
        Ok(r) => r,
        Err(text) => return fail(Outcome::deferred(text)),
    };
    // The route's TLS policy and credentials, before any connection: trouble with them
    // (no CA file, credentials open to everyone…) keeps the message queued.
    let policy = match tls::policy(control, domain, &options) {
        Ok(p) => p,
        Err(text) => return fail(Outcome::deferred(text)),
    };
    let credentials = match options
        .auth
        .as_deref()
        .map(|name| auth::load(control, name))
    {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(text)) => return fail(Outcome::deferred(text)),
    };
    let list = match targets(control, domain, route) {
        Ok(l) => l,
        Err(o) => return fail(o),
    };
    let mut last = format!("No host to deliver {domain} to. (#4.4.1)");
    for t in list.iter().take(MAX_TRIES) {
        let mut starttls = true;
        loop {
            let p = smtp::Params {
                helo: &helo,
                host: &t.host,
                addr: t.addr,
                connect_timeout,
                timeout,
                starttls,
                tls: &policy,
                auth: credentials.as_ref(),
            };
            match smtp::attempt(&p, sender, rcpts, message) {
                smtp::Attempt::Done {
                    rcpts,
                    verdict,
                    text,
                } => {
                    return Report {
                        rcpts,
                        verdict,
                        text,
                    }
                }
                smtp::Attempt::TlsFailed(why) if starttls && policy.required.is_none() => {
                    postern_common::exit::warn(
                        "postern-remote",
                        format!("{why}; retrying without TLS"),
                    );
                    starttls = false;
                }
                smtp::Attempt::TlsFailed(why) | smtp::Attempt::NextHost(why) => {
                    last = why;
                    break;
                }
            }
        }
    }
    fail(Outcome::deferred(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_hosts_at_or_below_our_own_preference_are_dropped() {
        let mx = vec![
            (10, "a.test".to_string()),
            (20, "mx.me.test".into()),
            (30, "c.test".into()),
        ];
        assert_eq!(
            drop_self(mx.clone(), "MX.me.test").unwrap(),
            vec![(10, "a.test".to_string())]
        );
        assert_eq!(drop_self(mx.clone(), "other.test").unwrap(), mx);
        assert!(drop_self(vec![(10, "mx.me.test".into())], "mx.me.test").is_none());
    }
}
