//! The substrate every postern program shares, and nothing else.
//!
//! - [`deadline`]: reading and writing a socket or pipe with a time limit (poll, then I/O).
//! - [`exit`]: the 0 / 100 / 111 exit-code contract as a type, and the `main` funnel
//!   that turns an error into one `postern-NAME: fatal: …` line and the right code.
//! - [`control`]: reading the flat control files (comments, defaults, line numbers).
//! - [`logline`]: `event=… key=value` log lines, written and parsed.
//! - [`tai64n`]: TAI64N stamps as daemontools and multilog write them.
//! - [`privilege`]: looking up accounts and dropping root for good.
//! - [`getopt`]: djb-style option parsing for the classic-compatible programs.
//! - [`cdb`]: djb's constant database, read and written (rules, users, recipients).
//! - [`atomic`]: write-temp-fsync-rename, the one way postern replaces a file.
//! - [`expiring`]: directories of entries that expire by age, swept now and then.
//! - [`follow`]: following a multilog directory's `current` across rotations, each line once.
//! - [`lock`]: lock files, an exclusive `flock` held as long as the guard lives.
//! - [`home`]: where the instance is (`POSTERN_HOME`).
//! - [`resolvers`]: which DNS servers to ask (`control/resolvers`, else resolv.conf).
//! - [`sasl`]: base64 and SASL PLAIN, for SMTP and POP3 AUTH.
//! - [`starttls`]: the protocol server's side of postern-tlsd's control channel.
//! - [`custom_error`]: qmail-queue's custom error (exit 82, the reason on fd 6), written
//!   by postern-scan and read by postern-smtpd.
//! - [`sys`]: the one audited `unsafe` module (fd 3, inherited fds, signal mask).
//!
//! Families depend on this crate; it depends on no family.
#![deny(unsafe_code)]

pub mod atomic;
pub mod cdb;
pub mod control;
pub mod custom_error;
pub mod deadline;
pub mod exit;
pub mod expiring;
pub mod follow;
pub mod getopt;
pub mod home;
pub mod lock;
pub mod logline;
pub mod privilege;
pub mod resolvers;
pub mod sasl;
pub mod sibling;
pub mod starttls;
pub mod sys;
pub mod tai64n;

pub use exit::{Error, Kind, Result, ResultExt};
