//! postern-rblsmtpd — block SMTP clients listed in DNS blocklists.
//!
//! Usage: `postern-rblsmtpd [-b|-B] [-c|-C] [-t timeout] -r zone [-r zone...] [-a zone...] program...`
//!
//! Checks `$RBLSMTPD`, then `$TCPREMOTEIP` against each zone in order (`-r`: a TXT
//! record blocks, `-a`: an A record passes). Not blocked: exec program. Blocked: answer
//! SMTP itself with 451 (553 with -b) and the reason. DNS servers come from
//! control/resolvers. Exit 100 bad usage, 111 unable to run program. See
//! docs/postern-rblsmtpd.md.

fn main() {
    postern_common::exit::run(postern_ucspi::rblsmtpd::PROG, postern_ucspi::rblsmtpd::main)
}
