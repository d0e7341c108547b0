//! postern-queue — put one message into the queue (the qmail-queue interface).
//!
//! Usage: `postern-queue` with the message on fd 0 and the envelope on fd 1
//! (`F<sender>\0`, `T<recipient>\0`…, `\0`). Exits 0 once the message is on disk for
//! good, else with a qmail-queue code (11, 31, 52, 53, 54, 61–64, 91); prints nothing.
//! See docs/postern-queue.md.

fn main() {
    postern_common::exit::run("postern-queue", postern_queue::enqueue::main)
}
