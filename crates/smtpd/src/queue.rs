//! Handing a message to the queue: run `$QMAILQUEUE` (default `postern-queue`) with the
//! message on its fd 0 and the envelope on its fd 1, and turn its exit code into an SMTP
//! reply — the qmail-queue protocol, its codes and replies are
//! [`postern_wire::qmail_queue`]. A program that refuses with exit 82 gives the reply's
//! text itself on fd 6, a pipe from us (notqmail's custom error,
//! [`postern_common::custom_error`]): postern-scan names the rule that refused the
//! message that way.
//!
//! What is smtpd's own: the program runs in its own process group, so a filter and
//! whatever it started can be killed together, and every write to it (waiting at most
//! the timeout for room: [`postern_common::deadline`]) and the wait for its exit have a
//! limit: a filter that hangs costs a 451 after the timeout, never a stuck session.
//! `POSTERN_PRIORITY` and `AUTHUSER` are set from the session only. The message goes in
//! qmail's form: LF line ends, no dot-stuffing.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use postern_common::{custom_error, deadline};
use postern_common::{Error, Result, ResultExt};
use postern_wire::qmail_queue::client::{self, Piped, Pipes};
use postern_wire::qmail_queue::{envelope, exit_code};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How much message text is collected before one write to the queue.
const CHUNK: usize = 64 * 1024;

/// How a queue run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: the message is safely queued. `pid` is the queue process, for the reply.
    Queued { pid: u32 },
    /// A refusal: the full SMTP reply (`451 4.3.0 …` or `554 5.3.0 …`).
    Refused { reply: String, code: Option<i32> },
}

/// The queue program: `$QMAILQUEUE`, else `postern-queue` next to our own executable,
/// else `postern-queue` from `$PATH`.
pub fn locate() -> PathBuf {
    client::queue_program()
}

/// One message on its way into the queue.
pub trait Job {
    /// More message text (LF line ends).
    fn write(&mut self, text: &[u8]) -> io::Result<()>;
    /// Close the message, send the envelope, wait for the verdict.
    fn finish(self: Box<Self>, sender: &str, rcpts: &[String]) -> Outcome;
    /// Give up: nothing may be queued.
    fn abort(self: Box<Self>);
}

/// A running queue program; our ends of its pipes are non-blocking.
pub struct QueueJob {
    queue: Piped,
    pending: Vec<u8>,
    timeout: Duration,
    broken: bool,
}

/// Start the queue program. `priority` sets `POSTERN_PRIORITY=1` (relay clients and
/// authenticated users; docs/queue.md); `auth_user` sets `AUTHUSER` for filters. Both
/// are removed from the environment otherwise, so a client cannot smuggle them in.
pub fn start(
    program: &Path,
    priority: bool,
    auth_user: Option<&str>,
    timeout: Duration,
) -> Result<QueueJob> {
    let what = format!("unable to run {}", program.display());
    let pipes = Pipes::new(true).temp("unable to make a pipe")?;
    let mut cmd = client::command(program);
    cmd.process_group(0);
    if priority {
        cmd.env("POSTERN_PRIORITY", "1");
    } else {
        cmd.env_remove("POSTERN_PRIORITY");
    }
    match auth_user {
        Some(u) => cmd.env("AUTHUSER", u),
        None => cmd.env_remove("AUTHUSER"),
    };
    for fd in pipes.ours() {
        nonblocking(fd)?;
    }
    Ok(QueueJob {
        queue: pipes.spawn(cmd).temp(what)?,
        pending: Vec::with_capacity(CHUNK),
        timeout,
        broken: false,
    })
}

fn nonblocking(fd: impl AsFd) -> Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).temp("fcntl")?);
    fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).temp("fcntl")?;
    Ok(())
}

impl QueueJob {
    pub fn pid(&self) -> u32 {
        self.queue.id()
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pipe = self
            .queue
            .message_pipe()
            .ok_or_else(|| io::Error::other("message closed"))?;
        let result = deadline::write_all(pipe, &self.pending, self.timeout);
        self.pending.clear();
        result
    }

    /// Kill the whole process group and reap the child.
    fn kill(&mut self) {
        self.queue.end_both();
        let _ = killpg(Pid::from_raw(self.queue.id() as i32), Signal::SIGKILL);
        let _ = self.queue.wait();
    }

    /// Wait for the child's exit until the deadline; `None` on timeout. The `250` waits
    /// on this, so it wakes the moment the child exits ([`deadline::wait_child`]).
    fn wait_deadline(&mut self) -> Option<std::process::ExitStatus> {
        let (pid, until) = (self.queue.id(), Instant::now() + self.timeout);
        deadline::wait_exit(pid, || self.queue.try_wait(), until)
            .ok()
            .flatten()
    }
}

impl Job for QueueJob {
    fn write(&mut self, text: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("queue failed earlier"));
        }
        self.pending.extend_from_slice(text);
        if self.pending.len() >= CHUNK {
            if let Err(e) = self.flush_pending() {
                self.broken = true;
                return Err(e);
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, sender: &str, rcpts: &[String]) -> Outcome {
        let timeout = self.timeout;
        let sent = (|| -> io::Result<()> {
            if self.broken {
                return Err(io::Error::other("queue failed earlier"));
            }
            self.flush_pending()?;
            self.queue.end_message(); // EOF on fd 0 before the envelope, as the protocol wants
            let env = envelope::encode(sender.as_bytes(), rcpts);
            let pipe = self
                .queue
                .envelope_pipe()
                .ok_or_else(|| io::Error::other("envelope closed"))?;
            deadline::write_all(pipe, &env, timeout)?;
            self.queue.end_envelope();
            Ok(())
        })();
        let timed_out = matches!(&sent, Err(e) if e.kind() == io::ErrorKind::TimedOut);
        // A refusal with qmail-smtpd's reply for `exit`, logged as exit `code`.
        let refused = |exit: Option<i32>, code: Option<i32>| Outcome::Refused {
            reply: exit_code::smtp_reply(exit).to_string(),
            code,
        };
        if timed_out {
            self.kill();
            return refused(Some(exit_code::TIMEOUT), None);
        }
        // Whatever went wrong writing, the exit code says more.
        self.queue.end_both();
        match self.wait_deadline() {
            None => {
                self.kill();
                refused(Some(exit_code::TIMEOUT), None)
            }
            Some(status) if status.code() == Some(exit_code::OK) && sent.is_ok() => {
                Outcome::Queued {
                    pid: self.queue.id(),
                }
            }
            // It says queued, but did not get the whole envelope: not believed.
            Some(status) if status.code() == Some(exit_code::OK) => {
                refused(Some(exit_code::READ_ERROR), Some(exit_code::OK))
            }
            Some(status) => {
                let code = status.code();
                let custom = if code == Some(custom_error::EXIT) {
                    self.queue.custom_error_reply()
                } else {
                    None
                };
                match custom {
                    Some(reply) => Outcome::Refused { reply, code },
                    None => refused(code, code),
                }
            }
        }
    }

    fn abort(mut self: Box<Self>) {
        self.kill();
    }
}

/// Refuse with the reason from an [`Error`] starting the queue.
pub fn start_failure(err: &Error) -> String {
    format!(
        "451 4.3.0 unable to start the queue: {}",
        postern_common::logline::printable(&err.msg)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str, message: &[u8], timeout: Duration) -> (Outcome, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("qq");
        std::fs::write(&prog, script).unwrap();
        std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut job = Box::new(start(&prog, false, None, timeout).unwrap());
        job.write(message).unwrap();
        (job.finish("s@x.test", &["r@y.test".into()]), dir)
    }

    #[test]
    fn a_queue_that_reads_both_and_exits_0() {
        let script = "#!/bin/sh\ncat > \"$(dirname \"$0\")/msg\"\ncat <&1 > \"$(dirname \"$0\")/env\"\nexit 0\n";
        let (out, dir) = run(script, b"Subject: x\n\nbody\n", Duration::from_secs(10));
        assert!(matches!(out, Outcome::Queued { .. }), "{out:?}");
        assert_eq!(
            std::fs::read(dir.path().join("msg")).unwrap(),
            b"Subject: x\n\nbody\n"
        );
        assert_eq!(
            std::fs::read(dir.path().join("env")).unwrap(),
            b"Fs@x.test\0Tr@y.test\0\0"
        );
    }

    #[test]
    fn exit_codes_and_crashes() {
        let (out, _d) = run(
            "#!/bin/sh\ncat >/dev/null\nexit 31\n",
            b"x\n",
            Duration::from_secs(10),
        );
        assert_eq!(
            out,
            Outcome::Refused {
                reply: exit_code::smtp_reply(Some(31)).to_string(),
                code: Some(31)
            }
        );
        let (out, _d) = run(
            "#!/bin/sh\nkill -SEGV $$\n",
            b"x\n",
            Duration::from_secs(10),
        );
        assert!(
            matches!(out, Outcome::Refused { ref reply, .. } if reply.starts_with("451")),
            "{out:?}"
        );
    }

    #[test]
    fn exit_82_replies_with_the_text_on_fd_6() {
        let (out, _d) = run(
            "#!/bin/sh\ncat >/dev/null\nprintf 'D5.7.1 message refused: Executable File (.exe)' >&6\nexit 82\n",
            b"x\n",
            Duration::from_secs(10),
        );
        assert_eq!(
            out,
            Outcome::Refused {
                reply: "554 5.7.1 message refused: Executable File (.exe)".into(),
                code: Some(82)
            }
        );
        // Temporary, with a line break that must not reach the client.
        let (out, _d) = run(
            "#!/bin/sh\ncat >/dev/null\nprintf 'Zscanner busy\\r\\n250 ok' >&6\nexit 82\n",
            b"x\n",
            Duration::from_secs(10),
        );
        assert!(
            matches!(&out, Outcome::Refused { reply, .. } if reply == "451 4.3.0 scanner busy 250 ok"),
            "{out:?}"
        );
        // 82 with nothing on fd 6 is a temporary problem; text without 82 is ignored.
        let (out, _d) = run(
            "#!/bin/sh\ncat >/dev/null\nexit 82\n",
            b"x\n",
            Duration::from_secs(10),
        );
        assert!(
            matches!(&out, Outcome::Refused { reply, .. } if reply == "451 4.3.0 qq temporary problem"),
            "{out:?}"
        );
        let (out, _d) = run(
            "#!/bin/sh\ncat >/dev/null\nprintf 'D5.7.1 ignored' >&6\nexit 31\n",
            b"x\n",
            Duration::from_secs(10),
        );
        assert!(
            matches!(&out, Outcome::Refused { reply, .. } if reply.starts_with("554 5.3.0 mail server")),
            "{out:?}"
        );
        // A program that keeps fd 6 open in a child does not hold the session up.
        let (out, _d) = run(
            "#!/bin/sh\ncat >/dev/null\nsleep 5 &\nprintf 'D5.7.1 no' >&6\nexit 82\n",
            b"x\n",
            Duration::from_secs(10),
        );
        assert!(
            matches!(&out, Outcome::Refused { reply, .. } if reply == "554 5.7.1 no"),
            "{out:?}"
        );
    }

    #[test]
    fn a_hanging_queue_times_out() {
        let (out, _d) = run("#!/bin/sh\nsleep 30\n", b"x\n", Duration::from_millis(300));
        assert_eq!(
            out,
            Outcome::Refused {
                reply: "451 4.3.0 qq timeout".into(),
                code: None
            }
        );
    }
}
