//! The qmail-queue interface, the one way a message gets into the queue:
//! the caller runs the queue program (`$QMAILQUEUE`, else postern-queue), writes the
//! message to its fd 0 and closes it, then writes the envelope to its fd 1; the program
//! answers with its exit code alone (or, exit 82, with a reason on fd 6).
//!
//! - [`envelope`]: `F<sender>\0 T<recipient>\0 … \0` on fd 1, as bytes — one writer
//!   ([`Envelope::encode`]), one reader ([`Envelope::read`]).
//! - [`exit_code`]: the exit codes (0, 11–91, 120), whether each is permanent, and what it
//!   means to a caller ([`exit_code::describe`]) and to an SMTP client
//!   ([`exit_code::smtp_reply`]).
//! - [`client`]: running the queue program as its caller — with pipes (postern-smtpd,
//!   postern-inject, bounces and forwards: [`inject`]) or with files (postern-scan, the
//!   alert mails).
//!
//! The custom error record on fd 6 itself is `postern_common::custom_error`.

pub mod client;
pub mod envelope;
pub mod exit_code;

pub use client::{inject, Failure, MessageSink};
pub use envelope::{Envelope, EnvelopeError};
