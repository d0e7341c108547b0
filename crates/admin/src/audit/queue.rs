//! The queue's backlog and its oldest message: `queue/new/` + `queue/mess/` counted as
//! postern-qstat counts them, the oldest by modification time. More than
//! [`BACKLOG_WARN`] messages, or one older than [`OLDEST_WARN_SECS`], is a WARN: mail is
//! not leaving (a dead smarthost, a blocklisted address, a spam run from a hijacked
//! account).

use super::Finding;
use std::fs;
use std::path::Path;
use std::time::SystemTime;

pub const ITEM: &str = "queue";
/// More messages than this waiting is a WARN.
pub const BACKLOG_WARN: u64 = 500;
/// A message waiting longer than this (2 days) is a WARN.
pub const OLDEST_WARN_SECS: u64 = 2 * 86_400;
/// Most entries looked at per queue directory.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// (messages, age in seconds of the oldest), or why the queue cannot be read.
pub fn measure(home: &Path, now: SystemTime) -> Result<(u64, Option<u64>), String> {
    let mut count = 0;
    let mut oldest: Option<SystemTime> = None;
    for sub in ["new", "mess"] {
        let dir = home.join("queue").join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(format!(
                    "unable to read queue/{sub}: {}",
                    postern_common::exit::describe_io(&e)
                ))
            }
        };
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            count += 1;
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
            if count >= MAX_ENTRIES {
                break;
            }
        }
    }
    let age = oldest.map(|t| now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0));
    Ok((count, age))
}

/// `3d 4h`, `5h 10m`, `42s`.
pub fn human(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{secs}s")
    }
}

pub fn finding(home: &Path) -> Finding {
    match measure(home, SystemTime::now()) {
        Err(e) => Finding::warn(ITEM, e, "run the audit as root or the queue's owner"),
        Ok((0, _)) => Finding::pass(ITEM, "empty"),
        Ok((n, age)) => {
            let age_text = age.map(human).unwrap_or_else(|| "unknown".to_string());
            let detail = format!("{n} messages, the oldest waiting {age_text}");
            if n > BACKLOG_WARN || age.unwrap_or(0) > OLDEST_WARN_SECS {
                Finding::warn(
                    ITEM,
                    format!(
                        "{detail} (thresholds: {BACKLOG_WARN} messages, {})",
                        human(OLDEST_WARN_SECS)
                    ),
                    "look at postern-qstat and the send log (event=delivery result=defer) for why \
                     mail is not leaving",
                )
            } else {
                Finding::pass(ITEM, detail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        assert_eq!(human(42), "42s");
        assert_eq!(human(600), "10m");
        assert_eq!(human(3 * 3600 + 60), "3h 1m");
        assert_eq!(human(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn counts_new_and_mess() {
        let d = postern_testkit::tempdir();
        for sub in ["new", "mess"] {
            fs::create_dir_all(d.path().join("queue").join(sub)).unwrap();
        }
        fs::write(d.path().join("queue/new/1"), "x").unwrap();
        fs::write(d.path().join("queue/mess/2"), "x").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(100);
        let (n, age) = measure(d.path(), later).unwrap();
        assert_eq!(n, 2);
        assert!(age.unwrap() >= 99);
    }
}
