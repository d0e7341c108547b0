//! SPF, DKIM and DMARC in postern-scan (docs/postern-scan.md "Mail authentication"),
//! the checks themselves [`postern_auth::inbound`]'s.
//!
//! They run unless `control/authchecks` says `0`, for mail from outside only: a client
//! address (`TCPREMOTEIP`), no login (`AUTHUSER`) and no relay right (`RELAYCLIENT`) —
//! our own users' mail is neither checked nor refused here. The message goes on with
//! forged `Authentication-Results:` headers removed and ours on top; a refusal is
//! `550 5.7.1 …` through fd 6 (exit 82), else exit 31; a deferral is exit 71 (451) with
//! the reason on fd 6 too.

use postern_auth::inbound::{self, Input, Policy, Verdict};
use postern_common::control::Control;
use postern_common::custom_error::{self, Class};
use postern_common::logline::LogLine;
use postern_common::{Error, Result};
use postern_wire::qmail_queue::exit_code as qq;
use std::fs::File;
use std::io::Write;

/// The message to go on with, or the refusal (an error with its qmail-queue code).
pub fn check(
    control: &Control,
    message: Vec<u8>,
    sender: &[u8],
    reason_pipe: &mut Option<File>,
) -> Result<Vec<u8>> {
    let config_error = |e: Error| Error::code(qq::CONFIG_ERROR, e.msg);
    // On unless turned off: DMARC p=reject honoured is what the large providers expect.
    if control.number("authchecks", 1).map_err(config_error)? == 0 {
        return Ok(message);
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let Some(ip) = env("TCPREMOTEIP")
        .and_then(|v| v.to_str().and_then(|s| s.parse().ok()))
        .filter(|_| env("AUTHUSER").is_none() && std::env::var_os("RELAYCLIENT").is_none())
    else {
        return Ok(message);
    };
    let policy = Policy::from_control(control).map_err(config_error)?;
    let hostname = control
        .value_or("me", &postern_common::control::system_hostname())
        .map_err(config_error)?;
    let hosted: Vec<String> = control
        .list("rcpthosts")
        .map_err(config_error)?
        .into_iter()
        .map(|l| l.text.trim().to_ascii_lowercase())
        .collect();
    let dns = postern_dns::Dns::from_control(control).map_err(config_error)?;
    let sender = String::from_utf8_lossy(sender);
    let input = Input {
        ip,
        helo: crate::scan::spam::helo_from_received(&message).unwrap_or(""),
        mail_from: &sender,
        hostname: &hostname,
        hosted: &hosted,
    };
    let outcome = inbound::check(&dns, &input, &message, &policy);
    let (word, class, code) = match &outcome.verdict {
        Verdict::Accept => ("accept", None, 0),
        Verdict::Reject(t) => ("reject", Some((Class::Permanent, t)), qq::REFUSED),
        Verdict::Defer(t) => ("defer", Some((Class::Temporary, t)), qq::TEMP_REFUSED),
    };
    LogLine::event("auth")
        .kv("ip", ip)
        .kv("from", format!("<{sender}>"))
        .kv("result", &outcome.summary)
        .kv("verdict", word)
        .emit();
    let Some((class, text)) = class else {
        return Ok(outcome.message);
    };
    // A policy refusal is 550 (RFC 7372, and what the large providers answer), not the
    // 554 a content refusal gets.
    let text = match class {
        Class::Permanent => format!("550 {text}"),
        Class::Temporary => text.clone(),
    };
    let record = custom_error::record(class, &text);
    match reason_pipe.take().map(|mut p| p.write_all(&record)) {
        Some(Ok(())) => Err(Error::code(qq::CUSTOM_ERROR, "")),
        _ => Err(Error::code(code, "")),
    }
}
