//! postern-svc — control supervised services.
//!
//! Usage: `postern-svc [-udopchaitkxq12w] [-w up|down SECS] dir...`
//!
//! Writes the command letters to each `dir/supervise/control` (up, down, once, pause,
//! continue, hup, alarm, interrupt, term, kill, exit, quit, usr1, usr2, winch), and with
//! `-w up|down SECS` waits for that state (exit 111 if it does not come in time).
//! See docs/postern-svc.md.

fn main() {
    postern_common::exit::run("postern-svc", postern_supervision::svc::main)
}
