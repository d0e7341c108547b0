//! SMTP AUTH (RFC 4954) with the PLAIN and LOGIN mechanisms, checked by a program that
//! follows the checkpassword interface, as the Dabrowski patch did:
//! `postern-smtpd [options] CHECKPASSWORD SUBPROGRAM...`.
//!
//! The checker gets `login\0password\0timestamp\0` on descriptor 3 (at most 512 bytes)
//! and its standard input and output are /dev/null, so it never sees the network. Exit
//! 0 is success, 1 a refusal, anything else (111 above all, a crash, a hang past the
//! deadline) temporary trouble. CRAM-MD5 is not offered: it needs password-equivalent
//! storage, and postern stores only hashes.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use postern_common::{Error, Result, ResultExt};
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the checkpassword interface allows on descriptor 3.
pub const MAX_FD3: usize = 512;
/// Longest line of an AUTH exchange (base64 of 3 × 255 bytes fits with room).
pub const MAX_AUTH_LINE: usize = 2048;
/// Failed attempts per connection before 421.
pub const MAX_FAILURES: u32 = 3;
/// How long the checker may take (postern-checkpassword itself delays repeat failures).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// `334` prompts of LOGIN: base64 of `Username:` and `Password:`.
pub const PROMPT_USER: &str = "334 VXNlcm5hbWU6";
pub const PROMPT_PASS: &str = "334 UGFzc3dvcmQ6";

/// The mechanisms offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn parse(name: &[u8]) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case(b"PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case(b"LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Decode a base64 client response; `=` alone is the empty response (RFC 4954 §4).
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if text == b"=" {
        return Some(Vec::new());
    }
    postern_common::sasl::decode_base64(text)
}

/// `authzid\0authcid\0passwd` (RFC 4616). An authzid naming someone else is refused:
/// no proxy logins. Returns (login, password).
pub fn parse_plain(msg: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = msg.split(|&b| b == 0);
    let (authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() || (!authz.is_empty() && authz != user) {
        return None;
    }
    Some((user.to_vec(), pass.to_vec()))
}

/// A login name we are willing to pass on: printable ASCII, no NUL.
pub fn acceptable_login(user: &[u8]) -> bool {
    !user.is_empty() && user.len() <= 255 && user.iter().all(|&b| (0x21..0x7f).contains(&b))
}

/// The checkpassword program and its arguments.
#[derive(Debug, Clone)]
pub struct Checker {
    pub argv: Vec<OsString>,
    pub timeout: Duration,
}

impl Checker {
    /// Run the checker: `Ok(true)` accepted, `Ok(false)` refused, `Err` temporary.
    pub fn check(&self, user: &[u8], pass: &[u8], timestamp: &str) -> Result<bool> {
        let mut input = Vec::with_capacity(user.len() + pass.len() + timestamp.len() + 3);
        for field in [user, pass, timestamp.as_bytes()] {
            input.extend_from_slice(field);
            input.push(0);
        }
        if input.len() > MAX_FD3 {
            return Ok(false);
        }
        let prog = self
            .argv
            .first()
            .ok_or_else(|| Error::temp("no checkpassword program"))?;
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).temp("unable to make a pipe")?;
        let mut cmd = Command::new(prog);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        postern_common::sys::give_fd3(&mut cmd, r.as_raw_fd());
        postern_common::sys::with_default_signals(&mut cmd);
        let what = format!(
            "unable to run {}",
            postern_common::logline::printable(prog.as_encoded_bytes())
        );
        let mut child = cmd.spawn().temp(what)?;
        drop(r);
        // 512 bytes fit in any pipe buffer: this write cannot block.
        let mut w = std::fs::File::from(w);
        let _ = w.write_all(&input);
        drop(w);
        // The AUTH answer waits on this: woken at the exit, not by polling with sleeps.
        let until = Instant::now() + self.timeout;
        match postern_common::deadline::wait_child(&mut child, until) {
            Ok(Some(status)) => match status.code() {
                Some(0) => Ok(true),
                Some(1) => Ok(false),
                Some(c) => Err(Error::temp(format!("checkpassword exited {c}"))),
                None => Err(Error::temp("checkpassword crashed")),
            },
            Ok(None) => {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                Err(Error::temp("checkpassword timed out"))
            }
            Err(e) => Err(Error::io("unable to wait for checkpassword", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages() {
        assert_eq!(
            parse_plain(b"\0alice@x.test\0pw"),
            Some((b"alice@x.test".to_vec(), b"pw".to_vec()))
        );
        assert_eq!(
            parse_plain(b"alice@x.test\0alice@x.test\0pw"),
            Some((b"alice@x.test".to_vec(), b"pw".to_vec()))
        );
        assert_eq!(parse_plain(b"bob\0alice\0pw"), None, "no proxy login");
        assert_eq!(parse_plain(b"\0alice"), None);
        assert_eq!(parse_plain(b"\0\0pw"), None);
        assert_eq!(parse_plain(b"\0a\0b\0c"), None);
    }

    #[test]
    fn base64_and_the_empty_response() {
        assert_eq!(decode(b"AGFsaWNlAHB3"), Some(b"\0alice\0pw".to_vec()));
        assert_eq!(decode(b"="), Some(Vec::new()));
        assert_eq!(decode(b"not base64!"), None);
        assert_eq!(
            decode(&PROMPT_USER.as_bytes()[4..]),
            Some(b"Username:".to_vec())
        );
        assert_eq!(
            decode(&PROMPT_PASS.as_bytes()[4..]),
            Some(b"Password:".to_vec())
        );
    }

    #[test]
    fn logins() {
        assert!(acceptable_login(b"alice@x.test"));
        assert!(!acceptable_login(b"a b"));
        assert!(!acceptable_login(b""));
        assert!(!acceptable_login(b"a\x01"));
    }

    #[test]
    fn runs_a_checkpassword_program_over_fd3() {
        let dir = tempfile::tempdir().unwrap();
        let prog = dir.path().join("cp");
        // Accept alice/secret; record what came in on fd 3.
        let d = dir.path().display();
        let script = format!(
            "#!/bin/sh\ncat <&3 > {d}/fd3\nu=$(tr '\\0' '\\n' < {d}/fd3 | sed -n 1p)\np=$(tr '\\0' '\\n' < {d}/fd3 | sed -n 2p)\n[ \"$u\" = alice ] && [ \"$p\" = secret ] || exit 1\nexec \"$@\"\n"
        );
        std::fs::write(&prog, script).unwrap();
        std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let checker = Checker {
            argv: vec![prog.into(), "true".into()],
            timeout: Duration::from_secs(10),
        };
        assert!(checker.check(b"alice", b"secret", "<1.2@x>").unwrap());
        assert_eq!(
            std::fs::read(dir.path().join("fd3")).unwrap(),
            b"alice\0secret\0<1.2@x>\0"
        );
        assert!(!checker.check(b"alice", b"wrong", "<1.2@x>").unwrap());
        let long = vec![b'p'; 600];
        assert!(
            !checker.check(b"alice", &long, "t").unwrap(),
            "over 512 bytes: refused unasked"
        );
        let broken = Checker {
            argv: vec!["/bin/sh".into(), "-c".into(), "exit 111".into()],
            timeout: Duration::from_secs(10),
        };
        assert!(broken.check(b"a", b"b", "t").is_err());
    }
}
