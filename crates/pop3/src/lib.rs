//! POP3 the qmail way: `postern-popup` speaks the authorization state and runs a
//! checkpassword program; `postern-pop3d` serves one user's Maildir after login.
//!
//! - [`lineio`]: bounded command lines with an idle timeout, and writes with a deadline.
//! - [`command`]: splitting a POP3 command line into verb and argument; message numbers.
//! - [`maildir`]: scanning a Maildir, octet counts with CRLF, dot-stuffing, flags.
//! - [`popup`]: the authorization state (USER/PASS, AUTH PLAIN, STLS, CAPA).
//! - [`pop3d`]: the transaction and update states over a Maildir.
//!
//! SASL PLAIN and the program side of postern-tlsd's STARTTLS protocol are shared with
//! smtpd and live in `postern_common` (`sasl`, `starttls`).
//!
//! None of this links a TLS library: TLS lives in postern-tlsd (crates/tls).
#![forbid(unsafe_code)]

pub mod command;
pub mod lineio;
pub mod maildir;
pub mod pop3d;
pub mod popup;
