//! Delivery: postern-send (the scheduler), postern-local (Maildir), postern-remote (SMTP
//! client). The contract with the queue is docs/queue.md; each program has its page in
//! docs/.
//!
//! - [`progs`] — finding sibling programs and queueing a message through postern-queue.
//! - [`local`], [`resolve`], [`maildir`] — postern-local: user database lookups and the
//!   Maildir write.
//! - [`remote`] — postern-remote: routes, DNS, the SMTP client, TLS, the report format.
//! - [`send`] — postern-send: takeover, state files, the schedule, deliveries, bounces.
//! - [`verify`] — postern-verify: recipient verification by callout for postern-smtpd.
#![forbid(unsafe_code)]

pub mod local;
pub mod local_worker;
pub mod maildir;
pub mod progs;
pub mod remote;
pub mod resolve;
pub mod send;
pub mod verify;
