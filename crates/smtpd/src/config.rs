//! What one connection runs with: the control files (read afresh for every connection,
//! docs/control-files.md) and the facts the environment gives (UCSPI variables, `RELAYCLIENT`).
//!
//! A missing file means its documented default; a file that exists but cannot be read
//! or has a bad value is a temporary error, and the connection gets 421 rather than a
//! guess. A missing `rcpthosts` means no domain is accepted from non-relay clients.

use postern_common::control::{system_hostname, Control};
use postern_common::{Error, Result};
use postern_wire::ratelimit_lists::{self, Layout};
use std::time::Duration;

/// Default largest message.
pub const DEFAULT_DATABYTES: u64 = 10_240_000;
/// Default idle timeout per read, seconds.
pub const DEFAULT_TIMEOUT: u64 = 300;
/// Default length of a whole session, seconds (`timeoutsession`; 0 = no limit).
pub const DEFAULT_SESSION_TIMEOUT: u64 = 1800;
/// Default minimum data rate, bytes per second (`minrate`; 0 = no minimum).
pub const DEFAULT_MIN_RATE: u64 = 100;
/// Default credit of the minimum rate, seconds (`minratewindow`).
pub const DEFAULT_MIN_RATE_WINDOW: u64 = 30;
/// Default time the queue program (a filter) may take, seconds.
pub const DEFAULT_QUEUE_TIMEOUT: u64 = 1200;
/// Default pause per unknown recipient beyond [`FREE_UNKNOWN_RCPTS`], seconds.
pub const DEFAULT_UNKNOWN_RCPT_DELAY: u64 = 1;
/// Unknown recipients a session may give before the pauses start (typing mistakes).
pub const FREE_UNKNOWN_RCPTS: u64 = 2;
/// Default unknown recipients per session before 421.
pub const DEFAULT_MAX_UNKNOWN_RCPTS: u64 = 10;
/// Default recipients per message.
pub const DEFAULT_MAX_RCPTS: u64 = 100;
/// Largest value accepted for any timeout or delay file, seconds (one day).
pub const MAX_SECONDS: u64 = 86_400;

/// The control files one connection works with.
#[derive(Debug, Clone)]
pub struct Config {
    pub me: String,
    pub greeting: String,
    /// Lower-cased `rcpthosts` entries.
    pub rcpthosts: Vec<String>,
    /// 0 = no limit.
    pub databytes: u64,
    /// Lower-cased `badmailfrom` entries (`addr` or `@domain`).
    pub badmailfrom: Vec<String>,
    pub badrcptto: Vec<String>,
    /// `(login or *, pattern)` from `authsenders`.
    pub authsenders: Vec<(String, String)>,
    pub timeout: Duration,
    /// `timeoutsession`: the longest a whole session may last; `None`: no limit.
    pub session_timeout: Option<Duration>,
    /// `minrate`: bytes per second a client must keep up while it owes us bytes; 0: off.
    pub min_rate: u64,
    /// `minratewindow`: how far below `min_rate` a client may fall, in seconds.
    pub min_rate_window: Duration,
    pub queue_timeout: Duration,
    pub auth_fail_delay: Duration,
    pub unknown_rcpt_delay: Duration,
    pub max_unknown_rcpts: u64,
    pub max_rcpts: u64,
    /// `authcleartext`: AUTH without TLS from any client.
    pub authcleartext: bool,
    /// Entries of `control/ratelimit.blocked` in force now (written by postern-ratelimit).
    pub ratelimit_blocked: Vec<Blocked>,
    /// Greylisting at RCPT (`control/greylist*`).
    pub greylist: crate::greylist::Settings,
    /// Lower-cased `goodmailfrom` entries: senders never greylisted.
    pub goodmailfrom: Vec<String>,
}

/// One `KIND KEY UNTIL` line of `control/ratelimit.blocked`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// `sender`, `ip` or `auth`.
    pub kind: String,
    /// Lower-cased for `sender` and `auth` (logins are account names, which the user
    /// database lower-cases); exact for `ip`.
    pub key: String,
    pub until: u64,
}

/// The entries of `ratelimit.blocked` still in force at `now`. The file's contract
/// (docs/postern-ratelimit.md): lines that are expired or cannot be read are ignored, so
/// a half-edited file never blocks everyone; a missing file blocks no one.
pub fn ratelimit_blocked(c: &Control, now: u64) -> Result<Vec<Blocked>> {
    Ok(c.list(ratelimit_lists::BLOCKED)?
        .into_iter()
        .filter_map(|line| ratelimit_lists::entry(&line.text, Layout::Blocked))
        .filter(|e| e.in_force(now))
        .map(|e| Blocked {
            key: if e.kind == "sender" || e.kind == "auth" {
                e.key.to_ascii_lowercase()
            } else {
                e.key
            },
            kind: e.kind,
            until: e.until,
        })
        .collect())
}

/// Whether the client, the sender (from this client's network, unauthenticated) or the
/// login is blocked by the rate limiter: postern_wire::ratelimit_lists::keys, the rule
/// postern-ratelimit writes its keys by.
pub fn rate_limited(blocked: &[Blocked], ip: &str, sender: &str, auth: Option<&str>) -> bool {
    let pairs = blocked.iter().map(|b| (b.kind.as_str(), b.key.as_str()));
    ratelimit_lists::keys::is_blocked(pairs, ip, sender, auth)
}

fn lower_list(c: &Control, name: &str) -> Result<Vec<String>> {
    Ok(c.list(name)?
        .into_iter()
        .map(|l| l.text.to_ascii_lowercase())
        .collect())
}

fn seconds(c: &Control, name: &str, default: u64) -> Result<Duration> {
    let n = c.number(name, default)?;
    if n > MAX_SECONDS {
        return Err(Error::temp(format!(
            "control/{name}: more than {MAX_SECONDS} seconds"
        )));
    }
    Ok(Duration::from_secs(n))
}

impl Config {
    /// The limits on waiting for the client, for a session starting at `now`.
    pub fn pace(&self, now: Duration) -> crate::pace::Pace {
        crate::pace::Pace::new(
            now,
            self.timeout,
            self.session_timeout,
            self.min_rate,
            self.min_rate_window,
        )
    }

    pub fn load(c: &Control) -> Result<Config> {
        let me = c.value("me")?.unwrap_or_else(system_hostname);
        let greeting = c.value("smtpgreeting")?.unwrap_or_else(|| me.clone());
        let mut authsenders = Vec::new();
        for line in c.list("authsenders")? {
            let Some((who, pattern)) = line.text.split_once(':') else {
                return Err(Error::temp(format!(
                    "control/authsenders:{}: expected LOGIN:SENDER",
                    line.number
                )));
            };
            authsenders.push((
                who.trim().to_ascii_lowercase(),
                pattern.trim().to_ascii_lowercase(),
            ));
        }
        let databytes = match std::env::var("DATABYTES").ok().filter(|v| !v.is_empty()) {
            Some(v) => v
                .parse()
                .map_err(|_| Error::temp("$DATABYTES is not a whole number"))?,
            None => c.number("databytes", DEFAULT_DATABYTES)?,
        };
        let timeout = seconds(c, "timeoutsmtpd", DEFAULT_TIMEOUT)?;
        let session_timeout = seconds(c, "timeoutsession", DEFAULT_SESSION_TIMEOUT)?;
        Ok(Config {
            me,
            greeting,
            rcpthosts: lower_list(c, "rcpthosts")?,
            databytes,
            badmailfrom: lower_list(c, "badmailfrom")?,
            badrcptto: lower_list(c, "badrcptto")?,
            authsenders,
            timeout: if timeout.is_zero() {
                Duration::from_secs(DEFAULT_TIMEOUT)
            } else {
                timeout
            },
            session_timeout: (!session_timeout.is_zero()).then_some(session_timeout),
            min_rate: c.number("minrate", DEFAULT_MIN_RATE)?,
            min_rate_window: seconds(c, "minratewindow", DEFAULT_MIN_RATE_WINDOW)?
                .max(Duration::from_secs(1)),
            queue_timeout: seconds(c, "timeoutqueue", DEFAULT_QUEUE_TIMEOUT)?
                .max(Duration::from_secs(1)),
            auth_fail_delay: postern_mailstore::authfail::first_delay(c)?,
            unknown_rcpt_delay: seconds(c, "unknownrcptdelay", DEFAULT_UNKNOWN_RCPT_DELAY)?,
            max_unknown_rcpts: c
                .number("maxunknownrcpts", DEFAULT_MAX_UNKNOWN_RCPTS)?
                .max(1),
            max_rcpts: c.number("maxrcpts", DEFAULT_MAX_RCPTS)?.max(1),
            authcleartext: c.flag("authcleartext")?,
            greylist: crate::greylist::Settings::load(c)?,
            goodmailfrom: lower_list(c, "goodmailfrom")?,
            ratelimit_blocked: ratelimit_blocked(
                c,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            )?,
        })
    }
}

/// Whether `addr` (lower-case, `local@domain`) matches a `badmailfrom`-style list.
pub fn listed(addr: &str, list: &[String]) -> bool {
    let addr = addr.to_ascii_lowercase();
    let domain = addr.rsplit_once('@').map(|(_, d)| d);
    list.iter().any(|e| {
        *e == addr || matches!((e.strip_prefix('@'), domain), (Some(ed), Some(d)) if ed == d)
    })
}

/// The client as the environment describes it (set by postern-tcpserver / tcprules).
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub ip: String,
    pub port: String,
    pub host: Option<String>,
    pub local_ip: String,
    pub local_port: String,
    /// `RELAYCLIENT` is set (to anything): relaying allowed.
    pub relayclient: bool,
}

impl Peer {
    pub fn from_env() -> Peer {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Peer {
            ip: var("TCPREMOTEIP").unwrap_or_else(|| "unknown".into()),
            port: var("TCPREMOTEPORT").unwrap_or_default(),
            host: var("TCPREMOTEHOST"),
            local_ip: var("TCPLOCALIP").unwrap_or_default(),
            local_port: var("TCPLOCALPORT").unwrap_or_default(),
            relayclient: std::env::var_os("RELAYCLIENT").is_some(),
        }
    }

    /// The client is on this host: AUTH is allowed without TLS.
    pub fn is_loopback(&self) -> bool {
        self.ip
            .parse::<std::net::IpAddr>()
            .map(|a| a.is_loopback())
            .unwrap_or(false)
            || self
                .ip
                .strip_prefix("::ffff:")
                .and_then(|v4| v4.parse::<std::net::Ipv4Addr>().ok())
                .is_some_and(|a| a.is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_match_addresses_and_domains() {
        let list = vec!["spammer@bad.test".to_string(), "@worse.test".to_string()];
        assert!(listed("Spammer@Bad.test", &list));
        assert!(listed("anyone@worse.test", &list));
        assert!(!listed("other@bad.test", &list));
        assert!(!listed("x@sub.worse.test", &list));
        assert!(!listed("", &list));
    }

    #[test]
    fn defaults_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let c = Control::at(dir.path());
        std::fs::write(dir.path().join("me"), "mx.example.test\n").unwrap();
        let cfg = Config::load(&c).unwrap();
        assert_eq!(cfg.greeting, "mx.example.test");
        assert!(cfg.rcpthosts.is_empty());
        assert_eq!(cfg.databytes, DEFAULT_DATABYTES);
        assert_eq!(cfg.session_timeout, Some(Duration::from_secs(1800)));
        assert_eq!(
            (cfg.min_rate, cfg.min_rate_window),
            (100, Duration::from_secs(30))
        );
        std::fs::write(dir.path().join("timeoutsession"), "0\n").unwrap();
        std::fs::write(dir.path().join("minrate"), "0\n").unwrap();
        std::fs::write(dir.path().join("minratewindow"), "0\n").unwrap();
        let cfg = Config::load(&c).unwrap();
        assert_eq!(cfg.session_timeout, None, "0 = no session limit");
        assert_eq!(cfg.min_rate, 0, "0 = no minimum rate");
        assert_eq!(cfg.min_rate_window, Duration::from_secs(1), "at least 1 s");
        std::fs::write(dir.path().join("timeoutsession"), "86401\n").unwrap();
        assert!(Config::load(&c).is_err());
        std::fs::write(dir.path().join("timeoutsession"), "60\n").unwrap();
        std::fs::write(dir.path().join("minrate"), "fast\n").unwrap();
        assert!(Config::load(&c).is_err());
        std::fs::remove_file(dir.path().join("minrate")).unwrap();
        std::fs::write(dir.path().join("authsenders"), "no colon\n").unwrap();
        let e = Config::load(&c).unwrap_err();
        assert_eq!(e.msg, "control/authsenders:1: expected LOGIN:SENDER");
        std::fs::remove_file(dir.path().join("authsenders")).unwrap();
        std::fs::create_dir(dir.path().join("rcpthosts")).unwrap();
        assert!(
            Config::load(&c).is_err(),
            "unreadable rcpthosts is an error, not 'none'"
        );
    }

    #[test]
    fn loopback() {
        let p = |ip: &str| Peer {
            ip: ip.into(),
            ..Peer::default()
        };
        assert!(p("127.0.0.1").is_loopback());
        assert!(p("::1").is_loopback());
        assert!(p("::ffff:127.0.0.1").is_loopback());
        assert!(!p("192.0.2.1").is_loopback());
        assert!(!p("unknown").is_loopback());
    }
}

#[cfg(test)]
mod ratelimit_tests {
    use super::*;

    #[test]
    fn blocked_entries_in_force_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ratelimit.blocked"),
            "# by postern-ratelimit\nsender Bulk@Example.test 2000\nip 192.0.2.9 2000\nauth alice@example.test 2000\nip 192.0.2.10 999\nsender broken\nfoo x 3000\n",
        )
        .unwrap();
        let c = Control::at(dir.path());
        let b = ratelimit_blocked(&c, 1000).unwrap();
        assert_eq!(b.len(), 3, "{b:?}");
        assert!(rate_limited(&b, "192.0.2.9", "", None));
        assert!(!rate_limited(&b, "192.0.2.10", "", None), "expired");
        assert!(rate_limited(&b, "198.51.100.1", "bulk@EXAMPLE.test", None));
        assert!(rate_limited(
            &b,
            "198.51.100.1",
            "x@y.test",
            Some("alice@example.test")
        ));
        assert!(
            !rate_limited(&b, "198.51.100.1", "", None),
            "the null sender is never blocked"
        );
        assert!(ratelimit_blocked(&Control::at(dir.path().join("none")), 0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn auth_logins_bypass_ratelimit_blocks_by_changing_case() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ratelimit.blocked"),
            "auth Bob@Example.TEST 2000\n",
        )
        .unwrap();
        let b = ratelimit_blocked(&Control::at(dir.path()), 1000).unwrap();
        assert_eq!(b[0].key, "bob@example.test");
        for login in ["bob@example.test", "BOB@example.test", "Bob@Example.TEST"] {
            assert!(
                rate_limited(&b, "192.0.2.1", "x@y.test", Some(login)),
                "{login}"
            );
        }
        assert!(!rate_limited(
            &b,
            "192.0.2.1",
            "x@y.test",
            Some("rob@example.test")
        ));
    }
}
