//! postern-qstat — count the messages in the queue (as qmail-qstat).
//!
//! Usage: `postern-qstat`. Prints `messages in queue: N` and
//! `messages in queue but not yet preprocessed: M`. Exit 0, 100 bad usage, 111 when the
//! queue cannot be read. See docs/postern-qstat.md.

fn main() {
    postern_common::exit::run("postern-qstat", postern_queue::qstat::main)
}
