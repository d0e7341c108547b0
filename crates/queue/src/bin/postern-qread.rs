//! postern-qread — list the queue; request delete / hold / release / requeue.
//!
//! Usage: `postern-qread` lists every message (ID, age, size, sender, recipients and
//! their state); `postern-qread --delete|--hold|--release|--requeue ID ...` asks
//! postern-send to act on messages. Exit 0, 100 bad usage or unknown ID, 111 trouble.
//! See docs/postern-qread.md.

fn main() {
    postern_common::exit::run("postern-qread", postern_queue::qread::main)
}
