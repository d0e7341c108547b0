//! The workspace's one audited `unsafe` module: the few process and
//! descriptor operations that neither std nor nix offers safely.
//!
//! - [`give_fd3`] / [`give_fd_as`]: a child finds a pipe as descriptor 3 (the
//!   checkpassword interface) or 6 (qmail-queue's custom error).
//! - [`adopt_inherited_fd`] / [`take_fd3`]: own a descriptor inherited by number
//!   (`POSTERN_TLS_FD`, checkpassword's fd 3).
//! - [`with_default_signals`] / [`default_signals_before_exec`]: a program starts with
//!   no signal blocked or ignored, whatever its parent did for its signalfd or was given.
//! - [`exit_on_alarm`]: qmail-queue's `alarm(86400)`, exiting with a chosen code,
//!   without a thread.
//! - [`one_malloc_arena`]: threads share glibc's main heap.
//! - [`own_received_fds`]: own the descriptors a peer passed with SCM_RIGHTS.
//! - `interrupt` (tests only): interrupt a thread's blocking call with a signal (EINTR).
//!
//! Each `unsafe` block carries its reason. Every other module of every crate forbids
//! `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The descriptor checkpassword programs read `user\0password\0timestamp\0` from.
pub const CHECKPASSWORD_FD: RawFd = 3;

/// Arrange for the child started by `cmd` to find `fd` as descriptor 3.
pub fn give_fd3(cmd: &mut Command, fd: RawFd) {
    give_fd_as(cmd, fd, CHECKPASSWORD_FD);
}

/// Arrange for the child started by `cmd` to find `fd` as descriptor `target` (3 for
/// checkpassword, 6 for qmail-queue's custom error), open across `exec`. `target` must
/// not be 0, 1 or 2 (std sets those up before this runs).
pub fn give_fd_as(cmd: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: the closure runs in the child between fork and exec; it calls only dup2 and
    // fcntl, which are async-signal-safe, and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if fd == target {
                // Same number: just let it survive exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, target) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Take ownership of descriptor `fd`, inherited from our parent and named in the
/// environment. Checks first that it is open; marks it close-on-exec so that our own
/// children do not inherit it. The caller must adopt a given number only once.
pub fn adopt_inherited_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 3 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "fd below 3",
        ));
    }
    // SAFETY: fcntl(F_GETFD/F_SETFD) on a plain integer has no memory effects; it only
    // tells us whether the descriptor is open.
    let open = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != -1;
    if !open {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above), was handed to us by our parent for
    // this purpose, and nothing else in this process owns it: the variable naming it is
    // removed from the environment by the only caller, which runs once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Descriptor 3 as a file, or `None` when it is not open (the checkpassword side of the
/// interface). Call once.
pub fn take_fd3() -> Option<std::fs::File> {
    // SAFETY: fcntl(F_GETFD) on an integer only queries the descriptor table; it
    // touches no memory and fails with EBADF when 3 is not open.
    let open = unsafe { libc::fcntl(CHECKPASSWORD_FD, libc::F_GETFD) } != -1;
    if !open {
        return None;
    }
    // SAFETY: descriptor 3 is open (checked above), was inherited from our caller, and
    // nothing else in this process owns or closes it; we take it exactly once, and the
    // file closes it when dropped, as the interface requires.
    Some(std::fs::File::from(unsafe {
        OwnedFd::from_raw_fd(CHECKPASSWORD_FD)
    }))
}

/// Make `cmd` start its program as a fresh program expects: no signal blocked and every
/// signal at its default action. Both survive `exec`, and std's `Command` resets neither:
/// daemons that read signals through a signalfd keep them blocked, Rust's runtime ignores
/// SIGPIPE, and a shell without job control starts background commands with SIGINT and
/// SIGQUIT ignored. Without this, `svc -d` could not stop a `./run` that inherited TERM
/// blocked, and a shell service could not trap INT.
pub fn with_default_signals(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe work is allowed: it calls sigaction and pthread_sigmask on
    // structures built on its own stack, and neither allocates nor takes locks.
    unsafe { cmd.pre_exec(|| reset_signals().map_err(std::io::Error::from_raw_os_error)) }
}

/// Reset this process's signal mask and dispositions to the defaults, just before it
/// execs into another program (the chain from postern-scan to postern-queue, rblsmtpd to
/// smtpd). Handlers this process installed are reset by `exec` anyway; ignored and
/// blocked signals are not.
pub fn default_signals_before_exec() -> std::io::Result<()> {
    reset_signals().map_err(std::io::Error::from_raw_os_error)
}

/// Every catchable signal to SIG_DFL, then an empty mask (in that order, so that nothing
/// pending is delivered to a handler that is about to disappear). Async-signal-safe.
fn reset_signals() -> Result<(), i32> {
    for sig in 1..=31 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a zeroed sigaction with sa_handler = SIG_DFL is a valid argument;
        // sigaction is async-signal-safe and touches only the kernel's table.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(sig, &action, std::ptr::null_mut()) == -1 {
                return Err(errno());
            }
        }
    }
    // SAFETY: an empty set on the stack; pthread_sigmask is async-signal-safe.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if rc != 0 {
            return Err(rc);
        }
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// The exit code of the SIGALRM handler [`exit_on_alarm`] installs.
static ALARM_EXIT_CODE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(111);

extern "C" fn exit_now(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe, and the atomic load takes no lock.
    unsafe { libc::_exit(ALARM_EXIT_CODE.load(std::sync::atomic::Ordering::Relaxed)) }
}

/// After `seconds`, end the process at once with exit `code` (as qmail-queue's
/// `alarm(86400)` does). One syscall pair instead of a watchdog thread: cheap enough
/// for a program started once per message.
pub fn exit_on_alarm(seconds: u32, code: i32) -> std::io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    ALARM_EXIT_CODE.store(code, std::sync::atomic::Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(exit_now),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only calls _exit (async-signal-safe) with a value read from
    // an atomic; it touches no other state of the program.
    unsafe { sigaction(Signal::SIGALRM, &action) }
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    nix::unistd::alarm::set(seconds);
    Ok(())
}

/// Make every thread allocate from glibc's main heap. A thread normally gets an arena
/// of its own, which reserves 64 MB of address space; under a `softlimit -m` that
/// reservation fails and glibc then serves each allocation of that thread with its own
/// mmap and munmap. For a process whose threads are few and short-lived (tcpserver's
/// connection set-up), one heap is both smaller and faster.
pub fn one_malloc_arena() {
    // SAFETY: mallopt only sets a tunable of the allocator; called before any thread
    // exists, it races with nothing.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // musl's allocator has no per-thread arenas: nothing to set.
}

/// `renameat2(from, to, RENAME_NOREPLACE)`: fails with EEXIST instead of replacing.
/// Not nix's wrapper, which exists only for glibc: the hot programs may be linked
/// against musl (scripts/build).
pub fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call; no memory is handed over.
    // The raw system call: the musl that Rust bundles has no renameat2() wrapper.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A pidfd for the child `pid` (pidfd_open(2), Linux 5.3): it turns readable the moment
/// the process exits, so a parent can wait for its child with `poll` and a timeout. The
/// pid must be an unreaped child of the caller, so that it cannot have been reused.
pub fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a system call with integer arguments only; no memory is handed over.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = RawFd::try_from(r).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel created this descriptor for this call a moment ago; nothing else
    // in the process knows its number, so it gets one owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Own descriptors that `recvmsg` just installed from an SCM_RIGHTS message, so that
/// each is closed when dropped (a peer that sends more than asked for leaks nothing).
pub fn own_received_fds(fds: &[RawFd]) -> Vec<OwnedFd> {
    fds.iter()
        // SAFETY: the kernel created these descriptors for this message a moment ago;
        // nothing else in the process knows their numbers, so each gets one owner.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Tests only: interrupt a thread's blocking call (EINTR), to see that it carries on.
#[cfg(test)]
pub(crate) mod interrupt {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    extern "C" fn ignore(_: i32) {}

    /// The calling thread, for [`signal`].
    pub fn this_thread() -> libc::pthread_t {
        // SAFETY: pthread_self has no preconditions.
        unsafe { libc::pthread_self() }
    }

    /// Send SIGUSR2, caught by a do-nothing handler (no SA_RESTART), to `thread`, which
    /// must still be running: a blocking call there returns EINTR.
    pub fn signal(thread: libc::pthread_t) {
        let action = SigAction::new(
            SigHandler::Handler(ignore),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing, so it is async-signal-safe; SIGUSR2 is used
        // by nothing else in the common crate's tests.
        unsafe { sigaction(Signal::SIGUSR2, &action) }.expect("sigaction");
        // SAFETY: the caller keeps `thread` alive (joins it after).
        assert_eq!(unsafe { libc::pthread_kill(thread, libc::SIGUSR2) }, 0);
    }
}
