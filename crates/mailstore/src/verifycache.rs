//! The answers of recipient verification ([`crate::verify`]), kept on disk under
//! `HOME/run/verify/` (the network account's, mode 0700) so that one probe serves every
//! session for a while, across restarts: positive answers for `verifypositive` seconds,
//! negative ones for `verifynegative`, temporary results for `verifytempfail` (0: not
//! kept). At most `verifycachesize` answers: past it, expired answers and then the
//! oldest are removed (down to nine tenths of it, so the scan is rare).
//!
//! One file per address: its name is the first 128 bits of the BLAKE2b-512 hash of the
//! address (hex), so no byte of an address reaches a path (principle 1). Its contents are
//! NUL-separated fields, `PV1`, the address, `pass|fail|tempfail`, the unix time of the
//! answer and the next hop's reply text (principle 3): a file of another address (a
//! hash collision) or one that does not parse is no answer. Files are replaced
//! atomically (temporary file, rename), so a reader never sees half of one.
//!
//! **One probe per address at a time.** The prober takes an exclusive `flock` on
//! `NAME.lock` ([`Cache::lock`]); a second prober of the same address waits for it (within
//! its own deadline), finds the new answer and uses it instead of probing again. The lock
//! file is removed by its holder before it unlocks; a waiter that then holds a lock on a
//! removed file sees that (its inode is no longer the path's) and opens the path again.

use crate::verify::Settings;
use blake2::{Blake2b512, Digest};
use postern_common::lock::Lock;
use postern_common::{Error, Result, ResultExt};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The cache directory under an instance.
pub const DIR: &str = "run/verify";
/// Longest reply text kept (printable ASCII).
pub const MAX_TEXT: usize = 200;
/// Largest file read as an answer.
const MAX_FILE: u64 = 2048;
const MAGIC: &str = "PV1";
/// How often a waiting prober tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(20);
/// Leftovers of a crashed prober (lock and temporary files) older than this are removed
/// when the cache is scanned.
const STALE: Duration = Duration::from_secs(3600);
/// An answer dated this far in the future (the clock was set back) is no answer.
const SKEW: u64 = 300;

/// What the next hop said about a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx to RCPT.
    Pass,
    /// 5xx to RCPT.
    Fail,
    /// Anything else: 4xx, no connection, no answer in time, a refused `MAIL FROM:<>`.
    TempFail,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::TempFail => "tempfail",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "pass" => Some(Outcome::Pass),
            "fail" => Some(Outcome::Fail),
            "tempfail" => Some(Outcome::TempFail),
            _ => None,
        }
    }

    /// How long an answer of this kind is kept.
    pub fn lifetime(self, s: &Settings) -> Duration {
        match self {
            Outcome::Pass => s.positive,
            Outcome::Fail => s.negative,
            Outcome::TempFail => s.tempfail,
        }
    }
}

/// A verification result: what, whether it came from the cache, and the reply text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub cached: bool,
    pub text: String,
}

/// Text fit for the cache and the log: printable ASCII (anything else a space), at most
/// [`MAX_TEXT`] bytes.
pub fn clean_text(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                ' '
            }
        })
        .take(MAX_TEXT)
        .collect()
}

/// The cache key of an address: the local part exactly, the domain lower-cased (as
/// smtpd compares recipients; the next hop decides about the local part's case).
pub fn key(addr: &str) -> String {
    match addr.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => addr.to_string(),
    }
}

/// The file name of an address's answer.
pub fn file_name(addr: &str) -> String {
    let digest = Blake2b512::digest(key(addr).as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One answer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    outcome: Outcome,
    time: u64,
    text: String,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        format!(
            "{MAGIC}\0{}\0{}\0{}\0{}\0",
            self.key,
            self.outcome.as_str(),
            self.time,
            self.text
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split('\0');
        if fields.next()? != MAGIC {
            return None;
        }
        let entry = Entry {
            key: fields.next()?.to_string(),
            outcome: Outcome::parse(fields.next()?)?,
            time: fields.next()?.parse().ok()?,
            text: fields.next()?.to_string(),
        };
        (fields.next()?.is_empty() && fields.next().is_none()).then_some(entry)
    }

    /// Whether the answer still holds at `now` (unix seconds).
    fn fresh(&self, s: &Settings, now: u64) -> bool {
        let life = self.outcome.lifetime(s).as_secs();
        self.time <= now.saturating_add(SKEW) && now < self.time.saturating_add(life)
    }
}

/// The cache of an instance.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// A held probe lock: removed and released when dropped.
pub struct ProbeLock {
    path: PathBuf,
    _file: Lock,
}

impl Drop for ProbeLock {
    fn drop(&mut self) {
        // Removed while still held: a waiter that gets this lock after us sees a file
        // that is no longer at the path, and opens the path again.
        let _ = fs::remove_file(&self.path);
    }
}

impl Cache {
    /// The cache of the instance at `home` (`home/run/verify`).
    pub fn for_home(home: &Path) -> Cache {
        Cache {
            dir: home.join(DIR),
        }
    }

    /// A cache in `dir` itself.
    pub fn at(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Create `run/` (0755) and `run/verify/` (0700) where missing, the latter owned by
    /// `owner` (the network account) when given. Existing directories are left alone.
    pub fn prepare(home: &Path, owner: Option<(u32, u32)>) -> Result<Vec<PathBuf>> {
        let mut made = Vec::new();
        for (dir, mode) in [(home.join("run"), 0o755), (home.join(DIR), 0o700)] {
            if dir.is_dir() {
                continue;
            }
            fs::DirBuilder::new()
                .mode(mode)
                .create(&dir)
                .temp(format!("unable to create {}", dir.display()))?;
            fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .temp(format!("unable to chmod {}", dir.display()))?;
            made.push(dir);
        }
        if let (Some((uid, gid)), true) = (owner, made.contains(&home.join(DIR))) {
            std::os::unix::fs::chown(home.join(DIR), Some(uid), Some(gid))
                .temp(format!("unable to chown {}", home.join(DIR).display()))?;
        }
        Ok(made)
    }

    fn path(&self, addr: &str) -> PathBuf {
        self.dir.join(file_name(addr))
    }

    /// The answer for `addr` still in force at `now`, if any. A missing or unusable file
    /// is no answer; a directory that cannot be read is an error.
    pub fn lookup(&self, addr: &str, s: &Settings, now: SystemTime) -> Result<Option<Answer>> {
        let path = self.path(addr);
        let file = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("unable to read {}", path.display()), &e)),
        };
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE), &mut bytes)
            .temp(format!("unable to read {}", path.display()))?;
        Ok(Entry::decode(&bytes)
            .filter(|e| e.key == key(addr) && e.fresh(s, unix(now)))
            .map(|e| Answer {
                outcome: e.outcome,
                cached: true,
                text: e.text,
            }))
    }

    /// Keep an answer given at `now`. A temporary result is kept only when
    /// `verifytempfail` is not 0; returns whether the answer was kept.
    pub fn store(
        &self,
        addr: &str,
        outcome: Outcome,
        text: &str,
        s: &Settings,
        now: SystemTime,
    ) -> Result<bool> {
        if outcome.lifetime(s).is_zero() {
            return Ok(false);
        }
        let entry = Entry {
            key: key(addr),
            outcome,
            time: unix(now),
            text: clean_text(text),
        };
        let path = self.path(addr);
        postern_common::atomic::write_atomic(&path, &entry.encode(), 0o600)
            .map_err(|e| Error::io(format!("unable to write {}", path.display()), &e))?;
        Ok(true)
    }

    /// Take the probe lock of `addr`, waiting until `deadline` at most (`None`: another
    /// probe of the address still holds it).
    pub fn lock(&self, addr: &str, deadline: Instant) -> Result<Option<ProbeLock>> {
        let path = self.dir.join(format!("{}.lock", file_name(addr)));
        loop {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .temp(format!("unable to open {}", path.display()))?;
            let held = loop {
                match Lock::try_take(file).temp(format!("unable to lock {}", path.display()))? {
                    Ok(held) => break held,
                    Err(f) => {
                        if Instant::now() >= deadline {
                            return Ok(None);
                        }
                        file = f;
                        std::thread::sleep(LOCK_POLL);
                    }
                }
            };
            // Still the lock file at the path? Its last holder may have removed it.
            let ours = held.metadata().ok().map(|m| (m.dev(), m.ino()));
            let at_path = fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino()));
            if ours.is_some() && ours == at_path {
                return Ok(Some(ProbeLock { path, _file: held }));
            }
        }
    }

    /// Keep the cache bounded: when it holds more than `cache_size` answers, remove the
    /// expired and unreadable ones, then the oldest, down to nine tenths of it. Stale
    /// leftovers of crashed probers go too. Returns how many answers were removed.
    pub fn evict(&self, s: &Settings, now: SystemTime) -> Result<usize> {
        let read = fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("unable to list {}", self.dir.display()), &e))?;
        let mut entries = Vec::new();
        for item in read.flatten() {
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            if is_entry_name(&name) {
                entries.push(item.path());
            } else if name.ends_with(".lock") || name.contains(".tmp.") {
                let stale = item
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE));
                if stale {
                    self.remove_leftover(&item.path(), name.ends_with(".lock"));
                }
            }
        }
        if entries.len() <= s.cache_size {
            return Ok(0);
        }
        let keep = s.cache_size - s.cache_size / 10;
        let now = unix(now);
        // (fresh, time, path): the expired and unreadable first, then the oldest.
        let mut dated: Vec<(bool, u64, PathBuf)> = entries
            .into_iter()
            .map(|p| {
                let e = fs::read(&p).ok().and_then(|b| Entry::decode(&b));
                match e {
                    Some(e) => (e.fresh(s, now), e.time, p),
                    None => (false, 0, p),
                }
            })
            .collect();
        dated.sort();
        let excess = dated.len().saturating_sub(keep);
        let mut removed = 0;
        for (_, _, p) in dated.iter().take(excess) {
            if fs::remove_file(p).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn remove_leftover(&self, path: &Path, is_lock: bool) {
        if !is_lock {
            let _ = fs::remove_file(path);
            return;
        }
        // A lock file nobody holds (its prober crashed): removed under its lock.
        if let Ok(f) = fs::OpenOptions::new().read(true).open(path) {
            if let Ok(Ok(_held)) = Lock::try_take(f) {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Verify `addr` through `cache`: an answer in force is used as it is; otherwise take the
/// address's probe lock (waiting for another probe of it, within `s.timeout`), look
/// again — the other probe's answer is used — and else run `probe` with the time left,
/// keep its answer and make room. `probe` runs at most once, and never while another
/// process probes the same address.
pub fn verify(
    cache: &Cache,
    addr: &str,
    s: &Settings,
    probe: impl FnOnce(Duration) -> (Outcome, String),
) -> Result<Answer> {
    let deadline = Instant::now() + s.timeout;
    // An answer that cannot be read (a file left by root, say) is no answer: the probe
    // replaces it. Trouble with the directory itself shows at the lock.
    let lookup = || cache.lookup(addr, s, SystemTime::now()).ok().flatten();
    if let Some(a) = lookup() {
        return Ok(a);
    }
    let Some(lock) = cache.lock(addr, deadline)? else {
        return Ok(Answer {
            outcome: Outcome::TempFail,
            cached: false,
            text: "another probe of this address did not finish in time".into(),
        });
    };
    if let Some(a) = lookup() {
        return Ok(a);
    }
    let (outcome, text) = probe(deadline.saturating_duration_since(Instant::now()));
    let text = clean_text(&text);
    let stored = cache.store(addr, outcome, &text, s, SystemTime::now());
    drop(lock);
    stored?;
    cache.evict(s, SystemTime::now())?;
    Ok(Answer {
        outcome,
        cached: false,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn settings() -> Settings {
        Settings {
            positive: Duration::from_secs(1000),
            negative: Duration::from_secs(100),
            tempfail: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            cache_size: 10,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir)
            .unwrap()
            .filter(|e| is_entry_name(&e.as_ref().unwrap().file_name().to_string_lossy()))
            .count()
    }

    #[test]
    fn answers_expire_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::at(dir.path());
        let s = settings();
        let t0 = 1_000_000;
        assert!(c
            .store("alice@Corp.test", Outcome::Pass, "250 ok", &s, at(t0))
            .unwrap());
        assert!(c
            .store("bob@corp.test", Outcome::Fail, "550 no\r\n", &s, at(t0))
            .unwrap());
        assert!(c
            .store(
                "carol@corp.test",
                Outcome::TempFail,
                "451 later",
                &s,
                at(t0)
            )
            .unwrap());
        let get = |a: &str, t: u64| c.lookup(a, &s, at(t)).unwrap().map(|a| a.outcome);
        assert_eq!(get("alice@corp.TEST", t0 + 999), Some(Outcome::Pass));
        assert_eq!(get("Alice@corp.test", t0), None, "local parts are exact");
        assert_eq!(get("alice@corp.test", t0 + 1000), None, "positive expired");
        assert_eq!(get("bob@corp.test", t0 + 99), Some(Outcome::Fail));
        assert_eq!(get("bob@corp.test", t0 + 100), None, "negative expired");
        assert_eq!(get("carol@corp.test", t0 + 9), Some(Outcome::TempFail));
        assert_eq!(get("carol@corp.test", t0 + 10), None);
        assert_eq!(get("alice@corp.test", t0 - 1000), None, "from the future");
        let a = c.lookup("bob@corp.test", &s, at(t0)).unwrap().unwrap();
        assert_eq!(a.text, "550 no  ");
        assert!(a.cached);
        // verifytempfail 0: temporary results are not kept at all.
        let s0 = Settings {
            tempfail: Duration::ZERO,
            ..settings()
        };
        assert!(!c
            .store("dave@corp.test", Outcome::TempFail, "", &s0, at(t0))
            .unwrap());
        assert_eq!(c.lookup("dave@corp.test", &s0, at(t0)).unwrap(), None);
    }

    #[test]
    fn a_foreign_or_broken_file_is_no_answer() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::at(dir.path());
        let s = settings();
        c.store("alice@corp.test", Outcome::Pass, "250", &s, at(5))
            .unwrap();
        // The file of another address under alice's name (a collision): not hers.
        let other = Entry {
            key: "mallory@corp.test".into(),
            outcome: Outcome::Pass,
            time: 5,
            text: String::new(),
        };
        let path = dir.path().join(file_name("alice@corp.test"));
        fs::write(&path, other.encode()).unwrap();
        assert_eq!(c.lookup("alice@corp.test", &s, at(5)).unwrap(), None);
        for junk in [&b"PV1\0alice@corp.test\0pass\0x\0\0"[..], b"", b"garbage"] {
            fs::write(&path, junk).unwrap();
            assert_eq!(c.lookup("alice@corp.test", &s, at(5)).unwrap(), None);
        }
        assert_eq!(file_name("alice@corp.test").len(), 32);
        assert_eq!(file_name("alice@CORP.test"), file_name("alice@corp.test"));
        assert_ne!(file_name("Alice@corp.test"), file_name("alice@corp.test"));
    }

    #[test]
    fn the_cache_is_bounded_expired_then_oldest_go() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::at(dir.path());
        let s = settings(); // at most 10
        let t0 = 1_000_000;
        // A negative answer that has expired (negative: 100 s), then 14 positive ones.
        c.store("expired@corp.test", Outcome::Fail, "550", &s, at(t0))
            .unwrap();
        for i in 0..14 {
            let addr = format!("u{i}@corp.test");
            c.store(&addr, Outcome::Pass, "250", &s, at(t0 + 200 + i))
                .unwrap();
            c.evict(&s, at(t0 + 200 + i)).unwrap();
            assert!(entries(dir.path()) <= 10, "bounded after {i}");
        }
        // 15 stored; at 11 the scan went down to 9, then 3 more came: 12 → 9 again.
        let left = entries(dir.path());
        assert!((9..=10).contains(&left), "{left}");
        let now = at(t0 + 300);
        assert_eq!(c.lookup("expired@corp.test", &s, now).unwrap(), None);
        assert!(c.lookup("u13@corp.test", &s, now).unwrap().is_some());
        assert!(c.lookup("u12@corp.test", &s, now).unwrap().is_some());
        assert_eq!(
            c.lookup("u0@corp.test", &s, now).unwrap(),
            None,
            "the oldest went first"
        );
        // The expired one went before any fresh one: it is no longer on disk.
        assert!(!dir.path().join(file_name("expired@corp.test")).exists());
    }

    /// Eight processes' worth of callers (threads, each with its own lock file
    /// descriptor) ask for one new address at once: one probe, one answer for all.
    #[test]
    fn concurrent_askers_make_one_probe() {
        let dir = tempfile::tempdir().unwrap();
        let probes = Arc::new(AtomicUsize::new(0));
        let s = settings();
        let answers: Vec<Answer> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (probes, s) = (probes.clone(), s.clone());
                    let c = Cache::at(dir.path());
                    scope.spawn(move || {
                        verify(&c, "new@corp.test", &s, |left| {
                            assert!(left > Duration::from_secs(20));
                            probes.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(500));
                            (Outcome::Fail, "550 5.1.1 no such user".into())
                        })
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(probes.load(Ordering::SeqCst), 1, "one probe");
        assert!(answers.iter().all(|a| a.outcome == Outcome::Fail));
        assert_eq!(answers.iter().filter(|a| !a.cached).count(), 1);
        assert!(answers.iter().all(|a| a.text == "550 5.1.1 no such user"));
        // The lock file is gone with its holder.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline_without_probing() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::at(dir.path());
        let held = c
            .lock("slow@corp.test", Instant::now() + Duration::from_secs(30))
            .unwrap()
            .unwrap();
        let s = Settings {
            timeout: Duration::from_secs(1),
            ..settings()
        };
        let start = Instant::now();
        let a = verify(&c, "slow@corp.test", &s, |_| panic!("must not probe")).unwrap();
        assert_eq!(a.outcome, Outcome::TempFail);
        assert!(!a.cached);
        assert!(start.elapsed() >= Duration::from_secs(1));
        drop(held);
        // Free again: this one probes.
        let a = verify(&c, "slow@corp.test", &s, |_| (Outcome::Pass, "250".into())).unwrap();
        assert_eq!((a.outcome, a.cached), (Outcome::Pass, false));
        let a = verify(&c, "slow@corp.test", &s, |_| panic!("cached")).unwrap();
        assert_eq!((a.outcome, a.cached), (Outcome::Pass, true));
    }

    #[test]
    fn prepare_makes_run_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let made = Cache::prepare(dir.path(), None).unwrap();
        assert_eq!(made.len(), 2);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir.path().join("run")), 0o755);
        assert_eq!(mode(&dir.path().join("run/verify")), 0o700);
        assert!(Cache::prepare(dir.path(), None).unwrap().is_empty());
    }
}
