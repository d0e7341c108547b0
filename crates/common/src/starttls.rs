//! The program side of postern-tlsd's STARTTLS protocol (docs/postern-tlsd.md). A server
//! run under postern-tlsd finds `POSTERN_TLS_FD=N` in its environment: a stream socket to
//! tlsd. Its stdin and stdout are pipes through tlsd, in cleartext until TLS starts.
//!
//! 1. [`TlsControl::request`]: we write `Y`; tlsd stops reading the network, drops what it
//!    read but did not pass on, and answers `y`. We then discard everything already in our
//!    stdin: bytes the client pipelined after its STLS/STARTTLS, before our reply, which
//!    must never be executed (the CVE-2011-0411 class of injection).
//! 2. The caller writes its positive reply (`+OK`, `220`) to stdout.
//! 3. [`TlsControl::start`]: we write `G`; tlsd sends everything we wrote so far, does the
//!    handshake and answers one line, `ok VERSION CIPHER` or `fail REASON`. From then on
//!    stdin/stdout carry the decrypted stream; the caller resets its protocol state.
//!
//! postern-smtpd reuses this module for STARTTLS; it needs no TLS library.

use crate::sys;
use crate::{Error, Result, ResultExt};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The environment variable naming the control descriptor.
pub const ENV_FD: &str = "POSTERN_TLS_FD";
/// Set by postern-popup for the programs it runs once TLS is active.
pub const ENV_VERSION: &str = "POSTERN_TLS_VERSION";
pub const ENV_CIPHER: &str = "POSTERN_TLS_CIPHER";
/// How long tlsd may take to acknowledge `Y`.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the handshake may take, as tlsd reports it (tlsd has its own, shorter, limit).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest answer line from tlsd.
pub const MAX_ANSWER: usize = 256;
/// Most bytes we discard from stdin in step 1 (a pipe holds 64 KiB).
pub const MAX_DISCARD: usize = 1 << 20;

/// What the handshake agreed on, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// Parse tlsd's answer line (without the newline).
pub fn parse_answer(line: &str) -> std::result::Result<TlsInfo, String> {
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("ok"), Some(v), Some(c), None) if !v.is_empty() && !c.is_empty() => Ok(TlsInfo {
            version: v.to_string(),
            cipher: c.to_string(),
        }),
        (Some("fail"), ..) => Err(line.strip_prefix("fail").unwrap_or("").trim().to_string()),
        _ => Err(format!(
            "unexpected answer from postern-tlsd: {}",
            crate::logline::printable(line)
        )),
    }
}

/// The control channel to postern-tlsd.
pub struct TlsControl {
    sock: UnixStream,
}

impl TlsControl {
    /// The channel named by `POSTERN_TLS_FD`, if any. The variable is removed so that
    /// the programs we run do not try to use it.
    pub fn from_env() -> Result<Option<TlsControl>> {
        let Some(value) = std::env::var_os(ENV_FD) else {
            return Ok(None);
        };
        std::env::remove_var(ENV_FD);
        let fd: i32 = value
            .to_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::temp(format!("{ENV_FD} is not a descriptor number")))?;
        let owned = sys::adopt_inherited_fd(fd).temp(format!("unable to use {ENV_FD}={fd}"))?;
        Ok(Some(TlsControl {
            sock: UnixStream::from(owned),
        }))
    }

    /// Step 1: ask tlsd to hold the network, then discard our pending cleartext input.
    /// Returns how many bytes were discarded (for the log: nonzero = injection attempt).
    pub fn request(&mut self, stdin: &File) -> Result<usize> {
        self.sock
            .write_all(b"Y")
            .temp("unable to write to postern-tlsd")?;
        self.sock
            .set_read_timeout(Some(ACK_TIMEOUT))
            .temp("unable to set a timeout")?;
        let mut ack = [0u8; 1];
        match self.sock.read(&mut ack) {
            Ok(1) if ack[0] == b'y' => {}
            Ok(_) => return Err(Error::temp("postern-tlsd did not acknowledge STARTTLS")),
            Err(e) => return Err(Error::io("unable to read from postern-tlsd", &e)),
        }
        discard_pending(stdin).temp("unable to discard pipelined input")
    }

    /// Step 3: let tlsd send our reply and do the handshake; its outcome.
    pub fn start(&mut self) -> Result<std::result::Result<TlsInfo, String>> {
        self.sock
            .write_all(b"G")
            .temp("unable to write to postern-tlsd")?;
        self.sock
            .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
            .temp("unable to set a timeout")?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.sock.read(&mut byte) {
                Ok(0) => return Ok(Err("postern-tlsd closed the control channel".to_string())),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if line.len() < MAX_ANSWER => line.push(byte[0]),
                Ok(_) => return Ok(Err("answer from postern-tlsd too long".to_string())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("unable to read from postern-tlsd", &e)),
            }
        }
        Ok(parse_answer(&String::from_utf8_lossy(&line)))
    }
}

/// Read and drop whatever is already waiting on `input`, without blocking.
fn discard_pending(input: &File) -> io::Result<usize> {
    let flags = OFlag::from_bits_truncate(fcntl(input, FcntlArg::F_GETFL)?);
    fcntl(input, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    let result = loop {
        match (&*input).read(&mut buf) {
            Ok(0) => break Ok(total),
            Ok(n) => {
                total += n;
                if total >= MAX_DISCARD {
                    break Ok(total);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    fcntl(input, FcntlArg::F_SETFL(flags))?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(
            parse_answer("ok TLSv1.3 TLS13_AES_256_GCM_SHA384"),
            Ok(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "TLS13_AES_256_GCM_SHA384".into()
            })
        );
        assert_eq!(
            parse_answer("fail handshake timed out"),
            Err("handshake timed out".to_string())
        );
        assert!(parse_answer("ok TLSv1.3").is_err());
        assert!(parse_answer("maybe").is_err());
    }

    #[test]
    fn discard_takes_only_what_is_waiting() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (r, mut w) = (File::from(r), File::from(w));
        w.write_all(b"USER x\r\nPASS y\r\n").unwrap();
        assert_eq!(discard_pending(&r).unwrap(), 16);
        assert_eq!(
            discard_pending(&r).unwrap(),
            0,
            "returns at once when nothing waits"
        );
        w.write_all(b"after").unwrap();
        let mut buf = [0u8; 5];
        (&r).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"after", "blocking mode restored, later input intact");
    }
}
