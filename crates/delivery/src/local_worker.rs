//! postern-local's worker mode, and postern-send's pool of workers (docs/postern-local.md,
//! *Worker mode*).
//!
//! Starting postern-local costs about as much CPU as the delivery itself
//! (docs/performance.md), so postern-send keeps up to `concurrencylocal` of them running
//! and hands each one delivery at a time, as Postfix's local(8) serves many. A worker
//! is the same setuid program with the same privileges; it delivers exactly as the
//! one-shot `postern-local SENDER RECIPIENT` does ([`crate::local::deliver`]).
//!
//! The channel is a `SOCK_SEQPACKET` socket pair (message boundaries kept), the
//! worker's end on its fd 0:
//! - request: one packet `u32 BE length of SENDER`, SENDER, RECIPIENT, carrying the
//!   open queue file (positioned at the message) as SCM_RIGHTS;
//! - answer: one packet, `K` / `D` / `Z` then the reason (delivered / permanent /
//!   temporary), as the one-shot program's exit code and last line.
//!
//! A worker exits after [`MAX_USES`] deliveries, at EOF (postern-send went away), or on
//! any trouble with the channel; postern-send then starts a fresh one. A worker that
//! dies in mid-delivery is a temporary failure, as a crashed one-shot postern-local is.

use crate::local;
use nix::sys::socket::{
    recvmsg, send, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType,
};
use postern_common::exit::Kind;
use postern_common::{Error, Result, ResultExt};
use postern_wire::verdict::Outcome;
use std::fs::File;
use std::io::{BufReader, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Deliveries one worker makes before it exits, as Postfix's `max_use`: bounds what a
/// slow leak could grow to, and how long an old binary runs after an upgrade.
pub const MAX_USES: u32 = 100;
/// A worker idle for longer is retired rather than reused (Postfix's `max_idle`).
pub const MAX_IDLE: Duration = Duration::from_secs(60);
/// Largest request packet: the length, two addresses (each bounded by the queue).
pub const MAX_REQUEST: usize = 8192;
/// Largest answer packet.
pub const MAX_ANSWER: usize = 4096;

/// The top bit of the sender's length: the message is in the priority lane
/// (`Ipriority=1`), so a forwarded copy keeps it. A sender is never that long.
const PRIORITY_BIT: u32 = 1 << 31;

fn encode_request(sender: &[u8], recipient: &[u8], priority: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + sender.len() + recipient.len());
    let flag = if priority { PRIORITY_BIT } else { 0 };
    out.extend_from_slice(&(sender.len() as u32 | flag).to_be_bytes());
    out.extend_from_slice(sender);
    out.extend_from_slice(recipient);
    out
}

/// `(sender, recipient, priority)`.
fn decode_request(packet: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    let word = u32::from_be_bytes(packet.get(..4)?.try_into().ok()?);
    let len = (word & !PRIORITY_BIT) as usize;
    let rest = &packet[4..];
    (len <= rest.len()).then(|| {
        let (sender, recipient) = rest.split_at(len);
        (sender, recipient, word & PRIORITY_BIT != 0)
    })
}

/// The answer packet: the verdict's letter and the text on one line, cut to fit.
fn encode_answer(outcome: &Outcome) -> Vec<u8> {
    // printable() is ASCII, so any cut is on a character boundary.
    let mut text = postern_common::logline::printable(&outcome.text);
    text.truncate(MAX_ANSWER - 1);
    Outcome::new(outcome.verdict, text).encode()
}

fn decode_answer(packet: &[u8]) -> Option<Outcome> {
    Outcome::decode(packet)
}

/// The outcome of one request in the worker.
fn serve_one(home: &Path, packet: &[u8], mut files: Vec<OwnedFd>) -> Outcome {
    let (Some((sender, recipient, priority)), Some(message), true) =
        (decode_request(packet), files.pop(), files.is_empty())
    else {
        return Outcome::deferred("postern-local: malformed request from postern-send (#4.3.0)");
    };
    let Ok(recipient) = std::str::from_utf8(recipient) else {
        return Outcome::failed("recipient is not valid UTF-8 (#5.1.3)");
    };
    let mut input = BufReader::new(File::from(message));
    match local::deliver(home, sender, recipient, priority, &mut input) {
        Ok(reason) => Outcome::delivered(reason),
        Err(Error {
            kind: Kind::Temp,
            msg,
        }) => Outcome::deferred(msg),
        Err(e) => Outcome::failed(e.msg),
    }
}

/// `postern-local -w`: serve deliveries on fd 0 until EOF or [`MAX_USES`].
pub fn serve(home: &Path) -> Result<()> {
    if postern_common::privilege::is_root() {
        // As root each delivery switches to the mailbox owner for good; only a one-shot
        // process can do that. postern-send never starts workers as root.
        return Err(Error::usage("-w: a worker must not run as root"));
    }
    for _ in 0..MAX_USES {
        let mut buf = vec![0u8; MAX_REQUEST];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let (n, files, cut) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(0, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
                .temp("unable to read a request")?;
            let mut files = Vec::new();
            for c in msg.cmsgs().temp("unable to read a request")? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    files.extend(postern_common::sys::own_received_fds(&fds));
                }
            }
            let cut = msg
                .flags
                .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
            (msg.bytes, files, cut)
        };
        if n == 0 && files.is_empty() {
            return Ok(()); // postern-send closed its end
        }
        let outcome = if cut {
            Outcome::deferred("postern-local: request too long (#4.3.0)")
        } else {
            serve_one(home, &buf[..n], files)
        };
        send(0, &encode_answer(&outcome), MsgFlags::MSG_NOSIGNAL)
            .temp("unable to answer postern-send")?;
    }
    Ok(())
}

/// A running worker, as postern-send holds it.
struct Worker {
    child: Child,
    channel: OwnedFd,
    uses: u32,
    idle_since: Instant,
}

impl Worker {
    fn start(program: &Path) -> std::io::Result<Worker> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let child = postern_common::sys::with_default_signals(&mut Command::new(program))
            .arg("-w")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Worker {
            child,
            channel: ours,
            uses: 0,
            idle_since: Instant::now(),
        })
    }

    /// Send the request. An error means the worker never got it: nothing was done.
    fn ask(
        &self,
        message: &File,
        sender: &[u8],
        recipient: &[u8],
        priority: bool,
    ) -> std::io::Result<()> {
        let request = encode_request(sender, recipient, priority);
        let fds = [message.as_raw_fd()];
        sendmsg::<()>(
            self.channel.as_raw_fd(),
            &[IoSlice::new(&request)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        Ok(())
    }

    /// Wait for the answer. `None`: the worker died (or answered nonsense) in
    /// mid-delivery.
    fn answer(&self) -> Option<Outcome> {
        let mut buf = vec![0u8; MAX_ANSWER];
        let n = loop {
            match nix::sys::socket::recv(self.channel.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
                Ok(n) => break n,
            }
        };
        decode_answer(&buf[..n])
    }

    /// Close the channel (the worker sees EOF and exits) and collect it.
    fn retire(mut self) {
        drop(self.channel);
        let _ = self.child.wait();
    }
}

/// postern-send's idle workers, shared by the delivery threads.
pub struct Pool {
    program: PathBuf,
    idle: Mutex<Vec<Worker>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("program", &self.program)
            .finish()
    }
}

impl Pool {
    pub fn new(program: PathBuf) -> Pool {
        Pool {
            program,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// An idle worker that is not too old (true), else a new one (false).
    fn take(&self) -> std::io::Result<(Worker, bool)> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut found = None;
            while let Some(mut w) = idle.pop() {
                // One that has ended (killed, say) is collected here, not left a zombie.
                let ended = !matches!(w.child.try_wait(), Ok(None));
                if !ended && w.idle_since.elapsed() <= MAX_IDLE {
                    found = Some(w);
                    break;
                }
                stale.push(w);
            }
            found
        };
        stale.into_iter().for_each(Worker::retire);
        match found {
            Some(w) => Ok((w, true)),
            None => Worker::start(&self.program).map(|w| (w, false)),
        }
    }

    fn give_back(&self, mut w: Worker) {
        w.uses += 1;
        if w.uses >= MAX_USES {
            // It exits by itself after this many; collect it now.
            w.retire();
            return;
        }
        w.idle_since = Instant::now();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(w);
    }

    /// Deliver the message in `message` (positioned at its first header line) from
    /// `sender` to the local `recipient` through a worker.
    pub fn deliver(
        &self,
        message: &File,
        sender: &[u8],
        recipient: &[u8],
        priority: bool,
    ) -> Outcome {
        // An idle worker may have gone (killed, say) without our knowing: its channel
        // then refuses the request, nothing was delivered, and the next one is tried.
        // Only a worker started for this delivery that refuses it is a failure.
        loop {
            let (w, reused) = match self.take() {
                Ok(x) => x,
                Err(e) => {
                    return Outcome::deferred(format!(
                        "unable to run {}: {e} (#4.3.0)",
                        self.program.display()
                    ))
                }
            };
            if let Err(e) = w.ask(message, sender, recipient, priority) {
                w.retire();
                if reused {
                    continue;
                }
                return Outcome::deferred(format!(
                    "unable to hand the delivery to postern-local: {e} (#4.3.0)"
                ));
            }
            return match w.answer() {
                Some(outcome) => {
                    self.give_back(w);
                    outcome
                }
                None => {
                    w.retire();
                    Outcome::deferred("postern-local crashed (#4.3.0)")
                }
            };
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        idle.into_iter().for_each(Worker::retire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip() {
        let r = encode_request(b"a@b.test", b"c@d.test", false);
        assert_eq!(
            decode_request(&r),
            Some((&b"a@b.test"[..], &b"c@d.test"[..], false))
        );
        let r = encode_request(b"", b"postmaster@d.test", true);
        assert_eq!(
            decode_request(&r),
            Some((&b""[..], &b"postmaster@d.test"[..], true))
        );
        assert_eq!(
            decode_request(b"\0\0\0\x09short"),
            None,
            "length past the end"
        );
        assert_eq!(decode_request(b"\0\0"), None);
        let a = encode_answer(&Outcome::failed("no mailbox\nhere"));
        assert_eq!(a[0], b'D');
        assert!(!a.contains(&b'\n'), "one line");
        assert_eq!(
            decode_answer(&encode_answer(&Outcome::delivered("ok"))),
            Some(Outcome::delivered("ok"))
        );
        assert_eq!(decode_answer(b"Xwhat"), None);
        assert_eq!(decode_answer(b""), None);
        assert!(encode_answer(&Outcome::deferred("x".repeat(10_000))).len() <= MAX_ANSWER);
    }
}
