//! Not an open relay: the live probe and the rules behind it.
//!
//! The probe connects to the instance's own smtpd **as an outside client** and tries the
//! classic relay tricks at RCPT (a foreign domain, the `%` hack, a bang path, a quoted
//! local part with `@`, a source route, a double `@`, an IP literal), then QUITs — it
//! never sends DATA, so no message can ever leave. A relay trick is refused when RCPT
//! gets a 5xx; a 2xx is an open relay.
//!
//! From loopback, the default `tcp.smtp` gives `127.0.0.1` `RELAYCLIENT`, so a probe
//! from there would test nothing. The probe binds its socket to another loopback address
//! (Linux routes all of 127/8 to `lo`) that the rules neither deny nor let relay,
//! trying 127.0.0.200 … 254 first (blocklists list 127.0.0.2 as their test entry, and
//! rblsmtpd would turn that one away). The address used is reported. When the rules let
//! every loopback address relay through a default rule, the relayed tricks show the open
//! relay; through a narrower rule (`127.`), the probe says it could not test as an
//! outsider. The rules item reads `tcp.smtp` itself for rules that hand `RELAYCLIENT` to
//! everyone (FAIL), to wide public ranges or by PTR name (WARN).
//!
//! The same session gives the banner check its greeting and EHLO answer, and the
//! recipient check its answer for an unlikely local part.
//!
//! - [`probe`]: the live probe — where smtpd listens, the source address, the dialogue.
//! - [`rules`]: the rule analysis — which rules of `tcp.smtp` hand out `RELAYCLIENT`.
//!
//! This module turns both into the audit's findings.

pub mod probe;
pub mod rules;

use super::Finding;
use postern_common::control::Control;
pub use probe::{
    from_run_script, parse_run_script, probe, Session, Transcript, FOREIGN, PROBE_HELO,
    PROBE_LOCAL, TRICKS,
};
use rules::{breadth, rules_finding, Breadth};

/// The item names.
pub const ITEM_PROBE: &str = "open relay";
pub const ITEM_RULES: &str = "relay rules";

/// The probe item and the rules item.
pub fn findings(control: &Control, s: &Session) -> Vec<Finding> {
    vec![probe_finding(s), rules_finding(control, s)]
}

fn probe_finding(s: &Session) -> Finding {
    let fix_start = "start the smtpd service, or name it: posternctl audit --smtp IP:PORT";
    let Some(target) = s.target else {
        return Finding::warn(
            ITEM_PROBE,
            "not probed: no service/smtpd/run with a tcpserver line, and no --smtp",
            fix_start,
        );
    };
    let from = s
        .source
        .map(|ip| format!("from {ip} to {target}"))
        .unwrap_or_else(|| format!("to {target}"));
    if let Some(e) = &s.connect_error {
        return Finding::warn(
            ITEM_PROBE,
            format!("not probed: connecting {from} failed: {e}"),
            fix_start,
        );
    }
    let Some(t) = &s.transcript else {
        return Finding::warn(ITEM_PROBE, "not probed", fix_start);
    };
    if let Some(key) = s
        .source_relays
        .as_deref()
        .filter(|k| breadth(k) != Breadth::Everyone)
    {
        return Finding::warn(
            ITEM_PROBE,
            format!(
                "not a test from outside: rule {key} of control/{} gives every loopback probe \
                 address RELAYCLIENT ({from})",
                s.rules
            ),
            "leave one loopback address without RELAYCLIENT (127.0.0.1:allow,RELAYCLIENT=\"\" \
             rather than 127.), or probe from another host with --smtp",
        );
    }
    let accepted: Vec<String> = t
        .tricks
        .iter()
        .filter(|(_, _, r)| r.as_ref().map(|r| r.code / 100 == 2).unwrap_or(false))
        .map(|(name, rcpt, _)| format!("{name} RCPT TO:{rcpt}"))
        .collect();
    if !accepted.is_empty() {
        return Finding::fail(
            ITEM_PROBE,
            format!(
                "OPEN RELAY: accepted {} ({from}, outside client)",
                super::list(&accepted)
            ),
            format!(
                "give RELAYCLIENT only to your own networks in control/{} and run posternctl \
                 cdb; list only your domains in control/rcpthosts",
                s.rules
            ),
        );
    }
    let refused = t
        .tricks
        .iter()
        .filter(|(_, _, r)| r.as_ref().map(|r| r.code / 100 == 5).unwrap_or(false))
        .count();
    if refused == TRICKS.len() {
        return Finding::pass(
            ITEM_PROBE,
            format!("all {refused} relay tricks refused with 5xx at RCPT ({from})"),
        );
    }
    let why = t.trouble.clone().unwrap_or_else(|| {
        let other: Vec<String> = t
            .tricks
            .iter()
            .filter_map(|(n, _, r)| {
                r.as_ref()
                    .filter(|r| r.code / 100 != 5)
                    .map(|r| format!("{n}: {}", r.first()))
            })
            .collect();
        format!("not refused outright: {}", super::list(&other))
    });
    Finding::warn(
        ITEM_PROBE,
        format!(
            "only {refused} of {} relay tricks answered 5xx ({from}): {why}",
            TRICKS.len()
        ),
        "make sure the probe address reaches smtpd itself (tcp.smtp, rblsmtpd), then audit again",
    )
}

#[cfg(test)]
mod probe_tests {
    use super::*;
    use postern_wire::smtp_reply::Reply;

    fn relayed(source_relays: Option<&str>) -> Finding {
        let ok = Reply {
            code: 250,
            lines: vec!["2.1.5 ok".into()],
        };
        let s = Session {
            target: Some("127.0.0.1:25".parse().unwrap()),
            source: Some("127.0.0.200".parse().unwrap()),
            source_relays: source_relays.map(String::from),
            transcript: Some(Transcript {
                tricks: vec![("foreign domain".into(), "<a@b.test>".into(), Some(ok))],
                ..Transcript::default()
            }),
            rules: "tcp.smtp".into(),
            ..Session::default()
        };
        probe_finding(&s)
    }

    #[test]
    fn an_accepted_trick_is_an_open_relay_unless_loopback_may_relay() {
        assert_eq!(relayed(None).status, crate::audit::Status::Fail);
        assert_eq!(relayed(Some("")).status, crate::audit::Status::Fail);
        let narrow = relayed(Some("127."));
        assert_eq!(narrow.status, crate::audit::Status::Warn);
        assert!(
            narrow.detail.contains("not a test from outside: rule 127."),
            "{}",
            narrow.detail
        );
    }
}
