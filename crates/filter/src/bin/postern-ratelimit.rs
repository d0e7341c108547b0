//! postern-ratelimit: limit how much mail one sender address, client IP or authenticated
//! user sends, by following the smtpd logs. See docs/postern-ratelimit.md.
//!
//! Interface: `postern-ratelimit [-s statefile] [logdir ...]` — a supervised daemon;
//! default log directories `$POSTERN_HOME/log/smtpd` and `$POSTERN_HOME/log/submission`.
//! Writes `control/ratelimit.blocked` (smtpd refuses those senders, IPs and users with
//! 451), `control/ratelimit.holdauth` and `control/holdbulk` (postern-send holds mail),
//! and mails alerts to `control/alertto`. SIGHUP rereads the control files; SIGTERM
//! exits 0. Exits 111 on a bad control file at start, 100 on bad usage.

fn main() {
    postern_common::exit::run("postern-ratelimit", postern_filter::ratelimit::main)
}
