//! `postern-envdir dir child...`: set environment variables from the files in `dir`,
//! then exec the child — daemontools' envdir, the way run scripts take settings that an
//! admin edits without touching the script.
//!
//! For each file whose name does not start with `.`: an empty file removes the variable;
//! otherwise the first line, with trailing spaces and tabs removed and NUL bytes turned
//! into newlines, becomes its value. A name containing `=` is an error.

use crate::chain;
use postern_common::{Error, Result, ResultExt};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

pub const USAGE: &str = "postern-envdir dir child";

/// Largest file we read a value from; the first line is all that counts.
pub const MAX_VALUE_FILE: u64 = 256 * 1024;

/// What one file asks for: set `name` to a value, or remove it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Set(OsString, OsString),
    Unset(OsString),
}

/// The value a file's contents give: `None` for an empty file (unset).
pub fn value_of(contents: &[u8]) -> Option<OsString> {
    if contents.is_empty() {
        return None;
    }
    let line = contents.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b' ' || line[end - 1] == b'\t') {
        end -= 1;
    }
    let value: Vec<u8> = line[..end]
        .iter()
        .map(|&b| if b == 0 { b'\n' } else { b })
        .collect();
    Some(OsString::from_vec(value))
}

/// Read every setting in `dir`, sorted by name.
pub fn read_dir(dir: &Path) -> Result<Vec<Setting>> {
    let shown = dir.display();
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .temp(format!("unable to read {shown}"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .temp(format!("unable to read {shown}"))?;
    names.sort();
    let mut settings = Vec::new();
    for name in names {
        if name.as_bytes().first() == Some(&b'.') {
            continue;
        }
        if name.as_bytes().contains(&b'=') {
            return Err(Error::temp(format!(
                "unable to use {shown}/{}: name contains =",
                name.to_string_lossy()
            )));
        }
        let path = dir.join(&name);
        let mut contents = Vec::new();
        let file = fs::File::open(&path).temp(format!("unable to read {}", path.display()))?;
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_VALUE_FILE),
            &mut contents,
        )
        .temp(format!("unable to read {}", path.display()))?;
        settings.push(match value_of(&contents) {
            Some(value) => Setting::Set(name, value),
            None => Setting::Unset(name),
        });
    }
    Ok(settings)
}

pub fn main() -> Result<()> {
    let args = postern_common::getopt::args();
    if args.len() < 2 {
        return Err(Error::usage(USAGE));
    }
    for setting in read_dir(Path::new(&args[0]))? {
        // Single-threaded here, before exec: changing the environment is sound.
        match setting {
            Setting::Set(name, value) => std::env::set_var(&name, &value),
            Setting::Unset(name) => std::env::remove_var(OsStr::new(&name)),
        }
    }
    chain::exec(&args[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_trailing_blanks_and_nuls() {
        assert_eq!(value_of(b""), None);
        assert_eq!(value_of(b"\n"), Some(OsString::new()));
        assert_eq!(
            value_of(b"8000000 \t\nignored\n"),
            Some(OsString::from("8000000"))
        );
        assert_eq!(value_of(b"a\0b"), Some(OsString::from("a\nb")));
    }

    #[test]
    fn reads_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("DATABYTES"), "1000\n").unwrap();
        fs::write(dir.path().join("RELAYCLIENT"), "").unwrap();
        fs::write(dir.path().join(".hidden"), "x").unwrap();
        let got = read_dir(dir.path()).unwrap();
        assert_eq!(
            got,
            vec![
                Setting::Set("DATABYTES".into(), "1000".into()),
                Setting::Unset("RELAYCLIENT".into())
            ]
        );
        fs::write(dir.path().join("A=B"), "x").unwrap();
        assert!(read_dir(dir.path()).is_err());
    }
}
