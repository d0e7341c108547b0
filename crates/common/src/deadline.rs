//! Reading and writing a socket or pipe without waiting forever: `poll` with the time
//! left, then read or write. A peer that stops sending or stops reading costs at most
//! the time given, and a signal (EINTR) only makes the wait start again with what is
//! left of it — never longer, never shorter.
//!
//! Two kinds of limit, as the protocols have them: a *deadline* (an instant: the whole
//! exchange must be over by then — [`wait_until`], [`read`]) and an *idle* time (how long
//! a writer may go without taking anything — [`write`], [`write_all`]). Writing with a
//! limit needs a non-blocking descriptor, else one large write can block past it.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Wait for `child` to exit until `deadline`: its status, or `None` when the time ran out
/// (the child is left running: killing it is the caller's choice). It wakes the moment
/// the child exits, by polling the child's pidfd (Linux 5.3); sleeping between checks
/// would add up to the last sleep to every wait — on the path to a `250` or an AUTH
/// answer, milliseconds per transaction. Without pidfds it checks every millisecond.
pub fn wait_child(
    child: &mut std::process::Child,
    deadline: Instant,
) -> io::Result<Option<std::process::ExitStatus>> {
    let pid = child.id();
    wait_exit(pid, || child.try_wait(), deadline)
}

/// [`wait_child`] for a child behind a wrapper: its `pid` and its `try_wait`.
pub fn wait_exit(
    pid: u32,
    mut try_wait: impl FnMut() -> io::Result<Option<std::process::ExitStatus>>,
    deadline: Instant,
) -> io::Result<Option<std::process::ExitStatus>> {
    let pidfd = crate::sys::pidfd_open(pid).ok();
    loop {
        if let Some(status) = try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match &pidfd {
            // Readable once the child has exited; the loop then reaps it.
            Some(fd) => {
                wait_until(fd, PollFlags::POLLIN, deadline)?;
            }
            None => std::thread::sleep(left.min(Duration::from_millis(1))),
        }
    }
}

/// The error a run-out limit gives: `TimedOut`, saying `what` ran out.
pub fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}

/// Wait until `fd` is ready for `events` or `deadline` passes: `false` when the time ran
/// out (a deadline already past is out, ready or not: a peer that keeps sending cannot
/// stretch it). Ready includes an error or hang-up on `fd`, which the next read or write
/// reports.
pub fn wait_until(fd: impl AsFd, events: PollFlags, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Whole milliseconds, rounded up: never wake before the deadline.
        let ms = i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`wait_until`] `timeout` from now.
pub fn wait(fd: impl AsFd, events: PollFlags, timeout: Duration) -> io::Result<bool> {
    wait_until(fd, events, Instant::now() + timeout)
}

/// Read what is there (at least one byte, or 0 at the end) into `buf`, waiting for it
/// until `deadline` at most; then an error of kind `TimedOut`.
pub fn read(src: &mut (impl Read + AsFd), buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        if !wait_until(&*src, PollFlags::POLLIN, deadline)? {
            return Err(timed_out("read timed out"));
        }
        match src.read(buf) {
            // A signal, or readiness that went away (another reader of a shared file).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            other => return other,
        }
    }
}

/// Write what `dst` takes of `data` (at least one byte), waiting at most `idle` for room
/// when it is full; then an error of kind `TimedOut`. `dst` should be non-blocking.
pub fn write(dst: &mut (impl Write + AsFd), data: &[u8], idle: Duration) -> io::Result<usize> {
    loop {
        match dst.write(data) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !wait(&*dst, PollFlags::POLLOUT, idle)? {
                    return Err(timed_out("write timed out"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Write all of `data`, waiting at most `idle` for room each time `dst` is full (a
/// reader that keeps taking data keeps the writer going). `dst` should be non-blocking.
pub fn write_all(dst: &mut (impl Write + AsFd), mut data: &[u8], idle: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match write(dst, data, idle)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => data = &data[n..],
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn wait_child_returns_at_the_exit_or_at_the_deadline() {
        use std::process::Command;
        let started = Instant::now();
        let mut quick = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let status = wait_child(&mut quick, Instant::now() + Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(started.elapsed() < Duration::from_secs(5));

        let mut slow = Command::new("sleep").arg("30").spawn().unwrap();
        let started = Instant::now();
        let got = wait_child(&mut slow, Instant::now() + Duration::from_millis(200)).unwrap();
        assert!(got.is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        slow.kill().unwrap();
        // Reaped by the next call, at once.
        let status = wait_child(&mut slow, Instant::now() + Duration::from_secs(10)).unwrap();
        assert!(status.is_some_and(|s| !s.success()));
    }

    use super::*;
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::fs::File;

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (File::from(r), File::from(w))
    }

    fn nonblocking(f: &File) {
        let flags = OFlag::from_bits_truncate(fcntl(f, FcntlArg::F_GETFL).unwrap());
        fcntl(f, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).unwrap();
    }

    #[test]
    fn a_silent_peer_times_out_at_the_deadline_not_before() {
        let (mut r, _w) = pipe();
        let start = Instant::now();
        let err = read(&mut r, &mut [0u8; 8], start + Duration::from_millis(120)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(120),
            "gave up early: {took:?}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        // A deadline already past is past, whatever is there.
        let (mut r, mut w) = pipe();
        w.write_all(b"x").unwrap();
        let err = read(&mut r, &mut [0u8; 8], start).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn a_read_returns_what_is_there_and_the_end_as_zero() {
        let (mut r, mut w) = pipe();
        let deadline = Instant::now() + Duration::from_secs(10);
        w.write_all(b"abc").unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(read(&mut r, &mut buf, deadline).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            w.write_all(b"de").unwrap();
        });
        assert_eq!(read(&mut r, &mut buf, deadline).unwrap(), 2);
        writer.join().unwrap();
        assert_eq!(read(&mut r, &mut buf, deadline).unwrap(), 0, "end of input");
    }

    #[test]
    fn a_full_pipe_times_out_a_write_and_a_reader_keeps_it_going() {
        let (mut r, mut w) = pipe();
        nonblocking(&w);
        let big = vec![b'x'; 1 << 20];
        // Nobody reads: the pipe fills and the writer gives up after `idle`.
        let err = write_all(&mut w, &big, Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // Drain what got in, then a reader that keeps reading lets a megabyte through.
        nonblocking(&r);
        while r.read(&mut [0u8; 65536]).is_ok_and(|n| n > 0) {}
        let reader = std::thread::spawn(move || {
            let mut total = 0;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match read(&mut r, &mut [0u8; 4096], deadline) {
                    Ok(0) => return total,
                    Ok(n) => total += n,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        write_all(&mut w, &big, Duration::from_secs(10)).unwrap();
        drop(w);
        assert_eq!(reader.join().unwrap(), big.len());
    }

    /// A signal during the wait: the wait goes on with the time left, and the read gets
    /// its data (not EINTR), or the deadline (not earlier).
    #[test]
    fn signals_during_the_wait_neither_end_nor_stretch_it() {
        use crate::sys::interrupt;
        for data in [true, false] {
            let (mut r, mut w) = pipe();
            let (tx, rx) = std::sync::mpsc::channel();
            let start = Instant::now();
            let reader = std::thread::spawn(move || {
                tx.send(interrupt::this_thread()).unwrap();
                read(&mut r, &mut [0u8; 8], start + Duration::from_millis(400))
            });
            let thread = rx.recv().unwrap();
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(20));
                interrupt::signal(thread);
            }
            if data {
                w.write_all(b"ok").unwrap();
                assert_eq!(reader.join().unwrap().unwrap(), 2);
            } else {
                let err = reader.join().unwrap().unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
                assert!(start.elapsed() >= Duration::from_millis(400));
            }
        }
    }
}
