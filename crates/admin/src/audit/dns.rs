//! DNS blocklists are configured and answering. The zones are `control/rblzones` (one per
//! line; service/smtpd/run turns each into `postern-rblsmtpd -r ZONE`). Each zone is
//! asked, through the servers of `control/resolvers` and postern's own resolver
//! (`postern_dns`), for its RFC 5782 test entries: `2.0.0.127.ZONE` must be
//! listed (with TXT, which rblsmtpd's `-r` blocks on) and `1.0.0.127.ZONE` must not — a
//! zone that lists 127.0.0.1 lists everybody (retired zones do that) and would refuse
//! all mail.

use super::Finding;
use postern_common::control::Control;
use postern_dns::{Answer, Dns};
use std::time::Duration;

pub const ITEM: &str = "DNS blocklist";
/// Longest wait for one lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// Most zones asked.
pub const MAX_ZONES: usize = 16;

pub fn finding(control: &Control) -> Finding {
    let zones = match control.list("rblzones") {
        Ok(z) => z,
        Err(e) => return Finding::warn(ITEM, e.msg, "make control/rblzones readable"),
    };
    if zones.is_empty() {
        return Finding::warn(
            ITEM,
            "no zone in control/rblzones: known spam sources are not turned away",
            "put a blocklist zone in control/rblzones (e.g. zen.spamhaus.org; mind its terms \
             of use) and restart smtpd",
        );
    }
    let servers = match postern_dns::servers(control) {
        Ok(s) => s,
        Err(e) => return Finding::fail(ITEM, e.msg, "fix control/resolvers"),
    };
    let dns = match Dns::new(&servers) {
        Ok(d) => d,
        Err(e) => return Finding::warn(ITEM, e.msg, "audit again"),
    };
    let (mut worst, mut notes) = (super::Status::Pass, Vec::new());
    for zone in zones.iter().take(MAX_ZONES) {
        let zone = zone.text.trim_end_matches('.');
        let (status, note) = ask(&dns, zone);
        worst = worst.max(status);
        notes.push(format!("{zone}: {note}"));
    }
    let detail = notes.join("; ");
    let fix = "check the zone's name and that the resolvers in control/resolvers answer (and \
               are allowed to query the list)";
    match worst {
        super::Status::Pass => Finding::pass(ITEM, detail),
        super::Status::Warn => Finding::warn(ITEM, detail, fix),
        super::Status::Fail => Finding::fail(
            ITEM,
            detail,
            "remove the zone that lists everybody from control/rblzones and restart smtpd",
        ),
    }
}

fn ask(dns: &Dns, zone: &str) -> (super::Status, String) {
    use super::Status::*;
    let listed = format!("2.0.0.127.{zone}");
    let everybody = format!("1.0.0.127.{zone}");
    if let Answer::Found(_) = dns.a(&everybody, LOOKUP_TIMEOUT) {
        return (Fail, "lists 127.0.0.1, so it lists everybody".to_string());
    }
    match dns.txt(&listed, LOOKUP_TIMEOUT) {
        Answer::Found(_) => (Pass, "answers, lists its test entry 127.0.0.2".to_string()),
        Answer::Failed(e) => (Warn, format!("not answering ({e})")),
        Answer::NotFound => match dns.a(&listed, LOOKUP_TIMEOUT) {
            Answer::Found(_) => (
                Warn,
                "lists 127.0.0.2 with A but no TXT, and rblsmtpd -r blocks on TXT".to_string(),
            ),
            _ => (
                Warn,
                "does not list its test entry 127.0.0.2 (misspelt or dead zone?)".to_string(),
            ),
        },
    }
}
