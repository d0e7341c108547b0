//! The banner reveals no software name or version: the `220` greeting and the EHLO
//! answer of the live probe (or, when smtpd could not be probed, `control/smtpgreeting`
//! else `control/me`) must not name an MTA nor carry a version-like token — an attacker
//! reads them to pick an exploit.

use super::relay::Session;
use super::Finding;
use postern_common::control::Control;
use postern_wire::smtp_reply::Reply;

pub const ITEM: &str = "banner";

/// Names that give the software away (compared case-insensitively, as words or word
/// beginnings: `Postfix`, `Exim4`, `Microsoft`).
pub const KNOWN_NAMES: &[&str] = &[
    "postfix",
    "sendmail",
    "exim",
    "qmail",
    "netqmail",
    "notqmail",
    "postern",
    "microsoft",
    "esmtp-server",
    "opensmtpd",
    "courier",
    "zimbra",
    "haraka",
    "mdaemon",
    "domino",
    "kerio",
    "hmailserver",
    "coremail",
    "axigen",
    "communigate",
    "icewarp",
    "merak",
    "zmailer",
    "stalwart",
    "chasquid",
    "maddy",
    "mailenable",
    "argosoft",
    "ms-smtp",
];

/// Why `text` gives the software away, if it does.
pub fn revealing(text: &str) -> Option<String> {
    for word in text.split(|c: char| c.is_whitespace() || "()[];,:=<>\"'".contains(c)) {
        if word.is_empty() {
            continue;
        }
        let lower = word.to_ascii_lowercase();
        if let Some(name) = KNOWN_NAMES.iter().find(|n| lower.starts_with(*n)) {
            return Some(format!("names the software ({word}, matched {name})"));
        }
        if version_like(word) {
            return Some(format!("carries a version ({word})"));
        }
    }
    None
}

/// `3.7.11`, `8.15.2/8.15.2`, `v1.2`, `Foo/1.0`, `1.03` — but not an IPv4 address, a
/// plain number (`SIZE 10240000`) or a host name (`mx1.example.test`).
pub fn version_like(word: &str) -> bool {
    let word = word.trim_matches(|c: char| c == '.' || c == '-');
    let core = word.rsplit('/').next().unwrap_or(word);
    let core = core
        .strip_prefix('v')
        .or_else(|| core.strip_prefix('V'))
        .unwrap_or(core);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() < 2 || parts.len() > 4 {
        return false;
    }
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !numeric(parts[0]) || !numeric(parts[1]) {
        return false;
    }
    // A dotted quad of numbers is an address, not a version.
    if parts.len() == 4 && parts.iter().all(|p| numeric(p)) {
        return false;
    }
    // The rest may carry a suffix (`1.4.3-rc1`, `9.16p1`).
    parts[2..].iter().all(|p| {
        p.bytes()
            .next()
            .map(|b| b.is_ascii_digit())
            .unwrap_or(false)
    })
}

fn lines(reply: &Reply) -> Vec<String> {
    reply.lines.clone()
}

/// The banner item.
pub fn finding(control: &Control, s: &Session) -> Finding {
    let fix = "put only the host name in control/smtpgreeting (smtpd adds ESMTP itself)";
    let live = s
        .transcript
        .as_ref()
        .and_then(|t| t.greeting.as_ref().map(|g| (g, t.ehlo.as_ref())));
    if let Some((greeting, ehlo)) = live {
        let mut checked = vec![("greeting", lines(greeting))];
        if let Some(e) = ehlo {
            checked.push(("EHLO answer", lines(e)));
        }
        for (what, texts) in &checked {
            for text in texts {
                if let Some(why) = revealing(text) {
                    return Finding::fail(ITEM, format!("the {what} \"{text}\" {why}"), fix);
                }
            }
        }
        return Finding::pass(
            ITEM,
            format!(
                "\"{} {}\" and the EHLO answer name no software or version",
                greeting.code,
                greeting.lines.first().cloned().unwrap_or_default()
            ),
        );
    }
    let text = match control.value("smtpgreeting") {
        Ok(Some(t)) => t,
        Ok(None) => control.value("me").ok().flatten().unwrap_or_default(),
        Err(e) => return Finding::warn(ITEM, e.msg, "make control/smtpgreeting readable"),
    };
    match revealing(&text) {
        Some(why) => Finding::fail(ITEM, format!("control/smtpgreeting \"{text}\" {why}"), fix),
        None => Finding::pass(
            ITEM,
            format!("\"{text}\" names no software or version (from the control files; smtpd not probed)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_names_are_found() {
        for bad in [
            "mail.example.test ESMTP Postfix 3.7.11",
            "mx.example.test ESMTP Sendmail 8.15.2/8.15.2; Thu",
            "mx.example.test Microsoft ESMTP MAIL Service ready",
            "mx ESMTP Exim 4.96",
            "mx ESMTP postern",
            "mx ESMTP server v2.1 ready",
            "mx ESMTP Foo/1.0",
            "mx ESMTP 1.03",
        ] {
            assert!(revealing(bad).is_some(), "{bad}");
        }
        for good in [
            "mail.example.test ESMTP",
            "mx1.example.test Hello [127.0.0.2]",
            "SIZE 10240000",
            "ENHANCEDSTATUSCODES",
            "AUTH PLAIN LOGIN",
            "mx.example.test ready at 192.0.2.1",
            "8BITMIME",
        ] {
            assert_eq!(revealing(good), None, "{good}");
        }
    }
}
