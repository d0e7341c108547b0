//! The clients postern-pregreet remembers, in `run/pregreet/` (made by `posternctl
//! init` and `scripts/install`, writable by the network account): an empty file per
//! client and outcome — `d-ADDRESS` for one that talked first, `p-ADDRESS` for one that
//! waited — whose modification time is when it was last seen. The name is the address
//! as tcpserver reported it, reprinted from its parsed form, so it holds only hex
//! digits, dots and colons.
//!
//! The memory is an optimisation and a convenience, never a reason to refuse mail on
//! its own account: a missing or unwritable directory means "nothing remembered".
//! It stays bounded: now and then (one recording in [`SWEEP_EVERY`]) a session removes
//! the expired entries, and the oldest ones beyond [`MAX_ENTRIES`]
//! ([`postern_common::expiring`]).

use postern_common::expiring;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most entries kept; a sweep cuts the directory back to half of this.
pub const MAX_ENTRIES: usize = 50_000;
/// One recording in this many also sweeps the directory.
pub const SWEEP_EVERY: u32 = 64;

/// What the memory says about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    Nothing,
    /// It talked first within the drop TTL.
    Dropped,
    /// It waited within the pass TTL.
    Passed,
}

pub struct Memory {
    dir: PathBuf,
    ip: IpAddr,
}

impl Memory {
    pub fn new(home: &Path, ip: IpAddr) -> Memory {
        Memory::at(home.join("run/pregreet"), ip)
    }

    pub fn at(dir: PathBuf, ip: IpAddr) -> Memory {
        Memory { dir, ip }
    }

    fn path(&self, kind: char) -> PathBuf {
        self.dir.join(format!("{kind}-{}", self.ip))
    }

    fn fresh(&self, kind: char, now: SystemTime, ttl: u64) -> bool {
        expiring::age(&self.path(kind), now).is_some_and(|age| age < Duration::from_secs(ttl))
    }

    /// What is remembered about this client at `now`.
    pub fn recall(&self, now: SystemTime, drop_ttl: u64, pass_ttl: u64) -> Remembered {
        if drop_ttl > 0 && self.fresh('d', now, drop_ttl) {
            Remembered::Dropped
        } else if pass_ttl > 0 && self.fresh('p', now, pass_ttl) {
            Remembered::Passed
        } else {
            Remembered::Nothing
        }
    }

    /// Remember that the client talked first (and forget that it once waited).
    pub fn dropped(&self, ttl: u64) {
        let _ = fs::remove_file(self.path('p'));
        if ttl > 0 {
            self.touch('d', ttl);
        }
    }

    /// Remember that the client waited.
    pub fn passed(&self, ttl: u64) {
        if ttl > 0 {
            self.touch('p', ttl);
        }
    }

    fn touch(&self, kind: char, ttl: u64) {
        let made = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path(kind))
            .and_then(|f| f.set_modified(SystemTime::now()));
        if made.is_ok() && expiring::sweep_now(SWEEP_EVERY) {
            expiring::sweep(
                &self.dir,
                SystemTime::now(),
                Duration::from_secs(ttl),
                MAX_ENTRIES,
                |name| name.starts_with("d-") || name.starts_with("p-"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn remembers_drops_before_passes_and_forgets_after_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let m = Memory::at(dir.path().to_path_buf(), ip("192.0.2.7"));
        let now = SystemTime::now();
        assert_eq!(m.recall(now, 60, 60), Remembered::Nothing);
        m.passed(60);
        assert_eq!(m.recall(now, 60, 60), Remembered::Passed);
        assert_eq!(
            m.recall(now, 60, 0),
            Remembered::Nothing,
            "pass TTL 0: always wait"
        );
        m.dropped(60);
        assert!(
            !dir.path().join("p-192.0.2.7").exists(),
            "a drop forgets the pass"
        );
        assert_eq!(m.recall(now, 60, 60), Remembered::Dropped);
        let later = now + Duration::from_secs(61);
        assert_eq!(m.recall(later, 60, 60), Remembered::Nothing);
        let other = Memory::at(dir.path().to_path_buf(), ip("2001:db8::1"));
        assert_eq!(other.recall(now, 60, 60), Remembered::Nothing);
        other.passed(60);
        assert!(dir.path().join("p-2001:db8::1").exists());
    }

    #[test]
    fn a_missing_directory_remembers_nothing_and_fails_nothing() {
        let m = Memory::at(PathBuf::from("/nonexistent/run/pregreet"), ip("192.0.2.7"));
        m.dropped(60);
        m.passed(60);
        assert_eq!(m.recall(SystemTime::now(), 60, 60), Remembered::Nothing);
    }
}
