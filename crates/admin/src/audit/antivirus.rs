//! Antivirus engines are reachable and their signatures recent. For every `clamd:` engine
//! of `control/scanners` the audit sends `zVERSION\0` and reads clamd's answer,
//! `ClamAV 1.4.3/27000/Tue Nov 25 09:00:00 2026`: the database date must be within
//! [`MAX_SIGNATURE_AGE_DAYS`]. An engine that does not answer is a FAIL (postern-scan
//! answers 451 to every message then). A `command:` engine must be an executable file;
//! its signatures cannot be dated from here; an `rspamd:` or `spamd:` score engine must
//! accept a connection. No engine at all is a WARN.

use super::{Finding, Status};
use chrono::{NaiveDateTime, Utc};
use postern_common::control::Control;
use postern_filter::scan::engines::Engine;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

pub const ITEM: &str = "antivirus";
/// Signatures older than this are a WARN (clamd's freshclam updates several times a day).
pub const MAX_SIGNATURE_AGE_DAYS: i64 = 3;
/// Longest wait for clamd to connect and to answer.
pub const CLAMD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest VERSION answer read.
pub const MAX_ANSWER: u64 = 1024;

pub fn finding(control: &Control) -> Finding {
    let lines = match control.list("scanners") {
        Ok(l) => l,
        Err(e) => return Finding::fail(ITEM, e.msg, "make control/scanners readable"),
    };
    if lines.is_empty() {
        return Finding::warn(
            ITEM,
            "no engine in control/scanners: mail is not scanned for viruses",
            "install clamav-daemon and put clamd:/run/clamav/clamd.ctl in control/scanners",
        );
    }
    let engines = match postern_filter::scan::engines::parse(&lines) {
        Ok(e) => e,
        Err(e) => return Finding::fail(ITEM, e.msg, "fix control/scanners (posternctl check)"),
    };
    let now = Utc::now().naive_utc();
    let (mut worst, mut notes) = (Status::Pass, Vec::new());
    for engine in &engines {
        let (status, note) = match engine {
            Engine::ClamdUnix(_) | Engine::ClamdTcp(_) => match clamd_version(engine) {
                Ok(answer) => judge(&answer, now),
                Err(e) => (Status::Fail, format!("unreachable: {e}")),
            },
            Engine::Command(argv) => match std::fs::metadata(&argv[0]) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => (
                    Status::Pass,
                    "program present (signature age not checked)".to_string(),
                ),
                _ => (
                    Status::Fail,
                    "program missing or not executable".to_string(),
                ),
            },
            // A spam-score engine: reachable is all the audit can tell.
            Engine::Rspamd(at) | Engine::Spamd(at) => match at.connect(CLAMD_TIMEOUT) {
                Ok(_) => (Status::Pass, "score engine reachable".to_string()),
                Err(e) => (
                    Status::Fail,
                    format!("unreachable: {}", postern_common::exit::describe_io(&e)),
                ),
            },
        };
        worst = worst.max(status);
        notes.push(format!("{}: {note}", engine.name()));
    }
    let detail = notes.join("; ");
    match worst {
        Status::Pass => Finding::pass(ITEM, detail),
        Status::Warn => Finding::warn(
            ITEM,
            detail,
            "make sure freshclam runs (systemctl status clamav-freshclam) and can reach its mirrors",
        ),
        Status::Fail => Finding::fail(
            ITEM,
            detail,
            "start the engine (systemctl start clamav-daemon) or fix its line in control/scanners; \
             until then every message gets 451",
        ),
    }
}

/// Ask a clamd engine `zVERSION`.
fn clamd_version(engine: &Engine) -> Result<String, String> {
    fn talk(mut s: impl Read + Write) -> std::io::Result<String> {
        s.write_all(b"zVERSION\0")?;
        let mut answer = Vec::new();
        s.take(MAX_ANSWER).read_to_end(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer)
            .trim_end_matches(['\0', '\n'])
            .to_string())
    }
    let err = |e: std::io::Error| postern_common::exit::describe_io(&e);
    match engine {
        Engine::ClamdUnix(path) => {
            let s = UnixStream::connect(path).map_err(err)?;
            s.set_read_timeout(Some(CLAMD_TIMEOUT)).map_err(err)?;
            s.set_write_timeout(Some(CLAMD_TIMEOUT)).map_err(err)?;
            talk(s).map_err(err)
        }
        Engine::ClamdTcp(addr) => {
            let sa = addr
                .to_socket_addrs()
                .map_err(err)?
                .next()
                .ok_or_else(|| "no address".to_string())?;
            let s = TcpStream::connect_timeout(&sa, CLAMD_TIMEOUT).map_err(err)?;
            s.set_read_timeout(Some(CLAMD_TIMEOUT)).map_err(err)?;
            s.set_write_timeout(Some(CLAMD_TIMEOUT)).map_err(err)?;
            talk(s).map_err(err)
        }
        Engine::Command(_) | Engine::Rspamd(_) | Engine::Spamd(_) => Err("not clamd".to_string()),
    }
}

/// `ClamAV 1.4.3/27000/Tue Nov 25 09:00:00 2026` → (version, signatures, date).
pub fn parse_version(answer: &str) -> Option<(String, String, NaiveDateTime)> {
    let rest = answer.strip_prefix("ClamAV ")?;
    let mut parts = rest.splitn(3, '/');
    let version = parts.next()?.to_string();
    let signatures = parts.next()?.to_string();
    // The weekday is skipped: the date says all there is to say.
    let date = parts
        .next()?
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ");
    let date = NaiveDateTime::parse_from_str(&date, "%b %d %H:%M:%S %Y").ok()?;
    Some((version, signatures, date))
}

/// PASS, WARN (old or undated signatures) or FAIL (nonsense) for one answer.
pub fn judge(answer: &str, now: NaiveDateTime) -> (Status, String) {
    let shown = postern_common::logline::printable(answer);
    match parse_version(answer) {
        Some((_, sigs, date)) => {
            let age = (now - date).num_days();
            if age > MAX_SIGNATURE_AGE_DAYS {
                (
                    Status::Warn,
                    format!("signatures {sigs} are {age} days old ({date})"),
                )
            } else {
                (
                    Status::Pass,
                    format!("answers, signatures {sigs} of {date}"),
                )
            }
        }
        None if answer.starts_with("ClamAV ") => (
            Status::Warn,
            format!("answers \"{shown}\" without a signature date"),
        ),
        None => (Status::Fail, format!("answers nonsense: \"{shown}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn clamd_versions_are_dated() {
        let (v, s, d) = parse_version("ClamAV 1.4.3/27000/Tue Nov 25 09:00:00 2026").unwrap();
        assert_eq!((v.as_str(), s.as_str()), ("1.4.3", "27000"));
        assert_eq!(d, at("2026-11-25 09:00:00"));
        assert!(parse_version("ClamAV 1.4.3/27000/Tue Nov  5 09:00:00 2026").is_some());
        let answer = "ClamAV 1.4.3/27000/Tue Nov 25 09:00:00 2026";
        assert_eq!(judge(answer, at("2026-11-26 07:00:00")).0, Status::Pass);
        assert_eq!(judge(answer, at("2026-12-01 07:00:00")).0, Status::Warn);
        assert_eq!(
            judge("ClamAV 1.4.3", at("2026-12-01 07:00:00")).0,
            Status::Warn
        );
        assert_eq!(
            judge("UNKNOWN COMMAND", at("2026-12-01 07:00:00")).0,
            Status::Fail
        );
    }
}
