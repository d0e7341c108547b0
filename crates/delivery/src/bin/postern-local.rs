//! postern-local — deliver one message to a local (virtual) recipient.
//!
//! Usage: `postern-local [--] SENDER RECIPIENT` with the message on fd 0, from its first
//! header line. Resolves the recipient in users.cdb / aliases.cdb, writes the message
//! into the mailbox's Maildir (or forwards an alias through postern-queue), prints one
//! line of reason, and exits 0 (delivered), 100 (permanent failure) or 111 (temporary).
//! See docs/postern-local.md.

fn main() {
    postern_common::exit::run("postern-local", postern_delivery::local::main)
}
