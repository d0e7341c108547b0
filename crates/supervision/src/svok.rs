//! `postern-svok DIR`: is a supervise running for DIR? (daemontools' svok)
//!
//! A supervise holds `supervise/ok` open for reading for its whole life, so opening it
//! write-only without blocking succeeds exactly when one runs; with nobody reading the
//! kernel answers ENXIO. This probe is shared with svstat and svc.
#![forbid(unsafe_code)]

use postern_common::exit::{Error, Result, EXIT_PERM};
use postern_common::ResultExt;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub const PROG: &str = "postern-svok";
const USAGE: &str = "postern-svok dir";

/// Open a FIFO for writing without blocking: ENXIO when nobody reads it.
pub fn open_fifo_write(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Whether a supervise is reading `DIR/supervise/ok`: `Ok(false)` when the FIFO is
/// missing or has no reader, an error for anything else (permissions, …).
pub fn supervise_running(dir: &Path) -> io::Result<bool> {
    match open_fifo_write(&dir.join("supervise/ok")) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOENT)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What `chdir(dir)` would say: an error unless `dir` is a directory we can enter.
pub fn check_dir(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(())
}

/// Check the one directory named in `args`.
pub fn check(args: &[OsString]) -> Result<bool> {
    let [dir] = args else {
        return Err(Error::usage(USAGE));
    };
    let dir = Path::new(dir);
    // Like the classic svok, an unusable directory is trouble (111), not "no".
    check_dir(dir).temp(format!("unable to chdir to {}", dir.display()))?;
    supervise_running(dir).temp(format!("unable to open {}/supervise/ok", dir.display()))
}

/// Exit 0 when supervise runs, 100 (silently) when not; bad usage (100) and trouble
/// (111) are errors, each one line on stderr through the exit funnel.
pub fn main() -> Result<()> {
    if check(&postern_common::getopt::args())? {
        Ok(())
    } else {
        Err(Error::code(EXIT_PERM, ""))
    }
}
