//! The formats postern's programs share, each written once: one writer, one reader, and a
//! round-trip test over arbitrary bytes. Nothing here does I/O policy or links a network
//! library; it depends on std and `postern-common` only.
//!
//! - [`qmail_queue`]: the qmail-queue interface — running the queue program, the
//!   envelope on fd 1, exit codes and the SMTP replies they mean.
//! - [`queue_file`]: `queue/mess/ID` (`PQ1`), the envelope block and the message.
//! - [`send_state`]: `queue/state/ID`, postern-send's record of each recipient.
//! - [`verdict`]: a delivery's outcome (`K`/`Z`/`D` only where it crosses a pipe).
//! - [`delivery_report`]: what postern-remote reports per recipient.
//! - [`smtp_reply`]: reading a (multi-line) SMTP reply.
//! - [`smtp_path`]: `MAIL FROM:<…>` / `RCPT TO:<…>` paths and their parameters.
//! - [`ratelimit_lists`]: `control/ratelimit.blocked` and `control/ratelimit.holdauth`.
#![forbid(unsafe_code)]

pub mod delivery_report;
pub mod qmail_queue;
pub mod queue_file;
pub mod ratelimit_lists;
pub mod send_state;
pub mod smtp_path;
pub mod smtp_reply;
pub mod verdict;
