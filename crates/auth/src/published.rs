//! What DNS publishes for one of our domains, for `posternctl audit`: whether its SPF
//! record lets this host send, and its DMARC policy — read with mail-auth's parsers
//! through postern-dns's resolver.

use mail_auth::dmarc::{Dmarc, Policy};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfResult};
use postern_dns::Dns;
use std::net::IpAddr;
use std::time::Duration;

/// How long one question may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An answer about a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// No such record.
    Missing,
    /// DNS did not answer, or the record is broken: the text says which.
    Trouble(String),
}

/// SPF's answer for mail from `postmaster@DOMAIN` sent by `ip` (HELO `helo`):
/// `pass`, `fail`, `softfail`, `neutral` or `permerror`; [`Lookup::Missing`] when the
/// domain publishes no SPF record.
pub fn spf(dns: &Dns, domain: &str, ip: IpAddr, helo: &str) -> Lookup<&'static str> {
    let Some(resolver) = dns.hickory() else {
        return Lookup::Trouble("no DNS servers configured".into());
    };
    let auth = MessageAuthenticator(resolver);
    let sender = format!("postmaster@{domain}");
    let run = async {
        // A server failure is trouble, not a missing record (servfail.rs).
        let out = auth
            .verify_spf(SpfParameters::verify_mail_from(ip, helo, helo, &sender))
            .await;
        crate::spf::recheck_first_record(&auth, out).await.result()
    };
    match dns.block_on(DEADLINE, run) {
        None => Lookup::Trouble("timed out".into()),
        Some(SpfResult::None) => Lookup::Missing,
        Some(SpfResult::TempError) => Lookup::Trouble("DNS failed".into()),
        Some(SpfResult::Pass) => Lookup::Found("pass"),
        Some(SpfResult::Fail) => Lookup::Found("fail"),
        Some(SpfResult::SoftFail) => Lookup::Found("softfail"),
        Some(SpfResult::Neutral) => Lookup::Found("neutral"),
        Some(SpfResult::PermError) => Lookup::Found("permerror"),
    }
}

/// The `p=` of `_dmarc.DOMAIN` (`none`, `quarantine`, `reject`).
pub fn dmarc(dns: &Dns, domain: &str) -> Lookup<&'static str> {
    let Some(resolver) = dns.hickory() else {
        return Lookup::Trouble("no DNS servers configured".into());
    };
    let auth = MessageAuthenticator(resolver);
    let name = format!("_dmarc.{domain}.");
    let run = async {
        auth.txt_lookup::<Dmarc>(name, None::<&mail_auth::common::cache::NoCache<_, _>>)
            .await
    };
    match dns.block_on(DEADLINE, run) {
        None => Lookup::Trouble("timed out".into()),
        Some(Ok(d)) => Lookup::Found(match d.p {
            Policy::Reject => "reject",
            Policy::Quarantine => "quarantine",
            Policy::None | Policy::Unspecified => "none",
        }),
        // NXDOMAIN or no TXT: missing; SERVFAIL and the like, which mail-auth reports
        // the same way, are trouble (servfail.rs).
        Some(Err(mail_auth::Error::DnsRecordNotFound(
            ResponseCode::NXDomain | ResponseCode::NoError,
        )))
        | Some(Err(mail_auth::Error::InvalidRecordType)) => Lookup::Missing,
        Some(Err(e)) => Lookup::Trouble(e.to_string()),
    }
}
