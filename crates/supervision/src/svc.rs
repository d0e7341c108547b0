//! `postern-svc [-udopchaitkxq12w] [-w up|down SECS] dir...`: send commands to the
//! supervise of each directory, and optionally wait for a state.
//!
//! The letters are collected in command-line order with duplicates dropped and written
//! to each `DIR/supervise/control` in one write, as 0.76 does. A directory that cannot
//! be controlled is a warning, not a failure (exit 0), like the classic svc.
//!
//! `-w` is both WINCH and "wait": when the word after a `-w` (at the end of its group)
//! is `up` or `down`, the next word is a number of seconds, and svc waits until every
//! directory is in that state, exiting 111 if one is not in time.
#![forbid(unsafe_code)]

use crate::status::{self, StatusFile};
use crate::svok;
use postern_common::exit::{self, describe_io, Error, Result};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

const PROG: &str = "postern-svc";
/// The one-line usage message (after `postern-svc: usage: `).
pub const USAGE: &str = "postern-svc [-udopchaitkxq12w] [-w up|down SECS] dir...";
/// The command letters, all of them one control byte each.
pub const LETTERS: &[u8] = b"udopchaitkxq12w";
/// Longest wait `-w` accepts, in seconds.
pub const MAX_WAIT_SECS: u64 = 86_400;
/// How often `-w` looks at the status file while waiting.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// The state `-w` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A supervise runs and its service has a pid.
    Up,
    /// The status says no process runs.
    Down,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Control bytes in order, without duplicates.
    pub letters: Vec<u8>,
    /// `-w up|down SECS`.
    pub wait: Option<(Target, u64)>,
    pub dirs: Vec<OsString>,
}

/// Parse the arguments (without the program name).
pub fn parse(args: &[OsString]) -> Result<Request> {
    let mut letters = Vec::new();
    let mut wait = None;
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_bytes();
        if word == b"--" {
            i += 1;
            break;
        }
        if word.len() < 2 || word[0] != b'-' {
            break;
        }
        for (j, &c) in word.iter().enumerate().skip(1) {
            let last = j + 1 == word.len();
            let target = match args.get(i + 1).map(|a| a.as_bytes()) {
                Some(b"up") => Some(Target::Up),
                Some(b"down") => Some(Target::Down),
                _ => None,
            };
            if let (b'w', true, Some(target)) = (c, last, target) {
                let secs = args
                    .get(i + 2)
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u64>().ok());
                match secs {
                    Some(secs) if secs <= MAX_WAIT_SECS => wait = Some((target, secs)),
                    _ => return Err(Error::usage(USAGE)),
                }
                i += 2;
            } else if LETTERS.contains(&c) {
                if !letters.contains(&c) {
                    letters.push(c);
                }
            } else {
                return Err(Error::usage(USAGE));
            }
        }
        i += 1;
    }
    Ok(Request {
        letters,
        wait,
        dirs: args[i..].to_vec(),
    })
}

/// Write `letters` to `dir`'s control FIFO in one write.
pub fn control(dir: &Path, letters: &[u8]) -> std::result::Result<(), String> {
    let name = dir.display();
    let mut fifo = match svok::open_fifo_write(&dir.join("supervise/control")) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(format!("unable to control {name}: supervise not running"))
        }
        Err(e) => return Err(format!("unable to control {name}: {}", describe_io(&e))),
    };
    fifo.write_all(letters)
        .map_err(|e| format!("error writing commands to {name}: {}", describe_io(&e)))
}

/// Whether `dir` is in the `target` state now.
pub fn in_state(dir: &Path, target: Target) -> bool {
    let Ok(bytes) = status::read(&dir.join("supervise/status")) else {
        return false;
    };
    let Ok(file) = StatusFile::parse(&bytes) else {
        return false;
    };
    match target {
        Target::Up => file.main().pid != 0 && svok::supervise_running(dir).unwrap_or(false),
        Target::Down => file.main().pid == 0,
    }
}

/// Entry point.
pub fn main() -> Result<()> {
    let req = parse(&postern_common::getopt::args())?;
    if !req.letters.is_empty() {
        for dir in &req.dirs {
            if let Err(msg) = control(Path::new(dir), &req.letters) {
                exit::warn(PROG, msg);
            }
        }
    }
    if let Some((target, secs)) = req.wait {
        let deadline = Instant::now() + Duration::from_secs(secs);
        for dir in &req.dirs {
            let dir = Path::new(dir);
            while !in_state(dir, target) {
                if Instant::now() >= deadline {
                    let state = if target == Target::Up { "up" } else { "down" };
                    return Err(Error::temp(format!(
                        "timed out after {secs} seconds waiting for {} to be {state}",
                        dir.display()
                    )));
                }
                std::thread::sleep(WAIT_POLL);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn letters_keep_order_and_drop_duplicates() {
        let req = parse(&words("-dx -ud -k a b")).unwrap();
        assert_eq!(req.letters, b"dxuk");
        assert_eq!(req.dirs, words("a b"));
        assert_eq!(req.wait, None);
    }

    #[test]
    fn all_letters_are_accepted() {
        let req = parse(&words("-udopchaitkxq12w s")).unwrap();
        assert_eq!(req.letters, LETTERS);
    }

    #[test]
    fn w_before_up_or_down_waits() {
        let req = parse(&words("-u -w up 5 s")).unwrap();
        assert_eq!(req.letters, b"u");
        assert_eq!(req.wait, Some((Target::Up, 5)));
        assert_eq!(req.dirs, words("s"));
        let req = parse(&words("-dw down 3 s t")).unwrap();
        assert_eq!(req.letters, b"d");
        assert_eq!(req.wait, Some((Target::Down, 3)));
        assert_eq!(req.dirs, words("s t"));
    }

    #[test]
    fn w_otherwise_is_winch() {
        let req = parse(&words("-w s")).unwrap();
        assert_eq!(req.letters, b"w");
        assert_eq!(req.dirs, words("s"));
        let req = parse(&words("-wk up")).unwrap();
        assert_eq!(req.letters, b"wk");
        assert_eq!(req.dirs, words("up"));
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for bad in ["-z s", "-w up s", "-w down -1 s", "-w up 99999999 s"] {
            let err = parse(&words(bad)).unwrap_err();
            assert_eq!(err.kind, postern_common::Kind::Usage, "{bad}");
            assert_eq!(err.msg, USAGE);
        }
    }

    #[test]
    fn double_dash_ends_options() {
        let req = parse(&words("-u -- -d")).unwrap();
        assert_eq!(req.letters, b"u");
        assert_eq!(req.dirs, words("-d"));
    }
}
