//! The two file-descriptor operations that neither std nor nix offers safely: giving a
//! child a pipe as fd 3 (the checkpassword interface), and adopting an fd inherited by
//! number (`POSTERN_TLS_FD`). Each `unsafe` block carries its reason.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The descriptor checkpassword programs read `user\0password\0timestamp\0` from.
pub const CHECKPASSWORD_FD: RawFd = 3;

/// Arrange for the child started by `cmd` to find `fd` as descriptor 3.
pub fn give_fd3(cmd: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs in the child between fork and exec; it calls only dup2 and
    // fcntl, which are async-signal-safe, and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if fd == CHECKPASSWORD_FD {
                // Same number: just let it survive exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, CHECKPASSWORD_FD) == -1 {
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
