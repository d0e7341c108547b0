//! postern-scan: content filter and antivirus in `$QMAILQUEUE` position.
//! See docs/postern-scan.md.
//!
//! Interface: like qmail-queue — message on fd 0, envelope on fd 1; exits with
//! qmail-queue's codes (0 queued by postern-queue, 31 refused → 554, 71 scanner
//! trouble → 451, 55 bad config → 451).

fn main() {
    postern_common::exit::run("postern-scan", postern_filter::scan::run)
}
