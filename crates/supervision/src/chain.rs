//! The last step of every chain-loading helper: replace this process with the child
//! program. `exec` only returns on failure, which is temporary trouble (exit 111), as in
//! the classic tools: the program may appear later (an upgrade in progress).

use postern_common::{Error, Result};
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Replace the process with `argv[0]` (searched in `$PATH`) and its arguments.
pub fn exec(argv: &[OsString]) -> Result<()> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| Error::usage("no program to run"))?;
    let err = Command::new(program).args(args).exec();
    Err(Error::io(
        format!("unable to run {}", program.to_string_lossy()),
        &err,
    ))
}
