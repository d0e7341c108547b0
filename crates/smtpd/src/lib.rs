//! postern-smtpd: the SMTP server (RFC 5321 with ESMTP, PIPELINING, SIZE, 8BITMIME,
//! ENHANCEDSTATUSCODES, AUTH PLAIN/LOGIN, STARTTLS through postern-tlsd). One process
//! per connection under postern-tcpserver; the network is fds 0 and 1.
//!
//! - [`line`]: the bounded CRLF line reader (bare LF/CR/NUL detection, 512/1000 limits).
//! - [`pace`]: the idle timeout, the session time limit and the minimum data rate.
//! - [`command`]: the verb table; `MAIL FROM:` / `RCPT TO:` parsing with the RFC limits.
//! - [`relay`]: the rcpthosts decision and the classic relay tricks.
//! - [`recipients`]: recipient validation against the user database.
//! - [`verify`]: recipient verification by callout, through postern-verify.
//! - [`greylist`]: greylisting at RCPT (off unless `control/greylist`).
//! - [`data`]: dot-unstuffing, hop counting, the size limit.
//! - [`auth`]: AUTH PLAIN/LOGIN through a checkpassword program.
//! - [`queue`]: running `$QMAILQUEUE`, exit codes to replies.
//! - [`received`]: the Received header, without header injection.
//! - [`config`]: the control files and the client's environment.
//! - [`session`]: the state machine, generic over its streams.
//! - [`outside`]: the real [`session::Outside`]: processes, tlsd, the log.
#![forbid(unsafe_code)]

pub mod auth;
pub mod command;
pub mod config;
pub mod data;
pub mod greylist;
pub mod line;
pub mod outside;
pub mod pace;
pub mod queue;
pub mod received;
pub mod recipients;
pub mod relay;
pub mod session;
pub mod verify;

use postern_common::control::Control;
use postern_common::getopt;
use postern_common::logline::LogLine;
use postern_common::{Error, Result, ResultExt};
use std::io::Write;
use std::os::fd::AsFd;

pub const PROG: &str = "postern-smtpd";
pub const USAGE: &str = "postern-smtpd [-s] [CHECKPASSWORD SUBPROGRAM...]";

/// The program: parse options, read the control files, serve one connection.
pub fn main() -> Result<()> {
    postern_common::privilege::not_dumpable()?;
    let (opts, operands) = getopt::parse(&getopt::args(), "s", USAGE)?;
    let submission =
        opts.iter().any(|o| o.letter == 's') || std::env::var("SUBMISSION").is_ok_and(|v| v == "1");
    if operands.len() == 1 {
        // A checkpassword without its subprogram: the classic open-relay mistake.
        return Err(Error::usage(USAGE));
    }
    let stdin = std::fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .temp("unable to use fd 0")?,
    );
    let stdout = std::fs::File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .temp("unable to use fd 1")?,
    );
    let peer = config::Peer::from_env();
    let home = postern_common::home::postern_home();
    let cfg = match Config::load(&Control::for_home(&home)) {
        Ok(c) => c,
        Err(e) => {
            let _ =
                (&stdout).write_all(b"421 4.3.0 temporary problem reading the configuration\r\n");
            LogLine::event("error")
                .kv("ip", &peer.ip)
                .kv("what", &e.msg)
                .emit();
            return Err(e);
        }
    };
    outside::send_timeout(&stdout, cfg.timeout);
    let tls = match postern_common::starttls::TlsControl::from_env() {
        Ok(t) => t,
        Err(e) => {
            postern_common::exit::warn(PROG, format!("STARTTLS disabled: {}", e.msg));
            None
        }
    };
    // Implicit TLS: postern-tlsd -i did the handshake before starting us.
    let implicit = match (&tls, implicit_tls()) {
        (None, Some(t)) => Some(t),
        _ => None,
    };
    let input = outside::TimedInput::new(stdin.try_clone().temp("unable to use fd 0")?);
    let mut real = outside::Real::new(home, operands, tls, stdin, &cfg);
    let out = std::io::BufWriter::with_capacity(16 * 1024, stdout);
    session::Session::new(input, out, &cfg, &peer, &mut real, submission)
        .with_tls(implicit)
        .run()
        .temp("network write")?;
    Ok(())
}

/// The TLS that postern-tlsd `-i` set up before starting us (`POSTERN_TLS_VERSION`,
/// `POSTERN_TLS_CIPHER`), taken out of the environment.
fn implicit_tls() -> Option<session::Tls> {
    use postern_common::starttls::{ENV_CIPHER, ENV_VERSION};
    let version = std::env::var(ENV_VERSION).ok().filter(|v| !v.is_empty());
    let cipher = std::env::var(ENV_CIPHER).unwrap_or_default();
    std::env::remove_var(ENV_VERSION);
    std::env::remove_var(ENV_CIPHER);
    Some(session::Tls {
        version: version?,
        cipher: if cipher.is_empty() {
            "unknown".to_string()
        } else {
            cipher
        },
    })
}

pub use config::Config;
