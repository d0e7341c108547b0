//! The two signals multilog acts on: TERM (finish the current line, then
//! exit cleanly) and ALRM (rotate every non-empty `current`). They are blocked and read
//! from a signalfd, so they are only ever noticed between lines, in the main loop, and a
//! signal during a write, a rotation or a pause simply waits its turn. Children started
//! through std (the processor) get an empty signal mask back.

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use postern_common::{Result, ResultExt};
use std::os::fd::{AsFd, BorrowedFd};

/// Signals received since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub term: bool,
    pub alarm: bool,
}

/// TERM and ALRM, blocked and readable from a descriptor.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Block TERM and ALRM and open the signalfd that reports them.
    pub fn install() -> Result<Signals> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGALRM);
        mask.thread_block().temp("unable to block signals")?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .temp("unable to create signalfd")?;
        Ok(Signals { fd })
    }

    /// Collect the signals that arrived, without waiting.
    pub fn take(&self) -> Received {
        let mut got = Received::default();
        while let Ok(Some(info)) = self.fd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) => got.term = true,
                Ok(Signal::SIGALRM) => got.alarm = true,
                _ => {}
            }
        }
        got
    }

    /// Wait until `input` is readable (true) or a signal is pending (false).
    pub fn wait(&self, input: BorrowedFd<'_>) -> Result<bool> {
        loop {
            let mut fds = [
                PollFd::new(input, PollFlags::POLLIN),
                PollFd::new(self.fd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).temp("unable to poll standard input"),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            // Signals first, so one sent before more input is handled before that input.
            if ready(&fds[1]) {
                return Ok(false);
            }
            if ready(&fds[0]) {
                return Ok(true);
            }
        }
    }
}
