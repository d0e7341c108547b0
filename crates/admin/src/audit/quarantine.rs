//! The quarantine's size and its oldest copy. Nothing expires copies on its own, so a
//! quarantine nobody looks at grows without end and keeps mail (and malware) for ever:
//! more than [`COUNT_WARN`] copies, or one older than [`OLDEST_WARN_DAYS`] days, is a
//! WARN with the command that cleans up.

use super::queue::human;
use super::Finding;
use std::path::Path;
use std::time::{Duration, SystemTime};

pub const ITEM: &str = "quarantine";
/// More copies than this is a WARN.
pub const COUNT_WARN: usize = 1000;
/// A copy older than this many days is a WARN.
pub const OLDEST_WARN_DAYS: u64 = 30;

pub fn finding(home: &Path) -> Finding {
    finding_at(home, SystemTime::now())
}

pub fn finding_at(home: &Path, now: SystemTime) -> Finding {
    let copies = match crate::quarantine::copies(home) {
        Ok(c) => c,
        Err(e) => {
            return Finding::warn(
                ITEM,
                e.msg,
                "run the audit as root or the quarantine's owner",
            )
        }
    };
    let Some(oldest) = copies.first() else {
        return Finding::pass(ITEM, "empty");
    };
    let age = now
        .duration_since(oldest.modified)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let bytes: u64 = copies.iter().map(|c| c.size).sum();
    let detail = format!(
        "{} message{}, {bytes} bytes, the oldest kept {}",
        copies.len(),
        if copies.len() == 1 { "" } else { "s" },
        human(age)
    );
    if copies.len() > COUNT_WARN || age > OLDEST_WARN_DAYS * 86_400 {
        Finding::warn(
            ITEM,
            format!("{detail} (thresholds: {COUNT_WARN} messages, {OLDEST_WARN_DAYS} days)"),
            format!(
                "look through `posternctl quarantine list`, release what was wrongly held, \
                 then `posternctl quarantine expire {OLDEST_WARN_DAYS}`"
            ),
        )
    } else {
        Finding::pass(ITEM, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn empty_fresh_and_old() {
        let home = postern_testkit::tempdir();
        assert_eq!(finding(home.path()).detail, "empty");
        fs::create_dir_all(home.path().join("quarantine/new")).unwrap();
        fs::write(home.path().join("quarantine/new/1.M1P1Q1.h"), "x\n").unwrap();
        let f = finding(home.path());
        assert_eq!(f.status.word(), "PASS", "{f:?}");
        assert!(f.detail.starts_with("1 message, 2 bytes"), "{f:?}");
        let later = SystemTime::now() + Duration::from_secs(31 * 86_400);
        let f = finding_at(home.path(), later);
        assert_eq!(f.status.word(), "WARN", "{f:?}");
        assert!(f.fix.contains("posternctl quarantine expire 30"), "{f:?}");
    }
}
