//! postern-send — the queue scheduler (a supervised daemon).
//!
//! Usage: `postern-send` (no arguments), in `$POSTERN_HOME`. Takes over new messages
//! from queue/new/ (woken by queue/lock/trigger), runs postern-local and postern-remote
//! within `control/concurrencylocal|remote`, retries on qmail's schedule, bounces once,
//! carries out admin requests in queue/ctl/. SIGALRM: retry now; SIGHUP: reread control
//! files; SIGTERM: stop after the deliveries in flight. Logs `event=` lines on stderr.
//! See docs/postern-send.md.

fn main() {
    postern_common::exit::run("postern-send", postern_delivery::send::main)
}
