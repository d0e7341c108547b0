//! Handing a message to the queue: run `$QMAILQUEUE` (default `postern-queue`) with the
//! message on its fd 0 and the envelope on its fd 1 (the qmail-queue protocol), and turn
//! its exit code into an SMTP reply (qmail's table, [`reply_for_exit`]). A program that
//! refuses with exit 82 gives the reply's text itself on fd 6, a pipe from us
//! (notqmail's custom error, [`postern_common::custom_error`]): postern-scan names the
//! rule that refused the message that way.
//!
//! The program runs in its own process group, so a filter and whatever it started can be
//! killed together. Every write to it and the wait for its exit have a deadline: a filter
//! that hangs costs a 451 after the timeout, never a stuck session. The message goes in
//! qmail's form: LF line ends, no dot-stuffing.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use postern_common::custom_error;
use postern_common::{Error, Result, ResultExt};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program run when `QMAILQUEUE` is not set.
pub const DEFAULT_QUEUE: &str = "postern-queue";
/// Longest envelope address the qmail-queue protocol takes (exit 11 at 1003 with NUL).
pub const MAX_ENVELOPE_ADDRESS: usize = 1002;
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

/// The SMTP reply for a qmail-queue exit code (qmail's qmail.c table; 11–40 permanent,
/// anything else temporary). `None` is a crash. Exit 82 with a good record on fd 6 is
/// answered by [`custom_error::reply`] instead; without one it is temporary.
pub fn reply_for_exit(code: Option<i32>) -> String {
    let Some(code) = code else {
        return "451 4.3.0 qq crashed".to_string();
    };
    let text = match code {
        11 | 115 => "554 5.1.3 envelope address too long for qq",
        31 => "554 5.3.0 mail server permanently rejected message",
        51 => "451 4.3.0 qq out of memory",
        52 => "451 4.3.0 qq timeout",
        53 => "451 4.3.0 qq write error or disk full",
        54 => "451 4.3.0 qq read error",
        55 => "451 4.3.0 qq unable to read configuration",
        56 => "451 4.4.3 qq trouble making network connection",
        61 => "451 4.3.0 qq trouble in home directory",
        62..=66 => "451 4.3.0 qq trouble in the queue directory",
        71 => "451 4.3.0 mail server temporarily rejected message",
        72 => "451 4.4.1 connection to mail server timed out",
        73 => "451 4.4.1 connection to mail server rejected",
        74 => "451 4.4.2 communication with mail server failed",
        81 => "451 4.3.0 qq internal bug",
        91 => "451 4.3.0 qq envelope format error",
        120 => "451 4.3.0 unable to exec qq",
        12..=40 => "554 5.3.0 qq permanent problem",
        _ => "451 4.3.0 qq temporary problem",
    };
    text.to_string()
}

/// The queue program: `$QMAILQUEUE`, else `postern-queue` next to our own executable,
/// else `postern-queue` from `$PATH`.
pub fn locate() -> PathBuf {
    postern_common::sibling::queue_program()
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

/// A running queue program.
pub struct QueueJob {
    child: Child,
    message: Option<File>,
    envelope: Option<File>,
    /// Our end of the custom-error pipe (the program's fd 6), non-blocking.
    custom_error: File,
    pending: Vec<u8>,
    timeout: Duration,
    broken: bool,
}

/// Start the queue program. `priority` sets `POSTERN_PRIORITY=1` (relay clients and
/// authenticated users; docs/queue.md); `auth_user` sets `AUTHUSER` for filters. Both
/// are removed from the environment otherwise, so a client cannot smuggle them in.
pub fn start(
    program: &PathBuf,
    priority: bool,
    auth_user: Option<&str>,
    timeout: Duration,
) -> Result<QueueJob> {
    let what = format!("unable to run {}", program.display());
    let (msg_r, msg_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).temp("unable to make a pipe")?;
    let (env_r, env_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).temp("unable to make a pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).temp("unable to make a pipe")?;
    nonblocking(&msg_w)?;
    nonblocking(&env_w)?;
    nonblocking(&err_r)?;
    let mut cmd = Command::new(program);
    postern_common::sys::with_default_signals(&mut cmd)
        .stdin(Stdio::from(msg_r))
        .stdout(Stdio::from(env_r))
        .process_group(0);
    postern_common::sys::give_fd_as(&mut cmd, err_w.as_raw_fd(), custom_error::FD);
    if priority {
        cmd.env("POSTERN_PRIORITY", "1");
    } else {
        cmd.env_remove("POSTERN_PRIORITY");
    }
    match auth_user {
        Some(u) => cmd.env("AUTHUSER", u),
        None => cmd.env_remove("AUTHUSER"),
    };
    let child = cmd.spawn().temp(what)?;
    drop(err_w);
    Ok(QueueJob {
        child,
        message: Some(File::from(msg_w)),
        envelope: Some(File::from(env_w)),
        custom_error: File::from(err_r),
        pending: Vec::with_capacity(CHUNK),
        timeout,
        broken: false,
    })
}

fn nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).temp("fcntl")?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).temp("fcntl")?;
    Ok(())
}

/// Write all of `data` to a non-blocking pipe, waiting at most `timeout` for room each
/// time it is full.
fn write_with_deadline(file: &mut File, mut data: &[u8], timeout: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match file.write(data) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "queue closed its input",
                ))
            }
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLOUT)];
                let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
                match poll(&mut fds, t) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "queue does not read",
                        ))
                    }
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(io::Error::from(e)),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The envelope in the qmail-queue format: `F<sender>\0`, `T<rcpt>\0`…, `\0`.
pub fn envelope(sender: &str, rcpts: &[String]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(2 + sender.len() + rcpts.iter().map(|r| r.len() + 2).sum::<usize>() + 1);
    out.push(b'F');
    out.extend_from_slice(sender.as_bytes());
    out.push(0);
    for r in rcpts {
        out.push(b'T');
        out.extend_from_slice(r.as_bytes());
        out.push(0);
    }
    out.push(0);
    out
}

impl QueueJob {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = self
            .message
            .as_mut()
            .ok_or_else(|| io::Error::other("message closed"))?;
        let result = write_with_deadline(file, &self.pending, self.timeout);
        self.pending.clear();
        result
    }

    /// Kill the whole process group and reap the child.
    fn kill(&mut self) {
        self.message = None;
        self.envelope = None;
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// The reply a program that exited 82 left on its fd 6, if it is a good record. Read
    /// after the exit and without blocking: whatever it wrote is in the pipe by then, and
    /// a child of its that kept the descriptor cannot make us wait.
    fn custom_reply(&mut self) -> Option<String> {
        let mut record = Vec::with_capacity(256);
        let mut buf = [0u8; 512];
        while record.len() < custom_error::MAX_RECORD {
            match self.custom_error.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => record.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break, // WouldBlock: nothing more was written
            }
        }
        custom_error::reply(&record)
    }

    /// Wait for the child's exit until the deadline; `None` on timeout.
    fn wait_deadline(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(_) => return None,
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
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
        let sent = (|| -> io::Result<()> {
            if self.broken {
                return Err(io::Error::other("queue failed earlier"));
            }
            self.flush_pending()?;
            self.message = None; // EOF on fd 0 before the envelope, as the protocol wants
            let env = envelope(sender, rcpts);
            let file = self
                .envelope
                .as_mut()
                .ok_or_else(|| io::Error::other("envelope closed"))?;
            write_with_deadline(file, &env, self.timeout)?;
            self.envelope = None;
            Ok(())
        })();
        let timed_out = matches!(&sent, Err(e) if e.kind() == io::ErrorKind::TimedOut);
        if timed_out {
            self.kill();
            return Outcome::Refused {
                reply: "451 4.3.0 qq timeout".to_string(),
                code: None,
            };
        }
        // Whatever went wrong writing, the exit code says more.
        self.message = None;
        self.envelope = None;
        match self.wait_deadline() {
            None => {
                self.kill();
                Outcome::Refused {
                    reply: "451 4.3.0 qq timeout".to_string(),
                    code: None,
                }
            }
            Some(status) if status.code() == Some(0) && sent.is_ok() => Outcome::Queued {
                pid: self.child.id(),
            },
            Some(status) if status.code() == Some(0) => Outcome::Refused {
                reply: "451 4.3.0 qq read error".to_string(),
                code: Some(0),
            },
            Some(status) => {
                let code = status.code();
                let _ = status.signal();
                let custom = if code == Some(custom_error::EXIT) {
                    self.custom_reply()
                } else {
                    None
                };
                Outcome::Refused {
                    reply: custom.unwrap_or_else(|| reply_for_exit(code)),
                    code,
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

    #[test]
    fn envelope_format() {
        assert_eq!(envelope("", &["a@b".into()]), b"F\0Ta@b\0\0");
        assert_eq!(
            envelope("s@x", &["a@b".into(), "c@d".into()]),
            b"Fs@x\0Ta@b\0Tc@d\0\0"
        );
    }

    #[test]
    fn exit_codes_map_per_qmail() {
        assert!(reply_for_exit(Some(11)).starts_with("554 5.1.3"));
        assert!(reply_for_exit(Some(31)).starts_with("554 5.3.0"));
        assert!(reply_for_exit(Some(25)).starts_with("554 5.3.0"));
        assert!(reply_for_exit(Some(53)).starts_with("451 4.3.0"));
        assert!(reply_for_exit(Some(71)).starts_with("451 4.3.0"));
        assert!(
            reply_for_exit(Some(75)).starts_with("451 4.3.0"),
            "undefined codes are temporary"
        );
        assert!(reply_for_exit(Some(1)).starts_with("451"));
        assert!(
            reply_for_exit(Some(100)).starts_with("451"),
            "100 is not in 11-40"
        );
        assert!(reply_for_exit(None).starts_with("451 4.3.0"));
    }

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
                reply: reply_for_exit(Some(31)),
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
