//! SPF, DKIM and DMARC on the way in (RFC 7208, 6376, 8463, 7489) — mail-auth's checks,
//! postern's policy — and the one `Authentication-Results:` header (RFC 8601) that
//! records them, named for this host.
//!
//! [`check`] takes the client's address, its HELO name, the envelope sender and the
//! message; it removes every `Authentication-Results:` header that claims our host name
//! (a client could have written it), checks SPF for the HELO name and MAIL FROM, every
//! DKIM signature and the From: domain's DMARC policy, and decides by [`Policy`]:
//!
//! - DMARC `p=reject` (or `sp=` for a subdomain), neither SPF nor DKIM aligned, and the
//!   message within `pct=`: refused `550 5.7.1` ([`Policy::dmarc_reject`], on unless
//!   `control/dmarcreject` is 0). `p=quarantine` and `p=none` are only recorded.
//! - SPF `fail` for MAIL FROM: recorded only, unless `control/spfreject` is 1.
//! - A DNS failure (timeout, SERVFAIL) in any check: a temporary failure (451 4.7.0),
//!   unless `control/authfailopen` is set: then the message passes with the
//!   `temperror` results in its header.

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy as DmarcPolicy;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcResult,
    MessageAuthenticator, SpfResult,
};
use postern_common::control::Control;
use postern_dns::Dns;
use std::net::IpAddr;
use std::time::Duration;

/// The longest all the checks of one message may take, unless `control/authtimeout`
/// (seconds) says otherwise.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Most DKIM signatures of one message verified, topmost first.
pub const MAX_SIGNATURES: usize = 8;

/// What to do with what the checks found (control files, documented in
/// docs/control-files.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Refuse mail that fails DMARC under `p=reject` (`control/dmarcreject`, default 1).
    pub dmarc_reject: bool,
    /// Refuse mail whose MAIL FROM fails SPF (`control/spfreject`, default 0).
    pub spf_reject: bool,
    /// Let mail through when DNS fails, tagged (`control/authfailopen`, default off).
    pub fail_open: bool,
    /// The longest the checks may take (`control/authtimeout`, default [`DEADLINE`]).
    pub deadline: Duration,
    /// Refuse mail from outside that uses a hosted domain without passing SPF or an
    /// aligned DKIM signature (`control/refuseforgedhosted`, default 1).
    pub refuse_forged_hosted: bool,
}

impl Policy {
    pub fn from_control(control: &Control) -> postern_common::Result<Policy> {
        Ok(Policy {
            dmarc_reject: control.number("dmarcreject", 1)? != 0,
            spf_reject: control.number("spfreject", 0)? != 0,
            fail_open: control.flag("authfailopen")?,
            deadline: Duration::from_secs(
                control.number("authtimeout", DEADLINE.as_secs())?.max(1),
            ),
            refuse_forged_hosted: control.number("refuseforgedhosted", 1)? != 0,
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            dmarc_reject: true,
            spf_reject: false,
            fail_open: false,
            deadline: DEADLINE,
            refuse_forged_hosted: true,
        }
    }
}

/// The SMTP facts of a message.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// The client's address (`TCPREMOTEIP`).
    pub ip: IpAddr,
    /// Its HELO/EHLO name (empty: unknown, the HELO check is skipped).
    pub helo: &'a str,
    /// The envelope sender (empty for a bounce).
    pub mail_from: &'a str,
    /// This host's name: the header's authserv-id.
    pub hostname: &'a str,
    /// The hosted domains (`control/rcpthosts` entries; `.suffix` for subdomains), which
    /// mail from outside may use only with SPF or an aligned DKIM signature.
    pub hosted: &'a [String],
}

/// What becomes of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Queue it (with the header).
    Accept,
    /// Refuse it for good: the text after `550 ` (`5.7.1 …`).
    Reject(String),
    /// Refuse it for now: the text after `451 ` (`4.7.0 …`).
    Defer(String),
}

/// The checks' outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The message without forged headers, with ours on top.
    pub message: Vec<u8>,
    /// `spf=… dkim=… dmarc=…`, for the log line.
    pub summary: String,
}

/// Whether `value` (an Authentication-Results field body) names `host` as its
/// authserv-id: the first word, before `;` (RFC 8601 2.2), case-insensitive.
fn claims(value: &str, host: &str) -> bool {
    let id = value
        .trim_start()
        .split([';', ' ', '\t', '\r', '\n'])
        .next()
        .unwrap_or("");
    id.eq_ignore_ascii_case(host)
}

/// `message` without the `Authentication-Results:` fields that name `host` (RFC 8601
/// 5: a border MTA removes those that claim to be its own).
pub fn remove_forged(message: &[u8], host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    let mut dropping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            // End of the header section: the body goes as it is.
            out.extend_from_slice(line);
            out.extend_from_slice(rest);
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if !dropping {
                out.extend_from_slice(line);
            }
            continue;
        }
        dropping = false;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]);
            if name.trim().eq_ignore_ascii_case("Authentication-Results") {
                // The field's whole value, continuation lines included.
                let mut value = String::from_utf8_lossy(&line[colon + 1..]).into_owned();
                let mut peek = rest;
                while let Some(&b) = peek.first() {
                    if b != b' ' && b != b'\t' {
                        break;
                    }
                    let e = peek
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(peek.len(), |i| i + 1);
                    value.push_str(&String::from_utf8_lossy(&peek[..e]));
                    peek = &peek[e..];
                }
                if claims(&value, host) {
                    dropping = true;
                    continue;
                }
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// The organizational domain (RFC 7489 3.2) by the public suffix list: `a.b.example.co.uk`
/// → `example.co.uk`; a name that is itself a public suffix stays as it is.
fn organizational(domain: &str) -> &str {
    psl::domain_str(domain).unwrap_or(domain)
}

/// The domain of an address.
fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Whether a DMARC `pct=` of `pct` applies to this message (sampled at random).
fn sampled(pct: u8) -> bool {
    use rsa::rand_core::RngCore;
    pct >= 100 || (rsa::rand_core::OsRng.next_u32() % 100) < u32::from(pct)
}

/// Check `message` and decide (module doc).
pub fn check(dns: &Dns, input: &Input, message: &[u8], policy: &Policy) -> Outcome {
    let message = remove_forged(message, input.hostname);
    let lf = !message
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i > 0 && message[i - 1] == b'\r');
    let Some(mut parsed) = AuthenticatedMessage::parse(&message) else {
        // Not a message mail-auth can read (no header section): nothing to check.
        return Outcome {
            verdict: Verdict::Accept,
            message: message.clone(),
            summary: "unparsed".to_string(),
        };
    };
    // Each signature may cost a DNS question: the first few are verified, the rest
    // ignored (RFC 6376 6.1 lets a verifier limit them).
    parsed.dkim_headers.truncate(MAX_SIGNATURES);
    let helo = crate::spf::helo_name(input.helo);
    let mail_from = input.mail_from.to_ascii_lowercase();
    // RFC 7208 2.4: a null sender is checked as postmaster@HELO.
    let spf_domain = match domain_of(&mail_from) {
        "" => helo.clone(),
        d => d.to_string(),
    };
    let Some(resolver) = dns.hickory() else {
        return trouble(
            policy,
            input.hostname,
            message,
            "no DNS servers configured",
            lf,
        );
    };
    let auth = MessageAuthenticator(resolver);
    let run = async {
        let dkim = auth.verify_dkim(&parsed).await;
        let crate::spf::Results {
            helo: spf_helo,
            mail_from: spf,
        } = crate::spf::evaluate(&auth, input.ip, &helo, &mail_from, input.hostname).await;
        let dmarc = auth
            .verify_dmarc(
                mail_auth::dmarc::verify::DmarcParameters::new(&parsed, &dkim, &spf_domain, &spf)
                    .with_domain_suffix_fn(organizational),
            )
            .await;
        (dkim, spf_helo, spf, dmarc)
    };
    let Some((dkim, spf_helo, spf, dmarc)) = dns.block_on(policy.deadline, run) else {
        return trouble(policy, input.hostname, message, "the checks timed out", lf);
    };
    let dkim = corrected_dkim(&dkim);
    // No DMARC record found: make sure DNS said so, rather than failed (servfail.rs).
    let unanswered = match (dmarc.dmarc_record(), dmarc.domain()) {
        (None, d) if !d.is_empty() => dns
            .block_on(
                policy.deadline,
                crate::servfail::dmarc(&auth, d, organizational(d)),
            )
            .unwrap_or_else(|| Some("timed out".to_string())),
        _ => None,
    };
    let dmarc = match unanswered {
        Some(why) => {
            let e = DmarcResult::TempError(mail_auth::Error::DnsError(why));
            dmarc.with_dkim_result(e.clone()).with_spf_result(e)
        }
        None => dmarc,
    };

    // mail-auth 0.7 leaves both DMARC results None when nothing passed at all; with a
    // record that is a failure (RFC 7489 6.6.2), and the header must say so.
    let dmarc = match (
        dmarc.dmarc_record().is_some(),
        dmarc.dkim_result(),
        dmarc.spf_result(),
    ) {
        (true, DmarcResult::None, DmarcResult::None) => dmarc
            .with_dkim_result(DmarcResult::Fail(mail_auth::Error::NotAligned))
            .with_spf_result(DmarcResult::Fail(mail_auth::Error::NotAligned)),
        _ => dmarc,
    };
    let from = parsed.from().to_string();
    let mut ar = AuthenticationResults::new(input.hostname).with_dkim_results(&dkim, &from);
    if let Some(h) = &spf_helo {
        ar = ar.with_spf_ehlo_result(h, input.ip, &helo);
    }
    ar = ar
        .with_spf_mailfrom_result(&spf, input.ip, &mail_from, &helo)
        .with_dmarc_result(&dmarc);
    let mut header = ar.to_header();
    if lf {
        header = header.replace("\r\n", "\n");
    }
    let dkim_word = match dkim.iter().map(|o| o.result()).collect::<Vec<_>>() {
        v if v.is_empty() => "none".to_string(),
        v => v.iter().map(|r| word_dkim(r)).collect::<Vec<_>>().join(","),
    };
    let summary = format!(
        "spf={} dkim={dkim_word} dmarc={}",
        crate::spf::word(spf.result()),
        word_dmarc(dmarc.dkim_result(), dmarc.spf_result(), dmarc.domain()),
    );
    let mut out = header.into_bytes();
    out.extend_from_slice(&message);

    let temp = dkim
        .iter()
        .any(|o| matches!(o.result(), DkimResult::TempError(_)))
        || spf.result() == SpfResult::TempError
        || matches!(dmarc.dkim_result(), DmarcResult::TempError(_))
        || matches!(dmarc.spf_result(), DmarcResult::TempError(_));
    if temp {
        return Outcome {
            verdict: match policy.fail_open {
                true => Verdict::Accept,
                false => Verdict::Defer(
                    "4.7.0 DNS failed during SPF, DKIM or DMARC: try again later".into(),
                ),
            },
            message: out,
            summary,
        };
    }
    let forged = forged_hosted(input, &mail_from, &parsed, &spf, &dkim);
    let dmarc_failed = dmarc.dmarc_record().is_some()
        && !matches!(dmarc.dkim_result(), DmarcResult::Pass)
        && !matches!(dmarc.spf_result(), DmarcResult::Pass);
    let verdict = if policy.dmarc_reject
        && dmarc_failed
        && dmarc.policy() == DmarcPolicy::Reject
        && sampled(dmarc.dmarc_record().map_or(100, |r| r.pct))
    {
        Verdict::Reject(format!(
            "5.7.1 {} publishes a DMARC policy of reject and this message is neither \
             SPF- nor DKIM-aligned with it",
            dmarc.domain()
        ))
    } else if let (true, Some(domain)) = (policy.refuse_forged_hosted, forged) {
        Verdict::Reject(format!(
            "5.7.1 {domain} is a domain of this host: mail from outside that uses it must \
             pass SPF or carry its DKIM signature"
        ))
    } else if policy.spf_reject && spf.result() == SpfResult::Fail {
        Verdict::Reject(format!(
            "5.7.1 SPF: {} is not allowed to send mail for {spf_domain}",
            input.ip
        ))
    } else {
        Verdict::Accept
    };
    Outcome {
        verdict,
        message: out,
        summary,
    }
}

/// mail-auth's DKIM outputs, corrected:
///
/// - a body hash that did not verify is `fail`, not mail-auth's `neutral`: the message
///   is not what was signed, a PERMFAIL (RFC 6376 6.1.3, step 4), which RFC 8601 2.7.1
///   records as `fail` — `neutral` is for a signature that could be judged neither way.
///   DMARC counts only `pass`, so its answer is the same either way.
/// - a key lookup that got a server failure is `temperror`, not `permerror`
///   ([`crate::servfail`]).
fn corrected_dkim<'a>(outputs: &'a [DkimOutput<'a>]) -> Vec<DkimOutput<'a>> {
    outputs
        .iter()
        .map(|o| match (o.result(), o.signature()) {
            (DkimResult::Neutral(mail_auth::Error::FailedBodyHashMatch), Some(sig)) => {
                let failed =
                    DkimOutput::fail(mail_auth::Error::FailedBodyHashMatch).with_signature(sig);
                match o.failure_report_addr() {
                    Some(addr) => failed.with_report(addr.to_string()),
                    None => failed,
                }
            }
            _ => crate::servfail::dkim(o).unwrap_or_else(|| o.clone()),
        })
        .collect()
}

/// Whether `domain` is hosted: listed in `hosted`, or under a `.suffix` entry (as
/// smtpd reads rcpthosts).
pub fn is_hosted(domain: &str, hosted: &[String]) -> bool {
    let domain = domain.to_ascii_lowercase();
    hosted.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        match h.strip_prefix('.') {
            Some(_) => domain.ends_with(&h),
            None => h == domain,
        }
    })
}

/// The hosted domain a message from outside uses (the envelope sender's, else the
/// From: domain) without SPF passing for MAIL FROM or, for each hosted domain it uses, a
/// DKIM signature that passes with a `d=` of that domain's organization; `None` when it
/// uses none, or is authenticated so.
fn forged_hosted(
    input: &Input,
    mail_from: &str,
    parsed: &AuthenticatedMessage,
    spf: &mail_auth::SpfOutput,
    dkim: &[mail_auth::DkimOutput],
) -> Option<String> {
    let from = domain_of(parsed.from()).to_ascii_lowercase();
    let used: Vec<String> = [domain_of(mail_from).to_string(), from]
        .into_iter()
        .filter(|d| !d.is_empty() && is_hosted(d, input.hosted))
        .collect();
    let first = used.first()?.clone();
    if spf.result() == SpfResult::Pass {
        return None;
    }
    let signed = |d: &str| {
        dkim.iter().any(|o| {
            o.result() == &DkimResult::Pass
                && o.signature()
                    .is_some_and(|s| organizational(&s.d.to_ascii_lowercase()) == organizational(d))
        })
    };
    match used.iter().all(|d| signed(d)) {
        true => None,
        false => Some(first),
    }
}

/// No answer in time, or no DNS at all: a temporary failure, or (fail open) the message
/// with a header that says every check had a temporary error.
fn trouble(policy: &Policy, host: &str, message: Vec<u8>, why: &str, lf: bool) -> Outcome {
    if !policy.fail_open {
        return Outcome {
            verdict: Verdict::Defer(format!("4.7.0 {why}: try again later")),
            message,
            summary: "temperror".to_string(),
        };
    }
    let nl = if lf { "\n" } else { "\r\n" };
    let mut out = format!(
        "Authentication-Results: {host};{nl}\tspf=temperror ({why});{nl}\tdkim=temperror;{nl}\tdmarc=temperror{nl}"
    )
    .into_bytes();
    out.extend_from_slice(&message);
    Outcome {
        verdict: Verdict::Accept,
        message: out,
        summary: "temperror".to_string(),
    }
}

fn word_dkim(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn word_dmarc(dkim: &DmarcResult, spf: &DmarcResult, domain: &str) -> &'static str {
    match (dkim, spf) {
        _ if domain.is_empty() => "none",
        (DmarcResult::Pass, _) | (_, DmarcResult::Pass) => "pass",
        (DmarcResult::TempError(_), _) | (_, DmarcResult::TempError(_)) => "temperror",
        (DmarcResult::None, DmarcResult::None) => "none",
        _ => "fail",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_for_our_name_are_removed_others_kept() {
        let m = b"Authentication-Results: MX.example.test;\n\tdkim=pass header.d=bank.test\n\
Received: from x\n\
Authentication-Results: other.test; spf=pass\n\
Authentication-Results:mx.example.test; dmarc=pass\n\
Subject: hi\n\nAuthentication-Results: mx.example.test; in the body\n";
        let out = remove_forged(m, "mx.example.test");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from x\nAuthentication-Results: other.test; spf=pass\n\
Subject: hi\n\nAuthentication-Results: mx.example.test; in the body\n"
        );
        // A longer name that starts with ours is not ours.
        let m = b"Authentication-Results: mx.example.test.evil; spf=pass\n\nb";
        assert_eq!(remove_forged(m, "mx.example.test"), m.to_vec());
    }

    #[test]
    fn organizational_domains_follow_the_public_suffix_list() {
        assert_eq!(organizational("mail.example.com"), "example.com");
        assert_eq!(organizational("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(organizational("co.uk"), "co.uk");
    }

    #[test]
    fn hosted_domains_as_rcpthosts_lists_them() {
        let hosted = vec!["example.test".to_string(), ".sub.test".to_string()];
        assert!(is_hosted("Example.TEST", &hosted));
        assert!(is_hosted("a.sub.test", &hosted));
        assert!(!is_hosted("sub.test", &hosted));
        assert!(!is_hosted("notexample.test", &hosted));
    }

    #[test]
    fn policy_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::at(dir.path());
        assert_eq!(Policy::from_control(&control).unwrap(), Policy::default());
        std::fs::write(dir.path().join("dmarcreject"), "0\n").unwrap();
        std::fs::write(dir.path().join("spfreject"), "1\n").unwrap();
        std::fs::write(dir.path().join("authfailopen"), "1\n").unwrap();
        assert_eq!(
            Policy::from_control(&control).unwrap(),
            Policy {
                dmarc_reject: false,
                spf_reject: true,
                fail_open: true,
                deadline: DEADLINE,
                refuse_forged_hosted: true,
            }
        );
    }

    #[test]
    fn without_dns_it_defers_or_fails_open() {
        let dns = Dns::new(&[]).unwrap();
        let input = Input {
            ip: "192.0.2.1".parse().unwrap(),
            helo: "client.test",
            mail_from: "a@client.test",
            hostname: "mx.example.test",
            hosted: &[],
        };
        let msg = b"From: a@client.test\nSubject: x\n\nbody\n";
        let o = check(&dns, &input, msg, &Policy::default());
        assert!(
            matches!(o.verdict, Verdict::Defer(ref t) if t.starts_with("4.7.0 ")),
            "{o:?}"
        );
        let open = Policy {
            fail_open: true,
            ..Policy::default()
        };
        let o = check(&dns, &input, msg, &open);
        assert_eq!(o.verdict, Verdict::Accept);
    }
}
