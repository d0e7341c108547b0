//! The queue file, read with postern-queue's own [`postern_queue::file`] module (one
//! definition of the format, docs/queue.md): `"PQ1\n"`, a big-endian u64 envelope length
//! `E`, the envelope block, then the message at offset 12 + E. The scheduler and the
//! deliveries only read these files.

use postern_common::Result;
pub use postern_queue::file::{encode_file, Envelope, QueueFile};
use std::fs::File;
use std::path::Path;

/// Open the queue file at `path`; the returned file is positioned at the message.
pub fn open(path: &Path) -> Result<QueueFile> {
    postern_queue::file::open(path)
}

/// Read the header of an open queue file; the file is left at the message.
pub fn read(file: File, label: &str) -> Result<QueueFile> {
    postern_queue::file::read_header(file, label)
}
