//! `posternctl report --follow`: statistics in real time. It starts at the end of every
//! log's `current`, reads the lines appended since, and every `--interval` seconds prints
//! one line: what happened in the last interval, and in total since it started.
//!
//! Each log is read by [`postern_common::follow::Follower`], the follower postern-ratelimit
//! uses: across rotations without losing or repeating a line, and a line still being
//! written (no newline yet) waits for the next round.
//! SIGINT and SIGTERM are taken through a signalfd, so Ctrl-C ends it cleanly with exit 0.

use super::events::Category;
use super::logs;
use super::stats::{local_time, Stats};
use super::text::bytes;
use super::Options;
use nix::poll::PollFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use postern_common::deadline;
use postern_common::follow::Follower;
use postern_common::{Result, ResultExt};
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The followers of every log directory.
pub struct Tail {
    home: PathBuf,
    logs: HashMap<PathBuf, Follower>,
}

impl Tail {
    /// Start at the end of every log's `current`: only new lines count.
    pub fn start(home: &Path) -> Result<Tail> {
        let logs = logs::find(home)?
            .into_iter()
            .map(|dir| {
                let follower = Follower::at_end(&dir.path).quiet();
                (dir.path, follower)
            })
            .collect();
        Ok(Tail {
            home: home.to_path_buf(),
            logs,
        })
    }

    /// The number of logs being watched (those with a `current` at the start).
    pub fn watched(&self) -> usize {
        self.logs
            .values()
            .filter(|f| f.position().is_some())
            .count()
    }

    /// Feed every complete line appended since the last call to `stats`.
    pub fn read_new(&mut self, stats: &mut Stats) -> Result<()> {
        for dir in logs::find(&self.home)? {
            // A log that appeared since we started: all of it is new.
            let follower = self
                .logs
                .entry(dir.path.clone())
                .or_insert_with(|| Follower::new(&dir.path, None).quiet());
            follower.poll(&mut |line| {
                let (t, rest) = logs::split_stamp(line);
                stats.add(&dir.name, t, rest);
            })?;
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
        if deadline::wait_until(&signals, PollFlags::POLLIN, next).temp("unable to wait")? {
            return Ok(()); // SIGINT or SIGTERM: a clean stop
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

    /// Lines written while the report reads, with multilog's rotations in between, are
    /// each counted once (the old reader opened `current` by name after looking at it,
    /// and lost a file rotated in between).
    #[test]
    fn lines_written_during_rotations_are_counted_once() {
        use std::fs;
        use std::io::Write;
        const LINES: usize = 20_000;
        for round in 0..4 {
            let home = postern_testkit::tempdir();
            let dir = home.path().join("log/smtpd");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("current"), "event=accept before=1\n").unwrap();
            let mut tail = Tail::start(home.path()).unwrap();
            assert_eq!(tail.watched(), 1);
            let mut stats = Stats::default();
            let every = LINES / (2 + round) + round;
            let writer = {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let current = dir.join("current");
                    let open = || {
                        fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&current)
                            .unwrap()
                    };
                    let mut file = open();
                    for i in 0..LINES {
                        file.write_all(format!("event=accept n={i}\n").as_bytes())
                            .unwrap();
                        if i % every == every - 1 {
                            drop(file);
                            let label = postern_common::tai64n::Tai64n::now().label();
                            fs::rename(&current, dir.join(format!("{label}.s"))).unwrap();
                            file = open();
                        }
                    }
                })
            };
            while !writer.is_finished() {
                tail.read_new(&mut stats).unwrap();
            }
            writer.join().unwrap();
            tail.read_new(&mut stats).unwrap();
            assert_eq!(stats.lines, LINES as u64, "round {round}");
        }
    }
}
