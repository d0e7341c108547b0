//! postern-supervise — start a service and keep it running.
//!
//! Usage: `postern-supervise dir`
//!
//! Runs `dir/run`, restarts it when it exits (at most once a second), runs `dir/finish
//! EXITCODE SIGNAL` after each exit, and obeys `postern-svc` (or the classic `svc`)
//! through `dir/supervise/control`. The on-disk interface is daemontools 0.76's.
//! See docs/postern-supervise.md.

fn main() {
    postern_common::exit::run("postern-supervise", postern_supervision::supervise::main)
}
