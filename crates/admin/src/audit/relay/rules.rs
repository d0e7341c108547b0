//! The relay rules: which rules of smtpd's rules file (`tcp.smtp`) hand out
//! `RELAYCLIENT`, and how much of the address space each covers — to everyone (FAIL), to
//! wide public ranges or by PTR name (WARN).

use super::{Session, ITEM_RULES};
use crate::audit::{gives_relay, Finding};
use postern_common::control::Control;
use std::net::IpAddr;

/// How much of the address space a rule key covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breadth {
    /// Every client (the default rule, `=`, a /0).
    Everyone,
    /// A large public range.
    Wide,
    /// Chosen by the client's PTR name, which whoever owns the address controls.
    Name,
    Narrow,
}

/// Classify a rule key.
pub fn breadth(key: &str) -> Breadth {
    if key.is_empty() || key == "=" {
        return Breadth::Everyone;
    }
    if key.contains('@') {
        return Breadth::Narrow; // IDENT rules never match postern-tcpserver clients
    }
    if key.starts_with('=') {
        return Breadth::Name;
    }
    if let Some((net, len)) = key.split_once('/') {
        let (Ok(ip), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u8>()) else {
            return Breadth::Narrow;
        };
        let private = match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        };
        let (everyone, wide) = if ip.is_ipv4() { (8, 16) } else { (16, 48) };
        return if len < everyone {
            Breadth::Everyone
        } else if len < wide && !private {
            Breadth::Wide
        } else {
            Breadth::Narrow
        };
    }
    if key.ends_with('.') && key.matches('.').count() == 1 {
        return match key {
            "10." | "127." => Breadth::Narrow,
            _ => Breadth::Wide,
        };
    }
    if key.ends_with(':') && key.matches(':').count() <= 2 {
        return Breadth::Wide;
    }
    Breadth::Narrow
}

pub(super) fn rules_finding(control: &Control, s: &Session) -> Finding {
    let name = &s.rules;
    let Ok(source) = std::fs::read(control.path(name)) else {
        return Finding::pass(
            ITEM_RULES,
            format!("control/{name} not present: nobody gets RELAYCLIENT"),
        );
    };
    let (mut everyone, mut wide, mut names, mut narrow) = (vec![], vec![], vec![], vec![]);
    for (i, line) in source.split(|&b| b == b'\n').enumerate() {
        let Ok(Some(rule)) = postern_ucspi::rules::parse_line(line) else {
            continue;
        };
        for key in rule.keys {
            let d = postern_ucspi::rules::lookup::decode(key.clone(), &rule.value);
            if !gives_relay(&d) {
                continue;
            }
            let k = String::from_utf8_lossy(&key).into_owned();
            let shown = format!(
                "{} (line {})",
                if k.is_empty() {
                    "the default rule".to_string()
                } else {
                    k.clone()
                },
                i + 1
            );
            match breadth(&k) {
                Breadth::Everyone => everyone.push(shown),
                Breadth::Wide => wide.push(shown),
                Breadth::Name => names.push(shown),
                Breadth::Narrow => narrow.push(k),
            }
        }
    }
    let fix = format!(
        "set RELAYCLIENT only on rules for your own addresses in control/{name}, then posternctl cdb"
    );
    if !everyone.is_empty() {
        return Finding::fail(
            ITEM_RULES,
            format!(
                "RELAYCLIENT for everyone: {} — an open relay by the rules",
                crate::audit::list(&everyone)
            ),
            fix,
        );
    }
    if !wide.is_empty() || !names.is_empty() {
        let mut what = Vec::new();
        if !wide.is_empty() {
            what.push(format!("wide public ranges: {}", crate::audit::list(&wide)));
        }
        if !names.is_empty() {
            what.push(format!(
                "by PTR name, which the address owner controls: {}",
                crate::audit::list(&names)
            ));
        }
        return Finding::warn(
            ITEM_RULES,
            format!("RELAYCLIENT for {}", what.join("; ")),
            fix,
        );
    }
    if narrow.is_empty() {
        Finding::pass(
            ITEM_RULES,
            format!("control/{name}: no rule sets RELAYCLIENT"),
        )
    } else {
        Finding::pass(
            ITEM_RULES,
            format!(
                "control/{name}: RELAYCLIENT only for {}",
                crate::audit::list(&narrow)
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_keys_are_classified() {
        assert_eq!(breadth(""), Breadth::Everyone);
        assert_eq!(breadth("="), Breadth::Everyone);
        assert_eq!(breadth("0.0.0.0/0"), Breadth::Everyone);
        assert_eq!(breadth("::/0"), Breadth::Everyone);
        assert_eq!(breadth("=.example.org"), Breadth::Name);
        assert_eq!(breadth("64.0.0.0/10"), Breadth::Wide);
        assert_eq!(breadth("10.0.0.0/8"), Breadth::Narrow);
        assert_eq!(breadth("192.168.0.0/16"), Breadth::Narrow);
        assert_eq!(breadth("203.0.113.0/24"), Breadth::Narrow);
        assert_eq!(breadth("62."), Breadth::Wide);
        assert_eq!(breadth("127."), Breadth::Narrow);
        assert_eq!(breadth("127.0.0.1"), Breadth::Narrow);
        assert_eq!(breadth("2001:"), Breadth::Wide);
        assert_eq!(breadth("2001:db8::/32"), Breadth::Wide);
        assert_eq!(breadth("fd12:3456::/32"), Breadth::Narrow);
        assert_eq!(breadth("fd00::/8"), Breadth::Everyone);
    }
}
