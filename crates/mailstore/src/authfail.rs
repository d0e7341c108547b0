//! The failed-login table: recent failures per client IP and per account, so that
//! `postern-checkpassword` can slow guessing down without a hard lockout an attacker
//! could use to shut a user out.
//!
//! The table is one fixed-size file, `$POSTERN_HOME/run/authfail/table` ([`TABLE_BYTES`]
//! bytes, so its size is bounded whatever an attacker sends): a 16-byte random key, then
//! [`SLOTS`] slots of `(hash u64le, failures u32le, last failure u32le unix time)`. Keys
//! (`ip:ADDR`, `user:ADDRESS`) are hashed with the table's own random key, so nobody
//! can pick user names that collide with a victim's slot. A key is looked for in
//! [`PROBES`] consecutive slots; when none is free the oldest is reused. Writers hold
//! an exclusive `flock` on the file.
//!
//! Delay before verifying: none for the first [`FREE_FAILURES`] failures within
//! [`WINDOW_SECS`] of each other, then `authfaildelay` ms (default
//! [`DEFAULT_DELAY_MS`]), doubling with each further failure, at most [`MAX_DELAY_MS`].
//! The larger of the IP's and the account's delay applies. Each attempt is counted as
//! a failure *before* its password is verified (under the lock, together with reading
//! the counts), so concurrent attempts see each other: N parallel guesses from one IP
//! are delayed as N sequential ones would be. A success takes its own pending failure
//! back from the account and clears the IP's entry (the account's other failures keep
//! counting until they age out: an attacker's guesses still slow the account down).

use postern_common::{Result, ResultExt};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SLOTS: usize = 4096;
pub const SLOT_BYTES: usize = 16;
pub const KEY_BYTES: usize = 16;
pub const TABLE_BYTES: usize = KEY_BYTES + SLOTS * SLOT_BYTES;
pub const PROBES: usize = 16;
/// Failures after which delays start.
pub const FREE_FAILURES: u32 = 3;
/// A failure older than this (since the key's last one) starts the count again.
pub const WINDOW_SECS: u32 = 15 * 60;
pub const DEFAULT_DELAY_MS: u64 = 1000;
pub const MAX_DELAY_MS: u64 = 30_000;
/// Control file: the first delay in milliseconds; 0 switches delays off.
pub const DELAY_FILE: &str = "authfaildelay";

/// `control/authfaildelay`, the one reading of it: the first delay in **milliseconds**
/// (checkpassword's first escalated delay, and smtpd's pause after a failed AUTH), at
/// most [`MAX_DELAY_MS`] (a larger value is that).
pub fn first_delay(control: &postern_common::control::Control) -> Result<Duration> {
    let ms = control.number(DELAY_FILE, DEFAULT_DELAY_MS)?;
    Ok(Duration::from_millis(ms.min(MAX_DELAY_MS)))
}

/// Where the table lives under an instance.
pub fn table_path(home: &Path) -> PathBuf {
    home.join("run/authfail/table")
}

/// Create `run/authfail/` for the account checkpassword will run as (the mailbox owner),
/// so that it can keep the table without root. Existing directories are left alone.
pub fn prepare(home: &Path, owner: Option<(u32, u32)>) -> Result<()> {
    let run = home.join("run");
    if !run.is_dir() {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&run)
            .temp(format!("unable to create {}", run.display()))?;
    }
    let dir = run.join("authfail");
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .temp(format!("unable to create {}", dir.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .temp(format!("unable to chown {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The delay for `failures` recent failures with base delay `base_ms`.
pub fn delay_for(failures: u32, base_ms: u64) -> Duration {
    if failures < FREE_FAILURES || base_ms == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - FREE_FAILURES).min(20);
    Duration::from_millis(base_ms.saturating_mul(1 << shift).min(MAX_DELAY_MS))
}

/// The open, locked table.
pub struct Table {
    file: postern_common::lock::Lock,
    bytes: Vec<u8>,
    now: u32,
}

fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Table {
    /// Open (creating as needed) and lock the table of the instance at `home`.
    pub fn open(home: &Path) -> Result<Table> {
        let path = table_path(home);
        let dir = postern_common::atomic::parent_dir(&path);
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .temp(format!("unable to create {}", dir.display()))?;
        }
        let file = postern_common::lock::open(&path, 0o600)
            .temp(format!("unable to open {}", path.display()))?;
        let mut file = postern_common::lock::Lock::wait(file)
            .temp(format!("unable to lock {}", path.display()))?;
        let mut bytes = Vec::with_capacity(TABLE_BYTES);
        (&mut *file)
            .take(TABLE_BYTES as u64)
            .read_to_end(&mut bytes)
            .temp(format!("unable to read {}", path.display()))?;
        if bytes.len() != TABLE_BYTES {
            // New or damaged: start afresh with a new key.
            bytes = vec![0u8; TABLE_BYTES];
            bytes[..KEY_BYTES].copy_from_slice(&crate::password::random_bytes(KEY_BYTES)?);
            file.set_len(TABLE_BYTES as u64)
                .temp(format!("unable to size {}", path.display()))?;
            file.write_all_at(&bytes, 0)
                .temp(format!("unable to write {}", path.display()))?;
        }
        Ok(Table {
            file,
            bytes,
            now: now_secs(),
        })
    }

    fn hash(&self, key: &str) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.bytes[..KEY_BYTES].hash(&mut h);
        key.hash(&mut h);
        h.finish().max(1) // 0 marks an empty slot
    }

    fn slot(&self, i: usize) -> (u64, u32, u32) {
        let at = KEY_BYTES + i * SLOT_BYTES;
        let b = &self.bytes[at..at + SLOT_BYTES];
        let u64le = u64::from_le_bytes(b[0..8].try_into().unwrap_or([0; 8]));
        let u32le =
            |r: std::ops::Range<usize>| u32::from_le_bytes(b[r].try_into().unwrap_or([0; 4]));
        (u64le, u32le(8..12), u32le(12..16))
    }

    fn put(&mut self, i: usize, hash: u64, failures: u32, last: u32) -> Result<()> {
        let at = KEY_BYTES + i * SLOT_BYTES;
        let mut b = [0u8; SLOT_BYTES];
        b[0..8].copy_from_slice(&hash.to_le_bytes());
        b[8..12].copy_from_slice(&failures.to_le_bytes());
        b[12..16].copy_from_slice(&last.to_le_bytes());
        self.bytes[at..at + SLOT_BYTES].copy_from_slice(&b);
        self.file
            .write_all_at(&b, at as u64)
            .temp("unable to write the authfail table")
    }

    /// The slot holding `key`, if any.
    fn find(&self, hash: u64) -> Option<usize> {
        let start = (hash % SLOTS as u64) as usize;
        (0..PROBES)
            .map(|p| (start + p) % SLOTS)
            .find(|&i| self.slot(i).0 == hash)
    }

    fn live(&self, last: u32) -> bool {
        self.now.saturating_sub(last) < WINDOW_SECS
    }

    /// Recent failures for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        match self.find(self.hash(key)) {
            Some(i) => {
                let (_, n, last) = self.slot(i);
                if self.live(last) {
                    n
                } else {
                    0
                }
            }
            None => 0,
        }
    }

    /// Count one more failure for `key`.
    pub fn record_failure(&mut self, key: &str) -> Result<()> {
        let hash = self.hash(key);
        let n = self.failures(key);
        let i = match self.find(hash) {
            Some(i) => i,
            None => {
                let start = (hash % SLOTS as u64) as usize;
                // A free or expired slot, else the one idle longest.
                (0..PROBES)
                    .map(|p| (start + p) % SLOTS)
                    .min_by_key(|&i| {
                        let (h, _, last) = self.slot(i);
                        if h == 0 || !self.live(last) {
                            0
                        } else {
                            last as u64 + 1
                        }
                    })
                    .unwrap_or(start)
            }
        };
        self.put(i, hash, n.saturating_add(1), self.now)
    }

    /// Take back one failure of `key` (a pending failure that turned out a success).
    pub fn undo_failure(&mut self, key: &str) -> Result<()> {
        let hash = self.hash(key);
        let n = self.failures(key);
        match self.find(hash) {
            Some(i) if n > 1 => {
                let (_, _, last) = self.slot(i);
                self.put(i, hash, n - 1, last)
            }
            Some(i) => self.put(i, 0, 0, 0),
            None => Ok(()),
        }
    }

    /// Forget `key`'s failures.
    pub fn clear(&mut self, key: &str) -> Result<()> {
        match self.find(self.hash(key)) {
            Some(i) => self.put(i, 0, 0, 0),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(delay_for(0, 1000), Duration::ZERO);
        assert_eq!(delay_for(2, 1000), Duration::ZERO);
        assert_eq!(delay_for(3, 1000), Duration::from_millis(1000));
        assert_eq!(delay_for(5, 1000), Duration::from_millis(4000));
        assert_eq!(delay_for(60, 1000), Duration::from_millis(MAX_DELAY_MS));
        assert_eq!(delay_for(60, 0), Duration::ZERO);
    }

    #[test]
    fn failures_are_counted_per_key_and_persist() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut t = Table::open(d.path()).unwrap();
            t.record_failure("ip:127.0.0.1").unwrap();
            t.record_failure("ip:127.0.0.1").unwrap();
            t.record_failure("user:a@x.test").unwrap();
        }
        let mut t = Table::open(d.path()).unwrap();
        assert_eq!(t.failures("ip:127.0.0.1"), 2);
        assert_eq!(t.failures("user:a@x.test"), 1);
        assert_eq!(t.failures("user:b@x.test"), 0);
        t.clear("ip:127.0.0.1").unwrap();
        assert_eq!(t.failures("ip:127.0.0.1"), 0);
        t.record_failure("user:a@x.test").unwrap();
        t.undo_failure("user:a@x.test").unwrap();
        assert_eq!(t.failures("user:a@x.test"), 1, "undo takes back one");
        t.undo_failure("user:a@x.test").unwrap();
        t.undo_failure("user:a@x.test").unwrap();
        assert_eq!(t.failures("user:a@x.test"), 0, "never below zero");
        assert_eq!(
            fs::metadata(table_path(d.path())).unwrap().len(),
            TABLE_BYTES as u64
        );
    }

    #[test]
    fn the_table_never_grows() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Table::open(d.path()).unwrap();
        for i in 0..(SLOTS * 2) {
            t.record_failure(&format!("user:{i}@x.test")).unwrap();
        }
        drop(t);
        assert_eq!(
            fs::metadata(table_path(d.path())).unwrap().len(),
            TABLE_BYTES as u64
        );
    }
}
