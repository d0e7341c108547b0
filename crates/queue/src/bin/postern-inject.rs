//! postern-inject — send a message from a script or cron (sendmail compatible).
//!
//! Usage: `postern-inject [-t] [-i] [-f sender] [-F name] [-oX] [recipient ...] < message`,
//! or `postern-inject -bs` (SMTP on stdin/stdout)
//! (also as `sendmail` through a symlink). Adds Date / Message-ID / From when missing,
//! drops Bcc, runs `$QMAILQUEUE` or postern-queue. Exit 0 queued, 100 permanent, 111
//! temporary. See docs/postern-inject.md.

fn main() {
    postern_common::exit::run(
        postern_queue::inject::program_name(),
        postern_queue::inject::main,
    )
}
