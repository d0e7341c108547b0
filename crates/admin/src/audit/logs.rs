//! Logs, and what they say about the access rules.
//!
//! - Logs being written: for every service that is up (its `supervise/status` names a
//!   pid), `log/NAME/current` must have changed within [`LOG_STALE_SECS`] — a logger that
//!   died or a full disk silences the record an admin relies on after an incident.
//! - Stale access rules, the "firewall rule life cycle": `postern-tcpserver -v` logs the
//!   key of the rule that decided each connection (`event=start … rule=KEY`,
//!   `event=deny … rule=KEY`). A rule of `tcp.*` whose keys appear in none of those lines
//!   for the last N days (`--stale-days`, default 30) is listed, to be reviewed or
//!   removed. That is judged only when the service's log reaches back N days; a shorter
//!   log gets a PASS that says so. Connections from 127.0.0.2 and up (the audit's own
//!   probes) are not counted as use.

use super::Finding;
use crate::report::logs as multilog;
use postern_common::control::Control;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ITEM_WRITTEN: &str = "logs";
pub const ITEM_STALE: &str = "stale access rules";
/// A running service's `current` older than this (24 h) is a WARN.
pub const LOG_STALE_SECS: u64 = 86_400;
/// The daemontools status file is at least this long; the pid is little-endian at 12..16.
const STATUS_LEN: usize = 18;
/// Which service logs the rules of each file when the run scripts do not say.
pub const CONVENTIONAL: &[(&str, &str)] = &[
    ("tcp.smtp", "smtpd"),
    ("tcp.pop3", "pop3d"),
    ("tcp.submission", "submission"),
];

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The pid supervise reports for `service`, if it is up.
fn running_pid(service: &Path) -> Option<u32> {
    let bytes = fs::read(service.join("supervise").join("status")).ok()?;
    if bytes.len() < STATUS_LEN {
        return None;
    }
    let pid = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    (pid != 0).then_some(pid)
}

pub fn written(home: &Path) -> Finding {
    let services = crate::services::service_dirs(home).unwrap_or_default();
    let now = SystemTime::now();
    let (mut up, mut silent) = (Vec::new(), Vec::new());
    for dir in &services {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if running_pid(dir).is_none() {
            continue;
        }
        up.push(name.clone());
        let current = home.join("log").join(&name).join("current");
        match fs::metadata(&current).and_then(|m| m.modified()) {
            Err(_) => silent.push(format!("{name} (no log/{name}/current)")),
            Ok(t) => {
                let age = now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
                if age > LOG_STALE_SECS {
                    silent.push(format!(
                        "{name} (last written {} ago)",
                        super::queue::human(age)
                    ));
                }
            }
        }
    }
    if up.is_empty() {
        return Finding::pass(
            ITEM_WRITTEN,
            "no service is up, so no log should be growing",
        );
    }
    if silent.is_empty() {
        Finding::pass(
            ITEM_WRITTEN,
            format!(
                "written within 24h by every service that is up: {}",
                super::list(&up)
            ),
        )
    } else {
        Finding::warn(
            ITEM_WRITTEN,
            format!("running but not logging for 24h: {}", super::list(&silent)),
            "posternctl stat (is the log service up?), df (is the disk full?), and the log \
             directory's owner",
        )
    }
}

/// The rules file of each service's tcpserver, and the service's log directory.
fn rule_logs(home: &Path, control: &Control) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for dir in crate::services::service_dirs(home).unwrap_or_default() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(text) = fs::read_to_string(dir.join("run")) else {
            continue;
        };
        if let Some((_, Some(rules))) = super::relay::parse_run_script(&text) {
            out.push((rules, home.join("log").join(name)));
        }
    }
    for (rules, service) in CONVENTIONAL {
        if !out.iter().any(|(r, _)| r == rules) {
            out.push((rules.to_string(), home.join("log").join(service)));
        }
    }
    out.retain(|(rules, log)| control.path(rules).is_file() && log.is_dir());
    out
}

/// What one log says: the first time in it, and when each rule key was last used.
#[derive(Debug, Default)]
pub struct Usage {
    pub first: Option<i64>,
    pub last_used: BTreeMap<String, i64>,
}

/// Read a multilog directory for tcpserver's `rule=` keys.
pub fn usage(log: &Path) -> Usage {
    let mut u = Usage::default();
    let Ok(files) = multilog::files(log) else {
        return u;
    };
    for file in &files {
        let _ = multilog::read_from(file, 0, true, &mut |t, line| {
            let Some(t) = t else { return };
            u.first = Some(u.first.map_or(t, |f| f.min(t)));
            let fields = postern_common::logline::parse(line);
            let event = postern_common::logline::get(&fields, "event");
            if !matches!(event, Some("start") | Some("deny")) {
                return;
            }
            // The audit's own probes (127.0.0.2 and up) say nothing about the rules' use.
            let ip = postern_common::logline::get(&fields, "ip").and_then(|i| i.parse().ok());
            if let Some(std::net::IpAddr::V4(v4)) = ip {
                if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] >= 2 {
                    return;
                }
            }
            if let Some(rule) = postern_common::logline::get(&fields, "rule") {
                let e = u.last_used.entry(rule.to_string()).or_insert(t);
                *e = (*e).max(t);
            }
        });
    }
    u
}

/// The stale rules of one rules source: `KEY (line N)` for each.
pub fn stale_in(source: &[u8], usage: &Usage, since: i64) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in source.split(|&b| b == b'\n').enumerate() {
        let Ok(Some(rule)) = postern_ucspi::rules::parse_line(line) else {
            continue;
        };
        let used = rule.keys.iter().any(|k| {
            usage
                .last_used
                .get(String::from_utf8_lossy(k).as_ref())
                .map(|&t| t >= since)
                .unwrap_or(false)
        });
        if !used {
            let key =
                String::from_utf8_lossy(rule.keys.first().map(|k| k.as_slice()).unwrap_or(b""))
                    .into_owned();
            let shown = if key.is_empty() {
                "the default rule".to_string()
            } else {
                key
            };
            out.push(format!("{shown} (line {})", i + 1));
        }
    }
    out
}

pub fn stale_rules(home: &Path, control: &Control, days: u64) -> Finding {
    let now = now_secs();
    let span = days as i64 * 86_400;
    let since = now - span;
    let pairs = rule_logs(home, control);
    if pairs.is_empty() {
        return Finding::pass(ITEM_STALE, "no tcpserver log to judge the access rules by");
    }
    let (mut stale, mut short, mut judged) = (Vec::new(), Vec::new(), Vec::new());
    for (rules, log) in pairs {
        let u = usage(&log);
        let covered = u.first.map(|f| now - f).unwrap_or(0);
        if covered < span {
            short.push(format!(
                "{rules} ({} of log)",
                super::queue::human(covered.max(0) as u64)
            ));
            continue;
        }
        let Ok(source) = fs::read(control.path(&rules)) else {
            continue;
        };
        judged.push(rules.clone());
        for s in stale_in(&source, &u, since) {
            stale.push(format!("{rules}: {s}"));
        }
    }
    if !stale.is_empty() {
        return Finding::warn(
            ITEM_STALE,
            format!(
                "matched no connection in {days} days: {}",
                super::list(&stale)
            ),
            "review each rule: remove the ones no longer needed (then posternctl cdb); tcpserver \
             must run with -v to log rule=",
        );
    }
    let mut detail = Vec::new();
    if !judged.is_empty() {
        detail.push(format!(
            "every rule of {} matched within {days} days",
            judged.join(", ")
        ));
    }
    if !short.is_empty() {
        detail.push(format!(
            "logs too short to judge (need {days} days): {}",
            short.join(", ")
        ));
    }
    Finding::pass(ITEM_STALE, detail.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_rules_are_stale() {
        let mut u = Usage::default();
        u.last_used.insert("127.0.0.1".into(), 1000);
        u.last_used.insert("".into(), 5000);
        u.last_used.insert("10.0.0.3".into(), 900);
        let source =
            b"127.0.0.1:allow,RELAYCLIENT=\"\"\n# c\n203.0.113.66:deny\n10.0.0.1-3:allow\n:allow\n";
        assert_eq!(
            stale_in(source, &u, 950),
            vec![
                "203.0.113.66 (line 3)".to_string(),
                "10.0.0.1 (line 4)".to_string()
            ]
        );
        assert_eq!(
            stale_in(source, &u, 800),
            vec!["203.0.113.66 (line 3)".to_string()]
        );
    }

    #[test]
    fn status_pid_is_read() {
        let d = postern_testkit::tempdir();
        fs::create_dir_all(d.path().join("supervise")).unwrap();
        let mut status = [0u8; 18];
        status[12..16].copy_from_slice(&4242u32.to_le_bytes());
        fs::write(d.path().join("supervise/status"), status).unwrap();
        assert_eq!(running_pid(d.path()), Some(4242));
        fs::write(d.path().join("supervise/status"), [0u8; 18]).unwrap();
        assert_eq!(running_pid(d.path()), None);
    }
}
