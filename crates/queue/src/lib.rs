//! The queue (docs/queue.md): the on-disk format and layout every queue program shares,
//! and the programs of this family.
//!
//! Shared with postern-send and the deliveries:
//! - [`file`]: the queue file — header, envelope block, info records.
//! - [`layout`]: paths inside `queue/`, message IDs, creating the directories
//!   ([`layout::create`]), the trigger, admin request names.
//! - [`qq`]: qmail-queue's exit codes and their texts.
//! - [`protocol`]: the qmail-queue envelope on the wire.
//! - [`client`]: running `$QMAILQUEUE` / postern-queue as a caller (inject, bounces).
//! - [`state`]: reading postern-send's `state/ID` files.
//!
//! The programs: [`enqueue`] (postern-queue), [`inject`] with [`header`]
//! (postern-inject) and [`inject_smtp`] (its `-bs`), [`qstat`] (postern-qstat), [`qread`] (postern-qread).
#![forbid(unsafe_code)]

pub mod inject_smtp;
pub mod client;
pub mod enqueue;
pub mod file;
pub mod header;
pub mod inject;
pub mod layout;
pub mod protocol;
pub mod qq;
pub mod qread;
pub mod qstat;
pub mod state;
