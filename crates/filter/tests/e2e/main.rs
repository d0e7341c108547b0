//! postern-scan end to end: the real binary in `$QMAILQUEUE` position, with a recording
//! stand-in for postern-queue next to it, and a real clamd (Debian's clamav-daemon) with
//! a signature database made in the test — no download needed.

mod hostile;
mod ratelimit;
mod scan;
