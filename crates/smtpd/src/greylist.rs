//! Greylisting at RCPT: the first time a (client network, sender, recipient) triplet is
//! seen it gets `451 4.7.1`; a retry after `greylistdelay` seconds (and within
//! `greylistretry`) is accepted, and the triplet is then accepted at once for
//! `greylistlifetime` seconds after its last use. A client network with
//! `greylistclientpasses` accepted triplets is accepted at once too (postgrey's
//! automatic whitelist of clients that retry). Real MTAs retry; most bulk-mail software
//! does not.
//!
//! The client network is the /24 of an IPv4 address or the /64 of an IPv6 one, so a
//! sender's pool of outgoing servers counts as one client. Off unless
//! `control/greylist` says on; never applied to authenticated users, relay clients or
//! `goodmailfrom` senders (the session decides that).
//!
//! State: `run/greylist/` (0700, the network account's), one file per triplet `t-HASH`
//! and per network `n-HASH` (the hash of the key, so no address byte is in a path),
//! holding `first last passes` as decimal seconds and a count, replaced atomically
//! (temp file and rename), so parallel sessions never read a torn entry; two sessions
//! racing on one triplet at worst both defer it, or count one pass once. Bounded by
//! [`postern_common::expiring`]: one write in [`SWEEP_EVERY`] sweeps out entries unused
//! for longer than the retry window and lifetime, and the oldest beyond [`MAX_ENTRIES`].
//! Trouble with the directory fails open (logged): greylisting only delays mail that
//! would be accepted anyway.

use blake2::{Blake2b512, Digest};
use postern_common::control::Control;
use postern_common::{expiring, Error, Result};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The state directory, under the instance.
pub const DIR: &str = "run/greylist";
/// Most entries kept.
pub const MAX_ENTRIES: usize = 200_000;
/// One write in this many also sweeps the directory.
pub const SWEEP_EVERY: u32 = 128;
/// Defaults, in seconds (postgrey's: 5 minutes, 2 days, 35 days, 5 passes).
pub const DEFAULT_DELAY: u64 = 300;
pub const DEFAULT_RETRY: u64 = 2 * 86_400;
pub const DEFAULT_LIFETIME: u64 = 35 * 86_400;
pub const DEFAULT_CLIENT_PASSES: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub on: bool,
    /// Seconds before a retry is accepted.
    pub delay: u64,
    /// Seconds after the first attempt in which a retry counts; later, start over.
    pub retry: u64,
    /// Seconds an accepted triplet (or client network) stays accepted after its last use.
    pub lifetime: u64,
    /// Accepted triplets after which the client network is accepted at once (0: never).
    pub client_passes: u64,
}

impl Settings {
    pub fn off() -> Settings {
        Settings {
            on: false,
            delay: DEFAULT_DELAY,
            retry: DEFAULT_RETRY,
            lifetime: DEFAULT_LIFETIME,
            client_passes: DEFAULT_CLIENT_PASSES,
        }
    }

    pub fn load(control: &Control) -> Result<Settings> {
        let s = Settings {
            on: control.flag("greylist")?,
            delay: control.number("greylistdelay", DEFAULT_DELAY)?,
            retry: control.number("greylistretry", DEFAULT_RETRY)?,
            lifetime: control.number("greylistlifetime", DEFAULT_LIFETIME)?,
            client_passes: control.number("greylistclientpasses", DEFAULT_CLIENT_PASSES)?,
        };
        if s.on && s.retry <= s.delay {
            return Err(Error::temp(format!(
                "control/greylistretry ({}) must be longer than control/greylistdelay ({})",
                s.retry, s.delay
            )));
        }
        Ok(s)
    }
}

/// The answer for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First sight, or a retry too soon: `451 4.7.1`. `wait` is what is left of the delay.
    Defer { wait: u64 },
    /// A retry after the delay: accepted, and the triplet remembered.
    Retried,
    /// A triplet accepted before.
    Known,
    /// A client network that retried enough.
    Client,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Defer { .. } => "defer",
            Verdict::Retried => "retried",
            Verdict::Known => "known",
            Verdict::Client => "client",
        }
    }
}

/// The client network of `ip`: `a.b.c.0/24` or the /64 of an IPv6 address (an IPv4
/// address mapped into IPv6 counts as IPv4).
pub fn network(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

/// One stored entry: first and last sight (Unix seconds) and the passes counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    first: u64,
    last: u64,
    passes: u64,
}

impl Entry {
    fn parse(text: &str) -> Option<Entry> {
        let mut f = text.split_ascii_whitespace().map(|w| w.parse::<u64>().ok());
        let e = Entry {
            first: f.next()??,
            last: f.next()??,
            passes: f.next()??,
        };
        (f.next().is_none() && e.first <= e.last).then_some(e)
    }
    fn text(&self) -> String {
        format!("{} {} {}\n", self.first, self.last, self.passes)
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hashed(kind: char, key: &str) -> String {
    let digest = Blake2b512::digest(key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{kind}-{hex}")
}

fn is_entry(name: &str) -> bool {
    name.len() == 34
        && (name.starts_with("t-") || name.starts_with("n-"))
        && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

pub struct Greylist {
    dir: PathBuf,
}

impl Greylist {
    pub fn new(home: &Path) -> Greylist {
        Greylist::at(home.join(DIR))
    }

    pub fn at(dir: PathBuf) -> Greylist {
        Greylist { dir }
    }

    fn read(&self, name: &str) -> Option<Entry> {
        let text = fs::read_to_string(self.dir.join(name)).ok()?;
        Entry::parse(&text)
    }

    fn write(&self, name: &str, e: Entry) -> Result<()> {
        let path = self.dir.join(name);
        // Unique per process and per write (threads in tests share a pid).
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(".{name}.{}.{n}", std::process::id()));
        let done = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(e.text().as_bytes()))
            .and_then(|_| fs::rename(&tmp, &path));
        if let Err(err) = done {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(
                format!("unable to write {}", path.display()),
                &err,
            ));
        }
        Ok(())
    }

    /// Decide for the triplet at `now`, recording what it learns.
    pub fn check(
        &self,
        s: &Settings,
        ip: IpAddr,
        sender: &str,
        recipient: &str,
        now: SystemTime,
    ) -> Result<Verdict> {
        let t = unix(now);
        let net = network(ip);
        let net_name = hashed('n', &net);
        let fresh = |e: &Entry| t.saturating_sub(e.last) < s.lifetime;
        if s.client_passes > 0 {
            if let Some(e) = self.read(&net_name) {
                if e.passes >= s.client_passes && fresh(&e) {
                    self.write(&net_name, Entry { last: t, ..e })?;
                    return Ok(Verdict::Client);
                }
            }
        }
        let key = format!(
            "{net}\0{}\0{}",
            sender.to_ascii_lowercase(),
            recipient.to_ascii_lowercase()
        );
        let name = hashed('t', &key);
        let verdict = match self.read(&name) {
            Some(e) if e.passes > 0 && fresh(&e) => {
                self.write(
                    &name,
                    Entry {
                        last: t,
                        passes: e.passes + 1,
                        ..e
                    },
                )?;
                Verdict::Known
            }
            Some(e) if e.passes == 0 && t.saturating_sub(e.first) < s.retry => {
                let ready = e.first.saturating_add(s.delay);
                if t < ready {
                    self.write(&name, Entry { last: t, ..e })?;
                    return Ok(Verdict::Defer { wait: ready - t });
                }
                self.write(
                    &name,
                    Entry {
                        last: t,
                        passes: 1,
                        ..e
                    },
                )?;
                Verdict::Retried
            }
            // Never seen, expired, or a retry window missed: start over.
            _ => {
                self.write(
                    &name,
                    Entry {
                        first: t,
                        last: t,
                        passes: 0,
                    },
                )?;
                self.maybe_sweep(s, now);
                return Ok(Verdict::Defer { wait: s.delay });
            }
        };
        // An accepted triplet counts for its client network.
        let net_entry = match self.read(&net_name) {
            Some(e) if fresh(&e) => Entry {
                last: t,
                passes: e.passes + 1,
                ..e
            },
            _ => Entry {
                first: t,
                last: t,
                passes: 1,
            },
        };
        self.write(&net_name, net_entry)?;
        Ok(verdict)
    }

    fn maybe_sweep(&self, s: &Settings, now: SystemTime) {
        if expiring::sweep_now(SWEEP_EVERY) {
            let ttl = Duration::from_secs(s.retry.max(s.lifetime));
            expiring::sweep(&self.dir, now, ttl, MAX_ENTRIES, is_entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            on: true,
            delay: 300,
            retry: 86_400,
            lifetime: 30 * 86_400,
            client_passes: 3,
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        assert_eq!(network(ip("192.0.2.77")), "192.0.2.0/24");
        assert_eq!(network(ip("::ffff:192.0.2.77")), "192.0.2.0/24");
        assert_eq!(network(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
    }

    #[test]
    fn first_sight_defers_a_retry_after_the_delay_passes_then_it_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::at(dir.path().to_path_buf());
        let s = settings();
        let check = |ipx: &str, from: &str, to: &str, t: u64| {
            g.check(&s, ip(ipx), from, to, at(t)).unwrap()
        };
        assert_eq!(
            check("192.0.2.1", "a@x.test", "b@y.test", 0),
            Verdict::Defer { wait: 300 }
        );
        assert_eq!(
            check("192.0.2.1", "a@x.test", "b@y.test", 100),
            Verdict::Defer { wait: 200 }
        );
        // Another server of the same /24, and case, are the same triplet.
        assert_eq!(
            check("192.0.2.9", "A@X.test", "b@Y.test", 300),
            Verdict::Retried
        );
        assert_eq!(
            check("192.0.2.1", "a@x.test", "b@y.test", 400),
            Verdict::Known
        );
        // Another recipient is another triplet; another network too.
        assert_eq!(
            check("192.0.2.1", "a@x.test", "c@y.test", 500),
            Verdict::Defer { wait: 300 }
        );
        assert_eq!(
            check("198.51.100.1", "a@x.test", "b@y.test", 500),
            Verdict::Defer { wait: 300 }
        );
        // A known triplet unused for longer than the lifetime starts over.
        let later = 400 + 30 * 86_400;
        assert_eq!(
            check("192.0.2.1", "a@x.test", "b@y.test", later),
            Verdict::Defer { wait: 300 }
        );
    }

    #[test]
    fn a_retry_after_the_window_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::at(dir.path().to_path_buf());
        let s = settings();
        let check = |t: u64| {
            g.check(&s, ip("192.0.2.1"), "a@x.test", "b@y.test", at(t))
                .unwrap()
        };
        assert_eq!(check(0), Verdict::Defer { wait: 300 });
        assert_eq!(check(86_400), Verdict::Defer { wait: 300 });
        assert_eq!(check(86_400 + 300), Verdict::Retried);
    }

    #[test]
    fn a_client_network_that_retried_enough_is_accepted_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::at(dir.path().to_path_buf());
        let s = settings();
        for (i, to) in ["a@y.test", "b@y.test", "c@y.test"].iter().enumerate() {
            let t0 = i as u64 * 1000;
            assert!(matches!(
                g.check(&s, ip("192.0.2.1"), "s@x.test", to, at(t0))
                    .unwrap(),
                Verdict::Defer { .. }
            ));
            assert_eq!(
                g.check(&s, ip("192.0.2.1"), "s@x.test", to, at(t0 + 300))
                    .unwrap(),
                Verdict::Retried
            );
        }
        assert_eq!(
            g.check(&s, ip("192.0.2.200"), "new@x.test", "d@y.test", at(5000))
                .unwrap(),
            Verdict::Client
        );
        assert!(matches!(
            g.check(&s, ip("192.0.3.1"), "new@x.test", "d@y.test", at(5000))
                .unwrap(),
            Verdict::Defer { .. }
        ));
    }

    #[test]
    fn names_hold_no_address_and_damaged_entries_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::at(dir.path().to_path_buf());
        let s = settings();
        g.check(&s, ip("192.0.2.1"), "../../etc@x", "b@y.test", at(0))
            .unwrap();
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(is_entry(&names[0]), "{names:?}");
        fs::write(dir.path().join(&names[0]), "garbage\n").unwrap();
        assert_eq!(
            g.check(&s, ip("192.0.2.1"), "../../etc@x", "b@y.test", at(400))
                .unwrap(),
            Verdict::Defer { wait: 300 }
        );
    }

    #[test]
    fn an_unwritable_directory_is_an_error_the_caller_can_fail_open_on() {
        let g = Greylist::at(PathBuf::from("/nonexistent/run/greylist"));
        assert!(g
            .check(&settings(), ip("192.0.2.1"), "a@x", "b@y", at(0))
            .is_err());
    }

    #[test]
    fn settings_from_control_files() {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::at(dir.path());
        assert_eq!(Settings::load(&control).unwrap(), Settings::off());
        fs::write(dir.path().join("greylist"), "on\n").unwrap();
        fs::write(dir.path().join("greylistdelay"), "60\n").unwrap();
        let s = Settings::load(&control).unwrap();
        assert!(s.on && s.delay == 60 && s.retry == DEFAULT_RETRY);
        fs::write(dir.path().join("greylistretry"), "60\n").unwrap();
        assert!(Settings::load(&control).is_err());
    }

    #[test]
    fn parallel_sessions_never_see_a_torn_entry() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings();
        std::thread::scope(|scope| {
            for n in 0..8 {
                let g = Greylist::at(dir.path().to_path_buf());
                let s = &s;
                scope.spawn(move || {
                    for i in 0..200u64 {
                        g.check(s, ip("192.0.2.1"), "a@x.test", "b@y.test", at(i * 10 + n))
                            .unwrap();
                    }
                });
            }
        });
        // Every entry left parses, and no temporary file is left behind.
        for e in fs::read_dir(dir.path()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(is_entry(&name), "{name}");
            assert!(Entry::parse(&fs::read_to_string(e.path()).unwrap()).is_some());
        }
    }
}
