//! Passwords never cross the network in clear text, and the certificate is good.
//!
//! - POP3: either `control/pop3requiretls` is set (no USER/PASS/AUTH before STLS) or the
//!   POP3 rules keep the world out. SMTP: smtpd offers AUTH only under TLS or from
//!   loopback unless `control/authcleartext` is set.
//! - `control/tls/cert.pem`: present, with its key, valid now and for at least
//!   [`EXPIRY_WARN_DAYS`] more days. The dates are read with `openssl x509 -noout
//!   -startdate -enddate` (Debian's openssl package), so no X.509 parser is linked in.

use super::Finding;
use chrono::{NaiveDateTime, Utc};
use postern_common::control::Control;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;

pub const ITEM_PASSWORDS: &str = "passwords over TLS";
pub const ITEM_CERT: &str = "TLS certificate";
/// A certificate that expires sooner than this is a WARN.
pub const EXPIRY_WARN_DAYS: i64 = 21;
/// An address from the outside world (TEST-NET-1) to ask the rules about.
pub const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
/// The certificate and key, relative to the instance.
pub const CERT: &str = "control/tls/cert.pem";
pub const KEY: &str = "control/tls/key.pem";

pub fn findings(home: &Path, control: &Control) -> Vec<Finding> {
    vec![passwords(home, control), certificate(home)]
}

/// Whether the rules `name` let a client from the outside world connect.
fn open_to_world(control: &Control, name: &str) -> bool {
    match super::rules(control, name) {
        Some(reader) => super::decide(&reader, OUTSIDE)
            .map(|d| !d.deny)
            .unwrap_or(true),
        None => true,
    }
}

fn passwords(home: &Path, control: &Control) -> Finding {
    let cert = home.join(CERT).exists();
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    let mut fine = Vec::new();
    let pop3 = home.join("service/pop3d").is_dir() || control.path("tcp.pop3").exists();
    if pop3 {
        let requiretls = control.flag("pop3requiretls").unwrap_or(false);
        let open = open_to_world(control, "tcp.pop3");
        match (requiretls, open, cert) {
            (false, true, _) => {
                problems
                    .push("POP3 is open to everyone (tcp.pop3) and takes USER/PASS without TLS");
                fixes.push("echo 1 > control/pop3requiretls (with control/tls/cert.pem in place)");
            }
            (true, _, false) => {
                problems.push(
                    "pop3requiretls is set but there is no certificate: nobody can log in to POP3",
                );
                fixes.push("put cert.pem and key.pem in control/tls");
            }
            (true, _, true) => fine.push("POP3 requires STLS before a password"),
            (false, false, _) => fine.push("POP3 is closed to the outside (tcp.pop3)"),
        }
    }
    if control.flag("authcleartext").unwrap_or(false) {
        problems.push("control/authcleartext is set: smtpd offers AUTH in clear text to everyone");
        fixes.push("rm control/authcleartext (AUTH is then offered only under TLS or on loopback)");
    } else if cert {
        fine.push("SMTP AUTH only under TLS (or on loopback)");
    } else {
        fine.push("SMTP AUTH only on loopback (no certificate, so no STARTTLS)");
    }
    if problems.is_empty() {
        Finding::pass(ITEM_PASSWORDS, fine.join("; "))
    } else {
        Finding::warn(
            ITEM_PASSWORDS,
            format!(
                "a password could cross the network in clear text: {}",
                problems.join("; ")
            ),
            fixes.join("; "),
        )
    }
}

/// `notBefore=Nov 26 06:00:00 2026 GMT` → the time.
pub fn parse_openssl_date(text: &str) -> Option<NaiveDateTime> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = words.join(" ");
    let joined = joined.trim_end_matches(" GMT");
    NaiveDateTime::parse_from_str(joined, "%b %d %H:%M:%S %Y").ok()
}

fn certificate(home: &Path) -> Finding {
    let cert = home.join(CERT);
    if !cert.exists() {
        return Finding::warn(
            ITEM_CERT,
            format!("no {CERT}: STARTTLS and STLS are not offered"),
            "put a certificate chain in control/tls/cert.pem and its key in key.pem (mode 0600)",
        );
    }
    if !home.join(KEY).exists() {
        return Finding::fail(
            ITEM_CERT,
            format!("{CERT} without {KEY}: postern-tlsd refuses to start (exit 111)"),
            "put the certificate's private key in control/tls/key.pem (mode 0600)",
        );
    }
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-startdate", "-enddate", "-in"])
        .arg(&cert)
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            return Finding::warn(
                ITEM_CERT,
                format!("unable to run openssl to read the dates: {e}"),
                "apt-get install openssl, then audit again",
            )
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(parse_openssl_date)
    };
    let (Some(start), Some(end), true) = (
        field("notBefore="),
        field("notAfter="),
        output.status.success(),
    ) else {
        return Finding::fail(
            ITEM_CERT,
            format!("{CERT} is not a certificate openssl can read"),
            "replace control/tls/cert.pem with a PEM certificate chain, leaf first",
        );
    };
    let now = Utc::now().naive_utc();
    let renew = "renew the certificate and install it with posternctl cert install FULLCHAIN KEY (certbot: scripts/certbot-deploy-hook); a renewal needs no restart";
    if now < start {
        return Finding::fail(
            ITEM_CERT,
            format!("not valid before {start} UTC"),
            "check the clock, or the certificate's dates",
        );
    }
    if now >= end {
        return Finding::fail(ITEM_CERT, format!("expired on {end} UTC"), renew);
    }
    let days = (end - now).num_days();
    if days < EXPIRY_WARN_DAYS {
        return Finding::warn(
            ITEM_CERT,
            format!("expires in {days} days ({end} UTC)"),
            renew,
        );
    }
    Finding::pass(ITEM_CERT, format!("valid until {end} UTC ({days} days)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_dates() {
        let t = parse_openssl_date("Nov  6 09:00:00 2026 GMT").unwrap();
        assert_eq!(t.to_string(), "2026-11-06 09:00:00");
        let t = parse_openssl_date("Dec 31 23:59:59 2030 GMT").unwrap();
        assert_eq!(t.to_string(), "2030-12-31 23:59:59");
        assert!(parse_openssl_date("garbage").is_none());
    }
}
