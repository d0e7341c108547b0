//! The multilog "script": its arguments, each one action, read left to right
//!. Parsing turns them into a list of [`Action`]s run over every line,
//! plus the log directories and status files those actions name, each with the size,
//! count and processor in force at its position.
//!
//! Deliberate differences from daemontools 0.76, which silently ignores what it does not
//! understand: an unknown action, a `t` that is not first, a size or count that is not a
//! number, an empty `=` and an empty script are usage errors (exit 100), so a typo shows
//! at once instead of as a log that quietly never fills.

use postern_common::{Error, Result};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The usage line.
pub const USAGE: &str =
    "postern-multilog [t] [+pattern|-pattern|e|=file|sN|nN|!processor|./dir|/dir] ...";

/// Default for `sN`: the largest size `current` reaches before it is rotated.
pub const DEFAULT_SIZE: u64 = 99_999;
/// Smallest `sN` honoured (smaller values are raised to it, as the classic tool does).
pub const MIN_SIZE: u64 = 4096;
/// Largest `sN` honoured (larger values are lowered to it).
pub const MAX_SIZE: u64 = 16_777_215;
/// Default for `nN`: files kept per directory, `current` included.
pub const DEFAULT_NUM: u64 = 10;
/// Smallest `nN` honoured: one archive plus `current`.
pub const MIN_NUM: u64 = 2;
/// Largest `nN` honoured (a bound, far above any sane setting).
pub const MAX_NUM: u64 = 100_000;

/// One step of the script, run for every line in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `+pattern`: select the line if it matches.
    Select(Vec<u8>),
    /// `-pattern`: deselect the line if it matches.
    Deselect(Vec<u8>),
    /// `e`: copy a selected line to stderr.
    Stderr,
    /// `=file`: overwrite status file number N with a selected line.
    Status(usize),
    /// `./dir`: append a selected line to log directory number N.
    Dir(usize),
}

/// A log directory and the settings in force where the script names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: PathBuf,
    /// Rotate `current` when it reaches this many bytes.
    pub size: u64,
    /// Keep at most this many files: `num - 1` archives plus `current`.
    pub num: u64,
    /// `sh -c` command run over each rotated file, if any.
    pub processor: Option<OsString>,
}

/// A parsed script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// `t` came first: prefix every line with a TAI64N stamp.
    pub timestamp: bool,
    pub actions: Vec<Action>,
    pub dirs: Vec<DirSpec>,
    pub status_files: Vec<PathBuf>,
}

/// Parse the arguments (without the program name).
pub fn parse(args: &[OsString]) -> Result<Script> {
    if args.is_empty() {
        return Err(Error::usage(USAGE));
    }
    let mut script = Script::default();
    let mut size = DEFAULT_SIZE;
    let mut num = DEFAULT_NUM;
    let mut processor: Option<OsString> = None;
    for (i, arg) in args.iter().enumerate() {
        let bytes = arg.as_bytes();
        let (first, rest) = match bytes.split_first() {
            Some((f, r)) => (*f, r),
            None => return Err(bad(arg, "empty action")),
        };
        match first {
            b't' if rest.is_empty() && i == 0 => script.timestamp = true,
            b't' if rest.is_empty() => return Err(bad(arg, "t must be the first action")),
            b'+' => script.actions.push(Action::Select(rest.to_vec())),
            b'-' => script.actions.push(Action::Deselect(rest.to_vec())),
            b'e' if rest.is_empty() => script.actions.push(Action::Stderr),
            b'=' if !rest.is_empty() => {
                script
                    .actions
                    .push(Action::Status(script.status_files.len()));
                script
                    .status_files
                    .push(PathBuf::from(OsString::from_vec(rest.to_vec())));
            }
            b's' => size = number(arg, rest)?.clamp(MIN_SIZE, MAX_SIZE),
            b'n' => num = number(arg, rest)?.clamp(MIN_NUM, MAX_NUM),
            // An empty `!` turns processing off for the directories after it.
            b'!' => processor = (!rest.is_empty()).then(|| OsString::from_vec(rest.to_vec())),
            b'.' | b'/' => {
                script.actions.push(Action::Dir(script.dirs.len()));
                script.dirs.push(DirSpec {
                    path: PathBuf::from(arg),
                    size,
                    num,
                    processor: processor.clone(),
                });
            }
            _ => return Err(bad(arg, "unknown action")),
        }
    }
    Ok(script)
}

fn number(arg: &OsString, digits: &[u8]) -> Result<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad(arg, "needs a number"));
    }
    // All digits, so only overflow can fail: treat that as "very large".
    Ok(std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(u64::MAX))
}

fn bad(arg: &OsString, why: &str) -> Error {
    Error::usage(format!("{why}: {:?}: {USAGE}", arg.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn actions_keep_their_order_and_settings_apply_to_later_dirs() {
        let s = parse(&args(&[
            "t", "e", "-*", "+*fatal*", "s5000", "n3", "./a", "!gzip", "/b", "=st",
        ]))
        .unwrap();
        assert!(s.timestamp);
        assert_eq!(
            s.actions,
            vec![
                Action::Stderr,
                Action::Deselect(b"*".to_vec()),
                Action::Select(b"*fatal*".to_vec()),
                Action::Dir(0),
                Action::Dir(1),
                Action::Status(0),
            ]
        );
        assert_eq!(
            s.dirs[0],
            DirSpec {
                path: "./a".into(),
                size: 5000,
                num: 3,
                processor: None
            }
        );
        assert_eq!(
            s.dirs[1].processor.as_deref(),
            Some(std::ffi::OsStr::new("gzip"))
        );
        assert_eq!(s.status_files, vec![PathBuf::from("st")]);
    }

    #[test]
    fn defaults_and_clamps_follow_the_classic_tool() {
        let s = parse(&args(&[
            "./a",
            "s1",
            "n0",
            "./b",
            "s99999999999999999999999",
            "./c",
        ]))
        .unwrap();
        assert_eq!((s.dirs[0].size, s.dirs[0].num), (DEFAULT_SIZE, DEFAULT_NUM));
        assert_eq!((s.dirs[1].size, s.dirs[1].num), (MIN_SIZE, MIN_NUM));
        assert_eq!(s.dirs[2].size, MAX_SIZE);
        assert!(!s.timestamp);
    }

    #[test]
    fn an_empty_processor_turns_processing_off() {
        let s = parse(&args(&["!cat", "./a", "!", "./b"])).unwrap();
        assert!(s.dirs[0].processor.is_some());
        assert!(s.dirs[1].processor.is_none());
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for bad in [
            &[][..],
            &["x"],
            &["./a", "t"],
            &["sbig"],
            &["n"],
            &["="],
            &[""],
            &["ee"],
        ] {
            let err = parse(&args(bad)).unwrap_err();
            assert_eq!(err.kind, postern_common::Kind::Usage, "{bad:?}");
            assert!(!err.msg.contains('\n'));
        }
    }

    #[test]
    fn patterns_may_be_empty_or_any_bytes() {
        let s = parse(&[OsString::from("+"), OsString::from_vec(b"-\xff*".to_vec())]).unwrap();
        assert_eq!(
            s.actions,
            vec![Action::Select(vec![]), Action::Deselect(b"\xff*".to_vec())]
        );
    }
}
