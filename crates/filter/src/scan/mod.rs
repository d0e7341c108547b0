//! postern-scan: content filtering and antivirus in `$QMAILQUEUE` position, between
//! postern-smtpd (or postern-inject) and postern-queue, for mail in both directions.
//!
//! - [`flow`]: the program — read, decide, then exec postern-queue or refuse. The
//!   qmail-queue envelope, exit codes and the running of postern-queue are
//!   [`postern_wire::qmail_queue`]'s.
//! - [`auth`]: SPF, DKIM and DMARC for mail from outside ([`postern_auth::inbound`]).
//! - [`rules`]: `control/filter.rules` (qmail-scanner's quarantine-attachments format).
//! - [`mime`], [`zipnames`]: taking a message apart, bounded; [`bytes`]: the byte
//!   searches they and the rules use.
//! - [`policy`]: applying the rules (pure).
//! - [`engines`]: clamd (INSTREAM) and command-line virus scanners; the score engines'
//!   addresses.
//! - [`spam`]: spam scores to actions (tag, quarantine, reject), over [`rspamd`]'s HTTP
//!   protocol (its answer read by [`json`]) and [`spamd`]'s spamc protocol.
//! - [`quarantine`], [`alert`]: keeping a copy and telling the admin.

pub mod alert;
pub mod auth;
pub mod bytes;
pub mod engines;
pub mod flow;
pub mod json;
pub mod mime;
pub mod policy;
pub mod quarantine;
pub mod rspamd;
pub mod rules;
pub mod spam;
pub mod spamd;
pub mod zipnames;

pub use flow::run;
