//! `control/verifyrecipients`: domains whose recipients are verified by asking the next
//! hop (a *callout*, like Postfix's `reject_unverified_recipient`). For a domain in
//! `rcpthosts` that is not hosted here and listed there, postern-smtpd answers RCPT with
//! what the domain's route (smtproutes, else MX) answers to `RCPT TO:` after `MAIL
//! FROM:<>`: 5xx → 550, 2xx → 250, anything else (no answer in time, no connection, 4xx)
//! → 450. The probes are made by postern-verify ([`crate::verifycache`] keeps their
//! answers); `control/relayrecipients`, when it governs the domain too, is asked first.
//!
//! One domain per line, `domain` or `@domain`; `#` comments. The settings
//! ([`Settings`]) have control files of their own, each with a default.

use crate::address;
use postern_common::control::{Control, Line};
use postern_common::{Error, Result};
use std::path::Path;
use std::time::Duration;

pub const SOURCE: &str = "verifyrecipients";
/// Seconds a positive answer (2xx) is kept.
pub const POSITIVE: &str = "verifypositive";
pub const DEFAULT_POSITIVE: u64 = 604_800;
/// Seconds a negative answer (5xx) is kept.
pub const NEGATIVE: &str = "verifynegative";
pub const DEFAULT_NEGATIVE: u64 = 10_800;
/// Seconds a temporary result (4xx, no connection, no answer) is kept; 0 = never.
pub const TEMPFAIL: &str = "verifytempfail";
pub const DEFAULT_TEMPFAIL: u64 = 60;
/// Seconds one verification may take, waiting for another probe of the address included.
pub const TIMEOUT: &str = "verifytimeout";
pub const DEFAULT_TIMEOUT: u64 = 30;
/// Most answers kept on disk.
pub const CACHE_SIZE: &str = "verifycachesize";
pub const DEFAULT_CACHE_SIZE: u64 = 10_000;
/// Largest lifetime accepted for an answer (a year).
pub const MAX_LIFETIME: u64 = 31_536_000;
/// Largest `verifytimeout` (five minutes: RFC 5321's RCPT timeout of the client).
pub const MAX_TIMEOUT: u64 = 300;
/// Largest `verifycachesize`.
pub const MAX_CACHE_SIZE: u64 = 1_000_000;
/// The number files, for `posternctl check`.
pub const NUMBER_FILES: &[&str] = &[POSITIVE, NEGATIVE, TEMPFAIL, TIMEOUT, CACHE_SIZE];

/// One line: the domain, lower-cased; a bad line is a permanent error
/// `control/verifyrecipients:LINE: why: text`.
pub fn parse_line(line: &Line) -> Result<String> {
    let text = line.text.trim();
    let text = text.strip_prefix('@').unwrap_or(text);
    address::domain(text).map_err(|e| {
        Error::perm(format!(
            "control/{SOURCE}:{}: {}: {}",
            line.number,
            e.msg,
            postern_common::logline::printable(&line.text)
        ))
    })
}

/// The listed domains. A file that cannot be read, or a bad line, is a temporary error:
/// the domains' recipients then get 4xx, never an unverified 250.
pub fn domains(control: &Control) -> Result<Vec<String>> {
    control
        .list(SOURCE)?
        .iter()
        .map(|l| parse_line(l).map_err(|e| Error::temp(e.msg)))
        .collect()
}

/// Whether recipients at `domain` are verified by callout.
pub fn governs(home: &Path, domain: &str) -> Result<bool> {
    let control = Control::for_home(home);
    if !control.path(SOURCE).exists() {
        return Ok(false);
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    Ok(domains(&control)?.contains(&domain))
}

/// The settings of verification, from their control files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub positive: Duration,
    pub negative: Duration,
    /// Zero: temporary results are not kept.
    pub tempfail: Duration,
    pub timeout: Duration,
    pub cache_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            positive: Duration::from_secs(DEFAULT_POSITIVE),
            negative: Duration::from_secs(DEFAULT_NEGATIVE),
            tempfail: Duration::from_secs(DEFAULT_TEMPFAIL),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT),
            cache_size: DEFAULT_CACHE_SIZE as usize,
        }
    }
}

fn bounded(control: &Control, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
    let n = control.number(name, default)?;
    if n < min || n > max {
        return Err(Error::temp(format!(
            "control/{name}: {n} is not between {min} and {max}"
        )));
    }
    Ok(n)
}

impl Settings {
    /// Read the settings; a bad value is a temporary error naming its file.
    pub fn load(control: &Control) -> Result<Settings> {
        let secs = Duration::from_secs;
        Ok(Settings {
            positive: secs(bounded(
                control,
                POSITIVE,
                DEFAULT_POSITIVE,
                1,
                MAX_LIFETIME,
            )?),
            negative: secs(bounded(
                control,
                NEGATIVE,
                DEFAULT_NEGATIVE,
                1,
                MAX_LIFETIME,
            )?),
            tempfail: secs(bounded(
                control,
                TEMPFAIL,
                DEFAULT_TEMPFAIL,
                0,
                MAX_LIFETIME,
            )?),
            timeout: secs(bounded(control, TIMEOUT, DEFAULT_TIMEOUT, 1, MAX_TIMEOUT)?),
            cache_size: bounded(control, CACHE_SIZE, DEFAULT_CACHE_SIZE, 1, MAX_CACHE_SIZE)?
                as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_common::control::parse_lines;

    #[test]
    fn domains_with_or_without_at() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir(home.join("control")).unwrap();
        assert!(!governs(home, "corp.test").unwrap(), "no file");
        std::fs::write(
            home.join("control/verifyrecipients"),
            "# behind the gateway\nCorp.test\n@partner.test\n",
        )
        .unwrap();
        assert!(governs(home, "corp.test").unwrap());
        assert!(governs(home, "PARTNER.test").unwrap());
        assert!(!governs(home, "sub.corp.test").unwrap());
        std::fs::write(
            home.join("control/verifyrecipients"),
            "corp.test\nbad_domain\n",
        )
        .unwrap();
        let e = governs(home, "corp.test").unwrap_err();
        assert_eq!(e.kind, postern_common::Kind::Temp, "fail closed");
        assert!(
            e.msg.starts_with("control/verifyrecipients:2: "),
            "{}",
            e.msg
        );
        for bad in ["a@corp.test", "@", "corp..test"] {
            assert!(parse_line(&parse_lines(bad)[0]).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_defaults_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let c = Control::at(dir.path());
        let s = Settings::load(&c).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.positive, Duration::from_secs(604_800));
        assert_eq!(s.negative, Duration::from_secs(10_800));
        assert_eq!(s.timeout, Duration::from_secs(30));
        std::fs::write(dir.path().join("verifytempfail"), "0\n").unwrap();
        assert_eq!(Settings::load(&c).unwrap().tempfail, Duration::ZERO);
        for (name, bad) in [
            ("verifytimeout", "0"),
            ("verifytimeout", "301"),
            ("verifypositive", "soon"),
            ("verifycachesize", "0"),
        ] {
            std::fs::write(dir.path().join(name), format!("{bad}\n")).unwrap();
            let e = Settings::load(&c).unwrap_err();
            assert!(e.msg.starts_with(&format!("control/{name}")), "{}", e.msg);
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
}
