//! `postern-svscan [DIR]`: start and keep running one `postern-supervise` per service
//! directory in DIR (default: the current directory), plus one for its `log/`, joined by
//! a pipe.
//!
//! Every [`SCAN_INTERVAL`] (and at once on SIGHUP or SIGALRM) it scans: names starting
//! with `.` are skipped, `stat` follows symlinks, non-directories are skipped, and a
//! service is known by its (device, inode), so renaming a symlink restarts nothing. For a
//! service with `log`, svscan makes one pipe and keeps both ends for as long as the entry
//! lives, so neither side loses output when the other restarts. A supervise that died is
//! started again at the next scan. An entry whose directory went away is forgotten, and
//! its pipe closed, only once both its supervise processes are gone.
//!
//! Unlike 0.76, which has no signal handling, SIGTERM and SIGINT stop everything: `dx`
//! to each service's supervise; once a service's supervise has exited, svscan closes its
//! end of the log pipe and sends `x` to the log's supervise, so the logger reads the last
//! lines and then end-of-file; `dx` follows after [`LOG_DRAIN`]. After
//! [`SHUTDOWN_TIMEOUT`] (or a second TERM/INT) what remains gets SIGKILL, process group
//! by process group. Each supervise runs in its own process group, so a Ctrl-C on the
//! terminal reaches svscan alone and the orderly stop above happens.
#![forbid(unsafe_code)]

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use postern_common::exit::{describe_io, warn, Error, Result, ResultExt};
use postern_common::logline::LogLine;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROG: &str = "postern-svscan";
const USAGE: &str = "postern-svscan [dir]";
/// The supervise program's name, looked for next to svscan first, then on `$PATH`.
pub const SUPERVISE: &str = "postern-supervise";
/// Time between scans.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(5);
/// Most services svscan watches at once (0.76's limit).
pub const MAX_SERVICES: usize = 1000;
/// On shutdown, how long a logger gets to drain its pipe after `x` before `dx`.
pub const LOG_DRAIN: Duration = Duration::from_secs(2);
/// On shutdown, how long everything gets before SIGKILL.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// While shutting down, how often unanswered commands are tried again.
const SHUTDOWN_TICK: Duration = Duration::from_millis(100);

/// One service directory and its supervise processes.
struct Entry {
    dev: u64,
    ino: u64,
    name: OsString,
    /// Seen in the latest scan.
    active: bool,
    main: Option<Pid>,
    log: Option<Pid>,
    /// `(read, write)` ends of the pipe from the service to its logger.
    pipe: Option<(OwnedFd, OwnedFd)>,
}

impl Entry {
    fn label(&self) -> String {
        Path::new(&self.name).display().to_string()
    }
}

struct Scanner {
    supervise: PathBuf,
    entries: Vec<Entry>,
}

/// Entry point: `postern-svscan [DIR]`.
pub fn main() -> Result<()> {
    let args = postern_common::getopt::args();
    let (_, operands) = postern_common::getopt::parse(&args, "", USAGE)?;
    if operands.len() > 1 {
        return Err(Error::usage(USAGE));
    }
    let signals = block_signals()?;
    if let Some(dir) = operands.first() {
        std::env::set_current_dir(dir)
            .temp(format!("unable to chdir to {}", Path::new(dir).display()))?;
    }
    let mut scanner = Scanner {
        supervise: find_supervise(),
        entries: Vec::new(),
    };
    scanner.run(&signals)
}

/// `postern-supervise` next to our own executable if it is there, else the bare name
/// for `$PATH` to resolve.
pub fn find_supervise() -> PathBuf {
    postern_common::sibling::program(SUPERVISE)
}

fn block_signals() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGALRM,
        Signal::SIGTERM,
        Signal::SIGINT,
    ] {
        mask.add(sig);
    }
    mask.thread_block().temp("unable to block signals")?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .temp("unable to create signalfd")
}

/// What the signals since the last look ask for.
#[derive(Default)]
struct Wake {
    rescan: bool,
    stop: bool,
}

fn take_signals(signals: &SignalFd) -> Wake {
    let mut wake = Wake::default();
    while let Ok(Some(info)) = signals.read_signal() {
        match info.ssi_signo as i32 {
            libc::SIGHUP | libc::SIGALRM => wake.rescan = true,
            libc::SIGTERM | libc::SIGINT => wake.stop = true,
            _ => {}
        }
    }
    wake
}

/// Wait until a signal arrives or `timeout` passes.
fn wait_for_signal(signals: &SignalFd, timeout: Duration) -> Result<()> {
    let millis = timeout.as_nanos().div_ceil(1_000_000);
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(Error::temp(format!("unable to poll: {}", e.desc()))),
    }
}

/// Write `bytes` to `dir/supervise/control`; false if no supervise reads it yet.
fn control(dir: &Path, bytes: &[u8]) -> bool {
    match crate::svok::open_fifo_write(&dir.join("supervise/control")) {
        Ok(mut fifo) => fifo.write_all(bytes).is_ok(),
        Err(_) => false,
    }
}

impl Scanner {
    fn run(&mut self, signals: &SignalFd) -> Result<()> {
        loop {
            self.reap();
            self.scan();
            let next = Instant::now() + SCAN_INTERVAL;
            loop {
                let now = Instant::now();
                if now >= next {
                    break;
                }
                wait_for_signal(signals, next - now)?;
                let wake = take_signals(signals);
                self.reap();
                if wake.stop {
                    self.shutdown(signals)?;
                    return Ok(());
                }
                if wake.rescan {
                    break;
                }
            }
        }
    }

    /// Collect exited supervise processes and mark their slots free.
    fn reap(&mut self) {
        loop {
            let pid = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => pid,
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            for e in &mut self.entries {
                if e.main == Some(pid) {
                    e.main = None;
                }
                if e.log == Some(pid) {
                    e.log = None;
                }
            }
        }
    }

    fn scan(&mut self) {
        for e in &mut self.entries {
            e.active = false;
        }
        let dir = match std::fs::read_dir(".") {
            Ok(d) => d,
            Err(e) => {
                warn(
                    PROG,
                    format!("unable to read directory: {}", describe_io(&e)),
                );
                return;
            }
        };
        for item in dir {
            let Ok(item) = item else { continue };
            let name = item.file_name();
            if name.as_bytes().first() == Some(&b'.') {
                continue;
            }
            self.consider(name);
        }
        // Forget entries that went away once both supervise processes are gone (their
        // pipe closes as the entry drops).
        self.entries
            .retain(|e| e.active || e.main.is_some() || e.log.is_some());
    }

    fn consider(&mut self, name: OsString) {
        let label = Path::new(&name).display().to_string();
        let meta = match std::fs::metadata(&name) {
            Ok(m) => m,
            Err(e) => {
                warn(PROG, format!("unable to stat {label}: {}", describe_io(&e)));
                return;
            }
        };
        if !meta.is_dir() {
            return;
        }
        let at = match self
            .entries
            .iter()
            .position(|e| e.dev == meta.dev() && e.ino == meta.ino())
        {
            Some(i) => i,
            None => {
                if self.entries.len() >= MAX_SERVICES {
                    warn(
                        PROG,
                        format!("unable to start {label}: running too many services"),
                    );
                    return;
                }
                let pipe = if std::fs::metadata(Path::new(&name).join("log")).is_ok() {
                    match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            warn(
                                PROG,
                                format!("unable to create pipe for {label}: {}", e.desc()),
                            );
                            return;
                        }
                    }
                } else {
                    None
                };
                self.entries.push(Entry {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    name: name.clone(),
                    active: false,
                    main: None,
                    log: None,
                    pipe,
                });
                self.entries.len() - 1
            }
        };
        let supervise = self.supervise.clone();
        let entry = &mut self.entries[at];
        entry.active = true;
        entry.name = name;
        start(&supervise, entry);
    }

    /// Stop every service (main ones first, each log after its service), then return
    /// once no supervise is left.
    fn shutdown(&mut self, signals: &SignalFd) -> Result<()> {
        LogLine::event("shutdown")
            .kv("services", self.entries.len())
            .emit();
        let started = Instant::now();
        let mut main_told = vec![false; self.entries.len()];
        // When each log was sent `x`, and whether it got `dx` yet.
        let mut log_told: Vec<Option<Instant>> = vec![None; self.entries.len()];
        let mut log_downed = vec![false; self.entries.len()];
        loop {
            self.reap();
            let now = Instant::now();
            for (i, e) in self.entries.iter_mut().enumerate() {
                let dir = Path::new(&e.name);
                if let Some(_pid) = e.main {
                    if !main_told[i] {
                        main_told[i] = control(dir, b"dx");
                    }
                    continue;
                }
                // The service is down: the logger gets end-of-file once its buffer
                // drains (nobody else holds the pipe's write end now).
                if let Some((_, write)) = e.pipe.take() {
                    drop(write);
                }
                if e.log.is_some() {
                    let log_dir = dir.join("log");
                    match log_told[i] {
                        None => {
                            if control(&log_dir, b"x") {
                                log_told[i] = Some(now);
                            }
                        }
                        Some(when) if !log_downed[i] && now.duration_since(when) >= LOG_DRAIN => {
                            log_downed[i] = control(&log_dir, b"dx");
                        }
                        Some(_) => {}
                    }
                }
            }
            if self
                .entries
                .iter()
                .all(|e| e.main.is_none() && e.log.is_none())
            {
                return Ok(());
            }
            let forced = take_signals(signals).stop;
            if forced || started.elapsed() >= SHUTDOWN_TIMEOUT {
                self.kill_all();
                return Ok(());
            }
            wait_for_signal(signals, SHUTDOWN_TICK)?;
        }
    }

    /// Last resort: SIGKILL each remaining supervise's process group (its services are in
    /// it unless they made their own), then reap.
    fn kill_all(&mut self) {
        let pids: Vec<Pid> = self
            .entries
            .iter()
            .flat_map(|e| [e.main, e.log])
            .flatten()
            .collect();
        for &pid in &pids {
            LogLine::event("kill").kv("pid", pid).emit();
            let _ = killpg(pid, Signal::SIGKILL);
        }
        for pid in pids {
            let _ = waitpid(pid, None);
        }
    }
}

/// Start whichever of the entry's supervise processes is not running.
fn start(supervise: &Path, entry: &mut Entry) {
    if entry.main.is_none() {
        let mut cmd = Command::new(supervise);
        cmd.arg(&entry.name).process_group(0);
        if let Some((_, write)) = &entry.pipe {
            match write.try_clone() {
                Ok(w) => {
                    cmd.stdout(Stdio::from(w));
                }
                Err(e) => {
                    warn(
                        PROG,
                        format!("unable to start {}: {}", entry.label(), describe_io(&e)),
                    );
                    return;
                }
            }
        }
        entry.main = spawn(&mut cmd, &entry.label());
    }
    if entry.log.is_none() {
        if let Some((read, _)) = &entry.pipe {
            let read = match read.try_clone() {
                Ok(r) => r,
                Err(e) => {
                    warn(
                        PROG,
                        format!("unable to start {}/log: {}", entry.label(), describe_io(&e)),
                    );
                    return;
                }
            };
            let mut cmd = Command::new(supervise);
            cmd.arg("log")
                .current_dir(&entry.name)
                .stdin(Stdio::from(read))
                .process_group(0);
            entry.log = spawn(&mut cmd, &format!("{}/log", entry.label()));
        }
    }
}

fn spawn(cmd: &mut Command, label: &str) -> Option<Pid> {
    match postern_common::sys::with_default_signals(cmd).spawn() {
        Ok(child) => Some(Pid::from_raw(child.id() as i32)),
        Err(e) => {
            warn(
                PROG,
                format!("unable to start supervise {label}: {}", describe_io(&e)),
            );
            None
        }
    }
}
