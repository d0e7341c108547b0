//! multilog never drops a line: when the disk fails (full, read-only, an I/O error) it
//! says so on stderr and tries the same operation again after [`PAUSE`], forever, as
//! daemontools 0.76 does. Meanwhile it reads no input, so the writer blocks on the pipe
//! instead of losing log lines.

use postern_common::exit::{describe_io, warn};
use std::fmt;
use std::io;
use std::time::Duration;

/// The name warnings start with.
pub const PROG: &str = "postern-multilog";

/// How long to wait before trying a failed operation again.
pub const PAUSE: Duration = Duration::from_secs(5);

/// Run `op` until it succeeds. Each failure prints
/// `postern-multilog: warning: WHAT: WHY, pausing` and waits [`PAUSE`].
pub fn retry<T>(what: impl fmt::Display, mut op: impl FnMut() -> io::Result<T>) -> T {
    loop {
        match op() {
            Ok(v) => return v,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn(PROG, format_args!("{what}: {}, pausing", describe_io(&e)));
                std::thread::sleep(PAUSE);
            }
        }
    }
}

/// Warn that `what` went wrong (no I/O error to describe) and wait [`PAUSE`].
pub fn pause(what: impl fmt::Display) {
    warn(PROG, format_args!("{what}, pausing"));
    std::thread::sleep(PAUSE);
}
