//! Finding and running the sibling programs: postern-send runs postern-local and
//! postern-remote, and postern-send (bounces) and postern-local (forwards) queue mail.
//! A sibling is looked for next to the running executable first (an install keeps them
//! together; so does cargo), then on `$PATH`.
//!
//! Queueing goes through the one qmail-queue client ([`postern_wire::qmail_queue::inject`]),
//! with the envelope pipe made close-on-exec, so neither the queue program nor any
//! delivery started meanwhile holds its write end, and a message we fail to produce ends
//! in EOF on the queue program's fd 1 (nothing queued, the program exits at once) rather
//! than a hang.

use postern_common::{Result, ResultExt};
use postern_wire::qmail_queue::{self, client};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Path of the program `name`: beside our own executable, else `name` for `$PATH`.
pub fn sibling(name: &str) -> PathBuf {
    postern_common::sibling::program(name)
}

/// Queue a message: `prefix` then the rest of `body`, with `sender` and `recipients`,
/// through `$QMAILQUEUE` or postern-queue ([`client::queue_program`]). Exit codes follow
/// qmail-queue: 11–40 permanent, the rest temporary. A `body` that fails
/// to read is a temporary error and queues nothing.
pub fn inject(
    prefix: &[u8],
    body: &mut dyn Read,
    sender: &[u8],
    recipients: &[&[u8]],
) -> Result<()> {
    inject_via(client::queue_program(), prefix, body, sender, recipients)
}

/// [`inject`] through the queue program `program`.
pub fn inject_via(
    program: impl AsRef<Path>,
    prefix: &[u8],
    body: &mut dyn Read,
    sender: &[u8],
    recipients: &[&[u8]],
) -> Result<()> {
    qmail_queue::inject(program, sender, recipients, |sink| {
        sink.write_all(prefix)
            .and_then(|_| io::copy(body, sink).map(|_| ()))
            .temp("unable to read the message")
    })
    .map_err(qmail_queue::Failure::into_error)
}
