//! postern-scan: content filtering and antivirus in `$QMAILQUEUE` position, between
//! postern-smtpd (or postern-inject) and postern-queue, for mail in both directions.
//!
//! - [`flow`]: the program — read, decide, then exec postern-queue or refuse.
//! - [`envelope`]: the qmail-queue envelope on fd 1.
//! - [`rules`]: `control/filter.rules` (qmail-scanner's quarantine-attachments format).
//! - [`mime`], [`zipnames`]: taking a message apart, bounded.
//! - [`policy`]: applying the rules (pure).
//! - [`engines`]: clamd (INSTREAM) and command-line virus scanners.
//! - [`quarantine`], [`alert`]: keeping a copy and telling the admin.
//! - [`qq`]: qmail-queue exit codes and running postern-queue.

pub mod alert;
pub mod engines;
pub mod envelope;
pub mod flow;
pub mod mime;
pub mod policy;
pub mod qq;
pub mod quarantine;
pub mod rules;
pub mod zipnames;

pub use flow::run;
