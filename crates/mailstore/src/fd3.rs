//! Taking ownership of descriptor 3, which the checkpassword interface hands us already
//! open. std and nix only build an owned descriptor from a raw number in `unsafe`, so
//! the two blocks live here, alone.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

/// The descriptor the checkpassword interface uses.
pub const FD: i32 = 3;

/// Descriptor 3 as a file, or `None` when it is not open. Call once.
pub fn take() -> Option<File> {
    // SAFETY: fcntl(F_GETFD) on an integer only queries the descriptor table; it
    // touches no memory and fails with EBADF when 3 is not open.
    let open = unsafe { libc::fcntl(FD, libc::F_GETFD) } != -1;
    if !open {
        return None;
    }
    // SAFETY: descriptor 3 is open (checked above), was inherited from our caller, and
    // nothing else in this process owns or closes it; we take it exactly once, and the
    // file closes it when dropped, as the interface requires.
    Some(File::from(unsafe { OwnedFd::from_raw_fd(FD) }))
}
