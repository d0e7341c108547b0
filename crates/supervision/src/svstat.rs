//! `postern-svstat dir...`: one line per directory in daemontools 0.76's exact format
//!, e.g. `/service/smtpd: up (pid 1234) 5678 seconds`.
//!
//! Reads the 18-byte classic status and the 20-byte encore/runit records (their two
//! extra bytes mean different things to each, so they are not shown); encore's 40-byte
//! file gets a second line `DIR log: ...` for the log service, as encore's svstat prints.
#![forbid(unsafe_code)]

use crate::status::{self, Status, StatusFile, WANT_DOWN, WANT_UP};
use crate::svok;
use postern_common::exit::{describe_io, Error, Result, ResultExt};
use postern_common::tai64n::Tai64n;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The one-line usage message.
pub const USAGE: &str = "postern-svstat dir...";

/// The status part of a line (after `DIR: `), given whether the service is normally up.
pub fn describe(status: &Status, normally_up: bool, now: Tai64n) -> String {
    let age = now.secs.saturating_sub(status.stamp.secs);
    let mut out = if status.pid != 0 {
        format!("up (pid {}) {age} seconds", status.pid)
    } else {
        format!("down {age} seconds")
    };
    let running = status.pid != 0;
    if running && !normally_up {
        out.push_str(", normally down");
    }
    if !running && normally_up {
        out.push_str(", normally up");
    }
    if running && status.paused {
        out.push_str(", paused");
    }
    if !running && status.want == WANT_UP {
        out.push_str(", want up");
    }
    if running && status.want == WANT_DOWN {
        out.push_str(", want down");
    }
    out
}

/// Whether `dir` is normally up: no `down` file.
fn normally_up(dir: &Path) -> std::result::Result<bool, String> {
    match std::fs::metadata(dir.join("down")) {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("unable to stat down: {}", describe_io(&e))),
    }
}

/// The whole report for one directory (one line, or two for a 40-byte file), without
/// the final newline.
pub fn report(dir: &Path, now: Tai64n) -> String {
    let name = dir.display().to_string();
    let body = (|| -> std::result::Result<String, String> {
        svok::check_dir(dir).map_err(|e| format!("unable to chdir: {}", describe_io(&e)))?;
        let up = normally_up(dir)?;
        match svok::open_fifo_write(&dir.join("supervise/ok")) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err("supervise not running".into())
            }
            Err(e) => return Err(format!("unable to open supervise/ok: {}", describe_io(&e))),
        }
        let file = std::fs::File::open(dir.join("supervise/status"))
            .map_err(|e| format!("unable to open supervise/status: {}", describe_io(&e)))?;
        let mut bytes = Vec::with_capacity(status::WITH_LOG_LEN);
        file.take(status::WITH_LOG_LEN as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("unable to read supervise/status: {}", describe_io(&e)))?;
        let file = StatusFile::parse(&bytes)
            .map_err(|_| "unable to read supervise/status: bad format".to_string())?;
        let mut text = describe(&file.main(), up, now);
        if let Some(log) = file.log() {
            let log_up = normally_up(&dir.join("log")).unwrap_or(true);
            text.push_str(&format!("\n{name} log: {}", describe(&log, log_up, now)));
        }
        Ok(text)
    })();
    match body {
        Ok(text) | Err(text) => format!("{name}: {text}"),
    }
}

/// Entry point: every argument is a directory; a leading `-X` word is a usage error
/// (use `--` or `./-X` for such a directory).
pub fn main() -> Result<()> {
    let mut args: Vec<OsString> = postern_common::getopt::args();
    if args.first().map(|a| a.as_bytes() == b"--").unwrap_or(false) {
        args.remove(0);
    } else if args
        .first()
        .map(|a| a.len() > 1 && a.as_bytes()[0] == b'-')
        .unwrap_or(false)
    {
        return Err(Error::usage(USAGE));
    }
    let now = Tai64n::now();
    let mut out = String::new();
    for dir in &args {
        out.push_str(&report(Path::new(dir), now));
        out.push('\n');
    }
    io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .temp("unable to write output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::WANT_ONCE;

    fn at(secs: i64) -> Tai64n {
        Tai64n::from_unix(secs, 500)
    }

    fn st(pid: u32, paused: bool, want: u8) -> Status {
        Status {
            stamp: at(1000),
            pid,
            paused,
            want,
        }
    }

    #[test]
    fn classic_lines() {
        let now = at(1042);
        assert_eq!(
            describe(&st(1234, false, WANT_UP), true, now),
            "up (pid 1234) 42 seconds"
        );
        assert_eq!(
            describe(&st(0, false, WANT_UP), true, now),
            "down 42 seconds, normally up, want up"
        );
        assert_eq!(
            describe(&st(0, false, WANT_DOWN), true, now),
            "down 42 seconds, normally up"
        );
        assert_eq!(
            describe(&st(0, false, WANT_DOWN), false, now),
            "down 42 seconds"
        );
        assert_eq!(
            describe(&st(7, true, WANT_DOWN), false, now),
            "up (pid 7) 42 seconds, normally down, paused, want down"
        );
        assert_eq!(
            describe(&st(7, false, WANT_ONCE), true, now),
            "up (pid 7) 42 seconds"
        );
    }

    #[test]
    fn a_stamp_in_the_future_is_zero_seconds() {
        assert_eq!(
            describe(&st(0, false, WANT_DOWN), false, at(10)),
            "down 0 seconds"
        );
    }
}
