//! `rcpthosts` lists at least one domain, and recipient validation is active: the
//! hosted domains are in `control/recipients.cdb`, and the live probe's unlikely local
//! part at a hosted domain gets a 5xx at RCPT time — so mail for nobody is refused in
//! the session instead of bounced later to a forged sender (backscatter).

use super::relay::Session;
use super::Finding;
use postern_common::control::Control;
use std::path::Path;

pub const ITEM_RCPTHOSTS: &str = "rcpthosts";
pub const ITEM_VALIDATION: &str = "recipient validation";
pub const ITEM_BACKSCATTER: &str = "backscatter";

/// The domains of `rcpthosts` (subdomain entries `.domain` left out).
fn domains(control: &Control) -> Vec<String> {
    control
        .list("rcpthosts")
        .unwrap_or_default()
        .into_iter()
        .map(|l| l.text.to_ascii_lowercase())
        .filter(|d| !d.starts_with('.'))
        .collect()
}

/// A domain we accept mail for, for the relay tricks that hide behind one.
pub fn hosted_for_tricks(control: &Control) -> String {
    domains(control)
        .into_iter()
        .next()
        .or_else(|| control.value("me").ok().flatten())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The first `rcpthosts` domain that recipients.cdb hosts (validated recipients).
pub fn probe_domain(home: &Path, control: &Control) -> Option<String> {
    domains(control)
        .into_iter()
        .find(|d| postern_mailstore::is_hosted_domain(home, d).unwrap_or(false))
}

pub fn findings(home: &Path, control: &Control, s: &Session) -> Vec<Finding> {
    let list = domains(control);
    let rcpthosts = match control.list("rcpthosts") {
        Err(e) => Finding::warn(ITEM_RCPTHOSTS, e.msg, "make control/rcpthosts readable"),
        Ok(lines) if lines.is_empty() => Finding::warn(
            ITEM_RCPTHOSTS,
            "control/rcpthosts lists no domain: smtpd refuses mail from outside for every address",
            "list the domains you receive mail for in control/rcpthosts (one per line)",
        ),
        Ok(lines) => Finding::pass(
            ITEM_RCPTHOSTS,
            format!(
                "{} {}: {}",
                lines.len(),
                if lines.len() == 1 { "entry" } else { "entries" },
                super::list(&lines.into_iter().map(|l| l.text).collect::<Vec<_>>())
            ),
        ),
    };
    vec![
        rcpthosts,
        validation(home, control, s, &list),
        backscatter(home, &list),
    ]
}

/// The `rcpthosts` domains that accept every recipient: neither hosted here
/// (recipients.cdb) nor governed by `control/relayrecipients` nor verified by callout
/// (`control/verifyrecipients`). Mail to a made-up address there is accepted, refused
/// later by the internal server and bounced to the (forged) sender — backscatter,
/// which gets a server listed. (A `verifyrecipients` that cannot be read covers
/// nothing: its domains' recipients then get 4xx, but the file needs fixing.)
pub fn open_domains(home: &Path, list: &[String]) -> Vec<String> {
    list.iter()
        .filter(|d| !postern_mailstore::is_hosted_domain(home, d).unwrap_or(false))
        .filter(|d| !postern_mailstore::relayrecipients::governs(home, d).unwrap_or(false))
        .filter(|d| !postern_mailstore::verify::governs(home, d).unwrap_or(false))
        .cloned()
        .collect()
}

fn backscatter(home: &Path, list: &[String]) -> Finding {
    let open = open_domains(home, list);
    if open.is_empty() {
        return Finding::pass(
            ITEM_BACKSCATTER,
            "every rcpthosts domain checks its recipients at RCPT (hosted, relayrecipients \
             or verifyrecipients)",
        );
    }
    Finding::fail(
        ITEM_BACKSCATTER,
        format!(
            "accepts every recipient of {}: backscatter (made-up addresses are accepted, then \
             bounced to forged senders)",
            super::list(&open)
        ),
        "list the addresses that exist behind this gateway in control/relayrecipients \
         (local@domain, or @domain to accept all of a domain knowingly) and run posternctl \
         cdb; or have them verified at the next hop (the domain in \
         control/verifyrecipients); or host the domain here with postern-user",
    )
}

fn validation(home: &Path, control: &Control, s: &Session, list: &[String]) -> Finding {
    let fix = "add your domains and mailboxes with postern-user (or control/domains, users, \
               aliases and posternctl cdb)";
    if !control.path("recipients.cdb").exists() {
        return Finding::warn(
            ITEM_VALIDATION,
            "no control/recipients.cdb: recipients at rcpthosts domains are accepted unchecked",
            fix,
        );
    }
    let Some(domain) = probe_domain(home, control) else {
        return Finding::warn(
            ITEM_VALIDATION,
            format!(
                "none of the rcpthosts domains ({}) is in control/recipients.cdb: their recipients \
                 are accepted unchecked (a gateway)",
                if list.is_empty() { "none".to_string() } else { super::list(list) }
            ),
            fix,
        );
    };
    let probed = s.transcript.as_ref().and_then(|t| t.unknown.clone());
    match probed {
        Some((rcpt, Some(reply))) if reply.code / 100 == 5 => Finding::pass(
            ITEM_VALIDATION,
            format!("RCPT TO:{rcpt} answered {} at RCPT time", reply.first()),
        ),
        Some((rcpt, Some(reply))) if reply.code / 100 == 2 => {
            let addr = rcpt.trim_matches(|c| c == '<' || c == '>');
            if let Ok(Some(_)) = postern_mailstore::resolve_alias(home, addr) {
                Finding::pass(
                    ITEM_VALIDATION,
                    format!("{domain} has a catch-all alias, so RCPT TO:{rcpt} was accepted"),
                )
            } else {
                Finding::fail(
                    ITEM_VALIDATION,
                    format!(
                        "unknown recipient RCPT TO:{rcpt} was accepted ({})",
                        reply.first()
                    ),
                    "make smtpd read this instance's control/recipients.cdb (POSTERN_HOME in \
                     service/smtpd/run) and run posternctl cdb",
                )
            }
        }
        Some((rcpt, Some(reply))) => Finding::warn(
            ITEM_VALIDATION,
            format!("RCPT TO:{rcpt} answered {}: could not tell", reply.first()),
            "look at smtpd's log for event=error, then audit again",
        ),
        _ => Finding::pass(
            ITEM_VALIDATION,
            format!("control/recipients.cdb hosts {domain} (smtpd not probed live)"),
        ),
    }
}
