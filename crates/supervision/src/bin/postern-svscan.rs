//! postern-svscan — start and watch a supervise for every service directory.
//!
//! Usage: `postern-svscan [dir]`
//!
//! Scans `dir` (default: the current directory) every 5 seconds, or at once on SIGHUP or
//! SIGALRM, and runs one `postern-supervise` per service plus one for its `log/`, joined
//! by a pipe. SIGTERM or SIGINT stops every service and exits.
//! See docs/postern-svscan.md.

fn main() {
    postern_common::exit::run("postern-svscan", postern_supervision::svscan::main)
}
