//! Running a qmail-queue program as its caller: `$QMAILQUEUE` if set, else the
//! `postern-queue` next to the running program, else `postern-queue` on `$PATH`. The
//! message goes to the child's fd 0 and, after it is closed, the envelope to its fd 1
//! (a pipe whose read end is the child's fd 1). Used by postern-inject, and by anything
//! else that injects mail (bounces).
//!
//! If the caller cannot produce the whole message (its own input fails), the envelope is
//! never written: the queue program sees EOF on fd 1 and queues nothing.

use crate::protocol::encode_envelope;
use crate::qq;
use postern_common::{Error, Result};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};

/// The program name looked for next to ourselves and on `$PATH`.
pub const QUEUE_PROGRAM: &str = "postern-queue";

/// Which queue program to run: `$QMAILQUEUE` (a single path, no arguments), else
/// `postern-queue` in the directory of the running executable, else on `$PATH`.
pub fn queue_program() -> OsString {
    postern_common::sibling::queue_program().into_os_string()
}

/// Why an injection did not happen.
#[derive(Debug)]
pub enum Failure {
    /// Producing the message failed (our own input): nothing was queued.
    Input(Error),
    /// The queue program refused or failed; the error says how (perm or temp).
    Queue(Error),
}

impl Failure {
    pub fn into_error(self) -> Error {
        match self {
            Failure::Input(e) | Failure::Queue(e) => e,
        }
    }
}

/// Run `program`, feed it the message written by `write_message` and the envelope, and
/// turn its exit status into `Ok` or an error: codes 11–40 permanent, others temporary,
/// with qmail.c's texts. `write_message` returns `Err` for trouble with *its* input; write
/// errors towards the child (it died early) are ignored in favour of its exit code.
pub fn inject<F>(
    program: &OsString,
    sender: &[u8],
    recipients: &[Vec<u8>],
    write_message: F,
) -> std::result::Result<(), Failure>
where
    F: FnOnce(&mut MessageSink) -> Result<()>,
{
    // O_CLOEXEC: neither the queue program nor any other child may inherit the write
    // end, or the queue program would never see EOF on its envelope.
    let (env_read, env_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Failure::Queue(Error::temp(format!("unable to make a pipe: {}", e.desc()))))?;
    let mut child = postern_common::sys::with_default_signals(&mut Command::new(program))
        .stdin(Stdio::piped())
        .stdout(Stdio::from(env_read))
        .spawn()
        .map_err(|e| {
            Failure::Queue(Error::temp(format!(
                "unable to run {}: {} (#4.3.0)",
                PathBuf::from(program).display(),
                postern_common::exit::describe_io(&e)
            )))
        })?;
    let stdin = child.stdin.take().expect("piped stdin");
    let mut sink = MessageSink { inner: Some(stdin) };
    let produced = write_message(&mut sink);
    drop(sink); // EOF on the child's fd 0
    let mut env_pipe = std::fs::File::from(env_write);
    if produced.is_ok() {
        let _ = env_pipe.write_all(&encode_envelope(sender, recipients));
    }
    drop(env_pipe);
    let status = child
        .wait()
        .map_err(|e| Failure::Queue(Error::io("unable to wait for the queue program", &e)))?;
    produced.map_err(Failure::Input)?;
    match (status.code(), status.signal()) {
        (Some(qq::OK), _) => Ok(()),
        (Some(code), _) => {
            let text = format!("{} (exit {code})", qq::describe(code));
            Err(Failure::Queue(if qq::is_permanent(code) {
                Error::perm(text)
            } else {
                Error::temp(text)
            }))
        }
        (None, sig) => Err(Failure::Queue(Error::temp(format!(
            "the queue program was killed by signal {} (#4.3.0)",
            sig.unwrap_or(0)
        )))),
    }
}

/// Where the message goes: the child's fd 0. Writes after the child has gone (EPIPE)
/// are swallowed; its exit status tells the story.
pub struct MessageSink {
    inner: Option<ChildStdin>,
}

impl Write for MessageSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(w) = self.inner.as_mut() {
            if w.write_all(buf).is_err() {
                self.inner = None;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
