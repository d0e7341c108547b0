//! Directories of small entries that expire by age — the clients postern-pregreet
//! remembers, smtpd's greylist — kept bounded without a daemon: now and then a session
//! that writes an entry also sweeps the directory, removing what expired and, when too
//! many are left, the oldest. An entry's age is its file's modification time.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// True about one time in `every`, by the clock's nanoseconds: a cheap way for many
/// short-lived processes to share the sweeping without a shared counter.
pub fn sweep_now(every: u32) -> bool {
    every <= 1
        || SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() % every == 0)
            .unwrap_or(false)
}

/// Remove the entries of `dir` (files whose name `is_entry` accepts) older than `ttl`,
/// then the oldest beyond `max / 2` when more than `max` remain. Returns how many were
/// removed. Errors are ignored: another process may be sweeping at the same time.
pub fn sweep(
    dir: &Path,
    now: SystemTime,
    ttl: Duration,
    max: usize,
    is_entry: impl Fn(&str) -> bool,
) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut kept: Vec<(SystemTime, PathBuf)> = Vec::new();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !is_entry(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let Ok(seen) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if now.duration_since(seen).unwrap_or(Duration::ZERO) >= ttl {
            if fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        } else {
            kept.push((seen, entry.path()));
        }
    }
    if kept.len() > max {
        kept.sort();
        let excess = kept.len() - max / 2;
        for (_, path) in kept.into_iter().take(excess) {
            if fs::remove_file(path).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// How long ago `path` was last written, or `None` when it cannot be read. A time in
/// the future (the clock went back) counts as just now.
pub fn age(path: &Path, now: SystemTime) -> Option<Duration> {
    let seen = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(now.duration_since(seen).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_removes_the_expired_and_the_oldest_beyond_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        for i in 0..10u64 {
            let f = fs::File::create(dir.path().join(format!("e{i}"))).unwrap();
            f.set_modified(now - Duration::from_secs(i * 10)).unwrap();
        }
        fs::write(dir.path().join("other"), "").unwrap();
        let entry = |name: &str| name.starts_with('e');
        // Older than 75 s: e8 and e9.
        assert_eq!(
            sweep(dir.path(), now, Duration::from_secs(75), 100, entry),
            2
        );
        // 8 left, limit 6: cut back to 3, the newest.
        assert_eq!(sweep(dir.path(), now, Duration::from_secs(75), 6, entry), 5);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["e0", "e1", "e2", "other"]);
        assert_eq!(
            age(&dir.path().join("e2"), now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(age(&dir.path().join("e9"), now), None);
        assert!(sweep_now(1));
    }
}
