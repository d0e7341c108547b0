//! Reading the flat control files: one value or entry per line, `#` starts
//! a comment line, blank lines are ignored, trailing spaces and tabs are stripped. A
//! missing file means "use the default"; any other read error is temporary trouble, so
//! the caller answers 4xx / exits 111 rather than guessing. Errors name the file and,
//! for a bad value, its line.
//!
//! A `#` in the middle of a line is *not* a comment: addresses such as `#@[]` are valid.

use crate::exit::{Error, Result};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest control file we read; anything bigger is a mistake, not configuration.
pub const MAX_CONTROL_FILE: u64 = 64 * 1024 * 1024;

/// One meaningful line of a control file, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub text: String,
}

/// Split control-file text into its meaningful lines.
pub fn parse_lines(text: &str) -> Vec<Line> {
    text.split('\n')
        .enumerate()
        .filter_map(|(i, raw)| {
            let line = raw.trim_end_matches(['\r', ' ', '\t']);
            let line = line.trim_start_matches([' ', '\t']);
            if line.is_empty() || line.starts_with('#') {
                None
            } else {
                Some(Line {
                    number: i + 1,
                    text: line.to_string(),
                })
            }
        })
        .collect()
}

/// The control directory of an instance.
#[derive(Debug, Clone)]
pub struct Control {
    dir: PathBuf,
}

impl Control {
    /// The control directory of the instance at `home` (`home/control`).
    pub fn for_home(home: &Path) -> Self {
        Control {
            dir: home.join("control"),
        }
    }

    /// The control directory of the instance named by `POSTERN_HOME`.
    pub fn from_env() -> Self {
        Control::for_home(&crate::home::postern_home())
    }

    /// Use `dir` itself as the control directory.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Control { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// How a file is named in messages: `control/NAME`.
    fn label(name: &str) -> String {
        format!("control/{name}")
    }

    /// The file's text, or `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<String>> {
        let label = Self::label(name);
        let file = match fs::File::open(self.path(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("unable to read {label}"), &e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_CONTROL_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("unable to read {label}"), &e))?;
        if bytes.len() as u64 > MAX_CONTROL_FILE {
            return Err(Error::temp(format!(
                "{label}: file is larger than {MAX_CONTROL_FILE} bytes"
            )));
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Some(text)),
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
                Err(Error::temp(format!("{label}:{line}: not valid UTF-8")))
            }
        }
    }

    /// The meaningful lines, or `None` if the file does not exist.
    pub fn lines(&self, name: &str) -> Result<Option<Vec<Line>>> {
        Ok(self.read(name)?.map(|t| parse_lines(&t)))
    }

    /// The meaningful lines; a missing file is an empty list.
    pub fn list(&self, name: &str) -> Result<Vec<Line>> {
        Ok(self.lines(name)?.unwrap_or_default())
    }

    /// The first meaningful line, or `None` if the file is missing or has none.
    pub fn value(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .lines(name)?
            .and_then(|l| l.into_iter().next())
            .map(|l| l.text))
    }

    /// The first meaningful line, or `default`.
    pub fn value_or(&self, name: &str, default: &str) -> Result<String> {
        Ok(self.value(name)?.unwrap_or_else(|| default.to_string()))
    }

    /// A whole number, or `default` when the file is missing or empty. A value that is
    /// not a number is an error naming the file and line (temporary: fail closed).
    pub fn number(&self, name: &str, default: u64) -> Result<u64> {
        match self.lines(name)?.and_then(|l| l.into_iter().next()) {
            None => Ok(default),
            Some(line) => line.text.parse::<u64>().map_err(|_| {
                Error::temp(format!(
                    "{}:{}: not a whole number: {}",
                    Self::label(name),
                    line.number,
                    crate::logline::printable(&line.text)
                ))
            }),
        }
    }

    /// True when the file exists and its first line is not `0` / `no` / `false`.
    /// Used for switches such as `authcleartext`.
    pub fn flag(&self, name: &str) -> Result<bool> {
        Ok(match self.lines(name)? {
            None => false,
            Some(lines) => match lines.first() {
                None => true,
                Some(l) => !matches!(
                    l.text.to_ascii_lowercase().as_str(),
                    "0" | "no" | "false" | "off"
                ),
            },
        })
    }
}

/// This host's name, for the default of `me`.
pub fn system_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Kind;

    fn control_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Control) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let c = Control::at(dir.path());
        (dir, c)
    }

    #[test]
    fn comments_blanks_and_trailing_space_are_dropped() {
        let lines = parse_lines("# header\n\nexample.test  \n  .example.test\t\n#@[]x\na#b\n");
        let texts: Vec<_> = lines.iter().map(|l| (l.number, l.text.as_str())).collect();
        assert_eq!(
            texts,
            vec![(3, "example.test"), (4, ".example.test"), (6, "a#b")]
        );
    }

    #[test]
    fn missing_files_give_defaults() {
        let (_d, c) = control_with(&[]);
        assert_eq!(c.value_or("me", "host.test").unwrap(), "host.test");
        assert_eq!(c.number("databytes", 10240000).unwrap(), 10240000);
        assert!(c.list("rcpthosts").unwrap().is_empty());
        assert!(c.lines("rcpthosts").unwrap().is_none());
        assert!(!c.flag("authcleartext").unwrap());
    }

    #[test]
    fn numbers_are_checked_and_bad_ones_name_the_line() {
        let (_d, c) = control_with(&[("databytes", "# max\n\n12x\n"), ("concurrencylocal", "5\n")]);
        assert_eq!(c.number("concurrencylocal", 10).unwrap(), 5);
        let err = c.number("databytes", 1).unwrap_err();
        assert_eq!(err.kind, Kind::Temp);
        assert_eq!(err.msg, "control/databytes:3: not a whole number: 12x");
    }

    #[test]
    fn flags_read_yes_and_no() {
        let (_d, c) = control_with(&[("a", ""), ("b", "0\n"), ("c", "yes\n")]);
        assert!(c.flag("a").unwrap());
        assert!(!c.flag("b").unwrap());
        assert!(c.flag("c").unwrap());
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("rcpthosts"), b"a.test\nb\xff.test\n").unwrap();
        let err = Control::at(dir.path()).list("rcpthosts").unwrap_err();
        assert_eq!(err.msg, "control/rcpthosts:2: not valid UTF-8");
    }

    #[test]
    fn unreadable_file_is_temporary_not_default() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("me")).unwrap(); // a directory: read fails
        let err = Control::at(dir.path()).value("me").unwrap_err();
        assert_eq!(err.kind, Kind::Temp);
    }
}
