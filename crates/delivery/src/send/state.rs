//! The state file `state/ID` (docs/queue.md): one line for the message, one per
//! recipient, `key=value` words with the log-line quoting, so any address round-trips:
//!
//! ```text
//! v=1 birth=UNIX tries=N next=UNIX priority=0|1 held=S [holdsince=UNIX] from=<addr> [auth=USER] [trusted=1] [bounced=1]
//! rcpt=<addr> kind=local|remote status=todo|done|failed|deferred tries=N last="text"
//! ```
//!
//! `held` is the time the message spent held by the rate limiter's holds (not counted
//! towards `queuelifetime`), `holdsince` when the hold in force began, `from` the envelope
//! sender and `auth` the authenticated submitter when the queue recorded one. Files
//! without these keys (older ones) read as `held=0`, no `from` (read from the queue file
//! when needed), no `auth`. `trusted=1`: the queue file has `Ipriority=1` (the only
//! priority that counts against `holdbulk`; absent reads as not trusted). `bounced=1`:
//! the bounce of the failed recipients has been (or is being) queued — recorded before
//! the bounce is injected, so a crash never bounces twice.
//!
//! Written only by postern-send, always as `state/.ID.tmp` + fsync + rename + fsync of
//! `state/`.

use postern_common::atomic::fsync_dir;
use postern_common::logline::{self, LogLine};
use postern_common::{Error, Result, ResultExt};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Longest `last=` text kept per recipient.
pub const MAX_LAST: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Local,
    Remote,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Local => "local",
            Channel::Remote => "remote",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Todo,
    Done,
    Failed,
    Deferred,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Todo => "todo",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Deferred => "deferred",
        }
    }
    /// Still to be delivered.
    pub fn pending(self) -> bool {
        matches!(self, Status::Todo | Status::Deferred)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    pub addr: String,
    pub channel: Channel,
    pub status: Status,
    pub tries: u32,
    pub last: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub birth: u64,
    pub tries: u32,
    pub next: u64,
    pub priority: bool,
    /// Seconds spent held by the rate limiter's holds (added to `queuelifetime`).
    pub held: u64,
    /// When the hold in force began (`None`: not held).
    pub holdsince: Option<u64>,
    /// The envelope sender (`None` in a state file written without it).
    pub from: Option<String>,
    /// The authenticated submitter (`Iauth=`), when the queue recorded one.
    pub auth: Option<String>,
    /// The queue file has `Ipriority=1` (a trusted submitter): `priority` may also come
    /// from `prioritysenders`/`prioritysubject`, which anybody can forge.
    pub trusted: bool,
    /// The bounce has been queued (or is being): never queue it again.
    pub bounced: bool,
    pub rcpts: Vec<Rcpt>,
}

impl State {
    pub fn render(&self) -> String {
        // LogLine starts with `event=`; build the words ourselves with its quoting.
        let mut head = LogLine::event("x")
            .kv("v", 1)
            .kv("birth", self.birth)
            .kv("tries", self.tries)
            .kv("next", self.next)
            .kv("priority", u8::from(self.priority))
            .kv("held", self.held);
        if let Some(since) = self.holdsince {
            head = head.kv("holdsince", since);
        }
        if let Some(from) = &self.from {
            head = head.kv("from", format!("<{from}>"));
        }
        if let Some(auth) = &self.auth {
            head = head.kv("auth", auth);
        }
        if self.trusted {
            head = head.kv("trusted", 1);
        }
        if self.bounced {
            head = head.kv("bounced", 1);
        }
        let mut out = head.as_str().trim_start_matches("event=x ").to_string();
        out.push('\n');
        for r in &self.rcpts {
            let mut last = r.last.clone();
            if last.len() > MAX_LAST {
                let mut cut = MAX_LAST;
                while !last.is_char_boundary(cut) {
                    cut -= 1;
                }
                last.truncate(cut);
            }
            let line = LogLine::event("x")
                .kv("rcpt", format!("<{}>", r.addr))
                .kv("kind", r.channel.name())
                .kv("status", r.status.name())
                .kv("tries", r.tries)
                .kv("last", last);
            out.push_str(line.as_str().trim_start_matches("event=x "));
            out.push('\n');
        }
        out
    }

    pub fn parse(text: &str) -> Result<State> {
        let bad = |why: &str| Error::perm(format!("bad state file: {why}"));
        let mut lines = text.lines();
        let head = logline::parse(lines.next().ok_or_else(|| bad("empty"))?);
        let num = |f: &[(String, String)], k: &str| -> Result<u64> {
            logline::get(f, k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(&format!("no {k}")))
        };
        if logline::get(&head, "v") != Some("1") {
            return Err(bad("unknown version"));
        }
        let mut st = State {
            birth: num(&head, "birth")?,
            tries: num(&head, "tries")? as u32,
            next: num(&head, "next")?,
            priority: logline::get(&head, "priority") == Some("1"),
            held: logline::get(&head, "held")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            holdsince: logline::get(&head, "holdsince").and_then(|v| v.parse().ok()),
            from: match logline::get(&head, "from") {
                None => None,
                Some(f) => Some(
                    f.strip_prefix('<')
                        .and_then(|a| a.strip_suffix('>'))
                        .ok_or_else(|| bad("from not in <>"))?
                        .to_string(),
                ),
            },
            auth: logline::get(&head, "auth").map(str::to_string),
            trusted: logline::get(&head, "trusted") == Some("1"),
            bounced: logline::get(&head, "bounced") == Some("1"),
            rcpts: Vec::new(),
        };
        for line in lines.filter(|l| !l.is_empty()) {
            let f = logline::parse(line);
            let addr = logline::get(&f, "rcpt").ok_or_else(|| bad("no rcpt"))?;
            let addr = addr
                .strip_prefix('<')
                .and_then(|a| a.strip_suffix('>'))
                .ok_or_else(|| bad("rcpt not in <>"))?;
            let channel = match logline::get(&f, "kind") {
                Some("local") => Channel::Local,
                Some("remote") => Channel::Remote,
                _ => return Err(bad("bad kind")),
            };
            let status = match logline::get(&f, "status") {
                Some("todo") => Status::Todo,
                Some("done") => Status::Done,
                Some("failed") => Status::Failed,
                Some("deferred") => Status::Deferred,
                _ => return Err(bad("bad status")),
            };
            st.rcpts.push(Rcpt {
                addr: addr.to_string(),
                channel,
                status,
                tries: num(&f, "tries")? as u32,
                last: logline::get(&f, "last").unwrap_or("").to_string(),
            });
        }
        if st.rcpts.is_empty() {
            return Err(bad("no recipients"));
        }
        Ok(st)
    }

    pub fn load(path: &Path) -> Result<State> {
        let text = fs::read_to_string(path).temp(format!("unable to read {}", path.display()))?;
        State::parse(&text).map_err(|e| e.context(path.display()))
    }

    /// Write `state/ID` by `state/.ID.tmp` + fsync + rename, then fsync `state/`: once
    /// this returns, a power cut cannot bring the old state back (and with it deliveries
    /// of recipients already done, or a second bounce).
    pub fn store(&self, dir: &Path, id: &str) -> Result<()> {
        self.store_with(dir, id, fsync_dir)
    }

    /// [`Self::store`] with the directory fsync given (tests watch it).
    fn store_with(
        &self,
        dir: &Path,
        id: &str,
        fsync: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<()> {
        self.store_unsynced(dir, id)?;
        fsync(dir).temp(format!("unable to fsync {}", dir.display()))
    }

    /// [`Self::store`] without the fsync of `state/`: for the takeover, which fsyncs the
    /// directory once per batch before any message of the batch moves to `mess/`.
    pub fn store_unsynced(&self, dir: &Path, id: &str) -> Result<()> {
        let tmp = dir.join(format!(".{id}.tmp"));
        let path = dir.join(id);
        let result = (|| -> std::io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.temp(format!("unable to write {}", path.display()))
    }

    /// Whether every recipient is done or failed.
    pub fn finished(&self) -> bool {
        !self.rcpts.iter().any(|r| r.status.pending())
    }
}

/// Integer square root.
pub fn isqrt(n: u64) -> u64 {
    let mut x = (n as f64).sqrt() as u64;
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x
}

/// qmail's retry schedule: `birth + (isqrt(now - birth) + skip)^2`, skip 10 for local
/// and 20 for remote deliveries.
pub fn next_try(birth: u64, now: u64, channel: Channel) -> u64 {
    let skip = match channel {
        Channel::Local => 10,
        Channel::Remote => 20,
    };
    let r = isqrt(now.saturating_sub(birth)) + skip;
    birth + r * r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_hostile_text() {
        let st = State {
            birth: 100,
            tries: 2,
            next: 500,
            priority: true,
            held: 30,
            holdsince: Some(400),
            from: Some("a \"b\"=c@x.test".into()),
            auth: Some("user name".into()),
            trusted: true,
            bounced: true,
            rcpts: vec![
                Rcpt {
                    addr: "a b@x.test".into(),
                    channel: Channel::Local,
                    status: Status::Done,
                    tries: 1,
                    last: String::new(),
                },
                Rcpt {
                    addr: "\"q=\\\"\"@y.test".into(),
                    channel: Channel::Remote,
                    status: Status::Deferred,
                    tries: 3,
                    last: "Connected but\nRemote host said: 451 \"later\"".into(),
                },
            ],
        };
        assert_eq!(State::parse(&st.render()).unwrap(), st);
        let null = State {
            from: Some(String::new()),
            auth: None,
            holdsince: None,
            trusted: false,
            bounced: false,
            ..st.clone()
        };
        assert_eq!(State::parse(&null.render()).unwrap(), null);
        // A state file of the first format: no held, from, auth.
        let old = State::parse(
            "v=1 birth=1 tries=0 next=1 priority=0\nrcpt=<a@x.test> kind=local status=todo tries=0 last=\"\"\n",
        )
        .unwrap();
        assert_eq!(
            (old.held, old.holdsince, old.from, old.auth),
            (0, None, None, None)
        );
        assert!(!old.trusted && !old.bounced);
        assert!(State::parse("v=2 birth=1 tries=0 next=1 priority=0\n").is_err());
        assert!(State::parse("v=1 birth=1 tries=0 next=1 priority=0\n").is_err());
    }

    /// Regression (`State::store` renamed without fsyncing `state/`): after a power cut
    /// the old state could come back and recipients already done were delivered again.
    /// The directory is fsynced after the rename, and a failed fsync is an error.
    #[test]
    fn state_store_renames_without_fsyncing_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = State::parse(
            "v=1 birth=1 tries=0 next=1 priority=0\nrcpt=<a@x.test> kind=local status=todo tries=0 last=\"\"\n",
        )
        .unwrap();
        st.store(dir.path(), "1.2.3").unwrap();
        st.rcpts[0].status = Status::Done;
        let mut synced = None;
        st.store_with(dir.path(), "1.2.3", |d| {
            // Called after the rename: the new state is in place.
            synced = Some((d.to_path_buf(), State::load(&d.join("1.2.3")).unwrap()));
            Ok(())
        })
        .unwrap();
        let (d, seen) = synced.expect("state/ was not fsynced");
        assert_eq!(d, dir.path());
        assert_eq!(seen.rcpts[0].status, Status::Done);
        let failed = st.store_with(dir.path(), "1.2.3", |_| {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        });
        assert!(failed.is_err(), "a failed fsync of state/ must not pass");
    }

    #[test]
    fn qmail_schedule() {
        assert_eq!(isqrt(0), 0);
        assert_eq!(isqrt(99), 9);
        assert_eq!(isqrt(100), 10);
        assert_eq!(next_try(1000, 1000, Channel::Local), 1100);
        assert_eq!(next_try(1000, 1100, Channel::Local), 1400);
        assert_eq!(next_try(1000, 1000, Channel::Remote), 1400);
        assert_eq!(next_try(1000, 1400, Channel::Remote), 2600);
    }
}
