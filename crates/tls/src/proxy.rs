//! The relay between the network (our fds 0 and 1) and the program's pipes.
//!
//! Cleartext at first: bytes pass through unchanged. The program asks for TLS over the
//! control socket (docs/postern-tlsd.md): on `Y` we stop reading the network, drop the
//! client bytes we hold but have not passed on, and answer `y`; on `G` we send all the
//! program wrote so far, do the server handshake, and answer `ok VERSION CIPHER` or
//! `fail REASON`. After that the network side is TLS.
//!
//! One thread, `poll(2)`, non-blocking descriptors, and at most one block in flight in
//! each direction: we read from one side only when the other side has taken the last
//! block, so memory stays bounded whatever the peers do. When the program closes its
//! stdout we flush (with a TLS close_notify) and return; when the network closes we
//! close the program's stdin and wait for it to finish.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use postern_common::logline::LogLine;
use postern_common::{Result, ResultExt};
use rustls::{ProtocolVersion, ServerConfig, ServerConnection};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest block moved in one step.
pub const BLOCK: usize = 16 * 1024;
/// The TLS handshake must be over within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// The client must take some of our output within this time, or we drop the network
/// side (the program then gets end-of-file). Idle timeouts are the program's business;
/// this only bounds a client that stops reading.
pub const NET_WRITE_TIMEOUT: Duration = Duration::from_secs(1200);
/// Longest control message we act on in one read.
const CONTROL_READ: usize = 16;

/// The descriptors the relay works with.
pub struct Ends {
    pub net_in: File,
    pub net_out: File,
    /// The program's stdin (we write to it).
    pub prog_in: File,
    /// The program's stdout (we read from it).
    pub prog_out: File,
    /// Our end of the control socket (none with implicit TLS: nothing to ask for).
    pub ctl: Option<UnixStream>,
}

struct Relay {
    net_in: File,
    net_out: File,
    prog_in: Option<File>,
    prog_out: Option<File>,
    ctl: Option<UnixStream>,
    tls: Option<ServerConnection>,
    config: Arc<ServerConfig>,
    to_prog: Vec<u8>,
    to_net: Vec<u8>,
    net_eof: bool,
    net_dead: bool,
    paused: bool,
    /// Since when output has been waiting for the client without progress.
    stalled_since: Option<Instant>,
    ip: String,
}

pub fn set_nonblocking(f: &impl AsFd) -> Result<()> {
    let flags = OFlag::from_bits_truncate(
        fcntl(f, FcntlArg::F_GETFL).temp("unable to get descriptor flags")?,
    );
    fcntl(f, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))
        .temp("unable to set descriptor flags")?;
    Ok(())
}

fn wait(fd: &impl AsFd, events: PollFlags, deadline: Instant) -> std::result::Result<(), String> {
    match postern_common::deadline::wait_until(fd, events, deadline) {
        Ok(true) => Ok(()),
        Ok(false) => Err("handshake timed out".to_string()),
        Err(e) => Err(format!("poll: {e}")),
    }
}

/// The TLS server handshake on the network descriptors (non-blocking), within `deadline`.
/// For STARTTLS after the program's `G`, and for implicit TLS (`-i`) before the program
/// starts.
pub fn accept(
    net_in: &mut File,
    net_out: &mut File,
    config: &Arc<ServerConfig>,
    deadline: Instant,
) -> std::result::Result<ServerConnection, String> {
    let mut conn = ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
    loop {
        while conn.wants_write() {
            wait(&*net_out, PollFlags::POLLOUT, deadline)?;
            match conn.write_tls(net_out) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        if !conn.is_handshaking() {
            return Ok(conn);
        }
        wait(&*net_in, PollFlags::POLLIN, deadline)?;
        match conn.read_tls(net_in) {
            Ok(0) => return Err("connection closed during the handshake".to_string()),
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    let _ = conn.write_tls(net_out); // the alert, if it fits
                    return Err(e.to_string());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// How a version is written in logs and in the `ok` answer.
pub fn version_name(v: Option<ProtocolVersion>) -> String {
    match v {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => format!("{other:?}"),
        None => "unknown".to_string(),
    }
}

/// How a cipher suite is written in logs and in the `ok` answer.
pub fn cipher_name(conn: &ServerConnection) -> String {
    conn.negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_else(|| "unknown".to_string())
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Relay until the program has closed its stdout and everything is flushed. `tls` is a
/// connection whose handshake is already done (implicit TLS): the network side is TLS
/// from the first byte.
pub fn relay(
    ends: Ends,
    config: Arc<ServerConfig>,
    ip: &str,
    tls: Option<ServerConnection>,
) -> Result<()> {
    for f in [&ends.net_in, &ends.net_out, &ends.prog_in, &ends.prog_out] {
        set_nonblocking(f)?;
    }
    let mut r = Relay {
        net_in: ends.net_in,
        net_out: ends.net_out,
        prog_in: Some(ends.prog_in),
        prog_out: Some(ends.prog_out),
        ctl: ends.ctl,
        tls,
        config,
        to_prog: Vec::with_capacity(BLOCK),
        to_net: Vec::with_capacity(BLOCK),
        net_eof: false,
        net_dead: false,
        paused: false,
        stalled_since: None,
        ip: ip.to_string(),
    };
    // Application data that came with the end of the handshake.
    r.pump_plaintext();
    r.run()
}

impl Relay {
    /// Bytes waiting to go to the network.
    fn net_pending(&self) -> bool {
        if self.net_dead {
            return false;
        }
        match &self.tls {
            Some(conn) => conn.wants_write(),
            None => !self.to_net.is_empty(),
        }
    }

    fn run(&mut self) -> Result<()> {
        let mut buf = vec![0u8; BLOCK];
        loop {
            if self.net_eof && self.to_prog.is_empty() {
                self.prog_in = None; // the program sees end of input
            }
            if self.prog_out.is_none() && !self.net_pending() {
                return Ok(());
            }
            let want_ctl = self.ctl.is_some();
            let want_net_in = !self.net_eof && !self.paused && self.to_prog.is_empty();
            let want_prog_in = self.prog_in.is_some() && !self.to_prog.is_empty();
            let want_prog_out = self.prog_out.is_some() && !self.net_pending();
            let want_net_out = self.net_pending();
            let timeout = if want_net_out {
                let since = *self.stalled_since.get_or_insert_with(Instant::now);
                let left = (since + NET_WRITE_TIMEOUT).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    LogLine::event("neterror")
                        .kv("ip", &self.ip)
                        .kv("error", "client stopped reading")
                        .emit();
                    self.drop_network();
                    continue;
                }
                PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)
            } else {
                self.stalled_since = None;
                PollTimeout::NONE
            };
            let ready = {
                let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5);
                let mut slots: Vec<usize> = Vec::with_capacity(5);
                if let (true, Some(c)) = (want_ctl, &self.ctl) {
                    slots.push(0);
                    fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                }
                if want_net_in {
                    slots.push(1);
                    fds.push(PollFd::new(self.net_in.as_fd(), PollFlags::POLLIN));
                }
                if let (true, Some(p)) = (want_prog_in, &self.prog_in) {
                    slots.push(2);
                    fds.push(PollFd::new(p.as_fd(), PollFlags::POLLOUT));
                }
                if let (true, Some(p)) = (want_prog_out, &self.prog_out) {
                    slots.push(3);
                    fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
                }
                if want_net_out {
                    slots.push(4);
                    fds.push(PollFd::new(self.net_out.as_fd(), PollFlags::POLLOUT));
                }
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e).temp("poll"),
                }
                let mut ready = [false; 5];
                for (slot, fd) in slots.iter().zip(&fds) {
                    ready[*slot] = fd.revents().is_some_and(|r| !r.is_empty());
                }
                ready
            };
            if ready[0] {
                self.control(&mut buf)?;
            }
            if ready[1] && !self.paused {
                self.read_network(&mut buf);
            }
            if ready[2] {
                self.write_program();
            }
            if ready[3] {
                self.read_program(&mut buf);
            }
            if ready[4] {
                self.write_network();
            }
        }
    }

    fn control(&mut self, buf: &mut [u8]) -> Result<()> {
        let Some(ctl) = self.ctl.as_mut() else {
            return Ok(());
        };
        let n = match ctl.read(&mut buf[..CONTROL_READ]) {
            Ok(0) | Err(_) => {
                self.ctl = None;
                return Ok(());
            }
            Ok(n) => n,
        };
        let bytes = buf[..n].to_vec();
        for b in bytes {
            match b {
                b'Y' if self.tls.is_none() && !self.paused => {
                    self.paused = true;
                    self.to_prog.clear(); // read in cleartext, not yet passed on: never
                    if let Some(ctl) = self.ctl.as_mut() {
                        let _ = ctl.write_all(b"y");
                    }
                }
                b'G' if self.paused => self.start_tls(),
                other => {
                    LogLine::event("tlsctl")
                        .kv("ip", &self.ip)
                        .kv("unexpected", format!("{other:#04x}"))
                        .emit();
                }
            }
        }
        Ok(())
    }

    fn answer(&mut self, line: &str) {
        if let Some(ctl) = self.ctl.as_mut() {
            let _ = ctl.write_all(format!("{}\n", line.replace('\n', " ")).as_bytes());
        }
    }

    /// `G`: send the program's reply, do the handshake, answer.
    fn start_tls(&mut self) {
        self.paused = false;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match self.handshake(deadline) {
            Ok(conn) => {
                let version = version_name(conn.protocol_version());
                let cipher = cipher_name(&conn);
                LogLine::event("tls")
                    .kv("ip", &self.ip)
                    .kv("version", &version)
                    .kv("cipher", &cipher)
                    .emit();
                self.answer(&format!("ok {version} {cipher}"));
                self.tls = Some(conn);
                self.pump_plaintext();
            }
            Err(reason) => {
                LogLine::event("tlsfail")
                    .kv("ip", &self.ip)
                    .kv("reason", &reason)
                    .emit();
                self.answer(&format!("fail {reason}"));
                self.net_eof = true;
                self.net_dead = true;
                self.to_net.clear();
            }
        }
    }

    fn handshake(&mut self, deadline: Instant) -> std::result::Result<ServerConnection, String> {
        // Everything the program wrote before `G` is in its pipe now: send it first.
        let mut buf = vec![0u8; BLOCK];
        while let Some(p) = self.prog_out.as_mut() {
            match p.read(&mut buf) {
                Ok(0) => self.prog_out = None,
                Ok(n) => self.to_net.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        while !self.to_net.is_empty() {
            wait(&self.net_out, PollFlags::POLLOUT, deadline)?;
            match self.net_out.write(&self.to_net) {
                Ok(n) => {
                    self.to_net.drain(..n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(format!("unable to send the reply: {e}")),
            }
        }
        accept(&mut self.net_in, &mut self.net_out, &self.config, deadline)
    }

    /// Move decrypted bytes from rustls to `to_prog`.
    fn pump_plaintext(&mut self) {
        let Some(conn) = self.tls.as_mut() else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.net_eof = true; // close_notify
                    break;
                }
                Ok(n) => self.to_prog.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.net_eof = true;
                    break;
                }
            }
        }
        if self.prog_in.is_none() {
            self.to_prog.clear();
        }
    }

    fn read_network(&mut self, buf: &mut [u8]) {
        match self.tls.as_mut() {
            None => match self.net_in.read(buf) {
                Ok(0) => self.net_eof = true,
                Ok(n) if self.prog_in.is_some() => self.to_prog.extend_from_slice(&buf[..n]),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    self.net_eof = true;
                    self.net_dead = true;
                }
            },
            Some(conn) => match conn.read_tls(&mut self.net_in) {
                Ok(0) => self.net_eof = true,
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        let _ = conn.write_tls(&mut self.net_out);
                        LogLine::event("tlsfail")
                            .kv("ip", &self.ip)
                            .kv("reason", e.to_string())
                            .emit();
                        self.net_eof = true;
                        self.net_dead = true;
                    } else {
                        self.pump_plaintext();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    self.net_eof = true;
                    self.net_dead = true;
                }
            },
        }
    }

    fn write_program(&mut self) {
        let Some(p) = self.prog_in.as_mut() else {
            return;
        };
        match p.write(&self.to_prog) {
            Ok(n) => {
                self.to_prog.drain(..n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                self.prog_in = None;
                self.to_prog.clear();
            }
        }
    }

    fn read_program(&mut self, buf: &mut [u8]) {
        let Some(p) = self.prog_out.as_mut() else {
            return;
        };
        let n = match p.read(buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return
            }
            Err(_) => 0,
        };
        if n == 0 {
            self.prog_out = None;
            if let Some(conn) = self.tls.as_mut() {
                conn.send_close_notify();
            }
            return;
        }
        if self.net_dead {
            return;
        }
        match self.tls.as_mut() {
            None => self.to_net.extend_from_slice(&buf[..n]),
            Some(conn) => {
                if conn.writer().write_all(&buf[..n]).is_err() {
                    self.net_dead = true;
                }
            }
        }
    }

    /// Give up on the client: nothing more is read from or written to it.
    fn drop_network(&mut self) {
        self.net_dead = true;
        self.net_eof = true;
        self.to_net.clear();
    }

    fn write_network(&mut self) {
        let result = match self.tls.as_mut() {
            None => self.net_out.write(&self.to_net).map(|n| {
                self.to_net.drain(..n);
            }),
            Some(conn) => conn.write_tls(&mut self.net_out).map(|_| ()),
        };
        match result {
            Ok(()) => self.stalled_since = Some(Instant::now()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                if !is_gone(&e) {
                    LogLine::event("neterror")
                        .kv("ip", &self.ip)
                        .kv("error", e.to_string())
                        .emit();
                }
                self.net_dead = true;
                self.net_eof = true;
                self.to_net.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_written_as_openssl_does() {
        assert_eq!(version_name(Some(ProtocolVersion::TLSv1_3)), "TLSv1.3");
        assert_eq!(version_name(Some(ProtocolVersion::TLSv1_2)), "TLSv1.2");
        assert_eq!(version_name(None), "unknown");
    }
}
