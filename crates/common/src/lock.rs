//! Lock files: a file opened (created if missing) only to hold an exclusive `flock` on it,
//! for as long as the [`Lock`] lives — one postern-send per queue, one multilog per log
//! directory, one writer of the user database, one probe per address.
//!
//! `flock` (std's `File::lock`), not `fcntl` locks: the lock belongs to the open file, so
//! it is not lost when some other descriptor of the same file is closed, and it is the
//! lock daemontools' C supervise and multilog take on `supervise/lock` and `lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An open file with our exclusive lock on it; dropping it closes the file, which
/// releases the lock (the descriptor is close-on-exec, so no child keeps it).
#[derive(Debug)]
pub struct Lock {
    file: File,
}

/// Open `path` read-write, creating it with `mode` (less the umask) if it is missing and
/// keeping what is in it.
pub fn open(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)
}

/// Open (see [`open`]) and lock `path`, waiting for whoever holds it.
pub fn exclusive(path: &Path, mode: u32) -> io::Result<Lock> {
    Lock::wait(open(path, mode)?)
}

/// Open (see [`open`]) and lock `path` if nobody holds it: `None` if somebody does.
pub fn try_exclusive(path: &Path, mode: u32) -> io::Result<Option<Lock>> {
    Ok(Lock::try_take(open(path, mode)?)?.ok())
}

impl Lock {
    /// Lock `file`, waiting for whoever holds it.
    pub fn wait(file: File) -> io::Result<Lock> {
        loop {
            match file.lock() {
                Ok(()) => return Ok(Lock { file }),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Lock `file` if nobody holds it; if somebody does, the file back unlocked (to try
    /// again later, or drop).
    pub fn try_take(file: File) -> io::Result<Result<Lock, File>> {
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Ok(Lock { file })),
                Err(TryLockError::WouldBlock) => return Ok(Err(file)),
                Err(TryLockError::Error(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

impl Deref for Lock {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

impl DerefMut for Lock {
    fn deref_mut(&mut self) -> &mut File {
        &mut self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_taker_waits_or_is_told_no() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = exclusive(&path, 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second open file description, as another process would have.
        assert!(try_exclusive(&path, 0o600).unwrap().is_none());
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || exclusive(&path, 0o600).map(|_| ()))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "took a lock that was held");
        drop(held);
        waiter.join().unwrap().unwrap();
        assert!(try_exclusive(&path, 0o600).unwrap().is_some());
    }

    #[test]
    fn the_file_is_kept_and_usable_through_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table");
        std::fs::write(&path, b"kept").unwrap();
        let mut held = exclusive(&path, 0o600).unwrap();
        let mut text = String::new();
        held.read_to_string(&mut text).unwrap();
        assert_eq!(text, "kept");
        held.rewind().unwrap();
        held.write_all(b"KEPT").unwrap();
        drop(held);
        assert_eq!(std::fs::read(&path).unwrap(), b"KEPT");
    }

    #[test]
    fn try_take_gives_the_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let _held = exclusive(&path, 0o600).unwrap();
        let other = open(&path, 0o600).unwrap();
        let other = Lock::try_take(other).unwrap().unwrap_err();
        drop(_held);
        assert!(Lock::try_take(other).unwrap().is_ok());
    }
}
