//! The queue (docs/queue.md): the on-disk layout every queue program shares, and the
//! programs of this family. The formats they share with postern-send and the deliveries
//! — the queue file, the state file — are in `postern_wire` (`queue_file`, `send_state`).
//!
//! Shared with postern-send and the deliveries:
//! - [`layout`]: paths inside `queue/`, message IDs, creating the directories
//!   ([`layout::create`]), the trigger, admin request names.
//! - [`qq`]: qmail-queue's exit codes and their texts.
//! - [`protocol`]: the qmail-queue envelope on the wire.
//! - [`client`]: running `$QMAILQUEUE` / postern-queue as a caller (inject, bounces).
//!
//! The programs: [`enqueue`] (postern-queue), [`inject`] with [`header`]
//! (postern-inject) and [`inject_smtp`] (its `-bs`), [`qstat`] (postern-qstat), [`qread`] (postern-qread).
#![forbid(unsafe_code)]

pub mod inject_smtp;
pub mod client;
pub mod enqueue;
pub mod header;
pub mod inject;
pub mod layout;
pub mod protocol;
pub mod qq;
pub mod qread;
pub mod qstat;
