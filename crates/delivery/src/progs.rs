//! Finding and running the sibling programs: postern-send runs postern-local and
//! postern-remote, and postern-send (bounces) and postern-local (forwards) queue mail.
//! A sibling is looked for next to the running executable first (an install keeps them
//! together; so does cargo), then on `$PATH`.
//!
//! Queueing goes through the queue crate's own client ([`postern_queue::client`]): one
//! implementation of the qmail-queue caller side, with the envelope pipe made
//! close-on-exec, so neither the queue program nor any delivery started meanwhile holds
//! its write end, and a message we fail to produce ends in EOF on the queue program's
//! fd 1 (nothing queued, the program exits at once) rather than a hang.

use postern_common::{Result, ResultExt};
use postern_queue::client;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Path of the program `name`: beside our own executable, else `name` for `$PATH`.
pub fn sibling(name: &str) -> PathBuf {
    postern_common::sibling::program(name)
}

/// Queue a message: `prefix` then the rest of `body`, with `sender` and `recipients`,
/// through `$QMAILQUEUE` or postern-queue ([`client::queue_program`]). Exit codes follow
/// qmail-queue: 11–40 permanent, the rest temporary (interop §5.2). A `body` that fails
/// to read is a temporary error and queues nothing.
pub fn inject(
    prefix: &[u8],
    body: &mut dyn Read,
    sender: &[u8],
    recipients: &[&[u8]],
) -> Result<()> {
    inject_via(&client::queue_program(), prefix, body, sender, recipients)
}

/// [`inject`] through the queue program `program`.
pub fn inject_via(
    program: &OsString,
    prefix: &[u8],
    body: &mut dyn Read,
    sender: &[u8],
    recipients: &[&[u8]],
) -> Result<()> {
    let rcpts: Vec<Vec<u8>> = recipients.iter().map(|r| r.to_vec()).collect();
    client::inject(program, sender, &rcpts, |sink| {
        sink.write_all(prefix)
            .and_then(|_| io::copy(body, sink).map(|_| ()))
            .temp("unable to read the message")
    })
    .map_err(client::Failure::into_error)
}
