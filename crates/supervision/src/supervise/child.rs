//! Starting children with an empty signal mask.
//!
//! supervise and svscan block the signals they read through a signalfd, and a blocked
//! mask survives `exec`: without this, `./run` would start with TERM blocked and
//! `svc -d` would not stop it. std's `Command` does not reset the mask, so we do it
//! between fork and exec, as the C supervise does. This is the crate's one `unsafe`.
#![allow(unsafe_code)]

use nix::sys::signal::SigSet;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make `cmd` start its program with no signal blocked.
pub fn with_clean_signal_mask(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe work is allowed. It makes one pthread_sigmask call on an empty
    // set built on the stack (sigemptyset) and, on failure, builds an io::Error from the
    // raw errno; it neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(|| {
            SigSet::empty()
                .thread_set_mask()
                .map_err(|e| io::Error::from_raw_os_error(e as i32))
        })
    }
}
