//! SPF, DKIM and DMARC published for each hosted domain (`control/rcpthosts`, exact
//! entries, at most [`MAX_DOMAINS`]), through `control/resolvers`:
//!
//! - SPF: present, and lets this host (`control/me`'s addresses) send for the domain —
//!   FAIL when it does not, WARN when there is none.
//! - DKIM: the domain has a signing key (`posternctl dkim`) and DNS publishes exactly it
//!   — FAIL when DNS has none or another, WARN when there is no key.
//! - DMARC: `_dmarc.DOMAIN` present — WARN when not, or when it only monitors (`p=none`).
//!
//! DNS trouble is a WARN; after the first, the remaining questions are not asked (each
//! would wait as long).

use super::Finding;
use postern_auth::dkim::{keys, record};
use postern_auth::published::{self, Lookup};
use postern_common::control::Control;
use postern_dns::{Answer, Dns};
use std::time::Duration;

/// Most domains checked.
pub const MAX_DOMAINS: usize = 16;
/// Longest wait for `me`'s addresses, the first question (as the blocklist check's).
const DEADLINE: Duration = Duration::from_secs(5);

pub fn findings(control: &Control) -> Vec<Finding> {
    let domains: Vec<String> = match control.list("rcpthosts") {
        Ok(l) => l
            .into_iter()
            .map(|l| l.text.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty() && !d.starts_with('.'))
            .take(MAX_DOMAINS)
            .collect(),
        Err(e) => {
            return vec![Finding::warn(
                "SPF",
                e.msg,
                "make control/rcpthosts readable",
            )]
        }
    };
    if domains.is_empty() {
        return vec![];
    }
    let dns = match Dns::from_control(control) {
        Ok(d) => d,
        Err(e) => return vec![Finding::warn("SPF", e.msg, "fix control/resolvers")],
    };
    let me = control
        .value_or("me", &postern_common::control::system_hostname())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut dns_ok = true;
    let addrs = match dns.a_and_aaaa(&me, DEADLINE) {
        Answer::Found(a) => a,
        Answer::NotFound => vec![],
        Answer::Failed(e) => {
            dns_ok = false;
            out.push(Finding::warn(
                "SPF",
                format!("DNS did not answer for {me}: {e}; SPF, DKIM and DMARC not checked"),
                "check that control/resolvers (else /etc/resolv.conf) reaches a resolver, then \
                 audit again",
            ));
            vec![]
        }
    };
    if !dns_ok {
        return out;
    }
    for d in &domains {
        out.push(spf(&dns, d, &me, &addrs));
        out.push(dkim(&dns, control, d));
        out.push(dmarc(&dns, d));
    }
    out
}

fn spf(dns: &Dns, domain: &str, me: &str, addrs: &[std::net::IpAddr]) -> Finding {
    let item = format!("SPF {domain}");
    let example = format!("{domain}. IN TXT \"v=spf1 mx a:{me} -all\"");
    let Some(&ip) = addrs.first() else {
        return Finding::warn(
            &item,
            format!("{me} (control/me) has no address in DNS: cannot tell whether SPF covers it"),
            format!("publish {me}'s A/AAAA record, or put this host's public name in control/me"),
        );
    };
    match published::spf(dns, domain, ip, me) {
        Lookup::Found("pass") => Finding::pass(&item, format!("lets {me} ({ip}) send")),
        Lookup::Found(r) => Finding::fail(
            &item,
            format!("does not let {me} ({ip}) send: SPF says {r}"),
            format!("add this host to the record, e.g. {example}"),
        ),
        Lookup::Missing => Finding::warn(
            &item,
            "no SPF record: receivers cannot tell our mail from forgeries",
            format!("publish {example}"),
        ),
        Lookup::Trouble(e) => Finding::warn(&item, format!("DNS: {e}"), "audit again"),
    }
}

fn dkim(dns: &Dns, control: &Control, domain: &str) -> Finding {
    let item = format!("DKIM {domain}");
    let selector = match keys::active(control, domain) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Finding::warn(
                &item,
                "no signing key: mail from this domain leaves unsigned",
                format!("posternctl dkim new {domain}, then publish the record it prints"),
            )
        }
        Err(e) => return Finding::fail(&item, e, "fix control/dkim/"),
    };
    let key = match keys::load(control, domain, &selector) {
        Ok(k) => k,
        Err(e) => {
            return Finding::fail(
                &item,
                e,
                "fix the key, or make a new one (posternctl dkim new)",
            )
        }
    };
    let line = record::zone_line(&key).unwrap_or_default();
    match record::published(dns, &key) {
        Ok(record::Published::Yes) => Finding::pass(
            &item,
            format!(
                "{} publishes the {} key that signs",
                record::name(&selector, domain),
                key.kind.name()
            ),
        ),
        Ok(record::Published::Missing) => Finding::fail(
            &item,
            format!(
                "{} is not in DNS: signatures fail",
                record::name(&selector, domain)
            ),
            format!("publish {line}"),
        ),
        Ok(record::Published::Different) => Finding::fail(
            &item,
            format!(
                "{} publishes another key: signatures fail",
                record::name(&selector, domain)
            ),
            format!("publish {line}"),
        ),
        Ok(record::Published::Trouble(e)) => {
            Finding::warn(&item, format!("DNS: {e}"), "audit again")
        }
        Err(e) => Finding::fail(&item, e, "make a new key (posternctl dkim new)"),
    }
}

fn dmarc(dns: &Dns, domain: &str) -> Finding {
    let item = format!("DMARC {domain}");
    let example = format!(
        "_dmarc.{domain}. IN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}\""
    );
    match published::dmarc(dns, domain) {
        Lookup::Found("none") => Finding::warn(
            &item,
            "p=none: receivers only report, forgeries are delivered",
            format!("once the reports show only your own mail, publish {example} (then p=reject)"),
        ),
        Lookup::Found(p) => Finding::pass(&item, format!("p={p}")),
        Lookup::Missing => Finding::warn(
            &item,
            "no DMARC record: receivers decide alone what to do with forgeries",
            format!("publish {example}"),
        ),
        Lookup::Trouble(e) => Finding::warn(&item, format!("DNS: {e}"), "audit again"),
    }
}
