//! postern-scan end to end: the real binary in `$QMAILQUEUE` position, with a recording
//! stand-in for postern-queue next to it, and a real clamd (Debian's clamav-daemon) with
//! a signature database made in the test — no download needed; and real rspamd and
//! spamd (Debian's) for the score engines.

mod auth;
mod hostile;
mod ratelimit;
mod scan;
mod spam;
