//! `posternctl report --follow`: statistics in real time. It starts at the end of every
//! log's `current`, reads the lines appended since, and every `--interval` seconds prints
//! one line: what happened in the last interval, and in total since it started.
//!
//! A rotation is noticed by `current`'s inode changing: the rest of the old file is read
//! from the archive (or `previous`) that now has that inode, then the new `current` from
//! its start. A line still being written (no newline yet) waits for the next round.
//! SIGINT and SIGTERM are taken through a signalfd, so Ctrl-C ends it cleanly with exit 0.

use super::events::Category;
use super::logs::{self, LogFile};
use super::stats::{local_time, Stats};
use super::text::bytes;
use super::Options;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use postern_common::{Result, ResultExt};
use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where reading stopped in one log's `current`.
#[derive(Debug, Clone, Copy)]
struct Pos {
    ino: u64,
    offset: u64,
}

/// The read positions of every log directory.
pub struct Tail {
    home: PathBuf,
    pos: HashMap<PathBuf, Pos>,
}

impl Tail {
    /// Start at the end of every log's `current`: only new lines count.
    pub fn start(home: &Path) -> Result<Tail> {
        let mut pos = HashMap::new();
        for dir in logs::find(home)? {
            if let Ok(m) = fs::metadata(dir.path.join("current")) {
                pos.insert(
                    dir.path,
                    Pos {
                        ino: m.ino(),
                        offset: m.len(),
                    },
                );
            }
        }
        Ok(Tail {
            home: home.to_path_buf(),
            pos,
        })
    }

    /// The number of logs being watched.
    pub fn watched(&self) -> usize {
        self.pos.len()
    }

    /// Feed every complete line appended since the last call to `stats`.
    pub fn read_new(&mut self, stats: &mut Stats) -> Result<()> {
        for dir in logs::find(&self.home)? {
            let current = dir.path.join("current");
            let Ok(meta) = fs::metadata(&current) else {
                continue;
            };
            let mut each = |t: Option<i64>, line: &str| stats.add(&dir.name, t, line);
            let mut from = 0;
            match self.pos.get(&dir.path) {
                // A log that appeared since we started: all of it is new.
                None => {}
                Some(p) if p.ino == meta.ino() => from = p.offset,
                Some(p) => {
                    // Rotated: finish the old file under its new name.
                    let old = logs::files(&dir.path)?
                        .into_iter()
                        .filter(|f| f.path != current)
                        .find(|f| fs::metadata(&f.path).is_ok_and(|m| m.ino() == p.ino));
                    if let Some(old) = old {
                        logs::read_from(&old, p.offset, true, &mut each)?;
                    }
                }
            }
            if meta.len() < from {
                from = 0; // truncated by hand: start again
            }
            let file = LogFile {
                path: current,
                rotated: None,
            };
            let offset = logs::read_from(&file, from, false, &mut each)?;
            self.pos.insert(
                dir.path.clone(),
                Pos {
                    ino: meta.ino(),
                    offset,
                },
            );
        }
        Ok(())
    }
}

/// The numbers a summary line shows, taken from the running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub rejected: [u64; Category::ALL.len()],
}

impl Counts {
    pub fn of(stats: &Stats) -> Counts {
        Counts {
            in_msgs: stats.in_msgs,
            in_bytes: stats.in_bytes,
            out_msgs: stats.out_msgs,
            rejected: stats.rejected,
        }
    }

    /// What was added since `before`.
    pub fn since(&self, before: &Counts) -> Counts {
        let mut rejected = self.rejected;
        for (r, b) in rejected.iter_mut().zip(before.rejected.iter()) {
            *r -= b;
        }
        Counts {
            in_msgs: self.in_msgs - before.in_msgs,
            in_bytes: self.in_bytes - before.in_bytes,
            out_msgs: self.out_msgs - before.out_msgs,
            rejected,
        }
    }

    fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    fn rejected_words(&self) -> String {
        let parts: Vec<String> = Category::ALL
            .iter()
            .filter(|c| self.rejected[c.index()] > 0)
            .map(|c| format!("{} {}", c.word(), self.rejected[c.index()]))
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(" [{}]", parts.join(", "))
        }
    }
}

/// The one line printed per interval.
pub fn summary(
    now: i64,
    interval: u64,
    window: &Counts,
    total: &Counts,
    started: i64,
    queue: Option<super::stats::Queue>,
) -> String {
    let queue = match queue {
        Some(q) => format!("queue {}", q.total),
        None => "queue ?".to_string(),
    };
    format!(
        "{}  last {interval}s: in {} ({}), out {}, rejected {}{}  |  since {}: in {}, out {}, rejected {}  |  {queue}",
        local_time(now, "%H:%M:%S"),
        window.in_msgs,
        bytes(window.in_bytes),
        window.out_msgs,
        window.total_rejected(),
        window.rejected_words(),
        local_time(started, "%H:%M:%S"),
        total.in_msgs,
        total.out_msgs,
        total.total_rejected(),
    )
}

/// Run until SIGINT or SIGTERM.
pub fn run(opts: &Options) -> Result<()> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()
        .temp("unable to block SIGINT and SIGTERM")?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .temp("unable to make a signalfd")?;

    let mut tail = Tail::start(&opts.home)?;
    let started = chrono::Utc::now().timestamp();
    let mut out = std::io::stdout().lock();
    let hello = format!(
        "posternctl report: following {} logs in {}, a line every {}s; Ctrl-C stops\n",
        tail.watched(),
        opts.home.join("log").display(),
        opts.interval
    );
    if out
        .write_all(hello.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return Ok(()); // nobody is reading
    }
    // One running count, so a message's size (from `new`) and an auth failure's two lines
    // are paired even when they fall in different intervals; a line's numbers are the
    // difference since the last one.
    let mut total = Stats::default();
    let mut before = Counts::default();
    let interval = Duration::from_secs(opts.interval);
    let mut next = Instant::now() + interval;
    loop {
        let left = next.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) if n > 0 => return Ok(()), // SIGINT or SIGTERM: a clean stop
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).temp("unable to wait"),
        }
        if Instant::now() < next {
            continue;
        }
        next += interval;
        tail.read_new(&mut total)?;
        let now = Counts::of(&total);
        let line = summary(
            chrono::Utc::now().timestamp(),
            opts.interval,
            &now.since(&before),
            &now,
            started,
            super::queue_size(&opts.home),
        );
        before = now;
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_the_refusals() {
        let mut s = Stats::default();
        s.add("smtpd", Some(0), "event=accept size=500 from=<a@b>");
        let before = Counts::of(&s);
        s.add("smtpd", Some(0), "event=accept size=2000 from=<a@b>");
        s.add("smtpd", Some(0), "event=reject ip=192.0.2.1 reason=relay");
        s.add(
            "smtpd",
            Some(0),
            "event=rbl ip=192.0.2.1 result=listed zone=z",
        );
        let now = Counts::of(&s);
        let line = summary(0, 5, &now.since(&before), &now, 0, None);
        assert!(
            line.contains("last 5s: in 1 (2.0 kB), out 0, rejected 2 [relay 1, rbl 1]"),
            "{line}"
        );
        assert!(line.contains("in 2, out 0, rejected 2"), "{line}");
        assert!(line.ends_with("queue ?"), "{line}");
    }
}
