//! postern-verify — ask a recipient domain's next hop whether an address exists.
//!
//! Usage: `postern-verify ADDRESS`. Run by postern-smtpd (as the network account) for a
//! recipient of a `control/verifyrecipients` domain; answers from `run/verify/` when it
//! can, else probes the route (smtproutes, else MX) with EHLO, MAIL FROM:<>, RCPT, RSET,
//! QUIT — never DATA. Prints `pass|fail|tempfail yes|no TEXT` and exits 0; 100 on bad
//! usage, 111 on trouble. See docs/postern-verify.md.

fn main() {
    postern_common::exit::run("postern-verify", postern_delivery::verify::main)
}
