//! `postern-multilog`: daemontools 0.76's multilog. It reads log lines on
//! stdin and runs its arguments — the script — over each line: stamp it (`t`), select
//! or deselect it by pattern (`+`/`-`), copy it to stderr (`e`), keep it in a status
//! file (`=`), and append it to rotated log directories, optionally post-processed
//! (`!`), with size and count limits (`s`, `n`).
//!
//! Guarantees: a line is never dropped or duplicated; a full or failing disk makes
//! multilog pause and retry (and its writer block on the pipe) instead; `current` is
//! 0744 only after a clean exit (EOF, or TERM at a line boundary), and the next start
//! archives an incomplete one as `.u`.
//!
//! Modules, one concern each:
//! - [`script`]: the arguments as actions and directory settings.
//! - [`pattern`]: the `*` pattern matcher.
//! - [`line`]: input cut into lines (head ≤ 1000 bytes, streamed tail).
//! - [`logdir`]: a locked log directory: recovery, writes, rotation, clean close.
//! - [`archive`]: `@TAI64N.s`/`.u` archive names and trimming to `n` files.
//! - [`processor`]: the `!processor` protocol (fds 0, 1, 4, 5).
//! - [`status`]: `=file` status files and `e` copies.
//! - [`signals`]: TERM and ALRM via a signalfd.
//! - [`retry`]: warn, pause, try again.

pub mod archive;
pub mod line;
pub mod logdir;
pub mod pattern;
pub mod processor;
pub mod retry;
pub mod script;
pub mod signals;
pub mod status;

use line::{Sink, Splitter};
use logdir::LogDir;
use nix::errno::Errno;
use nix::sys::stat::{umask, Mode};
use postern_common::tai64n::Tai64n;
use postern_common::{getopt, Error, Result};
use script::Action;
use signals::Signals;
use status::{stderr_copy, StatusFile};
use std::io::{self, Write};
use std::os::fd::AsFd;

/// Bytes read from stdin at a time.
pub const INPUT_CHUNK: usize = 16 * 1024;

/// Run `postern-multilog` with the process's arguments.
pub fn main() -> Result<()> {
    let script = script::parse(&getopt::args())?;
    umask(Mode::from_bits_truncate(0o022));
    let signals = Signals::install()?;
    let status = script
        .status_files
        .iter()
        .map(|p| StatusFile::open(p.clone()))
        .collect::<Result<Vec<_>>>()?;
    let dirs = script
        .dirs
        .iter()
        .map(|d| LogDir::open(d.clone()))
        .collect::<Result<Vec<_>>>()?;
    let selected = vec![false; dirs.len()];
    let mut runner = Runner {
        actions: script.actions,
        status,
        dirs,
        selected,
    };
    let result = run(&mut runner, script.timestamp, &signals);
    for dir in &mut runner.dirs {
        dir.close();
    }
    result
}

/// The main loop: read, split, act; notice signals only between lines.
fn run(runner: &mut Runner, timestamp: bool, signals: &Signals) -> Result<()> {
    let mut splitter = Splitter::default();
    let mut stamp = move || {
        if !timestamp {
            return Vec::new();
        }
        let mut s = Tai64n::now().label().into_bytes();
        s.push(b' ');
        s
    };
    let stdin = io::stdin();
    let mut buf = vec![0u8; INPUT_CHUNK];
    let (mut exit_asap, mut rotate_asap) = (false, false);
    loop {
        let got = signals.take();
        exit_asap |= got.term;
        rotate_asap |= got.alarm;
        if splitter.at_boundary() {
            if rotate_asap {
                runner.dirs.iter_mut().for_each(LogDir::rotate_if_nonempty);
                rotate_asap = false;
            }
            if exit_asap {
                return Ok(());
            }
        }
        if !signals.wait(stdin.as_fd())? {
            continue;
        }
        let n = match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(e) => {
                splitter.finish(runner);
                return Err(Error::temp(format!(
                    "unable to read standard input: {}",
                    e.desc().to_lowercase()
                )));
            }
        };
        if n == 0 {
            splitter.finish(runner);
            return Ok(());
        }
        splitter.feed(&buf[..n], &mut stamp, runner);
        runner.dirs.iter_mut().for_each(LogDir::flush);
    }
}

/// Runs the script's actions over each line.
struct Runner {
    actions: Vec<Action>,
    status: Vec<StatusFile>,
    dirs: Vec<LogDir>,
    /// Per directory: whether the line being read goes there.
    selected: Vec<bool>,
}

impl Runner {
    fn send_selected(&mut self, bytes: &[u8]) {
        for (dir, _) in self
            .dirs
            .iter_mut()
            .zip(&self.selected)
            .filter(|(_, s)| **s)
        {
            dir.push(bytes);
            if dir.buffer_full() {
                dir.flush();
            }
        }
    }
}

impl Sink for Runner {
    fn head(&mut self, head: &[u8]) {
        let mut selected = true;
        for action in &self.actions {
            match action {
                Action::Select(p) => selected = selected || pattern::matches(p, head),
                Action::Deselect(p) => selected = selected && !pattern::matches(p, head),
                Action::Stderr if selected => {
                    // stderr trouble must not stop logging.
                    let _ = io::stderr().write_all(&stderr_copy(head));
                }
                Action::Status(i) if selected => self.status[*i].write(head),
                Action::Dir(i) => self.selected[*i] = selected,
                Action::Stderr | Action::Status(_) => {}
            }
        }
        self.send_selected(head);
    }

    fn tail(&mut self, bytes: &[u8]) {
        self.send_selected(bytes);
    }

    fn end(&mut self) {
        self.send_selected(b"\n");
    }
}
