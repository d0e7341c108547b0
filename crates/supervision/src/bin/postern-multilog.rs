//! `postern-multilog` — daemontools-compatible log writer: reads lines on stdin and runs
//! its script over each one (docs/postern-multilog.md).
//!
//! Usage: `postern-multilog script...` where each argument is one action:
//! `t` (first only: TAI64N stamps), `+pattern`, `-pattern`, `e`, `=file`, `sN`, `nN`,
//! `!processor`, and `./dir` or `/dir` (a rotated log directory).
//!
//! Exit codes: 0 on EOF or TERM, 100 on bad usage, 111 when a directory can't be set up
//! or locked.

fn main() {
    postern_common::exit::run("postern-multilog", postern_supervision::multilog::main)
}
