//! The queue (docs/queue.md): the on-disk layout every queue program shares, and the
//! programs of this family. The formats they share with postern-send and the deliveries
//! — the queue file, the state file — are in `postern_wire` (`queue_file`, `send_state`),
//! and so is the qmail-queue protocol that postern-queue speaks (`qmail_queue`).
//!
//! Shared with postern-send and the deliveries:
//! - [`layout`]: paths inside `queue/`, message IDs, creating the directories
//!   ([`layout::create`]), the trigger, admin request names.
//!
//! The programs: [`enqueue`] (postern-queue), [`inject`] with [`header`]
//! (postern-inject) and [`inject_smtp`] (its `-bs`), [`qstat`] (postern-qstat), [`qread`] (postern-qread).
#![forbid(unsafe_code)]

pub mod enqueue;
pub mod header;
pub mod inject;
pub mod inject_smtp;
pub mod layout;
pub mod qread;
pub mod qstat;
