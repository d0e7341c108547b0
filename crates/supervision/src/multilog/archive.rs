//! Archiving a finished file in a log directory: link it to
//! `@TAI64N.s` (safely written) or `@TAI64N.u` (possibly truncated, recovered after a
//! crash), unlink the old name, then delete the oldest archives until fewer than `num`
//! remain — so a directory holds at most `num - 1` archives plus `current`.
//!
//! Every step is retried until it works ([`retry`]): an archive is never lost to a
//! passing disk error, and a crash between the steps leaves a name that the next start
//! recovers.

use super::retry::retry;
use postern_common::tai64n::Tai64n;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Archive names are `@` + 24 hex digits + `.` + code; anything starting with `@` and at
/// least this long counts as an archive (as in 0.76).
pub const ARCHIVE_NAME_MIN: usize = 25;

/// What an archive's suffix says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `.s`: completely and safely written.
    Safe,
    /// `.u`: recovered after an unclean stop, possibly truncated.
    Unsafe,
}

impl Code {
    fn suffix(self) -> &'static str {
        match self {
            Code::Safe => "s",
            Code::Unsafe => "u",
        }
    }
}

/// Archive `dir/file` (if it exists) under a fresh stamp, then trim to `num` files.
pub fn finish(dir: &Path, file: &str, code: Code, num: u64) {
    let path = dir.join(file);
    let what = dir.join(file);
    let meta =
        retry(
            format_args!("unable to stat {}", what.display()),
            || match fs::symlink_metadata(&path) {
                Ok(m) => Ok(Some(m)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        );
    let Some(meta) = meta else { return };
    // A second link means a previous run archived it and crashed before the unlink.
    if meta.nlink() == 1 {
        retry(
            format_args!("unable to link {} to an archive name", what.display()),
            || {
                let name = format!("{}.{}", Tai64n::now().label(), code.suffix());
                fs::hard_link(&path, dir.join(name))
            },
        );
    }
    retry(format_args!("unable to remove {}", what.display()), || {
        fs::remove_file(&path)
    });
    while !retry(format_args!("unable to read {}", dir.display()), || {
        files_fit(dir, num)
    }) {}
}

/// Whether fewer than `num` archives remain; if not, delete the oldest and say no.
fn files_fit(dir: &Path, num: u64) -> io::Result<bool> {
    let mut count = 0u64;
    let mut oldest: Option<std::ffi::OsString> = None;
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let bytes = name.as_bytes();
        if bytes.first() == Some(&b'@') && bytes.len() >= ARCHIVE_NAME_MIN {
            count += 1;
            if oldest.as_ref().is_none_or(|o| bytes < o.as_bytes()) {
                oldest = Some(name);
            }
        }
    }
    match oldest {
        Some(name) if count >= num => {
            match fs::remove_file(dir.join(name)) {
                Ok(()) => {}
                // Someone else removed it: count again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            Ok(false)
        }
        _ => Ok(true),
    }
}

/// The archive names in `dir`, oldest first (for tests and tools).
pub fn archives(dir: &Path) -> io::Result<Vec<String>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('@') && n.len() >= ARCHIVE_NAME_MIN)
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_renames_to_a_stamped_archive() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("previous"), b"a\n").unwrap();
        finish(dir.path(), "previous", Code::Safe, 10);
        let names = archives(dir.path()).unwrap();
        assert_eq!(names.len(), 1);
        assert!(
            names[0].ends_with(".s") && names[0].len() == 27,
            "{names:?}"
        );
        assert!(!dir.path().join("previous").exists());
        assert_eq!(fs::read(dir.path().join(&names[0])).unwrap(), b"a\n");
    }

    #[test]
    fn a_missing_file_is_nothing_to_do() {
        let dir = tempfile::tempdir().unwrap();
        finish(dir.path(), "current", Code::Unsafe, 10);
        assert!(archives(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn the_oldest_go_until_fewer_than_num_remain() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            fs::write(dir.path().join(format!("@{i:024x}.s")), b"").unwrap();
        }
        fs::write(dir.path().join("@short"), b"").unwrap();
        fs::write(dir.path().join("previous"), b"x\n").unwrap();
        finish(dir.path(), "previous", Code::Safe, 3);
        let names = archives(dir.path()).unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[0], format!("@{:024x}.s", 4));
        assert!(dir.path().join("@short").exists());
    }

    #[test]
    fn an_already_linked_file_is_only_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("previous"), b"x\n").unwrap();
        let name = format!("@{:024x}.s", 1);
        fs::hard_link(dir.path().join("previous"), dir.path().join(&name)).unwrap();
        finish(dir.path(), "previous", Code::Safe, 10);
        assert_eq!(archives(dir.path()).unwrap(), vec![name]);
    }
}
