//! `postern-pregreet`: the pre-greeting check (what Postfix's postscreen calls
//! "pregreet") in front of an SMTP server, in the tcpserver chain like rblsmtpd.
//!
//! A real SMTP client waits for the server's `220` greeting before it says anything;
//! much bulk-mail software does not. postern-pregreet waits a moment before the server
//! greets. A client that sends a byte in that time gets `554 5.7.1` as its opening reply
//! (RFC 5321 §3.1: then `503` to everything but QUIT), is logged, and is remembered, so
//! that its next connections are refused at once. A client that waited is remembered
//! too, and its next connections skip the wait; then the SMTP server is `exec`ed on the
//! same descriptors. postern-pregreet never reads a byte of a client that waited, so
//! nothing is lost or reordered.
//!
//! - [`memory`]: the clients remembered under `run/pregreet/`.
//! - [`refusal`]: the dialogue an early talker gets.
//!
//! Settings: `control/pregreetwait` (seconds; the run script leaves the program out of
//! the chain when it is missing or 0), `$PREGREETWAIT` from the access rules per client,
//! `control/pregreetttl`, `control/pregreetpassttl`. `$RELAYCLIENT` skips the check.

pub mod memory;
pub mod refusal;

use memory::{Memory, Remembered};
use postern_common::control::Control;
use postern_common::logline::LogLine;
use postern_common::{getopt, Error, Result};
use std::ffi::OsString;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant, SystemTime};

pub const PROG: &str = "postern-pregreet";
pub const USAGE: &str = "postern-pregreet program [arg ...]";
/// Longest wait accepted (`control/pregreetwait`, `$PREGREETWAIT`): clients give a
/// server five minutes to greet (RFC 5321 §4.5.3.2.1), and a longer wait only costs
/// legitimate mail.
pub const MAX_WAIT: u64 = 60;
/// Default for `control/pregreetttl`: how long an early talker is refused at once.
pub const DEFAULT_DROP_TTL: u64 = 3600;
/// Default for `control/pregreetpassttl`: how long a client that waited skips the wait.
pub const DEFAULT_PASS_TTL: u64 = 86_400;
/// Most bytes of an early talker's input shown in the log line.
pub const MAX_LOGGED: usize = 100;

/// What the check decided before any waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Run the server now: no wait configured, a relay client, or a recent pass.
    Exec,
    /// Refuse at once: this client talked first recently.
    Refuse,
    /// Wait this long, watching for early input.
    Wait(Duration),
}

/// The settings, from control files and the client's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub wait: u64,
    pub drop_ttl: u64,
    pub pass_ttl: u64,
}

fn parse_wait(text: &str, origin: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(n) if n <= MAX_WAIT => Ok(n),
        _ => Err(Error::temp(format!(
            "{origin}: the wait is a whole number of seconds from 0 to {MAX_WAIT}: {}",
            postern_common::logline::printable(text)
        ))),
    }
}

impl Settings {
    /// Read the control files; `$PREGREETWAIT` (set by an access rule) overrides the wait.
    pub fn load(control: &Control, env_wait: Option<&str>) -> Result<Settings> {
        let wait = match env_wait {
            Some(text) => parse_wait(text, "$PREGREETWAIT")?,
            None => match control.lines("pregreetwait")? {
                None => 0,
                Some(lines) => match lines.first() {
                    None => 0,
                    Some(line) => {
                        parse_wait(&line.text, &format!("control/pregreetwait:{}", line.number))?
                    }
                },
            },
        };
        Ok(Settings {
            wait,
            drop_ttl: control.number("pregreetttl", DEFAULT_DROP_TTL)?,
            pass_ttl: control.number("pregreetpassttl", DEFAULT_PASS_TTL)?,
        })
    }
}

/// Decide before waiting, from the settings, whether the client is a relay client and
/// what the memory holds for it.
pub fn start(settings: &Settings, relay_client: bool, remembered: Remembered) -> Start {
    if settings.wait == 0 || relay_client {
        return Start::Exec;
    }
    match remembered {
        Remembered::Dropped => Start::Refuse,
        Remembered::Passed => Start::Exec,
        Remembered::Nothing => Start::Wait(Duration::from_secs(settings.wait)),
    }
}

/// What happened during the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    /// The client said nothing: greet it.
    Quiet,
    /// The client sent these bytes (the first of them) after this long.
    Talked(Vec<u8>, Duration),
    /// The client closed the connection without a word.
    Gone(Duration),
}

/// Wait up to `wait` for input on `fd`. Reads only when input arrived (the client is
/// refused then), so a quiet client's bytes stay unread for the server.
pub fn watch(fd: std::os::fd::BorrowedFd<'_>, wait: Duration) -> Watch {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Watch::Quiet;
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(0) => return Watch::Quiet,
            Ok(_) => {
                let after = started.elapsed();
                let mut buf = [0u8; 512];
                return match nix::unistd::read(fd, &mut buf) {
                    Ok(0) | Err(_) => Watch::Gone(after),
                    Ok(n) => Watch::Talked(buf[..n].to_vec(), after),
                };
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return Watch::Quiet,
        }
    }
}

fn log(ip: &str, result: &str) -> LogLine {
    LogLine::event("pregreet").kv("ip", ip).kv("result", result)
}

pub fn main() -> Result<()> {
    let (_, program) = getopt::parse(&getopt::args(), "", USAGE)?;
    if program.is_empty() {
        return Err(Error::usage(USAGE));
    }
    let control = Control::from_env();
    let env_wait = std::env::var("PREGREETWAIT").ok();
    let settings = Settings::load(&control, env_wait.as_deref())?;
    let ip_text = std::env::var("TCPREMOTEIP").unwrap_or_default();
    let ip = ip_text
        .parse::<IpAddr>()
        .ok()
        .map(crate::tcpserver::plain_ip);
    let relay_client = std::env::var_os("RELAYCLIENT").is_some();
    let memory = ip.map(|ip| Memory::new(&postern_common::home::postern_home(), ip));
    let now = SystemTime::now();
    let remembered = match &memory {
        Some(m) if settings.wait > 0 && !relay_client => {
            m.recall(now, settings.drop_ttl, settings.pass_ttl)
        }
        _ => Remembered::Nothing,
    };
    match start(&settings, relay_client, remembered) {
        Start::Exec => exec(&program),
        Start::Refuse => {
            log(&ip_text, "drop").kv("why", "remembered").emit();
            refusal::refuse(&me(&control), &[]);
            Ok(())
        }
        Start::Wait(wait) => {
            let stdin = std::io::stdin();
            match watch(stdin.as_fd(), wait) {
                Watch::Quiet => {
                    if let Some(m) = &memory {
                        m.passed(settings.pass_ttl);
                    }
                    exec(&program)
                }
                Watch::Talked(bytes, after) => {
                    if let Some(m) = &memory {
                        m.dropped(settings.drop_ttl);
                    }
                    let shown = &bytes[..bytes.len().min(MAX_LOGGED)];
                    log(&ip_text, "drop")
                        .kv("why", "talked-first")
                        .kv("after", format!("{}ms", after.as_millis()))
                        .kv("text", String::from_utf8_lossy(shown))
                        .emit();
                    refusal::refuse(&me(&control), &bytes);
                    Ok(())
                }
                Watch::Gone(after) => {
                    log(&ip_text, "gone")
                        .kv("after", format!("{}ms", after.as_millis()))
                        .emit();
                    Ok(())
                }
            }
        }
    }
}

/// The name in the replies: `control/me`, else the host name.
fn me(control: &Control) -> String {
    control
        .value("me")
        .ok()
        .flatten()
        .unwrap_or_else(postern_common::control::system_hostname)
}

fn exec(program: &[OsString]) -> Result<()> {
    let err =
        postern_common::sys::with_default_signals(&mut std::process::Command::new(&program[0]))
            .args(&program[1..])
            .exec();
    Err(Error::temp(format!(
        "unable to run {}: {}",
        program[0].to_string_lossy(),
        postern_common::exit::describe_io(&err)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(wait: u64) -> Settings {
        Settings {
            wait,
            drop_ttl: DEFAULT_DROP_TTL,
            pass_ttl: DEFAULT_PASS_TTL,
        }
    }

    #[test]
    fn the_start_decision() {
        let s = settings(3);
        assert_eq!(start(&settings(0), false, Remembered::Dropped), Start::Exec);
        assert_eq!(start(&s, true, Remembered::Dropped), Start::Exec);
        assert_eq!(start(&s, false, Remembered::Dropped), Start::Refuse);
        assert_eq!(start(&s, false, Remembered::Passed), Start::Exec);
        assert_eq!(
            start(&s, false, Remembered::Nothing),
            Start::Wait(Duration::from_secs(3))
        );
    }

    #[test]
    fn settings_from_control_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let control = Control::at(dir.path());
        assert_eq!(Settings::load(&control, None).unwrap(), settings(0));
        std::fs::write(dir.path().join("pregreetwait"), "# seconds\n4\n").unwrap();
        std::fs::write(dir.path().join("pregreetttl"), "60\n").unwrap();
        let s = Settings::load(&control, None).unwrap();
        assert_eq!((s.wait, s.drop_ttl, s.pass_ttl), (4, 60, DEFAULT_PASS_TTL));
        assert_eq!(Settings::load(&control, Some("0")).unwrap().wait, 0);
        let err = Settings::load(&control, Some("61")).unwrap_err();
        assert!(err.msg.starts_with("$PREGREETWAIT"), "{}", err.msg);
        std::fs::write(dir.path().join("pregreetwait"), "\n3s\n").unwrap();
        let err = Settings::load(&control, None).unwrap_err();
        assert!(
            err.msg.starts_with("control/pregreetwait:2:"),
            "{}",
            err.msg
        );
    }

    #[test]
    fn watching_a_socket() {
        use std::io::Write;
        use std::os::unix::net::UnixStream;
        let (mut client, server) = UnixStream::pair().unwrap();
        assert_eq!(
            watch(server.as_fd(), Duration::from_millis(50)),
            Watch::Quiet
        );
        client.write_all(b"EHLO x\r\n").unwrap();
        match watch(server.as_fd(), Duration::from_secs(5)) {
            Watch::Talked(bytes, _) => assert_eq!(bytes, b"EHLO x\r\n"),
            other => panic!("{other:?}"),
        }
        drop(client);
        assert!(matches!(
            watch(server.as_fd(), Duration::from_secs(5)),
            Watch::Gone(_)
        ));
    }
}
