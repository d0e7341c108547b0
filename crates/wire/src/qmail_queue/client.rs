//! Running a queue program as its caller: which program ([`queue_program`],
//! [`postern_queue`]), its descriptors, and what its exit status means.
//!
//! Two ways to feed it:
//! - **Pipes** ([`Pipes`] → [`Piped`]): the message streams into fd 0, which is closed
//!   (EOF), then the envelope goes into fd 1; with [`Pipes::new`]`(true)` a third pipe is
//!   its fd 6 for notqmail's custom error. Our ends are close-on-exec, so no other child
//!   holds them: the program sees EOF when we close them, and a caller that cannot
//!   produce the whole message closes fd 1 without an envelope, so nothing is queued.
//!   [`inject`] is the whole exchange for a program (postern-inject, bounces, forwards);
//!   postern-smtpd drives [`Piped`] itself, under its own deadlines.
//! - **Files** ([`command_with_files`]): message and envelope in two rewound files. fd 1
//!   of qmail-queue only has to be readable, so nothing can block between the two sides:
//!   postern-scan `exec`s it, the alert mails wait for it at leisure.
//!
//! Every queue program starts with default signal handling
//! (`postern_common::sys::with_default_signals`): postern-ratelimit keeps HUP and TERM
//! blocked for its signalfd, and a blocked mask survives `exec`.

use super::envelope::{self, Envelope};
use super::exit_code;
use postern_common::exit::describe_io;
use postern_common::{custom_error, Error, Result};
use std::fs::File;
use std::io::{self, PipeReader, PipeWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// The queue program's name, looked for beside the running program and on `$PATH`.
pub const POSTERN_QUEUE: &str = "postern-queue";

/// The program a message goes to: `$QMAILQUEUE` (a single path, no arguments), else
/// postern-queue beside the running program, else postern-queue on `$PATH`.
pub fn queue_program() -> PathBuf {
    postern_common::sibling::queue_program()
}

/// postern-queue itself (beside us, else on `$PATH`), never `$QMAILQUEUE`: for
/// postern-scan, which is what `$QMAILQUEUE` names, and for its alert mails.
pub fn postern_queue() -> PathBuf {
    postern_common::sibling::program(POSTERN_QUEUE)
}

/// A command for the queue program `program`, with default signal handling. The caller
/// adds what is its own (environment, process group) and the descriptors come from
/// [`Pipes::spawn`] or [`command_with_files`].
pub fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    postern_common::sys::with_default_signals(&mut cmd);
    cmd
}

/// The queue program reading `message` (its parts one after another) and `envelope` from
/// two files made by `new_file` (an unnamed temporary file such as
/// `tempfile::tempfile`), written and rewound.
pub fn command_with_files(
    program: &Path,
    message: &[&[u8]],
    envelope: &Envelope,
    mut new_file: impl FnMut() -> io::Result<File>,
) -> io::Result<Command> {
    let message = filled(new_file()?, message)?;
    let envelope = filled(new_file()?, &[&envelope.encode()])?;
    let mut cmd = command(program);
    cmd.stdin(Stdio::from(message))
        .stdout(Stdio::from(envelope));
    Ok(cmd)
}

fn filled(mut file: File, parts: &[&[u8]]) -> io::Result<File> {
    for part in parts {
        file.write_all(part)?;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// The pipes for one run, made before the program starts (so a caller can tell "unable
/// to make a pipe" from "unable to run").
pub struct Pipes {
    message: (PipeReader, PipeWriter),
    envelope: (PipeReader, PipeWriter),
    custom_error: Option<(PipeReader, PipeWriter)>,
}

impl Pipes {
    /// Pipes for fd 0 and fd 1, and with `custom_error` one for fd 6.
    pub fn new(custom_error: bool) -> io::Result<Pipes> {
        Ok(Pipes {
            message: io::pipe()?,
            envelope: io::pipe()?,
            custom_error: if custom_error {
                Some(io::pipe()?)
            } else {
                None
            },
        })
    }

    /// Our ends of the pipes (to make them non-blocking before the program starts).
    pub fn ours(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        [self.message.1.as_fd(), self.envelope.1.as_fd()]
            .into_iter()
            .chain(self.custom_error.as_ref().map(|(r, _)| r.as_fd()))
    }

    /// Start `cmd` (from [`command`]) with the pipes as its descriptors. Its ends are
    /// closed in this process once it runs.
    pub fn spawn(self, mut cmd: Command) -> io::Result<Piped> {
        let Pipes {
            message: (message_r, message_w),
            envelope: (envelope_r, envelope_w),
            custom_error,
        } = self;
        cmd.stdin(Stdio::from(message_r))
            .stdout(Stdio::from(envelope_r));
        let (reason_r, reason_w) = custom_error.unzip();
        if let Some(w) = &reason_w {
            postern_common::sys::give_fd_as(&mut cmd, w.as_raw_fd(), custom_error::FD);
        }
        let child = cmd.spawn()?;
        // The command holds the child's ends of fd 0 and fd 1: while we held a reader of
        // fd 0, writing to a program that died would block instead of failing.
        drop(cmd);
        drop(reason_w);
        Ok(Piped {
            child,
            message: Some(message_w),
            envelope: Some(envelope_w),
            custom_error: reason_r,
        })
    }
}

/// A queue program running with pipes as its fd 0, fd 1 (and fd 6). The protocol's
/// order: write the message, [`Piped::end_message`], write the envelope,
/// [`Piped::end_envelope`], wait.
pub struct Piped {
    child: Child,
    message: Option<PipeWriter>,
    envelope: Option<PipeWriter>,
    custom_error: Option<PipeReader>,
}

impl Piped {
    /// The queue program's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Our end of its fd 0, until the message is ended.
    pub fn message_pipe(&mut self) -> Option<&mut PipeWriter> {
        self.message.as_mut()
    }

    /// Our end of its fd 1, until the envelope is ended. Write to it only after
    /// [`Piped::end_message`] (a caller may want it earlier to set it non-blocking).
    pub fn envelope_pipe(&mut self) -> Option<&mut PipeWriter> {
        self.envelope.as_mut()
    }

    /// Our end of its fd 6, when asked for.
    pub fn custom_error_pipe(&mut self) -> Option<&mut PipeReader> {
        self.custom_error.as_mut()
    }

    /// Close fd 0: the message is complete (EOF), and the envelope may follow.
    pub fn end_message(&mut self) {
        self.message = None;
    }

    /// Close fd 1. Without an envelope written, that is EOF where it should be: the
    /// program queues nothing.
    pub fn end_envelope(&mut self) {
        self.envelope = None;
    }

    /// Close fd 0 and fd 1.
    pub fn end_both(&mut self) {
        self.end_message();
        self.end_envelope();
    }

    /// The reply a program that exited 82 left on its fd 6, if it is a good record
    /// (`custom_error::reply`). Read after the exit: whatever it wrote is in the pipe by
    /// then. Make the pipe non-blocking first, or a child of the program that kept the
    /// descriptor can hold the caller up.
    pub fn custom_error_reply(&mut self) -> Option<String> {
        let pipe = self.custom_error.as_mut()?;
        let mut record = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        while record.len() < custom_error::MAX_RECORD {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => record.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: nothing more was written
            }
        }
        custom_error::reply(&record)
    }

    /// Its exit status, if it has ended.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Wait for it to end.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }
}

/// What a queue program's exit status means to a calling program: `Ok` when queued, else
/// why not — permanent for 11–40, temporary otherwise ([`exit_code::describe`]).
pub fn status_result(status: ExitStatus) -> Result<()> {
    match (status.code(), status.signal()) {
        (Some(exit_code::OK), _) => Ok(()),
        (Some(code), _) => {
            let text = format!("{} (exit {code})", exit_code::describe(code));
            Err(if exit_code::is_permanent(code) {
                Error::perm(text)
            } else {
                Error::temp(text)
            })
        }
        (None, sig) => Err(Error::temp(format!(
            "the queue program was killed by signal {} (#4.3.0)",
            sig.unwrap_or(0)
        ))),
    }
}

/// Why an injection did not happen.
#[derive(Debug)]
pub enum Failure {
    /// Producing the message failed (the caller's own input): nothing was queued.
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

/// Queue one message through `program` ([`queue_program`] for most callers): feed it the
/// message written by `write_message`, then the envelope, and turn its exit status into
/// `Ok` or an error ([`status_result`]). `write_message` returns `Err` for trouble with
/// *its* input, and then no envelope is sent; write errors towards the program (it died
/// early) are ignored in favour of its exit code.
pub fn inject<R, F>(
    program: impl AsRef<Path>,
    sender: &[u8],
    recipients: &[R],
    write_message: F,
) -> std::result::Result<(), Failure>
where
    R: AsRef<[u8]>,
    F: FnOnce(&mut MessageSink) -> Result<()>,
{
    let program = program.as_ref();
    let pipes = Pipes::new(false).map_err(|e| {
        Failure::Queue(Error::temp(format!(
            "unable to make a pipe: {}",
            without_os_error(&e)
        )))
    })?;
    let mut queue = pipes.spawn(command(program)).map_err(|e| {
        Failure::Queue(Error::temp(format!(
            "unable to run {}: {} (#4.3.0)",
            program.display(),
            describe_io(&e)
        )))
    })?;
    let mut sink = MessageSink {
        inner: queue.message.take(),
    };
    let produced = write_message(&mut sink);
    drop(sink); // EOF on the program's fd 0
    if let (Ok(()), Some(pipe)) = (&produced, queue.envelope_pipe()) {
        let _ = pipe.write_all(&envelope::encode(sender, recipients));
    }
    queue.end_envelope();
    let status = queue
        .wait()
        .map_err(|e| Failure::Queue(Error::io("unable to wait for the queue program", &e)))?;
    produced.map_err(Failure::Input)?;
    status_result(status).map_err(Failure::Queue)
}

/// An error's text as `strerror` words it, without std's "(os error N)".
fn without_os_error(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Where [`inject`]'s message goes: the program's fd 0. Writes after the program has
/// gone (EPIPE) are swallowed; its exit status tells the story.
pub struct MessageSink {
    inner: Option<PipeWriter>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A queue program from a shell script, in a directory of its own.
    fn script(text: &str) -> (PathBuf, tempdir::Dir) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("qq");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (path, dir)
    }

    /// A scratch directory removed on drop (the crate has no tempfile dependency).
    mod tempdir {
        use std::path::PathBuf;
        pub struct Dir(pub PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "postern-wire-qq-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const RECORDER: &str =
        "#!/bin/sh\ncat > \"$(dirname \"$0\")/msg\"\ncat <&1 > \"$(dirname \"$0\")/env\"\nexit 0\n";

    #[test]
    fn inject_sends_the_message_then_the_envelope() {
        let (qq, dir) = script(RECORDER);
        inject(&qq, b"s@x.test", &["r@y.test"], |sink| {
            sink.write_all(b"Subject: x\n\nbody\n").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(
            std::fs::read(dir.0.join("msg")).unwrap(),
            b"Subject: x\n\nbody\n"
        );
        assert_eq!(
            std::fs::read(dir.0.join("env")).unwrap(),
            b"Fs@x.test\0Tr@y.test\0\0"
        );
    }

    #[test]
    fn inject_without_the_whole_message_sends_no_envelope() {
        let (qq, dir) = script(RECORDER);
        let result = inject(&qq, b"", &[b"r@y.test".to_vec()], |sink| {
            sink.write_all(b"half").unwrap();
            Err(Error::temp(
                "unable to read the message: input/output error",
            ))
        });
        assert!(matches!(result, Err(Failure::Input(_))), "{result:?}");
        assert_eq!(std::fs::read(dir.0.join("env")).unwrap(), b"");
    }

    #[test]
    fn exit_codes_become_permanent_or_temporary_errors() {
        let (qq, _dir) = script("#!/bin/sh\ncat >/dev/null\nexit 31\n");
        let e = inject(&qq, b"", &["r@y"], |_| Ok(()))
            .unwrap_err()
            .into_error();
        assert_eq!(e.kind, postern_common::Kind::Perm);
        assert_eq!(
            e.msg,
            "qq refused the message: envelope over the limits (#5.3.4) (exit 31)"
        );
        let (qq, _dir) = script("#!/bin/sh\nexit 53\n");
        let e = inject(&qq, b"", &["r@y"], |_| Ok(()))
            .unwrap_err()
            .into_error();
        assert_eq!(e.kind, postern_common::Kind::Temp);
        let (qq, _dir) = script("#!/bin/sh\nkill -KILL $$\n");
        let e = inject(&qq, b"", &["r@y"], |_| Ok(()))
            .unwrap_err()
            .into_error();
        assert_eq!(e.msg, "the queue program was killed by signal 9 (#4.3.0)");
        let e = inject("/nonexistent/qq", b"", &["r@y"], |_| Ok(()))
            .unwrap_err()
            .into_error();
        assert_eq!(
            e.msg,
            "unable to run /nonexistent/qq: no such file or directory (#4.3.0)"
        );
    }

    #[test]
    fn the_reason_on_fd_6() {
        let (qq, _dir) = script("#!/bin/sh\ncat >/dev/null\nprintf 'D5.7.1 no' >&6\nexit 82\n");
        let mut queue = Pipes::new(true).unwrap().spawn(command(&qq)).unwrap();
        queue.end_both();
        let status = queue.wait().unwrap();
        assert_eq!(status.code(), Some(exit_code::CUSTOM_ERROR));
        assert_eq!(queue.custom_error_reply().as_deref(), Some("554 5.7.1 no"));
    }

    #[test]
    fn files_feed_a_program_that_may_be_waited_for_later() {
        let (qq, dir) = script(RECORDER);
        let env = Envelope::new(b"\xfcs@x", &[b"r@y"]);
        let mut n = 0;
        let mut cmd = command_with_files(&qq, &[b"a\n", b"b\n"], &env, || {
            n += 1;
            File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(dir.0.join(format!("file{n}")))
        })
        .unwrap();
        assert!(cmd.status().unwrap().success());
        assert_eq!(std::fs::read(dir.0.join("msg")).unwrap(), b"a\nb\n");
        assert_eq!(std::fs::read(dir.0.join("env")).unwrap(), env.encode());
    }
}
