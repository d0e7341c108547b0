//! A DNS server failure is not "no record". mail-auth 0.7 turns every hickory
//! "no records" error into `DnsRecordNotFound`, whatever the response code — and hickory
//! reports SERVFAIL, REFUSED and the like that way — so a broken zone reads as one
//! without SPF, DKIM key or DMARC policy: SPF `none` instead of `temperror` (RFC 7208
//! 4.4), DKIM `permerror` instead of `temperror` (RFC 6376 6.1.2), and, worst, no DMARC
//! policy at all, so `p=reject` is not applied (RFC 7489 6.6.3 wants a temporary
//! failure). This module tells the two apart where mail-auth leaves enough to do so:
//! the response code it keeps for DKIM, and the names of the first SPF record and of
//! the DMARC records, asked once more (hickory's cache usually answers).

use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::ProtoErrorKind;
use mail_auth::hickory_resolver::{ResolveError, ResolveErrorKind};
use mail_auth::{DkimOutput, DkimResult, Error, MessageAuthenticator};

/// Whether a lookup failed for want of a record (NXDOMAIN, or NOERROR with no answer),
/// not for want of an answer.
fn no_such_record(e: &ResolveError) -> bool {
    match e.kind() {
        ResolveErrorKind::Proto(p) => matches!(
            p.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            }
        ),
        _ => false,
    }
}

/// The TXT records of `name` (each one's strings joined; none for NXDOMAIN or no
/// answer), or why the server gave no answer.
pub(crate) async fn txt(auth: &MessageAuthenticator, name: &str) -> Result<Vec<Vec<u8>>, String> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match auth.resolver().txt_lookup(fqdn).await {
        Ok(found) => Ok(found.iter().map(|t| t.txt_data().concat()).collect()),
        Err(e) if no_such_record(&e) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// A DKIM output whose key lookup got a server failure, made the `temperror` it is.
pub(crate) fn dkim<'a>(o: &'a DkimOutput<'a>) -> Option<DkimOutput<'a>> {
    let DkimResult::PermError(Error::DnsRecordNotFound(code)) = o.result() else {
        return None;
    };
    if matches!(code, ResponseCode::NXDomain | ResponseCode::NoError) {
        return None;
    }
    let failed = DkimOutput::temp_err(Error::DnsError(format!("{code} for the key")));
    Some(match o.signature() {
        Some(sig) => failed.with_signature(sig),
        None => failed,
    })
}

/// Why DNS did not answer for the DMARC record of `domain` (`_dmarc.DOMAIN`, then
/// `_dmarc.` its organizational domain `org`, the names mail-auth asked and found
/// nothing at), `None` when both were answered.
pub(crate) async fn dmarc(auth: &MessageAuthenticator, domain: &str, org: &str) -> Option<String> {
    let mut names = vec![format!("_dmarc.{domain}")];
    if org != domain {
        names.push(format!("_dmarc.{org}"));
    }
    for name in names {
        if let Err(why) = txt(auth, &name).await {
            return Some(format!("{name}: {why}"));
        }
    }
    None
}
