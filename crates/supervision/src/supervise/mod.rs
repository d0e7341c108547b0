//! `postern-supervise DIR`: start `DIR/run`, restart it when it exits, obey the control
//! FIFO — daemontools 0.76 on disk, so the classic svc/svstat/svok
//! drive it and ours drive the classic supervise.
//!
//! The loop waits in `poll` on two descriptors: a signalfd (SIGCHLD, and TERM/INT which
//! mean `dx`) and the control FIFO. Nothing is polled on a timer except the few
//! deadlines below (the restart gap and the finish limit).
//!
//! Differences from 0.76, on purpose:
//! - `./finish EXITCODE SIGNAL` runs after `./run` exits (as runit and s6 do), for at
//!   most [`FINISH_TIMEOUT`]; the service shows as down meanwhile.
//! - The one-second restart gap is kept as "no start sooner than [`RESTART_GAP`] after
//!   the previous one" instead of a blind sleep, so commands are obeyed at once.
//! - `./run` that cannot be executed counts as a run that exited 111 (0.76's child exits
//!   111), without a pid ever showing in the status.
//! - SIGTERM and SIGINT to supervise itself act like `svc -dx`.
#![forbid(unsafe_code)]

pub(crate) use crate::status::{Status, WANT_DOWN, WANT_ONCE, WANT_UP};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use postern_common::exit::{Error, Result, ResultExt};
use postern_common::lock::{self, Lock};
use postern_common::logline::LogLine;
use postern_common::sys::with_default_signals;
use postern_common::tai64n::Tai64n;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PROG: &str = "postern-supervise";
const USAGE: &str = "postern-supervise dir";

/// No start of `./run` sooner than this after the previous one (0.76 sleeps 1 s).
pub const RESTART_GAP: Duration = Duration::from_secs(1);
/// When the kernel cannot fork, try again after this long (as 0.76 does).
pub const FORK_RETRY: Duration = Duration::from_secs(60);
/// How long `./finish` may run before it is killed.
pub const FINISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest single wait when there is nothing to time (0.76's 3600 s).
pub const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// Exit code that stands for "`./run` could not be executed".
pub const EXEC_FAILED: i32 = 111;
/// Control bytes read per wake-up (each is one command; more wait for the next read).
const CONTROL_CHUNK: usize = 64;

/// What the service's process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Process {
    /// Nothing runs.
    Idle,
    /// `./run` runs as this pid.
    Running(Pid),
    /// `./finish` runs as this pid, until `deadline` (then it gets KILL).
    Finishing {
        pid: Pid,
        deadline: Instant,
        killed: bool,
    },
}

/// The open files that make up the on-disk interface, held for supervise's whole life.
struct Handles {
    /// `supervise/lock`, flocked: dropping it releases the lock.
    _lock: Lock,
    /// `supervise/control`, read end (non-blocking).
    control: File,
    /// Our own write end of the control FIFO, so reads never see end-of-file.
    _control_writer: File,
    /// `supervise/ok`, read end: its presence tells clients supervise runs.
    _ok: File,
}

struct Supervisor {
    /// The directory as given, for messages.
    name: String,
    want: u8,
    paused: bool,
    exit_requested: bool,
    /// A start was asked for (or is due) but has not happened yet.
    start_pending: bool,
    process: Process,
    /// The stamp of the last pid change.
    stamp: Tai64n,
    /// No start before this moment (restart gap, fork retry).
    next_start: Instant,
}

/// Entry point: `postern-supervise DIR`.
pub fn main() -> Result<()> {
    let args = postern_common::getopt::args();
    let (_, operands) = postern_common::getopt::parse(&args, "", USAGE)?;
    let [dir] = operands.as_slice() else {
        return Err(Error::usage(USAGE));
    };
    supervise(dir)
}

/// Supervise the service directory `dir` until told to exit.
pub fn supervise(dir: &OsString) -> Result<()> {
    let name = Path::new(dir).display().to_string();
    let signals = block_signals()?;
    std::env::set_current_dir(dir).temp(format!("unable to chdir to {name}"))?;
    let want = match fs::metadata("down") {
        Ok(_) => WANT_DOWN,
        Err(e) if e.kind() == io::ErrorKind::NotFound => WANT_UP,
        Err(e) => return Err(Error::io(format!("unable to stat {name}/down"), &e)),
    };
    let mut sup = Supervisor {
        name,
        want,
        paused: false,
        exit_requested: false,
        start_pending: want == WANT_UP,
        process: Process::Idle,
        stamp: Tai64n::now(),
        next_start: Instant::now(),
    };
    let handles = sup.open_handles()?;
    sup.run_loop(&signals, &handles)
}

/// Block the signals we take through the signalfd (the child gets a clean mask: std's
/// `Command` resets it before exec).
fn block_signals() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        mask.add(sig);
    }
    mask.thread_block().temp("unable to block signals")?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .temp("unable to create signalfd")
}

fn make_fifo(path: &str) -> nix::Result<()> {
    match nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)) {
        Err(Errno::EEXIST) => Ok(()),
        other => other,
    }
}

impl Supervisor {
    /// Set up `supervise/` in 0.76's order: mkdir, lock, control FIFO, first status,
    /// ok FIFO.
    fn open_handles(&mut self) -> Result<Handles> {
        let name = self.name.clone();
        // Errors are ignored, as 0.76 does: a symlink to a directory works too.
        let _ = DirBuilder::new().mode(0o700).create("supervise");
        // flock(LOCK_EX|LOCK_NB), the lock C supervise takes.
        let lock_file = lock::open(Path::new("supervise/lock"), 0o600)
            .temp(format!("unable to open {name}/supervise/lock"))?;
        let lock = Lock::try_take(lock_file)
            .temp(format!("unable to acquire {name}/supervise/lock"))?
            .map_err(|_| {
                Error::temp(format!(
                    "unable to acquire {name}/supervise/lock: another supervise holds it"
                ))
            })?;
        make_fifo("supervise/control")
            .temp(format!("unable to create {name}/supervise/control"))?;
        let control = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("supervise/control")
            .temp(format!("unable to read {name}/supervise/control"))?;
        let control_writer = crate::svok::open_fifo_write(Path::new("supervise/control"))
            .temp(format!("unable to write {name}/supervise/control"))?;
        self.announce();
        make_fifo("supervise/ok").temp(format!("unable to create {name}/supervise/ok"))?;
        let ok = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("supervise/ok")
            .temp(format!("unable to read {name}/supervise/ok"))?;
        Ok(Handles {
            _lock: lock,
            control,
            _control_writer: control_writer,
            _ok: ok,
        })
    }

    fn run_loop(&mut self, signals: &SignalFd, handles: &Handles) -> Result<()> {
        loop {
            if self.process == Process::Idle
                && self.start_pending
                && Instant::now() >= self.next_start
            {
                self.start();
            }
            if self.exit_requested && self.process == Process::Idle && !self.start_pending {
                return Ok(());
            }
            let timeout = self.timeout();
            let mut fds = [
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(handles.control.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::temp(format!("unable to poll: {}", e.desc()))),
            }
            self.take_signals(signals);
            self.reap();
            self.check_finish_deadline();
            self.read_commands(&handles.control);
        }
    }

    /// How long to wait for the next event: until a due start or the finish deadline.
    fn timeout(&self) -> PollTimeout {
        let now = Instant::now();
        let mut wait = IDLE_WAIT;
        if self.process == Process::Idle && self.start_pending {
            wait = wait.min(self.next_start.saturating_duration_since(now));
        }
        if let Process::Finishing {
            deadline,
            killed: false,
            ..
        } = self.process
        {
            wait = wait.min(deadline.saturating_duration_since(now));
        }
        // Round up so we do not wake a moment early and spin.
        let millis = wait.as_nanos().div_ceil(1_000_000);
        PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
    }

    fn take_signals(&mut self, signals: &SignalFd) {
        while let Ok(Some(info)) = signals.read_signal() {
            let signo = info.ssi_signo as i32;
            if signo == libc::SIGTERM || signo == libc::SIGINT {
                self.command(b'd');
                self.command(b'x');
            }
            // SIGCHLD needs nothing here: reap() runs after every wake-up.
        }
    }

    /// Collect every exited child: `./run` or `./finish`.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let (pid, code, signal) = match status {
                WaitStatus::Exited(pid, code) => (pid, code, 0),
                WaitStatus::Signaled(pid, sig, _) => (pid, -1, sig as i32),
                _ => continue,
            };
            match self.process {
                Process::Running(p) if p == pid => self.run_exited(code, signal),
                Process::Finishing { pid: p, .. } if p == pid => self.finish_done(),
                _ => {}
            }
        }
    }

    /// `./run` is gone (or never ran): record it, then run `./finish` if there is one.
    fn run_exited(&mut self, code: i32, signal: i32) {
        self.process = Process::Idle;
        self.stamp = Tai64n::now();
        self.announce();
        match fs::metadata("finish") {
            Ok(_) => match with_default_signals(
                Command::new("./finish")
                    .arg(code.to_string())
                    .arg(signal.to_string()),
            )
            .spawn()
            {
                Ok(child) => {
                    let pid = Pid::from_raw(child.id() as i32);
                    let deadline = Instant::now() + FINISH_TIMEOUT;
                    self.process = Process::Finishing {
                        pid,
                        deadline,
                        killed: false,
                    };
                    return;
                }
                Err(e) => self.log_failure("finish_failed", &e),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => self.log_failure("finish_failed", &e),
        }
        self.finish_done();
    }

    /// The run/finish cycle is over: restart if the service should be up.
    fn finish_done(&mut self) {
        self.process = Process::Idle;
        if self.want == WANT_UP && !self.exit_requested {
            self.start_pending = true;
        }
    }

    fn check_finish_deadline(&mut self) {
        if let Process::Finishing {
            pid,
            deadline,
            killed: false,
        } = self.process
        {
            if Instant::now() >= deadline {
                LogLine::event("finish_killed")
                    .kv("service", &self.name)
                    .kv("pid", pid)
                    .kv("timeout", FINISH_TIMEOUT.as_secs())
                    .emit();
                let _ = kill(pid, Signal::SIGKILL);
                self.process = Process::Finishing {
                    pid,
                    deadline,
                    killed: true,
                };
            }
        }
    }

    /// Start `./run` now.
    fn start(&mut self) {
        self.start_pending = false;
        let now = Instant::now();
        self.next_start = now + RESTART_GAP;
        match with_default_signals(&mut Command::new("./run")).spawn() {
            Ok(child) => {
                self.process = Process::Running(Pid::from_raw(child.id() as i32));
                self.paused = false;
                self.stamp = Tai64n::now();
                self.announce();
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOMEM)) => {
                self.log_failure("fork_failed", &e);
                self.next_start = now + FORK_RETRY;
                self.start_pending = true;
            }
            Err(e) => {
                self.log_failure("exec_failed", &e);
                self.run_exited(EXEC_FAILED, 0);
            }
        }
    }

    fn log_failure(&self, event: &str, err: &io::Error) {
        LogLine::event(event)
            .kv("service", &self.name)
            .kv("error", postern_common::exit::describe_io(err))
            .emit();
    }

    fn read_commands(&mut self, control: &File) {
        let mut buf = [0u8; CONTROL_CHUNK];
        let mut reader = control;
        if let Ok(n) = reader.read(&mut buf) {
            for &b in &buf[..n] {
                self.command(b);
            }
        }
    }

    fn running_pid(&self) -> Option<Pid> {
        match self.process {
            Process::Running(pid) => Some(pid),
            _ => None,
        }
    }

    fn signal(&self, sig: Signal) {
        if let Some(pid) = self.running_pid() {
            let _ = kill(pid, sig);
        }
    }

    /// Obey one control byte; unknown bytes are ignored.
    fn command(&mut self, byte: u8) {
        match byte {
            b'u' => {
                self.want = WANT_UP;
                self.announce();
                if self.running_pid().is_none() {
                    self.start_pending = true;
                }
            }
            b'd' => {
                self.want = WANT_DOWN;
                self.start_pending = false;
                if self.running_pid().is_some() {
                    self.signal(Signal::SIGTERM);
                    self.signal(Signal::SIGCONT);
                }
                self.paused = false;
                self.announce();
            }
            b'o' => {
                self.want = WANT_ONCE;
                self.announce();
                if self.running_pid().is_none() {
                    self.start_pending = true;
                }
            }
            b'x' => {
                self.exit_requested = true;
                self.announce();
            }
            b'p' => {
                self.paused = true;
                self.announce();
                self.signal(Signal::SIGSTOP);
            }
            b'c' => {
                self.paused = false;
                self.announce();
                self.signal(Signal::SIGCONT);
            }
            _ => {
                if let Some(sig) = signal_for(byte) {
                    self.signal(sig);
                }
            }
        }
    }

    /// Write the status: `status.new`, then rename over `status`.
    fn announce(&self) {
        let pid = self.running_pid().map(|p| p.as_raw() as u32).unwrap_or(0);
        let status = Status {
            stamp: self.stamp,
            pid,
            paused: self.paused,
            want: self.want,
        };
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open("supervise/status.new")
            .and_then(|mut f| f.write_all(&status.pack()))
            .and_then(|()| fs::rename("supervise/status.new", "supervise/status"));
        if let Err(e) = written {
            postern_common::exit::warn(
                PROG,
                format!(
                    "unable to write {}/supervise/status: {}",
                    self.name,
                    postern_common::exit::describe_io(&e)
                ),
            );
        }
    }
}

/// The signal a pure signal command sends: `h a i t k` (0.76) and `q 1 2 w` (encore,
/// runit). `l L + =` and anything else are not signals and are ignored.
pub fn signal_for(byte: u8) -> Option<Signal> {
    Some(match byte {
        b'h' => Signal::SIGHUP,
        b'a' => Signal::SIGALRM,
        b'i' => Signal::SIGINT,
        b't' => Signal::SIGTERM,
        b'k' => Signal::SIGKILL,
        b'q' => Signal::SIGQUIT,
        b'1' => Signal::SIGUSR1,
        b'2' => Signal::SIGUSR2,
        b'w' => Signal::SIGWINCH,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_letters() {
        assert_eq!(signal_for(b'k'), Some(Signal::SIGKILL));
        assert_eq!(signal_for(b'w'), Some(Signal::SIGWINCH));
        for ignored in [b'l', b'L', b'+', b'=', b'u', b'z'] {
            assert_eq!(signal_for(ignored), None);
        }
    }

    #[test]
    fn once_is_a_zero_byte() {
        assert_eq!(WANT_ONCE, 0);
    }
}
