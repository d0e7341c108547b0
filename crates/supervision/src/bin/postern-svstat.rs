//! postern-svstat — print the status of supervised services.
//!
//! Usage: `postern-svstat dir...`
//!
//! One line per directory in daemontools' format, e.g.
//! `/service/smtpd: up (pid 1234) 5678 seconds`.
//! See docs/postern-svstat.md.

fn main() {
    postern_common::exit::run("postern-svstat", postern_supervision::svstat::main)
}
