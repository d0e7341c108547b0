//! Running a `!processor` over a rotated file, with the classic file
//! descriptors: fd 0 reads `previous`, fd 1 writes `processed` (truncated), fd 4 reads
//! `state`, fd 5 writes `newstate` (truncated); the working directory is the log
//! directory. The command runs as `/bin/sh -c processor`.
//!
//! Only when it exits 0 are its results made durable and committed: `processed` is
//! fsynced and marked complete (0744), `newstate` fsynced, `previous` removed,
//! `newstate` renamed to `state`, and `processed` archived as `.s`. A failure is
//! retried after a pause, forever: the rotated log is never dropped.
//!
//! fds 4 and 5 are set up by the shell (`exec ... 4<state 5>newstate`), which keeps this
//! crate free of `unsafe` (no `pre_exec` of its own). std does not reset the signal mask
//! in the child, so the processor is started through `with_default_signals`: it must
//! not inherit multilog's blocked TERM and ALRM.

use super::archive::{finish, Code};
use super::retry::{pause, retry};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

/// The shell that runs processors.
pub const SHELL: &str = "/bin/sh";

/// Opens fds 4 and 5, then becomes `sh -c processor` (`$1`).
const WRAPPER: &str = "exec /bin/sh -c \"$1\" 4<state 5>newstate";

/// Run `processor` over `dir/previous` until it succeeds, then commit and archive.
pub fn process(dir: &Path, processor: &OsStr, num: u64) {
    let show = dir.display();
    loop {
        let spawned = (|| {
            let input = File::open(dir.join("previous"))?;
            let output = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(dir.join("processed"))?;
            postern_common::sys::with_default_signals(&mut Command::new(SHELL))
                .arg("-c")
                .arg(WRAPPER)
                .arg("multilog-processor")
                .arg(processor)
                .current_dir(dir)
                .stdin(Stdio::from(input))
                .stdout(Stdio::from(output))
                .status()
        })();
        match spawned {
            Ok(status) if status.success() => break,
            Ok(status) => pause(format_args!("processor failed in {show} ({status})")),
            Err(e) => pause(format_args!(
                "unable to run processor in {show}: {}",
                postern_common::exit::describe_io(&e)
            )),
        }
    }
    let processed = dir.join("processed");
    retry(
        format_args!("unable to write {show}/processed to disk"),
        || {
            let f = OpenOptions::new().append(true).open(&processed)?;
            f.sync_all()?;
            f.set_permissions(fs::Permissions::from_mode(0o744))
        },
    );
    let newstate = dir.join("newstate");
    retry(
        format_args!("unable to write {show}/newstate to disk"),
        || OpenOptions::new().append(true).open(&newstate)?.sync_all(),
    );
    retry(
        format_args!("unable to remove {show}/previous"),
        || match fs::remove_file(dir.join("previous")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    );
    retry(
        format_args!("unable to rename newstate to state in {show}"),
        || fs::rename(&newstate, dir.join("state")),
    );
    finish(dir, "processed", Code::Safe, num);
}
