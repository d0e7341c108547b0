//! Content filtering and antivirus in the queue path: `postern-scan`, which sits in
//! `$QMAILQUEUE` position between postern-smtpd and postern-queue (both directions: mail
//! from outside and mail our own users send).
//!
//! - [`envelope`]: the qmail-queue envelope on fd 1.
//! - [`rules`]: `control/filter.rules` (qmail-scanner's quarantine-attachments format).
//! - [`mime`], [`zipnames`]: taking a message apart, bounded.
//! - [`policy`]: applying the rules (pure).
//! - [`engines`]: clamd (INSTREAM) and command-line virus scanners.
//! - [`quarantine`], [`alert`]: keeping a copy and telling the admin.
//! - [`qq`]: qmail-queue exit codes and running postern-queue.
//! - [`scan`]: the flow.
#![forbid(unsafe_code)]

pub mod alert;
pub mod engines;
pub mod envelope;
pub mod mime;
pub mod policy;
pub mod qq;
pub mod quarantine;
pub mod ratelimit;
pub mod rules;
pub mod scan;
pub mod zipnames;
