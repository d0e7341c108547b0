//! The real world behind [`crate::session::Outside`]: the user database, the
//! checkpassword program, the queue program, the recipient prober (postern-verify),
//! postern-tlsd's control socket, the clock and the log on stderr. Also the network
//! input, whose reads wait only as long as the session's limits allow.

use crate::auth::Checker;
use crate::config::Config;
use crate::line::Input;
use crate::queue::{self, Job};
use crate::recipients::{Mailstore, RecipientCheck, Verdict};
use crate::session::{Outside, Tls};
use nix::poll::PollFlags;
use postern_common::logline::LogLine;
use postern_common::starttls::TlsControl;
use postern_common::Result;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The network input: each read waits as long as the session's pace allows
/// ([`crate::pace`]), on the monotonic clock.
pub struct TimedInput {
    file: File,
    epoch: Instant,
}

impl TimedInput {
    pub fn new(file: File) -> Self {
        TimedInput {
            file,
            epoch: Instant::now(),
        }
    }
}

impl Input for TimedInput {
    fn read_within(&mut self, buf: &mut [u8], wait: Duration) -> io::Result<usize> {
        postern_common::deadline::read(&mut self.file, buf, Instant::now() + wait)
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// Bound writes to a client that stops reading (only when fd 1 is a socket).
pub fn send_timeout(out: &File, timeout: Duration) {
    use nix::sys::socket::{setsockopt, sockopt::SendTimeout};
    use nix::sys::time::{TimeVal, TimeValLike};
    let tv = TimeVal::seconds(timeout.as_secs() as i64);
    let _ = setsockopt(out, SendTimeout, &tv);
}

/// The real outside world of one session.
pub struct Real {
    store: Mailstore,
    /// postern-verify, found when first needed.
    verifier: Option<PathBuf>,
    checker: Option<Checker>,
    tls: Option<TlsControl>,
    stdin: File,
    queue_program: PathBuf,
    queue_timeout: Duration,
    me: String,
}

impl Real {
    pub fn new(
        home: PathBuf,
        checkpassword: Vec<OsString>,
        tls: Option<TlsControl>,
        stdin: File,
        cfg: &Config,
    ) -> Self {
        let checker = (!checkpassword.is_empty()).then_some(Checker {
            argv: checkpassword,
            timeout: crate::auth::CHECK_TIMEOUT,
        });
        Real {
            store: Mailstore { home },
            verifier: None,
            checker,
            tls,
            stdin,
            queue_program: queue::locate(),
            queue_timeout: cfg.queue_timeout,
            me: cfg.me.clone(),
        }
    }
}

impl Outside for Real {
    fn recipient(&mut self, addr: &str, domain: &str) -> Result<Verdict> {
        self.store.check(addr, domain)
    }

    fn verify(&mut self, addr: &str) -> Result<postern_mailstore::verifycache::Answer> {
        let program = self.verifier.get_or_insert_with(crate::verify::locate);
        crate::verify::verify(&self.store.home, program, addr)
    }

    fn alias_of(&mut self, sender: &str, login: &str) -> Result<bool> {
        self.store.alias_of(sender, login)
    }

    fn greylist(
        &mut self,
        settings: &crate::greylist::Settings,
        ip: &str,
        sender: &str,
        rcpt: &str,
    ) -> Result<crate::greylist::Verdict> {
        let ip: std::net::IpAddr = ip.parse().map_err(|_| {
            postern_common::Error::temp(format!(
                "TCPREMOTEIP is not an address: {}",
                postern_common::logline::printable(ip)
            ))
        })?;
        crate::greylist::Greylist::new(&self.store.home).check(
            settings,
            ip,
            sender,
            rcpt,
            std::time::SystemTime::now(),
        )
    }

    fn auth_configured(&self) -> bool {
        self.checker.is_some()
    }

    fn check_password(&mut self, user: &[u8], pass: &[u8]) -> Result<bool> {
        let Some(checker) = &self.checker else {
            return Ok(false);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let stamp = format!("<{}.{now}@{}>", std::process::id(), self.me);
        checker.check(user, pass, &stamp)
    }

    fn queue(&mut self, priority: bool, auth_user: Option<&str>) -> Result<Box<dyn Job>> {
        Ok(Box::new(queue::start(
            &self.queue_program,
            priority,
            auth_user,
            self.queue_timeout,
        )?))
    }

    fn tls_configured(&self) -> bool {
        self.tls.is_some()
    }

    fn tls_request(&mut self) -> Result<usize> {
        match &mut self.tls {
            Some(t) => t.request(&self.stdin),
            None => Err(postern_common::Error::temp("no postern-tlsd")),
        }
    }

    fn tls_start(&mut self) -> Result<std::result::Result<Tls, String>> {
        match &mut self.tls {
            Some(t) => Ok(t.start()?.map(|i| Tls {
                version: i.version,
                cipher: i.cipher,
            })),
            None => Err(postern_common::Error::temp("no postern-tlsd")),
        }
    }

    /// Pause, but no longer than the client stays: a client that hangs up during the
    /// pause (after a failed AUTH, say) must not hold a connection slot for the rest of
    /// it. Only hang-ups wake the poll; pipelined input waits for the next read.
    fn sleep(&mut self, pause: Duration) {
        let deadline = Instant::now() + pause;
        // nix names no POLLRDHUP (a socket peer's shutdown); a pipe's is POLLHUP, always reported.
        let hangup = PollFlags::from_bits_retain(libc::POLLRDHUP);
        // Woken early only by a hang-up or error: the client is gone.
        if postern_common::deadline::wait_until(&self.stdin, hangup, deadline).is_err() {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        }
    }

    fn log(&mut self, line: LogLine) {
        line.emit();
    }
}
