//! SPF (RFC 7208) for one SMTP client: mail-auth's `check_host` for the HELO identity
//! and for the MAIL FROM identity, as [`crate::inbound`] records them in the
//! `Authentication-Results:` header. [`check`] runs the same evaluation alone (the tests
//! compare it with pyspf's on the same DNS records).

use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, SpfOutput, SpfResult};
use postern_dns::Dns;
use std::net::IpAddr;
use std::time::Duration;

/// SPF's answers for one client.
#[derive(Debug, Clone)]
pub struct Results {
    /// For the HELO name (`None` when the client gave none).
    pub helo: Option<SpfOutput>,
    /// For the envelope sender; a null sender is checked as `postmaster@HELO` (RFC 7208
    /// 2.4), which is the HELO identity's answer.
    pub mail_from: SpfOutput,
}

/// The HELO name as SPF checks it: lower case, without a final dot.
pub fn helo_name(helo: &str) -> String {
    helo.trim_end_matches('.').to_ascii_lowercase()
}

/// Evaluate both identities of `ip` (`helo` as [`helo_name`] makes it, `mail_from`
/// lower case); `host` is this host's name, for the `%{r}` macro.
pub(crate) async fn evaluate(
    auth: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
    host: &str,
) -> Results {
    let helo_result = match (helo.is_empty(), checkable(helo)) {
        (true, _) => None,
        (false, false) => Some(SpfOutput::new(helo.to_string()).with_result(SpfResult::None)),
        (false, true) => Some(
            auth.verify_spf(SpfParameters::verify_ehlo(ip, helo, host))
                .await,
        ),
    };
    let domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
    let mail_from_result = match (mail_from.is_empty(), &helo_result) {
        (true, Some(h)) => h.clone(),
        _ if !checkable(domain) => SpfOutput::new(domain.to_string()).with_result(SpfResult::None),
        _ => {
            auth.verify_spf(SpfParameters::verify_mail_from(ip, helo, host, mail_from))
                .await
        }
    };
    Results {
        helo: match helo_result {
            Some(h) => Some(recheck_first_record(auth, h).await),
            None => None,
        },
        mail_from: recheck_first_record(auth, mail_from_result).await,
    }
}

/// Whether `domain` can be checked at all: RFC 7208 4.3 answers `none` at once for a
/// malformed name (an empty label, one over 63 bytes) or one of a single label, and a
/// HELO address literal (`[192.0.2.1]`) is no name. mail-auth catches only some of these
/// and asks DNS for the rest, which hickory refuses to put in a question: a
/// `temperror` that would defer the message (a bounce from a client that says
/// `EHLO [192.0.2.1]` is checked by that name) instead of `none`.
fn checkable(domain: &str) -> bool {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2
        && name.len() <= 253
        && labels.iter().all(|l| (1..=63).contains(&l.len()))
        && mail_auth::hickory_resolver::Name::from_str_relaxed(name).is_ok()
}

/// mail-auth's answer for the domain it started from, corrected where that domain's
/// own TXT answer, asked once more, shows it wrong:
///
/// - `none` becomes `temperror` when the server failed rather than said NXDOMAIN or
///   answered without SPF (RFC 7208 4.4; [`crate::servfail`]).
/// - two or more SPF records are a `permerror` (RFC 7208 4.5); mail-auth takes the first.
///
/// The same faults inside the record (an `a:`, `mx:` or `include:` name that gets
/// SERVFAIL, an included domain with two records) stay: mail-auth evaluates those itself.
pub(crate) async fn recheck_first_record(auth: &MessageAuthenticator, out: SpfOutput) -> SpfOutput {
    if out.result() == SpfResult::TempError || !checkable(out.domain()) {
        return out;
    }
    let corrected = |r| SpfOutput::new(out.domain().to_string()).with_result(r);
    match crate::servfail::txt(auth, out.domain()).await {
        Ok(texts) => match texts.iter().filter(|t| is_spf_record(t)).count() {
            0 | 1 => out,
            _ => corrected(SpfResult::PermError),
        },
        Err(_) if out.result() == SpfResult::None => corrected(SpfResult::TempError),
        Err(_) => out,
    }
}

/// Whether a TXT record's text is an SPF record: `v=spf1` alone or before a space
/// (RFC 7208 4.5; the version is case-insensitive, as ABNF strings are).
fn is_spf_record(text: &[u8]) -> bool {
    text.len() >= 6
        && text[..6].eq_ignore_ascii_case(b"v=spf1")
        && (text.len() == 6 || text[6] == b' ')
}

/// SPF for a client at `ip` that said `HELO helo` and `MAIL FROM:<mail_from>`, asking
/// `dns`; `None` without DNS servers or when `deadline` passes first.
pub fn check(
    dns: &Dns,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
    host: &str,
    deadline: Duration,
) -> Option<Results> {
    let auth = MessageAuthenticator(dns.hickory()?);
    let helo = helo_name(helo);
    let mail_from = mail_from.to_ascii_lowercase();
    dns.block_on(deadline, evaluate(&auth, ip, &helo, &mail_from, host))
}

/// RFC 8601's word for a result.
pub fn word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}
