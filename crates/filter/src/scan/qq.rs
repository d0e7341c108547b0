//! qmail-queue exit codes (interop §5.2) that postern-scan uses, and running the real
//! queue injector. postern-scan sits in `$QMAILQUEUE` position, so it must answer the
//! way qmail-queue does: smtpd turns 11–40 into `554` and anything else into `451`.

use crate::scan::envelope::Envelope;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const OK: i32 = 0;
pub const ADDRESS_TOO_LONG: i32 = 11;
/// "Mail server permanently refuses": smtpd answers 554 — our refusal when the caller
/// gave no fd 6 for the reason (with one, the refusal is exit 82: `custom_error`).
pub const PERM_REFUSE: i32 = 31;
pub const WRITE_ERROR: i32 = 53;
pub const READ_ERROR: i32 = 54;
/// "Unable to read a config file": a broken filter.rules or scanners file.
pub const CONFIG_ERROR: i32 = 55;
/// "Mail server temporarily refuses": a scanner error, smtpd answers 451.
pub const TEMP_REFUSE: i32 = 71;
pub const ENVELOPE_FORMAT: i32 = 91;
/// The queue injector could not be run.
pub const NO_EXEC: i32 = 120;

/// postern-queue: next to our own executable, else through `$PATH`.
/// Not `$QMAILQUEUE`: postern-scan is what that names.
pub fn queue_program() -> PathBuf {
    postern_common::sibling::program("postern-queue")
}

/// An unnamed temporary file holding `bytes`, rewound, ready to be a child's fd.
pub fn temp_with(bytes: &[&[u8]]) -> std::io::Result<File> {
    let mut f = tempfile::tempfile()?;
    for b in bytes {
        f.write_all(b)?;
    }
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

/// Command for postern-queue with fd 0 = `message`, fd 1 = the envelope. fd 1 of
/// qmail-queue only has to be readable, so a file works and no pipe can deadlock.
pub fn queue_command(message: File, envelope: &Envelope) -> std::io::Result<Command> {
    let env_file = temp_with(&[&envelope.to_bytes()])?;
    let mut cmd = Command::new(queue_program());
    postern_common::sys::with_default_signals(&mut cmd)
        .stdin(Stdio::from(message))
        .stdout(Stdio::from(env_file));
    Ok(cmd)
}
